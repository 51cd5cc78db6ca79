/* SPDX-License-Identifier: MIT */
/*
 * The paged KV cache of the runtime: a model shape, a pool of blocks, and
 * sequences that own one block table and one context length per (layer,
 * KV head). One block holds block_size tokens of K and V for ONE (layer,
 * KV head), so each head can lose a different number of blocks.
 */
#ifndef KVC_KV_H
#define KVC_KV_H

#include <stdint.h>

#include <kvc/pool.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * enum kvc_dtype - How K and V are stored (compute is always f32).
 * @KVC_DTYPE_F32: 4-byte IEEE floats.
 * @KVC_DTYPE_F16: 2-byte IEEE halves, round to nearest even.
 * @KVC_DTYPE_BF16: 2-byte bfloat16 (the top half of an f32), round to
 *                  nearest even.
 */
enum kvc_dtype {
	KVC_DTYPE_F32 = 0,
	KVC_DTYPE_F16 = 1,
	KVC_DTYPE_BF16 = 2,
};

/**
 * kvc_dtype_bytes() - Bytes of one K or V element.
 * @dtype: a storage type.
 *
 * Return: 4 for f32, 2 for f16 and bf16.
 */
static inline uint32_t kvc_dtype_bytes(enum kvc_dtype dtype)
{
	return dtype == KVC_DTYPE_F32 ? 4 : 2;
}

/**
 * kvc_dtype_name() - The name of a storage type: "f32", "f16" or "bf16".
 * @dtype: the type.
 *
 * Return: the name, or "?".
 */
const char *kvc_dtype_name(enum kvc_dtype dtype);

/**
 * kvc_dtype_parse() - Parse "f32", "f16" or "bf16".
 * @name: the name.
 * @out: set on success.
 *
 * Return: 0, or -EINVAL with a message.
 */
int kvc_dtype_parse(const char *name, enum kvc_dtype *out);

/**
 * struct kvc_model_shape - The attention shape a cache serves.
 * @layers: transformer layers (>= 1).
 * @q_heads: query heads per layer; a multiple of @kv_heads.
 * @kv_heads: KV heads per layer (GQA: q_heads / kv_heads query heads
 *            share one).
 * @head_dim: 64, 80, 96, 128 or 256.
 * @block_size: tokens per block: 8, 16 or 32.
 * @dtype: storage type of K and V.
 */
struct kvc_model_shape {
	uint32_t layers;
	uint32_t q_heads;
	uint32_t kv_heads;
	uint32_t head_dim;
	uint32_t block_size;
	enum kvc_dtype dtype;
};

/**
 * kvc_model_shape_check() - Check a shape.
 * @shape: the shape.
 *
 * Return: 0, or -EINVAL with a message naming the bad field.
 */
int kvc_model_shape_check(const struct kvc_model_shape *shape);

/**
 * kvc_kv_block_bytes() - Bytes of one block: K then V, block_size x
 * head_dim elements each.
 * @shape: a valid shape.
 *
 * Return: the size.
 */
uint64_t kvc_kv_block_bytes(const struct kvc_model_shape *shape);

struct kvc_kv;
struct kvc_seq;

/**
 * struct kvc_kv_params - How to build a cache.
 * @shape: the model shape.
 * @capacity_blocks: blocks the cache may hold (rounded up to chunks).
 * @backend_kind: where the pool maps its chunks.
 * @backend: a backend the caller owns, or NULL.
 * @empty_chunks_kept: the pool's watermark.
 * @max_mapped_bytes: the pool's cap on physical bytes mapped at once (0 =
 *                    none beyond the capacity; else at least one chunk):
 *                    appends past it fail with -ENOMEM, as on a full
 *                    device.
 * @name: label of the pool's stats page, or NULL.
 * @flags: pool flags (%KVC_POOL_NO_STATS_PAGE).
 *
 * The chunk size is the smallest multiple of the backend's granularity
 * that whole blocks fill (head_dim 80 or 96 makes blocks that do not
 * divide 2 MiB).
 *
 * On the cuda backend the blocks live in device memory and every
 * operation of the cache runs on the device, queued in order on one
 * stream of the cache's own; the calls still return their results in host
 * memory. %KVC_BACKEND_AUTO falls back to the host backend (with a
 * notice) when the device carries no kernels the library can run.
 */
