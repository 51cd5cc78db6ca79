// SPDX-License-Identifier: MIT
/*
 * Fences: device work that may still touch a chunk's blocks. cuMemUnmap is
 * not ordered with streams, so a chunk that empties while a kernel still
 * reads it must stay mapped until that kernel is done; unmapping under it
 * is an illegal-address fault. The pool captures each fence as a backend
 * token when it is passed, keeps the tokens oldest first, and stamps the
 * chunks concerned with the newest token's sequence number. Polling retires
 * completed tokens from the front; a chunk is unmappable once its stamp is
 * at or below the last retired one. Nothing here ever waits on the whole
 * device.
 */
#include <errno.h>
#include <stdlib.h>

#include <kvc/error.h>

#include "error.h"
#include "internal.h"
#include "recorder.h"

/**
 * kvc_fence_valid() - Check a caller's fence.
 * @f: the fence, or NULL (no pending work).
 * @who: the API call, for the message.
 *
 * Return: 0, or -EINVAL for an unknown kind.
 */
int kvc_fence_valid(const struct kvc_fence *f, const char *who)
{
	if (!f)
		return 0;
	switch (f->kind) {
	case KVC_FENCE_NONE:
	case KVC_FENCE_CUDA_STREAM:
	case KVC_FENCE_CUDA_EVENT:
		return 0;
	}
	return kvc_err(-EINVAL, "%s: unknown fence kind %d", who, (int)f->kind);
}

/* Room for one more slot, so that a push cannot fail. */
static int reserve_slot(struct kvc_fences *fs)
{
	struct kvc_fence_slot *ring;
	uint32_t cap, i;

	if (fs->nr < fs->cap)
		return 0;
	cap = fs->cap ? fs->cap * 2 : 16;
	ring = malloc(cap * sizeof(*ring));
	if (!ring)
		return kvc_err(-ENOMEM, "out of memory for %u fences", cap);
	for (i = 0; i < fs->nr; i++)
		ring[i] = fs->ring[(fs->head + i) & (fs->cap - 1)];
	free(fs->ring);
	fs->ring = ring;
	fs->head = 0;
	fs->cap = cap;
	return 0;
}

/**
 * kvc_fence_push() - Keep a recorded token until it completes.
 * @pool: the pool, locked.
 * @token: the backend's token; the pool owns it from now on.
 * @seq: set to its sequence number, or 0 when it had completed already
 *       (then the token is dropped at once).
 *
 * Return: 0, or -ENOMEM (the token is then waited for and dropped, so
 * that @seq 0 stays true).
 */
int kvc_fence_push(struct kvc_pool *pool, uint64_t token, uint64_t *seq)
{
	const struct kvc_backend_ops *ops = pool->be->ops;
	struct kvc_fences *fs = &pool->fences;
	int err;

	*seq = 0;
	/* The host backend, and idle devices, end here: nothing to keep. */
	if (!ops->fence_query(pool->be, &pool->va, token)) {
		ops->fence_put(pool->be, &pool->va, token);
		return 0;
	}
	err = reserve_slot(fs);
	if (err) {
		/* Rare; waiting is correct, only slow. */
		ops->fence_sync(pool->be, &pool->va, token);
		ops->fence_put(pool->be, &pool->va, token);
		return err;
	}
	fs->ring[(fs->head + fs->nr++) & (fs->cap - 1)] =
		(struct kvc_fence_slot){ fs->next_seq, token };
	*seq = fs->next_seq++;
	return 0;
}

/**
 * kvc_fence_capture() - Capture the caller's fence as a pool fence.
 * @pool: the pool, locked.
 * @f: the fence (valid, not NULL).
 * @seq: set to the sequence number to stamp chunks with; 0 when the work
 *       has completed already.
 *
 * The backend's stream waits for @f, and a token is recorded after that
 * wait: the token completes when the caller's work (as of now) does.
 *
 * Return: 0, or the backend's error (nothing captured).
 */
int kvc_fence_capture(struct kvc_pool *pool, const struct kvc_fence *f,
		      uint64_t *seq)
{
	const struct kvc_backend_ops *ops = pool->be->ops;
	uint64_t token;
	int err;

	*seq = 0;
	if (f->kind == KVC_FENCE_NONE)
		return 0;
	err = ops->fence_after(pool->be, &pool->va, f);
	if (err)
		return err;
	err = ops->fence_record(pool->be, &pool->va, &token);
	if (err)
		return err;
	/* A push that fails has waited for the token: still correct. */
	kvc_fence_push(pool, token, seq);
	return 0;
}

/* Tell the trace how far fences have completed, if that moved. */
static void rec_done(struct kvc_pool *pool, uint64_t before)
{
	if (pool->rec && pool->fences.done_seq != before)
		kvc_rec3(pool->rec, KVC_REC_FREE_DONE, pool->fences.done_seq, 0,
			 0);
}

