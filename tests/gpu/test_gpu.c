// SPDX-License-Identifier: MIT
/*
 * test_gpu: every CUDA kernel against its C reference, on fresh seeded
 * random inputs, through the driver table (no cuda.h).
 *
 * Decode and prefill attention are compared with kvc_attn_decode_ref()
 * and kvc_attn_prefill_ref_ws() over the same stored K and V (f32, f16,
 * bf16 read back exactly as f32 on both sides), so outputs differ only by
 * the order of summation and the precision of the products: relative
 * error ||o - r|| / ||r|| per head at most 1e-5 for f32 storage (3e-5 in
 * prefill, whose products keep 16 bits of an f32 operand) and 2e-3 for
 * f16 and bf16 storage (kernels may keep halves in their inner loops).
 * The metric is compared per slot, |m - r| over the norm of the head's
 * reference metric, with the same bounds (twice them for L2, which
 * squares the weights); slots outside every head's context and every
 * position must come back bit for bit. Outputs and workspaces are filled with a NaN
 * pattern before each launch: an element that keeps it was never written.
 * Cache write, move and block copy must match their CPU counterparts bit
 * for bit over the whole buffer (an f32 NaN stored as f16 or bf16 may
 * come back as any NaN).
 *
 * Blocks sit at shuffled ids in one device buffer; every head of a batch
 * has its own length (0 and lengths that end inside a block included).
 * Every driver call is checked, and the stream synchronised and checked
 * after every launch.
 *
 * Options: --fake (the fake driver, kernels emulated on the CPU, smaller
 * sizes), --quick (fewer shapes), --seed N, --verbose (name the case of
 * each group's largest error). Exit 0 when every check
 * passes, 1 otherwise, 77 when there is no driver or GPU (without --fake).
 */
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

#include "attention.h"
#include "gpu_util.h"
#include "half.h"

#define PROG "test-gpu"
#define DEFAULT_SEED 0x6b7663u
/* Failures printed in full per group; the rest are only counted. */
#define MAX_REPORTS 4

/*
 * Bounds on ||o - r|| / ||r||. Decode is f32 arithmetic on both sides:
 * only the order of sums (and FMA contraction) differs. The prefill
 * kernel multiplies an f32 operand as two bf16 parts, 16 significant
 * bits (prefill.cu), so each product may be off by 2^-16 relative: its
 * f32 bound is 3e-5, twice that. f16 and bf16 storage leaves room for
 * kernels that keep halves in their inner loops. The L2 metric squares
 * a weight, doubling its relative error: twice the bound.
 */
#define TOL_F32 1e-5
#define TOL_F32_PREFILL 3e-5
#define TOL_HALF 2e-3

struct opts {
	bool fake;
	bool quick;
	uint64_t seed;
};

/**
 * struct tally - One group of cases, printed as one line.
 * @name: what the group covers.
 * @pass: checks passed.
 * @fail: checks failed.
 * @reports: failures printed so far.
 * @err: largest error seen: [0] outputs, [1] metric.
 * @tol: the bound each is held to (0: not measured in this group).
 * @t0: when the group started.
 */
struct tally {
	char name[96];
	uint32_t pass;
	uint32_t fail;
	uint32_t reports;
	double err[2];
	double tol[2];
	char worst[2][96];
	double t0;
};

static uint32_t total_pass, total_fail;
/* --verbose: name the case of each group's largest error. */
static bool verbose;

static void tally_begin(struct tally *t, const char *fmt, ...)
{
	va_list ap;

	memset(t, 0, sizeof(*t));
	va_start(ap, fmt);
	vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	t->t0 = gpu_now();
}

