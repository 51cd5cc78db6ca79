/* Description: the synthetic workload (determinism whatever the cut into calls, the mix of head kinds, sink/local/heavy/diffuse structure seen through the real decode attention and its L1 metric) and the CSV trace reader (the Azure trace's format, column order, quotes, CRLF, every error with its message, max) */
// SPDX-License-Identifier: MIT
/*
 * Tests of runtime/workload.h and of kvc_trace_read().
 *
 * The structure tests run the generator's K, V and Q through a real cache
 * (host backend) and kvc_attn_decode() with the L1 metric, and read each
 * key's accumulated attention back from its slot: what an eviction policy
 * would see. Heavy positions are found from the keys alone (their norm
 * stands out), not from the generator's hash.
 *
 * The trace tests write their files into a temporary folder; the lines of
 * the Azure trace are copied here, so the test does not need ../shared.
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/attention.h>
#include <kvc/kv.h>
#include <kvc/kvc.h>
#include <kvc/run.h>

#include "../runtime/internal.h"
#include "../runtime/workload.h"

#define GRAN (64ull << 10)

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	assert_non_null(p);
	return p;
}

static struct kvc_synth *synth_open(const struct kvc_model_shape *shape,
				    uint64_t seed)
{
	struct kvc_synth *s = NULL;
	int err = kvc_synth_create(shape, seed, &s);

	if (err)
		fail_msg("kvc_synth_create() = %d: %s", err, kvc_last_error());
	assert_non_null(s);
	return s;
}

static const struct kvc_model_shape smol = {
	.layers = 30,
	.q_heads = 9,
	.kv_heads = 3,
	.head_dim = 64,
	.block_size = 16,
	.dtype = KVC_DTYPE_F16,
};

/* ------------------------------------------------------------------ */
/* the generator alone */

static void test_synth_args(void **state)
{
	struct kvc_model_shape bad = smol;
	struct kvc_synth *s = (struct kvc_synth *)&bad;

	assert_int_equal(kvc_synth_create(NULL, 1, &s), -EINVAL);
	assert_null(s);
	assert_int_equal(kvc_synth_create(&smol, 1, NULL), -EINVAL);
	bad.head_dim = 65;
	assert_int_equal(kvc_synth_create(&bad, 1, &s), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "head_dim"));
	bad = smol;
	bad.q_heads = 4;
	assert_int_equal(kvc_synth_create(&bad, 1, &s), -EINVAL);
	kvc_synth_destroy(NULL);
}

/*
 * Every shape gets 15/35/25/25% of its heads as sink/local/heavy/diffuse,
 * to within one head; which head gets which depends on the seed alone.
 */
static void test_kind_mix(void **state)
{
	static const uint32_t layers[] = { 1, 2, 4, 30, 100 };
	static const uint32_t kv_heads[] = { 1, 3, 8 };
	static const double share[4] = { 0.15, 0.35, 0.25, 0.25 };
	struct kvc_model_shape shape = smol;
	struct kvc_synth *s, *same, *other;
	uint32_t li, hi, l, h, k, n, count[4];
	uint32_t differ = 0;

	for (li = 0; li < sizeof(layers) / sizeof(layers[0]); li++)
		for (hi = 0; hi < sizeof(kv_heads) / sizeof(kv_heads[0]);
		     hi++) {
			shape.layers = layers[li];
			shape.kv_heads = kv_heads[hi];
			shape.q_heads = 2 * kv_heads[hi];
			n = shape.layers * shape.kv_heads;
			s = synth_open(&shape, 5);
			same = synth_open(&shape, 5);
			other = synth_open(&shape, 6);
			memset(count, 0, sizeof(count));
			for (l = 0; l < shape.layers; l++)
				for (h = 0; h < shape.kv_heads; h++) {
					k = kvc_synth_head_kind(s, l, h);
					assert_true(k <= KVC_HEAD_DIFFUSE);
					count[k]++;
					assert_int_equal(
						k, kvc_synth_head_kind(same, l,
								       h));
					differ += k != kvc_synth_head_kind(
							       other, l, h);
				}
			for (k = 0; k < 4; k++)
				if (fabs(count[k] - share[k] * n) >= 1.0)
					fail_msg(
						"%u heads: %u of kind %u, expected %.2f",
						n, count[k], k, share[k] * n);
			kvc_synth_destroy(s);
			kvc_synth_destroy(same);
			kvc_synth_destroy(other);
		}
	/*
	 * SmolLM2-135M's 90 heads: 13.5, 31.5, 22.5, 22.5; the two heads
	 * left go to the first kinds of equal remainder.
	 */
	s = synth_open(&smol, 1);
	memset(count, 0, sizeof(count));
	for (l = 0; l < smol.layers; l++)
		for (h = 0; h < smol.kv_heads; h++)
			count[kvc_synth_head_kind(s, l, h)]++;
	EXPECT_U64(count[KVC_HEAD_SINK], 14);
	EXPECT_U64(count[KVC_HEAD_LOCAL], 32);
	EXPECT_U64(count[KVC_HEAD_HEAVY], 22);
	EXPECT_U64(count[KVC_HEAD_DIFFUSE], 22);
	kvc_synth_destroy(s);
	/* another seed deals them to other heads */
	assert_true(differ > 100);
}

