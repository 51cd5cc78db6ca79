/* Description: kvc_pool: parameters, alloc/free, placement, owner tags, watermark, stats, host RSS release, threads, random histories against a model */
// SPDX-License-Identifier: MIT
/*
 * Tests of the block pool written against include/kvc/pool.h only. Every
 * pool runs on the host backend with 64 KiB chunks, so block addresses are
 * real memory the test can write. kvc_pool_check() runs after every
 * operation. Block id -> chunk is id / blocks_per_chunk, which follows from
 * the documented address rule (base + id * block_bytes).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/kvc.h>

#include "../alloc/error.h"

#define GRAN (64ull << 10)
#define BLOCK 4096ull
#define BPC ((uint32_t)(GRAN / BLOCK)) /* 16 blocks per chunk */

struct fixture {
	struct kvc_backend *be;
	struct kvc_pool *pool;
	struct kvc_pool_params params;
};

/* ------------------------------------------------------------------ */
/* helpers */

#define ALLOC_OK(pool, n, ids) alloc_ok(pool, n, ids, __FILE__, __LINE__)

static void alloc_ok(struct kvc_pool *pool, uint32_t n, uint32_t *ids,
		     const char *file, int line)
{
	int err = kvc_pool_alloc(pool, n, ids);

	if (err)
		fail_msg("%s:%d: kvc_pool_alloc(%u) = %d, expected 0: %s", file,
			 line, n, err, kvc_last_error());
	check_pool(pool, file, line);
}

#define FREE_OK(pool, n, ids) free_ok(pool, n, ids, __FILE__, __LINE__)

static void free_ok(struct kvc_pool *pool, uint32_t n, const uint32_t *ids,
		    const char *file, int line)
{
	int err = kvc_pool_free(pool, n, ids);

	if (err)
		fail_msg("%s:%d: kvc_pool_free(%u) = %d, expected 0: %s", file,
			 line, n, err, kvc_last_error());
	check_pool(pool, file, line);
}

#define ALLOC_ERR(pool, n, ids, want) \
	alloc_err(pool, n, ids, want, __FILE__, __LINE__)

static void alloc_err(struct kvc_pool *pool, uint32_t n, uint32_t *ids,
		      int want, const char *file, int line)
{
	int err = kvc_pool_alloc(pool, n, ids);

	if (err != want)
		fail_msg("%s:%d: kvc_pool_alloc(%u) = %d, expected %d (%s)",
			 file, line, n, err, want, kvc_last_error());
	if (!kvc_last_error()[0])
		fail_msg("%s:%d: kvc_pool_alloc() failed with an empty "
			 "kvc_last_error()",
			 file, line);
	check_pool(pool, file, line);
}

#define FREE_ERR(pool, n, ids, want) \
	free_err(pool, n, ids, want, __FILE__, __LINE__)

static void free_err(struct kvc_pool *pool, uint32_t n, const uint32_t *ids,
		     int want, const char *file, int line)
{
	int err = kvc_pool_free(pool, n, ids);

	if (err != want)
		fail_msg("%s:%d: kvc_pool_free(%u) = %d, expected %d (%s)",
			 file, line, n, err, want, kvc_last_error());
	if (!kvc_last_error()[0])
		fail_msg("%s:%d: kvc_pool_free() failed with an empty "
			 "kvc_last_error()",
			 file, line);
	check_pool(pool, file, line);
}

static struct kvc_pool_stats stats_of(struct kvc_pool *pool, uint64_t *hist)
{
	struct kvc_pool_stats st;

	memset(&st, 0xa5, sizeof(st));
	if (hist)
		memset(hist, 0xa5, KVC_FILL_BUCKETS * sizeof(*hist));
	kvc_pool_get_stats(pool, &st, hist);
	return st;
}

static void expect_hist(const uint64_t *hist, const uint64_t *want)
{
	int i;

	for (i = 0; i < KVC_FILL_BUCKETS; i++)
		if (hist[i] != want[i])
			fail_msg("fill_hist[%d] = %" PRIu64
				 ", expected %" PRIu64
				 " (0 = empty, 1 = 1-10%%, ..., 10 = 91-99%%, "
				 "11 = full)",
				 i, hist[i], want[i]);
}

/* Every counter that describes state (not history) must be unchanged. */
static void expect_same_state(const struct kvc_pool_stats *before,
			      const uint64_t *hist_before,
			      const struct kvc_pool_stats *after,
			      const uint64_t *hist_after)
{
	EXPECT_U64(after->blocks_total, before->blocks_total);
	EXPECT_U64(after->blocks_live, before->blocks_live);
	EXPECT_U64(after->blocks_free, before->blocks_free);
	EXPECT_U64(after->blocks_free_mapped, before->blocks_free_mapped);
	EXPECT_U64(after->chunks_mapped, before->chunks_mapped);
	EXPECT_U64(after->chunks_empty, before->chunks_empty);
	EXPECT_U64(after->chunks_partial, before->chunks_partial);
	EXPECT_U64(after->chunks_full, before->chunks_full);
	EXPECT_U64(after->bytes_mapped, before->bytes_mapped);
	EXPECT_U64(after->bytes_live, before->bytes_live);
	EXPECT_U64(after->blocks_live_hwm, before->blocks_live_hwm);
	EXPECT_U64(after->alloc_calls, before->alloc_calls);
	EXPECT_U64(after->free_calls, before->free_calls);
	if (hist_before && hist_after)
		expect_hist(hist_after, hist_before);
}

/* The live set, one byte per id. */
static uint8_t *live_set(struct kvc_pool *pool, uint64_t total)
{
	uint8_t *live = malloc(total);
	uint64_t id;

	assert_non_null(live);
	for (id = 0; id < total; id++)
		live[id] = kvc_pool_is_live(pool, (uint32_t)id);
	return live;
}

static void expect_same_live_set(struct kvc_pool *pool, const uint8_t *before,
				 uint64_t total)
{
	uint64_t id;

	for (id = 0; id < total; id++) {
		bool now = kvc_pool_is_live(pool, (uint32_t)id);

		if (now != (bool)before[id])
			fail_msg("block %" PRIu64 " was %s before the failed "
				 "call and is %s after",
				 id, before[id] ? "live" : "free",
				 now ? "live" : "free");
	}
}

static void count_per_chunk(const uint32_t *ids, uint32_t n, uint32_t bpc,
			    uint32_t *counts, uint32_t nchunks)
{
	uint32_t i;

	memset(counts, 0, nchunks * sizeof(*counts));
	for (i = 0; i < n; i++) {
		assert_true(ids[i] / bpc < nchunks);
		counts[ids[i] / bpc]++;
	}
}

static void range_ids(uint32_t *ids, uint32_t first, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		ids[i] = first + i;
}

/*
 * Chunks that @ids fill completely, in increasing order. Which chunk a pool
 * maps first is not specified, so tests name chunks by this list.
 */
static uint32_t full_chunks(const uint32_t *ids, uint32_t n, uint32_t bpc,
			    uint32_t *out, uint32_t nchunks)
{
	uint32_t *counts = calloc(nchunks, sizeof(*counts)), c, nfull = 0;

	assert_non_null(counts);
	count_per_chunk(ids, n, bpc, counts, nchunks);
	for (c = 0; c < nchunks; c++)
		if (counts[c] == bpc)
			out[nfull++] = c;
	free(counts);
	return nfull;
}

/* Ids @first .. @first + @n - 1 of chunk @chunk. */
static void chunk_ids(uint32_t *ids, uint32_t chunk, uint32_t first, uint32_t n)
{
	range_ids(ids, chunk * BPC + first, n);
}

static void *block_ptr(struct kvc_pool *pool, uint32_t id)
{
	uint64_t addr = 0;
	int err = kvc_pool_block_addr(pool, id, &addr);

	if (err)
		fail_msg("kvc_pool_block_addr(%u) = %d: %s", id, err,
			 kvc_last_error());
	return (void *)(uintptr_t)addr;
}

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
	return (uint32_t)(rng_next(s) % n);
}

/* ------------------------------------------------------------------ */
/* fixtures */

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	if (kvc_backend_open_host(GRAN, &fx->be)) {
		fprintf(stderr, "kvc_backend_open_host: %s\n",
			kvc_last_error());
		free(fx);
		return -1;
	}
	kvc_pool_params_init(&fx->params);
	fx->params.block_bytes = BLOCK;
	fx->params.capacity_blocks = 16 * BPC;
	fx->params.empty_chunks_kept = 0;
	fx->params.backend = fx->be;
	fx->params.flags = KVC_POOL_NO_STATS_PAGE;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	kvc_pool_destroy(fx->pool);
	kvc_backend_close(fx->be);
	free(fx);
	return 0;
}

static struct kvc_pool *pool_open(struct fixture *fx)
{
	int err;

	assert_null(fx->pool);
	err = kvc_pool_create(&fx->params, &fx->pool);
	if (err)
		fail_msg("kvc_pool_create() = %d, expected 0: %s", err,
			 kvc_last_error());
	assert_non_null(fx->pool);
	CHECK(fx->pool);
	return fx->pool;
}

static void pool_close(struct fixture *fx)
{
	int err = kvc_pool_destroy(fx->pool);

	fx->pool = NULL;
	if (err)
		fail_msg("kvc_pool_destroy() = %d: %s", err, kvc_last_error());
}

/* ------------------------------------------------------------------ */
/* parameters */

static void test_params_init_defaults(void **state)
{
	struct kvc_pool_params p;

	(void)state;
	memset(&p, 0x5a, sizeof(p));
	kvc_pool_params_init(&p);
	EXPECT_U64(p.block_bytes, 0);
	EXPECT_U64(p.capacity_blocks, 0);
	EXPECT_U64(p.va_bytes, 0);
	EXPECT_U64(p.chunk_bytes, 0);
	EXPECT_U64(p.max_mapped_bytes, 0);
	EXPECT_U64(p.empty_chunks_kept, 1);
	EXPECT_U64(p.backend_kind, KVC_BACKEND_AUTO);
	EXPECT_U64(p.device, 0);
	assert_null(p.backend);
	assert_null(p.name);
	if (p.flags & KVC_POOL_NO_STATS_PAGE)
		fail_msg("default flags must publish a stats page");
}

struct bad_case {
	const char *what;
	struct kvc_pool_params params;
	bool null_params;
	bool null_out;
	int rc;
	bool fresh_msg_empty;
	char msg[256];
};

/*
 * Each bad case runs on its own thread: kvc_last_error() is per thread and
 * "" until a call fails there, so a non-empty message after the call proves
 * that this very call recorded one.
 */
static void *bad_create_thread(void *arg)
{
	struct bad_case *c = arg;
	struct kvc_pool *pool = NULL;

	c->fresh_msg_empty = kvc_last_error()[0] == '\0';
	c->rc = kvc_pool_create(c->null_params ? NULL : &c->params,
				c->null_out ? NULL : &pool);
	snprintf(c->msg, sizeof(c->msg), "%s", kvc_last_error());
	if (pool && c->rc == 0)
		kvc_pool_destroy(pool);
	return NULL;
}

