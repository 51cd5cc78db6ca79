// SPDX-License-Identifier: MIT
/*
 * The device side of a KV cache (see device.h): its life, its stream, and
 * the slot metadata kept in device memory with its host mirror. The host
 * mirror is exact for positions at all times and for metrics whenever
 * the sequence is clean (no device attention added to them since the
 * last copy down); kvc_dev_check() compares the two. All device work of
 * the cache goes on its one stream, so it runs in the order it was
 * queued, and blocks freed or compacted away are unmapped only once that
 * stream's work before the free has finished.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/compact.h>
#include <kvc/error.h>
#include <kvc/pool.h>

#include "../alloc/error.h"
#include "../kernels/launch.h"
#include "device.h"
#include "internal.h"

/* Largest nr_heads of one attention launch (grid.y). */
#define DEV_MAX_HEADS 65535u

static bool is_cuda(struct kvc_backend *be, struct kvc_cuda_ctx *c)
{
	return !kvc_backend_cuda_ctx(be, c);
}

int kvc_dev_enter(struct kvc_dev *d)
{
	if (d->lost)
		return kvc_err(
			-EIO,
			"the cache's device slot metadata was lost when compaction moved blocks (error %d): device work refused",
			d->lost);
	return kvc_cuda_ctx_push(&d->c);
}

void kvc_dev_leave(struct kvc_dev *d)
{
	kvc_cuda_ctx_pop(&d->c);
}

int kvc_dev_sync(struct kvc_dev *d)
{
	const struct kvc_cuda_driver *drv = d->c.drv;
	kvc_cu_result r;

	r = drv->cuStreamSynchronize(d->stream);
	if (r)
		return kvc_cu_errno(drv, r, "cuStreamSynchronize");
	/* Nothing queued is left to read or write the staging. */
	d->stage.host_top = 0;
	d->stage.dev_top = 0;
	return 0;
}

void kvc_dev_fence(const struct kvc_dev *d, struct kvc_fence *f)
{
	f->kind = d ? KVC_FENCE_CUDA_STREAM : KVC_FENCE_NONE;
	f->handle = d ? d->stream : NULL;
}

/* What the kernels take, checked once for the cache's life. */
static int shape_check(const struct kvc_model_shape *s)
{
	uint32_t group = s->q_heads / s->kv_heads;

	if (group > KVC_KERNEL_MAX_GROUP)
		return kvc_err(
			-EOPNOTSUPP,
			"the CUDA kernels take at most %u query heads per KV head; the shape has %u",
			KVC_KERNEL_MAX_GROUP, group);
	if (s->kv_heads > DEV_MAX_HEADS)
		return kvc_err(
			-EOPNOTSUPP,
			"the CUDA kernels take at most %u KV heads per layer; the shape has %u",
			DEV_MAX_HEADS, s->kv_heads);
	if (!kvc_kernel_hd(s->head_dim))
		return kvc_err(-EOPNOTSUPP,
			       "the CUDA kernels do not take head_dim %u",
			       s->head_dim);
	return 0;
}

int kvc_dev_backend_open(enum kvc_backend_kind kind,
			 const struct kvc_model_shape *shape,
			 struct kvc_backend **out)
{
	const char *why;
	struct kvc_cuda_ctx c;
	int err;

	err = kvc_backend_open(kind, 0, out);
	if (err || kind != KVC_BACKEND_AUTO || !is_cuda(*out, &c))
		return err;
	if (!c.kernels)
		why = "the CUDA device has no kernels this library can run";
	else if (shape_check(shape))
		why = kvc_last_error();
	else
		return 0;
	kvc_notice("%s; using the host backend", why);
	kvc_backend_close(*out);
	*out = NULL;
	return kvc_backend_open(KVC_BACKEND_HOST, 0, out);
}

/* The metadata array, zeroed on the stream before any use of it. */
static int meta_create(struct kvc_dev *d, const struct kvc_kv *kv)
{
	const struct kvc_cuda_driver *drv = d->c.drv;
	uint64_t bytes;
	kvc_cu_result r;

	if (__builtin_mul_overflow(kv->capacity_blocks,
				   (uint64_t)kv->shape.block_size *
					   sizeof(struct kvc_slot_meta),
				   &bytes) ||
	    bytes > SIZE_MAX)
		return kvc_err(-ENOMEM, "device slot metadata overflows");
	r = drv->cuMemAlloc(&d->meta, (size_t)bytes);
	if (r)
		return kvc_cu_errno(drv, r, "cuMemAlloc");
	d->meta_bytes = bytes;
	r = drv->cuMemsetD32Async(d->meta, 0, (size_t)(bytes / 4), d->stream);
	if (r)
		return kvc_cu_errno(drv, r, "cuMemsetD32Async");
	return 0;
}

