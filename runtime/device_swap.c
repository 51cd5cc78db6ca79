// SPDX-License-Identifier: MIT
/*
 * Blocks of a device cache to and from page-locked host buffers, on their
 * way to or from the swap file, and the slot metadata of blocks read back
 * pushed up to the device. Every copy goes on the cache's stream, so it is
 * ordered after the cache's earlier work on the same blocks; each buffer
 * has an event recorded behind its copies, which is what a caller waits
 * for before it touches the buffer again. A buffer is never freed, and a
 * failed call never returns, while queued copies may still use it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/error.h>
#include <kvc/pool.h>

#include "../alloc/error.h"
#include "device.h"
#include "internal.h"

/* Buffers per set, and the alignment O_DIRECT wants of them. */
#define XFER_MAX_BUFS 4u
#define XFER_ALIGN 4096u

/**
 * struct xfer_buf - One buffer.
 * @alloc: what cuMemAllocHost gave, freed with cuMemFreeHost.
 * @host: @alloc aligned to %XFER_ALIGN.
 * @event: recorded on the cache's stream behind the buffer's copies.
 */
struct xfer_buf {
	void *alloc;
	uint8_t *host;
	kvc_cu_event event;
};

struct kvc_dev_xfer {
	struct kvc_kv *kv;
	struct kvc_dev *d;
	uint64_t bytes;
	uint32_t nr_bufs;
	struct xfer_buf buf[XFER_MAX_BUFS];
};

/* Context current. */
static int buf_alloc(struct kvc_dev *d, struct xfer_buf *b, uint64_t bytes)
{
	const struct kvc_cuda_driver *drv = d->c.drv;
	kvc_cu_result r;
	void *p = NULL;

	r = drv->cuMemAllocHost(&p, (size_t)bytes);
	if (r)
		return kvc_cu_errno(drv, r, "cuMemAllocHost");
	/*
	 * The driver gives pages in practice but does not promise it: only
	 * when it did not, pay for a page more and align inside.
	 */
	if ((uintptr_t)p % XFER_ALIGN) {
		drv->cuMemFreeHost(p);
		p = NULL;
		r = drv->cuMemAllocHost(&p, (size_t)(bytes + XFER_ALIGN - 1));
		if (r)
			return kvc_cu_errno(drv, r, "cuMemAllocHost");
	}
	b->alloc = p;
	b->host = (uint8_t *)(((uintptr_t)p + XFER_ALIGN - 1) &
			      ~(uintptr_t)(XFER_ALIGN - 1));
	r = drv->cuEventCreate(&b->event, KVC_CU_EVENT_DISABLE_TIMING);
	if (r) {
		b->event = NULL;
		return kvc_cu_errno(drv, r, "cuEventCreate");
	}
	return 0;
}

/*
 * Free a buffer, first waiting for its copies when @wait (context current
 * if it can be).
 */
static void buf_free(struct kvc_dev *d, struct xfer_buf *b, bool wait)
{
	const struct kvc_cuda_driver *drv = d->c.drv;
	kvc_cu_result r;

	if (b->event) {
		/*
		 * Should the event not answer, the stream covers its copies
		 * too; a context where neither answers is dead and runs
		 * nothing more, so freeing is safe then.
		 */
		r = wait ? drv->cuEventSynchronize(b->event) : 0;
		if (r && !drv->cuStreamSynchronize(d->stream))
			r = 0;
		if (r) {
			kvc_cu_errno(drv, r, "cuEventSynchronize");
			kvc_notice("a swap buffer's copies did not finish: %s",
				   kvc_last_error());
		}
		drv->cuEventDestroy(b->event);
	}
	if (b->alloc)
		drv->cuMemFreeHost(b->alloc);
	memset(b, 0, sizeof(*b));
}

int kvc_dev_xfer_create(struct kvc_kv *kv, uint64_t bytes, uint32_t nr_bufs,
			struct kvc_dev_xfer **out)
{
	struct kvc_dev_xfer *x;
	uint32_t i;
	int err;

