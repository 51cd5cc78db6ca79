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
 * f32, the dot product, the weighted sum and exp(), the online-softmax
 * state and its merge, causality and observation rules, and the metric
 * term. The C reference runs the same operations 4 lanes at a time, in
 * the same order, so it gives the same bits as these functions.
 *
 * Under nvcc the functions are __host__ __device__; under a C compiler
 * they are plain static inline.
 */
#ifndef KVC_KERNELS_ATTENTION_MATH_H
#define KVC_KERNELS_ATTENTION_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

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
	return dtype == KVC_DTYPE_F32 ? 4u : 2u;
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

#ifndef __CUDACC__
/*
 * IEEE half -> float, exact, as kvc_f16_to_f32() but without its loop:
 * the bits moved into place and the exponent rebased, then two selects
 * for the exponent's end values. Zeros and subnormals go through a float
 * subtraction of normal numbers (exact, and unaffected by flush-to-zero
 * modes); infinities and NaNs keep their payload. The reference's vector
 * conversions (attention_ref.c) give the same bits.
 */
static inline float kvc_attn_half_to_float(uint16_t h)
{
	uint32_t em = (uint32_t)(h & 0x7fffu) << 13;
	uint32_t exp = em & 0x0f800000u;
	uint32_t u = em + ((127u - 15u) << 23);
	float f;

	if (exp == 0x0f800000u) /* inf or NaN */
		u += (128u - 16u) << 23;
	f = kvc_bits_f32(u);
	if (!exp) /* zero or subnormal: 2^-14 (1 + m/1024) - 2^-14 */
		f = kvc_bits_f32(u + (1u << 23)) - 0x1p-14f;
	return kvc_bits_f32(kvc_f32_bits(f) | (uint32_t)(h & 0x8000u) << 16);
}
#endif

/* Element @i of a K or V row, as f32 (f16 and bf16 -> f32 are exact). */
KVC_HD float kvc_attn_load(const uint8_t *row, uint32_t i, enum kvc_dtype dtype)
{
	if (dtype == KVC_DTYPE_F16) {
		uint16_t h = ((const uint16_t *)row)[i];
#ifdef __CUDACC__
		return __half2float(__ushort_as_half(h));
#else
		return kvc_attn_half_to_float(h);
#endif
	}
	if (dtype == KVC_DTYPE_BF16) {
		uint16_t b = ((const uint16_t *)row)[i];
		uint32_t u = (uint32_t)b << 16;
		float f;

		memcpy(&f, &u, sizeof(f));
		return f;
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

/*
 * exp(@x), for the @x <= 0 attention takes (a score less a maximum at
 * least as large): within 1 ulp wherever the result is a normal float
 * (0.99 ulp at worst against exp() in double, every float checked), like
 * expf(), but plain float arithmetic in a fixed order: compiled without
 * FMA contraction (GCC in ISO C mode; attention_ref.c asks Clang), the
 * same bits on every host and in the reference's 4-lane copy.
 * Cody-Waite reduction x = n ln 2 + r, |r| <= ln 2 / 2, a degree-7
 * polynomial (Cephes' expf), then 2^n put in the exponent. Below -88 it
 * is 0 (the true value is under 2^-126), -inf too; NaN stays NaN;
 * arguments above 88 are taken as 88.
 */
KVC_HD float kvc_attn_exp(float x)
{
	float n, r, p, scale;
	uint32_t bits;

	if (x != x) /* NaN */
		return x;
	x = x < -88.0f ? -88.0f : x;
	x = x > 88.0f ? 88.0f : x;
	/* n = round(x / ln 2): adding 1.5 * 2^23 rounds to an integer */
	n = (x * 1.44269504f + 0x1.8p23f) - 0x1.8p23f;
	r = x - n * 0.693359375f; /* ln 2 in two parts; the first exact */
	r = r - n * -2.12194440e-4f;
	p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * (r * r) + r + 1.0f;
	bits = (uint32_t)((int32_t)n + 127) << 23; /* 2^n, n in [-127, 127] */
	memcpy(&scale, &bits, sizeof(scale));
	return p * scale;
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
	alpha = sm->max == -INFINITY ? 0.0f : kvc_attn_exp(sm->max - max);
	sm->max = max;
	sm->sum *= alpha;
	return alpha;
}

/* Add one score (not above the running maximum); returns its
 * unnormalised weight exp(score - max). */
KVC_HD float kvc_softmax_add(struct kvc_softmax *sm, float score)
{
	float p = kvc_attn_exp(score - sm->max);

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
	*fa = a->max == -INFINITY ? 0.0f : kvc_attn_exp(a->max - max);
	*fb = b->max == -INFINITY ? 0.0f : kvc_attn_exp(b->max - max);
	a->sum = a->sum * *fa + b->sum * *fb;
	a->max = max;
}

/* 1 / sum, the factor that turns the accumulator into the output (0 when
 * no score was seen: the output is then 0). */
KVC_HD float kvc_softmax_inv_sum(const struct kvc_softmax *sm)
{
	return sm->sum > 0.0f ? 1.0f / sm->sum : 0.0f;
}

/* The final weight of @score once every score has been seen:
 * exp(score - max) times kvc_softmax_inv_sum() (no divide a weight). */
KVC_HD float kvc_softmax_weight(const struct kvc_softmax *sm, float score)
{
	if (!(sm->sum > 0.0f))
		return 0.0f;
	return kvc_attn_exp(score - sm->max) * kvc_softmax_inv_sum(sm);
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
