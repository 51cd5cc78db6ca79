/* Description: the GGUF reader: round trips through the test writer (every metadata type, arrays, F32/F16/Q4_0/Q4_1/Q8_0 tensors, alignment 32 and 64, versions 2 and 3), every getter and its refusals, files truncated at every byte, malformed headers, counts, strings, dims, types, offsets, overlaps, alignments, duplicates and nested arrays, and kvc_gguf_open on missing, empty and real files */
// SPDX-License-Identifier: MIT
/*
 * Tests of model/gguf.c. Valid files come from tests/gguf_writer.c;
 * malformed ones are built byte by byte with the raw builder below, so
 * each test names exactly the field it breaks. Every parsed buffer is a
 * malloc()ed copy of exactly the file's size, so a read past the end is
 * caught by the address sanitizer in the debug build.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/error.h>

#include "../model/gguf.h"
#include "gguf_writer.h"

struct fixture {
	struct gguf_writer *w;
	uint8_t *buf;
	size_t size;
	struct kvc_gguf *g;
	char path[64];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	fx->w = gw_new();
	if (!fx->w) {
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	kvc_gguf_close(fx->g);
	gw_free(fx->w);
	free(fx->buf);
	if (fx->path[0])
		unlink(fx->path);
	free(fx);
	return 0;
}

/* ------------------------------------------------------------------ */
/* helpers */

/* Finish the fixture's writer into fx->buf and parse it into fx->g. */
static void finish_and_parse(struct fixture *fx)
{
	int err;

	free(fx->buf);
	assert_int_equal(gw_finish(fx->w, &fx->buf, &fx->size), 0);
	err = kvc_gguf_parse(fx->buf, fx->size, &fx->g);
	if (err)
		fail_msg("kvc_gguf_parse() = %d: %s", err, kvc_last_error());
}

/*
 * Parse an exact-size copy of @buf; it must be refused with -EINVAL and a
 * message holding @want (when not NULL).
 */
static void expect_refused(const uint8_t *buf, size_t size, const char *want)
{
	uint8_t *copy = malloc(size ? size : 1);
	struct kvc_gguf *g = (void *)1;
	int err;

	assert_non_null(copy);
	memcpy(copy, buf, size);
	err = kvc_gguf_parse(copy, size, &g);
	free(copy);
	if (err != -EINVAL)
		fail_msg(
			"kvc_gguf_parse() = %d, expected -EINVAL (want \"%s\")",
			err, want ? want : "");
	assert_null(g);
	if (want && !strstr(kvc_last_error(), want))
		fail_msg("message \"%s\" lacks \"%s\"", kvc_last_error(), want);
}

/* A byte builder for malformed files. */
struct raw {
	uint8_t b[4096];
	size_t n;
};

static void put(struct raw *r, const void *p, size_t n)
{
	assert_true(n <= sizeof(r->b) - r->n);
	memcpy(r->b + r->n, p, n);
	r->n += n;
}

static void put_le(struct raw *r, uint64_t v, unsigned int bytes)
{
	unsigned int i;

	for (i = 0; i < bytes; i++) {
		uint8_t c = (uint8_t)(v >> (8 * i));

		put(r, &c, 1);
	}
}

static void put_u32(struct raw *r, uint32_t v)
{
	put_le(r, v, 4);
}

static void put_u64(struct raw *r, uint64_t v)
{
	put_le(r, v, 8);
}

static void put_str(struct raw *r, const char *s)
{
	put_u64(r, strlen(s));
	put(r, s, strlen(s));
}

static void put_header(struct raw *r, uint64_t nr_tensors, uint64_t nr_kv)
{
	r->n = 0;
	put(r, "GGUF", 4);
	put_u32(r, 3);
	put_u64(r, nr_tensors);
	put_u64(r, nr_kv);
}

static void put_kv_u32(struct raw *r, const char *key, uint32_t v)
{
	put_str(r, key);
	put_u32(r, KVC_GGUF_U32);
	put_u32(r, v);
}

/* A tensor info with up to 4 dims. */
static void put_tensor(struct raw *r, const char *name, uint32_t n_dims,
		       const uint64_t *dims, uint32_t type, uint64_t offset)
{
	uint32_t d;

	put_str(r, name);
	put_u32(r, n_dims);
	for (d = 0; d < n_dims; d++)
		put_u64(r, dims[d]);
	put_u32(r, type);
	put_u64(r, offset);
}

/* Pad to @align, then @bytes of data. */
static void put_data(struct raw *r, uint64_t align, size_t bytes)
{
	static const uint8_t zeros[1024];

	while (r->n % align)
		put(r, zeros, 1);
	put(r, zeros, bytes);
}

static void fill_random(uint8_t *p, size_t n, uint64_t *seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)rng_next(seed);
}

static bool str_is(const struct kvc_gguf_str *s, const char *want)
{
	return s->len == strlen(want) && !memcmp(s->s, want, s->len);
}

/* ------------------------------------------------------------------ */
/* round trips */

static const char *const tokens[] = { "hello", "", "world", "<|im_start|>",
				      "\xc4\xa0the" };

struct tensor_case {
	const char *name;
	uint32_t type;
	uint32_t n_dims;
	uint64_t dims[4];
};

static const struct tensor_case tensor_cases[] = {
	{ "t.f32", KVC_GGML_F32, 1, { 5 } },
	{ "t.f16", KVC_GGML_F16, 2, { 3, 7 } },
	{ "t.q4_0", KVC_GGML_Q4_0, 2, { 64, 3 } },
	{ "t.q4_1", KVC_GGML_Q4_1, 3, { 32, 2, 2 } },
	{ "t.q8_0", KVC_GGML_Q8_0, 4, { 96, 1, 2, 1 } },
	{ "t.f32.big", KVC_GGML_F32, 2, { 33, 3 } },
};

