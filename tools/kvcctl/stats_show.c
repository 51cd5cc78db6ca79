// SPDX-License-Identifier: MIT
/*
 * Showing stats pages: the pool table (one line per pool, vmstat-style
 * grouped columns), the fragmentation and compaction table under it (the
 * same layout, indices printed as the kernel's extfrag files print them),
 * the byte ladder and its peaks, the chunk-fill histogram (buddyinfo-style
 * fixed-width columns), the sample history, the --watch trend line and the
 * JSON array. Every string in a page comes from another process: it is
 * sanitized for the terminal or escaped for JSON, never printed as it is;
 * every number is printed whatever its value, and a double that JSON
 * cannot hold (infinity, NaN) becomes null, never invalid JSON.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/kvc.h>

#include "kvcctl.h"
#include "stats.h"

#define COLUMN_GAP 2
#define CELL_LEN 48
#define MAX_COLUMNS 24

/**
 * struct column - One column of a table.
 * @group: heading over a run of neighbouring columns, or NULL.
 * @head: the column's own heading.
 * @left: left-aligned (words) rather than right-aligned (numbers).
 */
struct column {
	const char *group;
	const char *head;
	bool left;
};

/* The pool table. */
enum {
	COL_PID,
	COL_NAME,
	COL_BACKEND,
	COL_STATE,
	COL_BLOCK_BYTES,
	COL_CHUNK_BYTES,
	COL_BLOCKS_LIVE,
	COL_BLOCKS_FREE,
	COL_BLOCKS_TOTAL,
	COL_CHUNKS_MAPPED,
	COL_CHUNKS_EMPTY,
	COL_CHUNKS_PARTIAL,
	COL_CHUNKS_FULL,
	COL_BYTES_MAPPED,
	COL_BYTES_LIVE,
	COL_RATIO,
	COL_HWM_BLOCKS,
	COL_HWM_MAPPED,
	COL_CALLS_MAP,
	COL_CALLS_UNMAP,
	COL_CALLS_ACCESS,
	COL_CALLS_COPY,
	NR_COLUMNS
};

static const struct column columns[NR_COLUMNS] = {
	[COL_PID] = { NULL, "pid", false },
	[COL_NAME] = { NULL, "name", true },
	[COL_BACKEND] = { NULL, "backend", true },
	[COL_STATE] = { NULL, "state", true },
	[COL_BLOCK_BYTES] = { "size", "block", false },
	[COL_CHUNK_BYTES] = { "size", "chunk", false },
	[COL_BLOCKS_LIVE] = { "blocks", "live", false },
	[COL_BLOCKS_FREE] = { "blocks", "free", false },
	[COL_BLOCKS_TOTAL] = { "blocks", "total", false },
	[COL_CHUNKS_MAPPED] = { "chunks", "mapped", false },
	[COL_CHUNKS_EMPTY] = { "chunks", "empty", false },
	[COL_CHUNKS_PARTIAL] = { "chunks", "partial", false },
	[COL_CHUNKS_FULL] = { "chunks", "full", false },
	[COL_BYTES_MAPPED] = { "bytes", "mapped", false },
	[COL_BYTES_LIVE] = { "bytes", "live", false },
	[COL_RATIO] = { "bytes", "map/live", false },
	[COL_HWM_BLOCKS] = { "high water", "blocks", false },
	[COL_HWM_MAPPED] = { "high water", "mapped", false },
	[COL_CALLS_MAP] = { "backend calls", "map", false },
	[COL_CALLS_UNMAP] = { "backend calls", "unmap", false },
	[COL_CALLS_ACCESS] = { "backend calls", "access", false },
	[COL_CALLS_COPY] = { "backend calls", "copy", false },
};

/* The fragmentation and compaction table. */
enum {
	FRAG_PID,
	FRAG_NAME,
	FRAG_RATIO,
	FRAG_UNUSABLE,
	FRAG_INDEX,
	FRAG_FREE_PARTIAL,
	FRAG_FREE_CHUNKS,
	FRAG_RECLAIM_CHUNKS,
	FRAG_RECLAIM_SCORE,
	FRAG_COMPACT_RUNS,
	FRAG_COMPACT_MOVED,
	FRAG_COMPACT_COPIED,
	FRAG_COMPACT_VACATED,
	FRAG_COMPACT_FAILED,
	FRAG_UNMAP_RELEASED,
	FRAG_UNMAP_FENCES,
	FRAG_UNMAP_DEFERRED,
	NR_FRAG_COLUMNS
};

static const struct column frag_columns[NR_FRAG_COLUMNS] = {
	[FRAG_PID] = { NULL, "pid", false },
	[FRAG_NAME] = { NULL, "name", true },
	[FRAG_RATIO] = { "fragmentation", "ratio", false },
	[FRAG_UNUSABLE] = { "fragmentation", "unusable", false },
	[FRAG_INDEX] = { "fragmentation", "index", false },
	[FRAG_FREE_PARTIAL] = { "free", "in-partial", false },
	[FRAG_FREE_CHUNKS] = { "free", "chunks", false },
	[FRAG_RECLAIM_CHUNKS] = { "reclaim", "chunks", false },
	[FRAG_RECLAIM_SCORE] = { "reclaim", "score", false },
	[FRAG_COMPACT_RUNS] = { "compaction", "runs", false },
	[FRAG_COMPACT_MOVED] = { "compaction", "moved", false },
	[FRAG_COMPACT_COPIED] = { "compaction", "copied", false },
	[FRAG_COMPACT_VACATED] = { "compaction", "vacated", false },
	[FRAG_COMPACT_FAILED] = { "compaction", "failed", false },
	[FRAG_UNMAP_RELEASED] = { "unmap", "released", false },
	[FRAG_UNMAP_FENCES] = { "unmap", "fences", false },
	[FRAG_UNMAP_DEFERRED] = { "unmap", "deferred", false },
};

/* The byte ladder of the latest sample, and the waste's shares of mapped. */
enum {
	LAD_PID,
	LAD_NAME,
	LAD_SAMPLES,
	LAD_STEP,
	LAD_LOGICAL,
	LAD_LIVE,
	LAD_HELD,
	LAD_MAPPED,
	LAD_PARKED,
	LAD_SHARE_LIVE,
	LAD_SHARE_RESV,
	LAD_SHARE_TAIL,
	LAD_SHARE_FREE,
	LAD_SHARE_PARKED,
	LAD_PACK,
	LAD_HOLE,
	LAD_UNUSABLE,
	NR_LADDER_COLUMNS
};

