/* Description: kvc_run() end to end: report invariants, compression rate of kvcompress, physical ratio within 2% of the theoretical one after compaction at rate 8 (the headline), conventional layout below the per-head one, the full policy, every policy, traces and cuts, capacity, the hold; kvcctl run: JSON, table, help, usage errors, traces, --hold, --backend cuda and auto with the device figures */
// SPDX-License-Identifier: MIT
/*
 * Runs kvc_run() on small shapes (and one run big enough that the 2 MiB
 * chunks of the host backend do not decide the ratios), then runs the
 * built build/kvcctl (path from the repository root, where `make test`
 * runs) as a user would. Each test gets a fresh KVC_STATS_DIR made with
 * mkdtemp(), so /dev/shm is never touched. kvcctl's JSON is read by the
 * strict parser in json.c and must be one flat object, as `kvcctl run
 * --json` prints, so invalid JSON fails the tests.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "json.h"
#include "proc.h"
#include "testutil.h"

#include <kvc/evict.h>
#include <kvc/kvc.h>
#include <kvc/run.h>

/* The program under test; -D can point it at another build. */
#ifndef KVCCTL
#define KVCCTL "build/kvcctl"
#endif
#define RUN_TIMEOUT_MS 120000
#define CHUNK (2ull << 20)

static const char *const policy_names[] = {
	"kvcompress", "full",	   "streamingllm", "h2o",
	"snapkv",     "pyramidkv", "pyramidinfer", "window",
};

#define NR_POLICIES (sizeof(policy_names) / sizeof(policy_names[0]))

/* ---- Fixtures ---- */

/**
 * struct fixture - One test's state.
 * @dir: its KVC_STATS_DIR.
 * @p: run parameters, a small shape to start with.
 * @rep: the report.
 * @holds: times the hold callback ran.
 */
struct fixture {
	char dir[64];
	struct kvc_run_params p;
	struct kvc_run_report rep;
	int holds;
};

/* 2 layers, 4 query heads, 2 KV heads, head_dim 64, block 16, f16. */
static void small_params(struct kvc_run_params *p)
{
	kvc_run_params_init(p);
	p->shape.layers = 2;
	p->shape.q_heads = 4;
	p->shape.kv_heads = 2;
	p->seqs = 3;
	p->prompt_len = 128;
	p->gen_len = 32;
	p->err_samples = 4;
}

/* The test's own directory, made by mkdtemp(): pages and traces. */
static void remove_dir(const char *dir)
{
	char cmd[sizeof(((struct fixture *)0)->dir) + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "test_run: cannot remove %s\n", dir);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/kvc-run-test.XXXXXX");
	if (!mkdtemp(f->dir) || setenv("KVC_STATS_DIR", f->dir, 1)) {
		perror("test_run setup");
		free(f);
		return -1;
	}
	small_params(&f->p);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	unsetenv("KVC_STATS_DIR");
	remove_dir(f->dir);
	free(f);
	return 0;
}

/* ---- Helpers ---- */

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + !!(a % b);
}

static uint32_t elem_bytes(const struct kvc_model_shape *s)
{
	return s->dtype == KVC_DTYPE_F16 ? 2 : 4;
}

/* Request @i of @p, as kvc_run() takes it: trace or lengths, then cut. */
static struct kvc_request request_of(const struct kvc_run_params *p, uint32_t i)
{
	struct kvc_request r = { p->prompt_len, p->gen_len };

	if (p->trace)
		r = p->trace[i % p->nr_trace];
	if (p->max_tokens && r.prompt + r.gen > p->max_tokens) {
		if (r.prompt > p->max_tokens)
			r.prompt = p->max_tokens;
		r.gen = p->max_tokens - r.prompt;
	}
	return r;
}

static uint64_t expected_tokens(const struct kvc_run_params *p)
{
	uint64_t tokens = 0;
	uint32_t i;

	for (i = 0; i < p->seqs; i++) {
		struct kvc_request r = request_of(p, i);

		tokens += r.prompt + r.gen;
	}
	return tokens;
}

static uint64_t expected_steps(const struct kvc_run_params *p)
{
	uint64_t steps = 0;
	uint32_t i;

	for (i = 0; i < p->seqs; i++)
		steps += request_of(p, i).gen;
	return steps;
}

/* Bytes of one token in every (layer, KV head), K and V. */
static uint64_t token_bytes(const struct kvc_model_shape *s)
{
	return (uint64_t)s->layers * s->kv_heads * s->head_dim * 2 *
	       elem_bytes(s);
}

