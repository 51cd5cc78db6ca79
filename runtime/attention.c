// SPDX-License-Identifier: MIT
/*
 * Attention steps of a sequence, one layer per call: the public face of
 * the kernels' C reference. Checks the arguments, cuts the layer into its
 * KV heads (each with its own block table and length), hands each head
 * its GQA group of query heads, and collects the metric.
 *
 * Never changes a block table or a length; writes only @out and the
 * metric of slots the heads hold. A failed call writes nothing. A device
 * cache runs the same steps on the device (device_attention.c), after the
 * same checks.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include <kvc/attention.h>
#include <kvc/error.h>

#include "../alloc/error.h"
#include "../kernels/attention.h"
#include "device.h"
#include "internal.h"

static bool metric_kind_ok(enum kvc_metric_kind kind)
{
	return kind == KVC_METRIC_NONE || kind == KVC_METRIC_L2 ||
	       kind == KVC_METRIC_L1 || kind == KVC_METRIC_AVG;
}

/* The checks both calls share; sets *@group. */
static int check_step(const char *fn, const struct kvc_seq *seq, uint32_t layer,
		      const float *q, const float *out, uint32_t *group)
{
	const struct kvc_model_shape *shape;

	if (!seq || !q || !out)
		return kvc_err(-EINVAL, "%s: NULL %s", fn,
			       !seq ? "sequence" :
			       !q   ? "queries" :
				      "outputs");
	shape = &seq->kv->shape;
	if (layer >= shape->layers)
		return kvc_err(-EINVAL, "%s: layer %u of %u", fn, layer,
			       shape->layers);
	if (!shape->kv_heads || shape->q_heads % shape->kv_heads ||
	    !shape->head_dim || shape->head_dim > KVC_ATTN_MAX_HEAD_DIM)
		return kvc_err(-EINVAL,
			       "%s: shape %u query heads, %u KV heads, "
			       "head_dim %u not supported",
			       fn, shape->q_heads, shape->kv_heads,
			       shape->head_dim);
	if (!seq->kv->base && !seq->kv->dev)
		return kvc_err(-EINVAL, "%s: the cache has no host mapping",
			       fn);
	*group = shape->q_heads / shape->kv_heads;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Decode */

struct decode {
	struct kvc_seq *seq;
	uint32_t layer;
	uint32_t group;
	const float *q;
	float *out;
	float scale;
	enum kvc_metric_kind metric;
};

/* KV head @head and its query group: disjoint outputs and blocks. */
static void decode_head(void *arg, uint32_t head)
{
	struct decode *dc = arg;
	struct kvc_paged_kv kv = kvc_seq_paged(dc->seq, dc->layer, head);
	size_t at = (size_t)head * dc->group * kv.head_dim;

	kvc_attn_decode_ref(&kv, dc->group, dc->q + at, dc->scale, dc->out + at,
			    dc->metric);
}

int kvc_attn_decode(struct kvc_seq *seq, uint32_t layer, const float *q,
		    float *out, enum kvc_metric_kind metric)
{
	const struct kvc_model_shape *shape;
	struct decode dc;
	uint64_t work = 0;
	uint32_t group, h;
	int err;

	err = check_step(__func__, seq, layer, q, out, &group);
	if (err)
		return err;
	if (!metric_kind_ok(metric))
		return kvc_err(-EINVAL, "%s: metric kind %d", __func__,
			       (int)metric);
	if (seq->kv->dev)
		return kvc_dev_decode(seq, layer, group, q, out, metric);
	shape = &seq->kv->shape;
	dc = (struct decode){
		.seq = seq,
		.layer = layer,
		.group = group,
		.q = q,
		.out = out,
		.scale = 1.0f / sqrtf((float)shape->head_dim),
		.metric = metric,
	};
	for (h = 0; h < shape->kv_heads; h++)
		work += (uint64_t)kvc_seq_head(seq, layer, h)->len * group *
			shape->head_dim * 2;
	kvc_attn_parallel(shape->kv_heads, work, decode_head, &dc);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Prefill */

/* The last @n KVs of every head of @layer are the newest @n tokens. */
static int check_newest(const struct kvc_seq *seq, uint32_t layer, uint32_t n)
{
	const struct kvc_model_shape *shape = &seq->kv->shape;
	uint32_t h, i, len, slot, block, off;
	const struct kvc_head_table *t;
	int32_t pos, want;

	if (n > seq->tokens)
		return kvc_err(-EINVAL,
			       "kvc_attn_prefill: %u new tokens, the sequence "
			       "has %u",
			       n, seq->tokens);
	for (h = 0; h < shape->kv_heads; h++) {
		t = kvc_seq_head(seq, layer, h);
		len = t->len;
		if (len < n)
			return kvc_err(-EINVAL,
				       "kvc_attn_prefill: layer %u head %u "
				       "holds %u KVs, fewer than %u new tokens",
				       layer, h, len, n);
		for (i = 0; i < n; i++) {
			slot = len - n + i;
			block = t->blocks[slot / shape->block_size];
			off = slot % shape->block_size;
			pos = seq->kv->meta[(uint64_t)block *
						    shape->block_size +
					    off]
				      .pos;
			want = (int32_t)(seq->tokens - n + i);
			if (pos != want)
				return kvc_err(
					-EINVAL,
					"kvc_attn_prefill: layer %u head "
					"%u slot %u holds position %d, "
					"not the new token %d",
					layer, h, slot, pos, want);
		}
	}
	return 0;
}

static int check_observe(const struct kvc_observe *obs)
{
	if (!obs)
		return 0;
	if (!metric_kind_ok(obs->metric))
		return kvc_err(-EINVAL, "kvc_attn_prefill: metric kind %d",
			       (int)obs->metric);
	if (obs->pool_kernel > 1 && !(obs->pool_kernel & 1))
		return kvc_err(-EINVAL,
			       "kvc_attn_prefill: pool kernel %u is not odd",
			       obs->pool_kernel);
	return 0;
}

int kvc_attn_prefill(struct kvc_seq *seq, uint32_t layer, uint32_t n,
		     const float *q, float *out, const struct kvc_observe *obs)
{
	const struct kvc_model_shape *shape;
	struct kvc_paged_kv kv;
	size_t bytes, max_bytes = 0, stride, at;
	uint32_t group, h;
	void *ws = NULL;
	float scale;
	int err;

	err = check_step(__func__, seq, layer, q, out, &group);
	if (err)
		return err;
	err = check_observe(obs);
	if (err)
		return err;
	if (!n)
		return 0;
	err = check_newest(seq, layer, n);
	if (err)
		return err;
	if (seq->kv->dev)
		return kvc_dev_prefill(seq, layer, group, n, q, out, obs);

	/* One scratch for every head, taken before anything is written. */
	shape = &seq->kv->shape;
	for (h = 0; h < shape->kv_heads; h++) {
		bytes = kvc_attn_prefill_ws_bytes(
			kvc_seq_head(seq, layer, h)->len, group, n, obs);
		max_bytes = bytes > max_bytes ? bytes : max_bytes;
	}
	if (max_bytes) {
		ws = max_bytes == SIZE_MAX ? NULL : malloc(max_bytes);
		if (!ws)
			return kvc_err(-ENOMEM,
				       "kvc_attn_prefill: no memory for %zu "
				       "bytes of scratch",
				       max_bytes);
	}

	scale = 1.0f / sqrtf((float)shape->head_dim);
	stride = (size_t)shape->q_heads * shape->head_dim;
	for (h = 0; h < shape->kv_heads; h++) {
		kv = kvc_seq_paged(seq, layer, h);
		at = (size_t)h * group * shape->head_dim;
		kvc_attn_prefill_ref_ws(&kv, group, n, q + at, stride, scale,
					out + at, obs, ws);
	}
	free(ws);
	return 0;
}
