/* SPDX-License-Identifier: MIT */
/* Assertions the test programs share. Include after <cmocka.h>. */
#ifndef KVC_TESTS_TESTUTIL_H
#define KVC_TESTS_TESTUTIL_H

#include <inttypes.h>
#include <stdint.h>

#include <kvc/kvc.h>

/* Compare two integers as u64 and name both expressions on failure. */
#define EXPECT_U64(got, want)                                                \
	do {                                                                 \
		uint64_t got_ = (uint64_t)(got), want_ = (uint64_t)(want);   \
		if (got_ != want_)                                           \
			fail_msg("%s = %" PRIu64 ", expected %s = %" PRIu64, \
				 #got, got_, #want, want_);                  \
	} while (0)

/* Every invariant of @pool holds, or the test fails at the caller's line. */
#define CHECK(pool) check_pool(pool, __FILE__, __LINE__)

static inline void check_pool(struct kvc_pool *pool, const char *file, int line)
{
	int err = kvc_pool_check(pool);

	if (err)
		fail_msg("%s:%d: kvc_pool_check() = %d: %s", file, line, err,
			 kvc_last_error());
}

/* Every invariant of cache @kv holds, or the test fails at the caller's line. */
#define KV_CHECK(kv) check_kv_at(kv, __FILE__, __LINE__)

static inline void check_kv_at(struct kvc_kv *kv, const char *file, int line)
{
	int err = kvc_kv_check(kv);

	if (err)
		fail_msg("%s:%d: kvc_kv_check() = %d: %s", file, line, err,
			 kvc_last_error());
}

/* xorshift64*: seeded, never 0 once seeded non-zero; tests only. */
static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

#endif /* KVC_TESTS_TESTUTIL_H */
