/* SPDX-License-Identifier: MIT */
/*
 * The pool's inner structures, shared by pool.c, chunk.c, fill.c, check.c
 * fence.c and compact.c. Like mm/internal.h: not a public interface.
 */
#ifndef KVC_ALLOC_INTERNAL_H
#define KVC_ALLOC_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <kvc/compact.h>
#include <kvc/pool.h>

#include "backend.h"
#include "bitmap.h"
#include "clock.h"
#include "list.h"

struct kvc_ladder_state;

/* Fill buckets are indexed by live count; more would make them costly. */
#define KVC_MAX_BLOCKS_PER_CHUNK 65536u

/**
 * struct kvc_chunk - One chunk of the reservation.
 * @link: in @fill.lists[@nr_live] while mapped; self-linked otherwise.
 * @nr_live: live blocks in the chunk.
 * @freeing: blocks a kvc_pool_free() in progress has pushed, not yet
 *           counted in @nr_live; 0 between calls.
 * @next_freeing: chains the chunks a free in progress has touched.
 * @handle: the backend's token for the mapping.
 * @fence_seq: the newest fence covering device work on its blocks (0 =
 *             none): the chunk is not unmapped before that fence has
 *             completed (see fence.c).
 * @owner: owner tag per block, meaningful for live blocks (set to 0 when
 *         a block is handed out); NULL while unmapped.
 * @live: bitmap of live blocks.
 * @free_stack: local indices of the free blocks; @bpc - @nr_live of them.
 *
 * The metadata arrays exist only while the chunk is mapped, so the host
 * memory a pool uses follows the device memory it maps.
 */
struct kvc_chunk {
	struct list_head link;
	uint32_t nr_live;
	uint32_t freeing;
	struct kvc_chunk *next_freeing;
	uint64_t handle;
	uint64_t fence_seq;
	uint64_t *owner;
	uint64_t *live;
	uint16_t *free_stack;
};

static inline bool chunk_mapped(const struct kvc_chunk *c)
{
	return c->owner != NULL;
}

/**
 * struct kvc_fill - Mapped chunks sorted by how full they are.
 * @lists: @bpc + 1 lists; list k holds the chunks with k live blocks
 *         (list 0 the empty ones, list @bpc the full ones).
 * @bits: one bit per non-empty partial list (1 .. @bpc - 1).
 * @summary: one bit per non-zero word of @bits.
 * @nr_words: words in @bits.
 * @nr_summary: words in @summary.
 * @column: histogram column of each live count.
 * @hist: mapped chunks per histogram column.
 *
 * Finding the fullest partial chunk is two find-last-set scans, however
 * many chunks the pool has: that keeps allocation O(1) per block.
 */
struct kvc_fill {
	struct list_head *lists;
	uint64_t *bits;
	uint64_t *summary;
	uint32_t nr_words;
	uint32_t nr_summary;
	uint8_t *column;
	uint64_t hist[KVC_FILL_BUCKETS];
};

/**
 * struct kvc_divisor - Division by blocks-per-chunk without a divide.
 * @d: the divisor.
 * @shift: log2(@d) when @d is a power of two, else -1.
 * @magic: 2^64 / @d rounded up (Lemire's multiply-by-inverse).
 *
 * Block id -> chunk runs for every block freed; hot loops copy this to
 * a local so that stores to bitmaps cannot force it to be reloaded.
 */
struct kvc_divisor {
	uint32_t d;
	int shift;
	uint64_t magic;
};

static inline struct kvc_divisor kvc_divisor(uint32_t d)
{
	struct kvc_divisor v = { d, (d & (d - 1)) ? -1 : __builtin_ctz(d),
				 UINT64_MAX / d + 1 };
	return v;
}

/*
 * @pow2 must say whether @v.shift applies; a hot loop that passes a
 * constant gets a copy with no branch (see free_blocks() in pool.c).
 */
static inline uint32_t kvc_div_by(struct kvc_divisor v, uint32_t n, bool pow2)
{
	if (pow2)
		return n >> v.shift;
	return (uint32_t)(((unsigned __int128)v.magic * n) >> 64);
}

static inline uint32_t kvc_div(struct kvc_divisor v, uint32_t n)
{
	return kvc_div_by(v, n, v.shift >= 0);
}

/**
 * struct kvc_fence_slot - A captured fence the pool waits on.
 * @seq: its sequence number, increasing with capture order.
 * @token: the backend's token.
 */
struct kvc_fence_slot {
	uint64_t seq;
	uint64_t token;
};

/**
 * struct kvc_fences - The pool's captured fences, oldest first.
 * @ring: @cap slots; @nr of them in use from @head.
 * @head: the oldest slot.
 * @nr: slots in use.
 * @cap: slots allocated (0 or a power of two).
 * @next_seq: the next sequence number to hand out (starts at 1).
 * @done_seq: every fence with seq <= @done_seq has completed.
 *
 * Fences are retired in capture order: one that completes out of order
 * waits for the older ones. That is conservative, never early, and keeps
 * "has chunk C's fence completed" one comparison.
 */
