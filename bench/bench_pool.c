// SPDX-License-Identifier: MIT
/*
 * bench_pool: the cost of a batch alloc + free in a kvc pool, per block, at
 * 1K and 1M blocks, beside two baselines timed in the same run at the same
 * batch size B and pool size:
 *   stack  - a bare LIFO array of uint32 block ids (pop B, push B): the
 *            floor any block allocator is measured against;
 *   malloc - glibc malloc() of B blocks of the same size, then B free()s.
 * Why: the pool is on the path of every decode step, so it must stay near
 * the floor (goal: at most 5x the stack) and must not slow down as the pool
 * grows (goal: ns/block at 1M over 1K at most 1.2).
 *
 * Each subject starts fragmented: every block allocated, then a random half
 * freed (fixed seed), so the pool is half full with holes in every chunk;
 * the stack holds as many free ids and the heap the same pattern. Every
 * subject adds each id (or pointer) it gets to a checksum that is printed,
 * so no work can be optimised away. The pool is also timed freeing each
 * batch in an order shuffled within the batch (the permuting copy is timed
 * too). A figure is the median of 5 runs of ~0.3 s (CLOCK_MONOTONIC). The
 * runs of the stacks and pools of both sizes are interleaved, so that a
 * noisy neighbour slows every figure of a ratio alike; malloc runs alone,
 * its heap is not shared. kvc_pool_check() follows every pool run, untimed.
 *
 * Goals are informational: the exit status is 1 only when a call fails.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kvc/kvc.h>

#include "bench.h"

#define REPEATS 5
#define SEED 0x6b7663u
#define NR_SIZES 2

enum subject { MALLOC, STACK, POOL, POOL_SHUFFLED, NR_SUBJECTS };

/* One pool size: its stack baseline, its pool, its results. */
struct size {
	uint64_t blocks;
	uint32_t *stack; /* the stack's free block ids */
	uint64_t stack_top;
	struct kvc_pool *pool;
	double ns[NR_SUBJECTS];
};

/* The batch in flight, shared by every subject. */
struct batch {
	uint32_t n;
	uint64_t block_bytes;
	uint32_t *ids;
	uint32_t *shuffled; /* the same ids in free order */
	uint32_t *perm; /* that order: shuffled[i] = ids[perm[i]] */
	void **ptrs; /* malloc's blocks */
	uint64_t checksum;
};

static uint64_t rng_state;

static uint64_t rng_next(void)
{
	return bench_rng(&rng_state);
}

/* Fisher-Yates, always from the same seed: every subject gets one pattern. */
static void shuffle(uint32_t *a, uint64_t n, uint64_t seed)
{
	rng_state = seed;
	for (uint64_t i = n; i > 1; i--) {
		uint64_t j = rng_next() % i;
		uint32_t t = a[i - 1];

		a[i - 1] = a[j];
		a[j] = t;
	}
}

static void fail(const char *what, const char *why)
{
	fprintf(stderr, "bench_pool: %s failed: %s\n", what, why);
	exit(1);
}

/* The floor. Out of line, as the pool's calls are, so only the work differs. */
static __attribute__((noinline)) int stack_pop(struct size *sz, uint32_t n,
					       uint32_t *ids)
{
	if (sz->stack_top < n)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		ids[i] = sz->stack[--sz->stack_top];
	return 0;
}

static __attribute__((noinline)) void stack_push(struct size *sz, uint32_t n,
						 const uint32_t *ids)
{
	for (uint32_t i = 0; i < n; i++)
		sz->stack[sz->stack_top++] = ids[i];
}

/* Alloc and free one batch, cycles times over; 0 or -ENOMEM. */
static int run_cycles(struct batch *b, struct size *sz, enum subject s,
		      uint64_t cycles)
{
	uint32_t n = b->n;
	uint64_t sum = 0;

	for (uint64_t c = 0; c < cycles; c++) {
		if (s == STACK) {
			if (stack_pop(sz, n, b->ids))
				return -ENOMEM;
			for (uint32_t i = 0; i < n; i++)
				sum += b->ids[i];
			stack_push(sz, n, b->ids);
		} else if (s == MALLOC) {
			for (uint32_t i = 0; i < n; i++) {
				b->ptrs[i] = malloc(b->block_bytes);
				if (!b->ptrs[i])
					return -ENOMEM;
				sum += (uintptr_t)b->ptrs[i] >> 12;
			}
			for (uint32_t i = 0; i < n; i++)
				free(b->ptrs[i]);
		} else {
			if (kvc_pool_alloc(sz->pool, n, b->ids))
				fail("kvc_pool_alloc", kvc_last_error());
			for (uint32_t i = 0; i < n; i++)
				sum += b->ids[i];
			if (s == POOL_SHUFFLED)
				for (uint32_t i = 0; i < n; i++)
					b->shuffled[i] = b->ids[b->perm[i]];
			if (kvc_pool_free(sz->pool, n,
					  s == POOL ? b->ids : b->shuffled))
				fail("kvc_pool_free", kvc_last_error());
		}
	}
	b->checksum += sum;
	return 0;
}

