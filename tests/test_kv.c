/* Description: kvc_kv and kvc_seq: shape checks, block and chunk sizes, appends read back (f32, f16, ragged heads), all-or-nothing appends, ids, owner tags, truncate, slot copy, compaction of random histories against a model */
// SPDX-License-Identifier: MIT
/*
 * Tests of the paged KV cache, against include/kvc/kv.h and the runtime's
 * internal header (for the slot metadata, kvc_seq_truncate() and
 * kvc_slot_copy()). Caches run on the host backend with 64 KiB
 * granularity, so block memory is real memory the test can read.
 * kvc_kv_check() runs after every operation.
 *
 * A model keeps, for every (sequence, layer, head), the positions of the
 * KVs it holds in slot order. Every K and V element is a function of the
 * sequence's tag, the table, the position and the element index, chosen
 * to be exact in f16 too, so a read-back compares exactly.
 */
#include <errno.h>
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

#include <kvc/compact.h>
#include <kvc/kv.h>
#include <kvc/kvc.h>

#include "../kernels/half.h"
#include "../runtime/internal.h"
#include "backend.h"
#include "fake_driver.h"

#define GRAN (64ull << 10)

struct fixture {
	struct kvc_backend *be;
	struct kvc_kv *kv;
	struct kvc_kv_params params;
};

/* ------------------------------------------------------------------ */
/* helpers */

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(rng_next(s) % n);
}

static uint32_t nr_tables(const struct kvc_model_shape *s)
{
	return s->layers * s->kv_heads;
}

static struct kvc_pool_stats pool_stats(struct kvc_kv *kv)
{
	struct kvc_pool_stats st;

	kvc_pool_get_stats(kvc_kv_pool(kv), &st, NULL);
	return st;
}

/*
 * Element @d of K (@which 0) or V (1) of the KV at @pos in @table of the
 * sequence tagged @tag: a multiple of 1/16 in [-16, 16), exact in f16.
 */
static float kv_value(uint32_t tag, uint32_t table, uint32_t pos, uint32_t d,
		      uint32_t which)
{
	uint32_t h = tag * 2654435761u ^ table * 40503u ^ pos * 97u ^ d * 7u ^
		     which * 0x9e37u;

	h ^= h >> 13;
	h *= 0x5bd1e995u;
	h ^= h >> 15;
	return (float)((int32_t)(h % 512) - 256) / 16.0f;
}

/* K and V of @n tokens at positions @first.., laid out as append wants. */
static void make_tokens(const struct kvc_model_shape *s, uint32_t tag,
			uint32_t first, uint32_t n, float **k, float **v)
{
	uint64_t count = (uint64_t)nr_tables(s) * n * s->head_dim;
	uint32_t t, i, d;

	*k = malloc((count ? count : 1) * sizeof(float));
	*v = malloc((count ? count : 1) * sizeof(float));
	assert_non_null(*k);
	assert_non_null(*v);
	for (t = 0; t < nr_tables(s); t++)
		for (i = 0; i < n; i++)
			for (d = 0; d < s->head_dim; d++) {
				uint64_t at =
					((uint64_t)t * n + i) * s->head_dim + d;

				(*k)[at] = kv_value(tag, t, first + i, d, 0);
				(*v)[at] = kv_value(tag, t, first + i, d, 1);
			}
}

static float load_elem(const struct kvc_model_shape *s, const uint8_t *row,
		       uint32_t d)
{
	uint16_t h;
	float f;

	if (s->dtype == KVC_DTYPE_F16) {
		memcpy(&h, row + 2 * d, sizeof(h));
		return kvc_f16_to_f32(h);
	}
	memcpy(&f, row + 4 * d, sizeof(f));
	return f;
}

/*
 * KV @i of (@layer, @head): K and V as floats (either may be NULL) and its
 * metadata. Block addresses come from the pool's public rule.
 */
static void read_kv(struct kvc_kv *kv, const struct kvc_seq *seq,
		    uint32_t layer, uint32_t head, uint32_t i, float *k,
		    float *v, struct kvc_slot_meta *meta)
{
	const struct kvc_model_shape *s = kvc_kv_shape(kv);
	uint32_t nr, bs = s->block_size, esz, d;
	const uint32_t *table = kvc_seq_table(seq, layer, head, &nr);
	uint64_t addr = 0;
	const uint8_t *block;
	int err;

	assert_true(i < kvc_seq_len(seq, layer, head));
	assert_true(i / bs < nr);
	err = kvc_pool_block_addr(kvc_kv_pool(kv), table[i / bs], &addr);
	if (err)
		fail_msg("kvc_pool_block_addr(%u) = %d: %s", table[i / bs], err,
			 kvc_last_error());
	esz = s->dtype == KVC_DTYPE_F16 ? 2 : 4;
	block = (const uint8_t *)(uintptr_t)addr;
	for (d = 0; d < s->head_dim; d++) {
		if (k)
			k[d] = load_elem(
				s, block + (i % bs) * s->head_dim * esz, d);
		if (v)
			v[d] = load_elem(
				s, block + (bs + i % bs) * s->head_dim * esz,
				d);
	}
	if (meta)
		*meta = kv->meta[(uint64_t)table[i / bs] * bs + i % bs];
}

/* ------------------------------------------------------------------ */
/* the model */

struct model_table {
	uint32_t *pos;
	uint32_t len;
	uint32_t cap;
};

struct model_seq {
	struct kvc_seq *seq;
	uint32_t tag;
	uint32_t tokens;
	struct model_table *tables;
};

static void model_init(struct model_seq *m, struct kvc_kv *kv, uint32_t tag)
{
	int err;

	memset(m, 0, sizeof(*m));
	err = kvc_seq_create(kv, &m->seq);
	if (err)
		fail_msg("kvc_seq_create() = %d: %s", err, kvc_last_error());
	KV_CHECK(kv);
	m->tag = tag;
	m->tables = calloc(nr_tables(kvc_kv_shape(kv)), sizeof(*m->tables));
	assert_non_null(m->tables);
}

static void model_fini(struct model_seq *m, struct kvc_kv *kv)
{
	uint32_t t;

	if (!m->tables)
		return;
	for (t = 0; t < nr_tables(kvc_kv_shape(kv)); t++)
		free(m->tables[t].pos);
	free(m->tables);
	m->tables = NULL;
}