/* Blocks every sequence holds at full length, over all its tables. */
static uint64_t full_blocks(const struct kvc_run_params *p)
{
	uint64_t blocks = 0;
	uint32_t i;

	for (i = 0; i < p->seqs; i++) {
		struct kvc_request r = request_of(p, i);

		blocks += div_up(r.prompt + r.gen, p->shape.block_size) *
			  p->shape.layers * p->shape.kv_heads;
	}
	return blocks;
}

static void expect_near(double got, double want, double tol, const char *what)
{
	if (!(fabs(got - want) <= tol))
		fail_msg("%s = %.6f, expected %.6f +- %.6f", what, got, want,
			 tol);
}

/* What every report must satisfy, whatever the policy. */
static void check_report(const struct kvc_run_params *p,
			 const struct kvc_run_report *r)
{
	assert_non_null(r->policy);
	assert_string_equal(r->policy, p->policy.name);
	EXPECT_U64(r->seqs, p->seqs);
	EXPECT_U64(r->steps, expected_steps(p));
	EXPECT_U64(r->logical_bytes,
		   expected_tokens(p) * token_bytes(&p->shape));
	EXPECT_U64(r->chunk_bytes, CHUNK);
	assert_true(r->live_bytes > 0);
	assert_true(r->live_bytes <= r->logical_bytes);
	assert_true(r->mapped_bytes >= r->live_bytes);
	EXPECT_U64(r->mapped_bytes % r->chunk_bytes, 0);
	assert_true(r->peak_mapped_bytes >= r->mapped_bytes);
	EXPECT_U64(r->conventional_mapped_bytes % r->chunk_bytes, 0);
	assert_true(r->conventional_mapped_bytes >= r->live_bytes);
	expect_near(r->theoretical_ratio,
		    (double)r->logical_bytes / (double)r->live_bytes, 1e-9,
		    "theoretical_ratio");
	expect_near(r->physical_ratio,
		    (double)r->logical_bytes / (double)r->mapped_bytes, 1e-9,
		    "physical_ratio");
	expect_near(r->conventional_ratio,
		    (double)r->logical_bytes /
			    (double)r->conventional_mapped_bytes,
		    1e-9, "conventional_ratio");
	assert_true(r->theoretical_ratio >= 1.0);
	assert_true(isfinite(r->frag_ratio) && r->frag_ratio >= 0);
	assert_true(r->attn_rel_err >= 0);
	assert_true(r->attn_rel_err_max >= r->attn_rel_err);
	if (!p->err_samples || !r->steps) {
		assert_true(r->attn_rel_err == 0);
		assert_true(r->attn_rel_err_max == 0);
	}
	if (!p->compact)
		EXPECT_U64(r->blocks_moved, 0);
	if (!p->budget_bytes) {
		EXPECT_U64(r->capacity_full, 0);
		EXPECT_U64(r->capacity_compressed, 0);
	}
	assert_true(r->seconds > 0);
}

static void run_ok(struct fixture *f)
{
	int err = kvc_run(&f->p, &f->rep, NULL, NULL);

	if (err)
		fail_msg("kvc_run() = %d: %s", err, kvc_last_error());
	check_report(&f->p, &f->rep);
}

/* ---- kvc_run() ---- */

static void test_small_run(void **state)
{
	struct fixture *f = *state;
	struct kvc_run_report first;

	run_ok(f);
	assert_true(f->rep.compressions > 0);
	assert_true(f->rep.theoretical_ratio > 1.5);
	assert_true(f->rep.attn_rel_err > 0 && f->rep.attn_rel_err_max < 1);
	expect_near(f->rep.rate, 8, 0, "rate");

	/* The same parameters give the same report, but for the time. */
	first = f->rep;
	run_ok(f);
	EXPECT_U64(f->rep.live_bytes, first.live_bytes);
	EXPECT_U64(f->rep.mapped_bytes, first.mapped_bytes);
	EXPECT_U64(f->rep.peak_mapped_bytes, first.peak_mapped_bytes);
	EXPECT_U64(f->rep.conventional_mapped_bytes,
		   first.conventional_mapped_bytes);
	EXPECT_U64(f->rep.compressions, first.compressions);
	EXPECT_U64(f->rep.blocks_moved, first.blocks_moved);
	assert_true(f->rep.attn_rel_err == first.attn_rel_err);
	assert_true(f->rep.attn_rel_err_max == first.attn_rel_err_max);
}

/*
 * kvcompress keeps ceil((tokens - protected) / rate) of the unprotected
 * KVs of each head, in whole blocks over the sequence; gen_len 32 ends
 * the run on a compression (every block_size = 16 steps), so the ratio is
 * the rate's, within a block per sequence.
 */
