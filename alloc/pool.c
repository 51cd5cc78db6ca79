// SPDX-License-Identifier: MIT
/*
 * The block pool: one reservation, chunks mapped on demand, blocks handed
 * out fullest-chunk-first and taken back in O(1). Every call is
 * all-or-nothing: a failed alloc or free leaves the pool exactly as it was.
 * Never unmaps a chunk with a live block; never drops a live block.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/error.h>
#include <kvc/pool.h>

#include "error.h"
#include "internal.h"
#include "ladder.h"
#include "recorder.h"
#include "stats.h"

void kvc_pool_params_init(struct kvc_pool_params *params)
{
	memset(params, 0, sizeof(*params));
	params->empty_chunks_kept = 1;
	params->backend_kind = KVC_BACKEND_AUTO;
}

static int check_params(const struct kvc_pool_params *p, uint64_t gran,
			uint64_t *chunk_bytes, uint64_t *nr_chunks)
{
	uint64_t chunk = p->chunk_bytes ? p->chunk_bytes : gran;
	uint64_t bpc, blocks, chunks, bytes;

	if (!p->block_bytes)
		return kvc_err(-EINVAL, "block_bytes is 0");
	if (chunk % gran)
		return kvc_err(
			-EINVAL,
			"chunk_bytes %llu is not a multiple of the backend's granularity %llu",
			(unsigned long long)chunk, (unsigned long long)gran);
	if (chunk % p->block_bytes)
		return kvc_err(
			-EINVAL,
			"block_bytes %llu does not divide chunk_bytes %llu",
			(unsigned long long)p->block_bytes,
			(unsigned long long)chunk);
	bpc = chunk / p->block_bytes;
	if (bpc > KVC_MAX_BLOCKS_PER_CHUNK)
		return kvc_err(
			-EINVAL,
			"%llu blocks per chunk, at most %u: use larger blocks or smaller chunks",
			(unsigned long long)bpc, KVC_MAX_BLOCKS_PER_CHUNK);
	if (p->capacity_blocks) {
		blocks = p->capacity_blocks;
	} else if (p->va_bytes) {
		blocks = p->va_bytes / p->block_bytes +
			 !!(p->va_bytes % p->block_bytes);
	} else {
		return kvc_err(-EINVAL,
			       "no capacity: set capacity_blocks or va_bytes");
	}
	if (blocks > KVC_MAX_BLOCKS)
		return kvc_err(-EINVAL,
			       "capacity of %llu blocks is beyond 2^32",
			       (unsigned long long)blocks);
	chunks = blocks / bpc + !!(blocks % bpc);
	if (chunks * bpc > KVC_MAX_BLOCKS || chunks >= UINT32_MAX)
		return kvc_err(
			-EINVAL,
			"capacity rounded to %llu chunks of %llu blocks is beyond 2^32 blocks",
			(unsigned long long)chunks, (unsigned long long)bpc);
	if (__builtin_mul_overflow(chunks, chunk, &bytes))
		return kvc_err(
			-EINVAL, "%llu chunks of %llu bytes overflow 64 bits",
			(unsigned long long)chunks, (unsigned long long)chunk);
	if (p->max_mapped_bytes && p->max_mapped_bytes < chunk)
		return kvc_err(
			-EINVAL,
			"max_mapped_bytes %llu is less than one chunk (%llu)",
			(unsigned long long)p->max_mapped_bytes,
			(unsigned long long)chunk);
	/* The score stays below 1: a high mark of 1 would never be met. */
	if (!(p->compact_high >= 0 && p->compact_high < 1) ||
	    (p->compact_high > 0 &&
	     !(p->compact_low >= 0 && p->compact_low < p->compact_high)))
		return kvc_err(
			-EINVAL,
			"compaction marks high %g, low %g: need 0 <= low < high < 1 (high 0 = off)",
			p->compact_high, p->compact_low);
	if ((unsigned)p->placement > KVC_PLACE_RANDOM)
		return kvc_err(-EINVAL, "unknown placement policy %d",
			       (int)p->placement);
	if (p->compact_budget_bytes && p->compact_budget_bytes < chunk)
		return kvc_err(
			-EINVAL,
			"compact_budget_bytes %llu is less than one chunk (%llu): proactive compaction could never vacate one",
			(unsigned long long)p->compact_budget_bytes,
			(unsigned long long)chunk);
	*chunk_bytes = chunk;
	*nr_chunks = chunks;
	return 0;
}

