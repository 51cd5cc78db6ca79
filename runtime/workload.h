/* SPDX-License-Identifier: MIT */
/*
 * The synthetic workload: seeded Q, K and V with the per-head structure
 * real models show, so that per-head compression has something real to
 * find. Deterministic: the same (seed, sequence, position) gives the same
 * vectors, however the run is cut into calls.
 */
#ifndef KVC_RUNTIME_WORKLOAD_H
#define KVC_RUNTIME_WORKLOAD_H

#include <stdint.h>

#include <kvc/kv.h>

/**
 * enum kvc_head_kind - How a synthetic KV head attends.
 * @KVC_HEAD_SINK: most attention on the first few tokens.
 * @KVC_HEAD_LOCAL: most attention on the last few tokens (recency).
 * @KVC_HEAD_HEAVY: most attention on a few scattered heavy-hitter tokens.
 * @KVC_HEAD_DIFFUSE: attention spread over everything.
 */
enum kvc_head_kind {
	KVC_HEAD_SINK,
	KVC_HEAD_LOCAL,
	KVC_HEAD_HEAVY,
	KVC_HEAD_DIFFUSE,
};

struct kvc_synth;

/**
 * kvc_synth_create() - A generator for a shape.
 * @shape: the model shape.
 * @seed: the seed; each (layer, KV head) gets a kind from it.
 * @out: set to the generator.
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
int kvc_synth_create(const struct kvc_model_shape *shape, uint64_t seed,
		     struct kvc_synth **out);

/**
 * kvc_synth_destroy() - Free a generator.
 * @s: the generator, or NULL.
 */
void kvc_synth_destroy(struct kvc_synth *s);

/**
 * kvc_synth_head_kind() - The kind of a (layer, KV head).
 * @s: the generator.
 * @layer: the layer.
 * @head: the KV head.
 *
 * Return: the kind.
 */
enum kvc_head_kind kvc_synth_head_kind(const struct kvc_synth *s,
				       uint32_t layer, uint32_t head);

/**
 * kvc_synth_kv() - K and V of tokens [@pos, @pos + @n) of a sequence.
 * @s: the generator.
 * @seq: the sequence's number.
 * @pos: first position.
 * @n: tokens.
 * @k: filled, [layers][kv_heads][n][head_dim] (kvc_seq_append()'s layout).
 * @v: filled, same layout.
 */
void kvc_synth_kv(const struct kvc_synth *s, uint32_t seq, uint32_t pos,
		  uint32_t n, float *k, float *v);

/**
 * kvc_synth_q() - Queries of tokens [@pos, @pos + @n) for one layer.
 * @s: the generator.
 * @seq: the sequence's number.
 * @layer: the layer.
 * @pos: first position.
 * @n: tokens.
 * @q: filled, [n][q_heads][head_dim] (kvc_attn_prefill()'s layout; n = 1
 *     is kvc_attn_decode()'s).
 */
void kvc_synth_q(const struct kvc_synth *s, uint32_t seq, uint32_t layer,
		 uint32_t pos, uint32_t n, float *q);

#endif /* KVC_RUNTIME_WORKLOAD_H */