#define NR_CASES (sizeof(tensor_cases) / sizeof(tensor_cases[0]))

static uint64_t case_bytes(const struct tensor_case *c)
{
	uint64_t rows = 1;
	uint32_t d;

	for (d = 1; d < c->n_dims; d++)
		rows *= c->dims[d];
	return kvc_ggml_row_bytes(c->type, c->dims[0]) * rows;
}

static void add_everything(struct gguf_writer *w, uint8_t **data,
			   uint64_t *seed)
{
	static const uint8_t a_u8[] = { 0, 1, 255 };
	static const int8_t a_i8[] = { -128, 0, 127 };
	static const uint16_t a_u16[] = { 0, 65535 };
	static const int16_t a_i16[] = { -32768, 5 };
	static const uint32_t a_u32[] = { 7, 0xdeadbeef, 0 };
	static const int32_t a_i32[] = { -1, 2147483647 };
	static const float a_f32[] = { 1.5f, -0.25f, 1e30f };
	static const uint8_t a_bool[] = { 1, 0 };
	static const uint64_t a_u64[] = { UINT64_MAX, 1 };
	static const int64_t a_i64[] = { INT64_MIN, 3 };
	static const double a_f64[] = { 3.25, -1e300 };
	size_t i;

	assert_int_equal(gw_add_u8(w, "v.u8", 200), 0);
	gw_add_i8(w, "v.i8", -5);
	gw_add_u16(w, "v.u16", 60000);
	gw_add_i16(w, "v.i16", -30000);
	gw_add_u32(w, "v.u32", 4000000000u);
	gw_add_i32(w, "v.i32", -2000000000);
	gw_add_f32(w, "v.f32", 0.125f);
	gw_add_bool(w, "v.bool", true);
	gw_add_str(w, "v.str", "SmolLM2");
	gw_add_str_n(w, "v.str.nul", "a\0b", 3);
	gw_add_u64(w, "v.u64", 1ull << 40);
	gw_add_i64(w, "v.i64", -7);
	gw_add_f64(w, "v.f64", 1e-5);
	gw_add_arr(w, "a.u8", KVC_GGUF_U8, a_u8, 3);
	gw_add_arr(w, "a.i8", KVC_GGUF_I8, a_i8, 3);
	gw_add_arr(w, "a.u16", KVC_GGUF_U16, a_u16, 2);
	gw_add_arr(w, "a.i16", KVC_GGUF_I16, a_i16, 2);
	gw_add_arr(w, "a.u32", KVC_GGUF_U32, a_u32, 3);
	gw_add_arr(w, "a.i32", KVC_GGUF_I32, a_i32, 2);
	gw_add_arr(w, "a.f32", KVC_GGUF_F32, a_f32, 3);
	gw_add_arr(w, "a.bool", KVC_GGUF_BOOL, a_bool, 2);
	gw_add_arr(w, "a.u64", KVC_GGUF_U64, a_u64, 2);
	gw_add_arr(w, "a.i64", KVC_GGUF_I64, a_i64, 2);
	gw_add_arr(w, "a.f64", KVC_GGUF_F64, a_f64, 2);
	gw_add_arr(w, "a.empty", KVC_GGUF_I32, NULL, 0);
	gw_add_arr_str(w, "a.str", tokens, 5);
	gw_add_arr_str(w, "a.str.empty", NULL, 0);
	gw_add_arr_str(w, "a.str2", tokens + 2, 2);
	for (i = 0; i < NR_CASES; i++) {
		const struct tensor_case *c = &tensor_cases[i];
		uint64_t bytes = case_bytes(c);

		data[i] = malloc(bytes);
		assert_non_null(data[i]);
		fill_random(data[i], bytes, seed);
		assert_int_equal(gw_add_tensor(w, c->name, c->type, c->n_dims,
					       c->dims, data[i], bytes),
				 0);
	}
}

