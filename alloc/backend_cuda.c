// SPDX-License-Identifier: MIT
/*
 * The cuda backend: chunks are physical allocations made with the CUDA VMM
 * driver API and mapped into one cuMemAddressReserve'd range. It talks to
 * the driver only through a struct kvc_cuda_driver, filled from
 * libcuda.so.1 at run time (so binaries start where no driver is) or by
 * the fake driver in tests. Fences are CUDA events, waited for by one
 * stream or one host call, never by the device as a whole. Never assumes
 * the granularity; never leaks a handle on a failed map; never calls a
 * device-wide synchronize. Where the CUDA kernels load, block copies of
 * one size go out as batched copy kernels, 240 blocks a launch, rather
 * than one cuMemcpyDtoDAsync each.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/error.h>

#include "../kernels/cuda_kernels.h"
#include "backend.h"
#include "cuda_driver.h"
#include "error.h"

/*
 * Device memory the driver refused to give back: a handle whose
 * cuMemRelease failed, or, when unwinding a failed map, a range whose
 * cuMemUnmap failed too (@bytes != 0). Both are retried before every map
 * and at release and close, so a transient refusal leaks nothing and a
 * range the pool believes free is unmapped before it is mapped again.
 */
struct zombie {
	kvc_cu_handle handle;
	kvc_cu_ptr ptr;
	size_t bytes;
	struct zombie *next;
};

struct cuda_state {
	const struct kvc_cuda_driver *drv;
	kvc_cu_device dev;
	kvc_cu_context ctx;
	kvc_cu_stream stream;
	struct kvc_cu_alloc_prop prop;
	struct kvc_cu_access_desc access;
	pthread_mutex_t lock;
	struct zombie *zombies;
	struct kvc_cuda_kernels *kernels; /* NULL: copies go block by block */
};

static struct kvc_cuda_driver real_driver = { .name = "cuda" };

static const char *cu_name(const struct kvc_cuda_driver *drv, kvc_cu_result r)
{
	const char *name = NULL;

	if (drv && drv->cuGetErrorName && drv->cuGetErrorName(r, &name) == 0 &&
	    name)
		return name;
	/* The toolkit's stub libcuda answers everything with this. */
	if (r == KVC_CUDA_ERROR_STUB_LIBRARY)
		return "CUDA_ERROR_STUB_LIBRARY (a toolkit stub, not a driver)";
	return "unnamed CUDA error";
}

int kvc_cu_errno(const struct kvc_cuda_driver *drv, int r, const char *what)
{
	int err;

	switch (r) {
	case KVC_CUDA_ERROR_OUT_OF_MEMORY:
		err = -ENOMEM;
		break;
	case KVC_CUDA_ERROR_INVALID_VALUE:
	case KVC_CUDA_ERROR_INVALID_HANDLE:
		err = -EINVAL;
		break;
	case KVC_CUDA_ERROR_NO_DEVICE:
	case KVC_CUDA_ERROR_INVALID_DEVICE:
	case KVC_CUDA_ERROR_NOT_SUPPORTED:
		err = -ENODEV;
		break;
	case KVC_CUDA_ERROR_NOT_READY:
		err = -EBUSY;
		break;
	default:
		err = -EIO;
	}
	return kvc_err(err, "%s: %s (%d)", what, cu_name(drv, r), r);
}

/* kvc_cu_errno() for a call of the backend's own, with its size. */
static int cu_err(const struct kvc_cuda_driver *drv, kvc_cu_result r,
		  const char *call, unsigned long long bytes)
{
	char what[96];

	snprintf(what, sizeof(what), "%s(%llu bytes)", call, bytes);
	return kvc_cu_errno(drv, r, what);
}

static struct cuda_state *state(struct kvc_backend *be)
{
	return be->priv;
}

/*
 * Driver calls need the pool's context current on the calling thread. It
 * is pushed for the call and popped after, so the caller's own current
 * context (a CUDA runtime application's device) is left as it was.
 */
static int bind(struct cuda_state *cs)
{
	kvc_cu_result r = cs->drv->cuCtxPushCurrent(cs->ctx);

	return r ? cu_err(cs->drv, r, "cuCtxPushCurrent", 0) : 0;
}

static void pop_context(const struct kvc_cuda_driver *drv)
{
	kvc_cu_context ctx;

	/* Once more on failure: a context left pushed leaks into the caller. */
	if (drv->cuCtxPopCurrent(&ctx) && drv->cuCtxPopCurrent(&ctx))
		kvc_notice(
			"cuCtxPopCurrent failed: the pool's context stays current on this thread");
}

static void unbind(struct cuda_state *cs)
{
	pop_context(cs->drv);
}

