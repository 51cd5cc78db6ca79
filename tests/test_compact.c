/* Description: compaction: full, budgeted, planned and proactive compaction of random histories against a model; faults from the fault backend and the fake driver; fenced frees and deferred unmaps; bad arguments */
// SPDX-License-Identifier: MIT
/*
 * Tests of compaction written against include/kvc/compact.h and
 * include/kvc/pool.h (and Documentation/compaction.rst). Pools run on the
 * host backend with 64 KiB granularity, wrapped in tests/fault_backend.c
 * (which can fail any op and logs the copies that went through), or on the
 * cuda backend over the fake driver, wrapped the same way.
 *
 * A model tracks every block: live or not, its owner tag (unique per
 * allocation) and what it holds (a pattern derived from the owner tag and
 * the word's position, plus what fake "kernels" added). Compaction moves
 * are applied to the model only as the move hook reports them; after every
 * operation the pool must pass kvc_pool_check() and agree with the model
 * on every block: liveness, owner tag and contents. So a move the hook
 * missed, a move reported but not made, or a block copied wrong all show.
 * Block id -> chunk is id / blocks_per_chunk, and block id's memory is at
 * kvc_pool_base() + id * block_bytes, as include/kvc/pool.h documents.
 */
#include <errno.h>
#include <inttypes.h>
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

#include <kvc/compact.h>
#include <kvc/kvc.h>

#include "backend.h"
#include "fake_driver.h"
#include "fault_backend.h"

#define GRAN (64ull << 10)
#define MAX_CHUNKS 128u

/* A pool shape: blocks per chunk = chunk_bytes / block_bytes. */
struct geometry {
	const char *name;
	uint64_t block_bytes;
	uint64_t chunk_bytes;
	uint32_t chunks;
	uint32_t kept;
};

static const struct geometry geo16 = {
	"16 x 4 KiB per chunk, watermark 0", 4096, GRAN, 16, 0,
};
static const struct geometry geo16_kept1 = {
	"16 x 4 KiB per chunk, watermark 1", 4096, GRAN, 16, 1,
};
static const struct geometry geo16_kept2 = {
	"16 x 4 KiB per chunk, watermark 2", 4096, GRAN, 16, 2,
};
static const struct geometry geo12 = {
	"12 x 16 KiB per 192 KiB chunk, watermark 0", 16384, 3 * GRAN, 12, 0,
};
static const struct geometry geo12_kept1 = {
	"12 x 16 KiB per 192 KiB chunk, watermark 1", 16384, 3 * GRAN, 12, 1,
};
static const struct geometry geo24_kept1 = {
	"24 x 8 KiB per 192 KiB chunk, watermark 1", 8192, 3 * GRAN, 10, 1,
};
/* 512 blocks per chunk: a chunk holds more than one batch of moves. */
static const struct geometry geo512 = {
	"512 x 128 B per 64 KiB chunk, watermark 1", 128, GRAN, 8, 1,
};
/* Enough blocks for several batches of moves (a batch is up to 256). */
static const struct geometry geo_big = {
	"16 x 4 KiB per chunk, 96 chunks, watermark 1", 4096, GRAN, 96, 1,
};

/* No kernels: the copies here are one cuMemcpyDtoDAsync a block, whose
 * faults these tests inject (the block-copy kernel's own tests are in
 * test_backend_cuda.c). */
static const struct kvc_fake_config small_gpu = { .granularity = GRAN,
						  .devices = 1,
						  .no_kernels = true };

struct fixture {
	const struct geometry *geo;
	struct kvc_backend *be; /* a fault backend over host or fake cuda */
	const struct kvc_cuda_driver *drv; /* the fake's, or NULL for host */
	bool async;
	kvc_cu_context ctx; /* the caller's, once caller_stream() ran */
	kvc_cu_stream stream;
	kvc_cu_event event;
	struct kvc_pool *pool;
	struct kvc_pool_params params;
	uint64_t base;
	uint64_t reserved_bytes;
	/* the model */
	uint64_t bs;
	uint32_t bpc, nchunks, total;
	uint8_t *live;
	uint64_t *owner;
	uint8_t *bump; /* what fake kernels added to every byte */
	uint8_t *unseen; /* a caller kernel since the caller's last sync */
	uint32_t nr_live;
	uint64_t next_tag;
	uint64_t rng;
	/* what the move hook heard */
	struct kvc_move *moves;
	uint32_t nr_moves, cap_moves;
	uint32_t hook_calls;
	bool hook_oom;
	/*
	 * Async sweep: the model's bumps count the kernels queued as if run,
	 * so contents are compared only while no work is queued; and once a
	 * dead context has dropped queued work (killed_at: the address of the
	 * kernel that killed it, see kill_context()), never again.
	 */
	bool contents_when_idle;
	uint64_t killed_at;
	char what[160];
};

