/* SPDX-License-Identifier: MIT */
/*
 * The arguments of the CUDA kernels, one plain struct per kernel passed by
 * value as its only parameter, and the layouts of their workspaces. This
 * header is shared word for word by the kernels (nvcc), the host code that
 * launches them, and the CPU emulation the fake driver runs in their
 * place, so the three agree on every offset.
 *
 * Device addresses are uint64_t (a CUdeviceptr); 0 means "none" where a
 * field says so. Every struct is a multiple of 8 bytes with no padding
 * the compiler could place differently.
 *
 * Slots: a "global slot" is block_id * block_size + offset; the slot
 * metadata (struct kvc_slot_meta) of global slot s is at meta + 8 * s.
 * Block layout as in attention.h: K then V, each block_size rows of
 * head_dim elements of the dtype.
 */
#ifndef KVC_KERNELS_ARGS_H
#define KVC_KERNELS_ARGS_H

#include <stdint.h>

#ifdef __CUDACC__
#define KVC_ARGS_HD static inline __host__ __device__
#else
#define KVC_ARGS_HD static inline
#endif

/* The head_dim variants the attention kernels are built for: a head_dim
 * runs on the smallest variant at least as large (rows padded inside the
 * kernel). head_dim must be a multiple of 8 and at most 256. */
#define KVC_KERNEL_HD_SMALL 64u
#define KVC_KERNEL_HD_MEDIUM 128u
#define KVC_KERNEL_HD_LARGE 256u
/* Largest GQA group (query heads per KV head) the kernels take. */
#define KVC_KERNEL_MAX_GROUP 16u
/* Pairs a block-copy launch carries in its parameters. */
#define KVC_COPY_INLINE 240u
/* kvc_block_copy: threads a CTA, and CTAs a multiprocessor at most (a
 * grid-stride loop covers the rest). */
#define KVC_COPY_THREADS 256u
#define KVC_COPY_CTAS_PER_SM 16u
/* kvc_cache_write and kvc_move_cache: a warp a row, four rows a CTA. */
#define KVC_ROWS_PER_CTA 4u
#define KVC_ROWS_THREADS 128u

/**
 * struct kvc_kargs_paged - The paged cache as the kernels see it.
 * @base: device address of block 0.
 * @block_bytes: bytes per block.
 * @meta: device address of the slot metadata array, or 0 (then positions
 *        are slot indexes and no metric is kept).
 * @block_size: tokens per block.
 * @head_dim: elements per K or V row.
 * @dtype: enum kvc_dtype.
 * @pad: zero.
 */
struct kvc_kargs_paged {
	uint64_t base;
	uint64_t block_bytes;
	uint64_t meta;
	uint32_t block_size;
	uint32_t head_dim;
	uint32_t dtype;
	uint32_t pad;
};

/**
 * struct kvc_decode_args - One decode step over a batch of heads.
 * @kv: the cache.
 * @tables: u32 block ids, [nr_heads][table_stride]: head i's table.
 * @lens: u32 [nr_heads], the KVs of each head (0 allowed: zero output).
 * @q: f32 queries, [nr_heads][group][head_dim]. Heads are numbered
 *     sequence-major (head i = seq * kv_heads + kv head), so this is the
 *     natural [seqs][q_heads][head_dim] of a batch.
 * @out: f32 outputs, same layout as @q.
 * @ws: workspace, kvc_decode_ws() bytes.
 * @table_stride: entries from one head's table to the next.
 * @nr_heads: heads in the batch (grid.y).
 * @group: query heads per KV head, 1..%KVC_KERNEL_MAX_GROUP.
 * @metric: enum kvc_metric_kind; NONE = @kv.meta untouched.
 * @part_tokens: tokens per partition, a multiple of block_size.
 * @nr_parts: partitions per head (grid.x of the partition kernel),
 *            ceil(@max_len / @part_tokens).
 * @max_len: at least every @lens[i].
 * @scale: score = scale * q.k.
 *
 * Kernel kvc_decode_part_<dtype>_<hd>: grid (@nr_parts, @nr_heads). CTA
 * (p, i) reads the KVs [p * part_tokens, min(lens[i], (p+1) * part_tokens))
 * of head i once for all @group queries and writes that partition's
 * softmax state and unnormalised accumulator (and, with a metric, the
 * raw scaled scores) into the workspace; a partition past the head's end
 * writes max = -INFINITY, sum = 0, acc = 0.
 *
 * Kernel kvc_decode_reduce_<hd>: grid (@nr_heads). Merges head i's
 * partitions with kvc_softmax_merge() in partition order, writes @out,
 * and with a metric adds to each of the head's slots the sum over the
 * group of kvc_metric_term(exp(score - max) / sum).
 */