static const struct column ladder_columns[NR_LADDER_COLUMNS] = {
	[LAD_PID] = { NULL, "pid", false },
	[LAD_NAME] = { NULL, "name", true },
	[LAD_SAMPLES] = { "sample", "taken", false },
	[LAD_STEP] = { "sample", "step", false },
	[LAD_LOGICAL] = { "bytes", "logical", false },
	[LAD_LIVE] = { "bytes", "live", false },
	[LAD_HELD] = { "bytes", "held", false },
	[LAD_MAPPED] = { "bytes", "mapped", false },
	[LAD_PARKED] = { "bytes", "parked", false },
	[LAD_SHARE_LIVE] = { "share of mapped", "live", false },
	[LAD_SHARE_RESV] = { "share of mapped", "resv", false },
	[LAD_SHARE_TAIL] = { "share of mapped", "tail", false },
	[LAD_SHARE_FREE] = { "share of mapped", "free", false },
	[LAD_SHARE_PARKED] = { "share of mapped", "parked", false },
	[LAD_PACK] = { "packing", "pack", false },
	[LAD_HOLE] = { "packing", "hole", false },
	[LAD_UNUSABLE] = { "packing", "unusable", false },
};

/* Peaks over the samples, and what mapping and unmapping cost. */
enum {
	PEAK_PID,
	PEAK_NAME,
	PEAK_LIVE,
	PEAK_LIVE_STEP,
	PEAK_MAPPED,
	PEAK_MAPPED_STEP,
	PEAK_GMLAKE,
	PEAK_JW3,
	PEAK_JW4,
	PEAK_MEAN_UTIL,
	PEAK_MAP_CALLS,
	PEAK_MAP_MEAN,
	PEAK_MAP_MAX,
	PEAK_UNMAP_CALLS,
	PEAK_UNMAP_MEAN,
	PEAK_UNMAP_MAX,
	NR_PEAK_COLUMNS
};

static const struct column peak_columns[NR_PEAK_COLUMNS] = {
	[PEAK_PID] = { NULL, "pid", false },
	[PEAK_NAME] = { NULL, "name", true },
	[PEAK_LIVE] = { "live peak", "bytes", false },
	[PEAK_LIVE_STEP] = { "live peak", "step", false },
	[PEAK_MAPPED] = { "mapped peak", "bytes", false },
	[PEAK_MAPPED_STEP] = { "mapped peak", "step", false },
	[PEAK_GMLAKE] = { "ratios", "gmlake", false },
	[PEAK_JW3] = { "ratios", "jw3", false },
	[PEAK_JW4] = { "ratios", "jw4", false },
	[PEAK_MEAN_UTIL] = { "ratios", "mean-util", false },
	[PEAK_MAP_CALLS] = { "map", "calls", false },
	[PEAK_MAP_MEAN] = { "map", "mean", false },
	[PEAK_MAP_MAX] = { "map", "max", false },
	[PEAK_UNMAP_CALLS] = { "unmap", "calls", false },
	[PEAK_UNMAP_MEAN] = { "unmap", "mean", false },
	[PEAK_UNMAP_MAX] = { "unmap", "max", false },
};

/* The sample history of one pool, oldest first. */
enum {
	HIST_STEP,
	HIST_AGE,
	HIST_LOGICAL,
	HIST_LIVE,
	HIST_HELD,
	HIST_MAPPED,
	HIST_PARKED,
	HIST_RESV,
	HIST_FREE,
	HIST_UTIL,
	HIST_PACK,
	HIST_HOLE,
	HIST_UNUSABLE,
	HIST_SEQS,
	HIST_PREEMPT,
	HIST_MOVED,
	HIST_MAP,
	HIST_UNMAP,
	HIST_FAILS,
	NR_HIST_COLUMNS
};

static const struct column hist_columns[NR_HIST_COLUMNS] = {
	[HIST_STEP] = { NULL, "step", false },
	[HIST_AGE] = { NULL, "age", false },
	[HIST_LOGICAL] = { "bytes", "logical", false },
	[HIST_LIVE] = { "bytes", "live", false },
	[HIST_HELD] = { "bytes", "held", false },
	[HIST_MAPPED] = { "bytes", "mapped", false },
	[HIST_PARKED] = { "bytes", "parked", false },
	[HIST_RESV] = { "bytes", "resv", false },
	[HIST_FREE] = { "bytes", "free", false },
	[HIST_UTIL] = { "packing", "util", false },
	[HIST_PACK] = { "packing", "pack", false },
	[HIST_HOLE] = { "packing", "hole", false },
	[HIST_UNUSABLE] = { "packing", "unusable", false },
	[HIST_SEQS] = { "requests", "seqs", false },
	[HIST_PREEMPT] = { "requests", "preempt", false },
	[HIST_MOVED] = { "cost", "moved", false },
	[HIST_MAP] = { "cost", "map", false },
	[HIST_UNMAP] = { "cost", "unmap", false },
	[HIST_FAILS] = { "cost", "fails", false },
};

_Static_assert(NR_COLUMNS <= MAX_COLUMNS && NR_FRAG_COLUMNS <= MAX_COLUMNS &&
		       NR_LADDER_COLUMNS <= MAX_COLUMNS &&
		       NR_PEAK_COLUMNS <= MAX_COLUMNS &&
		       NR_HIST_COLUMNS <= MAX_COLUMNS,
	       "MAX_COLUMNS holds every table's widths");

/* Column headings of the histogram, in the order of fill_hist[]. */
static const char *const fill_heads[] = {
	"empty",  "1-10%",  "11-20%", "21-30%", "31-40%", "41-50%",
	"51-60%", "61-70%", "71-80%", "81-90%", "91-99%", "full",
};

_Static_assert(sizeof(fill_heads) / sizeof(fill_heads[0]) == KVC_FILL_BUCKETS,
	       "one histogram heading per fill bucket");

#define FILL_WIDTH 6

/**
 * struct table - Cells of one table, one row per pool, and column widths.
 * @cols: the columns.
 * @nr_cols: how many.
 * @nr_rows: how many rows.
 * @cells: @nr_rows * @nr_cols cells, row after row.
 * @width: each column's width: its widest cell or heading.
 */
struct table {
	const struct column *cols;
	int nr_cols;
	uint32_t nr_rows;
	char (*cells)[CELL_LEN];
	size_t width[MAX_COLUMNS];
};

static int table_init(struct table *t, const struct column *cols, int nr_cols,
		      uint32_t nr_rows)
{
	t->cols = cols;
	t->nr_cols = nr_cols;
	t->nr_rows = nr_rows;
	t->cells = calloc((size_t)(nr_rows ? nr_rows : 1) * (size_t)nr_cols,
			  sizeof(*t->cells));
	return t->cells ? 0 : -ENOMEM;
}

