// SPDX-License-Identifier: MIT
/*
 * The sim backend: a device that maps nothing, for replays and studies.
 * A reservation is a fake, granularity-aligned address range far above
 * real mappings; maps and unmaps only check the rules the host backend
 * enforces (aligned sizes and offsets, no double map, unmap exactly one
 * map) and count; copies check their ranges are mapped and do nothing;
 * fences complete at once. Never dereferences a reservation's address,
 * so a pool of terabytes costs only its metadata.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include <kvc/error.h>

#include "backend.h"
#include "error.h"

/*
 * Fake bases are handed out from one process-wide counter, so no two
 * reservations (of any sim backend) overlap; 1 << 46 is above where Linux
 * puts ordinary mappings on the common 47-bit layouts, and is never
 * touched anyway.
 */
#define SIM_BASE (1ull << 46)

static _Atomic uint64_t sim_next = SIM_BASE;

/*
 * @mapped has one bit per granule that is backed; @start one bit per
 * granule where a mapping begins. Together they say where each mapping
 * ends, which is what unmap needs to insist on exactly one map.
 */
struct sim_va {
	uint64_t granules;
	uint64_t *mapped;
	uint64_t *start;
};

static bool bit(const uint64_t *map, uint64_t i)
{
	return (map[i / 64] >> (i % 64)) & 1;
}

static void set_bit(uint64_t *map, uint64_t i, bool on)
{
	if (on)
		map[i / 64] |= 1ull << (i % 64);
	else
		map[i / 64] &= ~(1ull << (i % 64));
}

static bool aligned(const struct kvc_backend *be, uint64_t v)
{
	return (v & (be->granularity - 1)) == 0;
}

static bool all_mapped(const struct sim_va *sv, uint64_t g, uint64_t n)
{
	uint64_t i;

	for (i = g; i < g + n; i++)
		if (!bit(sv->mapped, i))
			return false;
	return true;
}

static bool none_mapped(const struct sim_va *sv, uint64_t g, uint64_t n)
{
	uint64_t i;

	for (i = g; i < g + n; i++)
		if (bit(sv->mapped, i))
			return false;
	return true;
}

static int sim_range_ok(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
			uint64_t bytes, const char *what)
{
	if (!bytes || !aligned(be, off) || !aligned(be, bytes) ||
	    off > va->bytes || bytes > va->bytes - off)
		return kvc_err(
			-EINVAL,
			"sim %s [%#llx, +%#llx): not granularity-aligned or outside the reservation",
			what, (unsigned long long)off,
			(unsigned long long)bytes);
	return 0;
}

static int sim_reserve(struct kvc_backend *be, uint64_t bytes,
		       struct kvc_va *va)
{
	struct sim_va *sv;
	uint64_t words;

	if (!bytes || !aligned(be, bytes))
		return kvc_err(
			-EINVAL,
			"sim reserve of %llu bytes: not a multiple of %llu",
			(unsigned long long)bytes,
			(unsigned long long)be->granularity);
	/* Keep fake addresses inside 64 bits with room to spare. */
	if (bytes > (1ull << 56))
		return kvc_err(-EINVAL, "sim reserve of %llu bytes: too large",
			       (unsigned long long)bytes);
	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return kvc_err(-ENOMEM, "out of memory");
	sv->granules = bytes / be->granularity;
	words = (sv->granules + 63) / 64;
	sv->mapped = calloc(words, sizeof(*sv->mapped));
	sv->start = calloc(words, sizeof(*sv->start));
	if (!sv->mapped || !sv->start) {
		free(sv->mapped);
		free(sv->start);
		free(sv);
		return kvc_err(-ENOMEM, "out of memory");
	}
	{
		uint64_t g = be->granularity;
		uint64_t old = atomic_load(&sim_next);
		uint64_t base, next;

		do {
			base = (old + g - 1) & ~(g - 1);
			next = base + bytes;
		} while (!atomic_compare_exchange_weak(&sim_next, &old, next));
		va->base = base;
	}
	va->bytes = bytes;
	va->priv = sv;
	return 0;
}

static int sim_release(struct kvc_backend *be, struct kvc_va *va)
{
	struct sim_va *sv = va->priv;

	if (!none_mapped(sv, 0, sv->granules))
		return kvc_err(-EBUSY, "sim release: chunks still mapped");
	free(sv->mapped);
	free(sv->start);
	free(sv);
	va->priv = NULL;
	return 0;
}

static void mark(struct sim_va *sv, uint64_t g, uint64_t n, bool on)
{
	uint64_t i;

	for (i = g; i < g + n; i++)
		set_bit(sv->mapped, i, on);
	set_bit(sv->start, g, on);
}

