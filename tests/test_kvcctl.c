/* Description: kvcctl stats end to end against running pool_demo processes: JSON and table, fragmentation and compaction fields (also from forged pages), the byte ladder, its peaks and --history, --pid, usage errors, refused and stale pages (version 2 ones too), --clean, --watch and its trend, pool_demo --evict and --compact-after; kvcctl run --swap: the same outputs under a budget, JSON, the table's swap line, usage errors */
// SPDX-License-Identifier: MIT
/*
 * Runs the built programs build/kvcctl and build/examples/pool_demo (paths
 * from the repository root, where `make test` runs) as a user would. Each
 * test gets a fresh KVC_STATS_DIR made with mkdtemp(), so /dev/shm is never
 * touched. JSON output is parsed by the strict parser in json.c, so the
 * tests read numbers instead of grepping text, and invalid JSON (a bad
 * escape, a raw control character, broken UTF-8) fails them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <kvc/kvc.h>

#include "json.h"
#include "proc.h"
#include "testutil.h"

/* The programs under test; -D can point them at other builds. */
#ifndef KVCCTL
#define KVCCTL "build/kvcctl"
#endif
#ifndef POOL_DEMO
#define POOL_DEMO "build/examples/pool_demo"
#endif
#define RUN_TIMEOUT_MS 20000
#define MAX_DEMOS 2

/* The pool object with this pid in an array, or NULL. */
static const struct json *json_pool(const struct json *arr, pid_t pid)
{
	size_t i;

	assert_int_equal(arr->type, JSON_ARRAY);
	for (i = 0; i < arr->n; i++)
		if (json_u64(arr->items[i], "pid") == (uint64_t)pid)
			return arr->items[i];
	return NULL;
}

/* ---- Running programs ---- */

/* Run @argv (NULL-terminated) to its end; capture stdout and stderr. */
static void run_argv(struct result *r, char *const argv[])
{
	proc_run_argv(r, argv, RUN_TIMEOUT_MS);
}

/* run(&r, PROGRAM, args..., NULL) */
static void run(struct result *r, const char *program, ...)
{
	char *const head[] = { (char *)program, NULL };
	va_list ap;

	va_start(ap, program);
	proc_vrun(r, RUN_TIMEOUT_MS, head, ap);
	va_end(ap);
}

/* kvcctl stats --json ARGS...: exit 0, valid JSON, an array. */
static struct json *stats_json(const char *arg1, const char *arg2)
{
	struct json *arr;
	struct result r;

	run(&r, KVCCTL, "stats", "--json", arg1, arg2, NULL);
	if (r.status != 0)
		fail_msg("kvcctl stats --json: exit %d: %s", r.status, r.err);
	if (json_parse_all(r.out, &arr, 1) != 1)
		fail_msg("kvcctl stats --json: invalid JSON:\n%s", r.out);
	assert_int_equal(arr->type, JSON_ARRAY);
	proc_result_free(&r);
	return arr;
}

/* The line of @text whose first word is @word, copied to @line. */
static bool find_line(const char *text, const char *word, char *line,
		      size_t len)
{
	const char *p = text, *end, *first;
	size_t wlen = strlen(word);

	while (*p) {
		end = strchr(p, '\n');
		if (!end)
			end = p + strlen(p);
		first = p;
		while (first < end && *first == ' ')
			first++;
		if ((size_t)(end - first) >= wlen &&
		    !strncmp(first, word, wlen) &&
		    (first + wlen == end || first[wlen] == ' ')) {
			snprintf(line, len, "%.*s", (int)(end - p), p);
			return true;
		}
		p = *end ? end + 1 : end;
	}
	return false;
}

/* Split @line in place on spaces. Return: the number of words. */
static int split_words(char *line, char **words, int max)
{
	int n = 0;
	char *save, *w;

	for (w = strtok_r(line, " ", &save); w && n < max;
	     w = strtok_r(NULL, " ", &save))
		words[n++] = w;
	return n;
}

/* ---- Fixtures: a fresh stats directory, and the demos started ---- */

struct demo {
	pid_t pid;
	int out_fd; /* kept open: the demo never writes to a closed pipe */
	char page[PATH_MAX];
	char out[8192]; /* what it printed so far */
	size_t out_len;
};

struct fixture {
	char root[64];
	char pages[96];
	struct demo demo[MAX_DEMOS];
	int nr_demos;
};

static int group_setup(void **state)
{
	if (access(KVCCTL, X_OK) || access(POOL_DEMO, X_OK)) {
		fprintf(stderr,
			"%s and %s must be built; run from the repository root after make\n",
			KVCCTL, POOL_DEMO);
		return -1;
	}
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->root, sizeof(f->root), "/tmp/kvcctl-test.XXXXXX");
	if (!mkdtemp(f->root))
		goto err;
	snprintf(f->pages, sizeof(f->pages), "%s/pages", f->root);
	if (mkdir(f->pages, 0700) || setenv("KVC_STATS_DIR", f->pages, 1))
		goto err;
	*state = f;
	return 0;
err:
	perror("test_kvcctl setup");
	free(f);
	return -1;
}

static void remove_dir_files(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
}

static int stop_demo(struct demo *d)
{
	int status = 0;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, SIGTERM);
	if (proc_wait_exit(d->pid, 5000, &status))
		status = -1;
	close(d->out_fd);
	d->pid = 0;
	return status < 0 ? status : proc_exit_code(status);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int i;

	for (i = 0; i < f->nr_demos; i++)
		if (f->demo[i].pid > 0)
			stop_demo(&f->demo[i]);
	remove_dir_files(f->pages);
	rmdir(f->pages);
	remove_dir_files(f->root);
	rmdir(f->root);
	unsetenv("KVC_STATS_DIR");
	free(f);
	return 0;
}

/*
 * Read the demo's stdout until it holds @text (or fail): by then the demo
 * has done what it prints before @text, and published it.
 */
static void demo_wait(struct demo *d, const char *text)
{
	struct pollfd pfd;
	int waited = 0;
	ssize_t got;

	while (!strstr(d->out, text)) {
		pfd.fd = d->out_fd;
		pfd.events = POLLIN;
		if (waited > RUN_TIMEOUT_MS)
			fail_msg("pool_demo did not print '%s':\n%s", text,
				 d->out);
		if (poll(&pfd, 1, 100) <= 0) {
			waited += 100;
			continue;
		}
		got = read(d->out_fd, d->out + d->out_len,
			   sizeof(d->out) - 1 - d->out_len);
		if (got <= 0)
			fail_msg("pool_demo ended before '%s':\n%s", text,
				 d->out);
		d->out_len += (size_t)got;
		d->out[d->out_len] = '\0';
	}
}

/*
 * Start pool_demo --backend host with @args (NULL-terminated, may be NULL)
 * then --hold 60, and wait until it says it is holding: by then every
 * alloc and free is done and published.
 */
static struct demo *start_demo_args(struct fixture *f, const char *const *args)
{
	struct demo *d = &f->demo[f->nr_demos];
	char *argv[24], *page, *nl;
	int fds[2], n = 0;

	assert_true(f->nr_demos < MAX_DEMOS);
	argv[n++] = POOL_DEMO;
	argv[n++] = "--backend";
	argv[n++] = "host";
	while (args && *args) {
		assert_true(n < 20);
		argv[n++] = (char *)*args++;
	}
	argv[n++] = "--hold";
	argv[n++] = "60";
	argv[n] = NULL;
	d->out[0] = '\0';
	d->out_len = 0;
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	d->pid = fork();
	assert_true(d->pid >= 0);
	if (d->pid == 0) {
		if (dup2(fds[1], STDOUT_FILENO) < 0)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	d->out_fd = fds[0];
	f->nr_demos++;

	demo_wait(d, "holding");
	page = strstr(d->out, "stats page: ");
	assert_non_null(page);
	page += strlen("stats page: ");
	nl = strchr(page, '\n');
	assert_non_null(nl);
	snprintf(d->page, sizeof(d->page), "%.*s", (int)(nl - page), page);
	assert_int_equal(strncmp(d->page, f->pages, strlen(f->pages)), 0);
	assert_int_equal(access(d->page, R_OK), 0);
	return d;
}

/* The same with the demo's --blocks and --block-bytes (NULL: default). */
static struct demo *start_demo(struct fixture *f, const char *blocks,
			       const char *block_bytes)
{
	const char *args[5];
	int n = 0;

	if (blocks) {
		args[n++] = "--blocks";
		args[n++] = blocks;
	}
	if (block_bytes) {
		args[n++] = "--block-bytes";
		args[n++] = block_bytes;
	}
	args[n] = NULL;
	return start_demo_args(f, args);
}

/*
 * Fork a child that creates a pool named @name, allocates @blocks blocks
 * and dies without destroying it: its stats page stays behind, stale.
 */
static pid_t make_stale_pool(const char *name, uint32_t blocks)
{
	int status;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct kvc_pool_params params;
		struct kvc_pool *pool;
		uint32_t ids[64];

		kvc_pool_params_init(&params);
		params.backend_kind = KVC_BACKEND_HOST;
		params.block_bytes = 16384;
		params.capacity_blocks = 128;
		params.name = name;
		if (blocks > 64 || kvc_pool_create(&params, &pool))
			_exit(1);
		if (blocks && kvc_pool_alloc(pool, blocks, ids))
			_exit(2);
		_exit(0);
	}
	assert_int_equal(proc_wait_exit(pid, RUN_TIMEOUT_MS, &status), 0);
	assert_int_equal(proc_exit_code(status), 0);
	return pid;
}

/* A pid that no process has any more. */
static pid_t dead_pid(void)
{
	int status;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(proc_wait_exit(pid, RUN_TIMEOUT_MS, &status), 0);
	return pid;
}

static bool file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* ---- The tests ---- */

