// SPDX-License-Identifier: MIT
/*
 * `kvcctl replay`: replay a recorded trace exactly, or a request stream
 * (a CSV, or a trace's arrivals) logically under every combination of the
 * configuration axes given, and report what each did to the KV region:
 * a table, JSON, CSV series and gnuplot figures. Only reads options,
 * builds configurations and writes reports: every measure is
 * kvc_sim_run()'s or kvc_replay_exact()'s. Every flag is checked before
 * anything runs; configurations run on worker threads but are always
 * reported in configuration order.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <kvc/kvc.h>
#include <kvc/evict.h>
#include <kvc/record.h>
#include <kvc/sim.h>

#include "kvcctl.h"
#include "plot.h"
#include "stats.h"

#define CMD "replay"

#define MAX_CONFIGS 256
#define MAX_AXIS 64
#define MAX_COUNT 0x7fffffffull
#define MAX_RATE 1e6
#define MAX_JOBS 1024
#define DEFAULT_CONTIG_MAX_LEN 2048
#define MIB (1024.0 * 1024.0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Axis values ---- */

/* The library names layouts, placements and compaction modes. */
static const char *layout_names[KVC_LAYOUT_CONTIG_ORACLE + 1];
static const char *placement_names[KVC_PLACE_RANDOM + 1];
static const char *compact_names[KVC_SIM_COMPACT_PROACTIVE + 1];

static void names_init(void)
{
	uint32_t i;

	for (i = 0; i < ARRAY_SIZE(layout_names); i++)
		layout_names[i] = kvc_sim_layout_name((enum kvc_sim_layout)i);
	for (i = 0; i < ARRAY_SIZE(placement_names); i++)
		placement_names[i] = kvc_placement_name((enum kvc_placement)i);
	for (i = 0; i < ARRAY_SIZE(compact_names); i++)
		compact_names[i] =
			kvc_sim_compact_name((enum kvc_sim_compact)i);
}

static const char *const policy_names[] = {
	"full",	     "kvcompress",   "h2o",	     "snapkv",
	"pyramidkv", "pyramidinfer", "streamingllm", "window",
};

static bool is_contig(enum kvc_sim_layout l)
{
	return l == KVC_LAYOUT_CONTIG_MAX || l == KVC_LAYOUT_CONTIG_POW2 ||
	       l == KVC_LAYOUT_CONTIG_ORACLE;
}

/**
 * struct axes - The configuration axes, each a list of distinct values.
 * @layout: layouts; @nr_layout their count; and so on for each axis.
 * @policy: policy names (static strings of policy_names[]).
 * @rate: compression rates.
 * @chunk: chunk bytes.
 */
struct axes {
	uint32_t layout[MAX_AXIS], nr_layout;
	uint32_t placement[MAX_AXIS], nr_placement;
	const char *policy[MAX_AXIS];
	uint32_t nr_policy;
	double rate[MAX_AXIS];
	uint32_t nr_rate;
	uint32_t compact[MAX_AXIS], nr_compact;
	uint64_t chunk[MAX_AXIS];
	uint32_t nr_chunk;
	uint64_t watermark[MAX_AXIS];
	uint32_t nr_watermark;
};

/**
 * struct replay_opts - What `kvcctl replay` was asked to do.
 * @file: the trace or CSV.
 * @exact: --exact given; @logical: --logical given.
 * @logical_flag: the first flag given that only a logical replay uses.
 * @ax: the axes.
 * @model: the model's name as given.
 * @have_model: --model was given.
 * @shape: its geometry.
 * @block: --block, or 0.
 * @capacity: the KV region.
 * @max_len: --max-len, or 0 when not given.
 * @have_max_len: --max-len was given.
 * @step_s: seconds per step.
 * @max_seqs: --max-seqs (0 = none).
 * @requests: --requests (0 = all).
 * @max_steps: --max-steps (0 = none).
 * @seed: --seed; @have_seed: given.
 * @head_skew: --head-skew; @have_head_skew: given.
 * @protected_window: --protected; @have_protected: given.
 * @sinks: --sinks; @have_sinks: given.
 * @compact_high: --compact-high; @have_high: given.
 * @compact_low: --compact-low; @have_low: given.
 * @compact_budget: --compact-budget; @have_budget: given.
 * @sample_every: --sample-every (0 = every step).
 * @jobs: worker threads (0 = online CPUs).
 * @json: print JSON.
 * @csv: --csv FILE, or NULL.
 * @summary_csv: --summary-csv FILE, or NULL.
 * @plot: --plot DIR, or NULL.
 */
struct replay_opts {
	const char *file;
	bool exact, logical;
	const char *logical_flag;
	struct axes ax;
	const char *model;
	bool have_model;
	struct kvc_model_shape shape;
	uint32_t block;
	uint64_t capacity;
	uint32_t max_len;
	bool have_max_len;
	double step_s;
	uint32_t max_seqs;
	uint32_t requests;
	uint64_t max_steps;
	uint64_t seed;
	bool have_seed;
	double head_skew;
	bool have_head_skew;
	uint32_t protected_window;
	bool have_protected;
	uint32_t sinks;
	bool have_sinks;
	double compact_high, compact_low;
	bool have_high, have_low;
	uint64_t compact_budget;
	bool have_budget;
	uint32_t sample_every;
	uint32_t jobs;
	bool json;
	const char *csv;
	const char *summary_csv;
	const char *plot;
};

/**
 * struct config - One configuration and what its replay gave.
 * @p: its parameters.
 * @label: its label.
 * @res: the result.
 * @err: 0, or the replay's -errno.
 * @msg: the replay's message when @err.
 */
struct config {
	struct kvc_sim_params p;
	char label[96];
	struct kvc_sim_result res;
	int err;
	char msg[256];
};

enum {
	OPT_EXACT = 256,
	OPT_LOGICAL,
	OPT_LAYOUT,
	OPT_PLACEMENT,
	OPT_POLICY,
	OPT_RATE,
	OPT_COMPACT,
	OPT_CHUNK,
	OPT_WATERMARK,
	OPT_MODEL,
	OPT_BLOCK,
	OPT_CAPACITY,
	OPT_MAX_LEN,
	OPT_STEP_MS,
	OPT_MAX_SEQS,
	OPT_REQUESTS,
	OPT_MAX_STEPS,
	OPT_SEED,
	OPT_HEAD_SKEW,
	OPT_PROTECTED,
	OPT_SINKS,
	OPT_COMPACT_HIGH,
	OPT_COMPACT_LOW,
	OPT_COMPACT_BUDGET,
	OPT_SAMPLE_EVERY,
	OPT_JOBS,
	OPT_CSV,
	OPT_SUMMARY_CSV,
	OPT_PLOT,
};

/* A leading '-': the FILE operand comes to the parser as option 1. */
static const char short_opts[] = "-:jh";

