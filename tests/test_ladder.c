/* Description: the byte ladder: identities under a random workload with compaction, per-order indices and free runs on hand-built layouts, hole and pack ratios, usage checks, the peaks-and-means accumulator, the pool's sample ring and its trace events */
// SPDX-License-Identifier: MIT
/*
 * Tests of kvc_pool_ladder(), kvc_ladder_check(), kvc_ladder_acc_*(),
 * kvc_pool_sample() and kvc_pool_peaks(). Pools use the host backend with
 * 64 KiB chunks of eight 8 KiB blocks, so layouts are easy to draw; the
 * per-order indices are also recomputed bit by bit from the pool's own
 * bitmaps, independently of the word-at-a-time scan.
 */
#include <errno.h>
#include <math.h>
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

#include <kvc/kvc.h>

#include "internal.h"
#include "ladder.h"
#include "replay.h"

#define GRAN (64ull << 10)
#define BLOCK (8ull << 10)
#define BPC ((uint32_t)(GRAN / BLOCK))
#define NR_CHUNKS 32u

struct fixture {
	struct kvc_backend *be;
	struct kvc_pool *pool;
	char pages[64];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx || kvc_backend_open_host(GRAN, &fx->be))
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	if (fx->pool)
		assert_int_equal(kvc_pool_destroy(fx->pool), 0);
	kvc_backend_close(fx->be);
	if (fx->pages[0]) {
		rmdir(fx->pages);
		unsetenv("KVC_STATS_DIR");
	}
	free(fx);
	return 0;
}

static void pool_open(struct fixture *fx, uint32_t chunks, uint32_t kept)
{
	struct kvc_pool_params p;

	kvc_pool_params_init(&p);
	p.block_bytes = BLOCK;
	p.capacity_blocks = (uint64_t)chunks * BPC;
	p.backend = fx->be;
	p.empty_chunks_kept = kept;
	p.flags = KVC_POOL_NO_STATS_PAGE;
	if (kvc_pool_create(&p, &fx->pool))
		fail_msg("kvc_pool_create: %s", kvc_last_error());
}

static void expect_real(double got, double want, const char *what)
{
	if (!(fabs(got - want) < 1e-12))
		fail_msg("%s = %.17g, expected %.17g", what, got, want);
}

#define EXPECT_REAL(got, want) expect_real(got, want, #got)

static void ladder_ok(struct kvc_pool *pool, const struct kvc_pool_usage *u,
		      struct kvc_ladder *l)
{
	int err = kvc_pool_ladder(pool, u, 7, l);

	if (err)
		fail_msg("kvc_pool_ladder() = %d: %s", err, kvc_last_error());
	err = kvc_ladder_check(l);
	if (err)
		fail_msg("kvc_ladder_check() = %d: %s", err, kvc_last_error());
	CHECK(pool);
}

/* Allocate @n blocks, then free every one not in @keep (ids). */
static void build_layout(struct kvc_pool *pool, uint32_t n,
			 const uint32_t *keep, uint32_t nr_keep)
{
	uint32_t ids[NR_CHUNKS * 8], drop[NR_CHUNKS * 8], nr_drop = 0, i, k;
	bool kept;

	assert_true(n <= NR_CHUNKS * 8);
	assert_int_equal(kvc_pool_alloc(pool, n, ids), 0);
	for (i = 0; i < n; i++) {
		for (kept = false, k = 0; k < nr_keep; k++)
			kept |= ids[i] == keep[k];
		if (!kept)
			drop[nr_drop++] = ids[i];
	}
	if (nr_drop)
		assert_int_equal(kvc_pool_free(pool, nr_drop, drop), 0);
	CHECK(pool);
	for (k = 0; k < nr_keep; k++)
		assert_true(kvc_pool_is_live(pool, keep[k]));
}

/* ------------------------------------------------------------------ */

/* bpc 8, blocks 0 and 3 live: free runs of 2 and 4 blocks. */
static void test_runs_two_and_four(void **state)
{
	struct fixture *fx = *state;
	const uint32_t keep[] = { 0, 3 };
	struct kvc_ladder l;

	pool_open(fx, 2, 1);
	build_layout(fx->pool, 8, keep, 2);
	ladder_ok(fx->pool, NULL, &l);
	EXPECT_U64(l.step, 7);
	EXPECT_U64(l.nr_orders, 4);
	EXPECT_U64(l.held_blocks, 2);
	EXPECT_U64(l.held, 2 * BLOCK);
	EXPECT_U64(l.live, 2 * BLOCK);
	EXPECT_U64(l.logical, 2 * BLOCK);
	EXPECT_U64(l.tail, 0);
	EXPECT_U64(l.mapped, GRAN);
	EXPECT_U64(l.mapped_chunks, 1);
	EXPECT_U64(l.parked, 0);
	EXPECT_U64(l.free_mapped, 6 * BLOCK);
	EXPECT_U64(l.floor_chunks, 1);
	EXPECT_REAL(l.pack_ratio, 1);
	EXPECT_REAL(l.hole_ratio, 0.5); /* 2 live of ids 0..3 */
	EXPECT_REAL(l.unusable[0], 0);
	EXPECT_REAL(l.unusable[1], 0);
	EXPECT_REAL(l.unusable[2], 2.0 / 6);
	EXPECT_REAL(l.unusable[3], 1);
	EXPECT_REAL(l.extfrag[0], -1);
	EXPECT_REAL(l.extfrag[1], -1);
	EXPECT_REAL(l.extfrag[2], -1);
	EXPECT_REAL(l.extfrag[3], 1 - (1 + 6.0 / 8) / 2);
	EXPECT_U64(l.free_runs[0], 0);
	EXPECT_U64(l.free_runs[1], 1);
	EXPECT_U64(l.free_runs[2], 1);
	EXPECT_U64(l.free_runs[3], 0);
	EXPECT_U64(l.free_runs[4], 0);
}