#define FAIL(fx, fmt, ...)                                           \
	fail_msg("%s:%d: [%s] " fmt, __FILE__, __LINE__, (fx)->what, \
		 ##__VA_ARGS__)

/* ------------------------------------------------------------------ */
/* randomness and block contents */

static uint32_t rng_below(struct fixture *fx, uint32_t n)
{
	return n ? (uint32_t)(rng_next(&fx->rng) % n) : 0;
}

static void seed_rng(struct fixture *fx, uint64_t seed)
{
	fx->rng = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
	if (!fx->rng)
		fx->rng = 1;
}

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Word @word of the block owned by @owner, each byte plus @bump. */
static uint64_t pattern(uint64_t owner, uint64_t word, uint8_t bump)
{
	uint64_t w = mix64(owner * 0x100000001b3ull + word) | 1;
	uint64_t k = 0x0101010101010101ull * bump;

	/* bytewise add, no carry between bytes */
	return ((w & 0x7f7f7f7f7f7f7f7full) + (k & 0x7f7f7f7f7f7f7f7full)) ^
	       ((w ^ k) & 0x8080808080808080ull);
}

static uint64_t *block_mem(struct fixture *fx, uint32_t id)
{
	return (uint64_t *)(uintptr_t)(fx->base + (uint64_t)id * fx->bs);
}

static void fill_block(struct fixture *fx, uint32_t id)
{
	uint64_t *w = block_mem(fx, id), i;

	for (i = 0; i < fx->bs / 8; i++)
		w[i] = pattern(fx->owner[id], i, fx->bump[id]);
}

/* ------------------------------------------------------------------ */
/* the move hook */

static void record_moves(void *arg, const struct kvc_move *moves, uint32_t n)
{
	struct fixture *fx = arg;

	fx->hook_calls++;
	if (fx->nr_moves + n > fx->cap_moves) {
		uint32_t cap = 2 * (fx->nr_moves + n) + 64;
		struct kvc_move *p = realloc(fx->moves, cap * sizeof(*p));

		if (!p) {
			fx->hook_oom = true;
			return;
		}
		fx->moves = p;
		fx->cap_moves = cap;
	}
	memcpy(fx->moves + fx->nr_moves, moves, n * sizeof(*moves));
	fx->nr_moves += n;
}

/* ------------------------------------------------------------------ */
/* fixtures */

static struct fixture *fixture_new(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return NULL;
	fx->geo = *state ? *state : &geo16;
	snprintf(fx->what, sizeof(fx->what), "%s", fx->geo->name);
	return fx;
}

static int setup_host(void **state)
{
	struct fixture *fx = fixture_new(state);
	struct kvc_backend *host;

	if (!fx)
		return -1;
	if (kvc_backend_open_host(GRAN, &host)) {
		fprintf(stderr, "kvc_backend_open_host: %s\n",
			kvc_last_error());
		free(fx);
		return -1;
	}
	fx->be = fault_backend_wrap(host);
	if (!fx->be) {
		kvc_backend_close(host);
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

/* fx->be: the cuda backend over driver table @drv, in a fault backend. */
static int open_fake_backend(struct fixture *fx,
			     const struct kvc_cuda_driver *drv)
{
	struct kvc_backend *cuda;

	if (kvc_backend_open_cuda_driver(drv, 0, &cuda)) {
		fprintf(stderr, "cuda over the fake: %s\n", kvc_last_error());
		return -1;
	}
	fx->be = fault_backend_wrap(cuda);
	if (!fx->be) {
		kvc_backend_close(cuda);
		return -1;
	}
	return 0;
}

static int setup_fake(void **state)
{
	struct fixture *fx = fixture_new(state);

	if (!fx)
		return -1;
	fx->drv = kvc_fake_driver(&small_gpu);
	if (!fx->drv) {
		fprintf(stderr, "the fake driver is not clean\n");
		free(fx);
		return -1;
	}
	if (open_fake_backend(fx, fx->drv)) {
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static void model_free_arrays(struct fixture *fx)
{
	free(fx->live);
	free(fx->owner);
	free(fx->bump);
	free(fx->unseen);
	fx->live = NULL;
	fx->owner = NULL;
	fx->bump = NULL;
	fx->unseen = NULL;
}

static void expect_nothing_held(struct fixture *fx, const char *what)
{
	struct fault_counts fc;

	fault_backend_counts(fx->be, &fc);
	if (fc.mapped || fc.reserved || fc.tokens)
		fail_msg("[%s] %s: %lld chunks mapped, %lld reservations, "
			 "%lld fence tokens not put",
			 fx->what, what, (long long)fc.mapped,
			 (long long)fc.reserved, (long long)fc.tokens);
}

static uint64_t fake_pending(void)
{
	struct kvc_fake_counts fc;

	kvc_fake_counts(&fc);
	return fc.pending;
}

/*
 * No driver rule broken; but once kill_context() has run, exactly the one
 * it broke on purpose: its kernel faulted, which is what killed the
 * context (and is a violation by the fake's rules).
 */
static void fake_violations_none(struct fixture *fx, const char *file, int line)
{
	struct kvc_fake_counts fc;
	const char *last;
	char kill[64];

	if (!fx->drv)
		return;
	kvc_fake_counts(&fc);
	last = kvc_fake_last_violation();
	if (!fx->killed_at) {
		if (fc.violations)
			fail_msg("%s:%d: [%s] driver rule broken: %s", file,
				 line, fx->what, last);
		return;
	}
	snprintf(kill, sizeof(kill), "kernel on [%#" PRIx64 ", +1) found",
		 fx->killed_at);
	if (fc.violations != 1 || strncmp(last, kill, strlen(kill)))
		fail_msg("%s:%d: [%s] %" PRIu64 " driver rules broken where "
			 "only the killing kernel's fault was expected; last: "
			 "%s",
			 file, line, fx->what, fc.violations, last);
}

#define NO_VIOLATION(fx) fake_violations_none(fx, __FILE__, __LINE__)

/*
 * Checks what the test left (nothing held, no driver rule broken) only
 * after freeing everything, so that a failure here leaks nothing.
 */
static int teardown(void **state)
{
	struct fixture *fx = *state;
	struct fault_counts held;
	struct kvc_fake_counts fc = { 0 };
	char what[sizeof(fx->what)], violation[256] = "";

	if (fx->drv && fx->async) {
		kvc_fake_run();
		kvc_fake_set_async(false);
	}
	if (fx->pool)
		kvc_pool_destroy(fx->pool);
	fx->pool = NULL;
	memset(&held, 0, sizeof(held));
	if (fx->be) /* NULL only if an async sweep's reset failed */
		fault_backend_counts(fx->be, &held);
	if (fx->drv) {
		if (fx->stream)
			fx->drv->cuStreamDestroy(fx->stream);
		if (fx->event)
			fx->drv->cuEventDestroy(fx->event);
		if (fx->ctx)
			fx->drv->cuDevicePrimaryCtxRelease(0);
	}
	kvc_backend_close(fx->be);
	if (fx->drv) {
		kvc_fake_counts(&fc);
		snprintf(violation, sizeof(violation), "%s",
			 kvc_fake_last_violation());
	}
	snprintf(what, sizeof(what), "%s", fx->what);
	model_free_arrays(fx);
	free(fx->moves);
	free(fx);
	if (held.mapped || held.reserved || held.tokens)
		fail_msg(
			"[%s] teardown: %lld chunks mapped, %lld reservations, "
			"%lld fence tokens not put",
			what, (long long)held.mapped, (long long)held.reserved,
			(long long)held.tokens);
	if (fc.violations)
		fail_msg("[%s] teardown: driver rule broken: %s", what,
			 violation);
	if (fc.handles || fc.mappings || fc.reservations || fc.contexts ||
	    fc.pushed || fc.streams || fc.events || fc.memory_used ||
	    fc.pending)
		fail_msg("[%s] teardown: the fake still holds %" PRIu64
			 " handles, %" PRIu64 " mappings, %" PRIu64
			 " reservations, %" PRIu64 " contexts, %" PRIu64
			 " pushed, %" PRIu64 " streams, %" PRIu64
			 " events, %" PRIu64 " bytes, %" PRIu64
			 " pending operations",
			 what, fc.handles, fc.mappings, fc.reservations,
			 fc.contexts, fc.pushed, fc.streams, fc.events,
			 fc.memory_used, fc.pending);
	return 0;
}

/* The caller's own stream and event on the fake (a context is needed). */
static void caller_stream(struct fixture *fx)
{
	kvc_cu_context top = NULL;

	assert_non_null(fx->drv);
	assert_int_equal(fx->drv->cuDevicePrimaryCtxRetain(&fx->ctx, 0), 0);
	assert_int_equal(fx->drv->cuCtxPushCurrent(fx->ctx), 0);
	assert_int_equal(fx->drv->cuStreamCreate(&fx->stream, 0), 0);
	assert_int_equal(
		fx->drv->cuEventCreate(&fx->event, KVC_CU_EVENT_DISABLE_TIMING),
		0);
	assert_int_equal(fx->drv->cuCtxPopCurrent(&top), 0);
	assert_ptr_equal(top, fx->ctx);
}

/* A new caller event, after a test destroyed the last one. */
static void caller_event_again(struct fixture *fx)
{
	kvc_cu_context top = NULL;

	assert_int_equal(fx->drv->cuCtxPushCurrent(fx->ctx), 0);
	assert_int_equal(
		fx->drv->cuEventCreate(&fx->event, KVC_CU_EVENT_DISABLE_TIMING),
		0);
	assert_int_equal(fx->drv->cuCtxPopCurrent(&top), 0);
}

static void set_async(struct fixture *fx, bool on)
{
	kvc_fake_set_async(on);
	fx->async = on;
}

/* ------------------------------------------------------------------ */
/* pools and the model */

static void params_for(struct fixture *fx, const struct geometry *geo)
{
	fx->geo = geo;
	kvc_pool_params_init(&fx->params);
	fx->params.block_bytes = geo->block_bytes;
	fx->params.chunk_bytes = geo->chunk_bytes;
	fx->params.capacity_blocks =
		(uint64_t)geo->chunks * (geo->chunk_bytes / geo->block_bytes);
	fx->params.empty_chunks_kept = geo->kept;
	fx->params.backend = fx->be;
	fx->params.flags = KVC_POOL_NO_STATS_PAGE;
}

/* Create the pool fx->params describe, hook it, reset the model. */
static int pool_try_create(struct fixture *fx)
{
	struct kvc_pool_stats st;
	int err;

	assert_null(fx->pool);
	err = kvc_pool_create(&fx->params, &fx->pool);
	if (err) {
		fx->pool = NULL;
		return err;
	}
	assert_int_equal(kvc_pool_set_move_hook(fx->pool, record_moves, fx), 0);
	kvc_pool_get_stats(fx->pool, &st, NULL);
	fx->bs = fx->params.block_bytes;
	fx->bpc = (uint32_t)st.blocks_per_chunk;
	fx->nchunks = (uint32_t)st.chunks_total;
	fx->total = (uint32_t)st.blocks_total;
	assert_int_equal(fx->bpc, fx->geo->chunk_bytes / fx->geo->block_bytes);
	assert_true(fx->nchunks <= MAX_CHUNKS);
	fx->base = kvc_pool_base(fx->pool);
	fx->reserved_bytes = st.bytes_reserved;
	model_free_arrays(fx);
	fx->live = calloc(fx->total, 1);
	fx->owner = calloc(fx->total, sizeof(*fx->owner));
	fx->bump = calloc(fx->total, 1);
	fx->unseen = calloc(fx->total, 1);
	assert_non_null(fx->live);
	assert_non_null(fx->owner);
	assert_non_null(fx->bump);
	assert_non_null(fx->unseen);
	fx->nr_live = 0;
	fx->nr_moves = 0;
	fx->hook_calls = 0;
	CHECK(fx->pool);
	return 0;
}

static void pool_create(struct fixture *fx)
{
	int err = pool_try_create(fx);

	if (err)
		FAIL(fx, "kvc_pool_create() = %d: %s", err, kvc_last_error());
}

static int pool_destroy(struct fixture *fx)
{
	int err = kvc_pool_destroy(fx->pool);

	fx->pool = NULL;
	return err;
}

static struct kvc_pool_stats stats_of(struct fixture *fx)
{
	struct kvc_pool_stats st;

	memset(&st, 0xa5, sizeof(st));
	kvc_pool_get_stats(fx->pool, &st, NULL);
	return st;
}

#define VERIFY(fx) verify_model(fx, __FILE__, __LINE__)

/*
 * The pool agrees with the model on every block, and passes its checker.
 * Contents are skipped while queued work has yet to bring the blocks to
 * what the model says (fx->contents_when_idle), and after a dead context
 * dropped queued work.
 */
static void verify_model(struct fixture *fx, const char *file, int line)
{
	struct kvc_pool_stats st;
	uint64_t owner, i;
	uint32_t id;
	bool contents =
		!fx->killed_at && !(fx->contents_when_idle && fake_pending());
	int err;

	err = kvc_pool_check(fx->pool);
	if (err)
		fail_msg("%s:%d: [%s] kvc_pool_check() = %d: %s", file, line,
			 fx->what, err, kvc_last_error());
	kvc_pool_get_stats(fx->pool, &st, NULL);
	if (st.blocks_live != fx->nr_live)
		fail_msg("%s:%d: [%s] blocks_live = %" PRIu64
			 ", the model has %u",
			 file, line, fx->what, st.blocks_live, fx->nr_live);
	for (id = 0; id < fx->total; id++) {
		bool live = kvc_pool_is_live(fx->pool, id);
		const uint64_t *w;

		if (live != (bool)fx->live[id])
			fail_msg(
				"%s:%d: [%s] block %u is %s, the model says %s",
				file, line, fx->what, id,
				live ? "live" : "free",
				fx->live[id] ? "live" : "free");
		if (!live)
			continue;
		owner = ~0ull;
		if (kvc_pool_get_owner(fx->pool, id, &owner) ||
		    owner != fx->owner[id])
			fail_msg("%s:%d: [%s] block %u: owner %#" PRIx64
				 ", expected %#" PRIx64,
				 file, line, fx->what, id, owner,
				 fx->owner[id]);
		if (!contents)
			continue;
		w = block_mem(fx, id);
		for (i = 0; i < fx->bs / 8; i++)
			if (w[i] != pattern(fx->owner[id], i, fx->bump[id]))
				fail_msg("%s:%d: [%s] block %u (owner %#" PRIx64
					 ") lost its contents at word %" PRIu64,
					 file, line, fx->what, id,
					 fx->owner[id], i);
	}
}

/* Allocate @n blocks, tag and fill each; all or nothing on failure. */
static int model_alloc(struct fixture *fx, uint32_t n, uint32_t *out)
{
	uint32_t *ids = calloc(n ? n : 1, sizeof(*ids)), i;
	struct kvc_pool_stats before = stats_of(fx), after;
	int err;

	assert_non_null(ids);
	err = kvc_pool_alloc(fx->pool, n, ids);
	after = stats_of(fx);
	if (err) {
		if (after.blocks_live != before.blocks_live)
			FAIL(fx, "a failed alloc changed blocks_live");
		CHECK(fx->pool);
		free(ids);
		return err;
	}
	for (i = 0; i < n; i++) {
		uint32_t id = ids[i];

		if (id >= fx->total || fx->live[id])
			FAIL(fx, "alloc handed out block %u, not free", id);
		fx->live[id] = 1;
		fx->owner[id] = 0x6b76630000000000ull + ++fx->next_tag;
		fx->bump[id] = 0;
		fx->nr_live++;
		assert_int_equal(
			kvc_pool_set_owner(fx->pool, id, fx->owner[id]), 0);
		fill_block(fx, id);
		if (out)
			out[i] = id;
	}
	free(ids);
	CHECK(fx->pool);
	return 0;
}

static void alloc_ok(struct fixture *fx, uint32_t n, uint32_t *out, int line)
{
	int err = model_alloc(fx, n, out);

	if (err)
		fail_msg("line %d: [%s] kvc_pool_alloc(%u) = %d: %s", line,
			 fx->what, n, err, kvc_last_error());
}

#define ALLOC_OK(fx, n, out) alloc_ok(fx, n, out, __LINE__)

/* Free @ids (fenced when @fence is not NULL or @fenced); model on success. */
static int model_free(struct fixture *fx, uint32_t n, const uint32_t *ids,
		      bool fenced, const struct kvc_fence *fence)
{
	struct kvc_pool_stats before = stats_of(fx), after;
	uint32_t i;
	int err;

	err = fenced ? kvc_pool_free_fenced(fx->pool, n, ids, fence) :
		       kvc_pool_free(fx->pool, n, ids);
	after = stats_of(fx);
	if (err) {
		if (after.blocks_live != before.blocks_live)
			FAIL(fx, "a failed free changed blocks_live");
	} else {
		for (i = 0; i < n; i++) {
			if (!fx->live[ids[i]])
				FAIL(fx, "freed block %u was not live", ids[i]);
			fx->live[ids[i]] = 0;
			fx->nr_live--;
		}
	}
	CHECK(fx->pool);
	return err;
}

static void free_ok(struct fixture *fx, uint32_t n, const uint32_t *ids,
		    int line)
{
	int err = model_free(fx, n, ids, false, NULL);

	if (err)
		fail_msg("line %d: [%s] kvc_pool_free(%u) = %d: %s", line,
			 fx->what, n, err, kvc_last_error());
}

#define FREE_OK(fx, n, ids) free_ok(fx, n, ids, __LINE__)

/* Up to @n distinct random live ids into @out; returns how many. */
static uint32_t pick_live(struct fixture *fx, uint32_t n, uint32_t *out)
{
	uint32_t *all = malloc(fx->total * sizeof(*all)), nr = 0, id, i;

	assert_non_null(all);
	for (id = 0; id < fx->total; id++)
		if (fx->live[id])
			all[nr++] = id;
	if (n > nr)
		n = nr;
	for (i = 0; i < n; i++) {
		uint32_t j = i + rng_below(fx, nr - i), t = all[i];

		all[i] = all[j];
		all[j] = t;
		out[i] = all[i];
	}
	free(all);
	return n;
}

/* Live ids of chunk @c, up to @n of them, in random order. */
static uint32_t live_in_chunk(struct fixture *fx, uint32_t c, uint32_t n,
			      uint32_t *out)
{
	uint32_t all[MAX_CHUNKS * 4], nr = 0, i, id;

	assert_true(fx->bpc <= sizeof(all) / sizeof(all[0]));
	for (id = c * fx->bpc; id < (c + 1) * fx->bpc; id++)
		if (fx->live[id])
			all[nr++] = id;
	if (n > nr)
		n = nr;
	for (i = 0; i < n; i++) {
		uint32_t j = i + rng_below(fx, nr - i), t = all[i];

		all[i] = all[j];
		all[j] = t;
		out[i] = all[i];
	}
	return n;
}

/* Free up to @n random live blocks, fenced by @fence if not NULL. */
static int free_random_fenced(struct fixture *fx, uint32_t n,
			      const struct kvc_fence *fence)
{
	uint32_t *ids = malloc((fx->total + 1) * sizeof(*ids));
	int err;

	assert_non_null(ids);
	n = pick_live(fx, n, ids);
	err = n ? model_free(fx, n, ids, fence != NULL, fence) : 0;
	free(ids);
	return err;
}

static int free_random(struct fixture *fx, uint32_t n)
{
	return free_random_fenced(fx, n, NULL);
}

/* A random history of allocs and frees, drifting towards @fill_pct full. */
static void random_history(struct fixture *fx, uint32_t steps,
			   uint32_t fill_pct)
{
	uint32_t s, n, room, max;
	int err;

	for (s = 0; s < steps; s++) {
		bool grow = (uint64_t)fx->nr_live * 100 <
			    (uint64_t)fill_pct * fx->total;

		bool up;

		room = fx->total - fx->nr_live;
		if (!room)
			up = false;
		else if (!fx->nr_live)
			up = true;
		else
			up = grow ? rng_below(fx, 4) != 0 :
				    rng_below(fx, 4) == 0;
		if (up) {
			max = room < 2 * fx->bpc ? room : 2 * fx->bpc;
			n = 1 + rng_below(fx, max);
			err = model_alloc(fx, n, NULL);
			if (err)
				FAIL(fx, "alloc(%u) with %u free = %d: %s", n,
				     room, err, kvc_last_error());
		} else if (fx->nr_live) {
			max = fx->nr_live < 2 * fx->bpc ? fx->nr_live :
							  2 * fx->bpc;
			n = 1 + rng_below(fx, max);
			err = free_random(fx, n);
			if (err)
				FAIL(fx, "free = %d: %s", err,
				     kvc_last_error());
		}
	}
}

/* Free about @pct percent of the live blocks, at random. */
static void fragment(struct fixture *fx, uint32_t pct)
{
	uint32_t n = (uint32_t)((uint64_t)fx->nr_live * pct / 100);
	int err = free_random(fx, n);

	if (err)
		FAIL(fx, "free = %d: %s", err, kvc_last_error());
}

static void chunk_counts(const struct fixture *fx, uint32_t *counts)
{
	uint32_t id;

	memset(counts, 0, MAX_CHUNKS * sizeof(*counts));
	for (id = 0; id < fx->total; id++)
		counts[id / fx->bpc] += fx->live[id];
}

/**
 * struct bound - What a full compaction must do, computed from the model.
 * @need: ceil(live / bpc): the chunks the live blocks need.
 * @nonempty: chunks holding a live block.
 * @k: chunks a full compaction frees: @nonempty - @need.
 * @lb: the fewest moves that free them: the live blocks of the @k
 *      sparsest non-empty chunks.
 * @smallest: live blocks of the sparsest non-empty chunk (0 if none).
 */
struct bound {
	uint32_t need;
	uint32_t nonempty;
	uint32_t k;
	uint64_t lb;
	uint32_t smallest;
};

static struct bound lower_bound(const struct fixture *fx,
				const uint32_t *counts)
{
	uint32_t sorted[MAX_CHUNKS], n = 0, c, i, j, live = 0;
	struct bound b = { 0 };

	for (c = 0; c < fx->nchunks; c++) {
		if (!counts[c])
			continue;
		live += counts[c];
		/* insertion sort, ascending */
		for (i = n; i > 0 && sorted[i - 1] > counts[c]; i--)
			sorted[i] = sorted[i - 1];
		sorted[i] = counts[c];
		n++;
	}
	b.nonempty = n;
	b.need = (live + fx->bpc - 1) / fx->bpc;
	b.k = n - b.need;
	for (j = 0; j < b.k; j++)
		b.lb += sorted[j];
	b.smallest = n ? sorted[0] : 0;
	return b;
}

static struct bound model_bound(const struct fixture *fx)
{
	uint32_t counts[MAX_CHUNKS];

	chunk_counts(fx, counts);
	return lower_bound(fx, counts);
}

/* ------------------------------------------------------------------ */
/* one compaction call, checked */

/**
 * struct round - What one compaction call is compared against.
 * @before: stats before the call. @after: after it.
 * @fc_before: fault-backend counts before. @fc_after: after.
 * @counts: live blocks per chunk before. @counts_after: after.
 * @b: the bound computed before.
 * @source: chunks that moves came from. @nr_sources: how many.
 */
struct round {
	struct kvc_pool_stats before, after;
	struct fault_counts fc_before, fc_after;
	uint32_t counts[MAX_CHUNKS];
	uint32_t counts_after[MAX_CHUNKS];
	struct bound b;
	bool source[MAX_CHUNKS];
	uint32_t nr_sources;
};

static void begin_round(struct fixture *fx, struct round *r)
{
	memset(r, 0, sizeof(*r));
	r->before = stats_of(fx);
	fault_backend_counts(fx->be, &r->fc_before);
	chunk_counts(fx, r->counts);
	r->b = lower_bound(fx, r->counts);
	fx->nr_moves = 0;
	fx->hook_calls = 0;
	fx->hook_oom = false;
	fault_backend_copy_log_reset(fx->be);
}

/* Did a successful copy since the round began carry @from to @to? */
static bool was_copied(struct fixture *fx, uint32_t from, uint32_t to)
{
	uint64_t src = (uint64_t)from * fx->bs, dst = (uint64_t)to * fx->bs;
	const struct kvc_copy *log;
	uint64_t n, lost, i;

	log = fault_backend_copy_log(fx->be, &n, &lost);
	if (lost)
		FAIL(fx, "the copy log overflowed");
	for (i = 0; i < n; i++) {
		const struct kvc_copy *c = &log[i];

		/* Adjacent blocks may be copied as one range. */
		if (c->src <= src && src + fx->bs <= c->src + c->bytes &&
		    c->dst - c->src == dst - src)
			return true;
	}
	return false;
}

/* Did any successful copy since the round began read block @id? */
static bool was_read(struct fixture *fx, uint32_t id)
{
	uint64_t src = (uint64_t)id * fx->bs, n, lost, i;
	const struct kvc_copy *log = fault_backend_copy_log(fx->be, &n, &lost);

	for (i = 0; i < n; i++)
		if (log[i].src < src + fx->bs &&
		    src < log[i].src + log[i].bytes)
			return true;
	return false;
}

/*
 * Apply the moves the hook reported to the model, checking each against
 * the contract: from was live, to was a hole in a chunk that was not empty
 * before the call and that no move came out of, the owner is the from
 * block's, no id appears twice, and the device really copied it.
 */
static void apply_moves(struct fixture *fx, struct round *r, const char *file,
			int line)
{
	uint8_t *seen = calloc(fx->total, 1);
	uint32_t i, c;

	assert_non_null(seen);
	if (fx->hook_oom)
		fail_msg("%s:%d: out of memory recording moves", file, line);
	for (i = 0; i < fx->nr_moves; i++) {
		const struct kvc_move *mv = &fx->moves[i];

		if (mv->from >= fx->total || mv->to >= fx->total)
			fail_msg("%s:%d: [%s] move %u: %u -> %u out of range",
				 file, line, fx->what, i, mv->from, mv->to);
		r->source[mv->from / fx->bpc] = true;
	}
	for (i = 0; i < fx->nr_moves; i++) {
		const struct kvc_move *mv = &fx->moves[i];

		if (seen[mv->from] || seen[mv->to] || mv->from == mv->to)
			fail_msg(
				"%s:%d: [%s] move %u: %u -> %u: an id reported "
				"twice",
				file, line, fx->what, i, mv->from, mv->to);
		seen[mv->from] = seen[mv->to] = 1;
		if (!fx->live[mv->from])
			fail_msg("%s:%d: [%s] move %u: from %u was not live",
				 file, line, fx->what, i, mv->from);
		if (fx->live[mv->to])
			fail_msg("%s:%d: [%s] move %u: to %u was live", file,
				 line, fx->what, i, mv->to);
		if (mv->owner != fx->owner[mv->from])
			fail_msg("%s:%d: [%s] move %u: %u -> %u reports owner "
				 "%#" PRIx64 ", the block's is %#" PRIx64,
				 file, line, fx->what, i, mv->from, mv->to,
				 mv->owner, fx->owner[mv->from]);
		if (!r->counts[mv->to / fx->bpc])
			fail_msg("%s:%d: [%s] move %u: to %u lies in chunk %u, "
				 "empty before the call",
				 file, line, fx->what, i, mv->to,
				 mv->to / fx->bpc);
		if (r->source[mv->to / fx->bpc])
			fail_msg("%s:%d: [%s] move %u: to %u lies in chunk %u, "
				 "which blocks were moved out of",
				 file, line, fx->what, i, mv->to,
				 mv->to / fx->bpc);
		if (!was_copied(fx, mv->from, mv->to))
			fail_msg("%s:%d: [%s] move %u: %u -> %u reported, but "
				 "no successful copy made it",
				 file, line, fx->what, i, mv->from, mv->to);
		fx->live[mv->to] = 1;
		fx->owner[mv->to] = mv->owner;
		fx->bump[mv->to] = fx->bump[mv->from];
		fx->live[mv->from] = 0;
		fx->owner[mv->from] = 0;
		fx->bump[mv->from] = 0;
	}
	for (c = 0; c < fx->nchunks; c++)
		r->nr_sources += r->source[c];
	free(seen);
}

static void end_round_at(struct fixture *fx, struct round *r, const char *file,
			 int line)
{
	apply_moves(fx, r, file, line);
	verify_model(fx, file, line);
	r->after = stats_of(fx);
	fault_backend_counts(fx->be, &r->fc_after);
	chunk_counts(fx, r->counts_after);
}

#define END_ROUND(fx, r) end_round_at(fx, r, __FILE__, __LINE__)

#define EXPECT_EQ(fx, got, want)                                             \
	do {                                                                 \
		uint64_t got_ = (uint64_t)(got), want_ = (uint64_t)(want);   \
		if (got_ != want_)                                           \
			FAIL(fx, "%s = %" PRIu64 ", expected %s = %" PRIu64, \
			     #got, got_, #want, want_);                      \
	} while (0)

/*
 * What every compaction call must satisfy, failed or not: the result and
 * the counters agree with the moves the hook heard, nothing was mapped,
 * and after a success every chunk a move came out of is empty.
 * @counted: the call counts in @compactions.
 */
static void expect_consistent(struct fixture *fx, const struct round *r,
			      const struct kvc_compact_result *res, int rc,
			      bool counted)
{
	const struct kvc_pool_stats *b = &r->before, *a = &r->after;
	uint32_t c;

	EXPECT_EQ(fx, res->blocks_moved, fx->nr_moves);
	EXPECT_EQ(fx, a->blocks_moved - b->blocks_moved, res->blocks_moved);
	EXPECT_EQ(fx, a->chunks_vacated - b->chunks_vacated,
		  res->chunks_vacated);
	EXPECT_EQ(fx, a->chunks_released - b->chunks_released,
		  res->chunks_released);
	EXPECT_EQ(fx, b->chunks_mapped - a->chunks_mapped,
		  res->chunks_released);
	EXPECT_EQ(fx, a->backend_map, b->backend_map);
	EXPECT_EQ(fx, a->blocks_live, b->blocks_live);
	if (rc)
		return;
	EXPECT_EQ(fx, a->bytes_copied - b->bytes_copied, res->bytes_copied);
	EXPECT_EQ(fx, res->bytes_copied, res->blocks_moved * fx->bs);
	EXPECT_EQ(fx, a->compactions - b->compactions, counted ? 1 : 0);
	EXPECT_EQ(fx, a->compact_failures, b->compact_failures);
	if (res->blocks_moved &&
	    (a->backend_copy - b->backend_copy == 0 ||
	     a->backend_copy - b->backend_copy > res->blocks_moved))
		FAIL(fx,
		     "backend_copy rose by %" PRIu64 " for %" PRIu64
		     " blocks moved",
		     a->backend_copy - b->backend_copy, res->blocks_moved);
	for (c = 0; c < fx->nchunks; c++)
		if (r->source[c] && r->counts_after[c])
			FAIL(fx,
			     "chunk %u was left with %u of its %u live "
			     "blocks: vacated partly",
			     c, r->counts_after[c], r->counts[c]);
	EXPECT_EQ(fx, res->chunks_vacated, r->nr_sources);
	if (res->chunks_vacated > res->chunks_planned)
		FAIL(fx, "%u chunks vacated of %u planned", res->chunks_vacated,
		     res->chunks_planned);
}

/* The empty chunks left after @vacated more emptied: the watermark's. */
static uint64_t empties_after(struct fixture *fx, const struct round *r,
			      uint64_t vacated)
{
	uint64_t e = r->before.chunks_empty + vacated;

	return e < fx->geo->kept ? e : fx->geo->kept;
}

/* A full compaction on an unchanged pool did exactly what it must. */
static void expect_full(struct fixture *fx, const struct round *r,
			const struct kvc_compact_result *res)
{
	const struct kvc_pool_stats *b = &r->before, *a = &r->after;
	struct bound after = lower_bound(fx, r->counts_after);
	uint64_t empties = empties_after(fx, r, r->b.k);

	EXPECT_EQ(fx, b->chunks_reclaimable, r->b.k);
	EXPECT_EQ(fx, res->lower_bound, r->b.lb);
	EXPECT_EQ(fx, res->blocks_moved, r->b.lb);
	EXPECT_EQ(fx, res->bytes_copied, r->b.lb * fx->bs);
	EXPECT_EQ(fx, res->chunks_planned, r->b.k);
	EXPECT_EQ(fx, res->chunks_vacated, r->b.k);
	EXPECT_EQ(fx, res->chunks_skipped, 0);
	EXPECT_EQ(fx, res->budget_limited, false);
	EXPECT_EQ(fx, after.nonempty, r->b.need);
	EXPECT_EQ(fx, a->chunks_reclaimable, 0);
	if (a->compact_score != 0.0)
		FAIL(fx, "compact_score %g after a full compaction",
		     a->compact_score);
	EXPECT_EQ(fx, a->chunks_empty, empties);
	EXPECT_EQ(fx, a->chunks_mapped, r->b.need + empties);
	EXPECT_EQ(fx, res->chunks_released,
		  b->chunks_mapped - a->chunks_mapped);
	EXPECT_EQ(fx, a->backend_unmap - b->backend_unmap,
		  res->chunks_released);
	EXPECT_EQ(fx, a->unmap_failures, b->unmap_failures);
	EXPECT_EQ(fx, a->fences_pending, 0);
}

/* kvc_pool_compact() with the model checked before and after. */
static int compact_at(struct fixture *fx, const struct kvc_compact_params *p,
		      struct kvc_compact_result *res, struct round *r,
		      const char *file, int line)
{
	int rc;

	begin_round(fx, r);
	memset(res, 0xa5, sizeof(*res));
	rc = kvc_pool_compact(fx->pool, p, res);
	end_round_at(fx, r, file, line);
	return rc;
}

#define COMPACT(fx, p, res, r) compact_at(fx, p, res, r, __FILE__, __LINE__)

static void compact_full_ok(struct fixture *fx,
			    const struct kvc_compact_params *p, int line)
{
	struct kvc_compact_result res;
	struct round r;
	int rc = compact_at(fx, p, &res, &r, __FILE__, line);

	if (rc)
		fail_msg("line %d: [%s] kvc_pool_compact() = %d: %s", line,
			 fx->what, rc, kvc_last_error());
	expect_consistent(fx, &r, &res, rc, true);
	expect_full(fx, &r, &res);
}

#define COMPACT_FULL_OK(fx, p) compact_full_ok(fx, p, __LINE__)

/*
 * Build a pool whose chunks hold @want[i] live blocks (0 < want <= bpc),
 * on a fresh pool: fill @n chunks whole, then free down. @chunks gets the
 * chunk index of each, in the order of @want.
 */
static void make_layout(struct fixture *fx, const uint32_t *want, uint32_t n,
			uint32_t *chunks)
{
	uint32_t counts[MAX_CHUNKS], c, i = 0, ids[MAX_CHUNKS * 4];

	assert_int_equal(fx->nr_live, 0);
	ALLOC_OK(fx, n * fx->bpc, NULL);
	chunk_counts(fx, counts);
	for (c = 0; c < fx->nchunks; c++) {
		if (!counts[c])
			continue;
		if (counts[c] != fx->bpc || i >= n)
			FAIL(fx,
			     "alloc of %u chunks' worth left chunk %u with "
			     "%u blocks",
			     n, c, counts[c]);
		chunks[i] = c;
		assert_true(want[i] <= fx->bpc);
		FREE_OK(fx, live_in_chunk(fx, c, fx->bpc - want[i], ids), ids);
		i++;
	}
	assert_int_equal(i, n);
	VERIFY(fx);
}

/* ------------------------------------------------------------------ */
/* full compaction of random histories */

#define SEEDS 40

/*
 * Random histories, then full compaction, several rounds per seed: every
 * move checked as it is applied to the model, every block's contents and
 * owner after, the mapped chunks down to ceil(live / bpc) plus the
 * watermark, moves equal to an independently computed lower bound.
 */
static void test_full_random(void **state)
{
	struct fixture *fx = *state;
	const struct geometry *geo = fx->geo;
	struct kvc_compact_params p;
	struct kvc_compact_result res;
	struct round r;
	uint32_t seed, round, moved_somewhere = 0;
	int rc;

	for (seed = 1; seed <= SEEDS; seed++) {
		params_for(fx, geo);
		pool_create(fx);
		seed_rng(fx, seed);
		for (round = 0; round < 4; round++) {
			snprintf(fx->what, sizeof(fx->what),
				 "%s, seed %u, round %u", geo->name, seed,
				 round);
			random_history(fx, 10 + rng_below(fx, 60),
				       40 + rng_below(fx, 60));
			fragment(fx, rng_below(fx, 80));
			/* Every spelling of "full, no fence" is the same. */
			memset(&p, 0, sizeof(p));
			switch (round % 3) {
			case 0:
				COMPACT_FULL_OK(fx, NULL);
				break;
			case 1:
				COMPACT_FULL_OK(fx, &p);
				break;
			default: {
				const struct kvc_fence none = { KVC_FENCE_NONE,
								NULL };

				p.fence = &none;
				COMPACT_FULL_OK(fx, &p);
			}
			}
			moved_somewhere += fx->nr_moves > 0;
			/* Compacting again finds nothing to do. */
			rc = COMPACT(fx, NULL, &res, &r);
			assert_int_equal(rc, 0);
			expect_consistent(fx, &r, &res, rc, true);
			EXPECT_EQ(fx, res.blocks_moved, 0);
			EXPECT_EQ(fx, res.chunks_planned, 0);
			EXPECT_EQ(fx, res.chunks_vacated, 0);
			EXPECT_EQ(fx, res.lower_bound, 0);
			EXPECT_EQ(fx, res.budget_limited, false);
			EXPECT_EQ(fx, fx->hook_calls, 0);
		}
		assert_int_equal(pool_destroy(fx), 0);
		expect_nothing_held(fx, "after destroy");
	}
	snprintf(fx->what, sizeof(fx->what), "%s", geo->name);
	/* The histories must have given compaction something to do. */
	if (moved_somewhere < SEEDS)
		FAIL(fx, "only %u of %u rounds moved a block", moved_somewhere,
		     4 * SEEDS);
}

/* Compaction with nothing to gain: empty, all full, one partial chunk. */
static void test_nothing_to_do(void **state)
{
	static const uint32_t full3[] = { 16, 16, 16 };
	struct fixture *fx = *state;
	struct kvc_compact_result res;
	struct kvc_pool_stats st;
	struct round r;
	uint32_t ids[64], chunks[3];
	int rc;

	params_for(fx, &geo16_kept1);
	pool_create(fx);
	/* Nothing mapped at all; res may be NULL. */
	assert_int_equal(kvc_pool_compact(fx->pool, NULL, NULL), 0);
	VERIFY(fx);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.compactions, 1);
	EXPECT_EQ(fx, st.chunks_mapped, 0);
	EXPECT_EQ(fx, st.chunks_reclaimable, 0);
	if (st.compact_score != 0.0)
		FAIL(fx, "compact_score %g with nothing mapped",
		     st.compact_score);
	rc = COMPACT(fx, NULL, &res, &r);
	assert_int_equal(rc, 0);
	expect_consistent(fx, &r, &res, rc, true);
	expect_full(fx, &r, &res);
	/* Three full chunks. */
	make_layout(fx, full3, 3, chunks);
	rc = COMPACT(fx, NULL, &res, &r);
	assert_int_equal(rc, 0);
	expect_consistent(fx, &r, &res, rc, true);
	expect_full(fx, &r, &res);
	EXPECT_EQ(fx, res.blocks_moved, 0);
	/* Two full, one partial: the partial one cannot go anywhere. */
	FREE_OK(fx, live_in_chunk(fx, chunks[2], 5, ids), ids);
	rc = COMPACT(fx, NULL, &res, &r);
	assert_int_equal(rc, 0);
	expect_consistent(fx, &r, &res, rc, true);
	expect_full(fx, &r, &res);
	EXPECT_EQ(fx, res.blocks_moved, 0);
	EXPECT_EQ(fx, fx->hook_calls, 0);
	/* 4 + 16 + 11: the 4 fit the 5 holes, one chunk goes. */
	FREE_OK(fx, live_in_chunk(fx, chunks[0], 12, ids), ids);
	rc = COMPACT(fx, NULL, &res, &r);
	assert_int_equal(rc, 0);
	expect_consistent(fx, &r, &res, rc, true);
	expect_full(fx, &r, &res);
	EXPECT_EQ(fx, res.blocks_moved, 4);
	EXPECT_EQ(fx, r.counts_after[chunks[0]], 0);
	EXPECT_EQ(fx, r.counts_after[chunks[2]], 15);
	assert_int_equal(pool_destroy(fx), 0);
}

/*
 * The lower bound on hand-made layouts, with ties, a full chunk among
 * partial ones, and a case where the sparsest chunks are not the lowest.
 */
static void test_lower_bound_layouts(void **state)
{
	static const struct {
		uint32_t n;
		uint32_t want[8];
		uint32_t k;
		uint64_t lb;
	} cases[] = {
		/* 16 per chunk. live 32: need 2, free 3 chunks: 1+2+3 moves */
		{ 5, { 16, 10, 1, 2, 3 }, 3, 6 },
		/* ties: live 20, need 2, k 2: two of the 4s */
		{ 4, { 4, 4, 4, 8 }, 2, 8 },
		/* all sparse: live 8, need 1, k 7 */
		{ 8, { 1, 1, 1, 1, 1, 1, 1, 1 }, 7, 7 },
		/* nothing reclaimable: live 45, need 3 */
		{ 3, { 15, 15, 15 }, 0, 0 },
		/* sparsest last: live 33, need 3, k 1 */
		{ 4, { 15, 9, 8, 1 }, 1, 1 },
		/* one chunk's worth exactly: live 16, need 1, k 3 */
		{ 4, { 4, 4, 4, 4 }, 3, 12 },
	};
	struct fixture *fx = *state;
	uint32_t i, chunks[8];

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct bound b;

		snprintf(fx->what, sizeof(fx->what), "layout case %u", i);
		params_for(fx, &geo16);
		pool_create(fx);
		seed_rng(fx, i + 1);
		make_layout(fx, cases[i].want, cases[i].n, chunks);
		b = model_bound(fx);
		EXPECT_EQ(fx, b.k, cases[i].k);
		EXPECT_EQ(fx, b.lb, cases[i].lb);
		EXPECT_EQ(fx, stats_of(fx).chunks_reclaimable, cases[i].k);
		COMPACT_FULL_OK(fx, NULL);
		assert_int_equal(pool_destroy(fx), 0);
	}
}

/* No hook: moves are not reported, but owners still follow their data. */
static void test_no_hook(void **state)
{
	struct fixture *fx = *state;
	struct kvc_compact_result res;
	uint64_t *owner_of_tag, owner;
	uint32_t id, j, nr_before;
	struct bound b;

	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 77);
	random_history(fx, 40, 90);
	fragment(fx, 60);
	b = model_bound(fx);
	assert_true(b.k > 0);
	nr_before = fx->nr_live;
	owner_of_tag = calloc(fx->total, sizeof(*owner_of_tag));
	assert_non_null(owner_of_tag);
	for (id = 0, j = 0; id < fx->total; id++)
		if (fx->live[id])
			owner_of_tag[j++] = fx->owner[id];
	assert_int_equal(kvc_pool_set_move_hook(fx->pool, NULL, NULL), 0);
	assert_int_equal(kvc_pool_compact(fx->pool, NULL, &res), 0);
	EXPECT_EQ(fx, res.blocks_moved, b.lb);
	EXPECT_EQ(fx, fx->nr_moves, 0);
	/* Rebuild the model from the owner tags: each must be found once. */
	memset(fx->live, 0, fx->total);
	fx->nr_live = 0;
	for (id = 0; id < fx->total; id++) {
		if (!kvc_pool_is_live(fx->pool, id))
			continue;
		assert_int_equal(kvc_pool_get_owner(fx->pool, id, &owner), 0);
		for (j = 0; j < nr_before; j++)
			if (owner_of_tag[j] == owner)
				break;
		if (j == nr_before)
			FAIL(fx,
			     "block %u has owner %#" PRIx64
			     ", which no block had before",
			     id, owner);
		owner_of_tag[j] = 0; /* found once */
		fx->live[id] = 1;
		fx->owner[id] = owner;
		fx->bump[id] = 0;
		fx->nr_live++;
	}
	EXPECT_EQ(fx, fx->nr_live, nr_before);
	VERIFY(fx);
	EXPECT_EQ(fx, model_bound(fx).k, 0);
	free(owner_of_tag);
	assert_int_equal(pool_destroy(fx), 0);
}

/* ------------------------------------------------------------------ */
/* budgets */

/*
 * A budgeted call: never more bytes or chunks than allowed, sources
 * vacated whole, budget_limited exactly when a full compaction would
 * still free something, and at least one chunk whenever the sparsest
 * fits the budget.
 */
static void expect_budgeted(struct fixture *fx, const struct round *r,
			    const struct kvc_compact_result *res,
			    const struct kvc_compact_params *p)
{
	const struct kvc_pool_stats *a = &r->after;

	expect_consistent(fx, r, res, 0, true);
	if (p->max_bytes && res->bytes_copied > p->max_bytes)
		FAIL(fx, "copied %" PRIu64 " bytes on a budget of %" PRIu64,
		     res->bytes_copied, p->max_bytes);
	if (p->max_chunks && res->chunks_vacated > p->max_chunks)
		FAIL(fx, "vacated %u chunks, at most %u allowed",
		     res->chunks_vacated, p->max_chunks);
	EXPECT_EQ(fx, res->chunks_planned, res->chunks_vacated);
	EXPECT_EQ(fx, res->chunks_skipped, 0);
	EXPECT_EQ(fx, res->lower_bound, res->blocks_moved);
	EXPECT_EQ(fx, res->budget_limited, a->chunks_reclaimable > 0);
	EXPECT_EQ(fx, a->chunks_reclaimable, r->b.k - res->chunks_vacated);
	EXPECT_EQ(fx, a->chunks_empty,
		  empties_after(fx, r, res->chunks_vacated));
	EXPECT_EQ(fx, a->chunks_mapped,
		  r->b.nonempty - res->chunks_vacated + a->chunks_empty);
	if (r->b.k &&
	    (!p->max_bytes ||
	     (uint64_t)r->b.smallest * fx->bs <= p->max_bytes) &&
	    !res->chunks_vacated)
		FAIL(fx,
		     "nothing vacated, though the sparsest chunk (%u "
		     "blocks) fits a budget of %" PRIu64 " bytes",
		     r->b.smallest, p->max_bytes);
}

static void test_budget(void **state)
{
	struct fixture *fx = *state;
	const struct geometry *geo = fx->geo;
	struct kvc_compact_params p;
	struct kvc_compact_result res;
	struct round r;
	uint32_t seed, calls, limited_seen = 0;
	uint64_t moved_total;
	int rc;

	for (seed = 1; seed <= SEEDS; seed++) {
		struct bound b0;

		snprintf(fx->what, sizeof(fx->what), "%s, seed %u", geo->name,
			 seed);
		params_for(fx, geo);
		pool_create(fx);
		seed_rng(fx, 1000 + seed);
		random_history(fx, 40 + rng_below(fx, 40),
			       70 + rng_below(fx, 30));
		fragment(fx, 30 + rng_below(fx, 50));
		b0 = model_bound(fx);

		/* A budget below the sparsest chunk buys nothing. */
		if (b0.k) {
			memset(&p, 0, sizeof(p));
			p.max_bytes = (uint64_t)b0.smallest * fx->bs - 1;
			rc = COMPACT(fx, &p, &res, &r);
			assert_int_equal(rc, 0);
			expect_budgeted(fx, &r, &res, &p);
			EXPECT_EQ(fx, res.blocks_moved, 0);
			EXPECT_EQ(fx, res.budget_limited, true);
			EXPECT_EQ(fx, fx->hook_calls, 0);
		}

		/* Budgeted calls converge to the full result. */
		moved_total = 0;
		for (calls = 0;; calls++) {
			memset(&p, 0, sizeof(p));
			/* At least a chunk minus one block: always progress. */
			p.max_bytes =
				(fx->bpc - 1 + rng_below(fx, 2 * fx->bpc)) *
					fx->bs +
				rng_below(fx, (uint32_t)fx->bs);
			if (rng_below(fx, 3) == 0)
				p.max_chunks = 1 + rng_below(fx, 3);
			rc = COMPACT(fx, &p, &res, &r);
			assert_int_equal(rc, 0);
			expect_budgeted(fx, &r, &res, &p);
			limited_seen += res.budget_limited;
			moved_total += res.blocks_moved;
			if (!res.budget_limited)
				break;
			if (!res.chunks_vacated)
				FAIL(fx, "a budgeted call made no progress");
			if (calls > b0.k)
				FAIL(fx, "%u budgeted calls and still limited",
				     calls);
		}
		r.after = stats_of(fx);
		EXPECT_EQ(fx, r.after.chunks_reclaimable, 0);
		EXPECT_EQ(fx, model_bound(fx).nonempty, b0.need);
		if (moved_total < b0.lb)
			FAIL(fx,
			     "moved %" PRIu64
			     " blocks, below the bound %" PRIu64,
			     moved_total, b0.lb);

		/* max_chunks alone, on fresh fragmentation. */
		fragment(fx, 50);
		b0 = model_bound(fx);
		if (b0.k >= 2) {
			memset(&p, 0, sizeof(p));
			p.max_chunks = 1;
			rc = COMPACT(fx, &p, &res, &r);
			assert_int_equal(rc, 0);
			expect_budgeted(fx, &r, &res, &p);
			EXPECT_EQ(fx, res.chunks_vacated, 1);
			EXPECT_EQ(fx, res.blocks_moved, b0.smallest);
			EXPECT_EQ(fx, res.budget_limited, true);
			p.max_chunks = b0.k - 1;
			rc = COMPACT(fx, &p, &res, &r);
			assert_int_equal(rc, 0);
			expect_budgeted(fx, &r, &res, &p);
			EXPECT_EQ(fx, res.chunks_vacated, b0.k - 1);
			EXPECT_EQ(fx, res.budget_limited, false);
		}
		/* A budget of exactly the bound is a full compaction. */
		fragment(fx, 40);
		b0 = model_bound(fx);
		memset(&p, 0, sizeof(p));
		p.max_bytes = b0.lb ? b0.lb * fx->bs : 1;
		rc = COMPACT(fx, &p, &res, &r);
		assert_int_equal(rc, 0);
		expect_consistent(fx, &r, &res, rc, true);
		expect_full(fx, &r, &res);
		assert_int_equal(pool_destroy(fx), 0);
	}
	snprintf(fx->what, sizeof(fx->what), "%s", geo->name);
	if (limited_seen < SEEDS / 2)
		FAIL(fx, "the budget limited only %u calls", limited_seen);
}

/* ------------------------------------------------------------------ */
/* proactive compaction */

/*
 * One tick, checked against kcompactd's rule: idle until the score reaches
 * high, then compacting on every tick until it is at or below low.
 * @active: whether compaction is under way, updated.
 * Returns the tick's return value.
 */
static int tick_checked(struct fixture *fx, bool *active, int line)
{
	const struct kvc_compact_result zero = { 0 };
	struct kvc_compact_result res;
	struct round r;
	double score;
	int rc, want;

	begin_round(fx, &r);
	score = r.before.compact_score;
	if (score != (double)r.before.chunks_reclaimable /
			     (double)(r.before.chunks_mapped ?
					      r.before.chunks_mapped :
					      1))
		FAIL(fx,
		     "compact_score %g, but %" PRIu64 " of %" PRIu64
		     " mapped chunks reclaimable",
		     score, r.before.chunks_reclaimable,
		     r.before.chunks_mapped);
	if (!*active && score >= fx->params.compact_high)
		*active = true;
	else if (*active && score <= fx->params.compact_low)
		*active = false;
	want = *active ? 1 : 0;
	memset(&res, 0xa5, sizeof(res));
	rc = kvc_pool_compact_tick(fx->pool, NULL, &res);
	end_round_at(fx, &r, __FILE__, line);
	if (rc != want)
		fail_msg("line %d: [%s] tick at score %g (high %g, low %g, %s) "
			 "= %d, expected %d",
			 line, fx->what, score, fx->params.compact_high,
			 fx->params.compact_low,
			 *active ? "compacting" : "idle", rc, want);
	if (!rc) {
		if (memcmp(&res, &zero, sizeof(res)))
			FAIL(fx, "an idle tick did not zero its result");
		EXPECT_EQ(fx, fx->nr_moves, 0);
		EXPECT_EQ(fx, r.after.compactions, r.before.compactions);
		return rc;
	}
	expect_consistent(fx, &r, &res, 0, true);
	/* It stops once the score is at or below the low mark. */
	if (r.after.compact_score <= fx->params.compact_low)
		*active = false;
	if (!res.chunks_vacated)
		FAIL(fx, "a tick that compacted vacated nothing");
	if (fx->params.compact_budget_bytes &&
	    res.bytes_copied > fx->params.compact_budget_bytes)
		FAIL(fx, "a tick copied %" PRIu64 " bytes, budget %" PRIu64,
		     res.bytes_copied, fx->params.compact_budget_bytes);
	return rc;
}

#define TICK(fx, active) tick_checked(fx, active, __LINE__)

static void test_proactive(void **state)
{
	struct fixture *fx = *state;
	uint32_t want[12], chunks[12], ids[16], j, ticks = 0, seed;
	bool active = false;
	int rc;

	/* 12 full chunks, then one chunk at a time down to 6 live. */
	params_for(fx, &geo16);
	fx->params.compact_high = 0.4;
	fx->params.compact_low = 0.1;
	fx->params.compact_budget_bytes = GRAN; /* one chunk's bytes */
	pool_create(fx);
	seed_rng(fx, 5);
	for (j = 0; j < 12; j++)
		want[j] = 16;
	make_layout(fx, want, 12, chunks);
	for (j = 0; j < 12 && !active; j++) {
		FREE_OK(fx, live_in_chunk(fx, chunks[j], 10, ids), ids);
		rc = TICK(fx, &active);
		assert_int_equal(rc, active ? 1 : 0);
	}
	if (!active)
		FAIL(fx, "the score never reached the high mark");
	/* Ticks keep going, a budget's worth each, until the low mark. */
	for (ticks = 1; TICK(fx, &active) == 1; ticks++)
		assert_true(ticks < 20);
	if (ticks < 2)
		FAIL(fx, "one chunk of budget took only %u ticks", ticks);
	assert_false(active);
	if (stats_of(fx).compact_score > fx->params.compact_low)
		FAIL(fx, "stopped at score %g", stats_of(fx).compact_score);
	assert_int_equal(TICK(fx, &active), 0);
	assert_int_equal(pool_destroy(fx), 0);

	/* Random histories with a tick after each step: the rule holds. */
	for (seed = 1; seed <= 10; seed++) {
		uint32_t step, started = 0;

		snprintf(fx->what, sizeof(fx->what), "proactive seed %u", seed);
		params_for(fx, seed & 1 ? &geo16_kept1 : &geo12);
		fx->params.compact_high = 0.3 + 0.05 * (seed % 4);
		fx->params.compact_low = 0.05 * (seed % 3);
		fx->params.compact_budget_bytes =
			seed % 5 == 0 ? 0 :
					fx->params.chunk_bytes * (1 + seed % 2);
		pool_create(fx);
		seed_rng(fx, 500 + seed);
		active = false;
		for (step = 0; step < 120; step++) {
			bool was = active;

			if (rng_below(fx, 3))
				random_history(fx, 1, 60);
			else
				fragment(fx, 5 + rng_below(fx, 20));
			rc = TICK(fx, &active);
			started += !was && rc == 1;
		}
		if (!started)
			FAIL(fx, "proactive compaction never started");
		assert_int_equal(pool_destroy(fx), 0);
	}
}

/* A pool made without compact_high never compacts on a tick. */
static void test_tick_without_marks(void **state)
{
	struct fixture *fx = *state;
	struct kvc_compact_result res;
	struct round r;
	int rc;

	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 9);
	random_history(fx, 40, 90);
	fragment(fx, 70);
	assert_true(stats_of(fx).compact_score > 0.3);
	begin_round(fx, &r);
	rc = kvc_pool_compact_tick(fx->pool, NULL, &res);
	END_ROUND(fx, &r);
	if (rc > 0)
		FAIL(fx, "tick = %d on a pool without compact_high", rc);
	EXPECT_EQ(fx, fx->nr_moves, 0);
	EXPECT_EQ(fx, r.after.compactions, r.before.compactions);
	assert_int_equal(pool_destroy(fx), 0);
}

/* compact_high, compact_low and compact_budget_bytes are validated. */
static void test_proactive_params(void **state)
{
	static const struct {
		double high, low;
		uint64_t budget;
		int rc;
	} cases[] = {
		{ 0.5, 0.2, 0, 0 },
		{ 0.5, 0.0, GRAN, 0 },
		{ 0.99, 0.5, 3 * GRAN, 0 },
		{ 1.0, 0.5, 0, -EINVAL }, /* the score is always below 1 */
		{ 0.5, 0.5, 0, -EINVAL }, /* low not below high */
		{ 0.5, 0.7, 0, -EINVAL }, /* low above high */
		{ 0.5, -0.1, 0, -EINVAL }, /* negative low */
		{ -0.5, 0.0, 0, -EINVAL }, /* negative high */
		{ 1.5, 0.2, 0, -EINVAL }, /* a score never exceeds 1 */
		{ 0.5, 0.2, GRAN - 4096, -EINVAL }, /* budget below a chunk */
	};
	struct fixture *fx = *state;
	struct kvc_pool *pool;
	uint32_t i;
	int rc;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		params_for(fx, &geo16);
		fx->params.compact_high = cases[i].high;
		fx->params.compact_low = cases[i].low;
		fx->params.compact_budget_bytes = cases[i].budget;
		pool = NULL;
		rc = kvc_pool_create(&fx->params, &pool);
		if (rc != cases[i].rc)
			fail_msg("high %g, low %g, budget %" PRIu64
				 ": kvc_pool_create() = %d, expected %d (%s)",
				 cases[i].high, cases[i].low, cases[i].budget,
				 rc, cases[i].rc, kvc_last_error());
		if (rc)
			assert_true(kvc_last_error()[0] != '\0');
		if (pool)
			assert_int_equal(kvc_pool_destroy(pool), 0);
	}
}

/* ------------------------------------------------------------------ */
/* planning apart from execution */

static struct kvc_compact_plan *plan_ok(struct fixture *fx,
					const struct kvc_compact_params *p,
					struct kvc_compact_result *res,
					int line)
{
	struct kvc_compact_plan *plan = NULL;
	struct kvc_pool_stats before = stats_of(fx), after;
	int rc;

	fx->nr_moves = 0;
	fx->hook_calls = 0;
	rc = kvc_compact_plan(fx->pool, p, &plan, res);
	if (rc || !plan)
		fail_msg("line %d: [%s] kvc_compact_plan() = %d: %s", line,
			 fx->what, rc, kvc_last_error());
	/* Planning moves nothing and counts nothing. */
	after = stats_of(fx);
	EXPECT_EQ(fx, fx->hook_calls, 0);
	EXPECT_EQ(fx, after.compactions, before.compactions);
	EXPECT_EQ(fx, after.blocks_moved, before.blocks_moved);
	EXPECT_EQ(fx, after.chunks_mapped, before.chunks_mapped);
	VERIFY(fx);
	return plan;
}

#define PLAN_OK(fx, p, res) plan_ok(fx, p, res, __LINE__)

static int execute_at(struct fixture *fx, struct kvc_compact_plan *plan,
		      struct kvc_compact_result *res, struct round *r,
		      const char *file, int line)
{
	int rc;

	begin_round(fx, r);
	memset(res, 0xa5, sizeof(*res));
	rc = kvc_compact_execute(plan, res);
	end_round_at(fx, r, file, line);
	return rc;
}

#define EXECUTE(fx, plan, res, r) \
	execute_at(fx, plan, res, r, __FILE__, __LINE__)

/* Plan, then execute on the unchanged pool: the same as one call. */
static void test_plan_then_execute(void **state)
{
	struct fixture *fx = *state;
	struct kvc_compact_plan *plan;
	struct kvc_compact_result pres, res;
	struct kvc_compact_params p;
	struct round r;
	struct bound b;
	uint32_t seed;
	int rc;

	for (seed = 1; seed <= 10; seed++) {
		snprintf(fx->what, sizeof(fx->what), "plan, seed %u", seed);
		params_for(fx, seed & 1 ? &geo16_kept1 : &geo12);
		pool_create(fx);
		seed_rng(fx, 300 + seed);
		random_history(fx, 60, 90);
		fragment(fx, 60);
		b = model_bound(fx);
		memset(&pres, 0xa5, sizeof(pres));
		plan = PLAN_OK(fx, NULL, &pres);
		EXPECT_EQ(fx, pres.lower_bound, b.lb);
		EXPECT_EQ(fx, pres.chunks_planned, b.k);
		EXPECT_EQ(fx, pres.budget_limited, false);
		rc = EXECUTE(fx, plan, &res, &r);
		assert_int_equal(rc, 0);
		expect_consistent(fx, &r, &res, rc, true);
		expect_full(fx, &r, &res);
		kvc_compact_plan_free(plan);

		/* A budgeted plan says what it leaves. */
		fragment(fx, 60);
		b = model_bound(fx);
		if (b.k >= 2) {
			memset(&p, 0, sizeof(p));
			p.max_chunks = 1;
			plan = PLAN_OK(fx, &p, &pres);
			EXPECT_EQ(fx, pres.chunks_planned, 1);
			EXPECT_EQ(fx, pres.lower_bound, b.smallest);
			EXPECT_EQ(fx, pres.budget_limited, true);
			rc = EXECUTE(fx, plan, &res, &r);
			assert_int_equal(rc, 0);
			expect_budgeted(fx, &r, &res, &p);
			EXPECT_EQ(fx, res.blocks_moved, b.smallest);
			kvc_compact_plan_free(plan);
		}
		/* A plan never run is freed without a trace (ASan checks). */
		plan = PLAN_OK(fx, NULL, NULL);
		kvc_compact_plan_free(plan);
		VERIFY(fx);
		assert_int_equal(pool_destroy(fx), 0);
	}
}

/* Blocks freed between plan and execute are neither copied nor reported. */
static void test_plan_freed_between(void **state)
{
	/* live 36, need 3: the 2 and the 3 go, 5 moves */
	static const uint32_t want[] = { 14, 13, 3, 2, 4 };
	struct fixture *fx = *state;
	struct kvc_compact_plan *plan;
	struct kvc_compact_result pres, res;
	uint32_t chunks[5], freed[4], i;
	struct round r;
	int rc;

	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 17);
	make_layout(fx, want, 5, chunks);
	plan = PLAN_OK(fx, NULL, &pres);
	EXPECT_EQ(fx, pres.chunks_planned, 2);
	EXPECT_EQ(fx, pres.lower_bound, 5);
	/* One block of the 3, both of the 2 (that chunk empties and goes). */
	assert_int_equal(live_in_chunk(fx, chunks[2], 1, freed), 1);
	assert_int_equal(live_in_chunk(fx, chunks[3], 2, freed + 1), 2);
	FREE_OK(fx, 3, freed);
	EXPECT_EQ(fx, stats_of(fx).chunks_mapped, 4);
	rc = EXECUTE(fx, plan, &res, &r);
	assert_int_equal(rc, 0);
	expect_consistent(fx, &r, &res, rc, true);
	for (i = 0; i < 3; i++)
		if (was_read(fx, freed[i]))
			FAIL(fx, "block %u, freed after planning, was copied",
			     freed[i]);
	EXPECT_EQ(fx, res.blocks_moved, 2);
	EXPECT_EQ(fx, res.chunks_vacated, 1);
	EXPECT_EQ(fx, r.counts_after[chunks[2]], 0);
	EXPECT_EQ(fx, r.after.chunks_mapped, 3);
	EXPECT_EQ(fx, r.after.chunks_reclaimable, 0);
	kvc_compact_plan_free(plan);
	assert_int_equal(pool_destroy(fx), 0);
}

