// SPDX-License-Identifier: MIT
/*
 * pool_demo: how to embed kvc. Build a pool, allocate blocks in batches,
 * free every other block so the chunks are left half used, print the
 * pool's counters, and with --hold stay alive so `kvcctl stats` can show
 * the pool:
 *
 *	build/examples/pool_demo --hold 60 &
 *	build/kvcctl stats
 *
 * Every kvc call returns 0 or -errno; kvc_last_error() says why it failed.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kvc/kvc.h>

#define BATCH 64 /* blocks per kvc_pool_alloc() call */

struct demo_opts {
	enum kvc_backend_kind backend;
	uint64_t blocks;
	uint64_t block_bytes;
	double hold;
};

static volatile sig_atomic_t stop;

static const char usage[] =
	"Usage: pool_demo [--backend auto|host|cuda] [--blocks N] [--block-bytes N]\n"
	"                 [--hold SECONDS]\n"
	"\n"
	"  --backend KIND    where chunks are mapped (default auto)\n"
	"  --blocks N        blocks to allocate (default 1024); the pool holds\n"
	"                    four times as many\n"
	"  --block-bytes N   bytes per block (default 16384)\n"
	"  --hold SECONDS    then stay alive that long, or until Ctrl-C, so that\n"
	"                    'kvcctl stats' can show the pool\n";

static int bad_value(const char *flag, const char *value)
{
	fprintf(stderr, "pool_demo: %s: bad value '%s'\n", flag, value);
	return -EINVAL;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return *end || errno ? -EINVAL : 0;
}