/* Retry what the driver refused before. Caller holds cs->lock. */
static void release_zombies(struct cuda_state *cs)
{
	struct zombie **pz = &cs->zombies, *z;

	while ((z = *pz)) {
		if (z->bytes &&
		    cs->drv->cuMemUnmap(z->ptr, z->bytes) == KVC_CUDA_SUCCESS)
			z->bytes = 0;
		if (!z->bytes &&
		    cs->drv->cuMemRelease(z->handle) == KVC_CUDA_SUCCESS) {
			*pz = z->next;
			free(z);
		} else {
			pz = &z->next;
		}
	}
}

/*
 * Retry what was parked; then whether a range still mapped by the driver
 * overlaps [@ptr, @ptr + @bytes), which must then not be mapped over or
 * given back.
 */
static bool retry_zombies(struct cuda_state *cs, kvc_cu_ptr ptr, uint64_t bytes)
{
	struct zombie *z;
	bool busy = false;

	pthread_mutex_lock(&cs->lock);
	release_zombies(cs);
	for (z = cs->zombies; z && !busy; z = z->next)
		busy = z->bytes && z->ptr < ptr + bytes &&
		       ptr < z->ptr + z->bytes;
	pthread_mutex_unlock(&cs->lock);
	return busy;
}

/* Park what the driver refused to give back. Caller holds cs->lock. */
static void add_zombie(struct cuda_state *cs, kvc_cu_handle handle,
		       kvc_cu_ptr ptr, size_t bytes)
{
	struct zombie *z = malloc(sizeof(*z));

	if (!z) {
		kvc_notice("out of memory: device handle %#llx leaked",
			   (unsigned long long)handle);
		return;
	}
	z->handle = handle;
	z->ptr = ptr;
	z->bytes = bytes;
	z->next = cs->zombies;
	cs->zombies = z;
}

static int reserve_bound(struct kvc_backend *be, uint64_t bytes,
			 struct kvc_va *va)
{
	struct cuda_state *cs = state(be);
	kvc_cu_ptr base = 0;
	kvc_cu_result r;

	r = cs->drv->cuMemAddressReserve(&base, bytes, be->granularity, 0, 0);
	if (r)
		return cu_err(cs->drv, r, "cuMemAddressReserve", bytes);
	va->base = base;
	va->bytes = bytes;
	va->priv = NULL;
	return 0;
}

static int release_bound(struct kvc_backend *be, struct kvc_va *va)
{
	struct cuda_state *cs = state(be);
	kvc_cu_result r;

	if (retry_zombies(cs, va->base, va->bytes))
		return kvc_err(
			-EIO,
			"cuMemAddressFree: the driver still refuses to unmap a range inside the reservation");
	r = cs->drv->cuMemAddressFree(va->base, va->bytes);
	if (r)
		return cu_err(cs->drv, r, "cuMemAddressFree", va->bytes);
	return 0;
}

static int map_bound(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		     uint64_t bytes, uint64_t *handle)
{
	struct cuda_state *cs = state(be);
	const struct kvc_cuda_driver *drv = cs->drv;
	kvc_cu_ptr ptr = va->base + off;
	kvc_cu_handle h;
	kvc_cu_result r;
	int err;

	/* Maps are rare: the lock costs nothing here. */
	if (retry_zombies(cs, ptr, bytes))
		return kvc_err(
			-EIO,
			"chunk at %#llx: the driver still refuses to unmap it after an earlier failure",
			(unsigned long long)ptr);
	va->calls.create++;
	r = drv->cuMemCreate(&h, bytes, &cs->prop, 0);
	if (r)
		return cu_err(drv, r, "cuMemCreate", bytes);
	va->calls.map++;
	r = drv->cuMemMap(ptr, bytes, 0, h, 0);
	if (r) {
		err = cu_err(drv, r, "cuMemMap", bytes);
		goto err_release;
	}
	va->calls.set_access++;
	r = drv->cuMemSetAccess(ptr, bytes, &cs->access, 1);
	if (r) {
		err = cu_err(drv, r, "cuMemSetAccess", bytes);
		goto err_unmap;
	}
	*handle = h;
	return 0;

	/*
	 * Unwinding can fail too; then what is left is parked and retried
	 * rather than leaked or left mapped under the pool's feet (both are
	 * known bugs elsewhere).
	 */
err_unmap:
	va->calls.unmap++;
	if (drv->cuMemUnmap(ptr, bytes)) {
		pthread_mutex_lock(&cs->lock);
		add_zombie(cs, h, ptr, bytes);
		pthread_mutex_unlock(&cs->lock);
		return err;
	}
err_release:
	va->calls.release++;
	if (drv->cuMemRelease(h)) {
		pthread_mutex_lock(&cs->lock);
		add_zombie(cs, h, 0, 0);
		pthread_mutex_unlock(&cs->lock);
	}
	return err;
}

