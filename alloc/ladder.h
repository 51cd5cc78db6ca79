/* SPDX-License-Identifier: MIT */
/* The pool's ladder samples: a ring of recent ones, peaks and means. */
#ifndef KVC_ALLOC_LADDER_H
#define KVC_ALLOC_LADDER_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/pool.h>
#include <kvc/stats.h>

/**
 * struct kvc_ladder_runs - Free runs of mapped chunks, as the indices need.
 * @free: free blocks.
 * @runs: maximal free runs.
 * @suitable: per order o, runs of 2^o blocks the free runs could give.
 * @by_order: per order, runs of 2^o .. 2^(o+1) - 1 blocks.
 */
struct kvc_ladder_runs {
	uint64_t free;
	uint64_t runs;
	uint64_t suitable[KVC_LADDER_ORDERS];
	uint64_t by_order[KVC_LADDER_ORDERS];
};

/**
 * struct kvc_ladder_state - What a pool keeps of its samples (the latest
 * ones themselves go to its stats page's ring).
 * @acc: peaks and means, weighted by steps.
 * @dirty: one bit per chunk whose live bits or mapping changed since the
 *         last ladder (see kvc_ladder_touch()).
 * @contrib: per chunk, its free runs as of its last recount: free blocks,
 *           runs, then @nr_orders suitable counts and @nr_orders run
 *           counts by order; all zero for an unmapped chunk.
 * @stride: 32-bit words per chunk in @contrib.
 * @nr_orders: orders of the pool's ladder.
 * @total: the sum of @contrib over every chunk.
 *
 * Allocated by the first kvc_pool_sample() or kvc_pool_ladder(), so pools
 * that are never looked at pay nothing. The ladder walks the live bitmap
 * of a chunk only when it is dirty: with many partly used chunks mapped,
 * walking them all at every step cost more than the rest of a replay.
 */
struct kvc_ladder_state {
	struct kvc_ladder_acc acc;
	uint64_t *dirty;
	uint32_t *contrib;
	uint32_t stride;
	uint32_t nr_orders;
	struct kvc_ladder_runs total;
};

/**
 * kvc_ladder_touch() - Note that a chunk's live bits or mapping changed.
 * @state: the pool's ladder state, or NULL (nothing to note).
 * @ci: the chunk's index.
 *
 * Every place that sets or clears a live bit, maps or unmaps a chunk
 * calls this once per chunk it touches: one store, so the hot paths stay
 * as they were. A chunk noted but in the end unchanged is only recounted.
 */
static inline void kvc_ladder_touch(struct kvc_ladder_state *state, uint32_t ci)
{
	if (state)
		state->dirty[ci / 64] |= 1ull << (ci % 64);
}

/**
 * kvc_ladder_state_free() - Free a pool's samples.
 * @state: the state, or NULL.
 */
void kvc_ladder_state_free(struct kvc_ladder_state *state);

#endif /* KVC_ALLOC_LADDER_H */
