// SPDX-License-Identifier: MIT
/*
 * The eviction policies besides KV-Compress, one ops struct each: full,
 * StreamingLLM, H2O, SnapKV, PyramidKV, PyramidInfer and the sliding
 * window of chosen layers. A policy here only chooses: it sets drop flags
 * per (layer, KV head), and kvc_evict_apply() moves and frees. Never sets
 * drop for a protected slot (kvc_slot_protected(): the sinks and the
 * protected window), and never reads a slot's order as its age: positions
 * come from the slot metadata, because MoveCache does not keep slot order.
 *
 * Shared rules:
 * - Ranking: a higher score is kept first; equal scores keep the later
 *   position first (older KVs go first), so a ranking is a total order
 *   and the choice is deterministic. A NaN metric ranks as +inf (kept),
 *   as in kvcompress.c. With params.metric %KVC_METRIC_AVG the score is
 *   the metric divided by the queries that could see the key (positions
 *   pos .. tokens - 1; the observation window and buffer are ignored).
 * - Budgets are counted in KVs per (layer, KV head) and are taken from
 *   the sequence's token count (not the head's current length), so that
 *   compressing again during decode does not shrink a head further than
 *   its budget. A head that holds fewer KVs than its budget keeps them all.
 * - Protected KVs are always kept. Where a budget C comes from
 *   kvc_policy_keep_tokens(), which counts protected tokens, the protected
 *   KVs a head holds (sinks and window; SnapKV adds its observation
 *   window) are taken from C and the rest is ranked: a head keeps
 *   max(C, protected) KVs when it holds that many.
 * - Fractional budgets (PyramidKV, PyramidInfer) round down, so a layer
 *   never keeps more than its formula allows and the sum over layers never
 *   exceeds the formula's total; a tolerance of 1e-6 keeps values the
 *   formula makes whole (k_max, rho_0 = 1) from losing one KV to
 *   floating-point error.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <kvc/evict.h>

#include "../alloc/error.h"
#include "internal.h"
#include "policy.h"

/* StreamingLLM's attention sinks when params.sinks is 0. */
#define STREAMINGLLM_SINKS 4u
/* Slack when rounding a fractional budget down. */
#define BUDGET_EPS 1e-6

/* ------------------------------------------------------------------ */
/* Shared parts */

/* One unprotected KV of a head, as the rankers sort it. */
struct rank_entry {
	float score;
	int32_t pos;
	uint32_t slot;
};

static const struct kvc_slot_meta *slot_meta(const struct kvc_seq *seq,
					     const struct kvc_head_table *t,
					     uint32_t slot)
{
	uint32_t bs = seq->kv->shape.block_size;

	return &seq->kv->meta[(uint64_t)t->blocks[slot / bs] * bs + slot % bs];
}

/* Protected positions of a sequence of @tokens tokens (kvc_slot_protected). */
static uint32_t protected_tokens(const struct kvc_policy *pol, uint32_t tokens)
{
	uint64_t n = (uint64_t)pol->p.sinks + pol->p.protected_window;

	return n < tokens ? (uint32_t)n : tokens;
}

static uint32_t sub_sat(uint32_t a, uint32_t b)
{
	return a > b ? a - b : 0;
}

/* floor(@x), with BUDGET_EPS of slack, clamped to [0, UINT32_MAX]. */
static uint32_t budget_floor(double x)
{
	if (!(x > 0))
		return 0;
	x = floor(x + BUDGET_EPS);
	return x >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)x;
}

static float slot_score(const struct kvc_policy *pol, const struct kvc_seq *seq,
			const struct kvc_slot_meta *m)
{
	int64_t seen = (int64_t)seq->tokens - m->pos;
	float s = m->metric;

	if (isnan(s))
		return INFINITY;
	if (pol->p.metric == KVC_METRIC_AVG && seen > 0)
		s /= (float)seen;
	return s;
}

/* Kept first: higher score, then later position. */
static int rank_cmp(const void *a, const void *b)
{
	const struct rank_entry *x = a, *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return (x->pos < y->pos) - (x->pos > y->pos);
}

