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
#define KVC_DECODE_REDUCE_THREADS 128u

/*
 * Dynamic shared memory of a partition CTA: the group's queries, the
 * partition's scores, and one partial accumulator per warp.
 */
KVC_ARGS_HD uint32_t kvc_decode_part_smem(uint32_t group, uint32_t part_tokens,
					  uint32_t hd)
{
	return 4u * (group * hd + group * part_tokens +
		     (KVC_DECODE_THREADS / 32u) * group * hd);
}

/* Dynamic shared memory of a reduce CTA: the partitions' states and the
 * merged state of each group member. */
KVC_ARGS_HD uint32_t kvc_decode_reduce_smem(uint32_t group, uint32_t nr_parts,
					    uint32_t hd)
{
	return 4u * (2u * group * nr_parts + 2u * group);
}

#endif /* KVC_KERNELS_DECODE_LAYOUT_H */
