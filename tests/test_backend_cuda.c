/* Description: the cuda backend and the pool on it, run against the fake driver, with a failure injected at every driver call; its fence ops over the fake's stream model (races between streams and sticky faults included), and over the real driver where there is one; the fake's kernel, device-memory and timing calls, and the backend's copies through the copy kernel. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <kvc/kvc.h>

#include "../kernels/args.h"
#include "backend.h"
#include "fake_check.h"
#include "fake_driver.h"
#include "scenario.h"
#include "testutil.h"

#define GRAN SCENARIO_GRAN
#define BLOCK SCENARIO_BLOCK
#define CAPACITY SCENARIO_CAPACITY

static const struct kvc_fake_config small_gpu = { .granularity = GRAN,
						  .devices = 1 };

static void assert_no_violation(void)
{
	struct kvc_fake_counts fc;

	kvc_fake_counts(&fc);
	if (fc.violations)
		fail_msg("driver rule broken: %s", kvc_fake_last_violation());
}

static int setup(void **state)
{
	const struct kvc_cuda_driver *drv = kvc_fake_driver(&small_gpu);

	*state = (void *)drv;
	return drv ? 0 : -1;
}

static int teardown(void **state)
{
	FAKE_EXPECT_CLEAN(FAKE_KEEP_NONE);
	return 0;
}

static void test_open_close(void **state)
{
	const struct kvc_cuda_driver *drv = *state;
	struct kvc_backend *be;

	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	assert_string_equal(kvc_backend_name(be), "cuda-fake");
	assert_int_equal(kvc_backend_granularity(be), GRAN);
	kvc_backend_close(be);
	assert_int_equal(kvc_backend_open_cuda_driver(drv, 1, &be), -ENODEV);
	assert_non_null(strstr(kvc_last_error(), "no CUDA device 1"));
	assert_int_equal(kvc_backend_open_cuda_driver(drv, -1, &be), -EINVAL);
}

static void test_no_device(void **state)
{
	const struct kvc_fake_config none = { .granularity = GRAN };
	const struct kvc_cuda_driver *drv = kvc_fake_driver(&none);
	struct kvc_backend *be;

	assert_non_null(drv);
	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), -ENODEV);
}

/* Every call made while opening can fail; none may leave anything held. */
static void test_open_faults(void **state)
{
	static const enum kvc_fake_fn fns[] = {
		KVC_FAKE_INIT,		KVC_FAKE_DEVICE_GET_COUNT,
		KVC_FAKE_DEVICE_GET,	KVC_FAKE_CTX_RETAIN,
		KVC_FAKE_CTX_PUSH,	KVC_FAKE_GRANULARITY,
		KVC_FAKE_STREAM_CREATE,
	};
	const struct kvc_cuda_driver *drv = *state;
	struct kvc_backend *be;
	size_t i;

	for (i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		kvc_fake_fail(fns[i], 1, KVC_CUDA_ERROR_INVALID_DEVICE);
		assert_true(kvc_backend_open_cuda_driver(drv, 0, &be) < 0);
		assert_true(strlen(kvc_last_error()) > 0);
		FAKE_EXPECT_CLEAN(FAKE_KEEP_NONE);
	}
	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	kvc_backend_close(be);
}

/* The real driver is absent here: auto falls back, cuda refuses. */
static void test_real_driver_absent(void **state)
{
	struct kvc_backend *be;
	int err;

	err = kvc_backend_open(KVC_BACKEND_CUDA, 0, &be);
	if (!err) {
		/* A machine with a GPU: nothing to check here. */
		kvc_backend_close(be);
		skip();
	}
	assert_int_equal(err, -ENODEV);
	assert_true(strlen(kvc_last_error()) > 0);
	assert_int_equal(kvc_backend_open(KVC_BACKEND_AUTO, 0, &be), 0);
	assert_string_equal(kvc_backend_name(be), "host");
	kvc_backend_close(be);
}

static void test_scenario_clean(void **state)
{
	const struct kvc_cuda_driver *drv = *state;
	struct kvc_backend *be;

	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	assert_int_equal(scenario_run(be), 0);
	assert_no_violation();
	kvc_backend_close(be);
}

static void test_fault_every_call(void **state)
{
	static const kvc_cu_result results[] = {
		KVC_CUDA_ERROR_OUT_OF_MEMORY,
		KVC_CUDA_ERROR_INVALID_VALUE,
	};
	const struct kvc_cuda_driver *drv = *state;
	struct kvc_fake_counts base, fc;
	uint64_t calls[KVC_FAKE_NR_FNS], nth;
	struct kvc_backend *be;
	unsigned int fn, r, injected = 0, absorbed = 0;
	int failures;

	/* One clean run counts the calls the scenario makes. */
	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	kvc_fake_counts(&base);
	assert_int_equal(scenario_run(be), 0);
	kvc_fake_counts(&fc);
	for (fn = 0; fn < KVC_FAKE_NR_FNS; fn++)
		calls[fn] = fc.calls[fn] - base.calls[fn];
	assert_true(calls[KVC_FAKE_CREATE] > 0);
	assert_true(calls[KVC_FAKE_UNMAP] > 0);
	/* Its copies are of one block size: the copy kernel does them. */
	assert_true(calls[KVC_FAKE_LAUNCH_KERNEL] > 0);

	for (fn = 0; fn < KVC_FAKE_NR_FNS; fn++) {
		for (nth = 1; nth <= calls[fn]; nth++) {
			for (r = 0; r < 2; r++) {
				kvc_fake_fail(fn, nth, results[r]);
				failures = scenario_run(be);
				kvc_fake_fail(fn, 0, 0);
				kvc_fake_counts(&fc);
				/*
				 * Some failures are absorbed by design: a
				 * refused unmap during free is retried later,
				 * a refused release is parked and retried.
				 */
				absorbed += failures == 0;
				/*
				 * A refused cuMemAddressFree is the one leak
				 * allowed: destroy reported it. Reclaim it.
				 */
				if (fn == KVC_FAKE_ADDRESS_FREE &&
				    fc.reservations == 1) {
					assert_int_equal(
						drv->cuMemAddressFree(
							scenario_last_base,
							(uint64_t)CAPACITY *
								BLOCK),
						0);
					kvc_fake_counts(&fc);
				}
				/* Everything the pool made is released. */
				if (fc.handles || fc.mappings ||
				    fc.reservations != 0)
					fail_msg(
						"%s #%llu failing: %llu handles, %llu mappings, %llu reservations left",
						kvc_fake_fn_name(fn),
						(unsigned long long)nth,
						(unsigned long long)fc.handles,
						(unsigned long long)fc.mappings,
						(unsigned long long)
							fc.reservations);
				if (fc.violations)
					fail_msg(
						"%s #%llu failing: rule broken: %s",
						kvc_fake_fn_name(fn),
						(unsigned long long)nth,
						kvc_fake_last_violation());
				injected++;
			}
		}
	}
	kvc_backend_close(be);
	print_message("injected %u failures, %u absorbed without an error\n",
		      injected, absorbed);
}

/* A cuda backend over @drv and a scenario pool on it; asserts both. */
static struct kvc_pool *open_pool(const struct kvc_cuda_driver *drv,
				  uint64_t max_mapped, struct kvc_backend **be)
{
	struct kvc_pool *pool;

	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, be), 0);
	pool = scenario_pool(*be, 0, max_mapped);
	assert_non_null(pool);
	return pool;
}

static void test_device_out_of_memory(void **state)
{
	const struct kvc_fake_config tiny = { .granularity = GRAN,
					      .devices = 1,
					      .memory_bytes = 3 * GRAN };
	const struct kvc_cuda_driver *drv = kvc_fake_driver(&tiny);
	struct kvc_backend *be;
	struct kvc_pool *pool;
	struct scenario_model m = { 0 };

	pool = open_pool(drv, 0, &be);
	/* 16 blocks per chunk, three chunks of device memory. */
	assert_int_equal(scenario_alloc(pool, &m, 40), 0);
	scenario_verify(pool, &m);
	assert_int_equal(scenario_alloc(pool, &m, 20), -ENOMEM);
	assert_non_null(strstr(kvc_last_error(), "OUT_OF_MEMORY"));
	scenario_verify(pool, &m);
	assert_int_equal(scenario_alloc(pool, &m, 8), 0);
	scenario_verify(pool, &m);
	assert_int_equal(kvc_pool_destroy(pool), 0);
	kvc_backend_close(be);
}

/* A mapped-bytes cap below the device's memory stops growth first. */
static void test_mapped_cap(void **state)
{
	const struct kvc_cuda_driver *drv = *state;
	struct kvc_backend *be;
	struct kvc_pool *pool;
	struct scenario_model m = { 0 };

	pool = open_pool(drv, 2 * GRAN, &be);
	assert_int_equal(scenario_alloc(pool, &m, 32), 0);
	assert_int_equal(scenario_alloc(pool, &m, 1), -ENOMEM);
	assert_non_null(strstr(kvc_last_error(), "cap"));
	scenario_verify(pool, &m);
	assert_int_equal(kvc_pool_destroy(pool), 0);
	kvc_backend_close(be);
}

/*
 * Two failures at once: cuMemSetAccess fails, and so does the cuMemUnmap
 * that unwinds it. The range must not stay mapped under a chunk the pool
 * thinks is free: the next map clears it first, and nothing leaks.
 */
static void test_double_fault_unwind(void **state)
{
	const struct kvc_cuda_driver *drv = *state;
	struct kvc_fake_counts fc;
	struct kvc_backend *be;
	struct kvc_pool *pool;
	struct scenario_model m = { 0 };

	pool = open_pool(drv, 0, &be);
	kvc_fake_fail(KVC_FAKE_SET_ACCESS, 1, KVC_CUDA_ERROR_OUT_OF_MEMORY);
	kvc_fake_fail(KVC_FAKE_UNMAP, 1, KVC_CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(scenario_alloc(pool, &m, 5), -ENOMEM);
	scenario_verify(pool, &m);
	kvc_fake_counts(&fc);
	assert_int_equal(fc.mappings, 1); /* parked, not forgotten */
	/* Refused once more: the chunk is not mapped over, alloc fails. */
	kvc_fake_fail(KVC_FAKE_UNMAP, 1, KVC_CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(scenario_alloc(pool, &m, 5), -EIO);
	assert_no_violation();
	scenario_verify(pool, &m);
	assert_int_equal(scenario_alloc(pool, &m, 5), 0);
	scenario_verify(pool, &m);
	kvc_fake_counts(&fc);
	assert_int_equal(fc.mappings, 1);
	assert_int_equal(fc.handles, 1);
	assert_no_violation();
	assert_int_equal(kvc_pool_destroy(pool), 0);
	kvc_backend_close(be);
}

/*
 * The backend pushes its context for each call and pops it after: the
 * caller's own current context (a CUDA runtime application's) stays.
 */
static void test_caller_context_kept(void **state)
{
	const struct kvc_cuda_driver *drv = *state;
	kvc_cu_context mine, top = NULL;
	struct kvc_backend *be;
	struct kvc_pool *pool;
	struct scenario_model m = { 0 };
	struct kvc_fake_counts fc;

	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	assert_int_equal(drv->cuDevicePrimaryCtxRetain(&mine, 0), 0);
	assert_int_equal(drv->cuCtxPushCurrent(mine), 0);
	pool = scenario_pool(be, 0, 0);
	assert_non_null(pool);
	assert_int_equal(scenario_alloc(pool, &m, 40), 0);
	assert_int_equal(scenario_free(pool, &m, 1, 0), 0);
	assert_int_equal(kvc_pool_destroy(pool), 0);
	kvc_fake_counts(&fc);
	assert_int_equal(fc.pushed, 1); /* only the caller's */
	assert_int_equal(drv->cuCtxPopCurrent(&top), 0);
	assert_ptr_equal(top, mine);
	assert_int_equal(drv->cuDevicePrimaryCtxRelease(0), 0);
	kvc_backend_close(be);
}

/*
 * Fences. Each test gets a cuda backend over the fake with one chunk
 * mapped at offset 0 of a two-chunk reservation (its bytes readable from
 * the host at @mem), and a stream of the caller's own, made as a CUDA
 * runtime application would: with a context current.
 */
struct fence_fx {
	const struct kvc_cuda_driver *drv;
	struct kvc_backend *be;
	const struct kvc_backend_ops *ops;
	struct kvc_va va;
	uint64_t handle;
	kvc_cu_context ctx;
	kvc_cu_stream stream;
	uint8_t *mem;
	uint64_t violations; /* the ones the test provokes on purpose */
};

#define SRC 0
#define DST BLOCK

static const struct kvc_copy one_copy = { SRC, DST, BLOCK };

/* Calls the driver wants a current context for: streams, events. */
static void caller_push(struct fence_fx *fx)
{
	assert_int_equal(fx->drv->cuCtxPushCurrent(fx->ctx), 0);
}

static void caller_pop(struct fence_fx *fx)
{
	kvc_cu_context top;

	assert_int_equal(fx->drv->cuCtxPopCurrent(&top), 0);
	assert_ptr_equal(top, fx->ctx);
}

static kvc_cu_event caller_event(struct fence_fx *fx)
{
	kvc_cu_event ev;

	caller_push(fx);
	assert_int_equal(fx->drv->cuEventCreate(&ev, 0), 0);
	caller_pop(fx);
	return ev;
}

static int setup_fence(void **state)
{
	struct fence_fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	*state = fx;
	fx->drv = kvc_fake_driver(&small_gpu);
	if (!fx->drv || kvc_backend_open_cuda_driver(fx->drv, 0, &fx->be))
		return -1;
	fx->ops = fx->be->ops;
	if (fx->ops->reserve(fx->be, 2 * GRAN, &fx->va) ||
	    fx->ops->map(fx->be, &fx->va, 0, GRAN, &fx->handle))
		return -1;
	fx->mem = (uint8_t *)(uintptr_t)fx->va.base;
	if (fx->drv->cuDevicePrimaryCtxRetain(&fx->ctx, 0) ||
	    fx->drv->cuCtxPushCurrent(fx->ctx) ||
	    fx->drv->cuStreamCreate(&fx->stream, 0) ||
	    fx->drv->cuCtxPopCurrent(&fx->ctx))
		return -1;
	memset(fx->mem, 0, GRAN);
	return 0;
}

static int teardown_fence(void **state)
{
	struct fence_fx *fx = *state;
	struct kvc_fake_counts fc;

	kvc_fake_set_async(false); /* runs what is left */
	assert_int_equal(fx->drv->cuStreamDestroy(fx->stream), 0);
	assert_int_equal(fx->drv->cuDevicePrimaryCtxRelease(0), 0);
	assert_int_equal(fx->ops->unmap(fx->be, &fx->va, 0, GRAN, fx->handle),
			 0);
	assert_int_equal(fx->ops->release(fx->be, &fx->va), 0);
	kvc_backend_close(fx->be);
	kvc_fake_counts(&fc);
	if (fc.violations != fx->violations)
		fail_msg("%llu driver rules broken, %llu expected; last: %s",
			 (unsigned long long)fc.violations,
			 (unsigned long long)fx->violations,
			 kvc_fake_last_violation());
	/* Those broken on purpose are counted above. */
	FAKE_EXPECT_CLEAN(FAKE_KEEP_VIOLATIONS);
	free(fx);
	return 0;
}

static uint64_t fake_pending(void)
{
	struct kvc_fake_counts fc;

	kvc_fake_counts(&fc);
	return fc.pending;
}

static uint64_t fake_events(void)
{
	struct kvc_fake_counts fc;

	kvc_fake_counts(&fc);
	return fc.events;
}

/* Every byte of [@off, @off + @bytes) of the chunk is @v. */
static void assert_bytes(const struct fence_fx *fx, uint64_t off,
			 uint64_t bytes, uint8_t v)
{
	uint64_t i;

	for (i = 0; i < bytes; i++)
		if (fx->mem[off + i] != v)
			fail_msg("byte %llu is %u, expected %u",
				 (unsigned long long)(off + i),
				 fx->mem[off + i], v);
}

/*
 * The fake counted one more violation, a race whose message starts with
 * @what, when @raced; none more otherwise.
 */
static void expect_race(struct fence_fx *fx, bool raced, const char *what)
{
	struct kvc_fake_counts fc;

	kvc_fake_counts(&fc);
	fx->violations += raced;
	if (fc.violations != fx->violations)
		fail_msg("%llu driver rules broken, %llu expected; last: %s",
			 (unsigned long long)fc.violations,
			 (unsigned long long)fx->violations,
			 kvc_fake_last_violation());
	if (raced && strncmp(kvc_fake_last_violation(), what, strlen(what)))
		fail_msg("expected \"%s...\", got \"%s\"", what,
			 kvc_fake_last_violation());
}

/* Sync mode: work runs when issued, every token has completed at birth. */
static void test_fence_sync_mode(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_fence none = { KVC_FENCE_NONE, NULL };
	const struct kvc_fence dflt = { KVC_FENCE_CUDA_STREAM, NULL };
	const struct kvc_fence mine = { KVC_FENCE_CUDA_STREAM, fx->stream };
	struct kvc_fence ev = { KVC_FENCE_CUDA_EVENT, NULL };
	uint64_t token = 0;

	ev.handle = caller_event(fx);
	memset(fx->mem + SRC, 3, BLOCK);
	assert_int_equal(kvc_fake_launch(fx->stream, fx->va.base + SRC, BLOCK),
			 0);
	assert_int_equal(fx->drv->cuEventRecord(ev.handle, fx->stream), 0);
	assert_int_equal(fx->ops->fence_after(fx->be, &fx->va, NULL), 0);
	assert_int_equal(fx->ops->fence_after(fx->be, &fx->va, &none), 0);
	assert_int_equal(fx->ops->fence_after(fx->be, &fx->va, &dflt), 0);
	assert_int_equal(fx->ops->fence_after(fx->be, &fx->va, &mine), 0);
	assert_int_equal(fx->ops->fence_after(fx->be, &fx->va, &ev), 0);
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, &one_copy, 1), 0);
	assert_bytes(fx, DST, BLOCK, 4);
	assert_int_equal(fx->ops->fence_record(fx->be, &fx->va, &token), 0);
	assert_true(token != 0);
	assert_int_equal(fake_events(), 2);
	assert_int_equal(fx->ops->fence_query(fx->be, &fx->va, token), 0);
	assert_int_equal(fx->ops->fence_sync(fx->be, &fx->va, token), 0);
	assert_int_equal(fx->ops->fence_signal(fx->be, &fx->va, token, &mine),
			 0);
	assert_int_equal(fx->ops->fence_signal(fx->be, &fx->va, token, &dflt),
			 0);
	/* Only a stream can be made to wait. */
	assert_int_equal(fx->ops->fence_signal(fx->be, &fx->va, token, &ev),
			 -EINVAL);
	assert_int_equal(fx->ops->fence_signal(fx->be, &fx->va, token, &none),
			 -EINVAL);
	fx->ops->fence_put(fx->be, &fx->va, token);
	/* Token 0, the host's, has always completed. */
	assert_int_equal(fx->ops->fence_query(fx->be, &fx->va, 0), 0);
	assert_int_equal(fx->ops->fence_sync(fx->be, &fx->va, 0), 0);
	assert_int_equal(fx->ops->fence_signal(fx->be, &fx->va, 0, &mine), 0);
	fx->ops->fence_put(fx->be, &fx->va, 0);
	assert_int_equal(fx->drv->cuEventDestroy(ev.handle), 0);
	assert_int_equal(fake_events(), 0);
	assert_int_equal(fake_pending(), 0);
}

