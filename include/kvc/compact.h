/* SPDX-License-Identifier: MIT */
/*
 * Compaction: moving live blocks out of sparse chunks into the holes of
 * dense ones, so that whole chunks empty and go back to the device. The
 * owners of moved blocks are told through a hook, so block tables can be
 * patched; emptied chunks are unmapped once the device work that used
 * them has finished (see Documentation/compaction.rst).
 */
#ifndef KVC_COMPACT_H
#define KVC_COMPACT_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/backend.h>
#include <kvc/pool.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * struct kvc_move - One block moved by compaction.
 * @from: the block's old id (free once the move is reported).
 * @to: its new id.
 * @owner: its owner tag, which moved with it.
 */
struct kvc_move {
	uint32_t from;
	uint32_t to;
	uint64_t owner;
};

/**
 * typedef kvc_move_fn - Told of moves that have happened.
 * @arg: the pointer given to kvc_pool_set_move_hook().
 * @moves: the moves, each reported exactly once, in the order made.
 * @n: how many.
 *
 * Called with the pool's lock held, after the copies were issued and
 * before the call that made them returns: it must not call into the pool
 * (it has what it needs in @moves). A move is reported only once it has
 * been made; moves the device refused are never reported.
 */
typedef void (*kvc_move_fn)(void *arg, const struct kvc_move *moves,
			    uint32_t n);

/**
 * struct kvc_compact_params - What one compaction may do.
 * @max_bytes: bytes it may copy at most (the budget for incremental
 *             compaction between decode steps); 0 = no limit. A chunk is
 *             vacated whole or not at all, so the budget is never spent on
 *             moves that free nothing.
 * @max_chunks: chunks it may vacate at most; 0 = as many as can be.
 * @fence: device work that may still use the pool's blocks (NULL = none):
 *         the copies run after it. With a %KVC_FENCE_CUDA_STREAM fence the
 *         copies are asynchronous and the stream's later work is ordered
 *         after them; with another kind, or none, the call waits for its
 *         own copies (on its own stream, never device-wide) before it
 *         returns. Either way the old blocks are unmapped only after the
 *         copies and the fenced work have finished.
 */
struct kvc_compact_params {
	uint64_t max_bytes;
	uint32_t max_chunks;
	const struct kvc_fence *fence;
};

/**
 * struct kvc_compact_result - What a compaction did.
 * @lower_bound: live blocks in the chunks the plan vacates, when planned:
 *               the fewest moves that can free them.
 * @blocks_moved: blocks moved (and reported to the hook).
 * @bytes_copied: bytes the device copied.
 * @chunks_planned: chunks the plan chose to vacate.
 * @chunks_vacated: chunks emptied by the moves.
 * @chunks_skipped: planned chunks left alone because the pool changed
 *                  after planning (too few holes left for them).
 * @chunks_released: chunks unmapped during the call (vacated ones whose
 *                   fence had completed, and other empty chunks beyond the
 *                   watermark).
 * @budget_limited: the budget (bytes or chunks) stopped the plan short of
 *                  what a full compaction would free.
 * @plan_ns: time spent choosing chunks.
 * @move_ns: time spent on block bookkeeping (taking holes, owner tags,
 *           hook calls); copies and unmapping excluded.
 * @copy_ns: time spent issuing copies and, when the call waits for them,
 *           waiting.
 * @unmap_ns: time spent unmapping chunks (and retiring fences) after the
 *            moves: often the largest share, since giving memory back to
 *            the device is what a chunk costs.
 */
struct kvc_compact_result {
	uint64_t lower_bound;
	uint64_t blocks_moved;
	uint64_t bytes_copied;
	uint32_t chunks_planned;
	uint32_t chunks_vacated;
	uint32_t chunks_skipped;
	uint32_t chunks_released;
	bool budget_limited;
	uint64_t plan_ns;
	uint64_t move_ns;
	uint64_t copy_ns;
	uint64_t unmap_ns;
};

struct kvc_compact_plan;

/**
 * kvc_pool_set_move_hook() - Register who is told of moved blocks.
 * @pool: the pool.
 * @fn: the hook, or NULL to remove it.
 * @arg: passed to @fn.
 *
 * Return: 0, or -EINVAL for a NULL pool.
 */
int kvc_pool_set_move_hook(struct kvc_pool *pool, kvc_move_fn fn, void *arg);

/**
 * kvc_pool_compact() - Plan and run one compaction.
 * @pool: the pool.
 * @params: limits and fence; NULL = full compaction, nothing pending.
 * @res: filled with what was done (may be NULL).
 *
 * Vacates the chunks with the fewest live blocks into the holes of the
 * fullest ones, so that, without a budget, the mapped chunks drop to
 * ceil(live / blocks_per_chunk) plus the empty-chunk watermark, with
 * exactly as many moves as the vacated chunks held live blocks. Empty
 * chunks are never used as destinations.
 *
 * On a device error the moves made so far stay made (and reported), the
 * failed batch is undone, and no live block loses its contents.
 *
 * Return: 0; -EINVAL for bad arguments; the backend's error for a failed
 * copy or fence (the pool stays consistent).
 */
int kvc_pool_compact(struct kvc_pool *pool,
		     const struct kvc_compact_params *params,
		     struct kvc_compact_result *res);

/**
 * kvc_compact_plan() - Choose what a compaction would vacate, move nothing.
 * @pool: the pool.
 * @params: as for kvc_pool_compact(); the fence is used at execution.
 * @plan: set to the new plan.
 * @res: if not NULL, filled with @lower_bound, @chunks_planned,
 *       @budget_limited and @plan_ns.
 *
 * The pool may change before the plan runs: blocks freed meanwhile are
 * neither copied nor reported, chunks that no longer fit are skipped.
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
int kvc_compact_plan(struct kvc_pool *pool,
		     const struct kvc_compact_params *params,
		     struct kvc_compact_plan **plan,
		     struct kvc_compact_result *res);

/**
 * kvc_compact_execute() - Run a plan.
 * @plan: the plan; it can be run once.
 * @res: filled as by kvc_pool_compact() (may be NULL).
 *
 * Return: as kvc_pool_compact(); -ESHUTDOWN when the pool was destroyed
 * after planning (nothing is touched), -EALREADY when the plan already ran.
 */
int kvc_compact_execute(struct kvc_compact_plan *plan,
			struct kvc_compact_result *res);

/**
 * kvc_compact_plan_free() - Free a plan, run or not.
 * @plan: the plan, or NULL. May outlive its pool.
 */
void kvc_compact_plan_free(struct kvc_compact_plan *plan);

/**
 * kvc_pool_compact_tick() - Proactive compaction, called between steps.
 * @pool: the pool, created with @compact_high > 0.
 * @fence: as in struct kvc_compact_params.
 * @res: filled with what was done (may be NULL; zeroed when idle).
 *
 * Like kcompactd: when the compaction score (share of mapped chunks that
 * compaction could free) reaches the pool's @compact_high mark, compaction
 * starts, and each tick then vacates up to @compact_budget_bytes, until
 * the score falls to @compact_low or below. @compact_budget_chunks, when
 * set, caps the chunks one tick vacates, and so the unmaps it pays for.
 *
 * Return: 1 when it compacted, 0 when idle, -errno as kvc_pool_compact().
 */
int kvc_pool_compact_tick(struct kvc_pool *pool, const struct kvc_fence *fence,
			  struct kvc_compact_result *res);

#ifdef __cplusplus
}
#endif
#endif /* KVC_COMPACT_H */
