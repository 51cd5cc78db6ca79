// SPDX-License-Identifier: MIT
/*
 * `kvcctl trace dump`: print a recorded event trace, one event a line, as
 * text or JSONL. Every event goes through the library's checked reader;
 * the good ones before a bad one are printed, then the reader's message,
 * and the exit status says the trace is bad. Never prints an event the
 * reader refused.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <kvc/kvc.h>

#include "kvcctl.h"

#define CMD "trace"
#define CMD_DUMP "trace dump"

static const char trace_usage[] =
	"Usage: kvcctl trace dump FILE [--json] [--kinds LIST] [--limit N]\n"
	"\n"
	"Read an event trace recorded with 'kvcctl run --record' (or\n"
	"kvc_recorder_open()) and check every event as it is read.\n"
	"\n"
	"Commands:\n"
	"  dump FILE                print the events, one a line\n"
	"\n"
	"Run 'kvcctl trace dump --help' for its options.\n";

static const char dump_usage[] =
	"Usage: kvcctl trace dump FILE [OPTIONS]\n"
	"\n"
	"Print each event of the trace FILE on one line, as\n"
	"  #12 step 3 blk_alloc block=17\n"
	"or, with --json, as one JSON object a line (JSONL). Every event is\n"
	"checked; a trace that is bad or cut short prints the events before\n"
	"the fault, then what is wrong. A summary line goes to stderr.\n"
	"\n"
	"Options:\n"
	"  -j, --json               JSONL instead of text\n"
	"  --kinds LIST             print only these kinds, comma-separated\n"
	"                           (e.g. alloc,blk_alloc,chunk_map); all are\n"
	"                           still checked\n"
	"  --limit N                print at most N events; all are still\n"
	"                           checked\n"
	"  -h, --help               show this help\n"
	"\n"
	"Exit status: 0 for a good trace; 1 for a bad or truncated trace, or\n"
	"one that cannot be read; 2 for a bad command line.\n";

enum {
	OPT_KINDS = 256,
	OPT_LIMIT,
};

/* "-": FILE comes to the parser as option 1, wherever it stands. */
static const char short_opts[] = "-:jh";