static void test_kvcompress_rate(void **state)
{
	static const double rates[] = { 2, 4, 8 };
	struct fixture *f = *state;
	double tokens, keep;
	size_t i;

	f->p.prompt_len = 512;
	f->p.err_samples = 0;
	for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		f->p.policy.rate = rates[i];
		f->p.policy.protected_window = 0;
		run_ok(f);
		expect_near(f->rep.theoretical_ratio, rates[i], 0.02 * rates[i],
			    "theoretical_ratio");

		f->p.policy.protected_window = 32;
		run_ok(f);
		tokens = f->p.prompt_len + f->p.gen_len;
		keep = 32 + ceil((tokens - 32) / rates[i]);
		expect_near(f->rep.theoretical_ratio, tokens / keep,
			    0.02 * tokens / keep, "theoretical_ratio");
	}
}

/*
 * The headline: after compaction at rate 8, the physical ratio is within
 * 2% of the theoretical one. With 4 layers x 8 KV heads of head_dim 256
 * in f32, 7 sequences of 2048 + 16 tokens keep about 113 MiB live, so the
 * one partly used chunk a full compaction leaves is under 2% of it
 * (kvcompress frees whole blocks, and the run ends on a compression, so
 * no head has a partly used block). One observed prefill query keeps the
 * attention cheap. The conventional layout, where a block holds every KV
 * head of a layer, keeps much more.
 */
static void test_headline_physical_ratio(void **state)
{
	struct fixture *f = *state;
	struct kvc_run_params *p = &f->p;

	p->shape = (struct kvc_model_shape){
		.layers = 4,
		.q_heads = 8,
		.kv_heads = 8,
		.head_dim = 256,
		.block_size = 16,
		.dtype = KVC_DTYPE_F32,
	};
	p->policy.rate = 8;
	p->policy.protected_window = 0;
	p->policy.observe_window = 1;
	p->seqs = 7;
	p->prompt_len = 2048;
	p->gen_len = 16;
	p->err_samples = 0;
	run_ok(f);
	assert_true(f->rep.live_bytes >= 100 * CHUNK / 2);
	expect_near(f->rep.theoretical_ratio, 8, 0.08, "theoretical_ratio");
	if (f->rep.physical_ratio < 0.98 * f->rep.theoretical_ratio)
		fail_msg("physical ratio %.4f < 0.98 x theoretical %.4f",
			 f->rep.physical_ratio, f->rep.theoretical_ratio);
	if (f->rep.conventional_ratio >= f->rep.physical_ratio)
		fail_msg("conventional ratio %.4f >= physical %.4f",
			 f->rep.conventional_ratio, f->rep.physical_ratio);
	assert_true(f->rep.blocks_moved > 0);
}

/* Without compaction, the same eviction maps at least as much. */
static void test_no_compact(void **state)
{
	struct fixture *f = *state;
	struct kvc_run_report compacted;

	f->p.shape.layers = 8;
	f->p.shape.kv_heads = 4;
	f->p.seqs = 6;
	f->p.prompt_len = 512;
	f->p.gen_len = 16;
	f->p.err_samples = 0;
	run_ok(f);
	compacted = f->rep;
	assert_true(compacted.blocks_moved > 0);
	f->p.compact = false;
	run_ok(f);
	EXPECT_U64(f->rep.live_bytes, compacted.live_bytes);
	EXPECT_U64(f->rep.conventional_mapped_bytes,
		   compacted.conventional_mapped_bytes);
	assert_true(f->rep.mapped_bytes > compacted.mapped_bytes);
	EXPECT_U64(f->rep.blocks_moved, 0);
}

/*
 * "full" keeps everything: theoretical ratio 1, no error; the pool is
 * only ever appended to, so it maps the held blocks rounded up to a chunk.
 */
static void test_full_policy(void **state)
{
	struct fixture *f = *state;
	struct kvc_run_params *p = &f->p;
	uint64_t block_bytes, held;

	p->policy.name = "full";
	p->shape.layers = 8;
	p->shape.kv_heads = 4;
	p->shape.q_heads = 4;
	p->seqs = 4;
	p->prompt_len = 500;
	p->gen_len = 20;
	p->err_samples = 6;
	run_ok(f);
	block_bytes = kvc_kv_block_bytes(&p->shape);
	held = full_blocks(p) * block_bytes;
	EXPECT_U64(f->rep.live_bytes, f->rep.logical_bytes);
	assert_true(f->rep.theoretical_ratio == 1.0);
	assert_true(f->rep.attn_rel_err == 0);
	assert_true(f->rep.attn_rel_err_max == 0);
	EXPECT_U64(f->rep.compressions, 0);
	EXPECT_U64(f->rep.blocks_moved, 0);
	EXPECT_U64(f->rep.mapped_bytes, div_up(held, CHUNK) * CHUNK);
	assert_true(f->rep.logical_bytes > 4 * CHUNK);
	assert_true(f->rep.physical_ratio >=
		    (double)f->rep.logical_bytes / (double)(held + CHUNK));
	assert_true(f->rep.physical_ratio <= 1.0);
	/* Every head of a layer holds the same: the layouts agree. */
	EXPECT_U64(f->rep.conventional_mapped_bytes,
		   div_up(held, CHUNK) * CHUNK);
}

