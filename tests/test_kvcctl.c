/* Description: kvcctl stats end to end against running pool_demo processes: JSON and table, --pid, usage errors, refused and stale pages, --clean, --watch */
// SPDX-License-Identifier: MIT
/*
 * Runs the built programs build/kvcctl and build/examples/pool_demo (paths
 * from the repository root, where `make test` runs) as a user would. Each
 * test gets a fresh KVC_STATS_DIR made with mkdtemp(), so /dev/shm is never
 * touched. JSON output is parsed by a small strict parser below, so the
 * tests read numbers instead of grepping text, and invalid JSON (a bad
 * escape, a raw control character, broken UTF-8) fails them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <kvc/kvc.h>

/* The programs under test; -D can point them at other builds. */
#ifndef KVCCTL
#define KVCCTL "build/kvcctl"
#endif
#ifndef POOL_DEMO
#define POOL_DEMO "build/examples/pool_demo"
#endif
#define RUN_TIMEOUT_MS 20000
#define MAX_DEMOS 2

/* ---- A strict JSON parser, enough to read kvcctl's output ---- */

enum json_type {
	JSON_NULL,
	JSON_BOOL,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT,
};

/**
 * struct json - One parsed value.
 * @type: which kind of value.
 * @boolean: the value of a JSON_BOOL.
 * @text: a number as written, or a string decoded to UTF-8.
 * @n: members of an array or object.
 * @items: the members' values.
 * @keys: the members' names (objects only).
 */
struct json {
	enum json_type type;
	bool boolean;
	char *text;
	size_t n;
	struct json **items;
	char **keys;
};

struct json_parser {
	const char *p;
	int depth;
};

static void json_free(struct json *v)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < v->n; i++) {
		json_free(v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->text);
	free(v);
}

static void skip_space(struct json_parser *ps)
{
	while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' ||
	       *ps->p == '\r')
		ps->p++;
}

