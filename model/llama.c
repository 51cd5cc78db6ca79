// SPDX-License-Identifier: MIT
/*
 * The Llama forward on the CPU (llama.cpp conventions, as the GGUF
 * converter lays the weights out): token embedding, then per layer
 * RMSNorm, Q/K/V projections, RoPE on adjacent pairs, attention through
 * the runtime's paged cache, output projection, RMSNorm and a SwiGLU FFN,
 * each with its residual; a final RMSNorm and the output (or tied
 * embedding) projection give the logits.
 *
 * The cache write of the runtime appends all layers at once, while a
 * layer's K and V exist only after the layer below ran: a forward appends
 * zeros for every layer first (reserving slots and positions), then fills
 * each layer with kvc_seq_write_layer() just before its attention.
 *
 * Matrix products run over blocks of weight rows on kvc_attn_parallel()'s
 * threads. In a prefill each block is dequantized once onto the work
 * item's stack and multiplied with every token of the batch, so the
 * weights are read and expanded once rather than once a token; a decode
 * step takes kvc_qdot() on the stored rows, which expands nothing.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/attention.h>
#include <kvc/kv.h>

#include "../alloc/error.h"
#include "../kernels/attention.h"
#include "../runtime/internal.h"
#include "gguf.h"
#include "llama.h"
#include "quant.h"

/* Floats of dequantized weights one work item holds on its stack. */
#define ROW_BUF 8192u
/* Weight rows per work item at most. */
#define ROWS_PER_ITEM 16u
/* Batches of at most this many tokens take kvc_qdot() row by row. */
#define DIRECT_TOKENS 2u
/* Rough cost of expanding one stored weight, in multiply-adds. */
#define DEQUANT_COST 4u
/* The block size kvc_llama_load() checks the cache shape with. */
#define CHECK_BLOCK_SIZE 16u

/**
 * struct lin - A weight matrix as stored: @out rows of @in elements.
 * @data: the rows, @row_bytes apart.
 * @type: enum kvc_ggml_type.
 * @in: elements per row.
 * @out: rows.
 * @row_bytes: bytes per row.
 */
struct lin {
	const uint8_t *data;
	uint32_t type;
	uint32_t in;
	uint32_t out;
	uint64_t row_bytes;
};

/**
 * struct layer - One transformer block's weights.
 * @attn_norm: RMSNorm weight before attention, [hidden] (dequantized).
 * @ffn_norm: RMSNorm weight before the FFN, [hidden] (dequantized).
 * @wq: query projection, hidden -> q_heads * head_dim.
 * @wk: key projection, hidden -> kv_heads * head_dim.
 * @wv: value projection, hidden -> kv_heads * head_dim.
 * @wo: attention output, q_heads * head_dim -> hidden.
 * @gate: FFN gate, hidden -> ffn.
 * @up: FFN up, hidden -> ffn.
 * @down: FFN down, ffn -> hidden.
 */
struct layer {
	float *attn_norm;
	float *ffn_norm;
	struct lin wq, wk, wv, wo, gate, up, down;
};

/**
 * struct kvc_llama - A loaded model.
 * @cfg: its config.
 * @embd: token embedding, hidden -> vocab rows.
 * @output: output projection (the embedding when tied).
 * @out_norm: final RMSNorm weight, [hidden].
 * @layers: @cfg.layers blocks.
 * @inv_freq: RoPE frequencies, [head_dim / 2].
 */
struct kvc_llama {
	struct kvc_llama_config cfg;
	struct lin embd;
	struct lin output;
	float *out_norm;
	struct layer *layers;
	double *inv_freq;
};

/* ------------------------------------------------------------------ */
/* Dequantization */

/* Types are checked at load, so a dequantization cannot fail. */
static void dequant(uint32_t type, const uint8_t *src, float *dst, uint32_t n)
{
	(void)kvc_dequant(type, src, dst, n);
}

/* ------------------------------------------------------------------ */
/* Matrix products */

typedef float v8f __attribute__((vector_size(32)));

/*
 * The products below are compiled for AVX2 and for the baseline on
 * x86-64, and the loader picks one: AVX2 doubles the lanes. No FMA (ISO C
 * contracts nothing), so both round alike.
 */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define MM_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef MM_CLONES
