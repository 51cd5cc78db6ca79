// SPDX-License-Identifier: MIT
/*
 * bench_compact: what compaction gives back and what it costs, on a pool
 * fragmented the way KV-Compress fragments one.
 *
 * The workload. Each sequence has one block table per (layer, KV head), as
 * in KV-Compress (arXiv 2410.00161); by default SmolLM2-135M's geometry:
 * 30 layers x 3 KV heads = 90 tables, blocks of 16 tokens x 64 dims x K,V x
 * fp16 = 4 KiB, 512 to a 2 MiB chunk of the host backend. Request lengths
 * (prompt and output tokens, at most MAX_TOKENS in all) are drawn with a
 * fixed seed from 256 requests of the Azure LLM inference trace built in
 * below, or from the rows of a trace given with --trace. A sequence
 * arrives every ARRIVAL_STEPS decode steps; its prefill takes its prompt's
 * blocks for all its tables in one call, then each decode step adds a token
 * to every running sequence and takes, in one call, a block for each table
 * of those that crossed a block boundary, layer by layer: the blocks of
 * heads and sequences interleave across chunks. Every block is written with
 * a pattern derived from its owner tag (sequence, layer, head, index in
 * the table), which is also set as its owner. Then every sequence is
 * compressed as KV-Compress would compress it: it gets a rate, uniform in
 * --rate, and each of its heads a different share of it (the head keeps
 * about n * w / rate of its n blocks, w uniform in 0.25..1.75, at least
 * one); the tail of each table is freed in whole blocks (what is left after
 * the paper's in-head MoveCache), in one call per sequence. Nearly every
 * chunk is left partly used: the fragmentation compaction is for.
 *
 * Full compaction: one kvc_pool_compact() without a budget. It prints the
 * bytes mapped before and after against the live bytes (goal: mapped/live
 * at most 1.02 plus one chunk, which the pool's default watermark of one
 * empty chunk may take), moves against the plan's lower bound (goal 1.00),
 * planning and block bookkeeping against copy time (goal for planning: at
 * most 5%), and the copy time against a plain memcpy() of as many blocks,
 * one block per call, between two memfd buffers like the host backend's,
 * touched beforehand and cold in cache as the pool's blocks are, timed in
 * the same run: the floor a host copy can reach. Unmapping the vacated
 * chunks (unmap_ns) is printed apart, per chunk released, with whatever
 * the call took beyond the four parts.
 * Incremental compaction: the same workload on a fresh pool, compacted with
 * a budget per call (--budget, default one chunk) until a call finds
 * nothing left: calls needed, the most bytes one call copied against the
 * budget, and the longest call (the pause between two decode steps).
 *
 * A host-side copy of the block tables is patched through the move hook.
 * After each compaction, untimed, every surviving block is found through it
 * and its liveness, owner tag and contents checked, then kvc_pool_check()
 * runs. Each mode runs --repeats times (default 5), each on a fresh pool
 * built the same way; times are medians (CLOCK_MONOTONIC), ratios of times
 * are ratios of medians; the other figures are the same in every run.
 *
 * Goals are informational: the exit status is 1 only when a call fails or a
 * block is lost, and 2 for bad flags.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <kvc/kvc.h>

#include "bench.h"

#define SEED 0x6b7663u
#define REPEATS 5
#define MAX_REPEATS 101
/* SmolLM2-135M's context window: longer requests are cut to it. */
#define MAX_TOKENS 8192u
/*
 * The trace brings about 5.4 requests a second; at some 30 ms a decode
 * step, one arrives every 6 steps.
 */
#define ARRIVAL_STEPS 6u
/* Owner tag: sequence 16 bits, layer 12, head 12, index in the table 24. */
#define MAX_SEQS 0xffffu
#define MAX_LAYERS 0xfffu
#define MAX_HEADS 0xfffu
/* Bytes of K and V, fp16, per token and dimension. */
#define KV_BYTES 4u
#define MAX_BLOCKS_PER_CHUNK 65536u

struct request {
	uint32_t prompt;
	uint32_t output;
};

/*
 * 256 requests (prompt tokens, output tokens) drawn from the Azure LLM
 * inference trace, conversation service, 2023-11-16 (19,366 requests;
 * Azure/AzurePublicDataset data/AzureLLMInferenceTrace_conv.csv, CC-BY 4.0;
 * Patel et al., "Splitwise", ISCA 2024), in arrival order: data rows
 * sorted(random.sample(range(19366), 256)) after Python's random.seed(2023).
 * Prompt mean 1137, median 1014 (whole trace: 1155, 1020); output mean 215,
 * median 136 (211, 129); longest request 4216 tokens.
 */
