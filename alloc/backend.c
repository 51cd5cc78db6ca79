// SPDX-License-Identifier: MIT
/*
 * Choosing and opening a backend. "auto" prefers the GPU and falls back
 * to host memory with one line on stderr; an explicit "cuda" never falls
 * back silently.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <kvc/backend.h>
#include <kvc/error.h>

#include "backend.h"
#include "error.h"

int kvc_backend_kind_parse(const char *name, enum kvc_backend_kind *kind)
{
	static const char *const names[] = { "auto", "host", "cuda" };
	unsigned int i;

	if (!name || !kind)
		return kvc_err(-EINVAL,
			       "kvc_backend_kind_parse: NULL argument");
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(name, names[i])) {
			*kind = (enum kvc_backend_kind)i;
			return 0;
		}
	}
	return kvc_err(-EINVAL, "unknown backend '%s': use auto, host or cuda",
		       name);
}

int kvc_backend_open(enum kvc_backend_kind kind, int device,
		     struct kvc_backend **out)
{
	static atomic_bool told;
	char why[256];
	int err;

	if (!out)
		return kvc_err(-EINVAL, "kvc_backend_open: NULL out");
	switch (kind) {
	case KVC_BACKEND_HOST:
		return kvc_backend_open_host(0, out);
	case KVC_BACKEND_CUDA:
		return kvc_backend_open_cuda(device, out);
	case KVC_BACKEND_AUTO:
		err = kvc_backend_open_cuda(device, out);
		if (!err)
			return 0;
		snprintf(why, sizeof(why), "%s", kvc_last_error());
		err = kvc_backend_open_host(0, out);
		if (!err && !atomic_exchange(&told, true))
			kvc_notice("%s; using the host backend", why);
		return err;
	}
	return kvc_err(-EINVAL, "unknown backend kind %d", (int)kind);
}

void kvc_backend_close(struct kvc_backend *be)
{
	if (be)
		be->ops->close(be);
}

const char *kvc_backend_name(const struct kvc_backend *be)
{
	return be->name;
}

uint64_t kvc_backend_granularity(const struct kvc_backend *be)
{
	return be->granularity;
}
