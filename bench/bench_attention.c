// SPDX-License-Identifier: MIT
/*
 * bench_attention: what one decode step of paged attention costs on the
 * CPU path, against the memory it has to read, and what one compression
 * of the scheduler costs against that step.
 *
 * Decode. A kvc_kv on the host backend (no stats page, the pool's default
 * watermark of one empty chunk) with the attention shape of a real model,
 * by default SmolLM2-135M's (9 query heads, 3 KV heads, head_dim 64;
 * --model llama for Llama-3-8B's 32/8/128), blocks of 16 tokens, ONE layer
 * (enough for timing: every layer costs the same).
 * --seqs sequences (default 8) are filled to 4K tokens, in f16 and in f32,
 * and to 32K, in f16 (--dtype both: in f32 too), with kvc_seq_append():
 * round after round, in an order shuffled every round, each sequence
 * appends a seeded 1..32 tokens, so the blocks of sequences and heads
 * interleave in memory as a paging cache's do (the share of a head's
 * consecutive blocks that happen to be adjacent is printed, with the time
 * the fill took). K and V are seeded uniform values in [-1, 1), Q too.
 * One step is kvc_attn_decode() for every sequence and every layer; its
 * figure is GB/s of KV read: the bytes of K and V the heads hold (each is
 * read once) over the step's time.
 * The floor: a summing loop over a buffer of as many bytes, contiguous and
 * touched beforehand, vectorised (GCC vector extensions, 4 accumulators),
 * over the same element type (f32 summed as floats; f16 as 16-bit
 * integers, as C has no portable half arithmetic: the bytes read are the
 * same). Attention splits a call by KV head over kvc_attn_parallel()'s
 * default threads (the online CPUs, at most 8, at most one per KV head; a
 * call of under 2^21 multiply-adds stays on the caller's thread). Like
 * with like: attention capped to one thread against the loop on one
 * thread, and attention on its default threads against the loop split in
 * as many contiguous parts on as many threads (started per pass, as
 * attention's are per call). Goal: attention / read at least 0.6.
 * The metric: the same step with KVC_METRIC_L2 against KVC_METRIC_NONE
 * (default threads); L2's second pass reads every K row again, so its GB/s
 * are given both of the cache's bytes and of the bytes it reads.
 *
 * Compression. The same model with ALL its layers, one sequence of 4K
 * tokens (f16, or --dtype's type). Timed, in order: one decode step of it
 * (every layer, the policy's decode metric, L2, default threads), which
 * also gives every key its metric (a prefill observation would cost as
 * many decode steps as it has queries on this path); one
 * kvc_policy_compress() with "kvcompress" at rate 8; one decode step of
 * what is left. The figure: the compression over the decode step before
 * it.
 *
 * Fixed seed (--seed). Every figure is the median of --repeats runs
 * (default 5; CLOCK_MONOTONIC); ratios are ratios of medians. The runs of
 * the decode subjects interleave, so that a noisy neighbour slows both
 * sides of a ratio alike; each compression run works on a fresh copy of
 * the sequence, rebuilt the same way. A checksum of the outputs and sums
 * is printed, so no work can be optimised away; kvc_kv_check() follows
 * every compression, untimed.
 *
 * Goals are informational: the exit status is 1 only when a call fails,
 * and 2 for bad flags.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kvc/evict.h>
#include <kvc/kvc.h>

#include "../kernels/attention.h"
#include "bench.h"

#define SEED 0x6b7663u
#define REPEATS 5
#define MAX_REPEATS 101
#define MAX_SEQS 4096u
#define BLOCK_TOKENS 16u
/* Tokens one append of the fill takes at most: two blocks. */
#define MAX_CHUNK (2 * BLOCK_TOKENS)
/* Seeded values K, V and Q are taken from, at random offsets. */
#define NOISE_FLOATS (1u << 21)
/* kvc_attn_parallel()'s most threads, and the work worth a thread. */
#define MAX_THREADS 8u
#define PARALLEL_WORK (1ull << 21)
#define NR_CTX 2

struct model {
	const char *flag;
	const char *name;
	uint32_t layers;
	uint32_t q_heads;
	uint32_t kv_heads;
	uint32_t head_dim;
};

static const struct model models[] = {
	{ "smollm2", "SmolLM2-135M", 30, 9, 3, 64 },
	{ "llama", "Llama-3-8B", 32, 32, 8, 128 },
};

/* The subjects of a decode measurement, timed in this order. */
enum subject { READ_1, ATTN_1, READ_N, ATTN_N, ATTN_N_L2, NR_SUBJECTS };