static void check_everything(struct fixture *fx, uint8_t **data)
{
	const struct kvc_gguf *g = fx->g;
	const struct kvc_gguf_kv *kv;
	struct kvc_gguf_str s;
	uint32_t u;
	float f;
	size_t i;

	/* Scalars, as stored. */
	kv = kvc_gguf_find(g, "v.i16");
	assert_non_null(kv);
	assert_int_equal(kv->type, KVC_GGUF_I16);
	EXPECT_U64(kv->count, 1);
	assert_int_equal((int16_t)(kv->data[0] | kv->data[1] << 8), -30000);
	kv = kvc_gguf_find(g, "v.i64");
	assert_non_null(kv);
	assert_int_equal(kv->type, KVC_GGUF_I64);
	kv = kvc_gguf_find(g, "v.bool");
	assert_non_null(kv);
	assert_int_equal(kv->type, KVC_GGUF_BOOL);
	assert_int_equal(kv->data[0], 1);

	assert_int_equal(kvc_gguf_get_u32(g, "v.u8", &u), 0);
	EXPECT_U64(u, 200);
	assert_int_equal(kvc_gguf_get_u32(g, "v.u16", &u), 0);
	EXPECT_U64(u, 60000);
	assert_int_equal(kvc_gguf_get_u32(g, "v.u32", &u), 0);
	EXPECT_U64(u, 4000000000u);
	assert_int_equal(kvc_gguf_get_f32(g, "v.f32", &f), 0);
	assert_true(f == 0.125f);
	assert_int_equal(kvc_gguf_get_f32(g, "v.f64", &f), 0);
	assert_true(f == (float)1e-5);
	assert_int_equal(kvc_gguf_get_str(g, "v.str", &s), 0);
	assert_true(str_is(&s, "SmolLM2"));
	assert_int_equal(kvc_gguf_get_str(g, "v.str.nul", &s), 0);
	EXPECT_U64(s.len, 3);
	assert_memory_equal(s.s, "a\0b", 3);

	/* Arrays: element type, count, and the bytes little-endian. */
	kv = kvc_gguf_find(g, "a.u32");
	assert_non_null(kv);
	assert_int_equal(kv->type, KVC_GGUF_ARRAY);
	assert_int_equal(kv->arr_type, KVC_GGUF_U32);
	EXPECT_U64(kv->count, 3);
	assert_memory_equal(kv->data + 4, "\xef\xbe\xad\xde", 4);
	kv = kvc_gguf_find(g, "a.f64");
	assert_non_null(kv);
	assert_int_equal(kv->arr_type, KVC_GGUF_F64);
	EXPECT_U64(kv->count, 2);
	{
		double d;

		memcpy(&d, kv->data, 8);
		assert_true(d == 3.25);
	}
	kv = kvc_gguf_find(g, "a.bool");
	assert_non_null(kv);
	assert_int_equal(kv->arr_type, KVC_GGUF_BOOL);
	assert_memory_equal(kv->data, "\1\0", 2);
	kv = kvc_gguf_find(g, "a.empty");
	assert_non_null(kv);
	EXPECT_U64(kv->count, 0);
	kv = kvc_gguf_find(g, "a.str");
	assert_non_null(kv);
	assert_int_equal(kv->arr_type, KVC_GGUF_STRING);
	EXPECT_U64(kv->count, 5);
	for (i = 0; i < 5; i++) {
		assert_int_equal(kvc_gguf_arr_str(g, kv, i, &s), 0);
		assert_true(str_is(&s, tokens[i]));
	}
	/* Out of order too: the offsets are recorded, not walked. */
	assert_int_equal(kvc_gguf_arr_str(g, kv, 4, &s), 0);
	assert_true(str_is(&s, tokens[4]));
	assert_int_equal(kvc_gguf_arr_str(g, kv, 5, &s), -EINVAL);
	kv = kvc_gguf_find(g, "a.str2");
	assert_non_null(kv);
	assert_int_equal(kvc_gguf_arr_str(g, kv, 1, &s), 0);
	assert_true(str_is(&s, tokens[3]));
	kv = kvc_gguf_find(g, "a.str.empty");
	assert_non_null(kv);
	EXPECT_U64(kv->count, 0);
	assert_int_equal(kvc_gguf_arr_str(g, kv, 0, &s), -EINVAL);

	/* Tensors: dims, sizes, offsets as laid out, bytes, alignment. */
	EXPECT_U64(g->nr_tensors, NR_CASES);
	for (i = 0; i < NR_CASES; i++) {
		const struct tensor_case *c = &tensor_cases[i];
		const struct kvc_gguf_tensor *t = kvc_gguf_tensor(g, c->name);
		uint64_t elems = 1;
		uint32_t d;

		assert_non_null(t);
		assert_ptr_equal(t, &g->tensors[i]);
		assert_true(str_is(&t->name, c->name));
		EXPECT_U64(t->n_dims, c->n_dims);
		EXPECT_U64(t->type, c->type);
		for (d = 0; d < 4; d++) {
			EXPECT_U64(t->dims[d], d < c->n_dims ? c->dims[d] : 1);
			elems *= t->dims[d];
		}
		EXPECT_U64(t->elems, elems);
		EXPECT_U64(t->bytes, case_bytes(c));
		EXPECT_U64(t->data - g->data,
			   g->data_offset + gw_tensor_offset(fx->w, i));
		EXPECT_U64((t->data - g->data) % g->alignment, 0);
		assert_memory_equal(t->data, data[i], t->bytes);
	}
	EXPECT_U64(g->data_offset % g->alignment, 0);
}

static void round_trip(struct fixture *fx, uint32_t version, uint32_t align)
{
	uint8_t *data[NR_CASES] = { 0 };
	uint64_t seed = 0x9e3779b97f4a7c15ull ^ align;
	size_t i;

	gw_set_version(fx->w, version);
	if (align)
		assert_int_equal(gw_set_alignment(fx->w, align), 0);
	add_everything(fx->w, data, &seed);
	finish_and_parse(fx);
	EXPECT_U64(fx->g->version, version);
	EXPECT_U64(fx->g->alignment, align ? align : 32);
	EXPECT_U64(fx->g->nr_kv, 28 + (align ? 1 : 0));
	assert_ptr_equal(fx->g->data, fx->buf);
	EXPECT_U64(fx->g->size, fx->size);
	assert_null(fx->g->map);
	check_everything(fx, data);
	for (i = 0; i < NR_CASES; i++)
		free(data[i]);
}

static void test_round_trip_v3_align32(void **state)
{
	round_trip(*state, 3, 0);
}

static void test_round_trip_v2_align64(void **state)
{
	round_trip(*state, 2, 64);
}

static void test_round_trip_align1(void **state)
{
	round_trip(*state, 3, 1);
}

