// SPDX-License-Identifier: MIT
/*
 * The host backend: CUDA VMM's model on host memory. A reservation is an
 * mmap(PROT_NONE, MAP_NORESERVE); its physical memory is one memfd, and a
 * chunk is the memfd range at the chunk's offset, mapped MAP_SHARED |
 * MAP_FIXED over the reservation and then opened for access. Unmapping
 * puts PROT_NONE anonymous memory back and punches the memfd hole, so the
 * pages really go back to the kernel. Enforces the same rules as the
 * driver: granularity-aligned sizes and offsets, unmap exactly one map.
 * Never touches memory outside its reservation.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <kvc/error.h>

#include "backend.h"
#include "error.h"

/*
 * @maps[g] is the length in granules of the mapping that starts at granule
 * g, %INSIDE for the other granules of a mapping, 0 for unmapped ones:
 * what lets unmap insist on exactly one map, and map refuse to land on a
 * mapped range (MAP_FIXED would silently replace it).
 */
#define INSIDE UINT32_MAX

struct host_va {
	int memfd;
	uint32_t *maps;
};

static bool range_free(const struct host_va *hv, uint64_t g, uint64_t n)
{
	uint64_t i;

	for (i = g; i < g + n; i++)
		if (hv->maps[i])
			return false;
	return true;
}

static void mark_range(struct host_va *hv, uint64_t g, uint64_t n, bool on)
{
	uint64_t i;

	for (i = g; i < g + n; i++)
		hv->maps[i] = !on ? 0 : i == g ? (uint32_t)n : INSIDE;
}

static bool aligned(const struct kvc_backend *be, uint64_t v)
{
	return (v & (be->granularity - 1)) == 0;
}

static int host_range_ok(struct kvc_backend *be, struct kvc_va *va,
			 uint64_t off, uint64_t bytes, const char *what)
{
	if (!bytes || !aligned(be, off) || !aligned(be, bytes) ||
	    off > va->bytes || bytes > va->bytes - off)
		return kvc_err(
			-EINVAL,
			"host %s [%#llx, +%#llx): not granularity-aligned or outside the reservation",
			what, (unsigned long long)off,
			(unsigned long long)bytes);
	return 0;
}

static int host_reserve(struct kvc_backend *be, uint64_t bytes,
			struct kvc_va *va)
{
	struct host_va *hv;
	void *base;
	int err;

	if (!bytes || !aligned(be, bytes))
		return kvc_err(
			-EINVAL,
			"host reserve of %llu bytes: not a multiple of %llu",
			(unsigned long long)bytes,
			(unsigned long long)be->granularity);
	hv = calloc(1, sizeof(*hv));
	if (!hv)
		return kvc_err(-ENOMEM, "out of memory");
	/* Over-reserve by one granule so the base can be aligned to it. */
	base = mmap(NULL, bytes + be->granularity, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		err = kvc_err(-ENOMEM, "host reserve of %llu bytes: %s",
			      (unsigned long long)bytes, strerror(errno));
		goto err_free;
	}
	{
		uintptr_t start = (uintptr_t)base;
		uintptr_t al = (start + be->granularity - 1) &
			       ~(uintptr_t)(be->granularity - 1);

		if (al > start)
			munmap(base, al - start);
		if (start + be->granularity > al)
			munmap((void *)(al + bytes),
			       start + be->granularity - al);
		base = (void *)al;
	}
	if (bytes / be->granularity >= INSIDE) {
		err = kvc_err(-EINVAL, "host reserve: %llu granules, too many",
			      (unsigned long long)(bytes / be->granularity));
		goto err_unmap;
	}
	hv->maps = calloc(bytes / be->granularity, sizeof(*hv->maps));
	if (!hv->maps) {
		err = kvc_err(-ENOMEM, "out of memory");
		goto err_unmap;
	}
	hv->memfd = memfd_create("kvc-pool", MFD_CLOEXEC);
	if (hv->memfd < 0) {
		err = kvc_err(-errno, "memfd_create: %s", strerror(errno));
		goto err_maps;
	}
	if (ftruncate(hv->memfd, (off_t)bytes)) {
		err = kvc_err(-errno, "memfd of %llu bytes: %s",
			      (unsigned long long)bytes, strerror(errno));
		goto err_close;
	}
	va->base = (uint64_t)(uintptr_t)base;
	va->bytes = bytes;
	va->priv = hv;
	return 0;

err_close:
	close(hv->memfd);
err_maps:
	free(hv->maps);
err_unmap:
	munmap(base, bytes);
err_free:
	free(hv);
	return err;
}

static int host_release(struct kvc_backend *be, struct kvc_va *va)
{
	struct host_va *hv = va->priv;

	if (!range_free(hv, 0, va->bytes / be->granularity))
		return kvc_err(-EBUSY, "host release: chunks still mapped");
	munmap((void *)(uintptr_t)va->base, va->bytes);
	close(hv->memfd);
	free(hv->maps);
	free(hv);
	va->priv = NULL;
	return 0;
}

