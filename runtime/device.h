/* SPDX-License-Identifier: MIT */
/*
 * The device side of a KV cache on the cuda backend, shared by the .c
 * files of runtime/. Not a public interface.
 *
 * A cache whose pool maps device memory keeps, beside the pool: one stream
 * of its own, on which all its device work is queued in order (cache
 * writes, attention, metadata copies, MoveCache, and, through the fence it
 * hands to compaction, the pool's block copies); the slot metadata array
 * in device memory, which attention adds metrics to; and staging room for
 * kernel arguments. The host array kvc_kv.meta stays a mirror of it:
 * positions are written on both sides, moves are made on both sides, and
 * metrics, which grow on the device, are copied down before anything on
 * the host reads them (kvc_dev_meta_sync()).
 *
 * Every function here that touches the device makes the pool's context
 * current for the call and restores the caller's after.
 */
#ifndef KVC_RUNTIME_DEVICE_H
#define KVC_RUNTIME_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/attention.h>
#include <kvc/backend.h>
#include <kvc/compact.h>
#include <kvc/kv.h>

#include "../alloc/backend.h"
#include "../alloc/cuda_driver.h"
#include "../kernels/args.h"
#include "../kernels/cuda_kernels.h"

struct kvc_seq;

/* Alignment of every piece of staging, host and device. */
#define KVC_STAGE_ALIGN 256u

/**
 * struct kvc_stage - Staging room for kernel arguments and results.
 * @dev: device memory (cuMemAlloc), @dev_cap bytes, or 0.
 * @dev_cap: its size.
 * @dev_top: bytes of it handed out since the stream was last idle.
 * @host: page-locked host memory (cuMemAllocHost), @host_cap bytes.
 * @host_cap: its size.
 * @host_top: bytes of it handed out since the stream was last idle.
 *
 * Both are bump arenas: room handed out is reused only once the stream
 * has drained (kvc_dev_sync()), so work still queued never sees its
 * arguments change under it, and no call has to wait for the device just
 * to reuse a buffer.
 */
struct kvc_stage {
	kvc_cu_ptr dev;
	uint64_t dev_cap;
	uint64_t dev_top;
	uint8_t *host;
	uint64_t host_cap;
	uint64_t host_top;
};

/**
 * struct kvc_upload - Pieces of staging copied to the device in one go.
 * @host: first host byte of the pieces.
 * @dev: where they go.
 * @bytes: their extent.
 */
struct kvc_upload {
	uint8_t *host;
	kvc_cu_ptr dev;
	uint64_t bytes;
};

/**
 * struct kvc_dev - The device side of a cache.
 * @c: the backend's context (driver, context, kernels).
 * @gpu: the device's properties, for launch plans.
 * @stream: the cache's own stream.
 * @paged: the cache as the kernels see it (base, meta array, shape).
 * @meta: the device slot metadata, capacity_blocks * block_size entries.
 * @meta_bytes: its size.
 * @stage: staging for arguments and results.
 * @moves_up: the upload of the MoveCache moves being filled in.
 * @moves_dev: where they go.
 * @lost: 0, or the error with which a compaction failed to move the
 *        device metadata of its blocks; the cache refuses device work
 *        from then on (its metrics and positions cannot be trusted).
 */
struct kvc_dev {
	struct kvc_cuda_ctx c;
	const struct kvc_gpu_info *gpu;
	kvc_cu_stream stream;
	struct kvc_kargs_paged paged;
	kvc_cu_ptr meta;
	uint64_t meta_bytes;
	struct kvc_stage stage;
	struct kvc_upload moves_up;
	kvc_cu_ptr moves_dev;
	int lost;
};

/* ---- device.c: life, context, stream, metadata ---- */

/**
 * kvc_dev_backend_open() - Open a backend for a cache.
 * @kind: the kind asked for.
 * @shape: the cache's shape.
 * @out: set to the backend.
 *
 * As kvc_backend_open(), except that %KVC_BACKEND_AUTO also falls back to
 * the host backend (with a notice) when the device answers but carries no
 * kernels, or its kernels do not take @shape, since a cache could not run
 * on it.
 *
 * Return: 0 or kvc_backend_open()'s error.
 */
int kvc_dev_backend_open(enum kvc_backend_kind kind,
			 const struct kvc_model_shape *shape,
			 struct kvc_backend **out);

/**
 * kvc_dev_create() - Give a cache its device side, when it needs one.
 * @kv: the cache, its pool made.
 * @be: the pool's backend.
 * @out: set to the device side, or to NULL for a host backend.
 *
 * Return: 0; -EOPNOTSUPP for a cuda backend without kernels or a shape
 * the kernels do not take; -ENOMEM or the driver's error.
 */