static void test_every_policy(void **state)
{
	struct fixture *f = *state;
	size_t i;

	f->p.policy.window_tokens = 48;
	for (i = 0; i < NR_POLICIES; i++) {
		f->p.policy.name = policy_names[i];
		f->p.policy.rate = 4;
		run_ok(f);
		if (strcmp(policy_names[i], "full"))
			assert_true(f->rep.theoretical_ratio > 1.0);
		assert_true(f->rep.attn_rel_err_max < 2);
	}
}

static void test_max_cache_tokens(void **state)
{
	struct fixture *f = *state;

	f->p.policy.rate = 0;
	f->p.policy.max_cache_tokens = 48;
	run_ok(f);
	assert_true(f->rep.rate == 0);
	assert_true(f->rep.theoretical_ratio > 2);
}

/* Requests cycle through the trace; max_tokens cuts prompt, then output. */
static void test_trace_and_cut(void **state)
{
	static const struct kvc_request trace[] = {
		{ 100, 20 },
		{ 300, 0 },
	};
	struct fixture *f = *state;

	f->p.trace = trace;
	f->p.nr_trace = 2;
	f->p.seqs = 5;
	run_ok(f);
	EXPECT_U64(f->rep.steps, 60);
	EXPECT_U64(f->rep.logical_bytes,
		   (3 * 120 + 2 * 300) * token_bytes(&f->p.shape));

	f->p.max_tokens = 110;
	run_ok(f);
	EXPECT_U64(f->rep.steps, 30);
	EXPECT_U64(f->rep.logical_bytes, 5 * 110 * token_bytes(&f->p.shape));
}

/*
 * Without eviction, the average sequence's blocks at full length fill the
 * chunks the budget holds; with it, the same packing of the pool's peak of
 * live blocks, which the peak mapped bytes bound from above.
 */
static void test_capacity(void **state)
{
	struct fixture *f = *state;
	uint64_t bpc, budget = 100ull << 20;

	f->p.shape.layers = 8;
	f->p.prompt_len = 600;
	f->p.gen_len = 16;
	f->p.err_samples = 0;
	f->p.budget_bytes = budget + 12345;
	run_ok(f);
	bpc = CHUNK / kvc_kv_block_bytes(&f->p.shape);
	EXPECT_U64(f->rep.capacity_full,
		   (budget / CHUNK) * bpc * f->p.seqs / full_blocks(&f->p));
	assert_true(f->rep.capacity_compressed >=
		    (uint64_t)((double)(budget / CHUNK) * CHUNK * f->p.seqs /
			       (double)f->rep.peak_mapped_bytes));
	assert_true(f->rep.capacity_compressed > f->rep.capacity_full);
}

/* The hold sees a filled report and the pool's published stats page. */
static void hold_check(void *arg)
{
	struct fixture *f = arg;
	struct kvc_stats_snapshot *snaps;
	uint32_t n, i, found = 0;

	f->holds++;
	EXPECT_U64(f->rep.seqs, f->p.seqs);
	assert_true(f->rep.mapped_bytes > 0);
	assert_int_equal(
		kvc_stats_list(f->dir, getpid(), &snaps, &n, NULL, NULL), 0);
	for (i = 0; i < n; i++)
		found += !strcmp(snaps[i].page.name, "test_run hold");
	free(snaps);
	assert_int_equal(found, 1);
}

static void test_hold(void **state)
{
	struct fixture *f = *state;
	struct kvc_stats_snapshot *snaps;
	uint32_t n;

	f->p.pool_name = "test_run hold";
	assert_int_equal(kvc_run(&f->p, &f->rep, hold_check, f), 0);
	assert_int_equal(f->holds, 1);
	/* The pool is gone, and its page with it. */
	assert_int_equal(
		kvc_stats_list(f->dir, getpid(), &snaps, &n, NULL, NULL), 0);
	free(snaps);
	assert_int_equal(n, 0);
}

/* More samples than decode steps: every step is sampled once. */
static void test_err_samples(void **state)
{
	struct fixture *f = *state;

	f->p.err_samples = 100000;
	run_ok(f);
	assert_true(f->rep.attn_rel_err > 0);
	f->p.gen_len = 0;
	run_ok(f);
	assert_true(f->rep.attn_rel_err == 0);
}

