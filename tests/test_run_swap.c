/* Description: kvc_run() under a budget with a swap: the same outputs as without a budget for both preemption rules, the full and kvcompress policies, a mixed trace, both I/O engines, buffered I/O and the cuda backend over the fake driver; recomputation when the swap is too small; budgets too small for a prompt or a sequence; bad parameters; the preemption rules' names */
// SPDX-License-Identifier: MIT
/*
 * Each test runs a small workload on a host backend of 64 KiB chunks, so
 * that a budget of a few chunks holds only a sequence or two: once
 * without a budget, as the reference, then under a budget with a swap in
 * a fresh temporary directory. Sequences arrive every few iterations and grow
 * while they decode, so a budget below the workload's peak forces running
 * ones out. Preemption must not change a single output: the digests of
 * both runs are equal, and the report says that sequences really went
 * out and came back (or were recomputed, when the swap cannot take them).
 * After a run the swap must hold nothing, and the process must hold no
 * more file descriptors than before.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
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

#include <kvc/backend.h>
#include <kvc/kvc.h>
#include <kvc/run.h>
#include <kvc/swap.h>

#include "backend.h"
#include "fake_check.h"
#include "fake_driver.h"

/* The backends' chunk: a budget is a few of them. */
#define GRAN (64ull << 10)
/* The full policy: 4 sequences of up to 64 blocks, 2 of them fit. */
#define FULL_BUDGET (8 * GRAN)
/* kvcompress at rate 8: 4 sequences of about 16 blocks, 32 blocks fit. */
#define COMPRESS_BUDGET (2 * GRAN)

/**
 * struct fixture - One test's state.
 * @dir: its temporary directory: the swap and the stats pages.
 * @path: the swap's data file in @dir.
 * @be: a host backend of GRAN chunks, for every run.
 * @dev: a cuda backend over the fake driver, or NULL.
 * @p: the run's parameters (no budget, no swap to start with).
 * @sp: the swap's parameters (@path, quiet).
 * @ref: the report of the reference run.
 * @rep: the report of the run under the budget.
 * @fds: file descriptors open at setup (-1 when /proc cannot say).
 */
struct fixture {
	char dir[PATH_MAX];
	char path[PATH_MAX + 8];
	struct kvc_backend *be;
	struct kvc_backend *dev;
	struct kvc_run_params p;
	struct kvc_swap_params sp;
	struct kvc_run_report ref;
	struct kvc_run_report rep;
	int fds;
};

/* ---- Fixtures ---- */