int kvc_dev_create(struct kvc_kv *kv, struct kvc_backend *be,
		   struct kvc_dev **out);

/**
 * kvc_dev_destroy() - Wait for the cache's work and free its device side.
 * @d: the device side, or NULL.
 *
 * Call before the pool is destroyed: queued work may still use blocks.
 */
void kvc_dev_destroy(struct kvc_dev *d);

/**
 * kvc_dev_enter() - Make the cache's context current for a call.
 * @d: the device side.
 *
 * Return: 0, -EIO when the device metadata was lost, or the push's error.
 */
int kvc_dev_enter(struct kvc_dev *d);

/**
 * kvc_dev_leave() - Undo kvc_dev_enter().
 * @d: the device side.
 */
void kvc_dev_leave(struct kvc_dev *d);

/**
 * kvc_dev_sync() - Wait until the cache's stream has drained (context
 * current); then all staging is free again.
 * @d: the device side.
 *
 * Return: 0 or the driver's error.
 */
int kvc_dev_sync(struct kvc_dev *d);

/**
 * kvc_dev_fence() - The fence that orders the cache's device work.
 * @d: the device side, or NULL (then no work is pending).
 * @f: set to the cache's stream, or to %KVC_FENCE_NONE.
 */
void kvc_dev_fence(const struct kvc_dev *d, struct kvc_fence *f);

/**
 * kvc_dev_free() - Give blocks back that the cache's queued work may still
 * use.
 * @kv: the cache.
 * @n: blocks.
 * @ids: their ids.
 *
 * On a device cache the chunks they empty are unmapped only once the
 * stream's work so far has finished; on the host, a plain free.
 *
 * Return: 0, or kvc_pool_free()'s error (nothing freed).
 */
int kvc_dev_free(struct kvc_kv *kv, uint32_t n, const uint32_t *ids);

/**
 * kvc_dev_meta_sync() - Copy the metrics of a sequence down to the mirror.
 * @seq: the sequence; nothing is done unless device attention added to
 *       its metrics since the last copy.
 *
 * Return: 0, or -errno (the mirror is left as it was).
 */
int kvc_dev_meta_sync(struct kvc_seq *seq);

/**
 * kvc_dev_blocks_moved() - Move the device metadata of blocks compaction
 * moved, on the cache's stream (the pool's move hook, pool lock held).
 * @kv: the cache.
 * @moves: the moves, in the order made.
 * @n: how many.
 *
 * A failure cannot be reported to the pool: it marks the device side
 * lost (see struct kvc_dev), which kvc_kv_check() and later calls report.
 */
void kvc_dev_blocks_moved(struct kvc_kv *kv, const struct kvc_move *moves,
			  uint32_t n);

/**
 * kvc_dev_check() - The device side's invariants.
 * @kv: the cache.
 *
 * Staging within bounds, nothing lost, and for every block of every
 * sequence the device positions equal the mirror's (and the metrics too,
 * where no device attention ran since the last copy).
 *
 * Return: 0, -EFAULT with a message, or the driver's error.
 */
int kvc_dev_check(struct kvc_kv *kv);

/**
 * kvc_dev_mem_info() - Free and total device memory, as the driver says.
 * @be: a backend.
 * @free_bytes: set to the free bytes.
 * @total_bytes: set to the total (may be NULL).
 *
 * Return: 0, -EOPNOTSUPP for a backend that is not cuda, or the driver's
 * error.
 */
int kvc_dev_mem_info(struct kvc_backend *be, uint64_t *free_bytes,
		     uint64_t *total_bytes);

/**
 * kvc_dev_overhead() - Device memory the cache holds beside its blocks.
 * @d: the device side, or NULL.
 *
 * Return: bytes of the metadata array and device staging (0 for NULL).
 */
uint64_t kvc_dev_overhead(const struct kvc_dev *d);

/* ---- staging.c: room for arguments ---- */

/**
 * kvc_stage_size() - Bytes a piece of @bytes takes in staging.
 * @bytes: the piece.
 *
 * Return: @bytes rounded up to %KVC_STAGE_ALIGN.
 */
static inline uint64_t kvc_stage_size(uint64_t bytes)
{
	return (bytes + KVC_STAGE_ALIGN - 1) & ~(uint64_t)(KVC_STAGE_ALIGN - 1);
}