/*
 * The fragmentation figures, for a request of one whole chunk: the unit a
 * pool can give back to the device. Free space is counted inside mapped
 * chunks only; unmapped capacity is not memory the pool holds.
 */
static void fill_frag_stats(struct kvc_pool *pool, struct kvc_pool_stats *st)
{
	uint64_t bpc = pool->bpc, empty = st->chunks_empty;
	uint64_t free = st->blocks_free_mapped;
	double index;

	st->free_blocks_in_partial_chunks = free - empty * bpc;
	st->free_chunks_mapped = empty;
	st->chunks_reclaimable = kvc_pool_reclaimable(pool);
	st->compactions = pool->compactions;
	st->blocks_moved = pool->blocks_moved;
	st->bytes_copied = pool->bytes_copied;
	st->chunks_vacated = pool->chunks_vacated;
	st->chunks_released = pool->chunks_released;
	st->compact_failures = pool->compact_failures;
	st->fences_pending = pool->fences.nr;
	st->chunks_unmap_deferred = pool->unmap_deferred;
	if (!st->bytes_mapped)
		st->frag_ratio = 0;
	else if (!st->bytes_live)
		st->frag_ratio = INFINITY;
	else
		st->frag_ratio =
			(double)st->bytes_mapped / (double)st->bytes_live - 1;
	/* As mm/vmstat.c: 1 when nothing is free, -1 when the request fits. */
	st->unusable_index = free ? (double)st->free_blocks_in_partial_chunks /
					     (double)free :
				    1;
	if (!free) {
		st->fragmentation_index = 0;
	} else if (empty) {
		st->fragmentation_index = -1;
	} else {
		index = 1 - (1 + (double)free / (double)bpc) /
				    (double)st->chunks_partial;
		/*
		 * Few partial chunks holding much free space: failing for
		 * lack of memory, not fragmentation. The kernel's formula
		 * dips below 0 there; 0 says the same thing.
		 */
		st->fragmentation_index = index < 0 ? 0 : index;
	}
	st->compact_score = st->chunks_mapped ?
				    (double)st->chunks_reclaimable /
					    (double)st->chunks_mapped :
				    0;
}

static void fill_stats(struct kvc_pool *pool, struct kvc_pool_stats *st)
{
	const struct kvc_backend_calls *calls = &pool->va.calls;
	uint64_t empty = pool->fill.hist[0];
	uint64_t full = pool->fill.hist[KVC_FILL_BUCKETS - 1];

	memset(st, 0, sizeof(*st));
	st->block_bytes = pool->block_bytes;
	st->chunk_bytes = pool->chunk_bytes;
	st->blocks_per_chunk = pool->bpc;
	st->blocks_total = pool->nr_blocks;
	st->blocks_live = pool->nr_live;
	st->blocks_free = st->blocks_total - pool->nr_live;
	st->blocks_free_mapped =
		(uint64_t)pool->nr_mapped * pool->bpc - pool->nr_live;
	st->chunks_total = pool->nr_chunks;
	st->chunks_mapped = pool->nr_mapped;
	st->chunks_empty = empty;
	st->chunks_full = full;
	st->chunks_partial = pool->nr_mapped - empty - full;
	st->bytes_reserved = pool->va.bytes;
	st->bytes_mapped = (uint64_t)pool->nr_mapped * pool->chunk_bytes;
	st->bytes_live = pool->nr_live * pool->block_bytes;
	st->blocks_live_hwm = pool->live_hwm;
	st->bytes_mapped_hwm = (uint64_t)pool->mapped_hwm * pool->chunk_bytes;
	st->alloc_calls = pool->alloc_calls;
	st->free_calls = pool->free_calls;
	st->alloc_failures = pool->alloc_failures;
	st->unmap_failures = pool->unmap_failures;
	st->backend_create = calls->create;
	st->backend_map = calls->map;
	st->backend_set_access = calls->set_access;
	st->backend_unmap = calls->unmap;
	st->backend_release = calls->release;
	st->backend_copy = calls->copy;
	st->map_ns = pool->map_ns;
	st->map_ns_max = pool->map_ns_max;
	st->unmap_ns = pool->unmap_ns;
	st->unmap_ns_max = pool->unmap_ns_max;
	st->placement = pool->placement;
	fill_frag_stats(pool, st);
}