static const struct option long_opts[] = {
	{ "exact", no_argument, NULL, OPT_EXACT },
	{ "logical", no_argument, NULL, OPT_LOGICAL },
	{ "layout", required_argument, NULL, OPT_LAYOUT },
	{ "placement", required_argument, NULL, OPT_PLACEMENT },
	{ "policy", required_argument, NULL, OPT_POLICY },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "compact", required_argument, NULL, OPT_COMPACT },
	{ "chunk", required_argument, NULL, OPT_CHUNK },
	{ "watermark", required_argument, NULL, OPT_WATERMARK },
	{ "model", required_argument, NULL, OPT_MODEL },
	{ "block", required_argument, NULL, OPT_BLOCK },
	{ "capacity", required_argument, NULL, OPT_CAPACITY },
	{ "max-len", required_argument, NULL, OPT_MAX_LEN },
	{ "step-ms", required_argument, NULL, OPT_STEP_MS },
	{ "max-seqs", required_argument, NULL, OPT_MAX_SEQS },
	{ "requests", required_argument, NULL, OPT_REQUESTS },
	{ "max-steps", required_argument, NULL, OPT_MAX_STEPS },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "head-skew", required_argument, NULL, OPT_HEAD_SKEW },
	{ "protected", required_argument, NULL, OPT_PROTECTED },
	{ "sinks", required_argument, NULL, OPT_SINKS },
	{ "compact-high", required_argument, NULL, OPT_COMPACT_HIGH },
	{ "compact-low", required_argument, NULL, OPT_COMPACT_LOW },
	{ "compact-budget", required_argument, NULL, OPT_COMPACT_BUDGET },
	{ "sample-every", required_argument, NULL, OPT_SAMPLE_EVERY },
	{ "jobs", required_argument, NULL, OPT_JOBS },
	{ "json", no_argument, NULL, 'j' },
	{ "csv", required_argument, NULL, OPT_CSV },
	{ "summary-csv", required_argument, NULL, OPT_SUMMARY_CSV },
	{ "plot", required_argument, NULL, OPT_PLOT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
	"Usage: kvcctl replay FILE [OPTIONS]\n"
	"\n"
	"Replay what a KV cache's memory went through. FILE is a trace written\n"
	"by 'kvcctl run --record' (recognised by its first bytes) or a request\n"
	"CSV with the columns ContextTokens and GeneratedTokens and, optionally,\n"
	"arrival_s (seconds; else one request per second).\n"
	"\n"
	"A trace is replayed exactly by default: its allocator events are\n"
	"applied to a fresh pool, checking the pool's invariants after every\n"
	"event and the recorded samples and closing snapshot; then the byte\n"
	"ladder's peaks and means are printed. A CSV, or a trace with\n"
	"--logical, is replayed logically: its requests are served by a\n"
	"continuous-batching scheduler over a pool that maps nothing, once per\n"
	"configuration, and the table compares where the KV region went.\n"
	"\n"
	"Mode:\n"
	"  --exact                replay a trace's allocator events (default\n"
	"                         for a trace)\n"
	"  --logical              replay a trace's request stream instead\n"
	"\n"
	"Configuration axes: comma lists; every combination is one\n"
	"configuration (at most 256). Contiguous layouts ignore the policy,\n"
	"placement, compaction, chunk and watermark, and run once each.\n"
	"  --layout LIST          per-head, paged, contig-max, contig-pow2,\n"
	"                         contig-oracle (default per-head)\n"
	"  --placement LIST       fullest, first-fit, random (default fullest)\n"
	"  --policy LIST          full, kvcompress, h2o, snapkv, pyramidkv,\n"
	"                         pyramidinfer, streamingllm, window\n"
	"                         (default full)\n"
	"  --rate LIST            compression rates, >= 1 (default 8; rate 1\n"
	"                         is the full cache)\n"
	"  --compact LIST         off, full, proactive (default full)\n"
	"  --chunk LIST           chunk sizes such as 2M, 512K; multiples of\n"
	"                         4K and of the block (default 2M; a paged\n"
	"                         layout's rounded up to whole blocks)\n"
	"  --watermark LIST       empty chunks kept mapped (default 1)\n"
	"\n"
	"Model and scheduler:\n"
	"  --model NAME|SPEC      smollm2-135m: 30 layers, 3 KV heads, head\n"
	"                         dim 64, block 16, f16 (the default, but a\n"
	"                         trace's requests default to the trace's own\n"
	"                         model); opt-13b: 40 layers, 40 KV heads, head\n"
	"                         dim 128, block 16, f16; or a spec such as\n"
	"                         layers=30,kv-heads=3,head-dim=64,block=16,dtype=f16\n"
	"  --block N              tokens per block: 8, 16 or 32 (default: the\n"
	"                         model's)\n"
	"  --capacity SIZE        the KV region (default 1G)\n"
	"  --max-len N            cut requests to N tokens, prompt first\n"
	"                         (default: no cut, except 2048 for contig-max,\n"
	"                         which reserves that much per request)\n"
	"  --step-ms MS           milliseconds one step takes (default 50)\n"
	"  --max-seqs N           most sequences running at once (default: no\n"
	"                         limit)\n"
	"  --requests N           replay only the first N requests\n"
	"  --max-steps N          stop after N steps (default: when all are\n"
	"                         done)\n"
	"  --seed N               seeds placement and eviction (default 1)\n"
	"  --head-skew S          kvcompress: spread of KVs kept per head\n"
	"                         (default 1; 0 = every head alike)\n"
	"  --protected N          never evict the last N tokens (default 32)\n"
	"  --sinks N              never evict the first N tokens (default 0)\n"
	"  --compact-high X       proactive compaction's start mark, 0 < X < 1\n"
	"                         (default 0.2)\n"
	"  --compact-low X        ... and stop mark, below the start (default\n"
	"                         0.05)\n"
	"  --compact-budget SIZE  bytes one proactive tick may copy (default:\n"
	"                         no limit)\n"
	"  --sample-every N       steps between samples kept in the series\n"
	"                         (default 1; the means weigh every step)\n"
	"  --jobs N               configurations replayed in parallel\n"
	"                         (default: the online CPUs)\n"
	"\n"
	"Output:\n"
	"  -j, --json             print the summaries as one JSON document\n"
	"  --csv FILE             write every configuration's time series\n"
	"  --summary-csv FILE     write the table as CSV\n"
	"  --plot DIR             write figures (PNG and SVG, with their data\n"
	"                         and gnuplot scripts) into DIR: timeline-N,\n"
	"                         waste, chunks-N, indices, tradeoff,\n"
	"                         concurrency; labels.txt names each N\n"
	"  -h, --help             show this help\n"
	"\n"
	"SIZE is bytes or a number with K, M, G or T (binary units).\n"
	"\n"
	"Examples:\n"
	"  kvcctl replay azure_conv.csv --requests 500 \\\n"
	"      --layout per-head,paged,contig-max,contig-oracle \\\n"
	"      --policy full,kvcompress,h2o --rate 4,8 --plot figures\n"
	"  kvcctl run --record run.kvct && kvcctl replay run.kvct\n"
	"\n"
	"Exit status: 0 on success (also when gnuplot is missing: the data and\n"
	"scripts are still written); 1 when FILE cannot be read or a replay\n"
	"fails; 2 for a bad command line.\n";

/* ---- Option values ---- */

static const char *flag(int opt)
{
	return kvcctl_long_name(long_opts, opt);
}

/* "a, b or c" into @buf. */
static const char *one_of(const char *const *names, size_t n, char *buf,
			  size_t len)
{
	size_t i, used = 0;

	buf[0] = '\0';
	for (i = 0; i < n && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
					 i ? (i + 1 < n ? ", " : " or ") : "",
					 names[i]);
	return buf;
}

static int parse_name(int opt, const char *s, const char *const *names,
		      size_t n, uint32_t *out)
{
	char list[160];
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(s, names[i])) {
			*out = (uint32_t)i;
			return -1;
		}
	return kvcctl_usage_error(CMD, "--%s: '%s' is not one of %s", flag(opt),
				  s, one_of(names, n, list, sizeof(list)));
}

/* A size: digits with an optional K, M, G or T (and B or iB). */
static int parse_size(int opt, const char *s, uint64_t min, uint64_t *out)
{
	return kvcctl_opt_bytes(CMD, long_opts, opt, s, min, out);
}

/* Whole-number options: -1 when good, else the usage error's status. */
static int parse_count(int opt, const char *arg, uint64_t min, uint64_t max,
		       uint64_t *out)
{
	return kvcctl_opt_u64(CMD, long_opts, opt, arg, min, max, out);
}

static int parse_u32(int opt, const char *arg, uint64_t min, uint64_t max,
		     uint32_t *field)
{
	return kvcctl_opt_u32(CMD, long_opts, opt, arg, min, max, field);
}

static int parse_real(int opt, const char *arg, double min, double max,
		      double *out)
{
	return kvcctl_opt_real(CMD, long_opts, opt, arg, min, max, out);
}

/* Splits @arg at commas and hands each item to @item; distinct items kept. */
static int parse_list(int opt, const char *arg,
		      int (*item)(int opt, const char *s, void *axis,
				  uint32_t *nr),
		      void *axis, uint32_t *nr)
{
	char buf[64];
	const char *p = arg;
	size_t len;
	int status;

	*nr = 0;
	for (;;) {
		len = strcspn(p, ",");
		if (!len)
			return kvcctl_usage_error(
				CMD, "--%s: '%s' has an empty item", flag(opt),
				arg);
		if (len >= sizeof(buf))
			return kvcctl_usage_error(CMD,
						  "--%s: '%.*s' is too long",
						  flag(opt), (int)len, p);
		if (*nr == MAX_AXIS)
			return kvcctl_usage_error(CMD,
						  "--%s: more than %d values",
						  flag(opt), MAX_AXIS);
		memcpy(buf, p, len);
		buf[len] = '\0';
		status = item(opt, buf, axis, nr);
		if (status >= 0)
			return status;
		if (!p[len])
			return -1;
		p += len + 1;
	}
}

/* Appends @v to @arr unless it is there already. */
#define ADD_DISTINCT(arr, nr, v)                \
	do {                                    \
		uint32_t i_;                    \
		for (i_ = 0; i_ < *(nr); i_++)  \
			if ((arr)[i_] == (v))   \
				break;          \
		if (i_ == *(nr))                \
			(arr)[(*(nr))++] = (v); \
	} while (0)

/* An item of --layout, --placement or --compact: its index by name. */
static int item_named(int opt, const char *s, void *axis, uint32_t *nr)
{
	const char *const *names = opt == OPT_LAYOUT	? layout_names :
				   opt == OPT_PLACEMENT ? placement_names :
							  compact_names;
	size_t n = opt == OPT_LAYOUT	? ARRAY_SIZE(layout_names) :
		   opt == OPT_PLACEMENT ? ARRAY_SIZE(placement_names) :
					  ARRAY_SIZE(compact_names);
	uint32_t v = 0;
	int status = parse_name(opt, s, names, n, &v);

	if (status < 0)
		ADD_DISTINCT((uint32_t *)axis, nr, v);
	return status;
}

