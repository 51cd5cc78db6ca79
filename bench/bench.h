/* SPDX-License-Identifier: MIT */
/*
 * What every benchmark shares: a seeded generator, sorting doubles for
 * medians, and a line saying which machine the figures come from.
 */
#ifndef KVC_BENCH_H
#define KVC_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* splitmix64: fixed seeds give every run the same pattern. */
static inline uint64_t bench_rng(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* For qsort() of doubles. */
static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The CPU model and count: figures from another machine do not compare. */
static inline void bench_print_machine(void)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[256], model[128] = "unknown CPU", *colon;

	while (f && fgets(line, sizeof(line), f)) {
		colon = strchr(line, ':');
		if (!strncmp(line, "model name", 10) && colon) {
			snprintf(model, sizeof(model), "%s", colon + 2);
			model[strcspn(model, "\n")] = '\0';
			break;
		}
	}
	if (f)
		fclose(f);
	printf("machine: %s, %ld cpus online; CPU timings, on a possibly shared machine\n",
	       model, sysconf(_SC_NPROCESSORS_ONLN));
}

#endif /* KVC_BENCH_H */
