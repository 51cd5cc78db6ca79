// SPDX-License-Identifier: MIT
/*
 * Recorded allocator events applied to a pool by id: map this chunk, take
 * this block, free that one, move one to another. The trace decides, not
 * the pool: no placement runs and nothing is trimmed behind the trace's
 * back. Every primitive checks that the event is possible first and
 * changes nothing when it is not, so a bad trace is reported, not obeyed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/error.h>

#include "error.h"
#include "internal.h"
#include "ladder.h"
#include "replay.h"

/* The mapped chunk of block @id, or NULL with a message. */
static struct kvc_chunk *block_chunk_of(struct kvc_pool *pool, uint64_t id,
					const char *what)
{
	struct kvc_chunk *c;

	if (id >= pool->nr_blocks) {
		kvc_err(-EPROTO, "%s block %llu: beyond the %llu blocks", what,
			(unsigned long long)id,
			(unsigned long long)pool->nr_blocks);
		return NULL;
	}
	c = &pool->chunks[block_chunk(pool, (uint32_t)id)];
	if (!chunk_mapped(c)) {
		kvc_err(-EPROTO, "%s block %llu: chunk %u is not mapped", what,
			(unsigned long long)id, chunk_index(pool, c));
		return NULL;
	}
	return c;
}

int kvc_replay_map_chunk(struct kvc_pool *pool, uint64_t ci)
{
	struct kvc_chunk *c;
	uint32_t i;

	if (ci >= pool->nr_chunks)
		return kvc_err(-EPROTO,
			       "map of chunk %llu: beyond the %u chunks",
			       (unsigned long long)ci, pool->nr_chunks);
	c = &pool->chunks[ci];
	if (chunk_mapped(c))
		return kvc_err(-EPROTO, "map of chunk %llu: already mapped",
			       (unsigned long long)ci);
	if (pool->nr_mapped >= pool->max_mapped)
		return kvc_err(-EPROTO,
			       "map of chunk %llu: %u chunks mapped, the cap",
			       (unsigned long long)ci, pool->nr_mapped);
	/* Found before mapping, so a broken stack changes nothing. */
	for (i = 0; i < pool->nr_unmapped; i++)
		if (pool->unmapped[i] == ci)
			break;
	if (i == pool->nr_unmapped)
		return kvc_err(-EPROTO,
			       "map of chunk %llu: not on the unmapped stack",
			       (unsigned long long)ci);
	return kvc_pool_map_from_stack(pool, i);
}

int kvc_replay_unmap_chunk(struct kvc_pool *pool, uint64_t ci)
{
	struct kvc_chunk *c;

	if (ci >= pool->nr_chunks)
		return kvc_err(-EPROTO,
			       "unmap of chunk %llu: beyond the %u chunks",
			       (unsigned long long)ci, pool->nr_chunks);
	c = &pool->chunks[ci];
	if (!chunk_mapped(c))
		return kvc_err(-EPROTO, "unmap of chunk %llu: not mapped",
			       (unsigned long long)ci);
	if (c->nr_live)
		return kvc_err(-EPROTO,
			       "unmap of chunk %llu: %u blocks still live",
			       (unsigned long long)ci, c->nr_live);
	return kvc_pool_unmap_to_stack(pool, c);
}

/* Check that @id can be taken; return its chunk or NULL with a message. */
static struct kvc_chunk *takeable(struct kvc_pool *pool, uint64_t id,
				  const char *what)
{
	struct kvc_chunk *c = block_chunk_of(pool, id, what);

	if (c && test_bit(c->live, block_local(pool, (uint32_t)id))) {
		kvc_err(-EPROTO, "%s block %llu: already live", what,
			(unsigned long long)id);
		return NULL;
	}
	return c;
}

static struct kvc_chunk *live_of(struct kvc_pool *pool, uint64_t id,
				 const char *what)
{
	struct kvc_chunk *c = block_chunk_of(pool, id, what);

	if (c && !test_bit(c->live, block_local(pool, (uint32_t)id))) {
		kvc_err(-EPROTO, "%s block %llu: not live", what,
			(unsigned long long)id);
		return NULL;
	}
	return c;
}

