/* Description: model/quant: dequantization of F32, F16, Q4_0, Q4_1 and Q8_0 against a plain reference, quantized dot products against dequantize-then-dot, matrix-vector products on one thread and many, the shared block-size table, every half as a block scale, refused types and lengths */
// SPDX-License-Identifier: MIT
/*
 * Tests of dequantization and the quantized dot products. Rows are random
 * blocks (random scales and quants); the reference decodes each element
 * the obvious way with kvc_f16_to_f32(), and dot products are compared,
 * in double, against the sum of |w x| so cancellation does not matter.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include "../kernels/attention.h"
#include "../kernels/half.h"
#include "../model/gguf.h"
#include "../model/quant.h"

/* Elements of the longest row a test uses. */
#define MAX_N 4096

static const uint32_t all_types[] = { KVC_GGML_F32, KVC_GGML_F16, KVC_GGML_Q4_0,
				      KVC_GGML_Q4_1, KVC_GGML_Q8_0 };

struct fixture {
	uint64_t rng;
	uint8_t *row; /* stored elements */
	float *x;
	float *got;
	float *want;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->rng = 0x9e3779b97f4a7c15ull;
	f->row = malloc(MAX_N * 4);
	f->x = malloc(MAX_N * sizeof(float));
	f->got = malloc(MAX_N * sizeof(float));
	f->want = malloc(MAX_N * sizeof(float));
	if (!f->row || !f->x || !f->got || !f->want)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->row);
	free(f->x);
	free(f->got);
	free(f->want);
	free(f);
	kvc_attn_set_max_threads(0);
	return 0;
}

/* ------------------------------------------------------------------ */
/* helpers */

/* Uniform in [-1, 1). */
static float rng_unit(uint64_t *s)
{
	return (float)(rng_next(s) >> 40) / (float)(1 << 23) - 1.0f;
}

static void put_half(uint8_t *p, float v)
{
	uint16_t h = kvc_f32_to_f16(v);

	memcpy(p, &h, sizeof(h));
}

static float get_half(const uint8_t *p)
{
	uint16_t h;

	memcpy(&h, p, sizeof(h));
	return kvc_f16_to_f32(h);
}

/* @n random elements of @type at @p: random quants, scales near 0.01. */
static void fill_row(uint64_t *s, uint32_t type, uint8_t *p, size_t n)
{
	size_t i, b, bb = kvc_ggml_block(type, NULL);
	float v;

	if (type == KVC_GGML_F32) {
		for (i = 0; i < n; i++) {
			v = rng_unit(s);
			memcpy(p + 4 * i, &v, sizeof(v));
		}
		return;
	}
	if (type == KVC_GGML_F16) {
		for (i = 0; i < n; i++)
			put_half(p + 2 * i, rng_unit(s));
		return;
	}
	for (b = 0; b < n / KVC_QBLOCK; b++, p += bb) {
		for (i = 0; i < bb; i++)
			p[i] = (uint8_t)rng_next(s);
		put_half(p, 0.02f * rng_unit(s));
		if (type == KVC_GGML_Q4_1)
			put_half(p + 2, 0.1f * rng_unit(s));
	}
}

/* The obvious decoding of element @i. */
static float ref_elem(uint32_t type, const uint8_t *row, size_t i)
{
	uint32_t elems = 1;
	size_t bb = kvc_ggml_block(type, &elems);
	const uint8_t *p = row + i / elems * bb; /* element or block */
	size_t j = i % KVC_QBLOCK;
	float v;

	switch (type) {
	case KVC_GGML_F32:
		memcpy(&v, row + 4 * i, sizeof(v));
		return v;
	case KVC_GGML_F16:
		return get_half(row + 2 * i);
	case KVC_GGML_Q4_0:
		if (j < 16)
			return (float)((p[2 + j] & 15) - 8) * get_half(p);
		return (float)((p[2 + j - 16] >> 4) - 8) * get_half(p);
	case KVC_GGML_Q4_1:
		if (j < 16)
			return (float)(p[4 + j] & 15) * get_half(p) +
			       get_half(p + 2);
		return (float)(p[4 + j - 16] >> 4) * get_half(p) +
		       get_half(p + 2);
	case KVC_GGML_Q8_0:
		return (float)(int8_t)p[2 + j] * get_half(p);
	}
	fail_msg("type %u", type);
	return 0;
}

