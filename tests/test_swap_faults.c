/* Description: the swap tier under faults: failed writes, syncs and reads of the data file (EIO, ENOSPC) on both engines and both write paths, corrupted metadata slots, a corrupted journal record, a journal that is some other file */
// SPDX-License-Identifier: MIT
/*
 * Fault injection into the swap tier (include/kvc/swap.h). Data-file I/O
 * is made to fail through the test hook of swap/swap_internal.h, which
 * fails an op as it is queued without touching the file; corruption is a
 * byte flipped in the files between calls. After every failure the swap
 * must be as it was: nothing recorded (also across a reopen), its space
 * free, the sequence untouched, and the same operation must then succeed
 * and round-trip bit-exact. kvc_swap_check() and kvc_kv_check() run
 * after every operation.
 *
 * Sequences are built as in test_swap.c: random K and V seeded by the
 * key, decode attention adding the L2 metric, KV-Compress so that heads
 * hold different lengths. A snapshot holds, per (layer, head), the K and
 * V bytes and the slot metadata of every KV it holds.
 */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/attention.h>
#include <kvc/evict.h>
#include <kvc/kv.h>
#include <kvc/kvc.h>
#include <kvc/swap.h>

#include "../runtime/internal.h"
#include "../swap/swap_internal.h"
#include "backend.h"
#include "swap_seq.h"

#define CAPACITY 1024
#define SWAP_CAP (64ull << 20)
/* One block per write (two for f16 at most): many writes to pick from. */
#define SWAP_IO_BYTES 4096u
#define DECODE_STEPS 3
#define MAX_KEYS 8
/* Never swapped out: dropping it records a known message. */
#define NO_KEY 0xdeadull

static const struct swap_fx_cfg fx_cfg = {
	.name = "test_swap_faults",
	.tmp_name = "kvc-test-swap-faults",
	.capacity = CAPACITY,
	.swap_cap = SWAP_CAP,
	.io_bytes = SWAP_IO_BYTES,
};

/* ------------------------------------------------------------------ */
/* Faults */

#define NO_OFF UINT64_MAX

/**
 * struct fault - Which data-file op to fail, and what was seen.
 * @fail_write: the 1-based index of the write to fail, or 0.
 * @fail_read_at: fail the read covering this file offset, or %NO_OFF.
 * @fail_sync: fail every sync.
 * @err: the error failed ops complete with.
 * @writes: writes queued.
 * @reads: reads queued.
 * @syncs: syncs asked for.
 * @failed: ops failed.
 */
struct fault {
	uint64_t fail_write;
	uint64_t fail_read_at;
	bool fail_sync;
	int err;
	uint64_t writes;
	uint64_t reads;
	uint64_t syncs;
	uint64_t failed;
};

static void fault_init(struct fault *f, int err)
{
	memset(f, 0, sizeof(*f));
	f->fail_read_at = NO_OFF;
	f->err = err;
}

static int fault_hook(void *arg, bool write, uint64_t off, uint64_t bytes)
{
	struct fault *f = arg;
	bool fail;

	if (!bytes && off == ~0ull) {
		f->syncs++;
		fail = f->fail_sync;
	} else if (write) {
		fail = ++f->writes == f->fail_write;
	} else {
		f->reads++;
		fail = f->fail_read_at >= off && f->fail_read_at < off + bytes;
	}
	if (!fail)
		return 0;
	f->failed++;
	return f->err;
}

/* ------------------------------------------------------------------ */
/* Checks and wrappers */

#define BUILD(fx, key, prefill) \
	SWAP_BUILD((fx)->kv, (fx)->pol, key, prefill, DECODE_STEPS)

/* Closed and opened again: what the files hold, nothing else. */
static struct kvc_swap_stats reopen(struct swap_fx *fx)
{
	swap_fx_close(fx);
	return SWAP_OPEN(fx, 0);
}

/* Swaps @key in and checks it holds what @sn says, then frees it. */
#define ROUND_TRIP(fx, key, sn) round_trip(fx, key, sn, __FILE__, __LINE__)

static void round_trip(struct swap_fx *fx, uint64_t key,
		       const struct swap_snap *sn, const char *file, int line)
{
	struct kvc_seq *seq = swap_seq_in_ok(fx->kv, fx->sw, key, file, line);

	swap_seq_untouched(fx->kv, seq, sn, file, line);
	kvc_seq_destroy(seq);
	check_kv_at(fx->kv, file, line);
}

