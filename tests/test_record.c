/* Description: event traces: writer (io_uring and pwrite, threads, write errors), pool hooks and their ordering, snapshots, the hardened reader, formatting */
// SPDX-License-Identifier: MIT
/*
 * Tests of the trace writer and reader (include/kvc/record.h) and of the
 * pool's event hooks. The pool tests rebuild the pool's state from the
 * events alone and compare it with the pool itself: that is the ordering
 * rule an exact replayer relies on. Malformed traces are written byte by
 * byte, each with one fault, and must be refused with a message naming it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
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

#include "fault_backend.h"
#include "proc.h"
#include "testutil.h"
#include "tmpdir.h"

#include <kvc/kvc.h>

#define GRAN (64ull << 10)
#define BLOCK 4096ull
#define BPC ((uint32_t)(GRAN / BLOCK)) /* 16 blocks per chunk */
#define CHUNKS 16u
#define BLOCKS (CHUNKS * BPC)
/* How long a forked writer may take; it writes 100 events. */
#define CHILD_TIMEOUT_MS 30000

struct fixture {
	char dir[64];
	char path[96];
	struct kvc_backend *be;
	struct kvc_pool *pool;
	struct kvc_pool_params params;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	if (tmpdir_make(fx->dir, sizeof(fx->dir), "kvc-test-record")) {
		free(fx);
		return -1;
	}
	snprintf(fx->path, sizeof(fx->path), "%s/t.kvct", fx->dir);
	if (kvc_backend_open_host(GRAN, &fx->be)) {
		tmpdir_remove(fx->dir);
		free(fx);
		return -1;
	}
	kvc_pool_params_init(&fx->params);
	fx->params.block_bytes = BLOCK;
	fx->params.capacity_blocks = BLOCKS;
	fx->params.empty_chunks_kept = 1;
	fx->params.backend = fx->be;
	fx->params.flags = KVC_POOL_NO_STATS_PAGE;
	fx->params.name = "rec-test";
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	int err;

	kvc_pool_destroy(fx->pool);
	kvc_backend_close(fx->be);
	err = tmpdir_remove(fx->dir);
	if (err)
		fprintf(stderr, "test_record: cannot remove %s: %s\n", fx->dir,
			strerror(errno));
	free(fx);
	return err;
}

static struct kvc_recorder *rec_open(struct fixture *fx, uint64_t buffer,
				     bool sync_io)
{
	struct kvc_recorder_params rp = { buffer, sync_io };
	struct kvc_recorder *rec = NULL;
	int err = kvc_recorder_open(fx->path, &rp, &rec);

	if (err)
		fail_msg("kvc_recorder_open() = %d: %s", err, kvc_last_error());
	return rec;
}

static void rec_close_ok(struct kvc_recorder *rec)
{
	int err = kvc_recorder_close(rec);

	if (err)
		fail_msg("kvc_recorder_close() = %d: %s", err,
			 kvc_last_error());
}

#define emit_ok(rec, kind, ...) \
	emit_p(rec, kind, (uint64_t[]){ __VA_ARGS__, 0, 0, 0, 0, 0, 0 })

static void emit_p(struct kvc_recorder *rec, enum kvc_rec_kind kind,
		   const uint64_t *p)
{
	int err = kvc_recorder_emit(rec, kind, p);

	if (err)
		fail_msg("kvc_recorder_emit(%u) = %d: %s", (unsigned)kind, err,
			 kvc_last_error());
}

/* Read a whole trace; fails the test unless it is clean. */
static struct kvc_rec_event *read_all(const char *path, uint64_t *n)
{
	struct kvc_rec_reader *r;
	struct kvc_rec_event *evs = NULL, ev;
	uint64_t cap = 0;
	int ret;

	*n = 0;
	ret = kvc_rec_reader_open(path, &r);
	if (ret)
		fail_msg("kvc_rec_reader_open() = %d: %s", ret,
			 kvc_last_error());
	while ((ret = kvc_rec_next(r, &ev)) == 1) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 1024;
			evs = realloc(evs, cap * sizeof(*evs));
			assert_non_null(evs);
		}
		EXPECT_U64(kvc_rec_reader_index(r), *n);
		evs[(*n)++] = ev;
	}
	if (ret)
		fail_msg("kvc_rec_next() = %d at event %" PRIu64 ": %s", ret,
			 *n, kvc_last_error());
	kvc_rec_reader_close(r);
	assert_true(*n > 0);
	EXPECT_U64(evs[*n - 1].kind, KVC_REC_END);
	return evs;
}

/* ------------------------------------------------------------------ */
/* writer round trips */

/* One of every kind, in an order the reader accepts; @round varies ids. */
static void emit_every_kind(struct kvc_recorder *rec, uint32_t round)
{
	uint64_t b = round % 8;

	assert_int_equal(kvc_recorder_step(rec, round + 1), 0);
	emit_ok(rec, KVC_REC_SAMPLE, 1000, 900, 800 + b, 700, 600, 0);
	emit_ok(rec, KVC_REC_ARRIVE, round, 40, 8, 12345);
	emit_ok(rec, KVC_REC_APPEND, round, 40, 40, 0);
	emit_ok(rec, KVC_REC_COMPRESS, round, 120, 60, 2);
	emit_ok(rec, KVC_REC_PREEMPT, round, 3, 0, 0);
	emit_ok(rec, KVC_REC_FINISH, round, 48, 0, 0);
	emit_ok(rec, KVC_REC_CHUNK_MAP, 1, 1500, 0, 0);
	emit_ok(rec, KVC_REC_ALLOC, 2, 0, 0, 0);
	emit_ok(rec, KVC_REC_BLK_ALLOC, 16 + b, 0, 0, 0);
	emit_ok(rec, KVC_REC_BLK_ALLOC, 24 + b, 0, 0, 0);
	emit_ok(rec, KVC_REC_ALLOC_FAIL, 500, 3, (uint64_t)(int64_t)-ENOMEM, 0);
	emit_ok(rec, KVC_REC_OWNER, 16 + b, 77, 0, 0);
	emit_ok(rec, KVC_REC_COMPACT, 65536, 2, 1, 0);
	emit_ok(rec, KVC_REC_MOVE, 24 + b, 17 + b, 0, 0);
	emit_ok(rec, KVC_REC_FREE, 2, round + 1, 0, 0);
	emit_ok(rec, KVC_REC_BLK_FREE, 16 + b, 0, 0, 0);
	emit_ok(rec, KVC_REC_BLK_FREE, 17 + b, 0, 0, 0);
	emit_ok(rec, KVC_REC_FREE_DONE, round + 1, 0, 0, 0);
	emit_ok(rec, KVC_REC_CHUNK_UNMAP, 1, 900, 0, 0);
	emit_ok(rec, KVC_REC_SNAPSHOT, 1, 1, 0, 0);
	emit_ok(rec, KVC_REC_SNAP_CHUNK, 0, 0, 0, 0);
	emit_ok(rec, KVC_REC_SNAP_BLOCK, 3, 9, 0, 0);
}