/**
 * kvc_stage_reserve() - Make room before a call queues anything.
 * @d: the device side (context current).
 * @host: host bytes the call takes, a sum of kvc_stage_size().
 * @dev: device bytes the call takes, likewise (uploaded pieces count in
 *       both).
 *
 * When the arenas are too full, waits for the stream to drain and starts
 * them over; when they are too small, grows them.
 *
 * Return: 0; -ENOMEM (the arenas hold nothing in use, but may have been
 * replaced); the driver's error.
 */
int kvc_stage_reserve(struct kvc_dev *d, uint64_t host, uint64_t dev);

/**
 * kvc_stage_host() - Host room, from what kvc_stage_reserve() made.
 * @d: the device side.
 * @bytes: the piece.
 *
 * Return: the piece, aligned.
 */
void *kvc_stage_host(struct kvc_dev *d, uint64_t bytes);

/**
 * kvc_stage_dev() - Device room, from what kvc_stage_reserve() made.
 * @d: the device side.
 * @bytes: the piece.
 *
 * Return: its device address, aligned.
 */
kvc_cu_ptr kvc_stage_dev(struct kvc_dev *d, uint64_t bytes);

/**
 * kvc_stage_in() - A piece to upload: host room and the device room it
 * goes to, added to @up.
 * @d: the device side.
 * @up: the upload; zeroed before its first piece. Its pieces are taken
 *      one after the other, with no other piece in between.
 * @bytes: the piece.
 * @dev: set to its device address.
 *
 * Return: its host room, to fill before kvc_stage_upload().
 */
void *kvc_stage_in(struct kvc_dev *d, struct kvc_upload *up, uint64_t bytes,
		   kvc_cu_ptr *dev);

/**
 * kvc_stage_upload() - Queue the copy of an upload's pieces.
 * @d: the device side (context current).
 * @up: the upload.
 *
 * Return: 0 or the driver's error.
 */
int kvc_stage_upload(struct kvc_dev *d, const struct kvc_upload *up);

/**
 * kvc_stage_download() - Queue a copy from the device into host staging.
 * @d: the device side (context current).
 * @host: host staging.
 * @src: device address.
 * @bytes: bytes.
 *
 * The bytes are there once kvc_dev_sync() returns 0.
 *
 * Return: 0 or the driver's error.
 */
int kvc_stage_download(struct kvc_dev *d, void *host, kvc_cu_ptr src,
		       uint64_t bytes);

/**
 * kvc_stage_free() - Free both arenas (stream drained, context current).
 * @d: the device side.
 */
void kvc_stage_free(struct kvc_dev *d);

/* ---- device_kv.c: writing and moving KVs ---- */

/**
 * kvc_dev_append() - Queue the cache write of @n tokens of @seq.
 * @seq: the sequence; its tables already hold the blocks, lengths not yet
 *       counted.
 * @n: tokens.
 * @k: keys, as kvc_seq_append() takes them.
 * @v: values, likewise.
 *
 * On success the mirror has the new positions (metric 0); the caller
 * counts the lengths. On failure what was queued wrote only slots past
 * the heads' lengths and blocks that are given back: nothing the sequence
 * holds.
 *
 * Return: 0 or -errno.
 */
int kvc_dev_append(struct kvc_seq *seq, uint32_t n, const float *k,
		   const float *v);

/**
 * kvc_dev_moves_begin() - Room for the MoveCache moves of one eviction.
 * @kv: the cache (its context current).
 * @n: moves.
 * @moves: set to room for @n (from, to) pairs of global slots.
 *
 * Return: 0 or -errno (nothing queued).
 */
int kvc_dev_moves_begin(struct kvc_kv *kv, uint64_t n, uint64_t **moves);

/**
 * kvc_dev_moves_run() - Queue the moves kvc_dev_moves_begin() gave room
 * for, filled in, on the device only.
 * @kv: the cache (its context current).
 * @n: moves, as many as room was made for.
 *
 * Return: 0 or -errno (nothing moved).
 */
int kvc_dev_moves_run(struct kvc_kv *kv, uint64_t n);

/* ---- device_attention.c: attention on the device ---- */

/**
 * kvc_dev_decode() - kvc_attn_decode() on the device (arguments checked).
 * @seq: the sequence.
 * @layer: the layer.
 * @group: query heads per KV head.
 * @q: queries.
 * @out: outputs.
 * @metric: the metric to add to.
 *
 * Return: 0 or -errno (@out untouched; the metrics too, unless the
 * kernels ran and only the copy back or the wait failed: then the
 * sequence is marked for a metric sync).
 */
