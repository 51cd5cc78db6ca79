/* Description: the sim backend: host-backend rules without memory, fake disjoint addresses, a terabyte pool for the price of its metadata */
// SPDX-License-Identifier: MIT
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/kvc.h>

#include "backend.h"

#define GRAN (64ull << 10)

struct fixture {
	struct kvc_backend *be;
	struct kvc_va va;
	bool reserved;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || kvc_backend_open_sim(GRAN, &f->be))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->reserved)
		f->be->ops->release(f->be, &f->va);
	kvc_backend_close(f->be);
	free(f);
	return 0;
}

static void reserve(struct fixture *f, uint64_t bytes)
{
	assert_int_equal(f->be->ops->reserve(f->be, bytes, &f->va), 0);
	f->reserved = true;
}

static void test_open(void **state)
{
	struct fixture *f = *state;
	struct kvc_backend *be;

	assert_string_equal(kvc_backend_name(f->be), "sim");
	EXPECT_U64(kvc_backend_granularity(f->be), GRAN);
	assert_int_equal(f->be->device, -1);
	assert_int_equal(kvc_backend_open_sim(0, &be), 0);
	EXPECT_U64(kvc_backend_granularity(be), KVC_HOST_GRANULARITY);
	kvc_backend_close(be);
	assert_int_equal(kvc_backend_open_sim(3 * 4096, &be), -EINVAL);
	assert_true(strstr(kvc_last_error(), "power of two") != NULL);
	assert_int_equal(kvc_backend_open_sim(2048, &be), -EINVAL);
	assert_int_equal(kvc_backend_open_sim(GRAN, NULL), -EINVAL);
}

static void test_reserve_disjoint(void **state)
{
	struct fixture *f = *state;
	struct kvc_va a = { 0 }, b = { 0 };

	assert_int_equal(f->be->ops->reserve(f->be, GRAN + 1, &a), -EINVAL);
	assert_int_equal(f->be->ops->reserve(f->be, 0, &a), -EINVAL);
	assert_int_equal(f->be->ops->reserve(f->be, 4 * GRAN, &a), 0);
	assert_int_equal(f->be->ops->reserve(f->be, 2 * GRAN, &b), 0);
	EXPECT_U64(a.bytes, 4 * GRAN);
	EXPECT_U64(a.base % GRAN, 0);
	EXPECT_U64(b.base % GRAN, 0);
	assert_true(a.base >= (1ull << 46));
	assert_true(a.base + a.bytes <= b.base || b.base + b.bytes <= a.base);
	assert_int_equal(f->be->ops->release(f->be, &a), 0);
	assert_int_equal(f->be->ops->release(f->be, &b), 0);
}

