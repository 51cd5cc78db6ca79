/* SPDX-License-Identifier: MIT */
/* A scripted pool scenario and its model, shared by fault-injection tests. */
#ifndef KVC_TESTS_SCENARIO_H
#define KVC_TESTS_SCENARIO_H

#include <stdint.h>

#include <kvc/kvc.h>

/* Small enough to run thousands of times: 16 blocks per chunk, 16 chunks. */
#define SCENARIO_GRAN (64u << 10)
#define SCENARIO_BLOCK (4u << 10)
#define SCENARIO_CAPACITY 256u

/**
 * struct scenario_model - What the test believes is live, and what each
 * live block holds (a pattern derived from @seed).
 */
struct scenario_model {
	uint8_t live[SCENARIO_CAPACITY];
	uint32_t seed[SCENARIO_CAPACITY];
	uint32_t nr_live;
	uint32_t next_seed;
};

/* Base of the last scenario pool, to reclaim a reservation it leaked. */
extern uint64_t scenario_last_base;

struct kvc_pool *scenario_pool(struct kvc_backend *be, uint32_t kept,
			       uint64_t max_mapped);
void scenario_fill(struct kvc_pool *pool, struct scenario_model *m,
		   uint32_t id);
void scenario_verify(struct kvc_pool *pool, const struct scenario_model *m);
int scenario_alloc(struct kvc_pool *pool, struct scenario_model *m, uint32_t n);
int scenario_free(struct kvc_pool *pool, struct scenario_model *m,
		  uint32_t stride, uint32_t skip);
int scenario_copy(struct kvc_pool *pool, struct scenario_model *m, uint32_t src,
		  uint32_t dst);
/* Runs the whole scenario; returns how many steps failed. */
int scenario_run(struct kvc_backend *be);

#endif /* KVC_TESTS_SCENARIO_H */
