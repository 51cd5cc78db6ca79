// SPDX-License-Identifier: MIT
/*
 * The CUDA kernels on the CPU, for the fake driver and the tests: each
 * kernel as its arguments (args.h) define it, over the same workspace
 * layouts and partitions, with the shared math of attention_math.h. The
 * work of all CTAs runs in one loop; what one CTA computes, and where it
 * leaves it, is what the device does, so a plan or a workspace layout
 * that is wrong on the device is wrong here too.
 *
 * Every launch is checked first (grid, threads, shared memory, the
 * arguments a kernel would fault on); a launch that fails the checks
 * writes nothing.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "attention.h"
#include "attention_math.h"
#include "decode_layout.h"
#include "emulate.h"
#include "half.h"
#include "launch.h"
#include "prefill_layout.h"

/* CUDA_ERROR_INVALID_VALUE, what a launch the checks refuse returns. */
#define BAD 1

/* Keys a softmax tile takes, as the prefill kernel's K tile. */
#define KEY_TILE 32u
#define MAX_GRID_Y 65535u

#define NR_DTYPES 3
#define NR_HDS 3

enum kind {
	E_DECODE_PART,
	E_DECODE_REDUCE,
	E_PREFILL_ATTN,
	E_PREFILL_METRIC,
	E_PREFILL_POOL,
	E_CACHE_WRITE,
	E_MOVE_CACHE,
	E_BLOCK_COPY,
};

/**
 * struct kernel - A kernel, from its name.
 * @kind: which kernel.
 * @dtype: the storage type it reads (attention kernels but the reduce).
 * @hd: its head_dim variant (attention kernels).
 */
struct kernel {
	enum kind kind;
	uint32_t dtype;
	uint32_t hd;
};

static const char *const dtype_names[NR_DTYPES] = { "f32", "f16", "bf16" };
static const uint32_t hd_variants[NR_HDS] = {
	KVC_KERNEL_HD_SMALL,
	KVC_KERNEL_HD_MEDIUM,
	KVC_KERNEL_HD_LARGE,
};

/* Device address -> host pointer: the fake's memory is host memory. */
#define HOST(type, addr) ((type *)(uintptr_t)(addr))

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static bool parse(const char *name, struct kernel *k)
{
	static const struct {
		const char *fmt;
		enum kind kind;
	} typed[] = {
		{ "kvc_decode_part_%s_%u", E_DECODE_PART },
		{ "kvc_prefill_attn_%s_%u", E_PREFILL_ATTN },
		{ "kvc_prefill_metric_%s_%u", E_PREFILL_METRIC },
	};
	static const struct {
		const char *name;
		enum kind kind;
	} plain[] = {
		{ "kvc_prefill_pool", E_PREFILL_POOL },
		{ "kvc_cache_write", E_CACHE_WRITE },
		{ "kvc_move_cache", E_MOVE_CACHE },
		{ "kvc_block_copy", E_BLOCK_COPY },
	};
	char buf[64];
	size_t i;
	int d, h;

	if (!name)
		return false;
	for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		if (!strcmp(name, plain[i].name)) {
			*k = (struct kernel){ plain[i].kind, 0, 0 };
			return true;
		}
	}
	for (h = 0; h < NR_HDS; h++) {
		snprintf(buf, sizeof(buf), "kvc_decode_reduce_%u",
			 hd_variants[h]);
		if (!strcmp(name, buf)) {
			*k = (struct kernel){ E_DECODE_REDUCE, 0,
					      hd_variants[h] };
			return true;
		}
		for (d = 0; d < NR_DTYPES; d++) {
			for (i = 0; i < sizeof(typed) / sizeof(typed[0]); i++) {
				snprintf(buf, sizeof(buf), typed[i].fmt,
					 dtype_names[d], hd_variants[h]);
				if (!strcmp(name, buf)) {
					*k = (struct kernel){ typed[i].kind,
							      (uint32_t)d,
							      hd_variants[h] };
					return true;
				}
			}
		}
	}
	return false;
}

