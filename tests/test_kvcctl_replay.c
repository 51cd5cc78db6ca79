/* Description: kvcctl replay end to end on small request CSVs and a recorded trace: one table row per configuration in order, JSON summaries (done = requests, shares summing to 1), CSV series that keep the ladder's identity, the summary CSV, usage and file errors, contig-max's --max-len and the dedupe of equivalent configurations, exact and logical replay of a trace, --plot with and without gnuplot */
// SPDX-License-Identifier: MIT
/*
 * Runs the built kvcctl as a user would, in a fresh temporary directory
 * per test (also KVC_STATS_DIR, so /dev/shm is never touched). The
 * request streams are a handful of short requests in a small region, so
 * every replay takes milliseconds.
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

#include "json.h"
#include "proc.h"
#include "tmpdir.h"

#ifndef KVCCTL
#define KVCCTL "build/kvcctl"
#endif
#define RUN_TIMEOUT_MS 60000

/* Six requests, the longest 600 tokens: small enough for 16 MiB. */
static const char requests_csv[] = "ContextTokens,GeneratedTokens,arrival_s\n"
				   "200,40,0\n"
				   "600,60,0.05\n"
				   "50,10,0.1\n"
				   "300,100,0.2\n"
				   "120,30,0.25\n"
				   "80,200,0.3\n";

/**
 * struct fx - One test's directory and files.
 * @dir: the temporary directory.
 * @csv: the request CSV in it.
 */
struct fx {
	char dir[64];
	char csv[128];
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	FILE *f;

	if (!fx)
		return -1;
	if (tmpdir_make(fx->dir, sizeof(fx->dir), "kvc-test-kvcctl-replay")) {
		free(fx);
		return -1;
	}
	snprintf(fx->csv, sizeof(fx->csv), "%s/requests.csv", fx->dir);
	f = fopen(fx->csv, "w");
	if (!f || fputs(requests_csv, f) < 0 || fclose(f)) {
		tmpdir_remove(fx->dir);
		free(fx);
		return -1;
	}
	setenv("KVC_STATS_DIR", fx->dir, 1);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	int err;

	err = tmpdir_remove(fx->dir);
	if (err)
		fprintf(stderr, "test_kvcctl_replay: cannot remove %s: %s\n",
			fx->dir, strerror(errno));
	free(fx);
	return err;
}

/* Runs kvcctl with the arguments given, NULL-terminated. */
static void kvcctl(struct result *r, ...)
{
	char *const head[] = { KVCCTL, NULL };
	va_list ap;

	va_start(ap, r);
	proc_vrun(r, RUN_TIMEOUT_MS, head, ap);
	va_end(ap);
}

static char *path_in(const struct fx *fx, const char *name)
{
	static char path[8][160];
	static int next;
	char *p = path[next++ % 8];

	snprintf(p, sizeof(path[0]), "%s/%s", fx->dir, name);
	return p;
}

static bool exists(const char *path)
{
	return !access(path, R_OK);
}

static char *slurp_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *s;

	assert_non_null(f);
	s = proc_slurp(f);
	fclose(f);
	assert_non_null(s);
	return s;
}

/* The lines of the table: after the "label" header, up to a blank line. */
static int table_rows(const char *out, char rows[][64], int max)
{
	const char *p = strstr(out, "\nlabel ");
	int n = 0;
	size_t len;

	assert_non_null(p);
	p = strchr(p + 1, '\n');
	while (p && p[1] && p[1] != '\n' && n < max) {
		p++;
		len = strcspn(p, " ");
		if (len >= 64)
			len = 63;
		memcpy(rows[n], p, len);
		rows[n][len] = '\0';
		n++;
		p = strchr(p, '\n');
	}
	return n;
}

static int count(const char *s, const char *needle)
{
	int n = 0;

	while ((s = strstr(s, needle))) {
		n++;
		s++;
	}
	return n;
}

/* kvcctl replay --json's output: one valid JSON object. */
static struct json *parse_summary(const char *out)
{
	struct json *doc = json_parse(out);

	if (!doc || doc->type != JSON_OBJECT)
		fail_msg("not one JSON object:\n%s", out);
	return doc;
}