static int sim_map(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		   uint64_t bytes, uint64_t *handle)
{
	struct sim_va *sv = va->priv;
	uint64_t g = off / be->granularity, n = bytes / be->granularity;
	int err;

	err = sim_range_ok(be, va, off, bytes, "map");
	if (err)
		return err;
	if (!none_mapped(sv, g, n))
		return kvc_err(
			-EINVAL, "sim map [%#llx, +%#llx): already mapped",
			(unsigned long long)off, (unsigned long long)bytes);
	va->calls.create++;
	va->calls.map++;
	va->calls.set_access++;
	mark(sv, g, n, true);
	*handle = off;
	return 0;
}

static int sim_unmap(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		     uint64_t bytes, uint64_t handle)
{
	struct sim_va *sv = va->priv;
	uint64_t g = off / be->granularity, n = bytes / be->granularity;
	uint64_t i;
	bool one = true;
	int err;

	err = sim_range_ok(be, va, off, bytes, "unmap");
	if (err)
		return err;
	/*
	 * Exactly one map: it starts at @off, covers the range, no other
	 * map starts inside it, and it does not run on past the end.
	 */
	if (handle != off || !bit(sv->start, g) || !all_mapped(sv, g, n))
		one = false;
	for (i = g + 1; one && i < g + n; i++)
		if (bit(sv->start, i))
			one = false;
	if (one && g + n < sv->granules && bit(sv->mapped, g + n) &&
	    !bit(sv->start, g + n))
		one = false;
	if (!one)
		return kvc_err(
			-EINVAL,
			"sim unmap [%#llx, +%#llx): not exactly one mapping",
			(unsigned long long)off, (unsigned long long)bytes);
	va->calls.unmap++;
	va->calls.release++;
	mark(sv, g, n, false);
	return 0;
}

static bool copy_range_ok(struct kvc_backend *be, const struct sim_va *sv,
			  const struct kvc_va *va, uint64_t off, uint64_t bytes)
{
	uint64_t g, end;

	if (off > va->bytes || bytes > va->bytes - off)
		return false;
	if (!bytes)
		return true;
	g = off / be->granularity;
	end = (off + bytes - 1) / be->granularity;
	return all_mapped(sv, g, end - g + 1);
}

static int sim_copy(struct kvc_backend *be, struct kvc_va *va,
		    const struct kvc_copy *copies, uint32_t n)
{
	struct sim_va *sv = va->priv;
	uint32_t i;

	for (i = 0; i < n; i++) {
		const struct kvc_copy *c = &copies[i];

		if (!copy_range_ok(be, sv, va, c->src, c->bytes) ||
		    !copy_range_ok(be, sv, va, c->dst, c->bytes))
			return kvc_err(
				-EINVAL,
				"sim copy %u (%#llx -> %#llx, %llu bytes): outside the mapped chunks",
				i, (unsigned long long)c->src,
				(unsigned long long)c->dst,
				(unsigned long long)c->bytes);
	}
	va->calls.copy += n;
	return 0;
}

/* Nothing runs on a sim device: every fence has completed already. */
static int sim_fence(struct kvc_backend *be, struct kvc_va *va)
{
	return 0;
}

static int sim_fence_after(struct kvc_backend *be, struct kvc_va *va,
			   const struct kvc_fence *f)
{
	return 0;
}

static int sim_fence_record(struct kvc_backend *be, struct kvc_va *va,
			    uint64_t *token)
{
	*token = 0;
	return 0;
}

static int sim_fence_token(struct kvc_backend *be, struct kvc_va *va,
			   uint64_t token)
{
	return 0;
}

static int sim_fence_signal(struct kvc_backend *be, struct kvc_va *va,
			    uint64_t token, const struct kvc_fence *f)
{
	return 0;
}

static void sim_fence_put(struct kvc_backend *be, struct kvc_va *va,
			  uint64_t token)
{
}

static void sim_close(struct kvc_backend *be)
{
	free(be);
}

static const struct kvc_backend_ops sim_ops = {
	.reserve = sim_reserve,
	.release = sim_release,
	.map = sim_map,
	.unmap = sim_unmap,
	.copy = sim_copy,
	.fence = sim_fence,
	.fence_after = sim_fence_after,
	.fence_record = sim_fence_record,
	.fence_query = sim_fence_token,
	.fence_sync = sim_fence_token,
	.fence_signal = sim_fence_signal,
	.fence_put = sim_fence_put,
	.close = sim_close,
};

int kvc_backend_open_sim(uint64_t granularity, struct kvc_backend **out)
{
	struct kvc_backend *be;

	if (!out)
		return kvc_err(-EINVAL, "kvc_backend_open_sim: NULL out");
	if (!granularity)
		granularity = KVC_HOST_GRANULARITY;
	if (granularity < 4096 || (granularity & (granularity - 1)))
		return kvc_err(
			-EINVAL,
			"sim granularity %llu: must be a power of two of at least 4096",
			(unsigned long long)granularity);
	be = calloc(1, sizeof(*be));
	if (!be)
		return kvc_err(-ENOMEM, "out of memory");
	be->ops = &sim_ops;
	be->name = "sim";
	be->granularity = granularity;
	be->device = -1;
	*out = be;
	return 0;
}