static int hex4(const char *s, uint32_t *out)
{
	uint32_t v = 0;
	int i;

	for (i = 0; i < 4; i++) {
		char c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *d, uint32_t cp)
{
	if (cp < 0x80) {
		d[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		d[0] = (char)(0xc0 | cp >> 6);
		d[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		d[0] = (char)(0xe0 | cp >> 12);
		d[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		d[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	d[0] = (char)(0xf0 | cp >> 18);
	d[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	d[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	d[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Length of a valid UTF-8 sequence at @s, 0 if invalid. */
static size_t utf8_len(const unsigned char *s)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Decode the string literal at ps->p (on its opening quote). */
static char *json_string(struct json_parser *ps)
{
	const unsigned char *s = (const unsigned char *)ps->p + 1;
	char *out, *d;
	uint32_t cp, lo;
	size_t len;

	/* Decoded text is never longer than its literal. */
	out = malloc(strlen(ps->p) + 1);
	if (!out)
		return NULL;
	d = out;
	for (;;) {
		if (*s == '"')
			break;
		if (*s < 0x20)
			goto bad; /* raw control character, or the end */
		if (*s != '\\') {
			len = utf8_len(s);
			if (!len)
				goto bad;
			memcpy(d, s, len);
			d += len;
			s += len;
			continue;
		}
		s++;
		switch (*s) {
		case '"':
		case '\\':
		case '/':
			*d++ = (char)*s++;
			continue;
		case 'b':
			*d++ = '\b';
			s++;
			continue;
		case 'f':
			*d++ = '\f';
			s++;
			continue;
		case 'n':
			*d++ = '\n';
			s++;
			continue;
		case 'r':
			*d++ = '\r';
			s++;
			continue;
		case 't':
			*d++ = '\t';
			s++;
			continue;
		case 'u':
			if (hex4((const char *)s + 1, &cp))
				goto bad;
			s += 5;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				goto bad;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (s[0] != '\\' || s[1] != 'u' ||
				    hex4((const char *)s + 2, &lo) ||
				    lo < 0xdc00 || lo > 0xdfff)
					goto bad;
				s += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
			}
			if (!cp)
				goto bad; /* would cut the C string */
			d += put_utf8(d, cp);
			continue;
		default:
			goto bad;
		}
	}
	*d = '\0';
	ps->p = (const char *)s + 1;
	return out;
bad:
	free(out);
	return NULL;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static struct json *json_value(struct json_parser *ps);

static int json_append(struct json *v, struct json *item, char *key)
{
	struct json **items;
	char **keys;

	items = realloc(v->items, (v->n + 1) * sizeof(*items));
	if (!items)
		return -1;
	v->items = items;
	if (v->type == JSON_OBJECT) {
		keys = realloc(v->keys, (v->n + 1) * sizeof(*keys));
		if (!keys)
			return -1;
		v->keys = keys;
		keys[v->n] = key;
	}
	items[v->n++] = item;
	return 0;
}

static struct json *json_container(struct json_parser *ps, struct json *v)
{
	char close = v->type == JSON_ARRAY ? ']' : '}';
	struct json *item;
	char *key = NULL;

	if (++ps->depth > 32)
		return NULL;
	ps->p++;
	skip_space(ps);
	if (*ps->p == close) {
		ps->p++;
		ps->depth--;
		return v;
	}
	for (;;) {
		skip_space(ps);
		if (v->type == JSON_OBJECT) {
			if (*ps->p != '"')
				return NULL;
			key = json_string(ps);
			if (!key)
				return NULL;
			skip_space(ps);
			if (*ps->p != ':') {
				free(key);
				return NULL;
			}
			ps->p++;
		}
		item = json_value(ps);
		if (!item || json_append(v, item, key)) {
			free(key);
			json_free(item);
			return NULL;
		}
		key = NULL;
		skip_space(ps);
		if (*ps->p == ',') {
			ps->p++;
			continue;
		}
		if (*ps->p != close)
			return NULL;
		ps->p++;
		ps->depth--;
		return v;
	}
}

static struct json *json_value(struct json_parser *ps)
{
	struct json *v = calloc(1, sizeof(*v));
	const char *start;

	if (!v)
		return NULL;
	skip_space(ps);
	start = ps->p;
	switch (*ps->p) {
	case '{':
		v->type = JSON_OBJECT;
		if (!json_container(ps, v))
			goto bad;
		return v;
	case '[':
		v->type = JSON_ARRAY;
		if (!json_container(ps, v))
			goto bad;
		return v;
	case '"':
		v->type = JSON_STRING;
		v->text = json_string(ps);
		if (!v->text)
			goto bad;
		return v;
	}
	if (!strncmp(ps->p, "null", 4)) {
		ps->p += 4;
		return v;
	}
	if (!strncmp(ps->p, "true", 4) || !strncmp(ps->p, "false", 5)) {
		v->type = JSON_BOOL;
		v->boolean = *ps->p == 't';
		ps->p += v->boolean ? 4 : 5;
		return v;
	}
	/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
	if (*ps->p == '-')
		ps->p++;
	if (*ps->p == '0')
		ps->p++;
	else if (is_digit(*ps->p))
		while (is_digit(*ps->p))
			ps->p++;
	else
		goto bad;
	if (*ps->p == '.') {
		if (!is_digit(*++ps->p))
			goto bad;
		while (is_digit(*ps->p))
			ps->p++;
	}
	if (*ps->p == 'e' || *ps->p == 'E') {
		ps->p++;
		if (*ps->p == '+' || *ps->p == '-')
			ps->p++;
		if (!is_digit(*ps->p))
			goto bad;
		while (is_digit(*ps->p))
			ps->p++;
	}
	v->type = JSON_NUMBER;
	v->text = strndup(start, (size_t)(ps->p - start));
	if (!v->text)
		goto bad;
	return v;
bad:
	json_free(v);
	return NULL;
}

/*
 * Parse the JSON values in @text, one after another (--watch prints one
 * array per refresh). Return: how many, or -1 when @text is not such a
 * sequence; @values gets up to @max of them.
 */
static int json_parse_all(const char *text, struct json **values, int max)
{
	struct json_parser ps = { text, 0 };
	int n = 0;

	for (;;) {
		skip_space(&ps);
		if (!*ps.p)
			return n;
		if (n == max)
			goto bad;
		values[n] = json_value(&ps);
		if (!values[n])
			goto bad;
		n++;
	}
bad:
	while (n--)
		json_free(values[n]);
	return -1;
}

static const struct json *json_get(const struct json *obj, const char *key)
{
	size_t i;

	assert_int_equal(obj->type, JSON_OBJECT);
	for (i = 0; i < obj->n; i++)
		if (!strcmp(obj->keys[i], key))
			return obj->items[i];
	return NULL;
}

/* A member that must be a non-negative integer. */
static uint64_t json_u64(const struct json *obj, const char *key)
{
	const struct json *v = json_get(obj, key);
	const char *p;

	if (!v)
		fail_msg("JSON object has no \"%s\"", key);
	if (v->type != JSON_NUMBER)
		fail_msg("\"%s\" is not a number", key);
	for (p = v->text; *p; p++)
		if (!is_digit(*p))
			fail_msg("\"%s\" is %s, not an unsigned integer", key,
				 v->text);
	return strtoull(v->text, NULL, 10);
}

static const char *json_str(const struct json *obj, const char *key)
{
	const struct json *v = json_get(obj, key);

	if (!v || v->type != JSON_STRING)
		fail_msg("\"%s\" missing or not a string", key);
	return v->text;
}

static bool json_bool(const struct json *obj, const char *key)
{
	const struct json *v = json_get(obj, key);

	if (!v || v->type != JSON_BOOL)
		fail_msg("\"%s\" missing or not a boolean", key);
	return v->boolean;
}

/* The pool object with this pid in an array, or NULL. */
static const struct json *json_pool(const struct json *arr, pid_t pid)
{
	size_t i;

	assert_int_equal(arr->type, JSON_ARRAY);
	for (i = 0; i < arr->n; i++)
		if (json_u64(arr->items[i], "pid") == (uint64_t)pid)
			return arr->items[i];
	return NULL;
}

/* ---- Running programs ---- */

struct result {
	int status; /* exit status; 128 + signal when killed */
	char *out;
	char *err;
};

static void result_free(struct result *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

static char *slurp(FILE *f)
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

static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

/* Reap @pid within @timeout_ms, else kill it. Return: 0 or -ETIMEDOUT. */
static int wait_exit(pid_t pid, int timeout_ms, int *status)
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

static pid_t spawn(char *const argv[], FILE *out, FILE *err)
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
static void run_argv(struct result *r, char *const argv[])
{
	FILE *out = tmpfile(), *err = tmpfile();
	int status;
	pid_t pid;

	assert_non_null(out);
	assert_non_null(err);
	pid = spawn(argv, out, err);
	if (wait_exit(pid, RUN_TIMEOUT_MS, &status))
		fail_msg("%s %s did not finish in time", argv[0],
			 argv[1] ? argv[1] : "");
	r->status = exit_code(status);
	r->out = slurp(out);
	r->err = slurp(err);
	fclose(out);
	fclose(err);
}

/* run(&r, PROGRAM, args..., NULL) */
static void run(struct result *r, const char *program, ...)
{
	char *argv[32];
	va_list ap;
	int n = 0;

	argv[n++] = (char *)program;
	va_start(ap, program);
	while ((argv[n] = va_arg(ap, char *)) != NULL) {
		n++;
		assert_true(n < 31);
	}
	va_end(ap);
	run_argv(r, argv);
}

/* kvcctl stats --json ARGS...: exit 0, valid JSON, an array. */
static struct json *stats_json(const char *arg1, const char *arg2)
{
	struct json *arr;
	struct result r;

	run(&r, KVCCTL, "stats", "--json", arg1, arg2, NULL);
	if (r.status != 0)
		fail_msg("kvcctl stats --json: exit %d: %s", r.status, r.err);
	if (json_parse_all(r.out, &arr, 1) != 1)
		fail_msg("kvcctl stats --json: invalid JSON:\n%s", r.out);
	assert_int_equal(arr->type, JSON_ARRAY);
	result_free(&r);
	return arr;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* The line of @text whose first word is @word, copied to @line. */
static bool find_line(const char *text, const char *word, char *line,
		      size_t len)
{
	const char *p = text, *end, *first;
	size_t wlen = strlen(word);

	while (*p) {
		end = strchr(p, '\n');
		if (!end)
			end = p + strlen(p);
		first = p;
		while (first < end && *first == ' ')
			first++;
		if ((size_t)(end - first) >= wlen &&
		    !strncmp(first, word, wlen) &&
		    (first + wlen == end || first[wlen] == ' ')) {
			snprintf(line, len, "%.*s", (int)(end - p), p);
			return true;
		}
		p = *end ? end + 1 : end;
	}
	return false;
}

/* Split @line in place on spaces. Return: the number of words. */
static int split_words(char *line, char **words, int max)
{
	int n = 0;
	char *save, *w;

	for (w = strtok_r(line, " ", &save); w && n < max;
	     w = strtok_r(NULL, " ", &save))
		words[n++] = w;
	return n;
}

/* ---- Fixtures: a fresh stats directory, and the demos started ---- */

struct demo {
	pid_t pid;
	int out_fd; /* kept open: the demo never writes to a closed pipe */
	char page[PATH_MAX];
};

struct fixture {
	char root[64];
	char pages[96];
	struct demo demo[MAX_DEMOS];
	int nr_demos;
};

static int group_setup(void **state)
{
	if (access(KVCCTL, X_OK) || access(POOL_DEMO, X_OK)) {
		fprintf(stderr,
			"%s and %s must be built; run from the repository root after make\n",
			KVCCTL, POOL_DEMO);
		return -1;
	}
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->root, sizeof(f->root), "/tmp/kvcctl-test.XXXXXX");
	if (!mkdtemp(f->root))
		goto err;
	snprintf(f->pages, sizeof(f->pages), "%s/pages", f->root);
	if (mkdir(f->pages, 0700) || setenv("KVC_STATS_DIR", f->pages, 1))
		goto err;
	*state = f;
	return 0;
err:
	perror("test_kvcctl setup");
	free(f);
	return -1;
}

static void remove_dir_files(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
}

static int stop_demo(struct demo *d)
{
	int status = 0;

	if (d->pid <= 0)
		return -1;
	kill(d->pid, SIGTERM);
	if (wait_exit(d->pid, 5000, &status))
		status = -1;
	close(d->out_fd);
	d->pid = 0;
	return status < 0 ? status : exit_code(status);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int i;

	for (i = 0; i < f->nr_demos; i++)
		if (f->demo[i].pid > 0)
			stop_demo(&f->demo[i]);
	remove_dir_files(f->pages);
	rmdir(f->pages);
	remove_dir_files(f->root);
	rmdir(f->root);
	unsetenv("KVC_STATS_DIR");
	free(f);
	return 0;
}

/*
 * Start pool_demo --hold on the host backend and wait until it says it is
 * holding: by then every alloc and free is done and published.
 */
static struct demo *start_demo(struct fixture *f, const char *blocks,
			       const char *block_bytes)
{
	struct demo *d = &f->demo[f->nr_demos];
	char *argv[12], buf[4096], *page, *nl;
	struct pollfd pfd;
	int fds[2], n = 0, waited = 0;
	size_t used = 0;
	ssize_t got;

	assert_true(f->nr_demos < MAX_DEMOS);
	argv[n++] = POOL_DEMO;
	argv[n++] = "--backend";
	argv[n++] = "host";
	argv[n++] = "--hold";
	argv[n++] = "60";
	if (blocks) {
		argv[n++] = "--blocks";
		argv[n++] = (char *)blocks;
	}
	if (block_bytes) {
		argv[n++] = "--block-bytes";
		argv[n++] = (char *)block_bytes;
	}
	argv[n] = NULL;
	buf[0] = '\0';
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	d->pid = fork();
	assert_true(d->pid >= 0);
	if (d->pid == 0) {
		if (dup2(fds[1], STDOUT_FILENO) < 0)
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	close(fds[1]);
	d->out_fd = fds[0];
	f->nr_demos++;

	while (!strstr(buf, "holding")) {
		pfd.fd = d->out_fd;
		pfd.events = POLLIN;
		if (waited > RUN_TIMEOUT_MS)
			fail_msg("pool_demo did not start holding");
		if (poll(&pfd, 1, 100) <= 0) {
			waited += 100;
			buf[used] = '\0';
			continue;
		}
		got = read(d->out_fd, buf + used, sizeof(buf) - 1 - used);
		if (got <= 0)
			fail_msg("pool_demo ended:\n%.*s", (int)used, buf);
		used += (size_t)got;
		buf[used] = '\0';
	}
	page = strstr(buf, "stats page: ");
	assert_non_null(page);
	page += strlen("stats page: ");
	nl = strchr(page, '\n');
	assert_non_null(nl);
	snprintf(d->page, sizeof(d->page), "%.*s", (int)(nl - page), page);
	assert_int_equal(strncmp(d->page, f->pages, strlen(f->pages)), 0);
	assert_int_equal(access(d->page, R_OK), 0);
	return d;
}

/*
 * Fork a child that creates a pool named @name, allocates @blocks blocks
 * and dies without destroying it: its stats page stays behind, stale.
 */
static pid_t make_stale_pool(const char *name, uint32_t blocks)
{
	int status;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct kvc_pool_params params;
		struct kvc_pool *pool;
		uint32_t ids[64];

		kvc_pool_params_init(&params);
		params.backend_kind = KVC_BACKEND_HOST;
		params.block_bytes = 16384;
		params.capacity_blocks = 128;
		params.name = name;
		if (blocks > 64 || kvc_pool_create(&params, &pool))
			_exit(1);
		if (blocks && kvc_pool_alloc(pool, blocks, ids))
			_exit(2);
		_exit(0);
	}
	assert_int_equal(wait_exit(pid, RUN_TIMEOUT_MS, &status), 0);
	assert_int_equal(exit_code(status), 0);
	return pid;
}

/* A pid that no process has any more. */
static pid_t dead_pid(void)
{
	int status;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(wait_exit(pid, RUN_TIMEOUT_MS, &status), 0);
	return pid;
}

static bool file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* ---- The tests ---- */

static const char *const required_fields[] = {
	"block_bytes",	      "chunk_bytes",	  "blocks_per_chunk",
	"blocks_total",	      "blocks_live",	  "blocks_free",
	"blocks_free_mapped", "chunks_total",	  "chunks_mapped",
	"chunks_empty",	      "chunks_partial",	  "chunks_full",
	"bytes_reserved",     "bytes_mapped",	  "bytes_live",
	"blocks_live_hwm",    "bytes_mapped_hwm", "alloc_calls",
	"free_calls",	      "alloc_failures",	  "unmap_failures",
	"backend_create",     "backend_map",	  "backend_set_access",
	"backend_unmap",      "backend_release",  "backend_copy",
};

/* The relations every pool's counters must satisfy. */
static void check_pool_consistent(const struct json *pool)
{
	const struct json *hist = json_get(pool, "fill_hist");
	uint64_t sum = 0, bpc = json_u64(pool, "blocks_per_chunk");
	size_t i;

	for (i = 0; i < sizeof(required_fields) / sizeof(*required_fields); i++)
		(void)json_u64(pool, required_fields[i]);
	assert_non_null(hist);
	assert_int_equal(hist->type, JSON_ARRAY);
	assert_int_equal(hist->n, KVC_FILL_BUCKETS);
	for (i = 0; i < hist->n; i++) {
		assert_int_equal(hist->items[i]->type, JSON_NUMBER);
		sum += strtoull(hist->items[i]->text, NULL, 10);
	}
	assert_int_equal(sum, json_u64(pool, "chunks_mapped"));
	assert_int_equal(json_u64(pool, "chunks_empty") +
				 json_u64(pool, "chunks_partial") +
				 json_u64(pool, "chunks_full"),
			 json_u64(pool, "chunks_mapped"));
	assert_int_equal(json_u64(pool, "blocks_live") +
				 json_u64(pool, "blocks_free"),
			 json_u64(pool, "blocks_total"));
	assert_int_equal(bpc * json_u64(pool, "block_bytes"),
			 json_u64(pool, "chunk_bytes"));
	assert_int_equal(json_u64(pool, "blocks_total") % bpc, 0);
	assert_int_equal(json_u64(pool, "bytes_live"),
			 json_u64(pool, "blocks_live") *
				 json_u64(pool, "block_bytes"));
	assert_int_equal(json_u64(pool, "bytes_mapped"),
			 json_u64(pool, "chunks_mapped") *
				 json_u64(pool, "chunk_bytes"));
	assert_true(json_u64(pool, "blocks_live_hwm") >=
		    json_u64(pool, "blocks_live"));
	assert_true(json_u64(pool, "bytes_mapped_hwm") >=
		    json_u64(pool, "bytes_mapped"));
}

static void test_json_shows_demo_pool(void **state)
{
	struct fixture *f = *state;
	const struct json *pool;
	struct demo *d;
	struct json *arr;
	char pid[16];

	d = start_demo(f, NULL, NULL);
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	arr = stats_json("--pid", pid);
	assert_int_equal(arr->n, 1);
	pool = json_pool(arr, d->pid);
	assert_non_null(pool);
	assert_string_equal(json_str(pool, "name"), "pool_demo");
	assert_string_equal(json_str(pool, "backend"), "host");
	assert_string_equal(json_str(pool, "path"), d->page);
	assert_true(json_bool(pool, "alive"));
	assert_non_null(json_get(pool, "device"));
	/* The demo's defaults: 1024 blocks of 16 KiB, every other one freed. */
	assert_int_equal(json_u64(pool, "block_bytes"), 16384);
	assert_int_equal(json_u64(pool, "blocks_total"), 4096);
	assert_int_equal(json_u64(pool, "blocks_live"), 512);
	assert_int_equal(json_u64(pool, "blocks_free"), 3584);
	assert_int_equal(json_u64(pool, "blocks_live_hwm"), 1024);
	assert_int_equal(json_u64(pool, "alloc_calls"), 1024 / 64);
	assert_int_equal(json_u64(pool, "free_calls"), 1);
	assert_int_equal(json_u64(pool, "alloc_failures"), 0);
	assert_true(json_u64(pool, "backend_map") >=
		    json_u64(pool, "chunks_mapped"));
	check_pool_consistent(pool);
	json_free(arr);

	/* SIGTERM ends the hold; the demo destroys its pool and its page. */
	assert_int_equal(stop_demo(d), 0);
	assert_false(file_exists(d->page));
}

static void test_json_demo_flags(void **state)
{
	struct fixture *f = *state;
	const struct json *pool;
	struct demo *d;
	struct json *arr;
	char pid[16];

	d = start_demo(f, "300", "65536");
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	arr = stats_json("--pid", pid);
	assert_int_equal(arr->n, 1);
	pool = json_pool(arr, d->pid);
	assert_non_null(pool);
	assert_int_equal(json_u64(pool, "block_bytes"), 65536);
	assert_int_equal(json_u64(pool, "blocks_live"), 150);
	assert_int_equal(json_u64(pool, "blocks_live_hwm"), 300);
	/* Capacity 4 * 300, rounded up to whole chunks. */
	assert_true(json_u64(pool, "blocks_total") >= 1200);
	assert_true(json_u64(pool, "blocks_total") <
		    1200 + json_u64(pool, "blocks_per_chunk"));
	check_pool_consistent(pool);
	json_free(arr);
}

static void test_table_output(void **state)
{
	struct fixture *f = *state;
	char line[1024], *w[64], pid[16];
	const struct json *pool, *hist;
	struct result r;
	struct demo *d;
	struct json *arr;
	int n, b;

	d = start_demo(f, NULL, NULL);
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "");
	assert_non_null(strstr(r.out, "blocks"));
	assert_non_null(strstr(r.out, "map/live"));

	/* pid name backend state block chunk live free total mapped ... */
	assert_true(find_line(r.out, pid, line, sizeof(line)));
	n = split_words(line, w, 64);
	assert_int_equal(n, 27);
	assert_string_equal(w[1], "pool_demo");
	assert_string_equal(w[2], "host");
	assert_string_equal(w[3], "live");
	assert_string_equal(w[4], "16.0");
	assert_string_equal(w[5], "KiB");
	assert_string_equal(w[6], "2.0");
	assert_string_equal(w[7], "MiB");
	assert_string_equal(w[8], "512");
	assert_string_equal(w[9], "3584");
	assert_string_equal(w[10], "4096");
	/* bytes mapped / live: 8 half-full chunks of 2 MiB, 8 MiB live */
	assert_string_equal(w[11], "8");
	assert_string_equal(w[15], "16.0");
	assert_string_equal(w[16], "MiB");
	assert_string_equal(w[17], "8.0");
	assert_string_equal(w[18], "MiB");
	assert_string_equal(w[19], "2.00");

	/* The histogram: same numbers as the JSON fill_hist. */
	arr = stats_json("--pid", pid);
	pool = json_pool(arr, d->pid);
	assert_non_null(pool);
	hist = json_get(pool, "fill_hist");
	assert_non_null(hist);
	assert_non_null(strstr(r.out, "chunk fill"));
	assert_true(find_line(strstr(r.out, "chunk fill"), "pid", line,
			      sizeof(line)));
	n = split_words(line, w, 64);
	assert_int_equal(n, 2 + KVC_FILL_BUCKETS);
	assert_string_equal(w[2], "empty");
	assert_string_equal(w[2 + KVC_FILL_BUCKETS - 1], "full");
	assert_true(find_line(strstr(r.out, "chunk fill"), pid, line,
			      sizeof(line)));
	n = split_words(line, w, 64);
	assert_int_equal(n, 2 + KVC_FILL_BUCKETS);
	for (b = 0; b < KVC_FILL_BUCKETS; b++)
		assert_string_equal(w[2 + b], hist->items[b]->text);
	json_free(arr);
	result_free(&r);
}

static void test_pid_filter(void **state)
{
	struct fixture *f = *state;
	char a[16], b[16], dead[16], line[1024];
	struct demo *da, *db;
	struct json *arr;
	struct result r;
	pid_t gone;

	da = start_demo(f, NULL, NULL);
	db = start_demo(f, "100", NULL);
	snprintf(a, sizeof(a), "%d", (int)da->pid);
	snprintf(b, sizeof(b), "%d", (int)db->pid);

	arr = stats_json(NULL, NULL);
	assert_int_equal(arr->n, 2);
	assert_non_null(json_pool(arr, da->pid));
	assert_non_null(json_pool(arr, db->pid));
	json_free(arr);

	arr = stats_json("--pid", a);
	assert_int_equal(arr->n, 1);
	assert_non_null(json_pool(arr, da->pid));
	json_free(arr);

	arr = stats_json("--pid", b);
	assert_int_equal(arr->n, 1);
	assert_int_equal(json_u64(arr->items[0], "blocks_live"), 50);
	json_free(arr);

	run(&r, KVCCTL, "stats", "-p", b, NULL);
	assert_int_equal(r.status, 0);
	assert_true(find_line(r.out, b, line, sizeof(line)));
	assert_false(find_line(r.out, a, line, sizeof(line)));
	result_free(&r);

	/* A process with no pool: nothing to show is not an error. */
	gone = dead_pid();
	snprintf(dead, sizeof(dead), "%d", (int)gone);
	run(&r, KVCCTL, "stats", "--pid", dead, NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "no kvc pools"));
	result_free(&r);
	arr = stats_json("--pid", dead);
	assert_int_equal(arr->n, 0);
	json_free(arr);
}

static void test_no_pools_and_missing_dir(void **state)
{
	struct fixture *f = *state;
	char missing[PATH_MAX + 16];
	struct json *arr;
	struct result r;

	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "no kvc pools"));
	assert_string_equal(r.err, "");
	result_free(&r);
	arr = stats_json(NULL, NULL);
	assert_int_equal(arr->n, 0);
	json_free(arr);

	snprintf(missing, sizeof(missing), "%s/missing", f->root);
	run(&r, KVCCTL, "stats", "--dir", missing, NULL);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, missing));
	assert_int_equal(count_lines(r.err), 1);
	result_free(&r);

	/* The same through the environment, with JSON asked for. */
	assert_int_equal(setenv("KVC_STATS_DIR", missing, 1), 0);
	run(&r, KVCCTL, "stats", "--json", NULL);
	assert_int_equal(setenv("KVC_STATS_DIR", f->pages, 1), 0);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, missing));
	result_free(&r);
}

struct usage_case {
	const char *args[4];
	const char *says; /* the flag or word the error must name */
};

static void test_usage_errors(void **state)
{
	static const struct usage_case cases[] = {
		{ { "stats", "--pid", "abc" }, "--pid" },
		{ { "stats", "--pid", "0" }, "--pid" },
		{ { "stats", "--pid", "12x" }, "--pid" },
		{ { "stats", "--pid" }, "--pid" },
		{ { "stats", "--watch", "-1" }, "--watch" },
		{ { "stats", "--watch", "0" }, "--watch" },
		{ { "stats", "--watch", "soon" }, "--watch" },
		{ { "stats", "--watch", "1", "--count" }, "--count" },
		{ { "stats", "--count", "3" }, "--count" },
		{ { "stats", "--bogus" }, "--bogus" },
		{ { "stats", "-x" }, "-x" },
		{ { "stats", "--json=yes" }, "--json" },
		{ { "stats", "extra" }, "extra" },
		{ { "stats", "--dir", "" }, "--dir" },
		{ { "frobnicate" }, "frobnicate" },
		{ { "--frob" }, "--frob" },
		{ { "help", "nosuch" }, "nosuch" },
	};
	char *argv[8], *nl;
	struct result r;
	size_t i;
	int n;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		argv[0] = KVCCTL;
		for (n = 0; n < 4 && cases[i].args[n]; n++)
			argv[n + 1] = (char *)cases[i].args[n];
		argv[n + 1] = NULL;
		run_argv(&r, argv);
		if (r.status != 2)
			fail_msg("case %zu (%s): exit %d, expected 2", i,
				 cases[i].says, r.status);
		assert_string_equal(r.out, "");
		/* One line naming the flag, one line with the usage hint. */
		assert_int_equal(count_lines(r.err), 2);
		nl = strchr(r.err, '\n');
		assert_non_null(nl);
		*nl = '\0';
		if (!strstr(r.err, cases[i].says))
			fail_msg("case %zu: '%s' does not name %s", i, r.err,
				 cases[i].says);
		assert_non_null(strstr(nl + 1, "--help"));
		result_free(&r);
	}

	/* No command at all: the usage, on stderr. */
	run(&r, KVCCTL, NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "Usage"));
	result_free(&r);
}

static void test_help_and_version(void **state)
{
	struct result r;
	char want[64];

	run(&r, KVCCTL, "--version", NULL);
	assert_int_equal(r.status, 0);
	snprintf(want, sizeof(want), "kvcctl %s\n", KVC_VERSION);
	assert_string_equal(r.out, want);
	result_free(&r);

	run(&r, KVCCTL, "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "stats"));
	result_free(&r);

	run(&r, KVCCTL, "help", "stats", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "--watch"));
	assert_non_null(strstr(r.out, "--clean"));
	result_free(&r);

	run(&r, KVCCTL, "stats", "--help", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "--pid"));
	assert_string_equal(r.err, "");
	result_free(&r);
}

