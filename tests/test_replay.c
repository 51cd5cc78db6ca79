/* Description: exact replay: recorded pools replay event for event, samples and closing snapshots agree, inconsistent traces are refused by index */
// SPDX-License-Identifier: MIT
/*
 * Traces come from two places: a pool with a recorder attached under a
 * seeded workload (the round trip), and the writer driven by hand, to
 * make small traces whose every event is known, consistent or not.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "tmpdir.h"

#include <kvc/kvc.h>
#include <kvc/record.h>
#include <kvc/sim.h>

#define GRAN (64ull << 10)
#define BLOCK 4096ull
#define BPC 16u
#define NR_CHUNKS 32u
#define NR_BLOCKS (BPC * NR_CHUNKS)

struct fixture {
	char dir[64];
	char path[96];
	struct kvc_backend *be;
	struct kvc_pool *pool;
	struct kvc_recorder *rec;
	uint64_t samples_seen;
	struct kvc_ladder last_seen;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (tmpdir_make(f->dir, sizeof(f->dir), "kvc-test-replay")) {
		free(f);
		return -1;
	}
	if (kvc_backend_open_sim(GRAN, &f->be)) {
		tmpdir_remove(f->dir);
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/trace.kvct", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int err;

	if (f->pool)
		kvc_pool_set_recorder(f->pool, NULL);
	kvc_recorder_close(f->rec);
	kvc_pool_destroy(f->pool);
	kvc_backend_close(f->be);
	err = tmpdir_remove(f->dir);
	if (err)
		fprintf(stderr, "test_replay: cannot remove %s: %s\n", f->dir,
			strerror(errno));
	free(f);
	return err;
}

/* ------------------------------------------------------------------ */
/* traces by hand */

static void open_rec(struct fixture *f)
{
	struct kvc_recorder_params rp = { 0 };

	rp.sync_io = true;
	assert_int_equal(kvc_recorder_open(f->path, &rp, &f->rec), 0);
}

static void close_rec(struct fixture *f)
{
	assert_int_equal(kvc_recorder_close(f->rec), 0);
	f->rec = NULL;
}

static void ev(struct fixture *f, enum kvc_rec_kind kind, uint64_t p0,
	       uint64_t p1, uint64_t p2)
{
	uint64_t p[KVC_REC_PAYLOAD] = { p0, p1, p2 };

	assert_int_equal(kvc_recorder_emit(f->rec, kind, p), 0);
}

static void config(struct fixture *f, uint64_t max_chunks)
{
	uint64_t p[KVC_REC_PAYLOAD] = {
		BLOCK, GRAN, 4 * BPC, 1, KVC_PLACE_FULLEST, max_chunks
	};

	assert_int_equal(kvc_recorder_emit(f->rec, KVC_REC_CONFIG, p), 0);
}

static void sample_ev(struct fixture *f, uint64_t logical, uint64_t live,
		      uint64_t held, uint64_t mapped, uint64_t parked)
{
	uint64_t p[KVC_REC_PAYLOAD] = {
		logical, live, held, mapped, parked, 0
	};

	assert_int_equal(kvc_recorder_emit(f->rec, KVC_REC_SAMPLE, p), 0);
}

/*
 * A consistent history on 4 chunks of 16 blocks: 3 blocks in chunk 0, an
 * owner, a sample, a free, a block in chunk 1 moved down into chunk 0,
 * chunk 1 unmapped. Returns the events written.
 */
static uint64_t good_prefix(struct fixture *f)
{
	open_rec(f);
	config(f, 4);
	ev(f, KVC_REC_CHUNK_MAP, 0, 0, 0);
	ev(f, KVC_REC_ALLOC, 3, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, 0, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, 1, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, 2, 0, 0);
	ev(f, KVC_REC_OWNER, 1, 7, 0);
	assert_int_equal(kvc_recorder_step(f->rec, 1), 0);
	sample_ev(f, 5 * BLOCK, 2 * BLOCK, 3 * BLOCK, GRAN, 0);
	ev(f, KVC_REC_FREE, 1, 0, 0);
	ev(f, KVC_REC_BLK_FREE, 0, 0, 0);
	ev(f, KVC_REC_CHUNK_MAP, 1, 0, 0);
	ev(f, KVC_REC_ALLOC, 1, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, BPC, 0, 0);
	ev(f, KVC_REC_ARRIVE, 1, 10, 20); /* request level: not applied */
	ev(f, KVC_REC_COMPACT, 0, 0, 0);
	ev(f, KVC_REC_MOVE, BPC, 0, 5);
	ev(f, KVC_REC_CHUNK_UNMAP, 1, 0, 0);
	assert_int_equal(kvc_recorder_step(f->rec, 3), 0);
	sample_ev(f, 0, 3 * BLOCK, 3 * BLOCK, GRAN, 0);
	return 20;
}