static void model_push(struct model_table *mt, uint32_t pos)
{
	if (mt->len == mt->cap) {
		mt->cap = mt->cap ? mt->cap * 2 : 16;
		mt->pos = realloc(mt->pos, mt->cap * sizeof(*mt->pos));
		assert_non_null(mt->pos);
	}
	mt->pos[mt->len++] = pos;
}

#define APPEND_OK(kv, m, n) append_ok(kv, m, n, __FILE__, __LINE__)

static void append_ok(struct kvc_kv *kv, struct model_seq *m, uint32_t n,
		      const char *file, int line)
{
	const struct kvc_model_shape *s = kvc_kv_shape(kv);
	float *k, *v;
	uint32_t t, i;
	int err;

	make_tokens(s, m->tag, m->tokens, n, &k, &v);
	err = kvc_seq_append(m->seq, n, k, v);
	free(k);
	free(v);
	if (err)
		fail_msg("%s:%d: kvc_seq_append(%u) = %d, expected 0: %s", file,
			 line, n, err, kvc_last_error());
	check_kv_at(kv, file, line);
	for (t = 0; t < nr_tables(s); t++)
		for (i = 0; i < n; i++)
			model_push(&m->tables[t], m->tokens + i);
	m->tokens += n;
}

#define TRUNCATE_OK(kv, m, layer, head, len) \
	truncate_ok(kv, m, layer, head, len, __FILE__, __LINE__)

static void truncate_ok(struct kvc_kv *kv, struct model_seq *m, uint32_t layer,
			uint32_t head, uint32_t len, const char *file, int line)
{
	int err = kvc_seq_truncate(m->seq, layer, head, len);

	if (err)
		fail_msg("%s:%d: kvc_seq_truncate(%u, %u, %u) = %d: %s", file,
			 line, layer, head, len, err, kvc_last_error());
	check_kv_at(kv, file, line);
	m->tables[layer * kvc_kv_shape(kv)->kv_heads + head].len = len;
}

#define EXPECT_MODEL(kv, m) expect_model(kv, m, __FILE__, __LINE__)

/* Every table holds what the model says, K, V and position. */
static void expect_model(struct kvc_kv *kv, const struct model_seq *m,
			 const char *file, int line)
{
	const struct kvc_model_shape *s = kvc_kv_shape(kv);
	float k[256], v[256];
	struct kvc_slot_meta meta;
	uint32_t layer, head, i, d, nr;

	if (kvc_seq_tokens(m->seq) != m->tokens)
		fail_msg("%s:%d: seq %u has %u tokens, expected %u", file, line,
			 m->seq->id, kvc_seq_tokens(m->seq), m->tokens);
	for (layer = 0; layer < s->layers; layer++) {
		for (head = 0; head < s->kv_heads; head++) {
			uint32_t t = layer * s->kv_heads + head;
			const struct model_table *mt = &m->tables[t];

			if (kvc_seq_len(m->seq, layer, head) != mt->len)
				fail_msg(
					"%s:%d: seq %u layer %u head %u: length %u, expected %u",
					file, line, m->seq->id, layer, head,
					kvc_seq_len(m->seq, layer, head),
					mt->len);
			kvc_seq_table(m->seq, layer, head, &nr);
			if (nr != (mt->len + s->block_size - 1) / s->block_size)
				fail_msg(
					"%s:%d: seq %u table %u: %u blocks for %u KVs",
					file, line, m->seq->id, t, nr, mt->len);
			for (i = 0; i < mt->len; i++) {
				read_kv(kv, m->seq, layer, head, i, k, v,
					&meta);
				if (meta.pos != (int32_t)mt->pos[i])
					fail_msg(
						"%s:%d: seq %u table %u KV %u: position %d, expected %u",
						file, line, m->seq->id, t, i,
						meta.pos, mt->pos[i]);
				for (d = 0; d < s->head_dim; d++) {
					float wk = kv_value(m->tag, t,
							    mt->pos[i], d, 0);
					float wv = kv_value(m->tag, t,
							    mt->pos[i], d, 1);

					if (k[d] != wk || v[d] != wv)
						fail_msg(
							"%s:%d: seq %u table %u KV %u (pos %u) dim %u: K %g V %g, expected %g %g",
							file, line, m->seq->id,
							t, i, mt->pos[i], d,
							k[d], v[d], wk, wv);
				}
			}
		}
	}
}

/* ------------------------------------------------------------------ */
/* fixtures */

static const struct kvc_model_shape small_shape = {
	.layers = 2,
	.q_heads = 4,
	.kv_heads = 2,
	.head_dim = 64,
	.block_size = 8,
	.dtype = KVC_DTYPE_F32,
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
	fx->params.shape = small_shape;
	fx->params.capacity_blocks = 256;
	fx->params.backend_kind = KVC_BACKEND_HOST;
	fx->params.backend = fx->be;
	fx->params.empty_chunks_kept = 0;
	fx->params.flags = KVC_POOL_NO_STATS_PAGE;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	kvc_kv_destroy(fx->kv);
	kvc_backend_close(fx->be);
	free(fx);
	return 0;
}

static struct kvc_kv *kv_open(struct fixture *fx)
{
	int err;

	assert_null(fx->kv);
	err = kvc_kv_create(&fx->params, &fx->kv);
	if (err)
		fail_msg("kvc_kv_create() = %d, expected 0: %s", err,
			 kvc_last_error());
	assert_non_null(fx->kv);
	KV_CHECK(fx->kv);
	return fx->kv;
}

static void kv_close(struct fixture *fx)
{
	kvc_kv_destroy(fx->kv);
	fx->kv = NULL;
}

/* ------------------------------------------------------------------ */
/* shapes and sizes */

static void expect_shape_err(const struct kvc_model_shape *s, const char *word,
			     int line)
{
	int err = kvc_model_shape_check(s);

	if (err != -EINVAL)
		fail_msg(
			"line %d: kvc_model_shape_check() = %d, expected -EINVAL",
			line, err);
	if (!strstr(kvc_last_error(), word))
		fail_msg("line %d: message '%s' does not name '%s'", line,
			 kvc_last_error(), word);
}

#define SHAPE_ERR(field, value, word)                    \
	do {                                             \
		struct kvc_model_shape s_ = small_shape; \
		s_.field = value;                        \
		expect_shape_err(&s_, word, __LINE__);   \
	} while (0)