static const struct option long_opts[] = {
	{ "json", no_argument, NULL, 'j' },
	{ "kinds", required_argument, NULL, OPT_KINDS },
	{ "limit", required_argument, NULL, OPT_LIMIT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/**
 * struct dump_opts - What `kvcctl trace dump` was asked to do.
 * @path: the trace.
 * @json: JSONL output.
 * @kinds: the kinds to print, by kind number; all when @filter is false.
 * @filter: --kinds was given.
 * @limit: events to print at most (UINT64_MAX: all).
 */
struct dump_opts {
	const char *path;
	bool json;
	bool kinds[KVC_REC_KIND_MAX];
	bool filter;
	uint64_t limit;
};

/* --kinds: every name must be a kind's. */
static int parse_kinds(struct dump_opts *o, const char *list)
{
	char name[32];
	const char *p = list, *end;
	size_t len;
	uint32_t k;

	if (!*list)
		return kvcctl_usage_error(CMD_DUMP,
					  "--kinds: the list is empty");
	o->filter = true;
	while (*p) {
		end = strchr(p, ',');
		len = end ? (size_t)(end - p) : strlen(p);
		if (!len || len >= sizeof(name))
			return kvcctl_usage_error(
				CMD_DUMP,
				"--kinds: '%s' has an empty or overlong name",
				list);
		memcpy(name, p, len);
		name[len] = '\0';
		for (k = 0; k < KVC_REC_KIND_MAX; k++) {
			const char *kn = kvc_rec_kind_name(k);

			if (kn && !strcmp(kn, name))
				break;
		}
		if (k == KVC_REC_KIND_MAX) {
			char shown[32];

			kvcctl_sanitize(shown, sizeof(shown), name);
			return kvcctl_usage_error(
				CMD_DUMP, "--kinds: '%s' is not an event kind",
				shown);
		}
		o->kinds[k] = true;
		p += len;
		if (*p == ',')
			p++;
	}
	return -1;
}

/* One option of dump, as kvcctl_getopt() calls it. */
static int parse_one(void *arg, int opt, const char *val)
{
	struct dump_opts *o = arg;

	switch (opt) {
	case 1:
		if (o->path)
			return kvcctl_usage_error(
				CMD_DUMP, "unexpected argument '%s'", val);
		o->path = val;
		return -1;
	case 'j':
		o->json = true;
		return -1;
	case OPT_KINDS:
		return parse_kinds(o, val);
	case OPT_LIMIT:
		return kvcctl_opt_u64(CMD_DUMP, long_opts, opt, val, 0,
				      UINT64_MAX, &o->limit);
	}
	return kvcctl_usage_error(CMD_DUMP, "option %d not handled", opt);
}

/* Return: -1 to go on, or the exit status. */
static int parse_dump(int argc, char **argv, struct dump_opts *o)
{
	int status;

	memset(o, 0, sizeof(*o));
	o->limit = UINT64_MAX;
	status = kvcctl_getopt(CMD_DUMP, argc, argv, short_opts, long_opts,
			       dump_usage, parse_one, o);
	if (status >= 0)
		return status;
	if (!o->path)
		return kvcctl_usage_error(CMD_DUMP, "no trace file given");
	return -1;
}

/**
 * struct dump_sum - What the summary line says.
 * @events: events read and found good.
 * @printed: of them printed.
 * @last: the last good event.
 */
struct dump_sum {
	uint64_t events;
	uint64_t printed;
	struct kvc_rec_event last;
};

static void put_summary(const struct dump_opts *o, const struct dump_sum *s,
			bool good)
{
	char path[256];

	kvcctl_sanitize(path, sizeof(path), o->path);
	fprintf(stderr,
		"kvcctl trace: %s: %" PRIu64 " events, %" PRIu64
		" printed, last step %u, %.3f s%s\n",
		path, s->events, s->printed, s->last.step,
		(double)s->last.t_ns / 1e9, good ? "" : " (bad trace)");
}

/*
 * The reader's message, with the file's name unless it has it already:
 * a fault found mid-trace is reported without it.
 */
static void put_error(const struct dump_opts *o)
{
	const char *msg = kvc_last_error();
	char path[256];

	if (strstr(msg, o->path)) {
		fprintf(stderr, "kvcctl trace: %s\n", msg);
		return;
	}
	kvcctl_sanitize(path, sizeof(path), o->path);
	fprintf(stderr, "kvcctl trace: %s: %s\n", path, msg);
}

static int dump(const struct dump_opts *o)
{
	struct kvc_rec_reader *r;
	struct kvc_rec_event ev;
	struct dump_sum sum;
	char line[512];
	int ret;

	memset(&sum, 0, sizeof(sum));
	if (kvc_rec_reader_open(o->path, &r)) {
		put_error(o);
		return KVCCTL_EXIT_FAIL;
	}
	while ((ret = kvc_rec_next(r, &ev)) == 1) {
		sum.events++;
		sum.last = ev;
		if (sum.printed >= o->limit)
			continue;
		if (o->filter && !o->kinds[ev.kind])
			continue;
		if (kvc_rec_format(&ev, kvc_rec_reader_index(r), o->json, line,
				   sizeof(line)) < 0)
			continue;
		puts(line);
		sum.printed++;
	}
	kvc_rec_reader_close(r);
	if (kvcctl_flush()) {
		fprintf(stderr, "kvcctl trace: writing the output failed\n");
		return KVCCTL_EXIT_FAIL;
	}
	if (ret < 0) {
		put_error(o);
		put_summary(o, &sum, false);
		return KVCCTL_EXIT_FAIL;
	}
	put_summary(o, &sum, true);
	return KVCCTL_EXIT_OK;
}

int kvcctl_trace(int argc, char **argv)
{
	struct dump_opts o;
	int status;

	if (argc < 2)
		return kvcctl_usage_error(CMD, "no command given (dump)");
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(trace_usage, stdout);
		return KVCCTL_EXIT_OK;
	}
	if (strcmp(argv[1], "dump")) {
		char shown[64];

		kvcctl_sanitize(shown, sizeof(shown), argv[1]);
		return kvcctl_usage_error(CMD, "unknown command '%s' (dump)",
					  shown);
	}
	status = parse_dump(argc - 1, argv + 1, &o);
	if (status >= 0)
		return status;
	return dump(&o);
}