static void run_bad_case(struct bad_case *c)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, bad_create_thread, c), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	if (!c->fresh_msg_empty)
		fail_msg("%s: a new thread's kvc_last_error() is not \"\"",
			 c->what);
	if (c->rc != -EINVAL)
		fail_msg("%s: kvc_pool_create() = %d, expected -EINVAL (%d); "
			 "message: \"%s\"",
			 c->what, c->rc, -EINVAL, c->msg);
	if (!c->msg[0])
		fail_msg("%s: -EINVAL but kvc_last_error() is empty", c->what);
}

static void test_create_invalid(void **state)
{
	struct fixture *fx = *state;
	struct bad_case cases[32];
	int n = 0, i;

#define BAD(desc)                                                        \
	(memset(&cases[n], 0, sizeof(cases[n])), cases[n].what = (desc), \
	 cases[n].params = fx->params, &cases[n++])

	BAD("NULL params")->null_params = true;
	BAD("NULL out")->null_out = true;
	BAD("zero block size")->params.block_bytes = 0;
	BAD("block size 3000 does not divide a 64 KiB chunk")
		->params.block_bytes = 3000;
	BAD("block larger than the chunk")->params.block_bytes = 2 * GRAN;
	BAD("block size near UINT64_MAX")->params.block_bytes = UINT64_MAX;
	BAD("chunk of half the granularity")->params.chunk_bytes = GRAN / 2;
	BAD("chunk of 1.5 granularities")->params.chunk_bytes = GRAN * 3 / 2;
	BAD("chunk of UINT64_MAX bytes")->params.chunk_bytes = UINT64_MAX;
	{
		struct bad_case *c = BAD("zero capacity, zero va_bytes");

		c->params.capacity_blocks = 0;
		c->params.va_bytes = 0;
	}
	BAD("capacity of 2^32 + 1 blocks")->params.capacity_blocks =
		KVC_MAX_BLOCKS + 1;
	BAD("capacity of UINT64_MAX blocks")->params.capacity_blocks =
		UINT64_MAX;
	BAD("capacity whose byte size overflows")->params.capacity_blocks =
		UINT64_MAX / BLOCK + 1;
	{
		/* 3 blocks per chunk: 2^32 blocks round up to 2^32 + 2. */
		struct bad_case *c =
			BAD("capacity rounding up past 2^32 blocks");

		c->params.chunk_bytes = 3 * GRAN;
		c->params.block_bytes = GRAN;
		c->params.capacity_blocks = KVC_MAX_BLOCKS;
	}
	{
		struct bad_case *c = BAD("va_bytes = UINT64_MAX");

		c->params.capacity_blocks = 0;
		c->params.va_bytes = UINT64_MAX;
	}
	{
		struct bad_case *c = BAD("va_bytes = UINT64_MAX - 4095");

		c->params.capacity_blocks = 0;
		c->params.va_bytes = UINT64_MAX - 4095;
	}
	{
		struct bad_case *c =
			BAD("va_bytes worth more than 2^32 blocks");

		c->params.capacity_blocks = 0;
		c->params.va_bytes = (KVC_MAX_BLOCKS + BPC) * BLOCK;
	}
	{
		/* 4 chunks of 2^62 bytes: 2^64 bytes of reservation. */
		struct bad_case *c = BAD("reservation size overflows 64 bits");

		c->params.chunk_bytes = 1ull << 62;
		c->params.block_bytes = 1ull << 62;
		c->params.capacity_blocks = 4;
	}
	BAD("max_mapped_bytes one byte short of a chunk")
		->params.max_mapped_bytes = GRAN - 1;
	BAD("max_mapped_bytes = 1")->params.max_mapped_bytes = 1;
	{
		struct bad_case *c = BAD("unknown backend kind");

		c->params.backend = NULL;
		c->params.backend_kind = (enum kvc_backend_kind)42;
	}
#undef BAD

	for (i = 0; i < n; i++)
		run_bad_case(&cases[i]);
}

static void test_create_valid_variants(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats st;
	uint32_t id;

	/* va_bytes is rounded up to whole chunks. */
	fx->params.capacity_blocks = 0;
	fx->params.va_bytes = 3 * GRAN + 1;
	pool_open(fx);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.chunks_total, 4);
	EXPECT_U64(st.blocks_total, 4 * BPC);
	EXPECT_U64(st.bytes_reserved, 4 * GRAN);
	pool_close(fx);

	/* capacity_blocks wins over va_bytes when both are set. */
	fx->params.capacity_blocks = 2 * BPC;
	fx->params.va_bytes = 100 * GRAN;
	pool_open(fx);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.blocks_total, 2 * BPC);
	pool_close(fx);

	/* A chunk of two granularities, a cap of exactly one chunk. */
	fx->params.va_bytes = 0;
	fx->params.capacity_blocks = 33;
	fx->params.chunk_bytes = 2 * GRAN;
	fx->params.max_mapped_bytes = 2 * GRAN;
	pool_open(fx);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.chunk_bytes, 2 * GRAN);
	EXPECT_U64(st.blocks_per_chunk, 2 * BPC);
	EXPECT_U64(st.blocks_total, 4 * BPC);
	EXPECT_U64(st.chunks_total, 2);
	ALLOC_OK(fx->pool, 1, &id);
	pool_close(fx);

	/* One block per chunk. */
	fx->params.chunk_bytes = 0;
	fx->params.max_mapped_bytes = 0;
	fx->params.block_bytes = GRAN;
	fx->params.capacity_blocks = 3;
	pool_open(fx);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.blocks_per_chunk, 1);
	EXPECT_U64(st.blocks_total, 3);
	ALLOC_OK(fx->pool, 1, &id);
	pool_close(fx);

	assert_int_equal(kvc_pool_destroy(NULL), 0);
}

static void test_backend_open_host_invalid(void **state)
{
	struct kvc_backend *be = NULL;
	int err;

	(void)state;
	err = kvc_backend_open_host(3 * 4096, &be);
	if (err != -EINVAL)
		fail_msg("granularity 12288 (not a power of two): %d, "
			 "expected -EINVAL",
			 err);
	err = kvc_backend_open_host(1024, &be);
	if (err != -EINVAL)
		fail_msg("granularity 1024 (below the page size): %d, "
			 "expected -EINVAL",
			 err);
	assert_true(kvc_last_error()[0] != '\0');
	assert_int_equal(kvc_backend_open_host(0, &be), 0);
	EXPECT_U64(kvc_backend_granularity(be), KVC_HOST_GRANULARITY);
	assert_string_equal(kvc_backend_name(be), "host");
	kvc_backend_close(be);
}

/* A pool that opens and owns its backend. */
static void test_pool_owns_backend(void **state)
{
	struct fixture *fx = *state;
	struct kvc_backend *be;
	uint32_t id;
	uint8_t *p;

	fx->params.backend = NULL;
	fx->params.backend_kind = KVC_BACKEND_HOST;
	fx->params.block_bytes = 64 << 10;
	fx->params.capacity_blocks = 64;
	pool_open(fx);
	be = kvc_pool_backend(fx->pool);
	assert_non_null(be);
	assert_string_equal(kvc_backend_name(be), "host");
	EXPECT_U64(kvc_backend_granularity(be), KVC_HOST_GRANULARITY);
	EXPECT_U64(stats_of(fx->pool, NULL).chunk_bytes, KVC_HOST_GRANULARITY);
	ALLOC_OK(fx->pool, 1, &id);
	p = block_ptr(fx->pool, id);
	memset(p, 0x7e, 64 << 10);
	assert_int_equal(p[(64 << 10) - 1], 0x7e);
	pool_close(fx);
}

static void *last_error_thread(void *arg)
{
	*(bool *)arg = kvc_last_error()[0] == '\0';
	return NULL;
}

static void test_last_error_per_thread(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool *pool = NULL;
	bool empty = false;
	pthread_t t;

	fx->params.block_bytes = 0;
	assert_int_equal(kvc_pool_create(&fx->params, &pool), -EINVAL);
	assert_true(kvc_last_error()[0] != '\0');
	assert_int_equal(pthread_create(&t, NULL, last_error_thread, &empty),
			 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	if (!empty)
		fail_msg("a failure on one thread shows in another thread's "
			 "kvc_last_error()");
}

/* ------------------------------------------------------------------ */
/* alloc / free basics */

static void test_alloc_free_basics(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats st;
	uint32_t ids[16 * 16], id, i;
	uint64_t base, addr, total;
	uint8_t *seen;

	pool_open(fx);
	assert_ptr_equal(kvc_pool_backend(fx->pool), fx->be);
	assert_null(kvc_pool_stats_path(fx->pool));
	base = kvc_pool_base(fx->pool);
	assert_true(base != 0);
	st = stats_of(fx->pool, NULL);
	total = st.blocks_total;
	EXPECT_U64(total, 16 * BPC);
	EXPECT_U64(st.chunks_mapped, 0);
	EXPECT_U64(st.backend_map, 0);

	/* One block. */
	ALLOC_OK(fx->pool, 1, &id);
	assert_true(id < total);
	assert_true(kvc_pool_is_live(fx->pool, id));
	assert_int_equal(kvc_pool_block_addr(fx->pool, id, &addr), 0);
	CHECK(fx->pool);
	EXPECT_U64(addr, base + id * BLOCK);
	memset((void *)(uintptr_t)addr, 0xab, BLOCK);
	assert_int_equal(((uint8_t *)(uintptr_t)addr)[BLOCK - 1], 0xab);
	FREE_OK(fx->pool, 1, &id);
	assert_false(kvc_pool_is_live(fx->pool, id));
	addr = 12345;
	assert_int_equal(kvc_pool_block_addr(fx->pool, id, &addr), -EINVAL);
	CHECK(fx->pool);

	/* The whole capacity: unique ids, all in range, right addresses. */
	ALLOC_OK(fx->pool, (uint32_t)total, ids);
	seen = calloc(total, 1);
	assert_non_null(seen);
	for (i = 0; i < total; i++) {
		if (ids[i] >= total)
			fail_msg("id %u out of range [0, %" PRIu64 ")", ids[i],
				 total);
		if (seen[ids[i]])
			fail_msg("id %u handed out twice", ids[i]);
		seen[ids[i]] = 1;
		assert_int_equal(kvc_pool_block_addr(fx->pool, ids[i], &addr),
				 0);
		EXPECT_U64(addr, base + (uint64_t)ids[i] * BLOCK);
		/* Real memory: write the whole block, read both ends. */
		memset((void *)(uintptr_t)addr, (int)(ids[i] & 0xff) | 1,
		       BLOCK);
	}
	free(seen);
	CHECK(fx->pool);
	for (i = 0; i < total; i++) {
		uint8_t *p = block_ptr(fx->pool, ids[i]);

		assert_int_equal(p[0], (ids[i] & 0xff) | 1);
		assert_int_equal(p[BLOCK - 1], (ids[i] & 0xff) | 1);
	}
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.blocks_live, total);
	EXPECT_U64(st.chunks_full, 16);
	FREE_OK(fx->pool, (uint32_t)total, ids);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.blocks_live, 0);
	for (i = 0; i < total; i++)
		assert_false(kvc_pool_is_live(fx->pool, (uint32_t)i));

	/* Ids out of range are never live and have no address. */
	assert_false(kvc_pool_is_live(fx->pool, (uint32_t)total));
	assert_false(kvc_pool_is_live(fx->pool, UINT32_MAX));
	assert_int_equal(kvc_pool_block_addr(fx->pool, (uint32_t)total, &addr),
			 -EINVAL);
	assert_int_equal(kvc_pool_block_addr(fx->pool, UINT32_MAX, &addr),
			 -EINVAL);
	CHECK(fx->pool);
}