/* The same, with a parked chunk: one run of 8, runs never cross chunks. */
static void test_parked_chunk_is_one_run(void **state)
{
	struct fixture *fx = *state;
	const uint32_t keep[] = { 0, 3 };
	struct kvc_ladder l;

	pool_open(fx, 2, 1);
	build_layout(fx->pool, 16, keep, 2);
	ladder_ok(fx->pool, NULL, &l);
	EXPECT_U64(l.mapped, 2 * GRAN);
	EXPECT_U64(l.parked, GRAN);
	EXPECT_U64(l.free_mapped, 6 * BLOCK);
	EXPECT_U64(l.floor_chunks, 1);
	EXPECT_REAL(l.pack_ratio, 2);
	EXPECT_REAL(l.hole_ratio, 0.5);
	EXPECT_REAL(l.unusable[0], 0);
	EXPECT_REAL(l.unusable[1], 0);
	EXPECT_REAL(l.unusable[2], 2.0 / 14);
	EXPECT_REAL(l.unusable[3], 6.0 / 14);
	EXPECT_REAL(l.extfrag[3], -1);
	EXPECT_U64(l.free_runs[1], 1);
	EXPECT_U64(l.free_runs[2], 1);
	EXPECT_U64(l.free_runs[3], 1);
}

/* Every other block live: only single-block runs; the index climbs. */
static void test_checkerboard(void **state)
{
	struct fixture *fx = *state;
	const uint32_t keep[] = { 0, 2, 4, 6, 8, 9, 10, 11, 12, 13, 14, 15 };
	struct kvc_ladder l;

	pool_open(fx, 2, 1);
	build_layout(fx->pool, 16, keep, 12);
	ladder_ok(fx->pool, NULL, &l);
	EXPECT_U64(l.free_mapped, 4 * BLOCK);
	EXPECT_U64(l.parked, 0);
	EXPECT_U64(l.floor_chunks, 2);
	EXPECT_REAL(l.pack_ratio, 1);
	EXPECT_REAL(l.hole_ratio, 1 - 12.0 / 16);
	EXPECT_U64(l.free_runs[0], 4);
	EXPECT_U64(l.free_runs[1], 0);
	EXPECT_REAL(l.unusable[0], 0);
	EXPECT_REAL(l.unusable[1], 1);
	EXPECT_REAL(l.unusable[3], 1);
	EXPECT_REAL(l.extfrag[0], -1);
	EXPECT_REAL(l.extfrag[1], 1 - (1 + 4.0 / 2) / 4);
	EXPECT_REAL(l.extfrag[2], 1 - (1 + 4.0 / 4) / 4);
	EXPECT_REAL(l.extfrag[3], 1 - (1 + 4.0 / 8) / 4);
}

/* Nothing mapped, then only empty chunks: the edge values. */
static void test_empty_pool(void **state)
{
	struct fixture *fx = *state;
	struct kvc_ladder l;
	uint32_t ids[16];
	int o;

	pool_open(fx, 4, 2);
	ladder_ok(fx->pool, NULL, &l);
	EXPECT_U64(l.mapped, 0);
	EXPECT_U64(l.held, 0);
	EXPECT_U64(l.floor_chunks, 0);
	EXPECT_REAL(l.pack_ratio, 1);
	EXPECT_REAL(l.hole_ratio, 0);
	for (o = 0; o < 4; o++) {
		EXPECT_REAL(l.unusable[o], 1);
		EXPECT_REAL(l.extfrag[o], 0);
		EXPECT_U64(l.free_runs[o], 0);
	}

	assert_int_equal(kvc_pool_alloc(fx->pool, 16, ids), 0);
	assert_int_equal(kvc_pool_free(fx->pool, 16, ids), 0);
	ladder_ok(fx->pool, NULL, &l);
	EXPECT_U64(l.mapped_chunks, 2);
	EXPECT_U64(l.parked, 2 * GRAN);
	EXPECT_U64(l.free_mapped, 0);
	EXPECT_REAL(l.pack_ratio, 2); /* no floor: the mapped count */
	EXPECT_REAL(l.hole_ratio, 0);
	EXPECT_REAL(l.unusable[3], 0);
	EXPECT_REAL(l.extfrag[3], -1);
	EXPECT_U64(l.free_runs[3], 2);
}

