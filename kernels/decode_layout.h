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
/* CTAs per multiprocessor the planner aims a decode grid at (four FMA
 * partition CTAs fit in registers and shared memory; three of the tensor
 * core form). */
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

/* Query heads a warp of the FMA form keeps (a slice of the group). */
#define KVC_DECODE_SLICE 4u

/*
 * Which form of the partition kernel runs: the FMA form for f32 storage
 * and for 16-bit storage with a small group and head_dim (slices of up to
 * KVC_DECODE_SLICE query heads), tensor cores otherwise.
 */
KVC_ARGS_HD int kvc_decode_uses_mma(uint32_t dtype, uint32_t group, uint32_t hd)
{
	return dtype != 0u /* KVC_DTYPE_F32 */ &&
	       !(hd <= 128u && group <= KVC_DECODE_SLICE);
}

/*
 * Dynamic shared memory of a partition CTA: the stages, then what its
 * form needs: for the FMA form, a scratch per warp; for tensor cores, the
 * partial scores of the four warps ([4][16][tt + 8] f32), the weights hi
 * and lo ([16][tt + 8] of 16 bits each) and 16 rescale factors, tt = the
 * keys of a stage. Sized per form so that four FMA CTAs fit in a
 * multiprocessor's shared memory (KVC_DECODE_CTAS_PER_SM).
 */
KVC_ARGS_HD uint32_t kvc_decode_part_smem(uint32_t dtype, uint32_t group,
					  uint32_t part_tokens, uint32_t hd)
{
	uint32_t sr = KVC_DECODE_STAGE_BYTES / (4u * hd) + 8u;
	uint32_t fma =
		4u * (KVC_DECODE_THREADS / 32u) * KVC_DECODE_WARP_SCRATCH;
	uint32_t mma = 4u * (4u * 16u * sr) + 2u * (2u * 16u * sr) + 4u * 16u;

	return KVC_DECODE_STAGES * KVC_DECODE_STAGE_BYTES +
	       (kvc_decode_uses_mma(dtype, group, hd) ? mma : fma);
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