	if (!out)
		return kvc_err(-EINVAL, "kvc_dev_xfer_create: NULL out");
	*out = NULL;
	if (!kv || !kv->dev)
		return kvc_err(
			-EINVAL,
			"kvc_dev_xfer_create: %s cache, not a device one",
			kv ? "a host" : "a NULL");
	if (!bytes || bytes % XFER_ALIGN || bytes > SIZE_MAX - XFER_ALIGN)
		return kvc_err(
			-EINVAL,
			"kvc_dev_xfer_create: %llu bytes per buffer, not a nonzero multiple of %u",
			(unsigned long long)bytes, XFER_ALIGN);
	if (!nr_bufs || nr_bufs > XFER_MAX_BUFS)
		return kvc_err(-EINVAL,
			       "kvc_dev_xfer_create: %u buffers, not 1 to %u",
			       nr_bufs, XFER_MAX_BUFS);
	x = calloc(1, sizeof(*x));
	if (!x)
		return kvc_err(-ENOMEM, "out of memory for swap buffers");
	x->kv = kv;
	x->d = kv->dev;
	x->bytes = bytes;
	x->nr_bufs = nr_bufs;
	err = kvc_dev_enter(x->d);
	if (err)
		goto err_free;
	for (i = 0; i < nr_bufs && !err; i++)
		err = buf_alloc(x->d, &x->buf[i], bytes);
	if (err) {
		/* Nothing was queued on them: no wait. */
		for (i = 0; i < nr_bufs; i++)
			buf_free(x->d, &x->buf[i], false);
	}
	kvc_dev_leave(x->d);
	if (err)
		goto err_free;
	*out = x;
	return 0;

err_free:
	free(x);
	return err;
}

void kvc_dev_xfer_destroy(struct kvc_dev_xfer *x)
{
	bool pushed;
	uint32_t i;

	if (!x)
		return;
	/* Not kvc_dev_enter(): a cache whose metadata was lost still frees. */
	pushed = !kvc_cuda_ctx_push(&x->d->c);
	for (i = 0; i < x->nr_bufs; i++)
		buf_free(x->d, &x->buf[i], true);
	if (pushed)
		kvc_cuda_ctx_pop(&x->d->c);
	free(x);
}

void *kvc_dev_xfer_buf(struct kvc_dev_xfer *x, uint32_t i)
{
	if (!x || i >= x->nr_bufs) {
		kvc_err(-EINVAL, "kvc_dev_xfer_buf: buffer %u of %u", i,
			x ? x->nr_bufs : 0);
		return NULL;
	}
	return x->buf[i].host;
}

/*
 * Every id a live block of @kv: a copy from or to an unmapped address
 * would fault, and a fault ends the context for good.
 */
static int ids_check(struct kvc_kv *kv, const char *what, const uint32_t *ids,
		     uint32_t n)
{
	uint64_t addr;
	uint32_t k;

	if (n && !ids)
		return kvc_err(-EINVAL, "%s: NULL ids", what);
	for (k = 0; k < n; k++) {
		if (ids[k] >= kv->capacity_blocks)
			return kvc_err(
				-EINVAL,
				"%s: block id %u (entry %u) >= capacity %llu",
				what, ids[k], k,
				(unsigned long long)kv->capacity_blocks);
		if (kvc_pool_block_addr(kv->pool, ids[k], &addr))
			return kvc_err(-EINVAL,
				       "%s: block %u (entry %u) is not live",
				       what, ids[k], k);
	}
	return 0;
}

static int xfer_check(struct kvc_dev_xfer *x, const char *what, uint32_t i,
		      const uint32_t *ids, uint32_t n, uint64_t stride)
{
	if (!x)
		return kvc_err(-EINVAL, "%s: NULL buffers", what);
	if (i >= x->nr_bufs)
		return kvc_err(-EINVAL, "%s: buffer %u of %u", what, i,
			       x->nr_bufs);
	if (stride < x->kv->block_bytes)
		return kvc_err(-EINVAL,
			       "%s: stride %llu below the block's %llu bytes",
			       what, (unsigned long long)stride,
			       (unsigned long long)x->kv->block_bytes);
	if (n > x->bytes / stride)
		return kvc_err(
			-EINVAL,
			"%s: %u blocks at a stride of %llu bytes overflow a %llu-byte buffer",
			what, n, (unsigned long long)stride,
			(unsigned long long)x->bytes);
	return ids_check(x->kv, what, ids, n);
}

/* Blocks from @k on that are adjacent in the pool and in the buffer. */
static uint32_t run_len(const uint32_t *ids, uint32_t n, uint32_t k,
			bool packed)
{
	uint32_t j = k + 1;

	if (packed)
		while (j < n && ids[j] == ids[j - 1] + 1)
			j++;
	return j - k;
}

