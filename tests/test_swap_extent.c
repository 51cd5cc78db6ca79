/* Description: swap slot map: first fit, one run or gathered runs, ENOSPC, reuse lowest first, high water, refused frees and marks, random ops against a model */
// SPDX-License-Identifier: MIT
/*
 * Tests of swap/extent.c. kvc_extents_check() runs after every operation;
 * a refused operation must leave the map byte for byte as it was, which
 * the tests check by comparing with a copy taken before.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include "../swap/extent.h"

#define CAP 1000u

struct fixture {
	struct kvc_extents map;
	uint64_t seed;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	if (kvc_extents_init(&fx->map, CAP)) {
		free(fx);
		return -1;
	}
	fx->seed = 0x2545f4914f6cdd1dull;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	kvc_extents_destroy(&fx->map);
	free(fx);
	return 0;
}

/* Every invariant of map @x holds, or the test fails at the caller's line. */
#define XCHECK(x) check_map_at(x, __FILE__, __LINE__)

static void check_map_at(const struct kvc_extents *x, const char *file,
			 int line)
{
	int err = kvc_extents_check(x);

	if (err)
		fail_msg("%s:%d: kvc_extents_check() = %d: %s", file, line, err,
			 kvc_last_error());
}

/* A copy of a map, to show that a refused call changed nothing. */
struct snapshot {
	struct kvc_extents x;
	uint64_t bits[(CAP + 63) / 64];
};

static void snap(const struct kvc_extents *x, struct snapshot *s)
{
	s->x = *x;
	memcpy(s->bits, x->bits, sizeof(s->bits));
}

static void expect_unchanged(const struct kvc_extents *x,
			     const struct snapshot *s)
{
	EXPECT_U64(x->cap, s->x.cap);
	EXPECT_U64(x->used, s->x.used);
	EXPECT_U64(x->high, s->x.high);
	if (memcmp(x->bits, s->bits, sizeof(s->bits)))
		fail_msg("the bitmap changed");
}

/* Takes @n slots, checks the map, and returns the extents. */
static struct kvc_extent *alloc_ok(struct kvc_extents *x, uint64_t n,
				   uint32_t *nr)
{
	struct kvc_extent *e = NULL;
	int err = kvc_extents_alloc(x, n, &e, nr);

	if (err)
		fail_msg("kvc_extents_alloc(%llu) = %d: %s",
			 (unsigned long long)n, err, kvc_last_error());
	XCHECK(x);
	return e;
}

static void free_ok(struct kvc_extents *x, const struct kvc_extent *e,
		    uint32_t nr)
{
	int err = kvc_extents_free(x, e, nr);

	if (err)
		fail_msg("kvc_extents_free() = %d: %s", err, kvc_last_error());
	XCHECK(x);
}

static void mark_ok(struct kvc_extents *x, const struct kvc_extent *e,
		    uint32_t nr)
{
	int err = kvc_extents_mark(x, e, nr);

	if (err)
		fail_msg("kvc_extents_mark() = %d: %s", err, kvc_last_error());
	XCHECK(x);
}

/* Takes exactly the one extent (@start, @len). */
static void alloc_one(struct kvc_extents *x, uint64_t len, uint64_t start)
{
	uint32_t nr = 0;
	struct kvc_extent *e = alloc_ok(x, len, &nr);

	EXPECT_U64(nr, 1);
	EXPECT_U64(e[0].start, start);
	EXPECT_U64(e[0].len, len);
	free(e);
}

static void free_range(struct kvc_extents *x, uint64_t start, uint64_t len)
{
	struct kvc_extent e = { start, len };

	free_ok(x, &e, 1);
}

static void test_init(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents x;

	EXPECT_U64(fx->map.cap, CAP);
	EXPECT_U64(fx->map.used, 0);
	EXPECT_U64(fx->map.high, 0);
	EXPECT_U64(kvc_extents_free_slots(&fx->map), CAP);
	XCHECK(&fx->map);

	EXPECT_U64(kvc_extents_init(&x, 0), -EINVAL);
	EXPECT_U64(kvc_extents_init(&x, (1ull << 40) + 1), -EINVAL);
	EXPECT_U64(kvc_extents_init(&x, 1), 0);
	alloc_one(&x, 1, 0);
	kvc_extents_destroy(&x);
	EXPECT_U64(x.cap, 0);
	EXPECT_U64(x.bits == NULL, 1);
	kvc_extents_destroy(&x); /* twice is harmless */
}

