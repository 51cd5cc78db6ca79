/* SPDX-License-Identifier: MIT */
/* Recording why a call failed, for kvc_last_error(). */
#ifndef KVC_ALLOC_ERROR_H
#define KVC_ALLOC_ERROR_H

/**
 * kvc_err() - Record a message for kvc_last_error() and return @err.
 * @err: a negative errno.
 * @fmt: printf-style message.
 *
 * Return: @err, so callers write `return kvc_err(-EINVAL, "...")`.
 */
int kvc_err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/**
 * kvc_notice() - Print a one-line notice to stderr ("kvc: ...").
 * @fmt: printf-style message.
 */
void kvc_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* KVC_ALLOC_ERROR_H */
