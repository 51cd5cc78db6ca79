// SPDX-License-Identifier: MIT
/*
 * Paged attention, the C reference: decode and causal prefill over one
 * (layer, KV head) as raw block table and block memory, with the eviction
 * metric collected on the way. The CPU path runs it; the CUDA kernels are
 * tested against it. The math itself is in attention_math.h, shared with
 * the kernels; this file only maps the work onto loops and threads.
 *
 * Scores go through an online softmax over tiles of KEY_TILE keys, so no
 * score is ever exponentiated except as a difference to a running maximum.
 * Each K and V row is converted to f32 once per tile and serves every
 * query head of the GQA group. The metric needs each weight after the
 * softmax is complete, so it is a second pass over the keys that
 * recomputes the scores bit for bit (same inputs, same function) and
 * normalises them with the final states.
 *
 * Never writes outside @out and the metric of slots below @kv->len; never
 * allocates in decode; results never depend on the number of threads
 * (each thread owns whole query rows or whole keys, and every sum runs in
 * one fixed order).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attention.h"
#include "attention_math.h"

/* Keys per softmax tile: a block of the largest size. */
#define KEY_TILE 32u
/* Query heads that attend together (their scores of one tile on the
 * stack); larger groups go tile by tile. */
#define GROUP_TILE 8u
/* Threads for one call, and the work (multiply-adds) worth a thread. */
#define MAX_THREADS 8u
#define PARALLEL_WORK (1ull << 21)

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* ------------------------------------------------------------------ */
/* Threads */

static _Atomic uint32_t max_threads;

void kvc_attn_set_max_threads(uint32_t max)
{
	atomic_store(&max_threads, max);
}

static uint32_t threads_for(uint32_t nr_items, uint64_t work)
{
	uint32_t max = atomic_load(&max_threads);
	long cpus;

	if (work < PARALLEL_WORK || nr_items < 2 || max == 1)
		return 1;
	if (!max) {
		cpus = sysconf(_SC_NPROCESSORS_ONLN);
		max = cpus > 1 ?
			      (uint32_t)min_u32((uint32_t)cpus, MAX_THREADS) :
			      1;
	}
	return min_u32(min_u32(max, MAX_THREADS), nr_items);
}

struct share {
	void (*fn)(void *arg, uint32_t item);
	void *arg;
	uint32_t nr_items;
	uint32_t first;
	uint32_t step;
};

static void *share_run(void *p)
{
	struct share *s = p;
	uint32_t i;

	for (i = s->first; i < s->nr_items; i += s->step)
		s->fn(s->arg, i);
	return NULL;
}

void kvc_attn_parallel(uint32_t nr_items, uint64_t work,
		       void (*fn)(void *arg, uint32_t item), void *arg)
{
	uint32_t nr = threads_for(nr_items, work), t;
	struct share share[MAX_THREADS];
	bool started[MAX_THREADS];
	pthread_t th[MAX_THREADS];

	for (t = 0; t < nr; t++) {
		share[t] = (struct share){ fn, arg, nr_items, t, nr };
		started[t] = false;
	}
	for (t = 1; t < nr; t++)
		started[t] =
			!pthread_create(&th[t], NULL, share_run, &share[t]);
	share_run(&share[0]);
	for (t = 1; t < nr; t++)
		if (!started[t])
			share_run(&share[t]);
	for (t = 1; t < nr; t++)
		if (started[t])
			pthread_join(th[t], NULL);
}

/* ------------------------------------------------------------------ */
/* Keys */

/* Where one slot's K, V and metadata are. */
struct key {
	const uint8_t *k;
	const uint8_t *v;
	struct kvc_slot_meta *meta;
	int32_t pos;
};

static void locate(const struct kvc_paged_kv *kv, uint32_t slot,
		   struct key *key)
{
	uint32_t block = kv->table[kvc_attn_slot_block(slot, kv->block_size)];
	uint32_t off = kvc_attn_slot_offset(slot, kv->block_size);