/* Async: a token is pending until the copies before it have run. */
static void test_fence_query_async(void **state)
{
	struct fence_fx *fx = *state;
	uint64_t token, dropped;

	kvc_fake_set_async(true);
	memset(fx->mem + SRC, 9, BLOCK);
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, &one_copy, 1), 0);
	assert_int_equal(fx->ops->fence_record(fx->be, &fx->va, &token), 0);
	assert_int_equal(fx->ops->fence_query(fx->be, &fx->va, token), -EBUSY);
	assert_bytes(fx, DST, BLOCK, 0);
	/* Dropping a pending token is allowed; its record still runs. */
	assert_int_equal(fx->ops->fence_record(fx->be, &fx->va, &dropped), 0);
	fx->ops->fence_put(fx->be, &fx->va, dropped);
	assert_int_equal(fake_pending(), 3);
	assert_int_equal(kvc_fake_run(), 3);
	assert_int_equal(fx->ops->fence_query(fx->be, &fx->va, token), 0);
	assert_bytes(fx, DST, BLOCK, 9);
	fx->ops->fence_put(fx->be, &fx->va, token);
	assert_int_equal(fake_events(), 0);
	assert_int_equal(kvc_fake_run(), 0);
}

/*
 * fence_after orders the backend's copy after the caller's kernel: the
 * copy sees the kernel's +1 only when it was ordered after it. Syncing
 * the token runs only what the token needs, so without the fence the
 * kernel is still queued when the copy has run; and the fake reports the
 * copy as unordered with the kernel when it is queued.
 */
static void fence_after_case(struct fence_fx *fx, const struct kvc_fence *f,
			     kvc_cu_stream caller, bool ordered)
{
	uint64_t token;

	memset(fx->mem, 0, 2 * BLOCK);
	memset(fx->mem + SRC, 7, BLOCK);
	kvc_fake_set_async(true);
	assert_int_equal(kvc_fake_launch(caller, fx->va.base + SRC, BLOCK), 0);
	if (f->kind == KVC_FENCE_CUDA_EVENT)
		assert_int_equal(fx->drv->cuEventRecord(f->handle, caller), 0);
	if (ordered)
		assert_int_equal(fx->ops->fence_after(fx->be, &fx->va, f), 0);
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, &one_copy, 1), 0);
	expect_race(fx, !ordered, "unordered: kernel on ");
	assert_int_equal(fx->ops->fence_record(fx->be, &fx->va, &token), 0);
	assert_int_equal(fx->ops->fence_query(fx->be, &fx->va, token), -EBUSY);
	assert_int_equal(fx->ops->fence_sync(fx->be, &fx->va, token), 0);
	assert_int_equal(fx->ops->fence_query(fx->be, &fx->va, token), 0);
	assert_bytes(fx, DST, BLOCK, ordered ? 8 : 7);
	if (!ordered)
		assert_true(fake_pending() > 0); /* the kernel */
	fx->ops->fence_put(fx->be, &fx->va, token);
	kvc_fake_set_async(false);
	assert_bytes(fx, SRC, BLOCK, 8);
	assert_int_equal(fake_pending(), 0);
}

static void test_fence_after_stream(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_fence mine = { KVC_FENCE_CUDA_STREAM, fx->stream };
	const struct kvc_fence dflt = { KVC_FENCE_CUDA_STREAM, NULL };

	fence_after_case(fx, &mine, fx->stream, false);
	fence_after_case(fx, &mine, fx->stream, true);
	fence_after_case(fx, &dflt, NULL, true);
	/* The temporary event was dropped at once. */
	assert_int_equal(fake_events(), 0);
}

static void test_fence_after_event(void **state)
{
	struct fence_fx *fx = *state;
	struct kvc_fence ev = { KVC_FENCE_CUDA_EVENT, NULL };

	ev.handle = caller_event(fx);
	fence_after_case(fx, &ev, fx->stream, false);
	fence_after_case(fx, &ev, fx->stream, true);
	assert_int_equal(fx->drv->cuEventDestroy(ev.handle), 0);
}

/*
 * fence_signal orders the caller's later work after the backend's copies:
 * a kernel on the caller's stream sees the copied bytes (5, then +1).
 * Without it, syncing the caller's stream runs the kernel alone.
 */
static void test_fence_signal(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_fence mine = { KVC_FENCE_CUDA_STREAM, fx->stream };
	uint64_t token;
	int ordered;

	for (ordered = 0; ordered < 2; ordered++) {
		memset(fx->mem, 0, 2 * BLOCK);
		memset(fx->mem + SRC, 5, BLOCK);
		kvc_fake_set_async(true);
		assert_int_equal(fx->ops->copy(fx->be, &fx->va, &one_copy, 1),
				 0);
		assert_int_equal(fx->ops->fence_record(fx->be, &fx->va, &token),
				 0);
		if (ordered)
			assert_int_equal(fx->ops->fence_signal(fx->be, &fx->va,
							       token, &mine),
					 0);
		/* The caller may drop the token once the stream waits. */
		fx->ops->fence_put(fx->be, &fx->va, token);
		assert_int_equal(
			kvc_fake_launch(fx->stream, fx->va.base + DST, BLOCK),
			0);
		/* The backend's copy is a copy kernel: its items are known. */
		expect_race(fx, !ordered,
			    "unordered: kernel kvc_block_copy on ");
		assert_int_equal(fx->drv->cuStreamSynchronize(fx->stream), 0);
		assert_bytes(fx, DST, BLOCK, ordered ? 6 : 1);
		assert_int_equal(fake_pending(), ordered ? 0 : 2);
		/* Unordered, the copy runs last and overwrites the kernel's. */
		kvc_fake_set_async(false);
		assert_bytes(fx, DST, BLOCK, ordered ? 6 : 5);
	}
}

/* fence_sync runs what the token needs and nothing else. */
static void test_fence_sync_runs_needed(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_fence mine = { KVC_FENCE_CUDA_STREAM, fx->stream };
	uint64_t token;

	kvc_fake_set_async(true);
	memset(fx->mem + SRC, 2, BLOCK);
	/* The caller's kernel; the backend waits for it... */
	assert_int_equal(kvc_fake_launch(fx->stream, fx->va.base + SRC, BLOCK),
			 0);
	assert_int_equal(fx->ops->fence_after(fx->be, &fx->va, &mine), 0);
	/* ...but not for this one, queued after the wait. */
	assert_int_equal(
		kvc_fake_launch(fx->stream, fx->va.base + 2 * BLOCK, BLOCK), 0);
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, &one_copy, 1), 0);
	assert_int_equal(fx->ops->fence_record(fx->be, &fx->va, &token), 0);
	assert_int_equal(fx->ops->fence_sync(fx->be, &fx->va, token), 0);
	assert_bytes(fx, DST, BLOCK, 3);
	assert_bytes(fx, 2 * BLOCK, BLOCK, 0);
	assert_int_equal(fake_pending(), 1);
	/* The old fence op waits for the backend's stream as a whole. */
	assert_int_equal(fx->ops->fence(fx->be, &fx->va), 0);
	assert_int_equal(fake_pending(), 1);
	fx->ops->fence_put(fx->be, &fx->va, token);
	assert_int_equal(kvc_fake_run(), 1);
	assert_bytes(fx, 2 * BLOCK, BLOCK, 1);
}

/*
 * cuMemUnmap is not ordered with streams: unmapping a chunk that queued
 * work still touches is refused by the fake (a fault on a real device),
 * and is fine once the work has run. Queued work that finds its memory
 * inaccessible when it runs is a violation too.
 */