static void test_alloc_bad_args(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats before, after;

	pool_open(fx);
	before = stats_of(fx->pool, NULL);
	ALLOC_ERR(fx->pool, 1, NULL, -EINVAL);
	after = stats_of(fx->pool, NULL);
	expect_same_state(&before, NULL, &after, NULL);
	/* "alloc_failures: kvc_pool_alloc() calls that returned an error" */
	EXPECT_U64(after.alloc_failures, before.alloc_failures + 1);
	FREE_ERR(fx->pool, 2, NULL, -EINVAL);
	after = stats_of(fx->pool, NULL);
	expect_same_state(&before, NULL, &after, NULL);
}

/* Data in a block survives allocs and frees of other blocks. */
static void test_data_survives(void **state)
{
	struct fixture *fx = *state;
	uint32_t ids[64], more[40], odd[32], i, j, n_odd = 0;
	uint64_t *p;

	fx->params.capacity_blocks = 8 * BPC;
	fx->params.empty_chunks_kept = 1;
	pool_open(fx);
	ALLOC_OK(fx->pool, 64, ids);
	for (i = 0; i < 64; i++) {
		p = block_ptr(fx->pool, ids[i]);
		for (j = 0; j < BLOCK / 8; j++)
			p[j] = ((uint64_t)ids[i] << 32) | j;
	}
	/* Free every other block, then churn. */
	for (i = 1; i < 64; i += 2)
		odd[n_odd++] = ids[i];
	FREE_OK(fx->pool, n_odd, odd);
	for (i = 0; i < 10; i++) {
		ALLOC_OK(fx->pool, 40, more);
		for (j = 0; j < 40; j++)
			memset(block_ptr(fx->pool, more[j]), 0xee, BLOCK);
		FREE_OK(fx->pool, 40, more);
	}
	for (i = 0; i < 64; i += 2) {
		assert_true(kvc_pool_is_live(fx->pool, ids[i]));
		p = block_ptr(fx->pool, ids[i]);
		for (j = 0; j < BLOCK / 8; j++)
			if (p[j] != (((uint64_t)ids[i] << 32) | j))
				fail_msg("block %u word %u: 0x%" PRIx64
					 ", expected 0x%" PRIx64,
					 ids[i], j, p[j],
					 ((uint64_t)ids[i] << 32) | j);
	}
}

/* ------------------------------------------------------------------ */
/* placement policy */

/*
 * The batch @ids must have put want[k] blocks in chunk ch[k] and none
 * anywhere else.
 */
static void expect_placement(const uint32_t *ids, uint32_t n,
			     const uint32_t *ch, const uint32_t *want,
			     uint32_t nch, uint32_t nchunks, const char *what)
{
	uint32_t *counts = calloc(nchunks, sizeof(*counts)), c, k;

	assert_non_null(counts);
	count_per_chunk(ids, n, BPC, counts, nchunks);
	for (c = 0; c < nchunks; c++) {
		uint32_t expected = 0;

		for (k = 0; k < nch; k++)
			if (ch[k] == c)
				expected = want[k];
		if (counts[c] != expected)
			fail_msg("%s: chunk %u got %u new blocks, expected %u "
				 "(fullest partly used chunk first)",
				 what, c, counts[c], expected);
	}
	free(counts);
}

static void test_fresh_pool_packs(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats st;
	uint32_t ids[20], counts[16], c, full = 0, four = 0;

	pool_open(fx);
	ALLOC_OK(fx->pool, 20, ids);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.chunks_mapped, 2);
	EXPECT_U64(st.backend_map, 2);
	count_per_chunk(ids, 20, BPC, counts, 16);
	for (c = 0; c < 16; c++) {
		full += counts[c] == BPC;
		four += counts[c] == 4;
	}
	if (full != 1 || four != 1)
		fail_msg("20 blocks in a fresh pool should fill one chunk and "
			 "put 4 in another (got %u full, %u with 4)",
			 full, four);
}

static void test_fullest_partial_first(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats st;
	uint32_t ids[4 * 16], freed[16], ch[6], k;
	uint64_t map0, hist[KVC_FILL_BUCKETS];
	uint64_t want_hist[KVC_FILL_BUCKETS] = { 0 };

	fx->params.capacity_blocks = 6 * BPC;
	fx->params.empty_chunks_kept = 4;
	pool_open(fx);
	/* Four full chunks; call them L0..L3 in id order. */
	ALLOC_OK(fx->pool, 4 * BPC, ids);
	assert_int_equal(full_chunks(ids, 4 * BPC, BPC, ch, 6), 4);

	/* L0: 4 live, L1: 12, L2: 8, L3: empty (kept mapped). */
	chunk_ids(freed, ch[0], 4, 12);
	FREE_OK(fx->pool, 12, freed);
	chunk_ids(freed, ch[1], 12, 4);
	FREE_OK(fx->pool, 4, freed);
	chunk_ids(freed, ch[2], 8, 8);
	FREE_OK(fx->pool, 8, freed);
	chunk_ids(freed, ch[3], 0, 16);
	FREE_OK(fx->pool, 16, freed);

	st = stats_of(fx->pool, hist);
	EXPECT_U64(st.chunks_mapped, 4);
	EXPECT_U64(st.chunks_empty, 1);
	EXPECT_U64(st.chunks_partial, 3);
	EXPECT_U64(st.chunks_full, 0);
	EXPECT_U64(st.backend_unmap, 0);
	want_hist[0] = 1; /* empty */
	want_hist[3] = 1; /* 4/16 = 25% */
	want_hist[5] = 1; /* 8/16 = 50% */
	want_hist[8] = 1; /* 12/16 = 75% */
	expect_hist(hist, want_hist);
	map0 = st.backend_map;

	ALLOC_OK(fx->pool, 1, ids);
	if (ids[0] / BPC != ch[1])
		fail_msg("1 block went to chunk %u (id %u); the fullest partly "
			 "used chunk is %u (12 of 16 live)",
			 ids[0] / BPC, ids[0], ch[1]);

	/* 3 fill L1, then 2 from L2 (8 live) before L0 (4 live). */
	ALLOC_OK(fx->pool, 5, ids);
	expect_placement(ids, 5, ch, (uint32_t[4]){ 0, 3, 2, 0 }, 4, 6,
			 "batch of 5");

	/* L0: 4, L2: 10 -> 6 to L2, then 2 to L0. */
	ALLOC_OK(fx->pool, 8, ids);
	expect_placement(ids, 8, ch, (uint32_t[4]){ 2, 0, 6, 0 }, 4, 6,
			 "batch of 8");

	/* L0 (6 live) before the empty mapped L3. */
	ALLOC_OK(fx->pool, 10, ids);
	expect_placement(ids, 10, ch, (uint32_t[4]){ 10, 0, 0, 0 }, 4, 6,
			 "batch of 10");

	/* Then the empty mapped chunk, with no new map. */
	ALLOC_OK(fx->pool, 3, ids);
	expect_placement(ids, 3, ch, (uint32_t[4]){ 0, 0, 0, 3 }, 4, 6,
			 "batch of 3 (empty mapped chunk)");
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.backend_map, map0);
	EXPECT_U64(st.chunks_mapped, 4);

	ALLOC_OK(fx->pool, 13, ids);
	expect_placement(ids, 13, ch, (uint32_t[4]){ 0, 0, 0, 13 }, 4, 6,
			 "batch of 13");
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.backend_map, map0);
	EXPECT_U64(st.chunks_full, 4);

	/* Only now is a new chunk mapped. */
	ALLOC_OK(fx->pool, 1, ids);
	for (k = 0; k < 4; k++)
		if (ids[0] / BPC == ch[k])
			fail_msg("block %u came from full chunk %u", ids[0],
				 ch[k]);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.backend_map, map0 + 1);
	EXPECT_U64(st.chunks_mapped, 5);
	EXPECT_U64(st.chunks_partial, 1);
}

/* ------------------------------------------------------------------ */
/* all-or-nothing */

static void test_alloc_enomem_capacity(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats before, after;
	uint64_t hb[KVC_FILL_BUCKETS], ha[KVC_FILL_BUCKETS];
	uint32_t *ids = calloc(512, sizeof(*ids));
	uint8_t *live;

	assert_non_null(ids);
	pool_open(fx); /* 256 blocks */

	before = stats_of(fx->pool, hb);
	ALLOC_ERR(fx->pool, 257, ids, -ENOMEM);
	after = stats_of(fx->pool, ha);
	expect_same_state(&before, hb, &after, ha);
	EXPECT_U64(after.chunks_mapped, 0);
	EXPECT_U64(after.alloc_failures, 1);

	ALLOC_OK(fx->pool, 200, ids);
	before = stats_of(fx->pool, hb);
	live = live_set(fx->pool, 256);
	ALLOC_ERR(fx->pool, 57, ids + 200, -ENOMEM);
	after = stats_of(fx->pool, ha);
	expect_same_state(&before, hb, &after, ha);
	expect_same_live_set(fx->pool, live, 256);
	EXPECT_U64(after.alloc_failures, 2);
	free(live);

	ALLOC_OK(fx->pool, 56, ids + 200);
	ALLOC_ERR(fx->pool, 1, ids + 256, -ENOMEM);
	ALLOC_ERR(fx->pool, UINT32_MAX, ids + 256, -ENOMEM);
	after = stats_of(fx->pool, NULL);
	EXPECT_U64(after.blocks_live, 256);
	EXPECT_U64(after.alloc_failures, 4);
	EXPECT_U64(after.alloc_calls, 2);
	FREE_OK(fx->pool, 256, ids);
	free(ids);
}