static void expect_absent(const struct kvc_swap *sw, uint64_t key)
{
	struct kvc_swap_entry e;

	if (kvc_swap_lookup(sw, key, &e) != -ENOENT)
		fail_msg("key %" PRIu64 " is in the swap", key);
}

/* The swap holds exactly @keys, in this order. */
static void expect_keys(const struct kvc_swap *sw, const uint64_t *keys,
			uint64_t n)
{
	uint64_t got[MAX_KEYS], nr, i;

	nr = kvc_swap_keys(sw, got, MAX_KEYS);
	EXPECT_U64(nr, n);
	for (i = 0; i < n; i++)
		if (got[i] != keys[i])
			fail_msg("key %" PRIu64 " of the swap is %" PRIu64
				 ", expected %" PRIu64,
				 i, got[i], keys[i]);
}

/*
 * Records a known message, so that a failure can be seen to set its
 * own. Dropping a key the swap does not hold touches nothing.
 */
static const char *prime_error(struct kvc_swap *sw)
{
	static char primer[256];

	EXPECT_ERR(kvc_swap_drop(sw, NO_KEY), -ENOENT);
	snprintf(primer, sizeof(primer), "%s", kvc_last_error());
	assert_true(primer[0] != '\0');
	return primer;
}

static void expect_new_error(const char *primer, const char *what)
{
	const char *msg = kvc_last_error();

	if (!msg || !*msg || !strcmp(msg, primer))
		fail_msg("%s failed without a message of its own (\"%s\")",
			 what, msg ? msg : "(null)");
}

/* The file offset of the last block of @key's last (layer, head). */
static uint64_t last_block_off(struct swap_fx *fx, uint64_t key,
			       const struct swap_snap *sn)
{
	const struct kvc_model_shape *s = &fx->shape;
	uint32_t nr = (sn->len[sn->nr_tables - 1] + s->block_size - 1) /
		      s->block_size;
	uint64_t off = 0;
	uint32_t crc;

	assert_true(nr > 0);
	EXPECT_ERR(kvc_swap_locate(fx->sw, key, s->layers - 1, s->kv_heads - 1,
				   nr - 1, &off, &crc),
		   0);
	return off;
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

static int setup_f16_pread(void **state)
{
	return setup_with(state, &swap_shape_f16, KVC_SWAP_NO_URING);
}

static int setup_hd80(void **state)
{
	return setup_with(state, &swap_shape_hd80, 0);
}

static int setup_hd80_pread(void **state)
{
	return setup_with(state, &swap_shape_hd80, KVC_SWAP_NO_URING);
}

/* ------------------------------------------------------------------ */
/* 1. Swap-out: a failed write or sync */

#define KEY_KEPT 11
#define KEY_OUT 12

/*
 * kvc_swap_out() of @seq as @key with @f armed fails with @want and
 * leaves everything as it was; the swap holds @keys (@n of them).
 */
static void expect_out_fails(struct swap_fx *fx, struct kvc_seq *seq,
			     uint64_t key, const struct swap_snap *sn,
			     struct fault *f, int want, const uint64_t *keys,
			     uint64_t n)
{
	struct kvc_swap_stats before = swap_seq_stats(fx->sw), after;
	uint64_t idx_bytes = swap_seq_file_size(fx->idx);
	uint64_t live = swap_seq_live_blocks(fx->kv);
	const char *primer = prime_error(fx->sw);

	kvc_swap_set_fault(fx->sw, fault_hook, f);
	EXPECT_ERR(kvc_swap_out(fx->sw, seq, key), want);
	kvc_swap_set_fault(fx->sw, NULL, NULL);
	expect_new_error(primer, "kvc_swap_out()");
	EXPECT_U64(f->failed, 1);
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);

	/* nothing recorded, its space free again */
	after = swap_seq_stats(fx->sw);
	expect_absent(fx->sw, key);
	expect_keys(fx->sw, keys, n);
	EXPECT_U64(after.entries, before.entries);
	EXPECT_U64(after.used_bytes, before.used_bytes);
	EXPECT_U64(after.out_seqs, before.out_seqs);
	EXPECT_U64(after.out_bytes, before.out_bytes);
	EXPECT_U64(after.io_errors, before.io_errors + 1);
	EXPECT_U64(after.checksum_failures, before.checksum_failures);
	EXPECT_U64(after.cap_refusals,
		   before.cap_refusals + (want == -ENOSPC ? 1 : 0));
	EXPECT_U64(swap_seq_file_size(fx->idx), idx_bytes);

	/* the sequence is as it was */
	EXPECT_U64(swap_seq_live_blocks(fx->kv), live);
	SWAP_UNTOUCHED(fx->kv, seq, sn);
}

