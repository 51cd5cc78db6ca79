/* Description: the Llama forward on tiny random GGUF models (F32/F16/Q8_0/Q4_1, tied and untied): prefill equals decode, logits equal a plain reference forward, bad files are refused naming the tensor; kvc_seq_write_layer() read back, its errors, refused on a device cache */
// SPDX-License-Identifier: MIT
/*
 * Tests of model/llama.c and kvc_seq_write_layer(). The models are built
 * in memory with the test GGUF writer from seeded random weights; each
 * quantized weight is also kept as the floats its blocks stand for
 * (dequantized here, independently of model/quant.c), which the
 * reference forward multiplies as plain arrays, with no cache.
 *
 * The cache takes head_dim 64 at least, so the tiny model has hidden 256:
 * 2 layers, 4 query heads, 2 KV heads, head_dim 64, ffn 96, vocab 50.
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

#include <cmocka.h>

#include "testutil.h"

#include <kvc/attention.h>
#include <kvc/kv.h>
#include <kvc/kvc.h>

#include "../kernels/half.h"
#include "../model/gguf.h"
#include "../model/llama.h"
#include "../runtime/internal.h"
#include "backend.h"
#include "fake_driver.h"
#include "gguf_writer.h"

#define LAYERS 2
#define HIDDEN 256
#define QH 4
#define KVH 2
#define HD 64
#define FFN 96
#define VOCAB 50
#define THETA 10000.0f
#define EPS 1e-5f
#define TOL 1e-4

/* One weight: its floats (as dequantized) and how it is stored. */
struct wt {
	char name[48];
	uint32_t type;
	uint32_t in, out; /* out 0: a vector of @in */
	float *f;
};

/* All weights of a tiny model, in the order they are written. */
struct tiny {
	struct wt w[4 + LAYERS * 9];
	uint32_t nr;
	bool tied;
	uint8_t *buf;
	size_t size;
	struct kvc_gguf *g;
	struct kvc_llama *m;
};

struct fixture {
	struct kvc_backend *be;
	struct kvc_kv *kv;
	struct tiny tiny;
};

/* ------------------------------------------------------------------ */
/* Building models */

static float uniform(uint64_t *s)
{
	return (float)((double)(rng_next(s) >> 11) / (double)(1ull << 53)) *
		       2.0f -
	       1.0f;
}

static void put_f16(uint8_t *p, float f)
{
	uint16_t h = kvc_f32_to_f16(f);

	memcpy(p, &h, sizeof(h));
}

/*
 * Store @n floats of @f as @type into @dst, and replace each by the value
 * its stored form stands for.
 */
static void quantize(uint32_t type, float *f, uint32_t n, uint8_t *dst)
{
	uint32_t i, j;

	for (i = 0; i < n && type == KVC_GGML_F32; i++)
		memcpy(dst + 4 * i, &f[i], 4);
	for (i = 0; i < n && type == KVC_GGML_F16; i++) {
		put_f16(dst + 2 * i, f[i]);
		f[i] = kvc_f16_to_f32(kvc_f32_to_f16(f[i]));
	}
	for (i = 0; i < n && type == KVC_GGML_Q8_0; i += 32, dst += 34) {
		float amax = 0, d;

		for (j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(f[i + j]));
		d = kvc_f16_to_f32(kvc_f32_to_f16(amax / 127.0f));
		put_f16(dst, d);
		for (j = 0; j < 32; j++) {
			int q = d ? (int)lrintf(f[i + j] / d) : 0;

			q = q > 127 ? 127 : q < -127 ? -127 : q;
			dst[2 + j] = (uint8_t)(int8_t)q;
			f[i + j] = d * (float)q;
		}
	}
	for (i = 0; i < n && type == KVC_GGML_Q4_1; i += 32, dst += 20) {
		float lo = f[i], hi = f[i], d, m;

		for (j = 0; j < 32; j++) {
			lo = fminf(lo, f[i + j]);
			hi = fmaxf(hi, f[i + j]);
		}
		d = kvc_f16_to_f32(kvc_f32_to_f16((hi - lo) / 15.0f));
		m = kvc_f16_to_f32(kvc_f32_to_f16(lo));
		put_f16(dst, d);
		put_f16(dst + 2, m);
		memset(dst + 4, 0, 16);
		for (j = 0; j < 32; j++) {
			int q = d ? (int)lrintf((f[i + j] - m) / d) : 0;

			q = q > 15 ? 15 : q < 0 ? 0 : q;
			dst[4 + j % 16] |= (uint8_t)(j < 16 ? q : q << 4);
			f[i + j] = d * (float)q + m;
		}
	}
}

