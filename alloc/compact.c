// SPDX-License-Identifier: MIT
/*
 * Compaction: vacate the chunks with the fewest live blocks into the holes
 * of the fullest ones, so that whole chunks empty and can be unmapped. In
 * the spirit of mm/compaction.c's two scanners, with the pool's fill lists
 * in place of a scan: the migrate side walks the lists upwards from the
 * sparsest chunks, the free side downwards from the fullest.
 *
 * Freeing k chunks needs at least as many moves as the k sparsest
 * non-empty chunks hold live blocks, and that bound is met: every block
 * moved leaves a chunk that is vacated whole, and no empty chunk is ever
 * filled. With L live blocks and B blocks per chunk, at most
 * used - ceil(L / B) chunks can be freed; those are always the sparsest
 * ones, all partly used, and the holes of the other partial chunks are
 * always enough for them.
 *
 * Moves go in batches: holes are taken, the device copies, and only then
 * do the blocks change ids and the owners hear of it; a batch the device
 * refuses is undone whole, and the source blocks, never written, keep
 * their contents. Vacated chunks are unmapped once the copies (and the
 * work they were ordered after) have finished: see fence.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kvc/compact.h>
#include <kvc/error.h>

#include "error.h"
#include "internal.h"
#include "ladder.h"
#include "recorder.h"

/* Moves per device call: large enough to amortise the call, small enough
 * that the arrays stay in cache. */
#define BATCH 256u

/**
 * struct kvc_compact_plan - The chunks one compaction vacates and fills.
 * @pool: the pool; NULL once the pool is destroyed.
 * @link: in @pool's list of plans.
 * @params: the caller's limits.
 * @fence: copy of the caller's fence, valid when @has_fence.
 * @has_fence: the caller gave a fence.
 * @ran: execute has been called.
 * @tick: a proactive tick made it (for the trace).
 * @src: chunks to vacate, sparsest first.
 * @nr_src: entries in @src.
 * @dst: chunks whose holes take the blocks, fullest first.
 * @nr_dst: entries in @dst.
 * @planned: the planning half of the result.
 * @copies: one batch of copies.
 * @moves: one batch of moves.
 * @holes: ids of the holes taken for one batch.
 */
struct kvc_compact_plan {
	struct kvc_pool *pool;
	struct list_head link;
	struct kvc_compact_params params;
	struct kvc_fence fence;
	bool has_fence;
	bool ran;
	bool tick;
	uint32_t *src;
	uint32_t nr_src;
	uint32_t *dst;
	uint32_t nr_dst;
	struct kvc_compact_result planned;
	struct kvc_copy copies[BATCH];
	struct kvc_move moves[BATCH];
	uint32_t holes[BATCH];
};

/* Where one batch took holes: @n ids from @c, at @at in the batch. */
struct take {
	struct kvc_chunk *c;
	uint32_t n;
	uint32_t at;
};

/* One compaction run: the plan and where it has got to. */
struct run {
	struct kvc_compact_plan *plan;
	struct kvc_pool *pool;
	struct kvc_compact_result *res;
	uint32_t next_dst;
	uint64_t holes_left;
	bool recorded;
	struct take takes[BATCH];
};

/*
 * The trace of one committed batch: COMPACT before the run's first move
 * (so a compaction that moves nothing leaves no event), then one MOVE per
 * block, all after the blocks changed ids, as one group.
 */
static void rec_moves(struct run *r, uint32_t n)
{
	struct kvc_compact_plan *plan = r->plan;
	struct kvc_recorder *rec = r->pool->rec;
	uint64_t p[KVC_REC_PAYLOAD] = { 0 };
	uint32_t i;

	kvc_recorder_lock(rec);
	if (!r->recorded) {
		p[0] = plan->params.max_bytes;
		p[1] = plan->params.max_chunks;
		p[2] = plan->tick;
		kvc_recorder_emit_locked(rec, KVC_REC_COMPACT, p);
		r->recorded = true;
	}
	for (i = 0; i < n; i++) {
		p[0] = plan->moves[i].from;
		p[1] = plan->moves[i].to;
		p[2] = plan->moves[i].owner;
		kvc_recorder_emit_locked(rec, KVC_REC_MOVE, p);
	}
	kvc_recorder_unlock(rec);
}