/*
 * Called at the end of every operation, under the lock. Debug builds
 * (make DEBUG=1) check every invariant here, as mimalloc's do, and stop at
 * the first operation that breaks one.
 */
void kvc_pool_publish(struct kvc_pool *pool)
{
	struct kvc_pool_stats st;

#ifdef KVC_DEBUG
	if (kvc_pool_check_locked(pool)) {
		kvc_notice("pool invariant broken: %s", kvc_last_error());
		abort();
	}
#endif
	if (!pool->pub)
		return;
	fill_stats(pool, &st);
	kvc_stats_pub_update(pool->pub, &st, pool->fill.hist);
}

static int open_backend(const struct kvc_pool_params *p, struct kvc_pool *pool)
{
	int err;

	if (p->backend) {
		pool->be = p->backend;
		return 0;
	}
	err = kvc_backend_open(p->backend_kind, p->device, &pool->be);
	if (err)
		return err;
	pool->own_be = true;
	return 0;
}

int kvc_pool_create(const struct kvc_pool_params *params, struct kvc_pool **out)
{
	uint64_t chunk_bytes = 0, nr_chunks = 0, i;
	struct kvc_pool *pool;
	int err;

	if (!params || !out)
		return kvc_err(-EINVAL, "kvc_pool_create: NULL %s",
			       params ? "out" : "params");
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return kvc_err(-ENOMEM, "out of memory for the pool");
	err = open_backend(params, pool);
	if (err)
		goto err_free;
	err = check_params(params, pool->be->granularity, &chunk_bytes,
			   &nr_chunks);
	if (err)
		goto err_backend;
	pool->block_bytes = params->block_bytes;
	pool->chunk_bytes = chunk_bytes;
	pool->bpc = (uint32_t)(chunk_bytes / params->block_bytes);
	pool->div = kvc_divisor(pool->bpc);
	pool->nr_chunks = (uint32_t)nr_chunks;
	pool->nr_blocks = nr_chunks * pool->bpc;
	pool->max_mapped = pool->nr_chunks;
	if (params->max_mapped_bytes &&
	    params->max_mapped_bytes / chunk_bytes < nr_chunks)
		pool->max_mapped =
			(uint32_t)(params->max_mapped_bytes / chunk_bytes);
	pool->empty_kept = params->empty_chunks_kept;
	pool->fences.next_seq = 1;
	list_init(&pool->plans);
	pool->compact_high = params->compact_high;
	pool->compact_low = params->compact_low;
	pool->compact_budget = params->compact_budget_bytes;
	pool->compact_chunks = params->compact_budget_chunks;
	pool->placement = params->placement;
	if (params->name)
		snprintf(pool->name, sizeof(pool->name), "%s", params->name);
	/* xorshift64 must not start at 0. */
	pool->place_rng = params->placement_seed ? params->placement_seed :
						   0x9e3779b97f4a7c15ull;

	pool->chunks = calloc(nr_chunks, sizeof(*pool->chunks));
	pool->unmapped = malloc(nr_chunks * sizeof(*pool->unmapped));
	if (!pool->chunks || !pool->unmapped) {
		err = kvc_err(-ENOMEM,
			      "out of memory for %llu chunk descriptors",
			      (unsigned long long)nr_chunks);
		goto err_arrays;
	}
	err = kvc_fill_init(&pool->fill, pool->bpc);
	if (err)
		goto err_arrays;
	/* Lowest chunk on top, so the pool grows from the base upwards. */
	for (i = 0; i < nr_chunks; i++) {
		list_init(&pool->chunks[i].link);
		pool->unmapped[i] = (uint32_t)(nr_chunks - 1 - i);
	}
	pool->nr_unmapped = pool->nr_chunks;

	err = pool->be->ops->reserve(pool->be, nr_chunks * chunk_bytes,
				     &pool->va);
	if (err)
		goto err_fill;
	err = pthread_mutex_init(&pool->lock, NULL);
	if (err) {
		err = kvc_err(-err, "pthread_mutex_init failed");
		goto err_reserve;
	}
	if (!(params->flags & KVC_POOL_NO_STATS_PAGE)) {
		/* A pool without a page still works: say so, carry on. */
		if (kvc_stats_pub_open(pool->be->name, pool->be->device,
				       params->name, &pool->pub))
			kvc_notice("no stats page: %s", kvc_last_error());
		kvc_pool_publish(pool);
	}
	*out = pool;
	return 0;

err_reserve:
	pool->be->ops->release(pool->be, &pool->va);
err_fill:
	kvc_fill_exit(&pool->fill);
err_arrays:
	free(pool->unmapped);
	free(pool->chunks);
err_backend:
	if (pool->own_be)
		kvc_backend_close(pool->be);
err_free:
	free(pool);
	return err;
}

