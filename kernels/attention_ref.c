// SPDX-License-Identifier: MIT
/*
 * Paged attention, the C reference: decode and causal prefill over one
 * (layer, KV head) as raw block table and block memory, with the eviction
 * metric collected on the way. The CPU path runs it; the CUDA kernels are
 * tested against it. The math itself is in attention_math.h, shared with
 * the kernels; this file maps the work onto loops, 4-lane vectors and
 * threads, each vector operation the scalar one lane by lane in the same
 * order.
 *
 * Scores go through an online softmax over tiles of keys (KEY_TILE, fewer
 * for a large head_dim), so no score is ever exponentiated except as a
 * difference to a running maximum. A tile's K rows are converted to f32
 * once (f32 rows are read in place), and scored against every query head
 * of the GQA group, eight keys at a time; then the tile's weights, four at
 * a time; then its V rows, converted once, are added into every head's
 * accumulator, two heads and 16 floats at a time, held in registers over
 * the tile. The metric needs each weight after the softmax is complete,
 * so it is a second pass over the K rows that recomputes the scores bit
 * for bit (same inputs, same function) and weighs them with the final
 * states, by a reciprocal.
 *
 * Never writes outside @out and the metric of slots below @kv->len; never
 * allocates in decode; results never depend on the number of threads
 * (each thread owns whole query rows or whole keys, and every sum runs in
 * one fixed order), nor on the CPU's features (F16C, where there is one,
 * only converts halves, exactly as the other paths do).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#include <immintrin.h>
#endif

/* One rounding an operation, as GCC does in ISO C mode: no FMA. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "attention.h"
#include "attention_math.h"

/* Keys per softmax tile at most: a block of the largest size. */
#define KEY_TILE 32u
/* Query heads that attend together (their scores of one tile on the
 * stack); larger groups go tile by tile. */
#define GROUP_TILE 8u
/* Threads for one call, and the work (multiply-adds) worth a thread. */
#define MAX_THREADS 8u
#define PARALLEL_WORK (1ull << 21)

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* ------------------------------------------------------------------ */
/* Threads */

static _Atomic uint32_t max_threads;

void kvc_attn_set_max_threads(uint32_t max)
{
	atomic_store(&max_threads, max);
}

static uint32_t threads_for(uint32_t nr_items, uint64_t work)
{
	uint32_t max = atomic_load(&max_threads);
	long cpus;

	if (work < PARALLEL_WORK || nr_items < 2 || max == 1)
		return 1;
	if (!max) {
		cpus = sysconf(_SC_NPROCESSORS_ONLN);
		max = cpus > 1 ?
			      (uint32_t)min_u32((uint32_t)cpus, MAX_THREADS) :
			      1;
	}
	return min_u32(min_u32(max, MAX_THREADS), nr_items);
}

struct share {
	void (*fn)(void *arg, uint32_t item);
	void *arg;
	uint32_t nr_items;
	uint32_t first;
	uint32_t step;
};

static void *share_run(void *p)
{
	struct share *s = p;
	uint32_t i;

	for (i = s->first; i < s->nr_items; i += s->step)
		s->fn(s->arg, i);
	return NULL;
}

void kvc_attn_parallel(uint32_t nr_items, uint64_t work,
		       void (*fn)(void *arg, uint32_t item), void *arg)
{
	uint32_t nr = threads_for(nr_items, work), t;
	struct share share[MAX_THREADS];
	bool started[MAX_THREADS];
	pthread_t th[MAX_THREADS];

	for (t = 0; t < nr; t++) {
		share[t] = (struct share){ fn, arg, nr_items, t, nr };
		started[t] = false;
	}
	for (t = 1; t < nr; t++)
		started[t] =
			!pthread_create(&th[t], NULL, share_run, &share[t]);
	share_run(&share[0]);
	for (t = 1; t < nr; t++)
		if (!started[t])
			share_run(&share[t]);
	for (t = 1; t < nr; t++)
		if (started[t])
			pthread_join(th[t], NULL);
}

/* ------------------------------------------------------------------ */
/* Vectors */

/*
 * Four floats in the vector extension of GCC and Clang: SSE2 on x86-64,
 * NEON on arm64, scalar code where there is no SIMD. Each operation is
 * one IEEE operation a lane, never reassociated nor contracted into an
 * FMA (see the pragma above), so a lane computes what the scalar
 * functions of attention_math.h compute, in the same order.
 */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));