bool kvc_emulate_known(const char *name)
{
	struct kernel k;

	return parse(name, &k);
}

/* ------------------------------------------------------------------ */
/* Checks */

static bool grid_is(const unsigned int grid[3], uint64_t x, uint64_t y)
{
	return grid[0] == x && grid[1] == y && grid[2] == 1;
}

/* The cache is one the kernel @k takes. */
static bool paged_ok(const struct kvc_kargs_paged *kv, const struct kernel *k)
{
	if (!kv->base || !kv->block_size || !kv->head_dim ||
	    !kvc_kernel_dtype_ok(kv->dtype))
		return false;
	if (k->kind == E_DECODE_PART || k->kind == E_PREFILL_ATTN ||
	    k->kind == E_PREFILL_METRIC)
		return kv->dtype == k->dtype &&
		       kvc_kernel_hd(kv->head_dim) == k->hd;
	if (k->kind == E_DECODE_REDUCE)
		return kvc_kernel_hd(kv->head_dim) == k->hd;
	return true;
}

/* Every head's length in [@lo, @hi]. */
static bool lens_ok(uint64_t lens, uint32_t nr_heads, uint32_t lo, uint32_t hi)
{
	const uint32_t *len = HOST(const uint32_t, lens);
	uint32_t i;

	for (i = 0; i < nr_heads; i++)
		if (len[i] < lo || len[i] > hi)
			return false;
	return true;
}

static bool decode_ok(const struct kvc_decode_args *a)
{
	return a->tables && a->lens && a->q && a->ws && a->group >= 1 &&
	       a->group <= KVC_KERNEL_MAX_GROUP && a->nr_heads >= 1 &&
	       a->nr_heads <= MAX_GRID_Y && kvc_kernel_metric_ok(a->metric) &&
	       a->part_tokens && a->part_tokens % a->kv.block_size == 0 &&
	       a->nr_parts >= 1 &&
	       (uint64_t)a->nr_parts * a->part_tokens >= a->max_len &&
	       lens_ok(a->lens, a->nr_heads, 0, a->max_len);
}

static bool prefill_ok(const struct kvc_prefill_args *a)
{
	return a->tables && a->lens && a->q && a->out && a->group >= 1 &&
	       a->group <= KVC_KERNEL_MAX_GROUP && a->nr_heads >= 1 &&
	       a->nr_heads <= MAX_GRID_Y && a->kv_heads >= 1 &&
	       a->nr_heads % a->kv_heads == 0 &&
	       kvc_kernel_metric_ok(a->metric) &&
	       (a->metric == KVC_METRIC_NONE || a->ws) && a->n >= 1 &&
	       a->n <= a->max_len &&
	       lens_ok(a->lens, a->nr_heads, a->n, a->max_len);
}

/* ------------------------------------------------------------------ */
/* Attention */

/* One head of the cache, as the math of attention_math.h takes it. */
static void head_kv(const struct kvc_kargs_paged *a, uint64_t tables,
		    uint32_t stride, uint64_t lens, uint32_t i,
		    struct kvc_paged_kv *kv)
{
	kv->base = HOST(uint8_t, a->base);
	kv->block_bytes = a->block_bytes;
	kv->block_size = a->block_size;
	kv->head_dim = a->head_dim;
	kv->dtype = (enum kvc_dtype)a->dtype;
	kv->table = HOST(const uint32_t, tables) + (uint64_t)i * stride;
	kv->len = HOST(const uint32_t, lens)[i];
	kv->meta = a->meta ? HOST(struct kvc_slot_meta, a->meta) : NULL;
}

/**
 * struct slot - Where one KV of a head is.
 * @block: its block id.
 * @offset: its offset in the block.
 * @meta: its metadata, or NULL.
 * @pos: its position (the slot index without metadata).
 */
struct slot {
	uint32_t block;
	uint32_t offset;
	struct kvc_slot_meta *meta;
	int32_t pos;
};