/* Allocations after planning took the holes: the source is skipped. */
static void test_plan_holes_eaten(void **state)
{
	static const uint32_t want1[] = { 15, 14, 1 };
	static const uint32_t want2[] = { 15, 14, 2, 1 };
	struct fixture *fx = *state;
	struct kvc_compact_plan *plan;
	struct kvc_compact_result pres, res;
	uint32_t chunks[4], counts[MAX_CHUNKS];
	struct round r;
	int rc;

	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 23);
	make_layout(fx, want1, 3, chunks);
	plan = PLAN_OK(fx, NULL, &pres);
	EXPECT_EQ(fx, pres.chunks_planned, 1);
	EXPECT_EQ(fx, pres.lower_bound, 1);
	/* Fullest partial chunk first: these fill the 15 and the 14. */
	ALLOC_OK(fx, 1, NULL);
	ALLOC_OK(fx, 2, NULL);
	chunk_counts(fx, counts);
	EXPECT_EQ(fx, counts[chunks[0]], 16);
	EXPECT_EQ(fx, counts[chunks[1]], 16);
	rc = EXECUTE(fx, plan, &res, &r);
	assert_int_equal(rc, 0);
	expect_consistent(fx, &r, &res, rc, true);
	EXPECT_EQ(fx, res.chunks_skipped, 1);
	EXPECT_EQ(fx, res.blocks_moved, 0);
	EXPECT_EQ(fx, res.chunks_vacated, 0);
	EXPECT_EQ(fx, fx->hook_calls, 0);
	EXPECT_EQ(fx, r.after.chunks_mapped, 3);
	kvc_compact_plan_free(plan);
	assert_int_equal(pool_destroy(fx), 0);

	/* Two sources, holes for only one of them after an alloc. */
	params_for(fx, &geo16);
	pool_create(fx);
	make_layout(fx, want2, 4, chunks);
	plan = PLAN_OK(fx, NULL, &pres);
	EXPECT_EQ(fx, pres.chunks_planned, 2);
	EXPECT_EQ(fx, pres.lower_bound, 3);
	ALLOC_OK(fx, 1, NULL);
	rc = EXECUTE(fx, plan, &res, &r);
	assert_int_equal(rc, 0);
	expect_consistent(fx, &r, &res, rc, true);
	if (!res.chunks_skipped)
		FAIL(fx, "no chunk skipped though the holes were taken");
	EXPECT_EQ(fx, res.chunks_vacated + res.chunks_skipped, 2);
	EXPECT_EQ(fx, r.after.chunks_reclaimable, 0);
	kvc_compact_plan_free(plan);
	COMPACT_FULL_OK(fx, NULL);
	assert_int_equal(pool_destroy(fx), 0);
}