#define MM_CLONES
#endif

/* By address: a 32-byte vector argument has no ABI the baseline shares. */
static inline __attribute__((always_inline)) float hsum(const v8f *p)
{
	v8f v = *p;

	return ((v[0] + v[4]) + (v[1] + v[5])) +
	       ((v[2] + v[6]) + (v[3] + v[7]));
}

/* Dot products of @nr (1..4) rows @len apart with @x. */
static inline __attribute__((always_inline)) void
dot_rows(const float *w, uint32_t nr, uint32_t len, const float *x, float *out)
{
	v8f a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 }, xv, wv;
	uint32_t i = 0, r;

	/* One load of @x serves every row: the rows are what streams. */
	for (; i + 8 <= len; i += 8) {
		memcpy(&xv, x + i, sizeof(xv));
		memcpy(&wv, w + i, sizeof(wv));
		a0 += wv * xv;
		if (nr > 1) {
			memcpy(&wv, w + len + i, sizeof(wv));
			a1 += wv * xv;
		}
		if (nr > 2) {
			memcpy(&wv, w + 2 * len + i, sizeof(wv));
			a2 += wv * xv;
		}
		if (nr > 3) {
			memcpy(&wv, w + 3 * len + i, sizeof(wv));
			a3 += wv * xv;
		}
	}
	out[0] = hsum(&a0);
	out[1] = hsum(&a1);
	out[2] = hsum(&a2);
	out[3] = hsum(&a3);
	for (; i < len; i++)
		for (r = 0; r < nr; r++)
			out[r] += w[(size_t)r * len + i] * x[i];
}

/* Tokens whose inputs one pass over a block of rows keeps in cache. */
#define TOKEN_TILE 16u

/*
 * y[t][r] (+)= rows[r] . x[t] for @nr rows of @len floats and @n tokens
 * (inputs @x_stride apart, outputs @y_stride apart).
 */
MM_CLONES static void block_product(const float *rows, uint32_t nr,
				    uint32_t len, const float *x,
				    size_t x_stride, uint32_t n, float *y,
				    size_t y_stride, bool add)
{
	uint32_t t0, t, r, k, q;
	float s[4];

	for (t0 = 0; t0 < n; t0 += TOKEN_TILE)
		for (r = 0; r < nr; r += 4) {
			q = nr - r < 4 ? nr - r : 4;
			for (t = t0; t < n && t < t0 + TOKEN_TILE; t++) {
				float *yt = y + (size_t)t * y_stride + r;

				/* A constant count unrolls the inner loop. */
				if (q == 4)
					dot_rows(rows + (size_t)r * len, 4, len,
						 x + (size_t)t * x_stride, s);
				else
					dot_rows(rows + (size_t)r * len, q, len,
						 x + (size_t)t * x_stride, s);
				for (k = 0; k < q; k++)
					yt[k] = add ? yt[k] + s[k] : s[k];
			}
		}
}

/**
 * struct mm_job - y[t][o] = sum_i w[o][i] * x[t][i] for t < n.
 * @w: the weights.
 * @x: inputs, [n][w->in].
 * @y: outputs, row t at @y + t * @y_stride.
 * @y_stride: floats between output rows.
 * @items: work items (blocks of rows).
 * @rows: rows per item.
 */
struct mm_job {
	const struct lin *w;
	const float *x;
	float *y;
	size_t y_stride;
	uint32_t items;
	uint32_t rows;
};

/* Several products over the same tokens, in one parallel call. */
struct mm_batch {
	struct mm_job job[3];
	uint32_t nr;
	uint32_t n;
};