/* Every member of struct kvc_pool_stats, in the struct's order. */
static const char *const required_fields[] = {
	"block_bytes",
	"chunk_bytes",
	"blocks_per_chunk",
	"blocks_total",
	"blocks_live",
	"blocks_free",
	"blocks_free_mapped",
	"chunks_total",
	"chunks_mapped",
	"chunks_empty",
	"chunks_partial",
	"chunks_full",
	"bytes_reserved",
	"bytes_mapped",
	"bytes_live",
	"blocks_live_hwm",
	"bytes_mapped_hwm",
	"alloc_calls",
	"free_calls",
	"alloc_failures",
	"unmap_failures",
	"backend_create",
	"backend_map",
	"backend_set_access",
	"backend_unmap",
	"backend_release",
	"backend_copy",
	"free_blocks_in_partial_chunks",
	"free_chunks_mapped",
	"chunks_reclaimable",
	"compactions",
	"blocks_moved",
	"bytes_copied",
	"chunks_vacated",
	"chunks_released",
	"compact_failures",
	"fences_pending",
	"chunks_unmap_deferred",
	"map_ns",
	"map_ns_max",
	"unmap_ns",
	"unmap_ns_max",
	"placement",
};

/* The doubles of struct kvc_pool_stats, after the counters. */
static const char *const real_fields[] = {
	"frag_ratio",
	"unusable_index",
	"fragmentation_index",
	"compact_score",
};

#define NR_REQUIRED (sizeof(required_fields) / sizeof(required_fields[0]))
#define NR_REALS (sizeof(real_fields) / sizeof(real_fields[0]))

_Static_assert((NR_REQUIRED + NR_REALS) * 8 == sizeof(struct kvc_pool_stats),
	       "the test lists every member of struct kvc_pool_stats");

/*
 * Every member of struct kvc_pool_stats is there, in the struct's order,
 * with a value of its kind; the indices are in their ranges.
 */
static void check_pool_fields(const struct json *pool)
{
	size_t i, at, last = 0;
	double v;

	for (i = 0; i < NR_REQUIRED + NR_REALS; i++) {
		const char *key = i < NR_REQUIRED ?
					  required_fields[i] :
					  real_fields[i - NR_REQUIRED];

		at = json_key_index(pool, key);
		if (i && at <= last)
			fail_msg("\"%s\" comes before \"%s\"", key,
				 i <= NR_REQUIRED ?
					 required_fields[i - 1] :
					 real_fields[i - 1 - NR_REQUIRED]);
		last = at;
		if (i < NR_REQUIRED)
			(void)json_u64(pool, key);
	}
	/* +infinity (chunks mapped, nothing live) is null. */
	v = json_real(pool, "frag_ratio", true);
	assert_true(isnan(v) || v >= 0);
	v = json_real(pool, "unusable_index", false);
	assert_true(v >= 0 && v <= 1);
	v = json_real(pool, "fragmentation_index", false);
	assert_true(v == -1 || (v >= 0 && v <= 1));
	v = json_real(pool, "compact_score", false);
	assert_true(v >= 0 && v <= 1);
}

/* ceil(@a / @b) */
static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

/* The relations every pool's counters must satisfy. */
static void check_pool_consistent(const struct json *pool)
{
	const struct json *hist = json_get(pool, "fill_hist");
	uint64_t sum = 0, bpc = json_u64(pool, "blocks_per_chunk");
	uint64_t live = json_u64(pool, "blocks_live");
	uint64_t mapped = json_u64(pool, "chunks_mapped");
	uint64_t empty = json_u64(pool, "chunks_empty");
	size_t i;

	check_pool_fields(pool);
	assert_non_null(hist);
	assert_int_equal(hist->type, JSON_ARRAY);
	assert_int_equal(hist->n, KVC_FILL_BUCKETS);
	for (i = 0; i < hist->n; i++) {
		assert_int_equal(hist->items[i]->type, JSON_NUMBER);
		sum += strtoull(hist->items[i]->text, NULL, 10);
	}
	assert_int_equal(sum, mapped);
	assert_int_equal(empty + json_u64(pool, "chunks_partial") +
				 json_u64(pool, "chunks_full"),
			 mapped);
	assert_int_equal(live + json_u64(pool, "blocks_free"),
			 json_u64(pool, "blocks_total"));
	assert_int_equal(bpc * json_u64(pool, "block_bytes"),
			 json_u64(pool, "chunk_bytes"));
	assert_int_equal(json_u64(pool, "blocks_total") % bpc, 0);
	assert_int_equal(json_u64(pool, "bytes_live"),
			 live * json_u64(pool, "block_bytes"));
	assert_int_equal(json_u64(pool, "bytes_mapped"),
			 mapped * json_u64(pool, "chunk_bytes"));
	assert_true(json_u64(pool, "blocks_live_hwm") >= live);
	assert_true(json_u64(pool, "bytes_mapped_hwm") >=
		    json_u64(pool, "bytes_mapped"));

	/* Free mapped blocks sit in partly used chunks or in empty ones. */
	assert_int_equal(json_u64(pool, "free_chunks_mapped"), empty);
	assert_int_equal(json_u64(pool, "free_blocks_in_partial_chunks") +
				 empty * bpc,
			 json_u64(pool, "blocks_free_mapped"));
	assert_int_equal(json_u64(pool, "chunks_reclaimable"),
			 mapped - empty - div_up(live, bpc));
	/* An empty chunk mapped: a whole-chunk request fits, index -1. */
	if (empty)
		assert_string_equal(json_text(pool, "fragmentation_index"),
				    "-1.000");
	if (live)
		assert_true(fabs(json_real(pool, "frag_ratio", false) -
				 ((double)mapped * (double)bpc / (double)live -
				  1)) <= 0.0005);
	else if (mapped)
		assert_string_equal(json_text(pool, "frag_ratio"), "null");
	/* Every block moved was copied once (a failed batch may differ). */
	if (!json_u64(pool, "compact_failures"))
		assert_int_equal(json_u64(pool, "bytes_copied"),
				 json_u64(pool, "blocks_moved") *
					 json_u64(pool, "block_bytes"));
}

static void test_json_shows_demo_pool(void **state)
{
	struct fixture *f = *state;
	const struct json *pool;
	struct demo *d;
	struct json *arr;
	char pid[16];

	d = start_demo(f, NULL, NULL);
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	arr = stats_json("--pid", pid);
	assert_int_equal(arr->n, 1);
	pool = json_pool(arr, d->pid);
	assert_non_null(pool);
	assert_string_equal(json_str(pool, "name"), "pool_demo");
	assert_string_equal(json_str(pool, "backend"), "host");
	assert_string_equal(json_str(pool, "path"), d->page);
	assert_true(json_bool(pool, "alive"));
	assert_non_null(json_get(pool, "device"));
	/* The demo's defaults: 1024 blocks of 16 KiB, every other one freed. */
	assert_int_equal(json_u64(pool, "block_bytes"), 16384);
	assert_int_equal(json_u64(pool, "blocks_total"), 4096);
	assert_int_equal(json_u64(pool, "blocks_live"), 512);
	assert_int_equal(json_u64(pool, "blocks_free"), 3584);
	assert_int_equal(json_u64(pool, "blocks_live_hwm"), 1024);
	assert_int_equal(json_u64(pool, "alloc_calls"), 1024 / 64);
	assert_int_equal(json_u64(pool, "free_calls"), 1);
	assert_int_equal(json_u64(pool, "alloc_failures"), 0);
	assert_true(json_u64(pool, "backend_map") >=
		    json_u64(pool, "chunks_mapped"));
	/*
	 * Eight chunks of 128 blocks, 64 live in each: half of the mapped
	 * memory is free but stuck in partly used chunks; compaction would
	 * free four chunks. Index: 1 - (1 + 512 / 128) / 8 = 0.375.
	 */
	assert_int_equal(json_u64(pool, "free_blocks_in_partial_chunks"), 512);
	assert_int_equal(json_u64(pool, "free_chunks_mapped"), 0);
	assert_int_equal(json_u64(pool, "chunks_reclaimable"), 4);
	assert_string_equal(json_text(pool, "frag_ratio"), "1.000");
	assert_string_equal(json_text(pool, "unusable_index"), "1.000");
	assert_string_equal(json_text(pool, "fragmentation_index"), "0.375");
	assert_string_equal(json_text(pool, "compact_score"), "0.500");
	assert_string_equal(json_text(pool, "mapped_live_ratio"), "2.000");
	assert_int_equal(json_u64(pool, "compactions"), 0);
	assert_int_equal(json_u64(pool, "blocks_moved"), 0);
	assert_int_equal(json_u64(pool, "chunks_released"), 0);
	check_pool_consistent(pool);
	json_free(arr);

	/* SIGTERM ends the hold; the demo destroys its pool and its page. */
	assert_int_equal(stop_demo(d), 0);
	assert_false(file_exists(d->page));
}

static void test_json_demo_flags(void **state)
{
	struct fixture *f = *state;
	const struct json *pool;
	struct demo *d;
	struct json *arr;
	char pid[16];

	d = start_demo(f, "300", "65536");
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	arr = stats_json("--pid", pid);
	assert_int_equal(arr->n, 1);
	pool = json_pool(arr, d->pid);
	assert_non_null(pool);
	assert_int_equal(json_u64(pool, "block_bytes"), 65536);
	assert_int_equal(json_u64(pool, "blocks_live"), 150);
	assert_int_equal(json_u64(pool, "blocks_live_hwm"), 300);
	/* Capacity 4 * 300, rounded up to whole chunks. */
	assert_true(json_u64(pool, "blocks_total") >= 1200);
	assert_true(json_u64(pool, "blocks_total") <
		    1200 + json_u64(pool, "blocks_per_chunk"));
	check_pool_consistent(pool);
	json_free(arr);
}