/* @c has room and @id's bit is clear: checked by the caller. */
static int take_block(struct kvc_pool *pool, struct kvc_chunk *c, uint32_t id)
{
	uint32_t local = block_local(pool, id);
	uint32_t top = pool->bpc - c->nr_live - 1, i;

	/*
	 * Swap it to the top and pop: when it is there already, as it is
	 * when the recorded pool popped it, the stack stays as that pool's.
	 */
	for (i = 0; i <= top; i++)
		if (c->free_stack[i] == local)
			break;
	if (i > top)
		return kvc_err(-EFAULT,
			       "block %u is free but not on chunk %u's stack",
			       id, chunk_index(pool, c));
	c->free_stack[i] = c->free_stack[top];
	c->free_stack[top] = (uint16_t)local;
	kvc_ladder_touch(pool->ladder, chunk_index(pool, c));
	set_bit(c->live, local);
	c->owner[local] = 0;
	kvc_fill_set_live(pool, c, c->nr_live + 1);
	if (++pool->nr_live > pool->live_hwm)
		pool->live_hwm = pool->nr_live;
	return 0;
}

static void free_block(struct kvc_pool *pool, struct kvc_chunk *c, uint32_t id)
{
	uint32_t local = block_local(pool, id);

	kvc_ladder_touch(pool->ladder, chunk_index(pool, c));
	clear_bit(c->live, local);
	c->free_stack[pool->bpc - c->nr_live] = (uint16_t)local;
	kvc_fill_set_live(pool, c, c->nr_live - 1);
	pool->nr_live--;
}

int kvc_replay_take(struct kvc_pool *pool, uint64_t id)
{
	struct kvc_chunk *c = takeable(pool, id, "take of");

	if (!c)
		return -EPROTO;
	return take_block(pool, c, (uint32_t)id);
}

int kvc_replay_free(struct kvc_pool *pool, uint64_t id)
{
	struct kvc_chunk *c = live_of(pool, id, "free of");

	if (!c)
		return -EPROTO;
	free_block(pool, c, (uint32_t)id);
	return 0;
}

int kvc_replay_set_owner(struct kvc_pool *pool, uint64_t id, uint64_t owner)
{
	struct kvc_chunk *c = live_of(pool, id, "owner of");

	if (!c)
		return -EPROTO;
	c->owner[block_local(pool, (uint32_t)id)] = owner;
	return 0;
}

int kvc_replay_move(struct kvc_pool *pool, uint64_t from, uint64_t to,
		    uint64_t owner)
{
	struct kvc_chunk *src, *dst;
	struct kvc_copy cp;
	int err;

	src = live_of(pool, from, "move from");
	if (!src)
		return -EPROTO;
	dst = takeable(pool, to, "move to");
	if (!dst)
		return -EPROTO;
	/* The sim backend checks both ends are mapped, and counts. */
	cp.src = from * pool->block_bytes;
	cp.dst = to * pool->block_bytes;
	cp.bytes = pool->block_bytes;
	err = pool->be->ops->copy(pool->be, &pool->va, &cp, 1);
	if (err)
		return err;
	err = take_block(pool, dst, (uint32_t)to);
	if (err)
		return err;
	dst->owner[block_local(pool, (uint32_t)to)] = owner;
	free_block(pool, src, (uint32_t)from);
	pool->blocks_moved++;
	pool->bytes_copied += pool->block_bytes;
	return 0;
}

