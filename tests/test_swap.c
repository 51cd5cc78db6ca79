/* Description: the swap tier: bit-exact round trips (f16, f32, head_dim 80, both engines, buffered and direct), attention after swap-in, flipped bytes refused, crash recovery and torn journals, cap, file-size limit, duplicate and unknown keys, a full pool, bad parameters, queue depths and I/O sizes, the cuda backend over the fake driver */
// SPDX-License-Identifier: MIT
/*
 * Tests of include/kvc/swap.h, written against the header. Sequences are
 * built with the public API on host caches: random K and V (seeded by the
 * key, so the same key always gives the same sequence), decode attention
 * that accumulates the L2 metric, and KV-Compress so that heads hold
 * different lengths. A snapshot of a sequence is its tokens, its per-head
 * lengths and, for every KV a head holds, its K and V bytes as stored and
 * its slot metadata (metric and position, from the runtime's internal
 * header); sequences that come back from the swap must match it byte for
 * byte. kvc_swap_check() and kvc_kv_check() run after every operation.
 *
 * The crash test forks a child that swaps sequences out one after the
 * other and reports each key on a pipe once kvc_swap_out() has returned;
 * the parent kills it at some point and recovers the files. What the test
 * asserts does not depend on when the kill lands.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/attention.h>
#include <kvc/evict.h>
#include <kvc/kv.h>
#include <kvc/kvc.h>
#include <kvc/swap.h>

#include "../runtime/internal.h"
#include "../swap/crc32c.h"
#include "backend.h"
#include "fake_check.h"
#include "fake_driver.h"
#include "swap_seq.h"

#define CAPACITY 2048
#define SWAP_CAP (256ull << 20)
#define DECODE_STEPS 4

static const struct swap_fx_cfg fx_cfg = {
	.name = "test_swap",
	.tmp_name = "kvc-test-swap",
	.capacity = CAPACITY,
	.swap_cap = SWAP_CAP,
};

static const struct kvc_model_shape shape_f32 = {
	.layers = 3,
	.q_heads = 4,
	.kv_heads = 2,
	.head_dim = 64,
	.block_size = 16,
	.dtype = KVC_DTYPE_F32,
};

/* ------------------------------------------------------------------ */
/* Checks and wrappers */