static size_t kv_floats(const struct kvc_model_shape *shape, uint32_t n)
{
	return (size_t)shape->layers * shape->kv_heads * n * shape->head_dim;
}

/*
 * The same vectors whatever the cut into calls: tokens [0, N) in one call,
 * one by one, and in uneven pieces; queries by layer likewise. Another
 * sequence, another seed: other vectors.
 */
static void test_determinism(void **state)
{
	static const uint32_t pieces[] = { 1, 7, 16, 3, 29, 2, 64, 5 };
	struct kvc_model_shape shape = {
		.layers = 3,
		.q_heads = 6,
		.kv_heads = 2,
		.head_dim = 80,
		.block_size = 16,
		.dtype = KVC_DTYPE_F32,
	};
	uint32_t N = 150, d = shape.head_dim, qrow = shape.q_heads * d;
	uint32_t pos, n, p, t, l, i;
	size_t all = kv_floats(&shape, N);
	float *k = xcalloc(all, sizeof(float)),
	      *v = xcalloc(all, sizeof(float));
	float *k2 = xcalloc(all, sizeof(float));
	float *v2 = xcalloc(all, sizeof(float));
	float *pk = xcalloc(all, sizeof(float)),
	      *pv = xcalloc(all, sizeof(float));
	float *q = xcalloc((size_t)N * qrow, sizeof(float));
	float *q2 = xcalloc((size_t)N * qrow, sizeof(float));
	struct kvc_synth *s = synth_open(&shape, 42);
	struct kvc_synth *twin = synth_open(&shape, 42);
	struct kvc_synth *other = synth_open(&shape, 43);

	kvc_synth_kv(s, 7, 0, N, k, v);
	/* pieces: [layers][kv_heads][n][d] each, scattered into place */
	for (pos = 0, p = 0; pos < N; pos += n, p++) {
		n = pieces[p % (sizeof(pieces) / sizeof(pieces[0]))];
		if (n > N - pos)
			n = N - pos;
		kvc_synth_kv(twin, 7, pos, n, pk, pv);
		for (t = 0; t < shape.layers * shape.kv_heads; t++)
			for (i = 0; i < n; i++) {
				memcpy(&k2[((size_t)t * N + pos + i) * d],
				       &pk[((size_t)t * n + i) * d],
				       d * sizeof(float));
				memcpy(&v2[((size_t)t * N + pos + i) * d],
				       &pv[((size_t)t * n + i) * d],
				       d * sizeof(float));
			}
	}
	assert_memory_equal(k, k2, all * sizeof(float));
	assert_memory_equal(v, v2, all * sizeof(float));

	for (l = 0; l < shape.layers; l++) {
		kvc_synth_q(s, 7, l, 0, N, q);
		for (pos = 0; pos < N; pos++)
			kvc_synth_q(twin, 7, l, pos, 1,
				    &q2[(size_t)pos * qrow]);
		assert_memory_equal(q, q2, (size_t)N * qrow * sizeof(float));
		kvc_synth_q(s, 7, l, 40, 20, q2);
		assert_memory_equal(&q[(size_t)40 * qrow], q2,
				    (size_t)20 * qrow * sizeof(float));
	}

	/* another sequence, another seed, another layer: not the same */
	kvc_synth_kv(s, 8, 0, N, k2, v2);
	assert_memory_not_equal(k, k2, all * sizeof(float));
	assert_memory_not_equal(v, v2, all * sizeof(float));
	kvc_synth_kv(other, 7, 0, N, k2, v2);
	assert_memory_not_equal(k, k2, all * sizeof(float));
	kvc_synth_q(s, 7, 0, 0, N, q);
	kvc_synth_q(s, 7, 1, 0, N, q2);
	assert_memory_not_equal(q, q2, (size_t)N * qrow * sizeof(float));
	/* no two (layer, head) rows alike */
	for (t = 1; t < shape.layers * shape.kv_heads; t++)
		assert_memory_not_equal(k, &k[(size_t)t * N * d],
					(size_t)N * d * sizeof(float));

	kvc_synth_destroy(s);
	kvc_synth_destroy(twin);
	kvc_synth_destroy(other);
	free(k);
	free(v);
	free(k2);
	free(v2);
	free(pk);
	free(pv);
	free(q);
	free(q2);
}

