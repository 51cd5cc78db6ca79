/* Description: model/tokenizer: byte-level BPE from a GGUF vocabulary: known encodings of a toy vocabulary (merges by rank, GPT-2 pre-tokenization, digits one by one, special tokens), round trips of ASCII, UTF-8, whitespace, digits and invalid bytes, pieces, refused files */
// SPDX-License-Identifier: MIT
/*
 * Tests of the GPT-2 style tokenizer against a toy vocabulary written
 * with the in-memory GGUF writer: the 256 byte tokens (in GPT-2's mapped
 * form, id = byte), a few merges whose results are easy to work out by
 * hand, and three special tokens. The GGUF is closed before encoding, so
 * the tokenizer must own everything it uses.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include "../model/gguf.h"
#include "../model/tokenizer.h"
#include "gguf_writer.h"

/* Tokens after the 256 bytes, in id order. */
static const char *const extra[] = {
	"\xc4\xa0t", /* 256 "Ġt" */
	"he", /* 257 */
	"\xc4\xa0the", /* 258 " the" */
	"ll", /* 259 */
	"hell", /* 260 */
	"hello", /* 261 */
	"\xc4\xa0hello", /* 262 " hello" */
	"\xc4\xa0\xc4\xa0", /* 263 "  " */
	"<|endoftext|>", /* 264 */
	"<|im_start|>", /* 265 */
	"<|im_end|>", /* 266 */
	"in", /* 267 */
	"ing", /* 268 */
	"12", /* 269 */
};

enum {
	T_SP_T = 256,
	T_HE,
	T_SP_THE,
	T_LL,
	T_HELL,
	T_HELLO,
	T_SP_HELLO,
	T_SP_SP,
	T_EOT,
	T_IM_START,
	T_IM_END,
	T_IN,
	T_ING,
	T_12,
	NR_VOCAB
};

/* By rank. */
static const char *const merges[] = {
	"\xc4\xa0 t",
	"h e",
	"\xc4\xa0t he",
	"l l",
	"he ll",
	"hell o",
	"\xc4\xa0 hello",
	"\xc4\xa0 \xc4\xa0",
	"i n",
	"in g",
	"1 2",
};

struct fixture {
	struct kvc_tokenizer *tok; /* pre "smollm": digits one by one */
	struct kvc_tokenizer *tok_plain; /* no pre: digits in runs */
};

/* ------------------------------------------------------------------ */
/* helpers */

/* GPT-2's bytes_to_unicode(), UTF-8 encoded into @out (3 bytes + NUL). */
static void mapped_byte(unsigned b, char *out)
{
	unsigned cp = b, i, extra_nr = 0;

	if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) {
		for (i = 0; i < b; i++)
			if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) ||
			      i >= 174))
				extra_nr++;
		cp = 256 + extra_nr;
	}
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = 0;
	} else {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		out[2] = 0;
	}
}

enum variant {
	V_SMOLLM,
	V_PLAIN,
	V_WRONG_MODEL,
	V_NO_TOKENS,
	V_BAD_TYPES,
	V_BAD_MERGE,
};

/* The toy GGUF as one buffer. */
static uint8_t *toy_gguf(enum variant v, size_t *size)
{
	static char bytes[256][4];
	const char *tokens[NR_VOCAB];
	int32_t types[NR_VOCAB];
	const char *bad_merges[] = { "h e", "nospace" };
	struct gguf_writer *w = gw_new();
	uint8_t *buf = NULL;
	unsigned i;

	assert_non_null(w);
	for (i = 0; i < 256; i++) {
		mapped_byte(i, bytes[i]);
		tokens[i] = bytes[i];
		types[i] = 6; /* byte */
	}
	for (i = 256; i < NR_VOCAB; i++) {
		tokens[i] = extra[i - 256];
		types[i] = 1;
	}
	types[T_EOT] = types[T_IM_START] = types[T_IM_END] = 3;
	gw_add_str(w, "general.architecture", "llama");
	gw_add_str(w, "tokenizer.ggml.model",
		   v == V_WRONG_MODEL ? "llama" : "gpt2");
	if (v != V_PLAIN)
		gw_add_str(w, "tokenizer.ggml.pre", "smollm");
	if (v != V_NO_TOKENS)
		gw_add_arr_str(w, "tokenizer.ggml.tokens", tokens, NR_VOCAB);
	gw_add_arr(w, "tokenizer.ggml.token_type", KVC_GGUF_I32, types,
		   v == V_BAD_TYPES ? NR_VOCAB - 1 : NR_VOCAB);
	if (v == V_BAD_MERGE)
		gw_add_arr_str(w, "tokenizer.ggml.merges", bad_merges, 2);
	else
		gw_add_arr_str(w, "tokenizer.ggml.merges", merges,
			       sizeof(merges) / sizeof(merges[0]));
	gw_add_u32(w, "tokenizer.ggml.bos_token_id", T_EOT);
	gw_add_u32(w, "tokenizer.ggml.eos_token_id", T_IM_END);
	assert_int_equal(gw_finish(w, &buf, size), 0);
	gw_free(w);
	return buf;
}

