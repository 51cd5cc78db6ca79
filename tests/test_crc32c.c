/* Description: crc32c: known vectors, the CPU instruction and the tables agree (lengths, alignments), chaining */
// SPDX-License-Identifier: MIT
/*
 * Tests of swap/crc32c.c. Both implementations are compared with a plain
 * bit-at-a-time crc written here from the definition, on buffers long
 * enough to reach the interleaved paths (3 x 8 KiB and 3 x 256 bytes) and
 * at every alignment within 16 bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include "../swap/crc32c.h"

#define BUF_BYTES (256u << 10)

struct fixture {
	unsigned char *buf;
	uint64_t seed;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	/* 16 spare bytes so that every alignment has BUF_BYTES after it. */
	fx->buf = malloc(BUF_BYTES + 16);
	if (!fx->buf) {
		free(fx);
		return -1;
	}
	fx->seed = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < BUF_BYTES + 16; i++)
		fx->buf[i] = (unsigned char)rng_next(&fx->seed);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	free(fx->buf);
	free(fx);
	return 0;
}

/* The definition: reflected, polynomial 0x82f63b78, one bit at a time. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

#define EXPECT_CRC(buf, len, want)                                            \
	do {                                                                  \
		EXPECT_U64(kvc_crc32c(0, buf, len), want);                    \
		EXPECT_U64(kvc_crc32c_sw(0, buf, len), want);                 \
		EXPECT_U64(crc_bitwise(0, (const unsigned char *)(buf), len), \
			   want);                                             \
	} while (0)

static void test_vectors(void **state)
{
	unsigned char b[32];

	(void)state;
	EXPECT_CRC("123456789", 9, 0xe3069283);
	EXPECT_CRC("", 0, 0);
	EXPECT_U64(kvc_crc32c(0, NULL, 0), 0);
	EXPECT_U64(kvc_crc32c(0x12345678, NULL, 0), 0x12345678);
	memset(b, 0, sizeof(b));
	EXPECT_CRC(b, sizeof(b), 0x8a9136aa);
	memset(b, 0xff, sizeof(b));
	EXPECT_CRC(b, sizeof(b), 0x62a8ab43);
	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)i;
	EXPECT_CRC(b, sizeof(b), 0x46dd794e);
}

static void test_impl(void **state)
{
	const char *impl = kvc_crc32c_impl();

	(void)state;
	assert_non_null(impl);
#if defined(__x86_64__)
	__builtin_cpu_init();
	assert_string_equal(impl, __builtin_cpu_supports("sse4.2") ? "sse4.2" :
								     "table");
#else
	assert_string_equal(impl, "table");
#endif
}

static void expect_agree(const unsigned char *p, size_t len, uint32_t seed)
{
	uint32_t want = crc_bitwise(seed, p, len);
	uint32_t hw = kvc_crc32c(seed, p, len);
	uint32_t sw = kvc_crc32c_sw(seed, p, len);

	if (hw != want || sw != want)
		fail_msg(
			"len %zu, alignment %u, seed %#x: kvc_crc32c %#x, kvc_crc32c_sw %#x, expected %#x",
			len, (unsigned)((uintptr_t)p & 15), seed, hw, sw, want);
}

/* Every length up to past the first interleaved block, every alignment. */
static void test_short_lengths(void **state)
{
	struct fixture *fx = *state;

	for (unsigned off = 0; off < 16; off++)
		for (size_t len = 0; len <= 3 * 256 + 40; len++)
			expect_agree(fx->buf + off, len, 0);
}

/* Random lengths around and past 3 x 8 KiB, random alignments and seeds. */
static void test_random_buffers(void **state)
{
	struct fixture *fx = *state;

	for (int i = 0; i < 200; i++) {
		unsigned off = (unsigned)(rng_next(&fx->seed) % 16);
		size_t len = (size_t)(rng_next(&fx->seed) % (BUF_BYTES / 4));
		uint32_t seed = (uint32_t)rng_next(&fx->seed);

		expect_agree(fx->buf + off, len, seed);
	}
	/* Exact multiples of the interleaved blocks, and one byte either side. */
	for (size_t k = 1; k <= 4; k++)
		for (int d = -1; d <= 1; d++) {
			expect_agree(fx->buf, k * 3 * 8192 + d, 0);
			expect_agree(fx->buf + 3, k * 3 * 256 + d, 7);
		}
	expect_agree(fx->buf, BUF_BYTES, 0);
	expect_agree(fx->buf + 5, BUF_BYTES, 0xffffffff);
}

/* crc(a + b) = crc(crc(a), b), for every split of one buffer. */
static void test_chaining(void **state)
{
	struct fixture *fx = *state;
	const unsigned char *p = fx->buf + 1;
	size_t len = 3 * 8192 + 3 * 256 + 13;
	uint32_t whole = kvc_crc32c(0, p, len);

	EXPECT_U64(kvc_crc32c_sw(0, p, len), whole);
	for (size_t cut = 0; cut <= len; cut += cut < 100 ? 1 : 509) {
		uint32_t a = kvc_crc32c(0, p, cut);
		uint32_t a_sw = kvc_crc32c_sw(0, p, cut);

		if (kvc_crc32c(a, p + cut, len - cut) != whole)
			fail_msg("kvc_crc32c split at %zu of %zu differs", cut,
				 len);
		if (kvc_crc32c_sw(a_sw, p + cut, len - cut) != whole)
			fail_msg("kvc_crc32c_sw split at %zu of %zu differs",
				 cut, len);
	}
	/* Byte by byte. */
	{
		uint32_t crc = 0;

		for (size_t i = 0; i < 1000; i++)
			crc = kvc_crc32c(crc, p + i, 1);
		EXPECT_U64(crc, kvc_crc32c(0, p, 1000));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vectors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_impl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_lengths, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_random_buffers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_chaining, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