static void test_alloc_enomem_mapped_cap(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats before, after;
	uint64_t hb[KVC_FILL_BUCKETS], ha[KVC_FILL_BUCKETS];
	uint32_t ids[128], chunk_ids[16], n = 0, i, c0;
	uint8_t *live;

	fx->params.capacity_blocks = 8 * BPC;
	fx->params.max_mapped_bytes = 3 * GRAN;
	fx->params.empty_chunks_kept = 0;
	pool_open(fx);

	/* 49 blocks need 4 chunks: refused, and nothing stays mapped. */
	before = stats_of(fx->pool, hb);
	ALLOC_ERR(fx->pool, 49, ids, -ENOMEM);
	after = stats_of(fx->pool, ha);
	expect_same_state(&before, hb, &after, ha);
	EXPECT_U64(after.chunks_mapped, 0);
	EXPECT_U64(after.bytes_mapped, 0);

	ALLOC_OK(fx->pool, 40, ids);
	n = 40;
	before = stats_of(fx->pool, hb);
	EXPECT_U64(before.chunks_mapped, 3);
	live = live_set(fx->pool, 8 * BPC);
	ALLOC_ERR(fx->pool, 9, ids + n, -ENOMEM);
	after = stats_of(fx->pool, ha);
	expect_same_state(&before, hb, &after, ha);
	expect_same_live_set(fx->pool, live, 8 * BPC);
	free(live);

	ALLOC_OK(fx->pool, 8, ids + n);
	n += 8;
	ALLOC_ERR(fx->pool, 1, ids + n, -ENOMEM);
	after = stats_of(fx->pool, NULL);
	EXPECT_U64(after.blocks_live, 48);
	EXPECT_U64(after.chunks_mapped, 3);
	EXPECT_U64(after.alloc_failures, 3);

	/* Empty one chunk (watermark 0: unmapped), then there is room. */
	c0 = ids[0] / BPC;
	for (i = 0; i < n; i++)
		if (ids[i] / BPC == c0)
			chunk_ids[(ids[i] % BPC)] = ids[i];
	FREE_OK(fx->pool, BPC, chunk_ids);
	after = stats_of(fx->pool, NULL);
	EXPECT_U64(after.chunks_mapped, 2);
	ALLOC_OK(fx->pool, BPC, chunk_ids);
	after = stats_of(fx->pool, NULL);
	EXPECT_U64(after.chunks_mapped, 3);
	EXPECT_U64(after.bytes_mapped_hwm, 3 * GRAN);
	ALLOC_ERR(fx->pool, 1, ids, -ENOMEM);
}

static void test_free_invalid(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats before, after;
	uint64_t hb[KVC_FILL_BUCKETS], ha[KVC_FILL_BUCKETS], total;
	uint32_t ids[20], bad[BPC + 1], c0, c1, notlive = UINT32_MAX;
	uint32_t unmapped = UINT32_MAX, i;
	uint8_t *live;

	fx->params.capacity_blocks = 4 * BPC;
	fx->params.empty_chunks_kept = 0;
	pool_open(fx);
	ALLOC_OK(fx->pool, BPC, ids); /* one full chunk */
	ALLOC_OK(fx->pool, 4, ids + BPC); /* four in another */
	total = stats_of(fx->pool, NULL).blocks_total;
	c0 = ids[0] / BPC;
	c1 = ids[BPC] / BPC;
	for (i = c1 * BPC; i < (c1 + 1) * BPC; i++)
		if (!kvc_pool_is_live(fx->pool, i))
			notlive = i;
	for (i = 0; i < 4; i++)
		if (i != c0 && i != c1)
			unmapped = i * BPC + 3;
	assert_true(notlive != UINT32_MAX && unmapped != UINT32_MAX);

	before = stats_of(fx->pool, hb);
	live = live_set(fx->pool, total);

#define TRY_BAD(desc, n, ...)                                          \
	do {                                                           \
		uint32_t b_[] = { __VA_ARGS__ };                       \
		print_message("  bad free: %s\n", desc);               \
		FREE_ERR(fx->pool, n, b_, -EINVAL);                    \
		after = stats_of(fx->pool, ha);                        \
		expect_same_state(&before, hb, &after, ha);            \
		EXPECT_U64(after.backend_unmap, before.backend_unmap); \
		expect_same_live_set(fx->pool, live, total);           \
	} while (0)

	TRY_BAD("id == blocks_total", 3, ids[0], ids[1], (uint32_t)total);
	TRY_BAD("id UINT32_MAX", 2, ids[2], UINT32_MAX);
	TRY_BAD("a free id in a mapped chunk", 3, ids[0], ids[BPC], notlive);
	TRY_BAD("an id in a chunk never mapped", 2, ids[3], unmapped);
	TRY_BAD("an id twice in a row", 2, ids[BPC], ids[BPC]);
	TRY_BAD("an id first and last", 4, ids[5], ids[6], ids[7], ids[5]);
#undef TRY_BAD

	/* A whole chunk plus a duplicate: nothing freed, nothing unmapped. */
	memcpy(bad, ids, BPC * sizeof(*bad));
	bad[BPC] = ids[0];
	FREE_ERR(fx->pool, BPC + 1, bad, -EINVAL);
	after = stats_of(fx->pool, ha);
	expect_same_state(&before, hb, &after, ha);
	EXPECT_U64(after.backend_unmap, before.backend_unmap);
	EXPECT_U64(after.chunks_mapped, 2);
	expect_same_live_set(fx->pool, live, total);
	free(live);

	FREE_OK(fx->pool, 20, ids);
	after = stats_of(fx->pool, NULL);
	EXPECT_U64(after.blocks_live, 0);
	EXPECT_U64(after.free_calls, 1);
	/* Double free. */
	FREE_ERR(fx->pool, 1, ids, -EINVAL);
	EXPECT_U64(stats_of(fx->pool, NULL).free_calls, 1);
}

/* ------------------------------------------------------------------ */
/* owner tags */

static void test_owner_tags(void **state)
{
	struct fixture *fx = *state;
	uint32_t ids[BPC], again[3], i, c0;
	uint64_t owner;

	fx->params.capacity_blocks = 4 * BPC;
	pool_open(fx);
	ALLOC_OK(fx->pool, BPC, ids); /* exactly one full chunk */
	c0 = ids[0] / BPC;
	for (i = 0; i < BPC; i++) {
		owner = 77;
		assert_int_equal(kvc_pool_get_owner(fx->pool, ids[i], &owner),
				 0);
		CHECK(fx->pool);
		if (owner != 0)
			fail_msg("new block %u has owner tag 0x%" PRIx64
				 ", expected 0",
				 ids[i], owner);
	}
	for (i = 0; i < BPC; i++) {
		assert_int_equal(
			kvc_pool_set_owner(fx->pool, ids[i],
					   i == 0 ? UINT64_MAX : 0x1000 + i),
			0);
		CHECK(fx->pool);
	}
	for (i = 0; i < BPC; i++) {
		assert_int_equal(kvc_pool_get_owner(fx->pool, ids[i], &owner),
				 0);
		CHECK(fx->pool);
		EXPECT_U64(owner, i == 0 ? UINT64_MAX : 0x1000 + i);
	}

	/* Not live: free id, out of range. */
	assert_int_equal(kvc_pool_set_owner(fx->pool, (c0 + 1) % 4 * BPC, 5),
			 -EINVAL);
	CHECK(fx->pool);
	assert_int_equal(
		kvc_pool_get_owner(fx->pool, (c0 + 1) % 4 * BPC, &owner),
		-EINVAL);
	CHECK(fx->pool);
	assert_int_equal(kvc_pool_set_owner(fx->pool, 4 * BPC, 5), -EINVAL);
	CHECK(fx->pool);
	assert_int_equal(kvc_pool_get_owner(fx->pool, UINT32_MAX, &owner),
			 -EINVAL);
	CHECK(fx->pool);
	assert_true(kvc_last_error()[0] != '\0');

	/* Freed blocks have no tag to read or set. */
	FREE_OK(fx->pool, 1, &ids[5]);
	assert_int_equal(kvc_pool_get_owner(fx->pool, ids[5], &owner), -EINVAL);
	CHECK(fx->pool);
	assert_int_equal(kvc_pool_set_owner(fx->pool, ids[5], 9), -EINVAL);
	CHECK(fx->pool);

	/* The only hole in the only partly used chunk: same id comes back. */
	ALLOC_OK(fx->pool, 1, again);
	EXPECT_U64(again[0], ids[5]);
	assert_int_equal(kvc_pool_get_owner(fx->pool, again[0], &owner), 0);
	CHECK(fx->pool);
	if (owner != 0)
		fail_msg("re-allocated block %u kept owner tag 0x%" PRIx64,
			 again[0], owner);

	/* Three at once. */
	again[0] = ids[0];
	again[1] = ids[9];
	again[2] = ids[15];
	FREE_OK(fx->pool, 3, again);
	ALLOC_OK(fx->pool, 3, again);
	for (i = 0; i < 3; i++) {
		assert_true(again[i] == ids[0] || again[i] == ids[9] ||
			    again[i] == ids[15]);
		assert_int_equal(kvc_pool_get_owner(fx->pool, again[i], &owner),
				 0);
		CHECK(fx->pool);
		if (owner != 0)
			fail_msg(
				"re-allocated block %u kept owner tag 0x%" PRIx64,
				again[i], owner);
	}
	/* The others kept theirs. */
	assert_int_equal(kvc_pool_get_owner(fx->pool, ids[1], &owner), 0);
	EXPECT_U64(owner, 0x1001);
}

/* ------------------------------------------------------------------ */
/* watermark */

static void test_watermark_zero(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats st;
	uint32_t ids[2 * BPC], ch[16], sparse[BPC], i;

	fx->params.empty_chunks_kept = 0;
	pool_open(fx);
	ALLOC_OK(fx->pool, BPC, ids);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.chunks_mapped, 1);
	EXPECT_U64(st.backend_map, 1);
	FREE_OK(fx->pool, BPC, ids);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.chunks_mapped, 0);
	EXPECT_U64(st.chunks_empty, 0);
	EXPECT_U64(st.bytes_mapped, 0);
	EXPECT_U64(st.blocks_free_mapped, 0);
	EXPECT_U64(st.backend_unmap, 1);
	EXPECT_U64(st.backend_release, 1);

	/* A chunk that only gets sparser stays mapped until it empties. */
	ALLOC_OK(fx->pool, 2 * BPC, ids);
	assert_int_equal(full_chunks(ids, 2 * BPC, BPC, ch, 16), 2);
	chunk_ids(sparse, ch[0], 0, BPC);
	for (i = 0; i < BPC - 1; i++) {
		FREE_OK(fx->pool, 1, &sparse[i]);
		st = stats_of(fx->pool, NULL);
		EXPECT_U64(st.chunks_mapped, 2);
		EXPECT_U64(st.backend_unmap, 1);
	}
	FREE_OK(fx->pool, 1, &sparse[BPC - 1]);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.blocks_live, BPC);
	EXPECT_U64(st.chunks_mapped, 1);
	EXPECT_U64(st.chunks_empty, 0);
	EXPECT_U64(st.backend_unmap, 2);
}

