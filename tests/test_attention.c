/* Description: paged attention: the shared math, decode and causal prefill kernels against a dense double reference (head_dim 64-256, GQA 1/3/8/12, block sizes 8/16/32, f16/f32, ragged, shuffled tables), metrics by hand (window, buffer, max-pool), stability, threads, and the per-layer calls over a real cache */
// SPDX-License-Identifier: MIT
/*
 * Tests of the attention reference (kernels/attention.h and
 * kernels/attention_math.h) and of the per-layer calls of
 * include/kvc/attention.h.
 *
 * Kernel tests build one (layer, KV head) by hand: an arena of blocks
 * whose ids are shuffled and spread out (the table is not contiguous and
 * not ordered), every byte the head does not own set to NaN (a read
 * outside the head poisons the result), blocks padded beyond K and V (the
 * kernel must use block_bytes), and the metric of every slot the head
 * does not own set to a sentinel that must survive. The dense reference
 * computes in double on the same values the kernel reads (f16 already
 * rounded), so the difference is the kernel's f32 rounding alone; see
 * tolerance() for the bound.
 *
 * Runtime tests run on a real cache (host backend, 64 KiB granularity)
 * filled with kvc_seq_append() and made ragged with kvc_seq_truncate().
 */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/attention.h>
#include <kvc/kv.h>
#include <kvc/kvc.h>

#include "../kernels/attention.h"
#include "../kernels/attention_math.h"
#include "../kernels/half.h"
#include "../runtime/internal.h"

#define GRAN (64ull << 10)
#define SENTINEL 12345.0f
#define PAD 192u /* bytes after K and V in a hand-built block */
#define U 0x1p-24 /* f32 unit roundoff */

/* ------------------------------------------------------------------ */
/* helpers */

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(rng_next(s) % n);
}

/* Uniform in [-1, 1). */
static float rng_unit(uint64_t *s)
{
	return (float)((double)(rng_next(s) >> 11) * 0x1p-53 * 2.0 - 1.0);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	assert_non_null(p);
	return p;
}

/* What a stored element reads back as. */
static float stored(float x, enum kvc_dtype dtype)
{
	return dtype == KVC_DTYPE_F16 ? kvc_f16_to_f32(kvc_f32_to_f16(x)) : x;
}

static void store(uint8_t *row, uint32_t i, float x, enum kvc_dtype dtype)
{
	uint16_t h;

	if (dtype == KVC_DTYPE_F16) {
		h = kvc_f32_to_f16(x);
		memcpy(row + 2 * i, &h, sizeof(h));
	} else {
		memcpy(row + 4 * i, &x, sizeof(x));
	}
}

static double metric_term(enum kvc_metric_kind kind, double a)
{
	return kind == KVC_METRIC_L2 ? a * a : kind == KVC_METRIC_NONE ? 0 : a;
}

/* ------------------------------------------------------------------ */
/* a hand-built head */

/**
 * struct head - One (layer, KV head) built by hand, and its dense copy.
 * @kv: what the kernels read.
 * @arena: @nr_arena blocks; the head owns the @nr_blocks in @table.
 * @table: block ids, shuffled, spread over the arena.
 * @meta: @nr_arena * block_size slot metadata.
 * @k: dense K, [len][head_dim], as the kernel reads it.
 * @v: dense V, same.
 * @pos: positions, [len].
 * @metric0: each slot's metric before the kernels ran, [len].
 */
struct head {
	struct kvc_paged_kv kv;
	uint8_t *arena;
	uint32_t nr_arena;
	uint32_t nr_blocks;
	uint32_t *table;
	struct kvc_slot_meta *meta;
	double *k;
	double *v;
	int32_t *pos;
	float *metric0;
};

static struct kvc_slot_meta *head_meta(struct head *h, uint32_t slot)
{
	uint32_t bs = h->kv.block_size;

	return &h->meta[(uint64_t)h->table[slot / bs] * bs + slot % bs];
}

/*
 * A head of @len KVs: K uniform in [-@kmax, @kmax), V in [-1, 1),
 * positions 0..len-1 (the caller may change them), metric 0.
 */
