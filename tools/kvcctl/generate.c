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

#include <kvc/kvc.h>
#include <kvc/evict.h>
#include <kvc/stats.h>

#include "../../alloc/error.h"
#include "../../model/gguf.h"
#include "../../model/llama.h"
#include "../../model/tokenizer.h"
#include "kvcctl.h"

#define CMD "generate"

#define DEFAULT_PROMPT "Once upon a time"
#define MAX_TOKENS 0x100000u
#define MAX_RATE 1e6

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
	"                       " KVCCTL_MODEL_DEFAULT ";\n"
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

static int parse_option(struct gen_opts *o, int opt, const char *arg)
{
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
		return kvcctl_opt_u32(CMD, long_opts, opt, arg, 1, MAX_TOKENS,
				      &o->tokens);
	case OPT_TEMPERATURE:
		return kvcctl_opt_real(CMD, long_opts, opt, arg, 0, 100,
				       &o->temperature);
	case OPT_TOP_P:
		if (kvcctl_parse_seconds(arg, 0, 1, &o->top_p) || o->top_p <= 0)
			return kvcctl_usage_error(
				CMD, "--top-p: '%s' is not a number in (0, 1]",
				arg);
		return -1;
	case OPT_SEED:
		return kvcctl_opt_u64(CMD, long_opts, opt, arg, 0, UINT64_MAX,
				      &o->seed);
	case OPT_POLICY:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--policy: the name is empty");
		o->policy.name = arg;
		return -1;
	case OPT_RATE:
		return kvcctl_opt_real(CMD, long_opts, opt, arg, 1, MAX_RATE,
				       &o->policy.rate);
	case OPT_CHAT:
		o->chat = true;
		return -1;
	}
	return kvcctl_usage_error(CMD, "option %d not handled", opt);
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
	o->model = KVCCTL_MODEL_DEFAULT;
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
	/* A bad policy is refused before the model loads. */
	if (kvcctl_model_check_policy(&o->policy))
		return kvcctl_usage_error(CMD, "%s", kvc_last_error());
	return -1;
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

/* The nucleus order: more probable first, then the lower id. */
static bool cand_before(const struct cand *a, const struct cand *b)
{
	return a->p > b->p || (a->p == b->p && a->id < b->id);
}

/* Restore the heap below @i, the first in nucleus order at the root. */
static void sift_down(struct cand *c, size_t n, size_t i)
{
	struct cand t;
	size_t child;

	for (;;) {
		child = 2 * i + 1;
		if (child >= n)
			return;
		if (child + 1 < n && cand_before(&c[child + 1], &c[child]))
			child++;
		if (!cand_before(&c[child], &c[i]))
			return;
		t = c[i];
		c[i] = c[child];
		c[child] = t;
		i = child;
	}
}

/*
 * A draw in proportion to @c[i].p over the whole vocabulary, in token
 * order; rounding never picks a token of probability 0.
 */
static int32_t draw_all(const struct cand *c, uint32_t n, double sum,
			uint64_t *rng)
{
	double r = rand_unit(rng) * sum;
	uint32_t i, last = 0;

	for (i = 0; i < n; i++) {
		if (!(c[i].p > 0))
			continue;
		last = i;
		r -= c[i].p;
		if (r <= 0)
			break;
	}
	return c[last].id;
}

/*
 * The smallest set of most probable tokens whose mass reaches top_p, and a
 * draw in it. A heap orders only the tokens kept (few, when top_p cuts at
 * all) instead of sorting the whole vocabulary every token.
 */
static int32_t draw_nucleus(struct cand *c, uint32_t n, double sum,
			    double top_p, uint64_t *rng)
{
	double mass = 0, r;
	struct cand t;
	uint32_t i, end;

	for (i = n / 2; i-- > 0;)
		sift_down(c, n, i);
	/* Pop into c[end..n), so the most probable ends up last. */
	for (end = n; end > 0;) {
		t = c[0];
		c[0] = c[end - 1];
		c[--end] = t;
		sift_down(c, end, 0);
		mass += c[end].p / sum;
		if (mass >= top_p)
			break;
	}
	r = rand_unit(rng) * mass * sum;
	for (i = n; i > end; i--) {
		r -= c[i - 1].p;
		if (r <= 0)
			return c[i - 1].id;
	}
	return c[end].id;
}

/* Greedy at temperature 0; else softmax with temperature, then top-p. */
static int32_t sample(const struct gen_opts *o, const float *logits, uint32_t n,
		      struct cand *c, uint64_t *rng)
{
	uint32_t i, best = kvcctl_argmax(logits, n);
	float max = logits[best];
	double sum = 0;

	if (o->temperature <= 0)
		return (int32_t)best;
	for (i = 0; i < n; i++) {
		c[i].p = expf((float)((logits[i] - max) / o->temperature));
		c[i].id = (int32_t)i;
		sum += c[i].p;
	}
	if (o->top_p >= 1)
		return draw_all(c, n, sum, rng);
	return draw_nucleus(c, n, sum, o->top_p, rng);
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

	kvcctl_model_shape(x->m, &shape);
	err = kvc_policy_create(&o->policy, &shape, &x->pol);
	if (err) {
		free(ids);
		return err;
	}
	kvc_policy_observe(x->pol, &obs);
	metric = kvc_policy_decode_metric(x->pol);

	memset(&kp, 0, sizeof(kp));
	kp.shape = shape;
	kp.capacity_blocks =
		kvcctl_model_capacity(&shape, (uint64_t)n_prompt + o->tokens);
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
	err = kvcctl_model_compress(x->pol, x->kv, x->seq, 0, &compressions);
	if (err)
		return err;

	/* Decoding is sampling and the forward pass; printing is not. */
	for (i = 0; i < o->tokens; i++) {
		t0 = kvcctl_now_s();
		next = sample(o, x->logits, cfg->vocab, x->cand, &rng);
		t_decode += kvcctl_now_s() - t0;
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
		err = kvcctl_model_compress(x->pol, x->kv, x->seq, decoded,
					    &compressions);
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
	err = kvcctl_model_load(CMD, o.model, &x.g, &x.tok, &x.m);
	if (!err) {
		err = generate(&x, &o);
		if (err)
			fprintf(stderr, "\nkvcctl generate: %s\n",
				kvc_last_error());
	}
	gen_free(&x);
	return err ? KVCCTL_EXIT_FAIL : KVCCTL_EXIT_OK;
}