/* A cache and its sequences, filled. */
struct batch {
	struct kvc_kv *kv;
	struct kvc_seq **seqs;
	uint32_t nr_seqs;
	struct kvc_model_shape shape;
	float *q; /* [nr_seqs][layers][q_heads][head_dim] */
	float *out; /* [q_heads][head_dim] */
	uint64_t kv_bytes; /* K and V held: what a step reads */
	uint64_t k_bytes; /* K alone: what the metric reads again */
	uint64_t pairs, adjacent; /* consecutive blocks of a head */
};

static uint64_t rng_state;
static float *noise;
static double checksum;

static uint64_t rng_next(void)
{
	return bench_rng(&rng_state);
}

static void fail(const char *what, const char *why)
{
	fprintf(stderr, "bench_attention: %s failed: %s\n", what, why);
	exit(1);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void *xcalloc(uint64_t n, uint64_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p)
		fail("calloc", strerror(ENOMEM));
	return p;
}

static double median(const double *v, uint32_t n)
{
	double sorted[MAX_REPEATS];

	memcpy(sorted, v, n * sizeof(*v));
	qsort(sorted, n, sizeof(*sorted), bench_cmp_double);
	return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

static const char *fmt_bytes(char *buf, size_t size, double bytes)
{
	const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;

	while (bytes >= 1024 && u < 4) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
	return buf;
}

static const char *goal(bool met)
{
	return met ? "PASS" : "MISS";
}

static const char *dtype_name(enum kvc_dtype dt)
{
	return dt == KVC_DTYPE_F16 ? "f16" : "f32";
}

static uint32_t elem_bytes(enum kvc_dtype dt)
{
	return dt == KVC_DTYPE_F16 ? 2 : 4;
}

/* Seeded floats in [-1, 1): K, V and Q start at random offsets in them. */
static void make_noise(uint64_t seed)
{
	noise = xcalloc(NOISE_FLOATS, sizeof(*noise));
	rng_state = seed;
	for (uint32_t i = 0; i < NOISE_FLOATS; i++)
		noise[i] = (float)((double)(rng_next() >> 11) * 0x1p-52 - 1.0);
}

/* @n floats of noise (at most NOISE_FLOATS) from a random offset. */
static const float *noise_at(uint64_t n)
{
	return noise + rng_next() % (NOISE_FLOATS - n + 1);
}

/*
 * The threads kvc_attn_decode() takes by default for layer 0 of @seq:
 * kvc_attn_parallel()'s rule (attention_ref.c), one item a KV head; a call
 * of under PARALLEL_WORK multiply-adds stays on the calling thread.
 */
static uint32_t attn_threads(const struct kvc_seq *seq,
			     const struct kvc_model_shape *shape)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint32_t n = cpus > 1 ? (uint32_t)cpus : 1;
	uint64_t work = 0;

	for (uint32_t h = 0; h < shape->kv_heads; h++)
		work += (uint64_t)kvc_seq_len(seq, 0, h) *
			(shape->q_heads / shape->kv_heads) * shape->head_dim *
			2;
	if (work < PARALLEL_WORK)
		return 1;
	n = n < MAX_THREADS ? n : MAX_THREADS;
	return n < shape->kv_heads ? n : shape->kv_heads;
}

/* ------------------------------------------------------------------ */
/* The read floor */

typedef float vf32 __attribute__((vector_size(16)));
typedef uint16_t vu16 __attribute__((vector_size(16)));

static __attribute__((noinline)) double sum_f32(const float *p, uint64_t n)
{
	const vf32 *v = (const vf32 *)p;
	vf32 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 }, a;
	uint64_t i, nv = n / 4;
	double s = 0;

	for (i = 0; i + 4 <= nv; i += 4) {
		a0 += v[i];
		a1 += v[i + 1];
		a2 += v[i + 2];
		a3 += v[i + 3];
	}
	for (; i < nv; i++)
		a0 += v[i];
	a = (a0 + a1) + (a2 + a3);
	for (i = 0; i < 4; i++)
		s += a[i];
	for (i = nv * 4; i < n; i++)
		s += p[i];
	return s;
}

static __attribute__((noinline)) double sum_u16(const uint16_t *p, uint64_t n)
{
	const vu16 *v = (const vu16 *)p;
	vu16 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 }, a;
	uint64_t i, nv = n / 8, s = 0;

	for (i = 0; i + 4 <= nv; i += 4) {
		a0 += v[i];
		a1 += v[i + 1];
		a2 += v[i + 2];
		a3 += v[i + 3];
	}
	for (; i < nv; i++)
		a0 += v[i];
	a = (a0 + a1) + (a2 + a3);
	for (i = 0; i < 8; i++)
		s += a[i];
	for (i = nv * 8; i < n; i++)
		s += p[i];
	return (double)s;
}