static void test_empty_file(void **state)
{
	struct fixture *fx = *state;

	finish_and_parse(fx);
	EXPECT_U64(fx->size, 24);
	EXPECT_U64(fx->g->nr_kv, 0);
	EXPECT_U64(fx->g->nr_tensors, 0);
	assert_null(kvc_gguf_find(fx->g, "x"));
	assert_null(kvc_gguf_tensor(fx->g, "x"));
}

/* Many entries and tensors: lookups are binary searches over sorted keys. */
static void test_many_entries(void **state)
{
	struct fixture *fx = *state;
	uint64_t dims[1] = { 8 };
	char key[32];
	uint32_t i, u;

	for (i = 0; i < 500; i++) {
		snprintf(key, sizeof(key), "k.%u", (i * 7919u) % 500);
		gw_add_u32(fx->w, key, (i * 7919u) % 500);
		snprintf(key, sizeof(key), "t.%u", i);
		assert_int_equal(gw_add_tensor(fx->w, key, KVC_GGML_F32, 1,
					       dims, NULL, 32),
				 0);
	}
	finish_and_parse(fx);
	for (i = 0; i < 500; i++) {
		snprintf(key, sizeof(key), "k.%u", i);
		assert_int_equal(kvc_gguf_get_u32(fx->g, key, &u), 0);
		EXPECT_U64(u, i);
		snprintf(key, sizeof(key), "t.%u", i);
		assert_ptr_equal(kvc_gguf_tensor(fx->g, key),
				 &fx->g->tensors[i]);
	}
	assert_null(kvc_gguf_find(fx->g, "k.500"));
	assert_null(kvc_gguf_find(fx->g, "k."));
	assert_null(kvc_gguf_tensor(fx->g, "t.5000"));
}

/* ------------------------------------------------------------------ */
/* getters */

static void test_get_u32(void **state)
{
	struct fixture *fx = *state;
	static const uint32_t arr[] = { 1 };
	uint32_t u = 12345;

	gw_add_i8(fx->w, "i8.pos", 100);
	gw_add_i8(fx->w, "i8.neg", -1);
	gw_add_i16(fx->w, "i16.neg", -300);
	gw_add_i16(fx->w, "i16.pos", 300);
	gw_add_i32(fx->w, "i32.neg", -1);
	gw_add_i32(fx->w, "i32.max", INT32_MAX);
	gw_add_i64(fx->w, "i64.fits", 0xffffffffll);
	gw_add_i64(fx->w, "i64.big", 0x100000000ll);
	gw_add_i64(fx->w, "i64.neg", INT64_MIN);
	gw_add_u64(fx->w, "u64.fits", UINT32_MAX);
	gw_add_u64(fx->w, "u64.big", 1ull << 32);
	gw_add_bool(fx->w, "bool", true);
	gw_add_f32(fx->w, "f32", 1.0f);
	gw_add_str(fx->w, "str", "7");
	gw_add_arr(fx->w, "arr", KVC_GGUF_U32, arr, 1);
	finish_and_parse(fx);

	assert_int_equal(kvc_gguf_get_u32(fx->g, "i8.pos", &u), 0);
	EXPECT_U64(u, 100);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "i16.pos", &u), 0);
	EXPECT_U64(u, 300);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "i32.max", &u), 0);
	EXPECT_U64(u, INT32_MAX);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "i64.fits", &u), 0);
	EXPECT_U64(u, UINT32_MAX);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "u64.fits", &u), 0);
	EXPECT_U64(u, UINT32_MAX);

	u = 12345;
	assert_int_equal(kvc_gguf_get_u32(fx->g, "i8.neg", &u), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "i8.neg"));
	assert_int_equal(kvc_gguf_get_u32(fx->g, "i16.neg", &u), -EINVAL);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "i32.neg", &u), -EINVAL);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "i64.big", &u), -EINVAL);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "i64.neg", &u), -EINVAL);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "u64.big", &u), -EINVAL);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "bool", &u), -EINVAL);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "f32", &u), -EINVAL);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "str", &u), -EINVAL);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "arr", &u), -EINVAL);
	assert_int_equal(kvc_gguf_get_u32(fx->g, "absent", &u), -ENOENT);
	assert_non_null(strstr(kvc_last_error(), "absent"));
	EXPECT_U64(u, 12345);
}

static void test_get_f32_and_str(void **state)
{
	struct fixture *fx = *state;
	struct kvc_gguf_str s = { 0 };
	float f = 2.0f;

	gw_add_f64(fx->w, "f64.huge", 1e300);
	gw_add_f64(fx->w, "f64.inf", INFINITY);
	gw_add_f32(fx->w, "f32.neg", -3.5f);
	gw_add_u32(fx->w, "u32", 1);
	gw_add_str(fx->w, "empty", "");
	finish_and_parse(fx);

	assert_int_equal(kvc_gguf_get_f32(fx->g, "f32.neg", &f), 0);
	assert_true(f == -3.5f);
	assert_int_equal(kvc_gguf_get_f32(fx->g, "f64.inf", &f), 0);
	assert_true(isinf(f));
	assert_int_equal(kvc_gguf_get_f32(fx->g, "f64.huge", &f), -EINVAL);
	assert_int_equal(kvc_gguf_get_f32(fx->g, "u32", &f), -EINVAL);
	assert_int_equal(kvc_gguf_get_f32(fx->g, "empty", &f), -EINVAL);
	assert_int_equal(kvc_gguf_get_f32(fx->g, "none", &f), -ENOENT);

	assert_int_equal(kvc_gguf_get_str(fx->g, "empty", &s), 0);
	EXPECT_U64(s.len, 0);
	assert_int_equal(kvc_gguf_get_str(fx->g, "u32", &s), -EINVAL);
	assert_int_equal(kvc_gguf_get_str(fx->g, "none", &s), -ENOENT);
	assert_int_equal(kvc_gguf_get_str(NULL, "u32", &s), -EINVAL);
	assert_null(kvc_gguf_find(NULL, "u32"));
	assert_null(kvc_gguf_find(fx->g, NULL));
	assert_null(kvc_gguf_tensor(NULL, "u32"));
}

