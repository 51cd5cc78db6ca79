// SPDX-License-Identifier: MIT
/*
 * The logical replay's eviction model: how many KVs each (layer, KV head)
 * of a sequence keeps when it is compressed. A replay computes no scores,
 * so which KVs go does not matter to memory; only how many stay does, and
 * that follows each policy's own budget rule (the runtime's
 * kvc_policy_keep_tokens() and the per-layer formulas of policies.c).
 * Never lets a head grow by compression, and keeps no state between
 * calls, so that several replays may run at once.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/evict.h>

#include "../alloc/error.h"
#include "policy.h"
#include "sim.h"

/* StreamingLLM's sinks when none are given, as policies.c does. */
#define STREAMINGLLM_SINKS 4u
/* Slack when rounding a fractional budget down, as policies.c. */
#define BUDGET_EPS 1e-6

/* One head in the water-filling: its cap over its weight, and its index. */
struct sim_order {
	double ratio;
	uint32_t head;
};

int sim_evict_init(struct sim_evict *ev, const struct kvc_sim_params *p)
{
	struct kvc_model_shape shape = p->shape;
	const char *name = p->policy.name;
	uint32_t heads = shape.layers * shape.kv_heads;
	bool budget;
	int err;

	memset(ev, 0, sizeof(*ev));
	if (!name)
		return kvc_err(-EINVAL, "replay: no eviction policy name");
	/* q_heads does not matter to memory; the policy checks want one. */
	if (!shape.q_heads)
		shape.q_heads = shape.kv_heads;
	err = kvc_policy_create(&p->policy, &shape, &ev->pol);
	if (err)
		return err;
	ev->p = ev->pol->p;
	ev->name = ev->pol->ops->name;
	ev->layers = shape.layers;
	ev->kv_heads = shape.kv_heads;
	ev->block_size = shape.block_size;
	ev->interval = ev->p.interval ? ev->p.interval : shape.block_size;
	ev->once = ev->p.compress_once;
	ev->skew = p->head_skew;
	ev->seed = p->seed;
	budget = ev->p.rate > 0 || ev->p.max_cache_tokens;

	if (!strcmp(ev->name, "full")) {
		ev->kind = SIM_KEEP_ALL;
	} else if (!strcmp(ev->name, "kvcompress")) {
		ev->kind = SIM_KEEP_KVCOMPRESS;
	} else if (!strcmp(ev->name, "h2o")) {
		ev->kind = SIM_KEEP_UNIFORM;
	} else if (!strcmp(ev->name, "snapkv")) {
		/* SnapKV compresses the prompt once and never again. */
		ev->kind = SIM_KEEP_UNIFORM;
		ev->once = true;
	} else if (!strcmp(ev->name, "pyramidkv")) {
		ev->kind = SIM_KEEP_PYRAMIDKV;
	} else if (!strcmp(ev->name, "pyramidinfer")) {
		ev->kind = SIM_KEEP_PYRAMIDINFER;
		budget = false;
	} else if (!strcmp(ev->name, "streamingllm")) {
		ev->kind = SIM_KEEP_STREAMING;
		budget = false;
		if (!ev->p.sinks)
			ev->p.sinks = STREAMINGLLM_SINKS;
	} else if (!strcmp(ev->name, "window")) {
		ev->kind = SIM_KEEP_WINDOW;
		budget = false;
		ev->windowed = ev->pol->priv;
	} else {
		sim_evict_exit(ev);
		return kvc_err(-EINVAL,
			       "replay: policy \"%s\" is not modelled: the "
			       "replay models full, kvcompress, h2o, snapkv, "
			       "pyramidkv, pyramidinfer, streamingllm and "
			       "window",
			       name);
	}
	/* A budget policy at rate 1 keeps everything. */
	if (budget && ev->p.rate == 1 && !ev->p.max_cache_tokens)
		ev->kind = SIM_KEEP_ALL;
	if (!(p->head_skew >= 0) || !isfinite(p->head_skew)) {
		sim_evict_exit(ev);
		return kvc_err(-EINVAL,
			       "replay: head_skew %g is not a finite number "
			       ">= 0",
			       p->head_skew);
	}
	if (ev->kind == SIM_KEEP_KVCOMPRESS) {
		ev->order = calloc(heads, sizeof(*ev->order));
		if (!ev->order) {
			sim_evict_exit(ev);
			return kvc_err(-ENOMEM,
				       "replay: no memory for %u head weights",
				       heads);
		}
	}
	return 0;
}