static void head_build(struct head *h, uint32_t head_dim, uint32_t bs,
		       enum kvc_dtype dtype, uint32_t len, float kmax,
		       uint64_t *rng)
{
	uint32_t esz = kvc_attn_elem_bytes(dtype), i, j, b, t;
	uint64_t row = (uint64_t)head_dim * esz;
	uint32_t *perm;
	uint8_t *blk;

	memset(h, 0, sizeof(*h));
	h->nr_blocks = (len + bs - 1) / bs;
	h->nr_arena = 3 * h->nr_blocks + 2;
	h->kv.block_bytes = 2 * bs * row + PAD;
	h->kv.block_size = bs;
	h->kv.head_dim = head_dim;
	h->kv.dtype = dtype;
	h->kv.len = len;
	h->arena = xcalloc(h->nr_arena, h->kv.block_bytes);
	memset(h->arena, 0xff, h->nr_arena * h->kv.block_bytes); /* NaN */
	h->kv.base = h->arena;
	h->meta = xcalloc((size_t)h->nr_arena * bs, sizeof(*h->meta));
	for (i = 0; i < h->nr_arena * bs; i++) {
		h->meta[i].metric = SENTINEL;
		h->meta[i].pos = INT32_MAX;
	}
	h->kv.meta = h->meta;

	/* nr_blocks distinct ids out of the arena, in random order */
	perm = xcalloc(h->nr_arena, sizeof(*perm));
	for (i = 0; i < h->nr_arena; i++)
		perm[i] = i;
	for (i = h->nr_arena - 1; i > 0; i--) {
		j = rng_below(rng, i + 1);
		t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	h->table = xcalloc(h->nr_blocks, sizeof(*h->table));
	memcpy(h->table, perm, h->nr_blocks * sizeof(*h->table));
	free(perm);
	h->kv.table = h->table;

	h->k = xcalloc((size_t)len * head_dim, sizeof(double));
	h->v = xcalloc((size_t)len * head_dim, sizeof(double));
	h->pos = xcalloc(len, sizeof(int32_t));
	h->metric0 = xcalloc(len, sizeof(float));
	for (i = 0; i < len; i++) {
		b = h->table[i / bs];
		blk = h->arena + (uint64_t)b * h->kv.block_bytes;
		for (j = 0; j < head_dim; j++) {
			float kx = stored(kmax * rng_unit(rng), dtype);
			float vx = stored(rng_unit(rng), dtype);

			store(blk + (i % bs) * row, j, kx, dtype);
			store(blk + (bs + i % bs) * row, j, vx, dtype);
			h->k[(size_t)i * head_dim + j] = kx;
			h->v[(size_t)i * head_dim + j] = vx;
		}
		head_meta(h, i)->metric = 0.0f;
		head_meta(h, i)->pos = (int32_t)i;
		h->pos[i] = (int32_t)i;
	}
}

/* Set slot @i's K or V (@which 0, 1) to @x (dense copy too). */
static void head_set(struct head *h, uint32_t i, uint32_t which, const float *x)
{
	uint32_t bs = h->kv.block_size, d = h->kv.head_dim, j;
	uint64_t row = (uint64_t)d * kvc_attn_elem_bytes(h->kv.dtype);
	uint8_t *blk =
		h->arena + (uint64_t)h->table[i / bs] * h->kv.block_bytes;
	double *dense = which ? h->v : h->k;

	for (j = 0; j < d; j++) {
		store(blk + (which * bs + i % bs) * row, j, x[j], h->kv.dtype);
		dense[(size_t)i * d + j] = stored(x[j], h->kv.dtype);
	}
}

static void head_set_pos(struct head *h, uint32_t i, int32_t pos)
{
	head_meta(h, i)->pos = pos;
	h->pos[i] = pos;
}

static void head_set_metric(struct head *h, uint32_t i, float m)
{
	head_meta(h, i)->metric = m;
	h->metric0[i] = m;
}

static void head_free(struct head *h)
{
	free(h->arena);
	free(h->meta);
	free(h->table);
	free(h->k);
	free(h->v);
	free(h->pos);
	free(h->metric0);
}

/* Slots the head does not own kept their sentinel. */
static void head_check_sentinels(struct head *h)
{
	uint32_t bs = h->kv.block_size, b, s, i;

	for (b = 0; b < h->nr_arena; b++)
		for (s = 0; s < bs; s++) {
			uint32_t slot = UINT32_MAX;

			for (i = 0; i < h->nr_blocks; i++)
				if (h->table[i] == b)
					slot = i * bs + s;
			if (slot < h->kv.len)
				continue;
			if (h->meta[(uint64_t)b * bs + s].metric != SENTINEL)
				fail_msg("block %u slot %u not owned by the "
					 "head: metric %g",
					 b, s,
					 h->meta[(uint64_t)b * bs + s].metric);
		}
}

/* ------------------------------------------------------------------ */
/* the dense reference */

/*
 * Softmax weights of one query head over the dense keys of @h (every key
 * when @q_pos < 0, else those at positions <= @q_pos; 0 for the others),
 * and the output. Also the largest scale * sum |q_i k_i| over the keys.
 */
static void dense_attend(const struct head *h, const float *q, double scale,
			 int64_t q_pos, double *w, double *out, double *sabs)
{
	uint32_t d = h->kv.head_dim, len = h->kv.len, i, j;
	double max = -INFINITY, sum = 0.0, s, a;

	*sabs = 0.0;
	for (i = 0; i < len; i++) {
		w[i] = NAN;
		if (q_pos >= 0 && h->pos[i] > q_pos)
			continue;
		s = 0.0;
		a = 0.0;
		for (j = 0; j < d; j++) {
			s += (double)q[j] * h->k[(size_t)i * d + j];
			a += fabs((double)q[j] * h->k[(size_t)i * d + j]);
		}
		w[i] = s * scale;
		max = w[i] > max ? w[i] : max;
		*sabs = a * scale > *sabs ? a * scale : *sabs;
	}
	for (i = 0; i < len; i++)
		if (!isnan(w[i]))
			sum += exp(w[i] - max);
	for (j = 0; j < d; j++)
		out[j] = 0.0;
	for (i = 0; i < len; i++) {
		if (isnan(w[i])) {
			w[i] = 0.0;
			continue;
		}
		w[i] = exp(w[i] - max) / sum;
		for (j = 0; j < d; j++)
			out[j] += w[i] * h->v[(size_t)i * d + j];
	}
}

/*
 * The bound on |kernel - reference| for one output element or weight.
 * Both see the same inputs; the kernel rounds in f32 (u = 2^-24):
 * - a score is scale * a dot of d products, summed in four interleaved
 *   lanes; its error is at most (d/4 + 3) u * S, S = scale * sum |q_i k_i|
 *   (plus u |s| <= u S for the scaling);
 * - a weight exp(s - max) / sum then has relative error at most
 *   2 ds (both s and max move) + a few u (expf is within 1 ulp) + (len+2) u
 *   for the running sum and its rescales;
 * - an output, a convex combination of |v| <= 1, is off by at most the
 *   weights' relative error, plus (len + 2) u for the sums and rescales.
 * So |error| <= (2 (d/4 + 4) S + 2 len + 16) u (about 1e-4 for d 256).
 * That is the worst case; rounding errors are not all of one sign, and
 * the largest seen is under 1/50 of it (the shape tests print the ratio).
 * It still catches a dropped key or a wrong mask: the shape tests take
 * len <= 300, where one key (weight ~ 1/len) moves an output by ~1e-3,
 * and lengths below one block, where it moves it by ~0.1.
 */
static double tolerance(uint32_t head_dim, uint32_t len, double sabs)
{
	return (2.0 * (head_dim / 4.0 + 4.0) * sabs + 2.0 * len + 16.0) * U;
}

#define NEAR(got, want, tol, ...)                                              \
	do {                                                                   \
		double got_ = (got), want_ = (want), tol_ = (tol);             \
		if (!(fabs(got_ - want_) <= tol_)) {                           \
			print_error(__VA_ARGS__);                              \
			fail_msg("%s = %.9g, expected %.9g (|diff| %.3g > "    \
				 "%.3g)",                                      \
				 #got, got_, want_, fabs(got_ - want_), tol_); \
		}                                                              \
	} while (0)

static const char *dtype_name(enum kvc_dtype dtype)
{
	return dtype == KVC_DTYPE_F16 ? "f16" : "f32";
}

/* ------------------------------------------------------------------ */
/* the shared math */

static void test_math_slots(void **state)
{
	struct kvc_paged_kv kv = {
		.base = (uint8_t *)(uintptr_t)0x100000,
		.block_bytes = 2 * 16 * 128 * 2 + 64,
		.block_size = 16,
		.head_dim = 128,
		.dtype = KVC_DTYPE_F16,
	};

	assert_int_equal(kvc_attn_elem_bytes(KVC_DTYPE_F16), 2);
	assert_int_equal(kvc_attn_elem_bytes(KVC_DTYPE_F32), 4);
	assert_int_equal(kvc_attn_slot_block(37, 16), 2);
	assert_int_equal(kvc_attn_slot_offset(37, 16), 5);
	EXPECT_U64(kvc_attn_meta_index(7, 5, 16), 7 * 16 + 5);
	/* 64-bit offsets: block 3e6 is beyond 4 GiB */
	EXPECT_U64(kvc_attn_meta_index(3000000000u, 1, 32),
		   3000000000ull * 32 + 1);
	EXPECT_U64((uintptr_t)kvc_attn_k_row(&kv, 3, 5),
		   0x100000 + 3 * kv.block_bytes + 5 * 256);
	EXPECT_U64((uintptr_t)kvc_attn_v_row(&kv, 3, 5),
		   0x100000 + 3 * kv.block_bytes + (16 + 5) * 256);
	EXPECT_U64((uintptr_t)kvc_attn_k_row(&kv, 3000000000u, 0) - 0x100000,
		   3000000000ull * kv.block_bytes);
	kv.dtype = KVC_DTYPE_F32;
	EXPECT_U64((uintptr_t)kvc_attn_v_row(&kv, 0, 1), 0x100000 + 17 * 512);
}

static void test_math_load_dot(void **state)
{
	uint16_t h[3] = { kvc_f32_to_f16(1.5f), kvc_f32_to_f16(-0.25f),
			  kvc_f32_to_f16(65504.0f) };
	float f[3] = { 1.5f, -0.25f, 3.0f }, row[3];
	float a[7] = { 1, 2, 3, 4, 5, 6, 7 }, b[7] = { 1, 1, 1, 1, 1, 1, -1 };

	assert_true(kvc_attn_load((const uint8_t *)h, 0, KVC_DTYPE_F16) ==
		    1.5f);
	assert_true(kvc_attn_load((const uint8_t *)h, 2, KVC_DTYPE_F16) ==
		    65504.0f);
	assert_true(kvc_attn_load((const uint8_t *)f, 1, KVC_DTYPE_F32) ==
		    -0.25f);
	kvc_attn_load_row(row, (const uint8_t *)h, 3, KVC_DTYPE_F16);
	assert_true(row[1] == -0.25f);
	/* lengths not a multiple of 4 reach the tail loop */
	assert_true(kvc_attn_dot(a, b, 7) == 14.0f);
	assert_true(kvc_attn_dot(a, b, 3) == 6.0f);
	assert_true(kvc_attn_dot(a, b, 0) == 0.0f);
	kvc_attn_acc_update(a, 0.5f, 2.0f, b, 2); /* a = a/2 + 2b */
	assert_true(a[0] == 2.5f && a[1] == 3.0f && a[2] == 3.0f);
	kvc_attn_scale(a, 2.0f, 1);
	assert_true(a[0] == 5.0f);
}

/* Online softmax, one score at a time and merged in two halves, against
 * the two-pass softmax in double, with scores up to 1e4. */
static void test_math_softmax(void **state)
{
	float scores[100], v[100], acc = 0, acc_a = 0, acc_b = 0, alpha, p, fa,
				   fb;
	struct kvc_softmax sm, a, b;
	double max = -INFINITY, sum = 0, want = 0;
	uint64_t rng = 42;
	uint32_t i;

	for (i = 0; i < 100; i++) {
		scores[i] = 1e4f + 20.0f * rng_unit(&rng);
		v[i] = rng_unit(&rng);
		max = scores[i] > max ? scores[i] : max;
	}
	for (i = 0; i < 100; i++)
		sum += exp(scores[i] - max);
	for (i = 0; i < 100; i++)
		want += exp(scores[i] - max) / sum * v[i];

	kvc_softmax_init(&sm);
	assert_true(kvc_softmax_inv_sum(&sm) == 0.0f);
	assert_true(kvc_softmax_weight(&sm, 1.0f) == 0.0f);
	for (i = 0; i < 100; i++) {
		p = kvc_softmax_update(&sm, scores[i], &alpha);
		kvc_attn_acc_update(&acc, alpha, p, &v[i], 1);
	}
	assert_true(isfinite(sm.sum) && sm.max == (float)max);
	NEAR(acc * kvc_softmax_inv_sum(&sm), want, 1e-5, "online");
	for (i = 0; i < 100; i++)
		NEAR(kvc_softmax_weight(&sm, scores[i]),
		     exp(scores[i] - max) / sum, 1e-5, "weight %u", i);

	/* split-K: two partitions merged */
	kvc_softmax_init(&a);
	kvc_softmax_init(&b);
	for (i = 0; i < 100; i++) {
		struct kvc_softmax *s = i % 3 ? &a : &b;
		float *acc_s = i % 3 ? &acc_a : &acc_b;

		p = kvc_softmax_update(s, scores[i], &alpha);
		kvc_attn_acc_update(acc_s, alpha, p, &v[i], 1);
	}
	kvc_softmax_merge(&a, &b, &fa, &fb);
	NEAR((acc_a * fa + acc_b * fb) * kvc_softmax_inv_sum(&a), want, 1e-5,
	     "merged");
	NEAR(a.sum, sm.sum, 1e-4 * sm.sum, "merged sum");

	/* merging an empty state changes nothing; two empty stay empty */
	kvc_softmax_init(&b);
	fa = a.sum;
	kvc_softmax_merge(&a, &b, &alpha, &p);
	assert_true(alpha == 1.0f && p == 0.0f && a.sum == fa);
	kvc_softmax_init(&a);
	kvc_softmax_merge(&a, &b, &alpha, &p);
	assert_true(alpha == 0.0f && p == 0.0f && a.sum == 0.0f);
	/* a lower maximum leaves the state alone */
	kvc_softmax_init(&a);
	kvc_softmax_update(&a, 5.0f, &alpha);
	assert_true(alpha == 0.0f);
	assert_true(kvc_softmax_rescale(&a, 1.0f) == 1.0f && a.max == 5.0f);
}

static void test_math_rules(void **state)
{
	uint32_t lo, hi;

	assert_true(kvc_attn_visible(5, 5));
	assert_true(kvc_attn_visible(5, 0));
	assert_false(kvc_attn_visible(5, 6));
	assert_true(kvc_attn_observed(10, 0, 10));
	assert_false(kvc_attn_observed(10, 1, 10));
	assert_true(kvc_attn_observed(10, 10, 0));
	assert_false(kvc_attn_observed(10, 11, 0));
	/* 64-bit difference: 2^32 - 1 positions apart */
	assert_true(kvc_attn_observed(INT32_MAX, INT32_MIN, UINT32_MAX));
	assert_false(kvc_attn_observed(INT32_MAX - 1, INT32_MIN, UINT32_MAX));
	assert_int_equal(kvc_attn_first_observer(10, 0), 0);
	assert_int_equal(kvc_attn_first_observer(10, 3), 7);
	assert_int_equal(kvc_attn_first_observer(10, 10), 0);
	assert_int_equal(kvc_attn_first_observer(10, 32), 0);
	assert_true(kvc_metric_term(KVC_METRIC_L2, 0.5f) == 0.25f);
	assert_true(kvc_metric_term(KVC_METRIC_L1, 0.5f) == 0.5f);
	assert_true(kvc_metric_term(KVC_METRIC_AVG, 0.5f) == 0.5f);
	assert_true(kvc_metric_term(KVC_METRIC_NONE, 0.5f) == 0.0f);
	kvc_attn_pool_range(0, 10, 7, &lo, &hi);
	assert_true(lo == 0 && hi == 4);
	kvc_attn_pool_range(5, 10, 7, &lo, &hi);
	assert_true(lo == 2 && hi == 9);
	kvc_attn_pool_range(9, 10, 7, &lo, &hi);
	assert_true(lo == 6 && hi == 10);
	kvc_attn_pool_range(4, 10, 1, &lo, &hi);
	assert_true(lo == 4 && hi == 5);
	kvc_attn_pool_range(0, 1, 3, &lo, &hi);
	assert_true(lo == 0 && hi == 1);
}

/* ------------------------------------------------------------------ */
/* decode */

/*
 * Decode of @group query heads over @h against the dense reference, with
 * @kind collected; the metric must equal the dense sum over the group.
 * Returns the largest |error| / tolerance seen.
 */
static double check_decode(struct head *h, uint32_t group,
			   enum kvc_metric_kind kind, float qmax, uint64_t *rng,
			   const char *what)
{
	uint32_t d = h->kv.head_dim, len = h->kv.len, g, i, j;
	float *q = xcalloc((size_t)group * d, sizeof(float));
	float *out = xcalloc((size_t)group * d, sizeof(float));
	double *w = xcalloc(len, sizeof(double));
	double *want = xcalloc(d, sizeof(double));
	double *metric = xcalloc(len, sizeof(double));
	double scale = 1.0 / sqrt((double)d), sabs, tol, worst = 0, e;
	double mtol = 0;

	for (i = 0; i < group * d; i++) {
		q[i] = qmax * rng_unit(rng);
		out[i] = NAN;
	}
	kvc_attn_decode_ref(&h->kv, group, q, (float)scale, out, kind);
	for (g = 0; g < group; g++) {
		dense_attend(h, q + g * d, (float)scale, -1, w, want, &sabs);
		tol = tolerance(d, len, sabs);
		for (j = 0; j < d; j++) {
			NEAR(out[g * d + j], len ? want[j] : 0.0, tol,
			     "%s: query head %u of %u, element %u", what, g,
			     group, j);
			e = fabs(out[g * d + j] - want[j]) / tol;
			worst = e > worst ? e : worst;
		}
		for (i = 0; i < len; i++)
			metric[i] += metric_term(kind, w[i]);
		mtol += 2.0 * tol;
	}
	/*
	 * A weight's relative error is within the output bound, and a term
	 * (a or a^2, a <= 1) at most doubles it: the sum over the group is
	 * within the sum of twice the bounds.
	 */
	for (i = 0; i < len; i++)
		NEAR(head_meta(h, i)->metric, h->metric0[i] + metric[i],
		     mtol + 4 * U * fabs(h->metric0[i] + metric[i]),
		     "%s: metric of slot %u", what, i);
	head_check_sentinels(h);
	free(q);
	free(out);
	free(w);
	free(want);
	free(metric);
	return worst;
}

/* Every head_dim, GQA ratio, block size and dtype, at ragged lengths. */
static void test_decode_shapes(void **state)
{
	static const uint32_t dims[] = { 64, 80, 96, 128, 256 };
	static const uint32_t groups[] = { 1, 3, 8, 12 };
	static const uint32_t sizes[] = { 8, 16, 32 };
	static const enum kvc_metric_kind kinds[] = {
		KVC_METRIC_L2, KVC_METRIC_L1, KVC_METRIC_NONE, KVC_METRIC_AVG
	};
	uint64_t rng = 0x5eed;
	uint32_t di, gi, si, t, c, lens[4];
	double worst = 0, e;
	char what[128];
	struct head h;

	for (di = 0; di < 5; di++)
		for (gi = 0; gi < 4; gi++)
			for (si = 0; si < 3; si++)
				for (t = 0; t < 2; t++) {
					uint32_t bs = sizes[si];

					lens[0] = 1 + rng_below(&rng, bs - 1);
					lens[1] = bs;
					lens[2] = bs + 1 +
						  rng_below(&rng, 3 * bs);
					lens[3] = 100 + rng_below(&rng, 200);
					for (c = 0; c < 4; c++) {
						head_build(&h, dims[di], bs,
							   (enum kvc_dtype)t,
							   lens[c], 1.0f, &rng);
						snprintf(what, sizeof(what),
							 "d %u group %u bs %u "
							 "%s len %u",
							 dims[di], groups[gi],
							 bs,
							 dtype_name(h.kv.dtype),
							 lens[c]);
						e = check_decode(
							&h, groups[gi],
							kinds[(di + gi + c) %
							      4],
							3.0f, &rng, what);
						worst = e > worst ? e : worst;
						head_free(&h);
					}
				}
	print_message("decode: largest error %.3f of the tolerance\n", worst);
}

/* An empty head gives zeros and touches no metric. */
static void test_decode_empty(void **state)
{
	float q[3 * 64], out[3 * 64];
	uint64_t rng = 7;
	uint32_t i;
	struct head h;

	head_build(&h, 64, 16, KVC_DTYPE_F32, 0, 1.0f, &rng);
	for (i = 0; i < 3 * 64; i++) {
		q[i] = 1.0f;
		out[i] = NAN;
	}
	kvc_attn_decode_ref(&h.kv, 3, q, 0.125f, out, KVC_METRIC_L2);
	for (i = 0; i < 3 * 64; i++)
		assert_true(out[i] == 0.0f);
	head_free(&h);
}

/*
 * Two keys by hand: scale 1, q0 = e0, k0 = 0, k1 = ln(3) e0, so query
 * head 0 weighs them 1/4 and 3/4; query head 1 (q = 0) weighs them 1/2
 * each. v0 = e0, v1 = e1. The metric is summed over the group.
 */
static void test_decode_metric_by_hand(void **state)
{
	static const enum kvc_metric_kind kinds[] = { KVC_METRIC_L2,
						      KVC_METRIC_L1,
						      KVC_METRIC_AVG };
	static const double want[3][2] = {
		{ 1.0 / 16 + 1.0 / 4, 9.0 / 16 + 1.0 / 4 },
		{ 1.0 / 4 + 1.0 / 2, 3.0 / 4 + 1.0 / 2 },
		{ 1.0 / 4 + 1.0 / 2, 3.0 / 4 + 1.0 / 2 },
	};
	float q[2 * 64] = { 0 }, out[2 * 64], x[64] = { 0 };
	uint64_t rng = 9;
	uint32_t c, i;
	struct head h;

	q[0] = 1.0f;
	for (c = 0; c < 3; c++) {
		head_build(&h, 64, 8, KVC_DTYPE_F32, 2, 1.0f, &rng);
		memset(x, 0, sizeof(x));
		head_set(&h, 0, 0, x);
		x[0] = logf(3.0f);
		head_set(&h, 1, 0, x);
		memset(x, 0, sizeof(x));
		x[0] = 1.0f;
		head_set(&h, 0, 1, x);
		x[0] = 0.0f;
		x[1] = 1.0f;
		head_set(&h, 1, 1, x);
		head_set_metric(&h, 1, 2.0f); /* the metric adds */
		kvc_attn_decode_ref(&h.kv, 2, q, 1.0f, out, kinds[c]);
		NEAR(out[0], 0.25, 1e-6, "head 0");
		NEAR(out[1], 0.75, 1e-6, "head 0");
		NEAR(out[64], 0.5, 1e-6, "head 1");
		NEAR(out[65], 0.5, 1e-6, "head 1");
		for (i = 2; i < 64; i++)
			assert_true(out[i] == 0.0f && out[64 + i] == 0.0f);
		NEAR(head_meta(&h, 0)->metric, want[c][0], 1e-6, "kind %u", c);
		NEAR(head_meta(&h, 1)->metric, 2.0 + want[c][1], 1e-6,
		     "kind %u", c);
		/* a second step adds as much again */
		kvc_attn_decode_ref(&h.kv, 2, q, 1.0f, out, kinds[c]);
		NEAR(head_meta(&h, 0)->metric, 2 * want[c][0], 2e-6, "kind %u",
		     c);
		head_check_sentinels(&h);
		head_free(&h);
	}
}

/*
 * Scores near +-1e4 (exp would overflow without the running maximum):
 * distinct scores 1e4, 1e4 - 1, ... and equal scores of either sign.
 */
static void test_decode_large_scores(void **state)
{
	float q[64] = { 0 }, out[64], x[64] = { 0 }, v[64];
	double w[40], want[64], sabs;
	uint64_t rng = 11;
	uint32_t i, j, sign;
	struct head h;

	/* q = 100 e0, k_i = (100 - i / 100) e0: scores 1e4 - i exactly */
	q[0] = 100.0f;
	head_build(&h, 64, 16, KVC_DTYPE_F32, 40, 1.0f, &rng);
	for (i = 0; i < 40; i++) {
		x[0] = 100.0f - (float)i / 100.0f;
		head_set(&h, i, 0, x);
	}
	kvc_attn_decode_ref(&h.kv, 1, q, 1.0f, out, KVC_METRIC_L2);
	dense_attend(&h, q, 1.0, -1, w, want, &sabs);
	/* scores carry f32 rounding of 1e4 (u * 1e4 ~ 6e-4) */
	for (j = 0; j < 64; j++)
		NEAR(out[j], want[j], 2e-3, "element %u", j);
	for (i = 0; i < 40; i++) {
		assert_true(isfinite(head_meta(&h, i)->metric));
		NEAR(head_meta(&h, i)->metric, w[i] * w[i], 2e-3, "slot %u", i);
	}
	head_free(&h);

	/* equal keys: uniform weights whatever the size of the score */
	for (sign = 0; sign < 2; sign++) {
		head_build(&h, 64, 8, KVC_DTYPE_F16, 37, 1.0f, &rng);
		x[0] = sign ? -100.0f : 100.0f;
		for (i = 0; i < 37; i++)
			head_set(&h, i, 0, x);
		for (j = 0; j < 64; j++)
			v[j] = 0.0f;
		for (i = 0; i < 37; i++)
			for (j = 0; j < 64; j++)
				v[j] += (float)h.v[i * 64 + j] / 37.0f;
		kvc_attn_decode_ref(&h.kv, 1, q, 1.0f, out, KVC_METRIC_L1);
		for (j = 0; j < 64; j++)
			NEAR(out[j], v[j], 1e-5, "sign %u element %u", sign, j);
		for (i = 0; i < 37; i++)
			NEAR(head_meta(&h, i)->metric, 1.0 / 37, 1e-6,
			     "slot %u", i);
		head_free(&h);
	}
}

/* ------------------------------------------------------------------ */
/* prefill */

/*
 * Prefill of the last @n slots of @h against the dense reference, the
 * metric of @obs too (computed from the dense weights, pooled here).
 */
static double check_prefill(struct head *h, uint32_t group, uint32_t n,
			    const struct kvc_observe *obs, float qmax,
			    uint64_t *rng, const char *what)
{
	uint32_t d = h->kv.head_dim, len = h->kv.len, g, i, j, first, lo, hi, k;
	size_t rows = (size_t)n * group * d;
	float *q = xcalloc(rows, sizeof(float));
	float *out = xcalloc(rows, sizeof(float));
	double *w = xcalloc(len, sizeof(double));
	double *want = xcalloc(d, sizeof(double));
	double *metric = xcalloc(len, sizeof(double));
	double scale = 1.0 / sqrt((double)d), sabs, tol, worst = 0, e, m,
	       mtol = 0;
	enum kvc_metric_kind kind = obs ? obs->metric : KVC_METRIC_NONE;
	int32_t q_pos;

	for (i = 0; i < rows; i++) {
		q[i] = qmax * rng_unit(rng);
		out[i] = NAN;
	}
	assert_int_equal(kvc_attn_prefill_ref(&h->kv, group, n, q, (float)scale,
					      out, obs),
			 0);
	first = obs ? kvc_attn_first_observer(n, obs->window) : n;
	for (i = 0; i < n; i++) {
		q_pos = h->pos[len - n + i];
		for (g = 0; g < group; g++) {
			const float *qi = q + ((size_t)i * group + g) * d;
			const float *oi = out + ((size_t)i * group + g) * d;

			dense_attend(h, qi, (float)scale, q_pos, w, want,
				     &sabs);
			tol = tolerance(d, len, sabs);
			for (j = 0; j < d; j++) {
				NEAR(oi[j], want[j], tol,
				     "%s: query %u head %u element %u", what, i,
				     g, j);
				e = fabs(oi[j] - want[j]) / tol;
				worst = e > worst ? e : worst;
			}
			if (i < first)
				continue;
			mtol += 2.0 * tol;
			for (k = 0; k < len; k++)
				if (kvc_attn_observed(q_pos, h->pos[k],
						      obs->buffer))
					metric[k] += metric_term(kind, w[k]);
		}
	}
	for (k = 0; k < len; k++) {
		m = metric[k];
		if (obs && obs->pool_kernel > 1) {
			kvc_attn_pool_range(k, len, obs->pool_kernel, &lo, &hi);
			for (j = lo; j < hi; j++)
				m = metric[j] > m ? metric[j] : m;
		}
		NEAR(head_meta(h, k)->metric, h->metric0[k] + m,
		     mtol + 4 * U * fabs(h->metric0[k] + m),
		     "%s: metric of slot %u", what, k);
	}
	head_check_sentinels(h);
	free(q);
	free(out);
	free(w);
	free(want);
	free(metric);
	return worst;
}

static void test_prefill_shapes(void **state)
{
	static const uint32_t dims[] = { 64, 80, 96, 128, 256 };
	static const uint32_t groups[] = { 1, 3, 8, 12 };
	static const uint32_t sizes[] = { 8, 16, 32 };
	struct kvc_observe obs;
	uint64_t rng = 0xfeed;
	uint32_t di, gi, si, t, old, n;
	double worst = 0, e;
	char what[160];
	struct head h;

	for (di = 0; di < 5; di++)
		for (gi = 0; gi < 4; gi++)
			for (si = 0; si < 3; si++)
				for (t = 0; t < 2; t++) {
					old = rng_below(&rng, 40);
					n = 1 + rng_below(&rng, 40);
					obs.metric = (enum kvc_metric_kind)(
						(di + gi + si + t) % 4);
					obs.window = rng_below(&rng, 3) * 8;
					obs.buffer = rng_below(&rng, 3) * 5;
					obs.pool_kernel =
						rng_below(&rng, 4) * 2;
					obs.pool_kernel += !!obs.pool_kernel;
					head_build(&h, dims[di], sizes[si],
						   (enum kvc_dtype)t, old + n,
						   1.0f, &rng);
					snprintf(what, sizeof(what),
						 "d %u group %u bs %u %s "
						 "old %u n %u metric %u "
						 "window %u buffer %u pool %u",
						 dims[di], groups[gi],
						 sizes[si],
						 dtype_name(h.kv.dtype), old, n,
						 obs.metric, obs.window,
						 obs.buffer, obs.pool_kernel);
					e = check_prefill(&h, groups[gi], n,
							  &obs, 3.0f, &rng,
							  what);
					worst = e > worst ? e : worst;
					head_free(&h);
				}
	print_message("prefill: largest error %.3f of the tolerance\n", worst);
}

/*
 * A head compacted before (slot order is not position order, holes in
 * the positions), then n new tokens: causality follows positions.
 */
static void test_prefill_positions(void **state)
{
	struct kvc_observe obs = { KVC_METRIC_L2, 4, 3, 0 };
	uint64_t rng = 77;
	uint32_t i, old = 45, n = 9;
	struct head h;

	head_build(&h, 128, 16, KVC_DTYPE_F16, old + n, 1.0f, &rng);
	/* old survivors: positions 0..89 in steps of 2, shuffled */
	for (i = 0; i < old; i++)
		head_set_pos(&h, i, (int32_t)(2 * ((i * 17) % old)));
	for (i = 0; i < n; i++)
		head_set_pos(&h, old + i, (int32_t)(100 + i));
	for (i = 0; i < old + n; i++)
		head_set_metric(&h, i, (float)i / 8.0f);
	check_prefill(&h, 3, n, &obs, 3.0f, &rng, "compacted head");
	head_free(&h);

	/* no old keys; the first query sees only itself */
	head_build(&h, 64, 8, KVC_DTYPE_F32, 5, 1.0f, &rng);
	check_prefill(&h, 8, 5, NULL, 3.0f, &rng, "fresh head");
	head_free(&h);
}

/*
 * Three tokens by hand, all keys zero, so every query weighs the keys it
 * sees equally: query 0 sees key 0 (1), query 1 keys 0-1 (1/2 each),
 * query 2 keys 0-2 (1/3 each).
 */
static void test_prefill_metric_by_hand(void **state)
{
	static const struct {
		struct kvc_observe obs;
		double want[3];
	} cases[] = {
		{ { KVC_METRIC_L1, 0, 0, 0 },
		  { 1 + 1.0 / 2 + 1.0 / 3, 1.0 / 2 + 1.0 / 3, 1.0 / 3 } },
		{ { KVC_METRIC_L2, 0, 0, 0 },
		  { 1 + 1.0 / 4 + 1.0 / 9, 1.0 / 4 + 1.0 / 9, 1.0 / 9 } },
		/* window: the last query only, then the last two */
		{ { KVC_METRIC_L1, 1, 0, 0 }, { 1.0 / 3, 1.0 / 3, 1.0 / 3 } },
		{ { KVC_METRIC_L1, 2, 0, 0 },
		  { 1.0 / 2 + 1.0 / 3, 1.0 / 2 + 1.0 / 3, 1.0 / 3 } },
		/* a window larger than the prefill is all of it */
		{ { KVC_METRIC_AVG, 8, 0, 0 },
		  { 1 + 1.0 / 2 + 1.0 / 3, 1.0 / 2 + 1.0 / 3, 1.0 / 3 } },
		/* buffer 1: a query skips itself; weights stay those of the
		 * full softmax */
		{ { KVC_METRIC_L1, 0, 1, 0 },
		  { 1.0 / 2 + 1.0 / 3, 1.0 / 3, 0 } },
		{ { KVC_METRIC_L1, 0, 2, 0 }, { 1.0 / 3, 0, 0 } },
		{ { KVC_METRIC_L1, 0, 3, 0 }, { 0, 0, 0 } },
		{ { KVC_METRIC_NONE, 0, 0, 0 }, { 0, 0, 0 } },
		/* pool 3 over (11/6, 5/6, 1/3) */
		{ { KVC_METRIC_L1, 0, 0, 3 },
		  { 1 + 1.0 / 2 + 1.0 / 3, 1 + 1.0 / 2 + 1.0 / 3,
		    1.0 / 2 + 1.0 / 3 } },
	};
	float q[3 * 16], out[3 * 16], x[16] = { 0 };
	uint64_t rng = 5;
	uint32_t c, i;
	struct head h;

	for (i = 0; i < 3 * 16; i++)
		q[i] = rng_unit(&rng);
	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		head_build(&h, 16, 8, KVC_DTYPE_F32, 3, 1.0f, &rng);
		for (i = 0; i < 3; i++)
			head_set(&h, i, 0, x);
		assert_int_equal(kvc_attn_prefill_ref(&h.kv, 1, 3, q, 0.25f,
						      out, &cases[c].obs),
				 0);
		for (i = 0; i < 3; i++)
			NEAR(head_meta(&h, i)->metric, cases[c].want[i], 1e-6,
			     "case %u slot %u", c, i);
		/* outputs: the running means of V */
		for (i = 0; i < 16; i++) {
			NEAR(out[i], h.v[i], 1e-6, "case %u", c);
			NEAR(out[16 + i], (h.v[i] + h.v[16 + i]) / 2, 1e-6,
			     "case %u", c);
			NEAR(out[32 + i],
			     (h.v[i] + h.v[16 + i] + h.v[32 + i]) / 3, 1e-6,
			     "case %u", c);
		}
		head_free(&h);
	}
}

/*
 * Max-pool by hand: five tokens, only the last query observed (window 1),
 * scores (0, ln 2, 0, ln 4, 0) so it weighs the keys (1, 2, 1, 4, 1) / 9.
 * The metric each key had before stays under what the prefill adds.
 */
static void test_prefill_pool_by_hand(void **state)
{
	static const struct {
		uint32_t kernel;
		uint32_t buffer;
		double want[5];
	} cases[] = {
		{ 0, 0, { 1, 2, 1, 4, 1 } },
		{ 1, 0, { 1, 2, 1, 4, 1 } },
		{ 3, 0, { 2, 2, 4, 4, 4 } },
		{ 5, 0, { 2, 4, 4, 4, 4 } },
		{ 7, 0, { 4, 4, 4, 4, 4 } },
		{ 11, 0, { 4, 4, 4, 4, 4 } },
		/* buffer 2: keys 3 and 4 get nothing before the pool */
		{ 3, 2, { 2, 2, 2, 1, 0 } },
	};
	float q[5 * 32] = { 0 }, out[5 * 32], x[32] = { 0 };
	static const float logs[5] = { 0, 0.69314718f, 0, 1.38629436f, 0 };
	struct kvc_observe obs;
	uint64_t rng = 13;
	uint32_t c, i;
	struct head h;

	for (i = 0; i < 5; i++)
		q[i * 32] = 1.0f;
	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		obs = (struct kvc_observe){ KVC_METRIC_L1, 1, cases[c].buffer,
					    cases[c].kernel };
		head_build(&h, 32, 8, KVC_DTYPE_F32, 5, 1.0f, &rng);
		for (i = 0; i < 5; i++) {
			x[0] = logs[i];
			head_set(&h, i, 0, x);
			head_set_metric(&h, i, 10.0f * (float)i);
		}
		assert_int_equal(
			kvc_attn_prefill_ref(&h.kv, 1, 5, q, 1.0f, out, &obs),
			0);
		for (i = 0; i < 5; i++)
			NEAR(head_meta(&h, i)->metric,
			     10.0 * i + cases[c].want[i] / 9, 1e-5,
			     "kernel %u buffer %u slot %u", cases[c].kernel,
			     cases[c].buffer, i);
		head_free(&h);
	}
}

