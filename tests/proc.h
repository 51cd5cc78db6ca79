/* SPDX-License-Identifier: MIT */
/* Running a program from a test: spawn, wait with a deadline, capture. */
#ifndef KVC_TESTS_PROC_H
#define KVC_TESTS_PROC_H

#include <stdio.h>
#include <sys/types.h>

/**
 * struct result - What a program run left.
 * @status: exit status; 128 + signal when killed.
 * @out: its stdout.
 * @err: its stderr.
 */
struct result {
	int status;
	char *out;
	char *err;
};

void proc_result_free(struct result *r);
/* Everything written to @f, as a string (the caller frees it). */
char *proc_slurp(FILE *f);
/* waitpid()'s status as a shell would say it. */
int proc_exit_code(int status);
/* Reap @pid within @timeout_ms, else kill it. Return: 0 or -ETIMEDOUT. */
int proc_wait_exit(pid_t pid, int timeout_ms, int *status);
/* Start @argv with stdout and stderr into @out and @err. */
pid_t proc_spawn(char *const argv[], FILE *out, FILE *err);
/* Run @argv (NULL-terminated) to its end; capture stdout and stderr. */
void proc_run_argv(struct result *r, char *const argv[], int timeout_ms);

#endif /* KVC_TESTS_PROC_H */
