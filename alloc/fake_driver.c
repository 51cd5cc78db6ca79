// SPDX-License-Identifier: MIT
/*
 * The fake CUDA driver: cuMem* on host memory, for testing the cuda
 * backend without a GPU. Device memory is one sparse memfd; a handle owns
 * a range of it; cuMemMap maps that range MAP_FIXED into a reservation
 * made with mmap(PROT_NONE), and cuMemSetAccess opens it with mprotect, so
 * touching memory that the real driver would fault on faults here too.
 *
 * Calls before cuInit return CUDA_ERROR_NOT_INITIALIZED. Rules enforced (a
 * broken one returns CUDA_ERROR_INVALID_VALUE and is counted as a
 * violation): sizes, addresses and offsets are
 * multiples of the granularity; a map lies inside one reservation, over
 * nothing already mapped, within its handle; access is set only on a
 * fully mapped range, of whole mappings (the fake tracks access per
 * mapping); an unmap covers exactly what one map mapped; a
 * handle is released once; a reservation is freed whole and only when
 * nothing inside it is mapped; copies touch only accessible memory.
 *
 * Streams and events. Each stream (the NULL default stream too) has a
 * FIFO of operations: copies, sets, kernels (cuLaunchKernel, and the
 * test kernels of kvc_fake_launch()), event records and waits. In sync mode (the default) an operation runs as soon as it is
 * queued, so nothing is ever pending. In async mode (kvc_fake_set_async())
 * operations stay queued until kvc_fake_run(), cuStreamSynchronize or
 * cuEventSynchronize runs them, in stream order; a wait holds its stream
 * until the record it waits for (the event's latest record when the wait
 * was queued) has run. Every operation is numbered when queued, and a wait
 * only ever waits for an earlier number, so queued work can always drain.
 * More rules: streams and events are created with a context current on the
 * thread (else CUDA_ERROR_INVALID_CONTEXT); handles must be live (else
 * CUDA_ERROR_INVALID_HANDLE); cuMemUnmap and cuMemAddressFree are refused
 * over a range that queued work touches (cuMemUnmap is not ordered with
 * streams: the device would fault); queued work that finds its memory
 * unmapped or inaccessible when it runs is a violation and is skipped.
 * Destroying a stream or an event with work still queued is allowed, as
 * in CUDA: the work still runs, the handle is dead at once. The legacy
 * default stream does not synchronise with other streams here: only
 * explicit waits order streams, so code relying on implicit ordering
 * shows up as unordered. CU_STREAM_LEGACY (0x1) and CU_STREAM_PER_THREAD
 * (0x2) name the default stream too.
 *
 * Races (async mode only). Happens-before is tracked with vector clocks:
 * each stream slot has a clock, one entry per slot; every operation queued
 * on stream s gets the epoch ++clock_s[s]; cuEventRecord copies the
 * stream's clock into the event; cuStreamWaitEvent joins the event's clock
 * into the waiting stream's (element-wise max). Operation X (stream a,
 * epoch e) happens before the next operation on stream b when
 * clock_b[a] >= e. The host has a clock too, of what it has seen complete:
 * cuStreamSynchronize(s) returning 0 joins clock_s into it,
 * cuEventSynchronize(e) and cuEventQuery(e) returning 0 join the event's
 * clock (its latest record's), and in sync mode (or when
 * kvc_fake_set_async(false) drains the queues) everything counts as seen.
 * What the host has seen complete happens before everything queued after
 * it, on any stream: it finished before the call that queues the new work
 * returned. kvc_fake_run() is not an observation: it stands for the
 * device making progress, which the host learns only through a
 * synchronize or a query, so an operation it ran is kept (ops[done ..
 * head) of its stream) until the host has seen it complete; otherwise
 * whether a race shows would depend on when a test called kvc_fake_run().
 * When a copy, set or kernel is queued, every operation on another
 * stream that is still queued or not seen complete, and not ordered
 * before it, is compared with it: if their byte ranges overlap and one of
 * them writes there (op_ranges() says which), that is a violation
 * ("unordered: ..."),
 * counted once per queued operation; the call still succeeds and the work
 * is queued, as on a device. A stream's operations are in epoch order, so
 * the scan of each other stream stops at the first one ordered before the
 * new one: ordered work costs nothing. There are at most MAX_STREAMS
 * stream slots; a destroyed stream's slot is reused only once none of its
 * work is queued or unseen (the epochs go on from where they were).
 *
 * A copy or kernel that faults when it runs makes the context
 * sticky-broken, as on a device: the rest of the queued work is dropped,
 * and from then on every call that waits for, queues or creates something
 * (synchronizes, cuEventQuery, cuEventElapsedTime, cuEventRecord,
 * cuStreamWaitEvent, copies and sets, launches, stream and event
 * creation, cuMemCreate, cuMemMap, cuMemSetAccess, cuMemAddressReserve,
 * cuMemAlloc, cuMemAllocHost, cuMemGetInfo, module loads and lookups)
 * returns the sticky error (CUDA_ERROR_ILLEGAL_ADDRESS, or
 * CUDA_ERROR_LAUNCH_FAILED for a kernel whose emulation refused its
 * arguments) until kvc_fake_driver() resets. Calls that release, free,
 * unload or destroy (and the context and device queries) still work, so
 * that a test can clean up.
 *
 * Kernels. cuLaunchKernel copies the kernel's argument struct (args.h)
 * and queues it like a copy; when it runs, the CPU emulation of the
 * kernel (kernels/emulate.h) runs it on the host memory that device
 * addresses are here. What it touches, for the race, unmap and free
 * checks, is exact for a block copy with inline pairs, and otherwise the
 * whole of every allocation its arguments point into (fake_driver.h).
 * cuMemAlloc and cuMemAllocHost memory is malloc'd host memory, tracked
 * so that frees are checked and leaks stop the next reset.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../kernels/args.h"
#include "../kernels/emulate.h"
#include "fake_driver.h"

struct fake_handle {
	uint64_t phys; /* offset in the memfd */
	uint64_t size;
	uint32_t maps; /* live mappings of it */
	bool released;
};

struct fake_mapping {
	uint64_t ptr;
	uint64_t size;
	uint64_t handle; /* index + 1 */
	int access;
};

struct fake_reservation {
	uint64_t ptr;
	uint64_t size;
};

/* A cuMemAlloc or cuMemAllocHost block. */
struct fake_alloc {
	uint64_t ptr;
	uint64_t bytes; /* as asked for: what may be touched */
	uint64_t held; /* rounded up: what it costs */
};

struct fake_module {
	uint32_t gen;
	bool live;
};

/* A kernel found in a module; dies with it. */
struct fake_function {
	uint64_t module; /* slot */
	uint32_t max_smem; /* dynamic shared memory opted in to */
	uint32_t gen;
	bool live;
	char name[96];
};

/* Launches per kernel name, for kvc_fake_launches(). */
struct fake_launch_count {
	char name[96];
	uint64_t n;
};

enum fake_op_kind {
	OP_MEMCPY,
	OP_KERNEL,
	OP_RECORD,
	OP_WAIT,
	OP_HTOD,
	OP_DTOH,
	OP_MEMSET,
	OP_LAUNCH,
};

/*
 * A byte range an operation touches, and whether it writes there. A loose
 * range is a whole allocation a kernel's arguments point into: the kernel
 * touches some of it, which is not known.
 */
struct fake_range {
	uint64_t ptr;
	uint64_t bytes;
	bool write;
	bool loose;
};

/* A cuLaunchKernel, with its arguments as they were at the call. */
struct fake_launch {
	char label[112]; /* "kernel <name>" */
	const char *name; /* in @label */
	unsigned int grid[3];
	unsigned int threads;
	unsigned int smem;
	struct fake_range *ranges;
	uint32_t nr_ranges;
	uint32_t nr_addrs;
	uint64_t addrs[8]; /* argument addresses, checked when it runs */
	uint64_t args[]; /* the argument struct */
};

/* One queued stream operation. */
struct fake_op {
	enum fake_op_kind kind;
	uint64_t serial; /* queue order over all streams, from 1 */
	uint64_t epoch; /* its stream's own clock entry: its place there */
	uint64_t dst; /* copy and set destination; kernel range */
	uint64_t src; /* copy source (HtoD: pinned or staged host memory) */
	uint64_t bytes; /* copies, sets, kernel */
	uint64_t event; /* record: the event's slot */
	uint64_t record; /* wait: serial of the record waited for */
	uint32_t value; /* set */
	bool pinned; /* HtoD, DtoH: the host side is cuMemAllocHost memory */
	void *staged; /* HtoD from pageable memory: the copy taken */
	struct fake_launch *launch;
};

/* Stream slots, the default stream's included; bounds the vector clocks. */
#define MAX_STREAMS 64

/*
 * A stream; slot 0 is the NULL default stream, always live. Operations
 * ops[done .. head) have run, but the host has not seen them complete (in
 * async mode they may still race); ops[head .. nr) are queued.
 */
struct fake_stream {
	struct fake_op *ops;
	uint64_t done, head, nr, cap;
	uint64_t clock[MAX_STREAMS]; /* what happens before its next op */
	uint32_t gen; /* bumped at each create: stale handles are caught */
	bool live;
};

struct fake_event {
	uint64_t record; /* serial of its latest record, 0 if never recorded */
	uint64_t time; /* fake time its latest record ran at */
	unsigned int flags;
	uint64_t queued; /* its record operations still queued */
	uint64_t clock[MAX_STREAMS]; /* its latest record's stream clock */
	uint32_t gen;
	bool live;
};

/*
 * Stream and event handles: a tag, the slot's generation and the slot, so
 * a destroyed handle, or one of the other kind, is told apart.
 */
#define STREAM_TAG 0x5ull
#define EVENT_TAG 0xeull
#define MODULE_TAG 0xdull
#define FUNCTION_TAG 0xfull
#define SLOT_BITS 24
#define MAX_SLOTS (1ull << SLOT_BITS)

_Static_assert(sizeof(void *) == 8, "the fake encodes handles in 64 bits");

static struct {
	pthread_mutex_t lock;
	struct kvc_fake_config cfg;
	bool initialized;
	int memfd;
	uint64_t next_phys;
	struct fake_handle *handles;
	uint64_t nr_handles, cap_handles;
	struct fake_mapping *maps;
	uint64_t nr_maps, cap_maps;
	struct fake_reservation *res;
	uint64_t nr_res, cap_res;
	struct fake_stream streams[MAX_STREAMS];
	uint64_t nr_streams;
	struct fake_event *events;
	uint64_t nr_events, cap_events;
	struct fake_alloc *allocs;
	uint64_t nr_allocs, cap_allocs;
	struct fake_alloc *host_allocs;
	uint64_t nr_host_allocs, cap_host_allocs;
	struct fake_module *modules;
	uint64_t nr_modules, cap_modules;
	struct fake_function *functions;
	uint64_t nr_functions, cap_functions;
	struct fake_launch_count *launch_counts;
	uint64_t nr_launch_counts, cap_launch_counts;
	uint64_t ticks; /* fake time: operations run so far */
	uint64_t next_serial;
	uint64_t host[MAX_STREAMS]; /* the host's clock: what it saw complete */
	bool async;
	kvc_cu_result sticky; /* a kernel or copy faulted: the sticky error */
	struct kvc_fake_counts counts;
	uint64_t fail_at[KVC_FAKE_NR_FNS];
	kvc_cu_result fail_result[KVC_FAKE_NR_FNS];
	char violation[512];
} fake = { .lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP, .memfd = -1 };

/*
 * The lock checks its owner: a thread that takes it again was jumped out
 * of the fake while inside it (a test framework catching a crash in a
 * kernel's emulation, which runs under the lock). The fake may be half
 * way through a change then: stop, rather than hang or go on from it.
 */