/* The entry of a sequence just swapped out describes it. */
static void expect_entry(const struct kvc_swap *sw, uint64_t key,
			 const struct swap_snap *sn)
{
	struct kvc_swap_stats st = swap_seq_stats(sw);
	struct kvc_swap_entry e = swap_seq_lookup(sw, key);

	EXPECT_U64(e.tokens, sn->tokens);
	EXPECT_U64(e.blocks, sn->blocks);
	assert_false(e.bad);
	assert_true(st.slot_bytes > 0);
	if (e.bytes % st.slot_bytes)
		fail_msg("entry %" PRIu64 " takes %" PRIu64
			 " bytes, not whole slots of %" PRIu64,
			 key, e.bytes, st.slot_bytes);
	if (e.bytes < e.blocks * st.slot_bytes)
		fail_msg("entry %" PRIu64 " takes %" PRIu64
			 " bytes for %" PRIu64 " blocks of %" PRIu64,
			 key, e.bytes, e.blocks, st.slot_bytes);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Every block of the entry @key (the swapped-out @seq, still live) lies
 * at a slot-aligned offset inside the file; a full block's bytes there
 * are its bytes in the pool, and its crc is the crc32c of its K and V
 * then of its slots' metadata. Offsets are appended to @offs.
 */
static void expect_located(struct swap_fx *fx, const struct kvc_seq *seq,
			   uint64_t key, uint64_t *offs, uint64_t *nr_offs)
{
	const struct kvc_model_shape *s = kvc_kv_shape(fx->kv);
	struct kvc_swap_stats st = swap_seq_stats(fx->sw);
	uint64_t bb = kvc_kv_block_bytes(s), off, dummy;
	uint32_t layer, head, b, nr, crc, bs = s->block_size;
	uint8_t *buf = malloc(bb);
	int fd = open(fx->path, O_RDONLY);

	assert_non_null(buf);
	assert_true(fd >= 0);
	for (layer = 0; layer < s->layers; layer++)
		for (head = 0; head < s->kv_heads; head++) {
			const uint32_t *table =
				kvc_seq_table(seq, layer, head, &nr);
			uint32_t len = kvc_seq_len(seq, layer, head);

			for (b = 0; b < nr; b++) {
				int err = kvc_swap_locate(fx->sw, key, layer,
							  head, b, &off, &crc);

				if (err)
					fail_msg("kvc_swap_locate(%" PRIu64
						 ", %u, %u, %u) = %d",
						 key, layer, head, b, err);
				if (off % st.slot_bytes ||
				    off + st.slot_bytes > st.file_bytes)
					fail_msg(
						"block (%u, %u, %u) at %" PRIu64
						": not a slot below %" PRIu64,
						layer, head, b, off,
						st.file_bytes);
				offs[(*nr_offs)++] = off;
				if ((b + 1) * bs > len)
					continue;
				assert_int_equal(pread(fd, buf, bb, (off_t)off),
						 (ssize_t)bb);
				if (memcmp(buf,
					   swap_seq_block_host(fx->kv,
							       table[b]),
					   bb))
					fail_msg(
						"block (%u, %u, %u): the file at %" PRIu64
						" does not hold its bytes",
						layer, head, b, off);
				if (crc !=
				    kvc_crc32c(
					    kvc_crc32c(0, buf, bb),
					    &fx->kv->meta[(uint64_t)table[b] *
							  bs],
					    bs * sizeof(struct kvc_slot_meta)))
					fail_msg(
						"block (%u, %u, %u): crc %08x is not that of K, V and metadata",
						layer, head, b, crc);
			}
			EXPECT_ERR(kvc_swap_locate(fx->sw, key, layer, head, nr,
						   &dummy, &crc),
				   -ENOENT);
		}
	close(fd);
	free(buf);
}

/* ------------------------------------------------------------------ */
/* Fixtures */

static int setup_with(void **state, const struct kvc_model_shape *shape,
		      uint32_t flags)
{
	return swap_fx_setup(state, &fx_cfg, shape, flags);
}

static int setup_f16(void **state)
{
	return setup_with(state, &swap_shape_f16, 0);
}

static int setup_f32(void **state)
{
	return setup_with(state, &shape_f32, 0);
}

static int setup_hd80(void **state)
{
	return setup_with(state, &swap_shape_hd80, 0);
}

static int setup_f16_pread(void **state)
{
	return setup_with(state, &swap_shape_f16, KVC_SWAP_NO_URING);
}

static int setup_f16_buffered(void **state)
{
	return setup_with(state, &swap_shape_f16, KVC_SWAP_NO_DIRECT);
}

static int setup_hd80_pread(void **state)
{
	return setup_with(state, &swap_shape_hd80,
			  KVC_SWAP_NO_URING | KVC_SWAP_NO_DIRECT);
}

/* ------------------------------------------------------------------ */
/* 1. Round trips */

#define NR_RT 6

static const struct {
	uint64_t key;
	uint32_t prefill;
	uint32_t steps;
	bool compress;
} rt_seqs[NR_RT] = {
	{ 101, 90, DECODE_STEPS, true }, { 7, 0, 1, false },
	{ 202, 41, DECODE_STEPS, true }, { 303, 150, DECODE_STEPS, true },
	{ 404, 15, 1, false },		 { 0xfedcba9876543210ull, 64, 2, true },
};

static void test_round_trip(void **state)
{
	static const int order[NR_RT] = { 3, 0, 5, 2, 4, 1 };
	struct swap_fx *fx = *state;
	struct kvc_seq *seq[NR_RT];
	struct swap_snap sn[NR_RT];
	struct kvc_swap_stats st;
	uint64_t keys[NR_RT + 1], offs[4096], nr_offs = 0, sum = 0, n;
	uint64_t file1;
	bool ragged = false;
	int i, round;

	st = SWAP_OPEN(fx, KVC_SWAP_FRESH);
	if (fx->flags & KVC_SWAP_NO_URING)
		assert_string_equal(st.engine, "pread");
	else if (strcmp(st.engine, "io_uring") && strcmp(st.engine, "pread"))
		fail_msg("engine \"%s\"", st.engine);
	if (fx->flags & KVC_SWAP_NO_DIRECT)
		assert_false(st.direct);
	if (st.slot_bytes < kvc_kv_block_bytes(&fx->shape))
		fail_msg("slots of %" PRIu64 " bytes for blocks of %" PRIu64,
			 st.slot_bytes, kvc_kv_block_bytes(&fx->shape));
	EXPECT_U64(st.cap_bytes, SWAP_CAP / st.slot_bytes * st.slot_bytes);
	EXPECT_U64(st.entries, 0);
	EXPECT_U64(st.used_bytes, 0);
	EXPECT_U64(st.recovered, 0);
	EXPECT_U64(st.torn_bytes, 0);
	EXPECT_U64(kvc_swap_keys(fx->sw, NULL, 0), 0);

	for (i = 0; i < NR_RT; i++) {
		uint32_t t;

		seq[i] = SWAP_BUILD(
			fx->kv, rt_seqs[i].compress ? fx->pol : NULL,
			rt_seqs[i].key, rt_seqs[i].prefill, rt_seqs[i].steps);
		swap_snap_take(fx->kv, seq[i], &sn[i], true);
		for (t = 1; t < sn[i].nr_tables; t++)
			ragged |= sn[i].len[t] != sn[i].len[0];
		SWAP_OUT(fx->kv, fx->sw, seq[i], rt_seqs[i].key);
		KV_CHECK(fx->kv);
		expect_entry(fx->sw, rt_seqs[i].key, &sn[i]);
		sum += swap_seq_lookup(fx->sw, rt_seqs[i].key).bytes;
		/* the sequence is left as it was */
		{
			struct swap_snap again;

			swap_snap_take(fx->kv, seq[i], &again, true);
			SNAP_EQUAL(&sn[i], &again);
			swap_snap_free(&again);
		}
		expect_located(fx, seq[i], rt_seqs[i].key, offs, &nr_offs);
	}
	if (!ragged)
		fail_msg(
			"test setup: compression left every head the same length");

	/* no two blocks share a slot */
	qsort(offs, nr_offs, sizeof(offs[0]), cmp_u64);
	for (n = 1; n < nr_offs; n++)
		if (offs[n] == offs[n - 1])
			fail_msg("two blocks at offset %" PRIu64, offs[n]);

	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.entries, NR_RT);
	EXPECT_U64(st.out_seqs, NR_RT);
	EXPECT_U64(st.used_bytes, sum);
	EXPECT_U64(st.out_bytes, sum);
	EXPECT_U64(st.in_seqs, 0);
	EXPECT_U64(st.in_bytes, 0);
	EXPECT_U64(st.checksum_failures, 0);
	EXPECT_U64(st.io_errors, 0);
	assert_true(st.file_bytes >= sum && st.file_bytes <= st.cap_bytes);
	EXPECT_U64(kvc_swap_keys(fx->sw, NULL, 0), NR_RT);
	memset(keys, 0, sizeof(keys));
	EXPECT_U64(kvc_swap_keys(fx->sw, keys, 2), NR_RT);
	EXPECT_U64(keys[0], rt_seqs[0].key);
	EXPECT_U64(keys[1], rt_seqs[1].key);
	EXPECT_U64(keys[2], 0);
	EXPECT_U64(kvc_swap_keys(fx->sw, keys, NR_RT + 1), NR_RT);
	for (i = 0; i < NR_RT; i++)
		EXPECT_U64(keys[i], rt_seqs[i].key);

	for (i = 0; i < NR_RT; i++)
		kvc_seq_destroy(seq[i]);
	EXPECT_U64(swap_seq_live_blocks(fx->kv), 0);
	KV_CHECK(fx->kv);

	for (round = 0; round < 2; round++) {
		for (i = 0; i < NR_RT; i++) {
			struct swap_snap got;
			int j = order[(i + round) % NR_RT];

			seq[j] = SWAP_IN(fx->kv, fx->sw, rt_seqs[j].key);
			swap_snap_take(fx->kv, seq[j], &got, true);
			SNAP_EQUAL(&sn[j], &got);
			swap_snap_free(&got);
		}
		st = swap_seq_stats(fx->sw);
		EXPECT_U64(st.entries, 0);
		EXPECT_U64(st.used_bytes, 0);
		EXPECT_U64(st.in_seqs, NR_RT * (round + 1));
		EXPECT_U64(st.out_seqs, NR_RT * (round + 1));
		EXPECT_U64(st.in_bytes, st.out_bytes);
		EXPECT_U64(kvc_swap_keys(fx->sw, NULL, 0), 0);
		if (round == 1)
			break;

		/* the same amount again reuses the space */
		file1 = st.file_bytes;
		for (i = NR_RT - 1; i >= 0; i--) {
			SWAP_OUT(fx->kv, fx->sw, seq[i], rt_seqs[i].key);
			kvc_seq_destroy(seq[i]);
			KV_CHECK(fx->kv);
		}
		st = swap_seq_stats(fx->sw);
		EXPECT_U64(st.file_bytes, file1);
		EXPECT_U64(st.used_bytes, sum);
		EXPECT_U64(st.out_bytes, 2 * sum);
	}
	for (i = 0; i < NR_RT; i++) {
		kvc_seq_destroy(seq[i]);
		swap_snap_free(&sn[i]);
	}
	KV_CHECK(fx->kv);
	SW_CHECK(fx->sw);
	swap_fx_close(fx);
}

/* ------------------------------------------------------------------ */
/* 2. Attention after swap-in */

static void test_attention(void **state)
{
	struct swap_fx *fx = *state;
	const struct kvc_model_shape *s = &fx->shape;
	uint64_t nq = (uint64_t)s->layers * s->q_heads * s->head_dim;
	float *out1 = malloc(3 * nq * sizeof(float));
	float *out2 = malloc(3 * nq * sizeof(float));
	static const uint64_t keys[2] = { 5, 6 };
	int i, step;

	assert_non_null(out1);
	assert_non_null(out2);
	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	for (i = 0; i < 2; i++) {
		struct kvc_seq *seq = SWAP_BUILD(fx->kv, fx->pol, keys[i],
						 70 + 30 * i, DECODE_STEPS);
		struct swap_snap before, after;
		uint64_t rng = 0x1234 + keys[i];

		SWAP_OUT(fx->kv, fx->sw, seq, keys[i]);
		/* the original goes on: three more tokens and decode steps */
		for (step = 0; step < 3; step++) {
			assert_int_equal(swap_seq_append(seq, s, 1, &rng), 0);
			assert_int_equal(
				swap_seq_decode(seq, s, &rng, out1 + step * nq),
				0);
		}
		KV_CHECK(fx->kv);
		swap_snap_take(fx->kv, seq, &before, true);
		kvc_seq_destroy(seq);

		/* the copy from the swap goes on alike */
		seq = SWAP_IN(fx->kv, fx->sw, keys[i]);
		rng = 0x1234 + keys[i];
		for (step = 0; step < 3; step++) {
			assert_int_equal(swap_seq_append(seq, s, 1, &rng), 0);
			assert_int_equal(
				swap_seq_decode(seq, s, &rng, out2 + step * nq),
				0);
		}
		KV_CHECK(fx->kv);
		for (step = 0; step < 3; step++)
			if (memcmp(out1 + step * nq, out2 + step * nq,
				   nq * sizeof(float)))
				fail_msg(
					"sequence %" PRIu64
					": decode step %d after swap-in differs",
					keys[i], step);
		swap_snap_take(fx->kv, seq, &after, true);
		SNAP_EQUAL(&before, &after);

		/* and it compresses the same: metrics carried over */
		assert_int_equal(kvc_policy_compress(fx->pol, seq, NULL), 0);
		KV_CHECK(fx->kv);
		swap_snap_free(&after);
		swap_snap_free(&before);
		kvc_seq_destroy(seq);
	}
	SW_CHECK(fx->sw);
	swap_fx_close(fx);
	free(out1);
	free(out2);
}