static char *cell(const struct table *t, uint32_t row, int col)
{
	return t->cells[(size_t)row * (size_t)t->nr_cols + (size_t)col];
}

static void put_spaces(FILE *out, size_t n)
{
	while (n--)
		fputc(' ', out);
}

static void put_cell(FILE *out, const char *text, size_t width, bool left,
		     bool last)
{
	size_t pad = width - kvcctl_text_width(text);

	if (!left)
		put_spaces(out, pad);
	fputs(text, out);
	if (left && !last)
		put_spaces(out, pad);
}

static void set_u64(struct table *t, uint32_t row, int col, uint64_t value)
{
	snprintf(cell(t, row, col), CELL_LEN, "%" PRIu64, value);
}

static void set_bytes(struct table *t, uint32_t row, int col, uint64_t bytes)
{
	char buf[KVCCTL_BYTES_LEN];

	snprintf(cell(t, row, col), CELL_LEN, "%s",
		 kvcctl_human_bytes(bytes, buf));
}

/*
 * A double from a page as "%.3f" (the kernel's extfrag files print their
 * indices so: "0.532", "-1.000"), with -0.000 shown as 0.000.
 *
 * Return: false, leaving @buf alone, for infinity and NaN.
 */
static bool real_text(double value, char *buf, size_t len)
{
	if (!isfinite(value))
		return false;
	if (fabs(value) < 0.0005)
		value = 0.0;
	snprintf(buf, len, "%.3f", value);
	return true;
}

/* The same for a table cell: "inf" and "-" where JSON says null. */
static void set_real(struct table *t, uint32_t row, int col, double value)
{
	char *text = cell(t, row, col);

	/* Whatever another process wrote, keep the cell a few digits wide. */
	if (isfinite(value) && fabs(value) >= 1e6)
		snprintf(text, CELL_LEN, "%.3e", value);
	else if (!real_text(value, text, CELL_LEN))
		snprintf(text, CELL_LEN, "%s",
			 isnan(value) ? "-" :
			 value > 0    ? "inf" :
					"-inf");
}

/* The pid and name cells every table starts with. */
static void set_pool(struct table *t, uint32_t row,
		     const struct kvc_stats_page *page)
{
	snprintf(cell(t, row, 0), CELL_LEN, "%" PRIu32, page->pid);
	kvcctl_sanitize(cell(t, row, 1), CELL_LEN,
			page->name[0] ? page->name : "-");
}

static void fill_row(struct table *t, uint32_t row,
		     const struct kvc_stats_snapshot *snap)
{
	const struct kvc_stats_page *page = &snap->page;
	const struct kvc_pool_stats *st = &page->stats;
	char backend[sizeof(page->backend)];

	set_pool(t, row, page);
	kvcctl_sanitize(backend, sizeof(backend), page->backend);
	if (page->device >= 0)
		snprintf(cell(t, row, COL_BACKEND), CELL_LEN, "%s:%d", backend,
			 (int)page->device);
	else
		snprintf(cell(t, row, COL_BACKEND), CELL_LEN, "%s", backend);
	/* "torn": its process died mid-update, counters may disagree. */
	snprintf(cell(t, row, COL_STATE), CELL_LEN, "%s",
		 snap->alive ? "live" :
		 snap->torn  ? "torn" :
			       "stale");
	set_bytes(t, row, COL_BLOCK_BYTES, st->block_bytes);
	set_bytes(t, row, COL_CHUNK_BYTES, st->chunk_bytes);
	set_u64(t, row, COL_BLOCKS_LIVE, st->blocks_live);
	set_u64(t, row, COL_BLOCKS_FREE, st->blocks_free);
	set_u64(t, row, COL_BLOCKS_TOTAL, st->blocks_total);
	set_u64(t, row, COL_CHUNKS_MAPPED, st->chunks_mapped);
	set_u64(t, row, COL_CHUNKS_EMPTY, st->chunks_empty);
	set_u64(t, row, COL_CHUNKS_PARTIAL, st->chunks_partial);
	set_u64(t, row, COL_CHUNKS_FULL, st->chunks_full);
	set_bytes(t, row, COL_BYTES_MAPPED, st->bytes_mapped);
	set_bytes(t, row, COL_BYTES_LIVE, st->bytes_live);
	if (st->bytes_live)
		snprintf(cell(t, row, COL_RATIO), CELL_LEN, "%.2f",
			 (double)st->bytes_mapped / (double)st->bytes_live);
	else
		snprintf(cell(t, row, COL_RATIO), CELL_LEN, "-");
	set_u64(t, row, COL_HWM_BLOCKS, st->blocks_live_hwm);
	set_bytes(t, row, COL_HWM_MAPPED, st->bytes_mapped_hwm);
	set_u64(t, row, COL_CALLS_MAP, st->backend_map);
	set_u64(t, row, COL_CALLS_UNMAP, st->backend_unmap);
	set_u64(t, row, COL_CALLS_ACCESS, st->backend_set_access);
	set_u64(t, row, COL_CALLS_COPY, st->backend_copy);
}

static void fill_frag_row(struct table *t, uint32_t row,
			  const struct kvc_stats_snapshot *snap)
{
	const struct kvc_pool_stats *st = &snap->page.stats;

	set_pool(t, row, &snap->page);
	set_real(t, row, FRAG_RATIO, st->frag_ratio);
	set_real(t, row, FRAG_UNUSABLE, st->unusable_index);
	set_real(t, row, FRAG_INDEX, st->fragmentation_index);
	set_u64(t, row, FRAG_FREE_PARTIAL, st->free_blocks_in_partial_chunks);
	set_u64(t, row, FRAG_FREE_CHUNKS, st->free_chunks_mapped);
	set_u64(t, row, FRAG_RECLAIM_CHUNKS, st->chunks_reclaimable);
	set_real(t, row, FRAG_RECLAIM_SCORE, st->compact_score);
	set_u64(t, row, FRAG_COMPACT_RUNS, st->compactions);
	set_u64(t, row, FRAG_COMPACT_MOVED, st->blocks_moved);
	set_bytes(t, row, FRAG_COMPACT_COPIED, st->bytes_copied);
	set_u64(t, row, FRAG_COMPACT_VACATED, st->chunks_vacated);
	set_u64(t, row, FRAG_COMPACT_FAILED, st->compact_failures);
	set_u64(t, row, FRAG_UNMAP_RELEASED, st->chunks_released);
	set_u64(t, row, FRAG_UNMAP_FENCES, st->fences_pending);
	set_u64(t, row, FRAG_UNMAP_DEFERRED, st->chunks_unmap_deferred);
}