/* One thread's part of a read pass. */
struct reader {
	const uint8_t *p;
	uint64_t bytes;
	enum kvc_dtype dtype;
	double sum;
};

static void *reader_run(void *arg)
{
	struct reader *r = arg;

	if (r->dtype == KVC_DTYPE_F16)
		r->sum = sum_u16((const uint16_t *)r->p, r->bytes / 2);
	else
		r->sum = sum_f32((const float *)r->p, r->bytes / 4);
	return NULL;
}

/*
 * One pass over @bytes of @buf on @threads threads, each a contiguous
 * part, started and joined per pass as attention's are per call.
 */
static void read_pass(const uint8_t *buf, uint64_t bytes, enum kvc_dtype dt,
		      uint32_t threads)
{
	struct reader r[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	bool started[MAX_THREADS] = { false };
	uint64_t part = bytes / threads / 64 * 64, at = 0;

	for (uint32_t t = 0; t < threads; t++) {
		r[t] = (struct reader){ buf + at,
					t + 1 < threads ? part : bytes - at, dt,
					0 };
		at += part;
	}
	for (uint32_t t = 1; t < threads; t++)
		started[t] = !pthread_create(&th[t], NULL, reader_run, &r[t]);
	reader_run(&r[0]);
	for (uint32_t t = 1; t < threads; t++) {
		if (started[t])
			pthread_join(th[t], NULL);
		else
			reader_run(&r[t]);
	}
	for (uint32_t t = 0; t < threads; t++)
		checksum += r[t].sum * 1e-9;
}

/* ------------------------------------------------------------------ */
/* Caches and sequences */

static struct kvc_kv *make_kv(const struct kvc_model_shape *shape,
			      uint64_t blocks)
{
	struct kvc_kv_params p = { 0 };
	struct kvc_kv *kv;

	p.shape = *shape;
	p.capacity_blocks = blocks;
	p.backend_kind = KVC_BACKEND_HOST;
	p.flags = KVC_POOL_NO_STATS_PAGE;
	p.empty_chunks_kept = 1; /* the pool's default watermark */
	if (kvc_kv_create(&p, &kv))
		fail("kvc_kv_create", kvc_last_error());
	return kv;
}

static uint64_t blocks_for(const struct kvc_model_shape *shape, uint32_t seqs,
			   uint32_t tokens)
{
	return (uint64_t)seqs * shape->layers * shape->kv_heads *
	       ((tokens + shape->block_size - 1) / shape->block_size);
}

static void append(struct kvc_seq *seq, const struct kvc_model_shape *shape,
		   uint32_t n)
{
	uint64_t floats =
		(uint64_t)shape->layers * shape->kv_heads * n * shape->head_dim;

	if (kvc_seq_append(seq, n, noise_at(floats), noise_at(floats)))
		fail("kvc_seq_append", kvc_last_error());
}

/*
 * Fills every sequence of @b to @tokens: rounds in a shuffled order, each
 * sequence a seeded 1..MAX_CHUNK tokens a round.
 */
static void fill(struct batch *b, uint32_t tokens)
{
	uint32_t *order = xcalloc(b->nr_seqs, sizeof(*order)), left;

	for (uint32_t s = 0; s < b->nr_seqs; s++)
		order[s] = s;
	do {
		left = 0;
		for (uint32_t i = b->nr_seqs; i > 1; i--) {
			uint32_t j = (uint32_t)(rng_next() % i), t;

			t = order[i - 1];
			order[i - 1] = order[j];
			order[j] = t;
		}
		for (uint32_t i = 0; i < b->nr_seqs; i++) {
			struct kvc_seq *seq = b->seqs[order[i]];
			uint32_t have = kvc_seq_tokens(seq);
			uint32_t n = 1 + (uint32_t)(rng_next() % MAX_CHUNK);

			if (have >= tokens)
				continue;
			n = n < tokens - have ? n : tokens - have;
			append(seq, &b->shape, n);
			left += have + n < tokens;
		}
	} while (left);
	free(order);
}

static void count_bytes(struct batch *b)
{
	uint64_t row = (uint64_t)b->shape.head_dim * elem_bytes(b->shape.dtype);

	b->kv_bytes = b->k_bytes = b->pairs = b->adjacent = 0;
	for (uint32_t s = 0; s < b->nr_seqs; s++) {
		for (uint32_t l = 0; l < b->shape.layers; l++) {
			for (uint32_t h = 0; h < b->shape.kv_heads; h++) {
				uint32_t nb;
				const uint32_t *t =
					kvc_seq_table(b->seqs[s], l, h, &nb);

				b->k_bytes +=
					kvc_seq_len(b->seqs[s], l, h) * row;
				for (uint32_t i = 1; i < nb; i++)
					b->adjacent += t[i] == t[i - 1] + 1;
				b->pairs += nb ? nb - 1 : 0;
			}
		}
	}
	b->kv_bytes = 2 * b->k_bytes;
}

static void make_batch(struct batch *b, const struct model *m,
		       enum kvc_dtype dt, uint32_t layers, uint32_t nr_seqs,
		       uint32_t tokens)
{
	uint64_t qf;

	memset(b, 0, sizeof(*b));
	b->shape = (struct kvc_model_shape){ layers,	   m->q_heads,
					     m->kv_heads,  m->head_dim,
					     BLOCK_TOKENS, dt };
	b->nr_seqs = nr_seqs;
	b->kv = make_kv(&b->shape, blocks_for(&b->shape, nr_seqs, tokens));
	b->seqs = xcalloc(nr_seqs, sizeof(*b->seqs));
	for (uint32_t s = 0; s < nr_seqs; s++)
		if (kvc_seq_create(b->kv, &b->seqs[s]))
			fail("kvc_seq_create", kvc_last_error());
	qf = (uint64_t)m->q_heads * m->head_dim;
	b->q = xcalloc((uint64_t)nr_seqs * layers * qf, sizeof(*b->q));
	b->out = xcalloc(qf, sizeof(*b->out));
	for (uint64_t i = 0; i < (uint64_t)nr_seqs * layers; i++)
		memcpy(b->q + i * qf, noise_at(qf), qf * sizeof(*b->q));
}

static void free_batch(struct batch *b)
{
	for (uint32_t s = 0; s < b->nr_seqs; s++)
		kvc_seq_destroy(b->seqs[s]);
	kvc_kv_destroy(b->kv);
	free(b->seqs);
	free(b->q);
	free(b->out);
}

/* One decode step of sequences [first, first + n): every layer of each. */
static void decode_step(struct batch *b, uint32_t first, uint32_t n,
			enum kvc_metric_kind metric)
{
	uint64_t qf = (uint64_t)b->shape.q_heads * b->shape.head_dim;

	for (uint32_t s = first; s < first + n; s++) {
		for (uint32_t l = 0; l < b->shape.layers; l++) {
			const float *q =
				b->q + ((uint64_t)s * b->shape.layers + l) * qf;

			if (kvc_attn_decode(b->seqs[s], l, q, b->out, metric))
				fail("kvc_attn_decode", kvc_last_error());
			checksum += b->out[0];
		}
	}
}

/* ------------------------------------------------------------------ */
/* Decode against the read floor */

struct decode_result {
	uint32_t tokens;
	enum kvc_dtype dtype;
	uint32_t threads; /* attention's default */
	uint64_t kv_bytes, k_bytes;
	double adjacent; /* share of consecutive blocks adjacent */
	double fill_ns;
	double ns[NR_SUBJECTS]; /* per step, medians; 0 = not run */
};

static double run_subject(struct batch *b, const uint8_t *buf, uint32_t threads,
			  enum subject s, uint32_t steps)
{
	double t0 = now_ns();

	for (uint32_t i = 0; i < steps; i++) {
		switch (s) {
		case READ_1:
			read_pass(buf, b->kv_bytes, b->shape.dtype, 1);
			break;
		case READ_N:
			read_pass(buf, b->kv_bytes, b->shape.dtype, threads);
			break;
		case ATTN_1:
			kvc_attn_set_max_threads(1);
			decode_step(b, 0, b->nr_seqs, KVC_METRIC_NONE);
			break;
		case ATTN_N:
			kvc_attn_set_max_threads(0);
			decode_step(b, 0, b->nr_seqs, KVC_METRIC_NONE);
			break;
		default:
			kvc_attn_set_max_threads(0);
			decode_step(b, 0, b->nr_seqs, KVC_METRIC_L2);
			break;
		}
	}
	kvc_attn_set_max_threads(0);
	return (now_ns() - t0) / steps;
}

static void measure_decode(const struct model *m, enum kvc_dtype dt,
			   uint32_t nr_seqs, uint32_t tokens, uint32_t repeats,
			   double target_ns, struct decode_result *res)
{
	uint32_t threads, steps[NR_SUBJECTS];
	double runs[NR_SUBJECTS][MAX_REPEATS], t0, t;
	struct batch b;
	uint8_t *buf;

	make_batch(&b, m, dt, 1, nr_seqs, tokens);
	t0 = now_ns();
	fill(&b, tokens);
	res->fill_ns = now_ns() - t0;
	count_bytes(&b);
	res->tokens = tokens;
	res->dtype = dt;
	res->kv_bytes = b.kv_bytes;
	res->k_bytes = b.k_bytes;
	res->adjacent = b.pairs ? (double)b.adjacent / b.pairs : 0;
	res->threads = threads = attn_threads(b.seqs[0], &b.shape);

	/* The floor's buffer: as many bytes, touched, seeded values. */
	buf = aligned_alloc(64, (b.kv_bytes + 63) / 64 * 64);
	if (!buf)
		fail("aligned_alloc", strerror(ENOMEM));
	for (uint64_t at = 0; at < b.kv_bytes; at += NOISE_FLOATS * 2) {
		uint64_t n = b.kv_bytes - at < NOISE_FLOATS * 2 ?
				     b.kv_bytes - at :
				     NOISE_FLOATS * 2;

		memcpy(buf + at, noise, n);
	}

	/* A first run of each warms it up and sets its steps a run. */
	for (int s = 0; s < NR_SUBJECTS; s++) {
		res->ns[s] = 0;
		steps[s] = 0;
		if ((s == READ_N || s == ATTN_N) && threads == 1)
			continue;
		t = run_subject(&b, buf, threads, s, 1);
		steps[s] = t >= target_ns ? 1 : (uint32_t)(target_ns / t) + 1;
	}
	for (uint32_t r = 0; r < repeats; r++)
		for (int s = 0; s < NR_SUBJECTS; s++)
			if (steps[s])
				runs[s][r] = run_subject(&b, buf, threads, s,
							 steps[s]);
	for (int s = 0; s < NR_SUBJECTS; s++)
		if (steps[s])
			res->ns[s] = median(runs[s], repeats);
	free(buf);
	free_batch(&b);
}

static void report_fill(const struct model *m, uint32_t nr_seqs,
			const struct decode_result *res, uint32_t nr)
{
	printf("\nfill: kvc_seq_append() in rounds, in an order shuffled every round, each sequence 1..%u tokens a round\n",
	       MAX_CHUNK);
	printf("%6s %5s %8s %16s %24s\n", "ctx", "dtype", "fill s",
	       "ns a K/V element", "adjacent block pairs");
	for (uint32_t i = 0; i < nr; i++) {
		const struct decode_result *r = &res[i];
		double elems =
			2.0 * r->tokens * nr_seqs * m->kv_heads * m->head_dim;

		printf("%6u %5s %8.2f %16.2f %23.1f%%\n", r->tokens,
		       dtype_name(r->dtype), r->fill_ns / 1e9,
		       r->fill_ns / elems, 100 * r->adjacent);
	}
}

static void report_decode(const struct model *m, uint32_t nr_seqs,
			  const struct decode_result *res, uint32_t nr,
			  uint32_t repeats)
{
	char s1[32];

	printf("\ndecode: kvc_attn_decode() of %u sequence%s x 1 layer a step; ms a step and GB/s of K+V read, medians of %u\n",
	       nr_seqs, nr_seqs > 1 ? "s" : "", repeats);
	printf("%6s %5s %10s %7s %8s %9s %9s %10s %9s   %s\n", "ctx", "dtype",
	       "KV/step", "threads", "read ms", "attn ms", "read GB/s",
	       "attn GB/s", "attn/read", "goal >= 0.6");
	for (uint32_t i = 0; i < nr; i++) {
		const struct decode_result *r = &res[i];

		for (int k = 0; k < 2; k++) {
			double rd = r->ns[k ? READ_N : READ_1];
			double at = r->ns[k ? ATTN_N : ATTN_1];

			if (!rd || !at)
				continue;
			printf("%6u %5s %10s %7u %8.2f %9.2f %9.2f %10.3f %9.3f   %s\n",
			       r->tokens, dtype_name(r->dtype),
			       fmt_bytes(s1, sizeof(s1), (double)r->kv_bytes),
			       k ? r->threads : 1, rd / 1e6, at / 1e6,
			       r->kv_bytes / rd, r->kv_bytes / at, rd / at,
			       goal(rd / at >= 0.6));
		}
	}
	printf("(read: a vectorised summing loop over a contiguous buffer of as many bytes, same element type, on as many threads as attention takes, each a contiguous part; attention: kvc_attn_parallel(), capped to 1 thread, or its default: one item a KV head (%u here), at most the %ld online CPUs, a call under 2^21 multiply-adds on the caller's thread)\n",
	       m->kv_heads, sysconf(_SC_NPROCESSORS_ONLN));

	printf("\nmetric: the same step with KVC_METRIC_L2 against KVC_METRIC_NONE, default threads; the L2 pass reads every K row again\n");
	printf("%6s %5s %7s %9s %9s %8s %12s %14s\n", "ctx", "dtype", "threads",
	       "none ms", "L2 ms", "L2/none", "L2 KV GB/s", "L2 read GB/s");
	for (uint32_t i = 0; i < nr; i++) {
		const struct decode_result *r = &res[i];
		double none = r->ns[ATTN_N] ? r->ns[ATTN_N] : r->ns[ATTN_1];
		double l2 = r->ns[ATTN_N_L2];

		printf("%6u %5s %7u %9.2f %9.2f %7.2fx %12.3f %14.3f\n",
		       r->tokens, dtype_name(r->dtype), r->threads, none / 1e6,
		       l2 / 1e6, l2 / none, r->kv_bytes / l2,
		       (r->kv_bytes + r->k_bytes) / l2);
	}
}

/* ------------------------------------------------------------------ */
/* Compression against a decode step */

struct compress_result {
	double decode_n_ns[MAX_REPEATS];
	double compress_ns[MAX_REPEATS];
	double after_ns[MAX_REPEATS];
	double build_ns[MAX_REPEATS];
	struct kvc_evict_stats st;
	uint64_t bytes_before, bytes_after;
	enum kvc_metric_kind metric;
	uint32_t threads, threads_after; /* attention's default */
};

/* A fresh copy of the sequence: @tokens appended, the same every time. */
static void build_seq(struct batch *b, uint32_t tokens, uint64_t seed)
{
	uint32_t have = 0, n;

	rng_state = seed;
	if (kvc_seq_create(b->kv, &b->seqs[0]))
		fail("kvc_seq_create", kvc_last_error());
	for (; have < tokens; have += n) {
		n = tokens - have < BLOCK_TOKENS ? tokens - have : BLOCK_TOKENS;
		append(b->seqs[0], &b->shape, n);
	}
}

static void measure_compress(const struct model *m, enum kvc_dtype dt,
			     uint32_t tokens, uint32_t repeats, uint64_t seed,
			     struct compress_result *res)
{
	struct kvc_policy_params pp;
	struct kvc_policy *pol;
	struct batch b;
	double t0;

	/* One sequence, every layer, built afresh for each run. */
	make_batch(&b, m, dt, m->layers, 1, tokens);
	kvc_seq_destroy(b.seqs[0]);
	kvc_policy_params_init(&pp);
	pp.name = "kvcompress";
	pp.rate = 8;
	if (kvc_policy_create(&pp, &b.shape, &pol))
		fail("kvc_policy_create", kvc_last_error());
	res->metric = kvc_policy_decode_metric(pol);

	for (uint32_t r = 0; r < repeats; r++) {
		memset(&res->st, 0, sizeof(res->st));
		t0 = now_ns();
		build_seq(&b, tokens, seed);
		res->build_ns[r] = now_ns() - t0;
		count_bytes(&b);
		res->bytes_before = b.kv_bytes;
		res->threads = attn_threads(b.seqs[0], &b.shape);

		/* This step also gives every key its metric. */
		t0 = now_ns();
		decode_step(&b, 0, 1, res->metric);
		res->decode_n_ns[r] = now_ns() - t0;

		t0 = now_ns();
		if (kvc_policy_compress(pol, b.seqs[0], &res->st))
			fail("kvc_policy_compress", kvc_last_error());
		res->compress_ns[r] = now_ns() - t0;

		t0 = now_ns();
		decode_step(&b, 0, 1, res->metric);
		res->after_ns[r] = now_ns() - t0;
		count_bytes(&b);
		res->bytes_after = b.kv_bytes;
		res->threads_after = attn_threads(b.seqs[0], &b.shape);
		if (kvc_kv_check(b.kv))
			fail("kvc_kv_check", kvc_last_error());
		kvc_seq_destroy(b.seqs[0]);
		b.seqs[0] = NULL;
	}
	kvc_policy_destroy(pol);
	free_batch(&b);
}

static const char *metric_name(enum kvc_metric_kind k)
{
	switch (k) {
	case KVC_METRIC_L2:
		return "L2";
	case KVC_METRIC_L1:
		return "L1";
	case KVC_METRIC_AVG:
		return "avg";
	default:
		return "none";
	}
}

static void report_compress(const struct model *m, enum kvc_dtype dt,
			    uint32_t tokens, uint32_t repeats,
			    const struct compress_result *res)
{
	double dn = median(res->decode_n_ns, repeats);
	double c = median(res->compress_ns, repeats);
	double after = median(res->after_ns, repeats);
	char s1[32], s2[32], label[64];

	printf("\ncompression: kvc_policy_compress(\"kvcompress\", rate 8) of one sequence of %u tokens, %s x %u layers, %s; medians of %u, each on a fresh copy (built in %.1f ms)\n",
	       tokens, m->name, m->layers, dtype_name(dt), repeats,
	       median(res->build_ns, repeats) / 1e6);
	printf("  the metric: %s, added by the decode step timed before it (one query a head)\n",
	       metric_name(res->metric));
	printf("  KVs %llu -> %llu (%.2fx), %llu moved, %llu blocks freed; K+V %s -> %s\n",
	       (unsigned long long)res->st.kvs_before,
	       (unsigned long long)res->st.kvs_after,
	       res->st.kvs_after ?
		       (double)res->st.kvs_before / res->st.kvs_after :
		       0,
	       (unsigned long long)res->st.kvs_moved,
	       (unsigned long long)res->st.blocks_freed,
	       fmt_bytes(s1, sizeof(s1), (double)res->bytes_before),
	       fmt_bytes(s2, sizeof(s2), (double)res->bytes_after));
	printf("  %-44s %9.3f ms\n", "kvc_policy_compress(), 1 thread",
	       c / 1e6);
	snprintf(label, sizeof(label),
		 "decode step before, all layers, %u thread%s", res->threads,
		 res->threads > 1 ? "s" : "");
	printf("  %-44s %9.3f ms   compress / step %.3f\n", label, dn / 1e6,
	       c / dn);
	snprintf(label, sizeof(label),
		 "decode step after, all layers, %u thread%s",
		 res->threads_after, res->threads_after > 1 ? "s" : "");
	printf("  %-44s %9.3f ms   before / after %.2fx\n", label, after / 1e6,
	       dn / after);
}

/* ------------------------------------------------------------------ */
/* Flags */

static void bad_flag(const char *flag, const char *fmt, const char *v)
{
	fprintf(stderr, "bench_attention: %s ", flag);
	fprintf(stderr, fmt, v);
	fputs("\n(--help lists the flags)\n", stderr);
	exit(2);
}

static const char *flag_value(int argc, char **argv, int i)
{
	if (i + 1 >= argc)
		bad_flag(argv[i], "wants a value%s", "");
	return argv[i + 1];
}

static uint64_t parse_number(int argc, char **argv, int i, uint64_t lo,
			     uint64_t hi)
{
	const char *v = flag_value(argc, argv, i);
	unsigned long long x;
	char *end;

	errno = 0;
	x = strtoull(v, &end, 0);
	if (v[0] == '-' || end == v || *end || errno)
		bad_flag(argv[i], "wants a whole number, not '%s'", v);
	if (x < lo || x > hi) {
		fprintf(stderr,
			"bench_attention: %s %s is out of range %llu..%llu\n",
			argv[i], v, (unsigned long long)lo,
			(unsigned long long)hi);
		exit(2);
	}
	return x;
}

static const char usage[] =
	"usage: bench_attention [flags]\n"
	"  --model M      smollm2 (9 query heads, 3 KV heads, head_dim 64, 30 layers;\n"
	"                 the default) or llama (32/8/128, 32 layers; about 2 minutes)\n"
	"  --dtype T      f16, f32 or both; by default f16 at 4K and 32K and f32 at\n"
	"                 4K only (both: f32 at 32K too, some 15 s more); the\n"
	"                 compression uses f16, or T\n"
	"  --seqs N       sequences a decode step, 1..4096 (default 8)\n"
	"  --repeats N    runs of each measurement, 1..101 (default 5, --quick 3)\n"
	"  --seed N       seed for K, V, Q and the fill (default 0x6b7663)\n"
	"  --quick        contexts 512 and 2K, compression at 1K: a smoke test\n"
	"  --help         this text\n";

int main(int argc, char **argv)
{
	const struct model *m = &models[0];
	enum kvc_dtype dtypes[2] = { KVC_DTYPE_F16, KVC_DTYPE_F32 };
	uint32_t nr_dtypes = 2, nr_seqs = 8, repeats = 0, nr = 0;
	bool long_f32 = false; /* f32 at the long context too */
	uint32_t ctx[NR_CTX] = { 4096, 32768 }, compress_ctx = 4096;
	struct decode_result res[NR_CTX * 2];
	static struct compress_result cres;
	uint64_t seed = SEED, need;
	double target_ns = 0.05e9;
	bool quick = false;
	uint64_t avail = sysconf(_SC_AVPHYS_PAGES) * sysconf(_SC_PAGESIZE);

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--model")) {
			const char *v = flag_value(argc, argv, i++);

			m = NULL;
			for (size_t k = 0; k < sizeof(models) / sizeof(*models);
			     k++)
				if (!strcmp(v, models[k].flag))
					m = &models[k];
			if (!m)
				bad_flag(argv[i - 1],
					 "wants smollm2 or llama, not '%s'", v);
		} else if (!strcmp(argv[i], "--dtype")) {
			const char *v = flag_value(argc, argv, i++);

			if (!strcmp(v, "f16") || !strcmp(v, "f32")) {
				dtypes[0] = v[1] == '1' ? KVC_DTYPE_F16 :
							  KVC_DTYPE_F32;
				nr_dtypes = 1;
				long_f32 = dtypes[0] == KVC_DTYPE_F32;
			} else if (!strcmp(v, "both")) {
				nr_dtypes = 2;
				long_f32 = true;
			} else {
				bad_flag(argv[i - 1],
					 "wants f16, f32 or both, not '%s'", v);
			}
		} else if (!strcmp(argv[i], "--seqs")) {
			nr_seqs = (uint32_t)parse_number(argc, argv, i++, 1,
							 MAX_SEQS);
		} else if (!strcmp(argv[i], "--repeats")) {
			repeats = (uint32_t)parse_number(argc, argv, i++, 1,
							 MAX_REPEATS);
		} else if (!strcmp(argv[i], "--seed")) {
			seed = parse_number(argc, argv, i++, 0, UINT64_MAX);
		} else if (!strcmp(argv[i], "--quick")) {
			quick = true;
		} else {
			bool help = !strcmp(argv[i], "--help");

			if (!help)
				fprintf(stderr,
					"bench_attention: unknown argument '%s'\n",
					argv[i]);
			fputs(usage, help ? stdout : stderr);
			return help ? 0 : 2;
		}
	}
	if (quick) {
		ctx[0] = 512;
		ctx[1] = 2048;
		compress_ctx = 1024;
		target_ns = 0.01e9;
	}
	if (!repeats)
		repeats = quick ? 3 : REPEATS;
	/* The largest cache and the floor's buffer beside it. */
	need = 2 *
	       blocks_for(&(struct kvc_model_shape){ 1, m->q_heads, m->kv_heads,
						     m->head_dim, BLOCK_TOKENS,
						     dtypes[0] },
			  nr_seqs, ctx[NR_CTX - 1]) *
	       BLOCK_TOKENS * m->head_dim * 2 * (long_f32 ? 4 : 2);
	if (need > avail / 10 * 8) {
		fprintf(stderr,
			"bench_attention: the largest cache and its read buffer, %llu MiB, exceed 80%% of free memory; try fewer --seqs\n",
			(unsigned long long)(need >> 20));
		return 2;
	}

	printf("bench_attention: paged decode attention against a read loop, and compression against a decode step; CPU path, host backend\n");
	bench_print_machine();
	printf("shape: %s's attention: %u query heads, %u KV heads (GQA %u), head_dim %u; blocks of %u tokens; seed %#llx\n",
	       m->name, m->q_heads, m->kv_heads, m->q_heads / m->kv_heads,
	       m->head_dim, BLOCK_TOKENS, (unsigned long long)seed);
	fflush(stdout);

	make_noise(seed);
	for (int c = 0; c < NR_CTX; c++) {
		for (uint32_t d = 0; d < nr_dtypes; d++) {
			if (c && dtypes[d] == KVC_DTYPE_F32 && !long_f32)
				continue;
			measure_decode(m, dtypes[d], nr_seqs, ctx[c], repeats,
				       target_ns, &res[nr++]);
		}
	}
	report_fill(m, nr_seqs, res, nr);
	report_decode(m, nr_seqs, res, nr, repeats);
	fflush(stdout);

	measure_compress(m, dtypes[0], compress_ctx, repeats, seed ^ 0x5eed,
			 &cres);
	report_compress(m, dtypes[0], compress_ctx, repeats, &cres);
	printf("\nchecksum: %.6e\n", checksum);
	free(noise);
	return 0;
}
