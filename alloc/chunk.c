// SPDX-License-Identifier: MIT
/*
 * One chunk: mapping it through the backend with the metadata its blocks
 * need (owner tags, live bitmap, free stack), handing its blocks out, and
 * unmapping it. Never unmaps a chunk that still holds a live block, and
 * never leaves metadata behind for a chunk the device refused to map.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/error.h>

#include "error.h"
#include "internal.h"
#include "ladder.h"
#include "recorder.h"

static size_t live_words(uint32_t bpc)
{
	return (bpc + 63) / 64;
}

/* Device calls are timed whether they succeed or not: both cost. */
static void note_ns(uint64_t *total, uint64_t *max, uint64_t ns)
{
	*total += ns;
	if (ns > *max)
		*max = ns;
}

/**
 * kvc_chunk_map() - Map a chunk and give it empty metadata.
 * @pool: the pool, locked.
 * @c: an unmapped chunk.
 *
 * The chunk is not linked into the fill lists; the caller does that.
 *
 * Return: 0, -ENOMEM (host metadata or device memory), or the backend's
 * error; on failure nothing is mapped or allocated.
 */
int kvc_chunk_map(struct kvc_pool *pool, struct kvc_chunk *c)
{
	uint32_t bpc = pool->bpc, i;
	size_t words = live_words(bpc);
	uint64_t *meta, t0, ns;
	int err;

	/* One allocation: owner tags, then the live bitmap, then the stack. */
	meta = calloc(1, (bpc + words) * sizeof(uint64_t) +
				 bpc * sizeof(uint16_t));
	if (!meta)
		return kvc_err(-ENOMEM,
			       "out of host memory for chunk %u metadata",
			       chunk_index(pool, c));
	t0 = kvc_now_ns();
	err = pool->be->ops->map(pool->be, &pool->va,
				 (uint64_t)chunk_index(pool, c) *
					 pool->chunk_bytes,
				 pool->chunk_bytes, &c->handle);
	ns = kvc_now_ns() - t0;
	note_ns(&pool->map_ns, &pool->map_ns_max, ns);
	if (err) {
		free(meta);
		return err;
	}
	c->owner = meta;
	c->live = meta + bpc;
	c->free_stack = (uint16_t *)(c->live + words);
	/* Popped from the top: blocks go out in address order. */
	for (i = 0; i < bpc; i++)
		c->free_stack[i] = (uint16_t)(bpc - 1 - i);
	c->nr_live = 0;
	kvc_ladder_touch(pool->ladder, chunk_index(pool, c));
	if (pool->rec)
		kvc_rec3(pool->rec, KVC_REC_CHUNK_MAP, chunk_index(pool, c), ns,
			 0);
	return 0;
}

/**
 * kvc_chunk_unmap() - Unmap an empty chunk and drop its metadata.
 * @pool: the pool, locked.
 * @c: a mapped chunk with no live block, not linked.
 *
 * Return: 0, or the backend's error; then the chunk is still mapped.
 */
int kvc_chunk_unmap(struct kvc_pool *pool, struct kvc_chunk *c)
{
	uint64_t t0, ns;
	int err;

	if (c->nr_live)
		return kvc_err(-EBUSY, "chunk %u still holds %u live blocks",
			       chunk_index(pool, c), c->nr_live);
	if (chunk_fenced(pool, c))
		return kvc_err(-EBUSY,
			       "chunk %u: device work on it has not finished",
			       chunk_index(pool, c));
	t0 = kvc_now_ns();
	err = pool->be->ops->unmap(pool->be, &pool->va,
				   (uint64_t)chunk_index(pool, c) *
					   pool->chunk_bytes,
				   pool->chunk_bytes, c->handle);
	ns = kvc_now_ns() - t0;
	note_ns(&pool->unmap_ns, &pool->unmap_ns_max, ns);
	if (err)
		return err;
	free(c->owner);
	c->owner = NULL;
	c->live = NULL;
	c->free_stack = NULL;
	c->handle = 0;
	c->fence_seq = 0;
	pool->chunks_released++;
	kvc_ladder_touch(pool->ladder, chunk_index(pool, c));
	if (pool->rec)
		kvc_rec3(pool->rec, KVC_REC_CHUNK_UNMAP, chunk_index(pool, c),
			 ns, 0);
	return 0;
}

