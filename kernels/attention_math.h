/* SPDX-License-Identifier: MIT */
/*
 * The math of paged attention, one element or one tile at a time: what
 * the C reference (attention_ref.c) and the CUDA kernels both include, so
 * the CPU tests cover the lines the GPU runs. Only the mapping of work to
 * threads differs between the two.
 *
 * Everything here is a small inline function of plain data (no pools, no
 * sequences, no allocation): slot -> (block, offset) arithmetic and the
 * addresses that follow from the block layout, one K/V element read as
 * f32, the dot product and the weighted sum, the online-softmax state and
 * its merge, causality and observation rules, and the metric term.
 *
 * Under nvcc the functions are __host__ __device__; under a C compiler
 * they are plain static inline.
 */
#ifndef KVC_KERNELS_ATTENTION_MATH_H
#define KVC_KERNELS_ATTENTION_MATH_H

#include <math.h>
#include <stdint.h>

#include "attention.h"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define KVC_HD static inline __host__ __device__
#else
#include "half.h"
#define KVC_HD static inline
#endif

/* ------------------------------------------------------------------ */
/* Slots, blocks and addresses */

/* Bytes of one K or V element. */
KVC_HD uint32_t kvc_attn_elem_bytes(enum kvc_dtype dtype)
{
	return dtype == KVC_DTYPE_F16 ? 2u : 4u;
}

/* Index into the block table of the block that holds @slot. */
KVC_HD uint32_t kvc_attn_slot_block(uint32_t slot, uint32_t block_size)
{
	return slot / block_size;
}

/* Offset of @slot inside its block. */
KVC_HD uint32_t kvc_attn_slot_offset(uint32_t slot, uint32_t block_size)
{
	return slot % block_size;
}

/* Index into the slot metadata of (block id @block, offset @offset). */
KVC_HD uint64_t kvc_attn_meta_index(uint32_t block, uint32_t offset,
				    uint32_t block_size)
{
	return (uint64_t)block * block_size + offset;
}

/*
 * Address of the K row of (block id @block, offset @offset): K comes
 * first in a block, block_size rows of head_dim elements. All offsets are
 * 64-bit.
 */
KVC_HD const uint8_t *kvc_attn_k_row(const struct kvc_paged_kv *kv,
				     uint32_t block, uint32_t offset)
{
	uint64_t row = (uint64_t)kv->head_dim * kvc_attn_elem_bytes(kv->dtype);

	return kv->base + (uint64_t)block * kv->block_bytes + offset * row;
}

/* Address of the V row of (block id @block, offset @offset): after K. */
KVC_HD const uint8_t *kvc_attn_v_row(const struct kvc_paged_kv *kv,
				     uint32_t block, uint32_t offset)
{
	uint64_t row = (uint64_t)kv->head_dim * kvc_attn_elem_bytes(kv->dtype);

	return kv->base + (uint64_t)block * kv->block_bytes +
	       ((uint64_t)kv->block_size + offset) * row;
}

/* ------------------------------------------------------------------ */
/* Elements and vectors */

/* Element @i of a K or V row, as f32 (f16 -> f32 is exact). */
KVC_HD float kvc_attn_load(const uint8_t *row, uint32_t i, enum kvc_dtype dtype)
{
	if (dtype == KVC_DTYPE_F16) {
		uint16_t h = ((const uint16_t *)row)[i];
#ifdef __CUDACC__
		return __half2float(__ushort_as_half(h));
#else
		return kvc_f16_to_f32(h);
#endif
	}
	return ((const float *)row)[i];
}

/* A whole K or V row as f32, into @dst (@n elements). */
KVC_HD void kvc_attn_load_row(float *dst, const uint8_t *row, uint32_t n,
			      enum kvc_dtype dtype)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		dst[i] = kvc_attn_load(row, i, dtype);
}

/*
 * Dot product in f32, four interleaved partial sums added pairwise at
 * the end (a fixed order, so the result does not depend on who calls it;
 * the GPU's tree reduction rounds differently, within the same bound).
 */
KVC_HD float kvc_attn_dot(const float *a, const float *b, uint32_t n)
{
	float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
	uint32_t i;

	for (i = 0; i + 4 <= n; i += 4) {
		s0 += a[i] * b[i];
		s1 += a[i + 1] * b[i + 1];
		s2 += a[i + 2] * b[i + 2];
		s3 += a[i + 3] * b[i + 3];
	}
	for (; i < n; i++)
		s0 += a[i] * b[i];
	return (s0 + s1) + (s2 + s3);
}

/* acc = acc * @alpha + @p * v: the online-softmax accumulator update. */
KVC_HD void kvc_attn_acc_update(float *acc, float alpha, float p,
				const float *v, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		acc[i] = acc[i] * alpha + p * v[i];
}

/* acc *= @f. */
KVC_HD void kvc_attn_scale(float *acc, float f, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		acc[i] *= f;
}

/* ------------------------------------------------------------------ */
/* Online softmax */

