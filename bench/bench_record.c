// SPDX-License-Identifier: MIT
/*
 * bench_record: what recording a trace costs the allocator's hot path.
 *
 * A pool on the sim backend (no memory behind it, so only the allocator
 * and the recorder are timed) starts half full with holes in every chunk
 * (every block allocated, a random half freed, fixed seed); then batches
 * of B blocks (one decode step of SmolLM2-135M: 90 tables) are allocated
 * and freed, each batch freed in a shuffled order, for ~0.3 s per run.
 * Subjects, interleaved run by run so that a noisy neighbour slows each
 * alike:
 *   off   - no recorder attached: the baseline;
 *   uring - a recorder attached, flushing through io_uring (the default);
 *   sync  - the same, writing with pwrite() in the caller's thread (the
 *           fallback when io_uring is unavailable).
 * Each alloc or free of B blocks records 1 + B events of 64 bytes, so the
 * recorded runs also say how many events per second the writer sustains,
 * and at what bandwidth; beside them, a plain sequential write() of 1 MiB
 * buffers to a file in the same directory, timed in the same run, gives
 * the file system's own bandwidth: a loop that does nothing but allocate
 * and free produces trace bytes faster than most file systems take them,
 * so that bandwidth, not the recorder, bounds such a loop. The trace goes
 * to $TMPDIR (default /tmp). Figures are medians of 5 runs
 * (CLOCK_MONOTONIC); ratios are ratios of medians against "off". Goals
 * (informational): io_uring beats writing in the caller's thread, and
 * the recorder sustains at least half the plain write bandwidth.
 *
 * The exit status is 1 only when a call fails, 2 for bad arguments.
 */
#include <errno.h>
#include <fcntl.h>
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
#define SEED 0x7265636fu
#define BATCH 90u
#define BLOCK_BYTES 4096ull
#define CHUNK_BYTES (2ull << 20)
#define NR_BLOCKS (1u << 18)
#define RUN_S 0.3

enum subject { OFF, URING, SYNC, NR_SUBJECTS };

static const char *const subject_name[NR_SUBJECTS] = { "off", "uring", "sync" };

/**
 * struct subject_state - One subject's pool, recorder and results.
 * @pool: the pool.
 * @be: its backend.
 * @rec: its recorder, or NULL for "off".
 * @path: the trace file.
 * @ns: ns per block of each run.
 * @events: events recorded over all runs.
 * @seconds: time over all runs.
 * @events0: events recorded before the runs (the attach's snapshot).
 * @blocks: blocks allocated and freed over all runs.
 */
