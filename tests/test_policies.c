/* Description: eviction policies of policies.c (full, streamingllm, h2o, snapkv, pyramidkv, pyramidinfer, window): per-layer and per-head budgets from their formulas, which positions survive, protected KVs survive, ties by position, window layer lists, pool and cache invariants */
// SPDX-License-Identifier: MIT
/*
 * Tests of the policies in runtime/policies.c through kvc_policy_create()
 * and kvc_policy_compress(), on a real cache over the host backend. Each
 * test appends tokens, writes known metrics into the slot metadata, and
 * compresses. Expected lengths per (layer, head) are computed by hand from
 * the formulas (see the comment above each); which positions survive is
 * checked against a brute-force ranking (a KV survives when fewer than k
 * candidates outrank it), independent of the sort the policies use.
 * After every operation: kvc_kv_check(), and the pool's live blocks equal
 * the sum of the tables' blocks.
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
/* Positions a test sequence reaches at most. */
#define MAX_POS 160
#define MAX_TABLES 8

/* 4 layers x 2 KV heads, 8 tokens per block. */
static const struct kvc_model_shape shape4 = {
	.layers = 4,
	.q_heads = 4,
	.kv_heads = 2,
	.head_dim = 64,
	.block_size = 8,
	.dtype = KVC_DTYPE_F32,
};

struct fixture {
	struct kvc_backend *be;
	struct kvc_kv *kv;
	struct kvc_seq *seq;
	struct kvc_policy *pol;
};

/* What a head held before a compression: position and metric per slot. */
struct head_snap {
	uint32_t len;
	int32_t pos[MAX_POS];
	float metric[MAX_POS];
};

/* ------------------------------------------------------------------ */
/* helpers */

/* kvc_kv_check(), and pool live blocks == the sum of the tables' blocks. */
static void check_kv(struct kvc_kv *kv, const struct kvc_seq *seq,
		     const char *file, int line)
{
	const struct kvc_model_shape *s = kvc_kv_shape(kv);
	struct kvc_pool_stats st;
	uint64_t blocks = 0;
	uint32_t l, h, nr;
	int err = kvc_kv_check(kv);

	if (err)
		fail_msg("%s:%d: kvc_kv_check() = %d: %s", file, line, err,
			 kvc_last_error());
	if (!seq)
		return;
	for (l = 0; l < s->layers; l++)
		for (h = 0; h < s->kv_heads; h++) {
			kvc_seq_table(seq, l, h, &nr);
			blocks += nr;
			if (nr != (kvc_seq_len(seq, l, h) + s->block_size - 1) /
					  s->block_size)
				fail_msg("%s:%d: layer %u head %u: %u blocks "
					 "for %u KVs",
					 file, line, l, h, nr,
					 kvc_seq_len(seq, l, h));
		}
	kvc_pool_get_stats(kvc_kv_pool(kv), &st, NULL);
	if (st.blocks_live != blocks)
		fail_msg("%s:%d: pool has %" PRIu64 " live blocks, tables "
			 "hold %" PRIu64,
			 file, line, st.blocks_live, blocks);
}

#define CHECK_ALL(fx) check_kv((fx)->kv, (fx)->seq, __FILE__, __LINE__)

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
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	kvc_policy_destroy(fx->pol);
	kvc_seq_destroy(fx->seq);
	kvc_kv_destroy(fx->kv);
	kvc_backend_close(fx->be);
	free(fx);
	return 0;
}

/* A cache of @shape and an empty sequence in it (any previous one goes). */
static void open_kv(struct fixture *fx, const struct kvc_model_shape *shape)
{
	struct kvc_kv_params params = {
		.shape = *shape,
		.capacity_blocks = 512,
		.backend_kind = KVC_BACKEND_HOST,
		.backend = fx->be,
		.flags = KVC_POOL_NO_STATS_PAGE,
	};
	int err;

	kvc_seq_destroy(fx->seq);
	fx->seq = NULL;
	kvc_kv_destroy(fx->kv);
	fx->kv = NULL;
	err = kvc_kv_create(&params, &fx->kv);
	if (err)
		fail_msg("kvc_kv_create() = %d: %s", err, kvc_last_error());
	err = kvc_seq_create(fx->kv, &fx->seq);
	if (err)
		fail_msg("kvc_seq_create() = %d: %s", err, kvc_last_error());
	CHECK_ALL(fx);
}

static uint32_t nr_tables(const struct kvc_model_shape *s)
{
	return s->layers * s->kv_heads;
}

static struct kvc_slot_meta *meta_at(struct fixture *fx, uint32_t layer,
				     uint32_t head, uint32_t slot)
{
	uint32_t bs = kvc_kv_shape(fx->kv)->block_size, nr;
	const uint32_t *table = kvc_seq_table(fx->seq, layer, head, &nr);

	assert_true(slot / bs < nr);
	return &fx->kv->meta[(uint64_t)table[slot / bs] * bs + slot % bs];
}

