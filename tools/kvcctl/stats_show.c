// SPDX-License-Identifier: MIT
/*
 * Showing stats pages: the pool table (one line per pool, vmstat-style
 * grouped columns), the chunk-fill histogram (buddyinfo-style fixed-width
 * columns) and the JSON array. Every string in a page comes from another
 * process: it is sanitized for the terminal or escaped for JSON, never
 * printed as it is.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/kvc.h>

#include "kvcctl.h"
#include "stats.h"

#define COLUMN_GAP 2
#define CELL_LEN 48

/**
 * struct column - One column of the pool table.
 * @group: heading over a run of neighbouring columns, or NULL.
 * @head: the column's own heading.
 * @left: left-aligned (words) rather than right-aligned (numbers).
 */
struct column {
	const char *group;
	const char *head;
	bool left;
};

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

/* Column headings of the histogram, in the order of fill_hist[]. */
static const char *const fill_heads[] = {
	"empty",  "1-10%",  "11-20%", "21-30%", "31-40%", "41-50%",
	"51-60%", "61-70%", "71-80%", "81-90%", "91-99%", "full",
};

_Static_assert(sizeof(fill_heads) / sizeof(fill_heads[0]) == KVC_FILL_BUCKETS,
	       "one histogram heading per fill bucket");

#define FILL_WIDTH 6

struct row {
	char cell[NR_COLUMNS][CELL_LEN];
};

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

static void set_u64(struct row *row, int col, uint64_t value)
{
	snprintf(row->cell[col], CELL_LEN, "%" PRIu64, value);
}

static void set_bytes(struct row *row, int col, uint64_t bytes)
{
	char buf[KVCCTL_BYTES_LEN];

	snprintf(row->cell[col], CELL_LEN, "%s",
		 kvcctl_human_bytes(bytes, buf));
}

static void fill_row(struct row *row, const struct kvc_stats_snapshot *snap)
{
	const struct kvc_stats_page *page = &snap->page;
	const struct kvc_pool_stats *st = &page->stats;
	char backend[sizeof(page->backend)];

	snprintf(row->cell[COL_PID], CELL_LEN, "%" PRIu32, page->pid);
	kvcctl_sanitize(row->cell[COL_NAME], CELL_LEN,
			page->name[0] ? page->name : "-");
	kvcctl_sanitize(backend, sizeof(backend), page->backend);
	if (page->device >= 0)
		snprintf(row->cell[COL_BACKEND], CELL_LEN, "%s:%d", backend,
			 (int)page->device);
	else
		snprintf(row->cell[COL_BACKEND], CELL_LEN, "%s", backend);
	/* "torn": its process died mid-update, counters may disagree. */
	snprintf(row->cell[COL_STATE], CELL_LEN, "%s",
		 snap->alive ? "live" :
		 snap->torn  ? "torn" :
			       "stale");
	set_bytes(row, COL_BLOCK_BYTES, st->block_bytes);
	set_bytes(row, COL_CHUNK_BYTES, st->chunk_bytes);
	set_u64(row, COL_BLOCKS_LIVE, st->blocks_live);
	set_u64(row, COL_BLOCKS_FREE, st->blocks_free);
	set_u64(row, COL_BLOCKS_TOTAL, st->blocks_total);
	set_u64(row, COL_CHUNKS_MAPPED, st->chunks_mapped);
	set_u64(row, COL_CHUNKS_EMPTY, st->chunks_empty);
	set_u64(row, COL_CHUNKS_PARTIAL, st->chunks_partial);
	set_u64(row, COL_CHUNKS_FULL, st->chunks_full);
	set_bytes(row, COL_BYTES_MAPPED, st->bytes_mapped);
	set_bytes(row, COL_BYTES_LIVE, st->bytes_live);
	if (st->bytes_live)
		snprintf(row->cell[COL_RATIO], CELL_LEN, "%.2f",
			 (double)st->bytes_mapped / (double)st->bytes_live);
	else
		snprintf(row->cell[COL_RATIO], CELL_LEN, "-");
	set_u64(row, COL_HWM_BLOCKS, st->blocks_live_hwm);
	set_bytes(row, COL_HWM_MAPPED, st->bytes_mapped_hwm);
	set_u64(row, COL_CALLS_MAP, st->backend_map);
	set_u64(row, COL_CALLS_UNMAP, st->backend_unmap);
	set_u64(row, COL_CALLS_ACCESS, st->backend_set_access);
	set_u64(row, COL_CALLS_COPY, st->backend_copy);
}

static bool same_group(const struct column *a, const struct column *b)
{
	return a->group && b->group && !strcmp(a->group, b->group);
}

/* "----blocks----" over each run of columns that share a group. */
static void put_group_line(FILE *out, const size_t *width)
{
	size_t span, label, left, i, j, pending = 0;

	for (i = 0; i < NR_COLUMNS; i = j) {
		span = width[i];
		for (j = i + 1; j < NR_COLUMNS; j++) {
			if (!same_group(&columns[i], &columns[j]))
				break;
			span += COLUMN_GAP + width[j];
		}
		if (i)
			pending += COLUMN_GAP;
		if (!columns[i].group) {
			pending += span;
			continue;
		}
		put_spaces(out, pending);
		pending = 0;
		label = strlen(columns[i].group) + 2;
		if (label > span) {
			fprintf(out, "%.*s", (int)span, columns[i].group);
			continue;
		}
		left = (span - label) / 2;
		for (; left; left--, span--)
			fputc('-', out);
		fprintf(out, " %s ", columns[i].group);
		for (span -= label; span; span--)
			fputc('-', out);
	}
	fputc('\n', out);
}