static int item_policy(int opt, const char *s, void *axis, uint32_t *nr)
{
	uint32_t v = 0;
	int status =
		parse_name(opt, s, policy_names, ARRAY_SIZE(policy_names), &v);

	if (status < 0)
		ADD_DISTINCT((const char **)axis, nr, policy_names[v]);
	return status;
}

static int item_rate(int opt, const char *s, void *axis, uint32_t *nr)
{
	double v = 0;
	int status = parse_real(opt, s, 1, MAX_RATE, &v);

	if (status < 0)
		ADD_DISTINCT((double *)axis, nr, v);
	return status;
}

static int item_chunk(int opt, const char *s, void *axis, uint32_t *nr)
{
	uint64_t v = 0;
	int status = parse_size(opt, s, 4096, &v);

	if (status >= 0)
		return status;
	if (v % 4096)
		return kvcctl_usage_error(
			CMD, "--%s: %s is not a multiple of 4K", flag(opt), s);
	ADD_DISTINCT((uint64_t *)axis, nr, v);
	return -1;
}

static int item_watermark(int opt, const char *s, void *axis, uint32_t *nr)
{
	uint64_t v = 0;
	int status = parse_count(opt, s, 0, MAX_COUNT, &v);

	if (status < 0)
		ADD_DISTINCT((uint64_t *)axis, nr, v);
	return status;
}

static void shape_smollm(struct kvc_model_shape *s)
{
	struct kvc_sim_params p;

	kvc_sim_params_init(&p);
	*s = p.shape;
}

/* "layers=30,kv-heads=3,..." over SmolLM2's geometry. */
static int parse_model_spec(const char *arg, struct kvc_model_shape *s)
{
	char buf[256], *save = NULL, *kv, *val;
	uint64_t v;

	if (strlen(arg) >= sizeof(buf))
		return kvcctl_usage_error(CMD, "--model: '%s' is too long",
					  arg);
	strcpy(buf, arg);
	shape_smollm(s);
	for (kv = strtok_r(buf, ",", &save); kv;
	     kv = strtok_r(NULL, ",", &save)) {
		val = strchr(kv, '=');
		if (!val)
			goto bad;
		*val++ = '\0';
		if (!strcmp(kv, "dtype")) {
			if (kvc_dtype_parse(val, &s->dtype))
				return kvcctl_usage_error(
					CMD,
					"--model: dtype '%s' is not f16, bf16 or f32",
					val);
			continue;
		}
		if (kvcctl_parse_u64(val, 1, MAX_COUNT, &v))
			return kvcctl_usage_error(
				CMD, "--model: %s '%s' is not a whole number",
				kv, val);
		if (!strcmp(kv, "layers"))
			s->layers = (uint32_t)v;
		else if (!strcmp(kv, "kv-heads"))
			s->kv_heads = (uint32_t)v;
		else if (!strcmp(kv, "head-dim"))
			s->head_dim = (uint32_t)v;
		else if (!strcmp(kv, "block"))
			s->block_size = (uint32_t)v;
		else
			goto bad;
	}
	/* Query heads do not touch the cache; any multiple will do. */
	s->q_heads = s->kv_heads;
	return -1;
bad:
	return kvcctl_usage_error(
		CMD,
		"--model: '%s' is not smollm2-135m, opt-13b or a spec such as layers=30,kv-heads=3,head-dim=64,block=16,dtype=f16",
		arg);
}

static int parse_model(struct replay_opts *o, const char *arg)
{
	o->model = arg;
	o->have_model = true;
	if (!strcmp(arg, "smollm2-135m")) {
		shape_smollm(&o->shape);
		return -1;
	}
	if (!strcmp(arg, "opt-13b")) {
		shape_smollm(&o->shape);
		o->shape.layers = 40;
		o->shape.q_heads = 40;
		o->shape.kv_heads = 40;
		o->shape.head_dim = 128;
		return -1;
	}
	return parse_model_spec(arg, &o->shape);
}

/* Options a logical replay uses and an exact one does not. */
static void note_logical(struct replay_opts *o, int opt)
{
	if (!o->logical_flag)
		o->logical_flag = flag(opt);
}

static int parse_option(struct replay_opts *o, int opt, const char *arg)
{
	struct axes *ax = &o->ax;

	switch (opt) {
	case 1:
		if (o->file)
			return kvcctl_usage_error(
				CMD, "unexpected argument '%s'", arg);
		if (!*arg)
			return kvcctl_usage_error(CMD,
						  "the file name is empty");
		o->file = arg;
		return -1;
	case OPT_EXACT:
		o->exact = true;
		return -1;
	case OPT_LOGICAL:
		o->logical = true;
		return -1;
	case 'j':
		o->json = true;
		return -1;
	case OPT_CSV:
	case OPT_SUMMARY_CSV:
	case OPT_PLOT:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--%s: the name is empty", flag(opt));
		if (opt == OPT_CSV)
			o->csv = arg;
		else if (opt == OPT_SUMMARY_CSV)
			o->summary_csv = arg;
		else
			o->plot = arg;
		if (opt == OPT_SUMMARY_CSV)
			note_logical(o, opt);
		return -1;
	}
	note_logical(o, opt);
	switch (opt) {
	case OPT_LAYOUT:
		return parse_list(opt, arg, item_named, ax->layout,
				  &ax->nr_layout);
	case OPT_PLACEMENT:
		return parse_list(opt, arg, item_named, ax->placement,
				  &ax->nr_placement);
	case OPT_POLICY:
		return parse_list(opt, arg, item_policy, ax->policy,
				  &ax->nr_policy);
	case OPT_RATE:
		return parse_list(opt, arg, item_rate, ax->rate, &ax->nr_rate);
	case OPT_COMPACT:
		return parse_list(opt, arg, item_named, ax->compact,
				  &ax->nr_compact);
	case OPT_CHUNK:
		return parse_list(opt, arg, item_chunk, ax->chunk,
				  &ax->nr_chunk);
	case OPT_WATERMARK:
		return parse_list(opt, arg, item_watermark, ax->watermark,
				  &ax->nr_watermark);
	case OPT_MODEL:
		return parse_model(o, arg);
	case OPT_BLOCK:
		return parse_u32(opt, arg, 1, MAX_COUNT, &o->block);
	case OPT_CAPACITY:
		return parse_size(opt, arg, 1, &o->capacity);
	case OPT_MAX_LEN:
		o->have_max_len = true;
		return parse_u32(opt, arg, 1, MAX_COUNT, &o->max_len);
	case OPT_STEP_MS:
		if (kvcctl_parse_seconds(arg, 0.001, 3.6e6, &o->step_s))
			return kvcctl_usage_error(
				CMD,
				"--step-ms: '%s' is not a number of milliseconds from 0.001 to 3600000",
				arg);
		o->step_s /= 1000;
		return -1;
	case OPT_MAX_SEQS:
		return parse_u32(opt, arg, 1, MAX_COUNT, &o->max_seqs);
	case OPT_REQUESTS:
		return parse_u32(opt, arg, 1, MAX_COUNT, &o->requests);
	case OPT_MAX_STEPS:
		return parse_count(opt, arg, 1, UINT64_MAX, &o->max_steps);
	case OPT_SEED:
		o->have_seed = true;
		return parse_count(opt, arg, 0, UINT64_MAX, &o->seed);
	case OPT_HEAD_SKEW:
		o->have_head_skew = true;
		return parse_real(opt, arg, 0, 100, &o->head_skew);
	case OPT_PROTECTED:
		o->have_protected = true;
		return parse_u32(opt, arg, 0, MAX_COUNT, &o->protected_window);
	case OPT_SINKS:
		o->have_sinks = true;
		return parse_u32(opt, arg, 0, MAX_COUNT, &o->sinks);
	case OPT_COMPACT_HIGH:
		o->have_high = true;
		return parse_real(opt, arg, 0, 1, &o->compact_high);
	case OPT_COMPACT_LOW:
		o->have_low = true;
		return parse_real(opt, arg, 0, 1, &o->compact_low);
	case OPT_COMPACT_BUDGET:
		o->have_budget = true;
		return parse_size(opt, arg, 1, &o->compact_budget);
	case OPT_SAMPLE_EVERY:
		return parse_u32(opt, arg, 1, MAX_COUNT, &o->sample_every);
	case OPT_JOBS:
		return parse_u32(opt, arg, 1, MAX_JOBS, &o->jobs);
	}
	return kvcctl_usage_error(CMD, "option %d not handled", opt);
}