/* Anything may happen between plan and execute; the pool stays right. */
static void test_plan_random_changes(void **state)
{
	struct fixture *fx = *state;
	struct kvc_compact_plan *plan;
	struct kvc_compact_result res;
	struct round r;
	uint32_t seed;
	int rc;

	for (seed = 1; seed <= SEEDS; seed++) {
		snprintf(fx->what, sizeof(fx->what), "plan + changes, seed %u",
			 seed);
		params_for(fx, seed % 3 ? &geo16_kept1 : &geo12);
		pool_create(fx);
		seed_rng(fx, 900 + seed);
		random_history(fx, 50, 85);
		fragment(fx, 50);
		plan = PLAN_OK(fx, NULL, NULL);
		switch (seed % 4) {
		case 0:
			random_history(fx, 1 + rng_below(fx, 8), 70);
			break;
		case 1:
			fragment(fx, 90); /* empties chunks */
			assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
			random_history(fx, 5, 60); /* maps again */
			break;
		case 2:
			COMPACT_FULL_OK(fx, NULL); /* another did the work */
			break;
		default:
			ALLOC_OK(fx, fx->total - fx->nr_live, NULL); /* full */
			break;
		}
		VERIFY(fx);
		rc = EXECUTE(fx, plan, &res, &r);
		assert_int_equal(rc, 0);
		expect_consistent(fx, &r, &res, rc, true);
		if (seed % 4 == 2 || seed % 4 == 3)
			EXPECT_EQ(fx, res.blocks_moved, 0);
		kvc_compact_plan_free(plan);
		COMPACT_FULL_OK(fx, NULL);
		assert_int_equal(pool_destroy(fx), 0);
	}
}

/* A plan outliving its pool: -ESHUTDOWN, nothing touched; free is safe. */
static void test_plan_after_destroy(void **state)
{
	static const uint32_t want[] = { 10, 3, 2 };
	struct fixture *fx = *state;
	struct kvc_compact_plan *plan, *never_run;
	struct kvc_compact_result res;
	uint32_t chunks[3];

	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 31);
	make_layout(fx, want, 3, chunks);
	plan = PLAN_OK(fx, NULL, NULL);
	never_run = PLAN_OK(fx, NULL, NULL);
	assert_int_equal(pool_destroy(fx), 0);
	expect_nothing_held(fx, "after destroy");
	fx->hook_calls = 0;
	memset(&res, 0, sizeof(res));
	assert_int_equal(kvc_compact_execute(plan, &res), -ESHUTDOWN);
	assert_true(kvc_last_error()[0] != '\0');
	assert_int_equal(kvc_compact_execute(plan, NULL), -ESHUTDOWN);
	EXPECT_EQ(fx, fx->hook_calls, 0);
	EXPECT_EQ(fx, res.blocks_moved, 0);
	kvc_compact_plan_free(plan);
	kvc_compact_plan_free(never_run);
	kvc_compact_plan_free(NULL);
	expect_nothing_held(fx, "after the plans are freed");
}