struct kvc_decode_args {
	struct kvc_kargs_paged kv;
	uint64_t tables;
	uint64_t lens;
	uint64_t q;
	uint64_t out;
	uint64_t ws;
	uint32_t table_stride;
	uint32_t nr_heads;
	uint32_t group;
	uint32_t metric;
	uint32_t part_tokens;
	uint32_t nr_parts;
	uint32_t max_len;
	float scale;
};

/**
 * struct kvc_decode_ws - Where the decode workspace keeps what, in floats
 * from its start.
 * @max: [nr_heads][group][nr_parts] partition maxima.
 * @sum: [nr_heads][group][nr_parts] partition sums (relative to @max).
 * @acc: [nr_heads][group][nr_parts][head_dim] unnormalised outputs.
 * @scores: [nr_heads][group][max_len] scaled scores, only with a metric.
 * @floats: the whole workspace.
 */
struct kvc_decode_ws {
	uint64_t max;
	uint64_t sum;
	uint64_t acc;
	uint64_t scores;
	uint64_t floats;
};

KVC_ARGS_HD struct kvc_decode_ws
kvc_decode_ws_layout(uint32_t nr_heads, uint32_t group, uint32_t nr_parts,
		     uint32_t head_dim, uint32_t max_len, uint32_t metric)
{
	struct kvc_decode_ws w;
	uint64_t states = (uint64_t)nr_heads * group * nr_parts;

	w.max = 0;
	w.sum = states;
	w.acc = 2 * states;
	w.scores = w.acc + states * head_dim;
	w.floats =
		w.scores + (metric ? (uint64_t)nr_heads * group * max_len : 0);
	return w;
}

/**
 * struct kvc_prefill_args - Causal prefill attention over a batch of heads.
 * @kv: the cache.
 * @tables: as in struct kvc_decode_args.
 * @lens: as in struct kvc_decode_args; each at least @n.
 * @q: f32 queries of the last @n slots of every head: element (head i,
 *     query j, group member g, d) at
 *     (((i / kv_heads) * n + j) * kv_heads * group + (i % kv_heads) * group
 *     + g) * head_dim + d, the natural [seqs][n][q_heads][head_dim].
 * @out: f32 outputs, same layout as @q.
 * @ws: workspace, kvc_prefill_ws_layout() floats.
 * @table_stride: entries from one head's table to the next.
 * @nr_heads: heads in the batch.
 * @kv_heads: KV heads per sequence (@nr_heads is a multiple of it).
 * @group: query heads per KV head.
 * @n: new tokens per head: query j sits at slot lens[i] - n + j.
 * @metric: enum kvc_metric_kind of the observation; NONE = no metric.
 * @window: only queries j >= kvc_attn_first_observer(n, window) add.
 * @buffer: a query adds to a key only kvc_attn_observed(q_pos, k_pos,
 *          buffer).
 * @pool_kernel: as struct kvc_observe (0 or 1 = no pooling).
 * @max_len: at least every @lens[i].
 * @scale: score = scale * q.k.
 *
 * Causality is by position (meta[].pos, or the slot index when
 * @kv.meta is 0): query at position p sees keys at positions <= p.
 *
 * Kernel kvc_prefill_attn_<dtype>_<hd>: grid (ceil(n / QTILE), nr_heads)
 * (QTILE from kvc_prefill_q_tile()): writes @out, and with a metric the
 * softmax state of each (head, query, g) into the workspace.
 * Kernel kvc_prefill_metric_<dtype>_<hd>: grid (ceil(max_len / KTILE),
 * nr_heads) (KTILE from kvc_prefill_k_tile()): for every key of the head,
 * the sum over observed queries and the group of kvc_metric_term(weight)
 * (weight from the saved states), added to meta[].metric, or written to
 * the workspace's unpooled area when pooling.
 * Kernel kvc_prefill_pool: grid (ceil(max_len / 256), nr_heads): adds the
 * max-pool of the unpooled metric to meta[].metric.
 */