static int unmap_bound(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		       uint64_t bytes, uint64_t handle)
{
	struct cuda_state *cs = state(be);
	const struct kvc_cuda_driver *drv = cs->drv;
	kvc_cu_result r;

	va->calls.unmap++;
	r = drv->cuMemUnmap(va->base + off, bytes);
	if (r)
		return cu_err(drv, r, "cuMemUnmap", bytes);
	va->calls.release++;
	pthread_mutex_lock(&cs->lock);
	release_zombies(cs);
	r = drv->cuMemRelease(handle);
	if (r) /* The range is unmapped and reusable; only the handle waits. */
		add_zombie(cs, handle, 0, 0);
	pthread_mutex_unlock(&cs->lock);
	return 0;
}

/*
 * Whether the copy kernel can do all of @copies: one size, a multiple of
 * 4, and every offset a whole number of items from the base, inside the
 * reservation. Anything else goes block by block, as before.
 */
static bool kernel_copies(const struct cuda_state *cs, const struct kvc_va *va,
			  const struct kvc_copy *copies, uint32_t n)
{
	uint64_t b = n ? copies[0].bytes : 0;
	uint32_t i;

	if (!cs->kernels || !b || b % 4 || b > va->bytes)
		return false;
	for (i = 0; i < n; i++) {
		const struct kvc_copy *c = &copies[i];

		if (c->bytes != b || c->src % b || c->dst % b ||
		    c->src > va->bytes - b || c->dst > va->bytes - b ||
		    c->src / b > UINT32_MAX || c->dst / b > UINT32_MAX)
			return false;
	}
	return true;
}

/*
 * The items of the launch being filled, by index: whether each is read,
 * written, or both. Open addressing; an entry of an earlier launch
 * (another @gen) is free. Twice KVC_COPY_INLINE items fit with room.
 */
#define SEEN_BITS 10
#define SEEN_READ 1u
#define SEEN_WRITE 2u

struct seen {
	uint32_t index;
	uint32_t gen;
	uint32_t how;
};

_Static_assert(2 * KVC_COPY_INLINE <= (1u << SEEN_BITS) / 2,
	       "the table of the items in a launch is too small");

static struct seen *seen_slot(struct seen *t, uint32_t gen, uint32_t index)
{
	uint32_t h = (index * 0x9e3779b1u) >> (32 - SEEN_BITS);

	while (t[h].gen == gen && t[h].index != index)
		h = (h + 1) & ((1u << SEEN_BITS) - 1);
	return &t[h];
}

static void seen_add(struct seen *t, uint32_t gen, uint32_t index, uint32_t how)
{
	struct seen *e = seen_slot(t, gen, index);

	if (e->gen == gen)
		e->how |= how;
	else
		*e = (struct seen){ index, gen, how };
}

/* Queue the launch filled so far, if any. */
static int copy_flush(struct cuda_state *cs, struct kvc_va *va,
		      struct kvc_copy_args *args)
{
	int err;

	if (!args->n)
		return 0;
	va->calls.copy += args->n;
	err = kvc_cuda_block_copy(cs->kernels, cs->stream, args);
	args->n = 0;
	return err;
}

/*
 * Copies as copy-kernel launches on the backend's stream, in order. A
 * launch runs its items in no order, so an item that reads what an
 * earlier item of the launch writes, or writes what one reads or writes,
 * opens a new launch, which the stream runs after. A copy onto itself is
 * a no-op and is left out.
 */
static int copy_kernel(struct cuda_state *cs, struct kvc_va *va,
		       const struct kvc_copy *copies, uint32_t n)
{
	struct seen table[1u << SEEN_BITS];
	struct kvc_copy_args args;
	uint32_t i, s, d, gen = 1;
	struct seen *e;
	int err;

	memset(table, 0, sizeof(table));
	memset(&args, 0, sizeof(args));
	args.src_base = va->base;
	args.dst_base = va->base;
	args.bytes = copies[0].bytes;
	for (i = 0; i < n; i++) {
		s = (uint32_t)(copies[i].src / args.bytes);
		d = (uint32_t)(copies[i].dst / args.bytes);
		if (s == d) {
			va->calls.copy++;
			continue;
		}
		e = seen_slot(table, gen, s);
		if (args.n == KVC_COPY_INLINE ||
		    seen_slot(table, gen, d)->gen == gen ||
		    (e->gen == gen && (e->how & SEEN_WRITE))) {
			err = copy_flush(cs, va, &args);
			if (err)
				return err;
			if (!++gen) {
				memset(table, 0, sizeof(table));
				gen = 1;
			}
		}
		seen_add(table, gen, s, SEEN_READ);
		seen_add(table, gen, d, SEEN_WRITE);
		args.pairs[2 * args.n] = s;
		args.pairs[2 * args.n + 1] = d;
		args.n++;
	}
	return copy_flush(cs, va, &args);
}