static void emit_head(struct kvc_recorder *rec)
{
	emit_ok(rec, KVC_REC_CONFIG, BLOCK, GRAN, BLOCKS, 1, 0, 0);
	emit_ok(rec, KVC_REC_SHAPE, 2, 3, 64, 16, 1, 9);
	assert_int_equal(
		kvc_recorder_name(rec, KVC_REC_NAME_POLICY, "kvcompress"), 0);
}

#define ROUNDS 40u
#define KINDS_PER_ROUND 23u

static void roundtrip(struct fixture *fx, bool sync_io)
{
	struct kvc_recorder_stats st;
	struct kvc_recorder *rec;
	struct kvc_rec_event *evs;
	bool seen[KVC_REC_KIND_MAX] = { false };
	uint64_t n, i, k;
	struct stat sb;

	/* Three events a buffer: a flush every third event. */
	rec = rec_open(fx, 3 * 64 + 10, sync_io);
	emit_head(rec);
	for (i = 0; i < ROUNDS; i++)
		emit_every_kind(rec, (uint32_t)i);
	assert_int_equal(kvc_recorder_flush(rec), 0);
	kvc_recorder_get_stats(rec, &st);
	EXPECT_U64(st.events, 3 + ROUNDS * KINDS_PER_ROUND);
	EXPECT_U64(st.lost, 0);
	EXPECT_U64(st.bytes, 64 + st.events * 64);
	assert_true(st.flushes >= st.events / 3);
	if (sync_io)
		assert_false(st.uring);
	rec_close_ok(rec);

	assert_int_equal(stat(fx->path, &sb), 0);
	EXPECT_U64(sb.st_size, 64 + (4 + ROUNDS * KINDS_PER_ROUND) * 64);
	evs = read_all(fx->path, &n);
	EXPECT_U64(n, 4 + ROUNDS * KINDS_PER_ROUND);
	EXPECT_U64(evs[0].kind, KVC_REC_CONFIG);
	EXPECT_U64(evs[0].p[2], BLOCKS);
	EXPECT_U64(evs[2].kind, KVC_REC_NAME);
	assert_string_equal((const char *)&evs[2].p[1], "kvcompress");
	for (i = 0; i < ROUNDS; i++) {
		const struct kvc_rec_event *e = &evs[3 + i * KINDS_PER_ROUND];

		EXPECT_U64(e[0].kind, KVC_REC_STEP);
		EXPECT_U64(e[0].p[0], i + 1);
		EXPECT_U64(e[0].step, i + 1);
		EXPECT_U64(e[2].kind, KVC_REC_ARRIVE);
		EXPECT_U64(e[2].p[0], i);
		EXPECT_U64(e[2].step, i + 1);
		EXPECT_U64(e[9].kind, KVC_REC_BLK_ALLOC);
		EXPECT_U64(e[9].p[0], 16 + i % 8);
		EXPECT_U64(e[11].kind, KVC_REC_ALLOC_FAIL);
		EXPECT_U64((int64_t)e[11].p[2], -ENOMEM);
	}
	for (i = 0; i < n; i++) {
		EXPECT_U64(evs[i].flags, 0);
		if (i)
			assert_true(evs[i].t_ns >= evs[i - 1].t_ns);
		seen[evs[i].kind] = true;
	}
	for (k = 1; k < KVC_REC_KIND_MAX; k++)
		if (kvc_rec_kind_name((uint32_t)k) && !seen[k])
			fail_msg("kind %s never came back",
				 kvc_rec_kind_name((uint32_t)k));
	/* END counts what came before it. */
	EXPECT_U64(evs[n - 1].p[0], n - 1);
	EXPECT_U64(evs[n - 1].p[1], 0);
	free(evs);
}

static void test_roundtrip_uring(void **state)
{
	roundtrip(*state, false);
}

static void test_roundtrip_sync(void **state)
{
	roundtrip(*state, true);
}

static void test_writer_args(void **state)
{
	struct fixture *fx = *state;
	struct kvc_recorder_params rp = { 1ull << 40, false };
	struct kvc_recorder *rec = NULL;
	uint64_t p[KVC_REC_PAYLOAD] = { 0 };

	assert_int_equal(kvc_recorder_open(NULL, NULL, &rec), -EINVAL);
	assert_int_equal(kvc_recorder_open(fx->path, &rp, &rec), -EINVAL);
	assert_null(rec);
	assert_int_equal(
		kvc_recorder_open("/nonexistent-dir/x.kvct", NULL, &rec),
		-ENOENT);
	assert_true(strstr(kvc_last_error(), "/nonexistent-dir") != NULL);
	/* NULL recorders are no-ops, as documented. */
	assert_int_equal(kvc_recorder_emit(NULL, KVC_REC_STEP, p), 0);
	assert_int_equal(kvc_recorder_close(NULL), 0);

	rec = rec_open(fx, 0, false);
	assert_int_equal(kvc_recorder_emit(rec, (enum kvc_rec_kind)77, p),
			 -EINVAL);
	assert_int_equal(kvc_recorder_step(rec, 5), 0);
	/* Steps never go back: readers would refuse the trace. */
	assert_int_equal(kvc_recorder_step(rec, 4), -EINVAL);
	rec_close_ok(rec);
}