static void test_arr_str_refusals(void **state)
{
	struct fixture *fx = *state;
	static const uint32_t arr[] = { 1, 2 };
	struct kvc_gguf_kv copy;
	struct kvc_gguf_str s;
	const struct kvc_gguf_kv *kv;

	gw_add_arr(fx->w, "ints", KVC_GGUF_U32, arr, 2);
	gw_add_str(fx->w, "str", "x");
	gw_add_arr_str(fx->w, "strs", tokens, 2);
	finish_and_parse(fx);

	kv = kvc_gguf_find(fx->g, "ints");
	assert_int_equal(kvc_gguf_arr_str(fx->g, kv, 0, &s), -EINVAL);
	kv = kvc_gguf_find(fx->g, "str");
	assert_int_equal(kvc_gguf_arr_str(fx->g, kv, 0, &s), -EINVAL);
	kv = kvc_gguf_find(fx->g, "strs");
	assert_int_equal(kvc_gguf_arr_str(fx->g, kv, 1, &s), 0);
	assert_true(str_is(&s, tokens[1]));
	assert_int_equal(kvc_gguf_arr_str(fx->g, kv, UINT64_MAX, &s), -EINVAL);
	/* An entry not of this file is refused, not trusted. */
	copy = *kv;
	assert_int_equal(kvc_gguf_arr_str(fx->g, &copy, 0, &s), -EINVAL);
	assert_int_equal(kvc_gguf_arr_str(fx->g, NULL, 0, &s), -EINVAL);
	assert_int_equal(kvc_gguf_arr_str(NULL, kv, 0, &s), -EINVAL);
}

static void test_row_bytes(void **state)
{
	EXPECT_U64(kvc_ggml_row_bytes(KVC_GGML_F32, 10), 40);
	EXPECT_U64(kvc_ggml_row_bytes(KVC_GGML_F16, 10), 20);
	EXPECT_U64(kvc_ggml_row_bytes(KVC_GGML_Q4_0, 64), 36);
	EXPECT_U64(kvc_ggml_row_bytes(KVC_GGML_Q4_1, 64), 40);
	EXPECT_U64(kvc_ggml_row_bytes(KVC_GGML_Q8_0, 576), 18 * 34);
	EXPECT_U64(kvc_ggml_row_bytes(KVC_GGML_Q8_0, 33), 0);
	EXPECT_U64(kvc_ggml_row_bytes(KVC_GGML_Q4_0, 16), 0);
	EXPECT_U64(kvc_ggml_row_bytes(KVC_GGML_Q4_1, 31), 0);
	EXPECT_U64(kvc_ggml_row_bytes(KVC_GGML_F32, UINT64_MAX / 2), 0);
	EXPECT_U64(kvc_ggml_row_bytes(KVC_GGML_F16, UINT64_MAX), 0);
	EXPECT_U64(kvc_ggml_row_bytes(7, 32), 0);
	EXPECT_U64(kvc_ggml_row_bytes(99, 32), 0);
}

static void test_writer_refusals(void **state)
{
	struct fixture *fx = *state;
	uint64_t dims[2] = { 33, 1 };
	uint8_t *buf;
	size_t size;

	assert_int_equal(
		gw_add_tensor(fx->w, "q", KVC_GGML_Q8_0, 2, dims, NULL, 34),
		-EINVAL);
	/* Sticky: later calls and the finish report the first error. */
	assert_int_equal(gw_add_u32(fx->w, "x", 1), -EINVAL);
	assert_int_equal(gw_finish(fx->w, &buf, &size), -EINVAL);
	assert_null(buf);
	gw_free(fx->w);
	fx->w = gw_new();
	assert_int_equal(gw_set_alignment(fx->w, 48), -EINVAL);
	gw_free(fx->w);
	fx->w = gw_new();
	assert_int_equal(gw_add_arr(fx->w, "a", KVC_GGUF_STRING, NULL, 0),
			 -EINVAL);
}

/* ------------------------------------------------------------------ */
/* malformed files */

/* Every proper prefix of a valid file is refused, without a crash. */
static void test_truncated_everywhere(void **state)
{
	struct fixture *fx = *state;
	uint8_t *data[NR_CASES] = { 0 };
	uint64_t seed = 42;
	size_t n, i;

	add_everything(fx->w, data, &seed);
	assert_int_equal(gw_finish(fx->w, &fx->buf, &fx->size), 0);
	for (n = 0; n < fx->size; n++)
		expect_refused(fx->buf, n, NULL);
	for (i = 0; i < NR_CASES; i++)
		free(data[i]);

	/* Without tensors, the file may end right after its entries. */
	gw_free(fx->w);
	free(fx->buf);
	fx->w = gw_new();
	gw_add_arr_str(fx->w, "a", tokens, 5);
	gw_add_u64(fx->w, "b", 9);
	assert_int_equal(gw_finish(fx->w, &fx->buf, &fx->size), 0);
	for (n = 0; n < fx->size; n++)
		expect_refused(fx->buf, n, NULL);
	assert_int_equal(kvc_gguf_parse(fx->buf, fx->size, &fx->g), 0);
}