/* Open file descriptors of this process, or -1. */
static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* 2 layers, 4 query heads, 2 KV heads, head_dim 64, block 16, f16. */
static void small_params(struct fixture *f)
{
	struct kvc_run_params *p = &f->p;

	kvc_run_params_init(p);
	p->shape.layers = 2;
	p->shape.q_heads = 4;
	p->shape.kv_heads = 2;
	p->err_samples = 0;
	p->backend = f->be;
	kvc_swap_params_init(&f->sp);
	f->sp.path = f->path;
	f->sp.flags = KVC_SWAP_QUIET;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (tmpdir_make(f->dir, sizeof(f->dir), "kvc-test-run-swap")) {
		perror("test_run_swap setup");
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/swap", f->dir);
	if (setenv("KVC_STATS_DIR", f->dir, 1) ||
	    kvc_backend_open_host(GRAN, &f->be)) {
		fprintf(stderr, "test_run_swap setup: %s\n", kvc_last_error());
		tmpdir_remove(f->dir);
		free(f);
		return -1;
	}
	small_params(f);
	f->fds = open_fds();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int err;

	kvc_backend_close(f->dev);
	kvc_backend_close(f->be);
	unsetenv("KVC_STATS_DIR");
	err = tmpdir_remove(f->dir);
	if (err)
		fprintf(stderr, "test_run_swap: cannot remove %s: %s\n", f->dir,
			strerror(errno));
	free(f);
	return err;
}

/* ---- Workloads ---- */

/*
 * The full policy: each sequence grows to 256 tokens, 64 blocks over its
 * 4 tables; all 4 overlap, 256 blocks at the peak; the budget holds 128.
 */
static void full_workload(struct kvc_run_params *p)
{
	p->policy.name = "full";
	p->seqs = 4;
	p->prompt_len = 64;
	p->gen_len = 192;
}

/*
 * kvcompress at rate 8 keeps a sequence to about 16 blocks, but a prompt
 * comes in whole before it is compressed: the budget of 32 blocks holds
 * a prompt and a compressed sequence or two. The uncompressed copy for
 * the error samples stays on the host while its sequence is out.
 */
static void compress_workload(struct kvc_run_params *p)
{
	p->policy.name = "kvcompress";
	p->policy.rate = 8;
	p->seqs = 4;
	p->prompt_len = 64;
	p->gen_len = 256;
	p->err_samples = 4;
}

/* ---- Runs and checks ---- */

static void run_ok(const struct kvc_run_params *p, struct kvc_run_report *rep,
		   const char *what)
{
	int err = kvc_run(p, rep, NULL, NULL);

	if (err)
		fail_msg("kvc_run (%s) = %d: %s", what, err, kvc_last_error());
}

/* The reference: the same workload without a budget or a swap. */
static void run_reference(struct fixture *f)
{
	struct kvc_run_params p = f->p;

	p.budget_bytes = 0;
	p.swap = NULL;
	run_ok(&p, &f->ref, "reference");
	assert_int_equal(f->ref.preemptions, 0);
	assert_int_equal(f->ref.swap_outs, 0);
	assert_null(f->ref.swap_engine);
}

/* The workload under @budget with the swap. */
static void run_swapped(struct fixture *f, uint64_t budget,
			enum kvc_preempt rule)
{
	f->p.budget_bytes = budget;
	f->p.swap = &f->sp;
	f->p.preempt = rule;
	run_ok(&f->p, &f->rep, kvc_preempt_name(rule));
}

static void expect_digest(uint64_t got, uint64_t want, const char *what)
{
	if (got != want)
		fail_msg("%s: output digest %016" PRIx64
			 ", expected the unconstrained run's %016" PRIx64,
			 what, got, want);
}

/* Every sequence came back: reopened as it is, the swap holds nothing. */
static void expect_swap_empty(struct fixture *f)
{
	struct kvc_kv_params kp;
	struct kvc_swap_params sp = f->sp;
	struct kvc_swap_stats st;
	struct kvc_swap *sw;
	struct kvc_kv *kv;
	int err;

	assert_int_equal(access(f->path, F_OK), 0);
	memset(&kp, 0, sizeof(kp));
	kp.shape = f->p.shape;
	kp.capacity_blocks = 64;
	kp.backend = f->be;
	kp.flags = KVC_POOL_NO_STATS_PAGE;
	err = kvc_kv_create(&kp, &kv);
	if (err)
		fail_msg("kvc_kv_create = %d: %s", err, kvc_last_error());
	sp.flags &= ~KVC_SWAP_FRESH;
	err = kvc_swap_open(&sp, kv, &sw);
	if (err)
		fail_msg("kvc_swap_open after the run = %d: %s", err,
			 kvc_last_error());
	kvc_swap_get_stats(sw, &st);
	EXPECT_U64(st.recovered, 0);
	EXPECT_U64(st.entries, 0);
	EXPECT_U64(st.used_bytes, 0);
	err = kvc_swap_check(sw);
	if (err)
		fail_msg("kvc_swap_check = %d: %s", err, kvc_last_error());
	kvc_swap_close(sw);
	kvc_kv_destroy(kv);
}

static void expect_no_fd_leak(const struct fixture *f)
{
	int now = open_fds();

	if (f->fds >= 0 && now != f->fds)
		fail_msg("%d file descriptors open, %d at the start", now,
			 f->fds);
}

/*
 * What a run under a budget must report against the reference, whether
 * its preempted sequences were swapped or recomputed: the same outputs
 * and steps, the same figures of the sequences (taken as each finished),
 * nothing left mapped, never more mapped than the budget.
 */
static void check_common(struct fixture *f, const char *what)
{
	const struct kvc_run_report *r = &f->rep, *ref = &f->ref;

	expect_digest(r->output_digest, ref->output_digest, what);
	EXPECT_U64(r->steps, ref->steps);
	EXPECT_U64(r->seqs, ref->seqs);
	EXPECT_U64(r->logical_bytes, ref->logical_bytes);
	EXPECT_U64(r->live_bytes, ref->live_bytes);
	EXPECT_U64(r->conventional_mapped_bytes,
		   ref->conventional_mapped_bytes);
	if (r->peak_mapped_bytes > f->p.budget_bytes)
		fail_msg("%s: %" PRIu64
			 " bytes mapped at the peak, budget %" PRIu64,
			 what, r->peak_mapped_bytes, f->p.budget_bytes);
	assert_true(r->peak_mapped_bytes > 0);
	/* Finished sequences are freed as they finish. */
	EXPECT_U64(r->mapped_bytes, 0);
	EXPECT_U64(r->swap_checksum_failures, 0);
	assert_true(r->preemptions > 0);
	assert_non_null(r->swap_engine);
	if (strcmp(r->swap_engine, "io_uring") &&
	    strcmp(r->swap_engine, "pread"))
		fail_msg("%s: swap engine '%s'", what, r->swap_engine);
	expect_swap_empty(f);
	expect_no_fd_leak(f);
}

/* A run whose preempted sequences all went to the swap and came back. */
static void check_swapped(struct fixture *f, const char *what)
{
	const struct kvc_run_report *r = &f->rep;

	check_common(f, what);
	assert_true(r->swap_outs > 0);
	EXPECT_U64(r->swap_ins, r->swap_outs);
	EXPECT_U64(r->preemptions, r->swap_outs);
	assert_true(r->swap_out_bytes > 0);
	EXPECT_U64(r->swap_in_bytes, r->swap_out_bytes);
	EXPECT_U64(r->recomputes, 0);
	EXPECT_U64(r->swap_failures, 0);
	/* Nothing ran twice: the policy compressed as often. */
	EXPECT_U64(r->compressions, f->ref.compressions);
	assert_true(r->swap_out_seconds >= 0);
	assert_true(r->swap_in_seconds >= 0);
}

/* ---- Outputs equal to the unconstrained run's ---- */

static void test_full_latest(void **state)
{
	struct fixture *f = *state;

	full_workload(&f->p);
	run_reference(f);
	/* The reference maps more than the budget: preemption is needed. */
	assert_true(f->ref.peak_mapped_bytes > FULL_BUDGET);
	run_swapped(f, FULL_BUDGET, KVC_PREEMPT_LATEST);
	check_swapped(f, "full, latest");
}

static void test_full_largest(void **state)
{
	struct fixture *f = *state;

	full_workload(&f->p);
	run_reference(f);
	run_swapped(f, FULL_BUDGET, KVC_PREEMPT_LARGEST);
	check_swapped(f, "full, largest");
}

static void test_kvcompress_latest(void **state)
{
	struct fixture *f = *state;

	compress_workload(&f->p);
	run_reference(f);
	assert_true(f->ref.compressions > 0);
	assert_true(f->ref.peak_mapped_bytes > COMPRESS_BUDGET);
	run_swapped(f, COMPRESS_BUDGET, KVC_PREEMPT_LATEST);
	check_swapped(f, "kvcompress, latest");
}

static void test_kvcompress_largest(void **state)
{
	struct fixture *f = *state;

	compress_workload(&f->p);
	run_reference(f);
	run_swapped(f, COMPRESS_BUDGET, KVC_PREEMPT_LARGEST);
	check_swapped(f, "kvcompress, largest");
}

/* Requests of different lengths: the largest is not always the latest. */
static void test_trace(void **state)
{
	static const struct kvc_request trace[] = {
		{ 48, 200 }, { 16, 120 }, { 96, 150 }, { 32, 220 }, { 64, 90 },
	};
	static const enum kvc_preempt rules[] = { KVC_PREEMPT_LATEST,
						  KVC_PREEMPT_LARGEST };
	struct fixture *f = *state;
	size_t i;

	full_workload(&f->p);
	f->p.trace = trace;
	f->p.nr_trace = sizeof(trace) / sizeof(trace[0]);
	f->p.seqs = f->p.nr_trace;
	run_reference(f);
	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		run_swapped(f, FULL_BUDGET, rules[i]);
		check_swapped(f, kvc_preempt_name(rules[i]));
	}
}