/* Its configurations, @n of them, each an object with a label. */
static const struct json *configurations(const struct json *doc, size_t n)
{
	const struct json *confs =
		json_member(doc, "configurations", JSON_ARRAY);
	size_t i;

	assert_int_equal(confs->n, n);
	for (i = 0; i < n; i++) {
		assert_int_equal(confs->items[i]->type, JSON_OBJECT);
		(void)json_str(confs->items[i], "label");
	}
	return confs;
}

static void test_table(void **state)
{
	struct fx *fx = *state;
	char rows[8][64];
	struct result r;

	kvcctl(&r, "replay", fx->csv, "--capacity", "64M", "--jobs", "2",
	       "--layout", "per-head,contig-oracle", "--policy",
	       "full,kvcompress", "--rate", "4", NULL);
	assert_int_equal(r.status, 0);
	/* One row per configuration, in configuration order. */
	assert_int_equal(table_rows(r.out, rows, 8), 3);
	assert_string_equal(rows[0], "per-head/full");
	assert_string_equal(rows[1], "per-head/kvcompress-4x");
	assert_string_equal(rows[2], "contig-oracle");
	assert_int_equal(count(r.out, " 6/6 "), 3);
	assert_non_null(strstr(r.out, "requests  6 from "));
	assert_non_null(strstr(r.out, "most fragmenting: "));
	assert_non_null(strstr(r.err, "3 configurations of 6 requests"));
	proc_result_free(&r);
}

static void test_json(void **state)
{
	struct fx *fx = *state;
	const struct json *confs, *c, *peaks;
	struct json *doc;
	struct result r;
	double sum;
	size_t i;

	kvcctl(&r, "replay", fx->csv, "--capacity", "64M", "--jobs", "2",
	       "--layout", "per-head,paged,contig-max", "--json", NULL);
	assert_int_equal(r.status, 0);
	doc = parse_summary(r.out);
	assert_string_equal(json_str(doc, "mode"), "logical");
	assert_null(json_get(doc, "label"));
	assert_null(json_get(doc, "peaks"));
	confs = configurations(doc, 3);
	assert_true(json_u64(doc, "requests") == 6);
	for (i = 0; i < 3; i++) {
		c = confs->items[i];
		peaks = json_member(c, "peaks", JSON_OBJECT);
		/* Every request finished, and the shares cover the region. */
		assert_true(json_u64(c, "done") == 6);
		assert_true(json_u64(c, "requests") == 6);
		/* Up-front layouts round the region to whole units. */
		assert_true(json_u64(c, "capacity_bytes") <= 64 << 20);
		assert_true(json_u64(c, "capacity_bytes") > 32 << 20);
		sum = json_number(c, "share_live") +
		      json_number(c, "share_reservation") +
		      json_number(c, "share_internal") +
		      json_number(c, "share_external") +
		      json_number(c, "share_unmapped");
		if (fabs(sum - 1) > 0.02)
			fail_msg("configuration %zu: shares sum to %g", i, sum);
		assert_true(json_number(peaks, "gmlake_util") > 0);
		assert_true(json_number(peaks, "gmlake_util") <= 1);
	}
	/* Paged and contiguous layouts map the whole region up front. */
	assert_true(json_number(confs->items[1], "share_unmapped") == 0);
	assert_true(json_number(confs->items[2], "share_unmapped") == 0);
	json_free(doc);
	proc_result_free(&r);
}

/* Column @col (from 0) of a CSV row as a number. */
static double csv_field(const char *row, int col)
{
	while (col--) {
		row = strchr(row, ',');
		assert_non_null(row);
		row++;
	}
	return strtod(row, NULL);
}

