// SPDX-License-Identifier: MIT
/*
 * Attention steps of a sequence on the device: one layer per call, all
 * its KV heads in one launch. The block tables (padded to the longest
 * head's), lengths and queries are staged and uploaded, the kernels are
 * queued on the cache's stream behind the cache writes, and the outputs
 * come back before the call returns, as kvc_attn_decode() and
 * kvc_attn_prefill() promise. The metrics grow on the device only; the
 * sequence is marked for a copy down (kvc_dev_meta_sync()).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../alloc/error.h"
#include "../kernels/launch.h"
#include "device.h"
#include "internal.h"

/**
 * struct layer_view - One layer of a sequence, as a batch of heads.
 * @stride: table entries per head, the longest head's blocks (>= 1).
 * @max_len: the longest head's KVs.
 */
struct layer_view {
	uint32_t stride;
	uint32_t max_len;
};

static struct layer_view layer_view(const struct kvc_seq *seq, uint32_t layer)
{
	struct layer_view lv = { .stride = 1, .max_len = 0 };
	uint32_t h;

	for (h = 0; h < seq->kv->shape.kv_heads; h++) {
		const struct kvc_head_table *t = kvc_seq_head(seq, layer, h);

		if (t->nr_blocks > lv.stride)
			lv.stride = t->nr_blocks;
		if (t->len > lv.max_len)
			lv.max_len = t->len;
	}
	return lv;
}

static uint64_t tables_bytes(const struct kvc_seq *seq,
			     const struct layer_view *lv)
{
	return (uint64_t)seq->kv->shape.kv_heads * lv->stride * 4;
}

static uint64_t lens_bytes(const struct kvc_seq *seq)
{
	return (uint64_t)seq->kv->shape.kv_heads * 4;
}

/* Stage the layer's tables and lengths into @up; set their addresses. */
static void stage_layer(struct kvc_dev *d, const struct kvc_seq *seq,
			uint32_t layer, const struct layer_view *lv,
			struct kvc_upload *up, kvc_cu_ptr *tables,
			kvc_cu_ptr *lens)
{
	uint32_t h, kvh = seq->kv->shape.kv_heads;
	uint32_t *th = kvc_stage_in(d, up, tables_bytes(seq, lv), tables);
	uint32_t *lh = kvc_stage_in(d, up, lens_bytes(seq), lens);

	for (h = 0; h < kvh; h++) {
		const struct kvc_head_table *t = kvc_seq_head(seq, layer, h);
		uint32_t *row = th + (uint64_t)h * lv->stride;

		memcpy(row, t->blocks, (size_t)t->nr_blocks * sizeof(*row));
		/* Never read (past the head's length); kept defined. */
		memset(row + t->nr_blocks, 0,
		       (size_t)(lv->stride - t->nr_blocks) * sizeof(*row));
		lh[h] = t->len;
	}
}

/*
 * After the launch: bring @bytes of outputs from @out_dev to @out and
 * wait. The metric is marked to be copied down as soon as the kernels are
 * queued, since they may have run even if waiting fails.
 */
static int finish(struct kvc_dev *d, struct kvc_seq *seq, bool metric,
		  float *out, kvc_cu_ptr out_dev, uint64_t bytes)
{
	void *host = kvc_stage_host(d, bytes);
	int err;

	if (metric)
		seq->meta_dirty = true;
	err = kvc_stage_download(d, host, out_dev, bytes);
	if (!err)
		err = kvc_dev_sync(d);
	if (!err)
		memcpy(out, host, (size_t)bytes);
	return err;
}

/* The layer as a batch for the planner. */
static struct kvc_attn_shape attn_shape(const struct kvc_seq *seq,
					const struct layer_view *lv,
					uint32_t group,
					enum kvc_metric_kind metric)
{
	const struct kvc_model_shape *s = &seq->kv->shape;

	return (struct kvc_attn_shape){
		.nr_heads = s->kv_heads,
		.kv_heads = s->kv_heads,
		.group = group,
		.head_dim = s->head_dim,
		.block_size = s->block_size,
		.max_len = lv->max_len,
		.dtype = s->dtype,
		.metric = metric,
	};
}

/**
 * struct attn_bufs - Device buffers of one attention launch.
 * @tables: the layer's block tables.
 * @lens: the heads' lengths.
 * @q: the queries.
 * @out: room for the outputs (as many bytes as the queries).
 * @ws: the kernels' workspace.
 */
struct attn_bufs {
	kvc_cu_ptr tables;
	kvc_cu_ptr lens;
	kvc_cu_ptr q;
	kvc_cu_ptr out;
	kvc_cu_ptr ws;
};

/*
 * Reserve everything the launch needs before anything is queued (so a
 * shortage fails the call with nothing changed), then upload the tables,
 * lengths and @qb bytes of queries in one copy.
 */