static void locate(const struct kvc_paged_kv *kv, uint32_t s, struct slot *sl)
{
	sl->block = kv->table[kvc_attn_slot_block(s, kv->block_size)];
	sl->offset = kvc_attn_slot_offset(s, kv->block_size);
	sl->meta = NULL;
	sl->pos = (int32_t)s;
	if (kv->meta) {
		sl->meta = &kv->meta[kvc_attn_meta_index(sl->block, sl->offset,
							 kv->block_size)];
		sl->pos = sl->meta->pos;
	}
}

/* scale * q.k of query @q and the key in @sl. */
static float score(const struct kvc_paged_kv *kv, const float *q,
		   const struct slot *sl, float scale)
{
	float k[KVC_KERNEL_HD_LARGE];

	kvc_attn_load_row(k, kvc_attn_k_row(kv, sl->block, sl->offset),
			  kv->head_dim, kv->dtype);
	return scale * kvc_attn_dot(q, k, kv->head_dim);
}

/*
 * Online softmax of query @q over the keys [@lo, @hi) of @kv, those a
 * query at @q_pos sees when @causal, a tile of keys at a time as a CTA
 * takes them: the tile's scores, its maximum, then its weights and V
 * rows. Continues state @sm and accumulator @acc; with @scores, saves
 * the score of key s at @scores[s].
 */
static void attend(const struct kvc_paged_kv *kv, const float *q, float scale,
		   uint32_t lo, uint32_t hi, bool causal, int32_t q_pos,
		   struct kvc_softmax *sm, float *acc, float *scores)
{
	float s[KEY_TILE], v[KVC_KERNEL_HD_LARGE], max, alpha, p;
	struct slot sl[KEY_TILE];
	bool seen[KEY_TILE];
	uint32_t t0, j, cnt, nr_seen;

	for (t0 = lo; t0 < hi; t0 += cnt) {
		cnt = min_u32(KEY_TILE, hi - t0);
		max = -INFINITY;
		nr_seen = 0;
		for (j = 0; j < cnt; j++) {
			locate(kv, t0 + j, &sl[j]);
			seen[j] = !causal || kvc_attn_visible(q_pos, sl[j].pos);
			if (!seen[j])
				continue;
			s[j] = score(kv, q, &sl[j], scale);
			if (scores)
				scores[t0 + j] = s[j];
			max = s[j] > max ? s[j] : max;
			nr_seen++;
		}
		if (!nr_seen)
			continue;
		alpha = kvc_softmax_rescale(sm, max);
		if (alpha != 1.0f)
			kvc_attn_scale(acc, alpha, kv->head_dim);
		for (j = 0; j < cnt; j++) {
			if (!seen[j])
				continue;
			p = kvc_softmax_add(sm, s[j]);
			kvc_attn_load_row(
				v,
				kvc_attn_v_row(kv, sl[j].block, sl[j].offset),
				kv->head_dim, kv->dtype);
			kvc_attn_acc_update(acc, 1.0f, p, v, kv->head_dim);
		}
	}
}

/* CTA (p, i) of the partition kernel, for every p and i. */
static int decode_part(const struct kernel *k, const unsigned int grid[3],
		       unsigned int threads, unsigned int smem,
		       const struct kvc_decode_args *a)
{
	float acc[KVC_KERNEL_HD_LARGE], *ws = HOST(float, a->ws), *scores;
	uint32_t d = a->kv.head_dim, i, p, g, lo, hi;
	struct kvc_decode_ws w;
	struct kvc_paged_kv kv;
	struct kvc_softmax sm;
	uint64_t row, at, first;

	if (!paged_ok(&a->kv, k) || !decode_ok(a) ||
	    !grid_is(grid, a->nr_parts, a->nr_heads) ||
	    threads != KVC_DECODE_THREADS ||
	    smem < kvc_decode_part_smem(a->kv.dtype, a->group, a->part_tokens,
					k->hd))
		return BAD;
	w = kvc_decode_ws_layout(a->nr_heads, a->group, a->nr_parts, d,
				 a->max_len, a->metric);
	for (i = 0; i < a->nr_heads; i++) {
		head_kv(&a->kv, a->tables, a->table_stride, a->lens, i, &kv);
		for (g = 0; g < a->group; g++) {
			row = (uint64_t)i * a->group + g;
			scores = a->metric ? ws + w.scores + row * a->max_len :
					     NULL;
			for (p = 0; p < a->nr_parts; p++) {
				kvc_softmax_init(&sm);
				memset(acc, 0, sizeof(*acc) * d);
				first = (uint64_t)p * a->part_tokens;
				lo = first < kv.len ? (uint32_t)first : kv.len;
				hi = lo + min_u32(kv.len - lo, a->part_tokens);
				attend(&kv, HOST(const float, a->q) + row * d,
				       a->scale, lo, hi, false, 0, &sm, acc,
				       scores);
				at = row * a->nr_parts + p;
				ws[w.max + at] = sm.max;
				ws[w.sum + at] = sm.sum;
				memcpy(ws + w.acc + at * d, acc,
				       sizeof(*acc) * d);
			}
		}
	}
	return 0;
}