static void mm_item(void *arg, uint32_t item)
{
	struct mm_batch *b = arg;
	float buf[ROW_BUF];
	const struct mm_job *jb;
	const struct lin *w;
	uint32_t r0, nr, seg, s0, len, r, t, k = 0;

	while (item >= b->job[k].items)
		item -= b->job[k++].items;
	jb = &b->job[k];
	w = jb->w;
	r0 = item * jb->rows;
	nr = w->out - r0 < jb->rows ? w->out - r0 : jb->rows;
	if (b->n <= DIRECT_TOKENS) {
		/* Too few tokens to pay for expanding the rows. */
		for (t = 0; t < b->n; t++)
			for (r = 0; r < nr; r++)
				jb->y[(size_t)t * jb->y_stride + r0 + r] =
					kvc_qdot(w->type,
						 w->data + (uint64_t)(r0 + r) *
								   w->row_bytes,
						 jb->x + (size_t)t * w->in,
						 w->in);
		return;
	}
	/* A row longer than the buffer goes in block-aligned segments. */
	seg = w->in <= ROW_BUF / nr ? w->in :
				      ROW_BUF / nr / KVC_GGML_QK * KVC_GGML_QK;
	for (s0 = 0; s0 < w->in; s0 += seg) {
		len = w->in - s0 < seg ? w->in - s0 : seg;
		for (r = 0; r < nr; r++)
			dequant(w->type,
				w->data + (uint64_t)(r0 + r) * w->row_bytes +
					kvc_ggml_row_bytes(w->type, s0),
				buf + (size_t)r * len, len);
		block_product(buf, nr, len, jb->x + s0, w->in, b->n, jb->y + r0,
			      jb->y_stride, s0 != 0);
	}
}

static void mm_add(struct mm_batch *b, const struct lin *w, const float *x,
		   float *y, size_t y_stride)
{
	struct mm_job *jb = &b->job[b->nr++];
	uint32_t rows = ROW_BUF / w->in;

	rows = rows < 1 ? 1 : rows > ROWS_PER_ITEM ? ROWS_PER_ITEM : rows;
	*jb = (struct mm_job){
		.w = w,
		.x = x,
		.y = y,
		.y_stride = y_stride,
		.items = (w->out + rows - 1) / rows,
		.rows = rows,
	};
}

static void mm_run(struct mm_batch *b)
{
	uint64_t work = 0;
	uint32_t items = 0, k;

	for (k = 0; k < b->nr; k++) {
		items += b->job[k].items;
		work += (uint64_t)b->job[k].w->in * b->job[k].w->out *
			(b->n + DEQUANT_COST);
	}
	kvc_attn_parallel(items, work, mm_item, b);
}

/* y = W x over @n tokens, rows of @y packed. */
static void matmul(const struct lin *w, const float *x, float *y, uint32_t n)
{
	struct mm_batch b = { .n = n };

	mm_add(&b, w, x, y, w->out);
	mm_run(&b);
}

/* ------------------------------------------------------------------ */
/* Loading */

static int get_u32(const struct kvc_gguf *g, const char *key, uint32_t *out,
		   bool required)
{
	int err = kvc_gguf_get_u32(g, key, out);

	if (err == -ENOENT && !required)
		return 0;
	if (err == -ENOENT)
		return kvc_err(-EINVAL, "llama: no metadata %s", key);
	return err;
}

static int get_f32(const struct kvc_gguf *g, const char *key, float *out)
{
	int err = kvc_gguf_get_f32(g, key, out);

	return err == -ENOENT ? 0 : err;
}

/*
 * Only plain RoPE over the whole head is computed here: a file that asks
 * for frequency factors (Llama 3.1's rope_freqs), a scaling, or a rotated
 * part smaller than the head would load and give wrong logits, so it is
 * refused.
 */
static int rope_plain(const struct kvc_gguf *g,
		      const struct kvc_llama_config *c)
{
	struct kvc_gguf_str type;
	uint32_t dims;

	if (kvc_gguf_tensor(g, "rope_freqs.weight"))
		return kvc_err(
			-EINVAL,
			"llama: rope_freqs.weight (RoPE frequency factors) is not supported");
	if (!kvc_gguf_get_str(g, "llama.rope.scaling.type", &type) &&
	    !(type.len == 4 && !memcmp(type.s, "none", 4)))
		return kvc_err(-EINVAL,
			       "llama: RoPE scaling '%.*s' is not supported",
			       (int)(type.len > 32 ? 32 : type.len), type.s);
	if (!kvc_gguf_get_u32(g, "llama.rope.dimension_count", &dims) &&
	    dims != c->head_dim)
		return kvc_err(
			-EINVAL,
			"llama: RoPE over %u of the head's %u dimensions is not supported",
			dims, c->head_dim);
	return 0;
}