static void fake_lock(void)
{
	if (pthread_mutex_lock(&fake.lock) == EDEADLK) {
		fputs("kvc fake driver: re-entered while its lock is held, after a crash inside it was caught; stopping\n",
		      stderr);
		abort();
	}
}

static const char *const fn_names[KVC_FAKE_NR_FNS] = {
	[KVC_FAKE_INIT] = "cuInit",
	[KVC_FAKE_DEVICE_GET_COUNT] = "cuDeviceGetCount",
	[KVC_FAKE_DEVICE_GET] = "cuDeviceGet",
	[KVC_FAKE_CTX_RETAIN] = "cuDevicePrimaryCtxRetain",
	[KVC_FAKE_CTX_RELEASE] = "cuDevicePrimaryCtxRelease",
	[KVC_FAKE_CTX_PUSH] = "cuCtxPushCurrent",
	[KVC_FAKE_CTX_POP] = "cuCtxPopCurrent",
	[KVC_FAKE_GRANULARITY] = "cuMemGetAllocationGranularity",
	[KVC_FAKE_ADDRESS_RESERVE] = "cuMemAddressReserve",
	[KVC_FAKE_ADDRESS_FREE] = "cuMemAddressFree",
	[KVC_FAKE_CREATE] = "cuMemCreate",
	[KVC_FAKE_RELEASE] = "cuMemRelease",
	[KVC_FAKE_MAP] = "cuMemMap",
	[KVC_FAKE_UNMAP] = "cuMemUnmap",
	[KVC_FAKE_SET_ACCESS] = "cuMemSetAccess",
	[KVC_FAKE_STREAM_CREATE] = "cuStreamCreate",
	[KVC_FAKE_STREAM_DESTROY] = "cuStreamDestroy",
	[KVC_FAKE_STREAM_SYNC] = "cuStreamSynchronize",
	[KVC_FAKE_MEMCPY] = "cuMemcpyDtoDAsync",
	[KVC_FAKE_EVENT_CREATE] = "cuEventCreate",
	[KVC_FAKE_EVENT_RECORD] = "cuEventRecord",
	[KVC_FAKE_EVENT_QUERY] = "cuEventQuery",
	[KVC_FAKE_EVENT_SYNC] = "cuEventSynchronize",
	[KVC_FAKE_EVENT_DESTROY] = "cuEventDestroy",
	[KVC_FAKE_STREAM_WAIT_EVENT] = "cuStreamWaitEvent",
	[KVC_FAKE_DEVICE_ATTRIBUTE] = "cuDeviceGetAttribute",
	[KVC_FAKE_MODULE_LOAD] = "cuModuleLoadData",
	[KVC_FAKE_MODULE_UNLOAD] = "cuModuleUnload",
	[KVC_FAKE_MODULE_GET_FUNCTION] = "cuModuleGetFunction",
	[KVC_FAKE_FUNC_SET_ATTRIBUTE] = "cuFuncSetAttribute",
	[KVC_FAKE_LAUNCH_KERNEL] = "cuLaunchKernel",
	[KVC_FAKE_MEM_ALLOC] = "cuMemAlloc",
	[KVC_FAKE_MEM_FREE] = "cuMemFree",
	[KVC_FAKE_MEM_ALLOC_HOST] = "cuMemAllocHost",
	[KVC_FAKE_MEM_FREE_HOST] = "cuMemFreeHost",
	[KVC_FAKE_MEMCPY_HTOD] = "cuMemcpyHtoDAsync",
	[KVC_FAKE_MEMCPY_DTOH] = "cuMemcpyDtoHAsync",
	[KVC_FAKE_MEMSET_D32] = "cuMemsetD32Async",
	[KVC_FAKE_MEM_GET_INFO] = "cuMemGetInfo",
	[KVC_FAKE_EVENT_ELAPSED] = "cuEventElapsedTime",
};

const char *kvc_fake_fn_name(enum kvc_fake_fn fn)
{
	return fn < KVC_FAKE_NR_FNS ? fn_names[fn] : "?";
}

/* A copy per thread, taken under the lock: another thread may break a rule. */
const char *kvc_fake_last_violation(void)
{
	static _Thread_local char copy[sizeof(fake.violation)];

	fake_lock();
	memcpy(copy, fake.violation, sizeof(copy));
	pthread_mutex_unlock(&fake.lock);
	return copy;
}

static kvc_cu_result violation(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fake.violation, sizeof(fake.violation), fmt, ap);
	va_end(ap);
	fake.counts.violations++;
	return KVC_CUDA_ERROR_INVALID_VALUE;
}

/* A dead or foreign stream or event handle: a violation too. */
static kvc_cu_result bad_handle(const char *call, const void *handle)
{
	violation("%s: handle %p is not a live one", call, handle);
	return KVC_CUDA_ERROR_INVALID_HANDLE;
}

/* Count the call; fail it if it is the one chosen. Lock held. */
static kvc_cu_result enter(enum kvc_fake_fn fn)
{
	uint64_t n = ++fake.counts.calls[fn];

	if (fake.fail_at[fn] && n == fake.fail_at[fn]) {
		fake.fail_at[fn] = 0;
		return fake.fail_result[fn];
	}
	if (fn != KVC_FAKE_INIT && !fake.initialized)
		return KVC_CUDA_ERROR_NOT_INITIALIZED;
	return KVC_CUDA_SUCCESS;
}

#define ENTER(fn)        \
	kvc_cu_result r; \
	fake_lock();     \
	r = enter(fn);   \
	if (r)           \
		goto out;

/*
 * For the calls a broken context refuses: those that wait for, queue or
 * create something. The sticky error comes after an injected failure.
 */
#define ENTER_LIVE(fn)           \
	ENTER(fn)                \
	if (fake.sticky) {       \
		r = fake.sticky; \
		goto out;        \
	}

#define LEAVE()                           \
out:                                      \
	pthread_mutex_unlock(&fake.lock); \
	return r;

static bool gran_ok(uint64_t v)
{
	return (v & (fake.cfg.granularity - 1)) == 0;
}

/* Make room for @need elements; on failure *@arr is kept as it was. */
static bool grow(void **arr, uint64_t *cap, uint64_t need, size_t elem)
{
	void *p;

	if (need <= *cap)
		return true;
	p = realloc(*arr, (size_t)(need * 2) * elem);
	if (!p)
		return false;
	*arr = p;
	*cap = need * 2;
	return true;
}

static kvc_cu_result fake_init(unsigned int flags)
{
	ENTER(KVC_FAKE_INIT);
	if (flags)
		r = violation("cuInit: flags must be 0");
	else
		fake.initialized = true;
	LEAVE();
}

static kvc_cu_result fake_device_get_count(int *count)
{
	ENTER(KVC_FAKE_DEVICE_GET_COUNT);
	*count = fake.cfg.devices;
	LEAVE();
}

static kvc_cu_result fake_device_get(kvc_cu_device *dev, int ordinal)
{
	ENTER(KVC_FAKE_DEVICE_GET);
	if (ordinal < 0 || ordinal >= fake.cfg.devices)
		r = KVC_CUDA_ERROR_INVALID_DEVICE;
	else
		*dev = ordinal;
	LEAVE();
}

static kvc_cu_result fake_ctx_retain(kvc_cu_context *ctx, kvc_cu_device dev)
{
	ENTER(KVC_FAKE_CTX_RETAIN);
	if (dev < 0 || dev >= fake.cfg.devices) {
		r = KVC_CUDA_ERROR_INVALID_DEVICE;
	} else {
		*ctx = (kvc_cu_context)(uintptr_t)(0x1000 + dev);
		fake.counts.contexts++;
	}
	LEAVE();
}

static kvc_cu_result fake_ctx_release(kvc_cu_device dev)
{
	ENTER(KVC_FAKE_CTX_RELEASE);
	if (!fake.counts.contexts)
		r = violation("cuDevicePrimaryCtxRelease: nothing retained");
	else
		fake.counts.contexts--;
	LEAVE();
}

/* Each thread has its own stack of current contexts, as in the driver. */
static _Thread_local kvc_cu_context ctx_stack[16];
static _Thread_local unsigned int ctx_depth;

static kvc_cu_result fake_ctx_push(kvc_cu_context ctx)
{
	ENTER(KVC_FAKE_CTX_PUSH);
	if (!ctx || !fake.counts.contexts)
		r = violation("cuCtxPushCurrent: context not retained");
	else if (ctx_depth == sizeof(ctx_stack) / sizeof(ctx_stack[0]))
		r = violation("cuCtxPushCurrent: pushed %u deep, never popped?",
			      ctx_depth);
	else {
		ctx_stack[ctx_depth++] = ctx;
		fake.counts.pushed++;
	}
	LEAVE();
}

static kvc_cu_result fake_ctx_pop(kvc_cu_context *ctx)
{
	ENTER(KVC_FAKE_CTX_POP);
	if (!ctx_depth) {
		r = violation("cuCtxPopCurrent: nothing pushed on this thread");
	} else {
		*ctx = ctx_stack[--ctx_depth];
		fake.counts.pushed--;
	}
	LEAVE();
}

static kvc_cu_result check_prop(const char *call,
				const struct kvc_cu_alloc_prop *prop)
{
	if (!prop || prop->type != KVC_CU_MEM_ALLOCATION_TYPE_PINNED ||
	    prop->location.type != KVC_CU_MEM_LOCATION_TYPE_DEVICE ||
	    prop->location.id < 0 || prop->location.id >= fake.cfg.devices ||
	    prop->win32_handle_meta_data)
		return violation("%s: bad allocation properties", call);
	return KVC_CUDA_SUCCESS;
}

static kvc_cu_result fake_granularity(size_t *granularity,
				      const struct kvc_cu_alloc_prop *prop,
				      int option)
{
	ENTER(KVC_FAKE_GRANULARITY);
	r = check_prop("cuMemGetAllocationGranularity", prop);
	if (!r)
		*granularity = fake.cfg.granularity;
	LEAVE();
}

