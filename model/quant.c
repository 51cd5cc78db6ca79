// SPDX-License-Identifier: MIT
/*
 * Dequantization and quantized dot products (see quant.h).
 *
 * The dot products keep one float accumulator per position in a block
 * (acc[j] += d * (q[j] * x[j])...): every step is then element-wise, so
 * the compiler vectorizes the loops without reassociating a sum, and the
 * lanes are added once at the end of the row.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../alloc/error.h"
#include "../kernels/attention.h"
#include "../kernels/half.h"
#include "gguf.h"
#include "quant.h"

#define HALF (KVC_QBLOCK / 2)

/*
 * The dot products are compiled twice on x86-64, for AVX2 and for the
 * baseline, and the loader picks one: AVX2 widens bytes to floats in one
 * instruction and doubles the lanes. FMA stays off (ISO C contracts
 * nothing), so both versions round alike.
 */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define DOT_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef DOT_CLONES
#define DOT_CLONES
#endif

/* Rows of one kvc_attn_parallel() item: 16 floats of y fill a cache line. */
#define ROWS_PER_ITEM 16

static bool type_ok(uint32_t type, size_t n)
{
	uint32_t elems = 1;

	return kvc_ggml_block(type, &elems) && n % elems == 0;
}

static int bad_type(uint32_t type, size_t n)
{
	if (kvc_ggml_quantized(type))
		return kvc_err(
			-EINVAL,
			"ggml type %u needs a multiple of %d elements, not %zu",
			type, KVC_QBLOCK, n);
	return kvc_err(-EINVAL, "unsupported ggml type %u", type);
}

/*
 * Every half's float, built once: F16 rows convert one element a load
 * (a table of 256 KiB stays in cache while a matrix streams through), and
 * a block's scales take one load each, which measured faster than the
 * bit conversion on both dequantization and the dot products.
 */
static float half_table[1 << 16];
static pthread_once_t half_once = PTHREAD_ONCE_INIT;

static void half_table_init(void)
{
	uint32_t h;

	for (h = 0; h < (1u << 16); h++)
		half_table[h] = kvc_f16_to_f32((uint16_t)h);
}

/* The fp16 scale at @p as a float; half_table must be built. */
static inline float scale_at(const uint8_t *p)
{
	uint16_t h;

	memcpy(&h, p, sizeof(h));
	return half_table[h];
}

static void halves(const uint8_t *p, float *out, size_t n)
{
	uint16_t h;
	size_t i;

	for (i = 0; i < n; i++) {
		memcpy(&h, p + 2 * i, sizeof(h));
		out[i] = half_table[h];
	}
}

int kvc_dequant(uint32_t type, const void *src, float *dst, size_t n)
{
	const uint8_t *p = src;
	size_t b;
	int j;

	if (!type_ok(type, n))
		return bad_type(type, n);
	/* F16 elements and every block's scales convert through the table. */
	pthread_once(&half_once, half_table_init);
	switch (type) {
	case KVC_GGML_F32:
		memcpy(dst, src, n * sizeof(float));
		break;
	case KVC_GGML_F16:
		halves(p, dst, n);
		break;
	case KVC_GGML_Q4_0:
		for (b = 0; b < n / KVC_QBLOCK; b++, p += KVC_GGML_Q4_0_BYTES) {
			float d = scale_at(p), *o = dst + b * KVC_QBLOCK;
			const uint8_t *q = p + 2;

			for (j = 0; j < HALF; j++) {
				o[j] = (float)((q[j] & 15) - 8) * d;
				o[j + HALF] = (float)((q[j] >> 4) - 8) * d;
			}
		}
		break;
	case KVC_GGML_Q4_1:
		for (b = 0; b < n / KVC_QBLOCK; b++, p += KVC_GGML_Q4_1_BYTES) {
			float d = scale_at(p), m = scale_at(p + 2);
			float *o = dst + b * KVC_QBLOCK;
			const uint8_t *q = p + 4;

			for (j = 0; j < HALF; j++) {
				o[j] = (float)(q[j] & 15) * d + m;
				o[j + HALF] = (float)(q[j] >> 4) * d + m;
			}
		}
		break;
	case KVC_GGML_Q8_0:
		for (b = 0; b < n / KVC_QBLOCK; b++, p += KVC_GGML_Q8_0_BYTES) {
			float d = scale_at(p), *o = dst + b * KVC_QBLOCK;
			const int8_t *q = (const int8_t *)(p + 2);

			for (j = 0; j < KVC_QBLOCK; j++)
				o[j] = (float)q[j] * d;
		}
		break;
	}
	return 0;
}

/* The lanes' sum, pairwise: as accurate as a tree, cheap for 16 or 32. */
static float lanes_sum(float *acc, int nr)
{
	int j, w;

	for (w = nr / 2; w >= 1; w /= 2)
		for (j = 0; j < w; j++)
			acc[j] += acc[j + w];
	return acc[0];
}