static const struct request azure_conv_sample[] = {
	{ 91, 16 },    { 4088, 37 },  { 851, 397 },  { 1049, 397 },
	{ 200, 217 },  { 1180, 414 }, { 404, 108 },  { 2786, 99 },
	{ 956, 75 },   { 1247, 398 }, { 398, 99 },   { 1264, 440 },
	{ 385, 88 },   { 963, 393 },  { 181, 257 },  { 1144, 395 },
	{ 1171, 402 }, { 1024, 429 }, { 1036, 650 }, { 4083, 124 },
	{ 1060, 396 }, { 1036, 375 }, { 1080, 395 }, { 1786, 50 },
	{ 1044, 527 }, { 238, 14 },   { 1131, 432 }, { 1316, 150 },
	{ 1148, 398 }, { 1051, 427 }, { 1231, 396 }, { 1821, 143 },
	{ 1027, 392 }, { 435, 117 },  { 1084, 414 }, { 719, 113 },
	{ 1110, 427 }, { 387, 67 },   { 4185, 31 },  { 1200, 518 },
	{ 1077, 468 }, { 1129, 396 }, { 1078, 459 }, { 404, 102 },
	{ 1112, 410 }, { 1144, 470 }, { 2643, 116 }, { 376, 117 },
	{ 1053, 429 }, { 1006, 411 }, { 181, 128 },  { 1508, 84 },
	{ 16, 177 },   { 194, 217 },  { 203, 151 },  { 397, 114 },
	{ 1111, 375 }, { 402, 110 },  { 1044, 408 }, { 997, 429 },
	{ 1063, 407 }, { 181, 131 },  { 1317, 231 }, { 1139, 412 },
	{ 999, 417 },  { 1042, 414 }, { 1284, 48 },  { 1024, 385 },
	{ 1146, 402 }, { 387, 105 },  { 4089, 89 },  { 1223, 395 },
	{ 987, 407 },  { 1021, 421 }, { 1010, 410 }, { 1103, 427 },
	{ 4076, 35 },  { 1041, 426 }, { 1574, 56 },  { 206, 167 },
	{ 2748, 83 },  { 1166, 402 }, { 375, 59 },   { 311, 18 },
	{ 4084, 47 },  { 1320, 157 }, { 206, 179 },  { 399, 130 },
	{ 1076, 395 }, { 400, 82 },   { 4082, 71 },  { 46, 233 },
	{ 383, 88 },   { 1096, 513 }, { 1349, 206 }, { 1866, 101 },
	{ 4069, 41 },  { 379, 63 },   { 448, 95 },   { 1064, 96 },
	{ 1094, 411 }, { 398, 134 },  { 1110, 405 }, { 4152, 64 },
	{ 369, 88 },   { 400, 125 },  { 392, 110 },  { 410, 97 },
	{ 1095, 398 }, { 4072, 117 }, { 397, 92 },   { 415, 88 },
	{ 374, 99 },   { 1500, 119 }, { 372, 68 },   { 882, 402 },
	{ 2022, 68 },  { 4089, 39 },  { 396, 116 },  { 877, 395 },
	{ 964, 49 },   { 4078, 56 },  { 4083, 72 },  { 375, 76 },
	{ 385, 80 },   { 54, 190 },   { 4078, 36 },  { 401, 93 },
	{ 395, 112 },  { 4075, 56 },  { 4088, 42 },  { 1027, 430 },
	{ 422, 180 },  { 387, 82 },   { 422, 96 },   { 398, 88 },
	{ 4098, 41 },  { 3807, 56 },  { 402, 182 },  { 4098, 47 },
	{ 4151, 45 },  { 1358, 69 },  { 4085, 103 }, { 381, 93 },
	{ 403, 100 },  { 996, 451 },  { 380, 88 },   { 4084, 29 },
	{ 392, 86 },   { 404, 121 },  { 455, 87 },   { 387, 80 },
	{ 181, 226 },  { 1106, 375 }, { 395, 82 },   { 4096, 44 },
	{ 399, 118 },  { 390, 147 },  { 2101, 47 },  { 120, 12 },
	{ 1316, 125 }, { 392, 154 },  { 956, 513 },  { 1316, 121 },
	{ 911, 122 },  { 181, 338 },  { 432, 99 },   { 218, 101 },
	{ 181, 131 },  { 187, 166 },  { 400, 106 },  { 193, 130 },
	{ 24, 150 },   { 1130, 516 }, { 99, 105 },   { 27, 138 },
	{ 2015, 75 },  { 407, 99 },   { 186, 64 },   { 1029, 391 },
	{ 237, 14 },   { 211, 55 },   { 236, 68 },   { 1137, 428 },
	{ 1088, 568 }, { 209, 162 },  { 798, 136 },  { 1205, 89 },
	{ 1085, 396 }, { 213, 110 },  { 119, 12 },   { 428, 128 },
	{ 1091, 398 }, { 1240, 414 }, { 181, 146 },  { 399, 81 },
	{ 2737, 93 },  { 2424, 203 }, { 1073, 420 }, { 394, 92 },
	{ 703, 85 },   { 1077, 393 }, { 181, 164 },  { 1137, 396 },
	{ 1013, 399 }, { 977, 429 },  { 1416, 407 }, { 203, 162 },
	{ 1057, 401 }, { 1241, 155 }, { 203, 217 },  { 993, 411 },
	{ 805, 61 },   { 949, 124 },  { 1128, 397 }, { 977, 408 },
	{ 200, 152 },  { 703, 113 },  { 952, 91 },   { 2630, 86 },
	{ 1312, 136 }, { 2584, 142 }, { 1045, 384 }, { 848, 62 },
	{ 1112, 408 }, { 2213, 37 },  { 1119, 534 }, { 399, 93 },
	{ 3926, 68 },  { 1062, 422 }, { 1066, 396 }, { 324, 18 },
	{ 1940, 110 }, { 1068, 429 }, { 439, 83 },   { 394, 113 },
	{ 315, 18 },   { 1096, 434 }, { 1315, 137 }, { 880, 100 },
	{ 1082, 414 }, { 206, 162 },  { 1147, 411 }, { 1149, 398 },
	{ 1138, 396 }, { 1014, 626 }, { 1073, 413 }, { 1105, 396 },
	{ 397, 184 },  { 215, 223 },  { 194, 161 },  { 2712, 78 },
	{ 44, 52 },    { 459, 341 },  { 194, 217 },  { 203, 162 },
};

struct bench {
	/* Geometry. */
	uint32_t layers;
	uint32_t heads;
	uint32_t block_tokens;
	uint32_t head_dim;
	uint64_t block_bytes;
	uint64_t chunk_bytes;
	/* The workload, fixed before the first run. */
	uint32_t nr_seqs;
	struct request *seqs;
	double *rate; /* per sequence */
	double rate_lo, rate_hi;
	uint64_t nr_tables; /* nr_seqs * layers * heads */
	uint64_t *first; /* per table: its first slot in ids[] */
	uint32_t *blocks; /* per table: blocks before compression */
	uint32_t *keep; /* per table: blocks after */
	uint64_t blocks_total;
	uint64_t blocks_kept;
	uint64_t alloc_calls;
	/* The block tables of the pool being measured. */
	uint32_t *ids;
	uint32_t *len; /* per table */
	uint32_t *tokens; /* per sequence */
	uint32_t *growing; /* sequences that need a block this step */
	uint32_t *scratch;
	/* What the move hook saw. */
	uint64_t moves_seen;
	uint64_t moves_wrong;
	struct kvc_backend *be;
	uint32_t empty_kept; /* the pool's watermark */
	uint64_t budget;
	uint32_t repeats;
};

/* One full compaction. */
struct full_run {
	struct kvc_pool_stats before;
	struct kvc_pool_stats after;
	struct kvc_compact_result res;
	double wall_ns;
	double memcpy_ns;
};

/* One incremental compaction, to the end. */
struct incr_run {
	struct kvc_pool_stats after;
	uint32_t calls;
	bool converged;
	bool stuck; /* chunks left to free, none that fits the budget */
	uint64_t lower_bound;
	uint64_t blocks_moved;
	uint64_t bytes_copied;
	uint64_t most_bytes;
	uint64_t chunks_vacated;
	uint32_t most_chunks;
	uint64_t chunks_left; /* reclaimable when it stopped */
	double wall_ns;
	double longest_ns;
	double median_ns;
};

static uint64_t rng_state;

static uint64_t rng_next(void)
{
	return bench_rng(&rng_state);
}

/* Uniform in [lo, hi]. */
static double rng_uniform(double lo, double hi)
{
	return lo + (hi - lo) * (double)(rng_next() >> 11) * 0x1p-53;
}

