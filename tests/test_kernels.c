/* Description: the CUDA kernels' CPU emulation against the C references: decode over several partitions (f32/f16/bf16, GQA 1/3/8, head_dim 64/96/128, ragged and empty heads, every metric), prefill with window, buffer, pool and position gaps, cache write against the runtime's store, moves, block copies inline and from device pairs, refused launches, and the launchers on the fake driver with fault injection */
// SPDX-License-Identifier: MIT
/*
 * Tests of kernels/emulate.h and kernels/cuda_kernels.h.
 *
 * Each kernel runs on a cache built by hand: blocks with shuffled ids and
 * padding past K and V, every byte no head owns set to NaN (a read outside
 * a head poisons the result), a poison block behind every table's last
 * entry, and a sentinel metric in every slot no head owns. Launches use
 * the plans of launch.c, so the partitions and the workspace layouts are
 * the ones a device gets. The references (attention_ref.c) sum in another
 * order than a partitioned kernel, so results agree within f32 rounding,
 * not bit for bit; stores, moves and copies agree bit for bit.
 *
 * The fake driver's tests go through kvc_cuda_kernels_load() and the
 * launchers: the fake runs the same emulation when a kernel's turn on the
 * stream comes, from device memory it hands out with cuMemAlloc.
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
#include <kvc/backend.h>
#include <kvc/kv.h>
#include <kvc/kvc.h>
#include <kvc/pool.h>

#include "../alloc/fake_driver.h"
#include "../kernels/args.h"
#include "../kernels/attention.h"
#include "../kernels/cuda_kernels.h"
#include "../kernels/decode_layout.h"
#include "../kernels/emulate.h"
#include "../kernels/half.h"
#include "../kernels/images.h"
#include "../kernels/launch.h"
#include "../kernels/prefill_layout.h"

#define SENTINEL 12345.0f
#define PAD 96u /* bytes after K and V in a block */
#define MAX_ALLOCS 64
/* Queries are this large, so that softmax weights spread. */
#define Q_SCALE 3.0f
/* f32 rounding of sums in another order: outputs are means of values in
 * [-1, 1], metrics sums of at most a few weights. */
#define OUT_TOL 2e-5f
#define METRIC_TOL 2e-5f

/**
 * struct alloc - Memory a test holds.
 * @p: its address.
 * @dev: from the fake's cuMemAlloc (else malloc).
 */
struct alloc {
	void *p;
	bool dev;
};

/**
 * struct fixture - What a test runs on.
 * @drv: the fake driver, or NULL: launches go to kvc_emulate_launch().
 * @ctx: the fake's primary context, current during the test.
 * @k: the kernels loaded on the fake, or NULL.
 * @gpu: the device the plans are made for.
 * @allocs: memory to release.
 * @nr_allocs: entries of @allocs.
 * @rng: random state.
 */
struct fixture {
	const struct kvc_cuda_driver *drv;
	kvc_cu_context ctx;
	struct kvc_cuda_kernels *k;
	struct kvc_gpu_info gpu;
	struct alloc allocs[MAX_ALLOCS];
	uint32_t nr_allocs;
	uint64_t rng;
};

/* The device the fake plays: small enough that decode partitions. */
static const struct kvc_fake_config fake_cfg = {
	.granularity = 2ull << 20,
	.devices = 1,
	.sms = 24,
	.smem_optin = 99u << 10,
	.cc_major = 9,
	.mem_clock_khz = 2619000,
	.bus_bits = 5120,
	.l2_bytes = 50ull << 20,
};

static const struct kvc_gpu_info h100 = {
	.sms = 132,
	.smem_optin = 227u << 10,
	.cc_major = 9,
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	fx->gpu = h100;
	fx->rng = 0x9e3779b97f4a7c15ull;
	*state = fx;
	return 0;
}

/* The fake with its context current and the kernels loaded. */
static int setup_fake(void **state)
{
	struct fixture *fx;
	int err;

	if (setup(state))
		return -1;
	fx = *state;
	fx->drv = kvc_fake_driver(&fake_cfg);
	if (!fx->drv || fx->drv->cuInit(0) ||
	    fx->drv->cuDevicePrimaryCtxRetain(&fx->ctx, 0) ||
	    fx->drv->cuCtxPushCurrent(fx->ctx)) {
		fprintf(stderr, "fake driver: %s\n", kvc_fake_last_violation());
		return -1;
	}
	err = kvc_cuda_kernels_load(fx->drv, 0, &fx->k);
	if (err) {
		fprintf(stderr, "kvc_cuda_kernels_load() = %d: %s\n", err,
			kvc_last_error());
		return -1;
	}
	fx->gpu = *kvc_cuda_kernels_gpu(fx->k);
	return 0;
}

static void release_all(struct fixture *fx)
{
	while (fx->nr_allocs) {
		struct alloc *a = &fx->allocs[--fx->nr_allocs];

		if (a->dev)
			fx->drv->cuMemFree((kvc_cu_ptr)(uintptr_t)a->p);
		else
			free(a->p);
	}
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	kvc_cu_context ctx;

	release_all(fx);
	if (fx->drv) {
		kvc_cuda_kernels_unload(fx->k);
		fx->drv->cuCtxPopCurrent(&ctx);
		fx->drv->cuDevicePrimaryCtxRelease(0);
	}
	free(fx);
	return 0;
}

/* ------------------------------------------------------------------ */
/* helpers */

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(rng_next(s) % n);
}

/* Uniform in [-1, 1). */
static float rng_unit(uint64_t *s)
{
	return (float)((double)(rng_next(s) >> 11) * 0x1p-53 * 2.0 - 1.0);
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

static void *track(struct fixture *fx, void *p, bool dev)
{
	assert_non_null(p);
	assert_true(fx->nr_allocs < MAX_ALLOCS);
	fx->allocs[fx->nr_allocs++] = (struct alloc){ p, dev };
	return p;
}

/* Host memory the test keeps (references, snapshots). */
static void *host(struct fixture *fx, size_t bytes)
{
	return track(fx, calloc(1, bytes ? bytes : 1), false);
}

/* Memory kernels reach: the fake's device memory, or the host's. */
static void *mem(struct fixture *fx, size_t bytes)
{
	kvc_cu_ptr d;

	if (!bytes)
		bytes = 4;
	if (!fx->drv)
		return host(fx, bytes);
	assert_int_equal(fx->drv->cuMemAlloc(&d, bytes), 0);
	return track(fx, (void *)(uintptr_t)d, true);
}

static uint64_t addr(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

static void *dup_host(struct fixture *fx, const void *src, size_t bytes)
{
	return memcpy(host(fx, bytes), src, bytes);
}

static uint32_t elem_bytes(enum kvc_dtype dtype)
{
	return dtype == KVC_DTYPE_F32 ? 4 : 2;
}

/* Element @i of a row, stored as the cache stores it. */
static void store(uint8_t *row, uint32_t i, float x, enum kvc_dtype dtype)
{
	uint16_t h;

	if (dtype == KVC_DTYPE_F32) {
		memcpy(row + 4 * (size_t)i, &x, sizeof(x));
		return;
	}
	h = dtype == KVC_DTYPE_F16 ? kvc_f32_to_f16(x) : kvc_f32_to_bf16(x);
	memcpy(row + 2 * (size_t)i, &h, sizeof(h));
}

static void fill_random(uint64_t *rng, float *x, size_t n, float scale)
{
	size_t i;

	for (i = 0; i < n; i++)
		x[i] = rng_unit(rng) * scale;
}

static void expect_close(const float *got, const float *want, size_t n,
			 float tol, const char *what)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!(fabsf(got[i] - want[i]) <= tol * (1.0f + fabsf(want[i]))))
			fail_msg("%s[%zu] = %.9g, expected %.9g", what, i,
				 (double)got[i], (double)want[i]);
}

static const char *const dtype_name[] = { "f32", "f16", "bf16" };

static const char *kernel_name(char *buf, size_t size, const char *kind,
			       enum kvc_dtype dtype, uint32_t hd)
{
	snprintf(buf, size, "kvc_%s_%s_%u", kind, dtype_name[dtype],
		 kvc_kernel_hd(hd));
	return buf;
}

/* One launch through the emulator, as cuLaunchKernel would pass it. */
static int emulate(const char *name, const struct kvc_launch *l,
		   const void *args)
{
	void *params[] = { (void *)args };

	return kvc_emulate_launch(name, l->grid, l->threads, l->smem, params);
}

/* ------------------------------------------------------------------ */
/* A cache built by hand */

/**
 * struct cache - Heads of a paged cache, in memory kernels reach.
 * @dtype: element type.
 * @hd: head_dim.
 * @bs: block size.
 * @nr_heads: heads.
 * @stride: table entries a head (its blocks, then the poison block).
 * @max_len: the longest head.
 * @nr_blocks: blocks in the arena.
 * @block_bytes: bytes a block (K, V, padding).
 * @base: the arena.
 * @meta: slot metadata of every block.
 * @tables: the heads' tables.
 * @lens: the heads' lengths.
 */