int kvc_replay_snap_apply(struct kvc_pool *pool,
			  const struct kvc_replay_snap *s)
{
	uint64_t i;
	int err;

	if (pool->nr_mapped || pool->nr_live)
		return kvc_err(
			-EPROTO,
			"snapshot to apply, but the pool holds %u chunks and %llu blocks",
			pool->nr_mapped, (unsigned long long)pool->nr_live);
	for (i = 0; i < s->nr_chunks; i++) {
		err = kvc_replay_map_chunk(pool, s->chunks[i]);
		if (err)
			return err;
	}
	for (i = 0; i < s->nr_blocks; i++) {
		err = kvc_replay_take(pool, s->ids[i]);
		if (!err)
			err = kvc_replay_set_owner(pool, s->ids[i],
						   s->owners[i]);
		if (err)
			return err;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The pool's first mapped chunk, or live block, that @sorted lacks. */
static int first_extra_chunk(struct kvc_pool *pool, const uint64_t *sorted,
			     uint64_t n)
{
	uint64_t ci;

	for (ci = 0; ci < pool->nr_chunks; ci++)
		if (chunk_mapped(&pool->chunks[ci]) &&
		    !bsearch(&ci, sorted, n, sizeof(*sorted), cmp_u64))
			return kvc_err(
				-EPROTO,
				"snapshot: chunk %llu is mapped in the replay, not in the snapshot",
				(unsigned long long)ci);
	return kvc_err(-EPROTO, "snapshot: mapped chunk counts differ");
}

static int first_extra_block(struct kvc_pool *pool, const uint64_t *sorted,
			     uint64_t n)
{
	uint64_t id;

	for (id = 0; id < pool->nr_blocks; id++) {
		struct kvc_chunk *c =
			&pool->chunks[block_chunk(pool, (uint32_t)id)];

		if (chunk_mapped(c) &&
		    test_bit(c->live, block_local(pool, (uint32_t)id)) &&
		    !bsearch(&id, sorted, n, sizeof(*sorted), cmp_u64))
			return kvc_err(
				-EPROTO,
				"snapshot: block %llu is live in the replay, not in the snapshot",
				(unsigned long long)id);
	}
	return kvc_err(-EPROTO, "snapshot: live block counts differ");
}

/* @v sorted into @tmp; the first value twice, or -1 when none is. */
static int64_t sort_dup(const uint64_t *v, uint64_t n, uint64_t *tmp)
{
	uint64_t i;

	if (!n)
		return -1;
	memcpy(tmp, v, n * sizeof(*tmp));
	qsort(tmp, n, sizeof(*tmp), cmp_u64);
	for (i = 1; i < n; i++)
		if (tmp[i] == tmp[i - 1])
			return (int64_t)tmp[i];
	return -1;
}

int kvc_replay_snap_compare(struct kvc_pool *pool,
			    const struct kvc_replay_snap *s)
{
	uint64_t i,
		n = s->nr_chunks > s->nr_blocks ? s->nr_chunks : s->nr_blocks;
	uint64_t *tmp;
	int64_t dup;
	int err = 0;

	tmp = malloc((n ? n : 1) * sizeof(*tmp));
	if (!tmp)
		return kvc_err(-ENOMEM, "out of memory comparing a snapshot");
	for (i = 0; i < s->nr_chunks && !err; i++) {
		uint64_t ci = s->chunks[i];

		if (ci >= pool->nr_chunks || !chunk_mapped(&pool->chunks[ci]))
			err = kvc_err(
				-EPROTO,
				"snapshot: chunk %llu is mapped in the snapshot, not in the replay",
				(unsigned long long)ci);
	}
	if (!err && (dup = sort_dup(s->chunks, s->nr_chunks, tmp)) >= 0)
		err = kvc_err(-EPROTO, "snapshot: chunk %lld named twice",
			      (long long)dup);
	if (!err && s->nr_chunks != pool->nr_mapped)
		err = first_extra_chunk(pool, tmp, s->nr_chunks);
	for (i = 0; i < s->nr_blocks && !err; i++) {
		uint64_t id = s->ids[i], owner;
		struct kvc_chunk *c;

		c = id < pool->nr_blocks ?
			    &pool->chunks[block_chunk(pool, (uint32_t)id)] :
			    NULL;
		if (!c || !chunk_mapped(c) ||
		    !test_bit(c->live, block_local(pool, (uint32_t)id))) {
			err = kvc_err(
				-EPROTO,
				"snapshot: block %llu is live in the snapshot, not in the replay",
				(unsigned long long)id);
			break;
		}
		owner = c->owner[block_local(pool, (uint32_t)id)];
		if (owner != s->owners[i])
			err = kvc_err(
				-EPROTO,
				"snapshot: block %llu has owner %#llx in the snapshot, %#llx in the replay",
				(unsigned long long)id,
				(unsigned long long)s->owners[i],
				(unsigned long long)owner);
	}
	if (!err && (dup = sort_dup(s->ids, s->nr_blocks, tmp)) >= 0)
		err = kvc_err(-EPROTO, "snapshot: block %lld named twice",
			      (long long)dup);
	if (!err && s->nr_blocks != pool->nr_live)
		err = first_extra_block(pool, tmp, s->nr_blocks);
	free(tmp);
	return err;
}