static int parse_one(void *o, int opt, const char *arg)
{
	return parse_option(o, opt, arg);
}

static int parse_options(int argc, char **argv, struct replay_opts *o)
{
	struct axes *ax = &o->ax;
	int status;

	memset(o, 0, sizeof(*o));
	o->model = "smollm2-135m";
	shape_smollm(&o->shape);
	o->capacity = 1ull << 30;
	o->step_s = 0.05;
	status = kvcctl_getopt(CMD, argc, argv, short_opts, long_opts,
			       usage_text, parse_one, o);
	if (status >= 0)
		return status;
	if (!o->file)
		return kvcctl_usage_error(CMD, "FILE is required");
	if (o->exact && o->logical)
		return kvcctl_usage_error(
			CMD, "--exact and --logical exclude each other");
	if (o->block)
		o->shape.block_size = o->block;
	if (kvc_model_shape_check(&o->shape))
		return kvcctl_usage_error(CMD, "--%s: %s",
					  o->block ? "block" : "model",
					  kvc_last_error());
	if (o->have_high && o->have_low && o->compact_low >= o->compact_high)
		return kvcctl_usage_error(
			CMD, "--compact-low %g must be below --compact-high %g",
			o->compact_low, o->compact_high);
	if (o->have_high && (o->compact_high <= 0 || o->compact_high >= 1))
		return kvcctl_usage_error(
			CMD, "--compact-high: %g is not between 0 and 1",
			o->compact_high);
	if (!ax->nr_layout)
		ax->layout[ax->nr_layout++] = KVC_LAYOUT_PER_HEAD;
	if (!ax->nr_placement)
		ax->placement[ax->nr_placement++] = KVC_PLACE_FULLEST;
	if (!ax->nr_policy)
		ax->policy[ax->nr_policy++] = "full";
	if (!ax->nr_rate)
		ax->rate[ax->nr_rate++] = 8;
	if (!ax->nr_compact)
		ax->compact[ax->nr_compact++] = KVC_SIM_COMPACT_FULL;
	if (!ax->nr_chunk)
		ax->chunk[ax->nr_chunk++] = 2ull << 20;
	if (!ax->nr_watermark)
		ax->watermark[ax->nr_watermark++] = 1;
	if (!o->jobs) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		o->jobs = cpus > 0 ? (uint32_t)(cpus < MAX_JOBS ? cpus :
								  MAX_JOBS) :
				     1;
	}
	return -1;
}

/* ---- Configurations ---- */

/* "2M", "512K", "1G" or bytes. */
static void size_name(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGT";
	int u = -1;

	while (u < 3 && v && !(v % 1024)) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%" PRIu64, v);
	else
		snprintf(buf, len, "%" PRIu64 "%c", v, units[u]);
}

static void policy_part(const struct kvc_sim_params *p, char *buf, size_t len)
{
	if (!strcmp(p->policy.name, "full"))
		snprintf(buf, len, "full");
	else
		snprintf(buf, len, "%s-%gx", p->policy.name, p->policy.rate);
}

static bool same_config(const struct kvc_sim_params *a,
			const struct kvc_sim_params *b)
{
	return a->layout == b->layout && a->placement == b->placement &&
	       !strcmp(a->policy.name, b->policy.name) &&
	       a->policy.rate == b->policy.rate && a->compact == b->compact &&
	       a->chunk_bytes == b->chunk_bytes && a->watermark == b->watermark;
}

/**
 * struct varies - Which axes differ between configurations: a label names
 * only those.
 * @layout: the layout; @policy: the policy or its rate; @placement,
 * @compact, @chunk, @watermark: those axes (non-contiguous layouts only).
 */
struct varies {
	bool layout, policy, placement, compact, chunk, watermark;
};

static void make_label(struct config *c, const struct varies *v)
{
	const struct kvc_sim_params *p = &c->p;
	char part[48];
	size_t len = sizeof(c->label), used = 0;

#define PART(...)                                                             \
	do {                                                                  \
		if (used < len)                                               \
			used += (size_t)snprintf(c->label + used, len - used, \
						 "%s", used ? "/" : "");      \
		if (used < len)                                               \
			used += (size_t)snprintf(c->label + used, len - used, \
						 __VA_ARGS__);                \
	} while (0)

	c->label[0] = '\0';
	if (v->layout || is_contig(p->layout))
		PART("%s", layout_names[p->layout]);
	if (!is_contig(p->layout)) {
		if (v->policy || !used) {
			policy_part(p, part, sizeof(part));
			PART("%s", part);
		}
		if (v->placement)
			PART("%s", placement_names[p->placement]);
		if (v->compact)
			PART("compact-%s", compact_names[p->compact]);
		if (v->chunk) {
			size_name(p->chunk_bytes, part, sizeof(part));
			PART("chunk-%s", part);
		}
		if (v->watermark)
			PART("wm-%u", p->watermark);
	}
#undef PART
	c->p.label = c->label;
}

static void label_all(const struct axes *ax, struct config *cfg, uint32_t n)
{
	struct varies v = { 0 };
	const struct kvc_sim_params *a, *b;
	uint32_t i, j;

	for (i = 0; i < n; i++) {
		for (j = i + 1; j < n; j++) {
			a = &cfg[i].p;
			b = &cfg[j].p;
			v.layout |= a->layout != b->layout;
			if (is_contig(a->layout) || is_contig(b->layout))
				continue;
			v.policy |= strcmp(a->policy.name, b->policy.name) ||
				    a->policy.rate != b->policy.rate;
			v.placement |= a->placement != b->placement;
			v.compact |= a->compact != b->compact;
			v.chunk |= a->chunk_bytes != b->chunk_bytes;
			v.watermark |= a->watermark != b->watermark;
		}
	}
	for (i = 0; i < n; i++)
		make_label(&cfg[i], &v);
}

/* The parameters every configuration shares. */
static void base_params(const struct replay_opts *o, struct kvc_sim_params *p)
{
	kvc_sim_params_init(p);
	p->shape = o->shape;
	p->capacity_bytes = o->capacity;
	p->step_s = o->step_s;
	p->max_seqs = o->max_seqs;
	p->max_len = o->max_len;
	p->max_steps = o->max_steps;
	p->sample_every = o->sample_every;
	if (o->have_seed)
		p->seed = o->seed;
	if (o->have_head_skew)
		p->head_skew = o->head_skew;
	if (o->have_high)
		p->compact_high = o->compact_high;
	if (o->have_low)
		p->compact_low = o->compact_low;
	if (o->have_budget)
		p->compact_budget_bytes = o->compact_budget;
	if (o->have_protected)
		p->policy.protected_window = o->protected_window;
	if (o->have_sinks)
		p->policy.sinks = o->sinks;
}

/* Adds @p unless an equivalent configuration is there; 0 or the status. */
static int add_config(const struct kvc_sim_params *p, struct config *cfg,
		      uint32_t *n)
{
	uint32_t i;

	for (i = 0; i < *n; i++)
		if (same_config(&cfg[i].p, p))
			return -1;
	if (*n == MAX_CONFIGS)
		return kvcctl_usage_error(
			CMD,
			"more than %d configurations: the axes' product is too large; shorten a list",
			MAX_CONFIGS);
	memset(&cfg[*n], 0, sizeof(cfg[*n]));
	cfg[*n].p = *p;
	(*n)++;
	return -1;
}

/* @p under every placement, compaction, chunk and watermark. */
static int add_inner(const struct axes *ax, struct kvc_sim_params *p,
		     struct config *cfg, uint32_t *n)
{
	uint64_t k, total, rest;
	int status;

	total = (uint64_t)ax->nr_placement * ax->nr_compact * ax->nr_chunk *
		ax->nr_watermark;
	for (k = 0; k < total; k++) {
		rest = k;
		p->watermark = (uint32_t)ax->watermark[rest % ax->nr_watermark];
		rest /= ax->nr_watermark;
		/* kvc_sim_run() rounds a paged chunk up to whole blocks. */
		p->chunk_bytes = ax->chunk[rest % ax->nr_chunk];
		rest /= ax->nr_chunk;
		p->compact = ax->compact[rest % ax->nr_compact];
		rest /= ax->nr_compact;
		p->placement = ax->placement[rest];
		status = add_config(p, cfg, n);
		if (status >= 0)
			return status;
	}
	return -1;
}

