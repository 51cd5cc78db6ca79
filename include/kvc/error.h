/* SPDX-License-Identifier: MIT */
/*
 * kvc error reporting: functions return 0 or -errno; the message that says
 * why is kept per thread so callers can print it without parsing codes.
 */
#ifndef KVC_ERROR_H
#define KVC_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/**
 * kvc_last_error() - Message of the last failed kvc call on this thread.
 *
 * Every kvc function that returns a negative errno first records a one-line
 * message saying which argument or device call failed and why.
 *
 * Return: the message, or "" when no call has failed on this thread yet.
 * Read it right after the failing call: the next kvc call on this thread
 * that records a message (a failure, or a fallback it reports) replaces it.
 */
const char *kvc_last_error(void);

#ifdef __cplusplus
}
#endif
#endif /* KVC_ERROR_H */