static void set_text(struct table *t, uint32_t row, int col, const char *text)
{
	snprintf(cell(t, row, col), CELL_LEN, "%s", text);
}

/* @part as a percentage of @whole, "-" when @whole is 0. */
static void set_share(struct table *t, uint32_t row, int col, uint64_t part,
		      uint64_t whole)
{
	if (!whole)
		set_text(t, row, col, "-");
	else
		snprintf(cell(t, row, col), CELL_LEN, "%.1f%%",
			 100.0 * (double)part / (double)whole);
}

/* A duration in ns, in the unit that keeps it short: "850ns", "12.4us". */
static void set_ns(struct table *t, uint32_t row, int col, double ns)
{
	char *text = cell(t, row, col);

	if (!isfinite(ns) || ns < 0)
		snprintf(text, CELL_LEN, "-");
	else if (ns < 1e3)
		snprintf(text, CELL_LEN, "%.0fns", ns);
	else if (ns < 1e6)
		snprintf(text, CELL_LEN, "%.1fus", ns / 1e3);
	else if (ns < 1e9)
		snprintf(text, CELL_LEN, "%.1fms", ns / 1e6);
	else
		snprintf(text, CELL_LEN, "%.2fs", ns / 1e9);
}

/* The unusable index at the chunk order, the last one filled. */
static double chunk_unusable(const struct kvc_ladder *l)
{
	return l->nr_orders ? l->unusable[l->nr_orders - 1] : NAN;
}

static void fill_ladder_row(struct table *t, uint32_t row,
			    const struct kvc_stats_snapshot *snap)
{
	const struct kvc_stats_page *page = &snap->page;
	const struct kvc_ladder *l = &page->ladder;
	int c;

	set_pool(t, row, page);
	set_u64(t, row, LAD_SAMPLES, page->samples);
	if (!page->samples) {
		for (c = LAD_STEP; c < NR_LADDER_COLUMNS; c++)
			set_text(t, row, c, "-");
		return;
	}
	set_u64(t, row, LAD_STEP, l->step);
	set_bytes(t, row, LAD_LOGICAL, l->logical);
	set_bytes(t, row, LAD_LIVE, l->live);
	set_bytes(t, row, LAD_HELD, l->held);
	set_bytes(t, row, LAD_MAPPED, l->mapped);
	set_bytes(t, row, LAD_PARKED, l->parked);
	set_share(t, row, LAD_SHARE_LIVE, l->live, l->mapped);
	set_share(t, row, LAD_SHARE_RESV, l->reservation, l->mapped);
	set_share(t, row, LAD_SHARE_TAIL, l->tail, l->mapped);
	set_share(t, row, LAD_SHARE_FREE, l->free_mapped, l->mapped);
	set_share(t, row, LAD_SHARE_PARKED, l->parked, l->mapped);
	set_real(t, row, LAD_PACK, l->pack_ratio);
	set_real(t, row, LAD_HOLE, l->hole_ratio);
	set_real(t, row, LAD_UNUSABLE, chunk_unusable(l));
}

static void fill_peak_row(struct table *t, uint32_t row,
			  const struct kvc_stats_snapshot *snap)
{
	const struct kvc_stats_page *page = &snap->page;
	const struct kvc_ladder_peaks *pk = &page->peaks;
	const struct kvc_pool_stats *st = &page->stats;
	int c;

	set_pool(t, row, page);
	if (page->samples) {
		set_bytes(t, row, PEAK_LIVE, pk->live_peak);
		set_u64(t, row, PEAK_LIVE_STEP, pk->live_peak_step);
		set_bytes(t, row, PEAK_MAPPED, pk->mapped_peak);
		set_u64(t, row, PEAK_MAPPED_STEP, pk->mapped_peak_step);
		set_real(t, row, PEAK_GMLAKE, pk->gmlake_util);
		set_real(t, row, PEAK_JW3, pk->jw3);
		set_real(t, row, PEAK_JW4, pk->jw4);
		set_real(t, row, PEAK_MEAN_UTIL, pk->mean_util);
	} else {
		for (c = PEAK_LIVE; c <= PEAK_MEAN_UTIL; c++)
			set_text(t, row, c, "-");
	}
	set_u64(t, row, PEAK_MAP_CALLS, st->backend_map);
	set_ns(t, row, PEAK_MAP_MEAN,
	       st->backend_map ? (double)st->map_ns / (double)st->backend_map :
				 NAN);
	set_ns(t, row, PEAK_MAP_MAX,
	       st->backend_map ? (double)st->map_ns_max : NAN);
	set_u64(t, row, PEAK_UNMAP_CALLS, st->backend_unmap);
	set_ns(t, row, PEAK_UNMAP_MEAN,
	       st->backend_unmap ?
		       (double)st->unmap_ns / (double)st->backend_unmap :
		       NAN);
	set_ns(t, row, PEAK_UNMAP_MAX,
	       st->backend_unmap ? (double)st->unmap_ns_max : NAN);
}

static void table_measure(struct table *t)
{
	size_t w;
	uint32_t r;
	int c;

	for (c = 0; c < t->nr_cols; c++) {
		t->width[c] = strlen(t->cols[c].head);
		for (r = 0; r < t->nr_rows; r++) {
			w = kvcctl_text_width(cell(t, r, c));
			if (w > t->width[c])
				t->width[c] = w;
		}
	}
}

static bool same_group(const struct column *a, const struct column *b)
{
	return a->group && b->group && !strcmp(a->group, b->group);
}

/* "----blocks----" over each run of columns that share a group. */
static void put_group_line(FILE *out, const struct table *t)
{
	size_t span, label, left, pending = 0;
	int i, j;

	for (i = 0; i < t->nr_cols; i = j) {
		span = t->width[i];
		for (j = i + 1; j < t->nr_cols; j++) {
			if (!same_group(&t->cols[i], &t->cols[j]))
				break;
			span += COLUMN_GAP + t->width[j];
		}
		if (i)
			pending += COLUMN_GAP;
		if (!t->cols[i].group) {
			pending += span;
			continue;
		}
		put_spaces(out, pending);
		pending = 0;
		label = strlen(t->cols[i].group) + 2;
		if (label > span) {
			fprintf(out, "%.*s", (int)span, t->cols[i].group);
			continue;
		}
		left = (span - label) / 2;
		for (; left; left--, span--)
			fputc('-', out);
		fprintf(out, " %s ", t->cols[i].group);
		for (span -= label; span; span--)
			fputc('-', out);
	}
	fputc('\n', out);
}