/* ------------------------------------------------------------------ */
/* 3. Flipped bytes */

static void expect_bad(struct swap_fx *fx, uint64_t key, uint64_t failures)
{
	struct kvc_seq *seq = NULL;
	uint64_t live = swap_seq_live_blocks(fx->kv);
	uint32_t nr_seqs = fx->kv->nr_seqs;
	struct kvc_swap_stats st;

	EXPECT_ERR(kvc_swap_in(fx->sw, key, &seq), -EBADMSG);
	assert_null(seq);
	EXPECT_U64(swap_seq_live_blocks(fx->kv), live);
	EXPECT_U64(fx->kv->nr_seqs, nr_seqs);
	assert_true(swap_seq_lookup(fx->sw, key).bad);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.checksum_failures, failures);
	EXPECT_U64(st.io_errors, 0);
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);
}

static void test_flipped_byte(void **state)
{
	struct swap_fx *fx = *state;
	const struct kvc_model_shape *s = &fx->shape;
	uint64_t row = (uint64_t)s->head_dim * kvc_dtype_bytes(s->dtype);
	static const uint64_t keys[4] = { 31, 32, 33, 34 };
	struct kvc_seq *seq;
	struct swap_snap sn[4], got;
	struct kvc_swap_stats st;
	uint64_t off;
	uint32_t crc;
	int i;

	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	for (i = 0; i < 3; i++) {
		seq = SWAP_BUILD(fx->kv, fx->pol, keys[i], 50 + 20 * i,
				 DECODE_STEPS);
		swap_snap_take(fx->kv, seq, &sn[i], true);
		SWAP_OUT(fx->kv, fx->sw, seq, keys[i]);
		kvc_seq_destroy(seq);
	}

	/* while open: a byte of the K of slot 0 of one block */
	assert_int_equal(kvc_swap_locate(fx->sw, keys[1], 1, 0, 0, &off, &crc),
			 0);
	swap_seq_flip_byte(fx->path, off + 5);
	expect_bad(fx, keys[1], 1);
	/* a bad entry is never handed out */
	seq = NULL;
	EXPECT_ERR(kvc_swap_in(fx->sw, keys[1], &seq), -EBADMSG);
	assert_null(seq);
	assert_true(swap_seq_lookup(fx->sw, keys[1]).bad);
	/* the others are fine */
	seq = SWAP_IN(fx->kv, fx->sw, keys[0]);
	swap_snap_take(fx->kv, seq, &got, true);
	SNAP_EQUAL(&sn[0], &got);
	swap_snap_free(&got);
	kvc_seq_destroy(seq);
	assert_int_equal(kvc_swap_drop(fx->sw, keys[1]), 0);
	EXPECT_ERR(
		kvc_swap_lookup(fx->sw, keys[1], &(struct kvc_swap_entry){ 0 }),
		-ENOENT);
	EXPECT_ERR(kvc_swap_drop(fx->sw, keys[1]), -ENOENT);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.entries, 1);
	EXPECT_U64(st.used_bytes, swap_seq_lookup(fx->sw, keys[2]).bytes);
	SW_CHECK(fx->sw);
	swap_fx_close(fx);

	/* closed: a byte of the V of slot 0 of the last block of a head */
	{
		uint32_t nr =
			(sn[2].len[sn[2].nr_tables - 1] + s->block_size - 1) /
			s->block_size;

		st = SWAP_OPEN(fx, 0);
		EXPECT_U64(st.recovered, 1);
		assert_int_equal(kvc_swap_locate(fx->sw, keys[2], s->layers - 1,
						 s->kv_heads - 1, nr - 1, &off,
						 &crc),
				 0);
		swap_fx_close(fx);
	}
	swap_seq_flip_byte(fx->path, off + s->block_size * row + 3);
	st = SWAP_OPEN(fx, 0);
	EXPECT_U64(st.recovered, 1);
	expect_bad(fx, keys[2], 1);
	/* a new entry beside the bad one */
	seq = SWAP_BUILD(fx->kv, fx->pol, keys[3], 60, DECODE_STEPS);
	swap_snap_take(fx->kv, seq, &sn[3], true);
	SWAP_OUT(fx->kv, fx->sw, seq, keys[3]);
	kvc_seq_destroy(seq);
	seq = SWAP_IN(fx->kv, fx->sw, keys[3]);
	swap_snap_take(fx->kv, seq, &got, true);
	SNAP_EQUAL(&sn[3], &got);
	swap_snap_free(&got);
	kvc_seq_destroy(seq);
	assert_int_equal(kvc_swap_drop(fx->sw, keys[2]), 0);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.entries, 0);
	EXPECT_U64(st.used_bytes, 0);
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);
	swap_fx_close(fx);
	for (i = 0; i < 4; i++)
		swap_snap_free(&sn[i]);
}

/* ------------------------------------------------------------------ */
/* 4. Crash safety */

#define CRASH_KEYS 24

static uint32_t crash_prefill(uint64_t key)
{
	return 24 + 40 * (uint32_t)key;
}

/* The child: its own cache; swaps out keys 1, 2, ... and reports each. */
static void crash_child(struct swap_fx *fx, int wfd)
{
	/* built as the parent's, so the keys it reports come back alike */
	struct swap_fx own = { .cfg = fx->cfg,
			       .shape = fx->shape,
			       .flags = fx->flags };
	struct kvc_swap_params p;
	struct kvc_swap *sw = NULL;
	uint64_t key;

	if (swap_fx_cache(&own))
		_exit(10);
	swap_fx_params(&own, fx->path, KVC_SWAP_FRESH, &p);
	if (kvc_swap_open(&p, own.kv, &sw))
		_exit(12);
	for (key = 1; key <= CRASH_KEYS; key++) {
		struct kvc_seq *seq;

		if (swap_seq_build(own.kv, own.pol, key, crash_prefill(key),
				   DECODE_STEPS, &seq))
			_exit(13);
		if (kvc_swap_out(sw, seq, key))
			_exit(14);
		kvc_seq_destroy(seq);
		if (write(wfd, &key, sizeof(key)) != sizeof(key))
			_exit(15);
	}
	for (;;)
		pause();
}

static uint64_t read_key(int fd)
{
	uint64_t key;
	ssize_t n;

	do
		n = read(fd, &key, sizeof(key));
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	assert_int_equal(n, sizeof(key));
	return key;
}

