/* SPDX-License-Identifier: MIT */
/*
 * The kvc block pool: fixed-size blocks carved from physical chunks that are
 * mapped on demand into one virtual-address reservation.
 */
#ifndef KVC_POOL_H
#define KVC_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/backend.h>

#ifdef __cplusplus
extern "C" {
#endif

struct kvc_pool;

/** KVC_MAX_BLOCKS - Block ids are 32-bit: a pool holds at most 2^32 blocks. */
#define KVC_MAX_BLOCKS (1ull << 32)

/** KVC_POOL_NO_STATS_PAGE - Do not publish a shared-memory stats page. */
#define KVC_POOL_NO_STATS_PAGE (1u << 0)

struct kvc_recorder;

/**
 * enum kvc_placement - Which free block an allocation takes.
 * @KVC_PLACE_FULLEST: from the fullest partly used chunk, then an empty
 *                     mapped one, then a new one: chunks fill densely and
 *                     empty ones can go back (the default; O(1)).
 * @KVC_PLACE_FIRST_FIT: from the lowest-numbered mapped chunk with a free
 *                       block (address-ordered first fit, as classic
 *                       heaps do); for studies, O(chunks) per call.
 * @KVC_PLACE_RANDOM: from a mapped chunk with a free block chosen at
 *                    random (seeded by @placement_seed): the worst case a
 *                    placement-blind allocator reaches; for studies,
 *                    O(chunks) per call.
 *
 * Every policy maps a new chunk only when no mapped chunk has a free
 * block, so they differ in where blocks go, never in how much is mapped
 * at the moment of an allocation.
 */
enum kvc_placement {
	KVC_PLACE_FULLEST = 0,
	KVC_PLACE_FIRST_FIT = 1,
	KVC_PLACE_RANDOM = 2,
};

/**
 * kvc_placement_parse() - Parse "fullest", "first-fit" or "random".
 * @name: the name.
 * @out: set on success.
 *
 * Return: 0, or -EINVAL (with a message) for another name.
 */
int kvc_placement_parse(const char *name, enum kvc_placement *out);

/**
 * kvc_placement_name() - The name of a placement policy.
 * @p: the policy.
 *
 * Return: a static string ("fullest", "first-fit", "random", or "?").
 */
const char *kvc_placement_name(enum kvc_placement p);

/**
 * struct kvc_pool_params - How to build a pool.
 * @block_bytes: bytes of one block; must divide @chunk_bytes.
 * @capacity_blocks: capacity in blocks (rounded up to whole chunks); or 0
 *                   and set @va_bytes instead.
 * @va_bytes: capacity as the size of the virtual reservation (rounded up to
 *            whole chunks); used only when @capacity_blocks is 0.
 * @chunk_bytes: bytes of one physical chunk; 0 = the backend's granularity.
 *               Must be a multiple of the granularity.
 * @max_mapped_bytes: cap on physical bytes mapped at once; 0 = no cap
 *                    beyond the capacity. At least one chunk.
 * @empty_chunks_kept: empty chunks kept mapped for reuse (the watermark):
 *                     hysteresis so that a free and an alloc at a chunk
 *                     boundary do not unmap and map each time.
 * @backend_kind: which backend to open when @backend is NULL.
 * @device: CUDA device ordinal for %KVC_BACKEND_CUDA and %KVC_BACKEND_AUTO.
 * @backend: a backend the caller opened and still owns (it must outlive
 *           the pool); NULL to let the pool open and close its own.
 * @name: a label shown by `kvcctl stats` (at most 31 bytes used); may be NULL.
 * @flags: %KVC_POOL_NO_STATS_PAGE.
 * @compact_high: proactive compaction starts when the compaction score
 *                (share of mapped chunks compaction could free, below 1)
 *                reaches this; 0 = no proactive compaction.
 * @compact_low: ... and stops when the score falls to this or below; must
 *               be less than @compact_high.
 * @compact_budget_bytes: bytes one kvc_pool_compact_tick() may copy;
 *                        0 = no limit, else at least one chunk (so each
 *                        tick can vacate a chunk).
 * @compact_budget_chunks: chunks one kvc_pool_compact_tick() may vacate;
 *                         0 = no limit. Bounds a tick's unmapping, which
 *                         on both backends costs more than the copies.
 * @placement: which free block an allocation takes.
 * @placement_seed: seeds %KVC_PLACE_RANDOM.
 *
 * Start from kvc_pool_params_init(), then set what differs.
 */
struct kvc_pool_params {
	uint64_t block_bytes;
	uint64_t capacity_blocks;
	uint64_t va_bytes;
	uint64_t chunk_bytes;
	uint64_t max_mapped_bytes;
	uint32_t empty_chunks_kept;
	enum kvc_backend_kind backend_kind;
	int device;
	struct kvc_backend *backend;
	const char *name;
	uint32_t flags;
	double compact_high;
	double compact_low;
	uint64_t compact_budget_bytes;
	uint32_t compact_budget_chunks;
	enum kvc_placement placement;
	uint64_t placement_seed;
};

/**
 * struct kvc_pool_stats - A pool's counters at one instant.
 * @block_bytes: bytes per block.
 * @chunk_bytes: bytes per chunk.
 * @blocks_per_chunk: @chunk_bytes / @block_bytes.
 * @blocks_total: capacity in blocks.
 * @blocks_live: blocks handed out and not yet freed.
 * @blocks_free: @blocks_total - @blocks_live.
 * @blocks_free_mapped: free blocks inside mapped chunks.
 * @chunks_total: chunks the reservation can hold.
 * @chunks_mapped: chunks backed by physical memory.
 * @chunks_empty: mapped chunks with no live block (kept by the watermark,
 *                or left after a failed unmap).
 * @chunks_partial: mapped chunks with some but not all blocks live.
 * @chunks_full: mapped chunks with every block live.
 * @bytes_reserved: size of the virtual reservation.
 * @bytes_mapped: @chunks_mapped * @chunk_bytes.
 * @bytes_live: @blocks_live * @block_bytes.
 * @blocks_live_hwm: high-water mark of @blocks_live.
 * @bytes_mapped_hwm: high-water mark of @bytes_mapped.
 * @alloc_calls: successful kvc_pool_alloc() calls.
 * @free_calls: successful kvc_pool_free() calls.
 * @alloc_failures: kvc_pool_alloc() calls that returned an error.
 * @unmap_failures: chunk unmaps the backend refused (the chunk stays mapped).
 * @backend_create: physical allocation calls (cuMemCreate, memfd extent).
 * @backend_map: map calls (cuMemMap, mmap).
 * @backend_set_access: access calls (cuMemSetAccess, mprotect).
 * @backend_unmap: unmap calls (cuMemUnmap, mmap PROT_NONE).
 * @backend_release: physical release calls (cuMemRelease, hole punch).
 * @backend_copy: block copies issued through the backend.
 * @free_blocks_in_partial_chunks: free blocks in partly used chunks: space
 *                                 that cannot go back to the device
 *                                 without compaction.
 * @free_chunks_mapped: mapped chunks with no live block (= @chunks_empty).
 * @chunks_reclaimable: chunks a full compaction would free now: non-empty
 *                      chunks minus ceil(@blocks_live / @blocks_per_chunk).
 * @compactions: compactions run: kvc_pool_compact() calls, plans
 *               executed, proactive ticks that ran one (whether or not it
 *               moved a block).
 * @blocks_moved: blocks moved by compaction.
 * @bytes_copied: bytes copied by compaction.
 * @chunks_vacated: chunks compaction emptied.
 * @chunks_released: chunks unmapped and given back to the device, whatever
 *                   emptied them.
 * @compact_failures: compactions stopped by a device error.
 * @fences_pending: fences captured whose work has not been seen to finish.
 * @chunks_unmap_deferred: empty chunks beyond what the last trim kept,
 *                         left mapped because their fence was pending (or
 *                         the device refused the unmap).
 * @map_ns: time spent in the backend's map calls (create + map + access).
 * @map_ns_max: the longest one.
 * @unmap_ns: time spent in the backend's unmap calls (unmap + release).
 * @unmap_ns_max: the longest one.
 * @placement: the pool's &enum kvc_placement.
 * @frag_ratio: @bytes_mapped / @bytes_live - 1; 0 when nothing is mapped,
 *              +infinity when chunks are mapped but no block is live.
 * @unusable_index: the kernel's unusable free space index for a request
 *                  of one whole chunk, over the mapped chunks: the share of
 *                  free mapped blocks that sit in partly used chunks; 1
 *                  when no mapped block is free.
 * @fragmentation_index: the kernel's fragmentation index for one whole
 *                       chunk: -1 when an empty chunk is mapped (the
 *                       request succeeds), 0 when no mapped block is free,
 *                       else 1 - (1 + free / blocks_per_chunk) / partial
 *                       chunks, floored at 0; near 1, the free space is
 *                       spread thinly over many chunks (many moves per
 *                       chunk freed), near 0, it sits in a few mostly
 *                       free chunks.
 * @compact_score: @chunks_reclaimable / @chunks_mapped (0 when nothing is
 *                 mapped); what proactive compaction watches.
 *
 * The backend_* counters count calls made, failed ones included.
 */
struct kvc_pool_stats {
	uint64_t block_bytes;
	uint64_t chunk_bytes;
	uint64_t blocks_per_chunk;
	uint64_t blocks_total;
	uint64_t blocks_live;
	uint64_t blocks_free;
	uint64_t blocks_free_mapped;
	uint64_t chunks_total;
	uint64_t chunks_mapped;
	uint64_t chunks_empty;
	uint64_t chunks_partial;
	uint64_t chunks_full;
	uint64_t bytes_reserved;
	uint64_t bytes_mapped;
	uint64_t bytes_live;
	uint64_t blocks_live_hwm;
	uint64_t bytes_mapped_hwm;
	uint64_t alloc_calls;
	uint64_t free_calls;
	uint64_t alloc_failures;
	uint64_t unmap_failures;
	uint64_t backend_create;
	uint64_t backend_map;
	uint64_t backend_set_access;
	uint64_t backend_unmap;
	uint64_t backend_release;
	uint64_t backend_copy;
	uint64_t free_blocks_in_partial_chunks;
	uint64_t free_chunks_mapped;
	uint64_t chunks_reclaimable;
	uint64_t compactions;
	uint64_t blocks_moved;
	uint64_t bytes_copied;
	uint64_t chunks_vacated;
	uint64_t chunks_released;
	uint64_t compact_failures;
	uint64_t fences_pending;
	uint64_t chunks_unmap_deferred;
	uint64_t map_ns;
	uint64_t map_ns_max;
	uint64_t unmap_ns;
	uint64_t unmap_ns_max;
	uint64_t placement;
	double frag_ratio;
	double unusable_index;
	double fragmentation_index;
	double compact_score;
};

/**
 * KVC_LADDER_ORDERS - Orders of the per-order indices: a request of 2^o
 * contiguous blocks, o = 0 .. 16 (65536 blocks, the most a chunk holds).
 */
#define KVC_LADDER_ORDERS 17

/**
 * struct kvc_pool_usage - What the layer above the pool knows at a sample.
 * @logical_bytes: what a full cache would hold: every token of every
 *                 sequence, in every (layer, KV head), K and V.
 * @live_bytes: the KVs actually stored (after eviction), same unit.
 * @reservation_bytes: slots held for tokens still to come, where a policy
 *                     reserves ahead (0 for kvc's own caches, which take
 *                     a block when the first token needs it).
 * @seqs: sequences holding blocks.
 * @preemptions: sequences preempted so far (cumulative).
 *
 * @live_bytes + @reservation_bytes must not exceed the bytes of the
 * blocks the pool has handed out.
 */
struct kvc_pool_usage {
	uint64_t logical_bytes;
	uint64_t live_bytes;
	uint64_t reservation_bytes;
	uint64_t seqs;
	uint64_t preemptions;
};

/**
 * struct kvc_ladder - Where every byte of a pool is, at one sample.
 * @t_ns: CLOCK_MONOTONIC time of the sample (in an exact replay, the
 *        time it was recorded, from the trace's start).
 * @step: the caller's step (iteration) number.
 * @logical: bytes a full cache would hold (from &struct kvc_pool_usage).
 * @live: KV bytes stored.
 * @held: blocks handed out x block bytes (unfilled tails included).
 * @mapped: chunks mapped x chunk bytes.
 * @parked: mapped chunks with no live block (kept by the watermark, or
 *          by a pending fence) x chunk bytes.
 * @reservation: held bytes reserved for tokens still to come.
 * @tail: @held - @live - @reservation: unfilled slots of held blocks.
 * @free_mapped: free blocks in partly used chunks x block bytes: the
 *               space only compaction can give back.
 * @seqs: sequences holding blocks.
 * @preemptions: preemptions so far.
 * @held_blocks: blocks handed out.
 * @mapped_chunks: chunks mapped.
 * @floor_chunks: ceil(@held_blocks / blocks per chunk): the packed floor.
 * @pack_ratio: @mapped_chunks / @floor_chunks (1 when both are 0; the
 *              mapped count when only the floor is 0).
 * @hole_ratio: 1 - @held_blocks / (highest live block id + 1); 0 when no
 *              block is live (llama.cpp's window fragmentation).
 * @nr_orders: orders filled below: 0 .. floor(log2(blocks per chunk)).
 * @unusable: per order o, mm/vmstat.c's unusable free space index over
 *            the free blocks of mapped chunks (parked ones included),
 *            where a suitable block is a run of 2^o contiguous free
 *            blocks inside one chunk: (free - suitable(o) x 2^o) / free;
 *            1 when nothing is free.
 * @extfrag: per order, mm/vmstat.c's fragmentation index: -1 when a
 *           suitable run exists, 0 when nothing is free, else
 *           1 - (1 + free / 2^o) / (maximal free runs), floored at 0.
 * @free_runs: per order o, maximal free runs of 2^o .. 2^(o+1) - 1
 *             blocks (buddyinfo's view).
 *
 * Identity, checked by kvc_ladder_check(): @mapped = @live + @reservation
 * + @tail + @free_mapped + @parked, and @live <= @held <= @mapped.
 */
struct kvc_ladder {
	uint64_t t_ns;
	uint64_t step;
	uint64_t logical;
	uint64_t live;
	uint64_t held;
	uint64_t mapped;
	uint64_t parked;
	uint64_t reservation;
	uint64_t tail;
	uint64_t free_mapped;
	uint64_t seqs;
	uint64_t preemptions;
	uint64_t held_blocks;
	uint64_t mapped_chunks;
	uint64_t floor_chunks;
	double pack_ratio;
	double hole_ratio;
	uint32_t nr_orders;
	uint32_t reserved0;
	double unusable[KVC_LADDER_ORDERS];
	double extfrag[KVC_LADDER_ORDERS];
	uint64_t free_runs[KVC_LADDER_ORDERS];
};

/**
 * struct kvc_ladder_peaks - Peaks and time-weighted means over samples.
 * @samples: samples taken.
 * @live_peak: the most live bytes seen; @live_peak_step, @live_peak_ns:
 *             when (the first such sample).
 * @mapped_at_live_peak: mapped bytes at that sample.
 * @mapped_peak: the most mapped bytes seen; @mapped_peak_step,
 *               @mapped_peak_ns: when (first such sample).
 * @live_at_mapped_peak: live bytes at that sample.
 * @gmlake_util: @live_peak / @mapped_peak (GMLake's utilisation).
 * @jw2: @mapped_at_live_peak / @live_peak (Johnstone and Wilson #2).
 * @jw3: @mapped_peak / @live_at_mapped_peak (#3).
 * @jw4: @mapped_peak / @live_peak (#4).
 * @weight: total weight of the means: the steps (or seconds) between
 *          samples; each sample weighs the time until the next one.
 * @mean_logical, @mean_live, @mean_held, @mean_mapped, @mean_parked,
 * @mean_reservation, @mean_tail, @mean_free_mapped, @mean_seqs:
 *          time-weighted means of the ladder's levels.
 * @mean_util: time-weighted mean of live / mapped (samples with nothing
 *             mapped count as 1).
 *
 * Ratios are 0 when their denominator is 0.
 */
struct kvc_ladder_peaks {
	uint64_t samples;
	uint64_t live_peak;
	uint64_t live_peak_step;
	uint64_t live_peak_ns;
	uint64_t mapped_at_live_peak;
	uint64_t mapped_peak;
	uint64_t mapped_peak_step;
	uint64_t mapped_peak_ns;
	uint64_t live_at_mapped_peak;
	double gmlake_util;
	double jw2;
	double jw3;
	double jw4;
	double weight;
	double mean_logical;
	double mean_live;
	double mean_held;
	double mean_mapped;
	double mean_parked;
	double mean_reservation;
	double mean_tail;
	double mean_free_mapped;
	double mean_seqs;
	double mean_util;
};

/**
 * struct kvc_ladder_acc - Accumulates &struct kvc_ladder_peaks.
 * @peaks: the result so far (means final only after kvc_ladder_acc_end()).
 * @have_prev: a sample is pending its weight.
 * @prev: that sample.
 * @prev_at: its position on the weighting axis.
 * @sum: weighted sums, in the order of the mean_* fields.
 */
struct kvc_ladder_acc {
	struct kvc_ladder_peaks peaks;
	bool have_prev;
	struct kvc_ladder prev;
	double prev_at;
	double sum[10];
};

/**
 * kvc_ladder_acc_init() - Start accumulating.
 * @acc: the accumulator.
 */
void kvc_ladder_acc_init(struct kvc_ladder_acc *acc);

/**
 * kvc_ladder_acc_add() - Add a sample.
 * @acc: the accumulator.
 * @l: the sample.
 * @at: its position on the weighting axis (step or seconds), not
 *      decreasing from one sample to the next.
 *
 * The previous sample is weighted by @at minus its own position: a level
 * holds until the next sample changes it.
 *
 * Return: 0, or -EINVAL when @at goes backwards (nothing added).
 */
int kvc_ladder_acc_add(struct kvc_ladder_acc *acc, const struct kvc_ladder *l,
		       double at);

/**
 * kvc_ladder_acc_end() - Close the means.
 * @acc: the accumulator.
 * @at: the end of the last sample's interval (>= its position); when no
 *      interval has any weight, the means are those of the samples, each
 *      counted once.
 * @out: filled.
 */
void kvc_ladder_acc_end(struct kvc_ladder_acc *acc, double at,
			struct kvc_ladder_peaks *out);

/**
 * kvc_ladder_check() - Check a ladder's identities.
 * @l: the ladder.
 *
 * Return: 0, or -EFAULT with a message naming the first that fails.
 */
int kvc_ladder_check(const struct kvc_ladder *l);

/**
 * KVC_FILL_BUCKETS - Columns of the chunk-occupancy histogram: mapped chunks
 * by share of live blocks: empty, 1-10%, 11-20%, ..., 91-99%, full.
 */
#define KVC_FILL_BUCKETS 12

/**
 * kvc_pool_params_init() - Fill @params with defaults.
 * @params: the parameters.
 *
 * Defaults: no block size or capacity (the caller must set them), chunk =
 * backend granularity, no mapped-bytes cap, one empty chunk kept, backend
 * %KVC_BACKEND_AUTO on device 0, a stats page published.
 */
void kvc_pool_params_init(struct kvc_pool_params *params);

/**
 * kvc_pool_create() - Reserve the address space and build a pool.
 * @params: the parameters; read only during the call.
 * @out: set to the new pool on success.
 *
 * Nothing is mapped yet: chunks are mapped when blocks are first needed.
 *
 * Return: 0; -EINVAL for bad parameters (zero or overflowing sizes, a block
 * size that does not divide the chunk, a chunk that is not a multiple of the
 * granularity, more than %KVC_MAX_BLOCKS blocks, compaction marks outside
 * 0 <= low < high < 1, a compaction budget under one chunk, NULL); -ENODEV when CUDA
 * was asked for and is absent; -ENOMEM when the reservation or the host
 * metadata cannot be had; -EIO for other device errors. kvc_last_error()
 * says why.
 */
int kvc_pool_create(const struct kvc_pool_params *params,
		    struct kvc_pool **out);

/**
 * kvc_pool_destroy() - Unmap every chunk, release the reservation, free.
 * @pool: the pool, or NULL.
 *
 * Waits first for the pool's pending fences (never the whole device), so
 * no chunk is unmapped under running work. Live blocks are dropped;
 * outstanding compaction plans are orphaned (their execute then fails with
 * -ESHUTDOWN; freeing them stays safe). The stats page is removed. The pool
 * is freed even when the device refuses an unmap (its memory is then
 * leaked, and the error returned so the caller can report it). A recorder
 * still attached is detached first, with its closing snapshot, and the
 * teardown is not recorded; close the recorder after this returns (a
 * write error is reported by kvc_recorder_close()).
 *
 * Return: 0, or the first backend error met while tearing down.
 */
int kvc_pool_destroy(struct kvc_pool *pool);

/**
 * kvc_pool_alloc() - Allocate blocks from a pool.
 * @pool: the pool.
 * @n: number of blocks wanted.
 * @ids: filled with @n block ids on success.
 *
 * All-or-nothing: on failure no block is taken and no chunk stays mapped
 * that was not mapped before (unless the device also refuses the unmap
 * that undoes it; that chunk then stays mapped and empty, counted in
 * @unmap_failures). Blocks come from the fullest partly used chunk
 * first, then from empty mapped chunks, then from newly mapped chunks. New
 * blocks carry owner tag 0. O(1) per block, whatever the pool size.
 *
 * Return: 0; -EINVAL for bad arguments; -ENOMEM when the capacity or the
 * mapped-bytes cap is reached or the device is out of memory; -EIO (or
 * another -errno from the backend) for other device errors.
 */
int kvc_pool_alloc(struct kvc_pool *pool, uint32_t n, uint32_t *ids);

/**
 * kvc_pool_free() - Return blocks to a pool.
 * @pool: the pool.
 * @n: number of blocks.
 * @ids: the block ids; each must be live, and appear once.
 *
 * All-or-nothing: if any id is out of range, not live or repeated, nothing
 * is freed. Chunks that empty join the empty mapped ones; beyond
 * @empty_chunks_kept the oldest empty chunks are unmapped at once, so no
 * device work may still use the blocks (else see kvc_pool_free_fenced()).
 * O(1) per block.
 * An unmap the device refuses does not fail the call: the chunk stays
 * mapped and empty, is counted in @unmap_failures, and is retried later.
 *
 * Return: 0, or -EINVAL for a bad id (nothing freed).
 */
int kvc_pool_free(struct kvc_pool *pool, uint32_t n, const uint32_t *ids);

/**
 * kvc_pool_free_fenced() - Return blocks that device work may still use.
 * @pool: the pool.
 * @n: number of blocks.
 * @ids: the block ids, as for kvc_pool_free().
 * @fence: the work that may still use them (NULL: none).
 *
 * As kvc_pool_free(), except that a chunk the free leaves empty is not
 * unmapped before the fenced work has finished: unmapping under a running
 * kernel is an illegal-address fault. The blocks themselves may be handed
 * out again at once; ordering the new owner's work after the old one's is
 * the caller's (as with any stream-ordered allocator). The fence is polled
 * by later frees, trims and compactions; kvc_pool_fence_wait() waits.
 *
 * Return: 0; -EINVAL for a bad id or fence (nothing freed); the backend's
 * error when the fence cannot be captured (nothing freed).
 */
int kvc_pool_free_fenced(struct kvc_pool *pool, uint32_t n, const uint32_t *ids,
			 const struct kvc_fence *fence);

/**
 * kvc_pool_fence_wait() - Wait for every pending fence, then trim.
 * @pool: the pool.
 *
 * Blocks on the pool's own fences (never a device-wide synchronize), then
 * unmaps the empty chunks beyond the watermark that they were holding.
 *
 * Return: 0; -EAGAIN when a fence could not be waited for (it stays
 * pending, its chunks mapped); -EIO when the device reported its context
 * dead (those fences are taken as completed); or the backend's error for
 * an unmap it refused.
 */
int kvc_pool_fence_wait(struct kvc_pool *pool);

/**
 * kvc_pool_trim() - Unmap empty chunks down to a number kept.
 * @pool: the pool.
 * @keep: empty chunks to keep mapped; more than the pool's watermark
 *        (@empty_chunks_kept) keeps the watermark.
 *
 * Also retires the fences that have completed and retries unmaps the
 * device refused earlier. Chunks whose fence is still pending stay mapped
 * (they count as kept).
 *
 * Return: 0, or the first backend error (the chunks not unmapped stay
 * mapped and empty).
 */
int kvc_pool_trim(struct kvc_pool *pool, uint32_t keep);

/**
 * kvc_pool_block_addr() - Address of a live block.
 * @pool: the pool.
 * @id: the block id.
 * @addr: set to the block's device (or host) address.
 *
 * Return: 0, or -EINVAL when @id is not a live block.
 */
int kvc_pool_block_addr(struct kvc_pool *pool, uint32_t id, uint64_t *addr);

/**
 * kvc_pool_base() - Base address of the pool's reservation.
 * @pool: the pool.
 *
 * Block @id lives at base + @id * block_bytes; kernels compute it so.
 *
 * Return: the base address.
 */
uint64_t kvc_pool_base(const struct kvc_pool *pool);

/**
 * kvc_pool_set_owner() - Set the owner tag of a live block.
 * @pool: the pool.
 * @id: the block id.
 * @owner: an opaque 64-bit tag (the reverse map: who points at the block).
 *
 * Return: 0, or -EINVAL when @id is not a live block.
 */
int kvc_pool_set_owner(struct kvc_pool *pool, uint32_t id, uint64_t owner);

/**
 * kvc_pool_get_owner() - Read the owner tag of a live block.
 * @pool: the pool.
 * @id: the block id.
 * @owner: set to the tag.
 *
 * Return: 0, or -EINVAL when @id is not a live block.
 */
int kvc_pool_get_owner(struct kvc_pool *pool, uint32_t id, uint64_t *owner);

/**
 * kvc_pool_is_live() - Whether a block id is currently allocated.
 * @pool: the pool.
 * @id: the block id.
 *
 * Return: true when @id is live.
 */
bool kvc_pool_is_live(struct kvc_pool *pool, uint32_t id);

/**
 * kvc_pool_get_stats() - Copy a pool's counters.
 * @pool: the pool.
 * @stats: filled on return.
 * @fill_hist: if not NULL, filled with %KVC_FILL_BUCKETS chunk counts.
 */
void kvc_pool_get_stats(struct kvc_pool *pool, struct kvc_pool_stats *stats,
			uint64_t *fill_hist);

/**
 * kvc_pool_backend() - The backend a pool maps through.
 * @pool: the pool.
 *
 * Return: the backend (owned by the pool unless the caller passed it).
 */
struct kvc_backend *kvc_pool_backend(const struct kvc_pool *pool);

/**
 * kvc_pool_stats_path() - Path of the pool's shared-memory stats page.
 * @pool: the pool.
 *
 * Return: the path, or NULL when the pool publishes none.
 */
const char *kvc_pool_stats_path(const struct kvc_pool *pool);

/**
 * kvc_pool_ladder() - Where every byte of a pool is, now.
 * @pool: the pool.
 * @usage: what the caller knows (NULL: live = logical = held, nothing
 *         reserved, no sequences).
 * @step: the caller's step number, recorded in the ladder.
 * @out: filled.
 *
 * The per-order indices come from each chunk's free runs, kept between
 * calls: only the chunks whose live bits or mapping changed since the
 * last ladder are walked again (O(their blocks / 64)), so a ladder per
 * step costs what the step changed, not the whole pool. The figures are
 * those of a full walk, exactly.
 *
 * Return: 0, or -EINVAL when @usage claims more live and reserved bytes
 * than the pool holds (nothing filled).
 */
int kvc_pool_ladder(struct kvc_pool *pool, const struct kvc_pool_usage *usage,
		    uint64_t step, struct kvc_ladder *out);

/**
 * kvc_pool_sample() - Take a ladder sample and keep it.
 * @pool: the pool.
 * @usage: as for kvc_pool_ladder().
 * @step: the caller's step number.
 *
 * The sample goes into the pool's ring of recent samples (published in
 * the stats page for `kvcctl stats --history` and `--watch`), into its
 * peaks and means (weighted by steps), and to the pool's recorder, if any,
 * as a %KVC_REC_SAMPLE event.
 *
 * Return: 0, or kvc_pool_ladder()'s error; -EINVAL when @step is below
 * the previous sample's; -ENOMEM when the first sample's ring cannot be
 * had (nothing is kept on error).
 */
int kvc_pool_sample(struct kvc_pool *pool, const struct kvc_pool_usage *usage,
		    uint64_t step);

/**
 * kvc_pool_peaks() - The peaks and means of the samples taken so far.
 * @pool: the pool.
 * @out: filled (means over the samples so far, the last one weighing one
 *       step).
 */
void kvc_pool_peaks(struct kvc_pool *pool, struct kvc_ladder_peaks *out);

/**
 * kvc_pool_occupancy() - Live blocks of every chunk, for chunk maps.
 * @pool: the pool.
 * @out: receives one entry per chunk of the reservation, in chunk order:
 *       its live blocks, or -1 when it is not mapped.
 * @n: entries @out holds; at most that many are written.
 *
 * O(chunks).
 *
 * Return: the number of chunks in the reservation.
 */
uint32_t kvc_pool_occupancy(struct kvc_pool *pool, int32_t *out, uint32_t n);

/**
 * kvc_pool_set_recorder() - Record the pool's events into a trace.
 * @pool: the pool.
 * @rec: the recorder, or NULL to stop; it must outlive its attachment.
 *
 * On attaching, the pool's configuration (%KVC_REC_CONFIG) and, when it
 * already holds blocks, a snapshot of every mapped chunk and live block
 * are recorded first, so the trace replays from this point. Detaching
 * (@rec NULL) records a closing snapshot; kvc_pool_destroy() detaches a
 * recorder still attached in the same way.
 *
 * Return: 0, or the recorder's error.
 */
int kvc_pool_set_recorder(struct kvc_pool *pool, struct kvc_recorder *rec);

/**
 * kvc_pool_check() - Check every invariant of a pool.
 * @pool: the pool.
 *
 * Counts, chunk lists, fill buckets, free stacks, live bitmaps and owner
 * tags must agree. Tests call it after every operation. On failure
 * kvc_last_error() names the first invariant broken.
 *
 * Return: 0, -EFAULT when an invariant does not hold, -EINVAL for a NULL
 * pool, -ENOMEM when the checker's scratch memory cannot be had.
 */
int kvc_pool_check(struct kvc_pool *pool);

#ifdef __cplusplus
}
#endif
#endif /* KVC_POOL_H */
