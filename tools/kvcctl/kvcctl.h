/* SPDX-License-Identifier: MIT */
/*
 * kvcctl: what a subcommand is (an entry in the command table of main.c),
 * and the helpers the subcommands share for reading their options and
 * writing text that other people and programs will read.
 */
#ifndef KVCCTL_H
#define KVCCTL_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* Exit statuses, the same for every subcommand. */
#define KVCCTL_EXIT_OK 0 /* done, including "nothing found" */
#define KVCCTL_EXIT_FAIL 1 /* the command ran and something failed */
#define KVCCTL_EXIT_USAGE 2 /* bad command line; nothing was done */

/**
 * struct kvcctl_cmd - One subcommand.
 * @name: the word typed after `kvcctl`.
 * @fn: runs the command; argv[0] is @name, getopt-style options follow.
 *      Returns the process exit status (KVCCTL_EXIT_*). `--help` must print
 *      the command's usage on stdout and return KVCCTL_EXIT_OK.
 * @help: one line for `kvcctl --help`.
 */
struct kvcctl_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
};

/**
 * kvcctl_now_s() - CLOCK_MONOTONIC in seconds, for timing what a command
 * does.
 *
 * Return: the time.
 */
static inline double kvcctl_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Subcommands, one file each. */
int kvcctl_stats(int argc, char **argv);
int kvcctl_run(int argc, char **argv);
int kvcctl_generate(int argc, char **argv);
int kvcctl_eval(int argc, char **argv);
int kvcctl_trace(int argc, char **argv);
int kvcctl_replay(int argc, char **argv);

/* args.c: option values and usage errors. */

/**
 * kvcctl_usage_error() - Report a bad command line.
 * @cmd: the subcommand ("stats"), or NULL for kvcctl itself.
 * @fmt: printf-style message naming the flag or argument at fault.
 *
 * Prints one line with the message, then one line with a usage hint,
 * both on stderr.
 *
 * Return: %KVCCTL_EXIT_USAGE.
 */
int kvcctl_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/**
 * kvcctl_parse_u64() - Parse a decimal integer option value.
 * @s: the text; digits only, no sign, no spaces.
 * @min: smallest value accepted.
 * @max: largest value accepted.
 * @out: set on success.
 *
 * Return: 0, -EINVAL when @s is not a decimal number, -ERANGE when it is
 * out of [@min, @max].
 */
int kvcctl_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/**
 * kvcctl_long_name() - The long name of an option.
 * @opts: the getopt_long() table.
 * @val: the option's value.
 *
 * Return: the name, or "?".
 */
const char *kvcctl_long_name(const struct option *opts, int val);

/**
 * kvcctl_unknown_option() - Say which argument getopt_long() refused.
 * @cmd: the subcommand.
 * @opts: its getopt_long() table.
 * @argv: the arguments.
 * @optind_now: optind after the refusal.
 * @opt_char: optopt after the refusal.
 *
 * Tells an unknown short or long option, an ambiguous prefix and a value
 * given to a flag apart.
 *
 * Return: 2, as kvcctl_usage_error().
 */
int kvcctl_unknown_option(const char *cmd, const struct option *opts,
			  char **argv, int optind_now, int opt_char);

/**
 * kvcctl_opt_u64() - Parse a whole-number option value, or say why not.
 * @cmd: the subcommand, for the message.
 * @opts: its getopt_long() table, for the option's name.
 * @opt: the option's value.
 * @arg: the text.
 * @min: smallest value accepted.
 * @max: largest value accepted.
 * @out: set on success.
 *
 * Return: -1 when @arg is good (the option loop's "go on"), else the
 * usage error's exit status, with a message naming the option.
 */
int kvcctl_opt_u64(const char *cmd, const struct option *opts, int opt,
		   const char *arg, uint64_t min, uint64_t max, uint64_t *out);

/**
 * kvcctl_opt_bytes() - Parse a size option: digits with an optional K, M,
 * G or T (binary units), and B or iB after it.
 * @cmd: as kvcctl_opt_u64().
 * @opts: as kvcctl_opt_u64().
 * @opt: as kvcctl_opt_u64().
 * @s: the text.
 * @min: smallest value accepted.
 * @out: set on success.
 *
 * Return: as kvcctl_opt_u64().
 */
