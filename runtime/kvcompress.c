// SPDX-License-Identifier: MIT
/*
 * KV-Compress (arXiv 2410.00161): per sequence, evict whole blocks' worth
 * of KVs from the (layer, KV head)s where that costs least, so heads keep
 * different numbers of KVs. Only chooses: kvc_policy_compress() applies
 * the choice through evict.c. Never chooses a protected KV (sinks, the
 * protected window), and never more KVs from a head than it can free
 * whole blocks with.
 *
 * The quota. With keep = kvc_policy_keep_tokens(tokens), the tokens' worth
 * one head may keep for a sequence of `tokens` tokens, the sequence keeps
 * at most
 *
 *	ceil(L * H * keep / block_size) blocks over its L x H heads,
 *
 * and evicts the blocks it holds beyond that (none when keep == tokens).
 * With max_cache_tokens M, keep = min(tokens, M): the paper's
 * ceil(M * L * H / block_size). With a rate r, keep = p + ceil((tokens - p)
 * / r) where p = min(tokens, sinks + protected_window): over all heads the
 * sequence keeps about 1/r of its unprotected KVs, in whole blocks.
 * Counted from the sequence's logical length, not from what the heads
 * still hold, so continual compression holds it near that size instead of
 * dividing it by r again at every round.
 *
 * The ranking. Per head, its unprotected KVs sorted by score ascending
 * (the metric; for %KVC_METRIC_AVG the metric divided by tokens - pos,
 * the number of queries that could have seen the key: an approximation
 * that ignores the observation window and the buffer; ties go to the
 * older position first; NaN ranks as +inf). Let hanging be the KVs in
 * the head's last block (1 .. block_size, so a full last block counts
 * block_size). Evicting r + 1 blocks' worth, hanging + r * block_size KVs,
 * frees r + 1 blocks and costs the largest score among them, the
 * (hanging + r * block_size)-th smallest; a candidate exists only while
 * that count is at most the head's unprotected KVs. All candidates of all
 * heads and layers are sorted by (cost, r, table) and the cheapest are
 * taken until the quota is met (or none is left: protected KVs can make
 * it unreachable). Costs never fall with r within a head, so what is
 * taken of each head is a prefix r = 0 .. n - 1, and the head drops its
 * hanging + (n - 1) * block_size lowest-scored unprotected KVs.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "../alloc/error.h"
#include "internal.h"
#include "policy.h"

/* One unprotected KV of a head. */
struct ranked_kv {
	float score;
	int32_t pos;
	uint32_t slot;
};

/* Evicting r + 1 blocks' worth of table @table costs @cost. */
struct candidate {
	float cost;
	uint32_t r;
	uint32_t table;
};

/* NaN ranks as +inf, so the orders below are total. */
static float rank_key(float x)
{
	return isnan(x) ? INFINITY : x;
}

static int cmp_float(float a, float b)
{
	a = rank_key(a);
	b = rank_key(b);
	return a < b ? -1 : a > b;
}