/* ------------------------------------------------------------------ */
/* threads */

#define THREADS 4u
#define PER_THREAD 3000u

struct emitter {
	struct kvc_recorder *rec;
	uint32_t id;
	int err;
};

static void *emit_thread(void *arg)
{
	struct emitter *e = arg;
	uint64_t p[KVC_REC_PAYLOAD] = { 0 };
	uint32_t i;

	for (i = 0; i < PER_THREAD && !e->err; i++) {
		p[0] = e->id;
		p[1] = i;
		e->err = kvc_recorder_emit(e->rec, KVC_REC_APPEND, p);
	}
	return NULL;
}

static void threads(struct fixture *fx, bool sync_io)
{
	struct emitter em[THREADS];
	pthread_t tid[THREADS];
	uint64_t next[THREADS] = { 0 }, n, i;
	struct kvc_rec_event *evs;
	struct kvc_recorder *rec;

	rec = rec_open(fx, 64 * 7, sync_io);
	emit_head(rec);
	for (i = 0; i < THREADS; i++) {
		em[i] = (struct emitter){ rec, (uint32_t)i, 0 };
		assert_int_equal(
			pthread_create(&tid[i], NULL, emit_thread, &em[i]), 0);
	}
	for (i = 0; i < THREADS; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(em[i].err, 0);
	}
	rec_close_ok(rec);

	evs = read_all(fx->path, &n);
	EXPECT_U64(n, 3 + THREADS * PER_THREAD + 1);
	for (i = 3; i < n - 1; i++) {
		uint64_t t = evs[i].p[0];

		EXPECT_U64(evs[i].kind, KVC_REC_APPEND);
		assert_true(t < THREADS);
		/* Each thread's events arrive whole and in its order. */
		EXPECT_U64(evs[i].p[1], next[t]);
		next[t]++;
	}
	for (i = 0; i < THREADS; i++)
		EXPECT_U64(next[i], PER_THREAD);
	free(evs);
}

static void test_threads_uring(void **state)
{
	threads(*state, false);
}

static void test_threads_sync(void **state)
{
	threads(*state, true);
}

/* ------------------------------------------------------------------ */
/* write errors */

/*
 * In a child whose file size limit cuts the trace short: emits and close
 * must return the error, never crash; events after it count as lost.
 * Exit 0 when all of that held.
 */
static int write_error_child(const char *path, bool sync_io)
{
	struct kvc_recorder_params rp = { 4 * 64, sync_io };
	struct rlimit rl = { 64 + 64 * 6, 64 + 64 * 6 };
	struct kvc_recorder_stats st;
	struct kvc_recorder *rec;
	uint64_t p[KVC_REC_PAYLOAD] = { 0 };
	int first = 0, err, i;

	signal(SIGXFSZ, SIG_IGN);
	if (setrlimit(RLIMIT_FSIZE, &rl))
		return 10;
	if (kvc_recorder_open(path, &rp, &rec))
		return 11;
	for (i = 0; i < 100; i++) {
		err = kvc_recorder_emit(rec, KVC_REC_APPEND, p);
		if (err && !first)
			first = err;
		if (first && err != first)
			return 12; /* the first error sticks */
	}
	err = kvc_recorder_flush(rec);
	if (!first)
		first = err;
	if (first != -EFBIG)
		return 13;
	kvc_recorder_get_stats(rec, &st);
	if (!st.lost || st.events + st.lost != 100)
		return 14;
	if (kvc_recorder_close(rec) != -EFBIG)
		return 15;
	return 0;
}

