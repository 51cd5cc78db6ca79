/* SPDX-License-Identifier: MIT */
/*
 * Shape of the prefill attention kernels (prefill.cu): tiles, threads and
 * dynamic shared memory, shared with the launch logic (launch.c).
 */
#ifndef KVC_KERNELS_PREFILL_LAYOUT_H
#define KVC_KERNELS_PREFILL_LAYOUT_H

#include "args.h"

#define KVC_PREFILL_THREADS 128u
#define KVC_PREFILL_METRIC_THREADS 128u
#define KVC_PREFILL_POOL_THREADS 256u

/* Queries of one head a kvc_prefill_attn CTA takes (all group members). */
KVC_ARGS_HD uint32_t kvc_prefill_q_tile(uint32_t hd)
{
	return hd <= 128u ? 16u : 8u;
}

/* Keys a kvc_prefill_metric CTA takes. */
KVC_ARGS_HD uint32_t kvc_prefill_k_tile(uint32_t hd)
{
	return 64u;
}

/* Dynamic shared memory of a kvc_prefill_attn CTA: its queries (f32), a
 * tile of K and V rows (f32) and the tile's scores. */
KVC_ARGS_HD uint32_t kvc_prefill_attn_smem(uint32_t group, uint32_t hd)
{
	uint32_t qt = kvc_prefill_q_tile(hd), kt = 32u;

	return 4u * (qt * group * hd + 2u * kt * hd + qt * group * kt);
}

/* Dynamic shared memory of a kvc_prefill_metric CTA: a tile of K rows. */
KVC_ARGS_HD uint32_t kvc_prefill_metric_smem(uint32_t group, uint32_t hd)
{
	return 4u * (kvc_prefill_k_tile(hd) * hd + group * hd);
}

#endif /* KVC_KERNELS_PREFILL_LAYOUT_H */