struct subject_state {
	struct kvc_pool *pool;
	struct kvc_backend *be;
	struct kvc_recorder *rec;
	char path[256];
	double ns[REPEATS];
	uint64_t events;
	double seconds;
	uint64_t events0;
	uint64_t blocks;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fail(const char *what, int err)
{
	fprintf(stderr, "bench_record: %s: %s (%d)\n", what, kvc_last_error(),
		err);
	return 1;
}

/* Half full with holes in every chunk, the same pattern for every subject. */
static int fragment(struct kvc_pool *pool)
{
	uint32_t *ids = malloc(NR_BLOCKS * sizeof(*ids)), n = 0, i;
	uint64_t rng = SEED;
	int err;

	if (!ids)
		return -ENOMEM;
	err = kvc_pool_alloc(pool, NR_BLOCKS, ids);
	for (i = 0; !err && i < NR_BLOCKS; i++)
		if (bench_rng(&rng) & 1)
			ids[n++] = ids[i];
	if (!err)
		err = kvc_pool_free(pool, n, ids);
	free(ids);
	return err;
}

static int setup(struct subject_state *s, enum subject which)
{
	struct kvc_recorder_params rp = { 0 };
	struct kvc_recorder_stats rs;
	struct kvc_pool_params pp;
	const char *tmp = getenv("TMPDIR");
	int err;

	err = kvc_backend_open_sim(CHUNK_BYTES, &s->be);
	if (err)
		return fail("kvc_backend_open_sim", err);
	kvc_pool_params_init(&pp);
	pp.block_bytes = BLOCK_BYTES;
	pp.chunk_bytes = CHUNK_BYTES;
	pp.capacity_blocks = NR_BLOCKS;
	pp.backend = s->be;
	pp.flags = KVC_POOL_NO_STATS_PAGE;
	err = kvc_pool_create(&pp, &s->pool);
	if (err)
		return fail("kvc_pool_create", err);
	err = fragment(s->pool);
	if (err)
		return fail("fragmenting the pool", err);
	if (which == OFF)
		return 0;
	snprintf(s->path, sizeof(s->path), "%s/bench_record.%d.%s.kvct",
		 tmp && *tmp ? tmp : "/tmp", (int)getpid(),
		 subject_name[which]);
	rp.sync_io = which == SYNC;
	err = kvc_recorder_open(s->path, &rp, &s->rec);
	if (err)
		return fail("kvc_recorder_open", err);
	err = kvc_pool_set_recorder(s->pool, s->rec);
	if (err)
		return fail("kvc_pool_set_recorder", err);
	kvc_recorder_get_stats(s->rec, &rs);
	s->events0 = rs.events;
	return 0;
}

static int teardown(struct subject_state *s)
{
	struct kvc_recorder_stats rs;
	int err = 0;

	if (s->rec) {
		kvc_recorder_get_stats(s->rec, &rs);
		s->events = rs.events - s->events0;
		err = kvc_pool_set_recorder(s->pool, NULL);
		if (!err)
			err = kvc_recorder_close(s->rec);
		else
			kvc_recorder_close(s->rec);
		unlink(s->path);
		if (err)
			return fail("closing the recorder", err);
	}
	if (kvc_pool_check(s->pool))
		return fail("kvc_pool_check", -EFAULT);
	kvc_pool_destroy(s->pool);
	kvc_backend_close(s->be);
	return 0;
}

/* One run: alloc + shuffled free of BATCH blocks for RUN_S seconds. */
static int run(struct subject_state *s, uint64_t *rng, double *ns)
{
	uint32_t ids[BATCH], i, j, t;
	uint64_t blocks = 0;
	double t0 = now_s(), dt;
	int err;

	do {
		for (int k = 0; k < 64; k++) {
			err = kvc_pool_alloc(s->pool, BATCH, ids);
			if (err)
				return fail("kvc_pool_alloc", err);
			for (i = BATCH - 1; i > 0; i--) {
				j = (uint32_t)(bench_rng(rng) % (i + 1));
				t = ids[i];
				ids[i] = ids[j];
				ids[j] = t;
			}
			err = kvc_pool_free(s->pool, BATCH, ids);
			if (err)
				return fail("kvc_pool_free", err);
			blocks += BATCH;
		}
		dt = now_s() - t0;
	} while (dt < RUN_S);
	s->seconds += dt;
	s->blocks += blocks;
	*ns = dt * 1e9 / (double)blocks;
	return 0;
}

/*
 * The file system's own bandwidth: @bytes in 1 MiB write()s, into the page
 * cache as the recorder's writes go (neither waits for the disk).
 */
static int plain_write(uint64_t bytes, double *mbs)
{
	const char *tmp = getenv("TMPDIR");
	size_t len = 1u << 20;
	char path[256], *buf = malloc(len);
	uint64_t done = 0;
	double t0;
	int fd;

	if (!buf)
		return -ENOMEM;
	memset(buf, 0x5a, len);
	snprintf(path, sizeof(path), "%s/bench_record.%d.plain",
		 tmp && *tmp ? tmp : "/tmp", (int)getpid());
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	t0 = now_s();
	while (done < bytes) {
		ssize_t w = write(fd, buf, len);

		if (w <= 0) {
			close(fd);
			unlink(path);
			free(buf);
			return w < 0 ? -errno : -EIO;
		}
		done += (uint64_t)w;
	}
	*mbs = (double)done / (now_s() - t0) * 1e-6;
	close(fd);
	unlink(path);
	free(buf);
	return 0;
}

static double median(double *v)
{
	qsort(v, REPEATS, sizeof(*v), bench_cmp_double);
	return v[REPEATS / 2];
}

int main(int argc, char **argv)
{
	struct subject_state s[NR_SUBJECTS] = { 0 };
	double med[NR_SUBJECTS], plain[REPEATS], mbs[NR_SUBJECTS] = { 0 };
	uint64_t rng = SEED;
	int r, k;

	if (argc > 1) {
		fprintf(stderr, "usage: %s\n", argv[0]);
		return 2;
	}
	bench_print_machine();
	for (k = 0; k < NR_SUBJECTS; k++)
		if (setup(&s[k], (enum subject)k))
			return 1;
	for (r = 0; r < REPEATS; r++) {
		for (k = 0; k < NR_SUBJECTS; k++)
			if (run(&s[k], &rng, &s[k].ns[r]))
				return 1;
		/* As many bytes as a recorded run wrote, about. */
		if (plain_write(64ull << 20, &plain[r]))
			return fail("the plain write baseline", -EIO);
	}
	for (k = 0; k < NR_SUBJECTS; k++)
		if (teardown(&s[k]))
			return 1;
	printf("bench_record: alloc + shuffled free of %u blocks, pool of %u blocks half full, %d runs\n",
	       BATCH, NR_BLOCKS, REPEATS);
	for (k = 0; k < NR_SUBJECTS; k++) {
		med[k] = median(s[k].ns);
		printf("  %-6s %7.1f ns/block  x%.2f of off", subject_name[k],
		       med[k], med[k] / med[OFF]);
		if (k != OFF) {
			/* Events per block, at the median run's pace. */
			double evs = (double)s[k].events / (double)s[k].blocks /
				     med[k] * 1e9;

			mbs[k] = evs * 64 * 1e-6;
			printf("  %.1f M events/s, %.0f MB/s of trace",
			       evs * 1e-6, mbs[k]);
		}
		printf("\n");
	}
	printf("  plain sequential write to the same directory: %.0f MB/s\n",
	       median(plain));
	printf("goal: uring below sync (x%.2f vs x%.2f): %s\n",
	       med[URING] / med[OFF], med[SYNC] / med[OFF],
	       med[URING] < med[SYNC] ? "met" : "missed");
	printf("goal: uring sustains half the plain bandwidth or more (%.2f): %s\n",
	       mbs[URING] / median(plain),
	       mbs[URING] >= 0.5 * median(plain) ? "met" : "missed");
	return 0;
}
