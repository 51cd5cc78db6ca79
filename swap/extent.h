/* SPDX-License-Identifier: MIT */
/*
 * The space inside a swap file: slots 0 .. cap - 1 of one fixed size,
 * taken and given back in extents (runs of adjacent slots). Like the
 * pool's chunks: a hard cap, freed space reused, the lowest addresses
 * first so that the file stays short.
 */
#ifndef KVC_SWAP_EXTENT_H
#define KVC_SWAP_EXTENT_H

#include <stdint.h>

/**
 * struct kvc_extent - A run of adjacent slots.
 * @start: first slot.
 * @len: slots, >= 1.
 */
struct kvc_extent {
	uint64_t start;
	uint64_t len;
};

/**
 * struct kvc_extents - The slot map of one file.
 * @cap: slots there may be.
 * @used: slots taken.
 * @high: one past the highest slot ever taken (what the file spans).
 * @bits: one bit per slot, set when taken, (@cap + 63) / 64 words.
 */
struct kvc_extents {
	uint64_t cap;
	uint64_t used;
	uint64_t high;
	uint64_t *bits;
};

/**
 * kvc_extents_init() - An empty map.
 * @x: the map.
 * @cap: slots, >= 1.
 *
 * Return: 0, -EINVAL for a cap of 0 or over 2^40 slots, -ENOMEM.
 */
int kvc_extents_init(struct kvc_extents *x, uint64_t cap);

/**
 * kvc_extents_destroy() - Free a map's memory.
 * @x: the map (zeroed).
 */
void kvc_extents_destroy(struct kvc_extents *x);

/**
 * kvc_extents_alloc() - Take @n slots.
 * @x: the map.
 * @n: slots, >= 1.
 * @out: set to a malloc'ed array of the extents taken, in the order the
 *       slots are to be used (the caller frees it).
 * @nr: set to its length.
 *
 * One extent when a free run of @n slots exists (the lowest such run);
 * else the free runs from the lowest address up until @n slots are
 * covered (the last one cut to size).
 *
 * Return: 0; -ENOSPC when fewer than @n slots are free (nothing taken);
 * -EINVAL for @n of 0; -ENOMEM.
 */
int kvc_extents_alloc(struct kvc_extents *x, uint64_t n,
		      struct kvc_extent **out, uint32_t *nr);

/**
 * kvc_extents_free() - Give extents back.
 * @x: the map.
 * @e: extents, each taken.
 * @nr: how many.
 *
 * Return: 0, or -EINVAL when one is outside the cap or not wholly taken
 * (then nothing is freed).
 */
int kvc_extents_free(struct kvc_extents *x, const struct kvc_extent *e,
		     uint32_t nr);

/**
 * kvc_extents_mark() - Take given extents (recovery from a journal).
 * @x: the map.
 * @e: extents, each free.
 * @nr: how many.
 *
 * Return: 0, or -EINVAL when one is outside the cap or overlaps a taken
 * slot (then nothing is taken).
 */
int kvc_extents_mark(struct kvc_extents *x, const struct kvc_extent *e,
		     uint32_t nr);

/**
 * kvc_extents_free_slots() - Slots still free under the cap.
 * @x: the map.
 *
 * Return: cap - used.
 */
static inline uint64_t kvc_extents_free_slots(const struct kvc_extents *x)
{
	return x->cap - x->used;
}

/**
 * kvc_extents_check() - Check a map: @used is the number of set bits, no
 * bit at or past the cap or at or past @high is set.
 * @x: the map.
 *
 * Return: 0, or -EFAULT with a message.
 */
int kvc_extents_check(const struct kvc_extents *x);

#endif /* KVC_SWAP_EXTENT_H */