static int rec_snapshot(struct kvc_pool *pool, struct kvc_recorder *rec);

int kvc_pool_destroy(struct kvc_pool *pool)
{
	bool mapped_left = false;
	char msg[256] = "";
	int err = 0, ret;
	uint32_t i;

	if (!pool)
		return 0;
	/*
	 * A recorder still attached is detached first, with the closing
	 * snapshot kvc_pool_set_recorder(pool, NULL) writes. The teardown
	 * below unmaps chunks that still hold blocks: recorded, that would
	 * be a trace no replay accepts. A write error stays with the
	 * recorder, for its close to report.
	 */
	if (pool->rec) {
		pthread_mutex_lock(&pool->lock);
		rec_snapshot(pool, pool->rec);
		pool->rec = NULL;
		pthread_mutex_unlock(&pool->lock);
	}
	kvc_compact_orphan_plans(pool);
	/*
	 * No chunk is unmapped under running work, even at the end: a chunk
	 * whose fence cannot be waited for is left mapped, and leaked.
	 */
	ret = kvc_fence_wait_all(pool);
	if (ret == -EAGAIN)
		ret = kvc_fence_wait_all(pool);
	if (ret) {
		err = ret;
		snprintf(msg, sizeof(msg), "%s", kvc_last_error());
	}
	for (i = 0; i < pool->nr_chunks; i++) {
		struct kvc_chunk *c = &pool->chunks[i];

		if (!chunk_mapped(c))
			continue;
		kvc_fill_del(pool, c);
		c->nr_live = 0;
		ret = kvc_chunk_unmap(pool, c);
		if (ret) {
			/* Try once more: a transient device error should not leak. */
			ret = kvc_chunk_unmap(pool, c);
		}
		if (ret && !err) {
			err = ret;
			snprintf(msg, sizeof(msg), "%s", kvc_last_error());
		}
		if (ret) {
			free(c->owner);
			mapped_left = true;
		}
	}
	/* A reservation with a chunk still mapped cannot be released. */
	if (!mapped_left) {
		ret = pool->be->ops->release(pool->be, &pool->va);
		if (ret) /* as above: one retry for a transient error */
			ret = pool->be->ops->release(pool->be, &pool->va);
		if (ret) {
			err = ret;
			snprintf(msg, sizeof(msg), "%s", kvc_last_error());
		}
	}
	kvc_stats_pub_close(pool->pub);
	kvc_ladder_state_free(pool->ladder);
	kvc_fence_exit(pool);
	pthread_mutex_destroy(&pool->lock);
	kvc_fill_exit(&pool->fill);
	free(pool->unmapped);
	free(pool->chunks);
	if (pool->own_be)
		kvc_backend_close(pool->be);
	free(pool);
	if (err)
		kvc_err(err, "pool destroyed, device memory leaked: %s", msg);
	return err;
}

/*
 * Event hooks. Each runs with the pool lock held, right after the change
 * it describes (the ordering rule in record.c), and only when a recorder
 * is attached: callers test pool->rec first, so an unrecorded pool pays
 * one predictable branch. A recorder's error is kept by the recorder and
 * reported at its close; the pool operation itself has succeeded.
 */

/* A call and its per-block records, as one group. */
static void rec_ids(struct kvc_pool *pool, enum kvc_rec_kind call, uint64_t arg,
		    enum kvc_rec_kind each, uint32_t n, const uint32_t *ids)
{
	uint64_t p[KVC_REC_PAYLOAD] = { n, arg };
	uint32_t i;

	kvc_recorder_lock(pool->rec);
	kvc_recorder_emit_locked(pool->rec, call, p);
	p[1] = 0;
	for (i = 0; i < n; i++) {
		p[0] = ids[i];
		kvc_recorder_emit_locked(pool->rec, each, p);
	}
	kvc_recorder_unlock(pool->rec);
}

