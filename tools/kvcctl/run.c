// SPDX-License-Identifier: MIT
/*
 * `kvcctl run`: run a workload end to end with kvc_run() and print what it
 * measured, as a table or as one JSON object. Only reads options and
 * writes the report: every decision about the run is kvc_run()'s. Every
 * flag is checked before anything runs; a bad one, a bad shape, a policy
 * that refuses its parameters or a trace that cannot be read is a usage
 * error (exit 2), so nothing is half done.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
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
#include <kvc/run.h>

#include "kvcctl.h"

#define CMD "run"

/* Bounds of the options (the library checks the shape itself). */
#define MAX_COUNT 0x7fffffffull /* tokens, layers, heads, steps */
#define MAX_SEQS (1ull << 24)
#define MAX_RATE 1e6
#define MAX_HOLD 86400.0

/**
 * struct run_opts - What `kvcctl run` was asked to do.
 * @p: the run's parameters.
 * @trace_path: --trace, or NULL.
 * @json: print JSON instead of the table.
 * @hold: seconds to keep the pool after the run, or 0.
 * @have_rate: --rate was given.
 * @have_lengths: --prompt-len or --gen-len was given.
 * @record_path: --record, or NULL.
 * @swap: the swap's parameters (used when @swap.path is set).
 * @swap_opts: an option that only applies with --swap was given.
 */
struct run_opts {
	struct kvc_run_params p;
	struct kvc_swap_params swap;
	bool swap_opts;
	const char *trace_path;
	const char *record_path;
	bool json;
	double hold;
	bool have_rate;
	bool have_lengths;
};

/**
 * struct run_out - The report and whether it was printed yet.
 * @o: the options.
 * @rep: the report (kvc_run() fills it before it calls the hold).
 * @printed: it was printed (by the hold).
 * @rec: the recorder of --record, or NULL.
 * @rec_events: events in the trace (final once @rec is closed).
 * @rec_bytes: bytes of the trace file, likewise.
 */
struct run_out {
	const struct run_opts *o;
	struct kvc_run_report rep;
	bool printed;
	struct kvc_recorder *rec;
	uint64_t rec_events;
	uint64_t rec_bytes;
};

enum {
	OPT_POLICY = 256,
	OPT_RATE,
	OPT_MAX_CACHE_TOKENS,
	OPT_PROTECTED_WINDOW,
	OPT_SINKS,
	OPT_COMPRESS_ONCE,
	OPT_INTERVAL,
	OPT_WINDOW_TOKENS,
	OPT_WINDOW_LAYERS,
	OPT_LAYERS,
	OPT_HEADS,
	OPT_KV_HEADS,
	OPT_HEAD_DIM,
	OPT_BLOCK_SIZE,
	OPT_DTYPE,
	OPT_SEQS,
	OPT_PROMPT_LEN,
	OPT_GEN_LEN,
	OPT_TRACE,
	OPT_MAX_TOKENS,
	OPT_BACKEND,
	OPT_SEED,
	OPT_BUDGET,
	OPT_ERR_SAMPLES,
	OPT_NO_COMPACT,
	OPT_HOLD,
	OPT_RECORD,
	OPT_SWAP,
	OPT_SWAP_CAP,
	OPT_SWAP_QD,
	OPT_SWAP_IO,
	OPT_SWAP_BUFFERED,
	OPT_SWAP_NO_URING,
	OPT_PREEMPT,
};

static const char short_opts[] = ":jh";