static int load_config(const struct kvc_gguf *g, struct kvc_llama_config *c)
{
	struct kvc_gguf_str arch;
	int err;

	err = kvc_gguf_get_str(g, "general.architecture", &arch);
	if (err && err != -ENOENT)
		return err;
	if (!err && (arch.len != 5 || memcmp(arch.s, "llama", 5)))
		return kvc_err(
			-EINVAL,
			"llama: general.architecture is \"%.*s\", not llama",
			(int)(arch.len > 64 ? 64 : arch.len), arch.s);
	*c = (struct kvc_llama_config){ .rope_theta = 10000.0f,
					.rms_eps = 1e-5f };
	err = get_u32(g, "llama.block_count", &c->layers, true);
	if (!err)
		err = get_u32(g, "llama.embedding_length", &c->hidden, true);
	if (!err)
		err = get_u32(g, "llama.feed_forward_length", &c->ffn, true);
	if (!err)
		err = get_u32(g, "llama.attention.head_count", &c->q_heads,
			      true);
	if (err)
		return err;
	c->kv_heads = c->q_heads;
	err = get_u32(g, "llama.attention.head_count_kv", &c->kv_heads, false);
	if (!err)
		err = get_u32(g, "llama.context_length", &c->context, false);
	if (!err)
		err = get_f32(g, "llama.rope.freq_base", &c->rope_theta);
	if (!err)
		err = get_f32(g, "llama.attention.layer_norm_rms_epsilon",
			      &c->rms_eps);
	if (err)
		return err;
	if (!c->layers || !c->hidden || !c->ffn || !c->q_heads || !c->kv_heads)
		return kvc_err(
			-EINVAL,
			"llama: %u layers, hidden %u, ffn %u, %u query heads, %u KV heads: none may be 0",
			c->layers, c->hidden, c->ffn, c->q_heads, c->kv_heads);
	if (c->hidden % c->q_heads || c->q_heads % c->kv_heads)
		return kvc_err(
			-EINVAL,
			"llama: hidden %u, %u query heads, %u KV heads do not divide",
			c->hidden, c->q_heads, c->kv_heads);
	c->head_dim = c->hidden / c->q_heads;
	if (c->head_dim % 2)
		return kvc_err(-EINVAL, "llama: head_dim %u is odd",
			       c->head_dim);
	if (!(c->rope_theta > 0) || !(c->rms_eps >= 0) ||
	    !isfinite(c->rope_theta) || !isfinite(c->rms_eps))
		return kvc_err(-EINVAL,
			       "llama: rope freq_base %g, rms epsilon %g",
			       (double)c->rope_theta, (double)c->rms_eps);
	return rope_plain(g, c);
}

static const struct kvc_gguf_tensor *
find(const struct kvc_gguf *g, const char *name, bool required, int *err)
{
	const struct kvc_gguf_tensor *t = kvc_gguf_tensor(g, name);

	*err = 0;
	if (!t && required)
		*err = kvc_err(-EINVAL, "llama: no tensor %s", name);
	else if (t && !kvc_ggml_block(t->type, NULL))
		*err = kvc_err(-EINVAL,
			       "llama: tensor %s has unsupported type %u", name,
			       t->type);
	return t;
}

/* Tensor @name as a matrix of @out rows of @in (out 0: any, as read). */
static int load_lin(const struct kvc_gguf *g, const char *name, uint32_t in,
		    uint32_t out, struct lin *w)
{
	const struct kvc_gguf_tensor *t;
	int err;

	t = find(g, name, true, &err);
	if (err)
		return err;
	if (t->n_dims != 2 || t->dims[0] != in || t->dims[1] == 0 ||
	    t->dims[1] > INT32_MAX || (out && t->dims[1] != out))
		return kvc_err(
			-EINVAL,
			"llama: tensor %s is %u-d %llu x %llu, expected %u x %u",
			name, t->n_dims, (unsigned long long)t->dims[0],
			(unsigned long long)t->dims[1], in, out);
	if (kvc_ggml_quantized(t->type) && in % KVC_GGML_QK)
		return kvc_err(
			-EINVAL,
			"llama: tensor %s rows of %u are not whole blocks of %d",
			name, in, KVC_GGML_QK);
	w->data = t->data;
	w->type = t->type;
	w->in = in;
	w->out = (uint32_t)t->dims[1];
	w->row_bytes = kvc_ggml_row_bytes(t->type, in);
	if (t->bytes < w->row_bytes * w->out || !t->data)
		return kvc_err(-EINVAL,
			       "llama: tensor %s holds %llu bytes, not %llu",
			       name, (unsigned long long)t->bytes,
			       (unsigned long long)(w->row_bytes * w->out));
	return 0;
}

