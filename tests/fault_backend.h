/* SPDX-License-Identifier: MIT */
/*
 * A backend that wraps another and fails the Nth call of any op: fault
 * injection through the ops struct, for backends with no fake driver.
 * It also logs the copies that went through, so tests can compare what
 * the device copied with what the pool reported.
 */
#ifndef KVC_TESTS_FAULT_BACKEND_H
#define KVC_TESTS_FAULT_BACKEND_H

#include <stdint.h>

#include "backend.h"

/* Every op that can fail; fence_put cannot, and close is not counted. */
enum fault_op {
	FAULT_RESERVE,
	FAULT_RELEASE,
	FAULT_MAP,
	FAULT_UNMAP,
	FAULT_COPY,
	FAULT_FENCE,
	FAULT_FENCE_AFTER,
	FAULT_FENCE_RECORD,
	FAULT_FENCE_QUERY,
	FAULT_FENCE_SYNC,
	FAULT_FENCE_SIGNAL,
	FAULT_NR_OPS,
};

/**
 * struct fault_counts - Calls seen, and what the wrapped backend holds.
 * @calls: calls per op, failed ones included.
 * @mapped: chunks mapped and not unmapped (successful calls only).
 * @reserved: reservations not released.
 * @tokens: fence tokens recorded (successfully) and not yet put.
 * @puts: fence_put calls.
 * @copied_blocks: copies done by successful copy calls.
 * @copied_bytes: their bytes.
 */
struct fault_counts {
	uint64_t calls[FAULT_NR_OPS];
	int64_t mapped;
	int64_t reserved;
	int64_t tokens;
	uint64_t puts;
	uint64_t copied_blocks;
	uint64_t copied_bytes;
};

/* Wrap @inner (owned from now on: closing the wrapper closes it). */
struct kvc_backend *fault_backend_wrap(struct kvc_backend *inner);
/* Fail the @nth next call of @op with @err; @nth 0 cancels. */
void fault_backend_fail(struct kvc_backend *be, enum fault_op op, uint64_t nth,
			int err);
void fault_backend_counts(struct kvc_backend *be, struct fault_counts *out);
const char *fault_op_name(enum fault_op op);
/* A reservation the test released itself, behind the wrapper's back. */
void fault_backend_forget_reservation(struct kvc_backend *be);
/*
 * The copies done by successful copy calls since the last reset (at most
 * the last 64K of them are kept; *@lost says how many were dropped).
 */
const struct kvc_copy *fault_backend_copy_log(struct kvc_backend *be,
					      uint64_t *n, uint64_t *lost);
void fault_backend_copy_log_reset(struct kvc_backend *be);

#endif /* KVC_TESTS_FAULT_BACKEND_H */
