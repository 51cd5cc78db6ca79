// SPDX-License-Identifier: MIT
/*
 * The byte ladder: where every byte of a pool is at one sample (logical,
 * live, held, mapped, parked and the waste between them), the per-order
 * indices of mm/vmstat.c over the free runs of the live bitmaps, and the
 * peaks and time-weighted means of a series of samples. Reads the pool;
 * never changes a chunk, a block or a counter of it.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/error.h>
#include <kvc/pool.h>
#include <kvc/record.h>

#include "error.h"
#include "internal.h"
#include "ladder.h"
#include "stats.h"

/* The levels the means are taken of, in the order of the mean_* fields. */
enum {
	MEAN_LOGICAL,
	MEAN_LIVE,
	MEAN_HELD,
	MEAN_MAPPED,
	MEAN_PARKED,
	MEAN_RESERVATION,
	MEAN_TAIL,
	MEAN_FREE_MAPPED,
	MEAN_SEQS,
	MEAN_UTIL,
	NR_MEANS
};

_Static_assert(NR_MEANS == sizeof(((struct kvc_ladder_acc *)0)->sum) /
				   sizeof(double),
	       "one weighted sum per mean");

/* Highest set bit below @nbits, or -1. */
static int64_t find_last(const uint64_t *map, uint32_t nbits)
{
	uint32_t w = (nbits + 63) / 64;
	uint64_t word;

	while (w--) {
		word = map[w];
		if (w == nbits / 64 && nbits % 64)
			word &= (1ull << (nbits % 64)) - 1;
		if (word)
			return (int64_t)w * 64 + 63 - __builtin_clzll(word);
	}
	return -1;
}

static uint32_t log2_floor(uint64_t v)
{
	return 63 - (uint32_t)__builtin_clzll(v);
}

static void count_run(struct kvc_ladder_runs *rc, uint64_t len,
		      uint32_t nr_orders)
{
	uint32_t o;

	rc->free += len;
	rc->runs++;
	rc->by_order[log2_floor(len)]++;
	for (o = 0; o < nr_orders && (len >> o); o++)
		rc->suitable[o] += len >> o;
}

/*
 * Free runs never cross a chunk: blocks in neighbouring chunks are not
 * contiguous in physical memory, and a chunk is what can go back.
 */
static void count_chunk(const struct kvc_pool *pool, const struct kvc_chunk *c,
			struct kvc_ladder_runs *rc, uint32_t nr_orders)
{
	uint32_t bpc = pool->bpc, start, end;

	if (c->nr_live == bpc)
		return;
	if (!c->nr_live) {
		count_run(rc, bpc, nr_orders);
		return;
	}
	for (start = (uint32_t)kvc_find_next_bit(c->live, bpc, 0, false);
	     start < bpc;
	     start = (uint32_t)kvc_find_next_bit(c->live, bpc, end, false)) {
		end = (uint32_t)kvc_find_next_bit(c->live, bpc, start, true);
		count_run(rc, end - start, nr_orders);
	}
}

/* Every mapped chunk's free runs, walked from the bitmaps. */
static void count_all(const struct kvc_pool *pool, struct kvc_ladder_runs *rc,
		      uint32_t nr_orders)
{
	uint32_t i;

	memset(rc, 0, sizeof(*rc));
	for (i = 0; i < pool->nr_chunks; i++)
		if (chunk_mapped(&pool->chunks[i]))
			count_chunk(pool, &pool->chunks[i], rc, nr_orders);
}

/*
 * The pool's ladder state, made at first use with every chunk dirty and
 * nothing counted yet. Lock held. Return: 0 or -ENOMEM, quietly: the
 * ladder itself can do without the cache.
 */
static int state_get(struct kvc_pool *pool)
{
	uint32_t nr_orders = log2_floor(pool->bpc) + 1;
	size_t words = ((size_t)pool->nr_chunks + 63) / 64;
	struct kvc_ladder_state *st = pool->ladder;

	if (st)
		return 0;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->nr_orders = nr_orders;
	st->stride = 2 + 2 * nr_orders;
	st->dirty = malloc(words * sizeof(*st->dirty));
	st->contrib = calloc(pool->nr_chunks, st->stride * sizeof(uint32_t));
	if (!st->dirty || !st->contrib) {
		kvc_ladder_state_free(st);
		return -ENOMEM;
	}
	memset(st->dirty, 0xff, words * sizeof(*st->dirty));
	if (pool->nr_chunks % 64)
		st->dirty[words - 1] = (1ull << (pool->nr_chunks % 64)) - 1;
	kvc_ladder_acc_init(&st->acc);
	pool->ladder = st;
	return 0;
}

