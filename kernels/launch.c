// SPDX-License-Identifier: MIT
/*
 * Launch plans of the CUDA kernels: which variant, grids, threads, shared
 * memory and workspace, from the shapes and the device. Plain C, so the
 * CPU tests cover every rule; cuda_kernels.c applies the plans and the
 * emulator (emulate.c) checks launches against the same layouts.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "../alloc/error.h"
#include "decode_layout.h"
#include "launch.h"
#include "prefill_layout.h"

/* Partitions are at least this long (rounded up to whole blocks) unless
 * shared memory forces them shorter: below it the reduce costs more than
 * the parallelism gains. */
#define MIN_PART_TOKENS 128u
/* Partitions per head at most (the reduce walks them in one CTA). */
#define MAX_PARTS 1024u
/* Longest partition: keeps the u32 shared memory sums of the layout
 * headers far from wrapping. */
#define MAX_PART_TOKENS (1u << 20)
/* The largest grid.x a launch may have. */
#define MAX_GRID_X 0x7fffffffull
/* The largest grid.y (heads ride on it). */
#define MAX_GRID_Y 65535u

uint32_t kvc_kernel_hd(uint32_t head_dim)
{
	if (!head_dim || head_dim % 8 || head_dim > KVC_KERNEL_HD_LARGE)
		return 0;
	if (head_dim <= KVC_KERNEL_HD_SMALL)
		return KVC_KERNEL_HD_SMALL;
	if (head_dim <= KVC_KERNEL_HD_MEDIUM)
		return KVC_KERNEL_HD_MEDIUM;
	return KVC_KERNEL_HD_LARGE;
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static uint64_t round_up(uint64_t a, uint64_t b)
{
	return div_up(a, b) * b;
}

static int check_gpu(const struct kvc_gpu_info *gpu, const char *fn)
{
	if (!gpu)
		return kvc_err(-EINVAL, "%s: NULL device info", fn);
	if (!gpu->sms)
		return kvc_err(-EINVAL, "%s: device with no multiprocessors",
			       fn);
	return 0;
}

/* The rules every attention shape follows, decode or prefill. */
static int check_shape(const struct kvc_attn_shape *s, const char *fn)
{
	if (!s)
		return kvc_err(-EINVAL, "%s: NULL shape", fn);
	if (s->group < 1 || s->group > KVC_KERNEL_MAX_GROUP)
		return kvc_err(-EINVAL, "%s: group %u not in 1..%u", fn,
			       s->group, KVC_KERNEL_MAX_GROUP);
	if (!kvc_kernel_hd(s->head_dim))
		return kvc_err(-EINVAL,
			       "%s: head_dim %u not a multiple of 8 in 8..%u",
			       fn, s->head_dim, KVC_KERNEL_HD_LARGE);
	if (s->nr_heads < 1 || s->nr_heads > MAX_GRID_Y)
		return kvc_err(-EINVAL, "%s: nr_heads %u not in 1..%u", fn,
			       s->nr_heads, MAX_GRID_Y);
	if (!s->kv_heads || s->nr_heads % s->kv_heads)
		return kvc_err(-EINVAL,
			       "%s: nr_heads %u not a multiple of kv_heads %u",
			       fn, s->nr_heads, s->kv_heads);
	if (!kvc_kernel_dtype_ok(s->dtype))
		return kvc_err(-EINVAL, "%s: unknown dtype %d", fn,
			       (int)s->dtype);
	if (!kvc_kernel_metric_ok(s->metric))
		return kvc_err(-EINVAL, "%s: unknown metric %d", fn,
			       (int)s->metric);
	if (s->block_size < 1 || s->block_size > MAX_PART_TOKENS)
		return kvc_err(-EINVAL, "%s: block_size %u not in 1..%u", fn,
			       s->block_size, MAX_PART_TOKENS);
	if (s->max_len < 1)
		return kvc_err(-EINVAL, "%s: max_len 0", fn);
	return 0;
}

/* Partition smem of @pt tokens fits the device (@pt <= MAX_PART_TOKENS). */
static int part_fits(const struct kvc_attn_shape *s, uint32_t hd, uint64_t pt,
		     uint32_t optin)
{
	return pt <= MAX_PART_TOKENS &&
	       kvc_decode_part_smem(s->dtype, s->group, (uint32_t)pt, hd) <=
		       optin;
}

/*
 * The longest multiple of the block size, at most @pt, whose partition
 * fits shared memory; 0 when not even one block does. Binary search: the
 * shared memory of a partition grows with its length.
 */
static uint64_t shrink_to_fit(const struct kvc_attn_shape *s, uint32_t hd,
			      uint64_t pt, uint32_t optin)
{
	uint64_t lo = 1, hi = pt / s->block_size, mid;

	if (!part_fits(s, hd, s->block_size, optin))
		return 0;
	while (lo < hi) {
		mid = lo + (hi - lo + 1) / 2;
		if (part_fits(s, hd, mid * s->block_size, optin))
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo * s->block_size;
}

/* Partitions a reduce CTA can merge: MAX_PARTS, fewer when its shared
 * memory does not fit. */
static uint32_t max_parts(const struct kvc_attn_shape *s, uint32_t hd,
			  uint32_t optin)
{
	uint32_t lo = 0, hi = MAX_PARTS, mid;

	while (lo < hi) {
		mid = lo + (hi - lo + 1) / 2;
		if (kvc_decode_reduce_smem(s->group, mid, hd) <= optin)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/*
 * Partition length for the grid: P partitions of ceil(max_len / P) tokens
 * rounded up to whole blocks (even partitions: a short last one leaves
 * its CTA idle), P from the smallest that gives every multiprocessor
 * KVC_DECODE_CTAS_PER_SM CTAs up to twice that, whichever spreads its
 * CTAs most evenly over the multiprocessors. Measured on an H100: 320
 * CTAs on 132 multiprocessors (some get three, some two) read at 73% of
 * peak where an even grid reads at 88%. Never shorter than @floor.
 */
static uint64_t balanced_tokens(const struct kvc_attn_shape *s, uint32_t sms,
				uint64_t floor)
{
	uint64_t pmax = div_up(s->max_len, floor), p0, p, pt, ctas;
	uint64_t best_pt = round_up(s->max_len, s->block_size);
	double eff, best = -1.0;

	p0 = div_up((uint64_t)KVC_DECODE_CTAS_PER_SM * sms, s->nr_heads);
	if (p0 > pmax)
		p0 = pmax;
	if (p0 > MAX_PARTS)
		p0 = MAX_PARTS;
	for (p = p0 ? p0 : 1; p <= 2 * p0 && p <= pmax && p <= MAX_PARTS; p++) {
		pt = round_up(div_up(s->max_len, p), s->block_size);
		if (pt < floor)
			pt = floor;
		ctas = div_up(s->max_len, pt) * s->nr_heads;
		eff = (double)ctas / (double)round_up(ctas, sms);
		if (eff > best + 1e-9) {
			best = eff;
			best_pt = pt;
		}
	}
	return best_pt;
}

int kvc_decode_plan(const struct kvc_gpu_info *gpu,
		    const struct kvc_attn_shape *shape,
		    struct kvc_decode_plan *plan)
{
	const char *fn = "kvc_decode_plan";
	uint64_t floor, pt, nr_parts;
	uint32_t hd, cap;
	int err;

	err = check_gpu(gpu, fn);
	if (!err)
		err = check_shape(shape, fn);
	if (err)
		return err;
	if (!plan)
		return kvc_err(-EINVAL, "%s: NULL plan", fn);
	hd = kvc_kernel_hd(shape->head_dim);

	floor = round_up(shape->max_len < MIN_PART_TOKENS ? shape->max_len :
							    MIN_PART_TOKENS,
			 shape->block_size);
	pt = balanced_tokens(shape, gpu->sms, floor);
	if (pt > MAX_PART_TOKENS)
		pt = MAX_PART_TOKENS - MAX_PART_TOKENS % shape->block_size;
	if (!part_fits(shape, hd, pt, gpu->smem_optin)) {
		pt = shrink_to_fit(shape, hd, pt, gpu->smem_optin);
		if (!pt)
			return kvc_err(
				-EINVAL,
				"%s: one block of %u tokens (group %u, head_dim %u) needs more than %u bytes of shared memory",
				fn, shape->block_size, shape->group,
				shape->head_dim, gpu->smem_optin);
	}

	/* Too many partitions for one reduce CTA: lengthen them. */
	cap = max_parts(shape, hd, gpu->smem_optin);
	if (!cap)
		return kvc_err(
			-EINVAL,
			"%s: the reduce (group %u) needs more than %u bytes of shared memory",
			fn, shape->group, gpu->smem_optin);
	nr_parts = div_up(shape->max_len, pt);
	if (nr_parts > cap) {
		pt = round_up(div_up(shape->max_len, cap), shape->block_size);
		if (!part_fits(shape, hd, pt, gpu->smem_optin))
			return kvc_err(
				-EINVAL,
				"%s: max_len %u needs partitions of %llu tokens, more than %u bytes of shared memory hold",
				fn, shape->max_len, (unsigned long long)pt,
				gpu->smem_optin);
		nr_parts = div_up(shape->max_len, pt);
	}

	memset(plan, 0, sizeof(*plan));
	plan->hd = hd;
	plan->part_tokens = (uint32_t)pt;
	plan->nr_parts = (uint32_t)nr_parts;
	plan->part.grid[0] = (uint32_t)nr_parts;
	plan->part.grid[1] = shape->nr_heads;
	plan->part.grid[2] = 1;
	plan->part.threads = KVC_DECODE_THREADS;
	plan->part.smem = kvc_decode_part_smem(shape->dtype, shape->group,
					       (uint32_t)pt, hd);
	plan->reduce.grid[0] = shape->nr_heads;
	plan->reduce.grid[1] = 1;
	plan->reduce.grid[2] = 1;
	plan->reduce.threads = KVC_DECODE_REDUCE_THREADS;
	plan->reduce.smem =
		kvc_decode_reduce_smem(shape->group, (uint32_t)nr_parts, hd);
	/* At most 2^16 * 16 * 2^32 floats of scores: no u64 overflow. */
	plan->ws_bytes =
		4 * kvc_decode_ws_layout(shape->nr_heads, shape->group,
					 (uint32_t)nr_parts, shape->head_dim,
					 shape->max_len, shape->metric)
			    .floats;
	return 0;
}

int kvc_prefill_plan(const struct kvc_gpu_info *gpu,
		     const struct kvc_attn_shape *shape, uint32_t n,
		     uint32_t pool_kernel, struct kvc_prefill_plan *plan)
{
	const char *fn = "kvc_prefill_plan";
	struct kvc_prefill_plan p;
	uint32_t hd;
	int err;

	err = check_gpu(gpu, fn);
	if (!err)
		err = check_shape(shape, fn);
	if (err)
		return err;
	if (!plan)
		return kvc_err(-EINVAL, "%s: NULL plan", fn);
	if (n < 1 || n > shape->max_len)
		return kvc_err(-EINVAL, "%s: n %u not in 1..max_len %u", fn, n,
			       shape->max_len);
	hd = kvc_kernel_hd(shape->head_dim);

	memset(&p, 0, sizeof(p));
	p.hd = hd;
	p.attn.grid[0] = (uint32_t)div_up(n, kvc_prefill_q_tile(hd));
	p.attn.grid[1] = shape->nr_heads;
	p.attn.grid[2] = 1;
	p.attn.threads = KVC_PREFILL_THREADS;
	p.attn.smem = kvc_prefill_attn_smem(shape->group, hd);
	if (p.attn.smem > gpu->smem_optin)
		return kvc_err(
			-EINVAL,
			"%s: attention (group %u, head_dim %u) needs %u bytes of shared memory, the device %u",
			fn, shape->group, shape->head_dim, p.attn.smem,
			gpu->smem_optin);
	if (shape->metric != KVC_METRIC_NONE) {
		p.metric.grid[0] = (uint32_t)div_up(shape->max_len,
						    kvc_prefill_k_tile(hd));
		p.metric.grid[1] = shape->nr_heads;
		p.metric.grid[2] = 1;
		p.metric.threads = KVC_PREFILL_METRIC_THREADS;
		p.metric.smem = kvc_prefill_metric_smem(shape->group, hd);
		if (p.metric.smem > gpu->smem_optin)
			return kvc_err(
				-EINVAL,
				"%s: the metric (group %u, head_dim %u) needs %u bytes of shared memory, the device %u",
				fn, shape->group, shape->head_dim,
				p.metric.smem, gpu->smem_optin);
		if (pool_kernel > 1) {
			p.pool.grid[0] = (uint32_t)div_up(
				shape->max_len, KVC_PREFILL_POOL_THREADS);
			p.pool.grid[1] = shape->nr_heads;
			p.pool.grid[2] = 1;
			p.pool.threads = KVC_PREFILL_POOL_THREADS;
		}
	}
	p.ws_bytes = 4 * kvc_prefill_ws_layout(shape->nr_heads, shape->group, n,
					       shape->max_len, shape->metric,
					       pool_kernel)
				 .floats;
	*plan = p;
	return 0;
}

int kvc_rows_launch(uint64_t rows, struct kvc_launch *launch)
{
	uint64_t ctas = div_up(rows, KVC_ROWS_PER_CTA);

	if (!launch)
		return kvc_err(-EINVAL, "kvc_rows_launch: NULL launch");
	if (!rows || ctas > MAX_GRID_X)
		return kvc_err(-EINVAL,
			       "kvc_rows_launch: %llu rows not in 1..%llu",
			       (unsigned long long)rows,
			       MAX_GRID_X * KVC_ROWS_PER_CTA);
	memset(launch, 0, sizeof(*launch));
	launch->grid[0] = (uint32_t)ctas;
	launch->grid[1] = 1;
	launch->grid[2] = 1;
	launch->threads = KVC_ROWS_THREADS;
	return 0;
}

int kvc_copy_launch(const struct kvc_gpu_info *gpu, uint64_t n, uint64_t bytes,
		    struct kvc_launch *launch)
{
	const char *fn = "kvc_copy_launch";
	uint64_t words, ctas, most;
	int err;

	err = check_gpu(gpu, fn);
	if (err)
		return err;
	if (!launch)
		return kvc_err(-EINVAL, "%s: NULL launch", fn);
	if (!n)
		return kvc_err(-EINVAL, "%s: no items", fn);
	if (!bytes || bytes % 4)
		return kvc_err(-EINVAL,
			       "%s: %llu bytes an item, not a multiple of 4",
			       fn, (unsigned long long)bytes);
	if (__builtin_mul_overflow(n, bytes / 4, &words))
		return kvc_err(-EINVAL, "%s: %llu items of %llu bytes overflow",
			       fn, (unsigned long long)n,
			       (unsigned long long)bytes);
	ctas = div_up(words, KVC_COPY_THREADS);
	most = (uint64_t)KVC_COPY_CTAS_PER_SM * gpu->sms;
	if (most > MAX_GRID_X)
		most = MAX_GRID_X;
	memset(launch, 0, sizeof(*launch));
	launch->grid[0] = (uint32_t)(ctas < most ? ctas : most);
	launch->grid[1] = 1;
	launch->grid[2] = 1;
	launch->threads = KVC_COPY_THREADS;
	return 0;
}

uint64_t kvc_gpu_peak_bw(uint32_t mem_clock_khz, uint32_t bus_bits)
{
	uint64_t bw;

	/* 1000 clocks a kHz, 2 transfers a clock, 8 bits a byte: 250. */
	if (__builtin_mul_overflow((uint64_t)mem_clock_khz * 250u,
				   (uint64_t)bus_bits, &bw))
		return UINT64_MAX;
	return bw;
}