int kvcctl_opt_bytes(const char *cmd, const struct option *opts, int opt,
		     const char *s, uint64_t min, uint64_t *out);

/**
 * kvcctl_opt_u32() - kvcctl_opt_u64() into a 32-bit field.
 * @cmd: as kvcctl_opt_u64().
 * @opts: as kvcctl_opt_u64().
 * @opt: as kvcctl_opt_u64().
 * @arg: as kvcctl_opt_u64().
 * @min: as kvcctl_opt_u64().
 * @max: as kvcctl_opt_u64(); at most UINT32_MAX.
 * @out: set on success.
 *
 * Return: as kvcctl_opt_u64().
 */
int kvcctl_opt_u32(const char *cmd, const struct option *opts, int opt,
		   const char *arg, uint64_t min, uint64_t max, uint32_t *out);

/**
 * kvcctl_opt_real() - Parse a decimal option value, or say why not.
 * @cmd: as kvcctl_opt_u64().
 * @opts: as kvcctl_opt_u64().
 * @opt: as kvcctl_opt_u64().
 * @arg: the text; digits with at most one decimal point, as
 *       kvcctl_parse_seconds() takes.
 * @min: smallest value accepted.
 * @max: largest value accepted.
 * @out: set on success; left alone otherwise.
 *
 * Return: as kvcctl_opt_u64().
 */
int kvcctl_opt_real(const char *cmd, const struct option *opts, int opt,
		    const char *arg, double min, double max, double *out);

struct kvc_policy_params;

/**
 * kvcctl_policy_published() - A policy's published observation settings.
 * @pp: parameters whose name is set; the rest as kvc_policy_params_init()
 *      left them.
 *
 * The library's defaults are KV-Compress's (an observation window of 8,
 * L2, no pooling), which make H2O and SnapKV rank alike; the commands
 * that run a model give H2O every prompt query (L1) and SnapKV a window
 * of 32 max-pooled over 7, as their papers do.
 */
void kvcctl_policy_published(struct kvc_policy_params *pp);

/**
 * kvcctl_getopt() - The option loop of a command.
 * @cmd: the command, for messages.
 * @argc: arguments.
 * @argv: their values.
 * @short_opts: getopt_long()'s short options (":h..." form).
 * @long_opts: its long options.
 * @usage: printed on stdout for -h/--help.
 * @parse: called for every other option with its value; returns < 0 to go
 *         on, or the exit status to end with.
 * @arg: passed to @parse.
 *
 * Refuses missing values, unknown options and operands with a usage error.
 *
 * Return: -1 when every option was taken, otherwise the exit status (0
 * after --help).
 */
int kvcctl_getopt(const char *cmd, int argc, char **argv,
		  const char *short_opts, const struct option *long_opts,
		  const char *usage,
		  int (*parse)(void *arg, int opt, const char *optarg),
		  void *arg);

/**
 * kvcctl_parse_seconds() - Parse a duration such as "2" or "0.5".
 * @s: the text; digits with at most one decimal point, no sign or exponent.
 * @min: shortest duration accepted, in seconds.
 * @max: longest duration accepted, in seconds.
 * @out: set on success.
 *
 * Return: 0, -EINVAL when @s is not such a number, -ERANGE when it is out
 * of [@min, @max].
 */
int kvcctl_parse_seconds(const char *s, double min, double max, double *out);

/* model_cmd.c: what the commands that run a model (generate, eval) share. */

/* The model they load unless --model names another; 'make model' gets it. */
#define KVCCTL_MODEL_DEFAULT "models/SmolLM2-135M-Instruct.Q4_1.gguf"
/* Tokens per block of their caches. */
#define KVCCTL_MODEL_BLOCK_SIZE 16

struct kvc_gguf;
struct kvc_tokenizer;
struct kvc_llama;
struct kvc_model_shape;
struct kvc_policy;
struct kvc_kv;
struct kvc_seq;

/**
 * kvcctl_model_load() - Open a GGUF model with its tokenizer.
 * @cmd: the subcommand, for the messages.
 * @path: the GGUF file.
 * @g: set to the file.
 * @tok: set to its tokenizer.
 * @m: set to its model.
 *
 * Says on stderr why it failed, with the way to get the default model
 * when that one is missing. On failure what was opened is still set, for
 * the caller to free with the rest of its state.
 *
 * Return: 0, -ENOENT when there is no file at @path, -EINVAL when it
 * cannot be read as a model.
 */
