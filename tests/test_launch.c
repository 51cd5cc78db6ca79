/* Description: launch plans of the CUDA kernels on H100-, A100-like and tiny devices: decode partitions (cover max_len, whole blocks, fill the SMs, fit shared memory, at most 1024), prefill, row and copy grids, workspace sizes against the layouts, peak bandwidth, and every bad input refused with nothing written */
// SPDX-License-Identifier: MIT
/*
 * Tests of kernels/launch.h. The planner's rules are checked on a sweep of
 * shapes over several devices, each rule as launch.h states it, so a
 * change of the layout headers (threads, shared memory) keeps the tests
 * meaningful: they read the sizes from the same functions.
 */
#include <errno.h>
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

#include "../kernels/args.h"
#include "../kernels/decode_layout.h"
#include "../kernels/launch.h"
#include "../kernels/prefill_layout.h"

#define NR_GPUS 5
#define POISON 0xa5

enum { H100, A100, TINY, WIDE, SQUEEZED };

/**
 * struct fixture - The devices the plans are made for.
 * @gpu: an H100 SXM, an A100, a tiny device (2 SMs, shared memory for
 *       a partition of 256 tokens of 1 x 64), a very wide one (2000 SMs),
 *       and one whose shared memory holds a partition of 64 tokens of
 *       4 x 128 at most.
 * @name: their names, for messages.
 */
struct fixture {
	struct kvc_gpu_info gpu[NR_GPUS];
	const char *name[NR_GPUS];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	fx->gpu[H100] = (struct kvc_gpu_info){
		.sms = 132,
		.smem_optin = 227 << 10,
		.cc_major = 9,
		.l2_bytes = 50ull << 20,
		.peak_bytes_per_s = kvc_gpu_peak_bw(2619000, 5120),
	};
	fx->gpu[A100] = (struct kvc_gpu_info){
		.sms = 108,
		.smem_optin = 163 << 10,
		.cc_major = 8,
		.l2_bytes = 40ull << 20,
		.peak_bytes_per_s = kvc_gpu_peak_bw(1593000, 5120),
	};
	fx->gpu[TINY] = (struct kvc_gpu_info){
		.sms = 2,
		.smem_optin = kvc_decode_part_smem(KVC_DTYPE_F16, 1, 256, 64),
		.cc_major = 8,
		.cc_minor = 6,
	};
	fx->gpu[WIDE] = (struct kvc_gpu_info){
		.sms = 2000,
		.smem_optin = 227 << 10,
		.cc_major = 10,
	};
	fx->gpu[SQUEEZED] = (struct kvc_gpu_info){
		.sms = 64,
		.smem_optin = kvc_decode_part_smem(KVC_DTYPE_F16, 4, 64, 128),
		.cc_major = 8,
	};
	fx->name[H100] = "H100";
	fx->name[A100] = "A100";
	fx->name[TINY] = "tiny";
	fx->name[WIDE] = "wide";
	fx->name[SQUEEZED] = "squeezed";
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

static uint64_t round_up(uint64_t a, uint64_t b)
{
	return div_up(a, b) * b;
}

static struct kvc_attn_shape good_shape(void)
{
	return (struct kvc_attn_shape){
		.nr_heads = 32,
		.kv_heads = 8,
		.group = 4,
		.head_dim = 128,
		.block_size = 16,
		.max_len = 4096,
		.dtype = KVC_DTYPE_F16,
		.metric = KVC_METRIC_L2,
	};
}

/* Whether @n bytes at @p all still hold POISON. */
static bool untouched(const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i] != POISON)
			return false;
	return true;
}

/* ------------------------------------------------------------------ */
/* head_dim variants, bandwidth */