static int copy_bound(struct kvc_backend *be, struct kvc_va *va,
		      const struct kvc_copy *copies, uint32_t n)
{
	struct cuda_state *cs = state(be);
	kvc_cu_result r;
	uint32_t i;

	if (kernel_copies(cs, va, copies, n))
		return copy_kernel(cs, va, copies, n);
	for (i = 0; i < n; i++) {
		va->calls.copy++;
		r = cs->drv->cuMemcpyDtoDAsync(va->base + copies[i].dst,
					       va->base + copies[i].src,
					       copies[i].bytes, cs->stream);
		if (r)
			return cu_err(cs->drv, r, "cuMemcpyDtoDAsync",
				      copies[i].bytes);
	}
	return 0;
}

/* Waits for this backend's stream only, never the whole device. */
static int fence_bound(struct kvc_backend *be, struct kvc_va *va)
{
	struct cuda_state *cs = state(be);
	kvc_cu_result r;

	r = cs->drv->cuStreamSynchronize(cs->stream);
	return r ? cu_err(cs->drv, r, "cuStreamSynchronize", 0) : 0;
}

/*
 * Fences. A token is a CUevent (created without timing, which makes it
 * cheap) cast to a u64; a CUevent is never NULL, so token 0 (what the host
 * backend hands out) is taken as "completed": query and sync return 0,
 * signal and put do nothing. Events and streams of the caller are used
 * only during the call, never kept.
 */
static kvc_cu_event token_event(uint64_t token)
{
	return (kvc_cu_event)(uintptr_t)token;
}

/* Once more on failure, as for the context: a refusal should not leak. */
/*
 * One retry: a failed call has done nothing (an event already gone answers
 * CUDA_ERROR_INVALID_HANDLE, harmless), and an event left behind is a leak.
 */
static void destroy_event(struct cuda_state *cs, kvc_cu_event ev)
{
	if (cs->drv->cuEventDestroy(ev) && cs->drv->cuEventDestroy(ev))
		kvc_notice("cuEventDestroy failed: one CUDA event leaked");
}

/* A fresh event recorded on @stream: the point after its work so far. */
static int record_event(struct cuda_state *cs, kvc_cu_stream stream,
			kvc_cu_event *out)
{
	const struct kvc_cuda_driver *drv = cs->drv;
	kvc_cu_event ev;
	kvc_cu_result r;

	r = drv->cuEventCreate(&ev, KVC_CU_EVENT_DISABLE_TIMING);
	if (r)
		return cu_err(drv, r, "cuEventCreate", 0);
	r = drv->cuEventRecord(ev, stream);
	if (r) {
		int err = cu_err(drv, r, "cuEventRecord", 0);

		destroy_event(cs, ev);
		return err;
	}
	*out = ev;
	return 0;
}

static int fence_after_bound(struct kvc_backend *be, struct kvc_va *va,
			     const struct kvc_fence *f)
{
	struct cuda_state *cs = state(be);
	const struct kvc_cuda_driver *drv = cs->drv;
	kvc_cu_event ev;
	kvc_cu_result r;
	int err;

	if (f->kind == KVC_FENCE_CUDA_EVENT) {
		r = drv->cuStreamWaitEvent(cs->stream, f->handle,
					   KVC_CU_EVENT_WAIT_DEFAULT);
		return r ? cu_err(drv, r, "cuStreamWaitEvent", 0) : 0;
	}
	/*
	 * A stream: capture its work so far in an event of our own, wait
	 * for it, and drop it. The driver keeps the event alive for the
	 * waiter, so destroying it at once is legal.
	 */
	err = record_event(cs, f->handle, &ev);
	if (err)
		return err;
	r = drv->cuStreamWaitEvent(cs->stream, ev, KVC_CU_EVENT_WAIT_DEFAULT);
	if (r)
		err = cu_err(drv, r, "cuStreamWaitEvent", 0);
	destroy_event(cs, ev);
	return err;
}

static int fence_record_bound(struct kvc_backend *be, struct kvc_va *va,
			      uint64_t *token)
{
	struct cuda_state *cs = state(be);
	kvc_cu_event ev;
	int err;

	err = record_event(cs, cs->stream, &ev);
	if (!err)
		*token = (uint64_t)(uintptr_t)ev;
	return err;
}

/*
 * Whether @r says the context is broken for good: its kernels have stopped,
 * so nothing can fault on an unmap any more. Any other error (a bad value,
 * a handle, a stream being captured) says nothing about the work.
 */