int kvcctl_model_load(const char *cmd, const char *path, struct kvc_gguf **g,
		      struct kvc_tokenizer **tok, struct kvc_llama **m);

/**
 * kvcctl_model_shape() - The cache shape of a loaded model, in the block
 * size and storage type the model commands use.
 * @m: the model.
 * @shape: filled.
 */
void kvcctl_model_shape(const struct kvc_llama *m,
			struct kvc_model_shape *shape);

/**
 * kvcctl_model_capacity() - Blocks a cache needs to hold a sequence of
 * @tokens tokens uncompressed.
 * @shape: the cache's shape.
 * @tokens: the sequence's longest length.
 *
 * Return: a block count that covers every (layer, KV head) of the
 * sequence at full length, so eviction is never needed to fit.
 */
uint64_t kvcctl_model_capacity(const struct kvc_model_shape *shape,
			       uint64_t tokens);

/**
 * kvcctl_model_check_policy() - Whether policy parameters are valid,
 * before the model is loaded.
 * @pp: the parameters.
 *
 * Names and rates do not depend on the model, so a bad one is refused
 * against the library's default model shape (kvc_run_params_init()).
 *
 * Return: 0, or the error of kvc_policy_create(), with its message.
 */
int kvcctl_model_check_policy(const struct kvc_policy_params *pp);

/**
 * kvcctl_model_compress() - Compress a sequence when its policy says it is
 * due, then compact the pool so the blocks freed leave the mapping.
 * @pol: the policy.
 * @kv: the cache.
 * @seq: the sequence.
 * @steps: decode steps since the prefill (0 right after it).
 * @compressions: counts the compressions done; may be NULL.
 *
 * Return: 0 (compressed or not due), or -errno.
 */
int kvcctl_model_compress(struct kvc_policy *pol, struct kvc_kv *kv,
			  struct kvc_seq *seq, uint32_t steps,
			  uint32_t *compressions);

/**
 * kvcctl_argmax() - The index of the largest value, the first one on a
 * tie.
 * @x: the values (logits or log-probabilities).
 * @n: their count, at least 1.
 *
 * Return: the index.
 */
uint32_t kvcctl_argmax(const float *x, uint32_t n);

/* text.c: human units, terminal-safe names, JSON strings, flushing. */

/**
 * kvcctl_flush() - Flush stdout and say whether all of it was written.
 *
 * The first write error is kept, so a later call still reports it.
 *
 * Return: 0, or the -errno of the first failed write (-ENOSPC, -EPIPE...).
 */
int kvcctl_flush(void);

/* Room for "1023.9 KiB" and the like, with the NUL. */
#define KVCCTL_BYTES_LEN 16

/**
 * kvcctl_human_bytes() - Format a byte count in binary units.
 * @bytes: the count.
 * @buf: at least %KVCCTL_BYTES_LEN bytes.
 *
 * "512 B", "84.2 KiB", "2.0 MiB", ... up to EiB, one decimal.
 *
 * Return: @buf.
 */
char *kvcctl_human_bytes(uint64_t bytes, char *buf);

/**
 * kvcctl_sanitize() - Copy text from another process for a terminal.
 * @dst: the copy; NUL-terminated, at most @len - 1 bytes.
 * @len: size of @dst, at least 1.
 * @src: the text, NUL-terminated.
 *
 * Control characters (C0, DEL, C1) and bytes that are not valid UTF-8
 * become '?', so a name cannot move the cursor or change the terminal.
 * The copy stops at a character boundary when @dst is full.
 */
void kvcctl_sanitize(char *dst, size_t len, const char *src);

/**
 * kvcctl_text_width() - Columns a sanitized UTF-8 string takes.
 * @s: the string.
 *
 * Counts characters, one column each.
 *
 * Return: the width.
 */
size_t kvcctl_text_width(const char *s);

/**
 * kvcctl_json_string() - Write a JSON string literal.
 * @out: the stream.
 * @s: the text, NUL-terminated, from anywhere.
 *
 * Quotes, backslashes and control characters are escaped; bytes that are
 * not valid UTF-8 become U+FFFD, so the output is always valid JSON.
 */
void kvcctl_json_string(FILE *out, const char *s);

#endif /* KVCCTL_H */