static uint64_t stored_bytes(uint32_t type, uint64_t n)
{
	return kvc_ggml_row_bytes(type, n);
}

static struct wt *add_wt(struct tiny *t, const char *name, uint32_t type,
			 uint32_t in, uint32_t out, float scale, float bias,
			 uint64_t *rng)
{
	struct wt *w = &t->w[t->nr++];
	uint64_t i, n = (uint64_t)in * (out ? out : 1);

	snprintf(w->name, sizeof(w->name), "%s", name);
	w->type = type;
	w->in = in;
	w->out = out;
	w->f = malloc(n * sizeof(float));
	assert_non_null(w->f);
	for (i = 0; i < n; i++)
		w->f[i] = bias + scale * uniform(rng);
	return w;
}

/* Types cycle through this list so each kind of matrix meets each type. */
static const uint32_t mat_types[] = { KVC_GGML_F32, KVC_GGML_F16, KVC_GGML_Q8_0,
				      KVC_GGML_Q4_1 };

/* The weights of a tiny model, as floats: tiny_file() stores them. */
static void tiny_weights(struct tiny *t, bool tied, uint64_t seed)
{
	static const char *const mats[] = { "attn_q",	   "attn_k",   "attn_v",
					    "attn_output", "ffn_gate", "ffn_up",
					    "ffn_down" };
	uint32_t qd = QH * HD, kd = KVH * HD, l, i, k = 0;
	char name[48];

	memset(t, 0, sizeof(*t));
	t->tied = tied;
	add_wt(t, "token_embd.weight", KVC_GGML_Q8_0, HIDDEN, VOCAB, 1.0f, 0,
	       &seed);
	add_wt(t, "output_norm.weight", KVC_GGML_F32, HIDDEN, 0, 0.2f, 1.0f,
	       &seed);
	if (!tied)
		add_wt(t, "output.weight", KVC_GGML_F16, HIDDEN, VOCAB, 0.1f, 0,
		       &seed);
	for (l = 0; l < LAYERS; l++) {
		snprintf(name, sizeof(name), "blk.%u.attn_norm.weight", l);
		add_wt(t, name, KVC_GGML_F32, HIDDEN, 0, 0.2f, 1.0f, &seed);
		snprintf(name, sizeof(name), "blk.%u.ffn_norm.weight", l);
		add_wt(t, name, KVC_GGML_F32, HIDDEN, 0, 0.2f, 1.0f, &seed);
		for (i = 0; i < 7; i++) {
			uint32_t in = i == 3 ? qd : i == 6 ? FFN : HIDDEN;
			uint32_t out = i == 0 ? qd :
				       i < 3  ? kd :
				       i < 4  ? HIDDEN :
				       i < 6  ? FFN :
						HIDDEN;

			snprintf(name, sizeof(name), "blk.%u.%s.weight", l,
				 mats[i]);
			add_wt(t, name, mat_types[k++ % 4], in, out,
			       1.5f / sqrtf((float)in), 0, &seed);
		}
	}
}

/*
 * Write @t as GGUF and parse it. @skip: a tensor to leave out; @short_one:
 * a tensor written one row short (either may be NULL).
 */
static int tiny_file(struct tiny *t, const char *skip, const char *short_one)
{
	struct gguf_writer *gw = gw_new();
	uint32_t i;
	int err;

	assert_non_null(gw);
	gw_add_str(gw, "general.architecture", "llama");
	gw_add_u32(gw, "llama.block_count", LAYERS);
	gw_add_u32(gw, "llama.embedding_length", HIDDEN);
	gw_add_u32(gw, "llama.feed_forward_length", FFN);
	gw_add_u32(gw, "llama.attention.head_count", QH);
	gw_add_u32(gw, "llama.attention.head_count_kv", KVH);
	gw_add_f32(gw, "llama.rope.freq_base", THETA);
	gw_add_f32(gw, "llama.attention.layer_norm_rms_epsilon", EPS);
	gw_add_u32(gw, "llama.context_length", 2048);
	for (i = 0; i < t->nr; i++) {
		struct wt *w = &t->w[i];
		uint64_t dims[2] = { w->in, w->out };
		uint32_t rows = w->out ? w->out : 1;
		uint64_t row = stored_bytes(w->type, w->in);
		uint8_t *data;
		uint32_t r;

		if (skip && !strcmp(w->name, skip))
			continue;
		if (short_one && !strcmp(w->name, short_one))
			dims[1] = --rows;
		data = malloc(row * rows);
		assert_non_null(data);
		for (r = 0; r < rows; r++)
			quantize(w->type, w->f + (uint64_t)r * w->in, w->in,
				 data + r * row);
		gw_add_tensor(gw, w->name, w->type, w->out ? 2 : 1, dims, data,
			      row * rows);
		free(data);
	}
	err = gw_finish(gw, &t->buf, &t->size);
	gw_free(gw);
	if (err)
		return err;
	return kvc_gguf_parse(t->buf, t->size, &t->g);
}

