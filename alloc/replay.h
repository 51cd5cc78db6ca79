/* SPDX-License-Identifier: MIT */
/*
 * Applying recorded allocator events to a pool by id: the primitives an
 * exact replay is made of. Not a public interface. Each works on the
 * pool's internals without its lock (a replay pool has one user) and
 * never lets the pool's own policy decide: no placement, no trim.
 */
#ifndef KVC_ALLOC_REPLAY_H
#define KVC_ALLOC_REPLAY_H

#include <stdint.h>

#include <kvc/pool.h>

/**
 * kvc_replay_map_chunk() - Map one given chunk, empty.
 * @pool: the pool.
 * @c: the chunk index; must be unmapped, and the cap must leave room.
 *
 * Return: 0; -EPROTO (with a message) when @c is out of range, mapped
 * already, or over the cap; the backend's error.
 */
int kvc_replay_map_chunk(struct kvc_pool *pool, uint64_t c);

/**
 * kvc_replay_unmap_chunk() - Unmap one given chunk.
 * @pool: the pool.
 * @c: the chunk index; must be mapped and hold no live block.
 *
 * Return: 0; -EPROTO when @c is not mapped or still holds blocks; the
 * backend's error (the chunk then stays mapped).
 */
int kvc_replay_unmap_chunk(struct kvc_pool *pool, uint64_t c);

/**
 * kvc_replay_take() - Hand out one given free block.
 * @pool: the pool.
 * @id: the block; its chunk must be mapped and the block free.
 *
 * The block leaves its chunk's free stack; counts and fill lists follow;
 * its owner tag is 0, as a kvc_pool_alloc() leaves it.
 *
 * Return: 0, or -EPROTO when @id is out of range, in an unmapped chunk,
 * or live already.
 */
int kvc_replay_take(struct kvc_pool *pool, uint64_t id);

/**
 * kvc_replay_free() - Free one given live block, without a trim.
 * @pool: the pool.
 * @id: the block.
 *
 * Return: 0, or -EPROTO when @id is not live.
 */
int kvc_replay_free(struct kvc_pool *pool, uint64_t id);

/**
 * kvc_replay_set_owner() - Set a live block's owner tag.
 * @pool: the pool.
 * @id: the block.
 * @owner: the tag.
 *
 * Return: 0, or -EPROTO when @id is not live.
 */
int kvc_replay_set_owner(struct kvc_pool *pool, uint64_t id, uint64_t owner);

/**
 * kvc_replay_move() - Apply one compaction move.
 * @pool: the pool.
 * @from: the live block moved.
 * @to: the free block it lands in.
 * @owner: the owner tag @to gets.
 *
 * Takes @to with @owner, then frees @from, as compaction does; counts the
 * move in the pool's compaction counters. On failure nothing changed.
 *
 * Return: 0, or -EPROTO when @from is not live or @to cannot be taken.
 */
int kvc_replay_move(struct kvc_pool *pool, uint64_t from, uint64_t to,
		    uint64_t owner);

/**
 * struct kvc_replay_snap - A state dump, as a trace's snapshot gives it.
 * @nr_chunks: mapped chunks in @chunks.
 * @chunks: their indices.
 * @nr_blocks: live blocks in @ids.
 * @ids: their ids.
 * @owners: their owner tags, parallel to @ids.
 */
struct kvc_replay_snap {
	uint64_t nr_chunks;
	const uint64_t *chunks;
	uint64_t nr_blocks;
	const uint64_t *ids;
	const uint64_t *owners;
};

/**
 * kvc_replay_snap_apply() - Build a snapshot's state in an empty pool.
 * @pool: the pool, with nothing mapped.
 * @s: the snapshot.
 *
 * Return: 0, -EPROTO when the pool is not empty or the snapshot is not a
 * state the pool can be in (a block outside the chunks named, a chunk or
 * block twice); the backend's error.
 */
int kvc_replay_snap_apply(struct kvc_pool *pool,
			  const struct kvc_replay_snap *s);

/**
 * kvc_replay_snap_compare() - Compare a pool with a snapshot.
 * @pool: the pool.
 * @s: the snapshot.
 *
 * Compares the set of mapped chunks, the set of live blocks and every
 * live block's owner tag.
 *
 * Return: 0 when they agree; -EPROTO with a message naming the first
 * difference; -ENOMEM.
 */
int kvc_replay_snap_compare(struct kvc_pool *pool,
			    const struct kvc_replay_snap *s);

#endif /* KVC_ALLOC_REPLAY_H */