static void test_csv(void **state)
{
	struct fx *fx = *state;
	char *series, *summary, *row, *save = NULL;
	int rows = 0, per_head = 0, oracle = 0;
	double live, held, mapped, parked, resv, tail, free_mapped;
	struct result r;

	kvcctl(&r, "replay", fx->csv, "--capacity", "64M", "--jobs", "2",
	       "--layout", "per-head,contig-oracle", "--csv",
	       path_in(fx, "series.csv"), "--summary-csv",
	       path_in(fx, "summary.csv"), NULL);
	assert_int_equal(r.status, 0);
	series = slurp_file(path_in(fx, "series.csv"));
	assert_true(!strncmp(
		series,
		"config,step,t_s,logical,live,held,mapped,parked,reservation,tail,free_mapped,internal,running,",
		94));
	for (row = strtok_r(strchr(series, '\n') + 1, "\n", &save); row;
	     row = strtok_r(NULL, "\n", &save)) {
		rows++;
		per_head += !strncmp(row, "per-head,", 9);
		oracle += !strncmp(row, "contig-oracle,", 14);
		live = csv_field(row, 4);
		held = csv_field(row, 5);
		mapped = csv_field(row, 6);
		parked = csv_field(row, 7);
		resv = csv_field(row, 8);
		tail = csv_field(row, 9);
		free_mapped = csv_field(row, 10);
		/* Every sample keeps the byte ladder's identity. */
		assert_true(mapped ==
			    live + resv + tail + free_mapped + parked);
		assert_true(live <= held && held <= mapped);
	}
	assert_true(per_head > 0);
	assert_true(oracle > 0);
	assert_int_equal(rows, per_head + oracle);
	free(series);
	summary = slurp_file(path_in(fx, "summary.csv"));
	assert_true(!strncmp(summary, "label,layout,placement,policy,", 30));
	assert_int_equal(count(summary, "\n"), 3);
	assert_non_null(strstr(summary, "\nper-head,per-head,fullest,full,"));
	assert_non_null(strstr(summary, "\ncontig-oracle,contig-oracle,"));
	free(summary);
	proc_result_free(&r);
}

/* A usage error: exit 2, @needle in the message, nothing on stdout. */
static void expect_usage(const char *needle, struct result *r)
{
	assert_int_equal(r->status, 2);
	if (!strstr(r->err, needle))
		fail_msg("'%s' not in: %s", needle, r->err);
	assert_string_equal(r->out, "");
	proc_result_free(r);
}

static void test_usage_errors(void **state)
{
	struct fx *fx = *state;
	struct result r;

	kvcctl(&r, "replay", fx->csv, "--layout", "per-head,heap", NULL);
	assert_non_null(strstr(r.err, "contig-oracle"));
	expect_usage("--layout: 'heap' is not one of", &r);
	kvcctl(&r, "replay", fx->csv, "--placement", "best", NULL);
	expect_usage("--placement: 'best'", &r);
	kvcctl(&r, "replay", fx->csv, "--compact", "sometimes", NULL);
	expect_usage("--compact: 'sometimes'", &r);
	kvcctl(&r, "replay", fx->csv, "--policy", "lru", NULL);
	expect_usage("--policy: 'lru'", &r);
	kvcctl(&r, "replay", fx->csv, "--rate", "8,0.5", NULL);
	expect_usage("--rate: '0.5'", &r);
	kvcctl(&r, "replay", fx->csv, "--rate", "8,,4", NULL);
	expect_usage("--rate", &r);
	kvcctl(&r, "replay", fx->csv, "--chunk", "6000", NULL);
	expect_usage("--chunk: 6000", &r);
	kvcctl(&r, "replay", fx->csv, "--capacity", "1X", NULL);
	expect_usage("--capacity: '1X'", &r);
	/* Too large is not "at least 1". */
	kvcctl(&r, "replay", fx->csv, "--capacity", "99999999T", NULL);
	expect_usage("--capacity: 99999999T does not fit 64 bits", &r);
	kvcctl(&r, "replay", fx->csv, "--max-len", "abc", NULL);
	expect_usage("--max-len: 'abc'", &r);
	kvcctl(&r, "replay", fx->csv, "--jobs", "0", NULL);
	expect_usage("--jobs: 0", &r);
	kvcctl(&r, "replay", fx->csv, "--model", "gpt-9", NULL);
	expect_usage("--model: 'gpt-9'", &r);
	kvcctl(&r, "replay", fx->csv, "--step-ms", "-5", NULL);
	expect_usage("--step-ms", &r);
	kvcctl(&r, "replay", fx->csv, "--bogus", NULL);
	expect_usage("unknown option '--bogus'", &r);
	kvcctl(&r, "replay", fx->csv, "--layout", NULL);
	expect_usage("--layout needs a value", &r);
	kvcctl(&r, "replay", NULL);
	expect_usage("FILE is required", &r);
	kvcctl(&r, "replay", fx->csv, fx->csv, NULL);
	expect_usage("unexpected argument", &r);
	kvcctl(&r, "replay", fx->csv, "--exact", NULL);
	expect_usage("--exact", &r);
	kvcctl(&r, "replay", fx->csv, "--compact-high", "0.1", "--compact-low",
	       "0.3", NULL);
	expect_usage("--compact-low", &r);
	/* 5 policies x 4 rates x 3 placements x 3 compactions = 180, x 2. */
	kvcctl(&r, "replay", fx->csv, "--policy",
	       "kvcompress,h2o,snapkv,pyramidkv,window", "--rate", "2,4,8,16",
	       "--placement", "fullest,first-fit,random", "--compact",
	       "off,full,proactive", "--watermark", "0,1", NULL);
	expect_usage("more than 256 configurations", &r);
}

