/* SPDX-License-Identifier: MIT */
/*
 * The runtime's inner structures, shared by the .c files of runtime/.
 * Not a public interface.
 */
#ifndef KVC_RUNTIME_INTERNAL_H
#define KVC_RUNTIME_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/kv.h>

#include "../kernels/attention.h"

/* Owner tags: which (sequence, table, index) a block belongs to. */
#define KVC_SEQ_BITS 24
#define KVC_TABLE_BITS 20
#define KVC_INDEX_BITS 20

static inline uint64_t kvc_owner_tag(uint32_t seq, uint32_t table,
				     uint32_t index)
{
	return ((uint64_t)seq << (KVC_TABLE_BITS + KVC_INDEX_BITS)) |
	       ((uint64_t)table << KVC_INDEX_BITS) | index;
}

static inline uint32_t kvc_owner_seq(uint64_t owner)
{
	return (uint32_t)(owner >> (KVC_TABLE_BITS + KVC_INDEX_BITS));
}

static inline uint32_t kvc_owner_table(uint64_t owner)
{
	return (uint32_t)(owner >> KVC_INDEX_BITS) &
	       ((1u << KVC_TABLE_BITS) - 1);
}

static inline uint32_t kvc_owner_index(uint64_t owner)
{
	return (uint32_t)owner & ((1u << KVC_INDEX_BITS) - 1);
}

/**
 * struct kvc_head_table - One (layer, KV head) of one sequence.
 * @blocks: block ids, @nr_blocks of them (room for @cap).
 * @nr_blocks: ceil(@len / block_size).
 * @cap: allocated entries.
 * @len: KVs held.
 */
struct kvc_head_table {
	uint32_t *blocks;
	uint32_t nr_blocks;
	uint32_t cap;
	uint32_t len;
};

/**
 * struct kvc_seq - A sequence.
 * @kv: its cache.
 * @id: its id (owner tags), < 2^24.
 * @tokens: tokens appended (positions 0 .. @tokens - 1).
 * @tables: layers * kv_heads tables, layer-major (table = layer *
 *          kv_heads + head).
 * @meta_dirty: on a device cache, attention added to the metrics on the
 *              device since they were last copied to the host mirror.
 */
struct kvc_seq {
	struct kvc_kv *kv;
	uint32_t id;
	uint32_t tokens;
	struct kvc_head_table *tables;
	bool meta_dirty;
};

struct kvc_dev;

/**
 * struct kvc_kv - A paged KV cache.
 * @shape: the model shape.
 * @pool: the pool of blocks.
 * @base: host address of block 0 for the CPU path; NULL on a device
 *        cache, whose blocks the host never touches.
 * @block_bytes: bytes per block.
 * @capacity_blocks: block ids are below this.
 * @meta: per-slot metric and position, capacity_blocks * block_size
 *        entries (reserved, touched on use); moves with its block. On a
 *        device cache, the host mirror of the device's array (see
 *        device.h).
 * @meta_bytes: size of the @meta mapping.
 * @seqs: live sequences by id, @nr_ids slots (NULL = free id).
 * @nr_ids: slots in @seqs.
 * @nr_seqs: live sequences.
 * @ids: scratch for batch allocations.
 * @ids_cap: entries in @ids.
 * @own_backend: the backend the cache opened itself (closed after the
 *               pool), or NULL when the caller passed one.
 * @dev: the device side, or NULL on the host backend.
 */
struct kvc_kv {
	struct kvc_model_shape shape;
	struct kvc_pool *pool;
	uint8_t *base;
	uint64_t block_bytes;
	uint64_t capacity_blocks;
	struct kvc_slot_meta *meta;
	uint64_t meta_bytes;
	struct kvc_seq **seqs;
	uint32_t nr_ids;
	uint32_t nr_seqs;
	uint32_t *ids;
	uint32_t ids_cap;
	struct kvc_backend *own_backend;
	struct kvc_dev *dev;
};

static inline struct kvc_head_table *kvc_seq_head(const struct kvc_seq *seq,
						  uint32_t layer, uint32_t head)
{
	return &seq->tables[layer * seq->kv->shape.kv_heads + head];
}