/* Output that cannot be written is a failure, not a silent success. */
static void test_write_error(void **state)
{
	char *argv[] = { KVCCTL, "stats", NULL };
	FILE *full = fopen("/dev/full", "w"), *err = tmpfile();
	int status;
	char *text;

	if (!full)
		skip();
	assert_non_null(err);
	assert_int_equal(
		wait_exit(spawn(argv, full, err), RUN_TIMEOUT_MS, &status), 0);
	assert_int_equal(exit_code(status), 1);
	text = slurp(err);
	assert_non_null(strstr(text, "error writing output"));
	free(text);
	fclose(full);
	fclose(err);
	(void)state;
}

static void write_file(const char *path, const void *data, size_t len,
		       mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
	char buf[8192];
	ssize_t len;
	int fd;

	fd = open(from, O_RDONLY);
	assert_true(fd >= 0);
	len = read(fd, buf, sizeof(buf));
	assert_true(len > 0);
	close(fd);
	write_file(to, buf, (size_t)len, mode);
}

static void test_refused_pages(void **state)
{
	struct fixture *f = *state;
	char bad[4][PATH_MAX + 32], garbage[100], line[1024], pid[16];
	static char zeros[4096];
	const struct json *pool;
	struct json *arr;
	struct result r;
	struct demo *d;
	size_t i;

	d = start_demo(f, NULL, NULL);
	for (i = 0; i < sizeof(garbage); i++)
		garbage[i] = (char)(i * 37 + 11);
	/* Too short; right size but no magic; another pid's page inside. */
	for (i = 0; i < 3; i++)
		snprintf(bad[i], sizeof(bad[i]), "%s/kvc.%d.%zu", f->pages,
			 (int)getpid(), i);
	/* A true copy of the demo's page, but readable by others. */
	snprintf(bad[3], sizeof(bad[3]), "%s/kvc.%d.7", f->pages, (int)d->pid);
	write_file(bad[0], garbage, sizeof(garbage), 0600);
	write_file(bad[1], zeros, sizeof(zeros), 0600);
	copy_file(d->page, bad[2], 0600);
	copy_file(d->page, bad[3], 0644);

	arr = stats_json(NULL, NULL);
	assert_int_equal(arr->n, 1);
	pool = json_pool(arr, d->pid);
	assert_non_null(pool);
	assert_string_equal(json_str(pool, "path"), d->page);
	json_free(arr);

	run(&r, KVCCTL, "stats", "--json", NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(count_lines(r.err), 4);
	for (i = 0; i < 4; i++)
		if (!strstr(r.err, bad[i]))
			fail_msg("%s not reported:\n%s", bad[i], r.err);
	assert_non_null(strstr(r.err, "refused"));
	assert_non_null(strstr(r.err, "mode 0644"));
	result_free(&r);

	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "4 pages refused"));
	assert_null(strstr(r.out, bad[0]));
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	assert_false(find_line(r.out, pid, line, sizeof(line)));
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	assert_true(find_line(r.out, pid, line, sizeof(line)));
	result_free(&r);

	/* --clean leaves refused pages alone: it trusts none of them. */
	run(&r, KVCCTL, "stats", "--clean", NULL);
	assert_int_equal(r.status, 0);
	for (i = 0; i < 4; i++)
		assert_true(file_exists(bad[i]));
	result_free(&r);
}

