// SPDX-License-Identifier: MIT
/* The GPU test and benchmark programs, run on the fake driver: their logic checked without a GPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proc.h"

/* Generous: the emulated kernels run on the CPU, under sanitizers too. */
#define TIMEOUT_MS (600 * 1000)

static int teardown(void **state)
{
	proc_result_free(*state);
	free(*state);
	return 0;
}

static int setup(void **state)
{
	*state = calloc(1, sizeof(struct result));
	return *state ? 0 : -1;
}

static void run(struct result *r, const char *prog, const char *arg)
{
	char *argv[] = { (char *)prog, (char *)"--fake", (char *)arg, NULL };

	proc_run_argv(r, argv, TIMEOUT_MS);
	if (r->status != 0)
		print_error("%s exited %d\n--- stdout\n%s\n--- stderr\n%s\n",
			    prog, r->status, r->out, r->err);
}

/* Every kernel against its reference: all pass, and the summary says so. */
static void test_test_gpu_fake(void **state)
{
	struct result *r = *state;

	run(r, GPU_TEST, "--quick");
	assert_int_equal(r->status, 0);
	assert_non_null(strstr(r->out, "decode f16"));
	assert_non_null(strstr(r->out, "prefill bf16"));
	assert_non_null(strstr(r->out, "block copy, pairs_dev"));
	assert_non_null(strstr(r->out, " 0 failed"));
	assert_null(strstr(r->out, "FAIL"));
}

/* The benchmark runs every section and writes its table. */
static void test_bench_gpu_fake(void **state)
{
	struct result *r = *state;

	run(r, GPU_BENCH, "--quick");
	assert_int_equal(r->status, 0);
	assert_non_null(strstr(r->out, "decode"));
	assert_non_null(strstr(r->out, "copy"));
	assert_non_null(strstr(r->out, "vmm"));
}

/* Without a driver and without --fake, the test says why and skips. */
static void test_test_gpu_no_driver(void **state)
{
	struct result *r = *state;
	char *argv[] = { (char *)GPU_TEST, (char *)"--quick", NULL };

	proc_run_argv(r, argv, TIMEOUT_MS);
	if (r->status == 0)
		skip(); /* a GPU is present: the real run passed */
	assert_int_equal(r->status, 77);
	assert_non_null(strstr(r->out, "skipped") ? r->out : r->err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_test_gpu_fake, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bench_gpu_fake, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_test_gpu_no_driver, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