/* CTA i of the reduce kernel, for every i. */
static int decode_reduce(const struct kernel *k, const unsigned int grid[3],
			 unsigned int threads, unsigned int smem,
			 const struct kvc_decode_args *a)
{
	struct kvc_softmax st[KVC_KERNEL_MAX_GROUP], b;
	float o[KVC_KERNEL_HD_LARGE], *ws = HOST(float, a->ws), fa, fb, term;
	uint32_t d = a->kv.head_dim, i, p, g, j, s;
	const float *part, *scores;
	struct kvc_decode_ws w;
	struct kvc_paged_kv kv;
	struct slot sl;
	uint64_t row, at;

	if (!paged_ok(&a->kv, k) || !decode_ok(a) || !a->out ||
	    !grid_is(grid, a->nr_heads, 1) ||
	    threads != KVC_DECODE_REDUCE_THREADS ||
	    smem < kvc_decode_reduce_smem(a->group, a->nr_parts, k->hd))
		return BAD;
	w = kvc_decode_ws_layout(a->nr_heads, a->group, a->nr_parts, d,
				 a->max_len, a->metric);
	for (i = 0; i < a->nr_heads; i++) {
		head_kv(&a->kv, a->tables, a->table_stride, a->lens, i, &kv);
		for (g = 0; g < a->group; g++) {
			row = (uint64_t)i * a->group + g;
			kvc_softmax_init(&st[g]);
			memset(o, 0, sizeof(*o) * d);
			for (p = 0; p < a->nr_parts; p++) {
				at = row * a->nr_parts + p;
				b.max = ws[w.max + at];
				b.sum = ws[w.sum + at];
				kvc_softmax_merge(&st[g], &b, &fa, &fb);
				part = ws + w.acc + at * d;
				for (j = 0; j < d; j++)
					o[j] = o[j] * fa + part[j] * fb;
			}
			kvc_attn_scale(o, kvc_softmax_inv_sum(&st[g]), d);
			memcpy(HOST(float, a->out) + row * d, o,
			       sizeof(*o) * d);
		}
		if (a->metric == KVC_METRIC_NONE || !kv.meta)
			continue;
		/* The weights from the scores the partitions saved. */
		for (s = 0; s < kv.len; s++) {
			locate(&kv, s, &sl);
			term = 0.0f;
			for (g = 0; g < a->group; g++) {
				scores = ws + w.scores +
					 ((uint64_t)i * a->group + g) *
						 a->max_len;
				term += kvc_metric_term(
					(enum kvc_metric_kind)a->metric,
					kvc_softmax_weight(&st[g], scores[s]));
			}
			sl.meta->metric += term;
		}
	}
	return 0;
}

/* Query (head @i, query @j, member @g) in the natural layout. */
static uint64_t prefill_q(const struct kvc_prefill_args *a, uint32_t i,
			  uint32_t j, uint32_t g)
{
	uint64_t seq = i / a->kv_heads, h = i % a->kv_heads;

	return (((seq * a->n + j) * a->kv_heads + h) * a->group + g) *
	       a->kv.head_dim;
}