/* The product of the axes without the values a configuration ignores. */
static int build_configs(const struct replay_opts *o, struct config *cfg,
			 uint32_t *n)
{
	const struct axes *ax = &o->ax;
	struct kvc_sim_params base, p;
	struct kvc_policy *pol;
	uint32_t l, po, r, nr_rates;
	int status;

	*n = 0;
	base_params(o, &base);
	for (l = 0; l < ax->nr_layout; l++) {
		p = base;
		p.layout = ax->layout[l];
		if (is_contig(p.layout)) {
			/* Contiguous layouts evict nothing and place whole
			 * reservations: the other axes do not apply. */
			p.policy.name = "full";
			p.policy.rate = 1;
			p.placement = KVC_PLACE_FULLEST;
			p.compact = KVC_SIM_COMPACT_OFF;
			p.chunk_bytes = 0;
			p.watermark = 0;
			if (p.layout == KVC_LAYOUT_CONTIG_MAX &&
			    !o->have_max_len)
				p.max_len = DEFAULT_CONTIG_MAX_LEN;
			status = add_config(&p, cfg, n);
			if (status >= 0)
				return status;
			continue;
		}
		for (po = 0; po < ax->nr_policy; po++) {
			bool full = !strcmp(ax->policy[po], "full");

			nr_rates = full ? 1 : ax->nr_rate;
			for (r = 0; r < nr_rates; r++) {
				p.policy.name = ax->policy[po];
				p.policy.rate = full ? 1 : ax->rate[r];
				/* Rate 1 evicts nothing: it is "full". */
				if (p.policy.rate == 1)
					p.policy.name = "full";
				if (kvc_policy_create(&p.policy, &p.shape,
						      &pol))
					return kvcctl_usage_error(
						CMD, "--policy %s: %s",
						ax->policy[po],
						kvc_last_error());
				kvc_policy_destroy(pol);
				status = add_inner(ax, &p, cfg, n);
				if (status >= 0)
					return status;
			}
		}
	}
	label_all(ax, cfg, *n);
	return -1;
}

/* ---- Running ---- */

/**
 * struct job_queue - Configurations handed to worker threads.
 * @cfg: the configurations.
 * @n: their count.
 * @reqs: the request stream, read-only.
 * @nr_reqs: its length.
 * @lock: guards @next.
 * @next: the next configuration to take.
 */
struct job_queue {
	struct config *cfg;
	uint32_t n;
	const struct kvc_sim_request *reqs;
	uint32_t nr_reqs;
	pthread_mutex_t lock;
	uint32_t next;
};

static void *worker(void *arg)
{
	struct job_queue *jobs = arg;
	struct config *c;
	uint32_t i;

	for (;;) {
		pthread_mutex_lock(&jobs->lock);
		i = jobs->next++;
		pthread_mutex_unlock(&jobs->lock);
		if (i >= jobs->n)
			return NULL;
		c = &jobs->cfg[i];
		c->err = kvc_sim_run(&c->p, jobs->reqs, jobs->nr_reqs, &c->res);
		/* Messages are per thread: keep this one with its config. */
		if (c->err)
			snprintf(c->msg, sizeof(c->msg), "%s",
				 kvc_last_error());
	}
}

static void run_configs(struct job_queue *jobs, uint32_t nr_threads)
{
	pthread_t tid[MAX_JOBS];
	uint32_t i, started = 0;

	if (nr_threads > jobs->n)
		nr_threads = jobs->n;
	for (i = 0; i < nr_threads; i++)
		if (!pthread_create(&tid[started], NULL, worker, jobs))
			started++;
	/* No thread could start: run them here. */
	if (!started)
		worker(jobs);
	for (i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
}

/* ---- Reports of a logical replay ---- */

static void put_real(FILE *out, double v)
{
	if (isfinite(v))
		fprintf(out, "%.9g", v);
	else
		fputs("null", out);
}

static void json_u64(FILE *out, const char *key, uint64_t v)
{
	fprintf(out, ", \"%s\": %" PRIu64, key, v);
}

static void json_real(FILE *out, const char *key, double v)
{
	fprintf(out, ", \"%s\": ", key);
	put_real(out, v);
}

static void put_config_json(FILE *out, const struct config *c)
{
	const struct kvc_sim_summary *s = &c->res.summary;
	const struct kvc_sim_params *p = &c->p;

	fputs("    {\"label\": ", out);
	kvcctl_json_string(out, c->label);
	fprintf(out, ", \"layout\": \"%s\"", layout_names[p->layout]);
	if (!is_contig(p->layout)) {
		fprintf(out,
			", \"placement\": \"%s\", \"policy\": \"%s\", \"rate\": %g, \"compact\": \"%s\"",
			placement_names[p->placement], p->policy.name,
			p->policy.rate, compact_names[p->compact]);
		json_u64(out, "chunk_bytes", p->chunk_bytes);
		json_u64(out, "watermark", p->watermark);
	}
	json_u64(out, "max_len", p->max_len);
	if (c->err) {
		fputs(", \"error\": ", out);
		kvcctl_json_string(out, c->msg);
		fputc('}', out);
		return;
	}
	json_u64(out, "capacity_bytes", s->capacity_bytes);
	json_u64(out, "requests", s->requests);
	json_u64(out, "done", s->done);
	json_u64(out, "steps", s->steps);
	json_real(out, "seconds", s->seconds);
	json_real(out, "wall_s", s->wall_s);
	fputs(", \"peaks\": ", out);
	stats_json_peaks(out, &s->peaks);
	json_real(out, "share_live", s->share_live);
	json_real(out, "share_reservation", s->share_reservation);
	json_real(out, "share_internal", s->share_internal);
	json_real(out, "share_external", s->share_external);
	json_real(out, "share_unmapped", s->share_unmapped);
	json_real(out, "mean_pack_ratio", s->mean_pack_ratio);
	json_real(out, "mean_hole_ratio", s->mean_hole_ratio);
	json_real(out, "mean_unusable_chunk", s->mean_unusable_chunk);
	json_real(out, "mean_running", s->mean_running);
	json_u64(out, "peak_running", s->peak_running);
	json_u64(out, "preemptions", s->preemptions);
	json_u64(out, "alloc_failures", s->alloc_failures);
	json_u64(out, "blocks_moved", s->blocks_moved);
	json_u64(out, "bytes_copied", s->bytes_copied);
	json_u64(out, "map_calls", s->map_calls);
	json_u64(out, "unmap_calls", s->unmap_calls);
	json_u64(out, "map_ns", s->map_ns);
	json_u64(out, "unmap_ns", s->unmap_ns);
	json_u64(out, "tokens_generated", s->tokens_generated);
	json_real(out, "mean_latency_s", s->mean_latency_s);
	json_real(out, "p99_latency_s", s->p99_latency_s);
	fputc('}', out);
}

static void put_shape_json(FILE *out, const struct replay_opts *o)
{
	fputs("\"model\": ", out);
	kvcctl_json_string(out, o->model);
	fprintf(out,
		", \"layers\": %u, \"kv_heads\": %u, \"head_dim\": %u, \"block_size\": %u, \"dtype\": \"%s\"",
		o->shape.layers, o->shape.kv_heads, o->shape.head_dim,
		o->shape.block_size, kvc_dtype_name(o->shape.dtype));
}

static void put_json(FILE *out, const struct replay_opts *o,
		     const struct config *cfg, uint32_t n, uint32_t nr_reqs)
{
	uint32_t i;

	fputs("{\"file\": ", out);
	kvcctl_json_string(out, o->file);
	fprintf(out, ", \"mode\": \"logical\", \"requests\": %u, ", nr_reqs);
	put_shape_json(out, o);
	fprintf(out, ", \"capacity_bytes\": %" PRIu64 ",\n", o->capacity);
	fputs(" \"configurations\": [\n", out);
	for (i = 0; i < n; i++) {
		put_config_json(out, &cfg[i]);
		fputs(i + 1 < n ? ",\n" : "\n", out);
	}
	fputs(" ]}\n", out);
}

static size_t label_width(const struct config *cfg, uint32_t n)
{
	size_t w = 5, l;
	uint32_t i;

	for (i = 0; i < n; i++) {
		l = strlen(cfg[i].label);
		if (l > w)
			w = l;
	}
	return w;
}

static void put_context(FILE *out, const struct replay_opts *o,
			uint32_t nr_reqs, uint32_t n, const char *kind)
{
	char file[256], cap[KVCCTL_BYTES_LEN];

	kvcctl_sanitize(file, sizeof(file), o->file);
	fprintf(out, "requests  %u from %s (%s), %u configuration%s\n", nr_reqs,
		file, kind, n, n == 1 ? "" : "s");
	fprintf(out,
		"model     %s: %u layers, %u KV heads, head dim %u, block %u, %s; region %s\n\n",
		o->model, o->shape.layers, o->shape.kv_heads, o->shape.head_dim,
		o->shape.block_size, kvc_dtype_name(o->shape.dtype),
		kvcctl_human_bytes(o->capacity, cap));
}

/* A chunk ratio, or "-" for a layout without chunks. */
static const char *ratio(const struct config *c, double v, char *buf)
{
	if (is_contig(c->p.layout))
		return "-";
	snprintf(buf, 16, "%.2f", v);
	return buf;
}

static void put_extreme(FILE *out, const struct config *c)
{
	const struct kvc_sim_summary *s = &c->res.summary;

	fprintf(out, "%s (external %.1f%% of the region", c->label,
		s->share_external * 100);
	if (!is_contig(c->p.layout))
		fprintf(out, ", pack ratio %.2f", s->mean_pack_ratio);
	fputc(')', out);
}

static void put_table(FILE *out, const struct config *cfg, uint32_t n)
{
	int w = (int)label_width(cfg, n);
	const struct config *most = NULL, *least = NULL;
	char done[32], maps[48], pack[16], hole[16];
	uint32_t i;

	/* Say what "mean" and "peak" count and what the shares are of. */
	fprintf(out, "%-*s %11s %12s %7s %34s\n", w, "", "", "-- running -", "",
		"----- % of the region, mean ------");
	fprintf(out,
		"%-*s %11s %6s %5s %7s %6s %6s %6s %6s %6s %6s %6s %5s %5s %8s %9s %13s %7s\n",
		w, "label", "done", "mean", "peak", "preempt", "live%", "resv%",
		"int%", "ext%", "unmap%", "gmlake", "jw4", "pack", "hole",
		"moved", "MiB copy", "maps/unmaps", "wall s");
	for (i = 0; i < n; i++) {
		const struct kvc_sim_summary *s = &cfg[i].res.summary;

		if (cfg[i].err) {
			fprintf(out, "%-*s failed: %s\n", w, cfg[i].label,
				cfg[i].msg);
			continue;
		}
		snprintf(done, sizeof(done), "%" PRIu64 "/%" PRIu64, s->done,
			 s->requests);
		snprintf(maps, sizeof(maps), "%" PRIu64 "/%" PRIu64,
			 s->map_calls, s->unmap_calls);
		fprintf(out,
			"%-*s %11s %6.1f %5u %7" PRIu64
			" %6.1f %6.1f %6.1f %6.1f %6.1f %6.3f %6.3f %5s %5s %8" PRIu64
			" %9.1f %13s %7.2f\n",
			w, cfg[i].label, done, s->mean_running, s->peak_running,
			s->preemptions, s->share_live * 100,
			s->share_reservation * 100, s->share_internal * 100,
			s->share_external * 100, s->share_unmapped * 100,
			s->peaks.gmlake_util, s->peaks.jw4,
			ratio(&cfg[i], s->mean_pack_ratio, pack),
			ratio(&cfg[i], s->mean_hole_ratio, hole),
			s->blocks_moved, (double)s->bytes_copied / MIB, maps,
			s->wall_s);
		/* Most fragmenting: highest external share, then pack. */
		if (!most ||
		    s->share_external > most->res.summary.share_external ||
		    (s->share_external == most->res.summary.share_external &&
		     s->mean_pack_ratio > most->res.summary.mean_pack_ratio))
			most = &cfg[i];
		if (!least ||
		    s->share_external < least->res.summary.share_external ||
		    (s->share_external == least->res.summary.share_external &&
		     s->mean_pack_ratio < least->res.summary.mean_pack_ratio))
			least = &cfg[i];
	}
	if (most && most != least) {
		fprintf(out, "\nmost fragmenting: ");
		put_extreme(out, most);
		fprintf(out, "; least: ");
		put_extreme(out, least);
		fputc('\n', out);
	}
}

static FILE *open_output(const char *opt, const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		fprintf(stderr, "kvcctl replay: --%s: cannot write %s: %s\n",
			opt, path, strerror(errno));
	return f;
}

static int close_output(const char *opt, const char *path, FILE *f)
{
	int bad = ferror(f);

	if (fclose(f) || bad) {
		fprintf(stderr, "kvcctl replay: --%s: cannot write %s\n", opt,
			path);
		return KVCCTL_EXIT_FAIL;
	}
	return KVCCTL_EXIT_OK;
}

static void put_series_header(FILE *f)
{
	fputs("config,step,t_s,logical,live,held,mapped,parked,reservation,tail,free_mapped,internal,running,waiting,done,preemptions,blocks_moved,bytes_copied,map_calls,unmap_calls,unusable_chunk,pack_ratio,hole_ratio\n",
	      f);
}

static void put_series_rows(FILE *f, const char *label,
			    const struct kvc_sim_sample *s, uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++) {
		const struct kvc_ladder *l = &s[i].ladder;

		fprintf(f,
			"%s,%" PRIu64 ",%.9g,%" PRIu64 ",%" PRIu64 ",%" PRIu64
			",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
			",%" PRIu64 ",%" PRIu64 ",%u,%u,%" PRIu64 ",%" PRIu64
			",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",",
			label, s[i].step, s[i].t_s, l->logical, l->live,
			l->held, l->mapped, l->parked, l->reservation, l->tail,
			l->free_mapped, s[i].internal, s[i].running,
			s[i].waiting, s[i].done, s[i].preemptions,
			s[i].blocks_moved, s[i].bytes_copied, s[i].map_calls,
			s[i].unmap_calls);
		if (l->nr_orders && l->nr_orders <= KVC_LADDER_ORDERS)
			fprintf(f, "%.6g", l->unusable[l->nr_orders - 1]);
		fprintf(f, ",%.6g,%.6g\n", l->pack_ratio, l->hole_ratio);
	}
}

