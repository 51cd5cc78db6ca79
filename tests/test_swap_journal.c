/* Description: the swap journal: append and replay, fresh open, torn tails, corrupt records, garbage, callback errors, rewrite and its failure, bad arguments */
// SPDX-License-Identifier: MIT
/*
 * Tests of swap/journal.h. Every journal here is written through the API
 * and then damaged byte by byte the way a crash or a bad disk would damage
 * it; replay must hand back exactly the records before the damage, cut the
 * rest, and leave a journal that takes appends again.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
#include <unistd.h>

#include <cmocka.h>

#include "error.h"
#include "swap_seq.h"
#include "testutil.h"
#include "tmpdir.h"

#include "../swap/crc32c.h"
#include "../swap/journal.h"

#define HEAD ((uint64_t)sizeof(struct kvc_jrec_head))

/* A record as the test remembers it. */
struct rec {
	uint32_t kind;
	uint32_t len;
	uint8_t *data;
};

/* Records handed to the apply callback, in order. */
struct seen {
	struct rec *recs;
	uint32_t nr;
	uint32_t cap;
	uint32_t fail_at; /* 1-based record that fails, 0 for none */
	int fail_err;
	bool fail_says_why;
};

struct fixture {
	char dir[256];
	char path[300];
	char tmp[320];
	struct kvc_journal *j;
	struct seen seen;
	struct rec *recs;
	uint32_t nr;
	struct rlimit fsize;
	void (*old_xfsz)(int);
};

static void free_recs(struct rec *recs, uint32_t nr)
{
	uint32_t i;

	for (i = 0; i < nr; i++)
		free(recs[i].data);
	free(recs);
}

static void seen_reset(struct seen *s)
{
	free_recs(s->recs, s->nr);
	memset(s, 0, sizeof(*s));
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	if (tmpdir_make(fx->dir, sizeof(fx->dir), "kvc-test-journal")) {
		free(fx);
		return -1;
	}
	snprintf(fx->path, sizeof(fx->path), "%s/swap.idx", fx->dir);
	snprintf(fx->tmp, sizeof(fx->tmp), "%s.tmp", fx->path);
	getrlimit(RLIMIT_FSIZE, &fx->fsize);
	fx->old_xfsz = signal(SIGXFSZ, SIG_IGN);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	int err;

	setrlimit(RLIMIT_FSIZE, &fx->fsize);
	signal(SIGXFSZ, fx->old_xfsz);
	kvc_journal_close(fx->j);
	seen_reset(&fx->seen);
	free_recs(fx->recs, fx->nr);
	err = tmpdir_remove(fx->dir);
	if (err)
		fprintf(stderr, "test_swap_journal: cannot remove %s: %s\n",
			fx->dir, strerror(errno));
	free(fx);
	return err;
}