/*
 * Bring @st->total up to date: each dirty chunk's last count goes out,
 * its count now comes in. Sums of exact integers, so the result is the
 * full walk's, bit for bit. Lock held.
 */
static void recount(const struct kvc_pool *pool, struct kvc_ladder_state *st)
{
	struct kvc_ladder_runs *t = &st->total, rc;
	uint32_t words = (pool->nr_chunks + 63) / 64, n = st->nr_orders;
	uint32_t w, ci, o, *e;
	uint64_t bits;

	for (w = 0; w < words; w++) {
		if (!st->dirty[w])
			continue;
		for (bits = st->dirty[w]; bits; bits &= bits - 1) {
			ci = w * 64 + (uint32_t)__builtin_ctzll(bits);
			e = &st->contrib[(size_t)ci * st->stride];
			t->free -= e[0];
			t->runs -= e[1];
			for (o = 0; o < n; o++) {
				t->suitable[o] -= e[2 + o];
				t->by_order[o] -= e[2 + n + o];
			}
			rc.free = rc.runs = 0;
			memset(rc.suitable, 0, n * sizeof(rc.suitable[0]));
			memset(rc.by_order, 0, n * sizeof(rc.by_order[0]));
			if (chunk_mapped(&pool->chunks[ci]))
				count_chunk(pool, &pool->chunks[ci], &rc, n);
			/* A chunk's counts are at most its blocks: 32 bits. */
			e[0] = (uint32_t)rc.free;
			e[1] = (uint32_t)rc.runs;
			t->free += rc.free;
			t->runs += rc.runs;
			for (o = 0; o < n; o++) {
				e[2 + o] = (uint32_t)rc.suitable[o];
				e[2 + n + o] = (uint32_t)rc.by_order[o];
				t->suitable[o] += rc.suitable[o];
				t->by_order[o] += rc.by_order[o];
			}
		}
		st->dirty[w] = 0;
	}
}

static void fill_orders(struct kvc_ladder *l, const struct kvc_ladder_runs *rc)
{
	uint32_t o;

	for (o = 0; o < l->nr_orders; o++) {
		double size = (double)(1ull << o), free = (double)rc->free;
		double index;

		l->free_runs[o] = rc->by_order[o];
		/* As mm/vmstat.c: 1 when nothing is free, -1 when it fits. */
		l->unusable[o] =
			rc->free ?
				(free - (double)rc->suitable[o] * size) / free :
				1;
		if (!rc->free) {
			l->extfrag[o] = 0;
		} else if (rc->suitable[o]) {
			l->extfrag[o] = -1;
		} else {
			index = 1 - (1 + free / size) / (double)rc->runs;
			l->extfrag[o] = index < 0 ? 0 : index;
		}
	}
}

/* The ladder of @pool, locked. */
static int ladder_locked(struct kvc_pool *pool,
			 const struct kvc_pool_usage *usage, uint64_t step,
			 struct kvc_ladder *out)
{
	const struct kvc_ladder_runs *runs;
	struct kvc_ladder_runs rc;
	struct kvc_ladder l;
	uint64_t held, need;
	int64_t top = -1, last;
	uint32_t i;

