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
#include "internal.h"

/*
 * Compact table @t of @kv by @drop and return its new length; the table's
 * length and blocks are left as they were. Two cursors: @hole walks up
 * over the slots below the new length and stops at each dropped one,
 * @tail walks down from the end and stops at each survivor; every
 * survivor at or past the new length fills exactly one hole, so the moves
 * are exactly the survivors past the new length, the fewest possible.
 */
static uint32_t compact_head(struct kvc_kv *kv, const struct kvc_head_table *t,
			     const bool *drop, uint64_t *moved)
{
	uint32_t bs = kv->shape.block_size, len = t->len, new_len = 0;
	uint32_t hole = 0, tail = len, i;

	for (i = 0; i < len; i++)
		new_len += !drop[i];
	for (;;) {
		while (hole < new_len && !drop[hole])
			hole++;
		if (hole >= new_len)
			break;
		/* A hole below new_len means a survivor at or past it. */
		do
			tail--;
		while (drop[tail]);
		kvc_slot_copy(kv, t->blocks[tail / bs], tail % bs,
			      t->blocks[hole / bs], hole % bs);
		(*moved)++;
		hole++;
	}
	return new_len;
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
 * Return: 0, or -EFAULT when the pool refuses the blocks (a bug).
 */
int kvc_evict_seq(struct kvc_seq *seq, bool *const *drop, uint32_t *ids,
		  struct kvc_evict_stats *st)
{
	struct kvc_kv *kv = seq->kv;
	uint32_t nr = kv->shape.layers * kv->shape.kv_heads, t, n = 0;
	uint64_t before = 0, after = 0, moved = 0;
	int err;

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
		err = kvc_pool_free(kv->pool, n, ids);
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