/* Storage types by name, both ways; a bad name is refused. */
static void test_dtype_names(void **state)
{
	enum kvc_dtype d;
	uint32_t i;

	(void)state;
	for (i = KVC_DTYPE_F32; i <= KVC_DTYPE_BF16; i++) {
		assert_int_equal(
			kvc_dtype_parse(kvc_dtype_name((enum kvc_dtype)i), &d),
			0);
		EXPECT_U64(d, i);
	}
	assert_string_equal(kvc_dtype_name(KVC_DTYPE_BF16), "bf16");
	assert_string_equal(kvc_dtype_name((enum kvc_dtype)3), "?");
	assert_int_equal(kvc_dtype_parse("f8", &d), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "'f8'"));
	assert_int_equal(kvc_dtype_parse(NULL, &d), -EINVAL);
	assert_int_equal(kvc_dtype_parse("f16", NULL), -EINVAL);
}

static void test_shape_check(void **state)
{
	static const uint32_t dims[] = { 64, 80, 96, 128, 256 };
	static const uint32_t sizes[] = { 8, 16, 32 };
	struct kvc_model_shape s = small_shape;
	uint32_t i, j, dt;

	(void)state;
	for (i = 0; i < 5; i++)
		for (j = 0; j < 3; j++)
			for (dt = 0; dt < 2; dt++) {
				s.head_dim = dims[i];
				s.block_size = sizes[j];
				s.dtype = (enum kvc_dtype)dt;
				assert_int_equal(kvc_model_shape_check(&s), 0);
			}
	assert_int_equal(kvc_model_shape_check(NULL), -EINVAL);
	SHAPE_ERR(layers, 0, "layers");
	SHAPE_ERR(kv_heads, 0, "kv_heads");
	SHAPE_ERR(q_heads, 0, "q_heads");
	SHAPE_ERR(q_heads, 3, "q_heads");
	SHAPE_ERR(head_dim, 0, "head_dim");
	SHAPE_ERR(head_dim, 100, "head_dim");
	SHAPE_ERR(head_dim, 512, "head_dim");
	SHAPE_ERR(head_dim, 32, "head_dim");
	SHAPE_ERR(block_size, 0, "block_size");
	SHAPE_ERR(block_size, 4, "block_size");
	SHAPE_ERR(block_size, 12, "block_size");
	SHAPE_ERR(block_size, 64, "block_size");
	SHAPE_ERR(dtype, (enum kvc_dtype)3, "dtype");
	/* Owner tags have 20 bits for the table. */
	s = small_shape;
	s.layers = 1u << 11;
	s.kv_heads = 1u << 10;
	s.q_heads = s.kv_heads;
	expect_shape_err(&s, "tables", __LINE__);
	s.kv_heads = 1u << 9;
	s.q_heads = 8u << 9; /* GQA 8 */
	assert_int_equal(kvc_model_shape_check(&s), 0);
}

static void test_create_invalid(void **state)
{
	struct fixture *fx = *state;
	const struct kvc_fake_config no_kernels = { .granularity = 2u << 20,
						    .devices = 1,
						    .no_kernels = true };
	struct kvc_backend *big, *cuda;
	struct kvc_kv *kv = NULL;

	assert_int_equal(kvc_kv_create(NULL, &kv), -EINVAL);
	assert_int_equal(kvc_kv_create(&fx->params, NULL), -EINVAL);
	fx->params.capacity_blocks = 0;
	assert_int_equal(kvc_kv_create(&fx->params, &kv), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "capacity"));
	fx->params.capacity_blocks = 64;
	fx->params.shape.head_dim = 72;
	assert_int_equal(kvc_kv_create(&fx->params, &kv), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "head_dim"));
	fx->params.shape = small_shape;
	/* Capacity beyond 2^32 blocks: the pool refuses. */
	fx->params.capacity_blocks = 1ull << 33;
	assert_int_equal(kvc_kv_create(&fx->params, &kv), -EINVAL);
	fx->params.capacity_blocks = 64;
	assert_null(kv);

	/* 2 KiB blocks in 1 GiB granules: 2^19 blocks per chunk. */
	assert_int_equal(kvc_backend_open_host(1ull << 30, &big), 0);
	fx->params.backend = big;
	fx->params.shape.dtype = KVC_DTYPE_F16;
	assert_int_equal(kvc_kv_create(&fx->params, &kv), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "blocks per chunk"));
	kvc_backend_close(big);

	/* A cuda backend without kernels cannot run the cache: refused. */
	assert_non_null(kvc_fake_driver(&no_kernels));
	assert_int_equal(kvc_backend_open_cuda_driver(
				 kvc_fake_driver(&no_kernels), 0, &cuda),
			 0);
	fx->params.backend = cuda;
	assert_int_equal(kvc_kv_create(&fx->params, &kv), -EOPNOTSUPP);
	assert_non_null(strstr(kvc_last_error(), "host backend"));
	assert_null(kv);
	kvc_backend_close(cuda);
	assert_non_null(kvc_fake_driver(NULL)); /* nothing left behind */
	fx->params.backend = fx->be;
	kv_open(fx);
}

struct size_case {
	uint32_t head_dim;
	uint32_t block_size;
	enum kvc_dtype dtype;
	uint64_t block_bytes;
	uint64_t chunk_bytes;
};