/*
 * The first KVC_REC_PREEMPT of a recorded run under @rule: which sequence
 * gave way and how many blocks it held.
 */
static void first_preempted(struct fixture *f, enum kvc_preempt rule,
			    uint64_t *seq, uint64_t *blocks)
{
	char path[PATH_MAX + 16];
	struct kvc_recorder *rec;
	struct kvc_rec_reader *r;
	struct kvc_rec_event e;
	bool found = false;
	int ret;

	snprintf(path, sizeof(path), "%s/run.kvct", f->dir);
	if (kvc_recorder_open(path, NULL, &rec))
		fail_msg("recorder: %s", kvc_last_error());
	f->p.rec = rec;
	run_swapped(f, f->p.budget_bytes, rule);
	f->p.rec = NULL;
	if (kvc_recorder_close(rec))
		fail_msg("recorder close: %s", kvc_last_error());
	check_swapped(f, kvc_preempt_name(rule));
	if (kvc_rec_reader_open(path, &r))
		fail_msg("reader: %s", kvc_last_error());
	while (!found && (ret = kvc_rec_next(r, &e)) == 1) {
		if (e.kind != KVC_REC_PREEMPT)
			continue;
		*seq = e.p[0];
		*blocks = e.p[1];
		found = true;
	}
	kvc_rec_reader_close(r);
	if (!found)
		fail_msg("%s: no preemption recorded", kvc_preempt_name(rule));
}

