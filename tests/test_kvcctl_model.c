/* Description: kvcctl generate and eval end to end on a tiny random-weight GGUF model with a toy byte-level BPE tokenizer: text out, JSON/CSV rows, rate 1 equal to the full cache, memory falling with the rate, usage errors, missing model and text, --plot without gnuplot */
// SPDX-License-Identifier: MIT
/*
 * Writes a small Llama model (2 layers, hidden 256, 4 query heads of 64,
 * 2 KV heads, FFN 96, F32 weights from a fixed seed; head_dim 64 is the
 * smallest the cache takes) with a tokenizer of
 * the 256 bytes in GPT-2's byte-to-unicode form, a few merges and the
 * ChatML specials, to a temporary file, and runs build/kvcctl on it as a
 * user would. Each test gets its own directory, also used as
 * KVC_STATS_DIR, so /dev/shm is never touched.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../model/gguf.h"
#include "gguf_writer.h"
#include "json.h"
#include "proc.h"
#include "tmpdir.h"

#ifndef KVCCTL
#define KVCCTL "build/kvcctl"
#endif
#define RUN_TIMEOUT_MS 120000

#define LAYERS 2
#define HIDDEN 256
#define Q_HEADS 4
#define KV_HEADS 2
#define HEAD_DIM (HIDDEN / Q_HEADS)
#define FFN 96

static const char *const merges[] = { "t h", "th e", "Ġ t", "i n", "a n" };
static const char *const merged[] = { "th", "the", "Ġt", "in", "an" };
#define NR_MERGES (sizeof(merges) / sizeof(merges[0]))
#define NR_SPECIAL 3 /* <|endoftext|> <|im_start|> <|im_end|> */
#define VOCAB (NR_SPECIAL + 256 + NR_MERGES)

/**
 * struct fx - One test's files.
 * @dir: the temporary directory.
 * @model: the GGUF file in it.
 * @text: a text file in it.
 */
struct fx {
	char dir[64];
	char model[128];
	char text[128];
};

static uint64_t rng_state;

static float rnd(float scale)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return scale * ((float)(rng_state >> 40) / 16777216.0f * 2 - 1);
}

/* GPT-2's byte-to-unicode map: printable bytes stand for themselves. */
static uint32_t byte_cp(uint32_t b)
{
	uint32_t i, n = 0;

	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
		return b;
	for (i = 0; i < b; i++)
		if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) ||
		      i >= 174))
			n++;
	return 256 + n;
}

static void utf8(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = '\0';
	} else {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		out[2] = '\0';
	}
}

static void add_f32(struct gguf_writer *w, const char *name, uint64_t d0,
		    uint64_t d1, float scale, bool ones)
{
	uint64_t dims[2] = { d0, d1 }, i, n = d0 * d1;
	float *x = malloc(n * sizeof(*x));

	assert_non_null(x);
	for (i = 0; i < n; i++)
		x[i] = ones ? 1.0f : rnd(scale);
	assert_int_equal(gw_add_tensor(w, name, KVC_GGML_F32, d1 > 1 ? 2 : 1,
				       dims, x, n * sizeof(*x)),
			 0);
	free(x);
}

