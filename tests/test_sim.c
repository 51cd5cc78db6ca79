/* Description: logical replay (kvc_sim_run): a hand-computed ladder per step, ladder identities and block conservation on every sample, the eviction model's budgets, preemption, contiguous Orca layouts (the vLLM Orca-Max 8.85% check), placement, full compaction, shares that sum to 1, request streams from CSV and traces, layout names */
// SPDX-License-Identifier: MIT
/*
 * Tests of runtime/sim*.c. Small geometries make every number computable
 * by hand: 1 layer x 2 KV heads of head dim 64 in f16 with 16-token
 * blocks gives 4096-byte blocks (256 bytes per token-head); 16 KiB chunks
 * hold 4 blocks. After every replay each sample's ladder passes
 * kvc_ladder_check() (the pool's own invariants are checked on every call
 * by the debug build), and the last sample holds no block.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include "tmpdir.h"

#include <kvc/kvc.h>
#include <kvc/record.h>
#include <kvc/sim.h>

#include "../runtime/sim.h"

#define KV_BYTES 256u
#define BLOCK 4096u
#define CHUNK (16u << 10)

struct fixture {
	char dir[64];
	struct kvc_sim_params p;
	struct kvc_sim_result res;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (tmpdir_make(f->dir, sizeof(f->dir), "kvc-test-sim")) {
		free(f);
		return -1;
	}
	kvc_sim_params_init(&f->p);
	f->p.shape.layers = 1;
	f->p.shape.q_heads = 2;
	f->p.shape.kv_heads = 2;
	f->p.shape.head_dim = 64;
	f->p.shape.block_size = 16;
	f->p.shape.dtype = KVC_DTYPE_F16;
	f->p.capacity_bytes = 64u << 10;
	f->p.chunk_bytes = CHUNK;
	f->p.watermark = 0;
	f->p.compact = KVC_SIM_COMPACT_OFF;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int err;

	kvc_sim_result_free(&f->res);
	err = tmpdir_remove(f->dir);
	if (err)
		fprintf(stderr, "test_sim: cannot remove %s: %s\n", f->dir,
			strerror(errno));
	free(f);
	return err;
}

/* Every sample's identities hold, and the run ends holding nothing. */
static void check_series(const struct kvc_sim_result *res)
{
	uint64_t i;

	assert_true(res->nr_samples > 0);
	for (i = 0; i < res->nr_samples; i++) {
		const struct kvc_sim_sample *s = &res->samples[i];

		if (kvc_ladder_check(&s->ladder))
			fail_msg("sample %" PRIu64 ": %s", i, kvc_last_error());
		assert_true(s->ladder.live <= s->ladder.held);
		assert_true(s->ladder.held <= s->ladder.mapped);
		assert_true(s->ladder.mapped <= res->summary.capacity_bytes);
		EXPECT_U64(s->internal, s->ladder.tail);
	}
	EXPECT_U64(res->samples[res->nr_samples - 1].ladder.held, 0);
	EXPECT_U64(res->samples[res->nr_samples - 1].running, 0);
	EXPECT_U64(res->summary.done, res->summary.requests);
}

static void run_ok(struct fixture *f, const struct kvc_sim_request *r,
		   uint32_t n)
{
	int err;

	kvc_sim_result_free(&f->res);
	err = kvc_sim_run(&f->p, r, n, &f->res);
	if (err)
		fail_msg("kvc_sim_run() = %d: %s", err, kvc_last_error());
}

static void check_shares(const struct kvc_sim_summary *s)
{
	double total = s->share_live + s->share_reservation +
		       s->share_internal + s->share_external +
		       s->share_unmapped;

	assert_true(fabs(total - 1) < 1e-9);
}

/*
 * One request, prompt 20, 5 tokens, "full": step k (0..3) after its
 * decode holds T = 21 + k tokens per head in 2 blocks per head (4 in
 * all, one chunk); live = 2 x T x 256, the 5 - (k + 1) tokens still to
 * come sit in the tail block (reservation 2 x (4 - k) x 256) and the
 * rest of the 32 slots per head never fill: tail = 2 x 7 x 256. Step 4
 * decodes the last token (its sample still holds the request: the step
 * computes with it) and finishes; the series closes with the drained
 * state at step 5: nothing held, nothing mapped (watermark 0).
 */
