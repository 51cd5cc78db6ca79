// SPDX-License-Identifier: MIT
/*
 * The slot map of a swap file: one bit per slot, searched a 64-bit word at
 * a time. Allocation is first fit from the lowest address, one extent when
 * a long enough free run exists, else the free runs gathered lowest first,
 * so the file stays as short as the live data allows.
 *
 * Every call is all-or-nothing: a refused alloc, free or mark leaves the
 * map exactly as it was. Bits at or past the cap are never set.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../alloc/bitmap.h"
#include "../alloc/error.h"
#include "extent.h"

#define MAX_SLOTS (1ull << 40)

static uint64_t nr_words(uint64_t cap)
{
	return (cap + 63) / 64;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* The lowest free slot at or after @from, or the cap when there is none. */
static uint64_t find_free(const struct kvc_extents *x, uint64_t from)
{
	return kvc_find_next_bit(x->bits, x->cap, from, false);
}

/* The lowest taken slot in [@from, @limit), or @limit when there is none. */
static uint64_t find_taken(const struct kvc_extents *x, uint64_t from,
			   uint64_t limit)
{
	return kvc_find_next_bit(x->bits, limit, from, true);
}

/* The bits of word @w that lie in [@start, @end). */
static uint64_t word_mask(uint64_t w, uint64_t start, uint64_t end)
{
	uint64_t lo = w * 64, mask = ~0ull;

	if (start > lo)
		mask &= ~0ull << (start - lo);
	if (end < lo + 64)
		mask &= ~0ull >> (lo + 64 - end);
	return mask;
}

/* Whether every slot of [@start, @start + @len) is taken (or every free). */
static bool range_is(const struct kvc_extents *x, uint64_t start, uint64_t len,
		     bool taken)
{
	uint64_t end = start + len;

	for (uint64_t w = start / 64; w <= (end - 1) / 64; w++) {
		uint64_t mask = word_mask(w, start, end);
		uint64_t bits = taken ? ~x->bits[w] : x->bits[w];

		if (bits & mask)
			return false;
	}
	return true;
}

static void range_set(struct kvc_extents *x, uint64_t start, uint64_t len,
		      bool taken)
{
	uint64_t end = start + len;

	for (uint64_t w = start / 64; w <= (end - 1) / 64; w++) {
		uint64_t mask = word_mask(w, start, end);

		if (taken)
			x->bits[w] |= mask;
		else
			x->bits[w] &= ~mask;
	}
	if (taken) {
		x->used += len;
		if (end > x->high)
			x->high = end;
	} else {
		x->used -= len;
	}
}

int kvc_extents_init(struct kvc_extents *x, uint64_t cap)
{
	if (!x)
		return kvc_err(-EINVAL, "extents init: no map");
	memset(x, 0, sizeof(*x));
	if (!cap || cap > MAX_SLOTS)
		return kvc_err(
			-EINVAL,
			"extents init: cap of %llu slots is not in 1 .. 2^40",
			(unsigned long long)cap);
	x->bits = calloc(nr_words(cap), sizeof(*x->bits));
	if (!x->bits)
		return kvc_err(-ENOMEM,
			       "extents init: no memory for %llu slots",
			       (unsigned long long)cap);
	x->cap = cap;
	return 0;
}

void kvc_extents_destroy(struct kvc_extents *x)
{
	if (!x)
		return;
	free(x->bits);
	memset(x, 0, sizeof(*x));
}

/* The lowest free run of @n slots, or the cap when there is none. */
static uint64_t find_run(const struct kvc_extents *x, uint64_t n)
{
	uint64_t pos = 0;

	while (pos < x->cap) {
		uint64_t start = find_free(x, pos), end;

		if (start >= x->cap || x->cap - start < n)
			break;
		/* Looking no further than n slots keeps long runs cheap. */
		end = find_taken(x, start, start + n);
		if (end - start == n)
			return start;
		pos = end;
	}
	return x->cap;
}

/*
 * Walks the free runs from the lowest up until @n slots are covered,
 * counting them; fills @out and takes them when it is given.
 */
static uint64_t gather(struct kvc_extents *x, uint64_t n,
		       struct kvc_extent *out)
{
	uint64_t pos = 0, count = 0;

	while (n) {
		uint64_t start = find_free(x, pos);
		uint64_t end = find_taken(x, start,
					  start + min_u64(n, x->cap - start));

		if (out) {
			out[count].start = start;
			out[count].len = end - start;
			range_set(x, start, end - start, true);
		}
		count++;
		n -= end - start;
		pos = end;
	}
	return count;
}

int kvc_extents_alloc(struct kvc_extents *x, uint64_t n,
		      struct kvc_extent **out, uint32_t *nr)
{
	struct kvc_extent *e;
	uint64_t start, count;

