// SPDX-License-Identifier: MIT
/*
 * Showing stats pages: the pool table (one line per pool, vmstat-style
 * grouped columns), the fragmentation and compaction table under it (the
 * same layout, indices printed as the kernel's extfrag files print them),
 * the chunk-fill histogram (buddyinfo-style fixed-width columns) and the
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

_Static_assert(NR_COLUMNS <= MAX_COLUMNS && NR_FRAG_COLUMNS <= MAX_COLUMNS,
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
	struct table pools, frag;
	uint32_t r;

	if (table_init(&pools, columns, NR_COLUMNS, n))
		return -ENOMEM;
	if (table_init(&frag, frag_columns, NR_FRAG_COLUMNS, n)) {
		free(pools.cells);
		return -ENOMEM;
	}
	for (r = 0; r < n; r++) {
		fill_row(&pools, r, &snaps[r]);
		fill_frag_row(&frag, r, &snaps[r]);
	}
	table_measure(&pools);
	table_measure(&frag);

	table_put(out, &pools);
	fprintf(out, "\nfragmentation and compaction: indices for a request "
		     "of one whole chunk, as in extfrag\n");
	table_put(out, &frag);
	put_fill_hist(out, snaps, &pools);
	free(frag.cells);
	free(pools.cells);
	return 0;
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

static void put_json_pool(FILE *out, const struct kvc_stats_snapshot *snap)
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
	fprintf(out, "]\n  }");
}

void stats_show_json(FILE *out, const struct kvc_stats_snapshot *snaps,
		     uint32_t n)
{
	uint32_t r;

	if (!n) {
		fprintf(out, "[]\n");
		return;
	}
	fprintf(out, "[\n");
	for (r = 0; r < n; r++) {
		put_json_pool(out, &snaps[r]);
		fprintf(out, "%s\n", r + 1 < n ? "," : "");
	}
	fprintf(out, "]\n");
}