DOT_CLONES static float dot_f32(const float *w, const float *x, size_t n)
{
	float acc[KVC_QBLOCK] = { 0 }, tail = 0;
	size_t i, end = n - n % KVC_QBLOCK;
	int j;

	for (i = 0; i < end; i += KVC_QBLOCK)
		for (j = 0; j < KVC_QBLOCK; j++)
			acc[j] += w[i + j] * x[i + j];
	for (i = end; i < n; i++)
		tail += w[i] * x[i];
	return lanes_sum(acc, KVC_QBLOCK) + tail;
}

DOT_CLONES static float dot_f16(const uint8_t *p, const float *x, size_t n)
{
	float acc[KVC_QBLOCK] = { 0 }, buf[KVC_QBLOCK], tail = 0;
	size_t i, end = n - n % KVC_QBLOCK;
	int j;

	/* Convert a block at a time, then an element-wise update. */
	for (i = 0; i < end; i += KVC_QBLOCK) {
		halves(p + 2 * i, buf, KVC_QBLOCK);
		for (j = 0; j < KVC_QBLOCK; j++)
			acc[j] += buf[j] * x[i + j];
	}
	halves(p + 2 * end, buf, n - end);
	for (i = end; i < n; i++)
		tail += buf[i - end] * x[i];
	return lanes_sum(acc, KVC_QBLOCK) + tail;
}

/*
 * sum_j ((q & 15) - 8) d x[j] = d (sum_j (q & 15) x[j] - 8 sum_j x[j]):
 * the offset folds into the lane's factor as (q - 8), exact in float.
 */
DOT_CLONES static float dot_q4_0(const uint8_t *p, const float *x, size_t n)
{
	float acc[HALF] = { 0 };
	size_t b;
	int j;

	for (b = 0; b < n / KVC_QBLOCK;
	     b++, p += KVC_GGML_Q4_0_BYTES, x += KVC_QBLOCK) {
		float d = scale_at(p);
		const uint8_t *q = p + 2;

		for (j = 0; j < HALF; j++)
			acc[j] += d * ((float)((q[j] & 15) - 8) * x[j] +
				       (float)((q[j] >> 4) - 8) * x[j + HALF]);
	}
	return lanes_sum(acc, HALF);
}

/* sum_j ((q & 15) d + m) x[j] = d sum_j q x[j] + m sum_j x[j]. */
DOT_CLONES static float dot_q4_1(const uint8_t *p, const float *x, size_t n)
{
	float acc[HALF] = { 0 };
	size_t b;
	int j;

	for (b = 0; b < n / KVC_QBLOCK;
	     b++, p += KVC_GGML_Q4_1_BYTES, x += KVC_QBLOCK) {
		float d = scale_at(p), m = scale_at(p + 2);
		const uint8_t *q = p + 4;

		for (j = 0; j < HALF; j++)
			acc[j] += d * ((float)(q[j] & 15) * x[j] +
				       (float)(q[j] >> 4) * x[j + HALF]) +
				  m * (x[j] + x[j + HALF]);
	}
	return lanes_sum(acc, HALF);
}

DOT_CLONES static float dot_q8_0(const uint8_t *p, const float *x, size_t n)
{
	float acc[KVC_QBLOCK] = { 0 };
	size_t b;
	int j;

	for (b = 0; b < n / KVC_QBLOCK;
	     b++, p += KVC_GGML_Q8_0_BYTES, x += KVC_QBLOCK) {
		float d = scale_at(p);
		const int8_t *q = (const int8_t *)(p + 2);

		for (j = 0; j < KVC_QBLOCK; j++)
			acc[j] += d * ((float)q[j] * x[j]);
	}
	return lanes_sum(acc, KVC_QBLOCK);
}

float kvc_qdot(uint32_t type, const void *row, const float *x, size_t n)
{
	if (!type_ok(type, n))
		return 0;
	pthread_once(&half_once, half_table_init);
	switch (type) {
	case KVC_GGML_F32:
		return dot_f32(row, x, n);
	case KVC_GGML_F16:
		return dot_f16(row, x, n);
	case KVC_GGML_Q4_0:
		return dot_q4_0(row, x, n);
	case KVC_GGML_Q4_1:
		return dot_q4_1(row, x, n);
	case KVC_GGML_Q8_0:
		return dot_q8_0(row, x, n);
	}
	return 0;
}

struct matvec {
	uint32_t type;
	const uint8_t *w;
	size_t stride;
	uint32_t rows;
	uint32_t cols;
	const float *x;
	float *y;
};

static void matvec_item(void *arg, uint32_t item)
{
	const struct matvec *mv = arg;
	uint32_t r = item * ROWS_PER_ITEM;
	uint32_t end =
		r + ROWS_PER_ITEM < mv->rows ? r + ROWS_PER_ITEM : mv->rows;

	for (; r < end; r++)
		mv->y[r] = kvc_qdot(mv->type, mv->w + (size_t)r * mv->stride,
				    mv->x, mv->cols);
}

int kvc_matvec(uint32_t type, const void *w, uint32_t rows, uint32_t cols,
	       const float *x, float *y)
{
	size_t stride = kvc_ggml_row_bytes(type, cols);
	struct matvec mv = { type, w, stride, rows, cols, x, y };

	if (!type_ok(type, cols))
		return bad_type(type, cols);
	kvc_attn_parallel((rows + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM,
			  (uint64_t)rows * cols, matvec_item, &mv);
	return 0;
}