static int write_csv(const char *path, const struct config *cfg, uint32_t n)
{
	FILE *f = open_output("csv", path);
	uint32_t i;

	if (!f)
		return KVCCTL_EXIT_FAIL;
	put_series_header(f);
	for (i = 0; i < n; i++)
		if (!cfg[i].err)
			put_series_rows(f, cfg[i].label, cfg[i].res.samples,
					cfg[i].res.nr_samples);
	return close_output("csv", path, f);
}

static int write_summary_csv(const char *path, const struct config *cfg,
			     uint32_t n)
{
	FILE *f = open_output("summary-csv", path);
	uint32_t i;

	if (!f)
		return KVCCTL_EXIT_FAIL;
	fputs("label,layout,placement,policy,rate,compact,chunk_bytes,watermark,max_len,"
	      "requests,done,steps,seconds,mean_running,peak_running,preemptions,alloc_failures,"
	      "share_live,share_reservation,share_internal,share_external,share_unmapped,"
	      "live_peak,mapped_peak,gmlake_util,jw2,jw3,jw4,mean_pack_ratio,mean_hole_ratio,"
	      "mean_unusable_chunk,blocks_moved,bytes_copied,map_calls,unmap_calls,map_ns,unmap_ns,"
	      "tokens_generated,mean_latency_s,p99_latency_s,wall_s\n",
	      f);
	for (i = 0; i < n; i++) {
		const struct kvc_sim_summary *s = &cfg[i].res.summary;
		const struct kvc_sim_params *p = &cfg[i].p;

		if (cfg[i].err)
			continue;
		fprintf(f,
			"%s,%s,%s,%s,%g,%s,%" PRIu64 ",%u,%u,%" PRIu64
			",%" PRIu64 ",%" PRIu64 ",%.9g,%.9g,%u,%" PRIu64
			",%" PRIu64 ",%.9g,%.9g,%.9g,%.9g,%.9g,%" PRIu64
			",%" PRIu64
			",%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%" PRIu64
			",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
			",%" PRIu64 ",%" PRIu64 ",%.9g,%.9g,%.9g\n",
			cfg[i].label, layout_names[p->layout],
			placement_names[p->placement], p->policy.name,
			p->policy.rate, compact_names[p->compact],
			p->chunk_bytes, p->watermark, p->max_len, s->requests,
			s->done, s->steps, s->seconds, s->mean_running,
			s->peak_running, s->preemptions, s->alloc_failures,
			s->share_live, s->share_reservation, s->share_internal,
			s->share_external, s->share_unmapped,
			s->peaks.live_peak, s->peaks.mapped_peak,
			s->peaks.gmlake_util, s->peaks.jw2, s->peaks.jw3,
			s->peaks.jw4, s->mean_pack_ratio, s->mean_hole_ratio,
			s->mean_unusable_chunk, s->blocks_moved,
			s->bytes_copied, s->map_calls, s->unmap_calls,
			s->map_ns, s->unmap_ns, s->tokens_generated,
			s->mean_latency_s, s->p99_latency_s, s->wall_s);
	}
	return close_output("summary-csv", path, f);
}

/* Runs gnuplot over what was written; a missing gnuplot is a notice. */
static void draw(const char *dir, const struct kvcctl_plot_files *files)
{
	int err = kvcctl_plot_draw(dir, files);

	if (err == -ENOENT)
		fprintf(stderr,
			"kvcctl replay: --plot: gnuplot is not installed; the data and scripts are in %s (run 'gnuplot NAME.gp' there to draw each)\n",
			dir);
	else if (err)
		fprintf(stderr,
			"kvcctl replay: %s; the data and scripts are in %s\n",
			kvc_last_error(), dir);
	else
		fprintf(stderr, "kvcctl replay: plotted %u figure%s in %s\n",
			files->nr, files->nr == 1 ? "" : "s", dir);
}