/**
 * kvc_chunk_take() - Take free blocks from a mapped chunk.
 * @pool: the pool, locked.
 * @c: the chunk.
 * @n: blocks wanted.
 * @ids: receives the ids taken.
 *
 * Does not move the chunk between fill lists; the caller does, once.
 *
 * Return: the number taken, min(@n, free blocks of @c).
 */
uint32_t kvc_chunk_take(struct kvc_pool *pool, struct kvc_chunk *c, uint32_t n,
			uint32_t *ids)
{
	uint32_t first = chunk_index(pool, c) * pool->bpc;
	uint32_t nr_free = pool->bpc - c->nr_live;
	uint32_t i, local;

	if (n > nr_free)
		n = nr_free;
	kvc_ladder_touch(pool->ladder, chunk_index(pool, c));
	for (i = 0; i < n; i++) {
		local = c->free_stack[--nr_free];
		set_bit(c->live, local);
		c->owner[local] = 0;
		ids[i] = first + local;
	}
	return n;
}

/**
 * kvc_chunk_untake() - Give back the blocks the last take handed out.
 * @pool: the pool, locked.
 * @c: the chunk, whose @nr_live still counts them.
 * @n: how many the take returned.
 * @ids: the ids it returned.
 *
 * A take only reads the free stack, so the entries are still above its
 * top: clearing the live bits and the count restores the chunk exactly.
 * The caller moves the chunk between fill lists.
 */
void kvc_chunk_untake(struct kvc_pool *pool, struct kvc_chunk *c, uint32_t n,
		      const uint32_t *ids)
{
	uint32_t first = chunk_index(pool, c) * pool->bpc, i;

	kvc_ladder_touch(pool->ladder, chunk_index(pool, c));
	for (i = 0; i < n; i++)
		clear_bit(c->live, ids[i] - first);
}

/**
 * kvc_chunk_check() - Check one chunk's metadata.
 * @pool: the pool, locked.
 * @c: the chunk.
 *
 * Mapped: the live bitmap counts @nr_live, the free stack holds each free
 * block exactly once, and no free is half done. Unmapped: no
 * metadata, no live block, not linked.
 *
 * Return: 0, or -EFAULT with a message.
 */
int kvc_chunk_check(struct kvc_pool *pool, struct kvc_chunk *c)
{
	uint32_t idx = chunk_index(pool, c), bpc = pool->bpc;
	uint32_t nr_free = bpc - c->nr_live, i, count = 0;
	size_t words = live_words(bpc);
	uint64_t *seen;
	int err = 0;

	if (!chunk_mapped(c)) {
		if (c->nr_live || c->live || c->free_stack)
			return kvc_err(
				-EFAULT,
				"chunk %u: unmapped but has %u live blocks or metadata",
				idx, c->nr_live);
		if (c->link.next != &c->link)
			return kvc_err(-EFAULT, "chunk %u: unmapped but linked",
				       idx);
		return 0;
	}
	if (c->freeing || c->next_freeing)
		return kvc_err(-EFAULT, "chunk %u: a free was left half done",
			       idx);
	if (c->nr_live > bpc)
		return kvc_err(-EFAULT, "chunk %u: %u live of %u", idx,
			       c->nr_live, bpc);
	for (i = 0; i < words; i++)
		count += (uint32_t)__builtin_popcountll(c->live[i]);
	if (count != c->nr_live)
		return kvc_err(-EFAULT,
			       "chunk %u: bitmap has %u live, count says %u",
			       idx, count, c->nr_live);
	if (bpc % 64 && c->live[words - 1] >> (bpc % 64))
		return kvc_err(-EFAULT,
			       "chunk %u: live bits past the last block", idx);
	seen = calloc(words, sizeof(*seen));
	if (!seen)
		return kvc_err(-ENOMEM, "out of memory checking chunk %u", idx);
	for (i = 0; i < nr_free && !err; i++) {
		uint16_t local = c->free_stack[i];

		if (local >= bpc)
			err = kvc_err(-EFAULT,
				      "chunk %u: free stack holds %u, past %u",
				      idx, local, bpc);
		else if (test_bit(seen, local))
			err = kvc_err(
				-EFAULT,
				"chunk %u: block %u twice on the free stack",
				idx, local);
		else if (test_bit(c->live, local))
			err = kvc_err(
				-EFAULT,
				"chunk %u: live block %u on the free stack",
				idx, local);
		else
			set_bit(seen, local);
	}
	free(seen);
	return err;
}