/* qdot of @row against dequantize + a double dot, relative to sum |w x|. */
static void check_qdot(struct fixture *f, uint32_t type, size_t n)
{
	double want = 0, mag = 0;
	float got;
	size_t i;

	assert_int_equal(kvc_dequant(type, f->row, f->got, n), 0);
	for (i = 0; i < n; i++) {
		want += (double)f->got[i] * f->x[i];
		mag += fabs((double)f->got[i] * f->x[i]);
	}
	got = kvc_qdot(type, f->row, f->x, n);
	if (fabs(got - want) > 1e-5 * mag + 1e-30)
		fail_msg(
			"type %u n %zu: qdot %.9g, dequant+dot %.9g (|w x| %g)",
			type, n, got, want, mag);
}

/* ------------------------------------------------------------------ */
/* tests */

/* Every type decodes as the plain reference does, bit for bit. */
static void test_dequant_matches_reference(void **state)
{
	struct fixture *f = *state;
	size_t i, t, n = 1024;

	for (t = 0; t < sizeof(all_types) / sizeof(all_types[0]); t++) {
		fill_row(&f->rng, all_types[t], f->row, n);
		assert_int_equal(kvc_dequant(all_types[t], f->row, f->got, n),
				 0);
		for (i = 0; i < n; i++) {
			float want = ref_elem(all_types[t], f->row, i);

			if (memcmp(&f->got[i], &want, sizeof(want)))
				fail_msg("type %u element %zu: %.9g, want %.9g",
					 all_types[t], i, f->got[i], want);
		}
	}
}

/* Known blocks: the formulas of the formats, written out. */
static void test_dequant_known_blocks(void **state)
{
	struct fixture *f = *state;
	uint8_t *p = f->row;
	int j;

	/* Q4_0, d = 0.5: low nibble j, high nibble 15 - j. */
	put_half(p, 0.5f);
	for (j = 0; j < 16; j++)
		p[2 + j] = (uint8_t)(j | (15 - j) << 4);
	assert_int_equal(kvc_dequant(KVC_GGML_Q4_0, p, f->got, 32), 0);
	for (j = 0; j < 16; j++) {
		assert_true(f->got[j] == (j - 8) * 0.5f);
		assert_true(f->got[j + 16] == (7 - j) * 0.5f);
	}
	/* Q4_1, d = 0.25, m = -1. */
	put_half(p, 0.25f);
	put_half(p + 2, -1.0f);
	for (j = 0; j < 16; j++)
		p[4 + j] = (uint8_t)(j | (15 - j) << 4);
	assert_int_equal(kvc_dequant(KVC_GGML_Q4_1, p, f->got, 32), 0);
	for (j = 0; j < 16; j++) {
		assert_true(f->got[j] == j * 0.25f - 1.0f);
		assert_true(f->got[j + 16] == (15 - j) * 0.25f - 1.0f);
	}
	/* Q8_0, d = 2: q = j - 16. */
	put_half(p, 2.0f);
	for (j = 0; j < 32; j++)
		p[2 + j] = (uint8_t)(int8_t)(j - 16);
	assert_int_equal(kvc_dequant(KVC_GGML_Q8_0, p, f->got, 32), 0);
	for (j = 0; j < 32; j++)
		assert_true(f->got[j] == (j - 16) * 2.0f);
}