static void test_out_faults(void **state)
{
	struct swap_fx *fx = *state;
	static const uint64_t kept[1] = { KEY_KEPT };
	struct kvc_seq *seq, *other;
	struct swap_snap sn, sn_kept;
	struct kvc_swap_stats st;
	struct fault f;
	uint64_t writes, cases[4], i;

	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	other = BUILD(fx, KEY_KEPT, 60);
	swap_snap_take(fx->kv, other, &sn_kept, true);
	SWAP_OUT(fx->kv, fx->sw, other, KEY_KEPT);
	kvc_seq_destroy(other);

	seq = BUILD(fx, KEY_OUT, 200);
	swap_snap_take(fx->kv, seq, &sn, true);

	/* How many writes a swap-out of it takes: go out, then drop. */
	fault_init(&f, 0);
	kvc_swap_set_fault(fx->sw, fault_hook, &f);
	SWAP_OUT(fx->kv, fx->sw, seq, KEY_OUT);
	kvc_swap_set_fault(fx->sw, NULL, NULL);
	assert_int_equal(kvc_swap_drop(fx->sw, KEY_OUT), 0);
	SW_CHECK(fx->sw);
	writes = f.writes;
	if (writes < 3)
		fail_msg("a swap-out of %" PRIu64 " blocks took %" PRIu64
			 " writes: too few to fail one in the middle",
			 sn.blocks, writes);
	EXPECT_U64(f.syncs, 1);
	EXPECT_U64(swap_seq_stats(fx->sw).io_errors, 0);

	/* the first, a middle and the last write fail with EIO */
	cases[0] = 1;
	cases[1] = (writes + 1) / 2;
	cases[2] = writes;
	for (i = 0; i < 3; i++) {
		fault_init(&f, -EIO);
		f.fail_write = cases[i];
		expect_out_fails(fx, seq, KEY_OUT, &sn, &f, -EIO, kept, 1);
		EXPECT_U64(f.writes, writes);
	}

	/* every write lands, the data sync fails */
	fault_init(&f, -EIO);
	f.fail_sync = true;
	expect_out_fails(fx, seq, KEY_OUT, &sn, &f, -EIO, kept, 1);
	EXPECT_U64(f.writes, writes);
	EXPECT_U64(f.syncs, 1);

	/* a full disk mid-write */
	fault_init(&f, -ENOSPC);
	f.fail_write = writes / 2 + 1;
	expect_out_fails(fx, seq, KEY_OUT, &sn, &f, -ENOSPC, kept, 1);

	/* none of it reached the journal */
	st = reopen(fx);
	EXPECT_U64(st.recovered, 1);
	EXPECT_U64(st.torn_bytes, 0);
	expect_absent(fx->sw, KEY_OUT);
	expect_keys(fx->sw, kept, 1);
	EXPECT_U64(st.used_bytes, swap_seq_lookup(fx->sw, KEY_KEPT).bytes);

	/* the same sequence then goes out, and comes back bit-exact */
	SWAP_OUT(fx->kv, fx->sw, seq, KEY_OUT);
	SWAP_UNTOUCHED(fx->kv, seq, &sn);
	kvc_seq_destroy(seq);
	KV_CHECK(fx->kv);
	st = reopen(fx);
	EXPECT_U64(st.recovered, 2);
	ROUND_TRIP(fx, KEY_OUT, &sn);
	ROUND_TRIP(fx, KEY_KEPT, &sn_kept);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.entries, 0);
	EXPECT_U64(st.used_bytes, 0);
	EXPECT_U64(st.io_errors, 0);
	SW_CHECK(fx->sw);
	swap_fx_close(fx);
	swap_snap_free(&sn);
	swap_snap_free(&sn_kept);
}