static void tiny_free(struct tiny *t)
{
	uint32_t i;

	kvc_llama_free(t->m);
	kvc_gguf_close(t->g);
	free(t->buf);
	for (i = 0; i < t->nr; i++)
		free(t->w[i].f);
	memset(t, 0, sizeof(*t));
}

static void tiny_load(struct tiny *t, bool tied, uint64_t seed)
{
	int err;

	tiny_weights(t, tied, seed);
	err = tiny_file(t, NULL, NULL);
	if (err)
		fail_msg("tiny model file: %d: %s", err, kvc_last_error());
	err = kvc_llama_load(t->g, &t->m);
	if (err)
		fail_msg("kvc_llama_load() = %d: %s", err, kvc_last_error());
}

static const float *wt_of(const struct tiny *t, const char *name)
{
	uint32_t i;

	for (i = 0; i < t->nr; i++)
		if (!strcmp(t->w[i].name, name))
			return t->w[i].f;
	fail_msg("no weight %s", name);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The reference forward: plain arrays, doubles, no cache */

static void ref_matvec(const float *w, const double *x, double *y, uint32_t in,
		       uint32_t out)
{
	uint32_t o, i;

	for (o = 0; o < out; o++) {
		y[o] = 0;
		for (i = 0; i < in; i++)
			y[o] += (double)w[(size_t)o * in + i] * x[i];
	}
}

static void ref_rmsnorm(const double *x, const float *w, double *y)
{
	double ss = 0;
	uint32_t i;

	for (i = 0; i < HIDDEN; i++)
		ss += x[i] * x[i];
	ss = 1.0 / sqrt(ss / HIDDEN + EPS);
	for (i = 0; i < HIDDEN; i++)
		y[i] = x[i] * ss * w[i];
}

static void ref_rope(double *x, uint32_t heads, uint32_t pos)
{
	uint32_t h, i;

	for (h = 0; h < heads; h++)
		for (i = 0; i < HD / 2; i++) {
			double a = pos * pow(THETA, -2.0 * i / HD);
			double *p = x + h * HD + 2 * i, x0 = p[0], x1 = p[1];

			p[0] = x0 * cos(a) - x1 * sin(a);
			p[1] = x0 * sin(a) + x1 * cos(a);
		}
}

/* Logits [n][VOCAB] of tokens 0..n-1 run from an empty context. */
static void ref_forward(const struct tiny *t, const int32_t *tok, uint32_t n,
			float *logits)
{
	static double kc[LAYERS][64][KVH * HD], vc[LAYERS][64][KVH * HD];
	double x[HIDDEN], h[HIDDEN], q[QH * HD], att[QH * HD], o[HIDDEN];
	double g[FFN], u[FFN], lg[VOCAB], sc[64];
	const float *embd = wt_of(t, "token_embd.weight");
	uint32_t p, l, i, hh, j, d;
	char name[48];

	assert_true(n <= 64);
#define W(fmt) (snprintf(name, sizeof(name), fmt, l), wt_of(t, name))
	for (p = 0; p < n; p++) {
		for (i = 0; i < HIDDEN; i++)
			x[i] = embd[(size_t)tok[p] * HIDDEN + i];
		for (l = 0; l < LAYERS; l++) {
			ref_rmsnorm(x, W("blk.%u.attn_norm.weight"), h);
			ref_matvec(W("blk.%u.attn_q.weight"), h, q, HIDDEN,
				   QH * HD);
			ref_matvec(W("blk.%u.attn_k.weight"), h, kc[l][p],
				   HIDDEN, KVH * HD);
			ref_matvec(W("blk.%u.attn_v.weight"), h, vc[l][p],
				   HIDDEN, KVH * HD);
			ref_rope(q, QH, p);
			ref_rope(kc[l][p], KVH, p);
			for (hh = 0; hh < QH; hh++) {
				uint32_t kh = hh / (QH / KVH);
				double mx = -INFINITY, sum = 0;

				for (j = 0; j <= p; j++) {
					sc[j] = 0;
					for (d = 0; d < HD; d++)
						sc[j] += q[hh * HD + d] *
							 kc[l][j][kh * HD + d];
					sc[j] /= sqrt(HD);
					mx = fmax(mx, sc[j]);
				}
				for (j = 0; j <= p; j++)
					sum += sc[j] = exp(sc[j] - mx);
				for (d = 0; d < HD; d++) {
					att[hh * HD + d] = 0;
					for (j = 0; j <= p; j++)
						att[hh * HD + d] +=
							sc[j] / sum *
							vc[l][j][kh * HD + d];
				}
			}
			ref_matvec(W("blk.%u.attn_output.weight"), att, o,
				   QH * HD, HIDDEN);
			for (i = 0; i < HIDDEN; i++)
				x[i] += o[i];
			ref_rmsnorm(x, W("blk.%u.ffn_norm.weight"), h);
			ref_matvec(W("blk.%u.ffn_gate.weight"), h, g, HIDDEN,
				   FFN);
			ref_matvec(W("blk.%u.ffn_up.weight"), h, u, HIDDEN,
				   FFN);
			for (i = 0; i < FFN; i++)
				g[i] = g[i] / (1 + exp(-g[i])) * u[i];
			ref_matvec(W("blk.%u.ffn_down.weight"), g, o, FFN,
				   HIDDEN);
			for (i = 0; i < HIDDEN; i++)
				x[i] += o[i];
		}
		ref_rmsnorm(x, wt_of(t, "output_norm.weight"), h);
		ref_matvec(t->tied ? embd : wt_of(t, "output.weight"), h, lg,
			   HIDDEN, VOCAB);
		for (i = 0; i < VOCAB; i++)
			logits[(size_t)p * VOCAB + i] = (float)lg[i];
	}
#undef W
}

/* ------------------------------------------------------------------ */
/* Fixture */

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	if (kvc_backend_open_host(64ull << 10, &fx->be)) {
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

	kvc_kv_destroy(fx->kv);
	kvc_backend_close(fx->be);
	tiny_free(&fx->tiny);
	free(fx);
	return 0;
}

/* A host cache of @shape in the fixture. */
static struct kvc_kv *kv_open(struct fixture *fx,
			      const struct kvc_model_shape *shape)
{
	struct kvc_kv_params p = {
		.shape = *shape,
		.capacity_blocks = 512,
		.backend_kind = KVC_BACKEND_HOST,
		.backend = fx->be,
		.flags = KVC_POOL_NO_STATS_PAGE,
	};
	int err;

	kvc_kv_destroy(fx->kv);
	fx->kv = NULL;
	err = kvc_kv_create(&p, &fx->kv);
	if (err)
		fail_msg("kvc_kv_create() = %d: %s", err, kvc_last_error());
	return fx->kv;
}

static struct kvc_seq *seq_new(struct kvc_kv *kv)
{
	struct kvc_seq *seq;
	int err = kvc_seq_create(kv, &seq);

	if (err)
		fail_msg("kvc_seq_create() = %d: %s", err, kvc_last_error());
	return seq;
}

static void forward(struct kvc_llama *m, struct kvc_seq *seq,
		    const int32_t *tok, uint32_t n, float *logits, bool all)
{
	int err = kvc_llama_forward(m, seq, tok, n, NULL, KVC_METRIC_NONE,
				    logits, all);

	if (err)
		fail_msg("kvc_llama_forward(%u) = %d: %s", n, err,
			 kvc_last_error());
}

static void expect_close(const float *got, const float *want, size_t n,
			 const char *what)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!(fabs(got[i] - want[i]) <= TOL * fmax(1, fabs(want[i]))))
			fail_msg(
				"%s: logit %zu (token %zu, id %zu) is %g, expected %g",
				what, i, i / VOCAB, i % VOCAB, (double)got[i],
				(double)want[i]);
}

