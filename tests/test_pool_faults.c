/* Description: the pool on the host backend, with every backend op (reserve, map, unmap, copy, fence, fence_after/record/query/sync/signal, release) failing in turn. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <kvc/kvc.h>

#include "backend.h"
#include "fault_backend.h"
#include "scenario.h"

static int setup(void **state)
{
	struct kvc_backend *host, *be;

	if (kvc_backend_open_host(SCENARIO_GRAN, &host))
		return -1;
	be = fault_backend_wrap(host);
	if (!be) {
		kvc_backend_close(host);
		return -1;
	}
	*state = be;
	return 0;
}

static int teardown(void **state)
{
	kvc_backend_close(*state);
	return 0;
}

static void assert_nothing_held(struct kvc_backend *be, const char *what)
{
	struct fault_counts fc;

	fault_backend_counts(be, &fc);
	if (fc.mapped || fc.reserved || fc.tokens)
		fail_msg(
			"%s: %lld chunks mapped, %lld reservations, %lld fence "
			"tokens left",
			what, (long long)fc.mapped, (long long)fc.reserved,
			(long long)fc.tokens);
}

/*
 * Each op fails at each of its calls, with each error a device can give.
 * The scenario calls reserve, map, unmap, copy, fence and release for
 * sure; the fence-token ops only if the pool uses them for plain frees
 * (every call they get is swept all the same).
 */
static void test_fault_every_op(void **state)
{
	static const int errs[] = { -ENOMEM, -EIO };
	struct kvc_backend *be = *state;
	struct fault_counts base, fc;
	uint64_t calls[FAULT_NR_OPS], nth;
	unsigned int op, e, injected = 0, absorbed = 0;
	char what[64];
	int failures;

	fault_backend_counts(be, &base);
	assert_int_equal(scenario_run(be), 0);
	fault_backend_counts(be, &fc);
	assert_nothing_held(be, "clean run");
	for (op = 0; op < FAULT_NR_OPS; op++) {
		calls[op] = fc.calls[op] - base.calls[op];
		if (op <= FAULT_FENCE && !calls[op])
			fail_msg("the scenario never called %s",
				 fault_op_name(op));
	}
	for (op = 0; op < FAULT_NR_OPS; op++) {
		for (nth = 1; nth <= calls[op]; nth++) {
			for (e = 0; e < 2; e++) {
				snprintf(what, sizeof(what), "%s #%llu failing",
					 fault_op_name(op),
					 (unsigned long long)nth);
				fault_backend_fail(be, op, nth, errs[e]);
				/* Checks the pool and its data at each step. */
				failures = scenario_run(be);
				fault_backend_fail(be, op, 0, 0);
				absorbed += failures == 0;
				injected++;
				assert_nothing_held(be, what);
			}
		}
	}
	/* A refused unmap during free is counted, not returned. */
	assert_true(absorbed > 0 && absorbed < injected);
	print_message("injected %u failures, %u absorbed without an error\n",
		      injected, absorbed);
}

/* A map that fails leaves the pool as it was; the next alloc works. */
static void test_map_failure_is_clean(void **state)
{
	struct kvc_backend *be = *state;
	struct scenario_model m = { 0 };
	struct kvc_pool_stats st;
	struct kvc_pool *pool;

	pool = scenario_pool(be, 0, 0);
	assert_non_null(pool);
	assert_int_equal(scenario_alloc(pool, &m, 10), 0);
	/* 40 more need three chunks; the third map fails. */
	fault_backend_fail(be, FAULT_MAP, 3, -ENOMEM);
	assert_int_equal(scenario_alloc(pool, &m, 40), -ENOMEM);
	scenario_verify(pool, &m);
	kvc_pool_get_stats(pool, &st, NULL);
	assert_int_equal(st.chunks_mapped, 1);
	assert_int_equal(st.alloc_failures, 1);
	assert_int_equal(scenario_alloc(pool, &m, 40), 0);
	scenario_verify(pool, &m);
	assert_int_equal(kvc_pool_destroy(pool), 0);
	assert_nothing_held(be, "after destroy");
}

/* An unmap refused during free: blocks freed, chunk kept, retried later. */
static void test_unmap_refused_then_retried(void **state)
{
	struct kvc_backend *be = *state;
	struct scenario_model m = { 0 };
	struct kvc_pool_stats st;
	struct kvc_pool *pool;

	pool = scenario_pool(be, 0, 0);
	assert_non_null(pool);
	assert_int_equal(scenario_alloc(pool, &m, 16), 0);
	fault_backend_fail(be, FAULT_UNMAP, 1, -EIO);
	assert_int_equal(scenario_free(pool, &m, 1, 0), 0);
	scenario_verify(pool, &m);
	kvc_pool_get_stats(pool, &st, NULL);
	assert_int_equal(st.chunks_mapped, 1);
	assert_int_equal(st.chunks_empty, 1);
	assert_int_equal(st.unmap_failures, 1);
	assert_int_equal(kvc_pool_trim(pool, 0), 0);
	kvc_pool_get_stats(pool, &st, NULL);
	assert_int_equal(st.chunks_mapped, 0);
	scenario_verify(pool, &m);
	assert_int_equal(kvc_pool_destroy(pool), 0);
	assert_nothing_held(be, "after destroy");
}

/*
 * Two failures: the second map of a batch fails, and so does the unmap
 * that undoes the first. That chunk stays mapped and empty, and the
 * high-water mark must still cover it.
 */
static void test_unwind_refused_keeps_hwm(void **state)
{
	struct kvc_backend *be = *state;
	struct scenario_model m = { 0 };
	struct kvc_pool_stats st;
	struct kvc_pool *pool;
	uint32_t ids[20];

	pool = scenario_pool(be, 0, 0);
	assert_non_null(pool);
	fault_backend_fail(be, FAULT_MAP, 2, -ENOMEM);
	fault_backend_fail(be, FAULT_UNMAP, 1, -EIO);
	/* Not scenario_alloc(): it insists that nothing stays mapped. */
	assert_int_equal(kvc_pool_alloc(pool, 20, ids), -ENOMEM);
	scenario_verify(pool, &m);
	kvc_pool_get_stats(pool, &st, NULL);
	assert_int_equal(st.chunks_mapped, 1);
	assert_int_equal(st.chunks_empty, 1);
	assert_true(st.bytes_mapped_hwm >= st.bytes_mapped);
	assert_int_equal(st.unmap_failures, 1);
	assert_int_equal(kvc_pool_trim(pool, 0), 0);
	scenario_verify(pool, &m);
	assert_int_equal(kvc_pool_destroy(pool), 0);
	assert_nothing_held(be, "after destroy");
}

/* A reservation that cannot be had fails create with nothing left. */
static void test_reserve_failure(void **state)
{
	struct kvc_backend *be = *state;

	fault_backend_fail(be, FAULT_RESERVE, 1, -ENOMEM);
	assert_null(scenario_pool(be, 0, 0));
	assert_nothing_held(be, "after failed create");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fault_every_op, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_map_failure_is_clean,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmap_refused_then_retried,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_unwind_refused_keeps_hwm,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_reserve_failure, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
