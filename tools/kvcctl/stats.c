// SPDX-License-Identifier: MIT
/*
 * `kvcctl stats`: find the stats pages of the user's pools, show them once
 * or every few seconds (with each pool's trend since the last refresh),
 * show their recent ladder samples, and remove the pages that processes
 * which are gone left behind. Pages are read only through kvc_stats_list(), which checks
 * each one; a page it refuses is reported on stderr, never shown, never
 * removed.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kvc/kvc.h>

#include "kvcctl.h"
#include "stats.h"

#define CMD "stats"
/* The help text says how many samples a page keeps. */
_Static_assert(KVC_STATS_RING == 256, "update --history in the help");

/* Refresh intervals accepted by --watch, in seconds. */
#define WATCH_MIN 0.01
#define WATCH_MAX 86400.0

/**
 * struct stats_opts - What `kvcctl stats` was asked to do.
 * @dir: directory of the pages.
 * @pid: only this process's pools, or 0 for all.
 * @json: print JSON instead of the table.
 * @clean: remove stale pages before showing.
 * @watch: seconds between refreshes, or 0 to show once.
 * @count: refreshes before stopping, or 0 for "until interrupted".
 * @history: latest ladder samples to show per pool, or 0 for none.
 */
struct stats_opts {
	const char *dir;
	pid_t pid;
	bool json;
	bool clean;
	double watch;
	uint64_t count;
	uint32_t history;
};

/**
 * struct stats_run - What happened while showing.
 * @refused: pages refused by the reader during the current refresh.
 * @clean_failed: a stale page could not be removed (exit status 1).
 * @trend: the levels of the last --watch refresh.
 * @have_trend: @trend holds a refresh.
 */
struct stats_run {
	uint32_t refused;
	bool clean_failed;
	struct stats_trend trend;
	bool have_trend;
};

static volatile sig_atomic_t interrupted;

enum { OPT_COUNT = 'n', OPT_HISTORY = 256 };

static const char short_opts[] = ":p:jw:n:d:ch";

static const struct option long_opts[] = {
	{ "pid", required_argument, NULL, 'p' },
	{ "json", no_argument, NULL, 'j' },
	{ "watch", required_argument, NULL, 'w' },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "dir", required_argument, NULL, 'd' },
	{ "clean", no_argument, NULL, 'c' },
	{ "history", optional_argument, NULL, OPT_HISTORY },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const char usage_text[] =
	"Usage: kvcctl stats [--pid N] [--json] [--watch SECONDS [--count N]]\n"
	"                    [--history [N]] [--dir DIR] [--clean]\n"
	"\n"
	"Show the kvc pools of your running processes, read from the stats\n"
	"page each pool publishes: counters, fragmentation, and the byte\n"
	"ladder (logical, live, held, mapped, parked bytes) of the latest\n"
	"sample the pool took, with its peaks.\n"
	"\n"
	"Options:\n"
	"  -p, --pid N          only the pools of process N\n"
	"  -j, --json           print a JSON array, one object per pool\n"
	"  -w, --watch SECONDS  show again every SECONDS (0.5 is fine) until\n"
	"                       interrupted, with each pool's trend: held,\n"
	"                       mapped and live bytes per second since the\n"
	"                       last refresh, and mapped over recent samples\n"
	"  -n, --count N        with --watch: stop after N refreshes\n"
	"      --history [N]    also show the last N ladder samples of each\n"
	"                       pool (default: all kept, up to 256); with\n"
	"                       --json, as a \"history\" array in each pool\n"
	"  -d, --dir DIR        read the pages in DIR (default: $KVC_STATS_DIR,\n"
	"                       else " KVC_STATS_DIR ")\n"
	"  -c, --clean          remove the pages of processes that are gone\n"
	"  -h, --help           show this help\n"
	"\n"
	"A pool whose process is gone is shown as 'stale'. A page that does not\n"
	"pass the reader's checks is refused: reported on stderr, not shown.\n"
	"\n"
	"Exit status: 0 on success, also when no pool is found; 1 when the\n"
	"directory cannot be read or a stale page cannot be removed; 2 for a\n"
	"bad command line.\n";

static void usage(FILE *out)
{
	fputs(usage_text, out);
}

/*
 * Return: -1 when the options are good and the command should run,
 * otherwise the exit status to end with (after --help, or a usage error).
 */
