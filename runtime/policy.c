// SPDX-License-Identifier: MIT
/*
 * Eviction policies, the shared part: the table of policies by name, the
 * parameter checks every policy needs, what attention should collect for
 * them, when a sequence is due, and kvc_policy_compress(), which brings a
 * device cache's metrics to the host, asks the policy which KVs to drop
 * and hands the choice to the one block path of evict.c. A policy's ops only choose (kvcompress.c, policies.c). Never
 * lets a policy drop a protected KV, and never changes a sequence when it
 * fails for want of memory.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/evict.h>

#include "../alloc/error.h"
#include "device.h"
#include "internal.h"
#include "policy.h"

/*
 * The policies by name. @needs_budget: the policy sizes what it keeps from
 * rate or max_cache_tokens, so exactly one of them must be set; "full"
 * keeps everything and "window" and "streamingllm" keep window_tokens.
 */
static const struct policy_entry {
	const struct kvc_policy_ops *ops;
	bool needs_budget;
} policies[] = {
	{ .ops = &kvc_policy_kvcompress, .needs_budget = true },
	{ .ops = &kvc_policy_full, .needs_budget = false },
	{ .ops = &kvc_policy_streamingllm, .needs_budget = false },
	{ .ops = &kvc_policy_h2o, .needs_budget = true },
	{ .ops = &kvc_policy_snapkv, .needs_budget = true },
	{ .ops = &kvc_policy_pyramidkv, .needs_budget = true },
	{ .ops = &kvc_policy_pyramidinfer, .needs_budget = false },
	{ .ops = &kvc_policy_window, .needs_budget = false },
};

#define NR_POLICIES (sizeof(policies) / sizeof(policies[0]))

void kvc_policy_params_init(struct kvc_policy_params *p)
{
	memset(p, 0, sizeof(*p));
	p->name = "kvcompress";
	p->rate = 8;
	p->max_cache_tokens = 0;
	p->protected_window = 32;
	p->sinks = 0;
	p->compress_once = false;
	p->interval = 0;
	p->metric = KVC_METRIC_L2;
	p->observe_window = 8;
	p->buffer = 0;
	p->pool_kernel = 0;
	p->window_tokens = 1024;
	p->window_layers = NULL;
	p->pyramid_beta = 20;
	p->pyramid_rho = 0.1;
}

static const struct policy_entry *policy_find(const char *name)
{
	size_t i;

	for (i = 0; i < NR_POLICIES; i++)
		if (!strcmp(policies[i].ops->name, name))
			return &policies[i];
	return NULL;
}

/* The checks every policy shares; the ops' init checks the rest. */
static int params_check(const struct kvc_policy_params *p,
			const struct policy_entry *e)
{
	const char *name = e->ops->name;

	if (!(p->rate == 0 || p->rate >= 1) || isinf(p->rate))
		return kvc_err(-EINVAL,
			       "policy %s: rate %g is not 0 (unused) nor a "
			       "finite number >= 1",
			       name, p->rate);
	if (e->needs_budget && p->rate && p->max_cache_tokens)
		return kvc_err(-EINVAL,
			       "policy %s: both rate %g and max_cache_tokens "
			       "%llu are set; set one and make the other 0",
			       name, p->rate,
			       (unsigned long long)p->max_cache_tokens);
	if (e->needs_budget && !p->rate && !p->max_cache_tokens)
		return kvc_err(-EINVAL,
			       "policy %s: neither rate nor max_cache_tokens "
			       "is set; it needs one of them",
			       name);
	if (p->compress_once && p->interval)
		return kvc_err(-EINVAL,
			       "policy %s: interval %u with compress_once: "
			       "compress_once compresses only after prefill",
			       name, p->interval);
	if (p->metric < KVC_METRIC_NONE || p->metric > KVC_METRIC_AVG)
		return kvc_err(-EINVAL, "policy %s: metric kind %d is unknown",
			       name, (int)p->metric);
	if (e->ops->metric != KVC_METRIC_NONE && p->metric == KVC_METRIC_NONE)
		return kvc_err(-EINVAL,
			       "policy %s ranks by attention: metric must not "
			       "be none",
			       name);
	if (p->pool_kernel > 1 && !(p->pool_kernel & 1))
		return kvc_err(-EINVAL,
			       "policy %s: pool kernel %u is not odd (nor 0 "
			       "or 1 for no pooling)",
			       name, p->pool_kernel);
	return 0;
}