void sim_evict_exit(struct sim_evict *ev)
{
	kvc_policy_destroy(ev->pol);
	free(ev->order);
	ev->pol = NULL;
	ev->order = NULL;
	ev->windowed = NULL;
}

/* Every policy but "full" compresses right after prefill. */
bool sim_evict_after_prefill(const struct sim_evict *ev)
{
	return ev->kind != SIM_KEEP_ALL;
}

/* Due after @decoded decode steps since the sequence's prefill. */
bool sim_evict_due(const struct sim_evict *ev, uint32_t decoded)
{
	if (ev->kind == SIM_KEEP_ALL || ev->once || !decoded)
		return false;
	return decoded % ev->interval == 0;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A uniform in (0, 1): 53 random bits, never 0. */
static double unit_open(uint64_t *s)
{
	return ((double)(splitmix64(s) >> 11) + 0.5) / 9007199254740992.0;
}

/*
 * Head weights of request @req: w = exp(skew * z), z ~ N(0, 1) by
 * Box-Muller from a hash of (seed, request, layer, head), so a head keeps
 * its character for the request's life, preemptions included, and runs
 * with the same seed agree.
 */
void sim_evict_weights(const struct sim_evict *ev, uint32_t req, float *w)
{
	uint32_t l, h;

	for (l = 0; l < ev->layers; l++) {
		for (h = 0; h < ev->kv_heads; h++) {
			uint64_t s = ev->seed ^ ((uint64_t)req << 32) ^
				     ((uint64_t)l << 16) ^ h;
			double u1, u2, z;

			s = splitmix64(&s);
			u1 = unit_open(&s);
			u2 = unit_open(&s);
			z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
			w[l * ev->kv_heads + h] = (float)exp(ev->skew * z);
		}
	}
}

static uint32_t sub_sat(uint32_t a, uint32_t b)
{
	return a > b ? a - b : 0;
}

static uint32_t budget_floor(double x)
{
	if (!(x > 0))
		return 0;
	x = floor(x + BUDGET_EPS);
	return x >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)x;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* Protected tokens of a sequence of @tokens tokens: sinks and window. */
static uint32_t protected_tokens(const struct sim_evict *ev, uint32_t tokens)
{
	uint64_t n = (uint64_t)ev->p.sinks + ev->p.protected_window;

	return n < tokens ? (uint32_t)n : tokens;
}

static int order_cmp(const void *a, const void *b)
{
	const struct sim_order *x = a, *y = b;

	if (x->ratio != y->ratio)
		return x->ratio < y->ratio ? -1 : 1;
	return (x->head > y->head) - (x->head < y->head);
}

/*
 * KV-Compress: heads x kvc_policy_keep_tokens(T) KVs over all heads. Each
 * head first keeps its protected KVs, then the rest R is shared by weight
 * with water-filling: a head never gets more than it holds, and what it
 * cannot take goes to the others. Shares are floored and the leftover
 * handed out one KV at a time, so the total is the budget exactly unless
 * the heads hold less.
 */
static void keep_kvcompress(const struct sim_evict *ev, uint32_t tokens,
			    const uint32_t *len, const float *w, uint32_t *kept)
{
	uint32_t heads = ev->layers * ev->kv_heads, h, i, prot;
	uint64_t total, base = 0, room = 0, given = 0, rest;
	struct sim_order *o = ev->order;
	double wsum = 0, r, lambda;

	prot = protected_tokens(ev, tokens);
	total = (uint64_t)heads * kvc_policy_keep_tokens(ev->pol, tokens);
	for (h = 0; h < heads; h++) {
		kept[h] = min_u32(prot, len[h]);
		base += kept[h];
		room += len[h] - kept[h];
	}
	rest = total > base ? total - base : 0;
	if (rest >= room) {
		for (h = 0; h < heads; h++)
			kept[h] = len[h];
		return;
	}
	for (h = 0; h < heads; h++) {
		o[h].head = h;
		o[h].ratio = (double)(len[h] - kept[h]) / w[h];
		wsum += w[h];
	}
	/* Usually no head is capped: then the order does not matter. */
	lambda = (double)rest / wsum;
	for (h = 0; h < heads; h++)
		if (o[h].ratio < lambda)
			break;
	if (h < heads)
		qsort(o, heads, sizeof(*o), order_cmp);
	r = (double)rest;
	for (i = 0; i < heads; i++) {
		h = o[i].head;
		if (o[i].ratio * wsum > r)
			break;
		/* Capped: the head keeps all it holds. */
		given += len[h] - kept[h];
		r -= len[h] - kept[h];
		wsum -= w[h];
		kept[h] = len[h];
	}
	lambda = wsum > 0 ? r / wsum : 0;
	for (uint32_t j = i; j < heads; j++) {
		uint32_t add;

		h = o[j].head;
		add = min_u32(budget_floor(lambda * w[h]), len[h] - kept[h]);
		kept[h] += add;
		given += add;
	}
	/* The floors' leftover, one KV each, to heads that have room. */
	for (uint32_t j = i; j < heads && given < rest; j++) {
		h = o[j].head;
		if (kept[h] < len[h]) {
			kept[h]++;
			given++;
		}
	}
}

/* PyramidKV's floor(k_l) for layer @layer, as policies.c computes it. */
static uint32_t pyramidkv_layer(const struct sim_evict *ev, uint32_t tokens,
				uint32_t layer)
{
	uint32_t b = sub_sat(kvc_policy_keep_tokens(ev->pol, tokens),
			     protected_tokens(ev, tokens));
	double k_min, k_max;

	if (ev->layers == 1)
		return b;
	k_min = b / ev->p.pyramid_beta;
	k_max = 2.0 * b - k_min;
	return budget_floor(k_max - layer * (k_max - k_min) / (ev->layers - 1));
}

/* PyramidInfer's floor(rho_l * n) for layer @layer, as policies.c. */
static uint32_t pyramidinfer_layer(const struct sim_evict *ev, uint32_t tokens,
				   uint32_t layer)
{
	uint32_t n = tokens - protected_tokens(ev, tokens);
	double rho = ev->p.pyramid_rho;
	double rho_l =
		(1 - rho) * (cos(M_PI * layer / ev->layers) + 1) / 2 + rho;

	return budget_floor(rho_l * n);
}

/*
 * The sinks and the recent window (the protected window, or the policy's
 * window when longer) of a sequence of @tokens tokens.
 */
static uint32_t window_budget(const struct sim_evict *ev, uint32_t tokens)
{
	uint64_t recent = ev->p.window_tokens > ev->p.protected_window ?
				  ev->p.window_tokens :
				  ev->p.protected_window;
	uint64_t n = ev->p.sinks + recent;

	return n < tokens ? (uint32_t)n : tokens;
}

/**
 * sim_evict_keep() - How many KVs each head keeps after a compression.
 * @ev: the model.
 * @tokens: tokens the sequence has seen (its logical length T).
 * @len: KVs each head holds now, layer-major.
 * @w: the request's head weights (kvcompress only).
 * @kept: set per head, never above @len.
 */
void sim_evict_keep(const struct sim_evict *ev, uint32_t tokens,
		    const uint32_t *len, const float *w, uint32_t *kept)
{
	uint32_t prot = protected_tokens(ev, tokens), l, h, budget = 0;

	if (ev->kind == SIM_KEEP_KVCOMPRESS) {
		keep_kvcompress(ev, tokens, len, w, kept);
		return;
	}
	for (l = 0; l < ev->layers; l++) {
		switch (ev->kind) {
		case SIM_KEEP_UNIFORM:
			budget = kvc_policy_keep_tokens(ev->pol, tokens);
			break;
		case SIM_KEEP_PYRAMIDKV:
			budget = prot + pyramidkv_layer(ev, tokens, l);
			break;
		case SIM_KEEP_PYRAMIDINFER:
			budget = prot + pyramidinfer_layer(ev, tokens, l);
			break;
		case SIM_KEEP_STREAMING:
			budget = window_budget(ev, tokens);
			break;
		case SIM_KEEP_WINDOW:
			budget = ev->windowed[l] ? window_budget(ev, tokens) :
						   UINT32_MAX;
			break;
		default:
			budget = UINT32_MAX;
			break;
		}
		for (h = 0; h < ev->kv_heads; h++) {
			uint32_t t = l * ev->kv_heads + h;

			kept[t] = min_u32(budget, len[t]);
		}
	}
}