static void random_tokens(int32_t *tok, uint32_t n, uint64_t seed)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		tok[i] = (int32_t)(rng_next(&seed) % VOCAB);
}

/* ------------------------------------------------------------------ */
/* Tests */

static void test_config(void **state)
{
	struct fixture *fx = *state;
	const struct kvc_llama_config *c;
	struct kvc_model_shape s;

	tiny_load(&fx->tiny, true, 11);
	c = kvc_llama_config(fx->tiny.m);
	assert_int_equal(c->layers, LAYERS);
	assert_int_equal(c->hidden, HIDDEN);
	assert_int_equal(c->ffn, FFN);
	assert_int_equal(c->q_heads, QH);
	assert_int_equal(c->kv_heads, KVH);
	assert_int_equal(c->head_dim, HD);
	assert_int_equal(c->vocab, VOCAB);
	assert_int_equal(c->context, 2048);
	assert_true(c->tied);
	assert_true(c->rope_theta == THETA && c->rms_eps == EPS);
	kvc_llama_shape(fx->tiny.m, 16, KVC_DTYPE_F16, &s);
	assert_int_equal(kvc_model_shape_check(&s), 0);
	assert_int_equal(s.layers, LAYERS);
	assert_int_equal(s.dtype, KVC_DTYPE_F16);
}