/* A norm weight of @n elements, dequantized into a new array. */
static int load_vec(const struct kvc_gguf *g, const char *name, uint32_t n,
		    float **out)
{
	const struct kvc_gguf_tensor *t;
	int err;

	t = find(g, name, true, &err);
	if (err)
		return err;
	if (t->n_dims != 1 || t->dims[0] != n)
		return kvc_err(
			-EINVAL,
			"llama: tensor %s is %u-d, %llu long, expected %u",
			name, t->n_dims, (unsigned long long)t->dims[0], n);
	if ((kvc_ggml_quantized(t->type) && n % KVC_GGML_QK) ||
	    t->bytes < kvc_ggml_row_bytes(t->type, n) || !t->data)
		return kvc_err(-EINVAL,
			       "llama: tensor %s of %u elements: bad size",
			       name, n);
	*out = malloc((size_t)n * sizeof(float));
	if (!*out)
		return kvc_err(-ENOMEM, "llama: out of memory for %s", name);
	dequant(t->type, t->data, *out, n);
	return 0;
}

static int load_layer(const struct kvc_gguf *g,
		      const struct kvc_llama_config *c, uint32_t l,
		      struct layer *ly)
{
	uint32_t qd = c->q_heads * c->head_dim, kd = c->kv_heads * c->head_dim;
	char name[64];
	int err;

#define NAME(s) (snprintf(name, sizeof(name), "blk.%u." s ".weight", l), name)
	err = load_vec(g, NAME("attn_norm"), c->hidden, &ly->attn_norm);
	if (!err)
		err = load_vec(g, NAME("ffn_norm"), c->hidden, &ly->ffn_norm);
	if (!err)
		err = load_lin(g, NAME("attn_q"), c->hidden, qd, &ly->wq);
	if (!err)
		err = load_lin(g, NAME("attn_k"), c->hidden, kd, &ly->wk);
	if (!err)
		err = load_lin(g, NAME("attn_v"), c->hidden, kd, &ly->wv);
	if (!err)
		err = load_lin(g, NAME("attn_output"), qd, c->hidden, &ly->wo);
	if (!err)
		err = load_lin(g, NAME("ffn_gate"), c->hidden, c->ffn,
			       &ly->gate);
	if (!err)
		err = load_lin(g, NAME("ffn_up"), c->hidden, c->ffn, &ly->up);
	if (!err)
		err = load_lin(g, NAME("ffn_down"), c->ffn, c->hidden,
			       &ly->down);
#undef NAME
	return err;
}

int kvc_llama_load(const struct kvc_gguf *g, struct kvc_llama **out)
{
	struct kvc_model_shape shape;
	struct kvc_llama *m;
	uint32_t i, l;
	int err;

	if (!g || !out)
		return kvc_err(-EINVAL, "kvc_llama_load: NULL %s",
			       g ? "out" : "file");
	m = calloc(1, sizeof(*m));
	if (!m)
		return kvc_err(-ENOMEM, "llama: out of memory for the model");
	err = load_config(g, &m->cfg);
	if (err)
		goto fail;
	/* A model the cache cannot hold is refused now, not at the first run. */
	kvc_llama_shape(m, CHECK_BLOCK_SIZE, KVC_DTYPE_F32, &shape);
	err = kvc_model_shape_check(&shape);
	if (err)
		goto fail;
	err = load_lin(g, "token_embd.weight", m->cfg.hidden, 0, &m->embd);
	if (err)
		goto fail;
	m->cfg.vocab = m->embd.out;
	m->cfg.tied = !kvc_gguf_tensor(g, "output.weight");
	if (m->cfg.tied)
		m->output = m->embd;
	else
		err = load_lin(g, "output.weight", m->cfg.hidden, m->cfg.vocab,
			       &m->output);
	if (!err)
		err = load_vec(g, "output_norm.weight", m->cfg.hidden,
			       &m->out_norm);
	if (err)
		goto fail;
	m->layers = calloc(m->cfg.layers, sizeof(*m->layers));
	m->inv_freq = malloc(m->cfg.head_dim / 2 * sizeof(*m->inv_freq));
	if (!m->layers || !m->inv_freq) {
		err = kvc_err(-ENOMEM, "llama: out of memory for %u layers",
			      m->cfg.layers);
		goto fail;
	}
	for (l = 0; l < m->cfg.layers; l++) {
		err = load_layer(g, &m->cfg, l, &m->layers[l]);
		if (err)
			goto fail;
	}
	for (i = 0; i < m->cfg.head_dim / 2; i++)
		m->inv_freq[i] = pow((double)m->cfg.rope_theta,
				     -2.0 * i / m->cfg.head_dim);
	*out = m;
	return 0;
fail:
	kvc_llama_free(m);
	return err;
}

