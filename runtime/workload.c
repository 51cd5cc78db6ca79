// SPDX-License-Identifier: MIT
/*
 * The synthetic workload: seeded Q, K and V whose attention has the
 * per-head shapes real models show (sinks, recency, heavy hitters,
 * diffuse heads), so that per-head eviction has something to find.
 *
 * Every number is a pure function of (seed, stream, sequence, layer, head,
 * position, element): a counter-based hash (splitmix64's finaliser over a
 * key mixed from those fields), never a sequential generator, so any cut
 * of a run into calls gives the same vectors. Never keeps state between
 * calls; the generator is read-only after kvc_synth_create().
 *
 * Kinds. The layers * kv_heads heads get 15% sink, 35% local, 25% heavy
 * and 25% diffuse, as exactly as the count allows (largest remainder),
 * dealt to (layer, head) by a seeded shuffle.
 *
 * Scale. Noise elements are uniform with variance 1 (keys) or a set
 * variance (queries), so a key's norm is about sqrt(head_dim) and a score
 * q . k / sqrt(head_dim) between unstructured vectors has a standard
 * deviation of about the query's noise level (0.5; 1 for diffuse heads).
 * Structure is added on top and sized in score units, independently of
 * head_dim:
 *
 *  - sink: tokens 0..3 carry A * u, a seeded unit direction of the head,
 *    and the queries carry B * u, with A * B / sqrt(head_dim) about 10:
 *    four keys 10 units above thousands of others take most of the mass.
 *  - local: keys and queries carry a rotary pair per two dimensions,
 *    (cos w p, sin w p), so q(p) . k(p') = c * sum_f cos(w_f (p - p')).
 *    With w_f drawn from N(0, 1 / width^2) (random Fourier features) the
 *    sum approximates a Gaussian of p - p' of that width (4..16 tokens):
 *    12 units at distance 0, falling to noise after a few widths.
 *  - heavy: about 2% of positions of each (sequence, layer, head), chosen
 *    by the hash of the position, carry A * u at 0.8..1.2 of the head's
 *    strength (about 6.5 units); the queries carry B * u.
 *  - diffuse: every key carries z * A * u, z of variance 1 drawn per
 *    position, with A * B / sqrt(head_dim) = 1, and the queries are
 *    noisier: each key has a lasting salience of about one unit and each
 *    step adds about one unit of noise; attention is wide, not uniform.
 *
 * Each head's strength varies by 0.85..1.15, and each query head of a
 * GQA group scales its structural part by its own 0.85..1.15 and draws its
 * own noise. Lengths, in units of sqrt(head_dim) for the noise and as
 * plain numbers for the structure (which does not grow with head_dim):
 * queries are 0.7 (sink, heavy) to 1.1 (local, diffuse) sqrt(head_dim)
 * long; keys are sqrt(head_dim) of noise plus about 12 of rotary part
 * (local), 15..25 along u (sink tokens), 9..18 (heavy tokens) or 4 at
 * most (diffuse). Scores stay within about -12..20: no overflow, in f32
 * or after an f16 store.
 *
 * Values are the head's seeded mean vector (elements of deviation 0.5)
 * plus unit noise per token: outputs are neither zero nor independent of
 * which keys attention sees, so an eviction's relative error means
 * something.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <kvc/kv.h>

#include "../alloc/error.h"
#include "workload.h"

#define SYNTH_SINKS 4u
#define SYNTH_HEAVY_SHARE 0.02

/* Structure, in score units (added to q . k / sqrt(head_dim)). */
#define SINK_GAIN 10.0
#define HEAVY_GAIN 6.5
#define DIFFUSE_SALIENCE 1.0
#define LOCAL_PEAK 12.0
#define LOCAL_WIDTH_MIN 4.0
#define LOCAL_WIDTH_MAX 16.0
/* The structural part of a query is Q_STRUCT * sqrt(head_dim) long. */
#define Q_STRUCT 0.5
#define Q_STRUCT_LOCAL 1.0
/* Standard deviation of a query's noise elements. */
#define Q_NOISE 0.5
#define Q_NOISE_DIFFUSE 1.0
/* Standard deviation of the elements of a head's mean value. */
#define V_MEAN 0.5

#define GOLDEN 0x9e3779b97f4a7c15ull

/* Independent hash streams; a new one goes at the end. */
enum synth_stream {
	STREAM_KIND,
	STREAM_DIR,
	STREAM_FREQ,
	STREAM_HEAD,
	STREAM_VMEAN,
	STREAM_QGAIN,
	STREAM_KEY,
	STREAM_VALUE,
	STREAM_QUERY,
	STREAM_HEAVY,
	STREAM_SINK,
	STREAM_SALIENCE,
	NR_STREAMS,
};

