/* SPDX-License-Identifier: MIT */
/* What tests reach inside a swap for: fault injection. Not public. */
#ifndef KVC_SWAP_INTERNAL_H
#define KVC_SWAP_INTERNAL_H

#include <kvc/swap.h>

#include "sio.h"

/**
 * kvc_swap_set_fault() - Make the swap's data-file I/O fail on demand.
 * @sw: the swap.
 * @fn: called as each read, write or sync of the data file is queued
 *      (see kvc_sio_fault_fn), or NULL for none.
 * @arg: passed to @fn.
 */
void kvc_swap_set_fault(struct kvc_swap *sw, kvc_sio_fault_fn fn, void *arg);

#endif /* KVC_SWAP_INTERNAL_H */