	key->k = kvc_attn_k_row(kv, block, off);
	key->v = kvc_attn_v_row(kv, block, off);
	key->meta = NULL;
	key->pos = (int32_t)slot;
	if (kv->meta) {
		key->meta = &kv->meta[kvc_attn_meta_index(block, off,
							  kv->block_size)];
		key->pos = key->meta->pos;
	}
}

/*
 * Online softmax of @gt query heads (@q, [gt][head_dim]) over the keys a
 * query at @q_pos sees (every key unless @causal): writes the normalised
 * outputs to @out and leaves the final states in @sm.
 */
static void attend(const struct kvc_paged_kv *kv, const float *q, float *out,
		   uint32_t gt, float scale, bool causal, int32_t q_pos,
		   struct kvc_softmax *sm)
{
	uint32_t d = kv->head_dim, t0, j, g, cnt, seen;
	float row[KVC_ATTN_MAX_HEAD_DIM];
	float p[GROUP_TILE][KEY_TILE];
	struct key keys[KEY_TILE];
	float max, alpha;

	for (g = 0; g < gt; g++)
		kvc_softmax_init(&sm[g]);
	memset(out, 0, sizeof(*out) * gt * d);
	for (t0 = 0; t0 < kv->len; t0 += KEY_TILE) {
		cnt = min_u32(KEY_TILE, kv->len - t0);
		seen = 0;
		for (j = 0; j < cnt; j++) {
			locate(kv, t0 + j, &keys[seen]);
			if (causal && !kvc_attn_visible(q_pos, keys[seen].pos))
				continue;
			kvc_attn_load_row(row, keys[seen].k, d, kv->dtype);
			for (g = 0; g < gt; g++)
				p[g][seen] =
					scale * kvc_attn_dot(q + g * d, row, d);
			seen++;
		}
		if (!seen)
			continue;
		for (g = 0; g < gt; g++) {
			max = p[g][0];
			for (j = 1; j < seen; j++)
				max = p[g][j] > max ? p[g][j] : max;
			alpha = kvc_softmax_rescale(&sm[g], max);
			if (alpha != 1.0f)
				kvc_attn_scale(out + g * d, alpha, d);
			for (j = 0; j < seen; j++)
				p[g][j] = kvc_softmax_add(&sm[g], p[g][j]);
		}
		for (j = 0; j < seen; j++) {
			kvc_attn_load_row(row, keys[j].v, d, kv->dtype);
			for (g = 0; g < gt; g++)
				kvc_attn_acc_update(out + g * d, 1.0f, p[g][j],
						    row, d);
		}
	}
	for (g = 0; g < gt; g++)
		kvc_attn_scale(out + g * d, kvc_softmax_inv_sum(&sm[g]), d);
}

/*
 * What the key whose K row is @krow gets from @gt query heads of one
 * query, given their final softmax states: the sum of the metric terms of
 * their weights, in head order.
 */
static float key_term(const float *q, uint32_t gt, uint32_t d,
		      const float *krow, float scale,
		      const struct kvc_softmax *sm, enum kvc_metric_kind kind)
{
	float sum = 0.0f, a;
	uint32_t g;

	for (g = 0; g < gt; g++) {
		a = kvc_softmax_weight(
			&sm[g], scale * kvc_attn_dot(q + g * d, krow, d));
		sum += kvc_metric_term(kind, a);
	}
	return sum;
}

static bool bad_head_dim(const struct kvc_paged_kv *kv)
{
	return !kv->head_dim || kv->head_dim > KVC_ATTN_MAX_HEAD_DIM;
}

/* ------------------------------------------------------------------ */
/* Decode */

void kvc_attn_decode_ref(const struct kvc_paged_kv *kv, uint32_t group,
			 const float *q, float scale, float *out,
			 enum kvc_metric_kind metric)
{
	struct kvc_softmax sm[GROUP_TILE];
	float krow[KVC_ATTN_MAX_HEAD_DIM];
	uint32_t d = kv->head_dim, g0, gt, slot;
	struct key key;