static void test_table_output(void **state)
{
	struct fixture *f = *state;
	char line[1024], *w[64], pid[16];
	const char *section;
	const struct json *pool, *hist;
	struct result r;
	struct demo *d;
	struct json *arr;
	int n, b;

	d = start_demo(f, NULL, NULL);
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	assert_non_null(strstr(r.out, "blocks"));
	assert_non_null(strstr(r.out, "map/live"));

	/* pid name backend state block chunk live free total mapped ... */
	assert_true(find_line(r.out, pid, line, sizeof(line)));
	n = split_words(line, w, 64);
	assert_int_equal(n, 27);
	assert_string_equal(w[1], "pool_demo");
	assert_string_equal(w[2], "host");
	assert_string_equal(w[3], "live");
	assert_string_equal(w[4], "16.0");
	assert_string_equal(w[5], "KiB");
	assert_string_equal(w[6], "2.0");
	assert_string_equal(w[7], "MiB");
	assert_string_equal(w[8], "512");
	assert_string_equal(w[9], "3584");
	assert_string_equal(w[10], "4096");
	/* bytes mapped / live: 8 half-full chunks of 2 MiB, 8 MiB live */
	assert_string_equal(w[11], "8");
	assert_string_equal(w[15], "16.0");
	assert_string_equal(w[16], "MiB");
	assert_string_equal(w[17], "8.0");
	assert_string_equal(w[18], "MiB");
	assert_string_equal(w[19], "2.00");

	/* The histogram: same numbers as the JSON fill_hist. */
	arr = stats_json("--pid", pid);
	pool = json_pool(arr, d->pid);
	assert_non_null(pool);
	hist = json_get(pool, "fill_hist");
	assert_non_null(hist);
	assert_non_null(strstr(r.out, "chunk fill"));
	assert_true(find_line(strstr(r.out, "chunk fill"), "pid", line,
			      sizeof(line)));
	n = split_words(line, w, 64);
	assert_int_equal(n, 2 + KVC_FILL_BUCKETS);
	assert_string_equal(w[2], "empty");
	assert_string_equal(w[2 + KVC_FILL_BUCKETS - 1], "full");
	assert_true(find_line(strstr(r.out, "chunk fill"), pid, line,
			      sizeof(line)));
	n = split_words(line, w, 64);
	assert_int_equal(n, 2 + KVC_FILL_BUCKETS);
	for (b = 0; b < KVC_FILL_BUCKETS; b++)
		assert_string_equal(w[2 + b], hist->items[b]->text);

	/* Fragmentation and compaction, between the two. */
	section = strstr(r.out, "\nfragmentation and compaction");
	assert_non_null(section);
	assert_true(section < strstr(r.out, "chunk fill"));
	assert_true(find_line(section, "pid", line, sizeof(line)));
	n = split_words(line, w, 64);
	assert_int_equal(n, 17);
	assert_string_equal(w[2], "ratio");
	assert_string_equal(w[4], "index");
	assert_string_equal(w[11], "copied");
	assert_string_equal(w[16], "deferred");
	/* pid name ratio unusable index in-partial chunks chunks score ... */
	assert_true(find_line(section, pid, line, sizeof(line)));
	n = split_words(line, w, 64);
	assert_int_equal(n, 18);
	assert_string_equal(w[1], "pool_demo");
	assert_string_equal(w[2], json_text(pool, "frag_ratio"));
	assert_string_equal(w[3], json_text(pool, "unusable_index"));
	assert_string_equal(w[4], json_text(pool, "fragmentation_index"));
	assert_string_equal(w[5], "512");
	assert_string_equal(w[6], "0");
	assert_string_equal(w[7], "4");
	assert_string_equal(w[8], "0.500");
	/* runs moved copied vacated failed released fences deferred */
	assert_string_equal(w[9], "0");
	assert_string_equal(w[10], "0");
	assert_string_equal(w[11], "0");
	assert_string_equal(w[12], "B");
	for (b = 13; b < 18; b++)
		assert_string_equal(w[b], "0");
	json_free(arr);
	proc_result_free(&r);
}

static void test_pid_filter(void **state)
{
	struct fixture *f = *state;
	char a[16], b[16], dead[16], line[1024];
	struct demo *da, *db;
	struct json *arr;
	struct result r;
	pid_t gone;

	da = start_demo(f, NULL, NULL);
	db = start_demo(f, "100", NULL);
	snprintf(a, sizeof(a), "%d", (int)da->pid);
	snprintf(b, sizeof(b), "%d", (int)db->pid);

	arr = stats_json(NULL, NULL);
	assert_int_equal(arr->n, 2);
	assert_non_null(json_pool(arr, da->pid));
	assert_non_null(json_pool(arr, db->pid));
	json_free(arr);

	arr = stats_json("--pid", a);
	assert_int_equal(arr->n, 1);
	assert_non_null(json_pool(arr, da->pid));
	json_free(arr);

	arr = stats_json("--pid", b);
	assert_int_equal(arr->n, 1);
	assert_int_equal(json_u64(arr->items[0], "blocks_live"), 50);
	json_free(arr);

	run(&r, KVCCTL, "stats", "-p", b, NULL);
	assert_int_equal(r.status, 0);
	assert_true(find_line(r.out, b, line, sizeof(line)));
	assert_false(find_line(r.out, a, line, sizeof(line)));
	proc_result_free(&r);

	/* A process with no pool: nothing to show is not an error. */
	gone = dead_pid();
	snprintf(dead, sizeof(dead), "%d", (int)gone);
	run(&r, KVCCTL, "stats", "--pid", dead, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "no kvc pools"));
	proc_result_free(&r);
	arr = stats_json("--pid", dead);
	assert_int_equal(arr->n, 0);
	json_free(arr);
}

static void test_no_pools_and_missing_dir(void **state)
{
	struct fixture *f = *state;
	char missing[PATH_MAX + 16];
	struct json *arr;
	struct result r;

	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "no kvc pools"));
	assert_string_equal(r.err, "");
	proc_result_free(&r);
	arr = stats_json(NULL, NULL);
	assert_int_equal(arr->n, 0);
	json_free(arr);

	snprintf(missing, sizeof(missing), "%s/missing", f->root);
	run(&r, KVCCTL, "stats", "--dir", missing, NULL);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, missing));
	assert_int_equal(proc_count_lines(r.err), 1);
	proc_result_free(&r);

	/* The same through the environment, with JSON asked for. */
	assert_int_equal(setenv("KVC_STATS_DIR", missing, 1), 0);
	run(&r, KVCCTL, "stats", "--json", NULL);
	assert_int_equal(setenv("KVC_STATS_DIR", f->pages, 1), 0);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, missing));
	proc_result_free(&r);
}

struct usage_case {
	const char *args[4];
	const char *says; /* the flag or word the error must name */
};

static void test_usage_errors(void **state)
{
	static const struct usage_case cases[] = {
		{ { "stats", "--pid", "abc" }, "--pid" },
		{ { "stats", "--pid", "0" }, "--pid" },
		{ { "stats", "--pid", "12x" }, "--pid" },
		{ { "stats", "--pid" }, "--pid" },
		{ { "stats", "--watch", "-1" }, "--watch" },
		{ { "stats", "--watch", "0" }, "--watch" },
		{ { "stats", "--watch", "soon" }, "--watch" },
		{ { "stats", "--watch", "1", "--count" }, "--count" },
		{ { "stats", "--count", "3" }, "--count" },
		{ { "stats", "--bogus" }, "--bogus" },
		{ { "stats", "-x" }, "-x" },
		{ { "stats", "--json=yes" }, "--json" },
		{ { "stats", "extra" }, "extra" },
		{ { "stats", "--dir", "" }, "--dir" },
		{ { "stats", "--history", "0" }, "--history" },
		{ { "stats", "--history=0" }, "--history" },
		{ { "stats", "--history=soon" }, "--history" },
		{ { "stats", "--history", "12x" }, "--history" },
		{ { "stats", "--history", "soon" }, "soon" },
		{ { "frobnicate" }, "frobnicate" },
		{ { "--frob" }, "--frob" },
		{ { "help", "nosuch" }, "nosuch" },
	};
	char *argv[8], *nl;
	struct result r;
	size_t i;
	int n;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		argv[0] = KVCCTL;
		for (n = 0; n < 4 && cases[i].args[n]; n++)
			argv[n + 1] = (char *)cases[i].args[n];
		argv[n + 1] = NULL;
		run_argv(&r, argv);
		if (r.status != 2)
			fail_msg("case %zu (%s): exit %d, expected 2", i,
				 cases[i].says, r.status);
		assert_string_equal(r.out, "");
		/* One line naming the flag, one line with the usage hint. */
		assert_int_equal(proc_count_lines(r.err), 2);
		nl = strchr(r.err, '\n');
		assert_non_null(nl);
		*nl = '\0';
		if (!strstr(r.err, cases[i].says))
			fail_msg("case %zu: '%s' does not name %s", i, r.err,
				 cases[i].says);
		assert_non_null(strstr(nl + 1, "--help"));
		proc_result_free(&r);
	}

	/* No command at all: the usage, on stderr. */
	run(&r, KVCCTL, NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "Usage"));
	proc_result_free(&r);
}

