/* Description: support, not a test: temporary directories made under $TMPDIR and removed with everything in them. */
// SPDX-License-Identifier: MIT
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tmpdir.h"

/* Descriptors nftw() may hold open at once: one per level it descends. */
#define TMPDIR_NFTW_FDS 16

int tmpdir_make(char *buf, size_t size, const char *prefix)
{
	const char *tmp = getenv("TMPDIR");
	int n;

	n = snprintf(buf, size, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp",
		     prefix);
	if (n < 0)
		return -1;
	/* A truncated template would make a directory somewhere else. */
	if ((size_t)n >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return mkdtemp(buf) ? 0 : -1;
}

static int tmpdir_remove_one(const char *path, const struct stat *st, int flag,
			     struct FTW *ftw)
{
	return remove(path);
}

int tmpdir_remove(const char *path)
{
	/* Depth first so that each directory is empty when its turn comes. */
	return nftw(path, tmpdir_remove_one, TMPDIR_NFTW_FDS,
		    FTW_DEPTH | FTW_PHYS);
}
