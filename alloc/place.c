// SPDX-License-Identifier: MIT
/*
 * Placement: which mapped chunk the next block comes from. Fullest-first
 * is the pool's own policy (dense chunks, empty ones free to go back);
 * first-fit and random exist so that studies can compare placement on
 * identical request streams, and cost a scan of the chunks per call.
 */
#include <errno.h>
#include <string.h>

#include <kvc/pool.h>

#include "error.h"
#include "internal.h"

static const char *const place_names[] = {
	[KVC_PLACE_FULLEST] = "fullest",
	[KVC_PLACE_FIRST_FIT] = "first-fit",
	[KVC_PLACE_RANDOM] = "random",
};

int kvc_placement_parse(const char *name, enum kvc_placement *out)
{
	uint32_t i;

	for (i = 0; name && i < sizeof(place_names) / sizeof(place_names[0]);
	     i++) {
		if (!strcmp(name, place_names[i])) {
			*out = (enum kvc_placement)i;
			return 0;
		}
	}
	return kvc_err(-EINVAL,
		       "unknown placement '%s': fullest, first-fit or random",
		       name ? name : "(null)");
}

const char *kvc_placement_name(enum kvc_placement p)
{
	if ((unsigned)p < sizeof(place_names) / sizeof(place_names[0]))
		return place_names[p];
	return "?";
}

static inline bool has_room(const struct kvc_pool *pool,
			    const struct kvc_chunk *c)
{
	return chunk_mapped(c) && c->nr_live < pool->bpc;
}

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/**
 * kvc_place_chunk() - The chunk the next block comes from.
 * @pool: the pool, locked, with at least one free block in a mapped chunk.
 *
 * Return: a mapped chunk with a free block.
 */
struct kvc_chunk *kvc_place_chunk(struct kvc_pool *pool)
{
	struct kvc_chunk *c;
	uint64_t nr = 0, pick;
	uint32_t i;

	switch (pool->placement) {
	case KVC_PLACE_FIRST_FIT:
		for (i = 0; i < pool->nr_chunks; i++)
			if (has_room(pool, &pool->chunks[i]))
				return &pool->chunks[i];
		break;
	case KVC_PLACE_RANDOM:
		for (i = 0; i < pool->nr_chunks; i++)
			nr += has_room(pool, &pool->chunks[i]);
		if (!nr)
			break;
		pick = xorshift64(&pool->place_rng) % nr;
		for (i = 0; i < pool->nr_chunks; i++)
			if (has_room(pool, &pool->chunks[i]) && !pick--)
				return &pool->chunks[i];
		break;
	case KVC_PLACE_FULLEST:
	default:
		break;
	}
	c = kvc_fill_fullest_partial(pool);
	return c ? c : kvc_fill_first(pool, 0);
}