/* n == 0 does nothing; so does n > len. Large scores stay finite. */
static void test_prefill_edges(void **state)
{
	struct kvc_observe obs = { KVC_METRIC_L2, 0, 0, 3 };
	float q[4 * 64] = { 0 }, out[4 * 64], x[64] = { 0 };
	double w[4], want[64], sabs;
	uint64_t rng = 17;
	uint32_t i, j;
	struct head h;

	head_build(&h, 64, 8, KVC_DTYPE_F32, 4, 1.0f, &rng);
	for (i = 0; i < 4 * 64; i++)
		out[i] = 7.0f;
	assert_int_equal(kvc_attn_prefill_ref(&h.kv, 2, 0, q, 1.0f, out, &obs),
			 0);
	assert_int_equal(kvc_attn_prefill_ref(&h.kv, 1, 5, q, 1.0f, out, &obs),
			 0);
	for (i = 0; i < 4 * 64; i++)
		assert_true(out[i] == 7.0f);
	for (i = 0; i < 4; i++)
		assert_true(head_meta(&h, i)->metric == 0.0f);

	/* scores 1e4 - 2i for query 3 */
	for (i = 0; i < 4; i++) {
		x[0] = 100.0f - 0.02f * (float)i;
		head_set(&h, i, 0, x);
		q[i * 64] = 100.0f;
	}
	obs.pool_kernel = 0;
	assert_int_equal(kvc_attn_prefill_ref(&h.kv, 1, 4, q, 1.0f, out, &obs),
			 0);
	for (i = 0; i < 4; i++) {
		dense_attend(&h, q + i * 64, 1.0, i, w, want, &sabs);
		for (j = 0; j < 64; j++)
			NEAR(out[i * 64 + j], want[j], 2e-3, "query %u", i);
		assert_true(isfinite(head_meta(&h, i)->metric));
	}
	head_free(&h);
}