/* Every mapped chunk and live block, so a trace replays from here. */
static int rec_snapshot(struct kvc_pool *pool, struct kvc_recorder *rec)
{
	uint64_t p[KVC_REC_PAYLOAD] = { pool->nr_mapped, pool->nr_live };
	uint32_t i, w, words = (pool->bpc + 63) / 64;
	int err;

	kvc_recorder_lock(rec);
	err = kvc_recorder_emit_locked(rec, KVC_REC_SNAPSHOT, p);
	p[1] = 0;
	for (i = 0; i < pool->nr_chunks; i++) {
		if (!chunk_mapped(&pool->chunks[i]))
			continue;
		p[0] = i;
		err = kvc_recorder_emit_locked(rec, KVC_REC_SNAP_CHUNK, p);
	}
	for (i = 0; i < pool->nr_chunks; i++) {
		const struct kvc_chunk *c = &pool->chunks[i];

		if (!chunk_mapped(c) || !c->nr_live)
			continue;
		for (w = 0; w < words; w++) {
			uint64_t word;

			for (word = c->live[w]; word; word &= word - 1) {
				uint32_t local = w * 64 + __builtin_ctzll(word);

				p[0] = (uint64_t)i * pool->bpc + local;
				p[1] = c->owner[local];
				err = kvc_recorder_emit_locked(
					rec, KVC_REC_SNAP_BLOCK, p);
			}
		}
	}
	kvc_recorder_unlock(rec);
	return err;
}

/* The configuration and names a trace starts with. */
static int rec_config(struct kvc_pool *pool, struct kvc_recorder *rec)
{
	uint64_t p[KVC_REC_PAYLOAD] = { pool->block_bytes, pool->chunk_bytes,
					pool->nr_blocks,   pool->empty_kept,
					pool->placement,   pool->max_mapped };
	int err;

	err = kvc_recorder_emit(rec, KVC_REC_CONFIG, p);
	if (!err && pool->name[0])
		err = kvc_recorder_name(rec, KVC_REC_NAME_POOL, pool->name);
	if (!err)
		err = kvc_recorder_name(rec, KVC_REC_NAME_BACKEND,
					pool->be->name);
	return err;
}

int kvc_pool_set_recorder(struct kvc_pool *pool, struct kvc_recorder *rec)
{
	int err = 0;

	if (!pool)
		return kvc_err(-EINVAL, "kvc_pool_set_recorder: NULL pool");
	pthread_mutex_lock(&pool->lock);
	if (rec == pool->rec)
		goto out;
	if (rec && pool->rec) {
		err = kvc_err(
			-EBUSY,
			"kvc_pool_set_recorder: the pool is recorded already; detach first");
		goto out;
	}
	if (rec) {
		err = rec_config(pool, rec);
		if (!err && pool->nr_mapped)
			err = rec_snapshot(pool, rec);
		if (!err)
			pool->rec = rec;
	} else {
		/* The closing snapshot, always: a replay ends where we are. */
		err = rec_snapshot(pool, pool->rec);
		pool->rec = NULL;
	}
	if (err)
		err = kvc_err(err,
			      "kvc_pool_set_recorder: recording failed: %s",
			      strerror(-err));
out:
	pthread_mutex_unlock(&pool->lock);
	return err;
}

/*
 * Unmap empty chunks until at most @keep stay mapped (never more than the
 * watermark), oldest first: recent ones are likeliest reused. A chunk
 * whose fence is pending stays and counts as kept; it moves to the front,
 * so that each pass looks at each empty chunk at most once. Lock held.
 */
int kvc_pool_trim_locked(struct kvc_pool *pool, uint32_t keep)
{
	struct list_head *empties = &pool->fill.lists[0];
	uint64_t left = pool->fill.hist[0];
	struct kvc_chunk *c;
	int err = 0;

	/* Every trim retires what has completed, so fences cannot pile up. */
	if (pool->fences.nr)
		kvc_fence_poll(pool);
	if (keep > pool->empty_kept)
		keep = pool->empty_kept;
	for (; left && pool->fill.hist[0] > keep; left--) {
		c = list_last_entry(empties, struct kvc_chunk, link);
		if (chunk_fenced(pool, c)) {
			list_move(&c->link, empties);
			continue;
		}
		err = kvc_pool_unmap_to_stack(pool, c);
		if (err) {
			pool->unmap_failures++;
			break;
		}
	}
	/* Left beyond @keep: chunks a fence holds (or a refused unmap). */
	pool->unmap_deferred =
		pool->fill.hist[0] > keep ? pool->fill.hist[0] - keep : 0;
	return err;
}