/**
 * kvc_seq_truncate() - Shorten one (layer, KV head) of a sequence.
 * @seq: the sequence.
 * @layer: the layer.
 * @head: the KV head.
 * @new_len: KVs to keep, at most the head's length.
 *
 * Frees the trailing blocks no longer needed, in one kvc_pool_free() call.
 * The sequence's tokens (and so the positions of later appends) do not
 * change. For eviction, once survivors were moved to the head's front.
 *
 * Return: 0, or -EINVAL (nothing changed).
 */
int kvc_seq_truncate(struct kvc_seq *seq, uint32_t layer, uint32_t head,
		     uint32_t new_len);

struct kvc_recorder;

/**
 * kvc_rec_model() - Attach a recorder to a pool, then record the model's
 * shape and the policy's name (the configuration a trace reader needs
 * before any request).
 * @rec: the recorder.
 * @pool: the pool, holding no block yet.
 * @sh: the model shape.
 * @policy: the policy's name.
 *
 * Return: 0, or the pool's or the recorder's error (then the pool is
 * left without the recorder).
 */
int kvc_rec_model(struct kvc_recorder *rec, struct kvc_pool *pool,
		  const struct kvc_model_shape *sh, const char *policy);

/**
 * kvc_seq_blocks() - Blocks a sequence holds over all its tables.
 * @seq: the sequence.
 *
 * Return: the count.
 */
uint64_t kvc_seq_blocks(const struct kvc_seq *seq);

/**
 * kvc_seq_block_ids() - Every block id of a sequence, table by table
 * (layer-major), each table's in logical order.
 * @seq: the sequence.
 * @ids: room for kvc_seq_blocks() ids.
 */
void kvc_seq_block_ids(const struct kvc_seq *seq, uint32_t *ids);

/**
 * kvc_seq_restore() - A new sequence with given lengths and fresh blocks,
 * for one read back from a file.
 * @kv: the cache.
 * @tokens: its tokens (positions of later appends start there).
 * @lens: KVs of each table, layers * kv_heads entries (layer-major), each
 *        at most @tokens.
 * @out: set to the sequence; its blocks are allocated in one call (all or
 *       nothing) and owned by their (sequence, table, index), but their
 *       K, V and slot metadata are not written: the caller writes them.
 *       Their ids are left in kv->ids in kvc_seq_block_ids() order.
 *
 * Return: 0, -EINVAL (a length past @tokens or past 2^20 blocks),
 * -ENOMEM (the pool cannot hold it), -ENOSPC (too many sequences); on
 * failure no sequence is left.
 */
int kvc_seq_restore(struct kvc_kv *kv, uint32_t tokens, const uint32_t *lens,
		    struct kvc_seq **out);

/**
 * kvc_slot_copy() - Copy one KV (K, V and slot metadata) to another slot.
 * @kv: the cache.
 * @from_block: source block id.
 * @from_slot: source slot, below block_size.
 * @to_block: destination block id.
 * @to_slot: destination slot, below block_size.
 *
 * The KV-Compress MoveCache step of the CPU path (host caches only; a
 * device cache moves on the device, see evict.c); the source is left as
 * it was.
 */
void kvc_slot_copy(struct kvc_kv *kv, uint32_t from_block, uint32_t from_slot,
		   uint32_t to_block, uint32_t to_slot);

/* The paged view the kernels read, for one (layer, KV head). */
static inline struct kvc_paged_kv kvc_seq_paged(const struct kvc_seq *seq,
						uint32_t layer, uint32_t head)
{
	const struct kvc_kv *kv = seq->kv;
	const struct kvc_head_table *t = kvc_seq_head(seq, layer, head);
	struct kvc_paged_kv p = {
		.base = kv->base,
		.block_bytes = kv->block_bytes,
		.block_size = kv->shape.block_size,
		.head_dim = kv->shape.head_dim,
		.dtype = kv->shape.dtype,
		.table = t->blocks,
		.len = t->len,
		.meta = kv->meta,
	};

	return p;
}

#endif /* KVC_RUNTIME_INTERNAL_H */
