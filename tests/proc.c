/* Description: support, not a test: run a program and capture its output. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc.h"

void proc_result_free(struct result *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

char *proc_slurp(FILE *f)
{
	long len;
	char *buf;

	assert_int_equal(fflush(f), 0);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len >= 0);
	rewind(f);
	buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	buf[len] = '\0';
	return buf;
}

int proc_exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

/* Reap @pid within @timeout_ms, else kill it. Return: 0 or -ETIMEDOUT. */
int proc_wait_exit(pid_t pid, int timeout_ms, int *status)
{
	int waited = 0;
	pid_t r;

	for (;;) {
		r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 0;
		if (r < 0)
			return -errno;
		if (waited >= timeout_ms) {
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return -ETIMEDOUT;
		}
		usleep(2000);
		waited += 2;
	}
}

pid_t proc_spawn(char *const argv[], FILE *out, FILE *err)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		if (dup2(fileno(out), STDOUT_FILENO) < 0 ||
		    dup2(fileno(err), STDERR_FILENO) < 0)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Run @argv (NULL-terminated) to its end; capture stdout and stderr. */
void proc_run_argv(struct result *r, char *const argv[], int timeout_ms)
{
	FILE *out = tmpfile(), *err = tmpfile();
	int status;
	pid_t pid;

	assert_non_null(out);
	assert_non_null(err);
	pid = proc_spawn(argv, out, err);
	if (proc_wait_exit(pid, timeout_ms, &status))
		fail_msg("%s %s did not finish in time", argv[0],
			 argv[1] ? argv[1] : "");
	r->status = proc_exit_code(status);
	r->out = proc_slurp(out);
	r->err = proc_slurp(err);
	fclose(out);
	fclose(err);
}

void proc_vrun(struct result *r, int timeout_ms, char *const head[], va_list ap)
{
	char *argv[PROC_MAX_ARGS + 1];
	char *arg;
	int n = 0;

	for (; head[n]; n++) {
		if (n == PROC_MAX_ARGS)
			fail_msg("%s: more than %d arguments", head[0],
				 PROC_MAX_ARGS);
		argv[n] = head[n];
	}
	while ((arg = va_arg(ap, char *))) {
		if (n == PROC_MAX_ARGS)
			fail_msg("%s: more than %d arguments", head[0],
				 PROC_MAX_ARGS);
		argv[n++] = arg;
	}
	argv[n] = NULL;
	proc_run_argv(r, argv, timeout_ms);
}

void proc_run(struct result *r, int timeout_ms, const char *prog, ...)
{
	char *const head[] = { (char *)prog, NULL };
	va_list ap;

	va_start(ap, prog);
	proc_vrun(r, timeout_ms, head, ap);
	va_end(ap);
}

size_t proc_count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}