/* Every CTA of the attention kernel: outputs, and states with a metric. */
static int prefill_attn(const struct kernel *k, const unsigned int grid[3],
			unsigned int threads, unsigned int smem,
			const struct kvc_prefill_args *a)
{
	float acc[KVC_KERNEL_HD_LARGE], *ws = HOST(float, a->ws), *out;
	uint32_t d = a->kv.head_dim, i, j, g;
	struct kvc_prefill_ws w;
	struct kvc_paged_kv kv;
	struct kvc_softmax sm;
	struct slot self;
	uint64_t q, at;

	if (!paged_ok(&a->kv, k) || !prefill_ok(a) ||
	    !grid_is(grid, div_up(a->n, kvc_prefill_q_tile(k->hd)),
		     a->nr_heads) ||
	    threads != KVC_PREFILL_THREADS ||
	    smem < kvc_prefill_attn_smem(a->group, k->hd))
		return BAD;
	w = kvc_prefill_ws_layout(a->nr_heads, a->group, a->n, a->max_len,
				  a->metric, a->pool_kernel);
	for (i = 0; i < a->nr_heads; i++) {
		head_kv(&a->kv, a->tables, a->table_stride, a->lens, i, &kv);
		for (j = 0; j < a->n; j++) {
			locate(&kv, kv.len - a->n + j, &self);
			for (g = 0; g < a->group; g++) {
				q = prefill_q(a, i, j, g);
				kvc_softmax_init(&sm);
				memset(acc, 0, sizeof(*acc) * d);
				attend(&kv, HOST(const float, a->q) + q,
				       a->scale, 0, kv.len, true, self.pos, &sm,
				       acc, NULL);
				out = HOST(float, a->out) + q;
				memcpy(out, acc, sizeof(*acc) * d);
				kvc_attn_scale(out, kvc_softmax_inv_sum(&sm),
					       d);
				if (a->metric == KVC_METRIC_NONE)
					continue;
				at = ((uint64_t)i * a->n + j) * a->group + g;
				ws[w.max + at] = sm.max;
				ws[w.sum + at] = sm.sum;
			}
		}
	}
	return 0;
}

/*
 * Every CTA of the metric kernel: for each key, the terms of the observed
 * queries in query order, each query's the sum over its group.
 */
static int prefill_metric(const struct kernel *k, const unsigned int grid[3],
			  unsigned int threads, unsigned int smem,
			  const struct kvc_prefill_args *a)
{
	uint32_t d = a->kv.head_dim, i, j, g, s, first;
	float *ws = HOST(float, a->ws), sum, term, x, kr[KVC_KERNEL_HD_LARGE];
	const float *q = HOST(const float, a->q);
	struct kvc_prefill_ws w;
	struct kvc_paged_kv kv;
	struct kvc_softmax st;
	struct slot key, qs;
	uint64_t at;

	if (!paged_ok(&a->kv, k) || !prefill_ok(a) ||
	    a->metric == KVC_METRIC_NONE ||
	    !grid_is(grid, div_up(a->max_len, kvc_prefill_k_tile(k->hd)),
		     a->nr_heads) ||
	    threads != KVC_PREFILL_METRIC_THREADS ||
	    smem < kvc_prefill_metric_smem(a->group, k->hd))
		return BAD;
	if (!a->kv.meta)
		return 0; /* no metric is kept */
	w = kvc_prefill_ws_layout(a->nr_heads, a->group, a->n, a->max_len,
				  a->metric, a->pool_kernel);
	first = kvc_attn_first_observer(a->n, a->window);
	for (i = 0; i < a->nr_heads; i++) {
		head_kv(&a->kv, a->tables, a->table_stride, a->lens, i, &kv);
		for (s = 0; s < kv.len; s++) {
			locate(&kv, s, &key);
			kvc_attn_load_row(
				kr, kvc_attn_k_row(&kv, key.block, key.offset),
				d, kv.dtype);
			sum = 0.0f;
			for (j = first; j < a->n; j++) {
				locate(&kv, kv.len - a->n + j, &qs);
				if (!kvc_attn_observed(qs.pos, key.pos,
						       a->buffer))
					continue;
				term = 0.0f;
				for (g = 0; g < a->group; g++) {
					at = ((uint64_t)i * a->n + j) *
						     a->group +
					     g;
					st.max = ws[w.max + at];
					st.sum = ws[w.sum + at];
					x = a->scale *
					    kvc_attn_dot(
						    q + prefill_q(a, i, j, g),
						    kr, d);
					term += kvc_metric_term(
						(enum kvc_metric_kind)a->metric,
						kvc_softmax_weight(&st, x));
				}
				sum += term;
			}
			if (a->pool_kernel > 1)
				ws[w.unpooled + (uint64_t)i * a->max_len + s] =
					sum;
			else
				key.meta->metric += sum;
		}
	}
	return 0;
}