/* Usage splits held bytes; claiming more than held is refused. */
static void test_usage(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_usage u = { 0 };
	struct kvc_ladder l, before;
	struct kvc_ladder_peaks p;
	uint32_t ids[2];

	pool_open(fx, 2, 1);
	assert_int_equal(kvc_pool_alloc(fx->pool, 2, ids), 0);
	u.logical_bytes = 100000;
	u.live_bytes = 10000;
	u.reservation_bytes = 3000;
	u.seqs = 3;
	u.preemptions = 5;
	ladder_ok(fx->pool, &u, &l);
	EXPECT_U64(l.logical, 100000);
	EXPECT_U64(l.live, 10000);
	EXPECT_U64(l.reservation, 3000);
	EXPECT_U64(l.tail, 2 * BLOCK - 13000);
	EXPECT_U64(l.seqs, 3);
	EXPECT_U64(l.preemptions, 5);

	u.live_bytes = 2 * BLOCK;
	u.reservation_bytes = 0;
	ladder_ok(fx->pool, &u, &l);
	EXPECT_U64(l.tail, 0);

	before = l;
	u.live_bytes = 10000;
	u.reservation_bytes = 2 * BLOCK - 10000 + 1;
	assert_int_equal(kvc_pool_ladder(fx->pool, &u, 1, &l), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "usage claims"));
	assert_memory_equal(&l, &before, sizeof(l)); /* nothing filled */
	u.live_bytes = UINT64_MAX;
	u.reservation_bytes = 1;
	assert_int_equal(kvc_pool_ladder(fx->pool, &u, 1, &l), -EINVAL);
	assert_int_equal(kvc_pool_sample(fx->pool, &u, 1), -EINVAL);
	/* Nothing kept: the ladders above made the state, not a sample. */
	kvc_pool_peaks(fx->pool, &p);
	EXPECT_U64(p.samples, 0);
	assert_int_equal(kvc_pool_ladder(NULL, NULL, 0, &l), -EINVAL);
	assert_int_equal(kvc_pool_ladder(fx->pool, NULL, 0, NULL), -EINVAL);
	CHECK(fx->pool);
}

/* Each identity broken alone is named. */
static void test_check_names_identity(void **state)
{
	struct kvc_ladder l = { 0 }, bad;

	(void)state;
	l.live = 10;
	l.reservation = 2;
	l.tail = 4;
	l.held = 16;
	l.free_mapped = 8;
	l.parked = 40;
	l.mapped = 64;
	l.nr_orders = 4;
	assert_int_equal(kvc_ladder_check(&l), 0);
	bad = l;
	bad.mapped = 65;
	assert_int_equal(kvc_ladder_check(&bad), -EFAULT);
	assert_non_null(strstr(kvc_last_error(), "mapped"));
	bad = l;
	bad.live = 20;
	bad.held = 16;
	bad.tail = 0;
	bad.free_mapped = 2;
	assert_int_equal(kvc_ladder_check(&bad), -EFAULT);
	assert_non_null(strstr(kvc_last_error(), "live 20 > held 16"));
	bad = l;
	bad.held = 70;
	assert_int_equal(kvc_ladder_check(&bad), -EFAULT);
	assert_non_null(strstr(kvc_last_error(), "held 70 > mapped 64"));
	bad = l;
	bad.mapped = UINT64_MAX;
	bad.parked = UINT64_MAX;
	assert_int_equal(kvc_ladder_check(&bad), -EFAULT);
	assert_int_equal(kvc_ladder_check(NULL), -EINVAL);
}

/* The per-order figures recomputed one bit at a time from the bitmaps. */
static void reference_orders(struct kvc_pool *pool, struct kvc_ladder *want)
{
	uint64_t suitable[KVC_LADDER_ORDERS] = { 0 }, free = 0, runs = 0;
	uint32_t c, b, len, o, nr_orders = 0;
	int64_t top = -1;

	while ((1u << (nr_orders + 1)) <= pool->bpc)
		nr_orders++;
	nr_orders++;
	memset(want, 0, sizeof(*want));
	for (c = 0; c < pool->nr_chunks; c++) {
		const struct kvc_chunk *ch = &pool->chunks[c];

		if (!ch->live)
			continue;
		for (b = 0, len = 0; b <= pool->bpc; b++) {
			bool is_free = b < pool->bpc && !test_bit(ch->live, b);

			if (b < pool->bpc && !is_free)
				top = (int64_t)c * pool->bpc + b;
			if (is_free) {
				len++;
				continue;
			}
			if (!len)
				continue;
			free += len;
			runs++;
			for (o = 0; o < nr_orders; o++)
				suitable[o] += len >> o;
			for (o = 0; (2u << o) <= len; o++)
				;
			want->free_runs[o]++;
			len = 0;
		}
	}
	want->nr_orders = nr_orders;
	for (o = 0; o < nr_orders; o++) {
		double f = (double)free, s = (double)(1u << o);

		want->unusable[o] =
			free ? (f - (double)suitable[o] * s) / f : 1;
		want->extfrag[o] =
			!free	    ? 0 :
			suitable[o] ? -1 :
				      fmax(0, 1 - (1 + f / s) / (double)runs);
	}
	want->hole_ratio =
		top < 0 ? 0 : 1 - (double)pool->nr_live / (double)(top + 1);
}