static void test_single_request_ladder(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request r = { .arrival_s = 0, .prompt = 20, .gen = 5 };
	uint64_t k;

	run_ok(f, &r, 1);
	check_series(&f->res);
	EXPECT_U64(f->res.summary.steps, 5);
	EXPECT_U64(f->res.nr_samples, 6);
	EXPECT_U64(f->res.summary.capacity_bytes, 64u << 10);
	for (k = 0; k < 5; k++) {
		const struct kvc_ladder *l = &f->res.samples[k].ladder;

		EXPECT_U64(f->res.samples[k].step, k);
		EXPECT_U64(l->held_blocks, 4);
		EXPECT_U64(l->held, 4 * BLOCK);
		EXPECT_U64(l->mapped, CHUNK);
		EXPECT_U64(l->live, 2 * (21 + k) * KV_BYTES);
		EXPECT_U64(l->logical, l->live);
		EXPECT_U64(l->reservation, 2 * (4 - k) * KV_BYTES);
		EXPECT_U64(l->tail, 2 * 7 * KV_BYTES);
		EXPECT_U64(l->free_mapped, 0);
		EXPECT_U64(l->parked, 0);
		EXPECT_U64(f->res.samples[k].running, 1);
	}
	EXPECT_U64(f->res.samples[4].done, 0);
	EXPECT_U64(f->res.samples[5].step, 5);
	EXPECT_U64(f->res.samples[5].ladder.held, 0);
	EXPECT_U64(f->res.samples[5].ladder.mapped, 0);
	EXPECT_U64(f->res.samples[5].done, 1);
	EXPECT_U64(f->res.summary.tokens_generated, 5);
	EXPECT_U64(f->res.summary.preemptions, 0);
	assert_true(fabs(f->res.summary.mean_latency_s - 4 * 0.05) < 1e-12);
	/* The chunk map at the most-mapped step: one chunk of 4 blocks. */
	assert_non_null(f->res.heat);
	EXPECT_U64(f->res.heat_chunks, 4);
	EXPECT_U64(f->res.blocks_per_chunk, 4);
	EXPECT_U64(f->res.heat_step, 0);
	EXPECT_U64(f->res.heat[0], 4);
	EXPECT_U64(f->res.heat[1], (uint64_t)-1);
	check_shares(&f->res.summary);
}

/*
 * A prompt of exactly one block: the first decode crosses the boundary
 * and takes a second block per head; the reservation is then the 2
 * tokens still to come, the tail the other 13 slots.
 */
static void test_block_boundary(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request r = { .arrival_s = 0, .prompt = 16, .gen = 3 };
	const struct kvc_ladder *l;

	run_ok(f, &r, 1);
	check_series(&f->res);
	l = &f->res.samples[0].ladder;
	EXPECT_U64(l->held_blocks, 4);
	EXPECT_U64(l->live, 2 * 17 * KV_BYTES);
	EXPECT_U64(l->reservation, 2 * 2 * KV_BYTES);
	EXPECT_U64(l->tail, 2 * 13 * KV_BYTES);
	EXPECT_U64(f->res.summary.steps, 3);
}

/*
 * The paged layout: one block holds 16 tokens of both heads (8 KiB), so
 * the request of the first test takes 2 blocks; the region counts as
 * mapped from the start (what is not held is external).
 */
static void test_paged_ladder(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request r = { .arrival_s = 0, .prompt = 20, .gen = 5 };
	const struct kvc_ladder *l;

	f->p.layout = KVC_LAYOUT_PAGED;
	run_ok(f, &r, 1);
	check_series(&f->res);
	l = &f->res.samples[1].ladder;
	EXPECT_U64(l->held_blocks, 2);
	EXPECT_U64(l->held, 2 * 2 * BLOCK);
	EXPECT_U64(l->live, 2 * 22 * KV_BYTES);
	EXPECT_U64(l->reservation, 2 * 3 * KV_BYTES);
	EXPECT_U64(l->tail, 2 * 7 * KV_BYTES);
	EXPECT_U64(l->mapped, 64u << 10);
	EXPECT_U64(l->free_mapped, (64u << 10) - 2 * 2 * BLOCK);
	EXPECT_U64(f->res.blocks_per_chunk, 2);
	assert_true(f->res.summary.share_unmapped == 0);
	check_shares(&f->res.summary);

	/* 3 heads: 12 KiB blocks; the 16 KiB chunk becomes 24 KiB, and the
	 * 64 KiB region 2 such chunks (rounded down). */
	f->p.shape.kv_heads = 3;
	f->p.shape.q_heads = 3;
	run_ok(f, &r, 1);
	check_series(&f->res);
	EXPECT_U64(f->res.blocks_per_chunk, 2);
	EXPECT_U64(f->res.summary.capacity_bytes, 2 * 24576);
	EXPECT_U64(f->res.samples[0].ladder.held, 2 * 3 * BLOCK);

	/* The per-head layout takes multiples of 4 KiB and its block only. */
	f->p.layout = KVC_LAYOUT_PER_HEAD;
	f->p.chunk_bytes = 6 * BLOCK;
	run_ok(f, &r, 1);
	f->p.chunk_bytes = BLOCK + 2048;
	kvc_sim_result_free(&f->res);
	assert_int_equal(kvc_sim_run(&f->p, &r, 1, &f->res), -EINVAL);
}