/* Free what kvc_dev_create() made; context current. */
static void dev_free(struct kvc_dev *d)
{
	const struct kvc_cuda_driver *drv = d->c.drv;

	/*
	 * Freeing memory queued work uses would fault: drain first. On a
	 * dead context nothing runs any more, so freeing is safe anyway.
	 */
	if (d->stream && kvc_dev_sync(d))
		kvc_notice("the cache's stream did not drain: %s",
			   kvc_last_error());
	kvc_stage_free(d);
	if (d->meta)
		drv->cuMemFree(d->meta);
	if (d->stream)
		drv->cuStreamDestroy(d->stream);
}

int kvc_dev_create(struct kvc_kv *kv, struct kvc_backend *be,
		   struct kvc_dev **out)
{
	const struct kvc_cuda_driver *drv;
	struct kvc_cuda_ctx c;
	struct kvc_dev *d;
	kvc_cu_result r;
	int err;

	*out = NULL;
	if (!is_cuda(be, &c))
		return 0;
	if (!c.kernels)
		return kvc_err(
			-EOPNOTSUPP,
			"backend %s has no CUDA kernels loaded (built without nvcc, or none runs on this device): the cache cannot run there; use the host backend",
			kvc_backend_name(be));
	err = shape_check(&kv->shape);
	if (err)
		return err;
	d = calloc(1, sizeof(*d));
	if (!d)
		return kvc_err(-ENOMEM, "out of memory for the device side");
	d->c = c;
	d->gpu = kvc_cuda_kernels_gpu(c.kernels);
	drv = c.drv;
	err = kvc_cuda_ctx_push(&d->c);
	if (err) {
		free(d);
		return err;
	}
	r = drv->cuStreamCreate(&d->stream, 0);
	if (r) {
		d->stream = NULL;
		err = kvc_cu_errno(drv, r, "cuStreamCreate");
		goto err_free;
	}
	err = meta_create(d, kv);
	if (err)
		goto err_free;
	d->paged = (struct kvc_kargs_paged){
		.base = kvc_pool_base(kv->pool),
		.block_bytes = kv->block_bytes,
		.meta = d->meta,
		.block_size = kv->shape.block_size,
		.head_dim = kv->shape.head_dim,
		.dtype = (uint32_t)kv->shape.dtype,
	};
	kvc_cuda_ctx_pop(&d->c);
	*out = d;
	return 0;

err_free:
	dev_free(d);
	kvc_cuda_ctx_pop(&d->c);
	free(d);
	return err;
}

void kvc_dev_destroy(struct kvc_dev *d)
{
	bool pushed;

	if (!d)
		return;
	pushed = !kvc_cuda_ctx_push(&d->c);
	dev_free(d);
	if (pushed)
		kvc_cuda_ctx_pop(&d->c);
	free(d);
}

int kvc_dev_free(struct kvc_kv *kv, uint32_t n, const uint32_t *ids)
{
	struct kvc_fence f;
	int err;

	if (!kv->dev || !n)
		return kvc_pool_free(kv->pool, n, ids);
	kvc_dev_fence(kv->dev, &f);
	err = kvc_pool_free_fenced(kv->pool, n, ids, &f);
	/*
	 * -EINVAL is bad ids, or a driver that refused the fence's handles
	 * (kvc_cu_errno() maps those to -EINVAL too): tell them apart by
	 * whether the plain free takes the ids.
	 */
	if (err) {
		/*
		 * The fence could not be captured: wait for the stream
		 * instead, so that the blocks still go back. A stream that
		 * cannot be waited for belongs to a dead context, where
		 * nothing runs that an unmap could fault.
		 */
		if (!kvc_cuda_ctx_push(&kv->dev->c)) {
			kvc_dev_sync(kv->dev);
			kvc_cuda_ctx_pop(&kv->dev->c);
		}
		err = kvc_pool_free(kv->pool, n, ids);
	}
	return err;
}

uint64_t kvc_dev_overhead(const struct kvc_dev *d)
{
	return d ? d->meta_bytes + d->stage.dev_cap : 0;
}

