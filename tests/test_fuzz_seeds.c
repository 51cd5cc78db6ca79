/* Description: the fuzz targets, built as plain programs, over the checked-in seeds and their truncations and bit flips: each input is taken or refused, never a crash */
// SPDX-License-Identifier: MIT
/*
 * libFuzzer needs clang; these runs need only the compiler that built the
 * library. Every seed of fuzz/corpus goes through every target (a trace
 * fed to the GGUF reader must be refused as cleanly as a model file),
 * then variants of each seed: cut at several lengths, and with single
 * bits flipped. The variants live in memfds the children inherit, named
 * by /proc/self/fd paths, so nothing is written to disk.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"
#include "testutil.h"

#ifndef FUZZ_DIR
#define FUZZ_DIR "build/fuzz"
#endif
#define CORPUS "fuzz/corpus"
#define RUN_MS 60000
/* Variants of one seed: truncations, then bit flips. */
#define NR_CUTS 8
#define NR_FLIPS 24

static const char *const targets[] = {
	FUZZ_DIR "/fuzz_gguf_seeds",
	FUZZ_DIR "/fuzz_record_seeds",
};

/* @path through @target: it must exit 0 (a crash or an abort is a bug). */
static void expect_clean(const char *target, const char *path, const char *what)
{
	struct result r;

	proc_run(&r, RUN_MS, target, path, NULL);
	if (r.status != 0)
		fail_msg("%s on %s (%s): exit %d\n%s", target, path, what,
			 r.status, r.err ? r.err : "");
	proc_result_free(&r);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* @len bytes of @buf in a memfd the child can open by its path. */
static int memfd_with(const uint8_t *buf, size_t len, char *path, size_t size)
{
	int fd = memfd_create("kvc-fuzz-seed", 0);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	snprintf(path, size, "/proc/self/fd/%d", fd);
	return fd;
}

static void run_variants(const char *seed)
{
	char path[64], what[64];
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	size_t len, i, t, at;
	uint8_t *buf = slurp(seed, &len);
	int fd;

	for (t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
		expect_clean(targets[t], seed, "as it is");
		for (i = 1; i <= NR_CUTS && len; i++) {
			at = len * i / (NR_CUTS + 1);
			fd = memfd_with(buf, at, path, sizeof(path));
			snprintf(what, sizeof(what), "cut to %zu bytes", at);
			expect_clean(targets[t], path, what);
			close(fd);
		}
		for (i = 0; i < NR_FLIPS && len; i++) {
			at = (size_t)(rng_next(&rng) % len);
			buf[at] ^= (uint8_t)(1u << (rng_next(&rng) % 8));
			fd = memfd_with(buf, len, path, sizeof(path));
			snprintf(what, sizeof(what), "bit flipped at %zu", at);
			expect_clean(targets[t], path, what);
			close(fd);
			/* One flip at a time: put it back. */
			free(buf);
			buf = slurp(seed, &len);
		}
	}
	free(buf);
}

static void test_seeds(void **state)
{
	DIR *d = opendir(CORPUS);
	char seed[512];
	struct dirent *de;
	unsigned seeds = 0;
	size_t t;

	(void)state;
	for (t = 0; t < sizeof(targets) / sizeof(targets[0]); t++)
		if (access(targets[t], X_OK))
			fail_msg("%s is not built", targets[t]);
	assert_non_null(d);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(seed, sizeof(seed), "%s/%s", CORPUS, de->d_name);
		run_variants(seed);
		seeds++;
	}
	closedir(d);
	/* The corpus has a model file and traces: none may go missing. */
	assert_true(seeds >= 3);
}

/* An empty input, and one named that does not exist (exit 1, not a crash). */
static void test_edges(void **state)
{
	char path[64];
	struct result r;
	size_t t;
	int fd;

	(void)state;
	fd = memfd_with((const uint8_t *)"", 0, path, sizeof(path));
	for (t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
		expect_clean(targets[t], path, "empty");
		proc_run(&r, RUN_MS, targets[t], CORPUS "/no-such-seed", NULL);
		assert_int_equal(r.status, 1);
		proc_result_free(&r);
	}
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seeds),
		cmocka_unit_test(test_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
