// SPDX-License-Identifier: MIT
/*
 * Byte-level BPE, as GPT-2 and SmolLM2 tokenize (see tokenizer.h).
 *
 * The vocabulary stores tokens with every byte mapped to a printable
 * codepoint (GPT-2's bytes_to_unicode()), and merges as "left right" in
 * that form. At load the merges become a hash map from the ids of a pair
 * to its rank and the id of the merged token, so encoding works on ids
 * only: a piece starts as one id per byte and the lowest-ranked adjacent
 * pair is merged until none is left.
 *
 * Before merging, text is cut at special tokens written literally, then
 * into pieces by the GPT-2 pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * written out by hand over codepoints. With tokenizer.ggml.pre "smollm"
 * (and its kin) every digit is first made a piece of its own, as the
 * Hugging Face tokenizer's Digits(individual_digits) step does.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../alloc/error.h"
#include "gguf.h"
#include "tokenizer.h"

/* ggml token types: control and user-defined tokens are matched literally. */
#define TOKEN_TYPE_CONTROL 3
#define TOKEN_TYPE_USER 4

/* A merge: the pair's rank and the token it makes. */
struct merge {
	uint64_t key; /* left id << 32 | right id; 0 marks a free slot */
	uint32_t rank;
	int32_t id;
};

struct special {
	int32_t id;
	uint32_t len;
	const char *s;
};

/**
 * struct kvc_tokenizer - A loaded byte-level BPE tokenizer.
 * @nr_vocab: tokens.
 * @piece_off: offset of each token's raw bytes in @blob (nr_vocab + 1).
 * @blob: every token's raw (unmapped) bytes, back to back.
 * @byte_id: the token of each single byte, or -1.
 * @merges: open-addressed map of the merges; @merge_mask + 1 slots.
 * @merge_mask: slots - 1 (a power of two minus one).
 * @specials: the literal tokens, longest first.
 * @nr_specials: their count.
 * @special_first: which bytes start a special token.
 * @split_digits: every digit is a piece of its own.
 * @bos: the BOS id or -1.
 * @eos: the EOS id or -1.
 */
struct kvc_tokenizer {
	uint32_t nr_vocab;
	uint32_t *piece_off;
	char *blob;
	int32_t byte_id[256];
	struct merge *merges;
	uint64_t merge_mask;
	struct special *specials;
	uint32_t nr_specials;
	bool special_first[256];
	bool split_digits;
	int32_t bos;
	int32_t eos;
};

/* ------------------------------------------------------------------ */
/* UTF-8 and the byte mapping */

/* GPT-2: printable Latin-1 bytes stand for themselves, the rest 256 + i. */
static void byte_map(uint32_t cp_of[256])
{
	uint32_t b, extra = 0;

	for (b = 0; b < 256; b++) {
		if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
		    (b >= 174 && b <= 255))
			cp_of[b] = b;
		else
			cp_of[b] = 256 + extra++;
	}
}

static size_t utf8_put(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * The codepoint at @s (of @len bytes) and its length in bytes. Invalid,
 * overlong or truncated sequences give one byte, as codepoint -1.
 */
static size_t utf8_get(const unsigned char *s, size_t len, int32_t *cp)
{
	uint32_t c = s[0], v, min;
	size_t n, i;

	if (c < 0x80) {
		*cp = (int32_t)c;
		return 1;
	}
	if ((c & 0xe0) == 0xc0) {
		n = 2, v = c & 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3, v = c & 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4, v = c & 0x07, min = 0x10000;
	} else {
		*cp = -1;
		return 1;
	}
	if (n > len) {
		*cp = -1;
		return 1;
	}
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			*cp = -1;
			return 1;
		}
		v = v << 6 | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
		*cp = -1;
		return 1;
	}
	*cp = (int32_t)v;
	return n;
}

/* ------------------------------------------------------------------ */
/* Character classes of the pre-tokenizer */

enum cls { CLS_SPACE, CLS_LETTER, CLS_DIGIT, CLS_OTHER };

