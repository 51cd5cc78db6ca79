/* SPDX-License-Identifier: MIT */
/*
 * A fake CUDA driver for tests: the VMM calls implemented on host memory,
 * enforcing the driver's rules, counting what is outstanding, and failing
 * the Nth call of any entry point on demand. One fake per process.
 *
 * Streams and events behave as in the driver, with work that can be made
 * to take time (kvc_fake_set_async()). A test that plays the caller's
 * part makes its streams and events as a CUDA application would, with a
 * context current on the thread (cuStreamCreate and cuEventCreate fail
 * with CUDA_ERROR_INVALID_CONTEXT otherwise):
 *
 *	drv->cuDevicePrimaryCtxRetain(&ctx, 0);
 *	drv->cuCtxPushCurrent(ctx);
 *	drv->cuStreamCreate(&stream, 0);
 *	drv->cuEventCreate(&event, 0);
 *	drv->cuCtxPopCurrent(&ctx);
 *
 * The other stream and event calls need no context. At the end: destroy
 * them (no context needed), then cuDevicePrimaryCtxRelease(0). The NULL
 * stream is the default stream, and so are CU_STREAM_LEGACY ((void *)0x1)
 * and CU_STREAM_PER_THREAD ((void *)0x2); it does not synchronise
 * implicitly with other streams here (only explicit waits order streams).
 * There are at most 64 streams at a time, the default one included.
 */
#ifndef KVC_ALLOC_FAKE_DRIVER_H
#define KVC_ALLOC_FAKE_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda_driver.h"

/** enum kvc_fake_fn - The fake driver's entry points, for fault injection. */
enum kvc_fake_fn {
	KVC_FAKE_INIT,
	KVC_FAKE_DEVICE_GET_COUNT,
	KVC_FAKE_DEVICE_GET,
	KVC_FAKE_CTX_RETAIN,
	KVC_FAKE_CTX_RELEASE,
	KVC_FAKE_CTX_PUSH,
	KVC_FAKE_CTX_POP,
	KVC_FAKE_GRANULARITY,
	KVC_FAKE_ADDRESS_RESERVE,
	KVC_FAKE_ADDRESS_FREE,
	KVC_FAKE_CREATE,
	KVC_FAKE_RELEASE,
	KVC_FAKE_MAP,
	KVC_FAKE_UNMAP,
	KVC_FAKE_SET_ACCESS,
	KVC_FAKE_STREAM_CREATE,
	KVC_FAKE_STREAM_DESTROY,
	KVC_FAKE_STREAM_SYNC,
	KVC_FAKE_MEMCPY,
	KVC_FAKE_EVENT_CREATE,
	KVC_FAKE_EVENT_RECORD,
	KVC_FAKE_EVENT_QUERY,
	KVC_FAKE_EVENT_SYNC,
	KVC_FAKE_EVENT_DESTROY,
	KVC_FAKE_STREAM_WAIT_EVENT,
	KVC_FAKE_DEVICE_ATTRIBUTE,
	KVC_FAKE_MODULE_LOAD,
	KVC_FAKE_MODULE_UNLOAD,
	KVC_FAKE_MODULE_GET_FUNCTION,
	KVC_FAKE_FUNC_SET_ATTRIBUTE,
	KVC_FAKE_LAUNCH_KERNEL,
	KVC_FAKE_MEM_ALLOC,
	KVC_FAKE_MEM_FREE,
	KVC_FAKE_MEM_ALLOC_HOST,
	KVC_FAKE_MEM_FREE_HOST,
	KVC_FAKE_MEMCPY_HTOD,
	KVC_FAKE_MEMCPY_DTOH,
	KVC_FAKE_MEMSET_D32,
	KVC_FAKE_MEM_GET_INFO,
	KVC_FAKE_EVENT_ELAPSED,
	KVC_FAKE_NR_FNS,
};