struct kvc_kv_params {
	struct kvc_model_shape shape;
	uint64_t capacity_blocks;
	enum kvc_backend_kind backend_kind;
	struct kvc_backend *backend;
	uint32_t empty_chunks_kept;
	uint64_t max_mapped_bytes;
	const char *name;
	uint32_t flags;
};

/**
 * kvc_kv_create() - Build a cache and its pool.
 * @params: the parameters.
 * @out: set to the cache.
 *
 * Return: 0, -EINVAL for a bad shape or capacity, -EOPNOTSUPP for a cuda
 * backend without loaded kernels or a shape they do not take (more than
 * 16 query heads per KV head, more than 65535 KV heads), -ENOMEM, or the
 * backend's, the driver's or the pool's error.
 */
int kvc_kv_create(const struct kvc_kv_params *params, struct kvc_kv **out);

/**
 * kvc_kv_destroy() - Free every sequence, the pool and the cache.
 * @kv: the cache, or NULL.
 */
void kvc_kv_destroy(struct kvc_kv *kv);

/**
 * kvc_kv_pool() - The cache's pool (for stats and compaction).
 * @kv: the cache.
 *
 * Compacting it is safe: the cache patches its block tables and moves the
 * slot metadata through the pool's move hook, which it owns. On the cuda
 * backend, pass the cache's fence (kvc_kv_fence()) to kvc_pool_compact(),
 * or call kvc_kv_compact(): the copies must be ordered with the cache's
 * device work.
 *
 * Return: the pool.
 */
struct kvc_pool *kvc_kv_pool(struct kvc_kv *kv);

struct kvc_compact_result;

/**
 * kvc_kv_fence() - The fence of the cache's device work.
 * @kv: the cache.
 * @f: set to the cache's stream (%KVC_FENCE_CUDA_STREAM) on the cuda
 *     backend, to %KVC_FENCE_NONE on the host, where nothing is pending.
 *
 * Compaction given it orders its copies after the cache's queued work,
 * and the cache's later work after the copies, and unmaps vacated chunks
 * only once both have finished.
 */
void kvc_kv_fence(const struct kvc_kv *kv, struct kvc_fence *f);

/**
 * kvc_kv_compact() - Compact the cache's pool in full, fenced by the
 * cache's device work.
 * @kv: the cache.
 * @res: filled with what was done (may be NULL).
 *
 * Return: as kvc_pool_compact().
 */
int kvc_kv_compact(struct kvc_kv *kv, struct kvc_compact_result *res);

/**
 * kvc_kv_backend_name() - Name of the backend the cache's pool maps on.
 * @kv: the cache.
 *
 * Return: "host", "cuda" or "cuda-fake".
 */
const char *kvc_kv_backend_name(const struct kvc_kv *kv);

/**
 * kvc_kv_device_overhead() - Device memory the cache holds beside its
 * blocks: the slot metadata array and the staging for kernel arguments.
 * @kv: the cache.
 *
 * Return: bytes as allocated (0 on the host backend).
 */
uint64_t kvc_kv_device_overhead(const struct kvc_kv *kv);

/**
 * kvc_kv_shape() - The cache's shape.
 * @kv: the cache.
 *
 * Return: the shape.
 */
const struct kvc_model_shape *kvc_kv_shape(const struct kvc_kv *kv);

/**
 * kvc_kv_usage() - What the cache stores, for the pool's byte ladder.
 * @kv: the cache.
 * @usage: filled: logical bytes (every token of every sequence in every
 *         (layer, KV head), K and V), live bytes (the KVs the heads hold),
 *         no reservation, the sequences; preemptions left 0.
 */
void kvc_kv_usage(const struct kvc_kv *kv, struct kvc_pool_usage *usage);

