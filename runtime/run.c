// SPDX-License-Identifier: MIT
/*
 * The main job: a workload of sequences run end to end over the paged
 * per-head cache, compressed by an eviction policy, and measured. What
 * `kvcctl run` prints. It only drives the public calls of the cache, the
 * attention, the policy and the pool (compaction included), and reads their
 * state to report; it never edits a block table or pool state directly.
 *
 * Arrival: sequence i arrives at iteration i * RUN_ARRIVAL_STEPS. Each
 * iteration first decodes one token of every running sequence, in arrival
 * order, then prefills the sequence that arrives, if any (as
 * bench/bench_compact.c does). Sequences are never freed: the report is
 * taken when the last one has generated its last token, with all of them
 * held.
 *
 * Prefill: the prompt's K and V are appended (in pieces of at most
 * RUN_APPEND_FLOATS floats per K or V buffer), then each layer runs
 * kvc_attn_prefill() with the policy's observation for the prompt queries
 * the policy observes: the last observe-window ones, all of them for a
 * window of 0, none when the policy's metric is %KVC_METRIC_NONE. The
 * other queries' outputs feed nothing in this synthetic model and leave
 * the metric as it is, so skipping them changes no decision. Then the
 * sequence is compressed when kvc_policy_due() says so with 0 steps.
 *
 * Decode: one token appended, then kvc_attn_decode() per layer with the
 * policy's decode metric, then compression when due. After an iteration
 * in which any sequence was compressed, the pool is compacted in full
 * with the cache's fence (kvc_kv_compact(): on the cuda backend the
 * copies queue behind the cache's device work), unless compaction is
 * off.
 *
 * Backend: the evicting cache runs on the caller's backend, or on one
 * opened for backend_kind. On a cuda backend the driver's free memory
 * (cuMemGetInfo) is read before the cache is made, whenever the pool maps
 * more than ever before, and at the end (after the last compaction and
 * once every deferred unmap is done), so the report also says what the
 * device itself counts as used.
 *
 * Attention error: with err_samples, a second cache holds the same K and V
 * without eviction, on the host backend whatever the first one's (it
 * only serves as the reference, and keeps the device figures the evicting
 * cache's own); on err_samples decode steps spread evenly over the
 * run (sample k at step floor((2k + 1) * steps / (2 * samples)), over
 * all sequences' steps in the order they run), attention is also run over
 * it (metric NONE) and ||o - o_full|| / ||o_full|| of the concatenated
 * outputs of all layers is recorded.
 *
 * The report, taken at the end, before the hold:
 *  - logical: tokens x layers x kv_heads x head_dim x 2 (K, V) x element
 *    bytes, summed over sequences; live: the KVs the heads hold, same
 *    unit; mapped and peak mapped: the pool's bytes_mapped and its high
 *    water mark (no empty chunk is kept mapped: the watermark is 0);
 *  - compressions: kvc_policy_compress() calls, one per sequence each
 *    time it is due; blocks moved: the pool's, by compaction;
 *  - conventional: see conventional_bytes();
 *  - capacity (with a budget): without eviction, the sequences whose
 *    blocks at full length, on average, fill the whole chunks the budget
 *    holds, floor(floor(budget / chunk) * blocks_per_chunk * seqs /
 *    full_blocks); with it, the same with the pool's peak of live blocks
 *    for full_blocks (the peak includes the transient of a prompt held in
 *    full between its prefill and its compression).
 *
 * @rep is filled before @hold is called, so a hold can print it.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kvc/attention.h>
#include <kvc/compact.h>
#include <kvc/error.h>
#include <kvc/evict.h>
#include <kvc/kv.h>
#include <kvc/pool.h>
#include <kvc/run.h>

#include "../alloc/error.h"
#include "device.h"
#include "internal.h"
#include "run_state.h"

/* A new sequence arrives every this many decode iterations. */
#define RUN_ARRIVAL_STEPS 6u
/* Floats of one K (or V) buffer for appending a prompt in pieces. */
#define RUN_APPEND_FLOATS (1u << 20)
/* At most 2^24 sequences (the owner tag's sequence field). */
#define RUN_MAX_SEQS (1u << 24)
/* At most 2^20 blocks per (layer, KV head) table (the owner tag's index). */
#define RUN_MAX_TABLE_BLOCKS (1u << 20)
/* Progress lines start after this long, and are redrawn this often. */
#define RUN_PROGRESS_AFTER_S 2.0
#define RUN_PROGRESS_EVERY_S 0.25