/**
 * struct kvc_fake_config - How the fake device looks.
 * @granularity: allocation granularity (power of two, >= page size).
 * @devices: number of devices.
 * @memory_bytes: device memory; cuMemCreate and cuMemAlloc beyond it
 *                (the two together) fail with CUDA_ERROR_OUT_OF_MEMORY.
 *                0 = unlimited (cuMemGetInfo then reports 80 GiB).
 * @sms: multiprocessors (0: 4).
 * @smem_optin: most dynamic shared memory a CTA may opt in to, bytes
 *              (0: 99 KiB).
 * @cc_major: compute capability, major (0: 9.0, @cc_minor ignored).
 * @cc_minor: compute capability, minor.
 * @mem_clock_khz: memory clock, kHz (0: 2619000).
 * @bus_bits: memory bus width, bits (0: 5120).
 * @l2_bytes: L2 cache size (0: 50 MiB).
 * @no_kernels: cuModuleGetFunction finds no kernel (CUDA_ERROR_NOT_FOUND),
 *              so kernels do not load and the backend copies block by
 *              block with cuMemcpyDtoDAsync.
 *
 * Fields after @memory_bytes may be left 0 for a device like an H100.
 */
struct kvc_fake_config {
	uint64_t granularity;
	int devices;
	uint64_t memory_bytes;
	uint32_t sms;
	uint32_t smem_optin;
	uint32_t cc_major;
	uint32_t cc_minor;
	uint32_t mem_clock_khz;
	uint32_t bus_bits;
	uint64_t l2_bytes;
	bool no_kernels;
};

/**
 * struct kvc_fake_counts - What the fake holds right now.
 * @handles: created and not yet released allocation handles.
 * @mappings: live cuMemMap mappings.
 * @reservations: live address reservations.
 * @contexts: retained primary contexts.
 * @pushed: contexts pushed and not yet popped, over all threads.
 * @streams: live streams (not destroyed; a destroyed stream's queued
 *           work is still counted in @pending).
 * @events: live events (not destroyed).
 * @pending: stream operations queued and not yet run (async mode only:
 *           in sync mode they run when queued).
 * @memory_used: bytes of device memory held by live handles.
 * @allocs: cuMemAlloc allocations not yet freed.
 * @alloc_bytes: bytes they hold (each rounded up to 256).
 * @host_allocs: cuMemAllocHost allocations not yet freed.
 * @modules: modules loaded and not unloaded.
 * @launches: cuLaunchKernel calls that queued a kernel (per kernel name:
 *            kvc_fake_launches()).
 * @violations: calls that broke a rule (and were refused).
 * @calls: calls per entry point.
 */
struct kvc_fake_counts {
	uint64_t handles;
	uint64_t mappings;
	uint64_t reservations;
	uint64_t contexts;
	uint64_t pushed;
	uint64_t streams;
	uint64_t events;
	uint64_t pending;
	uint64_t memory_used;
	uint64_t allocs;
	uint64_t alloc_bytes;
	uint64_t host_allocs;
	uint64_t modules;
	uint64_t launches;
	uint64_t violations;
	uint64_t calls[KVC_FAKE_NR_FNS];
};

/**
 * kvc_fake_driver() - Reset the fake and return its entry-point table.
 * @cfg: the device to emulate, or NULL for one device, 2 MiB granularity,
 *       unlimited memory.
 *
 * Everything the previous fake held must have been released: handles,
 * mappings, reservations, contexts (retained or pushed), streams, events,
 * cuMemAlloc and cuMemAllocHost allocations, loaded modules, and queued
 * work (run it with kvc_fake_run() first), so that a test that leaks any
 * of them makes the next reset fail. Resets to sync mode, zero counts
 * (the per-kernel launch counts too) and no pending failure.
 *
 * Return: the table, or NULL when @cfg is invalid or the fake is not clean.
 */
const struct kvc_cuda_driver *
kvc_fake_driver(const struct kvc_fake_config *cfg);

/**
 * kvc_fake_fail() - Make the @nth next call of @fn fail.
 * @fn: the entry point.
 * @nth: 1 = the next call, 2 = the one after, ...; 0 cancels.
 * @result: the CUresult it returns (e.g. KVC_CUDA_ERROR_OUT_OF_MEMORY).
 */
void kvc_fake_fail(enum kvc_fake_fn fn, uint64_t nth, kvc_cu_result result);

/**
 * kvc_fake_counts() - What the fake holds, and how it was called.
 * @counts: filled on return.
 */
void kvc_fake_counts(struct kvc_fake_counts *counts);

/**
 * kvc_fake_fn_name() - Name of an entry point ("cuMemMap", ...).
 * @fn: the entry point.
 *
 * Return: a static string.
 */
const char *kvc_fake_fn_name(enum kvc_fake_fn fn);