static void fail(const char *what, const char *why)
{
	fprintf(stderr, "bench_compact: %s failed: %s\n", what, why);
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

static uint64_t owner_tag(uint32_t seq, uint32_t layer, uint32_t head,
			  uint32_t index)
{
	return (uint64_t)seq << 48 | (uint64_t)layer << 36 |
	       (uint64_t)head << 24 | index;
}

static uint64_t table_of(const struct bench *b, uint32_t seq, uint32_t layer,
			 uint32_t head)
{
	return ((uint64_t)seq * b->layers + layer) * b->heads + head;
}

static uint32_t *table_slot(struct bench *b, uint32_t seq, uint32_t layer,
			    uint32_t head, uint32_t index)
{
	return &b->ids[b->first[table_of(b, seq, layer, head)] + index];
}

/* The contents of a block: words that only its owner tag gives. */
static void fill_block(uint64_t *words, uint64_t nr_words, uint64_t tag)
{
	uint64_t x = (tag + 1) * 0x9e3779b97f4a7c15ull;

	for (uint64_t j = 0; j < nr_words; j++)
		words[j] = x + j;
}

static bool block_intact(const uint64_t *words, uint64_t nr_words, uint64_t tag)
{
	uint64_t x = (tag + 1) * 0x9e3779b97f4a7c15ull;

	for (uint64_t j = 0; j < nr_words; j++)
		if (words[j] != x + j)
			return false;
	return true;
}

/* The move hook: patch the host's block tables. Pool lock held. */
static void on_moves(void *arg, const struct kvc_move *moves, uint32_t n)
{
	struct bench *b = arg;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t tag = moves[i].owner;
		uint32_t seq = (uint32_t)(tag >> 48);
		uint32_t layer = (uint32_t)(tag >> 36) & MAX_LAYERS;
		uint32_t head = (uint32_t)(tag >> 24) & MAX_HEADS;
		uint32_t index = (uint32_t)tag & 0xffffff;
		uint32_t *slot;

		if (seq >= b->nr_seqs || layer >= b->layers ||
		    head >= b->heads ||
		    index >= b->len[table_of(b, seq, layer, head)]) {
			b->moves_wrong++;
			continue;
		}
		slot = table_slot(b, seq, layer, head, index);
		if (*slot != moves[i].from) {
			b->moves_wrong++;
			continue;
		}
		*slot = moves[i].to;
	}
	b->moves_seen += n;
}

static void alloc_blocks(struct bench *b, struct kvc_pool *pool, uint64_t n)
{
	if (kvc_pool_alloc(pool, (uint32_t)n, b->scratch))
		fail("kvc_pool_alloc", kvc_last_error());
	b->alloc_calls++;
}

/* Prefill: the prompt's blocks for every table of @seq, in one call. */
static void prefill(struct bench *b, struct kvc_pool *pool, uint32_t seq)
{
	uint32_t nb =
		(b->seqs[seq].prompt + b->block_tokens - 1) / b->block_tokens;
	uint64_t n = 0;

	alloc_blocks(b, pool, (uint64_t)b->layers * b->heads * nb);
	for (uint32_t l = 0; l < b->layers; l++) {
		for (uint32_t h = 0; h < b->heads; h++) {
			for (uint32_t i = 0; i < nb; i++)
				*table_slot(b, seq, l, h, i) = b->scratch[n++];
			b->len[table_of(b, seq, l, h)] = nb;
		}
	}
	b->tokens[seq] = b->seqs[seq].prompt;
}

/*
 * Decode steps until every sequence has arrived and finished. Returns
 * after the last block is taken; nothing is freed on the way.
 */
static void grow(struct bench *b, struct kvc_pool *pool)
{
	uint32_t arrived = 0, running = 1;

	for (uint64_t step = 0; arrived < b->nr_seqs || running; step++) {
		uint32_t k = 0;
		uint64_t n = 0;

		running = 0;
		for (uint32_t s = 0; s < arrived; s++) {
			const struct request *r = &b->seqs[s];

			if (b->tokens[s] == r->prompt + r->output)
				continue;
			if (b->tokens[s] % b->block_tokens == 0)
				b->growing[k++] = s;
			if (++b->tokens[s] < r->prompt + r->output)
				running++;
		}
		if (k) {
			alloc_blocks(b, pool,
				     (uint64_t)b->layers * b->heads * k);
			for (uint32_t l = 0; l < b->layers; l++) {
				for (uint32_t j = 0; j < k; j++) {
					for (uint32_t h = 0; h < b->heads;
					     h++) {
						uint64_t t = table_of(
							b, b->growing[j], l, h);

						b->ids[b->first[t] +
						       b->len[t]++] =
							b->scratch[n++];
					}
				}
			}
		}
		if (arrived < b->nr_seqs && step == arrived * ARRIVAL_STEPS) {
			prefill(b, pool, arrived);
			if (b->tokens[arrived] <
			    b->seqs[arrived].prompt + b->seqs[arrived].output)
				running++;
			arrived++;
		}
	}
	for (uint64_t t = 0; t < b->nr_tables; t++)
		if (b->len[t] != b->blocks[t])
			fail("the decode model",
			     "a table has the wrong length");
}

/* Write every block's pattern and set its owner tag. */
static void write_blocks(struct bench *b, struct kvc_pool *pool)
{
	char *base = (char *)(uintptr_t)kvc_pool_base(pool);
	uint64_t words = b->block_bytes / 8;

	for (uint32_t s = 0; s < b->nr_seqs; s++) {
		for (uint32_t l = 0; l < b->layers; l++) {
			for (uint32_t h = 0; h < b->heads; h++) {
				uint64_t t = table_of(b, s, l, h);

				for (uint32_t i = 0; i < b->len[t]; i++) {
					uint32_t id = b->ids[b->first[t] + i];
					uint64_t tag = owner_tag(s, l, h, i);

					fill_block(
						(uint64_t
							 *)(base +
							    (uint64_t)id *
								    b->block_bytes),
						words, tag);
					if (kvc_pool_set_owner(pool, id, tag))
						fail("kvc_pool_set_owner",
						     kvc_last_error());
				}
			}
		}
	}
}

/* Compress every sequence: free each table's tail, one call a sequence. */
static void compress(struct bench *b, struct kvc_pool *pool)
{
	for (uint32_t s = 0; s < b->nr_seqs; s++) {
		uint64_t n = 0;

		for (uint32_t l = 0; l < b->layers; l++) {
			for (uint32_t h = 0; h < b->heads; h++) {
				uint64_t t = table_of(b, s, l, h);

				for (uint32_t i = b->keep[t]; i < b->len[t];
				     i++)
					b->scratch[n++] =
						b->ids[b->first[t] + i];
				b->len[t] = b->keep[t];
			}
		}
		if (n && kvc_pool_free(pool, (uint32_t)n, b->scratch))
			fail("kvc_pool_free", kvc_last_error());
	}
}

/* A fresh pool holding the compressed workload. */
static struct kvc_pool *build(struct bench *b)
{
	struct kvc_pool_params params;
	struct kvc_pool *pool;