/*
 * The rules choose differently: one long request among short ones, all
 * running when memory runs out. The latest arrival gives way under
 * "latest"; the long one, holding the most, under "largest".
 */
static void test_rules_choose(void **state)
{
	static const struct kvc_request trace[] = {
		{ 160, 96 },
		{ 16, 96 },
		{ 16, 96 },
		{ 16, 96 },
	};
	struct fixture *f = *state;
	uint64_t seq, blocks, latest_blocks;

	full_workload(&f->p);
	f->p.trace = trace;
	f->p.nr_trace = sizeof(trace) / sizeof(trace[0]);
	f->p.seqs = f->p.nr_trace;
	f->p.budget_bytes = FULL_BUDGET;
	run_reference(f);
	first_preempted(f, KVC_PREEMPT_LATEST, &seq, &latest_blocks);
	EXPECT_U64(seq, f->p.seqs - 1);
	first_preempted(f, KVC_PREEMPT_LARGEST, &seq, &blocks);
	EXPECT_U64(seq, 0);
	assert_true(blocks > latest_blocks);
}

/* pread/pwrite instead of io_uring: the same bytes go out and come in. */
static void test_pread_engine(void **state)
{
	struct fixture *f = *state;

	full_workload(&f->p);
	run_reference(f);
	f->sp.flags |= KVC_SWAP_NO_URING;
	run_swapped(f, FULL_BUDGET, KVC_PREEMPT_LATEST);
	check_swapped(f, "pread");
	assert_string_equal(f->rep.swap_engine, "pread");
}

static void test_buffered(void **state)
{
	struct fixture *f = *state;

	compress_workload(&f->p);
	run_reference(f);
	f->sp.flags |= KVC_SWAP_NO_DIRECT;
	run_swapped(f, COMPRESS_BUDGET, KVC_PREEMPT_LARGEST);
	check_swapped(f, "buffered");
	assert_false(f->rep.swap_direct);
}

/* ---- Recomputation ---- */

/*
 * A swap of one slot takes no sequence: every swap-out fails, and the
 * sequence starts again from its prompt; it computes the same outputs,
 * and its steps count once.
 */
static void expect_recomputed(struct fixture *f, const char *what)
{
	const struct kvc_run_report *r = &f->rep;

	check_common(f, what);
	assert_true(r->recomputes > 0);
	assert_true(r->swap_failures > 0);
	EXPECT_U64(r->swap_outs, 0);
	EXPECT_U64(r->swap_ins, 0);
	EXPECT_U64(r->swap_out_bytes, 0);
	EXPECT_U64(r->swap_in_bytes, 0);
	/* Each preemption is one failed swap-out and one recompute. */
	EXPECT_U64(r->preemptions, r->recomputes);
	EXPECT_U64(r->swap_failures, r->recomputes);
}