struct cache {
	enum kvc_dtype dtype;
	uint32_t hd;
	uint32_t bs;
	uint32_t nr_heads;
	uint32_t stride;
	uint32_t max_len;
	uint32_t nr_blocks;
	uint64_t block_bytes;
	uint8_t *base;
	struct kvc_slot_meta *meta;
	uint32_t *tables;
	uint32_t *lens;
};

/*
 * Heads of @lens KVs each, random K and V in [-1, 1), blocks shuffled;
 * positions are slot indexes, or with @gaps 3 * slot + 2 (what eviction
 * leaves: increasing, not dense).
 */
static void cache_init(struct fixture *fx, struct cache *c,
		       enum kvc_dtype dtype, uint32_t hd, uint32_t bs,
		       uint32_t nr_heads, const uint32_t *lens, bool gaps)
{
	uint32_t i, s, j, nb, total = 0, *ids, t, poison;
	uint64_t row = (uint64_t)hd * elem_bytes(dtype);
	uint8_t *block;

	memset(c, 0, sizeof(*c));
	c->dtype = dtype;
	c->hd = hd;
	c->bs = bs;
	c->nr_heads = nr_heads;
	c->stride = 1;
	for (i = 0; i < nr_heads; i++) {
		nb = (uint32_t)div_up(lens[i], bs);
		total += nb;
		c->stride = nb + 1 > c->stride ? nb + 1 : c->stride;
		c->max_len = lens[i] > c->max_len ? lens[i] : c->max_len;
	}
	c->nr_blocks = total + 3; /* the poison block and two spare */
	c->block_bytes = 2 * bs * row + PAD;
	c->base = mem(fx, c->nr_blocks * c->block_bytes);
	memset(c->base, 0xff, c->nr_blocks * c->block_bytes);
	c->meta = mem(fx, (size_t)c->nr_blocks * bs * sizeof(*c->meta));
	for (s = 0; s < c->nr_blocks * bs; s++)
		c->meta[s] = (struct kvc_slot_meta){ SENTINEL, -1 };
	c->tables = mem(fx, (size_t)nr_heads * c->stride * sizeof(uint32_t));
	c->lens = mem(fx, nr_heads * sizeof(uint32_t));
	memcpy(c->lens, lens, nr_heads * sizeof(uint32_t));

	ids = malloc(c->nr_blocks * sizeof(*ids));
	assert_non_null(ids);
	for (i = 0; i < c->nr_blocks; i++)
		ids[i] = i;
	for (i = c->nr_blocks - 1; i > 0; i--) {
		j = rng_below(&fx->rng, i + 1);
		t = ids[i];
		ids[i] = ids[j];
		ids[j] = t;
	}
	poison = ids[total];
	for (i = 0; i < nr_heads * c->stride; i++)
		c->tables[i] = poison;
	for (i = 0, t = 0; i < nr_heads; i++)
		for (j = 0; j < div_up(lens[i], bs); j++)
			c->tables[(size_t)i * c->stride + j] = ids[t++];
	free(ids);

	for (i = 0; i < nr_heads; i++) {
		for (s = 0; s < lens[i]; s++) {
			uint32_t b = c->tables[(size_t)i * c->stride + s / bs];

			block = c->base + b * c->block_bytes;
			for (j = 0; j < hd; j++) {
				store(block + (s % bs) * row, j,
				      rng_unit(&fx->rng), dtype);
				store(block + (bs + s % bs) * row, j,
				      rng_unit(&fx->rng), dtype);
			}
			c->meta[(size_t)b * bs + s % bs] =
				(struct kvc_slot_meta){
					(rng_unit(&fx->rng) + 1.0f) / 4,
					gaps ? (int32_t)(3 * s + 2) :
					       (int32_t)s,
				};
		}
	}
}

static struct kvc_kargs_paged cache_kargs(const struct cache *c, bool meta)
{
	return (struct kvc_kargs_paged){
		.base = addr(c->base),
		.block_bytes = c->block_bytes,
		.meta = meta ? addr(c->meta) : 0,
		.block_size = c->bs,
		.head_dim = c->hd,
		.dtype = c->dtype,
	};
}

/* Head @i as the reference reads it, with metadata @meta (or none). */
static struct kvc_paged_kv cache_head(const struct cache *c, uint32_t i,
				      struct kvc_slot_meta *meta)
{
	return (struct kvc_paged_kv){
		.base = c->base,
		.block_bytes = c->block_bytes,
		.block_size = c->bs,
		.head_dim = c->hd,
		.dtype = c->dtype,
		.table = c->tables + (size_t)i * c->stride,
		.len = c->lens[i],
		.meta = meta,
	};
}

/* Metadata @got against the reference's @want: positions exact, metrics
 * of owned slots close, the sentinel untouched. */
static void expect_meta(const struct cache *c, const struct kvc_slot_meta *got,
			const struct kvc_slot_meta *want)
{
	size_t s;

	for (s = 0; s < (size_t)c->nr_blocks * c->bs; s++) {
		if (got[s].pos != want[s].pos)
			fail_msg("meta[%zu].pos = %d, expected %d", s,
				 got[s].pos, want[s].pos);
		if (want[s].metric == SENTINEL) {
			if (got[s].metric != SENTINEL)
				fail_msg(
					"meta[%zu] owned by no head: metric %.9g",
					s, (double)got[s].metric);
			continue;
		}
		expect_close(&got[s].metric, &want[s].metric, 1, METRIC_TOL,
			     "metric");
	}
}

/* ------------------------------------------------------------------ */
/* Decode */

static void launch_decode(struct fixture *fx, const struct kvc_decode_args *a,
			  const struct kvc_decode_plan *plan)
{
	char name[64];
	int err;

	if (fx->k) {
		err = kvc_cuda_decode(fx->k, NULL, a, plan);
		if (err)
			fail_msg("kvc_cuda_decode() = %d: %s", err,
				 kvc_last_error());
		return;
	}
	assert_int_equal(emulate(kernel_name(name, sizeof(name), "decode_part",
					     a->kv.dtype, a->kv.head_dim),
				 &plan->part, a),
			 0);
	snprintf(name, sizeof(name), "kvc_decode_reduce_%u",
		 kvc_kernel_hd(a->kv.head_dim));
	assert_int_equal(emulate(name, &plan->reduce, a), 0);
}

/*
 * One decode step of every head of @c, emulated with the plan for @gpu
 * (at least @min_parts partitions), against kvc_attn_decode_ref() head
 * by head: outputs and metrics.
 */
static void run_decode(struct fixture *fx, const struct kvc_gpu_info *gpu,
		       struct cache *c, uint32_t kv_heads, uint32_t group,
		       enum kvc_metric_kind metric, uint32_t min_parts)
{
	struct kvc_attn_shape shape = {
		.nr_heads = c->nr_heads,
		.kv_heads = kv_heads,
		.group = group,
		.head_dim = c->hd,
		.block_size = c->bs,
		.max_len = c->max_len,
		.dtype = c->dtype,
		.metric = metric,
	};
	size_t nq = (size_t)c->nr_heads * group * c->hd;
	struct kvc_slot_meta *want_meta;
	struct kvc_decode_plan plan;
	struct kvc_decode_args a;
	struct kvc_paged_kv kv;
	float *q, *out, *want, *ws, scale = 1.0f / sqrtf((float)c->hd);
	uint32_t i;
	int err;

	err = kvc_decode_plan(gpu, &shape, &plan);
	if (err)
		fail_msg("kvc_decode_plan() = %d: %s", err, kvc_last_error());
	if (plan.nr_parts < min_parts)
		fail_msg("%u partitions of %u tokens, expected %u or more",
			 plan.nr_parts, plan.part_tokens, min_parts);
	q = mem(fx, nq * sizeof(float));
	out = mem(fx, nq * sizeof(float));
	ws = mem(fx, plan.ws_bytes);
	want = host(fx, nq * sizeof(float));
	fill_random(&fx->rng, q, nq, Q_SCALE);
	memset(out, 0xff, nq * sizeof(float));
	memset(ws, 0xff, plan.ws_bytes);
	want_meta = dup_host(fx, c->meta,
			     (size_t)c->nr_blocks * c->bs * sizeof(*c->meta));

	a = (struct kvc_decode_args){
		.kv = cache_kargs(c, true),
		.tables = addr(c->tables),
		.lens = addr(c->lens),
		.q = addr(q),
		.out = addr(out),
		.ws = addr(ws),
		.table_stride = c->stride,
		.nr_heads = c->nr_heads,
		.group = group,
		.metric = metric,
		.part_tokens = plan.part_tokens,
		.nr_parts = plan.nr_parts,
		.max_len = c->max_len,
		.scale = scale,
	};
	launch_decode(fx, &a, &plan);

	for (i = 0; i < c->nr_heads; i++) {
		kv = cache_head(c, i, want_meta);
		kvc_attn_decode_ref(&kv, group, q + (size_t)i * group * c->hd,
				    scale, want + (size_t)i * group * c->hd,
				    metric);
	}
	expect_close(out, want, nq, OUT_TOL, "out");
	expect_meta(c, c->meta, want_meta);
}