int kvc_dev_mem_info(struct kvc_backend *be, uint64_t *free_bytes,
		     uint64_t *total_bytes)
{
	struct kvc_cuda_ctx c;
	size_t fb = 0, tb = 0;
	kvc_cu_result r;
	int err;

	if (!is_cuda(be, &c))
		return -EOPNOTSUPP;
	err = kvc_cuda_ctx_push(&c);
	if (err)
		return err;
	r = c.drv->cuMemGetInfo(&fb, &tb);
	kvc_cuda_ctx_pop(&c);
	if (r)
		return kvc_cu_errno(c.drv, r, "cuMemGetInfo");
	*free_bytes = fb;
	if (total_bytes)
		*total_bytes = tb;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Slot metadata: copies down, and moves with compaction */

/*
 * Queue the copy of the device metadata of every block of @seq, in table
 * order, into host staging; set *@host to it. The caller syncs before it
 * reads. Context current.
 */
static int meta_download(struct kvc_dev *d, const struct kvc_seq *seq,
			 uint64_t nb, const struct kvc_slot_meta **host)
{
	const struct kvc_model_shape *s = &seq->kv->shape;
	uint64_t item = (uint64_t)s->block_size * sizeof(struct kvc_slot_meta);
	uint32_t t, i, nr = s->layers * s->kv_heads, *pairs = NULL;
	uint64_t pair_bytes = nb > KVC_COPY_INLINE ? nb * 8 : 0, at = 0;
	struct kvc_copy_args a;
	struct kvc_upload up = { 0 };
	kvc_cu_ptr pairs_dev = 0, dst;
	void *out;
	int err;

	if (nb > UINT32_MAX)
		return kvc_err(-ENOMEM, "%llu blocks in one sequence",
			       (unsigned long long)nb);
	err = kvc_stage_reserve(
		d, kvc_stage_size(pair_bytes) + kvc_stage_size(nb * item),
		kvc_stage_size(pair_bytes) + kvc_stage_size(nb * item));
	if (err)
		return err;
	memset(&a, 0, sizeof(a));
	if (pair_bytes)
		pairs = kvc_stage_in(d, &up, pair_bytes, &pairs_dev);
	else
		pairs = a.pairs;
	for (t = 0; t < nr; t++) {
		const struct kvc_head_table *h = &seq->tables[t];

		for (i = 0; i < h->nr_blocks; i++, at++) {
			pairs[2 * at] = h->blocks[i];
			pairs[2 * at + 1] = (uint32_t)at;
		}
	}
	err = kvc_stage_upload(d, &up);
	if (err)
		return err;
	dst = kvc_stage_dev(d, nb * item);
	out = kvc_stage_host(d, nb * item);
	a.src_base = d->meta;
	a.dst_base = dst;
	a.bytes = item;
	a.pairs_dev = pairs_dev;
	a.n = (uint32_t)nb;
	err = kvc_cuda_block_copy(d->c.kernels, d->stream, &a);
	if (err)
		return err;
	err = kvc_stage_download(d, out, dst, nb * item);
	if (err)
		return err;
	*host = out;
	return 0;
}

int kvc_dev_meta_sync(struct kvc_seq *seq)
{
	struct kvc_kv *kv = seq->kv;
	struct kvc_dev *d = kv->dev;
	const struct kvc_model_shape *s = &kv->shape;
	uint32_t t, i, nr = s->layers * s->kv_heads, bs = s->block_size;
	const struct kvc_slot_meta *m;
	uint64_t nb = kvc_seq_blocks(seq), at = 0;
	int err;

	if (!d || !seq->meta_dirty)
		return 0;
	if (!nb) {
		seq->meta_dirty = false;
		return 0;
	}
	err = kvc_dev_enter(d);
	if (err)
		return err;
	err = meta_download(d, seq, nb, &m);
	if (!err)
		err = kvc_dev_sync(d);
	if (err)
		goto out;
	for (t = 0; t < nr; t++) {
		const struct kvc_head_table *h = &seq->tables[t];

		for (i = 0; i < h->nr_blocks; i++, at++)
			memcpy(&kv->meta[(uint64_t)h->blocks[i] * bs],
			       m + at * bs, bs * sizeof(*m));
	}
	seq->meta_dirty = false;
out:
	kvc_dev_leave(d);
	return err;
}

/* Queue copies of the device metadata of blocks, @n moves at most
 * %KVC_COPY_INLINE; fall back to one driver copy each. */
static int meta_move(struct kvc_dev *d, const struct kvc_move *moves,
		     uint32_t n)
{
	const struct kvc_cuda_driver *drv = d->c.drv;
	uint64_t item =
		(uint64_t)d->paged.block_size * sizeof(struct kvc_slot_meta);
	struct kvc_copy_args a;
	kvc_cu_result r;
	uint32_t i;

	memset(&a, 0, sizeof(a));
	a.src_base = d->meta;
	a.dst_base = d->meta;
	a.bytes = item;
	a.n = n;
	for (i = 0; i < n; i++) {
		a.pairs[2 * i] = moves[i].from;
		a.pairs[2 * i + 1] = moves[i].to;
	}
	if (!kvc_cuda_block_copy(d->c.kernels, d->stream, &a))
		return 0;
	for (i = 0; i < n; i++) {
		r = drv->cuMemcpyDtoDAsync(d->meta + moves[i].to * item,
					   d->meta + moves[i].from * item,
					   (size_t)item, d->stream);
		if (r)
			return kvc_cu_errno(drv, r, "cuMemcpyDtoDAsync");
	}
	return 0;
}

/*
 * Whether move @j touches a block an earlier move of the batch touches in
 * a way that needs order: reads what it wrote, writes what it wrote, or
 * writes what it reads.
 */
static bool depends(const struct kvc_move *moves, uint32_t first, uint32_t j)
{
	uint32_t i;

	for (i = first; i < j; i++)
		if (moves[i].to == moves[j].from ||
		    moves[i].to == moves[j].to || moves[i].from == moves[j].to)
			return true;
	return false;
}

void kvc_dev_blocks_moved(struct kvc_kv *kv, const struct kvc_move *moves,
			  uint32_t n)
{
	struct kvc_dev *d = kv->dev;
	uint32_t first = 0, j;
	int err;

	if (!d || !n || d->lost)
		return;
	err = kvc_cuda_ctx_push(&d->c);
	if (err) {
		d->lost = err;
		return;
	}
	/*
	 * One launch per batch of inline pairs; a batch ends early where a
	 * move depends on an earlier one, since a launch's copies run in
	 * any order.
	 */
	for (j = 0; j <= n && !err; j++) {
		if (j < n && j - first < KVC_COPY_INLINE &&
		    !depends(moves, first, j))
			continue;
		err = meta_move(d, moves + first, j - first);
		first = j;
	}
	if (err)
		d->lost = err;
	kvc_cuda_ctx_pop(&d->c);
}

/* ------------------------------------------------------------------ */
/* Invariants */

/* The device metadata of @seq against the mirror. Context current. */
static int check_seq(struct kvc_dev *d, const struct kvc_seq *seq)
{
	const struct kvc_kv *kv = seq->kv;
	const struct kvc_model_shape *s = &kv->shape;
	uint32_t t, i, nr = s->layers * s->kv_heads, bs = s->block_size;
	const struct kvc_slot_meta *m, *dm;
	uint64_t nb = kvc_seq_blocks(seq), at = 0;
	int err;

	if (!nb)
		return 0;
	err = meta_download(d, seq, nb, &dm);
	if (!err)
		err = kvc_dev_sync(d);
	if (err)
		return err;
	/* @at: the table's first block in the download. */
	for (t = 0; t < nr; at += seq->tables[t].nr_blocks, t++) {
		const struct kvc_head_table *h = &seq->tables[t];

		for (i = 0; i < h->len; i++) {
			m = &kv->meta[(uint64_t)h->blocks[i / bs] * bs +
				      i % bs];
			if (dm[(at + i / bs) * bs + i % bs].pos != m->pos)
				return kvc_err(
					-EFAULT,
					"seq %u table %u KV %u: position %d on the device, %d in the mirror",
					seq->id, t, i,
					dm[(at + i / bs) * bs + i % bs].pos,
					m->pos);
			if (!seq->meta_dirty &&
			    memcmp(&dm[(at + i / bs) * bs + i % bs].metric,
				   &m->metric, sizeof(m->metric)))
				return kvc_err(
					-EFAULT,
					"seq %u table %u KV %u: metric %g on the device, %g in the mirror of a clean sequence",
					seq->id, t, i,
					(double)dm[(at + i / bs) * bs + i % bs]
						.metric,
					(double)m->metric);
		}
	}
	return 0;
}

int kvc_dev_check(struct kvc_kv *kv)
{
	struct kvc_dev *d = kv->dev;
	const struct kvc_stage *st;
	uint32_t id;
	int err;

	if (!d)
		return 0;
	st = &d->stage;
	if (d->lost)
		return kvc_err(
			-EFAULT,
			"the device slot metadata of compacted blocks was lost (error %d)",
			d->lost);
	if (!d->stream || !d->meta || d->paged.meta != d->meta ||
	    d->paged.base != kvc_pool_base(kv->pool))
		return kvc_err(
			-EFAULT,
			"the device side has no stream, metadata or base");
	if (st->host_top > st->host_cap || st->dev_top > st->dev_cap ||
	    (st->host_cap && !st->host) || (st->dev_cap && !st->dev))
		return kvc_err(
			-EFAULT,
			"staging: %llu of %llu host bytes, %llu of %llu device bytes handed out",
			(unsigned long long)st->host_top,
			(unsigned long long)st->host_cap,
			(unsigned long long)st->dev_top,
			(unsigned long long)st->dev_cap);
	err = kvc_dev_enter(d);
	if (err)
		return err;
	for (id = 0; id < kv->nr_ids && !err; id++)
		if (kv->seqs[id])
			err = check_seq(d, kv->seqs[id]);
	kvc_dev_leave(d);
	return err;
}