/* Append @n tokens (K and V are zeros: the policies read only metadata). */
static void append(struct fixture *fx, uint32_t n)
{
	const struct kvc_model_shape *s = kvc_kv_shape(fx->kv);
	size_t count = (size_t)nr_tables(s) * n * s->head_dim;
	float *k = calloc(count, sizeof(float));
	float *v = calloc(count, sizeof(float));
	int err;

	assert_non_null(k);
	assert_non_null(v);
	err = kvc_seq_append(fx->seq, n, k, v);
	free(k);
	free(v);
	if (err)
		fail_msg("kvc_seq_append(%u) = %d: %s", n, err,
			 kvc_last_error());
	CHECK_ALL(fx);
}

/*
 * The metric of position @pos in table @t: 1 .. 127, distinct within a
 * table for positions below 127, different orders in different tables.
 */
static float metric_of(uint32_t t, int32_t pos)
{
	return (float)(((uint32_t)pos * 37u + t * 11u) % 127u + 1u);
}

/* Write metric_of() into every slot; protected positions get 0, lowest. */
static void set_metrics(struct fixture *fx, uint32_t sinks, uint32_t window)
{
	const struct kvc_model_shape *s = kvc_kv_shape(fx->kv);
	uint32_t tokens = kvc_seq_tokens(fx->seq), l, h, i;
	struct kvc_slot_meta *m;

	for (l = 0; l < s->layers; l++)
		for (h = 0; h < s->kv_heads; h++)
			for (i = 0; i < kvc_seq_len(fx->seq, l, h); i++) {
				m = meta_at(fx, l, h, i);
				if (m->pos < (int32_t)sinks ||
				    (int64_t)m->pos >= (int64_t)tokens - window)
					m->metric = 0;
				else
					m->metric = metric_of(
						l * s->kv_heads + h, m->pos);
			}
}

static void set_all_metrics(struct fixture *fx, float value)
{
	const struct kvc_model_shape *s = kvc_kv_shape(fx->kv);
	uint32_t l, h, i;

	for (l = 0; l < s->layers; l++)
		for (h = 0; h < s->kv_heads; h++)
			for (i = 0; i < kvc_seq_len(fx->seq, l, h); i++)
				meta_at(fx, l, h, i)->metric = value;
}

static void snap_head(struct fixture *fx, uint32_t layer, uint32_t head,
		      struct head_snap *hs)
{
	const struct kvc_slot_meta *m;
	uint32_t i;

	hs->len = kvc_seq_len(fx->seq, layer, head);
	assert_true(hs->len <= MAX_POS);
	for (i = 0; i < hs->len; i++) {
		m = meta_at(fx, layer, head, i);
		hs->pos[i] = m->pos;
		hs->metric[i] = m->metric;
	}
}

static void snap_all(struct fixture *fx, struct head_snap *hs)
{
	const struct kvc_model_shape *s = kvc_kv_shape(fx->kv);
	uint32_t l, h;

	for (l = 0; l < s->layers; l++)
		for (h = 0; h < s->kv_heads; h++)
			snap_head(fx, l, h, &hs[l * s->kv_heads + h]);
}

/*
 * Which positions of @hs survive when the positions below @sinks or at
 * or after @keep_from are kept outright and the @k best of the others
 * are kept by metric (higher first, then the later position): a KV is
 * kept when fewer than @k candidates outrank it.
 */
static void oracle_rank(const struct head_snap *hs, uint32_t sinks,
			int64_t keep_from, uint32_t k, bool *keep)
{
	uint32_t i, j, above;

	memset(keep, 0, MAX_POS * sizeof(*keep));
	for (i = 0; i < hs->len; i++) {
		if (hs->pos[i] < (int32_t)sinks || hs->pos[i] >= keep_from) {
			keep[hs->pos[i]] = true;
			continue;
		}
		above = 0;
		for (j = 0; j < hs->len; j++) {
			if (j == i || hs->pos[j] < (int32_t)sinks ||
			    hs->pos[j] >= keep_from)
				continue;
			if (hs->metric[j] > hs->metric[i] ||
			    (hs->metric[j] == hs->metric[i] &&
			     hs->pos[j] > hs->pos[i]))
				above++;
		}
		if (above < k)
			keep[hs->pos[i]] = true;
	}
}

/* Positions of @hs below @sinks or at or after @keep_from survive. */
static void oracle_window(const struct head_snap *hs, uint32_t sinks,
			  int64_t keep_from, bool *keep)
{
	oracle_rank(hs, sinks, keep_from, 0, keep);
}

/* Every position of @hs survives. */
static void oracle_all(const struct head_snap *hs, bool *keep)
{
	oracle_rank(hs, 0, 0, 0, keep);
}

#define CHECK_HEAD(fx, layer, head, keep, want) \
	check_head(fx, layer, head, keep, want, __FILE__, __LINE__)

/*
 * (@layer, @head) holds exactly @want KVs, with exactly the positions
 * marked in @keep, each once, with the metric it had (@hs).
 */