/* Lengths of @n heads up to @max: one empty, one full, the rest random. */
static void ragged(uint64_t *rng, uint32_t *lens, uint32_t n, uint32_t min,
		   uint32_t max)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		lens[i] = min + rng_below(rng, max - min + 1);
	lens[0] = min;
	lens[n - 1] = max;
}

/*
 * Several partitions (of 128 tokens, the shortest), forced by a device
 * with many SMs: every dtype, group and head_dim; heads of different
 * lengths, one empty; each metric in turn.
 */
static void test_decode_partitions(void **state)
{
	static const uint32_t groups[] = { 1, 3, 8 };
	static const uint32_t dims[] = { 64, 96, 128 };
	static const uint32_t blocks[] = { 8, 16, 32 };
	static const struct kvc_gpu_info wide = {
		.sms = 1000,
		.smem_optin = 227u << 10,
	};
	struct fixture *fx = *state;
	uint32_t lens[6], d, g, h, k = 0;
	struct cache c;

	for (d = 0; d < 3; d++)
		for (g = 0; g < 3; g++)
			for (h = 0; h < 3; h++, k++) {
				ragged(&fx->rng, lens, 6, 0,
				       300 + rng_below(&fx->rng, 300));
				cache_init(fx, &c, (enum kvc_dtype)d, dims[h],
					   blocks[k % 3], 6, lens, k & 1);
				run_decode(fx, &wide, &c, 3, groups[g],
					   (enum kvc_metric_kind)((k + 1) % 4),
					   3);
				release_all(fx);
			}
}

/* Partitions as an H100 gets them (128 tokens and up), long heads, the
 * largest group and head_dim. */
static void test_decode_h100(void **state)
{
	struct fixture *fx = *state;
	uint32_t lens[4];
	struct cache c;

	ragged(&fx->rng, lens, 4, 1, 1000);
	cache_init(fx, &c, KVC_DTYPE_F16, 128, 16, 4, lens, false);
	run_decode(fx, &h100, &c, 2, 4, KVC_METRIC_L2, 8);
	release_all(fx);

	ragged(&fx->rng, lens, 2, 0, 700);
	cache_init(fx, &c, KVC_DTYPE_BF16, 256, 32, 2, lens, false);
	run_decode(fx, &h100, &c, 1, 16, KVC_METRIC_L1, 5);
	release_all(fx);

	/* One partition covers everything. */
	ragged(&fx->rng, lens, 4, 3, 40);
	cache_init(fx, &c, KVC_DTYPE_F32, 8, 16, 4, lens, false);
	run_decode(fx, &h100, &c, 4, 2, KVC_METRIC_AVG, 1);
}

/* ------------------------------------------------------------------ */
/* Prefill */

static void launch_prefill(struct fixture *fx, const struct kvc_prefill_args *a,
			   const struct kvc_prefill_plan *plan)
{
	char name[64];
	int err;

	if (fx->k) {
		err = kvc_cuda_prefill(fx->k, NULL, a, plan);
		if (err)
			fail_msg("kvc_cuda_prefill() = %d: %s", err,
				 kvc_last_error());
		return;
	}
	assert_int_equal(emulate(kernel_name(name, sizeof(name), "prefill_attn",
					     a->kv.dtype, a->kv.head_dim),
				 &plan->attn, a),
			 0);
	if (plan->metric.grid[0])
		assert_int_equal(
			emulate(kernel_name(name, sizeof(name),
					    "prefill_metric", a->kv.dtype,
					    a->kv.head_dim),
				&plan->metric, a),
			0);
	if (plan->pool.grid[0])
		assert_int_equal(emulate("kvc_prefill_pool", &plan->pool, a),
				 0);
}

/*
 * Prefill of the last @n KVs of every head of @c (@kv_heads a sequence),
 * queries in the batch's natural layout, against kvc_attn_prefill_ref_ws()
 * head by head. @meta false: no metadata (positions are slots, no metric).
 */
static void run_prefill(struct fixture *fx, struct cache *c, uint32_t kv_heads,
			uint32_t group, uint32_t n,
			const struct kvc_observe *obs, bool meta)
{
	struct kvc_attn_shape shape = {
		.nr_heads = c->nr_heads,
		.kv_heads = kv_heads,
		.group = group,
		.head_dim = c->hd,
		.block_size = c->bs,
		.max_len = c->max_len,
		.dtype = c->dtype,
		.metric = obs->metric,
	};
	size_t nq = (size_t)c->nr_heads * n * group * c->hd;
	size_t stride = (size_t)kv_heads * group * c->hd, off;
	struct kvc_slot_meta *want_meta;
	struct kvc_prefill_plan plan;
	struct kvc_prefill_args a;
	struct kvc_paged_kv kv;
	float *q, *out, *want, *ws, scale = 1.0f / sqrtf((float)c->hd);
	void *ref_ws;
	uint32_t i;
	int err;

	err = kvc_prefill_plan(&fx->gpu, &shape, n, obs->pool_kernel, &plan);
	if (err)
		fail_msg("kvc_prefill_plan() = %d: %s", err, kvc_last_error());
	q = mem(fx, nq * sizeof(float));
	out = mem(fx, nq * sizeof(float));
	ws = mem(fx, plan.ws_bytes);
	want = host(fx, nq * sizeof(float));
	fill_random(&fx->rng, q, nq, Q_SCALE);
	memset(out, 0xff, nq * sizeof(float));
	memset(ws, 0xff, plan.ws_bytes);
	want_meta = dup_host(fx, c->meta,
			     (size_t)c->nr_blocks * c->bs * sizeof(*c->meta));

	a = (struct kvc_prefill_args){
		.kv = cache_kargs(c, meta),
		.tables = addr(c->tables),
		.lens = addr(c->lens),
		.q = addr(q),
		.out = addr(out),
		.ws = plan.ws_bytes ? addr(ws) : 0,
		.table_stride = c->stride,
		.nr_heads = c->nr_heads,
		.kv_heads = kv_heads,
		.group = group,
		.n = n,
		.metric = obs->metric,
		.window = obs->window,
		.buffer = obs->buffer,
		.pool_kernel = obs->pool_kernel,
		.max_len = c->max_len,
		.scale = scale,
	};
	launch_prefill(fx, &a, &plan);

	for (i = 0; i < c->nr_heads; i++) {
		kv = cache_head(c, i, meta ? want_meta : NULL);
		off = ((size_t)(i / kv_heads) * n * kv_heads + i % kv_heads) *
		      group * c->hd;
		ref_ws = malloc(
			kvc_attn_prefill_ws_bytes(kv.len, group, n, obs) + 1);
		assert_non_null(ref_ws);
		kvc_attn_prefill_ref_ws(&kv, group, n, q + off, stride, scale,
					want + off, obs, ref_ws);
		free(ref_ws);
	}
	expect_close(out, want, nq, OUT_TOL, "out");
	expect_meta(c, c->meta, want_meta);
}

static void test_prefill(void **state)
{
	static const struct kvc_observe obs[] = {
		{ KVC_METRIC_NONE, 0, 0, 0 }, { KVC_METRIC_L2, 0, 0, 0 },
		{ KVC_METRIC_L1, 5, 2, 3 },   { KVC_METRIC_AVG, 0, 1, 5 },
		{ KVC_METRIC_L2, 100, 0, 2 }, { KVC_METRIC_L1, 8, 0, 1 },
	};
	static const struct {
		uint32_t group;
		uint32_t hd;
		uint32_t bs;
	} shapes[] = { { 1, 64, 16 }, { 3, 128, 8 }, { 4, 96, 32 } };
	static const uint32_t ns[] = { 1, 17, 40 };
	struct fixture *fx = *state;
	uint32_t lens[4], o, d, s, k = 0;
	struct cache c;

	for (o = 0; o < sizeof(obs) / sizeof(obs[0]); o++)
		for (d = 0; d < 3; d++)
			for (s = 0; s < 3; s++, k++) {
				uint32_t n = ns[(k + s) % 3];

				ragged(&fx->rng, lens, 4, n,
				       n + rng_below(&fx->rng, 90));
				cache_init(fx, &c, (enum kvc_dtype)d,
					   shapes[s].hd, shapes[s].bs, 4, lens,
					   k & 1);
				run_prefill(fx, &c, 2, shapes[s].group, n,
					    &obs[o], true);
				release_all(fx);
			}
}

/* No metadata: positions are slot indexes, and no metric is kept. */
static void test_prefill_no_meta(void **state)
{
	static const struct kvc_observe obs = { KVC_METRIC_L2, 0, 0, 3 };
	struct fixture *fx = *state;
	uint32_t lens[3] = { 30, 33, 60 };
	struct cache c;

	cache_init(fx, &c, KVC_DTYPE_F16, 64, 16, 3, lens, false);
	run_prefill(fx, &c, 3, 2, 30, &obs, false);
}

/* ------------------------------------------------------------------ */
/* Cache writes, moves, copies */