static inline v4f vload(const float *p)
{
	v4f v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline void vstore(float *p, v4f v)
{
	memcpy(p, &v, sizeof(v));
}

static inline v4f vsplat(float x)
{
	return (v4f){ x, x, x, x };
}

/* The lanes of @a where @m is all ones, those of @b where it is 0. */
static inline v4f vselect(v4i m, v4f a, v4f b)
{
	return (v4f)(((v4i)a & m) | ((v4i)b & ~m));
}

/* kvc_attn_exp() of each lane: the same operations. */
static inline v4f vexp(v4f x)
{
	v4f n, r, p;
	v4u e;

	x = vselect(x < vsplat(-88.0f), vsplat(-88.0f), x);
	x = vselect(x > vsplat(88.0f), vsplat(88.0f), x);
	n = (x * 1.44269504f + 0x1.8p23f) - 0x1.8p23f;
	r = x - n * 0.693359375f;
	r = r - n * -2.12194440e-4f;
	p = vsplat(1.9875691500e-4f);
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * (r * r) + r + 1.0f;
	e = ((v4u) __builtin_convertvector(n, v4i) + 127) << 23;
	return p * (v4f)e;
}

/* Lanes @i..@l of @a then @b (0-3: @a's, 4-7: @b's). */
#if defined(__clang__) || __GNUC__ >= 12
#define vshuffle(a, b, i, j, k, l) __builtin_shufflevector(a, b, i, j, k, l)
#else
#define vshuffle(a, b, i, j, k, l) __builtin_shuffle(a, b, (v4i){ i, j, k, l })
#endif

/*
 * The four partial sums of each of @a..@d added pairwise, (s0 + s1) +
 * (s2 + s3) as kvc_attn_dot() adds them: lane i is the sum of the i-th
 * argument. A 4x4 transpose, then three additions.
 */
static inline v4f vhsum4(v4f a, v4f b, v4f c, v4f d)
{
	v4f ab01 = vshuffle(a, b, 0, 4, 1, 5),
	    ab23 = vshuffle(a, b, 2, 6, 3, 7);
	v4f cd01 = vshuffle(c, d, 0, 4, 1, 5),
	    cd23 = vshuffle(c, d, 2, 6, 3, 7);

	return (vshuffle(ab01, cd01, 0, 1, 4, 5) +
		vshuffle(ab01, cd01, 2, 3, 6, 7)) +
	       (vshuffle(ab23, cd23, 0, 1, 4, 5) +
		vshuffle(ab23, cd23, 2, 3, 6, 7));
}

/* ------------------------------------------------------------------ */
/* f16 rows */

/* Half @i of @src (any alignment). */
static inline uint16_t half_at(const uint8_t *src, uint32_t i)
{
	uint16_t h;

	memcpy(&h, src + 2 * (size_t)i, sizeof(h));
	return h;
}

/* Elements @i to @d of a row: halves @src[i..d) as floats, exactly. */
static inline void cvt_tail(float *dst, const uint8_t *src, uint32_t i,
			    uint32_t d)
{
	for (; i < d; i++)
		dst[i] = kvc_attn_half_to_float(half_at(src, i));
}

/* Zeros from @d to @d4. */
static inline void pad_row(float *row, uint32_t d, uint32_t d4)
{
	for (; d < d4; d++)
		row[d] = 0.0f;
}

/*
 * The rows of halves @src[0..@n), @d each, as floats into @dst, @d4 apart,
 * zero-padded: exact, whichever of these does it.
 */
#if !defined(__SSE2__)
static void cvt_rows_scalar(float *dst, const uint8_t *const *src, uint32_t n,
			    uint32_t d, uint32_t d4)
{
	uint32_t j;

	for (j = 0; j < n; j++, dst += d4) {
		cvt_tail(dst, src[j], 0, d);
		pad_row(dst, d, d4);
	}
}
#endif

#if defined(__SSE2__)
/*
 * Eight halves at a time in 16-bit lanes: the high half of each float is
 * the sign, the exponent rebased by 112 (by 224 for inf and NaN, by 0 for
 * zero) and the top 7 mantissa bits; the low half the other 3. Subnormal
 * halves are not handled: a row with one is converted again by the scalar
 * code (K and V rarely hold values under 2^-14).
 */
static void cvt_rows_sse2(float *dst, const uint8_t *const *src, uint32_t n,
			  uint32_t d, uint32_t d4)
{
	const __m128i abs = _mm_set1_epi16(0x7fff);
	const __m128i keep = _mm_set1_epi16((short)0x8fff);
	const __m128i rebase = _mm_set1_epi16(112 << 7);
	const __m128i min_normal = _mm_set1_epi16(0x0400);
	const __m128i max_finite = _mm_set1_epi16(0x7bff);
	const __m128i zero = _mm_setzero_si128();
	__m128i h, x, z, hi, lo, sub;
	uint32_t i, j;

	for (j = 0; j < n; j++, dst += d4) {
		sub = zero;
		for (i = 0; i + 8 <= d; i += 8) {
			h = _mm_loadu_si128(
				(const __m128i *)(src[j] + 2 * (size_t)i));
			x = _mm_and_si128(h, abs);
			z = _mm_cmpeq_epi16(x, zero);
			hi = _mm_and_si128(_mm_srai_epi16(h, 3), keep);
			hi = _mm_add_epi16(hi, _mm_andnot_si128(z, rebase));
			hi = _mm_add_epi16(
				hi,
				_mm_and_si128(_mm_cmpgt_epi16(x, max_finite),
					      rebase));
			sub = _mm_or_si128(
				sub,
				_mm_andnot_si128(
					z, _mm_cmplt_epi16(x, min_normal)));
			lo = _mm_slli_epi16(h, 13);
			_mm_storeu_si128((__m128i *)(dst + i),
					 _mm_unpacklo_epi16(lo, hi));
			_mm_storeu_si128((__m128i *)(dst + i + 4),
					 _mm_unpackhi_epi16(lo, hi));
		}
		cvt_tail(dst, src[j], _mm_movemask_epi8(sub) ? 0 : i, d);
		pad_row(dst, d, d4);
	}
}
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define HAVE_F16C 1
/* F16C's conversion, eight halves an instruction, where the CPU has it. */
__attribute__((target("f16c"))) static void
cvt_rows_f16c(float *dst, const uint8_t *const *src, uint32_t n, uint32_t d,
	      uint32_t d4)
{
	uint32_t i, j;

	for (j = 0; j < n; j++, dst += d4) {
		for (i = 0; i + 8 <= d; i += 8)
			_mm256_storeu_ps(
				dst + i,
				_mm256_cvtph_ps(_mm_loadu_si128(
					(const __m128i *)(src[j] +
							  2 * (size_t)i))));
		cvt_tail(dst, src[j], i, d);
		pad_row(dst, d, d4);
	}
}

static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static bool cpu_f16c;

/* F16C, and the OS saving the AVX state its VEX encoding needs. */
static void cpu_probe(void)
{
	unsigned int a, b, c, d, lo, hi;

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_F16C) ||
	    !(c & bit_OSXSAVE) || !(c & bit_AVX))
		return;
	__asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	cpu_f16c = (lo & 6) == 6; /* XMM and YMM state */
}
#endif