static bool context_dead(kvc_cu_result r)
{
	switch (r) {
	case KVC_CUDA_ERROR_DEINITIALIZED:
	case KVC_CUDA_ERROR_ECC_UNCORRECTABLE:
	case KVC_CUDA_ERROR_ILLEGAL_ADDRESS:
	case KVC_CUDA_ERROR_LAUNCH_TIMEOUT:
	case KVC_CUDA_ERROR_CONTEXT_IS_DESTROYED:
	case KVC_CUDA_ERROR_ASSERT:
	case KVC_CUDA_ERROR_HARDWARE_STACK_ERROR:
	case KVC_CUDA_ERROR_ILLEGAL_INSTRUCTION:
	case KVC_CUDA_ERROR_MISALIGNED_ADDRESS:
	case KVC_CUDA_ERROR_INVALID_ADDRESS_SPACE:
	case KVC_CUDA_ERROR_INVALID_PC:
	case KVC_CUDA_ERROR_LAUNCH_FAILED:
		return true;
	}
	return false;
}

static int fence_query_bound(struct kvc_backend *be, struct kvc_va *va,
			     uint64_t token)
{
	struct cuda_state *cs = state(be);
	kvc_cu_result r;

	r = cs->drv->cuEventQuery(token_event(token));
	if (!r)
		return 0;
	/* Not ready, or not known: the work may still run. */
	if (r == KVC_CUDA_ERROR_NOT_READY || !context_dead(r))
		return -EBUSY;
	return cu_err(cs->drv, r, "cuEventQuery", 0);
}

/* Waits for this one event only, never the whole device. */
static int fence_sync_bound(struct kvc_backend *be, struct kvc_va *va,
			    uint64_t token)
{
	struct cuda_state *cs = state(be);
	kvc_cu_result r;

	r = cs->drv->cuEventSynchronize(token_event(token));
	if (!r)
		return 0;
	cu_err(cs->drv, r, "cuEventSynchronize", 0);
	return context_dead(r) ? -EIO : -EAGAIN;
}

static int fence_signal_bound(struct kvc_backend *be, struct kvc_va *va,
			      uint64_t token, const struct kvc_fence *f)
{
	struct cuda_state *cs = state(be);
	kvc_cu_result r;

	r = cs->drv->cuStreamWaitEvent(f->handle, token_event(token),
				       KVC_CU_EVENT_WAIT_DEFAULT);
	return r ? cu_err(cs->drv, r, "cuStreamWaitEvent", 0) : 0;
}

/* The ops: each runs its _bound() body with the pool's context pushed. */
static int cuda_reserve(struct kvc_backend *be, uint64_t bytes,
			struct kvc_va *va)
{
	int err = bind(state(be));

	if (err)
		return err;
	err = reserve_bound(be, bytes, va);
	unbind(state(be));
	return err;
}

static int cuda_release(struct kvc_backend *be, struct kvc_va *va)
{
	int err = bind(state(be));

	if (err)
		return err;
	err = release_bound(be, va);
	unbind(state(be));
	return err;
}

static int cuda_map(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		    uint64_t bytes, uint64_t *handle)
{
	int err = bind(state(be));

	if (err)
		return err;
	err = map_bound(be, va, off, bytes, handle);
	unbind(state(be));
	return err;
}

static int cuda_unmap(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		      uint64_t bytes, uint64_t handle)
{
	int err = bind(state(be));

	if (err)
		return err;
	err = unmap_bound(be, va, off, bytes, handle);
	unbind(state(be));
	return err;
}

static int cuda_copy(struct kvc_backend *be, struct kvc_va *va,
		     const struct kvc_copy *copies, uint32_t n)
{
	int err = bind(state(be));

	if (err)
		return err;
	err = copy_bound(be, va, copies, n);
	unbind(state(be));
	return err;
}

static int cuda_fence(struct kvc_backend *be, struct kvc_va *va)
{
	int err = bind(state(be));

	if (err)
		return err;
	err = fence_bound(be, va);
	unbind(state(be));
	return err;
}

static int cuda_fence_after(struct kvc_backend *be, struct kvc_va *va,
			    const struct kvc_fence *f)
{
	int err;

	if (!f || f->kind == KVC_FENCE_NONE)
		return 0;
	if (f->kind != KVC_FENCE_CUDA_STREAM && f->kind != KVC_FENCE_CUDA_EVENT)
		return kvc_err(-EINVAL, "fence_after: unknown fence kind %d",
			       (int)f->kind);
	err = bind(state(be));
	if (err)
		return err;
	err = fence_after_bound(be, va, f);
	unbind(state(be));
	return err;
}

