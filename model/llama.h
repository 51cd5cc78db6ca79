/* SPDX-License-Identifier: MIT */
/*
 * A Llama-architecture model (SmolLM2, Llama 2/3) on the CPU, read from
 * GGUF: RMSNorm, RoPE on adjacent pairs, GQA attention through the
 * runtime's paged per-head KV cache (so eviction policies really free
 * blocks while it runs), SwiGLU FFN, tied or separate output embedding.
 * Weights stay as stored (F32, F16, Q8_0, Q4_1, Q4_0) and are dequantized
 * row by row inside the matrix-vector products.
 */
#ifndef KVC_MODEL_LLAMA_H
#define KVC_MODEL_LLAMA_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/attention.h>
#include <kvc/kv.h>

#include "gguf.h"

/**
 * struct kvc_llama_config - The model's hyperparameters (from metadata).
 * @layers: llama.block_count.
 * @hidden: llama.embedding_length.
 * @ffn: llama.feed_forward_length.
 * @q_heads: llama.attention.head_count.
 * @kv_heads: llama.attention.head_count_kv (= q_heads when absent).
 * @head_dim: hidden / q_heads.
 * @vocab: rows of token_embd.
 * @context: llama.context_length.
 * @rope_theta: llama.rope.freq_base (10000 when absent).
 * @rms_eps: llama.attention.layer_norm_rms_epsilon (1e-5 when absent).
 * @tied: no output tensor: the token embedding serves.
 */
struct kvc_llama_config {
	uint32_t layers;
	uint32_t hidden;
	uint32_t ffn;
	uint32_t q_heads;
	uint32_t kv_heads;
	uint32_t head_dim;
	uint32_t vocab;
	uint32_t context;
	float rope_theta;
	float rms_eps;
	bool tied;
};

struct kvc_llama;

/**
 * kvc_llama_load() - The model of a GGUF file.
 * @g: the file; must outlive the model (weights are read in place).
 * @out: the model.
 *
 * Checks every tensor's presence, type and dims against the config.
 *
 * Return: 0; -EINVAL (message names the key or tensor); -ENOMEM.
 */
int kvc_llama_load(const struct kvc_gguf *g, struct kvc_llama **out);

/* Free a model; NULL is a no-op. */
void kvc_llama_free(struct kvc_llama *m);

/* The model's config. */
const struct kvc_llama_config *kvc_llama_config(const struct kvc_llama *m);

/**
 * kvc_llama_shape() - The KV cache shape the model needs.
 * @m: the model.
 * @block_size: tokens per block.
 * @dtype: storage type.
 * @out: the shape.
 */
void kvc_llama_shape(const struct kvc_llama *m, uint32_t block_size,
		     enum kvc_dtype dtype, struct kvc_model_shape *out);

/**
 * kvc_llama_forward() - Run tokens through the model.
 * @m: the model.
 * @seq: the sequence (a cache of kvc_llama_shape()); the tokens take its
 *       next positions, and their K and V are appended to it.
 * @tokens: the token ids.
 * @n: their count (>= 1). n > 1 is a prefill (causal attention among
 *     them, through kvc_attn_prefill()); n == 1 a decode step
 *     (kvc_attn_decode()).
 * @obs: for a prefill, which queries add to the eviction metric (NULL =
 *       none).
 * @decode_metric: for a decode step, what attention adds to the metric.
 * @logits: [n][vocab] when @all_logits, else [vocab] for the last token.
 * @all_logits: logits of every token (teacher forcing) or the last only.
 *
 * Return: 0; -EINVAL (bad id, ...); -ENOMEM; the cache's errors (then the
 * sequence may hold some of the tokens: destroy it).
 */
int kvc_llama_forward(struct kvc_llama *m, struct kvc_seq *seq,
		      const int32_t *tokens, uint32_t n,
		      const struct kvc_observe *obs,
		      enum kvc_metric_kind decode_metric, float *logits,
		      bool all_logits);

#endif /* KVC_MODEL_LLAMA_H */
