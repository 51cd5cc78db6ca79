// SPDX-License-Identifier: MIT
/*
 * kvc_pool_check(): every invariant of a pool, checked from scratch. Tests
 * call it after each operation, like mimalloc's mi_page_is_valid(). Reads
 * only; never repairs.
 */
#include <errno.h>
#include <stdlib.h>

#include <kvc/error.h>
#include <kvc/pool.h>

#include "error.h"
#include "internal.h"

int kvc_pool_check_locked(struct kvc_pool *pool)
{
	uint64_t nr_live = 0, *seen;
	uint32_t i, nr_mapped = 0, nr_fenced = 0;
	int err;

	if (pool->nr_mapped + pool->nr_unmapped != pool->nr_chunks)
		return kvc_err(
			-EFAULT, "pool: %u mapped + %u unmapped != %u chunks",
			pool->nr_mapped, pool->nr_unmapped, pool->nr_chunks);
	if (pool->nr_mapped > pool->max_mapped)
		return kvc_err(-EFAULT,
			       "pool: %u chunks mapped over the cap of %u",
			       pool->nr_mapped, pool->max_mapped);
	for (i = 0; i < pool->nr_chunks; i++) {
		struct kvc_chunk *c = &pool->chunks[i];

		err = kvc_chunk_check(pool, c);
		if (err)
			return err;
		nr_live += c->nr_live;
		nr_mapped += chunk_mapped(c);
		nr_fenced +=
			chunk_mapped(c) && !c->nr_live && chunk_fenced(pool, c);
	}
	if (nr_live != pool->nr_live)
		return kvc_err(
			-EFAULT,
			"pool: chunks hold %llu live blocks, count says %llu",
			(unsigned long long)nr_live,
			(unsigned long long)pool->nr_live);
	if (nr_mapped != pool->nr_mapped)
		return kvc_err(-EFAULT, "pool: %u chunks mapped, count says %u",
			       nr_mapped, pool->nr_mapped);
	if (pool->live_hwm < pool->nr_live ||
	    pool->mapped_hwm < pool->nr_mapped)
		return kvc_err(-EFAULT,
			       "pool: a high-water mark is below its value");
	/*
	 * Fenced empty chunks count as kept: beyond the watermark, only
	 * chunks a fence holds may stay empty.
	 */
	if (pool->fill.hist[0] > pool->empty_kept &&
	    pool->fill.hist[0] > nr_fenced && pool->unmap_failures == 0)
		return kvc_err(
			-EFAULT,
			"pool: %llu empty chunks mapped, watermark %u, %u held by fences",
			(unsigned long long)pool->fill.hist[0],
			pool->empty_kept, nr_fenced);
	/* The unmapped stack names each unmapped chunk exactly once. */
	seen = calloc((pool->nr_chunks + 63) / 64, sizeof(*seen));
	if (!seen)
		return kvc_err(-ENOMEM, "out of memory checking the pool");
	err = 0;
	for (i = 0; i < pool->nr_unmapped && !err; i++) {
		uint32_t idx = pool->unmapped[i];

		if (idx >= pool->nr_chunks || test_bit(seen, idx) ||
		    chunk_mapped(&pool->chunks[idx]))
			err = kvc_err(
				-EFAULT,
				"pool: unmapped stack entry %u names chunk %u wrongly",
				i, idx);
		else
			set_bit(seen, idx);
	}
	free(seen);
	if (err)
		return err;
	err = kvc_fence_check(pool);
	if (err)
		return err;
	if (pool->compact_active && !(pool->compact_high > 0))
		return kvc_err(-EFAULT,
			       "pool: proactive compaction on with no marks");
	return kvc_fill_check(pool);
}

int kvc_pool_check(struct kvc_pool *pool)
{
	int err;

	if (!pool)
		return kvc_err(-EINVAL, "kvc_pool_check: NULL pool");
	pthread_mutex_lock(&pool->lock);
	err = kvc_pool_check_locked(pool);
	pthread_mutex_unlock(&pool->lock);
	return err;
}