/* Threads change nothing, bit for bit, and the big case is still right. */
static void test_prefill_threads(void **state)
{
	struct kvc_observe obs = { KVC_METRIC_L2, 64, 2, 7 };
	uint32_t old = 150, n = 200, group = 8, d = 128, i, len = old + n;
	size_t rows = (size_t)n * group * d;
	float *q = xcalloc(rows, sizeof(float));
	float *one = xcalloc(rows, sizeof(float));
	float *many = xcalloc(rows, sizeof(float));
	float *m1 = xcalloc(len, sizeof(float));
	uint64_t rng = 19, rng2;
	struct head h;

	for (i = 0; i < rows; i++)
		q[i] = 3.0f * rng_unit(&rng);
	head_build(&h, d, 16, KVC_DTYPE_F16, len, 1.0f, &rng);

	kvc_attn_set_max_threads(1);
	assert_int_equal(
		kvc_attn_prefill_ref(&h.kv, group, n, q, 0.088f, one, &obs), 0);
	for (i = 0; i < len; i++) {
		m1[i] = head_meta(&h, i)->metric;
		head_meta(&h, i)->metric = 0.0f;
	}
	kvc_attn_set_max_threads(4);
	assert_int_equal(
		kvc_attn_prefill_ref(&h.kv, group, n, q, 0.088f, many, &obs),
		0);
	kvc_attn_set_max_threads(0);
	assert_memory_equal(one, many, rows * sizeof(float));
	for (i = 0; i < len; i++)
		assert_true(m1[i] == head_meta(&h, i)->metric);

	/* and against the dense reference (fresh metric) */
	for (i = 0; i < len; i++)
		head_meta(&h, i)->metric = 0.0f;
	rng2 = 23;
	check_prefill(&h, group, n, &obs, 3.0f, &rng2, "threaded");
	head_free(&h);
	free(q);
	free(one);
	free(many);
	free(m1);
}

