// SPDX-License-Identifier: MIT
/*
 * Preemption for kvc_run() under a budget: when an allocation does not fit
 * under the cap on mapped bytes, compaction is tried first (it gives whole
 * chunks back when the free blocks are scattered); then a running
 * sequence chosen by the rule gives its memory up. Its KV goes to the
 * swap, or, when that fails (cap, full disk, I/O error), it is dropped and
 * recomputed from its prompt later. Preempted sequences come back first
 * come first served: a swapped one once its blocks plus one block per
 * table (its next token) fit under the budget, a dropped one by being
 * prefilled again. A sequence whose swap-in fails its checksum is dropped
 * too: never resumed with wrong data.
 */
#include <errno.h>
#include <string.h>

#include <kvc/compact.h>
#include <kvc/error.h>
#include <kvc/pool.h>

#include "../alloc/error.h"
#include "internal.h"
#include "run_state.h"

int kvc_preempt_parse(const char *name, enum kvc_preempt *out)
{
	if (!name || !out)
		return kvc_err(-EINVAL, "kvc_preempt_parse: NULL argument");
	if (!strcmp(name, "latest"))
		*out = KVC_PREEMPT_LATEST;
	else if (!strcmp(name, "largest"))
		*out = KVC_PREEMPT_LARGEST;
	else
		return kvc_err(-EINVAL,
			       "preemption rule '%s' is not latest or largest",
			       name);
	return 0;
}

const char *kvc_preempt_name(enum kvc_preempt p)
{
	switch (p) {
	case KVC_PREEMPT_LATEST:
		return "latest";
	case KVC_PREEMPT_LARGEST:
		return "largest";
	}
	return "?";
}

/* Say once per run why sequences are being recomputed. */
static void swap_failed(struct run *r, const char *what, uint32_t i)
{
	r->swap_failures++;
	if (r->swap_notice || (r->p->swap->flags & KVC_SWAP_QUIET))
		return;
	r->swap_notice = true;
	kvc_notice(
		"swap-%s of sequence %u failed (%s); such sequences are recomputed from their prompt",
		what, i, kvc_last_error());
}

/* Sequence @i leaves the cache without its KV: it starts over later. */
static void drop(struct run *r, uint32_t i)
{
	kvc_run_release(r, i);
	r->seqs[i].state = RUN_RECOMPUTE;
	r->recomputes++;
}

static int preempt(struct run *r, uint32_t i)
{
	struct run_seq *s = &r->seqs[i];
	uint64_t blocks = kvc_seq_blocks(s->seq);
	int err;

	r->preemptions++;
	err = kvc_swap_out(r->sw, s->seq, i);
	/* A stale entry whose drop failed before: drop it now, or recompute. */
	if (err == -EEXIST && !kvc_swap_drop(r->sw, i))
		err = kvc_swap_out(r->sw, s->seq, i);
	if (err == -EINVAL)
		return err; /* a bug, not a full disk */
	if (err) {
		swap_failed(r, "out", i);
		drop(r, i);
	} else {
		/* The uncompressed reference copy stays: it is not budgeted. */
		kvc_seq_destroy(s->seq);
		s->seq = NULL;
		s->state = RUN_SWAPPED;
	}
	/* After the frees it describes, as every event. */
	kvc_run_rec(r, KVC_REC_PREEMPT, i, blocks, 0, 0);
	return 0;
}

/* Compaction, when it can give a chunk back; true if it did. */
static int compact_for_room(struct run *r, bool *freed)
{
	struct kvc_pool_stats before, after;
	int err;

	*freed = false;
	kvc_pool_get_stats(kvc_kv_pool(r->kv), &before, NULL);
	if (!before.chunks_reclaimable)
		return 0;
	err = kvc_kv_compact(r->kv, NULL);
	if (err)
		return err;
	err = kvc_pool_fence_wait(kvc_kv_pool(r->kv));
	if (err)
		return err;
	kvc_pool_get_stats(kvc_kv_pool(r->kv), &after, NULL);
	*freed = after.chunks_mapped < before.chunks_mapped;
	return 0;
}