static void test_alloc_free(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents *x = &fx->map;

	alloc_one(x, 10, 0);
	alloc_one(x, 100, 10);
	alloc_one(x, 1, 110);
	EXPECT_U64(x->used, 111);
	EXPECT_U64(x->high, 111);
	free_range(x, 10, 100);
	EXPECT_U64(x->used, 11);
	EXPECT_U64(x->high, 111); /* the file still spans it */
	/* Lowest fit: 50 slots go back at 10, 60 more after them. */
	alloc_one(x, 50, 10);
	alloc_one(x, 50, 60);
	/* No hole of 2 left below 111: after it. */
	alloc_one(x, 2, 111);
	EXPECT_U64(x->high, 113);
	/* Across word boundaries, up to the cap exactly. */
	alloc_one(x, CAP - 113, 113);
	EXPECT_U64(kvc_extents_free_slots(x), 0);
	EXPECT_U64(x->high, CAP);
	free_range(x, 0, CAP);
	EXPECT_U64(x->used, 0);
	EXPECT_U64(x->high, CAP);
	alloc_one(x, CAP, 0);
}

/* A run long enough is preferred to lower but shorter holes. */
static void test_single_run(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents *x = &fx->map;

	alloc_one(x, 300, 0);
	/* Holes of 5 at 10, 20 at 100, 64 at 200 (a whole word's worth). */
	free_range(x, 10, 5);
	free_range(x, 100, 20);
	free_range(x, 200, 64);
	alloc_one(x, 3, 10); /* the lowest hole that fits */
	alloc_one(x, 21, 200);
	alloc_one(x, 20, 100);
	alloc_one(x, 43, 221);
	alloc_one(x, 2, 13);
	/* Nothing below 300 is free now. */
	alloc_one(x, 1, 300);
}

static void test_gather(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents *x = &fx->map;
	struct kvc_extent *e;
	uint32_t nr;

	alloc_one(x, CAP, 0);
	/* Holes of 7 at 3, 1 at 63, 30 at 64 + 100, and the last 10. */
	free_range(x, 3, 7);
	free_range(x, 63, 1);
	free_range(x, 164, 30);
	free_range(x, CAP - 10, 10);
	e = alloc_ok(x, 38, &nr);
	EXPECT_U64(nr, 3);
	EXPECT_U64(e[0].start, 3);
	EXPECT_U64(e[0].len, 7);
	EXPECT_U64(e[1].start, 63);
	EXPECT_U64(e[1].len, 1);
	EXPECT_U64(e[2].start, 164);
	EXPECT_U64(e[2].len, 30); /* 7 + 1 + 30: none cut */
	free_ok(x, e, nr);
	free(e);
	e = alloc_ok(x, 45, &nr);
	EXPECT_U64(nr, 4);
	EXPECT_U64(e[3].start, CAP - 10);
	EXPECT_U64(e[3].len, 7); /* the last run cut to size */
	EXPECT_U64(kvc_extents_free_slots(x), 3);
	/* Freeing the gathered extents gives all of them back. */
	free_ok(x, e, nr);
	free(e);
	EXPECT_U64(kvc_extents_free_slots(x), 48);
	/* 30 fits in one run: taken as one, at the lowest such place. */
	alloc_one(x, 30, 164);
}