/* ------------------------------------------------------------------ */
/* 2. Swap-in: a failed read */

#define KEY_A 21
#define KEY_B 22

/* kvc_swap_in(@key) with the read covering @off failing with EIO. */
static void expect_in_fails(struct swap_fx *fx, uint64_t key, uint64_t off)
{
	struct kvc_swap_stats before = swap_seq_stats(fx->sw), after;
	uint64_t live = swap_seq_live_blocks(fx->kv);
	uint32_t nr_seqs = fx->kv->nr_seqs;
	struct kvc_seq *seq = NULL;
	const char *primer = prime_error(fx->sw);
	struct kvc_swap_entry e;
	struct fault f;

	fault_init(&f, -EIO);
	f.fail_read_at = off;
	kvc_swap_set_fault(fx->sw, fault_hook, &f);
	EXPECT_ERR(kvc_swap_in(fx->sw, key, &seq), -EIO);
	kvc_swap_set_fault(fx->sw, NULL, NULL);
	expect_new_error(primer, "kvc_swap_in()");
	EXPECT_U64(f.failed, 1);
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);

	/* no sequence made */
	assert_null(seq);
	EXPECT_U64(swap_seq_live_blocks(fx->kv), live);
	EXPECT_U64(fx->kv->nr_seqs, nr_seqs);

	/* the entry stays, and an I/O error is no checksum failure */
	e = swap_seq_lookup(fx->sw, key);
	assert_false(e.bad);
	after = swap_seq_stats(fx->sw);
	EXPECT_U64(after.entries, before.entries);
	EXPECT_U64(after.used_bytes, before.used_bytes);
	EXPECT_U64(after.in_seqs, before.in_seqs);
	EXPECT_U64(after.in_bytes, before.in_bytes);
	EXPECT_U64(after.io_errors, before.io_errors + 1);
	EXPECT_U64(after.checksum_failures, 0);
}

static void test_in_read_fault(void **state)
{
	struct swap_fx *fx = *state;
	static const uint64_t keys[2] = { KEY_A, KEY_B };
	struct kvc_swap_stats st;
	struct kvc_seq *seq;
	struct swap_snap sn[2];
	uint64_t first, last;
	uint32_t crc;
	int i;

	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	for (i = 0; i < 2; i++) {
		seq = BUILD(fx, keys[i], 120 + 40 * i);
		swap_snap_take(fx->kv, seq, &sn[i], true);
		SWAP_OUT(fx->kv, fx->sw, seq, keys[i]);
		kvc_seq_destroy(seq);
		KV_CHECK(fx->kv);
	}
	EXPECT_ERR(kvc_swap_locate(fx->sw, KEY_A, 0, 0, 0, &first, &crc), 0);
	last = last_block_off(fx, KEY_A, &sn[0]);
	st = swap_seq_stats(fx->sw);

	/* the first data block, the last, the metadata after it */
	expect_in_fails(fx, KEY_A, first);
	expect_in_fails(fx, KEY_A, last);
	expect_in_fails(fx, KEY_A, last + st.slot_bytes);
	expect_keys(fx->sw, keys, 2);

	/* the entry is still whole on disk */
	st = reopen(fx);
	EXPECT_U64(st.recovered, 2);
	EXPECT_U64(st.torn_bytes, 0);
	assert_false(swap_seq_lookup(fx->sw, KEY_A).bad);

	/* one more failed read after the reopen, then it comes in */
	expect_in_fails(fx, KEY_A, first);
	ROUND_TRIP(fx, KEY_A, &sn[0]);
	ROUND_TRIP(fx, KEY_B, &sn[1]);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.entries, 0);
	EXPECT_U64(st.used_bytes, 0);
	EXPECT_U64(st.in_seqs, 2);
	EXPECT_U64(st.checksum_failures, 0);
	SW_CHECK(fx->sw);
	swap_fx_close(fx);
	for (i = 0; i < 2; i++)
		swap_snap_free(&sn[i]);
}

/* ------------------------------------------------------------------ */
/* 3. Corruption */

#define KEY_C 31
#define KEY_D 32