static void test_watermark_keeps_k(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats st;
	uint32_t all[5 * 16], ids[BPC], ch[6], k;

	fx->params.capacity_blocks = 6 * BPC;
	fx->params.empty_chunks_kept = 2;
	pool_open(fx);
	ALLOC_OK(fx->pool, 5 * BPC, all);
	assert_int_equal(full_chunks(all, 5 * BPC, BPC, ch, 6), 5);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.chunks_mapped, 5);
	EXPECT_U64(st.chunks_full, 5);

	/* Two chunks empty: both kept. */
	for (k = 0; k < 2; k++) {
		chunk_ids(ids, ch[k], 0, BPC);
		FREE_OK(fx->pool, BPC, ids);
		st = stats_of(fx->pool, NULL);
		EXPECT_U64(st.chunks_mapped, 5);
		EXPECT_U64(st.chunks_empty, k + 1);
		EXPECT_U64(st.backend_unmap, 0);
	}
	/* Two more: over the watermark, unmapped at once. */
	for (k = 2; k < 4; k++) {
		chunk_ids(ids, ch[k], 0, BPC);
		FREE_OK(fx->pool, BPC, ids);
		st = stats_of(fx->pool, NULL);
		EXPECT_U64(st.chunks_mapped, 5 - (k - 1));
		EXPECT_U64(st.chunks_empty, 2);
		EXPECT_U64(st.backend_unmap, k - 1);
		EXPECT_U64(st.blocks_free_mapped, 2 * BPC);
	}
	/* Reuse of the kept chunks maps nothing. */
	ALLOC_OK(fx->pool, 2 * BPC, all);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.backend_map, 5);
	EXPECT_U64(st.chunks_empty, 0);
	EXPECT_U64(st.chunks_full, 3);
}

static void cycle_at_boundary(struct fixture *fx, uint32_t kept, uint64_t *maps,
			      uint64_t *unmaps)
{
	struct kvc_pool_stats st;
	uint32_t ids[BPC], id, i;

	fx->params.capacity_blocks = 4 * BPC;
	fx->params.empty_chunks_kept = kept;
	pool_open(fx);
	ALLOC_OK(fx->pool, BPC, ids); /* one full chunk */
	for (i = 0; i < 100; i++) {
		ALLOC_OK(fx->pool, 1, &id); /* the 17th block: next chunk */
		FREE_OK(fx->pool, 1, &id); /* and it empties again */
	}
	st = stats_of(fx->pool, NULL);
	*maps = st.backend_map;
	*unmaps = st.backend_unmap;
	EXPECT_U64(st.alloc_calls, 101);
	EXPECT_U64(st.free_calls, 100);
	pool_close(fx);
}

static void test_watermark_hysteresis(void **state)
{
	struct fixture *fx = *state;
	uint64_t maps, unmaps;

	cycle_at_boundary(fx, 1, &maps, &unmaps);
	if (maps != 2 || unmaps != 0)
		fail_msg("watermark 1: 100 alloc/free cycles at a chunk "
			 "boundary made %" PRIu64 " maps and %" PRIu64
			 " unmaps, expected 2 and 0",
			 maps, unmaps);
	cycle_at_boundary(fx, 0, &maps, &unmaps);
	if (maps != 101 || unmaps != 100)
		fail_msg("watermark 0: 100 cycles made %" PRIu64 " maps and "
			 "%" PRIu64 " unmaps, expected 101 and 100",
			 maps, unmaps);
}

static void test_trim(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats st;
	uint32_t ids[4 * 16], some[2 * 16], ch[8], i, k;
	uint8_t *p;

	fx->params.capacity_blocks = 8 * BPC;
	fx->params.empty_chunks_kept = 4;
	pool_open(fx);
	ALLOC_OK(fx->pool, 4 * BPC, ids);
	FREE_OK(fx->pool, 4 * BPC, ids);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.chunks_mapped, 4);
	EXPECT_U64(st.chunks_empty, 4);

	assert_int_equal(kvc_pool_trim(fx->pool, 2), 0);
	CHECK(fx->pool);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.chunks_mapped, 2);
	EXPECT_U64(st.chunks_empty, 2);
	EXPECT_U64(st.backend_unmap, 2);
	assert_int_equal(kvc_pool_trim(fx->pool, 5), 0); /* above: no-op */
	CHECK(fx->pool);
	EXPECT_U64(stats_of(fx->pool, NULL).chunks_mapped, 2);
	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	CHECK(fx->pool);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.chunks_mapped, 0);
	EXPECT_U64(st.chunks_empty, 0);
	EXPECT_U64(st.backend_unmap, 4);
	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0); /* nothing left */
	CHECK(fx->pool);

	/* Trim never touches chunks with live blocks, nor their data. */
	ALLOC_OK(fx->pool, 4 * BPC, ids);
	assert_int_equal(full_chunks(ids, 4 * BPC, BPC, ch, 8), 4);
	for (i = 0; i < 4 * BPC; i++)
		memset(block_ptr(fx->pool, ids[i]), (int)(ids[i] & 0x7f) + 1,
		       BLOCK);
	/* ch[0] full, ch[1] half, ch[2] and ch[3] empty (kept). */
	chunk_ids(some, ch[1], 8, 8);
	FREE_OK(fx->pool, 8, some);
	chunk_ids(some, ch[2], 0, BPC);
	chunk_ids(some + BPC, ch[3], 0, BPC);
	FREE_OK(fx->pool, 2 * BPC, some);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.chunks_empty, 2);
	EXPECT_U64(st.chunks_mapped, 4);
	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	CHECK(fx->pool);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.chunks_mapped, 2);
	EXPECT_U64(st.chunks_empty, 0);
	EXPECT_U64(st.chunks_partial, 1);
	EXPECT_U64(st.chunks_full, 1);
	EXPECT_U64(st.blocks_live, BPC + 8);
	for (k = 0; k < 2; k++) {
		for (i = 0; i < (k ? 8 : BPC); i++) {
			uint32_t id = ch[k] * BPC + i;

			assert_true(kvc_pool_is_live(fx->pool, id));
			p = block_ptr(fx->pool, id);
			if (p[0] != (id & 0x7f) + 1 ||
			    p[BLOCK - 1] != (id & 0x7f) + 1)
				fail_msg("block %u lost its data in trim", id);
		}
	}
}

/* ------------------------------------------------------------------ */
/* stats */

static void test_stats_counters(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats st;
	uint64_t hist[KVC_FILL_BUCKETS];
	uint64_t want[KVC_FILL_BUCKETS] = { 0 };
	uint32_t a[20], full[BPC], four[4], more[48], nf = 0, n4 = 0, i;
	uint32_t counts[16], cf = UINT32_MAX;

	fx->params.capacity_blocks = 250; /* rounds up to 16 chunks */
	fx->params.empty_chunks_kept = 1;
	pool_open(fx);
	st = stats_of(fx->pool, hist);
	EXPECT_U64(st.block_bytes, BLOCK);
	EXPECT_U64(st.chunk_bytes, GRAN);
	EXPECT_U64(st.blocks_per_chunk, BPC);
	EXPECT_U64(st.blocks_total, 256);
	EXPECT_U64(st.blocks_live, 0);
	EXPECT_U64(st.blocks_free, 256);
	EXPECT_U64(st.blocks_free_mapped, 0);
	EXPECT_U64(st.chunks_total, 16);
	EXPECT_U64(st.chunks_mapped, 0);
	EXPECT_U64(st.chunks_empty, 0);
	EXPECT_U64(st.chunks_partial, 0);
	EXPECT_U64(st.chunks_full, 0);
	EXPECT_U64(st.bytes_reserved, 16 * GRAN);
	EXPECT_U64(st.bytes_mapped, 0);
	EXPECT_U64(st.bytes_live, 0);
	EXPECT_U64(st.blocks_live_hwm, 0);
	EXPECT_U64(st.bytes_mapped_hwm, 0);
	EXPECT_U64(st.alloc_calls, 0);
	EXPECT_U64(st.free_calls, 0);
	EXPECT_U64(st.alloc_failures, 0);
	EXPECT_U64(st.unmap_failures, 0);
	EXPECT_U64(st.backend_create, 0);
	EXPECT_U64(st.backend_map, 0);
	EXPECT_U64(st.backend_unmap, 0);
	EXPECT_U64(st.backend_release, 0);
	EXPECT_U64(st.backend_copy, 0);
	expect_hist(hist, want);
	kvc_pool_get_stats(fx->pool, &st, NULL); /* NULL histogram is fine */
	CHECK(fx->pool);

	ALLOC_OK(fx->pool, 20, a);
	count_per_chunk(a, 20, BPC, counts, 16);
	for (i = 0; i < 20; i++) {
		if (counts[a[i] / BPC] == BPC) {
			full[nf++] = a[i];
			cf = a[i] / BPC;
		} else {
			four[n4++] = a[i];
		}
	}
	assert_int_equal(nf, BPC);
	assert_int_equal(n4, 4);
	st = stats_of(fx->pool, hist);
	EXPECT_U64(st.blocks_live, 20);
	EXPECT_U64(st.blocks_free, 236);
	EXPECT_U64(st.blocks_free_mapped, 12);
	EXPECT_U64(st.chunks_mapped, 2);
	EXPECT_U64(st.chunks_full, 1);
	EXPECT_U64(st.chunks_partial, 1);
	EXPECT_U64(st.chunks_empty, 0);
	EXPECT_U64(st.bytes_mapped, 2 * GRAN);
	EXPECT_U64(st.bytes_live, 20 * BLOCK);
	EXPECT_U64(st.blocks_live_hwm, 20);
	EXPECT_U64(st.bytes_mapped_hwm, 2 * GRAN);
	EXPECT_U64(st.alloc_calls, 1);
	EXPECT_U64(st.backend_map, 2);
	EXPECT_U64(st.backend_create, 2);
	want[3] = 1; /* 4/16 = 25% */
	want[11] = 1; /* full */
	expect_hist(hist, want);

	/* The partial chunk empties: kept (watermark 1). */
	FREE_OK(fx->pool, 4, four);
	st = stats_of(fx->pool, hist);
	EXPECT_U64(st.blocks_live, 16);
	EXPECT_U64(st.blocks_free_mapped, 16);
	EXPECT_U64(st.chunks_mapped, 2);
	EXPECT_U64(st.chunks_empty, 1);
	EXPECT_U64(st.chunks_partial, 0);
	EXPECT_U64(st.chunks_full, 1);
	EXPECT_U64(st.free_calls, 1);
	EXPECT_U64(st.backend_unmap, 0);
	memset(want, 0, sizeof(want));
	want[0] = 1;
	want[11] = 1;
	expect_hist(hist, want);

	/* Half of the full chunk. */
	FREE_OK(fx->pool, 8, full);
	st = stats_of(fx->pool, hist);
	EXPECT_U64(st.blocks_live, 8);
	EXPECT_U64(st.blocks_free, 248);
	EXPECT_U64(st.blocks_free_mapped, 24);
	EXPECT_U64(st.chunks_partial, 1);
	EXPECT_U64(st.chunks_full, 0);
	EXPECT_U64(st.chunks_empty, 1);
	EXPECT_U64(st.bytes_live, 8 * BLOCK);
	EXPECT_U64(st.blocks_live_hwm, 20);
	EXPECT_U64(st.free_calls, 2);
	memset(want, 0, sizeof(want));
	want[0] = 1;
	want[5] = 1; /* 8/16 = 50% is in 41-50% */
	expect_hist(hist, want);

	ALLOC_ERR(fx->pool, 300, more, -ENOMEM);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.alloc_failures, 1);
	EXPECT_U64(st.alloc_calls, 1);

	/* 8 fill the partial chunk, 2 go to the kept empty one. */
	ALLOC_OK(fx->pool, 10, more);
	count_per_chunk(more, 10, BPC, counts, 16);
	EXPECT_U64(counts[cf], 8);
	st = stats_of(fx->pool, hist);
	EXPECT_U64(st.blocks_live, 18);
	EXPECT_U64(st.chunks_mapped, 2);
	EXPECT_U64(st.chunks_full, 1);
	EXPECT_U64(st.chunks_partial, 1);
	EXPECT_U64(st.chunks_empty, 0);
	EXPECT_U64(st.backend_map, 2);
	EXPECT_U64(st.alloc_calls, 2);
	EXPECT_U64(st.blocks_live_hwm, 20);
	memset(want, 0, sizeof(want));
	want[2] = 1; /* 2/16 = 12.5% */
	want[11] = 1;
	expect_hist(hist, want);

	/* 14 then a new chunk of 16. */
	ALLOC_OK(fx->pool, 30, more + 10);
	st = stats_of(fx->pool, hist);
	EXPECT_U64(st.blocks_live, 48);
	EXPECT_U64(st.chunks_mapped, 3);
	EXPECT_U64(st.chunks_full, 3);
	EXPECT_U64(st.blocks_free_mapped, 0);
	EXPECT_U64(st.blocks_live_hwm, 48);
	EXPECT_U64(st.bytes_mapped_hwm, 3 * GRAN);
	EXPECT_U64(st.backend_map, 3);
	memset(want, 0, sizeof(want));
	want[11] = 3;
	expect_hist(hist, want);

	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0); /* nothing empty */
	CHECK(fx->pool);
	EXPECT_U64(stats_of(fx->pool, NULL).chunks_mapped, 3);

	/* Everything back in one batch: three chunks empty, one kept. */
	memcpy(more + 40, full + 8, 8 * sizeof(*more));
	FREE_OK(fx->pool, 48, more);
	st = stats_of(fx->pool, hist);
	EXPECT_U64(st.blocks_live, 0);
	EXPECT_U64(st.chunks_mapped, 1);
	EXPECT_U64(st.chunks_empty, 1);
	EXPECT_U64(st.bytes_mapped, GRAN);
	EXPECT_U64(st.backend_unmap, 2);
	EXPECT_U64(st.free_calls, 3);
	EXPECT_U64(st.bytes_mapped_hwm, 3 * GRAN);
	EXPECT_U64(st.blocks_live_hwm, 48);
	memset(want, 0, sizeof(want));
	want[0] = 1;
	expect_hist(hist, want);

	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	CHECK(fx->pool);
	st = stats_of(fx->pool, hist);
	EXPECT_U64(st.chunks_mapped, 0);
	EXPECT_U64(st.backend_unmap, 3);
	/* Host: one memfd extent per map, one hole punch per unmap. */
	EXPECT_U64(st.backend_create, st.backend_map);
	EXPECT_U64(st.backend_release, st.backend_unmap);
	EXPECT_U64(st.unmap_failures, 0);
	EXPECT_U64(st.backend_copy, 0);
	memset(want, 0, sizeof(want));
	expect_hist(hist, want);
}