static void crash_round(struct swap_fx *fx, uint64_t kill_after)
{
	uint64_t keys[CRASH_KEYS + 1], reported = 0, key, nr, i;
	struct kvc_swap_stats st;
	int fds[2], status;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		crash_child(fx, fds[1]);
	}
	close(fds[1]);
	while (reported < kill_after) {
		key = read_key(fds[0]);
		if (!key)
			break;
		EXPECT_U64(key, reported + 1);
		reported = key;
	}
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status))
		fail_msg("the child ended with status %d before the kill",
			 WEXITSTATUS(status));
	/* what it reported before it died */
	while ((key = read_key(fds[0]))) {
		EXPECT_U64(key, reported + 1);
		reported = key;
	}
	close(fds[0]);
	if (reported < kill_after)
		fail_msg("the child reported %" PRIu64
			 " keys, expected %" PRIu64,
			 reported, kill_after);

	st = SWAP_OPEN(fx, 0);
	nr = kvc_swap_keys(fx->sw, keys, CRASH_KEYS + 1);
	EXPECT_U64(st.recovered, nr);
	EXPECT_U64(st.entries, nr);
	if (nr < reported || nr > reported + 1)
		fail_msg("%" PRIu64 " keys recovered, %" PRIu64 " reported", nr,
			 reported);
	for (i = 0; i < nr; i++) {
		struct kvc_seq *seq;
		struct swap_snap want, got;

		EXPECT_U64(keys[i], i + 1);
		seq = SWAP_BUILD(fx->kv, fx->pol, keys[i],
				 crash_prefill(keys[i]), DECODE_STEPS);
		swap_snap_take(fx->kv, seq, &want, true);
		kvc_seq_destroy(seq);
		seq = SWAP_IN(fx->kv, fx->sw, keys[i]);
		swap_snap_take(fx->kv, seq, &got, true);
		SNAP_EQUAL(&want, &got);
		swap_snap_free(&want);
		swap_snap_free(&got);
		kvc_seq_destroy(seq);
	}
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.entries, 0);
	EXPECT_U64(st.used_bytes, 0);
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);
	swap_fx_close(fx);
}

static void test_crash(void **state)
{
	struct swap_fx *fx = *state;

	crash_round(fx, 1);
	crash_round(fx, 3);
	crash_round(fx, 5);
}

static void test_torn_journal(void **state)
{
	static const uint8_t garbage[37] = { 0x4b, 0x56, 0x4a, 0x52, 1, 2, 3 };
	struct swap_fx *fx = *state;
	static const uint64_t keys[4] = { 41, 42, 43, 44 };
	struct kvc_swap_stats st;
	struct swap_snap sn[4], got;
	struct kvc_seq *seq;
	uint64_t before, after, sum = 0;
	int fd, i;

	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	for (i = 0; i < 3; i++) {
		seq = SWAP_BUILD(fx->kv, fx->pol, keys[i], 40 + 25 * i,
				 DECODE_STEPS);
		swap_snap_take(fx->kv, seq, &sn[i], true);
		SWAP_OUT(fx->kv, fx->sw, seq, keys[i]);
		sum += swap_seq_lookup(fx->sw, keys[i]).bytes;
		kvc_seq_destroy(seq);
	}
	swap_fx_close(fx);

	/* garbage after the last whole record */
	fd = open(fx->idx, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, garbage, sizeof(garbage)), sizeof(garbage));
	close(fd);
	st = SWAP_OPEN(fx, 0);
	EXPECT_U64(st.recovered, 3);
	EXPECT_U64(st.entries, 3);
	EXPECT_U64(st.torn_bytes, sizeof(garbage));
	EXPECT_U64(st.used_bytes, sum);
	swap_fx_close(fx);
	st = SWAP_OPEN(fx, 0);
	EXPECT_U64(st.recovered, 3);
	EXPECT_U64(st.torn_bytes, 0);

	/* a record cut in half */
	seq = SWAP_BUILD(fx->kv, fx->pol, keys[3], 77, DECODE_STEPS);
	swap_snap_take(fx->kv, seq, &sn[3], true);
	before = swap_seq_file_size(fx->idx);
	SWAP_OUT(fx->kv, fx->sw, seq, keys[3]);
	after = swap_seq_file_size(fx->idx);
	assert_true(after > before);
	swap_fx_close(fx);
	assert_int_equal(
		truncate(fx->idx, (off_t)(before + (after - before) / 2)), 0);
	st = SWAP_OPEN(fx, 0);
	EXPECT_U64(st.recovered, 3);
	EXPECT_U64(st.entries, 3);
	EXPECT_U64(st.torn_bytes, (after - before) / 2);
	EXPECT_U64(st.used_bytes, sum);
	EXPECT_ERR(
		kvc_swap_lookup(fx->sw, keys[3], &(struct kvc_swap_entry){ 0 }),
		-ENOENT);
	/* its space is free again, and the key can go out again */
	SWAP_OUT(fx->kv, fx->sw, seq, keys[3]);
	kvc_seq_destroy(seq);
	for (i = 3; i >= 0; i--) {
		seq = SWAP_IN(fx->kv, fx->sw, keys[i]);
		swap_snap_take(fx->kv, seq, &got, true);
		SNAP_EQUAL(&sn[i], &got);
		swap_snap_free(&got);
		swap_snap_free(&sn[i]);
		kvc_seq_destroy(seq);
	}
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);
	swap_fx_close(fx);
}

/* ------------------------------------------------------------------ */
/* 5. Errors */

static void test_open_bad_params(void **state)
{
	struct swap_fx *fx = *state;
	struct kvc_swap_params p, d;
	struct kvc_swap *sw = NULL;
	char bad_dir[PATH_MAX + 32];

	kvc_swap_params_init(&d);
	assert_null(d.path);
	EXPECT_U64(d.cap_bytes, 1ull << 30);
	EXPECT_U64(d.queue_depth, 32);
	EXPECT_U64(d.io_bytes, 1u << 20);
	EXPECT_U64(d.flags, 0);

#define BAD_OPEN(field, value)                                       \
	do {                                                         \
		swap_fx_params(fx, fx->path, KVC_SWAP_FRESH, &p);    \
		p.field = value;                                     \
		EXPECT_ERR(kvc_swap_open(&p, fx->kv, &sw), -EINVAL); \
		assert_null(sw);                                     \
		assert_true(kvc_last_error()[0] != '\0');            \
	} while (0)

	BAD_OPEN(path, NULL);
	BAD_OPEN(cap_bytes, 0);
	BAD_OPEN(cap_bytes, 1);
	BAD_OPEN(queue_depth, 0);
	BAD_OPEN(queue_depth, 4097);
	BAD_OPEN(io_bytes, 0);
	BAD_OPEN(io_bytes, 1000);
	BAD_OPEN(io_bytes, 4096 + 512);
	BAD_OPEN(io_bytes, (64u << 20) + 4096);
#undef BAD_OPEN
	swap_fx_params(fx, fx->path, KVC_SWAP_FRESH, &p);
	EXPECT_ERR(kvc_swap_open(&p, NULL, &sw), -EINVAL);
	assert_null(sw);

	/* the limits themselves are fine */
	p.queue_depth = 4096;
	p.io_bytes = 64u << 20;
	assert_int_equal(kvc_swap_open(&p, fx->kv, &sw), 0);
	kvc_swap_close(sw);
	sw = NULL;
	p.queue_depth = 1;
	p.io_bytes = 4096;
	assert_int_equal(kvc_swap_open(&p, fx->kv, &sw), 0);
	kvc_swap_close(sw);
	sw = NULL;
	kvc_swap_close(NULL);

	/* a file that cannot be created */
	snprintf(bad_dir, sizeof(bad_dir), "%s/missing/swap", fx->dir);
	p.path = bad_dir;
	EXPECT_ERR(kvc_swap_open(&p, fx->kv, &sw), -ENOENT);
	assert_null(sw);
	assert_non_null(strstr(kvc_last_error(), "missing"));
}

