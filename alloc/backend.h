/* SPDX-License-Identifier: MIT */
/*
 * The device boundary: one ops struct that every backend implements (host,
 * cuda, and cuda over the fake driver). Nothing above this header knows
 * what a device is; nothing outside alloc/backend_*.c includes cuda.h.
 */
#ifndef KVC_ALLOC_BACKEND_H
#define KVC_ALLOC_BACKEND_H

#include <stdint.h>

#include <kvc/backend.h>

struct kvc_backend;

/**
 * struct kvc_backend_calls - Device calls made for one reservation.
 * @create: physical allocations (cuMemCreate; host: memfd extent).
 * @map: map calls (cuMemMap; host: mmap of the memfd).
 * @set_access: access grants (cuMemSetAccess; host: mprotect).
 * @unmap: unmap calls (cuMemUnmap; host: mmap PROT_NONE over the range).
 * @release: physical releases (cuMemRelease; host: hole punch).
 * @copy: block copies issued.
 */
struct kvc_backend_calls {
	uint64_t create;
	uint64_t map;
	uint64_t set_access;
	uint64_t unmap;
	uint64_t release;
	uint64_t copy;
};

/**
 * struct kvc_va - One virtual-address reservation.
 * @base: first address (device address for cuda).
 * @bytes: size, a multiple of the granularity.
 * @priv: the backend's per-reservation state.
 * @calls: device calls made on this reservation, for the stats.
 */
struct kvc_va {
	uint64_t base;
	uint64_t bytes;
	void *priv;
	struct kvc_backend_calls calls;
};

/**
 * struct kvc_copy - One block copy inside a reservation.
 * @src: source offset from the base.
 * @dst: destination offset from the base.
 * @bytes: bytes to copy.
 */
struct kvc_copy {
	uint64_t src;
	uint64_t dst;
	uint64_t bytes;
};

/**
 * struct kvc_backend_ops - What a device must do for a pool.
 * @reserve: reserve @bytes of address space into @va; nothing mapped.
 * @release: give the reservation back; every chunk must be unmapped.
 * @map: back [@off, @off + @bytes) with new physical memory and make it
 *       readable and writable (create + map + set access); on failure
 *       nothing stays created or mapped. @handle receives the backend's
 *       token for the chunk.
 * @unmap: undo exactly one @map (unmap + release). On failure the range is
 *         still mapped and usable and the call may be retried.
 * @copy: copy @n blocks inside @va, ordered after earlier copies.
 * @fence: wait until every copy issued so far has completed.
 * @fence_after: order the copies issued from now on after the work @f
 *               names (cuda: the backend's stream waits for it). Never
 *               blocks the host.
 * @fence_record: capture, as @token, the point after everything issued
 *                so far on the backend's stream: copies and the work of
 *                earlier @fence_after calls. Host: @token 0, complete.
 * @fence_query: 0 when @token has completed, -EBUSY while it is pending
 *               or its state cannot be learned, another -errno when the
 *               device reports an error for the work (the context is then
 *               broken and runs nothing more).
 * @fence_sync: block until @token completes; 0, -EAGAIN when it could not
 *              wait (the work may still run), or the device's -errno as
 *              for @fence_query.
 * @fence_signal: order the work queued on @f from now on after @token
 *                (cuda: @f's stream waits for it). Only for a stream;
 *                -EINVAL for another kind. Host: nothing to do.
 * @fence_put: drop @token (it may still be pending).
 * @close: free the backend itself.
 *
 * All offsets and sizes given to @map and @unmap are multiples of the
 * backend's granularity; each op returns 0 or -errno and records a
 * message with kvc_err() on failure. Ops may be called from several
 * threads for different reservations.
 */
struct kvc_backend_ops {
	int (*reserve)(struct kvc_backend *be, uint64_t bytes,
		       struct kvc_va *va);
	int (*release)(struct kvc_backend *be, struct kvc_va *va);
	int (*map)(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		   uint64_t bytes, uint64_t *handle);
	int (*unmap)(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		     uint64_t bytes, uint64_t handle);
	int (*copy)(struct kvc_backend *be, struct kvc_va *va,
		    const struct kvc_copy *copies, uint32_t n);
	int (*fence)(struct kvc_backend *be, struct kvc_va *va);
	int (*fence_after)(struct kvc_backend *be, struct kvc_va *va,
			   const struct kvc_fence *f);
	int (*fence_record)(struct kvc_backend *be, struct kvc_va *va,
			    uint64_t *token);
	int (*fence_query)(struct kvc_backend *be, struct kvc_va *va,
			   uint64_t token);
	int (*fence_sync)(struct kvc_backend *be, struct kvc_va *va,
			  uint64_t token);
	int (*fence_signal)(struct kvc_backend *be, struct kvc_va *va,
			    uint64_t token, const struct kvc_fence *f);
	void (*fence_put)(struct kvc_backend *be, struct kvc_va *va,
			  uint64_t token);
	void (*close)(struct kvc_backend *be);
};