static void test_help_and_version(void **state)
{
	struct result r;
	char want[64];

	run(&r, KVCCTL, "--version", NULL);
	assert_int_equal(r.status, 0);
	snprintf(want, sizeof(want), "kvcctl %s\n", KVC_VERSION);
	assert_string_equal(r.out, want);
	proc_result_free(&r);

	run(&r, KVCCTL, "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "stats"));
	proc_result_free(&r);

	run(&r, KVCCTL, "help", "stats", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "--watch"));
	assert_non_null(strstr(r.out, "--clean"));
	proc_result_free(&r);

	run(&r, KVCCTL, "stats", "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "--pid"));
	assert_string_equal(r.err, "");
	proc_result_free(&r);
}

/* Output that cannot be written is a failure, not a silent success. */
static void test_write_error(void **state)
{
	char *argv[] = { KVCCTL, "stats", NULL };
	FILE *full = fopen("/dev/full", "w"), *err = tmpfile();
	int status;
	char *text;

	if (!full)
		skip();
	assert_non_null(err);
	assert_int_equal(proc_wait_exit(proc_spawn(argv, full, err),
					RUN_TIMEOUT_MS, &status),
			 0);
	assert_int_equal(proc_exit_code(status), 1);
	text = proc_slurp(err);
	assert_non_null(strstr(text, "error writing output"));
	free(text);
	fclose(full);
	fclose(err);
	(void)state;
}

static void write_file(const char *path, const void *data, size_t len,
		       mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
	static char buf[2 * KVC_STATS_FILE_BYTES];
	ssize_t len;
	int fd;

	fd = open(from, O_RDONLY);
	assert_true(fd >= 0);
	len = read(fd, buf, sizeof(buf));
	assert_true(len > 0);
	close(fd);
	write_file(to, buf, (size_t)len, mode);
}

static void test_refused_pages(void **state)
{
	struct fixture *f = *state;
	char bad[4][PATH_MAX + 32], garbage[100], line[1024], pid[16];
	static char zeros[KVC_STATS_FILE_BYTES];
	const struct json *pool;
	struct json *arr;
	struct result r;
	struct demo *d;
	size_t i;

	d = start_demo(f, NULL, NULL);
	for (i = 0; i < sizeof(garbage); i++)
		garbage[i] = (char)(i * 37 + 11);
	/* Too short; right size but no magic; another pid's page inside. */
	for (i = 0; i < 3; i++)
		snprintf(bad[i], sizeof(bad[i]), "%s/kvc.%d.%zu", f->pages,
			 (int)getpid(), i);
	/* A true copy of the demo's page, but readable by others. */
	snprintf(bad[3], sizeof(bad[3]), "%s/kvc.%d.7", f->pages, (int)d->pid);
	write_file(bad[0], garbage, sizeof(garbage), 0600);
	write_file(bad[1], zeros, sizeof(zeros), 0600);
	copy_file(d->page, bad[2], 0600);
	copy_file(d->page, bad[3], 0644);

	arr = stats_json(NULL, NULL);
	assert_int_equal(arr->n, 1);
	pool = json_pool(arr, d->pid);
	assert_non_null(pool);
	assert_string_equal(json_str(pool, "path"), d->page);
	json_free(arr);

	run(&r, KVCCTL, "stats", "--json", NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(proc_count_lines(r.err), 4);
	for (i = 0; i < 4; i++)
		if (!strstr(r.err, bad[i]))
			fail_msg("%s not reported:\n%s", bad[i], r.err);
	assert_non_null(strstr(r.err, "refused"));
	assert_non_null(strstr(r.err, "mode 0644"));
	proc_result_free(&r);

	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "4 pages refused"));
	assert_null(strstr(r.out, bad[0]));
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	assert_false(find_line(r.out, pid, line, sizeof(line)));
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	assert_true(find_line(r.out, pid, line, sizeof(line)));
	proc_result_free(&r);

	/* --clean leaves refused pages alone: it trusts none of them. */
	run(&r, KVCCTL, "stats", "--clean", NULL);
	assert_int_equal(r.status, 0);
	for (i = 0; i < 4; i++)
		assert_true(file_exists(bad[i]));
	proc_result_free(&r);
}

static void test_stale_page_and_clean(void **state)
{
	static const char name[] = "we\"ird\\ na\tme\x01 \xc3\xa9";
	struct fixture *f = *state;
	char page[PATH_MAX + 32], pid[16], line[1024], *w[64];
	const struct json *pool;
	struct json *arr;
	struct result r;
	struct demo *d;
	const char *p;
	pid_t gone;

	d = start_demo(f, NULL, NULL);
	gone = make_stale_pool(name, 3);
	snprintf(page, sizeof(page), "%s/kvc.%d.0", f->pages, (int)gone);
	snprintf(pid, sizeof(pid), "%d", (int)gone);
	assert_true(file_exists(page));

	arr = stats_json(NULL, NULL);
	assert_int_equal(arr->n, 2);
	pool = json_pool(arr, gone);
	assert_non_null(pool);
	assert_false(json_bool(pool, "alive"));
	assert_string_equal(json_str(pool, "name"), name);
	assert_string_equal(json_str(pool, "path"), page);
	assert_int_equal(json_u64(pool, "blocks_live"), 3);
	check_pool_consistent(pool);
	assert_true(json_bool(json_pool(arr, d->pid), "alive"));
	json_free(arr);

	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	/* The name's tab and \x01 must not reach the terminal. */
	for (p = r.out; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\n')
			fail_msg("control character %#x in the table",
				 (unsigned char)*p);
	assert_true(find_line(r.out, pid, line, sizeof(line)));
	assert_non_null(strstr(line, " stale "));
	assert_non_null(strstr(r.out, "--clean"));
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	assert_true(find_line(r.out, pid, line, sizeof(line)));
	assert_int_equal(split_words(line, w, 64) > 4, 1);
	assert_string_equal(w[3], "live");
	proc_result_free(&r);

	run(&r, KVCCTL, "stats", "--clean", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "removed stale page"));
	assert_non_null(strstr(r.out, page));
	assert_false(file_exists(page));
	assert_true(file_exists(d->page));
	snprintf(pid, sizeof(pid), "%d", (int)gone);
	assert_false(find_line(r.out, pid, line, sizeof(line)));
	proc_result_free(&r);

	/* Nothing stale left: nothing removed, the live pool still shown. */
	run(&r, KVCCTL, "stats", "--clean", "--json", NULL);
	assert_int_equal(r.status, 0);
	assert_null(strstr(r.err, "removed"));
	assert_int_equal(json_parse_all(r.out, &arr, 1), 1);
	assert_int_equal(arr->n, 1);
	assert_non_null(json_pool(arr, d->pid));
	json_free(arr);
	proc_result_free(&r);
}

static void test_json_escapes_bad_utf8(void **state)
{
	struct fixture *f = *state;
	const struct json *pool;
	struct json *arr;
	struct result r;
	pid_t gone;

	gone = make_stale_pool("bad\xff\xc3name", 1);
	arr = stats_json(NULL, NULL);
	pool = json_pool(arr, gone);
	assert_non_null(pool);
	/* Each byte that is not UTF-8 becomes U+FFFD. */
	assert_string_equal(json_str(pool, "name"),
			    "bad\xef\xbf\xbd\xef\xbf\xbdname");
	json_free(arr);

	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "bad??name"));
	proc_result_free(&r);

	run(&r, KVCCTL, "stats", "--clean", "--json", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "removed stale page"));
	assert_string_equal(r.out, "[]\n");
	proc_result_free(&r);
	(void)f;
}