static void write_model(const char *path)
{
	static char bytes[256][4];
	const char *tokens[VOCAB];
	struct gguf_writer *w = gw_new();
	char name[64];
	uint32_t i, l;

	assert_non_null(w);
	rng_state = 12345;
	tokens[0] = "<|endoftext|>";
	tokens[1] = "<|im_start|>";
	tokens[2] = "<|im_end|>";
	for (i = 0; i < 256; i++) {
		utf8(byte_cp(i), bytes[i]);
		tokens[NR_SPECIAL + i] = bytes[i];
	}
	for (i = 0; i < NR_MERGES; i++)
		tokens[NR_SPECIAL + 256 + i] = merged[i];

	gw_add_str(w, "general.architecture", "llama");
	gw_add_u32(w, "llama.block_count", LAYERS);
	gw_add_u32(w, "llama.embedding_length", HIDDEN);
	gw_add_u32(w, "llama.feed_forward_length", FFN);
	gw_add_u32(w, "llama.attention.head_count", Q_HEADS);
	gw_add_u32(w, "llama.attention.head_count_kv", KV_HEADS);
	gw_add_u32(w, "llama.context_length", 4096);
	gw_add_f32(w, "llama.rope.freq_base", 10000.0f);
	gw_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
	gw_add_str(w, "tokenizer.ggml.model", "gpt2");
	gw_add_arr_str(w, "tokenizer.ggml.tokens", tokens, VOCAB);
	gw_add_arr_str(w, "tokenizer.ggml.merges", merges, NR_MERGES);
	gw_add_u32(w, "tokenizer.ggml.bos_token_id", 0);
	gw_add_u32(w, "tokenizer.ggml.eos_token_id", 2);

	/*
	 * An output matrix of its own and strong attention: with tied
	 * embeddings each token would mostly predict itself, and evicting a
	 * KV would change nothing to measure.
	 */
	add_f32(w, "token_embd.weight", HIDDEN, VOCAB, 0.1f, false);
	add_f32(w, "output.weight", HIDDEN, VOCAB, 0.2f, false);
	add_f32(w, "output_norm.weight", HIDDEN, 1, 0, true);
	for (l = 0; l < LAYERS; l++) {
#define T(s) (snprintf(name, sizeof(name), "blk.%u." s ".weight", l), name)
		add_f32(w, T("attn_norm"), HIDDEN, 1, 0, true);
		add_f32(w, T("ffn_norm"), HIDDEN, 1, 0, true);
		add_f32(w, T("attn_q"), HIDDEN, Q_HEADS * HEAD_DIM, 0.2f,
			false);
		add_f32(w, T("attn_k"), HIDDEN, KV_HEADS * HEAD_DIM, 0.2f,
			false);
		add_f32(w, T("attn_v"), HIDDEN, KV_HEADS * HEAD_DIM, 0.3f,
			false);
		add_f32(w, T("attn_output"), Q_HEADS * HEAD_DIM, HIDDEN, 0.2f,
			false);
		add_f32(w, T("ffn_gate"), HIDDEN, FFN, 0.1f, false);
		add_f32(w, T("ffn_up"), HIDDEN, FFN, 0.1f, false);
		add_f32(w, T("ffn_down"), FFN, HIDDEN, 0.1f, false);
#undef T
	}
	assert_int_equal(gw_write_file(w, path), 0);
	gw_free(w);
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	FILE *f;
	int i;

	if (!fx)
		return -1;
	if (tmpdir_make(fx->dir, sizeof(fx->dir), "kvc-test-kvcctl-model")) {
		free(fx);
		return -1;
	}
	setenv("KVC_STATS_DIR", fx->dir, 1);
	snprintf(fx->model, sizeof(fx->model), "%s/tiny.gguf", fx->dir);
	snprintf(fx->text, sizeof(fx->text), "%s/text.txt", fx->dir);
	write_model(fx->model);
	f = fopen(fx->text, "w");
	if (!f) {
		tmpdir_remove(fx->dir);
		free(fx);
		return -1;
	}
	for (i = 0; i < 12; i++)
		fprintf(f,
			"In the beginning the thin cat ran to the tin can and then %d more.\n",
			i);
	fclose(f);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	int err;

	err = tmpdir_remove(fx->dir);
	if (err)
		fprintf(stderr, "test_kvcctl_model: cannot remove %s: %s\n",
			fx->dir, strerror(errno));
	free(fx);
	return err;
}

/* Run kvcctl with the arguments, NULL-terminated. */
static void kvcctl(struct result *r, ...)
{
	char *const head[] = { KVCCTL, NULL };
	va_list ap;

	va_start(ap, r);
	proc_vrun(r, RUN_TIMEOUT_MS, head, ap);
	va_end(ap);
}

/*
 * The summary of a generate run that made all @tokens it was asked for:
 * the first comes from the prefill's logits, each later one from a decode
 * step, so the decode line counts @tokens - 1.
 */
static void expect_decoded(const struct result *r, unsigned int tokens)
{
	const char *at = strstr(r->err, "\ndecode ");
	unsigned int decoded;

	if (!at || sscanf(at, " decode %u tokens", &decoded) != 1)
		fail_msg("no decode summary in: %s", r->err);
	if (decoded != tokens - 1)
		fail_msg("decode %u tokens, expected %u for --tokens %u: %s",
			 decoded, tokens - 1, tokens, r->err);
}

static void test_generate(void **state)
{
	struct fx *fx = *state;
	unsigned int compressions;
	struct result r;
	const char *at;

	kvcctl(&r, "generate", "--model", fx->model, "--prompt", "the cat",
	       "--tokens", "6", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "the cat"));
	/* The prompt echoed, then what was generated after it. */
	assert_int_equal(strncmp(r.out, "the cat", 7), 0);
	assert_true(strlen(r.out) > 7);
	expect_decoded(&r, 6);
	assert_non_null(strstr(r.err, "prefill"));
	assert_non_null(strstr(r.err, "tokens/s"));
	assert_non_null(strstr(r.err, "mapped"));
	proc_result_free(&r);

	kvcctl(&r, "generate", "--model", fx->model, "--prompt", "in the tin",
	       "--chat", "--tokens", "8", "--temperature", "0.8", "--top-p",
	       "0.9", "--seed", "7", "--policy", "kvcompress", "--rate", "2",
	       NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "policy kvcompress"));
	expect_decoded(&r, 8);
	at = strstr(r.err, "policy kvcompress, rate 2, ");
	if (!at || sscanf(at, "policy kvcompress, rate 2, %u compressions",
			  &compressions) != 1)
		fail_msg("no compression count in: %s", r.err);
	if (compressions < 1)
		fail_msg("kvcompress at rate 2 never compressed: %s", r.err);
	proc_result_free(&r);
}

