// SPDX-License-Identifier: MIT
/*
 * pool_demo: how to embed kvc. Build a pool, allocate blocks in batches,
 * free every other block (or, with --evict, a random share of them) so the
 * chunks are left partly used, print the pool's counters, and with --hold
 * stay alive so `kvcctl stats` can show the pool:
 *
 *	build/examples/pool_demo --hold 60 &
 *	build/kvcctl stats
 *
 * With --compact-after it also compacts the pool once, keeping its block
 * table right through the move hook, so that fragmentation can be watched
 * going away:
 *
 *	build/examples/pool_demo --evict 0.7 --compact-after 10 --hold 30 &
 *	build/kvcctl stats --watch 1
 *
 * Every kvc call returns 0 or -errno; kvc_last_error() says why it failed.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kvc/kvc.h>

#define BATCH 64 /* blocks per kvc_pool_alloc() call */
#define MAX_SECONDS 1e9

/**
 * struct demo_opts - The command line.
 * @backend: where chunks are mapped.
 * @blocks: blocks to allocate.
 * @block_bytes: bytes per block.
 * @hold: seconds to stay alive at the end.
 * @evict: share of the blocks to free at random, or < 0 for every other one.
 * @seed: seed of the random choice.
 * @seed_given: --seed was on the command line.
 * @compact_after: seconds to wait before compacting, or < 0 for no
 *                 compaction.
 */
struct demo_opts {
	enum kvc_backend_kind backend;
	uint64_t blocks;
	uint64_t block_bytes;
	double hold;
	double evict;
	uint64_t seed;
	bool seed_given;
	double compact_after;
};

/**
 * struct block_table - The live blocks, as a server keeps them for its
 * sequences. Each block's owner tag is its slot here, so when compaction
 * moves a block the move hook knows which entry to patch.
 * @ids: the live block ids.
 * @nr: how many.
 * @moves: moves the hook was told of.
 * @unknown: moves the hook could not match to an entry (none, if all is
 *           well).
 */
struct block_table {
	uint32_t *ids;
	uint32_t nr;
	uint64_t moves;
	uint64_t unknown;
};

static volatile sig_atomic_t stop;

static const char usage[] =
	"Usage: pool_demo [--backend auto|host|cuda] [--blocks N] [--block-bytes N]\n"
	"                 [--evict FRACTION [--seed N]] [--compact-after SECONDS]\n"
	"                 [--hold SECONDS]\n"
	"\n"
	"  --backend KIND           where chunks are mapped (default auto)\n"
	"  --blocks N               blocks to allocate (default 1024); the pool\n"
	"                           holds four times as many\n"
	"  --block-bytes N          bytes per block (default 16384)\n"
	"  --evict FRACTION         then free that share of the blocks (0 to 1),\n"
	"                           chosen at random, instead of every other one\n"
	"  --seed N                 seed of --evict's choice (default 1): the same\n"
	"                           seed frees the same blocks\n"
	"  --compact-after SECONDS  stay alive that long, then compact the pool\n"
	"                           once and say what moved\n"
	"  --hold SECONDS           at the end, stay alive that long, or until\n"
	"                           Ctrl-C, so that 'kvcctl stats' can show the pool\n"
	"\n"
	"To watch fragmentation go away:\n"
	"  pool_demo --evict 0.7 --compact-after 10 --hold 30 &\n"
	"  kvcctl stats --watch 1\n";

