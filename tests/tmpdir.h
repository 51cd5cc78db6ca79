/* SPDX-License-Identifier: MIT */
/* Temporary directories for tests: made under $TMPDIR, removed whole. */
#ifndef KVC_TESTS_TMPDIR_H
#define KVC_TESTS_TMPDIR_H

#include <stddef.h>

/**
 * tmpdir_make() - Makes a fresh, private temporary directory.
 * @buf: where its path goes.
 * @size: bytes at @buf.
 * @prefix: the start of its name; six random characters follow a dash.
 *
 * The directory goes under $TMPDIR when that is set and not empty, else
 * under /tmp. Uses no cmocka, so a forked child may call it.
 *
 * Return: 0, or -1 with errno set (ENAMETOOLONG when @size is too small).
 */
int tmpdir_make(char *buf, size_t size, const char *prefix);

/**
 * tmpdir_remove() - Removes a directory and everything under it.
 * @path: the directory.
 *
 * Symbolic links are removed, never followed. Uses no cmocka.
 *
 * Return: 0, or -1 with errno set at the first entry that could not be
 * removed.
 */
int tmpdir_remove(const char *path);

#endif /* KVC_TESTS_TMPDIR_H */