static void test_recompute(void **state)
{
	struct fixture *f = *state;
	uint64_t block = kvc_kv_block_bytes(&f->p.shape);

	full_workload(&f->p);
	run_reference(f);
	/* One block's slot, rounded up to the I/O alignment. */
	f->sp.cap_bytes = (block + 4095) / 4096 * 4096;
	run_swapped(f, FULL_BUDGET, KVC_PREEMPT_LATEST);
	expect_recomputed(f, "full, recomputed");
}

/* kvcompress decides again on the recomputed prompt, as it did before. */
static void test_recompute_kvcompress(void **state)
{
	struct fixture *f = *state;
	uint64_t block = kvc_kv_block_bytes(&f->p.shape);

	compress_workload(&f->p);
	run_reference(f);
	f->sp.cap_bytes = (block + 4095) / 4096 * 4096;
	run_swapped(f, COMPRESS_BUDGET, KVC_PREEMPT_LARGEST);
	expect_recomputed(f, "kvcompress, recomputed");
	/* The recomputed sequences were compressed again. */
	assert_true(f->rep.compressions > f->ref.compressions);
}

/* ---- Budgets that cannot work ---- */

static void expect_enomem(struct fixture *f, uint64_t budget, const char *says)
{
	struct kvc_run_report rep;
	char want[32];
	int err;

	f->p.budget_bytes = budget;
	f->p.swap = &f->sp;
	err = kvc_run(&f->p, &rep, NULL, NULL);
	if (err != -ENOMEM)
		fail_msg("budget %" PRIu64
			 ": kvc_run = %d (%s), expected -ENOMEM",
			 budget, err, err ? kvc_last_error() : "no error");
	snprintf(want, sizeof(want), "budget of %" PRIu64 " bytes", budget);
	if (!strstr(kvc_last_error(), want) || !strstr(kvc_last_error(), says))
		fail_msg("message '%s' does not say '%s' and '%s'",
			 kvc_last_error(), want, says);
	/* Everything it held is given back (sanitizers catch the memory). */
	expect_no_fd_leak(f);
}

/*
 * A prompt of 64 tokens takes 4 blocks per table, 20 blocks with its first
 * token, more than the 16 of one chunk: the first sequence can never come
 * in. The budget is named as given, whole chunks or not.
 */
static void test_budget_below_prompt(void **state)
{
	struct fixture *f = *state;

	full_workload(&f->p);
	expect_enomem(f, GRAN, "prompt of sequence 0");
	expect_enomem(f, GRAN + 12345, "prompt of sequence 0");
}

/*
 * Two chunks hold a prompt but not a whole sequence of 64 blocks: the
 * sequence gives way to itself and can never come back.
 */
static void test_budget_below_sequence(void **state)
{
	struct fixture *f = *state;

	full_workload(&f->p);
	f->p.seqs = 1;
	expect_enomem(f, 2 * GRAN, "cannot hold");
}

/*
 * Less than one chunk holds no block at all. Refused as a budget too
 * small (-ENOMEM) or as a bad parameter (-EINVAL), but in the run's
 * words: the message names the budget, not the pool's cap underneath.
 */
static void test_budget_below_chunk(void **state)
{
	struct fixture *f = *state;
	struct kvc_run_report rep;
	char want[32];
	int err;

	full_workload(&f->p);
	f->p.budget_bytes = GRAN / 2;
	f->p.swap = &f->sp;
	err = kvc_run(&f->p, &rep, NULL, NULL);
	if (err != -ENOMEM && err != -EINVAL)
		fail_msg("kvc_run = %d, expected -ENOMEM or -EINVAL", err);
	snprintf(want, sizeof(want), "budget of %" PRIu64 " bytes",
		 f->p.budget_bytes);
	if (!strstr(kvc_last_error(), want))
		fail_msg("message '%s' does not say '%s'", kvc_last_error(),
			 want);
	expect_no_fd_leak(f);
}

/* ---- Bad parameters ---- */

static void expect_einval(struct fixture *f, const char *says)
{
	struct kvc_run_report rep;
	int err = kvc_run(&f->p, &rep, NULL, NULL);

	if (err != -EINVAL)
		fail_msg("kvc_run = %d, expected -EINVAL (%s)", err, says);
	if (!strstr(kvc_last_error(), says))
		fail_msg("message '%s' does not say '%s'", kvc_last_error(),
			 says);
}