/* Whether this CPU converts halves with F16C (which changes no result). */
static bool use_f16c(void)
{
#ifdef HAVE_F16C
	pthread_once(&cpu_once, cpu_probe);
	return cpu_f16c;
#else
	return false;
#endif
}

/* Rows of bfloat16: each the top half of its float, so a shift. */
static void cvt_rows_bf16(float *dst, const uint8_t *const *src, uint32_t n,
			  uint32_t d, uint32_t d4)
{
	uint32_t i, j;
	uint16_t b;

	for (j = 0; j < n; j++, dst += d4) {
		for (i = 0; i < d; i++) {
			memcpy(&b, src[j] + 2 * (size_t)i, sizeof(b));
			dst[i] = kvc_bf16_to_f32(b);
		}
		pad_row(dst, d, d4);
	}
}

static void cvt_rows(float *dst, const uint8_t *const *src, uint32_t n,
		     uint32_t d, uint32_t d4, bool f16c)
{
#ifdef HAVE_F16C
	if (f16c) {
		cvt_rows_f16c(dst, src, n, d, d4);
		return;
	}
#endif
#if defined(__SSE2__)
	cvt_rows_sse2(dst, src, n, d, d4);
#else
	cvt_rows_scalar(dst, src, n, d, d4);
#endif
}

/* ------------------------------------------------------------------ */
/* Keys and tiles */

/* Where one slot's K, V and metadata are. */
struct key {
	const uint8_t *k;
	const uint8_t *v;
	struct kvc_slot_meta *meta;
	int32_t pos;
};

/* The slot at @off in block id @block; its metadata only if @meta. */
static void locate_at(const struct kvc_paged_kv *kv, uint32_t slot,
		      uint32_t block, uint32_t off, bool meta, struct key *key)
{
	key->k = kvc_attn_k_row(kv, block, off);
	key->v = kvc_attn_v_row(kv, block, off);
	key->meta = NULL;
	key->pos = (int32_t)slot;
	if (meta && kv->meta) {
		key->meta = &kv->meta[kvc_attn_meta_index(block, off,
							  kv->block_size)];
		key->pos = key->meta->pos;
	}
}

static void locate(const struct kvc_paged_kv *kv, uint32_t slot,
		   struct key *key)
{
	locate_at(kv, slot,
		  kv->table[kvc_attn_slot_block(slot, kv->block_size)],
		  kvc_attn_slot_offset(slot, kv->block_size), true, key);
}

/* Slots [@first, @first + @n), walking the block table. */
static void locate_tile(const struct kvc_paged_kv *kv, uint32_t first,
			uint32_t n, bool meta, struct key *keys)
{
	uint32_t b = kvc_attn_slot_block(first, kv->block_size);
	uint32_t off = kvc_attn_slot_offset(first, kv->block_size), j;

	for (j = 0; j < n; j++, off++) {
		if (off == kv->block_size) {
			b++;
			off = 0;
		}
		locate_at(kv, first + j, kv->table[b], off, meta, &keys[j]);
	}
}

/* Floats of one tile of K or V rows as f32 (8 KiB: L1 holds it). */
#define TILE_FLOATS 2048u

static const float zero_row[KVC_ATTN_MAX_HEAD_DIM];