/* Requests arrive at the first step at or after their arrival time. */
static void test_arrival_steps(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request r[2] = {
		{ .arrival_s = 0.1, .prompt = 8, .gen = 3 },
		{ .arrival_s = 0.12, .prompt = 8, .gen = 3 },
	};

	f->p.step_s = 0.05;
	run_ok(f, r, 2);
	check_series(&f->res);
	/* Steps 0, 1 idle; 2 admits the first, 3 the second; each
	 * decodes 3 tokens, finishing with steps 4 and 5 (which still
	 * compute with them). */
	EXPECT_U64(f->res.samples[1].running, 0);
	EXPECT_U64(f->res.samples[2].running, 1);
	EXPECT_U64(f->res.samples[3].running, 2);
	EXPECT_U64(f->res.samples[4].running, 2);
	EXPECT_U64(f->res.samples[5].running, 1);
	EXPECT_U64(f->res.samples[6].running, 0);
	EXPECT_U64(f->res.summary.steps, 6);
	EXPECT_U64(f->res.summary.peak_running, 2);

	/* max_steps stops the run early, with what finished so far. */
	f->p.max_steps = 5;
	run_ok(f, r, 2);
	EXPECT_U64(f->res.summary.steps, 5);
	EXPECT_U64(f->res.summary.done, 1);
	EXPECT_U64(f->res.nr_samples, 5);
	f->p.max_steps = 2;
	run_ok(f, r, 2);
	EXPECT_U64(f->res.summary.done, 0);
	EXPECT_U64(f->res.heat[0], (uint64_t)-1);
}

/* A mixed stream for the properties below. */
static struct kvc_sim_request *mixed_stream(uint32_t n, uint64_t seed)
{
	struct kvc_sim_request *r = calloc(n, sizeof(*r));
	uint32_t i;

	assert_non_null(r);
	for (i = 0; i < n; i++) {
		r[i].arrival_s = 0.02 * i;
		r[i].prompt = 1 + (uint32_t)(rng_next(&seed) % 300);
		r[i].gen = (uint32_t)(rng_next(&seed) % 120);
	}
	return r;
}

static uint64_t total_gen(const struct kvc_sim_request *r, uint32_t n)
{
	uint64_t g = 0;
	uint32_t i;

	for (i = 0; i < n; i++)
		g += r[i].gen;
	return g;
}

/* Conservation and identities under every policy and both pool layouts. */
static void test_identities_all_policies(void **state)
{
	static const char *const names[] = { "full",	     "kvcompress",
					     "h2o",	     "snapkv",
					     "pyramidkv",    "pyramidinfer",
					     "streamingllm", "window" };
	struct fixture *f = *state;
	struct kvc_sim_request *r = mixed_stream(40, 7);
	uint32_t i, layout;

	f->p.shape.layers = 4;
	f->p.capacity_bytes = 1u << 20;
	for (layout = 0; layout < 2; layout++) {
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			f->p.layout =
				layout ? KVC_LAYOUT_PAGED : KVC_LAYOUT_PER_HEAD;
			kvc_policy_params_init(&f->p.policy);
			f->p.policy.name = names[i];
			f->p.policy.window_tokens = 64;
			if (!strcmp(names[i], "pyramidinfer") ||
			    !strcmp(names[i], "streamingllm") ||
			    !strcmp(names[i], "window") ||
			    !strcmp(names[i], "full"))
				f->p.policy.rate = 0;
			f->p.compact = (enum kvc_sim_compact)(i % 3);
			run_ok(f, r, 40);
			check_series(&f->res);
			check_shares(&f->res.summary);
			EXPECT_U64(f->res.summary.tokens_generated,
				   total_gen(r, 40));
			if (layout)
				EXPECT_U64(f->res.samples[0].ladder.mapped,
					   f->res.summary.capacity_bytes);
		}
	}
	free(r);
}

/* "full" never drops a KV: live is the logical size on every sample. */
static void test_full_never_compresses(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request *r = mixed_stream(20, 3);
	uint64_t i;

	f->p.capacity_bytes = 1u << 20;
	run_ok(f, r, 20);
	check_series(&f->res);
	for (i = 0; i < f->res.nr_samples; i++)
		EXPECT_U64(f->res.samples[i].ladder.live,
			   f->res.samples[i].ladder.logical);
	free(r);
}

/* The model's budgets, straight from sim_evict_keep(). */
static void keep(struct fixture *f, uint32_t tokens, const uint32_t *len,
		 uint32_t *kept, uint32_t req)
{
	struct sim_evict ev;
	float w[64];
	int err;

	err = sim_evict_init(&ev, &f->p);
	if (err)
		fail_msg("sim_evict_init() = %d: %s", err, kvc_last_error());
	sim_evict_weights(&ev, req, w);
	sim_evict_keep(&ev, tokens, len, w, kept);
	sim_evict_exit(&ev);
}

/*
 * kvcompress, 4 layers x 4 heads, T = 1024, protected 32, rate 8: the
 * budget is 16 x (32 + ceil(992 / 8)) = 16 x 156 = 2496 KVs. With skew 1
 * heads keep different counts summing to exactly that; with skew 0 all
 * keep 156. A head that holds less keeps all and the others take more.
 */