static void good_snapshot(struct fixture *f, uint64_t owner_of_1)
{
	ev(f, KVC_REC_SNAPSHOT, 1, 3, 0);
	ev(f, KVC_REC_SNAP_CHUNK, 0, 0, 0);
	ev(f, KVC_REC_SNAP_BLOCK, 0, 5, 0);
	ev(f, KVC_REC_SNAP_BLOCK, 1, owner_of_1, 0);
	ev(f, KVC_REC_SNAP_BLOCK, 2, 0, 0);
}

static void on_sample(void *arg, const struct kvc_ladder *l)
{
	struct fixture *f = arg;

	f->samples_seen++;
	f->last_seen = *l;
}

/*
 * Samples carry the time they were recorded, not the replay's: the last
 * one seen, the live peak (the last sample here) and the final ladder
 * (the last event) are stamped from the trace.
 */
static void expect_recorded_times(struct fixture *f,
				  const struct kvc_replay_result *res)
{
	uint64_t sample_ns = 0, last_ns = 0;
	struct kvc_rec_reader *r;
	struct kvc_rec_event e;
	int ret;

	if (kvc_rec_reader_open(f->path, &r))
		fail_msg("reader: %s", kvc_last_error());
	while ((ret = kvc_rec_next(r, &e)) == 1) {
		if (e.kind == KVC_REC_SAMPLE)
			sample_ns = e.t_ns;
		last_ns = e.t_ns;
	}
	kvc_rec_reader_close(r);
	assert_int_equal(ret, 0);
	assert_true(sample_ns > 0);
	EXPECT_U64(f->last_seen.t_ns, sample_ns);
	EXPECT_U64(res->peaks.live_peak_ns, sample_ns);
	EXPECT_U64(res->final.t_ns, last_ns);
}

static void test_hand_trace(void **state)
{
	struct fixture *f = *state;
	struct kvc_replay_result res;
	uint64_t n;

	n = good_prefix(f);
	good_snapshot(f, 7);
	close_rec(f);

	memset(&res, 0xa5, sizeof(res));
	res.on_sample = on_sample;
	res.arg = f;
	if (kvc_replay_exact(f->path, &res))
		fail_msg("replay: %s", kvc_last_error());
	/* The prefix, the snapshot's five records, END. */
	EXPECT_U64(res.events, n + 5 + 1);
	EXPECT_U64(res.checks, n + 5 + 1);
	EXPECT_U64(res.steps, 2);
	EXPECT_U64(res.samples, 2);
	EXPECT_U64(res.allocs, 4);
	EXPECT_U64(res.frees, 1);
	EXPECT_U64(res.moves, 1);
	EXPECT_U64(res.maps, 2);
	EXPECT_U64(res.unmaps, 1);
	EXPECT_U64(res.alloc_failures, 0);
	assert_true(res.final_snapshot);
	EXPECT_U64(f->samples_seen, 2);
	EXPECT_U64(f->last_seen.step, 3);
	EXPECT_U64(f->last_seen.held, 3 * BLOCK);
	/* The final ladder carries the last sample's usage. */
	EXPECT_U64(res.final.held, 3 * BLOCK);
	EXPECT_U64(res.final.live, 3 * BLOCK);
	EXPECT_U64(res.final.mapped, GRAN);
	EXPECT_U64(res.final.parked, 0);
	EXPECT_U64(res.final.held_blocks, 3);
	EXPECT_U64(res.final.mapped_chunks, 1);
	EXPECT_U64(res.final.free_mapped, GRAN - 3 * BLOCK);
	/* Two chunks were mapped at once, but no sample saw it. */
	EXPECT_U64(res.peaks.samples, 2);
	EXPECT_U64(res.peaks.mapped_peak, GRAN);
	EXPECT_U64(res.peaks.live_peak, 3 * BLOCK);
	EXPECT_U64(res.peaks.live_peak_step, 3);
	expect_recorded_times(f, &res);
}