static void count_item(void *arg, uint32_t item)
{
	((uint32_t *)arg)[item]++;
}

/* Every item runs once, whatever the number of threads. */
static void test_parallel(void **state)
{
	static const uint32_t caps[] = { 0, 1, 2, 3, 8, 100 };
	uint32_t counts[1000], c, i, n;

	for (c = 0; c < sizeof(caps) / sizeof(caps[0]); c++)
		for (n = 0; n <= 1000; n += 333) {
			memset(counts, 0, sizeof(counts));
			kvc_attn_set_max_threads(caps[c]);
			kvc_attn_parallel(n, UINT64_MAX, count_item, counts);
			for (i = 0; i < 1000; i++)
				assert_int_equal(counts[i], i < n ? 1 : 0);
			/* small work stays on this thread, still once each */
			memset(counts, 0, sizeof(counts));
			kvc_attn_parallel(n, 1, count_item, counts);
			for (i = 0; i < 1000; i++)
				assert_int_equal(counts[i], i < n ? 1 : 0);
		}
	kvc_attn_set_max_threads(0);
}

/* The scratch size: 0 without a metric, overflow reported. */
static void test_prefill_ws_bytes(void **state)
{
	struct kvc_observe obs = { KVC_METRIC_L2, 0, 0, 0 };

	assert_int_equal(kvc_attn_prefill_ws_bytes(100, 8, 10, NULL), 0);
	obs.metric = KVC_METRIC_NONE;
	assert_int_equal(kvc_attn_prefill_ws_bytes(100, 8, 10, &obs), 0);
	obs.metric = KVC_METRIC_L2;
	assert_int_equal(kvc_attn_prefill_ws_bytes(100, 8, 10, &obs),
			 10 * 8 * sizeof(struct kvc_softmax) + 10 * 4);
	obs.window = 4;
	obs.pool_kernel = 7;
	assert_int_equal(kvc_attn_prefill_ws_bytes(100, 8, 10, &obs),
			 4 * 8 * sizeof(struct kvc_softmax) + 4 * 4 + 100 * 4);
	if (sizeof(size_t) == 4) {
		obs.window = 0;
		assert_true(kvc_attn_prefill_ws_bytes(10, UINT32_MAX,
						      UINT32_MAX,
						      &obs) == SIZE_MAX);
	}
}

