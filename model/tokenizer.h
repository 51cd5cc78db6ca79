/* SPDX-License-Identifier: MIT */
/*
 * The byte-level BPE tokenizer stored in a GGUF file (tokenizer.ggml.model
 * "gpt2": tokens, merges, special token ids), as GPT-2 and SmolLM2 use it.
 */
#ifndef KVC_MODEL_TOKENIZER_H
#define KVC_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

struct kvc_tokenizer;

/**
 * kvc_tok_load() - Build the tokenizer of a GGUF file.
 * @g: the file (may be closed afterwards: the tokenizer copies what it
 *     needs).
 * @out: the tokenizer.
 *
 * Return: 0; -EINVAL (no or malformed tokenizer.ggml.* entries, with a
 * message); -ENOMEM.
 */
int kvc_tok_load(const struct kvc_gguf *g, struct kvc_tokenizer **out);

/* Free a tokenizer; NULL is a no-op. */
void kvc_tok_free(struct kvc_tokenizer *t);

/**
 * kvc_tok_encode() - Text to token ids.
 * @t: the tokenizer.
 * @text: UTF-8 bytes (invalid UTF-8 is taken byte by byte).
 * @len: their count.
 * @ids: set to a malloc()ed array of the ids (the caller frees it).
 * @n: set to their count.
 *
 * Special tokens written literally in @text (e.g. "<|im_start|>") become
 * their ids. No BOS is added.
 *
 * Return: 0 or -ENOMEM.
 */
int kvc_tok_encode(const struct kvc_tokenizer *t, const char *text, size_t len,
		   int32_t **ids, uint32_t *n);

/**
 * kvc_tok_piece() - The bytes a token id stands for.
 * @t: the tokenizer.
 * @id: the id.
 * @len: set to the bytes' count.
 *
 * Return: the bytes (owned by @t), or NULL for an id out of range.
 */
const char *kvc_tok_piece(const struct kvc_tokenizer *t, int32_t id,
			  size_t *len);

/* Tokens in the vocabulary. */
uint32_t kvc_tok_vocab(const struct kvc_tokenizer *t);

/* The end-of-sequence id, or -1. */
int32_t kvc_tok_eos(const struct kvc_tokenizer *t);

/* The beginning-of-sequence id, or -1. */
int32_t kvc_tok_bos(const struct kvc_tokenizer *t);

#endif /* KVC_MODEL_TOKENIZER_H */
