/* SPDX-License-Identifier: MIT */
/*
 * A backend that wraps another and fails the Nth call of any op: fault
 * injection through the ops struct, for backends with no fake driver.
 */
#ifndef KVC_TESTS_FAULT_BACKEND_H
#define KVC_TESTS_FAULT_BACKEND_H

#include <stdint.h>

#include "backend.h"

enum fault_op {
	FAULT_RESERVE,
	FAULT_RELEASE,
	FAULT_MAP,
	FAULT_UNMAP,
	FAULT_COPY,
	FAULT_FENCE,
	FAULT_NR_OPS,
};

/**
 * struct fault_counts - Calls seen, and what the wrapped backend holds.
 * @calls: calls per op, failed ones included.
 * @mapped: chunks mapped and not unmapped (successful calls only).
 * @reserved: reservations not released.
 */
struct fault_counts {
	uint64_t calls[FAULT_NR_OPS];
	int64_t mapped;
	int64_t reserved;
};

/* Wrap @inner (owned from now on: closing the wrapper closes it). */
struct kvc_backend *fault_backend_wrap(struct kvc_backend *inner);
/* Fail the @nth next call of @op with @err; @nth 0 cancels. */
void fault_backend_fail(struct kvc_backend *be, enum fault_op op, uint64_t nth,
			int err);
void fault_backend_counts(struct kvc_backend *be, struct fault_counts *out);
const char *fault_op_name(enum fault_op op);

#endif /* KVC_TESTS_FAULT_BACKEND_H */