static int parse_options(int argc, char **argv, struct stats_opts *o)
{
	bool have_count = false;
	uint64_t value;
	int opt;

	memset(o, 0, sizeof(*o));
	o->dir = kvc_stats_dir();
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, short_opts, long_opts, NULL)) !=
	       -1) {
		switch (opt) {
		case 'p':
			if (kvcctl_parse_u64(optarg, 1, INT_MAX, &value))
				return kvcctl_usage_error(
					CMD, "--pid: '%s' is not a process id",
					optarg);
			o->pid = (pid_t)value;
			break;
		case 'j':
			o->json = true;
			break;
		case 'w':
			if (kvcctl_parse_seconds(optarg, WATCH_MIN, WATCH_MAX,
						 &o->watch))
				return kvcctl_usage_error(
					CMD,
					"--watch: '%s' is not a number of seconds from %g to %g",
					optarg, WATCH_MIN, WATCH_MAX);
			break;
		case OPT_COUNT:
			if (kvcctl_parse_u64(optarg, 1, UINT64_MAX, &o->count))
				return kvcctl_usage_error(
					CMD,
					"--count: '%s' is not a positive number",
					optarg);
			have_count = true;
			break;
		case 'd':
			if (!*optarg)
				return kvcctl_usage_error(
					CMD,
					"--dir: the directory name is empty");
			o->dir = optarg;
			break;
		case 'c':
			o->clean = true;
			break;
		case OPT_HISTORY:
			/* "--history N" as well as "--history=N". */
			if (!optarg && optind < argc &&
			    argv[optind][0] >= '0' && argv[optind][0] <= '9')
				optarg = argv[optind++];
			if (!optarg) {
				o->history = KVC_STATS_RING;
				break;
			}
			if (kvcctl_parse_u64(optarg, 1, UINT32_MAX, &value))
				return kvcctl_usage_error(
					CMD,
					"--history: '%s' is not a positive number of samples",
					optarg);
			o->history = (uint32_t)value;
			break;
		case 'h':
			usage(stdout);
			return KVCCTL_EXIT_OK;
		case ':':
			return kvcctl_usage_error(
				CMD, "--%s needs a value",
				kvcctl_long_name(long_opts, optopt));
		default:
			return kvcctl_unknown_option(CMD, long_opts, argv,
						     optind, optopt);
		}
	}
	if (optind < argc)
		return kvcctl_usage_error(CMD, "unexpected argument '%s'",
					  argv[optind]);
	if (have_count && !o->watch)
		return kvcctl_usage_error(CMD, "--count needs --watch");
	return -1;
}

/* kvc_stats_list()'s on_bad: say on stderr why a page is refused. */
static void on_refused(const char *path, int err, const char *msg, void *arg)
{
	struct stats_run *run = arg;
	char line[512], safe[512];

	/* The reader's messages start with the path; add it if one does not. */
	if (!msg || !*msg)
		snprintf(line, sizeof(line), "%s: %s", path, strerror(-err));
	else if (strncmp(msg, path, strlen(path)))
		snprintf(line, sizeof(line), "%s: %s", path, msg);
	else
		snprintf(line, sizeof(line), "%s", msg);
	kvcctl_sanitize(safe, sizeof(safe), line);
	fprintf(stderr, "kvcctl stats: refused %s\n", safe);
	run->refused++;
}

/*
 * Remove the pages of processes that are gone, and drop them from @snaps.
 * Messages go to stdout with the table, to stderr with JSON (stdout then
 * holds JSON only).
 *
 * Return: how many pages are left in @snaps.
 */
static uint32_t clean_stale(const struct stats_opts *o,
			    struct kvc_stats_snapshot *snaps, uint32_t n,
			    struct stats_run *run)
{
	FILE *out = o->json ? stderr : stdout;
	char name[sizeof(snaps->page.name)];
	uint32_t i, kept = 0, removed = 0;
	int err;

	for (i = 0; i < n; i++) {
		if (!snaps[i].alive) {
			kvcctl_sanitize(name, sizeof(name), snaps[i].page.name);
			err = kvc_stats_remove_stale(snaps[i].path);
			if (!err || err == -ENOENT) {
				if (!err) {
					fprintf(out,
						"removed stale page %s (pid %" PRIu32
						", pool '%s')\n",
						snaps[i].path,
						snaps[i].page.pid, name);
					removed++;
				}
				continue;
			}
			fprintf(stderr,
				"kvcctl stats: cannot remove stale page: %s\n",
				kvc_last_error());
			run->clean_failed = true;
		}
		if (kept != i)
			snaps[kept] = snaps[i];
		kept++;
	}
	if (removed && !o->json)
		fputc('\n', out);
	return kept;
}

