/* SPDX-License-Identifier: MIT */
/*
 * Paged attention over ONE (layer, KV head) of one sequence, the plain C
 * reference: what the CPU path runs and what the CUDA kernels are tested
 * against. It reads raw block tables and block memory, and knows nothing
 * of pools or sequences.
 *
 * Block layout: K then V, each block_size x head_dim elements of @dtype,
 * slot-major; block id b lives at base + b * block_bytes. Per-slot
 * metadata (eviction metric, token position) lives apart, at
 * meta[b * block_size + slot], and moves with its block.
 */
#ifndef KVC_KERNELS_ATTENTION_H
#define KVC_KERNELS_ATTENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kvc/attention.h>
#include <kvc/kv.h>

/**
 * struct kvc_slot_meta - What one KV slot carries besides K and V.
 * @metric: accumulated eviction metric (see enum kvc_metric_kind).
 * @pos: the token's position in the sequence.
 */
struct kvc_slot_meta {
	float metric;
	int32_t pos;
};

/**
 * struct kvc_paged_kv - One (layer, KV head) as the kernels see it.
 * @base: address of block 0.
 * @block_bytes: bytes per block.
 * @block_size: tokens per block.
 * @head_dim: elements per K or V vector.
 * @dtype: element type.
 * @table: block ids, ceil(@len / @block_size) of them.
 * @len: KVs (slot i is in block table[i / block_size], slot i %
 *       block_size).
 * @meta: the slot metadata array (indexed by block id), or NULL.
 */
struct kvc_paged_kv {
	uint8_t *base;
	uint64_t block_bytes;
	uint32_t block_size;
	uint32_t head_dim;
	enum kvc_dtype dtype;
	const uint32_t *table;
	uint32_t len;
	struct kvc_slot_meta *meta;
};

/*
 * enum kvc_metric_kind (how attention weights add up into the metric) and
 * struct kvc_observe (which prefill queries add to it) are public: see
 * <kvc/attention.h>.
 */

#ifdef __cplusplus
extern "C" {
#endif

/* Largest head_dim the reference handles (it keeps a tile of K or V rows
 * as f32, with the accumulators, on the stack: about 31 KiB a call). */
#define KVC_ATTN_MAX_HEAD_DIM 256u

/**
 * kvc_attn_decode_ref() - Decode attention of one KV head's query group.
 * @kv: the (layer, KV head); 1 <= head_dim <= %KVC_ATTN_MAX_HEAD_DIM.
 * @group: query heads sharing this KV head (GQA), >= 1.
 * @q: their queries, [group][head_dim].
 * @scale: score = scale * q.k (usually 1/sqrt(head_dim)).
 * @out: outputs, [group][head_dim]; may not overlap @q.
 * @metric: with a kind other than %KVC_METRIC_NONE (and @kv->meta set),
 *          each slot's metric gets the sum over the group of
 *          kvc_metric_term() of its softmax weight.
 *
 * Every query attends to all @kv->len slots; each K and V row is read and
 * converted once for the whole group. Online softmax over tiles of keys,
 * so scores of any size are safe. @kv->len == 0 gives zeros.
 */
void kvc_attn_decode_ref(const struct kvc_paged_kv *kv, uint32_t group,
			 const float *q, float scale, float *out,
			 enum kvc_metric_kind metric);

/**
 * kvc_attn_prefill_ws_bytes() - Scratch a prefill needs.
 * @len: KVs of the head (@n new ones included).
 * @group: query heads per KV head.
 * @n: new tokens.
 * @obs: the observation, or NULL.
 *
 * One softmax state per observed (query, query head), and the head's
 * unpooled metric when @obs pools.
 *
 * Return: bytes (0 when no metric is collected), SIZE_MAX on overflow.
 */
size_t kvc_attn_prefill_ws_bytes(uint32_t len, uint32_t group, uint32_t n,
				 const struct kvc_observe *obs);

/**
 * kvc_attn_prefill_ref_ws() - Causal prefill attention of one KV head's
 * query group, with the caller's scratch.
 * @kv: the (layer, KV head); its last @n slots are the new tokens.
 * @group: query heads sharing this KV head.
 * @n: new tokens, <= @kv->len.
 * @q: queries: row i (0 <= i < @n) is [group][head_dim] at @q + i * @stride.
 * @stride: floats from one query row to the next, in @q and @out
 *          (group * head_dim when packed).
 * @scale: score = scale * q.k.
 * @out: outputs, laid out as @q; may not overlap it.
 * @obs: which queries add to the metric, or NULL; ignored when @kv->meta
 *       is NULL.
 * @ws: kvc_attn_prefill_ws_bytes() of scratch (may be NULL when that is 0).
 *
 * Query i sits at slot len - n + i; it attends to the slots whose
 * positions (meta[].pos; the slot index when @kv->meta is NULL) are at
 * most its own. Large prefills run on several threads, each writing its
 * own rows and keys, so results do not depend on the number of threads.
 */
void kvc_attn_prefill_ref_ws(const struct kvc_paged_kv *kv, uint32_t group,
			     uint32_t n, const float *q, size_t stride,
			     float scale, float *out,
			     const struct kvc_observe *obs, void *ws);

/**
 * kvc_attn_prefill_ref() - Causal prefill attention of one KV head's
 * query group.
 * @kv: the (layer, KV head); its last @n slots are the new tokens.
 * @group: query heads sharing this KV head.
 * @n: new tokens, <= @kv->len.
 * @q: queries, [n][group][head_dim].
 * @scale: score = scale * q.k.
 * @out: outputs, same layout; may not overlap @q.
 * @obs: which queries add to the metric, or NULL.
 *
 * kvc_attn_prefill_ref_ws() with packed rows and scratch from malloc().
 *
 * Return: 0, or -ENOMEM (nothing written).
 */
int kvc_attn_prefill_ref(const struct kvc_paged_kv *kv, uint32_t group,
			 uint32_t n, const float *q, float scale, float *out,
			 const struct kvc_observe *obs);

/**
 * kvc_attn_parallel() - Run @fn(@arg, i) for i in [0, @nr_items).
 * @nr_items: items.
 * @work: rough cost of all items (multiply-adds); small work stays on
 *        the calling thread.
 * @fn: the work of one item; items must write disjoint memory.
 * @arg: passed to @fn.
 *
 * Thread t of T takes items t, t + T, ...; a thread that cannot be
 * started leaves its items to the caller.
 */
void kvc_attn_parallel(uint32_t nr_items, uint64_t work,
		       void (*fn)(void *arg, uint32_t item), void *arg);

/**
 * kvc_attn_set_max_threads() - Cap the threads of kvc_attn_parallel().
 * @max: 1 = always on the calling thread; 0 = the default (online CPUs,
 *       at most 8).
 *
 * For tests and benchmarks: results never depend on it.
 */
void kvc_attn_set_max_threads(uint32_t max);

#ifdef __cplusplus
}
#endif

#endif /* KVC_KERNELS_ATTENTION_H */
