/* SPDX-License-Identifier: MIT */
/* How `kvcctl stats` shows the stats pages it read (stats_show.c). */
#ifndef KVCCTL_STATS_H
#define KVCCTL_STATS_H

#include <stdint.h>
#include <stdio.h>

#include <kvc/stats.h>

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
 *
 * Every member of struct kvc_pool_stats appears under its own name:
 * counters as integers, doubles with three decimals, or null when a page
 * holds an infinity or a NaN, so the output is always valid JSON.
 */
void stats_show_json(FILE *out, const struct kvc_stats_snapshot *snaps,
		     uint32_t n);

#endif /* KVCCTL_STATS_H */