/* A one-byte change in each header field. */
static void test_bad_header(void **state)
{
	struct raw r;

	put_header(&r, 0, 0);
	expect_refused(r.b, 23, "too small");
	expect_refused(r.b, 0, "too small");
	r.b[3] = 'G';
	expect_refused(r.b, r.n, "magic at offset 0");
	r.b[3] = 'F';
	r.b[4] = 1;
	expect_refused(r.b, r.n, "version at offset 4");
	r.b[4] = 4;
	expect_refused(r.b, r.n, "version at offset 4");
	r.b[4] = 2;
	{
		struct kvc_gguf *g;

		assert_int_equal(kvc_gguf_parse(r.b, r.n, &g), 0);
		kvc_gguf_close(g);
	}
	assert_int_equal(kvc_gguf_parse(NULL, 0, NULL), -EINVAL);
}

static void test_huge_counts(void **state)
{
	struct raw r;

	put_header(&r, UINT64_MAX, 0);
	expect_refused(r.b, r.n, "tensor_count at offset 8");
	put_header(&r, 0, UINT64_MAX);
	expect_refused(r.b, r.n, "kv_count at offset 16");
	put_header(&r, 0, UINT64_MAX / 13);
	expect_refused(r.b, r.n, "kv_count at offset 16");
	/* Each alone could fit, both together cannot. */
	put_header(&r, 1, 2);
	put_kv_u32(&r, "a", 1);
	put_kv_u32(&r, "b", 1);
	expect_refused(r.b, r.n, "kv_count at offset 16");
	/* Counts that fit but entries that do not. */
	put_header(&r, 0, 2);
	put_kv_u32(&r, "a", 1);
	put(&r, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 18);
	expect_refused(r.b, r.n, "empty key");
}

static void test_bad_strings(void **state)
{
	struct raw r;
	size_t at;

	/* A key length past the end. */
	put_header(&r, 0, 1);
	put_u64(&r, 100);
	put(&r, "abcdefghijklmn", 14);
	expect_refused(r.b, r.n, "key at offset 24: length 100");
	put_header(&r, 0, 1);
	put_u64(&r, UINT64_MAX);
	put(&r, "abcdefghijklmn", 14);
	expect_refused(r.b, r.n, "key at offset 24");

	/* A string value's length past the end. */
	put_header(&r, 0, 1);
	put_str(&r, "k");
	put_u32(&r, KVC_GGUF_STRING);
	at = r.n;
	put_u64(&r, 6);
	put(&r, "abcde", 5);
	expect_refused(r.b, r.n, "string value at offset");
	r.b[at] = 5;
	{
		struct kvc_gguf *g;
		struct kvc_gguf_str s;

		assert_int_equal(kvc_gguf_parse(r.b, r.n, &g), 0);
		assert_int_equal(kvc_gguf_get_str(g, "k", &s), 0);
		assert_true(str_is(&s, "abcde"));
		kvc_gguf_close(g);
	}

	/* An array string's length past the end. */
	put_header(&r, 0, 1);
	put_str(&r, "k");
	put_u32(&r, KVC_GGUF_ARRAY);
	put_u32(&r, KVC_GGUF_STRING);
	put_u64(&r, 2);
	put_str(&r, "ab");
	put_u64(&r, 1000);
	put(&r, "xyz", 3);
	expect_refused(r.b, r.n, "array string at offset");

	/* A tensor name's length past the end. */
	put_header(&r, 1, 0);
	put_u64(&r, 1u << 20);
	put(&r, "abcdefghijklmnopqrstuvwxyz0123456789", 36);
	expect_refused(r.b, r.n, "tensor name at offset 24");
}

static void test_bad_values(void **state)
{
	struct raw r;

	/* Unknown value type. */
	put_header(&r, 0, 1);
	put_str(&r, "k");
	put_u32(&r, 13);
	put_u64(&r, 0);
	expect_refused(r.b, r.n, "unknown type 13");

	/* A bool neither 0 nor 1. */
	put_header(&r, 0, 1);
	put_str(&r, "k");
	put_u32(&r, KVC_GGUF_BOOL);
	put(&r, "\2\0\0\0\0\0\0\0\0\0\0\0\0\0", 14);
	expect_refused(r.b, r.n, "bool value");

	/* Nested arrays. */
	put_header(&r, 0, 1);
	put_str(&r, "k");
	put_u32(&r, KVC_GGUF_ARRAY);
	put_u32(&r, KVC_GGUF_ARRAY);
	put_u64(&r, 1);
	put_u32(&r, KVC_GGUF_U8);
	put_u64(&r, 1);
	put(&r, "\0", 1);
	expect_refused(r.b, r.n, "nested arrays");

	/* Unknown array element type. */
	put_header(&r, 0, 1);
	put_str(&r, "k");
	put_u32(&r, KVC_GGUF_ARRAY);
	put_u32(&r, 200);
	put_u64(&r, 0);
	expect_refused(r.b, r.n, "unknown type 200");

	/* Array counts past the end, and their byte size overflowing. */
	put_header(&r, 0, 1);
	put_str(&r, "k");
	put_u32(&r, KVC_GGUF_ARRAY);
	put_u32(&r, KVC_GGUF_U64);
	put_u64(&r, 1ull << 61);
	put_u64(&r, 0);
	expect_refused(r.b, r.n, "array count at offset 41");
	put_header(&r, 0, 1);
	put_str(&r, "k");
	put_u32(&r, KVC_GGUF_ARRAY);
	put_u32(&r, KVC_GGUF_STRING);
	put_u64(&r, 3);
	put_u64(&r, 0);
	put_u64(&r, 0);
	expect_refused(r.b, r.n, "strings cannot fit");

	/* Duplicate keys. */
	put_header(&r, 0, 3);
	put_kv_u32(&r, "a", 1);
	put_kv_u32(&r, "b", 1);
	put_kv_u32(&r, "a", 2);
	expect_refused(r.b, r.n, "duplicate key \"a\"");
	/* A prefix is not a duplicate. */
	put_header(&r, 0, 2);
	put_kv_u32(&r, "ab", 1);
	put_kv_u32(&r, "a", 2);
	{
		struct kvc_gguf *g;

		assert_int_equal(kvc_gguf_parse(r.b, r.n, &g), 0);
		kvc_gguf_close(g);
	}
}

