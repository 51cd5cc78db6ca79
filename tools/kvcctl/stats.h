/* SPDX-License-Identifier: MIT */
/* How `kvcctl stats` shows the stats pages it read (stats_show.c). */
#ifndef KVCCTL_STATS_H
#define KVCCTL_STATS_H

#include <stdint.h>
#include <stdio.h>

#include <kvc/stats.h>

/**
 * stats_json_ladder() - One ladder as a JSON object, every field of it.
 * @out: the stream.
 * @l: the ladder.
 */
void stats_json_ladder(FILE *out, const struct kvc_ladder *l);

/**
 * stats_json_peaks() - Peaks and means as a JSON object, every field.
 * @out: the stream.
 * @p: the peaks.
 */
void stats_json_peaks(FILE *out, const struct kvc_ladder_peaks *p);

/**
 * stats_show_table() - Print pools as tables, then their chunk fill.
 * @out: the stream.
 * @snaps: the pages, in the order to show them.
 * @n: how many; at least 1.
 *
 * One line per pool, columns grouped under headings as vmstat does; then,
 * laid out the same way, one line per pool of fragmentation indices and
 * compaction counters; then one histogram line per pool with fixed-width
 * columns as /proc/buddyinfo.
 *
 * Return: 0, or -ENOMEM.
 */
int stats_show_table(FILE *out, const struct kvc_stats_snapshot *snaps,
		     uint32_t n);

/**
 * stats_show_json() - Print pools as a JSON array, one object per pool.
 * @out: the stream.
 * @snaps: the pages.
 * @n: how many; 0 prints "[]".
 * @history: samples of the ring to add as "history", the latest ones;
 *           0 for none (the member is then left out).
 *
 * Every member of struct kvc_pool_stats appears under its own name:
 * counters as integers, doubles with three decimals, or null when a page
 * holds an infinity or a NaN, so the output is always valid JSON. Then
 * "samples", and the objects "ladder" (every member of struct kvc_ladder
 * but the padding, the per-order ones as arrays of nr_orders entries)
 * and "peaks" (every member of struct kvc_ladder_peaks); zeros before
 * the first sample.
 */
void stats_show_json(FILE *out, const struct kvc_stats_snapshot *snaps,
		     uint32_t n, uint32_t history);

/**
 * stats_show_history() - Print the latest samples of each pool's ring.
 * @out: the stream.
 * @snaps: the pages.
 * @n: how many.
 * @last: at most this many samples per pool, oldest first.
 *
 * Return: 0, or -ENOMEM.
 */
int stats_show_history(FILE *out, const struct kvc_stats_snapshot *snaps,
		       uint32_t n, uint32_t last);

/**
 * stats_ring_get() - The @i-th oldest sample of a page's ring.
 * @page: the page, as kvc_stats_read() checked it.
 * @i: 0 .. ring_count - 1.
 *
 * Return: the sample.
 */
const struct kvc_stats_sample *stats_ring_get(const struct kvc_stats_page *page,
					      uint32_t i);

/* Pools whose trend --watch follows; beyond them, no trend is shown. */
#define STATS_TREND_POOLS 64

/**
 * struct stats_trend_pool - One pool's levels at a refresh.
 * @path: its page.
 * @held: bytes held.
 * @mapped: bytes mapped.
 * @live: live bytes of the latest sample (held when none).
 */
struct stats_trend_pool {
	char path[256];
	uint64_t held;
	uint64_t mapped;
	uint64_t live;
};

/**
 * struct stats_trend - The levels at the previous --watch refresh.
 * @pool: per pool, in the order shown.
 * @n: entries in @pool.
 * @t_ns: CLOCK_MONOTONIC time of that refresh.
 */
struct stats_trend {
	struct stats_trend_pool pool[STATS_TREND_POOLS];
	uint32_t n;
	uint64_t t_ns;
};

/**
 * stats_trend_take() - Remember the levels of this refresh.
 * @snaps: the pages.
 * @n: how many.
 * @trend: filled.
 * @now_ns: CLOCK_MONOTONIC time of the refresh.
 */
void stats_trend_take(const struct kvc_stats_snapshot *snaps, uint32_t n,
		      struct stats_trend *trend, uint64_t now_ns);

/**
 * stats_show_trend() - Print each pool's trend since the last refresh.
 * @out: the stream.
 * @snaps: the pages.
 * @n: how many.
 * @prev: the levels of the last refresh, or NULL on the first.
 * @now_ns: CLOCK_MONOTONIC time of this refresh.
 *
 * One line per pool: held, mapped and live bytes gained or lost per
 * second, and an ASCII sparkline of mapped bytes over the sample ring.
 */
void stats_show_trend(FILE *out, const struct kvc_stats_snapshot *snaps,
		      uint32_t n, const struct stats_trend *prev,
		      uint64_t now_ns);

#endif /* KVCCTL_STATS_H */