static void check_head(struct fixture *fx, uint32_t layer, uint32_t head,
		       const bool *keep, uint32_t want, const char *file,
		       int line)
{
	uint32_t len = kvc_seq_len(fx->seq, layer, head), marked = 0, i;
	bool seen[MAX_POS] = { false };
	const struct kvc_slot_meta *m;

	for (i = 0; i < MAX_POS; i++)
		marked += keep[i];
	if (marked != want)
		fail_msg("%s:%d: layer %u head %u: the ranking keeps %u "
			 "positions, the formula %u",
			 file, line, layer, head, marked, want);
	if (len != want)
		fail_msg("%s:%d: layer %u head %u holds %u KVs, expected %u",
			 file, line, layer, head, len, want);
	for (i = 0; i < len; i++) {
		m = meta_at(fx, layer, head, i);
		if (m->pos < 0 || m->pos >= MAX_POS || !keep[m->pos] ||
		    seen[m->pos])
			fail_msg("%s:%d: layer %u head %u slot %u holds "
				 "position %d: %s",
				 file, line, layer, head, i, m->pos,
				 m->pos >= 0 && m->pos < MAX_POS &&
						 seen[m->pos] ?
					 "twice" :
					 "it should have been dropped");
		seen[m->pos] = true;
	}
}

/* The metric each survivor carries is the one it had before. */
static void check_metrics_moved(struct fixture *fx, const struct head_snap *hs)
{
	const struct kvc_model_shape *s = kvc_kv_shape(fx->kv);
	const struct kvc_slot_meta *m;
	uint32_t l, h, i, j;

	for (l = 0; l < s->layers; l++)
		for (h = 0; h < s->kv_heads; h++) {
			const struct head_snap *b = &hs[l * s->kv_heads + h];

			for (i = 0; i < kvc_seq_len(fx->seq, l, h); i++) {
				m = meta_at(fx, l, h, i);
				for (j = 0; j < b->len; j++)
					if (b->pos[j] == m->pos)
						break;
				assert_true(j < b->len);
				assert_true(b->metric[j] == m->metric ||
					    (isnan(b->metric[j]) &&
					     isnan(m->metric)));
			}
		}
}

static struct kvc_policy_params params_for(const char *name)
{
	struct kvc_policy_params p;

	kvc_policy_params_init(&p);
	p.name = name;
	return p;
}

#define POLICY_OK(fx, p) policy_ok(fx, p, __FILE__, __LINE__)

static void policy_ok(struct fixture *fx, const struct kvc_policy_params *p,
		      const char *file, int line)
{
	int err;

	kvc_policy_destroy(fx->pol);
	fx->pol = NULL;
	err = kvc_policy_create(p, kvc_kv_shape(fx->kv), &fx->pol);
	if (err)
		fail_msg("%s:%d: kvc_policy_create(%s) = %d, expected 0: %s",
			 file, line, p->name, err, kvc_last_error());
	assert_string_equal(kvc_policy_name(fx->pol), p->name);
}

#define POLICY_BAD(fx, p, what) policy_bad(fx, p, what, __FILE__, __LINE__)

/* Creating @p fails with -EINVAL and a message containing @what. */
static void policy_bad(struct fixture *fx, const struct kvc_policy_params *p,
		       const char *what, const char *file, int line)
{
	struct kvc_policy *pol = NULL;
	int err = kvc_policy_create(p, kvc_kv_shape(fx->kv), &pol);

	if (err != -EINVAL) {
		kvc_policy_destroy(pol);
		fail_msg("%s:%d: kvc_policy_create(%s) = %d, expected "
			 "-EINVAL",
			 file, line, p->name, err);
	}
	if (!strstr(kvc_last_error(), what))
		fail_msg("%s:%d: message \"%s\" does not say \"%s\"", file,
			 line, kvc_last_error(), what);
}

#define COMPRESS_OK(fx, st) compress_ok(fx, st, __FILE__, __LINE__)

static void compress_ok(struct fixture *fx, struct kvc_evict_stats *st,
			const char *file, int line)
{
	int err = kvc_policy_compress(fx->pol, fx->seq, st);

	if (err)
		fail_msg("%s:%d: kvc_policy_compress(%s) = %d: %s", file, line,
			 kvc_policy_name(fx->pol), err, kvc_last_error());
	check_kv(fx->kv, fx->seq, file, line);
}

/* ------------------------------------------------------------------ */
/* full */

static void test_full(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy_params p = params_for("full");
	struct head_snap hs[MAX_TABLES];
	struct kvc_evict_stats st;
	bool keep[MAX_POS];
	uint32_t t;

	open_kv(fx, &shape4);
	append(fx, 100);
	set_metrics(fx, 0, 32);
	snap_all(fx, hs);
	POLICY_OK(fx, &p);
	assert_int_equal(kvc_policy_decode_metric(fx->pol), KVC_METRIC_NONE);
	COMPRESS_OK(fx, &st);
	EXPECT_U64(st.kvs_before, 8 * 100);
	EXPECT_U64(st.kvs_after, 8 * 100);
	EXPECT_U64(st.blocks_freed, 0);
	EXPECT_U64(st.kvs_moved, 0);
	for (t = 0; t < 8; t++) {
		oracle_all(&hs[t], keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 100);
	}
}

/* ------------------------------------------------------------------ */
/* streamingllm */