static void test_kvcompress_budget(void **state)
{
	struct fixture *f = *state;
	uint32_t len[16], kept[16], h, sum = 0, distinct = 0;

	f->p.shape.layers = 4;
	f->p.shape.kv_heads = 4;
	f->p.shape.q_heads = 4;
	kvc_policy_params_init(&f->p.policy);
	for (h = 0; h < 16; h++)
		len[h] = 1024;
	f->p.head_skew = 1;
	keep(f, 1024, len, kept, 3);
	for (h = 0; h < 16; h++) {
		assert_true(kept[h] >= 32 && kept[h] <= len[h]);
		sum += kept[h];
		distinct += h && kept[h] != kept[0];
	}
	EXPECT_U64(sum, 2496);
	assert_true(distinct > 0);

	f->p.head_skew = 0;
	keep(f, 1024, len, kept, 3);
	for (h = 0; h < 16; h++)
		EXPECT_U64(kept[h], 156);

	/* Head 0 holds 40: it keeps 40, the 116 it cannot take go round. */
	len[0] = 40;
	keep(f, 1024, len, kept, 3);
	EXPECT_U64(kept[0], 40);
	for (sum = 0, h = 0; h < 16; h++)
		sum += kept[h];
	EXPECT_U64(sum, 2496);

	/* h2o: every head the same 156, whatever the skew. */
	f->p.policy.name = "h2o";
	f->p.head_skew = 1;
	len[0] = 1024;
	keep(f, 1024, len, kept, 3);
	for (h = 0; h < 16; h++)
		EXPECT_U64(kept[h], 156);
}

/*
 * End to end: one request of 1024 tokens and 2 to generate, kvcompress
 * rate 8 on 2 heads: the prefill is compressed to 2 x 156 KVs, then the
 * first decode adds one per head: live = 2 x 157 x 256 in 10 blocks per
 * head, while the full cache would hold 1025 tokens.
 */
static void test_kvcompress_replay(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request r = { .arrival_s = 0, .prompt = 1024, .gen = 2 };

	f->p.capacity_bytes = 1u << 20;
	kvc_policy_params_init(&f->p.policy);
	f->p.head_skew = 0;
	run_ok(f, &r, 1);
	check_series(&f->res);
	EXPECT_U64(f->res.samples[0].ladder.live, 2 * 157 * KV_BYTES);
	EXPECT_U64(f->res.samples[0].ladder.logical, 2 * 1025 * KV_BYTES);
	EXPECT_U64(f->res.samples[0].ladder.held_blocks, 2 * 10);
}

/* pyramidkv: per-layer budgets by policies.c's formula. */
static void test_pyramid_budgets(void **state)
{
	struct fixture *f = *state;
	uint32_t len[4] = { 1000, 1000, 1000, 1000 }, kept[4];

	/* 4 layers x 1 head, T = 1000, P = 32, C = 32 + 121 = 153, b = 121,
	 * k_min = 6.05, k_max = 235.95: 235, 159, 82, 6 (floors). */
	f->p.shape.layers = 4;
	f->p.shape.kv_heads = 1;
	f->p.shape.q_heads = 1;
	kvc_policy_params_init(&f->p.policy);
	f->p.policy.name = "pyramidkv";
	keep(f, 1000, len, kept, 0);
	EXPECT_U64(kept[0], 32 + 235);
	EXPECT_U64(kept[1], 32 + 159);
	EXPECT_U64(kept[2], 32 + 82);
	EXPECT_U64(kept[3], 32 + 6);

	/* streamingllm: 4 sinks + max(window 100, protected 32). */
	f->p.policy.name = "streamingllm";
	f->p.policy.rate = 0;
	f->p.policy.window_tokens = 100;
	keep(f, 1000, len, kept, 0);
	EXPECT_U64(kept[0], 104);
	EXPECT_U64(kept[3], 104);

	/* window on layers 1-2 only. */
	f->p.policy.name = "window";
	f->p.policy.window_layers = "1-2";
	keep(f, 1000, len, kept, 0);
	EXPECT_U64(kept[0], 1000);
	EXPECT_U64(kept[1], 100);
	EXPECT_U64(kept[2], 100);
	EXPECT_U64(kept[3], 1000);
}

/*
 * 4 requests of 16 + 64 tokens in a region of 16 blocks (1 layer x 1
 * head): each ends with 5 blocks, 20 > 16, so decodes preempt the latest;
 * all finish, with every token generated.
 */