/* Set chunk c of an all-allocated pool to fill[c] live blocks. */
static void shape_chunks(struct kvc_pool *pool, uint32_t bpc,
			 const uint32_t *fill, uint32_t nchunks)
{
	uint32_t *ids = calloc(bpc, sizeof(*ids));
	uint32_t c;

	assert_non_null(ids);
	for (c = 0; c < nchunks; c++) {
		if (fill[c] == bpc)
			continue;
		range_ids(ids, c * bpc + fill[c], bpc - fill[c]);
		FREE_OK(pool, bpc - fill[c], ids);
	}
	free(ids);
}

static void test_fill_histogram_16(void **state)
{
	struct fixture *fx = *state;
	static const uint32_t fill[8] = { 0, 1, 2, 4, 7, 12, 15, 16 };
	uint64_t want[KVC_FILL_BUCKETS] = { 0 }, hist[KVC_FILL_BUCKETS];
	uint32_t ids[8 * 16];
	struct kvc_pool_stats st;

	fx->params.capacity_blocks = 8 * BPC;
	fx->params.empty_chunks_kept = 1;
	pool_open(fx);
	ALLOC_OK(fx->pool, 8 * BPC, ids);
	shape_chunks(fx->pool, BPC, fill, 8);
	st = stats_of(fx->pool, hist);
	want[0] = 1; /* 0 */
	want[1] = 1; /* 1/16 = 6.25% */
	want[2] = 1; /* 2/16 = 12.5% */
	want[3] = 1; /* 4/16 = 25% */
	want[5] = 1; /* 7/16 = 43.75% */
	want[8] = 1; /* 12/16 = 75% */
	want[10] = 1; /* 15/16 = 93.75% */
	want[11] = 1; /* full */
	expect_hist(hist, want);
	EXPECT_U64(st.chunks_mapped, 8);
	EXPECT_U64(st.chunks_empty, 1);
	EXPECT_U64(st.chunks_partial, 6);
	EXPECT_U64(st.chunks_full, 1);
	EXPECT_U64(st.blocks_live, 57);
}

/* 10 blocks per chunk: chunk k holds k live = exactly k * 10%. */
static void test_fill_histogram_exact_tenths(void **state)
{
	struct fixture *fx = *state;
	uint32_t fill[11], ids[110], k;
	uint64_t want[KVC_FILL_BUCKETS] = { 0 }, hist[KVC_FILL_BUCKETS];

	fx->params.chunk_bytes = 5 * GRAN;
	fx->params.block_bytes = 5 * GRAN / 10;
	fx->params.capacity_blocks = 110;
	fx->params.empty_chunks_kept = 1;
	pool_open(fx);
	EXPECT_U64(stats_of(fx->pool, NULL).blocks_per_chunk, 10);
	ALLOC_OK(fx->pool, 110, ids);
	for (k = 0; k < 11; k++)
		fill[k] = k;
	shape_chunks(fx->pool, 10, fill, 11);
	stats_of(fx->pool, hist);
	/* 10% is in 1-10%, 20% in 11-20%, ..., 90% in 81-90%. */
	for (k = 0; k < 10; k++)
		want[k] = 1;
	want[11] = 1;
	expect_hist(hist, want);
}

/* 1024 per chunk: 1 live is not empty, 1023 live is not full. */
static void test_fill_histogram_extremes(void **state)
{
	struct fixture *fx = *state;
	static const uint32_t fill[2] = { 1, 1023 };
	uint64_t want[KVC_FILL_BUCKETS] = { 0 }, hist[KVC_FILL_BUCKETS];
	uint32_t *ids = calloc(2048, sizeof(*ids));

	assert_non_null(ids);
	fx->params.block_bytes = 64;
	fx->params.capacity_blocks = 2048;
	pool_open(fx);
	ALLOC_OK(fx->pool, 2048, ids);
	free(ids);
	shape_chunks(fx->pool, 1024, fill, 2);
	stats_of(fx->pool, hist);
	want[1] = 1;
	want[10] = 1;
	expect_hist(hist, want);
}

/* ------------------------------------------------------------------ */
/* host backend gives physical memory back */