void kvc_llama_free(struct kvc_llama *m)
{
	uint32_t l;

	if (!m)
		return;
	for (l = 0; m->layers && l < m->cfg.layers; l++) {
		free(m->layers[l].attn_norm);
		free(m->layers[l].ffn_norm);
	}
	free(m->layers);
	free(m->out_norm);
	free(m->inv_freq);
	free(m);
}

const struct kvc_llama_config *kvc_llama_config(const struct kvc_llama *m)
{
	return &m->cfg;
}

void kvc_llama_shape(const struct kvc_llama *m, uint32_t block_size,
		     enum kvc_dtype dtype, struct kvc_model_shape *out)
{
	*out = (struct kvc_model_shape){
		.layers = m->cfg.layers,
		.q_heads = m->cfg.q_heads,
		.kv_heads = m->cfg.kv_heads,
		.head_dim = m->cfg.head_dim,
		.block_size = block_size,
		.dtype = dtype,
	};
}

/* ------------------------------------------------------------------ */
/* Forward */

/* y = x / sqrt(mean(x^2) + eps) * w, for @n rows of @d. */
static void rmsnorm(const float *x, const float *w, float *y, uint32_t n,
		    uint32_t d, float eps)
{
	uint32_t t, i;

	for (t = 0; t < n; t++, x += d, y += d) {
		double ss = 0;
		float r;

		for (i = 0; i < d; i++)
			ss += (double)x[i] * x[i];
		r = (float)(1.0 / sqrt(ss / d + eps));
		for (i = 0; i < d; i++)
			y[i] = x[i] * r * w[i];
	}
}

/*
 * The rotation of each pair (2i, 2i + 1) at positions @pos0 .. @pos0 + n
 * - 1: cos then sin, hd / 2 pairs per token. Once per forward, not once
 * per layer and per q and k.
 */
static void rope_angles(const struct kvc_llama *m, float *cs, uint32_t pos0,
			uint32_t n)
{
	uint32_t hd = m->cfg.head_dim, t, i;

	for (t = 0; t < n; t++)
		for (i = 0; i < hd / 2; i++, cs += 2) {
			double a = (double)(pos0 + t) * m->inv_freq[i];

			cs[0] = (float)cos(a);
			cs[1] = (float)sin(a);
		}
}

/* Rotate pairs (2i, 2i + 1) of each of @heads heads of one token. */
static void rope(const struct kvc_llama *m, float *x, uint32_t heads,
		 const float *cs)
{
	uint32_t hd = m->cfg.head_dim, h, i;

	for (i = 0; i < hd / 2; i++) {
		float c = cs[2 * i], s = cs[2 * i + 1];

		for (h = 0; h < heads; h++) {
			float *p = x + (size_t)h * hd + 2 * i;
			float x0 = p[0], x1 = p[1];

			p[0] = x0 * c - x1 * s;
			p[1] = x0 * s + x1 * c;
		}
	}
}

/* The scratch of one forward of @n tokens. */
struct fwd {
	float *x, *h, *q, *k, *v, *kt, *vt, *att, *gate, *up, *cs;
};

static void fwd_free(struct fwd *f)
{
	free(f->x);
	free(f->h);
	free(f->q);
	free(f->k);
	free(f->v);
	free(f->kt);
	free(f->vt);
	free(f->att);
	free(f->gate);
	free(f->up);
	free(f->cs);
}