static void test_block_and_chunk_sizes(void **state)
{
	/* Chunks are the smallest multiple of 64 KiB that blocks fill. */
	static const struct size_case cases[] = {
		{ 64, 8, KVC_DTYPE_F32, 4096, 64 << 10 },
		{ 128, 16, KVC_DTYPE_F16, 8192, 64 << 10 },
		{ 256, 32, KVC_DTYPE_F32, 65536, 64 << 10 },
		{ 80, 16, KVC_DTYPE_F16, 5120, 320 << 10 },
		{ 80, 8, KVC_DTYPE_F32, 5120, 320 << 10 },
		{ 80, 32, KVC_DTYPE_F32, 20480, 320 << 10 },
		{ 96, 16, KVC_DTYPE_F32, 12288, 192 << 10 },
		{ 96, 8, KVC_DTYPE_F16, 3072, 192 << 10 },
		{ 96, 32, KVC_DTYPE_F16, 12288, 192 << 10 },
	};
	struct fixture *fx = *state;
	struct kvc_pool_stats st;
	struct kvc_kv *kv;
	uint32_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct size_case *c = &cases[i];

		fx->params.shape.head_dim = c->head_dim;
		fx->params.shape.block_size = c->block_size;
		fx->params.shape.dtype = c->dtype;
		fx->params.capacity_blocks = 100;
		EXPECT_U64(kvc_kv_block_bytes(&fx->params.shape),
			   c->block_bytes);
		kv = kv_open(fx);
		st = pool_stats(kv);
		EXPECT_U64(st.block_bytes, c->block_bytes);
		EXPECT_U64(st.chunk_bytes, c->chunk_bytes);
		EXPECT_U64(st.blocks_per_chunk,
			   c->chunk_bytes / c->block_bytes);
		assert_true(st.blocks_total >= 100);
		EXPECT_U64(st.blocks_total % st.blocks_per_chunk, 0);
		EXPECT_U64(kv->capacity_blocks, st.blocks_total);
		EXPECT_U64(kv->meta_bytes,
			   st.blocks_total * c->block_size *
				   sizeof(struct kvc_slot_meta));
		assert_memory_equal(kvc_kv_shape(kv), &fx->params.shape,
				    sizeof(fx->params.shape));
		kv_close(fx);
	}

	/* 2 MiB granules, and a backend the cache opens and closes itself. */
	fx->params.backend = NULL;
	fx->params.backend_kind = KVC_BACKEND_HOST;
	fx->params.shape.head_dim = 80;
	fx->params.shape.block_size = 8;
	fx->params.shape.dtype = KVC_DTYPE_F16;
	kv = kv_open(fx);
	st = pool_stats(kv);
	EXPECT_U64(st.block_bytes, 2560);
	EXPECT_U64(st.chunk_bytes, 10ull << 20); /* 5 x 2 MiB */
	EXPECT_U64(st.blocks_per_chunk, 4096);
	assert_non_null(kv->own_backend);
	assert_string_equal(kvc_backend_name(kvc_pool_backend(kvc_kv_pool(kv))),
			    "host");
}

/* ------------------------------------------------------------------ */
/* appends */

static void test_append_read_back_f32(void **state)
{
	static const uint32_t steps[] = { 1, 7, 8, 13, 40, 1, 2 };
	struct fixture *fx = *state;
	struct model_seq m;
	struct kvc_kv *kv;
	uint32_t i;

	fx->params.shape.head_dim = 80;
	kv = kv_open(fx);
	model_init(&m, kv, 1);
	EXPECT_MODEL(kv, &m);
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		APPEND_OK(kv, &m, steps[i]);
		EXPECT_MODEL(kv, &m);
	}
	EXPECT_U64(pool_stats(kv).blocks_live, 4 * ((72 + 7) / 8));
	/* n = 0 is nothing. */
	assert_int_equal(kvc_seq_append(m.seq, 0, NULL, NULL), 0);
	KV_CHECK(kv);
	EXPECT_MODEL(kv, &m);
	model_fini(&m, kv);
}

/* f16 keeps each value to half precision: within 2^-11 relative. */
static void test_append_read_back_f16(void **state)
{
	struct fixture *fx = *state;
	const struct kvc_model_shape *s;
	uint32_t n = 21, t, i, d, total, layer, head;
	uint64_t rng = 42;
	struct kvc_slot_meta meta;
	struct kvc_seq *seq;
	float *k, *v, got_k[256], got_v[256];
	struct kvc_kv *kv;

	fx->params.shape.head_dim = 96;
	fx->params.shape.block_size = 16;
	fx->params.shape.dtype = KVC_DTYPE_F16;
	kv = kv_open(fx);
	s = kvc_kv_shape(kv);
	assert_int_equal(kvc_seq_create(kv, &seq), 0);
	total = nr_tables(s) * n * s->head_dim;
	k = malloc(total * sizeof(*k));
	v = malloc(total * sizeof(*v));
	assert_non_null(k);
	assert_non_null(v);
	for (i = 0; i < total; i++) {
		k[i] = (float)((double)(rng_next(&rng) >> 11) / 0x1p53 * 8 - 4);
		v[i] = (float)((double)(rng_next(&rng) >> 11) / 0x1p53 * 2e-3);
	}
	/* Twice the same tokens: the second lands across a block boundary. */
	assert_int_equal(kvc_seq_append(seq, n, k, v), 0);
	KV_CHECK(kv);
	assert_int_equal(kvc_seq_append(seq, n, k, v), 0);
	KV_CHECK(kv);
	for (layer = 0; layer < s->layers; layer++) {
		for (head = 0; head < s->kv_heads; head++) {
			t = layer * s->kv_heads + head;
			assert_int_equal(kvc_seq_len(seq, layer, head), 2 * n);
			for (i = 0; i < 2 * n; i++) {
				read_kv(kv, seq, layer, head, i, got_k, got_v,
					&meta);
				assert_int_equal(meta.pos, i);
				assert_true(meta.metric == 0);
				for (d = 0; d < s->head_dim; d++) {
					uint64_t at =
						((uint64_t)t * n + i % n) *
							s->head_dim +
						d;
					float wk = k[at], wv = v[at];

					if (fabsf(got_k[d] - wk) >
						    fabsf(wk) * 0x1p-11f +
							    0x1p-25f ||
					    fabsf(got_v[d] - wv) >
						    fabsf(wv) * 0x1p-11f +
							    0x1p-25f)
						fail_msg(
							"table %u KV %u dim %u: %g %g, expected %g %g",
							t, i, d, got_k[d],
							got_v[d], wk, wv);
					assert_true(
						got_k[d] ==
						kvc_f16_to_f32(
							kvc_f32_to_f16(wk)));
				}
			}
		}
	}
	free(k);
	free(v);
	kvc_seq_destroy(seq);
	KV_CHECK(kv);
}