/*
 * The documented scale: finite, keys of an unstructured (diffuse) head
 * about sqrt(head_dim) long, queries 0.5..1.5 sqrt(head_dim), nothing
 * beyond what f16 holds with room to spare.
 */
static void test_scale(void **state)
{
	static const uint32_t dims[] = { 64, 96, 128, 256 };
	struct kvc_model_shape shape = smol;
	uint32_t di, d, N = 64, t, i, j, l, qh, nd;
	double norm, knorm, qnorm;
	struct kvc_synth *s;
	float *k, *v, *q, x;

	shape.layers = 4;
	for (di = 0; di < sizeof(dims) / sizeof(dims[0]); di++) {
		d = shape.head_dim = dims[di];
		s = synth_open(&shape, 9);
		k = xcalloc(kv_floats(&shape, N), sizeof(float));
		v = xcalloc(kv_floats(&shape, N), sizeof(float));
		q = xcalloc((size_t)N * shape.q_heads * d, sizeof(float));
		kvc_synth_kv(s, 0, 0, N, k, v);
		knorm = 0;
		nd = 0;
		for (t = 0; t < shape.layers * shape.kv_heads; t++) {
			for (i = 0; i < N * d; i++) {
				x = k[(size_t)t * N * d + i];
				assert_true(isfinite(x) && fabsf(x) < 100);
				x = v[(size_t)t * N * d + i];
				assert_true(isfinite(x) && fabsf(x) < 100);
			}
			if (kvc_synth_head_kind(s, t / shape.kv_heads,
						t % shape.kv_heads) !=
			    KVC_HEAD_DIFFUSE)
				continue;
			for (i = 0; i < N; i++) {
				norm = 0;
				for (j = 0; j < d; j++) {
					x = k[((size_t)t * N + i) * d + j];
					norm += (double)x * x;
				}
				knorm += sqrt(norm);
				nd++;
			}
		}
		assert_true(nd > 0);
		knorm /= nd * sqrt((double)d);
		if (knorm < 0.85 || knorm > 1.3)
			fail_msg("head_dim %u: diffuse keys %.2f sqrt(d) long",
				 d, knorm);
		for (l = 0; l < shape.layers; l++) {
			kvc_synth_q(s, 3, l, 100, N, q);
			for (i = 0; i < N * shape.q_heads; i++) {
				qnorm = 0;
				for (j = 0; j < d; j++) {
					x = q[(size_t)i * d + j];
					assert_true(isfinite(x));
					qnorm += (double)x * x;
				}
				qnorm = sqrt(qnorm / d);
				qh = i % shape.q_heads;
				if (qnorm < 0.4 || qnorm > 1.6)
					fail_msg(
						"head_dim %u layer %u query head %u: %.2f sqrt(d) long",
						d, l, qh, qnorm);
			}
		}
		kvc_synth_destroy(s);
		free(k);
		free(v);
		free(q);
	}
}

/* ------------------------------------------------------------------ */
/* structure through the real attention */

/**
 * struct fixture - A cache, a sequence and a generator.
 * @be: the host backend.
 * @params: the cache's parameters.
 * @kv: the cache.
 * @seq: the sequence.
 * @synth: the generator.
 * @k: every key appended, [layers * kv_heads][cap][head_dim].
 * @cap: tokens @k has room for.
 * @dir: the trace tests' temporary folder ("" when none).
 */