	kvc_pool_params_init(&params);
	params.backend_kind = KVC_BACKEND_HOST;
	params.backend = b->be;
	params.flags = KVC_POOL_NO_STATS_PAGE;
	params.name = "bench_compact";
	params.block_bytes = b->block_bytes;
	params.capacity_blocks = b->blocks_total;
	b->empty_kept = params.empty_chunks_kept;
	if (kvc_pool_create(&params, &pool))
		fail("kvc_pool_create", kvc_last_error());
	if (kvc_pool_set_move_hook(pool, on_moves, b))
		fail("kvc_pool_set_move_hook", kvc_last_error());
	memset(b->len, 0, b->nr_tables * sizeof(*b->len));
	memset(b->tokens, 0, b->nr_seqs * sizeof(*b->tokens));
	b->alloc_calls = 0;
	b->moves_seen = 0;
	b->moves_wrong = 0;
	grow(b, pool);
	write_blocks(b, pool);
	compress(b, pool);
	return pool;
}

/* Every surviving block, through the patched tables; then the pool. */
static void verify(struct bench *b, struct kvc_pool *pool, uint64_t moved)
{
	char *base = (char *)(uintptr_t)kvc_pool_base(pool);
	uint64_t words = b->block_bytes / 8, live = 0, owner;
	struct kvc_pool_stats st;
	char why[160];

	if (b->moves_wrong || b->moves_seen != moved) {
		snprintf(
			why, sizeof(why),
			"%llu moves reported, %llu made, %llu not matching a table",
			(unsigned long long)b->moves_seen,
			(unsigned long long)moved,
			(unsigned long long)b->moves_wrong);
		fail("the move hook", why);
	}
	for (uint32_t s = 0; s < b->nr_seqs; s++) {
		for (uint32_t l = 0; l < b->layers; l++) {
			for (uint32_t h = 0; h < b->heads; h++) {
				uint64_t t = table_of(b, s, l, h);

				for (uint32_t i = 0; i < b->len[t]; i++) {
					uint32_t id = b->ids[b->first[t] + i];
					uint64_t tag = owner_tag(s, l, h, i);
					const char *bad = NULL;

					if (!kvc_pool_is_live(pool, id))
						bad = "is not live";
					else if (kvc_pool_get_owner(pool, id,
								    &owner) ||
						 owner != tag)
						bad = "has another owner tag";
					else if (
						!block_intact(
							(const uint64_t
								 *)(base +
								    (uint64_t)id *
									    b->block_bytes),
							words, tag))
						bad = "lost its contents";
					if (bad) {
						snprintf(
							why, sizeof(why),
							"block %u of sequence %u, layer %u, head %u, index %u %s",
							id, s, l, h, i, bad);
						fail("verify", why);
					}
					live++;
				}
			}
		}
	}
	kvc_pool_get_stats(pool, &st, NULL);
	if (st.blocks_live != live) {
		snprintf(why, sizeof(why),
			 "the pool has %llu live blocks, the tables %llu",
			 (unsigned long long)st.blocks_live,
			 (unsigned long long)live);
		fail("verify", why);
	}
	if (kvc_pool_check(pool))
		fail("kvc_pool_check", kvc_last_error());
}

/* A buffer like the host backend's chunks: memfd pages, touched. */
static char *memfd_buffer(uint64_t bytes)
{
	int fd = memfd_create("bench_compact", MFD_CLOEXEC);
	char *p;

	if (fd < 0)
		fail("memfd_create", strerror(errno));
	if (ftruncate(fd, (off_t)bytes))
		fail("ftruncate of a memfd", strerror(errno));
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		fail("mmap", strerror(errno));
	memset(p, 0x5a, bytes);
	return p;
}

/* The baseline: @n blocks copied one memcpy() each, src to dst. */
static double time_memcpy(char *dst, const char *src, uint64_t n,
			  uint64_t block_bytes)
{
	double t0 = now_ns();

	for (uint64_t i = 0; i < n; i++)
		memcpy(dst + i * block_bytes, src + i * block_bytes,
		       block_bytes);
	return now_ns() - t0;
}

static void destroy(struct kvc_pool *pool)
{
	if (kvc_pool_destroy(pool))
		fail("kvc_pool_destroy", kvc_last_error());
}

static void run_full(struct bench *b, struct full_run *f)
{
	struct kvc_pool *pool = build(b);
	uint64_t bytes;
	char *src = NULL, *dst = NULL;
	double t0;
	int err;

	kvc_pool_get_stats(pool, &f->before, NULL);
	t0 = now_ns();
	err = kvc_pool_compact(pool, NULL, &f->res);
	f->wall_ns = now_ns() - t0;
	if (err)
		fail("kvc_pool_compact", kvc_last_error());
	kvc_pool_get_stats(pool, &f->after, NULL);
	/* Touched before verify reads the pool, so they are as cold as it. */
	bytes = f->res.blocks_moved * b->block_bytes;
	if (bytes) {
		src = memfd_buffer(bytes);
		dst = memfd_buffer(bytes);
	}
	verify(b, pool, f->res.blocks_moved);
	f->memcpy_ns = bytes ? time_memcpy(dst, src, f->res.blocks_moved,
					   b->block_bytes) :
			       0;
	if (bytes) {
		munmap(src, bytes);
		munmap(dst, bytes);
	}
	destroy(pool);
}

static double median(const double *v, uint32_t n)
{
	double *sorted = xcalloc(n, sizeof(*sorted)), m;

	memcpy(sorted, v, n * sizeof(*v));
	qsort(sorted, n, sizeof(*sorted), bench_cmp_double);
	m = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
	free(sorted);
	return m;
}

static void run_incremental(struct bench *b, struct incr_run *r)
{
	struct kvc_pool *pool = build(b);
	struct kvc_compact_params params = { .max_bytes = b->budget };
	struct kvc_compact_result res;
	uint64_t most_calls;
	double t0, t, *times;

	/* Each call that does something vacates a chunk at least. */
	kvc_pool_get_stats(pool, &r->after, NULL);
	most_calls = r->after.chunks_mapped + 1;
	times = xcalloc(most_calls, sizeof(*times));
	for (;;) {
		t0 = now_ns();
		if (kvc_pool_compact(pool, &params, &res))
			fail("kvc_pool_compact (with a budget)",
			     kvc_last_error());
		t = now_ns() - t0;
		if (!res.chunks_planned) {
			/* Nothing left, or the sparsest chunk is over budget. */
			r->converged = !res.budget_limited;
			r->stuck = res.budget_limited;
			break;
		}
		times[r->calls++] = t;
		r->wall_ns += t;
		if (t > r->longest_ns)
			r->longest_ns = t;
		r->lower_bound += res.lower_bound;
		r->blocks_moved += res.blocks_moved;
		r->bytes_copied += res.bytes_copied;
		if (res.bytes_copied > r->most_bytes)
			r->most_bytes = res.bytes_copied;
		r->chunks_vacated += res.chunks_vacated;
		if (res.chunks_vacated > r->most_chunks)
			r->most_chunks = res.chunks_vacated;
		if (!res.budget_limited) {
			r->converged = true;
			break;
		}
		if (r->calls == most_calls)
			break;
	}
	r->median_ns = r->calls ? median(times, r->calls) : 0;
	free(times);
	kvc_pool_get_stats(pool, &r->after, NULL);
	r->chunks_left = r->after.chunks_reclaimable;
	verify(b, pool, r->blocks_moved);
	destroy(pool);
}