static void expect_ladder_matches(struct kvc_pool *pool, uint64_t op)
{
	struct kvc_pool_usage u = { 0 };
	struct kvc_pool_stats st;
	struct kvc_ladder l, want;
	uint32_t o;
	char what[64];

	kvc_pool_get_stats(pool, &st, NULL);
	u.live_bytes = st.bytes_live / 2;
	u.reservation_bytes = st.bytes_live / 4;
	u.logical_bytes = st.bytes_live * 3;
	ladder_ok(pool, &u, &l);
	/* The identity, re-derived from the pool's own counters. */
	EXPECT_U64(l.mapped, st.bytes_mapped);
	EXPECT_U64(l.held, st.bytes_live);
	EXPECT_U64(l.parked, st.chunks_empty * st.chunk_bytes);
	EXPECT_U64(l.free_mapped,
		   st.free_blocks_in_partial_chunks * st.block_bytes);
	EXPECT_U64(st.bytes_mapped,
		   u.live_bytes + u.reservation_bytes + l.tail +
			   st.free_blocks_in_partial_chunks * st.block_bytes +
			   st.chunks_empty * st.chunk_bytes);
	EXPECT_U64(l.floor_chunks, (st.blocks_live + st.blocks_per_chunk - 1) /
					   st.blocks_per_chunk);
	/* At the chunk order, the pool's own unusable index. */
	if (!(st.blocks_per_chunk & (st.blocks_per_chunk - 1))) {
		snprintf(what, sizeof(what), "op %llu: unusable[chunk order]",
			 (unsigned long long)op);
		expect_real(l.unusable[l.nr_orders - 1], st.unusable_index,
			    what);
	}
	reference_orders(pool, &want);
	EXPECT_U64(l.nr_orders, want.nr_orders);
	expect_real(l.hole_ratio, want.hole_ratio, "hole_ratio");
	for (o = 0; o < KVC_LADDER_ORDERS; o++) {
		EXPECT_U64(l.free_runs[o], want.free_runs[o]);
		if (o >= l.nr_orders)
			continue;
		snprintf(what, sizeof(what), "op %llu: unusable[%u]",
			 (unsigned long long)op, o);
		expect_real(l.unusable[o], want.unusable[o], what);
		snprintf(what, sizeof(what), "op %llu: extfrag[%u]",
			 (unsigned long long)op, o);
		expect_real(l.extfrag[o], want.extfrag[o], what);
	}
}

/**
 * struct live_set - The ids a workload holds, kept current across moves.
 * @ids: the ids.
 * @n: how many.
 */
struct live_set {
	uint32_t ids[NR_CHUNKS * 128];
	uint32_t n;
};

static void on_moves(void *arg, const struct kvc_move *moves, uint32_t n)
{
	struct live_set *set = arg;
	uint32_t i, k;

	for (i = 0; i < n; i++)
		for (k = 0; k < set->n; k++)
			if (set->ids[k] == moves[i].from) {
				set->ids[k] = moves[i].to;
				break;
			}
}

static void random_workload(struct fixture *fx, uint64_t seed, uint32_t ops)
{
	static struct live_set set;
	uint32_t *live = set.ids, ids[64], n, i, j, op;
	uint64_t rng = seed;
	int err;

	set.n = 0;
	assert_int_equal(kvc_pool_set_move_hook(fx->pool, on_moves, &set), 0);

	for (op = 0; op < ops; op++) {
		uint64_t r = rng_next(&rng);

		if (r % 23 == 0) {
			err = kvc_pool_compact(fx->pool, NULL, NULL);
			if (err)
				fail_msg("compact: %s", kvc_last_error());
		} else if (r % 2 && set.n < fx->pool->nr_blocks - 64) {
			n = 1 + (uint32_t)(r >> 8) % 40;
			err = kvc_pool_alloc(fx->pool, n, ids);
			if (err) {
				assert_int_equal(err, -ENOMEM);
			} else {
				memcpy(live + set.n, ids, n * sizeof(*ids));
				set.n += n;
			}
		} else if (set.n) {
			n = 1 + (uint32_t)(r >> 8) % (set.n < 40 ? set.n : 40);
			/* Random victims, swapped to the end, freed at once. */
			for (i = 0; i < n; i++) {
				uint32_t t;

				j = (uint32_t)(rng_next(&rng) % (set.n - i));
				t = live[j];
				live[j] = live[set.n - 1 - i];
				live[set.n - 1 - i] = t;
			}
			assert_int_equal(
				kvc_pool_free(fx->pool, n, live + set.n - n),
				0);
			set.n -= n;
		}
		expect_ladder_matches(fx->pool, op);
	}
	for (i = 0; i < set.n; i++)
		assert_true(kvc_pool_is_live(fx->pool, set.ids[i]));
}