/* Prefill with all logits == decode token by token == mixed chunks. */
static void prefill_vs_decode(struct fixture *fx, bool tied)
{
	enum { T = 21 };
	float *pre = malloc(T * VOCAB * sizeof(float));
	float *dec = malloc(T * VOCAB * sizeof(float));
	float *mix = malloc(T * VOCAB * sizeof(float));
	struct kvc_seq *a, *b, *c;
	struct kvc_model_shape s;
	int32_t tok[T];
	uint32_t i;

	assert_non_null(pre);
	assert_non_null(dec);
	assert_non_null(mix);
	tiny_load(&fx->tiny, tied, tied ? 5 : 6);
	kvc_llama_shape(fx->tiny.m, 16, KVC_DTYPE_F32, &s);
	kv_open(fx, &s);
	random_tokens(tok, T, 99);
	a = seq_new(fx->kv);
	b = seq_new(fx->kv);
	c = seq_new(fx->kv);
	forward(fx->tiny.m, a, tok, T, pre, true);
	for (i = 0; i < T; i++)
		forward(fx->tiny.m, b, tok + i, 1, dec + i * VOCAB, false);
	/* Prefills after prefills (two tokens take the row-by-row path),
	 * then decode steps. */
	forward(fx->tiny.m, c, tok, 7, mix, true);
	forward(fx->tiny.m, c, tok + 7, 2, mix + 7 * VOCAB, true);
	forward(fx->tiny.m, c, tok + 9, 8, mix + 9 * VOCAB, true);
	for (i = 17; i < T; i++)
		forward(fx->tiny.m, c, tok + i, 1, mix + i * VOCAB, false);
	expect_close(dec, pre, T * VOCAB, "decode vs prefill");
	expect_close(mix, pre, T * VOCAB, "chunks vs prefill");
	assert_int_equal(kvc_seq_tokens(a), T);
	assert_int_equal(kvc_seq_len(b, LAYERS - 1, KVH - 1), T);
	KV_CHECK(fx->kv);
	/* The last-token logits of a prefill are its last row. */
	forward(fx->tiny.m, seq_new(fx->kv), tok, T, dec, false);
	expect_close(dec, pre + (T - 1) * VOCAB, VOCAB, "last logits");
	free(pre);
	free(dec);
	free(mix);
}

static void test_prefill_vs_decode_tied(void **state)
{
	prefill_vs_decode(*state, true);
}

static void test_prefill_vs_decode_untied(void **state)
{
	prefill_vs_decode(*state, false);
}

static void against_reference(struct fixture *fx, bool tied,
			      enum kvc_dtype dtype, double tol_scale)
{
	enum { T = 9 };
	float got[T * VOCAB], want[T * VOCAB];
	struct kvc_model_shape s;
	int32_t tok[T];
	size_t i;

	tiny_load(&fx->tiny, tied, tied ? 21 : 22);
	kvc_llama_shape(fx->tiny.m, 8, dtype, &s);
	kv_open(fx, &s);
	random_tokens(tok, T, 7);
	forward(fx->tiny.m, seq_new(fx->kv), tok, T, got, true);
	ref_forward(&fx->tiny, tok, T, want);
	if (tol_scale == 1) {
		expect_close(got, want, T * VOCAB, "model vs reference");
		return;
	}
	/* f16 K and V round: only close, but far from chance. */
	for (i = 0; i < T * VOCAB; i++)
		if (!(fabs(got[i] - want[i]) <=
		      TOL * tol_scale * fmax(1, fabs(want[i]))))
			fail_msg("f16 cache: logit %zu is %g, expected %g", i,
				 (double)got[i], (double)want[i]);
}

static void test_reference_tied(void **state)
{
	against_reference(*state, true, KVC_DTYPE_F32, 1);
}

static void test_reference_untied(void **state)
{
	against_reference(*state, false, KVC_DTYPE_F32, 1);
}

static void test_reference_f16_cache(void **state)
{
	against_reference(*state, false, KVC_DTYPE_F16, 100);
}

/* A refused load: -EINVAL and a message that names @what. */
static void expect_refused(struct tiny *t, const char *what)
{
	struct kvc_llama *m = NULL;
	int err = kvc_llama_load(t->g, &m);

	assert_int_equal(err, -EINVAL);
	assert_null(m);
	if (!strstr(kvc_last_error(), what))
		fail_msg("message \"%s\" does not name %s", kvc_last_error(),
			 what);
}