/* Halves of every kind: zeros, subnormals, infinities, NaN. */
static void test_dequant_f16_special_values(void **state)
{
	static const uint16_t h[] = { 0x0000, 0x8000, 0x0001, 0x83ff,
				      0x0400, 0x3c00, 0xc000, 0x7bff,
				      0x7c00, 0xfc00, 0x7e00, 0x3555 };
	struct fixture *f = *state;
	size_t i, n = sizeof(h) / sizeof(h[0]);

	memcpy(f->row, h, sizeof(h));
	assert_int_equal(kvc_dequant(KVC_GGML_F16, f->row, f->got, n), 0);
	for (i = 0; i < n; i++) {
		float want = kvc_f16_to_f32(h[i]);

		if (isnan(want))
			assert_true(isnan(f->got[i]));
		else if (memcmp(&f->got[i], &want, sizeof(want)))
			fail_msg("half 0x%04x: %g, want %g", h[i], f->got[i],
				 want);
	}
	for (i = 0; i < 32; i++)
		f->x[i] = 1.0f;
	memset(f->row, 0, 64);
	memcpy(f->row, h, 2 * 6); /* finite ones only */
	assert_true(fabs(kvc_qdot(KVC_GGML_F16, f->row, f->x, 32) -
			 ((double)kvc_f16_to_f32(h[2]) + kvc_f16_to_f32(h[3]) +
			  kvc_f16_to_f32(h[4]) + 1.0)) < 1e-6);
}

/* qdot equals dequantize-then-dot within 1e-5 of sum |w x|. */
static void test_qdot_matches_dequant(void **state)
{
	static const size_t lens[] = { 32, 64, 96, 576, 1536, 4096 };
	struct fixture *f = *state;
	size_t i, t, l, rep;

	for (t = 0; t < sizeof(all_types) / sizeof(all_types[0]); t++)
		for (l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
			for (rep = 0; rep < 4; rep++) {
				fill_row(&f->rng, all_types[t], f->row,
					 lens[l]);
				for (i = 0; i < lens[l]; i++)
					f->x[i] = 4.0f * rng_unit(&f->rng);
				check_qdot(f, all_types[t], lens[l]);
			}
}

/* F32 and F16 rows need no whole blocks. */
static void test_qdot_ragged_float_rows(void **state)
{
	struct fixture *f = *state;
	size_t i, n;

	for (n = 1; n < 80; n += 7) {
		for (i = 0; i < n; i++)
			f->x[i] = rng_unit(&f->rng);
		fill_row(&f->rng, KVC_GGML_F32, f->row, n);
		check_qdot(f, KVC_GGML_F32, n);
		fill_row(&f->rng, KVC_GGML_F16, f->row, n);
		check_qdot(f, KVC_GGML_F16, n);
	}
}

/* Row r of a matvec is qdot of row r, whatever the threads. */
static void test_matvec(void **state)
{
	static const uint32_t shapes[][2] = {
		{ 1, 32 }, { 17, 64 }, { 100, 256 }, { 1536, 576 }
	};
	struct fixture *f = *state;
	uint32_t s, r, rows, cols;
	size_t t, i, rb;
	uint8_t *w;
	float *y1, *y4;

	for (t = 0; t < sizeof(all_types) / sizeof(all_types[0]); t++) {
		for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
			rows = shapes[s][0];
			cols = shapes[s][1];
			rb = kvc_ggml_row_bytes(all_types[t], cols);
			w = malloc(rb * rows);
			y1 = malloc(rows * sizeof(float));
			y4 = malloc(rows * sizeof(float));
			assert_non_null(w);
			assert_non_null(y1);
			assert_non_null(y4);
			for (r = 0; r < rows; r++)
				fill_row(&f->rng, all_types[t], w + r * rb,
					 cols);
			for (i = 0; i < cols; i++)
				f->x[i] = rng_unit(&f->rng);
			kvc_attn_set_max_threads(1);
			assert_int_equal(kvc_matvec(all_types[t], w, rows, cols,
						    f->x, y1),
					 0);
			kvc_attn_set_max_threads(4);
			assert_int_equal(kvc_matvec(all_types[t], w, rows, cols,
						    f->x, y4),
					 0);
			for (r = 0; r < rows; r++) {
				float want = kvc_qdot(all_types[t], w + r * rb,
						      f->x, cols);

				assert_memory_equal(&y1[r], &want,
						    sizeof(want));
				assert_memory_equal(&y4[r], &want,
						    sizeof(want));
			}
			free(w);
			free(y1);
			free(y4);
		}
	}
}