/* Heads of different lengths append at their own ends. */
static void test_ragged_heads(void **state)
{
	struct fixture *fx = *state;
	struct model_seq m;
	struct kvc_kv *kv;

	fx->params.shape.head_dim = 96;
	fx->params.shape.layers = 3;
	kv = kv_open(fx);
	model_init(&m, kv, 7);
	APPEND_OK(kv, &m, 20);
	TRUNCATE_OK(kv, &m, 0, 0, 0);
	TRUNCATE_OK(kv, &m, 0, 1, 5);
	TRUNCATE_OK(kv, &m, 1, 0, 8);
	TRUNCATE_OK(kv, &m, 1, 1, 17);
	/* layer 2: head 0 keeps 20, head 1 goes to 16 */
	TRUNCATE_OK(kv, &m, 2, 1, 16);
	EXPECT_U64(pool_stats(kv).blocks_live, 0 + 1 + 1 + 3 + 3 + 2);
	EXPECT_MODEL(kv, &m);
	APPEND_OK(kv, &m, 11);
	EXPECT_MODEL(kv, &m);
	assert_int_equal(kvc_seq_len(m.seq, 0, 0), 11);
	assert_int_equal(kvc_seq_len(m.seq, 0, 1), 16);
	assert_int_equal(kvc_seq_len(m.seq, 1, 1), 28);
	assert_int_equal(kvc_seq_len(m.seq, 2, 0), 31);
	assert_int_equal(kvc_seq_tokens(m.seq), 31);
	EXPECT_U64(pool_stats(kv).blocks_live, 2 + 2 + 3 + 4 + 4 + 4);
	APPEND_OK(kv, &m, 1);
	EXPECT_MODEL(kv, &m);
	model_fini(&m, kv);
}

/* Bytes of every block @m holds, and the metadata of their slots. */
static uint8_t *snapshot(struct kvc_kv *kv, const struct model_seq *m,
			 size_t *size)
{
	const struct kvc_model_shape *s = kvc_kv_shape(kv);
	uint64_t bb = kvc_kv_block_bytes(s), addr;
	size_t used = 0, cap = 1 << 20;
	uint8_t *buf = malloc(cap);
	uint32_t layer, head, nr, i;

	assert_non_null(buf);
	for (layer = 0; layer < s->layers; layer++) {
		for (head = 0; head < s->kv_heads; head++) {
			const uint32_t *tbl =
				kvc_seq_table(m->seq, layer, head, &nr);

			for (i = 0; i < nr; i++) {
				size_t mb = s->block_size *
					    sizeof(struct kvc_slot_meta);

				assert_true(used + bb + mb <= cap);
				assert_int_equal(
					kvc_pool_block_addr(kvc_kv_pool(kv),
							    tbl[i], &addr),
					0);
				memcpy(buf + used, (void *)(uintptr_t)addr, bb);
				used += bb;
				memcpy(buf + used,
				       &kv->meta[(uint64_t)tbl[i] *
						 s->block_size],
				       mb);
				used += mb;
			}
		}
	}
	*size = used;
	return buf;
}

static void test_append_all_or_nothing(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats before, after;
	uint8_t *snap0, *snap1;
	size_t size0, size1;
	struct model_seq m;
	struct kvc_kv *kv;
	float *k, *v;

	/* 4 KiB blocks, one 64 KiB chunk: 16 blocks for 4 tables. */
	fx->params.capacity_blocks = 16;
	kv = kv_open(fx);
	EXPECT_U64(pool_stats(kv).blocks_total, 16);
	model_init(&m, kv, 3);
	APPEND_OK(kv, &m,
		  20); /* 3 blocks a table, slots 4..7 of the last free */
	before = pool_stats(kv);
	snap0 = snapshot(kv, &m, &size0);

	/* 20 -> 33 needs 2 more blocks a table, 8 in all: 4 are free. */
	make_tokens(kvc_kv_shape(kv), m.tag, m.tokens, 13, &k, &v);
	assert_int_equal(kvc_seq_append(m.seq, 13, k, v), -ENOMEM);
	assert_true(kvc_last_error()[0] != '\0');
	KV_CHECK(kv);
	free(k);
	free(v);
	after = pool_stats(kv);
	EXPECT_U64(after.blocks_live, before.blocks_live);
	EXPECT_U64(after.bytes_mapped, before.bytes_mapped);
	snap1 = snapshot(kv, &m, &size1);
	assert_int_equal(size0, size1);
	assert_memory_equal(snap0, snap1, size0);
	free(snap1);
	EXPECT_MODEL(kv, &m);

	/* Bad arguments write nothing either. */
	make_tokens(kvc_kv_shape(kv), m.tag, m.tokens, 4, &k, &v);
	assert_int_equal(kvc_seq_append(m.seq, 4, NULL, v), -EINVAL);
	assert_int_equal(kvc_seq_append(m.seq, 4, k, NULL), -EINVAL);
	assert_int_equal(kvc_seq_append(NULL, 4, k, v), -EINVAL);
	free(k);
	free(v);
	KV_CHECK(kv);
	snap1 = snapshot(kv, &m, &size1);
	assert_memory_equal(snap0, snap1, size0);
	free(snap1);
	free(snap0);
	EXPECT_MODEL(kv, &m);

	/* 20 -> 32 needs one a table: exactly what is left. */
	APPEND_OK(kv, &m, 12);
	EXPECT_MODEL(kv, &m);
	EXPECT_U64(pool_stats(kv).blocks_live, 16);
	/* Positions are int32: past 2^31 - 1 tokens an append is refused. */
	make_tokens(kvc_kv_shape(kv), m.tag, m.tokens, 5, &k, &v);
	m.seq->tokens = INT32_MAX - 2;
	assert_int_equal(kvc_seq_append(m.seq, 5, k, v), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "positions"));
	m.seq->tokens = m.tokens;
	free(k);
	free(v);
	KV_CHECK(kv);
	EXPECT_MODEL(kv, &m);
	/* Full: even one token fails, and a later free makes room. */
	make_tokens(kvc_kv_shape(kv), m.tag, m.tokens, 1, &k, &v);
	assert_int_equal(kvc_seq_append(m.seq, 1, k, v), -ENOMEM);
	free(k);
	free(v);
	KV_CHECK(kv);
	EXPECT_MODEL(kv, &m);
	TRUNCATE_OK(kv, &m, 0, 0, 3);
	TRUNCATE_OK(kv, &m, 0, 1, 3);
	TRUNCATE_OK(kv, &m, 1, 0, 3);
	TRUNCATE_OK(kv, &m, 1, 1, 3);
	APPEND_OK(kv, &m, 1);
	EXPECT_MODEL(kv, &m);
	model_fini(&m, kv);
}

/* ------------------------------------------------------------------ */
/* sequences */