/* Group line, headings, then one line per row. */
static void table_put(FILE *out, const struct table *t)
{
	uint32_t r;
	int c;

	put_group_line(out, t);
	for (c = 0; c < t->nr_cols; c++) {
		if (c)
			put_spaces(out, COLUMN_GAP);
		put_cell(out, t->cols[c].head, t->width[c], t->cols[c].left,
			 c == t->nr_cols - 1);
	}
	fputc('\n', out);
	for (r = 0; r < t->nr_rows; r++) {
		for (c = 0; c < t->nr_cols; c++) {
			if (c)
				put_spaces(out, COLUMN_GAP);
			put_cell(out, cell(t, r, c), t->width[c],
				 t->cols[c].left, c == t->nr_cols - 1);
		}
		fputc('\n', out);
	}
}

/* @pools gives the pid and name cells and their widths. */
static void put_fill_hist(FILE *out, const struct kvc_stats_snapshot *snaps,
			  const struct table *pools)
{
	size_t fill_width[KVC_FILL_BUCKETS];
	uint32_t r, n = pools->nr_rows;
	char num[24];
	int b;

	for (b = 0; b < KVC_FILL_BUCKETS; b++) {
		fill_width[b] = FILL_WIDTH;
		for (r = 0; r < n; r++) {
			size_t len =
				(size_t)snprintf(num, sizeof(num), "%" PRIu64,
						 snaps[r].page.fill_hist[b]);

			if (len > fill_width[b])
				fill_width[b] = len;
		}
	}
	fprintf(out, "\nchunk fill: mapped chunks by share of live blocks\n");
	put_cell(out, columns[COL_PID].head, pools->width[COL_PID], false,
		 false);
	put_spaces(out, COLUMN_GAP);
	put_cell(out, columns[COL_NAME].head, pools->width[COL_NAME], true,
		 false);
	for (b = 0; b < KVC_FILL_BUCKETS; b++) {
		fputc(' ', out);
		put_cell(out, fill_heads[b], fill_width[b], false, false);
	}
	fputc('\n', out);
	for (r = 0; r < n; r++) {
		put_cell(out, cell(pools, r, COL_PID), pools->width[COL_PID],
			 false, false);
		put_spaces(out, COLUMN_GAP);
		put_cell(out, cell(pools, r, COL_NAME), pools->width[COL_NAME],
			 true, false);
		for (b = 0; b < KVC_FILL_BUCKETS; b++) {
			snprintf(num, sizeof(num), "%" PRIu64,
				 snaps[r].page.fill_hist[b]);
			fputc(' ', out);
			put_cell(out, num, fill_width[b], false, false);
		}
		fputc('\n', out);
	}
}

int stats_show_table(FILE *out, const struct kvc_stats_snapshot *snaps,
		     uint32_t n)
{
	struct table pools, frag, ladder, peaks;
	int err = -ENOMEM;
	uint32_t r;

	memset(&frag, 0, sizeof(frag));
	memset(&ladder, 0, sizeof(ladder));
	memset(&peaks, 0, sizeof(peaks));
	if (table_init(&pools, columns, NR_COLUMNS, n))
		return -ENOMEM;
	if (table_init(&frag, frag_columns, NR_FRAG_COLUMNS, n) ||
	    table_init(&ladder, ladder_columns, NR_LADDER_COLUMNS, n) ||
	    table_init(&peaks, peak_columns, NR_PEAK_COLUMNS, n))
		goto out_free;
	for (r = 0; r < n; r++) {
		fill_row(&pools, r, &snaps[r]);
		fill_frag_row(&frag, r, &snaps[r]);
		fill_ladder_row(&ladder, r, &snaps[r]);
		fill_peak_row(&peaks, r, &snaps[r]);
	}
	table_measure(&pools);
	table_measure(&frag);
	table_measure(&ladder);
	table_measure(&peaks);

	table_put(out, &pools);
	fprintf(out, "\nfragmentation and compaction: indices for a request "
		     "of one whole chunk, as in extfrag\n");
	table_put(out, &frag);
	fprintf(out, "\nbyte ladder: the latest sample; mapped = live + resv "
		     "+ tail + free + parked\n");
	table_put(out, &ladder);
	fprintf(out, "\npeaks over the samples, and the cost of mapping\n");
	table_put(out, &peaks);
	put_fill_hist(out, snaps, &pools);
	err = 0;
out_free:
	free(peaks.cells);
	free(ladder.cells);
	free(frag.cells);
	free(pools.cells);
	return err;
}

static void fill_hist_row(struct table *t, uint32_t row,
			  const struct kvc_stats_sample *s, uint64_t now_ns)
{
	char age[32];

	set_u64(t, row, HIST_STEP, s->step);
	/* Age against the latest sample: a clock both ends share. */
	snprintf(age, sizeof(age), "-%.3fs",
		 now_ns >= s->t_ns ? (double)(now_ns - s->t_ns) / 1e9 : 0.0);
	set_text(t, row, HIST_AGE, age);
	set_bytes(t, row, HIST_LOGICAL, s->logical);
	set_bytes(t, row, HIST_LIVE, s->live);
	set_bytes(t, row, HIST_HELD, s->held);
	set_bytes(t, row, HIST_MAPPED, s->mapped);
	set_bytes(t, row, HIST_PARKED, s->parked);
	set_bytes(t, row, HIST_RESV, s->reservation);
	set_bytes(t, row, HIST_FREE, s->free_mapped);
	set_share(t, row, HIST_UTIL, s->live, s->mapped);
	set_real(t, row, HIST_PACK, s->pack_ratio);
	set_real(t, row, HIST_HOLE, s->hole_ratio);
	set_real(t, row, HIST_UNUSABLE, s->unusable_chunk);
	set_u64(t, row, HIST_SEQS, s->seqs);
	set_u64(t, row, HIST_PREEMPT, s->preemptions);
	set_u64(t, row, HIST_MOVED, s->blocks_moved);
	set_u64(t, row, HIST_MAP, s->backend_map);
	set_u64(t, row, HIST_UNMAP, s->backend_unmap);
	set_u64(t, row, HIST_FAILS, s->alloc_failures);
}

const struct kvc_stats_sample *stats_ring_get(const struct kvc_stats_page *page,
					      uint32_t i)
{
	uint32_t oldest =
		(page->ring_head + KVC_STATS_RING - page->ring_count) %
		KVC_STATS_RING;

	return &page->ring[(oldest + i) % KVC_STATS_RING];
}

/* How many samples to show of @page's ring, and from which. */
static uint32_t history_span(const struct kvc_stats_page *page, uint32_t last,
			     uint32_t *first)
{
	uint32_t count = page->ring_count <= KVC_STATS_RING ? page->ring_count :
							      KVC_STATS_RING;
	uint32_t shown = last < count ? last : count;

	*first = count - shown;
	return shown;
}