static void test_map_rules(void **state)
{
	struct fixture *f = *state;
	uint64_t h, h2;

	reserve(f, 8 * GRAN);
	/* Misaligned offset or size, or outside the reservation. */
	assert_int_equal(f->be->ops->map(f->be, &f->va, 4096, GRAN, &h),
			 -EINVAL);
	assert_int_equal(f->be->ops->map(f->be, &f->va, 0, GRAN + 4096, &h),
			 -EINVAL);
	assert_int_equal(f->be->ops->map(f->be, &f->va, 8 * GRAN, GRAN, &h),
			 -EINVAL);
	assert_int_equal(f->be->ops->map(f->be, &f->va, 0, 0, &h), -EINVAL);
	EXPECT_U64(f->va.calls.map, 0);

	assert_int_equal(f->be->ops->map(f->be, &f->va, GRAN, 2 * GRAN, &h), 0);
	EXPECT_U64(f->va.calls.create, 1);
	EXPECT_U64(f->va.calls.map, 1);
	EXPECT_U64(f->va.calls.set_access, 1);
	/* Double map, whole or overlapping. */
	assert_int_equal(f->be->ops->map(f->be, &f->va, GRAN, 2 * GRAN, &h2),
			 -EINVAL);
	assert_true(strstr(kvc_last_error(), "already mapped") != NULL);
	assert_int_equal(f->be->ops->map(f->be, &f->va, 2 * GRAN, GRAN, &h2),
			 -EINVAL);
	assert_int_equal(f->be->ops->map(f->be, &f->va, 0, 2 * GRAN, &h2),
			 -EINVAL);
	EXPECT_U64(f->va.calls.map, 1);
	/* Adjacent is fine. */
	assert_int_equal(f->be->ops->map(f->be, &f->va, 3 * GRAN, GRAN, &h2),
			 0);

	/* Release refuses while chunks are mapped. */
	assert_int_equal(f->be->ops->release(f->be, &f->va), -EBUSY);

	/* Unmap must undo exactly one map. */
	assert_int_equal(f->be->ops->unmap(f->be, &f->va, 0, GRAN, 0), -EINVAL);
	assert_int_equal(f->be->ops->unmap(f->be, &f->va, GRAN, GRAN, h),
			 -EINVAL);
	assert_true(strstr(kvc_last_error(), "exactly one") != NULL);
	assert_int_equal(f->be->ops->unmap(f->be, &f->va, 2 * GRAN, GRAN, h),
			 -EINVAL);
	assert_int_equal(f->be->ops->unmap(f->be, &f->va, GRAN, 3 * GRAN, h),
			 -EINVAL);
	assert_int_equal(
		f->be->ops->unmap(f->be, &f->va, GRAN, 2 * GRAN, h + 1),
		-EINVAL);
	EXPECT_U64(f->va.calls.unmap, 0);
	assert_int_equal(f->be->ops->unmap(f->be, &f->va, GRAN, 2 * GRAN, h),
			 0);
	assert_int_equal(f->be->ops->unmap(f->be, &f->va, GRAN, 2 * GRAN, h),
			 -EINVAL);
	assert_int_equal(f->be->ops->unmap(f->be, &f->va, 3 * GRAN, GRAN, h2),
			 0);
	EXPECT_U64(f->va.calls.unmap, 2);
	EXPECT_U64(f->va.calls.release, 2);
	assert_int_equal(f->be->ops->release(f->be, &f->va), 0);
	f->reserved = false;
}

static void test_copy_and_fences(void **state)
{
	struct fixture *f = *state;
	struct kvc_copy in = { 0, GRAN, 4096 };
	struct kvc_copy out = { 0, 2 * GRAN, 4096 };
	struct kvc_copy straddle = { GRAN - 2048, 0, 4096 };
	struct kvc_fence stream = { KVC_FENCE_CUDA_STREAM, NULL };
	uint64_t h0, h1, token = 7;

	reserve(f, 4 * GRAN);
	assert_int_equal(f->be->ops->map(f->be, &f->va, 0, GRAN, &h0), 0);
	assert_int_equal(f->be->ops->map(f->be, &f->va, GRAN, GRAN, &h1), 0);
	assert_int_equal(f->be->ops->copy(f->be, &f->va, &in, 1), 0);
	EXPECT_U64(f->va.calls.copy, 1);
	/* A destination in an unmapped chunk, or a range crossing into one. */
	assert_int_equal(f->be->ops->copy(f->be, &f->va, &out, 1), -EINVAL);
	straddle.src = 2 * GRAN - 2048;
	assert_int_equal(f->be->ops->copy(f->be, &f->va, &straddle, 1),
			 -EINVAL);
	out.dst = 4 * GRAN;
	assert_int_equal(f->be->ops->copy(f->be, &f->va, &out, 1), -EINVAL);
	EXPECT_U64(f->va.calls.copy, 1);

	assert_int_equal(f->be->ops->fence(f->be, &f->va), 0);
	assert_int_equal(f->be->ops->fence_after(f->be, &f->va, &stream), 0);
	assert_int_equal(f->be->ops->fence_record(f->be, &f->va, &token), 0);
	EXPECT_U64(token, 0);
	assert_int_equal(f->be->ops->fence_query(f->be, &f->va, token), 0);
	assert_int_equal(f->be->ops->fence_sync(f->be, &f->va, token), 0);
	assert_int_equal(
		f->be->ops->fence_signal(f->be, &f->va, token, &stream), 0);
	f->be->ops->fence_put(f->be, &f->va, token);

	assert_int_equal(f->be->ops->unmap(f->be, &f->va, 0, GRAN, h0), 0);
	assert_int_equal(f->be->ops->unmap(f->be, &f->va, GRAN, GRAN, h1), 0);
}