int kvc_dev_decode(struct kvc_seq *seq, uint32_t layer, uint32_t group,
		   const float *q, float *out, enum kvc_metric_kind metric);

/**
 * kvc_dev_prefill() - kvc_attn_prefill() on the device (arguments checked).
 * @seq: the sequence.
 * @layer: the layer.
 * @group: query heads per KV head.
 * @n: new tokens, >= 1.
 * @q: queries.
 * @out: outputs.
 * @obs: the observation, or NULL.
 *
 * Return: 0 or -errno (as kvc_dev_decode()).
 */
int kvc_dev_prefill(struct kvc_seq *seq, uint32_t layer, uint32_t group,
		    uint32_t n, const float *q, float *out,
		    const struct kvc_observe *obs);

/* ---- device_swap.c: blocks to and from pinned host memory ---- */

struct kvc_dev_xfer;

/**
 * kvc_dev_xfer_create() - Pinned host buffers that a device cache's blocks
 * pass through on their way to or from a file.
 * @kv: a device cache (kv->dev set).
 * @bytes: bytes of each buffer (a multiple of 4096).
 * @nr_bufs: buffers, 1 to 4; each has an event of its own.
 * @out: set to the buffers.
 *
 * Page-locked (cuMemAllocHost) so that the copies are truly asynchronous,
 * and 4096-aligned so that a file opened with O_DIRECT can read and write
 * them as they are.
 *
 * Return: 0, -EINVAL (a host cache, bad sizes), -ENOMEM, or the driver's
 * error.
 */
int kvc_dev_xfer_create(struct kvc_kv *kv, uint64_t bytes, uint32_t nr_bufs,
			struct kvc_dev_xfer **out);

/**
 * kvc_dev_xfer_destroy() - Wait for the buffers' copies, then free them.
 * @x: the buffers, or NULL.
 */
void kvc_dev_xfer_destroy(struct kvc_dev_xfer *x);

/**
 * kvc_dev_xfer_buf() - The host address of one buffer.
 * @x: the buffers.
 * @i: which, below nr_bufs.
 *
 * Return: the address.
 */
void *kvc_dev_xfer_buf(struct kvc_dev_xfer *x, uint32_t i);

/**
 * kvc_dev_xfer_down() - Queue the copy of blocks into a buffer.
 * @x: the buffers.
 * @i: which buffer.
 * @ids: live block ids of the cache.
 * @n: how many; n * @stride must fit the buffer.
 * @stride: bytes from one block to the next in the buffer (>= the
 *          cache's block bytes; the gap is left as it was).
 *
 * Queued on the cache's stream, so ordered after the cache's earlier
 * work (cache writes, attention, compaction copies); ids adjacent in the
 * pool are copied in one call. Records the buffer's event behind them.
 *
 * Return: 0, -EINVAL, or the driver's error (the buffer's content is then
 * undefined).
 */
int kvc_dev_xfer_down(struct kvc_dev_xfer *x, uint32_t i, const uint32_t *ids,
		      uint32_t n, uint64_t stride);

/**
 * kvc_dev_xfer_up() - Queue the copy of a buffer into blocks.
 * @x: the buffers.
 * @i: which buffer.
 * @ids: live block ids of the cache.
 * @n: how many.
 * @stride: as for kvc_dev_xfer_down().
 *
 * The buffer must not be written again before kvc_dev_xfer_wait() on it.
 *
 * Return: 0, -EINVAL, or the driver's error.
 */
int kvc_dev_xfer_up(struct kvc_dev_xfer *x, uint32_t i, const uint32_t *ids,
		    uint32_t n, uint64_t stride);

/**
 * kvc_dev_xfer_wait() - Wait until the copies last queued on a buffer are
 * done.
 * @x: the buffers.
 * @i: which buffer.
 *
 * Return: 0 (also when nothing was queued), or the driver's error.
 */
int kvc_dev_xfer_wait(struct kvc_dev_xfer *x, uint32_t i);

/**
 * kvc_dev_meta_push() - Copy the host mirror's slot metadata of some
 * blocks up to the device's array (after the host wrote it, e.g. for a
 * sequence read back from a file).
 * @kv: a device cache.
 * @ids: live block ids.
 * @n: how many.
 *
 * Queued on the cache's stream; adjacent ids in one copy. Waits for the
 * copies before it returns (the mirror is pageable memory).
 *
 * Return: 0, -EINVAL, or the driver's error.
 */
int kvc_dev_meta_push(struct kvc_kv *kv, const uint32_t *ids, uint32_t n);

#endif /* KVC_RUNTIME_DEVICE_H */