/* A plan runs once: the second execute is -EALREADY and does nothing. */
static void test_plan_twice(void **state)
{
	static const uint32_t want[] = { 10, 3, 2 };
	struct fixture *fx = *state;
	struct kvc_compact_plan *plan;
	struct kvc_compact_result res;
	struct round r;
	uint32_t chunks[3];
	int rc;

	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 37);
	make_layout(fx, want, 3, chunks);
	plan = PLAN_OK(fx, NULL, NULL);
	rc = EXECUTE(fx, plan, &res, &r);
	assert_int_equal(rc, 0);
	expect_consistent(fx, &r, &res, rc, true);
	expect_full(fx, &r, &res);
	/* Make more work, so that a second run would find some. */
	ALLOC_OK(fx, 20, NULL);
	fragment(fx, 60);
	rc = EXECUTE(fx, plan, &res, &r);
	assert_int_equal(rc, -EALREADY);
	EXPECT_EQ(fx, fx->hook_calls, 0);
	EXPECT_EQ(fx, r.after.compactions, r.before.compactions);
	EXPECT_EQ(fx, r.after.blocks_moved, r.before.blocks_moved);
	kvc_compact_plan_free(plan);
	assert_int_equal(pool_destroy(fx), 0);
}

/* ------------------------------------------------------------------ */
/* faults */

/*
 * A compaction that may fail: whatever happened, the moves reported were
 * made, everything else stayed put, and the counters agree.
 */
static int try_compact(struct fixture *fx, const struct kvc_compact_params *p)
{
	struct kvc_compact_result res;
	struct round r;
	int rc = COMPACT(fx, p, &res, &r);

	expect_consistent(fx, &r, &res, rc, true);
	if (rc) {
		assert_true(rc < 0);
		assert_true(kvc_last_error()[0] != '\0');
		EXPECT_EQ(fx,
			  r.after.compact_failures - r.before.compact_failures,
			  1);
	}
	return rc;
}

static int try_tick(struct fixture *fx, const struct kvc_fence *fence)
{
	struct kvc_compact_result res;
	struct round r;
	int rc;

	begin_round(fx, &r);
	memset(&res, 0xa5, sizeof(res));
	rc = kvc_pool_compact_tick(fx->pool, fence, &res);
	END_ROUND(fx, &r);
	if (rc == 0) {
		EXPECT_EQ(fx, fx->nr_moves, 0);
		return 0;
	}
	expect_consistent(fx, &r, &res, rc < 0 ? rc : 0, true);
	return rc;
}

/* Plan with @p, let @between change the pool, then execute. */
static int try_plan_execute(struct fixture *fx,
			    const struct kvc_compact_params *p,
			    void (*between)(struct fixture *fx))
{
	struct kvc_compact_plan *plan = NULL;
	struct kvc_compact_result res;
	struct round r;
	int rc;

	rc = kvc_compact_plan(fx->pool, p, &plan, NULL);
	if (rc)
		return rc;
	between(fx);
	rc = EXECUTE(fx, plan, &res, &r);
	expect_consistent(fx, &r, &res, rc, true);
	kvc_compact_plan_free(plan);
	return rc;
}

static void free_three(struct fixture *fx)
{
	free_random(fx, 3);
}

/* The pool the fault sweeps run on: 8 chunks of 16, marks for ticks. */
static int sweep_pool_create(struct fixture *fx)
{
	params_for(fx, &geo16_kept1);
	fx->params.capacity_blocks = 8 * 16;
	fx->params.compact_high = 0.2;
	fx->params.compact_low = 0.05;
	fx->params.compact_budget_bytes = GRAN;
	return pool_try_create(fx);
}

/*
 * The scenario the fault sweeps run: grow, fragment, compact, fenced free,
 * budgeted compaction, plan and execute, proactive ticks, shrink and trim,
 * grow again (maps), compaction with a stream fence, fence wait, destroy.
 * Returns how many calls failed; checks everything after every step.
 */
static int sweep_scenario(struct fixture *fx)
{
	static const struct kvc_fence stream = { KVC_FENCE_CUDA_STREAM, NULL };
	struct kvc_compact_params p;
	uint32_t ids[128], n;
	int failures = 0;

	if (sweep_pool_create(fx))
		return 1;
	seed_rng(fx, 4242);
	failures += model_alloc(fx, 100, NULL) != 0;
	failures += free_random(fx, 60) != 0;
	failures += try_compact(fx, NULL) != 0;
	failures += model_alloc(fx, 30, NULL) != 0;
	failures += free_random(fx, 30) != 0;
	n = pick_live(fx, 12, ids);
	failures += model_free(fx, n, ids, true, &stream) != 0;
	VERIFY(fx);
	memset(&p, 0, sizeof(p));
	p.max_bytes = 6 * fx->bs;
	failures += try_compact(fx, &p) != 0;
	failures += try_plan_execute(fx, NULL, free_three) != 0;
	failures += free_random(fx, 10) != 0;
	failures += try_tick(fx, NULL) < 0;
	failures += try_tick(fx, NULL) < 0;
	n = pick_live(fx, fx->nr_live > 5 ? fx->nr_live - 5 : 0, ids);
	failures += model_free(fx, n, ids, false, NULL) != 0;
	failures += kvc_pool_trim(fx->pool, 0) != 0;
	VERIFY(fx);
	failures += model_alloc(fx, 40, NULL) != 0;
	failures += free_random(fx, 25) != 0;
	p.max_bytes = 0;
	p.fence = &stream;
	failures += try_compact(fx, &p) != 0;
	failures += kvc_pool_fence_wait(fx->pool) != 0;
	VERIFY(fx);
	failures += pool_destroy(fx) != 0;
	return failures;
}

/* Every op of the fault backend fails at each of its calls in turn. */
static void test_fault_every_op(void **state)
{
	static const int errs[] = { -ENOMEM, -EIO };
	struct fixture *fx = *state;
	struct fault_counts base, fc;
	uint64_t calls[FAULT_NR_OPS], nth;
	unsigned int op, e, injected = 0, absorbed = 0;
	int failures;

	snprintf(fx->what, sizeof(fx->what), "clean run");
	fault_backend_counts(fx->be, &base);
	assert_int_equal(sweep_scenario(fx), 0);
	fault_backend_counts(fx->be, &fc);
	expect_nothing_held(fx, "clean run");
	for (op = 0; op < FAULT_NR_OPS; op++)
		calls[op] = fc.calls[op] - base.calls[op];
	assert_true(calls[FAULT_COPY] > 0);
	assert_true(calls[FAULT_MAP] > 0);
	assert_true(calls[FAULT_UNMAP] > 0);
	for (op = 0; op < FAULT_NR_OPS; op++) {
		for (nth = 1; nth <= calls[op]; nth++) {
			for (e = 0; e < 2; e++) {
				snprintf(fx->what, sizeof(fx->what),
					 "%s #%llu failing with %d",
					 fault_op_name(op),
					 (unsigned long long)nth, errs[e]);
				fault_backend_fail(fx->be, op, nth, errs[e]);
				failures = sweep_scenario(fx);
				fault_backend_fail(fx->be, op, 0, 0);
				absorbed += failures == 0;
				injected++;
				expect_nothing_held(fx, "after destroy");
			}
		}
	}
	print_message("injected %u failures, %u absorbed without an error\n",
		      injected, absorbed);
}

/* ------------------------------------------------------------------ */
/* fault sweeps over the fake driver's entry points */

/*
 * The failure one run of a sweep injects: the fake's entry point @fn fails
 * at its call number @at (the fake's count since its reset) with @result.
 * Calls the test makes itself, as the pool's caller (caller_call_begin()
 * and caller_call_end()), step around it and are not counted as the
 * pool's: every failure injected hits a call of the pool's.
 * @kill: the context also dies just before that call (die_before()).
 * @clean: the clean run, which counts the calls.
 * @caller_calls: the test's own calls in this run, per entry point.
 * @saw_pending, @saw_deferred: steps of the async scenario that ended with
 *                              a fence pending, or an unmap deferred.
 * @left_queued: runs of the sweep that left work queued after destroy.
 * @label: what the run injects, for messages.
 */
static struct injection {
	struct fixture *fx;
	bool armed;
	bool kill;
	bool clean;
	enum kvc_fake_fn fn;
	uint64_t at;
	kvc_cu_result result;
	uint64_t caller_calls[KVC_FAKE_NR_FNS];
	unsigned int saw_pending, saw_deferred;
	unsigned int left_queued;
	char label[96];
} inj;

/**
 * struct fake_sweep - A scenario run again with each driver call failing.
 * @scenario: one run, which ends by destroying its pool; returns how many
 *            calls failed.
 * @setup: before each run, or NULL.
 * @finish: after each run, before what the fake holds is checked, or NULL.
 * @kills: entry points each of whose calls, in a run of its own, fails
 *         with a context-killing error, the context really dying there.
 * @nr_kills: how many.
 */
struct fake_sweep {
	int (*scenario)(struct fixture *fx);
	void (*setup)(struct fixture *fx);
	void (*finish)(struct fixture *fx);
	const enum kvc_fake_fn *kills;
	unsigned int nr_kills;
};

/*
 * One run of @sw with the @nth call of @fn failing with @result (@nth 0:
 * none), the context dying there if @kill. Then: no driver rule broken,
 * nothing queued, nothing held. @calls (if not NULL) gets the pool's
 * calls per entry point. Returns how many of the scenario's calls failed.
 */
static int sweep_run(struct fixture *fx, const struct fake_sweep *sw,
		     enum kvc_fake_fn fn, uint64_t nth, kvc_cu_result result,
		     bool kill, uint64_t *calls)
{
	struct kvc_fake_counts base, fc;
	unsigned int k;
	int failures;

	snprintf(fx->what, sizeof(fx->what), "%s", inj.label);
	if (sw->setup)
		sw->setup(fx);
	inj.fx = fx;
	inj.clean = !nth;
	memset(inj.caller_calls, 0, sizeof(inj.caller_calls));
	inj.saw_pending = inj.saw_deferred = 0;
	kvc_fake_counts(&base);
	inj.fn = fn;
	inj.at = base.calls[fn] + nth;
	inj.result = result;
	inj.kill = kill;
	inj.armed = nth != 0;
	if (nth)
		kvc_fake_fail(fn, nth, result);
	failures = sw->scenario(fx);
	if (nth)
		kvc_fake_fail(fn, 0, 0);
	inj.armed = false;
	snprintf(fx->what, sizeof(fx->what), "%s, after the run", inj.label);
	kvc_fake_counts(&fc);
	if (calls)
		for (k = 0; k < KVC_FAKE_NR_FNS; k++)
			calls[k] = fc.calls[k] - base.calls[k] -
				   inj.caller_calls[k];
	/*
	 * Work may be left queued on the pool's stream after a failure: a
	 * fence capture that fails once its stream wait is queued leaves
	 * that wait, which only orders. No copy or kernel can be left: the
	 * fake refuses to unmap, or to free a reservation, under queued work
	 * (a violation). The device runs what is left; nothing may fault.
	 */
	if (fc.pending) {
		inj.left_queued++;
		kvc_fake_run();
		NO_VIOLATION(fx);
		if (fake_pending())
			FAIL(fx, "%" PRIu64 " operations do not run",
			     fake_pending());
	}
	if (sw->finish)
		sw->finish(fx);
	NO_VIOLATION(fx);
	kvc_fake_counts(&fc);
	/* The one leak allowed: a refused address free, which destroy
	 * reported. */
	if (nth && fn == KVC_FAKE_ADDRESS_FREE && fc.reservations == 1) {
		assert_int_equal(
			fx->drv->cuMemAddressFree(fx->base, fx->reserved_bytes),
			0);
		fault_backend_forget_reservation(fx->be);
		kvc_fake_counts(&fc);
	}
	if (fc.handles || fc.mappings || fc.reservations || fc.events ||
	    fc.pushed)
		FAIL(fx,
		     "%" PRIu64 " handles, %" PRIu64 " mappings, %" PRIu64
		     " reservations, %" PRIu64 " events, %" PRIu64
		     " contexts pushed left",
		     fc.handles, fc.mappings, fc.reservations, fc.events,
		     fc.pushed);
	expect_nothing_held(fx, "after destroy");
	return failures;
}

/*
 * A clean run counts how many times the scenario calls each entry point;
 * then each of those calls fails in turn, with CUDA_ERROR_OUT_OF_MEMORY
 * and with CUDA_ERROR_INVALID_VALUE; then, for @sw->kills, each call
 * with the context dying there.
 */
static void sweep_fake(struct fixture *fx, const struct fake_sweep *sw)
{
	static const kvc_cu_result results[] = {
		KVC_CUDA_ERROR_OUT_OF_MEMORY,
		KVC_CUDA_ERROR_INVALID_VALUE,
	};
	uint64_t calls[KVC_FAKE_NR_FNS], nth;
	unsigned int fn, e, k, injected = 0, absorbed = 0, killed = 0;
	int failures;

	memset(&inj, 0, sizeof(inj));
	snprintf(inj.label, sizeof(inj.label), "clean run on the fake");
	assert_int_equal(sweep_run(fx, sw, 0, 0, 0, false, calls), 0);
	assert_true(calls[KVC_FAKE_MEMCPY] > 0);
	for (fn = 0; fn < KVC_FAKE_NR_FNS; fn++) {
		for (nth = 1; nth <= calls[fn]; nth++) {
			for (e = 0; e < 2; e++) {
				snprintf(inj.label, sizeof(inj.label),
					 "%s #%llu failing with %d",
					 kvc_fake_fn_name(fn),
					 (unsigned long long)nth, results[e]);
				failures = sweep_run(fx, sw, fn, nth,
						     results[e], false, NULL);
				absorbed += failures == 0;
				injected++;
			}
		}
	}
	for (k = 0; k < sw->nr_kills; k++) {
		fn = sw->kills[k];
		for (nth = 1; nth <= calls[fn]; nth++) {
			snprintf(inj.label, sizeof(inj.label),
				 "%s #%llu failing with %d: the context dies",
				 kvc_fake_fn_name(fn), (unsigned long long)nth,
				 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
			sweep_run(fx, sw, fn, nth,
				  KVC_CUDA_ERROR_ILLEGAL_ADDRESS, true, NULL);
			if (!fx->killed_at)
				FAIL(fx, "the context did not die");
			killed++;
			injected++;
		}
	}
	/* Leave a clean fake to the teardown. */
	if (sw->setup)
		sw->setup(fx);
	if (sw->nr_kills)
		print_message("injected %u failures, %u of them killing the "
			      "context, %u absorbed without an error; %u runs "
			      "left a stream wait or record queued\n",
			      injected, killed, absorbed, inj.left_queued);
	else
		print_message("injected %u failures, %u absorbed without an "
			      "error\n",
			      injected, absorbed);
}

/* The fake's entry points each fail at each of their calls in turn. */
static void test_fake_fault_every_call(void **state)
{
	static const struct fake_sweep sweep = { sweep_scenario, NULL, NULL,
						 NULL, 0 };

	sweep_fake(*state, &sweep);
}

/*
 * Copies fail in a later batch (a batch is at most 256 blocks): the
 * batches before stay made and reported, the failed one is undone, and a
 * compaction after finishes the work.
 */
static void run_copy_failures(struct fixture *fx, bool fake)
{
	/* Blocks to fail on the fake: first, around the batch edge, last. */
	static const uint64_t picks[] = { 1, 2, 128, 256, 257, 258, 300 };
	struct kvc_compact_result res;
	struct round r;
	uint64_t n = 0, clean_units = 0, lb, pick = 0;
	uint32_t want[MAX_CHUNKS], chunks[MAX_CHUNKS], i;
	int rc;

	for (;;) {
		snprintf(fx->what, sizeof(fx->what), "%s %llu failing",
			 fake ? "copied block" : "copy call",
			 (unsigned long long)n);
		params_for(fx, &geo_big);
		pool_create(fx);
		seed_rng(fx, 61);
		for (i = 0; i < geo_big.chunks; i++)
			want[i] = 5 + rng_below(fx, 7);
		make_layout(fx, want, geo_big.chunks, chunks);
		lb = model_bound(fx).lb;
		assert_true(lb > 256); /* more than one batch */
		if (n && fake)
			kvc_fake_fail(KVC_FAKE_MEMCPY, n,
				      KVC_CUDA_ERROR_INVALID_VALUE);
		else if (n)
			fault_backend_fail(fx->be, FAULT_COPY, n, -EIO);
		rc = COMPACT(fx, NULL, &res, &r);
		if (fake)
			kvc_fake_fail(KVC_FAKE_MEMCPY, 0, 0);
		fault_backend_fail(fx->be, FAULT_COPY, 0, 0);
		NO_VIOLATION(fx);
		expect_consistent(fx, &r, &res, rc, true);
		if (!n) {
			/* The clean run says how many calls or blocks. */
			assert_int_equal(rc, 0);
			expect_full(fx, &r, &res);
			clean_units =
				fake ? r.fc_after.copied_blocks -
						r.fc_before.copied_blocks :
				       r.fc_after.calls[FAULT_COPY] -
						r.fc_before.calls[FAULT_COPY];
			assert_true(clean_units > 0);
		} else if (n <= clean_units) {
			if (!rc)
				FAIL(fx, "the failing copy went unnoticed");
			EXPECT_EQ(fx, r.after.compact_failures,
				  r.before.compact_failures + 1);
			/* A batch is at most 256 blocks, all or nothing. */
			if (fake && res.blocks_moved > n - 1)
				FAIL(fx,
				     "%" PRIu64 " moves reported, the copy "
				     "of block %" PRIu64 " failed",
				     res.blocks_moved, n);
			if (fake && n > 256 && !res.blocks_moved)
				FAIL(fx,
				     "block %" PRIu64 " failed and no "
				     "earlier batch was kept",
				     n);
			/* The rest can still be done. */
			COMPACT_FULL_OK(fx, NULL);
		} else {
			assert_int_equal(rc, 0);
			expect_full(fx, &r, &res);
		}
		NO_VIOLATION(fx);
		assert_int_equal(pool_destroy(fx), 0);
		expect_nothing_held(fx, "after destroy");
		if (n > clean_units)
			break;
		if (!fake) {
			n++;
		} else if (pick < sizeof(picks) / sizeof(picks[0]) &&
			   picks[pick] < clean_units) {
			n = picks[pick++];
		} else {
			n = n < clean_units ? clean_units : clean_units + 1;
		}
	}
}

/*
 * Chunks of 512 blocks, sources of 300: a chunk is vacated in more than
 * one batch. A copy refused after the first batch leaves that batch made
 * and the chunk partly vacated, consistently; the next call finishes.
 */
static void test_copy_fails_within_a_chunk(void **state)
{
	static const uint32_t want[] = { 300, 300, 300, 300 };
	struct fixture *fx = *state;
	struct kvc_compact_result res;
	struct round r;
	uint32_t chunks[4], n, clean_calls = 0;
	int rc;

	for (n = 0; n <= clean_calls + 1; n++) {
		snprintf(fx->what, sizeof(fx->what),
			 "512 per chunk, copy call %u failing", n);
		params_for(fx, &geo512);
		pool_create(fx);
		seed_rng(fx, 101);
		make_layout(fx, want, 4, chunks);
		EXPECT_EQ(fx, model_bound(fx).lb, 300);
		if (n)
			fault_backend_fail(fx->be, FAULT_COPY, n, -EIO);
		rc = COMPACT(fx, NULL, &res, &r);
		fault_backend_fail(fx->be, FAULT_COPY, 0, 0);
		expect_consistent(fx, &r, &res, rc, true);
		if (!n) {
			assert_int_equal(rc, 0);
			expect_full(fx, &r, &res);
			clean_calls = (uint32_t)(r.fc_after.calls[FAULT_COPY] -
						 r.fc_before.calls[FAULT_COPY]);
			if (clean_calls < 2)
				FAIL(fx,
				     "300 moves in %u copy call(s): batches "
				     "are at most 256",
				     clean_calls);
		} else if (n <= clean_calls) {
			assert_int_equal(rc, -EIO);
			if (n > 1 && !res.blocks_moved)
				FAIL(fx, "the batches before the failure were "
					 "not kept");
			if (res.blocks_moved >= 300)
				FAIL(fx, "%" PRIu64 " moves reported",
				     res.blocks_moved);
			COMPACT_FULL_OK(fx, NULL);
		} else {
			assert_int_equal(rc, 0);
			expect_full(fx, &r, &res);
		}
		assert_int_equal(pool_destroy(fx), 0);
		expect_nothing_held(fx, "after destroy");
	}
}

static void test_copy_fails_fault_backend(void **state)
{
	run_copy_failures(*state, false);
}

static void test_copy_fails_fake_block(void **state)
{
	run_copy_failures(*state, true);
}

/*
 * The unmap of a vacated chunk fails: the compaction still succeeds, the
 * chunk stays mapped and empty, and a trim gives it back later.
 */
static void test_unmap_fails_after_compaction(void **state)
{
	static const uint32_t want[] = { 12, 3, 1 };
	struct fixture *fx = *state;
	struct kvc_compact_result res;
	struct round r;
	uint32_t chunks[3];
	int rc;

	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 41);
	make_layout(fx, want, 3, chunks);
	if (fx->drv)
		kvc_fake_fail(KVC_FAKE_UNMAP, 1, KVC_CUDA_ERROR_INVALID_VALUE);
	else
		fault_backend_fail(fx->be, FAULT_UNMAP, 1, -EIO);
	rc = COMPACT(fx, NULL, &res, &r);
	assert_int_equal(rc, 0);
	expect_consistent(fx, &r, &res, rc, true);
	EXPECT_EQ(fx, res.blocks_moved, 4);
	EXPECT_EQ(fx, res.chunks_vacated, 2);
	EXPECT_EQ(fx, r.after.unmap_failures, r.before.unmap_failures + 1);
	/*
	 * The refused chunk stays mapped and empty; the other vacated one
	 * may go now or at the next trim (a trim may stop at its first
	 * error, as kvc_pool_trim() documents).
	 */
	if (r.after.chunks_empty < 1 || r.after.chunks_empty > 2)
		FAIL(fx, "%" PRIu64 " empty chunks after one refused unmap",
		     r.after.chunks_empty);
	EXPECT_EQ(fx, r.after.chunks_mapped, 1 + r.after.chunks_empty);
	EXPECT_EQ(fx, res.chunks_released, 2 - r.after.chunks_empty);
	NO_VIOLATION(fx);
	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	VERIFY(fx);
	EXPECT_EQ(fx, stats_of(fx).chunks_mapped, 1);
	/* Chunks mapped again later (map and access may fail too). */
	if (fx->drv)
		kvc_fake_fail(KVC_FAKE_SET_ACCESS, 1,
			      KVC_CUDA_ERROR_OUT_OF_MEMORY);
	else
		fault_backend_fail(fx->be, FAULT_MAP, 1, -ENOMEM);
	assert_int_equal(model_alloc(fx, 20, NULL), -ENOMEM);
	VERIFY(fx);
	ALLOC_OK(fx, 20, NULL);
	fragment(fx, 50);
	COMPACT_FULL_OK(fx, NULL);
	NO_VIOLATION(fx);
	assert_int_equal(pool_destroy(fx), 0);
}

