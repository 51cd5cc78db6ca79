/* SPDX-License-Identifier: MIT */
/*
 * Shape of the prefill attention kernels (prefill.cu): tiles, threads and
 * dynamic shared memory, shared with the launch logic (launch.c). The
 * kernels run on tensor cores, 16 query rows a warp, so the sizes below
 * follow the warp tiles: 64 rows a CTA pass, keys staged as 16-bit
 * planes (f32 keys as two of them, high and low part, for half as many
 * keys a tile).
 */
#ifndef KVC_KERNELS_PREFILL_LAYOUT_H
#define KVC_KERNELS_PREFILL_LAYOUT_H

#include "args.h"

/* Under C++ the shapes are also compile-time constants of the kernels. */
#ifdef __cplusplus
#define KVC_PREFILL_HD constexpr KVC_ARGS_HD
#else
#define KVC_PREFILL_HD KVC_ARGS_HD
#endif

#define KVC_PREFILL_THREADS 128u
#define KVC_PREFILL_METRIC_THREADS 128u
#define KVC_PREFILL_POOL_THREADS 256u

/* Query rows (query, group member) a CTA computes at once: a warp's 16. */
#define KVC_PREFILL_PASS_ROWS 64u

/**
 * kvc_prefill_q_tile() - Queries of one head a kvc_prefill_attn CTA takes.
 * @hd: the head_dim variant.
 *
 * All group members of each: the CTA goes over its rows 64 at a time,
 * so a group of one still fills every warp.
 *
 * Return: queries per CTA.
 */
KVC_PREFILL_HD uint32_t kvc_prefill_q_tile(uint32_t hd)
{
	return 64u;
}

/**
 * kvc_prefill_kv_tile() - Keys a kvc_prefill_attn CTA stages at a time.
 * @hd: the head_dim variant.
 *
 * For 16-bit types; f32 keys take half as many (two planes each).
 *
 * Return: keys per tile.
 */
KVC_PREFILL_HD uint32_t kvc_prefill_kv_tile(uint32_t hd)
{
	return hd > 128u ? 32u : 64u;
}

/**
 * kvc_prefill_k_tile() - Keys a kvc_prefill_metric CTA takes.
 * @hd: the head_dim variant.
 *
 * Return: keys per CTA.
 */
KVC_PREFILL_HD uint32_t kvc_prefill_k_tile(uint32_t hd)
{
	return hd > 128u ? 32u : 64u;
}

/**
 * kvc_prefill_attn_smem() - Dynamic shared memory of a kvc_prefill_attn CTA.
 * @group: query heads per KV head (the size does not depend on it).
 * @hd: the head_dim variant.
 *
 * A tile of K and one of V (16-bit planes), the 64 query rows of a pass as
 * two 16-bit planes, and per key of two tiles its row offset and
 * position, plus the rows' f16 exponents and a reduction.
 *
 * Return: bytes.
 */
KVC_PREFILL_HD uint32_t kvc_prefill_attn_smem(uint32_t group, uint32_t hd)
{
	uint32_t kt = kvc_prefill_kv_tile(hd);
	uint32_t kv = 4u * kt * hd, q = 4u * KVC_PREFILL_PASS_ROWS * hd;
	uint32_t keys = 2u * kt * (8u + 4u), rows = 4u * KVC_PREFILL_PASS_ROWS;

	return kv + q + keys + rows + 32u;
}

/**
 * kvc_prefill_metric_smem() - Dynamic shared memory of a kvc_prefill_metric
 * CTA.
 * @group: query heads per KV head (the size does not depend on it).
 * @hd: the head_dim variant.
 *
 * Its tile of K rows (two 16-bit planes), 64 query rows as two 16-bit
 * planes, per key its row offset and position, the rows' f16 exponents
 * and the per-warp sums of the keys.
 *
 * Return: bytes.
 */
KVC_PREFILL_HD uint32_t kvc_prefill_metric_smem(uint32_t group, uint32_t hd)
{
	uint32_t kt = kvc_prefill_k_tile(hd);

	return 4u * kt * hd + 4u * KVC_PREFILL_PASS_ROWS * hd + kt * (8u + 4u) +
	       4u * KVC_PREFILL_PASS_ROWS +
	       4u * (KVC_PREFILL_THREADS / 32u) * kt + 32u;
}

#endif /* KVC_KERNELS_PREFILL_LAYOUT_H */