	held = pool->nr_live * pool->block_bytes;
	if (usage && (__builtin_add_overflow(usage->live_bytes,
					     usage->reservation_bytes, &need) ||
		      need > held))
		return kvc_err(
			-EINVAL,
			"usage claims %llu live + %llu reserved bytes, the pool holds %llu",
			(unsigned long long)usage->live_bytes,
			(unsigned long long)usage->reservation_bytes,
			(unsigned long long)held);
	memset(&l, 0, sizeof(l));
	l.t_ns = kvc_now_ns();
	l.step = step;
	l.held = held;
	l.held_blocks = pool->nr_live;
	l.mapped_chunks = pool->nr_mapped;
	l.mapped = (uint64_t)pool->nr_mapped * pool->chunk_bytes;
	l.parked = pool->fill.hist[0] * pool->chunk_bytes;
	l.free_mapped = ((uint64_t)pool->nr_mapped * pool->bpc - pool->nr_live -
			 pool->fill.hist[0] * pool->bpc) *
			pool->block_bytes;
	if (usage) {
		l.logical = usage->logical_bytes;
		l.live = usage->live_bytes;
		l.reservation = usage->reservation_bytes;
		l.seqs = usage->seqs;
		l.preemptions = usage->preemptions;
	} else {
		l.logical = l.live = held;
	}
	l.tail = held - l.live - l.reservation;
	l.floor_chunks = (l.held_blocks + pool->bpc - 1) / pool->bpc;
	if (!l.floor_chunks)
		l.pack_ratio = l.mapped_chunks ? (double)l.mapped_chunks : 1;
	else
		l.pack_ratio = (double)l.mapped_chunks / (double)l.floor_chunks;
	l.nr_orders = log2_floor(pool->bpc) + 1;
	if (!state_get(pool)) {
		recount(pool, pool->ladder);
		runs = &pool->ladder->total;
#ifdef KVC_DEBUG
		count_all(pool, &rc, l.nr_orders);
		if (memcmp(&rc, runs, sizeof(rc))) {
			kvc_notice(
				"ladder: the cached free runs differ from the bitmaps: a chunk changed without kvc_ladder_touch()");
			abort();
		}
#endif
	} else {
		/* No memory for the cache: walk every chunk, as it is. */
		count_all(pool, &rc, l.nr_orders);
		runs = &rc;
	}
	/* The pool grows from the base: the top live chunk is found soon. */
	for (i = pool->nr_chunks; i--;) {
		const struct kvc_chunk *c = &pool->chunks[i];

		if (chunk_mapped(c) && c->nr_live) {
			last = find_last(c->live, pool->bpc);
			top = (int64_t)i * pool->bpc + last;
			break;
		}
	}
	l.hole_ratio =
		top < 0 ? 0 : 1 - (double)l.held_blocks / (double)(top + 1);
	fill_orders(&l, runs);
	*out = l;
	return 0;
}