static void expect_einval(struct fixture *f, const char *what)
{
	int err = kvc_run(&f->p, &f->rep, NULL, NULL);

	if (err != -EINVAL)
		fail_msg("%s: kvc_run() = %d, expected -EINVAL", what, err);
	if (!*kvc_last_error())
		fail_msg("%s: no message", what);
	small_params(&f->p);
}

static void test_bad_params(void **state)
{
	static const struct kvc_request zero_prompt[] = { { 10, 1 }, { 0, 5 } };
	struct fixture *f = *state;

	assert_int_equal(kvc_run(NULL, &f->rep, NULL, NULL), -EINVAL);
	assert_int_equal(kvc_run(&f->p, NULL, NULL, NULL), -EINVAL);
	f->p.seqs = 0;
	expect_einval(f, "seqs 0");
	f->p.prompt_len = 0;
	expect_einval(f, "prompt 0");
	f->p.shape.head_dim = 100;
	expect_einval(f, "head_dim 100");
	f->p.shape.q_heads = 3;
	expect_einval(f, "q_heads 3 of kv_heads 2");
	f->p.policy.name = "nope";
	expect_einval(f, "unknown policy");
	f->p.policy.name = NULL;
	expect_einval(f, "no policy");
	f->p.policy.rate = 0.5;
	expect_einval(f, "rate 0.5");
	f->p.policy.max_cache_tokens = 64;
	expect_einval(f, "rate and max_cache_tokens");
	f->p.nr_trace = 3;
	expect_einval(f, "nr_trace without a trace");
	f->p.trace = zero_prompt;
	f->p.nr_trace = 2;
	expect_einval(f, "a request of 0 prompt tokens");
	f->p.trace = zero_prompt;
	f->p.nr_trace = 0;
	expect_einval(f, "an empty trace");
	f->p.backend_kind = (enum kvc_backend_kind)7;
	expect_einval(f, "backend kind 7");
	f->p.prompt_len = 1u << 30;
	expect_einval(f, "a request longer than a table holds");
}

/* ---- kvcctl run ---- */

/* Run @argv (NULL-terminated) to its end; capture stdout and stderr. */
static void run_argv(struct result *r, char *const argv[])
{
	proc_run_argv(r, argv, RUN_TIMEOUT_MS);
}

/* kvcctl(&r, args..., NULL): kvcctl run with a small shape, then args. */
static void kvcctl(struct result *r, ...)
{
	char *const head[] = {
		KVCCTL,	      "run", "--layers", "2", "--heads",      "4",
		"--kv-heads", "2",   "--seqs",	 "2", "--prompt-len", "96",
		"--gen-len",  "16",  NULL,
	};
	va_list ap;

	va_start(ap, r);
	proc_vrun(r, RUN_TIMEOUT_MS, head, ap);
	va_end(ap);
}

/*
 * @text as `kvcctl run --json` prints it: one object, flat (no arrays or
 * objects inside), its names and strings printable ASCII. Return: the
 * object, or NULL when @text is anything else.
 */
static struct json *parse_flat(const char *text)
{
	struct json *o = json_parse(text);
	const unsigned char *c;
	size_t i;

	if (!o || o->type != JSON_OBJECT)
		goto bad;
	for (i = 0; i < o->n; i++) {
		const struct json *v = o->items[i];

		if (v->type == JSON_ARRAY || v->type == JSON_OBJECT)
			goto bad;
		for (c = (const unsigned char *)o->keys[i]; *c; c++)
			if (*c < 0x20 || *c >= 0x7f)
				goto bad;
		if (v->type != JSON_STRING)
			continue;
		for (c = (const unsigned char *)v->text; *c; c++)
			if (*c < 0x20 || *c >= 0x7f)
				goto bad;
	}
	return o;
bad:
	json_free(o);
	return NULL;
}

/* kvcctl run --json ARGS...: exit 0, stdout one flat object, to @o. */
static void run_json(struct json **o, ...)
{
	char *const head[] = {
		KVCCTL,	      "run", "--layers", "2",  "--heads",      "4",
		"--kv-heads", "2",   "--seqs",	 "2",  "--prompt-len", "96",
		"--gen-len",  "16",  "--json",	 NULL,
	};
	struct result r;
	va_list ap;

	va_start(ap, o);
	proc_vrun(&r, RUN_TIMEOUT_MS, head, ap);
	va_end(ap);
	if (r.status != 0)
		fail_msg("kvcctl run --json: exit %d: %s", r.status, r.err);
	*o = parse_flat(r.out);
	if (!*o)
		fail_msg("kvcctl run --json: not one flat JSON object:\n%s",
			 r.out);
	proc_result_free(&r);
}