/**
 * struct tile - K or V rows of up to @keys keys, as f32.
 * @d: head_dim.
 * @d4: @d rounded up to 4: the rows' length, zero-padded.
 * @keys: keys a tile, a multiple of 8: KEY_TILE, fewer for large @d.
 * @dtype: the element type in the blocks.
 * @in_place: f32 rows of a length divisible by 4 are read where they are.
 * @f16c: convert halves with F16C.
 * @rows: the rows; from the last key to the next multiple of 8, zero rows.
 * @buf: the converted rows, @d4 floats each.
 */
struct tile {
	uint32_t d;
	uint32_t d4;
	uint32_t keys;
	enum kvc_dtype dtype;
	bool in_place;
	bool f16c;
	const float *rows[KEY_TILE];
	float buf[TILE_FLOATS] __attribute__((aligned(64)));
};

static void tile_init(struct tile *t, const struct kvc_paged_kv *kv)
{
	t->d = kv->head_dim;
	t->d4 = (t->d + 3) & ~3u;
	t->keys = min_u32(KEY_TILE, TILE_FLOATS / t->d4) & ~7u;
	t->dtype = kv->dtype;
	t->in_place = kv->dtype == KVC_DTYPE_F32 && t->d == t->d4;
	t->f16c = kv->dtype == KVC_DTYPE_F16 && use_f16c();
}

static uint32_t round8(uint32_t n)
{
	return (n + 7) & ~7u;
}

/* Rows @src[0..@n) into the tile: each converted once. */
static void tile_load(struct tile *t, const uint8_t *const *src, uint32_t n)
{
	uint32_t j;

	if (t->in_place) {
		for (j = 0; j < n; j++)
			t->rows[j] = (const float *)src[j];
	} else {
		if (t->dtype == KVC_DTYPE_F16) {
			cvt_rows(t->buf, src, n, t->d, t->d4, t->f16c);
		} else if (t->dtype == KVC_DTYPE_BF16) {
			cvt_rows_bf16(t->buf, src, n, t->d, t->d4);
		} else {
			for (j = 0; j < n; j++) {
				memcpy(t->buf + j * t->d4, src[j],
				       sizeof(float) * t->d);
				pad_row(t->buf + j * t->d4, t->d, t->d4);
			}
		}
		for (j = 0; j < n; j++)
			t->rows[j] = t->buf + j * t->d4;
	}
	for (; j < round8(n); j++)
		t->rows[j] = zero_row;
}

/*
 * Scores of one query @q (@nv vectors, zero-padded) against tile rows
 * [0, @n), @n a multiple of 8: scale * q.k, each dot product in four
 * lanes added pairwise, as kvc_attn_dot(). Eight keys at a time, so
 * eight sums are in flight and @q is read once for them.
 */
static void tile_scores(float *s, const float *q, const float *const *rows,
			uint32_t n, uint32_t nv, float scale)
{
	const float *k0, *k1, *k2, *k3, *k4, *k5, *k6, *k7;
	v4f a0, a1, a2, a3, a4, a5, a6, a7, x;
	uint32_t i, j;

	for (j = 0; j < n; j += 8) {
		k0 = rows[j];
		k1 = rows[j + 1];
		k2 = rows[j + 2];
		k3 = rows[j + 3];
		k4 = rows[j + 4];
		k5 = rows[j + 5];
		k6 = rows[j + 6];
		k7 = rows[j + 7];
		a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = vsplat(0.0f);
		for (i = 0; i < 4 * nv; i += 4) {
			x = vload(q + i);
			a0 += x * vload(k0 + i);
			a1 += x * vload(k1 + i);
			a2 += x * vload(k2 + i);
			a3 += x * vload(k3 + i);
			a4 += x * vload(k4 + i);
			a5 += x * vload(k5 + i);
			a6 += x * vload(k6 + i);
			a7 += x * vload(k7 + i);
		}
		vstore(s + j, scale * vhsum4(a0, a1, a2, a3));
		vstore(s + j + 4, scale * vhsum4(a4, a5, a6, a7));
	}
}

/*
 * acc[g] += sum over j < @n of p[g][j] * rows[j], in key order, for the
 * @gt heads (@acc: rows of @d4 floats; @pb: the weights, each in all four
 * lanes). Two heads and 16 floats of the row at a time, in registers.
 */