/* A trace cut by hand at @bad: -EPROTO naming event @index. */
static void expect_refused(struct fixture *f, uint64_t index, const char *why)
{
	struct kvc_replay_result res;
	char want[32];
	int err;

	memset(&res, 0, sizeof(res));
	err = kvc_replay_exact(f->path, &res);
	if (err != -EPROTO)
		fail_msg("replay = %d, expected -EPROTO (%s)", err,
			 kvc_last_error());
	snprintf(want, sizeof(want), "event %llu ", (unsigned long long)index);
	if (!strstr(kvc_last_error(), want) || !strstr(kvc_last_error(), why))
		fail_msg("message '%s' should name '%s' and '%s'",
			 kvc_last_error(), want, why);
	assert_false(res.final_snapshot);
}

/*
 * END saying the recorder lost events: the trace misses changes, so an
 * exact replay must not pass it, whatever the closing snapshot says.
 */
static void test_lost_events(void **state)
{
	struct fixture *f = *state;
	uint64_t lost = 2, n;
	struct stat st;
	int fd;

	n = good_prefix(f);
	good_snapshot(f, 7);
	close_rec(f);
	/* END's second word, p[1], 24 bytes into the last event. */
	assert_int_equal(stat(f->path, &st), 0);
	fd = open(f->path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &lost, sizeof(lost), st.st_size - 64 + 24),
			 sizeof(lost));
	close(fd);
	expect_refused(f, n + 5, "lost 2 events");
}

static void test_free_not_live(void **state)
{
	struct fixture *f = *state;

	open_rec(f);
	config(f, 4);
	ev(f, KVC_REC_CHUNK_MAP, 0, 0, 0);
	ev(f, KVC_REC_ALLOC, 1, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, 0, 0, 0);
	ev(f, KVC_REC_FREE, 1, 0, 0);
	ev(f, KVC_REC_BLK_FREE, 3, 0, 0); /* event 5: 3 was never live */
	close_rec(f);
	expect_refused(f, 5, "not live");
}

static void test_wrong_sample(void **state)
{
	struct fixture *f = *state;

	open_rec(f);
	config(f, 4);
	ev(f, KVC_REC_CHUNK_MAP, 0, 0, 0);
	ev(f, KVC_REC_ALLOC, 2, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, 0, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, 1, 0, 0);
	sample_ev(f, 0, BLOCK, 3 * BLOCK, GRAN, 0); /* event 5: held is 2 */
	close_rec(f);
	expect_refused(f, 5, "held");
}

static void test_bad_block_events(void **state)
{
	struct fixture *f = *state;

	/* A block taken twice. */
	open_rec(f);
	config(f, 4);
	ev(f, KVC_REC_CHUNK_MAP, 0, 0, 0);
	ev(f, KVC_REC_ALLOC, 2, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, 4, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, 4, 0, 0);
	close_rec(f);
	expect_refused(f, 4, "already live");

	/* A block in a chunk never mapped. */
	open_rec(f);
	config(f, 4);
	ev(f, KVC_REC_ALLOC, 1, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, BPC + 1, 0, 0);
	close_rec(f);
	expect_refused(f, 2, "not mapped");

	/* An unmap of a chunk with a live block. */
	open_rec(f);
	config(f, 4);
	ev(f, KVC_REC_CHUNK_MAP, 2, 0, 0);
	ev(f, KVC_REC_ALLOC, 1, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, 2 * BPC, 0, 0);
	ev(f, KVC_REC_CHUNK_UNMAP, 2, 0, 0);
	close_rec(f);
	expect_refused(f, 4, "still live");

	/* A second map over the cap of one chunk. */
	open_rec(f);
	config(f, 1);
	ev(f, KVC_REC_CHUNK_MAP, 0, 0, 0);
	ev(f, KVC_REC_CHUNK_MAP, 1, 0, 0);
	close_rec(f);
	expect_refused(f, 2, "cap");

	/* A move onto a live block. */
	open_rec(f);
	config(f, 4);
	ev(f, KVC_REC_CHUNK_MAP, 0, 0, 0);
	ev(f, KVC_REC_ALLOC, 2, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, 0, 0, 0);
	ev(f, KVC_REC_BLK_ALLOC, 1, 0, 0);
	ev(f, KVC_REC_COMPACT, 0, 0, 0);
	ev(f, KVC_REC_MOVE, 1, 0, 9);
	close_rec(f);
	expect_refused(f, 6, "already live");
}