static int check_seq(const struct kvc_policy *pol, const struct kvc_seq *seq,
		     bool **drop)
{
	const struct kvc_model_shape *s = &seq->kv->shape;

	if (!drop)
		return kvc_err(-EINVAL, "%s: NULL drop flags", pol->ops->name);
	if (s->layers != pol->shape.layers ||
	    s->kv_heads != pol->shape.kv_heads)
		return kvc_err(-EINVAL,
			       "%s: the sequence's cache has %u layers x %u KV "
			       "heads, the policy was made for %u x %u",
			       pol->ops->name, s->layers, s->kv_heads,
			       pol->shape.layers, pol->shape.kv_heads);
	return 0;
}

/* Scratch for ranking the longest head of @seq; *@out NULL when empty. */
static int rank_scratch(const struct kvc_seq *seq, struct rank_entry **out)
{
	const struct kvc_model_shape *s = &seq->kv->shape;
	uint32_t t, longest = 0;

	for (t = 0; t < s->layers * s->kv_heads; t++)
		if (seq->tables[t].len > longest)
			longest = seq->tables[t].len;
	*out = NULL;
	if (!longest)
		return 0;
	*out = malloc((size_t)longest * sizeof(**out));
	if (!*out)
		return kvc_err(-ENOMEM,
			       "eviction policy: no memory to rank %u KVs",
			       longest);
	return 0;
}

/**
 * rank_head() - Keep the best KVs of one head by score, drop the rest.
 * @pol: the policy.
 * @seq: the sequence.
 * @t: the table index (layer * kv_heads + head).
 * @window_from: positions at or after this are kept outright (a window
 *               besides the protected one), INT64_MAX for none.
 * @budget: KVs to keep by score; with @counts_kept, KVs to keep in all.
 * @counts_kept: take the KVs kept outright (protected or in the window)
 *               from @budget.
 * @drop: the head's drop flags.
 * @e: scratch, one entry per KV of the head.
 */
static void rank_head(const struct kvc_policy *pol, const struct kvc_seq *seq,
		      uint32_t t, int64_t window_from, uint32_t budget,
		      bool counts_kept, bool *drop, struct rank_entry *e)
{
	const struct kvc_head_table *ht = &seq->tables[t];
	const struct kvc_slot_meta *m;
	uint32_t slot, nr = 0, kept = 0, keep;

	for (slot = 0; slot < ht->len; slot++) {
		m = slot_meta(seq, ht, slot);
		if (kvc_slot_protected(pol, seq, m->pos) ||
		    m->pos >= window_from) {
			kept++;
			continue;
		}
		e[nr].score = slot_score(pol, seq, m);
		e[nr].pos = m->pos;
		e[nr].slot = slot;
		nr++;
	}
	keep = counts_kept ? sub_sat(budget, kept) : budget;
	if (nr <= keep)
		return;
	qsort(e, nr, sizeof(*e), rank_cmp);
	for (; keep < nr; keep++)
		drop[e[keep].slot] = true;
}

/* Drop every unprotected KV of table @t older than position @keep_from. */
static void drop_older(const struct kvc_policy *pol, const struct kvc_seq *seq,
		       uint32_t t, int64_t keep_from, bool *drop)
{
	const struct kvc_head_table *ht = &seq->tables[t];
	const struct kvc_slot_meta *m;
	uint32_t slot;

	for (slot = 0; slot < ht->len; slot++) {
		m = slot_meta(seq, ht, slot);
		if (m->pos < keep_from && !kvc_slot_protected(pol, seq, m->pos))
			drop[slot] = true;
	}
}

static uint32_t nr_tables(const struct kvc_seq *seq)
{
	return seq->kv->shape.layers * seq->kv->shape.kv_heads;
}

/*
 * The shape of every ranking policy: each head of layer l keeps its
 * @budget(l) best KVs by score (see rank_head() for @window_from and
 * @counts_kept) and drops the rest.
 */
static int rank_layers(struct kvc_policy *pol, struct kvc_seq *seq, bool **drop,
		       int64_t window_from, bool counts_kept,
		       uint32_t (*budget)(const struct kvc_policy *pol,
					  const struct kvc_seq *seq,
					  uint32_t layer))
{
	const struct kvc_model_shape *s = &seq->kv->shape;
	struct rank_entry *e;
	uint32_t l, h, k;
	int err;

	err = check_seq(pol, seq, drop);
	if (err)
		return err;
	err = rank_scratch(seq, &e);
	if (err || !e)
		return err;
	for (l = 0; l < s->layers; l++) {
		k = budget(pol, seq, l);
		for (h = 0; h < s->kv_heads; h++)
			rank_head(pol, seq, l * s->kv_heads + h, window_from, k,
				  counts_kept, drop[l * s->kv_heads + h], e);
	}
	free(e);
	return 0;
}

