// SPDX-License-Identifier: MIT
/*
 * Chunk occupancy: the live blocks of every chunk, in chunk order, for
 * chunk maps (heat maps of where blocks sit). Reads the counts the pool
 * keeps per chunk; never walks a bitmap, so it stays O(chunks).
 */
#include <stdint.h>

#include <kvc/pool.h>

#include "internal.h"

uint32_t kvc_pool_occupancy(struct kvc_pool *pool, int32_t *out, uint32_t n)
{
	uint32_t i, nr;

	if (!pool)
		return 0;
	pthread_mutex_lock(&pool->lock);
	nr = pool->nr_chunks;
	for (i = 0; out && i < n && i < nr; i++) {
		const struct kvc_chunk *c = &pool->chunks[i];

		out[i] = chunk_mapped(c) ? (int32_t)c->nr_live : -1;
	}
	pthread_mutex_unlock(&pool->lock);
	return nr;
}