/**
 * struct kvc_backend - An open backend.
 * @ops: its operations.
 * @name: "host", "cuda" or "cuda-fake".
 * @granularity: allocation granularity in bytes, queried at open.
 * @device: device ordinal, -1 for host.
 * @priv: the backend's own state.
 */
struct kvc_backend {
	const struct kvc_backend_ops *ops;
	const char *name;
	uint64_t granularity;
	int device;
	void *priv;
};

struct kvc_cuda_driver;

/**
 * kvc_backend_open_cuda_driver() - Open the cuda backend over a driver table.
 * @drv: the driver entry points (the real libcuda's, or the fake driver's);
 *       must outlive the backend.
 * @device: device ordinal.
 * @out: set to the new backend.
 *
 * Return: 0, -ENODEV when the driver has no such device, -EIO for other
 * driver failures, -ENOMEM.
 */
int kvc_backend_open_cuda_driver(const struct kvc_cuda_driver *drv, int device,
				 struct kvc_backend **out);

/**
 * kvc_backend_open_cuda() - Open the cuda backend over the real driver.
 * @device: device ordinal.
 * @out: set to the new backend.
 *
 * Looks the driver up at run time, so binaries start where none is.
 *
 * Return: 0, -ENODEV when no driver or device is present, -EIO, -ENOMEM.
 */
int kvc_backend_open_cuda(int device, struct kvc_backend **out);

struct kvc_cuda_kernels;

/**
 * struct kvc_cuda_ctx - What code beside a cuda backend needs to queue
 * device work in the pool's context.
 * @drv: the driver table (real or fake).
 * @ctx: the device's primary context (a CUcontext).
 * @dev: the device (a CUdevice).
 * @kernels: the kernels loaded in @ctx, or NULL when the library carries
 *           none or they do not load on this device.
 * @stream: the backend's own stream, which runs its copies when no fence
 *          names one (a CUstream).
 */
struct kvc_cuda_ctx {
	const struct kvc_cuda_driver *drv;
	void *ctx;
	int dev;
	struct kvc_cuda_kernels *kernels;
	void *stream;
};

/**
 * kvc_backend_cuda_ctx() - The context of a cuda backend.
 * @be: the backend.
 * @out: filled in; valid until the backend is closed.
 *
 * Return: 0, or -EOPNOTSUPP when @be is not a cuda backend.
 */
int kvc_backend_cuda_ctx(struct kvc_backend *be, struct kvc_cuda_ctx *out);

/**
 * kvc_cuda_ctx_push() - Make the context current on this thread.
 * @c: the context.
 *
 * Return: 0 or -errno (with a message).
 */
int kvc_cuda_ctx_push(const struct kvc_cuda_ctx *c);

/**
 * kvc_cuda_ctx_pop() - Undo kvc_cuda_ctx_push().
 * @c: the context.
 */
void kvc_cuda_ctx_pop(const struct kvc_cuda_ctx *c);

/**
 * kvc_cuda_driver_real() - The table of the real driver, libcuda.so.1.
 * @out: the table, loaded once per process.
 *
 * Return: 0, or -ENODEV (with a message) when no driver can be loaded.
 */
int kvc_cuda_driver_real(const struct kvc_cuda_driver **out);

/**
 * kvc_cu_errno() - A driver result as -errno, with a message.
 * @drv: the driver (for the error's name).
 * @r: the result, not CUDA_SUCCESS.
 * @what: the call that failed, for the message.
 *
 * Return: -ENOMEM for out of memory, -ENODEV for no device or driver,
 * -EINVAL for invalid values and handles, -EBUSY for not ready, -EIO for
 * the rest (failed launches, dead contexts).
 */
int kvc_cu_errno(const struct kvc_cuda_driver *drv, int r, const char *what);

#endif /* KVC_ALLOC_BACKEND_H */
