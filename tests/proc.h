/* SPDX-License-Identifier: MIT */
/* Running a program from a test: spawn, wait with a deadline, capture. */
#ifndef KVC_TESTS_PROC_H
#define KVC_TESTS_PROC_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* Most arguments proc_run() and proc_vrun() take, the program included. */
#define PROC_MAX_ARGS 64

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

/**
 * proc_vrun() - Run @head's words, then @ap's, to the end; capture output.
 * @r: filled with the exit status, stdout and stderr.
 * @timeout_ms: how long the program may run before the test fails.
 * @head: the program and its first arguments, NULL-terminated.
 * @ap: more arguments, up to a NULL.
 *
 * More than PROC_MAX_ARGS words in all fail the test, naming the program,
 * rather than running it with some of them cut.
 */
void proc_vrun(struct result *r, int timeout_ms, char *const head[],
	       va_list ap);

/**
 * proc_run() - Run @prog with the arguments after it, up to a NULL.
 * @r: filled with the exit status, stdout and stderr.
 * @timeout_ms: how long the program may run before the test fails.
 * @prog: the program's path.
 *
 * As proc_vrun().
 */
void proc_run(struct result *r, int timeout_ms, const char *prog, ...);

/* Newline characters in @s: the lines of a program's output. */
size_t proc_count_lines(const char *s);

#endif /* KVC_TESTS_PROC_H */