static void test_preemption(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request r[4];
	char path[128];
	struct kvc_recorder *rec;
	struct kvc_sim_request *back;
	struct kvc_rec_reader *rd;
	struct kvc_rec_event ev;
	uint32_t i, n, finished = 0;
	int err;

	for (i = 0; i < 4; i++) {
		r[i].arrival_s = 0;
		r[i].prompt = 16;
		r[i].gen = 64;
	}
	f->p.shape.kv_heads = 1;
	f->p.shape.q_heads = 1;
	f->p.compact = KVC_SIM_COMPACT_FULL;
	snprintf(path, sizeof(path), "%s/preempt.kvct", f->dir);
	assert_int_equal(kvc_recorder_open(path, NULL, &rec), 0);
	f->p.rec = rec;
	run_ok(f, r, 4);
	assert_int_equal(kvc_recorder_close(rec), 0);
	check_series(&f->res);
	assert_true(f->res.summary.preemptions > 0);
	assert_true(f->res.summary.alloc_failures > 0);
	EXPECT_U64(f->res.summary.done, 4);
	EXPECT_U64(f->res.summary.tokens_generated, 4 * 64);
	for (i = 0; i < f->res.nr_samples; i++)
		assert_true(f->res.samples[i].ladder.held_blocks <= 16);

	/* The trace: every request arrives once and ends at 80 tokens. */
	err = kvc_sim_requests_rec(path, 0, &back, &n);
	if (err)
		fail_msg("kvc_sim_requests_rec() = %d: %s", err,
			 kvc_last_error());
	EXPECT_U64(n, 4);
	for (i = 0; i < n; i++) {
		EXPECT_U64(back[i].prompt, 16);
		EXPECT_U64(back[i].gen, 64);
	}
	free(back);
	assert_int_equal(kvc_rec_reader_open(path, &rd), 0);
	while ((err = kvc_rec_next(rd, &ev)) == 1) {
		if (ev.kind == KVC_REC_FINISH) {
			EXPECT_U64(ev.p[1], 80);
			finished++;
		}
	}
	assert_int_equal(err, 0);
	kvc_rec_reader_close(rd);
	EXPECT_U64(finished, 4);

	/* The allocator events replay verbatim, moves and owners included. */
	{
		struct kvc_replay_result rr;

		memset(&rr, 0, sizeof(rr));
		err = kvc_replay_exact(path, &rr);
		if (err)
			fail_msg("kvc_replay_exact() = %d: %s", err,
				 kvc_last_error());
		assert_true(rr.final_snapshot);
		/* One per step, and the drained state. */
		EXPECT_U64(rr.samples, f->res.summary.steps + 1);
		EXPECT_U64(rr.moves, f->res.summary.blocks_moved);
	}
}

/* The OPT-13B geometry of vLLM's Table 1: 800 KiB per token. */
static void opt13b(struct kvc_sim_params *p)
{
	p->shape.layers = 40;
	p->shape.kv_heads = 40;
	p->shape.q_heads = 40;
	p->shape.head_dim = 128;
	p->shape.block_size = 16;
	p->shape.dtype = KVC_DTYPE_F16;
	p->capacity_bytes = 12ull << 30;
	p->max_len = 2048;
}

/*
 * Orca (Max) saturated: 12 GiB / 800 KiB = 15728 slots, 7 reservations
 * of 2048 fit, so (15728 - 7 x 2048) / 15728 = 8.85% is never held.
 */
static void test_orca_max(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request r[42];
	uint32_t i;

	for (i = 0; i < 42; i++) {
		r[i].arrival_s = 0;
		r[i].prompt = 1000;
		r[i].gen = 1500; /* cut to 1048 */
	}
	opt13b(&f->p);
	f->p.layout = KVC_LAYOUT_CONTIG_MAX;
	run_ok(f, r, 42);
	check_series(&f->res);
	check_shares(&f->res.summary);
	EXPECT_U64(f->res.summary.capacity_bytes, 15728ull * 800 * 1024);
	EXPECT_U64(f->res.summary.peak_running, 7);
	assert_true(fabs(f->res.summary.share_external -
			 (15728.0 - 7 * 2048) / 15728) < 0.005);
	assert_true(f->res.summary.share_internal == 0);
	EXPECT_U64(f->res.summary.tokens_generated, 42 * 1048);

	/* contig-max needs max_len. */
	f->p.max_len = 0;
	kvc_sim_result_free(&f->res);
	assert_int_equal(kvc_sim_run(&f->p, r, 42, &f->res), -EINVAL);
}

/* Oracle reserves exactly the final length: nothing internal, ever. */
static void test_oracle_pow2(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request *r = mixed_stream(30, 11);
	uint64_t i;

	opt13b(&f->p);
	f->p.layout = KVC_LAYOUT_CONTIG_ORACLE;
	run_ok(f, r, 30);
	check_series(&f->res);
	check_shares(&f->res.summary);
	for (i = 0; i < f->res.nr_samples; i++)
		EXPECT_U64(f->res.samples[i].internal, 0);
	assert_true(f->res.summary.share_internal == 0);
	assert_null(f->res.heat);

	/* Pow2 over-reserves: internal waste appears. */
	f->p.layout = KVC_LAYOUT_CONTIG_POW2;
	run_ok(f, r, 30);
	check_series(&f->res);
	check_shares(&f->res.summary);
	assert_true(f->res.summary.share_internal > 0);
	free(r);
}

/* Placement moves blocks, not bytes: the held series is identical. */
static void test_placement(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request *r = mixed_stream(60, 5);
	struct kvc_sim_result fullest;
	uint64_t i;

	f->p.shape.layers = 4;
	f->p.capacity_bytes = 2u << 20;
	kvc_policy_params_init(&f->p.policy);
	f->p.placement = KVC_PLACE_FULLEST;
	run_ok(f, r, 60);
	fullest = f->res;
	memset(&f->res, 0, sizeof(f->res));
	f->p.placement = KVC_PLACE_RANDOM;
	run_ok(f, r, 60);
	check_series(&f->res);
	EXPECT_U64(f->res.nr_samples, fullest.nr_samples);
	for (i = 0; i < fullest.nr_samples; i++)
		EXPECT_U64(f->res.samples[i].ladder.held,
			   fullest.samples[i].ladder.held);
	assert_true(f->res.summary.peaks.mean_mapped >=
		    fullest.summary.peaks.mean_mapped);
	kvc_sim_result_free(&fullest);
	free(r);
}