/* The shared size table: the block layouts the decoders assume. */
static void test_block_table(void **state)
{
	static const struct {
		uint32_t type, elems, bytes;
		bool quantized;
	} want[] = {
		{ KVC_GGML_F32, 1, 4, false },
		{ KVC_GGML_F16, 1, 2, false },
		{ KVC_GGML_Q4_0, 32, 18, true },
		{ KVC_GGML_Q4_1, 32, 20, true },
		{ KVC_GGML_Q8_0, 32, 34, true },
	};
	uint32_t elems;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		elems = 0;
		assert_int_equal(kvc_ggml_block(want[i].type, &elems),
				 want[i].bytes);
		assert_int_equal(elems, want[i].elems);
		assert_int_equal(kvc_ggml_quantized(want[i].type),
				 want[i].quantized);
		assert_int_equal(kvc_ggml_row_bytes(want[i].type, 64),
				 64 / want[i].elems * want[i].bytes);
	}
	elems = 7;
	assert_int_equal(kvc_ggml_block(4, &elems), 0);
	assert_int_equal(kvc_ggml_block(99, NULL), 0);
	assert_int_equal(elems, 7);
	assert_false(kvc_ggml_quantized(99));
}

/* Every half, as a block's scale, decodes exactly as kvc_f16_to_f32(). */
static void test_dequant_every_scale(void **state)
{
	struct fixture *f = *state;
	const size_t blocks = MAX_N / KVC_QBLOCK;
	uint32_t h0, b;

	for (h0 = 0; h0 < (1u << 16); h0 += blocks) {
		for (b = 0; b < blocks; b++) {
			uint8_t *p = f->row + b * KVC_GGML_Q8_0_BYTES;
			uint16_t h = (uint16_t)(h0 + b);

			memset(p, 0, KVC_GGML_Q8_0_BYTES);
			memcpy(p, &h, sizeof(h));
			p[2] = 1;
		}
		assert_int_equal(kvc_dequant(KVC_GGML_Q8_0, f->row, f->got,
					     blocks * KVC_QBLOCK),
				 0);
		for (b = 0; b < blocks; b++) {
			float want = kvc_f16_to_f32((uint16_t)(h0 + b));
			float got = f->got[b * KVC_QBLOCK];

			if (isnan(want))
				assert_true(isnan(got));
			else if (memcmp(&got, &want, sizeof(want)))
				fail_msg("scale 0x%04x: %g, want %g", h0 + b,
					 got, want);
		}
	}
}

/* Unknown types and partial blocks are refused; nothing is written. */
static void test_refused(void **state)
{
	struct fixture *f = *state;

	memset(f->row, 0, 64);
	f->got[0] = 7.0f;
	assert_int_equal(kvc_dequant(99, f->row, f->got, 32), -EINVAL);
	assert_int_equal(kvc_dequant(KVC_GGML_Q4_0, f->row, f->got, 33),
			 -EINVAL);
	assert_int_equal(kvc_dequant(KVC_GGML_Q4_1, f->row, f->got, 16),
			 -EINVAL);
	assert_int_equal(kvc_dequant(KVC_GGML_Q8_0, f->row, f->got, 31),
			 -EINVAL);
	assert_true(f->got[0] == 7.0f);
	assert_non_null(strstr(kvc_last_error(), "32"));
	assert_int_equal(kvc_matvec(4, f->row, 1, 32, f->x, f->got), -EINVAL);
	assert_int_equal(kvc_matvec(KVC_GGML_Q8_0, f->row, 1, 48, f->x, f->got),
			 -EINVAL);
	assert_true(f->got[0] == 7.0f);
	assert_true(kvc_qdot(99, f->row, f->x, 32) == 0.0f);
	assert_true(kvc_qdot(KVC_GGML_Q4_0, f->row, f->x, 40) == 0.0f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dequant_matches_reference,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_dequant_known_blocks,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_dequant_f16_special_values,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_qdot_matches_dequant,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_qdot_ragged_float_rows,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_matvec, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dequant_every_scale, setup,
						teardown),
		cmocka_unit_test(test_block_table),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