static int fwd_alloc(const struct kvc_llama_config *c, uint32_t n,
		     struct fwd *f)
{
	size_t qd = (size_t)c->q_heads * c->head_dim;
	size_t kd = (size_t)c->kv_heads * c->head_dim;
	size_t widest = c->hidden, bytes;

	/* The widest row of any buffer, times n, must fit a size_t. */
	if (qd > widest)
		widest = qd;
	if (c->ffn > widest)
		widest = c->ffn;
	memset(f, 0, sizeof(*f));
	if (__builtin_mul_overflow(widest, (size_t)n, &bytes) ||
	    __builtin_mul_overflow(bytes, sizeof(float), &bytes))
		return kvc_err(-ENOMEM, "llama: %u tokens overflow a buffer",
			       n);
	*f = (struct fwd){
		.x = malloc(n * (size_t)c->hidden * sizeof(float)),
		.h = malloc(n * (size_t)c->hidden * sizeof(float)),
		.q = malloc(n * qd * sizeof(float)),
		.k = malloc(n * kd * sizeof(float)),
		.v = malloc(n * kd * sizeof(float)),
		.kt = malloc(n * kd * sizeof(float)),
		.vt = malloc(n * kd * sizeof(float)),
		.att = malloc(n * qd * sizeof(float)),
		.gate = malloc(n * (size_t)c->ffn * sizeof(float)),
		.up = malloc(n * (size_t)c->ffn * sizeof(float)),
		.cs = malloc(n * (size_t)c->head_dim * sizeof(float)),
	};
	if (!f->x || !f->h || !f->q || !f->k || !f->v || !f->kt || !f->vt ||
	    !f->att || !f->gate || !f->up || !f->cs) {
		fwd_free(f);
		return kvc_err(-ENOMEM, "llama: out of memory for %u tokens",
			       n);
	}
	return 0;
}

/* [n][heads][hd] -> [heads][n][hd], the layout the cache write takes. */
static void to_head_major(const float *src, float *dst, uint32_t n,
			  uint32_t heads, uint32_t hd)
{
	uint32_t t, h;

	for (t = 0; t < n; t++)
		for (h = 0; h < heads; h++)
			memcpy(dst + ((size_t)h * n + t) * hd,
			       src + ((size_t)t * heads + h) * hd,
			       hd * sizeof(float));
}

static int run_layer(struct kvc_llama *m, struct kvc_seq *seq, uint32_t l,
		     uint32_t n, uint32_t pos0, struct fwd *f,
		     const struct kvc_observe *obs,
		     enum kvc_metric_kind decode_metric)
{
	const struct kvc_llama_config *c = &m->cfg;
	const struct layer *ly = &m->layers[l];
	size_t qd = (size_t)c->q_heads * c->head_dim;
	size_t kd = (size_t)c->kv_heads * c->head_dim;
	struct mm_batch b = { .n = n };
	size_t i, all = (size_t)n * c->hidden;
	uint32_t t;
	int err;

	rmsnorm(f->x, ly->attn_norm, f->h, n, c->hidden, c->rms_eps);
	mm_add(&b, &ly->wq, f->h, f->q, qd);
	mm_add(&b, &ly->wk, f->h, f->k, kd);
	mm_add(&b, &ly->wv, f->h, f->v, kd);
	mm_run(&b);
	for (t = 0; t < n; t++) {
		rope(m, f->q + t * qd, c->q_heads, f->cs + t * c->head_dim);
		rope(m, f->k + t * kd, c->kv_heads, f->cs + t * c->head_dim);
	}
	to_head_major(f->k, f->kt, n, c->kv_heads, c->head_dim);
	to_head_major(f->v, f->vt, n, c->kv_heads, c->head_dim);
	err = kvc_seq_write_layer(seq, l, n, f->kt, f->vt);
	if (err)
		return err;
	if (n > 1)
		err = kvc_attn_prefill(seq, l, n, f->q, f->att, obs);
	else
		err = kvc_attn_decode(seq, l, f->q, f->att, decode_metric);
	if (err)
		return err;
	matmul(&ly->wo, f->att, f->h, n);
	for (i = 0; i < all; i++)
		f->x[i] += f->h[i];