int kvc_pool_set_move_hook(struct kvc_pool *pool, kvc_move_fn fn, void *arg)
{
	if (!pool)
		return kvc_err(-EINVAL, "kvc_pool_set_move_hook: NULL pool");
	pthread_mutex_lock(&pool->lock);
	pool->move_fn = fn;
	pool->move_arg = arg;
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

/* Index of the last set bit at or before @bit, or -1. */
static int64_t prev_bit(const uint64_t *words, int64_t bit)
{
	int64_t w = bit / 64;
	uint64_t word;

	if (bit < 0)
		return -1;
	word = words[w] & (~0ull >> (63 - bit % 64));
	for (;;) {
		if (word)
			return w * 64 + 63 - __builtin_clzll(word);
		if (--w < 0)
			return -1;
		word = words[w];
	}
}

/* Choose the chunks to vacate and to fill. Lock held. */
static void plan_locked(struct kvc_pool *pool, struct kvc_compact_plan *plan,
			uint8_t *chosen)
{
	const struct kvc_fill *fill = &pool->fill;
	struct kvc_compact_result *res = &plan->planned;
	uint64_t budget = UINT64_MAX, bound = 0, holes = 0;
	uint64_t nbits = (uint64_t)fill->nr_words * 64;
	uint32_t most = kvc_pool_reclaimable(pool), idx;
	struct list_head *pos;
	int64_t k;

	if (plan->params.max_bytes)
		budget = plan->params.max_bytes / pool->block_bytes;
	if (plan->params.max_chunks && plan->params.max_chunks < most)
		most = plan->params.max_chunks;
	/*
	 * Migrate side: the sparsest chunks, while count and budget allow.
	 * Chunks further up are fuller, so the first that does not fit the
	 * budget ends the walk.
	 */
	for (k = (int64_t)kvc_find_next_bit(fill->bits, nbits, 1, true);
	     k < (int64_t)nbits && plan->nr_src < most && bound + k <= budget;
	     k = (int64_t)kvc_find_next_bit(fill->bits, nbits, k + 1, true)) {
		list_for_each(pos, &fill->lists[k])
		{
			if (plan->nr_src == most || bound + k > budget)
				break;
			idx = chunk_index(
				pool, list_entry(pos, struct kvc_chunk, link));
			plan->src[plan->nr_src++] = idx;
			chosen[idx / 8] |= 1u << (idx % 8);
			bound += k;
		}
	}
	res->lower_bound = bound;
	res->chunks_planned = plan->nr_src;
	res->budget_limited = plan->nr_src < kvc_pool_reclaimable(pool);
	/* Free side: the fullest other chunks, until their holes suffice. */
	for (k = prev_bit(fill->bits, pool->bpc - 1); k > 0 && holes < bound;
	     k = prev_bit(fill->bits, k - 1)) {
		list_for_each(pos, &fill->lists[k])
		{
			idx = chunk_index(
				pool, list_entry(pos, struct kvc_chunk, link));
			if (chosen[idx / 8] & (1u << (idx % 8)))
				continue;
			plan->dst[plan->nr_dst++] = idx;
			holes += pool->bpc - k;
			if (holes >= bound)
				break;
		}
	}
}

/* A plan with room for what @pool could need now. Lock held. */
static int plan_alloc(struct kvc_pool *pool,
		      const struct kvc_compact_params *params,
		      struct kvc_compact_plan **out)
{
	uint32_t used = pool->nr_mapped - (uint32_t)pool->fill.hist[0];
	uint32_t most = kvc_pool_reclaimable(pool);
	struct kvc_compact_plan *plan;
	uint64_t t0 = kvc_now_ns();
	uint8_t *chosen;

	plan = calloc(1, sizeof(*plan));
	chosen = calloc(pool->nr_chunks / 8 + 1, 1);
	if (plan) {
		plan->src = malloc((most + 1) * sizeof(uint32_t));
		plan->dst = malloc((used + 1) * sizeof(uint32_t));
	}
	if (!plan || !chosen || !plan->src || !plan->dst) {
		if (plan) {
			free(plan->src);
			free(plan->dst);
		}
		free(plan);
		free(chosen);
		return kvc_err(-ENOMEM, "out of memory for a compaction plan");
	}
	if (params) {
		plan->params = *params;
		if (params->fence) {
			plan->fence = *params->fence;
			plan->has_fence = params->fence->kind != KVC_FENCE_NONE;
		}
	}
	plan->params.fence = NULL;
	plan->pool = pool;
	list_add(&plan->link, &pool->plans);
	plan_locked(pool, plan, chosen);
	free(chosen);
	plan->planned.plan_ns = kvc_now_ns() - t0;
	*out = plan;
	return 0;
}

/* The next chunk with holes to fill, or NULL. */
static struct kvc_chunk *next_dst(struct run *r)
{
	struct kvc_compact_plan *plan = r->plan;
	struct kvc_chunk *c;

	for (; r->next_dst < plan->nr_dst; r->next_dst++) {
		c = &r->pool->chunks[plan->dst[r->next_dst]];
		/* Never fill an empty chunk: that would free nothing. */
		if (chunk_mapped(c) && c->nr_live && c->nr_live < r->pool->bpc)
			return c;
	}
	return NULL;
}

/* Holes the destinations still have. */
static uint64_t count_holes(struct run *r)
{
	uint64_t holes = 0;
	uint32_t i;

	for (i = r->next_dst; i < r->plan->nr_dst; i++) {
		struct kvc_chunk *c = &r->pool->chunks[r->plan->dst[i]];

		if (chunk_mapped(c) && c->nr_live)
			holes += r->pool->bpc - c->nr_live;
	}
	return holes;
}

/*
 * Move the @n blocks of @src named in plan->moves[].from: take holes,
 * copy, then hand the ids over. All or nothing.
 */
static int move_batch(struct run *r, struct kvc_chunk *src, uint32_t n)
{
	struct kvc_compact_plan *plan = r->plan;
	struct kvc_pool *pool = r->pool;
	uint64_t bb = pool->block_bytes, t0;
	uint32_t first = chunk_index(pool, src) * pool->bpc;
	uint32_t i = 0, nr_takes = 0, local, got;
	struct kvc_chunk *c;
	int err;

	while (i < n) {
		c = next_dst(r);
		got = kvc_chunk_take(pool, c, n - i, plan->holes + i);
		kvc_fill_set_live(pool, c, c->nr_live + got);
		r->takes[nr_takes++] = (struct take){ c, got, i };
		i += got;
	}
	for (i = 0; i < n; i++) {
		plan->moves[i].to = plan->holes[i];
		plan->copies[i] = (struct kvc_copy){ plan->moves[i].from * bb,
						     plan->holes[i] * bb, bb };
	}
	t0 = kvc_now_ns();
	err = pool->be->ops->copy(pool->be, &pool->va, plan->copies, n);
	if (err) {
		/* Copies issued before the failure must not land later. */
		pool->be->ops->fence(pool->be, &pool->va);
		r->res->copy_ns += kvc_now_ns() - t0;
		while (nr_takes--) {
			struct take *t = &r->takes[nr_takes];

			kvc_chunk_untake(pool, t->c, t->n, plan->holes + t->at);
			kvc_fill_set_live(pool, t->c, t->c->nr_live - t->n);
		}
		return err;
	}
	r->res->copy_ns += kvc_now_ns() - t0;
	kvc_ladder_touch(pool->ladder, chunk_index(pool, src));
	for (i = 0; i < n; i++) {
		local = plan->moves[i].from - first;
		c = &pool->chunks[block_chunk(pool, plan->moves[i].to)];
		c->owner[block_local(pool, plan->moves[i].to)] =
			plan->moves[i].owner;
		clear_bit(src->live, local);
		src->free_stack[pool->bpc - src->nr_live + i] = (uint16_t)local;
	}
	kvc_fill_set_live(pool, src, src->nr_live - n);
	r->holes_left -= n;
	r->res->blocks_moved += n;
	r->res->bytes_copied += n * bb;
	pool->blocks_moved += n;
	pool->bytes_copied += n * bb;
	if (pool->rec)
		rec_moves(r, n);
	if (pool->move_fn)
		pool->move_fn(pool->move_arg, plan->moves, n);
	return 0;
}

/* Move every live block out of @src, in batches. */
static int vacate(struct run *r, struct kvc_chunk *src)
{
	struct kvc_compact_plan *plan = r->plan;
	struct kvc_pool *pool = r->pool;
	uint32_t first = chunk_index(pool, src) * pool->bpc;
	uint32_t words = (pool->bpc + 63) / 64, w, n;
	uint64_t word;
	int err;

	while (src->nr_live) {
		/* Moved blocks leave the bitmap: each pass starts over. */
		for (n = 0, w = 0; w < words && n < BATCH; w++) {
			for (word = src->live[w]; word && n < BATCH;
			     word &= word - 1) {
				uint32_t local = w * 64 + __builtin_ctzll(word);

				plan->moves[n].from = first + local;
				plan->moves[n].owner = src->owner[local];
				n++;
			}
		}
		err = move_batch(r, src, n);
		if (err)
			return err;
	}
	return 0;
}

/*
 * Stamp every chunk the copies may read or write with their fence: the
 * vacated ones, but also the destinations and a source a failed batch left
 * part-way, which frees may empty before the copies have run.
 */
static void stamp_chunks(struct kvc_compact_plan *plan, uint64_t seq)
{
	struct kvc_pool *pool = plan->pool;
	uint32_t i;

	for (i = 0; i < plan->nr_src + plan->nr_dst; i++) {
		uint32_t idx = i < plan->nr_src ? plan->src[i] :
						  plan->dst[i - plan->nr_src];

		if (chunk_mapped(&pool->chunks[idx]))
			pool->chunks[idx].fence_seq = seq;
	}
}

/*
 * Make the copies' completion the condition for unmapping the chunks they
 * touch, and order the caller's later work after them. Lock held.
 */
static int fence_copies(struct run *r)
{
	struct kvc_compact_plan *plan = r->plan;
	struct kvc_pool *pool = r->pool;
	const struct kvc_backend_ops *ops = pool->be->ops;
	uint64_t token, seq = 0, t0 = kvc_now_ns();
	int err;

	err = ops->fence_record(pool->be, &pool->va, &token);
	if (err) {
		/* Cannot wait on a point: wait for all the copies instead. */
		ops->fence(pool->be, &pool->va);
		goto out;
	}
	if (plan->has_fence && plan->fence.kind == KVC_FENCE_CUDA_STREAM &&
	    !ops->fence_signal(pool->be, &pool->va, token, &plan->fence)) {
		kvc_fence_push(pool, token, &seq);
		if (seq)
			stamp_chunks(plan, seq);
	} else {
		/* No stream to order the caller after us: finish the copies. */
		err = ops->fence_sync(pool->be, &pool->va, token);
		ops->fence_put(pool->be, &pool->va, token);
		if (err)
			ops->fence(pool->be, &pool->va);
	}
out:
	r->res->copy_ns += kvc_now_ns() - t0;
	return err;
}

/* Run a plan. Lock held. */
static int execute_locked(struct kvc_compact_plan *plan,
			  struct kvc_compact_result *res)
{
	struct kvc_pool *pool = plan->pool;
	struct run r = { plan, pool, res, 0, 0, false, { { 0 } } };
	uint64_t t0 = kvc_now_ns(), t1, released = pool->chunks_released;
	uint32_t i, nr_vacated = 0;
	struct kvc_chunk *c;
	int err = 0, ret;

	*res = plan->planned;
	plan->ran = true;
	r.holes_left = count_holes(&r);
	if (plan->has_fence && plan->nr_src) {
		err = pool->be->ops->fence_after(pool->be, &pool->va,
						 &plan->fence);
		if (err)
			goto out;
	}
	for (i = 0; i < plan->nr_src; i++) {
		c = &pool->chunks[plan->src[i]];
		/* Freed since planning: nothing left to move. */
		if (!chunk_mapped(c) || !c->nr_live)
			continue;
		if (c->nr_live > r.holes_left) {
			res->chunks_skipped++;
			continue;
		}
		err = vacate(&r, c);
		if (err)
			break;
		nr_vacated++;
	}
	if (res->blocks_moved) {
		ret = fence_copies(&r);
		if (!err)
			err = ret;
	}
out:
	res->chunks_vacated = nr_vacated;
	pool->chunks_vacated += nr_vacated;
	pool->compactions++;
	if (err)
		pool->compact_failures++;
	t1 = kvc_now_ns();
	res->move_ns = t1 - t0 - res->copy_ns;
	kvc_pool_trim_locked(pool, pool->empty_kept);
	res->unmap_ns = kvc_now_ns() - t1;
	res->chunks_released = (uint32_t)(pool->chunks_released - released);
	kvc_pool_publish(pool);
	return err;
}

static void plan_destroy(struct kvc_compact_plan *plan)
{
	free(plan->src);
	free(plan->dst);
	free(plan);
}

/* The caller's result, or @scratch when it passed none; zeroed. */
static struct kvc_compact_result *zeroed(struct kvc_compact_result *res,
					 struct kvc_compact_result *scratch)
{
	if (!res)
		res = scratch;
	memset(res, 0, sizeof(*res));
	return res;
}

int kvc_compact_plan(struct kvc_pool *pool,
		     const struct kvc_compact_params *params,
		     struct kvc_compact_plan **plan,
		     struct kvc_compact_result *res)
{
	int err;

	if (!pool || !plan)
		return kvc_err(-EINVAL, "kvc_compact_plan: NULL %s",
			       pool ? "plan" : "pool");
	err = kvc_fence_valid(params ? params->fence : NULL,
			      "kvc_compact_plan");
	if (err)
		return err;
	pthread_mutex_lock(&pool->lock);
	err = plan_alloc(pool, params, plan);
	pthread_mutex_unlock(&pool->lock);
	if (!err && res)
		*res = (*plan)->planned;
	return err;
}

int kvc_compact_execute(struct kvc_compact_plan *plan,
			struct kvc_compact_result *res)
{
	struct kvc_compact_result scratch;
	struct kvc_pool *pool;
	int err;

	if (!plan)
		return kvc_err(-EINVAL, "kvc_compact_execute: NULL plan");
	res = zeroed(res, &scratch);
	/*
	 * A destroyed pool has orphaned the plan; its memory is gone, so the
	 * plan's pool pointer is the only thing that may be read here.
	 */
	pool = plan->pool;
	if (!pool)
		return kvc_err(-ESHUTDOWN,
			       "kvc_compact_execute: the pool was destroyed");
	pthread_mutex_lock(&pool->lock);
	if (plan->ran)
		err = kvc_err(-EALREADY,
			      "kvc_compact_execute: the plan has already run");
	else
		err = execute_locked(plan, res);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

void kvc_compact_plan_free(struct kvc_compact_plan *plan)
{
	struct kvc_pool *pool;

	if (!plan)
		return;
	pool = plan->pool;
	if (pool) {
		pthread_mutex_lock(&pool->lock);
		list_del_init(&plan->link);
		pthread_mutex_unlock(&pool->lock);
	}
	plan_destroy(plan);
}

/**
 * kvc_compact_orphan_plans() - Cut the plans loose from a dying pool.
 * @pool: the pool being destroyed.
 *
 * Their execute then fails with -ESHUTDOWN and their free touches nothing
 * of the pool.
 */
void kvc_compact_orphan_plans(struct kvc_pool *pool)
{
	struct kvc_compact_plan *plan;

	while (!list_empty(&pool->plans)) {
		plan = list_first_entry(&pool->plans, struct kvc_compact_plan,
					link);
		list_del_init(&plan->link);
		plan->pool = NULL;
	}
}

/* Plan and run under one hold of the lock: nothing changes in between. */
static int compact_locked(struct kvc_pool *pool,
			  const struct kvc_compact_params *params,
			  struct kvc_compact_result *res, bool tick)
{
	struct kvc_compact_plan *plan;
	int err;

	err = plan_alloc(pool, params, &plan);
	if (err)
		return err;
	plan->tick = tick;
	err = execute_locked(plan, res);
	list_del_init(&plan->link);
	plan_destroy(plan);
	return err;
}

int kvc_pool_compact(struct kvc_pool *pool,
		     const struct kvc_compact_params *params,
		     struct kvc_compact_result *res)
{
	struct kvc_compact_result scratch;
	int err;

	res = zeroed(res, &scratch);
	if (!pool)
		return kvc_err(-EINVAL, "kvc_pool_compact: NULL pool");
	err = kvc_fence_valid(params ? params->fence : NULL,
			      "kvc_pool_compact");
	if (err)
		return err;
	pthread_mutex_lock(&pool->lock);
	err = compact_locked(pool, params, res, false);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

static double compact_score(const struct kvc_pool *pool)
{
	return pool->nr_mapped ?
		       (double)kvc_pool_reclaimable(pool) / pool->nr_mapped :
		       0;
}

int kvc_pool_compact_tick(struct kvc_pool *pool, const struct kvc_fence *fence,
			  struct kvc_compact_result *res)
{
	struct kvc_compact_params params = { 0 };
	struct kvc_compact_result scratch;
	int err;

	res = zeroed(res, &scratch);
	if (!pool)
		return kvc_err(-EINVAL, "kvc_pool_compact_tick: NULL pool");
	if (!(pool->compact_high > 0))
		return kvc_err(
			-EINVAL,
			"kvc_pool_compact_tick: the pool has no compaction marks (compact_high is 0)");
	err = kvc_fence_valid(fence, "kvc_pool_compact_tick");
	if (err)
		return err;
	pthread_mutex_lock(&pool->lock);
	/* Hysteresis, as kcompactd's: start at the high mark, stop at low. */
	if (!pool->compact_active && compact_score(pool) >= pool->compact_high)
		pool->compact_active = true;
	if (pool->compact_active && compact_score(pool) <= pool->compact_low)
		pool->compact_active = false;
	if (!pool->compact_active) {
		pthread_mutex_unlock(&pool->lock);
		return 0;
	}
	params.max_bytes = pool->compact_budget;
	params.max_chunks = pool->compact_chunks;
	params.fence = fence;
	err = compact_locked(pool, &params, res, true);
	if (compact_score(pool) <= pool->compact_low)
		pool->compact_active = false;
	pthread_mutex_unlock(&pool->lock);
	return err ? err : 1;
}