static void test_watch_count(void **state)
{
	struct fixture *f = *state;
	struct timespec t0, t1;
	struct json *arrays[4];
	struct result r;
	struct demo *d;
	double secs;
	int n, i;

	d = start_demo(f, NULL, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	run(&r, KVCCTL, "stats", "--json", "--watch", "0.1", "--count", "3",
	    NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(r.status, 0);
	n = json_parse_all(r.out, arrays, 4);
	assert_int_equal(n, 3);
	for (i = 0; i < n; i++) {
		assert_int_equal(arrays[i]->n, 1);
		assert_non_null(json_pool(arrays[i], d->pid));
		json_free(arrays[i]);
	}
	/* Two waits of 0.1 s between three refreshes. */
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(secs >= 0.19);
	proc_result_free(&r);

	/* Not a terminal: no screen clearing, one heading per refresh. */
	run(&r, KVCCTL, "stats", "--watch", "0.05", "--count", "2", NULL);
	assert_int_equal(r.status, 0);
	assert_null(strstr(r.out, "\033["));
	assert_non_null(strstr(r.out, "every 0.05s"));
	assert_non_null(
		strstr(strstr(r.out, "every 0.05s") + 1, "every 0.05s"));
	assert_non_null(strstr(r.out, "pool_demo"));
	proc_result_free(&r);
}

static void test_watch_interrupted(void **state)
{
	char *argv[] = { KVCCTL, "stats", "--watch", "100", NULL };
	struct timespec t0, t1;
	int status, sig, waited;
	FILE *out, *err;
	struct stat st;
	char *text;
	pid_t pid;

	for (sig = 0; sig < 2; sig++) {
		out = tmpfile();
		err = tmpfile();
		assert_non_null(out);
		assert_non_null(err);
		pid = proc_spawn(argv, out, err);
		/* The first refresh is out: the handlers are in place. */
		for (waited = 0; waited < RUN_TIMEOUT_MS; waited += 10) {
			assert_int_equal(fstat(fileno(out), &st), 0);
			if (st.st_size > 0)
				break;
			usleep(10 * 1000);
		}
		assert_true(st.st_size > 0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(kill(pid, sig ? SIGTERM : SIGINT), 0);
		/* Ends at once, cleanly, although the interval is 100 s. */
		assert_int_equal(proc_wait_exit(pid, 5000, &status), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		assert_true(t1.tv_sec - t0.tv_sec < 3);
		text = proc_slurp(out);
		assert_non_null(strstr(text, "no kvc pools"));
		free(text);
		fclose(out);
		fclose(err);
	}
	(void)state;
}

static void test_demo_errors(void **state)
{
	static const struct usage_case cases[] = {
		{ { "--evict", "1.5" }, "--evict" },
		{ { "--evict", "-0.1" }, "--evict" },
		{ { "--evict", "nan" }, "--evict" },
		{ { "--evict", "1e-1" }, "--evict" },
		{ { "--evict", "" }, "--evict" },
		{ { "--evict", "0.5", "--seed", "x" }, "--seed" },
		{ { "--evict", "0.5", "--seed", "-1" }, "--seed" },
		{ { "--seed", "3" }, "--seed" },
		{ { "--compact-after", "-1" }, "--compact-after" },
		{ { "--compact-after", "soon" }, "--compact-after" },
		{ { "--compact-after", "inf" }, "--compact-after" },
		{ { "--hold", "1e3" }, "--hold" },
		{ { "--compact-after" }, "compact-after" },
	};
	struct fixture *f = *state;
	char *argv[8];
	struct result r;
	struct dirent *de;
	size_t i;
	DIR *dir;
	int n;

	/* 3000 does not divide the chunk: the library says why. */
	run(&r, POOL_DEMO, "--backend", "host", "--block-bytes", "3000", NULL);
	assert_int_equal(r.status, 1);
	assert_true(strlen(r.err) > 12);
	proc_result_free(&r);

	run(&r, POOL_DEMO, "--backend", "tpu", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--backend"));
	proc_result_free(&r);

	run(&r, POOL_DEMO, "--blocks", "0", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--blocks"));
	proc_result_free(&r);

	/* Bad values: exit 2 before any pool, the flag named. */
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		argv[0] = POOL_DEMO;
		for (n = 0; n < 4 && cases[i].args[n]; n++)
			argv[n + 1] = (char *)cases[i].args[n];
		argv[n + 1] = NULL;
		run_argv(&r, argv);
		if (r.status != 2 || !strstr(r.err, cases[i].says))
			fail_msg("pool_demo %s %s: exit %d, expected 2 and a "
				 "message naming %s:\n%s",
				 cases[i].args[0],
				 cases[i].args[1] ? cases[i].args[1] : "",
				 r.status, cases[i].says, r.err);
		assert_string_equal(r.out, "");
		proc_result_free(&r);
	}

	run(&r, POOL_DEMO, "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "--evict FRACTION"));
	assert_non_null(strstr(r.out, "--seed N"));
	assert_non_null(strstr(r.out, "--compact-after SECONDS"));
	proc_result_free(&r);

	/* Without --hold the demo runs, prints and cleans up after itself. */
	run(&r, POOL_DEMO, "--backend", "host", "--blocks", "10", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "5 live"));
	proc_result_free(&r);

	dir = opendir(f->pages);
	assert_non_null(dir);
	while ((de = readdir(dir)))
		if (!strncmp(de->d_name, "kvc.", 4))
			fail_msg("page %s left behind", de->d_name);
	closedir(dir);
}

/* ---- The byte ladder ---- */

/*
 * A stale pool named @name that took @samples ladder samples at steps
 * 10, 11, ...: 20 blocks held, live growing by 1000 bytes a step.
 */
static pid_t make_sampled_pool(const char *name, uint32_t samples)
{
	int status;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct kvc_pool_params params;
		struct kvc_pool_usage u = { 0 };
		struct kvc_pool *pool;
		uint32_t ids[20], i;

		kvc_pool_params_init(&params);
		params.backend_kind = KVC_BACKEND_HOST;
		params.block_bytes = 16384;
		params.capacity_blocks = 128;
		params.name = name;
		if (kvc_pool_create(&params, &pool) ||
		    kvc_pool_alloc(pool, 20, ids))
			_exit(1);
		for (i = 0; i < samples; i++) {
			u.live_bytes = 1000ull * (i % 300 + 1);
			u.logical_bytes = 2 * u.live_bytes;
			u.reservation_bytes = 500;
			u.seqs = 2;
			if (kvc_pool_sample(pool, &u, 10 + i))
				_exit(2);
		}
		_exit(0);
	}
	assert_int_equal(proc_wait_exit(pid, RUN_TIMEOUT_MS, &status), 0);
	assert_int_equal(proc_exit_code(status), 0);
	return pid;
}

/* "ladder" and "peaks" hold every member, and the ladder adds up. */
static void test_json_ladder(void **state)
{
	static const char *const ladder_keys[] = {
		"t_ns",	       "step",		"logical",	"live",
		"held",	       "mapped",	"parked",	"reservation",
		"tail",	       "free_mapped",	"seqs",		"preemptions",
		"held_blocks", "mapped_chunks", "floor_chunks",
	};
	static const char *const peak_keys[] = {
		"samples",
		"live_peak",
		"live_peak_step",
		"live_peak_ns",
		"mapped_at_live_peak",
		"mapped_peak",
		"mapped_peak_step",
		"mapped_peak_ns",
		"live_at_mapped_peak",
	};
	static const char *const peak_reals[] = {
		"gmlake_util",
		"jw2",
		"jw3",
		"jw4",
		"weight",
		"mean_logical",
		"mean_live",
		"mean_held",
		"mean_mapped",
		"mean_parked",
		"mean_reservation",
		"mean_tail",
		"mean_free_mapped",
		"mean_seqs",
		"mean_util",
	};
	const struct json *pool, *ladder, *peaks, *arr_o;
	const char *order_keys[] = { "unusable", "extfrag", "free_runs" };
	char pid[16];
	struct json *arr;
	uint64_t orders;
	pid_t gone;
	size_t i;

	(void)state;
	gone = make_sampled_pool("sampled", 5);
	snprintf(pid, sizeof(pid), "%d", (int)gone);
	arr = stats_json("--pid", pid);
	pool = json_pool(arr, gone);
	assert_non_null(pool);
	assert_null(json_get(pool, "history"));
	EXPECT_U64(json_u64(pool, "samples"), 5);
	ladder = json_member(pool, "ladder", JSON_OBJECT);
	for (i = 0; i < sizeof(ladder_keys) / sizeof(ladder_keys[0]); i++)
		(void)json_u64(ladder, ladder_keys[i]);
	EXPECT_U64(json_u64(ladder, "step"), 14);
	EXPECT_U64(json_u64(ladder, "live"), 5000);
	EXPECT_U64(json_u64(ladder, "logical"), 10000);
	EXPECT_U64(json_u64(ladder, "reservation"), 500);
	EXPECT_U64(json_u64(ladder, "held"), 20 * 16384);
	EXPECT_U64(json_u64(ladder, "held_blocks"), 20);
	EXPECT_U64(json_u64(ladder, "seqs"), 2);
	EXPECT_U64(json_u64(ladder, "tail"), 20 * 16384 - 5500);
	EXPECT_U64(json_u64(ladder, "mapped"),
		   json_u64(ladder, "live") + json_u64(ladder, "reservation") +
			   json_u64(ladder, "tail") +
			   json_u64(ladder, "free_mapped") +
			   json_u64(ladder, "parked"));
	EXPECT_U64(json_u64(ladder, "mapped"), json_u64(pool, "bytes_mapped"));
	(void)json_real(ladder, "pack_ratio", false);
	assert_true(json_real(ladder, "hole_ratio", false) >= 0);
	orders = json_u64(ladder, "nr_orders");
	assert_true(orders >= 1 && orders <= KVC_LADDER_ORDERS);
	for (i = 0; i < 3; i++) {
		arr_o = json_member(ladder, order_keys[i], JSON_ARRAY);
		EXPECT_U64(arr_o->n, orders);
	}
	peaks = json_member(pool, "peaks", JSON_OBJECT);
	for (i = 0; i < sizeof(peak_keys) / sizeof(peak_keys[0]); i++)
		(void)json_u64(peaks, peak_keys[i]);
	for (i = 0; i < sizeof(peak_reals) / sizeof(peak_reals[0]); i++)
		(void)json_real(peaks, peak_reals[i], false);
	EXPECT_U64(json_u64(peaks, "samples"), 5);
	EXPECT_U64(json_u64(peaks, "live_peak"), 5000);
	EXPECT_U64(json_u64(peaks, "live_peak_step"), 14);
	/* Steps 10..14, each weighing one step: 5. */
	assert_true(json_real(peaks, "weight", false) == 5);
	assert_true(json_real(peaks, "mean_live", false) == 3000);
	json_free(arr);
}

/*
 * kvcctl run --hold: the run samples the byte ladder every step, recording
 * or not, so a held run shows its ladder, peaks and history.
 */
static void test_run_hold_ladder(void **state)
{
	struct fixture *f = *state;
	struct demo *d = &f->demo[f->nr_demos];
	const struct json *pool, *hist, *ladder;
	char *argv[] = { KVCCTL,      "run",	      "--seqs",
			 "3",	      "--prompt-len", "40",
			 "--gen-len", "20",	      "--err-samples",
			 "0",	      "--hold",	      "60",
			 NULL };
	struct json *arr;
	struct result r;
	char pid[16];
	int fds[2], devnull;

	assert_true(f->nr_demos < MAX_DEMOS);
	d->out[0] = '\0';
	d->out_len = 0;
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	d->pid = fork();
	assert_true(d->pid >= 0);
	if (d->pid == 0) {
		/* The report goes to stdout, the "holding" line to stderr. */
		devnull = open("/dev/null", O_WRONLY);
		if (devnull < 0 || dup2(devnull, STDOUT_FILENO) < 0 ||
		    dup2(fds[1], STDERR_FILENO) < 0)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	d->out_fd = fds[0];
	f->nr_demos++;
	demo_wait(d, "holding");
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);

	run(&r, KVCCTL, "stats", "--json", "--pid", pid, "--history", NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(json_parse_all(r.out, &arr, 1), 1);
	pool = json_pool(arr, d->pid);
	assert_non_null(pool);
	assert_true(json_u64(pool, "samples") > 20);
	ladder = json_member(pool, "ladder", JSON_OBJECT);
	assert_true(json_u64(ladder, "mapped") > 0);
	hist = json_member(pool, "history", JSON_ARRAY);
	assert_true(hist->n > 20);
	json_free(arr);
	proc_result_free(&r);

	run(&r, KVCCTL, "stats", "--pid", pid, "--history", "2", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "the last 2 of"));
	proc_result_free(&r);
	assert_int_equal(stop_demo(d), 0);
}

/* --history: the latest samples, in JSON and as a table. */
static void test_history(void **state)
{
	const struct json *pool, *hist, *s;
	char pid[16], line[1024], *w[32], head[128];
	struct json *arr;
	struct result r;
	pid_t gone;
	size_t i;

	(void)state;
	gone = make_sampled_pool("ringed", 300);
	snprintf(pid, sizeof(pid), "%d", (int)gone);

	run(&r, KVCCTL, "stats", "--json", "--pid", pid, "--history", "3",
	    NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(json_parse_all(r.out, &arr, 1), 1);
	pool = json_pool(arr, gone);
	assert_non_null(pool);
	EXPECT_U64(json_u64(pool, "samples"), 300);
	hist = json_member(pool, "history", JSON_ARRAY);
	assert_int_equal(hist->n, 3);
	for (i = 0; i < 3; i++) {
		s = hist->items[i];
		EXPECT_U64(json_u64(s, "step"), 10 + 297 + i);
		EXPECT_U64(json_u64(s, "live"), 1000 * (297 + i % 300 + 1));
		EXPECT_U64(json_u64(s, "held"), 20 * 16384);
		(void)json_real(s, "unusable_chunk", false);
		(void)json_real(s, "pack_ratio", false);
		(void)json_real(s, "hole_ratio", false);
	}
	json_free(arr);
	proc_result_free(&r);

	/* No N: every sample the ring kept, oldest first. */
	run(&r, KVCCTL, "stats", "--json", "--history", "--pid", pid, NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(json_parse_all(r.out, &arr, 1), 1);
	hist = json_member(json_pool(arr, gone), "history", JSON_ARRAY);
	assert_int_equal(hist->n, KVC_STATS_RING);
	EXPECT_U64(json_u64(hist->items[0], "step"), 10 + 300 - KVC_STATS_RING);
	EXPECT_U64(json_u64(hist->items[KVC_STATS_RING - 1], "step"), 309);
	json_free(arr);
	proc_result_free(&r);

	run(&r, KVCCTL, "stats", "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "--history [N]"));
	proc_result_free(&r);

	run(&r, KVCCTL, "stats", "--history=2", "--pid", pid, NULL);
	assert_int_equal(r.status, 0);
	snprintf(head, sizeof(head),
		 "history of pid %s pool ringed: the last 2 of 300 samples",
		 pid);
	assert_non_null(strstr(r.out, head));
	assert_true(find_line(strstr(r.out, head), "308", line, sizeof(line)));
	assert_true(split_words(line, w, 32) >= 19);
	assert_string_equal(w[0], "308");
	assert_true(find_line(strstr(r.out, head), "309", line, sizeof(line)));
	assert_non_null(strstr(r.out, "byte ladder"));
	assert_non_null(strstr(r.out, "peaks over the samples"));
	/* The ladder row: 300 samples taken, the last at step 309. */
	assert_true(find_line(strstr(r.out, "byte ladder"), pid, line,
			      sizeof(line)));
	assert_true(split_words(line, w, 32) >= 4);
	assert_string_equal(w[1], "ringed");
	assert_string_equal(w[2], "300");
	assert_string_equal(w[3], "309");
	proc_result_free(&r);
}

/* --watch: a trend line per pool, rates from the second refresh on. */
static void test_watch_trend(void **state)
{
	char pid[16];
	struct result r;
	const char *second;
	pid_t gone;

	(void)state;
	gone = make_sampled_pool("watched", 40);
	snprintf(pid, sizeof(pid), "%d", (int)gone);
	run(&r, KVCCTL, "stats", "--pid", pid, "--watch", "0.05", "--count",
	    "2", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "trend since the last refresh"));
	assert_non_null(strstr(r.out, "(first refresh)"));
	second = strstr(strstr(r.out, "trend since") + 1, "trend since");
	assert_non_null(second);
	/* A stale pool does not change: flat rates, a flat sparkline. */
	assert_non_null(strstr(second, "held 0 B/s"));
	assert_non_null(strstr(second, "mapped 0 B/s"));
	assert_non_null(strstr(second, "live 0 B/s"));
	assert_non_null(strstr(second, "[@@@@"));
	proc_result_free(&r);
}

/* A page of the layout before (version 2, 4 KiB) is named as such. */
static void test_version2_page_refused(void **state)
{
	struct fixture *f = *state;
	struct kvc_stats_snapshot snap;
	char path[PATH_MAX + 32];
	static char buf[4096];
	struct result r;
	struct demo *d;

	d = start_demo(f, NULL, NULL);
	assert_int_equal(kvc_stats_read(d->page, &snap), 0);
	snap.page.version = 2;
	memcpy(buf, &snap.page, sizeof(buf));
	snprintf(path, sizeof(path), "%s/kvc.%d.9", f->pages, (int)d->pid);
	write_file(path, buf, sizeof(buf), 0600);
	run(&r, KVCCTL, "stats", "--json", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, path));
	assert_non_null(strstr(r.err, "layout version 2"));
	assert_non_null(strstr(r.err, "reads only version 3"));
	proc_result_free(&r);
}

/* ---- Fragmentation and compaction ---- */

/*
 * Replace the page at @path (a stale pool's, from make_stale_pool()) by a
 * copy with @stats: forged from a real page, so all else stays valid.
 */
static void forge_stats(const char *path, const struct kvc_pool_stats *stats)
{
	struct kvc_stats_snapshot snap;
	static char buf[KVC_STATS_FILE_BYTES];
	int err;

	err = kvc_stats_read(path, &snap);
	if (err)
		fail_msg("kvc_stats_read(%s) = %d: %s", path, err,
			 kvc_last_error());
	snap.page.stats = *stats;
	assert_true(sizeof(snap.page) <= sizeof(buf));
	memset(buf, 0, sizeof(buf));
	memcpy(buf, &snap.page, sizeof(snap.page));
	assert_int_equal(unlink(path), 0);
	write_file(path, buf, sizeof(buf), 0600);
}

/* A stale pool named @name whose page holds @stats. */
static pid_t make_forged_pool(struct fixture *f, const char *name,
			      const struct kvc_pool_stats *stats)
{
	char page[PATH_MAX + 32];
	pid_t gone;

	gone = make_stale_pool(name, 3);
	snprintf(page, sizeof(page), "%s/kvc.%d.0", f->pages, (int)gone);
	forge_stats(page, stats);
	return gone;
}

/* The counters of a pool with 3 live blocks, then the new fields set. */
static void forged_stats(struct kvc_pool_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->block_bytes = 16384;
	st->chunk_bytes = 2 << 20;
	st->blocks_per_chunk = 128;
	st->blocks_total = 128;
	st->blocks_live = 3;
	st->blocks_free = 125;
	st->blocks_free_mapped = 125;
	st->chunks_total = 1;
	st->chunks_mapped = 1;
	st->chunks_partial = 1;
	st->bytes_reserved = 2 << 20;
	st->bytes_mapped = 2 << 20;
	st->bytes_live = 3 * 16384;
	st->blocks_live_hwm = 3;
	st->bytes_mapped_hwm = 2 << 20;
	st->free_blocks_in_partial_chunks = 125;
	st->free_chunks_mapped = 1;
	st->chunks_reclaimable = 2;
	st->compactions = 7;
	st->blocks_moved = 1234;
	st->bytes_copied = 1234 * 16384ull; /* 19.3 MiB */
	st->chunks_vacated = 9;
	st->chunks_released = 11;
	st->compact_failures = 1;
	st->fences_pending = 2;
	st->chunks_unmap_deferred = 3;
	st->frag_ratio = INFINITY;
	st->unusable_index = 0.5316;
	st->fragmentation_index = -1;
	st->compact_score = 0.125;
}

/* A forged page: each new field under its name, with its value. */
static void test_json_fragmentation_fields(void **state)
{
	struct fixture *f = *state;
	struct kvc_pool_stats st;
	const struct json *pool;
	struct json *arr;
	pid_t gone;

	forged_stats(&st);
	gone = make_forged_pool(f, "forged", &st);
	arr = stats_json(NULL, NULL);
	pool = json_pool(arr, gone);
	assert_non_null(pool);
	check_pool_fields(pool);
	assert_int_equal(json_u64(pool, "free_blocks_in_partial_chunks"), 125);
	assert_int_equal(json_u64(pool, "free_chunks_mapped"), 1);
	assert_int_equal(json_u64(pool, "chunks_reclaimable"), 2);
	assert_int_equal(json_u64(pool, "compactions"), 7);
	assert_int_equal(json_u64(pool, "blocks_moved"), 1234);
	assert_int_equal(json_u64(pool, "bytes_copied"), 1234 * 16384);
	assert_int_equal(json_u64(pool, "chunks_vacated"), 9);
	assert_int_equal(json_u64(pool, "chunks_released"), 11);
	assert_int_equal(json_u64(pool, "compact_failures"), 1);
	assert_int_equal(json_u64(pool, "fences_pending"), 2);
	assert_int_equal(json_u64(pool, "chunks_unmap_deferred"), 3);
	/* +infinity is not JSON: null. Indices as the kernel prints them. */
	assert_string_equal(json_text(pool, "frag_ratio"), "null");
	assert_string_equal(json_text(pool, "unusable_index"), "0.532");
	assert_string_equal(json_text(pool, "fragmentation_index"), "-1.000");
	assert_string_equal(json_text(pool, "compact_score"), "0.125");
	assert_string_equal(json_text(pool, "mapped_live_ratio"), "42.667");
	json_free(arr);
}

/* The table shows the same, in the fragmentation section. */
static void test_table_fragmentation_section(void **state)
{
	struct fixture *f = *state;
	char line[1024], *w[64], pid[16];
	struct kvc_pool_stats st;
	const char *section;
	struct result r;
	pid_t gone;

	forged_stats(&st);
	gone = make_forged_pool(f, "forged", &st);
	snprintf(pid, sizeof(pid), "%d", (int)gone);
	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	section = strstr(r.out, "\nfragmentation and compaction");
	assert_non_null(section);
	/* The group line names the groups over the columns. */
	assert_non_null(strstr(section, " fragmentation "));
	assert_non_null(strstr(section, " compaction "));
	assert_non_null(strstr(section, " unmap "));
	assert_true(find_line(section, pid, line, sizeof(line)));
	assert_int_equal(split_words(line, w, 64), 18);
	assert_string_equal(w[1], "forged");
	assert_string_equal(w[2], "inf");
	assert_string_equal(w[3], "0.532");
	assert_string_equal(w[4], "-1.000");
	assert_string_equal(w[5], "125");
	assert_string_equal(w[6], "1");
	assert_string_equal(w[7], "2");
	assert_string_equal(w[8], "0.125");
	assert_string_equal(w[9], "7");
	assert_string_equal(w[10], "1234");
	assert_string_equal(w[11], "19.3");
	assert_string_equal(w[12], "MiB");
	assert_string_equal(w[13], "9");
	assert_string_equal(w[14], "1");
	assert_string_equal(w[15], "11");
	assert_string_equal(w[16], "2");
	assert_string_equal(w[17], "3");
	proc_result_free(&r);
}

struct real_case {
	double value;
	const char *json; /* NULL: any number that reads back as @value */
	const char *table;
};

/* Whatever double a page holds, the JSON stays valid, the table readable. */
static void test_fragmentation_odd_values(void **state)
{
	static const struct real_case cases[] = {
		{ INFINITY, "null", "inf" },   { -INFINITY, "null", "-inf" },
		{ NAN, "null", "-" },	       { -0.0, "0.000", "0.000" },
		{ -0.0001, "0.000", "0.000" }, { 2.0 / 3, "0.667", "0.667" },
		{ 1e300, NULL, "1.000e+300" },
	};
	struct fixture *f = *state;
	char line[1024], *w[64], pid[16];
	pid_t gone[sizeof(cases) / sizeof(cases[0])];
	struct kvc_pool_stats st;
	const struct json *pool;
	const char *section;
	struct json *arr;
	struct result r;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		forged_stats(&st);
		st.frag_ratio = cases[i].value;
		st.compact_score = cases[i].value;
		gone[i] = make_forged_pool(f, "odd", &st);
	}
	arr = stats_json(NULL, NULL);
	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	section = strstr(r.out, "\nfragmentation and compaction");
	assert_non_null(section);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pool = json_pool(arr, gone[i]);
		assert_non_null(pool);
		if (cases[i].json) {
			assert_string_equal(json_text(pool, "frag_ratio"),
					    cases[i].json);
			assert_string_equal(json_text(pool, "compact_score"),
					    cases[i].json);
		} else {
			assert_true(json_real(pool, "frag_ratio", false) ==
				    cases[i].value);
		}
		snprintf(pid, sizeof(pid), "%d", (int)gone[i]);
		assert_true(find_line(section, pid, line, sizeof(line)));
		assert_int_equal(split_words(line, w, 64), 18);
		assert_string_equal(w[2], cases[i].table);
		assert_string_equal(w[8], cases[i].table);
	}
	json_free(arr);
	proc_result_free(&r);
}

/* pool_demo --compact-after: compaction shows in the demo and in kvcctl. */
static void test_demo_compaction(void **state)
{
	static const char *const args[] = { "--compact-after", "0.2", NULL };
	struct fixture *f = *state;
	char line[1024], *w[64], pid[16];
	const struct json *pool;
	const char *section;
	struct json *arr;
	struct result r;
	struct demo *d;

	d = start_demo_args(f, args);
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	/* Before: eight half-full chunks, four of them reclaimable. */
	assert_non_null(strstr(d->out, "fragmentation: ratio 1.000, unusable "
				       "index 1.000, fragmentation index "
				       "0.375; 4 chunks reclaimable (score "
				       "0.500)"));
	assert_non_null(strstr(d->out, "holding for 0.2 s, then compacting"));
	demo_wait(d, "holding for 60 s");
	/*
	 * A full compaction leaves ceil(512 / 128) chunks plus the one empty
	 * chunk the watermark keeps, and moves the 4 x 64 blocks of the four
	 * chunks it vacates.
	 */
	assert_non_null(strstr(d->out,
			       "compacted: 256 blocks moved, 4 chunks vacated, "
			       "3 released; mapped 16.0 MiB -> 10.0 MiB\n"));

	arr = stats_json("--pid", pid);
	pool = json_pool(arr, d->pid);
	assert_non_null(pool);
	check_pool_consistent(pool);
	assert_int_equal(json_u64(pool, "blocks_live"), 512);
	assert_int_equal(json_u64(pool, "chunks_mapped"), 5);
	assert_int_equal(json_u64(pool, "chunks_empty"), 1);
	assert_int_equal(json_u64(pool, "compactions"), 1);
	assert_int_equal(json_u64(pool, "blocks_moved"), 256);
	assert_int_equal(json_u64(pool, "bytes_copied"), 256 * 16384);
	assert_int_equal(json_u64(pool, "chunks_vacated"), 4);
	assert_int_equal(json_u64(pool, "chunks_released"), 3);
	assert_int_equal(json_u64(pool, "compact_failures"), 0);
	assert_int_equal(json_u64(pool, "chunks_reclaimable"), 0);
	assert_string_equal(json_text(pool, "frag_ratio"), "0.250");
	assert_string_equal(json_text(pool, "fragmentation_index"), "-1.000");
	assert_string_equal(json_text(pool, "compact_score"), "0.000");
	json_free(arr);

	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	section = strstr(r.out, "\nfragmentation and compaction");
	assert_non_null(section);
	assert_true(find_line(section, pid, line, sizeof(line)));
	assert_int_equal(split_words(line, w, 64), 18);
	assert_string_equal(w[4], "-1.000");
	assert_string_equal(w[9], "1");
	assert_string_equal(w[10], "256");
	assert_string_equal(w[11], "4.0");
	assert_string_equal(w[12], "MiB");
	assert_string_equal(w[13], "4");
	assert_string_equal(w[15], "3");
	proc_result_free(&r);

	assert_int_equal(stop_demo(d), 0);
	assert_false(file_exists(d->page));
}

/* The demo's line that starts with @word, or fail. */
static void demo_line(const char *out, const char *word, char *line, size_t len)
{
	if (!find_line(out, word, line, len))
		fail_msg("pool_demo printed no '%s' line:\n%s", word, out);
}

/* --evict frees a random share, the same for the same seed. */
static void test_demo_evict(void **state)
{
	char frag[2][512], chunks[2][512], line[512];
	struct result r;
	int i;

	for (i = 0; i < 2; i++) {
		run(&r, POOL_DEMO, "--backend", "host", "--blocks", "1000",
		    "--evict", "0.25", "--seed", "7", NULL);
		assert_int_equal(r.status, 0);
		assert_non_null(strstr(r.out, "freed 250 at random"));
		assert_non_null(strstr(r.out, "750 live"));
		demo_line(r.out, "fragmentation:", frag[i], sizeof(frag[i]));
		demo_line(r.out, "chunks:", chunks[i], sizeof(chunks[i]));
		proc_result_free(&r);
	}
	assert_string_equal(frag[0], frag[1]);
	assert_string_equal(chunks[0], chunks[1]);

	/*
	 * 1000 blocks fill 8 chunks; 750 left need 6 of them, plus the one
	 * empty chunk kept. No hold: compacts, prints, exits.
	 */
	run(&r, POOL_DEMO, "--backend", "host", "--blocks", "1000", "--evict",
	    "0.25", "--seed", "7", "--compact-after", "0", NULL);
	assert_int_equal(r.status, 0);
	demo_line(r.out, "compacted:", line, sizeof(line));
	assert_non_null(strstr(line, "mapped 16.0 MiB -> 14.0 MiB"));
	assert_string_equal(r.err, "");
	proc_result_free(&r);

	/* Nothing evicted, nothing to move. */
	run(&r, POOL_DEMO, "--backend", "host", "--blocks", "256", "--evict",
	    "0", "--compact-after", "0", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "freed 0 at random"));
	demo_line(r.out, "compacted:", line, sizeof(line));
	assert_non_null(strstr(line, "compacted: 0 blocks moved"));
	proc_result_free(&r);
	(void)state;
}

/* ---- kvcctl run --swap ---- */

/*
 * A workload whose sequences outgrow one 2 MiB chunk together: 3 of up to
 * 144 blocks of 8 KiB (f32), overlapping, so that --budget 2M preempts.
 */
#define SWAP_RUN_ARGS                                                         \
	"run", "--layers", "2", "--heads", "4", "--kv-heads", "4", "--dtype", \
		"f32", "--seqs", "3", "--prompt-len", "32", "--gen-len",      \
		"256", "--err-samples", "0", "--policy", "full"

/* kvcctl SWAP_RUN_ARGS EXTRA... (NULL-terminated, at most 12). */
static void swap_run(struct result *r, const char *const *extra)
{
	const char *base[] = { KVCCTL, SWAP_RUN_ARGS };
	char *argv[48];
	size_t n = 0, i;

	for (i = 0; i < sizeof(base) / sizeof(base[0]); i++)
		argv[n++] = (char *)base[i];
	for (i = 0; extra[i]; i++) {
		assert_true(n < sizeof(argv) / sizeof(argv[0]) - 1);
		argv[n++] = (char *)extra[i];
	}
	argv[n] = NULL;
	run_argv(r, argv);
}

/* The JSON object a successful run printed. */
static struct json *swap_run_json(const char *const *extra)
{
	struct result r;
	struct json *o;

	swap_run(&r, extra);
	if (r.status != 0)
		fail_msg("kvcctl run: exit %d: %s", r.status, r.err);
	if (json_parse_all(r.out, &o, 1) != 1)
		fail_msg("kvcctl run --json: invalid JSON:\n%s", r.out);
	assert_int_equal(o->type, JSON_OBJECT);
	proc_result_free(&r);
	return o;
}

/*
 * Under --budget with --swap: the outputs of the run without them, never
 * more mapped than the budget, every sequence out and back in, checked.
 */
static void check_swap_json(const struct json *o, const struct json *ref,
			    const char *path, const char *preempt)
{
	const struct json *sw = json_get(o, "swap");
	const char *engine;

	assert_string_equal(json_str(o, "output_digest"),
			    json_str(ref, "output_digest"));
	EXPECT_U64(json_u64(o, "steps"), json_u64(ref, "steps"));
	EXPECT_U64(json_u64(o, "budget_bytes"), 2u << 20);
	assert_true(json_u64(o, "peak_mapped_bytes") <= 2u << 20);
	assert_true(json_u64(o, "preemptions") > 0);
	assert_true(json_u64(o, "swap_outs") > 0);
	EXPECT_U64(json_u64(o, "swap_ins"), json_u64(o, "swap_outs"));
	assert_true(json_u64(o, "swap_out_bytes") > 0);
	EXPECT_U64(json_u64(o, "swap_in_bytes"), json_u64(o, "swap_out_bytes"));
	EXPECT_U64(json_u64(o, "swap_checksum_failures"), 0);
	EXPECT_U64(json_u64(o, "swap_failures"), 0);
	EXPECT_U64(json_u64(o, "recomputes"), 0);
	assert_true(json_number(o, "swap_out_seconds") >= 0);
	assert_true(json_number(o, "swap_in_seconds") >= 0);
	if (!sw || sw->type != JSON_OBJECT)
		fail_msg("no \"swap\" object");
	assert_string_equal(json_str(sw, "path"), path);
	assert_string_equal(json_str(sw, "preempt"), preempt);
	EXPECT_U64(json_u64(sw, "cap_bytes"), 1u << 30);
	engine = json_str(sw, "engine");
	if (strcmp(engine, "io_uring") && strcmp(engine, "pread"))
		fail_msg("swap engine '%s'", engine);
	json_bool(sw, "direct");
	assert_true(file_exists(path));
}

static void test_run_swap_json(void **state)
{
	struct fixture *f = *state;
	const char *plain[] = { "--json", NULL };
	char path[sizeof(f->root) + 8];
	const char *latest[] = { "--swap", path,     "--budget",
				 "2M",	   "--json", NULL };
	const char *largest[] = {
		"--swap",    path,	"--budget",	   "2M",
		"--preempt", "largest", "--swap-no-uring", "--swap-buffered",
		"--swap-qd", "4",	"--swap-io",	   "64K",
		"--json",    NULL
	};
	struct json *ref, *o;

	snprintf(path, sizeof(path), "%s/swap", f->root);
	ref = swap_run_json(plain);
	/* Without a swap: nothing preempted, no "swap" object. */
	assert_true(json_u64(ref, "peak_mapped_bytes") > 2u << 20);
	EXPECT_U64(json_u64(ref, "preemptions"), 0);
	EXPECT_U64(json_u64(ref, "swap_out_bytes"), 0);
	EXPECT_U64(json_u64(ref, "swap_in_bytes"), 0);
	EXPECT_U64(json_u64(ref, "swap_checksum_failures"), 0);
	assert_null(json_get(ref, "swap"));

	o = swap_run_json(latest);
	check_swap_json(o, ref, path, "latest");
	json_free(o);

	o = swap_run_json(largest);
	check_swap_json(o, ref, path, "largest");
	assert_string_equal(json_str(json_get(o, "swap"), "engine"), "pread");
	assert_false(json_bool(json_get(o, "swap"), "direct"));
	json_free(o);
	json_free(ref);
}

/* The table says what the swap did on a line of its own. */
static void test_run_swap_table(void **state)
{
	struct fixture *f = *state;
	char path[sizeof(f->root) + 8], line[512];
	const char *swap[] = { "--swap", path, "--budget", "2M", NULL };
	const char *none[] = { NULL };
	struct result r;

	snprintf(path, sizeof(path), "%s/swap", f->root);
	swap_run(&r, swap);
	if (r.status != 0)
		fail_msg("kvcctl run --swap: exit %d: %s", r.status, r.err);
	if (!find_line(r.out, "swap", line, sizeof(line)))
		fail_msg("no swap line in:\n%s", r.out);
	assert_non_null(strstr(line, "preemptions"));
	assert_non_null(strstr(line, "latest first"));
	assert_non_null(strstr(r.out, "checksum failures"));
	proc_result_free(&r);

	swap_run(&r, none);
	assert_int_equal(r.status, 0);
	assert_false(find_line(r.out, "swap", line, sizeof(line)));
	proc_result_free(&r);
}

struct swap_usage_case {
	const char *args[8];
	const char *says; /* what the one-line error must say */
};

static void test_run_swap_usage(void **state)
{
	static const struct swap_usage_case cases[] = {
		{ { "--swap", "S" }, "--swap needs --budget" },
		{ { "--swap-cap", "1M" }, "need --swap" },
		{ { "--budget", "2M", "--swap-cap", "1M" }, "need --swap" },
		{ { "--preempt", "largest" }, "need --swap" },
		{ { "--swap-no-uring" }, "need --swap" },
		{ { "--swap", "S", "--budget", "2M", "--preempt", "bogus" },
		  "--preempt: 'bogus'" },
		{ { "--preempt", "bogus" }, "--preempt: 'bogus'" },
		{ { "--swap", "S", "--budget", "2M", "--swap-io", "1000" },
		  "--swap-io" },
		{ { "--swap", "S", "--budget", "2M", "--swap-io", "5000" },
		  "--swap-io" },
		{ { "--swap", "S", "--budget", "2M", "--swap-io", "128M" },
		  "--swap-io" },
		{ { "--swap", "S", "--budget", "2M", "--swap-qd", "0" },
		  "--swap-qd" },
		{ { "--swap", "S", "--budget", "2M", "--swap-cap", "lots" },
		  "--swap-cap" },
		{ { "--swap", "", "--budget", "2M" }, "--swap" },
		{ { "--budget", "12Q" }, "--budget: '12Q'" },
	};
	struct fixture *f = *state;
	char path[sizeof(f->root) + 8], *argv[12], *nl;
	struct result r;
	size_t i;
	int n;

	snprintf(path, sizeof(path), "%s/swap", f->root);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		argv[0] = KVCCTL;
		argv[1] = "run";
		for (n = 0; n < 8 && cases[i].args[n]; n++)
			argv[n + 2] = !strcmp(cases[i].args[n], "S") ?
					      path :
					      (char *)cases[i].args[n];
		argv[n + 2] = NULL;
		run_argv(&r, argv);
		if (r.status != 2)
			fail_msg("case %zu (%s): exit %d, expected 2: %s", i,
				 cases[i].says, r.status, r.err);
		assert_string_equal(r.out, "");
		assert_int_equal(proc_count_lines(r.err), 2);
		nl = strchr(r.err, '\n');
		assert_non_null(nl);
		*nl = '\0';
		if (!strstr(r.err, cases[i].says))
			fail_msg("case %zu: '%s' does not say %s", i, r.err,
				 cases[i].says);
		assert_non_null(strstr(nl + 1, "--help"));
		proc_result_free(&r);
		/* Refused before anything was made. */
		assert_false(file_exists(path));
	}

	run(&r, KVCCTL, "run", "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "--swap FILE"));
	assert_non_null(strstr(r.out, "--swap-cap"));
	assert_non_null(strstr(r.out, "--preempt"));
	assert_string_equal(r.err, "");
	proc_result_free(&r);
}

/* A swap file that cannot be made fails the run, naming it. */
static void test_run_swap_bad_path(void **state)
{
	struct fixture *f = *state;
	char path[sizeof(f->root) + 16];
	const char *args[] = { "--swap", path, "--budget", "2M", NULL };
	struct result r;

	snprintf(path, sizeof(path), "%s/no/swap", f->root);
	swap_run(&r, args);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, path));
	proc_result_free(&r);
}