/* A byte of an entry's metadata slots flipped: its blocks are refused. */
static void test_meta_corrupt(void **state)
{
	struct swap_fx *fx = *state;
	struct kvc_swap_stats st;
	struct kvc_seq *seq = NULL;
	struct swap_snap sn_c, sn_d;
	uint64_t live, meta;

	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	seq = BUILD(fx, KEY_C, 100);
	swap_snap_take(fx->kv, seq, &sn_c, true);
	SWAP_OUT(fx->kv, fx->sw, seq, KEY_C);
	kvc_seq_destroy(seq);
	seq = BUILD(fx, KEY_D, 80);
	swap_snap_take(fx->kv, seq, &sn_d, true);
	SWAP_OUT(fx->kv, fx->sw, seq, KEY_D);
	kvc_seq_destroy(seq);
	KV_CHECK(fx->kv);

	/*
	 * A fresh file: the entry's slots are one run, its metadata in the
	 * slots right after its last block; the first bytes there are the
	 * first block's metric and position.
	 */
	st = swap_seq_stats(fx->sw);
	meta = last_block_off(fx, KEY_C, &sn_c) + st.slot_bytes;
	assert_true(meta + st.slot_bytes <= st.file_bytes);
	swap_fx_close(fx);
	swap_seq_flip_byte(fx->path, meta + 2);
	st = SWAP_OPEN(fx, 0);
	EXPECT_U64(st.recovered, 2);

	live = swap_seq_live_blocks(fx->kv);
	seq = NULL;
	EXPECT_ERR(kvc_swap_in(fx->sw, KEY_C, &seq), -EBADMSG);
	assert_null(seq);
	EXPECT_U64(swap_seq_live_blocks(fx->kv), live);
	assert_true(swap_seq_lookup(fx->sw, KEY_C).bad);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.checksum_failures, 1);
	EXPECT_U64(st.io_errors, 0);
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);

	/* the other entry is fine; the bad one can only be dropped */
	ROUND_TRIP(fx, KEY_D, &sn_d);
	EXPECT_ERR(kvc_swap_in(fx->sw, KEY_C, &seq), -EBADMSG);
	assert_null(seq);
	EXPECT_ERR(kvc_swap_drop(fx->sw, KEY_C), 0);
	st = swap_seq_stats(fx->sw);
	EXPECT_U64(st.entries, 0);
	EXPECT_U64(st.used_bytes, 0);
	SW_CHECK(fx->sw);
	KV_CHECK(fx->kv);
	swap_fx_close(fx);
	swap_snap_free(&sn_c);
	swap_snap_free(&sn_d);
}

#define KEY_E 41

/* A byte inside the journal's last record flipped: that record is cut. */
static void test_journal_corrupt(void **state)
{
	struct swap_fx *fx = *state;
	static const uint64_t keys[3] = { KEY_C, KEY_D, KEY_E };
	struct kvc_swap_stats st;
	struct kvc_seq *seq, *last;
	uint64_t before, after, sum = 0;
	struct swap_snap sn[3];
	int i;

	SWAP_OPEN(fx, KVC_SWAP_FRESH);
	for (i = 0; i < 2; i++) {
		seq = BUILD(fx, keys[i], 70 + 30 * i);
		swap_snap_take(fx->kv, seq, &sn[i], true);
		SWAP_OUT(fx->kv, fx->sw, seq, keys[i]);
		sum += swap_seq_lookup(fx->sw, keys[i]).bytes;
		kvc_seq_destroy(seq);
	}
	last = BUILD(fx, KEY_E, 90);
	swap_snap_take(fx->kv, last, &sn[2], true);
	before = swap_seq_file_size(fx->idx);
	SWAP_OUT(fx->kv, fx->sw, last, KEY_E);
	after = swap_seq_file_size(fx->idx);
	assert_true(after > before);
	swap_fx_close(fx);

	/* the middle of the record: its payload, under its checksum */
	swap_seq_flip_byte(fx->idx, before + (after - before) / 2);
	st = SWAP_OPEN(fx, 0);
	EXPECT_U64(st.recovered, 2);
	EXPECT_U64(st.entries, 2);
	EXPECT_U64(st.torn_bytes, after - before);
	EXPECT_U64(st.used_bytes, sum);
	expect_absent(fx->sw, KEY_E);
	expect_keys(fx->sw, keys, 2);
	EXPECT_U64(swap_seq_file_size(fx->idx), before);

	/* its slots are free: the key goes out again */
	SWAP_OUT(fx->kv, fx->sw, last, KEY_E);
	kvc_seq_destroy(last);
	st = reopen(fx);
	EXPECT_U64(st.recovered, 3);
	EXPECT_U64(st.torn_bytes, 0);
	expect_keys(fx->sw, keys, 3);
	for (i = 2; i >= 0; i--)
		ROUND_TRIP(fx, keys[i], &sn[i]);
	SW_CHECK(fx->sw);
	swap_fx_close(fx);
	for (i = 0; i < 3; i++)
		swap_snap_free(&sn[i]);
}