static void test_cap(void **state)
{
	struct swap_fx *fx = *state;
	struct kvc_swap_params p;
	struct kvc_swap_stats st;
	struct kvc_seq *a, *b, *c;
	struct swap_snap sa, sb, got;
	uint64_t ba, bb, cap, live;

	/* learn what the two take */
	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	a = SWAP_BUILD(fx->kv, fx->pol, 51, 30, DECODE_STEPS);
	b = SWAP_BUILD(fx->kv, fx->pol, 52, 140, DECODE_STEPS);
	SWAP_OUT(fx->kv, fx->sw, a, 51);
	SWAP_OUT(fx->kv, fx->sw, b, 52);
	ba = swap_seq_lookup(fx->sw, 51).bytes;
	bb = swap_seq_lookup(fx->sw, 52).bytes;
	st = swap_seq_stats(fx->sw);
	swap_fx_close(fx);
	cap = ba + bb - st.slot_bytes;
	assert_true(bb > st.slot_bytes);

	/* a cap that holds a and not b beside it */
	swap_fx_params(fx, fx->path, KVC_SWAP_FRESH, &p);
	p.cap_bytes = cap + st.slot_bytes - 1; /* rounded down */
	assert_int_equal(kvc_swap_open(&p, fx->kv, &fx->sw), 0);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.cap_bytes, cap);
	EXPECT_U64(st.entries, 0);
	SWAP_OUT(fx->kv, fx->sw, a, 51);
	swap_snap_take(fx->kv, b, &sb, true);
	live = swap_seq_live_blocks(fx->kv);
	EXPECT_ERR(kvc_swap_out(fx->sw, b, 52), -ENOSPC);
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.cap_refusals, 1);
	EXPECT_U64(st.entries, 1);
	EXPECT_U64(st.out_seqs, 1);
	EXPECT_U64(st.used_bytes, ba);
	assert_true(st.file_bytes <= cap);
	EXPECT_U64(kvc_swap_keys(fx->sw, NULL, 0), 1);
	EXPECT_ERR(kvc_swap_lookup(fx->sw, 52, &(struct kvc_swap_entry){ 0 }),
		   -ENOENT);
	EXPECT_U64(swap_seq_live_blocks(fx->kv), live);
	/* b is untouched */
	swap_snap_take(fx->kv, b, &got, true);
	SNAP_EQUAL(&sb, &got);
	swap_snap_free(&got);
	swap_snap_take(fx->kv, a, &sa, true);
	kvc_seq_destroy(a);

	/* with a back in, b fits */
	a = SWAP_IN(fx->kv, fx->sw, 51);
	swap_snap_take(fx->kv, a, &got, true);
	SNAP_EQUAL(&sa, &got);
	swap_snap_free(&got);
	SWAP_OUT(fx->kv, fx->sw, b, 52);
	/* now a does not fit beside b */
	EXPECT_ERR(kvc_swap_out(fx->sw, a, 51), -ENOSPC);
	EXPECT_U64(swap_seq_stats(fx->sw).cap_refusals, 2);
	EXPECT_U64(swap_seq_stats(fx->sw).entries, 1);
	SW_CHECK(fx->sw);
	c = SWAP_IN(fx->kv, fx->sw, 52);
	swap_snap_take(fx->kv, c, &got, true);
	SNAP_EQUAL(&sb, &got);
	swap_snap_free(&got);
	swap_snap_free(&sb);
	swap_snap_free(&sa);
	/* the refused sequences go on */
	{
		uint64_t rng = 99;

		assert_int_equal(swap_seq_append(a, &fx->shape, 3, &rng), 0);
		assert_int_equal(swap_seq_decode(a, &fx->shape, &rng, NULL), 0);
		assert_int_equal(swap_seq_append(b, &fx->shape, 3, &rng), 0);
		assert_int_equal(swap_seq_decode(b, &fx->shape, &rng, NULL), 0);
	}
	kvc_seq_destroy(b);
	kvc_seq_destroy(a);
	kvc_seq_destroy(c);
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);
	swap_fx_close(fx);
}

static void test_file_size_limit(void **state)
{
	struct swap_fx *fx = *state;
	struct kvc_swap_stats st;
	struct kvc_seq *a, *b;
	struct swap_snap sa, sb, got;
	struct rlimit old, rl;
	void (*old_handler)(int);
	int err;

	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	a = SWAP_BUILD(fx->kv, fx->pol, 61, 40, DECODE_STEPS);
	b = SWAP_BUILD(fx->kv, fx->pol, 62, 120, DECODE_STEPS);
	swap_snap_take(fx->kv, a, &sa, true);
	swap_snap_take(fx->kv, b, &sb, true);
	SWAP_OUT(fx->kv, fx->sw, a, 61);
	st = swap_seq_stats(fx->sw);
	assert_true(st.file_bytes > 0);

	/* b must grow the file past its current end */
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	rl = old;
	rl.rlim_cur = st.file_bytes;
	if (old.rlim_max != RLIM_INFINITY && old.rlim_max < rl.rlim_cur)
		skip();
	old_handler = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
	err = kvc_swap_out(fx->sw, b, 62);
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, old_handler);
	if (err != -EFBIG && err != -ENOSPC)
		fail_msg(
			"kvc_swap_out() past the file-size limit = %d (%s), expected -EFBIG or -ENOSPC",
			err, kvc_last_error());
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.entries, 1);
	EXPECT_U64(st.out_seqs, 1);
	EXPECT_U64(st.used_bytes, swap_seq_lookup(fx->sw, 61).bytes);
	EXPECT_ERR(kvc_swap_lookup(fx->sw, 62, &(struct kvc_swap_entry){ 0 }),
		   -ENOENT);
	swap_snap_take(fx->kv, b, &got, true);
	SNAP_EQUAL(&sb, &got);
	swap_snap_free(&got);

	/* the limit lifted, the same call works */
	SWAP_OUT(fx->kv, fx->sw, b, 62);
	kvc_seq_destroy(a);
	kvc_seq_destroy(b);
	swap_fx_close(fx);
	/* and both survive a reopen */
	st = SWAP_OPEN(fx, 0);
	EXPECT_U64(st.recovered, 2);
	b = SWAP_IN(fx->kv, fx->sw, 62);
	a = SWAP_IN(fx->kv, fx->sw, 61);
	swap_snap_take(fx->kv, a, &got, true);
	SNAP_EQUAL(&sa, &got);
	swap_snap_free(&got);
	swap_snap_take(fx->kv, b, &got, true);
	SNAP_EQUAL(&sb, &got);
	swap_snap_free(&got);
	swap_snap_free(&sa);
	swap_snap_free(&sb);
	kvc_seq_destroy(a);
	kvc_seq_destroy(b);
	SW_CHECK(fx->sw);
	swap_fx_close(fx);
}