/* Print one failure of the group (the first few only). */
static void tally_report(struct tally *t, const char *fmt, ...)
{
	va_list ap;

	if (t->reports++ >= MAX_REPORTS)
		return;
	printf("  FAIL %s: ", t->name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static void tally_check(struct tally *t, bool ok)
{
	if (ok)
		t->pass++;
	else
		t->fail++;
}

/* Record an error, and with --verbose which case it came from. */
static void tally_err(struct tally *t, int which, double err, double tol,
		      const char *fmt, ...)
{
	va_list ap;

	/* Keep the case nearest its bound (bounds differ within a group). */
	if (t->tol[which] > 0 && !(err * t->tol[which] > t->err[which] * tol) &&
	    !isnan(err))
		return;
	t->tol[which] = tol;
	t->err[which] = isnan(err) ? INFINITY : err;
	va_start(ap, fmt);
	vsnprintf(t->worst[which], sizeof(t->worst[which]), fmt, ap);
	va_end(ap);
}

static void tally_end(struct tally *t)
{
	char what[2][48] = { "", "" };
	static const char *const label[2] = { "out", "metric" };
	int i;

	for (i = 0; i < 2; i++)
		if (t->tol[i] > 0)
			snprintf(what[i], sizeof(what[i]),
				 "  %s %.1e (<= %.0e)", label[i], t->err[i],
				 t->tol[i]);
	if (!t->tol[0] && !t->tol[1])
		snprintf(what[0], sizeof(what[0]), "  bit-exact");
	printf("%-40s %4u checks%s%s  %s  (%.1f s)\n", t->name,
	       t->pass + t->fail, what[0], what[1], t->fail ? "FAIL" : "ok",
	       gpu_now() - t->t0);
	for (i = 0; verbose && i < 2; i++)
		if (t->tol[i] > 0)
			printf("  largest %s error: %s\n", label[i],
			       t->worst[i]);
	fflush(stdout);
	total_pass += t->pass;
	total_fail += t->fail;
}

/* A seed for case @id of group @group: cases do not depend on the order. */
static uint64_t case_seed(const struct opts *o, uint32_t group, uint32_t id)
{
	uint64_t s = o->seed ^ ((uint64_t)group << 48) ^ ((uint64_t)id << 20);

	gpu_rng(&s);
	return s;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static uint32_t max_u32(uint32_t a, uint32_t b)
{
	return a > b ? a : b;
}

/* ------------------------------------------------------------------ */
/* The paged cache, on the host and on the device */

/* Store @v as element @i of a row, as the CPU path stores it. */
static void put_elem(uint8_t *row, uint32_t i, float v, enum kvc_dtype dtype)
{
	uint16_t h;

	if (dtype == KVC_DTYPE_F32) {
		memcpy(row + 4 * (size_t)i, &v, sizeof(v));
		return;
	}
	h = dtype == KVC_DTYPE_BF16 ? kvc_f32_to_bf16(v) : kvc_f32_to_f16(v);
	memcpy(row + 2 * (size_t)i, &h, sizeof(h));
}

/**
 * struct cache - Blocks and slot metadata, host image and device copy.
 * @dtype: element type.
 * @bs: tokens per block.
 * @hd: head_dim.
 * @nblocks: blocks.
 * @block_bytes: bytes per block (K then V).
 * @img: the host image of the blocks.
 * @meta: the host slot metadata, [nblocks * bs].
 * @base: device address of block 0.
 * @dmeta: device slot metadata.
 */
struct cache {
	enum kvc_dtype dtype;
	uint32_t bs;
	uint32_t hd;
	uint32_t nblocks;
	uint64_t block_bytes;
	uint8_t *img;
	struct kvc_slot_meta *meta;
	kvc_cu_ptr base;
	kvc_cu_ptr dmeta;
};

static uint64_t cache_bytes(const struct cache *c)
{
	return (uint64_t)c->nblocks * c->block_bytes;
}

static uint64_t cache_slots(const struct cache *c)
{
	return (uint64_t)c->nblocks * c->bs;
}

static void cache_destroy(const struct gpu *g, struct cache *c)
{
	gpu_free(g, &c->base);
	gpu_free(g, &c->dmeta);
	free(c->img);
	free(c->meta);
	c->img = NULL;
	c->meta = NULL;
}

/* Random K and V in [-1, 1), metric 0, positions 0 (callers set them). */
static int cache_create(const struct gpu *g, struct cache *c,
			enum kvc_dtype dtype, uint32_t bs, uint32_t hd,
			uint32_t nblocks, uint64_t *rng)
{
	uint64_t i, elems;

	memset(c, 0, sizeof(*c));
	c->dtype = dtype;
	c->bs = bs;
	c->hd = hd;
	c->nblocks = nblocks;
	c->block_bytes = 2ull * bs * hd * gpu_elem_bytes(dtype);
	c->img = gpu_malloc(cache_bytes(c));
	c->meta = calloc(cache_slots(c), sizeof(*c->meta));
	if (!c->img || !c->meta)
		goto err;
	elems = cache_bytes(c) / gpu_elem_bytes(dtype);
	for (i = 0; i < elems; i++)
		put_elem(c->img + i * gpu_elem_bytes(dtype), 0,
			 gpu_uniform(rng), dtype);
	if (gpu_alloc(g, &c->base, cache_bytes(c)) ||
	    gpu_alloc(g, &c->dmeta, cache_slots(c) * sizeof(*c->meta)))
		goto err;
	return 0;

err:
	cache_destroy(g, c);
	return -1;
}

static int cache_upload(const struct gpu *g, const struct cache *c)
{
	if (gpu_put(g, c->base, c->img, cache_bytes(c)))
		return -1;
	return gpu_put(g, c->dmeta, c->meta, cache_slots(c) * sizeof(*c->meta));
}

/* The host view of one head, for the C reference. */
static struct kvc_paged_kv cache_head(const struct cache *c, uint8_t *img,
				      const uint32_t *table, uint32_t len,
				      struct kvc_slot_meta *meta)
{
	struct kvc_paged_kv kv = {
		.base = img,
		.block_bytes = c->block_bytes,
		.block_size = c->bs,
		.head_dim = c->hd,
		.dtype = c->dtype,
		.table = table,
		.len = len,
		.meta = meta,
	};

	return kv;
}

static struct kvc_kargs_paged cache_kargs(const struct cache *c, bool meta)
{
	struct kvc_kargs_paged kv = {
		.base = c->base,
		.block_bytes = c->block_bytes,
		.meta = meta ? c->dmeta : 0,
		.block_size = c->bs,
		.head_dim = c->hd,
		.dtype = (uint32_t)c->dtype,
	};

	return kv;
}

/*
 * Block tables for @nr heads of lengths @lens: ceil(len / bs) blocks each,
 * taken in order from a random permutation of the cache's blocks, so that
 * no block serves two heads. Entries past a head's blocks hold an id far
 * outside the cache: a kernel that follows one faults.
 */
static void make_tables(const struct cache *c, const uint32_t *lens,
			uint32_t nr, uint32_t stride, uint32_t *tables,
			uint64_t *rng)
{
	uint32_t *perm = gpu_malloc((size_t)c->nblocks * sizeof(*perm));
	uint32_t i, b, next = 0, nb;

	for (i = 0; i < nr * stride; i++)
		tables[i] = UINT32_MAX;
	if (!perm)
		abort();
	gpu_shuffle(perm, c->nblocks, rng);
	for (i = 0; i < nr; i++) {
		nb = (lens[i] + c->bs - 1) / c->bs;
		for (b = 0; b < nb; b++)
			tables[(size_t)i * stride + b] = perm[next++];
	}
	free(perm);
}

/* Global slot of a head's slot @s. */
static uint64_t head_slot(const struct cache *c, const uint32_t *table,
			  uint32_t s)
{
	return (uint64_t)table[s / c->bs] * c->bs + s % c->bs;
}

/* ------------------------------------------------------------------ */
/* Comparisons */

/*
 * Add ||o - r||^2 and ||r||^2 over @n floats to @num and @den; count the
 * elements still poisoned and the elements not finite.
 */
static void diff_add(const float *o, const float *r, size_t n, double *num,
		     double *den, uint64_t *poisoned, uint64_t *bad)
{
	uint32_t bits;
	double d;
	size_t i;

	for (i = 0; i < n; i++) {
		memcpy(&bits, &o[i], sizeof(bits));
		if (bits == GPU_POISON)
			(*poisoned)++;
		else if (!isfinite(o[i]))
			(*bad)++;
		d = (double)o[i] - (double)r[i];
		*num += d * d;
		*den += (double)r[i] * r[i];
	}
}

/* ||o - r|| / ||r||; when the reference is all zeros (an empty head), 0
 * if the output is all zeros too and infinity if not. */
static double rel_of(double num, double den)
{
	double e;

	if (den == 0)
		return num == 0 ? 0 : INFINITY;
	e = sqrt(num / den);
	return isnan(e) ? INFINITY : e;
}

/*
 * The metric of a head: max over its slots of |m - r|, over the norm of
 * the head's reference metric. Marks the slots in @seen.
 */
static double metric_err(const struct cache *c, const uint32_t *table,
			 uint32_t len, const struct kvc_slot_meta *got,
			 const struct kvc_slot_meta *want, uint8_t *seen)
{
	double norm = 0, worst = 0, d;
	uint64_t s;
	uint32_t i;

	for (i = 0; i < len; i++) {
		s = head_slot(c, table, i);
		norm += (double)want[s].metric * want[s].metric;
	}
	norm = sqrt(norm);
	for (i = 0; i < len; i++) {
		s = head_slot(c, table, i);
		seen[s] = 1;
		if (!isfinite(got[s].metric))
			return INFINITY;
		d = fabs((double)got[s].metric - (double)want[s].metric);
		worst = d > worst ? d : worst;
	}
	if (norm == 0)
		return worst;
	return worst / norm;
}

/* Slots not marked in @seen, and every position, must match bit for bit;
 * returns how many do not. */
static uint64_t meta_rest_diff(const struct cache *c,
			       const struct kvc_slot_meta *got,
			       const struct kvc_slot_meta *want,
			       const uint8_t *seen)
{
	uint64_t s, diff = 0;

	for (s = 0; s < cache_slots(c); s++) {
		if (got[s].pos != want[s].pos)
			diff++;
		else if (!seen[s] &&
			 memcmp(&got[s].metric, &want[s].metric, sizeof(float)))
			diff++;
	}
	return diff;
}

static double tol_for(enum kvc_dtype dtype, bool prefill)
{
	if (dtype != KVC_DTYPE_F32)
		return TOL_HALF;
	return prefill ? TOL_F32_PREFILL : TOL_F32;
}

static double metric_tol(double tol, enum kvc_metric_kind metric)
{
	return metric == KVC_METRIC_L2 ? 2 * tol : tol;
}

static const char *metric_name(enum kvc_metric_kind m)
{
	switch (m) {
	case KVC_METRIC_L2:
		return "l2";
	case KVC_METRIC_L1:
		return "l1";
	case KVC_METRIC_AVG:
		return "avg";
	default:
		return "none";
	}
}

/* ------------------------------------------------------------------ */
/* Decode */

/**
 * struct decode_cfg - One decode batch.
 * @dtype: storage type.
 * @hd: head_dim.
 * @group: query heads per KV head.
 * @bs: block size.
 * @kv_heads: KV heads per sequence.
 * @seqs: sequences.
 * @max_ctx: longest context.
 * @qamp: queries are uniform in [-@qamp, @qamp) (larger: sharper softmax).
 * @min_parts: fail unless the plan has at least this many partitions.
 */
struct decode_cfg {
	enum kvc_dtype dtype;
	uint32_t hd;
	uint32_t group;
	uint32_t bs;
	uint32_t kv_heads;
	uint32_t seqs;
	uint32_t max_ctx;
	float qamp;
	uint32_t min_parts;
};

/* A head's context: a mix of empty, one slot, exactly a block, a block
 * and one, the longest, and random lengths that end inside a block. */
static uint32_t pick_len(uint32_t i, uint32_t nr, uint32_t max_ctx, uint32_t bs,
			 uint64_t *rng)
{
	uint32_t len;

	if (nr == 1)
		return max_ctx;
	switch (i % 8) {
	case 0:
		return 0;
	case 1:
		return max_ctx;
	case 2:
		return 1;
	case 3:
		return min_u32(bs, max_ctx);
	case 4:
		return min_u32(bs + 1, max_ctx);
	default:
		len = 1 + (uint32_t)gpu_below(rng, max_ctx);
		if (len % bs == 0 && len > 1)
			len--;
		return len;
	}
}

struct decode_ref {
	const struct cache *c;
	uint8_t *img;
	const uint32_t *tables;
	const uint32_t *lens;
	uint32_t stride;
	uint32_t group;
	const float *q;
	float *out;
	struct kvc_slot_meta *meta;
	float scale;
	enum kvc_metric_kind metric;
};

static void decode_ref_head(void *arg, uint32_t i)
{
	const struct decode_ref *r = arg;
	size_t rows = (size_t)r->group * r->c->hd;
	struct kvc_paged_kv kv =
		cache_head(r->c, r->img, r->tables + (size_t)i * r->stride,
			   r->lens[i], r->meta);

	kvc_attn_decode_ref(&kv, r->group, r->q + i * rows, r->scale,
			    r->out + i * rows, r->metric);
}

/*
 * One batch, three ways: no metric (with or without slot metadata), L2,
 * and L1 launched twice (the metric adds up, the output stays).
 */
static int decode_case(struct gpu *g, const struct decode_cfg *cfg, uint32_t id,
		       uint64_t seed, struct tally *t)
{
	static const enum kvc_metric_kind kinds[] = { KVC_METRIC_NONE,
						      KVC_METRIC_L2,
						      KVC_METRIC_L1 };
	uint32_t nr = cfg->seqs * cfg->kv_heads, i, stride = 1, v, run, runs;
	uint32_t max_len = 1, offset, total_blocks = 0;
	size_t qn = (size_t)nr * cfg->group * cfg->hd;
	uint64_t rng = seed, ws_bytes = 0, poisoned, bad, diff;
	struct kvc_slot_meta *meta0 = NULL, *got = NULL, *want = NULL;
	kvc_cu_ptr d_tables = 0, d_lens = 0, d_q = 0, d_out = 0, d_ws = 0;
	float *q = NULL, *out = NULL, *ref = NULL;
	uint32_t *lens = NULL, *tables = NULL;
	struct cache c = { 0 };
	uint8_t *seen = NULL;
	int ret = -1;
	double err, tol = tol_for(cfg->dtype, false);

	lens = gpu_malloc(nr * sizeof(*lens));
	if (!lens)
		goto out;
	offset = (uint32_t)gpu_below(&rng, 8);
	for (i = 0; i < nr; i++) {
		lens[i] = pick_len(i + offset, nr, cfg->max_ctx, cfg->bs, &rng);
		max_len = max_u32(max_len, lens[i]);
		stride = max_u32(stride, (lens[i] + cfg->bs - 1) / cfg->bs);
		total_blocks += (lens[i] + cfg->bs - 1) / cfg->bs;
	}
	if (cache_create(g, &c, cfg->dtype, cfg->bs, cfg->hd,
			 total_blocks + total_blocks / 8 + 3, &rng))
		goto out;
	tables = gpu_malloc((size_t)nr * stride * sizeof(*tables));
	q = gpu_malloc(qn * sizeof(*q));
	out = gpu_malloc(qn * sizeof(*out));
	ref = gpu_malloc(qn * sizeof(*ref));
	meta0 = gpu_malloc(cache_slots(&c) * sizeof(*meta0));
	got = gpu_malloc(cache_slots(&c) * sizeof(*got));
	want = gpu_malloc(cache_slots(&c) * sizeof(*want));
	seen = calloc(cache_slots(&c), 1);
	if (!tables || !q || !out || !ref || !meta0 || !got || !want || !seen)
		goto out;
	make_tables(&c, lens, nr, stride, tables, &rng);
	for (i = 0; i < qn; i++)
		q[i] = cfg->qamp * gpu_uniform(&rng);
	/* Positions are not read by decode: random, and must stay. */
	for (i = 0; i < cache_slots(&c); i++) {
		c.meta[i].metric = 0;
		c.meta[i].pos = (int32_t)(gpu_rng(&rng) >> 33);
	}
	memcpy(meta0, c.meta, cache_slots(&c) * sizeof(*meta0));
	if (cache_upload(g, &c) ||
	    gpu_dup(g, &d_tables, tables, (size_t)nr * stride * 4) ||
	    gpu_dup(g, &d_lens, lens, (size_t)nr * 4) ||
	    gpu_dup(g, &d_q, q, qn * sizeof(*q)) ||
	    gpu_alloc(g, &d_out, qn * sizeof(*out)))
		goto out;

	for (v = 0; v < sizeof(kinds) / sizeof(kinds[0]); v++) {
		enum kvc_metric_kind metric = kinds[v];
		bool with_meta = metric != KVC_METRIC_NONE || id % 2;
		struct kvc_attn_shape shape = {
			.nr_heads = nr,
			.kv_heads = cfg->kv_heads,
			.group = cfg->group,
			.head_dim = cfg->hd,
			.block_size = cfg->bs,
			.max_len = max_len,
			.dtype = cfg->dtype,
			.metric = metric,
		};
		struct kvc_decode_plan plan;
		struct kvc_decode_args args;
		struct decode_ref dr;
		bool ok = true;

		if (KVC(kvc_decode_plan(&g->info, &shape, &plan)))
			goto out;
		if (plan.nr_parts < cfg->min_parts) {
			tally_report(t, "plan has %u partitions, wanted >= %u",
				     plan.nr_parts, cfg->min_parts);
			ok = false;
		}
		if (plan.ws_bytes > ws_bytes) {
			gpu_free(g, &d_ws);
			if (gpu_alloc(g, &d_ws, plan.ws_bytes))
				goto out;
			ws_bytes = plan.ws_bytes;
		}
		memset(&args, 0, sizeof(args));
		args.kv = cache_kargs(&c, with_meta);
		args.tables = d_tables;
		args.lens = d_lens;
		args.q = d_q;
		args.out = d_out;
		args.ws = d_ws;
		args.table_stride = stride;
		args.nr_heads = nr;
		args.group = cfg->group;
		args.metric = metric;
		args.part_tokens = plan.part_tokens;
		args.nr_parts = plan.nr_parts;
		args.max_len = max_len;
		args.scale = 1.0f / sqrtf((float)cfg->hd);

		runs = metric == KVC_METRIC_L1 ? 2 : 1;
		if (gpu_put(g, c.dmeta, meta0,
			    cache_slots(&c) * sizeof(*meta0)))
			goto out;
		for (run = 0; run < runs; run++) {
			if (gpu_fill32(g, d_out, GPU_POISON, qn) ||
			    gpu_fill32(g, d_ws, GPU_POISON, ws_bytes / 4) ||
			    KVC(kvc_cuda_decode(g->k, g->stream, &args,
						&plan)) ||
			    gpu_sync(g))
				goto out;
		}
		if (gpu_get(g, out, d_out, qn * sizeof(*out)) ||
		    gpu_get(g, got, c.dmeta, cache_slots(&c) * sizeof(*got)))
			goto out;

		memcpy(want, meta0, cache_slots(&c) * sizeof(*want));
		dr = (struct decode_ref){
			.c = &c,
			.img = c.img,
			.tables = tables,
			.lens = lens,
			.stride = stride,
			.group = cfg->group,
			.q = q,
			.out = ref,
			.meta = want,
			.scale = args.scale,
			.metric = with_meta ? metric : KVC_METRIC_NONE,
		};
		for (run = 0; run < runs; run++)
			kvc_attn_parallel(nr,
					  (uint64_t)nr * max_len * cfg->group *
						  cfg->hd,
					  decode_ref_head, &dr);

		poisoned = bad = 0;
		memset(seen, 0, cache_slots(&c));
		for (i = 0; i < nr; i++) {
			size_t rows = (size_t)cfg->group * cfg->hd;
			double num = 0, den = 0;

			diff_add(out + i * rows, ref + i * rows, rows, &num,
				 &den, &poisoned, &bad);
			err = rel_of(num, den);
			tally_err(t, 0, err, tol,
				  "g%u q x%g metric %s head %u of len %u",
				  cfg->group, cfg->qamp, metric_name(metric), i,
				  lens[i]);
			if (!(err <= tol)) {
				tally_report(
					t,
					"g%u metric %s head %u (len %u): out error %.2e",
					cfg->group, metric_name(metric), i,
					lens[i], err);
				ok = false;
			}
			if (metric == KVC_METRIC_NONE || !lens[i])
				continue;
			err = metric_err(&c, tables + (size_t)i * stride,
					 lens[i], got, want, seen);
			tally_err(t, 1, err, metric_tol(tol, metric),
				  "g%u q x%g metric %s head %u of len %u",
				  cfg->group, cfg->qamp, metric_name(metric), i,
				  lens[i]);
			if (!(err <= metric_tol(tol, metric))) {
				tally_report(
					t,
					"g%u metric %s head %u (len %u): metric error %.2e",
					cfg->group, metric_name(metric), i,
					lens[i], err);
				ok = false;
			}
		}
		if (poisoned || bad) {
			tally_report(t,
				     "g%u metric %s: %" PRIu64
				     " outputs never written, %" PRIu64
				     " not finite",
				     cfg->group, metric_name(metric), poisoned,
				     bad);
			ok = false;
		}
		diff = meta_rest_diff(&c, got, want, seen);
		if (diff) {
			tally_report(t,
				     "g%u metric %s: %" PRIu64
				     " slot metadata changed that must not",
				     cfg->group, metric_name(metric), diff);
			ok = false;
		}
		tally_check(t, ok);
	}
	ret = 0;
out:
	gpu_free(g, &d_tables);
	gpu_free(g, &d_lens);
	gpu_free(g, &d_q);
	gpu_free(g, &d_out);
	gpu_free(g, &d_ws);
	cache_destroy(g, &c);
	free(lens);
	free(tables);
	free(q);
	free(out);
	free(ref);
	free(meta0);
	free(got);
	free(want);
	free(seen);
	return ret;
}

static int test_decode(struct gpu *g, const struct opts *o)
{
	static const enum kvc_dtype dtypes[] = { KVC_DTYPE_F32, KVC_DTYPE_F16,
						 KVC_DTYPE_BF16 };
	static const uint32_t hds[] = { 64, 96, 128, 256 };
	static const uint32_t groups[] = { 1, 4, 8 };
	uint32_t max_ctx = o->fake ? 700 : 8192, di, hi, gi, id = 0;
	struct decode_cfg cfg;
	struct tally t;

	for (di = 0; di < 3; di++) {
		for (hi = 0; hi < 4; hi++) {
			if (o->quick && (hds[hi] == 96 || hds[hi] == 256) &&
			    dtypes[di] != KVC_DTYPE_F16)
				continue;
			tally_begin(&t, "decode %s hd%u g1/4/8 bs16",
				    gpu_dtype_name(dtypes[di]), hds[hi]);
			for (gi = 0; gi < 3; gi++, id++) {
				cfg = (struct decode_cfg){
					.dtype = dtypes[di],
					.hd = hds[hi],
					.group = groups[gi],
					.bs = 16,
					.kv_heads = 2,
					.seqs = 4,
					.max_ctx = max_ctx,
					.qamp = id % 3 == 2 ? 8.0f : 1.0f,
				};
				if (decode_case(g, &cfg, id,
						case_seed(o, 1, id), &t))
					return -1;
			}
			tally_end(&t);
		}
	}

	/*
	 * Block sizes 8 and 32; groups that pad a slice of four (3, as
	 * SmolLM2) or fill four (16, the largest), with three KV heads a
	 * sequence.
	 */
	static const struct {
		const char *label;
		struct decode_cfg cfg[2];
	} extra[] = {
		{ "decode f16 hd128 g4 bs8, bf16 hd64 g8 bs32",
		  { { .dtype = KVC_DTYPE_F16,
		      .hd = 128,
		      .group = 4,
		      .bs = 8,
		      .kv_heads = 2,
		      .seqs = 4,
		      .qamp = 2.0f },
		    { .dtype = KVC_DTYPE_BF16,
		      .hd = 64,
		      .group = 8,
		      .bs = 32,
		      .kv_heads = 2,
		      .seqs = 4,
		      .qamp = 2.0f } } },
		{ "decode f16 hd64 g3, bf16 hd128 g16",
		  { { .dtype = KVC_DTYPE_F16,
		      .hd = 64,
		      .group = 3,
		      .bs = 16,
		      .kv_heads = 3,
		      .seqs = 3,
		      .qamp = 4.0f },
		    { .dtype = KVC_DTYPE_BF16,
		      .hd = 128,
		      .group = KVC_KERNEL_MAX_GROUP,
		      .bs = 16,
		      .kv_heads = 3,
		      .seqs = 3,
		      .qamp = 4.0f } } },
	};
	for (di = 0; di < sizeof(extra) / sizeof(extra[0]); di++) {
		tally_begin(&t, "%s", extra[di].label);
		for (gi = 0; gi < 2; gi++, id++) {
			cfg = extra[di].cfg[gi];
			cfg.max_ctx = max_ctx;
			if (decode_case(g, &cfg, id, case_seed(o, 1, id), &t))
				return -1;
		}
		tally_end(&t);
	}

	/* One long head alone: the plan splits it into many partitions. */
	cfg = (struct decode_cfg){
		.dtype = KVC_DTYPE_F16,
		.hd = 128,
		.group = 4,
		.bs = 16,
		.kv_heads = 1,
		.seqs = 1,
		.max_ctx = o->fake  ? 4096 :
			   o->quick ? 16384 :
				      32768,
		.qamp = 2.0f,
		.min_parts = 8,
	};
	tally_begin(&t, "decode f16 hd128 g4, 1 head of %u", cfg.max_ctx);
	if (decode_case(g, &cfg, id, case_seed(o, 1, id), &t))
		return -1;
	id++;
	tally_end(&t);
	cfg.dtype = KVC_DTYPE_F32;
	cfg.hd = 256;
	cfg.group = 8;
	cfg.max_ctx = o->fake ? 2000 : 12345;
	tally_begin(&t, "decode f32 hd256 g8, 1 head of %u", cfg.max_ctx);
	if (decode_case(g, &cfg, id, case_seed(o, 1, id), &t))
		return -1;
	tally_end(&t);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Prefill */

/**
 * struct prefill_cfg - One prefill batch.
 * @dtype: storage type.
 * @hd: head_dim.
 * @group: query heads per KV head.
 * @bs: block size.
 * @kv_heads: KV heads per sequence.
 * @seqs: sequences.
 * @n: new tokens of every head.
 * @max_ctx: longest context (>= @n).
 * @obs: the observation (metric NONE: none).
 * @meta: slot metadata present (positions from it); else positions are
 *        slot indexes and no metric is kept.
 * @gaps: older slots' positions have gaps (a compressed head).
 */
struct prefill_cfg {
	enum kvc_dtype dtype;
	uint32_t hd;
	uint32_t group;
	uint32_t bs;
	uint32_t kv_heads;
	uint32_t seqs;
	uint32_t n;
	uint32_t max_ctx;
	struct kvc_observe obs;
	bool meta;
	bool gaps;
};

static int prefill_case(struct gpu *g, const struct prefill_cfg *cfg,
			uint64_t seed, struct tally *t)
{
	uint32_t nr = cfg->seqs * cfg->kv_heads, i, j, s, h, stride = 1;
	uint32_t max_len = 1, total_blocks = 0,
		 row = cfg->kv_heads * cfg->group;
	size_t qn = (size_t)cfg->seqs * cfg->n * row * cfg->hd, hrow;
	uint64_t rng = seed, poisoned = 0, bad = 0, diff;
	enum kvc_metric_kind metric =
		cfg->meta ? cfg->obs.metric : KVC_METRIC_NONE;
	struct kvc_slot_meta *got = NULL, *want = NULL;
	kvc_cu_ptr d_tables = 0, d_lens = 0, d_q = 0, d_out = 0, d_ws = 0;
	float *q = NULL, *out = NULL, *ref = NULL;
	uint32_t *lens = NULL, *tables = NULL;
	double err, tol = tol_for(cfg->dtype, true);
	struct kvc_prefill_plan plan;
	struct kvc_prefill_args args;
	struct cache c = { 0 };
	uint8_t *seen = NULL;
	void *ws = NULL;
	bool ok = true;
	int ret = -1;

	hrow = (size_t)cfg->group * cfg->hd;
	lens = gpu_malloc(nr * sizeof(*lens));
	if (!lens)
		goto out;
	for (i = 0; i < nr; i++) {
		if (i % 4 == 0)
			lens[i] = cfg->n;
		else if (i % 4 == 1)
			lens[i] = cfg->max_ctx;
		else
			lens[i] = cfg->n +
				  (uint32_t)gpu_below(&rng, cfg->max_ctx -
								    cfg->n + 1);
		max_len = max_u32(max_len, lens[i]);
		stride = max_u32(stride, (lens[i] + cfg->bs - 1) / cfg->bs);
		total_blocks += (lens[i] + cfg->bs - 1) / cfg->bs;
	}
	if (cache_create(g, &c, cfg->dtype, cfg->bs, cfg->hd,
			 total_blocks + total_blocks / 8 + 3, &rng))
		goto out;
	tables = gpu_malloc((size_t)nr * stride * sizeof(*tables));
	q = gpu_malloc(qn * sizeof(*q));
	out = gpu_malloc(qn * sizeof(*out));
	ref = gpu_malloc(qn * sizeof(*ref));
	got = gpu_malloc(cache_slots(&c) * sizeof(*got));
	want = gpu_malloc(cache_slots(&c) * sizeof(*want));
	seen = calloc(cache_slots(&c), 1);
	if (!tables || !q || !out || !ref || !got || !want || !seen)
		goto out;
	make_tables(&c, lens, nr, stride, tables, &rng);
	for (i = 0; i < qn; i++)
		q[i] = 2.0f * gpu_uniform(&rng);
	for (i = 0; i < cache_slots(&c); i++) {
		c.meta[i].metric = 0;
		c.meta[i].pos = -1;
	}
	/* Positions: increasing; the new tokens' consecutive at the end. */
	for (i = 0; i < nr; i++) {
		int32_t p = cfg->gaps ? (int32_t)gpu_below(&rng, 4) : 0;

		for (j = 0; j < lens[i]; j++) {
			if (cfg->gaps && j < lens[i] - cfg->n)
				p += (int32_t)gpu_below(&rng, 3);
			c.meta[head_slot(&c, tables + (size_t)i * stride, j)]
				.pos = p++;
		}
	}
	memcpy(want, c.meta, cache_slots(&c) * sizeof(*want));
	if (cache_upload(g, &c) ||
	    gpu_dup(g, &d_tables, tables, (size_t)nr * stride * 4) ||
	    gpu_dup(g, &d_lens, lens, (size_t)nr * 4) ||
	    gpu_dup(g, &d_q, q, qn * sizeof(*q)) ||
	    gpu_alloc(g, &d_out, qn * sizeof(*out)))
		goto out;

	{
		struct kvc_attn_shape shape = {
			.nr_heads = nr,
			.kv_heads = cfg->kv_heads,
			.group = cfg->group,
			.head_dim = cfg->hd,
			.block_size = cfg->bs,
			.max_len = max_len,
			.dtype = cfg->dtype,
			.metric = metric,
		};

		if (KVC(kvc_prefill_plan(&g->info, &shape, cfg->n,
					 cfg->obs.pool_kernel, &plan)))
			goto out;
	}
	if (gpu_alloc(g, &d_ws, plan.ws_bytes))
		goto out;
	memset(&args, 0, sizeof(args));
	args.kv = cache_kargs(&c, cfg->meta);
	args.tables = d_tables;
	args.lens = d_lens;
	args.q = d_q;
	args.out = d_out;
	args.ws = d_ws;
	args.table_stride = stride;
	args.nr_heads = nr;
	args.kv_heads = cfg->kv_heads;
	args.group = cfg->group;
	args.n = cfg->n;
	args.metric = metric;
	args.window = cfg->obs.window;
	args.buffer = cfg->obs.buffer;
	args.pool_kernel = cfg->obs.pool_kernel;
	args.max_len = max_len;
	args.scale = 1.0f / sqrtf((float)cfg->hd);
	if (gpu_fill32(g, d_out, GPU_POISON, qn) ||
	    gpu_fill32(g, d_ws, GPU_POISON, plan.ws_bytes / 4) ||
	    KVC(kvc_cuda_prefill(g->k, g->stream, &args, &plan)) ||
	    gpu_sync(g) || gpu_get(g, out, d_out, qn * sizeof(*out)) ||
	    gpu_get(g, got, c.dmeta, cache_slots(&c) * sizeof(*got)))
		goto out;

	for (i = 0; i < nr; i++) {
		struct kvc_observe obs = cfg->obs;
		struct kvc_paged_kv kv;
		size_t off, bytes;
		double num = 0, den = 0;
		uint64_t p0 = poisoned, b0 = bad;

		s = i / cfg->kv_heads;
		h = i % cfg->kv_heads;
		kv = cache_head(&c, c.img, tables + (size_t)i * stride, lens[i],
				cfg->meta ? want : NULL);
		bytes = kvc_attn_prefill_ws_bytes(lens[i], cfg->group, cfg->n,
						  &obs);
		free(ws);
		ws = bytes ? gpu_malloc(bytes) : NULL;
		if (bytes && !ws)
			goto out;
		off = ((size_t)s * cfg->n * row + (size_t)h * cfg->group) *
		      cfg->hd;
		kvc_attn_prefill_ref_ws(
			&kv, cfg->group, cfg->n, q + off, (size_t)row * cfg->hd,
			args.scale, ref + off,
			metric != KVC_METRIC_NONE ? &obs : NULL, ws);
		for (j = 0; j < cfg->n; j++) {
			size_t at = off + (size_t)j * row * cfg->hd;

			diff_add(out + at, ref + at, hrow, &num, &den,
				 &poisoned, &bad);
		}
		err = rel_of(num, den);
		tally_err(t, 0, err, tol,
			  "hd%u g%u n %u head %u of len %u, %s w%u b%u p%u",
			  cfg->hd, cfg->group, cfg->n, i, lens[i],
			  metric_name(metric), cfg->obs.window, cfg->obs.buffer,
			  cfg->obs.pool_kernel);
		if (!(err <= tol)) {
			tally_report(
				t, "n %u head %u (len %u, %s): out error %.2e",
				cfg->n, i, lens[i], metric_name(metric), err);
			ok = false;
		}
		if (poisoned > p0 || bad > b0) {
			tally_report(t,
				     "n %u head %u: %" PRIu64
				     " outputs never written, %" PRIu64
				     " not finite",
				     cfg->n, i, poisoned - p0, bad - b0);
			ok = false;
		}
		if (metric == KVC_METRIC_NONE)
			continue;
		err = metric_err(&c, tables + (size_t)i * stride, lens[i], got,
				 want, seen);
		tally_err(t, 1, err, metric_tol(tol, metric),
			  "hd%u g%u n %u head %u of len %u, %s w%u b%u p%u",
			  cfg->hd, cfg->group, cfg->n, i, lens[i],
			  metric_name(metric), cfg->obs.window, cfg->obs.buffer,
			  cfg->obs.pool_kernel);
		if (!(err <= metric_tol(tol, metric))) {
			tally_report(
				t,
				"n %u head %u (len %u, %s w%u b%u p%u): metric error %.2e",
				cfg->n, i, lens[i], metric_name(metric),
				cfg->obs.window, cfg->obs.buffer,
				cfg->obs.pool_kernel, err);
			ok = false;
		}
	}
	diff = meta_rest_diff(&c, got, want, seen);
	if (diff) {
		tally_report(t,
			     "n %u: %" PRIu64
			     " slot metadata changed that must not",
			     cfg->n, diff);
		ok = false;
	}
	tally_check(t, ok);
	ret = 0;
out:
	gpu_free(g, &d_tables);
	gpu_free(g, &d_lens);
	gpu_free(g, &d_q);
	gpu_free(g, &d_out);
	gpu_free(g, &d_ws);
	cache_destroy(g, &c);
	free(ws);
	free(lens);
	free(tables);
	free(q);
	free(out);
	free(ref);
	free(got);
	free(want);
	free(seen);
	return ret;
}

static int test_prefill(struct gpu *g, const struct opts *o)
{
	static const enum kvc_dtype dtypes[] = { KVC_DTYPE_F32, KVC_DTYPE_F16,
						 KVC_DTYPE_BF16 };
	static const struct {
		uint32_t hd, group;
	} shapes[] = { { 64, 4 }, { 96, 1 }, { 128, 4 }, { 256, 2 } };
	static const uint32_t ns[] = { 1, 17, 64, 129, 300 };
	/* Observations, in turn: none without metadata; L2 over every
	 * query; L1 over a window, with a buffer and pooling; AVG pooled;
	 * metadata but no metric (it must stay); L2 window and pool 3. */
	static const struct {
		struct kvc_observe obs;
		bool meta, gaps;
	} variants[] = {
		{ { KVC_METRIC_NONE, 0, 0, 0 }, false, false },
		{ { KVC_METRIC_L2, 0, 0, 0 }, true, true },
		{ { KVC_METRIC_L1, 16, 4, 7 }, true, true },
		{ { KVC_METRIC_AVG, 0, 0, 5 }, true, false },
		{ { KVC_METRIC_NONE, 0, 0, 0 }, true, true },
		{ { KVC_METRIC_L2, 100, 1, 3 }, true, true },
	};
	uint32_t max_ctx = o->fake ? 400 : 2048, nmax = o->fake ? 100 : 300;
	uint32_t di, si, k, id = 0, per = o->quick ? 2 : 3;
	struct prefill_cfg cfg;
	struct tally t;

	for (di = 0; di < 3; di++) {
		tally_begin(&t, "prefill %s hd64/96/128/256",
			    gpu_dtype_name(dtypes[di]));
		for (si = 0; si < 4; si++) {
			for (k = 0; k < per; k++, id++) {
				uint32_t n =
					min_u32(ns[(id * 2 + k) % 5], nmax);
				uint32_t vi = id % 6;

				cfg = (struct prefill_cfg){
					.dtype = dtypes[di],
					.hd = shapes[si].hd,
					.group = shapes[si].group,
					.bs = 16,
					.kv_heads = 2,
					.seqs = 2,
					.n = n,
					.max_ctx =
						k == 2 ?
							max_ctx :
							n + 1 +
								(id *
								 37) % (max_ctx /
									2),
					.obs = variants[vi].obs,
					.meta = variants[vi].meta,
					.gaps = variants[vi].gaps,
				};
				cfg.max_ctx = max_u32(cfg.max_ctx, n);
				if (prefill_case(g, &cfg, case_seed(o, 2, id),
						 &t))
					return -1;
			}
		}
		tally_end(&t);
	}

	/* Every observation once more on one shape, n a full tile and one. */
	tally_begin(&t, "prefill f16 hd128 g8, observations");
	for (k = 0; k < 6; k++, id++) {
		cfg = (struct prefill_cfg){
			.dtype = KVC_DTYPE_F16,
			.hd = 128,
			.group = 8,
			.bs = k % 2 ? 32 : 8,
			.kv_heads = 1,
			.seqs = 3,
			.n = k % 2 ? 33 : 16,
			.max_ctx = o->fake ? 300 : 1000,
			.obs = variants[k].obs,
			.meta = variants[k].meta,
			.gaps = variants[k].gaps,
		};
		if (prefill_case(g, &cfg, case_seed(o, 2, id), &t))
			return -1;
	}
	tally_end(&t);

	/* Groups of 3 (SmolLM2) and 16 (the largest), three KV heads. */
	tally_begin(&t, "prefill f16 hd64 g3, bf16 hd128 g16");
	for (k = 0; k < 2; k++, id++) {
		cfg = (struct prefill_cfg){
			.dtype = k ? KVC_DTYPE_BF16 : KVC_DTYPE_F16,
			.hd = k ? 128 : 64,
			.group = k ? KVC_KERNEL_MAX_GROUP : 3,
			.bs = 16,
			.kv_heads = 3,
			.seqs = 2,
			.n = k ? 40 : 77,
			.max_ctx = o->fake ? 300 : 1500,
			.obs = variants[k ? 2 : 1].obs,
			.meta = true,
			.gaps = true,
		};
		if (prefill_case(g, &cfg, case_seed(o, 2, id), &t))
			return -1;
	}
	tally_end(&t);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Cache write */

/* Inputs that test the rounding: ties, overflow, subnormals, zeros,
 * infinities, NaN, and random bit patterns. */
static float write_value(uint64_t *rng)
{
	static const float special[] = {
		0.0f,
		-0.0f,
		1.0f,
		65504.0f,
		65519.996f,
		65520.0f,
		-1e6f,
		INFINITY,
		-INFINITY,
		5.9604645e-8f, /* the least f16 subnormal */
		2.9802322e-8f, /* half of it: a tie to 0 */
		8.940697e-8f, /* 1.5 of it: a tie to 2 */
		6.1035156e-5f, /* the least f16 normal */
		1.00048828125f, /* 1 + 2^-11: f16 tie to even 1 */
		1.00146484375f, /* 1 + 3 * 2^-11: f16 tie up */
		1.00390625f, /* 1 + 2^-8: bf16 tie to even 1 */
		1.01171875f, /* 1 + 3 * 2^-8: bf16 tie up */
		3.3961776e38f, /* rounds to bf16 infinity */
		1.17549435e-38f, /* FLT_MIN */
		5.877472e-39f, /* f32 subnormal */
		NAN,
	};
	uint64_t r = gpu_rng(rng);
	uint32_t bits;
	float v;

	switch (r % 8) {
	case 0:
		return special[(r >> 8) % (sizeof(special) / sizeof(*special))];
	case 1:
		bits = (uint32_t)(r >> 16);
		memcpy(&v, &bits, sizeof(v));
		return v;
	case 2: /* exponents around the f16 range */
		return ldexpf(gpu_uniform(rng), (int)((r >> 8) % 52) - 30);
	default:
		return 4.0f * gpu_uniform(rng);
	}
}

/* Whether two stored elements agree: bit for bit, or both NaN. */
static bool elem_same(const uint8_t *a, const uint8_t *b, enum kvc_dtype dtype)
{
	uint32_t x = 0, y = 0;

	if (!memcmp(a, b, gpu_elem_bytes(dtype)))
		return true;
	memcpy(&x, a, gpu_elem_bytes(dtype));
	memcpy(&y, b, gpu_elem_bytes(dtype));
	if (dtype == KVC_DTYPE_F32)
		return (x & 0x7fffffffu) > 0x7f800000u &&
		       (y & 0x7fffffffu) > 0x7f800000u;
	if (dtype == KVC_DTYPE_F16)
		return (x & 0x7fffu) > 0x7c00u && (y & 0x7fffu) > 0x7c00u;
	return (x & 0x7fffu) > 0x7f80u && (y & 0x7fffu) > 0x7f80u;
}

/* Compare two images of the cache's blocks; print the first difference. */
static uint64_t image_diff(struct tally *t, const struct cache *c,
			   const uint8_t *got, const uint8_t *want)
{
	uint32_t eb = gpu_elem_bytes(c->dtype);
	uint64_t i, n = cache_bytes(c) / eb, diff = 0;
	uint32_t x = 0, y = 0;

	for (i = 0; i < n; i++) {
		if (elem_same(got + i * eb, want + i * eb, c->dtype))
			continue;
		if (!diff) {
			memcpy(&x, got + i * eb, eb);
			memcpy(&y, want + i * eb, eb);
			tally_report(t,
				     "%s hd%u: element %" PRIu64
				     " of the blocks is 0x%x, expected 0x%x",
				     gpu_dtype_name(c->dtype), c->hd, i, x, y);
		}
		diff++;
	}
	return diff;
}

/* The host address of the K (@v false) or V row of a global slot. */
static uint8_t *slot_row(const struct cache *c, uint8_t *img, uint64_t slot,
			 bool v)
{
	uint64_t row = (uint64_t)c->hd * gpu_elem_bytes(c->dtype);
	uint64_t block = slot / c->bs, off = slot % c->bs;

	return img + block * c->block_bytes + (v ? c->bs + off : off) * row;
}

/*
 * @mode 0: slot metadata and positions (meta = {0, pos}); 1: metadata but
 * no positions (left as it is); 2: no metadata.
 */
static int write_case(struct gpu *g, enum kvc_dtype dtype, uint32_t hd,
		      uint32_t bs, uint32_t rows, int mode, uint64_t seed,
		      struct tally *t)
{
	uint32_t nblocks = 2 * ((rows + bs - 1) / bs) + 3, i, d, *perm = NULL;
	size_t vn = (size_t)rows * hd;
	kvc_cu_ptr d_slots = 0, d_k = 0, d_v = 0, d_pos = 0;
	struct kvc_slot_meta *got_meta = NULL;
	uint8_t *want = NULL, *got = NULL;
	struct kvc_cache_write_args args;
	uint64_t rng = seed, *slots = NULL, diff, s;
	float *k = NULL, *v = NULL;
	int32_t *pos = NULL;
	struct cache c = { 0 };
	int ret = -1;

	if (cache_create(g, &c, dtype, bs, hd, nblocks, &rng))
		goto out;
	slots = gpu_malloc(rows * sizeof(*slots));
	perm = gpu_malloc(cache_slots(&c) * sizeof(*perm));
	k = gpu_malloc(vn * sizeof(*k));
	v = gpu_malloc(vn * sizeof(*v));
	pos = gpu_malloc(rows * sizeof(*pos));
	want = gpu_malloc(cache_bytes(&c));
	got = gpu_malloc(cache_bytes(&c));
	got_meta = gpu_malloc(cache_slots(&c) * sizeof(*got_meta));
	if (!slots || !perm || !k || !v || !pos || !want || !got || !got_meta)
		goto out;
	for (s = 0; s < cache_slots(&c); s++) {
		c.meta[s].metric = gpu_uniform(&rng);
		c.meta[s].pos = (int32_t)(gpu_rng(&rng) >> 33);
	}
	gpu_shuffle(perm, (uint32_t)cache_slots(&c), &rng);
	for (i = 0; i < rows; i++) {
		slots[i] = perm[i];
		pos[i] = (int32_t)(gpu_rng(&rng) >> 34);
	}
	for (i = 0; i < vn; i++) {
		k[i] = write_value(&rng);
		v[i] = write_value(&rng);
	}
	if (cache_upload(g, &c) ||
	    gpu_dup(g, &d_slots, slots, rows * sizeof(*slots)) ||
	    gpu_dup(g, &d_k, k, vn * sizeof(*k)) ||
	    gpu_dup(g, &d_v, v, vn * sizeof(*v)) ||
	    gpu_dup(g, &d_pos, pos, rows * sizeof(*pos)))
		goto out;

	memset(&args, 0, sizeof(args));
	args.kv = cache_kargs(&c, mode != 2);
	args.slots = d_slots;
	args.k = d_k;
	args.v = d_v;
	args.pos = mode == 0 ? d_pos : 0;
	args.rows = rows;
	if (KVC(kvc_cuda_cache_write(g->k, g->stream, &args)) || gpu_sync(g) ||
	    gpu_get(g, got, c.base, cache_bytes(&c)) ||
	    gpu_get(g, got_meta, c.dmeta, cache_slots(&c) * sizeof(*got_meta)))
		goto out;

	/* What the CPU path stores (store_row() and the metadata reset). */
	memcpy(want, c.img, cache_bytes(&c));
	for (i = 0; i < rows; i++) {
		for (d = 0; d < hd; d++) {
			put_elem(slot_row(&c, want, slots[i], false), d,
				 k[(size_t)i * hd + d], dtype);
			put_elem(slot_row(&c, want, slots[i], true), d,
				 v[(size_t)i * hd + d], dtype);
		}
		if (mode == 0) {
			c.meta[slots[i]].metric = 0;
			c.meta[slots[i]].pos = pos[i];
		}
	}
	diff = image_diff(t, &c, got, want);
	for (s = 0; s < cache_slots(&c); s++) {
		if (!memcmp(&got_meta[s], &c.meta[s], sizeof(got_meta[s])))
			continue;
		if (!diff)
			tally_report(t,
				     "%s hd%u: slot %" PRIu64
				     " metadata {%g, %d}, expected {%g, %d}",
				     gpu_dtype_name(dtype), hd, s,
				     got_meta[s].metric, got_meta[s].pos,
				     c.meta[s].metric, c.meta[s].pos);
		diff++;
	}
	if (diff)
		tally_report(t,
			     "%s hd%u rows %u mode %d: %" PRIu64
			     " elements differ",
			     gpu_dtype_name(dtype), hd, rows, mode, diff);
	tally_check(t, !diff);
	ret = 0;
out:
	gpu_free(g, &d_slots);
	gpu_free(g, &d_k);
	gpu_free(g, &d_v);
	gpu_free(g, &d_pos);
	cache_destroy(g, &c);
	free(slots);
	free(perm);
	free(k);
	free(v);
	free(pos);
	free(want);
	free(got);
	free(got_meta);
	return ret;
}

static int test_cache_write(struct gpu *g, const struct opts *o)
{
	static const enum kvc_dtype dtypes[] = { KVC_DTYPE_F32, KVC_DTYPE_F16,
						 KVC_DTYPE_BF16 };
	static const uint32_t hds[] = { 64, 96, 128, 256 };
	uint32_t rows[] = { 1, 37, o->fake ? 300u : 5000u };
	uint32_t di, hi, ri, id = 0;
	struct tally t;

	for (di = 0; di < 3; di++) {
		tally_begin(&t, "cache write %s hd64/96/128/256",
			    gpu_dtype_name(dtypes[di]));
		for (hi = 0; hi < 4; hi++) {
			for (ri = 0; ri < 3; ri++, id++) {
				if (o->quick && ri == 1)
					continue;
				if (write_case(g, dtypes[di], hds[hi],
					       hi == 2 ? 32 : 16, rows[ri],
					       (int)((hi + ri) % 3),
					       case_seed(o, 3, id), &t))
					return -1;
			}
		}
		tally_end(&t);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Move */

static int move_case(struct gpu *g, enum kvc_dtype dtype, uint32_t hd,
		     uint32_t n, bool with_meta, uint64_t seed, struct tally *t)
{
	uint32_t bs = 16, nblocks = (2 * n + bs - 1) / bs + 3, i, *perm = NULL;
	uint64_t rng = seed, *moves = NULL, diff, s, nsrc;
	struct kvc_slot_meta *got_meta = NULL, *want_meta = NULL;
	uint8_t *want = NULL, *got = NULL;
	size_t row = (size_t)hd * gpu_elem_bytes(dtype);
	struct kvc_move_args args;
	kvc_cu_ptr d_moves = 0;
	struct cache c = { 0 };
	int ret = -1;

	if (cache_create(g, &c, dtype, bs, hd, nblocks, &rng))
		goto out;
	moves = gpu_malloc(2 * (size_t)n * sizeof(*moves));
	perm = gpu_malloc(cache_slots(&c) * sizeof(*perm));
	want = gpu_malloc(cache_bytes(&c));
	got = gpu_malloc(cache_bytes(&c));
	want_meta = gpu_malloc(cache_slots(&c) * sizeof(*want_meta));
	got_meta = gpu_malloc(cache_slots(&c) * sizeof(*got_meta));
	if (!moves || !perm || !want || !got || !want_meta || !got_meta)
		goto out;
	for (s = 0; s < cache_slots(&c); s++) {
		c.meta[s].metric = gpu_uniform(&rng);
		c.meta[s].pos = (int32_t)(gpu_rng(&rng) >> 33);
	}
	/* Destinations: the first n of a permutation; sources: from the
	 * rest, some of them twice. */
	gpu_shuffle(perm, (uint32_t)cache_slots(&c), &rng);
	nsrc = cache_slots(&c) - n;
	for (i = 0; i < n; i++) {
		moves[2 * i + 1] = perm[i];
		moves[2 * i] = perm[n + (i % 5 == 4 ? gpu_below(&rng, nsrc) :
						      i % nsrc)];
	}
	if (cache_upload(g, &c) ||
	    gpu_dup(g, &d_moves, moves, 2 * (size_t)n * sizeof(*moves)))
		goto out;
	memset(&args, 0, sizeof(args));
	args.kv = cache_kargs(&c, with_meta);
	args.moves = d_moves;
	args.n = n;
	if (KVC(kvc_cuda_move(g->k, g->stream, &args)) || gpu_sync(g) ||
	    gpu_get(g, got, c.base, cache_bytes(&c)) ||
	    gpu_get(g, got_meta, c.dmeta, cache_slots(&c) * sizeof(*got_meta)))
		goto out;

	/* kvc_slot_copy(): K row, V row, metadata; sources are never
	 * written, so the order does not matter. */
	memcpy(want, c.img, cache_bytes(&c));
	memcpy(want_meta, c.meta, cache_slots(&c) * sizeof(*want_meta));
	for (i = 0; i < n; i++) {
		memcpy(slot_row(&c, want, moves[2 * i + 1], false),
		       slot_row(&c, c.img, moves[2 * i], false), row);
		memcpy(slot_row(&c, want, moves[2 * i + 1], true),
		       slot_row(&c, c.img, moves[2 * i], true), row);
		if (with_meta)
			want_meta[moves[2 * i + 1]] = c.meta[moves[2 * i]];
	}
	diff = memcmp(got, want, cache_bytes(&c)) ?
		       image_diff(t, &c, got, want) :
		       0;
	for (s = 0; s < cache_slots(&c); s++)
		if (memcmp(&got_meta[s], &want_meta[s], sizeof(got_meta[s])))
			diff++;
	if (diff)
		tally_report(
			t, "%s hd%u n %u meta %d: %" PRIu64 " elements differ",
			gpu_dtype_name(dtype), hd, n, with_meta, diff);
	tally_check(t, !diff);
	ret = 0;
out:
	gpu_free(g, &d_moves);
	cache_destroy(g, &c);
	free(moves);
	free(perm);
	free(want);
	free(got);
	free(want_meta);
	free(got_meta);
	return ret;
}

static int test_move(struct gpu *g, const struct opts *o)
{
	static const enum kvc_dtype dtypes[] = { KVC_DTYPE_F32, KVC_DTYPE_F16,
						 KVC_DTYPE_BF16 };
	static const uint32_t hds[] = { 64, 128, 256 };
	uint32_t ns[] = { 1, 100, o->fake ? 500u : 3000u };
	uint32_t di, hi, ni, id = 0;
	struct tally t;

	tally_begin(&t, "move f32/f16/bf16 hd64/128/256");
	for (di = 0; di < 3; di++)
		for (hi = 0; hi < 3; hi++)
			for (ni = 0; ni < 3; ni++, id++) {
				if (o->quick && ni == 1)
					continue;
				if (move_case(g, dtypes[di], hds[hi], ns[ni],
					      id % 2 == 0, case_seed(o, 4, id),
					      &t))
					return -1;
			}
	tally_end(&t);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Block copy */

/*
 * @n items of @bytes; @dev: pairs in device memory (else inline);
 * @same: sources and destinations in one buffer; @skew: both bases off
 * 16-byte alignment (by 4 and 8 bytes).
 */
static int copy_case(struct gpu *g, uint64_t bytes, uint32_t n, bool dev,
		     bool same, bool skew, uint64_t seed, struct tally *t)
{
	uint32_t items = same ? 2 * n + 5 : n + 3, i, *perm = NULL;
	uint32_t *pairs = NULL, src_items = same ? items : n + 2;
	uint64_t rng = seed, diff = 0, buf_bytes, src_bytes, k;
	uint8_t *src = NULL, *dst = NULL, *want = NULL, *got = NULL;
	kvc_cu_ptr d_src = 0, d_dst = 0, d_pairs = 0;
	struct kvc_copy_args *args = NULL;
	uint64_t src_off = skew ? 4 : 0, dst_off = skew ? 8 : 0;
	int ret = -1;

	if (same)
		dst_off = src_off;
	buf_bytes = (uint64_t)items * bytes + 16;
	src_bytes = (uint64_t)src_items * bytes + 16;
	perm = gpu_malloc((size_t)items * sizeof(*perm));
	pairs = gpu_malloc(2 * (size_t)n * sizeof(*pairs));
	dst = gpu_malloc(buf_bytes);
	want = gpu_malloc(buf_bytes);
	got = gpu_malloc(buf_bytes);
	src = same ? dst : gpu_malloc(src_bytes);
	args = calloc(1, sizeof(*args));
	if (!perm || !pairs || !dst || !want || !got || !src || !args)
		goto out;
	for (k = 0; k < buf_bytes; k++)
		dst[k] = (uint8_t)gpu_rng(&rng);
	if (!same)
		for (k = 0; k < src_bytes; k++)
			src[k] = (uint8_t)gpu_rng(&rng);
	/* Destinations distinct; with one buffer, no source among them. */
	gpu_shuffle(perm, items, &rng);
	for (i = 0; i < n; i++) {
		pairs[2 * i + 1] = perm[i];
		if (same)
			pairs[2 * i] =
				perm[n + (i % 3 == 2 ?
						  gpu_below(&rng, items - n) :
						  i % (items - n))];
		else
			pairs[2 * i] = (uint32_t)gpu_below(&rng, src_items);
	}
	if (gpu_dup(g, &d_dst, dst, buf_bytes) ||
	    (!same && gpu_dup(g, &d_src, src, src_bytes)))
		goto out;
	if (same)
		d_src = d_dst;
	args->src_base = d_src + src_off;
	args->dst_base = d_dst + dst_off;
	args->bytes = bytes;
	args->n = n;
	if (dev) {
		if (gpu_dup(g, &d_pairs, pairs, 2 * (size_t)n * sizeof(*pairs)))
			goto out;
		args->pairs_dev = d_pairs;
	} else {
		memcpy(args->pairs, pairs, 2 * (size_t)n * sizeof(*pairs));
	}
	if (KVC(kvc_cuda_block_copy(g->k, g->stream, args)) || gpu_sync(g) ||
	    gpu_get(g, got, d_dst, buf_bytes))
		goto out;

	memcpy(want, dst, buf_bytes);
	for (i = 0; i < n; i++)
		memcpy(want + dst_off + (uint64_t)pairs[2 * i + 1] * bytes,
		       src + src_off + (uint64_t)pairs[2 * i] * bytes, bytes);
	for (k = 0; k < buf_bytes; k++) {
		if (got[k] == want[k])
			continue;
		if (!diff)
			tally_report(
				t,
				"%" PRIu64 " B x %u (%s, %s%s): byte %" PRIu64
				" is 0x%02x, expected 0x%02x",
				bytes, n, dev ? "pairs_dev" : "inline",
				same ? "one buffer" : "two buffers",
				skew ? ", unaligned" : "", k, got[k], want[k]);
		diff++;
	}
	if (!same && !diff) {
		/* The source must be untouched. */
		uint8_t *back = gpu_malloc(src_bytes);

		if (!back || gpu_get(g, back, d_src, src_bytes)) {
			free(back);
			goto out;
		}
		if (memcmp(back, src, src_bytes)) {
			tally_report(t, "%" PRIu64 " B x %u: source changed",
				     bytes, n);
			diff++;
		}
		free(back);
	}
	tally_check(t, !diff);
	ret = 0;
out:
	if (same)
		d_src = 0;
	gpu_free(g, &d_src);
	gpu_free(g, &d_dst);
	gpu_free(g, &d_pairs);
	if (src != dst)
		free(src);
	free(dst);
	free(want);
	free(got);
	free(perm);
	free(pairs);
	free(args);
	return ret;
}

static int test_block_copy(struct gpu *g, const struct opts *o)
{
	static const uint64_t sizes[] = { 4096, 4, 12, 1028, 4100, 16384 };
	uint32_t inline_n[] = { 1, 7, KVC_COPY_INLINE };
	uint32_t dev_n[] = { 1, KVC_COPY_INLINE + 1, o->fake ? 1000u : 20000u };
	uint32_t si, ni, id = 0;
	struct tally t;

	tally_begin(&t, "block copy, inline pairs");
	for (si = 0; si < 6; si++)
		for (ni = 0; ni < 3; ni++, id++) {
			if (o->quick && ni == 1)
				continue;
			if (copy_case(g, sizes[si], inline_n[ni], false,
				      id % 2 == 0, id % 3 == 1,
				      case_seed(o, 5, id), &t))
				return -1;
		}
	tally_end(&t);
	tally_begin(&t, "block copy, pairs_dev");
	for (si = 0; si < 6; si++)
		for (ni = 0; ni < 3; ni++, id++) {
			uint32_t n = dev_n[ni];

			if (o->quick && ni == 1)
				continue;
			/* 20000 items of 16 KiB is more than this needs. */
			if (sizes[si] > 4096 && n > 4000)
				n = 4000;
			if (copy_case(g, sizes[si], n, true, id % 2 == 1,
				      id % 3 == 2, case_seed(o, 5, id), &t))
				return -1;
		}
	tally_end(&t);
	return 0;
}

/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: test_gpu [--fake] [--quick] [--seed N] [--verbose]\n"
		"  --fake     run on the fake driver (kernels emulated on the CPU)\n"
		"  --quick    fewer shapes\n"
		"  --seed N   inputs from seed N (default %u)\n"
		"  --verbose  name the case of each group's largest error\n",
		DEFAULT_SEED);
}

int main(int argc, char **argv)
{
	struct opts o = { .seed = DEFAULT_SEED };
	struct gpu g;
	double t0 = gpu_now();
	int i, err;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--fake")) {
			o.fake = true;
		} else if (!strcmp(argv[i], "--quick")) {
			o.quick = true;
		} else if (!strcmp(argv[i], "--verbose")) {
			verbose = true;
		} else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
			o.seed = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	err = gpu_open(&g, o.fake, PROG);
	if (err == GPU_EXIT_SKIP)
		return GPU_EXIT_SKIP;
	if (err)
		return 1;
	printf("%s: %s driver, %u SMs, cc %u.%u, seed %#" PRIx64 "%s%s\n", PROG,
	       o.fake ? "fake" : "CUDA", g.info.sms, g.info.cc_major,
	       g.info.cc_minor, o.seed, o.quick ? ", quick" : "",
	       o.fake ? " (kernels emulated on the CPU)" : "");
	printf("tolerances: ||o - r|| / ||r|| per head <= %.0e (f32; prefill %.0e), <= %.0e (f16, bf16); metric: max |m - r| per slot over the head's ||r||, same bounds (L2: twice); cache write, move, copy bit-exact\n",
	       TOL_F32, TOL_F32_PREFILL, TOL_HALF);
	err = test_decode(&g, &o);
	if (!err)
		err = test_prefill(&g, &o);
	if (!err)
		err = test_cache_write(&g, &o);
	if (!err)
		err = test_move(&g, &o);
	if (!err)
		err = test_block_copy(&g, &o);
	if (err) {
		printf("%s: stopped by a failed call (above)\n", PROG);
		total_fail++;
	}
	if (gpu_close(&g))
		total_fail++;
	printf("%s: %u passed, %u failed (%.1f s)\n", PROG, total_pass,
	       total_fail, gpu_now() - t0);
	return total_fail ? 1 : 0;
}