	rmsnorm(f->x, ly->ffn_norm, f->h, n, c->hidden, c->rms_eps);
	b = (struct mm_batch){ .n = n };
	mm_add(&b, &ly->gate, f->h, f->gate, c->ffn);
	mm_add(&b, &ly->up, f->h, f->up, c->ffn);
	mm_run(&b);
	for (i = 0; i < (size_t)n * c->ffn; i++) {
		float g = f->gate[i];

		f->gate[i] = g / (1.0f + expf(-g)) * f->up[i];
	}
	matmul(&ly->down, f->gate, f->h, n);
	for (i = 0; i < all; i++)
		f->x[i] += f->h[i];
	return 0;
}

static int forward_check(const struct kvc_llama *m, const struct kvc_seq *seq,
			 const int32_t *tokens, uint32_t n, const float *logits)
{
	const struct kvc_model_shape *s;
	uint32_t t;

	if (!m || !seq || !tokens || !logits)
		return kvc_err(-EINVAL, "kvc_llama_forward: NULL %s",
			       !m      ? "model" :
			       !seq    ? "sequence" :
			       !tokens ? "tokens" :
					 "logits");
	if (!n)
		return kvc_err(-EINVAL, "kvc_llama_forward: no tokens");
	/* Checked before anything is appended (kvc_seq_write_layer() is
	 * host only). */
	if (strcmp(kvc_kv_backend_name(seq->kv), "host"))
		return kvc_err(
			-EOPNOTSUPP,
			"kvc_llama_forward: the model runs on a host cache only (this one is on %s)",
			kvc_kv_backend_name(seq->kv));
	s = kvc_kv_shape(seq->kv);
	if (s->layers != m->cfg.layers || s->q_heads != m->cfg.q_heads ||
	    s->kv_heads != m->cfg.kv_heads || s->head_dim != m->cfg.head_dim)
		return kvc_err(
			-EINVAL,
			"kvc_llama_forward: cache of %u layers, %u/%u heads of %u, the model has %u layers, %u/%u heads of %u",
			s->layers, s->q_heads, s->kv_heads, s->head_dim,
			m->cfg.layers, m->cfg.q_heads, m->cfg.kv_heads,
			m->cfg.head_dim);
	for (t = 0; t < n; t++)
		if (tokens[t] < 0 || (uint32_t)tokens[t] >= m->cfg.vocab)
			return kvc_err(
				-EINVAL,
				"kvc_llama_forward: token %u is id %d, vocabulary %u",
				t, tokens[t], m->cfg.vocab);
	return 0;
}

int kvc_llama_forward(struct kvc_llama *m, struct kvc_seq *seq,
		      const int32_t *tokens, uint32_t n,
		      const struct kvc_observe *obs,
		      enum kvc_metric_kind decode_metric, float *logits,
		      bool all_logits)
{
	const struct kvc_llama_config *c;
	uint32_t t, l, pos0, rows;
	struct fwd f;
	size_t hid;
	int err;

	err = forward_check(m, seq, tokens, n, logits);
	if (err)
		return err;
	c = &m->cfg;
	hid = c->hidden;
	err = fwd_alloc(c, n, &f);
	if (err)
		return err;
	/* Slots and positions for every layer, filled layer by layer. */
	pos0 = kvc_seq_tokens(seq);
	err = kvc_seq_append(seq, n, NULL, NULL);
	if (err)
		goto out;
	rope_angles(m, f.cs, pos0, n);

	for (t = 0; t < n; t++)
		dequant(m->embd.type,
			m->embd.data + (uint64_t)tokens[t] * m->embd.row_bytes,
			f.x + t * hid, c->hidden);
	for (l = 0; l < c->layers; l++) {
		err = run_layer(m, seq, l, n, pos0, &f, obs, decode_metric);
		if (err)
			goto out;
	}

	/* Only the rows whose logits are wanted go through the head. */
	rows = all_logits ? n : 1;
	rmsnorm(f.x + (size_t)(n - rows) * hid, m->out_norm, f.h, rows,
		c->hidden, c->rms_eps);
	matmul(&m->output, f.h, logits, rows);
out:
	fwd_free(&f);
	return err;
}
