/* SPDX-License-Identifier: MIT */
/*
 * A fake CUDA driver for tests: the VMM calls implemented on host memory,
 * enforcing the driver's rules, counting what is outstanding, and failing
 * the Nth call of any entry point on demand. One fake per process.
 */
#ifndef KVC_ALLOC_FAKE_DRIVER_H
#define KVC_ALLOC_FAKE_DRIVER_H

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
	KVC_FAKE_NR_FNS,
};

/**
 * struct kvc_fake_config - How the fake device looks.
 * @granularity: allocation granularity (power of two, >= page size).
 * @devices: number of devices.
 * @memory_bytes: device memory; cuMemCreate beyond it fails with
 *                CUDA_ERROR_OUT_OF_MEMORY. 0 = unlimited.
 */
struct kvc_fake_config {
	uint64_t granularity;
	int devices;
	uint64_t memory_bytes;
};

/**
 * struct kvc_fake_counts - What the fake holds right now.
 * @handles: created and not yet released allocation handles.
 * @mappings: live cuMemMap mappings.
 * @reservations: live address reservations.
 * @contexts: retained primary contexts.
 * @pushed: contexts pushed and not yet popped, over all threads.
 * @streams: live streams.
 * @memory_used: bytes of device memory held by live handles.
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
	uint64_t memory_used;
	uint64_t violations;
	uint64_t calls[KVC_FAKE_NR_FNS];
};

/**
 * kvc_fake_driver() - Reset the fake and return its entry-point table.
 * @cfg: the device to emulate, or NULL for one device, 2 MiB granularity,
 *       unlimited memory.
 *
 * Everything the previous fake held must have been released.
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
 * Return: a message, or "" when none was broken.
 */
const char *kvc_fake_last_violation(void);

#endif /* KVC_ALLOC_FAKE_DRIVER_H */