int kvc_pool_ladder(struct kvc_pool *pool, const struct kvc_pool_usage *usage,
		    uint64_t step, struct kvc_ladder *out)
{
	int err;

	if (!pool || !out)
		return kvc_err(-EINVAL, "kvc_pool_ladder: NULL %s",
			       pool ? "out" : "pool");
	pthread_mutex_lock(&pool->lock);
	err = ladder_locked(pool, usage, step, out);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

int kvc_ladder_check(const struct kvc_ladder *l)
{
	uint64_t sum = 0;
	bool over = false;

	if (!l)
		return kvc_err(-EINVAL, "kvc_ladder_check: NULL ladder");
	over |= __builtin_add_overflow(sum, l->live, &sum);
	over |= __builtin_add_overflow(sum, l->reservation, &sum);
	over |= __builtin_add_overflow(sum, l->tail, &sum);
	over |= __builtin_add_overflow(sum, l->free_mapped, &sum);
	over |= __builtin_add_overflow(sum, l->parked, &sum);
	if (over || sum != l->mapped)
		return kvc_err(
			-EFAULT,
			"ladder: mapped %llu != live %llu + reservation %llu + tail %llu + free_mapped %llu + parked %llu",
			(unsigned long long)l->mapped,
			(unsigned long long)l->live,
			(unsigned long long)l->reservation,
			(unsigned long long)l->tail,
			(unsigned long long)l->free_mapped,
			(unsigned long long)l->parked);
	if (l->live > l->held)
		return kvc_err(-EFAULT, "ladder: live %llu > held %llu",
			       (unsigned long long)l->live,
			       (unsigned long long)l->held);
	if (l->held > l->mapped)
		return kvc_err(-EFAULT, "ladder: held %llu > mapped %llu",
			       (unsigned long long)l->held,
			       (unsigned long long)l->mapped);
	if (l->parked > l->mapped)
		return kvc_err(-EFAULT, "ladder: parked %llu > mapped %llu",
			       (unsigned long long)l->parked,
			       (unsigned long long)l->mapped);
	if (l->nr_orders > KVC_LADDER_ORDERS)
		return kvc_err(-EFAULT, "ladder: %u orders, at most %u",
			       l->nr_orders, KVC_LADDER_ORDERS);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Peaks and means */

static void levels(const struct kvc_ladder *l, double v[NR_MEANS])
{
	v[MEAN_LOGICAL] = (double)l->logical;
	v[MEAN_LIVE] = (double)l->live;
	v[MEAN_HELD] = (double)l->held;
	v[MEAN_MAPPED] = (double)l->mapped;
	v[MEAN_PARKED] = (double)l->parked;
	v[MEAN_RESERVATION] = (double)l->reservation;
	v[MEAN_TAIL] = (double)l->tail;
	v[MEAN_FREE_MAPPED] = (double)l->free_mapped;
	v[MEAN_SEQS] = (double)l->seqs;
	/* Nothing mapped wastes nothing. */
	v[MEAN_UTIL] = l->mapped ? (double)l->live / (double)l->mapped : 1;
}

static void add_weighted(double sum[NR_MEANS], const struct kvc_ladder *l,
			 double w)
{
	double v[NR_MEANS];
	int i;

	levels(l, v);
	for (i = 0; i < NR_MEANS; i++)
		sum[i] += w * v[i];
}

static double ratio(uint64_t num, uint64_t den)
{
	return den ? (double)num / (double)den : 0;
}

void kvc_ladder_acc_init(struct kvc_ladder_acc *acc)
{
	if (acc)
		memset(acc, 0, sizeof(*acc));
}

/*
 * While no interval has weight yet, @sum holds the plain sums of the
 * samples, for kvc_ladder_acc_end()'s fallback; the first interval with
 * weight replaces them, since every sample before it weighs nothing.
 */
int kvc_ladder_acc_add(struct kvc_ladder_acc *acc, const struct kvc_ladder *l,
		       double at)
{
	struct kvc_ladder_peaks *p;
	double w;

	if (!acc || !l)
		return kvc_err(-EINVAL, "kvc_ladder_acc_add: NULL argument");
	if (!isfinite(at))
		return kvc_err(-EINVAL, "ladder sample at %g: not a position",
			       at);
	p = &acc->peaks;
	if (acc->have_prev && !(at >= acc->prev_at))
		return kvc_err(-EINVAL,
			       "ladder sample at %g before the previous at %g",
			       at, acc->prev_at);
	if (acc->have_prev) {
		w = at - acc->prev_at;
		if (w > 0 && p->weight == 0)
			memset(acc->sum, 0, sizeof(acc->sum));
		if (w > 0 || p->weight > 0)
			add_weighted(acc->sum, &acc->prev, w);
		p->weight += w;
	}
	if (p->weight == 0)
		add_weighted(acc->sum, l, 1);
	p->samples++;
	if (p->samples == 1 || l->live > p->live_peak) {
		p->live_peak = l->live;
		p->live_peak_step = l->step;
		p->live_peak_ns = l->t_ns;
		p->mapped_at_live_peak = l->mapped;
	}
	if (p->samples == 1 || l->mapped > p->mapped_peak) {
		p->mapped_peak = l->mapped;
		p->mapped_peak_step = l->step;
		p->mapped_peak_ns = l->t_ns;
		p->live_at_mapped_peak = l->live;
	}
	p->gmlake_util = ratio(p->live_peak, p->mapped_peak);
	p->jw2 = ratio(p->mapped_at_live_peak, p->live_peak);
	p->jw3 = ratio(p->mapped_peak, p->live_at_mapped_peak);
	p->jw4 = ratio(p->mapped_peak, p->live_peak);
	acc->prev = *l;
	acc->prev_at = at;
	acc->have_prev = true;
	return 0;
}

void kvc_ladder_acc_end(struct kvc_ladder_acc *acc, double at,
			struct kvc_ladder_peaks *out)
{
	double sum[NR_MEANS], weight, mean[NR_MEANS];
	int i;

	if (!acc || !out)
		return;
	*out = acc->peaks;
	if (!acc->have_prev)
		return;
	memcpy(sum, acc->sum, sizeof(sum));
	weight = acc->peaks.weight;
	if (at > acc->prev_at) {
		if (weight == 0)
			memset(sum, 0, sizeof(sum));
		add_weighted(sum, &acc->prev, at - acc->prev_at);
		weight += at - acc->prev_at;
	}
	/* No interval with weight: every sample counts once. */
	for (i = 0; i < NR_MEANS; i++)
		mean[i] = sum[i] /
			  (weight > 0 ? weight : (double)acc->peaks.samples);
	out->weight = weight;
	out->mean_logical = mean[MEAN_LOGICAL];
	out->mean_live = mean[MEAN_LIVE];
	out->mean_held = mean[MEAN_HELD];
	out->mean_mapped = mean[MEAN_MAPPED];
	out->mean_parked = mean[MEAN_PARKED];
	out->mean_reservation = mean[MEAN_RESERVATION];
	out->mean_tail = mean[MEAN_TAIL];
	out->mean_free_mapped = mean[MEAN_FREE_MAPPED];
	out->mean_seqs = mean[MEAN_SEQS];
	out->mean_util = mean[MEAN_UTIL];
}

/* ------------------------------------------------------------------ */
/* The pool's samples */

void kvc_ladder_state_free(struct kvc_ladder_state *state)
{
	if (!state)
		return;
	free(state->dirty);
	free(state->contrib);
	free(state);
}

static void compact_sample(const struct kvc_pool *pool,
			   const struct kvc_ladder *l,
			   struct kvc_stats_sample *s)
{
	memset(s, 0, sizeof(*s));
	s->t_ns = l->t_ns;
	s->step = l->step;
	s->logical = l->logical;
	s->live = l->live;
	s->held = l->held;
	s->mapped = l->mapped;
	s->parked = l->parked;
	s->reservation = l->reservation;
	s->free_mapped = l->free_mapped;
	s->seqs = l->seqs;
	s->preemptions = l->preemptions;
	s->blocks_moved = pool->blocks_moved;
	s->backend_map = pool->va.calls.map;
	s->backend_unmap = pool->va.calls.unmap;
	s->alloc_failures = pool->alloc_failures;
	s->unusable_chunk = l->unusable[l->nr_orders - 1];
	s->pack_ratio = l->pack_ratio;
	s->hole_ratio = l->hole_ratio;
}

/* Peaks and means so far, the last sample weighing one step. */
static void peaks_now(struct kvc_ladder_state *st, struct kvc_ladder_peaks *out)
{
	kvc_ladder_acc_end(&st->acc, st->acc.prev_at + 1, out);
}

int kvc_pool_sample(struct kvc_pool *pool, const struct kvc_pool_usage *usage,
		    uint64_t step)
{
	struct kvc_ladder_state *st;
	struct kvc_ladder_peaks peaks;
	struct kvc_stats_sample s;
	struct kvc_ladder l;
	uint64_t p[KVC_REC_PAYLOAD] = { 0 };
	int err;

	if (!pool)
		return kvc_err(-EINVAL, "kvc_pool_sample: NULL pool");
	pthread_mutex_lock(&pool->lock);
	err = ladder_locked(pool, usage, step, &l);
	if (err)
		goto out_unlock;
	/* Made by the ladder, unless memory ran out there. */
	if (state_get(pool)) {
		err = kvc_err(-ENOMEM, "out of memory for the ladder samples");
		goto out_unlock;
	}
	st = pool->ladder;
	/* First, so that a step going backwards keeps nothing. */
	err = kvc_ladder_acc_add(&st->acc, &l, (double)step);
	if (err)
		goto out_unlock;
	compact_sample(pool, &l, &s);
	peaks_now(st, &peaks);
	kvc_stats_pub_sample(pool->pub, &l, &s, &peaks);
	kvc_pool_publish(pool);
	if (pool->rec) {
		p[0] = l.logical;
		p[1] = l.live;
		p[2] = l.held;
		p[3] = l.mapped;
		p[4] = l.parked;
		p[5] = l.reservation;
		/* The sample is kept even when the trace cannot take it. */
		kvc_recorder_emit(pool->rec, KVC_REC_SAMPLE, p);
	}
out_unlock:
	pthread_mutex_unlock(&pool->lock);
	return err;
}

void kvc_pool_peaks(struct kvc_pool *pool, struct kvc_ladder_peaks *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof(*out));
	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	if (pool->ladder)
		peaks_now(pool->ladder, out);
	pthread_mutex_unlock(&pool->lock);
}