static int collect(void *arg, uint32_t kind, const void *payload, uint32_t len)
{
	struct seen *s = arg;
	struct rec *r;

	if (s->fail_at && s->nr + 1 == s->fail_at) {
		if (s->fail_says_why)
			return kvc_err(s->fail_err, "the callback's reason");
		return s->fail_err;
	}
	if (s->nr == s->cap) {
		uint32_t cap = s->cap ? 2 * s->cap : 16;
		struct rec *p = realloc(s->recs, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		s->recs = p;
		s->cap = cap;
	}
	r = &s->recs[s->nr];
	r->kind = kind;
	r->len = len;
	r->data = malloc(len ? len : 1);
	if (!r->data)
		return -ENOMEM;
	if (len)
		memcpy(r->data, payload, len);
	s->nr++;
	return 0;
}

static uint64_t rec_bytes(uint32_t len)
{
	return HEAD + (len + 7ull) / 8 * 8;
}

/* Reads the whole file; *len gets its size. */
static uint8_t *file_read(const char *path, uint64_t *len)
{
	uint64_t size = swap_seq_file_size(path);
	uint8_t *buf = malloc(size ? size : 1);
	int fd = open(path, O_RDONLY);

	assert_non_null(buf);
	assert_true(fd >= 0);
	EXPECT_U64(pread(fd, buf, size, 0), size);
	close(fd);
	*len = size;
	return buf;
}

/* Replaces the file by @len bytes of @buf. */
static void file_write(const char *path, const void *buf, uint64_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	EXPECT_U64(write(fd, buf, len), len);
	close(fd);
}

/* Adds one record of @len random bytes and kind 1..9 to the fixture's. */
static struct rec *rec_add(struct fixture *fx, uint64_t *rng, uint32_t len)
{
	struct rec *r;
	uint32_t i;

	fx->recs = realloc(fx->recs, (fx->nr + 1) * sizeof(*fx->recs));
	assert_non_null(fx->recs);
	r = &fx->recs[fx->nr++];
	r->kind = 1 + (uint32_t)(rng_next(rng) % 9);
	r->len = len;
	r->data = malloc(len ? len : 1);
	assert_non_null(r->data);
	for (i = 0; i < len; i++)
		r->data[i] = (uint8_t)rng_next(rng);
	return r;
}

/* Random lengths: empty, a few bytes, a few KiB, and now and then
 * hundreds of KiB. */
static uint32_t rand_len(uint64_t *rng)
{
	switch (rng_next(rng) % 8) {
	case 0:
		return 0;
	case 1:
	case 2:
	case 3:
		return (uint32_t)(rng_next(rng) % 16);
	case 7:
		return (uint32_t)(rng_next(rng) % (300u << 10));
	default:
		return (uint32_t)(rng_next(rng) % 8192);
	}
}

static struct kvc_journal *open_ok(struct fixture *fx, bool fresh)
{
	struct kvc_journal *j = NULL;
	int err;

	seen_reset(&fx->seen);
	err = kvc_journal_open(fx->path, fresh, collect, &fx->seen, &j);
	if (err)
		fail_msg("kvc_journal_open(%s) = %d: %s", fx->path, err,
			 kvc_last_error());
	assert_non_null(j);
	return j;
}

static void reopen(struct fixture *fx)
{
	kvc_journal_close(fx->j);
	fx->j = NULL;
	fx->j = open_ok(fx, false);
}

static void append_ok(struct kvc_journal *j, const struct rec *r)
{
	int err = kvc_journal_append(j, r->kind, r->data, r->len);

	if (err)
		fail_msg("kvc_journal_append(kind %u, %u bytes) = %d: %s",
			 r->kind, r->len, err, kvc_last_error());
}

/* Appends @n random records through the fixture's journal. */
static void append_random(struct fixture *fx, uint64_t *rng, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		append_ok(fx->j, rec_add(fx, rng, rand_len(rng)));
}

/* The records replayed are the first @n of the fixture's, in order. */
static void expect_seen(struct fixture *fx, uint32_t n)
{
	uint32_t i;

	EXPECT_U64(fx->seen.nr, n);
	for (i = 0; i < n; i++) {
		const struct rec *a = &fx->seen.recs[i], *b = &fx->recs[i];

		if (a->kind != b->kind || a->len != b->len ||
		    memcmp(a->data, b->data, a->len))
			fail_msg(
				"record %u: kind %u, %u bytes, expected kind %u, %u bytes%s",
				i + 1, a->kind, a->len, b->kind, b->len,
				a->len == b->len ? " (payload differs)" : "");
	}
}

/* Offset of the fixture's record @i (0-based) in the file. */
static uint64_t offset_of(struct fixture *fx, uint32_t i)
{
	uint64_t off = 0;
	uint32_t k;

	for (k = 0; k < i; k++)
		off += rec_bytes(fx->recs[k].len);
	return off;
}

/* Counters and file size agree with the first @n records of the fixture. */
static void expect_journal(struct fixture *fx, uint32_t n)
{
	uint64_t bytes = offset_of(fx, n);

	EXPECT_U64(kvc_journal_records(fx->j), n);
	EXPECT_U64(kvc_journal_bytes(fx->j), bytes);
	EXPECT_U64(swap_seq_file_size(fx->path), bytes);
}

static void test_append_replay(void **state)
{
	struct fixture *fx = *state;
	uint64_t rng = 0x5eed0001;

	fx->j = open_ok(fx, false);
	EXPECT_U64(fx->seen.nr, 0);
	expect_journal(fx, 0);
	append_random(fx, &rng, 40);
	expect_journal(fx, 40);

	reopen(fx);
	expect_seen(fx, 40);
	expect_journal(fx, 40);
	EXPECT_U64(kvc_journal_torn(fx->j), 0);

	/* Appends after a replay follow on, and replay again. */
	append_random(fx, &rng, 5);
	reopen(fx);
	expect_seen(fx, 45);
	expect_journal(fx, 45);

	/* A NULL callback replays too (and counts). */
	kvc_journal_close(fx->j);
	fx->j = NULL;
	assert_int_equal(kvc_journal_open(fx->path, false, NULL, NULL, &fx->j),
			 0);
	expect_journal(fx, 45);
}

/* The bytes on disk are as the header describes them. */
static void test_framing(void **state)
{
	struct fixture *fx = *state;
	uint64_t rng = 0x5eed0002, size, off = 0;
	struct kvc_jrec_head h;
	struct stat st;
	uint8_t *buf;
	uint32_t i;

	fx->j = open_ok(fx, false);
	append_ok(fx->j, rec_add(fx, &rng, 0));
	append_ok(fx->j, rec_add(fx, &rng, 5));
	append_ok(fx->j, rec_add(fx, &rng, 8));
	append_ok(fx->j, rec_add(fx, &rng, 13));
	assert_int_equal(stat(fx->path, &st), 0);
	EXPECT_U64(st.st_mode & 0777, 0600);

	buf = file_read(fx->path, &size);
	EXPECT_U64(size, offset_of(fx, 4));
	for (i = 0; i < 4; i++) {
		const struct rec *r = &fx->recs[i];
		struct kvc_jrec_head c;
		uint32_t crc;
		uint64_t p;

		memcpy(&h, buf + off, sizeof(h));
		EXPECT_U64(h.magic, KVC_JREC_MAGIC);
		EXPECT_U64(h.kind, r->kind);
		EXPECT_U64(h.len, r->len);
		EXPECT_U64(h.seqno, i + 1);
		c = h;
		c.crc = 0;
		crc = kvc_crc32c(0, &c, sizeof(c));
		crc = kvc_crc32c(crc, buf + off + HEAD, r->len);
		EXPECT_U64(h.crc, crc);
		assert_memory_equal(buf + off + HEAD, r->data, r->len);
		for (p = off + HEAD + r->len; p < off + rec_bytes(r->len); p++)
			EXPECT_U64(buf[p], 0);
		off += rec_bytes(r->len);
	}
	assert_memory_equal(buf, "KVJR", 4);
	free(buf);
}

static void test_fresh_empties(void **state)
{
	struct fixture *fx = *state;
	uint64_t rng = 0x5eed0003;
	struct rec *r;

	fx->j = open_ok(fx, false);
	append_random(fx, &rng, 6);
	kvc_journal_close(fx->j);
	fx->j = NULL;

	fx->j = open_ok(fx, true);
	EXPECT_U64(fx->seen.nr, 0);
	EXPECT_U64(kvc_journal_records(fx->j), 0);
	EXPECT_U64(kvc_journal_bytes(fx->j), 0);
	EXPECT_U64(swap_seq_file_size(fx->path), 0);

	/* Numbering starts again at 1, or the next replay would stop. */
	r = &fx->recs[3];
	append_ok(fx->j, r);
	reopen(fx);
	EXPECT_U64(fx->seen.nr, 1);
	EXPECT_U64(fx->seen.recs[0].kind, r->kind);
	EXPECT_U64(fx->seen.recs[0].len, r->len);
	assert_memory_equal(fx->seen.recs[0].data, r->data, r->len);
}

/* The file cut to @cut bytes inside its last record (at @start) replays
 * the @nr_before records before it, is cut back to them, and takes an
 * append again. */
static void check_cut(struct fixture *fx, const uint8_t *orig, uint64_t start,
		      uint64_t cut, uint32_t nr_before)
{
	struct rec extra = { 7, 11, (uint8_t *)"appended ok" };

	file_write(fx->path, orig, cut);
	fx->j = open_ok(fx, false);
	expect_seen(fx, nr_before);
	if (kvc_journal_torn(fx->j) != cut - start)
		fail_msg("cut at %" PRIu64 ": torn %" PRIu64
			 ", expected %" PRIu64,
			 cut, kvc_journal_torn(fx->j), cut - start);
	expect_journal(fx, nr_before);

	append_ok(fx->j, &extra);
	reopen(fx);
	EXPECT_U64(fx->seen.nr, nr_before + 1);
	EXPECT_U64(fx->seen.recs[nr_before].kind, extra.kind);
	EXPECT_U64(fx->seen.recs[nr_before].len, extra.len);
	assert_memory_equal(fx->seen.recs[nr_before].data, extra.data,
			    extra.len);
	EXPECT_U64(kvc_journal_torn(fx->j), 0);
	EXPECT_U64(swap_seq_file_size(fx->path), start + rec_bytes(extra.len));
	kvc_journal_close(fx->j);
	fx->j = NULL;
}

/*
 * Writes @nr_before random records and then one of @last_len bytes, and
 * checks cuts of the file every @step bytes inside the last record, from
 * its first byte, and one byte short of its end.
 */
static void torn_tail(struct fixture *fx, uint64_t seed, uint32_t nr_before,
		      uint32_t last_len, uint64_t step)
{
	uint64_t rng = seed, size, start, cut;
	uint8_t *orig;

	fx->j = open_ok(fx, true);
	append_random(fx, &rng, nr_before);
	append_ok(fx->j, rec_add(fx, &rng, last_len));
	kvc_journal_close(fx->j);
	fx->j = NULL;
	orig = file_read(fx->path, &size);
	start = offset_of(fx, nr_before);
	EXPECT_U64(size, start + rec_bytes(last_len));

	for (cut = start; cut < size; cut += step)
		check_cut(fx, orig, start, cut, nr_before);
	if ((size - 1 - start) % step)
		check_cut(fx, orig, start, size - 1, nr_before);
	free(orig);
}

/* A small last record, cut at every byte. */
static void test_torn_every_byte(void **state)
{
	torn_tail(*state, 0x5eed0004, 5, 37, 1);
}

/* An empty last record (head only), cut at every byte. */
static void test_torn_empty_record(void **state)
{
	torn_tail(*state, 0x5eed0005, 3, 0, 1);
}

/* A large last record, cut at a sample of offsets. */
static void test_torn_large_record(void **state)
{
	torn_tail(*state, 0x5eed0006, 4, (200u << 10) + 3, 4099);
}

/* Every byte of the middle record, flipped in turn, ends replay there. */
static void test_flipped_byte(void **state)
{
	struct fixture *fx = *state;
	uint64_t rng = 0x5eed0007, size, start, end, p;
	uint8_t *orig, *bad;

	fx->j = open_ok(fx, true);
	append_ok(fx->j, rec_add(fx, &rng, 100));
	append_ok(fx->j, rec_add(fx, &rng, 3));
	append_ok(fx->j, rec_add(fx, &rng, 61));
	append_ok(fx->j, rec_add(fx, &rng, 9));
	append_ok(fx->j, rec_add(fx, &rng, 200));
	kvc_journal_close(fx->j);
	fx->j = NULL;
	orig = file_read(fx->path, &size);
	bad = malloc(size);
	assert_non_null(bad);
	start = offset_of(fx, 2);
	end = offset_of(fx, 3);

	for (p = start; p < end; p++) {
		memcpy(bad, orig, size);
		bad[p] ^= 0x40;
		file_write(fx->path, bad, size);
		fx->j = open_ok(fx, false);
		if (fx->seen.nr != 2)
			fail_msg(
				"byte %" PRIu64
				" of record 3 flipped: %u records replayed, expected 2",
				p - start, fx->seen.nr);
		expect_seen(fx, 2);
		EXPECT_U64(kvc_journal_torn(fx->j), size - start);
		expect_journal(fx, 2);
		kvc_journal_close(fx->j);
		fx->j = NULL;
	}
	free(bad);
	free(orig);
}

/* A valid record in the wrong place (its seqno repeats) ends replay. */
static void test_out_of_sequence(void **state)
{
	struct fixture *fx = *state;
	uint64_t rng = 0x5eed0008, size;
	uint8_t *orig, *twice;

	fx->j = open_ok(fx, true);
	append_ok(fx->j, rec_add(fx, &rng, 20));
	append_ok(fx->j, rec_add(fx, &rng, 44));
	kvc_journal_close(fx->j);
	fx->j = NULL;
	orig = file_read(fx->path, &size);
	twice = malloc(2 * size);
	assert_non_null(twice);
	memcpy(twice, orig, size);
	memcpy(twice + size, orig, size);
	file_write(fx->path, twice, 2 * size);

	fx->j = open_ok(fx, false);
	expect_seen(fx, 2);
	EXPECT_U64(kvc_journal_torn(fx->j), size);
	expect_journal(fx, 2);
	free(twice);
	free(orig);
}

/* Garbage after the last record: random bytes, zeros, a head alone. */
static void test_garbage_cut(void **state)
{
	struct fixture *fx = *state;
	uint64_t rng = 0x5eed0009, size, i;
	struct kvc_jrec_head h = { KVC_JREC_MAGIC, 1, 8, 0, 0 };
	uint8_t *orig, *buf;
	int kind;

	fx->j = open_ok(fx, true);
	append_random(fx, &rng, 8);
	kvc_journal_close(fx->j);
	fx->j = NULL;
	orig = file_read(fx->path, &size);
	buf = malloc(size + 4096);
	assert_non_null(buf);

	for (kind = 0; kind < 3; kind++) {
		uint64_t extra = kind == 2 ? sizeof(h) : 777;

		memcpy(buf, orig, size);
		for (i = 0; i < extra; i++)
			buf[size + i] = kind == 0 ? (uint8_t)rng_next(&rng) : 0;
		if (kind == 2) {
			h.seqno = 9;
			memcpy(buf + size, &h, sizeof(h));
		}
		file_write(fx->path, buf, size + extra);
		fx->j = open_ok(fx, false);
		expect_seen(fx, 8);
		EXPECT_U64(kvc_journal_torn(fx->j), extra);
		expect_journal(fx, 8);
		append_random(fx, &rng, 1);
		reopen(fx);
		expect_seen(fx, 9);
		EXPECT_U64(kvc_journal_torn(fx->j), 0);
		kvc_journal_close(fx->j);
		fx->j = NULL;
		/* Back to the 8 records for the next kind of garbage. */
		free(fx->recs[8].data);
		fx->nr = 8;
	}
	free(buf);
	free(orig);
}

static void test_apply_error(void **state)
{
	struct fixture *fx = *state;
	uint64_t rng = 0x5eed000a, size;
	struct kvc_journal *j = (struct kvc_journal *)&j;
	int err;

	fx->j = open_ok(fx, true);
	append_random(fx, &rng, 6);
	kvc_journal_close(fx->j);
	fx->j = NULL;
	/* A torn tail too: a failed open must not cut it. */
	{
		int fd = open(fx->path, O_WRONLY | O_APPEND);

		assert_true(fd >= 0);
		EXPECT_U64(write(fd, "torn", 4), 4);
		close(fd);
	}
	size = swap_seq_file_size(fx->path);

	fx->seen.fail_at = 4;
	fx->seen.fail_err = -EBADMSG;
	err = kvc_journal_open(fx->path, false, collect, &fx->seen, &j);
	assert_int_equal(err, -EBADMSG);
	assert_null(j);
	EXPECT_U64(fx->seen.nr, 3);
	if (!strstr(kvc_last_error(), fx->path) ||
	    !strstr(kvc_last_error(), "record 4"))
		fail_msg("message does not name the file and record: %s",
			 kvc_last_error());
	EXPECT_U64(swap_seq_file_size(fx->path), size);

	/* A callback's own message is kept inside the journal's. */
	seen_reset(&fx->seen);
	fx->seen.fail_at = 1;
	fx->seen.fail_err = -ERANGE;
	fx->seen.fail_says_why = true;
	j = NULL;
	err = kvc_journal_open(fx->path, false, collect, &fx->seen, &j);
	assert_int_equal(err, -ERANGE);
	assert_null(j);
	if (!strstr(kvc_last_error(), "the callback's reason"))
		fail_msg("callback's message lost: %s", kvc_last_error());
}

static void test_rewrite(void **state)
{
	struct fixture *fx = *state;
	uint64_t rng = 0x5eed000b;
	struct kvc_jrec recs[3];
	uint32_t i;
	int err;

	fx->j = open_ok(fx, true);
	append_random(fx, &rng, 10);
	/* The new content: three fresh records. */
	for (i = 0; i < 3; i++)
		rec_add(fx, &rng, i == 1 ? 0 : rand_len(&rng) + 1);
	for (i = 0; i < 3; i++) {
		recs[i].kind = fx->recs[10 + i].kind;
		recs[i].payload = fx->recs[10 + i].data;
		recs[i].len = fx->recs[10 + i].len;
	}
	err = kvc_journal_rewrite(fx->j, recs, 3);
	if (err)
		fail_msg("kvc_journal_rewrite() = %d: %s", err,
			 kvc_last_error());
	/* From here the fixture's records are the three. */
	for (i = 0; i < 10; i++)
		free(fx->recs[i].data);
	memmove(fx->recs, fx->recs + 10, 3 * sizeof(*fx->recs));
	fx->nr = 3;
	expect_journal(fx, 3);
	assert_int_equal(access(fx->tmp, F_OK), -1);

	/* Appends go to the new file, numbered after its records. */
	append_random(fx, &rng, 2);
	expect_journal(fx, 5);
	reopen(fx);
	expect_seen(fx, 5);
	expect_journal(fx, 5);

	/* Rewriting to nothing empties it. */
	assert_int_equal(kvc_journal_rewrite(fx->j, NULL, 0), 0);
	EXPECT_U64(kvc_journal_records(fx->j), 0);
	EXPECT_U64(kvc_journal_bytes(fx->j), 0);
	EXPECT_U64(swap_seq_file_size(fx->path), 0);
	reopen(fx);
	EXPECT_U64(fx->seen.nr, 0);
}

static void test_rewrite_failure(void **state)
{
	struct fixture *fx = *state;
	uint64_t rng = 0x5eed000c, size;
	struct kvc_jrec rec = { 3, "new", 3 };
	char inside[400];
	uint8_t *before, *after;
	int err, fd;

	fx->j = open_ok(fx, true);
	append_random(fx, &rng, 7);
	before = file_read(fx->path, &size);

	/* "<path>.tmp" cannot be created as a file: it is a directory with
	 * something in it (so neither open nor unlink can take it). */
	assert_int_equal(mkdir(fx->tmp, 0700), 0);
	snprintf(inside, sizeof(inside), "%s/x", fx->tmp);
	fd = open(inside, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);

	err = kvc_journal_rewrite(fx->j, &rec, 1);
	assert_true(err < 0);
	if (!strstr(kvc_last_error(), fx->path))
		fail_msg("message does not name the file: %s",
			 kvc_last_error());
	expect_journal(fx, 7);
	after = file_read(fx->path, &size);
	assert_memory_equal(before, after, size);
	free(after);
	free(before);

	/* The old journal still takes appends and replays whole. */
	append_random(fx, &rng, 1);
	reopen(fx);
	expect_seen(fx, 8);
	expect_journal(fx, 8);
}

/* A write that fails half-way is cut back; the next append follows on. */
static void test_append_failure(void **state)
{
	struct fixture *fx = *state;
	uint64_t rng = 0x5eed000d, size;
	struct rlimit lim;
	uint8_t big[200];
	int err;

	fx->j = open_ok(fx, true);
	append_random(fx, &rng, 4);
	size = swap_seq_file_size(fx->path);

	/* The file may grow by 40 bytes only: a 200-byte record is short. */
	lim = fx->fsize;
	lim.rlim_cur = size + 40;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	memset(big, 0xab, sizeof(big));
	err = kvc_journal_append(fx->j, 5, big, sizeof(big));
	assert_int_equal(err, -EFBIG);
	if (!strstr(kvc_last_error(), fx->path))
		fail_msg("message does not name the file: %s",
			 kvc_last_error());
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &fx->fsize), 0);
	expect_journal(fx, 4);

	append_random(fx, &rng, 2);
	reopen(fx);
	expect_seen(fx, 6);
	expect_journal(fx, 6);
	EXPECT_U64(kvc_journal_torn(fx->j), 0);
}

