/* SPDX-License-Identifier: MIT */
/*
 * Launch logic of the CUDA kernels, in plain C: which kernel variant,
 * grids, threads, shared memory, partition counts and workspace sizes,
 * from the shapes and the device's properties. No CUDA here, so the CPU
 * tests cover every rule; cuda_kernels.c only applies the plans.
 */
#ifndef KVC_KERNELS_LAUNCH_H
#define KVC_KERNELS_LAUNCH_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/attention.h>
#include <kvc/kv.h>

#include "args.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether a storage type (enum kvc_dtype) is one the kernels know. */
static inline bool kvc_kernel_dtype_ok(uint32_t dtype)
{
	return dtype == KVC_DTYPE_F32 || dtype == KVC_DTYPE_F16 ||
	       dtype == KVC_DTYPE_BF16;
}

/* Whether a metric (enum kvc_metric_kind) is one the kernels know. */
static inline bool kvc_kernel_metric_ok(uint32_t metric)
{
	return metric == KVC_METRIC_NONE || metric == KVC_METRIC_L2 ||
	       metric == KVC_METRIC_L1 || metric == KVC_METRIC_AVG;
}

/**
 * struct kvc_gpu_info - What the launch logic needs of a device.
 * @sms: multiprocessors.
 * @smem_optin: most dynamic shared memory one CTA may ask for (bytes).
 * @cc_major: compute capability, major.
 * @cc_minor: compute capability, minor.
 * @l2_bytes: L2 cache size.
 * @peak_bytes_per_s: peak memory bandwidth from the memory clock and bus
 *                    width (2 transfers a clock), 0 when unknown.
 */
struct kvc_gpu_info {
	uint32_t sms;
	uint32_t smem_optin;
	uint32_t cc_major;
	uint32_t cc_minor;
	uint64_t l2_bytes;
	uint64_t peak_bytes_per_s;
};

/**
 * struct kvc_launch - One kernel launch.
 * @grid: grid dimensions (x, y, z), each >= 1.
 * @threads: threads per CTA.
 * @smem: dynamic shared memory per CTA, bytes.
 */
struct kvc_launch {
	uint32_t grid[3];
	uint32_t threads;
	uint32_t smem;
};

/**
 * struct kvc_attn_shape - What an attention launch covers.
 * @nr_heads: (sequence, KV head) pairs in the batch, 1..65535.
 * @kv_heads: KV heads per sequence (@nr_heads is a multiple of it).
 * @group: query heads per KV head, 1..%KVC_KERNEL_MAX_GROUP.
 * @head_dim: a multiple of 8, 8..256.
 * @block_size: tokens per block, >= 1.
 * @max_len: the longest head's KVs, >= 1.
 * @dtype: the storage type.
 * @metric: the metric collected (decode), or the observation's (prefill).
 */
struct kvc_attn_shape {
	uint32_t nr_heads;
	uint32_t kv_heads;
	uint32_t group;
	uint32_t head_dim;
	uint32_t block_size;
	uint32_t max_len;
	enum kvc_dtype dtype;
	enum kvc_metric_kind metric;
};

/**
 * struct kvc_decode_plan - How to run one decode step.
 * @hd: the head_dim variant (%KVC_KERNEL_HD_SMALL, _MEDIUM or _LARGE).
 * @part_tokens: tokens per partition (a multiple of block_size).
 * @nr_parts: partitions per head.
 * @part: the partition kernel's launch.
 * @reduce: the reduce kernel's launch.
 * @ws_bytes: workspace bytes (struct kvc_decode_ws).
 */
struct kvc_decode_plan {
	uint32_t hd;
	uint32_t part_tokens;
	uint32_t nr_parts;
	struct kvc_launch part;
	struct kvc_launch reduce;
	uint64_t ws_bytes;
};

/**
 * kvc_kernel_hd() - The head_dim variant a head_dim runs on.
 * @head_dim: the head_dim.
 *
 * Return: 64, 128 or 256; 0 when @head_dim is not a multiple of 8 in
 * 8..256.
 */
uint32_t kvc_kernel_hd(uint32_t head_dim);

/**
 * kvc_decode_plan() - Plan a decode step.
 * @gpu: the device.
 * @shape: the batch.
 * @plan: the plan.
 *
 * Even partitions (ceil(max_len / P) tokens rounded up to whole blocks):
 * P at least what gives every multiprocessor %KVC_DECODE_CTAS_PER_SM
 * CTAs, at most twice that, the one whose grid spreads most evenly over
 * the multiprocessors; never shorter than 128 tokens (rounded up to whole
 * blocks), never so long that shared memory overflows, and never more
 * than 1024 of them per head.
 *
 * Return: 0, or -EINVAL for a shape the kernels do not take (nothing
 * written).
 */
int kvc_decode_plan(const struct kvc_gpu_info *gpu,
		    const struct kvc_attn_shape *shape,
		    struct kvc_decode_plan *plan);

/**
 * struct kvc_prefill_plan - How to run one prefill.
 * @hd: the head_dim variant.
 * @attn: the attention kernel's launch.
 * @metric: the metric kernel's launch (grid 0 when no metric is kept).
 * @pool: the pooling kernel's launch (grid 0 when not pooling).
 * @ws_bytes: workspace bytes (struct kvc_prefill_ws).
 */
struct kvc_prefill_plan {
	uint32_t hd;
	struct kvc_launch attn;
	struct kvc_launch metric;
	struct kvc_launch pool;
	uint64_t ws_bytes;
};

/**
 * kvc_prefill_plan() - Plan a prefill.
 * @gpu: the device.
 * @shape: the batch (@shape->metric: the observation's metric).
 * @n: new tokens per head, 1..@shape->max_len.
 * @pool_kernel: the observation's pool size (0 or 1 = none).
 * @plan: the plan.
 *
 * Return: 0, or -EINVAL (nothing written).
 */
int kvc_prefill_plan(const struct kvc_gpu_info *gpu,
		     const struct kvc_attn_shape *shape, uint32_t n,
		     uint32_t pool_kernel, struct kvc_prefill_plan *plan);

/**
 * kvc_rows_launch() - Launch of kvc_cache_write or kvc_move_cache.
 * @rows: rows (or moves), >= 1.
 * @launch: the launch: a warp a row, four rows a CTA.
 *
 * Return: 0, or -EINVAL when @rows needs more CTAs than a grid holds.
 */
int kvc_rows_launch(uint64_t rows, struct kvc_launch *launch);

/**
 * kvc_copy_launch() - Launch of kvc_block_copy.
 * @gpu: the device.
 * @n: items, >= 1.
 * @bytes: bytes per item, a multiple of 4.
 * @launch: the launch: 256 threads, enough CTAs to cover the words but
 *          no more than 16 per multiprocessor (a grid-stride loop does
 *          the rest).
 *
 * Return: 0, or -EINVAL.
 */
int kvc_copy_launch(const struct kvc_gpu_info *gpu, uint64_t n, uint64_t bytes,
		    struct kvc_launch *launch);

/**
 * kvc_gpu_peak_bw() - Peak memory bandwidth from device attributes.
 * @mem_clock_khz: CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE.
 * @bus_bits: CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH.
 *
 * Return: bytes per second (2 transfers a clock), 0 when either is 0.
 */
uint64_t kvc_gpu_peak_bw(uint32_t mem_clock_khz, uint32_t bus_bits);

#ifdef __cplusplus
}
#endif

#endif /* KVC_KERNELS_LAUNCH_H */