static const char *fmt_bytes(char *buf, size_t size, double bytes)
{
	if (bytes >= 1024.0 * 1024 * 1024)
		snprintf(buf, size, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
	else if (bytes >= 1024.0 * 1024)
		snprintf(buf, size, "%.1f MiB", bytes / (1024.0 * 1024));
	else if (bytes >= 1024)
		snprintf(buf, size, "%.1f KiB", bytes / 1024.0);
	else
		snprintf(buf, size, "%.0f B", bytes);
	return buf;
}

static void bad_flag(const char *flag, const char *fmt, const char *value)
{
	fprintf(stderr, "bench_compact: %s ", flag);
	fprintf(stderr, fmt, value);
	fputc('\n', stderr);
	exit(2);
}

static const char *flag_value(int argc, char **argv, int i)
{
	if (i + 1 >= argc)
		bad_flag(argv[i], "wants a value%s", "");
	return argv[i + 1];
}

/* A whole number in [lo, hi], with an optional K, M or G (KiB...) suffix. */
static uint64_t parse_number(int argc, char **argv, int i, uint64_t lo,
			     uint64_t hi, bool suffix)
{
	const char *v = flag_value(argc, argv, i);
	unsigned long long x;
	char *end, range[96];
	unsigned shift = 0;

	errno = 0;
	x = strtoull(v, &end, 0);
	if (v[0] == '-' || end == v || errno)
		bad_flag(argv[i], "wants a whole number, not '%s'", v);
	if (suffix && *end) {
		if (!strcasecmp(end, "k") || !strcasecmp(end, "KiB"))
			shift = 10;
		else if (!strcasecmp(end, "m") || !strcasecmp(end, "MiB"))
			shift = 20;
		else if (!strcasecmp(end, "g") || !strcasecmp(end, "GiB"))
			shift = 30;
		else
			bad_flag(
				argv[i],
				"wants bytes, with K, M or G if need be, not '%s'",
				v);
		if (x > (~0ull >> shift))
			bad_flag(argv[i], "is too large: %s", v);
		x <<= shift;
	} else if (*end) {
		bad_flag(argv[i], "wants a whole number, not '%s'", v);
	}
	if (x < lo || x > hi) {
		snprintf(range, sizeof(range), "%llu..%llu",
			 (unsigned long long)lo, (unsigned long long)hi);
		fprintf(stderr, "bench_compact: %s %s is out of range %s\n",
			argv[i], v, range);
		exit(2);
	}
	return x;
}

/* A rate "R" or a range "LO-HI", each from 1 to 1024. */
static void parse_rate(int argc, char **argv, int i, double *lo, double *hi)
{
	const char *v = flag_value(argc, argv, i);
	char *end;

	*lo = strtod(v, &end);
	*hi = *lo;
	if (end != v && *end == '-')
		*hi = strtod(end + 1, &end);
	if (end == v || *end || !(*lo >= 1 && *lo <= *hi && *hi <= 1024))
		bad_flag(
			argv[i],
			"wants a compression rate R or a range LO-HI with 1 <= LO <= HI <= 1024, not '%s'",
			v);
}

/* Rows of a trace with ContextTokens and GeneratedTokens columns. */
static struct request *read_trace(const char *path, uint32_t *nr)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *field, *save, *end;
	int col_prompt = -1, col_output = -1, col;
	struct request *reqs = NULL, *grown;
	size_t size = 0, cap = 0, n = 0;
	unsigned long lineno = 1;
	char where[64];

	if (!f) {
		fprintf(stderr, "bench_compact: --trace %s: %s\n", path,
			strerror(errno));
		exit(2);
	}
	if (getline(&line, &size, f) < 0)
		bad_flag("--trace", "%s: empty file", path);
	line[strcspn(line, "\r\n")] = '\0';
	for (col = 0, field = strtok_r(line, ",", &save); field;
	     col++, field = strtok_r(NULL, ",", &save)) {
		if (!strcmp(field, "ContextTokens"))
			col_prompt = col;
		else if (!strcmp(field, "GeneratedTokens"))
			col_output = col;
	}
	if (col_prompt < 0 || col_output < 0)
		bad_flag(
			"--trace",
			"%s: no ContextTokens and GeneratedTokens columns in the first line",
			path);
	while (getline(&line, &size, f) >= 0) {
		unsigned long long prompt = ~0ull, output = ~0ull, x;

		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		if (!line[0])
			continue;
		for (col = 0, field = strtok_r(line, ",", &save); field;
		     col++, field = strtok_r(NULL, ",", &save)) {
			if (col != col_prompt && col != col_output)
				continue;
			x = strtoull(field, &end, 10);
			if (end == field || *end || field[0] == '-' ||
			    x > MAX_TOKENS * 1000ull)
				x = ~0ull;
			*(col == col_prompt ? &prompt : &output) = x;
		}
		if (prompt == ~0ull || output == ~0ull) {
			snprintf(where, sizeof(where), "%s line %lu", path,
				 lineno);
			bad_flag("--trace", "%s: bad or missing token counts",
				 where);
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			grown = realloc(reqs, cap * sizeof(*reqs));
			if (!grown)
				fail("realloc", strerror(ENOMEM));
			reqs = grown;
		}
		reqs[n++] =
			(struct request){ (uint32_t)prompt, (uint32_t)output };
		if (n > UINT32_MAX / 2)
			bad_flag("--trace", "%s: too many rows", path);
	}
	free(line);
	fclose(f);
	if (!n)
		bad_flag("--trace", "%s: no requests", path);
	*nr = (uint32_t)n;
	return reqs;
}

/* Cut a request to MAX_TOKENS, keeping its output; a prompt of at least 1. */
static struct request fit(struct request r)
{
	if (r.output > MAX_TOKENS - 1)
		r.output = MAX_TOKENS - 1;
	if (r.prompt + r.output > MAX_TOKENS)
		r.prompt = MAX_TOKENS - r.output;
	if (!r.prompt)
		r.prompt = 1;
	return r;
}