static void test_seq_ids(void **state)
{
	struct fixture *fx = *state;
	struct kvc_seq *seqs[40], *s;
	struct kvc_kv *kv = kv_open(fx);
	uint32_t i;

	assert_int_equal(kvc_seq_create(NULL, &s), -EINVAL);
	assert_int_equal(kvc_seq_create(kv, NULL), -EINVAL);
	for (i = 0; i < 40; i++) {
		assert_int_equal(kvc_seq_create(kv, &seqs[i]), 0);
		assert_int_equal(seqs[i]->id, i);
		KV_CHECK(kv);
	}
	assert_int_equal(kv->nr_seqs, 40);
	kvc_seq_destroy(seqs[1]);
	KV_CHECK(kv);
	kvc_seq_destroy(seqs[30]);
	KV_CHECK(kv);
	kvc_seq_destroy(seqs[0]);
	KV_CHECK(kv);
	/* The lowest free id comes back first. */
	assert_int_equal(kvc_seq_create(kv, &seqs[0]), 0);
	assert_int_equal(seqs[0]->id, 0);
	assert_int_equal(kvc_seq_create(kv, &seqs[1]), 0);
	assert_int_equal(seqs[1]->id, 1);
	assert_int_equal(kvc_seq_create(kv, &seqs[30]), 0);
	assert_int_equal(seqs[30]->id, 30);
	assert_int_equal(kvc_seq_create(kv, &s), 0);
	assert_int_equal(s->id, 40);
	KV_CHECK(kv);
	kvc_seq_destroy(s);
	kvc_seq_destroy(NULL);
	for (i = 0; i < 40; i++)
		kvc_seq_destroy(seqs[i]);
	KV_CHECK(kv);
	assert_int_equal(kv->nr_seqs, 0);
	assert_int_equal(kvc_seq_create(kv, &s), 0);
	assert_int_equal(s->id, 0);
	/* Left for kvc_kv_destroy(). */
}

static void test_destroy_frees_everything(void **state)
{
	struct fixture *fx = *state;
	struct model_seq m[5];
	struct kvc_kv *kv = kv_open(fx);
	uint32_t i;

	for (i = 0; i < 5; i++) {
		model_init(&m[i], kv, 100 + i);
		APPEND_OK(kv, &m[i], 3 + 9 * i);
	}
	assert_true(pool_stats(kv).blocks_live > 0);
	for (i = 0; i < 5; i += 2) {
		kvc_seq_destroy(m[i].seq);
		KV_CHECK(kv);
		model_fini(&m[i], kv);
	}
	EXPECT_MODEL(kv, &m[1]);
	EXPECT_MODEL(kv, &m[3]);
	kvc_seq_destroy(m[1].seq);
	kvc_seq_destroy(m[3].seq);
	KV_CHECK(kv);
	model_fini(&m[1], kv);
	model_fini(&m[3], kv);
	EXPECT_U64(pool_stats(kv).blocks_live, 0);
	EXPECT_U64(pool_stats(kv).chunks_mapped, 0); /* watermark 0 */

	/* A cache destroyed with live sequences frees them too (ASan). */
	for (i = 0; i < 3; i++) {
		model_init(&m[i], kv, 200 + i);
		APPEND_OK(kv, &m[i], 17);
		model_fini(&m[i], kv);
	}
	kv_close(fx);
	kvc_kv_destroy(NULL);
}

/* kvc_seq_restore(): blocks for given lengths, owned; bad lengths refused. */
static void test_restore(void **state)
{
	struct fixture *fx = *state;
	const struct kvc_model_shape *s;
	struct kvc_pool_stats before, after;
	uint32_t lens[64], t, nr, bs, tables;
	struct kvc_seq *seq = NULL;
	uint64_t owner;
	struct kvc_kv *kv;

	kv = kv_open(fx);
	s = kvc_kv_shape(kv);
	bs = s->block_size;
	tables = s->layers * s->kv_heads;
	assert_true(tables <= 64);
	for (t = 0; t < tables; t++)
		lens[t] = t % 3 ? 1 + t * 5 : 0;
	assert_int_equal(kvc_seq_restore(kv, 200, lens, &seq), 0);
	EXPECT_U64(kvc_seq_tokens(seq), 200);
	for (t = 0; t < tables; t++) {
		const uint32_t *tbl = kvc_seq_table(seq, t / s->kv_heads,
						    t % s->kv_heads, &nr);

		EXPECT_U64(kvc_seq_len(seq, t / s->kv_heads, t % s->kv_heads),
			   lens[t]);
		EXPECT_U64(nr, (lens[t] + bs - 1) / bs);
		if (nr) {
			assert_int_equal(kvc_pool_get_owner(kvc_kv_pool(kv),
							    tbl[nr - 1],
							    &owner),
					 0);
			EXPECT_U64(owner, kvc_owner_tag(seq->id, t, nr - 1));
		}
	}
	KV_CHECK(kv);
	kvc_seq_destroy(seq);

	/* A length past the tokens, or past 2^20 blocks: refused, no hang. */
	kvc_pool_get_stats(kvc_kv_pool(kv), &before, NULL);
	lens[0] = 201;
	seq = NULL;
	assert_int_equal(kvc_seq_restore(kv, 200, lens, &seq), -EINVAL);
	lens[0] = ((1u << KVC_INDEX_BITS) + 1) * bs;
	assert_int_equal(kvc_seq_restore(kv, lens[0], lens, &seq), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "blocks"));
	assert_null(seq);
	kvc_pool_get_stats(kvc_kv_pool(kv), &after, NULL);
	EXPECT_U64(after.blocks_live, before.blocks_live);
	KV_CHECK(kv);
}