struct fixture {
	struct kvc_backend *be;
	struct kvc_kv_params params;
	struct kvc_kv *kv;
	struct kvc_seq *seq;
	struct kvc_synth *synth;
	float *k;
	uint32_t cap;
	char dir[64];
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
	fx->params.capacity_blocks = 2048;
	fx->params.backend_kind = KVC_BACKEND_HOST;
	fx->params.backend = fx->be;
	fx->params.flags = KVC_POOL_NO_STATS_PAGE;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	kvc_seq_destroy(fx->seq);
	kvc_kv_destroy(fx->kv);
	kvc_backend_close(fx->be);
	kvc_synth_destroy(fx->synth);
	free(fx->k);
	free(fx);
	return 0;
}

static void fx_open(struct fixture *fx, const struct kvc_model_shape *shape,
		    uint64_t seed, uint32_t cap)
{
	int err;

	fx->params.shape = *shape;
	err = kvc_kv_create(&fx->params, &fx->kv);
	if (err)
		fail_msg("kvc_kv_create() = %d: %s", err, kvc_last_error());
	err = kvc_seq_create(fx->kv, &fx->seq);
	if (err)
		fail_msg("kvc_seq_create() = %d: %s", err, kvc_last_error());
	fx->synth = synth_open(shape, seed);
	fx->cap = cap;
	fx->k = xcalloc(kv_floats(shape, cap), sizeof(float));
}

/* Append @n synthetic tokens to the sequence (number @seq_nr). */
static void fx_append(struct fixture *fx, uint32_t seq_nr, uint32_t n)
{
	const struct kvc_model_shape *shape = &fx->params.shape;
	uint32_t first = kvc_seq_tokens(fx->seq), d = shape->head_dim, t;
	float *k = xcalloc(kv_floats(shape, n), sizeof(float));
	float *v = xcalloc(kv_floats(shape, n), sizeof(float));
	int err;

	assert_true(first + n <= fx->cap);
	kvc_synth_kv(fx->synth, seq_nr, first, n, k, v);
	for (t = 0; t < shape->layers * shape->kv_heads; t++)
		memcpy(&fx->k[((size_t)t * fx->cap + first) * d],
		       &k[(size_t)t * n * d], (size_t)n * d * sizeof(float));
	err = kvc_seq_append(fx->seq, n, k, v);
	if (err)
		fail_msg("kvc_seq_append(%u) = %d: %s", n, err,
			 kvc_last_error());
	free(k);
	free(v);
}

static float fx_metric(struct fixture *fx, uint32_t layer, uint32_t head,
		       uint32_t slot)
{
	struct kvc_paged_kv p = kvc_seq_paged(fx->seq, layer, head);
	uint32_t bs = p.block_size;

	assert_true(slot < p.len);
	return p.meta[(uint64_t)p.table[slot / bs] * bs + slot % bs].metric;
}

static int cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/**
 * struct head_stats - Where one head's accumulated attention went.
 * @total: the metric summed over the head's keys.
 * @sink: share on positions 0..3.
 * @recent: share on the last RECENT positions.
 * @heavy: share on the positions whose key norm stands out.
 * @nr_heavy: how many such positions past the first four.
 * @top: share on the top 10% of positions.
 * @max: the largest share of one position.
 */
struct head_stats {
	double total;
	double sink;
	double recent;
	double heavy;
	uint32_t nr_heavy;
	double top;
	double max;
};

#define RECENT 48u

/* Positions (past the sinks) whose key is 1.25 times the median long. */
static void find_heavy(struct fixture *fx, uint32_t t, uint32_t len,
		       bool *heavy)
{
	uint32_t d = fx->params.shape.head_dim, i, j;
	double *norm = xcalloc(len, sizeof(double));
	double *sorted = xcalloc(len, sizeof(double));
	double median;
	float x;

	for (i = 0; i < len; i++) {
		for (j = 0; j < d; j++) {
			x = fx->k[((size_t)t * fx->cap + i) * d + j];
			norm[i] += (double)x * x;
		}
		sorted[i] = norm[i] = sqrt(norm[i]);
	}
	qsort(sorted, len, sizeof(double), cmp_desc);
	median = sorted[len / 2];
	for (i = 0; i < len; i++)
		heavy[i] = i >= 4 && norm[i] > 1.25 * median;
	free(norm);
	free(sorted);
}

static void head_stats(struct fixture *fx, uint32_t layer, uint32_t head,
		       struct head_stats *st)
{
	uint32_t len = kvc_seq_len(fx->seq, layer, head), i;
	uint32_t t = layer * fx->params.shape.kv_heads + head;
	double *m = xcalloc(len, sizeof(double));
	bool *heavy = xcalloc(len, sizeof(bool));