static void write_error(struct fixture *fx, bool sync_io)
{
	int status, err;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(write_error_child(fx->path, sync_io));
	/* A recorder stuck on the failing write must not hang the suite. */
	err = proc_wait_exit(pid, CHILD_TIMEOUT_MS, &status);
	if (err == -ETIMEDOUT)
		fail_msg("the writing child did not finish in %d ms",
			 CHILD_TIMEOUT_MS);
	assert_int_equal(err, 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_write_error_sync(void **state)
{
	write_error(*state, true);
}

static void test_write_error_uring(void **state)
{
	write_error(*state, false);
}

static void test_dev_full(void **state)
{
	struct kvc_recorder *rec = NULL;
	int err;

	(void)state;
	if (access("/dev/full", W_OK))
		skip();
	/* The header cannot be written: the open says so, nothing leaks. */
	err = kvc_recorder_open("/dev/full", NULL, &rec);
	assert_int_equal(err, -ENOSPC);
	assert_null(rec);
	assert_true(strstr(kvc_last_error(), "header") != NULL);
}

/* ------------------------------------------------------------------ */
/* pool hooks */

/**
 * struct shadow - A pool rebuilt from its events alone.
 * @live: per block.
 * @owner: per block.
 * @mapped: per chunk.
 * @snapshots: snapshots seen.
 */
struct shadow {
	bool live[BLOCKS];
	uint64_t owner[BLOCKS];
	bool mapped[CHUNKS];
	uint64_t snapshots;
};

static bool chunk_empty(const struct shadow *s, uint64_t c)
{
	uint32_t i;

	for (i = 0; i < BPC; i++)
		if (s->live[c * BPC + i])
			return false;
	return true;
}

/* Check a snapshot at @e against the shadow; return events it spans. */
static uint64_t check_snapshot(const struct shadow *s,
			       const struct kvc_rec_event *e, uint64_t left)
{
	uint64_t chunks = 0, blocks = 0, i, j;

	for (i = 0; i < CHUNKS; i++)
		chunks += s->mapped[i];
	for (i = 0; i < BLOCKS; i++)
		blocks += s->live[i];
	EXPECT_U64(e[0].p[0], chunks);
	EXPECT_U64(e[0].p[1], blocks);
	assert_true(left >= 1 + chunks + blocks);
	for (j = 1; j <= chunks; j++) {
		EXPECT_U64(e[j].kind, KVC_REC_SNAP_CHUNK);
		assert_true(s->mapped[e[j].p[0]]);
	}
	for (; j <= chunks + blocks; j++) {
		EXPECT_U64(e[j].kind, KVC_REC_SNAP_BLOCK);
		assert_true(s->live[e[j].p[0]]);
		EXPECT_U64(e[j].p[1], s->owner[e[j].p[0]]);
	}
	return 1 + chunks + blocks;
}

/*
 * Apply every event in file order; each must be possible in the state the
 * ones before it built (the ordering rule), and every snapshot must agree.
 */
static void replay(struct shadow *s, const struct kvc_rec_event *evs,
		   uint64_t n)
{
	uint64_t i = 0, j, id, c;

	memset(s, 0, sizeof(*s));
	while (i < n) {
		const struct kvc_rec_event *e = &evs[i];

		switch (e->kind) {
		case KVC_REC_CHUNK_MAP:
			assert_false(s->mapped[e->p[0]]);
			s->mapped[e->p[0]] = true;
			break;
		case KVC_REC_CHUNK_UNMAP:
			assert_true(s->mapped[e->p[0]]);
			assert_true(chunk_empty(s, e->p[0]));
			s->mapped[e->p[0]] = false;
			break;
		case KVC_REC_ALLOC:
		case KVC_REC_FREE:
			for (j = 1; j <= e->p[0]; j++) {
				id = e[j].p[0];
				c = id / BPC;
				assert_true(s->mapped[c]);
				if (e->kind == KVC_REC_ALLOC) {
					EXPECT_U64(e[j].kind,
						   KVC_REC_BLK_ALLOC);
					assert_false(s->live[id]);
					s->live[id] = true;
					s->owner[id] = 0;
				} else {
					EXPECT_U64(e[j].kind, KVC_REC_BLK_FREE);
					assert_true(s->live[id]);
					s->live[id] = false;
				}
			}
			i += e->p[0];
			break;
		case KVC_REC_OWNER:
			assert_true(s->live[e->p[0]]);
			s->owner[e->p[0]] = e->p[1];
			break;
		case KVC_REC_MOVE:
			assert_true(s->live[e->p[0]]);
			assert_false(s->live[e->p[1]]);
			assert_true(s->mapped[e->p[1] / BPC]);
			EXPECT_U64(e->p[2], s->owner[e->p[0]]);
			s->live[e->p[1]] = true;
			s->owner[e->p[1]] = e->p[2];
			s->live[e->p[0]] = false;
			break;
		case KVC_REC_SNAPSHOT:
			if (!s->snapshots && e->p[0]) {
				/* A snapshot at the start builds the state. */
				for (j = 1; j <= e->p[0]; j++)
					s->mapped[e[j].p[0]] = true;
				for (; j <= e->p[0] + e->p[1]; j++) {
					s->live[e[j].p[0]] = true;
					s->owner[e[j].p[0]] = e[j].p[1];
				}
			}
			s->snapshots++;
			i += check_snapshot(s, e, n - i) - 1;
			break;
		default:
			break;
		}
		i++;
	}
}

/* The shadow equals the pool. */
static void compare_pool(const struct shadow *s, struct kvc_pool *pool)
{
	int32_t occ[CHUNKS];
	uint64_t owner;
	uint32_t i, live;

	EXPECT_U64(kvc_pool_occupancy(pool, occ, CHUNKS), CHUNKS);
	for (i = 0; i < CHUNKS; i++) {
		if (s->mapped[i] != (occ[i] >= 0))
			fail_msg(
				"chunk %u: mapped %d in the trace, occupancy %d",
				i, s->mapped[i], occ[i]);
	}
	for (i = 0, live = 0; i < BLOCKS; i++) {
		if (s->live[i] != kvc_pool_is_live(pool, i))
			fail_msg("block %u: live %d in the trace", i,
				 s->live[i]);
		if (!s->live[i])
			continue;
		live++;
		assert_int_equal(kvc_pool_get_owner(pool, i, &owner), 0);
		EXPECT_U64(owner, s->owner[i]);
	}
	assert_true(live > 0);
}

static void test_pool_workload(void **state)
{
	struct fixture *fx = *state;
	struct kvc_compact_result res;
	struct kvc_compact_params cp = { 0 };
	uint32_t held[BLOCKS], nr_held = 0, ids[32], n, i, k;
	uint64_t seed = 0x1234567, nr, moved = 0, fails = 0;
	struct kvc_rec_event *evs;
	struct kvc_recorder *rec;
	struct kvc_pool_stats st;
	struct shadow s;
	int op, err;

	fx->params.max_mapped_bytes = 12 * GRAN;
	assert_int_equal(kvc_pool_create(&fx->params, &fx->pool), 0);
	rec = rec_open(fx, 64 * 16, false);
	assert_int_equal(kvc_pool_set_recorder(fx->pool, rec), 0);
	/* A second recorder is refused while one is attached. */
	assert_int_equal(kvc_pool_set_recorder(fx->pool, (void *)&fx), -EBUSY);

	for (k = 0; k < 3000; k++) {
		op = (int)(rng_next(&seed) % 10);
		if (op < 4) {
			n = 1 + (uint32_t)(rng_next(&seed) % 24);
			err = kvc_pool_alloc(fx->pool, n, ids);
			if (err) {
				assert_int_equal(err, -ENOMEM);
				fails++;
			}
			for (i = 0; !err && i < n; i++)
				held[nr_held++] = ids[i];
		} else if (op < 8 && nr_held) {
			n = 1 + (uint32_t)(rng_next(&seed) %
					   (nr_held < 20 ? nr_held : 20));
			for (i = 0; i < n; i++) {
				uint32_t j =
					(uint32_t)(rng_next(&seed) % nr_held);

				ids[i] = held[j];
				held[j] = held[--nr_held];
			}
			assert_int_equal(kvc_pool_free(fx->pool, n, ids), 0);
		} else if (op == 8 && nr_held) {
			i = (uint32_t)(rng_next(&seed) % nr_held);
			assert_int_equal(kvc_pool_set_owner(fx->pool, held[i],
							    rng_next(&seed)),
					 0);
		} else if (op == 9) {
			if (rng_next(&seed) % 2) {
				assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
			} else {
				assert_int_equal(
					kvc_pool_compact(fx->pool, &cp, &res),
					0);
				moved += res.blocks_moved;
			}
		}
		/* Compaction moves blocks: take the ids back from the pool. */
		if (op == 9) {
			for (i = 0, nr_held = 0; i < BLOCKS; i++)
				if (kvc_pool_is_live(fx->pool, i))
					held[nr_held++] = i;
		}
		CHECK(fx->pool);
	}
	assert_true(moved > 0);
	assert_true(fails > 0);
	/* A pool that still holds blocks, for the closing snapshot. */
	if (!nr_held)
		assert_int_equal(kvc_pool_alloc(fx->pool, 3, ids), 0);
	kvc_pool_get_stats(fx->pool, &st, NULL);
	assert_int_equal(kvc_pool_set_recorder(fx->pool, NULL), 0);
	rec_close_ok(rec);

	evs = read_all(fx->path, &nr);
	EXPECT_U64(evs[0].kind, KVC_REC_CONFIG);
	EXPECT_U64(evs[0].p[0], BLOCK);
	EXPECT_U64(evs[0].p[1], GRAN);
	EXPECT_U64(evs[0].p[2], BLOCKS);
	EXPECT_U64(evs[0].p[5], 12);
	EXPECT_U64(evs[1].kind, KVC_REC_NAME);
	EXPECT_U64(evs[1].p[0], KVC_REC_NAME_POOL);
	assert_string_equal((const char *)&evs[1].p[1], "rec-test");
	EXPECT_U64(evs[2].p[0], KVC_REC_NAME_BACKEND);
	assert_string_equal((const char *)&evs[2].p[1], "host");
	replay(&s, evs, nr);
	/* The closing snapshot, then END. */
	EXPECT_U64(s.snapshots, 1);
	assert_true(nr > 2 + st.chunks_mapped + st.blocks_live);
	EXPECT_U64(evs[nr - 2 - st.chunks_mapped - st.blocks_live].kind,
		   KVC_REC_SNAPSHOT);
	compare_pool(&s, fx->pool);
	free(evs);
}

static void test_attach_snapshot(void **state)
{
	struct fixture *fx = *state;
	struct kvc_rec_event *evs;
	struct kvc_recorder *rec;
	uint32_t ids[20], i;
	uint64_t n;
	struct shadow s;

	assert_int_equal(kvc_pool_create(&fx->params, &fx->pool), 0);
	assert_int_equal(kvc_pool_alloc(fx->pool, 20, ids), 0);
	for (i = 0; i < 20; i += 3)
		assert_int_equal(kvc_pool_set_owner(fx->pool, ids[i], 100 + i),
				 0);
	CHECK(fx->pool);

	rec = rec_open(fx, 0, false);
	assert_int_equal(kvc_pool_set_recorder(fx->pool, rec), 0);
	assert_int_equal(kvc_pool_free(fx->pool, 2, ids), 0);
	assert_int_equal(kvc_pool_set_recorder(fx->pool, NULL), 0);
	/* Detached: nothing more is recorded. */
	assert_int_equal(kvc_pool_free(fx->pool, 2, ids + 2), 0);
	CHECK(fx->pool);
	rec_close_ok(rec);

	evs = read_all(fx->path, &n);
	/* config, 2 names, snapshot {2 chunks, 20 blocks} */
	EXPECT_U64(evs[3].kind, KVC_REC_SNAPSHOT);
	EXPECT_U64(evs[3].p[0], 2);
	EXPECT_U64(evs[3].p[1], 20);
	EXPECT_U64(evs[4].kind, KVC_REC_SNAP_CHUNK);
	EXPECT_U64(evs[4].p[0], 0);
	EXPECT_U64(evs[5].p[0], 1);
	for (i = 0; i < 20; i++) {
		uint32_t j;

		EXPECT_U64(evs[6 + i].kind, KVC_REC_SNAP_BLOCK);
		/* In block order; the owners as tagged. */
		if (i)
			assert_true(evs[6 + i].p[0] > evs[5 + i].p[0]);
		for (j = 0; j < 20 && ids[j] != evs[6 + i].p[0]; j++)
			;
		assert_true(j < 20);
		EXPECT_U64(evs[6 + i].p[1], j % 3 ? 0 : 100 + j);
	}
	EXPECT_U64(evs[26].kind, KVC_REC_FREE);
	EXPECT_U64(evs[26].p[0], 2);
	EXPECT_U64(evs[26].p[1], 0);
	EXPECT_U64(evs[27].p[0], ids[0]);
	EXPECT_U64(evs[28].p[0], ids[1]);
	/* The closing snapshot: 18 blocks left, then END. */
	EXPECT_U64(evs[29].kind, KVC_REC_SNAPSHOT);
	EXPECT_U64(evs[29].p[1], 18);
	EXPECT_U64(n, 30 + 2 + 18 + 1);
	replay(&s, evs, n);
	EXPECT_U64(s.snapshots, 2);
	free(evs);
}

static void test_empty_pool_closing_snapshot(void **state)
{
	struct fixture *fx = *state;
	struct kvc_rec_event *evs;
	struct kvc_recorder *rec;
	uint32_t ids[40];
	uint64_t n;

	fx->params.empty_chunks_kept = 0;
	fx->params.name = NULL;
	assert_int_equal(kvc_pool_create(&fx->params, &fx->pool), 0);
	rec = rec_open(fx, 0, true);
	assert_int_equal(kvc_pool_set_recorder(fx->pool, rec), 0);
	/* Attaching the same recorder again changes nothing. */
	assert_int_equal(kvc_pool_set_recorder(fx->pool, rec), 0);
	assert_int_equal(kvc_pool_alloc(fx->pool, 40, ids), 0);
	assert_int_equal(kvc_pool_free(fx->pool, 40, ids), 0);
	CHECK(fx->pool);
	assert_int_equal(kvc_pool_set_recorder(fx->pool, NULL), 0);
	rec_close_ok(rec);

	evs = read_all(fx->path, &n);
	/* config, backend name (no pool name), 3 maps, alloc + 40 ... */
	EXPECT_U64(evs[1].kind, KVC_REC_NAME);
	EXPECT_U64(evs[1].p[0], KVC_REC_NAME_BACKEND);
	EXPECT_U64(evs[2].kind, KVC_REC_CHUNK_MAP);
	EXPECT_U64(evs[3].kind, KVC_REC_CHUNK_MAP);
	EXPECT_U64(evs[4].kind, KVC_REC_CHUNK_MAP);
	EXPECT_U64(evs[5].kind, KVC_REC_ALLOC);
	EXPECT_U64(evs[5].p[0], 40);
	/* The free, then the unmaps of the trim it caused. */
	EXPECT_U64(evs[46].kind, KVC_REC_FREE);
	EXPECT_U64(evs[87].kind, KVC_REC_CHUNK_UNMAP);
	EXPECT_U64(evs[89].kind, KVC_REC_CHUNK_UNMAP);
	EXPECT_U64(evs[90].kind, KVC_REC_SNAPSHOT);
	EXPECT_U64(evs[90].p[0], 0);
	EXPECT_U64(evs[90].p[1], 0);
	EXPECT_U64(evs[91].kind, KVC_REC_END);
	EXPECT_U64(n, 92);
	free(evs);
}

/*
 * A pool destroyed with its recorder still attached: the trace closes
 * with a snapshot of the pool as it was, not with unmaps of chunks that
 * still hold blocks, and replays exactly. The recorder is closed after.
 */
static void test_destroy_detaches(void **state)
{
	struct fixture *fx = *state;
	struct kvc_replay_result res = { 0 };
	struct kvc_rec_event *evs;
	struct kvc_recorder *rec;
	uint32_t ids[40];
	uint64_t n, i;

	assert_int_equal(kvc_pool_create(&fx->params, &fx->pool), 0);
	rec = rec_open(fx, 0, true);
	assert_int_equal(kvc_pool_set_recorder(fx->pool, rec), 0);
	assert_int_equal(kvc_pool_alloc(fx->pool, 40, ids), 0);
	assert_int_equal(kvc_pool_free(fx->pool, 5, ids), 0);
	assert_int_equal(kvc_pool_destroy(fx->pool), 0);
	fx->pool = NULL;
	rec_close_ok(rec);

	evs = read_all(fx->path, &n);
	assert_true(n >= 2);
	for (i = 0; i < n; i++)
		assert_int_not_equal(evs[i].kind, KVC_REC_CHUNK_UNMAP);
	/* alloc 40, free 5: 3 chunks, 35 blocks; then their records. */
	EXPECT_U64(evs[n - 1].kind, KVC_REC_END);
	EXPECT_U64(evs[n - 2 - 35 - 3].kind, KVC_REC_SNAPSHOT);
	EXPECT_U64(evs[n - 2 - 35 - 3].p[0], 3);
	EXPECT_U64(evs[n - 2 - 35 - 3].p[1], 35);
	free(evs);
	if (kvc_replay_exact(fx->path, &res))
		fail_msg("kvc_replay_exact: %s", kvc_last_error());
	assert_true(res.final_snapshot);
	EXPECT_U64(res.allocs, 40);
	EXPECT_U64(res.frees, 5);
}

/*
 * A grow that fails on its third map: the trace shows the two maps, the
 * unwind's two unmaps as they happened, then ALLOC_FAIL; the pool is
 * unchanged and the next alloc's events follow.
 */
static void test_failed_grow(void **state)
{
	struct fixture *fx = *state;
	struct kvc_backend *be, *inner;
	struct kvc_rec_event *evs;
	struct kvc_recorder *rec;
	uint32_t ids[3 * BPC];
	struct shadow s;
	uint64_t n;

	assert_int_equal(kvc_backend_open_host(GRAN, &inner), 0);
	be = fault_backend_wrap(inner);
	assert_non_null(be);
	fx->params.backend = be;
	fx->params.empty_chunks_kept = 0;
	assert_int_equal(kvc_pool_create(&fx->params, &fx->pool), 0);
	rec = rec_open(fx, 0, false);
	assert_int_equal(kvc_pool_set_recorder(fx->pool, rec), 0);
	fault_backend_fail(be, FAULT_MAP, 3, -ENOMEM);
	assert_int_equal(kvc_pool_alloc(fx->pool, 3 * BPC, ids), -ENOMEM);
	CHECK(fx->pool);
	assert_int_equal(kvc_pool_alloc(fx->pool, 2, ids), 0);
	CHECK(fx->pool);
	assert_int_equal(kvc_pool_set_recorder(fx->pool, NULL), 0);
	rec_close_ok(rec);

	evs = read_all(fx->path, &n);
	/* config, 2 names */
	EXPECT_U64(evs[3].kind, KVC_REC_CHUNK_MAP);
	EXPECT_U64(evs[3].p[0], 0);
	EXPECT_U64(evs[4].kind, KVC_REC_CHUNK_MAP);
	EXPECT_U64(evs[4].p[0], 1);
	/* Unwound latest first. */
	EXPECT_U64(evs[5].kind, KVC_REC_CHUNK_UNMAP);
	EXPECT_U64(evs[5].p[0], 1);
	EXPECT_U64(evs[6].kind, KVC_REC_CHUNK_UNMAP);
	EXPECT_U64(evs[6].p[0], 0);
	EXPECT_U64(evs[7].kind, KVC_REC_ALLOC_FAIL);
	EXPECT_U64(evs[7].p[0], 3 * BPC);
	EXPECT_U64(evs[7].p[1], 0);
	EXPECT_U64((int64_t)evs[7].p[2], -ENOMEM);
	EXPECT_U64(evs[8].kind, KVC_REC_CHUNK_MAP);
	EXPECT_U64(evs[9].kind, KVC_REC_ALLOC);
	EXPECT_U64(evs[9].p[0], 2);
	replay(&s, evs, n);
	free(evs);
	kvc_pool_destroy(fx->pool);
	fx->pool = NULL;
	kvc_backend_close(be);
}

/* ------------------------------------------------------------------ */
/* malformed traces */

#define NR_BASE 9

/* A small good trace: config, name, map, alloc 2, a snapshot, end. */
static void base_events(struct kvc_rec_event *e)
{
	static const uint64_t p[NR_BASE][3] = {
		{ BLOCK, GRAN, BLOCKS },
		{ KVC_REC_NAME_BACKEND, 0x74736f68 /* "host" */, 0 },
		{ 0, 1500, 0 },
		{ 2, 0, 0 },
		{ 5, 0, 0 },
		{ 6, 0, 0 },
		{ 1, 0, 0 },
		{ 0, 0, 0 },
		{ NR_BASE - 1, 0, 0 },
	};
	static const uint16_t kinds[NR_BASE] = {
		KVC_REC_CONFIG,	  KVC_REC_NAME,	      KVC_REC_CHUNK_MAP,
		KVC_REC_ALLOC,	  KVC_REC_BLK_ALLOC,  KVC_REC_BLK_ALLOC,
		KVC_REC_SNAPSHOT, KVC_REC_SNAP_CHUNK, KVC_REC_END,
	};
	uint32_t i;

	memset(e, 0, NR_BASE * sizeof(*e));
	for (i = 0; i < NR_BASE; i++) {
		e[i].t_ns = 100 * (i + 1);
		e[i].kind = kinds[i];
		memcpy(e[i].p, p[i], sizeof(p[i]));
	}
}

static void write_raw(const char *path, const struct kvc_rec_header *h,
		      const void *events, size_t bytes)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(h, sizeof(*h), 1, f), 1);
	if (bytes)
		assert_int_equal(fwrite(events, bytes, 1, f), 1);
	assert_int_equal(fclose(f), 0);
}