void kvc_run_params_init(struct kvc_run_params *p)
{
	memset(p, 0, sizeof(*p));
	p->shape = (struct kvc_model_shape){
		.layers = 30,
		.q_heads = 9,
		.kv_heads = 3,
		.head_dim = 64,
		.block_size = 16,
		.dtype = KVC_DTYPE_F16,
	};
	kvc_policy_params_init(&p->policy);
	p->policy.name = "kvcompress";
	p->policy.rate = 8;
	p->seqs = 8;
	p->prompt_len = 512;
	p->gen_len = 32;
	p->seed = 1;
	p->backend_kind = KVC_BACKEND_HOST;
	p->err_samples = 8;
	p->compact = true;
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + !!(a % b);
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ------------------------------------------------------------------ */
/* Parameters */

/* Request @i: from the trace (cycling) or from the lengths, then cut. */
static struct kvc_request request_of(const struct kvc_run_params *p, uint32_t i)
{
	struct kvc_request r;

	if (p->trace) {
		r = p->trace[i % p->nr_trace];
	} else {
		r.prompt = p->prompt_len;
		r.gen = p->gen_len;
	}
	if (p->max_tokens && (uint64_t)r.prompt + r.gen > p->max_tokens) {
		if (r.prompt > p->max_tokens)
			r.prompt = p->max_tokens;
		r.gen = p->max_tokens - r.prompt;
	}
	return r;
}

static int check_params(const struct kvc_run_params *p)
{
	uint64_t max_tokens;
	uint32_t i, n;
	int err;

	err = kvc_model_shape_check(&p->shape);
	if (err)
		return err;
	if (!p->policy.name)
		return kvc_err(-EINVAL, "kvc_run: no policy name");
	if (!p->seqs)
		return kvc_err(-EINVAL, "kvc_run: seqs is 0");
	if (p->seqs > RUN_MAX_SEQS)
		return kvc_err(-EINVAL, "kvc_run: %u sequences, at most %u",
			       p->seqs, RUN_MAX_SEQS);
	if (p->backend_kind != KVC_BACKEND_AUTO &&
	    p->backend_kind != KVC_BACKEND_HOST &&
	    p->backend_kind != KVC_BACKEND_CUDA)
		return kvc_err(-EINVAL, "kvc_run: backend kind %d",
			       (int)p->backend_kind);
	if (!p->trace && p->nr_trace)
		return kvc_err(-EINVAL,
			       "kvc_run: nr_trace is %u but the trace is NULL",
			       p->nr_trace);
	if (p->trace && !p->nr_trace)
		return kvc_err(-EINVAL, "kvc_run: the trace has no request");
	if (!p->trace && !p->prompt_len)
		return kvc_err(-EINVAL, "kvc_run: prompt_len is 0");
	if (p->swap && !p->budget_bytes)
		return kvc_err(-EINVAL,
			       "kvc_run: a swap needs a budget to enforce");
	if (p->preempt != KVC_PREEMPT_LATEST &&
	    p->preempt != KVC_PREEMPT_LARGEST)
		return kvc_err(-EINVAL, "kvc_run: preemption rule %d",
			       (int)p->preempt);
	for (i = 0; p->trace && i < p->nr_trace; i++)
		if (!p->trace[i].prompt)
			return kvc_err(
				-EINVAL,
				"kvc_run: trace request %u has a prompt of 0 tokens",
				i);
	/* Positions are int32; a table holds at most 2^20 blocks. */
	max_tokens = (uint64_t)RUN_MAX_TABLE_BLOCKS * p->shape.block_size;
	if (max_tokens > INT32_MAX)
		max_tokens = INT32_MAX;
	n = p->trace ? (p->nr_trace < p->seqs ? p->nr_trace : p->seqs) : 1;
	for (i = 0; i < n; i++) {
		struct kvc_request r = request_of(p, i);

		if ((uint64_t)r.prompt + r.gen > max_tokens)
			return kvc_err(
				-EINVAL,
				"kvc_run: request %u has %llu tokens, at most %llu with blocks of %u",
				i, (unsigned long long)r.prompt + r.gen,
				(unsigned long long)max_tokens,
				p->shape.block_size);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Setup and teardown */

/* Blocks of every sequence at full length, over all its tables. */
static int full_blocks(const struct run *r, uint64_t *out)
{
	uint64_t tables = (uint64_t)r->shape.layers * r->shape.kv_heads;
	uint64_t blocks = 0, b;
	uint32_t i;

	for (i = 0; i < r->nr_seqs; i++) {
		const struct run_seq *s = &r->seqs[i];

		b = div_up((uint64_t)s->prompt + s->gen, r->shape.block_size) *
		    tables;
		blocks += b;
	}
	if (blocks >= KVC_MAX_BLOCKS / 2)
		return kvc_err(
			-EINVAL,
			"kvc_run: the workload needs %llu blocks at full length, more than a pool holds",
			(unsigned long long)blocks);
	*out = blocks;
	return 0;
}

/* A cache on @be, or on a host backend of its own when @be is NULL. */
static int open_cache(struct run *r, struct kvc_backend *be, uint64_t blocks,
		      uint64_t max_mapped, const char *name, uint32_t flags,
		      struct kvc_kv **out)
{
	struct kvc_kv_params kp;

	memset(&kp, 0, sizeof(kp));
	kp.shape = r->shape;
	kp.capacity_blocks = blocks;
	kp.backend_kind = KVC_BACKEND_HOST;
	kp.backend = be;
	/* No empty chunk kept mapped: what is mapped is what is needed. */
	kp.empty_chunks_kept = 0;
	kp.max_mapped_bytes = max_mapped;
	kp.name = name;
	kp.flags = flags;
	return kvc_kv_create(&kp, out);
}

static int alloc_floats(float **p, uint64_t n)
{
	if (n > SIZE_MAX / sizeof(float))
		return kvc_err(-ENOMEM, "kvc_run: %llu floats of scratch",
			       (unsigned long long)n);
	*p = malloc((size_t)n * sizeof(float));
	if (!*p)
		return kvc_err(
			-ENOMEM,
			"kvc_run: out of memory for %llu floats of scratch",
			(unsigned long long)n);
	return 0;
}

/* Grow @q to hold @n tokens of queries. */
static int reserve_q(struct run *r, uint32_t n)
{
	uint64_t floats = (uint64_t)n * r->shape.q_heads * r->shape.head_dim;

	if (n <= r->q_tokens)
		return 0;
	free(r->q);
	free(r->out);
	r->q = r->out = NULL;
	r->q_tokens = 0;
	if (alloc_floats(&r->q, floats) || alloc_floats(&r->out, floats))
		return -ENOMEM;
	r->q_tokens = n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Recording: each event follows what it describes (see alloc/record.c) */

void kvc_run_rec(struct run *r, enum kvc_rec_kind kind, uint64_t a, uint64_t b,
		 uint64_t c, uint64_t d)
{
	uint64_t p[KVC_REC_PAYLOAD] = { a, b, c, d };

	/* A write error stays in the recorder; its close reports it. */
	if (r->rec)
		kvc_recorder_emit(r->rec, kind, p);
}

/*
 * Attach @rec to the evicting cache's pool before it holds a block, then
 * say what the model and the policy are.
 */
static int record_start(struct run *r, struct kvc_recorder *rec)
{
	int err;

	err = kvc_rec_model(rec, kvc_kv_pool(r->kv), &r->shape,
			    kvc_policy_name(r->pol));
	if (err)
		return kvc_err(err, "kvc_run: recording failed: %s",
			       strerror(-err));
	r->rec = rec;
	return 0;
}

/* KVs sequence @seq holds over all its (layer, KV head) tables. */
static uint64_t seq_kvs(const struct run *r, const struct kvc_seq *seq)
{
	uint64_t kvs = 0;
	uint32_t layer, head;

	for (layer = 0; layer < r->shape.layers; layer++)
		for (head = 0; head < r->shape.kv_heads; head++)
			kvs += kvc_seq_len(seq, layer, head);
	return kvs;
}

/*
 * The iteration's ladder sample, after everything it did. Taken whether
 * or not the run records: the pool's ring, peaks and stats page are what
 * 'kvcctl stats' shows of a held run (the byte ladder, --history and
 * --watch). It fails only for want of memory or when the cache and the
 * pool disagree (a bug): either is the run's error, never a silent gap
 * in a trace.
 */
static int sample(struct run *r, uint64_t iter)
{
	struct kvc_pool_usage usage;

	kvc_kv_usage(r->kv, &usage);
	usage.preemptions = r->preemptions;
	return kvc_pool_sample(kvc_kv_pool(r->kv), &usage, iter);
}

/* Detach before the pool goes: the closing snapshot is taken here. */
static void record_stop(struct run *r)
{
	if (!r->rec)
		return;
	kvc_pool_set_recorder(kvc_kv_pool(r->kv), NULL);
	r->rec = NULL;
}

static int setup(struct run *r, const struct kvc_run_params *p)
{
	uint64_t per_token, blocks = 0, decode_floats;
	uint32_t i;
	int err;

	r->p = p;
	r->shape = p->shape;
	r->nr_seqs = p->seqs;
	r->seqs = calloc(r->nr_seqs, sizeof(*r->seqs));
	if (!r->seqs)
		return kvc_err(-ENOMEM,
			       "kvc_run: out of memory for %u sequences",
			       r->nr_seqs);
	for (i = 0; i < r->nr_seqs; i++) {
		struct kvc_request req = request_of(p, i);

		r->seqs[i].prompt = req.prompt;
		r->seqs[i].gen = req.gen;
		r->total_steps += req.gen;
	}
	r->samples = p->err_samples < r->total_steps ? p->err_samples :
						       r->total_steps;

	err = kvc_policy_create(&p->policy, &r->shape, &r->pol);
	if (err)
		return err;
	kvc_policy_observe(r->pol, &r->obs);
	r->decode_metric = kvc_policy_decode_metric(r->pol);
	err = kvc_synth_create(&r->shape, p->seed, &r->synth);
	if (err)
		return err;

	/*
	 * Eviction only frees and compaction only moves, so every sequence
	 * at full length bounds what is ever live; an eighth more costs
	 * address space only.
	 */
	err = full_blocks(r, &blocks);
	if (err)
		return err;
	r->be = p->backend;
	if (!r->be) {
		err = kvc_dev_backend_open(p->backend_kind, &p->shape,
					   &r->own_be);
		if (err)
			return err;
		r->be = r->own_be;
	}
	/* Before the cache exists: all it takes on the device counts. */
	err = kvc_dev_mem_info(r->be, &r->free_start, NULL);
	if (err && err != -EOPNOTSUPP)
		return err;
	r->device = !err;
	r->free_min = r->free_start;
	if (p->swap && p->budget_bytes < kvc_backend_granularity(r->be))
		return kvc_err(
			-EINVAL,
			"kvc_run: a budget of %llu bytes is less than one chunk (%llu bytes)",
			(unsigned long long)p->budget_bytes,
			(unsigned long long)kvc_backend_granularity(r->be));
	/* With a swap the budget is the cap: the pool maps no more. */
	err = open_cache(r, r->be, blocks + blocks / 8 + 1,
			 p->swap ? p->budget_bytes : 0, p->pool_name, 0,
			 &r->kv);
	if (err)
		return err;
	if (p->swap) {
		struct kvc_swap_params sp = *p->swap;

		/* Entries of another run name other sequences. */
		sp.flags |= KVC_SWAP_FRESH;
		err = kvc_swap_open(&sp, r->kv, &r->sw);
		if (err)
			return err;
	}
	if (p->rec) {
		err = record_start(r, p->rec);
		if (err)
			return err;
	}
	if (r->samples) {
		err = open_cache(r, NULL, blocks + 1, 0, NULL,
				 KVC_POOL_NO_STATS_PAGE, &r->full_kv);
		if (err)
			return err;
	}

	per_token = (uint64_t)r->shape.layers * r->shape.kv_heads *
		    r->shape.head_dim;
	r->append_tokens = (uint32_t)(RUN_APPEND_FLOATS / per_token);
	if (!r->append_tokens)
		r->append_tokens = 1;
	err = alloc_floats(&r->k, per_token * r->append_tokens);
	if (err)
		return err;
	err = alloc_floats(&r->v, per_token * r->append_tokens);
	if (err)
		return err;
	decode_floats = (uint64_t)r->shape.layers * r->shape.q_heads *
			r->shape.head_dim;
	err = reserve_q(r, r->shape.layers);
	if (err)
		return err;
	if (r->samples)
		return alloc_floats(&r->out_full, decode_floats);
	return 0;
}

static void teardown(struct run *r)
{
	record_stop(r);
	kvc_swap_close(r->sw);
	/* The caches free their sequences. */
	kvc_kv_destroy(r->kv);
	kvc_kv_destroy(r->full_kv);
	kvc_backend_close(r->own_be);
	kvc_synth_destroy(r->synth);
	kvc_policy_destroy(r->pol);
	free(r->seqs);
	free(r->k);
	free(r->v);
	free(r->q);
	free(r->out);
	free(r->out_full);
}

/* ------------------------------------------------------------------ */
/* Steps */

/*
 * The device's free memory, read whenever the pool maps more than ever
 * before: the least of it is the peak of what the run holds there.
 */
static void sample_device(struct run *r)
{
	struct kvc_pool_stats st;
	uint64_t free_bytes;

	if (!r->device)
		return;
	kvc_pool_get_stats(kvc_kv_pool(r->kv), &st, NULL);
	if (st.bytes_mapped <= r->mapped_seen)
		return;
	r->mapped_seen = st.bytes_mapped;
	if (!kvc_dev_mem_info(r->be, &free_bytes, NULL) &&
	    free_bytes < r->free_min)
		r->free_min = free_bytes;
}

/* FNV-1a over @n floats: a run's outputs, compared across runs. */
static void digest_add(uint64_t *h, const float *x, uint64_t n)
{
	const uint8_t *p = (const uint8_t *)x;
	uint64_t i, v = *h;

	for (i = 0; i < n * sizeof(float); i++)
		v = (v ^ p[i]) * 0x100000001b3ull;
	*h = v;
}

#define DIGEST_SEED 0xcbf29ce484222325ull

/*
 * Append tokens [pos, pos + n) of sequence @i to both caches. With a
 * swap, an append the budget refuses makes room and tries again; -EAGAIN
 * when sequence @i itself had to give way.
 */
static int append(struct run *r, uint32_t i, uint32_t pos, uint32_t n,
		  bool admitting)
{
	struct run_seq *s = &r->seqs[i];
	uint32_t piece;
	int err;

	while (n) {
		piece = n < r->append_tokens ? n : r->append_tokens;
		kvc_synth_kv(r->synth, i, pos, piece, r->k, r->v);
		for (;;) {
			err = kvc_seq_append(s->seq, piece, r->k, r->v);
			if (err != -ENOMEM || !r->sw)
				break;
			err = kvc_run_make_room(r, i, admitting);
			if (err)
				return err;
		}
		if (err)
			return err;
		kvc_run_rec(r, KVC_REC_APPEND, i, piece, kvc_seq_tokens(s->seq),
			    0);
		sample_device(r);
		if (s->full) {
			err = kvc_seq_append(s->full, piece, r->k, r->v);
			if (err)
				return err;
		}
		pos += piece;
		n -= piece;
	}
	return 0;
}

static int compress(struct run *r, struct run_seq *s, bool *compressed)
{
	struct kvc_pool_stats before, after;
	uint64_t kvs = 0;
	int err;

	if (r->rec) {
		kvs = seq_kvs(r, s->seq);
		kvc_pool_get_stats(kvc_kv_pool(r->kv), &before, NULL);
	}
	err = kvc_policy_compress(r->pol, s->seq, NULL);
	if (err)
		return err;
	if (r->rec) {
		kvc_pool_get_stats(kvc_kv_pool(r->kv), &after, NULL);
		kvc_run_rec(r, KVC_REC_COMPRESS, (uint64_t)(s - r->seqs), kvs,
			    seq_kvs(r, s->seq),
			    before.blocks_live - after.blocks_live);
	}
	r->compressions++;
	*compressed = true;
	return 0;
}

/* Prompt queries whose attention weights the policy observes. */
static uint32_t observed_queries(const struct run *r, uint32_t prompt)
{
	if (r->obs.metric == KVC_METRIC_NONE)
		return 0;
	if (r->obs.window && r->obs.window < prompt)
		return r->obs.window;
	return prompt;
}

void kvc_run_release(struct run *r, uint32_t i)
{
	struct run_seq *s = &r->seqs[i];

	kvc_seq_destroy(s->seq);
	kvc_seq_destroy(s->full);
	s->seq = s->full = NULL;
}

int kvc_run_prefill(struct run *r, uint32_t i, bool *compressed)
{
	struct run_seq *s = &r->seqs[i];
	uint32_t layer, nq = observed_queries(r, s->prompt);
	uint64_t floats;
	int err;

	if (r->sw && !kvc_run_admissible(r, i))
		return -EAGAIN;
	if (s->state == RUN_WAITING)
		kvc_run_rec(r, KVC_REC_ARRIVE, i, s->prompt, s->gen,
			    (uint64_t)(seconds_since(&r->start) * 1e9));
	s->done = 0;
	s->digest = DIGEST_SEED;
	err = kvc_seq_create(r->kv, &s->seq);
	if (err)
		return err;
	if (r->full_kv) {
		err = kvc_seq_create(r->full_kv, &s->full);
		if (err)
			return err;
	}
	err = append(r, i, 0, s->prompt, true);
	/* It gave way while being admitted: nothing of it stays. */
	if (err == -EAGAIN)
		kvc_run_release(r, i);
	if (err)
		return err;
	s->state = RUN_RUNNING;
	if (nq) {
		err = reserve_q(r, nq);
		if (err)
			return err;
		floats = (uint64_t)nq * r->shape.q_heads * r->shape.head_dim;
		for (layer = 0; layer < r->shape.layers; layer++) {
			kvc_synth_q(r->synth, i, layer, s->prompt - nq, nq,
				    r->q);
			err = kvc_attn_prefill(s->seq, layer, nq, r->q, r->out,
					       &r->obs);
			if (err)
				return err;
			digest_add(&s->digest, r->out, floats);
		}
	}
	if (kvc_policy_due(r->pol, s->seq, 0))
		err = compress(r, s, compressed);
	if (!err && !s->gen) {
		kvc_run_rec(r, KVC_REC_FINISH, i, kvc_seq_tokens(s->seq), 0, 0);
		kvc_run_finish(r, i);
	}
	return err;
}

/* ||a - b|| / ||b|| over @n floats (0 when both are zero). */
static double rel_err(const float *a, const float *b, uint64_t n)
{
	double diff = 0, norm = 0, d;
	uint64_t j;

	for (j = 0; j < n; j++) {
		d = (double)a[j] - (double)b[j];
		diff += d * d;
		norm += (double)b[j] * b[j];
	}
	if (norm == 0)
		return diff == 0 ? 0 : INFINITY;
	return sqrt(diff / norm);
}

/* Is the decode step about to run one of the error samples? */
static bool sample_due(const struct run *r)
{
	uint64_t at;

	if (r->samples_taken >= r->samples)
		return false;
	/* Sample k sits in the middle of the k-th of @samples equal parts. */
	at = ((2 * r->samples_taken + 1) * r->total_steps) / (2 * r->samples);
	return r->steps == at;
}

static int decode(struct run *r, uint32_t i, bool *compressed)
{
	struct run_seq *s = &r->seqs[i];
	uint64_t layer_floats = (uint64_t)r->shape.q_heads * r->shape.head_dim;
	bool sample = sample_due(r);
	uint32_t layer, pos = kvc_seq_tokens(s->seq);
	double e;
	int err;

	err = append(r, i, pos, 1, false);
	if (err)
		return err;
	for (layer = 0; layer < r->shape.layers; layer++) {
		float *out = r->out + (sample ? layer * layer_floats : 0);

		kvc_synth_q(r->synth, i, layer, pos, 1, r->q);
		err = kvc_attn_decode(s->seq, layer, r->q, out,
				      r->decode_metric);
		if (err)
			return err;
		digest_add(&s->digest, out, layer_floats);
		if (!sample)
			continue;
		err = kvc_attn_decode(s->full, layer, r->q,
				      r->out_full + layer * layer_floats,
				      KVC_METRIC_NONE);
		if (err)
			return err;
	}
	if (sample) {
		e = rel_err(r->out, r->out_full,
			    layer_floats * r->shape.layers);
		r->err_sum += e;
		if (e > r->err_max)
			r->err_max = e;
		r->samples_taken++;
	}
	s->done++;
	/* A recomputed sequence's steps count once. */
	if (s->done > s->counted) {
		s->counted = s->done;
		r->steps++;
	}
	if (kvc_policy_due(r->pol, s->seq, s->done))
		err = compress(r, s, compressed);
	if (!err && s->done == s->gen) {
		kvc_run_rec(r, KVC_REC_FINISH, i, kvc_seq_tokens(s->seq), 0, 0);
		kvc_run_finish(r, i);
	}
	return err;
}

static void progress(struct run *r, bool last)
{
	double t;

	if (!r->p->progress)
		return;
	t = seconds_since(&r->start);
	if (!last && (t < RUN_PROGRESS_AFTER_S ||
		      t - r->progress_at < RUN_PROGRESS_EVERY_S))
		return;
	if (last && !r->progress_shown)
		return;
	r->progress_at = t;
	r->progress_shown = true;
	fprintf(stderr,
		"\rkvc run: %u/%u sequences, %llu/%llu decode steps, %.1f s ",
		r->arrived, r->nr_seqs, (unsigned long long)r->steps,
		(unsigned long long)r->total_steps, t);
	if (last)
		fputc('\n', stderr);
	fflush(stderr);
}

/* Sequences in the cache; running ones among them. */
static uint32_t resident(const struct run *r, bool *running)
{
	uint32_t i, n = 0;

	*running = false;
	for (i = 0; i < r->arrived; i++) {
		const struct run_seq *s = &r->seqs[i];

		if (s->state != RUN_RUNNING)
			continue;
		n++;
		*running |= s->done < s->gen;
	}
	return n;
}

/*
 * Iterations until every sequence has arrived and generated its tokens.
 * Each: preempted sequences come back while memory allows (with a swap),
 * every running sequence decodes one token, the sequence whose time has
 * come is admitted (unless an earlier one still waits to come back), the
 * pool is compacted after compression, and the ladder is sampled.
 */
static int run_loop(struct run *r)
{
	bool running = false, compressed, progress_made;
	uint32_t i, nr_resident;
	uint64_t iter;
	int err;

	for (iter = 0; r->arrived < r->nr_seqs || running ||
		       (r->sw && kvc_run_waiting(r));
	     iter++) {
		compressed = false;
		progress_made = false;
		if (r->rec)
			kvc_recorder_step(r->rec, (uint32_t)iter);
		if (r->sw) {
			nr_resident = resident(r, &running);
			err = kvc_run_readmit(r, &compressed, nr_resident,
					      &progress_made);
			if (err)
				return err;
		}
		for (i = 0; i < r->arrived; i++) {
			struct run_seq *s = &r->seqs[i];

			if (s->state != RUN_RUNNING || s->done == s->gen)
				continue;
			err = decode(r, i, &compressed);
			if (err == -EAGAIN)
				continue;
			if (err)
				return err;
			progress_made = true;
		}
		if (r->arrived < r->nr_seqs &&
		    iter >= (uint64_t)r->arrived * RUN_ARRIVAL_STEPS &&
		    !(r->sw && kvc_run_waiting(r))) {
			nr_resident = resident(r, &running);
			err = kvc_run_prefill(r, r->arrived, &compressed);
			if (err == -EAGAIN && !nr_resident)
				return kvc_err(
					-ENOMEM,
					"kvc_run: a budget of %llu bytes cannot hold the prompt of sequence %u (%u tokens)",
					(unsigned long long)r->p->budget_bytes,
					r->arrived, r->seqs[r->arrived].prompt);
			if (err && err != -EAGAIN)
				return err;
			if (!err) {
				r->arrived++;
				progress_made = true;
			}
		}
		if (compressed && r->p->compact) {
			err = kvc_kv_compact(r->kv, NULL);
			if (err)
				return err;
		}
		err = sample(r, iter);
		if (err)
			return err;
		progress(r, false);
		nr_resident = resident(r, &running);
		/* Nothing moved although nothing waits for its time: stuck. */
		if (r->sw && !progress_made && !nr_resident &&
		    kvc_run_waiting(r))
			return kvc_err(
				-ENOMEM,
				"kvc_run: a budget of %llu bytes cannot hold the first preempted sequence",
				(unsigned long long)r->p->budget_bytes);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Report */

static double ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0;
}

/*
 * The conventional layout (vLLM's), on the same eviction decisions: one
 * block holds block_size tokens of every KV head of a layer, kv_heads
 * times our block's bytes. Its best case, the one reported: compaction
 * inside the layer packs each head's survivors to the front, so a
 * (sequence, layer) needs ceil(max over its heads of the head's KVs /
 * block_size) blocks (the fullest head sets the length). Those blocks are
 * packed perfectly into chunks of our chunk size: ceil(blocks x block
 * bytes / chunk_bytes) chunks. Without such moves a block could be freed
 * only where every head dropped all its tokens, which needs at least as
 * many blocks.
 */
/* Blocks (sequence, layer) pairs of @seq need in the conventional layout. */
static uint64_t conv_blocks(const struct run *r, const struct kvc_seq *seq)
{
	uint32_t layer, head, len, max;
	uint64_t blocks = 0;

	for (layer = 0; layer < r->shape.layers; layer++) {
		max = 0;
		for (head = 0; head < r->shape.kv_heads; head++) {
			len = kvc_seq_len(seq, layer, head);
			max = len > max ? len : max;
		}
		blocks += div_up(max, r->shape.block_size);
	}
	return blocks;
}

/* What the report needs of sequence @i: taken now, or when it was freed. */
static void seq_figures(const struct run *r, uint32_t i, uint64_t *tokens,
			uint64_t *live, uint64_t *conv)
{
	const struct run_seq *s = &r->seqs[i];

	if (!s->seq) {
		*tokens = s->fin_tokens;
		*live = s->fin_live;
		*conv = s->fin_conv_blocks;
		return;
	}
	*tokens = kvc_seq_tokens(s->seq);
	*live = seq_kvs(r, s->seq);
	*conv = conv_blocks(r, s->seq);
}

void kvc_run_finish(struct run *r, uint32_t i)
{
	struct run_seq *s = &r->seqs[i];

	if (!r->sw)
		return;
	seq_figures(r, i, &s->fin_tokens, &s->fin_live, &s->fin_conv_blocks);
	kvc_run_release(r, i);
	s->state = RUN_DONE;
}

static uint64_t conventional_bytes(const struct run *r, uint64_t chunk_bytes)
{
	uint64_t blocks = 0, bytes, tokens, live, conv;
	uint32_t i;

	for (i = 0; i < r->nr_seqs; i++) {
		seq_figures(r, i, &tokens, &live, &conv);
		blocks += conv;
	}
	bytes = blocks * r->shape.kv_heads * kvc_kv_block_bytes(&r->shape);
	return div_up(bytes, chunk_bytes) * chunk_bytes;
}

static void fill_report(struct run *r, struct kvc_run_report *rep)
{
	const struct kvc_model_shape *sh = &r->shape;
	uint64_t kv_bytes = 2ull * sh->head_dim * kvc_dtype_bytes(sh->dtype);
	uint64_t logical = 0, live = 0, seq_blocks = 0, chunks, bpc;
	uint64_t tokens, kvs, conv, digest = DIGEST_SEED;
	struct kvc_swap_stats sw;
	struct kvc_pool_stats st;
	uint32_t i;

	for (i = 0; i < r->nr_seqs; i++) {
		seq_figures(r, i, &tokens, &kvs, &conv);
		logical += tokens * sh->layers * sh->kv_heads * kv_bytes;
		seq_blocks += div_up(tokens, sh->block_size) * sh->layers *
			      sh->kv_heads;
		live += kvs * kv_bytes;
		digest_add(&digest, (const float *)&r->seqs[i].digest, 2);
	}
	kvc_pool_get_stats(kvc_kv_pool(r->kv), &st, NULL);

	memset(rep, 0, sizeof(*rep));
	rep->policy = kvc_policy_name(r->pol);
	rep->rate = r->p->policy.max_cache_tokens ? 0 : r->p->policy.rate;
	rep->seqs = r->nr_seqs;
	rep->steps = r->steps;
	rep->logical_bytes = logical;
	rep->live_bytes = live;
	rep->mapped_bytes = st.bytes_mapped;
	rep->chunk_bytes = st.chunk_bytes;
	rep->peak_mapped_bytes = st.bytes_mapped_hwm;
	rep->theoretical_ratio = ratio(logical, live);
	rep->physical_ratio = ratio(logical, st.bytes_mapped);
	rep->frag_ratio = st.frag_ratio;
	rep->conventional_mapped_bytes = conventional_bytes(r, st.chunk_bytes);
	rep->conventional_ratio =
		ratio(logical, rep->conventional_mapped_bytes);
	rep->attn_rel_err =
		r->samples_taken ? r->err_sum / (double)r->samples_taken : 0;
	rep->attn_rel_err_max = r->err_max;
	rep->compressions = r->compressions;
	rep->blocks_moved = st.blocks_moved;
	rep->backend = kvc_kv_backend_name(r->kv);
	rep->output_digest = digest;
	rep->preemptions = r->preemptions;
	rep->recomputes = r->recomputes;
	rep->swap_failures = r->swap_failures;
	if (r->sw) {
		kvc_swap_get_stats(r->sw, &sw);
		rep->swap_outs = sw.out_seqs;
		rep->swap_ins = sw.in_seqs;
		rep->swap_out_bytes = sw.out_bytes;
		rep->swap_in_bytes = sw.in_bytes;
		rep->swap_out_seconds = (double)sw.out_ns / 1e9;
		rep->swap_in_seconds = (double)sw.in_ns / 1e9;
		rep->swap_checksum_failures = sw.checksum_failures;
		rep->swap_engine = sw.engine;
		rep->swap_direct = sw.direct;
	}
	/* With a swap the budget caps the peak: no capacity to estimate. */
	if (r->p->budget_bytes && !r->sw) {
		/*
		 * Both alike, so that they compare: the blocks an average
		 * sequence needs, packed into the whole chunks the budget
		 * holds. Without eviction, every block at full length; with
		 * it, the pool's peak of live blocks (each prompt held in full
		 * until its compression included).
		 */
		bpc = st.blocks_per_chunk;
		chunks = r->p->budget_bytes / st.chunk_bytes;
		rep->capacity_full =
			seq_blocks ? (uint64_t)((double)chunks * bpc *
						r->nr_seqs / seq_blocks) :
				     0;
		rep->capacity_compressed =
			st.blocks_live_hwm ?
				(uint64_t)((double)chunks * bpc * r->nr_seqs /
					   (double)st.blocks_live_hwm) :
				0;
	}
}

/*
 * What the device says the cache holds at the end, once every deferred
 * unmap is done, so that the driver counts what the pool maps now.
 */
static int measure_device(struct run *r, struct kvc_run_report *rep)
{
	uint64_t free_end, used, kv_bytes;
	int err;

	if (!r->device)
		return 0;
	err = kvc_dev_mem_info(r->be, &free_end, NULL);
	if (err)
		return err;
	if (free_end < r->free_min)
		r->free_min = free_end;
	used = r->free_start > free_end ? r->free_start - free_end : 0;
	rep->device_free_start = r->free_start;
	rep->device_free_min = r->free_min;
	rep->device_free_end = free_end;
	rep->device_measured_bytes = used;
	rep->device_peak_bytes = r->free_start - r->free_min;
	rep->device_overhead_bytes = kvc_kv_device_overhead(r->kv);
	kv_bytes = used > rep->device_overhead_bytes ?
			   used - rep->device_overhead_bytes :
			   0;
	rep->device_ratio = ratio(rep->logical_bytes, kv_bytes);
	return 0;
}

int kvc_run(const struct kvc_run_params *p, struct kvc_run_report *rep,
	    void (*hold)(void *arg), void *arg)
{
	struct run r;
	int err;

	if (!p || !rep)
		return kvc_err(-EINVAL, "kvc_run: NULL %s",
			       p ? "report" : "parameters");
	err = check_params(p);
	if (err)
		return err;
	memset(&r, 0, sizeof(r));
	clock_gettime(CLOCK_MONOTONIC, &r.start);
	err = setup(&r, p);
	if (err)
		goto out;
	err = run_loop(&r);
	progress(&r, true);
	if (err)
		goto out;
	/* Settle deferred unmaps before the pool's figures are read. */
	err = kvc_pool_fence_wait(kvc_kv_pool(r.kv));
	if (err)
		goto out;
	fill_report(&r, rep);
	err = measure_device(&r, rep);
	if (err)
		goto out;
	rep->seconds = seconds_since(&r.start);
	if (hold)
		hold(arg);
out:
	teardown(&r);
	return err;
}