/* Every CTA of the pooling kernel: the max-pool of the unpooled metric. */
static int prefill_pool(const struct kernel *k, const unsigned int grid[3],
			unsigned int threads, unsigned int smem,
			const struct kvc_prefill_args *a)
{
	const float *ws = HOST(const float, a->ws), *un;
	uint32_t i, j, lo, hi, t;
	struct kvc_prefill_ws w;
	struct kvc_paged_kv kv;
	struct slot sl;
	float max;

	if (!paged_ok(&a->kv, k) || !prefill_ok(a) ||
	    a->metric == KVC_METRIC_NONE || a->pool_kernel <= 1 ||
	    !grid_is(grid, div_up(a->max_len, KVC_PREFILL_POOL_THREADS),
		     a->nr_heads) ||
	    threads != KVC_PREFILL_POOL_THREADS)
		return BAD;
	if (!a->kv.meta)
		return 0;
	w = kvc_prefill_ws_layout(a->nr_heads, a->group, a->n, a->max_len,
				  a->metric, a->pool_kernel);
	for (i = 0; i < a->nr_heads; i++) {
		head_kv(&a->kv, a->tables, a->table_stride, a->lens, i, &kv);
		un = ws + w.unpooled + (uint64_t)i * a->max_len;
		for (j = 0; j < kv.len; j++) {
			kvc_attn_pool_range(j, kv.len, a->pool_kernel, &lo,
					    &hi);
			max = un[lo];
			for (t = lo + 1; t < hi; t++)
				max = un[t] > max ? un[t] : max;
			locate(&kv, j, &sl);
			sl.meta->metric += max;
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Cache writes, moves, copies */

static uint64_t row_bytes(const struct kvc_kargs_paged *kv)
{
	return (uint64_t)kv->head_dim * kvc_attn_elem_bytes(kv->dtype);
}

/* K row (@v false) or V row of global slot @slot. */
static uint8_t *slot_row(const struct kvc_kargs_paged *kv, uint64_t slot,
			 bool v)
{
	uint64_t block = slot / kv->block_size, off = slot % kv->block_size;

	return HOST(uint8_t, kv->base) + block * kv->block_bytes +
	       (off + (v ? kv->block_size : 0)) * row_bytes(kv);
}

/* f32 -> the cache's type, rounding to nearest even. */
static void store_row(uint8_t *dst, const float *src, uint32_t n,
		      uint32_t dtype)
{
	uint32_t i;
	uint16_t h;

	if (dtype == KVC_DTYPE_F32) {
		memcpy(dst, src, sizeof(*src) * n);
		return;
	}
	for (i = 0; i < n; i++) {
		h = dtype == KVC_DTYPE_BF16 ? kvc_f32_to_bf16(src[i]) :
					      kvc_f32_to_f16(src[i]);
		memcpy(dst + 2 * (uint64_t)i, &h, sizeof(h));
	}
}

static int cache_write(const struct kernel *k, const unsigned int grid[3],
		       unsigned int threads,
		       const struct kvc_cache_write_args *a)
{
	const uint64_t *slots = HOST(const uint64_t, a->slots);
	const int32_t *pos = HOST(const int32_t, a->pos);
	struct kvc_slot_meta *meta = HOST(struct kvc_slot_meta, a->kv.meta);
	uint32_t d = a->kv.head_dim, r;

	if (!paged_ok(&a->kv, k) || !a->rows || !a->slots || !a->k || !a->v ||
	    !grid_is(grid, div_up(a->rows, KVC_ROWS_PER_CTA), 1) ||
	    threads != KVC_ROWS_THREADS)
		return BAD;
	for (r = 0; r < a->rows; r++) {
		store_row(slot_row(&a->kv, slots[r], false),
			  HOST(const float, a->k) + (uint64_t)r * d, d,
			  a->kv.dtype);
		store_row(slot_row(&a->kv, slots[r], true),
			  HOST(const float, a->v) + (uint64_t)r * d, d,
			  a->kv.dtype);
		if (pos && meta)
			meta[slots[r]] = (struct kvc_slot_meta){ 0.0f, pos[r] };
	}
	return 0;
}

static int move_cache(const struct kernel *k, const unsigned int grid[3],
		      unsigned int threads, const struct kvc_move_args *a)
{
	const uint64_t *mv = HOST(const uint64_t, a->moves);
	struct kvc_slot_meta *meta = HOST(struct kvc_slot_meta, a->kv.meta);
	uint64_t bytes = row_bytes(&a->kv);
	uint32_t m;

	if (!paged_ok(&a->kv, k) || !a->n || !a->moves ||
	    !grid_is(grid, div_up(a->n, KVC_ROWS_PER_CTA), 1) ||
	    threads != KVC_ROWS_THREADS)
		return BAD;
	for (m = 0; m < a->n; m++) {
		memmove(slot_row(&a->kv, mv[2 * m + 1], false),
			slot_row(&a->kv, mv[2 * m], false), bytes);
		memmove(slot_row(&a->kv, mv[2 * m + 1], true),
			slot_row(&a->kv, mv[2 * m], true), bytes);
		if (meta)
			meta[mv[2 * m + 1]] = meta[mv[2 * m]];
	}
	return 0;
}

static int block_copy(const unsigned int grid[3], unsigned int threads,
		      const struct kvc_copy_args *a)
{
	const uint32_t *pairs =
		a->pairs_dev ? HOST(const uint32_t, a->pairs_dev) : a->pairs;
	uint8_t *src = HOST(uint8_t, a->src_base);
	uint8_t *dst = HOST(uint8_t, a->dst_base);
	uint32_t i;

	/* Any grid works: the kernel loops over the items with a stride. */
	if (!a->n || (!a->pairs_dev && a->n > KVC_COPY_INLINE) || !a->bytes ||
	    a->bytes % 4 || !a->src_base || !a->dst_base || !grid[0] ||
	    grid[1] != 1 || grid[2] != 1 || threads != KVC_COPY_THREADS)
		return BAD;
	for (i = 0; i < a->n; i++)
		memmove(dst + pairs[2 * i + 1] * a->bytes,
			src + pairs[2 * i] * a->bytes, a->bytes);
	return 0;
}

int kvc_emulate_launch(const char *name, const unsigned int grid[3],
		       unsigned int threads, unsigned int smem,
		       void *const *params)
{
	struct kernel k;
	const void *a;

	if (!parse(name, &k) || !grid || !params || !params[0])
		return BAD;
	a = params[0];
	switch (k.kind) {
	case E_DECODE_PART:
		return decode_part(&k, grid, threads, smem, a);
	case E_DECODE_REDUCE:
		return decode_reduce(&k, grid, threads, smem, a);
	case E_PREFILL_ATTN:
		return prefill_attn(&k, grid, threads, smem, a);
	case E_PREFILL_METRIC:
		return prefill_metric(&k, grid, threads, smem, a);
	case E_PREFILL_POOL:
		return prefill_pool(&k, grid, threads, smem, a);
	case E_CACHE_WRITE:
		return cache_write(&k, grid, threads, a);
	case E_MOVE_CACHE:
		return move_cache(&k, grid, threads, a);
	case E_BLOCK_COPY:
		return block_copy(grid, threads, a);
	}
	return BAD;
}