static void test_keys_and_args(void **state)
{
	struct swap_fx *fx = *state;
	struct kvc_swap_entry e;
	struct kvc_kv_params kp;
	struct kvc_kv *other = NULL;
	struct kvc_seq *a, *b, *foreign, *seq;
	struct kvc_swap_stats st;
	uint64_t off = 0;
	uint32_t crc = 0;

	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	a = SWAP_BUILD(fx->kv, fx->pol, 71, 50, DECODE_STEPS);
	b = SWAP_BUILD(fx->kv, fx->pol, 72, 60, DECODE_STEPS);
	SWAP_OUT(fx->kv, fx->sw, a, 71);
	EXPECT_ERR(kvc_swap_out(fx->sw, a, 71), -EEXIST);
	EXPECT_ERR(kvc_swap_out(fx->sw, b, 71), -EEXIST);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.entries, 1);
	EXPECT_U64(st.out_seqs, 1);
	EXPECT_U64(st.used_bytes, swap_seq_lookup(fx->sw, 71).bytes);
	SW_CHECK(fx->sw);

	/* unknown keys */
	seq = NULL;
	EXPECT_ERR(kvc_swap_in(fx->sw, 999, &seq), -ENOENT);
	assert_null(seq);
	EXPECT_ERR(kvc_swap_drop(fx->sw, 999), -ENOENT);
	EXPECT_ERR(kvc_swap_lookup(fx->sw, 999, &e), -ENOENT);
	EXPECT_ERR(kvc_swap_locate(fx->sw, 999, 0, 0, 0, &off, &crc), -ENOENT);

	/* bad arguments */
	EXPECT_ERR(kvc_swap_out(fx->sw, NULL, 73), -EINVAL);
	EXPECT_ERR(kvc_swap_in(fx->sw, 71, NULL), -EINVAL);
	memset(&kp, 0, sizeof(kp));
	kp.shape = fx->shape;
	kp.capacity_blocks = 256;
	kp.backend = fx->be;
	kp.flags = KVC_POOL_NO_STATS_PAGE;
	assert_int_equal(kvc_kv_create(&kp, &other), 0);
	foreign = SWAP_BUILD(other, NULL, 74, 20, 1);
	EXPECT_ERR(kvc_swap_out(fx->sw, foreign, 74), -EINVAL);
	EXPECT_ERR(kvc_swap_lookup(fx->sw, 74, &e), -ENOENT);
	kvc_seq_destroy(foreign);
	kvc_kv_destroy(other);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.entries, 1);
	EXPECT_U64(st.out_seqs, 1);
	SW_CHECK(fx->sw);

	/* drop frees the space; the key can be used again */
	assert_int_equal(kvc_swap_drop(fx->sw, 71), 0);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.entries, 0);
	EXPECT_U64(st.used_bytes, 0);
	SWAP_OUT(fx->kv, fx->sw, b, 71);
	SWAP_OUT(fx->kv, fx->sw, a, 72);
	swap_fx_close(fx);
	/* a dropped entry stays dropped after a reopen */
	st = SWAP_OPEN(fx, 0);
	EXPECT_U64(st.recovered, 2);
	EXPECT_U64(swap_seq_lookup(fx->sw, 71).tokens, kvc_seq_tokens(b));
	EXPECT_U64(swap_seq_lookup(fx->sw, 72).tokens, kvc_seq_tokens(a));
	assert_int_equal(kvc_swap_drop(fx->sw, 72), 0);
	swap_fx_close(fx);
	st = SWAP_OPEN(fx, 0);
	EXPECT_U64(st.recovered, 1);
	EXPECT_ERR(kvc_swap_lookup(fx->sw, 72, &e), -ENOENT);
	{
		struct swap_snap want, got;

		swap_snap_take(fx->kv, b, &want, true);
		seq = SWAP_IN(fx->kv, fx->sw, 71);
		swap_snap_take(fx->kv, seq, &got, true);
		SNAP_EQUAL(&want, &got);
		swap_snap_free(&want);
		swap_snap_free(&got);
		kvc_seq_destroy(seq);
	}
	/* an empty sequence goes out and comes back empty */
	{
		struct kvc_seq *empty = NULL;
		uint32_t layer, head;

		assert_int_equal(kvc_seq_create(fx->kv, &empty), 0);
		SWAP_OUT(fx->kv, fx->sw, empty, 76);
		EXPECT_U64(swap_seq_lookup(fx->sw, 76).tokens, 0);
		EXPECT_U64(swap_seq_lookup(fx->sw, 76).blocks, 0);
		EXPECT_ERR(kvc_swap_locate(fx->sw, 76, 0, 0, 0, &off, &crc),
			   -ENOENT);
		kvc_seq_destroy(empty);
		empty = SWAP_IN(fx->kv, fx->sw, 76);
		EXPECT_U64(kvc_seq_tokens(empty), 0);
		for (layer = 0; layer < fx->shape.layers; layer++)
			for (head = 0; head < fx->shape.kv_heads; head++)
				EXPECT_U64(kvc_seq_len(empty, layer, head), 0);
		kvc_seq_destroy(empty);
	}
	kvc_seq_destroy(a);
	kvc_seq_destroy(b);
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);
	swap_fx_close(fx);
}

static void test_pool_full(void **state)
{
	struct swap_fx *fx = *state;
	struct kvc_kv_params kp;
	struct kvc_swap_params p;
	struct kvc_pool_stats ps;
	struct kvc_kv *small = NULL;
	struct kvc_swap *sw = NULL;
	struct kvc_seq *seq, *got_seq = NULL;
	struct swap_snap want, got;
	char path[PATH_MAX + 16];
	uint64_t live;

	memset(&kp, 0, sizeof(kp));
	kp.shape = fx->shape;
	kp.capacity_blocks = 40;
	kp.backend = fx->be;
	kp.flags = KVC_POOL_NO_STATS_PAGE;
	assert_int_equal(kvc_kv_create(&kp, &small), 0);
	snprintf(path, sizeof(path), "%s/small", fx->dir);
	swap_fx_params(fx, path, KVC_SWAP_FRESH, &p);
	assert_int_equal(kvc_swap_open(&p, small, &sw), 0);

	seq = SWAP_BUILD(small, NULL, 81, 100, DECODE_STEPS);
	live = swap_seq_live_blocks(small);
	kvc_pool_get_stats(kvc_kv_pool(small), &ps, NULL);
	if (ps.blocks_total >= 2 * live)
		fail_msg("test setup: %" PRIu64
			 " blocks hold two sequences of %" PRIu64,
			 ps.blocks_total, live);
	swap_snap_take(small, seq, &want, true);
	SWAP_OUT(small, sw, seq, 81);
	EXPECT_ERR(kvc_swap_in(sw, 81, &got_seq), -ENOMEM);
	assert_null(got_seq);
	EXPECT_U64(swap_seq_live_blocks(small), live);
	assert_false(swap_seq_lookup(sw, 81).bad);
	EXPECT_U64(swap_seq_stats(sw).entries, 1);
	EXPECT_U64(swap_seq_stats(sw).in_seqs, 0);
	SW_CHECK(sw);
	KV_CHECK(small);

	kvc_seq_destroy(seq);
	seq = SWAP_IN(small, sw, 81);
	swap_snap_take(small, seq, &got, true);
	SNAP_EQUAL(&want, &got);
	swap_snap_free(&want);
	swap_snap_free(&got);
	kvc_seq_destroy(seq);
	kvc_swap_close(sw);
	kvc_kv_destroy(small);
}