/* The same budget in every layer: the one of kvc_policy_keep_tokens(). */
static uint32_t keep_budget(const struct kvc_policy *pol,
			    const struct kvc_seq *seq, uint32_t layer)
{
	return kvc_policy_keep_tokens(pol, seq->tokens);
}

/* ------------------------------------------------------------------ */
/* full: the baseline that keeps everything */

static int full_select(struct kvc_policy *pol, struct kvc_seq *seq, bool **drop)
{
	return check_seq(pol, seq, drop);
}

const struct kvc_policy_ops kvc_policy_full = {
	.name = "full",
	.metric = KVC_METRIC_NONE,
	.select = full_select,
};

/* ------------------------------------------------------------------ */
/*
 * StreamingLLM: the first sinks tokens and the last window_tokens tokens,
 * by position, in every head; nothing else. params.sinks 0 means the
 * paper's 4: init writes 4 into the policy's own copy of the parameters,
 * so kvc_slot_protected() protects them too.
 */

static int streamingllm_init(struct kvc_policy *pol)
{
	if (!pol->p.window_tokens)
		return kvc_err(-EINVAL,
			       "streamingllm: window_tokens is 0 (the recent "
			       "tokens it keeps besides the sinks)");
	if (!pol->p.sinks)
		pol->p.sinks = STREAMINGLLM_SINKS;
	return 0;
}

static int streamingllm_select(struct kvc_policy *pol, struct kvc_seq *seq,
			       bool **drop)
{
	int64_t keep_from = (int64_t)seq->tokens - pol->p.window_tokens;
	uint32_t t;
	int err;

	err = check_seq(pol, seq, drop);
	if (err)
		return err;
	for (t = 0; t < nr_tables(seq); t++)
		drop_older(pol, seq, t, keep_from, drop[t]);
	return 0;
}

const struct kvc_policy_ops kvc_policy_streamingllm = {
	.name = "streamingllm",
	.metric = KVC_METRIC_NONE,
	.init = streamingllm_init,
	.select = streamingllm_select,
};

/* ------------------------------------------------------------------ */
/*
 * H2O: per head, the heavy hitters by accumulated attention and the
 * recent (protected) tokens: C = kvc_policy_keep_tokens() in all, the
 * protected KVs counted in it. The metric is collected as params.metric
 * says (kvc_policy_decode_metric()); H2O's own is L1.
 */

static int h2o_select(struct kvc_policy *pol, struct kvc_seq *seq, bool **drop)
{
	return rank_layers(pol, seq, drop, INT64_MAX, true, keep_budget);
}

const struct kvc_policy_ops kvc_policy_h2o = {
	.name = "h2o",
	.metric = KVC_METRIC_L1,
	.select = h2o_select,
};

/* ------------------------------------------------------------------ */
/*
 * SnapKV: every head gets the same budget C = kvc_policy_keep_tokens();
 * it keeps its observation window (the last observe_window positions,
 * none when observe_window is 0) and the protected KVs, and fills the rest
 * of C with the best scores. The score is the metric prefill collected
 * from the observation window, max-pooled (kvc_policy_observe(); SnapKV
 * sums weights: metric L1). SnapKV's own choice is observe_window 32 and
 * pool_kernel 7; the parameters are the user's and are used as given
 * (kvc_policy_params_init() sets KV-Compress's 8, no pooling and L2), so
 * set those to run SnapKV as published.
 */

static int snapkv_select(struct kvc_policy *pol, struct kvc_seq *seq,
			 bool **drop)
{
	int64_t window_from = INT64_MAX;

	if (pol->p.observe_window)
		window_from = (int64_t)seq->tokens - pol->p.observe_window;
	return rank_layers(pol, seq, drop, window_from, true, keep_budget);
}

const struct kvc_policy_ops kvc_policy_snapkv = {
	.name = "snapkv",
	.metric = KVC_METRIC_L1,
	.select = snapkv_select,
};