static int host_map(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		    uint64_t bytes, uint64_t *handle)
{
	struct host_va *hv = va->priv;
	void *addr = (void *)(uintptr_t)(va->base + off);
	int err;

	err = host_range_ok(be, va, off, bytes, "map");
	if (err)
		return err;
	if (!range_free(hv, off / be->granularity, bytes / be->granularity))
		return kvc_err(
			-EINVAL, "host map [%#llx, +%#llx): already mapped",
			(unsigned long long)off, (unsigned long long)bytes);
	/* Like cuMemCreate: physical pages are really there after this. */
	va->calls.create++;
	if (fallocate(hv->memfd, 0, (off_t)off, (off_t)bytes))
		return kvc_err(errno == ENOSPC ? -ENOMEM : -errno,
			       "host chunk at %#llx: fallocate: %s",
			       (unsigned long long)off, strerror(errno));
	va->calls.map++;
	if (mmap(addr, bytes, PROT_NONE, MAP_SHARED | MAP_FIXED, hv->memfd,
		 (off_t)off) == MAP_FAILED) {
		err = kvc_err(-ENOMEM, "host chunk at %#llx: mmap: %s",
			      (unsigned long long)off, strerror(errno));
		goto err_release;
	}
	va->calls.set_access++;
	if (mprotect(addr, bytes, PROT_READ | PROT_WRITE)) {
		err = kvc_err(-ENOMEM, "host chunk at %#llx: mprotect: %s",
			      (unsigned long long)off, strerror(errno));
		goto err_unmap;
	}
	mark_range(hv, off / be->granularity, bytes / be->granularity, true);
	*handle = off;
	return 0;

err_unmap:
	mmap(addr, bytes, PROT_NONE,
	     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
err_release:
	fallocate(hv->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		  (off_t)off, (off_t)bytes);
	return err;
}

static int host_unmap(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		      uint64_t bytes, uint64_t handle)
{
	struct host_va *hv = va->priv;
	void *addr = (void *)(uintptr_t)(va->base + off);
	int err;

	err = host_range_ok(be, va, off, bytes, "unmap");
	if (err)
		return err;
	if (handle != off ||
	    hv->maps[off / be->granularity] != bytes / be->granularity)
		return kvc_err(
			-EINVAL,
			"host unmap [%#llx, +%#llx): not exactly one mapping",
			(unsigned long long)off, (unsigned long long)bytes);
	va->calls.unmap++;
	if (mmap(addr, bytes, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1,
		 0) == MAP_FAILED)
		return kvc_err(-errno, "host unmap at %#llx: %s",
			       (unsigned long long)off, strerror(errno));
	mark_range(hv, off / be->granularity, bytes / be->granularity, false);
	va->calls.release++;
	if (fallocate(hv->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)bytes))
		kvc_notice("host unmap at %#llx: hole punch failed: %s",
			   (unsigned long long)off, strerror(errno));
	return 0;
}

static int host_copy(struct kvc_backend *be, struct kvc_va *va,
		     const struct kvc_copy *copies, uint32_t n)
{
	char *base = (char *)(uintptr_t)va->base;
	uint32_t i;

	for (i = 0; i < n; i++) {
		const struct kvc_copy *c = &copies[i];

		if (c->src > va->bytes || c->bytes > va->bytes - c->src ||
		    c->dst > va->bytes || c->bytes > va->bytes - c->dst)
			return kvc_err(-EINVAL,
				       "host copy %u: outside the reservation",
				       i);
	}
	for (i = 0; i < n; i++) {
		memmove(base + copies[i].dst, base + copies[i].src,
			copies[i].bytes);
		va->calls.copy++;
	}
	return 0;
}

/* Host copies are synchronous: nothing is ever pending. */
static int host_fence(struct kvc_backend *be, struct kvc_va *va)
{
	return 0;
}

/*
 * Host memory is touched only by the host, synchronously: whatever fence
 * the caller names has completed, and every token is complete at birth.
 */
static int host_fence_after(struct kvc_backend *be, struct kvc_va *va,
			    const struct kvc_fence *f)
{
	return 0;
}

static int host_fence_record(struct kvc_backend *be, struct kvc_va *va,
			     uint64_t *token)
{
	*token = 0;
	return 0;
}

static int host_fence_token(struct kvc_backend *be, struct kvc_va *va,
			    uint64_t token)
{
	return 0;
}

static int host_fence_signal(struct kvc_backend *be, struct kvc_va *va,
			     uint64_t token, const struct kvc_fence *f)
{
	if (!f || f->kind != KVC_FENCE_CUDA_STREAM)
		return kvc_err(-EINVAL, "host fence_signal: not a stream");
	return 0;
}

static void host_fence_put(struct kvc_backend *be, struct kvc_va *va,
			   uint64_t token)
{
}

static void host_close(struct kvc_backend *be)
{
	free(be);
}

static const struct kvc_backend_ops host_ops = {
	.reserve = host_reserve,
	.release = host_release,
	.map = host_map,
	.unmap = host_unmap,
	.copy = host_copy,
	.fence = host_fence,
	.fence_after = host_fence_after,
	.fence_record = host_fence_record,
	.fence_query = host_fence_token,
	.fence_sync = host_fence_token,
	.fence_signal = host_fence_signal,
	.fence_put = host_fence_put,
	.close = host_close,
};

int kvc_backend_open_host(uint64_t granularity, struct kvc_backend **out)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	struct kvc_backend *be;

	if (!out)
		return kvc_err(-EINVAL, "kvc_backend_open_host: NULL out");
	if (!granularity)
		granularity = KVC_HOST_GRANULARITY;
	if (granularity < page || (granularity & (granularity - 1)))
		return kvc_err(
			-EINVAL,
			"host granularity %llu: must be a power of two of at least %llu",
			(unsigned long long)granularity,
			(unsigned long long)page);
	be = calloc(1, sizeof(*be));
	if (!be)
		return kvc_err(-ENOMEM, "out of memory");
	be->ops = &host_ops;
	be->name = "host";
	be->granularity = granularity;
	be->device = -1;
	*out = be;
	return 0;
}
