// SPDX-License-Identifier: MIT
/*
 * Option values and usage errors for every kvcctl subcommand. Values are
 * parsed strictly: "12abc", " 5", "+3", "1e3" and "-1" are refused, not
 * read as something the user did not type.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/evict.h>

#include "kvcctl.h"

const char *kvcctl_long_name(const struct option *opts, int val)
{
	const struct option *o;

	for (o = opts; o->name; o++)
		if (o->val == val)
			return o->name;
	return "?";
}

/* Long options whose name starts with the @len bytes at @prefix. */
static int matching_options(const struct option *opts, const char *prefix,
			    size_t len)
{
	const struct option *o;
	int n = 0;

	for (o = opts; o->name; o++)
		n += !strncmp(o->name, prefix, len);
	return n;
}

int kvcctl_unknown_option(const char *cmd, const struct option *opts,
			  char **argv, int optind_now, int opt_char)
{
	const char *arg = optind_now > 0 ? argv[optind_now - 1] : "";
	size_t len;

	if (opt_char && strncmp(arg, "--", 2))
		return kvcctl_usage_error(cmd, "unknown option '-%c'",
					  opt_char);
	len = strcspn(arg, "=");
	if (opt_char && arg[len] == '=')
		return kvcctl_usage_error(cmd, "option '--%s' takes no value",
					  kvcctl_long_name(opts, opt_char));
	if (len > 2 && matching_options(opts, arg + 2, len - 2) > 1)
		return kvcctl_usage_error(cmd, "ambiguous option '%.*s'",
					  (int)len, arg);
	return kvcctl_usage_error(cmd, "unknown option '%.*s'", (int)len, arg);
}

int kvcctl_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kvcctl%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'kvcctl%s%s --help'.\n", cmd ? " " : "",
		cmd ? cmd : "");
	return KVCCTL_EXIT_USAGE;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int kvcctl_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long value;
	char *end;

	if (!s || !is_digit(*s))
		return -EINVAL;
	errno = 0;
	value = strtoull(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || value < min || value > max)
		return -ERANGE;
	*out = value;
	return 0;
}

int kvcctl_opt_u64(const char *cmd, const struct option *opts, int opt,
		   const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
	int err = kvcctl_parse_u64(arg, min, max, out);

	if (err == -ERANGE)
		return kvcctl_usage_error(
			cmd,
			"--%s: %s is out of range [%" PRIu64 ", %" PRIu64 "]",
			kvcctl_long_name(opts, opt), arg, min, max);
	if (err)
		return kvcctl_usage_error(cmd,
					  "--%s: '%s' is not a whole number",
					  kvcctl_long_name(opts, opt), arg);
	return -1;
}

int kvcctl_opt_u32(const char *cmd, const struct option *opts, int opt,
		   const char *arg, uint64_t min, uint64_t max, uint32_t *out)
{
	uint64_t v = 0;
	int status = kvcctl_opt_u64(cmd, opts, opt, arg, min,
				    max < UINT32_MAX ? max : UINT32_MAX, &v);

	if (status < 0)
		*out = (uint32_t)v;
	return status;
}

/* A size: digits with an optional K, M, G or T (and B or iB). */
int kvcctl_opt_bytes(const char *cmd, const struct option *opts, int opt,
		     const char *s, uint64_t min, uint64_t *out)
{
	char digits[32];
	const char *unit;
	uint64_t v, mult = 1;
	size_t len = strspn(s, "0123456789");

	unit = s + len;
	if (!len || len >= sizeof(digits))
		goto bad;
	memcpy(digits, s, len);
	digits[len] = '\0';
	if (kvcctl_parse_u64(digits, 0, UINT64_MAX, &v))
		goto bad;
	switch (*unit) {
	case 'k':
	case 'K':
		mult = 1ull << 10;
		break;
	case 'm':
	case 'M':
		mult = 1ull << 20;
		break;
	case 'g':
	case 'G':
		mult = 1ull << 30;
		break;
	case 't':
	case 'T':
		mult = 1ull << 40;
		break;
	}
	if (mult > 1)
		unit++;
	if (*unit && strcmp(unit, "B") && strcmp(unit, "iB"))
		goto bad;
	if (!strcmp(unit, "iB") && mult == 1)
		goto bad;
	if (v > UINT64_MAX / mult)
		return kvcctl_usage_error(
			cmd, "--%s: %s does not fit 64 bits of bytes",
			kvcctl_long_name(opts, opt), s);
	if (v * mult < min)
		return kvcctl_usage_error(
			cmd, "--%s: %s is out of range (at least %" PRIu64 ")",
			kvcctl_long_name(opts, opt), s, min);
	*out = v * mult;
	return -1;
bad:
	return kvcctl_usage_error(cmd,
				  "--%s: '%s' is not a size such as 2M or 512K",
				  kvcctl_long_name(opts, opt), s);
}

int kvcctl_parse_seconds(const char *s, double min, double max, double *out)
{
	bool digits = false, point = false;
	const char *p;
	double value;
	char *end;

	if (!s)
		return -EINVAL;
	/* Only [0-9]*.?[0-9]*: strtod would also take "inf", "0x1p3", "1e9". */
	for (p = s; *p; p++) {
		if (is_digit(*p))
			digits = true;
		else if (*p == '.' && !point)
			point = true;
		else
			return -EINVAL;
	}
	if (!digits)
		return -EINVAL;
	errno = 0;
	value = strtod(s, &end);
	if (*end || errno == ERANGE)
		return -ERANGE;
	if (value < min || value > max)
		return -ERANGE;
	*out = value;
	return 0;
}

int kvcctl_opt_real(const char *cmd, const struct option *opts, int opt,
		    const char *arg, double min, double max, double *out)
{
	if (kvcctl_parse_seconds(arg, min, max, out))
		return kvcctl_usage_error(
			cmd, "--%s: '%s' is not a number from %g to %g",
			kvcctl_long_name(opts, opt), arg, min, max);
	return -1;
}

int kvcctl_getopt(const char *cmd, int argc, char **argv,
		  const char *short_opts, const struct option *long_opts,
		  const char *usage,
		  int (*parse)(void *arg, int opt, const char *optarg),
		  void *arg)
{
	int opt, status;

	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, short_opts, long_opts, NULL)) !=
	       -1) {
		switch (opt) {
		case 'h':
			fputs(usage, stdout);
			return KVCCTL_EXIT_OK;
		case ':':
			return kvcctl_usage_error(
				cmd, "--%s needs a value",
				kvcctl_long_name(long_opts, optopt));
		case '?':
			return kvcctl_unknown_option(cmd, long_opts, argv,
						     optind, optopt);
		default:
			status = parse(arg, opt, optarg);
			if (status >= 0)
				return status;
		}
	}
	if (optind < argc)
		return kvcctl_usage_error(cmd, "unexpected argument '%s'",
					  argv[optind]);
	return -1;
}

void kvcctl_policy_published(struct kvc_policy_params *pp)
{
	if (!strcmp(pp->name, "h2o")) {
		pp->metric = KVC_METRIC_L1;
		pp->observe_window = 0;
	} else if (!strcmp(pp->name, "snapkv")) {
		pp->metric = KVC_METRIC_L1;
		pp->observe_window = 32;
		pp->pool_kernel = 7;
	}
}