/* Queue the copies of one direction and the record behind them. */
static int xfer_queue(struct kvc_dev_xfer *x, uint32_t i, const uint32_t *ids,
		      uint32_t n, uint64_t stride, bool down)
{
	struct kvc_dev *d = x->d;
	const struct kvc_cuda_driver *drv = d->c.drv;
	uint64_t bb = x->kv->block_bytes, base = d->paged.base;
	bool packed = stride == bb;
	uint8_t *host = x->buf[i].host;
	kvc_cu_result r = 0;
	const char *call;
	uint32_t k, len;
	int err;

	err = kvc_dev_enter(d);
	if (err)
		return err;
	for (k = 0; k < n && !r; k += len) {
		kvc_cu_ptr dev = base + (uint64_t)ids[k] * bb;
		size_t bytes;

		len = run_len(ids, n, k, packed);
		bytes = (size_t)(len * bb);
		if (down) {
			call = "cuMemcpyDtoHAsync";
			r = drv->cuMemcpyDtoHAsync(host + k * stride, dev,
						   bytes, d->stream);
		} else {
			call = "cuMemcpyHtoDAsync";
			r = drv->cuMemcpyHtoDAsync(dev, host + k * stride,
						   bytes, d->stream);
		}
	}
	if (!r && n) {
		call = "cuEventRecord";
		r = drv->cuEventRecord(x->buf[i].event, d->stream);
	}
	if (r) {
		err = kvc_cu_errno(drv, r, call);
		/*
		 * The event does not cover what was queued before the
		 * failure: drain the stream, so that the buffer is free
		 * when this returns. Its own error would only hide ours.
		 */
		drv->cuStreamSynchronize(d->stream);
	}
	kvc_dev_leave(d);
	return err;
}

int kvc_dev_xfer_down(struct kvc_dev_xfer *x, uint32_t i, const uint32_t *ids,
		      uint32_t n, uint64_t stride)
{
	int err = xfer_check(x, "kvc_dev_xfer_down", i, ids, n, stride);

	return err ? err : xfer_queue(x, i, ids, n, stride, true);
}

int kvc_dev_xfer_up(struct kvc_dev_xfer *x, uint32_t i, const uint32_t *ids,
		    uint32_t n, uint64_t stride)
{
	int err = xfer_check(x, "kvc_dev_xfer_up", i, ids, n, stride);

	return err ? err : xfer_queue(x, i, ids, n, stride, false);
}

int kvc_dev_xfer_wait(struct kvc_dev_xfer *x, uint32_t i)
{
	const struct kvc_cuda_driver *drv;
	kvc_cu_result r;
	int err;

	if (!x)
		return kvc_err(-EINVAL, "kvc_dev_xfer_wait: NULL buffers");
	if (i >= x->nr_bufs)
		return kvc_err(-EINVAL, "kvc_dev_xfer_wait: buffer %u of %u", i,
			       x->nr_bufs);
	drv = x->d->c.drv;
	err = kvc_cuda_ctx_push(&x->d->c);
	if (err)
		return err;
	r = drv->cuEventSynchronize(x->buf[i].event);
	kvc_cuda_ctx_pop(&x->d->c);
	return r ? kvc_cu_errno(drv, r, "cuEventSynchronize") : 0;
}

int kvc_dev_meta_push(struct kvc_kv *kv, const uint32_t *ids, uint32_t n)
{
	const struct kvc_cuda_driver *drv;
	struct kvc_dev *d;
	uint32_t bs, k, len;
	uint64_t item;
	kvc_cu_result r = 0;
	int err;

	if (!kv || !kv->dev)
		return kvc_err(-EINVAL,
			       "kvc_dev_meta_push: %s cache, not a device one",
			       kv ? "a host" : "a NULL");
	err = ids_check(kv, "kvc_dev_meta_push", ids, n);
	if (err || !n)
		return err;
	d = kv->dev;
	drv = d->c.drv;
	bs = kv->shape.block_size;
	item = (uint64_t)bs * sizeof(struct kvc_slot_meta);
	err = kvc_dev_enter(d);
	if (err)
		return err;
	for (k = 0; k < n && !r; k += len) {
		len = run_len(ids, n, k, true);
		r = drv->cuMemcpyHtoDAsync(d->meta + ids[k] * item,
					   &kv->meta[(uint64_t)ids[k] * bs],
					   (size_t)(len * item), d->stream);
	}
	if (r) {
		err = kvc_cu_errno(drv, r, "cuMemcpyHtoDAsync");
		drv->cuStreamSynchronize(d->stream);
	} else {
		err = kvc_dev_sync(d);
	}
	kvc_dev_leave(d);
	return err;
}