/*
 * Draw the sequences, their rates and each head's share; size the tables.
 * Exits with 2 when the workload would not fit in memory.
 */
static void plan_workload(struct bench *b, const struct request *reqs,
			  uint32_t nr_reqs, uint64_t seed)
{
	uint64_t per_seq = (uint64_t)b->layers * b->heads, t = 0, slot = 0;
	uint64_t most_total = 0;
	uint64_t avail = sysconf(_SC_AVPHYS_PAGES) * sysconf(_SC_PAGESIZE);
	char need[32], have[32];

	rng_state = seed;
	b->seqs = xcalloc(b->nr_seqs, sizeof(*b->seqs));
	b->blocks_total = 0;
	for (uint32_t s = 0; s < b->nr_seqs; s++) {
		struct request *r = &b->seqs[s];
		uint64_t nb;

		*r = fit(reqs[rng_next() % nr_reqs]);
		nb = (r->prompt + r->output + b->block_tokens - 1) /
		     b->block_tokens;
		b->blocks_total += per_seq * nb;
		if (nb > most_total)
			most_total = nb;
	}
	/* The host backend commits a chunk's memory when it maps it. */
	if (b->blocks_total * b->block_bytes > avail / 10 * 8 ||
	    b->blocks_total >= KVC_MAX_BLOCKS) {
		fprintf(stderr,
			"bench_compact: the workload needs %s at its peak, more than 80%% of the %s free; use fewer --seqs\n",
			fmt_bytes(need, sizeof(need),
				  (double)b->blocks_total * b->block_bytes),
			fmt_bytes(have, sizeof(have), (double)avail));
		exit(2);
	}
	b->nr_tables = per_seq * b->nr_seqs;
	b->rate = xcalloc(b->nr_seqs, sizeof(*b->rate));
	b->first = xcalloc(b->nr_tables, sizeof(*b->first));
	b->blocks = xcalloc(b->nr_tables, sizeof(*b->blocks));
	b->keep = xcalloc(b->nr_tables, sizeof(*b->keep));
	b->len = xcalloc(b->nr_tables, sizeof(*b->len));
	b->ids = xcalloc(b->blocks_total, sizeof(*b->ids));
	b->tokens = xcalloc(b->nr_seqs, sizeof(*b->tokens));
	b->growing = xcalloc(b->nr_seqs, sizeof(*b->growing));
	/* Room for one sequence's blocks, or for a block in every table. */
	b->scratch = xcalloc(
		per_seq * (most_total > b->nr_seqs ? most_total : b->nr_seqs),
		sizeof(*b->scratch));
	b->blocks_kept = 0;
	for (uint32_t s = 0; s < b->nr_seqs; s++) {
		const struct request *r = &b->seqs[s];
		uint32_t nb = (r->prompt + r->output + b->block_tokens - 1) /
			      b->block_tokens;

		b->rate[s] = rng_uniform(b->rate_lo, b->rate_hi);
		for (uint64_t j = 0; j < per_seq; j++, t++) {
			double keep = nb * rng_uniform(0.25, 1.75) / b->rate[s];

			b->first[t] = slot;
			b->blocks[t] = nb;
			b->keep[t] = keep < 1  ? 1 :
				     keep > nb ? nb :
						 (uint32_t)(keep + 0.5);
			b->blocks_kept += b->keep[t];
			slot += nb;
		}
	}
}

/* Sums over the workload, as built (every run builds the same). */
static void report_workload(const struct bench *b)
{
	double rate = 0;
	char s1[32], s2[32], rates[64];

	for (uint32_t s = 0; s < b->nr_seqs; s++)
		rate += b->rate[s];
	if (b->rate_lo == b->rate_hi)
		snprintf(rates, sizeof(rates), "%.1fx", b->rate_lo);
	else
		snprintf(rates, sizeof(rates), "%.1f-%.1fx (mean %.2fx)",
			 b->rate_lo, b->rate_hi, rate / b->nr_seqs);
	printf("          %llu blocks (%s) taken in %llu alloc calls; rate %s a sequence, each head 0.25-1.75x of it: %llu blocks freed in %u calls, %llu live (%s)\n",
	       (unsigned long long)b->blocks_total,
	       fmt_bytes(s1, sizeof(s1),
			 (double)b->blocks_total * b->block_bytes),
	       (unsigned long long)b->alloc_calls, rates,
	       (unsigned long long)(b->blocks_total - b->blocks_kept),
	       b->nr_seqs, (unsigned long long)b->blocks_kept,
	       fmt_bytes(s2, sizeof(s2),
			 (double)b->blocks_kept * b->block_bytes));
}

static const char *goal(bool met)
{
	return met ? "PASS" : "MISS";
}