int kvc_pool_map_from_stack(struct kvc_pool *pool, uint32_t at)
{
	struct kvc_chunk *c = &pool->chunks[pool->unmapped[at]];
	int err;

	err = kvc_chunk_map(pool, c);
	if (err)
		return err;
	/* Keep the stack's order: grows pop from its top. */
	memmove(&pool->unmapped[at], &pool->unmapped[at + 1],
		(pool->nr_unmapped - at - 1) * sizeof(*pool->unmapped));
	pool->nr_unmapped--;
	/* Here, not after an alloc: a failed one may leave it mapped. */
	if (++pool->nr_mapped > pool->mapped_hwm)
		pool->mapped_hwm = pool->nr_mapped;
	kvc_fill_add(pool, c);
	return 0;
}

int kvc_pool_unmap_to_stack(struct kvc_pool *pool, struct kvc_chunk *c)
{
	int err;

	kvc_fill_del(pool, c);
	err = kvc_chunk_unmap(pool, c);
	if (err) {
		kvc_fill_add(pool, c);
		return err;
	}
	pool->nr_mapped--;
	pool->unmapped[pool->nr_unmapped++] = chunk_index(pool, c);
	return 0;
}

/* Map @n more chunks as empty ones; all or none. Lock held. */
static int grow_locked(struct kvc_pool *pool, uint32_t n)
{
	struct kvc_chunk *c;
	uint32_t i, k, top;
	int err;

	for (i = 0; i < n; i++) {
		err = kvc_pool_map_from_stack(pool, pool->nr_unmapped - 1);
		if (err)
			goto err_unwind;
	}
	return 0;

err_unwind:
	/*
	 * Give back what this call mapped: their indices still sit just
	 * above the stack's top, the latest first. Should the device refuse
	 * an unmap now, that chunk stays mapped and empty: the pool is still
	 * consistent, and a later trim retries.
	 */
	for (top = pool->nr_unmapped, k = 0; k < i; k++) {
		c = &pool->chunks[pool->unmapped[top + k]];
		/* Pushes to a slot at or below top + k, already read. */
		if (kvc_pool_unmap_to_stack(pool, c))
			pool->unmap_failures++;
	}
	return err;
}

