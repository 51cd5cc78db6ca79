/* SPDX-License-Identifier: MIT */
/*
 * What the GPU test and the GPU benchmark share: opening the device (the
 * real driver, or the fake one, whose kernels run through the CPU
 * emulation), checking every driver call, device buffers, event timing,
 * a seeded generator and medians.
 *
 * Plain C, no cuda.h: every call goes through struct kvc_cuda_driver, so
 * both programs build without the CUDA toolkit and start (and skip) on a
 * machine with no driver.
 */
#ifndef KVC_TESTS_GPU_UTIL_H
#define KVC_TESTS_GPU_UTIL_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kvc/error.h>

#include "backend.h"
#include "cuda_driver.h"
#include "cuda_kernels.h"
#include "fake_driver.h"
#include "launch.h"

/* Exit status of a program that found no device to run on ("skipped"). */
#define GPU_EXIT_SKIP 77

/* A NaN bit pattern no kernel computes: outputs are filled with it before
 * each launch, and an element that still holds it was never written. */
#define GPU_POISON 0x7fc0deadu

/**
 * struct gpu - The device a program runs on.
 * @drv: the driver table (real or fake).
 * @dev: device 0.
 * @ctx: its primary context, current on the main thread while open.
 * @stream: the stream everything is queued on.
 * @k: the loaded kernels.
 * @info: the device's properties, as the launch plans see them.
 * @fake: @drv is the fake driver (timings are meaningless).
 * @retained: @ctx is retained.
 * @pushed: @ctx is current.
 */
struct gpu {
	const struct kvc_cuda_driver *drv;
	kvc_cu_device dev;
	kvc_cu_context ctx;
	kvc_cu_stream stream;
	struct kvc_cuda_kernels *k;
	struct kvc_gpu_info info;
	bool fake;
	bool retained;
	bool pushed;
};

/* The driver's name for a result ("CUDA_ERROR_OUT_OF_MEMORY"). */
static inline const char *gpu_err_name(const struct gpu *g, kvc_cu_result r)
{
	const char *name = NULL;

	if (g->drv && g->drv->cuGetErrorName &&
	    g->drv->cuGetErrorName(r, &name) == KVC_CUDA_SUCCESS && name)
		return name;
	return "unknown error";
}

/* 0 for success, else a line naming the call and -1. */
static inline int gpu_cu(const struct gpu *g, kvc_cu_result r, const char *call,
			 const char *fn, int line)
{
	if (r == KVC_CUDA_SUCCESS)
		return 0;
	fprintf(stderr, "%s:%d: %s: %s (%d)\n", fn, line, call,
		gpu_err_name(g, r), r);
	return -1;
}

/* Check a driver call: CU(g, g->drv->cuMemAlloc(&p, n)) is 0 or -1. */
#define CU(g, call) gpu_cu((g), (call), #call, __func__, __LINE__)

/* 0 for success, else a line with the library's message and -1. */
static inline int gpu_kvc(int err, const char *call, const char *fn, int line)
{
	if (!err)
		return 0;
	fprintf(stderr, "%s:%d: %s = %d: %s\n", fn, line, call, err,
		kvc_last_error());
	return -1;
}

/* Check a kvc call that returns 0 or -errno. */
#define KVC(call) gpu_kvc((call), #call, __func__, __LINE__)

/**
 * gpu_open() - Open device 0 and load the kernels.
 * @g: filled in.
 * @fake: use the fake driver (kernels emulated on the CPU).
 * @prog: the program's name, for the line that says why it skips.
 *
 * Return: 0; %GPU_EXIT_SKIP (after printing why) when there is no
 * driver, no device, or no kernels in the library; -1 on any other
 * failure (printed). On failure everything taken is given back.
 */
static inline int gpu_open(struct gpu *g, bool fake, const char *prog);

/**
 * gpu_close() - Unload the kernels, give the stream and context back.
 * @g: the device; NULL members are skipped.
 *
 * With the fake driver, also checks that nothing was leaked and that no
 * call broke one of the driver's rules.
 *
 * Return: 0, or -1 (printed) when something was leaked or a rule broken.
 */