static void test_generate_help(void **state)
{
	struct result r;

	(void)state;
	kvcctl(&r, "generate", "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "Usage: kvcctl generate"));
	proc_result_free(&r);
	kvcctl(&r, "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "generate"));
	assert_non_null(strstr(r.out, "eval"));
	proc_result_free(&r);
}

/* One parsed JSON row of kvcctl eval. */
struct row {
	char policy[32];
	double rate, top1, kl, ppl, ppl_full;
	unsigned long long live, mapped;
};

/*
 * The rows of @doc, each an object with every field a number (a policy
 * name aside). Return: how many; fails the test past @max.
 */
static int parse_rows(const struct json *doc, struct row *rows, int max)
{
	const struct json *arr = json_member(doc, "rows", JSON_ARRAY);
	size_t i;

	assert_true(arr->n <= (size_t)max);
	for (i = 0; i < arr->n; i++) {
		const struct json *o = arr->items[i];
		struct row *r = &rows[i];
		const char *policy;

		assert_int_equal(o->type, JSON_OBJECT);
		policy = json_str(o, "policy");
		assert_true(strlen(policy) < sizeof(r->policy));
		strcpy(r->policy, policy);
		r->rate = json_number(o, "rate");
		r->top1 = json_number(o, "top1_agreement");
		r->kl = json_number(o, "kl");
		r->ppl = json_number(o, "ppl");
		r->ppl_full = json_number(o, "ppl_full");
		r->live = json_u64(o, "live_bytes");
		r->mapped = json_u64(o, "mapped_bytes");
	}
	return (int)arr->n;
}

static void test_eval_json(void **state)
{
	struct fx *fx = *state;
	struct row rows[32];
	struct result r;
	struct json *doc;
	int n, i, j, rate1;

	kvcctl(&r, "eval", "--text", fx->text, "--model", fx->model,
	       "--prefill", "96", "--tokens", "8", "--rates", "1,4",
	       "--policies", "all", "--json", NULL);
	assert_int_equal(r.status, 0);
	doc = json_parse(r.out);
	if (!doc || doc->type != JSON_OBJECT)
		fail_msg("kvcctl eval --json: not one JSON object:\n%s", r.out);
	n = parse_rows(doc, rows, 32);
	json_free(doc);
	assert_int_equal(n, 16);
	for (i = 0; i < n; i++) {
		assert_true(isfinite(rows[i].ppl) && rows[i].ppl > 0);
		assert_true(rows[i].live > 0);
		assert_true(rows[i].mapped >= rows[i].live);
		assert_true(rows[i].top1 >= 0 && rows[i].top1 <= 1);
		assert_true(rows[i].kl >= 0);
		if (rows[i].rate != 1)
			continue;
		assert_true(rows[i].top1 == 1.0);
		assert_true(rows[i].kl == 0.0);
		assert_true(rows[i].ppl == rows[i].ppl_full);
	}
	/* Each policy's rate 4 holds no more than its rate 1. */
	for (i = 0; i < n; i++) {
		if (rows[i].rate != 4)
			continue;
		rate1 = -1;
		for (j = 0; j < n; j++)
			if (rows[j].rate == 1 &&
			    !strcmp(rows[j].policy, rows[i].policy))
				rate1 = j;
		assert_true(rate1 >= 0);
		assert_true(rows[i].live <= rows[rate1].live);
		/* Eviction really happened and really changed the model. */
		if (!strcmp(rows[i].policy, "kvcompress")) {
			assert_true(rows[i].live < rows[rate1].live);
			assert_true(rows[i].kl > 0);
		}
	}
	proc_result_free(&r);
}

static void test_eval_csv_and_table(void **state)
{
	struct fx *fx = *state;
	struct result r;

	kvcctl(&r, "eval", "--text", fx->text, "--model", fx->model,
	       "--prefill", "64", "--tokens", "4", "--rates", "1,2",
	       "--policies", "h2o,window", "--csv", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(
		r.out,
		"policy,rate,top1_agreement,kl,ppl,ppl_full,live_bytes,mapped_bytes\n"));
	assert_non_null(strstr(r.out, "\nh2o,2,"));
	assert_non_null(strstr(r.out, "\nwindow,1,1,0,"));
	proc_result_free(&r);

	kvcctl(&r, "eval", "--text", fx->text, "--model", fx->model,
	       "--prefill", "64", "--tokens", "4", "--rates", "2", "--policies",
	       "snapkv", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "policy"));
	assert_non_null(strstr(r.out, "snapkv"));
	proc_result_free(&r);
}

static void test_eval_plot_without_gnuplot(void **state)
{
	struct fx *fx = *state;
	char png[160], *path = getenv("PATH");
	char *saved = path ? strdup(path) : NULL;
	struct result r;

	snprintf(png, sizeof(png), "%s/eval.png", fx->dir);
	/* A PATH with no gnuplot in it. */
	setenv("PATH", fx->dir, 1);
	kvcctl(&r, "eval", "--text", fx->text, "--model", fx->model,
	       "--prefill", "64", "--tokens", "4", "--rates", "1,2",
	       "--policies", "kvcompress", "--plot", png, NULL);
	if (saved)
		setenv("PATH", saved, 1);
	free(saved);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "gnuplot is not installed"));
	assert_non_null(strstr(r.out, "kvcompress"));
	proc_result_free(&r);
}