/**
 * kvc_fake_last_violation() - The last rule a caller broke.
 *
 * Return: a message, or "" when none was broken: a copy taken under the
 * fake's lock into a buffer of the calling thread, valid until its next
 * call of this function.
 */
const char *kvc_fake_last_violation(void);

/**
 * kvc_fake_set_async() - Model device work that takes time.
 * @on: true: stream operations (copies, sets, kernels from
 *      cuLaunchKernel and kvc_fake_launch(), event records, waits) queue
 *      on their stream and run only when
 *      kvc_fake_run() or a synchronize call runs them, in stream order,
 *      a wait holding its stream until the event's record has run.
 *      false (the default after kvc_fake_driver()): they run at once;
 *      switching to false first runs everything queued.
 *
 * In async mode:
 * - cuStreamSynchronize runs that stream's queue and, recursively, the
 *   records its waits wait for; cuEventSynchronize runs what the event's
 *   latest record needs. Neither runs unrelated work, so a test sees
 *   what a missing wait would leave undone.
 * - cuEventQuery returns CUDA_ERROR_NOT_READY while the event's latest
 *   record is queued; an event never recorded has completed.
 * - cuStreamWaitEvent waits for the event's latest record as of the call
 *   (recording the event again later does not move the wait).
 * - cuMemUnmap, cuMemAddressFree, cuMemFree or cuMemFreeHost of memory
 *   that queued work touches is a violation, refused (the real device
 *   would fault on the running kernel); queued work that finds its range unmapped or inaccessible
 *   when it runs is a violation, and is skipped.
 * - Destroying a stream or an event with work queued is allowed, as in
 *   CUDA: the handle dies at once, the work still runs.
 * - Unordered conflicting work is a violation. Happens-before: stream
 *   order; cuEventRecord then a cuStreamWaitEvent on it (a wait orders
 *   even when the record has run already); and what the host has seen
 *   complete (cuStreamSynchronize, or cuEventSynchronize or cuEventQuery
 *   returning 0, for what the stream or the event's latest record
 *   covers) happens before all work queued afterwards. kvc_fake_run() is
 *   not seen by the host: work it ran can still race until a synchronize
 *   or a query shows it complete. When a copy, set or kernel is queued,
 *   any such operation on another stream, queued or not yet seen
 *   complete, not ordered before it, touching the same bytes with one of
 *   the two writing (a copy reads its source and writes its destination,
 *   on the host side only pinned memory counting; a set writes; a
 *   kvc_fake_launch() kernel reads and writes its range; a cuLaunchKernel
 *   kernel as in DOC: Kernels and device memory) is reported as
 *   "unordered: ...".
 *   The call still succeeds and the work is queued and runs as usual:
 *   one violation per queued operation that races.
 * - A copy or kernel that faults when it runs (above) breaks the context
 *   for good, as on a device: the rest of the queued work is dropped, and
 *   every call that waits for, queues or creates something
 *   (cuStreamSynchronize, cuEventSynchronize, cuEventQuery,
 *   cuEventElapsedTime, cuEventRecord, cuStreamWaitEvent, the copies and
 *   cuMemsetD32Async, cuLaunchKernel, kvc_fake_launch(), cuStreamCreate,
 *   cuEventCreate, cuMemCreate, cuMemMap, cuMemSetAccess,
 *   cuMemAddressReserve, cuMemAlloc, cuMemAllocHost, cuMemGetInfo,
 *   cuModuleLoadData, cuModuleGetFunction) returns the sticky error until
 *   kvc_fake_driver() resets: CUDA_ERROR_ILLEGAL_ADDRESS for a fault,
 *   CUDA_ERROR_LAUNCH_FAILED for a kernel whose emulation refused its
 *   arguments. Destroying, releasing, unmapping, freeing and unloading
 *   still work, so that a test can clean up.
 *
 * In sync mode work runs when queued and the host sees it complete at
 * once, so nothing ever races; switching to false runs everything queued
 * and counts it as seen complete.
 */
void kvc_fake_set_async(bool on);