static void test_enospc(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents *x = &fx->map;
	struct kvc_extent *e = NULL;
	struct snapshot s;
	uint32_t nr = 77;

	alloc_one(x, CAP - 20, 0);
	free_range(x, 5, 5);
	snap(x, &s);
	EXPECT_U64(kvc_extents_alloc(x, 26, &e, &nr), -ENOSPC);
	expect_unchanged(x, &s);
	EXPECT_U64(e == NULL, 1);
	EXPECT_U64(nr, 77);
	EXPECT_U64(kvc_extents_alloc(x, UINT64_MAX, &e, &nr), -ENOSPC);
	EXPECT_U64(kvc_extents_alloc(x, 0, &e, &nr), -EINVAL);
	EXPECT_U64(kvc_extents_alloc(x, 1, NULL, &nr), -EINVAL);
	EXPECT_U64(kvc_extents_alloc(x, 1, &e, NULL), -EINVAL);
	expect_unchanged(x, &s);
	XCHECK(x);
	/* Exactly what is free still works. */
	e = alloc_ok(x, 25, &nr);
	EXPECT_U64(nr, 2);
	EXPECT_U64(kvc_extents_free_slots(x), 0);
	free(e);
}

static void test_reuse_lowest(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents *x = &fx->map;

	for (uint64_t i = 0; i < 10; i++)
		alloc_one(x, 10, i * 10);
	free_range(x, 70, 10);
	free_range(x, 20, 10);
	free_range(x, 50, 10);
	alloc_one(x, 10, 20);
	alloc_one(x, 10, 50);
	alloc_one(x, 10, 70);
	alloc_one(x, 10, 100);
	EXPECT_U64(x->high, 110);
}

static void test_high_water(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents *x = &fx->map;
	struct kvc_extent m = { 500, 20 };

	alloc_one(x, 5, 0);
	EXPECT_U64(x->high, 5);
	mark_ok(x, &m, 1);
	EXPECT_U64(x->high, 520);
	EXPECT_U64(x->used, 25);
	free_ok(x, &m, 1);
	EXPECT_U64(x->high, 520);
	alloc_one(x, 100, 5);
	EXPECT_U64(x->high, 520);
	alloc_one(x, 500, 105);
	EXPECT_U64(x->high, 605);
}

static void test_bad_free(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents *x = &fx->map;
	struct snapshot s;
	struct kvc_extent bad[][2] = {
		{ { 0, 10 }, { 20, 0 } }, /* empty */
		{ { 0, 10 }, { 50, 1 } }, /* never taken */
		{ { 0, 10 }, { 95, 10 } }, /* half taken */
		{ { 0, 10 }, { 5, 10 } }, /* overlap: double free */
		{ { 0, 10 }, { CAP - 1, 2 } }, /* past the cap */
		{ { 0, 10 }, { CAP, 1 } }, /* at the cap */
		{ { 0, 10 }, { UINT64_MAX - 2, 5 } }, /* start + len wraps */
		{ { 0, 10 }, { 1, UINT64_MAX } }, /* likewise */
	};

	alloc_one(x, 40, 0);
	alloc_one(x, 60, 40);
	alloc_one(x, CAP - 100, 100);
	free_range(x, 40, 60);
	snap(x, &s);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int err = kvc_extents_free(x, bad[i], 2);

		if (err != -EINVAL)
			fail_msg(
				"bad free %zu (%llu, %llu) = %d, expected -EINVAL",
				i, (unsigned long long)bad[i][1].start,
				(unsigned long long)bad[i][1].len, err);
		expect_unchanged(x, &s);
		XCHECK(x);
	}
	EXPECT_U64(kvc_extents_free(x, NULL, 1), -EINVAL);
	EXPECT_U64(kvc_extents_free(x, NULL, 0), 0);
	expect_unchanged(x, &s);
	/* A free that was refused can be done right afterwards. */
	free_ok(x, bad[0], 1);
	free_ok(x, bad[0], 0);
	EXPECT_U64(kvc_extents_free(x, bad[0], 1), -EINVAL);
}