/* ------------------------------------------------------------------ */
/* the per-layer calls over a real cache */

struct fixture {
	struct kvc_backend *be;
	struct kvc_kv *kv;
	struct kvc_kv_params params;
	struct kvc_seq *seq;
	/* every token's K and V as appended: [layer][kv_head][pos][d] */
	float *k;
	float *v;
	uint32_t cap;
	/* positions each (layer, head) holds, in slot order */
	int32_t **held;
	uint32_t *nr_held;
};

static const struct kvc_model_shape smol = {
	.layers = 2,
	.q_heads = 9,
	.kv_heads = 3,
	.head_dim = 64,
	.block_size = 16,
	.dtype = KVC_DTYPE_F16,
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	if (kvc_backend_open_host(GRAN, &fx->be)) {
		fprintf(stderr, "kvc_backend_open_host: %s\n",
			kvc_last_error());
		free(fx);
		return -1;
	}
	fx->params.shape = smol;
	fx->params.capacity_blocks = 1024;
	fx->params.backend_kind = KVC_BACKEND_HOST;
	fx->params.backend = fx->be;
	fx->params.flags = KVC_POOL_NO_STATS_PAGE;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	uint32_t t;

	kvc_seq_destroy(fx->seq);
	kvc_kv_destroy(fx->kv);
	kvc_backend_close(fx->be);
	for (t = 0; fx->held && t < smol.layers * smol.kv_heads; t++)
		free(fx->held[t]);
	free(fx->held);
	free(fx->nr_held);
	free(fx->k);
	free(fx->v);
	free(fx);
	return 0;
}