static void test_owner_tags(void **state)
{
	struct fixture *fx = *state;
	const struct kvc_model_shape *s;
	struct model_seq m[3];
	uint32_t i, layer, head, nr, j;
	struct kvc_seq *seq;
	uint64_t owner;
	struct kvc_kv *kv;

	fx->params.shape.layers = 3;
	fx->params.shape.kv_heads = 4;
	fx->params.shape.q_heads = 16;
	kv = kv_open(fx);
	s = kvc_kv_shape(kv);
	for (i = 0; i < 3; i++) {
		model_init(&m[i], kv, i);
		APPEND_OK(kv, &m[i], 9 + 8 * i);
	}
	for (i = 0; i < 3; i++) {
		for (layer = 0; layer < s->layers; layer++) {
			for (head = 0; head < s->kv_heads; head++) {
				const uint32_t *tbl = kvc_seq_table(
					m[i].seq, layer, head, &nr);

				assert_int_equal(nr, 2 + i);
				for (j = 0; j < nr; j++) {
					assert_int_equal(
						kvc_pool_get_owner(
							kvc_kv_pool(kv), tbl[j],
							&owner),
						0);
					EXPECT_U64(owner,
						   kvc_owner_tag(
							   i,
							   layer * s->kv_heads +
								   head,
							   j));
				}
			}
		}
	}
	/* The checker sees a wrong tag, a wrong length, a lost block. */
	seq = m[1].seq;
	{
		struct kvc_head_table *t = kvc_seq_head(seq, 2, 3);
		uint32_t b = t->blocks[1], len = t->len;

		assert_int_equal(kvc_pool_set_owner(kvc_kv_pool(kv), b,
						    kvc_owner_tag(1, 11, 0)),
				 0);
		assert_int_equal(kvc_kv_check(kv), -EFAULT);
		assert_non_null(strstr(kvc_last_error(), "owned by"));
		assert_int_equal(kvc_pool_set_owner(kvc_kv_pool(kv), b,
						    kvc_owner_tag(1, 11, 1)),
				 0);
		KV_CHECK(kv);
		t->len = len + 8;
		assert_int_equal(kvc_kv_check(kv), -EFAULT);
		t->len = len;
		t->nr_blocks--;
		assert_int_equal(kvc_kv_check(kv), -EFAULT);
		t->nr_blocks++;
		KV_CHECK(kv);
		kv->meta[(uint64_t)b * s->block_size].pos = 1000;
		assert_int_equal(kvc_kv_check(kv), -EFAULT);
		assert_non_null(strstr(kvc_last_error(), "position"));
		kv->meta[(uint64_t)b * s->block_size].pos = 8;
		KV_CHECK(kv);
	}
	/* Unknown layer or head: nothing. */
	assert_null(kvc_seq_table(seq, s->layers, 0, &nr));
	assert_int_equal(nr, 0);
	assert_null(kvc_seq_table(seq, 0, s->kv_heads, &nr));
	assert_int_equal(kvc_seq_len(seq, s->layers, 0), 0);
	for (i = 0; i < 3; i++)
		EXPECT_MODEL(kv, &m[i]);
	for (i = 0; i < 3; i++)
		model_fini(&m[i], kv);
}

static void test_truncate(void **state)
{
	struct fixture *fx = *state;
	struct model_seq m;
	struct kvc_kv *kv = kv_open(fx);
	uint64_t live;

	model_init(&m, kv, 5);
	APPEND_OK(kv, &m, 30); /* 4 blocks a table, 16 in all */
	live = pool_stats(kv).blocks_live;
	EXPECT_U64(live, 16);
	assert_int_equal(kvc_seq_truncate(m.seq, 0, 0, 31), -EINVAL);
	assert_int_equal(kvc_seq_truncate(m.seq, 2, 0, 1), -EINVAL);
	assert_int_equal(kvc_seq_truncate(m.seq, 0, 2, 1), -EINVAL);
	assert_int_equal(kvc_seq_truncate(NULL, 0, 0, 1), -EINVAL);
	KV_CHECK(kv);
	TRUNCATE_OK(kv, &m, 0, 0, 30); /* same length: nothing */
	EXPECT_U64(pool_stats(kv).blocks_live, 16);
	TRUNCATE_OK(kv, &m, 0, 0, 25); /* inside the last block */
	EXPECT_U64(pool_stats(kv).blocks_live, 16);
	TRUNCATE_OK(kv, &m, 0, 0, 24); /* a block boundary */
	EXPECT_U64(pool_stats(kv).blocks_live, 15);
	TRUNCATE_OK(kv, &m, 0, 1, 9);
	EXPECT_U64(pool_stats(kv).blocks_live, 13);
	TRUNCATE_OK(kv, &m, 1, 0, 0);
	EXPECT_U64(pool_stats(kv).blocks_live, 9);
	EXPECT_MODEL(kv, &m);
	assert_int_equal(kvc_seq_tokens(m.seq), 30);
	/* Appends keep numbering positions from the sequence's tokens. */
	APPEND_OK(kv, &m, 3);
	EXPECT_MODEL(kv, &m);
	assert_int_equal(kvc_seq_len(m.seq, 1, 0), 3);
	model_fini(&m, kv);
}

/* KV-Compress MoveCache inside one head: survivors to the front. */
static void test_slot_copy(void **state)
{
	struct fixture *fx = *state;
	const struct kvc_model_shape *s;
	struct kvc_slot_meta meta, src_meta;
	float k[256], v[256], sk[256], sv[256];
	struct model_seq m;
	uint32_t nr, i, lo, hi, keep;
	const uint32_t *tbl;
	struct kvc_head_table *t;
	struct model_table *mt;
	struct kvc_kv *kv;
	bool *evict;

	fx->params.shape.head_dim = 80;
	fx->params.shape.dtype = KVC_DTYPE_F16;
	kv = kv_open(fx);
	s = kvc_kv_shape(kv);
	model_init(&m, kv, 9);
	APPEND_OK(kv, &m, 29);

	/* One slot: K, V and meta of (block 2, slot 3) to (block 0, slot 1). */
	tbl = kvc_seq_table(m.seq, 1, 0, &nr);
	assert_int_equal(nr, 4);
	read_kv(kv, m.seq, 1, 0, 2 * 8 + 3, sk, sv, &src_meta);
	kv->meta[(uint64_t)tbl[2] * 8 + 3].metric = 2.5f;
	src_meta.metric = 2.5f;
	kvc_slot_copy(kv, tbl[2], 3, tbl[0], 1);
	KV_CHECK(kv);
	read_kv(kv, m.seq, 1, 0, 1, k, v, &meta);
	assert_memory_equal(k, sk, s->head_dim * sizeof(float));
	assert_memory_equal(v, sv, s->head_dim * sizeof(float));
	assert_int_equal(meta.pos, src_meta.pos);
	assert_true(meta.metric == 2.5f);
	read_kv(kv, m.seq, 1, 0, 2 * 8 + 3, k, v, &meta); /* source kept */
	assert_memory_equal(k, sk, s->head_dim * sizeof(float));
	assert_int_equal(meta.pos, 19);
	mt = &m.tables[2];
	mt->pos[1] = mt->pos[19];
	EXPECT_MODEL(kv, &m);

	/* Evict every third KV of (layer 0, head 1) and close the holes. */
	t = kvc_seq_head(m.seq, 0, 1);
	mt = &m.tables[1];
	evict = calloc(mt->len, sizeof(*evict));
	assert_non_null(evict);
	for (i = 0; i < mt->len; i++)
		evict[i] = i % 3 == 0;
	lo = 0;
	hi = mt->len;
	for (;;) {
		while (lo < hi && !evict[lo])
			lo++;
		while (hi > lo && evict[hi - 1])
			hi--;
		if (lo + 1 >= hi)
			break;
		/* the last survivor into the lowest hole */
		kvc_slot_copy(kv, t->blocks[(hi - 1) / 8], (hi - 1) % 8,
			      t->blocks[lo / 8], lo % 8);
		KV_CHECK(kv);
		mt->pos[lo] = mt->pos[hi - 1];
		evict[lo] = false;
		evict[hi - 1] = true;
	}
	keep = 0;
	for (i = 0; i < mt->len; i++)
		keep += !evict[i];
	assert_int_equal(keep, 19);
	free(evict);
	TRUNCATE_OK(kv, &m, 0, 1, keep);
	EXPECT_U64(pool_stats(kv).blocks_live, 4 + 3 + 4 + 4);
	EXPECT_MODEL(kv, &m);
	APPEND_OK(kv, &m, 6);
	EXPECT_MODEL(kv, &m);
	model_fini(&m, kv);
}