/**
 * DOC: Kernels and device memory
 *
 * cuModuleLoadData (a context current) takes any non-NULL image;
 * cuModuleGetFunction finds a name iff kvc_emulate_known() knows it
 * (CUDA_ERROR_NOT_FOUND, 500, otherwise). cuLaunchKernel (a context
 * current) checks the launch: grid and block dimensions nonzero, at most
 * 1024 threads, at most 65535 CTAs in y and z, @extra NULL, one parameter
 * (the kernel's struct from args.h, chosen by the name: kvc_decode_*,
 * kvc_prefill_*, kvc_cache_write, kvc_move_cache, kvc_block_copy), and
 * dynamic shared memory within 48 KiB or, beyond, within what
 * cuFuncSetAttribute allowed (at most &kvc_fake_config.smem_optin). It
 * copies the argument struct at the call, as the driver copies
 * parameters, and queues the kernel on the stream like a copy; when it
 * runs, kvc_emulate_launch() runs it on the CPU. An emulation that
 * refuses its arguments is a violation and breaks the context
 * (CUDA_ERROR_LAUNCH_FAILED).
 *
 * What a kernel touches, for the race, unmap and free checks: a
 * kvc_block_copy with inline pairs reads exactly its source items and
 * writes exactly its destination items, checked to be mapped read-write
 * when it runs (else a fault, as for a copy). Any other kernel is taken
 * to read and write the whole of each allocation an address in its
 * arguments points into (a cuMemAlloc or cuMemAllocHost block, or a whole
 * reservation), except that the attention kernels (kvc_decode_*,
 * kvc_prefill_*) only read the cache at kv.base: coarse, so races are
 * found at allocation grain; cuMemUnmap, which works at chunk grain, is
 * checked only against exact ranges. Each such address must lie in one
 * of those allocations when the kernel runs (else a fault); that the
 * cache blocks it reads are mapped is not checked (the emulation would
 * crash the test).
 *
 * cuMemAlloc (a context current) gives 256-byte-aligned host memory
 * filled with 0xff bytes (the driver does not clear it: NaN as floats),
 * usable by copies and kernels; cuMemFree of another pointer is a
 * violation, of 0 a no-op, of memory queued work uses a violation (the
 * driver would fault). cuMemAllocHost gives page-aligned pinned memory:
 * cuMemcpyHtoDAsync reads it, and cuMemcpyDtoHAsync writes it, when the
 * copy runs, while a pageable source is copied at the call (the driver
 * stages it) and a pageable destination is written when the copy runs
 * (stricter than the driver, which returns only once it is written).
 * cuMemGetInfo reports &kvc_fake_config.memory_bytes (or 80 GiB) less
 * what cuMemCreate and cuMemAlloc hold. cuEventElapsedTime reports fake
 * time: every operation run on any stream takes one microsecond, so the
 * time between two records is the number of operations the fake ran
 * between them.
 */

/**
 * kvc_fake_launches() - Kernels launched since the last reset.
 * @name: a kernel's name, or NULL for all kernels.
 *
 * Return: how many cuLaunchKernel calls queued a kernel of that name.
 */
uint64_t kvc_fake_launches(const char *name);

/**
 * kvc_fake_launch() - Queue a "kernel" that reads and writes a range.
 * @stream: a stream of the fake (from its cuStreamCreate), or NULL for the
 *          default stream.
 * @ptr: first byte it touches.
 * @bytes: bytes it touches.
 *
 * When it runs it checks that the range is mapped with read-write access
 * (a violation otherwise, and the kernel is skipped) and adds 1 to every
 * byte, so tests can see that it ran, and in which order. As on a device,
 * the fault is not reported to the launch, not even in sync mode. Not an
 * entry point: kvc_fake_fail() cannot fail it, and it needs no context.
 *
 * Return: 0, CUDA_ERROR_INVALID_HANDLE (a violation) for a stream that
 * is not live, or the sticky error once the context is broken.
 */
kvc_cu_result kvc_fake_launch(kvc_cu_stream stream, kvc_cu_ptr ptr,
			      size_t bytes);

/**
 * kvc_fake_run() - Run queued work until nothing more can run.
 *
 * Streams take turns, one operation each, until none can run. Queued work
 * always drains: a wait only waits for a record queued before it. This is
 * the device making progress, not the host learning of it: what it runs
 * is not seen complete (see kvc_fake_set_async()).
 *
 * Return: the number of operations run (0 in sync mode).
 */
uint64_t kvc_fake_run(void);

#endif /* KVC_ALLOC_FAKE_DRIVER_H */
