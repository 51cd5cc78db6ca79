/* Description: eviction: kvc_evict_apply (MoveCache survivors, fewest moves, freed tails, ragged heads), KV-Compress on hand-checked cases and random histories against a reference ranking, protected tokens, pool counts, policy parameters, compress_once vs continual */
// SPDX-License-Identifier: MIT
/*
 * Tests of include/kvc/evict.h and the KV-Compress policy, on real caches
 * over the host backend (64 KiB granularity), so block memory can be read
 * back. kvc_kv_check() runs after every operation.
 *
 * A model keeps, for every (layer, head) of a sequence, the positions it
 * holds (compared as a multiset: MoveCache does not keep slot order) and,
 * per position, the metric the test gave it. K and V are functions of the
 * sequence's tag, the table, the position and the element, so every
 * survivor can be checked wherever it moved.
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

#include <kvc/evict.h>
#include <kvc/kv.h>
#include <kvc/kvc.h>

#include "../runtime/internal.h"
#include "../runtime/policy.h"

#define GRAN (64ull << 10)
/* Positions a test sequence may reach (the model's metric arrays). */
#define MAX_POS 4096u

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

static uint64_t live_blocks(struct kvc_kv *kv)
{
	struct kvc_pool_stats st;

	kvc_pool_get_stats(kvc_kv_pool(kv), &st, NULL);
	return st.blocks_live;
}

/* Element @d of K (@which 0) or V (1) of a KV: exact in f32. */
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

/* The metadata of slot @i of table @t. */
static struct kvc_slot_meta *slot_meta(const struct kvc_seq *seq, uint32_t t,
				       uint32_t i)
{
	const struct kvc_kv *kv = seq->kv;
	uint32_t bs = kv->shape.block_size;
	const struct kvc_head_table *h = &seq->tables[t];

	assert_true(i < h->len);
	return &kv->meta[(uint64_t)h->blocks[i / bs] * bs + i % bs];
}