static void test_kvcctl_json(void **state)
{
	static const char *const fields[] = {
		"policy",
		"rate",
		"seqs",
		"steps",
		"logical_bytes",
		"live_bytes",
		"mapped_bytes",
		"chunk_bytes",
		"peak_mapped_bytes",
		"theoretical_ratio",
		"physical_ratio",
		"frag_ratio",
		"conventional_mapped_bytes",
		"conventional_ratio",
		"attn_rel_err",
		"attn_rel_err_max",
		"compressions",
		"blocks_moved",
		"capacity_full",
		"capacity_compressed",
		"seconds",
	};
	uint64_t logical, live, mapped;
	struct json *o;
	size_t i;

	run_json(&o, "--budget", "104857600", NULL);
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (!json_get(o, fields[i]))
			fail_msg("no member \"%s\"", fields[i]);
	assert_string_equal(json_str(o, "policy"), "kvcompress");
	assert_true(json_number(o, "rate") == 8);
	EXPECT_U64(json_u64(o, "seqs"), 2);
	EXPECT_U64(json_u64(o, "steps"), 32);
	logical = json_u64(o, "logical_bytes");
	live = json_u64(o, "live_bytes");
	mapped = json_u64(o, "mapped_bytes");
	EXPECT_U64(logical, 2 * 112 * 2 * 2 * 64 * 2 * 2);
	assert_true(live <= logical && mapped >= live);
	EXPECT_U64(json_u64(o, "chunk_bytes"), CHUNK);
	expect_near(json_number(o, "theoretical_ratio"),
		    (double)logical / (double)live, 1e-4, "theoretical_ratio");
	expect_near(json_number(o, "physical_ratio"),
		    (double)logical / (double)mapped, 1e-4, "physical_ratio");
	assert_true(json_u64(o, "capacity_full") > 0);
	assert_true(json_u64(o, "capacity_compressed") > 0);
	/* The host backend measures nothing on a device. */
	assert_string_equal(json_str(o, "backend"), "host");
	EXPECT_U64(json_u64(o, "device_free_start"), 0);
	EXPECT_U64(json_u64(o, "device_measured_bytes"), 0);
	EXPECT_U64(json_u64(o, "device_overhead_bytes"), 0);
	assert_true(json_number(o, "device_ratio") == 0);
	json_free(o);

	/* Another policy, a rate, the full set of flags. */
	run_json(&o, "--policy", "h2o", "--rate", "4", "--protected-window",
		 "8", "--sinks", "2", "--interval", "4", "--dtype", "f32",
		 "--block-size", "8", "--head-dim", "128", "--seed", "7",
		 "--err-samples", "3", "--no-compact", "--backend", "host",
		 "--max-tokens", "100", NULL);
	assert_string_equal(json_str(o, "policy"), "h2o");
	assert_true(json_number(o, "rate") == 4);
	assert_string_equal(json_str(o, "dtype"), "f32");
	assert_false(json_bool(o, "compact"));
	EXPECT_U64(json_u64(o, "blocks_moved"), 0);
	EXPECT_U64(json_u64(o, "steps"), 8);
	EXPECT_U64(json_u64(o, "logical_bytes"), 2 * 100 * 2 * 2 * 128 * 2 * 4);
	json_free(o);

	run_json(&o, "--policy", "snapkv", "--max-cache-tokens", "32",
		 "--compress-once", NULL);
	assert_true(json_number(o, "rate") == 0);
	EXPECT_U64(json_u64(o, "max_cache_tokens"), 32);
	assert_true(json_bool(o, "compress_once"));
	json_free(o);

	run_json(&o, "--policy", "window", "--window-tokens", "32",
		 "--window-layers", "1", NULL);
	assert_true(json_number(o, "theoretical_ratio") > 1);
	json_free(o);
}

/*
 * --backend cuda runs on the GPU where a driver, a device and kernels
 * answer, and adds what cuMemGetInfo measured; elsewhere it fails with
 * one line saying why. --backend auto always runs.
 */
static void test_kvcctl_backend(void **state)
{
	struct result r;
	struct json *o;
	const char *nl;

	kvcctl(&r, "--backend", "cuda", "--json", NULL);
	if (r.status == 0) {
		o = parse_flat(r.out);
		assert_non_null(o);
		assert_string_equal(json_str(o, "backend"), "cuda");
		assert_true(json_u64(o, "device_free_start") > 0);
		assert_true(json_u64(o, "device_measured_bytes") >=
			    json_u64(o, "device_overhead_bytes"));
		json_free(o);
	} else {
		assert_int_equal(r.status, 1);
		assert_string_equal(r.out, "");
		assert_true(!strncmp(r.err, "kvcctl run: ", 12));
		nl = strchr(r.err, '\n');
		assert_non_null(nl);
		assert_string_equal(nl + 1, "");
	}
	proc_result_free(&r);

	kvcctl(&r, "--backend", "auto", "--json", NULL);
	if (r.status != 0)
		fail_msg("kvcctl run --backend auto: exit %d: %s", r.status,
			 r.err);
	o = parse_flat(r.out);
	assert_non_null(o);
	if (strcmp(json_str(o, "backend"), "cuda")) {
		assert_string_equal(json_str(o, "backend"), "host");
		assert_non_null(strstr(r.err, "using the host backend"));
	}
	json_free(o);
	proc_result_free(&r);
}