static int ranked_cmp(const void *pa, const void *pb)
{
	const struct ranked_kv *a = pa, *b = pb;
	int c = cmp_float(a->score, b->score);

	if (c)
		return c;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int candidate_cmp(const void *pa, const void *pb)
{
	const struct candidate *a = pa, *b = pb;
	int c = cmp_float(a->cost, b->cost);

	if (c)
		return c;
	if (a->r != b->r)
		return a->r < b->r ? -1 : 1;
	return a->table < b->table ? -1 : a->table > b->table;
}

/* KVs in the last block of @t: 1 .. block_size (0 when empty). */
static uint32_t hanging(const struct kvc_head_table *t, uint32_t bs)
{
	return t->len ? t->len - (t->nr_blocks - 1) * bs : 0;
}

static float score_of(const struct kvc_policy *pol, const struct kvc_seq *seq,
		      const struct kvc_slot_meta *m)
{
	if (pol->p.metric == KVC_METRIC_AVG)
		return m->metric / (float)((int64_t)seq->tokens - m->pos);
	return m->metric;
}

/*
 * Fill @ranked with the unprotected KVs of table @t, sorted; return how
 * many.
 */
static uint32_t rank_head(const struct kvc_policy *pol,
			  const struct kvc_seq *seq,
			  const struct kvc_head_table *t,
			  struct ranked_kv *ranked)
{
	const struct kvc_kv *kv = seq->kv;
	uint32_t bs = kv->shape.block_size, i, n = 0;

	for (i = 0; i < t->len; i++) {
		const struct kvc_slot_meta *m =
			&kv->meta[(uint64_t)t->blocks[i / bs] * bs + i % bs];

		if (kvc_slot_protected(pol, seq, m->pos))
			continue;
		ranked[n].score = score_of(pol, seq, m);
		ranked[n].pos = m->pos;
		ranked[n].slot = i;
		n++;
	}
	qsort(ranked, n, sizeof(*ranked), ranked_cmp);
	return n;
}

/* Blocks the sequence may keep over all its heads (see the top). */
static uint64_t quota_blocks(const struct kvc_policy *pol,
			     const struct kvc_seq *seq, bool *none)
{
	const struct kvc_model_shape *s = &seq->kv->shape;
	uint64_t keep = kvc_policy_keep_tokens(pol, seq->tokens);
	uint64_t heads = (uint64_t)s->layers * s->kv_heads;

	*none = keep >= seq->tokens;
	return (heads * keep + s->block_size - 1) / s->block_size;
}

static int kvcompress_select(struct kvc_policy *pol, struct kvc_seq *seq,
			     bool **drop)
{
	const struct kvc_model_shape *s = &seq->kv->shape;
	uint32_t nr = s->layers * s->kv_heads, bs = s->block_size, t, i;
	uint64_t held = 0, kvs = 0, nr_cands = 0, quota, evict, at, c;
	struct candidate *cands = NULL;
	struct ranked_kv *ranked = NULL;
	uint64_t *first = NULL;
	uint32_t *unprot = NULL, *taken = NULL;
	bool none;
	int err = 0;

	for (t = 0; t < nr; t++) {
		held += seq->tables[t].nr_blocks;
		kvs += seq->tables[t].len;
	}
	quota = quota_blocks(pol, seq, &none);
	if (none || held <= quota)
		return 0;
	evict = held - quota;

	ranked = malloc((kvs ? kvs : 1) * sizeof(*ranked));
	first = malloc((size_t)nr * sizeof(*first));
	unprot = malloc((size_t)nr * sizeof(*unprot));
	taken = calloc(nr, sizeof(*taken));
	/* At most one candidate per block a head holds. */
	cands = malloc((held ? held : 1) * sizeof(*cands));
	if (!ranked || !first || !unprot || !taken || !cands) {
		err = kvc_err(-ENOMEM,
			      "kvcompress: out of memory to rank %llu KVs",
			      (unsigned long long)kvs);
		goto out;
	}

	at = 0;
	for (t = 0; t < nr; t++) {
		const struct kvc_head_table *h = &seq->tables[t];
		uint32_t hang = hanging(h, bs), r;

		first[t] = at;
		unprot[t] = rank_head(pol, seq, h, ranked + at);
		for (r = 0;
		     h->len && (uint64_t)hang + (uint64_t)r * bs <= unprot[t];
		     r++) {
			c = hang + (uint64_t)r * bs;
			cands[nr_cands].cost = ranked[at + c - 1].score;
			cands[nr_cands].r = r;
			cands[nr_cands].table = t;
			nr_cands++;
		}
		at += unprot[t];
	}

	qsort(cands, nr_cands, sizeof(*cands), candidate_cmp);
	if (evict > nr_cands)
		evict = nr_cands;
	/* Per head the taken candidates are r = 0 .. taken - 1 (see top). */
	for (c = 0; c < evict; c++)
		taken[cands[c].table]++;

	for (t = 0; t < nr; t++) {
		if (!taken[t])
			continue;
		c = hanging(&seq->tables[t], bs) +
		    (uint64_t)(taken[t] - 1) * bs;
		for (i = 0; i < c; i++)
			drop[t][ranked[first[t] + i].slot] = true;
	}
out:
	free(cands);
	free(taken);
	free(unprot);
	free(first);
	free(ranked);
	return err;
}

const struct kvc_policy_ops kvc_policy_kvcompress = {
	.name = "kvcompress",
	.metric = KVC_METRIC_L2,
	.init = NULL,
	.select = kvcompress_select,
	.exit = NULL,
};