static void put_watch_heading(const struct stats_opts *o)
{
	char when[32] = "";
	struct tm tm;
	time_t now;

	now = time(NULL);
	if (localtime_r(&now, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	printf("every %gs  %s  %s\n\n", o->watch, o->dir, when);
}

static void put_footer(const struct kvc_stats_snapshot *snaps, uint32_t n,
		       const struct stats_run *run)
{
	uint32_t i, stale = 0;

	for (i = 0; i < n; i++)
		stale += !snaps[i].alive;
	if (stale)
		printf("\n%" PRIu32 " stale page%s: the process is gone; "
		       "'kvcctl stats --clean' removes %s\n",
		       stale, stale == 1 ? "" : "s",
		       stale == 1 ? "it" : "them");
	if (run->refused)
		printf("%s%" PRIu32 " page%s refused: reasons on stderr\n",
		       stale ? "" : "\n", run->refused,
		       run->refused == 1 ? "" : "s");
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* List, clean and show once. Return: 0, or -errno when nothing was shown. */
static int show_once(const struct stats_opts *o, struct stats_run *run)
{
	struct kvc_stats_snapshot *snaps;
	uint64_t now;
	uint32_t n;
	int err;

	if (o->watch && isatty(STDOUT_FILENO)) {
		/* Home and clear; flushed so stderr lines come after it. */
		fputs("\033[H\033[2J", stdout);
		fflush(stdout);
	}
	run->refused = 0;
	err = kvc_stats_list(o->dir, o->pid, &snaps, &n, on_refused, run);
	if (err) {
		fprintf(stderr, "kvcctl stats: cannot list pages: %s\n",
			kvc_last_error());
		return err;
	}
	if (o->clean)
		n = clean_stale(o, snaps, n, run);

	if (o->json) {
		stats_show_json(stdout, snaps, n, o->history);
		goto out;
	}
	if (o->watch)
		put_watch_heading(o);
	if (!n) {
		if (o->pid)
			printf("no kvc pools of pid %d in %s\n", (int)o->pid,
			       o->dir);
		else
			printf("no kvc pools in %s\n", o->dir);
	} else {
		err = stats_show_table(stdout, snaps, n);
		if (!err && o->history)
			err = stats_show_history(stdout, snaps, n, o->history);
		if (err) {
			fprintf(stderr, "kvcctl stats: out of memory\n");
			goto out;
		}
		if (o->watch) {
			now = monotonic_ns();
			stats_show_trend(stdout, snaps, n,
					 run->have_trend ? &run->trend : NULL,
					 now);
			stats_trend_take(snaps, n, &run->trend, now);
			run->have_trend = true;
		}
	}
	put_footer(snaps, n, run);
out:
	free(snaps);
	return err;
}

static void on_interrupt(int sig)
{
	interrupted = 1;
}

/*
 * SIGINT and SIGTERM end --watch cleanly. They stay blocked except while
 * waiting in ppoll(), so one that arrives during a refresh is not lost and
 * a long interval is cut short at once.
 */
static int watch_signals(sigset_t *wait_mask)
{
	struct sigaction sa;
	sigset_t block;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &block, wait_mask))
		return -errno;
	if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
		return -errno;
	sigdelset(wait_mask, SIGINT);
	sigdelset(wait_mask, SIGTERM);
	return 0;
}

static void timespec_add(struct timespec *t, double seconds)
{
	long long ns = (long long)(seconds * 1e9);

	t->tv_sec += ns / 1000000000;
	t->tv_nsec += ns % 1000000000;
	if (t->tv_nsec >= 1000000000) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000;
	}
}

/* Wait until @deadline (CLOCK_MONOTONIC) or an interrupt. */
static void wait_until(const struct timespec *deadline,
		       const sigset_t *wait_mask)
{
	struct timespec now, left;

	while (!interrupted) {
		if (clock_gettime(CLOCK_MONOTONIC, &now))
			return;
		left.tv_sec = deadline->tv_sec - now.tv_sec;
		left.tv_nsec = deadline->tv_nsec - now.tv_nsec;
		if (left.tv_nsec < 0) {
			left.tv_sec--;
			left.tv_nsec += 1000000000;
		}
		if (left.tv_sec < 0)
			return;
		if (ppoll(NULL, 0, &left, wait_mask) == 0)
			return;
	}
}

int kvcctl_stats(int argc, char **argv)
{
	static struct stats_run run;
	struct timespec next;
	struct stats_opts o;
	sigset_t wait_mask;
	uint64_t shown = 0;
	int status, err;

	memset(&run, 0, sizeof(run));
	status = parse_options(argc, argv, &o);
	if (status >= 0)
		return status;
	if (o.watch) {
		err = watch_signals(&wait_mask);
		if (err) {
			fprintf(stderr, "kvcctl stats: signals: %s\n",
				strerror(-err));
			return KVCCTL_EXIT_FAIL;
		}
	}
	for (;;) {
		if (clock_gettime(CLOCK_MONOTONIC, &next)) {
			fprintf(stderr, "kvcctl stats: clock: %s\n",
				strerror(errno));
			return KVCCTL_EXIT_FAIL;
		}
		if (show_once(&o, &run))
			return KVCCTL_EXIT_FAIL;
		/* Output that cannot be written ends the loop; main reports. */
		if (kvcctl_flush())
			return KVCCTL_EXIT_FAIL;
		shown++;
		if (!o.watch || (o.count && shown >= o.count))
			break;
		timespec_add(&next, o.watch);
		wait_until(&next, &wait_mask);
		if (interrupted)
			break;
	}
	return run.clean_failed ? KVCCTL_EXIT_FAIL : KVCCTL_EXIT_OK;
}