static void launch_rows(struct fixture *fx, const char *name, uint64_t rows,
			const void *args)
{
	struct kvc_launch l;
	int err;

	if (fx->k) {
		if (!strcmp(name, "kvc_cache_write"))
			err = kvc_cuda_cache_write(fx->k, NULL, args);
		else
			err = kvc_cuda_move(fx->k, NULL, args);
		if (err)
			fail_msg("%s: %d: %s", name, err, kvc_last_error());
		return;
	}
	assert_int_equal(kvc_rows_launch(rows, &l), 0);
	assert_int_equal(emulate(name, &l, args), 0);
}

/* Values the conversions must get right: ties, subnormals, overflow,
 * infinities, NaN, signed zero. */
static const float specials[] = {
	0.0f,
	-0.0f,
	1.0f + 0x1p-11f,
	1.0f + 0x3p-11f,
	1.0f + 0x1p-8f,
	1.0f + 0x3p-8f,
	0x1p-20f,
	-0x1.8p-24f,
	65520.0f,
	-70000.0f,
	INFINITY,
	-INFINITY,
	NAN,
	1e-40f,
	0x1.ffffep127f,
	-2.5f,
};

/*
 * The cache write against the CPU path: the runtime's kvc_seq_append()
 * on a host cache stores the same rows; the emulated kernel writes them
 * to the same slots of another arena; the bytes must match.
 */
static void test_cache_write_vs_runtime(void **state)
{
	struct fixture *fx = *state;
	struct kvc_model_shape shape = {
		.layers = 1,
		.q_heads = 2,
		.kv_heads = 2,
		.head_dim = 64,
		.block_size = 16,
	};
	const uint32_t n = 45, d = shape.head_dim, bs = shape.block_size;
	struct kvc_kv_params params;
	struct kvc_cache_write_args a;
	struct kvc_slot_meta *meta;
	struct kvc_backend *be;
	struct kvc_kv *kv;
	struct kvc_seq *seq;
	uint32_t dt, h, t, nb, max_id, len;
	const uint32_t *table;
	uint64_t *slots, bb, row, ptr;
	float *k, *v;
	int32_t *pos;
	uint8_t *arena;
	size_t i;

	for (dt = 0; dt < 3; dt++) {
		shape.dtype = (enum kvc_dtype)dt;
		row = (uint64_t)d * elem_bytes(shape.dtype);
		bb = kvc_kv_block_bytes(&shape);
		assert_int_equal(kvc_backend_open_host(64 << 10, &be), 0);
		memset(&params, 0, sizeof(params));
		params.shape = shape;
		params.capacity_blocks = 64;
		params.backend_kind = KVC_BACKEND_HOST;
		params.backend = be;
		params.flags = KVC_POOL_NO_STATS_PAGE;
		assert_int_equal(kvc_kv_create(&params, &kv), 0);
		assert_int_equal(kvc_seq_create(kv, &seq), 0);
		k = host(fx, (size_t)2 * n * d * sizeof(float));
		v = host(fx, (size_t)2 * n * d * sizeof(float));
		fill_random(&fx->rng, k, (size_t)2 * n * d, 2.0f);
		fill_random(&fx->rng, v, (size_t)2 * n * d, 2.0f);
		for (i = 0; i < sizeof(specials) / sizeof(specials[0]); i++) {
			k[i * 7] = specials[i];
			v[i * 11 + 3] = specials[i];
		}
		assert_int_equal(kvc_seq_append(seq, n, k, v), 0);

		for (h = 0; h < 2; h++) {
			table = kvc_seq_table(seq, 0, h, &nb);
			len = kvc_seq_len(seq, 0, h);
			assert_int_equal(len, n);
			for (t = 0, max_id = 0; t < nb; t++)
				max_id = table[t] > max_id ? table[t] : max_id;
			arena = mem(fx, (max_id + 1) * bb);
			meta = mem(fx,
				   (size_t)(max_id + 1) * bs * sizeof(*meta));
			memset(meta, 0x5a,
			       (size_t)(max_id + 1) * bs * sizeof(*meta));
			slots = mem(fx, n * sizeof(*slots));
			pos = mem(fx, n * sizeof(*pos));
			for (t = 0; t < n; t++) {
				slots[t] =
					(uint64_t)table[t / bs] * bs + t % bs;
				pos[t] = (int32_t)t;
			}
			a = (struct kvc_cache_write_args){
				.kv = {
					.base = addr(arena),
					.block_bytes = bb,
					.meta = addr(meta),
					.block_size = bs,
					.head_dim = d,
					.dtype = dt,
				},
				.slots = addr(slots),
				.k = addr(k + (size_t)h * n * d),
				.v = addr(v + (size_t)h * n * d),
				.pos = addr(pos),
				.rows = n,
			};
			if (fx->drv) {
				/* The rows in device memory. */
				float *dk = mem(fx, (size_t)n * d * 4);
				float *dv = mem(fx, (size_t)n * d * 4);

				memcpy(dk, k + (size_t)h * n * d,
				       (size_t)n * d * 4);
				memcpy(dv, v + (size_t)h * n * d,
				       (size_t)n * d * 4);
				a.k = addr(dk);
				a.v = addr(dv);
			}
			launch_rows(fx, "kvc_cache_write", n, &a);
			for (t = 0; t < n; t++) {
				uint32_t b = table[t / bs], o = t % bs;

				assert_int_equal(
					kvc_pool_block_addr(kvc_kv_pool(kv), b,
							    &ptr),
					0);
				assert_memory_equal(arena + b * bb + o * row,
						    (uint8_t *)(uintptr_t)ptr +
							    o * row,
						    row);
				assert_memory_equal(arena + b * bb +
							    (bs + o) * row,
						    (uint8_t *)(uintptr_t)ptr +
							    (bs + o) * row,
						    row);
				assert_true(meta[slots[t]].metric == 0.0f);
				assert_int_equal(meta[slots[t]].pos, t);
			}
		}
		kvc_seq_destroy(seq);
		kvc_kv_destroy(kv);
		kvc_backend_close(be);
		release_all(fx);
	}
}