static void report_full(const struct bench *b, const struct full_run *full)
{
	const struct full_run *f = &full[0];
	const struct kvc_compact_result *res = &f->res;
	const struct kvc_pool_stats *st[2] = { &f->before, &f->after };
	double v[6][MAX_REPEATS], wall, plan, move, copy, unmap, rest, mcopy;
	double live = (double)f->after.bytes_live, most, ratio[2];
	uint64_t floor_chunks;
	char s[2][32];

	for (uint32_t i = 0; i < b->repeats; i++) {
		v[0][i] = full[i].wall_ns;
		v[1][i] = (double)full[i].res.plan_ns;
		v[2][i] = (double)full[i].res.move_ns;
		v[3][i] = (double)full[i].res.copy_ns;
		v[4][i] = (double)full[i].res.unmap_ns;
		v[5][i] =
			full[i].wall_ns - v[1][i] - v[2][i] - v[3][i] - v[4][i];
	}
	wall = median(v[0], b->repeats);
	plan = median(v[1], b->repeats);
	move = median(v[2], b->repeats);
	copy = median(v[3], b->repeats);
	unmap = median(v[4], b->repeats);
	rest = median(v[5], b->repeats);
	for (uint32_t i = 0; i < b->repeats; i++)
		v[0][i] = full[i].memcpy_ns;
	mcopy = median(v[0], b->repeats);
	most = 1.02 + (double)b->chunk_bytes / live;
	for (int k = 0; k < 2; k++)
		ratio[k] = (double)st[k]->bytes_mapped / live;

	printf("\nfull compaction: one kvc_pool_compact(), no budget\n");
	printf("%-36s %12s %12s\n", "", "before", "after");
	printf("%-36s %12s %12s\n", "  bytes mapped",
	       fmt_bytes(s[0], sizeof(s[0]), (double)f->before.bytes_mapped),
	       fmt_bytes(s[1], sizeof(s[1]), (double)f->after.bytes_mapped));
	printf("%-36s %12s %12s\n", "  bytes live",
	       fmt_bytes(s[0], sizeof(s[0]), (double)f->before.bytes_live),
	       fmt_bytes(s[1], sizeof(s[1]), live));
	for (int k = 0; k < 2; k++)
		snprintf(s[k], sizeof(s[k]), "%llu/%llu/%llu",
			 (unsigned long long)st[k]->chunks_full,
			 (unsigned long long)st[k]->chunks_partial,
			 (unsigned long long)st[k]->chunks_empty);
	printf("%-36s %12s %12s\n", "  chunks full/partly used/empty", s[0],
	       s[1]);
	printf("%-36s %12.4f %12.4f   goal <= %.4f (1.02 + one chunk): %s\n",
	       "  mapped / live", ratio[0], ratio[1], most,
	       goal(ratio[1] <= most));
	floor_chunks = (f->after.blocks_live + f->after.blocks_per_chunk - 1) /
			       f->after.blocks_per_chunk +
		       b->empty_kept;
	printf("  floor: ceil(live / chunk) + %u kept %12s %12.4f   %llu chunks, reached: %s\n",
	       b->empty_kept, "", (double)floor_chunks * b->chunk_bytes / live,
	       (unsigned long long)floor_chunks,
	       f->after.chunks_mapped <= floor_chunks ? "yes" : "no");
	printf("  moves / lower bound                %llu / %llu = %.3f   goal 1.00: %s\n",
	       (unsigned long long)res->blocks_moved,
	       (unsigned long long)res->lower_bound,
	       res->lower_bound ? (double)res->blocks_moved / res->lower_bound :
				  1.0,
	       goal(res->blocks_moved == res->lower_bound));
	printf("  chunks planned %u, vacated %u, skipped %u, released %u; %s copied\n",
	       res->chunks_planned, res->chunks_vacated, res->chunks_skipped,
	       res->chunks_released,
	       fmt_bytes(s[0], sizeof(s[0]), (double)res->bytes_copied));
	printf("  time of the call                   %.3f ms = plan %.3f + bookkeeping %.3f + copy %.3f + unmap %.3f + other %.3f\n",
	       wall / 1e6, plan / 1e6, move / 1e6, copy / 1e6, unmap / 1e6,
	       rest / 1e6);
	if (res->chunks_released)
		printf("  unmap / chunks released            %.1f us a chunk\n",
		       unmap / 1e3 / res->chunks_released);
	printf("  plan / copy                        %7.2f%%   goal <= 5%%: %s\n",
	       copy ? 100 * plan / copy : 0, goal(copy && plan <= 0.05 * copy));
	printf("  bookkeeping / copy                 %7.2f%%\n",
	       copy ? 100 * move / copy : 0);
	printf("  copy / plain memcpy                %7.2fx   kvc %.3f ms (%.1f GB/s), memcpy %.3f ms (%.1f GB/s): %llu blocks, one call each, memfd to memfd\n",
	       mcopy ? copy / mcopy : 0, copy / 1e6,
	       copy ? res->bytes_copied / copy : 0, mcopy / 1e6,
	       mcopy ? res->bytes_copied / mcopy : 0,
	       (unsigned long long)res->blocks_moved);
}

static void report_incremental(const struct bench *b,
			       const struct full_run *full,
			       const struct incr_run *incr)
{
	const struct incr_run *r = &incr[0];
	double v[3][MAX_REPEATS], live = (double)r->after.bytes_live;
	double ratio = (double)r->after.bytes_mapped / live;
	char s[2][32];

	for (uint32_t i = 0; i < b->repeats; i++) {
		v[0][i] = incr[i].median_ns;
		v[1][i] = incr[i].longest_ns;
		v[2][i] = incr[i].wall_ns;
	}
	printf("\nincremental compaction: kvc_pool_compact() with max_bytes %s, until a call finds nothing to do\n",
	       fmt_bytes(s[0], sizeof(s[0]), (double)b->budget));
	if (r->converged)
		printf("  calls to converge                  %u, vacating %llu chunks (%.1f a call, at most %u)\n",
		       r->calls, (unsigned long long)r->chunks_vacated,
		       r->calls ? (double)r->chunks_vacated / r->calls : 0,
		       r->most_chunks);
	else
		printf("  calls to converge                  did not converge: %llu chunks could still be freed after %u calls, %s\n",
		       (unsigned long long)r->chunks_left, r->calls,
		       r->stuck ?
			       "but the sparsest holds more than the budget" :
			       "the most this bench makes");
	printf("  most bytes one call copied         %s = %.3f of the budget   goal <= 1.00: %s\n",
	       fmt_bytes(s[0], sizeof(s[0]), (double)r->most_bytes),
	       (double)r->most_bytes / b->budget,
	       goal(r->most_bytes <= b->budget));
	printf("  moves / lower bound                %llu / %llu = %.3f   goal 1.00: %s\n",
	       (unsigned long long)r->blocks_moved,
	       (unsigned long long)r->lower_bound,
	       r->lower_bound ? (double)r->blocks_moved / r->lower_bound : 1.0,
	       goal(r->blocks_moved == r->lower_bound));
	printf("  moves / full compaction's          %.3f\n",
	       full[0].res.blocks_moved ?
		       (double)r->blocks_moved / full[0].res.blocks_moved :
		       1.0);
	printf("  mapped / live after                %.3f (full compaction: %.3f)\n",
	       ratio, (double)full[0].after.bytes_mapped / live);
	printf("  time a call                        median %.3f ms, longest %.3f ms; all calls %.3f ms\n",
	       median(v[0], b->repeats) / 1e6, median(v[1], b->repeats) / 1e6,
	       median(v[2], b->repeats) / 1e6);
}

static void free_workload(struct bench *b)
{
	free(b->seqs);
	free(b->rate);
	free(b->first);
	free(b->blocks);
	free(b->keep);
	free(b->len);
	free(b->ids);
	free(b->tokens);
	free(b->growing);
	free(b->scratch);
}

static const char usage[] =
	"usage: bench_compact [flags]\n"
	"  --layers N        layers, 1..4095 (default 30, SmolLM2-135M)\n"
	"  --heads N         KV heads per layer, 1..4095 (default 3)\n"
	"  --block-tokens N  tokens per block (default 16)\n"
	"  --head-dim N      head dimension (default 64); a block holds\n"
	"                    block-tokens x head-dim x K,V x 2 B, a power of two\n"
	"                    from 32 B to the 2 MiB chunk\n"
	"  --seqs N          sequences, 1..65535 (default 16)\n"
	"  --rate R|LO-HI    compression rate per sequence, uniform in LO..HI,\n"
	"                    1..1024 (default 2-8)\n"
	"  --seed N          seed for lengths, rates and head shares (default 0x6b7663)\n"
	"  --repeats N       runs of each mode, 1..101, each on a fresh pool (default 5)\n"
	"  --budget BYTES    bytes per call in incremental mode, K/M/G suffixes,\n"
	"                    at least one block (default one chunk, 2M)\n"
	"  --trace FILE      draw lengths from a CSV with ContextTokens and\n"
	"                    GeneratedTokens columns instead of the built-in sample\n"
	"  --help            this text\n";