static void test_snapshot_mismatch(void **state)
{
	struct fixture *f = *state;
	uint64_t n;

	/* The owner of block 1 differs: found when the snapshot is whole. */
	n = good_prefix(f);
	good_snapshot(f, 8);
	close_rec(f);
	expect_refused(f, n + 4, "owner");

	/* A live block the snapshot does not list. */
	n = good_prefix(f);
	ev(f, KVC_REC_SNAPSHOT, 1, 2, 0);
	ev(f, KVC_REC_SNAP_CHUNK, 0, 0, 0);
	ev(f, KVC_REC_SNAP_BLOCK, 0, 5, 0);
	ev(f, KVC_REC_SNAP_BLOCK, 1, 7, 0);
	close_rec(f);
	expect_refused(f, n + 3, "block 2 is live in the replay");

	/* A chunk the replay has not mapped. */
	n = good_prefix(f);
	ev(f, KVC_REC_SNAPSHOT, 2, 0, 0);
	ev(f, KVC_REC_SNAP_CHUNK, 0, 0, 0);
	ev(f, KVC_REC_SNAP_CHUNK, 3, 0, 0);
	close_rec(f);
	expect_refused(f, n + 2, "chunk 3");
}

/* A trace that starts from a snapshot builds that state first. */
static void test_opening_snapshot(void **state)
{
	struct fixture *f = *state;
	struct kvc_replay_result res;

	open_rec(f);
	config(f, 4);
	ev(f, KVC_REC_SNAPSHOT, 2, 2, 0);
	ev(f, KVC_REC_SNAP_CHUNK, 1, 0, 0);
	ev(f, KVC_REC_SNAP_CHUNK, 3, 0, 0);
	ev(f, KVC_REC_SNAP_BLOCK, BPC + 4, 11, 0);
	ev(f, KVC_REC_SNAP_BLOCK, 3 * BPC, 12, 0);
	ev(f, KVC_REC_FREE, 1, 0, 0);
	ev(f, KVC_REC_BLK_FREE, 3 * BPC, 0, 0);
	ev(f, KVC_REC_CHUNK_UNMAP, 3, 0, 0);
	sample_ev(f, 0, BLOCK, BLOCK, GRAN, 0);
	ev(f, KVC_REC_SNAPSHOT, 1, 1, 0);
	ev(f, KVC_REC_SNAP_CHUNK, 1, 0, 0);
	ev(f, KVC_REC_SNAP_BLOCK, BPC + 4, 11, 0);
	close_rec(f);

	memset(&res, 0, sizeof(res));
	if (kvc_replay_exact(f->path, &res))
		fail_msg("replay: %s", kvc_last_error());
	assert_true(res.final_snapshot);
	EXPECT_U64(res.frees, 1);
	EXPECT_U64(res.unmaps, 1);
	EXPECT_U64(res.maps, 0); /* the snapshot's chunks are not events */
	EXPECT_U64(res.samples, 1);
	EXPECT_U64(res.final.held_blocks, 1);
}

static void test_bad_arguments(void **state)
{
	struct fixture *f = *state;
	struct kvc_replay_result res;

	memset(&res, 0, sizeof(res));
	assert_int_equal(kvc_replay_exact(NULL, &res), -EINVAL);
	assert_int_equal(kvc_replay_exact(f->path, NULL), -EINVAL);
	assert_int_equal(kvc_replay_exact(f->path, &res), -ENOENT);
	/* Configuration only, no events: replays to an empty pool. */
	open_rec(f);
	config(f, 4);
	close_rec(f);
	assert_int_equal(kvc_replay_exact(f->path, &res), 0);
	EXPECT_U64(res.events, 2); /* CONFIG and END */
	EXPECT_U64(res.final.mapped, 0);
	assert_false(res.final_snapshot);
}

/* ------------------------------------------------------------------ */
/* the round trip: a recorded pool */

struct counts {
	uint64_t allocs;
	uint64_t frees;
	uint64_t samples;
};

static void open_pool(struct fixture *f, enum kvc_placement place)
{
	struct kvc_pool_params p;

	kvc_pool_params_init(&p);
	p.backend = f->be;
	p.block_bytes = BLOCK;
	p.capacity_blocks = NR_BLOCKS;
	p.empty_chunks_kept = 1;
	p.placement = place;
	p.placement_seed = 3;
	p.flags = KVC_POOL_NO_STATS_PAGE;
	assert_int_equal(kvc_pool_create(&p, &f->pool), 0);
	CHECK(f->pool);
}

