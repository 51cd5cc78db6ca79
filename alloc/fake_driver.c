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
	struct kvc_fake_counts counts;
	uint64_t fail_at[KVC_FAKE_NR_FNS];
	kvc_cu_result fail_result[KVC_FAKE_NR_FNS];
	char violation[256];
} fake = { .lock = PTHREAD_MUTEX_INITIALIZER, .memfd = -1 };

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
};

const char *kvc_fake_fn_name(enum kvc_fake_fn fn)
{
	return fn < KVC_FAKE_NR_FNS ? fn_names[fn] : "?";
}

const char *kvc_fake_last_violation(void)
{
	return fake.violation;
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

#define ENTER(fn)                       \
	kvc_cu_result r;                \
	pthread_mutex_lock(&fake.lock); \
	r = enter(fn);                  \
	if (r)                          \
		goto out;

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

	ENTER(KVC_FAKE_ADDRESS_RESERVE);
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

	ENTER(KVC_FAKE_CREATE);
	if (!size || !gran_ok(size) || flags) {
		r = violation(
			"cuMemCreate: size %zu not a multiple of the granularity",
			size);
		goto out;
	}
	r = check_prop("cuMemCreate", prop);
	if (r)
		goto out;
	if (fake.cfg.memory_bytes &&
	    fake.counts.memory_used + size > fake.cfg.memory_bytes) {
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

	ENTER(KVC_FAKE_MAP);
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

static kvc_cu_result fake_set_access(kvc_cu_ptr ptr, size_t size,
				     const struct kvc_cu_access_desc *desc,
				     size_t count)
{
	uint64_t i;
	int prot;

	ENTER(KVC_FAKE_SET_ACCESS);
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
	mmap((void *)(uintptr_t)ptr, size, PROT_NONE,
	     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	fake.handles[m->handle - 1].maps--;
	maybe_free_phys(&fake.handles[m->handle - 1]);
	*m = fake.maps[--fake.nr_maps];
	fake.counts.mappings--;
	LEAVE();
}

static kvc_cu_result fake_stream_create(kvc_cu_stream *stream,
					unsigned int flags)
{
	ENTER(KVC_FAKE_STREAM_CREATE);
	fake.counts.streams++;
	*stream = (kvc_cu_stream)(uintptr_t)(0x2000 + fake.counts.streams);
	LEAVE();
}

static kvc_cu_result fake_stream_destroy(kvc_cu_stream stream)
{
	ENTER(KVC_FAKE_STREAM_DESTROY);
	if (!fake.counts.streams)
		r = violation("cuStreamDestroy: no stream");
	else
		fake.counts.streams--;
	LEAVE();
}

static kvc_cu_result fake_stream_sync(kvc_cu_stream stream)
{
	ENTER(KVC_FAKE_STREAM_SYNC);
	LEAVE();
}

static kvc_cu_result fake_memcpy(kvc_cu_ptr dst, kvc_cu_ptr src, size_t bytes,
				 kvc_cu_stream stream)
{
	ENTER(KVC_FAKE_MEMCPY);
	if (!fully_mapped(src, bytes, KVC_CU_MEM_ACCESS_FLAGS_PROT_READ) ||
	    !fully_mapped(dst, bytes, KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE)) {
		r = violation(
			"cuMemcpyDtoDAsync: %#llx -> %#llx (%zu bytes) touches inaccessible memory",
			src, dst, bytes);
		goto out;
	}
	memmove((void *)(uintptr_t)dst, (void *)(uintptr_t)src, bytes);
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
	case KVC_CUDA_ERROR_INVALID_HANDLE:
		*name = "CUDA_ERROR_INVALID_HANDLE";
		break;
	case KVC_CUDA_ERROR_NOT_SUPPORTED:
		*name = "CUDA_ERROR_NOT_SUPPORTED";
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
	.cuGetErrorName = fake_error_name,
};

const struct kvc_cuda_driver *kvc_fake_driver(const struct kvc_fake_config *cfg)
{
	struct kvc_fake_config def = { 2u << 20, 1, 0 };
	const struct kvc_cuda_driver *drv = &fake_table;
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	if (!cfg)
		cfg = &def;
	if (cfg->granularity < page ||
	    (cfg->granularity & (cfg->granularity - 1)) || cfg->devices < 0)
		return NULL;
	pthread_mutex_lock(&fake.lock);
	if (fake.counts.handles || fake.counts.mappings ||
	    fake.counts.reservations || fake.counts.streams ||
	    fake.counts.contexts || fake.counts.pushed) {
		drv = NULL;
		goto out;
	}
	if (fake.memfd < 0)
		fake.memfd = memfd_create("kvc-fake-device", MFD_CLOEXEC);
	if (fake.memfd < 0 || ftruncate(fake.memfd, 0) ||
	    ftruncate(fake.memfd, (off_t)1 << 40)) {
		drv = NULL;
		goto out;
	}
	fake.cfg = *cfg;
	fake.initialized = false;
	fake.next_phys = 0;
	fake.nr_handles = fake.nr_maps = fake.nr_res = 0;
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
	pthread_mutex_lock(&fake.lock);
	fake.fail_at[fn] = nth ? fake.counts.calls[fn] + nth : 0;
	fake.fail_result[fn] = result;
	pthread_mutex_unlock(&fake.lock);
}

void kvc_fake_counts(struct kvc_fake_counts *counts)
{
	pthread_mutex_lock(&fake.lock);
	*counts = fake.counts;
	pthread_mutex_unlock(&fake.lock);
}