/* Return: 0 to run, 1 when --help was shown, -EINVAL for bad arguments. */
static int parse_args(int argc, char **argv, struct demo_opts *o)
{
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "blocks", required_argument, NULL, 'n' },
		{ "block-bytes", required_argument, NULL, 's' },
		{ "hold", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'b':
			if (kvc_backend_kind_parse(optarg, &o->backend)) {
				fprintf(stderr, "pool_demo: --backend: %s\n",
					kvc_last_error());
				return -EINVAL;
			}
			break;
		case 'n':
			/* Capacity is 4 * N blocks; block ids are 32-bit. */
			if (parse_u64(optarg, &o->blocks) || !o->blocks ||
			    o->blocks > (1u << 30))
				return bad_value("--blocks", optarg);
			break;
		case 's':
			if (parse_u64(optarg, &o->block_bytes))
				return bad_value("--block-bytes", optarg);
			break;
		case 'H':
			o->hold = strtod(optarg, &end);
			if (*end || !(o->hold >= 0 && o->hold <= 1e9))
				return bad_value("--hold", optarg);
			break;
		case 'h':
			fputs(usage, stdout);
			return 1;
		default:
			fputs(usage, stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pool_demo: unexpected argument '%s'\n",
			argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/* "16.0 KiB", "2.0 MiB": enough units for a demo. */
static const char *human(uint64_t bytes, char *buf, size_t len)
{
	if (bytes < 1024 * 1024)
		snprintf(buf, len, "%.1f KiB", bytes / 1024.0);
	else if (bytes < 1024ull * 1024 * 1024)
		snprintf(buf, len, "%.1f MiB", bytes / (1024.0 * 1024));
	else
		snprintf(buf, len, "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
	return buf;
}

static void print_stats(struct kvc_pool *pool)
{
	struct kvc_pool_stats st;
	char a[32], b[32];
	const char *page;

	kvc_pool_get_stats(pool, &st, NULL);
	printf("pool: %s blocks in %s chunks (%" PRIu64 " per chunk), on %s\n",
	       human(st.block_bytes, a, sizeof(a)),
	       human(st.chunk_bytes, b, sizeof(b)), st.blocks_per_chunk,
	       kvc_backend_name(kvc_pool_backend(pool)));
	printf("blocks: %" PRIu64 " live, %" PRIu64 " free of %" PRIu64
	       " (%" PRIu64 " free inside mapped chunks)\n",
	       st.blocks_live, st.blocks_free, st.blocks_total,
	       st.blocks_free_mapped);
	printf("chunks: %" PRIu64 " of %" PRIu64 " mapped: %" PRIu64
	       " empty, %" PRIu64 " partial, %" PRIu64 " full\n",
	       st.chunks_mapped, st.chunks_total, st.chunks_empty,
	       st.chunks_partial, st.chunks_full);
	printf("memory: %s mapped for %s live\n",
	       human(st.bytes_mapped, a, sizeof(a)),
	       human(st.bytes_live, b, sizeof(b)));
	printf("device calls: %" PRIu64 " map, %" PRIu64 " unmap, %" PRIu64
	       " set-access\n",
	       st.backend_map, st.backend_unmap, st.backend_set_access);
	page = kvc_pool_stats_path(pool);
	if (page)
		printf("stats page: %s\n", page);
}

static void on_signal(int sig)
{
	stop = 1;
}

/* Sleep @seconds, or until SIGINT or SIGTERM; then the pool is destroyed. */
static void hold(double seconds)
{
	struct timespec left;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
		perror("pool_demo: sigaction");
	left.tv_sec = (time_t)seconds;
	left.tv_nsec = (long)((seconds - (double)left.tv_sec) * 1e9);
	printf("holding for %g s: try 'kvcctl stats --pid %d'\n", seconds,
	       (int)getpid());
	fflush(stdout);
	while (!stop && nanosleep(&left, &left) && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	struct demo_opts o = { KVC_BACKEND_AUTO, 1024, 16384, 0 };
	struct kvc_pool_params params;
	uint32_t *ids, nr_freed = 0, i, n;
	struct kvc_pool *pool;
	int err;

	err = parse_args(argc, argv, &o);
	if (err)
		return err > 0 ? 0 : 2;

	/* Start from the defaults, then set what this program needs. */
	kvc_pool_params_init(&params);
	params.block_bytes = o.block_bytes;
	params.capacity_blocks = 4 * o.blocks;
	params.backend_kind = o.backend;
	params.name = "pool_demo";
	err = kvc_pool_create(&params, &pool);
	if (err) {
		fprintf(stderr, "pool_demo: %s\n", kvc_last_error());
		return 1;
	}
	ids = calloc(o.blocks, sizeof(*ids));
	if (!ids) {
		fprintf(stderr, "pool_demo: out of memory\n");
		goto err_destroy;
	}

	/* Allocate in batches, as a server would for a batch of requests. */
	for (i = 0; i < o.blocks; i += n) {
		n = o.blocks - i < BATCH ? o.blocks - i : BATCH;
		err = kvc_pool_alloc(pool, n, ids + i);
		if (err) {
			fprintf(stderr, "pool_demo: alloc: %s\n",
				kvc_last_error());
			goto err_free;
		}
	}
	/* Free every other block in one call: chunks stay half full. */
	for (i = 1; i < o.blocks; i += 2)
		ids[nr_freed++] = ids[i];
	err = nr_freed ? kvc_pool_free(pool, nr_freed, ids) : 0;
	if (err) {
		fprintf(stderr, "pool_demo: free: %s\n", kvc_last_error());
		goto err_free;
	}
	printf("allocated %" PRIu64 " blocks in batches of %d, freed %" PRIu32
	       " (every other one)\n",
	       o.blocks, BATCH, nr_freed);
	print_stats(pool);

	if (o.hold > 0)
		hold(o.hold);

	free(ids);
	err = kvc_pool_destroy(pool);
	if (err) {
		fprintf(stderr, "pool_demo: destroy: %s\n", kvc_last_error());
		return 1;
	}
	return 0;

err_free:
	free(ids);
err_destroy:
	if (kvc_pool_destroy(pool))
		fprintf(stderr, "pool_demo: destroy: %s\n", kvc_last_error());
	return 1;
}
