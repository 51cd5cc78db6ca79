/* SPDX-License-Identifier: MIT */
/* kvc: a KV-cache memory manager. Include this one header. */
#ifndef KVC_KVC_H
#define KVC_KVC_H

#include <kvc/error.h>
#include <kvc/backend.h>
#include <kvc/pool.h>
#include <kvc/compact.h>
#include <kvc/kv.h>
#include <kvc/attention.h>
#include <kvc/evict.h>
#include <kvc/run.h>
#include <kvc/stats.h>
#include <kvc/record.h>
#include <kvc/sim.h>
#include <kvc/swap.h>

/** KVC_VERSION - Library version as a string. */
#define KVC_VERSION "0.1.0"

#endif /* KVC_KVC_H */
