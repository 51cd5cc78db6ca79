/* SPDX-License-Identifier: MIT */
/* The one clock the library times itself with. Not a public interface. */
#ifndef KVC_ALLOC_CLOCK_H
#define KVC_ALLOC_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in ns: durations, never dates. */
static inline uint64_t kvc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif /* KVC_ALLOC_CLOCK_H */
