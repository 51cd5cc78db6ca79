// SPDX-License-Identifier: MIT
/*
 * `kvcctl eval`: what an eviction policy costs a real model's predictions.
 * Teacher forcing over a text: prefill its first P tokens, compress the
 * cache with the policy at a rate, feed the next T true tokens one at a
 * time, and compare each step's next-token distribution with the one the
 * full cache gives (top-1 agreement, KL(full || compressed), perplexity),
 * and say what the cache holds at the end (live and mapped bytes).
 *
 * The full-cache run is done once per text; only the log-softmax of its
 * T + 1 logit vectors is kept. Rate 1 and the "full" policy never evict,
 * so their compressed run is that run, and it is reported as such rather
 * than computed again.
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
#include "plot.h"

#define CMD "eval"

#define DEFAULT_RATES "1,2,4,8,16,32,64"
#define MAX_RATES 32
#define MAX_RATE 1e6
#define MAX_COUNT 0x100000u

static const char *const all_policies[] = {
	"kvcompress", "full",	   "streamingllm", "h2o",
	"snapkv",     "pyramidkv", "pyramidinfer", "window",
};

#define NR_ALL (sizeof(all_policies) / sizeof(all_policies[0]))

/**
 * struct eval_opts - What `kvcctl eval` was asked to do.
 * @text: the text file.
 * @model: the GGUF file.
 * @rates: the rates, in the order given.
 * @nr_rates: their count.
 * @policies: the policy names.
 * @nr_policies: their count.
 * @policy_list: --policies as typed (the names point into a copy).
 * @prefill: tokens prefilled before compression.
 * @tokens: teacher-forced decode steps after it.
 * @json: print JSON.
 * @csv: print CSV.
 * @plot: PNG to draw, or NULL.
 * @progress: draw a progress bar on stderr.
 */
struct eval_opts {
	const char *text;
	const char *model;
	double rates[MAX_RATES];
	uint32_t nr_rates;
	const char *policies[NR_ALL * 4];
	uint32_t nr_policies;
	char *policy_list;
	uint32_t prefill;
	uint32_t tokens;
	bool json;
	bool csv;
	const char *plot;
	bool progress;
};

/**
 * struct eval_row - The measures of one (policy, rate).
 * @policy: the policy's name.
 * @rate: the rate.
 * @top1: fraction of steps whose most likely token is the full cache's.
 * @kl: mean KL(full || compressed) per step, in nats.
 * @ppl: perplexity of the true tokens with the compressed cache.
 * @ppl_full: the same with the full cache.
 * @live_bytes: the pool's live block bytes after the last step.
 * @mapped_bytes: the pool's mapped bytes after the last step.
 */
struct eval_row {
	const char *policy;
	double rate;
	double top1;
	double kl;
	double ppl;
	double ppl_full;
	uint64_t live_bytes;
	uint64_t mapped_bytes;
};

enum {
	OPT_TEXT = 256,
	OPT_MODEL,
	OPT_RATES,
	OPT_POLICIES,
	OPT_PREFILL,
	OPT_TOKENS,
	OPT_CSV,
	OPT_PLOT,
	OPT_PROGRESS,
};

static const char short_opts[] = ":jh";