	assert_true(len == kvc_seq_tokens(fx->seq) && len > 2 * RECENT);
	memset(st, 0, sizeof(*st));
	find_heavy(fx, t, len, heavy);
	for (i = 0; i < len; i++) {
		m[i] = fx_metric(fx, layer, head, i);
		assert_true(isfinite(m[i]) && m[i] >= 0);
		st->total += m[i];
		if (i < 4)
			st->sink += m[i];
		if (i >= len - RECENT)
			st->recent += m[i];
		if (heavy[i]) {
			st->heavy += m[i];
			st->nr_heavy++;
		}
	}
	qsort(m, len, sizeof(double), cmp_desc);
	for (i = 0; i < len / 10; i++)
		st->top += m[i];
	st->max = m[0];
	st->sink /= st->total;
	st->recent /= st->total;
	st->heavy /= st->total;
	st->top /= st->total;
	st->max /= st->total;
	free(m);
	free(heavy);
}

/*
 * @prompt tokens, then @steps decode steps (append one token, then
 * attention of every layer with the L1 metric); each head's metric must
 * show its kind.
 */
static void check_kinds(struct fixture *fx, const struct kvc_model_shape *shape,
			uint64_t seed, uint32_t seq_nr, uint32_t prompt,
			uint32_t steps)
{
	static const char *const names[] = { "sink", "local", "heavy",
					     "diffuse" };
	uint32_t group = shape->q_heads / shape->kv_heads, d = shape->head_dim;
	uint32_t step, layer, h, i, seen[4] = { 0 }, pos;
	float *q = xcalloc((size_t)shape->q_heads * d, sizeof(float));
	float *out = xcalloc((size_t)shape->q_heads * d, sizeof(float));
	enum kvc_head_kind kind;
	struct head_stats st;
	bool ok;
	int err;

	fx_open(fx, shape, seed, prompt + steps);
	fx_append(fx, seq_nr, prompt);
	for (step = 0; step < steps; step++) {
		pos = kvc_seq_tokens(fx->seq);
		fx_append(fx, seq_nr, 1);
		for (layer = 0; layer < shape->layers; layer++) {
			kvc_synth_q(fx->synth, seq_nr, layer, pos, 1, q);
			err = kvc_attn_decode(fx->seq, layer, q, out,
					      KVC_METRIC_L1);
			if (err)
				fail_msg("kvc_attn_decode() = %d: %s", err,
					 kvc_last_error());
			for (i = 0; i < shape->q_heads * d; i++)
				assert_true(isfinite(out[i]));
		}
	}

	for (layer = 0; layer < shape->layers; layer++)
		for (h = 0; h < shape->kv_heads; h++) {
			kind = kvc_synth_head_kind(fx->synth, layer, h);
			head_stats(fx, layer, h, &st);
			seen[kind]++;
			/* L1 weights of each query head sum to 1 per step */
			if (fabs(st.total - (double)steps * group) >
			    1e-3 * steps * group)
				fail_msg("layer %u head %u: metric %.4f, "
					 "expected %u",
					 layer, h, st.total, steps * group);
			switch (kind) {
			case KVC_HEAD_SINK:
				ok = st.sink > 0.6 && st.recent < 0.1;
				break;
			case KVC_HEAD_LOCAL:
				ok = st.recent > 0.6 && st.sink < 0.05;
				break;
			case KVC_HEAD_HEAVY:
				ok = st.heavy > 0.6 && st.nr_heavy >= 2 &&
				     st.nr_heavy <= (prompt + steps) / 20 &&
				     st.sink < 0.05;
				break;
			default:
				ok = st.top < 0.6 && st.max < 0.08 &&
				     st.sink < 0.1 && st.recent < 0.35 &&
				     st.heavy < 0.2;
				break;
			}
			if (!ok)
				fail_msg(
					"seed %llu layer %u head %u (%s): sink %.3f, "
					"recent %.3f, heavy %.3f over %u keys, "
					"top 10%% %.3f, max %.3f",
					(unsigned long long)seed, layer, h,
					names[kind], st.sink, st.recent,
					st.heavy, st.nr_heavy, st.top, st.max);
		}
	for (i = 0; i < 4; i++)
		if (!seen[i])
			fail_msg("no %s head in the shape", names[i]);
	free(q);
	free(out);
}