static bool is_space(int32_t c)
{
	return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xa0 ||
	       c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
	       c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/*
 * Non-ASCII codepoints that are neither letters nor numbers: punctuation,
 * symbols, marks, emoji (numbers are sorted out first). Everything else
 * above ASCII counts as a letter, which is what the scripts of real text
 * need.
 */
static bool is_other_unicode(int32_t c)
{
	int32_t o = c & 0x7f;

	/* The Indic blocks share a layout: signs and vowel marks, dandas. */
	if (c >= 0x900 && c <= 0xdff)
		return o <= 3 || (o >= 0x3a && o <= 0x4f && o != 0x3d) ||
		       (o >= 0x51 && o <= 0x57) || (o >= 0x62 && o <= 0x65) ||
		       o == 0x70;
	/* Hebrew and Arabic points and punctuation, Thai vowel signs. */
	if ((c >= 0x591 && c <= 0x5c7) || c == 0x5f3 || c == 0x5f4 ||
	    (c >= 0x600 && c <= 0x61f) || (c >= 0x64b && c <= 0x65f) ||
	    (c >= 0x66a && c <= 0x66d) || c == 0x670 || c == 0x6d4 ||
	    (c >= 0x6d6 && c <= 0x6ed && c != 0x6e5 && c != 0x6e6) ||
	    c == 0xe31 || (c >= 0xe34 && c <= 0xe3a) || c == 0xe3f ||
	    (c >= 0xe47 && c <= 0xe4f) || c == 0xe5a || c == 0xe5b ||
	    (c >= 0x1ab0 && c <= 0x1aff) || (c >= 0x1dc0 && c <= 0x1dff) ||
	    (c >= 0xfe20 && c <= 0xfe2f))
		return true;
	if (c < 0xc0)
		return c != 0xaa && c != 0xb5 && c != 0xba; /* ª µ º */
	return c == 0xd7 || c == 0xf7 || (c >= 0x300 && c <= 0x36f) ||
	       (c >= 0x200b && c <= 0x200f) || (c >= 0x2010 && c <= 0x2027) ||
	       (c >= 0x2030 && c <= 0x205e) || (c >= 0x2060 && c <= 0x206f) ||
	       (c >= 0x20a0 && c <= 0x20ff) ||
	       (c >= 0x2100 && c <= 0x214f && c != 0x2102 && c != 0x2107 &&
		!(c >= 0x210a && c <= 0x2113) && c != 0x2115 &&
		!(c >= 0x2119 && c <= 0x211d) && c != 0x2124 && c != 0x2126 &&
		c != 0x2128 && !(c >= 0x212a && c <= 0x212d) &&
		!(c >= 0x212f && c <= 0x2139) &&
		!(c >= 0x213c && c <= 0x213f) &&
		!(c >= 0x2145 && c <= 0x2149) && c != 0x214e) ||
	       (c >= 0x2190 && c <= 0x2bff) || (c >= 0x2e00 && c <= 0x2e7f) ||
	       (c >= 0x3001 && c <= 0x3004) || (c >= 0x3008 && c <= 0x3020) ||
	       c == 0x3030 || c == 0x303d || c == 0x30fb ||
	       (c >= 0xfe00 && c <= 0xfe0f) || (c >= 0xfe10 && c <= 0xfe1f) ||
	       (c >= 0xfe30 && c <= 0xfe6f) || c == 0xfeff ||
	       (c >= 0xff01 && c <= 0xff0f) || (c >= 0xff1a && c <= 0xff20) ||
	       (c >= 0xff3b && c <= 0xff40) || (c >= 0xff5b && c <= 0xff65) ||
	       (c >= 0xffe0 && c <= 0xffef) || (c >= 0x1f000 && c <= 0x1faff) ||
	       (c >= 0xe0000 && c <= 0xe007f);
}

/* Non-ASCII numbers (\p{N}): the common digits, fractions, numerals. */
static bool is_number_unicode(int32_t c)
{
	return c == 0xb2 || c == 0xb3 || c == 0xb9 ||
	       (c >= 0xbc && c <= 0xbe) || (c >= 0x660 && c <= 0x669) ||
	       (c >= 0x6f0 && c <= 0x6f9) || (c >= 0x966 && c <= 0x96f) ||
	       (c >= 0x9e6 && c <= 0x9ef) || c == 0x2070 ||
	       (c >= 0x2074 && c <= 0x2079) || (c >= 0x2080 && c <= 0x2089) ||
	       (c >= 0x2150 && c <= 0x2182) || (c >= 0x2185 && c <= 0x2189) ||
	       (c >= 0x2460 && c <= 0x249b) || (c >= 0x24ea && c <= 0x24ff) ||
	       (c >= 0x2776 && c <= 0x2793) || c == 0x3007 ||
	       (c >= 0x3021 && c <= 0x3029) || (c >= 0xff10 && c <= 0xff19);
}

static enum cls cls_of(int32_t c)
{
	if (c < 0)
		return CLS_OTHER;
	if (is_space(c))
		return CLS_SPACE;
	if (c < 0x80) {
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
			return CLS_LETTER;
		if (c >= '0' && c <= '9')
			return CLS_DIGIT;
		return CLS_OTHER;
	}
	if (is_number_unicode(c))
		return CLS_DIGIT;
	return is_other_unicode(c) ? CLS_OTHER : CLS_LETTER;
}

/* ------------------------------------------------------------------ */
/* Hash maps */

static uint64_t hash_bytes(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t hash_u64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static uint64_t table_slots(uint64_t n)
{
	uint64_t slots = 16;

	while (slots < 2 * n)
		slots *= 2;
	return slots;
}

/* The token strings as stored, for the lookups of the load only. */
struct vocab_map {
	const struct kvc_gguf_str *str;
	int32_t *slot; /* id + 1; 0 = free */
	uint64_t mask;
};

static int32_t vocab_find(const struct vocab_map *m, const char *s, size_t len)
{
	uint64_t i = hash_bytes(s, len) & m->mask;

	for (; m->slot[i]; i = (i + 1) & m->mask) {
		const struct kvc_gguf_str *t = &m->str[m->slot[i] - 1];

		if (t->len == len && !memcmp(t->s, s, len))
			return m->slot[i] - 1;
	}
	return -1;
}

static const struct merge *merge_find(const struct kvc_tokenizer *t, int32_t a,
				      int32_t b)
{
	uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
	uint64_t i = hash_u64(key) & t->merge_mask;

	/* Ids are below 2^31, so key 0 would be the pair (0, 0): shifted. */
	key++;
	for (; t->merges[i].key; i = (i + 1) & t->merge_mask)
		if (t->merges[i].key == key)
			return &t->merges[i];
	return NULL;
}

static void merge_add(struct kvc_tokenizer *t, int32_t a, int32_t b,
		      uint32_t rank, int32_t id)
{
	uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
	uint64_t i = hash_u64(key) & t->merge_mask;

	key++;
	for (; t->merges[i].key; i = (i + 1) & t->merge_mask)
		if (t->merges[i].key == key)
			return; /* a repeated merge keeps its first rank */
	t->merges[i] = (struct merge){ key, rank, id };
}

/* ------------------------------------------------------------------ */
/* Loading */

void kvc_tok_free(struct kvc_tokenizer *t)
{
	if (!t)
		return;
	free(t->piece_off);
	free(t->blob);
	free(t->merges);
	free(t->specials);
	free(t);
}

static const struct kvc_gguf_kv *find_array(const struct kvc_gguf *g,
					    const char *key, bool *bad)
{
	const struct kvc_gguf_kv *kv = kvc_gguf_find(g, key);

	*bad = kv && kv->type != KVC_GGUF_ARRAY;
	return *bad ? NULL : kv;
}

static bool is_literal(const struct kvc_gguf_kv *types, uint64_t i,
		       const struct kvc_gguf_str *s)
{
	int32_t type;

	if (types) {
		const uint8_t *b = types->data + 4 * i;

		/* Little-endian in the file, whatever the host. */
		type = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 |
				 (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
		return type == TOKEN_TYPE_CONTROL || type == TOKEN_TYPE_USER;
	}
	/* No types: the <|...|> convention of chat and end-of-text tokens. */
	return s->len > 4 && s->s[0] == '<' && s->s[1] == '|' &&
	       s->s[s->len - 2] == '|' && s->s[s->len - 1] == '>';
}

static int cmp_special(const void *a, const void *b)
{
	const struct special *x = a, *y = b;

	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Raw bytes of every token; the literal ones are kept as written. */
static int load_pieces(struct kvc_tokenizer *t, const struct kvc_gguf_str *str,
		       const struct kvc_gguf_kv *types)
{
	uint32_t cp_of[256], i;
	int16_t byte_of[324];
	size_t total = 0, at = 0, k, n;
	int32_t cp;

	byte_map(cp_of);
	for (i = 0; i < 324; i++)
		byte_of[i] = -1;
	for (i = 0; i < 256; i++)
		byte_of[cp_of[i]] = (int16_t)i;
	for (i = 0; i < t->nr_vocab; i++)
		total += str[i].len; /* unmapping never lengthens */
	if (total > UINT32_MAX)
		return kvc_err(-EINVAL, "tokenizer: %zu bytes of tokens",
			       total);
	t->piece_off = malloc(((size_t)t->nr_vocab + 1) * sizeof(uint32_t));
	t->blob = malloc(total ? total : 1);
	if (!t->piece_off || !t->blob)
		return kvc_err(-ENOMEM, "tokenizer: no memory");
	for (i = 0; i < t->nr_vocab; i++) {
		const unsigned char *s = (const unsigned char *)str[i].s;

		t->piece_off[i] = (uint32_t)at;
		if (is_literal(types, i, &str[i])) {
			memcpy(t->blob + at, s, str[i].len);
			at += str[i].len;
			continue;
		}
		for (k = 0; k < str[i].len; k += n) {
			n = utf8_get(s + k, str[i].len - k, &cp);
			if (cp >= 0 && cp < 324 && byte_of[cp] >= 0) {
				t->blob[at++] = (char)byte_of[cp];
			} else {
				/* not a mapped byte: keep its text */
				memcpy(t->blob + at, s + k, n);
				at += n;
			}
		}
	}
	t->piece_off[t->nr_vocab] = (uint32_t)at;
	return 0;
}

static int load_specials(struct kvc_tokenizer *t,
			 const struct kvc_gguf_str *str,
			 const struct kvc_gguf_kv *types)
{
	uint32_t i, n = 0;

	for (i = 0; i < t->nr_vocab; i++)
		if (str[i].len && is_literal(types, i, &str[i]))
			n++;
	t->specials = calloc(n ? n : 1, sizeof(*t->specials));
	if (!t->specials)
		return kvc_err(-ENOMEM, "tokenizer: no memory");
	for (i = 0; i < t->nr_vocab; i++) {
		if (!str[i].len || !is_literal(types, i, &str[i]))
			continue;
		t->specials[t->nr_specials++] =
			(struct special){ (int32_t)i, (uint32_t)str[i].len,
					  t->blob + t->piece_off[i] };
		t->special_first[(unsigned char)str[i].s[0]] = true;
	}
	qsort(t->specials, t->nr_specials, sizeof(*t->specials), cmp_special);
	return 0;
}

static int load_merges(struct kvc_tokenizer *t, const struct kvc_gguf *g,
		       const struct kvc_gguf_kv *kv, const struct vocab_map *vm)
{
	struct kvc_gguf_str m;
	char buf[512];
	uint64_t i, nr = kv ? kv->count : 0;
	int32_t a, b, ab;
	const char *sp;
	size_t la;
	int err;

	if (kv && kv->arr_type != KVC_GGUF_STRING)
		return kvc_err(
			-EINVAL,
			"tokenizer.ggml.merges is not an array of strings");
	if (nr > UINT32_MAX)
		return kvc_err(-EINVAL, "tokenizer.ggml.merges: %llu merges",
			       (unsigned long long)nr);
	t->merge_mask = table_slots(nr) - 1;
	t->merges = calloc(t->merge_mask + 1, sizeof(*t->merges));
	if (!t->merges)
		return kvc_err(-ENOMEM, "tokenizer: no memory");
	for (i = 0; i < nr; i++) {
		err = kvc_gguf_arr_str(g, kv, i, &m);
		if (err)
			return err;
		sp = m.len ? memchr(m.s + 1, ' ', m.len - 1) : NULL;
		if (!sp || m.len - 1 > sizeof(buf))
			return kvc_err(
				-EINVAL,
				"tokenizer.ggml.merges[%llu] is not \"a b\"",
				(unsigned long long)i);
		la = (size_t)(sp - m.s);
		a = vocab_find(vm, m.s, la);
		b = vocab_find(vm, sp + 1, m.len - la - 1);
		memcpy(buf, m.s, la);
		memcpy(buf + la, sp + 1, m.len - la - 1);
		ab = vocab_find(vm, buf, m.len - 1);
		/* A merge whose parts or result are not tokens cannot apply. */
		if (a >= 0 && b >= 0 && ab >= 0)
			merge_add(t, a, b, (uint32_t)i, ab);
	}
	return 0;
}

static int32_t special_id(const struct kvc_gguf *g, const char *key,
			  uint32_t nr_vocab)
{
	uint32_t id;

	if (kvc_gguf_get_u32(g, key, &id) || id >= nr_vocab)
		return -1;
	return (int32_t)id;
}

/* The pre-tokenizers that cut digits one by one (llama.cpp's names). */
static bool pre_splits_digits(const struct kvc_gguf *g)
{
	static const char *const names[] = { "smollm",	  "starcoder", "refact",
					     "command-r", "codeshell", "exaone",
					     "minerva-7b" };
	struct kvc_gguf_str pre;
	size_t i;

	if (kvc_gguf_get_str(g, "tokenizer.ggml.pre", &pre))
		return false;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (pre.len == strlen(names[i]) &&
		    !memcmp(pre.s, names[i], pre.len))
			return true;
	return false;
}

static int load(struct kvc_tokenizer *t, const struct kvc_gguf *g,
		struct kvc_gguf_str *str, struct vocab_map *vm,
		const struct kvc_gguf_kv *tokens)
{
	const struct kvc_gguf_kv *types, *merges;
	uint32_t cp_of[256], i;
	char buf[4];
	bool bad;
	int err;

	types = find_array(g, "tokenizer.ggml.token_type", &bad);
	if (bad || (types && (types->count != t->nr_vocab ||
			      (types->arr_type != KVC_GGUF_I32 &&
			       types->arr_type != KVC_GGUF_U32))))
		return kvc_err(-EINVAL,
			       "tokenizer.ggml.token_type is not %u i32 values",
			       t->nr_vocab);
	merges = find_array(g, "tokenizer.ggml.merges", &bad);
	if (bad)
		return kvc_err(-EINVAL,
			       "tokenizer.ggml.merges is not an array");

	for (i = 0; i < t->nr_vocab; i++) {
		err = kvc_gguf_arr_str(g, tokens, i, &str[i]);
		if (err)
			return err;
	}
	for (i = 0; i < t->nr_vocab; i++) {
		uint64_t h = hash_bytes(str[i].s, str[i].len) & vm->mask;

		while (vm->slot[h])
			h = (h + 1) & vm->mask;
		vm->slot[h] = (int32_t)i + 1;
	}
	/* A repeated token string resolves to its first id (lowest slot). */
	byte_map(cp_of);
	for (i = 0; i < 256; i++)
		t->byte_id[i] = vocab_find(vm, buf, utf8_put(cp_of[i], buf));

	err = load_pieces(t, str, types);
	if (!err)
		err = load_specials(t, str, types);
	if (!err)
		err = load_merges(t, g, merges, vm);
	if (err)
		return err;
	t->split_digits = pre_splits_digits(g);
	t->bos = special_id(g, "tokenizer.ggml.bos_token_id", t->nr_vocab);
	t->eos = special_id(g, "tokenizer.ggml.eos_token_id", t->nr_vocab);
	return 0;
}

int kvc_tok_load(const struct kvc_gguf *g, struct kvc_tokenizer **out)
{
	const struct kvc_gguf_kv *tokens;
	struct kvc_gguf_str model;
	struct kvc_tokenizer *t;
	struct vocab_map vm = { 0 };
	int err;

	*out = NULL;
	if (kvc_gguf_get_str(g, "tokenizer.ggml.model", &model))
		return kvc_err(-EINVAL, "no tokenizer.ggml.model string");
	if (model.len != 4 || memcmp(model.s, "gpt2", 4))
		return kvc_err(
			-EINVAL,
			"tokenizer.ggml.model \"%.*s\": only \"gpt2\" (byte-level BPE) is supported",
			(int)(model.len > 64 ? 64 : model.len), model.s);
	tokens = kvc_gguf_find(g, "tokenizer.ggml.tokens");
	if (!tokens || tokens->type != KVC_GGUF_ARRAY ||
	    tokens->arr_type != KVC_GGUF_STRING || !tokens->count ||
	    tokens->count > INT32_MAX)
		return kvc_err(
			-EINVAL,
			"tokenizer.ggml.tokens is not a non-empty array of strings");

	t = calloc(1, sizeof(*t));
	if (!t)
		return kvc_err(-ENOMEM, "tokenizer: no memory");
	t->nr_vocab = (uint32_t)tokens->count;
	vm.mask = table_slots(t->nr_vocab) - 1;
	vm.str = calloc(t->nr_vocab, sizeof(*vm.str));
	vm.slot = calloc(vm.mask + 1, sizeof(*vm.slot));
	if (!vm.str || !vm.slot)
		err = kvc_err(-ENOMEM, "tokenizer: no memory");
	else
		err = load(t, g, (struct kvc_gguf_str *)vm.str, &vm, tokens);
	free((void *)vm.str);
	free(vm.slot);
	if (err) {
		kvc_tok_free(t);
		return err;
	}
	*out = t;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Encoding */

struct ids {
	int32_t *v;
	uint32_t n;
	uint32_t cap;
};

static int ids_push(struct ids *o, int32_t id)
{
	int32_t *v;

	if (o->n == o->cap) {
		if (o->cap >= UINT32_MAX / 2)
			return -ENOMEM;
		o->cap = o->cap ? 2 * o->cap : 64;
		v = realloc(o->v, (size_t)o->cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		o->v = v;
	}
	o->v[o->n++] = id;
	return 0;
}

/*
 * Merge the lowest-ranked adjacent pair until no pair is a merge. Pieces
 * are words, so the quadratic scan is short; @sym is scratch of @len.
 */
static int bpe(const struct kvc_tokenizer *t, const unsigned char *s,
	       size_t len, int32_t *sym, struct ids *out)
{
	size_t n = 0, i, best_i;
	const struct merge *m, *best;
	int32_t left, right;
	int err;

	for (i = 0; i < len; i++)
		if (t->byte_id[s[i]] >= 0)
			sym[n++] =
				t->byte_id[s[i]]; /* else: no way to say it */
	while (n > 1) {
		best = NULL;
		best_i = 0;
		for (i = 0; i + 1 < n; i++) {
			m = merge_find(t, sym[i], sym[i + 1]);
			if (m && (!best || m->rank < best->rank)) {
				best = m;
				best_i = i;
			}
		}
		if (!best)
			break;
		/*
		 * Merge every occurrence of this pair, left to right: equal
		 * ranks go leftmost first, and the first one is at best_i.
		 */
		left = sym[best_i];
		right = sym[best_i + 1];
		for (i = best_i; i + 1 < n; i++) {
			if (sym[i] != left || sym[i + 1] != right)
				continue;
			sym[i] = best->id;
			memmove(sym + i + 1, sym + i + 2,
				(n - i - 2) * sizeof(*sym));
			n--;
		}
	}
	for (i = 0; i < n; i++) {
		err = ids_push(out, sym[i]);
		if (err)
			return err;
	}
	return 0;
}

/* Codepoints of a text run, with their classes and byte offsets. */
struct cps {
	enum cls *cls;
	int32_t *cp;
	size_t *off; /* n + 1 */
	size_t n;
};

/*
 * The end of the piece starting at codepoint @i of @c, by the GPT-2
 * pattern, in the run [@i, @end) (digits cut apart already bound it).
 */
static size_t piece_end(const struct cps *c, size_t i, size_t end)
{
	size_t j = i, k;
	enum cls cl;

	if (c->cp[i] == '\'' && i + 1 < end) {
		int32_t a = c->cp[i + 1], b = i + 2 < end ? c->cp[i + 2] : 0;

		if (a == 's' || a == 't' || a == 'm' || a == 'd')
			return i + 2;
		if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') ||
		    (a == 'l' && b == 'l'))
			return i + 3;
	}
	/* " ?X+": an optional space, then a run of one class. */
	if (c->cp[i] == ' ' && i + 1 < end && c->cls[i + 1] != CLS_SPACE)
		j = i + 1;
	cl = c->cls[j];
	if (cl != CLS_SPACE) {
		for (k = j + 1; k < end && c->cls[k] == cl; k++)
			;
		return k;
	}
	/* \s+(?!\S)|\s+: a run of spaces leaves its last to the next word. */
	for (k = i + 1; k < end && c->cls[k] == CLS_SPACE; k++)
		;
	if (k < end && k - i > 1)
		return k - 1;
	return k;
}

static int encode_run(const struct kvc_tokenizer *t, const unsigned char *s,
		      size_t len, struct cps *c, int32_t *sym, struct ids *out)
{
	size_t i, end, seg, n = 0, at;
	int err;

	for (at = 0; at < len; n++) {
		size_t k = utf8_get(s + at, len - at, &c->cp[n]);

		c->cls[n] = cls_of(c->cp[n]);
		c->off[n] = at;
		at += k;
	}
	c->off[n] = len;
	c->n = n;
	for (i = 0; i < n; i = seg) {
		/* The run up to the next digit when digits stand alone. */
		if (t->split_digits && c->cls[i] == CLS_DIGIT) {
			seg = i + 1;
			err = bpe(t, s + c->off[i], c->off[seg] - c->off[i],
				  sym, out);
			if (err)
				return err;
			continue;
		}
		for (seg = i;
		     seg < n && !(t->split_digits && c->cls[seg] == CLS_DIGIT);
		     seg++)
			;
		for (; i < seg; i = end) {
			end = piece_end(c, i, seg);
			err = bpe(t, s + c->off[i], c->off[end] - c->off[i],
				  sym, out);
			if (err)
				return err;
		}
	}
	return 0;
}

/* The special token written at @s, longest first, or NULL. */
static const struct special *special_at(const struct kvc_tokenizer *t,
					const char *s, size_t len)
{
	uint32_t i;

	if (!t->special_first[(unsigned char)s[0]])
		return NULL;
	for (i = 0; i < t->nr_specials; i++)
		if (t->specials[i].len <= len &&
		    !memcmp(t->specials[i].s, s, t->specials[i].len))
			return &t->specials[i];
	return NULL;
}

int kvc_tok_encode(const struct kvc_tokenizer *t, const char *text, size_t len,
		   int32_t **ids, uint32_t *n)
{
	struct ids out = { 0 };
	struct cps c = { 0 };
	const struct special *sp;
	int32_t *sym = NULL;
	size_t start = 0, i = 0;
	int err = 0;

	*ids = NULL;
	*n = 0;
	if (len) {
		c.cls = malloc(len * sizeof(*c.cls));
		c.cp = malloc(len * sizeof(*c.cp));
		c.off = malloc((len + 1) * sizeof(*c.off));
		sym = malloc(len * sizeof(*sym));
		if (!c.cls || !c.cp || !c.off || !sym)
			err = -ENOMEM;
	}
	while (!err && i <= len) {
		sp = i < len ? special_at(t, text + i, len - i) : NULL;
		if (!sp && i < len) {
			i++;
			continue;
		}
		/* The plain text before the special token (or the end). */
		if (i > start)
			err = encode_run(t, (const unsigned char *)text + start,
					 i - start, &c, sym, &out);
		if (!err && sp)
			err = ids_push(&out, sp->id);
		if (!sp)
			break;
		i += sp->len;
		start = i;
	}
	free(c.cls);
	free(c.cp);
	free(c.off);
	free(sym);
	if (err) {
		free(out.v);
		return kvc_err(err, "tokenizer: no memory for %zu bytes", len);
	}
	*ids = out.v;
	*n = out.n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Queries */

const char *kvc_tok_piece(const struct kvc_tokenizer *t, int32_t id,
			  size_t *len)
{
	if (id < 0 || (uint32_t)id >= t->nr_vocab) {
		*len = 0;
		return NULL;
	}
	*len = t->piece_off[id + 1] - t->piece_off[id];
	return t->blob + t->piece_off[id];
}

uint32_t kvc_tok_vocab(const struct kvc_tokenizer *t)
{
	return t->nr_vocab;
}

int32_t kvc_tok_eos(const struct kvc_tokenizer *t)
{
	return t->eos;
}

int32_t kvc_tok_bos(const struct kvc_tokenizer *t)
{
	return t->bos;
}