static void test_bad_mark(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents *x = &fx->map;
	struct snapshot s;
	struct kvc_extent bad[][2] = {
		{ { 100, 10 }, { 200, 0 } }, /* empty */
		{ { 100, 10 }, { 30, 20 } }, /* half taken */
		{ { 100, 10 }, { 105, 10 } }, /* overlap within the call */
		{ { 100, 10 }, { 0, 1 } }, /* taken */
		{ { 100, 10 }, { CAP - 1, 2 } }, /* past the cap */
		{ { 100, 10 }, { UINT64_MAX - 2, 5 } }, /* wraps */
	};
	struct kvc_extent good[2] = { { 900, 50 }, { 100, 10 } };

	alloc_one(x, 40, 0);
	snap(x, &s);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int err = kvc_extents_mark(x, bad[i], 2);

		if (err != -EINVAL)
			fail_msg(
				"bad mark %zu (%llu, %llu) = %d, expected -EINVAL",
				i, (unsigned long long)bad[i][1].start,
				(unsigned long long)bad[i][1].len, err);
		expect_unchanged(x, &s);
		XCHECK(x);
	}
	/* A refused mark that would have raised the high water did not. */
	EXPECT_U64(x->high, 40);
	EXPECT_U64(kvc_extents_mark(x, NULL, 1), -EINVAL);
	mark_ok(x, good, 2);
	EXPECT_U64(x->used, 100);
	EXPECT_U64(x->high, 950);
	/* Allocation works around marked extents. */
	alloc_one(x, 60, 40);
	alloc_one(x, 10, 110);
	/* 800 fit in no run: 780 at 120, then 20 of the 50 after 950. */
	{
		uint32_t nr;
		struct kvc_extent *e = alloc_ok(x, 800, &nr);

		EXPECT_U64(nr, 2);
		EXPECT_U64(e[0].start, 120);
		EXPECT_U64(e[0].len, 780);
		EXPECT_U64(e[1].start, 950);
		EXPECT_U64(e[1].len, 20);
		free(e);
	}
}

/* The checker catches each kind of damage. */
static void test_check(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents *x = &fx->map;

	alloc_one(x, 70, 0);
	x->used++;
	EXPECT_U64(kvc_extents_check(x), -EFAULT);
	x->used--;
	x->high = 69;
	EXPECT_U64(kvc_extents_check(x), -EFAULT);
	x->high = CAP + 1;
	EXPECT_U64(kvc_extents_check(x), -EFAULT);
	x->high = 70;
	XCHECK(x);
	x->bits[(CAP - 1) / 64] |= 1ull << 63; /* past the cap of 1000 */
	x->used++;
	EXPECT_U64(kvc_extents_check(x), -EFAULT);
	x->bits[(CAP - 1) / 64] &= ~(1ull << 63);
	x->used--;
	XCHECK(x);
}

/*
 * The model's answer for @n slots: the lowest free run of @n as one
 * extent, else the free runs from the lowest up, the last one cut.
 */
static uint32_t model_alloc(const bool *model, uint64_t n,
			    struct kvc_extent *want)
{
	uint64_t run = 0, left = n;
	uint32_t nr = 0;

	for (uint64_t s = 0; s < CAP; s++) {
		run = model[s] ? 0 : run + 1;
		if (run == n) {
			want[0].start = s + 1 - n;
			want[0].len = n;
			return 1;
		}
	}
	for (uint64_t s = 0; s < CAP && left; s++) {
		if (model[s])
			continue;
		if (nr && want[nr - 1].start + want[nr - 1].len == s) {
			want[nr - 1].len++;
		} else {
			want[nr].start = s;
			want[nr].len = 1;
			nr++;
		}
		left--;
	}
	return nr;
}

static void model_set(bool *model, const struct kvc_extent *e, uint32_t nr,
		      bool taken)
{
	for (uint32_t k = 0; k < nr; k++)
		for (uint64_t j = 0; j < e[k].len; j++)
			model[e[k].start + j] = taken;
}