static void fx_open(struct fixture *fx, enum kvc_dtype dtype, uint32_t cap)
{
	uint32_t tables = smol.layers * smol.kv_heads, t;
	int err;

	fx->params.shape.dtype = dtype;
	err = kvc_kv_create(&fx->params, &fx->kv);
	if (err)
		fail_msg("kvc_kv_create() = %d: %s", err, kvc_last_error());
	err = kvc_seq_create(fx->kv, &fx->seq);
	if (err)
		fail_msg("kvc_seq_create() = %d: %s", err, kvc_last_error());
	fx->cap = cap;
	fx->k = xcalloc((size_t)tables * cap * smol.head_dim, sizeof(float));
	fx->v = xcalloc((size_t)tables * cap * smol.head_dim, sizeof(float));
	fx->held = xcalloc(tables, sizeof(*fx->held));
	fx->nr_held = xcalloc(tables, sizeof(*fx->nr_held));
	for (t = 0; t < tables; t++)
		fx->held[t] = xcalloc(cap, sizeof(int32_t));
}

/* Append @n random tokens through kvc_seq_append(). */
static void fx_append(struct fixture *fx, uint32_t n, uint64_t *rng)
{
	uint32_t tables = smol.layers * smol.kv_heads, d = smol.head_dim;
	uint32_t first = kvc_seq_tokens(fx->seq), t, i, j;
	float *k = xcalloc((size_t)tables * n * d, sizeof(float));
	float *v = xcalloc((size_t)tables * n * d, sizeof(float));
	int err;

	assert_true(first + n <= fx->cap);
	for (t = 0; t < tables; t++)
		for (i = 0; i < n; i++) {
			for (j = 0; j < d; j++) {
				size_t at = ((size_t)t * n + i) * d + j;
				size_t to =
					((size_t)t * fx->cap + first + i) * d +
					j;

				k[at] = rng_unit(rng);
				v[at] = rng_unit(rng);
				fx->k[to] =
					stored(k[at], fx->params.shape.dtype);
				fx->v[to] =
					stored(v[at], fx->params.shape.dtype);
			}
			fx->held[t][fx->nr_held[t]++] = (int32_t)(first + i);
		}
	err = kvc_seq_append(fx->seq, n, k, v);
	if (err)
		fail_msg("kvc_seq_append(%u) = %d: %s", n, err,
			 kvc_last_error());
	free(k);
	free(v);
}

static void fx_truncate(struct fixture *fx, uint32_t layer, uint32_t head,
			uint32_t len)
{
	int err = kvc_seq_truncate(fx->seq, layer, head, len);

	if (err)
		fail_msg("kvc_seq_truncate() = %d: %s", err, kvc_last_error());
	fx->nr_held[layer * smol.kv_heads + head] = len;
}

/* The dense copy of (@layer, @head), as a struct head for dense_attend. */
static void fx_dense(struct fixture *fx, uint32_t layer, uint32_t head,
		     struct head *h)
{
	uint32_t t = layer * smol.kv_heads + head, d = smol.head_dim, i, j;
	size_t from;

	memset(h, 0, sizeof(*h));
	h->kv.head_dim = d;
	h->kv.len = fx->nr_held[t];
	assert_int_equal(h->kv.len, kvc_seq_len(fx->seq, layer, head));
	h->k = xcalloc((size_t)h->kv.len * d, sizeof(double));
	h->v = xcalloc((size_t)h->kv.len * d, sizeof(double));
	h->pos = xcalloc(h->kv.len, sizeof(int32_t));
	for (i = 0; i < h->kv.len; i++) {
		h->pos[i] = fx->held[t][i];
		from = ((size_t)t * fx->cap + (uint32_t)h->pos[i]) * d;
		for (j = 0; j < d; j++) {
			h->k[(size_t)i * d + j] = fx->k[from + j];
			h->v[(size_t)i * d + j] = fx->v[from + j];
		}
	}
}

static float fx_metric(struct fixture *fx, uint32_t layer, uint32_t head,
		       uint32_t slot)
{
	struct kvc_paged_kv p = kvc_seq_paged(fx->seq, layer, head);
	uint32_t bs = p.block_size;

	return p.meta[(uint64_t)p.table[slot / bs] * bs + slot % bs].metric;
}

/*
 * Decode over ragged heads (each head of each layer its own length), with
 * the L2 metric, against the dense reference per query head.
 */
static void test_runtime_decode(void **state)
{
	struct fixture *fx = *state;
	uint32_t d = smol.head_dim, group = smol.q_heads / smol.kv_heads;
	uint32_t layer, qh, kvh, j, i;
	float q[9 * 64], out[9 * 64];
	double w[200], want[64], sabs, *metric;
	uint64_t rng = 31;
	struct head h;
	int err;

	fx_open(fx, KVC_DTYPE_F16, 200);
	fx_append(fx, 70, &rng);
	fx_truncate(fx, 0, 1, 33);
	fx_truncate(fx, 1, 2, 0);
	fx_truncate(fx, 1, 0, 16);
	fx_append(fx, 1, &rng);
	for (i = 0; i < 9 * 64; i++)
		q[i] = 3.0f * rng_unit(&rng);
	for (layer = 0; layer < smol.layers; layer++) {
		err = kvc_attn_decode(fx->seq, layer, q, out, KVC_METRIC_L2);
		if (err)
			fail_msg("kvc_attn_decode() = %d: %s", err,
				 kvc_last_error());
		for (kvh = 0; kvh < smol.kv_heads; kvh++) {
			fx_dense(fx, layer, kvh, &h);
			metric = xcalloc(h.kv.len, sizeof(double));
			for (qh = kvh * group; qh < (kvh + 1) * group; qh++) {
				dense_attend(&h, q + qh * d, 1.0 / 8, -1, w,
					     want, &sabs);
				for (j = 0; j < d; j++)
					NEAR(out[qh * d + j], want[j],
					     tolerance(d, h.kv.len, sabs),
					     "layer %u query head %u", layer,
					     qh);
				for (i = 0; i < h.kv.len; i++)
					metric[i] += w[i] * w[i];
			}
			for (i = 0; i < h.kv.len; i++)
				NEAR(fx_metric(fx, layer, kvh, i), metric[i],
				     1e-5, "layer %u head %u slot %u", layer,
				     kvh, i);
			free(metric);
			head_free(&h);
		}
	}
	err = kvc_kv_check(fx->kv);
	if (err)
		fail_msg("kvc_kv_check() = %d: %s", err, kvc_last_error());
}

/*
 * A prompt, then more tokens after the heads were cut to different
 * lengths: prefill of the new ones sees each head's survivors and the new
 * tokens up to its own position. Metric: L1, window 8, buffer 2, pool 3.
 */