/* ------------------------------------------------------------------ */
/* fences and deferred unmaps */

static uint64_t block_addr(struct fixture *fx, uint32_t id)
{
	return fx->base + (uint64_t)id * fx->bs;
}

static uint64_t chunk_addr(struct fixture *fx, uint32_t c)
{
	return fx->base + (uint64_t)c * fx->bpc * fx->bs;
}

/* On the host every fence has completed: nothing is ever deferred. */
static void test_host_fences_immediate(void **state)
{
	static const uint32_t want[] = { 16, 16, 16, 15, 1 };
	const struct kvc_fence stream = { KVC_FENCE_CUDA_STREAM, NULL };
	struct fixture *fx = *state;
	struct kvc_compact_params p;
	struct kvc_compact_result res;
	struct kvc_pool_stats st;
	struct round r;
	uint32_t chunks[5], ids[16];
	int rc;

	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 43);
	make_layout(fx, want, 5, chunks);
	/* A stream fence: the chunk goes at once. */
	assert_int_equal(model_free(fx, live_in_chunk(fx, chunks[0], 16, ids),
				    ids, true, &stream),
			 0);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.chunks_mapped, 4);
	EXPECT_EQ(fx, st.fences_pending, 0);
	EXPECT_EQ(fx, st.chunks_unmap_deferred, 0);
	/* No fence at all: the same. */
	assert_int_equal(model_free(fx, live_in_chunk(fx, chunks[1], 16, ids),
				    ids, true, NULL),
			 0);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.chunks_mapped, 3);
	EXPECT_EQ(fx, st.fences_pending, 0);
	/* Compaction with a stream fence: the vacated chunk goes at once. */
	memset(&p, 0, sizeof(p));
	p.fence = &stream;
	rc = COMPACT(fx, &p, &res, &r);
	assert_int_equal(rc, 0);
	expect_consistent(fx, &r, &res, rc, true);
	expect_full(fx, &r, &res);
	EXPECT_EQ(fx, res.chunks_released, 1);
	EXPECT_EQ(fx, r.after.chunks_mapped, 2);
	assert_int_equal(kvc_pool_fence_wait(fx->pool), 0);
	VERIFY(fx);
	assert_int_equal(pool_destroy(fx), 0);
}

enum release_by { BY_TRIM, BY_FREE, BY_FENCE_WAIT, BY_COMPACT, BY_REUSE };

/*
 * A kernel on the caller's stream still uses a chunk's blocks when they
 * are freed with a fence on that stream: the chunk stays mapped (the fake
 * would flag an unmap under queued work) until the kernel has run and a
 * later call sees the fence complete.
 */
static void run_deferred_free(struct fixture *fx, enum release_by how,
			      bool event)
{
	static const uint32_t want[] = { 16, 16 };
	struct kvc_fence fence = { KVC_FENCE_CUDA_STREAM, NULL };
	struct kvc_pool_stats st, before;
	uint32_t chunks[2], ids[16], other[16], i;

	snprintf(fx->what, sizeof(fx->what), "deferred free, %s fence, how %d",
		 event ? "event" : "stream", how);
	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 47 + how);
	set_async(fx, true);
	make_layout(fx, want, 2, chunks);
	assert_int_equal(kvc_fake_launch(fx->stream, chunk_addr(fx, chunks[0]),
					 fx->bpc * fx->bs),
			 0);
	if (event) {
		assert_int_equal(fx->drv->cuEventRecord(fx->event, fx->stream),
				 0);
		fence.kind = KVC_FENCE_CUDA_EVENT;
		fence.handle = fx->event;
	} else {
		fence.handle = fx->stream;
	}
	assert_true(fake_pending() > 0);
	before = stats_of(fx);
	assert_int_equal(model_free(fx, live_in_chunk(fx, chunks[0], 16, ids),
				    ids, true, &fence),
			 0);
	NO_VIOLATION(fx);
	VERIFY(fx);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.chunks_mapped, 2);
	EXPECT_EQ(fx, st.chunks_empty, 1);
	EXPECT_EQ(fx, st.chunks_released, before.chunks_released);
	if (!st.fences_pending)
		FAIL(fx, "no fence pending while the kernel is queued");
	EXPECT_EQ(fx, st.chunks_unmap_deferred, 1);
	if (event) {
		/* Captured: the caller's event is not needed any more. */
		assert_int_equal(fx->drv->cuEventDestroy(fx->event), 0);
		fx->event = NULL;
	}
	/* Later calls leave it mapped while the kernel is queued. */
	FREE_OK(fx, live_in_chunk(fx, chunks[1], 1, other), other);
	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	VERIFY(fx);
	NO_VIOLATION(fx);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.chunks_mapped, 2);
	if (!st.fences_pending)
		FAIL(fx, "no fence pending while the kernel is queued");
	assert_true(fake_pending() > 0);
	switch (how) {
	case BY_TRIM:
		assert_true(kvc_fake_run() > 0);
		NO_VIOLATION(fx);
		assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
		break;
	case BY_FREE:
		assert_true(kvc_fake_run() > 0);
		FREE_OK(fx, live_in_chunk(fx, chunks[1], 1, other), other);
		break;
	case BY_FENCE_WAIT:
		/* No kvc_fake_run(): the wait itself must get the work done. */
		assert_int_equal(kvc_pool_fence_wait(fx->pool), 0);
		break;
	case BY_COMPACT:
		assert_true(kvc_fake_run() > 0);
		COMPACT_FULL_OK(fx, NULL);
		break;
	case BY_REUSE:
		/*
		 * Handed out again at once; then it is not empty any more.
		 * Ordering the new owner after the kernel is the caller's
		 * business: here the kernel runs over the new blocks too.
		 */
		ALLOC_OK(fx, 17, NULL);
		NO_VIOLATION(fx);
		assert_true(kvc_fake_run() > 0);
		for (i = chunks[0] * fx->bpc; i < (chunks[0] + 1) * fx->bpc;
		     i++)
			fx->bump[i] += fx->live[i];
		assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
		VERIFY(fx);
		st = stats_of(fx);
		EXPECT_EQ(fx, st.chunks_mapped, 2);
		EXPECT_EQ(fx, st.fences_pending, 0);
		EXPECT_EQ(fx, st.chunks_unmap_deferred, 0);
		NO_VIOLATION(fx);
		assert_int_equal(pool_destroy(fx), 0);
		return;
	}
	NO_VIOLATION(fx);
	VERIFY(fx);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.chunks_mapped, 1);
	EXPECT_EQ(fx, st.chunks_empty, 0);
	EXPECT_EQ(fx, st.fences_pending, 0);
	EXPECT_EQ(fx, st.chunks_unmap_deferred, 0);
	EXPECT_EQ(fx, st.chunks_released, before.chunks_released + 1);
	EXPECT_EQ(fx, fake_pending(), 0);
	assert_int_equal(pool_destroy(fx), 0);
}

static void test_deferred_free_stream(void **state)
{
	struct fixture *fx = *state;
	enum release_by how;

	caller_stream(fx);
	for (how = BY_TRIM; how <= BY_REUSE; how++)
		run_deferred_free(fx, how, false);
}

static void test_deferred_free_event(void **state)
{
	struct fixture *fx = *state;
	enum release_by how;

	caller_stream(fx);
	for (how = BY_TRIM; how <= BY_REUSE; how++) {
		if (!fx->event)
			caller_event_again(fx);
		run_deferred_free(fx, how, true);
	}
}

/*
 * Fenced frees that empty no chunk, one per step, each step's kernel done
 * before the next: the pool must not pile up fences. They are polled by
 * later frees and trims, so at most the newest can still be pending.
 */
static void test_fences_do_not_pile_up(void **state)
{
	static const uint32_t want[] = { 16, 8 };
	struct fixture *fx = *state;
	struct kvc_fence fence = { KVC_FENCE_CUDA_STREAM, NULL };
	struct kvc_fake_counts fc, fc0;
	struct kvc_pool_stats st;
	uint32_t chunks[2], id, step;

	caller_stream(fx);
	fence.handle = fx->stream;
	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 73);
	set_async(fx, true);
	make_layout(fx, want, 2, chunks);
	kvc_fake_counts(&fc0);
	for (step = 0; step < 200; step++) {
		/* A decode step reads one block, which is then evicted. */
		assert_int_equal(live_in_chunk(fx, chunks[1], 1, &id), 1);
		assert_int_equal(
			kvc_fake_launch(fx->stream, block_addr(fx, id), fx->bs),
			0);
		assert_int_equal(model_free(fx, 1, &id, true, &fence), 0);
		assert_true(kvc_fake_run() > 0);
		ALLOC_OK(fx, 1, NULL);
		assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	}
	NO_VIOLATION(fx);
	st = stats_of(fx);
	kvc_fake_counts(&fc);
	if (st.fences_pending > 1)
		FAIL(fx,
		     "%" PRIu64 " fences pending (%" PRIu64 " events held) "
		     "after 200 steps whose work has all run",
		     st.fences_pending, fc.events - fc0.events);
	assert_int_equal(pool_destroy(fx), 0);
}

/*
 * Two full chunks on the fake in async mode; a caller kernel queued over
 * the second, whose blocks are then freed with the caller's stream as the
 * fence: an empty chunk that must stay mapped until the kernel has run.
 */
static void free_under_kernel(struct fixture *fx, const struct geometry *geo,
			      uint64_t seed, uint32_t *chunks)
{
	static const uint32_t want[] = { 16, 16 };
	struct kvc_fence f = { KVC_FENCE_CUDA_STREAM, NULL };
	uint32_t ids[16];

	if (!fx->stream)
		caller_stream(fx);
	params_for(fx, geo);
	pool_create(fx);
	seed_rng(fx, seed);
	set_async(fx, true);
	make_layout(fx, want, 2, chunks);
	assert_int_equal(kvc_fake_launch(fx->stream, chunk_addr(fx, chunks[1]),
					 fx->bpc * fx->bs),
			 0);
	f.handle = fx->stream;
	assert_int_equal(model_free(fx, live_in_chunk(fx, chunks[1], 16, ids),
				    ids, true, &f),
			 0);
}

/* Destroy with a fence pending waits for it before unmapping anything. */
static void test_destroy_waits_for_fences(void **state)
{
	struct fixture *fx = *state;
	uint32_t chunks[2];

	free_under_kernel(fx, &geo16_kept1, 53, chunks);
	NO_VIOLATION(fx);
	assert_true(fake_pending() > 0);
	assert_int_equal(pool_destroy(fx), 0);
	NO_VIOLATION(fx);
	expect_nothing_held(fx, "after destroy");
}

/*
 * A fence whose state cannot be learned (the pool's context cannot be made
 * current for cuEventQuery) stays pending: not knowing is not completion.
 */
static void test_fence_unknown_state_kept(void **state)
{
	struct fixture *fx = *state;
	struct kvc_pool_stats st;
	uint32_t chunks[2], one[1];

	free_under_kernel(fx, &geo16, 61, chunks);
	/* The next free polls the fence; its context push fails. */
	kvc_fake_fail(KVC_FAKE_CTX_PUSH, 1, KVC_CUDA_ERROR_INVALID_VALUE);
	FREE_OK(fx, live_in_chunk(fx, chunks[0], 1, one), one);
	kvc_fake_fail(KVC_FAKE_CTX_PUSH, 0, 0);
	NO_VIOLATION(fx);
	VERIFY(fx);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.chunks_mapped, 2);
	EXPECT_EQ(fx, st.fences_pending, 1);
	assert_true(kvc_fake_run() > 0);
	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	NO_VIOLATION(fx);
	VERIFY(fx);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.chunks_mapped, 1);
	EXPECT_EQ(fx, st.fences_pending, 0);
	assert_int_equal(pool_destroy(fx), 0);
	expect_nothing_held(fx, "after destroy");
}

/*
 * A driver error while polling or waiting on a fence: one that says
 * nothing about the work (a bad value or handle) leaves the fence pending
 * and its chunk mapped; one that means the context is dead (an illegal
 * address) retires it, since nothing runs any more.
 */
static void test_fence_driver_errors(void **state)
{
	static const struct {
		enum kvc_fake_fn fn;
		kvc_cu_result result;
		bool retired;
	} cases[] = {
		{ KVC_FAKE_EVENT_QUERY, KVC_CUDA_ERROR_INVALID_VALUE, false },
		{ KVC_FAKE_EVENT_QUERY, KVC_CUDA_ERROR_INVALID_HANDLE, false },
		{ KVC_FAKE_EVENT_QUERY, KVC_CUDA_ERROR_ILLEGAL_ADDRESS, true },
		{ KVC_FAKE_EVENT_SYNC, KVC_CUDA_ERROR_INVALID_VALUE, false },
		{ KVC_FAKE_EVENT_SYNC, KVC_CUDA_ERROR_LAUNCH_FAILED, true },
	};
	struct fixture *fx = *state;
	struct kvc_pool_stats st;
	uint32_t chunks[2], i;
	int rc;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		free_under_kernel(fx, &geo16, 71 + i, chunks);
		/*
		 * The fake's context does not really die: for the fatal
		 * errors let the kernel run first, so that the unmap which
		 * follows the retirement finds no work under it.
		 */
		if (cases[i].retired)
			assert_true(kvc_fake_run() > 0);
		kvc_fake_fail(cases[i].fn, 1, cases[i].result);
		if (cases[i].fn == KVC_FAKE_EVENT_QUERY)
			rc = kvc_pool_trim(fx->pool, 0);
		else
			rc = kvc_pool_fence_wait(fx->pool);
		kvc_fake_fail(cases[i].fn, 0, 0);
		NO_VIOLATION(fx);
		VERIFY(fx);
		st = stats_of(fx);
		if (cases[i].retired) {
			EXPECT_EQ(fx, st.fences_pending, 0);
			EXPECT_EQ(fx, st.chunks_mapped, 1);
		} else {
			if (cases[i].fn == KVC_FAKE_EVENT_SYNC)
				EXPECT_EQ(fx, (uint64_t)-rc, EAGAIN);
			EXPECT_EQ(fx, st.fences_pending, 1);
			EXPECT_EQ(fx, st.chunks_mapped, 2);
			assert_true(kvc_fake_run() > 0);
			assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
			NO_VIOLATION(fx);
			st = stats_of(fx);
			EXPECT_EQ(fx, st.chunks_mapped, 1);
			EXPECT_EQ(fx, st.fences_pending, 0);
		}
		set_async(fx, false);
		assert_int_equal(pool_destroy(fx), 0);
		expect_nothing_held(fx, "after destroy");
	}
}

/*
 * Fenced empty chunks beyond the watermark, their fences retired by a
 * trim asked to keep more than the watermark: the watermark still rules,
 * and the pool passes its checker. Also with a watermark of UINT32_MAX
 * ("never unmap"), where the checker must not overflow.
 */