/**
 * struct synth_head - What one (layer, KV head) is made of.
 * @kind: how it attends.
 * @key_amp: a sink, heavy or diffuse key's amplitude along @dir (A), or a local
 *           key's amplitude per rotary element (a).
 * @query_amp: the same for queries (B, or b).
 * @dir: [head_dim] unit direction of a sink, heavy or diffuse head.
 * @freq: [head_dim / 2] rotary frequencies of a local head.
 * @v_mean: [head_dim] the mean of its values.
 */
struct synth_head {
	enum kvc_head_kind kind;
	float key_amp;
	float query_amp;
	float *dir;
	float *freq;
	float *v_mean;
};

/**
 * struct kvc_synth - A generator.
 * @shape: the model shape.
 * @stream: the root key of each stream, from the seed.
 * @heads: layers * kv_heads heads, layer-major.
 * @q_gain: layers * q_heads structural gains of the query heads.
 * @floats: the arrays the heads point into.
 */
struct kvc_synth {
	struct kvc_model_shape shape;
	uint64_t stream[NR_STREAMS];
	struct synth_head *heads;
	float *q_gain;
	float *floats;
};

static uint64_t splitmix64(uint64_t z)
{
	z += GOLDEN;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The key of one row of a stream; its elements hash (key, index). */
static uint64_t row_key(const struct kvc_synth *s, enum synth_stream stream,
			uint32_t seq, uint32_t layer, uint32_t head,
			uint32_t pos)
{
	uint64_t h = s->stream[stream];

	h = splitmix64(h ^ seq);
	h = splitmix64(h ^ ((uint64_t)layer << 32 | head));
	return splitmix64(h ^ pos);
}

/* The @i-th 64 random bits of a row. */
static uint64_t row_bits(uint64_t key, uint32_t i)
{
	return splitmix64(key + (uint64_t)(i + 1) * GOLDEN);
}

/* Uniform in [0, 1). */
static double unit(uint64_t bits)
{
	return (double)(bits >> 11) * 0x1p-53;
}

/* Uniform in [-sqrt(3), sqrt(3)): mean 0, variance 1. */
static float sym(uint32_t bits)
{
	return (float)((double)(int32_t)bits * 0x1p-31 * 1.7320508075688772);
}

/* @x[0..@d) += @sigma * unit-variance noise of row @key (@d even). */
static void add_noise(float *x, uint32_t d, uint64_t key, float sigma)
{
	uint64_t bits;
	uint32_t i;

	for (i = 0; i < d; i += 2) {
		bits = row_bits(key, i / 2);
		x[i] += sigma * sym((uint32_t)bits);
		x[i + 1] += sigma * sym((uint32_t)(bits >> 32));
	}
}

/* Largest-remainder counts of each kind among @n heads. */
static void kind_counts(uint32_t n, uint32_t count[4])
{
	static const uint32_t percent[4] = { 15, 35, 25, 25 };
	uint32_t rem[4], left = n, k, best;

	for (k = 0; k < 4; k++) {
		count[k] = (uint32_t)((uint64_t)n * percent[k] / 100);
		rem[k] = (uint32_t)((uint64_t)n * percent[k] % 100);
		left -= count[k];
	}
	while (left--) {
		best = 0;
		for (k = 1; k < 4; k++)
			if (rem[k] > rem[best])
				best = k;
		count[best]++;
		rem[best] = 0;
	}
}

/* Deal the kinds to the heads: counts in order, then a seeded shuffle. */
static void deal_kinds(struct kvc_synth *s, uint32_t n)
{
	uint32_t count[4], i = 0, j, k, c;
	enum kvc_head_kind tmp;

	kind_counts(n, count);
	for (k = 0; k < 4; k++)
		for (c = 0; c < count[k]; c++)
			s->heads[i++].kind = (enum kvc_head_kind)k;
	for (i = n; i > 1; i--) {
		j = (uint32_t)(unit(row_bits(s->stream[STREAM_KIND], i)) * i);
		tmp = s->heads[i - 1].kind;
		s->heads[i - 1].kind = s->heads[j].kind;
		s->heads[j].kind = tmp;
	}
}

/* A standard normal from 128 random bits (Box-Muller). */
static double normal(uint64_t a, uint64_t b)
{
	double u = 1.0 - unit(a); /* (0, 1] */

	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * unit(b));
}

static void head_init(struct kvc_synth *s, uint32_t layer, uint32_t head,
		      struct synth_head *hd)
{
	static const double kind_gain[] = {
		[KVC_HEAD_SINK] = SINK_GAIN,
		[KVC_HEAD_HEAVY] = HEAVY_GAIN,
		[KVC_HEAD_DIFFUSE] = DIFFUSE_SALIENCE,
	};
	uint32_t d = s->shape.head_dim, f, i;
	double root_d = sqrt((double)d), gain, width, norm = 0;
	uint64_t key;