static void test_bad_files(void **state)
{
	struct fixture *fx = *state;
	struct tiny *t = &fx->tiny;
	uint32_t i;

	tiny_weights(t, true, 3);
	assert_int_equal(tiny_file(t, "blk.1.ffn_up.weight", NULL), 0);
	expect_refused(t, "blk.1.ffn_up.weight");
	tiny_free(t);

	tiny_weights(t, true, 3);
	assert_int_equal(tiny_file(t, NULL, "blk.0.attn_k.weight"), 0);
	expect_refused(t, "blk.0.attn_k.weight");
	tiny_free(t);

	tiny_weights(t, true, 3);
	assert_int_equal(tiny_file(t, "output_norm.weight", NULL), 0);
	expect_refused(t, "output_norm.weight");
	tiny_free(t);

	/* A type the reader knows nothing of cannot be in a parsed file:
	 * patch one in to see the model check for itself. */
	tiny_weights(t, true, 3);
	assert_int_equal(tiny_file(t, NULL, NULL), 0);
	for (i = 0; i < t->g->nr_tensors; i++)
		if (t->g->tensors[i].name.len == 19 &&
		    !memcmp(t->g->tensors[i].name.s, "blk.1.attn_v.weight", 19))
			t->g->tensors[i].type = 6; /* Q5_0 */
	expect_refused(t, "blk.1.attn_v.weight");
	tiny_free(t);

	/* Metadata: no head count; heads that do not divide. */
	{
		struct gguf_writer *gw = gw_new();
		struct kvc_llama *m = NULL;

		assert_non_null(gw);
		gw_add_u32(gw, "llama.block_count", 1);
		gw_add_u32(gw, "llama.embedding_length", HIDDEN);
		gw_add_u32(gw, "llama.feed_forward_length", FFN);
		assert_int_equal(gw_finish(gw, &t->buf, &t->size), 0);
		assert_int_equal(kvc_gguf_parse(t->buf, t->size, &t->g), 0);
		assert_int_equal(kvc_llama_load(t->g, &m), -EINVAL);
		assert_non_null(
			strstr(kvc_last_error(), "llama.attention.head_count"));
		kvc_gguf_close(t->g);
		free(t->buf);
		gw_add_u32(gw, "llama.attention.head_count", 3);
		assert_int_equal(gw_finish(gw, &t->buf, &t->size), 0);
		assert_int_equal(kvc_gguf_parse(t->buf, t->size, &t->g), 0);
		assert_int_equal(kvc_llama_load(t->g, &m), -EINVAL);
		gw_free(gw);
	}
}

static void test_forward_errors(void **state)
{
	struct fixture *fx = *state;
	struct kvc_model_shape s;
	struct kvc_seq *seq;
	float logits[VOCAB];
	int32_t tok[2] = { 1, VOCAB };

	tiny_load(&fx->tiny, true, 4);
	kvc_llama_shape(fx->tiny.m, 16, KVC_DTYPE_F32, &s);
	s.layers = 1;
	seq = seq_new(kv_open(fx, &s));
	assert_int_equal(kvc_llama_forward(fx->tiny.m, seq, tok, 1, NULL,
					   KVC_METRIC_NONE, logits, false),
			 -EINVAL);
	kvc_llama_shape(fx->tiny.m, 16, KVC_DTYPE_F32, &s);
	seq = seq_new(kv_open(fx, &s));
	assert_int_equal(kvc_llama_forward(fx->tiny.m, seq, tok, 2, NULL,
					   KVC_METRIC_NONE, logits, false),
			 -EINVAL);
	assert_int_equal(kvc_llama_forward(fx->tiny.m, seq, tok, 0, NULL,
					   KVC_METRIC_NONE, logits, false),
			 -EINVAL);
	assert_int_equal(kvc_seq_tokens(seq), 0);
}

/* Eviction metrics collected on the way do not change the logits. */
static void test_metrics(void **state)
{
	struct fixture *fx = *state;
	struct kvc_observe obs = { .metric = KVC_METRIC_L2, .window = 4 };
	float a[VOCAB], b[VOCAB];
	struct kvc_model_shape s;
	struct kvc_seq *x, *y;
	int32_t tok[12];
	uint32_t i;

	tiny_load(&fx->tiny, true, 8);
	kvc_llama_shape(fx->tiny.m, 16, KVC_DTYPE_F32, &s);
	kv_open(fx, &s);
	random_tokens(tok, 12, 1);
	x = seq_new(fx->kv);
	y = seq_new(fx->kv);
	forward(fx->tiny.m, x, tok, 10, a, false);
	assert_int_equal(kvc_llama_forward(fx->tiny.m, y, tok, 10, &obs,
					   KVC_METRIC_L2, b, false),
			 0);
	expect_close(b, a, VOCAB, "with metrics");
	for (i = 10; i < 12; i++) {
		forward(fx->tiny.m, x, tok + i, 1, a, false);
		assert_int_equal(kvc_llama_forward(fx->tiny.m, y, tok + i, 1,
						   NULL, KVC_METRIC_L1, b,
						   false),
				 0);
		expect_close(b, a, VOCAB, "decode with metrics");
	}
	KV_CHECK(fx->kv);
}

