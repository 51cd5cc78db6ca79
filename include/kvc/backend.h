/* SPDX-License-Identifier: MIT */
/*
 * kvc device backends, as the public API sees them: opaque handles that a
 * pool maps its chunks through. The ops behind them live in alloc/backend.h.
 */
#ifndef KVC_BACKEND_H
#define KVC_BACKEND_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct kvc_backend;

/**
 * enum kvc_backend_kind - Which device a pool maps its chunks on.
 * @KVC_BACKEND_AUTO: CUDA when a driver and a device answer, else host with
 *                    a one-line notice on stderr.
 * @KVC_BACKEND_HOST: host memory through mmap/memfd, same rules as CUDA VMM.
 * @KVC_BACKEND_CUDA: the CUDA VMM driver API; fails with -ENODEV when no
 *                    driver or device is present.
 */
enum kvc_backend_kind {
	KVC_BACKEND_AUTO = 0,
	KVC_BACKEND_HOST = 1,
	KVC_BACKEND_CUDA = 2,
};

/**
 * enum kvc_fence_kind - What a struct kvc_fence points at.
 * @KVC_FENCE_NONE: no device work is pending on the blocks concerned.
 * @KVC_FENCE_CUDA_STREAM: @handle is a CUstream (cudaStream_t): the work
 *                         queued on it so far. NULL is the legacy default
 *                         stream. Streams and events must belong to the
 *                         device's primary context (the CUDA runtime's),
 *                         which the pool uses too.
 * @KVC_FENCE_CUDA_EVENT: @handle is a CUevent (cudaEvent_t), recorded by the
 *                        caller: the work it captured when last recorded.
 */
enum kvc_fence_kind {
	KVC_FENCE_NONE = 0,
	KVC_FENCE_CUDA_STREAM = 1,
	KVC_FENCE_CUDA_EVENT = 2,
};

/**
 * struct kvc_fence - Device work that may still touch some blocks.
 * @kind: what @handle is.
 * @handle: the stream or event, as the caller's CUDA API knows it.
 *
 * The pool captures the fence when it is passed (it waits for the work
 * queued up to that moment, not for work queued later) and never keeps
 * the caller's handle. The host backend's work is synchronous, so there
 * every fence has completed already.
 */
struct kvc_fence {
	enum kvc_fence_kind kind;
	void *handle;
};

/** KVC_HOST_GRANULARITY - Default chunk granularity of the host backend. */
#define KVC_HOST_GRANULARITY (2u << 20)

/**
 * kvc_backend_kind_parse() - Parse "auto", "host" or "cuda".
 * @name: the name.
 * @kind: set on success.
 *
 * Return: 0, or -EINVAL for an unknown name.
 */
int kvc_backend_kind_parse(const char *name, enum kvc_backend_kind *kind);

/**
 * kvc_backend_open() - Open a backend of the given kind.
 * @kind: which backend; %KVC_BACKEND_AUTO falls back to host.
 * @device: CUDA device ordinal (ignored by host).
 * @out: set to the new backend on success.
 *
 * Return: 0; -EINVAL for bad arguments; -ENODEV when CUDA was asked for
 * explicitly and no driver or device is there; -EIO for other driver
 * errors; -ENOMEM.
 */
int kvc_backend_open(enum kvc_backend_kind kind, int device,
		     struct kvc_backend **out);

/**
 * kvc_backend_open_host() - Open a host backend with a chosen granularity.
 * @granularity: chunk granularity in bytes: a power of two, at least the
 *               page size; 0 means %KVC_HOST_GRANULARITY.
 * @out: set to the new backend on success.
 *
 * A smaller granularity lets tests use small chunks; the rules (sizes and
 * offsets multiples of it) are enforced as the CUDA driver enforces its own.
 *
 * Return: 0, -EINVAL for a bad granularity, -ENOMEM.
 */
int kvc_backend_open_host(uint64_t granularity, struct kvc_backend **out);

/**
 * kvc_backend_open_sim() - Open a backend that maps nothing.
 * @granularity: chunk granularity in bytes: a power of two, at least 4 KiB;
 *               0 means %KVC_HOST_GRANULARITY.
 * @out: set to the new backend on success.
 *
 * For replays and studies: reservations get an address range that is
 * never backed (a block's address must not be touched), maps and unmaps
 * only check the same rules the host backend enforces and count, copies
 * do nothing, fences are complete at once. A pool of terabytes costs only
 * its metadata.
 *
 * Return: 0, -EINVAL for a bad granularity, -ENOMEM.
 */
int kvc_backend_open_sim(uint64_t granularity, struct kvc_backend **out);

/**
 * kvc_backend_close() - Close a backend.
 * @be: the backend, or NULL. Every pool using it must be destroyed first.
 */
void kvc_backend_close(struct kvc_backend *be);

/**
 * kvc_backend_name() - Name of a backend ("host", "cuda", "cuda-fake").
 * @be: the backend.
 *
 * Return: a static string.
 */
const char *kvc_backend_name(const struct kvc_backend *be);

/**
 * kvc_backend_granularity() - The backend's allocation granularity.
 * @be: the backend.
 *
 * Queried from the device when the backend opens, never assumed.
 *
 * Return: granularity in bytes.
 */
uint64_t kvc_backend_granularity(const struct kvc_backend *be);

#ifdef __cplusplus
}
#endif
#endif /* KVC_BACKEND_H */
