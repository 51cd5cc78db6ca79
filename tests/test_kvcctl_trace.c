/* Description: kvcctl run --record and kvcctl trace dump: text, JSONL, filters, bad traces, help */
// SPDX-License-Identifier: MIT
/*
 * Runs the kvcctl binary: a small recorded run, then its trace dumped and
 * checked line by line. Each test has its own directory for the trace and
 * for the stats pages the run publishes (KVC_STATS_DIR).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "json.h"
#include "proc.h"
#include "testutil.h"
#include "tmpdir.h"

#ifndef KVCCTL
#define KVCCTL "build/kvcctl"
#endif

#define RUN_TIMEOUT_MS 60000

struct fixture {
	char dir[64];
	char pages[96];
	char trace[96];
	char bad[96];
	uint64_t events;
};

/* Runs kvcctl with the arguments given, NULL-terminated. */
static void run(struct result *r, ...)
{
	char *const head[] = { KVCCTL, NULL };
	va_list ap;

	va_start(ap, r);
	proc_vrun(r, RUN_TIMEOUT_MS, head, ap);
	va_end(ap);
}

/* Record a small run into f->trace; f->events from the stderr line. */
static int record_run(struct fixture *f)
{
	struct result r;
	const char *at;
	struct stat st;
	int ok;

	run(&r, "run", "--seqs", "2", "--prompt-len", "40", "--gen-len", "20",
	    "--layers", "2", "--err-samples", "0", "--record", f->trace, NULL);
	at = strstr(r.err, "recorded ");
	ok = r.status == 0 && at &&
	     sscanf(at, "recorded %" SCNu64 " events", &f->events) == 1;
	if (!ok)
		fprintf(stderr, "kvcctl run --record: status %d: %s\n",
			r.status, r.err);
	proc_result_free(&r);
	if (!ok || stat(f->trace, &st) ||
	    (uint64_t)st.st_size != 64 + f->events * 64)
		return -1;
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (access(KVCCTL, X_OK)) {
		fprintf(stderr, "%s is not built\n", KVCCTL);
		free(f);
		return -1;
	}
	if (tmpdir_make(f->dir, sizeof(f->dir), "kvc-test-kvcctl-trace")) {
		free(f);
		return -1;
	}
	snprintf(f->pages, sizeof(f->pages), "%s/pages", f->dir);
	snprintf(f->trace, sizeof(f->trace), "%s/run.kvct", f->dir);
	snprintf(f->bad, sizeof(f->bad), "%s/bad.kvct", f->dir);
	if (mkdir(f->pages, 0700) || setenv("KVC_STATS_DIR", f->pages, 1) ||
	    record_run(f)) {
		tmpdir_remove(f->dir);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int err;

	err = tmpdir_remove(f->dir);
	if (err)
		fprintf(stderr, "test_kvcctl_trace: cannot remove %s: %s\n",
			f->dir, strerror(errno));
	unsetenv("KVC_STATS_DIR");
	free(f);
	return err;
}

static void test_dump_text(void **state)
{
	struct fixture *f = *state;
	struct result r;
	char want[64];

	assert_true(f->events > 100);
	run(&r, "trace", "dump", f->trace, NULL);
	assert_int_equal(r.status, 0);
	EXPECT_U64(proc_count_lines(r.out), f->events);
	assert_true(!strncmp(
		r.out, "#0 step 0 config block_bytes=4096 chunk_bytes=", 45));
	assert_non_null(strstr(r.out, " name what=backend text=\"host\"\n"));
	assert_non_null(strstr(r.out, " shape layers=2 kv_heads=3 head_dim=64 "
				      "block_size=16 dtype=1 q_heads=9\n"));
	assert_non_null(strstr(r.out, " name what=policy text=\"kvcompress\""));
	assert_non_null(strstr(r.out, " arrive seq=0 prompt=40 gen=20 "));
	assert_non_null(strstr(r.out, " arrive seq=1 prompt=40 gen=20 "));
	assert_non_null(strstr(r.out, " finish seq=0 tokens=60\n"));
	assert_non_null(strstr(r.out, " finish seq=1 tokens=60\n"));
	assert_non_null(strstr(r.out, " blk_alloc block=0\n"));
	assert_non_null(strstr(r.out, " sample logical="));
	snprintf(want, sizeof(want), " end events=%" PRIu64 " lost=0\n",
		 f->events - 1);
	assert_non_null(strstr(r.out, want));
	snprintf(want, sizeof(want),
		 ": %" PRIu64 " events, %" PRIu64 " printed", f->events,
		 f->events);
	assert_non_null(strstr(r.err, want));
	proc_result_free(&r);
}

/* A line of trace dump --json: one object; fails the test otherwise. */
static struct json *parse_event(const char *line, uint64_t nr)
{
	struct json *o = json_parse(line);

	if (!o || o->type != JSON_OBJECT)
		fail_msg("line %" PRIu64 ": '%s'", nr, line);
	return o;
}

static void test_dump_json(void **state)
{
	struct fixture *f = *state;
	struct result r;
	uint64_t lines = 0;
	char *line, *save = NULL;
	bool seen = false;
	struct json *o;

	run(&r, "trace", "dump", "--json", f->trace, NULL);
	assert_int_equal(r.status, 0);
	for (line = strtok_r(r.out, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		o = parse_event(line, lines);
		/* Every event opens with its index and its time. */
		if (o->n < 2 || strcmp(o->keys[0], "i") ||
		    strcmp(o->keys[1], "t_ns"))
			fail_msg("line %" PRIu64 ": '%s'", lines, line);
		EXPECT_U64(json_u64(o, "i"), lines);
		(void)json_u64(o, "t_ns");
		json_free(o);
		lines++;
	}
	EXPECT_U64(lines, f->events);
	proc_result_free(&r);

	run(&r, "trace", "dump", "-j", "--kinds", "arrive", f->trace, NULL);
	assert_int_equal(r.status, 0);
	EXPECT_U64(proc_count_lines(r.out), 2);
	lines = 0;
	for (line = strtok_r(r.out, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		o = parse_event(line, lines++);
		assert_string_equal(json_str(o, "kind"), "arrive");
		if (json_u64(o, "seq") == 1) {
			EXPECT_U64(json_u64(o, "prompt"), 40);
			EXPECT_U64(json_u64(o, "gen"), 20);
			(void)json_u64(o, "arrival_ns");
			seen = true;
		}
		json_free(o);
	}
	assert_true(seen);
	proc_result_free(&r);
}

static void test_dump_filters(void **state)
{
	struct fixture *f = *state;
	struct result r;

	run(&r, "trace", "dump", f->trace, "--kinds", "arrive,finish,config",
	    NULL);
	assert_int_equal(r.status, 0);
	EXPECT_U64(proc_count_lines(r.out), 5);
	assert_null(strstr(r.out, "blk_alloc"));
	proc_result_free(&r);

	run(&r, "trace", "dump", f->trace, "--limit", "7", NULL);
	assert_int_equal(r.status, 0);
	EXPECT_U64(proc_count_lines(r.out), 7);
	assert_non_null(strstr(r.out, "#6 "));
	assert_null(strstr(r.out, "#7 "));
	proc_result_free(&r);

	run(&r, "trace", "dump", f->trace, "--kinds", "arrive,bogus", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "'bogus' is not an event kind"));
	proc_result_free(&r);

	run(&r, "trace", "dump", f->trace, "--limit", "x", NULL);
	assert_int_equal(r.status, 2);
	proc_result_free(&r);
}

static void copy_file(const char *from, const char *to, uint64_t bytes)
{
	char buf[4096];
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	size_t n;

	assert_non_null(in);
	assert_non_null(out);
	while (bytes &&
	       (n = fread(buf, 1, bytes < sizeof(buf) ? bytes : sizeof(buf),
			  in)) > 0) {
		assert_int_equal(fwrite(buf, 1, n, out), n);
		bytes -= n;
	}
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

/* Overwrite the kind of event @index in f->bad. */
static void set_kind(const char *path, uint64_t index, uint16_t kind)
{
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &kind, 2, (off_t)(64 + index * 64 + 12)),
			 2);
	close(fd);
}

static void test_dump_bad(void **state)
{
	struct fixture *f = *state;
	struct result r;

	/* A bad kind at event 10: the 10 good ones are printed, then why. */
	copy_file(f->trace, f->bad, UINT64_MAX);
	set_kind(f->bad, 10, 77);
	run(&r, "trace", "dump", f->bad, NULL);
	assert_int_equal(r.status, 1);
	EXPECT_U64(proc_count_lines(r.out), 10);
	assert_non_null(strstr(r.out, "#9 "));
	assert_non_null(strstr(r.err, "event 10 (kind 77): unknown kind"));
	assert_non_null(strstr(r.err, "(bad trace)"));
	proc_result_free(&r);

	/* Cut before END. */
	copy_file(f->trace, f->bad, 64 + (f->events - 1) * 64);
	run(&r, "trace", "dump", "--json", f->bad, NULL);
	assert_int_equal(r.status, 1);
	EXPECT_U64(proc_count_lines(r.out), f->events - 1);
	assert_non_null(strstr(r.err, "truncated after event"));
	/* The fault's line names the file, not only the summary. */
	{
		char want[512];

		snprintf(want, sizeof(want),
			 "kvcctl trace: %s: trace: truncated", f->bad);
		assert_non_null(strstr(r.err, want));
	}
	proc_result_free(&r);

	/* Cut mid-event: refused before any event. */
	copy_file(f->trace, f->bad, 64 + 10 * 64 + 30);
	run(&r, "trace", "dump", f->bad, NULL);
	assert_int_equal(r.status, 1);
	EXPECT_U64(strlen(r.out), 0);
	assert_non_null(strstr(r.err, "whole number"));
	proc_result_free(&r);

	/* Not a trace at all. */
	run(&r, "trace", "dump", KVCCTL, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "magic"));
	proc_result_free(&r);

	run(&r, "trace", "dump", "/nonexistent/x.kvct", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "/nonexistent/x.kvct"));
	proc_result_free(&r);
}