static inline int gpu_close(struct gpu *g);

/*
 * Whether a failed kernel load means "nothing to test here": a library
 * built without nvcc, or a device older than the images (sm_80). A
 * kernel missing from images that were built is a failure instead.
 */
static inline bool gpu_no_kernels(const struct gpu *g)
{
	int major = 0;

	if (!kvc_cuda_kernels_built())
		return true;
	return g->drv->cuDeviceGetAttribute(
		       &major, KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
		       g->dev) == KVC_CUDA_SUCCESS &&
	       major < 8;
}

static inline int gpu_open(struct gpu *g, bool fake, const char *prog)
{
	int count = 0, err;
	kvc_cu_result r;

	memset(g, 0, sizeof(*g));
	g->fake = fake;
	if (fake) {
		/* An H100's multiprocessors and shared memory, so that plans
		 * come out as there; async, so that a missing synchronise
		 * shows as stale data. */
		struct kvc_fake_config cfg = {
			.granularity = 2u << 20,
			.devices = 1,
			.sms = 132,
			.smem_optin = 227u << 10,
		};

		g->drv = kvc_fake_driver(&cfg);
		if (!g->drv) {
			fprintf(stderr, "%s: the fake driver did not reset\n",
				prog);
			return -1;
		}
		kvc_fake_set_async(true);
	} else if (kvc_cuda_driver_real(&g->drv)) {
		printf("%s: skipped: %s\n", prog, kvc_last_error());
		return GPU_EXIT_SKIP;
	}
	r = g->drv->cuInit(0);
	if (r != KVC_CUDA_SUCCESS) {
		printf("%s: skipped: no usable GPU: cuInit: %s (%d)\n", prog,
		       gpu_err_name(g, r), r);
		return GPU_EXIT_SKIP;
	}
	r = g->drv->cuDeviceGetCount(&count);
	if (r == KVC_CUDA_SUCCESS && count < 1) {
		printf("%s: skipped: the driver sees no GPU\n", prog);
		return GPU_EXIT_SKIP;
	}
	if (CU(g, r) || CU(g, g->drv->cuDeviceGet(&g->dev, 0)) ||
	    CU(g, g->drv->cuDevicePrimaryCtxRetain(&g->ctx, g->dev)))
		return -1;
	g->retained = true;
	if (CU(g, g->drv->cuCtxPushCurrent(g->ctx)))
		goto err;
	g->pushed = true;
	if (CU(g, g->drv->cuStreamCreate(&g->stream, 0)))
		goto err;
	err = kvc_cuda_kernels_load(g->drv, g->dev, &g->k);
	if (err == -ENODEV && !fake && gpu_no_kernels(g)) {
		printf("%s: skipped: %s\n", prog, kvc_last_error());
		gpu_close(g);
		return GPU_EXIT_SKIP;
	}
	if (err) {
		fprintf(stderr, "%s: the kernels do not load: %s\n", prog,
			kvc_last_error());
		goto err;
	}
	g->info = *kvc_cuda_kernels_gpu(g->k);
	return 0;

err:
	gpu_close(g);
	return -1;
}