static void test_file_errors(void **state)
{
	struct fx *fx = *state;
	struct result r;
	FILE *f;

	kvcctl(&r, "replay", path_in(fx, "missing.csv"), NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "cannot open"));
	assert_non_null(strstr(r.err, "missing.csv"));
	proc_result_free(&r);

	f = fopen(path_in(fx, "junk"), "w");
	assert_non_null(f);
	fputs("hello, world\n", f);
	fclose(f);
	kvcctl(&r, "replay", path_in(fx, "junk"), NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "is not a trace"));
	assert_non_null(strstr(r.err, "ContextTokens"));
	proc_result_free(&r);

	/*
	 * An output that cannot be written is found before the replay runs:
	 * exit 1 and no table printed as if all went well.
	 */
	kvcctl(&r, "replay", fx->csv, "--csv", "/nonexistent-dir/series.csv",
	       NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "--csv: cannot write"));
	assert_string_equal(r.out, "");
	proc_result_free(&r);
	kvcctl(&r, "replay", fx->csv, "--summary-csv", fx->dir, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "is a directory"));
	assert_string_equal(r.out, "");
	proc_result_free(&r);
	kvcctl(&r, "replay", fx->csv, "--plot", fx->csv, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "not a directory"));
	assert_string_equal(r.out, "");
	proc_result_free(&r);

	/* An empty file, and a bad row named by its line: exit 1, no table. */
	f = fopen(path_in(fx, "empty.csv"), "w");
	assert_non_null(f);
	fclose(f);
	kvcctl(&r, "replay", path_in(fx, "empty.csv"), NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "empty"));
	assert_string_equal(r.out, "");
	proc_result_free(&r);
	f = fopen(path_in(fx, "bad.csv"), "w");
	assert_non_null(f);
	fputs("ContextTokens,GeneratedTokens,arrival_s\n10,5,0\n10,x,1\n", f);
	fclose(f);
	kvcctl(&r, "replay", path_in(fx, "bad.csv"), NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "bad.csv:3"));
	assert_string_equal(r.out, "");
	proc_result_free(&r);
}