static int cuda_fence_record(struct kvc_backend *be, struct kvc_va *va,
			     uint64_t *token)
{
	int err = bind(state(be));

	if (err)
		return err;
	err = fence_record_bound(be, va, token);
	unbind(state(be));
	return err;
}

static int cuda_fence_query(struct kvc_backend *be, struct kvc_va *va,
			    uint64_t token)
{
	int err;

	if (!token)
		return 0;
	/* Not knowing is not completion: the work may still run. */
	if (bind(state(be)))
		return -EBUSY;
	err = fence_query_bound(be, va, token);
	unbind(state(be));
	return err;
}

static int cuda_fence_sync(struct kvc_backend *be, struct kvc_va *va,
			   uint64_t token)
{
	int err;

	if (!token)
		return 0;
	if (bind(state(be)))
		return kvc_err(
			-EAGAIN,
			"fence_sync: the pool's context could not be made current: %s",
			kvc_last_error());
	err = fence_sync_bound(be, va, token);
	unbind(state(be));
	return err;
}

static int cuda_fence_signal(struct kvc_backend *be, struct kvc_va *va,
			     uint64_t token, const struct kvc_fence *f)
{
	int err;

	if (!f || f->kind != KVC_FENCE_CUDA_STREAM)
		return kvc_err(-EINVAL,
			       "fence_signal: the fence must be a CUDA stream");
	if (!token)
		return 0;
	err = bind(state(be));
	if (err)
		return err;
	err = fence_signal_bound(be, va, token, f);
	unbind(state(be));
	return err;
}

/* Destroying a pending event is legal: the driver frees it when it fires. */
static void cuda_fence_put(struct kvc_backend *be, struct kvc_va *va,
			   uint64_t token)
{
	struct cuda_state *cs = state(be);
	bool bound;

	if (!token)
		return;
	bound = !bind(cs);
	destroy_event(cs, token_event(token));
	if (bound)
		unbind(cs);
}

static void cuda_close(struct kvc_backend *be)
{
	struct cuda_state *cs = state(be);
	struct zombie *z;

	bool bound = !bind(cs);

	pthread_mutex_lock(&cs->lock);
	release_zombies(cs);
	while ((z = cs->zombies)) {
		kvc_notice("device memory handle %#llx could not be released",
			   (unsigned long long)z->handle);
		cs->zombies = z->next;
		free(z);
	}
	pthread_mutex_unlock(&cs->lock);
	/* In the context they were loaded in, before it may go. */
	kvc_cuda_kernels_unload(cs->kernels);
	cs->drv->cuStreamDestroy(cs->stream);
	if (bound)
		unbind(cs);
	cs->drv->cuDevicePrimaryCtxRelease(cs->dev);
	pthread_mutex_destroy(&cs->lock);
	free(cs);
	free(be);
}

/*
 * Whether @drv has every entry point the kernels use: the real driver's
 * table lacks those an old libcuda does not export.
 */
static bool kernel_entry_points(const struct kvc_cuda_driver *drv)
{
	return drv->cuDeviceGetAttribute && drv->cuModuleLoadData &&
	       drv->cuModuleUnload && drv->cuModuleGetFunction &&
	       drv->cuFuncSetAttribute && drv->cuLaunchKernel &&
	       drv->cuMemAlloc && drv->cuMemFree && drv->cuMemAllocHost &&
	       drv->cuMemFreeHost && drv->cuMemcpyHtoDAsync &&
	       drv->cuMemcpyDtoHAsync && drv->cuMemsetD32Async &&
	       drv->cuMemGetInfo;
}

/*
 * Load the kernels into the context (current) where there are any: the
 * images built into the library, or, over a driver other than the real
 * one, the fake's emulation. Without them the backend still works, its
 * copies going block by block; only images that were built and do not
 * load deserve a word.
 */
static void load_kernels(struct cuda_state *cs)
{
	bool real = cs->drv == &real_driver;
	int err;

	if (real && !kvc_cuda_kernels_built())
		return;
	err = kernel_entry_points(cs->drv) ?
		      kvc_cuda_kernels_load(cs->drv, cs->dev, &cs->kernels) :
		      kvc_err(-ENOSYS,
			      "the CUDA driver lacks entry points the kernels need");
	if (err) {
		cs->kernels = NULL;
		if (real)
			kvc_notice(
				"CUDA kernels not loaded, block copies go one by one: %s",
				kvc_last_error());
	}
}

static const struct kvc_backend_ops cuda_ops = {
	.reserve = cuda_reserve,
	.release = cuda_release,
	.map = cuda_map,
	.unmap = cuda_unmap,
	.copy = cuda_copy,
	.fence = cuda_fence,
	.fence_after = cuda_fence_after,
	.fence_record = cuda_fence_record,
	.fence_query = cuda_fence_query,
	.fence_sync = cuda_fence_sync,
	.fence_signal = cuda_fence_signal,
	.fence_put = cuda_fence_put,
	.close = cuda_close,
};