/*
 * Full compaction with no empty chunk kept: whenever blocks are held,
 * the mapped chunks are the packed floor (pack ratio 1), though the
 * staggered sequences leave holes that, without compaction, keep chunks
 * mapped.
 */
static void test_compact_full(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request *r = mixed_stream(60, 9);
	double off_pack;
	uint64_t i;

	f->p.shape.layers = 4;
	f->p.capacity_bytes = 2u << 20;
	kvc_policy_params_init(&f->p.policy);
	f->p.compact = KVC_SIM_COMPACT_OFF;
	run_ok(f, r, 60);
	off_pack = f->res.summary.mean_pack_ratio;
	f->p.compact = KVC_SIM_COMPACT_FULL;
	run_ok(f, r, 60);
	check_series(&f->res);
	for (i = 0; i < f->res.nr_samples; i++) {
		const struct kvc_ladder *l = &f->res.samples[i].ladder;

		if (l->held_blocks)
			assert_true(l->pack_ratio == 1);
	}
	assert_true(f->res.summary.blocks_moved > 0);
	assert_true(off_pack > f->res.summary.mean_pack_ratio);
	free(r);
}

/* The chunk map at the busiest step agrees with that step's sample. */
static void test_heat(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request *r = mixed_stream(30, 13);
	uint64_t live = 0, mapped = 0;
	uint32_t i;

	f->p.capacity_bytes = 1u << 20;
	run_ok(f, r, 30);
	for (i = 0; i < f->res.heat_chunks; i++) {
		if (f->res.heat[i] >= 0) {
			live += (uint64_t)f->res.heat[i];
			mapped++;
		}
	}
	EXPECT_U64(live, f->res.samples[f->res.heat_step].ladder.held_blocks);
	EXPECT_U64(mapped,
		   f->res.samples[f->res.heat_step].ladder.mapped_chunks);
	EXPECT_U64(mapped, f->res.summary.peaks.mapped_peak / CHUNK);
	free(r);
}

struct thread_run {
	const struct kvc_sim_params *p;
	const struct kvc_sim_request *r;
	struct kvc_sim_result res;
	int err;
};

static void *thread_main(void *arg)
{
	struct thread_run *t = arg;

	t->err = kvc_sim_run(t->p, t->r, 40, &t->res);
	return NULL;
}

/* Replays in threads at once agree with each other. */
static void test_threads(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request *r = mixed_stream(40, 17);
	struct thread_run t[3];
	pthread_t th[3];
	uint32_t i;

	f->p.capacity_bytes = 1u << 20;
	kvc_policy_params_init(&f->p.policy);
	for (i = 0; i < 3; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].p = &f->p;
		t[i].r = r;
		assert_int_equal(
			pthread_create(&th[i], NULL, thread_main, &t[i]), 0);
	}
	for (i = 0; i < 3; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(t[i].err, 0);
		EXPECT_U64(t[i].res.summary.steps, t[0].res.summary.steps);
		assert_true(t[i].res.summary.peaks.mean_live ==
			    t[0].res.summary.peaks.mean_live);
	}
	for (i = 0; i < 3; i++)
		kvc_sim_result_free(&t[i].res);
	free(r);
}

/*
 * A logical replay's clock is the simulated one: the peaks' times are
 * their steps x step_s, the same in every run, and so are the samples'.
 */
static void test_simulated_clock(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request *r = mixed_stream(20, 5);
	const struct kvc_ladder_peaks *pk;
	uint64_t i;

	f->p.capacity_bytes = 1u << 20;
	run_ok(f, r, 20);
	pk = &f->res.summary.peaks;
	EXPECT_U64(pk->live_peak_ns,
		   (uint64_t)llround((double)pk->live_peak_step * 0.05e9));
	EXPECT_U64(pk->mapped_peak_ns,
		   (uint64_t)llround((double)pk->mapped_peak_step * 0.05e9));
	for (i = 0; i < f->res.nr_samples; i++)
		EXPECT_U64(f->res.samples[i].ladder.t_ns,
			   (uint64_t)llround(f->res.samples[i].t_s * 1e9));
	free(r);
}

/*
 * With sparse samples the series still ends with the last step, so a
 * plot shows the region drain; the summary is the same as sampling
 * every step. Contiguous layouts too.
 */
static void test_sample_every_keeps_last(void **state)
{
	static const enum kvc_sim_layout layouts[] = {
		KVC_LAYOUT_PER_HEAD, KVC_LAYOUT_PAGED, KVC_LAYOUT_CONTIG_ORACLE
	};
	struct fixture *f = *state;
	struct kvc_sim_request *r = mixed_stream(20, 7);
	double mean_live;
	uint32_t i;

	f->p.capacity_bytes = 1u << 20;
	for (i = 0; i < 3; i++) {
		f->p.layout = layouts[i];
		f->p.sample_every = 1;
		run_ok(f, r, 20);
		mean_live = f->res.summary.peaks.mean_live;
		f->p.sample_every = 1000;
		run_ok(f, r, 20);
		EXPECT_U64(f->res.samples[0].step, 0);
		/* The drained state closes the series. */
		EXPECT_U64(f->res.samples[f->res.nr_samples - 1].step,
			   f->res.summary.steps);
		check_series(&f->res);
		assert_true(f->res.summary.peaks.mean_live == mean_live);
	}
	free(r);
}