/* K (@which 0) or V (1) element @d of slot @i of table @t (f32 cache). */
static float slot_elem(const struct kvc_seq *seq, uint32_t t, uint32_t i,
		       uint32_t d, uint32_t which)
{
	const struct kvc_kv *kv = seq->kv;
	const struct kvc_model_shape *s = &kv->shape;
	const struct kvc_head_table *h = &seq->tables[t];
	uint32_t bs = s->block_size;
	uint64_t addr = 0;
	float f;
	int err;

	err = kvc_pool_block_addr(kv->pool, h->blocks[i / bs], &addr);
	if (err)
		fail_msg("kvc_pool_block_addr() = %d: %s", err,
			 kvc_last_error());
	memcpy(&f,
	       (const uint8_t *)(uintptr_t)addr +
		       ((uint64_t)(which * bs + i % bs) * s->head_dim + d) * 4,
	       sizeof(f));
	return f;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------ */
/* the model */

struct model_table {
	uint32_t *pos;
	uint32_t len;
	float *metric; /* by position, MAX_POS entries */
};

struct model_seq {
	struct kvc_seq *seq;
	uint32_t tag;
	uint32_t tokens;
	uint32_t nr;
	struct model_table *tables;
};

static void model_init(struct model_seq *m, struct kvc_kv *kv, uint32_t tag)
{
	uint32_t t;
	int err;

	memset(m, 0, sizeof(*m));
	err = kvc_seq_create(kv, &m->seq);
	if (err)
		fail_msg("kvc_seq_create() = %d: %s", err, kvc_last_error());
	KV_CHECK(kv);
	m->tag = tag;
	m->nr = nr_tables(kvc_kv_shape(kv));
	m->tables = calloc(m->nr, sizeof(*m->tables));
	assert_non_null(m->tables);
	for (t = 0; t < m->nr; t++) {
		m->tables[t].pos = calloc(MAX_POS, sizeof(uint32_t));
		m->tables[t].metric = calloc(MAX_POS, sizeof(float));
		assert_non_null(m->tables[t].pos);
		assert_non_null(m->tables[t].metric);
	}
}

static void model_fini(struct model_seq *m)
{
	uint32_t t;

	if (!m->tables)
		return;
	for (t = 0; t < m->nr; t++) {
		free(m->tables[t].pos);
		free(m->tables[t].metric);
	}
	free(m->tables);
	m->tables = NULL;
}

#define APPEND_OK(kv, m, n) append_ok(kv, m, n, __FILE__, __LINE__)

static void append_ok(struct kvc_kv *kv, struct model_seq *m, uint32_t n,
		      const char *file, int line)
{
	const struct kvc_model_shape *s = kvc_kv_shape(kv);
	uint64_t count = (uint64_t)m->nr * n * s->head_dim, at;
	float *k = malloc(count * sizeof(float) + 1);
	float *v = malloc(count * sizeof(float) + 1);
	uint32_t t, i, d;
	int err;

	assert_non_null(k);
	assert_non_null(v);
	assert_true(m->tokens + n <= MAX_POS);
	for (t = 0; t < m->nr; t++)
		for (i = 0; i < n; i++)
			for (d = 0; d < s->head_dim; d++) {
				at = ((uint64_t)t * n + i) * s->head_dim + d;
				k[at] = kv_value(m->tag, t, m->tokens + i, d,
						 0);
				v[at] = kv_value(m->tag, t, m->tokens + i, d,
						 1);
			}
	err = kvc_seq_append(m->seq, n, k, v);
	free(k);
	free(v);
	if (err)
		fail_msg("%s:%d: kvc_seq_append(%u) = %d: %s", file, line, n,
			 err, kvc_last_error());
	check_kv_at(kv, file, line);
	for (t = 0; t < m->nr; t++)
		for (i = 0; i < n; i++) {
			struct model_table *mt = &m->tables[t];

			mt->pos[mt->len++] = m->tokens + i;
			mt->metric[m->tokens + i] = 0;
		}
	m->tokens += n;
}

/* Give every KV of table @t the metric @fn(@arg, @t, pos). */
static void set_metrics(struct model_seq *m, uint32_t t,
			float (*fn)(void *arg, uint32_t t, uint32_t pos),
			void *arg)
{
	const struct kvc_head_table *h = &m->seq->tables[t];
	uint32_t i;

	for (i = 0; i < h->len; i++) {
		struct kvc_slot_meta *meta = slot_meta(m->seq, t, i);

		meta->metric = fn(arg, t, (uint32_t)meta->pos);
		m->tables[t].metric[meta->pos] = meta->metric;
	}
}

/* The positions table @t holds now, in slot order. */
static void read_positions(const struct model_seq *m, uint32_t t, uint32_t *pos)
{
	uint32_t i;

	for (i = 0; i < m->seq->tables[t].len; i++)
		pos[i] = (uint32_t)slot_meta(m->seq, t, i)->pos;
}

#define EXPECT_MODEL(kv, m) expect_model(kv, m, __FILE__, __LINE__)

/*
 * Every head holds the model's positions as a multiset, each with its own
 * K, V and metric, in ceil(len / block_size) blocks.
 */
static void expect_model(struct kvc_kv *kv, const struct model_seq *m,
			 const char *file, int line)
{
	const struct kvc_model_shape *s = kvc_kv_shape(kv);
	uint32_t *got = malloc(MAX_POS * sizeof(*got));
	uint32_t *want = malloc(MAX_POS * sizeof(*want));
	uint32_t t, i, d, nr, len;

	assert_non_null(got);
	assert_non_null(want);
	check_kv_at(kv, file, line);
	if (kvc_seq_tokens(m->seq) != m->tokens)
		fail_msg("%s:%d: %u tokens, expected %u", file, line,
			 kvc_seq_tokens(m->seq), m->tokens);
	for (t = 0; t < m->nr; t++) {
		const struct model_table *mt = &m->tables[t];

		len = kvc_seq_len(m->seq, t / s->kv_heads, t % s->kv_heads);
		if (len != mt->len)
			fail_msg("%s:%d: table %u holds %u KVs, expected %u",
				 file, line, t, len, mt->len);
		kvc_seq_table(m->seq, t / s->kv_heads, t % s->kv_heads, &nr);
		if (nr != (len + s->block_size - 1) / s->block_size)
			fail_msg("%s:%d: table %u: %u blocks for %u KVs", file,
				 line, t, nr, len);
		read_positions(m, t, got);
		for (i = 0; i < len; i++) {
			uint32_t pos = got[i];
			float metric = slot_meta(m->seq, t, i)->metric;

			if (metric != mt->metric[pos])
				fail_msg(
					"%s:%d: table %u slot %u (pos %u): metric %g, expected %g",
					file, line, t, i, pos, metric,
					mt->metric[pos]);
			for (d = 0; d < s->head_dim; d++) {
				float wk = kv_value(m->tag, t, pos, d, 0);
				float wv = kv_value(m->tag, t, pos, d, 1);

				if (slot_elem(m->seq, t, i, d, 0) != wk ||
				    slot_elem(m->seq, t, i, d, 1) != wv)
					fail_msg(
						"%s:%d: table %u slot %u (pos %u) dim %u: K or V is not its own",
						file, line, t, i, pos, d);
			}
		}
		memcpy(want, mt->pos, (size_t)len * sizeof(*want));
		qsort(got, len, sizeof(*got), cmp_u32);
		qsort(want, len, sizeof(*want), cmp_u32);
		for (i = 0; i < len; i++)
			if (got[i] != want[i] || (i && got[i] == got[i - 1]))
				fail_msg(
					"%s:%d: table %u: sorted position %u is %u, expected %u",
					file, line, t, i, got[i], want[i]);
	}
	free(got);
	free(want);
}

/* Drop from the model's table @t the KVs @drop flags, by slot order now. */
static void model_drop(struct model_seq *m, uint32_t t, const bool *drop)
{
	struct model_table *mt = &m->tables[t];
	uint32_t *now = malloc(MAX_POS * sizeof(*now)), i, n = 0;

	assert_non_null(now);
	read_positions(m, t, now);
	for (i = 0; i < m->seq->tables[t].len; i++)
		if (!drop[i])
			mt->pos[n++] = now[i];
	mt->len = n;
	free(now);
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
	fx->params.capacity_blocks = 512;
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

static struct kvc_kv *kv_open(struct fixture *fx,
			      const struct kvc_model_shape *shape)
{
	int err;

	assert_null(fx->kv);
	fx->params.shape = *shape;
	err = kvc_kv_create(&fx->params, &fx->kv);
	if (err)
		fail_msg("kvc_kv_create() = %d: %s", err, kvc_last_error());
	KV_CHECK(fx->kv);
	return fx->kv;
}

static struct kvc_policy *policy_ok(const struct kvc_policy_params *p,
				    const struct kvc_model_shape *shape)
{
	struct kvc_policy *pol = NULL;
	int err = kvc_policy_create(p, shape, &pol);

	if (err)
		fail_msg("kvc_policy_create(%s) = %d: %s", p->name, err,
			 kvc_last_error());
	assert_non_null(pol);
	return pol;
}

/* ------------------------------------------------------------------ */
/* kvc_evict_apply */

#define APPLY_OK(kv, m, layer, head, drop) \
	apply_ok(kv, m, layer, head, drop, __FILE__, __LINE__)

/*
 * kvc_evict_apply() on one head, checked against the model: the moves are
 * the survivors past the new length, the freed blocks the pool's count.
 */
static void apply_ok(struct kvc_kv *kv, struct model_seq *m, uint32_t layer,
		     uint32_t head, const bool *drop, const char *file,
		     int line)
{
	uint32_t t = layer * kvc_kv_shape(kv)->kv_heads + head;
	uint32_t len = m->seq->tables[t].len, i, new_len = 0, nr, nr_after;
	uint32_t bs = kvc_kv_shape(kv)->block_size;
	struct kvc_evict_stats st = { 1, 2, 3, 4 };
	uint64_t moves = 0, live = live_blocks(kv);
	int err;

	for (i = 0; i < len; i++)
		new_len += !drop[i];
	for (i = new_len; i < len; i++)
		moves += !drop[i];
	kvc_seq_table(m->seq, layer, head, &nr);
	model_drop(m, t, drop);
	err = kvc_evict_apply(m->seq, layer, head, drop, &st);
	if (err)
		fail_msg("%s:%d: kvc_evict_apply(%u, %u) = %d: %s", file, line,
			 layer, head, err, kvc_last_error());
	expect_model(kv, m, file, line);
	kvc_seq_table(m->seq, layer, head, &nr_after);
	if (nr_after != (new_len + bs - 1) / bs)
		fail_msg("%s:%d: %u blocks after, expected %u", file, line,
			 nr_after, (new_len + bs - 1) / bs);
	/* Stats are added to. */
	if (st.kvs_before != 1 + len || st.kvs_after != 2 + new_len ||
	    st.blocks_freed != 3 + nr - nr_after || st.kvs_moved != 4 + moves)
		fail_msg("%s:%d: stats %" PRIu64 " %" PRIu64 " %" PRIu64
			 " %" PRIu64 ", expected %u %u %u %" PRIu64,
			 file, line, st.kvs_before - 1, st.kvs_after - 2,
			 st.blocks_freed - 3, st.kvs_moved - 4, len, new_len,
			 nr - nr_after, moves);
	if (live_blocks(kv) != live - (nr - nr_after))
		fail_msg("%s:%d: pool holds %" PRIu64 " live blocks, expected "
			 "%" PRIu64,
			 file, line, live_blocks(kv), live - (nr - nr_after));
}

static float metric_by_pos(void *arg, uint32_t t, uint32_t pos)
{
	return (float)pos * 0.5f + (float)t * 1000.0f;
}

/* Ragged heads: each head of a sequence drops a different pattern. */
static void test_apply_ragged(void **state)
{
	struct fixture *fx = *state;
	struct kvc_kv *kv = kv_open(fx, &small_shape);
	struct model_seq m;
	bool drop[64];
	uint32_t i, t;

	model_init(&m, kv, 7);
	APPEND_OK(kv, &m, 37); /* 5 blocks per head, 5 KVs in the last */
	for (t = 0; t < m.nr; t++)
		set_metrics(&m, t, metric_by_pos, NULL);
	EXPECT_MODEL(kv, &m);

	/* Head (0, 0): every even slot. */
	for (i = 0; i < 37; i++)
		drop[i] = !(i % 2);
	APPLY_OK(kv, &m, 0, 0, drop);
	assert_int_equal(kvc_seq_len(m.seq, 0, 0), 18);
	/* Head (0, 1): nothing. */
	memset(drop, 0, sizeof(drop));
	APPLY_OK(kv, &m, 0, 1, drop);
	assert_int_equal(kvc_seq_len(m.seq, 0, 1), 37);
	/* Head (1, 0): everything: every block goes back. */
	memset(drop, 1, sizeof(drop));
	APPLY_OK(kv, &m, 1, 0, drop);
	assert_int_equal(kvc_seq_len(m.seq, 1, 0), 0);
	/* Head (1, 1): the first block and the tail's hanging KVs. */
	for (i = 0; i < 37; i++)
		drop[i] = i < 8 || i >= 32;
	APPLY_OK(kv, &m, 1, 1, drop);
	assert_int_equal(kvc_seq_len(m.seq, 1, 1), 24);
	assert_int_equal(m.seq->tables[3].nr_blocks, 3);

	/* Appends go on at each head's own length, positions continue. */
	APPEND_OK(kv, &m, 11);
	EXPECT_MODEL(kv, &m);
	assert_int_equal(kvc_seq_len(m.seq, 1, 0), 11);
	assert_int_equal(kvc_seq_len(m.seq, 0, 0), 29);
	/* And an emptied head can be evicted again. */
	for (i = 0; i < 11; i++)
		drop[i] = i >= 3;
	APPLY_OK(kv, &m, 1, 0, drop);
	kvc_seq_destroy(m.seq);
	KV_CHECK(kv);
	assert_int_equal(live_blocks(kv), 0);
	model_fini(&m);
}

/* MoveCache's exact placement: from the tail into the lowest holes. */
static void test_apply_movecache_order(void **state)
{
	struct fixture *fx = *state;
	struct kvc_model_shape s = small_shape;
	struct kvc_kv *kv;
	struct model_seq m;
	bool drop[24] = { 0 };
	uint32_t pos[24];
	struct kvc_evict_stats st = { 0 };

	s.layers = 1;
	s.kv_heads = 1;
	s.q_heads = 1;
	kv = kv_open(fx, &s);
	model_init(&m, kv, 3);
	APPEND_OK(kv, &m, 24);
	/* Holes at 2, 5, 6; survivors 23, 22, 21 ... walk from the tail. */
	drop[2] = drop[5] = drop[6] = true;
	drop[22] = true; /* a dropped KV past the new length is skipped */
	assert_int_equal(kvc_evict_apply(m.seq, 0, 0, drop, &st), 0);
	KV_CHECK(kv);
	read_positions(&m, 0, pos);
	assert_int_equal(kvc_seq_len(m.seq, 0, 0), 20);
	assert_int_equal(pos[2], 23);
	assert_int_equal(pos[5], 21);
	assert_int_equal(pos[6], 20);
	assert_int_equal(pos[0], 0);
	assert_int_equal(pos[19], 19);
	EXPECT_U64(st.kvs_moved, 3);
	EXPECT_U64(st.blocks_freed, 0);
	EXPECT_U64(st.kvs_before, 24);
	EXPECT_U64(st.kvs_after, 20);

	/* Dropping only the tail moves nothing and frees a block. */
	memset(drop, 0, sizeof(drop));
	drop[16] = drop[17] = drop[18] = drop[19] = true;
	memset(&st, 0, sizeof(st));
	assert_int_equal(kvc_evict_apply(m.seq, 0, 0, drop, &st), 0);
	KV_CHECK(kv);
	EXPECT_U64(st.kvs_moved, 0);
	EXPECT_U64(st.blocks_freed, 1);
	assert_int_equal(m.seq->tables[0].nr_blocks, 2);
	/* A NULL stats pointer is fine. */
	memset(drop, 0, sizeof(drop));
	drop[0] = true;
	assert_int_equal(kvc_evict_apply(m.seq, 0, 0, drop, NULL), 0);
	KV_CHECK(kv);
	read_positions(&m, 0, pos);
	assert_int_equal(pos[0], 15);
	assert_int_equal(kvc_seq_len(m.seq, 0, 0), 15);
	model_fini(&m);
}

static void test_apply_invalid(void **state)
{
	struct fixture *fx = *state;
	struct kvc_kv *kv = kv_open(fx, &small_shape);
	struct model_seq m;
	bool drop[16] = { true };

	model_init(&m, kv, 1);
	APPEND_OK(kv, &m, 16);
	assert_int_equal(kvc_evict_apply(NULL, 0, 0, drop, NULL), -EINVAL);
	assert_int_equal(kvc_evict_apply(m.seq, 0, 0, NULL, NULL), -EINVAL);
	assert_int_equal(kvc_evict_apply(m.seq, 2, 0, drop, NULL), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "layer"));
	assert_int_equal(kvc_evict_apply(m.seq, 0, 2, drop, NULL), -EINVAL);
	EXPECT_MODEL(kv, &m);
	model_fini(&m);
}

/* Random drops, appends and whole-head evictions on several sequences. */
static void test_apply_random(void **state)
{
	struct fixture *fx = *state;
	struct kvc_kv *kv = kv_open(fx, &small_shape);
	struct model_seq m[3];
	uint64_t rng = 0x1234567ull;
	bool *drop = malloc(MAX_POS);
	uint32_t round, i, k;

	assert_non_null(drop);
	for (k = 0; k < 3; k++)
		model_init(&m[k], kv, 100 + k);
	for (round = 0; round < 300; round++) {
		struct model_seq *ms = &m[rng_below(&rng, 3)];
		uint32_t t = rng_below(&rng, ms->nr), n, most = 0;
		uint32_t len = ms->seq->tables[t].len, p;

		for (i = 0; i < ms->nr; i++)
			if (ms->seq->tables[i].len > most)
				most = ms->seq->tables[i].len;
		if (rng_below(&rng, 3) == 0 && most < 120 &&
		    ms->tokens < MAX_POS - 40) {
			n = 1 + rng_below(&rng, 30);
			APPEND_OK(kv, ms, n);
			for (i = 0; i < ms->nr; i++)
				set_metrics(ms, i, metric_by_pos, NULL);
			continue;
		}
		p = rng_below(&rng, 101);
		for (i = 0; i < len; i++)
			drop[i] = rng_below(&rng, 100) < p;
		APPLY_OK(kv, ms, t / 2, t % 2, drop);
	}
	for (k = 0; k < 3; k++) {
		EXPECT_MODEL(kv, &m[k]);
		kvc_seq_destroy(m[k].seq);
		model_fini(&m[k]);
	}
	KV_CHECK(kv);
	assert_int_equal(live_blocks(kv), 0);
	free(drop);
}

/* ------------------------------------------------------------------ */
/* KV-Compress, hand-checked */

#define COMPRESS_OK(kv, pol, m, st) \
	compress_ok(kv, pol, m, st, __FILE__, __LINE__)

/* Compress and update the model from what the heads hold now. */
static void compress_ok(struct kvc_kv *kv, struct kvc_policy *pol,
			struct model_seq *m, struct kvc_evict_stats *st,
			const char *file, int line)
{
	uint64_t live = live_blocks(kv);
	struct kvc_evict_stats mine;
	uint32_t t;
	int err;

	if (!st)
		st = &mine;
	err = kvc_policy_compress(pol, m->seq, st);
	if (err)
		fail_msg("%s:%d: kvc_policy_compress() = %d: %s", file, line,
			 err, kvc_last_error());
	check_kv_at(kv, file, line);
	if (live_blocks(kv) != live - st->blocks_freed)
		fail_msg("%s:%d: %" PRIu64 " live blocks, %" PRIu64
			 " - %" PRIu64 " expected",
			 file, line, live_blocks(kv), live, st->blocks_freed);
	for (t = 0; t < m->nr; t++) {
		read_positions(m, t, m->tables[t].pos);
		m->tables[t].len = m->seq->tables[t].len;
	}
	expect_model(kv, m, file, line);
}

/* Whether table @t holds position @pos. */
static bool holds(const struct model_seq *m, uint32_t t, uint32_t pos)
{
	uint32_t i;

	for (i = 0; i < m->tables[t].len; i++)
		if (m->tables[t].pos[i] == pos)
			return true;
	return false;
}

/* Table @t holds exactly positions [@lo, @hi) and nothing else. */
#define EXPECT_RANGE(m, t, lo, hi) expect_range(m, t, lo, hi, __LINE__)

static void expect_range(const struct model_seq *m, uint32_t t, uint32_t lo,
			 uint32_t hi, int line)
{
	uint32_t p;

	if (m->tables[t].len != hi - lo)
		fail_msg("line %d: table %u holds %u KVs, expected [%u, %u)",
			 line, t, m->tables[t].len, lo, hi);
	for (p = lo; p < hi; p++)
		if (!holds(m, t, p))
			fail_msg("line %d: table %u lost position %u", line, t,
				 p);
}

static const float *hand_bases;

/* Table t: its base plus the position. */
static float metric_base_plus_pos(void *arg, uint32_t t, uint32_t pos)
{
	return hand_bases[t] + (float)pos;
}

/*
 * Four heads over two layers, 20 tokens (blocks 8 + 8 + 4: hanging 4),
 * protected window 4, so 16 unprotected KVs per head and two candidates
 * per head: 4 KVs (the 4th smallest) and 12 KVs (the 12th smallest).
 * max_cache_tokens 10: keep ceil(10 * 4 / 8) = 5 of 12 blocks.
 */
static void test_kvcompress_hand_max_tokens(void **state)
{
	static const float bases[4] = { 0, 50, 5, 1000 };
	struct fixture *fx = *state;
	struct kvc_kv *kv = kv_open(fx, &small_shape);
	struct kvc_policy_params p;
	struct kvc_evict_stats st;
	struct kvc_policy *pol;
	struct model_seq m;
	uint32_t t;

	kvc_policy_params_init(&p);
	p.rate = 0;
	p.max_cache_tokens = 10;
	p.protected_window = 4;
	pol = policy_ok(&p, &small_shape);
	model_init(&m, kv, 11);
	APPEND_OK(kv, &m, 20);
	hand_bases = bases;
	for (t = 0; t < 4; t++)
		set_metrics(&m, t, metric_base_plus_pos, NULL);
	/*
	 * Costs: t0 3, 11; t1 53, 61; t2 8, 16; t3 1003, 1011. Seven blocks
	 * go: every candidate but t3's second.
	 */
	COMPRESS_OK(kv, pol, &m, &st);
	EXPECT_RANGE(&m, 0, 12, 20);
	EXPECT_RANGE(&m, 1, 12, 20);
	EXPECT_RANGE(&m, 2, 12, 20);
	EXPECT_RANGE(&m, 3, 4, 20);
	EXPECT_U64(st.kvs_before, 80);
	EXPECT_U64(st.kvs_after, 40);
	EXPECT_U64(st.blocks_freed, 7);
	EXPECT_U64(live_blocks(kv), 5);
	/*
	 * Survivors past the new length move: 12..19 in each of t0..t2
	 * (new length 8), 16..19 in t3 (into slots 0..3).
	 */
	EXPECT_U64(st.kvs_moved, 3 * 8 + 4);

	/* Again at once: the quota is met, nothing goes. */
	COMPRESS_OK(kv, pol, &m, &st);
	EXPECT_U64(st.blocks_freed, 0);
	EXPECT_U64(st.kvs_after, 40);
	kvc_policy_destroy(pol);
	model_fini(&m);
}

/* A permutation of metrics: the lowest-metric KVs go, by position. */
static float metric_perm(void *arg, uint32_t t, uint32_t pos)
{
	return (float)((pos * 7 + t * 3) % 16);
}

static void test_kvcompress_hand_which_kvs(void **state)
{
	struct fixture *fx = *state;
	struct kvc_model_shape s = small_shape;
	struct kvc_policy_params p;
	struct kvc_evict_stats st;
	struct kvc_policy *pol;
	struct kvc_kv *kv;
	struct model_seq m;
	uint32_t pos, t;

	/* One layer, two heads; 20 tokens, window 4, keep 12 tokens' worth:
	 * ceil(24 / 8) = 3 of 6 blocks. */
	s.layers = 1;
	s.q_heads = 2;
	kv = kv_open(fx, &s);
	kvc_policy_params_init(&p);
	p.rate = 0;
	p.max_cache_tokens = 12;
	p.protected_window = 4;
	pol = policy_ok(&p, &s);
	model_init(&m, kv, 12);
	APPEND_OK(kv, &m, 20);
	for (t = 0; t < 2; t++)
		set_metrics(&m, t, metric_perm, NULL);
	/*
	 * Both heads hold each metric 0..15 once over positions 0..15. Costs
	 * 3 and 11 in both; ties go to the lower table: t0 r0 (3), t1 r0
	 * (3), t0 r1 (11). t0 loses metrics 0..11, t1 metrics 0..3.
	 */
	COMPRESS_OK(kv, pol, &m, &st);
	EXPECT_U64(st.blocks_freed, 3);
	assert_int_equal(m.tables[0].len, 8);
	assert_int_equal(m.tables[1].len, 16);
	for (t = 0; t < 2; t++)
		for (pos = 0; pos < 20; pos++) {
			float metric = metric_perm(NULL, t, pos);
			bool want = pos >= 16 || metric >= (t ? 4 : 12);

			if (holds(&m, t, pos) != want)
				fail_msg("table %u pos %u (metric %g): %s", t,
					 pos, metric, want ? "lost" : "kept");
		}
	kvc_policy_destroy(pol);
	model_fini(&m);
}

static float metric_const(void *arg, uint32_t t, uint32_t pos)
{
	return *(const float *)arg;
}

/*
 * A full last block hangs block_size KVs; sinks and the window survive;
 * quotas from a rate.
 */
static void test_kvcompress_hand_rate(void **state)
{
	static const float bases[2] = { 0, 1000 };
	struct fixture *fx = *state;
	struct kvc_model_shape s = small_shape;
	struct kvc_policy_params p;
	struct kvc_evict_stats st;
	struct kvc_policy *pol;
	struct kvc_kv *kv;
	struct model_seq m;
	float one = 1;
	uint32_t pos;

	s.layers = 1;
	s.q_heads = 2;
	kv = kv_open(fx, &s);
	kvc_policy_params_init(&p);
	p.rate = 4;
	p.protected_window = 4;
	p.sinks = 4;
	pol = policy_ok(&p, &s);
	/* 40 tokens: 8 protected, keep 8 + ceil(32 / 4) = 16 per head. */
	assert_int_equal(kvc_policy_keep_tokens(pol, 40), 16);
	model_init(&m, kv, 13);
	APPEND_OK(kv, &m, 40);
	/*
	 * Metrics pos (t0) and 1000 + pos (t1). Quota ceil(2 * 16 / 8) = 4
	 * of 10 blocks. Hanging 8 (a full last block), 32 unprotected
	 * (4..35): candidates of 8, 16, 24, 32 KVs per head, costing 11, 19,
	 * 27, 35 in t0 and 1011 ... in t1. Six go: t0 loses 32 (all but the
	 * sinks and the window), t1 16.
	 */
	hand_bases = bases;
	set_metrics(&m, 0, metric_base_plus_pos, NULL);
	set_metrics(&m, 1, metric_base_plus_pos, NULL);
	COMPRESS_OK(kv, pol, &m, &st);
	EXPECT_U64(st.blocks_freed, 6);
	assert_int_equal(m.tables[0].len, 8);
	assert_int_equal(m.tables[1].len, 24);
	for (pos = 0; pos < 4; pos++) {
		assert_true(holds(&m, 0, pos));
		assert_true(holds(&m, 1, pos));
	}
	for (pos = 36; pos < 40; pos++) {
		assert_true(holds(&m, 0, pos));
		assert_true(holds(&m, 1, pos));
	}
	/* t1 lost its 16 lowest unprotected: positions 4..19. */
	for (pos = 4; pos < 20; pos++)
		assert_false(holds(&m, 1, pos));
	for (pos = 20; pos < 36; pos++)
		assert_true(holds(&m, 1, pos));

	/*
	 * Continual: 8 more tokens (40..47). keep 8 + ceil(40 / 4) = 18 per
	 * head, quota ceil(2 * 18 / 8) = 5 blocks; the heads hold 2 + 4 = 6
	 * (16 and 32 KVs, full last blocks). All metrics equal: the tie
	 * goes to r 0 of table 0, whose 8 unprotected KVs (36..43, the
	 * window is 44..47) go, oldest first.
	 */
	APPEND_OK(kv, &m, 8);
	set_metrics(&m, 0, metric_const, &one);
	set_metrics(&m, 1, metric_const, &one);
	COMPRESS_OK(kv, pol, &m, &st);
	EXPECT_U64(st.blocks_freed, 1);
	assert_int_equal(m.tables[0].len, 8);
	assert_int_equal(m.tables[1].len, 32);
	for (pos = 0; pos < 4; pos++)
		assert_true(holds(&m, 0, pos));
	for (pos = 44; pos < 48; pos++)
		assert_true(holds(&m, 0, pos));
	kvc_policy_destroy(pol);
	model_fini(&m);
}

/* Protected KVs make the quota unreachable: the rest goes, no more. */
static void test_kvcompress_protected(void **state)
{
	struct fixture *fx = *state;
	struct kvc_model_shape s = small_shape;
	struct kvc_policy_params p;
	struct kvc_evict_stats st;
	struct kvc_policy *pol;
	struct kvc_kv *kv;
	struct model_seq m;
	uint32_t pos, t;
	float zero = 0;

	s.layers = 1;
	s.q_heads = 2;
	kv = kv_open(fx, &s);
	kvc_policy_params_init(&p);
	p.rate = 0;
	p.max_cache_tokens = 4;
	p.protected_window = 16;
	pol = policy_ok(&p, &s);
	model_init(&m, kv, 14);
	APPEND_OK(kv, &m, 20);
	for (t = 0; t < 2; t++)
		set_metrics(&m, t, metric_const, &zero);
	/* Quota 1 block of 6; one candidate per head (4 hanging KVs). */
	COMPRESS_OK(kv, pol, &m, &st);
	EXPECT_U64(st.blocks_freed, 2);
	for (t = 0; t < 2; t++)
		EXPECT_RANGE(&m, t, 4, 20);
	/* Nothing left to take: the window holds the rest. */
	COMPRESS_OK(kv, pol, &m, &st);
	EXPECT_U64(st.blocks_freed, 0);
	for (t = 0; t < 2; t++)
		for (pos = 4; pos < 20; pos++)
			assert_true(holds(&m, t, pos));

	/* A sequence no longer than max_cache_tokens is left alone. */
	kvc_policy_destroy(pol);
	p.max_cache_tokens = 20;
	p.protected_window = 0;
	pol = policy_ok(&p, &s);
	COMPRESS_OK(kv, pol, &m, &st);
	EXPECT_U64(st.blocks_freed, 0);
	EXPECT_U64(st.kvs_before, 32);
	EXPECT_U64(st.kvs_after, 32);
	kvc_policy_destroy(pol);
	model_fini(&m);
}

/*
 * Equal costs: every head's first block goes before any head's second
 * (candidates rank by cost, then r, then table).
 */
static void test_kvcompress_ties(void **state)
{
	struct fixture *fx = *state;
	struct kvc_model_shape s = small_shape;
	struct kvc_policy_params p;
	struct kvc_evict_stats st;
	struct kvc_policy *pol;
	struct kvc_kv *kv;
	struct model_seq m;
	float zero = 0;
	uint32_t t;

	s.layers = 1;
	s.q_heads = 2;
	kv = kv_open(fx, &s);
	kvc_policy_params_init(&p);
	p.rate = 0;
	p.max_cache_tokens = 16; /* quota ceil(2 * 16 / 8) = 4 of 6 */
	p.protected_window = 4;
	pol = policy_ok(&p, &s);
	model_init(&m, kv, 17);
	APPEND_OK(kv, &m, 20);
	for (t = 0; t < 2; t++)
		set_metrics(&m, t, metric_const, &zero);
	COMPRESS_OK(kv, pol, &m, &st);
	EXPECT_U64(st.blocks_freed, 2);
	for (t = 0; t < 2; t++)
		EXPECT_RANGE(&m, t, 4, 20);
	kvc_policy_destroy(pol);
	model_fini(&m);
}

/* AVG divides by the queries that could see the key; L1 does not. */
static float metric_avg_case(void *arg, uint32_t t, uint32_t pos)
{
	return (float)(20 - pos) * (pos % 2 ? 2.0f : 1.0f);
}

static void test_kvcompress_avg(void **state)
{
	static const uint32_t avg_drops[4] = { 0, 2, 4, 6 };
	static const uint32_t l1_drops[4] = { 10, 12, 14, 15 };
	struct fixture *fx = *state;
	struct kvc_model_shape s = small_shape;
	struct kvc_policy_params p;
	struct kvc_policy *pol;
	struct kvc_kv *kv;
	struct model_seq m;
	uint32_t round, i;

	s.layers = 1;
	s.kv_heads = 1;
	s.q_heads = 1;
	kv = kv_open(fx, &s);
	for (round = 0; round < 2; round++) {
		const uint32_t *want = round ? l1_drops : avg_drops;

		kvc_policy_params_init(&p);
		p.rate = 0;
		p.max_cache_tokens = 16; /* 2 of 3 blocks */
		p.protected_window = 4;
		p.metric = round ? KVC_METRIC_L1 : KVC_METRIC_AVG;
		pol = policy_ok(&p, &s);
		model_init(&m, kv, 15 + round);
		APPEND_OK(kv, &m, 20);
		/*
		 * metric / (20 - pos) is 1 for even and 2 for odd positions:
		 * AVG drops the four oldest evens. The raw metric is lowest
		 * at 14 (6), 12 (8), 10 and 15 (10 each).
		 */
		set_metrics(&m, 0, metric_avg_case, NULL);
		COMPRESS_OK(kv, pol, &m, NULL);
		assert_int_equal(m.tables[0].len, 16);
		for (i = 0; i < 4; i++)
			if (holds(&m, 0, want[i]))
				fail_msg("%s kept position %u",
					 round ? "L1" : "AVG", want[i]);
		kvc_seq_destroy(m.seq);
		KV_CHECK(kv);
		model_fini(&m);
		kvc_policy_destroy(pol);
	}
}

/* ------------------------------------------------------------------ */
/* KV-Compress, random histories against a reference ranking */

struct ref_head {
	float *sorted; /* unprotected scores, ascending */
	uint32_t unprot;
	uint32_t hang;
	uint32_t blocks;
};

static int cmp_score(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return x < y ? -1 : x > y;
}

static float ref_score(const struct kvc_policy *pol, uint32_t tokens,
		       uint32_t pos, float metric)
{
	if (pol->p.metric == KVC_METRIC_AVG)
		return metric / (float)((int64_t)tokens - pos);
	return metric;
}

/*
 * Check one compression of @m by @pol against the rule, from what the
 * heads held before (@before, positions per table, and @ref): protected
 * KVs stay; each head loses hanging + k * bs of its lowest-scored
 * unprotected KVs or none; the blocks freed are
 * min(held - quota, candidates); every candidate taken costs no more
 * than any left.
 */
static void check_kvcompress(const struct kvc_policy *pol,
			     const struct model_seq *m, uint32_t **before,
			     const uint32_t *before_len, struct ref_head *ref,
			     const struct kvc_evict_stats *st)
{
	const struct kvc_model_shape *s = &m->seq->kv->shape;
	uint32_t bs = s->block_size, t, i, taken_max_t = 0;
	uint64_t held = 0, cands = 0, quota, keep, want_free, freed = 0;
	uint64_t prot = (uint64_t)pol->p.sinks + pol->p.protected_window;
	float taken_max = -INFINITY, left_min = INFINITY;

	for (t = 0; t < m->nr; t++) {
		held += ref[t].blocks;
		if (before_len[t] && ref[t].unprot >= ref[t].hang)
			cands += 1 + (ref[t].unprot - ref[t].hang) / bs;
	}
	if (prot > m->tokens)
		prot = m->tokens;
	if (pol->p.rate)
		keep = prot +
		       (uint64_t)ceil((double)(m->tokens - prot) / pol->p.rate);
	else
		keep = pol->p.max_cache_tokens < m->tokens ?
			       pol->p.max_cache_tokens :
			       m->tokens;
	quota = (m->nr * keep + bs - 1) / bs;
	want_free = keep >= m->tokens || held <= quota ? 0 : held - quota;
	if (want_free > cands)
		want_free = cands;

	for (t = 0; t < m->nr; t++) {
		const struct model_table *mt = &m->tables[t];
		uint32_t lost = before_len[t] - mt->len, k = 0, r;
		float dropped_max = -INFINITY, kept_min = INFINITY;

		for (i = 0; i < before_len[t]; i++) {
			uint32_t pos = before[t][i];
			bool prot_pos = kvc_slot_protected(pol, m->seq, pos);
			float sc =
				ref_score(pol, m->tokens, pos, mt->metric[pos]);

			if (holds(m, t, pos)) {
				if (!prot_pos && sc < kept_min)
					kept_min = sc;
			} else {
				if (prot_pos)
					fail_msg("table %u lost protected %u",
						 t, pos);
				if (sc > dropped_max)
					dropped_max = sc;
			}
		}
		if (dropped_max > kept_min)
			fail_msg("table %u dropped score %g but kept %g", t,
				 dropped_max, kept_min);
		if (lost && (lost < ref[t].hang || (lost - ref[t].hang) % bs))
			fail_msg("table %u lost %u KVs, hanging %u", t, lost,
				 ref[t].hang);
		if (lost)
			k = 1 + (lost - ref[t].hang) / bs;
		if (lost > ref[t].unprot)
			fail_msg("table %u lost %u of %u unprotected", t, lost,
				 ref[t].unprot);
		freed += k;
		/* Candidate costs, taken (r < k) and left. */
		for (r = 0; before_len[t] &&
			    ref[t].hang + (uint64_t)r * bs <= ref[t].unprot;
		     r++) {
			float cost = ref[t].sorted[ref[t].hang + r * bs - 1];

			if (r < k && cost > taken_max) {
				taken_max = cost;
				taken_max_t = t;
			}
			if (r >= k && cost < left_min)
				left_min = cost;
		}
	}
	if (freed != want_free)
		fail_msg("freed %" PRIu64 " blocks, expected %" PRIu64
			 " (held %" PRIu64 ", quota %" PRIu64 ")",
			 freed, want_free, held, quota);
	EXPECT_U64(st->blocks_freed, freed);
	if (taken_max > left_min)
		fail_msg(
			"took a candidate of cost %g (table %u) over one of %g",
			taken_max, taken_max_t, left_min);
}

static void run_random_kvcompress(struct fixture *fx,
				  const struct kvc_policy_params *p,
				  uint64_t seed)
{
	struct kvc_kv *kv = kv_open(fx, &small_shape);
	struct kvc_policy *pol = policy_ok(p, &small_shape);
	uint64_t rng = seed, sum_before, sum_after, moves;
	uint32_t *before[4], before_len[4], t, i, round, steps = 0;
	struct ref_head ref[4];
	struct kvc_evict_stats st;
	struct model_seq m;

	model_init(&m, kv, (uint32_t)seed);
	for (t = 0; t < 4; t++) {
		before[t] = malloc(MAX_POS * sizeof(uint32_t));
		ref[t].sorted = malloc(MAX_POS * sizeof(float));
		assert_non_null(before[t]);
		assert_non_null(ref[t].sorted);
	}
	APPEND_OK(kv, &m, 40 + rng_below(&rng, 200));
	for (round = 0; round < 60; round++) {
		/* Random metrics, with ties (multiples of 1/8). */
		for (t = 0; t < 4; t++)
			for (i = 0; i < m.seq->tables[t].len; i++) {
				struct kvc_slot_meta *meta =
					slot_meta(m.seq, t, i);

				meta->metric += (float)rng_below(&rng, 8) / 8;
				m.tables[t].metric[meta->pos] = meta->metric;
			}
		if (!kvc_policy_due(pol, m.seq, steps)) {
			APPEND_OK(kv, &m, 1);
			steps++;
			continue;
		}
		sum_before = moves = 0;
		for (t = 0; t < 4; t++) {
			const struct kvc_head_table *h = &m.seq->tables[t];

			read_positions(&m, t, before[t]);
			before_len[t] = h->len;
			sum_before += h->len;
			ref[t].blocks = h->nr_blocks;
			ref[t].hang =
				h->len ? h->len - (h->nr_blocks - 1) * 8 : 0;
			ref[t].unprot = 0;
			for (i = 0; i < h->len; i++) {
				uint32_t pos = before[t][i];

				if (!kvc_slot_protected(pol, m.seq, pos))
					ref[t].sorted[ref[t].unprot++] =
						ref_score(pol, m.tokens, pos,
							  m.tables[t]
								  .metric[pos]);
			}
			qsort(ref[t].sorted, ref[t].unprot, sizeof(float),
			      cmp_score);
		}
		COMPRESS_OK(kv, pol, &m, &st);
		sum_after = 0;
		for (t = 0; t < 4; t++) {
			sum_after += m.tables[t].len;
			for (i = m.tables[t].len; i < before_len[t]; i++)
				moves += holds(&m, t, before[t][i]);
		}
		EXPECT_U64(st.kvs_before, sum_before);
		EXPECT_U64(st.kvs_after, sum_after);
		EXPECT_U64(st.kvs_moved, moves);
		check_kvcompress(pol, &m, before, before_len, ref, &st);
		/* Live blocks == the tables' blocks (kvc_kv_check too). */
		{
			uint64_t sum = 0;

			for (t = 0; t < 4; t++)
				sum += m.seq->tables[t].nr_blocks;
			EXPECT_U64(live_blocks(kv), sum);
		}
		APPEND_OK(kv, &m, 1 + rng_below(&rng, 20));
		steps++;
	}
	for (t = 0; t < 4; t++) {
		free(before[t]);
		free(ref[t].sorted);
	}
	kvc_seq_destroy(m.seq);
	KV_CHECK(kv);
	EXPECT_U64(live_blocks(kv), 0);
	model_fini(&m);
	kvc_policy_destroy(pol);
	kvc_kv_destroy(fx->kv);
	fx->kv = NULL;
}

static void test_kvcompress_random(void **state)
{
	struct kvc_policy_params p;

	kvc_policy_params_init(&p);
	p.protected_window = 6;
	p.interval = 3;
	run_random_kvcompress(*state, &p, 0x51);
	p.rate = 2.5;
	p.sinks = 3;
	p.metric = KVC_METRIC_AVG;
	run_random_kvcompress(*state, &p, 0x52);
	p.rate = 0;
	p.max_cache_tokens = 37;
	p.metric = KVC_METRIC_L1;
	p.interval = 1;
	run_random_kvcompress(*state, &p, 0x53);
	p.max_cache_tokens = 5;
	p.protected_window = 0;
	p.sinks = 0;
	run_random_kvcompress(*state, &p, 0x54);
	p.rate = 1; /* keeps everything */
	p.max_cache_tokens = 0;
	run_random_kvcompress(*state, &p, 0x55);
}

/* ------------------------------------------------------------------ */
/* kvc_policy_compress: other paths */

static int select_drop_all(struct kvc_policy *pol, struct kvc_seq *seq,
			   bool **drop)
{
	uint32_t t, i;

	for (t = 0; t < pol->shape.layers * pol->shape.kv_heads; t++)
		for (i = 0; i < seq->tables[t].len; i++)
			drop[t][i] = true;
	return 0;
}

static int select_enomem(struct kvc_policy *pol, struct kvc_seq *seq,
			 bool **drop)
{
	drop[0][0] = true;
	return -ENOMEM;
}

static const struct kvc_policy_ops bad_ops = {
	.name = "bad",
	.metric = KVC_METRIC_L2,
	.select = select_drop_all,
};

static const struct kvc_policy_ops enomem_ops = {
	.name = "enomem",
	.metric = KVC_METRIC_L2,
	.select = select_enomem,
};

static void test_compress_errors(void **state)
{
	struct fixture *fx = *state;
	struct kvc_kv *kv = kv_open(fx, &small_shape);
	struct kvc_model_shape other = small_shape;
	const struct kvc_policy_ops *ops;
	struct kvc_policy_params p;
	struct kvc_evict_stats st;
	struct kvc_policy *pol;
	struct model_seq m;

	kvc_policy_params_init(&p);
	pol = policy_ok(&p, &small_shape);
	model_init(&m, kv, 21);
	APPEND_OK(kv, &m, 50);

	/* A policy that drops the protected window is a bug: -EFAULT. */
	ops = pol->ops;
	pol->ops = &bad_ops;
	assert_int_equal(kvc_policy_compress(pol, m.seq, &st), -EFAULT);
	assert_non_null(strstr(kvc_last_error(), "protected"));
	EXPECT_MODEL(kv, &m);
	/* A select that fails changes nothing. */
	pol->ops = &enomem_ops;
	assert_int_equal(kvc_policy_compress(pol, m.seq, &st), -ENOMEM);
	EXPECT_MODEL(kv, &m);
	pol->ops = ops;

	assert_int_equal(kvc_policy_compress(NULL, m.seq, &st), -EINVAL);
	assert_int_equal(kvc_policy_compress(pol, NULL, &st), -EINVAL);
	kvc_policy_destroy(pol);
	/* A policy made for another shape. */
	other.layers = 3;
	pol = policy_ok(&p, &other);
	assert_int_equal(kvc_policy_compress(pol, m.seq, &st), -EINVAL);
	EXPECT_MODEL(kv, &m);
	kvc_policy_destroy(pol);

	/* "full" drops nothing. */
	p.name = "full";
	pol = policy_ok(&p, &small_shape);
	COMPRESS_OK(kv, pol, &m, &st);
	EXPECT_U64(st.kvs_before, 200);
	EXPECT_U64(st.kvs_after, 200);
	EXPECT_U64(st.blocks_freed, 0);
	kvc_policy_destroy(pol);
	model_fini(&m);
}

/* ------------------------------------------------------------------ */
/* parameters */

#define CREATE_ERR(p, word) create_err(p, word, __LINE__)

static void create_err(const struct kvc_policy_params *p, const char *word,
		       int line)
{
	struct kvc_policy *pol = NULL;
	int err = kvc_policy_create(p, &small_shape, &pol);

	if (err != -EINVAL)
		fail_msg("line %d: kvc_policy_create() = %d, expected -EINVAL",
			 line, err);
	if (pol)
		fail_msg("line %d: a policy was made", line);
	if (!strstr(kvc_last_error(), word))
		fail_msg("line %d: message '%s' does not name '%s'", line,
			 kvc_last_error(), word);
}

static void test_params(void **state)
{
	struct kvc_model_shape bad = small_shape;
	struct kvc_policy_params p, q;
	struct kvc_policy *pol = NULL;
	struct kvc_observe obs;

	(void)state;
	kvc_policy_params_init(&p);
	assert_string_equal(p.name, "kvcompress");
	assert_true(p.rate == 8);
	EXPECT_U64(p.max_cache_tokens, 0);
	EXPECT_U64(p.protected_window, 32);
	EXPECT_U64(p.sinks, 0);
	assert_false(p.compress_once);
	EXPECT_U64(p.interval, 0);
	assert_int_equal(p.metric, KVC_METRIC_L2);
	EXPECT_U64(p.observe_window, 8);
	EXPECT_U64(p.buffer, 0);
	EXPECT_U64(p.pool_kernel, 0);
	EXPECT_U64(p.window_tokens, 1024);
	assert_null(p.window_layers);
	assert_true(p.pyramid_beta == 20);
	assert_true(p.pyramid_rho == 0.1);

	q = p;
	q.name = "lru";
	CREATE_ERR(&q, "lru");
	q.name = NULL;
	CREATE_ERR(&q, "name");
	q = p;
	q.rate = 0.5;
	CREATE_ERR(&q, "rate");
	q.rate = NAN;
	CREATE_ERR(&q, "rate");
	q.rate = -2;
	CREATE_ERR(&q, "rate");
	q.rate = INFINITY;
	CREATE_ERR(&q, "rate");
	q = p;
	q.max_cache_tokens = 100;
	CREATE_ERR(&q, "both");
	q.rate = 0;
	q.max_cache_tokens = 0;
	CREATE_ERR(&q, "neither");
	q.name = "h2o";
	CREATE_ERR(&q, "neither");
	q = p;
	q.compress_once = true;
	q.interval = 4;
	CREATE_ERR(&q, "interval");
	q = p;
	q.pool_kernel = 4;
	CREATE_ERR(&q, "pool kernel");
	q.pool_kernel = 7;
	pol = policy_ok(&q, &small_shape);
	kvc_policy_destroy(pol);
	q.pool_kernel = 1;
	pol = policy_ok(&q, &small_shape);
	kvc_policy_destroy(pol);
	q = p;
	q.metric = KVC_METRIC_NONE;
	CREATE_ERR(&q, "metric");
	q.metric = (enum kvc_metric_kind)9;
	CREATE_ERR(&q, "metric");
	bad.block_size = 12;
	assert_int_equal(kvc_policy_create(&p, &bad, &pol), -EINVAL);
	assert_int_equal(kvc_policy_create(NULL, &small_shape, &pol), -EINVAL);
	assert_int_equal(kvc_policy_create(&p, NULL, &pol), -EINVAL);
	assert_int_equal(kvc_policy_create(&p, &small_shape, NULL), -EINVAL);

	/* "full" and "window" need no budget; the name is the table's. */
	q = p;
	q.rate = 0;
	q.name = "full";
	pol = policy_ok(&q, &small_shape);
	assert_string_equal(kvc_policy_name(pol), "full");
	assert_int_equal(kvc_policy_decode_metric(pol), KVC_METRIC_NONE);
	kvc_policy_observe(pol, &obs);
	assert_int_equal(obs.metric, KVC_METRIC_NONE);
	kvc_policy_destroy(pol);
	q.name = "window";
	pol = policy_ok(&q, &small_shape);
	assert_string_equal(kvc_policy_name(pol), "window");
	assert_int_equal(kvc_policy_decode_metric(pol), KVC_METRIC_NONE);
	kvc_policy_destroy(pol);
	kvc_policy_destroy(NULL);

	/* What prefill and decode collect for kvcompress, from params. */
	q = p;
	q.metric = KVC_METRIC_AVG;
	q.observe_window = 32;
	q.buffer = 10;
	q.pool_kernel = 7;
	pol = policy_ok(&q, &small_shape);
	assert_string_equal(kvc_policy_name(pol), "kvcompress");
	kvc_policy_observe(pol, &obs);
	assert_int_equal(obs.metric, KVC_METRIC_AVG);
	EXPECT_U64(obs.window, 32);
	EXPECT_U64(obs.buffer, 10);
	EXPECT_U64(obs.pool_kernel, 7);
	assert_int_equal(kvc_policy_decode_metric(pol), KVC_METRIC_AVG);
	kvc_policy_destroy(pol);
}

static void test_keep_tokens(void **state)
{
	struct kvc_policy_params p;
	struct kvc_policy *pol;

	(void)state;
	kvc_policy_params_init(&p);
	pol = policy_ok(&p, &small_shape);
	/* rate 8, window 32: 32 + ceil(68 / 8) = 41. */
	EXPECT_U64(kvc_policy_keep_tokens(pol, 100), 41);
	EXPECT_U64(kvc_policy_keep_tokens(pol, 32), 32);
	EXPECT_U64(kvc_policy_keep_tokens(pol, 20), 20);
	EXPECT_U64(kvc_policy_keep_tokens(pol, 0), 0);
	EXPECT_U64(kvc_policy_keep_tokens(pol, 33), 33);
	EXPECT_U64(kvc_policy_keep_tokens(pol, 41), 34);
	kvc_policy_destroy(pol);
	p.rate = 3;
	p.sinks = 4;
	p.protected_window = 4;
	pol = policy_ok(&p, &small_shape);
	EXPECT_U64(kvc_policy_keep_tokens(pol, 38), 8 + 10);
	EXPECT_U64(kvc_policy_keep_tokens(pol, 39), 8 + 11);
	kvc_policy_destroy(pol);
	p.rate = 0;
	p.max_cache_tokens = 50;
	pol = policy_ok(&p, &small_shape);
	EXPECT_U64(kvc_policy_keep_tokens(pol, 100), 50);
	EXPECT_U64(kvc_policy_keep_tokens(pol, 30), 30);
	kvc_policy_destroy(pol);
}

static void test_due(void **state)
{
	struct kvc_policy_params p;
	struct kvc_policy *pol;
	uint32_t steps;

	(void)state;
	kvc_policy_params_init(&p);
	/* Continual, every block_size (8) steps by default. */
	pol = policy_ok(&p, &small_shape);
	for (steps = 0; steps < 40; steps++)
		assert_int_equal(kvc_policy_due(pol, NULL, steps),
				 steps % 8 == 0);
	kvc_policy_destroy(pol);
	p.interval = 5;
	pol = policy_ok(&p, &small_shape);
	for (steps = 0; steps < 40; steps++)
		assert_int_equal(kvc_policy_due(pol, NULL, steps),
				 steps % 5 == 0);
	kvc_policy_destroy(pol);
	/* compress_once: only right after prefill. */
	p.interval = 0;
	p.compress_once = true;
	pol = policy_ok(&p, &small_shape);
	assert_true(kvc_policy_due(pol, NULL, 0));
	for (steps = 1; steps < 40; steps++)
		assert_false(kvc_policy_due(pol, NULL, steps));
	kvc_policy_destroy(pol);
	/* "full": never. */
	p.name = "full";
	pol = policy_ok(&p, &small_shape);
	for (steps = 0; steps < 40; steps++)
		assert_false(kvc_policy_due(pol, NULL, steps));
	kvc_policy_destroy(pol);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_apply_ragged, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_apply_movecache_order,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_apply_invalid, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_apply_random, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_kvcompress_hand_max_tokens,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_kvcompress_hand_which_kvs,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_kvcompress_hand_rate,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_kvcompress_protected,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_kvcompress_ties, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_kvcompress_avg, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_kvcompress_random, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_compress_errors, setup,
						teardown),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_keep_tokens),
		cmocka_unit_test(test_due),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