static int bad_value(const char *flag, const char *value, const char *want)
{
	fprintf(stderr, "pool_demo: %s: '%s' is not %s\n", flag, value, want);
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

/*
 * A decimal such as "2", "0.5" or ".7" in [@min, @max]. Signs, spaces,
 * exponents, "inf" and "nan" are refused: strtod alone would take them.
 */
static int parse_decimal(const char *s, double min, double max, double *out)
{
	bool digits = false, point = false;
	const char *p;
	char *end;

	for (p = s; *p; p++) {
		if (*p >= '0' && *p <= '9')
			digits = true;
		else if (*p == '.' && !point)
			point = true;
		else
			return -EINVAL;
	}
	if (!digits)
		return -EINVAL;
	*out = strtod(s, &end);
	return *end || !(*out >= min && *out <= max) ? -EINVAL : 0;
}

/* Return: 0 to run, 1 when --help was shown, -EINVAL for bad arguments. */
static int parse_args(int argc, char **argv, struct demo_opts *o)
{
	enum { OPT_EVICT = 256, OPT_SEED, OPT_COMPACT_AFTER };
	static const struct option opts[] = {
		{ "backend", required_argument, NULL, 'b' },
		{ "blocks", required_argument, NULL, 'n' },
		{ "block-bytes", required_argument, NULL, 's' },
		{ "hold", required_argument, NULL, 'H' },
		{ "evict", required_argument, NULL, OPT_EVICT },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "compact-after", required_argument, NULL, OPT_COMPACT_AFTER },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
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
				return bad_value("--blocks", optarg,
						 "a number from 1 to 2^30");
			break;
		case 's':
			if (parse_u64(optarg, &o->block_bytes))
				return bad_value("--block-bytes", optarg,
						 "a number of bytes");
			break;
		case 'H':
			if (parse_decimal(optarg, 0, MAX_SECONDS, &o->hold))
				return bad_value("--hold", optarg,
						 "a number of seconds");
			break;
		case OPT_EVICT:
			if (parse_decimal(optarg, 0, 1, &o->evict))
				return bad_value("--evict", optarg,
						 "a fraction from 0 to 1");
			break;
		case OPT_SEED:
			if (parse_u64(optarg, &o->seed))
				return bad_value("--seed", optarg,
						 "a number from 0 to 2^64-1");
			o->seed_given = true;
			break;
		case OPT_COMPACT_AFTER:
			if (parse_decimal(optarg, 0, MAX_SECONDS,
					  &o->compact_after))
				return bad_value("--compact-after", optarg,
						 "a number of seconds");
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
	if (o->seed_given && o->evict < 0) {
		fprintf(stderr,
			"pool_demo: --seed needs --evict: without it "
			"every other block is freed, nothing is random\n");
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

static void print_fragmentation(const struct kvc_pool_stats *st)
{
	printf("fragmentation: ratio %.3f, unusable index %.3f, "
	       "fragmentation index %.3f; %" PRIu64 " chunks reclaimable "
	       "(score %.3f)\n",
	       st->frag_ratio, st->unusable_index, st->fragmentation_index,
	       st->chunks_reclaimable, st->compact_score);
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
	print_fragmentation(&st);
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

/*
 * Sleep @seconds, or until SIGINT or SIGTERM, which set @stop: the demo
 * then skips what is left and destroys the pool. The line printed says
 * what comes after the wait (@then) and which kvcctl options (@watch)
 * show the pool meanwhile.
 */
static void hold(double seconds, const char *then, const char *watch)
{
	struct timespec left;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
		perror("pool_demo: sigaction");
	left.tv_sec = (time_t)seconds;
	left.tv_nsec = (long)((seconds - (double)left.tv_sec) * 1e9);
	printf("holding for %g s%s: try 'kvcctl stats %s--pid %d'\n", seconds,
	       then, watch, (int)getpid());
	fflush(stdout);
	while (!stop && nanosleep(&left, &left) && errno == EINTR)
		;
}

/* splitmix64: a small, good generator; the same seed, the same blocks. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * Choose the blocks to free and move them to the front of @ids: a random
 * @evict share of them (a partial Fisher-Yates shuffle), or, when @evict
 * is negative, every other one. The blocks kept end up after them.
 *
 * Return: how many to free.
 */
static uint32_t choose_evicted(uint32_t *ids, uint32_t n,
			       const struct demo_opts *o)
{
	uint64_t state = o->seed;
	uint32_t i, j, k, t;

	if (o->evict < 0) {
		for (i = 0, k = 0; i < n; i++) {
			if (i % 2 == 0)
				continue;
			t = ids[k];
			ids[k++] = ids[i];
			ids[i] = t;
		}
		return k;
	}
	k = (uint32_t)(o->evict * n + 0.5);
	for (i = 0; i < k; i++) {
		j = i + (uint32_t)(next_random(&state) % (n - i));
		t = ids[i];
		ids[i] = ids[j];
		ids[j] = t;
	}
	return k;
}

/*
 * The move hook: runs inside kvc_pool_compact() with the pool's lock
 * held, so it only patches the table, never calls into the pool.
 */
static void on_moves(void *arg, const struct kvc_move *moves, uint32_t n)
{
	struct block_table *table = arg;
	uint32_t i;

	for (i = 0; i < n; i++) {
		if (moves[i].owner >= table->nr ||
		    table->ids[moves[i].owner] != moves[i].from) {
			table->unknown++;
			continue;
		}
		table->ids[moves[i].owner] = moves[i].to;
		table->moves++;
	}
}

/* Tag each live block with its slot, so moves can be matched to slots. */
static int tag_owners(struct kvc_pool *pool, struct block_table *table)
{
	uint32_t i;
	int err;

	for (i = 0; i < table->nr; i++) {
		err = kvc_pool_set_owner(pool, table->ids[i], i);
		if (err) {
			fprintf(stderr, "pool_demo: set owner: %s\n",
				kvc_last_error());
			return err;
		}
	}
	err = kvc_pool_set_move_hook(pool, on_moves, table);
	if (err)
		fprintf(stderr, "pool_demo: move hook: %s\n", kvc_last_error());
	return err;
}

/*
 * Compact once, then check that the block table still names every live
 * block: each id live, each owner tag its slot.
 */
static int compact(struct kvc_pool *pool, struct block_table *table)
{
	struct kvc_pool_stats before, after;
	struct kvc_compact_result res;
	uint64_t owner;
	char a[32], b[32];
	uint32_t i;
	int err;

	kvc_pool_get_stats(pool, &before, NULL);
	err = kvc_pool_compact(pool, NULL, &res);
	if (err) {
		fprintf(stderr, "pool_demo: compact: %s\n", kvc_last_error());
		return err;
	}
	kvc_pool_get_stats(pool, &after, NULL);
	printf("compacted: %" PRIu64 " blocks moved, %" PRIu32
	       " chunks vacated, %" PRIu32 " released; mapped %s -> %s\n",
	       res.blocks_moved, res.chunks_vacated, res.chunks_released,
	       human(before.bytes_mapped, a, sizeof(a)),
	       human(after.bytes_mapped, b, sizeof(b)));
	print_fragmentation(&after);
	if (table->unknown || table->moves != res.blocks_moved) {
		fprintf(stderr,
			"pool_demo: the move hook matched %" PRIu64
			" moves (%" PRIu64
			" unmatched), compaction reports %" PRIu64 "\n",
			table->moves, table->unknown, res.blocks_moved);
		return -EPROTO;
	}
	for (i = 0; i < table->nr; i++) {
		if (kvc_pool_get_owner(pool, table->ids[i], &owner) ||
		    owner != i) {
			fprintf(stderr,
				"pool_demo: block table slot %" PRIu32
				" names block %" PRIu32
				", which is not live or not its own\n",
				i, table->ids[i]);
			return -EPROTO;
		}
	}
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct demo_opts o = {
		.backend = KVC_BACKEND_AUTO,
		.blocks = 1024,
		.block_bytes = 16384,
		.evict = -1,
		.seed = 1,
		.compact_after = -1,
	};
	struct block_table table = { 0 };
	struct kvc_pool_params params;
	uint32_t *ids, nr_freed, i, n;
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
	/* Free in one call: the chunks are left partly used. */
	nr_freed = choose_evicted(ids, (uint32_t)o.blocks, &o);
	err = nr_freed ? kvc_pool_free(pool, nr_freed, ids) : 0;
	if (err) {
		fprintf(stderr, "pool_demo: free: %s\n", kvc_last_error());
		goto err_free;
	}
	if (o.evict < 0)
		printf("allocated %" PRIu64
		       " blocks in batches of %d, freed %" PRIu32
		       " (every other one)\n",
		       o.blocks, BATCH, nr_freed);
	else
		printf("allocated %" PRIu64
		       " blocks in batches of %d, freed %" PRIu32
		       " at random (--evict %g, seed %" PRIu64 ")\n",
		       o.blocks, BATCH, nr_freed, o.evict, o.seed);
	table.ids = ids + nr_freed;
	table.nr = (uint32_t)o.blocks - nr_freed;
	print_stats(pool);

	if (o.compact_after >= 0) {
		err = tag_owners(pool, &table);
		if (err)
			goto err_free;
		if (o.compact_after > 0)
			hold(o.compact_after, ", then compacting",
			     "--watch 1 ");
		if (!stop) {
			err = compact(pool, &table);
			if (err)
				goto err_free;
		}
	}
	if (o.hold > 0 && !stop)
		hold(o.hold, "", "");

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