static void test_contig_max_and_dedupe(void **state)
{
	struct fx *fx = *state;
	const struct json *confs;
	char rows[8][64];
	struct json *doc;
	struct result r;

	/*
	 * contig-max twice is once; it ignores policy and placement, so it
	 * runs once; kvcompress at rate 1 is the full cache: 1 + 2 x 2.
	 */
	kvcctl(&r, "replay", fx->csv, "--capacity", "64M", "--jobs", "2",
	       "--layout", "contig-max,contig-max,per-head", "--policy",
	       "full,kvcompress", "--rate", "1,8", "--placement",
	       "fullest,first-fit", "--max-len", "256", NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(table_rows(r.out, rows, 8), 5);
	assert_string_equal(rows[0], "contig-max");
	assert_string_equal(rows[1], "per-head/full/fullest");
	assert_string_equal(rows[2], "per-head/full/first-fit");
	assert_string_equal(rows[3], "per-head/kvcompress-8x/fullest");
	assert_string_equal(rows[4], "per-head/kvcompress-8x/first-fit");
	proc_result_free(&r);

	kvcctl(&r, "replay", fx->csv, "--capacity", "64M", "--layout",
	       "contig-max,per-head", "--max-len", "256", "--json", NULL);
	assert_int_equal(r.status, 0);
	doc = parse_summary(r.out);
	confs = configurations(doc, 2);
	assert_true(json_u64(confs->items[0], "max_len") == 256);
	assert_true(json_u64(confs->items[1], "max_len") == 256);
	json_free(doc);
	proc_result_free(&r);

	/* Without --max-len, only contig-max reserves 2048 tokens. */
	kvcctl(&r, "replay", fx->csv, "--capacity", "64M", "--layout",
	       "contig-max,per-head", "--json", NULL);
	assert_int_equal(r.status, 0);
	doc = parse_summary(r.out);
	confs = configurations(doc, 2);
	assert_string_equal(json_str(confs->items[0], "layout"), "contig-max");
	assert_true(json_u64(confs->items[0], "max_len") == 2048);
	assert_true(json_u64(confs->items[1], "max_len") == 0);
	/* Max reserves more than any request fills: internal waste. */
	assert_true(json_number(confs->items[0], "share_internal") > 0);
	assert_true(json_u64(confs->items[0], "done") == 6);
	json_free(doc);
	proc_result_free(&r);
}

/* Records a short `kvcctl run` into @path. */
static void record(const char *path)
{
	struct result r;

	kvcctl(&r, "run", "--seqs", "3", "--prompt-len", "64", "--gen-len",
	       "16", "--err-samples", "0", "--record", path, NULL);
	if (r.status)
		fail_msg("kvcctl run --record: %s", r.err);
	proc_result_free(&r);
}

static void test_exact(void **state)
{
	struct fx *fx = *state;
	char *trace = path_in(fx, "run.kvct");
	const struct json *peaks;
	char rows[8][64];
	struct json *doc;
	struct result r;
	FILE *f;
	long size;

	record(trace);
	kvcctl(&r, "replay", trace, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, ": verified"));
	assert_non_null(strstr(r.out, "invariant checks"));
	assert_non_null(strstr(r.out, "GMLake util"));
	assert_non_null(strstr(r.out, "J&W #4"));
	assert_non_null(strstr(r.out, "closing snapshot matched"));
	/* Trace samples carry no sequence count: no made-up 0 is shown. */
	assert_null(strstr(r.out, "sequences 0.0"));
	proc_result_free(&r);

	kvcctl(&r, "replay", trace, "--exact", "--json", NULL);
	assert_int_equal(r.status, 0);
	doc = parse_summary(r.out);
	assert_string_equal(json_str(doc, "mode"), "exact");
	assert_true(json_bool(doc, "final_snapshot"));
	assert_true(json_u64(doc, "events") > 0);
	/* One invariant check per event. */
	assert_true(json_u64(doc, "checks") == json_u64(doc, "events"));
	assert_true(json_u64(doc, "allocs") > 0);
	peaks = json_member(doc, "peaks", JSON_OBJECT);
	assert_true(json_u64(peaks, "live_peak") > 0);
	json_free(doc);
	proc_result_free(&r);

	/* Its requests replay logically, on the trace's model. */
	kvcctl(&r, "replay", trace, "--logical", "--capacity", "64M",
	       "--layout", "per-head,paged", NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(table_rows(r.out, rows, 8), 2);
	assert_string_equal(rows[0], "per-head");
	assert_string_equal(rows[1], "paged");
	assert_int_equal(count(r.out, " 3/3 "), 2);
	assert_non_null(strstr(r.out, "the trace's model"));
	proc_result_free(&r);

	kvcctl(&r, "replay", trace, "--policy", "h2o", NULL);
	expect_usage("--policy applies to a logical replay", &r);
	kvcctl(&r, "replay", trace, "--exact", "--logical", NULL);
	expect_usage("exclude", &r);

	/* Cut short, the trace does not replay: exit 1 with the reason. */
	f = fopen(trace, "r+");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fclose(f);
	assert_int_equal(truncate(trace, size - 64 * 3), 0);
	kvcctl(&r, "replay", trace, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "kvcctl replay: "));
	assert_string_equal(r.out, "");
	/* The message names the file, once. */
	assert_int_equal(count(r.err, trace), 1);
	proc_result_free(&r);
	kvcctl(&r, "replay", trace, "--logical", NULL);
	assert_int_equal(r.status, 1);
	assert_int_equal(count(r.err, trace), 1);
	assert_non_null(strstr(r.err, "truncated"));
	assert_string_equal(r.out, "");
	proc_result_free(&r);

	/* Cut mid-header: not a trace, said once with the file's name. */
	assert_int_equal(truncate(trace, 10), 0);
	kvcctl(&r, "replay", trace, NULL);
	assert_int_equal(r.status, 1);
	assert_int_equal(count(r.err, trace), 1);
	assert_string_equal(r.out, "");
	proc_result_free(&r);
}

