/* SPDX-License-Identifier: MIT */
/*
 * Shape of the decode attention kernels (decode.cu): threads per CTA and
 * dynamic shared memory, shared with the launch logic (launch.c) that
 * sizes partitions to fit.
 */
#ifndef KVC_KERNELS_DECODE_LAYOUT_H
#define KVC_KERNELS_DECODE_LAYOUT_H

#include "args.h"

/* Threads of a partition CTA and of a reduce CTA. */
#define KVC_DECODE_THREADS 128u
#define KVC_DECODE_REDUCE_THREADS 512u
/* CTAs per multiprocessor the planner aims a decode grid at (the
 * partition kernel's shared memory and registers let four reside). */
#define KVC_DECODE_CTAS_PER_SM 4u

/*
 * A partition CTA streams K and V through a ring of stages in shared
 * memory, each 16 KiB (a tile of K rows, then its V rows); while one
 * stage is used, the others are in flight.
 */
#define KVC_DECODE_STAGES 3u
#define KVC_DECODE_STAGE_BYTES 16384u
/* Floats of a warp's scratch: a sub-tile's scores, the softmax factors. */
#define KVC_DECODE_WARP_SCRATCH 80u

/*
 * Dynamic shared memory of a partition CTA: the stages, then what the
 * larger of the kernel's two forms needs: for f32, a scratch per warp;
 * for 16-bit storage (tensor cores), the partial scores of the four
 * warps ([4][16][tt + 8] f32), the weights hi and lo ([16][tt + 8] of 16
 * bits each) and 16 rescale factors, tt = the keys of a stage.
 */
KVC_ARGS_HD uint32_t kvc_decode_part_smem(uint32_t group, uint32_t part_tokens,
					  uint32_t hd)
{
	uint32_t sr = KVC_DECODE_STAGE_BYTES / (4u * hd) + 8u;
	uint32_t fma =
		4u * (KVC_DECODE_THREADS / 32u) * KVC_DECODE_WARP_SCRATCH;
	uint32_t mma = 4u * (4u * 16u * sr) + 2u * (2u * 16u * sr) + 4u * 16u;

	return KVC_DECODE_STAGES * KVC_DECODE_STAGE_BYTES +
	       (fma > mma ? fma : mma);
}

/* Dynamic shared memory of a reduce CTA: two partial sums a thread, the
 * factor of each (group member, partition), each member's maximum and
 * 1 / sum. */
KVC_ARGS_HD uint32_t kvc_decode_reduce_smem(uint32_t group, uint32_t nr_parts,
					    uint32_t hd)
{
	return 8u * KVC_DECODE_REDUCE_THREADS +
	       4u * (group * nr_parts + 2u * group);
}

#endif /* KVC_KERNELS_DECODE_LAYOUT_H */