/* Random allocs, frees and compactions; every figure checked each time. */
static void test_random_workload(void **state)
{
	struct fixture *fx = *state;

	struct kvc_pool_stats st;

	pool_open(fx, NR_CHUNKS, 2);
	random_workload(fx, 0x5eed1234abcdull, 1500);
	/* The workload did exercise compaction. */
	kvc_pool_get_stats(fx->pool, &st, NULL);
	assert_true(st.compactions > 0);
	assert_true(st.blocks_moved > 0);
}

/* The same with 100 blocks per chunk: words straddle, orders to 6. */
static void test_random_workload_odd_chunk(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_params p;
	struct kvc_ladder l;

	kvc_pool_params_init(&p);
	p.block_bytes = GRAN;
	p.chunk_bytes = 100 * p.block_bytes;
	p.capacity_blocks = 12 * 100;
	p.backend = fx->be;
	p.flags = KVC_POOL_NO_STATS_PAGE;
	if (kvc_pool_create(&p, &fx->pool))
		fail_msg("kvc_pool_create: %s", kvc_last_error());
	random_workload(fx, 0xfeedull, 600);
	ladder_ok(fx->pool, NULL, &l);
	EXPECT_U64(l.nr_orders, 7);
}

/* A random block of @pool that is live (@live) or free in a mapped chunk. */
static bool pick_block(struct kvc_pool *pool, uint64_t *rng, bool live,
		       uint32_t *id)
{
	uint32_t tries, c, b;

	for (tries = 0; tries < 256; tries++) {
		c = (uint32_t)(rng_next(rng) % pool->nr_chunks);
		b = (uint32_t)(rng_next(rng) % pool->bpc);
		if (pool->chunks[c].live &&
		    test_bit(pool->chunks[c].live, b) == live) {
			*id = c * pool->bpc + b;
			return true;
		}
	}
	return false;
}

/*
 * The ladder keeps each chunk's free runs between calls and recounts only
 * the chunks changed since: every path that changes a live bit or a
 * mapping must say so. Allocations, frees (and frees refused half way,
 * whose bits are put back), trims, compaction and the exact replay's
 * primitives, each followed by a bit-by-bit recount.
 */
static void test_cache_follows_every_change(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool *pool;
	uint32_t ids[48], id, to, op, n, c;
	uint64_t rng = 0xc0ffee;
	int err;

	pool_open(fx, NR_CHUNKS, 4);
	pool = fx->pool;
	/* Replayed maps leave empty chunks over the watermark, as in replay. */
	pool->empty_kept = pool->nr_chunks;
	expect_ladder_matches(pool, 0);
	for (op = 1; op < 3000; op++) {
		uint64_t r = rng_next(&rng);

		switch (r % 9) {
		case 0:
		case 1:
			n = 1 + (uint32_t)(r >> 8) % 40;
			err = kvc_pool_alloc(pool, n, ids);
			if (err)
				assert_int_equal(err, -ENOMEM);
			break;
		case 2:
		case 3:
			/* Up to 8 live blocks, then maybe one that is not. */
			for (n = 0; n < 8 && pick_block(pool, &rng, true, &id);
			     n++) {
				uint32_t k;

				for (k = 0; k < n && ids[k] != id; k++)
					;
				if (k < n)
					break;
				ids[n] = id;
			}
			if (r & 0x100 && n) {
				ids[n++] = ids[0];
				assert_int_equal(kvc_pool_free(pool, n, ids),
						 -EINVAL);
			} else if (n) {
				assert_int_equal(kvc_pool_free(pool, n, ids),
						 0);
			}
			break;
		case 4:
			assert_int_equal(kvc_pool_compact(pool, NULL, NULL), 0);
			break;
		case 5:
			assert_int_equal(kvc_pool_trim(pool, 0), 0);
			break;
		case 6:
			if (pick_block(pool, &rng, false, &id))
				assert_int_equal(kvc_replay_take(pool, id), 0);
			if (pick_block(pool, &rng, true, &id))
				assert_int_equal(kvc_replay_free(pool, id), 0);
			break;
		case 7:
			if (pick_block(pool, &rng, true, &id) &&
			    pick_block(pool, &rng, false, &to))
				assert_int_equal(
					kvc_replay_move(pool, id, to, op), 0);
			break;
		case 8:
			c = (uint32_t)(r >> 8) % pool->nr_chunks;
			if (!pool->chunks[c].live)
				err = kvc_replay_map_chunk(pool, c);
			else if (!pool->chunks[c].nr_live)
				err = kvc_replay_unmap_chunk(pool, c);
			else
				err = 0;
			assert_int_equal(err, 0);
			break;
		}
		expect_ladder_matches(pool, op);
	}
}