static void test_reopen(void **state)
{
	struct swap_fx *fx = *state;
	static const struct {
		uint32_t layers, head_dim, block_size;
		enum kvc_dtype dtype;
	} others[3] = {
		{ 3, 0, 0, KVC_DTYPE_F16 }, /* same block bytes */
		{ 0, 0, 0, KVC_DTYPE_F32 },
		{ 0, 128, 8, KVC_DTYPE_F16 }, /* same block bytes */
	};
	struct kvc_swap_params p;
	struct kvc_swap_stats st;
	struct kvc_kv_params kp;
	struct kvc_swap *sw = NULL;
	struct kvc_seq *seq;
	struct swap_snap want, got;
	int i;

	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	seq = SWAP_BUILD(fx->kv, fx->pol, 91, 60, DECODE_STEPS);
	swap_snap_take(fx->kv, seq, &want, true);
	SWAP_OUT(fx->kv, fx->sw, seq, 91);
	kvc_seq_destroy(seq);
	swap_fx_close(fx);

	for (i = 0; i < 3; i++) {
		struct kvc_kv *other = NULL;

		memset(&kp, 0, sizeof(kp));
		kp.shape = fx->shape;
		if (others[i].layers)
			kp.shape.layers = others[i].layers;
		if (others[i].head_dim)
			kp.shape.head_dim = others[i].head_dim;
		if (others[i].block_size)
			kp.shape.block_size = others[i].block_size;
		kp.shape.dtype = others[i].dtype;
		kp.capacity_blocks = 256;
		kp.backend = fx->be;
		kp.flags = KVC_POOL_NO_STATS_PAGE;
		assert_int_equal(kvc_kv_create(&kp, &other), 0);
		swap_fx_params(fx, fx->path, 0, &p);
		EXPECT_ERR(kvc_swap_open(&p, other, &sw), -EINVAL);
		assert_null(sw);
		assert_true(kvc_last_error()[0] != '\0');
		kvc_kv_destroy(other);
	}

	/* refused, the files are as they were */
	st = SWAP_OPEN(fx, 0);
	EXPECT_U64(st.recovered, 1);
	EXPECT_U64(swap_seq_lookup(fx->sw, 91).tokens, want.tokens);
	swap_fx_close(fx);

	/* KVC_SWAP_FRESH discards, on another shape too */
	{
		struct kvc_kv *other = NULL;

		memset(&kp, 0, sizeof(kp));
		kp.shape = fx->shape;
		kp.shape.dtype = fx->shape.dtype == KVC_DTYPE_F32 ?
					 KVC_DTYPE_F16 :
					 KVC_DTYPE_F32;
		kp.capacity_blocks = 256;
		kp.backend = fx->be;
		kp.flags = KVC_POOL_NO_STATS_PAGE;
		assert_int_equal(kvc_kv_create(&kp, &other), 0);
		swap_fx_params(fx, fx->path, 0, &p);
		p.flags |= KVC_SWAP_FRESH;
		assert_int_equal(kvc_swap_open(&p, other, &sw), 0);
		st = swap_seq_stats(sw);
		EXPECT_U64(st.entries, 0);
		EXPECT_U64(st.recovered, 0);
		EXPECT_U64(st.used_bytes, 0);
		SW_CHECK(sw);
		kvc_swap_close(sw);
		sw = NULL;
		kvc_kv_destroy(other);
	}
	/* now the files belong to that shape */
	swap_fx_params(fx, fx->path, 0, &p);
	EXPECT_ERR(kvc_swap_open(&p, fx->kv, &sw), -EINVAL);
	assert_null(sw);

	/* on the cache's own shape */
	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	seq = SWAP_BUILD(fx->kv, fx->pol, 91, 60, DECODE_STEPS);
	SWAP_OUT(fx->kv, fx->sw, seq, 91);
	kvc_seq_destroy(seq);
	swap_fx_close(fx);
	st = SWAP_OPEN(fx, KVC_SWAP_FRESH);
	EXPECT_U64(st.entries, 0);
	EXPECT_U64(st.recovered, 0);
	EXPECT_U64(st.used_bytes, 0);
	EXPECT_U64(kvc_swap_keys(fx->sw, NULL, 0), 0);
	EXPECT_ERR(kvc_swap_lookup(fx->sw, 91, &(struct kvc_swap_entry){ 0 }),
		   -ENOENT);
	/* and the key is free for a new sequence */
	seq = SWAP_BUILD(fx->kv, fx->pol, 91, 60, DECODE_STEPS);
	SWAP_OUT(fx->kv, fx->sw, seq, 91);
	kvc_seq_destroy(seq);
	seq = SWAP_IN(fx->kv, fx->sw, 91);
	swap_snap_take(fx->kv, seq, &got, true);
	SNAP_EQUAL(&want, &got);
	swap_snap_free(&got);
	swap_snap_free(&want);
	kvc_seq_destroy(seq);
	SW_CHECK(fx->sw);
	swap_fx_close(fx);
}

/* A journal that is not one is refused or read as empty, never trusted. */
static void test_not_a_journal(void **state)
{
	struct swap_fx *fx = *state;
	struct kvc_swap_params p;
	struct kvc_swap *sw = NULL;
	uint8_t junk[300];
	uint64_t rng = 5;
	size_t i;
	int fd, err;

	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)rng_next(&rng);
	fd = open(fx->idx, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	close(fd);
	swap_fx_params(fx, fx->path, 0, &p);
	err = kvc_swap_open(&p, fx->kv, &sw);
	if (err == 0) {
		struct kvc_swap_stats st = swap_seq_stats(sw);

		EXPECT_U64(st.entries, 0);
		EXPECT_U64(st.torn_bytes, sizeof(junk));
		SW_CHECK(sw);
		kvc_swap_close(sw);
	} else if (err != -EINVAL) {
		fail_msg("kvc_swap_open() on a junk journal = %d: %s", err,
			 kvc_last_error());
	}
}

/* ------------------------------------------------------------------ */
/* 6. Queue depths and I/O sizes */

/* The (offset, crc) of every block of entry @key, in table and block order. */
static void locate_all(struct swap_fx *fx, const struct kvc_seq *seq,
		       uint64_t key, uint64_t *offs, uint32_t *crcs,
		       uint64_t *nr)
{
	uint32_t layer, head, b, n;
	int err;

	for (layer = 0; layer < fx->shape.layers; layer++)
		for (head = 0; head < fx->shape.kv_heads; head++) {
			kvc_seq_table(seq, layer, head, &n);
			for (b = 0; b < n; b++, (*nr)++) {
				err = kvc_swap_locate(fx->sw, key, layer, head,
						      b, &offs[*nr],
						      &crcs[*nr]);
				if (err)
					fail_msg("kvc_swap_locate(%" PRIu64
						 ", %u, %u, %u) = %d",
						 key, layer, head, b, err);
			}
		}
}

static uint8_t *read_file(const char *path, size_t *len)
{
	uint64_t size = swap_seq_file_size(path);
	uint8_t *buf = malloc(size ? size : 1);
	int fd = open(path, O_RDONLY);

	assert_non_null(buf);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, size, 0), (ssize_t)size);
	close(fd);
	*len = size;
	return buf;
}

#define NR_QD 3

static void test_queue_depths(void **state)
{
	static const uint32_t depths[] = { 1, 4, 64 };
	static const uint32_t sizes[] = { 4096, 64u << 10, 1u << 20 };
	static const uint64_t keys[NR_QD] = { 111, 112, 113 };
	struct swap_fx *fx = *state;
	struct kvc_seq *seq[NR_QD], *in;
	struct swap_snap sn[NR_QD], got;
	uint64_t *ref = NULL, *offs, nr_ref = 0, nr;
	uint32_t *ref_crc = NULL, *crcs;
	uint8_t *ref_file = NULL, *file;
	size_t ref_len = 0, file_len;
	struct kvc_swap_params p;
	int d, z, i, run;

	seq[0] = SWAP_BUILD(fx->kv, fx->pol, keys[0], 180, DECODE_STEPS);
	seq[1] = SWAP_BUILD(fx->kv, NULL, keys[1], 70, DECODE_STEPS);
	seq[2] = SWAP_BUILD(fx->kv, fx->pol, keys[2], 100, DECODE_STEPS);
	for (i = 0; i < NR_QD; i++)
		swap_snap_take(fx->kv, seq[i], &sn[i], true);
	offs = calloc(4096, sizeof(*offs));
	crcs = calloc(4096, sizeof(*crcs));
	assert_non_null(offs);
	assert_non_null(crcs);

	for (run = 0; run < 11; run++) {
		uint32_t flags = KVC_SWAP_FRESH;

		d = run % 3;
		z = (run / 3) % 3;
		if (run == 9) {
			d = 1, z = 1;
			flags |= KVC_SWAP_NO_URING;
		} else if (run == 10) {
			d = 2, z = 0;
			flags |= KVC_SWAP_NO_DIRECT;
		}
		swap_fx_params(fx, fx->path, flags, &p);
		p.queue_depth = depths[d];
		p.io_bytes = sizes[z];
		assert_int_equal(kvc_swap_open(&p, fx->kv, &fx->sw), 0);
		for (i = 0; i < NR_QD; i++)
			SWAP_OUT(fx->kv, fx->sw, seq[i], keys[i]);
		nr = 0;
		for (i = 0; i < NR_QD; i++)
			expect_located(fx, seq[i], keys[i], offs, &nr);
		nr = 0;
		for (i = 0; i < NR_QD; i++)
			locate_all(fx, seq[i], keys[i], offs, crcs, &nr);
		file = read_file(fx->path, &file_len);
		if (!ref) {
			ref = malloc(nr * sizeof(*ref));
			ref_crc = malloc(nr * sizeof(*ref_crc));
			assert_non_null(ref);
			assert_non_null(ref_crc);
			memcpy(ref, offs, nr * sizeof(*ref));
			memcpy(ref_crc, crcs, nr * sizeof(*ref_crc));
			nr_ref = nr;
			ref_file = file;
			ref_len = file_len;
			file = NULL;
		}
		EXPECT_U64(nr, nr_ref);
		for (i = 0; i < (int)nr; i++)
			if (crcs[i] != ref_crc[i] || offs[i] != ref[i])
				fail_msg(
					"queue depth %u, I/Os of %u: block %d at %" PRIu64
					" crc %08x, expected %" PRIu64
					" crc %08x",
					depths[d], sizes[z], i, offs[i],
					crcs[i], ref[i], ref_crc[i]);
		if (file &&
		    (file_len != ref_len || memcmp(file, ref_file, ref_len)))
			fail_msg(
				"queue depth %u, I/Os of %u: the data file differs",
				depths[d], sizes[z]);
		free(file);
		for (i = NR_QD - 1; i >= 0; i--) {
			in = SWAP_IN(fx->kv, fx->sw, keys[i]);
			swap_snap_take(fx->kv, in, &got, true);
			SNAP_EQUAL(&sn[i], &got);
			swap_snap_free(&got);
			kvc_seq_destroy(in);
		}
		SW_CHECK(fx->sw);
		KV_CHECK(fx->kv);
		swap_fx_close(fx);
	}
	for (i = 0; i < NR_QD; i++) {
		kvc_seq_destroy(seq[i]);
		swap_snap_free(&sn[i]);
	}
	free(ref);
	free(ref_crc);
	free(ref_file);
	free(offs);
	free(crcs);
}