/*
 * sinks 0 means 4; window_tokens 16, protected window 8: every head keeps
 * positions 0-3 and 84-99, 20 KVs in 3 blocks (13 before: 80 freed).
 * After 10 more tokens (110): 0-3 and 94-109. The second round reads
 * positions from the metadata, since the first one reordered slots.
 */
static void test_streamingllm(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy_params p = params_for("streamingllm");
	struct head_snap hs[MAX_TABLES];
	struct kvc_evict_stats st;
	bool keep[MAX_POS];
	uint32_t t;

	open_kv(fx, &shape4);
	append(fx, 100);
	set_metrics(fx, 0, 0);
	snap_all(fx, hs);
	p.window_tokens = 16;
	p.protected_window = 8;
	POLICY_OK(fx, &p);
	assert_int_equal(fx->pol->p.sinks, 4);
	assert_int_equal(kvc_policy_decode_metric(fx->pol), KVC_METRIC_NONE);
	COMPRESS_OK(fx, &st);
	EXPECT_U64(st.kvs_before, 800);
	EXPECT_U64(st.kvs_after, 8 * 20);
	EXPECT_U64(st.blocks_freed, 8 * (13 - 3));
	for (t = 0; t < 8; t++) {
		oracle_window(&hs[t], 4, 84, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 20);
	}
	check_metrics_moved(fx, hs);

	append(fx, 10);
	snap_all(fx, hs);
	COMPRESS_OK(fx, &st);
	EXPECT_U64(st.kvs_before, 8 * 30);
	EXPECT_U64(st.kvs_after, 8 * 20);
	for (t = 0; t < 8; t++) {
		oracle_window(&hs[t], 4, 94, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 20);
	}
	/* Nothing more to drop: a second compression changes nothing. */
	COMPRESS_OK(fx, &st);
	EXPECT_U64(st.kvs_after, st.kvs_before);
	EXPECT_U64(st.kvs_moved, 0);
}

/*
 * Explicit sinks 2 are used as given: 0-1 and 84-99 (18). A protected
 * window wider than window_tokens wins: sinks 4 (default), protected 32,
 * window 16: 0-3 and 68-99 (36).
 */
static void test_streamingllm_sinks_and_protected(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy_params p = params_for("streamingllm");
	struct head_snap hs[MAX_TABLES];
	bool keep[MAX_POS];
	uint32_t t;

	open_kv(fx, &shape4);
	append(fx, 100);
	snap_all(fx, hs);
	p.window_tokens = 16;
	p.protected_window = 8;
	p.sinks = 2;
	POLICY_OK(fx, &p);
	assert_int_equal(fx->pol->p.sinks, 2);
	COMPRESS_OK(fx, NULL);
	for (t = 0; t < 8; t++) {
		oracle_window(&hs[t], 2, 84, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 18);
	}

	open_kv(fx, &shape4);
	append(fx, 100);
	snap_all(fx, hs);
	p.sinks = 0;
	p.protected_window = 32;
	POLICY_OK(fx, &p);
	COMPRESS_OK(fx, NULL);
	for (t = 0; t < 8; t++) {
		oracle_window(&hs[t], 4, 68, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 36);
	}

	p.window_tokens = 0;
	POLICY_BAD(fx, &p, "window_tokens");
}

/* ------------------------------------------------------------------ */
/* h2o */

/*
 * max_cache_tokens 40, protected window 8, 100 tokens: C = 40, so each
 * head keeps 92-99 and its 32 best of 0-91. After 20 more tokens (120):
 * C is still 40: 112-119 and the 32 best of what it holds below 112.
 * Then sinks 4 on a fresh sequence: 12 protected, 28 by metric.
 */
static void test_h2o(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy_params p = params_for("h2o");
	struct head_snap hs[MAX_TABLES];
	struct kvc_evict_stats st;
	bool keep[MAX_POS];
	uint32_t t;

	open_kv(fx, &shape4);
	append(fx, 100);
	set_metrics(fx, 0, 8);
	snap_all(fx, hs);
	p.rate = 0;
	p.max_cache_tokens = 40;
	p.protected_window = 8;
	p.metric = KVC_METRIC_L1;
	POLICY_OK(fx, &p);
	assert_int_equal(kvc_policy_keep_tokens(fx->pol, 100), 40);
	assert_int_equal(kvc_policy_decode_metric(fx->pol), KVC_METRIC_L1);
	COMPRESS_OK(fx, &st);
	EXPECT_U64(st.kvs_after, 8 * 40);
	EXPECT_U64(st.blocks_freed, 8 * (13 - 5));
	for (t = 0; t < 8; t++) {
		oracle_rank(&hs[t], 0, 92, 32, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 40);
	}
	check_metrics_moved(fx, hs);

	/* Decode: 20 more tokens, metrics rewritten, compress again. */
	append(fx, 20);
	set_metrics(fx, 0, 8);
	snap_all(fx, hs);
	COMPRESS_OK(fx, &st);
	EXPECT_U64(st.kvs_before, 8 * 60);
	EXPECT_U64(st.kvs_after, 8 * 40);
	for (t = 0; t < 8; t++) {
		oracle_rank(&hs[t], 0, 112, 32, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 40);
	}

	open_kv(fx, &shape4);
	append(fx, 100);
	set_metrics(fx, 4, 8);
	snap_all(fx, hs);
	p.sinks = 4;
	POLICY_OK(fx, &p);
	COMPRESS_OK(fx, NULL);
	for (t = 0; t < 8; t++) {
		oracle_rank(&hs[t], 4, 92, 28, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 40);
	}
}