static void test_bad_alignment(void **state)
{
	static const uint32_t bad[] = { 0, 3, 48, 0x80000001u };
	uint64_t dims[1] = { 8 };
	struct raw r;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put_header(&r, 0, 1);
		put_kv_u32(&r, "general.alignment", bad[i]);
		expect_refused(r.b, r.n, "not a nonzero power of two");
	}
	/* Of the wrong type. */
	put_header(&r, 0, 1);
	put_str(&r, "general.alignment");
	put_u32(&r, KVC_GGUF_U64);
	put_u64(&r, 32);
	expect_refused(r.b, r.n, "expected u32");

	/* An alignment the data section cannot reach. */
	put_header(&r, 1, 1);
	put_kv_u32(&r, "general.alignment", 1u << 30);
	put_tensor(&r, "t", 1, dims, KVC_GGML_F32, 0);
	put_data(&r, 1, 32);
	expect_refused(r.b, r.n, "data section at offset 1073741824");
}

static void test_bad_dims(void **state)
{
	uint64_t dims[5] = { 32, 2, 1, 1, 1 };
	uint64_t big[2] = { 1ull << 33, 1ull << 33 };
	uint64_t big_bytes[2] = { 1ull << 62, 1 };
	uint64_t zero[2] = { 32, 0 };
	struct raw r;

	put_header(&r, 1, 0);
	put_tensor(&r, "t", 0, dims, KVC_GGML_F32, 0);
	put_data(&r, 32, 256);
	expect_refused(r.b, r.n, "n_dims of tensor \"t\" at offset 33: 0");
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 5, dims, KVC_GGML_F32, 0);
	put_data(&r, 32, 256);
	expect_refused(r.b, r.n, "n_dims of tensor \"t\" at offset 33: 5");
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 2, big, KVC_GGML_F32, 0);
	put_data(&r, 32, 256);
	expect_refused(r.b, r.n, "element count overflows");
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 2, big_bytes, KVC_GGML_F32, 0);
	put_data(&r, 32, 256);
	expect_refused(r.b, r.n, "overflow the row size");
	big_bytes[0] = 1ull << 60;
	big_bytes[1] = 8;
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 2, big_bytes, KVC_GGML_F16, 0);
	put_data(&r, 32, 256);
	expect_refused(r.b, r.n, "byte size overflows");
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 2, zero, KVC_GGML_F32, 0);
	put_data(&r, 32, 256);
	expect_refused(r.b, r.n, "dims[1] of tensor \"t\"");
	/* Quantized rows must be whole blocks. */
	dims[0] = 48;
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 1, dims, KVC_GGML_Q8_0, 0);
	put_data(&r, 32, 256);
	expect_refused(r.b, r.n, "are not whole blocks");
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 1, dims, KVC_GGML_Q4_1, 0);
	put_data(&r, 32, 256);
	expect_refused(r.b, r.n, "are not whole blocks");
	/* Unknown ggml types, named with the tensor. */
	dims[0] = 32;
	put_header(&r, 1, 0);
	put_tensor(&r, "blk.0.w", 1, dims, 12, 0);
	put_data(&r, 32, 256);
	expect_refused(r.b, r.n,
		       "type of tensor \"blk.0.w\" at offset 51: "
		       "unknown ggml type 12");
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 1, dims, 4, 0);
	put_data(&r, 32, 256);
	expect_refused(r.b, r.n, "unknown ggml type 4");
}