/* Rows to scattered slots, by hand; without positions the metadata stays. */
static void test_cache_write(void **state)
{
	struct fixture *fx = *state;
	const uint32_t d = 96, bs = 8, blocks = 9, rows = 37;
	uint32_t dt, r, i, j, t, *perm;
	struct kvc_cache_write_args a;
	struct kvc_slot_meta *meta, *want_meta;
	uint8_t *arena, *want;
	uint64_t *slots, bb, row;
	float *k, *v;
	int32_t *pos;
	bool with_pos;

	for (dt = 0; dt < 6; dt++) {
		enum kvc_dtype dtype = (enum kvc_dtype)(dt % 3);

		with_pos = dt < 3;
		row = (uint64_t)d * elem_bytes(dtype);
		bb = 2 * bs * row + PAD;
		arena = mem(fx, blocks * bb);
		meta = mem(fx, blocks * bs * sizeof(*meta));
		slots = mem(fx, rows * sizeof(*slots));
		pos = mem(fx, rows * sizeof(*pos));
		k = mem(fx, (size_t)rows * d * sizeof(float));
		v = mem(fx, (size_t)rows * d * sizeof(float));
		for (i = 0; i < blocks * bb; i++)
			arena[i] = (uint8_t)rng_next(&fx->rng);
		for (i = 0; i < blocks * bs; i++)
			meta[i] = (struct kvc_slot_meta){ 7.0f, (int32_t)i };
		fill_random(&fx->rng, k, (size_t)rows * d, 100.0f);
		fill_random(&fx->rng, v, (size_t)rows * d, 0.01f);
		for (i = 0; i < sizeof(specials) / sizeof(specials[0]); i++) {
			k[i * 13] = specials[i];
			v[i * 17 + 1] = specials[i];
		}
		/* Distinct slots in random order. */
		perm = host(fx, blocks * bs * sizeof(*perm));
		for (i = 0; i < blocks * bs; i++)
			perm[i] = i;
		for (i = blocks * bs - 1; i > 0; i--) {
			j = rng_below(&fx->rng, i + 1);
			t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		for (r = 0; r < rows; r++) {
			slots[r] = perm[r];
			pos[r] = (int32_t)rng_next(&fx->rng);
		}
		want = dup_host(fx, arena, blocks * bb);
		want_meta = dup_host(fx, meta, blocks * bs * sizeof(*meta));
		for (r = 0; r < rows; r++) {
			uint64_t b = slots[r] / bs, o = slots[r] % bs;

			for (j = 0; j < d; j++) {
				store(want + b * bb + o * row, j,
				      k[(size_t)r * d + j], dtype);
				store(want + b * bb + (bs + o) * row, j,
				      v[(size_t)r * d + j], dtype);
			}
			if (with_pos)
				want_meta[slots[r]] =
					(struct kvc_slot_meta){ 0.0f, pos[r] };
		}
		a = (struct kvc_cache_write_args){
			.kv = {
				.base = addr(arena),
				.block_bytes = bb,
				.meta = addr(meta),
				.block_size = bs,
				.head_dim = d,
				.dtype = dtype,
			},
			.slots = addr(slots),
			.k = addr(k),
			.v = addr(v),
			.pos = with_pos ? addr(pos) : 0,
			.rows = rows,
		};
		launch_rows(fx, "kvc_cache_write", rows, &a);
		assert_memory_equal(arena, want, blocks * bb);
		assert_memory_equal(meta, want_meta,
				    blocks * bs * sizeof(*meta));
		release_all(fx);
	}
}

/* Moves between disjoint slots: K, V and metadata (or no metadata). */
static void test_move(void **state)
{
	struct fixture *fx = *state;
	const uint32_t d = 64, bs = 16, blocks = 6, nr = 29;
	struct kvc_slot_meta *meta, *want_meta;
	uint32_t dt, m, i, j, t, *perm;
	struct kvc_move_args a;
	uint8_t *arena, *want;
	uint64_t *moves, bb, row, from, to;

	for (dt = 0; dt < 4; dt++) {
		enum kvc_dtype dtype = (enum kvc_dtype)(dt % 3);
		bool with_meta = dt < 3;

		row = (uint64_t)d * elem_bytes(dtype);
		bb = 2 * bs * row;
		arena = mem(fx, blocks * bb);
		meta = mem(fx, blocks * bs * sizeof(*meta));
		moves = mem(fx, 2 * nr * sizeof(*moves));
		for (i = 0; i < blocks * bb; i++)
			arena[i] = (uint8_t)rng_next(&fx->rng);
		for (i = 0; i < blocks * bs; i++)
			meta[i] =
				(struct kvc_slot_meta){ (float)i, (int32_t)i };
		perm = host(fx, blocks * bs * sizeof(*perm));
		for (i = 0; i < blocks * bs; i++)
			perm[i] = i;
		for (i = blocks * bs - 1; i > 0; i--) {
			j = rng_below(&fx->rng, i + 1);
			t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		/* Sources perm[0..nr), destinations perm[nr..2 nr). */
		for (m = 0; m < nr; m++) {
			moves[2 * m] = perm[m];
			moves[2 * m + 1] = perm[nr + m];
		}
		want = dup_host(fx, arena, blocks * bb);
		want_meta = dup_host(fx, meta, blocks * bs * sizeof(*meta));
		for (m = 0; m < nr; m++) {
			from = moves[2 * m];
			to = moves[2 * m + 1];
			memcpy(want + to / bs * bb + to % bs * row,
			       want + from / bs * bb + from % bs * row, row);
			memcpy(want + to / bs * bb + (bs + to % bs) * row,
			       want + from / bs * bb + (bs + from % bs) * row,
			       row);
			if (with_meta)
				want_meta[to] = want_meta[from];
		}
		a = (struct kvc_move_args){
			.kv = {
				.base = addr(arena),
				.block_bytes = bb,
				.meta = with_meta ? addr(meta) : 0,
				.block_size = bs,
				.head_dim = d,
				.dtype = dtype,
			},
			.moves = addr(moves),
			.n = nr,
		};
		launch_rows(fx, "kvc_move_cache", nr, &a);
		assert_memory_equal(arena, want, blocks * bb);
		assert_memory_equal(meta, want_meta,
				    blocks * bs * sizeof(*meta));
		release_all(fx);
	}
}

static void launch_copy(struct fixture *fx, const struct kvc_copy_args *a)
{
	struct kvc_launch l;
	int err;

	if (fx->k) {
		err = kvc_cuda_block_copy(fx->k, NULL, a);
		if (err)
			fail_msg("kvc_cuda_block_copy() = %d: %s", err,
				 kvc_last_error());
		return;
	}
	assert_int_equal(kvc_copy_launch(&fx->gpu, a->n, a->bytes, &l), 0);
	assert_int_equal(emulate("kvc_block_copy", &l, a), 0);
}

/*
 * Copies of @n items of @bytes: pairs inline or in device memory, into
 * another arena or within one (disjoint items).
 */
static void run_copy(struct fixture *fx, uint32_t n, uint64_t bytes,
		     bool dev_pairs, bool same)
{
	uint32_t items = 2 * n + 3, i, j, t, *perm, *pairs;
	struct kvc_copy_args *a = host(fx, sizeof(*a));
	uint8_t *src, *dst, *want;

	src = mem(fx, items * bytes);
	dst = same ? src : mem(fx, items * bytes);
	for (i = 0; i < items * bytes; i++) {
		src[i] = (uint8_t)rng_next(&fx->rng);
		dst[i] = (uint8_t)rng_next(&fx->rng);
	}
	perm = host(fx, items * sizeof(*perm));
	for (i = 0; i < items; i++)
		perm[i] = i;
	for (i = items - 1; i > 0; i--) {
		j = rng_below(&fx->rng, i + 1);
		t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	pairs = dev_pairs ? mem(fx, 2 * n * sizeof(*pairs)) : a->pairs;
	/* Distinct destinations; within one arena, none a source. */
	for (i = 0; i < n; i++) {
		pairs[2 * i] = perm[i];
		pairs[2 * i + 1] = same ? perm[n + i] : perm[(i + 3) % items];
	}
	want = dup_host(fx, dst, items * bytes);
	for (i = 0; i < n; i++)
		memcpy(want + pairs[2 * i + 1] * bytes,
		       src + pairs[2 * i] * bytes, bytes);
	a->src_base = addr(src);
	a->dst_base = addr(dst);
	a->bytes = bytes;
	a->pairs_dev = dev_pairs ? addr(pairs) : 0;
	a->n = n;
	launch_copy(fx, a);
	assert_memory_equal(dst, want, items * bytes);
}

static void test_block_copy(void **state)
{
	struct fixture *fx = *state;

	run_copy(fx, 1, 4, false, false);
	run_copy(fx, 17, 4096, false, false);
	run_copy(fx, 17, 4100, false, true);
	run_copy(fx, KVC_COPY_INLINE, 64, false, true);
	release_all(fx);
	run_copy(fx, 300, 256, true, false);
	run_copy(fx, 5, 12, true, true);
	release_all(fx);
}

/* ------------------------------------------------------------------ */
/* Refused launches */

static void test_known(void **state)
{
	static const char *const bad[] = {
		"",
		"kvc_decode_part_f32_96",
		"kvc_decode_part_f8_64",
		"kvc_decode_part_f16",
		"kvc_decode_reduce_f16_64",
		"kvc_prefill_attn_bf16_512",
		"kvc_block_copy2",
		"kvc_cache_write ",
	};
	static const char *const kinds[] = { "decode_part", "prefill_attn",
					     "prefill_metric" };
	static const uint32_t hds[] = { 64, 128, 256 };
	char name[64];
	size_t i, d, h;

	for (i = 0; i < 3; i++)
		for (d = 0; d < 3; d++)
			for (h = 0; h < 3; h++)
				assert_true(kvc_emulate_known(kernel_name(
					name, sizeof(name), kinds[i],
					(enum kvc_dtype)d, hds[h])));
	for (h = 0; h < 3; h++) {
		snprintf(name, sizeof(name), "kvc_decode_reduce_%u", hds[h]);
		assert_true(kvc_emulate_known(name));
	}
	assert_true(kvc_emulate_known("kvc_prefill_pool"));
	assert_true(kvc_emulate_known("kvc_cache_write"));
	assert_true(kvc_emulate_known("kvc_move_cache"));
	assert_true(kvc_emulate_known("kvc_block_copy"));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(kvc_emulate_known(bad[i]));
	assert_false(kvc_emulate_known(NULL));
}

/* A launch whose grid, threads, shared memory or arguments do not match
 * is refused, and writes nothing. */
static void test_refused(void **state)
{
	struct fixture *fx = *state;
	struct kvc_attn_shape shape = {
		.nr_heads = 2,
		.kv_heads = 1,
		.group = 2,
		.head_dim = 64,
		.block_size = 16,
		.dtype = KVC_DTYPE_F16,
		.metric = KVC_METRIC_L2,
	};
	struct kvc_gpu_info gpu = { .sms = 64, .smem_optin = 99u << 10 };
	uint32_t lens[2] = { 100, 300 };
	struct kvc_slot_meta *meta0;
	struct kvc_decode_plan plan;
	struct kvc_prefill_plan pp;
	struct kvc_decode_args a;
	struct kvc_prefill_args pa;
	struct kvc_launch l;
	float *q, *out, *ws;
	void *params[1];
	size_t nq, wsb;
	struct cache c;

	cache_init(fx, &c, KVC_DTYPE_F16, 64, 16, 2, lens, false);
	shape.max_len = c.max_len;
	assert_int_equal(kvc_decode_plan(&gpu, &shape, &plan), 0);
	assert_true(plan.nr_parts > 1);
	nq = 2 * 2 * 64;
	q = mem(fx, 300 * nq * sizeof(float));
	out = mem(fx, 300 * nq * sizeof(float));
	wsb = plan.ws_bytes > (1u << 20) ? plan.ws_bytes : (1u << 20);
	ws = mem(fx, wsb);
	fill_random(&fx->rng, q, 300 * nq, 1.0f);
	memset(out, 0xab, 300 * nq * sizeof(float));
	memset(ws, 0xab, wsb);
	meta0 = dup_host(fx, c.meta,
			 (size_t)c.nr_blocks * c.bs * sizeof(*c.meta));
	a = (struct kvc_decode_args){
		.kv = cache_kargs(&c, true),
		.tables = addr(c.tables),
		.lens = addr(c.lens),
		.q = addr(q),
		.out = addr(out),
		.ws = addr(ws),
		.table_stride = c.stride,
		.nr_heads = 2,
		.group = 2,
		.metric = KVC_METRIC_L2,
		.part_tokens = plan.part_tokens,
		.nr_parts = plan.nr_parts,
		.max_len = c.max_len,
		.scale = 0.125f,
	};

#define REFUSED(name, launch, args)                                       \
	do {                                                              \
		assert_int_equal(emulate(name, launch, args), 1);         \
		for (size_t i_ = 0; i_ < wsb; i_++)                       \
			if (((uint8_t *)ws)[i_] != 0xab)                  \
				fail_msg("%s wrote the workspace", name); \
		for (size_t i_ = 0; i_ < 300 * nq * 4; i_++)              \
			if (((uint8_t *)out)[i_] != 0xab)                 \
				fail_msg("%s wrote out", name);           \
		assert_memory_equal(c.meta, meta0,                        \
				    (size_t)c.nr_blocks *c.bs * 8);       \
	} while (0)

	/* Grid, threads, shared memory of the partition kernel. */
	l = plan.part;
	l.grid[0]++;
	REFUSED("kvc_decode_part_f16_64", &l, &a);
	l = plan.part;
	l.grid[1] = 1;
	REFUSED("kvc_decode_part_f16_64", &l, &a);
	l = plan.part;
	l.grid[2] = 2;
	REFUSED("kvc_decode_part_f16_64", &l, &a);
	l = plan.part;
	l.threads = 64;
	REFUSED("kvc_decode_part_f16_64", &l, &a);
	l = plan.part;
	l.smem--;
	REFUSED("kvc_decode_part_f16_64", &l, &a);
	/* Another dtype or head_dim variant than the cache's. */
	REFUSED("kvc_decode_part_bf16_64", &plan.part, &a);
	REFUSED("kvc_decode_part_f16_128", &plan.part, &a);
	REFUSED("kvc_decode_reduce_128", &plan.reduce, &a);
	/* The reduce's grid, threads, shared memory. */
	l = plan.reduce;
	l.grid[0] = 1;
	REFUSED("kvc_decode_reduce_64", &l, &a);
	l = plan.reduce;
	l.threads = 1;
	REFUSED("kvc_decode_reduce_64", &l, &a);
	l = plan.reduce;
	l.smem = 0;
	REFUSED("kvc_decode_reduce_64", &l, &a);
	/* Arguments a kernel would fault on. */
	a.max_len = c.max_len - 1; /* a head is longer */
	REFUSED("kvc_decode_part_f16_64", &plan.part, &a);
	a.max_len = c.max_len;
	a.part_tokens--; /* not whole blocks */
	REFUSED("kvc_decode_part_f16_64", &plan.part, &a);
	a.part_tokens++;
	a.nr_parts--; /* partitions do not cover max_len */
	l = plan.part;
	l.grid[0]--;
	REFUSED("kvc_decode_part_f16_64", &l, &a);
	a.nr_parts++;
	a.ws = 0;
	REFUSED("kvc_decode_part_f16_64", &plan.part, &a);
	a.ws = addr(ws);
	a.group = 17;
	REFUSED("kvc_decode_part_f16_64", &plan.part, &a);
	a.group = 2;
	a.metric = 9;
	REFUSED("kvc_decode_part_f16_64", &plan.part, &a);
	a.metric = KVC_METRIC_L2;
	a.kv.dtype = 7;
	REFUSED("kvc_decode_part_f16_64", &plan.part, &a);
	a.kv.dtype = KVC_DTYPE_F16;
	/* Unknown kernels, no parameters. */
	REFUSED("kvc_decode_part_f16_96", &plan.part, &a);
	params[0] = NULL;
	assert_int_equal(kvc_emulate_launch("kvc_decode_part_f16_64",
					    plan.part.grid, plan.part.threads,
					    plan.part.smem, params),
			 1);
	assert_int_equal(kvc_emulate_launch("kvc_decode_part_f16_64",
					    plan.part.grid, plan.part.threads,
					    plan.part.smem, NULL),
			 1);
	/* The launch that matches runs. */
	assert_int_equal(emulate("kvc_decode_part_f16_64", &plan.part, &a), 0);

	/* Prefill: grid, heads shorter than n, pool without pooling. */
	memset(ws, 0xab, wsb);
	shape.metric = KVC_METRIC_L1;
	assert_int_equal(kvc_prefill_plan(&gpu, &shape, 50, 3, &pp), 0);
	assert_true(pp.ws_bytes <= wsb);
	pa = (struct kvc_prefill_args){
		.kv = cache_kargs(&c, true),
		.tables = addr(c.tables),
		.lens = addr(c.lens),
		.q = addr(q),
		.out = addr(out),
		.ws = addr(ws),
		.table_stride = c.stride,
		.nr_heads = 2,
		.kv_heads = 1,
		.group = 2,
		.n = 50,
		.metric = KVC_METRIC_L1,
		.pool_kernel = 3,
		.max_len = c.max_len,
		.scale = 0.125f,
	};
	l = pp.attn;
	l.grid[0]++;
	REFUSED("kvc_prefill_attn_f16_64", &l, &pa);
	l = pp.metric;
	l.grid[0]--;
	REFUSED("kvc_prefill_metric_f16_64", &l, &pa);
	l = pp.pool;
	l.threads = 128;
	REFUSED("kvc_prefill_pool", &l, &pa);
	/* Head 0 holds 100 KVs, fewer than n. */
	{
		struct kvc_prefill_plan p101;

		assert_int_equal(kvc_prefill_plan(&gpu, &shape, 101, 3, &p101),
				 0);
		pa.n = 101;
		REFUSED("kvc_prefill_attn_f16_64", &p101.attn, &pa);
		pa.n = 50;
	}
	pa.pool_kernel = 1;
	REFUSED("kvc_prefill_pool", &pp.pool, &pa);
	pa.pool_kernel = 3;
	pa.metric = KVC_METRIC_NONE;
	REFUSED("kvc_prefill_metric_f16_64", &pp.metric, &pa);
	pa.metric = KVC_METRIC_L1;
	pa.kv_heads = 3;
	REFUSED("kvc_prefill_attn_f16_64", &pp.attn, &pa);
	pa.kv_heads = 1;

	/* Row kernels and copies. */
	{
		struct kvc_cache_write_args w = {
			.kv = cache_kargs(&c, true),
			.slots = addr(ws),
			.k = addr(q),
			.v = addr(q),
			.rows = 9,
		};
		struct kvc_move_args mv = {
			.kv = cache_kargs(&c, true),
			.moves = addr(ws),
			.n = 9,
		};
		struct kvc_copy_args *cp = host(fx, sizeof(*cp));

		assert_int_equal(kvc_rows_launch(9, &l), 0);
		l.grid[0]--;
		REFUSED("kvc_cache_write", &l, &w);
		REFUSED("kvc_move_cache", &l, &mv);
		l.grid[0]++;
		l.threads = 256;
		REFUSED("kvc_cache_write", &l, &w);
		w.rows = 0;
		mv.n = 0;
		assert_int_equal(kvc_rows_launch(1, &l), 0);
		REFUSED("kvc_cache_write", &l, &w);
		REFUSED("kvc_move_cache", &l, &mv);

		cp->src_base = addr(q);
		cp->dst_base = addr(out);
		cp->bytes = 64;
		cp->n = KVC_COPY_INLINE + 1;
		assert_int_equal(kvc_copy_launch(&gpu, 1, 64, &l), 0);
		REFUSED("kvc_block_copy", &l, cp);
		cp->n = 1;
		cp->bytes = 62;
		REFUSED("kvc_block_copy", &l, cp);
		cp->bytes = 64;
		l.threads = 128;
		REFUSED("kvc_block_copy", &l, cp);
	}
#undef REFUSED
}

/* ------------------------------------------------------------------ */
/* The fake driver */

/* What the loader read of the fake device, and what it found. */
static void test_fake_load(void **state)
{
	struct fixture *fx = *state;
	const struct kvc_gpu_info *gpu = kvc_cuda_kernels_gpu(fx->k);
	struct kvc_fake_counts counts;

	assert_ptr_equal(kvc_cuda_kernels_driver(fx->k), fx->drv);
	EXPECT_U64(gpu->sms, fake_cfg.sms);
	EXPECT_U64(gpu->smem_optin, fake_cfg.smem_optin);
	EXPECT_U64(gpu->cc_major, 9);
	EXPECT_U64(gpu->l2_bytes, fake_cfg.l2_bytes);
	EXPECT_U64(gpu->peak_bytes_per_s, kvc_gpu_peak_bw(2619000, 5120));
	kvc_fake_counts(&counts);
	assert_true(counts.modules >= 1);
	EXPECT_U64(counts.launches, 0);
	EXPECT_U64(counts.violations, 0);
	/* Nothing queued for empty work. */
	{
		struct kvc_cache_write_args w = { .rows = 0 };
		struct kvc_move_args mv = { .n = 0 };
		struct kvc_copy_args *cp = host(fx, sizeof(*cp));

		assert_int_equal(kvc_cuda_cache_write(fx->k, NULL, &w), 0);
		assert_int_equal(kvc_cuda_move(fx->k, NULL, &mv), 0);
		assert_int_equal(kvc_cuda_block_copy(fx->k, NULL, cp), 0);
		EXPECT_U64(kvc_fake_launches(NULL), 0);
	}
}

/* Every kernel through its launcher, against the references. */
static void test_fake_kernels(void **state)
{
	struct fixture *fx = *state;
	static const struct kvc_observe obs = { KVC_METRIC_L1, 6, 1, 3 };
	uint32_t lens[6];
	struct cache c;

	/* 24 SMs: partitions of 128 tokens over heads of up to 600. */
	ragged(&fx->rng, lens, 6, 0, 600);
	cache_init(fx, &c, KVC_DTYPE_F16, 128, 16, 6, lens, false);
	run_decode(fx, &fx->gpu, &c, 3, 3, KVC_METRIC_L2, 4);
	EXPECT_U64(kvc_fake_launches("kvc_decode_part_f16_128"), 1);
	EXPECT_U64(kvc_fake_launches("kvc_decode_reduce_128"), 1);
	release_all(fx);

	ragged(&fx->rng, lens, 4, 20, 90);
	cache_init(fx, &c, KVC_DTYPE_BF16, 64, 8, 4, lens, true);
	run_prefill(fx, &c, 2, 4, 20, &obs, true);
	EXPECT_U64(kvc_fake_launches("kvc_prefill_attn_bf16_64"), 1);
	EXPECT_U64(kvc_fake_launches("kvc_prefill_metric_bf16_64"), 1);
	EXPECT_U64(kvc_fake_launches("kvc_prefill_pool"), 1);
	release_all(fx);

	test_cache_write(state);
	test_move(state);
	test_block_copy(state);
	EXPECT_U64(kvc_fake_launches("kvc_cache_write"), 6);
	EXPECT_U64(kvc_fake_launches("kvc_move_cache"), 4);
	EXPECT_U64(kvc_fake_launches("kvc_block_copy"), 6);
	{
		struct kvc_fake_counts counts;

		kvc_fake_counts(&counts);
		EXPECT_U64(counts.violations, 0);
	}
}

/* A decode step's arguments and plan on the fake, for the checks below. */
static void fake_decode_args(struct fixture *fx, struct cache *c,
			     struct kvc_decode_args *a,
			     struct kvc_decode_plan *plan)
{
	struct kvc_attn_shape shape = {
		.nr_heads = 2,
		.kv_heads = 2,
		.group = 2,
		.head_dim = 64,
		.block_size = 16,
		.dtype = KVC_DTYPE_F32,
		.metric = KVC_METRIC_L2,
	};
	uint32_t lens[2] = { 200, 300 };
	float *q, *out, *ws;

	cache_init(fx, c, KVC_DTYPE_F32, 64, 16, 2, lens, false);
	shape.max_len = c->max_len;
	assert_int_equal(kvc_decode_plan(&fx->gpu, &shape, plan), 0);
	q = mem(fx, 2 * 2 * 64 * sizeof(float));
	out = mem(fx, 2 * 2 * 64 * sizeof(float));
	ws = mem(fx, plan->ws_bytes);
	fill_random(&fx->rng, q, 2 * 2 * 64, 1.0f);
	memset(out, 0xab, 2 * 2 * 64 * sizeof(float));
	*a = (struct kvc_decode_args){
		.kv = cache_kargs(c, true),
		.tables = addr(c->tables),
		.lens = addr(c->lens),
		.q = addr(q),
		.out = addr(out),
		.ws = addr(ws),
		.table_stride = c->stride,
		.nr_heads = 2,
		.group = 2,
		.metric = KVC_METRIC_L2,
		.part_tokens = plan->part_tokens,
		.nr_parts = plan->nr_parts,
		.max_len = c->max_len,
		.scale = 0.125f,
	};
}

/* Arguments that do not match the plan: -EINVAL, nothing queued. */
static void test_fake_bad_args(void **state)
{
	struct fixture *fx = *state;
	struct kvc_decode_plan plan, p2;
	struct kvc_prefill_plan pp;
	struct kvc_decode_args a, b;
	struct kvc_prefill_args pa;
	struct kvc_copy_args *cp = host(fx, sizeof(*cp));
	struct kvc_cache_write_args w = { .rows = 1 };
	struct kvc_move_args mv = { .n = 1 };
	struct kvc_attn_shape shape = {
		.nr_heads = 2,
		.kv_heads = 2,
		.group = 2,
		.head_dim = 64,
		.block_size = 16,
		.max_len = 300,
		.dtype = KVC_DTYPE_F32,
		.metric = KVC_METRIC_L2,
	};
	struct cache c;

	fake_decode_args(fx, &c, &a, &plan);

#define EINVAL_DECODE(field, value)                                       \
	do {                                                              \
		b = a;                                                    \
		b.field = value;                                          \
		assert_int_equal(kvc_cuda_decode(fx->k, NULL, &b, &plan), \
				 -EINVAL);                                \
	} while (0)
	EINVAL_DECODE(nr_parts, plan.nr_parts + 1);
	EINVAL_DECODE(part_tokens, plan.part_tokens + 16);
	EINVAL_DECODE(nr_heads, 1);
	EINVAL_DECODE(group, 3);
	EINVAL_DECODE(group, 0);
	EINVAL_DECODE(kv.head_dim, 128);
	EINVAL_DECODE(kv.head_dim, 60);
	EINVAL_DECODE(kv.dtype, 3);
	EINVAL_DECODE(kv.block_size, 0);
	EINVAL_DECODE(kv.base, 0);
	EINVAL_DECODE(ws, 0);
	EINVAL_DECODE(max_len, plan.nr_parts * plan.part_tokens + 1);
	EINVAL_DECODE(metric, 5);
	EINVAL_DECODE(metric, KVC_METRIC_NONE); /* the workspace differs */
	EINVAL_DECODE(max_len, a.max_len - 1);
#undef EINVAL_DECODE
	assert_int_equal(kvc_cuda_decode(fx->k, NULL, NULL, &plan), -EINVAL);
	assert_int_equal(kvc_cuda_decode(fx->k, NULL, &a, NULL), -EINVAL);
	assert_int_equal(kvc_cuda_decode(NULL, NULL, &a, &plan), -EINVAL);
	/* A plan for a device with more shared memory than this one. */
	p2 = plan;
	p2.part.smem = fx->gpu.smem_optin + 1;
	assert_int_equal(kvc_cuda_decode(fx->k, NULL, &a, &p2), -EINVAL);

	/* Prefill: the metric launch must match the arguments' metric. */
	assert_int_equal(kvc_prefill_plan(&fx->gpu, &shape, 10, 3, &pp), 0);
	pa = (struct kvc_prefill_args){
		.kv = a.kv,
		.tables = a.tables,
		.lens = a.lens,
		.q = a.q,
		.out = a.out,
		.ws = a.ws,
		.table_stride = a.table_stride,
		.nr_heads = 2,
		.kv_heads = 2,
		.group = 2,
		.n = 10,
		.metric = KVC_METRIC_NONE,
		.pool_kernel = 3,
		.max_len = 300,
		.scale = 0.125f,
	};
	assert_int_equal(kvc_cuda_prefill(fx->k, NULL, &pa, &pp), -EINVAL);
	pa.metric = KVC_METRIC_L2;
	pa.pool_kernel = 0;
	assert_int_equal(kvc_cuda_prefill(fx->k, NULL, &pa, &pp), -EINVAL);
	pa.pool_kernel = 3;
	/* Another n: another grid, or at least another workspace. */
	pa.n = 11;
	assert_int_equal(kvc_cuda_prefill(fx->k, NULL, &pa, &pp), -EINVAL);
	pa.n = 10 + kvc_prefill_q_tile(64);
	assert_int_equal(kvc_cuda_prefill(fx->k, NULL, &pa, &pp), -EINVAL);
	pa.n = 10;
	pa.max_len = 301;
	assert_int_equal(kvc_cuda_prefill(fx->k, NULL, &pa, &pp), -EINVAL);
	pa.max_len = 300;
	pa.n = 10;
	pa.kv_heads = 3;
	assert_int_equal(kvc_cuda_prefill(fx->k, NULL, &pa, &pp), -EINVAL);

	/* Rows and copies. */
	assert_int_equal(kvc_cuda_cache_write(fx->k, NULL, &w), -EINVAL);
	assert_int_equal(kvc_cuda_move(fx->k, NULL, &mv), -EINVAL);
	cp->src_base = a.q;
	cp->dst_base = a.out;
	cp->bytes = 16;
	cp->n = KVC_COPY_INLINE + 1;
	assert_int_equal(kvc_cuda_block_copy(fx->k, NULL, cp), -EINVAL);
	cp->n = 1;
	cp->bytes = 6;
	assert_int_equal(kvc_cuda_block_copy(fx->k, NULL, cp), -EINVAL);
	EXPECT_U64(kvc_fake_launches(NULL), 0);
	assert_memory_equal(kvc_cuda_kernels_gpu(fx->k), &fx->gpu,
			    sizeof(fx->gpu));
}

/* Launches the driver refuses, and a kernel the device would fail. */
static void test_fake_launch_faults(void **state)
{
	struct fixture *fx = *state;
	struct kvc_decode_plan plan;
	struct kvc_decode_args a;
	struct kvc_fake_counts counts;
	struct cache c;
	uint8_t *out0;

	fake_decode_args(fx, &c, &a, &plan);
	out0 = dup_host(fx, (void *)(uintptr_t)a.out, 2 * 2 * 64 * 4);

	/* The first launch refused: nothing ran. */
	kvc_fake_fail(KVC_FAKE_LAUNCH_KERNEL, 1, KVC_CUDA_ERROR_OUT_OF_MEMORY);
	assert_int_equal(kvc_cuda_decode(fx->k, NULL, &a, &plan), -ENOMEM);
	assert_memory_equal((void *)(uintptr_t)a.out, out0, 2 * 2 * 64 * 4);
	/* The reduce refused: the error comes back. */
	kvc_fake_fail(KVC_FAKE_LAUNCH_KERNEL, 2, KVC_CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(kvc_cuda_decode(fx->k, NULL, &a, &plan), -EINVAL);
	assert_memory_equal((void *)(uintptr_t)a.out, out0, 2 * 2 * 64 * 4);
	/* Now it runs. */
	assert_int_equal(kvc_cuda_decode(fx->k, NULL, &a, &plan), 0);
	assert_memory_not_equal((void *)(uintptr_t)a.out, out0, 2 * 2 * 64 * 4);

	/* A head longer than max_len: the launcher cannot see it (lengths
	 * are in device memory), the kernel refuses when it runs, and the
	 * context breaks for good, as a failed launch breaks a device's. */
	c.lens[1] = c.max_len + 1;
	assert_int_equal(kvc_cuda_decode(fx->k, NULL, &a, &plan), -EIO);
	kvc_fake_counts(&counts);
	assert_true(counts.violations >= 1);
	c.lens[1] = c.max_len;
	assert_int_equal(kvc_cuda_decode(fx->k, NULL, &a, &plan), -EIO);
}

/* Failures while loading leave nothing loaded. */
static void test_fake_load_faults(void **state)
{
	static const struct {
		enum kvc_fake_fn fn;
		uint64_t nth;
		kvc_cu_result r;
		int err;
	} faults[] = {
		{ KVC_FAKE_DEVICE_ATTRIBUTE, 1, KVC_CUDA_ERROR_INVALID_DEVICE,
		  -ENODEV },
		{ KVC_FAKE_DEVICE_ATTRIBUTE, 7, KVC_CUDA_ERROR_INVALID_VALUE,
		  -EINVAL },
		{ KVC_FAKE_MODULE_LOAD, 1, KVC_CUDA_ERROR_OUT_OF_MEMORY,
		  -ENOMEM },
		{ KVC_FAKE_MODULE_GET_FUNCTION, 1, KVC_CUDA_ERROR_OUT_OF_MEMORY,
		  -ENOMEM },
		{ KVC_FAKE_MODULE_GET_FUNCTION, 20,
		  KVC_CUDA_ERROR_INVALID_VALUE, -EINVAL },
		{ KVC_FAKE_FUNC_SET_ATTRIBUTE, 3, KVC_CUDA_ERROR_INVALID_VALUE,
		  -EINVAL },
	};
	struct fixture *fx = *state;
	struct kvc_fake_counts before, after;
	struct kvc_cuda_kernels *k;
	size_t i;
	int err;

	kvc_fake_counts(&before);
	for (i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		kvc_fake_fail(faults[i].fn, faults[i].nth, faults[i].r);
		k = NULL;
		err = kvc_cuda_kernels_load(fx->drv, 0, &k);
		if (err != faults[i].err)
			fail_msg(
				"fault %zu: kvc_cuda_kernels_load() = %d, expected %d",
				i, err, faults[i].err);
		assert_null(k);
		assert_true(kvc_last_error()[0]);
		kvc_fake_fail(faults[i].fn, 0, 0);
		kvc_fake_counts(&after);
		EXPECT_U64(after.modules, before.modules);
	}
	assert_int_equal(kvc_cuda_kernels_load(NULL, 0, &k), -EINVAL);
	assert_int_equal(kvc_cuda_kernels_load(fx->drv, 0, NULL), -EINVAL);
}

/* A device without the kernels: -ENODEV, nothing held. */
static void test_fake_no_kernels(void **state)
{
	struct kvc_fake_config cfg = fake_cfg;
	const struct kvc_cuda_driver *drv;
	struct kvc_fake_counts counts;
	struct kvc_cuda_kernels *k = NULL;
	kvc_cu_context ctx;

	cfg.no_kernels = true;
	drv = kvc_fake_driver(&cfg);
	assert_non_null(drv);
	assert_int_equal(drv->cuInit(0), 0);
	assert_int_equal(drv->cuDevicePrimaryCtxRetain(&ctx, 0), 0);
	assert_int_equal(drv->cuCtxPushCurrent(ctx), 0);
	assert_int_equal(kvc_cuda_kernels_load(drv, 0, &k), -ENODEV);
	assert_null(k);
	kvc_fake_counts(&counts);
	EXPECT_U64(counts.modules, 0);
	assert_int_equal(drv->cuCtxPopCurrent(&ctx), 0);
	assert_int_equal(drv->cuDevicePrimaryCtxRelease(0), 0);
}

/*
 * The fake under the real driver's name: it loads the embedded images
 * when there are some (-ENODEV without), and only on compute capability
 * 8.0 or later; a driver without the launch calls loads nothing.
 */
static void test_fake_as_real(void **state)
{
	struct kvc_fake_config cfg = fake_cfg;
	struct kvc_cuda_kernels *k = NULL;
	struct kvc_fake_counts counts;
	struct kvc_cuda_driver real;
	kvc_cu_context ctx;
	uint32_t cc;

	assert_int_equal(kvc_cuda_kernels_built(), kvc_cuda_nr_images > 0);
	for (cc = 7; cc <= 8; cc++) {
		cfg.cc_major = cc;
		real = *kvc_fake_driver(&cfg);
		real.name = "cuda";
		assert_int_equal(real.cuInit(0), 0);
		assert_int_equal(real.cuDevicePrimaryCtxRetain(&ctx, 0), 0);
		assert_int_equal(real.cuCtxPushCurrent(ctx), 0);
		k = NULL;
		if (!kvc_cuda_kernels_built() || cc < 8) {
			assert_int_equal(kvc_cuda_kernels_load(&real, 0, &k),
					 -ENODEV);
			assert_null(k);
		} else {
			assert_int_equal(kvc_cuda_kernels_load(&real, 0, &k),
					 0);
			kvc_fake_counts(&counts);
			EXPECT_U64(counts.modules, kvc_cuda_nr_images);
			kvc_cuda_kernels_unload(k);
		}
		/* On the fake, any device loads. */
		real.name = "cuda-fake";
		assert_int_equal(kvc_cuda_kernels_load(&real, 0, &k), 0);
		kvc_cuda_kernels_unload(k);
		real.cuLaunchKernel = NULL;
		assert_int_equal(kvc_cuda_kernels_load(&real, 0, &k), -ENODEV);
		kvc_fake_counts(&counts);
		EXPECT_U64(counts.modules, 0);
		assert_int_equal(real.cuCtxPopCurrent(&ctx), 0);
		assert_int_equal(real.cuDevicePrimaryCtxRelease(0), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known),
		cmocka_unit_test_setup_teardown(test_decode_partitions, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_decode_h100, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_prefill, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefill_no_meta, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cache_write, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cache_write_vs_runtime,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_copy, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fake_load, setup_fake,
						teardown),
		cmocka_unit_test_setup_teardown(test_fake_kernels, setup_fake,
						teardown),
		cmocka_unit_test_setup_teardown(test_fake_bad_args, setup_fake,
						teardown),
		cmocka_unit_test_setup_teardown(test_fake_launch_faults,
						setup_fake, teardown),
		cmocka_unit_test_setup_teardown(test_fake_load_faults,
						setup_fake, teardown),
		cmocka_unit_test(test_fake_no_kernels),
		cmocka_unit_test(test_fake_as_real),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