	if (!x || !out || !nr)
		return kvc_err(-EINVAL, "extents alloc: NULL argument");
	if (!n)
		return kvc_err(-EINVAL, "extents alloc: 0 slots asked for");
	if (n > x->cap - x->used)
		return kvc_err(
			-ENOSPC,
			"extents alloc: %llu slots asked for, %llu free of %llu",
			(unsigned long long)n,
			(unsigned long long)(x->cap - x->used),
			(unsigned long long)x->cap);
	start = find_run(x, n);
	if (start < x->cap) {
		e = malloc(sizeof(*e));
		if (!e)
			return kvc_err(-ENOMEM, "extents alloc: no memory");
		e->start = start;
		e->len = n;
		range_set(x, start, n, true);
		*out = e;
		*nr = 1;
		return 0;
	}
	count = gather(x, n, NULL);
	if (count > UINT32_MAX)
		return kvc_err(
			-ENOSPC,
			"extents alloc: %llu slots are spread over %llu free runs, more than one call can return",
			(unsigned long long)n, (unsigned long long)count);
	e = malloc(count * sizeof(*e));
	if (!e)
		return kvc_err(-ENOMEM,
			       "extents alloc: no memory for %llu extents",
			       (unsigned long long)count);
	gather(x, n, e);
	*out = e;
	*nr = (uint32_t)count;
	return 0;
}

/*
 * Takes (or frees) the extents one by one, each checked against the map as
 * the earlier ones left it, so that two overlapping extents in one call are
 * refused too; on a refusal the ones already done are undone.
 */
static int apply(struct kvc_extents *x, const struct kvc_extent *e, uint32_t nr,
		 bool take)
{
	const char *what = take ? "extents mark" : "extents free";
	uint32_t i;
	int err = 0;

	if (!x || (nr && !e))
		return kvc_err(-EINVAL, "%s: NULL argument", what);
	for (i = 0; i < nr; i++) {
		uint64_t start = e[i].start, len = e[i].len;

		if (!len) {
			err = kvc_err(-EINVAL, "%s: extent %u is empty", what,
				      i);
			break;
		}
		if (start >= x->cap || len > x->cap - start) {
			err = kvc_err(
				-EINVAL,
				"%s: extent %u (%llu, %llu slots) is outside the cap of %llu",
				what, i, (unsigned long long)start,
				(unsigned long long)len,
				(unsigned long long)x->cap);
			break;
		}
		if (!range_is(x, start, len, !take)) {
			err = kvc_err(-EINVAL,
				      "%s: extent %u (%llu, %llu slots) %s",
				      what, i, (unsigned long long)start,
				      (unsigned long long)len,
				      take ? "overlaps a taken slot" :
					     "is not wholly taken");
			break;
		}
		range_set(x, start, len, take);
	}
	if (!err)
		return 0;
	while (i--)
		range_set(x, e[i].start, e[i].len, !take);
	return err;
}

int kvc_extents_free(struct kvc_extents *x, const struct kvc_extent *e,
		     uint32_t nr)
{
	return apply(x, e, nr, false);
}

int kvc_extents_mark(struct kvc_extents *x, const struct kvc_extent *e,
		     uint32_t nr)
{
	uint64_t high = x ? x->high : 0;
	int err = apply(x, e, nr, true);

	/* An undone mark must not leave the high water raised. */
	if (err && x)
		x->high = high;
	return err;
}

int kvc_extents_check(const struct kvc_extents *x)
{
	uint64_t words, used = 0;

	if (!x)
		return kvc_err(-EFAULT, "extents check: no map");
	if (!x->cap)
		return x->used || x->high || x->bits ?
			       kvc_err(-EFAULT,
				       "extents check: an empty map has state") :
			       0;
	if (!x->bits)
		return kvc_err(-EFAULT, "extents check: no bitmap");
	if (x->high > x->cap || x->used > x->high)
		return kvc_err(-EFAULT,
			       "extents check: used %llu, high %llu, cap %llu",
			       (unsigned long long)x->used,
			       (unsigned long long)x->high,
			       (unsigned long long)x->cap);
	words = nr_words(x->cap);
	for (uint64_t w = 0; w < words; w++)
		used += (uint64_t)__builtin_popcountll(x->bits[w]);
	if (used != x->used)
		return kvc_err(
			-EFAULT,
			"extents check: %llu slots counted used, %llu set",
			(unsigned long long)x->used, (unsigned long long)used);
	if (find_taken(x, x->high, words * 64) < words * 64)
		return kvc_err(
			-EFAULT,
			"extents check: slot %llu is set, at or past the high water %llu (cap %llu)",
			(unsigned long long)find_taken(x, x->high, words * 64),
			(unsigned long long)x->high,
			(unsigned long long)x->cap);
	return 0;
}