static void retire_front(struct kvc_pool *pool)
{
	struct kvc_fences *fs = &pool->fences;
	struct kvc_fence_slot *slot = &fs->ring[fs->head];

	pool->be->ops->fence_put(pool->be, &pool->va, slot->token);
	fs->done_seq = slot->seq;
	fs->head = (fs->head + 1) & (fs->cap - 1);
	fs->nr--;
}

/**
 * kvc_fence_poll() - Retire the fences that have completed, oldest first.
 * @pool: the pool, locked.
 *
 * Never blocks. A fence the device reports an error for is retired too:
 * backends report one only when the context is dead and runs no more
 * kernels, so nothing can fault on an unmap.
 * One whose state cannot be learned stays (the backend says -EBUSY).
 */
void kvc_fence_poll(struct kvc_pool *pool)
{
	struct kvc_fences *fs = &pool->fences;
	uint64_t before = fs->done_seq;
	int err;

	while (fs->nr) {
		err = pool->be->ops->fence_query(pool->be, &pool->va,
						 fs->ring[fs->head].token);
		if (err == -EBUSY || err == -EAGAIN)
			break;
		if (err)
			kvc_notice("fence %llu: %s; taken as completed",
				   (unsigned long long)fs->ring[fs->head].seq,
				   kvc_last_error());
		retire_front(pool);
	}
	rec_done(pool, before);
}

/**
 * kvc_fence_wait_all() - Wait for every pending fence and retire it.
 * @pool: the pool, locked.
 *
 * Return: 0; -EAGAIN when a fence could not be waited for (it and the
 * younger ones stay pending); or the first device error (that fence is
 * retired anyway, as in kvc_fence_poll()).
 */
int kvc_fence_wait_all(struct kvc_pool *pool)
{
	struct kvc_fences *fs = &pool->fences;
	uint64_t before = fs->done_seq;
	int err = 0, ret;

	while (fs->nr) {
		ret = pool->be->ops->fence_sync(pool->be, &pool->va,
						fs->ring[fs->head].token);
		if (ret == -EAGAIN || ret == -EBUSY) {
			err = ret;
			break;
		}
		if (ret && !err)
			err = ret;
		retire_front(pool);
	}
	rec_done(pool, before);
	return err;
}

/**
 * kvc_fence_exit() - Drop every token left and free the ring.
 * @pool: the pool, being destroyed.
 *
 * Tokens still here could not be waited for; the chunks they stamp were
 * left mapped (and leaked) rather than unmapped under running work.
 */
void kvc_fence_exit(struct kvc_pool *pool)
{
	struct kvc_fences *fs = &pool->fences;

	while (fs->nr) {
		pool->be->ops->fence_put(pool->be, &pool->va,
					 fs->ring[fs->head].token);
		fs->head = (fs->head + 1) & (fs->cap - 1);
		fs->nr--;
	}
	free(pool->fences.ring);
	pool->fences.ring = NULL;
	pool->fences.cap = 0;
}

/**
 * kvc_fence_check() - Check the ring and the chunks' stamps.
 * @pool: the pool, locked.
 *
 * Return: 0, or -EFAULT with a message.
 */
int kvc_fence_check(struct kvc_pool *pool)
{
	const struct kvc_fences *fs = &pool->fences;
	uint64_t prev = fs->done_seq, seq;
	uint32_t i;

	if (fs->nr > fs->cap || (fs->cap & (fs->cap - 1)))
		return kvc_err(-EFAULT, "fences: %u in a ring of %u", fs->nr,
			       fs->cap);
	if (fs->done_seq >= fs->next_seq)
		return kvc_err(-EFAULT, "fences: done %llu, next %llu",
			       (unsigned long long)fs->done_seq,
			       (unsigned long long)fs->next_seq);
	for (i = 0; i < fs->nr; i++) {
		seq = fs->ring[(fs->head + i) & (fs->cap - 1)].seq;
		if (seq <= prev || seq >= fs->next_seq)
			return kvc_err(
				-EFAULT,
				"fences: slot %u has seq %llu after %llu", i,
				(unsigned long long)seq,
				(unsigned long long)prev);
		prev = seq;
	}
	for (i = 0; i < pool->nr_chunks; i++) {
		const struct kvc_chunk *c = &pool->chunks[i];

		if (c->fence_seq >= fs->next_seq)
			return kvc_err(
				-EFAULT,
				"chunk %u: stamped with fence %llu, not yet captured",
				i, (unsigned long long)c->fence_seq);
		if (!chunk_mapped(c) && c->fence_seq)
			return kvc_err(-EFAULT,
				       "chunk %u: unmapped but stamped", i);
	}
	return 0;
}