/* ------------------------------------------------------------------ */
/* random histories and compaction */

static void random_op(struct kvc_kv *kv, struct model_seq *m, uint64_t *rng)
{
	const struct kvc_model_shape *s = kvc_kv_shape(kv);
	uint32_t layer, head, len;

	if (rng_below(rng, 3)) {
		APPEND_OK(kv, m, 1 + rng_below(rng, 24));
		return;
	}
	layer = rng_below(rng, s->layers);
	head = rng_below(rng, s->kv_heads);
	len = kvc_seq_len(m->seq, layer, head);
	TRUNCATE_OK(kv, m, layer, head, len ? rng_below(rng, len + 1) : 0);
}

static void compact_history(struct fixture *fx, uint64_t seed)
{
	enum { NR_SEQS = 8, STEPS = 160 };
	struct kvc_pool_stats before, after;
	struct kvc_compact_result res;
	struct model_seq m[NR_SEQS];
	uint64_t rng = seed;
	struct kvc_kv *kv;
	uint32_t i, step, layer, head;
	int err;

	fx->params.capacity_blocks = 2048;
	kv = kv_open(fx);
	for (i = 0; i < NR_SEQS; i++)
		model_init(&m[i], kv, 1000 + i);
	for (step = 0; step < STEPS; step++)
		random_op(kv, &m[rng_below(&rng, NR_SEQS)], &rng);
	for (i = 0; i < NR_SEQS; i++)
		EXPECT_MODEL(kv, &m[i]);

	/* Fragment: end every other sequence, cut the others' heads. */
	for (i = 0; i < NR_SEQS; i += 2) {
		kvc_seq_destroy(m[i].seq);
		KV_CHECK(kv);
		model_fini(&m[i], kv);
	}
	for (i = 1; i < NR_SEQS; i += 2)
		for (layer = 0; layer < kvc_kv_shape(kv)->layers; layer++)
			for (head = 0; head < kvc_kv_shape(kv)->kv_heads;
			     head++)
				if (rng_below(&rng, 2))
					TRUNCATE_OK(kv, &m[i], layer, head,
						    kvc_seq_len(m[i].seq, layer,
								head) /
							    3);
	before = pool_stats(kv);
	assert_true(before.chunks_reclaimable > 0);

	memset(&res, 0, sizeof(res));
	err = kvc_pool_compact(kvc_kv_pool(kv), NULL, &res);
	if (err)
		fail_msg("kvc_pool_compact() = %d: %s", err, kvc_last_error());
	KV_CHECK(kv);
	after = pool_stats(kv);
	assert_true(res.blocks_moved > 0);
	EXPECT_U64(res.blocks_moved, res.lower_bound);
	EXPECT_U64(after.blocks_live, before.blocks_live);
	assert_true(after.chunks_mapped < before.chunks_mapped);
	EXPECT_U64(after.chunks_mapped,
		   (after.blocks_live + after.blocks_per_chunk - 1) /
			   after.blocks_per_chunk);
	for (i = 1; i < NR_SEQS; i += 2)
		EXPECT_MODEL(kv, &m[i]);

	/* The patched tables keep working. */
	for (step = 0; step < STEPS / 2; step++)
		random_op(kv, &m[1 + 2 * rng_below(&rng, NR_SEQS / 2)], &rng);
	for (i = 1; i < NR_SEQS; i += 2) {
		EXPECT_MODEL(kv, &m[i]);
		kvc_seq_destroy(m[i].seq);
		KV_CHECK(kv);
		model_fini(&m[i], kv);
	}
	EXPECT_U64(pool_stats(kv).blocks_live, 0);
	kv_close(fx);
}

static void test_compact_f32_hd96(void **state)
{
	struct fixture *fx = *state;

	fx->params.shape.head_dim = 96; /* 12 KiB blocks, 192 KiB chunks */
	fx->params.shape.block_size = 16;
	compact_history(fx, 1);
	compact_history(fx, 2);
}

static void test_compact_f16_hd80(void **state)
{
	struct fixture *fx = *state;

	fx->params.shape.head_dim = 80; /* 2.5 KiB blocks, 320 KiB chunks */
	fx->params.shape.block_size = 8;
	fx->params.shape.dtype = KVC_DTYPE_F16;
	fx->params.shape.layers = 3;
	compact_history(fx, 3);
	compact_history(fx, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dtype_names),
		cmocka_unit_test(test_shape_check),
		cmocka_unit_test_setup_teardown(test_create_invalid, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_block_and_chunk_sizes,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_read_back_f32,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_read_back_f16,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_ragged_heads, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_append_all_or_nothing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_seq_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_frees_everything,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_owner_tags, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_truncate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_copy, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_compact_f32_hd96, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_compact_f16_hd80, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