/*
 * rate 4, protected 8, 100 tokens: C = 8 + ceil(92 / 4) = 31, so 23 by
 * metric. Equal metrics: the later positions win the ties, 69-91.
 */
static void test_h2o_rate_and_ties(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy_params p = params_for("h2o");
	struct head_snap hs[MAX_TABLES];
	bool keep[MAX_POS];
	uint32_t t;

	open_kv(fx, &shape4);
	append(fx, 100);
	set_all_metrics(fx, 1.0f);
	snap_all(fx, hs);
	p.rate = 4;
	p.protected_window = 8;
	POLICY_OK(fx, &p);
	assert_int_equal(kvc_policy_keep_tokens(fx->pol, 100), 31);
	COMPRESS_OK(fx, NULL);
	for (t = 0; t < 8; t++) {
		oracle_window(&hs[t], 0, 69, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 31);
	}
}

/*
 * A NaN metric ranks as +inf (kept, as kvcompress.c ranks it), and a head
 * that holds fewer KVs than its budget keeps them all: a window policy
 * first cuts layers 1-2 to 16, then h2o with C = 40 keeps those 16 and
 * 40 in layers 0 and 3.
 */
static void test_h2o_nan_and_short_heads(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy_params p = params_for("window");
	struct head_snap hs[MAX_TABLES];
	bool keep[MAX_POS];
	uint32_t t, i, l;

	open_kv(fx, &shape4);
	append(fx, 100);
	p.window_tokens = 16;
	p.protected_window = 8;
	p.window_layers = "1-2";
	POLICY_OK(fx, &p);
	COMPRESS_OK(fx, NULL);

	set_metrics(fx, 0, 8);
	/* Position 0 of every head: NaN, so it must survive. */
	for (t = 0; t < 8; t++)
		for (i = 0; i < kvc_seq_len(fx->seq, t / 2, t % 2); i++)
			if (meta_at(fx, t / 2, t % 2, i)->pos == 0)
				meta_at(fx, t / 2, t % 2, i)->metric = NAN;
	snap_all(fx, hs);
	p = params_for("h2o");
	p.rate = 0;
	p.max_cache_tokens = 40;
	p.protected_window = 8;
	POLICY_OK(fx, &p);
	COMPRESS_OK(fx, NULL);
	for (t = 0; t < 8; t++) {
		l = t / 2;
		if (l == 1 || l == 2) {
			oracle_all(&hs[t], keep);
			CHECK_HEAD(fx, l, t % 2, keep, 16);
			continue;
		}
		/* Position 0 kept outright, then 31 of 1-91. */
		oracle_rank(&hs[t], 1, 92, 31, keep);
		CHECK_HEAD(fx, l, t % 2, keep, 40);
	}
	check_metrics_moved(fx, hs);
}

/*
 * params.metric AVG: the score is metric / (tokens - pos). Metrics are
 * (100 - pos) * metric_of(), so the ranking must follow metric_of().
 */
static void test_h2o_avg_metric(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy_params p = params_for("h2o");
	struct head_snap hs[MAX_TABLES];
	bool keep[MAX_POS];
	struct kvc_slot_meta *m;
	uint32_t t, i;

	open_kv(fx, &shape4);
	append(fx, 100);
	set_metrics(fx, 0, 8);
	snap_all(fx, hs);
	for (t = 0; t < 8; t++)
		for (i = 0; i < 100; i++) {
			m = meta_at(fx, t / 2, t % 2, i);
			m->metric *= (float)(100 - m->pos);
		}
	p.rate = 0;
	p.max_cache_tokens = 40;
	p.protected_window = 8;
	p.metric = KVC_METRIC_AVG;
	POLICY_OK(fx, &p);
	COMPRESS_OK(fx, NULL);
	for (t = 0; t < 8; t++) {
		oracle_rank(&hs[t], 0, 92, 32, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 40);
	}
}

/* ------------------------------------------------------------------ */
/* snapkv */

/*
 * SnapKV's own observation: window 32, pool 7 (the parameters are used as
 * given). max_cache_tokens 40, protected 8, 100 tokens: the window 68-99
 * (32, the protected 92-99 inside) and the 8 best of 0-67. With
 * observe_window 0 no window besides the protected one: 92-99 and 32 of
 * 0-91. With observe_window 48 > C: the window alone, 52-99 (48).
 */