static inline int gpu_close(struct gpu *g)
{
	struct kvc_fake_counts c;
	kvc_cu_context popped;
	int ret = 0;

	if (g->k && g->pushed)
		kvc_cuda_kernels_unload(g->k);
	g->k = NULL;
	if (g->stream)
		ret |= CU(g, g->drv->cuStreamDestroy(g->stream));
	g->stream = NULL;
	if (g->pushed)
		ret |= CU(g, g->drv->cuCtxPopCurrent(&popped));
	g->pushed = false;
	if (g->retained)
		ret |= CU(g, g->drv->cuDevicePrimaryCtxRelease(g->dev));
	g->retained = false;
	if (!g->fake)
		return ret ? -1 : 0;
	kvc_fake_run();
	kvc_fake_counts(&c);
	if (c.handles || c.mappings || c.reservations || c.contexts ||
	    c.pushed || c.streams || c.events || c.pending || c.allocs ||
	    c.host_allocs || c.modules) {
		fprintf(stderr,
			"fake driver: left behind: %llu handles, %llu mappings, %llu reservations, %llu contexts, %llu pushed, %llu streams, %llu events, %llu pending, %llu allocations, %llu host allocations, %llu modules\n",
			(unsigned long long)c.handles,
			(unsigned long long)c.mappings,
			(unsigned long long)c.reservations,
			(unsigned long long)c.contexts,
			(unsigned long long)c.pushed,
			(unsigned long long)c.streams,
			(unsigned long long)c.events,
			(unsigned long long)c.pending,
			(unsigned long long)c.allocs,
			(unsigned long long)c.host_allocs,
			(unsigned long long)c.modules);
		ret = -1;
	}
	if (c.violations) {
		fprintf(stderr,
			"fake driver: %llu rule violations, the last: %s\n",
			(unsigned long long)c.violations,
			kvc_fake_last_violation());
		ret = -1;
	}
	return ret ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* Device memory */

/* Allocate @bytes (at least 256, so that an empty buffer is valid). */
static inline int gpu_alloc(const struct gpu *g, kvc_cu_ptr *p, size_t bytes)
{
	*p = 0;
	return CU(g, g->drv->cuMemAlloc(p, bytes < 256 ? 256 : bytes));
}

/* Free @p (0 is a no-op) and zero it. */
static inline int gpu_free(const struct gpu *g, kvc_cu_ptr *p)
{
	int ret = 0;

	if (*p)
		ret = CU(g, g->drv->cuMemFree(*p));
	*p = 0;
	return ret;
}

/* Wait for everything queued on the stream; reports launch failures. */
static inline int gpu_sync(const struct gpu *g)
{
	return CU(g, g->drv->cuStreamSynchronize(g->stream));
}

/* Copy host to device, and wait (the host buffer may then change). */
static inline int gpu_put(const struct gpu *g, kvc_cu_ptr dst, const void *src,
			  size_t bytes)
{
	if (!bytes)
		return 0;
	if (CU(g, g->drv->cuMemcpyHtoDAsync(dst, src, bytes, g->stream)))
		return -1;
	return gpu_sync(g);
}

/* Copy device to host, and wait (the host buffer is then valid). */
static inline int gpu_get(const struct gpu *g, void *dst, kvc_cu_ptr src,
			  size_t bytes)
{
	if (!bytes)
		return 0;
	if (CU(g, g->drv->cuMemcpyDtoHAsync(dst, src, bytes, g->stream)))
		return -1;
	return gpu_sync(g);
}

/* Queue filling @words 32-bit words at @dst with @value. */
static inline int gpu_fill32(const struct gpu *g, kvc_cu_ptr dst,
			     uint32_t value, size_t words)
{
	if (!words)
		return 0;
	return CU(g, g->drv->cuMemsetD32Async(dst, value, words, g->stream));
}

/* Allocate a device copy of @bytes of host memory. */
static inline int gpu_dup(const struct gpu *g, kvc_cu_ptr *p, const void *src,
			  size_t bytes)
{
	if (gpu_alloc(g, p, bytes))
		return -1;
	if (!gpu_put(g, *p, src, bytes))
		return 0;
	gpu_free(g, p);
	return -1;
}

/* Free and total device memory; with the fake, what it reports. */
static inline int gpu_mem_info(const struct gpu *g, size_t *free_bytes,
			       size_t *total_bytes)
{
	return CU(g, g->drv->cuMemGetInfo(free_bytes, total_bytes));
}

/* ------------------------------------------------------------------ */
/* Timing */

/**
 * struct gpu_timer - Pairs of events around the runs of one measurement.
 * @ev: 2 * @n events: run i lies between @ev[2i] and @ev[2i + 1].
 * @n: runs.
 */
struct gpu_timer {
	kvc_cu_event *ev;
	uint32_t n;
};

static inline void gpu_timer_destroy(const struct gpu *g, struct gpu_timer *t)
{
	uint32_t i;

	for (i = 0; t->ev && i < 2 * t->n; i++)
		if (t->ev[i])
			CU(g, g->drv->cuEventDestroy(t->ev[i]));
	free(t->ev);
	t->ev = NULL;
	t->n = 0;
}

static inline int gpu_timer_create(const struct gpu *g, struct gpu_timer *t,
				   uint32_t n)
{
	uint32_t i;

	t->n = n;
	t->ev = calloc(2 * (size_t)n, sizeof(*t->ev));
	if (!t->ev) {
		fprintf(stderr, "out of memory for %u events\n", 2 * n);
		t->n = 0;
		return -1;
	}
	for (i = 0; i < 2 * n; i++) {
		if (CU(g, g->drv->cuEventCreate(&t->ev[i],
						KVC_CU_EVENT_DEFAULT))) {
			gpu_timer_destroy(g, t);
			return -1;
		}
	}
	return 0;
}

/* Queue the start (@end false) or the end of run @i. */
static inline int gpu_timer_mark(const struct gpu *g, struct gpu_timer *t,
				 uint32_t i, bool end)
{
	return CU(g, g->drv->cuEventRecord(t->ev[2 * i + end], g->stream));
}

/* Wait for the runs, then fill @ms[i] with run i's milliseconds. */
static inline int gpu_timer_read(const struct gpu *g, struct gpu_timer *t,
				 double *ms)
{
	uint32_t i;
	float f;

	if (gpu_sync(g))
		return -1;
	for (i = 0; i < t->n; i++) {
		if (CU(g, g->drv->cuEventElapsedTime(&f, t->ev[2 * i],
						     t->ev[2 * i + 1])))
			return -1;
		ms[i] = f;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Numbers */

/* splitmix64: a fixed seed gives every run the same inputs. */
static inline uint64_t gpu_rng(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, @n), @n >= 1. */
static inline uint64_t gpu_below(uint64_t *state, uint64_t n)
{
	return gpu_rng(state) % n;
}

/* Uniform in [-1, 1). */
static inline float gpu_uniform(uint64_t *state)
{
	return (float)(gpu_rng(state) >> 40) * 0x1p-23f - 1.0f;
}

/* A random permutation of 0 .. @n - 1 (Fisher-Yates). */
static inline void gpu_shuffle(uint32_t *ids, uint32_t n, uint64_t *state)
{
	uint32_t i, j, t;

	for (i = 0; i < n; i++)
		ids[i] = i;
	for (i = n; i > 1; i--) {
		j = (uint32_t)gpu_below(state, i);
		t = ids[i - 1];
		ids[i - 1] = ids[j];
		ids[j] = t;
	}
}

static inline int gpu_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median of @n values (sorts them). */
static inline double gpu_median(double *v, uint32_t n)
{
	if (!n)
		return 0.0;
	qsort(v, n, sizeof(*v), gpu_cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Seconds of CLOCK_MONOTONIC. */
static inline double gpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* malloc() that says what it could not get; NULL then. */
static inline void *gpu_malloc(size_t bytes)
{
	void *p = malloc(bytes ? bytes : 1);

	if (!p)
		fprintf(stderr, "out of host memory for %zu bytes\n", bytes);
	return p;
}

static inline const char *gpu_dtype_name(enum kvc_dtype dtype)
{
	return dtype == KVC_DTYPE_F32 ? "f32" :
	       dtype == KVC_DTYPE_F16 ? "f16" :
					"bf16";
}

/* Bytes of one stored K or V element. */
static inline uint32_t gpu_elem_bytes(enum kvc_dtype dtype)
{
	return dtype == KVC_DTYPE_F32 ? 4u : 2u;
}

#endif /* KVC_TESTS_GPU_UTIL_H */