static void test_bad_args(void **state)
{
	struct fixture *fx = *state;
	struct kvc_journal *j = NULL;
	struct kvc_jrec rec = { 1, NULL, 4 };
	uint8_t byte = 1;

	assert_int_equal(kvc_journal_open(NULL, false, NULL, NULL, &j),
			 -EINVAL);
	assert_int_equal(kvc_journal_open("", false, NULL, NULL, &j), -EINVAL);
	assert_int_equal(kvc_journal_open(fx->path, false, NULL, NULL, NULL),
			 -EINVAL);
	assert_null(j);
	/* Not a regular file. */
	assert_true(kvc_journal_open(fx->dir, false, NULL, NULL, &j) < 0);
	assert_null(j);

	fx->j = open_ok(fx, true);
	assert_int_equal(kvc_journal_append(NULL, 1, &byte, 1), -EINVAL);
	assert_int_equal(kvc_journal_append(fx->j, 0, &byte, 1), -EINVAL);
	assert_int_equal(kvc_journal_append(fx->j, 1, NULL, 1), -EINVAL);
	assert_int_equal(kvc_journal_append(fx->j, 1, &byte, KVC_JREC_MAX + 1),
			 -EINVAL);
	assert_int_equal(kvc_journal_rewrite(NULL, NULL, 0), -EINVAL);
	assert_int_equal(kvc_journal_rewrite(fx->j, NULL, 1), -EINVAL);
	assert_int_equal(kvc_journal_rewrite(fx->j, &rec, 1), -EINVAL);
	rec.payload = &byte;
	rec.len = 1;
	rec.kind = 0;
	assert_int_equal(kvc_journal_rewrite(fx->j, &rec, 1), -EINVAL);
	rec.kind = 1;
	rec.len = KVC_JREC_MAX + 1;
	assert_int_equal(kvc_journal_rewrite(fx->j, &rec, 1), -EINVAL);

	/* Nothing was written by the refused calls. */
	EXPECT_U64(kvc_journal_records(fx->j), 0);
	EXPECT_U64(swap_seq_file_size(fx->path), 0);
	/* An empty payload may be NULL. */
	assert_int_equal(kvc_journal_append(fx->j, 2, NULL, 0), 0);
	EXPECT_U64(kvc_journal_records(fx->j), 1);
	kvc_journal_close(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_replay, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_framing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fresh_empties, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_torn_every_byte, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_torn_empty_record, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_torn_large_record, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flipped_byte, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_out_of_sequence, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_garbage_cut, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_apply_error, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rewrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rewrite_failure, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_append_failure, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
