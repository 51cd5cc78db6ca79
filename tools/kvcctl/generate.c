// SPDX-License-Identifier: MIT
/*
 * `kvcctl generate`: run a GGUF Llama-architecture model (SmolLM2-135M by
 * default) on the CPU over the paged per-head KV cache and stream the text
 * it writes. An eviction policy compresses the cache as `kvcctl run` does:
 * the prompt's attention is observed at prefill, and the sequence is
 * compressed whenever the policy says it is due, then the pool compacted,
 * so what it frees shows in the mapped bytes printed at the end.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kvc/kvc.h>
#include <kvc/evict.h>
#include <kvc/stats.h>

#include "../../alloc/error.h"
#include "../../model/gguf.h"
#include "../../model/llama.h"
#include "../../model/tokenizer.h"
#include "kvcctl.h"

#define CMD "generate"

#define DEFAULT_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define DEFAULT_PROMPT "Once upon a time"
#define MAX_TOKENS 0x100000u
#define MAX_RATE 1e6
#define BLOCK_SIZE 16

/**
 * struct gen_opts - What `kvcctl generate` was asked to do.
 * @model: the GGUF file.
 * @prompt: the prompt text.
 * @tokens: tokens to generate at most.
 * @temperature: 0 = greedy.
 * @top_p: nucleus sampling mass, (0, 1].
 * @seed: of the sampler.
 * @policy: the eviction policy's parameters.
 * @chat: wrap the prompt in the chat template.
 */
struct gen_opts {
	const char *model;
	const char *prompt;
	uint32_t tokens;
	double temperature;
	double top_p;
	uint64_t seed;
	struct kvc_policy_params policy;
	bool chat;
};

enum {
	OPT_MODEL = 256,
	OPT_PROMPT,
	OPT_TOKENS,
	OPT_TEMPERATURE,
	OPT_TOP_P,
	OPT_SEED,
	OPT_POLICY,
	OPT_RATE,
	OPT_CHAT,
};

static const char short_opts[] = ":h";

static const struct option long_opts[] = {
	{ "model", required_argument, NULL, OPT_MODEL },
	{ "prompt", required_argument, NULL, OPT_PROMPT },
	{ "tokens", required_argument, NULL, OPT_TOKENS },
	{ "temperature", required_argument, NULL, OPT_TEMPERATURE },
	{ "top-p", required_argument, NULL, OPT_TOP_P },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "policy", required_argument, NULL, OPT_POLICY },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "chat", no_argument, NULL, OPT_CHAT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
	"Usage: kvcctl generate [OPTIONS]\n"
	"\n"
	"Generate text with a Llama-architecture GGUF model on the CPU, its\n"
	"attention reading the paged per-head KV cache, which an eviction\n"
	"policy compresses as the text grows. The text streams to stdout;\n"
	"the speed and the cache's memory go to stderr at the end.\n"
	"\n"
	"  --model FILE         the GGUF model (default\n"
	"                       " DEFAULT_MODEL ";\n"
	"                       'make model' downloads it)\n"
	"  --prompt TEXT        the prompt (default \"" DEFAULT_PROMPT "\")\n"
	"  --chat               wrap the prompt in the chat template\n"
	"                       (<|im_start|>user ... <|im_start|>assistant)\n"
	"  --tokens N           generate at most N tokens (default 128); stops\n"
	"                       earlier at the end-of-sequence token\n"
	"  --temperature T      sampling temperature (default 0: greedy)\n"
	"  --top-p P            sample from the smallest set of tokens whose\n"
	"                       probability reaches P (default 1)\n"
	"  --seed S             seed of the sampler (default 1)\n"
	"  --policy NAME        eviction policy: full (default), kvcompress,\n"
	"                       streamingllm, h2o, snapkv, pyramidkv,\n"
	"                       pyramidinfer, window\n"
	"  --rate R             compression rate, >= 1 (default 8)\n"
	"  -h, --help           show this help\n"
	"\n"
	"Exit status: 0 on success; 1 when the model cannot be loaded or run;\n"
	"2 for a bad command line.\n";

static int parse_real(int opt, const char *arg, double min, double max,
		      double *out)
{
	if (kvcctl_parse_seconds(arg, min, max, out))
		return kvcctl_usage_error(
			CMD, "--%s: '%s' is not a number from %g to %g",
			kvcctl_long_name(long_opts, opt), arg, min, max);
	return -1;
}

