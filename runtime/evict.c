// SPDX-License-Identifier: MIT
/*
 * The one block path of eviction, KV-Compress's MoveCache: inside one
 * (layer, KV head), each survivor beyond the head's new length moves into
 * the lowest dropped slot below it (K, V, metric and position together),
 * so survivors become contiguous with the fewest moves, and the blocks
 * past the new length go back to the pool. Policies only choose; they free
 * through here. Never moves a KV across heads, never frees a block that
 * still holds a survivor, and never leaves a table longer or shorter than
 * its blocks (kvc_kv_check() holds after every call).
 *
 * On a device cache the moves of one call, all heads together, go to the
 * device in one MoveCache launch, queued before anything changes, and are
 * then made on the host mirror of the slot metadata; the blocks freed
 * are unmapped only once the device is done with them.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <kvc/error.h>
#include <kvc/evict.h>
#include <kvc/pool.h>

#include "../alloc/error.h"
#include "device.h"
#include "internal.h"

/*
 * The moves that compact a head of @len KVs by @drop. Two cursors: @hole
 * walks up over the slots below the new length and stops at each dropped
 * one, @tail walks down from the end and stops at each survivor; every
 * survivor at or past the new length fills exactly one hole, so the moves
 * are exactly the survivors past the new length, the fewest possible.
 * Sources are at or past the new length and destinations below it, so no
 * slot is both, and the moves may run in any order.
 */
struct move_cursor {
	const bool *drop;
	uint32_t new_len;
	uint32_t hole;
	uint32_t tail;
};

static void move_start(struct move_cursor *c, const bool *drop, uint32_t len)
{
	uint32_t i;

	c->drop = drop;
	c->new_len = 0;
	for (i = 0; i < len; i++)
		c->new_len += !drop[i];
	c->hole = 0;
	c->tail = len;
}

/* The next move, slot @from to slot @to of the head; false when done. */
static bool move_next(struct move_cursor *c, uint32_t *from, uint32_t *to)
{
	while (c->hole < c->new_len && !c->drop[c->hole])
		c->hole++;
	if (c->hole >= c->new_len)
		return false;
	/* A hole below new_len means a survivor at or past it. */
	do
		c->tail--;
	while (c->drop[c->tail]);
	*from = c->tail;
	*to = c->hole++;
	return true;
}

/*
 * Compact table @t by @drop on the host and return its new length; the
 * table's length and blocks are left as they were. On a device cache only
 * the mirror's metadata moves (kvc_dev_moves_run() moved the KVs).
 */
static uint32_t compact_head(struct kvc_kv *kv, const struct kvc_head_table *t,
			     const bool *drop, uint64_t *moved)
{
	uint32_t bs = kv->shape.block_size, from, to;
	struct move_cursor c;

	move_start(&c, drop, t->len);
	while (move_next(&c, &from, &to)) {
		uint32_t fb = t->blocks[from / bs], tb = t->blocks[to / bs];

		if (kv->dev)
			kv->meta[(uint64_t)tb * bs + to % bs] =
				kv->meta[(uint64_t)fb * bs + from % bs];
		else
			kvc_slot_copy(kv, fb, from % bs, tb, to % bs);
		(*moved)++;
	}
	return c.new_len;
}

/*
 * On a device cache, queue the moves of tables [@first, @first + @nr) of
 * @seq, table t compacted by @drop[t - @first], in one launch. Nothing
 * changes on failure.
 */
static int device_moves(struct kvc_seq *seq, uint32_t first, uint32_t nr,
			const bool *const *drop)
{
	struct kvc_kv *kv = seq->kv;
	uint32_t bs = kv->shape.block_size, t, from, to;
	struct move_cursor c;
	uint64_t n = 0, at = 0, *moves;
	int err;

	if (!kv->dev)
		return 0;
	for (t = 0; t < nr; t++) {
		const struct kvc_head_table *h = &seq->tables[first + t];

		move_start(&c, drop[t], h->len);
		while (move_next(&c, &from, &to))
			n++;
	}
	if (!n)
		return 0;
	err = kvc_dev_enter(kv->dev);
	if (err)
		return err;
	err = kvc_dev_moves_begin(kv, n, &moves);
	if (err)
		goto out;
	for (t = 0; t < nr; t++) {
		const struct kvc_head_table *h = &seq->tables[first + t];

		move_start(&c, drop[t], h->len);
		while (move_next(&c, &from, &to)) {
			moves[2 * at] =
				(uint64_t)h->blocks[from / bs] * bs + from % bs;
			moves[2 * at + 1] =
				(uint64_t)h->blocks[to / bs] * bs + to % bs;
			at++;
		}
	}
	err = kvc_dev_moves_run(kv, n);
out:
	kvc_dev_leave(kv->dev);
	return err;
}