int main(int argc, char **argv)
{
	struct bench b = { .layers = 30,
			   .heads = 3,
			   .block_tokens = 16,
			   .head_dim = 64,
			   .chunk_bytes = KVC_HOST_GRANULARITY,
			   .nr_seqs = 16,
			   .rate_lo = 2,
			   .rate_hi = 8,
			   .repeats = REPEATS };
	const struct request *reqs = azure_conv_sample;
	uint32_t nr_reqs = sizeof(azure_conv_sample) / sizeof(*reqs);
	struct request *trace = NULL;
	const char *trace_path = NULL;
	struct full_run full[MAX_REPEATS];
	struct incr_run incr[MAX_REPEATS];
	double prompt = 0, output = 0;
	uint64_t seed = SEED, longest = 0;
	char s1[32], s2[32];
	bool same = true;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--layers")) {
			b.layers = (uint32_t)parse_number(argc, argv, i++, 1,
							  MAX_LAYERS, false);
		} else if (!strcmp(argv[i], "--heads")) {
			b.heads = (uint32_t)parse_number(argc, argv, i++, 1,
							 MAX_HEADS, false);
		} else if (!strcmp(argv[i], "--block-tokens")) {
			b.block_tokens = (uint32_t)parse_number(
				argc, argv, i++, 1, MAX_TOKENS, false);
		} else if (!strcmp(argv[i], "--head-dim")) {
			b.head_dim = (uint32_t)parse_number(argc, argv, i++, 1,
							    1u << 20, false);
		} else if (!strcmp(argv[i], "--seqs")) {
			b.nr_seqs = (uint32_t)parse_number(argc, argv, i++, 1,
							   MAX_SEQS, false);
		} else if (!strcmp(argv[i], "--rate")) {
			parse_rate(argc, argv, i++, &b.rate_lo, &b.rate_hi);
		} else if (!strcmp(argv[i], "--seed")) {
			seed = parse_number(argc, argv, i++, 0, UINT64_MAX,
					    false);
		} else if (!strcmp(argv[i], "--repeats")) {
			b.repeats = (uint32_t)parse_number(argc, argv, i++, 1,
							   MAX_REPEATS, false);
		} else if (!strcmp(argv[i], "--budget")) {
			b.budget = parse_number(argc, argv, i++, 1, UINT64_MAX,
						true);
		} else if (!strcmp(argv[i], "--trace")) {
			trace_path = flag_value(argc, argv, i++);
		} else {
			bool help = !strcmp(argv[i], "--help");

			if (!help)
				fprintf(stderr,
					"bench_compact: unknown argument '%s'\n",
					argv[i]);
			fputs(usage, help ? stdout : stderr);
			return help ? 0 : 2;
		}
	}
	b.block_bytes = (uint64_t)b.block_tokens * b.head_dim * KV_BYTES;
	if (b.block_bytes & (b.block_bytes - 1) ||
	    b.block_bytes > b.chunk_bytes ||
	    b.chunk_bytes / b.block_bytes > MAX_BLOCKS_PER_CHUNK) {
		fprintf(stderr,
			"bench_compact: a block of %u tokens x %u dims x K,V x 2 B is %llu B; it must be a power of two from 32 B to the 2 MiB chunk\n",
			b.block_tokens, b.head_dim,
			(unsigned long long)b.block_bytes);
		return 2;
	}
	if (!b.budget)
		b.budget = b.chunk_bytes;
	if (b.budget < b.block_bytes) {
		fprintf(stderr,
			"bench_compact: --budget %llu B is less than one block (%llu B)\n",
			(unsigned long long)b.budget,
			(unsigned long long)b.block_bytes);
		return 2;
	}
	if (trace_path)
		reqs = trace = read_trace(trace_path, &nr_reqs);
	plan_workload(&b, reqs, nr_reqs, seed);
	if (kvc_backend_open_host(0, &b.be))
		fail("kvc_backend_open_host", kvc_last_error());

	for (uint32_t s = 0; s < b.nr_seqs; s++) {
		prompt += b.seqs[s].prompt;
		output += b.seqs[s].output;
		if (b.seqs[s].prompt + b.seqs[s].output > longest)
			longest = b.seqs[s].prompt + b.seqs[s].output;
	}
	printf("bench_compact: compaction of a KV-Compress-shaped pool, host backend; times are medians of %u runs, each on a fresh pool\n",
	       b.repeats);
	bench_print_machine();
	printf("geometry: %u layers x %u KV heads = %llu block tables a sequence; block %u tokens x %u dims x K,V x 2 B = %s; chunk %s = %llu blocks\n",
	       b.layers, b.heads, (unsigned long long)b.layers * b.heads,
	       b.block_tokens, b.head_dim,
	       fmt_bytes(s1, sizeof(s1), (double)b.block_bytes),
	       fmt_bytes(s2, sizeof(s2), (double)b.chunk_bytes),
	       (unsigned long long)(b.chunk_bytes / b.block_bytes));
	printf("workload: %u sequences drawn (seed %#llx) from %s%s (%u requests); %.0f tokens mean (%.0f prompt + %.0f output), longest %llu; one arrives every %u decode steps\n",
	       b.nr_seqs, (unsigned long long)seed,
	       trace_path ? "" : "the built-in Azure conv sample",
	       trace_path ? trace_path : "", nr_reqs,
	       (prompt + output) / b.nr_seqs, prompt / b.nr_seqs,
	       output / b.nr_seqs, (unsigned long long)longest, ARRIVAL_STEPS);
	fflush(stdout);

	for (uint32_t i = 0; i < b.repeats; i++) {
		memset(&full[i], 0, sizeof(full[i]));
		memset(&incr[i], 0, sizeof(incr[i]));
		run_full(&b, &full[i]);
		run_incremental(&b, &incr[i]);
	}
	report_workload(&b);
	report_full(&b, full);
	report_incremental(&b, full, incr);
	for (uint32_t i = 1; i < b.repeats; i++)
		same &= full[i].res.blocks_moved == full[0].res.blocks_moved &&
			full[i].after.bytes_mapped ==
				full[0].after.bytes_mapped &&
			incr[i].calls == incr[0].calls &&
			incr[i].blocks_moved == incr[0].blocks_moved;
	printf("checks: after each of %u compactions every surviving block was found through the patched tables, live, with its owner tag and contents; kvc_pool_check() passed%s\n",
	       2 * b.repeats,
	       same ? "" :
		      "\nnote: moves or bytes mapped differed between runs of the same workload");
	free_workload(&b);
	free(trace);
	kvc_backend_close(b.be);
	return 0;
}