/* ------------------------------------------------------------------ */
/* kvc_seq_write_layer() */

static const struct kvc_model_shape wl_shape = {
	.layers = 2,
	.q_heads = 4,
	.kv_heads = 2,
	.head_dim = 64,
	.block_size = 8,
	.dtype = KVC_DTYPE_F16,
};

/* K (@which 0) or V of @layer, @head, position @pos, element @d: exact. */
static float wl_value(uint32_t layer, uint32_t head, uint32_t pos, uint32_t d,
		      uint32_t which)
{
	return (float)((int)((layer * 131 + head * 31 + pos * 7 + d * 3 +
			      which * 17) %
			     64) -
		       32) /
	       8.0f;
}

static void wl_fill(float *k, float *v, uint32_t layer, uint32_t first,
		    uint32_t n)
{
	uint32_t h, i, d;

	for (h = 0; h < wl_shape.kv_heads; h++)
		for (i = 0; i < n; i++)
			for (d = 0; d < HD; d++) {
				size_t at = ((size_t)h * n + i) * HD + d;

				k[at] = wl_value(layer, h, first + i, d, 0);
				v[at] = wl_value(layer, h, first + i, d, 1);
			}
}

/* Slot @i of (@layer, @head): K and V element @d, and the position. */
static void wl_read(struct kvc_kv *kv, struct kvc_seq *seq, uint32_t layer,
		    uint32_t head, uint32_t i, uint32_t d, float *k, float *v,
		    int32_t *pos)
{
	uint32_t bs = wl_shape.block_size, nr;
	const uint32_t *table = kvc_seq_table(seq, layer, head, &nr);
	const uint8_t *b = kv->base + (uint64_t)table[i / bs] * kv->block_bytes;
	uint16_t hk, hv;

	memcpy(&hk, b + ((i % bs) * HD + d) * 2, 2);
	memcpy(&hv, b + ((bs + i % bs) * HD + d) * 2, 2);
	*k = kvc_f16_to_f32(hk);
	*v = kvc_f16_to_f32(hv);
	*pos = kv->meta[(uint64_t)table[i / bs] * bs + i % bs].pos;
}

static void test_write_layer(void **state)
{
	struct fixture *fx = *state;
	size_t all = (size_t)wl_shape.layers * wl_shape.kv_heads * 12 * HD;
	float *zero = calloc(all, sizeof(float));
	float *k = malloc(all * sizeof(float)),
	      *v = malloc(all * sizeof(float));
	struct kvc_seq *seq;
	uint32_t l, h, i, d;
	float gk, gv;
	int32_t pos;

	assert_non_null(zero);
	assert_non_null(k);
	assert_non_null(v);
	kv_open(fx, &wl_shape);
	seq = seq_new(fx->kv);
	/* 5 then 7 placeholders, each chunk filled layer by layer. */
	assert_int_equal(kvc_seq_append(seq, 5, zero, zero), 0);
	for (l = 0; l < 2; l++) {
		wl_fill(k, v, l, 0, 5);
		assert_int_equal(kvc_seq_write_layer(seq, l, 5, k, v), 0);
	}
	/* The second as the forward takes them: slots only, no K or V. */
	assert_int_equal(kvc_seq_append(seq, 7, NULL, NULL), 0);
	for (l = 0; l < 2; l++) {
		wl_fill(k, v, l, 5, 7);
		assert_int_equal(kvc_seq_write_layer(seq, l, 7, k, v), 0);
	}
	KV_CHECK(fx->kv);
	for (l = 0; l < 2; l++)
		for (h = 0; h < 2; h++)
			for (i = 0; i < 12; i++)
				for (d = 0; d < HD; d++) {
					wl_read(fx->kv, seq, l, h, i, d, &gk,
						&gv, &pos);
					assert_int_equal(pos, i);
					assert_true(gk ==
						    wl_value(l, h, i, d, 0));
					assert_true(gv ==
						    wl_value(l, h, i, d, 1));
				}
	/* n == 0 writes nothing and succeeds. */
	assert_int_equal(kvc_seq_write_layer(seq, 0, 0, k, v), 0);
	free(zero);
	free(k);
	free(v);
}

