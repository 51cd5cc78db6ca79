// SPDX-License-Identifier: MIT
/*
 * bench_swap: the swap tier's swap-out and swap-in throughput beside a
 * plain sequential write and read of the same bytes to the same file
 * system, timed in the same run.
 *
 * A host cache of 8 layers x 4 KV heads holds 8 sequences filled with
 * random K and V (fixed seed), 256 MiB of KV in all by default. One round
 * swaps every sequence out (kvc_swap_out(): each one durable, its syncs
 * included), destroys them, then swaps every key back in; the sequences
 * that come back go out again in the next round. The baseline then writes
 * as many bytes as the swap wrote to the data file, with pwrite() in
 * pieces of the swap's I/O size, one fdatasync() per sequence's worth of
 * bytes (the swap's durability), and reads them back with pread(). It
 * uses O_DIRECT when the swap does, so that both bypass the page cache
 * alike; buffered rows are marked, their reads may come from the page
 * cache. MB/s are of file bytes (KV and slot metadata), 10^6 bytes.
 *
 * Axes: block bytes 4 KiB (head_dim 64, block 16, f16), 16 KiB (128, 32,
 * f16) and 64 KiB (256, 32, f32) at queue depths 1, 4, 16 and 64 with
 * 1 MiB I/Os; at 16 KiB also 256 KiB I/Os and the pread engine. Each row
 * is the median of 3 rounds, swap and baseline interleaved round by round
 * so that a noisy neighbour slows both alike; ratios are swap over
 * baseline. Goal (informational): the swap sustains at least 80% of the
 * plain sequential throughput.
 *
 * The exit status is 1 when a call fails, 2 for bad arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kvc/kvc.h>
#include <kvc/swap.h>

#include "bench.h"

#define REPEATS 3
#define SEED 0x73776170u
#define NR_SEQS 8u
#define LAYERS 8u
#define KV_HEADS 4u
#define Q_HEADS 8u
#define APPEND_TOKENS 256u
#define GOAL 0.8

/* The block sizes measured: head_dim x block_size x dtype, K and V. */
static const struct kvc_model_shape shapes[] = {
	{ LAYERS, Q_HEADS, KV_HEADS, 64, 16, KVC_DTYPE_F16 },
	{ LAYERS, Q_HEADS, KV_HEADS, 128, 32, KVC_DTYPE_F16 },
	{ LAYERS, Q_HEADS, KV_HEADS, 256, 32, KVC_DTYPE_F32 },
};

#define NR_SHAPES (sizeof(shapes) / sizeof(shapes[0]))

/**
 * struct config - One row of the table.
 * @shape: index in shapes[].
 * @qd: the swap's queue depth.
 * @io_bytes: the swap's (and the baseline's) I/O size.
 * @flags: extra swap flags (%KVC_SWAP_NO_URING, %KVC_SWAP_ZERO_COPY).
 */
struct config {
	uint32_t shape;
	uint32_t qd;
	uint32_t io_bytes;
	uint32_t flags;
};

static const struct config configs[] = {
	{ 0, 1, 1u << 20, 0 },
	{ 0, 4, 1u << 20, 0 },
	{ 0, 16, 1u << 20, 0 },
	{ 0, 64, 1u << 20, 0 },
	{ 0, 16, 1u << 20, KVC_SWAP_ZERO_COPY },
	{ 1, 1, 1u << 20, 0 },
	{ 1, 4, 1u << 20, 0 },
	{ 1, 16, 1u << 20, 0 },
	{ 1, 64, 1u << 20, 0 },
	{ 1, 16, 256u << 10, 0 },
	{ 1, 64, 256u << 10, 0 },
	{ 1, 16, 1u << 20, KVC_SWAP_NO_URING },
	{ 1, 16, 1u << 20, KVC_SWAP_ZERO_COPY },
	{ 2, 1, 1u << 20, 0 },
	{ 2, 4, 1u << 20, 0 },
	{ 2, 16, 1u << 20, 0 },
	{ 2, 64, 1u << 20, 0 },
};

#define NR_CONFIGS (sizeof(configs) / sizeof(configs[0]))