static void test_kvcctl_table(void **state)
{
	static const char *const words[] = {
		"policy      kvcompress, rate 8",
		"logical (full cache)",
		"theoretical",
		"physical",
		"conventional layout",
		"peak mapped",
		"backend     host",
		"fragmentation",
		"attention      relative error",
		"capacity",
	};
	struct result r;
	size_t i;

	kvcctl(&r, "--budget", "1073741824", NULL);
	if (r.status != 0)
		fail_msg("kvcctl run: exit %d: %s", r.status, r.err);
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strstr(r.out, words[i]))
			fail_msg("no '%s' in:\n%s", words[i], r.out);
	assert_non_null(strstr(r.out, "1.0 GiB holds"));
	proc_result_free(&r);
}

static void test_kvcctl_help(void **state)
{
	struct result r, h;

	run_argv(&r, (char *[]){ KVCCTL, "run", "--help", NULL });
	assert_int_equal(r.status, 0);
	assert_true(!strncmp(r.out, "Usage: kvcctl run", 17));
	assert_string_equal(r.err, "");
	run_argv(&h, (char *[]){ KVCCTL, "help", "run", NULL });
	assert_int_equal(h.status, 0);
	assert_string_equal(h.out, r.out);
	proc_result_free(&r);
	proc_result_free(&h);

	run_argv(&r, (char *[]){ KVCCTL, "--help", NULL });
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "\n  run "));
	proc_result_free(&r);
}

/* kvcctl run ARGS: exit 2, nothing on stdout, @message on stderr. */
static void expect_usage(const char *message, ...)
{
	char *const head[] = { KVCCTL, "run", NULL };
	const char *first;
	struct result r;
	va_list ap, peek;

	va_start(ap, message);
	/* The first argument names the case in a failure message. */
	va_copy(peek, ap);
	first = va_arg(peek, const char *);
	va_end(peek);
	if (!first)
		first = "";
	proc_vrun(&r, RUN_TIMEOUT_MS, head, ap);
	va_end(ap);
	if (r.status != 2)
		fail_msg("kvcctl run %s: exit %d, expected 2", first, r.status);
	assert_string_equal(r.out, "");
	if (!strstr(r.err, message))
		fail_msg("kvcctl run %s: no '%s' in: %s", first, message,
			 r.err);
	assert_non_null(strstr(r.err, "Try 'kvcctl run --help'."));
	proc_result_free(&r);
}