static void test_runtime_prefill(void **state)
{
	struct fixture *fx = *state;
	struct kvc_observe obs = { KVC_METRIC_L1, 8, 2, 3 };
	uint32_t d = smol.head_dim, group = smol.q_heads / smol.kv_heads;
	uint32_t n = 20, layer, qh, kvh, i, j, k, lo, hi, first;
	float *q = xcalloc((size_t)n * 9 * 64, sizeof(float));
	float *out = xcalloc((size_t)n * 9 * 64, sizeof(float));
	double w[200], want[64], sabs, *metric, m;
	uint64_t rng = 37;
	struct head h;
	int err;

	fx_open(fx, KVC_DTYPE_F32, 200);
	fx_append(fx, 40, &rng);
	fx_truncate(fx, 0, 0, 17);
	fx_truncate(fx, 0, 2, 0);
	fx_truncate(fx, 1, 1, 32);
	fx_append(fx, n, &rng);
	for (i = 0; i < n * 9 * 64; i++)
		q[i] = 3.0f * rng_unit(&rng);
	first = n - obs.window;
	for (layer = 0; layer < smol.layers; layer++) {
		err = kvc_attn_prefill(fx->seq, layer, n, q, out, &obs);
		if (err)
			fail_msg("kvc_attn_prefill() = %d: %s", err,
				 kvc_last_error());
		for (kvh = 0; kvh < smol.kv_heads; kvh++) {
			fx_dense(fx, layer, kvh, &h);
			metric = xcalloc(h.kv.len, sizeof(double));
			for (i = 0; i < n; i++) {
				int32_t q_pos = h.pos[h.kv.len - n + i];

				for (qh = kvh * group; qh < (kvh + 1) * group;
				     qh++) {
					const float *qi =
						q + ((size_t)i * 9 + qh) * d;

					dense_attend(&h, qi, 1.0 / 8, q_pos, w,
						     want, &sabs);
					for (j = 0; j < d; j++)
						NEAR(out[((size_t)i * 9 + qh) *
								 d +
							 j],
						     want[j],
						     tolerance(d, h.kv.len,
							       sabs),
						     "layer %u query %u head "
						     "%u",
						     layer, i, qh);
					if (i < first)
						continue;
					for (k = 0; k < h.kv.len; k++)
						if (q_pos - h.pos[k] >= 2)
							metric[k] += w[k];
				}
			}
			for (k = 0; k < h.kv.len; k++) {
				kvc_attn_pool_range(k, h.kv.len, 3, &lo, &hi);
				m = 0;
				for (j = lo; j < hi; j++)
					m = metric[j] > m ? metric[j] : m;
				NEAR(fx_metric(fx, layer, kvh, k), m, 1e-5,
				     "layer %u head %u slot %u", layer, kvh, k);
			}
			free(metric);
			head_free(&h);
		}
	}
	free(q);
	free(out);
}

/* Long heads: decode runs its KV heads on several threads; the result
 * is the same bit for bit as on one. */
static void test_runtime_decode_threads(void **state)
{
	struct fixture *fx = *state;
	float q[9 * 64], one[9 * 64], many[9 * 64];
	uint32_t len = 2500, layer, h, i;
	uint64_t rng = 43;
	float *m1;
	int err;

	fx_open(fx, KVC_DTYPE_F16, len);
	fx_append(fx, len, &rng);
	fx_truncate(fx, 1, 0, 900);
	for (i = 0; i < 9 * 64; i++)
		q[i] = 3.0f * rng_unit(&rng);
	m1 = xcalloc((size_t)smol.kv_heads * len, sizeof(float));
	for (layer = 0; layer < smol.layers; layer++) {
		kvc_attn_set_max_threads(1);
		err = kvc_attn_decode(fx->seq, layer, q, one, KVC_METRIC_L2);
		assert_int_equal(err, 0);
		for (h = 0; h < smol.kv_heads; h++)
			for (i = 0; i < kvc_seq_len(fx->seq, layer, h); i++)
				m1[h * len + i] = fx_metric(fx, layer, h, i);
		kvc_attn_set_max_threads(4);
		err = kvc_attn_decode(fx->seq, layer, q, many, KVC_METRIC_L2);
		kvc_attn_set_max_threads(0);
		assert_int_equal(err, 0);
		assert_memory_equal(one, many, sizeof(one));
		/* the second step added exactly what the first did */
		for (h = 0; h < smol.kv_heads; h++)
			for (i = 0; i < kvc_seq_len(fx->seq, layer, h); i++)
				assert_true(fx_metric(fx, layer, h, i) ==
					    2 * m1[h * len + i]);
	}
	free(m1);
}

#define EXPECT_EINVAL(call)                                                 \
	do {                                                                \
		int err_ = (call);                                          \
		if (err_ != -EINVAL)                                        \
			fail_msg("%s = %d, expected -EINVAL", #call, err_); \
		if (!kvc_last_error()[0])                                   \
			fail_msg("%s: empty kvc_last_error()", #call);      \
	} while (0)

static void test_runtime_bad_args(void **state)
{
	struct fixture *fx = *state;
	struct kvc_observe obs = { KVC_METRIC_L2, 0, 0, 4 };
	float q[4 * 9 * 64] = { 0 }, out[4 * 9 * 64];
	uint64_t rng = 41;

	fx_open(fx, KVC_DTYPE_F32, 64);
	fx_append(fx, 4, &rng);
	EXPECT_EINVAL(kvc_attn_decode(NULL, 0, q, out, KVC_METRIC_L2));
	EXPECT_EINVAL(kvc_attn_decode(fx->seq, 0, NULL, out, KVC_METRIC_L2));
	EXPECT_EINVAL(kvc_attn_decode(fx->seq, 0, q, NULL, KVC_METRIC_L2));
	EXPECT_EINVAL(kvc_attn_decode(fx->seq, 2, q, out, KVC_METRIC_L2));
	EXPECT_EINVAL(
		kvc_attn_decode(fx->seq, 0, q, out, (enum kvc_metric_kind)9));
	EXPECT_EINVAL(kvc_attn_prefill(NULL, 0, 1, q, out, NULL));
	EXPECT_EINVAL(kvc_attn_prefill(fx->seq, 5, 1, q, out, NULL));
	EXPECT_EINVAL(kvc_attn_prefill(fx->seq, 0, 1, q, NULL, NULL));
	EXPECT_EINVAL(kvc_attn_prefill(fx->seq, 0, 5, q, out, NULL));
	EXPECT_EINVAL(kvc_attn_prefill(fx->seq, 0, 1, q, out, &obs));
	obs.pool_kernel = 3;
	obs.metric = (enum kvc_metric_kind) - 1;
	EXPECT_EINVAL(kvc_attn_prefill(fx->seq, 0, 1, q, out, &obs));
	obs.metric = KVC_METRIC_L2;
	assert_int_equal(kvc_attn_prefill(fx->seq, 0, 4, q, out, &obs), 0);
	assert_int_equal(kvc_attn_prefill(fx->seq, 0, 0, q, out, &obs), 0);
	/* a head cut below the new tokens */
	fx_truncate(fx, 1, 1, 2);
	EXPECT_EINVAL(kvc_attn_prefill(fx->seq, 1, 3, q, out, NULL));
	EXPECT_EINVAL(kvc_attn_prefill(fx->seq, 1, 2, q, out, NULL));
	assert_int_equal(kvc_attn_prefill(fx->seq, 0, 2, q, out, NULL), 0);
	/* a head whose last KVs are not the newest tokens */
	fx_truncate(fx, 0, 0, 3);
	EXPECT_EINVAL(kvc_attn_prefill(fx->seq, 0, 1, q, out, NULL));
	assert_int_equal(kvc_attn_decode(fx->seq, 0, q, out, KVC_METRIC_NONE),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_math_slots),
		cmocka_unit_test(test_math_load_dot),
		cmocka_unit_test(test_math_softmax),
		cmocka_unit_test(test_math_rules),
		cmocka_unit_test(test_decode_shapes),
		cmocka_unit_test(test_decode_empty),
		cmocka_unit_test(test_decode_metric_by_hand),
		cmocka_unit_test(test_decode_large_scores),
		cmocka_unit_test(test_prefill_shapes),
		cmocka_unit_test(test_prefill_positions),
		cmocka_unit_test(test_prefill_metric_by_hand),
		cmocka_unit_test(test_prefill_pool_by_hand),
		cmocka_unit_test(test_prefill_edges),
		cmocka_unit_test(test_prefill_threads),
		cmocka_unit_test(test_prefill_ws_bytes),
		cmocka_unit_test(test_parallel),
		cmocka_unit_test_setup_teardown(test_runtime_decode, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_runtime_decode_threads,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_runtime_prefill, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_runtime_bad_args, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