static const struct option long_opts[] = {
	{ "policy", required_argument, NULL, OPT_POLICY },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "max-cache-tokens", required_argument, NULL, OPT_MAX_CACHE_TOKENS },
	{ "protected-window", required_argument, NULL, OPT_PROTECTED_WINDOW },
	{ "sinks", required_argument, NULL, OPT_SINKS },
	{ "compress-once", no_argument, NULL, OPT_COMPRESS_ONCE },
	{ "interval", required_argument, NULL, OPT_INTERVAL },
	{ "window-tokens", required_argument, NULL, OPT_WINDOW_TOKENS },
	{ "window-layers", required_argument, NULL, OPT_WINDOW_LAYERS },
	{ "layers", required_argument, NULL, OPT_LAYERS },
	{ "heads", required_argument, NULL, OPT_HEADS },
	{ "kv-heads", required_argument, NULL, OPT_KV_HEADS },
	{ "head-dim", required_argument, NULL, OPT_HEAD_DIM },
	{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
	{ "dtype", required_argument, NULL, OPT_DTYPE },
	{ "seqs", required_argument, NULL, OPT_SEQS },
	{ "prompt-len", required_argument, NULL, OPT_PROMPT_LEN },
	{ "gen-len", required_argument, NULL, OPT_GEN_LEN },
	{ "trace", required_argument, NULL, OPT_TRACE },
	{ "max-tokens", required_argument, NULL, OPT_MAX_TOKENS },
	{ "backend", required_argument, NULL, OPT_BACKEND },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "budget", required_argument, NULL, OPT_BUDGET },
	{ "err-samples", required_argument, NULL, OPT_ERR_SAMPLES },
	{ "no-compact", no_argument, NULL, OPT_NO_COMPACT },
	{ "json", no_argument, NULL, 'j' },
	{ "hold", required_argument, NULL, OPT_HOLD },
	{ "record", required_argument, NULL, OPT_RECORD },
	{ "swap", required_argument, NULL, OPT_SWAP },
	{ "swap-cap", required_argument, NULL, OPT_SWAP_CAP },
	{ "swap-qd", required_argument, NULL, OPT_SWAP_QD },
	{ "swap-io", required_argument, NULL, OPT_SWAP_IO },
	{ "swap-buffered", no_argument, NULL, OPT_SWAP_BUFFERED },
	{ "swap-no-uring", no_argument, NULL, OPT_SWAP_NO_URING },
	{ "preempt", required_argument, NULL, OPT_PREEMPT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
	"Usage: kvcctl run [OPTIONS]\n"
	"\n"
	"Run a synthetic workload end to end: sequences arrive, prefill,\n"
	"decode with attention over the paged per-head KV cache, and are\n"
	"compressed by an eviction policy; the pool is compacted after each\n"
	"round of compression. Then say how much memory that saved against\n"
	"a full cache and against a conventional paged layout.\n"
	"\n"
	"Policy:\n"
	"  --policy NAME            kvcompress (default), full, streamingllm,\n"
	"                           h2o, snapkv, pyramidkv, pyramidinfer, window\n"
	"  --rate R                 compression rate, >= 1 (default 8)\n"
	"  --max-cache-tokens N     keep N tokens' worth per sequence instead\n"
	"                           of a rate\n"
	"  --protected-window N     never evict the last N tokens (default 32)\n"
	"  --sinks N                never evict the first N tokens (default 0)\n"
	"  --compress-once          compress only after prefill\n"
	"  --interval N             compress every N decode steps (default:\n"
	"                           the block size)\n"
	"  --window-tokens N        window, streamingllm: recent tokens kept\n"
	"                           (default 1024)\n"
	"  --window-layers LIST     window: the layers that keep only a window,\n"
	"                           as in 0-7,12 (default: all)\n"
	"\n"
	"Model shape (default SmolLM2-135M):\n"
	"  --layers N               layers (default 30)\n"
	"  --heads N                query heads per layer (default 9)\n"
	"  --kv-heads N             KV heads per layer (default 3)\n"
	"  --head-dim N             64, 80, 96, 128 or 256 (default 64)\n"
	"  --block-size N           tokens per block: 8, 16 or 32 (default 16)\n"
	"  --dtype f16|bf16|f32     storage type of K and V (default f16)\n"
	"\n"
	"Workload:\n"
	"  --seqs N                 sequences (default 8)\n"
	"  --prompt-len N           prompt tokens of each (default 512)\n"
	"  --gen-len N              tokens each generates (default 32)\n"
	"  --trace FILE             take the lengths from a CSV trace with the\n"
	"                           columns ContextTokens and GeneratedTokens,\n"
	"                           in order, cycling\n"
	"  --max-tokens N           cut each request to N tokens in all\n"
	"  --seed N                 seed of the synthetic Q, K, V (default 1)\n"
	"  --backend NAME           host (default), cuda, or auto (cuda when a\n"
	"                           device answers, else host); on cuda the\n"
	"                           report adds device memory as cuMemGetInfo\n"
	"                           measures it\n"
	"\n"
	"Measures:\n"
	"  --budget BYTES           also say how many sequences fit in BYTES of\n"
	"                           physical memory with and without eviction;\n"
	"                           with --swap, the cache maps at most BYTES\n"
	"                           (sizes take K, M, G, T: 64M, 2GiB)\n"
	"  --err-samples N          decode steps on which the attention error\n"
	"                           against an uncompressed copy is measured\n"
	"                           (default 8; 0 = none, and no copy)\n"
	"  --no-compact             do not compact the pool\n"
	"\n"
	"Swap (needs --budget):\n"
	"  --swap FILE              when an allocation does not fit the budget,\n"
	"                           preempt a running sequence and swap its KV\n"
	"                           out to FILE (and FILE.idx), back in when\n"
	"                           memory allows; finished sequences are freed\n"
	"  --swap-cap BYTES         most bytes FILE may hold (default 1G); a\n"
	"                           sequence that does not fit is recomputed\n"
	"  --preempt RULE           latest (default: the last to arrive gives\n"
	"                           way) or largest (the one holding most)\n"
	"  --swap-qd N              I/Os in flight (default 32, 1 to 4096)\n"
	"  --swap-io BYTES          most bytes per I/O (default 1M)\n"
	"  --swap-buffered          no O_DIRECT\n"
	"  --swap-no-uring          pread/pwrite instead of io_uring\n"
	"\n"
	"Output:\n"
	"  -j, --json               print one JSON object instead of the table\n"
	"  --hold SECONDS           after the run, print the report and keep the\n"
	"                           pool for SECONDS, for 'kvcctl stats'\n"
	"                           (SIGINT or SIGTERM ends the wait)\n"
	"  --record FILE            record the run's events (requests, blocks,\n"
	"                           chunks, a ladder sample per step) into a\n"
	"                           trace for 'kvcctl trace dump' and\n"
	"                           'kvcctl replay'; its size goes to stderr\n"
	"  -h, --help               show this help\n"
	"\n"
	"Exit status: 0 on success; 1 when the run fails; 2 for a bad command\n"
	"line, shape, policy parameter or trace.\n";

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

static int parse_option(struct run_opts *o, int opt, const char *arg)
{
	struct kvc_run_params *p = &o->p;
	uint64_t value;
	int status;

	switch (opt) {
	case OPT_POLICY:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--policy: the name is empty");
		p->policy.name = arg;
		return -1;
	case OPT_RATE:
		if (kvcctl_parse_seconds(arg, 1, MAX_RATE, &p->policy.rate))
			return kvcctl_usage_error(
				CMD,
				"--rate: '%s' is not a number from 1 to %g",
				arg, MAX_RATE);
		o->have_rate = true;
		return -1;
	case OPT_MAX_CACHE_TOKENS:
		status = parse_count(opt, arg, 1, MAX_COUNT, &value);
		p->policy.max_cache_tokens = value;
		return status;
	case OPT_PROTECTED_WINDOW:
		return parse_u32(opt, arg, 0, MAX_COUNT,
				 &p->policy.protected_window);
	case OPT_SINKS:
		return parse_u32(opt, arg, 0, MAX_COUNT, &p->policy.sinks);
	case OPT_COMPRESS_ONCE:
		p->policy.compress_once = true;
		return -1;
	case OPT_INTERVAL:
		return parse_u32(opt, arg, 1, MAX_COUNT, &p->policy.interval);
	case OPT_WINDOW_TOKENS:
		return parse_u32(opt, arg, 1, MAX_COUNT,
				 &p->policy.window_tokens);
	case OPT_WINDOW_LAYERS:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--window-layers: the list is empty");
		p->policy.window_layers = arg;
		return -1;
	case OPT_LAYERS:
		return parse_u32(opt, arg, 1, MAX_COUNT, &p->shape.layers);
	case OPT_HEADS:
		return parse_u32(opt, arg, 1, MAX_COUNT, &p->shape.q_heads);
	case OPT_KV_HEADS:
		return parse_u32(opt, arg, 1, MAX_COUNT, &p->shape.kv_heads);
	case OPT_HEAD_DIM:
		return parse_u32(opt, arg, 1, MAX_COUNT, &p->shape.head_dim);
	case OPT_BLOCK_SIZE:
		return parse_u32(opt, arg, 1, MAX_COUNT, &p->shape.block_size);
	case OPT_DTYPE:
		if (kvc_dtype_parse(arg, &p->shape.dtype))
			return kvcctl_usage_error(
				CMD, "--dtype: '%s' is not f16, bf16 or f32",
				arg);
		return -1;
	case OPT_SEQS:
		return parse_u32(opt, arg, 1, MAX_SEQS, &p->seqs);
	case OPT_PROMPT_LEN:
		o->have_lengths = true;
		return parse_u32(opt, arg, 1, MAX_COUNT, &p->prompt_len);
	case OPT_GEN_LEN:
		o->have_lengths = true;
		return parse_u32(opt, arg, 0, MAX_COUNT, &p->gen_len);
	case OPT_TRACE:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--trace: the file name is empty");
		o->trace_path = arg;
		return -1;
	case OPT_MAX_TOKENS:
		return parse_u32(opt, arg, 1, MAX_COUNT, &p->max_tokens);
	case OPT_BACKEND:
		if (kvc_backend_kind_parse(arg, &p->backend_kind))
			return kvcctl_usage_error(
				CMD,
				"--backend: '%s' is not one of host, cuda, auto",
				arg);
		return -1;
	case OPT_SEED:
		return parse_count(opt, arg, 0, UINT64_MAX, &p->seed);
	case OPT_BUDGET:
		return kvcctl_opt_bytes(CMD, long_opts, opt, arg, 1,
					&p->budget_bytes);
	case OPT_SWAP:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--swap: the file name is empty");
		o->swap.path = arg;
		return -1;
	case OPT_SWAP_CAP:
		o->swap_opts = true;
		return kvcctl_opt_bytes(CMD, long_opts, opt, arg, 1,
					&o->swap.cap_bytes);
	case OPT_SWAP_QD:
		o->swap_opts = true;
		return kvcctl_opt_u32(CMD, long_opts, opt, arg, 1, 4096,
				      &o->swap.queue_depth);
	case OPT_SWAP_IO: {
		uint64_t v = 0;
		int st;

		o->swap_opts = true;
		st = kvcctl_opt_bytes(CMD, long_opts, opt, arg, 4096, &v);
		if (st >= 0)
			return st;
		if (v > (64u << 20) || v % 4096)
			return kvcctl_usage_error(
				CMD,
				"--swap-io: %s is not a multiple of 4K up to 64M",
				arg);
		o->swap.io_bytes = (uint32_t)v;
		return -1;
	}
	case OPT_SWAP_BUFFERED:
		o->swap_opts = true;
		o->swap.flags |= KVC_SWAP_NO_DIRECT;
		return -1;
	case OPT_SWAP_NO_URING:
		o->swap_opts = true;
		o->swap.flags |= KVC_SWAP_NO_URING;
		return -1;
	case OPT_PREEMPT:
		o->swap_opts = true;
		if (kvc_preempt_parse(arg, &p->preempt))
			return kvcctl_usage_error(
				CMD, "--preempt: '%s' is not latest or largest",
				arg);
		return -1;
	case OPT_ERR_SAMPLES:
		return parse_u32(opt, arg, 0, MAX_COUNT, &p->err_samples);
	case OPT_NO_COMPACT:
		p->compact = false;
		return -1;
	case OPT_HOLD:
		if (kvcctl_parse_seconds(arg, 0, MAX_HOLD, &o->hold))
			return kvcctl_usage_error(
				CMD,
				"--hold: '%s' is not a number of seconds from 0 to %g",
				arg, MAX_HOLD);
		return -1;
	case OPT_RECORD:
		if (!*arg)
			return kvcctl_usage_error(
				CMD, "--record: the file name is empty");
		o->record_path = arg;
		return -1;
	case 'j':
		o->json = true;
		return -1;
	}
	return kvcctl_usage_error(CMD, "option %d not handled", opt);
}

/* What the library says about a bad shape or policy, as a usage error. */
static int check_with_library(const struct run_opts *o)
{
	struct kvc_policy *pol;

	if (kvc_model_shape_check(&o->p.shape))
		return kvcctl_usage_error(CMD, "%s", kvc_last_error());
	if (kvc_policy_create(&o->p.policy, &o->p.shape, &pol))
		return kvcctl_usage_error(CMD, "%s", kvc_last_error());
	kvc_policy_destroy(pol);
	return -1;
}

/* parse_option() as kvcctl_getopt() calls it. */
static int parse_one(void *o, int opt, const char *arg)
{
	return parse_option(o, opt, arg);
}

/*
 * Return: -1 when the options are good and the run should start,
 * otherwise the exit status to end with (after --help, or a usage error).
 */
static int parse_options(int argc, char **argv, struct run_opts *o)
{
	int status;

	memset(o, 0, sizeof(*o));
	kvc_run_params_init(&o->p);
	kvc_swap_params_init(&o->swap);
	status = kvcctl_getopt(CMD, argc, argv, short_opts, long_opts,
			       usage_text, parse_one, o);
	if (status >= 0)
		return status;
	if (o->p.policy.max_cache_tokens) {
		if (o->have_rate)
			return kvcctl_usage_error(
				CMD,
				"--rate and --max-cache-tokens exclude each other");
		o->p.policy.rate = 0;
	}
	if (o->p.policy.compress_once && o->p.policy.interval)
		return kvcctl_usage_error(
			CMD,
			"--interval and --compress-once exclude each other");
	if (o->trace_path && o->have_lengths)
		return kvcctl_usage_error(
			CMD,
			"--prompt-len and --gen-len do not apply with --trace");
	if (o->swap.path && !o->p.budget_bytes)
		return kvcctl_usage_error(
			CMD, "--swap needs --budget: the memory to keep under");
	if (!o->swap.path && o->swap_opts)
		return kvcctl_usage_error(
			CMD,
			"--swap-cap, --swap-qd, --swap-io, --swap-buffered, --swap-no-uring and --preempt need --swap");
	if (o->swap.path)
		o->p.swap = &o->swap;
	return check_with_library(o);
}

/* --trace: read at most as many requests as there are sequences. */
static int read_trace(struct run_opts *o, struct kvc_request **reqs)
{
	uint32_t n;

	if (!o->trace_path)
		return -1;
	if (kvc_trace_read(o->trace_path, o->p.seqs, reqs, &n))
		return kvcctl_usage_error(CMD, "--trace: %s", kvc_last_error());
	o->p.trace = *reqs;
	o->p.nr_trace = n;
	return -1;
}

/* ------------------------------------------------------------------ */
/* Output */

/* A JSON number, or null for what JSON cannot hold (inf, NaN). */
static void json_real(FILE *out, const char *key, double value, bool comma)
{
	fprintf(out, "  \"%s\": ", key);
	if (isfinite(value))
		fprintf(out, "%.6g", value);
	else
		fputs("null", out);
	fputs(comma ? ",\n" : "\n", out);
}

static void json_u64(FILE *out, const char *key, uint64_t value)
{
	fprintf(out, "  \"%s\": %" PRIu64 ",\n", key, value);
}

static void put_json(FILE *out, const struct run_out *ro)
{
	const struct run_opts *o = ro->o;
	const struct kvc_run_report *r = &ro->rep;
	const struct kvc_run_params *p = &o->p;

	fputs("{\n  \"policy\": ", out);
	kvcctl_json_string(out, r->policy);
	fputs(",\n", out);
	json_real(out, "rate", r->rate, true);
	json_u64(out, "max_cache_tokens", p->policy.max_cache_tokens);
	json_u64(out, "protected_window", p->policy.protected_window);
	json_u64(out, "sinks", p->policy.sinks);
	fprintf(out, "  \"compress_once\": %s,\n",
		p->policy.compress_once ? "true" : "false");
	json_u64(out, "interval", p->policy.interval);
	json_u64(out, "window_tokens", p->policy.window_tokens);
	json_u64(out, "layers", p->shape.layers);
	json_u64(out, "q_heads", p->shape.q_heads);
	json_u64(out, "kv_heads", p->shape.kv_heads);
	json_u64(out, "head_dim", p->shape.head_dim);
	json_u64(out, "block_size", p->shape.block_size);
	fprintf(out, "  \"dtype\": \"%s\",\n", kvc_dtype_name(p->shape.dtype));
	json_u64(out, "seqs", r->seqs);
	if (o->trace_path) {
		fputs("  \"trace\": ", out);
		kvcctl_json_string(out, o->trace_path);
		fputs(",\n", out);
	} else {
		json_u64(out, "prompt_len", p->prompt_len);
		json_u64(out, "gen_len", p->gen_len);
	}
	json_u64(out, "max_tokens", p->max_tokens);
	json_u64(out, "seed", p->seed);
	fprintf(out, "  \"compact\": %s,\n", p->compact ? "true" : "false");
	json_u64(out, "steps", r->steps);
	json_u64(out, "logical_bytes", r->logical_bytes);
	json_u64(out, "live_bytes", r->live_bytes);
	json_u64(out, "mapped_bytes", r->mapped_bytes);
	json_u64(out, "chunk_bytes", r->chunk_bytes);
	json_u64(out, "peak_mapped_bytes", r->peak_mapped_bytes);
	json_real(out, "theoretical_ratio", r->theoretical_ratio, true);
	json_real(out, "physical_ratio", r->physical_ratio, true);
	json_real(out, "frag_ratio", r->frag_ratio, true);
	json_u64(out, "conventional_mapped_bytes",
		 r->conventional_mapped_bytes);
	json_real(out, "conventional_ratio", r->conventional_ratio, true);
	json_u64(out, "err_samples", p->err_samples);
	json_real(out, "attn_rel_err", r->attn_rel_err, true);
	json_real(out, "attn_rel_err_max", r->attn_rel_err_max, true);
	json_u64(out, "compressions", r->compressions);
	json_u64(out, "blocks_moved", r->blocks_moved);
	json_u64(out, "budget_bytes", p->budget_bytes);
	json_u64(out, "capacity_full", r->capacity_full);
	json_u64(out, "capacity_compressed", r->capacity_compressed);
	fputs("  \"backend\": ", out);
	kvcctl_json_string(out, r->backend ? r->backend : "host");
	fputs(",\n", out);
	json_u64(out, "device_free_start", r->device_free_start);
	json_u64(out, "device_free_min", r->device_free_min);
	json_u64(out, "device_free_end", r->device_free_end);
	json_u64(out, "device_measured_bytes", r->device_measured_bytes);
	json_u64(out, "device_peak_bytes", r->device_peak_bytes);
	json_u64(out, "device_overhead_bytes", r->device_overhead_bytes);
	json_real(out, "device_ratio", r->device_ratio, true);
	fprintf(out, "  \"output_digest\": \"%016" PRIx64 "\",\n",
		r->output_digest);
	json_u64(out, "preemptions", r->preemptions);
	json_u64(out, "recomputes", r->recomputes);
	json_u64(out, "swap_outs", r->swap_outs);
	json_u64(out, "swap_ins", r->swap_ins);
	json_u64(out, "swap_out_bytes", r->swap_out_bytes);
	json_u64(out, "swap_in_bytes", r->swap_in_bytes);
	json_real(out, "swap_out_seconds", r->swap_out_seconds, true);
	json_real(out, "swap_in_seconds", r->swap_in_seconds, true);
	json_u64(out, "swap_checksum_failures", r->swap_checksum_failures);
	json_u64(out, "swap_failures", r->swap_failures);
	if (o->swap.path) {
		fputs("  \"swap\": {\"path\": ", out);
		kvcctl_json_string(out, o->swap.path);
		fprintf(out, ", \"cap_bytes\": %" PRIu64 ", \"engine\": ",
			o->swap.cap_bytes);
		kvcctl_json_string(out, r->swap_engine ? r->swap_engine : "");
		fprintf(out, ", \"direct\": %s, \"preempt\": \"%s\"},\n",
			r->swap_direct ? "true" : "false",
			kvc_preempt_name(p->preempt));
	}
	json_real(out, "seconds", r->seconds, o->record_path != NULL);
	if (o->record_path) {
		fputs("  \"record\": {\"path\": ", out);
		kvcctl_json_string(out, o->record_path);
		fprintf(out,
			", \"events\": %" PRIu64 ", \"bytes\": %" PRIu64 "}\n",
			ro->rec_events, ro->rec_bytes);
	}
	fputs("}\n", out);
}

/* One line of the memory table: a name, bytes, and a ratio if any. */
static void put_bytes_line(FILE *out, const char *name, uint64_t bytes,
			   double ratio, const char *note)
{
	char b[KVCCTL_BYTES_LEN];

	fprintf(out, "  %-20s %11s", name, kvcctl_human_bytes(bytes, b));
	if (ratio > 0)
		fprintf(out, "  %7.2f", ratio);
	if (note)
		fprintf(out, "  %s", note);
	fputc('\n', out);
}

/* MB/s of @bytes in @s, 0 when nothing was timed. */
static double mbps(uint64_t bytes, double s)
{
	return s > 0 ? (double)bytes / s / 1e6 : 0;
}

static void put_swap(FILE *out, const struct run_opts *o,
		     const struct kvc_run_report *r)
{
	char b1[KVCCTL_BYTES_LEN], b2[KVCCTL_BYTES_LEN];

	fprintf(out,
		"swap           %" PRIu64 " preemptions (%s first), %" PRIu64
		" sequences out, %" PRIu64 " back in, %" PRIu64
		" recomputed; %s, %s\n",
		r->preemptions, kvc_preempt_name(o->p.preempt), r->swap_outs,
		r->swap_ins, r->recomputes,
		r->swap_engine ? r->swap_engine : "-",
		r->swap_direct ? "O_DIRECT" : "buffered");
	fprintf(out,
		"               out %s at %.0f MB/s, in %s at %.0f MB/s, %" PRIu64
		" checksum failures, %" PRIu64 " failed swaps\n",
		kvcctl_human_bytes(r->swap_out_bytes, b1),
		mbps(r->swap_out_bytes, r->swap_out_seconds),
		kvcctl_human_bytes(r->swap_in_bytes, b2),
		mbps(r->swap_in_bytes, r->swap_in_seconds),
		r->swap_checksum_failures, r->swap_failures);
}

static void put_table(FILE *out, const struct run_opts *o,
		      const struct kvc_run_report *r)
{
	const struct kvc_run_params *p = &o->p;
	bool device = r->backend && strcmp(r->backend, "host");
	char name[64], b[KVCCTL_BYTES_LEN];

	kvcctl_sanitize(name, sizeof(name), r->policy);
	fprintf(out, "policy      %s", name);
	/* "full", "window" and "streamingllm" do not size by a budget. */
	if (!strcmp(r->policy, "window") || !strcmp(r->policy, "streamingllm"))
		fprintf(out, ", window %u tokens", p->policy.window_tokens);
	else if (!strcmp(r->policy, "full"))
		fputs(", keeps everything", out);
	else if (r->rate > 0)
		fprintf(out, ", rate %g", r->rate);
	else
		fprintf(out, ", max %" PRIu64 " cache tokens",
			p->policy.max_cache_tokens);
	fprintf(out, ", protected window %u, sinks %u, %s\n",
		p->policy.protected_window, p->policy.sinks,
		p->policy.compress_once ? "compress once" :
					  "continual compression");
	fprintf(out,
		"shape       %u layers, %u query heads, %u KV heads, head_dim %u, block %u, %s\n",
		p->shape.layers, p->shape.q_heads, p->shape.kv_heads,
		p->shape.head_dim, p->shape.block_size,
		kvc_dtype_name(p->shape.dtype));
	fprintf(out, "workload    %u sequences", r->seqs);
	if (o->trace_path) {
		char path[256];

		kvcctl_sanitize(path, sizeof(path), o->trace_path);
		fprintf(out, " from %s", path);
	} else {
		fprintf(out, " of %u + %u tokens", p->prompt_len, p->gen_len);
	}
	if (p->max_tokens)
		fprintf(out, " (cut to %u)", p->max_tokens);
	fprintf(out, ", %" PRIu64 " decode steps, %.2f s\n", r->steps,
		r->seconds);
	kvcctl_sanitize(name, sizeof(name), r->backend ? r->backend : "host");
	fprintf(out, "backend     %s%s\n", name,
		device ? ", device memory also measured with cuMemGetInfo" :
			 "");

	fprintf(out, "\n  %-20s %11s  %7s\n", "memory at the end", "bytes",
		"ratio");
	put_bytes_line(out, "logical (full cache)", r->logical_bytes, 1.0,
		       NULL);
	put_bytes_line(out, "live KVs", r->live_bytes, r->theoretical_ratio,
		       "theoretical");
	put_bytes_line(out, "mapped", r->mapped_bytes, r->physical_ratio,
		       "physical");
	put_bytes_line(out, "conventional layout", r->conventional_mapped_bytes,
		       r->conventional_ratio, "all KV heads in one block");
	put_bytes_line(out, "peak mapped", r->peak_mapped_bytes, 0, NULL);
	put_bytes_line(out, "chunk", r->chunk_bytes, 0, NULL);
	if (device) {
		put_bytes_line(out, "device used", r->device_measured_bytes, 0,
			       "free memory at the start - at the end");
		put_bytes_line(out, "  of it overhead",
			       r->device_overhead_bytes, 0,
			       "slot metadata and staging");
		put_bytes_line(out, "device KV memory",
			       r->device_measured_bytes >
					       r->device_overhead_bytes ?
				       r->device_measured_bytes -
					       r->device_overhead_bytes :
				       0,
			       r->device_ratio, "physical, as measured");
		put_bytes_line(out, "device peak used", r->device_peak_bytes, 0,
			       NULL);
	}

	fputc('\n', out);
	if (isfinite(r->frag_ratio))
		fprintf(out, "fragmentation  %.3f (mapped / live blocks - 1)\n",
			r->frag_ratio);
	else
		fprintf(out,
			"fragmentation  - (chunks mapped, no live block)\n");
	fprintf(out,
		"eviction       %" PRIu64 " sequence compressions, %" PRIu64
		" blocks moved by compaction%s\n",
		r->compressions, r->blocks_moved,
		p->compact ? "" : " (compaction off)");
	if (p->err_samples)
		fprintf(out,
			"attention      relative error %.4f mean, %.4f max, over %u sampled decode steps\n",
			r->attn_rel_err, r->attn_rel_err_max,
			p->err_samples < r->steps ? p->err_samples :
						    (uint32_t)r->steps);
	if (p->budget_bytes && !o->swap.path)
		fprintf(out,
			"capacity       %s holds %" PRIu64
			" sequences without eviction, %" PRIu64 " with it\n",
			kvcctl_human_bytes(p->budget_bytes, b),
			r->capacity_full, r->capacity_compressed);
	if (o->swap.path)
		put_swap(out, o, r);
	fprintf(out, "outputs        digest %016" PRIx64 "\n",
		r->output_digest);
}

/* The trace's size so far (a held run prints before the recorder closes). */
static void record_size(struct run_out *ro)
{
	struct kvc_recorder_stats st;

	if (!ro->rec)
		return;
	kvc_recorder_get_stats(ro->rec, &st);
	ro->rec_events = st.events;
	ro->rec_bytes = st.bytes;
}

/*
 * Close the trace and take its final size from the file. Return: 0, or
 * KVCCTL_EXIT_FAIL after saying why (a trace that could not be written
 * whole is a failed run).
 */
static int record_close(struct run_out *ro)
{
	const char *path = ro->o->record_path;
	struct stat st;
	int err;

	if (!ro->rec)
		return 0;
	err = kvc_recorder_close(ro->rec);
	ro->rec = NULL;
	if (err) {
		fprintf(stderr, "kvcctl run: recording to %s: %s\n", path,
			kvc_last_error());
		return KVCCTL_EXIT_FAIL;
	}
	if (!stat(path, &st) && (uint64_t)st.st_size >= 64) {
		ro->rec_bytes = (uint64_t)st.st_size;
		ro->rec_events = (ro->rec_bytes - 64) / 64;
	}
	return 0;
}

static void put_report(struct run_out *ro)
{
	if (!ro->printed && ro->rec)
		record_size(ro);
	if (ro->o->json)
		put_json(stdout, ro);
	else
		put_table(stdout, ro->o, &ro->rep);
	ro->printed = true;
}

/*
 * kvc_run()'s hold: print the report, then keep the pool (and its stats
 * page) for --hold seconds, or until SIGINT or SIGTERM, which are taken
 * here instead of ending the process, so the pool is still torn down and
 * its page removed.
 */
static void hold_pool(void *arg)
{
	struct run_out *ro = arg;
	struct timespec left, t0, now;
	sigset_t set, old;
	double waited;

	put_report(ro);
	kvcctl_flush();
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, &old))
		return;
	fprintf(stderr,
		"kvcctl run: holding the pool for %g s (pid %d); 'kvcctl stats' shows it\n",
		ro->o->hold, (int)getpid());
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		waited = (double)(now.tv_sec - t0.tv_sec) +
			 (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
		if (waited >= ro->o->hold)
			break;
		left.tv_sec = (time_t)(ro->o->hold - waited);
		left.tv_nsec =
			(long)((ro->o->hold - waited - (double)left.tv_sec) *
			       1e9);
		if (sigtimedwait(&set, NULL, &left) >= 0)
			break; /* interrupted: stop holding, clean up */
		if (errno != EINTR)
			break; /* EAGAIN: the time is up */
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
}

