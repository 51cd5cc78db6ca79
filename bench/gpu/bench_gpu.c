// SPDX-License-Identifier: MIT
/*
 * bench_gpu: what the CUDA path costs against what the device can do.
 * Every figure is a ratio against a baseline measured in the same run.
 *
 * Device. Multiprocessors, compute capability, L2, the peak memory
 * bandwidth from the memory clock and bus width (kvc_gpu_info), and a
 * measured device-to-device copy: cuMemcpyDtoDAsync of 1 GiB, bytes read
 * plus bytes written over the time, the baseline of every bandwidth.
 *
 * Decode. One decode step (partition and reduce kernels together) of a
 * Llama-3-8B-like layer (32 query heads, 8 KV heads, head_dim 128, f16,
 * blocks of 16 tokens) at contexts 1k, 4k, 16k, 32k and batches 1, 4,
 * 16, 64; then a SmolLM2-like layer (9/3 heads, head_dim 64), bf16, and
 * the L2 metric, at 16k x 16. Blocks sit at shuffled ids; batches rotate
 * over as many copies of the cache as make at least 256 MiB (or 4 x L2),
 * so that no run finds its KVs in L2. Figure: bytes read (K and V of
 * every head, queries, outputs, tables, lengths, and the metric's slot
 * metadata read and written) over the kernels' time, against the
 * measured copy and the peak. Combinations that do not fit the free
 * memory are skipped.
 *
 * Block copy. 64K blocks of 4 KiB, and of 16 KiB, at shuffled ids of one
 * buffer, pairs in device memory (pairs_dev): bytes read plus written
 * over the kernel's time, against one cuMemcpyDtoDAsync of as many
 * contiguous bytes; and the old path, one cuMemcpyDtoDAsync per block
 * for the same pairs, against the kernel.
 *
 * Prefill. The fused kernels (attention, and with the L2 metric the
 * metric pass) for one sequence of the Llama-like layer at n = 512 and
 * 2048 new tokens, in TFLOP/s of causal attention (4 hd q_heads n(n+1)/2
 * flops, the same count with or without the metric); against cuBLAS
 * (loaded at run time, if present) computing S = Q K^T and O = P V for
 * the same shape on contiguous f16 K and V, f32 accumulation: a lower
 * bound for an unfused path (no softmax, no paging, no metric).
 *
 * VMM. A kvc pool on the cuda backend, blocks of 8 KiB: growing it one
 * chunk at a time (cuMemCreate + cuMemMap + cuMemSetAccess) and trimming
 * it (cuMemUnmap + cuMemRelease), per chunk, against cuMemAlloc and
 * cuMemFree of a chunk; and the driver calls per step of a simulated
 * decode (sequences of 32 layers x 8 KV heads that grow a token a step,
 * finish and start again), against the blocks allocated and freed per
 * step (the calls an allocator with one allocation per block would make).
 *
 * Times are medians of repeated runs timed with events; the runs of one
 * measurement are queued behind a 1 GiB copy, so the host's launch rate
 * does not show. --quick: fewer sizes and repeats. --fake: tiny sizes on
 * the fake driver (kernels emulated on the CPU), to check the program;
 * its times are meaningless. --json FILE: every figure as JSON.
 * Exit 0, 1 when a call fails, 77 with no GPU (without --fake), 2 for
 * bad flags.
 */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/attention.h>
#include <kvc/kv.h>
#include <kvc/pool.h>

#include "../../tests/gpu/gpu_util.h"
#include "attention.h"
#include "half.h"

#define PROG "bench-gpu"
#define DEFAULT_SEED 0x6b7663u
#define MAX_FIGS 128
#define MAX_REPEATS 64
#define GIB (1ull << 30)
#define MIB (1ull << 20)

struct opts {
	bool fake;
	bool quick;
	const char *json;
	uint64_t seed;
};

/**
 * struct fig - One figure and its baselines.
 * @section: "device", "decode", ...
 * @name: what was measured.
 * @value: the figure.
 * @unit: its unit.
 * @base: the baseline, in the same unit (NAN: none).
 * @base_name: what the baseline is.
 * @ratio: @value / @base.
 * @peak_ratio: for bandwidths, @value over the device's peak (else NAN).
 */
struct fig {
	char section[12];
	char name[64];
	double value;
	const char *unit;
	double base;
	char base_name[40];
	double ratio;
	double peak_ratio;
};

static struct fig figs[MAX_FIGS];
static unsigned int nr_figs;

/**
 * struct bench - One run.
 * @g: the device.
 * @o: the options.
 * @rng: the generator.
 * @repeats: timed runs of a measurement.
 * @peak: peak memory bandwidth, bytes/s (0: unknown).
 * @d2d: measured copy bandwidth, bytes read + written per second.
 * @busy_src: source of the copy that runs ahead of timed runs.
 * @busy_dst: its destination.
 * @busy_bytes: its size.
 * @free_bytes: device memory free after the busy buffers.
 * @total_bytes: device memory.
 */
struct bench {
	struct gpu g;
	struct opts o;
	uint64_t rng;
	uint32_t repeats;
	double peak;
	double d2d;
	kvc_cu_ptr busy_src;
	kvc_cu_ptr busy_dst;
	size_t busy_bytes;
	size_t free_bytes;
	size_t total_bytes;
};

static void fig_add(const char *section, const char *name, double value,
		    const char *unit, double base, const char *base_name,
		    double peak_ratio)
{
	struct fig *f;

	if (nr_figs >= MAX_FIGS)
		return;
	f = &figs[nr_figs++];
	snprintf(f->section, sizeof(f->section), "%s", section);
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->value = value;
	f->unit = unit;
	f->base = base;
	snprintf(f->base_name, sizeof(f->base_name), "%s",
		 base_name ? base_name : "");
	f->ratio = base > 0 ? value / base : NAN;
	f->peak_ratio = peak_ratio;
}

static double ratio_or_nan(double a, double b)
{
	return b > 0 ? a / b : NAN;
}

/* ------------------------------------------------------------------ */
/* Helpers */

/* Queue the copy that keeps the device busy while timed runs queue. */
static int busy(const struct bench *b)
{
	return CU(&b->g,
		  b->g.drv->cuMemcpyDtoDAsync(b->busy_dst, b->busy_src,
					      b->busy_bytes, b->g.stream));
}

/*
 * Fill @bytes at @dst with elements of @dtype uniform in [-@amp, @amp):
 * one random stretch uploaded, then doubled by device copies.
 */
static int fill_random(struct bench *b, kvc_cu_ptr dst, uint64_t bytes,
		       enum kvc_dtype dtype, float amp)
{
	uint64_t chunk = bytes < 16 * MIB ? bytes : 16 * MIB, done, n, i;
	uint32_t eb = gpu_elem_bytes(dtype);
	uint8_t *h = gpu_malloc(chunk);
	int ret = -1;

	if (!h)
		return -1;
	for (i = 0; i + eb <= chunk; i += eb) {
		float v = amp * gpu_uniform(&b->rng);
		uint16_t x;

		if (dtype == KVC_DTYPE_F32) {
			memcpy(h + i, &v, 4);
			continue;
		}
		x = dtype == KVC_DTYPE_BF16 ? kvc_f32_to_bf16(v) :
					      kvc_f32_to_f16(v);
		memcpy(h + i, &x, 2);
	}
	for (; i < chunk; i++)
		h[i] = 0;
	if (gpu_put(&b->g, dst, h, chunk))
		goto out;
	for (done = chunk; done < bytes; done += n) {
		n = bytes - done < done ? bytes - done : done;
		if (CU(&b->g, b->g.drv->cuMemcpyDtoDAsync(dst + done, dst, n,
							  b->g.stream)))
			goto out;
	}
	ret = gpu_sync(&b->g);
out:
	free(h);
	return ret;
}