/* With gnuplot installed, --plot draws a PNG. */
static void test_eval_plot(void **state)
{
	struct fx *fx = *state;
	unsigned char magic[4] = { 0 };
	struct result r;
	char png[160];
	FILE *f;

	if (system("command -v gnuplot >/dev/null 2>&1")) {
		skip();
		return;
	}
	snprintf(png, sizeof(png), "%s/eval.png", fx->dir);
	kvcctl(&r, "eval", "--text", fx->text, "--model", fx->model,
	       "--prefill", "64", "--tokens", "4", "--rates", "1,2,4",
	       "--policies", "kvcompress,window", "--plot", png, NULL);
	assert_int_equal(r.status, 0);
	proc_result_free(&r);
	f = fopen(png, "rb");
	assert_non_null(f);
	assert_int_equal(fread(magic, 1, 4, f), 4);
	fclose(f);
	assert_memory_equal(magic, "\x89PNG", 4);
}

static void expect_usage(const char *needle, struct result *r)
{
	assert_int_equal(r->status, 2);
	assert_non_null(strstr(r->err, needle));
	proc_result_free(r);
}

static void test_usage_errors(void **state)
{
	struct fx *fx = *state;
	struct result r;

	kvcctl(&r, "generate", "--tokens", "0", NULL);
	expect_usage("--tokens", &r);
	kvcctl(&r, "generate", "--bogus", NULL);
	expect_usage("unknown option '--bogus'", &r);
	kvcctl(&r, "generate", "--policy", "nope", NULL);
	expect_usage("nope", &r);
	kvcctl(&r, "generate", "--temperature", "hot", NULL);
	expect_usage("--temperature", &r);
	kvcctl(&r, "generate", "--top-p", "0", NULL);
	expect_usage("--top-p", &r);
	kvcctl(&r, "generate", "--rate", "0.5", NULL);
	expect_usage("--rate", &r);
	kvcctl(&r, "generate", "extra", NULL);
	expect_usage("unexpected argument", &r);
	kvcctl(&r, "eval", NULL);
	expect_usage("--text FILE is required", &r);
	kvcctl(&r, "eval", "--text", fx->text, "--rates", "1,0.5", NULL);
	expect_usage("--rates", &r);
	kvcctl(&r, "eval", "--text", fx->text, "--rates", "1,,2", NULL);
	expect_usage("--rates", &r);
	kvcctl(&r, "eval", "--text", fx->text, "--policies", "h2o,nope", NULL);
	expect_usage("nope", &r);
	kvcctl(&r, "eval", "--text", fx->text, "--json", "--csv", NULL);
	expect_usage("exclude", &r);
	kvcctl(&r, "eval", "--text", fx->text, "--prefill", "x", NULL);
	expect_usage("--prefill", &r);
	kvcctl(&r, "eval", "--text", "/nonexistent/text.txt", "--model",
	       fx->model, NULL);
	expect_usage("cannot open", &r);
	/* More tokens than the text has. */
	kvcctl(&r, "eval", "--text", fx->text, "--model", fx->model,
	       "--prefill", "100000", NULL);
	expect_usage("tokens", &r);
}

static void test_missing_model(void **state)
{
	struct fx *fx = *state;
	struct result r;

	kvcctl(&r, "generate", "--model", "/nonexistent/m.gguf", NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "no model at /nonexistent/m.gguf"));
	proc_result_free(&r);

	kvcctl(&r, "eval", "--text", fx->text, "--model", "/nonexistent/m.gguf",
	       NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "no model at"));
	proc_result_free(&r);

	/* Not a GGUF file: the reader says why. */
	kvcctl(&r, "generate", "--model", fx->text, NULL);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, fx->text));
	proc_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_generate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_generate_help, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_eval_json, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_eval_csv_and_table, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_eval_plot, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_eval_plot_without_gnuplot,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_missing_model, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