static void tile_accumulate(float *acc, uint32_t d4, const v4f (*pb)[KEY_TILE],
			    uint32_t gt, const float *const *rows, uint32_t n)
{
	v4f a0, a1, a2, a3, b0, b1, b2, b3, p, r, v0, v1, v2, v3;
	uint32_t g = 0, c, j;
	float *a, *b;

	for (; g + 2 <= gt; g += 2) {
		a = acc + g * d4;
		b = a + d4;
		for (c = 0; c + 16 <= d4; c += 16) {
			a0 = vload(a + c);
			a1 = vload(a + c + 4);
			a2 = vload(a + c + 8);
			a3 = vload(a + c + 12);
			b0 = vload(b + c);
			b1 = vload(b + c + 4);
			b2 = vload(b + c + 8);
			b3 = vload(b + c + 12);
			for (j = 0; j < n; j++) {
				v0 = vload(rows[j] + c);
				v1 = vload(rows[j] + c + 4);
				v2 = vload(rows[j] + c + 8);
				v3 = vload(rows[j] + c + 12);
				p = pb[g][j];
				r = pb[g + 1][j];
				a0 += p * v0;
				a1 += p * v1;
				a2 += p * v2;
				a3 += p * v3;
				b0 += r * v0;
				b1 += r * v1;
				b2 += r * v2;
				b3 += r * v3;
			}
			vstore(a + c, a0);
			vstore(a + c + 4, a1);
			vstore(a + c + 8, a2);
			vstore(a + c + 12, a3);
			vstore(b + c, b0);
			vstore(b + c + 4, b1);
			vstore(b + c + 8, b2);
			vstore(b + c + 12, b3);
		}
		for (; c < d4; c += 4) {
			a0 = vload(a + c);
			b0 = vload(b + c);
			for (j = 0; j < n; j++) {
				v0 = vload(rows[j] + c);
				a0 += pb[g][j] * v0;
				b0 += pb[g + 1][j] * v0;
			}
			vstore(a + c, a0);
			vstore(b + c, b0);
		}
	}
	if (g == gt)
		return;
	a = acc + g * d4;
	for (c = 0; c + 16 <= d4; c += 16) {
		a0 = vload(a + c);
		a1 = vload(a + c + 4);
		a2 = vload(a + c + 8);
		a3 = vload(a + c + 12);
		for (j = 0; j < n; j++) {
			p = pb[g][j];
			a0 += p * vload(rows[j] + c);
			a1 += p * vload(rows[j] + c + 4);
			a2 += p * vload(rows[j] + c + 8);
			a3 += p * vload(rows[j] + c + 12);
		}
		vstore(a + c, a0);
		vstore(a + c + 4, a1);
		vstore(a + c + 8, a2);
		vstore(a + c + 12, a3);
	}
	for (; c < d4; c += 4) {
		a0 = vload(a + c);
		for (j = 0; j < n; j++)
			a0 += pb[g][j] * vload(rows[j] + c);
		vstore(a + c, a0);
	}
}

/* @gt queries of @d floats as rows of @d4, zero-padded. */
static void pad_queries(float *dst, const float *q, uint32_t gt, uint32_t d,
			uint32_t d4)
{
	uint32_t g;

	for (g = 0; g < gt; g++) {
		memcpy(dst + g * d4, q + g * d, sizeof(*q) * d);
		memset(dst + g * d4 + d, 0, sizeof(*q) * (d4 - d));
	}
}

/*
 * One head's weights of a tile's scores @s[0..@n): raises the running
 * maximum to the tile's (rescaling the head's accumulator @acc, @d4
 * floats), then exp(s - max) in place, four at a time (lanes up to the
 * next multiple of 4 get 0). The sum is left to add_weights().
 */
static void tile_weights(struct kvc_softmax *sm, float *s, uint32_t n,
			 float *acc, uint32_t d4)
{
	float a, b, alpha;
	uint32_t j;
	v4f m, x;

	for (j = n; j & 3; j++)
		s[j] = -INFINITY;
	m = vload(s);
	for (j = 4; j < n; j += 4) {
		x = vload(s + j);
		m = vselect(x > m, x, m);
	}
	a = m[1] > m[0] ? m[1] : m[0];
	b = m[3] > m[2] ? m[3] : m[2];
	alpha = kvc_softmax_rescale(sm, b > a ? b : a);
	if (alpha != 1.0f)
		for (j = 0; j < d4; j += 4)
			vstore(acc + j, vload(acc + j) * alpha);
	m = vsplat(sm->max);
	for (j = 0; j < n; j += 4)
		vstore(s + j, vexp(vload(s + j) - m));
}

/*
 * sm[g].sum += p[g][j] for j < @n, in key order as kvc_softmax_add()
 * adds, four heads' sums interleaved (so their additions overlap); and
 * each weight into all four lanes of @pb[g][j].
 */
static void add_weights(struct kvc_softmax *sm, float (*p)[KEY_TILE],
			v4f (*pb)[KEY_TILE], uint32_t gt, uint32_t n)
{
	const float *p0, *p1, *p2, *p3;
	float s0, s1, s2, s3;
	uint32_t g, j;

	for (g = 0; g < gt; g += 4) {
		/* heads past @gt repeat the last, and are not stored */
		p0 = p[g];
		p1 = p[min_u32(g + 1, gt - 1)];
		p2 = p[min_u32(g + 2, gt - 1)];
		p3 = p[min_u32(g + 3, gt - 1)];
		s0 = sm[g].sum;
		s1 = sm[min_u32(g + 1, gt - 1)].sum;
		s2 = sm[min_u32(g + 2, gt - 1)].sum;
		s3 = sm[min_u32(g + 3, gt - 1)].sum;
		for (j = 0; j < n; j++) {
			s0 += p0[j];
			s1 += p1[j];
			s2 += p2[j];
			s3 += p3[j];
		}
		sm[g].sum = s0;
		if (g + 1 < gt)
			sm[g + 1].sum = s1;
		if (g + 2 < gt)
			sm[g + 2].sum = s2;
		if (g + 3 < gt)
			sm[g + 3].sum = s3;
	}
	for (g = 0; g < gt; g++)
		for (j = 0; j < n; j++)
			pb[g][j] = vsplat(p[g][j]);
}