/* Whether @bytes more fit the free device memory, with a margin. */
static bool fits(struct bench *b, uint64_t bytes)
{
	size_t free_bytes = 0, total = 0;
	uint64_t margin = b->g.fake ? 0 : 512 * MIB;

	if (gpu_mem_info(&b->g, &free_bytes, &total))
		return false;
	return bytes + margin <= free_bytes;
}

/* cuMemAlloc that tells out-of-memory (1) from other failures (-1). */
static int alloc_or_skip(struct bench *b, kvc_cu_ptr *p, uint64_t bytes)
{
	kvc_cu_result r;

	*p = 0;
	r = b->g.drv->cuMemAlloc(p, bytes < 256 ? 256 : bytes);
	if (r == KVC_CUDA_ERROR_OUT_OF_MEMORY) {
		*p = 0;
		return 1;
	}
	return CU(&b->g, r);
}

/**
 * typedef run_fn - Queue run @i of a measurement.
 * @arg: the measurement's state.
 * @i: the run.
 *
 * Return: 0, or -1 (printed).
 */
typedef int (*run_fn)(void *arg, uint32_t i);

/*
 * @warm runs, then @n timed ones queued behind the busy copy, each
 * between two events; @ms gets the median.
 */
static int time_runs(struct bench *b, uint32_t warm, uint32_t n, run_fn fn,
		     void *arg, double *ms)
{
	double t[MAX_REPEATS];
	struct gpu_timer tm = { 0 };
	uint32_t i;
	int ret = -1;

	if (n > MAX_REPEATS)
		n = MAX_REPEATS;
	for (i = 0; i < warm; i++)
		if (fn(arg, i))
			return -1;
	if (gpu_sync(&b->g) || gpu_timer_create(&b->g, &tm, n))
		return -1;
	if (busy(b))
		goto out;
	for (i = 0; i < n; i++) {
		if (gpu_timer_mark(&b->g, &tm, i, false) || fn(arg, warm + i) ||
		    gpu_timer_mark(&b->g, &tm, i, true))
			goto out;
	}
	if (gpu_timer_read(&b->g, &tm, t))
		goto out;
	*ms = gpu_median(t, n);
	ret = 0;
out:
	if (ret)
		gpu_sync(&b->g);
	gpu_timer_destroy(&b->g, &tm);
	return ret;
}