/**
 * struct kvc_softmax - Running state of a softmax over scores seen so far.
 * @max: the largest score seen (-INFINITY before the first).
 * @sum: sum of exp(score - @max) over the scores seen.
 *
 * The weight of score s is exp(s - max) / sum once every score has been
 * seen. Only differences to the running maximum are exponentiated, so
 * scores of any size (1e4 and more) never overflow.
 */
struct kvc_softmax {
	float max;
	float sum;
};

KVC_HD void kvc_softmax_init(struct kvc_softmax *sm)
{
	sm->max = -INFINITY;
	sm->sum = 0.0f;
}

/*
 * Raise the running maximum to at least @max (the largest score of a new
 * tile). Returns the factor by which the running sum (already rescaled
 * here) and any accumulator weighted with the old maximum must be
 * multiplied: exp(old max - new max), 0 when nothing was seen before.
 */
KVC_HD float kvc_softmax_rescale(struct kvc_softmax *sm, float max)
{
	float alpha;

	if (max <= sm->max)
		return 1.0f;
	alpha = sm->max == -INFINITY ? 0.0f : expf(sm->max - max);
	sm->max = max;
	sm->sum *= alpha;
	return alpha;
}

/* Add one score (not above the running maximum); returns its
 * unnormalised weight exp(score - max). */
KVC_HD float kvc_softmax_add(struct kvc_softmax *sm, float score)
{
	float p = expf(score - sm->max);

	sm->sum += p;
	return p;
}

/*
 * One score at a time: raise the maximum if needed, add the score. Sets
 * *@alpha to the accumulator's rescale factor; returns the score's
 * unnormalised weight. acc = acc * alpha + p * v keeps acc / sum equal to
 * the weighted mean of the values seen.
 */
KVC_HD float kvc_softmax_update(struct kvc_softmax *sm, float score,
				float *alpha)
{
	*alpha = kvc_softmax_rescale(sm, score);
	return kvc_softmax_add(sm, score);
}

/*
 * Merge state @b into @a (split-K: two partitions of the keys of one
 * query). Sets *@fa and *@fb to the factors by which the partitions'
 * accumulators are multiplied before they are added.
 */
KVC_HD void kvc_softmax_merge(struct kvc_softmax *a,
			      const struct kvc_softmax *b, float *fa, float *fb)
{
	float max = a->max > b->max ? a->max : b->max;

	if (max == -INFINITY) {
		*fa = 0.0f;
		*fb = 0.0f;
		return;
	}
	*fa = a->max == -INFINITY ? 0.0f : expf(a->max - max);
	*fb = b->max == -INFINITY ? 0.0f : expf(b->max - max);
	a->sum = a->sum * *fa + b->sum * *fb;
	a->max = max;
}

/* 1 / sum, the factor that turns the accumulator into the output (0 when
 * no score was seen: the output is then 0). */
KVC_HD float kvc_softmax_inv_sum(const struct kvc_softmax *sm)
{
	return sm->sum > 0.0f ? 1.0f / sm->sum : 0.0f;
}

/* The final weight of @score once every score has been seen. */
KVC_HD float kvc_softmax_weight(const struct kvc_softmax *sm, float score)
{
	if (!(sm->sum > 0.0f))
		return 0.0f;
	return expf(score - sm->max) / sm->sum;
}

/* ------------------------------------------------------------------ */
/* Causality, observation, metric */

/* A query at @q_pos sees the key at @k_pos (causal by position). */
KVC_HD int kvc_attn_visible(int32_t q_pos, int32_t k_pos)
{
	return k_pos <= q_pos;
}

/* A visible key counts toward the metric only @buffer positions back. */
KVC_HD int kvc_attn_observed(int32_t q_pos, int32_t k_pos, uint32_t buffer)
{
	return k_pos <= q_pos &&
	       (int64_t)q_pos - (int64_t)k_pos >= (int64_t)buffer;
}

/* The first of @n queries that add to the metric: the last @window of
 * them (0 = all). */
KVC_HD uint32_t kvc_attn_first_observer(uint32_t n, uint32_t window)
{
	return window && window < n ? n - window : 0;
}

/* What one softmax weight @a adds to a key's metric. */
KVC_HD float kvc_metric_term(enum kvc_metric_kind kind, float a)
{
	switch (kind) {
	case KVC_METRIC_L2:
		return a * a;
	case KVC_METRIC_L1:
	case KVC_METRIC_AVG:
		return a;
	default:
		return 0.0f;
	}
}

/*
 * The keys a max-pool of odd size @kernel puts around key @j of @len:
 * [*@lo, *@hi), cut at the ends of the head (no padding). A kernel of 0
 * or 1 is no pool; an even kernel acts as the next odd one.
 */
KVC_HD void kvc_attn_pool_range(uint32_t j, uint32_t len, uint32_t kernel,
				uint32_t *lo, uint32_t *hi)
{
	uint32_t r = kernel / 2;

	*lo = j > r ? j - r : 0;
	*hi = len - j > r ? j + r + 1 : len;
}

#endif /* KVC_KERNELS_ATTENTION_MATH_H */