static void test_write_layer_errors(void **state)
{
	struct fixture *fx = *state;
	size_t all = (size_t)wl_shape.layers * wl_shape.kv_heads * 20 * HD;
	float *zero = calloc(all, sizeof(float));
	float *k = malloc(all * sizeof(float));
	struct kvc_seq *seq;
	float gk, gv;
	int32_t pos;

	assert_non_null(zero);
	assert_non_null(k);
	for (size_t i = 0; i < all; i++)
		k[i] = 1.0f;
	kv_open(fx, &wl_shape);
	seq = seq_new(fx->kv);
	assert_int_equal(kvc_seq_write_layer(NULL, 0, 1, k, k), -EINVAL);
	assert_int_equal(kvc_seq_write_layer(seq, 0, 1, NULL, k), -EINVAL);
	assert_int_equal(kvc_seq_write_layer(seq, 0, 1, k, NULL), -EINVAL);
	/* More KVs than the sequence has. */
	assert_int_equal(kvc_seq_write_layer(seq, 0, 1, k, k), -EINVAL);
	assert_int_equal(kvc_seq_append(seq, 10, zero, zero), 0);
	assert_int_equal(kvc_seq_write_layer(seq, 2, 1, k, k), -EINVAL);
	assert_int_equal(kvc_seq_write_layer(seq, 0, 11, k, k), -EINVAL);

	/* A head that lost KVs: its last slots are not the newest tokens. */
	assert_int_equal(kvc_seq_truncate(seq, 1, 1, 9), 0);
	assert_int_equal(kvc_seq_write_layer(seq, 1, 10, k, k), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "head 1"));
	assert_int_equal(kvc_seq_write_layer(seq, 1, 2, k, k), -EINVAL);
	/* Head 0 was checked before head 1 refused: nothing written. */
	wl_read(fx->kv, seq, 1, 0, 9, 0, &gk, &gv, &pos);
	assert_true(gk == 0 && gv == 0);
	assert_int_equal(pos, 9);
	/* The other layer still takes it. */
	assert_int_equal(kvc_seq_write_layer(seq, 0, 10, k, k), 0);
	wl_read(fx->kv, seq, 0, 1, 9, 5, &gk, &gv, &pos);
	assert_true(gk == 1 && gv == 1);
	/* After a truncation and a new append, the newest are fine again. */
	assert_int_equal(kvc_seq_append(seq, 3, zero, zero), 0);
	assert_int_equal(kvc_seq_write_layer(seq, 1, 3, k, k), 0);
	assert_int_equal(kvc_seq_write_layer(seq, 1, 4, k, k), -EINVAL);
	KV_CHECK(fx->kv);
	free(zero);
	free(k);
}

/* A device cache refuses for now (the model runs on the CPU path). */
static void test_write_layer_device(void **state)
{
	static const struct kvc_fake_config cfg = { .granularity = 64ull << 10,
						    .devices = 1 };
	const struct kvc_cuda_driver *drv = kvc_fake_driver(&cfg);
	size_t all = (size_t)wl_shape.layers * wl_shape.kv_heads * 4 * HD;
	float *zero = calloc(all, sizeof(float));
	struct kvc_kv_params p = {
		.shape = wl_shape,
		.capacity_blocks = 64,
		.backend_kind = KVC_BACKEND_CUDA,
		.flags = KVC_POOL_NO_STATS_PAGE,
	};
	struct kvc_backend *be = NULL;
	struct kvc_kv *kv = NULL;
	struct kvc_seq *seq;

	(void)state;
	assert_non_null(zero);
	assert_non_null(drv);
	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	p.backend = be;
	if (kvc_kv_create(&p, &kv))
		fail_msg("kvc_kv_create(cuda-fake): %s", kvc_last_error());
	seq = seq_new(kv);
	assert_int_equal(kvc_seq_append(seq, 4, zero, zero), 0);
	assert_int_equal(kvc_seq_write_layer(seq, 0, 4, zero, zero),
			 -EOPNOTSUPP);
	/* Nor slots without K and V: the device's would stay unwritten. */
	assert_int_equal(kvc_seq_append(seq, 4, NULL, NULL), -EOPNOTSUPP);
	EXPECT_U64(kvc_seq_tokens(seq), 4);
	kvc_kv_destroy(kv);
	kvc_backend_close(be);
	free(zero);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefill_vs_decode_tied,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefill_vs_decode_untied,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_reference_tied, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reference_untied, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reference_f16_cache, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_files, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_forward_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_layer, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_layer_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_layer_device, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