int kvc_run_make_room(struct run *r, uint32_t self, bool admitting)
{
	uint64_t best_blocks = 0, b;
	uint32_t i, victim = self;
	bool freed;
	int err;

	err = compact_for_room(r, &freed);
	if (err || freed)
		return err;
	if (r->p->preempt == KVC_PREEMPT_LARGEST)
		best_blocks = kvc_seq_blocks(r->seqs[self].seq);
	for (i = 0; i < r->arrived; i++) {
		const struct run_seq *s = &r->seqs[i];

		if (i == self || s->state != RUN_RUNNING || s->done == s->gen)
			continue;
		if (r->p->preempt == KVC_PREEMPT_LATEST) {
			if (i > victim)
				victim = i;
			continue;
		}
		b = kvc_seq_blocks(s->seq);
		if (b > best_blocks || (b == best_blocks && i > victim)) {
			best_blocks = b;
			victim = i;
		}
	}
	if (victim == self && admitting)
		return -EAGAIN;
	err = preempt(r, victim);
	if (err)
		return err;
	return victim == self ? -EAGAIN : 0;
}

/* Would @need more blocks fit under the budget once compacted? */
static bool fits(struct run *r, uint64_t need)
{
	struct kvc_pool_stats st;
	uint64_t chunks;

	kvc_pool_get_stats(kvc_kv_pool(r->kv), &st, NULL);
	chunks = r->p->budget_bytes / st.chunk_bytes;
	return st.blocks_live + need <= chunks * st.blocks_per_chunk;
}

bool kvc_run_admissible(struct run *r, uint32_t i)
{
	uint64_t tables = (uint64_t)r->shape.layers * r->shape.kv_heads;
	uint64_t bs = r->shape.block_size;

	return fits(r, ((uint64_t)r->seqs[i].prompt + bs - 1) / bs * tables +
			       tables);
}

static int too_small(struct run *r, uint32_t i, uint64_t blocks)
{
	return kvc_err(
		-ENOMEM,
		"kvc_run: a budget of %llu bytes cannot hold sequence %u alone (%llu blocks of %llu bytes)",
		(unsigned long long)r->p->budget_bytes, i,
		(unsigned long long)blocks,
		(unsigned long long)kvc_kv_block_bytes(&r->shape));
}

/* Swap sequence @i in; 1 when it must wait, 0 when in (or dropped). */
static int swap_back(struct run *r, uint32_t i, uint32_t resident)
{
	struct run_seq *s = &r->seqs[i];
	uint64_t tables = (uint64_t)r->shape.layers * r->shape.kv_heads;
	struct kvc_swap_entry e;
	bool freed;
	int err;

	err = kvc_swap_lookup(r->sw, i, &e);
	if (err)
		return kvc_err(-EFAULT,
			       "kvc_run: sequence %u is not in the swap", i);
	if (!fits(r, e.blocks + tables))
		return resident ? 1 : too_small(r, i, e.blocks + tables);
	err = kvc_swap_in(r->sw, i, &s->seq);
	if (err == -ENOMEM) {
		/* Fits by count: the free blocks are scattered. */
		err = compact_for_room(r, &freed);
		if (!err)
			err = kvc_swap_in(r->sw, i, &s->seq);
		if (err == -ENOMEM)
			return resident ? 1 : too_small(r, i, e.blocks);
	}
	if (err) {
		/* A bad checksum or a failed read: start over, never resume. */
		swap_failed(r, "in", i);
		/* If this fails, the next swap-out of @i retries it. */
		kvc_swap_drop(r->sw, i);
		s->seq = NULL;
		drop(r, i);
		return 0;
	}
	s->state = RUN_RUNNING;
	return 0;
}

int kvc_run_readmit(struct run *r, bool *compressed, uint32_t resident,
		    bool *progress)
{
	uint32_t i;
	int err;

	for (i = 0; i < r->arrived; i++) {
		struct run_seq *s = &r->seqs[i];

		if (s->state == RUN_SWAPPED) {
			err = swap_back(r, i, resident);
			if (err < 0)
				return err;
			if (err)
				return 0;
			if (s->state == RUN_RUNNING) {
				resident++;
				*progress = true;
				continue;
			}
		}
		if (s->state != RUN_RECOMPUTE)
			continue;
		err = kvc_run_prefill(r, i, compressed);
		if (err == -EAGAIN)
			return resident ?
				       0 :
				       kvc_err(-ENOMEM,
					       "kvc_run: a budget of %llu bytes cannot hold the prompt of sequence %u (%u tokens)",
					       (unsigned long long)
						       r->p->budget_bytes,
					       i, s->prompt);
		if (err)
			return err;
		resident++;
		*progress = true;
	}
	return 0;
}

bool kvc_run_waiting(const struct run *r)
{
	uint32_t i;

	for (i = 0; i < r->arrived; i++)
		if (r->seqs[i].state == RUN_SWAPPED ||
		    r->seqs[i].state == RUN_RECOMPUTE)
			return true;
	return false;
}