	key = row_key(s, STREAM_HEAD, 0, layer, head, 0);
	gain = 0.85 + 0.3 * unit(row_bits(key, 0));
	width = LOCAL_WIDTH_MIN +
		(LOCAL_WIDTH_MAX - LOCAL_WIDTH_MIN) * unit(row_bits(key, 1));

	add_noise(hd->v_mean, d, row_key(s, STREAM_VMEAN, 0, layer, head, 0),
		  V_MEAN);

	switch (hd->kind) {
	case KVC_HEAD_SINK:
	case KVC_HEAD_HEAVY:
	case KVC_HEAD_DIFFUSE:
		add_noise(hd->dir, d, row_key(s, STREAM_DIR, 0, layer, head, 0),
			  1.0f);
		for (i = 0; i < d; i++)
			norm += (double)hd->dir[i] * hd->dir[i];
		norm = sqrt(norm);
		for (i = 0; i < d; i++)
			hd->dir[i] = (float)(hd->dir[i] / norm);
		/* A * B / sqrt(d) = gain; B = Q_STRUCT * sqrt(d). */
		hd->query_amp = (float)(Q_STRUCT * root_d);
		hd->key_amp = (float)(gain * kind_gain[hd->kind] / Q_STRUCT);
		break;
	case KVC_HEAD_LOCAL:
		key = row_key(s, STREAM_FREQ, 0, layer, head, 0);
		for (f = 0; f < d / 2; f++)
			hd->freq[f] =
				(float)(fabs(normal(row_bits(key, 2 * f),
						    row_bits(key, 2 * f + 1))) /
					width);
		/*
		 * d / 2 pairs: |q_rot| = b * sqrt(d / 2) = Q_STRUCT_LOCAL *
		 * sqrt(d), and the peak (d / 2) * a * b / sqrt(d) = gain.
		 */
		hd->query_amp = (float)(Q_STRUCT_LOCAL * sqrt(2.0));
		hd->key_amp = (float)(gain * LOCAL_PEAK * 2.0 /
				      (root_d * hd->query_amp));
		break;
	}
}

int kvc_synth_create(const struct kvc_model_shape *shape, uint64_t seed,
		     struct kvc_synth **out)
{
	uint32_t nr_heads, d, h, layer, i;
	struct kvc_synth *s;
	size_t per_head;
	uint64_t root;
	float *at;
	int err;

	if (!out)
		return kvc_err(-EINVAL, "kvc_synth_create: NULL out");
	*out = NULL;
	err = kvc_model_shape_check(shape);
	if (err)
		return err;
	s = calloc(1, sizeof(*s));
	if (!s)
		return kvc_err(-ENOMEM, "kvc_synth_create: out of memory");
	s->shape = *shape;
	d = shape->head_dim;
	nr_heads = shape->layers * shape->kv_heads;
	root = splitmix64(seed);
	for (i = 0; i < NR_STREAMS; i++)
		s->stream[i] = splitmix64(root + i);

	/* dir and v_mean: d floats each; freq: d / 2. */
	per_head = (size_t)d * 5 / 2;
	s->heads = calloc(nr_heads, sizeof(*s->heads));
	s->q_gain = calloc((size_t)shape->layers * shape->q_heads,
			   sizeof(*s->q_gain));
	s->floats = calloc((size_t)nr_heads * per_head, sizeof(float));
	if (!s->heads || !s->q_gain || !s->floats) {
		kvc_synth_destroy(s);
		return kvc_err(-ENOMEM,
			       "kvc_synth_create: out of memory for %u heads",
			       nr_heads);
	}

	deal_kinds(s, nr_heads);
	at = s->floats;
	for (layer = 0; layer < shape->layers; layer++)
		for (h = 0; h < shape->kv_heads; h++) {
			struct synth_head *hd =
				&s->heads[layer * shape->kv_heads + h];

			hd->dir = at;
			hd->v_mean = at + d;
			hd->freq = at + 2 * d;
			at += per_head;
			head_init(s, layer, h, hd);
		}
	for (layer = 0; layer < shape->layers; layer++)
		for (h = 0; h < shape->q_heads; h++)
			s->q_gain[layer * shape->q_heads + h] =
				(float)(0.85 +
					0.3 * unit(row_bits(
						      row_key(s, STREAM_QGAIN,
							      0, layer, h, 0),
						      0)));
	*out = s;
	return 0;
}

void kvc_synth_destroy(struct kvc_synth *s)
{
	if (!s)
		return;
	free(s->floats);
	free(s->q_gain);
	free(s->heads);
	free(s);
}

enum kvc_head_kind kvc_synth_head_kind(const struct kvc_synth *s,
				       uint32_t layer, uint32_t head)
{
	return s->heads[layer * s->shape.kv_heads + head].kind;
}