static void test_stale_page_and_clean(void **state)
{
	static const char name[] = "we\"ird\\ na\tme\x01 \xc3\xa9";
	struct fixture *f = *state;
	char page[PATH_MAX + 32], pid[16], line[1024], *w[64];
	const struct json *pool;
	struct json *arr;
	struct result r;
	struct demo *d;
	const char *p;
	pid_t gone;

	d = start_demo(f, NULL, NULL);
	gone = make_stale_pool(name, 3);
	snprintf(page, sizeof(page), "%s/kvc.%d.0", f->pages, (int)gone);
	snprintf(pid, sizeof(pid), "%d", (int)gone);
	assert_true(file_exists(page));

	arr = stats_json(NULL, NULL);
	assert_int_equal(arr->n, 2);
	pool = json_pool(arr, gone);
	assert_non_null(pool);
	assert_false(json_bool(pool, "alive"));
	assert_string_equal(json_str(pool, "name"), name);
	assert_string_equal(json_str(pool, "path"), page);
	assert_int_equal(json_u64(pool, "blocks_live"), 3);
	check_pool_consistent(pool);
	assert_true(json_bool(json_pool(arr, d->pid), "alive"));
	json_free(arr);

	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	/* The name's tab and \x01 must not reach the terminal. */
	for (p = r.out; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\n')
			fail_msg("control character %#x in the table",
				 (unsigned char)*p);
	assert_true(find_line(r.out, pid, line, sizeof(line)));
	assert_non_null(strstr(line, " stale "));
	assert_non_null(strstr(r.out, "--clean"));
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	assert_true(find_line(r.out, pid, line, sizeof(line)));
	assert_int_equal(split_words(line, w, 64) > 4, 1);
	assert_string_equal(w[3], "live");
	result_free(&r);

	run(&r, KVCCTL, "stats", "--clean", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "removed stale page"));
	assert_non_null(strstr(r.out, page));
	assert_false(file_exists(page));
	assert_true(file_exists(d->page));
	snprintf(pid, sizeof(pid), "%d", (int)gone);
	assert_false(find_line(r.out, pid, line, sizeof(line)));
	result_free(&r);

	/* Nothing stale left: nothing removed, the live pool still shown. */
	run(&r, KVCCTL, "stats", "--clean", "--json", NULL);
	assert_int_equal(r.status, 0);
	assert_null(strstr(r.err, "removed"));
	assert_int_equal(json_parse_all(r.out, &arr, 1), 1);
	assert_int_equal(arr->n, 1);
	assert_non_null(json_pool(arr, d->pid));
	json_free(arr);
	result_free(&r);
}