/* A terabyte of capacity: only the mapped chunks cost host metadata. */
static void test_terabyte_pool(void **state)
{
	struct fixture *f = *state;
	struct kvc_pool_params p;
	struct kvc_pool_stats st;
	struct kvc_pool *pool;
	struct kvc_backend *be;
	struct kvc_compact_result cr;
	uint32_t ids[64], keep[32], i, nk = 0;

	assert_int_equal(kvc_backend_open_sim(2ull << 20, &be), 0);
	kvc_pool_params_init(&p);
	p.backend = be;
	p.block_bytes = 64ull << 10;
	p.va_bytes = 1ull << 40;
	p.flags = KVC_POOL_NO_STATS_PAGE;
	p.empty_chunks_kept = 0;
	assert_int_equal(kvc_pool_create(&p, &pool), 0);
	CHECK(pool);
	kvc_pool_get_stats(pool, &st, NULL);
	EXPECT_U64(st.bytes_reserved, 1ull << 40);
	EXPECT_U64(st.blocks_per_chunk, 32);
	EXPECT_U64(st.blocks_total, (1ull << 40) / (64ull << 10));
	EXPECT_U64(st.chunks_mapped, 0);

	assert_int_equal(kvc_pool_alloc(pool, 64, ids), 0);
	CHECK(pool);
	kvc_pool_get_stats(pool, &st, NULL);
	EXPECT_U64(st.blocks_live, 64);
	EXPECT_U64(st.chunks_mapped, 2);
	EXPECT_U64(st.backend_map, 2);
	EXPECT_U64(st.backend_create, 2);

	/* Free every other block: two half-full chunks, compaction packs one. */
	for (i = 0; i < 64; i++)
		if (i % 2)
			keep[nk++] = ids[i];
		else {
			assert_int_equal(kvc_pool_free(pool, 1, &ids[i]), 0);
			CHECK(pool);
		}
	kvc_pool_get_stats(pool, &st, NULL);
	EXPECT_U64(st.blocks_live, 32);
	EXPECT_U64(st.chunks_partial, 2);
	EXPECT_U64(st.chunks_reclaimable, 1);

	memset(&cr, 0, sizeof(cr));
	assert_int_equal(kvc_pool_compact(pool, NULL, &cr), 0);
	CHECK(pool);
	EXPECT_U64(cr.blocks_moved, 16);
	EXPECT_U64(cr.chunks_vacated, 1);
	kvc_pool_get_stats(pool, &st, NULL);
	EXPECT_U64(st.blocks_live, 32);
	EXPECT_U64(st.chunks_mapped, 1);
	EXPECT_U64(st.chunks_full, 1);
	EXPECT_U64(st.backend_copy, 16);
	EXPECT_U64(st.backend_unmap, 1);
	EXPECT_U64(st.backend_release, 1);
	EXPECT_U64(st.blocks_moved, 16);

	/* Whatever moved, 32 blocks are live; free them all by scanning. */
	nk = 0;
	for (i = 0; i < 64 * 2; i++)
		if (kvc_pool_is_live(pool, i))
			keep[nk++] = i;
	EXPECT_U64(nk, 32);
	assert_int_equal(kvc_pool_free(pool, nk, keep), 0);
	CHECK(pool);
	assert_int_equal(kvc_pool_trim(pool, 0), 0);
	CHECK(pool);
	kvc_pool_get_stats(pool, &st, NULL);
	EXPECT_U64(st.blocks_live, 0);
	EXPECT_U64(st.chunks_mapped, 0);
	EXPECT_U64(st.backend_unmap, 2);
	EXPECT_U64(st.alloc_calls, 1);
	EXPECT_U64(st.free_calls, 33);
	assert_int_equal(kvc_pool_destroy(pool), 0);
	kvc_backend_close(be);
	(void)f;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reserve_disjoint, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_map_rules, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_copy_and_fences, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_terabyte_pool, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
