/* Description: placement policies (fullest, first-fit, random): conservation under seeded workloads, where each takes from, and what each leaves behind */
// SPDX-License-Identifier: MIT
/*
 * Pools run on the sim backend (nothing mapped) with 16 blocks per chunk,
 * so a chunk's blocks are ids [16c, 16c + 16). kvc_pool_check() runs after
 * every call, and a shadow set of live ids follows every workload.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/kvc.h>

#define GRAN (64ull << 10)
#define BLOCK 4096ull
#define BPC 16u
#define NR_CHUNKS 64u
#define NR_BLOCKS (BPC * NR_CHUNKS)

static const enum kvc_placement policies[] = {
	KVC_PLACE_FULLEST,
	KVC_PLACE_FIRST_FIT,
	KVC_PLACE_RANDOM,
};

#define NR_POLICIES (sizeof(policies) / sizeof(policies[0]))

struct fixture {
	struct kvc_backend *be;
	struct kvc_pool *pool;
	uint8_t shadow[NR_BLOCKS];
	uint32_t nr_live;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || kvc_backend_open_sim(GRAN, &f->be))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	kvc_pool_destroy(f->pool);
	kvc_backend_close(f->be);
	free(f);
	return 0;
}

static void open_pool(struct fixture *f, enum kvc_placement p, uint64_t seed)
{
	struct kvc_pool_params params;

	kvc_pool_destroy(f->pool);
	f->pool = NULL;
	memset(f->shadow, 0, sizeof(f->shadow));
	f->nr_live = 0;
	kvc_pool_params_init(&params);
	params.backend = f->be;
	params.block_bytes = BLOCK;
	params.capacity_blocks = NR_BLOCKS;
	params.flags = KVC_POOL_NO_STATS_PAGE;
	params.placement = p;
	params.placement_seed = seed;
	assert_int_equal(kvc_pool_create(&params, &f->pool), 0);
	CHECK(f->pool);
}

/* Allocate through the shadow: every id new, in range, not live. */
static void alloc_shadow(struct fixture *f, uint32_t n, uint32_t *ids)
{
	uint32_t i;
	int err = kvc_pool_alloc(f->pool, n, ids);

	if (err)
		fail_msg("kvc_pool_alloc(%u) = %d: %s", n, err,
			 kvc_last_error());
	CHECK(f->pool);
	for (i = 0; i < n; i++) {
		if (ids[i] >= NR_BLOCKS)
			fail_msg("id %u beyond %u blocks", ids[i], NR_BLOCKS);
		if (f->shadow[ids[i]])
			fail_msg("id %u handed out while live", ids[i]);
		f->shadow[ids[i]] = 1;
	}
	f->nr_live += n;
}

static void free_shadow(struct fixture *f, uint32_t n, const uint32_t *ids)
{
	uint32_t i;

	assert_int_equal(kvc_pool_free(f->pool, n, ids), 0);
	CHECK(f->pool);
	for (i = 0; i < n; i++) {
		assert_true(f->shadow[ids[i]]);
		f->shadow[ids[i]] = 0;
	}
	f->nr_live -= n;
}

/* The pool's live set and counts are the shadow's. */
static void expect_shadow(struct fixture *f)
{
	struct kvc_pool_stats st;
	uint32_t id;

	kvc_pool_get_stats(f->pool, &st, NULL);
	EXPECT_U64(st.blocks_live, f->nr_live);
	EXPECT_U64(st.blocks_live + st.blocks_free, st.blocks_total);
	EXPECT_U64(st.blocks_total, NR_BLOCKS);
	for (id = 0; id < NR_BLOCKS; id++)
		if (kvc_pool_is_live(f->pool, id) != (bool)f->shadow[id])
			fail_msg("block %u: pool says %s, shadow %s", id,
				 kvc_pool_is_live(f->pool, id) ? "live" :
								 "free",
				 f->shadow[id] ? "live" : "free");
}

/*
 * Sequences that grow a block at a time and are freed whole: the same
 * stream whatever the policy, since it depends on counts, not ids.
 * Returns the sum over steps of partly used chunks.
 */