/* ------------------------------------------------------------------ */
/* The cuda backend over the fake driver */

static void test_cuda_fake(void **state)
{
	static const struct kvc_fake_config cfg = { .granularity = SWAP_FX_GRAN,
						    .devices = 1 };
	struct swap_fx *fx = *state;
	const struct kvc_model_shape *s = &fx->shape;
	const struct kvc_cuda_driver *drv = kvc_fake_driver(&cfg);
	uint64_t nq = (uint64_t)s->layers * s->q_heads * s->head_dim;
	float *out1 = malloc(nq * sizeof(float));
	float *out2 = malloc(nq * sizeof(float));
	struct kvc_backend *be = NULL;
	struct kvc_kv_params kp;
	struct kvc_swap_params p;
	struct kvc_swap *sw = NULL;
	struct kvc_kv *kv = NULL;
	struct kvc_seq *seq[2];
	struct swap_snap sn[2], got;
	uint64_t rng;
	int i;

	assert_non_null(drv);
	assert_non_null(out1);
	assert_non_null(out2);
	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	memset(&kp, 0, sizeof(kp));
	kp.shape = *s;
	kp.capacity_blocks = 512;
	kp.backend = be;
	kp.flags = KVC_POOL_NO_STATS_PAGE;
	assert_int_equal(kvc_kv_create(&kp, &kv), 0);
	assert_string_equal(kvc_kv_backend_name(kv), "cuda-fake");
	swap_fx_params(fx, fx->path, KVC_SWAP_FRESH, &p);
	p.io_bytes = 16u << 10; /* several pieces through the staging */
	assert_int_equal(kvc_swap_open(&p, kv, &sw), 0);

	for (i = 0; i < 2; i++) {
		seq[i] = SWAP_BUILD(kv, NULL, 121 + i, 60 + 50 * i,
				    DECODE_STEPS);
		KV_CHECK(kv); /* waits for the device */
		swap_snap_take(kv, seq[i], &sn[i], false);
		SWAP_OUT(kv, sw, seq[i], 121 + i);
		EXPECT_U64(swap_seq_lookup(sw, 121 + i).blocks, sn[i].blocks);
	}
	/* the originals go on one step, the copies must give the same */
	for (i = 0; i < 2; i++) {
		rng = 77 + i;
		assert_int_equal(swap_seq_append(seq[i], s, 1, &rng), 0);
		assert_int_equal(
			swap_seq_decode(seq[i], s, &rng, i ? out2 : out1), 0);
		kvc_seq_destroy(seq[i]);
	}
	KV_CHECK(kv);
	EXPECT_U64(swap_seq_live_blocks(kv), 0);
	for (i = 1; i >= 0; i--) {
		float *out = malloc(nq * sizeof(float));

		assert_non_null(out);
		seq[i] = SWAP_IN(kv, sw, 121 + i);
		swap_snap_take(kv, seq[i], &got, false);
		SNAP_EQUAL(&sn[i], &got);
		swap_snap_free(&got);
		swap_snap_free(&sn[i]);
		rng = 77 + i;
		assert_int_equal(swap_seq_append(seq[i], s, 1, &rng), 0);
		assert_int_equal(swap_seq_decode(seq[i], s, &rng, out), 0);
		if (memcmp(out, i ? out2 : out1, nq * sizeof(float)))
			fail_msg(
				"cuda: decode after swap-in of sequence %d differs",
				i);
		free(out);
		KV_CHECK(kv);
		kvc_seq_destroy(seq[i]);
	}
	SW_CHECK(sw);
	kvc_swap_close(sw);
	kvc_kv_destroy(kv);
	kvc_backend_close(be);
	FAKE_EXPECT_CLEAN(FAKE_KEEP_NONE);
	free(out1);
	free(out2);
}

int main(void)
{
#define T(fn, setup, name)                              \
	{                                               \
		name, fn, setup, swap_fx_teardown, NULL \
	}
	const struct CMUnitTest tests[] = {
		T(test_round_trip, setup_f16, "round_trip_f16"),
		T(test_round_trip, setup_f32, "round_trip_f32"),
		T(test_round_trip, setup_hd80, "round_trip_hd80"),
		T(test_round_trip, setup_f16_pread, "round_trip_f16_pread"),
		T(test_round_trip, setup_f16_buffered,
		  "round_trip_f16_buffered"),
		T(test_round_trip, setup_hd80_pread, "round_trip_hd80_pread"),
		T(test_attention, setup_f16, "attention_f16"),
		T(test_attention, setup_f32, "attention_f32"),
		T(test_attention, setup_hd80, "attention_hd80"),
		T(test_flipped_byte, setup_f16, "flipped_byte_f16"),
		T(test_flipped_byte, setup_f16_pread, "flipped_byte_f16_pread"),
		T(test_flipped_byte, setup_hd80, "flipped_byte_hd80"),
		T(test_crash, setup_f16, "crash_f16"),
		T(test_crash, setup_f16_pread, "crash_f16_pread"),
		T(test_torn_journal, setup_f16, "torn_journal_f16"),
		T(test_torn_journal, setup_f16_pread, "torn_journal_f16_pread"),
		T(test_open_bad_params, setup_f16, "open_bad_params_f16"),
		T(test_cap, setup_f16, "cap_f16"),
		T(test_cap, setup_hd80, "cap_hd80"),
		T(test_file_size_limit, setup_f16, "file_size_limit_f16"),
		T(test_file_size_limit, setup_f16_pread,
		  "file_size_limit_f16_pread"),
		T(test_keys_and_args, setup_f16, "keys_and_args_f16"),
		T(test_pool_full, setup_f16, "pool_full_f16"),
		T(test_reopen, setup_f16, "reopen_f16"),
		T(test_not_a_journal, setup_f16, "not_a_journal_f16"),
		T(test_queue_depths, setup_f16, "queue_depths_f16"),
		T(test_queue_depths, setup_hd80, "queue_depths_hd80"),
		T(test_queue_depths, setup_f32, "queue_depths_f32"),
		T(test_cuda_fake, setup_f16, "cuda_fake_f16"),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