/* SmolLM2's head size and GQA group, stored as f16. */
static void test_kinds_gqa_f16(void **state)
{
	struct kvc_model_shape shape = {
		.layers = 4,
		.q_heads = 12,
		.kv_heads = 4,
		.head_dim = 64,
		.block_size = 16,
		.dtype = KVC_DTYPE_F16,
	};

	check_kinds(*state, &shape, 1, 0, 320, 32);
}

/* A larger head, one query head per KV head, f32, another sequence. */
static void test_kinds_mha_f32(void **state)
{
	struct kvc_model_shape shape = {
		.layers = 4,
		.q_heads = 4,
		.kv_heads = 4,
		.head_dim = 128,
		.block_size = 32,
		.dtype = KVC_DTYPE_F32,
	};

	check_kinds(*state, &shape, 77, 5, 400, 24);
}

/* ------------------------------------------------------------------ */
/* the trace reader */

/* The first lines of ../shared/data/azure_conv_2023.csv, as they are. */
static const char azure_head[] =
	"TIMESTAMP,ContextTokens,GeneratedTokens,arrival_s\n"
	"2023-11-16 18:15:46.6805900,374,44,0.0000000\n"
	"2023-11-16 18:15:50.9951690,396,109,4.3145790\n"
	"2023-11-16 18:15:51.2224670,879,55,4.5418770\n"
	"2023-11-16 18:15:51.3910170,91,16,4.7104270\n";