static void test_einval(void **state)
{
	struct fixture *f = *state;

	full_workload(&f->p);
	f->p.swap = &f->sp;
	f->p.budget_bytes = 0;
	expect_einval(f, "budget");

	f->p.budget_bytes = FULL_BUDGET;
	f->p.preempt = (enum kvc_preempt)7;
	expect_einval(f, "preemption rule 7");
	/* Refused before anything was made. */
	assert_int_not_equal(access(f->path, F_OK), 0);
	expect_no_fd_leak(f);
}

static void test_preempt_names(void **state)
{
	static const char *const names[] = { "latest", "largest" };
	enum kvc_preempt rule;
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		rule = (enum kvc_preempt)99;
		assert_int_equal(kvc_preempt_parse(names[i], &rule), 0);
		assert_string_equal(kvc_preempt_name(rule), names[i]);
	}
	assert_int_equal(kvc_preempt_parse("latest", &rule), 0);
	assert_int_equal(rule, KVC_PREEMPT_LATEST);
	assert_int_equal(kvc_preempt_parse("largest", &rule), 0);
	assert_int_equal(rule, KVC_PREEMPT_LARGEST);

	rule = KVC_PREEMPT_LARGEST;
	assert_int_equal(kvc_preempt_parse("biggest", &rule), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "biggest"));
	/* Left as it was. */
	assert_int_equal(rule, KVC_PREEMPT_LARGEST);
	assert_int_equal(kvc_preempt_parse("", &rule), -EINVAL);
	assert_int_equal(kvc_preempt_parse("Latest", &rule), -EINVAL);
	assert_int_equal(kvc_preempt_parse(NULL, &rule), -EINVAL);
	assert_int_equal(kvc_preempt_parse("latest", NULL), -EINVAL);
	assert_string_equal(kvc_preempt_name((enum kvc_preempt)7), "?");
	(void)state;
}

/* ---- The cuda backend over the fake driver ---- */

/*
 * Blocks go out through the pinned staging buffer. The emulated kernels
 * sum in another order than the host's attention, so the device's digest
 * is compared with the device's unconstrained run; whether it also equals
 * the host's is not this test's business.
 */
static void run_on_fake(struct fixture *f,
			void (*workload)(struct kvc_run_params *),
			uint64_t budget, enum kvc_preempt rule)
{
	static const struct kvc_fake_config cfg = { .granularity = GRAN,
						    .devices = 1 };
	const struct kvc_cuda_driver *drv = kvc_fake_driver(&cfg);
	int err, fds;

	assert_non_null(drv);
	/* The fake's device memory is a file of its own, kept open. */
	fds = open_fds();
	err = kvc_backend_open_cuda_driver(drv, 0, &f->dev);
	if (err)
		fail_msg("kvc_backend_open_cuda_driver = %d: %s", err,
			 kvc_last_error());
	f->fds = open_fds();
	small_params(f);
	workload(&f->p);
	f->p.backend = f->dev;
	run_reference(f);
	assert_string_equal(f->ref.backend, "cuda-fake");
	run_swapped(f, budget, rule);
	assert_string_equal(f->rep.backend, "cuda-fake");
	check_swapped(f, "cuda-fake");
	kvc_backend_close(f->dev);
	f->dev = NULL;
	f->fds = fds;
	expect_no_fd_leak(f);
	FAKE_EXPECT_CLEAN(FAKE_KEEP_NONE);
}

/* The emulated kernels are slow: fewer and shorter sequences. */
static void short_workload(struct kvc_run_params *p)
{
	full_workload(p);
	p->seqs = 3;
	p->prompt_len = 48;
	p->gen_len = 112;
}

static void test_cuda_fake_full(void **state)
{
	run_on_fake(*state, short_workload, 4 * GRAN, KVC_PREEMPT_LATEST);
}

static void test_cuda_fake_kvcompress(void **state)
{
	run_on_fake(*state, compress_workload, COMPRESS_BUDGET,
		    KVC_PREEMPT_LARGEST);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_latest, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_full_largest, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_kvcompress_latest, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_kvcompress_largest, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_trace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rules_choose, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pread_engine, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_buffered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recompute, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_recompute_kvcompress,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_budget_below_prompt, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_budget_below_sequence,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_budget_below_chunk, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_einval, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preempt_names, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cuda_fake_full, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cuda_fake_kvcompress,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