int kvcctl_run(int argc, char **argv)
{
	struct kvc_request *reqs = NULL;
	struct run_opts o;
	struct run_out ro;
	char pool_name[32];
	int status, err;

	status = parse_options(argc, argv, &o);
	if (status >= 0)
		return status;
	status = read_trace(&o, &reqs);
	if (status >= 0)
		return status;
	snprintf(pool_name, sizeof(pool_name), "kvcctl run %s",
		 o.p.policy.name);
	o.p.pool_name = pool_name;
	o.p.progress = isatty(STDERR_FILENO);

	memset(&ro, 0, sizeof(ro));
	ro.o = &o;
	if (o.record_path) {
		err = kvc_recorder_open(o.record_path, NULL, &ro.rec);
		if (err) {
			free(reqs);
			fprintf(stderr, "kvcctl run: --record: %s\n",
				kvc_last_error());
			return KVCCTL_EXIT_FAIL;
		}
		o.p.rec = ro.rec;
	}
	err = kvc_run(&o.p, &ro.rep, o.hold > 0 ? hold_pool : NULL, &ro);
	free(reqs);
	if (err) {
		/* Keep the run's message: closing the trace may set another. */
		char msg[256];

		snprintf(msg, sizeof(msg), "%s", kvc_last_error());
		record_close(&ro);
		if (err == -EINVAL)
			return kvcctl_usage_error(CMD, "%s", msg);
		fprintf(stderr, "kvcctl run: %s\n", msg);
		return KVCCTL_EXIT_FAIL;
	}
	status = record_close(&ro);
	if (status)
		return status;
	if (o.record_path)
		fprintf(stderr,
			"kvcctl run: recorded %" PRIu64 " events, %" PRIu64
			" bytes, to %s\n",
			ro.rec_events, ro.rec_bytes, o.record_path);
	if (!ro.printed)
		put_report(&ro);
	return KVCCTL_EXIT_OK;
}