int stats_show_history(FILE *out, const struct kvc_stats_snapshot *snaps,
		       uint32_t n, uint32_t last)
{
	const struct kvc_stats_page *page;
	char name[sizeof(snaps->page.name)];
	uint32_t r, i, first, shown;
	struct table t;
	uint64_t now;

	for (r = 0; r < n; r++) {
		page = &snaps[r].page;
		shown = history_span(page, last, &first);
		kvcctl_sanitize(name, sizeof(name),
				page->name[0] ? page->name : "-");
		fprintf(out,
			"\nhistory of pid %" PRIu32
			" pool %s: the last %" PRIu32 " of %" PRIu64
			" samples\n",
			page->pid, name, shown, page->samples);
		if (!shown)
			continue;
		if (table_init(&t, hist_columns, NR_HIST_COLUMNS, shown))
			return -ENOMEM;
		now = stats_ring_get(page, first + shown - 1)->t_ns;
		for (i = 0; i < shown; i++)
			fill_hist_row(&t, i, stats_ring_get(page, first + i),
				      now);
		table_measure(&t);
		table_put(out, &t);
		free(t.cells);
	}
	return 0;
}

/* Levels of the sparkline, lowest first: plain ASCII for any terminal. */
static const char spark_levels[] = " .:-=+*#%@";
#define SPARK_WIDTH 48

/* Mapped bytes over the ring, squeezed into at most SPARK_WIDTH columns. */
static void put_sparkline(FILE *out, const struct kvc_stats_page *page)
{
	uint64_t col[SPARK_WIDTH], lo = UINT64_MAX, hi = 0, v;
	uint32_t count, width, i, c, first;
	int level;

	count = history_span(page, KVC_STATS_RING, &first);
	if (!count) {
		fputs("(no samples)", out);
		return;
	}
	width = count < SPARK_WIDTH ? count : SPARK_WIDTH;
	memset(col, 0, sizeof(col));
	/* Each column shows the highest sample it covers: peaks stay seen. */
	for (i = 0; i < count; i++) {
		c = (uint32_t)((uint64_t)i * width / count);
		v = stats_ring_get(page, first + i)->mapped;
		if (v > col[c])
			col[c] = v;
	}
	for (c = 0; c < width; c++) {
		if (col[c] < lo)
			lo = col[c];
		if (col[c] > hi)
			hi = col[c];
	}
	fputc('[', out);
	for (c = 0; c < width; c++) {
		level = hi > lo ? (int)((double)(col[c] - lo) /
					(double)(hi - lo) *
					(double)(sizeof(spark_levels) - 2)) :
				  (hi ? (int)sizeof(spark_levels) - 2 : 0);
		fputc(spark_levels[level], out);
	}
	fputc(']', out);
}

/* "+1.5 MiB/s", "-64.0 KiB/s", "0 B/s". */
static void put_rate(FILE *out, const char *what, uint64_t before, uint64_t now,
		     double seconds)
{
	char buf[KVCCTL_BYTES_LEN];
	double rate;
	uint64_t mag;

	rate = ((double)now - (double)before) / seconds;
	mag = (uint64_t)fabs(rate);
	fprintf(out, "  %s %s%s/s", what,
		rate > 0 ? "+" :
		rate < 0 ? "-" :
			   "",
		kvcctl_human_bytes(mag, buf));
}

void stats_trend_take(const struct kvc_stats_snapshot *snaps, uint32_t n,
		      struct stats_trend *trend, uint64_t now_ns)
{
	const struct kvc_stats_page *page;
	uint32_t r;

	for (r = 0; r < n && r < STATS_TREND_POOLS; r++) {
		page = &snaps[r].page;
		snprintf(trend->pool[r].path, sizeof(trend->pool[r].path), "%s",
			 snaps[r].path);
		trend->pool[r].held = page->stats.bytes_live;
		trend->pool[r].mapped = page->stats.bytes_mapped;
		trend->pool[r].live = page->samples ? page->ladder.live :
						      page->stats.bytes_live;
	}
	trend->n = r;
	trend->t_ns = now_ns;
}

void stats_show_trend(FILE *out, const struct kvc_stats_snapshot *snaps,
		      uint32_t n, const struct stats_trend *prev,
		      uint64_t now_ns)
{
	const struct stats_trend_pool *was;
	const struct kvc_stats_page *page;
	char name[sizeof(snaps->page.name)];
	struct stats_trend cur;
	double seconds;
	uint32_t r, k;

	fprintf(out, "\ntrend since the last refresh; mapped over the "
		     "sample ring, oldest left\n");
	stats_trend_take(snaps, n, &cur, now_ns);
	seconds = prev && now_ns > prev->t_ns ?
			  (double)(now_ns - prev->t_ns) / 1e9 :
			  0;
	for (r = 0; r < n; r++) {
		page = &snaps[r].page;
		kvcctl_sanitize(name, sizeof(name),
				page->name[0] ? page->name : "-");
		fprintf(out, "%" PRIu32 "  %s", page->pid, name);
		was = NULL;
		for (k = 0; prev && k < prev->n && r < cur.n; k++)
			if (!strcmp(prev->pool[k].path, cur.pool[r].path))
				was = &prev->pool[k];
		if (was && seconds > 0) {
			put_rate(out, "held", was->held, cur.pool[r].held,
				 seconds);
			put_rate(out, "mapped", was->mapped, cur.pool[r].mapped,
				 seconds);
			put_rate(out, "live", was->live, cur.pool[r].live,
				 seconds);
		} else {
			fputs("  (first refresh)", out);
		}
		fputs("  ", out);
		put_sparkline(out, page);
		fputc('\n', out);
	}
}

/*
 * Every member of struct kvc_pool_stats, in the order of the struct, by
 * kind: U64 for the uint64_t counters, REAL for the doubles. The JSON keys
 * are the member names. A new member must be added here: the checks below
 * fail the build until it is.
 */
