/* SPDX-License-Identifier: MIT */
/* The pool's ladder samples: a ring of recent ones, peaks and means. */
#ifndef KVC_ALLOC_LADDER_H
#define KVC_ALLOC_LADDER_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/pool.h>
#include <kvc/stats.h>

/**
 * struct kvc_ladder_state - What a pool keeps of its samples.
 * @ring: the latest %KVC_STATS_RING samples, compact (as published).
 * @head: the slot the next sample goes to.
 * @count: samples in @ring.
 * @samples: samples taken in total.
 * @acc: peaks and means, weighted by steps.
 * @last: the latest sample, whole.
 *
 * Allocated by the first kvc_pool_sample(), so pools that are never
 * sampled pay nothing.
 */
struct kvc_ladder_state {
	struct kvc_stats_sample ring[KVC_STATS_RING];
	uint32_t head;
	uint32_t count;
	uint64_t samples;
	struct kvc_ladder_acc acc;
	struct kvc_ladder last;
};

/**
 * kvc_ladder_state_free() - Free a pool's samples.
 * @state: the state, or NULL.
 */
void kvc_ladder_state_free(struct kvc_ladder_state *state);

/**
 * kvc_ladder_state_get() - The @i-th oldest sample of the ring.
 * @state: the state.
 * @i: 0 .. @count - 1.
 *
 * Return: the sample.
 */
const struct kvc_stats_sample *
kvc_ladder_state_get(const struct kvc_ladder_state *state, uint32_t i);

#endif /* KVC_ALLOC_LADDER_H */