static int trace_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/kvc-trace-XXXXXX");
	if (!mkdtemp(fx->dir)) {
		perror("mkdtemp");
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int trace_teardown(void **state)
{
	struct fixture *fx = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", fx->dir);
	free(fx);
	return 0;
}

/* Write @len bytes into @name in the fixture's folder; return its path. */
static const char *write_file(struct fixture *fx, const char *name,
			      const char *text, size_t len)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

static const char *write_text(struct fixture *fx, const char *name,
			      const char *text)
{
	return write_file(fx, name, text, strlen(text));
}

static void read_ok(const char *path, uint32_t max, struct kvc_request **reqs,
		    uint32_t *n)
{
	int err = kvc_trace_read(path, max, reqs, n);

	if (err)
		fail_msg("kvc_trace_read(%s) = %d: %s", path, err,
			 kvc_last_error());
	assert_non_null(*reqs);
}

/* kvc_trace_read() fails with @want and a message holding each word. */
static void expect_fail(const char *path, int want, const char *where,
			const char *word, int line)
{
	struct kvc_request *reqs = (struct kvc_request *)&want;
	uint32_t n = 99;
	int err = kvc_trace_read(path, 0, &reqs, &n);
	const char *msg = kvc_last_error();

	if (err != want)
		fail_msg("line %d: kvc_trace_read() = %d, expected %d (%s)",
			 line, err, want, msg);
	if (reqs || n)
		fail_msg("line %d: results set on failure", line);
	if (!strstr(msg, path) || !strstr(msg, where) || !strstr(msg, word))
		fail_msg("line %d: message '%s' does not name '%s', '%s' "
			 "and '%s'",
			 line, msg, path, where, word);
}

#define EXPECT_FAIL(fx, text, where, word)                                 \
	expect_fail(write_text(fx, "bad.csv", text), -EINVAL, where, word, \
		    __LINE__)

static void test_trace_azure(void **state)
{
	struct fixture *fx = *state;
	const char *path = write_text(fx, "azure.csv", azure_head);
	struct kvc_request *reqs;
	uint32_t n;

	read_ok(path, 0, &reqs, &n);
	assert_int_equal(n, 4);
	assert_int_equal(reqs[0].prompt, 374);
	assert_int_equal(reqs[0].gen, 44);
	assert_int_equal(reqs[1].prompt, 396);
	assert_int_equal(reqs[1].gen, 109);
	assert_int_equal(reqs[2].prompt, 879);
	assert_int_equal(reqs[2].gen, 55);
	assert_int_equal(reqs[3].prompt, 91);
	assert_int_equal(reqs[3].gen, 16);
	free(reqs);

	/* max */
	read_ok(path, 2, &reqs, &n);
	assert_int_equal(n, 2);
	assert_int_equal(reqs[1].gen, 109);
	free(reqs);
	read_ok(path, 4, &reqs, &n);
	assert_int_equal(n, 4);
	free(reqs);
	read_ok(path, 1000, &reqs, &n);
	assert_int_equal(n, 4);
	free(reqs);
}

/* The whole real trace, when this checkout sits beside ../shared. */
static void test_trace_azure_whole(void **state)
{
	static const char *path = "../shared/data/azure_conv_2023.csv";
	struct kvc_request *reqs;
	uint64_t prompt = 0;
	uint32_t n, i;

	if (access(path, R_OK))
		skip();
	read_ok(path, 0, &reqs, &n);
	assert_int_equal(n, 19366);
	for (i = 0; i < n; i++) {
		assert_true(reqs[i].prompt >= 1);
		prompt += reqs[i].prompt;
	}
	/* the README's mean prompt: 1155 tokens */
	assert_true(prompt / n >= 1150 && prompt / n <= 1160);
	assert_int_equal(reqs[0].prompt, 374);
	free(reqs);
}

/* Columns in any order, extra columns, quotes, blanks, CRLF, BOM. */
static void test_trace_format(void **state)
{
	struct fixture *fx = *state;
	struct kvc_request *reqs;
	const char *path;
	uint32_t n;

	path = write_text(
		fx, "order.csv",
		"\xef\xbb\xbf"
		"arrival_s,GeneratedTokens,TIMESTAMP,\"ContextTokens\",note\r\n"
		"0.5,7,2023-11-16 18:15:46.6805900,12,x\r\n"
		"1.5, 0 ,\"2023-11-16, 18:15:47.1\", \"13\" ,\"a \"\"b\"\", c\"\r\n"
		"\r\n"
		"2.5,2147483648,t,2147483648\r\n"
		"3,1,t,1\r\n"
		"\r\n"
		"   \n"
		"\n");
	read_ok(path, 0, &reqs, &n);
	assert_int_equal(n, 4);
	assert_int_equal(reqs[0].prompt, 12);
	assert_int_equal(reqs[0].gen, 7);
	assert_int_equal(reqs[1].prompt, 13);
	assert_int_equal(reqs[1].gen, 0);
	assert_int_equal(reqs[2].prompt, 1u << 31);
	assert_int_equal(reqs[2].gen, 1u << 31);
	assert_int_equal(reqs[3].prompt, 1);
	free(reqs);

	/* no line ending at the end; fields past the two are not needed */
	path = write_text(fx, "short.csv",
			  "ContextTokens,GeneratedTokens,TIMESTAMP\n5,6");
	read_ok(path, 0, &reqs, &n);
	assert_int_equal(n, 1);
	assert_int_equal(reqs[0].prompt, 5);
	assert_int_equal(reqs[0].gen, 6);
	free(reqs);

	/* max stops before a bad line */
	path = write_text(fx, "max.csv",
			  "ContextTokens,GeneratedTokens\n1,2\n3,4\n0,5\n");
	read_ok(path, 2, &reqs, &n);
	assert_int_equal(n, 2);
	assert_int_equal(reqs[1].prompt, 3);
	free(reqs);
	expect_fail(path, -EINVAL, ":4:", "prompt of 0", __LINE__);
}

/* A line of exactly 4096 bytes reads, with LF or CRLF; 4097 does not. */
static void test_trace_line_length(void **state)
{
	struct fixture *fx = *state;
	static const char header[] = "ContextTokens,GeneratedTokens,pad\n";
	size_t hl = strlen(header), i;
	char *text = xcalloc(hl + 3 * 4200, 1);
	struct kvc_request *reqs;
	const char *path;
	uint32_t len, n;
	size_t at;

	for (len = 4095; len <= 4097; len++) {
		for (i = 0; i < 2; i++) {
			memcpy(text, header, hl);
			at = hl;
			memcpy(text + at, "8,9,", 4);
			memset(text + at + 4, 'x', len - 4);
			at += len;
			if (i)
				text[at++] = '\r';
			text[at++] = '\n';
			memcpy(text + at, "1,2\n", 4);
			at += 4;
			path = write_file(fx, "long.csv", text, at);
			if (len <= 4096) {
				read_ok(path, 0, &reqs, &n);
				assert_int_equal(n, 2);
				assert_int_equal(reqs[0].prompt, 8);
				assert_int_equal(reqs[1].gen, 2);
				free(reqs);
			} else {
				expect_fail(path, -EINVAL,
					    ":2:", "longer than 4096",
					    __LINE__);
			}
		}
	}
	/* far too long, and a header too long */
	memcpy(text, header, hl);
	memset(text + hl, '7', 3 * 4096);
	path = write_file(fx, "long.csv", text, hl + 3 * 4096);
	expect_fail(path, -EINVAL, ":2:", "longer than 4096", __LINE__);
	memset(text, 'a', 5000);
	memcpy(text + 5000, "\n1,2\n", 5);
	path = write_file(fx, "long.csv", text, 5005);
	expect_fail(path, -EINVAL, ":1:", "longer than 4096", __LINE__);
	free(text);
}

static void test_trace_errors(void **state)
{
	struct fixture *fx = *state;
	char missing[160];
	const char *path;

	/* the header */
	EXPECT_FAIL(fx, "", "bad.csv", "no header");
	EXPECT_FAIL(fx, "TIMESTAMP,ContextTokens,arrival_s\n1,2,3\n",
		    ":1:", "no column GeneratedTokens");
	EXPECT_FAIL(fx, "GeneratedTokens,x\n1,2\n",
		    ":1:", "no column ContextTokens");
	EXPECT_FAIL(fx, "contexttokens,GeneratedTokens\n1,2\n",
		    ":1:", "no column ContextTokens");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens,ContextTokens\n1,2,3\n",
		    ":1:", "twice");
	EXPECT_FAIL(fx, "ContextTokens,\"GeneratedTokens\n1,2\n",
		    ":1:", "unclosed quote");
	/* no request */
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n", "bad.csv",
		    "no request");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\r\n\r\n\n", "bad.csv",
		    "no request");
	/* fields */
	EXPECT_FAIL(fx, "a,ContextTokens,GeneratedTokens\n1,2,3\n1,2\n",
		    ":3:", "2 field(s)");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n12\n",
		    ":2:", "1 field(s)");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n1,\"2\n",
		    ":2:", "unclosed quote");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n\n12.5,3\n",
		    ":3:", "ContextTokens \"12.5\" is not a whole number");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n12,abc\n",
		    ":2:", "GeneratedTokens \"abc\" is not a whole number");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n1e3,3\n",
		    ":2:", "not a whole number");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n+3,3\n",
		    ":2:", "not a whole number");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n3 4,3\n",
		    ":2:", "not a whole number");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n,3\n",
		    ":2:", "ContextTokens is empty");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n5,-3\n",
		    ":2:", "GeneratedTokens \"-3\" is negative");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n2147483649,3\n",
		    ":2:", "above 2^31");
	EXPECT_FAIL(fx,
		    "ContextTokens,GeneratedTokens\n5,"
		    "99999999999999999999999999\n",
		    ":2:", "above 2^31");
	EXPECT_FAIL(fx, "ContextTokens,GeneratedTokens\n1,1\n0,3\n",
		    ":3:", "prompt of 0 tokens");

	/* open failures */
	snprintf(missing, sizeof(missing), "%s/none.csv", fx->dir);
	expect_fail(missing, -ENOENT, "none.csv", strerror(ENOENT), __LINE__);
	if (geteuid()) {
		path = write_text(fx, "locked.csv", azure_head);
		assert_int_equal(chmod(path, 0), 0);
		expect_fail(path, -EACCES, "locked.csv", strerror(EACCES),
			    __LINE__);
	}
}