/**
 * kvc_kv_check() - Check every invariant of the cache.
 * @kv: the cache.
 *
 * Every table entry is a live block owned by its (sequence, layer, head,
 * index); per-head lengths fit their tables; the pool passes its own
 * check; live blocks equal the sum of the tables. On the cuda backend
 * also: the device's slot positions equal the host mirror's (and the
 * metrics, where no device attention ran since they were copied down);
 * this waits for the cache's device work.
 *
 * Return: 0, or -EFAULT with a message (or the driver's error when the
 * device cannot be read).
 */
int kvc_kv_check(struct kvc_kv *kv);

/**
 * kvc_seq_create() - Start an empty sequence.
 * @kv: the cache.
 * @out: set to the sequence.
 *
 * Return: 0, -ENOMEM, or -ENOSPC when 2^24 sequences are live.
 */
int kvc_seq_create(struct kvc_kv *kv, struct kvc_seq **out);

/**
 * kvc_seq_destroy() - Free a sequence and all its blocks.
 * @seq: the sequence, or NULL.
 */
void kvc_seq_destroy(struct kvc_seq *seq);

/**
 * kvc_seq_append() - Write the K and V of new tokens (the cache write).
 * @seq: the sequence.
 * @n: tokens.
 * @k: keys, [layers][kv_heads][n][head_dim] floats; or NULL, with @v
 *     NULL too, on a host cache: the slots are taken and positioned but
 *     their K and V left unwritten, for kvc_seq_write_layer() to fill
 *     before anything reads them.
 * @v: values, same layout.
 *
 * Each (layer, head) appends at its own length; the tokens get positions
 * seq_tokens .. seq_tokens + n - 1 and metric 0. The blocks all heads need
 * come from the pool in one call: all or nothing. On the cuda backend the
 * write is queued on the cache's stream (@k and @v are copied before the
 * call returns).
 *
 * Return: 0, -EINVAL (one of @k and @v NULL), -EOPNOTSUPP (both NULL on a
 * cuda cache), -ENOMEM, or on the cuda backend the driver's error
 * (nothing written: the sequence is as it was).
 */
int kvc_seq_append(struct kvc_seq *seq, uint32_t n, const float *k,
		   const float *v);

/**
 * kvc_seq_write_layer() - Overwrite the K and V of the newest KVs of one
 * layer.
 * @seq: the sequence.
 * @layer: the layer.
 * @n: KVs per head; they must be the last @n appended, still the last @n
 *     of every head of @layer (no compression since).
 * @k: keys, [kv_heads][n][head_dim] floats.
 * @v: values, same layout.
 *
 * A model computes the K and V of layer l + 1 only after the attention of
 * layer l, while kvc_seq_append() writes every layer at once: it appends
 * placeholders for all layers, then fills each layer in turn with this.
 * Stored as kvc_seq_append() stores them; positions and metrics are kept.
 * Host caches only for now.
 *
 * Return: 0; -EINVAL for bad arguments or when the last @n slots of a
 * head do not hold the newest @n positions (nothing written);
 * -EOPNOTSUPP on a cuda cache.
 */
int kvc_seq_write_layer(struct kvc_seq *seq, uint32_t layer, uint32_t n,
			const float *k, const float *v);

/**
 * kvc_seq_tokens() - Tokens appended to a sequence (its logical length).
 * @seq: the sequence.
 *
 * Return: the count.
 */
uint32_t kvc_seq_tokens(const struct kvc_seq *seq);

/**
 * kvc_seq_len() - KVs a (layer, KV head) holds now.
 * @seq: the sequence.
 * @layer: the layer.
 * @head: the KV head.
 *
 * Return: the length, at most kvc_seq_tokens().
 */
uint32_t kvc_seq_len(const struct kvc_seq *seq, uint32_t layer, uint32_t head);

/**
 * kvc_seq_table() - The block table of a (layer, KV head).
 * @seq: the sequence.
 * @layer: the layer.
 * @head: the KV head.
 * @nr_blocks: set to the number of blocks (ceil(len / block_size)).
 *
 * Valid until the next call that changes the sequence or compacts the pool.
 *
 * Return: the block ids.
 */
const uint32_t *kvc_seq_table(const struct kvc_seq *seq, uint32_t layer,
			      uint32_t head, uint32_t *nr_blocks);

#ifdef __cplusplus
}
#endif
#endif /* KVC_KV_H */
