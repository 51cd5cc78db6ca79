// SPDX-License-Identifier: MIT
/*
 * Writing and moving KVs on the device: the cache write of an append
 * (K and V rows with their slots and positions, converted to the cache's
 * dtype by the kernel) and KV-Compress's MoveCache (K, V and slot
 * metadata of each survivor, in one launch per eviction). Both are queued
 * on the cache's stream and mirrored on the host only once queued, so a
 * failure leaves the mirror as it was.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "../alloc/error.h"
#include "device.h"
#include "internal.h"

/*
 * Staging one cache write takes at most (slots, K, V, positions): bounds
 * the staging a long prompt needs, which counts as device memory used,
 * while a piece still has thousands of rows for the device to share out.
 */
#define APPEND_PIECE_BYTES (4u << 20)

/* Queue the write of rows [@r0, @r1) of an append of @n tokens. */
static int append_piece(struct kvc_dev *d, const struct kvc_seq *seq,
			uint32_t n, const float *k, const float *v, uint64_t r0,
			uint64_t r1)
{
	const struct kvc_model_shape *s = &seq->kv->shape;
	uint64_t rows = r1 - r0, row_bytes = (uint64_t)s->head_dim * 4, r;
	uint32_t bs = s->block_size;
	struct kvc_cache_write_args a;
	struct kvc_upload up = { 0 };
	kvc_cu_ptr slots_dev, k_dev, v_dev, pos_dev;
	uint64_t *slots;
	int32_t *pos;
	float *kh, *vh;
	int err;

	err = kvc_stage_reserve(d,
				kvc_stage_size(rows * 8) +
					2 * kvc_stage_size(rows * row_bytes) +
					kvc_stage_size(rows * 4),
				kvc_stage_size(rows * 8) +
					2 * kvc_stage_size(rows * row_bytes) +
					kvc_stage_size(rows * 4));
	if (err)
		return err;
	slots = kvc_stage_in(d, &up, rows * 8, &slots_dev);
	kh = kvc_stage_in(d, &up, rows * row_bytes, &k_dev);
	vh = kvc_stage_in(d, &up, rows * row_bytes, &v_dev);
	pos = kvc_stage_in(d, &up, rows * 4, &pos_dev);
	/* Rows are table-major as the caller laid them out: row t * n + i. */
	for (r = r0; r < r1; r++) {
		const struct kvc_head_table *t = &seq->tables[r / n];
		uint32_t i = (uint32_t)(r % n), at = t->len + i;

		slots[r - r0] = (uint64_t)t->blocks[at / bs] * bs + at % bs;
		pos[r - r0] = (int32_t)(seq->tokens + i);
	}
	memcpy(kh, k + r0 * s->head_dim, (size_t)(rows * row_bytes));
	memcpy(vh, v + r0 * s->head_dim, (size_t)(rows * row_bytes));
	err = kvc_stage_upload(d, &up);
	if (err)
		return err;
	memset(&a, 0, sizeof(a));
	a.kv = d->paged;
	a.slots = slots_dev;
	a.k = k_dev;
	a.v = v_dev;
	a.pos = pos_dev;
	a.rows = (uint32_t)rows;
	return kvc_cuda_cache_write(d->c.kernels, d->stream, &a);
}

int kvc_dev_append(struct kvc_seq *seq, uint32_t n, const float *k,
		   const float *v)
{
	struct kvc_kv *kv = seq->kv;
	struct kvc_dev *d = kv->dev;
	const struct kvc_model_shape *s = &kv->shape;
	uint32_t nr = s->layers * s->kv_heads, bs = s->block_size, t, i;
	uint64_t rows = (uint64_t)n * nr, piece, r;
	int err;

	/* A piece, its pieces' alignment included, fits the bound. */
	piece = (APPEND_PIECE_BYTES - 4 * KVC_STAGE_ALIGN) /
		((uint64_t)s->head_dim * 8 + 12);
	err = kvc_dev_enter(d);
	if (err)
		return err;
	/*
	 * Pieces already queued when a later one fails wrote only blocks
	 * the caller gives back: the lengths do not count them.
	 */
	for (r = 0; r < rows && !err; r += piece)
		err = append_piece(d, seq, n, k, v, r,
				   rows - r < piece ? rows : r + piece);
	kvc_dev_leave(d);
	if (err)
		return err;
	for (t = 0; t < nr; t++) {
		const struct kvc_head_table *h = &seq->tables[t];

		for (i = 0; i < n; i++) {
			uint32_t at = h->len + i;
			struct kvc_slot_meta *m =
				&kv->meta[(uint64_t)h->blocks[at / bs] * bs +
					  at % bs];

			m->metric = 0;
			m->pos = (int32_t)(seq->tokens + i);
		}
	}
	return 0;
}

int kvc_dev_moves_begin(struct kvc_kv *kv, uint64_t n, uint64_t **moves)
{
	struct kvc_dev *d = kv->dev;
	uint64_t bytes = n * 16;
	int err;

	if (n > UINT32_MAX)
		return kvc_err(-ENOMEM, "%llu KV moves in one launch",
			       (unsigned long long)n);
	err = kvc_stage_reserve(d, kvc_stage_size(bytes),
				kvc_stage_size(bytes));
	if (err)
		return err;
	memset(&d->moves_up, 0, sizeof(d->moves_up));
	*moves = kvc_stage_in(d, &d->moves_up, bytes, &d->moves_dev);
	return 0;
}

int kvc_dev_moves_run(struct kvc_kv *kv, uint64_t n)
{
	struct kvc_dev *d = kv->dev;
	struct kvc_move_args a;
	int err;

	if (!n)
		return 0;
	err = kvc_stage_upload(d, &d->moves_up);
	if (err)
		return err;
	memset(&a, 0, sizeof(a));
	a.kv = d->paged;
	a.moves = d->moves_dev;
	a.n = (uint32_t)n;
	return kvc_cuda_move(d->c.kernels, d->stream, &a);
}