static void test_snapkv(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy_params p = params_for("snapkv");
	struct head_snap hs[MAX_TABLES];
	struct kvc_observe obs;
	bool keep[MAX_POS];
	uint32_t t;

	open_kv(fx, &shape4);
	append(fx, 100);
	set_metrics(fx, 0, 8);
	snap_all(fx, hs);
	p.rate = 0;
	p.max_cache_tokens = 40;
	p.protected_window = 8;
	p.metric = KVC_METRIC_L1;
	p.observe_window = 32;
	p.pool_kernel = 7;
	POLICY_OK(fx, &p);
	kvc_policy_observe(fx->pol, &obs);
	assert_int_equal(obs.metric, KVC_METRIC_L1);
	assert_int_equal(obs.window, 32);
	assert_int_equal(obs.pool_kernel, 7);
	COMPRESS_OK(fx, NULL);
	for (t = 0; t < 8; t++) {
		oracle_rank(&hs[t], 0, 68, 8, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 40);
	}

	open_kv(fx, &shape4);
	append(fx, 100);
	set_metrics(fx, 0, 8);
	snap_all(fx, hs);
	p.observe_window = 0;
	POLICY_OK(fx, &p);
	COMPRESS_OK(fx, NULL);
	for (t = 0; t < 8; t++) {
		oracle_rank(&hs[t], 0, 92, 32, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 40);
	}

	open_kv(fx, &shape4);
	append(fx, 100);
	set_metrics(fx, 0, 8);
	snap_all(fx, hs);
	p.observe_window = 48;
	POLICY_OK(fx, &p);
	COMPRESS_OK(fx, NULL);
	for (t = 0; t < 8; t++) {
		oracle_window(&hs[t], 0, 52, keep);
		CHECK_HEAD(fx, t / 2, t % 2, keep, 48);
	}
}

/* ------------------------------------------------------------------ */
/* pyramidkv */

/* Compress a fresh 100-token sequence; layer l must keep @want[l]. */
static void pyramid_case(struct fixture *fx,
			 const struct kvc_model_shape *shape,
			 const struct kvc_policy_params *p, uint32_t sinks,
			 uint32_t window, const uint32_t *k,
			 const uint32_t *want)
{
	struct head_snap hs[MAX_TABLES];
	uint32_t t, l, h, heads = shape->kv_heads;
	bool keep[MAX_POS];

	open_kv(fx, shape);
	append(fx, 100);
	set_metrics(fx, sinks, window);
	snap_all(fx, hs);
	POLICY_OK(fx, p);
	COMPRESS_OK(fx, NULL);
	for (t = 0; t < nr_tables(shape); t++) {
		l = t / heads;
		h = t % heads;
		oracle_rank(&hs[t], sinks, 100 - window, k[l], keep);
		CHECK_HEAD(fx, l, h, keep, want[l]);
	}
}

/*
 * C = 40 (max_cache_tokens), w = 8, b = 32, L = 4.
 * beta 20: k_min = 1.6, k_max = 62.4, step 60.8 / 3 = 20.2667:
 *   k_l = 62.4, 42.133, 21.867, 1.6 -> 62, 42, 21, 1 (+ 8: 70, 50, 29, 9).
 * beta 2: k_min = 16, k_max = 48, step 32 / 3: 48, 37.33, 26.67, 16
 *   -> 48, 37, 26, 16 (+ 8: 56, 45, 34, 24).
 * C = 90, beta 20: b = 82, k_min = 4.1, k_max = 159.9, step 51.933:
 *   159.9, 107.97, 56.03, 4.1 -> capped at the 92 unprotected KVs in
 *   layers 0 and 1 (all 100 kept), 56 + 8 = 64, 4 + 8 = 12.
 * beta 1: every layer b = 32 (40).
 * Sinks 4 count as protected: w = 12, b = 28, beta 20: k_min 1.4,
 *   k_max 54.6, step 17.733: 54.6, 36.87, 19.13, 1.4 -> 54, 36, 19, 1
 *   (+ 12: 66, 48, 31, 13).
 */
static void test_pyramidkv(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy_params p = params_for("pyramidkv");
	static const uint32_t k20[] = { 62, 42, 21, 1 };
	static const uint32_t want20[] = { 70, 50, 29, 9 };
	static const uint32_t k2[] = { 48, 37, 26, 16 };
	static const uint32_t want2[] = { 56, 45, 34, 24 };
	static const uint32_t k90[] = { 92, 92, 56, 4 };
	static const uint32_t want90[] = { 100, 100, 64, 12 };
	static const uint32_t k1[] = { 32, 32, 32, 32 };
	static const uint32_t want1[] = { 40, 40, 40, 40 };
	static const uint32_t ks[] = { 54, 36, 19, 1 };
	static const uint32_t wants[] = { 66, 48, 31, 13 };
	uint32_t l, sum = 0;

	p.rate = 0;
	p.max_cache_tokens = 40;
	p.protected_window = 8;
	p.metric = KVC_METRIC_L1;
	pyramid_case(fx, &shape4, &p, 0, 8, k20, want20);
	for (l = 0; l < 4; l++)
		sum += kvc_seq_len(fx->seq, l, 0);
	/* The layers together keep no more than L * C. */
	assert_true(sum <= 4 * 40);

	p.pyramid_beta = 2;
	pyramid_case(fx, &shape4, &p, 0, 8, k2, want2);

	p.pyramid_beta = 20;
	p.max_cache_tokens = 90;
	pyramid_case(fx, &shape4, &p, 0, 8, k90, want90);

	p.pyramid_beta = 1;
	p.max_cache_tokens = 40;
	pyramid_case(fx, &shape4, &p, 0, 8, k1, want1);

	p.pyramid_beta = 20;
	p.sinks = 4;
	pyramid_case(fx, &shape4, &p, 4, 8, ks, wants);
}