static double timed_run(struct batch *b, struct size *sz, enum subject s,
			uint64_t cycles)
{
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (run_cycles(b, sz, s, cycles))
		fail(s == STACK ? "stack pop" : "malloc", strerror(ENOMEM));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (s >= POOL && kvc_pool_check(sz->pool))
		fail("kvc_pool_check", kvc_last_error());
	return (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
}

/*
 * Times the subjects first..last of every size in sizes[0..nr): calibrates
 * each (which also warms it up), then runs them in turn REPEATS times and
 * keeps the median ns per block.
 */
static void measure(struct batch *b, struct size *sizes, int nr,
		    enum subject first, enum subject last, double target_ns)
{
	uint64_t cycles[NR_SIZES][NR_SUBJECTS];
	double runs[NR_SIZES][NR_SUBJECTS][REPEATS], t;

	for (int z = 0; z < nr; z++) {
		for (enum subject s = first; s <= last; s++) {
			uint64_t c = 1;

			while ((t = timed_run(b, &sizes[z], s, c)) <
			       target_ns / 10)
				c *= 2;
			cycles[z][s] = (uint64_t)(c * target_ns / t) + 1;
		}
	}
	for (int r = 0; r < REPEATS; r++) {
		for (int z = 0; z < nr; z++) {
			for (enum subject s = first; s <= last; s++) {
				t = timed_run(b, &sizes[z], s, cycles[z][s]);
				runs[z][s][r] = t / cycles[z][s] / b->n;
			}
		}
	}
	for (int z = 0; z < nr; z++) {
		for (enum subject s = first; s <= last; s++) {
			qsort(runs[z][s], REPEATS, sizeof(double),
			      bench_cmp_double);
			sizes[z].ns[s] = runs[z][s][REPEATS / 2];
		}
	}
}

/* malloc at one size: n blocks, a random half freed, timed, all freed. */
static void measure_malloc(struct batch *b, struct size *sz, double target_ns)
{
	uint64_t n = sz->blocks;
	uint32_t *order = malloc(n * sizeof(*order));
	void **live = malloc(n * sizeof(*live));

	if (!order || !live)
		fail("malloc", strerror(ENOMEM));
	for (uint64_t i = 0; i < n; i++) {
		order[i] = (uint32_t)i;
		live[i] = malloc(b->block_bytes);
		if (!live[i])
			fail("malloc (prefill)", strerror(ENOMEM));
	}
	shuffle(order, n, SEED);
	for (uint64_t i = 0; i < n / 2; i++)
		free(live[order[i]]);
	measure(b, sz, 1, MALLOC, MALLOC, target_ns);
	for (uint64_t i = n / 2; i < n; i++)
		free(live[order[i]]);
	free(live);
	free(order);
}

/* The stack and the pool of one size, both half full, fragmented alike. */
static void setup_size(struct batch *b, struct size *sz)
{
	struct kvc_pool_params params;
	uint64_t n = sz->blocks;
	uint32_t *ids = malloc(n * sizeof(*ids));

	sz->stack = malloc(n * sizeof(*sz->stack));
	if (!ids || !sz->stack)
		fail("malloc", strerror(ENOMEM));
	for (uint64_t i = 0; i < n; i++)
		sz->stack[i] = (uint32_t)i;
	shuffle(sz->stack, n, SEED);
	sz->stack_top = n / 2;

	kvc_pool_params_init(&params);
	params.backend_kind = KVC_BACKEND_HOST;
	params.flags = KVC_POOL_NO_STATS_PAGE;
	params.block_bytes = b->block_bytes;
	params.capacity_blocks = n;
	if (kvc_pool_create(&params, &sz->pool))
		fail("kvc_pool_create", kvc_last_error());
	if (kvc_pool_alloc(sz->pool, (uint32_t)n, ids))
		fail("kvc_pool_alloc (prefill)", kvc_last_error());
	shuffle(ids, n, SEED);
	if (kvc_pool_free(sz->pool, (uint32_t)(n / 2), ids))
		fail("kvc_pool_free (prefill)", kvc_last_error());
	free(ids);
}

static uint64_t parse_flag(int argc, char **argv, int i)
{
	char *end;
	unsigned long long v =
		i + 1 < argc ? strtoull(argv[i + 1], &end, 0) : 0;

	if (!v || *end) {
		fprintf(stderr, "bench_pool: %s wants a positive number\n",
			argv[i]);
		exit(2);
	}
	return v;
}

static const char usage[] =
	"usage: bench_pool [--batch B] [--block-bytes N] [--quick]\n"
	"  --batch B        blocks per alloc and per free, 1..512 (default 64)\n"
	"  --block-bytes N  bytes per block, must divide 2 MiB (default 4096)\n"
	"  --quick          short runs, for smoke tests\n";

int main(int argc, char **argv)
{
	struct batch b = { .n = 64, .block_bytes = 4096 };
	struct size sizes[NR_SIZES] = { { .blocks = 1024 },
					{ .blocks = 1024 * 1024 } };
	double target_ns = 0.3e9, scale, *r;
	uint64_t avail = sysconf(_SC_AVPHYS_PAGES) * sysconf(_SC_PAGESIZE);

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--batch")) {
			b.n = (uint32_t)parse_flag(argc, argv, i++);
		} else if (!strcmp(argv[i], "--block-bytes")) {
			b.block_bytes = parse_flag(argc, argv, i++);
		} else if (!strcmp(argv[i], "--quick")) {
			target_ns = 0.02e9;
		} else {
			bool help = !strcmp(argv[i], "--help");

			fputs(usage, help ? stdout : stderr);
			return help ? 0 : 2;
		}
	}
	if (b.n > sizes[0].blocks / 2)
		fail("--batch", "at most 512: half of the 1K pool is free");
	/* The host backend commits a chunk's memory when it maps it. */
	if (sizes[1].blocks * b.block_bytes > avail / 10 * 8)
		fail("memory check",
		     "1M blocks of that size exceed 80% of free memory");
	b.ids = calloc(3 * b.n, sizeof(*b.ids));
	b.ptrs = calloc(b.n, sizeof(*b.ptrs));
	if (!b.ids || !b.ptrs)
		fail("calloc", strerror(ENOMEM));
	b.shuffled = b.ids + b.n;
	b.perm = b.ids + 2 * b.n;
	for (uint32_t i = 0; i < b.n; i++)
		b.perm[i] = i;
	shuffle(b.perm, b.n, SEED + 1);

	printf("bench_pool: batch alloc+free, ns per block, median of %d; batch %u, block %llu B, host backend, chunk 2 MiB, pool half full\n",
	       REPEATS, b.n, (unsigned long long)b.block_bytes);
	bench_print_machine();
	/* The small pool first, so that bad flags fail before the long runs. */
	setup_size(&b, &sizes[0]);
	for (int z = 0; z < NR_SIZES; z++)
		measure_malloc(&b, &sizes[z], target_ns);
	setup_size(&b, &sizes[1]);
	measure(&b, sizes, NR_SIZES, STACK, POOL_SHUFFLED, target_ns);
	for (int z = 0; z < NR_SIZES; z++)
		if (kvc_pool_destroy(sizes[z].pool))
			fail("kvc_pool_destroy", kvc_last_error());

	printf("%8s %7s %7s %7s %9s %10s %10s %11s\n", "blocks", "stack",
	       "malloc", "pool", "pool-shuf", "pool/stack", "shuf/stack",
	       "pool/malloc");
	for (int z = 0; z < NR_SIZES; z++) {
		r = sizes[z].ns;
		printf("%8llu %7.2f %7.2f %7.2f %9.2f %9.2fx %9.2fx %10.2fx   goal <= 5x stack: %s\n",
		       (unsigned long long)sizes[z].blocks, r[STACK], r[MALLOC],
		       r[POOL], r[POOL_SHUFFLED], r[POOL] / r[STACK],
		       r[POOL_SHUFFLED] / r[STACK], r[POOL] / r[MALLOC],
		       r[POOL] / r[STACK] <= 5.0 ? "PASS" : "MISS");
		free(sizes[z].stack);
	}
	scale = sizes[1].ns[POOL] / sizes[0].ns[POOL];
	printf("scaling: pool ns/block at 1M / at 1K = %.2f (shuffled %.2f)   goal 1M/1K <= 1.2: %s\n",
	       scale, sizes[1].ns[POOL_SHUFFLED] / sizes[0].ns[POOL_SHUFFLED],
	       scale <= 1.2 ? "PASS" : "MISS");
	printf("checksum: %016llx\n", (unsigned long long)b.checksum);
	free(b.ids);
	free(b.ptrs);
	return 0;
}