int kvc_policy_create(const struct kvc_policy_params *p,
		      const struct kvc_model_shape *shape,
		      struct kvc_policy **out)
{
	const struct policy_entry *e;
	struct kvc_policy *pol;
	int err;

	if (!p || !shape || !out)
		return kvc_err(-EINVAL, "kvc_policy_create: NULL %s",
			       !p     ? "parameters" :
			       !shape ? "shape" :
					"out");
	err = kvc_model_shape_check(shape);
	if (err)
		return err;
	if (!p->name)
		return kvc_err(-EINVAL, "kvc_policy_create: no policy name");
	e = policy_find(p->name);
	if (!e)
		return kvc_err(
			-EINVAL,
			"unknown policy \"%s\": one of kvcompress, full, "
			"streamingllm, h2o, snapkv, pyramidkv, "
			"pyramidinfer, window",
			p->name);
	err = params_check(p, e);
	if (err)
		return err;
	pol = calloc(1, sizeof(*pol));
	if (!pol)
		return kvc_err(-ENOMEM, "out of memory for a policy");
	pol->ops = e->ops;
	pol->p = *p;
	pol->p.name = e->ops->name;
	pol->shape = *shape;
	if (p->window_layers) {
		pol->p.window_layers = strdup(p->window_layers);
		if (!pol->p.window_layers) {
			free(pol);
			return kvc_err(-ENOMEM,
				       "out of memory for a layer list");
		}
	}
	if (pol->ops->init) {
		err = pol->ops->init(pol);
		if (err) {
			free((char *)pol->p.window_layers);
			free(pol);
			return err;
		}
	}
	*out = pol;
	return 0;
}

void kvc_policy_destroy(struct kvc_policy *pol)
{
	if (!pol)
		return;
	if (pol->ops->exit)
		pol->ops->exit(pol);
	free((char *)pol->p.window_layers);
	free(pol);
}

const char *kvc_policy_name(const struct kvc_policy *pol)
{
	return pol->ops->name;
}

enum kvc_metric_kind kvc_policy_decode_metric(const struct kvc_policy *pol)
{
	if (pol->ops->metric == KVC_METRIC_NONE)
		return KVC_METRIC_NONE;
	return pol->p.metric;
}

void kvc_policy_observe(const struct kvc_policy *pol, struct kvc_observe *obs)
{
	memset(obs, 0, sizeof(*obs));
	obs->metric = kvc_policy_decode_metric(pol);
	obs->window = pol->p.observe_window;
	obs->buffer = pol->p.buffer;
	obs->pool_kernel = pol->p.pool_kernel;
}

/*
 * "full" never drops anything. Every other policy compresses right after
 * prefill; with compress_once only then, else every @interval decode
 * steps (block_size when 0: a head then gains at most one block between
 * two compressions).
 */
bool kvc_policy_due(const struct kvc_policy *pol, const struct kvc_seq *seq,
		    uint32_t steps)
{
	uint32_t interval;

	if (pol->ops == &kvc_policy_full)
		return false;
	if (!steps)
		return true;
	if (pol->p.compress_once)
		return false;
	interval = pol->p.interval ? pol->p.interval : pol->shape.block_size;
	return steps % interval == 0;
}

uint32_t kvc_policy_keep_tokens(const struct kvc_policy *pol, uint32_t tokens)
{
	uint64_t prot = (uint64_t)pol->p.sinks + pol->p.protected_window;
	double rest;

	if (prot > tokens)
		prot = tokens;
	if (pol->p.rate > 0) {
		rest = ceil((double)(tokens - prot) / pol->p.rate);
		if (rest > (double)(tokens - prot))
			rest = (double)(tokens - prot);
		return (uint32_t)prot + (uint32_t)rest;
	}
	if (pol->p.max_cache_tokens)
		return pol->p.max_cache_tokens < tokens ?
			       (uint32_t)pol->p.max_cache_tokens :
			       tokens;
	return tokens;
}