/* ------------------------------------------------------------------ */
/* The accumulator */

static struct kvc_ladder level(uint64_t step, uint64_t logical, uint64_t live,
			       uint64_t held, uint64_t mapped, uint64_t parked,
			       uint64_t res, uint64_t tail,
			       uint64_t free_mapped, uint64_t seqs)
{
	struct kvc_ladder l;

	memset(&l, 0, sizeof(l));
	l.step = step;
	l.t_ns = 1000 * (step + 1);
	l.logical = logical;
	l.live = live;
	l.held = held;
	l.mapped = mapped;
	l.parked = parked;
	l.reservation = res;
	l.tail = tail;
	l.free_mapped = free_mapped;
	l.seqs = seqs;
	return l;
}

/* Three samples at 0, 2 and 5, closed at 6: weights 2, 3 and 1. */
static void test_acc_hand_computed(void **state)
{
	struct kvc_ladder s[3] = {
		level(0, 40, 10, 20, 100, 10, 4, 6, 70, 1),
		level(2, 80, 30, 40, 100, 0, 0, 10, 60, 3),
		level(5, 60, 20, 30, 200, 50, 2, 8, 120, 2),
	};
	struct kvc_ladder_acc acc;
	struct kvc_ladder_peaks p, again;
	int i;

	(void)state;
	kvc_ladder_acc_init(&acc);
	for (i = 0; i < 3; i++)
		assert_int_equal(kvc_ladder_acc_add(&acc, &s[i], s[i].step), 0);
	kvc_ladder_acc_end(&acc, 6, &p);
	EXPECT_U64(p.samples, 3);
	EXPECT_U64(p.live_peak, 30);
	EXPECT_U64(p.live_peak_step, 2);
	EXPECT_U64(p.live_peak_ns, 3000);
	EXPECT_U64(p.mapped_at_live_peak, 100);
	EXPECT_U64(p.mapped_peak, 200);
	EXPECT_U64(p.mapped_peak_step, 5);
	EXPECT_U64(p.mapped_peak_ns, 6000);
	EXPECT_U64(p.live_at_mapped_peak, 20);
	EXPECT_REAL(p.gmlake_util, 30.0 / 200);
	EXPECT_REAL(p.jw2, 100.0 / 30);
	EXPECT_REAL(p.jw3, 200.0 / 20);
	EXPECT_REAL(p.jw4, 200.0 / 30);
	EXPECT_REAL(p.weight, 6);
	EXPECT_REAL(p.mean_logical, (2 * 40 + 3 * 80 + 60) / 6.0);
	EXPECT_REAL(p.mean_live, (2 * 10 + 3 * 30 + 20) / 6.0);
	EXPECT_REAL(p.mean_held, (2 * 20 + 3 * 40 + 30) / 6.0);
	EXPECT_REAL(p.mean_mapped, (2 * 100 + 3 * 100 + 200) / 6.0);
	EXPECT_REAL(p.mean_parked, (2 * 10 + 0 + 50) / 6.0);
	EXPECT_REAL(p.mean_reservation, (2 * 4 + 0 + 2) / 6.0);
	EXPECT_REAL(p.mean_tail, (2 * 6 + 3 * 10 + 8) / 6.0);
	EXPECT_REAL(p.mean_free_mapped, (2 * 70 + 3 * 60 + 120) / 6.0);
	EXPECT_REAL(p.mean_seqs, (2 * 1 + 3 * 3 + 2) / 6.0);
	EXPECT_REAL(p.mean_util, (2 * 0.1 + 3 * 0.3 + 1 * 0.1) / 6);

	/* Closing does not disturb the running accumulator. */
	kvc_ladder_acc_end(&acc, 6, &again);
	assert_memory_equal(&p, &again, sizeof(p));

	/* Going backwards, or nowhere, is refused and adds nothing. */
	assert_int_equal(kvc_ladder_acc_add(&acc, &s[0], 4), -EINVAL);
	assert_int_equal(kvc_ladder_acc_add(&acc, &s[0], NAN), -EINVAL);
	assert_int_equal(kvc_ladder_acc_add(&acc, &s[0], INFINITY), -EINVAL);
	assert_int_equal(kvc_ladder_acc_add(NULL, &s[0], 7), -EINVAL);
	kvc_ladder_acc_end(&acc, 6, &again);
	assert_memory_equal(&p, &again, sizeof(p));
}