static void test_run_record_json(void **state)
{
	struct fixture *f = *state;
	const struct json *rec;
	struct result r;
	struct json *o;

	run(&r, "run", "--seqs", "2", "--prompt-len", "40", "--gen-len", "20",
	    "--layers", "2", "--err-samples", "0", "--json", "--record",
	    f->trace, NULL);
	assert_int_equal(r.status, 0);
	o = json_parse(r.out);
	if (!o || o->type != JSON_OBJECT)
		fail_msg("kvcctl run --json: not one JSON object:\n%s", r.out);
	/* The trace's path, its events and its size, and nothing else. */
	rec = json_member(o, "record", JSON_OBJECT);
	assert_int_equal(rec->n, 3);
	assert_string_equal(json_str(rec, "path"), f->trace);
	EXPECT_U64(json_u64(rec, "events"), f->events);
	EXPECT_U64(json_u64(rec, "bytes"), 64 + f->events * 64);
	json_free(o);
	proc_result_free(&r);

	/* A trace that cannot be created: the run fails before it starts. */
	run(&r, "run", "--seqs", "1", "--record", "/nonexistent/x.kvct", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "--record"));
	proc_result_free(&r);

	run(&r, "run", "--record", "", NULL);
	assert_int_equal(r.status, 2);
	proc_result_free(&r);
}

static void test_help(void **state)
{
	struct result r;

	(void)state;
	run(&r, "trace", "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "Usage: kvcctl trace dump FILE"));
	proc_result_free(&r);

	run(&r, "trace", "dump", "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "--kinds LIST"));
	assert_non_null(strstr(r.out, "--limit N"));
	proc_result_free(&r);

	run(&r, "run", "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "--record FILE"));
	proc_result_free(&r);

	run(&r, "trace", NULL);
	assert_int_equal(r.status, 2);
	proc_result_free(&r);

	run(&r, "trace", "show", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "unknown command 'show'"));
	proc_result_free(&r);

	run(&r, "trace", "dump", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "no trace file"));
	proc_result_free(&r);

	run(&r, "trace", "dump", "a", "b", NULL);
	assert_int_equal(r.status, 2);
	proc_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dump_text, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dump_json, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dump_filters, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dump_bad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_record_json, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_help, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
