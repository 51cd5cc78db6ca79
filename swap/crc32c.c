// SPDX-License-Identifier: MIT
/*
 * crc32c (Castagnoli, reflected polynomial 0x82f63b78): the checksum of
 * every byte the swap tier writes. Two implementations that must agree bit
 * for bit: SSE4.2's crc32 instruction, 8 bytes at a time and three streams
 * interleaved on long buffers, and slicing-by-8 tables for every other CPU.
 * The tables are built once, on first use, under pthread_once.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "crc32c.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#define HAVE_SSE42 1
#endif

#define POLY 0x82f63b78u

/*
 * The instruction has a latency of 3 cycles and a throughput of 1, so three
 * independent streams keep it busy. Each stream's crc is then moved past
 * the bytes of the streams after it by a table lookup ("shift"). LONG
 * blocks amortise the shifts; SHORT ones catch what is left of a medium
 * buffer.
 */
#define LONG 8192
#define SHORT 256

static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static uint32_t slice[8][256];
static bool have_sse42;
#ifdef HAVE_SSE42
static uint32_t shift_long[4][256];
static uint32_t shift_short[4][256];
#endif

static uint64_t load64_le(const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	w = __builtin_bswap64(w);
#endif
	return w;
}

#ifdef HAVE_SSE42
/* Multiply a 32x32 matrix over GF(2) (one column per word) by a vector. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;

	for (; vec; vec >>= 1, mat++)
		if (vec & 1)
			sum ^= *mat;
	return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
	for (int i = 0; i < 32; i++)
		square[i] = gf2_times(mat, mat[i]);
}

/*
 * The operator that feeds @len zero bytes (a power of two) through a crc
 * register without conditioning: squaring the one-zero-bit operator doubles
 * the number of zeros each time.
 */
static void zeros_op(uint32_t *even, size_t len)
{
	uint32_t odd[32];
	uint32_t row = 1;

	odd[0] = POLY;
	for (int i = 1; i < 32; i++, row <<= 1)
		odd[i] = row;
	gf2_square(even, odd); /* 2 bits */
	gf2_square(odd, even); /* 4 bits */
	for (;;) {
		gf2_square(even, odd); /* 1 byte, 4 bytes, ... */
		len >>= 1;
		if (!len)
			return;
		gf2_square(odd, even); /* 2 bytes, 8 bytes, ... */
		len >>= 1;
		if (!len)
			break;
	}
	memcpy(even, odd, sizeof(odd));
}

static void shift_table(uint32_t table[4][256], size_t len)
{
	uint32_t op[32];

	zeros_op(op, len);
	for (uint32_t n = 0; n < 256; n++) {
		table[0][n] = gf2_times(op, n);
		table[1][n] = gf2_times(op, n << 8);
		table[2][n] = gf2_times(op, n << 16);
		table[3][n] = gf2_times(op, n << 24);
	}
}

static uint32_t shift(const uint32_t table[4][256], uint32_t crc)
{
	return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^
	       table[2][(crc >> 16) & 0xff] ^ table[3][crc >> 24];
}
#endif

static void crc_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t crc = n;

		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ POLY : crc >> 1;
		slice[0][n] = crc;
	}
	for (uint32_t n = 0; n < 256; n++)
		for (int k = 1; k < 8; k++)
			slice[k][n] = (slice[k - 1][n] >> 8) ^
				      slice[0][slice[k - 1][n] & 0xff];
#ifdef HAVE_SSE42
	shift_table(shift_long, LONG);
	shift_table(shift_short, SHORT);
	__builtin_cpu_init();
	have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_table(uint32_t crc, const unsigned char *p, size_t len)
{
	crc = ~crc;
	while (len && ((uintptr_t)p & 7)) {
		crc = (crc >> 8) ^ slice[0][(crc ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		uint64_t w = load64_le(p) ^ crc;

		crc = slice[7][w & 0xff] ^ slice[6][(w >> 8) & 0xff] ^
		      slice[5][(w >> 16) & 0xff] ^ slice[4][(w >> 24) & 0xff] ^
		      slice[3][(w >> 32) & 0xff] ^ slice[2][(w >> 40) & 0xff] ^
		      slice[1][(w >> 48) & 0xff] ^ slice[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ slice[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

#ifdef HAVE_SSE42
/* Three streams of @block bytes each, from @p; returns the combined crc. */
__attribute__((target("sse4.2"))) static uint64_t
crc_hw_3way(uint64_t crc0, const unsigned char *p, size_t block,
	    const uint32_t table[4][256])
{
	uint64_t crc1 = 0, crc2 = 0, w0, w1, w2;

	for (size_t i = 0; i < block; i += 8) {
		memcpy(&w0, p + i, 8);
		memcpy(&w1, p + block + i, 8);
		memcpy(&w2, p + 2 * block + i, 8);
		crc0 = _mm_crc32_u64(crc0, w0);
		crc1 = _mm_crc32_u64(crc1, w1);
		crc2 = _mm_crc32_u64(crc2, w2);
	}
	crc0 = shift(table, (uint32_t)crc0) ^ crc1;
	return shift(table, (uint32_t)crc0) ^ crc2;
}

__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t crc0 = ~crc, w;

	while (len && ((uintptr_t)p & 7)) {
		crc0 = _mm_crc32_u8((uint32_t)crc0, *p++);
		len--;
	}
	for (; len >= 3 * LONG; p += 3 * LONG, len -= 3 * LONG)
		crc0 = crc_hw_3way(crc0, p, LONG, shift_long);
	for (; len >= 3 * SHORT; p += 3 * SHORT, len -= 3 * SHORT)
		crc0 = crc_hw_3way(crc0, p, SHORT, shift_short);
	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&w, p, 8);
		crc0 = _mm_crc32_u64(crc0, w);
	}
	while (len--)
		crc0 = _mm_crc32_u8((uint32_t)crc0, *p++);
	return ~(uint32_t)crc0;
}
#endif

uint32_t kvc_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return crc_table(crc, buf, len);
}

uint32_t kvc_crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init);
#ifdef HAVE_SSE42
	if (have_sse42)
		return crc_hw(crc, buf, len);
#endif
	return crc_table(crc, buf, len);
}

const char *kvc_crc32c_impl(void)
{
	pthread_once(&crc_once, crc_init);
	return have_sse42 ? "sse4.2" : "table";
}