/*
 * A request whose length does not fit 32 bits is refused with a message,
 * not wrapped into a block table too small for it.
 */
static void test_length_overflow(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request r = { .arrival_s = 0,
				     .prompt = 16,
				     .gen = UINT32_MAX - 8 };
	int err;

	f->p.capacity_bytes = 1ull << 40;
	f->p.chunk_bytes = 2u << 20;
	err = kvc_sim_run(&f->p, &r, 1, &f->res);
	assert_int_equal(err, -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "request 0"));
	f->p.layout = KVC_LAYOUT_PAGED;
	err = kvc_sim_run(&f->p, &r, 1, &f->res);
	assert_int_equal(err, -EINVAL);
}

/*
 * Eviction lets two sequences grow past what the region could hold at
 * full length; when one is preempted, recomputing it (a prefill of all
 * its tokens before eviction) cannot fit: the error names the request,
 * the preemption and the recompute, not a prompt it never had.
 */
static void test_readmit_too_big(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request r[2] = {
		{ .arrival_s = 0, .prompt = 16, .gen = 2000 },
		{ .arrival_s = 0, .prompt = 16, .gen = 2000 },
	};
	const char *msg;
	int err;

	f->p.policy.name = "h2o";
	f->p.policy.rate = 8;
	f->p.policy.protected_window = 0;
	err = kvc_sim_run(&f->p, r, 2, &f->res);
	assert_int_equal(err, -EINVAL);
	msg = kvc_last_error();
	if (!strstr(msg, "request 1, preempted after generating") ||
	    !strstr(msg, "recomputing"))
		fail_msg("unexpected message: %s", msg);
}

/*
 * Recording works for every pool layout and compaction mode, with
 * eviction: each trace replays exactly, moves and owners included.
 */
static void test_record_replays_exactly(void **state)
{
	static const enum kvc_sim_layout layouts[] = { KVC_LAYOUT_PER_HEAD,
						       KVC_LAYOUT_PAGED };
	static const enum kvc_sim_compact modes[] = {
		KVC_SIM_COMPACT_OFF, KVC_SIM_COMPACT_FULL,
		KVC_SIM_COMPACT_PROACTIVE
	};
	struct fixture *f = *state;
	struct kvc_sim_request *r = mixed_stream(40, 21);
	struct kvc_replay_result rr;
	struct kvc_recorder *rec;
	char path[128];
	uint32_t l, m;
	int err;

	f->p.shape.layers = 3;
	f->p.capacity_bytes = 1u << 20;
	f->p.policy.name = "kvcompress";
	f->p.policy.rate = 4;
	for (l = 0; l < 2; l++) {
		for (m = 0; m < 3; m++) {
			snprintf(path, sizeof(path), "%s/rec-%u-%u.kvct",
				 f->dir, l, m);
			assert_int_equal(kvc_recorder_open(path, NULL, &rec),
					 0);
			f->p.layout = layouts[l];
			f->p.compact = modes[m];
			f->p.rec = rec;
			run_ok(f, r, 40);
			f->p.rec = NULL;
			assert_int_equal(kvc_recorder_close(rec), 0);
			check_series(&f->res);
			check_shares(&f->res.summary);
			memset(&rr, 0, sizeof(rr));
			err = kvc_replay_exact(path, &rr);
			if (err)
				fail_msg("layout %u compact %u: %d: %s", l, m,
					 err, kvc_last_error());
			assert_true(rr.final_snapshot);
			EXPECT_U64(rr.samples, f->res.summary.steps + 1);
			EXPECT_U64(rr.moves, f->res.summary.blocks_moved);
		}
	}
	free(r);
}

/* Bad parameters get -EINVAL with a message; nothing is returned. */
static void test_bad_params(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request r = { .arrival_s = 0, .prompt = 20, .gen = 5 };
	struct kvc_sim_request big = { .arrival_s = 10, .prompt = 300 };
	struct kvc_sim_request two[2];

	f->p.policy.name = "lru";
	assert_int_equal(kvc_sim_run(&f->p, &r, 1, &f->res), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "kvcompress"));
	assert_null(f->res.samples);
	f->p.policy.name = "full";

	f->p.capacity_bytes = CHUNK - 1;
	assert_int_equal(kvc_sim_run(&f->p, &r, 1, &f->res), -EINVAL);
	f->p.capacity_bytes = 64u << 10;

	/* 300 tokens need 19 blocks per head; the region holds 16: refused
	 * before anything is served, though it arrives last. */
	two[0] = r;
	two[1] = big;
	assert_int_equal(kvc_sim_run(&f->p, two, 2, &f->res), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "request 1"));
	assert_null(f->res.samples);

	f->p.step_s = 0;
	assert_int_equal(kvc_sim_run(&f->p, &r, 1, &f->res), -EINVAL);
	f->p.step_s = 0.05;
	assert_int_equal(kvc_sim_run(&f->p, &r, 0, &f->res), -EINVAL);
	f->p.chunk_bytes = 6000;
	assert_int_equal(kvc_sim_run(&f->p, &r, 1, &f->res), -EINVAL);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_true(fputs(text, fp) >= 0);
	assert_int_equal(fclose(fp), 0);
}