static int parse_option(struct gen_opts *o, int opt, const char *arg)
{
	uint64_t v;

	switch (opt) {
	case OPT_MODEL:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--model: the file name is empty");
		o->model = arg;
		return -1;
	case OPT_PROMPT:
		o->prompt = arg;
		return -1;
	case OPT_TOKENS:
		if (kvcctl_parse_u64(arg, 1, MAX_TOKENS, &v))
			return kvcctl_usage_error(
				CMD,
				"--tokens: '%s' is not a whole number from 1 to %u",
				arg, MAX_TOKENS);
		o->tokens = (uint32_t)v;
		return -1;
	case OPT_TEMPERATURE:
		return parse_real(opt, arg, 0, 100, &o->temperature);
	case OPT_TOP_P:
		if (kvcctl_parse_seconds(arg, 0, 1, &o->top_p) || o->top_p <= 0)
			return kvcctl_usage_error(
				CMD, "--top-p: '%s' is not a number in (0, 1]",
				arg);
		return -1;
	case OPT_SEED:
		if (kvcctl_parse_u64(arg, 0, UINT64_MAX, &o->seed))
			return kvcctl_usage_error(
				CMD, "--seed: '%s' is not a whole number", arg);
		return -1;
	case OPT_POLICY:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--policy: the name is empty");
		o->policy.name = arg;
		return -1;
	case OPT_RATE:
		return parse_real(opt, arg, 1, MAX_RATE, &o->policy.rate);
	case OPT_CHAT:
		o->chat = true;
		return -1;
	}
	return kvcctl_usage_error(CMD, "option %d not handled", opt);
}

/*
 * Refuse a bad policy before the model loads: its shape is not known yet,
 * but names and rates do not depend on it.
 */
static int check_policy(const struct kvc_policy_params *p)
{
	struct kvc_model_shape shape = {
		.layers = 30,
		.q_heads = 9,
		.kv_heads = 3,
		.head_dim = 64,
		.block_size = BLOCK_SIZE,
		.dtype = KVC_DTYPE_F16,
	};
	struct kvc_policy *pol;

	if (kvc_policy_create(p, &shape, &pol))
		return kvcctl_usage_error(CMD, "%s", kvc_last_error());
	kvc_policy_destroy(pol);
	return -1;
}

/* parse_option() as kvcctl_getopt() calls it. */
static int parse_one(void *o, int opt, const char *arg)
{
	return parse_option(o, opt, arg);
}

static int parse_options(int argc, char **argv, struct gen_opts *o)
{
	int status;

	memset(o, 0, sizeof(*o));
	o->model = DEFAULT_MODEL;
	o->prompt = DEFAULT_PROMPT;
	o->tokens = 128;
	o->top_p = 1;
	o->seed = 1;
	kvc_policy_params_init(&o->policy);
	o->policy.name = "full";
	o->policy.rate = 8;
	status = kvcctl_getopt(CMD, argc, argv, short_opts, long_opts,
			       usage_text, parse_one, o);
	if (status >= 0)
		return status;
	if (!*o->prompt && !o->chat)
		return kvcctl_usage_error(CMD, "--prompt: the prompt is empty");
	kvcctl_policy_published(&o->policy);
	return check_policy(&o->policy);
}

/* ------------------------------------------------------------------ */
/* Sampling */