/* ------------------------------------------------------------------ */
/*
 * PyramidKV: budgets fall linearly with depth. With C the per-head budget
 * of kvc_policy_keep_tokens(), w the protected KVs (the protected window,
 * and the sinks if any), b = C - w (0 when C < w) and beta = pyramid_beta:
 * k_min = b / beta, k_max = 2b - k_min, k_l = k_max - l (k_max - k_min) /
 * (L - 1), and k_0 = b when L == 1. Each head of layer l keeps its
 * floor(k_l) best KVs by metric and the protected ones; the mean of k_l
 * is b, so the layers together keep at most L * C.
 */

static int pyramidkv_init(struct kvc_policy *pol)
{
	double beta = pol->p.pyramid_beta;

	if (!isfinite(beta) || beta < 1)
		return kvc_err(-EINVAL,
			       "pyramidkv: pyramid_beta %g must be at least 1 "
			       "(PyramidKV uses 20; 1 gives every layer the "
			       "same budget)",
			       beta);
	return 0;
}

/* floor(k_l) for layer @layer of @layers, with b = @b. */
static uint32_t pyramidkv_budget(double beta, uint32_t b, uint32_t layer,
				 uint32_t layers)
{
	double k_min, k_max;

	if (layers == 1)
		return b;
	k_min = b / beta;
	k_max = 2.0 * b - k_min;
	return budget_floor(k_max - layer * (k_max - k_min) / (layers - 1));
}

static uint32_t pyramidkv_layer(const struct kvc_policy *pol,
				const struct kvc_seq *seq, uint32_t layer)
{
	uint32_t b = sub_sat(kvc_policy_keep_tokens(pol, seq->tokens),
			     protected_tokens(pol, seq->tokens));

	return pyramidkv_budget(pol->p.pyramid_beta, b, layer,
				seq->kv->shape.layers);
}

static int pyramidkv_select(struct kvc_policy *pol, struct kvc_seq *seq,
			    bool **drop)
{
	return rank_layers(pol, seq, drop, INT64_MAX, false, pyramidkv_layer);
}

const struct kvc_policy_ops kvc_policy_pyramidkv = {
	.name = "pyramidkv",
	.metric = KVC_METRIC_L1,
	.init = pyramidkv_init,
	.select = pyramidkv_select,
};

/* ------------------------------------------------------------------ */
/*
 * PyramidInfer: layer l keeps the fraction rho_l = (1 - rho)(cos(pi l /
 * L) + 1) / 2 + rho (rho = pyramid_rho) of the context it may evict from,
 * the sequence's unprotected tokens n: each head keeps its floor(rho_l *
 * n) best KVs by metric (L1, weighted to recent queries by when it is
 * collected) and the protected ones. Layer 0 keeps everything; the
 * deepest layer keeps a little more than rho. The budget does not use
 * rate or max_cache_tokens.
 */

static int pyramidinfer_init(struct kvc_policy *pol)
{
	double rho = pol->p.pyramid_rho;

	if (!isfinite(rho) || rho < 0 || rho > 1)
		return kvc_err(-EINVAL,
			       "pyramidinfer: pyramid_rho %g is not a fraction "
			       "in [0, 1]",
			       rho);
	return 0;
}

/* floor(rho_l * @n) for layer @layer of @layers. */
static uint32_t pyramidinfer_budget(double rho, uint32_t n, uint32_t layer,
				    uint32_t layers)
{
	double rho_l = (1 - rho) * (cos(M_PI * layer / layers) + 1) / 2 + rho;

	return budget_floor(rho_l * n);
}

static uint32_t pyramidinfer_layer(const struct kvc_policy *pol,
				   const struct kvc_seq *seq, uint32_t layer)
{
	uint32_t n = seq->tokens - protected_tokens(pol, seq->tokens);

	return pyramidinfer_budget(pol->p.pyramid_rho, n, layer,
				   seq->kv->shape.layers);
}

static int pyramidinfer_select(struct kvc_policy *pol, struct kvc_seq *seq,
			       bool **drop)
{
	return rank_layers(pol, seq, drop, INT64_MAX, false,
			   pyramidinfer_layer);
}

const struct kvc_policy_ops kvc_policy_pyramidinfer = {
	.name = "pyramidinfer",
	.metric = KVC_METRIC_L1,
	.init = pyramidinfer_init,
	.select = pyramidinfer_select,
};