static void test_kvcctl_usage_errors(void **state)
{
	expect_usage("unknown option '--nope'", "--nope", NULL);
	expect_usage("unknown option '-x'", "-x", NULL);
	expect_usage("unexpected argument 'extra'", "extra", NULL);
	expect_usage("--seqs needs a value", "--seqs", NULL);
	expect_usage("--seqs: '1x' is not a whole number", "--seqs", "1x",
		     NULL);
	expect_usage("--seqs: 0 is out of range", "--seqs", "0", NULL);
	expect_usage("--gen-len: '-1' is not a whole number", "--gen-len", "-1",
		     NULL);
	expect_usage("--rate: '0.5' is not a number from 1", "--rate", "0.5",
		     NULL);
	expect_usage("--rate: 'inf' is not", "--rate", "inf", NULL);
	expect_usage("--hold: 'x' is not a number of seconds", "--hold", "x",
		     NULL);
	expect_usage("--dtype: 'f8' is not f16, bf16 or f32", "--dtype", "f8",
		     NULL);
	expect_usage("--backend: 'tpu' is not one of", "--backend", "tpu",
		     NULL);
	expect_usage("head_dim 100 is not one of", "--head-dim", "100", NULL);
	expect_usage("block_size 12 is not one of", "--block-size", "12", NULL);
	expect_usage("q_heads 4 is not a non-zero multiple of kv_heads 3",
		     "--heads", "4", "--kv-heads", "3", NULL);
	expect_usage("unknown policy \"nope\"", "--policy", "nope", NULL);
	expect_usage("--rate and --max-cache-tokens exclude each other",
		     "--rate", "4", "--max-cache-tokens", "64", NULL);
	expect_usage("--interval and --compress-once exclude each other",
		     "--interval", "4", "--compress-once", NULL);
	expect_usage("--budget: 0 is out of range", "--budget", "0", NULL);
	expect_usage("option '--json' takes no value", "--json=1", NULL);
	expect_usage("--trace: the file name is empty", "--trace", "", NULL);
	expect_usage("do not apply with --trace", "--trace", "x.csv",
		     "--prompt-len", "5", NULL);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void test_kvcctl_trace(void **state)
{
	struct fixture *f = *state;
	char good[128], bad[128], missing[128];
	char *argv[] = { KVCCTL,       "run", "--layers", "2", "--heads", "4",
			 "--kv-heads", "2",   "--seqs",	  "3", "--trace", good,
			 "--json",     NULL };
	struct result r;
	struct json *o;

	snprintf(good, sizeof(good), "%s/trace.csv", f->dir);
	snprintf(bad, sizeof(bad), "%s/bad.csv", f->dir);
	snprintf(missing, sizeof(missing), "%s/missing.csv", f->dir);
	write_text(good, "TIMESTAMP,ContextTokens,GeneratedTokens\n"
			 "t0,100,8\n"
			 "t1,60,0\n");
	write_text(bad, "ContextTokens,GeneratedTokens\n"
			"100,8\n"
			"12x,4\n");

	run_argv(&r, argv);
	if (r.status != 0)
		fail_msg("kvcctl run --trace: exit %d: %s", r.status, r.err);
	o = parse_flat(r.out);
	assert_non_null(o);
	EXPECT_U64(json_u64(o, "seqs"), 3);
	EXPECT_U64(json_u64(o, "steps"), 16);
	EXPECT_U64(json_u64(o, "logical_bytes"),
		   (108 + 60 + 108) * 2 * 2 * 64 * 2 * 2);
	assert_string_equal(json_str(o, "trace"), good);
	json_free(o);
	proc_result_free(&r);
	expect_usage("bad.csv:3: ContextTokens \"12x\"", "--trace", bad, NULL);
	expect_usage("missing.csv", "--trace", missing, NULL);
}

/*
 * --hold keeps the pool published until SIGTERM, which ends the hold
 * cleanly: the report is out, the exit status 0, the page removed.
 */
static void test_kvcctl_hold(void **state)
{
	struct fixture *f = *state;
	char *argv[] = { KVCCTL,       "run", "--layers", "2", "--heads", "4",
			 "--kv-heads", "2",   "--seqs",	  "2", "--hold",  "60",
			 NULL };
	struct kvc_stats_snapshot *snaps = NULL;
	FILE *out = tmpfile(), *err = tmpfile();
	int status, waited;
	uint32_t n = 0;
	bool found;
	char *text;
	pid_t pid;

	assert_non_null(out);
	assert_non_null(err);
	pid = proc_spawn(argv, out, err);
	/* The pool is published from the start; wait for the hold. */
	for (waited = 0;; waited += 10) {
		if (waited >= RUN_TIMEOUT_MS)
			fail_msg("kvcctl run --hold never said it holds");
		text = proc_slurp(err);
		found = strstr(text, "holding the pool") != NULL;
		free(text);
		if (found)
			break;
		usleep(10000);
	}
	assert_int_equal(kvc_stats_list(f->dir, pid, &snaps, &n, NULL, NULL),
			 0);
	assert_int_equal(n, 1);
	assert_string_equal(snaps[0].page.name, "kvcctl run kvcompress");
	assert_true(snaps[0].alive);
	free(snaps);
	text = proc_slurp(out);
	assert_non_null(strstr(text, "theoretical"));
	free(text);

	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(proc_wait_exit(pid, RUN_TIMEOUT_MS, &status), 0);
	assert_int_equal(proc_exit_code(status), 0);
	fclose(out);
	fclose(err);
	assert_int_equal(kvc_stats_list(f->dir, pid, &snaps, &n, NULL, NULL),
			 0);
	free(snaps);
	assert_int_equal(n, 0);
}

static int group_setup(void **state)
{
	if (access(KVCCTL, X_OK)) {
		fprintf(stderr,
			"%s must be built; run from the repository root after make\n",
			KVCCTL);
		return -1;
	}
	return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_small_run),
		T(test_kvcompress_rate),
		T(test_headline_physical_ratio),
		T(test_no_compact),
		T(test_full_policy),
		T(test_every_policy),
		T(test_max_cache_tokens),
		T(test_trace_and_cut),
		T(test_capacity),
		T(test_hold),
		T(test_err_samples),
		T(test_bad_params),
		T(test_kvcctl_json),
		T(test_kvcctl_backend),
		T(test_kvcctl_table),
		T(test_kvcctl_help),
		T(test_kvcctl_usage_errors),
		T(test_kvcctl_trace),
		T(test_kvcctl_hold),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
