// SPDX-License-Identifier: MIT
/*
 * Staging for the device side of a cache: the kernels' arguments (block
 * tables, lengths, slots, queries, K and V rows, moves) are gathered in
 * page-locked host memory, copied to device memory on the cache's stream,
 * and results come back the same way. Two bump arenas, one on each side;
 * a call reserves all it needs before it queues anything, so running out
 * of room fails a call before it changes anything. Room is handed out
 * again only once the stream has drained, so queued copies and kernels
 * never see their arguments change.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "../alloc/error.h"
#include "device.h"

/* Arenas start at this size and at least double when they grow. */
#define STAGE_MIN_BYTES (64u << 10)

static uint64_t grown(uint64_t cap, uint64_t need)
{
	uint64_t c = cap ? cap : STAGE_MIN_BYTES;

	while (c < need)
		c = c > UINT64_MAX / 2 ? need : c * 2;
	return c;
}

static int grow_host(struct kvc_dev *d, uint64_t need)
{
	const struct kvc_cuda_driver *drv = d->c.drv;
	struct kvc_stage *s = &d->stage;
	uint64_t cap = grown(s->host_cap, need);
	void *p = NULL;
	kvc_cu_result r;

	if (cap > SIZE_MAX)
		return kvc_err(-ENOMEM, "%llu bytes of host staging",
			       (unsigned long long)cap);
	r = drv->cuMemAllocHost(&p, (size_t)cap);
	if (r)
		return kvc_cu_errno(drv, r, "cuMemAllocHost");
	if (s->host)
		drv->cuMemFreeHost(s->host);
	s->host = p;
	s->host_cap = cap;
	return 0;
}

static int grow_dev(struct kvc_dev *d, uint64_t need)
{
	const struct kvc_cuda_driver *drv = d->c.drv;
	struct kvc_stage *s = &d->stage;
	uint64_t cap = grown(s->dev_cap, need);
	kvc_cu_ptr p = 0;
	kvc_cu_result r;

	if (cap > SIZE_MAX)
		return kvc_err(-ENOMEM, "%llu bytes of device staging",
			       (unsigned long long)cap);
	r = drv->cuMemAlloc(&p, (size_t)cap);
	if (r)
		return kvc_cu_errno(drv, r, "cuMemAlloc");
	if (s->dev)
		drv->cuMemFree(s->dev);
	s->dev = p;
	s->dev_cap = cap;
	return 0;
}

int kvc_stage_reserve(struct kvc_dev *d, uint64_t host, uint64_t dev)
{
	struct kvc_stage *s = &d->stage;
	int err;

	if (s->host_top + host <= s->host_cap && s->dev_top + dev <= s->dev_cap)
		return 0;
	/* Room is reused, or freed, only once nothing queued can use it. */
	err = kvc_dev_sync(d);
	if (err)
		return err;
	if (host > s->host_cap) {
		err = grow_host(d, host);
		if (err)
			return err;
	}
	if (dev > s->dev_cap)
		return grow_dev(d, dev);
	return 0;
}

void *kvc_stage_host(struct kvc_dev *d, uint64_t bytes)
{
	struct kvc_stage *s = &d->stage;
	void *p = s->host + s->host_top;

	s->host_top += kvc_stage_size(bytes);
	return p;
}

kvc_cu_ptr kvc_stage_dev(struct kvc_dev *d, uint64_t bytes)
{
	struct kvc_stage *s = &d->stage;
	kvc_cu_ptr p = s->dev + s->dev_top;

	s->dev_top += kvc_stage_size(bytes);
	return p;
}

void *kvc_stage_in(struct kvc_dev *d, struct kvc_upload *up, uint64_t bytes,
		   kvc_cu_ptr *dev)
{
	uint8_t *host = kvc_stage_host(d, bytes);

	*dev = kvc_stage_dev(d, bytes);
	if (!up->bytes) {
		up->host = host;
		up->dev = *dev;
	}
	/* The pieces sit end to end on both sides: one copy takes them. */
	up->bytes = (uint64_t)(host - up->host) + bytes;
	return host;
}

int kvc_stage_upload(struct kvc_dev *d, const struct kvc_upload *up)
{
	const struct kvc_cuda_driver *drv = d->c.drv;
	kvc_cu_result r;

	if (!up->bytes)
		return 0;
	r = drv->cuMemcpyHtoDAsync(up->dev, up->host, (size_t)up->bytes,
				   d->stream);
	return r ? kvc_cu_errno(drv, r, "cuMemcpyHtoDAsync") : 0;
}

int kvc_stage_download(struct kvc_dev *d, void *host, kvc_cu_ptr src,
		       uint64_t bytes)
{
	const struct kvc_cuda_driver *drv = d->c.drv;
	kvc_cu_result r;

	if (!bytes)
		return 0;
	r = drv->cuMemcpyDtoHAsync(host, src, (size_t)bytes, d->stream);
	return r ? kvc_cu_errno(drv, r, "cuMemcpyDtoHAsync") : 0;
}

void kvc_stage_free(struct kvc_dev *d)
{
	struct kvc_stage *s = &d->stage;

	if (s->dev)
		d->c.drv->cuMemFree(s->dev);
	if (s->host)
		d->c.drv->cuMemFreeHost(s->host);
	memset(s, 0, sizeof(*s));
}