int kvc_backend_open_cuda_driver(const struct kvc_cuda_driver *drv, int device,
				 struct kvc_backend **out)
{
	struct kvc_backend *be;
	struct cuda_state *cs;
	size_t gran = 0;
	kvc_cu_result r;
	int count = 0, err;

	if (!drv || !out || device < 0)
		return kvc_err(-EINVAL, "cuda backend: bad arguments");
	r = drv->cuInit(0);
	if (r)
		return kvc_err(-ENODEV,
			       "cuInit: %s (%d): no usable CUDA device",
			       cu_name(drv, r), r);
	r = drv->cuDeviceGetCount(&count);
	if (r)
		return cu_err(drv, r, "cuDeviceGetCount", 0);
	if (device >= count)
		return kvc_err(-ENODEV, "no CUDA device %d (%d found)", device,
			       count);
	be = calloc(1, sizeof(*be));
	cs = calloc(1, sizeof(*cs));
	if (!be || !cs) {
		err = kvc_err(-ENOMEM, "out of memory");
		goto err_free;
	}
	cs->drv = drv;
	r = drv->cuDeviceGet(&cs->dev, device);
	if (r) {
		err = cu_err(drv, r, "cuDeviceGet", 0);
		goto err_free;
	}
	r = drv->cuDevicePrimaryCtxRetain(&cs->ctx, cs->dev);
	if (r) {
		err = cu_err(drv, r, "cuDevicePrimaryCtxRetain", 0);
		goto err_free;
	}
	err = bind(cs);
	if (err)
		goto err_ctx;
	cs->prop.type = KVC_CU_MEM_ALLOCATION_TYPE_PINNED;
	cs->prop.requested_handle_types = KVC_CU_MEM_HANDLE_TYPE_NONE;
	cs->prop.location.type = KVC_CU_MEM_LOCATION_TYPE_DEVICE;
	cs->prop.location.id = cs->dev;
	cs->access.location = cs->prop.location;
	cs->access.flags = KVC_CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	r = drv->cuMemGetAllocationGranularity(
		&gran, &cs->prop, KVC_CU_MEM_ALLOC_GRANULARITY_MINIMUM);
	if (r) {
		err = cu_err(drv, r, "cuMemGetAllocationGranularity", 0);
		goto err_unbind;
	}
	if (!gran || (gran & (gran - 1))) {
		err = kvc_err(-EIO, "driver reports granularity %zu", gran);
		goto err_unbind;
	}
	r = drv->cuStreamCreate(&cs->stream, 0);
	if (r) {
		err = cu_err(drv, r, "cuStreamCreate", 0);
		goto err_unbind;
	}
	load_kernels(cs);
	unbind(cs);
	pthread_mutex_init(&cs->lock, NULL);
	be->ops = &cuda_ops;
	be->name = drv->name;
	be->granularity = gran;
	be->device = device;
	be->priv = cs;
	*out = be;
	return 0;

err_unbind:
	unbind(cs);
err_ctx:
	drv->cuDevicePrimaryCtxRelease(cs->dev);
err_free:
	free(cs);
	free(be);
	return err;
}

static pthread_once_t real_once = PTHREAD_ONCE_INIT;
static char real_error[200];

