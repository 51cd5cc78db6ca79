/* SPDX-License-Identifier: MIT */
/*
 * Eviction: policies choose, per (layer, KV head) of a sequence, which KVs
 * to drop; one shared path then moves each head's survivors to the front
 * (KV-Compress's MoveCache: K, V, metric and position move together),
 * frees the trailing blocks to the pool and shortens the head. Heads lose
 * different numbers of KVs; memory comes back in whole blocks.
 */
#ifndef KVC_EVICT_H
#define KVC_EVICT_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/attention.h>
#include <kvc/kv.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * struct kvc_policy_params - What a policy is asked to do.
 * @name: "kvcompress", "full", "streamingllm", "h2o", "snapkv",
 *        "pyramidkv", "pyramidinfer" or "window".
 * @rate: compression rate (>= 1): keep about 1/@rate of the unprotected
 *        KVs; 0 when @max_cache_tokens is used instead.
 * @max_cache_tokens: keep at most this many tokens' worth per sequence,
 *                    counted per (layer, KV head) as KV-Compress does
 *                    (ceil(M * L * H / block_size) blocks); 0 = use @rate.
 * @protected_window: the last tokens of the sequence are never evicted.
 * @sinks: the first tokens of the sequence are never evicted.
 * @compress_once: compress only at the first opportunity after prefill;
 *                 else keep compressing during decode.
 * @interval: during decode, compress every @interval steps; 0 = every
 *            block_size steps (ignored with @compress_once, which
 *            compresses only after prefill).
 * @metric: how the metric the policy ranks by is collected.
 * @observe_window: prefill queries that add to the metric (0 = all).
 * @buffer: prefill buffer (see struct kvc_observe).
 * @pool_kernel: prefill max-pool kernel (see struct kvc_observe).
 * @window_tokens: "window": tokens each windowed layer keeps;
 *                 "streamingllm": recent tokens kept besides the sinks.
 * @window_layers: "window": which layers keep only a window, as a list
 *                 of layer indices and ranges ("0-7,12"); NULL = all.
 * @pyramid_beta: "pyramidkv": beta of its budget formula (default 20).
 * @pyramid_rho: "pyramidinfer": the smallest fraction kept (rho).
 */
struct kvc_policy_params {
	const char *name;
	double rate;
	uint64_t max_cache_tokens;
	uint32_t protected_window;
	uint32_t sinks;
	bool compress_once;
	uint32_t interval;
	enum kvc_metric_kind metric;
	uint32_t observe_window;
	uint32_t buffer;
	uint32_t pool_kernel;
	uint32_t window_tokens;
	const char *window_layers;
	double pyramid_beta;
	double pyramid_rho;
};

struct kvc_policy;

/**
 * kvc_policy_params_init() - Defaults: "kvcompress", rate 8, protected
 * window 32, no sinks, continual compression every block_size steps, L2
 * metric, observation window 8, buffer 0, no pooling, window 1024 tokens,
 * beta 20, rho 0.1.
 * @p: filled.
 */
void kvc_policy_params_init(struct kvc_policy_params *p);

/**
 * kvc_policy_create() - Build a policy from its parameters.
 * @p: the parameters.
 * @shape: the model shape it will serve.
 * @out: set to the policy.
 *
 * Return: 0; -EINVAL with a message for an unknown name or a bad value
 * (rate below 1, both or neither of rate and max_cache_tokens where the
 * policy needs one, an unparsable layer list, ...); -ENOMEM.
 */
int kvc_policy_create(const struct kvc_policy_params *p,
		      const struct kvc_model_shape *shape,
		      struct kvc_policy **out);

/**
 * kvc_policy_destroy() - Free a policy.
 * @pol: the policy, or NULL.
 */
void kvc_policy_destroy(struct kvc_policy *pol);

/**
 * kvc_policy_name() - The policy's name.
 * @pol: the policy.
 *
 * Return: a static string.
 */
const char *kvc_policy_name(const struct kvc_policy *pol);

/**
 * kvc_policy_observe() - What prefill attention should collect for it.
 * @pol: the policy.
 * @obs: filled (metric, window, buffer, pool kernel).
 */
void kvc_policy_observe(const struct kvc_policy *pol, struct kvc_observe *obs);

/**
 * kvc_policy_decode_metric() - What decode attention should add.
 * @pol: the policy.
 *
 * Return: the metric kind (%KVC_METRIC_NONE for policies that rank by
 * position only).
 */
enum kvc_metric_kind kvc_policy_decode_metric(const struct kvc_policy *pol);

/**
 * kvc_policy_due() - Whether a sequence is due for compression.
 * @pol: the policy.
 * @seq: the sequence.
 * @steps: decode steps done since its prefill (0 = just prefilled).
 *
 * Return: true when the policy would compress it now.
 */
bool kvc_policy_due(const struct kvc_policy *pol, const struct kvc_seq *seq,
		    uint32_t steps);

/**
 * struct kvc_evict_stats - What one compression did.
 * @kvs_before: KVs held over all heads before.
 * @kvs_after: KVs held after.
 * @blocks_freed: blocks given back to the pool.
 * @kvs_moved: KVs moved inside their heads (MoveCache).
 */
struct kvc_evict_stats {
	uint64_t kvs_before;
	uint64_t kvs_after;
	uint64_t blocks_freed;
	uint64_t kvs_moved;
};

/**
 * kvc_policy_compress() - Compress one sequence now.
 * @pol: the policy.
 * @seq: the sequence.
 * @st: filled (may be NULL).
 *
 * The policy chooses the KVs to drop per (layer, KV head); protected
 * tokens (sinks, the protected window) are never dropped; then every head
 * is compacted in place and its trailing blocks are freed in one pool
 * call per sequence.
 *
 * Return: 0; -EINVAL for a NULL argument or a sequence of another shape;
 * -ENOMEM (nothing changed); -EFAULT when the policy chose a protected KV
 * (nothing changed) or the pool refused the free (both bugs).
 */
int kvc_policy_compress(struct kvc_policy *pol, struct kvc_seq *seq,
			struct kvc_evict_stats *st);

/**
 * kvc_evict_apply() - Drop the chosen KVs of one head and free its tail.
 * @seq: the sequence.
 * @layer: the layer.
 * @head: the KV head.
 * @drop: one flag per slot of the head (kvc_seq_len() of them): true =
 *        evict.
 * @st: added to (may be NULL).
 *
 * The shared block path every policy frees memory through, KV-Compress's
 * MoveCache: walking from the tail, each survivor beyond the new length
 * moves into the lowest dropped slot, so the fewest KVs move (slot order
 * is not kept; K, V, metric and position move together, and attention
 * masks by position); blocks past the new length go back to the pool.
 *
 * Return: 0, or -EINVAL for bad arguments.
 */
int kvc_evict_apply(struct kvc_seq *seq, uint32_t layer, uint32_t head,
		    const bool *drop, struct kvc_evict_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* KVC_EVICT_H */