static void test_trim_keep_above_watermark(void **state)
{
	static const uint32_t want[] = { 16, 16, 16, 16 };
	struct fixture *fx = *state;
	struct kvc_fence f = { KVC_FENCE_CUDA_STREAM, NULL };
	struct kvc_pool_stats st;
	uint32_t chunks[4], ids[48], round;

	caller_stream(fx);
	f.handle = fx->stream;
	for (round = 0; round < 2; round++) {
		params_for(fx, &geo16_kept1);
		if (round)
			fx->params.empty_chunks_kept = UINT32_MAX;
		pool_create(fx);
		seed_rng(fx, 67 + round);
		set_async(fx, true);
		make_layout(fx, want, 4, chunks);
		assert_int_equal(kvc_fake_launch(fx->stream,
						 chunk_addr(fx, chunks[0]),
						 3 * fx->bpc * fx->bs),
				 0);
		live_in_chunk(fx, chunks[0], 16, ids);
		live_in_chunk(fx, chunks[1], 16, ids + 16);
		live_in_chunk(fx, chunks[2], 16, ids + 32);
		assert_int_equal(model_free(fx, 48, ids, true, &f), 0);
		NO_VIOLATION(fx);
		VERIFY(fx);
		st = stats_of(fx);
		EXPECT_EQ(fx, st.chunks_empty, 3);
		assert_true(kvc_fake_run() > 0);
		assert_int_equal(kvc_pool_trim(fx->pool, 5), 0);
		VERIFY(fx);
		st = stats_of(fx);
		EXPECT_EQ(fx, st.fences_pending, 0);
		EXPECT_EQ(fx, st.chunks_empty, round ? 3 : 1);
		set_async(fx, false);
		assert_int_equal(pool_destroy(fx), 0);
		expect_nothing_held(fx, "after destroy");
	}
}

/*
 * Two chunks laid out as @want on the fake in async mode, and a caller
 * kernel queued over the lone block of the second one (it adds 1 to every
 * byte when it runs): how every stream-fenced compaction test starts.
 * Return: the lone block's id.
 */
static uint32_t queued_kernel_layout(struct fixture *fx, const uint32_t *want,
				     uint64_t seed, uint32_t *chunks)
{
	uint32_t lone;

	caller_stream(fx);
	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, seed);
	set_async(fx, true);
	make_layout(fx, want, 2, chunks);
	assert_int_equal(live_in_chunk(fx, chunks[1], 1, &lone), 1);
	assert_int_equal(
		kvc_fake_launch(fx->stream, block_addr(fx, lone), fx->bs), 0);
	return lone;
}

/*
 * Compaction with a stream fence: the copies run after the kernel queued
 * on the stream (they copy what it wrote), the stream's next kernel runs
 * after the copies (it sees the moved block), and the vacated chunk stays
 * mapped until then.
 */
static void test_compact_stream_fence(void **state)
{
	static const uint32_t want[] = { 15, 1 };
	struct fixture *fx = *state;
	struct kvc_fence fence = { KVC_FENCE_CUDA_STREAM, NULL };
	struct kvc_compact_params p;
	struct kvc_compact_result res;
	struct kvc_pool_stats st;
	struct round r;
	uint32_t chunks[2], lone, to;
	int rc;

	lone = queued_kernel_layout(fx, want, 59, chunks);
	fx->bump[lone] = 1; /* once it has run */
	fence.handle = fx->stream;
	memset(&p, 0, sizeof(p));
	p.fence = &fence;
	begin_round(fx, &r);
	rc = kvc_pool_compact(fx->pool, &p, &res);
	assert_int_equal(rc, 0);
	NO_VIOLATION(fx);
	/* The hook heard of the move before the copy ran. */
	apply_moves(fx, &r, __FILE__, __LINE__);
	CHECK(fx->pool);
	EXPECT_EQ(fx, fx->nr_moves, 1);
	EXPECT_EQ(fx, fx->moves[0].from, lone);
	to = fx->moves[0].to;
	EXPECT_EQ(fx, to / fx->bpc, chunks[0]);
	st = stats_of(fx);
	EXPECT_EQ(fx, res.chunks_vacated, 1);
	EXPECT_EQ(fx, res.chunks_released, 0);
	EXPECT_EQ(fx, st.chunks_mapped, 2);
	EXPECT_EQ(fx, st.chunks_unmap_deferred, 1);
	if (!st.fences_pending)
		FAIL(fx, "no fence pending while the copy is queued");
	assert_true(fake_pending() > 0);
	/* Kernel 2, launched now on the stream, must see the moved block. */
	assert_int_equal(
		kvc_fake_launch(fx->stream, block_addr(fx, to), fx->bs), 0);
	fx->bump[to] = 2;
	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	NO_VIOLATION(fx);
	EXPECT_EQ(fx, stats_of(fx).chunks_mapped, 2);
	assert_true(kvc_fake_run() > 0);
	NO_VIOLATION(fx);
	VERIFY(fx); /* contents: kernel 1, copy, kernel 2, in that order */
	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	NO_VIOLATION(fx);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.chunks_mapped, 1);
	EXPECT_EQ(fx, st.fences_pending, 0);
	EXPECT_EQ(fx, st.chunks_unmap_deferred, 0);
	assert_int_equal(pool_destroy(fx), 0);
}

/* Destroy right after a stream-fenced compaction: the copies land first. */
static void test_destroy_after_fenced_compaction(void **state)
{
	static const uint32_t want[] = { 15, 1 };
	struct fixture *fx = *state;
	struct kvc_fence fence = { KVC_FENCE_CUDA_STREAM, NULL };
	struct kvc_compact_params p;
	struct kvc_compact_result res;
	uint32_t chunks[2];

	queued_kernel_layout(fx, want, 79, chunks);
	fence.handle = fx->stream;
	memset(&p, 0, sizeof(p));
	p.fence = &fence;
	assert_int_equal(kvc_pool_compact(fx->pool, &p, &res), 0);
	EXPECT_EQ(fx, res.blocks_moved, 1);
	assert_true(fake_pending() > 0);
	assert_int_equal(pool_destroy(fx), 0);
	NO_VIOLATION(fx);
	expect_nothing_held(fx, "after destroy");
}

/*
 * Right after a stream-fenced compaction (its copies still queued behind
 * the caller's kernel) the caller evicts every block of the chunk that
 * took the moved blocks; its own work never touched them, so it uses a
 * plain free. The chunk must not be unmapped under the pool's own copies
 * into it: no path may unmap a chunk that queued work still touches.
 */
static void test_fenced_compaction_dest_freed(void **state)
{
	static const uint32_t want[] = { 8, 3 };
	struct fixture *fx = *state;
	struct kvc_fence fence = { KVC_FENCE_CUDA_STREAM, NULL };
	struct kvc_compact_params p;
	struct kvc_compact_result res;
	struct kvc_pool_stats st;
	struct round r;
	uint32_t chunks[2], lone, ids[16], n;
	int rc;

	lone = queued_kernel_layout(fx, want, 97, chunks);
	fx->bump[lone] = 1;
	fence.handle = fx->stream;
	memset(&p, 0, sizeof(p));
	p.fence = &fence;
	begin_round(fx, &r);
	rc = kvc_pool_compact(fx->pool, &p, &res);
	assert_int_equal(rc, 0);
	apply_moves(fx, &r, __FILE__, __LINE__);
	CHECK(fx->pool);
	EXPECT_EQ(fx, res.blocks_moved, 3);
	assert_true(fake_pending() > 0);
	n = live_in_chunk(fx, chunks[0], 16, ids);
	EXPECT_EQ(fx, n, 11);
	FREE_OK(fx, n, ids);
	NO_VIOLATION(fx);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.chunks_mapped, 2);
	kvc_fake_run();
	NO_VIOLATION(fx);
	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	VERIFY(fx);
	EXPECT_EQ(fx, stats_of(fx).chunks_mapped, 0);
	assert_int_equal(pool_destroy(fx), 0);
}

/*
 * A copy refused in the middle of a batch queued behind a caller's
 * kernel: the batch is undone and the stream drained, so no copy issued
 * before the failure lands later on a hole handed out again.
 */
static void test_copy_fails_async_drained(void **state)
{
	static const uint32_t want[] = { 8, 3 };
	struct fixture *fx = *state;
	struct kvc_fence fence = { KVC_FENCE_CUDA_STREAM, NULL };
	struct kvc_compact_params p;
	struct kvc_compact_result res;
	struct round r;
	uint32_t chunks[2], x, counts[MAX_CHUNKS];
	int rc;

	caller_stream(fx);
	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 83);
	set_async(fx, true);
	make_layout(fx, want, 2, chunks);
	assert_int_equal(live_in_chunk(fx, chunks[0], 1, &x), 1);
	assert_int_equal(kvc_fake_launch(fx->stream, block_addr(fx, x), fx->bs),
			 0);
	fence.handle = fx->stream;
	memset(&p, 0, sizeof(p));
	p.fence = &fence;
	kvc_fake_fail(KVC_FAKE_MEMCPY, 2, KVC_CUDA_ERROR_INVALID_VALUE);
	begin_round(fx, &r);
	memset(&res, 0xa5, sizeof(res));
	rc = kvc_pool_compact(fx->pool, &p, &res);
	kvc_fake_fail(KVC_FAKE_MEMCPY, 0, 0);
	if (!rc)
		FAIL(fx, "the refused copy went unnoticed");
	NO_VIOLATION(fx);
	apply_moves(fx, &r, __FILE__, __LINE__);
	CHECK(fx->pool);
	EXPECT_EQ(fx, fx->nr_moves, 0);
	EXPECT_EQ(fx, res.blocks_moved, 0);
	/* The holes go to new blocks, written at once by the host. */
	ALLOC_OK(fx, 8, NULL);
	chunk_counts(fx, counts);
	EXPECT_EQ(fx, counts[chunks[0]], 16);
	kvc_fake_run();
	fx->bump[x] = 1;
	NO_VIOLATION(fx);
	VERIFY(fx);
	COMPACT_FULL_OK(fx, NULL);
	assert_int_equal(pool_destroy(fx), 0);
}

/* A proactive tick with a stream fence defers its vacated chunk too. */
static void test_tick_with_stream_fence(void **state)
{
	static const uint32_t want[] = { 15, 1, 1 };
	struct fixture *fx = *state;
	struct kvc_fence fence = { KVC_FENCE_CUDA_STREAM, NULL };
	struct kvc_compact_result res;
	struct kvc_pool_stats st;
	struct round r;
	uint32_t chunks[3], lone;
	int rc;

	caller_stream(fx);
	params_for(fx, &geo16);
	fx->params.compact_high = 0.3;
	fx->params.compact_low = 0.0;
	pool_create(fx);
	seed_rng(fx, 89);
	set_async(fx, true);
	make_layout(fx, want, 3, chunks);
	assert_int_equal(live_in_chunk(fx, chunks[1], 1, &lone), 1);
	assert_int_equal(
		kvc_fake_launch(fx->stream, block_addr(fx, lone), fx->bs), 0);
	fx->bump[lone] = 1;
	fence.handle = fx->stream;
	begin_round(fx, &r);
	rc = kvc_pool_compact_tick(fx->pool, &fence, &res);
	assert_int_equal(rc, 1);
	NO_VIOLATION(fx);
	apply_moves(fx, &r, __FILE__, __LINE__);
	CHECK(fx->pool);
	EXPECT_EQ(fx, res.chunks_vacated, 1);
	EXPECT_EQ(fx, res.blocks_moved, 1);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.chunks_mapped, 3);
	assert_true(st.fences_pending > 0);
	kvc_fake_run();
	NO_VIOLATION(fx);
	VERIFY(fx);
	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	NO_VIOLATION(fx);
	st = stats_of(fx);
	EXPECT_EQ(fx, st.chunks_mapped, 2);
	EXPECT_EQ(fx, st.fences_pending, 0);
	assert_int_equal(pool_destroy(fx), 0);
}

/*
 * Compaction with an event fence, or none: the call waits for its own
 * copies, so the vacated chunk goes at once and the data has moved.
 */
static void test_compact_event_or_no_fence(void **state)
{
	static const uint32_t want[] = { 16, 15, 1 };
	struct fixture *fx = *state;
	struct kvc_fence fence = { KVC_FENCE_CUDA_EVENT, NULL };
	struct kvc_compact_params p;
	struct kvc_compact_result res;
	struct round r;
	uint32_t chunks[3], lone, far, with_event;
	int rc;

	caller_stream(fx);
	for (with_event = 0; with_event < 2; with_event++) {
		snprintf(fx->what, sizeof(fx->what), "compaction, %s",
			 with_event ? "event fence" : "no fence");
		params_for(fx, &geo16);
		pool_create(fx);
		seed_rng(fx, 67);
		set_async(fx, true);
		make_layout(fx, want, 3, chunks);
		assert_int_equal(live_in_chunk(fx, chunks[2], 1, &lone), 1);
		assert_int_equal(live_in_chunk(fx, chunks[0], 1, &far), 1);
		memset(&p, 0, sizeof(p));
		if (with_event) {
			/* A kernel on the lone block, captured by the event. */
			assert_int_equal(kvc_fake_launch(fx->stream,
							 block_addr(fx, lone),
							 fx->bs),
					 0);
			assert_int_equal(
				fx->drv->cuEventRecord(fx->event, fx->stream),
				0);
			fx->bump[lone] = 1;
			fence.handle = fx->event;
			p.fence = &fence;
		}
		/* Later work on a block that stays: not the pool's to wait for. */
		assert_int_equal(kvc_fake_launch(fx->stream,
						 block_addr(fx, far), fx->bs),
				 0);
		begin_round(fx, &r);
		memset(&res, 0xa5, sizeof(res));
		rc = kvc_pool_compact(fx->pool, &p, &res);
		assert_int_equal(rc, 0);
		NO_VIOLATION(fx);
		if (!fake_pending())
			FAIL(fx, "compaction waited for work it was not fenced "
				 "on");
		END_ROUND(fx, &r); /* the copies have run: the data moved */
		expect_consistent(fx, &r, &res, rc, true);
		expect_full(fx, &r, &res);
		EXPECT_EQ(fx, res.chunks_released, 1);
		assert_true(kvc_fake_run() > 0);
		fx->bump[far]++;
		NO_VIOLATION(fx);
		VERIFY(fx);
		assert_int_equal(pool_destroy(fx), 0);
	}
}

/* ------------------------------------------------------------------ */
/* the fault sweep with fences pending */

/*
 * test_fake_fault_every_call runs the fake in sync mode, so no fence is
 * ever pending when a call fails. Here the sweep runs in async mode with a
 * caller driving the pool as a serving loop would: its kernels on live
 * blocks between steps; frees fenced by its stream and by an event;
 * compactions fenced by its stream (a full one, proactive ticks, and a
 * plan executed after a decode step), by an event, and by nothing; trims
 * and a fence wait while fences are pending; and the device running at
 * chosen points, so that later calls poll fences that have completed
 * unseen. Every step is checked (async_step_end()).
 *
 * The caller keeps the rules a CUDA application must keep:
 * - kernels only on live blocks; on a moved block only after the call that
 *   moved it (a stream-fenced compaction orders the stream's later work
 *   after its copies; an unfenced or event-fenced one has waited);
 * - a block a kernel may still use is freed with a fence that covers the
 *   kernel (fx->unseen marks those blocks until the caller synchronises
 *   its stream); an event fence is recorded just before it is passed;
 * - an unfenced compaction only after the caller synchronised its stream:
 *   "no fence" says no work of its own is pending;
 * - the test fills new blocks from the host, so the device first runs
 *   what is queued (async_alloc()): the fill lands after all earlier work
 *   on those bytes, as a fill queued on the caller's stream would.
 * The model counts a kernel when it is launched, so contents are compared
 * only while nothing is queued (fx->contents_when_idle).
 *
 * The test's own driver calls (its event records and stream synchronises)
 * go through the fake's table and step around the injected failure, so
 * every injection hits one of the pool's calls.
 *
 * Context-killing errors. A failure kvc_fake_fail() injects leaves the
 * fake's context alive: if cuEventQuery said CUDA_ERROR_ILLEGAL_ADDRESS
 * while the fake still ran work, the pool would, as documented, take the
 * fence as retired and unmap under work the fake still runs; no device is
 * ever in that state. So in these runs the context really dies, just
 * before the chosen call: the pool's driver table wraps the fake's
 * cuEventQuery and cuEventSynchronize (die_before()), and kill_context()
 * runs a caller kernel that overruns the pool's reservation. As on a
 * device, the fake drops all queued work and answers
 * CUDA_ERROR_ILLEGAL_ADDRESS to every call that waits, queues or creates
 * from then on, the chosen call first. What that allows, and nothing
 * more: the one violation the killing kernel's fault is by the fake's
 * rules (fake_violations_none() checks that it is that one); no contents
 * checks from then on (the dropped copies and kernels never ran); kernels
 * and event records of the caller's that fail. The checker, liveness and
 * owners are still checked after every step, and at the end nothing may
 * be held (sweep_run()).
 */

static const struct kvc_cuda_driver *fake_table;
static struct kvc_cuda_driver dying_table; /* the pool's */

/* A caller kernel overruns the pool's reservation: the context dies. */
static void kill_context(struct fixture *fx)
{
	uint64_t at = fx->base + fx->reserved_bytes;

	/*
	 * On the default stream, which nothing else uses: kvc_fake_run()
	 * looks at it first, so the fault drops all other work unrun.
	 */
	if (kvc_fake_launch(NULL, at, 1) == 0 && kvc_fake_run() > 0)
		fx->killed_at = at;
}

static void die_before(enum kvc_fake_fn fn)
{
	struct kvc_fake_counts fc;

	if (!inj.armed || !inj.kill || inj.fn != fn)
		return;
	kvc_fake_counts(&fc);
	if (fc.calls[fn] + 1 == inj.at)
		kill_context(inj.fx);
}

static kvc_cu_result dying_event_query(kvc_cu_event event)
{
	die_before(KVC_FAKE_EVENT_QUERY);
	return fake_table->cuEventQuery(event);
}

static kvc_cu_result dying_event_sync(kvc_cu_event event)
{
	die_before(KVC_FAKE_EVENT_SYNC);
	return fake_table->cuEventSynchronize(event);
}

/* A call of the caller's own: the injected failure steps around it. */
static void caller_call_begin(enum kvc_fake_fn fn)
{
	if (inj.armed && inj.fn == fn)
		kvc_fake_fail(fn, 0, 0);
}

static void caller_call_end(enum kvc_fake_fn fn)
{
	struct kvc_fake_counts fc;

	inj.caller_calls[fn]++;
	if (!inj.armed || inj.fn != fn)
		return;
	inj.at++;
	kvc_fake_counts(&fc);
	if (fc.calls[fn] < inj.at)
		kvc_fake_fail(fn, inj.at - fc.calls[fn], inj.result);
}