static long status_kb(const char *key)
{
	char line[256];
	size_t len = strlen(key);
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, len) && line[len] == ':') {
			kb = strtol(line + len + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

static void test_host_releases_memory(void **state)
{
	struct fixture *fx = *state;
	const uint32_t nchunks = 512, n = nchunks * BPC; /* 32 MiB */
	const long mapped_kb = (long)(nchunks * GRAN >> 10);
	long shm0, shm1, shm2, rss0, rss1, rss2;
	const char *which;
	long before, during, after;
	uint32_t *ids = calloc(n, sizeof(*ids)), i;

	assert_non_null(ids);
	fx->params.capacity_blocks = n;
	fx->params.empty_chunks_kept = 0;
	pool_open(fx);
	shm0 = status_kb("RssShmem");
	rss0 = status_kb("VmRSS");
	ALLOC_OK(fx->pool, n, ids);
	for (i = 0; i < n; i++)
		memset(block_ptr(fx->pool, ids[i]), 0x5c, BLOCK);
	shm1 = status_kb("RssShmem");
	rss1 = status_kb("VmRSS");
	assert_true(rss1 >= 0);
	EXPECT_U64(stats_of(fx->pool, NULL).bytes_mapped, nchunks * GRAN);

	FREE_OK(fx->pool, n / 2, ids);
	FREE_OK(fx->pool, n - n / 2, ids + n / 2);
	EXPECT_U64(stats_of(fx->pool, NULL).chunks_mapped, 0);
	shm2 = status_kb("RssShmem");
	rss2 = status_kb("VmRSS");
	free(ids);

	if (shm0 >= 0 && shm1 - shm0 >= mapped_kb * 9 / 10) {
		which = "RssShmem";
		before = shm0, during = shm1, after = shm2;
	} else {
		which = "VmRSS";
		before = rss0, during = rss1, after = rss2;
	}
	print_message("  %s: %ld kB before, %ld kB with %ld kB written, "
		      "%ld kB after freeing\n",
		      which, before, during, mapped_kb, after);
	if (during - before < mapped_kb * 9 / 10)
		fail_msg("writing %ld kB of blocks raised %s by only %ld kB",
			 mapped_kb, which, during - before);
	if (during - after < mapped_kb * 9 / 10)
		fail_msg("freeing every block (watermark 0) lowered %s by "
			 "%ld kB, expected at least 90%% of %ld kB",
			 which, during - after, mapped_kb);
}

/* ------------------------------------------------------------------ */
/* threads */

#define THREADS 4
#define THREAD_OPS 6000
#define THREAD_MAX_HELD 160
#define THREAD_BLOCK 1024ull

struct worker {
	struct kvc_pool *pool;
	pthread_t thread;
	uint32_t nr;
	uint64_t base;
	uint32_t held[THREAD_MAX_HELD];
	uint32_t gen[THREAD_MAX_HELD];
	uint32_t nheld;
	uint64_t allocs, frees, enomem;
	char err[256];
};

static uint64_t pattern(uint32_t nr, uint32_t id, uint32_t gen, uint32_t w)
{
	return ((uint64_t)nr << 60) ^ ((uint64_t)id << 28) ^
	       ((uint64_t)gen << 12) ^ w;
}

static bool worker_failed(struct worker *wk, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(wk->err, sizeof(wk->err), fmt, ap);
	va_end(ap);
	return false;
}

static bool worker_check(struct worker *wk, const char *after)
{
	if (kvc_pool_check(wk->pool))
		return worker_failed(wk,
				     "thread %u: kvc_pool_check() after "
				     "%s: %s",
				     wk->nr, after, kvc_last_error());
	return true;
}

static bool worker_alloc(struct worker *wk, uint32_t n, uint32_t gen)
{
	uint32_t ids[16], i, w;
	uint64_t addr, owner, *p;
	int err;

	err = kvc_pool_alloc(wk->pool, n, ids);
	if (!worker_check(wk, "alloc"))
		return false;
	if (err == -ENOMEM) {
		wk->enomem++;
		return true;
	}
	if (err)
		return worker_failed(wk, "thread %u: alloc(%u) = %d: %s",
				     wk->nr, n, err, kvc_last_error());
	wk->allocs++;
	for (i = 0; i < n; i++) {
		if (kvc_pool_block_addr(wk->pool, ids[i], &addr) ||
		    addr != wk->base + ids[i] * THREAD_BLOCK)
			return worker_failed(wk,
					     "thread %u: block %u: bad "
					     "address",
					     wk->nr, ids[i]);
		if (kvc_pool_get_owner(wk->pool, ids[i], &owner) || owner)
			return worker_failed(wk,
					     "thread %u: new block %u "
					     "has owner 0x%" PRIx64,
					     wk->nr, ids[i], owner);
		if (kvc_pool_set_owner(wk->pool, ids[i],
				       ((uint64_t)wk->nr << 32) | ids[i]))
			return worker_failed(wk, "thread %u: set_owner(%u)",
					     wk->nr, ids[i]);
		p = (uint64_t *)(uintptr_t)addr;
		for (w = 0; w < THREAD_BLOCK / 8; w++)
			p[w] = pattern(wk->nr, ids[i], gen, w);
		wk->held[wk->nheld] = ids[i];
		wk->gen[wk->nheld] = gen;
		wk->nheld++;
	}
	return true;
}

static bool worker_verify(struct worker *wk, uint32_t k)
{
	uint32_t id = wk->held[k], w;
	uint64_t owner, *p;

	if (!kvc_pool_is_live(wk->pool, id))
		return worker_failed(wk, "thread %u: held block %u not live",
				     wk->nr, id);
	if (kvc_pool_get_owner(wk->pool, id, &owner) ||
	    owner != (((uint64_t)wk->nr << 32) | id))
		return worker_failed(wk, "thread %u: block %u owner changed",
				     wk->nr, id);
	p = (uint64_t *)(uintptr_t)(wk->base + id * THREAD_BLOCK);
	for (w = 0; w < THREAD_BLOCK / 8; w++)
		if (p[w] != pattern(wk->nr, id, wk->gen[k], w))
			return worker_failed(wk,
					     "thread %u: block %u word %u "
					     "overwritten: 0x%" PRIx64,
					     wk->nr, id, w, p[w]);
	return true;
}

static bool worker_free(struct worker *wk, uint32_t n, uint64_t *rng)
{
	uint32_t ids[16], i, k;
	int err;

	for (i = 0; i < n; i++) {
		k = rng_below(rng, wk->nheld);
		if (!worker_verify(wk, k))
			return false;
		ids[i] = wk->held[k];
		wk->nheld--;
		wk->held[k] = wk->held[wk->nheld];
		wk->gen[k] = wk->gen[wk->nheld];
	}
	err = kvc_pool_free(wk->pool, n, ids);
	if (err)
		return worker_failed(wk, "thread %u: free(%u) = %d: %s", wk->nr,
				     n, err, kvc_last_error());
	wk->frees++;
	return worker_check(wk, "free");
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	uint64_t rng = 0x9e3779b97f4a7c15ull * (wk->nr + 1);
	uint32_t op, n;

	for (op = 0; op < THREAD_OPS; op++) {
		bool ok;

		if (wk->nheld == 0 ||
		    (rng_below(&rng, 2) && wk->nheld + 16 <= THREAD_MAX_HELD)) {
			n = 1 + rng_below(&rng, 16);
			ok = worker_alloc(wk, n, op);
		} else {
			n = 1 +
			    rng_below(&rng, wk->nheld < 16 ? wk->nheld : 16);
			ok = worker_free(wk, n, &rng);
		}
		if (!ok)
			break;
	}
	return NULL;
}

/* A message may quote the one before it, as the replays' errors do. */
static void test_error_wraps_last(void **state)
{
	(void)state;
	kvc_err(-EINVAL, "inner %d", 7);
	assert_int_equal(kvc_err(-EPROTO, "outer: %s", kvc_last_error()),
			 -EPROTO);
	assert_string_equal(kvc_last_error(), "outer: inner 7");
}

static void test_threads(void **state)
{
	struct fixture *fx = *state;
	struct worker *wk = calloc(THREADS, sizeof(*wk));
	uint64_t held = 0, allocs = 0, frees = 0, enomem = 0, total;
	struct kvc_pool_stats st;
	uint8_t *owner_of;
	uint32_t t, k;

	assert_non_null(wk);
	fx->params.block_bytes = THREAD_BLOCK;
	/* 6 chunks of 64: four threads of up to 160 blocks run out. */
	fx->params.capacity_blocks = 384;
	fx->params.empty_chunks_kept = 1;
	pool_open(fx);
	total = stats_of(fx->pool, NULL).blocks_total;
	for (t = 0; t < THREADS; t++) {
		wk[t].pool = fx->pool;
		wk[t].nr = t + 1;
		wk[t].base = kvc_pool_base(fx->pool);
		assert_int_equal(pthread_create(&wk[t].thread, NULL,
						worker_main, &wk[t]),
				 0);
	}
	for (t = 0; t < THREADS; t++)
		assert_int_equal(pthread_join(wk[t].thread, NULL), 0);
	for (t = 0; t < THREADS; t++)
		if (wk[t].err[0])
			fail_msg("%s", wk[t].err);
	CHECK(fx->pool);

	owner_of = calloc(total, 1);
	assert_non_null(owner_of);
	for (t = 0; t < THREADS; t++) {
		held += wk[t].nheld;
		allocs += wk[t].allocs;
		frees += wk[t].frees;
		enomem += wk[t].enomem;
		for (k = 0; k < wk[t].nheld; k++) {
			uint32_t id = wk[t].held[k];

			if (owner_of[id])
				fail_msg("block %u held by threads %u and %u",
					 id, owner_of[id], t + 1);
			owner_of[id] = (uint8_t)(t + 1);
			if (!worker_verify(&wk[t], k))
				fail_msg("%s", wk[t].err);
		}
	}
	free(owner_of);
	print_message("  %" PRIu64 " allocs, %" PRIu64 " frees, %" PRIu64
		      " -ENOMEM, %" PRIu64 " held at the end\n",
		      allocs, frees, enomem, held);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.blocks_live, held);
	EXPECT_U64(st.alloc_calls, allocs);
	EXPECT_U64(st.free_calls, frees);
	EXPECT_U64(st.alloc_failures, enomem);

	for (t = 0; t < THREADS; t++)
		if (wk[t].nheld)
			FREE_OK(fx->pool, wk[t].nheld, wk[t].held);
	st = stats_of(fx->pool, NULL);
	EXPECT_U64(st.blocks_live, 0);
	EXPECT_U64(st.chunks_partial + st.chunks_full, 0);
	assert_true(st.chunks_empty <= 1);
	free(wk);
}

/* ------------------------------------------------------------------ */
/* random histories against a model */

#define MODEL_CHUNKS 32u
#define MODEL_TOTAL (MODEL_CHUNKS * BPC)
#define MODEL_STEPS 3000u

struct model {
	uint32_t seed, step;
	uint32_t kept;
	uint32_t cap_chunks;
	uint8_t live[MODEL_TOTAL];
	uint64_t owner[MODEL_TOTAL];
	uint64_t stamp[MODEL_TOTAL];
	uint32_t fill[MODEL_CHUNKS];
	uint32_t empty_mapped;
	uint32_t nlive;
	uint64_t maps, unmaps;
	uint64_t alloc_calls, free_calls, alloc_failures;
	uint64_t live_hwm, mapped_hwm;
};

#define MFAIL(m, fmt, ...) \
	fail_msg("seed %u step %u: " fmt, (m)->seed, (m)->step, ##__VA_ARGS__)

#define MEXPECT(m, got, want)                                                 \
	do {                                                                  \
		uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want);         \
		if (g_ != w_)                                                 \
			MFAIL(m, "%s = %" PRIu64 ", the model says %" PRIu64, \
			      #got, g_, w_);                                  \
	} while (0)

static uint32_t model_mapped(const struct model *m)
{
	uint32_t c, n = m->empty_mapped;

	for (c = 0; c < MODEL_CHUNKS; c++)
		n += m->fill[c] > 0;
	return n;
}

static uint32_t fill_bucket(uint32_t live, uint32_t bpc)
{
	if (live == 0)
		return 0;
	if (live == bpc)
		return KVC_FILL_BUCKETS - 1;
	/* ceil(10 * live / bpc): 1-10% -> 1, ..., 91-99% -> 10 */
	return (10 * live + bpc - 1) / bpc;
}

static void model_compare(struct model *m, struct kvc_pool *pool, uint64_t map0,
			  uint64_t unmap0)
{
	uint64_t hist[KVC_FILL_BUCKETS], want[KVC_FILL_BUCKETS] = { 0 };
	struct kvc_pool_stats st = stats_of(pool, hist);
	uint32_t c, id, mapped = model_mapped(m), partial = 0, full = 0;
	int i;

	for (c = 0; c < MODEL_CHUNKS; c++) {
		partial += m->fill[c] > 0 && m->fill[c] < BPC;
		full += m->fill[c] == BPC;
		if (m->fill[c])
			want[fill_bucket(m->fill[c], BPC)]++;
	}
	want[0] += m->empty_mapped;
	MEXPECT(m, st.blocks_total, MODEL_TOTAL);
	MEXPECT(m, st.blocks_live, m->nlive);
	MEXPECT(m, st.blocks_free, MODEL_TOTAL - m->nlive);
	MEXPECT(m, st.blocks_free_mapped, (uint64_t)mapped * BPC - m->nlive);
	MEXPECT(m, st.chunks_mapped, mapped);
	MEXPECT(m, st.chunks_empty, m->empty_mapped);
	MEXPECT(m, st.chunks_partial, partial);
	MEXPECT(m, st.chunks_full, full);
	MEXPECT(m, st.bytes_mapped, mapped * GRAN);
	MEXPECT(m, st.bytes_live, m->nlive * BLOCK);
	MEXPECT(m, st.blocks_live_hwm, m->live_hwm);
	MEXPECT(m, st.bytes_mapped_hwm, m->mapped_hwm);
	MEXPECT(m, st.alloc_calls, m->alloc_calls);
	MEXPECT(m, st.free_calls, m->free_calls);
	MEXPECT(m, st.alloc_failures, m->alloc_failures);
	MEXPECT(m, st.backend_map - map0, m->maps);
	MEXPECT(m, st.backend_unmap - unmap0, m->unmaps);
	for (i = 0; i < KVC_FILL_BUCKETS; i++)
		if (hist[i] != want[i])
			MFAIL(m,
			      "fill_hist[%d] = %" PRIu64
			      ", model says %" PRIu64,
			      i, hist[i], want[i]);

	for (id = 0; id < MODEL_TOTAL; id++) {
		bool live = kvc_pool_is_live(pool, id);
		uint64_t owner;

		if (live != (bool)m->live[id])
			MFAIL(m, "block %u is %s, the model says %s", id,
			      live ? "live" : "free",
			      m->live[id] ? "live" : "free");
		if (!live)
			continue;
		if (kvc_pool_get_owner(pool, id, &owner))
			MFAIL(m, "get_owner(%u) failed on a live block", id);
		if (owner != m->owner[id])
			MFAIL(m,
			      "block %u owner 0x%" PRIx64 ", model 0x%" PRIx64,
			      id, owner, m->owner[id]);
		if (*(uint64_t *)block_ptr(pool, id) != m->stamp[id])
			MFAIL(m, "block %u lost its data", id);
	}
	assert_false(kvc_pool_is_live(pool, MODEL_TOTAL));
}

static void model_note_mapped(struct model *m)
{
	uint64_t bytes = (uint64_t)model_mapped(m) * GRAN;

	if (bytes > m->mapped_hwm)
		m->mapped_hwm = bytes;
}

static void model_alloc(struct model *m, struct kvc_pool *pool, uint64_t *rng)
{
	uint32_t n = 1 + rng_below(rng, 48), ids[48], taken[MODEL_CHUNKS];
	uint32_t c, d, i, free_partial = 0, avail, need_new = 0, z = 0;
	uint32_t open_ends = 0;
	bool fits;
	int err;

	for (c = 0; c < MODEL_CHUNKS; c++)
		if (m->fill[c])
			free_partial += BPC - m->fill[c];
	avail = free_partial + m->empty_mapped * BPC;
	if (n > avail)
		need_new = (n - avail + BPC - 1) / BPC;
	fits = n <= MODEL_TOTAL - m->nlive &&
	       model_mapped(m) + need_new <= m->cap_chunks;

	err = kvc_pool_alloc(pool, n, ids);
	CHECK(pool);
	if (!fits) {
		if (err != -ENOMEM)
			MFAIL(m,
			      "alloc(%u) = %d with %u live, %u mapped, cap "
			      "%u chunks: expected -ENOMEM",
			      n, err, m->nlive, model_mapped(m), m->cap_chunks);
		m->alloc_failures++;
		return;
	}
	if (err)
		MFAIL(m, "alloc(%u) = %d, expected 0: %s", n, err,
		      kvc_last_error());
	m->alloc_calls++;

	memset(taken, 0, sizeof(taken));
	for (i = 0; i < n; i++) {
		if (ids[i] >= MODEL_TOTAL)
			MFAIL(m, "alloc returned id %u out of range", ids[i]);
		if (m->live[ids[i]] == 2)
			MFAIL(m, "alloc returned block %u twice in one batch",
			      ids[i]);
		if (m->live[ids[i]])
			MFAIL(m, "alloc returned live block %u", ids[i]);
		m->live[ids[i]] = 2; /* new in this batch */
		taken[ids[i] / BPC]++;
	}
	/* Placement: fullest partly used first, then empty, then new. */
	for (c = 0; c < MODEL_CHUNKS; c++) {
		if (taken[c] && m->fill[c] + taken[c] < BPC)
			open_ends++;
		if (!m->fill[c] && taken[c])
			z++;
	}
	for (c = 0; c < MODEL_CHUNKS; c++) {
		if (!m->fill[c] || m->fill[c] + taken[c] == BPC)
			continue;
		/* c was partly used and is still not full after the batch. */
		if (z)
			MFAIL(m,
			      "an empty chunk was used while chunk %u "
			      "(%u live) was left with room",
			      c, m->fill[c]);
		for (d = 0; d < MODEL_CHUNKS; d++)
			if (m->fill[d] && m->fill[d] < m->fill[c] && taken[d])
				MFAIL(m,
				      "chunk %u (%u live) got %u blocks "
				      "while fuller chunk %u (%u live) got "
				      "only %u and is not full",
				      d, m->fill[d], taken[d], c, m->fill[c],
				      taken[c]);
	}
	if (open_ends > 1)
		MFAIL(m,
		      "batch of %u left %u chunks partly filled, expected "
		      "at most 1",
		      n, open_ends);
	if (z != (n > free_partial ? (n - free_partial + BPC - 1) / BPC : 0))
		MFAIL(m, "batch of %u used %u empty chunks", n, z);

	for (i = 0; i < n; i++) {
		uint64_t stamp = rng_next(rng);

		m->live[ids[i]] = 1;
		m->owner[ids[i]] = 0;
		m->stamp[ids[i]] = stamp;
		*(uint64_t *)block_ptr(pool, ids[i]) = stamp;
	}
	for (c = 0; c < MODEL_CHUNKS; c++)
		m->fill[c] += taken[c];
	m->maps += z > m->empty_mapped ? z - m->empty_mapped : 0;
	m->empty_mapped -= z < m->empty_mapped ? z : m->empty_mapped;
	m->nlive += n;
	if (m->nlive > m->live_hwm)
		m->live_hwm = m->nlive;
	model_note_mapped(m);
}

static uint32_t model_pick_live(struct model *m, uint64_t *rng)
{
	uint32_t id = rng_below(rng, MODEL_TOTAL);

	while (!m->live[id])
		id = (id + 1) % MODEL_TOTAL;
	return id;
}

static void model_free(struct model *m, struct kvc_pool *pool, uint64_t *rng)
{
	uint32_t n, ids[41], i, j, emptied = 0, kept_now;
	uint8_t *in_batch;
	int err, bad;

	if (!m->nlive)
		return;
	n = 1 + rng_below(rng, m->nlive < 40 ? m->nlive : 40);
	in_batch = calloc(MODEL_TOTAL, 1);
	assert_non_null(in_batch);
	for (i = 0; i < n; i++) {
		do
			ids[i] = model_pick_live(m, rng);
		while (in_batch[ids[i]]);
		in_batch[ids[i]] = 1;
	}

	bad = rng_below(rng, 10) == 0 ? 1 + (int)rng_below(rng, 3) : 0;
	if (bad == 1) { /* a duplicate */
		ids[n] = ids[rng_below(rng, n)];
		n++;
	} else if (bad == 2) { /* out of range */
		ids[rng_below(rng, n)] =
			rng_below(rng, 2) ?
				MODEL_TOTAL :
				MODEL_TOTAL + rng_below(rng, 1u << 30);
	} else if (bad == 3) { /* not live */
		if (m->nlive == MODEL_TOTAL) {
			bad = 0;
		} else {
			j = rng_below(rng, MODEL_TOTAL);
			while (m->live[j])
				j = (j + 1) % MODEL_TOTAL;
			ids[rng_below(rng, n)] = j;
		}
	}
	/* Shuffle so the bad id is anywhere. */
	for (i = n - 1; i > 0; i--) {
		uint32_t k = rng_below(rng, i + 1), t = ids[i];

		ids[i] = ids[k];
		ids[k] = t;
	}
	free(in_batch);

	err = kvc_pool_free(pool, n, ids);
	CHECK(pool);
	if (bad) {
		if (err != -EINVAL)
			MFAIL(m,
			      "free of a batch with a %s = %d, expected "
			      "-EINVAL",
			      bad == 1 ? "duplicate" :
			      bad == 2 ? "id out of range" :
					 "free id",
			      err);
		return;
	}
	if (err)
		MFAIL(m, "free(%u) = %d, expected 0: %s", n, err,
		      kvc_last_error());
	m->free_calls++;
	for (i = 0; i < n; i++) {
		m->live[ids[i]] = 0;
		if (--m->fill[ids[i] / BPC] == 0)
			emptied++;
	}
	m->nlive -= n;
	kept_now = m->empty_mapped + emptied;
	if (kept_now > m->kept) {
		m->unmaps += kept_now - m->kept;
		kept_now = m->kept;
	}
	m->empty_mapped = kept_now;
}

static void model_trim(struct model *m, struct kvc_pool *pool, uint64_t *rng)
{
	uint32_t keep = rng_below(rng, 3);
	int err = kvc_pool_trim(pool, keep);

	CHECK(pool);
	if (err)
		MFAIL(m, "trim(%u) = %d: %s", keep, err, kvc_last_error());
	if (m->empty_mapped > keep) {
		m->unmaps += m->empty_mapped - keep;
		m->empty_mapped = keep;
	}
}

static void model_tag(struct model *m, struct kvc_pool *pool, uint64_t *rng)
{
	uint32_t i, id;
	uint64_t tag;

	if (!m->nlive)
		return;
	for (i = 0; i < 4; i++) {
		id = model_pick_live(m, rng);
		tag = rng_next(rng);
		if (kvc_pool_set_owner(pool, id, tag))
			MFAIL(m, "set_owner(%u) on a live block failed: %s", id,
			      kvc_last_error());
		CHECK(pool);
		m->owner[id] = tag;
	}
}

static void run_model(struct fixture *fx, uint32_t seed)
{
	struct model *m = calloc(1, sizeof(*m));
	uint64_t rng = 0x9e3779b97f4a7c15ull * (seed + 7), map0, unmap0;
	struct kvc_pool_stats st;
	uint32_t r;

	assert_non_null(m);
	m->seed = seed;
	m->kept = seed % 4;
	m->cap_chunks = seed % 2 ? MODEL_CHUNKS / 2 : MODEL_CHUNKS;
	fx->params.capacity_blocks = MODEL_TOTAL;
	fx->params.empty_chunks_kept = m->kept;
	fx->params.max_mapped_bytes = seed % 2 ? m->cap_chunks * GRAN : 0;
	pool_open(fx);
	st = stats_of(fx->pool, NULL);
	map0 = st.backend_map;
	unmap0 = st.backend_unmap;

	for (m->step = 0; m->step < MODEL_STEPS; m->step++) {
		/* Lean to alloc while sparse, to free while dense. */
		r = rng_below(&rng, 100);
		if (r < 4)
			model_trim(m, fx->pool, &rng);
		else if (r < 10)
			model_tag(m, fx->pool, &rng);
		else if (r < 10 + 45 + (m->nlive < MODEL_TOTAL / 3 ? 10 : 0))
			model_alloc(m, fx->pool, &rng);
		else
			model_free(m, fx->pool, &rng);
		model_compare(m, fx->pool, map0, unmap0);
	}
	print_message("  seed %u (kept %u, cap %u chunks): %" PRIu64
		      " allocs, %" PRIu64 " frees, %" PRIu64
		      " -ENOMEM, hwm %" PRIu64 " blocks\n",
		      seed, m->kept, m->cap_chunks, m->alloc_calls,
		      m->free_calls, m->alloc_failures, m->live_hwm);
	pool_close(fx);
	free(m);
}

static void test_random_histories(void **state)
{
	struct fixture *fx = *state;
	uint32_t seed;

	for (seed = 1; seed <= 8; seed++)
		run_model(fx, seed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_params_init_defaults,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_invalid, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_create_valid_variants,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_open_host_invalid,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_owns_backend, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_last_error_per_thread,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_free_basics, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_alloc_bad_args, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_data_survives, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fresh_pool_packs, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fullest_partial_first,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_enomem_capacity,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_enomem_mapped_cap,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_invalid, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_owner_tags, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_watermark_zero, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_watermark_keeps_k, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_watermark_hysteresis,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_trim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stats_counters, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fill_histogram_16, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_fill_histogram_exact_tenths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fill_histogram_extremes,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_releases_memory,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_histories, setup,
						teardown),
		cmocka_unit_test(test_error_wraps_last),
	};

	return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