/**
 * struct cache - The cache of one shape and its sequences.
 * @kv: the cache.
 * @seqs: its sequences (NULL while swapped out).
 * @tokens: tokens of each sequence.
 * @kv_bytes: KV bytes of all the sequences.
 */
struct cache {
	struct kvc_kv *kv;
	struct kvc_seq *seqs[NR_SEQS];
	uint32_t tokens;
	uint64_t kv_bytes;
};

/**
 * struct round - The figures of one round.
 * @out_mbs: swap-out MB/s.
 * @in_mbs: swap-in MB/s.
 * @write_mbs: baseline write MB/s.
 * @read_mbs: baseline read MB/s.
 */
struct round {
	double out_mbs;
	double in_mbs;
	double write_mbs;
	double read_mbs;
};

/* The files, removed at exit whatever happens. */
static char swap_path[PATH_MAX], idx_path[PATH_MAX + 8], tmp_path[PATH_MAX + 8],
	plain_path[PATH_MAX];

static void remove_files(void)
{
	if (swap_path[0]) {
		unlink(swap_path);
		unlink(idx_path);
		unlink(tmp_path);
	}
	if (plain_path[0])
		unlink(plain_path);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(const char *what, int err)
{
	fprintf(stderr, "bench_swap: %s: %s (%d)\n", what, kvc_last_error(),
		err);
	exit(1);
}

static void fail_sys(const char *what, int err)
{
	fprintf(stderr, "bench_swap: %s: %s\n", what, strerror(-err));
	exit(1);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
	return v[n / 2];
}

/* Uniform in [-1, 1), two per draw. */
static void fill_random(float *x, uint64_t n, uint64_t *rng)
{
	for (uint64_t i = 0; i < n; i += 2) {
		uint64_t r = bench_rng(rng);

		x[i] = (float)(int32_t)(uint32_t)r * 0x1p-31f;
		if (i + 1 < n)
			x[i + 1] =
				(float)(int32_t)(uint32_t)(r >> 32) * 0x1p-31f;
	}
}

/*
 * The cache of one shape, its sequences filled with @bytes of KV in all
 * (whole blocks, at least one per (layer, head)).
 */
static void cache_create(struct cache *c, const struct kvc_model_shape *shape,
			 uint64_t bytes, uint64_t *rng)
{
	uint64_t block = kvc_kv_block_bytes(shape), tables = LAYERS * KV_HEADS;
	uint64_t per_table = bytes / NR_SEQS / tables / block, elems;
	struct kvc_kv_params kp = { 0 };
	float *k, *v;
	int err;

	if (!per_table)
		per_table = 1;
	c->tokens = (uint32_t)(per_table * shape->block_size);
	c->kv_bytes = NR_SEQS * tables * per_table * block;
	kp.shape = *shape;
	/* Room for every sequence, and slack for the rounding to chunks. */
	kp.capacity_blocks = NR_SEQS * tables * per_table * 9 / 8 + 64;
	kp.backend_kind = KVC_BACKEND_HOST;
	/*
	 * Every chunk stays mapped while its sequences are out, as in a
	 * server whose other sequences take the memory: what is timed is the
	 * swap, not the pool mapping and faulting in fresh chunks.
	 */
	kp.empty_chunks_kept = UINT32_MAX;
	kp.flags = KVC_POOL_NO_STATS_PAGE;
	err = kvc_kv_create(&kp, &c->kv);
	if (err)
		fail("kvc_kv_create", err);
	elems = (uint64_t)LAYERS * KV_HEADS * APPEND_TOKENS * shape->head_dim;
	k = malloc(elems * sizeof(*k));
	v = malloc(elems * sizeof(*v));
	if (!k || !v)
		fail_sys("malloc", -ENOMEM);
	for (uint32_t s = 0; s < NR_SEQS; s++) {
		err = kvc_seq_create(c->kv, &c->seqs[s]);
		if (err)
			fail("kvc_seq_create", err);
		for (uint32_t t = 0; t < c->tokens; t += APPEND_TOKENS) {
			uint32_t n = c->tokens - t < APPEND_TOKENS ?
					     c->tokens - t :
					     APPEND_TOKENS;
			uint64_t ne = (uint64_t)LAYERS * KV_HEADS * n *
				      shape->head_dim;

			fill_random(k, ne, rng);
			fill_random(v, ne, rng);
			err = kvc_seq_append(c->seqs[s], n, k, v);
			if (err)
				fail("kvc_seq_append", err);
		}
	}
	free(k);
	free(v);
}

static void cache_destroy(struct cache *c)
{
	int err = kvc_kv_check(c->kv);

	if (err)
		fail("kvc_kv_check", err);
	for (uint32_t s = 0; s < NR_SEQS; s++)
		kvc_seq_destroy(c->seqs[s]);
	kvc_kv_destroy(c->kv);
}

/*
 * One swap round: every sequence out, durably, then destroyed, then every
 * key back in. Returns the file bytes written; the reads are checked to
 * move as many.
 */
static uint64_t swap_round(struct cache *c, struct kvc_swap *sw,
			   struct round *r)
{
	struct kvc_swap_stats st0, st1;
	double t0, out_s, in_s;
	int err;

	kvc_swap_get_stats(sw, &st0);
	t0 = now_s();
	for (uint32_t s = 0; s < NR_SEQS; s++) {
		err = kvc_swap_out(sw, c->seqs[s], s + 1);
		if (err)
			fail("kvc_swap_out", err);
	}
	out_s = now_s() - t0;
	for (uint32_t s = 0; s < NR_SEQS; s++) {
		kvc_seq_destroy(c->seqs[s]);
		c->seqs[s] = NULL;
	}
	t0 = now_s();
	for (uint32_t s = 0; s < NR_SEQS; s++) {
		err = kvc_swap_in(sw, s + 1, &c->seqs[s]);
		if (err)
			fail("kvc_swap_in", err);
	}
	in_s = now_s() - t0;
	kvc_swap_get_stats(sw, &st1);
	for (uint32_t s = 0; s < NR_SEQS; s++)
		if (kvc_seq_tokens(c->seqs[s]) != c->tokens)
			fail_sys("a sequence came back with other tokens",
				 -EIO);
	err = kvc_swap_check(sw);
	if (err)
		fail("kvc_swap_check", err);
	if (st1.out_bytes - st0.out_bytes != st1.in_bytes - st0.in_bytes)
		fail_sys("swap-in read other bytes than swap-out wrote", -EIO);
	r->out_mbs = (double)(st1.out_bytes - st0.out_bytes) / out_s * 1e-6;
	r->in_mbs = (double)(st1.in_bytes - st0.in_bytes) / in_s * 1e-6;
	return st1.out_bytes - st0.out_bytes;
}

static int full_io(int fd, bool write, char *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t n = write ? pwrite(fd, buf, len, off) :
				    pread(fd, buf, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/*
 * The baseline round: @nr pieces of @each bytes (one per sequence), each
 * written in @io_bytes pwrite()s then fdatasync'ed; then all read back.
 */
static void plain_round(int fd, char *buf, uint64_t each, uint32_t nr,
			uint32_t io_bytes, struct round *r)
{
	uint64_t total = each * nr, done;
	double t0 = now_s(), t1;
	int err;

	for (uint32_t s = 0; s < nr; s++) {
		for (done = 0; done < each; done += io_bytes) {
			size_t len =
				each - done < io_bytes ? each - done : io_bytes;

			err = full_io(fd, true, buf, len,
				      (off_t)(s * each + done));
			if (err)
				fail_sys("baseline pwrite", err);
		}
		if (fdatasync(fd))
			fail_sys("baseline fdatasync", -errno);
	}
	t1 = now_s();
	for (done = 0; done < total; done += io_bytes) {
		size_t len = total - done < io_bytes ? total - done : io_bytes;

		err = full_io(fd, false, buf, len, (off_t)done);
		if (err)
			fail_sys("baseline pread", err);
	}
	r->write_mbs = (double)total / (t1 - t0) * 1e-6;
	r->read_mbs = (double)total / (now_s() - t1) * 1e-6;
}

/*
 * One row: a fresh swap with the config's parameters and a baseline file
 * opened alike, REPEATS rounds of each, interleaved. Fills @med with the
 * medians; returns the file bytes of one round.
 */
static uint64_t measure(struct cache *c, const struct config *cf, uint64_t *rng,
			struct round *med, struct kvc_swap_stats *st)
{
	struct kvc_swap_params sp;
	struct kvc_swap *sw;
	double v[4][REPEATS];
	uint64_t file_bytes = 0, each;
	struct round r;
	char *buf;
	int err, fd;

	kvc_swap_params_init(&sp);
	sp.path = swap_path;
	/* Room for the KV, its metadata and the rounding to slots. */
	sp.cap_bytes = 2 * c->kv_bytes + (256ull << 20);
	sp.queue_depth = cf->qd;
	sp.io_bytes = cf->io_bytes;
	sp.flags = cf->flags | KVC_SWAP_FRESH | KVC_SWAP_QUIET;
	err = kvc_swap_open(&sp, c->kv, &sw);
	if (err)
		fail("kvc_swap_open", err);
	kvc_swap_get_stats(sw, st);

	if (posix_memalign((void **)&buf, 4096, cf->io_bytes))
		fail_sys("posix_memalign", -ENOMEM);
	fill_random((float *)buf, cf->io_bytes / sizeof(float), rng);
	fd = open(plain_path,
		  O_RDWR | O_CREAT | O_TRUNC | (st->direct ? O_DIRECT : 0),
		  0600);
	if (fd < 0)
		fail_sys(plain_path, -errno);

	for (int i = 0; i < REPEATS; i++) {
		file_bytes = swap_round(c, sw, &r);
		/* Each sequence's share, whole 4 KiB pages for O_DIRECT. */
		each = (file_bytes / NR_SEQS + 4095) & ~4095ull;
		plain_round(fd, buf, each, NR_SEQS, cf->io_bytes, &r);
		v[0][i] = r.out_mbs;
		v[1][i] = r.in_mbs;
		v[2][i] = r.write_mbs;
		v[3][i] = r.read_mbs;
	}
	med->out_mbs = median(v[0], REPEATS);
	med->in_mbs = median(v[1], REPEATS);
	med->write_mbs = median(v[2], REPEATS);
	med->read_mbs = median(v[3], REPEATS);

	close(fd);
	unlink(plain_path);
	free(buf);
	kvc_swap_get_stats(sw, st);
	kvc_swap_close(sw);
	unlink(swap_path);
	unlink(idx_path);
	return file_bytes;
}

static uint64_t parse_bytes(const char *flag, const char *s)
{
	char *end;
	unsigned long long v;

	if (!s) {
		fprintf(stderr, "bench_swap: %s wants a value\n", flag);
		exit(2);
	}
	errno = 0;
	v = strtoull(s, &end, 0);
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	else if (*end == 'G' || *end == 'g')
		v <<= 30, end++;
	if (errno || !v || *end || v > (64ull << 30)) {
		fprintf(stderr,
			"bench_swap: %s wants a size, 1 byte to 64G (K, M, G suffixes)\n",
			flag);
		exit(2);
	}
	return v;
}

static const char usage[] =
	"usage: bench_swap [--bytes N] [--dir DIR] [--quick]\n"
	"  --bytes N  KV bytes moved per round (K, M, G suffixes; default 256M)\n"
	"  --dir DIR  where the files go (default $TMPDIR, else /tmp)\n"
	"  --quick    16 MiB per round, for smoke tests\n";

int main(int argc, char **argv)
{
	const char *tmp = getenv("TMPDIR"), *dir = tmp && *tmp ? tmp : "/tmp";
	double ratio_out[NR_CONFIGS], ratio_in[NR_CONFIGS], out_med, in_med;
	uint64_t bytes = 256ull << 20, rng = SEED, file_bytes = 0;
	struct kvc_swap_stats st;
	bool buffered = false;
	struct cache c;
	struct round m;
	uint32_t shape = NR_SHAPES, met = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--bytes")) {
			bytes = parse_bytes(argv[i], argv[i + 1]);
			i++;
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--quick")) {
			bytes = 16ull << 20;
		} else {
			bool help = !strcmp(argv[i], "--help");

			fputs(usage, help ? stdout : stderr);
			return help ? 0 : 2;
		}
	}
	snprintf(swap_path, sizeof(swap_path), "%s/bench_swap.%d.swap", dir,
		 (int)getpid());
	snprintf(idx_path, sizeof(idx_path), "%s.idx", swap_path);
	snprintf(tmp_path, sizeof(tmp_path), "%s.idx.tmp", swap_path);
	snprintf(plain_path, sizeof(plain_path), "%s/bench_swap.%d.plain", dir,
		 (int)getpid());
	atexit(remove_files);

	printf("bench_swap: swap-out (durable) and swap-in of %u sequences, %.0f MiB of KV per round, in %s; median of %d rounds\n",
	       NR_SEQS, (double)bytes / (1 << 20), dir, REPEATS);
	printf("baseline: the same file bytes with pwrite() in pieces of io_bytes, one fdatasync per sequence, then pread(); MB/s of file bytes\n");
	bench_print_machine();
	printf("%7s %4s %8s %-8s %-6s %6s %9s %9s %6s %9s %9s %6s\n", "block",
	       "qd", "io_bytes", "engine", "path", "direct", "out MB/s",
	       "write", "ratio", "in MB/s", "read", "ratio");
	for (uint32_t i = 0; i < NR_CONFIGS; i++) {
		const struct config *cf = &configs[i];

		if (cf->shape != shape) {
			if (shape < NR_SHAPES) {
				printf("        (%llu file bytes per round for %llu of KV: %+.1f%%)\n",
				       (unsigned long long)file_bytes,
				       (unsigned long long)c.kv_bytes,
				       100.0 * ((double)file_bytes /
							(double)c.kv_bytes -
						1.0));
				cache_destroy(&c);
			}
			shape = cf->shape;
			cache_create(&c, &shapes[shape], bytes, &rng);
			printf("        head_dim %u, block %u, %s: %u layers x %u KV heads, %u sequences of %u tokens\n",
			       shapes[shape].head_dim, shapes[shape].block_size,
			       kvc_dtype_name(shapes[shape].dtype), LAYERS,
			       KV_HEADS, NR_SEQS, c.tokens);
		}
		file_bytes = measure(&c, cf, &rng, &m, &st);
		ratio_out[i] = m.out_mbs / m.write_mbs;
		ratio_in[i] = m.in_mbs / m.read_mbs;
		buffered |= !st.direct;
		met += ratio_out[i] >= GOAL && ratio_in[i] >= GOAL;
		printf("%7llu %4u %7uK %-8s %-6s %6s %9.0f %9.0f %6.2f %9.0f %9.0f %6.2f\n",
		       (unsigned long long)kvc_kv_block_bytes(&shapes[shape]),
		       cf->qd, cf->io_bytes >> 10, st.engine,
		       st.zero_copy ? "zcopy" : "staged",
		       st.direct ? "yes" : "no", m.out_mbs, m.write_mbs,
		       ratio_out[i], m.in_mbs, m.read_mbs, ratio_in[i]);
		fflush(stdout);
	}
	printf("        (%llu file bytes per round for %llu of KV: %+.1f%%)\n",
	       (unsigned long long)file_bytes, (unsigned long long)c.kv_bytes,
	       100.0 * ((double)file_bytes / (double)c.kv_bytes - 1.0));
	cache_destroy(&c);
	if (buffered)
		printf("note: rows with direct \"no\" are buffered: their reads (swap and baseline) may come from the page cache\n");

	/* median() sorts: the minimum is then first. */
	out_med = median(ratio_out, NR_CONFIGS);
	in_med = median(ratio_in, NR_CONFIGS);
	printf("summary: over %zu configurations, swap-out/write ratio median %.2f min %.2f; swap-in/read ratio median %.2f min %.2f\n",
	       NR_CONFIGS, out_med, ratio_out[0], in_med, ratio_in[0]);
	printf("goal: swap-out and swap-in >= %.0f%% of plain sequential: met in %u of %zu configurations\n",
	       GOAL * 100, met, NR_CONFIGS);
	return 0;
}