static kvc_cu_result fake_address_reserve(kvc_cu_ptr *ptr, size_t size,
					  size_t alignment, kvc_cu_ptr addr,
					  unsigned long long flags)
{
	uint64_t gran = fake.cfg.granularity, base, al;
	void *p;

	ENTER_LIVE(KVC_FAKE_ADDRESS_RESERVE);
	if (!size || !gran_ok(size) || flags ||
	    (alignment && (alignment & (alignment - 1)))) {
		r = violation(
			"cuMemAddressReserve: size %zu / alignment %zu not valid",
			size, alignment);
		goto out;
	}
	if (alignment < gran)
		alignment = gran;
	if (!grow((void **)&fake.res, &fake.cap_res, fake.nr_res + 1,
		  sizeof(*fake.res))) {
		r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	p = mmap(NULL, size + alignment, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	base = (uint64_t)(uintptr_t)p;
	al = (base + alignment - 1) & ~(uint64_t)(alignment - 1);
	if (al > base)
		munmap(p, al - base);
	if (base + alignment > al)
		munmap((void *)(uintptr_t)(al + size), base + alignment - al);
	fake.res[fake.nr_res].ptr = al;
	fake.res[fake.nr_res].size = size;
	fake.nr_res++;
	fake.counts.reservations++;
	*ptr = al;
	(void)addr;
	LEAVE();
}

static struct fake_reservation *find_reservation(uint64_t ptr, uint64_t size)
{
	uint64_t i;

	for (i = 0; i < fake.nr_res; i++)
		if (ptr >= fake.res[i].ptr && size <= fake.res[i].size &&
		    ptr - fake.res[i].ptr <= fake.res[i].size - size)
			return &fake.res[i];
	return NULL;
}

static bool overlaps_mapping(uint64_t ptr, uint64_t size)
{
	uint64_t i;

	for (i = 0; i < fake.nr_maps; i++)
		if (ptr < fake.maps[i].ptr + fake.maps[i].size &&
		    fake.maps[i].ptr < ptr + size)
			return true;
	return false;
}

/* Whether every byte of [ptr, ptr + size) is mapped. */
static bool fully_mapped(uint64_t ptr, uint64_t size, int min_access)
{
	uint64_t at = ptr, i;
	bool found;

	if (ptr + size < ptr)
		return false;
	while (at < ptr + size) {
		found = false;
		for (i = 0; i < fake.nr_maps; i++) {
			struct fake_mapping *m = &fake.maps[i];

			if (at >= m->ptr && at < m->ptr + m->size &&
			    (m->access & min_access) == min_access) {
				at = m->ptr + m->size;
				found = true;
				break;
			}
		}
		if (!found)
			return false;
	}
	return true;
}

/* The block of @arr holding all of [@ptr, @ptr + @bytes), or NULL. */
static struct fake_alloc *find_alloc(struct fake_alloc *arr, uint64_t nr,
				     uint64_t ptr, uint64_t bytes)
{
	uint64_t i;

	for (i = 0; i < nr; i++)
		if (ptr >= arr[i].ptr && bytes <= arr[i].bytes &&
		    ptr - arr[i].ptr <= arr[i].bytes - bytes)
			return &arr[i];
	return NULL;
}

/*
 * Whether the device may touch [@ptr, @ptr + @bytes): all of it in one
 * cuMemAlloc block, in one pinned host block (mapped into the device's
 * address space), or mapped with at least @min_access.
 */
static bool device_ok(uint64_t ptr, uint64_t bytes, int min_access)
{
	return find_alloc(fake.allocs, fake.nr_allocs, ptr, bytes) ||
	       find_alloc(fake.host_allocs, fake.nr_host_allocs, ptr, bytes) ||
	       fully_mapped(ptr, bytes, min_access);
}

/* The allocation @addr points into, as a range; false if none. */
static bool region_of(uint64_t addr, struct fake_range *r)
{
	struct fake_reservation *res;
	struct fake_alloc *a;

	a = find_alloc(fake.allocs, fake.nr_allocs, addr, 1);
	if (!a)
		a = find_alloc(fake.host_allocs, fake.nr_host_allocs, addr, 1);
	if (a) {
		r->ptr = a->ptr;
		r->bytes = a->bytes;
		return true;
	}
	res = find_reservation(addr, 1);
	if (!res)
		return false;
	r->ptr = res->ptr;
	r->bytes = res->size;
	return true;
}

/*
 * Stream work. Lock held throughout; the stream and event tables are not
 * reallocated while work runs (only creating one grows them).
 */

static void *make_handle(uint64_t tag, uint64_t slot, uint32_t gen)
{
	return (void *)(uintptr_t)(tag << 60 | (uint64_t)gen << SLOT_BITS |
				   slot);
}

static uint64_t handle_slot(const void *handle, uint64_t tag, uint32_t *gen)
{
	uint64_t v = (uint64_t)(uintptr_t)handle;

	if (v >> 60 != tag)
		return 0;
	*gen = (uint32_t)(v >> SLOT_BITS);
	return v & (MAX_SLOTS - 1);
}

/* CU_STREAM_LEGACY and CU_STREAM_PER_THREAD, as in cuda.h. */
#define STREAM_LEGACY ((kvc_cu_stream)(uintptr_t)0x1)
#define STREAM_PER_THREAD ((kvc_cu_stream)(uintptr_t)0x2)

/*
 * A live stream, or NULL. The NULL handle is the default stream, and so
 * are CU_STREAM_LEGACY and CU_STREAM_PER_THREAD (one host thread's
 * per-thread stream is not told apart from another's).
 */
static struct fake_stream *find_stream(kvc_cu_stream handle)
{
	uint32_t gen = 0;
	uint64_t slot;

	if (!fake.nr_streams)
		return NULL;
	if (!handle || handle == STREAM_LEGACY || handle == STREAM_PER_THREAD)
		return &fake.streams[0];
	slot = handle_slot(handle, STREAM_TAG, &gen);
	if (!slot || slot >= fake.nr_streams || !fake.streams[slot].live ||
	    fake.streams[slot].gen != gen)
		return NULL;
	return &fake.streams[slot];
}

static struct fake_event *find_event(kvc_cu_event handle)
{
	uint32_t gen = 0;
	uint64_t slot = handle_slot(handle, EVENT_TAG, &gen);

	if (!handle || slot >= fake.nr_events || !fake.events[slot].live ||
	    fake.events[slot].gen != gen)
		return NULL;
	return &fake.events[slot];
}

static bool stream_idle(const struct fake_stream *s)
{
	return s->head == s->nr;
}

/* An empty range overlaps nothing. */
static bool ranges_overlap(uint64_t a, uint64_t a_bytes, uint64_t b,
			   uint64_t b_bytes)
{
	return a_bytes && b_bytes && a < b + b_bytes && b < a + a_bytes;
}

/* Nothing queued, nothing run that the host has not seen complete. */
static bool stream_empty(const struct fake_stream *s)
{
	return s->done == s->nr;
}

static uint64_t slot_of(const struct fake_stream *s)
{
	return (uint64_t)(s - fake.streams);
}

/* @to = max(@to, @from), element-wise. */
static void clock_join(uint64_t *to, const uint64_t *from)
{
	unsigned int i;

	for (i = 0; i < MAX_STREAMS; i++)
		if (from[i] > to[i])
			to[i] = from[i];
}

/* What an operation owns: a launch's arguments, a staged source. */
static void op_free(struct fake_op *op)
{
	if (op->launch) {
		free(op->launch->ranges);
		free(op->launch);
		op->launch = NULL;
	}
	free(op->staged);
	op->staged = NULL;
}

/* Forget the operations that have run and that the host saw complete. */
static void prune(void)
{
	uint64_t i;

	for (i = 0; i < fake.nr_streams; i++) {
		struct fake_stream *s = &fake.streams[i];

		while (s->done < s->head &&
		       s->ops[s->done].epoch <= fake.host[i])
			op_free(&s->ops[s->done++]);
		if (stream_empty(s))
			s->done = s->head = s->nr = 0;
	}
}

/* The host saw complete what @clock covers. */
static void observe(const uint64_t *clock)
{
	clock_join(fake.host, clock);
	prune();
}

/* The host saw everything queued so far complete (sync mode). */
static void observe_all(void)
{
	uint64_t i;

	for (i = 0; i < fake.nr_streams; i++)
		fake.host[i] = fake.streams[i].clock[i];
	prune();
}

/*
 * A fault: the context is broken for good with @why, queued work is
 * dropped (and what has run is forgotten: nothing can race any more).
 */
static void break_context(kvc_cu_result why)
{
	uint64_t i, j;

	fake.sticky = why;
	for (i = 0; i < fake.nr_streams; i++) {
		struct fake_stream *s = &fake.streams[i];

		for (j = s->done; j < s->nr; j++)
			op_free(&s->ops[j]);
		for (j = s->head; j < s->nr; j++) {
			if (s->ops[j].kind == OP_RECORD)
				fake.events[s->ops[j].event].queued--;
			fake.counts.pending--;
		}
		s->done = s->head = s->nr = 0;
	}
}

/* "stream 0x...", or "the default stream", into @buf. */
static const char *stream_name(char *buf, size_t size, uint64_t slot)
{
	if (!slot)
		return "the default stream";
	snprintf(buf, size, "stream %p",
		 make_handle(STREAM_TAG, slot, fake.streams[slot].gen));
	return buf;
}

static const char *op_name(const struct fake_op *op)
{
	switch (op->kind) {
	case OP_KERNEL:
		return "kernel";
	case OP_LAUNCH:
		return op->launch->label;
	case OP_HTOD:
		return "host-to-device copy";
	case OP_DTOH:
		return "device-to-host copy";
	case OP_MEMSET:
		return "memset";
	default:
		return "copy";
	}
}

/* A range known byte for byte. */
static struct fake_range exact(uint64_t ptr, uint64_t bytes, bool write)
{
	return (struct fake_range){ ptr, bytes, write, false };
}

/* Whether an operation touches memory (not a record or a wait). */
static bool op_touches(const struct fake_op *op)
{
	return op->kind != OP_RECORD && op->kind != OP_WAIT;
}

/*
 * The ranges an operation touches, into @buf (two at most) or the
 * launch's own: a kernel reads and writes its range; a copy reads its
 * source and writes its destination; a set writes; a host-side range
 * counts only when it is pinned memory, which the device reaches.
 */
static uint32_t op_ranges(const struct fake_op *op, struct fake_range *buf,
			  const struct fake_range **out)
{
	uint32_t n = 0;

	*out = buf;
	switch (op->kind) {
	case OP_LAUNCH:
		*out = op->launch->ranges;
		return op->launch->nr_ranges;
	case OP_KERNEL:
	case OP_MEMSET:
		buf[n++] = exact(op->dst, op->bytes, true);
		break;
	case OP_MEMCPY:
		buf[n++] = exact(op->dst, op->bytes, true);
		buf[n++] = exact(op->src, op->bytes, false);
		break;
	case OP_HTOD:
		buf[n++] = exact(op->dst, op->bytes, true);
		if (op->pinned)
			buf[n++] = exact(op->src, op->bytes, false);
		break;
	case OP_DTOH:
		buf[n++] = exact(op->src, op->bytes, false);
		if (op->pinned)
			buf[n++] = exact(op->dst, op->bytes, true);
		break;
	default:
		break;
	}
	return n;
}

/*
 * Whether operations @a and @b conflict: touch the same bytes, at least
 * one of them writing there. [*@at, *@at + *@bytes) is the first such
 * range found.
 */
static bool conflict(const struct fake_op *a, const struct fake_op *b,
		     uint64_t *at, uint64_t *bytes)
{
	struct fake_range ba[2], bb[2];
	const struct fake_range *ra, *rb;
	uint32_t na = op_ranges(a, ba, &ra), nb = op_ranges(b, bb, &rb), i, j;

	for (i = 0; i < na; i++) {
		for (j = 0; j < nb; j++) {
			uint64_t lo = ra[i].ptr, hi = ra[i].ptr + ra[i].bytes;

			if (!(ra[i].write || rb[j].write) ||
			    !ranges_overlap(ra[i].ptr, ra[i].bytes, rb[j].ptr,
					    rb[j].bytes))
				continue;
			if (rb[j].ptr > lo)
				lo = rb[j].ptr;
			if (rb[j].ptr + rb[j].bytes < hi)
				hi = rb[j].ptr + rb[j].bytes;
			*at = lo;
			*bytes = hi - lo;
			return true;
		}
	}
	return false;
}

/*
 * Copy or kernel @op, about to be queued on @s, against the work on other
 * streams not ordered before it: a violation if one conflicts. Each
 * stream's work is in epoch order, newest last, so the scan stops at the
 * first operation ordered before @op.
 */
static void check_race(const struct fake_stream *s, const struct fake_op *op)
{
	uint64_t b = slot_of(s), a, j, at, bytes;

	for (a = 0; a < fake.nr_streams; a++) {
		const struct fake_stream *o = &fake.streams[a];

		if (a == b)
			continue;
		for (j = o->nr; j > o->done; j--) {
			const struct fake_op *x = &o->ops[j - 1];
			char na[64], nb[64];

			if (x->epoch <= s->clock[a])
				break;
			if (!op_touches(x) || !conflict(x, op, &at, &bytes))
				continue;
			violation(
				"unordered: %s on %s and %s on %s both touch [%#llx, +%llu), at least one writing, with no event wait or synchronize seen by the host between them",
				op_name(x), stream_name(na, sizeof(na), a),
				op_name(op), stream_name(nb, sizeof(nb), b),
				(unsigned long long)at,
				(unsigned long long)bytes);
			return;
		}
	}
}

/* The stream whose queue still holds operation @serial, or NULL. */
static struct fake_stream *queued_in(uint64_t serial)
{
	uint64_t i, j;

	for (i = 0; i < fake.nr_streams; i++) {
		struct fake_stream *s = &fake.streams[i];

		if (stream_idle(s) || serial < s->ops[s->head].serial ||
		    serial > s->ops[s->nr - 1].serial)
			continue;
		for (j = s->head; j < s->nr; j++)
			if (s->ops[j].serial == serial)
				return s;
	}
	return NULL;
}

static bool event_done(const struct fake_event *e)
{
	return !e->queued || !queued_in(e->record);
}

static bool runnable(const struct fake_op *op)
{
	return op->kind != OP_WAIT || !queued_in(op->record);
}

/*
 * Whether queued work reads or writes any of [ptr, ptr + size); with
 * @exact, a kernel's loose ranges (whole allocations) do not count.
 */
static bool queued_touches(uint64_t ptr, uint64_t size, bool exact)
{
	const struct fake_range *r;
	struct fake_range buf[2];
	uint64_t i, j;
	uint32_t k, n;

	for (i = 0; i < fake.nr_streams; i++) {
		struct fake_stream *s = &fake.streams[i];

		for (j = s->head; j < s->nr; j++) {
			n = op_ranges(&s->ops[j], buf, &r);
			for (k = 0; k < n; k++)
				if (!(exact && r[k].loose) &&
				    ranges_overlap(ptr, size, r[k].ptr,
						   r[k].bytes))
					return true;
		}
	}
	return false;
}

/*
 * Run a copy; false when it faulted (the context is then broken). The
 * device side is checked again: it may have been unmapped since.
 */
static bool run_copy(struct fake_op *op)
{
	static const char *const calls[] = {
		[OP_MEMCPY] = "cuMemcpyDtoDAsync",
		[OP_HTOD] = "cuMemcpyHtoDAsync",
		[OP_DTOH] = "cuMemcpyDtoHAsync",
	};
	bool ok = true;

	if (op->kind != OP_HTOD)
		ok = device_ok(op->src, op->bytes,
			       KVC_CU_MEM_ACCESS_FLAGS_PROT_READ);
	if (op->kind != OP_DTOH)
		ok = ok && device_ok(op->dst, op->bytes,
				     KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
	if (!ok) {
		violation(
			"queued %s %#llx -> %#llx (%llu bytes) found its memory unmapped or inaccessible when it ran",
			calls[op->kind], (unsigned long long)op->src,
			(unsigned long long)op->dst,
			(unsigned long long)op->bytes);
		break_context(KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
		return false;
	}
	if (op->bytes)
		memmove((void *)(uintptr_t)op->dst, (void *)(uintptr_t)op->src,
			op->bytes);
	/* A staged source is needed no more. */
	free(op->staged);
	op->staged = NULL;
	return true;
}

/*
 * Run a kernel's emulation. Its exact ranges must be accessible and each
 * address in its arguments must still point into an allocation, or it
 * faults; an emulation that refuses its arguments fails the launch.
 * Either breaks the context.
 */
static void run_launch(struct fake_launch *l)
{
	void *params[1] = { l->args };
	struct fake_range where;
	uint32_t i;

	for (i = 0; i < l->nr_ranges; i++) {
		const struct fake_range *r = &l->ranges[i];

		if (r->loose ||
		    device_ok(r->ptr, r->bytes,
			      r->write ?
				      KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE :
				      KVC_CU_MEM_ACCESS_FLAGS_PROT_READ))
			continue;
		violation(
			"%s on [%#llx, +%llu) found its memory unmapped or inaccessible when it ran",
			l->label, (unsigned long long)r->ptr,
			(unsigned long long)r->bytes);
		break_context(KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
		return;
	}
	for (i = 0; i < l->nr_addrs; i++) {
		if (region_of(l->addrs[i], &where))
			continue;
		violation(
			"%s: argument address %#llx points into no allocation when it ran",
			l->label, (unsigned long long)l->addrs[i]);
		break_context(KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
		return;
	}
	if (kvc_emulate_launch(l->name, l->grid, l->threads, l->smem, params)) {
		violation(
			"%s (grid %u x %u x %u, %u threads, %u bytes of shared memory): the emulation refused its arguments; a device would fail the launch",
			l->label, l->grid[0], l->grid[1], l->grid[2],
			l->threads, l->smem);
		break_context(KVC_CUDA_ERROR_LAUNCH_FAILED);
	}
}

/*
 * Run the operation at the head of @s (runnable: the caller checked). It
 * stays in ops[done .. head) until the host sees it complete. A fault
 * breaks the context.
 */
static void run_head(struct fake_stream *s)
{
	struct fake_op *op = &s->ops[s->head++];
	struct fake_event *e;
	uint32_t *w;
	uint8_t *p;
	uint64_t i;

	fake.counts.pending--;
	fake.ticks++;
	switch (op->kind) {
	case OP_MEMCPY:
	case OP_HTOD:
	case OP_DTOH:
		if (!run_copy(op))
			return;
		break;
	case OP_MEMSET:
		if (!device_ok(op->dst, op->bytes,
			       KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE)) {
			violation(
				"queued cuMemsetD32Async on [%#llx, +%llu) found its memory unmapped or inaccessible when it ran",
				(unsigned long long)op->dst,
				(unsigned long long)op->bytes);
			break_context(KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
			return;
		}
		w = (uint32_t *)(uintptr_t)op->dst;
		for (i = 0; i < op->bytes / 4; i++)
			w[i] = op->value;
		break;
	case OP_KERNEL:
		if (!fully_mapped(op->dst, op->bytes,
				  KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE)) {
			violation(
				"kernel on [%#llx, +%llu) found its memory unmapped or not read-write when it ran",
				(unsigned long long)op->dst,
				(unsigned long long)op->bytes);
			break_context(KVC_CUDA_ERROR_ILLEGAL_ADDRESS);
			return;
		}
		p = (uint8_t *)(uintptr_t)op->dst;
		for (i = 0; i < op->bytes; i++)
			p[i]++;
		break;
	case OP_LAUNCH:
		run_launch(op->launch);
		break;
	case OP_RECORD:
		e = &fake.events[op->event];
		e->queued--;
		if (e->record == op->serial)
			e->time = fake.ticks;
		break;
	case OP_WAIT:
		break;
	}
}

/* Run whatever can run, streams in turn, until nothing can. */
static uint64_t run_all(void)
{
	uint64_t ran = 0, i;
	bool progress;

	do {
		progress = false;
		for (i = 0; i < fake.nr_streams; i++) {
			struct fake_stream *s = &fake.streams[i];

			if (!stream_idle(s) && runnable(&s->ops[s->head])) {
				run_head(s);
				ran++;
				progress = true;
			}
		}
	} while (progress);
	return ran;
}

/*
 * Run operation @serial, if still queued, and what it needs: what is
 * before it on its stream, and the records its waits wait for. Nothing
 * more, so work that nothing waited for stays queued. A wait only waits
 * for an earlier operation, so the recursion ends.
 */
static void run_through(uint64_t serial)
{
	struct fake_stream *s = queued_in(serial);

	while (s && !stream_idle(s) && s->ops[s->head].serial <= serial) {
		struct fake_op *op = &s->ops[s->head];

		if (runnable(op))
			run_head(s);
		else
			run_through(op->record);
	}
}

/*
 * Queue @op on @s; in sync mode it runs at once, and the host sees it
 * complete. In async mode a copy or a kernel is first checked against the
 * work on other streams it is not ordered after.
 */
static kvc_cu_result enqueue(struct fake_stream *s, struct fake_op *op)
{
	uint64_t slot = slot_of(s);

	if (s->done && s->done * 2 >= s->nr) {
		memmove(s->ops, s->ops + s->done,
			(size_t)(s->nr - s->done) * sizeof(*s->ops));
		s->nr -= s->done;
		s->head -= s->done;
		s->done = 0;
	}
	if (!grow((void **)&s->ops, &s->cap, s->nr + 1, sizeof(*s->ops)))
		return KVC_CUDA_ERROR_OUT_OF_MEMORY;
	if (fake.async && op_touches(op))
		check_race(s, op);
	op->serial = ++fake.next_serial;
	op->epoch = ++s->clock[slot];
	s->ops[s->nr++] = *op;
	fake.counts.pending++;
	if (op->kind == OP_RECORD) {
		struct fake_event *e = &fake.events[op->event];

		e->record = op->serial;
		e->queued++;
		memcpy(e->clock, s->clock, sizeof(e->clock));
	}
	/* Nothing else is queued in sync mode: this runs now. */
	if (!fake.async) {
		run_all();
		observe_all();
	}
	return KVC_CUDA_SUCCESS;
}

static kvc_cu_result fake_address_free(kvc_cu_ptr ptr, size_t size)
{
	struct fake_reservation *res;

	ENTER(KVC_FAKE_ADDRESS_FREE);
	res = find_reservation(ptr, size);
	if (!res || res->ptr != ptr || res->size != size) {
		r = violation(
			"cuMemAddressFree: [%#llx, +%zu) is not a whole reservation",
			ptr, size);
		goto out;
	}
	if (overlaps_mapping(ptr, size)) {
		r = violation(
			"cuMemAddressFree: reservation still has mappings");
		goto out;
	}
	if (queued_touches(ptr, size, false)) {
		r = violation(
			"cuMemAddressFree: work still queued on a stream uses the reservation");
		goto out;
	}
	munmap((void *)(uintptr_t)ptr, size);
	*res = fake.res[--fake.nr_res];
	fake.counts.reservations--;
	LEAVE();
}

static kvc_cu_result fake_create(kvc_cu_handle *handle, size_t size,
				 const struct kvc_cu_alloc_prop *prop,
				 unsigned long long flags)
{
	struct fake_handle *h;

	ENTER_LIVE(KVC_FAKE_CREATE);
	if (!size || !gran_ok(size) || flags) {
		r = violation(
			"cuMemCreate: size %zu not a multiple of the granularity",
			size);
		goto out;
	}
	r = check_prop("cuMemCreate", prop);
	if (r)
		goto out;
	/* One budget for VMM and cuMemAlloc memory, as on a device. */
	if (fake.cfg.memory_bytes &&
	    fake.counts.memory_used + fake.counts.alloc_bytes + size >
		    fake.cfg.memory_bytes) {
		r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	if (!grow((void **)&fake.handles, &fake.cap_handles,
		  fake.nr_handles + 1, sizeof(*fake.handles)) ||
	    fallocate(fake.memfd, 0, (off_t)fake.next_phys, (off_t)size)) {
		r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	h = &fake.handles[fake.nr_handles++];
	h->phys = fake.next_phys;
	h->size = size;
	h->maps = 0;
	h->released = false;
	fake.next_phys += size;
	fake.counts.handles++;
	fake.counts.memory_used += size;
	*handle = fake.nr_handles;
	LEAVE();
}

static struct fake_handle *live_handle(kvc_cu_handle handle)
{
	if (!handle || handle > fake.nr_handles ||
	    fake.handles[handle - 1].released)
		return NULL;
	return &fake.handles[handle - 1];
}

/* Device memory goes back once the handle is released and unmapped. */
static void maybe_free_phys(struct fake_handle *h)
{
	if (h->released && !h->maps) {
		fallocate(fake.memfd,
			  FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)h->phys, (off_t)h->size);
		fake.counts.memory_used -= h->size;
	}
}

static kvc_cu_result fake_release(kvc_cu_handle handle)
{
	struct fake_handle *h;

	ENTER(KVC_FAKE_RELEASE);
	h = live_handle(handle);
	if (!h) {
		r = violation(
			"cuMemRelease: handle %llu unknown or already released",
			handle);
		goto out;
	}
	h->released = true;
	fake.counts.handles--;
	maybe_free_phys(h);
	LEAVE();
}

static kvc_cu_result fake_map(kvc_cu_ptr ptr, size_t size, size_t offset,
			      kvc_cu_handle handle, unsigned long long flags)
{
	struct fake_handle *h;
	struct fake_mapping *m;

	ENTER_LIVE(KVC_FAKE_MAP);
	h = live_handle(handle);
	if (!h) {
		r = violation("cuMemMap: handle %llu unknown or released",
			      handle);
		goto out;
	}
	if (!size || !gran_ok(ptr) || !gran_ok(size) || !gran_ok(offset) ||
	    flags || offset > h->size || size > h->size - offset) {
		r = violation(
			"cuMemMap: [%#llx, +%zu) at offset %zu is misaligned or outside the handle",
			ptr, size, offset);
		goto out;
	}
	if (!find_reservation(ptr, size)) {
		r = violation(
			"cuMemMap: [%#llx, +%zu) is not inside a reservation",
			ptr, size);
		goto out;
	}
	if (overlaps_mapping(ptr, size)) {
		r = violation("cuMemMap: [%#llx, +%zu) is already mapped", ptr,
			      size);
		goto out;
	}
	if (!grow((void **)&fake.maps, &fake.cap_maps, fake.nr_maps + 1,
		  sizeof(*fake.maps)) ||
	    mmap((void *)(uintptr_t)ptr, size, PROT_NONE,
		 MAP_SHARED | MAP_FIXED, fake.memfd,
		 (off_t)(h->phys + offset)) == MAP_FAILED) {
		r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	m = &fake.maps[fake.nr_maps++];
	m->ptr = ptr;
	m->size = size;
	m->handle = handle;
	m->access = KVC_CU_MEM_ACCESS_FLAGS_PROT_NONE;
	h->maps++;
	fake.counts.mappings++;
	LEAVE();
}

static kvc_cu_result fake_set_access(kvc_cu_ptr ptr, size_t size,
				     const struct kvc_cu_access_desc *desc,
				     size_t count)
{
	uint64_t i;
	int prot;

	ENTER_LIVE(KVC_FAKE_SET_ACCESS);
	if (!desc || count != 1 ||
	    desc->location.type != KVC_CU_MEM_LOCATION_TYPE_DEVICE ||
	    desc->location.id < 0 || desc->location.id >= fake.cfg.devices ||
	    (desc->flags != KVC_CU_MEM_ACCESS_FLAGS_PROT_NONE &&
	     desc->flags != KVC_CU_MEM_ACCESS_FLAGS_PROT_READ &&
	     desc->flags != KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE)) {
		r = violation("cuMemSetAccess: bad access descriptor");
		goto out;
	}
	if (!size || !gran_ok(ptr) || !gran_ok(size) ||
	    !fully_mapped(ptr, size, 0)) {
		r = violation(
			"cuMemSetAccess: [%#llx, +%zu) is not fully mapped",
			ptr, size);
		goto out;
	}
	/* Access is tracked per mapping: a range must hold whole ones. */
	for (i = 0; i < fake.nr_maps; i++) {
		struct fake_mapping *m = &fake.maps[i];

		if (m->ptr < ptr + size && ptr < m->ptr + m->size &&
		    (m->ptr < ptr || m->ptr + m->size > ptr + size)) {
			r = violation(
				"cuMemSetAccess: [%#llx, +%zu) splits a mapping; the fake tracks access per mapping",
				ptr, size);
			goto out;
		}
	}
	prot = desc->flags == KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE ?
		       PROT_READ | PROT_WRITE :
	       desc->flags == KVC_CU_MEM_ACCESS_FLAGS_PROT_READ ? PROT_READ :
								  PROT_NONE;
	if (mprotect((void *)(uintptr_t)ptr, size, prot)) {
		r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	for (i = 0; i < fake.nr_maps; i++)
		if (fake.maps[i].ptr >= ptr &&
		    fake.maps[i].ptr + fake.maps[i].size <= ptr + size)
			fake.maps[i].access = desc->flags;
	LEAVE();
}

static kvc_cu_result fake_unmap(kvc_cu_ptr ptr, size_t size)
{
	struct fake_mapping *m = NULL;
	uint64_t i;

	ENTER(KVC_FAKE_UNMAP);
	for (i = 0; i < fake.nr_maps; i++)
		if (fake.maps[i].ptr == ptr && fake.maps[i].size == size)
			m = &fake.maps[i];
	if (!m) {
		r = violation(
			"cuMemUnmap: [%#llx, +%zu) is not exactly one mapping",
			ptr, size);
		goto out;
	}
	/* cuMemUnmap does not wait for streams: the device would fault. */
	if (queued_touches(ptr, size, true)) {
		r = violation(
			"cuMemUnmap: [%#llx, +%zu) is used by work still queued on a stream",
			ptr, size);
		goto out;
	}
	mmap((void *)(uintptr_t)ptr, size, PROT_NONE,
	     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	fake.handles[m->handle - 1].maps--;
	maybe_free_phys(&fake.handles[m->handle - 1]);
	*m = fake.maps[--fake.nr_maps];
	fake.counts.mappings--;
	LEAVE();
}

/* Streams and events are made in the current context, as in the driver. */
static kvc_cu_result need_context(const char *call)
{
	if (ctx_depth)
		return KVC_CUDA_SUCCESS;
	violation("%s: no context is current on this thread", call);
	return KVC_CUDA_ERROR_INVALID_CONTEXT;
}

static kvc_cu_result fake_stream_create(kvc_cu_stream *stream,
					unsigned int flags)
{
	struct fake_stream *s;
	uint64_t slot, i;

	ENTER_LIVE(KVC_FAKE_STREAM_CREATE);
	r = need_context("cuStreamCreate");
	if (r)
		goto out;
	/*
	 * Slot 0 is the default stream; a dead one is reused once none of
	 * its work is queued or unseen, so that no operation of the old
	 * stream is taken for one of the new stream's (ordered before it).
	 */
	for (slot = 1; slot < fake.nr_streams; slot++)
		if (!fake.streams[slot].live &&
		    stream_empty(&fake.streams[slot]))
			break;
	if (slot == MAX_STREAMS) {
		violation(
			"cuStreamCreate: the fake's %d stream slots all hold a live stream or work the host has not seen complete",
			MAX_STREAMS);
		r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	if (slot == fake.nr_streams) {
		memset(&fake.streams[slot], 0, sizeof(*fake.streams));
		fake.nr_streams++;
	}
	s = &fake.streams[slot];
	s->live = true;
	s->gen++;
	/* A new stream knows nothing; its epochs go on from the old one's. */
	for (i = 0; i < MAX_STREAMS; i++)
		if (i != slot)
			s->clock[i] = 0;
	fake.counts.streams++;
	*stream = make_handle(STREAM_TAG, slot, s->gen);
	LEAVE();
}

/* Work still queued on the stream runs; only the handle dies now. */
static kvc_cu_result fake_stream_destroy(kvc_cu_stream stream)
{
	struct fake_stream *s;

	ENTER(KVC_FAKE_STREAM_DESTROY);
	s = find_stream(stream);
	if (!s || s == &fake.streams[0]) {
		r = bad_handle("cuStreamDestroy", stream);
		goto out;
	}
	s->live = false;
	fake.counts.streams--;
	LEAVE();
}

static kvc_cu_result fake_stream_sync(kvc_cu_stream stream)
{
	struct fake_stream *s;

	ENTER_LIVE(KVC_FAKE_STREAM_SYNC);
	s = find_stream(stream);
	if (!s) {
		r = bad_handle("cuStreamSynchronize", stream);
		goto out;
	}
	if (!stream_idle(s))
		run_through(s->ops[s->nr - 1].serial);
	/* Its work may have faulted: the error is the synchronize's. */
	if (fake.sticky)
		r = fake.sticky;
	else
		observe(s->clock);
	LEAVE();
}

static kvc_cu_result fake_memcpy(kvc_cu_ptr dst, kvc_cu_ptr src, size_t bytes,
				 kvc_cu_stream stream)
{
	struct fake_op op = { .kind = OP_MEMCPY };
	struct fake_stream *s;

	ENTER_LIVE(KVC_FAKE_MEMCPY);
	s = find_stream(stream);
	if (!s) {
		r = bad_handle("cuMemcpyDtoDAsync", stream);
		goto out;
	}
	/* Checked when queued, and again when it runs. */
	if (!device_ok(src, bytes, KVC_CU_MEM_ACCESS_FLAGS_PROT_READ) ||
	    !device_ok(dst, bytes, KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE)) {
		r = violation(
			"cuMemcpyDtoDAsync: %#llx -> %#llx (%zu bytes) touches inaccessible memory",
			src, dst, bytes);
		goto out;
	}
	op.dst = dst;
	op.src = src;
	op.bytes = bytes;
	r = enqueue(s, &op);
	LEAVE();
}

static kvc_cu_result fake_event_create(kvc_cu_event *event, unsigned int flags)
{
	struct fake_event *e;
	uint64_t slot;

	ENTER_LIVE(KVC_FAKE_EVENT_CREATE);
	r = need_context("cuEventCreate");
	if (r)
		goto out;
	/* CU_EVENT_BLOCKING_SYNC (1) and CU_EVENT_DISABLE_TIMING only. */
	if (flags & ~(unsigned int)(0x1 | KVC_CU_EVENT_DISABLE_TIMING)) {
		r = violation("cuEventCreate: flags %#x not supported", flags);
		goto out;
	}
	/* A destroyed event's slot is reused once its records have run. */
	for (slot = 0; slot < fake.nr_events; slot++)
		if (!fake.events[slot].live && !fake.events[slot].queued)
			break;
	if (slot == fake.nr_events) {
		if (slot == MAX_SLOTS ||
		    !grow((void **)&fake.events, &fake.cap_events, slot + 1,
			  sizeof(*fake.events))) {
			r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
			goto out;
		}
		memset(&fake.events[slot], 0, sizeof(*fake.events));
		fake.nr_events++;
	}
	e = &fake.events[slot];
	e->live = true;
	e->gen++;
	e->record = 0;
	e->time = 0;
	e->flags = flags;
	memset(e->clock, 0, sizeof(e->clock));
	fake.counts.events++;
	*event = make_handle(EVENT_TAG, slot, e->gen);
	LEAVE();
}

static kvc_cu_result fake_event_record(kvc_cu_event event, kvc_cu_stream stream)
{
	struct fake_op op = { .kind = OP_RECORD };
	struct fake_stream *s;
	struct fake_event *e;

	ENTER_LIVE(KVC_FAKE_EVENT_RECORD);
	e = find_event(event);
	s = find_stream(stream);
	if (!e || !s) {
		r = bad_handle("cuEventRecord", !e ? event : stream);
		goto out;
	}
	op.event = (uint64_t)(e - fake.events);
	r = enqueue(s, &op);
	LEAVE();
}

/* An event never recorded has completed, as in CUDA. */
static kvc_cu_result fake_event_query(kvc_cu_event event)
{
	struct fake_event *e;

	ENTER_LIVE(KVC_FAKE_EVENT_QUERY);
	e = find_event(event);
	if (!e)
		r = bad_handle("cuEventQuery", event);
	else if (!event_done(e))
		r = KVC_CUDA_ERROR_NOT_READY;
	else
		observe(e->clock);
	LEAVE();
}

static kvc_cu_result fake_event_sync(kvc_cu_event event)
{
	struct fake_event *e;

	ENTER_LIVE(KVC_FAKE_EVENT_SYNC);
	e = find_event(event);
	if (!e)
		r = bad_handle("cuEventSynchronize", event);
	else if (e->queued)
		run_through(e->record);
	if (!r && fake.sticky)
		r = fake.sticky;
	else if (!r)
		observe(e->clock);
	LEAVE();
}

/* Records still queued run; the handle dies now. */
static kvc_cu_result fake_event_destroy(kvc_cu_event event)
{
	struct fake_event *e;

	ENTER(KVC_FAKE_EVENT_DESTROY);
	e = find_event(event);
	if (!e) {
		r = bad_handle("cuEventDestroy", event);
		goto out;
	}
	e->live = false;
	fake.counts.events--;
	LEAVE();
}

/* The wait is for the event's latest record as of now, not a later one. */
static kvc_cu_result fake_stream_wait_event(kvc_cu_stream stream,
					    kvc_cu_event event,
					    unsigned int flags)
{
	struct fake_op op = { .kind = OP_WAIT };
	struct fake_stream *s;
	struct fake_event *e;

	ENTER_LIVE(KVC_FAKE_STREAM_WAIT_EVENT);
	e = find_event(event);
	s = find_stream(stream);
	if (!e || !s) {
		r = bad_handle("cuStreamWaitEvent", !e ? event : stream);
		goto out;
	}
	if (flags != KVC_CU_EVENT_WAIT_DEFAULT) {
		r = violation("cuStreamWaitEvent: flags %#x not supported",
			      flags);
		goto out;
	}
	/* Ordered after the record even when it has run already. */
	clock_join(s->clock, e->clock);
	/* Nothing to wait for: no operation queued. */
	if (event_done(e))
		goto out;
	op.record = e->record;
	r = enqueue(s, &op);
	LEAVE();
}

/*
 * Kernels, device memory and measurements.
 */

static kvc_cu_result fake_device_attribute(int *value, int attrib,
					   kvc_cu_device dev)
{
	const struct kvc_fake_config *c = &fake.cfg;

	ENTER(KVC_FAKE_DEVICE_ATTRIBUTE);
	if (dev < 0 || dev >= c->devices) {
		r = KVC_CUDA_ERROR_INVALID_DEVICE;
		goto out;
	}
	if (!value) {
		r = violation("cuDeviceGetAttribute: no value pointer");
		goto out;
	}
	switch (attrib) {
	case KVC_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
		*value = (int)c->sms;
		break;
	case KVC_CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE:
		*value = (int)c->mem_clock_khz;
		break;
	case KVC_CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH:
		*value = (int)c->bus_bits;
		break;
	case KVC_CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE:
		*value = c->l2_bytes > INT32_MAX ? INT32_MAX : (int)c->l2_bytes;
		break;
	case KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
		*value = (int)c->cc_major;
		break;
	case KVC_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
		*value = (int)c->cc_minor;
		break;
	case KVC_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN:
		*value = (int)c->smem_optin;
		break;
	default:
		/* One the fake does not model: say so, loudly. */
		r = violation(
			"cuDeviceGetAttribute: attribute %d is not one the fake models",
			attrib);
	}
	LEAVE();
}

static struct fake_module *find_module(kvc_cu_module handle)
{
	uint32_t gen = 0;
	uint64_t slot = handle_slot(handle, MODULE_TAG, &gen);

	if (!handle || slot >= fake.nr_modules || !fake.modules[slot].live ||
	    fake.modules[slot].gen != gen)
		return NULL;
	return &fake.modules[slot];
}

static struct fake_function *find_function(kvc_cu_function handle)
{
	uint32_t gen = 0;
	uint64_t slot = handle_slot(handle, FUNCTION_TAG, &gen);

	if (!handle || slot >= fake.nr_functions ||
	    !fake.functions[slot].live || fake.functions[slot].gen != gen)
		return NULL;
	return &fake.functions[slot];
}

/* Any image loads: the kernels it would hold are emulated by name. */
static kvc_cu_result fake_module_load(kvc_cu_module *module, const void *image)
{
	struct fake_module *m;
	uint64_t slot;

	ENTER_LIVE(KVC_FAKE_MODULE_LOAD);
	r = need_context("cuModuleLoadData");
	if (r)
		goto out;
	if (!module || !image) {
		r = violation("cuModuleLoadData: no module pointer or image");
		goto out;
	}
	for (slot = 0; slot < fake.nr_modules; slot++)
		if (!fake.modules[slot].live)
			break;
	if (slot == fake.nr_modules) {
		if (slot == MAX_SLOTS ||
		    !grow((void **)&fake.modules, &fake.cap_modules, slot + 1,
			  sizeof(*fake.modules))) {
			r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
			goto out;
		}
		memset(&fake.modules[slot], 0, sizeof(*fake.modules));
		fake.nr_modules++;
	}
	m = &fake.modules[slot];
	m->live = true;
	m->gen++;
	fake.counts.modules++;
	*module = make_handle(MODULE_TAG, slot, m->gen);
	LEAVE();
}

/* Its functions die with it; launches already queued still run. */
static kvc_cu_result fake_module_unload(kvc_cu_module module)
{
	struct fake_module *m;
	uint64_t i;

	ENTER(KVC_FAKE_MODULE_UNLOAD);
	m = find_module(module);
	if (!m) {
		r = bad_handle("cuModuleUnload", module);
		goto out;
	}
	for (i = 0; i < fake.nr_functions; i++)
		if (fake.functions[i].module == (uint64_t)(m - fake.modules))
			fake.functions[i].live = false;
	m->live = false;
	fake.counts.modules--;
	LEAVE();
}

/* The default limit on dynamic shared memory, as on every device. */
#define SMEM_DEFAULT (48u << 10)

static kvc_cu_result fake_module_get_function(kvc_cu_function *fn,
					      kvc_cu_module module,
					      const char *name)
{
	struct fake_function *f;
	struct fake_module *m;
	uint64_t slot, ms;

	ENTER_LIVE(KVC_FAKE_MODULE_GET_FUNCTION);
	if (!fn || !name) {
		r = violation(
			"cuModuleGetFunction: no function pointer or name");
		goto out;
	}
	m = find_module(module);
	if (!m) {
		r = bad_handle("cuModuleGetFunction", module);
		goto out;
	}
	/* Not a broken rule: callers look kernels up to learn what is there. */
	if (fake.cfg.no_kernels || strlen(name) >= sizeof(f->name) ||
	    !kvc_emulate_known(name)) {
		r = KVC_CUDA_ERROR_NOT_FOUND;
		goto out;
	}
	ms = (uint64_t)(m - fake.modules);
	/* The same name in the same module is the same function. */
	for (slot = 0; slot < fake.nr_functions; slot++) {
		f = &fake.functions[slot];
		if (f->live && f->module == ms && !strcmp(f->name, name)) {
			*fn = make_handle(FUNCTION_TAG, slot, f->gen);
			goto out;
		}
	}
	for (slot = 0; slot < fake.nr_functions; slot++)
		if (!fake.functions[slot].live)
			break;
	if (slot == fake.nr_functions) {
		if (slot == MAX_SLOTS ||
		    !grow((void **)&fake.functions, &fake.cap_functions,
			  slot + 1, sizeof(*fake.functions))) {
			r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
			goto out;
		}
		memset(&fake.functions[slot], 0, sizeof(*fake.functions));
		fake.nr_functions++;
	}
	f = &fake.functions[slot];
	f->live = true;
	f->gen++;
	f->module = ms;
	f->max_smem = SMEM_DEFAULT;
	snprintf(f->name, sizeof(f->name), "%s", name);
	*fn = make_handle(FUNCTION_TAG, slot, f->gen);
	LEAVE();
}

static kvc_cu_result fake_func_set_attribute(kvc_cu_function fn, int attrib,
					     int value)
{
	struct fake_function *f;

	ENTER(KVC_FAKE_FUNC_SET_ATTRIBUTE);
	f = find_function(fn);
	if (!f) {
		r = bad_handle("cuFuncSetAttribute", fn);
		goto out;
	}
	if (attrib != KVC_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
		r = violation(
			"cuFuncSetAttribute: attribute %d is not one the fake models",
			attrib);
		goto out;
	}
	if (value < 0 || (uint32_t)value > fake.cfg.smem_optin) {
		r = violation(
			"cuFuncSetAttribute: %s: %d bytes of dynamic shared memory, the device allows %u",
			f->name, value, fake.cfg.smem_optin);
		goto out;
	}
	f->max_smem = (uint32_t)value;
	LEAVE();
}

/*
 * The argument struct of each kernel family (by name prefix), and the
 * addresses in it: what each kernel may touch, and whether it writes
 * there. The attention kernels only read the cache; the metadata, the
 * outputs and the workspaces they write.
 */
struct arg_field {
	size_t off;
	bool write;
};

struct arg_layout {
	const char *prefix;
	size_t size;
	uint32_t nr;
	struct arg_field fields[7];
};

#define FIELD(type, member, w)            \
	{                                 \
		offsetof(type, member), w \
	}
#define ATTENTION_FIELDS(type)                                                \
	{                                                                     \
		FIELD(type, kv.base, false), FIELD(type, kv.meta, true),      \
			FIELD(type, tables, false), FIELD(type, lens, false), \
			FIELD(type, q, false), FIELD(type, out, true),        \
			FIELD(type, ws, true)                                 \
	}

static const struct arg_layout arg_layouts[] = {
	{ "kvc_decode_", sizeof(struct kvc_decode_args), 7,
	  ATTENTION_FIELDS(struct kvc_decode_args) },
	{ "kvc_prefill_", sizeof(struct kvc_prefill_args), 7,
	  ATTENTION_FIELDS(struct kvc_prefill_args) },
	{ "kvc_cache_write",
	  sizeof(struct kvc_cache_write_args),
	  6,
	  { FIELD(struct kvc_cache_write_args, kv.base, true),
	    FIELD(struct kvc_cache_write_args, kv.meta, true),
	    FIELD(struct kvc_cache_write_args, slots, false),
	    FIELD(struct kvc_cache_write_args, k, false),
	    FIELD(struct kvc_cache_write_args, v, false),
	    FIELD(struct kvc_cache_write_args, pos, false) } },
	{ "kvc_move_cache",
	  sizeof(struct kvc_move_args),
	  3,
	  { FIELD(struct kvc_move_args, kv.base, true),
	    FIELD(struct kvc_move_args, kv.meta, true),
	    FIELD(struct kvc_move_args, moves, false) } },
	{ "kvc_block_copy",
	  sizeof(struct kvc_copy_args),
	  3,
	  { FIELD(struct kvc_copy_args, src_base, false),
	    FIELD(struct kvc_copy_args, dst_base, true),
	    FIELD(struct kvc_copy_args, pairs_dev, false) } },
};

#undef ATTENTION_FIELDS
#undef FIELD

static const struct arg_layout *arg_layout(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(arg_layouts) / sizeof(arg_layouts[0]); i++)
		if (!strncmp(name, arg_layouts[i].prefix,
			     strlen(arg_layouts[i].prefix)))
			return &arg_layouts[i];
	return NULL;
}

/*
 * What launch @l touches. A block copy with inline pairs: exactly its
 * items. Anything else: the whole allocation each address in its
 * arguments points into (loose), and, for a block copy, exactly its
 * pairs array. Every address is checked again when the kernel runs.
 */
static bool launch_ranges(struct fake_launch *l, const struct arg_layout *lay)
{
	const struct kvc_copy_args *c = (const void *)l->args;
	bool copy = !strcmp(lay->prefix, "kvc_block_copy");
	struct fake_range r;
	uint64_t v;
	uint32_t i, n;

	if (copy && !c->pairs_dev) {
		n = c->n < KVC_COPY_INLINE ? c->n : KVC_COPY_INLINE;
		l->ranges = calloc(2 * (size_t)n + 1, sizeof(*l->ranges));
		if (!l->ranges)
			return false;
		for (i = 0; i < n; i++) {
			l->ranges[l->nr_ranges++] =
				exact(c->src_base + (uint64_t)c->pairs[2 * i] *
							    c->bytes,
				      c->bytes, false);
			l->ranges[l->nr_ranges++] = exact(
				c->dst_base + (uint64_t)c->pairs[2 * i + 1] *
						      c->bytes,
				c->bytes, true);
		}
		return true;
	}
	l->ranges = calloc(lay->nr + 1, sizeof(*l->ranges));
	if (!l->ranges)
		return false;
	for (i = 0; i < lay->nr; i++) {
		memcpy(&v, (const char *)l->args + lay->fields[i].off,
		       sizeof(v));
		if (!v)
			continue;
		l->addrs[l->nr_addrs++] = v;
		if (!region_of(v, &r))
			continue;
		r.write = lay->fields[i].write;
		r.loose = true;
		l->ranges[l->nr_ranges++] = r;
	}
	if (copy)
		l->ranges[l->nr_ranges++] =
			exact(c->pairs_dev, 8 * (uint64_t)c->n, false);
	return true;
}

/* One more launch of @name, for kvc_fake_launches(). */
static void count_launch(const char *name)
{
	struct fake_launch_count *lc;
	uint64_t i;

	fake.counts.launches++;
	for (i = 0; i < fake.nr_launch_counts; i++) {
		if (!strcmp(fake.launch_counts[i].name, name)) {
			fake.launch_counts[i].n++;
			return;
		}
	}
	if (!grow((void **)&fake.launch_counts, &fake.cap_launch_counts,
		  fake.nr_launch_counts + 1, sizeof(*fake.launch_counts)))
		return;
	lc = &fake.launch_counts[fake.nr_launch_counts++];
	snprintf(lc->name, sizeof(lc->name), "%s", name);
	lc->n = 1;
}

static kvc_cu_result fake_launch_kernel(kvc_cu_function fn, unsigned int gx,
					unsigned int gy, unsigned int gz,
					unsigned int bx, unsigned int by,
					unsigned int bz, unsigned int smem,
					kvc_cu_stream stream, void **params,
					void **extra)
{
	struct fake_op op = { .kind = OP_LAUNCH };
	const struct arg_layout *lay;
	struct fake_function *f;
	struct fake_stream *s;
	struct fake_launch *l;
	uint32_t limit;

	ENTER_LIVE(KVC_FAKE_LAUNCH_KERNEL);
	r = need_context("cuLaunchKernel");
	if (r)
		goto out;
	f = find_function(fn);
	s = find_stream(stream);
	if (!f || !s) {
		r = bad_handle("cuLaunchKernel", !f ? fn : stream);
		goto out;
	}
	if (!gx || !gy || !gz || gx > INT32_MAX || gy > 65535 || gz > 65535 ||
	    !bx || !by || !bz || bx > 1024 || by > 1024 || bz > 64 ||
	    (uint64_t)bx * by * bz > 1024) {
		r = violation(
			"cuLaunchKernel: %s: grid %u x %u x %u of %u x %u x %u threads is not a valid launch",
			f->name, gx, gy, gz, bx, by, bz);
		goto out;
	}
	/* Beyond the default, only what the kernel was opted in to. */
	limit = f->max_smem > SMEM_DEFAULT ? f->max_smem : SMEM_DEFAULT;
	if (smem > limit || smem > fake.cfg.smem_optin) {
		r = violation(
			"cuLaunchKernel: %s: %u bytes of dynamic shared memory, %u allowed (cuFuncSetAttribute raises it up to %u)",
			f->name, smem, limit, fake.cfg.smem_optin);
		goto out;
	}
	lay = arg_layout(f->name);
	if (extra || !params || !params[0] || !lay) {
		r = violation(
			"cuLaunchKernel: %s takes one parameter, its argument struct (args.h), and no extra",
			f->name);
		goto out;
	}
	/* The driver copies the parameters at the call, not when it runs. */
	l = calloc(1, sizeof(*l) + lay->size);
	if (l)
		memcpy(l->args, params[0], lay->size);
	if (!l || !launch_ranges(l, lay)) {
		free(l);
		r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	snprintf(l->label, sizeof(l->label), "kernel %s", f->name);
	l->name = l->label + strlen("kernel ");
	l->grid[0] = gx;
	l->grid[1] = gy;
	l->grid[2] = gz;
	l->threads = bx * by * bz;
	l->smem = smem;
	op.launch = l;
	r = enqueue(s, &op);
	if (r) {
		free(l->ranges);
		free(l);
		goto out;
	}
	count_launch(f->name);
	LEAVE();
}

/* Device memory is host memory the fake hands out and keeps track of. */
static kvc_cu_result fake_mem_alloc(kvc_cu_ptr *ptr, size_t bytes)
{
	uint64_t held = ((uint64_t)bytes + 255) & ~(uint64_t)255;
	struct fake_alloc *a;
	void *p = NULL;

	ENTER_LIVE(KVC_FAKE_MEM_ALLOC);
	r = need_context("cuMemAlloc");
	if (r)
		goto out;
	if (!ptr || !bytes) {
		r = violation("cuMemAlloc: %zu bytes", bytes);
		goto out;
	}
	if (fake.cfg.memory_bytes &&
	    fake.counts.memory_used + fake.counts.alloc_bytes + held >
		    fake.cfg.memory_bytes) {
		r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	if (!grow((void **)&fake.allocs, &fake.cap_allocs, fake.nr_allocs + 1,
		  sizeof(*fake.allocs)) ||
	    posix_memalign(&p, 256, bytes)) {
		r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	/* Not cleared, as on a device: NaN as floats, out of range as ids. */
	memset(p, 0xff, bytes);
	a = &fake.allocs[fake.nr_allocs++];
	a->ptr = (uint64_t)(uintptr_t)p;
	a->bytes = bytes;
	a->held = held;
	fake.counts.allocs++;
	fake.counts.alloc_bytes += held;
	*ptr = a->ptr;
	LEAVE();
}

/*
 * Free block @ptr of @arr (call @call), as a free does: 0 is a no-op,
 * anything but a block's start is a violation, and so is a block that
 * queued work still uses (the device would fault).
 */
static kvc_cu_result free_block(const char *call, struct fake_alloc *arr,
				uint64_t *nr, uint64_t ptr, uint64_t *count,
				uint64_t *bytes)
{
	uint64_t i;

	if (!ptr)
		return KVC_CUDA_SUCCESS;
	for (i = 0; i < *nr && arr[i].ptr != ptr; i++)
		;
	if (i == *nr)
		return violation("%s: %#llx was not allocated, or was freed",
				 call, (unsigned long long)ptr);
	if (queued_touches(arr[i].ptr, arr[i].bytes, false))
		return violation(
			"%s: %#llx is used by work still queued on a stream",
			call, (unsigned long long)ptr);
	free((void *)(uintptr_t)ptr);
	(*count)--;
	if (bytes)
		*bytes -= arr[i].held;
	arr[i] = arr[--*nr];
	return KVC_CUDA_SUCCESS;
}

static kvc_cu_result fake_mem_free(kvc_cu_ptr ptr)
{
	ENTER(KVC_FAKE_MEM_FREE);
	r = free_block("cuMemFree", fake.allocs, &fake.nr_allocs, ptr,
		       &fake.counts.allocs, &fake.counts.alloc_bytes);
	LEAVE();
}

static kvc_cu_result fake_mem_alloc_host(void **ptr, size_t bytes)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct fake_alloc *a;
	void *p = NULL;

	ENTER_LIVE(KVC_FAKE_MEM_ALLOC_HOST);
	r = need_context("cuMemAllocHost");
	if (r)
		goto out;
	if (!ptr || !bytes) {
		r = violation("cuMemAllocHost: %zu bytes", bytes);
		goto out;
	}
	if (!grow((void **)&fake.host_allocs, &fake.cap_host_allocs,
		  fake.nr_host_allocs + 1, sizeof(*fake.host_allocs)) ||
	    posix_memalign(&p, page, bytes)) {
		r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
		goto out;
	}
	memset(p, 0xff, bytes);
	a = &fake.host_allocs[fake.nr_host_allocs++];
	a->ptr = (uint64_t)(uintptr_t)p;
	a->bytes = bytes;
	a->held = bytes;
	fake.counts.host_allocs++;
	*ptr = p;
	LEAVE();
}

static kvc_cu_result fake_mem_free_host(void *ptr)
{
	ENTER(KVC_FAKE_MEM_FREE_HOST);
	r = free_block("cuMemFreeHost", fake.host_allocs, &fake.nr_host_allocs,
		       (uint64_t)(uintptr_t)ptr, &fake.counts.host_allocs,
		       NULL);
	LEAVE();
}

/*
 * The pinned block that [@p, @p + @bytes) starts in, as the device sees
 * it: *@pinned says whether it starts in one; false when it starts in one
 * and runs past its end.
 */
static bool host_side(const void *p, uint64_t bytes, bool *pinned)
{
	uint64_t at = (uint64_t)(uintptr_t)p;

	*pinned = find_alloc(fake.host_allocs, fake.nr_host_allocs, at, 1);
	return !*pinned || !bytes ||
	       find_alloc(fake.host_allocs, fake.nr_host_allocs, at, bytes);
}

/*
 * From pageable memory the driver stages the source before it returns,
 * so the caller may reuse it at once; from pinned memory the device
 * reads it when the copy runs.
 */
static kvc_cu_result fake_memcpy_htod(kvc_cu_ptr dst, const void *src,
				      size_t bytes, kvc_cu_stream stream)
{
	struct fake_op op = { .kind = OP_HTOD };
	struct fake_stream *s;

	ENTER_LIVE(KVC_FAKE_MEMCPY_HTOD);
	s = find_stream(stream);
	if (!s) {
		r = bad_handle("cuMemcpyHtoDAsync", stream);
		goto out;
	}
	if ((!src && bytes) || !host_side(src, bytes, &op.pinned) ||
	    !device_ok(dst, bytes, KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE)) {
		r = violation(
			"cuMemcpyHtoDAsync: %p -> %#llx (%zu bytes) touches inaccessible memory",
			src, dst, bytes);
		goto out;
	}
	op.src = (uint64_t)(uintptr_t)src;
	if (!op.pinned && bytes) {
		op.staged = malloc(bytes);
		if (!op.staged) {
			r = KVC_CUDA_ERROR_OUT_OF_MEMORY;
			goto out;
		}
		memcpy(op.staged, src, bytes);
		op.src = (uint64_t)(uintptr_t)op.staged;
	}
	op.dst = dst;
	op.bytes = bytes;
	r = enqueue(s, &op);
	if (r)
		free(op.staged);
	LEAVE();
}

/* The destination is written when the copy runs, pageable or pinned. */
static kvc_cu_result fake_memcpy_dtoh(void *dst, kvc_cu_ptr src, size_t bytes,
				      kvc_cu_stream stream)
{
	struct fake_op op = { .kind = OP_DTOH };
	struct fake_stream *s;

	ENTER_LIVE(KVC_FAKE_MEMCPY_DTOH);
	s = find_stream(stream);
	if (!s) {
		r = bad_handle("cuMemcpyDtoHAsync", stream);
		goto out;
	}
	if ((!dst && bytes) || !host_side(dst, bytes, &op.pinned) ||
	    !device_ok(src, bytes, KVC_CU_MEM_ACCESS_FLAGS_PROT_READ)) {
		r = violation(
			"cuMemcpyDtoHAsync: %#llx -> %p (%zu bytes) touches inaccessible memory",
			src, dst, bytes);
		goto out;
	}
	op.dst = (uint64_t)(uintptr_t)dst;
	op.src = src;
	op.bytes = bytes;
	r = enqueue(s, &op);
	LEAVE();
}

static kvc_cu_result fake_memset_d32(kvc_cu_ptr dst, unsigned int value,
				     size_t count, kvc_cu_stream stream)
{
	struct fake_op op = { .kind = OP_MEMSET };
	struct fake_stream *s;

	ENTER_LIVE(KVC_FAKE_MEMSET_D32);
	s = find_stream(stream);
	if (!s) {
		r = bad_handle("cuMemsetD32Async", stream);
		goto out;
	}
	if ((dst & 3) || count > (UINT64_MAX >> 2) ||
	    !device_ok(dst, 4 * (uint64_t)count,
		       KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE)) {
		r = violation(
			"cuMemsetD32Async: [%#llx, +%zu words) is misaligned or inaccessible",
			dst, count);
		goto out;
	}
	op.dst = dst;
	op.bytes = 4 * (uint64_t)count;
	op.value = value;
	r = enqueue(s, &op);
	LEAVE();
}

static kvc_cu_result fake_mem_get_info(size_t *free_bytes, size_t *total_bytes)
{
	uint64_t total, used;

	ENTER_LIVE(KVC_FAKE_MEM_GET_INFO);
	r = need_context("cuMemGetInfo");
	if (r)
		goto out;
	if (!free_bytes || !total_bytes) {
		r = violation("cuMemGetInfo: no result pointers");
		goto out;
	}
	total = fake.cfg.memory_bytes ? fake.cfg.memory_bytes : 80ull << 30;
	used = fake.counts.memory_used + fake.counts.alloc_bytes;
	*total_bytes = total;
	*free_bytes = used < total ? total - used : 0;
	LEAVE();
}

/*
 * Fake time: each operation run takes a microsecond, so the result is
 * the number of operations run between the two records, over 1000.
 * Knowing both complete, the host has seen what they cover complete.
 */
static kvc_cu_result fake_event_elapsed(float *ms, kvc_cu_event start,
					kvc_cu_event end)
{
	struct fake_event *a, *b;

	ENTER_LIVE(KVC_FAKE_EVENT_ELAPSED);
	a = find_event(start);
	b = find_event(end);
	if (!a || !b) {
		r = bad_handle("cuEventElapsedTime", !a ? start : end);
		goto out;
	}
	if (!ms) {
		r = violation("cuEventElapsedTime: no result pointer");
		goto out;
	}
	if ((a->flags | b->flags) & KVC_CU_EVENT_DISABLE_TIMING || !a->record ||
	    !b->record) {
		violation(
			"cuEventElapsedTime: an event was made without timing, or never recorded");
		r = KVC_CUDA_ERROR_INVALID_HANDLE;
		goto out;
	}
	if (!event_done(a) || !event_done(b)) {
		r = KVC_CUDA_ERROR_NOT_READY;
		goto out;
	}
	observe(a->clock);
	observe(b->clock);
	*ms = (float)((double)(int64_t)(b->time - a->time) / 1000.0);
	LEAVE();
}

static kvc_cu_result fake_error_name(kvc_cu_result err, const char **name)
{
	switch (err) {
	case KVC_CUDA_SUCCESS:
		*name = "CUDA_SUCCESS";
		break;
	case KVC_CUDA_ERROR_INVALID_VALUE:
		*name = "CUDA_ERROR_INVALID_VALUE";
		break;
	case KVC_CUDA_ERROR_OUT_OF_MEMORY:
		*name = "CUDA_ERROR_OUT_OF_MEMORY";
		break;
	case KVC_CUDA_ERROR_NOT_INITIALIZED:
		*name = "CUDA_ERROR_NOT_INITIALIZED";
		break;
	case KVC_CUDA_ERROR_NO_DEVICE:
		*name = "CUDA_ERROR_NO_DEVICE";
		break;
	case KVC_CUDA_ERROR_INVALID_DEVICE:
		*name = "CUDA_ERROR_INVALID_DEVICE";
		break;
	case KVC_CUDA_ERROR_INVALID_CONTEXT:
		*name = "CUDA_ERROR_INVALID_CONTEXT";
		break;
	case KVC_CUDA_ERROR_INVALID_HANDLE:
		*name = "CUDA_ERROR_INVALID_HANDLE";
		break;
	case KVC_CUDA_ERROR_NOT_READY:
		*name = "CUDA_ERROR_NOT_READY";
		break;
	case KVC_CUDA_ERROR_NOT_SUPPORTED:
		*name = "CUDA_ERROR_NOT_SUPPORTED";
		break;
	case KVC_CUDA_ERROR_NOT_FOUND:
		*name = "CUDA_ERROR_NOT_FOUND";
		break;
	case KVC_CUDA_ERROR_ILLEGAL_ADDRESS:
		*name = "CUDA_ERROR_ILLEGAL_ADDRESS";
		break;
	case KVC_CUDA_ERROR_LAUNCH_FAILED:
		*name = "CUDA_ERROR_LAUNCH_FAILED";
		break;
	default:
		return KVC_CUDA_ERROR_INVALID_VALUE;
	}
	return KVC_CUDA_SUCCESS;
}

static const struct kvc_cuda_driver fake_table = {
	.name = "cuda-fake",
	.cuInit = fake_init,
	.cuDeviceGetCount = fake_device_get_count,
	.cuDeviceGet = fake_device_get,
	.cuDevicePrimaryCtxRetain = fake_ctx_retain,
	.cuDevicePrimaryCtxRelease = fake_ctx_release,
	.cuCtxPushCurrent = fake_ctx_push,
	.cuCtxPopCurrent = fake_ctx_pop,
	.cuMemGetAllocationGranularity = fake_granularity,
	.cuMemAddressReserve = fake_address_reserve,
	.cuMemAddressFree = fake_address_free,
	.cuMemCreate = fake_create,
	.cuMemRelease = fake_release,
	.cuMemMap = fake_map,
	.cuMemUnmap = fake_unmap,
	.cuMemSetAccess = fake_set_access,
	.cuStreamCreate = fake_stream_create,
	.cuStreamDestroy = fake_stream_destroy,
	.cuStreamSynchronize = fake_stream_sync,
	.cuMemcpyDtoDAsync = fake_memcpy,
	.cuEventCreate = fake_event_create,
	.cuEventRecord = fake_event_record,
	.cuEventQuery = fake_event_query,
	.cuEventSynchronize = fake_event_sync,
	.cuEventDestroy = fake_event_destroy,
	.cuStreamWaitEvent = fake_stream_wait_event,
	.cuGetErrorName = fake_error_name,
	.cuDeviceGetAttribute = fake_device_attribute,
	.cuModuleLoadData = fake_module_load,
	.cuModuleUnload = fake_module_unload,
	.cuModuleGetFunction = fake_module_get_function,
	.cuFuncSetAttribute = fake_func_set_attribute,
	.cuLaunchKernel = fake_launch_kernel,
	.cuMemAlloc = fake_mem_alloc,
	.cuMemFree = fake_mem_free,
	.cuMemAllocHost = fake_mem_alloc_host,
	.cuMemFreeHost = fake_mem_free_host,
	.cuMemcpyHtoDAsync = fake_memcpy_htod,
	.cuMemcpyDtoHAsync = fake_memcpy_dtoh,
	.cuMemsetD32Async = fake_memset_d32,
	.cuMemGetInfo = fake_mem_get_info,
	.cuEventElapsedTime = fake_event_elapsed,
};

/* What a zero field of the config stands for: a device like an H100. */
static void config_defaults(struct kvc_fake_config *c)
{
	if (!c->sms)
		c->sms = 4;
	if (!c->smem_optin)
		c->smem_optin = 99 << 10;
	if (!c->cc_major) {
		c->cc_major = 9;
		c->cc_minor = 0;
	}
	if (!c->mem_clock_khz)
		c->mem_clock_khz = 2619000;
	if (!c->bus_bits)
		c->bus_bits = 5120;
	if (!c->l2_bytes)
		c->l2_bytes = 50ull << 20;
}

const struct kvc_cuda_driver *kvc_fake_driver(const struct kvc_fake_config *cfg)
{
	struct kvc_fake_config def = { .granularity = 2u << 20, .devices = 1 };
	const struct kvc_cuda_driver *drv = &fake_table;
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), i;

	if (!cfg)
		cfg = &def;
	if (cfg->granularity < page ||
	    (cfg->granularity & (cfg->granularity - 1)) || cfg->devices < 0)
		return NULL;
	fake_lock();
	if (fake.counts.handles || fake.counts.mappings ||
	    fake.counts.reservations || fake.counts.streams ||
	    fake.counts.events || fake.counts.pending || fake.counts.contexts ||
	    fake.counts.pushed || fake.counts.allocs ||
	    fake.counts.host_allocs || fake.counts.modules) {
		drv = NULL;
		goto out;
	}
	/* The default stream, slot 0; other slots keep their generation. */
	if (!fake.nr_streams) {
		fake.streams[0].live = true;
		fake.nr_streams = 1;
	}
	/* No clock survives, nor work the host had not seen complete. */
	for (i = 0; i < fake.nr_streams; i++) {
		struct fake_stream *s = &fake.streams[i];
		uint64_t j;

		for (j = s->done; j < s->nr; j++)
			op_free(&s->ops[j]);
		s->done = s->head = s->nr = 0;
		memset(s->clock, 0, sizeof(s->clock));
	}
	memset(fake.host, 0, sizeof(fake.host));
	fake.sticky = KVC_CUDA_SUCCESS;
	if (fake.memfd < 0)
		fake.memfd = memfd_create("kvc-fake-device", MFD_CLOEXEC);
	if (fake.memfd < 0 || ftruncate(fake.memfd, 0) ||
	    ftruncate(fake.memfd, (off_t)1 << 40)) {
		drv = NULL;
		goto out;
	}
	fake.cfg = *cfg;
	config_defaults(&fake.cfg);
	fake.initialized = false;
	fake.nr_launch_counts = 0;
	fake.ticks = 0;
	fake.next_phys = 0;
	fake.nr_handles = fake.nr_maps = fake.nr_res = 0;
	fake.next_serial = 0;
	fake.async = false;
	memset(&fake.counts, 0, sizeof(fake.counts));
	memset(fake.fail_at, 0, sizeof(fake.fail_at));
	fake.violation[0] = '\0';
out:
	pthread_mutex_unlock(&fake.lock);
	return drv;
}

void kvc_fake_fail(enum kvc_fake_fn fn, uint64_t nth, kvc_cu_result result)
{
	if (fn >= KVC_FAKE_NR_FNS)
		return;
	fake_lock();
	fake.fail_at[fn] = nth ? fake.counts.calls[fn] + nth : 0;
	fake.fail_result[fn] = result;
	pthread_mutex_unlock(&fake.lock);
}

void kvc_fake_counts(struct kvc_fake_counts *counts)
{
	fake_lock();
	*counts = fake.counts;
	pthread_mutex_unlock(&fake.lock);
}

void kvc_fake_set_async(bool on)
{
	fake_lock();
	fake.async = on;
	if (!on) {
		run_all();
		observe_all();
	}
	pthread_mutex_unlock(&fake.lock);
}

kvc_cu_result kvc_fake_launch(kvc_cu_stream stream, kvc_cu_ptr ptr,
			      size_t bytes)
{
	struct fake_op op = { .kind = OP_KERNEL, .dst = ptr, .bytes = bytes };
	struct fake_stream *s;
	kvc_cu_result r;

	fake_lock();
	s = find_stream(stream);
	if (fake.sticky)
		r = fake.sticky;
	else if (!s)
		r = bad_handle("kvc_fake_launch", stream);
	else
		r = enqueue(s, &op);
	pthread_mutex_unlock(&fake.lock);
	return r;
}

uint64_t kvc_fake_launches(const char *name)
{
	uint64_t n = 0, i;

	fake_lock();
	if (!name)
		n = fake.counts.launches;
	for (i = 0; name && i < fake.nr_launch_counts; i++)
		if (!strcmp(fake.launch_counts[i].name, name))
			n = fake.launch_counts[i].n;
	pthread_mutex_unlock(&fake.lock);
	return n;
}

uint64_t kvc_fake_run(void)
{
	uint64_t ran;

	fake_lock();
	ran = run_all();
	pthread_mutex_unlock(&fake.lock);
	return ran;
}