static const char *human_bytes(uint64_t bytes, char *buf, size_t len)
{
	if (bytes >= GIB)
		snprintf(buf, len, "%.1f GiB", (double)bytes / GIB);
	else if (bytes >= MIB)
		snprintf(buf, len, "%.1f MiB", (double)bytes / MIB);
	else
		snprintf(buf, len, "%.1f KiB", (double)bytes / 1024);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Device */

static int copy_run(void *arg, uint32_t i)
{
	(void)i;
	return busy(arg);
}

static int bench_device(struct bench *b)
{
	const struct kvc_gpu_info *in = &b->g.info;
	size_t bytes = b->g.fake ? 4 * MIB : GIB;
	double ms;

	b->peak = (double)in->peak_bytes_per_s;
	if (gpu_mem_info(&b->g, &b->free_bytes, &b->total_bytes))
		return -1;
	printf("device: %u SMs, compute capability %u.%u, L2 %.0f MiB, %.1f of %.1f GiB free\n",
	       in->sms, in->cc_major, in->cc_minor, (double)in->l2_bytes / MIB,
	       (double)b->free_bytes / GIB, (double)b->total_bytes / GIB);
	if (gpu_alloc(&b->g, &b->busy_src, bytes) ||
	    gpu_alloc(&b->g, &b->busy_dst, bytes))
		return -1;
	b->busy_bytes = bytes;
	if (fill_random(b, b->busy_src, bytes, KVC_DTYPE_F32, 1.0f))
		return -1;
	if (time_runs(b, 3, b->repeats < 10 ? 10 : b->repeats, copy_run, b,
		      &ms))
		return -1;
	b->d2d = 2.0 * (double)bytes / (ms * 1e-3);
	printf("device: peak %.0f GB/s (memory clock x bus width); device-to-device copy of %s: %.0f GB/s read + written (%.0f%% of peak)\n",
	       b->peak / 1e9, b->g.fake ? "4 MiB" : "1 GiB", b->d2d / 1e9,
	       100 * ratio_or_nan(b->d2d, b->peak));
	fig_add("device", "peak bandwidth", b->peak / 1e9, "GB/s", NAN, NULL,
		NAN);
	fig_add("device",
		b->g.fake ? "D2D copy, 4 MiB (read + write)" :
			    "D2D copy, 1 GiB (read + write)",
		b->d2d / 1e9, "GB/s", b->peak / 1e9, "peak",
		ratio_or_nan(b->d2d, b->peak));
	return 0;
}

/* ------------------------------------------------------------------ */
/* Decode */

/**
 * struct dshape - One decode measurement.
 * @model: label.
 * @q_heads: query heads per layer.
 * @kv_heads: KV heads.
 * @hd: head_dim.
 * @dtype: storage type.
 * @metric: metric collected.
 * @ctx: tokens of every head (a multiple of 16).
 * @batch: sequences.
 */
struct dshape {
	const char *model;
	uint32_t q_heads;
	uint32_t kv_heads;
	uint32_t hd;
	enum kvc_dtype dtype;
	enum kvc_metric_kind metric;
	uint32_t ctx;
	uint32_t batch;
};

struct decode_run {
	struct bench *b;
	struct kvc_decode_args args;
	struct kvc_decode_plan plan;
	kvc_cu_ptr tables;
	uint64_t rot_table_bytes;
	uint32_t rotations;
};

static int decode_run(void *arg, uint32_t i)
{
	struct decode_run *d = arg;
	int err;

	d->args.tables = d->tables + (i % d->rotations) * d->rot_table_bytes;
	err = kvc_cuda_decode(d->b->g.k, d->b->g.stream, &d->args, &d->plan);
	return KVC(err);
}

static int bench_decode_one(struct bench *b, const struct dshape *s)
{
	const uint32_t bs = 16;
	uint32_t group = s->q_heads / s->kv_heads, nr = s->batch * s->kv_heads;
	uint32_t stride = s->ctx / bs, rot, i, *tables = NULL, *perm = NULL;
	uint32_t *lens = NULL;
	uint64_t block_bytes = 2ull * bs * s->hd * gpu_elem_bytes(s->dtype);
	uint64_t batch_blocks = (uint64_t)nr * stride;
	uint64_t batch_bytes = batch_blocks * block_bytes;
	uint64_t target, per_rot, fixed, bytes, meta_bytes;
	size_t qn = (size_t)nr * group * s->hd;
	kvc_cu_ptr pool = 0, d_tables = 0, d_lens = 0, d_q = 0, d_out = 0;
	kvc_cu_ptr d_ws = 0, d_meta = 0;
	struct kvc_attn_shape shape = {
		.nr_heads = nr,
		.kv_heads = s->kv_heads,
		.group = group,
		.head_dim = s->hd,
		.block_size = bs,
		.max_len = s->ctx,
		.dtype = s->dtype,
		.metric = s->metric,
	};
	struct decode_run d = { .b = b };
	char name[64], hb[32];
	float *q = NULL;
	double ms, bw;
	int ret = -1, r;

	snprintf(name, sizeof(name), "%s %s%s, %uk x %u", s->model,
		 gpu_dtype_name(s->dtype), s->metric ? " l2" : "",
		 s->ctx / 1024 ? s->ctx / 1024 : 1, s->batch);
	if (s->ctx < 1024)
		snprintf(name, sizeof(name), "%s %s%s, %u x %u", s->model,
			 gpu_dtype_name(s->dtype), s->metric ? " l2" : "",
			 s->ctx, s->batch);
	if (KVC(kvc_decode_plan(&b->g.info, &shape, &d.plan)))
		return -1;

	/* Rotate over enough copies that L2 holds none of them. */
	target = 4 * b->g.info.l2_bytes > 256 * MIB ? 4 * b->g.info.l2_bytes :
						      256 * MIB;
	if (b->g.fake)
		target = 2 * batch_bytes;
	rot = (uint32_t)((target + batch_bytes - 1) / batch_bytes);
	rot = rot > 64 ? 64 : rot < 1 ? 1 : rot;
	meta_bytes = s->metric ? batch_blocks * bs * 8 : 0;
	per_rot = batch_bytes + batch_blocks * 4 + meta_bytes;
	fixed = d.plan.ws_bytes + 2 * qn * 4 + nr * 4;
	while (rot > 1 && !fits(b, fixed + rot * per_rot))
		rot--;
	bytes = fixed + rot * per_rot;
	if (!fits(b, bytes)) {
		printf("decode %-32s skipped: needs %s, more than is free\n",
		       name, human_bytes(bytes, hb, sizeof(hb)));
		return 0;
	}
	r = alloc_or_skip(b, &pool, rot * batch_bytes);
	if (r > 0) {
		printf("decode %-32s skipped: out of device memory\n", name);
		return 0;
	}
	if (r)
		return -1;

	tables = gpu_malloc(rot * batch_blocks * sizeof(*tables));
	perm = gpu_malloc(rot * batch_blocks * sizeof(*perm));
	lens = gpu_malloc(nr * sizeof(*lens));
	q = gpu_malloc(qn * sizeof(*q));
	if (!tables || !perm || !lens || !q)
		goto out;
	/* Every rotation, head and block its own shuffled block id. */
	gpu_shuffle(perm, (uint32_t)(rot * batch_blocks), &b->rng);
	memcpy(tables, perm, rot * batch_blocks * sizeof(*tables));
	for (i = 0; i < nr; i++)
		lens[i] = s->ctx;
	for (i = 0; i < qn; i++)
		q[i] = gpu_uniform(&b->rng);
	if (fill_random(b, pool, rot * batch_bytes, s->dtype, 1.0f) ||
	    gpu_dup(&b->g, &d_tables, tables,
		    rot * batch_blocks * sizeof(*tables)) ||
	    gpu_dup(&b->g, &d_lens, lens, nr * sizeof(*lens)) ||
	    gpu_dup(&b->g, &d_q, q, qn * sizeof(*q)) ||
	    gpu_alloc(&b->g, &d_out, qn * 4) ||
	    gpu_alloc(&b->g, &d_ws, d.plan.ws_bytes))
		goto out;
	if (s->metric) {
		if (gpu_alloc(&b->g, &d_meta, rot * meta_bytes) ||
		    gpu_fill32(&b->g, d_meta, 0, rot * meta_bytes / 4))
			goto out;
	}
	d.args.kv = (struct kvc_kargs_paged){
		.base = pool,
		.block_bytes = block_bytes,
		.meta = d_meta,
		.block_size = bs,
		.head_dim = s->hd,
		.dtype = (uint32_t)s->dtype,
	};
	d.args.lens = d_lens;
	d.args.q = d_q;
	d.args.out = d_out;
	d.args.ws = d_ws;
	d.args.table_stride = stride;
	d.args.nr_heads = nr;
	d.args.group = group;
	d.args.metric = s->metric;
	d.args.part_tokens = d.plan.part_tokens;
	d.args.nr_parts = d.plan.nr_parts;
	d.args.max_len = s->ctx;
	d.args.scale = 1.0f / sqrtf((float)s->hd);
	d.tables = d_tables;
	d.rot_table_bytes = batch_blocks * 4;
	d.rotations = rot;
	if (time_runs(b, 3, b->repeats, decode_run, &d, &ms))
		goto out;

	/* What a step must read: K and V of every head, and the small
	 * arrays; with the metric, every slot's metadata read and written. */
	bytes = batch_bytes + 2 * qn * 4 + batch_blocks * 4 + nr * 4 +
		2 * meta_bytes;
	bw = (double)bytes / (ms * 1e-3);
	printf("decode %-32s %8.3f ms %7.0f GB/s %5.1f%% of peak %5.1f%% of D2D  (parts %u x %u tokens; %s x %u copies)\n",
	       name, ms, bw / 1e9, 100 * ratio_or_nan(bw, b->peak),
	       100 * ratio_or_nan(bw, b->d2d), d.plan.nr_parts,
	       d.plan.part_tokens, human_bytes(batch_bytes, hb, sizeof(hb)),
	       rot);
	fig_add("decode", name, bw / 1e9, "GB/s", b->d2d / 1e9, "D2D copy",
		ratio_or_nan(bw, b->peak));
	ret = 0;
out:
	gpu_free(&b->g, &pool);
	gpu_free(&b->g, &d_tables);
	gpu_free(&b->g, &d_lens);
	gpu_free(&b->g, &d_q);
	gpu_free(&b->g, &d_out);
	gpu_free(&b->g, &d_ws);
	gpu_free(&b->g, &d_meta);
	free(tables);
	free(perm);
	free(lens);
	free(q);
	return ret;
}

static int bench_decode(struct bench *b)
{
	static const uint32_t full_ctx[] = { 1024, 4096, 16384, 32768 };
	static const uint32_t full_batch[] = { 1, 4, 16, 64 };
	static const uint32_t fake_ctx[] = { 64, 256 };
	static const uint32_t fake_batch[] = { 1, 4 };
	const uint32_t *ctxs = b->o.fake ? fake_ctx : full_ctx;
	const uint32_t *batches = b->o.fake ? fake_batch : full_batch;
	uint32_t nc = b->o.fake ? 2 : 4, nb = b->o.fake ? 2 : 4, ci, bi;
	uint32_t mid_ctx = b->o.fake ? 256 : 16384,
		 mid_batch = b->o.fake ? 4 : 16;
	struct dshape s;

	printf("decode: bytes read / time of partition + reduce kernels (median of %u)\n",
	       b->repeats);
	for (ci = 0; ci < nc; ci++) {
		for (bi = 0; bi < nb; bi++) {
			if (b->o.quick && !b->o.fake && (ci % 2 || bi % 2) &&
			    !(ci == 3 && bi == 3))
				continue;
			s = (struct dshape){ "llama",
					     32,
					     8,
					     128,
					     KVC_DTYPE_F16,
					     KVC_METRIC_NONE,
					     ctxs[ci],
					     batches[bi] };
			if (bench_decode_one(b, &s))
				return -1;
		}
	}
	s = (struct dshape){
		"smollm2",	 9,	  3,	    64, KVC_DTYPE_F16,
		KVC_METRIC_NONE, mid_ctx, mid_batch
	};
	if (bench_decode_one(b, &s))
		return -1;
	s = (struct dshape){
		"llama",	 32,	  8,	    128, KVC_DTYPE_BF16,
		KVC_METRIC_NONE, mid_ctx, mid_batch
	};
	if (bench_decode_one(b, &s))
		return -1;
	s = (struct dshape){
		"llama",       32,	8,	  128, KVC_DTYPE_F16,
		KVC_METRIC_L2, mid_ctx, mid_batch
	};
	return bench_decode_one(b, &s);
}

/* ------------------------------------------------------------------ */
/* Block copy */

struct copy_run {
	struct bench *b;
	struct kvc_copy_args *args;
	kvc_cu_ptr buf;
	uint64_t bytes;
	uint32_t n;
	const uint32_t *pairs;
};

static int copy_kernel_run(void *arg, uint32_t i)
{
	struct copy_run *c = arg;

	(void)i;
	return KVC(kvc_cuda_block_copy(c->b->g.k, c->b->g.stream, c->args));
}

static int copy_d2d_run(void *arg, uint32_t i)
{
	struct copy_run *c = arg;

	(void)i;
	return CU(&c->b->g, c->b->g.drv->cuMemcpyDtoDAsync(
				    c->buf + (uint64_t)c->n * c->bytes, c->buf,
				    (uint64_t)c->n * c->bytes, c->b->g.stream));
}

/* The old path: one driver copy per block. */
static int copy_loop_run(void *arg, uint32_t i)
{
	struct copy_run *c = arg;
	uint32_t k;

	(void)i;
	for (k = 0; k < c->n; k++)
		if (CU(&c->b->g,
		       c->b->g.drv->cuMemcpyDtoDAsync(
			       c->buf + c->pairs[2 * k + 1] * c->bytes,
			       c->buf + c->pairs[2 * k] * c->bytes, c->bytes,
			       c->b->g.stream)))
			return -1;
	return 0;
}

static int bench_copy_one(struct bench *b, uint64_t bytes, uint32_t n)
{
	struct copy_run c = { .b = b, .bytes = bytes, .n = n };
	uint32_t *perm = NULL, *pairs = NULL, i, loops;
	kvc_cu_ptr buf = 0, d_pairs = 0;
	double ms_kernel, ms_d2d, ms_loop = 0, t[8], t0;
	double bw_kernel, bw_d2d, bw_loop, moved = 2.0 * n * bytes;
	char name[64], what[40], hb[32];
	struct gpu_timer tm = { 0 };
	int ret = -1, r;

	if (n % 1024)
		snprintf(what, sizeof(what), "%u x %s", n,
			 human_bytes(bytes, hb, sizeof(hb)));
	else
		snprintf(what, sizeof(what), "%uK x %s", n / 1024,
			 human_bytes(bytes, hb, sizeof(hb)));
	snprintf(name, sizeof(name), "%s, pairs_dev", what);
	if (!fits(b, 2ull * n * bytes + 8ull * n)) {
		printf("copy   %-32s skipped: not enough free memory\n", name);
		return 0;
	}
	r = alloc_or_skip(b, &buf, 2ull * n * bytes);
	if (r > 0) {
		printf("copy   %-32s skipped: out of device memory\n", name);
		return 0;
	}
	if (r)
		return -1;
	perm = gpu_malloc(2 * (size_t)n * sizeof(*perm));
	pairs = gpu_malloc(2 * (size_t)n * sizeof(*pairs));
	c.args = calloc(1, sizeof(*c.args));
	if (!perm || !pairs || !c.args)
		goto out;
	/* Sources: a random half of the blocks; destinations: the rest. */
	gpu_shuffle(perm, 2 * n, &b->rng);
	for (i = 0; i < n; i++) {
		pairs[2 * i] = perm[i];
		pairs[2 * i + 1] = perm[n + i];
	}
	if (gpu_fill32(&b->g, buf, 0x3c003c00u, n * bytes / 2) ||
	    gpu_dup(&b->g, &d_pairs, pairs, 2 * (size_t)n * sizeof(*pairs)))
		goto out;
	c.buf = buf;
	c.pairs = pairs;
	c.args->src_base = buf;
	c.args->dst_base = buf;
	c.args->bytes = bytes;
	c.args->pairs_dev = d_pairs;
	c.args->n = n;
	if (time_runs(b, 2, b->repeats, copy_kernel_run, &c, &ms_kernel) ||
	    time_runs(b, 2, b->repeats, copy_d2d_run, &c, &ms_d2d))
		goto out;

	/* The old path is bound by the host's calls: no busy copy ahead,
	 * events around the whole loop, its host time beside. */
	loops = b->o.fake ? 1 : b->o.quick ? 2 : 3;
	if (copy_loop_run(&c, 0) || gpu_sync(&b->g) ||
	    gpu_timer_create(&b->g, &tm, loops))
		goto out;
	t0 = gpu_now();
	for (i = 0; i < loops; i++)
		if (gpu_timer_mark(&b->g, &tm, i, false) ||
		    copy_loop_run(&c, i) || gpu_timer_mark(&b->g, &tm, i, true))
			goto out;
	if (gpu_timer_read(&b->g, &tm, t))
		goto out;
	t0 = (gpu_now() - t0) / loops;
	ms_loop = gpu_median(t, loops);

	bw_kernel = moved / (ms_kernel * 1e-3);
	bw_d2d = moved / (ms_d2d * 1e-3);
	bw_loop = moved / (ms_loop * 1e-3);
	printf("copy   %-32s kernel %7.0f GB/s, one D2D copy %7.0f GB/s: %.2f; per-block copies %6.1f GB/s (%.1f us a block, host %.1f us): kernel x%.0f\n",
	       name, bw_kernel / 1e9, bw_d2d / 1e9, bw_kernel / bw_d2d,
	       bw_loop / 1e9, 1e3 * ms_loop / n, 1e6 * t0 / n,
	       bw_kernel / bw_loop);
	fig_add("copy", name, bw_kernel / 1e9, "GB/s", bw_d2d / 1e9,
		"D2D copy, same bytes", ratio_or_nan(bw_kernel, b->peak));
	snprintf(name, sizeof(name), "%s, per-block copies", what);
	fig_add("copy", name, bw_loop / 1e9, "GB/s", bw_kernel / 1e9,
		"block copy kernel", ratio_or_nan(bw_loop, b->peak));
	ret = 0;
out:
	if (ret)
		gpu_sync(&b->g);
	gpu_timer_destroy(&b->g, &tm);
	gpu_free(&b->g, &buf);
	gpu_free(&b->g, &d_pairs);
	free(perm);
	free(pairs);
	free(c.args);
	return ret;
}

static int bench_copy(struct bench *b)
{
	uint32_t n = b->o.fake ? 256 : 65536;

	printf("block copy: bytes read + written / time (median of %u)\n",
	       b->repeats);
	if (bench_copy_one(b, 4096, n))
		return -1;
	return bench_copy_one(b, 16384, n);
}

/* ------------------------------------------------------------------ */
/* Prefill, and cuBLAS as the unfused alternative */

/* The few cuBLAS declarations used (cublas_api.h, library_types.h). */
#define CUBLAS_STATUS_SUCCESS 0
#define CUBLAS_OP_N 0
#define CUBLAS_OP_T 1
#define CUBLAS_GEMM_DEFAULT (-1)
#define CUBLAS_COMPUTE_32F 68
#define CUDA_R_16F 2

typedef int (*cublas_create_fn)(void **handle);
typedef int (*cublas_destroy_fn)(void *handle);
typedef int (*cublas_set_stream_fn)(void *handle, void *stream);
typedef int (*cublas_gemm_fn)(void *handle, int transa, int transb, int m,
			      int n, int k, const void *alpha, const void *a,
			      int atype, int lda, long long stride_a,
			      const void *b, int btype, int ldb,
			      long long stride_b, const void *beta, void *c,
			      int ctype, int ldc, long long stride_c, int batch,
			      int compute, int algo);

/**
 * struct cublas - cuBLAS, loaded at run time.
 * @lib: the library.
 * @handle: a cuBLAS handle on the bench's stream.
 * @destroy: cublasDestroy_v2.
 * @gemm: cublasGemmStridedBatchedEx.
 */
struct cublas {
	void *lib;
	void *handle;
	cublas_destroy_fn destroy;
	cublas_gemm_fn gemm;
};

static void cublas_close(struct cublas *cb)
{
	if (cb->handle)
		cb->destroy(cb->handle);
	if (cb->lib)
		dlclose(cb->lib);
	memset(cb, 0, sizeof(*cb));
}

/* Load cuBLAS; 0, or -1 with the reason in @why. */
static int cublas_open(struct cublas *cb, kvc_cu_stream stream, char *why,
		       size_t len)
{
	static const char *const names[] = {
		"libcublas.so.13",
		"libcublas.so.12",
		/* the toolkit's default prefix, when not in the loader's path */
		"/usr/local/cuda/lib64/libcublas.so.13",
		"/usr/local/cuda/lib64/libcublas.so.12",
	};
	cublas_create_fn create;
	cublas_set_stream_fn set_stream;
	char path[512];
	const char *home = getenv("CUDA_HOME");
	size_t i;
	int r;

	memset(cb, 0, sizeof(*cb));
	if (home && *home) {
		snprintf(path, sizeof(path), "%s/lib64/libcublas.so", home);
		cb->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	}
	for (i = 0; !cb->lib && i < sizeof(names) / sizeof(names[0]); i++)
		cb->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
	if (!cb->lib) {
		snprintf(why, len, "no libcublas.so.13 or .12 (%s)", dlerror());
		return -1;
	}
	*(void **)&create = dlsym(cb->lib, "cublasCreate_v2");
	*(void **)&set_stream = dlsym(cb->lib, "cublasSetStream_v2");
	*(void **)&cb->destroy = dlsym(cb->lib, "cublasDestroy_v2");
	*(void **)&cb->gemm = dlsym(cb->lib, "cublasGemmStridedBatchedEx");
	if (!create || !set_stream || !cb->destroy || !cb->gemm) {
		snprintf(why, len, "cuBLAS lacks the entry points used");
		cublas_close(cb);
		return -1;
	}
	r = create(&cb->handle);
	if (r != CUBLAS_STATUS_SUCCESS) {
		cb->handle = NULL;
		snprintf(why, len, "cublasCreate_v2 failed (status %d)", r);
		cublas_close(cb);
		return -1;
	}
	r = set_stream(cb->handle, stream);
	if (r != CUBLAS_STATUS_SUCCESS) {
		snprintf(why, len, "cublasSetStream_v2 failed (status %d)", r);
		cublas_close(cb);
		return -1;
	}
	return 0;
}

struct prefill_run {
	struct bench *b;
	struct kvc_prefill_args args;
	struct kvc_prefill_plan plan;
};

static int prefill_run(void *arg, uint32_t i)
{
	struct prefill_run *p = arg;

	(void)i;
	return KVC(kvc_cuda_prefill(p->b->g.k, p->b->g.stream, &p->args,
				    &p->plan));
}

/* The fused kernels for one sequence of @n tokens; @ms gets the time. */
static int bench_prefill_one(struct bench *b, uint32_t n, bool metric,
			     double *ms)
{
	const uint32_t q_heads = 32, kv_heads = 8, hd = 128, bs = 16;
	uint32_t group = q_heads / kv_heads, stride = (n + bs - 1) / bs, i, j;
	uint32_t nblocks = kv_heads * stride + 16, *tables = NULL, *perm = NULL;
	uint32_t *lens = NULL;
	uint64_t block_bytes = 2ull * bs * hd * 2;
	size_t qn = (size_t)n * q_heads * hd;
	kvc_cu_ptr pool = 0, d_tables = 0, d_lens = 0, d_q = 0, d_out = 0;
	kvc_cu_ptr d_ws = 0, d_meta = 0;
	struct kvc_slot_meta *meta = NULL;
	struct prefill_run p = { .b = b };
	struct kvc_attn_shape shape = {
		.nr_heads = kv_heads,
		.kv_heads = kv_heads,
		.group = group,
		.head_dim = hd,
		.block_size = bs,
		.max_len = n,
		.dtype = KVC_DTYPE_F16,
		.metric = metric ? KVC_METRIC_L2 : KVC_METRIC_NONE,
	};
	float *q = NULL;
	int ret = -1;

	if (KVC(kvc_prefill_plan(&b->g.info, &shape, n, 0, &p.plan)))
		return -1;
	tables = gpu_malloc((size_t)kv_heads * stride * sizeof(*tables));
	perm = gpu_malloc((size_t)nblocks * sizeof(*perm));
	lens = gpu_malloc(kv_heads * sizeof(*lens));
	meta = calloc((size_t)nblocks * bs, sizeof(*meta));
	q = gpu_malloc(qn * sizeof(*q));
	if (!tables || !perm || !lens || !meta || !q)
		goto out;
	gpu_shuffle(perm, nblocks, &b->rng);
	for (i = 0; i < kv_heads; i++) {
		lens[i] = n;
		for (j = 0; j < stride; j++)
			tables[i * stride + j] = perm[i * stride + j];
		for (j = 0; j < n; j++)
			meta[(uint64_t)tables[i * stride + j / bs] * bs +
			     j % bs]
				.pos = (int32_t)j;
	}
	for (i = 0; i < qn; i++)
		q[i] = gpu_uniform(&b->rng);
	if (gpu_alloc(&b->g, &pool, nblocks * block_bytes) ||
	    fill_random(b, pool, nblocks * block_bytes, KVC_DTYPE_F16, 1.0f) ||
	    gpu_dup(&b->g, &d_tables, tables,
		    (size_t)kv_heads * stride * sizeof(*tables)) ||
	    gpu_dup(&b->g, &d_lens, lens, kv_heads * sizeof(*lens)) ||
	    gpu_dup(&b->g, &d_q, q, qn * sizeof(*q)) ||
	    gpu_dup(&b->g, &d_meta, meta,
		    (size_t)nblocks * bs * sizeof(*meta)) ||
	    gpu_alloc(&b->g, &d_out, qn * sizeof(*q)) ||
	    gpu_alloc(&b->g, &d_ws, p.plan.ws_bytes))
		goto out;
	p.args.kv = (struct kvc_kargs_paged){
		.base = pool,
		.block_bytes = block_bytes,
		.meta = d_meta,
		.block_size = bs,
		.head_dim = hd,
		.dtype = KVC_DTYPE_F16,
	};
	p.args.tables = d_tables;
	p.args.lens = d_lens;
	p.args.q = d_q;
	p.args.out = d_out;
	p.args.ws = d_ws;
	p.args.table_stride = stride;
	p.args.nr_heads = kv_heads;
	p.args.kv_heads = kv_heads;
	p.args.group = group;
	p.args.n = n;
	p.args.metric = shape.metric;
	p.args.max_len = n;
	p.args.scale = 1.0f / sqrtf((float)hd);
	ret = time_runs(b, 2, b->repeats, prefill_run, &p, ms);
out:
	gpu_free(&b->g, &pool);
	gpu_free(&b->g, &d_tables);
	gpu_free(&b->g, &d_lens);
	gpu_free(&b->g, &d_q);
	gpu_free(&b->g, &d_out);
	gpu_free(&b->g, &d_ws);
	gpu_free(&b->g, &d_meta);
	free(tables);
	free(perm);
	free(lens);
	free(meta);
	free(q);
	return ret;
}

struct gemm_run {
	struct bench *b;
	struct cublas *cb;
	kvc_cu_ptr q, k, v, s, o;
	int n, m, hd, heads;
	float scale;
};

/* S = scale Q K^T, then O = S V, per KV head (its group's queries as
 * rows), row-major data through cuBLAS's column-major view. */
static int gemm_run(void *arg, uint32_t i)
{
	struct gemm_run *r = arg;
	const float one = 1.0f, zero = 0.0f;
	int st;

	(void)i;
	st = r->cb->gemm(r->cb->handle, CUBLAS_OP_T, CUBLAS_OP_N, r->n, r->m,
			 r->hd, &r->scale, (const void *)(uintptr_t)r->k,
			 CUDA_R_16F, r->hd, (long long)r->n * r->hd,
			 (const void *)(uintptr_t)r->q, CUDA_R_16F, r->hd,
			 (long long)r->m * r->hd, &zero,
			 (void *)(uintptr_t)r->s, CUDA_R_16F, r->n,
			 (long long)r->m * r->n, r->heads, CUBLAS_COMPUTE_32F,
			 CUBLAS_GEMM_DEFAULT);
	if (st == CUBLAS_STATUS_SUCCESS)
		st = r->cb->gemm(
			r->cb->handle, CUBLAS_OP_N, CUBLAS_OP_N, r->hd, r->m,
			r->n, &one, (const void *)(uintptr_t)r->v, CUDA_R_16F,
			r->hd, (long long)r->n * r->hd,
			(const void *)(uintptr_t)r->s, CUDA_R_16F, r->n,
			(long long)r->m * r->n, &zero, (void *)(uintptr_t)r->o,
			CUDA_R_16F, r->hd, (long long)r->m * r->hd, r->heads,
			CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
	if (st != CUBLAS_STATUS_SUCCESS) {
		fprintf(stderr, "cublasGemmStridedBatchedEx: status %d\n", st);
		return -1;
	}
	return 0;
}

/* cuBLAS on the same shape; @ms 0 when it could not run for want of
 * memory. */
static int bench_gemm(struct bench *b, struct cublas *cb, uint32_t n,
		      double *ms)
{
	struct gemm_run r = {
		.b = b,
		.cb = cb,
		.n = (int)n,
		.m = 4 * (int)n,
		.hd = 128,
		.heads = 8,
		.scale = 1.0f / sqrtf(128.0f),
	};
	uint64_t qo = 8ull * 4 * n * 128 * 2, kv = 8ull * n * 128 * 2;
	uint64_t s = 8ull * 4 * n * n * 2;
	int ret = -1;

	*ms = 0;
	if (!fits(b, 2 * qo + 2 * kv + s))
		return 0;
	if (gpu_alloc(&b->g, &r.q, qo) || gpu_alloc(&b->g, &r.o, qo) ||
	    gpu_alloc(&b->g, &r.k, kv) || gpu_alloc(&b->g, &r.v, kv) ||
	    gpu_alloc(&b->g, &r.s, s) ||
	    fill_random(b, r.q, qo, KVC_DTYPE_F16, 0.5f) ||
	    fill_random(b, r.k, kv, KVC_DTYPE_F16, 0.5f) ||
	    fill_random(b, r.v, kv, KVC_DTYPE_F16, 0.5f))
		goto out;
	ret = time_runs(b, 3, b->repeats, gemm_run, &r, ms);
out:
	gpu_sync(&b->g);
	gpu_free(&b->g, &r.q);
	gpu_free(&b->g, &r.o);
	gpu_free(&b->g, &r.k);
	gpu_free(&b->g, &r.v);
	gpu_free(&b->g, &r.s);
	return ret;
}

static int bench_prefill(struct bench *b)
{
	uint32_t ns[2] = { 512, 2048 }, i;
	struct cublas cb = { 0 };
	bool have_cublas = false;
	char why[256] = "";
	double ms, ms_l2, ms_blas, fl, tf, tf_l2;
	char name[64];

	if (b->o.fake) {
		ns[0] = 64;
		ns[1] = 128;
		snprintf(why, sizeof(why), "no cuBLAS on the fake driver");
	} else {
		have_cublas = !cublas_open(&cb, b->g.stream, why, sizeof(why));
	}
	printf("prefill: one sequence, 32/8 heads, head_dim 128, f16 (median of %u)%s%s\n",
	       b->repeats,
	       have_cublas ? "" : "; cuBLAS skipped: ", have_cublas ? "" : why);
	for (i = 0; i < 2; i++) {
		uint32_t n = ns[i];

		fl = 4.0 * 128 * 32 * n * (n + 1) / 2.0;
		if (bench_prefill_one(b, n, false, &ms) ||
		    bench_prefill_one(b, n, true, &ms_l2))
			goto err;
		tf = fl / (ms * 1e-3) / 1e12;
		tf_l2 = fl / (ms_l2 * 1e-3) / 1e12;
		ms_blas = 0;
		if (have_cublas && bench_gemm(b, &cb, n, &ms_blas))
			goto err;
		printf("prefill n %-5u fused %8.3f ms %6.1f TFLOP/s; with L2 metric %8.3f ms %6.1f TFLOP/s (x%.2f)",
		       n, ms, tf, ms_l2, tf_l2, ms_l2 / ms);
		if (ms_blas > 0)
			printf("; cuBLAS QK^T + PV (all n x n) %8.3f ms %6.1f TFLOP/s: fused / cuBLAS time %.2f\n",
			       ms_blas,
			       4.0 * 128 * 32 * (double)n * n /
				       (ms_blas * 1e-3) / 1e12,
			       ms / ms_blas);
		else
			printf("\n");
		snprintf(name, sizeof(name), "fused, n %u", n);
		fig_add("prefill", name, ms, "ms", ms_blas > 0 ? ms_blas : NAN,
			"cuBLAS QK^T + PV", NAN);
		snprintf(name, sizeof(name), "fused, n %u, TFLOP/s", n);
		fig_add("prefill", name, tf, "TFLOP/s", NAN, NULL, NAN);
		snprintf(name, sizeof(name), "fused + l2 metric, n %u", n);
		fig_add("prefill", name, ms_l2, "ms", ms, "fused, no metric",
			NAN);
		if (ms_blas > 0) {
			snprintf(name, sizeof(name), "cuBLAS, n %u, TFLOP/s",
				 n);
			fig_add("prefill", name,
				4.0 * 128 * 32 * (double)n * n /
					(ms_blas * 1e-3) / 1e12,
				"TFLOP/s", NAN, NULL, NAN);
		}
	}
	cublas_close(&cb);
	return 0;
err:
	cublas_close(&cb);
	return -1;
}

/* ------------------------------------------------------------------ */
/* VMM */

static uint64_t driver_calls(const struct kvc_pool_stats *s)
{
	return s->backend_create + s->backend_map + s->backend_set_access +
	       s->backend_unmap + s->backend_release;
}

/* A pool of @blocks blocks of @block_bytes on the cuda backend. */
static int vmm_pool(struct bench *b, struct kvc_backend **be,
		    uint64_t block_bytes, uint64_t blocks, uint32_t kept,
		    struct kvc_pool **pool)
{
	struct kvc_pool_params p;

	kvc_pool_params_init(&p);
	p.block_bytes = block_bytes;
	p.capacity_blocks = blocks;
	p.empty_chunks_kept = kept;
	p.flags = KVC_POOL_NO_STATS_PAGE;
	p.name = "bench-gpu";
	p.backend_kind = KVC_BACKEND_CUDA;
	*be = NULL;
	if (b->g.fake) {
		/* The fake is one table per process: the pool maps on it. */
		if (KVC(kvc_backend_open_cuda_driver(b->g.drv, 0, be)))
			return -1;
		p.backend = *be;
	}
	if (KVC(kvc_pool_create(&p, pool))) {
		kvc_backend_close(*be);
		*be = NULL;
		return -1;
	}
	return 0;
}

static void vmm_pool_destroy(struct kvc_pool *pool, struct kvc_backend *be)
{
	KVC(kvc_pool_destroy(pool));
	kvc_backend_close(be);
}

/* Grow a pool chunk by chunk, then trim it, timing each chunk. */
static int bench_vmm_chunks(struct bench *b)
{
	const uint64_t block_bytes = 8192;
	uint32_t chunks = b->o.fake ? 8 : b->o.quick ? 64 : 256, c, per;
	double *grow = NULL, *trim = NULL, *al = NULL, *fr = NULL, t0;
	struct kvc_pool_stats st0, st;
	struct kvc_backend *be = NULL;
	struct kvc_pool *pool = NULL;
	uint32_t *ids = NULL;
	uint64_t chunk;
	kvc_cu_ptr p;
	int ret = -1;

	if (vmm_pool(b, &be, block_bytes, 1, 0, &pool))
		return -1;
	kvc_pool_get_stats(pool, &st, NULL);
	chunk = st.chunk_bytes;
	vmm_pool_destroy(pool, be);
	pool = NULL;
	if (!fits(b, chunks * chunk)) {
		printf("vmm: skipped: %u chunks do not fit\n", chunks);
		return 0;
	}
	if (vmm_pool(b, &be, block_bytes, chunks * (chunk / block_bytes), 0,
		     &pool))
		return -1;
	per = (uint32_t)(chunk / block_bytes);
	grow = calloc(chunks, sizeof(*grow));
	trim = calloc(chunks, sizeof(*trim));
	al = calloc(chunks, sizeof(*al));
	fr = calloc(chunks, sizeof(*fr));
	ids = calloc((size_t)chunks * per, sizeof(*ids));
	if (!grow || !trim || !al || !fr || !ids)
		goto out;
	kvc_pool_get_stats(pool, &st0, NULL);
	/* Every chunk full before the next: each alloc maps one chunk. */
	for (c = 0; c < chunks; c++) {
		t0 = gpu_now();
		if (KVC(kvc_pool_alloc(pool, per, ids + (size_t)c * per)))
			goto out;
		grow[c] = gpu_now() - t0;
	}
	kvc_pool_get_stats(pool, &st, NULL);
	if (st.backend_create - st0.backend_create != chunks)
		printf("vmm: note: %" PRIu64 " chunks created for %u allocs\n",
		       st.backend_create - st0.backend_create, chunks);
	/* No empty chunk kept: each free of a chunk's blocks unmaps it. */
	for (c = 0; c < chunks; c++) {
		t0 = gpu_now();
		if (KVC(kvc_pool_free(pool, per, ids + (size_t)c * per)))
			goto out;
		trim[c] = gpu_now() - t0;
	}
	for (c = 0; c < chunks; c++) {
		t0 = gpu_now();
		if (CU(&b->g, b->g.drv->cuMemAlloc(&p, chunk)))
			goto out;
		al[c] = gpu_now() - t0;
		t0 = gpu_now();
		if (CU(&b->g, b->g.drv->cuMemFree(p)))
			goto out;
		fr[c] = gpu_now() - t0;
	}
	{
		double g_us = 1e6 * gpu_median(grow, chunks);
		double t_us = 1e6 * gpu_median(trim, chunks);
		double a_us = 1e6 * gpu_median(al, chunks);
		double f_us = 1e6 * gpu_median(fr, chunks);
		char hb[32];

		printf("vmm: chunk of %s: grow (create + map + set access) %.1f us, cuMemAlloc %.1f us: x%.2f; trim (unmap + release) %.1f us, cuMemFree %.1f us: x%.2f (medians of %u, host clock)\n",
		       human_bytes(chunk, hb, sizeof(hb)), g_us, a_us,
		       g_us / a_us, t_us, f_us, t_us / f_us, chunks);
		fig_add("vmm", "pool growth, per chunk", g_us, "us", a_us,
			"cuMemAlloc of a chunk", NAN);
		fig_add("vmm", "pool trim, per chunk", t_us, "us", f_us,
			"cuMemFree of a chunk", NAN);
	}
	ret = 0;
out:
	vmm_pool_destroy(pool, be);
	free(grow);
	free(trim);
	free(al);
	free(fr);
	free(ids);
	return ret;
}

/**
 * struct sim_seq - One sequence of the simulated decode.
 * @ids: its blocks, @tables per token block.
 * @nr: blocks held.
 * @cap: room in @ids.
 * @tokens: tokens so far.
 * @end: tokens at which it finishes.
 */
struct sim_seq {
	uint32_t *ids;
	uint32_t nr;
	uint32_t cap;
	uint32_t tokens;
	uint32_t end;
};

/* Start a sequence: its prompt's blocks for every table in one call. */
static int sim_start(struct bench *b, struct kvc_pool *pool, struct sim_seq *s,
		     uint32_t tables, uint32_t max_prompt, uint32_t max_gen,
		     uint64_t *blocks)
{
	uint32_t prompt = 16 + (uint32_t)gpu_below(&b->rng, max_prompt - 15);
	uint32_t need = (prompt + 15) / 16 * tables;

	s->tokens = prompt;
	s->end = prompt + 8 + (uint32_t)gpu_below(&b->rng, max_gen - 7);
	s->nr = 0;
	if (KVC(kvc_pool_alloc(pool, need, s->ids)))
		return -1;
	s->nr = need;
	*blocks += need;
	return 0;
}

/* A decode of sequences that grow, finish and are replaced. */
static int bench_vmm_decode(struct bench *b)
{
	uint32_t layers = b->o.fake ? 2 : 32, kv_heads = 8;
	uint32_t tables = layers * kv_heads, nseq = b->o.fake ? 4 : 16;
	uint32_t max_prompt = b->o.fake ? 128 : 1024;
	uint32_t max_gen = b->o.fake ? 64 : 256;
	uint32_t steps = b->o.fake ? 60 : b->o.quick ? 200 : 400, i, step;
	uint32_t per_seq = ((max_prompt + max_gen) / 16 + 2) * tables;
	struct kvc_pool_stats st0, st;
	struct kvc_backend *be = NULL;
	struct kvc_pool *pool = NULL;
	struct sim_seq *seqs = NULL;
	uint64_t blocks = 0, calls0, max_calls = 0, c;
	double *host = NULL, t0, calls_per_step, blocks_per_step, host_us;
	int ret = -1;

	if (!fits(b, (uint64_t)nseq * per_seq * 8192)) {
		printf("vmm: decode simulation skipped: does not fit\n");
		return 0;
	}
	if (vmm_pool(b, &be, 8192, (uint64_t)nseq * per_seq, 1, &pool))
		return -1;
	seqs = calloc(nseq, sizeof(*seqs));
	host = calloc(steps, sizeof(*host));
	if (!seqs || !host)
		goto out;
	for (i = 0; i < nseq; i++) {
		seqs[i].cap = per_seq;
		seqs[i].ids = calloc(per_seq, sizeof(*seqs[i].ids));
		if (!seqs[i].ids || sim_start(b, pool, &seqs[i], tables,
					      max_prompt, max_gen, &blocks))
			goto out;
	}
	kvc_pool_get_stats(pool, &st0, NULL);
	blocks = 0;
	for (step = 0; step < steps; step++) {
		kvc_pool_get_stats(pool, &st, NULL);
		calls0 = driver_calls(&st);
		t0 = gpu_now();
		for (i = 0; i < nseq; i++) {
			struct sim_seq *s = &seqs[i];

			if (s->tokens >= s->end) {
				if (KVC(kvc_pool_free(pool, s->nr, s->ids)))
					goto out;
				blocks += s->nr;
				if (sim_start(b, pool, s, tables, max_prompt,
					      max_gen, &blocks))
					goto out;
				continue;
			}
			/* A token that starts a block: one per table. */
			if (s->tokens % 16 == 0) {
				if (s->nr + tables > s->cap)
					goto out;
				if (KVC(kvc_pool_alloc(pool, tables,
						       s->ids + s->nr)))
					goto out;
				s->nr += tables;
				blocks += tables;
			}
			s->tokens++;
		}
		host[step] = gpu_now() - t0;
		kvc_pool_get_stats(pool, &st, NULL);
		c = driver_calls(&st) - calls0;
		max_calls = c > max_calls ? c : max_calls;
	}
	kvc_pool_get_stats(pool, &st, NULL);
	calls_per_step =
		(double)(driver_calls(&st) - driver_calls(&st0)) / steps;
	blocks_per_step = (double)blocks / steps;
	for (step = 0, host_us = 0; step < steps; step++)
		host_us += 1e6 * host[step] / steps;
	printf("vmm: decode of %u sequences x %u tables, %u steps: %.2f driver calls a step (at most %" PRIu64
	       "), %.0f blocks allocated or freed a step: x%.4f; pool calls %.1f us a step (mean, host)\n",
	       nseq, tables, steps, calls_per_step, max_calls, blocks_per_step,
	       ratio_or_nan(calls_per_step, blocks_per_step), host_us);
	fig_add("vmm", "driver calls per decode step", calls_per_step, "calls",
		blocks_per_step, "blocks alloc'd + freed a step", NAN);
	fig_add("vmm", "pool time per decode step", host_us, "us", NAN, NULL,
		NAN);
	ret = 0;
out:
	for (i = 0; seqs && i < nseq; i++)
		free(seqs[i].ids);
	free(seqs);
	free(host);
	vmm_pool_destroy(pool, be);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Output */

static void print_table(const struct bench *b)
{
	unsigned int i;

	printf("\n%-8s %-36s %12s %-8s %12s  %-30s %7s %7s\n", "section",
	       "figure", "value", "unit", "baseline", "(what)", "ratio",
	       "of peak");
	for (i = 0; i < nr_figs; i++) {
		const struct fig *f = &figs[i];
		char base[16] = "-", ratio[16] = "-", peak[16] = "-";

		if (!isnan(f->base))
			snprintf(base, sizeof(base), "%12.3f", f->base);
		if (!isnan(f->ratio))
			snprintf(ratio, sizeof(ratio), "%7.3f", f->ratio);
		if (!isnan(f->peak_ratio))
			snprintf(peak, sizeof(peak), "%6.1f%%",
				 100 * f->peak_ratio);
		printf("%-8s %-36s %12.3f %-8s %12s  %-30s %7s %7s\n",
		       f->section, f->name, f->value, f->unit, base,
		       f->base_name, ratio, peak);
	}
	if (b->g.fake)
		printf("(fake driver: every time above is meaningless; the run checks the program's logic)\n");
}

static void json_num(FILE *f, const char *key, double v, bool comma)
{
	if (isnan(v) || isinf(v))
		fprintf(f, "\"%s\": null%s", key, comma ? ", " : "");
	else
		fprintf(f, "\"%s\": %.6g%s", key, v, comma ? ", " : "");
}

static int write_json(const struct bench *b, const char *path)
{
	const struct kvc_gpu_info *in = &b->g.info;
	FILE *f = fopen(path, "w");
	unsigned int i;

	if (!f) {
		fprintf(stderr, "%s: cannot write %s: %s\n", PROG, path,
			strerror(errno));
		return -1;
	}
	fprintf(f, "{\n  \"program\": \"%s\",\n  \"fake\": %s,\n", PROG,
		b->g.fake ? "true" : "false");
	fprintf(f, "  \"timings_meaningful\": %s,\n  \"quick\": %s,\n",
		b->g.fake ? "false" : "true", b->o.quick ? "true" : "false");
	fprintf(f, "  \"seed\": %" PRIu64 ",\n  \"repeats\": %u,\n", b->o.seed,
		b->repeats);
	fprintf(f,
		"  \"device\": {\"sms\": %u, \"cc\": \"%u.%u\", \"l2_bytes\": %" PRIu64
		", \"total_bytes\": %zu, ",
		in->sms, in->cc_major, in->cc_minor, in->l2_bytes,
		b->total_bytes);
	json_num(f, "peak_GBps", b->peak / 1e9, true);
	json_num(f, "d2d_GBps", b->d2d / 1e9, false);
	fprintf(f, "},\n  \"figures\": [\n");
	for (i = 0; i < nr_figs; i++) {
		const struct fig *fg = &figs[i];

		fprintf(f,
			"    {\"section\": \"%s\", \"name\": \"%s\", \"unit\": \"%s\", \"baseline_name\": \"%s\", ",
			fg->section, fg->name, fg->unit, fg->base_name);
		json_num(f, "value", fg->value, true);
		json_num(f, "baseline", fg->base, true);
		json_num(f, "ratio", fg->ratio, true);
		json_num(f, "peak_ratio", fg->peak_ratio, false);
		fprintf(f, "}%s\n", i + 1 < nr_figs ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
	if (fclose(f)) {
		fprintf(stderr, "%s: cannot write %s\n", PROG, path);
		return -1;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_gpu [--fake] [--quick] [--json FILE] [--seed N]\n"
		"  --fake       tiny sizes on the fake driver: checks the program, times meaningless\n"
		"  --quick      fewer sizes and repeats\n"
		"  --json FILE  write every figure as JSON to FILE\n"
		"  --seed N     inputs from seed N (default %u)\n",
		DEFAULT_SEED);
}

int main(int argc, char **argv)
{
	struct bench b;
	double t0 = gpu_now();
	int i, err;

	memset(&b, 0, sizeof(b));
	b.o.seed = DEFAULT_SEED;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--fake")) {
			b.o.fake = true;
		} else if (!strcmp(argv[i], "--quick")) {
			b.o.quick = true;
		} else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			b.o.json = argv[++i];
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			b.o.seed = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	b.rng = b.o.seed;
	b.repeats = b.o.fake ? 3 : b.o.quick ? 10 : 25;
	err = gpu_open(&b.g, b.o.fake, PROG);
	if (err == GPU_EXIT_SKIP)
		return GPU_EXIT_SKIP;
	if (err)
		return 1;
	if (b.o.fake)
		printf("%s: FAKE driver, kernels emulated on the CPU: timings are meaningless\n",
		       PROG);
	err = bench_device(&b);
	if (!err)
		err = bench_decode(&b);
	if (!err)
		err = bench_copy(&b);
	if (!err)
		err = bench_prefill(&b);
	if (!err)
		err = bench_vmm_chunks(&b);
	if (!err)
		err = bench_vmm_decode(&b);
	if (!err)
		print_table(&b);
	if (!err && b.o.json && write_json(&b, b.o.json))
		err = -1;
	gpu_free(&b.g, &b.busy_src);
	gpu_free(&b.g, &b.busy_dst);
	if (gpu_close(&b.g))
		err = -1;
	printf("%s: %s (%.1f s)\n", PROG, err ? "FAILED" : "done",
	       gpu_now() - t0);
	return err ? 1 : 0;
}