/* Load the toy tokenizer of @v; the file is gone when this returns. */
static int load_toy(enum variant v, struct kvc_tokenizer **out)
{
	struct kvc_gguf *g;
	uint8_t *buf;
	size_t size;
	int err;

	buf = toy_gguf(v, &size);
	err = kvc_gguf_parse(buf, size, &g);
	if (err)
		fail_msg("kvc_gguf_parse: %d %s", err, kvc_last_error());
	err = kvc_tok_load(g, out);
	kvc_gguf_close(g);
	memset(buf, 0xa5, size); /* nothing may point here any more */
	free(buf);
	return err;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || load_toy(V_SMOLLM, &f->tok) ||
	    load_toy(V_PLAIN, &f->tok_plain))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	kvc_tok_free(f->tok);
	kvc_tok_free(f->tok_plain);
	free(f);
	return 0;
}

/* @text encodes to the @n ids of @want. */
static void expect_ids(const struct kvc_tokenizer *t, const char *text,
		       const int32_t *want, uint32_t n)
{
	int32_t *ids;
	uint32_t got, i;

	assert_int_equal(kvc_tok_encode(t, text, strlen(text), &ids, &got), 0);
	if (got != n)
		fail_msg("\"%s\": %u ids, want %u", text, got, n);
	for (i = 0; i < n; i++)
		if (ids[i] != want[i])
			fail_msg("\"%s\": id %u is %d, want %d", text, i,
				 ids[i], want[i]);
	free(ids);
}

#define EXPECT_IDS(t, text, ...)                                              \
	do {                                                                  \
		const int32_t want_[] = { __VA_ARGS__ };                      \
		expect_ids(t, text, want_, sizeof(want_) / sizeof(want_[0])); \
	} while (0)

/* decode(encode(@text)) == @text. */
static void round_trip(const struct kvc_tokenizer *t, const char *text,
		       size_t len)
{
	char *back = malloc(len + 1);
	size_t at = 0, plen;
	const char *p;
	int32_t *ids;
	uint32_t n, i;

	assert_non_null(back);
	assert_int_equal(kvc_tok_encode(t, text, len, &ids, &n), 0);
	for (i = 0; i < n; i++) {
		p = kvc_tok_piece(t, ids[i], &plen);
		assert_non_null(p);
		if (at + plen > len)
			fail_msg("decoding is longer than the %zu bytes", len);
		memcpy(back + at, p, plen);
		at += plen;
	}
	if (at != len || memcmp(back, text, len))
		fail_msg("round trip of \"%.*s\" gives \"%.*s\"", (int)len,
			 text, (int)at, back);
	free(ids);
	free(back);
}

/* ------------------------------------------------------------------ */
/* tests */

/* The lowest-ranked pair merges first, inside each piece. */
static void test_merges_by_rank(void **state)
{
	struct fixture *f = *state;

	EXPECT_IDS(f->tok, "the", 't', T_HE);
	EXPECT_IDS(f->tok, " the", T_SP_THE);
	EXPECT_IDS(f->tok, "hello", T_HELLO);
	EXPECT_IDS(f->tok, " hello", T_SP_HELLO);
	EXPECT_IDS(f->tok, "the hello the", 't', T_HE, T_SP_HELLO, T_SP_THE);
	EXPECT_IDS(f->tok, "singing", 's', T_ING, T_ING);
	EXPECT_IDS(f->tok, "hello!!", T_HELLO, '!', '!');
	EXPECT_IDS(f->tok, "xyz", 'x', 'y', 'z');
}

/* GPT-2 pieces: a run of spaces leaves its last one to the next word. */
static void test_pretokenize_whitespace(void **state)
{
	struct fixture *f = *state;

	EXPECT_IDS(f->tok, "  the", ' ', T_SP_THE);
	EXPECT_IDS(f->tok, "   the", T_SP_SP, T_SP_THE);
	EXPECT_IDS(f->tok, "the  ", 't', T_HE, T_SP_SP);
	EXPECT_IDS(f->tok, "  ", T_SP_SP);
	EXPECT_IDS(f->tok, "\n the", '\n', T_SP_THE);
	EXPECT_IDS(f->tok, "a\n\nb", 'a', '\n', '\n', 'b');
	/* Contractions split off; punctuation takes a leading space. */
	EXPECT_IDS(f->tok, "it's", 'i', 't', '\'', 's');
	EXPECT_IDS(f->tok, "he'll", T_HE, '\'', T_LL);
	EXPECT_IDS(f->tok, "hell ll", T_HELL, ' ', T_LL);
}