/* Equal peaks keep the first; nothing mapped counts as full use. */
static void test_acc_first_peak_and_zero(void **state)
{
	struct kvc_ladder a = level(1, 0, 50, 50, 100, 0, 0, 0, 50, 1);
	struct kvc_ladder b = level(4, 0, 50, 50, 100, 0, 0, 0, 50, 1);
	struct kvc_ladder z = level(6, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	struct kvc_ladder_acc acc;
	struct kvc_ladder_peaks p;

	(void)state;
	kvc_ladder_acc_init(&acc);
	kvc_ladder_acc_end(&acc, 3, &p);
	EXPECT_U64(p.samples, 0);
	EXPECT_REAL(p.mean_util, 0);
	EXPECT_REAL(p.gmlake_util, 0);
	assert_int_equal(kvc_ladder_acc_add(&acc, &a, 1), 0);
	assert_int_equal(kvc_ladder_acc_add(&acc, &b, 4), 0);
	assert_int_equal(kvc_ladder_acc_add(&acc, &z, 6), 0);
	kvc_ladder_acc_end(&acc, 8, &p);
	EXPECT_U64(p.live_peak_step, 1);
	EXPECT_U64(p.mapped_peak_step, 1);
	EXPECT_REAL(p.weight, 7);
	EXPECT_REAL(p.mean_util, (3 * 0.5 + 2 * 0.5 + 2 * 1.0) / 7);
	EXPECT_REAL(p.mean_live, (3 * 50 + 2 * 50) / 7.0);
	EXPECT_REAL(p.gmlake_util, 0.5);
	EXPECT_REAL(p.jw3, 2);

	/* Live never above 0: the ratios over it are 0, not infinite. */
	kvc_ladder_acc_init(&acc);
	z.mapped = 64;
	assert_int_equal(kvc_ladder_acc_add(&acc, &z, 0), 0);
	kvc_ladder_acc_end(&acc, 1, &p);
	EXPECT_REAL(p.jw2, 0);
	EXPECT_REAL(p.jw3, 0);
	EXPECT_REAL(p.jw4, 0);
	EXPECT_REAL(p.gmlake_util, 0);
	EXPECT_REAL(p.mean_util, 0);
}

/* Samples with no weight between them: each counts once. */
static void test_acc_no_weight(void **state)
{
	struct kvc_ladder a = level(3, 10, 10, 10, 40, 0, 0, 0, 30, 1);
	struct kvc_ladder b = level(3, 30, 30, 30, 80, 0, 0, 0, 50, 3);
	struct kvc_ladder_acc acc;
	struct kvc_ladder_peaks p;

	(void)state;
	kvc_ladder_acc_init(&acc);
	assert_int_equal(kvc_ladder_acc_add(&acc, &a, 3), 0);
	assert_int_equal(kvc_ladder_acc_add(&acc, &b, 3), 0);
	kvc_ladder_acc_end(&acc, 3, &p);
	EXPECT_REAL(p.weight, 0);
	EXPECT_REAL(p.mean_live, 20);
	EXPECT_REAL(p.mean_mapped, 60);
	EXPECT_REAL(p.mean_seqs, 2);
	EXPECT_REAL(p.mean_util, (0.25 + 0.375) / 2);
	/* Closed later, only the last sample holds. */
	kvc_ladder_acc_end(&acc, 5, &p);
	EXPECT_REAL(p.weight, 2);
	EXPECT_REAL(p.mean_live, 30);
	/* A later interval with weight replaces the plain sums. */
	b.step = 4;
	assert_int_equal(kvc_ladder_acc_add(&acc, &b, 4), 0);
	kvc_ladder_acc_end(&acc, 4, &p);
	EXPECT_REAL(p.weight, 1);
	EXPECT_REAL(p.mean_live, 30);
	EXPECT_U64(p.samples, 3);
}

/* ------------------------------------------------------------------ */
/* kvc_pool_sample() */

/* More samples than the ring holds: the oldest go, peaks cover all. */
static void test_sample_ring_wraps(void **state)
{
	struct fixture *fx = *state;
	const struct kvc_stats_sample *s;
	struct kvc_stats_snapshot *snap;
	const struct kvc_stats_page *pg;
	struct kvc_pool_params pp;
	struct kvc_ladder_peaks p;
	struct kvc_pool_usage u = { 0 };
	struct kvc_pool_stats st;
	uint32_t ids[4 * 8], total = 300, i;

	/* The ring is the stats page's: published into a directory of ours. */
	snprintf(fx->pages, sizeof(fx->pages), "/tmp/kvc-ladder-XXXXXX");
	assert_non_null(mkdtemp(fx->pages));
	assert_int_equal(setenv("KVC_STATS_DIR", fx->pages, 1), 0);
	kvc_pool_params_init(&pp);
	pp.block_bytes = BLOCK;
	pp.capacity_blocks = 4ull * BPC;
	pp.backend = fx->be;
	pp.empty_chunks_kept = 1;
	pp.name = "ladder-ring";
	if (kvc_pool_create(&pp, &fx->pool))
		fail_msg("kvc_pool_create: %s", kvc_last_error());
	kvc_pool_peaks(fx->pool, &p);
	EXPECT_U64(p.samples, 0);
	for (i = 0; i < total; i++) {
		/* Live climbs to 32 blocks at step 31, then stays. */
		if (i < 32)
			assert_int_equal(kvc_pool_alloc(fx->pool, 1, ids + i),
					 0);
		u.live_bytes = (uint64_t)(i < 32 ? i + 1 : 32) * BLOCK;
		u.logical_bytes = u.live_bytes;
		u.seqs = 1;
		assert_int_equal(kvc_pool_sample(fx->pool, &u, 10 + i), 0);
		CHECK(fx->pool);
	}
	snap = malloc(sizeof(*snap));
	assert_non_null(snap);
	if (kvc_stats_read(kvc_pool_stats_path(fx->pool), snap))
		fail_msg("kvc_stats_read: %s", kvc_last_error());
	pg = &snap->page;
	EXPECT_U64(pg->samples, total);
	EXPECT_U64(pg->ring_count, KVC_STATS_RING);
	EXPECT_U64(pg->ring_head, total % KVC_STATS_RING);
	/* The oldest sample sits at the head, the newest just before it. */
	s = &pg->ring[pg->ring_head];
	EXPECT_U64(s->step, 10 + total - KVC_STATS_RING);
	s = &pg->ring[(pg->ring_head + KVC_STATS_RING - 1) % KVC_STATS_RING];
	EXPECT_U64(s->step, 10 + total - 1);
	EXPECT_U64(s->live, 32 * BLOCK);
	EXPECT_U64(s->held, 32 * BLOCK);
	EXPECT_U64(s->mapped, 4 * GRAN);
	kvc_pool_get_stats(fx->pool, &st, NULL);
	EXPECT_U64(s->backend_map, st.backend_map);
	EXPECT_U64(s->blocks_moved, 0);
	EXPECT_REAL(s->pack_ratio, 1);
	EXPECT_U64(pg->ladder.step, 10 + total - 1);
	free(snap);

	kvc_pool_peaks(fx->pool, &p);
	EXPECT_U64(p.samples, total);
	EXPECT_REAL(p.weight, total); /* one step each, the last too */
	EXPECT_U64(p.live_peak, 32 * BLOCK);
	EXPECT_U64(p.live_peak_step, 10 + 31);
	EXPECT_U64(p.mapped_peak, 4 * GRAN);
	EXPECT_U64(p.mapped_peak_step, 10 + 24); /* the 4th chunk's first */
	EXPECT_REAL(p.gmlake_util, 1);
	EXPECT_REAL(p.mean_seqs, 1);

	/* A step that goes backwards keeps nothing. */
	assert_int_equal(kvc_pool_sample(fx->pool, &u, 5), -EINVAL);
	kvc_pool_peaks(fx->pool, &p);
	EXPECT_U64(p.samples, total);
	assert_int_equal(kvc_pool_sample(NULL, &u, 5), -EINVAL);
	CHECK(fx->pool);
}

/* A sample reaches the pool's trace as one KVC_REC_SAMPLE event. */
static void test_sample_recorded(void **state)
{
	struct fixture *fx = *state;
	struct kvc_recorder_params rp = { .sync_io = true };
	struct kvc_pool_usage u = { 0 };
	struct kvc_recorder *rec;
	struct kvc_rec_reader *rd;
	struct kvc_rec_event ev;
	char path[] = "/tmp/kvc-ladder-trace-XXXXXX";
	uint32_t ids[3], found = 0;
	int fd, rc;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	pool_open(fx, 2, 1);
	assert_int_equal(kvc_recorder_open(path, &rp, &rec), 0);
	assert_int_equal(kvc_pool_set_recorder(fx->pool, rec), 0);
	assert_int_equal(kvc_pool_alloc(fx->pool, 3, ids), 0);
	u.logical_bytes = 90000;
	u.live_bytes = 20000;
	u.reservation_bytes = 1000;
	assert_int_equal(kvc_pool_sample(fx->pool, &u, 4), 0);
	CHECK(fx->pool);
	assert_int_equal(kvc_pool_set_recorder(fx->pool, NULL), 0);
	assert_int_equal(kvc_recorder_close(rec), 0);

	assert_int_equal(kvc_rec_reader_open(path, &rd), 0);
	while ((rc = kvc_rec_next(rd, &ev)) == 1) {
		if (ev.kind != KVC_REC_SAMPLE)
			continue;
		found++;
		EXPECT_U64(ev.p[0], 90000);
		EXPECT_U64(ev.p[1], 20000);
		EXPECT_U64(ev.p[2], 3 * BLOCK);
		EXPECT_U64(ev.p[3], GRAN);
		EXPECT_U64(ev.p[4], 0);
		EXPECT_U64(ev.p[5], 1000);
	}
	if (rc < 0)
		fail_msg("kvc_rec_next() = %d: %s", rc, kvc_last_error());
	kvc_rec_reader_close(rd);
	unlink(path);
	EXPECT_U64(found, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_runs_two_and_four, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_parked_chunk_is_one_run,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkerboard, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_empty_pool, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_names_identity,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_workload, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_random_workload_odd_chunk,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_follows_every_change,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_acc_hand_computed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_acc_first_peak_and_zero,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_acc_no_weight, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sample_ring_wraps, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sample_recorded, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