/* clang-format off */
#define POOL_STATS_FIELDS(U64, REAL) \
	U64(block_bytes) \
	U64(chunk_bytes) \
	U64(blocks_per_chunk) \
	U64(blocks_total) \
	U64(blocks_live) \
	U64(blocks_free) \
	U64(blocks_free_mapped) \
	U64(chunks_total) \
	U64(chunks_mapped) \
	U64(chunks_empty) \
	U64(chunks_partial) \
	U64(chunks_full) \
	U64(bytes_reserved) \
	U64(bytes_mapped) \
	U64(bytes_live) \
	U64(blocks_live_hwm) \
	U64(bytes_mapped_hwm) \
	U64(alloc_calls) \
	U64(free_calls) \
	U64(alloc_failures) \
	U64(unmap_failures) \
	U64(backend_create) \
	U64(backend_map) \
	U64(backend_set_access) \
	U64(backend_unmap) \
	U64(backend_release) \
	U64(backend_copy) \
	U64(free_blocks_in_partial_chunks) \
	U64(free_chunks_mapped) \
	U64(chunks_reclaimable) \
	U64(compactions) \
	U64(blocks_moved) \
	U64(bytes_copied) \
	U64(chunks_vacated) \
	U64(chunks_released) \
	U64(compact_failures) \
	U64(fences_pending) \
	U64(chunks_unmap_deferred) \
	U64(map_ns) \
	U64(map_ns_max) \
	U64(unmap_ns) \
	U64(unmap_ns_max) \
	U64(placement) \
	REAL(frag_ratio) \
	REAL(unusable_index) \
	REAL(fragmentation_index) \
	REAL(compact_score)
/* clang-format on */

enum stat_kind {
	STAT_U64, /* uint64_t, printed as an integer */
	STAT_REAL, /* double, "%.3f"; null when infinite or NaN */
};

/**
 * struct stat_field - One member of struct kvc_pool_stats in the JSON.
 * @key: its JSON name, the member's name.
 * @offset: offsetof() the member.
 * @kind: its type.
 */
struct stat_field {
	const char *key;
	size_t offset;
	enum stat_kind kind;
};

#define STAT_MEMBER(f) (((const struct kvc_pool_stats *)0)->f)
#define STAT_ENTRY(f, kind) { #f, offsetof(struct kvc_pool_stats, f), kind },
#define STAT_ENTRY_U64(f) STAT_ENTRY(f, STAT_U64)
#define STAT_ENTRY_REAL(f) STAT_ENTRY(f, STAT_REAL)

/* clang-format off */
static const struct stat_field stat_fields[] = {
	POOL_STATS_FIELDS(STAT_ENTRY_U64, STAT_ENTRY_REAL)
};
/* clang-format on */

/* No member twice: a repeated name is a repeated enumerator. */
#define STAT_INDEX(f) STAT_INDEX_##f,
enum { POOL_STATS_FIELDS(STAT_INDEX, STAT_INDEX) NR_STAT_FIELDS };

_Static_assert(sizeof(stat_fields) / sizeof(stat_fields[0]) == NR_STAT_FIELDS,
	       "one JSON field per listed member");