struct kvc_prefill_args {
	struct kvc_kargs_paged kv;
	uint64_t tables;
	uint64_t lens;
	uint64_t q;
	uint64_t out;
	uint64_t ws;
	uint32_t table_stride;
	uint32_t nr_heads;
	uint32_t kv_heads;
	uint32_t group;
	uint32_t n;
	uint32_t metric;
	uint32_t window;
	uint32_t buffer;
	uint32_t pool_kernel;
	uint32_t max_len;
	float scale;
	uint32_t pad;
};

/**
 * struct kvc_prefill_ws - The prefill workspace, in floats.
 * @max: [nr_heads][n][group] softmax maxima (with a metric).
 * @sum: [nr_heads][n][group] softmax sums (with a metric).
 * @unpooled: [nr_heads][max_len] metric before pooling (when pooling).
 * @floats: the whole workspace (0 without a metric).
 */
struct kvc_prefill_ws {
	uint64_t max;
	uint64_t sum;
	uint64_t unpooled;
	uint64_t floats;
};

KVC_ARGS_HD struct kvc_prefill_ws
kvc_prefill_ws_layout(uint32_t nr_heads, uint32_t group, uint32_t n,
		      uint32_t max_len, uint32_t metric, uint32_t pool_kernel)
{
	struct kvc_prefill_ws w;
	uint64_t states = metric ? (uint64_t)nr_heads * n * group : 0;

	w.max = 0;
	w.sum = states;
	w.unpooled = 2 * states;
	w.floats =
		w.unpooled +
		(metric && pool_kernel > 1 ? (uint64_t)nr_heads * max_len : 0);
	return w;
}

/**
 * struct kvc_cache_write_args - Store new K and V rows (reshape_and_cache).
 * @kv: the cache.
 * @slots: u64 [rows] global slot of each row.
 * @k: f32 [rows][head_dim].
 * @v: f32 [rows][head_dim].
 * @pos: i32 [rows] token positions, or 0: then the metadata is left as
 *       it is. With positions, meta = { metric 0, pos }.
 * @rows: rows to store.
 * @pad: zero.
 *
 * Kernel kvc_cache_write: grid (ceil(rows / 4)), 128 threads (a warp a
 * row); f32 -> dtype rounds to nearest even, as the CPU path does.
 */
struct kvc_cache_write_args {
	struct kvc_kargs_paged kv;
	uint64_t slots;
	uint64_t k;
	uint64_t v;
	uint64_t pos;
	uint32_t rows;
	uint32_t pad;
};

/**
 * struct kvc_move_args - KV-Compress MoveCache: copy KVs between slots.
 * @kv: the cache.
 * @moves: u64 [n][2]: (from global slot, to global slot). No slot is
 *         both a source and a destination, and no destination repeats,
 *         so the moves may run in any order.
 * @n: moves.
 * @pad: zero.
 *
 * Kernel kvc_move_cache: grid (ceil(n / 4)), 128 threads: K row, V row
 * and the slot metadata (when @kv.meta is set) of each move.
 */
struct kvc_move_args {
	struct kvc_kargs_paged kv;
	uint64_t moves;
	uint32_t n;
	uint32_t pad;
};

/**
 * struct kvc_copy_args - Batched copy of equal-sized items (blocks).
 * @src_base: address of source item 0.
 * @dst_base: address of destination item 0 (may equal @src_base).
 * @bytes: bytes per item, a multiple of 4 (16-byte words where @bytes
 *         and both bases allow).
 * @pairs_dev: u32 [n][2] (source index, destination index) in device
 *             memory, or 0: the first @n pairs of @pairs.
 * @n: items; at most %KVC_COPY_INLINE when @pairs_dev is 0.
 * @pad: zero.
 * @pairs: inline (source index, destination index) pairs.
 *
 * Item k copies @bytes from @src_base + src * @bytes to @dst_base + dst *
 * @bytes. No destination overlaps a source or another destination.
 * Kernel kvc_block_copy: grid from kvc_copy_launch(), 256 threads, a
 * grid-stride loop over (item, word).
 */
struct kvc_copy_args {
	uint64_t src_base;
	uint64_t dst_base;
	uint64_t bytes;
	uint64_t pairs_dev;
	uint32_t n;
	uint32_t pad;
	uint32_t pairs[2 * KVC_COPY_INLINE];
};

#endif /* KVC_KERNELS_ARGS_H */