#define NR_SEQS 24
#define SEQ_MAX 20

struct seq {
	uint32_t ids[SEQ_MAX];
	uint32_t n;
	uint32_t target;
};

static uint64_t run_workload(struct fixture *f, uint64_t seed, uint32_t steps,
			     bool check_shadow)
{
	struct seq seqs[NR_SEQS];
	struct kvc_pool_stats st;
	uint64_t rng = seed, partial_sum = 0;
	uint32_t step, i;

	memset(seqs, 0, sizeof(seqs));
	for (step = 0; step < steps; step++) {
		struct seq *s = &seqs[rng_next(&rng) % NR_SEQS];

		if (!s->target) {
			s->target = 1 + (uint32_t)(rng_next(&rng) % SEQ_MAX);
			s->n = 0;
		}
		if (s->n < s->target) {
			/* Sometimes two at once: multi-block calls too. */
			uint32_t n = (s->target - s->n >= 2 &&
				      rng_next(&rng) % 4 == 0) ?
					     2 :
					     1;

			alloc_shadow(f, n, s->ids + s->n);
			s->n += n;
		} else {
			free_shadow(f, s->n, s->ids);
			s->n = s->target = 0;
		}
		if (check_shadow && step % 16 == 0)
			expect_shadow(f);
		kvc_pool_get_stats(f->pool, &st, NULL);
		partial_sum += st.chunks_partial;
	}
	expect_shadow(f);
	for (i = 0; i < NR_SEQS; i++)
		if (seqs[i].n)
			free_shadow(f, seqs[i].n, seqs[i].ids);
	expect_shadow(f);
	EXPECT_U64(f->nr_live, 0);
	return partial_sum;
}

static void test_conservation(void **state)
{
	struct fixture *f = *state;
	uint64_t seed;
	uint32_t p;

	for (p = 0; p < NR_POLICIES; p++) {
		for (seed = 1; seed <= 3; seed++) {
			open_pool(f, policies[p], seed);
			run_workload(f, seed * 7919, 1500, true);
		}
	}
}

/* Random frees and allocs of any size, not sequences: ids stay unique. */
static void test_random_calls(void **state)
{
	struct fixture *f = *state;
	uint32_t ids[32], live[NR_BLOCKS], nl, i, n, p;
	uint64_t rng = 42;
	int step;

	for (p = 0; p < NR_POLICIES; p++) {
		open_pool(f, policies[p], 99);
		for (step = 0; step < 800; step++) {
			if (rng_next(&rng) % 2 &&
			    f->nr_live + 32 <= NR_BLOCKS) {
				n = 1 + (uint32_t)(rng_next(&rng) % 32);
				alloc_shadow(f, n, ids);
				continue;
			}
			for (nl = 0, i = 0; i < NR_BLOCKS; i++)
				if (f->shadow[i])
					live[nl++] = i;
			if (!nl)
				continue;
			n = 1 +
			    (uint32_t)(rng_next(&rng) % (nl < 32 ? nl : 32));
			for (i = 0; i < n; i++) {
				uint32_t j = i + (uint32_t)(rng_next(&rng) %
							    (nl - i));
				uint32_t t = live[i];

				live[i] = live[j];
				live[j] = t;
			}
			free_shadow(f, n, live);
		}
		expect_shadow(f);
	}
}

/* Fill chunks 0..2; leave 3 free in chunk 0 and 1 free in chunk 2. */
static void three_chunks(struct fixture *f)
{
	uint32_t ids[3 * BPC], hole[4] = { 1, 5, 9, 2 * BPC + 3 }, i;

	alloc_shadow(f, 3 * BPC, ids);
	for (i = 0; i < 3 * BPC; i++)
		assert_true(f->shadow[i]); /* grown from the base up */
	free_shadow(f, 4, hole);
}