/* -EFAULT when the policy dropped a protected KV: a bug in the policy. */
static int protected_check(const struct kvc_policy *pol,
			   const struct kvc_seq *seq, bool *const *drop)
{
	const struct kvc_kv *kv = seq->kv;
	uint32_t bs = kv->shape.block_size, t, i;

	for (t = 0; t < kv->shape.layers * kv->shape.kv_heads; t++) {
		const struct kvc_head_table *h = &seq->tables[t];

		for (i = 0; i < h->len; i++) {
			const struct kvc_slot_meta *m;

			if (!drop[t][i])
				continue;
			m = &kv->meta[(uint64_t)h->blocks[i / bs] * bs +
				      i % bs];
			if (kvc_slot_protected(pol, seq, m->pos))
				return kvc_err(
					-EFAULT,
					"policy %s dropped the protected KV "
					"at position %d (layer %u, head %u) "
					"of sequence %u: a bug in the policy",
					pol->ops->name, m->pos,
					t / kv->shape.kv_heads,
					t % kv->shape.kv_heads, seq->id);
		}
	}
	return 0;
}

int kvc_policy_compress(struct kvc_policy *pol, struct kvc_seq *seq,
			struct kvc_evict_stats *st)
{
	struct kvc_evict_stats sum = { 0 };
	const struct kvc_model_shape *s;
	uint64_t nr_kvs = 0, nr_blocks = 0, at = 0;
	bool **drop = NULL, *flags = NULL;
	uint32_t *ids = NULL, nr, t;
	int err;

	if (st)
		memset(st, 0, sizeof(*st));
	if (!pol || !seq)
		return kvc_err(-EINVAL, "kvc_policy_compress: NULL %s",
			       pol ? "sequence" : "policy");
	s = &seq->kv->shape;
	if (s->layers != pol->shape.layers ||
	    s->kv_heads != pol->shape.kv_heads ||
	    s->block_size != pol->shape.block_size)
		return kvc_err(-EINVAL,
			       "kvc_policy_compress: the sequence's cache has "
			       "%u layers x %u KV heads, block %u; the policy "
			       "was made for %u x %u, block %u",
			       s->layers, s->kv_heads, s->block_size,
			       pol->shape.layers, pol->shape.kv_heads,
			       pol->shape.block_size);
	nr = s->layers * s->kv_heads;
	for (t = 0; t < nr; t++) {
		nr_kvs += seq->tables[t].len;
		nr_blocks += seq->tables[t].nr_blocks;
	}
	/* Everything the apply needs, before anything changes. */
	drop = calloc(nr, sizeof(*drop));
	flags = calloc(nr_kvs ? nr_kvs : 1, sizeof(*flags));
	ids = malloc((nr_blocks ? nr_blocks : 1) * sizeof(*ids));
	if (!drop || !flags || !ids) {
		err = kvc_err(-ENOMEM,
			      "kvc_policy_compress: out of memory for the "
			      "drop flags of %llu KVs",
			      (unsigned long long)nr_kvs);
		goto out;
	}
	for (t = 0; t < nr; t++) {
		drop[t] = flags + at;
		at += seq->tables[t].len;
	}
	/* Policies read the metrics on the host: bring them from the device. */
	err = kvc_dev_meta_sync(seq);
	if (err)
		goto out;
	err = pol->ops->select ? pol->ops->select(pol, seq, drop) : 0;
	if (err)
		goto out;
	err = protected_check(pol, seq, drop);
	if (err)
		goto out;
	err = kvc_evict_seq(seq, drop, ids, &sum);
	if (!err && st)
		*st = sum;
out:
	free(ids);
	free(flags);
	free(drop);
	return err;
}
