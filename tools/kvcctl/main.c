// SPDX-License-Identifier: MIT
/*
 * kvcctl: the command table and the dispatch to one subcommand. A new
 * subcommand is one file with its fn and one line in commands[]; nothing
 * here knows what a subcommand does. Output errors are caught here, once,
 * so no command reports success after a failed write.
 */
#include <stdio.h>
#include <string.h>

#include <kvc/kvc.h>

#include "kvcctl.h"

static const struct kvcctl_cmd commands[] = {
	{ "stats", kvcctl_stats, "show the kvc pools of running processes" },
	{ "run", kvcctl_run,
	  "run a workload with an eviction policy and report the memory saved" },
	{ "generate", kvcctl_generate,
	  "generate text with a GGUF model over the compressed KV cache" },
	{ "eval", kvcctl_eval,
	  "measure what each policy and rate costs a model's predictions" },
	{ "trace", kvcctl_trace,
	  "print a recorded event trace as text or JSON" },
	{ "replay", kvcctl_replay,
	  "replay a trace or a request CSV under several configurations" },
};

#define NR_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	size_t i;

	fprintf(out, "Usage: kvcctl COMMAND [OPTIONS]\n"
		     "       kvcctl help [COMMAND]\n"
		     "       kvcctl --version\n"
		     "\n"
		     "Commands:\n");
	for (i = 0; i < NR_COMMANDS; i++)
		fprintf(out, "  %-10s %s\n", commands[i].name,
			commands[i].help);
	fprintf(out,
		"\n"
		"Run 'kvcctl COMMAND --help' for the options of a command.\n");
}

static const struct kvcctl_cmd *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < NR_COMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

/* `kvcctl help [COMMAND]`: the same text as `kvcctl COMMAND --help`. */
static int help(int argc, char **argv)
{
	const struct kvcctl_cmd *cmd;
	char *help_argv[3];

	if (argc == 1) {
		usage(stdout);
		return KVCCTL_EXIT_OK;
	}
	if (argc > 2)
		return kvcctl_usage_error(
			NULL, "help: unexpected argument '%s'", argv[2]);
	cmd = find_command(argv[1]);
	if (!cmd)
		return kvcctl_usage_error(NULL, "help: unknown command '%s'",
					  argv[1]);
	help_argv[0] = (char *)cmd->name;
	help_argv[1] = "--help";
	help_argv[2] = NULL;
	return cmd->fn(2, help_argv);
}

static int dispatch(int argc, char **argv)
{
	const struct kvcctl_cmd *cmd;
	const char *word;

	if (argc < 2) {
		usage(stderr);
		return KVCCTL_EXIT_USAGE;
	}
	word = argv[1];
	if (!strcmp(word, "--help") || !strcmp(word, "-h")) {
		usage(stdout);
		return KVCCTL_EXIT_OK;
	}
	if (!strcmp(word, "--version") || !strcmp(word, "-V")) {
		printf("kvcctl %s\n", KVC_VERSION);
		return KVCCTL_EXIT_OK;
	}
	if (!strcmp(word, "help"))
		return help(argc - 1, argv + 1);
	if (word[0] == '-')
		return kvcctl_usage_error(NULL, "unknown option '%s'", word);
	cmd = find_command(word);
	if (!cmd)
		return kvcctl_usage_error(NULL, "unknown command '%s'", word);
	return cmd->fn(argc - 1, argv + 1);
}

int main(int argc, char **argv)
{
	int status = dispatch(argc, argv);
	int err;

	/* A full disk or a closed pipe must not look like success. */
	err = kvcctl_flush();
	if (err) {
		fprintf(stderr, "kvcctl: error writing output: %s\n",
			strerror(-err));
		if (status == KVCCTL_EXIT_OK)
			status = KVCCTL_EXIT_FAIL;
	}
	return status;
}