static void put_fill_hist(FILE *out, const struct kvc_stats_snapshot *snaps,
			  const struct row *rows, uint32_t n,
			  const size_t *width)
{
	size_t fill_width[KVC_FILL_BUCKETS];
	char num[24];
	uint32_t r;
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
	put_cell(out, columns[COL_PID].head, width[COL_PID], false, false);
	put_spaces(out, COLUMN_GAP);
	put_cell(out, columns[COL_NAME].head, width[COL_NAME], true, false);
	for (b = 0; b < KVC_FILL_BUCKETS; b++) {
		fputc(' ', out);
		put_cell(out, fill_heads[b], fill_width[b], false, false);
	}
	fputc('\n', out);
	for (r = 0; r < n; r++) {
		put_cell(out, rows[r].cell[COL_PID], width[COL_PID], false,
			 false);
		put_spaces(out, COLUMN_GAP);
		put_cell(out, rows[r].cell[COL_NAME], width[COL_NAME], true,
			 false);
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
	size_t width[NR_COLUMNS], w;
	struct row *rows;
	uint32_t r;
	int c;

	rows = calloc(n ? n : 1, sizeof(*rows));
	if (!rows)
		return -ENOMEM;
	for (c = 0; c < NR_COLUMNS; c++)
		width[c] = strlen(columns[c].head);
	for (r = 0; r < n; r++) {
		fill_row(&rows[r], &snaps[r]);
		for (c = 0; c < NR_COLUMNS; c++) {
			w = kvcctl_text_width(rows[r].cell[c]);
			if (w > width[c])
				width[c] = w;
		}
	}

	put_group_line(out, width);
	for (c = 0; c < NR_COLUMNS; c++) {
		if (c)
			put_spaces(out, COLUMN_GAP);
		put_cell(out, columns[c].head, width[c], columns[c].left,
			 c == NR_COLUMNS - 1);
	}
	fputc('\n', out);
	for (r = 0; r < n; r++) {
		for (c = 0; c < NR_COLUMNS; c++) {
			if (c)
				put_spaces(out, COLUMN_GAP);
			put_cell(out, rows[r].cell[c], width[c],
				 columns[c].left, c == NR_COLUMNS - 1);
		}
		fputc('\n', out);
	}
	put_fill_hist(out, snaps, rows, n, width);
	free(rows);
	return 0;
}

/* The counters of struct kvc_pool_stats, in order, by JSON name. */
struct stat_field {
	const char *key;
	size_t offset;
};

#define STAT_FIELD(f)                                  \
	{                                              \
#f, offsetof(struct kvc_pool_stats, f) \
	}

static const struct stat_field stat_fields[] = {
	STAT_FIELD(block_bytes),	STAT_FIELD(chunk_bytes),
	STAT_FIELD(blocks_per_chunk),	STAT_FIELD(blocks_total),
	STAT_FIELD(blocks_live),	STAT_FIELD(blocks_free),
	STAT_FIELD(blocks_free_mapped), STAT_FIELD(chunks_total),
	STAT_FIELD(chunks_mapped),	STAT_FIELD(chunks_empty),
	STAT_FIELD(chunks_partial),	STAT_FIELD(chunks_full),
	STAT_FIELD(bytes_reserved),	STAT_FIELD(bytes_mapped),
	STAT_FIELD(bytes_live),		STAT_FIELD(blocks_live_hwm),
	STAT_FIELD(bytes_mapped_hwm),	STAT_FIELD(alloc_calls),
	STAT_FIELD(free_calls),		STAT_FIELD(alloc_failures),
	STAT_FIELD(unmap_failures),	STAT_FIELD(backend_create),
	STAT_FIELD(backend_map),	STAT_FIELD(backend_set_access),
	STAT_FIELD(backend_unmap),	STAT_FIELD(backend_release),
	STAT_FIELD(backend_copy),
};

/* A new counter must be added above, or JSON readers never see it. */
_Static_assert(sizeof(stat_fields) / sizeof(stat_fields[0]) ==
		       sizeof(struct kvc_pool_stats) / sizeof(uint64_t),
	       "every pool counter has a JSON field");

static void put_json_pool(FILE *out, const struct kvc_stats_snapshot *snap)
{
	const struct kvc_stats_page *page = &snap->page;
	const struct kvc_pool_stats *st = &page->stats;
	const char *base = (const char *)st;
	uint64_t value;
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
	for (i = 0; i < sizeof(stat_fields) / sizeof(stat_fields[0]); i++) {
		memcpy(&value, base + stat_fields[i].offset, sizeof(value));
		fprintf(out, "    \"%s\": %" PRIu64 ",\n", stat_fields[i].key,
			value);
	}
	if (st->bytes_live)
		fprintf(out, "    \"mapped_live_ratio\": %.3f,\n",
			(double)st->bytes_mapped / (double)st->bytes_live);
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