/* ------------------------------------------------------------------ */
/*
 * window (Novita's vLLM fork): the layers named by window_layers keep only
 * their last window_tokens positions (and the protected ones); the others
 * keep everything. window_layers is a comma-separated list of layer
 * indices and inclusive ranges, blanks allowed around items ("0-7, 12");
 * NULL means every layer. priv: one bool per layer, true = windowed.
 */

static const char *skip_blanks(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* One layer index at *@s (blanks skipped around it); *@s moves past it. */
static int parse_layer(const char *list, const char **s, uint32_t layers,
		       uint32_t *out)
{
	const char *p = skip_blanks(*s), *digits = p;
	uint64_t v = 0;

	if (!isdigit((unsigned char)*p)) {
		if (!*p)
			return kvc_err(-EINVAL,
				       "window_layers \"%s\": a layer number "
				       "is missing at the end",
				       list);
		return kvc_err(-EINVAL,
			       "window_layers \"%s\": expected a layer number "
			       "at offset %td, found '%c'",
			       list, p - list, *p);
	}
	while (isdigit((unsigned char)*p)) {
		if (v < UINT32_MAX)
			v = v * 10 + (uint64_t)(*p - '0');
		p++;
	}
	if (v >= layers)
		return kvc_err(-EINVAL,
			       "window_layers \"%s\": layer %.*s is out of "
			       "range (the model has layers 0-%u)",
			       list, (int)(p - digits), digits, layers - 1);
	*out = (uint32_t)v;
	*s = skip_blanks(p);
	return 0;
}

static int parse_layers(const char *list, uint32_t layers, bool *windowed)
{
	const char *s = list;
	uint32_t first, last, l;
	int err;

	if (!*skip_blanks(list))
		return kvc_err(-EINVAL,
			       "window_layers \"%s\": empty list (NULL means "
			       "every layer)",
			       list);
	for (;;) {
		err = parse_layer(list, &s, layers, &first);
		if (err)
			return err;
		last = first;
		if (*s == '-') {
			s++;
			err = parse_layer(list, &s, layers, &last);
			if (err)
				return err;
			if (last < first)
				return kvc_err(-EINVAL,
					       "window_layers \"%s\": range "
					       "%u-%u runs backwards",
					       list, first, last);
		}
		for (l = first; l <= last; l++)
			windowed[l] = true;
		if (!*s)
			return 0;
		if (*s != ',')
			return kvc_err(
				-EINVAL,
				"window_layers \"%s\": expected ',' %sat "
				"offset %td, found '%c'",
				list, last == first ? "or '-' " : "", s - list,
				*s);
		s++;
	}
}

static int window_init(struct kvc_policy *pol)
{
	uint32_t layers = pol->shape.layers, l;
	bool *windowed;
	int err;

	if (!pol->p.window_tokens)
		return kvc_err(-EINVAL,
			       "window: window_tokens is 0 (the tokens each "
			       "windowed layer keeps)");
	if (!layers)
		return kvc_err(-EINVAL, "window: the shape has no layers");
	windowed = calloc(layers, sizeof(*windowed));
	if (!windowed)
		return kvc_err(-ENOMEM, "window: no memory for %u layers",
			       layers);
	if (pol->p.window_layers) {
		err = parse_layers(pol->p.window_layers, layers, windowed);
		if (err) {
			free(windowed);
			return err;
		}
	} else {
		for (l = 0; l < layers; l++)
			windowed[l] = true;
	}
	pol->priv = windowed;
	return 0;
}

static void window_exit(struct kvc_policy *pol)
{
	free(pol->priv);
	pol->priv = NULL;
}

static int window_select(struct kvc_policy *pol, struct kvc_seq *seq,
			 bool **drop)
{
	const struct kvc_model_shape *s = &seq->kv->shape;
	int64_t keep_from = (int64_t)seq->tokens - pol->p.window_tokens;
	const bool *windowed = pol->priv;
	uint32_t l, h;
	int err;

	err = check_seq(pol, seq, drop);
	if (err)
		return err;
	for (l = 0; l < s->layers; l++) {
		if (!windowed[l])
			continue;
		for (h = 0; h < s->kv_heads; h++)
			drop_older(pol, seq, l * s->kv_heads + h, keep_from,
				   drop[l * s->kv_heads + h]);
	}
	return 0;
}

const struct kvc_policy_ops kvc_policy_window = {
	.name = "window",
	.metric = KVC_METRIC_NONE,
	.init = window_init,
	.select = window_select,
	.exit = window_exit,
};