static void test_bad_offsets(void **state)
{
	uint64_t dims[1] = { 8 }; /* 32 bytes of f32 */
	struct kvc_gguf *g;
	struct raw r;

	/* Misaligned. */
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 1, dims, KVC_GGML_F32, 16);
	put_data(&r, 32, 64);
	expect_refused(r.b, r.n, "not a multiple of the alignment 32");
	/* Past the end, by a byte, by far, and so far it wraps. */
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 1, dims, KVC_GGML_F32, 0);
	put_data(&r, 32, 31);
	expect_refused(r.b, r.n, "run past the end of the data section");
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 1, dims, KVC_GGML_F32, 1ull << 40);
	put_data(&r, 32, 32);
	expect_refused(r.b, r.n, "run past the end of the data section");
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 1, dims, KVC_GGML_F32, UINT64_MAX - 31);
	put_data(&r, 32, 32);
	expect_refused(r.b, r.n, "run past the end of the data section");
	/* Exactly at the end is fine. */
	put_header(&r, 1, 0);
	put_tensor(&r, "t", 1, dims, KVC_GGML_F32, 32);
	put_data(&r, 32, 64);
	assert_int_equal(kvc_gguf_parse(r.b, r.n, &g), 0);
	EXPECT_U64(g->tensors[0].data - r.b, 96);
	kvc_gguf_close(g);

	/* Overlapping, in either order; touching is fine. */
	dims[0] = 16; /* 64 bytes */
	put_header(&r, 2, 0);
	put_tensor(&r, "a", 1, dims, KVC_GGML_F32, 32);
	put_tensor(&r, "b", 1, dims, KVC_GGML_F32, 0);
	put_data(&r, 32, 128);
	expect_refused(r.b, r.n, "overlaps tensor \"b\"");
	put_header(&r, 2, 0);
	put_tensor(&r, "a", 1, dims, KVC_GGML_F32, 0);
	put_tensor(&r, "b", 1, dims, KVC_GGML_F32, 0);
	put_data(&r, 32, 128);
	expect_refused(r.b, r.n, "overlaps");
	put_header(&r, 2, 0);
	put_tensor(&r, "a", 1, dims, KVC_GGML_F32, 64);
	put_tensor(&r, "b", 1, dims, KVC_GGML_F32, 0);
	put_data(&r, 32, 128);
	assert_int_equal(kvc_gguf_parse(r.b, r.n, &g), 0);
	kvc_gguf_close(g);

	/* Duplicate tensor names. */
	put_header(&r, 2, 0);
	put_tensor(&r, "a", 1, dims, KVC_GGML_F32, 0);
	put_tensor(&r, "a", 1, dims, KVC_GGML_F32, 64);
	put_data(&r, 32, 128);
	expect_refused(r.b, r.n, "duplicate name \"a\"");
	/* An empty name. */
	put_header(&r, 1, 0);
	put_tensor(&r, "", 1, dims, KVC_GGML_F32, 0);
	put_data(&r, 32, 128);
	expect_refused(r.b, r.n, "empty name");
}

/* Every byte of a valid file flipped in turn: refused or parsed, never a crash. */
static void test_bit_flips(void **state)
{
	struct fixture *fx = *state;
	uint8_t *data[NR_CASES] = { 0 };
	uint64_t seed = 7;
	size_t n, i;

	gw_set_alignment(fx->w, 64);
	add_everything(fx->w, data, &seed);
	assert_int_equal(gw_finish(fx->w, &fx->buf, &fx->size), 0);
	for (n = 0; n < fx->size; n++) {
		static const uint8_t flips[] = { 0x01, 0x80, 0xff };
		uint8_t *copy = malloc(fx->size);

		assert_non_null(copy);
		for (i = 0; i < sizeof(flips); i++) {
			struct kvc_gguf *g;
			int err;

			memcpy(copy, fx->buf, fx->size);
			copy[n] ^= flips[i];
			err = kvc_gguf_parse(copy, fx->size, &g);
			assert_true(err == 0 || err == -EINVAL);
			if (!err)
				kvc_gguf_close(g);
			else
				assert_true(kvc_last_error()[0] != '\0');
		}
		free(copy);
	}
	for (i = 0; i < NR_CASES; i++)
		free(data[i]);
}

/* ------------------------------------------------------------------ */
/* kvc_gguf_open */

static void make_temp(struct fixture *fx)
{
	int fd;

	snprintf(fx->path, sizeof(fx->path), "/tmp/kvc-gguf-XXXXXX");
	fd = mkstemp(fx->path);
	assert_true(fd >= 0);
	close(fd);
}

static void test_open(void **state)
{
	struct fixture *fx = *state;
	uint8_t *data[NR_CASES] = { 0 };
	struct kvc_gguf *g = (void *)1;
	uint64_t seed = 3;
	size_t i;

	assert_int_equal(kvc_gguf_open("/nonexistent/model.gguf", &g), -ENOENT);
	assert_null(g);
	assert_non_null(strstr(kvc_last_error(), "/nonexistent/model.gguf"));

	/* Empty, tiny and malformed files name the path. */
	make_temp(fx);
	assert_int_equal(kvc_gguf_open(fx->path, &g), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), fx->path));
	assert_non_null(strstr(kvc_last_error(), "too small"));
	assert_int_equal(gw_set_version(fx->w, 9), 0);
	assert_int_equal(gw_write_file(fx->w, fx->path), 0);
	assert_int_equal(kvc_gguf_open(fx->path, &g), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), fx->path));
	assert_non_null(strstr(kvc_last_error(), "version"));
	assert_int_equal(kvc_gguf_open("/tmp", &g), -EINVAL);

	/* A real file, mapped. */
	gw_set_version(fx->w, 3);
	add_everything(fx->w, data, &seed);
	assert_int_equal(gw_write_file(fx->w, fx->path), 0);
	assert_int_equal(kvc_gguf_open(fx->path, &fx->g), 0);
	assert_non_null(fx->g->map);
	assert_ptr_equal(fx->g->data, fx->g->map);
	check_everything(fx, data);
	for (i = 0; i < NR_CASES; i++)
		free(data[i]);
	kvc_gguf_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip_v3_align32,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_v2_align64,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_align1, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_empty_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_many_entries, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_get_u32, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_f32_and_str, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_arr_str_refusals, setup,
						teardown),
		cmocka_unit_test(test_row_bytes),
		cmocka_unit_test_setup_teardown(test_writer_refusals, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_truncated_everywhere,
						setup, teardown),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_huge_counts),
		cmocka_unit_test(test_bad_strings),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_bad_alignment),
		cmocka_unit_test(test_bad_dims),
		cmocka_unit_test(test_bad_offsets),
		cmocka_unit_test_setup_teardown(test_bit_flips, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_open, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