static void test_first_fit_lowest(void **state)
{
	struct fixture *f = *state;
	uint32_t id;

	open_pool(f, KVC_PLACE_FIRST_FIT, 0);
	three_chunks(f);
	/* Chunk 0 is the lowest with room, though chunk 2 is fuller. */
	alloc_shadow(f, 1, &id);
	EXPECT_U64(id / BPC, 0);
	alloc_shadow(f, 1, &id);
	EXPECT_U64(id / BPC, 0);
	alloc_shadow(f, 1, &id);
	EXPECT_U64(id / BPC, 0);
	alloc_shadow(f, 1, &id);
	EXPECT_U64(id, 2 * BPC + 3);

	open_pool(f, KVC_PLACE_FULLEST, 0);
	three_chunks(f);
	alloc_shadow(f, 1, &id);
	EXPECT_U64(id, 2 * BPC + 3);
	alloc_shadow(f, 1, &id);
	EXPECT_U64(id / BPC, 0);
}

/* All chunks half full, then 16 single allocs: which chunks they hit. */
static uint32_t spread(struct fixture *f, enum kvc_placement p, uint64_t seed,
		       uint32_t *got)
{
	uint32_t ids[NR_BLOCKS], odd[NR_BLOCKS / 2], i, n = 0, chunks = 0;
	uint8_t hit[NR_CHUNKS] = { 0 };

	open_pool(f, p, seed);
	alloc_shadow(f, NR_BLOCKS, ids);
	for (i = 0; i < NR_BLOCKS; i++)
		if (i % 2)
			odd[n++] = i;
	free_shadow(f, n, odd);
	for (i = 0; i < 16; i++) {
		alloc_shadow(f, 1, &got[i]);
		if (!hit[got[i] / BPC]++)
			chunks++;
	}
	expect_shadow(f);
	return chunks;
}

static void test_random_spreads(void **state)
{
	struct fixture *f = *state;
	uint32_t a[16], b[16], c[16];

	assert_true(spread(f, KVC_PLACE_RANDOM, 1234, a) > 1);
	assert_true(spread(f, KVC_PLACE_RANDOM, 1234, b) > 1);
	assert_memory_equal(a, b, sizeof(a));
	spread(f, KVC_PLACE_RANDOM, 4321, c);
	assert_memory_not_equal(a, c, sizeof(a));
	/* Fullest fills one chunk before it touches another. */
	EXPECT_U64(spread(f, KVC_PLACE_FULLEST, 1234, a), 2);
	/* First-fit too, from the bottom. */
	EXPECT_U64(spread(f, KVC_PLACE_FIRST_FIT, 1234, a), 2);
	EXPECT_U64(a[0] / BPC, 0);
}

static void test_fullest_fewest_partial(void **state)
{
	struct fixture *f = *state;
	uint64_t partial[NR_POLICIES];
	uint32_t p;

	for (p = 0; p < NR_POLICIES; p++) {
		open_pool(f, policies[p], 5);
		partial[p] = run_workload(f, 2024, 3000, false);
		print_message("%-9s partial chunk-steps %llu\n",
			      kvc_placement_name(policies[p]),
			      (unsigned long long)partial[p]);
	}
	assert_true(partial[0] <= partial[1]);
	assert_true(partial[0] < partial[2]);
}

static void test_names(void **state)
{
	enum kvc_placement out;
	uint32_t p;

	(void)state;
	for (p = 0; p < NR_POLICIES; p++) {
		out = (enum kvc_placement)77;
		assert_int_equal(kvc_placement_parse(
					 kvc_placement_name(policies[p]), &out),
				 0);
		assert_int_equal(out, policies[p]);
	}
	assert_string_equal(kvc_placement_name(KVC_PLACE_FIRST_FIT),
			    "first-fit");
	assert_string_equal(kvc_placement_name((enum kvc_placement)9), "?");
	out = KVC_PLACE_RANDOM;
	assert_int_equal(kvc_placement_parse("best-fit", &out), -EINVAL);
	assert_true(strstr(kvc_last_error(), "best-fit") != NULL);
	assert_int_equal(out, KVC_PLACE_RANDOM);
	assert_int_equal(kvc_placement_parse(NULL, &out), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_conservation, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_random_calls, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_first_fit_lowest, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_random_spreads, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fullest_fewest_partial,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_names, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