static void test_requests_csv(void **state)
{
	struct fixture *f = *state;
	struct kvc_sim_request *r;
	char path[128];
	uint32_t n;
	int err;

	/* Without arrival_s: one a second. */
	snprintf(path, sizeof(path), "%s/plain.csv", f->dir);
	write_file(path, "TIMESTAMP,ContextTokens,GeneratedTokens\n"
			 "a,10,3\nb,20,0\nc,5,7\n");
	assert_int_equal(kvc_sim_requests_csv(path, 0, &r, &n), 0);
	EXPECT_U64(n, 3);
	assert_true(r[2].arrival_s == 2.0);
	EXPECT_U64(r[1].prompt, 20);
	EXPECT_U64(r[2].gen, 7);
	free(r);

	/* With it, out of order: sorted, ties in file order. */
	snprintf(path, sizeof(path), "%s/timed.csv", f->dir);
	write_file(path, "ContextTokens,GeneratedTokens,arrival_s\n"
			 "10,1,0.5\n11,2,0.25\n12,3,0.5\n13,4,0\n");
	assert_int_equal(kvc_sim_requests_csv(path, 0, &r, &n), 0);
	EXPECT_U64(n, 4);
	EXPECT_U64(r[0].prompt, 13);
	EXPECT_U64(r[1].prompt, 11);
	EXPECT_U64(r[2].prompt, 10);
	EXPECT_U64(r[3].prompt, 12);
	assert_true(r[1].arrival_s == 0.25);
	free(r);

	/* max */
	assert_int_equal(kvc_sim_requests_csv(path, 2, &r, &n), 0);
	EXPECT_U64(n, 2);
	free(r);

	/* A bad arrival names the file and line. */
	snprintf(path, sizeof(path), "%s/bad.csv", f->dir);
	write_file(path, "ContextTokens,GeneratedTokens,arrival_s\n"
			 "10,1,0.5\n11,2,-1\n");
	r = NULL;
	err = kvc_sim_requests_csv(path, 0, &r, &n);
	assert_int_equal(err, -EINVAL);
	assert_null(r);
	assert_non_null(strstr(kvc_last_error(), "bad.csv:3"));
	write_file(path, "ContextTokens,GeneratedTokens,arrival_s\n"
			 "10,1,nan\n");
	assert_int_equal(kvc_sim_requests_csv(path, 0, &r, &n), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "bad.csv:2"));
	write_file(path, "ContextTokens,GeneratedTokens,arrival_s\n"
			 "10,1,\n");
	assert_int_equal(kvc_sim_requests_csv(path, 0, &r, &n), -EINVAL);

	/* kvc_trace_read() still ignores the column. */
	{
		struct kvc_request *q;

		snprintf(path, sizeof(path), "%s/timed.csv", f->dir);
		assert_int_equal(kvc_trace_read(path, 0, &q, &n), 0);
		EXPECT_U64(n, 4);
		EXPECT_U64(q[0].prompt, 10);
		free(q);
	}
}

static void test_layout_names(void **state)
{
	enum kvc_sim_layout l;
	uint32_t i;

	(void)state;
	for (i = 0; i <= KVC_LAYOUT_CONTIG_ORACLE; i++) {
		assert_int_equal(
			kvc_sim_layout_parse(
				kvc_sim_layout_name((enum kvc_sim_layout)i),
				&l),
			0);
		EXPECT_U64(l, i);
	}
	assert_string_equal(kvc_sim_layout_name(KVC_LAYOUT_PAGED), "paged");
	assert_string_equal(kvc_sim_layout_name((enum kvc_sim_layout)9), "?");
	assert_int_equal(kvc_sim_layout_parse("buddy", &l), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "contig-oracle"));
	assert_int_equal(kvc_sim_layout_parse(NULL, &l), -EINVAL);
	assert_string_equal(kvc_sim_compact_name(KVC_SIM_COMPACT_OFF), "off");
	assert_string_equal(kvc_sim_compact_name(KVC_SIM_COMPACT_FULL), "full");
	assert_string_equal(kvc_sim_compact_name(KVC_SIM_COMPACT_PROACTIVE),
			    "proactive");
	assert_string_equal(kvc_sim_compact_name((enum kvc_sim_compact)3), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_single_request_ladder,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_boundary, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_paged_ladder, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_arrival_steps, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_identities_all_policies,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_never_compresses,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_kvcompress_budget, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_kvcompress_replay, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pyramid_budgets, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_preemption, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_orca_max, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oracle_pow2, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_placement, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_compact_full, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_heat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_params, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_simulated_clock, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sample_every_keeps_last,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_length_overflow, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_readmit_too_big, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_record_replays_exactly,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_requests_csv, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_layout_names, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