/* @x[0..d) += @amp * (cos w_f p, sin w_f p) for each pair f. */
static void add_rotary(float *x, const struct synth_head *hd, uint32_t d,
		       uint32_t pos, double amp)
{
	double sn, cs;
	uint32_t f;

	for (f = 0; f < d / 2; f++) {
		sincos((double)hd->freq[f] * pos, &sn, &cs);
		x[2 * f] += (float)(amp * cs);
		x[2 * f + 1] += (float)(amp * sn);
	}
}

/* @x[0..d) += @amp * the head's direction. */
static void add_dir(float *x, const struct synth_head *hd, uint32_t d,
		    double amp)
{
	uint32_t i;

	for (i = 0; i < d; i++)
		x[i] += (float)(amp * hd->dir[i]);
}

/*
 * How strongly the key at @pos carries the head's direction: 0.9..1.1
 * for the first tokens of a sink head, 0.8..1.2 for the heavy positions of
 * a heavy head, 0 for the others; -1.7..1.7 (variance 1) for every key of
 * a diffuse head.
 */
static double key_strength(const struct kvc_synth *s,
			   const struct synth_head *hd, uint32_t seq,
			   uint32_t layer, uint32_t head, uint32_t pos)
{
	uint64_t bits;

	if (hd->kind == KVC_HEAD_SINK) {
		if (pos >= SYNTH_SINKS)
			return 0;
		bits = row_bits(row_key(s, STREAM_SINK, 0, layer, head, pos),
				0);
		return 0.9 + 0.2 * unit(bits);
	}
	if (hd->kind == KVC_HEAD_DIFFUSE) {
		bits = row_bits(
			row_key(s, STREAM_SALIENCE, seq, layer, head, pos), 0);
		return sym((uint32_t)bits);
	}
	if (hd->kind != KVC_HEAD_HEAVY)
		return 0;
	bits = row_key(s, STREAM_HEAVY, seq, layer, head, pos);
	if (unit(bits) >= SYNTH_HEAVY_SHARE)
		return 0;
	return 0.8 + 0.4 * unit(row_bits(bits, 0));
}

void kvc_synth_kv(const struct kvc_synth *s, uint32_t seq, uint32_t pos,
		  uint32_t n, float *k, float *v)
{
	const struct kvc_model_shape *shape = &s->shape;
	uint32_t d = shape->head_dim, layer, h, i, j;
	const struct synth_head *hd;
	double strength;
	float *kr, *vr;
	size_t at;

	for (layer = 0; layer < shape->layers; layer++)
		for (h = 0; h < shape->kv_heads; h++) {
			hd = &s->heads[layer * shape->kv_heads + h];
			for (i = 0; i < n; i++) {
				at = (((size_t)layer * shape->kv_heads + h) *
					      n +
				      i) *
				     d;
				kr = k + at;
				vr = v + at;
				for (j = 0; j < d; j++) {
					kr[j] = 0;
					vr[j] = hd->v_mean[j];
				}
				add_noise(kr, d,
					  row_key(s, STREAM_KEY, seq, layer, h,
						  pos + i),
					  1.0f);
				add_noise(vr, d,
					  row_key(s, STREAM_VALUE, seq, layer,
						  h, pos + i),
					  1.0f);
				if (hd->kind == KVC_HEAD_LOCAL) {
					add_rotary(kr, hd, d, pos + i,
						   hd->key_amp);
					continue;
				}
				strength = key_strength(s, hd, seq, layer, h,
							pos + i);
				if (strength != 0)
					add_dir(kr, hd, d,
						strength * hd->key_amp);
			}
		}
}

void kvc_synth_q(const struct kvc_synth *s, uint32_t seq, uint32_t layer,
		 uint32_t pos, uint32_t n, float *q)
{
	const struct kvc_model_shape *shape = &s->shape;
	uint32_t d = shape->head_dim, group = shape->q_heads / shape->kv_heads;
	const struct synth_head *hd;
	uint32_t i, qh, j;
	double amp;
	float *qr;

	for (i = 0; i < n; i++)
		for (qh = 0; qh < shape->q_heads; qh++) {
			hd = &s->heads[layer * shape->kv_heads + qh / group];
			qr = q + ((size_t)i * shape->q_heads + qh) * d;
			for (j = 0; j < d; j++)
				qr[j] = 0;
			add_noise(qr, d,
				  row_key(s, STREAM_QUERY, seq, layer, qh,
					  pos + i),
				  hd->kind == KVC_HEAD_DIFFUSE ?
					  Q_NOISE_DIFFUSE :
					  Q_NOISE);
			amp = hd->query_amp *
			      s->q_gain[layer * shape->q_heads + qh];
			if (hd->kind == KVC_HEAD_LOCAL)
				add_rotary(qr, hd, d, pos + i, amp);
			else
				add_dir(qr, hd, d, amp);
		}
}
