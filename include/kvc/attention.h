/* SPDX-License-Identifier: MIT */
/*
 * Attention over the paged KV cache, one layer of one sequence per call:
 * decode (one new query per query head) and prefill (the newest n tokens
 * attend causally to everything their heads hold). Both can add the
 * softmax weights to each key's eviction metric as they go, the way
 * KV-Compress and H2O collect it. The CPU path runs the C reference of the
 * kernels over host block memory.
 */
#ifndef KVC_ATTENTION_H
#define KVC_ATTENTION_H

#include <stdint.h>

#include <kvc/kv.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * enum kvc_metric_kind - How attention weights add up into the metric.
 * @KVC_METRIC_NONE: do not touch the metric.
 * @KVC_METRIC_L2: sum of squared softmax weights (KV-Compress "L2-sum").
 * @KVC_METRIC_L1: sum of softmax weights (H2O's accumulated attention).
 * @KVC_METRIC_AVG: as L1; rankers divide by the number of queries that
 *                  could see the key (known from positions).
 *
 * Each attention step adds, for every key it reads, the term of each
 * query head of the key's GQA group, summed over the group.
 */
enum kvc_metric_kind {
	KVC_METRIC_NONE = 0,
	KVC_METRIC_L2,
	KVC_METRIC_L1,
	KVC_METRIC_AVG,
};

/**
 * struct kvc_observe - Which prefill queries add to the metric, and how.
 * @metric: how weights add up; %KVC_METRIC_NONE leaves the metric alone.
 * @window: only the last @window queries of the prefill add (KVC-w,
 *          SnapKV's observation window); 0 = all of them (KVC-full).
 * @buffer: a query adds to a key only if query_pos - key_pos >= @buffer
 *          (0 = every key it sees).
 * @pool_kernel: 0 or 1 = no pooling; an odd size k = the metric this
 *               prefill adds to key j is the largest of what it would add
 *               to keys j - k/2 .. j + k/2 of the same head (by slot,
 *               cut at the ends of the head), as SnapKV pools.
 */
struct kvc_observe {
	enum kvc_metric_kind metric;
	uint32_t window;
	uint32_t buffer;
	uint32_t pool_kernel;
};

/**
 * kvc_attn_decode() - One decode step of attention for one layer.
 * @seq: the sequence.
 * @layer: the layer.
 * @q: queries, [q_heads][head_dim] floats.
 * @out: outputs, [q_heads][head_dim] floats (may not overlap @q).
 * @metric: what to add to the metric of every key read.
 *
 * Query head h attends, with scale 1/sqrt(head_dim), to every KV that its
 * KV head h / (q_heads / kv_heads) holds in this layer (each head its own
 * length); the new token must already be appended. An empty head gives
 * zeros. With a metric, every key gets the sum over its group of
 * kvc_metric_term(weight).
 *
 * Return: 0, or -EINVAL for bad arguments.
 */
int kvc_attn_decode(struct kvc_seq *seq, uint32_t layer, const float *q,
		    float *out, enum kvc_metric_kind metric);

/**
 * kvc_attn_prefill() - Causal attention of the newest tokens for one layer.
 * @seq: the sequence.
 * @layer: the layer.
 * @n: new tokens; they must be the last @n appended with kvc_seq_append()
 *     and still the last @n KVs of every head (no compression between).
 * @q: queries, [n][q_heads][head_dim] floats.
 * @out: outputs, same layout (may not overlap @q).
 * @obs: which queries add to the metric and how, or NULL for none.
 *
 * The query at position p of query head h attends to the keys of KV head
 * h / (q_heads / kv_heads) whose positions are at most p (older keys the
 * head still holds included), with scale 1/sqrt(head_dim). @n == 0 does
 * nothing.
 *
 * Return: 0, -EINVAL for bad arguments (or when the last @n KVs of a head
 * are not the newest @n tokens), -ENOMEM for want of scratch memory (then
 * nothing is written: neither @out nor any metric).
 */
int kvc_attn_prefill(struct kvc_seq *seq, uint32_t layer, uint32_t n,
		     const float *q, float *out, const struct kvc_observe *obs);

#ifdef __cplusplus
}
#endif
#endif /* KVC_ATTENTION_H */