/* One layer: k_0 = b = 40 - 8 = 32. Bad betas are refused. */
static void test_pyramidkv_one_layer_and_bad_beta(void **state)
{
	struct fixture *fx = *state;
	struct kvc_model_shape one = shape4;
	struct kvc_policy_params p = params_for("pyramidkv");
	static const uint32_t k[] = { 32 };
	static const uint32_t want[] = { 40 };

	one.layers = 1;
	p.rate = 0;
	p.max_cache_tokens = 40;
	p.protected_window = 8;
	pyramid_case(fx, &one, &p, 0, 8, k, want);

	p.pyramid_beta = 0.5;
	POLICY_BAD(fx, &p, "pyramid_beta");
	p.pyramid_beta = NAN;
	POLICY_BAD(fx, &p, "pyramid_beta");
	p.pyramid_beta = INFINITY;
	POLICY_BAD(fx, &p, "pyramid_beta");
}

/* ------------------------------------------------------------------ */
/* pyramidinfer */

/*
 * 100 tokens, protected 8: n = 92 unprotected. rho_l = (1 - rho)(cos(pi
 * l / 4) + 1) / 2 + rho.
 * rho 0.1: rho_l = 1, 0.868198, 0.55, 0.231802; times 92: 92, 79.87,
 *   50.6, 21.33 -> 92, 79, 50, 21 (+ 8: 100, 87, 58, 29).
 * rho 0: 1, 0.853553, 0.5, 0.146447 -> 92, 78.53, 46, 13.47 -> 92, 78,
 *   46, 13 (+ 8: 100, 86, 54, 21).
 * rho 1: every layer keeps everything.
 */
static void test_pyramidinfer(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy_params p = params_for("pyramidinfer");
	static const uint32_t k01[] = { 92, 79, 50, 21 };
	static const uint32_t want01[] = { 100, 87, 58, 29 };
	static const uint32_t k0[] = { 92, 78, 46, 13 };
	static const uint32_t want0[] = { 100, 86, 54, 21 };
	static const uint32_t k1[] = { 92, 92, 92, 92 };
	static const uint32_t want1[] = { 100, 100, 100, 100 };

	p.protected_window = 8;
	p.metric = KVC_METRIC_L1;
	pyramid_case(fx, &shape4, &p, 0, 8, k01, want01);
	p.pyramid_rho = 0;
	pyramid_case(fx, &shape4, &p, 0, 8, k0, want0);
	p.pyramid_rho = 1;
	pyramid_case(fx, &shape4, &p, 0, 8, k1, want1);

	p.pyramid_rho = -0.1;
	POLICY_BAD(fx, &p, "pyramid_rho");
	p.pyramid_rho = 1.5;
	POLICY_BAD(fx, &p, "pyramid_rho");
	p.pyramid_rho = NAN;
	POLICY_BAD(fx, &p, "pyramid_rho");
}

/* ------------------------------------------------------------------ */
/* window */

/*
 * Compress a fresh 100-token sequence with window_tokens 16, protected 8
 * and @sinks: the layers marked in @windowed keep @sinks and 84-99.
 */
static void window_case(struct fixture *fx, const char *layers, uint32_t sinks,
			const bool *windowed)
{
	struct kvc_policy_params p = params_for("window");
	struct head_snap hs[MAX_TABLES];
	bool keep[MAX_POS];
	uint32_t t, l;

	open_kv(fx, &shape4);
	append(fx, 100);
	snap_all(fx, hs);
	p.window_tokens = 16;
	p.protected_window = 8;
	p.sinks = sinks;
	p.window_layers = layers;
	POLICY_OK(fx, &p);
	assert_int_equal(kvc_policy_decode_metric(fx->pol), KVC_METRIC_NONE);
	COMPRESS_OK(fx, NULL);
	for (t = 0; t < 8; t++) {
		l = t / 2;
		if (windowed[l]) {
			oracle_window(&hs[t], sinks, 84, keep);
			CHECK_HEAD(fx, l, t % 2, keep, 16 + sinks);
		} else {
			oracle_all(&hs[t], keep);
			CHECK_HEAD(fx, l, t % 2, keep, 100);
		}
	}
}

static void test_window_layers(void **state)
{
	struct fixture *fx = *state;
	static const bool mid[] = { false, true, true, false };
	static const bool last[] = { false, false, false, true };
	static const bool all[] = { true, true, true, true };
	static const bool odd[] = { true, false, true, true };

	window_case(fx, "1-2", 0, mid);
	window_case(fx, "1-2", 4, mid);
	window_case(fx, "3", 0, last);
	window_case(fx, NULL, 0, all);
	window_case(fx, "0-3", 0, all);
	window_case(fx, " 0 , 2-3 ", 0, odd);
	window_case(fx, "2,0,3,2", 0, odd);
	window_case(fx, "1-1,2", 0, mid);
}