/* Random allocs, frees and marks against a bool per slot. */
static void test_random_model(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents *x = &fx->map;
	static struct kvc_extent want[CAP];
	bool model[CAP] = { false };
	struct {
		struct kvc_extent *e;
		uint32_t nr;
	} live[64] = { { NULL, 0 } };
	uint64_t used = 0, high = 0;

	for (int op = 0; op < 4000; op++) {
		uint32_t i = (uint32_t)(rng_next(&fx->seed) % 64), nr;
		uint64_t n = 1 + rng_next(&fx->seed) % 80;
		struct kvc_extent *e = NULL;

		if (live[i].e) {
			model_set(model, live[i].e, live[i].nr, false);
			for (uint32_t k = 0; k < live[i].nr; k++)
				used -= live[i].e[k].len;
			free_ok(x, live[i].e, live[i].nr);
			free(live[i].e);
			live[i].e = NULL;
		} else if (rng_next(&fx->seed) % 8 == 0) {
			/* Mark (up to n of) the first free run after s. */
			uint64_t s = rng_next(&fx->seed) % CAP, len = 0;

			while (s < CAP && model[s])
				s++;
			while (s + len < CAP && !model[s + len] && len < n)
				len++;
			if (!len)
				continue;
			e = malloc(sizeof(*e));
			assert_non_null(e);
			e->start = s;
			e->len = len;
			mark_ok(x, e, 1);
			model_set(model, e, 1, true);
			used += len;
			live[i].e = e;
			live[i].nr = 1;
		} else if (n > CAP - used) {
			EXPECT_U64(kvc_extents_alloc(x, n, &e, &nr), -ENOSPC);
			XCHECK(x);
		} else {
			uint32_t want_nr = model_alloc(model, n, want);

			e = alloc_ok(x, n, &nr);
			if (nr != want_nr)
				fail_msg(
					"op %d: alloc(%llu) gave %u extents, expected %u",
					op, (unsigned long long)n, nr, want_nr);
			for (uint32_t k = 0; k < nr; k++)
				if (e[k].start != want[k].start ||
				    e[k].len != want[k].len)
					fail_msg(
						"op %d: extent %u is (%llu, %llu), expected (%llu, %llu)",
						op, k,
						(unsigned long long)e[k].start,
						(unsigned long long)e[k].len,
						(unsigned long long)want[k]
							.start,
						(unsigned long long)want[k]
							.len);
			model_set(model, e, nr, true);
			used += n;
			live[i].e = e;
			live[i].nr = nr;
		}
		for (uint32_t k = 0; live[i].e && k < live[i].nr; k++)
			if (live[i].e[k].start + live[i].e[k].len > high)
				high = live[i].e[k].start + live[i].e[k].len;
		EXPECT_U64(x->used, used);
		EXPECT_U64(x->high, high);
		for (uint64_t s = 0; s < CAP; s++) {
			bool taken = x->bits[s / 64] >> (s % 64) & 1;

			if (taken != model[s])
				fail_msg("op %d: slot %llu is %s in the map",
					 op, (unsigned long long)s,
					 taken ? "taken" : "free");
		}
	}
	for (uint32_t i = 0; i < 64; i++)
		free(live[i].e);
}

/* A map of 2^24 slots: freed runs are found again lowest first. */
#define RUNS 64
static void test_large_map(void **state)
{
	struct fixture *fx = *state;
	struct kvc_extents *x = &fx->map;
	struct kvc_extent *e[RUNS];
	uint64_t start[RUNS], len[RUNS], total = 0;
	uint32_t nr;

	kvc_extents_destroy(x);
	assert_int_equal(kvc_extents_init(x, 1ull << 24), 0);
	for (int i = 0; i < RUNS; i++) {
		len[i] = 1 + rng_next(&fx->seed) % 4096;
		e[i] = alloc_ok(x, len[i], &nr);
		EXPECT_U64(nr, 1);
		EXPECT_U64(e[i][0].start, total);
		start[i] = total;
		total += len[i];
	}
	for (int i = 0; i < RUNS; i += 2) {
		free_ok(x, e[i], 1);
		free(e[i]);
	}
	/* Each hole is exactly its old run: the same sizes refill them. */
	for (int i = 0; i < RUNS; i += 2) {
		e[i] = alloc_ok(x, len[i], &nr);
		EXPECT_U64(nr, 1);
		EXPECT_U64(e[i][0].start, start[i]);
	}
	alloc_one(x, 1ull << 20, total);
	for (int i = 0; i < RUNS; i++) {
		free_ok(x, e[i], 1);
		free(e[i]);
	}
	EXPECT_U64(x->used, 1ull << 20);
	EXPECT_U64(x->high, total + (1ull << 20));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_free, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_single_run, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_gather, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enospc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reuse_lowest, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_high_water, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_free, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_mark, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_model, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_large_map, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