static int plot_logical(const char *dir, const struct config *cfg, uint32_t n)
{
	const struct kvc_sim_result **res;
	struct kvcctl_plot_files files;
	uint32_t i, k = 0;
	int err;

	res = calloc(n ? n : 1, sizeof(*res));
	if (!res) {
		fputs("kvcctl replay: --plot: out of memory\n", stderr);
		return KVCCTL_EXIT_FAIL;
	}
	for (i = 0; i < n; i++)
		if (!cfg[i].err)
			res[k++] = &cfg[i].res;
	err = kvcctl_plot_results(dir, res, k, &files);
	free(res);
	if (err) {
		fprintf(stderr, "kvcctl replay: %s\n", kvc_last_error());
		return KVCCTL_EXIT_FAIL;
	}
	if (k > files.timelines)
		fprintf(stderr,
			"kvcctl replay: --plot: timelines for 1-%u only (labels.txt names them); %u-%u skipped\n",
			files.timelines, files.timelines + 1, k);
	if (files.heat_skipped)
		fprintf(stderr,
			"kvcctl replay: --plot: chunk maps for the first %u configurations with chunks only; %u skipped\n",
			files.heat_maps, files.heat_skipped);
	draw(dir, &files);
	return KVCCTL_EXIT_OK;
}

/*
 * A reader's message, prefixed with the file unless it names it already:
 * some of the trace reader's messages do, some do not.
 */
static void file_error(const char *file)
{
	const char *msg = kvc_last_error();

	if (strstr(msg, file))
		fprintf(stderr, "kvcctl replay: %s\n", msg);
	else
		fprintf(stderr, "kvcctl replay: %s: %s\n", file, msg);
}

static int read_requests(const struct replay_opts *o, bool trace,
			 struct kvc_sim_request **reqs, uint32_t *n)
{
	int err;

	if (trace)
		err = kvc_sim_requests_rec(o->file, o->requests, reqs, n);
	else
		err = kvc_sim_requests_csv(o->file, o->requests, reqs, n);
	if (err && trace)
		file_error(o->file);
	else if (err)
		fprintf(stderr,
			"kvcctl replay: %s is not a trace (no " KVC_REC_MAGIC
			" header), and as a request CSV: %s\n",
			o->file, kvc_last_error());
	return err ? KVCCTL_EXIT_FAIL : -1;
}

/*
 * A trace's requests replay on the trace's own model unless --model says
 * otherwise: its %KVC_REC_SHAPE comes among the first events.
 */
static int trace_shape(struct replay_opts *o)
{
	struct kvc_rec_reader *r;
	struct kvc_rec_event ev;
	struct kvc_model_shape s;
	int i, got = 0;

	if (kvc_rec_reader_open(o->file, &r)) {
		fprintf(stderr, "kvcctl replay: %s\n", kvc_last_error());
		return KVCCTL_EXIT_FAIL;
	}
	for (i = 0; i < 16 && (got = kvc_rec_next(r, &ev)) == 1; i++)
		if (ev.kind == KVC_REC_SHAPE)
			break;
	kvc_rec_reader_close(r);
	if (got < 0) {
		fprintf(stderr, "kvcctl replay: %s\n", kvc_last_error());
		return KVCCTL_EXIT_FAIL;
	}
	if (got != 1 || ev.kind != KVC_REC_SHAPE)
		return -1;
	memset(&s, 0, sizeof(s));
	s.layers = (uint32_t)ev.p[0];
	s.kv_heads = (uint32_t)ev.p[1];
	s.head_dim = (uint32_t)ev.p[2];
	s.block_size = o->block ? o->block : (uint32_t)ev.p[3];
	s.dtype = (enum kvc_dtype)ev.p[4];
	s.q_heads = (uint32_t)ev.p[5];
	if (kvc_model_shape_check(&s)) {
		fprintf(stderr, "kvcctl replay: %s: the trace's model: %s\n",
			o->file, kvc_last_error());
		return KVCCTL_EXIT_FAIL;
	}
	o->shape = s;
	o->model = "the trace's model";
	return -1;
}

static int replay_logical(const struct replay_opts *o, bool trace)
{
	struct kvc_sim_request *reqs = NULL;
	struct job_queue jobs;
	struct config *cfg;
	uint32_t nr_reqs = 0, n = 0, i, failed = 0;
	int status;
	double t0;

	cfg = calloc(MAX_CONFIGS, sizeof(*cfg));
	if (!cfg) {
		fputs("kvcctl replay: out of memory\n", stderr);
		return KVCCTL_EXIT_FAIL;
	}
	status = build_configs(o, cfg, &n);
	if (status < 0)
		status = read_requests(o, trace, &reqs, &nr_reqs);
	if (status >= 0)
		goto out;
	memset(&jobs, 0, sizeof(jobs));
	jobs.cfg = cfg;
	jobs.n = n;
	jobs.reqs = reqs;
	jobs.nr_reqs = nr_reqs;
	pthread_mutex_init(&jobs.lock, NULL);
	t0 = kvcctl_now_s();
	run_configs(&jobs, o->jobs);
	pthread_mutex_destroy(&jobs.lock);
	for (i = 0; i < n; i++)
		if (cfg[i].err) {
			fprintf(stderr, "kvcctl replay: %s: %s\n", cfg[i].label,
				cfg[i].msg);
			failed++;
		}
	fprintf(stderr,
		"kvcctl replay: %u configuration%s of %u requests in %.2f s on %u thread%s\n",
		n, n == 1 ? "" : "s", nr_reqs, kvcctl_now_s() - t0,
		o->jobs < n ? o->jobs : n,
		(o->jobs < n ? o->jobs : n) == 1 ? "" : "s");
	if (o->json) {
		put_json(stdout, o, cfg, n, nr_reqs);
	} else {
		put_context(stdout, o, nr_reqs, n,
			    trace ? "a trace's arrivals" : "CSV");
		put_table(stdout, cfg, n);
	}
	status = failed ? KVCCTL_EXIT_FAIL : KVCCTL_EXIT_OK;
	if (o->csv && write_csv(o->csv, cfg, n))
		status = KVCCTL_EXIT_FAIL;
	if (o->summary_csv && write_summary_csv(o->summary_csv, cfg, n))
		status = KVCCTL_EXIT_FAIL;
	if (o->plot && failed < n && plot_logical(o->plot, cfg, n))
		status = KVCCTL_EXIT_FAIL;
out:
	for (i = 0; i < n; i++)
		kvc_sim_result_free(&cfg[i].res);
	free(cfg);
	free(reqs);
	return status;
}

/* ---- Exact replay ---- */

/**
 * struct exact_samples - The ladder samples of an exact replay, as sim
 * samples so the timeline and CSV writers take them.
 * @s: the samples.
 * @n: their count.
 * @cap: room in @s.
 * @t0_ns: the first sample's time.
 * @oom: a sample could not be kept.
 */
struct exact_samples {
	struct kvc_sim_sample *s;
	uint64_t n, cap;
	uint64_t t0_ns;
	bool oom;
};

static void on_sample(void *arg, const struct kvc_ladder *l)
{
	struct exact_samples *es = arg;
	struct kvc_sim_sample *s;

	if (es->n == es->cap) {
		uint64_t cap = es->cap ? es->cap * 2 : 1024;

		s = realloc(es->s, cap * sizeof(*s));
		if (!s) {
			es->oom = true;
			return;
		}
		es->s = s;
		es->cap = cap;
	}
	if (!es->n)
		es->t0_ns = l->t_ns;
	s = &es->s[es->n++];
	memset(s, 0, sizeof(*s));
	s->step = l->step;
	/* Recorded time when the trace has it, else the step. */
	s->t_s = es->t0_ns ? (double)(l->t_ns - es->t0_ns) / 1e9 :
			     (double)l->step;
	s->ladder = *l;
	s->internal = l->tail;
	s->running = (uint32_t)l->seqs;
	s->preemptions = l->preemptions;
}

static void put_exact_json(FILE *out, const struct replay_opts *o,
			   const struct kvc_replay_result *r)
{
	const struct kvc_ladder *l = &r->final;

	fputs("{\"file\": ", out);
	kvcctl_json_string(out, o->file);
	fprintf(out, ", \"mode\": \"exact\", \"events\": %" PRIu64, r->events);
	json_u64(out, "steps", r->steps);
	json_u64(out, "samples", r->samples);
	json_u64(out, "checks", r->checks);
	json_u64(out, "allocs", r->allocs);
	json_u64(out, "frees", r->frees);
	json_u64(out, "moves", r->moves);
	json_u64(out, "maps", r->maps);
	json_u64(out, "unmaps", r->unmaps);
	json_u64(out, "alloc_failures", r->alloc_failures);
	fprintf(out, ", \"final_snapshot\": %s",
		r->final_snapshot ? "true" : "false");
	fputs(",\n \"final\": ", out);
	stats_json_ladder(out, l);
	fputs(",\n \"peaks\": ", out);
	stats_json_peaks(out, &r->peaks);
	fputs("}\n", out);
}