static uint32_t blocks_for(const struct kvc_kv *kv, uint32_t len)
{
	uint32_t bs = kv->shape.block_size;

	return len / bs + !!(len % bs);
}

int kvc_evict_apply(struct kvc_seq *seq, uint32_t layer, uint32_t head,
		    const bool *drop, struct kvc_evict_stats *st)
{
	const struct kvc_head_table *t;
	uint32_t before_len, before_blocks, new_len;
	uint64_t moved = 0;
	int err;

	if (!seq || !drop)
		return kvc_err(-EINVAL, "kvc_evict_apply: NULL %s",
			       seq ? "drop flags" : "sequence");
	if (layer >= seq->kv->shape.layers || head >= seq->kv->shape.kv_heads)
		return kvc_err(
			-EINVAL,
			"kvc_evict_apply: layer %u head %u outside %u x %u",
			layer, head, seq->kv->shape.layers,
			seq->kv->shape.kv_heads);
	t = kvc_seq_head(seq, layer, head);
	before_len = t->len;
	before_blocks = t->nr_blocks;
	err = device_moves(seq, layer * seq->kv->shape.kv_heads + head, 1,
			   &drop);
	if (err)
		return err;
	new_len = compact_head(seq->kv, t, drop, &moved);
	/* Cannot fail: the arguments were checked and new_len <= len. */
	err = kvc_seq_truncate(seq, layer, head, new_len);
	if (err)
		return err;
	if (st) {
		st->kvs_before += before_len;
		st->kvs_after += new_len;
		st->blocks_freed += before_blocks - t->nr_blocks;
		st->kvs_moved += moved;
	}
	return 0;
}

/*
 * kvc_evict_seq() - Drop the chosen KVs of every head of @seq and free all
 * the trailing blocks in one pool call: kvc_policy_compress()'s path
 * (declared in policy.c; kvc_evict_apply() is the one-head form).
 * @seq: the sequence.
 * @drop: per table (layer-major), one flag per slot of the head.
 * @ids: room for every block the sequence holds (the caller allocates it
 *       first, so a lack of memory changes nothing).
 * @st: added to (may be NULL).
 *
 * Return: 0, -EFAULT when the pool refuses the blocks (a bug), or on a
 * device cache the driver's error (nothing changed).
 */
int kvc_evict_seq(struct kvc_seq *seq, bool *const *drop, uint32_t *ids,
		  struct kvc_evict_stats *st)
{
	struct kvc_kv *kv = seq->kv;
	uint32_t nr = kv->shape.layers * kv->shape.kv_heads, t, n = 0;
	uint64_t before = 0, after = 0, moved = 0;
	int err;

	err = device_moves(seq, 0, nr, (const bool *const *)drop);
	if (err)
		return err;
	for (t = 0; t < nr; t++) {
		struct kvc_head_table *h = &seq->tables[t];
		uint32_t new_len = compact_head(kv, h, drop[t], &moved);
		uint32_t keep = blocks_for(kv, new_len);

		/* An empty head has no table at all: nothing to copy. */
		if (h->nr_blocks > keep)
			memcpy(ids + n, h->blocks + keep,
			       (size_t)(h->nr_blocks - keep) * sizeof(*ids));
		n += h->nr_blocks - keep;
		before += h->len;
		after += new_len;
		h->len = new_len;
		h->nr_blocks = keep;
	}
	if (n) {
		err = kvc_dev_free(kv, n, ids);
		if (err) {
			char why[160];

			/* The message is rewritten below: copy it first. */
			snprintf(why, sizeof(why), "%s", kvc_last_error());
			return kvc_err(-EFAULT,
				       "kvc_evict_seq: the pool refused %u "
				       "trailing blocks of sequence %u: %s",
				       n, seq->id, why);
		}
	}
	if (st) {
		st->kvs_before += before;
		st->kvs_after += after;
		st->blocks_freed += n;
		st->kvs_moved += moved;
	}
	return 0;
}