struct kvc_fences {
	struct kvc_fence_slot *ring;
	uint32_t head;
	uint32_t nr;
	uint32_t cap;
	uint64_t next_seq;
	uint64_t done_seq;
};

/**
 * struct kvc_pool - A block pool.
 * @lock: serialises every operation (see Documentation/allocator.rst).
 * @be: the backend.
 * @own_be: whether the pool opened @be and must close it.
 * @va: the reservation.
 * @block_bytes: bytes per block.
 * @chunk_bytes: bytes per chunk.
 * @bpc: blocks per chunk.
 * @div: divides block ids by @bpc.
 * @nr_blocks: @nr_chunks * @bpc.
 * @nr_chunks: chunks in the reservation.
 * @max_mapped: cap on mapped chunks.
 * @empty_kept: empty chunks kept mapped (the watermark).
 * @chunks: @nr_chunks chunk descriptors.
 * @unmapped: stack of unmapped chunk indices, @nr_unmapped deep.
 * @nr_unmapped: depth of @unmapped.
 * @fill: the mapped chunks by fill.
 * @nr_live: live blocks.
 * @nr_mapped: mapped chunks.
 * @live_hwm: high-water mark of @nr_live.
 * @mapped_hwm: high-water mark of @nr_mapped.
 * @alloc_calls: successful allocs.
 * @free_calls: successful frees.
 * @alloc_failures: failed allocs.
 * @unmap_failures: unmaps refused by the backend.
 * @fences: captured fences that may hold chunks mapped.
 * @move_fn: told of moved blocks, or NULL.
 * @move_arg: passed to @move_fn.
 * @plans: compaction plans not yet freed (destroy orphans them).
 * @compact_high: proactive compaction's start mark (0 = off).
 * @compact_low: proactive compaction's stop mark.
 * @compact_budget: bytes per proactive tick (0 = no limit).
 * @compact_chunks: chunks per proactive tick (0 = no limit).
 * @compact_active: proactive compaction is between its marks.
 * @compactions: compactions run.
 * @blocks_moved: blocks moved by compaction.
 * @bytes_copied: bytes copied by compaction.
 * @chunks_vacated: chunks compaction emptied.
 * @chunks_released: chunks unmapped.
 * @compact_failures: compactions stopped by a device error.
 * @unmap_deferred: empty chunks over the watermark a fence kept mapped at
 *                  the last trim.
 * @pub: the stats page, or NULL.
 * @placement: which free block an allocation takes.
 * @place_rng: xorshift64 state of %KVC_PLACE_RANDOM.
 * @map_ns: time spent in backend map calls; @map_ns_max the longest.
 * @unmap_ns: time spent in backend unmap calls; @unmap_ns_max the longest.
 * @ladder: samples, peaks and means (ladder.c), or NULL before the first
 *          sample.
 * @rec: the recorder the pool's events go to, or NULL.
 * @name: the caller's label (empty when none), for traces.
 */
struct kvc_pool {
	pthread_mutex_t lock;
	struct kvc_backend *be;
	bool own_be;
	struct kvc_va va;
	uint64_t block_bytes;
	uint64_t chunk_bytes;
	uint32_t bpc;
	struct kvc_divisor div;
	uint64_t nr_blocks;
	uint32_t nr_chunks;
	uint32_t max_mapped;
	uint32_t empty_kept;
	struct kvc_chunk *chunks;
	uint32_t *unmapped;
	uint32_t nr_unmapped;
	struct kvc_fill fill;
	uint64_t nr_live;
	uint32_t nr_mapped;
	uint64_t live_hwm;
	uint32_t mapped_hwm;
	uint64_t alloc_calls;
	uint64_t free_calls;
	uint64_t alloc_failures;
	uint64_t unmap_failures;
	struct kvc_fences fences;
	kvc_move_fn move_fn;
	void *move_arg;
	struct list_head plans;
	double compact_high;
	double compact_low;
	uint64_t compact_budget;
	uint32_t compact_chunks;
	bool compact_active;
	uint64_t compactions;
	uint64_t blocks_moved;
	uint64_t bytes_copied;
	uint64_t chunks_vacated;
	uint64_t chunks_released;
	uint64_t compact_failures;
	uint64_t unmap_deferred;
	struct kvc_stats_pub *pub;
	enum kvc_placement placement;
	uint64_t place_rng;
	uint64_t map_ns;
	uint64_t map_ns_max;
	uint64_t unmap_ns;
	uint64_t unmap_ns_max;
	struct kvc_ladder_state *ladder;
	struct kvc_recorder *rec;
	char name[32];
};