static bool have_gnuplot(void)
{
	return !system("command -v gnuplot >/dev/null 2>&1");
}

static void test_plot(void **state)
{
	static const char *const files[] = {
		"labels.txt",	  "timeline-1.dat", "timeline-1.gp",
		"timeline-3.dat", "chunks-1.dat",   "chunks-2.gp",
		"waste.dat",	  "waste.gp",	    "series.dat",
		"indices.gp",	  "concurrency.gp", "tradeoff.dat",
		"tradeoff.gp",
	};
	static const char *const figures[] = { "timeline-1", "chunks-1",
					       "waste",	     "indices",
					       "tradeoff",   "concurrency" };
	struct fx *fx = *state;
	char *dir = path_in(fx, "figures"), *labels, name[64];
	struct result r;
	size_t i;

	kvcctl(&r, "replay", fx->csv, "--capacity", "64M", "--jobs", "2",
	       "--layout", "per-head,paged,contig-oracle", "--plot", dir, NULL);
	assert_int_equal(r.status, 0);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(name, sizeof(name), "figures/%s", files[i]);
		if (!exists(path_in(fx, name)))
			fail_msg("%s was not written", name);
	}
	/* No chunk map for a contiguous layout. */
	assert_false(exists(path_in(fx, "figures/chunks-3.dat")));
	labels = slurp_file(path_in(fx, "figures/labels.txt"));
	assert_non_null(
		strstr(labels, "\n1 per-head\n2 paged\n3 contig-oracle\n"));
	free(labels);
	if (have_gnuplot()) {
		assert_non_null(strstr(r.err, "plotted"));
		for (i = 0; i < sizeof(figures) / sizeof(figures[0]); i++) {
			snprintf(name, sizeof(name), "figures/%s.png",
				 figures[i]);
			if (!exists(path_in(fx, name)))
				fail_msg("%s was not drawn", name);
			snprintf(name, sizeof(name), "figures/%s.svg",
				 figures[i]);
			if (!exists(path_in(fx, name)))
				fail_msg("%s was not drawn", name);
		}
	}
	proc_result_free(&r);
	if (!have_gnuplot())
		skip();
}

static void test_plot_without_gnuplot(void **state)
{
	struct fx *fx = *state;
	char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	struct result r;

	/* A PATH with no gnuplot in it: the data and scripts, and exit 0. */
	setenv("PATH", fx->dir, 1);
	kvcctl(&r, "replay", fx->csv, "--capacity", "64M", "--plot",
	       path_in(fx, "figures"), NULL);
	if (old)
		setenv("PATH", old, 1);
	free(old);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "gnuplot is not installed"));
	assert_true(exists(path_in(fx, "figures/waste.gp")));
	assert_true(exists(path_in(fx, "figures/waste.dat")));
	assert_false(exists(path_in(fx, "figures/waste.png")));
	proc_result_free(&r);
}

static void test_help(void **state)
{
	struct result r;

	kvcctl(&r, "replay", "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "Usage: kvcctl replay FILE"));
	assert_non_null(strstr(r.out, "--max-len"));
	assert_non_null(strstr(r.out, "2048 for contig-max"));
	assert_non_null(strstr(r.out, "Examples:"));
	assert_non_null(strstr(r.out, "--plot"));
	assert_string_equal(r.err, "");
	proc_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_csv, setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_file_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_contig_max_and_dedupe,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plot_without_gnuplot,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_help, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