	if (bad_head_dim(kv)) {
		if (d)
			memset(out, 0, sizeof(*out) * group * d);
		return;
	}
	for (g0 = 0; g0 < group; g0 += gt) {
		gt = min_u32(GROUP_TILE, group - g0);
		attend(kv, q + g0 * d, out + g0 * d, gt, scale, false, 0, sm);
		if (metric == KVC_METRIC_NONE || !kv->meta)
			continue;
		for (slot = 0; slot < kv->len; slot++) {
			locate(kv, slot, &key);
			kvc_attn_load_row(krow, key.k, d, kv->dtype);
			key.meta->metric += key_term(q + g0 * d, gt, d, krow,
						     scale, sm, metric);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Prefill */

/**
 * struct prefill - One prefill call, as its threads see it.
 * @kv: the head.
 * @group: query heads per KV head.
 * @n: new tokens (queries).
 * @base: slot of the first new token (len - n).
 * @first_obs: the first query that adds to the metric.
 * @q: queries, row i at @q + i * @stride.
 * @out: outputs, laid out as @q.
 * @stride: floats per row.
 * @scale: score scale.
 * @metric: how weights add up (NONE: no metric pass).
 * @buffer: minimum query_pos - key_pos for a weight to count.
 * @sm: final softmax states of the observed queries, [n - first_obs][group].
 * @q_pos: positions of the observed queries.
 * @pooled: the head's unpooled metric, [len], when the metric is pooled;
 *          NULL: the metric goes straight into the slots.
 */
struct prefill {
	const struct kvc_paged_kv *kv;
	uint32_t group;
	uint32_t n;
	uint32_t base;
	uint32_t first_obs;
	const float *q;
	float *out;
	size_t stride;
	float scale;
	enum kvc_metric_kind metric;
	uint32_t buffer;
	struct kvc_softmax *sm;
	int32_t *q_pos;
	float *pooled;
};

/* Query row @i: its outputs, and its softmax states if it is observed. */
static void prefill_row(void *arg, uint32_t i)
{
	struct prefill *pf = arg;
	const struct kvc_paged_kv *kv = pf->kv;
	uint32_t d = kv->head_dim, g0, gt;
	struct kvc_softmax sm[GROUP_TILE];
	struct key self;

	locate(kv, pf->base + i, &self);
	for (g0 = 0; g0 < pf->group; g0 += gt) {
		gt = min_u32(GROUP_TILE, pf->group - g0);
		attend(kv, pf->q + i * pf->stride + g0 * d,
		       pf->out + i * pf->stride + g0 * d, gt, pf->scale, true,
		       self.pos, sm);
		if (pf->sm && i >= pf->first_obs)
			memcpy(&pf->sm[(size_t)(i - pf->first_obs) * pf->group +
				       g0],
			       sm, sizeof(*sm) * gt);
	}
	if (pf->q_pos && i >= pf->first_obs)
		pf->q_pos[i - pf->first_obs] = self.pos;
}

/* The metric of the keys of tile @tile, summed over the observed queries
 * in row order. */
static void prefill_metric(void *arg, uint32_t tile)
{
	struct prefill *pf = arg;
	const struct kvc_paged_kv *kv = pf->kv;
	uint32_t d = kv->head_dim, j, end, i;
	float krow[KVC_ATTN_MAX_HEAD_DIM];
	struct key key;
	float sum;

	end = min_u32(kv->len, (tile + 1) * KEY_TILE);
	for (j = tile * KEY_TILE; j < end; j++) {
		locate(kv, j, &key);
		kvc_attn_load_row(krow, key.k, d, kv->dtype);
		sum = 0.0f;
		for (i = pf->first_obs; i < pf->n; i++) {
			uint32_t o = i - pf->first_obs;

			if (!kvc_attn_observed(pf->q_pos[o], key.pos,
					       pf->buffer))
				continue;
			sum += key_term(pf->q + i * pf->stride, pf->group, d,
					krow, pf->scale,
					&pf->sm[(size_t)o * pf->group],
					pf->metric);
		}
		if (pf->pooled)
			pf->pooled[j] = sum;
		else
			key.meta->metric += sum;
	}
}

/* Scratch layout: states, then query positions, then the unpooled metric. */
size_t kvc_attn_prefill_ws_bytes(uint32_t len, uint32_t group, uint32_t n,
				 const struct kvc_observe *obs)
{
	size_t nobs, states, bytes;

	if (!obs || obs->metric == KVC_METRIC_NONE || !n)
		return 0;
	nobs = n - kvc_attn_first_observer(n, obs->window);
	if (__builtin_mul_overflow(nobs, (size_t)group, &states) ||
	    __builtin_mul_overflow(states, sizeof(struct kvc_softmax),
				   &bytes) ||
	    __builtin_add_overflow(bytes, nobs * sizeof(int32_t), &bytes))
		return SIZE_MAX;
	if (obs->pool_kernel > 1 &&
	    __builtin_add_overflow(bytes, (size_t)len * sizeof(float), &bytes))
		return SIZE_MAX;
	return bytes;
}

void kvc_attn_prefill_ref_ws(const struct kvc_paged_kv *kv, uint32_t group,
			     uint32_t n, const float *q, size_t stride,
			     float scale, float *out,
			     const struct kvc_observe *obs, void *ws)
{
	struct prefill pf = {
		.kv = kv,
		.group = group,
		.n = n,
		.base = kv->len - n,
		.q = q,
		.out = out,
		.stride = stride,
		.scale = scale,
	};
	uint64_t work, nobs;
	uint32_t d = kv->head_dim, j, lo, hi, k;
	float max;

	if (!n || !group || n > kv->len)
		return;
	if (bad_head_dim(kv)) {
		for (j = 0; d && j < n; j++)
			memset(out + j * stride, 0, sizeof(*out) * group * d);
		return;
	}
	if (obs && obs->metric != KVC_METRIC_NONE && kv->meta) {
		pf.metric = obs->metric;
		pf.buffer = obs->buffer;
		pf.first_obs = kvc_attn_first_observer(n, obs->window);
		nobs = n - pf.first_obs;
		pf.sm = ws;
		pf.q_pos = (int32_t *)(pf.sm + nobs * group);
		if (obs->pool_kernel > 1)
			pf.pooled = (float *)(pf.q_pos + nobs);
	}

	/* Causal: about half of n x len scores, each a dot and an axpy. */
	work = (uint64_t)n * kv->len * group * d;
	kvc_attn_parallel(n, work, prefill_row, &pf);
	if (!pf.sm)
		return;

	nobs = n - pf.first_obs;
	work = 2 * nobs * kv->len * group * d;
	kvc_attn_parallel((kv->len + KEY_TILE - 1) / KEY_TILE, work,
			  prefill_metric, &pf);
	if (!pf.pooled)
		return;
	for (j = 0; j < kv->len; j++) {
		struct key key;

		kvc_attn_pool_range(j, kv->len, obs->pool_kernel, &lo, &hi);
		max = pf.pooled[lo];
		for (k = lo + 1; k < hi; k++)
			max = pf.pooled[k] > max ? pf.pooled[k] : max;
		locate(kv, j, &key);
		key.meta->metric += max;
	}
}

int kvc_attn_prefill_ref(const struct kvc_paged_kv *kv, uint32_t group,
			 uint32_t n, const float *q, float scale, float *out,
			 const struct kvc_observe *obs)
{
	size_t bytes = kvc_attn_prefill_ws_bytes(kv->len, group, n, obs);
	void *ws = NULL;

	if (bytes) {
		ws = bytes == SIZE_MAX ? NULL : malloc(bytes);
		if (!ws)
			return -ENOMEM;
	}
	kvc_attn_prefill_ref_ws(kv, group, n, q, (size_t)group * kv->head_dim,
				scale, out, obs, ws);
	free(ws);
	return 0;
}