/* A journal path holding some other file is refused and left alone. */
static void test_not_a_journal(void **state)
{
	static const char text[] = "name = kvc\nnot a journal at all\n";
	struct swap_fx *fx = *state;
	struct kvc_swap_params p;
	struct kvc_swap *sw = NULL;
	struct kvc_swap_stats st;
	struct kvc_seq *seq;
	struct swap_snap sn;
	char back[sizeof(text) + 16];
	int fd, err;

	fd = open(fx->idx, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, sizeof(text) - 1),
			 (ssize_t)sizeof(text) - 1);
	assert_int_equal(close(fd), 0);

	swap_fx_params(fx, fx->path, 0, &p);
	err = kvc_swap_open(&p, fx->kv, &sw);
	if (err != -EINVAL)
		fail_msg(
			"kvc_swap_open() on a text journal = %d, expected %d: %s",
			err, -EINVAL, err ? kvc_last_error() : "");
	assert_null(sw);
	assert_true(strstr(kvc_last_error(), fx->idx) != NULL);

	/* untouched */
	EXPECT_U64(swap_seq_file_size(fx->idx), sizeof(text) - 1);
	fd = open(fx->idx, O_RDONLY);
	assert_true(fd >= 0);
	memset(back, 0, sizeof(back));
	assert_int_equal(read(fd, back, sizeof(back)),
			 (ssize_t)sizeof(text) - 1);
	assert_int_equal(close(fd), 0);
	if (memcmp(back, text, sizeof(text) - 1))
		fail_msg("a refused journal was changed: \"%s\"", back);

	/* KVC_SWAP_FRESH starts afresh over it */
	st = SWAP_OPEN(fx, KVC_SWAP_FRESH);
	EXPECT_U64(st.entries, 0);
	EXPECT_U64(st.recovered, 0);
	seq = BUILD(fx, KEY_E, 50);
	swap_snap_take(fx->kv, seq, &sn, true);
	SWAP_OUT(fx->kv, fx->sw, seq, KEY_E);
	kvc_seq_destroy(seq);
	st = reopen(fx);
	EXPECT_U64(st.recovered, 1);
	ROUND_TRIP(fx, KEY_E, &sn);
	swap_fx_close(fx);
	swap_snap_free(&sn);
}

int main(void)
{
#define T(fn, setup, name)                              \
	{                                               \
		name, fn, setup, swap_fx_teardown, NULL \
	}
	const struct CMUnitTest tests[] = {
		T(test_out_faults, setup_f16, "out_faults_f16"),
		T(test_out_faults, setup_f16_pread, "out_faults_f16_pread"),
		T(test_out_faults, setup_hd80, "out_faults_hd80"),
		T(test_out_faults, setup_hd80_pread, "out_faults_hd80_pread"),
		T(test_in_read_fault, setup_f16, "in_read_fault_f16"),
		T(test_in_read_fault, setup_f16_pread,
		  "in_read_fault_f16_pread"),
		T(test_in_read_fault, setup_hd80, "in_read_fault_hd80"),
		T(test_in_read_fault, setup_hd80_pread,
		  "in_read_fault_hd80_pread"),
		T(test_meta_corrupt, setup_f16, "meta_corrupt_f16"),
		T(test_meta_corrupt, setup_f16_pread, "meta_corrupt_f16_pread"),
		T(test_meta_corrupt, setup_hd80, "meta_corrupt_hd80"),
		T(test_journal_corrupt, setup_f16, "journal_corrupt_f16"),
		T(test_journal_corrupt, setup_f16_pread,
		  "journal_corrupt_f16_pread"),
		T(test_not_a_journal, setup_f16, "not_a_journal_f16"),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