/* With pre "smollm" digits stand alone; without, "12" merges. */
static void test_digits(void **state)
{
	struct fixture *f = *state;

	EXPECT_IDS(f->tok, "12", '1', '2');
	EXPECT_IDS(f->tok, "sing 2012", 's', T_ING, ' ', '2', '0', '1', '2');
	EXPECT_IDS(f->tok, "a12b", 'a', '1', '2', 'b');
	EXPECT_IDS(f->tok_plain, "12", T_12);
	EXPECT_IDS(f->tok_plain, "x 2012", 'x', ' ', '2', '0', T_12);
}

/* Special tokens written in the text are their ids, longest first. */
static void test_special_tokens(void **state)
{
	struct fixture *f = *state;

	EXPECT_IDS(f->tok, "<|im_start|>the<|im_end|>", T_IM_START, 't', T_HE,
		   T_IM_END);
	EXPECT_IDS(f->tok, "<|endoftext|>", T_EOT);
	EXPECT_IDS(f->tok, " the<|endoftext|><|endoftext|> the", T_SP_THE,
		   T_EOT, T_EOT, T_SP_THE);
	/* Not quite a special token: plain bytes. */
	EXPECT_IDS(f->tok, "<|im_x", '<', '|', 'i', 'm', '_', 'x');
	assert_int_equal(kvc_tok_bos(f->tok), T_EOT);
	assert_int_equal(kvc_tok_eos(f->tok), T_IM_END);
}

/* decode(encode(s)) == s for every kind of text. */
static void test_round_trips(void **state)
{
	static const char *const texts[] = {
		"The quick brown fox jumps over the lazy dog.",
		"caf\xc3\xa9 na\xc3\xafve \xc3\xa9t\xc3\xa9",
		"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe6\x97\xa5\xe6\x9c\xac",
		"emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd!",
		"  lots   of \t\t whitespace \n\n\n  \r\n ",
		"digits 3.14159 and 2024-11-22, 1,000,000",
		"<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n",
		"it's we're they've I'm you'll he'd",
		"   ",
		"\xc3\xa9",
	};
	struct fixture *f = *state;
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		round_trip(f->tok, texts[i], strlen(texts[i]));
		round_trip(f->tok_plain, texts[i], strlen(texts[i]));
	}
}

/* Invalid UTF-8 and NUL bytes go byte by byte. */
static void test_raw_bytes(void **state)
{
	static const char bad[] = "a\xff\xfe\xc3(\xe2\x82\0z\x80";
	struct fixture *f = *state;
	char all[256];
	unsigned i;

	round_trip(f->tok, bad, sizeof(bad) - 1);
	for (i = 0; i < 256; i++)
		all[i] = (char)i;
	round_trip(f->tok, all, sizeof(all));
	EXPECT_IDS(f->tok, "\xc3\xa9", 0xc3, 0xa9);
}

/* The empty text has no ids. */
static void test_empty(void **state)
{
	struct fixture *f = *state;
	int32_t *ids = (int32_t *)&ids;
	uint32_t n = 7;

	assert_int_equal(kvc_tok_encode(f->tok, "", 0, &ids, &n), 0);
	assert_int_equal(n, 0);
	free(ids);
}

/* Pieces are raw bytes; special tokens read as written. */
static void test_pieces(void **state)
{
	struct fixture *f = *state;
	const char *p;
	size_t len;

	assert_int_equal(kvc_tok_vocab(f->tok), NR_VOCAB);
	p = kvc_tok_piece(f->tok, ' ', &len);
	assert_int_equal(len, 1);
	assert_memory_equal(p, " ", 1);
	p = kvc_tok_piece(f->tok, 0, &len);
	assert_int_equal(len, 1);
	assert_int_equal(p[0], 0);
	p = kvc_tok_piece(f->tok, 0xe9, &len);
	assert_int_equal(len, 1);
	assert_int_equal((unsigned char)p[0], 0xe9);
	p = kvc_tok_piece(f->tok, T_SP_HELLO, &len);
	assert_int_equal(len, 6);
	assert_memory_equal(p, " hello", 6);
	p = kvc_tok_piece(f->tok, T_IM_START, &len);
	assert_int_equal(len, strlen("<|im_start|>"));
	assert_memory_equal(p, "<|im_start|>", len);
	assert_null(kvc_tok_piece(f->tok, -1, &len));
	assert_null(kvc_tok_piece(f->tok, NR_VOCAB, &len));
	assert_null(kvc_tok_piece(f->tok, INT32_MAX, &len));
}

/* Files without a usable tokenizer are refused with a message. */
static void test_refused(void **state)
{
	static const enum variant bad[] = { V_WRONG_MODEL, V_NO_TOKENS,
					    V_BAD_TYPES, V_BAD_MERGE };
	struct kvc_tokenizer *t = (struct kvc_tokenizer *)state;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(load_toy(bad[i], &t), -EINVAL);
		assert_null(t);
		assert_true(strstr(kvc_last_error(), "tokenizer") != NULL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_merges_by_rank, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pretokenize_whitespace,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_digits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_special_tokens, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_round_trips, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_raw_bytes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pieces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