/* Fill real_driver from libcuda.so.1; on failure say why in real_error. */
static void load_real_driver(void)
{
	static const struct {
		const char *symbol;
		size_t offset;
	} syms[] = {
#define SYM(member, symbol) { symbol, offsetof(struct kvc_cuda_driver, member) }
		SYM(cuInit, "cuInit"),
		SYM(cuDeviceGetCount, "cuDeviceGetCount"),
		SYM(cuDeviceGet, "cuDeviceGet"),
		SYM(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
		SYM(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"),
		SYM(cuCtxPushCurrent, "cuCtxPushCurrent_v2"),
		SYM(cuCtxPopCurrent, "cuCtxPopCurrent_v2"),
		SYM(cuMemGetAllocationGranularity,
		    "cuMemGetAllocationGranularity"),
		SYM(cuMemAddressReserve, "cuMemAddressReserve"),
		SYM(cuMemAddressFree, "cuMemAddressFree"),
		SYM(cuMemCreate, "cuMemCreate"),
		SYM(cuMemRelease, "cuMemRelease"),
		SYM(cuMemMap, "cuMemMap"),
		SYM(cuMemUnmap, "cuMemUnmap"),
		SYM(cuMemSetAccess, "cuMemSetAccess"),
		SYM(cuStreamCreate, "cuStreamCreate"),
		SYM(cuStreamDestroy, "cuStreamDestroy_v2"),
		SYM(cuStreamSynchronize, "cuStreamSynchronize"),
		SYM(cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2"),
		SYM(cuEventCreate, "cuEventCreate"),
		SYM(cuEventRecord, "cuEventRecord"),
		SYM(cuEventQuery, "cuEventQuery"),
		SYM(cuEventSynchronize, "cuEventSynchronize"),
		SYM(cuEventDestroy, "cuEventDestroy_v2"),
		SYM(cuStreamWaitEvent, "cuStreamWaitEvent"),
		SYM(cuGetErrorName, "cuGetErrorName"),
	};
	/*
	 * What the kernels and measurements use: an old driver lacking one
	 * keeps the VMM path, only that member stays NULL (and then the
	 * kernels are not loaded). Where cuda.h maps a name to a newer
	 * symbol, an older driver's is tried after it.
	 */
	static const struct {
		const char *symbol;
		const char *fallback;
		size_t offset;
	} optional[] = {
#define OPT(member, symbol, fallback) \
	{ symbol, fallback, offsetof(struct kvc_cuda_driver, member) }
		OPT(cuDeviceGetAttribute, "cuDeviceGetAttribute", NULL),
		OPT(cuModuleLoadData, "cuModuleLoadData", NULL),
		OPT(cuModuleUnload, "cuModuleUnload", NULL),
		OPT(cuModuleGetFunction, "cuModuleGetFunction", NULL),
		OPT(cuFuncSetAttribute, "cuFuncSetAttribute", NULL),
		OPT(cuLaunchKernel, "cuLaunchKernel", NULL),
		OPT(cuMemAlloc, "cuMemAlloc_v2", NULL),
		OPT(cuMemFree, "cuMemFree_v2", NULL),
		OPT(cuMemAllocHost, "cuMemAllocHost_v2", NULL),
		OPT(cuMemFreeHost, "cuMemFreeHost", NULL),
		OPT(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", NULL),
		OPT(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", NULL),
		OPT(cuMemsetD32Async, "cuMemsetD32Async", NULL),
		OPT(cuMemGetInfo, "cuMemGetInfo_v2", NULL),
		OPT(cuEventElapsedTime, "cuEventElapsedTime_v2",
		    "cuEventElapsedTime"),
#undef OPT
#undef SYM
	};
	void *lib, *fn;
	size_t i;

	lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(real_error, sizeof(real_error), "no CUDA driver (%s)",
			 dlerror());
		return;
	}
	for (i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		fn = dlsym(lib, syms[i].symbol);
		if (!fn) {
			snprintf(real_error, sizeof(real_error),
				 "CUDA driver lacks %s: too old for VMM",
				 syms[i].symbol);
			dlclose(lib);
			return;
		}
		memcpy((char *)&real_driver + syms[i].offset, &fn, sizeof(fn));
	}
	for (i = 0; i < sizeof(optional) / sizeof(optional[0]); i++) {
		fn = dlsym(lib, optional[i].symbol);
		if (!fn && optional[i].fallback)
			fn = dlsym(lib, optional[i].fallback);
		if (fn)
			memcpy((char *)&real_driver + optional[i].offset, &fn,
			       sizeof(fn));
	}
}

int kvc_cuda_driver_real(const struct kvc_cuda_driver **out)
{
	pthread_once(&real_once, load_real_driver);
	if (real_error[0])
		return kvc_err(-ENODEV, "%s", real_error);
	*out = &real_driver;
	return 0;
}

int kvc_backend_open_cuda(int device, struct kvc_backend **out)
{
	const struct kvc_cuda_driver *drv;
	int err = kvc_cuda_driver_real(&drv);

	return err ? err : kvc_backend_open_cuda_driver(drv, device, out);
}

int kvc_backend_cuda_ctx(struct kvc_backend *be, struct kvc_cuda_ctx *out)
{
	struct cuda_state *cs;

	if (!be || be->ops != &cuda_ops)
		return kvc_err(-EOPNOTSUPP, "backend %s is not a cuda backend",
			       be ? be->name : "(none)");
	cs = state(be);
	out->drv = cs->drv;
	out->ctx = cs->ctx;
	out->dev = cs->dev;
	out->kernels = cs->kernels;
	out->stream = cs->stream;
	return 0;
}

int kvc_cuda_ctx_push(const struct kvc_cuda_ctx *c)
{
	kvc_cu_result r = c->drv->cuCtxPushCurrent(c->ctx);

	return r ? kvc_cu_errno(c->drv, r, "cuCtxPushCurrent") : 0;
}

void kvc_cuda_ctx_pop(const struct kvc_cuda_ctx *c)
{
	pop_context(c->drv);
}