static void good_header(struct kvc_rec_header *h)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, KVC_REC_MAGIC, 8);
	h->version = KVC_REC_VERSION;
	h->header_bytes = 64;
	h->event_bytes = 64;
}

/* Read @path; expect the open or an event to fail with @want in the text. */
static void expect_bad(const char *path, const char *want, const char *what)
{
	struct kvc_rec_reader *r;
	struct kvc_rec_event ev;
	int ret;

	ret = kvc_rec_reader_open(path, &r);
	if (!ret) {
		while ((ret = kvc_rec_next(r, &ev)) == 1)
			;
		/* The error sticks. */
		if (ret < 0)
			assert_int_equal(kvc_rec_next(r, &ev), ret);
		kvc_rec_reader_close(r);
	}
	if (ret != -EPROTO)
		fail_msg("%s: read = %d, expected -EPROTO (%s)", what, ret,
			 kvc_last_error());
	if (!strstr(kvc_last_error(), want))
		fail_msg("%s: message '%s' does not say '%s'", what,
			 kvc_last_error(), want);
}

static void test_malformed(void **state)
{
	struct fixture *fx = *state;
	struct kvc_rec_event e[NR_BASE + 4];
	struct kvc_rec_header h;
	uint64_t n;
	struct kvc_rec_event *evs;

	good_header(&h);
	base_events(e);
	write_raw(fx->path, &h, e, sizeof(struct kvc_rec_event) * NR_BASE);
	evs = read_all(fx->path, &n);
	EXPECT_U64(n, NR_BASE);
	free(evs);

	/* Cut mid-event, and cut before END. */
	write_raw(fx->path, &h, e, 64 * NR_BASE - 10);
	expect_bad(fx->path, "whole number", "cut mid-event");
	write_raw(fx->path, &h, e, 64 * (NR_BASE - 1));
	expect_bad(fx->path, "truncated after event 7", "cut before END");
	write_raw(fx->path, &h, e, 0);
	expect_bad(fx->path, "no events", "header only");

	good_header(&h);
	h.magic[0] = 'X';
	write_raw(fx->path, &h, e, 64 * NR_BASE);
	expect_bad(fx->path, "magic", "wrong magic");
	good_header(&h);
	h.version = 2;
	write_raw(fx->path, &h, e, 64 * NR_BASE);
	expect_bad(fx->path, "version 2", "wrong version");
	good_header(&h);
	h.event_bytes = 32;
	write_raw(fx->path, &h, e, 64 * NR_BASE);
	expect_bad(fx->path, "event size 32", "wrong event size");
	good_header(&h);
	h.flags = 4;
	write_raw(fx->path, &h, e, 64 * NR_BASE);
	expect_bad(fx->path, "flags", "header flags");
	good_header(&h);

#define BAD_EVENT(edit, want)                             \
	do {                                              \
		base_events(e);                           \
		edit;                                     \
		write_raw(fx->path, &h, e, 64 * NR_BASE); \
		expect_bad(fx->path, want, #edit);        \
	} while (0)

	BAD_EVENT(e[4].kind = 77, "event 4 (kind 77): unknown kind");
	BAD_EVENT(e[4].kind = 10, "unknown kind");
	BAD_EVENT(e[4].p[0] = BLOCKS,
		  "event 4 (blk_alloc): block 256 out of range");
	BAD_EVENT(e[2].p[0] = CHUNKS, "chunk 16 out of range");
	BAD_EVENT(e[5].kind = KVC_REC_STEP, "announced 1 more blk_alloc");
	BAD_EVENT(e[3].p[0] = 1, "blk_alloc not announced");
	BAD_EVENT(e[3].p[0] = 1ull << 40, "huge count");
	BAD_EVENT(e[6].p[1] = 1ull << 40, "huge count");
	BAD_EVENT(e[6].p[0] = 1ull << 40, "huge count");
	BAD_EVENT(e[5].t_ns = 1, "time goes backwards");
	BAD_EVENT(e[5].step = 3, "step goes backwards");
	BAD_EVENT(e[4].flags = 1, "unknown flags");
	BAD_EVENT(e[0].kind = KVC_REC_STEP, "must start with a config");
	BAD_EVENT(e[1] = e[0], "a second config");
	BAD_EVENT(e[1].p[1] = 0x0a0d, "not printable");
	BAD_EVENT(e[1].p[2] = 0x41, "not printable");
	BAD_EVENT(e[0].p[1] = GRAN + 1, "do not divide");
	BAD_EVENT(e[8].p[0] = 3, "says 3 events before it");
	BAD_EVENT(e[5].kind = KVC_REC_MOVE; e[5].p[0] = 5;
		  e[5].p[1] = 5, "announced");

	/* Events after END. */
	base_events(e);
	e[NR_BASE] = e[NR_BASE - 1];
	write_raw(fx->path, &h, e, 64 * (NR_BASE + 1));
	expect_bad(fx->path, "after the end", "events after END");
}

static void test_reader_args(void **state)
{
	struct fixture *fx = *state;
	struct kvc_rec_reader *r = NULL;
	struct kvc_rec_event ev;

	assert_int_equal(kvc_rec_reader_open("/nonexistent.kvct", &r), -ENOENT);
	assert_null(r);
	assert_int_equal(kvc_rec_reader_open(fx->dir, &r), -EPROTO);
	assert_int_equal(kvc_rec_next(NULL, &ev), -EINVAL);
	kvc_rec_reader_close(NULL);
}

/* ------------------------------------------------------------------ */
/* formatting */

static void expect_format(const struct kvc_rec_event *ev, uint64_t index,
			  bool json, const char *want)
{
	char buf[512];
	int len = kvc_rec_format(ev, index, json, buf, sizeof(buf));

	if (len < 0)
		fail_msg("kvc_rec_format() = %d: %s", len, kvc_last_error());
	EXPECT_U64(len, strlen(buf));
	if (strcmp(buf, want))
		fail_msg("formatted '%s', expected '%s'", buf, want);
}

static void test_format(void **state)
{
	struct kvc_rec_event ev;
	char buf[512];
	uint32_t k;

	(void)state;
	memset(&ev, 0, sizeof(ev));
	ev.t_ns = 5000;
	ev.step = 3;
	ev.kind = KVC_REC_BLK_ALLOC;
	ev.p[0] = 17;
	expect_format(&ev, 12, false, "#12 step 3 blk_alloc block=17");
	expect_format(
		&ev, 12, true,
		"{\"i\":12,\"t_ns\":5000,\"step\":3,\"kind\":\"blk_alloc\",\"block\":17}");
	ev.kind = KVC_REC_MOVE;
	ev.p[1] = 40;
	ev.p[2] = 9;
	expect_format(&ev, 1, false, "#1 step 3 move from=17 to=40 owner=9");
	ev.kind = KVC_REC_ALLOC_FAIL;
	ev.p[0] = 8;
	ev.p[1] = 2;
	ev.p[2] = (uint64_t)(int64_t)-ENOMEM;
	expect_format(&ev, 2, false,
		      "#2 step 3 alloc_fail n=8 free_mapped=2 err=-12");
	memset(ev.p, 0, sizeof(ev.p));
	ev.kind = KVC_REC_NAME;
	ev.p[0] = KVC_REC_NAME_POOL;
	memcpy(&ev.p[1], "a\"b\\c", 5);
	expect_format(&ev, 0, false,
		      "#0 step 3 name what=pool text=\"a\"b\\c\"");
	expect_format(
		&ev, 0, true,
		"{\"i\":0,\"t_ns\":5000,\"step\":3,\"kind\":\"name\",\"what\":\"pool\",\"text\":\"a\\\"b\\\\c\"}");
	ev.kind = KVC_REC_CONFIG;
	memset(ev.p, 0, sizeof(ev.p));
	ev.p[0] = 4096;
	expect_format(
		&ev, 0, false,
		"#0 step 3 config block_bytes=4096 chunk_bytes=0 blocks=0 empty_kept=0 placement=0 max_chunks=0");
	ev.kind = 99;
	ev.p[1] = 5;
	expect_format(&ev, 7, false, "#7 step 3 kind_99 p0=4096 p1=5");

	/* Every kind, the largest words, fits in 512 and names its words. */
	for (k = 1; k < KVC_REC_KIND_MAX; k++) {
		const char *name = kvc_rec_kind_name(k);
		int len;

		if (!name)
			continue;
		memset(&ev, 0xff, sizeof(ev));
		ev.kind = (uint16_t)k;
		ev.flags = 0;
		len = kvc_rec_format(&ev, UINT64_MAX, true, buf, sizeof(buf));
		assert_true(len > 0);
		assert_non_null(strstr(buf, name));
		assert_int_equal(buf[len - 1], '}');
		len = kvc_rec_format(&ev, 0, false, buf, sizeof(buf));
		assert_true(len > 0);
		if (k != KVC_REC_STEP)
			assert_non_null(strchr(buf, '='));
	}
	assert_null(kvc_rec_kind_name(0));
	assert_null(kvc_rec_kind_name(10));
	assert_null(kvc_rec_kind_name(KVC_REC_KIND_MAX));
	assert_string_equal(kvc_rec_kind_name(KVC_REC_CHUNK_UNMAP),
			    "chunk_unmap");
	/* Too small a buffer: an error, and an empty string. */
	ev.kind = KVC_REC_SAMPLE;
	assert_int_equal(kvc_rec_format(&ev, 0, true, buf, 16), -ENOSPC);
	assert_string_equal(buf, "");
	assert_int_equal(kvc_rec_format(NULL, 0, true, buf, 16), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip_uring, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_roundtrip_sync, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_writer_args, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_threads_uring, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_threads_sync, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_error_sync, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_error_uring, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dev_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_workload, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_attach_snapshot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_empty_pool_closing_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_detaches, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failed_grow, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reader_args, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_format, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