static void put_exact_table(FILE *out, const struct replay_opts *o,
			    const struct kvc_replay_result *r)
{
	const struct kvc_ladder_peaks *pk = &r->peaks;
	char file[256], a[KVCCTL_BYTES_LEN], b[KVCCTL_BYTES_LEN];

	kvcctl_sanitize(file, sizeof(file), o->file);
	fprintf(out, "exact replay of %s: verified\n", file);
	fprintf(out,
		"  events     %" PRIu64 " applied over %" PRIu64
		" steps, %" PRIu64 " invariant checks, %" PRIu64
		" samples matched\n",
		r->events, r->steps, r->checks, r->samples);
	fprintf(out,
		"  blocks     %" PRIu64 " allocated, %" PRIu64
		" freed, %" PRIu64 " moved; %" PRIu64
		" failed allocations recorded\n",
		r->allocs, r->frees, r->moves, r->alloc_failures);
	fprintf(out, "  chunks     %" PRIu64 " mapped, %" PRIu64 " unmapped\n",
		r->maps, r->unmaps);
	fprintf(out, "  snapshot   %s\n",
		r->final_snapshot ?
			"the closing snapshot matched block for block" :
			"none closes the trace");
	fprintf(out, "\npeaks (%" PRIu64 " samples)\n", pk->samples);
	fprintf(out, "  live peak    %s at step %" PRIu64 ", mapped then %s\n",
		kvcctl_human_bytes(pk->live_peak, a), pk->live_peak_step,
		kvcctl_human_bytes(pk->mapped_at_live_peak, b));
	fprintf(out, "  mapped peak  %s at step %" PRIu64 ", live then %s\n",
		kvcctl_human_bytes(pk->mapped_peak, a), pk->mapped_peak_step,
		kvcctl_human_bytes(pk->live_at_mapped_peak, b));
	fprintf(out,
		"  GMLake util  %.3f  (live peak / mapped peak, steps %" PRIu64
		" and %" PRIu64 ")\n",
		pk->gmlake_util, pk->live_peak_step, pk->mapped_peak_step);
	fprintf(out,
		"  J&W #2       %.3f  (mapped at the live peak / live peak, step %" PRIu64
		")\n",
		pk->jw2, pk->live_peak_step);
	fprintf(out,
		"  J&W #3       %.3f  (mapped peak / live at it, step %" PRIu64
		")\n",
		pk->jw3, pk->mapped_peak_step);
	fprintf(out, "  J&W #4       %.3f  (mapped peak / live peak)\n",
		pk->jw4);
	fprintf(out, "\nmeans (weighted by steps)\n");
	fprintf(out, "  logical %s, live %s, ",
		kvcctl_human_bytes((uint64_t)pk->mean_logical, a),
		kvcctl_human_bytes((uint64_t)pk->mean_live, b));
	fprintf(out, "held %s, ",
		kvcctl_human_bytes((uint64_t)pk->mean_held, a));
	fprintf(out, "mapped %s\n",
		kvcctl_human_bytes((uint64_t)pk->mean_mapped, a));
	fprintf(out, "  reservation %s, ",
		kvcctl_human_bytes((uint64_t)pk->mean_reservation, a));
	fprintf(out, "tail %s, ",
		kvcctl_human_bytes((uint64_t)pk->mean_tail, a));
	fprintf(out, "free in mapped chunks %s, ",
		kvcctl_human_bytes((uint64_t)pk->mean_free_mapped, a));
	fprintf(out, "parked %s\n",
		kvcctl_human_bytes((uint64_t)pk->mean_parked, a));
	/* Trace samples carry no sequence count: none is printed. */
	fprintf(out, "  utilisation (live / mapped) %.3f\n", pk->mean_util);
}

static int replay_exact(const struct replay_opts *o)
{
	struct exact_samples es = { 0 };
	struct kvc_replay_result r;
	struct kvcctl_plot_files files;
	int err, status = KVCCTL_EXIT_OK;
	FILE *f;

	memset(&r, 0, sizeof(r));
	r.on_sample = on_sample;
	r.arg = &es;
	err = kvc_replay_exact(o->file, &r);
	if (err) {
		file_error(o->file);
		free(es.s);
		return KVCCTL_EXIT_FAIL;
	}
	if (es.oom)
		fputs("kvcctl replay: out of memory for the samples; the series is cut short\n",
		      stderr);
	if (o->json)
		put_exact_json(stdout, o, &r);
	else
		put_exact_table(stdout, o, &r);
	if (o->csv) {
		f = open_output("csv", o->csv);
		if (f) {
			put_series_header(f);
			put_series_rows(f, "exact", es.s, es.n);
			status = close_output("csv", o->csv, f);
		} else {
			status = KVCCTL_EXIT_FAIL;
		}
	}
	if (o->plot) {
		memset(&files, 0, sizeof(files));
		err = kvcctl_plot_mkdir(o->plot);
		if (!err) {
			err = kvcctl_plot_timeline(o->plot, 1, "exact replay",
						   es.s, es.n, &files);
		}
		if (err) {
			fprintf(stderr, "kvcctl replay: %s\n",
				kvc_last_error());
			status = KVCCTL_EXIT_FAIL;
		} else {
			draw(o->plot, &files);
		}
	}
	free(es.s);
	return status;
}

/* ---- The command ---- */

/* 1 for a trace, 0 for anything else, or the exit status. */
static int sniff(const char *path)
{
	char magic[8];
	ssize_t got;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "kvcctl replay: cannot open %s: %s\n", path,
			strerror(errno));
		return -KVCCTL_EXIT_FAIL;
	}
	got = read(fd, magic, sizeof(magic));
	if (got < 0) {
		fprintf(stderr, "kvcctl replay: cannot read %s: %s\n", path,
			strerror(errno));
		close(fd);
		return -KVCCTL_EXIT_FAIL;
	}
	close(fd);
	return got == (ssize_t)sizeof(magic) &&
	       !memcmp(magic, KVC_REC_MAGIC, sizeof(magic));
}

/*
 * --@opt FILE can be written: not a directory, in a directory we may
 * write. Checked before replaying, which may take minutes, so a mistyped
 * path costs nothing; the write itself still reports its own errors.
 */
static int check_writable(const char *opt, const char *path)
{
	char dir[4096], *slash;
	struct stat st;

	if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
		fprintf(stderr, "kvcctl replay: --%s: %s is a directory\n", opt,
			path);
		return KVCCTL_EXIT_FAIL;
	}
	if ((size_t)snprintf(dir, sizeof(dir), "%s", path) >= sizeof(dir)) {
		fprintf(stderr, "kvcctl replay: --%s: the path is too long\n",
			opt);
		return KVCCTL_EXIT_FAIL;
	}
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (access(dir, W_OK | X_OK)) {
		fprintf(stderr, "kvcctl replay: --%s: cannot write %s: %s\n",
			opt, path, strerror(errno));
		return KVCCTL_EXIT_FAIL;
	}
	return -1;
}

/* Every output can be had before any replay runs. */
static int check_outputs(const struct replay_opts *o)
{
	int status;

	if (o->csv) {
		status = check_writable("csv", o->csv);
		if (status >= 0)
			return status;
	}
	if (o->summary_csv) {
		status = check_writable("summary-csv", o->summary_csv);
		if (status >= 0)
			return status;
	}
	if (o->plot && kvcctl_plot_mkdir(o->plot)) {
		fprintf(stderr, "kvcctl replay: %s\n", kvc_last_error());
		return KVCCTL_EXIT_FAIL;
	}
	return -1;
}

int kvcctl_replay(int argc, char **argv)
{
	struct replay_opts o;
	int status, trace;

	names_init();
	status = parse_options(argc, argv, &o);
	if (status >= 0)
		return status;
	trace = sniff(o.file);
	if (trace < 0)
		return -trace;
	if (!trace && o.exact)
		return kvcctl_usage_error(
			CMD,
			"--exact: %s is a request CSV, not a trace; a CSV replays logically",
			o.file);
	if (trace && o.logical && !o.have_model) {
		status = trace_shape(&o);
		if (status >= 0)
			return status;
	}
	if (trace && !o.logical && o.logical_flag)
		return kvcctl_usage_error(
			CMD,
			"--%s applies to a logical replay; add --logical to replay the trace's requests",
			o.logical_flag);
	status = check_outputs(&o);
	if (status >= 0)
		return status;
	if (trace && !o.logical)
		return replay_exact(&o);
	return replay_logical(&o, trace);
}