/* Random grow-and-free sequences with owners, compactions and samples. */
static void workload(struct fixture *f, uint64_t seed, uint32_t steps,
		     struct counts *cnt, struct kvc_pool_usage *usage)
{
	enum { NSEQ = 12, SMAX = 24 };
	uint32_t ids[NSEQ][SMAX], n[NSEQ] = { 0 }, target[NSEQ] = { 0 };
	uint64_t rng = seed, live = 0;
	uint32_t step, s, k;

	for (step = 1; step <= steps; step++) {
		assert_int_equal(kvc_recorder_step(f->rec, step), 0);
		s = (uint32_t)(rng_next(&rng) % NSEQ);
		if (!target[s])
			target[s] = 1 + (uint32_t)(rng_next(&rng) % SMAX);
		if (n[s] < target[s]) {
			k = (uint32_t)(1 + rng_next(&rng) % 3);
			if (k > target[s] - n[s])
				k = target[s] - n[s];
			assert_int_equal(
				kvc_pool_alloc(f->pool, k, &ids[s][n[s]]), 0);
			cnt->allocs += k;
			while (k--) {
				assert_int_equal(
					kvc_pool_set_owner(
						f->pool, ids[s][n[s]],
						((uint64_t)s << 32) | n[s]),
					0);
				n[s]++;
			}
		} else {
			assert_int_equal(kvc_pool_free(f->pool, n[s], ids[s]),
					 0);
			cnt->frees += n[s];
			n[s] = target[s] = 0;
		}
		CHECK(f->pool);
		if (step % 40 == 0) {
			assert_int_equal(kvc_pool_compact(f->pool, NULL, NULL),
					 0);
			CHECK(f->pool);
			/* Moved blocks keep their owners: find them again. */
			for (s = 0; s < NSEQ; s++)
				for (k = 0; k < n[s]; k++) {
					uint32_t id;
					uint64_t o,
						want = ((uint64_t)s << 32) | k;

					for (id = 0; id < NR_BLOCKS; id++)
						if (kvc_pool_get_owner(
							    f->pool, id, &o) ==
							    0 &&
						    o == want)
							break;
					assert_true(id < NR_BLOCKS);
					ids[s][k] = id;
				}
		}
		if (step % 5 == 0) {
			for (live = 0, s = 0; s < NSEQ; s++)
				live += n[s];
			/* Most of each block filled; a little ahead reserved. */
			usage->logical_bytes = live * BLOCK * 2;
			usage->live_bytes = live * BLOCK * 3 / 4;
			usage->reservation_bytes = live * BLOCK / 8;
			assert_int_equal(kvc_pool_sample(f->pool, usage, step),
					 0);
			cnt->samples++;
		}
	}
}

static void expect_same_ladder(const struct kvc_ladder *a,
			       const struct kvc_ladder *b)
{
	uint32_t o;

	EXPECT_U64(a->logical, b->logical);
	EXPECT_U64(a->live, b->live);
	EXPECT_U64(a->held, b->held);
	EXPECT_U64(a->mapped, b->mapped);
	EXPECT_U64(a->parked, b->parked);
	EXPECT_U64(a->reservation, b->reservation);
	EXPECT_U64(a->tail, b->tail);
	EXPECT_U64(a->free_mapped, b->free_mapped);
	EXPECT_U64(a->held_blocks, b->held_blocks);
	EXPECT_U64(a->mapped_chunks, b->mapped_chunks);
	EXPECT_U64(a->floor_chunks, b->floor_chunks);
	EXPECT_U64(a->nr_orders, b->nr_orders);
	assert_true(a->pack_ratio == b->pack_ratio);
	assert_true(a->hole_ratio == b->hole_ratio);
	for (o = 0; o < a->nr_orders; o++) {
		EXPECT_U64(a->free_runs[o], b->free_runs[o]);
		assert_true(a->unusable[o] == b->unusable[o]);
		assert_true(a->extfrag[o] == b->extfrag[o]);
	}
}