static const struct option long_opts[] = {
	{ "text", required_argument, NULL, OPT_TEXT },
	{ "model", required_argument, NULL, OPT_MODEL },
	{ "rates", required_argument, NULL, OPT_RATES },
	{ "policies", required_argument, NULL, OPT_POLICIES },
	{ "prefill", required_argument, NULL, OPT_PREFILL },
	{ "tokens", required_argument, NULL, OPT_TOKENS },
	{ "json", no_argument, NULL, 'j' },
	{ "csv", no_argument, NULL, OPT_CSV },
	{ "plot", required_argument, NULL, OPT_PLOT },
	{ "progress", no_argument, NULL, OPT_PROGRESS },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
	"Usage: kvcctl eval --text FILE [OPTIONS]\n"
	"\n"
	"Measure what KV cache compression costs a model's predictions, by\n"
	"teacher forcing over a text: prefill its first P tokens, compress the\n"
	"cache with a policy at a rate, then feed the next T true tokens one\n"
	"at a time and compare each step's next-token distribution with the\n"
	"full cache's: top-1 agreement, mean KL(full || compressed) and the\n"
	"perplexity of both; then the cache's live and mapped bytes. Rate 1\n"
	"does not compress. window and streamingllm keep P / rate recent\n"
	"tokens.\n"
	"\n"
	"  --text FILE          the text (needs at least P + T + 1 tokens)\n"
	"  --model FILE         the GGUF model (default\n"
	"                       " KVCCTL_MODEL_DEFAULT ";\n"
	"                       'make model' downloads it)\n"
	"  --rates LIST         compression rates, >= 1 (default " DEFAULT_RATES
	")\n"
	"  --policies LIST|all  kvcompress, full, streamingllm, h2o, snapkv,\n"
	"                       pyramidkv, pyramidinfer, window (default all)\n"
	"  --prefill P          tokens before compression (default 512)\n"
	"  --tokens T           teacher-forced tokens after it (default 32)\n"
	"\n"
	"  -j, --json           print JSON: one row per (policy, rate)\n"
	"  --csv                print CSV\n"
	"  --plot FILE.png      also draw agreement and KL against the rate\n"
	"                       with gnuplot (the script is FILE.png.gp)\n"
	"  --progress           draw a progress bar on stderr even when it is\n"
	"                       not a terminal\n"
	"  -h, --help           show this help\n"
	"\n"
	"Exit status: 0 on success; 1 when the model cannot be loaded or run,\n"
	"or the plot cannot be drawn; 2 for a bad command line or an\n"
	"unreadable text file.\n";

/* ------------------------------------------------------------------ */
/* Options */

static int parse_rates(struct eval_opts *o, const char *arg)
{
	char buf[32];
	const char *p = arg;
	size_t len;

	o->nr_rates = 0;
	for (;;) {
		len = strcspn(p, ",");
		if (o->nr_rates == MAX_RATES)
			return kvcctl_usage_error(
				CMD, "--rates: more than %d rates", MAX_RATES);
		if (!len || len >= sizeof(buf))
			return kvcctl_usage_error(
				CMD, "--rates: '%s' is not a list of numbers",
				arg);
		memcpy(buf, p, len);
		buf[len] = '\0';
		if (kvcctl_parse_seconds(buf, 1, MAX_RATE,
					 &o->rates[o->nr_rates]))
			return kvcctl_usage_error(
				CMD,
				"--rates: '%s' is not a number from 1 to %g",
				buf, MAX_RATE);
		o->nr_rates++;
		if (!p[len])
			return -1;
		p += len + 1;
	}
}

static int parse_policies(struct eval_opts *o, const char *arg)
{
	struct kvc_policy_params pp;
	char *save = NULL, *name;
	uint32_t i;

	o->nr_policies = 0;
	if (!strcmp(arg, "all")) {
		for (i = 0; i < NR_ALL; i++)
			o->policies[o->nr_policies++] = all_policies[i];
		return -1;
	}
	free(o->policy_list);
	o->policy_list = strdup(arg);
	if (!o->policy_list)
		return kvcctl_usage_error(CMD, "out of memory");
	for (name = strtok_r(o->policy_list, ",", &save); name;
	     name = strtok_r(NULL, ",", &save)) {
		if (o->nr_policies ==
		    sizeof(o->policies) / sizeof(o->policies[0]))
			return kvcctl_usage_error(CMD,
						  "--policies: too many names");
		kvc_policy_params_init(&pp);
		pp.name = name;
		if (kvcctl_model_check_policy(&pp))
			return kvcctl_usage_error(CMD, "--policies: %s",
						  kvc_last_error());
		o->policies[o->nr_policies++] = name;
	}
	if (!o->nr_policies)
		return kvcctl_usage_error(CMD, "--policies: the list is empty");
	return -1;
}

static int parse_option(struct eval_opts *o, int opt, const char *arg)
{
	switch (opt) {
	case OPT_TEXT:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--text: the file name is empty");
		o->text = arg;
		return -1;
	case OPT_MODEL:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--model: the file name is empty");
		o->model = arg;
		return -1;
	case OPT_RATES:
		return parse_rates(o, arg);
	case OPT_POLICIES:
		return parse_policies(o, arg);
	case OPT_PREFILL:
		return kvcctl_opt_u32(CMD, long_opts, opt, arg, 1, MAX_COUNT,
				      &o->prefill);
	case OPT_TOKENS:
		return kvcctl_opt_u32(CMD, long_opts, opt, arg, 1, MAX_COUNT,
				      &o->tokens);
	case 'j':
		o->json = true;
		return -1;
	case OPT_CSV:
		o->csv = true;
		return -1;
	case OPT_PLOT:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--plot: the file name is empty");
		o->plot = arg;
		return -1;
	case OPT_PROGRESS:
		o->progress = true;
		return -1;
	}
	return kvcctl_usage_error(CMD, "option %d not handled", opt);
}

/* parse_option() as kvcctl_getopt() calls it. */
static int parse_one(void *o, int opt, const char *arg)
{
	return parse_option(o, opt, arg);
}

static int parse_options(int argc, char **argv, struct eval_opts *o)
{
	int status;

	memset(o, 0, sizeof(*o));
	o->model = KVCCTL_MODEL_DEFAULT;
	o->prefill = 512;
	o->tokens = 32;
	parse_rates(o, DEFAULT_RATES);
	parse_policies(o, "all");
	status = kvcctl_getopt(CMD, argc, argv, short_opts, long_opts,
			       usage_text, parse_one, o);
	if (status >= 0)
		return status;
	if (!o->text)
		return kvcctl_usage_error(CMD, "--text FILE is required");
	if (o->json && o->csv)
		return kvcctl_usage_error(
			CMD, "--json and --csv exclude each other");
	o->progress = o->progress || isatty(STDERR_FILENO);
	return -1;
}

/* The whole of @path, NUL-terminated. */
static int read_text(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 1 << 16, n = 0, got;
	char *buf, *p;
	int err = 0;

	if (!f)
		return kvcctl_usage_error(CMD, "--text: cannot open %s: %s",
					  path, strerror(errno));
	buf = malloc(cap);
	while (buf) {
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (n + 1 < cap)
			break;
		cap *= 2;
		p = realloc(buf, cap);
		if (!p)
			free(buf);
		buf = p;
	}
	if (ferror(f))
		err = errno ? errno : EIO;
	fclose(f);
	if (!buf)
		return kvcctl_usage_error(CMD, "--text: out of memory for %s",
					  path);
	if (err) {
		free(buf);
		return kvcctl_usage_error(CMD, "--text: cannot read %s: %s",
					  path, strerror(err));
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return -1;
}

/* ------------------------------------------------------------------ */
/* The runs */

/**
 * struct eval - The state of an evaluation.
 * @o: the options.
 * @g: the file.
 * @tok: its tokenizer.
 * @m: its model.
 * @vocab: logits per vector.
 * @ids: the text's tokens.
 * @nr_ids: their count.
 * @ref: log-softmax of the full cache's T + 1 logit vectors: [0] after
 *       the prefill, [t] after true token P + t - 1.
 * @logits: scratch for one vector.
 * @full: the full cache's row (rate 1).
 * @rows: the results, policy-major.
 * @nr_rows: their count.
 * @done: runs finished, for the progress bar.
 * @total: runs to do.
 * @cut_bytes: the text was cut to its first @cut_bytes bytes (0 = whole).
 */
struct eval {
	const struct eval_opts *o;
	struct kvc_gguf *g;
	struct kvc_tokenizer *tok;
	struct kvc_llama *m;
	uint32_t vocab;
	int32_t *ids;
	uint32_t nr_ids;
	float *ref;
	float *logits;
	struct eval_row full;
	struct eval_row *rows;
	uint32_t nr_rows;
	uint32_t done;
	uint32_t total;
	size_t cut_bytes;
};

static void progress(const struct eval *e, const char *policy, double rate,
		     uint32_t step)
{
	uint32_t steps = e->o->tokens + 1, width = 30, fill, i;
	double frac;

	if (!e->o->progress)
		return;
	frac = ((double)e->done + (double)step / steps) /
	       (e->total ? e->total : 1);
	fill = (uint32_t)(frac * width);
	fputs("\r[", stderr);
	for (i = 0; i < width; i++)
		fputc(i < fill ? '#' : ' ', stderr);
	fprintf(stderr, "] %3.0f%% %-12s rate %-5g step %u/%u ", frac * 100,
		policy, rate, step, steps);
	fflush(stderr);
}

static void progress_end(const struct eval *e)
{
	if (e->o->progress)
		fprintf(stderr, "\r%*s\r", 78, "");
}

/* In place: logits to log-probabilities. */
static void log_softmax(float *x, uint32_t n)
{
	double sum = 0;
	float max = x[0];
	uint32_t i;

	for (i = 1; i < n; i++)
		if (x[i] > max)
			max = x[i];
	for (i = 0; i < n; i++)
		sum += exp((double)x[i] - max);
	for (i = 0; i < n; i++)
		x[i] = (float)((double)x[i] - max - log(sum));
}

/* KL(p || q) of two log-probability vectors. */
static double kl_div(const float *lp, const float *lq, uint32_t n)
{
	double kl = 0;
	uint32_t i;

	for (i = 0; i < n; i++)
		kl += exp((double)lp[i]) * ((double)lp[i] - lq[i]);
	return kl > 0 ? kl : 0;
}

static int open_cache(const struct eval *e, struct kvc_kv **kv,
		      struct kvc_seq **seq)
{
	struct kvc_kv_params kp;
	int err;

	memset(&kp, 0, sizeof(kp));
	kvcctl_model_shape(e->m, &kp.shape);
	kp.capacity_blocks = kvcctl_model_capacity(
		&kp.shape, (uint64_t)e->o->prefill + e->o->tokens);
	kp.backend_kind = KVC_BACKEND_HOST;
	/* Many short-lived caches: no stats page for each. */
	kp.flags = KVC_POOL_NO_STATS_PAGE;
	err = kvc_kv_create(&kp, kv);
	if (err)
		return err;
	err = kvc_seq_create(*kv, seq);
	if (err) {
		kvc_kv_destroy(*kv);
		*kv = NULL;
	}
	return err;
}

static void pool_bytes(struct kvc_kv *kv, struct eval_row *row)
{
	struct kvc_pool_stats st;

	kvc_pool_get_stats(kvc_kv_pool(kv), &st, NULL);
	row->live_bytes = st.bytes_live;
	row->mapped_bytes = st.bytes_mapped;
}

/* The full cache, once: keep its log-probabilities, measure its ppl. */
static int run_full(struct eval *e)
{
	const uint32_t P = e->o->prefill, T = e->o->tokens;
	struct kvc_kv *kv = NULL;
	struct kvc_seq *seq = NULL;
	double nll = 0;
	uint32_t t;
	float *v;
	int err;

	err = open_cache(e, &kv, &seq);
	if (err)
		return err;
	progress(e, "full cache", 1, 0);
	err = kvc_llama_forward(e->m, seq, e->ids, P, NULL, KVC_METRIC_NONE,
				e->ref, false);
	if (!err)
		log_softmax(e->ref, e->vocab);
	for (t = 1; !err && t <= T; t++) {
		progress(e, "full cache", 1, t);
		v = e->ref + (size_t)t * e->vocab;
		err = kvc_llama_forward(e->m, seq, &e->ids[P + t - 1], 1, NULL,
					KVC_METRIC_NONE, v, false);
		if (err)
			break;
		log_softmax(v, e->vocab);
		nll -= v[e->ids[P + t]];
	}
	if (!err) {
		e->full.policy = "full";
		e->full.rate = 1;
		e->full.top1 = 1;
		e->full.kl = 0;
		e->full.ppl = e->full.ppl_full = exp(nll / T);
		pool_bytes(kv, &e->full);
	}
	kvc_seq_destroy(seq);
	kvc_kv_destroy(kv);
	e->done++;
	return err;
}

static int run_policy(struct eval *e, const char *name, double rate,
		      struct eval_row *row)
{
	const uint32_t P = e->o->prefill, T = e->o->tokens;
	struct kvc_policy_params pp;
	struct kvc_model_shape shape;
	enum kvc_metric_kind metric;
	struct kvc_policy *pol = NULL;
	struct kvc_kv *kv = NULL;
	struct kvc_seq *seq = NULL;
	struct kvc_observe obs;
	double nll = 0, kl = 0;
	uint32_t t, agree = 0;
	const float *ref;
	int err;

	row->policy = name;
	row->rate = rate;
	row->ppl_full = e->full.ppl_full;
	if (rate == 1 || !strcmp(name, "full")) {
		*row = e->full;
		row->policy = name;
		row->rate = rate;
		return 0;
	}

	kvc_policy_params_init(&pp);
	pp.name = name;
	pp.rate = rate;
	/* The windowed policies keep as many recent tokens as the rate. */
	pp.window_tokens = (uint32_t)ceil(P / rate);
	if (!pp.window_tokens)
		pp.window_tokens = 1;
	kvcctl_policy_published(&pp);
	kvcctl_model_shape(e->m, &shape);
	err = kvc_policy_create(&pp, &shape, &pol);
	if (err)
		return err;
	kvc_policy_observe(pol, &obs);
	metric = kvc_policy_decode_metric(pol);
	err = open_cache(e, &kv, &seq);
	if (err)
		goto out;

	progress(e, name, rate, 0);
	err = kvc_llama_forward(e->m, seq, e->ids, P, &obs, metric, e->logits,
				false);
	if (!err)
		err = kvcctl_model_compress(pol, kv, seq, 0, NULL);
	for (t = 1; !err && t <= T; t++) {
		progress(e, name, rate, t);
		err = kvc_llama_forward(e->m, seq, &e->ids[P + t - 1], 1, NULL,
					metric, e->logits, false);
		if (err)
			break;
		log_softmax(e->logits, e->vocab);
		ref = e->ref + (size_t)t * e->vocab;
		agree += kvcctl_argmax(ref, e->vocab) ==
			 kvcctl_argmax(e->logits, e->vocab);
		kl += kl_div(ref, e->logits, e->vocab);
		nll -= e->logits[e->ids[P + t]];
		err = kvcctl_model_compress(pol, kv, seq, t, NULL);
	}
	if (!err) {
		row->top1 = (double)agree / T;
		row->kl = kl / T;
		row->ppl = exp(nll / T);
		pool_bytes(kv, row);
	}
out:
	kvc_seq_destroy(seq);
	kvc_kv_destroy(kv);
	kvc_policy_destroy(pol);
	return err;
}

static int load(struct eval *e)
{
	const struct eval_opts *o = e->o;
	const struct kvc_llama_config *cfg;
	uint64_t need = (uint64_t)o->prefill + o->tokens + 1;
	char *text = NULL;
	size_t len = 0;
	int status;

	status = read_text(o->text, &text, &len);
	if (status >= 0)
		return status;
	if (kvcctl_model_load(CMD, o->model, &e->g, &e->tok, &e->m)) {
		free(text);
		return KVCCTL_EXIT_FAIL;
	}
	/*
	 * Only the first P + T + 1 tokens are used: a long text is cut to a
	 * prefix that holds them many times over (a token is rarely longer
	 * than a few bytes), so a book costs no more than a page.
	 */
	if (len / 64 > need + 4096) {
		len = (need + 4096) * 64;
		e->cut_bytes = len;
	}
	if (kvc_tok_encode(e->tok, text, len, &e->ids, &e->nr_ids)) {
		free(text);
		fprintf(stderr, "kvcctl eval: %s\n", kvc_last_error());
		return KVCCTL_EXIT_FAIL;
	}
	free(text);
	cfg = kvc_llama_config(e->m);
	if (e->nr_ids < need)
		return kvcctl_usage_error(
			CMD,
			"%s has %u tokens; --prefill %u and --tokens %u need %" PRIu64,
			o->text, e->nr_ids, o->prefill, o->tokens, need);
	if (cfg->context && need - 1 > cfg->context)
		return kvcctl_usage_error(
			CMD,
			"--prefill %u + --tokens %u exceed the model's context of %u",
			o->prefill, o->tokens, cfg->context);
	for (len = 0; len < need; len++)
		if (e->ids[len] < 0 || (uint32_t)e->ids[len] >= cfg->vocab) {
			fprintf(stderr,
				"kvcctl eval: token %d is outside the model's vocabulary of %u\n",
				e->ids[len], cfg->vocab);
			return KVCCTL_EXIT_FAIL;
		}
	e->vocab = cfg->vocab;
	e->ref = malloc((size_t)(o->tokens + 1) * e->vocab * sizeof(float));
	e->logits = malloc((size_t)e->vocab * sizeof(float));
	e->rows =
		calloc((size_t)o->nr_policies * o->nr_rates, sizeof(*e->rows));
	if (!e->ref || !e->logits || !e->rows) {
		fprintf(stderr, "kvcctl eval: out of memory for %llu logits\n",
			(unsigned long long)(o->tokens + 1) * e->vocab);
		return KVCCTL_EXIT_FAIL;
	}
	return -1;
}

static void eval_free(struct eval *e)
{
	free(e->rows);
	free(e->logits);
	free(e->ref);
	free(e->ids);
	kvc_llama_free(e->m);
	kvc_tok_free(e->tok);
	kvc_gguf_close(e->g);
}

/* ------------------------------------------------------------------ */
/* Output */

static void put_real(FILE *out, double v)
{
	if (isfinite(v))
		fprintf(out, "%.6g", v);
	else
		fputs("null", out);
}

static void put_json(FILE *out, const struct eval *e)
{
	const struct eval_opts *o = e->o;
	uint32_t i;

	fputs("{\n  \"text\": ", out);
	kvcctl_json_string(out, o->text);
	fputs(",\n  \"model\": ", out);
	kvcctl_json_string(out, o->model);
	fprintf(out,
		",\n  \"text_tokens\": %u,\n  \"prefill\": %u,\n  \"tokens\": %u,\n  \"rows\": [\n",
		e->nr_ids, o->prefill, o->tokens);
	for (i = 0; i < e->nr_rows; i++) {
		const struct eval_row *r = &e->rows[i];

		fputs("    {\"policy\": ", out);
		kvcctl_json_string(out, r->policy);
		fputs(", \"rate\": ", out);
		put_real(out, r->rate);
		fputs(", \"top1_agreement\": ", out);
		put_real(out, r->top1);
		fputs(", \"kl\": ", out);
		put_real(out, r->kl);
		fputs(", \"ppl\": ", out);
		put_real(out, r->ppl);
		fputs(", \"ppl_full\": ", out);
		put_real(out, r->ppl_full);
		fprintf(out,
			", \"live_bytes\": %" PRIu64
			", \"mapped_bytes\": %" PRIu64 "}%s\n",
			r->live_bytes, r->mapped_bytes,
			i + 1 < e->nr_rows ? "," : "");
	}
	fputs("  ]\n}\n", out);
}

static void put_csv(FILE *out, const struct eval *e)
{
	uint32_t i;

	fputs("policy,rate,top1_agreement,kl,ppl,ppl_full,live_bytes,mapped_bytes\n",
	      out);
	for (i = 0; i < e->nr_rows; i++) {
		const struct eval_row *r = &e->rows[i];

		fprintf(out,
			"%s,%g,%.6g,%.6g,%.6g,%.6g,%" PRIu64 ",%" PRIu64 "\n",
			r->policy, r->rate, r->top1, r->kl, r->ppl, r->ppl_full,
			r->live_bytes, r->mapped_bytes);
	}
}

static void put_table(FILE *out, const struct eval *e)
{
	char path[256], live[KVCCTL_BYTES_LEN], mapped[KVCCTL_BYTES_LEN];
	uint32_t i;

	kvcctl_sanitize(path, sizeof(path), e->o->text);
	fprintf(out, "text    %s, %u tokens", path, e->nr_ids);
	if (e->cut_bytes)
		fprintf(out, " in its first %zu bytes", e->cut_bytes);
	fprintf(out, ": %u prefilled, %u teacher-forced\n", e->o->prefill,
		e->o->tokens);
	kvcctl_sanitize(path, sizeof(path), e->o->model);
	fprintf(out, "model   %s\n\n", path);
	fprintf(out, "%-13s %6s %7s %9s %9s %9s %11s %11s\n", "policy", "rate",
		"top1", "KL", "ppl", "ppl full", "live", "mapped");
	for (i = 0; i < e->nr_rows; i++) {
		const struct eval_row *r = &e->rows[i];

		fprintf(out, "%-13s %6g %7.3f %9.5f %9.3f %9.3f %11s %11s\n",
			r->policy, r->rate, r->top1, r->kl, r->ppl, r->ppl_full,
			kvcctl_human_bytes(r->live_bytes, live),
			kvcctl_human_bytes(r->mapped_bytes, mapped));
	}
}

static void plot_panel(FILE *f, const struct eval *e, const char *dat,
		       int column)
{
	uint32_t i;

	fputs("plot ", f);
	for (i = 0; i < e->o->nr_policies; i++) {
		kvcctl_gp_string(f, dat);
		fprintf(f, " index %u using 1:%d with linespoints title '%s'%s",
			i, column, e->o->policies[i],
			i + 1 < e->o->nr_policies ? ", \\\n     " : "\n");
	}
}

/* Data and script beside the PNG, then gnuplot; 0 or the exit status. */
static int plot(const struct eval *e)
{
	const char *png = e->o->plot;
	size_t len = strlen(png) + 8;
	char *dat = malloc(len), *gp = malloc(len);
	uint32_t p, r;
	FILE *f = NULL;
	int status = KVCCTL_EXIT_FAIL;

	if (!dat || !gp)
		goto out;
	snprintf(dat, len, "%s.dat", png);
	snprintf(gp, len, "%s.gp", png);
	f = fopen(dat, "w");
	if (!f) {
		fprintf(stderr, "kvcctl eval: --plot: cannot write %s: %s\n",
			dat, strerror(errno));
		goto out;
	}
	/* One gnuplot data block per policy, two blank lines apart. */
	for (p = 0; p < e->o->nr_policies; p++) {
		fprintf(f, "# %s: rate top1_agreement kl\n", e->o->policies[p]);
		for (r = 0; r < e->o->nr_rates; r++) {
			const struct eval_row *row =
				&e->rows[p * e->o->nr_rates + r];

			fprintf(f, "%g %.6g %.6g\n", row->rate, row->top1,
				row->kl);
		}
		fputs("\n\n", f);
	}
	if (fclose(f)) {
		f = NULL;
		fprintf(stderr, "kvcctl eval: --plot: cannot write %s\n", dat);
		goto out;
	}
	f = fopen(gp, "w");
	if (!f) {
		fprintf(stderr, "kvcctl eval: --plot: cannot write %s: %s\n",
			gp, strerror(errno));
		goto out;
	}
	fputs("set terminal png size 1200,500\nset output ", f);
	kvcctl_gp_string(f, png);
	fprintf(f,
		"\nset logscale x 2\nset xlabel 'compression rate'\n"
		"set grid\nset key left bottom\n"
		"set multiplot layout 1,2 title 'KV cache eviction, %u prefilled + %u teacher-forced tokens'\n"
		"set ylabel 'top-1 agreement with the full cache'\n"
		"set yrange [0:1.05]\n",
		e->o->prefill, e->o->tokens);
	plot_panel(f, e, dat, 2);
	fputs("set ylabel 'KL(full || compressed), nats'\n"
	      "set autoscale y\nset key left top\n",
	      f);
	plot_panel(f, e, dat, 3);
	fputs("unset multiplot\n", f);
	if (fclose(f)) {
		f = NULL;
		fprintf(stderr, "kvcctl eval: --plot: cannot write %s\n", gp);
		goto out;
	}
	f = NULL;
	if (!kvcctl_in_path("gnuplot")) {
		fprintf(stderr,
			"kvcctl eval: --plot: gnuplot is not installed; the script is %s (run 'gnuplot %s' where it is)\n",
			gp, gp);
		goto out;
	}
	/* Our flush first: it keeps a failed write's errno for the status. */
	kvcctl_flush();
	/* In our directory: the script's paths are relative to it. */
	if (kvcctl_run_gnuplot(NULL, gp, NULL)) {
		fprintf(stderr, "kvcctl eval: --plot: gnuplot %s failed\n", gp);
		goto out;
	}
	fprintf(stderr, "kvcctl eval: plotted %s\n", png);
	status = 0;
out:
	if (f)
		fclose(f);
	free(dat);
	free(gp);
	return status;
}

static int evaluate(struct eval *e)
{
	const struct eval_opts *o = e->o;
	uint32_t p, r, runs = 1;
	double t0 = kvcctl_now_s();
	int err;

	for (p = 0; p < o->nr_policies; p++)
		for (r = 0; r < o->nr_rates; r++)
			runs += o->rates[r] != 1 &&
				strcmp(o->policies[p], "full");
	e->total = runs;
	err = run_full(e);
	for (p = 0; !err && p < o->nr_policies; p++) {
		for (r = 0; !err && r < o->nr_rates; r++) {
			err = run_policy(e, o->policies[p], o->rates[r],
					 &e->rows[e->nr_rows]);
			if (!err)
				e->nr_rows++;
			if (o->rates[r] != 1 && strcmp(o->policies[p], "full"))
				e->done++;
		}
	}
	progress_end(e);
	if (err) {
		fprintf(stderr, "kvcctl eval: %s\n", kvc_last_error());
		return KVCCTL_EXIT_FAIL;
	}
	fprintf(stderr, "kvcctl eval: %u model runs in %.1f s\n", runs,
		kvcctl_now_s() - t0);
	return -1;
}

int kvcctl_eval(int argc, char **argv)
{
	struct eval_opts o;
	struct eval e;
	int status;

	status = parse_options(argc, argv, &o);
	if (status < 0) {
		memset(&e, 0, sizeof(e));
		e.o = &o;
		status = load(&e);
		if (status < 0)
			status = evaluate(&e);
		if (status < 0) {
			if (o.json)
				put_json(stdout, &e);
			else if (o.csv)
				put_csv(stdout, &e);
			else
				put_table(stdout, &e);
			status = o.plot ? plot(&e) : KVCCTL_EXIT_OK;
		}
		eval_free(&e);
	}
	free(o.policy_list);
	return status;
}