/*
 * Online softmax of @gt query heads (@q4: [gt][d4], zero-padded) over the
 * keys a query at @q_pos sees (every key unless @causal): writes the
 * normalised outputs to @out ([gt][d]) and leaves the final states in
 * @sm. A tile at a time: its K rows converted once and scored for every
 * head, the new maxima and the weights, then its V rows converted once and
 * added in.
 */
static void attend(const struct kvc_paged_kv *kv, struct tile *t,
		   const float *q4, float *out, uint32_t gt, float scale,
		   bool causal, int32_t q_pos, struct kvc_softmax *sm)
{
	float acc[GROUP_TILE * KVC_ATTN_MAX_HEAD_DIM]
		__attribute__((aligned(16)));
	float s[GROUP_TILE][KEY_TILE] __attribute__((aligned(16)));
	uint32_t d = t->d, d4 = t->d4, t0, j, g, cnt, seen, n;
	v4f pb[GROUP_TILE][KEY_TILE];
	const uint8_t *src[KEY_TILE];
	struct key keys[KEY_TILE];
	float inv;

	for (g = 0; g < gt; g++)
		kvc_softmax_init(&sm[g]);
	memset(acc, 0, sizeof(*acc) * gt * d4);
	for (t0 = 0; t0 < kv->len; t0 += cnt) {
		cnt = min_u32(t->keys, kv->len - t0);
		locate_tile(kv, t0, cnt, causal, keys);
		seen = 0;
		for (j = 0; j < cnt; j++)
			if (!causal || kvc_attn_visible(q_pos, keys[j].pos))
				src[seen++] = keys[j].k;
		if (!seen)
			continue;
		n = round8(seen);
		tile_load(t, src, seen);
		for (g = 0; g < gt; g++) {
			tile_scores(s[g], q4 + g * d4, t->rows, n, d4 / 4,
				    scale);
			tile_weights(&sm[g], s[g], seen, acc + g * d4, d4);
		}
		add_weights(sm, s, pb, gt, seen);
		seen = 0;
		for (j = 0; j < cnt; j++)
			if (!causal || kvc_attn_visible(q_pos, keys[j].pos))
				src[seen++] = keys[j].v;
		tile_load(t, src, seen);
		tile_accumulate(acc, d4, (const v4f(*)[KEY_TILE])pb, gt,
				t->rows, seen);
	}
	for (g = 0; g < gt; g++) {
		inv = kvc_softmax_inv_sum(&sm[g]);
		for (j = 0; j < d; j++)
			out[g * d + j] = acc[g * d4 + j] * inv;
	}
}

/*
 * Adds to @term[j] (j < @n, a multiple of 4) kvc_metric_term() of one
 * head's weights (@q4, zero-padded) for the keys of the tile's rows,
 * given the head's final softmax state: exp(s - max) * (1 / sum), as
 * kvc_softmax_weight(), with the scores attend() saw, bit for bit.
 */
static void head_terms(float *term, const struct tile *t, const float *q4,
		       float scale, const struct kvc_softmax *sm,
		       enum kvc_metric_kind kind, uint32_t n)
{
	v4f a, m = vsplat(sm->max), inv = vsplat(kvc_softmax_inv_sum(sm));
	float s[KEY_TILE];
	uint32_t j;

	if (kind != KVC_METRIC_L2 && kind != KVC_METRIC_L1 &&
	    kind != KVC_METRIC_AVG)
		return; /* a term of 0 */
	tile_scores(s, q4, t->rows, round8(n), t->d4 / 4, scale);
	for (j = 0; j < n; j += 4) {
		a = vexp(vload(s + j) - m) * inv;
		if (kind == KVC_METRIC_L2)
			a = a * a;
		vstore(term + j, vload(term + j) + a);
	}
}

static bool bad_head_dim(const struct kvc_paged_kv *kv)
{
	return !kv->head_dim || kv->head_dim > KVC_ATTN_MAX_HEAD_DIM;
}

/* ------------------------------------------------------------------ */
/* Decode */

/*
 * The metric of every key from @gt heads: a second pass over the K rows
 * (the weights need the final states), vectorised as the first. A key
 * gets the sum of its terms over the heads, in head order.
 */
static void decode_metric(const struct kvc_paged_kv *kv, struct tile *t,
			  const float *q4, uint32_t gt, float scale,
			  const struct kvc_softmax *sm,
			  enum kvc_metric_kind kind)
{
	const uint8_t *src[KEY_TILE];
	struct key keys[KEY_TILE];
	float term[KEY_TILE];
	uint32_t t0, j, g, cnt;