static void test_window_bad_lists(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy_params p = params_for("window");
	static const struct {
		const char *list;
		const char *says;
	} bad[] = {
		{ "", "empty list" },
		{ "  ", "empty list" },
		{ "1-", "missing at the end" },
		{ "-1", "expected a layer number at offset 0" },
		{ "3-1", "runs backwards" },
		{ "4", "layer 4 is out of range" },
		{ "0-4", "layer 4 is out of range" },
		{ "0,,1", "expected a layer number at offset 2" },
		{ "0,", "missing at the end" },
		{ "a", "expected a layer number" },
		{ "1-2-3", "expected ',' at offset 3, found '-'" },
		{ "99999999999", "layer 99999999999 is out of range" },
		{ "1 2", "expected ',' or '-' at offset 2" },
		{ "0;1", "found ';'" },
		{ "+1", "found '+'" },
	};
	size_t i;

	open_kv(fx, &shape4);
	p.window_tokens = 16;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p.window_layers = bad[i].list;
		POLICY_BAD(fx, &p, bad[i].says);
		assert_non_null(strstr(kvc_last_error(), "window_layers"));
	}
	p.window_layers = "1";
	p.window_tokens = 0;
	POLICY_BAD(fx, &p, "window_tokens");
}

/* ------------------------------------------------------------------ */
/* every policy */

/*
 * Sinks 5 and protected window 20, protected metrics lowest (0) and a
 * budget below the protected count (max_cache_tokens 10): every policy
 * keeps every protected KV, and h2o and snapkv keep exactly those 25.
 */
static void test_protected_survive(void **state)
{
	struct fixture *fx = *state;
	static const char *const names[] = {
		"full",	     "streamingllm", "h2o",    "snapkv",
		"pyramidkv", "pyramidinfer", "window",
	};
	struct kvc_policy_params p;
	uint32_t i, t, s, pos, len;
	bool held[MAX_POS];

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		open_kv(fx, &shape4);
		append(fx, 100);
		set_metrics(fx, 5, 20);
		p = params_for(names[i]);
		p.sinks = 5;
		p.protected_window = 20;
		p.window_tokens = 1;
		p.observe_window = 0;
		p.pyramid_rho = 0;
		if (strcmp(names[i], "full") && strcmp(names[i], "window") &&
		    strcmp(names[i], "streamingllm")) {
			p.rate = 0;
			p.max_cache_tokens = 10;
		}
		POLICY_OK(fx, &p);
		COMPRESS_OK(fx, NULL);
		for (t = 0; t < 8; t++) {
			memset(held, 0, sizeof(held));
			len = kvc_seq_len(fx->seq, t / 2, t % 2);
			for (s = 0; s < len; s++)
				held[meta_at(fx, t / 2, t % 2, s)->pos] = true;
			for (pos = 0; pos < 100; pos++)
				if ((pos < 5 || pos >= 80) && !held[pos])
					fail_msg("%s dropped protected "
						 "position %u (table %u)",
						 names[i], pos, t);
			if (!strcmp(names[i], "h2o") ||
			    !strcmp(names[i], "snapkv") ||
			    !strcmp(names[i], "window") ||
			    !strcmp(names[i], "streamingllm"))
				EXPECT_U64(len, 25);
			if (!strcmp(names[i], "pyramidkv"))
				EXPECT_U64(len, 25);
		}
	}
}

/* A sequence of fewer tokens than the protected window: nothing goes. */
static void test_short_sequence(void **state)
{
	struct fixture *fx = *state;
	static const char *const names[] = {
		"streamingllm", "h2o",		"snapkv",
		"pyramidkv",	"pyramidinfer", "window",
	};
	struct kvc_policy_params p;
	struct kvc_evict_stats st;
	uint32_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		open_kv(fx, &shape4);
		append(fx, 20);
		set_metrics(fx, 0, 32);
		p = params_for(names[i]);
		p.window_tokens = 4;
		POLICY_OK(fx, &p);
		COMPRESS_OK(fx, &st);
		EXPECT_U64(st.kvs_after, 8 * 20);
		EXPECT_U64(st.blocks_freed, 0);
	}
	/* An empty sequence compresses to nothing. */
	open_kv(fx, &shape4);
	p = params_for("h2o");
	POLICY_OK(fx, &p);
	COMPRESS_OK(fx, &st);
	EXPECT_U64(st.kvs_before, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_streamingllm, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_streamingllm_sinks_and_protected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_h2o, setup, teardown),
		cmocka_unit_test_setup_teardown(test_h2o_rate_and_ties, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_h2o_nan_and_short_heads,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_h2o_avg_metric, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapkv, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pyramidkv, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_pyramidkv_one_layer_and_bad_beta, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pyramidinfer, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_window_layers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_window_bad_lists, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_protected_survive, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_short_sequence, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