int kvc_pool_alloc(struct kvc_pool *pool, uint32_t n, uint32_t *ids)
{
	uint64_t free_mapped, need;
	struct kvc_chunk *c;
	uint32_t done = 0, taken;
	int err;

	if (!pool)
		return kvc_err(-EINVAL, "kvc_pool_alloc: NULL pool");
	if (!n)
		return 0;
	pthread_mutex_lock(&pool->lock);
	if (!ids) {
		err = kvc_err(-EINVAL, "kvc_pool_alloc: NULL ids");
		goto out_fail;
	}
	free_mapped = (uint64_t)pool->nr_mapped * pool->bpc - pool->nr_live;
	if (n > free_mapped) {
		uint32_t room = pool->max_mapped - pool->nr_mapped;

		if (room > pool->nr_unmapped)
			room = pool->nr_unmapped;
		need = (n - free_mapped + pool->bpc - 1) / pool->bpc;
		if (need > room) {
			err = kvc_err(
				-ENOMEM,
				"%u blocks wanted, %llu to be had within %s", n,
				(unsigned long long)(free_mapped +
						     (uint64_t)room *
							     pool->bpc),
				pool->max_mapped < pool->nr_chunks ?
					"the mapped-bytes cap" :
					"the capacity");
			goto out_fail;
		}
		err = grow_locked(pool, (uint32_t)need);
		if (err)
			goto out_fail;
	}
	while (done < n) {
		c = kvc_place(pool);
		taken = kvc_chunk_take(pool, c, n - done, ids + done);
		kvc_fill_set_live(pool, c, c->nr_live + taken);
		done += taken;
	}
	pool->nr_live += n;
	if (pool->nr_live > pool->live_hwm)
		pool->live_hwm = pool->nr_live;
	pool->alloc_calls++;
	if (pool->rec)
		rec_ids(pool, KVC_REC_ALLOC, 0, KVC_REC_BLK_ALLOC, n, ids);
	kvc_pool_publish(pool);
	pthread_mutex_unlock(&pool->lock);
	return 0;

out_fail:
	pool->alloc_failures++;
	if (pool->rec)
		kvc_rec3(pool->rec, KVC_REC_ALLOC_FAIL, n,
			 (uint64_t)pool->nr_mapped * pool->bpc - pool->nr_live,
			 (uint64_t)(int64_t)err);
	kvc_pool_publish(pool);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

/* The chunk of a live block, or NULL. Lock held. */
static struct kvc_chunk *live_chunk(struct kvc_pool *pool, uint32_t id)
{
	struct kvc_chunk *c;

	if (id >= pool->nr_blocks)
		return NULL;
	c = &pool->chunks[block_chunk(pool, id)];
	/* An unmapped chunk has no bitmap: one load answers both questions. */
	if (!c->live || !test_bit(c->live, block_local(pool, id)))
		return NULL;
	return c;
}

/*
 * The loop of kvc_pool_free(), inlined twice so that the division by
 * blocks-per-chunk is a plain shift, or a plain multiply, in each copy.
 * One pass validates and frees; the chunks it touches are chained through
 * @next_freeing, their counts and lists updated once at the end, or, on a
 * bad id, their blocks put back as they were.
 * Return: 0, or the index of the first bad id plus one.
 */
static inline __attribute__((always_inline)) uint32_t
free_blocks(struct kvc_pool *pool, uint32_t n, const uint32_t *ids,
	    uint64_t seq, const bool pow2)
{
	struct kvc_chunk *chunks = pool->chunks, *c, *touched = NULL, *next;
	struct kvc_ladder_state *const ladder = pool->ladder;
	const struct kvc_divisor div = pool->div;
	const uint64_t nr_blocks = pool->nr_blocks;
	const uint32_t bpc = pool->bpc;
	uint32_t i, ci, local, top;

	for (i = 0; i < n; i++) {
		if (ids[i] >= nr_blocks)
			goto err_not_live;
		ci = kvc_div_by(div, ids[i], pow2);
		local = ids[i] - ci * bpc;
		c = &chunks[ci];
		/* An unmapped chunk has no bitmap; a repeated id is not live. */
		if (!c->live || !test_bit(c->live, local))
			goto err_not_live;
		clear_bit(c->live, local);
		if (!c->freeing++) {
			c->next_freeing = touched;
			touched = c;
			/* Also when the free is undone: a recount is exact. */
			kvc_ladder_touch(ladder, ci);
		}
		c->free_stack[bpc - c->nr_live + c->freeing - 1] =
			(uint16_t)local;
	}
	for (c = touched; c; c = next) {
		next = c->next_freeing;
		c->next_freeing = NULL;
		if (seq)
			c->fence_seq = seq;
		kvc_fill_set_live(pool, c, c->nr_live - c->freeing);
		c->freeing = 0;
	}
	return 0;

err_not_live:
	/* The pushes sit above each stack's top: read them back, undo them. */
	for (c = touched; c; c = next) {
		next = c->next_freeing;
		top = bpc - c->nr_live;
		while (c->freeing)
			set_bit(c->live, c->free_stack[top + --c->freeing]);
		c->next_freeing = NULL;
	}
	return i + 1;
}

/* Free, stamping the chunks touched with fence @seq (0 = none). */
static int free_locked(struct kvc_pool *pool, uint32_t n, const uint32_t *ids,
		       uint64_t seq)
{
	uint32_t bad;

	if (pool->div.shift >= 0)
		bad = free_blocks(pool, n, ids, seq, true);
	else
		bad = free_blocks(pool, n, ids, seq, false);
	if (bad)
		return kvc_err(
			-EINVAL,
			"block %u (entry %u of %u) is not live or appears twice; nothing freed",
			ids[bad - 1], bad - 1, n);
	pool->nr_live -= n;
	pool->free_calls++;
	/* Before the trim: its unmaps follow the free that emptied them. */
	if (pool->rec)
		rec_ids(pool, KVC_REC_FREE, seq, KVC_REC_BLK_FREE, n, ids);
	/* An unmap the device refuses is counted and retried later. */
	kvc_pool_trim_locked(pool, pool->empty_kept);
	kvc_pool_publish(pool);
	return 0;
}

int kvc_pool_free(struct kvc_pool *pool, uint32_t n, const uint32_t *ids)
{
	int err;

	if (!pool || (n && !ids))
		return kvc_err(-EINVAL, "kvc_pool_free: NULL %s",
			       pool ? "ids" : "pool");
	if (!n)
		return 0;
	pthread_mutex_lock(&pool->lock);
	err = free_locked(pool, n, ids, 0);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

int kvc_pool_free_fenced(struct kvc_pool *pool, uint32_t n, const uint32_t *ids,
			 const struct kvc_fence *fence)
{
	uint64_t seq = 0;
	int err;

	if (!pool || (n && !ids))
		return kvc_err(-EINVAL, "kvc_pool_free_fenced: NULL %s",
			       pool ? "ids" : "pool");
	err = kvc_fence_valid(fence, "kvc_pool_free_fenced");
	if (err || !n)
		return err;
	pthread_mutex_lock(&pool->lock);
	/*
	 * Captured before anything is freed, so that a capture the device
	 * refuses frees nothing. A fence captured for ids that then turn out
	 * bad stamps no chunk, and retires as any other.
	 */
	if (fence)
		err = kvc_fence_capture(pool, fence, &seq);
	if (!err)
		err = free_locked(pool, n, ids, seq);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

int kvc_pool_fence_wait(struct kvc_pool *pool)
{
	int err, ret;

	if (!pool)
		return kvc_err(-EINVAL, "kvc_pool_fence_wait: NULL pool");
	pthread_mutex_lock(&pool->lock);
	err = kvc_fence_wait_all(pool);
	ret = kvc_pool_trim_locked(pool, pool->empty_kept);
	kvc_pool_publish(pool);
	pthread_mutex_unlock(&pool->lock);
	return err ? err : ret;
}

int kvc_pool_trim(struct kvc_pool *pool, uint32_t keep)
{
	int err;

	if (!pool)
		return kvc_err(-EINVAL, "kvc_pool_trim: NULL pool");
	pthread_mutex_lock(&pool->lock);
	err = kvc_pool_trim_locked(pool, keep);
	kvc_pool_publish(pool);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

int kvc_pool_block_addr(struct kvc_pool *pool, uint32_t id, uint64_t *addr)
{
	int err = 0;

	if (!pool || !addr)
		return kvc_err(-EINVAL, "kvc_pool_block_addr: NULL argument");
	pthread_mutex_lock(&pool->lock);
	if (live_chunk(pool, id))
		*addr = pool->va.base + (uint64_t)id * pool->block_bytes;
	else
		err = kvc_err(-EINVAL, "block %u is not live", id);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

uint64_t kvc_pool_base(const struct kvc_pool *pool)
{
	return pool->va.base;
}

int kvc_pool_set_owner(struct kvc_pool *pool, uint32_t id, uint64_t owner)
{
	struct kvc_chunk *c;
	int err = 0;

	if (!pool)
		return kvc_err(-EINVAL, "kvc_pool_set_owner: NULL pool");
	pthread_mutex_lock(&pool->lock);
	c = live_chunk(pool, id);
	if (c) {
		c->owner[block_local(pool, id)] = owner;
		if (pool->rec)
			kvc_rec3(pool->rec, KVC_REC_OWNER, id, owner, 0);
	} else
		err = kvc_err(-EINVAL, "block %u is not live", id);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

int kvc_pool_get_owner(struct kvc_pool *pool, uint32_t id, uint64_t *owner)
{
	struct kvc_chunk *c;
	int err = 0;

	if (!pool || !owner)
		return kvc_err(-EINVAL, "kvc_pool_get_owner: NULL argument");
	pthread_mutex_lock(&pool->lock);
	c = live_chunk(pool, id);
	if (c)
		*owner = c->owner[block_local(pool, id)];
	else
		err = kvc_err(-EINVAL, "block %u is not live", id);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

bool kvc_pool_is_live(struct kvc_pool *pool, uint32_t id)
{
	bool live;

	if (!pool)
		return false;
	pthread_mutex_lock(&pool->lock);
	live = live_chunk(pool, id) != NULL;
	pthread_mutex_unlock(&pool->lock);
	return live;
}

void kvc_pool_get_stats(struct kvc_pool *pool, struct kvc_pool_stats *stats,
			uint64_t *fill_hist)
{
	if (!pool || !stats)
		return;
	pthread_mutex_lock(&pool->lock);
	fill_stats(pool, stats);
	if (fill_hist)
		memcpy(fill_hist, pool->fill.hist, sizeof(pool->fill.hist));
	pthread_mutex_unlock(&pool->lock);
}

struct kvc_backend *kvc_pool_backend(const struct kvc_pool *pool)
{
	return pool->be;
}

const char *kvc_pool_stats_path(const struct kvc_pool *pool)
{
	return kvc_stats_pub_path(pool->pub);
}
