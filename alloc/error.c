// SPDX-License-Identifier: MIT
/*
 * Per-thread error messages. Never allocates, so it works when memory has
 * run out; never prints unless asked to through kvc_notice().
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <kvc/error.h>

#include "error.h"

static _Thread_local char last_error[256];

const char *kvc_last_error(void)
{
	return last_error;
}

int kvc_err(int err, const char *fmt, ...)
{
	char msg[sizeof(last_error)];
	va_list ap;

	/* Through a copy: callers may wrap the last message in a new one. */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(last_error, msg, sizeof(msg));
	return err;
}

void kvc_notice(const char *fmt, ...)
{
	va_list ap;

	fputs("kvc: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