static void round_trip(struct fixture *f, enum kvc_placement place,
		       uint64_t seed)
{
	struct kvc_pool_usage usage = { 0 };
	struct kvc_ladder_peaks peaks;
	struct kvc_replay_result res;
	struct kvc_pool_stats st;
	struct counts cnt = { 0 };
	struct kvc_ladder want;

	open_pool(f, place);
	open_rec(f);
	assert_int_equal(kvc_pool_set_recorder(f->pool, f->rec), 0);
	workload(f, seed, 600, &cnt, &usage);
	assert_int_equal(kvc_pool_set_recorder(f->pool, NULL), 0);
	close_rec(f);

	kvc_pool_get_stats(f->pool, &st, NULL);
	assert_int_equal(kvc_pool_ladder(f->pool, &usage, 600, &want), 0);
	kvc_pool_peaks(f->pool, &peaks);
	assert_true(st.blocks_moved > 0); /* the workload did compact */
	assert_int_equal(kvc_pool_destroy(f->pool), 0);
	f->pool = NULL;

	memset(&res, 0, sizeof(res));
	res.on_sample = on_sample;
	res.arg = f;
	f->samples_seen = 0;
	if (kvc_replay_exact(f->path, &res))
		fail_msg("replay (%s): %s", kvc_placement_name(place),
			 kvc_last_error());
	EXPECT_U64(res.allocs, cnt.allocs);
	EXPECT_U64(res.frees, cnt.frees);
	EXPECT_U64(res.moves, st.blocks_moved);
	EXPECT_U64(res.maps, st.backend_map);
	EXPECT_U64(res.unmaps, st.backend_unmap);
	EXPECT_U64(res.samples, cnt.samples);
	EXPECT_U64(f->samples_seen, cnt.samples);
	EXPECT_U64(res.steps, 600);
	assert_true(res.checks == res.events);
	assert_true(res.final_snapshot);
	expect_same_ladder(&res.final, &want);
	EXPECT_U64(res.peaks.samples, peaks.samples);
	EXPECT_U64(res.peaks.mapped_peak, peaks.mapped_peak);
	EXPECT_U64(res.peaks.live_peak, peaks.live_peak);
	assert_true(res.peaks.mean_mapped == peaks.mean_mapped);
	assert_true(res.peaks.mean_held == peaks.mean_held);
}

static void test_round_trip(void **state)
{
	struct fixture *f = *state;

	round_trip(f, KVC_PLACE_FULLEST, 11);
}

static void test_round_trip_policies(void **state)
{
	struct fixture *f = *state;

	round_trip(f, KVC_PLACE_FIRST_FIT, 12);
	round_trip(f, KVC_PLACE_RANDOM, 13);
}

/* Recording starts on a pool that already holds blocks. */
static void test_round_trip_midway(void **state)
{
	struct fixture *f = *state;
	struct kvc_replay_result res;
	struct kvc_pool_stats st;
	uint32_t ids[40];

	open_pool(f, KVC_PLACE_FULLEST);
	assert_int_equal(kvc_pool_alloc(f->pool, 40, ids), 0);
	assert_int_equal(kvc_pool_set_owner(f->pool, ids[3], 99), 0);
	assert_int_equal(kvc_pool_free(f->pool, 10, ids + 10), 0);
	CHECK(f->pool);
	open_rec(f);
	assert_int_equal(kvc_pool_set_recorder(f->pool, f->rec), 0);
	assert_int_equal(kvc_pool_free(f->pool, 10, ids + 20), 0);
	assert_int_equal(kvc_pool_compact(f->pool, NULL, NULL), 0);
	assert_int_equal(kvc_pool_alloc(f->pool, 5, ids), 0);
	CHECK(f->pool);
	assert_int_equal(kvc_pool_set_recorder(f->pool, NULL), 0);
	close_rec(f);
	kvc_pool_get_stats(f->pool, &st, NULL);

	memset(&res, 0, sizeof(res));
	if (kvc_replay_exact(f->path, &res))
		fail_msg("replay: %s", kvc_last_error());
	assert_true(res.final_snapshot);
	EXPECT_U64(res.allocs, 5);
	EXPECT_U64(res.frees, 10);
	EXPECT_U64(res.moves, st.blocks_moved);
	EXPECT_U64(res.final.held_blocks, st.blocks_live);
	EXPECT_U64(res.final.mapped_chunks, st.chunks_mapped);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hand_trace, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_lost_events, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_not_live, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_wrong_sample, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_block_events, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_mismatch, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_opening_snapshot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_policies, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_midway, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