/* xorshift64*: the sampler's only randomness, so a seed repeats a run. */
static double rand_unit(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return (double)((x * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

/**
 * struct cand - A token and its unnormalized probability, for top-p.
 * @p: exp((logit - max) / temperature).
 * @id: the token.
 */
struct cand {
	float p;
	int32_t id;
};

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->p != y->p)
		return x->p < y->p ? 1 : -1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int32_t argmax(const float *logits, uint32_t n)
{
	uint32_t i, best = 0;

	for (i = 1; i < n; i++)
		if (logits[i] > logits[best])
			best = i;
	return (int32_t)best;
}

/* Temperature, then top-p over the sorted probabilities. */
static int32_t sample(const struct gen_opts *o, const float *logits, uint32_t n,
		      struct cand *c, uint64_t *rng)
{
	double sum = 0, mass = 0, r;
	float max = logits[argmax(logits, n)];
	uint32_t i, keep;

	if (o->temperature <= 0)
		return argmax(logits, n);
	for (i = 0; i < n; i++) {
		c[i].p = expf((float)((logits[i] - max) / o->temperature));
		c[i].id = (int32_t)i;
		sum += c[i].p;
	}
	qsort(c, n, sizeof(*c), cand_cmp);
	for (keep = 0; keep < n;) {
		mass += c[keep++].p / sum;
		if (mass >= o->top_p)
			break;
	}
	r = rand_unit(rng) * mass * sum;
	for (i = 0; i < keep; i++) {
		r -= c[i].p;
		if (r <= 0)
			return c[i].id;
	}
	return c[keep - 1].id;
}

/* ------------------------------------------------------------------ */

/**
 * struct gen - One generation's state.
 * @g: the file.
 * @tok: its tokenizer.
 * @m: its model.
 * @kv: the cache.
 * @seq: the sequence.
 * @pol: the policy.
 * @logits: the last token's logits.
 * @cand: sampling scratch.
 */
struct gen {
	struct kvc_gguf *g;
	struct kvc_tokenizer *tok;
	struct kvc_llama *m;
	struct kvc_kv *kv;
	struct kvc_seq *seq;
	struct kvc_policy *pol;
	float *logits;
	struct cand *cand;
};

static void gen_free(struct gen *x)
{
	free(x->cand);
	free(x->logits);
	kvc_policy_destroy(x->pol);
	kvc_seq_destroy(x->seq);
	kvc_kv_destroy(x->kv);
	kvc_llama_free(x->m);
	kvc_tok_free(x->tok);
	kvc_gguf_close(x->g);
}

static int load(struct gen *x, const struct gen_opts *o)
{
	if (access(o->model, F_OK)) {
		fprintf(stderr, "kvcctl generate: no model at %s", o->model);
		if (!strcmp(o->model, DEFAULT_MODEL))
			fputs("; run 'make model' to download SmolLM2-135M-Instruct",
			      stderr);
		fputc('\n', stderr);
		return -ENOENT;
	}
	/* kvc_gguf_open()'s messages name the file already. */
	if (kvc_gguf_open(o->model, &x->g)) {
		fprintf(stderr, "kvcctl generate: %s\n", kvc_last_error());
		return -EINVAL;
	}
	if (kvc_tok_load(x->g, &x->tok) || kvc_llama_load(x->g, &x->m)) {
		fprintf(stderr, "kvcctl generate: %s: %s\n", o->model,
			kvc_last_error());
		return -EINVAL;
	}
	return 0;
}

/* Compress when due, then compact so the freed blocks leave the mapping. */
static int maybe_compress(struct gen *x, uint32_t steps, uint32_t *done)
{
	int err;

	if (!kvc_policy_due(x->pol, x->seq, steps))
		return 0;
	err = kvc_policy_compress(x->pol, x->seq, NULL);
	if (!err)
		err = kvc_kv_compact(x->kv, NULL);
	(*done)++;
	return err;
}

static void put_piece(const struct gen *x, int32_t id)
{
	size_t len;
	const char *s = kvc_tok_piece(x->tok, id, &len);

	if (s)
		fwrite(s, 1, len, stdout);
	fflush(stdout);
}

static void put_summary(struct gen *x, const struct gen_opts *o,
			uint32_t prompt, double t_prefill, uint32_t decoded,
			double t_decode, uint32_t compressions)
{
	const struct kvc_model_shape *sh = kvc_kv_shape(x->kv);
	uint64_t full = (uint64_t)kvc_seq_tokens(x->seq) * sh->layers *
			sh->kv_heads * 2 * sh->head_dim *
			kvc_dtype_bytes(sh->dtype);
	char live[KVCCTL_BYTES_LEN], mapped[KVCCTL_BYTES_LEN],
		logical[KVCCTL_BYTES_LEN];
	struct kvc_pool_stats st;

	kvc_pool_get_stats(kvc_kv_pool(x->kv), &st, NULL);
	fprintf(stderr,
		"\n\nprefill  %u tokens in %.2f s (%.1f tokens/s)\n"
		"decode   %u tokens in %.2f s (%.1f tokens/s)\n",
		prompt, t_prefill, t_prefill > 0 ? prompt / t_prefill : 0,
		decoded, t_decode, t_decode > 0 ? decoded / t_decode : 0);
	fprintf(stderr,
		"KV cache %s live (whole blocks), %s mapped; uncompressed K and V: %s (policy %s",
		kvcctl_human_bytes(st.bytes_live, live),
		kvcctl_human_bytes(st.bytes_mapped, mapped),
		kvcctl_human_bytes(full, logical), kvc_policy_name(x->pol));
	if (strcmp(kvc_policy_name(x->pol), "full"))
		fprintf(stderr, ", rate %g, %u compressions", o->policy.rate,
			compressions);
	fputs(")\n", stderr);
}

static int generate(struct gen *x, const struct gen_opts *o)
{
	const struct kvc_llama_config *cfg = kvc_llama_config(x->m);
	uint32_t n_prompt, i, decoded = 0, compressions = 0;
	enum kvc_metric_kind metric;
	struct kvc_model_shape shape;
	struct kvc_kv_params kp;
	struct kvc_observe obs;
	double t0, t_prefill, t_decode = 0;
	uint64_t rng = o->seed * 2 + 1;
	int32_t *ids = NULL, next;
	char *text = NULL;
	size_t len;
	int err;

	/* The chat template of SmolLM2-Instruct (ChatML), one user turn. */
	if (o->chat) {
		len = strlen(o->prompt) + 64;
		text = malloc(len);
		if (!text)
			return -ENOMEM;
		snprintf(
			text, len,
			"<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
			o->prompt);
	}
	err = kvc_tok_encode(x->tok, text ? text : o->prompt,
			     strlen(text ? text : o->prompt), &ids, &n_prompt);
	free(text);
	if (err)
		return err;
	if (!n_prompt ||
	    (cfg->context && (uint64_t)n_prompt + o->tokens > cfg->context)) {
		free(ids);
		return kvc_err(
			-EINVAL,
			"%u prompt tokens + %u more do not fit the model's context of %u",
			n_prompt, o->tokens, cfg->context);
	}

	kvc_llama_shape(x->m, BLOCK_SIZE, KVC_DTYPE_F16, &shape);
	err = kvc_policy_create(&o->policy, &shape, &x->pol);
	if (err) {
		free(ids);
		return err;
	}
	kvc_policy_observe(x->pol, &obs);
	metric = kvc_policy_decode_metric(x->pol);

	memset(&kp, 0, sizeof(kp));
	kp.shape = shape;
	/* Every token at full length bounds what is ever live. */
	kp.capacity_blocks = ((uint64_t)n_prompt + o->tokens + BLOCK_SIZE) /
			     BLOCK_SIZE * shape.layers * shape.kv_heads;
	kp.backend_kind = KVC_BACKEND_HOST;
	kp.name = "kvcctl generate";
	err = kvc_kv_create(&kp, &x->kv);
	if (!err)
		err = kvc_seq_create(x->kv, &x->seq);
	x->logits = malloc((size_t)cfg->vocab * sizeof(*x->logits));
	x->cand = malloc((size_t)cfg->vocab * sizeof(*x->cand));
	if (!err && (!x->logits || !x->cand))
		err = kvc_err(-ENOMEM, "out of memory for %u logits",
			      cfg->vocab);
	if (err) {
		free(ids);
		return err;
	}

	if (!o->chat) {
		fputs(o->prompt, stdout);
		fflush(stdout);
	}
	t0 = kvcctl_now_s();
	err = kvc_llama_forward(x->m, x->seq, ids, n_prompt, &obs, metric,
				x->logits, false);
	free(ids);
	if (err)
		return err;
	t_prefill = kvcctl_now_s() - t0;
	err = maybe_compress(x, 0, &compressions);
	if (err)
		return err;

	for (i = 0; i < o->tokens; i++) {
		next = sample(o, x->logits, cfg->vocab, x->cand, &rng);
		if (next == kvc_tok_eos(x->tok))
			break;
		put_piece(x, next);
		if (i + 1 == o->tokens)
			break;
		t0 = kvcctl_now_s();
		err = kvc_llama_forward(x->m, x->seq, &next, 1, NULL, metric,
					x->logits, false);
		if (err)
			return err;
		t_decode += kvcctl_now_s() - t0;
		decoded++;
		err = maybe_compress(x, decoded, &compressions);
		if (err)
			return err;
	}
	put_summary(x, o, n_prompt, t_prefill, decoded, t_decode, compressions);
	return 0;
}

int kvcctl_generate(int argc, char **argv)
{
	struct gen_opts o;
	struct gen x;
	int status, err;

	status = parse_options(argc, argv, &o);
	if (status >= 0)
		return status;
	memset(&x, 0, sizeof(x));
	err = load(&x, &o);
	if (!err) {
		err = generate(&x, &o);
		if (err)
			fprintf(stderr, "\nkvcctl generate: %s\n",
				kvc_last_error());
	}
	gen_free(&x);
	return err ? KVCCTL_EXIT_FAIL : KVCCTL_EXIT_OK;
}