/* Each kind is the member's type. */
#define STAT_CHECK_U64(f)                                                   \
	_Static_assert(_Generic(STAT_MEMBER(f), uint64_t : 1, default : 0), \
		       #f " is listed as U64 but is not a uint64_t");
#define STAT_CHECK_REAL(f)                                                \
	_Static_assert(_Generic(STAT_MEMBER(f), double : 1, default : 0), \
		       #f " is listed as REAL but is not a double");
POOL_STATS_FIELDS(STAT_CHECK_U64, STAT_CHECK_REAL)

/*
 * Distinct members whose sizes add up to the struct's size cover it
 * whole: a member left out of the list fails here.
 */
#define STAT_SIZE(f) +sizeof(STAT_MEMBER(f))
_Static_assert(0 POOL_STATS_FIELDS(STAT_SIZE, STAT_SIZE) ==
		       sizeof(struct kvc_pool_stats),
	       "every member of struct kvc_pool_stats has a JSON field");

static void put_json_real(FILE *out, const char *key, double value)
{
	char text[512];

	if (real_text(value, text, sizeof(text)))
		fprintf(out, "    \"%s\": %s,\n", key, text);
	else
		fprintf(out, "    \"%s\": null,\n", key);
}

/*
 * The members of struct kvc_ladder, struct kvc_ladder_peaks and struct
 * kvc_stats_sample, listed the same way: each list must cover its struct.
 */
/* clang-format off */
#define LADDER_FIELDS(U64, REAL, U32, ORDERS_REAL, ORDERS_U64) \
	U64(t_ns) U64(step) U64(logical) U64(live) U64(held) U64(mapped) \
	U64(parked) U64(reservation) U64(tail) U64(free_mapped) U64(seqs) \
	U64(preemptions) U64(held_blocks) U64(mapped_chunks) \
	U64(floor_chunks) REAL(pack_ratio) REAL(hole_ratio) U32(nr_orders) \
	ORDERS_REAL(unusable) ORDERS_REAL(extfrag) ORDERS_U64(free_runs)

#define PEAKS_FIELDS(U64, REAL) \
	U64(samples) U64(live_peak) U64(live_peak_step) U64(live_peak_ns) \
	U64(mapped_at_live_peak) U64(mapped_peak) U64(mapped_peak_step) \
	U64(mapped_peak_ns) U64(live_at_mapped_peak) REAL(gmlake_util) \
	REAL(jw2) REAL(jw3) REAL(jw4) REAL(weight) REAL(mean_logical) \
	REAL(mean_live) REAL(mean_held) REAL(mean_mapped) REAL(mean_parked) \
	REAL(mean_reservation) REAL(mean_tail) REAL(mean_free_mapped) \
	REAL(mean_seqs) REAL(mean_util)

#define SAMPLE_FIELDS(U64, REAL) \
	U64(t_ns) U64(step) U64(logical) U64(live) U64(held) U64(mapped) \
	U64(parked) U64(reservation) U64(free_mapped) U64(seqs) \
	U64(preemptions) U64(blocks_moved) U64(backend_map) \
	U64(backend_unmap) U64(alloc_failures) REAL(unusable_chunk) \
	REAL(pack_ratio) REAL(hole_ratio)
/* clang-format on */

#define LADDER_SIZE(f) +sizeof(((const struct kvc_ladder *)0)->f)
_Static_assert(0 LADDER_FIELDS(LADDER_SIZE, LADDER_SIZE, LADDER_SIZE,
			       LADDER_SIZE, LADDER_SIZE) +
			       sizeof(uint32_t) /* reserved0 */
		       == sizeof(struct kvc_ladder),
	       "every member of struct kvc_ladder has a JSON field");
#define PEAKS_SIZE(f) +sizeof(((const struct kvc_ladder_peaks *)0)->f)
_Static_assert(0 PEAKS_FIELDS(PEAKS_SIZE, PEAKS_SIZE) ==
		       sizeof(struct kvc_ladder_peaks),
	       "every member of struct kvc_ladder_peaks has a JSON field");
#define SAMPLE_SIZE(f) +sizeof(((const struct kvc_stats_sample *)0)->f)
_Static_assert(0 SAMPLE_FIELDS(SAMPLE_SIZE, SAMPLE_SIZE) ==
		       sizeof(struct kvc_stats_sample),
	       "every member of struct kvc_stats_sample has a JSON field");

/* Members are written with a leading separator: @sep is "" first. */
static void json_real_member(FILE *out, const char **sep, const char *key,
			     double value)
{
	char text[512];

	fprintf(out, "%s\"%s\": %s", *sep, key,
		real_text(value, text, sizeof(text)) ? text : "null");
	*sep = ", ";
}

static void json_u64_member(FILE *out, const char **sep, const char *key,
			    uint64_t value)
{
	fprintf(out, "%s\"%s\": %" PRIu64, *sep, key, value);
	*sep = ", ";
}

static void json_reals(FILE *out, const char **sep, const char *key,
		       const double *v, uint32_t n)
{
	char text[512];
	uint32_t i;

	fprintf(out, "%s\"%s\": [", *sep, key);
	for (i = 0; i < n; i++)
		fprintf(out, "%s%s", i ? ", " : "",
			real_text(v[i], text, sizeof(text)) ? text : "null");
	fputc(']', out);
	*sep = ", ";
}

static void json_u64s(FILE *out, const char **sep, const char *key,
		      const uint64_t *v, uint32_t n)
{
	uint32_t i;

	fprintf(out, "%s\"%s\": [", *sep, key);
	for (i = 0; i < n; i++)
		fprintf(out, "%s%" PRIu64, i ? ", " : "", v[i]);
	fputc(']', out);
	*sep = ", ";
}

void stats_json_ladder(FILE *out, const struct kvc_ladder *l)
{
	uint32_t orders = l->nr_orders <= KVC_LADDER_ORDERS ? l->nr_orders :
							      KVC_LADDER_ORDERS;
	const char *sep = "";

#define J_U64(f) json_u64_member(out, &sep, #f, l->f);
#define J_REAL(f) json_real_member(out, &sep, #f, l->f);
#define J_ORDERS_REAL(f) json_reals(out, &sep, #f, l->f, orders);
#define J_ORDERS_U64(f) json_u64s(out, &sep, #f, l->f, orders);
	fputc('{', out);
	LADDER_FIELDS(J_U64, J_REAL, J_U64, J_ORDERS_REAL, J_ORDERS_U64)
	fputc('}', out);
#undef J_U64
#undef J_REAL
#undef J_ORDERS_REAL
#undef J_ORDERS_U64
}

void stats_json_peaks(FILE *out, const struct kvc_ladder_peaks *p)
{
	const char *sep = "";

#define J_U64(f) json_u64_member(out, &sep, #f, p->f);
#define J_REAL(f) json_real_member(out, &sep, #f, p->f);
	fputc('{', out);
	PEAKS_FIELDS(J_U64, J_REAL)
	fputc('}', out);
#undef J_U64
#undef J_REAL
}

static void put_json_sample(FILE *out, const struct kvc_stats_sample *s)
{
	const char *sep = "";

#define J_U64(f) json_u64_member(out, &sep, #f, s->f);
#define J_REAL(f) json_real_member(out, &sep, #f, s->f);
	fputc('{', out);
	SAMPLE_FIELDS(J_U64, J_REAL)
	fputc('}', out);
#undef J_U64
#undef J_REAL
}

static void put_json_samples(FILE *out, const struct kvc_stats_page *page,
			     uint32_t history)
{
	uint32_t first, shown, i;

	fprintf(out, ",\n    \"samples\": %" PRIu64 ",\n    \"ladder\": ",
		page->samples);
	stats_json_ladder(out, &page->ladder);
	fprintf(out, ",\n    \"peaks\": ");
	stats_json_peaks(out, &page->peaks);
	if (!history)
		return;
	shown = history_span(page, history, &first);
	fprintf(out, ",\n    \"history\": [");
	for (i = 0; i < shown; i++) {
		fputs(i ? ",\n      " : "\n      ", out);
		put_json_sample(out, stats_ring_get(page, first + i));
	}
	fputs(shown ? "\n    ]" : "]", out);
}

static void put_json_pool(FILE *out, const struct kvc_stats_snapshot *snap,
			  uint32_t history)
{
	const struct kvc_stats_page *page = &snap->page;
	const struct kvc_pool_stats *st = &page->stats;
	const char *base = (const char *)st;
	uint64_t value;
	double real;
	size_t i;
	int b;

	fprintf(out,
		"  {\n    \"pid\": %" PRIu32 ",\n    \"name\": ", page->pid);
	kvcctl_json_string(out, page->name);
	fprintf(out, ",\n    \"backend\": ");
	kvcctl_json_string(out, page->backend);
	fprintf(out,
		",\n    \"device\": %d,\n    \"alive\": %s,\n"
		"    \"torn\": %s,\n    \"path\": ",
		(int)page->device, snap->alive ? "true" : "false",
		snap->torn ? "true" : "false");
	kvcctl_json_string(out, snap->path);
	fprintf(out,
		",\n    \"created_ns\": %" PRIu64
		",\n    \"updated_ns\": %" PRIu64 ",\n",
		page->created_ns, page->updated_ns);
	for (i = 0; i < NR_STAT_FIELDS; i++) {
		switch (stat_fields[i].kind) {
		case STAT_U64:
			memcpy(&value, base + stat_fields[i].offset,
			       sizeof(value));
			fprintf(out, "    \"%s\": %" PRIu64 ",\n",
				stat_fields[i].key, value);
			break;
		case STAT_REAL:
			memcpy(&real, base + stat_fields[i].offset,
			       sizeof(real));
			put_json_real(out, stat_fields[i].key, real);
			break;
		}
	}
	if (st->bytes_live)
		put_json_real(out, "mapped_live_ratio",
			      (double)st->bytes_mapped /
				      (double)st->bytes_live);
	else
		fprintf(out, "    \"mapped_live_ratio\": null,\n");
	fprintf(out, "    \"fill_hist\": [");
	for (b = 0; b < KVC_FILL_BUCKETS; b++)
		fprintf(out, "%s%" PRIu64, b ? ", " : "", page->fill_hist[b]);
	fprintf(out, "]");
	put_json_samples(out, page, history);
	fprintf(out, "\n  }");
}

void stats_show_json(FILE *out, const struct kvc_stats_snapshot *snaps,
		     uint32_t n, uint32_t history)
{
	uint32_t r;

	if (!n) {
		fprintf(out, "[]\n");
		return;
	}
	fprintf(out, "[\n");
	for (r = 0; r < n; r++) {
		put_json_pool(out, &snaps[r], history);
		fprintf(out, "%s\n", r + 1 < n ? "," : "");
	}
	fprintf(out, "]\n");
}