static void test_trace_args(void **state)
{
	struct fixture *fx = *state;
	const char *path = write_text(fx, "azure.csv", azure_head);
	struct kvc_request *reqs;
	uint32_t n;

	assert_int_equal(kvc_trace_read(NULL, 0, &reqs, &n), -EINVAL);
	assert_int_equal(kvc_trace_read(path, 0, NULL, &n), -EINVAL);
	assert_int_equal(kvc_trace_read(path, 0, &reqs, NULL), -EINVAL);
	assert_true(kvc_trace_read(fx->dir, 0, &reqs, &n) < 0);
	assert_non_null(strstr(kvc_last_error(), fx->dir));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_synth_args),
		cmocka_unit_test(test_kind_mix),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_scale),
		cmocka_unit_test_setup_teardown(test_kinds_gqa_f16, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_kinds_mha_f32, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_trace_azure, trace_setup,
						trace_teardown),
		cmocka_unit_test(test_trace_azure_whole),
		cmocka_unit_test_setup_teardown(test_trace_format, trace_setup,
						trace_teardown),
		cmocka_unit_test_setup_teardown(test_trace_line_length,
						trace_setup, trace_teardown),
		cmocka_unit_test_setup_teardown(test_trace_errors, trace_setup,
						trace_teardown),
		cmocka_unit_test_setup_teardown(test_trace_args, trace_setup,
						trace_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