	for (t0 = 0; t0 < kv->len; t0 += t->keys) {
		cnt = min_u32(t->keys, kv->len - t0);
		locate_tile(kv, t0, cnt, true, keys);
		for (j = 0; j < cnt; j++)
			src[j] = keys[j].k;
		tile_load(t, src, cnt);
		memset(term, 0, sizeof(term));
		for (g = 0; g < gt; g++)
			head_terms(term, t, q4 + g * t->d4, scale, &sm[g], kind,
				   (cnt + 3) & ~3u);
		for (j = 0; j < cnt; j++)
			keys[j].meta->metric += term[j];
	}
}

void kvc_attn_decode_ref(const struct kvc_paged_kv *kv, uint32_t group,
			 const float *q, float scale, float *out,
			 enum kvc_metric_kind metric)
{
	float q4[GROUP_TILE * KVC_ATTN_MAX_HEAD_DIM]
		__attribute__((aligned(16)));
	struct kvc_softmax sm[GROUP_TILE];
	uint32_t d = kv->head_dim, g0, gt;
	struct tile t;

	if (bad_head_dim(kv)) {
		if (d)
			memset(out, 0, sizeof(*out) * group * d);
		return;
	}
	tile_init(&t, kv);
	for (g0 = 0; g0 < group; g0 += gt) {
		gt = min_u32(GROUP_TILE, group - g0);
		pad_queries(q4, q + g0 * d, gt, d, t.d4);
		attend(kv, &t, q4, out + g0 * d, gt, scale, false, 0, sm);
		if (metric != KVC_METRIC_NONE && kv->meta)
			decode_metric(kv, &t, q4, gt, scale, sm, metric);
	}
}

/* ------------------------------------------------------------------ */
/* Prefill */

/**
 * struct prefill - One prefill call, as its threads see it.
 * @kv: the head.
 * @group: query heads per KV head.
 * @n: new tokens (queries).
 * @base: slot of the first new token (len - n).
 * @first_obs: the first query that adds to the metric.
 * @q: queries, row i at @q + i * @stride.
 * @out: outputs, laid out as @q.
 * @stride: floats per row.
 * @scale: score scale.
 * @metric: how weights add up (NONE: no metric pass).
 * @buffer: minimum query_pos - key_pos for a weight to count.
 * @sm: final softmax states of the observed queries, [n - first_obs][group].
 * @q_pos: positions of the observed queries.
 * @pooled: the head's unpooled metric, [len], when the metric is pooled;
 *          NULL: the metric goes straight into the slots.
 */
struct prefill {
	const struct kvc_paged_kv *kv;
	uint32_t group;
	uint32_t n;
	uint32_t base;
	uint32_t first_obs;
	const float *q;
	float *out;
	size_t stride;
	float scale;
	enum kvc_metric_kind metric;
	uint32_t buffer;
	struct kvc_softmax *sm;
	int32_t *q_pos;
	float *pooled;
};

/* Query row @i: its outputs, and its softmax states if it is observed. */
static void prefill_row(void *arg, uint32_t i)
{
	struct prefill *pf = arg;
	const struct kvc_paged_kv *kv = pf->kv;
	float q4[GROUP_TILE * KVC_ATTN_MAX_HEAD_DIM]
		__attribute__((aligned(16)));
	uint32_t d = kv->head_dim, g0, gt;
	struct kvc_softmax sm[GROUP_TILE];
	struct key self;
	struct tile t;

	tile_init(&t, kv);
	locate(kv, pf->base + i, &self);
	for (g0 = 0; g0 < pf->group; g0 += gt) {
		gt = min_u32(GROUP_TILE, pf->group - g0);
		pad_queries(q4, pf->q + i * pf->stride + g0 * d, gt, d, t.d4);
		attend(kv, &t, q4, pf->out + i * pf->stride + g0 * d, gt,
		       pf->scale, true, self.pos, sm);
		if (pf->sm && i >= pf->first_obs)
			memcpy(&pf->sm[(size_t)(i - pf->first_obs) * pf->group +
				       g0],
			       sm, sizeof(*sm) * gt);
	}
	if (pf->q_pos && i >= pf->first_obs)
		pf->q_pos[i - pf->first_obs] = self.pos;
}

/*
 * The metric of the keys of item @item (KEY_TILE slots), summed over the
 * observed queries in row order; each query's part is the sum of its
 * heads' terms in head order. A query none of the tile's keys is
 * observed by is skipped.
 */
