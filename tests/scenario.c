/* Description: support, not a test: a scripted pool scenario and a model of what must be live. */
/*
 * The scenario every backend's fault-injection test runs: grow, fragment,
 * regrow past the watermark, copy through the backend, shrink, trim,
 * destroy. A model tracks which blocks are live and what each holds; after
 * every step the pool must pass its checker and agree with the model.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <kvc/kvc.h>

#include "backend.h"
#include "scenario.h"
#include "testutil.h"

#define BLOCK SCENARIO_BLOCK
#define CAPACITY SCENARIO_CAPACITY

struct kvc_pool *scenario_pool(struct kvc_backend *be, uint32_t kept,
			       uint64_t max_mapped)
{
	struct kvc_pool_params p;
	struct kvc_pool *pool = NULL;

	kvc_pool_params_init(&p);
	p.block_bytes = BLOCK;
	p.capacity_blocks = CAPACITY;
	p.empty_chunks_kept = kept;
	p.max_mapped_bytes = max_mapped;
	p.backend = be;
	p.flags = KVC_POOL_NO_STATS_PAGE;
	if (kvc_pool_create(&p, &pool))
		return NULL;
	return pool;
}

void scenario_fill(struct kvc_pool *pool, struct scenario_model *m, uint32_t id)
{
	uint32_t *words = (uint32_t *)(uintptr_t)(kvc_pool_base(pool) +
						  (uint64_t)id * BLOCK);
	uint32_t i;

	m->seed[id] = ++m->next_seed;
	for (i = 0; i < BLOCK / 4; i++)
		words[i] = m->seed[id] * 2654435761u + i;
}

/* Every block the model holds is live and holds what was written. */
void scenario_verify(struct kvc_pool *pool, const struct scenario_model *m)
{
	struct kvc_pool_stats st;
	uint32_t id, i;

	CHECK(pool);
	kvc_pool_get_stats(pool, &st, NULL);
	assert_int_equal(st.blocks_live, m->nr_live);
	for (id = 0; id < CAPACITY; id++) {
		const uint32_t *words;

		assert_int_equal(kvc_pool_is_live(pool, id), m->live[id]);
		if (!m->live[id])
			continue;
		words = (const uint32_t *)(uintptr_t)(kvc_pool_base(pool) +
						      (uint64_t)id * BLOCK);
		for (i = 0; i < BLOCK / 4; i++)
			if (words[i] != m->seed[id] * 2654435761u + i)
				fail_msg("block %u word %u lost its contents",
					 id, i);
	}
}

int scenario_alloc(struct kvc_pool *pool, struct scenario_model *m, uint32_t n)
{
	struct kvc_pool_stats before, after;
	uint32_t ids[CAPACITY], i;
	int err;

	kvc_pool_get_stats(pool, &before, NULL);
	err = kvc_pool_alloc(pool, n, ids);
	kvc_pool_get_stats(pool, &after, NULL);
	if (err) {
		/* All-or-nothing: nothing taken, nothing left mapped. */
		assert_int_equal(after.blocks_live, before.blocks_live);
		assert_int_equal(after.chunks_mapped, before.chunks_mapped);
		return err;
	}
	for (i = 0; i < n; i++) {
		assert_false(m->live[ids[i]]);
		m->live[ids[i]] = 1;
		m->nr_live++;
		scenario_fill(pool, m, ids[i]);
	}
	return 0;
}

/* Free every @stride-th live block, starting at the @skip-th. */
int scenario_free(struct kvc_pool *pool, struct scenario_model *m,
		  uint32_t stride, uint32_t skip)
{
	uint32_t ids[CAPACITY], n = 0, id, seen = 0, i;
	int err;

	for (id = 0; id < CAPACITY; id++)
		if (m->live[id] && seen++ % stride == skip)
			ids[n++] = id;
	err = kvc_pool_free(pool, n, ids);
	if (err)
		return err;
	for (i = 0; i < n; i++) {
		m->live[ids[i]] = 0;
		m->nr_live--;
	}
	return 0;
}

/* Copy block @src over block @dst through the backend, then fence. */
int scenario_copy(struct kvc_pool *pool, struct scenario_model *m, uint32_t src,
		  uint32_t dst)
{
	struct kvc_backend *be = kvc_pool_backend(pool);
	struct kvc_va va = { .base = kvc_pool_base(pool),
			     .bytes = (uint64_t)CAPACITY * BLOCK };
	struct kvc_copy c = { (uint64_t)src * BLOCK, (uint64_t)dst * BLOCK,
			      BLOCK };
	int err;

	err = be->ops->copy(be, &va, &c, 1);
	if (!err)
		err = be->ops->fence(be, &va);
	if (!err)
		m->seed[dst] = m->seed[src];
	else
		scenario_fill(pool, m,
			      dst); /* a failed copy leaves dst undefined */
	return err;
}

static int first_live(const struct scenario_model *m, uint32_t nth)
{
	uint32_t id;

	for (id = 0; id < CAPACITY; id++)
		if (m->live[id] && !nth--)
			return (int)id;
	return -1;
}

/* Base of the scenario's last pool, to reclaim a reservation it leaked. */
uint64_t scenario_last_base;

/*
 * The scripted scenario: grow, fragment, regrow past the watermark, copy,
 * shrink, trim. Returns how many steps failed; checks after every step.
 */
int scenario_run(struct kvc_backend *be)
{
	struct kvc_pool *pool;
	struct scenario_model m = { 0 };
	int failures = 0, src, dst;

	pool = scenario_pool(be, 1, 0);
	if (!pool)
		return 1;
	scenario_last_base = kvc_pool_base(pool);
	scenario_verify(pool, &m);
	failures += scenario_alloc(pool, &m, 40) != 0;
	scenario_verify(pool, &m);
	failures += scenario_free(pool, &m, 2, 1) != 0;
	scenario_verify(pool, &m);
	failures += scenario_alloc(pool, &m, 50) != 0;
	scenario_verify(pool, &m);
	src = first_live(&m, 0);
	dst = first_live(&m, 1);
	if (src >= 0 && dst >= 0)
		failures += scenario_copy(pool, &m, (uint32_t)src,
					  (uint32_t)dst) != 0;
	scenario_verify(pool, &m);
	failures += scenario_free(pool, &m, 3, 0) != 0;
	scenario_verify(pool, &m);
	failures += scenario_free(pool, &m, 1, 0) != 0;
	scenario_verify(pool, &m);
	failures += kvc_pool_trim(pool, 0) != 0;
	scenario_verify(pool, &m);
	failures += scenario_alloc(pool, &m, 17) != 0;
	scenario_verify(pool, &m);
	failures += kvc_pool_destroy(pool) != 0;
	return failures;
}