/* The caller waits for its stream: its kernels are then seen done. */
static int caller_sync(struct fixture *fx)
{
	kvc_cu_result r;

	caller_call_begin(KVC_FAKE_STREAM_SYNC);
	r = fx->drv->cuStreamSynchronize(fx->stream);
	caller_call_end(KVC_FAKE_STREAM_SYNC);
	if (!r)
		memset(fx->unseen, 0, fx->total);
	else if (!fx->killed_at)
		FAIL(fx, "the caller's cuStreamSynchronize() = %d", r);
	return 0;
}

/* The caller records its event: the work an event fence then covers. */
static void caller_record(struct fixture *fx)
{
	kvc_cu_result r;

	caller_call_begin(KVC_FAKE_EVENT_RECORD);
	r = fx->drv->cuEventRecord(fx->event, fx->stream);
	caller_call_end(KVC_FAKE_EVENT_RECORD);
	if (r && !fx->killed_at)
		FAIL(fx, "the caller's cuEventRecord() = %d", r);
}

/* A caller kernel on live block @id: adds 1 to its bytes when it runs. */
static void caller_kernel(struct fixture *fx, uint32_t id)
{
	kvc_cu_result r;

	if (!fx->live[id])
		FAIL(fx, "a kernel on block %u, which is not live", id);
	r = kvc_fake_launch(fx->stream, block_addr(fx, id), fx->bs);
	if (!r) {
		fx->bump[id]++;
		fx->unseen[id] = 1;
	} else if (!fx->killed_at) {
		FAIL(fx, "kvc_fake_launch() = %d", r);
	}
}

/* A decode step: kernels on up to @n random live blocks. */
static int caller_kernels(struct fixture *fx, uint32_t n)
{
	uint32_t ids[16], i;

	n = pick_live(fx, n < 16 ? n : 16, ids);
	for (i = 0; i < n; i++)
		caller_kernel(fx, ids[i]);
	return 0;
}

/* Kernels on up to @n blocks the last compaction call moved. */
static int kernels_on_moved(struct fixture *fx, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < fx->nr_moves && i < n; i++)
		if (fx->live[fx->moves[i].to])
			caller_kernel(fx, fx->moves[i].to);
	return 0;
}

/*
 * Plain free of every block of the chunk the last compaction call moved
 * its first block into, if no kernel of the caller's may use one: the
 * chunk empties while the pool's copies into it may still be queued.
 */
static int free_dest_chunk(struct fixture *fx)
{
	uint32_t ids[MAX_CHUNKS * 4], n, i;

	if (!fx->nr_moves)
		return 0;
	n = live_in_chunk(fx, fx->moves[0].to / fx->bpc, fx->bpc, ids);
	for (i = 0; i < n; i++)
		if (fx->unseen[ids[i]])
			return 0;
	return model_free(fx, n, ids, false, NULL);
}

/* Plain free of up to @n random live blocks no caller kernel may use. */
static int free_quiet(struct fixture *fx, uint32_t n)
{
	uint32_t *ids = malloc((fx->total + 1) * sizeof(*ids)), m, i, k = 0;
	int err;

	assert_non_null(ids);
	m = pick_live(fx, fx->total, ids);
	for (i = 0; i < m && k < n; i++)
		if (!fx->unseen[ids[i]])
			ids[k++] = ids[i];
	err = k ? model_free(fx, k, ids, false, NULL) : 0;
	free(ids);
	return err;
}

/* Free up to @n random live blocks, fenced by an event recorded now. */
static int free_event_fenced(struct fixture *fx, uint32_t n)
{
	const struct kvc_fence event = { KVC_FENCE_CUDA_EVENT, fx->event };

	caller_record(fx);
	return free_random_fenced(fx, n, &event);
}

/* A compaction of at most @max_bytes, fenced by an event recorded now. */
static int compact_event_fenced(struct fixture *fx, uint64_t max_bytes)
{
	const struct kvc_fence event = { KVC_FENCE_CUDA_EVENT, fx->event };
	struct kvc_compact_params p;

	memset(&p, 0, sizeof(p));
	p.max_bytes = max_bytes;
	p.fence = &event;
	caller_record(fx);
	return try_compact(fx, &p);
}

/*
 * Every live block, fenced by the caller's stream. Should that fail, the
 * caller waits for its stream instead, so that the destroy which follows
 * unmaps nothing its kernels still use.
 */
static int free_all_fenced(struct fixture *fx)
{
	const struct kvc_fence stream = { KVC_FENCE_CUDA_STREAM, fx->stream };
	uint32_t *ids = malloc((fx->total + 1) * sizeof(*ids)), n = 0, id;
	int err;

	assert_non_null(ids);
	for (id = 0; id < fx->total; id++)
		if (fx->live[id])
			ids[n++] = id;
	err = n ? model_free(fx, n, ids, true, &stream) : 0;
	if (err)
		caller_sync(fx);
	free(ids);
	return err;
}

/* Between plan and execute: a decode step, evictions fenced by it. */
static void decode_step(struct fixture *fx)
{
	const struct kvc_fence stream = { KVC_FENCE_CUDA_STREAM, fx->stream };

	caller_kernels(fx, 6);
	free_random_fenced(fx, 3, &stream);
}

/* The device runs what is queued; the host does not see it yet. */
static int device_runs(struct fixture *fx)
{
	kvc_fake_run();
	return 0;
}

/* Fill new blocks from the host only after the device ran earlier work. */
static int async_alloc(struct fixture *fx, uint32_t n)
{
	kvc_fake_run();
	return model_alloc(fx, n, NULL);
}

static void async_step_begin(struct fixture *fx, const char *name)
{
	snprintf(fx->what, sizeof(fx->what), "%s; step: %s", inj.label, name);
}

/* After every step: the driver's rules, the checker, the model. */
static void async_step_end(struct fixture *fx, const char *file, int line)
{
	struct kvc_pool_stats st;

	fake_violations_none(fx, file, line);
	if (!fx->pool)
		return;
	verify_model(fx, file, line);
	st = stats_of(fx);
	inj.saw_pending += st.fences_pending > 0;
	inj.saw_deferred += st.chunks_unmap_deferred > 0;
}

/* One step of async_scenario(): @failed is nonzero when a call failed. */
#define ASYNC_STEP(fx, name, failed)                    \
	do {                                            \
		async_step_begin(fx, name);             \
		failures += (failed) ? 1 : 0;           \
		async_step_end(fx, __FILE__, __LINE__); \
	} while (0)

static int async_scenario(struct fixture *fx)
{
	const struct kvc_fence stream = { KVC_FENCE_CUDA_STREAM, fx->stream };
	struct kvc_compact_params p;
	int failures = 0;

	if (sweep_pool_create(fx))
		return 1;
	seed_rng(fx, 4343);
	memset(&p, 0, sizeof(p));
	p.fence = &stream;
	ASYNC_STEP(fx, "alloc 100", async_alloc(fx, 100));
	ASYNC_STEP(fx, "kernels", caller_kernels(fx, 12));
	ASYNC_STEP(fx, "free 40, stream fence",
		   free_random_fenced(fx, 40, &stream));
	ASYNC_STEP(fx, "kernels", caller_kernels(fx, 6));
	ASYNC_STEP(fx, "trim to 0, fences pending", kvc_pool_trim(fx->pool, 0));
	ASYNC_STEP(fx, "free 15, event fence", free_event_fenced(fx, 15));
	ASYNC_STEP(fx, "kernels", caller_kernels(fx, 6));
	ASYNC_STEP(fx, "compaction, stream fence", try_compact(fx, &p));
	ASYNC_STEP(fx, "kernels on moved blocks", kernels_on_moved(fx, 8));
	ASYNC_STEP(fx, "plain free, copies queued", free_quiet(fx, 10));
	ASYNC_STEP(fx, "trim to 0, copies queued", kvc_pool_trim(fx->pool, 0));
	ASYNC_STEP(fx, "the device runs", device_runs(fx));
	ASYNC_STEP(fx, "free 10, stream fence, older fences done unseen",
		   free_random_fenced(fx, 10, &stream));
	ASYNC_STEP(fx, "alloc 30", async_alloc(fx, 30));
	ASYNC_STEP(fx, "kernels", caller_kernels(fx, 8));
	ASYNC_STEP(fx, "free 25, stream fence",
		   free_random_fenced(fx, 25, &stream));
	ASYNC_STEP(fx, "the caller waits for its stream", caller_sync(fx));
	ASYNC_STEP(fx, "fence wait", kvc_pool_fence_wait(fx->pool));
	ASYNC_STEP(fx, "tick, stream fence", try_tick(fx, &stream) < 0);
	ASYNC_STEP(fx, "plain free of a destination chunk, copies queued",
		   free_dest_chunk(fx));
	ASYNC_STEP(fx, "kernels on moved blocks", kernels_on_moved(fx, 8));
	ASYNC_STEP(fx, "trim to 0, copies queued", kvc_pool_trim(fx->pool, 0));
	ASYNC_STEP(fx, "tick, stream fence", try_tick(fx, &stream) < 0);
	ASYNC_STEP(fx, "fence wait, copies queued",
		   kvc_pool_fence_wait(fx->pool));
	ASYNC_STEP(fx, "alloc 20", async_alloc(fx, 20));
	ASYNC_STEP(fx, "free 20, event fence", free_event_fenced(fx, 20));
	ASYNC_STEP(fx, "plan, decode step, execute with a stream fence",
		   try_plan_execute(fx, &p, decode_step));
	ASYNC_STEP(fx, "kernels on moved blocks", kernels_on_moved(fx, 8));
	ASYNC_STEP(fx, "free 12, event fence", free_event_fenced(fx, 12));
	ASYNC_STEP(fx, "kernels", caller_kernels(fx, 6));
	ASYNC_STEP(fx, "budgeted compaction, event fence",
		   compact_event_fenced(fx, 6 * fx->bs));
	ASYNC_STEP(fx, "kernels on moved blocks", kernels_on_moved(fx, 8));
	ASYNC_STEP(fx, "alloc 30", async_alloc(fx, 30));
	ASYNC_STEP(fx, "kernels", caller_kernels(fx, 8));
	ASYNC_STEP(fx, "free 25, event fence", free_event_fenced(fx, 25));
	ASYNC_STEP(fx, "the caller waits for its stream", caller_sync(fx));
	ASYNC_STEP(fx, "compaction, no fence", try_compact(fx, NULL));
	ASYNC_STEP(fx, "kernels on moved blocks", kernels_on_moved(fx, 8));
	ASYNC_STEP(fx, "plain free", free_quiet(fx, 10));
	ASYNC_STEP(fx, "alloc 40", async_alloc(fx, 40));
	ASYNC_STEP(fx, "kernels", caller_kernels(fx, 16));
	ASYNC_STEP(fx, "free all, stream fence", free_all_fenced(fx));
	ASYNC_STEP(fx, "destroy, fences pending", pool_destroy(fx));
	return failures;
}

/*
 * Before each run: a fresh fake (a dead context lasts until the reset;
 * and the reset fails if the last run left anything), the backend over
 * the dying table, async mode, the caller's stream and event.
 */
static void async_setup(struct fixture *fx)
{
	kvc_backend_close(fx->be);
	fx->be = NULL;
	fx->killed_at = 0;
	fx->drv = kvc_fake_driver(&small_gpu);
	if (!fx->drv)
		FAIL(fx, "the fake is not clean after the last run");
	fake_table = fx->drv;
	dying_table = *fx->drv;
	dying_table.cuEventQuery = dying_event_query;
	dying_table.cuEventSynchronize = dying_event_sync;
	if (open_fake_backend(fx, &dying_table))
		FAIL(fx, "the cuda backend does not open over the fake");
	set_async(fx, true);
	fx->contents_when_idle = true;
	caller_stream(fx);
}

static void async_finish(struct fixture *fx)
{
	if (inj.clean && (!inj.saw_pending || !inj.saw_deferred))
		FAIL(fx,
		     "the clean run ended %u steps with a fence pending and "
		     "%u with an unmap deferred: both must happen",
		     inj.saw_pending, inj.saw_deferred);
	assert_int_equal(fx->drv->cuStreamDestroy(fx->stream), 0);
	assert_int_equal(fx->drv->cuEventDestroy(fx->event), 0);
	assert_int_equal(fx->drv->cuDevicePrimaryCtxRelease(0), 0);
	fx->stream = NULL;
	fx->event = NULL;
	fx->ctx = NULL;
}

/*
 * The fake's entry points each fail at each of their calls in turn while
 * fences are pending; and the context dies at each event query and event
 * synchronise of the pool's.
 */
static void test_fake_fault_every_call_async(void **state)
{
	static const enum kvc_fake_fn kills[] = {
		KVC_FAKE_EVENT_QUERY,
		KVC_FAKE_EVENT_SYNC,
	};
	static const struct fake_sweep sweep = {
		async_scenario,
		async_setup,
		async_finish,
		kills,
		sizeof(kills) / sizeof(kills[0]),
	};

	sweep_fake(*state, &sweep);
}

/* ------------------------------------------------------------------ */
/* bad arguments */

static void test_bad_arguments(void **state)
{
	static const uint32_t want[] = { 10, 3 };
	struct fixture *fx = *state;
	struct kvc_fence bad = { (enum kvc_fence_kind)7, NULL };
	struct kvc_compact_plan *plan = (struct kvc_compact_plan *)&plan;
	struct kvc_compact_params p;
	struct kvc_compact_result res;
	struct kvc_pool_stats before, after;
	uint32_t chunks[2], ids[4], n;

	assert_int_equal(kvc_pool_set_move_hook(NULL, record_moves, fx),
			 -EINVAL);
	assert_int_equal(kvc_pool_compact(NULL, NULL, &res), -EINVAL);
	assert_int_equal(kvc_compact_plan(NULL, NULL, &plan, NULL), -EINVAL);
	assert_int_equal(kvc_compact_execute(NULL, &res), -EINVAL);
	assert_int_equal(kvc_pool_compact_tick(NULL, NULL, &res), -EINVAL);
	assert_int_equal(kvc_pool_free_fenced(NULL, 1, ids, NULL), -EINVAL);
	kvc_compact_plan_free(NULL);

	params_for(fx, &geo16);
	pool_create(fx);
	seed_rng(fx, 71);
	make_layout(fx, want, 2, chunks);
	assert_int_equal(kvc_compact_plan(fx->pool, NULL, NULL, NULL), -EINVAL);
	before = stats_of(fx);
	fx->hook_calls = 0;

	/* A fence of no known kind frees nothing and captures nothing. */
	n = live_in_chunk(fx, chunks[1], 3, ids);
	assert_int_equal(model_free(fx, n, ids, true, &bad), -EINVAL);
	assert_true(kvc_last_error()[0] != '\0');
	VERIFY(fx);
	/* A bad id with a good fence: the same. */
	ids[1] = ids[0];
	bad.kind = KVC_FENCE_CUDA_STREAM;
	assert_int_equal(model_free(fx, n, ids, true, &bad), -EINVAL);
	ids[1] = fx->total;
	assert_int_equal(model_free(fx, n, ids, true, &bad), -EINVAL);
	VERIFY(fx);
	/* Compaction with a bad fence moves nothing. */
	bad.kind = (enum kvc_fence_kind)7;
	memset(&p, 0, sizeof(p));
	p.fence = &bad;
	assert_int_equal(kvc_pool_compact(fx->pool, &p, &res), -EINVAL);
	plan = NULL;
	if (kvc_compact_plan(fx->pool, &p, &plan, NULL) == 0) {
		/* The fence is used at execution: refused there. */
		assert_int_equal(kvc_compact_execute(plan, &res), -EINVAL);
		kvc_compact_plan_free(plan);
	}
	VERIFY(fx);
	after = stats_of(fx);
	EXPECT_EQ(fx, fx->hook_calls, 0);
	EXPECT_EQ(fx, after.blocks_moved, before.blocks_moved);
	EXPECT_EQ(fx, after.compact_failures, before.compact_failures);
	EXPECT_EQ(fx, after.free_calls, before.free_calls);
	EXPECT_EQ(fx, after.chunks_mapped, before.chunks_mapped);
	assert_int_equal(pool_destroy(fx), 0);
	expect_nothing_held(fx, "after destroy");
}

/* ------------------------------------------------------------------ */

#define HOST(f) cmocka_unit_test_setup_teardown(f, setup_host, teardown)
#define HOST_GEO(f, geo)                                                  \
	cmocka_unit_test_prestate_setup_teardown(f, setup_host, teardown, \
						 (void *)&(geo))
#define FAKE(f) cmocka_unit_test_setup_teardown(f, setup_fake, teardown)
#define FAKE_GEO(f, geo)                                                  \
	cmocka_unit_test_prestate_setup_teardown(f, setup_fake, teardown, \
						 (void *)&(geo))

int main(void)
{
	const struct CMUnitTest tests[] = {
		HOST_GEO(test_full_random, geo16),
		HOST_GEO(test_full_random, geo16_kept1),
		HOST_GEO(test_full_random, geo16_kept2),
		HOST_GEO(test_full_random, geo12),
		HOST_GEO(test_full_random, geo12_kept1),
		HOST_GEO(test_full_random, geo24_kept1),
		HOST_GEO(test_full_random, geo512),
		FAKE_GEO(test_full_random, geo16_kept1),
		HOST(test_nothing_to_do),
		HOST(test_lower_bound_layouts),
		HOST(test_no_hook),
		HOST_GEO(test_budget, geo16),
		HOST_GEO(test_budget, geo12_kept1),
		HOST_GEO(test_budget, geo24_kept1),
		HOST(test_proactive),
		HOST(test_tick_without_marks),
		HOST(test_proactive_params),
		HOST(test_plan_then_execute),
		HOST(test_plan_freed_between),
		HOST(test_plan_holes_eaten),
		HOST(test_plan_random_changes),
		HOST(test_plan_after_destroy),
		HOST(test_plan_twice),
		HOST(test_fault_every_op),
		HOST(test_copy_fails_fault_backend),
		HOST(test_copy_fails_within_a_chunk),
		HOST(test_unmap_fails_after_compaction),
		FAKE(test_fake_fault_every_call),
		FAKE(test_copy_fails_fake_block),
		FAKE(test_unmap_fails_after_compaction),
		HOST(test_host_fences_immediate),
		FAKE(test_deferred_free_stream),
		FAKE(test_deferred_free_event),
		FAKE(test_fences_do_not_pile_up),
		FAKE(test_destroy_waits_for_fences),
		FAKE(test_fence_unknown_state_kept),
		FAKE(test_fence_driver_errors),
		FAKE(test_trim_keep_above_watermark),
		FAKE(test_compact_stream_fence),
		FAKE(test_destroy_after_fenced_compaction),
		FAKE(test_fenced_compaction_dest_freed),
		FAKE(test_copy_fails_async_drained),
		FAKE(test_tick_with_stream_fence),
		FAKE(test_compact_event_or_no_fence),
		FAKE(test_fake_fault_every_call_async),
		HOST(test_bad_arguments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