static void prefill_metric(void *arg, uint32_t item)
{
	struct prefill *pf = arg;
	const struct kvc_paged_kv *kv = pf->kv;
	float q4[KVC_ATTN_MAX_HEAD_DIM] __attribute__((aligned(16)));
	uint32_t d = kv->head_dim, t0, end, cnt, n, i, o, g, j;
	float sum[KEY_TILE], term[KEY_TILE];
	const uint8_t *src[KEY_TILE];
	struct key keys[KEY_TILE];
	const float *qg;
	int32_t min_pos;
	struct tile t;

	tile_init(&t, kv);
	end = min_u32(kv->len, (item + 1) * KEY_TILE);
	for (t0 = item * KEY_TILE; t0 < end; t0 += cnt) {
		cnt = min_u32(t.keys, end - t0);
		n = (cnt + 3) & ~3u;
		locate_tile(kv, t0, cnt, true, keys);
		min_pos = INT32_MAX;
		for (j = 0; j < cnt; j++) {
			src[j] = keys[j].k;
			min_pos = keys[j].pos < min_pos ? keys[j].pos : min_pos;
		}
		tile_load(&t, src, cnt);
		memset(sum, 0, sizeof(sum));
		for (i = pf->first_obs; i < pf->n; i++) {
			o = i - pf->first_obs;
			if ((int64_t)pf->q_pos[o] - pf->buffer < min_pos)
				continue;
			memset(term, 0, sizeof(term));
			for (g = 0; g < pf->group; g++) {
				qg = pf->q + i * pf->stride + g * d;
				if (d != t.d4) {
					pad_queries(q4, qg, 1, d, t.d4);
					qg = q4;
				}
				head_terms(term, &t, qg, pf->scale,
					   &pf->sm[(size_t)o * pf->group + g],
					   pf->metric, n);
			}
			for (j = 0; j < cnt; j++)
				if (kvc_attn_observed(pf->q_pos[o], keys[j].pos,
						      pf->buffer))
					sum[j] += term[j];
		}
		for (j = 0; j < cnt; j++) {
			if (pf->pooled)
				pf->pooled[t0 + j] = sum[j];
			else
				keys[j].meta->metric += sum[j];
		}
	}
}

/* Scratch layout: states, then query positions, then the unpooled metric. */
size_t kvc_attn_prefill_ws_bytes(uint32_t len, uint32_t group, uint32_t n,
				 const struct kvc_observe *obs)
{
	size_t nobs, states, bytes;

	if (!obs || obs->metric == KVC_METRIC_NONE || !n)
		return 0;
	nobs = n - kvc_attn_first_observer(n, obs->window);
	if (__builtin_mul_overflow(nobs, (size_t)group, &states) ||
	    __builtin_mul_overflow(states, sizeof(struct kvc_softmax),
				   &bytes) ||
	    __builtin_add_overflow(bytes, nobs * sizeof(int32_t), &bytes))
		return SIZE_MAX;
	if (obs->pool_kernel > 1 &&
	    __builtin_add_overflow(bytes, (size_t)len * sizeof(float), &bytes))
		return SIZE_MAX;
	return bytes;
}

void kvc_attn_prefill_ref_ws(const struct kvc_paged_kv *kv, uint32_t group,
			     uint32_t n, const float *q, size_t stride,
			     float scale, float *out,
			     const struct kvc_observe *obs, void *ws)
{
	struct prefill pf = {
		.kv = kv,
		.group = group,
		.n = n,
		.base = kv->len - n,
		.q = q,
		.out = out,
		.stride = stride,
		.scale = scale,
	};
	uint64_t work, nobs;
	uint32_t d = kv->head_dim, j, lo, hi, k;
	float max;

	if (!n || !group || n > kv->len)
		return;
	if (bad_head_dim(kv)) {
		for (j = 0; d && j < n; j++)
			memset(out + j * stride, 0, sizeof(*out) * group * d);
		return;
	}
	if (obs && obs->metric != KVC_METRIC_NONE && kv->meta) {
		pf.metric = obs->metric;
		pf.buffer = obs->buffer;
		pf.first_obs = kvc_attn_first_observer(n, obs->window);
		nobs = n - pf.first_obs;
		pf.sm = ws;
		pf.q_pos = (int32_t *)(pf.sm + nobs * group);
		if (obs->pool_kernel > 1)
			pf.pooled = (float *)(pf.q_pos + nobs);
	}

	/* Causal: about half of n x len scores, each a dot and an axpy. */
	work = (uint64_t)n * kv->len * group * d;
	kvc_attn_parallel(n, work, prefill_row, &pf);
	if (!pf.sm)
		return;

	nobs = n - pf.first_obs;
	work = 2 * nobs * kv->len * group * d;
	kvc_attn_parallel((kv->len + KEY_TILE - 1) / KEY_TILE, work,
			  prefill_metric, &pf);
	if (!pf.pooled)
		return;
	for (j = 0; j < kv->len; j++) {
		struct key key;

		kvc_attn_pool_range(j, kv->len, obs->pool_kernel, &lo, &hi);
		max = pf.pooled[lo];
		for (k = lo + 1; k < hi; k++)
			max = pf.pooled[k] > max ? pf.pooled[k] : max;
		locate(kv, j, &key);
		key.meta->metric += max;
	}
}

int kvc_attn_prefill_ref(const struct kvc_paged_kv *kv, uint32_t group,
			 uint32_t n, const float *q, float scale, float *out,
			 const struct kvc_observe *obs)
{
	size_t bytes = kvc_attn_prefill_ws_bytes(kv->len, group, n, obs);
	void *ws = NULL;

	if (bytes) {
		ws = bytes == SIZE_MAX ? NULL : malloc(bytes);
		if (!ws)
			return -ENOMEM;
	}
	kvc_attn_prefill_ref_ws(kv, group, n, q, (size_t)group * kv->head_dim,
				scale, out, obs, ws);
	free(ws);
	return 0;
}
