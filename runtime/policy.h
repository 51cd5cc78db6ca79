/* SPDX-License-Identifier: MIT */
/*
 * Inside an eviction policy: one ops struct per policy (policy.c holds the
 * table and the shared parts; kvcompress.c and policies.c the ops). A
 * policy only chooses; kvc_evict_apply() (evict.c) frees.
 */
#ifndef KVC_RUNTIME_POLICY_H
#define KVC_RUNTIME_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/evict.h>

#include "internal.h"

struct kvc_policy;

/**
 * struct kvc_policy_ops - One eviction policy.
 * @name: as in struct kvc_policy_params.
 * @metric: what it ranks by (%KVC_METRIC_NONE: positions only).
 * @init: check the parameters it uses and precompute (layer budgets ...);
 *        0 or -EINVAL with a message. May be NULL.
 * @select: for every (layer, KV head) table t of @seq, set drop[t][slot]
 *          for the KVs to evict (drop[t] has kvc_seq_len() entries, all
 *          false on entry). Must never drop a protected slot (see
 *          kvc_slot_protected()). 0 or -errno.
 * @exit: free what @init made. May be NULL.
 */
struct kvc_policy_ops {
	const char *name;
	enum kvc_metric_kind metric;
	int (*init)(struct kvc_policy *pol);
	int (*select)(struct kvc_policy *pol, struct kvc_seq *seq, bool **drop);
	void (*exit)(struct kvc_policy *pol);
};

/**
 * struct kvc_policy - A policy instance.
 * @ops: its operations.
 * @p: its parameters (strings copied).
 * @shape: the model shape.
 * @priv: the policy's own state.
 */
struct kvc_policy {
	const struct kvc_policy_ops *ops;
	struct kvc_policy_params p;
	struct kvc_model_shape shape;
	void *priv;
};

/* The ops, one per policy (kvcompress.c, policies.c). */
extern const struct kvc_policy_ops kvc_policy_kvcompress;
extern const struct kvc_policy_ops kvc_policy_full;
extern const struct kvc_policy_ops kvc_policy_streamingllm;
extern const struct kvc_policy_ops kvc_policy_h2o;
extern const struct kvc_policy_ops kvc_policy_snapkv;
extern const struct kvc_policy_ops kvc_policy_pyramidkv;
extern const struct kvc_policy_ops kvc_policy_pyramidinfer;
extern const struct kvc_policy_ops kvc_policy_window;

/**
 * kvc_slot_protected() - Whether a KV may never be evicted.
 * @pol: the policy.
 * @seq: its sequence.
 * @pos: the KV's position.
 *
 * Return: true for the first @sinks and the last @protected_window
 * positions of the sequence.
 */
static inline bool kvc_slot_protected(const struct kvc_policy *pol,
				      const struct kvc_seq *seq, int32_t pos)
{
	return pos < (int32_t)pol->p.sinks ||
	       (int64_t)pos >= (int64_t)seq->tokens - pol->p.protected_window;
}

/**
 * kvc_evict_seq() - Drop the chosen KVs of every head of a sequence.
 * @seq: the sequence.
 * @drop: per table, one flag per slot (true = evict).
 * @ids: room for every block the sequence holds: the freed tails are
 *       gathered here and given back in one pool call.
 * @st: added to (may be NULL).
 *
 * On a device cache, all the moves go to the device in one launch before
 * anything changes.
 *
 * Return: 0, -EFAULT when the pool refuses the free (a bug), or on a
 * device cache the driver's error (nothing changed).
 */
int kvc_evict_seq(struct kvc_seq *seq, bool *const *drop, uint32_t *ids,
		  struct kvc_evict_stats *st);

/**
 * kvc_policy_keep_tokens() - Tokens' worth of KVs a (layer, head) keeps
 * under the rate or max_cache_tokens of @pol, for a sequence of @tokens
 * tokens: the budget the fixed-budget policies share.
 * @pol: the policy.
 * @tokens: the sequence's length.
 *
 * Return: the budget, counting protected tokens.
 */
uint32_t kvc_policy_keep_tokens(const struct kvc_policy *pol, uint32_t tokens);

#endif /* KVC_RUNTIME_POLICY_H */