/* place.c */
struct kvc_chunk *kvc_place_chunk(struct kvc_pool *pool);

/* fill.c */
int kvc_fill_init(struct kvc_fill *fill, uint32_t bpc);
void kvc_fill_exit(struct kvc_fill *fill);
void kvc_fill_add(struct kvc_pool *pool, struct kvc_chunk *c);
void kvc_fill_del(struct kvc_pool *pool, struct kvc_chunk *c);
void kvc_fill_set_live(struct kvc_pool *pool, struct kvc_chunk *c,
		       uint32_t nr_live);
struct kvc_chunk *kvc_fill_fullest_partial(struct kvc_pool *pool);
struct kvc_chunk *kvc_fill_first(struct kvc_pool *pool, uint32_t nr_live);
int kvc_fill_check(struct kvc_pool *pool);

/*
 * The chunk the next block comes from: fullest-first inline, on the path
 * of every allocation; the study policies out of line (place.c).
 */
static inline struct kvc_chunk *kvc_place(struct kvc_pool *pool)
{
	struct kvc_chunk *c;

	if (__builtin_expect(pool->placement != KVC_PLACE_FULLEST, 0))
		return kvc_place_chunk(pool);
	c = kvc_fill_fullest_partial(pool);
	return c ? c : kvc_fill_first(pool, 0);
}

/* fence.c */
int kvc_fence_valid(const struct kvc_fence *f, const char *who);
int kvc_fence_capture(struct kvc_pool *pool, const struct kvc_fence *f,
		      uint64_t *seq);
int kvc_fence_push(struct kvc_pool *pool, uint64_t token, uint64_t *seq);
void kvc_fence_poll(struct kvc_pool *pool);
int kvc_fence_wait_all(struct kvc_pool *pool);
void kvc_fence_exit(struct kvc_pool *pool);
int kvc_fence_check(struct kvc_pool *pool);

static inline bool chunk_fenced(const struct kvc_pool *pool,
				const struct kvc_chunk *c)
{
	return c->fence_seq > pool->fences.done_seq;
}

/**
 * kvc_pool_reclaimable() - Chunks a full compaction would free now.
 * @pool: the pool, locked.
 *
 * Return: non-empty mapped chunks minus ceil(live / blocks per chunk).
 */
static inline uint32_t kvc_pool_reclaimable(const struct kvc_pool *pool)
{
	uint64_t used = pool->nr_mapped - pool->fill.hist[0];
	uint64_t need = (pool->nr_live + pool->bpc - 1) / pool->bpc;

	return used > need ? (uint32_t)(used - need) : 0;
}

/* pool.c */
int kvc_pool_trim_locked(struct kvc_pool *pool, uint32_t keep);

/**
 * kvc_pool_map_from_stack() - Map the chunk at @at of the unmapped stack
 * and link it as empty (the stack keeps its order). Lock held.
 * @pool: the pool.
 * @at: an index into pool->unmapped.
 *
 * Return: 0, or kvc_chunk_map()'s error (nothing changed).
 */
int kvc_pool_map_from_stack(struct kvc_pool *pool, uint32_t at);

/**
 * kvc_pool_unmap_to_stack() - Unmap an empty, linked chunk and push it
 * on the unmapped stack. Lock held.
 * @pool: the pool.
 * @c: the chunk: no live block, no pending fence.
 *
 * Return: 0, or kvc_chunk_unmap()'s error (the chunk stays mapped and
 * linked).
 */
int kvc_pool_unmap_to_stack(struct kvc_pool *pool, struct kvc_chunk *c);
void kvc_pool_publish(struct kvc_pool *pool);

/* compact.c */
void kvc_compact_orphan_plans(struct kvc_pool *pool);

/* check.c */
int kvc_pool_check_locked(struct kvc_pool *pool);

/* chunk.c */
int kvc_chunk_map(struct kvc_pool *pool, struct kvc_chunk *c);
int kvc_chunk_unmap(struct kvc_pool *pool, struct kvc_chunk *c);
uint32_t kvc_chunk_take(struct kvc_pool *pool, struct kvc_chunk *c, uint32_t n,
			uint32_t *ids);
void kvc_chunk_untake(struct kvc_pool *pool, struct kvc_chunk *c, uint32_t n,
		      const uint32_t *ids);
int kvc_chunk_check(struct kvc_pool *pool, struct kvc_chunk *c);

static inline uint32_t block_chunk(const struct kvc_pool *pool, uint32_t id)
{
	return kvc_div(pool->div, id);
}

static inline uint32_t block_local(const struct kvc_pool *pool, uint32_t id)
{
	return id - kvc_div(pool->div, id) * pool->bpc;
}

static inline uint32_t chunk_index(const struct kvc_pool *pool,
				   const struct kvc_chunk *c)
{
	return (uint32_t)(c - pool->chunks);
}

#endif /* KVC_ALLOC_INTERNAL_H */
