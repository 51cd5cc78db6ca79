/* SPDX-License-Identifier: MIT */
/* The fake CUDA driver left clean. Include after <cmocka.h>. */
#ifndef KVC_TESTS_FAKE_CHECK_H
#define KVC_TESTS_FAKE_CHECK_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fake_driver.h"

/* What a caller of fake_expect_clean() may leave behind. */
enum fake_keep {
	FAKE_KEEP_NONE = 0,
	/* Rules broken on purpose, which the test counts itself. */
	FAKE_KEEP_VIOLATIONS = 1u << 0,
};

/* The fake holds nothing, or the test fails at the caller's line. */
#define FAKE_EXPECT_CLEAN(keep) fake_expect_clean(keep, __FILE__, __LINE__)

/**
 * fake_expect_clean() - Fail unless the fake driver holds nothing.
 * @keep: FAKE_KEEP_* bits: what the caller may leave.
 * @file: the caller's file, for the failure message.
 * @line: the caller's line.
 *
 * Every counter of what is held must be 0: handles, mappings,
 * reservations, contexts (retained or pushed), streams, events, queued
 * work, device memory, cuMemAlloc and cuMemAllocHost allocations and
 * modules; so must the rules broken (and kvc_fake_last_violation() must be
 * empty) unless @keep has FAKE_KEEP_VIOLATIONS. Cumulative counts (calls,
 * launches) are left alone. The failure names every counter not at 0.
 */
static inline void fake_expect_clean(unsigned int keep, const char *file,
				     int line)
{
#define FAKE_HELD(field) #field, offsetof(struct kvc_fake_counts, field)
	static const struct {
		const char *name;
		size_t off;
	} held[] = {
		{ FAKE_HELD(handles) },	     { FAKE_HELD(mappings) },
		{ FAKE_HELD(reservations) }, { FAKE_HELD(contexts) },
		{ FAKE_HELD(pushed) },	     { FAKE_HELD(streams) },
		{ FAKE_HELD(events) },	     { FAKE_HELD(pending) },
		{ FAKE_HELD(memory_used) },  { FAKE_HELD(allocs) },
		{ FAKE_HELD(alloc_bytes) },  { FAKE_HELD(host_allocs) },
		{ FAKE_HELD(modules) },
	};
#undef FAKE_HELD
	struct kvc_fake_counts fc;
	char msg[512] = "";
	const char *why;
	size_t i, len = 0;
	uint64_t v;

	kvc_fake_counts(&fc);
	why = kvc_fake_last_violation();
	if (!(keep & FAKE_KEEP_VIOLATIONS) && (fc.violations || *why))
		fail_msg("%s:%d: %" PRIu64 " driver rules broken; last: %s",
			 file, line, fc.violations, why);
	for (i = 0; i < sizeof(held) / sizeof(held[0]); i++) {
		memcpy(&v, (const char *)&fc + held[i].off, sizeof(v));
		if (v && len < sizeof(msg))
			len += (size_t)snprintf(msg + len, sizeof(msg) - len,
						" %s=%" PRIu64, held[i].name,
						v);
	}
	if (len)
		fail_msg("%s:%d: the fake driver still holds:%s", file, line,
			 msg);
}

#endif /* KVC_TESTS_FAKE_CHECK_H */