static void test_unmap_under_queued_work(void **state)
{
	struct fence_fx *fx = *state;
	struct kvc_cu_access_desc ro = { { KVC_CU_MEM_LOCATION_TYPE_DEVICE, 0 },
					 KVC_CU_MEM_ACCESS_FLAGS_PROT_READ };
	struct kvc_cu_access_desc rw = ro;
	uint64_t handle;

	rw.flags = KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	assert_int_equal(fx->ops->map(fx->be, &fx->va, GRAN, GRAN, &handle), 0);
	kvc_fake_set_async(true);
	assert_int_equal(
		kvc_fake_launch(fx->stream, fx->va.base + GRAN + 16, 1), 0);
	assert_int_equal(fx->ops->unmap(fx->be, &fx->va, GRAN, GRAN, handle),
			 -EINVAL);
	fx->violations++;
	assert_non_null(strstr(kvc_fake_last_violation(), "queued"));
	/* The chunk is still mapped and usable; the kernel runs on it. */
	assert_int_equal(kvc_fake_run(), 1);
	assert_int_equal(fx->mem[GRAN + 16], 1);
	assert_int_equal(fx->ops->unmap(fx->be, &fx->va, GRAN, GRAN, handle),
			 0);

	/* Read-only by the time it runs: a fault, the kernel is skipped. */
	assert_int_equal(kvc_fake_launch(fx->stream, fx->va.base, BLOCK), 0);
	assert_int_equal(fx->drv->cuMemSetAccess(fx->va.base, GRAN, &ro, 1), 0);
	assert_int_equal(kvc_fake_run(), 1);
	fx->violations++;
	assert_non_null(strstr(kvc_fake_last_violation(), "when it ran"));
	assert_bytes(fx, 0, BLOCK, 0);
	/* The fault broke the context for good (test_sticky_fault). */
	assert_int_equal(fx->drv->cuMemSetAccess(fx->va.base, GRAN, &rw, 1),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
}

/*
 * The fake's own rules: a stream wait is for the record as of the wait; a
 * destroyed stream's work still runs; handles die when destroyed;
 * streams and events need a current context; the fake will not reset
 * while events or queued work remain.
 */
static void test_fake_stream_model(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_fake_config cfg = small_gpu;
	kvc_cu_event ev = caller_event(fx), never = caller_event(fx);
	kvc_cu_stream other;

	kvc_fake_set_async(true);
	assert_int_equal(fx->drv->cuEventQuery(never), 0);
	assert_int_equal(fx->drv->cuEventSynchronize(never), 0);
	caller_push(fx);
	assert_int_equal(fx->drv->cuStreamCreate(&other, 0), 0);
	caller_pop(fx);

	/* stream: K(A), record; other: wait, K(B); stream: K(C), record. */
	assert_int_equal(kvc_fake_launch(fx->stream, fx->va.base, 1), 0);
	assert_int_equal(fx->drv->cuEventRecord(ev, fx->stream), 0);
	assert_int_equal(fx->drv->cuEventQuery(ev), KVC_CUDA_ERROR_NOT_READY);
	assert_int_equal(fx->drv->cuStreamWaitEvent(other, ev, 0), 0);
	assert_int_equal(kvc_fake_launch(other, fx->va.base + 1, 1), 0);
	assert_int_equal(kvc_fake_launch(fx->stream, fx->va.base + 2, 1), 0);
	assert_int_equal(fx->drv->cuEventRecord(ev, fx->stream), 0);
	assert_int_equal(fake_pending(), 6);
	assert_int_equal(kvc_fake_driver(&cfg), NULL);
	/* The other stream's work needs K(A) and the first record only. */
	assert_int_equal(fx->drv->cuStreamSynchronize(other), 0);
	assert_bytes(fx, 0, 2, 1);
	assert_bytes(fx, 2, 1, 0);
	assert_int_equal(fake_pending(), 2);
	assert_int_equal(fx->drv->cuEventQuery(ev), KVC_CUDA_ERROR_NOT_READY);

	/* Destroyed with work queued: the handle dies, the work still runs. */
	assert_int_equal(kvc_fake_launch(other, fx->va.base + 3, 1), 0);
	assert_int_equal(fx->drv->cuStreamDestroy(other), 0);
	assert_int_equal(fx->drv->cuStreamSynchronize(other),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	fx->violations++;
	assert_int_equal(fake_pending(), 3);
	kvc_fake_set_async(false);
	assert_bytes(fx, 0, 4, 1);
	assert_int_equal(fx->drv->cuEventQuery(ev), 0);

	kvc_fake_set_async(true);
	assert_int_equal(kvc_fake_launch(fx->stream, fx->va.base, 1), 0);
	assert_int_equal(fx->drv->cuEventRecord(ev, fx->stream), 0);
	assert_int_equal(kvc_fake_launch(fx->stream, fx->va.base + 1, 1), 0);
	assert_int_equal(fx->drv->cuEventSynchronize(ev), 0);
	assert_int_equal(fx->mem[0], 2);
	assert_int_equal(fx->mem[1], 1);
	assert_int_equal(fake_pending(), 1);
	assert_int_equal(kvc_fake_run(), 1);

	/* Dead handles. */
	assert_int_equal(fx->drv->cuEventDestroy(ev), 0);
	assert_int_equal(fx->drv->cuEventQuery(ev),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	assert_int_equal(fx->drv->cuEventDestroy(ev),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	fx->violations += 2;
	assert_int_equal(kvc_fake_launch(fx->stream, 0, 0), 0);
	assert_int_equal(kvc_fake_launch((kvc_cu_stream)ev, 0, 0),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	fx->violations++;

	/* No context current: no stream, no event. */
	assert_int_equal(fx->drv->cuStreamCreate(&other, 0),
			 KVC_CUDA_ERROR_INVALID_CONTEXT);
	assert_int_equal(fx->drv->cuEventCreate(&ev, 0),
			 KVC_CUDA_ERROR_INVALID_CONTEXT);
	fx->violations += 2;

	assert_int_equal(kvc_fake_driver(&cfg), NULL); /* never still lives */
	assert_int_equal(fx->drv->cuEventDestroy(never), 0);
}

/* CU_STREAM_LEGACY and CU_STREAM_PER_THREAD, as in cuda.h. */
#define STREAM_LEGACY ((kvc_cu_stream)(uintptr_t)0x1)
#define STREAM_PER_THREAD ((kvc_cu_stream)(uintptr_t)0x2)

static kvc_cu_stream caller_stream(struct fence_fx *fx)
{
	kvc_cu_stream s;

	caller_push(fx);
	assert_int_equal(fx->drv->cuStreamCreate(&s, 0), 0);
	caller_pop(fx);
	return s;
}

/* A copy of the chunk's bytes [@src, +@bytes) to @dst on @s. */
static void copy_on(struct fence_fx *fx, kvc_cu_stream s, uint64_t dst,
		    uint64_t src, uint64_t bytes)
{
	assert_int_equal(fx->drv->cuMemcpyDtoDAsync(fx->va.base + dst,
						    fx->va.base + src, bytes,
						    s),
			 0);
}

static void kernel_on(struct fence_fx *fx, kvc_cu_stream s, uint64_t off,
		      uint64_t bytes)
{
	assert_int_equal(kvc_fake_launch(s, fx->va.base + off, bytes), 0);
}

/* Run everything and let the host see it complete: nothing can race. */
static void drain(void)
{
	kvc_fake_set_async(false);
	kvc_fake_set_async(true);
}

/*
 * A kernel on one stream and a copy reading its bytes on another, with
 * nothing ordering them: a violation naming both, whichever stream was
 * made first (the fake runs streams in slot order) and whichever of the
 * two was queued first. The data are whatever the fake's schedule made
 * them; what matters is that it is reported.
 */
static void test_race_unordered(void **state)
{
	struct fence_fx *fx = *state;
	int order, kernel_first;
	char want[256];

	kvc_fake_set_async(true);
	for (order = 0; order < 2; order++) {
		for (kernel_first = 0; kernel_first < 2; kernel_first++) {
			kvc_cu_stream s1 = caller_stream(fx);
			kvc_cu_stream s2 = caller_stream(fx);
			kvc_cu_stream k = order ? s2 : s1, c = order ? s1 : s2;

			if (kernel_first) {
				kernel_on(fx, k, SRC, BLOCK);
				copy_on(fx, c, DST, SRC, BLOCK);
				snprintf(
					want, sizeof(want),
					"unordered: kernel on stream %p and copy on stream %p both touch [%#llx, +%llu)",
					k, c,
					(unsigned long long)(fx->va.base + SRC),
					(unsigned long long)BLOCK);
			} else {
				copy_on(fx, c, DST, SRC, BLOCK);
				kernel_on(fx, k, SRC, BLOCK);
				snprintf(
					want, sizeof(want),
					"unordered: copy on stream %p and kernel on stream %p both touch [%#llx, +%llu)",
					c, k,
					(unsigned long long)(fx->va.base + SRC),
					(unsigned long long)BLOCK);
			}
			expect_race(fx, true, want);
			/* Running it is no observation: it races on. */
			assert_int_equal(kvc_fake_run(), 2);
			kernel_on(fx, k, DST, BLOCK);
			expect_race(fx, true, "unordered: copy on stream");
			drain();
			assert_int_equal(fx->drv->cuStreamDestroy(s1), 0);
			assert_int_equal(fx->drv->cuStreamDestroy(s2), 0);
		}
	}
	/* The default stream against one of the caller's. */
	kernel_on(fx, NULL, SRC, 1);
	copy_on(fx, fx->stream, DST, SRC, 1);
	expect_race(
		fx, true,
		"unordered: kernel on the default stream and copy on stream");
	drain();
}

/*
 * What orders work across streams: a wait on an event recorded after it
 * (also once the record has run), through a chain of waits, and the host
 * having seen it complete (cuStreamSynchronize, cuEventSynchronize,
 * cuEventQuery returning 0). kvc_fake_run() alone does not, nor a wait on
 * a record made before the work.
 */
static void test_race_ordered(void **state)
{
	struct fence_fx *fx = *state;
	kvc_cu_event ev = caller_event(fx), ev2 = caller_event(fx);
	kvc_cu_stream a = caller_stream(fx), b = caller_stream(fx),
		      c = caller_stream(fx);
	const struct kvc_cuda_driver *drv = fx->drv;

	kvc_fake_set_async(true);
	/* A wait on the record after the kernel; the copy sees its +1. */
	memset(fx->mem, 4, BLOCK);
	kernel_on(fx, a, SRC, BLOCK);
	assert_int_equal(drv->cuEventRecord(ev, a), 0);
	assert_int_equal(drv->cuStreamWaitEvent(b, ev, 0), 0);
	copy_on(fx, b, DST, SRC, BLOCK);
	expect_race(fx, false, "");
	assert_int_equal(drv->cuStreamSynchronize(b), 0);
	assert_bytes(fx, DST, BLOCK, 5);
	/* The copy's completion was seen: a kernel over its bytes is fine. */
	kernel_on(fx, a, DST, BLOCK);
	expect_race(fx, false, "");
	drain();

	/* The record has run (unseen) before the wait: still ordered. */
	kernel_on(fx, a, SRC, BLOCK);
	assert_int_equal(drv->cuEventRecord(ev, a), 0);
	assert_int_equal(kvc_fake_run(), 2);
	assert_int_equal(drv->cuStreamWaitEvent(b, ev, 0), 0);
	copy_on(fx, b, DST, SRC, BLOCK);
	expect_race(fx, false, "");
	drain();

	/* A chain: a -> b -> c. */
	kernel_on(fx, a, SRC, BLOCK);
	assert_int_equal(drv->cuEventRecord(ev, a), 0);
	assert_int_equal(drv->cuStreamWaitEvent(b, ev, 0), 0);
	assert_int_equal(drv->cuEventRecord(ev2, b), 0);
	assert_int_equal(drv->cuStreamWaitEvent(c, ev2, 0), 0);
	copy_on(fx, c, DST, SRC, BLOCK);
	expect_race(fx, false, "");
	drain();

	/* Seen complete by the host, then queued: ordered. */
	kernel_on(fx, a, SRC, BLOCK);
	assert_int_equal(drv->cuStreamSynchronize(a), 0);
	copy_on(fx, b, DST, SRC, BLOCK);
	expect_race(fx, false, "");
	/* The kernel would overwrite what b's unseen copy reads. */
	kernel_on(fx, a, SRC, BLOCK);
	expect_race(fx, true, "unordered: copy on stream");
	drain();
	kernel_on(fx, a, SRC, BLOCK);
	assert_int_equal(drv->cuEventRecord(ev, a), 0);
	assert_int_equal(drv->cuEventSynchronize(ev), 0);
	copy_on(fx, c, DST, SRC, BLOCK);
	expect_race(fx, false, "");
	drain();
	kernel_on(fx, a, SRC, BLOCK);
	assert_int_equal(drv->cuEventRecord(ev, a), 0);
	assert_int_equal(drv->cuEventQuery(ev), KVC_CUDA_ERROR_NOT_READY);
	assert_int_equal(kvc_fake_run(), 2);
	assert_int_equal(drv->cuEventQuery(ev), 0);
	copy_on(fx, b, DST, SRC, BLOCK);
	expect_race(fx, false, "");
	drain();

	/* Run but not seen complete: unordered. */
	kernel_on(fx, a, SRC, BLOCK);
	assert_int_equal(kvc_fake_run(), 1);
	copy_on(fx, b, DST, SRC, BLOCK);
	expect_race(fx, true, "unordered: kernel on stream");
	drain();

	/* A wait on a record made before the kernel does not order it. */
	assert_int_equal(drv->cuEventRecord(ev, a), 0);
	kernel_on(fx, a, SRC, BLOCK);
	assert_int_equal(drv->cuStreamWaitEvent(b, ev, 0), 0);
	copy_on(fx, b, DST, SRC, BLOCK);
	expect_race(fx, true, "unordered: kernel on stream");
	drain();

	assert_int_equal(drv->cuEventDestroy(ev), 0);
	assert_int_equal(drv->cuEventDestroy(ev2), 0);
	assert_int_equal(drv->cuStreamDestroy(a), 0);
	assert_int_equal(drv->cuStreamDestroy(b), 0);
	assert_int_equal(drv->cuStreamDestroy(c), 0);
}

/*
 * Work on other streams that does not conflict: disjoint (even adjacent)
 * ranges, or both only reading. A write after a read, or two writes, do
 * conflict. In sync mode nothing is concurrent.
 */
static void test_race_no_conflict(void **state)
{
	struct fence_fx *fx = *state;
	kvc_cu_stream a = caller_stream(fx), b = caller_stream(fx);

	kvc_fake_set_async(true);
	kernel_on(fx, a, 0, BLOCK);
	copy_on(fx, b, 3 * BLOCK, BLOCK, BLOCK);
	kernel_on(fx, b, 4 * BLOCK, BLOCK);
	expect_race(fx, false, "");
	drain();

	/* Read-read. */
	copy_on(fx, a, DST, SRC, BLOCK);
	copy_on(fx, b, 2 * BLOCK, SRC, BLOCK);
	expect_race(fx, false, "");
	/* Write after read, then write after write. */
	kernel_on(fx, b, SRC + BLOCK / 2, 1);
	expect_race(fx, true, "unordered: copy on stream");
	copy_on(fx, b, DST, 3 * BLOCK, BLOCK);
	expect_race(fx, true, "unordered: copy on stream");
	drain();

	/* Sync mode: everything has completed before the next call. */
	kvc_fake_set_async(false);
	kernel_on(fx, a, SRC, BLOCK);
	copy_on(fx, b, DST, SRC, BLOCK);
	kernel_on(fx, a, DST, BLOCK);
	expect_race(fx, false, "");

	assert_int_equal(fx->drv->cuStreamDestroy(a), 0);
	assert_int_equal(fx->drv->cuStreamDestroy(b), 0);
}

/*
 * CU_STREAM_LEGACY and CU_STREAM_PER_THREAD are the default stream: work
 * on them is in order with the NULL stream's, they can be synchronized,
 * recorded on, made to wait, and fenced on; none of them can be
 * destroyed.
 */
static void test_default_stream_aliases(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_cuda_driver *drv = fx->drv;
	const struct kvc_fence legacy = { KVC_FENCE_CUDA_STREAM,
					  STREAM_LEGACY };
	const struct kvc_fence per_thread = { KVC_FENCE_CUDA_STREAM,
					      STREAM_PER_THREAD };
	kvc_cu_event ev = caller_event(fx);
	uint64_t token;

	kvc_fake_set_async(true);
	kernel_on(fx, NULL, SRC, BLOCK);
	kernel_on(fx, STREAM_LEGACY, SRC, BLOCK);
	copy_on(fx, STREAM_PER_THREAD, DST, SRC, BLOCK);
	expect_race(fx, false, "");
	assert_int_equal(drv->cuEventRecord(ev, STREAM_LEGACY), 0);
	assert_int_equal(drv->cuStreamWaitEvent(fx->stream, ev, 0), 0);
	kernel_on(fx, fx->stream, DST, BLOCK);
	expect_race(fx, false, "");
	assert_int_equal(fake_pending(), 6);
	assert_int_equal(drv->cuStreamSynchronize(STREAM_PER_THREAD), 0);
	assert_int_equal(fake_pending(), 2);
	assert_bytes(fx, DST, BLOCK, 2);
	assert_int_equal(drv->cuStreamSynchronize(fx->stream), 0);
	assert_bytes(fx, DST, BLOCK, 3);
	assert_int_equal(drv->cuStreamSynchronize(STREAM_LEGACY), 0);

	/* Fences on them. */
	fence_after_case(fx, &legacy, STREAM_LEGACY, true);
	fence_after_case(fx, &per_thread, NULL, true);
	kvc_fake_set_async(true);
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, &one_copy, 1), 0);
	assert_int_equal(fx->ops->fence_record(fx->be, &fx->va, &token), 0);
	assert_int_equal(fx->ops->fence_signal(fx->be, &fx->va, token, &legacy),
			 0);
	fx->ops->fence_put(fx->be, &fx->va, token);
	kernel_on(fx, STREAM_PER_THREAD, DST, BLOCK);
	expect_race(fx, false, "");
	drain();

	/* Not destroyable; other small values are not streams. */
	assert_int_equal(drv->cuStreamDestroy(STREAM_LEGACY),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	assert_int_equal(drv->cuStreamDestroy(STREAM_PER_THREAD),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	assert_int_equal(drv->cuStreamDestroy(NULL),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	assert_int_equal(
		kvc_fake_launch((kvc_cu_stream)(uintptr_t)0x3, fx->va.base, 1),
		KVC_CUDA_ERROR_INVALID_HANDLE);
	fx->violations += 4;
	assert_int_equal(drv->cuEventDestroy(ev), 0);
}

/*
 * A kernel that faults when it runs breaks the context for good, as on a
 * device: the work queued after it is dropped, and every call that waits,
 * queues or creates answers CUDA_ERROR_ILLEGAL_ADDRESS; destroying and
 * unmapping still work, so everything can be cleaned up.
 */
static void test_sticky_fault(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_cuda_driver *drv = fx->drv;
	kvc_cu_event ev = caller_event(fx), never = caller_event(fx), ev2;
	kvc_cu_stream other = caller_stream(fx), s2;
	const char *name = NULL;
	uint64_t handle, token;

	kvc_fake_set_async(true);
	/* The second chunk of the reservation is not mapped. */
	kernel_on(fx, fx->stream, GRAN, BLOCK);
	assert_int_equal(drv->cuEventRecord(ev, fx->stream), 0);
	assert_int_equal(drv->cuStreamWaitEvent(other, ev, 0), 0);
	kernel_on(fx, other, SRC, BLOCK);
	assert_int_equal(fake_pending(), 4);
	assert_int_equal(kvc_fake_run(), 1);
	fx->violations++;
	assert_non_null(strstr(kvc_fake_last_violation(), "when it ran"));
	assert_int_equal(fake_pending(), 0);
	assert_bytes(fx, SRC, BLOCK, 0);

	assert_int_equal(drv->cuStreamSynchronize(fx->stream),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(drv->cuStreamSynchronize(NULL),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(drv->cuEventSynchronize(ev),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(drv->cuEventQuery(ev), KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(drv->cuEventQuery(never),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(drv->cuEventRecord(ev, other),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(drv->cuStreamWaitEvent(other, never, 0),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(drv->cuMemcpyDtoDAsync(fx->va.base + DST,
						fx->va.base + SRC, BLOCK,
						other),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(kvc_fake_launch(other, fx->va.base, 1),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	caller_push(fx);
	assert_int_equal(drv->cuStreamCreate(&s2, 0),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(drv->cuEventCreate(&ev2, 0),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	caller_pop(fx);
	assert_int_equal(
		drv->cuGetErrorName(KVC_CUDA_ERROR_ILLEGAL_ADDRESS, &name), 0);
	assert_string_equal(name, "CUDA_ERROR_ILLEGAL_ADDRESS");

	/* Through the backend: its ops fail, none hangs. */
	assert_true(fx->ops->map(fx->be, &fx->va, GRAN, GRAN, &handle) < 0);
	assert_true(fx->ops->copy(fx->be, &fx->va, &one_copy, 1) < 0);
	assert_true(fx->ops->fence_record(fx->be, &fx->va, &token) < 0);
	assert_true(fx->ops->fence(fx->be, &fx->va) < 0);
	kvc_fake_run();
	assert_int_equal(fake_pending(), 0);

	/* Cleaning up still works (the teardown unmaps and releases). */
	assert_int_equal(drv->cuEventDestroy(ev), 0);
	assert_int_equal(drv->cuEventDestroy(never), 0);
	assert_int_equal(drv->cuStreamDestroy(other), 0);
}

/* Also in sync mode; and kvc_fake_driver() makes a fresh context. */
static void test_sticky_fault_reset(void **state)
{
	const struct kvc_cuda_driver *drv = *state;
	struct kvc_backend *be;
	struct kvc_va va;
	uint64_t handle;
	struct kvc_fake_counts fc;

	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	assert_int_equal(be->ops->reserve(be, 2 * GRAN, &va), 0);
	assert_int_equal(be->ops->map(be, &va, 0, GRAN, &handle), 0);
	/* The fault is not the launch's to report. */
	assert_int_equal(kvc_fake_launch(NULL, va.base + GRAN, 1), 0);
	kvc_fake_counts(&fc);
	assert_int_equal(fc.violations, 1);
	assert_int_equal(drv->cuStreamSynchronize(NULL),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(kvc_fake_launch(NULL, va.base, 1),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(be->ops->unmap(be, &va, 0, GRAN, handle), 0);
	assert_int_equal(be->ops->release(be, &va), 0);
	kvc_backend_close(be);

	/* A reset clears it (and the violation). */
	assert_non_null(kvc_fake_driver(&small_gpu));
	assert_int_equal(drv->cuInit(0), 0);
	assert_int_equal(drv->cuStreamSynchronize(NULL), 0);
	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	assert_int_equal(be->ops->reserve(be, 2 * GRAN, &va), 0);
	assert_int_equal(be->ops->map(be, &va, 0, GRAN, &handle), 0);
	assert_int_equal(kvc_fake_launch(NULL, va.base, 1), 0);
	assert_int_equal(*(uint8_t *)(uintptr_t)va.base, 1);
	assert_int_equal(be->ops->unmap(be, &va, 0, GRAN, handle), 0);
	assert_int_equal(be->ops->release(be, &va), 0);
	kvc_backend_close(be);
}

/*
 * The fake has 64 stream slots, the default stream's included. A
 * destroyed stream's slot is reused once its work is done and seen.
 */
static void test_stream_slots(void **state)
{
	struct fence_fx *fx = *state;
	kvc_cu_stream s[64];
	unsigned int n = 0, i;
	kvc_cu_result r;

	caller_push(fx);
	while ((r = fx->drv->cuStreamCreate(&s[n], 0)) == 0)
		assert_true(++n < 64);
	caller_pop(fx);
	assert_int_equal(r, KVC_CUDA_ERROR_OUT_OF_MEMORY);
	fx->violations++;
	assert_non_null(strstr(kvc_fake_last_violation(), "stream slots"));
	/* Three taken: the default, the backend's and the fixture's. */
	assert_int_equal(n, 61);

	/* Work run but not seen complete keeps a dead stream's slot. */
	kvc_fake_set_async(true);
	kernel_on(fx, s[0], SRC, 1);
	assert_int_equal(kvc_fake_run(), 1);
	for (i = 0; i < n; i++)
		assert_int_equal(fx->drv->cuStreamDestroy(s[i]), 0);
	for (i = 0; i < n - 1; i++)
		s[i] = caller_stream(fx);
	caller_push(fx);
	assert_int_equal(fx->drv->cuStreamCreate(&s[n - 1], 0),
			 KVC_CUDA_ERROR_OUT_OF_MEMORY);
	caller_pop(fx);
	fx->violations++;
	drain();
	s[n - 1] = caller_stream(fx);
	for (i = 0; i < n; i++)
		assert_int_equal(fx->drv->cuStreamDestroy(s[i]), 0);
}

/*
 * Every fence op, once; returns how many failed. Leaves nothing queued
 * and no token alive.
 */
static int fence_scenario(struct fence_fx *fx, kvc_cu_event ev)
{
	const struct kvc_fence mine = { KVC_FENCE_CUDA_STREAM, fx->stream };
	const struct kvc_fence event = { KVC_FENCE_CUDA_EVENT, ev };
	uint64_t token;
	int failures = 0, err;

	assert_int_equal(kvc_fake_launch(fx->stream, fx->va.base + SRC, BLOCK),
			 0);
	if (fx->ops->fence_after(fx->be, &fx->va, &mine)) {
		/* The copy would race with the kernel: wait from the host. */
		failures++;
		assert_int_equal(fx->drv->cuStreamSynchronize(fx->stream), 0);
	}
	failures += fx->ops->fence_after(fx->be, &fx->va, &event) != 0;
	failures += fx->ops->copy(fx->be, &fx->va, &one_copy, 1) != 0;
	err = fx->ops->fence_record(fx->be, &fx->va, &token);
	if (err) {
		failures++;
	} else {
		err = fx->ops->fence_query(fx->be, &fx->va, token);
		if (err != -EBUSY) {
			assert_true(err < 0);
			failures++;
		}
		failures += fx->ops->fence_signal(fx->be, &fx->va, token,
						  &mine) != 0;
		failures += fx->ops->fence_sync(fx->be, &fx->va, token) != 0;
		fx->ops->fence_put(fx->be, &fx->va, token);
	}
	/* A token dropped while pending. */
	err = fx->ops->fence_record(fx->be, &fx->va, &token);
	if (err)
		failures++;
	else
		fx->ops->fence_put(fx->be, &fx->va, token);
	assert_int_equal(fake_events(), 1); /* the caller's */
	kvc_fake_run();
	return failures;
}

/*
 * A failure injected at every driver call the fence ops make: each comes
 * back as -errno from the op, and no event is left. Some are absorbed: a
 * refused cuEventDestroy or cuCtxPopCurrent is retried, fence_put
 * destroys its event even when it cannot push the context, and a refused
 * cuEventQuery that does not mean a dead context leaves the token pending
 * (-EBUSY, what the scenario expects anyway). After a run that failed,
 * the caller waits for the backend's stream, as it would: otherwise a
 * copy whose token was never recorded would race with the next run's
 * kernel, and the fake would say so.
 */
static void test_fence_faults(void **state)
{
	static const kvc_cu_result results[] = {
		KVC_CUDA_ERROR_OUT_OF_MEMORY,
		KVC_CUDA_ERROR_INVALID_VALUE,
	};
	struct fence_fx *fx = *state;
	struct kvc_fake_counts base, fc;
	uint64_t calls[KVC_FAKE_NR_FNS], nth;
	unsigned int fn, r, injected = 0;
	kvc_cu_event ev = caller_event(fx);
	int failures;

	kvc_fake_set_async(true);
	assert_int_equal(fx->drv->cuEventRecord(ev, fx->stream), 0);
	kvc_fake_counts(&base);
	assert_int_equal(fence_scenario(fx, ev), 0);
	kvc_fake_counts(&fc);
	for (fn = 0; fn < KVC_FAKE_NR_FNS; fn++)
		calls[fn] = fc.calls[fn] - base.calls[fn];
	assert_true(calls[KVC_FAKE_EVENT_CREATE] > 0);
	assert_true(calls[KVC_FAKE_EVENT_RECORD] > 0);
	assert_true(calls[KVC_FAKE_EVENT_QUERY] > 0);
	assert_true(calls[KVC_FAKE_EVENT_SYNC] > 0);
	assert_true(calls[KVC_FAKE_EVENT_DESTROY] > 0);
	assert_true(calls[KVC_FAKE_STREAM_WAIT_EVENT] > 0);

	for (fn = 0; fn < KVC_FAKE_NR_FNS; fn++) {
		for (nth = 1; nth <= calls[fn]; nth++) {
			for (r = 0; r < 2; r++) {
				kvc_fake_fail(fn, nth, results[r]);
				failures = fence_scenario(fx, ev);
				kvc_fake_fail(fn, 0, 0);
				kvc_fake_counts(&fc);
				if (!failures && fn != KVC_FAKE_EVENT_DESTROY &&
				    fn != KVC_FAKE_CTX_POP &&
				    fn != KVC_FAKE_CTX_PUSH &&
				    fn != KVC_FAKE_EVENT_QUERY)
					fail_msg(
						"%s #%llu failing: no op failed",
						kvc_fake_fn_name(fn),
						(unsigned long long)nth);
				if (fc.events != 1 || fc.pending || fc.pushed)
					fail_msg(
						"%s #%llu failing: %llu events, %llu pending, %llu pushed left",
						kvc_fake_fn_name(fn),
						(unsigned long long)nth,
						(unsigned long long)fc.events,
						(unsigned long long)fc.pending,
						(unsigned long long)fc.pushed);
				if (fc.violations)
					fail_msg(
						"%s #%llu failing: rule broken: %s",
						kvc_fake_fn_name(fn),
						(unsigned long long)nth,
						kvc_fake_last_violation());
				if (failures)
					assert_int_equal(
						fx->ops->fence(fx->be, &fx->va),
						0);
				injected++;
			}
		}
	}
	assert_int_equal(fx->drv->cuEventDestroy(ev), 0);
	print_message("injected %u failures in fence ops\n", injected);
}

/*
 * The real driver, where there is one: every fence op through the ops
 * struct, on the legacy default stream. Skipped without a GPU.
 */
static void test_fence_real_driver(void **state)
{
	const struct kvc_fence none = { KVC_FENCE_NONE, NULL };
	const struct kvc_fence dflt = { KVC_FENCE_CUDA_STREAM, NULL };
	const struct kvc_backend_ops *ops;
	struct kvc_backend *be;
	struct kvc_va va = { 0 };
	uint64_t handle, token = 0, gran;
	struct kvc_copy c;
	int err;

	err = kvc_backend_open(KVC_BACKEND_CUDA, 0, &be);
	if (err) {
		assert_int_equal(err, -ENODEV);
		skip();
	}
	ops = be->ops;
	gran = kvc_backend_granularity(be);
	c = (struct kvc_copy){ 0, gran / 2, gran / 2 };
	assert_int_equal(ops->reserve(be, 2 * gran, &va), 0);
	assert_int_equal(ops->map(be, &va, 0, gran, &handle), 0);
	assert_int_equal(ops->fence_after(be, &va, &none), 0);
	assert_int_equal(ops->fence_after(be, &va, &dflt), 0);
	assert_int_equal(ops->copy(be, &va, &c, 1), 0);
	assert_int_equal(ops->fence_record(be, &va, &token), 0);
	assert_true(token != 0);
	err = ops->fence_query(be, &va, token);
	assert_true(err == 0 || err == -EBUSY);
	assert_int_equal(ops->fence_signal(be, &va, token, &dflt), 0);
	assert_int_equal(ops->fence_signal(be, &va, token, &none), -EINVAL);
	assert_int_equal(ops->fence_sync(be, &va, token), 0);
	assert_int_equal(ops->fence_query(be, &va, token), 0);
	ops->fence_put(be, &va, token);
	assert_int_equal(ops->fence(be, &va), 0);
	assert_int_equal(ops->unmap(be, &va, 0, gran, handle), 0);
	assert_int_equal(ops->release(be, &va), 0);
	kvc_backend_close(be);
}

/*
 * The real driver, where there is one: the backend's copies (through the
 * copy kernel where the kernels load, block by block otherwise) land, in
 * order, checked from the host; the kernels' entry points are there.
 * Skipped without a GPU.
 */
static void test_copy_real_driver(void **state)
{
	const uint64_t item = 1024;
	const struct kvc_cuda_driver *drv;
	struct kvc_copy copies[300];
	struct kvc_backend *be;
	struct kvc_cuda_ctx c;
	struct kvc_va va = { 0 };
	uint64_t handle, gran, i, calls;
	size_t free_b = 0, total = 0;
	kvc_cu_event a, b;
	uint32_t *host, *want;
	kvc_cu_ptr dev;
	float ms = -1;
	int err, v = 0;

	err = kvc_backend_open(KVC_BACKEND_CUDA, 0, &be);
	if (err) {
		assert_int_equal(err, -ENODEV);
		skip();
	}
	assert_int_equal(kvc_backend_cuda_ctx(be, &c), 0);
	assert_int_equal(kvc_cuda_driver_real(&drv), 0);
	assert_ptr_equal(c.drv, drv);
	print_message("kernels %s\n", c.kernels ? "loaded" : "not loaded");
	gran = kvc_backend_granularity(be);
	assert_true(604 * item <= gran);
	assert_int_equal(be->ops->reserve(be, 2 * gran, &va), 0);
	assert_int_equal(be->ops->map(be, &va, 0, gran, &handle), 0);
	host = malloc(gran);
	want = malloc(gran);
	assert_non_null(host);
	assert_non_null(want);
	for (i = 0; i < gran / 4; i++)
		want[i] = (uint32_t)(i * 2654435761u);

	assert_int_equal(kvc_cuda_ctx_push(&c), 0);
	assert_int_equal(drv->cuDeviceGetAttribute(
				 &v,
				 KVC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
				 c.dev),
			 0);
	assert_true(v > 0);
	assert_int_equal(drv->cuMemGetInfo(&free_b, &total), 0);
	assert_true(free_b > 0 && free_b <= total);
	assert_int_equal(drv->cuMemAlloc(&dev, 4096), 0);
	assert_int_equal(drv->cuMemsetD32Async(dev, 7, 1024, c.stream), 0);
	assert_int_equal(drv->cuEventCreate(&a, 0), 0);
	assert_int_equal(drv->cuEventCreate(&b, 0), 0);
	assert_int_equal(drv->cuEventRecord(a, c.stream), 0);
	assert_int_equal(drv->cuMemcpyHtoDAsync(va.base, want, gran, c.stream),
			 0);
	assert_int_equal(drv->cuStreamSynchronize(c.stream), 0);
	kvc_cuda_ctx_pop(&c);

	/* 300 items: two launches where the kernels load. */
	for (i = 0; i < 300; i++)
		copies[i] =
			(struct kvc_copy){ i * item, (300 + i) * item, item };
	calls = va.calls.copy;
	assert_int_equal(be->ops->copy(be, &va, copies, 300), 0);
	EXPECT_U64(va.calls.copy - calls, 300);
	/* A chain in one call: item 0 -> 600, then 600 -> 601. */
	copies[0] = (struct kvc_copy){ 0, 600 * item, item };
	copies[1] = (struct kvc_copy){ 600 * item, 601 * item, item };
	assert_int_equal(be->ops->copy(be, &va, copies, 2), 0);
	/* Unequal sizes go block by block. */
	copies[0] = (struct kvc_copy){ 0, 602 * item, item };
	copies[1] = (struct kvc_copy){ item, 603 * item, item / 2 };
	assert_int_equal(be->ops->copy(be, &va, copies, 2), 0);
	assert_int_equal(be->ops->fence(be, &va), 0);
	memcpy(want + 300 * item / 4, want, 300 * item);
	memcpy(want + 600 * item / 4, want, item);
	memcpy(want + 601 * item / 4, want, item);
	memcpy(want + 602 * item / 4, want, item);
	memcpy(want + 603 * item / 4, want + item / 4, item / 2);

	assert_int_equal(kvc_cuda_ctx_push(&c), 0);
	assert_int_equal(drv->cuEventRecord(b, c.stream), 0);
	assert_int_equal(drv->cuMemcpyDtoHAsync(host, va.base, gran, c.stream),
			 0);
	assert_int_equal(drv->cuStreamSynchronize(c.stream), 0);
	if (drv->cuEventElapsedTime) {
		assert_int_equal(drv->cuEventElapsedTime(&ms, a, b), 0);
		assert_true(ms >= 0);
	}
	assert_int_equal(drv->cuMemcpyDtoHAsync(host, dev, 16, c.stream), 0);
	assert_int_equal(drv->cuStreamSynchronize(c.stream), 0);
	assert_int_equal(host[3], 7);
	assert_int_equal(drv->cuMemcpyDtoHAsync(host, va.base, gran, c.stream),
			 0);
	assert_int_equal(drv->cuStreamSynchronize(c.stream), 0);
	assert_int_equal(drv->cuEventDestroy(a), 0);
	assert_int_equal(drv->cuEventDestroy(b), 0);
	assert_int_equal(drv->cuMemFree(dev), 0);
	kvc_cuda_ctx_pop(&c);
	for (i = 0; i < gran / 4; i++)
		if (host[i] != want[i])
			fail_msg("word %llu is %#x, expected %#x",
				 (unsigned long long)i, host[i], want[i]);
	free(host);
	free(want);
	assert_int_equal(be->ops->unmap(be, &va, 0, gran, handle), 0);
	assert_int_equal(be->ops->release(be, &va), 0);
	kvc_backend_close(be);
}

/*
 * Kernels and device memory on the fake. The fence fixture lends a
 * context, a stream of the caller's and a mapped chunk.
 */

/* A module of the caller's and its block-copy kernel. */
static kvc_cu_function load_copy(struct fence_fx *fx, kvc_cu_module *m)
{
	kvc_cu_function f;

	caller_push(fx);
	assert_int_equal(fx->drv->cuModuleLoadData(m, "image"), 0);
	assert_int_equal(fx->drv->cuModuleGetFunction(&f, *m, "kvc_block_copy"),
			 0);
	caller_pop(fx);
	return f;
}

static kvc_cu_result launch_dims(struct fence_fx *fx, kvc_cu_function f,
				 kvc_cu_stream s, const unsigned int grid[3],
				 const unsigned int block[3], unsigned int smem,
				 void *args, void **extra)
{
	void *params[1] = { args };
	kvc_cu_result r;

	caller_push(fx);
	r = fx->drv->cuLaunchKernel(f, grid[0], grid[1], grid[2], block[0],
				    block[1], block[2], smem, s,
				    args ? params : NULL, extra);
	caller_pop(fx);
	return r;
}

/* One item of @bytes from chunk offset @src to @dst, by the copy kernel. */
static kvc_cu_result launch_copy(struct fence_fx *fx, kvc_cu_function f,
				 kvc_cu_stream s, uint64_t src, uint64_t dst,
				 uint64_t bytes)
{
	static const unsigned int grid[3] = { 1, 1, 1 };
	static const unsigned int block[3] = { 256, 1, 1 };
	struct kvc_copy_args a;

	memset(&a, 0, sizeof(a));
	a.src_base = fx->va.base;
	a.dst_base = fx->va.base;
	a.bytes = bytes;
	a.n = 1;
	a.pairs[0] = (uint32_t)(src / bytes);
	a.pairs[1] = (uint32_t)(dst / bytes);
	return launch_dims(fx, f, s, grid, block, 0, &a, NULL);
}

static struct kvc_fake_counts counts_now(void)
{
	struct kvc_fake_counts fc;

	kvc_fake_counts(&fc);
	return fc;
}

/* The device's attributes: the defaults, an H100's, and a config's own. */
static void test_fake_attributes(void **state)
{
	static const struct {
		int attrib;
		int want;
	} def[] = {
		{ KVC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 4 },
		{ KVC_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
		  99 << 10 },
		{ KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 9 },
		{ KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0 },
		{ KVC_CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, 2619000 },
		{ KVC_CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, 5120 },
		{ KVC_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, 50 << 20 },
	};
	const struct kvc_fake_config a100 = {
		.granularity = GRAN,
		.devices = 2,
		.sms = 108,
		.smem_optin = 163 << 10,
		.cc_major = 8,
		.cc_minor = 0,
		.mem_clock_khz = 1215000,
		.bus_bits = 5120,
		.l2_bytes = 40 << 20,
	};
	const struct kvc_cuda_driver *drv = *state;
	struct kvc_fake_counts fc;
	size_t i;
	int v;

	assert_int_equal(drv->cuInit(0), 0);
	for (i = 0; i < sizeof(def) / sizeof(def[0]); i++) {
		v = -1;
		assert_int_equal(
			drv->cuDeviceGetAttribute(&v, def[i].attrib, 0), 0);
		assert_int_equal(v, def[i].want);
	}
	assert_int_equal(
		drv->cuDeviceGetAttribute(
			&v, KVC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 1),
		KVC_CUDA_ERROR_INVALID_DEVICE);
	/* One the fake does not model is refused, and said so. */
	assert_int_equal(drv->cuDeviceGetAttribute(&v, 1, 0),
			 KVC_CUDA_ERROR_INVALID_VALUE);
	kvc_fake_counts(&fc);
	assert_int_equal(fc.violations, 1);
	assert_non_null(strstr(kvc_fake_last_violation(), "attribute 1"));

	assert_ptr_equal(kvc_fake_driver(&a100), drv);
	assert_int_equal(drv->cuInit(0), 0);
	assert_int_equal(
		drv->cuDeviceGetAttribute(
			&v, KVC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 1),
		0);
	assert_int_equal(v, 108);
	assert_int_equal(
		drv->cuDeviceGetAttribute(
			&v,
			KVC_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
			0),
		0);
	assert_int_equal(v, 163 << 10);
	assert_int_equal(
		drv->cuDeviceGetAttribute(
			&v, KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
			0),
		0);
	assert_int_equal(v, 8);
	assert_int_equal(drv->cuDeviceGetAttribute(
				 &v, KVC_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, 0),
			 0);
	assert_int_equal(v, 40 << 20);
}

/*
 * Modules: loaded with a context current, a kernel found by name (the
 * same function each time), an unknown one not found (not a broken
 * rule), functions dying with their module, and a module left loaded
 * stopping the next reset.
 */
static void test_fake_modules(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_cuda_driver *drv = fx->drv;
	kvc_cu_function f, g, h;
	kvc_cu_module m, m2;
	const char *name;
	uint64_t base;

	base = counts_now().modules; /* the backend's */
	assert_true(base > 0);
	assert_int_equal(drv->cuModuleLoadData(&m, "image"),
			 KVC_CUDA_ERROR_INVALID_CONTEXT);
	fx->violations++;
	caller_push(fx);
	assert_int_equal(drv->cuModuleLoadData(&m, NULL),
			 KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations++;
	assert_int_equal(drv->cuModuleLoadData(&m, "image"), 0);
	assert_int_equal(drv->cuModuleLoadData(&m2, "image"), 0);
	caller_pop(fx);
	assert_int_equal(counts_now().modules, base + 2);

	assert_int_equal(drv->cuModuleGetFunction(&f, m, "kvc_block_copy"), 0);
	assert_int_equal(drv->cuModuleGetFunction(&g, m, "kvc_block_copy"), 0);
	assert_ptr_equal(f, g);
	assert_int_equal(drv->cuModuleGetFunction(&h, m2, "kvc_block_copy"), 0);
	assert_ptr_not_equal(f, h);
	assert_int_equal(drv->cuModuleGetFunction(&g, m, "kvc_no_such_kernel"),
			 500);
	assert_int_equal(drv->cuGetErrorName(500, &name), 0);
	assert_string_equal(name, "CUDA_ERROR_NOT_FOUND");
	assert_int_equal(drv->cuModuleGetFunction(&g, m, "kvc_cache_write"), 0);
	assert_int_equal(drv->cuModuleGetFunction(&g, m, "kvc_move_cache"), 0);

	/* Unloaded: the module and its functions are dead handles. */
	assert_int_equal(drv->cuModuleUnload(m), 0);
	assert_int_equal(drv->cuModuleUnload(m), KVC_CUDA_ERROR_INVALID_HANDLE);
	assert_int_equal(drv->cuModuleGetFunction(&g, m, "kvc_block_copy"),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	assert_int_equal(
		drv->cuFuncSetAttribute(
			f, KVC_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
			0),
		KVC_CUDA_ERROR_INVALID_HANDLE);
	assert_int_equal(
		drv->cuFuncSetAttribute(
			h, KVC_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
			0),
		0);
	fx->violations += 3;
	/* A function handle is no module handle. */
	assert_int_equal(drv->cuModuleUnload((kvc_cu_module)h),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	fx->violations++;
	assert_null(kvc_fake_driver(&small_gpu)); /* m2 still loaded */
	assert_int_equal(drv->cuModuleUnload(m2), 0);
	assert_int_equal(counts_now().modules, base);
}

/* A config without kernels: nothing is found, the backend copies alone. */
static void test_fake_no_kernels(void **state)
{
	const struct kvc_fake_config cfg = { .granularity = GRAN,
					     .devices = 1,
					     .no_kernels = true };
	const struct kvc_cuda_driver *drv = kvc_fake_driver(&cfg);
	const struct kvc_copy c = { 0, BLOCK, BLOCK };
	struct kvc_fake_counts before, after;
	struct kvc_cuda_ctx ctx;
	struct kvc_backend *be;
	struct kvc_va va;
	uint64_t handle;

	assert_non_null(drv);
	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	assert_int_equal(kvc_backend_cuda_ctx(be, &ctx), 0);
	assert_null(ctx.kernels);
	assert_int_equal(counts_now().modules, 0);
	assert_int_equal(be->ops->reserve(be, GRAN, &va), 0);
	assert_int_equal(be->ops->map(be, &va, 0, GRAN, &handle), 0);
	kvc_fake_counts(&before);
	assert_int_equal(be->ops->copy(be, &va, &c, 1), 0);
	kvc_fake_counts(&after);
	EXPECT_U64(after.calls[KVC_FAKE_MEMCPY] - before.calls[KVC_FAKE_MEMCPY],
		   1);
	EXPECT_U64(after.launches, before.launches);
	assert_int_equal(be->ops->unmap(be, &va, 0, GRAN, handle), 0);
	assert_int_equal(be->ops->release(be, &va), 0);
	kvc_backend_close(be);
}

/*
 * Launches that break the rules are refused, each a violation: empty or
 * too large grids and blocks, shared memory beyond 48 KiB without the
 * kernel opting in (and beyond what the device allows even then), a
 * missing argument struct, extra parameters, no context, dead handles.
 */
static void test_fake_launch_checks(void **state)
{
	static const struct {
		unsigned int grid[3];
		unsigned int block[3];
		unsigned int smem;
	} bad[] = {
		{ { 0, 1, 1 }, { 256, 1, 1 }, 0 },
		{ { 1, 0, 1 }, { 256, 1, 1 }, 0 },
		{ { 1, 1, 0 }, { 256, 1, 1 }, 0 },
		{ { 1, 65536, 1 }, { 256, 1, 1 }, 0 },
		{ { 1, 1, 65536 }, { 256, 1, 1 }, 0 },
		{ { 1, 1, 1 }, { 0, 1, 1 }, 0 },
		{ { 1, 1, 1 }, { 1025, 1, 1 }, 0 },
		{ { 1, 1, 1 }, { 32, 32, 2 }, 0 },
		{ { 1, 1, 1 }, { 1, 1, 65 }, 0 },
		{ { 1, 1, 1 }, { 256, 1, 1 }, (48 << 10) + 4 },
	};
	static const unsigned int grid[3] = { 1, 1, 1 };
	static const unsigned int block[3] = { 256, 1, 1 };
	struct fence_fx *fx = *state;
	const struct kvc_cuda_driver *drv = fx->drv;
	struct kvc_copy_args a;
	kvc_cu_module m;
	kvc_cu_function f = load_copy(fx, &m);
	void *extra[1] = { NULL };
	void *params[1] = { &a };
	uint64_t launches = kvc_fake_launches("kvc_block_copy");
	size_t i;

	memset(&a, 0, sizeof(a));
	a.src_base = a.dst_base = fx->va.base;
	a.bytes = BLOCK;
	a.n = 1;
	a.pairs[1] = 1;
	memset(fx->mem, 3, BLOCK);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(launch_dims(fx, f, fx->stream, bad[i].grid,
					     bad[i].block, bad[i].smem, &a,
					     NULL),
				 KVC_CUDA_ERROR_INVALID_VALUE);
		fx->violations++;
	}
	assert_non_null(strstr(kvc_fake_last_violation(), "shared memory"));
	assert_int_equal(
		launch_dims(fx, f, fx->stream, grid, block, 0, NULL, NULL),
		KVC_CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(
		launch_dims(fx, f, fx->stream, grid, block, 0, &a, extra),
		KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations += 2;
	/* No context current. */
	assert_int_equal(drv->cuLaunchKernel(f, 1, 1, 1, 256, 1, 1, 0,
					     fx->stream, params, NULL),
			 KVC_CUDA_ERROR_INVALID_CONTEXT);
	assert_int_equal(launch_dims(fx, (kvc_cu_function)fx->stream,
				     fx->stream, grid, block, 0, &a, NULL),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	assert_int_equal(
		launch_dims(fx, f, (kvc_cu_stream)f, grid, block, 0, &a, NULL),
		KVC_CUDA_ERROR_INVALID_HANDLE);
	fx->violations += 3;
	EXPECT_U64(kvc_fake_launches("kvc_block_copy"), launches);
	assert_bytes(fx, BLOCK, BLOCK, 0);

	/* Opting in: up to the device's limit, and only that far. */
	assert_int_equal(
		drv->cuFuncSetAttribute(
			f, KVC_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
			(99 << 10) + 1),
		KVC_CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(drv->cuFuncSetAttribute(f, 0, 1024),
			 KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations += 2;
	assert_int_equal(
		drv->cuFuncSetAttribute(
			f, KVC_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
			64 << 10),
		0);
	assert_int_equal(launch_dims(fx, f, fx->stream, grid, block,
				     (64 << 10) + 4, &a, NULL),
			 KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations++;
	assert_int_equal(
		launch_dims(fx, f, fx->stream, grid, block, 64 << 10, &a, NULL),
		0);
	/* Sync mode: it ran, and it was counted. */
	assert_bytes(fx, BLOCK, BLOCK, 3);
	EXPECT_U64(kvc_fake_launches("kvc_block_copy"), launches + 1);
	EXPECT_U64(kvc_fake_launches("kvc_cache_write"), 0);
	assert_true(kvc_fake_launches(NULL) >= launches + 1);

	/* Dead once its module is unloaded. */
	assert_int_equal(drv->cuModuleUnload(m), 0);
	assert_int_equal(
		launch_dims(fx, f, fx->stream, grid, block, 0, &a, NULL),
		KVC_CUDA_ERROR_INVALID_HANDLE);
	fx->violations++;
}

/*
 * A launch is queued on its stream like a copy: in async mode it runs
 * after the memcpy queued before it on the stream, and only when the
 * stream runs; its arguments are the ones at the call; its items are
 * race-checked against other streams' work.
 */
static void test_fake_launch_order(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_cuda_driver *drv = fx->drv;
	kvc_cu_stream other = caller_stream(fx);
	kvc_cu_module m;
	kvc_cu_function f = load_copy(fx, &m);
	static const unsigned int grid[3] = { 1, 1, 1 };
	static const unsigned int block[3] = { 256, 1, 1 };
	struct kvc_copy_args a;

	kvc_fake_set_async(true);
	memset(fx->mem + SRC, 6, BLOCK);
	copy_on(fx, fx->stream, DST, SRC, BLOCK);
	assert_int_equal(launch_copy(fx, f, fx->stream, DST, 2 * BLOCK, BLOCK),
			 0);
	expect_race(fx, false, "");
	assert_int_equal(fake_pending(), 2);
	assert_bytes(fx, DST, 2 * BLOCK, 0);
	assert_int_equal(drv->cuStreamSynchronize(fx->stream), 0);
	assert_bytes(fx, 2 * BLOCK, BLOCK, 6);
	assert_int_equal(fake_pending(), 0);

	/* The arguments are taken at the call: changing them after is moot. */
	memset(&a, 0, sizeof(a));
	a.src_base = a.dst_base = fx->va.base;
	a.bytes = BLOCK;
	a.n = 1;
	a.pairs[0] = 2;
	a.pairs[1] = 3;
	assert_int_equal(
		launch_dims(fx, f, fx->stream, grid, block, 0, &a, NULL), 0);
	a.pairs[1] = 4;
	assert_int_equal(kvc_fake_run(), 1);
	assert_bytes(fx, 3 * BLOCK, BLOCK, 6);
	assert_bytes(fx, 4 * BLOCK, BLOCK, 0);
	drain();

	/* Unordered with a copy on another stream: its items race. */
	copy_on(fx, fx->stream, DST, SRC, BLOCK);
	assert_int_equal(launch_copy(fx, f, other, DST, 5 * BLOCK, BLOCK), 0);
	expect_race(fx, true, "unordered: copy on stream");
	assert_non_null(strstr(kvc_fake_last_violation(),
			       "kernel kvc_block_copy on stream"));
	drain();
	/* Items elsewhere do not. */
	copy_on(fx, fx->stream, DST, SRC, BLOCK);
	assert_int_equal(launch_copy(fx, f, other, 6 * BLOCK, 7 * BLOCK, BLOCK),
			 0);
	expect_race(fx, false, "");
	drain();

	/* cuMemUnmap under a queued launch's items is refused. */
	assert_int_equal(launch_copy(fx, f, other, SRC, DST, BLOCK), 0);
	assert_int_equal(drv->cuMemUnmap(fx->va.base, GRAN),
			 KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations++;
	drain();
	assert_int_equal(drv->cuModuleUnload(m), 0);
	assert_int_equal(drv->cuStreamDestroy(other), 0);
}

/*
 * An emulation that refuses its arguments fails the launch as a device
 * would: a violation, and the context broken with
 * CUDA_ERROR_LAUNCH_FAILED; cleaning up still works.
 */
static void test_fake_launch_fails(void **state)
{
	static const unsigned int grid[3] = { 1, 1, 1 };
	static const unsigned int block[3] = { 128, 1, 1 };
	struct fence_fx *fx = *state;
	const struct kvc_cuda_driver *drv = fx->drv;
	struct kvc_copy_args a;
	kvc_cu_module m;
	kvc_cu_function f = load_copy(fx, &m);
	kvc_cu_ptr p;

	memset(&a, 0, sizeof(a));
	a.src_base = a.dst_base = fx->va.base;
	a.bytes = BLOCK;
	a.n = 1;
	a.pairs[1] = 1;
	/* The copy kernel runs 256 threads a CTA: 128 is refused. */
	assert_int_equal(
		launch_dims(fx, f, fx->stream, grid, block, 0, &a, NULL), 0);
	fx->violations++;
	assert_non_null(strstr(kvc_fake_last_violation(), "refused"));
	assert_int_equal(drv->cuStreamSynchronize(fx->stream),
			 KVC_CUDA_ERROR_LAUNCH_FAILED);
	assert_int_equal(launch_copy(fx, f, fx->stream, 0, BLOCK, BLOCK),
			 KVC_CUDA_ERROR_LAUNCH_FAILED);
	caller_push(fx);
	assert_int_equal(drv->cuMemAlloc(&p, 64), KVC_CUDA_ERROR_LAUNCH_FAILED);
	caller_pop(fx);
	/* Through the backend too. */
	assert_true(fx->ops->copy(fx->be, &fx->va, &one_copy, 1) < 0);
	assert_true(fx->ops->fence(fx->be, &fx->va) < 0);
	assert_int_equal(drv->cuModuleUnload(m), 0);
}

/*
 * Pairs in device memory: the launch reads them when it runs. A kernel
 * whose argument points into no allocation when it runs faults
 * (CUDA_ERROR_ILLEGAL_ADDRESS), and its emulation is not run.
 */
static void test_fake_launch_pairs_dev(void **state)
{
	static const unsigned int grid[3] = { 1, 1, 1 };
	static const unsigned int block[3] = { 256, 1, 1 };
	static const uint32_t pairs[4] = { 0, 2, 1, 3 };
	struct fence_fx *fx = *state;
	const struct kvc_cuda_driver *drv = fx->drv;
	struct kvc_copy_args a;
	kvc_cu_module m;
	kvc_cu_function f = load_copy(fx, &m);
	kvc_cu_ptr dev;

	caller_push(fx);
	assert_int_equal(drv->cuMemAlloc(&dev, sizeof(pairs)), 0);
	caller_pop(fx);
	memset(fx->mem, 1, BLOCK);
	memset(fx->mem + BLOCK, 2, BLOCK);
	kvc_fake_set_async(true);
	assert_int_equal(
		drv->cuMemcpyHtoDAsync(dev, pairs, sizeof(pairs), fx->stream),
		0);
	memset(&a, 0, sizeof(a));
	a.src_base = a.dst_base = fx->va.base;
	a.bytes = BLOCK;
	a.n = 2;
	a.pairs_dev = dev;
	assert_int_equal(
		launch_dims(fx, f, fx->stream, grid, block, 0, &a, NULL), 0);
	/* Its pairs are in use: they cannot be freed under it. */
	assert_int_equal(drv->cuMemFree(dev), KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations++;
	assert_int_equal(drv->cuStreamSynchronize(fx->stream), 0);
	assert_bytes(fx, 2 * BLOCK, BLOCK, 1);
	assert_bytes(fx, 3 * BLOCK, BLOCK, 2);
	expect_race(fx, false, "");

	/* The destination is nowhere by the time it runs. */
	a.dst_base = fx->va.base + 4 * GRAN;
	assert_int_equal(
		launch_dims(fx, f, fx->stream, grid, block, 0, &a, NULL), 0);
	assert_int_equal(kvc_fake_run(), 1);
	fx->violations++;
	assert_non_null(strstr(kvc_fake_last_violation(), "no allocation"));
	assert_int_equal(drv->cuStreamSynchronize(fx->stream),
			 KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
	assert_int_equal(drv->cuMemFree(dev), 0);
	assert_int_equal(drv->cuModuleUnload(m), 0);
}

/*
 * cuMemAlloc and cuMemAllocHost: a context needed, aligned, not cleared,
 * counted, freed once; a free of anything else is a violation, of 0 a
 * no-op; memory that queued work uses cannot be freed.
 */
static void test_fake_mem_alloc(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_cuda_driver *drv = fx->drv;
	struct kvc_fake_counts fc;
	kvc_cu_ptr p, q;
	void *h;

	assert_int_equal(drv->cuMemAlloc(&p, 100),
			 KVC_CUDA_ERROR_INVALID_CONTEXT);
	assert_int_equal(drv->cuMemAllocHost(&h, 100),
			 KVC_CUDA_ERROR_INVALID_CONTEXT);
	fx->violations += 2;
	caller_push(fx);
	assert_int_equal(drv->cuMemAlloc(&p, 0), KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations++;
	assert_int_equal(drv->cuMemAlloc(&p, 100), 0);
	assert_int_equal(drv->cuMemAlloc(&q, 1000), 0);
	assert_int_equal(drv->cuMemAllocHost(&h, 10), 0);
	caller_pop(fx);
	assert_int_equal(p % 256, 0);
	assert_int_equal(q % 256, 0);
	assert_int_equal(*(uint8_t *)(uintptr_t)p, 0xff);
	kvc_fake_counts(&fc);
	EXPECT_U64(fc.allocs, 2);
	EXPECT_U64(fc.alloc_bytes, 256 + 1024);
	EXPECT_U64(fc.host_allocs, 1);

	/* Device memory for copies, both ways. */
	memset(fx->mem + SRC, 8, BLOCK);
	assert_int_equal(
		drv->cuMemcpyDtoDAsync(q, fx->va.base + SRC, 1000, fx->stream),
		0);
	assert_int_equal(
		drv->cuMemcpyDtoDAsync(fx->va.base + DST, q, 1000, fx->stream),
		0);
	assert_bytes(fx, DST, 1000, 8);
	/* ...but no further than it goes. */
	assert_int_equal(
		drv->cuMemcpyDtoDAsync(q, fx->va.base, 1001, fx->stream),
		KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations++;

	/* Queued work uses it: not freed. */
	kvc_fake_set_async(true);
	assert_int_equal(drv->cuMemsetD32Async(q, 1, 4, fx->stream), 0);
	assert_int_equal(drv->cuMemFree(q), KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations++;
	assert_non_null(strstr(kvc_fake_last_violation(), "queued"));
	assert_int_equal(drv->cuStreamSynchronize(fx->stream), 0);

	assert_int_equal(drv->cuMemFree(0), 0);
	assert_int_equal(drv->cuMemFree(p + 4), KVC_CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(drv->cuMemFree((kvc_cu_ptr)(uintptr_t)h),
			 KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations += 2;
	assert_int_equal(drv->cuMemFree(p), 0);
	assert_int_equal(drv->cuMemFree(p), KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations++;
	assert_int_equal(drv->cuMemFree(q), 0);
	assert_int_equal(drv->cuMemFreeHost(NULL), 0);
	assert_int_equal(drv->cuMemFreeHost((uint8_t *)h + 1),
			 KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations++;
	assert_int_equal(drv->cuMemFreeHost(h), 0);
	kvc_fake_counts(&fc);
	EXPECT_U64(fc.allocs, 0);
	EXPECT_U64(fc.alloc_bytes, 0);
	EXPECT_U64(fc.host_allocs, 0);
}

/* Device or pinned memory left allocated stops the next reset. */
static void test_fake_alloc_leaks(void **state)
{
	const struct kvc_cuda_driver *drv = *state;
	kvc_cu_context ctx;
	kvc_cu_ptr p;
	void *h;

	assert_int_equal(drv->cuInit(0), 0);
	assert_int_equal(drv->cuDevicePrimaryCtxRetain(&ctx, 0), 0);
	assert_int_equal(drv->cuCtxPushCurrent(ctx), 0);
	assert_int_equal(drv->cuMemAlloc(&p, 4096), 0);
	assert_int_equal(drv->cuMemAllocHost(&h, 4096), 0);
	assert_int_equal(drv->cuCtxPopCurrent(&ctx), 0);
	assert_int_equal(drv->cuDevicePrimaryCtxRelease(0), 0);
	assert_null(kvc_fake_driver(&small_gpu));
	assert_int_equal(drv->cuMemFree(p), 0);
	assert_null(kvc_fake_driver(&small_gpu));
	assert_int_equal(drv->cuMemFreeHost(h), 0);
	assert_non_null(kvc_fake_driver(&small_gpu));
}

/*
 * Host to device and back, in stream order. A pageable source is copied
 * at the call, a pinned one when the copy runs; the host side is written
 * when the copy runs. cuMemsetD32Async writes words, 4-byte aligned.
 */
static void test_fake_host_copies(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_cuda_driver *drv = fx->drv;
	uint8_t page[256], back[256];
	uint32_t words[4];
	uint8_t *pinned;
	kvc_cu_ptr dev;
	void *h;
	int i;

	caller_push(fx);
	assert_int_equal(drv->cuMemAlloc(&dev, sizeof(page)), 0);
	assert_int_equal(drv->cuMemAllocHost(&h, sizeof(page)), 0);
	caller_pop(fx);
	pinned = h;
	for (i = 0; i < (int)sizeof(page); i++)
		page[i] = (uint8_t)i;
	memset(pinned, 0x11, sizeof(page));
	memset(back, 0, sizeof(back));

	kvc_fake_set_async(true);
	/* Pageable: staged now, so the caller may change it at once. */
	assert_int_equal(
		drv->cuMemcpyHtoDAsync(dev, page, sizeof(page), fx->stream), 0);
	memset(page, 0xee, sizeof(page));
	assert_int_equal(
		drv->cuMemcpyDtoHAsync(back, dev, sizeof(back), fx->stream), 0);
	assert_int_equal(back[5], 0); /* not yet run */
	assert_int_equal(drv->cuStreamSynchronize(fx->stream), 0);
	for (i = 0; i < (int)sizeof(back); i++)
		assert_int_equal(back[i], (uint8_t)i);
	/* Into the mapped chunk and out of it. */
	assert_int_equal(drv->cuMemcpyHtoDAsync(fx->va.base + DST, back,
						sizeof(back), fx->stream),
			 0);
	assert_int_equal(drv->cuStreamSynchronize(fx->stream), 0);
	assert_int_equal(fx->mem[DST + 7], 7);

	/* Pinned: read when the copy runs, written when it runs. */
	assert_int_equal(drv->cuMemcpyHtoDAsync(dev, pinned, 16, fx->stream),
			 0);
	memset(pinned, 0x22, 16);
	assert_int_equal(
		drv->cuMemcpyDtoHAsync(pinned + 128, dev, 16, fx->stream), 0);
	assert_int_equal(pinned[128], 0x11);
	assert_int_equal(drv->cuStreamSynchronize(fx->stream), 0);
	assert_int_equal(pinned[128], 0x22);
	/* A pinned block is device-visible: the race checks see it. */
	kernel_on(fx, fx->stream, SRC, 1);
	assert_int_equal(drv->cuMemcpyDtoHAsync(pinned, dev, 16, NULL), 0);
	assert_int_equal(
		drv->cuMemcpyDtoHAsync(pinned + 8, dev, 16, fx->stream), 0);
	expect_race(fx, true, "unordered: device-to-host copy on");
	drain();

	/* Words. */
	assert_int_equal(drv->cuMemsetD32Async(dev, 0xdeadbeef, 4, fx->stream),
			 0);
	assert_int_equal(
		drv->cuMemcpyDtoHAsync(words, dev, sizeof(words), fx->stream),
		0);
	assert_int_equal(drv->cuStreamSynchronize(fx->stream), 0);
	for (i = 0; i < 4; i++)
		assert_int_equal(words[i], 0xdeadbeef);
	assert_int_equal(drv->cuMemsetD32Async(dev + 2, 0, 1, fx->stream),
			 KVC_CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(drv->cuMemsetD32Async(dev, 0, 65, fx->stream),
			 KVC_CUDA_ERROR_INVALID_VALUE);
	/* Beyond the pinned block, or device memory that is not. */
	assert_int_equal(
		drv->cuMemcpyHtoDAsync(dev, pinned + 200, 100, fx->stream),
		KVC_CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(drv->cuMemcpyDtoHAsync(back, fx->va.base + GRAN, 16,
						fx->stream),
			 KVC_CUDA_ERROR_INVALID_VALUE);
	fx->violations += 4;
	assert_int_equal(
		drv->cuMemcpyHtoDAsync(dev, page, 16, (kvc_cu_stream)h),
		KVC_CUDA_ERROR_INVALID_HANDLE);
	fx->violations++;
	assert_int_equal(fake_pending(), 0);
	assert_int_equal(drv->cuMemFree(dev), 0);
	assert_int_equal(drv->cuMemFreeHost(h), 0);
}

/*
 * cuMemGetInfo: the configured memory (80 GiB by default) less what
 * cuMemCreate and cuMemAlloc hold; beyond it both fail.
 */
static void test_fake_mem_info(void **state)
{
	const struct kvc_fake_config cfg = { .granularity = GRAN,
					     .devices = 1,
					     .memory_bytes = 4 * GRAN };
	const struct kvc_cuda_driver *drv = *state;
	struct kvc_backend *be;
	kvc_cu_context ctx;
	size_t free_b, total;
	uint64_t h1, h2, h3;
	kvc_cu_ptr p, q;
	struct kvc_va va;

	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	assert_int_equal(drv->cuDevicePrimaryCtxRetain(&ctx, 0), 0);
	assert_int_equal(drv->cuMemGetInfo(&free_b, &total),
			 KVC_CUDA_ERROR_INVALID_CONTEXT);
	assert_int_equal(counts_now().violations, 1);
	assert_int_equal(drv->cuCtxPushCurrent(ctx), 0);
	assert_int_equal(drv->cuMemGetInfo(&free_b, &total), 0);
	EXPECT_U64(total, 80ull << 30);
	EXPECT_U64(free_b, total);
	assert_int_equal(drv->cuCtxPopCurrent(&ctx), 0);
	assert_int_equal(drv->cuDevicePrimaryCtxRelease(0), 0);
	kvc_backend_close(be);
	assert_ptr_equal(kvc_fake_driver(&cfg), drv);

	assert_int_equal(kvc_backend_open_cuda_driver(drv, 0, &be), 0);
	assert_int_equal(be->ops->reserve(be, 4 * GRAN, &va), 0);
	assert_int_equal(be->ops->map(be, &va, 0, GRAN, &h1), 0);
	assert_int_equal(be->ops->map(be, &va, GRAN, GRAN, &h2), 0);
	assert_int_equal(drv->cuDevicePrimaryCtxRetain(&ctx, 0), 0);
	assert_int_equal(drv->cuCtxPushCurrent(ctx), 0);
	assert_int_equal(drv->cuMemGetInfo(&free_b, &total), 0);
	EXPECT_U64(total, 4 * GRAN);
	EXPECT_U64(free_b, 2 * GRAN);
	assert_int_equal(drv->cuMemAlloc(&p, GRAN - 100), 0);
	assert_int_equal(drv->cuMemGetInfo(&free_b, &total), 0);
	EXPECT_U64(free_b, GRAN);
	assert_int_equal(drv->cuMemAlloc(&q, GRAN + 1),
			 KVC_CUDA_ERROR_OUT_OF_MEMORY);
	assert_int_equal(drv->cuMemAlloc(&q, GRAN), 0);
	assert_int_equal(drv->cuMemGetInfo(&free_b, &total), 0);
	EXPECT_U64(free_b, 0);
	/* Device memory is one budget: no chunk fits now. */
	assert_int_equal(be->ops->map(be, &va, 2 * GRAN, GRAN, &h3), -ENOMEM);
	assert_int_equal(drv->cuMemFree(q), 0);
	assert_int_equal(be->ops->map(be, &va, 2 * GRAN, GRAN, &h3), 0);
	assert_int_equal(drv->cuMemGetInfo(&free_b, &total), 0);
	EXPECT_U64(free_b, 0);
	assert_int_equal(drv->cuMemFree(p), 0);
	assert_int_equal(drv->cuCtxPopCurrent(&ctx), 0);
	assert_int_equal(drv->cuDevicePrimaryCtxRelease(0), 0);
	assert_int_equal(be->ops->unmap(be, &va, 0, GRAN, h1), 0);
	assert_int_equal(be->ops->unmap(be, &va, GRAN, GRAN, h2), 0);
	assert_int_equal(be->ops->unmap(be, &va, 2 * GRAN, GRAN, h3), 0);
	assert_int_equal(be->ops->release(be, &va), 0);
	kvc_backend_close(be);
	/* The teardown wants none but the violation made on purpose. */
	assert_ptr_equal(kvc_fake_driver(&small_gpu), drv);
}

/*
 * cuEventElapsedTime: both events recorded, with timing, and complete.
 * The time is fake: a microsecond for each operation the fake ran.
 */
static void test_fake_elapsed(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_cuda_driver *drv = fx->drv;
	kvc_cu_event a = caller_event(fx), b = caller_event(fx), untimed;
	float ms = -1;

	caller_push(fx);
	assert_int_equal(
		drv->cuEventCreate(&untimed, KVC_CU_EVENT_DISABLE_TIMING), 0);
	caller_pop(fx);
	assert_int_equal(drv->cuEventElapsedTime(&ms, a, b),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	fx->violations++;
	kvc_fake_set_async(true);
	assert_int_equal(drv->cuEventRecord(a, fx->stream), 0);
	kernel_on(fx, fx->stream, SRC, 1);
	kernel_on(fx, fx->stream, SRC, 1);
	kernel_on(fx, fx->stream, SRC, 1);
	assert_int_equal(drv->cuEventRecord(b, fx->stream), 0);
	assert_int_equal(drv->cuEventElapsedTime(&ms, a, b),
			 KVC_CUDA_ERROR_NOT_READY);
	assert_int_equal(drv->cuStreamSynchronize(fx->stream), 0);
	assert_int_equal(drv->cuEventElapsedTime(&ms, a, b), 0);
	/* Three kernels and b's record ran after a's record. */
	assert_float_equal(ms, 0.004f, 1e-6f);
	assert_int_equal(drv->cuEventElapsedTime(&ms, b, a), 0);
	assert_float_equal(ms, -0.004f, 1e-6f);
	assert_int_equal(drv->cuEventRecord(untimed, fx->stream), 0);
	assert_int_equal(drv->cuStreamSynchronize(fx->stream), 0);
	assert_int_equal(drv->cuEventElapsedTime(&ms, a, untimed),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	fx->violations++;
	assert_int_equal(drv->cuEventDestroy(a), 0);
	assert_int_equal(drv->cuEventElapsedTime(&ms, a, b),
			 KVC_CUDA_ERROR_INVALID_HANDLE);
	fx->violations++;
	assert_int_equal(drv->cuEventDestroy(b), 0);
	assert_int_equal(drv->cuEventDestroy(untimed), 0);
}

/*
 * Each new entry point once, the way a caller would; whatever fails is
 * skipped and what was made is undone. Returns how many calls failed.
 */
static int kernel_scenario(struct fence_fx *fx)
{
	const struct kvc_cuda_driver *drv = fx->drv;
	kvc_cu_event a = caller_event(fx), b = caller_event(fx);
	static const unsigned int grid[3] = { 1, 1, 1 };
	static const unsigned int block[3] = { 256, 1, 1 };
	kvc_cu_function f = NULL;
	kvc_cu_module m = NULL;
	struct kvc_copy_args args;
	uint8_t back[64];
	size_t fr, tot;
	kvc_cu_ptr dev = 0;
	void *host = NULL;
	int failures = 0, v;
	float ms;

	caller_push(fx);
	failures += drv->cuDeviceGetAttribute(
			    &v, KVC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
			    0) != 0;
	if (drv->cuModuleLoadData(&m, "image")) {
		failures++;
		m = NULL;
	}
	if (m && drv->cuModuleGetFunction(&f, m, "kvc_block_copy")) {
		failures++;
		f = NULL;
	}
	if (f)
		failures +=
			drv->cuFuncSetAttribute(
				f,
				KVC_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
				64 << 10) != 0;
	if (drv->cuMemAlloc(&dev, 4096)) {
		failures++;
		dev = 0;
	}
	if (drv->cuMemAllocHost(&host, 4096)) {
		failures++;
		host = NULL;
	}
	failures += drv->cuMemGetInfo(&fr, &tot) != 0;
	caller_pop(fx);
	failures += drv->cuEventRecord(a, fx->stream) != 0;
	if (dev) {
		failures +=
			drv->cuMemsetD32Async(dev, 7, 1024, fx->stream) != 0;
		if (host)
			failures += drv->cuMemcpyHtoDAsync(dev, host, 64,
							   fx->stream) != 0;
		if (f) {
			memset(&args, 0, sizeof(args));
			args.src_base = args.dst_base = dev;
			args.bytes = 64;
			args.n = 1;
			args.pairs[1] = 1;
			failures += launch_dims(fx, f, fx->stream, grid, block,
						0, &args, NULL) != 0;
		}
		failures += drv->cuMemcpyDtoHAsync(back, dev + 64, 64,
						   fx->stream) != 0;
	}
	failures += drv->cuEventRecord(b, fx->stream) != 0;
	assert_int_equal(drv->cuStreamSynchronize(fx->stream), 0);
	failures += drv->cuEventElapsedTime(&ms, a, b) != 0;
	/* A refused free or unload is retried: nothing may stay. */
	if (drv->cuMemFree(dev)) {
		failures++;
		assert_int_equal(drv->cuMemFree(dev), 0);
	}
	if (drv->cuMemFreeHost(host)) {
		failures++;
		assert_int_equal(drv->cuMemFreeHost(host), 0);
	}
	if (m && drv->cuModuleUnload(m)) {
		failures++;
		assert_int_equal(drv->cuModuleUnload(m), 0);
	}
	assert_int_equal(drv->cuEventDestroy(a), 0);
	assert_int_equal(drv->cuEventDestroy(b), 0);
	return failures;
}

/*
 * Each of the new entry points failing at its first call in the
 * scenario: the call reports the injected error, and nothing stays
 * allocated, loaded or queued, and no rule is broken after it.
 */
static void test_fake_new_faults(void **state)
{
	static const enum kvc_fake_fn fns[] = {
		KVC_FAKE_DEVICE_ATTRIBUTE,   KVC_FAKE_MODULE_LOAD,
		KVC_FAKE_MODULE_UNLOAD,	     KVC_FAKE_MODULE_GET_FUNCTION,
		KVC_FAKE_FUNC_SET_ATTRIBUTE, KVC_FAKE_LAUNCH_KERNEL,
		KVC_FAKE_MEM_ALLOC,	     KVC_FAKE_MEM_FREE,
		KVC_FAKE_MEM_ALLOC_HOST,     KVC_FAKE_MEM_FREE_HOST,
		KVC_FAKE_MEMCPY_HTOD,	     KVC_FAKE_MEMCPY_DTOH,
		KVC_FAKE_MEMSET_D32,	     KVC_FAKE_MEM_GET_INFO,
		KVC_FAKE_EVENT_ELAPSED,
	};
	static const kvc_cu_result results[] = {
		KVC_CUDA_ERROR_OUT_OF_MEMORY,
		KVC_CUDA_ERROR_INVALID_VALUE,
	};
	struct fence_fx *fx = *state;
	struct kvc_fake_counts base = counts_now(), fc;
	unsigned int i, e, async;
	int failures;

	for (async = 0; async < 2; async++) {
		kvc_fake_set_async(async);
		assert_int_equal(kernel_scenario(fx), 0);
		for (i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
			for (e = 0; e < 2; e++) {
				kvc_fake_fail(fns[i], 1, results[e]);
				failures = kernel_scenario(fx);
				kvc_fake_fail(fns[i], 0, 0);
				kvc_fake_counts(&fc);
				if (failures < 1)
					fail_msg("%s failing: nothing failed",
						 kvc_fake_fn_name(fns[i]));
				if (fc.allocs || fc.host_allocs ||
				    fc.modules != base.modules || fc.pending ||
				    fc.events || fc.pushed)
					fail_msg(
						"%s failing: %llu allocations, %llu pinned, %llu modules, %llu pending, %llu events, %llu pushed left",
						kvc_fake_fn_name(fns[i]),
						(unsigned long long)fc.allocs,
						(unsigned long long)
							fc.host_allocs,
						(unsigned long long)fc.modules,
						(unsigned long long)fc.pending,
						(unsigned long long)fc.events,
						(unsigned long long)fc.pushed);
				if (fc.violations)
					fail_msg("%s failing: rule broken: %s",
						 kvc_fake_fn_name(fns[i]),
						 kvc_fake_last_violation());
			}
		}
	}
	assert_string_equal(kvc_fake_fn_name(KVC_FAKE_LAUNCH_KERNEL),
			    "cuLaunchKernel");
	assert_string_equal(kvc_fake_fn_name(KVC_FAKE_EVENT_ELAPSED),
			    "cuEventElapsedTime");
}

/*
 * The kernels fail to load at open (each call they make, refused once):
 * the backend opens all the same, without kernels, leaks no module, and
 * copies block by block. A refused lookup is absorbed where the library
 * carries several images: the fake finds every kernel in each of them,
 * so the next one has it.
 */
static void test_open_kernel_faults(void **state)
{
	static const enum kvc_fake_fn fns[] = {
		KVC_FAKE_DEVICE_ATTRIBUTE,
		KVC_FAKE_MODULE_LOAD,
		KVC_FAKE_MODULE_GET_FUNCTION,
		KVC_FAKE_FUNC_SET_ATTRIBUTE,
	};
	const struct kvc_cuda_driver *drv = *state;
	const struct kvc_copy c = { 0, BLOCK, BLOCK };
	struct kvc_fake_counts before, after;
	struct kvc_cuda_ctx ctx;
	struct kvc_backend *be;
	struct kvc_va va;
	uint64_t handle, nth;
	size_t i;

	for (i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		/* The first call, and one further in (kernels found before). */
		for (nth = 1; nth <= 5; nth += 4) {
			if (fns[i] != KVC_FAKE_MODULE_GET_FUNCTION && nth > 1)
				continue;
			kvc_fake_fail(fns[i], nth,
				      KVC_CUDA_ERROR_OUT_OF_MEMORY);
			assert_int_equal(
				kvc_backend_open_cuda_driver(drv, 0, &be), 0);
			kvc_fake_fail(fns[i], 0, 0);
			assert_int_equal(kvc_backend_cuda_ctx(be, &ctx), 0);
			if (fns[i] != KVC_FAKE_MODULE_GET_FUNCTION)
				assert_null(ctx.kernels);
			if (!ctx.kernels)
				assert_int_equal(counts_now().modules, 0);
			assert_int_equal(be->ops->reserve(be, GRAN, &va), 0);
			assert_int_equal(
				be->ops->map(be, &va, 0, GRAN, &handle), 0);
			kvc_fake_counts(&before);
			assert_int_equal(be->ops->copy(be, &va, &c, 1), 0);
			kvc_fake_counts(&after);
			EXPECT_U64(after.calls[KVC_FAKE_MEMCPY] -
					   before.calls[KVC_FAKE_MEMCPY],
				   !ctx.kernels);
			EXPECT_U64(after.launches - before.launches,
				   !!ctx.kernels);
			assert_int_equal(
				be->ops->unmap(be, &va, 0, GRAN, handle), 0);
			assert_int_equal(be->ops->release(be, &va), 0);
			kvc_backend_close(be);
			FAKE_EXPECT_CLEAN(FAKE_KEEP_NONE);
		}
	}
}

/*
 * The backend's copies of one size go through the copy kernel, 240 items
 * a launch, in order (an item reading or overwriting what an earlier one
 * of the same call writes or reads starts a new launch), counted one by
 * one in the reservation's calls; any other batch goes block by block.
 */
static void test_backend_copy_kernel(void **state)
{
	struct fence_fx *fx = *state;
	const uint64_t item = 64;
	struct kvc_copy copies[300];
	struct kvc_fake_counts before, after;
	uint64_t handle, calls, launches;
	uint32_t i;

	assert_int_equal(fx->ops->map(fx->be, &fx->va, GRAN, GRAN, &handle), 0);
	/* 300 small items: two launches, 240 and 60. */
	for (i = 0; i < 300; i++) {
		fx->mem[i * item] = (uint8_t)i;
		fx->mem[i * item + item - 1] = (uint8_t)(i + 1);
		copies[i] =
			(struct kvc_copy){ i * item, (1024 + i) * item, item };
	}
	calls = fx->va.calls.copy;
	launches = kvc_fake_launches("kvc_block_copy");
	kvc_fake_counts(&before);
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, copies, 300), 0);
	kvc_fake_counts(&after);
	EXPECT_U64(kvc_fake_launches("kvc_block_copy") - launches, 2);
	EXPECT_U64(after.calls[KVC_FAKE_MEMCPY], before.calls[KVC_FAKE_MEMCPY]);
	EXPECT_U64(fx->va.calls.copy - calls, 300);
	for (i = 0; i < 300; i++) {
		assert_int_equal(fx->mem[(1024 + i) * item], (uint8_t)i);
		assert_int_equal(fx->mem[(1024 + i) * item + item - 1],
				 (uint8_t)(i + 1));
	}

	/* A chain: A -> B, then B -> C, each in its own launch. */
	memset(fx->mem, 0, 4 * BLOCK);
	memset(fx->mem, 1, BLOCK);
	memset(fx->mem + BLOCK, 2, BLOCK);
	copies[0] = (struct kvc_copy){ 0, BLOCK, BLOCK };
	copies[1] = (struct kvc_copy){ BLOCK, 2 * BLOCK, BLOCK };
	launches = kvc_fake_launches("kvc_block_copy");
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, copies, 2), 0);
	EXPECT_U64(kvc_fake_launches("kvc_block_copy") - launches, 2);
	assert_bytes(fx, BLOCK, 2 * BLOCK, 1);
	/* Overwriting what an earlier item reads: B -> C, then A -> B. */
	memset(fx->mem, 1, BLOCK);
	memset(fx->mem + BLOCK, 2, BLOCK);
	copies[0] = (struct kvc_copy){ BLOCK, 2 * BLOCK, BLOCK };
	copies[1] = (struct kvc_copy){ 0, BLOCK, BLOCK };
	/* Two reading one source, and a copy onto itself, fit in one. */
	copies[2] = (struct kvc_copy){ 0, 3 * BLOCK, BLOCK };
	copies[3] = (struct kvc_copy){ 5 * BLOCK, 5 * BLOCK, BLOCK };
	launches = kvc_fake_launches("kvc_block_copy");
	calls = fx->va.calls.copy;
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, copies, 4), 0);
	EXPECT_U64(kvc_fake_launches("kvc_block_copy") - launches, 2);
	EXPECT_U64(fx->va.calls.copy - calls, 4);
	assert_bytes(fx, 2 * BLOCK, BLOCK, 2);
	assert_bytes(fx, BLOCK, BLOCK, 1);
	assert_bytes(fx, 3 * BLOCK, BLOCK, 1);

	/* Unequal sizes, an offset not a whole item, a size not of words. */
	memset(fx->mem, 4, BLOCK);
	copies[0] = (struct kvc_copy){ 0, 8 * BLOCK, BLOCK };
	copies[1] = (struct kvc_copy){ 0, 10 * BLOCK, BLOCK / 2 };
	copies[2] = (struct kvc_copy){ 64, 12 * BLOCK, BLOCK };
	copies[3] = (struct kvc_copy){ 0, 6000, 6 };
	launches = kvc_fake_launches("kvc_block_copy");
	kvc_fake_counts(&before);
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, copies, 2), 0);
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, copies + 2, 1), 0);
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, copies + 3, 1), 0);
	kvc_fake_counts(&after);
	EXPECT_U64(kvc_fake_launches("kvc_block_copy"), launches);
	EXPECT_U64(after.calls[KVC_FAKE_MEMCPY] - before.calls[KVC_FAKE_MEMCPY],
		   4);
	assert_bytes(fx, 8 * BLOCK, BLOCK, 4);
	assert_bytes(fx, 10 * BLOCK, BLOCK / 2, 4);
	assert_bytes(fx, 12 * BLOCK, BLOCK - 64, 4);

	/* A failed launch is the copy's error. */
	kvc_fake_fail(KVC_FAKE_LAUNCH_KERNEL, 1, KVC_CUDA_ERROR_OUT_OF_MEMORY);
	assert_int_equal(fx->ops->copy(fx->be, &fx->va, &one_copy, 1), -ENOMEM);
	assert_non_null(strstr(kvc_last_error(), "OUT_OF_MEMORY"));
	assert_int_equal(fx->ops->unmap(fx->be, &fx->va, GRAN, GRAN, handle),
			 0);
}

/*
 * The context of a cuda backend, for code that queues its own work: the
 * driver, the context (pushed and popped), the kernels and the stream;
 * no such thing for the host backend. kvc_cu_errno() maps results.
 */
static void test_backend_cuda_ctx(void **state)
{
	struct fence_fx *fx = *state;
	const struct kvc_cuda_driver *real;
	struct kvc_backend *host;
	struct kvc_cuda_ctx c;

	assert_int_equal(kvc_backend_cuda_ctx(fx->be, &c), 0);
	assert_ptr_equal(c.drv, fx->drv);
	assert_ptr_equal(c.ctx, fx->ctx);
	assert_int_equal(c.dev, 0);
	assert_non_null(c.kernels);
	assert_non_null(c.stream);
	assert_int_equal(kvc_cuda_ctx_push(&c), 0);
	EXPECT_U64(counts_now().pushed, 1);
	kvc_cuda_ctx_pop(&c);
	EXPECT_U64(counts_now().pushed, 0);
	/* The backend's stream is a live one of the fake. */
	assert_int_equal(fx->drv->cuStreamSynchronize(c.stream), 0);
	kvc_fake_fail(KVC_FAKE_CTX_PUSH, 1, KVC_CUDA_ERROR_INVALID_VALUE);
	assert_int_equal(kvc_cuda_ctx_push(&c), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "cuCtxPushCurrent"));

	assert_int_equal(kvc_backend_open_host(GRAN, &host), 0);
	assert_int_equal(kvc_backend_cuda_ctx(host, &c), -EOPNOTSUPP);
	assert_true(strlen(kvc_last_error()) > 0);
	kvc_backend_close(host);

	assert_int_equal(kvc_cu_errno(fx->drv, KVC_CUDA_ERROR_NOT_READY, "x"),
			 -EBUSY);
	assert_string_equal(kvc_last_error(), "x: CUDA_ERROR_NOT_READY (600)");
	assert_int_equal(
		kvc_cu_errno(fx->drv, KVC_CUDA_ERROR_OUT_OF_MEMORY, "x"),
		-ENOMEM);
	assert_int_equal(
		kvc_cu_errno(fx->drv, KVC_CUDA_ERROR_INVALID_HANDLE, "x"),
		-EINVAL);
	assert_int_equal(kvc_cu_errno(fx->drv, KVC_CUDA_ERROR_NO_DEVICE, "x"),
			 -ENODEV);
	assert_int_equal(
		kvc_cu_errno(fx->drv, KVC_CUDA_ERROR_LAUNCH_FAILED, "x"), -EIO);
	assert_int_equal(kvc_cu_errno(NULL, 999, "y"), -EIO);
	assert_non_null(strstr(kvc_last_error(), "y: "));

	/* The real driver, where there is one. */
	if (kvc_cuda_driver_real(&real)) {
		assert_non_null(strstr(kvc_last_error(), "driver"));
	} else {
		assert_string_equal(real->name, "cuda");
		assert_non_null(real->cuMemcpyDtoDAsync);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_close, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_no_device, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_open_faults, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_real_driver_absent, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_scenario_clean, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fault_every_call, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_device_out_of_memory,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_mapped_cap, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_double_fault_unwind, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_caller_context_kept, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fence_sync_mode,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fence_query_async,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fence_after_stream,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fence_after_event,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fence_signal, setup_fence,
						teardown_fence),
		cmocka_unit_test_setup_teardown(test_fence_sync_runs_needed,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_unmap_under_queued_work,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fake_stream_model,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fence_faults, setup_fence,
						teardown_fence),
		cmocka_unit_test_setup_teardown(test_race_unordered,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_race_ordered, setup_fence,
						teardown_fence),
		cmocka_unit_test_setup_teardown(test_race_no_conflict,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_default_stream_aliases,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_sticky_fault, setup_fence,
						teardown_fence),
		cmocka_unit_test_setup_teardown(test_sticky_fault_reset, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stream_slots, setup_fence,
						teardown_fence),
		cmocka_unit_test_setup_teardown(test_fake_attributes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fake_modules, setup_fence,
						teardown_fence),
		cmocka_unit_test_setup_teardown(test_fake_no_kernels, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fake_launch_checks,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fake_launch_order,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fake_launch_fails,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fake_launch_pairs_dev,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fake_mem_alloc,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fake_alloc_leaks, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fake_host_copies,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_fake_mem_info, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fake_elapsed, setup_fence,
						teardown_fence),
		cmocka_unit_test_setup_teardown(test_fake_new_faults,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_open_kernel_faults, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_backend_copy_kernel,
						setup_fence, teardown_fence),
		cmocka_unit_test_setup_teardown(test_backend_cuda_ctx,
						setup_fence, teardown_fence),
		cmocka_unit_test(test_fence_real_driver),
		cmocka_unit_test(test_copy_real_driver),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