static void test_json_escapes_bad_utf8(void **state)
{
	struct fixture *f = *state;
	const struct json *pool;
	struct json *arr;
	struct result r;
	pid_t gone;

	gone = make_stale_pool("bad\xff\xc3name", 1);
	arr = stats_json(NULL, NULL);
	pool = json_pool(arr, gone);
	assert_non_null(pool);
	/* Each byte that is not UTF-8 becomes U+FFFD. */
	assert_string_equal(json_str(pool, "name"),
			    "bad\xef\xbf\xbd\xef\xbf\xbdname");
	json_free(arr);

	run(&r, KVCCTL, "stats", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "bad??name"));
	result_free(&r);

	run(&r, KVCCTL, "stats", "--clean", "--json", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "removed stale page"));
	assert_string_equal(r.out, "[]\n");
	result_free(&r);
	(void)f;
}

static void test_watch_count(void **state)
{
	struct fixture *f = *state;
	struct timespec t0, t1;
	struct json *arrays[4];
	struct result r;
	struct demo *d;
	double secs;
	int n, i;

	d = start_demo(f, NULL, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	run(&r, KVCCTL, "stats", "--json", "--watch", "0.1", "--count", "3",
	    NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(r.status, 0);
	n = json_parse_all(r.out, arrays, 4);
	assert_int_equal(n, 3);
	for (i = 0; i < n; i++) {
		assert_int_equal(arrays[i]->n, 1);
		assert_non_null(json_pool(arrays[i], d->pid));
		json_free(arrays[i]);
	}
	/* Two waits of 0.1 s between three refreshes. */
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(secs >= 0.19);
	result_free(&r);

	/* Not a terminal: no screen clearing, one heading per refresh. */
	run(&r, KVCCTL, "stats", "--watch", "0.05", "--count", "2", NULL);
	assert_int_equal(r.status, 0);
	assert_null(strstr(r.out, "\033["));
	assert_non_null(strstr(r.out, "every 0.05s"));
	assert_non_null(
		strstr(strstr(r.out, "every 0.05s") + 1, "every 0.05s"));
	assert_non_null(strstr(r.out, "pool_demo"));
	result_free(&r);
}

static void test_watch_interrupted(void **state)
{
	char *argv[] = { KVCCTL, "stats", "--watch", "100", NULL };
	struct timespec t0, t1;
	int status, sig, waited;
	FILE *out, *err;
	struct stat st;
	char *text;
	pid_t pid;

	for (sig = 0; sig < 2; sig++) {
		out = tmpfile();
		err = tmpfile();
		assert_non_null(out);
		assert_non_null(err);
		pid = spawn(argv, out, err);
		/* The first refresh is out: the handlers are in place. */
		for (waited = 0; waited < RUN_TIMEOUT_MS; waited += 10) {
			assert_int_equal(fstat(fileno(out), &st), 0);
			if (st.st_size > 0)
				break;
			usleep(10 * 1000);
		}
		assert_true(st.st_size > 0);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(kill(pid, sig ? SIGTERM : SIGINT), 0);
		/* Ends at once, cleanly, although the interval is 100 s. */
		assert_int_equal(wait_exit(pid, 5000, &status), 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		assert_true(t1.tv_sec - t0.tv_sec < 3);
		text = slurp(out);
		assert_non_null(strstr(text, "no kvc pools"));
		free(text);
		fclose(out);
		fclose(err);
	}
	(void)state;
}

static void test_demo_errors(void **state)
{
	struct fixture *f = *state;
	struct result r;
	struct dirent *de;
	DIR *dir;

	/* 3000 does not divide the chunk: the library says why. */
	run(&r, POOL_DEMO, "--backend", "host", "--block-bytes", "3000", NULL);
	assert_int_equal(r.status, 1);
	assert_true(strlen(r.err) > 12);
	result_free(&r);

	run(&r, POOL_DEMO, "--backend", "tpu", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--backend"));
	result_free(&r);

	run(&r, POOL_DEMO, "--blocks", "0", NULL);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--blocks"));
	result_free(&r);

	/* Without --hold the demo runs, prints and cleans up after itself. */
	run(&r, POOL_DEMO, "--backend", "host", "--blocks", "10", NULL);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "5 live"));
	result_free(&r);

	dir = opendir(f->pages);
	assert_non_null(dir);
	while ((de = readdir(dir)))
		if (!strncmp(de->d_name, "kvc.", 4))
			fail_msg("page %s left behind", de->d_name);
	closedir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_json_shows_demo_pool,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_demo_flags, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_table_output, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pid_filter, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_no_pools_and_missing_dir,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage_errors, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_help_and_version, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_error, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_refused_pages, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stale_page_and_clean,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_escapes_bad_utf8,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_count, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_watch_interrupted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_demo_errors, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