static void test_kernel_hd(void **state)
{
	static const uint32_t ok[][2] = {
		{ 8, 64 },    { 16, 64 },   { 64, 64 },
		{ 72, 128 },  { 96, 128 },  { 128, 128 },
		{ 136, 256 }, { 192, 256 }, { 256, 256 },
	};
	static const uint32_t bad[] = { 0,   1,	  4,   12,  63,
					100, 257, 264, 512, UINT32_MAX };
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		EXPECT_U64(kvc_kernel_hd(ok[i][0]), ok[i][1]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		EXPECT_U64(kvc_kernel_hd(bad[i]), 0);
}

static void test_peak_bw(void **state)
{
	/* H100 SXM: 2 x 2.619 GHz x 640 bytes = 3.35 TB/s. */
	EXPECT_U64(kvc_gpu_peak_bw(2619000, 5120), 3352320000000ull);
	/* A100 80 GB: 2 x 1.593 GHz x 640 bytes = 2.04 TB/s. */
	EXPECT_U64(kvc_gpu_peak_bw(1593000, 5120), 2039040000000ull);
	EXPECT_U64(kvc_gpu_peak_bw(1, 8), 2000);
	EXPECT_U64(kvc_gpu_peak_bw(0, 5120), 0);
	EXPECT_U64(kvc_gpu_peak_bw(2619000, 0), 0);
	/* 4.3e9 kHz x 4.3e9 bits does not fit: saturates. */
	EXPECT_U64(kvc_gpu_peak_bw(UINT32_MAX, UINT32_MAX), UINT64_MAX);
}

/* ------------------------------------------------------------------ */
/* Decode */

/* Partitions the reduce of @s can merge on @gpu (0: none). */
static uint32_t reduce_cap(const struct kvc_gpu_info *gpu,
			   const struct kvc_attn_shape *s, uint32_t hd)
{
	uint32_t m;

	for (m = 1024; m; m--)
		if (kvc_decode_reduce_smem(s->group, m, hd) <= gpu->smem_optin)
			return m;
	return 0;
}

/* A partition of @pt tokens can be planned: at most 2^20 tokens (the
 * planner's limit), within shared memory. */
static bool part_fits(const struct kvc_gpu_info *gpu,
		      const struct kvc_attn_shape *s, uint32_t hd, uint64_t pt)
{
	return pt <= (1u << 20) &&
	       kvc_decode_part_smem(s->dtype, s->group, (uint32_t)pt, hd) <=
		       gpu->smem_optin;
}

/**
 * struct sweep_counts - Which rules a sweep exercised.
 * @plans: plans made.
 * @refused: shapes refused (shared memory).
 * @multi: plans with several partitions.
 * @shrunk: partitions shorter than 128 tokens for shared memory.
 * @unfilled: plans whose grid cannot fill the device.
 * @single: plans with one partition covering every head.
 */
struct sweep_counts {
	uint64_t plans;
	uint64_t refused;
	uint64_t multi;
	uint64_t shrunk;
	uint64_t unfilled;
	uint64_t single;
};

/*
 * Every rule of kvc_decode_plan() for one shape: a refusal only when no
 * partition fits, and for a plan, the partitions, the launches, the
 * workspace, and that the partitions are as long as the rules allow.
 */
static void check_decode(const struct kvc_gpu_info *gpu, const char *gname,
			 const struct kvc_attn_shape *s,
			 struct sweep_counts *cnt)
{
	uint32_t hd = kvc_kernel_hd(s->head_dim), bs = s->block_size, cap;
	uint64_t floor, cover, pt, parts, need, p0;
	uint64_t target = (uint64_t)KVC_DECODE_CTAS_PER_SM * gpu->sms;
	struct kvc_decode_plan p;
	int err;

	memset(&p, POISON, sizeof(p));
	err = kvc_decode_plan(gpu, s, &p);
	cap = reduce_cap(gpu, s, hd);
	floor = round_up(s->max_len < 128 ? s->max_len : 128, bs);
	cover = round_up(s->max_len, bs);
	if (err) {
		if (err != -EINVAL)
			fail_msg("%s: kvc_decode_plan() = %d", gname, err);
		assert_true(untouched(&p, sizeof(p)));
		/* Refused only when no partition length fits. */
		need = cap ? round_up(div_up(s->max_len, cap), bs) : 0;
		if (cap && part_fits(gpu, s, hd, bs) &&
		    part_fits(gpu, s, hd, need))
			fail_msg(
				"%s: heads %u group %u hd %u bs %u len %u refused: %s",
				gname, s->nr_heads, s->group, s->head_dim, bs,
				s->max_len, kvc_last_error());
		cnt->refused++;
		return;
	}
	cnt->plans++;
	pt = p.part_tokens;
	parts = p.nr_parts;
	EXPECT_U64(p.hd, hd);
	/* Whole blocks, covering the longest head, no empty partition. */
	assert_true(pt >= bs && pt % bs == 0);
	EXPECT_U64(parts, div_up(s->max_len, pt));
	assert_true(pt <= cover);
	assert_true(parts <= 1024 && parts <= cap);
	/* Launches. */
	EXPECT_U64(p.part.grid[0], parts);
	EXPECT_U64(p.part.grid[1], s->nr_heads);
	EXPECT_U64(p.part.grid[2], 1);
	EXPECT_U64(p.part.threads, KVC_DECODE_THREADS);
	EXPECT_U64(p.part.smem,
		   kvc_decode_part_smem(s->dtype, s->group, (uint32_t)pt, hd));
	assert_true(p.part.smem <= gpu->smem_optin);
	EXPECT_U64(p.reduce.grid[0], s->nr_heads);
	EXPECT_U64(p.reduce.grid[1], 1);
	EXPECT_U64(p.reduce.grid[2], 1);
	EXPECT_U64(p.reduce.threads, KVC_DECODE_REDUCE_THREADS);
	EXPECT_U64(p.reduce.smem,
		   kvc_decode_reduce_smem(s->group, (uint32_t)parts, hd));
	assert_true(p.reduce.smem <= gpu->smem_optin);
	EXPECT_U64(p.ws_bytes,
		   4 * kvc_decode_ws_layout(s->nr_heads, s->group,
					    (uint32_t)parts, s->head_dim,
					    s->max_len, s->metric)
				   .floats);
	/* Never shorter than 128 tokens unless shared memory says so. */
	if (pt < floor) {
		assert_false(part_fits(gpu, s, hd, pt + bs));
		cnt->shrunk++;
	}
	/* Split no further than twice what fills the device. */
	p0 = div_up(target, s->nr_heads);
	if (pt > floor && pt + bs <= (1u << 20) && part_fits(gpu, s, hd, pt) &&
	    parts > 2 * p0 && parts > 1)
		fail_msg("%s: heads %u len %u bs %u: %llu parts of %llu", gname,
			 s->nr_heads, s->max_len, bs, (unsigned long long)parts,
			 (unsigned long long)pt);
	/* The grid fills the device, less the blocks' rounding, whenever
	 * some allowed length does. */
	if (part_fits(gpu, s, hd, floor) && div_up(s->max_len, floor) <= cap &&
	    s->nr_heads * div_up(s->max_len, floor) >= target)
		assert_true(2 * s->nr_heads * parts >= target);
	if (s->nr_heads * parts < target)
		cnt->unfilled++;
	if (parts > 1)
		cnt->multi++;
	if (pt == cover)
		cnt->single++;
}

static void test_decode_sweep(void **state)
{
	static const uint32_t heads[] = {
		1, 2, 8, 33, 64, 132, 264, 1024, 65535
	};
	static const uint32_t groups[] = { 1, 3, 4, 16 };
	static const uint32_t dims[] = { 8, 64, 120, 128, 256 };
	static const uint32_t blocks[] = { 1, 16, 32, 48 };
	static const uint32_t lens[] = { 1,	   15,	     100,	128,
					 129,	   1000,     4096,	32769,
					 1u << 20, 1u << 24, UINT32_MAX };
	struct fixture *fx = *state;
	struct sweep_counts cnt[NR_GPUS];
	struct kvc_attn_shape s;
	size_t g, h, q, d, b, l;
	uint32_t k = 0;

	memset(cnt, 0, sizeof(cnt));
	for (g = 0; g < NR_GPUS; g++)
		for (h = 0; h < sizeof(heads) / sizeof(heads[0]); h++)
			for (q = 0; q < sizeof(groups) / sizeof(groups[0]); q++)
				for (d = 0; d < sizeof(dims) / sizeof(dims[0]);
				     d++)
					for (b = 0;
					     b <
					     sizeof(blocks) / sizeof(blocks[0]);
					     b++)
						for (l = 0;
						     l <
						     sizeof(lens) /
							     sizeof(lens[0]);
						     l++, k++) {
							s = (struct
							     kvc_attn_shape){
								.nr_heads =
									heads[h],
								.kv_heads = 1,
								.group = groups
									[q],
								.head_dim =
									dims[d],
								.block_size =
									blocks[b],
								.max_len =
									lens[l],
								.dtype = (enum kvc_dtype)(
									k % 3),
								.metric = (enum kvc_metric_kind)(
									k % 4),
							};
							check_decode(
								&fx->gpu[g],
								fx->name[g], &s,
								&cnt[g]);
						}
	/* Every rule was exercised where it can be. */
	for (g = 0; g < NR_GPUS; g++) {
		assert_true(cnt[g].plans > 0);
		assert_true(cnt[g].multi > 0);
		assert_true(cnt[g].single > 0);
		assert_true(cnt[g].unfilled > 0);
	}
	for (g = 0; g < NR_GPUS; g++)
		assert_true(cnt[g].refused > 0);
	/* Where a partition's shared memory grows with its length. */
	if (kvc_decode_part_smem(KVC_DTYPE_F16, 4, 128, 128) >
	    kvc_decode_part_smem(KVC_DTYPE_F16, 4, 64, 128))
		assert_true(cnt[SQUEEZED].shrunk > 0);
}

static void plan_ok(const struct kvc_gpu_info *gpu,
		    const struct kvc_attn_shape *s, struct kvc_decode_plan *p)
{
	int err = kvc_decode_plan(gpu, s, p);

	if (err)
		fail_msg("kvc_decode_plan() = %d: %s", err, kvc_last_error());
}

static void expect_decode_einval(const struct kvc_gpu_info *gpu,
				 const struct kvc_attn_shape *s,
				 const char *what);

/* Worked examples of the rules, by hand. */
static void test_decode_examples(void **state)
{
	struct fixture *fx = *state;
	struct kvc_attn_shape s = good_shape();
	struct kvc_decode_plan p;
	struct kvc_gpu_info gpu;

	/* 32 heads on 132 SMs, four CTAs each: 17 partitions at least;
	 * 4096 / 17 -> 241 -> 256 tokens, 16 partitions, 512 CTAs (0.970 of
	 * 4 x 132); no P up to 34 spreads more evenly. */
	plan_ok(&fx->gpu[H100], &s, &p);
	EXPECT_U64(p.hd, 128);
	EXPECT_U64(p.part_tokens, 256);
	EXPECT_U64(p.nr_parts, 16);
	/* 512 heads: 2 partitions (1024 CTAs, 0.970 of 8 x 132) spread as
	 * evenly as 3 or 4, and the fewest win. */
	s.nr_heads = 512;
	plan_ok(&fx->gpu[H100], &s, &p);
	EXPECT_U64(p.part_tokens, 2048);
	EXPECT_U64(p.nr_parts, 2);
	/* 528 heads fill four CTAs a multiprocessor exactly: one partition. */
	s.nr_heads = 528;
	plan_ok(&fx->gpu[H100], &s, &p);
	EXPECT_U64(p.part_tokens, 4096);
	EXPECT_U64(p.nr_parts, 1);
	/* Short heads: 100 tokens round up to 7 blocks of 16. */
	s.nr_heads = 1;
	s.kv_heads = 1;
	s.max_len = 100;
	plan_ok(&fx->gpu[H100], &s, &p);
	EXPECT_U64(p.part_tokens, 112);
	EXPECT_U64(p.nr_parts, 1);
	/* Never under 128: one head of 1000 tokens, 8 partitions of 128. */
	s.max_len = 1000;
	plan_ok(&fx->gpu[H100], &s, &p);
	EXPECT_U64(p.part_tokens, 128);
	EXPECT_U64(p.nr_parts, 8);
	/* Block size 48: the floor is 144. */
	s.block_size = 48;
	plan_ok(&fx->gpu[H100], &s, &p);
	EXPECT_U64(p.part_tokens, 144);
	EXPECT_U64(p.nr_parts, 7);
	/* Shared memory shortens: on a device that holds 384 tokens of 4 x
	 * 128, where the grid alone would want 1360 (4 CTAs on 2 SMs). */
	s.block_size = 16;
	s.max_len = 4096;
	gpu = fx->gpu[TINY];
	gpu.smem_optin = kvc_decode_part_smem(KVC_DTYPE_F16, 4, 384, 128);
	plan_ok(&gpu, &s, &p);
	if (kvc_decode_part_smem(KVC_DTYPE_F16, 4, 400, 128) > gpu.smem_optin) {
		EXPECT_U64(p.part_tokens, 384);
		EXPECT_U64(p.nr_parts, 11);
	} else {
		/* The layout's shared memory does not grow with length:
		 * 8 CTAs on 2 SMs, 8 partitions of 512. */
		EXPECT_U64(p.part_tokens, 512);
		EXPECT_U64(p.nr_parts, 8);
	}
	/* 4000 CTAs wanted from one head of 2^20: 4096 partitions, capped
	 * at 1024 of 1024 tokens. */
	s.max_len = 1u << 20;
	s.group = 1;
	s.head_dim = 64;
	plan_ok(&fx->gpu[WIDE], &s, &p);
	EXPECT_U64(p.part_tokens, 1024);
	EXPECT_U64(p.nr_parts, 1024);
	/* 2^30 tokens need partitions of 2^20, the longest there are,
	 * where shared memory holds them. */
	s.max_len = 1u << 30;
	if (kvc_decode_part_smem(KVC_DTYPE_F16, 1, 1u << 20, 64) <=
	    fx->gpu[H100].smem_optin) {
		plan_ok(&fx->gpu[H100], &s, &p);
		EXPECT_U64(p.part_tokens, 1u << 20);
		EXPECT_U64(p.nr_parts, 1024);
	} else {
		expect_decode_einval(&fx->gpu[H100], &s, "2^30 tokens");
	}
	/* Partitions longer than that: refused. */
	memset(&p, POISON, sizeof(p));
	s.max_len = UINT32_MAX;
	assert_int_equal(kvc_decode_plan(&fx->gpu[H100], &s, &p), -EINVAL);
	assert_true(untouched(&p, sizeof(p)));
}

static void expect_decode_einval(const struct kvc_gpu_info *gpu,
				 const struct kvc_attn_shape *s,
				 const char *what)
{
	struct kvc_decode_plan p;
	int err;

	memset(&p, POISON, sizeof(p));
	err = kvc_decode_plan(gpu, s, &p);
	if (err != -EINVAL)
		fail_msg("%s: kvc_decode_plan() = %d, expected -EINVAL", what,
			 err);
	if (!untouched(&p, sizeof(p)))
		fail_msg("%s: the plan was written", what);
	if (!kvc_last_error()[0])
		fail_msg("%s: no message", what);
}

/* Shapes the kernels do not take, one field at a time. */
static void bad_shapes(void (*check)(const struct kvc_gpu_info *,
				     const struct kvc_attn_shape *,
				     const char *),
		       const struct kvc_gpu_info *gpu)
{
	struct kvc_attn_shape s;

#define BAD_FIELD(field, value)                      \
	do {                                         \
		s = good_shape();                    \
		s.field = value;                     \
		check(gpu, &s, #field " = " #value); \
	} while (0)
	BAD_FIELD(group, 0);
	BAD_FIELD(group, 17);
	BAD_FIELD(head_dim, 0);
	BAD_FIELD(head_dim, 4);
	BAD_FIELD(head_dim, 12);
	BAD_FIELD(head_dim, 257);
	BAD_FIELD(head_dim, 264);
	BAD_FIELD(nr_heads, 0);
	BAD_FIELD(nr_heads, 65536);
	BAD_FIELD(nr_heads, 36);
	BAD_FIELD(kv_heads, 0);
	BAD_FIELD(kv_heads, 3);
	BAD_FIELD(dtype, (enum kvc_dtype)3);
	BAD_FIELD(dtype, (enum kvc_dtype) - 1);
	BAD_FIELD(metric, (enum kvc_metric_kind)4);
	BAD_FIELD(block_size, 0);
	BAD_FIELD(max_len, 0);
#undef BAD_FIELD
}

static void test_decode_bad(void **state)
{
	struct fixture *fx = *state;
	struct kvc_attn_shape s = good_shape();
	struct kvc_gpu_info gpu = fx->gpu[H100];
	struct kvc_decode_plan p;

	bad_shapes(expect_decode_einval, &fx->gpu[H100]);
	assert_int_equal(kvc_decode_plan(NULL, &s, &p), -EINVAL);
	assert_int_equal(kvc_decode_plan(&gpu, NULL, &p), -EINVAL);
	assert_int_equal(kvc_decode_plan(&gpu, &s, NULL), -EINVAL);
	gpu.sms = 0;
	expect_decode_einval(&gpu, &s, "no SMs");
	/* Not even one block's partition fits. */
	gpu = fx->gpu[H100];
	gpu.smem_optin = 1024;
	expect_decode_einval(&gpu, &s, "1 KiB of shared memory");
}

/* ------------------------------------------------------------------ */
/* Prefill */

static void check_prefill(const struct kvc_gpu_info *gpu,
			  const struct kvc_attn_shape *s, uint32_t n,
			  uint32_t pool)
{
	uint32_t hd = kvc_kernel_hd(s->head_dim);
	bool metric = s->metric != KVC_METRIC_NONE;
	struct kvc_prefill_plan p;
	int err;

	memset(&p, POISON, sizeof(p));
	err = kvc_prefill_plan(gpu, s, n, pool, &p);
	if (kvc_prefill_attn_smem(s->group, hd) > gpu->smem_optin ||
	    (metric &&
	     kvc_prefill_metric_smem(s->group, hd) > gpu->smem_optin)) {
		assert_int_equal(err, -EINVAL);
		assert_true(untouched(&p, sizeof(p)));
		return;
	}
	if (err)
		fail_msg("kvc_prefill_plan() = %d: %s", err, kvc_last_error());
	EXPECT_U64(p.hd, hd);
	EXPECT_U64(p.attn.grid[0], div_up(n, kvc_prefill_q_tile(hd)));
	EXPECT_U64(p.attn.grid[1], s->nr_heads);
	EXPECT_U64(p.attn.grid[2], 1);
	EXPECT_U64(p.attn.threads, KVC_PREFILL_THREADS);
	EXPECT_U64(p.attn.smem, kvc_prefill_attn_smem(s->group, hd));
	if (metric) {
		EXPECT_U64(p.metric.grid[0],
			   div_up(s->max_len, kvc_prefill_k_tile(hd)));
		EXPECT_U64(p.metric.grid[1], s->nr_heads);
		EXPECT_U64(p.metric.grid[2], 1);
		EXPECT_U64(p.metric.threads, KVC_PREFILL_METRIC_THREADS);
		EXPECT_U64(p.metric.smem,
			   kvc_prefill_metric_smem(s->group, hd));
	} else {
		EXPECT_U64(p.metric.grid[0], 0);
	}
	if (metric && pool > 1) {
		EXPECT_U64(p.pool.grid[0],
			   div_up(s->max_len, KVC_PREFILL_POOL_THREADS));
		EXPECT_U64(p.pool.grid[1], s->nr_heads);
		EXPECT_U64(p.pool.grid[2], 1);
		EXPECT_U64(p.pool.threads, KVC_PREFILL_POOL_THREADS);
	} else {
		EXPECT_U64(p.pool.grid[0], 0);
	}
	EXPECT_U64(p.ws_bytes,
		   4 * kvc_prefill_ws_layout(s->nr_heads, s->group, n,
					     s->max_len, s->metric, pool)
				   .floats);
}

static void test_prefill_plans(void **state)
{
	static const uint32_t groups[] = { 1, 3, 8, 16 };
	static const uint32_t dims[] = { 64, 96, 128, 256 };
	static const uint32_t ns[] = { 1, 15, 16, 17, 1000 };
	static const uint32_t pools[] = { 0, 1, 3, 4, 7 };
	struct fixture *fx = *state;
	struct kvc_attn_shape s = good_shape();
	size_t g, q, d, n, p;
	uint32_t k = 0;

	for (g = 0; g < NR_GPUS; g++)
		for (q = 0; q < sizeof(groups) / sizeof(groups[0]); q++)
			for (d = 0; d < sizeof(dims) / sizeof(dims[0]); d++)
				for (n = 0; n < sizeof(ns) / sizeof(ns[0]); n++)
					for (p = 0;
					     p <
					     sizeof(pools) / sizeof(pools[0]);
					     p++, k++) {
						s.group = groups[q];
						s.head_dim = dims[d];
						s.max_len =
							ns[n] + (k % 3) * 100;
						s.metric =
							(enum kvc_metric_kind)(
								k % 4);
						check_prefill(&fx->gpu[g], &s,
							      ns[n], pools[p]);
					}
	/* A worked example: 1000 queries of head_dim 128 in tiles of 16. */
	{
		struct kvc_prefill_plan pl;

		s = good_shape();
		s.max_len = 2000;
		assert_int_equal(
			kvc_prefill_plan(&fx->gpu[H100], &s, 1000, 5, &pl), 0);
		EXPECT_U64(pl.attn.grid[0],
			   div_up(1000, kvc_prefill_q_tile(128)));
		EXPECT_U64(pl.metric.grid[0],
			   div_up(2000, kvc_prefill_k_tile(128)));
		EXPECT_U64(pl.pool.grid[0], 8);
		EXPECT_U64(pl.ws_bytes, 4 * (2ull * 32 * 1000 * 4 + 32 * 2000));
	}
}

static void expect_prefill_einval(const struct kvc_gpu_info *gpu,
				  const struct kvc_attn_shape *s,
				  const char *what)
{
	struct kvc_prefill_plan p;
	int err;

	memset(&p, POISON, sizeof(p));
	err = kvc_prefill_plan(gpu, s, s->max_len ? s->max_len : 1, 3, &p);
	if (err != -EINVAL)
		fail_msg("%s: kvc_prefill_plan() = %d, expected -EINVAL", what,
			 err);
	if (!untouched(&p, sizeof(p)))
		fail_msg("%s: the plan was written", what);
	if (!kvc_last_error()[0])
		fail_msg("%s: no message", what);
}

static void test_prefill_bad(void **state)
{
	struct fixture *fx = *state;
	struct kvc_attn_shape s = good_shape();
	struct kvc_gpu_info gpu = fx->gpu[H100];
	struct kvc_prefill_plan p;

	bad_shapes(expect_prefill_einval, &fx->gpu[H100]);
	memset(&p, POISON, sizeof(p));
	assert_int_equal(kvc_prefill_plan(&gpu, &s, 0, 0, &p), -EINVAL);
	assert_int_equal(kvc_prefill_plan(&gpu, &s, s.max_len + 1, 0, &p),
			 -EINVAL);
	assert_int_equal(kvc_prefill_plan(NULL, &s, 1, 0, &p), -EINVAL);
	assert_int_equal(kvc_prefill_plan(&gpu, NULL, 1, 0, &p), -EINVAL);
	assert_true(untouched(&p, sizeof(p)));
	assert_int_equal(kvc_prefill_plan(&gpu, &s, 1, 0, NULL), -EINVAL);
	gpu.sms = 0;
	expect_prefill_einval(&gpu, &s, "no SMs");
	/* The attention tile does not fit. */
	s.group = 16;
	s.head_dim = 256;
	gpu = fx->gpu[H100];
	gpu.smem_optin = kvc_prefill_attn_smem(16, 256) - 1;
	expect_prefill_einval(&gpu, &s, "attention tile too large");
	/* Nor the metric's. */
	s.metric = KVC_METRIC_L1;
	gpu.smem_optin = kvc_prefill_attn_smem(16, 256);
	if (kvc_prefill_metric_smem(16, 256) > gpu.smem_optin)
		expect_prefill_einval(&gpu, &s, "metric tile too large");
	gpu.smem_optin = kvc_prefill_metric_smem(16, 256) - 1;
	if (kvc_prefill_attn_smem(16, 256) <= gpu.smem_optin)
		expect_prefill_einval(&gpu, &s, "metric tile too large");
}

/* ------------------------------------------------------------------ */
/* Row and copy launches */

static void test_rows_launch(void **state)
{
	static const uint64_t rows[][2] = {
		{ 1, 1 },
		{ 3, 1 },
		{ 4, 1 },
		{ 5, 2 },
		{ 1000, 250 },
		{ 1001, 251 },
		{ UINT32_MAX, 1073741824ull },
		{ 0x1fffffffcull, 0x7fffffffull },
	};
	struct kvc_launch l;
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		memset(&l, POISON, sizeof(l));
		assert_int_equal(kvc_rows_launch(rows[i][0], &l), 0);
		EXPECT_U64(l.grid[0], rows[i][1]);
		EXPECT_U64(l.grid[1], 1);
		EXPECT_U64(l.grid[2], 1);
		EXPECT_U64(l.threads, 128);
		EXPECT_U64(l.smem, 0);
	}
	memset(&l, POISON, sizeof(l));
	assert_int_equal(kvc_rows_launch(0, &l), -EINVAL);
	assert_int_equal(kvc_rows_launch(0x1fffffffdull, &l), -EINVAL);
	assert_int_equal(kvc_rows_launch(UINT64_MAX, &l), -EINVAL);
	assert_true(untouched(&l, sizeof(l)));
	assert_int_equal(kvc_rows_launch(1, NULL), -EINVAL);
}

static void test_copy_launch(void **state)
{
	struct fixture *fx = *state;
	const struct kvc_gpu_info *h100 = &fx->gpu[H100];
	struct kvc_gpu_info none = fx->gpu[H100];
	struct kvc_launch l;

	/* One 4-byte word: one CTA. */
	assert_int_equal(kvc_copy_launch(h100, 1, 4, &l), 0);
	EXPECT_U64(l.grid[0], 1);
	EXPECT_U64(l.grid[1], 1);
	EXPECT_U64(l.grid[2], 1);
	EXPECT_U64(l.threads, 256);
	EXPECT_U64(l.smem, 0);
	/* 10 blocks of 1 KiB: 2560 words, 10 CTAs. */
	assert_int_equal(kvc_copy_launch(h100, 10, 1024, &l), 0);
	EXPECT_U64(l.grid[0], 10);
	assert_int_equal(kvc_copy_launch(h100, 10, 1028, &l), 0);
	EXPECT_U64(l.grid[0], 11);
	/* Many large blocks: 16 CTAs per SM at most. */
	assert_int_equal(kvc_copy_launch(h100, 240, 1u << 20, &l), 0);
	EXPECT_U64(l.grid[0], 16 * 132);
	assert_int_equal(kvc_copy_launch(&fx->gpu[TINY], 1000, 64 << 10, &l),
			 0);
	EXPECT_U64(l.grid[0], 32);

	memset(&l, POISON, sizeof(l));
	assert_int_equal(kvc_copy_launch(h100, 0, 1024, &l), -EINVAL);
	assert_int_equal(kvc_copy_launch(h100, 1, 0, &l), -EINVAL);
	assert_int_equal(kvc_copy_launch(h100, 1, 6, &l), -EINVAL);
	assert_int_equal(kvc_copy_launch(h100, UINT64_MAX, 8, &l), -EINVAL);
	assert_int_equal(kvc_copy_launch(NULL, 1, 4, &l), -EINVAL);
	none.sms = 0;
	assert_int_equal(kvc_copy_launch(&none, 1, 4, &l), -EINVAL);
	assert_true(untouched(&l, sizeof(l)));
	assert_int_equal(kvc_copy_launch(h100, 1, 4, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernel_hd),
		cmocka_unit_test(test_peak_bw),
		cmocka_unit_test_setup_teardown(test_decode_sweep, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_decode_examples, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_decode_bad, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_prefill_plans, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_prefill_bad, setup,
						teardown),
		cmocka_unit_test(test_rows_launch),
		cmocka_unit_test_setup_teardown(test_copy_launch, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