static int stage_attention(struct kvc_dev *d, const struct kvc_seq *seq,
			   uint32_t layer, const struct layer_view *lv,
			   const float *q, uint64_t qb, uint64_t ws_bytes,
			   struct attn_bufs *b)
{
	struct kvc_upload up = { 0 };
	uint64_t in = kvc_stage_size(tables_bytes(seq, lv)) +
		      kvc_stage_size(lens_bytes(seq)) + kvc_stage_size(qb);
	int err;

	err = kvc_stage_reserve(d, in + kvc_stage_size(qb),
				in + kvc_stage_size(qb) +
					kvc_stage_size(ws_bytes));
	if (err)
		return err;
	stage_layer(d, seq, layer, lv, &up, &b->tables, &b->lens);
	memcpy(kvc_stage_in(d, &up, qb, &b->q), q, (size_t)qb);
	err = kvc_stage_upload(d, &up);
	if (err)
		return err;
	b->out = kvc_stage_dev(d, qb);
	b->ws = kvc_stage_dev(d, ws_bytes);
	return 0;
}

int kvc_dev_decode(struct kvc_seq *seq, uint32_t layer, uint32_t group,
		   const float *q, float *out, enum kvc_metric_kind metric)
{
	struct kvc_dev *d = seq->kv->dev;
	const struct kvc_model_shape *s = &seq->kv->shape;
	struct layer_view lv = layer_view(seq, layer);
	uint64_t qb = (uint64_t)s->q_heads * s->head_dim * 4;
	struct kvc_attn_shape shape = attn_shape(seq, &lv, group, metric);
	struct kvc_decode_plan plan;
	struct kvc_decode_args a;
	struct attn_bufs b;
	int err;

	/* Nothing to read: zeros, as the reference gives, and no launch. */
	if (!lv.max_len) {
		memset(out, 0, (size_t)qb);
		return 0;
	}
	err = kvc_decode_plan(d->gpu, &shape, &plan);
	if (err)
		return err;
	err = kvc_dev_enter(d);
	if (err)
		return err;
	err = stage_attention(d, seq, layer, &lv, q, qb, plan.ws_bytes, &b);
	if (err)
		goto out;
	memset(&a, 0, sizeof(a));
	a.kv = d->paged;
	a.tables = b.tables;
	a.lens = b.lens;
	a.q = b.q;
	a.out = b.out;
	a.ws = b.ws;
	a.table_stride = lv.stride;
	a.nr_heads = s->kv_heads;
	a.group = group;
	a.metric = (uint32_t)metric;
	a.part_tokens = plan.part_tokens;
	a.nr_parts = plan.nr_parts;
	a.max_len = lv.max_len;
	a.scale = 1.0f / sqrtf((float)s->head_dim);
	err = kvc_cuda_decode(d->c.kernels, d->stream, &a, &plan);
	if (!err)
		err = finish(d, seq, metric != KVC_METRIC_NONE, out, b.out, qb);
out:
	kvc_dev_leave(d);
	return err;
}

int kvc_dev_prefill(struct kvc_seq *seq, uint32_t layer, uint32_t group,
		    uint32_t n, const float *q, float *out,
		    const struct kvc_observe *obs)
{
	struct kvc_dev *d = seq->kv->dev;
	const struct kvc_model_shape *s = &seq->kv->shape;
	struct layer_view lv = layer_view(seq, layer);
	enum kvc_metric_kind metric = obs ? obs->metric : KVC_METRIC_NONE;
	uint64_t qb = (uint64_t)n * s->q_heads * s->head_dim * 4;
	struct kvc_attn_shape shape = attn_shape(seq, &lv, group, metric);
	struct kvc_prefill_plan plan;
	struct kvc_prefill_args a;
	struct attn_bufs b;
	int err;

	err = kvc_prefill_plan(d->gpu, &shape, n, obs ? obs->pool_kernel : 0,
			       &plan);
	if (err)
		return err;
	err = kvc_dev_enter(d);
	if (err)
		return err;
	err = stage_attention(d, seq, layer, &lv, q, qb, plan.ws_bytes, &b);
	if (err)
		goto out;
	memset(&a, 0, sizeof(a));
	a.kv = d->paged;
	a.tables = b.tables;
	a.lens = b.lens;
	a.q = b.q;
	a.out = b.out;
	a.ws = b.ws;
	a.table_stride = lv.stride;
	a.nr_heads = s->kv_heads;
	a.kv_heads = s->kv_heads;
	a.group = group;
	a.n = n;
	a.metric = (uint32_t)metric;
	a.window = obs ? obs->window : 0;
	a.buffer = obs ? obs->buffer : 0;
	a.pool_kernel = obs ? obs->pool_kernel : 0;
	a.max_len = lv.max_len;
	a.scale = 1.0f / sqrtf((float)s->head_dim);
	err = kvc_cuda_prefill(d->c.kernels, d->stream, &a, &plan);
	if (!err)
		err = finish(d, seq, metric != KVC_METRIC_NONE, out, b.out, qb);
out:
	kvc_dev_leave(d);
	return err;
}