/*
 * A budget below one chunk can hold nothing: refused, in the words of the
 * command line (the budget), not of the pool underneath.
 */
static void test_run_swap_budget_below_chunk(void **state)
{
	struct fixture *f = *state;
	char path[sizeof(f->root) + 8];
	const char *args[] = { "--swap", path, "--budget", "1M", NULL };
	struct result r;
	bool named;
	int status;

	snprintf(path, sizeof(path), "%s/swap", f->root);
	swap_run(&r, args);
	status = r.status;
	named = strstr(r.err, "budget") != NULL;
	if (!named)
		fprintf(stderr, "kvcctl run --budget 1M --swap said: %s",
			r.err);
	proc_result_free(&r);
	if (status != 1 && status != 2)
		fail_msg("kvcctl run --budget 1M --swap: exit %d", status);
	if (!named)
		fail_msg("the message does not name the budget");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_json_shows_demo_pool,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_demo_flags, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_table_output, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pid_filter, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_no_pools_and_missing_dir,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_help_and_version, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_error, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_refused_pages, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stale_page_and_clean,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_escapes_bad_utf8,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_count, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_watch_interrupted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_demo_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_json_fragmentation_fields,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_table_fragmentation_section, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fragmentation_odd_values,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_ladder, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_history, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_hold_ladder, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_watch_trend, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_version2_page_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_demo_compaction, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_demo_evict, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_run_swap_json, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_run_swap_table, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_run_swap_usage, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_run_swap_bad_path, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_run_swap_budget_below_chunk, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
