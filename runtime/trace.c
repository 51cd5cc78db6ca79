// SPDX-License-Identifier: MIT
/*
 * Request traces: the prompt and output lengths of a real serving trace,
 * read from a CSV file (kvc_trace_read()). Never guesses: a line it cannot
 * read is an error naming the file and the line, not a skipped request.
 *
 * The format it accepts:
 *  - the first line is a header naming the columns; ContextTokens (the
 *    prompt) and GeneratedTokens (the output) must be there, spelt so
 *    (case matters), once each, in any order; other columns are ignored;
 *  - fields are split at commas; a field may be quoted ("..."), with ""
 *    for a quote inside, so a quoted name or timestamp may hold commas
 *    (not line breaks); spaces and tabs around a field are dropped;
 *  - lines end in LF or CRLF; a UTF-8 byte order mark before the header
 *    is skipped; blank lines are skipped wherever they are;
 *  - a line holds at most TRACE_MAX_LINE bytes before its line ending;
 *  - the two fields are whole decimal numbers 0..2^31 (a quoted number is
 *    read without its quotes); the prompt is at least 1 token;
 *  - for timed streams (kvc_trace_read_timed()), an optional column
 *    arrival_s: seconds from the start, a finite decimal number >= 0.
 *
 * Errors: -EINVAL with "file:line: what" for the content; the open's
 * -errno (-ENOENT, -EACCES, ...) or a read's (-EISDIR for a folder) with
 * strerror(); -ENOMEM. Nothing is returned on failure.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/run.h>

#include "../alloc/error.h"
#include "sim.h"

#define TRACE_MAX_LINE 4096u
#define TRACE_MAX_VALUE (1ull << 31)
#define PROMPT_COLUMN "ContextTokens"
#define GEN_COLUMN "GeneratedTokens"
#define ARRIVAL_COLUMN "arrival_s"

/**
 * struct trace_file - A trace being read.
 * @path: its name, for messages.
 * @f: the open file.
 * @line: the number of the line in @buf (1 = the header).
 * @buf: the line, without its line ending, NUL-terminated; room for
 *       TRACE_MAX_LINE bytes, the CR LF after them and the NUL.
 */
struct trace_file {
	const char *path;
	FILE *f;
	uint32_t line;
	char buf[TRACE_MAX_LINE + 3];
};

/*
 * Read the next line into @t->buf. Return: 1 with a line, 0 at the end of
 * the file, -EINVAL for a line that is too long, -errno for a read error.
 */
static int next_line(struct trace_file *t)
{
	size_t len;

	if (!fgets(t->buf, sizeof(t->buf), t->f)) {
		if (ferror(t->f))
			return kvc_err(-(errno ? errno : EIO),
				       "%s: read error after line %u: %s",
				       t->path, t->line,
				       strerror(errno ? errno : EIO));
		return 0;
	}
	t->line++;
	len = strlen(t->buf);
	if (len && t->buf[len - 1] == '\n')
		t->buf[--len] = '\0';
	else if (!feof(t->f))
		return kvc_err(-EINVAL, "%s:%u: line longer than %u bytes",
			       t->path, t->line, TRACE_MAX_LINE);
	if (len && t->buf[len - 1] == '\r')
		t->buf[--len] = '\0';
	if (len > TRACE_MAX_LINE)
		return kvc_err(-EINVAL, "%s:%u: line longer than %u bytes",
			       t->path, t->line, TRACE_MAX_LINE);
	return 1;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool blank_line(const char *s)
{
	while (is_blank(*s))
		s++;
	return !*s;
}

/*
 * Cut the next field off *@cursor, in place: unquote it, drop the blanks
 * around it, and advance *@cursor past its comma (NULL after the last
 * field). Return: the field, or NULL for a quote that is not closed.
 */
static char *next_field(char **cursor)
{
	char *s = *cursor, *field, *out;

	while (is_blank(*s))
		s++;
	if (*s == '"') {
		field = out = ++s;
		for (;;) {
			if (!*s)
				return NULL;
			if (*s == '"' && s[1] != '"')
				break;
			if (*s == '"')
				s++;
			*out++ = *s++;
		}
		s++;
		*out = '\0';
		while (is_blank(*s))
			s++;
		/* text after the closing quote: not CSV, but keep going */
		while (*s && *s != ',')
			s++;
	} else {
		field = s;
		while (*s && *s != ',')
			s++;
		for (out = s; out > field && is_blank(out[-1]); out--)
			;
	}
	*cursor = *s == ',' ? s + 1 : NULL;
	*s = '\0';
	*out = '\0';
	return field;
}

/*
 * Find both columns in the header, and arrival_s when @arrival_col is not
 * NULL (UINT32_MAX when absent).
 */
static int read_header(struct trace_file *t, uint32_t *prompt_col,
		       uint32_t *gen_col, uint32_t *arrival_col)
{
	char *cursor, *name;
	uint32_t col;
	int err;

	err = next_line(t);
	if (err < 0)
		return err;
	if (!err)
		return kvc_err(-EINVAL, "%s: empty file, no header line",
			       t->path);
	cursor = t->buf;
	if (!strncmp(cursor, "\xef\xbb\xbf", 3))
		cursor += 3;
	*prompt_col = *gen_col = UINT32_MAX;
	if (arrival_col)
		*arrival_col = UINT32_MAX;
	for (col = 0; cursor; col++) {
		name = next_field(&cursor);
		if (!name)
			return kvc_err(-EINVAL,
				       "%s:%u: column %u: unclosed quote",
				       t->path, t->line, col + 1);
		if (arrival_col && !strcmp(name, ARRIVAL_COLUMN)) {
			if (*arrival_col != UINT32_MAX)
				return kvc_err(
					-EINVAL,
					"%s:%u: column %s appears twice (columns %u and %u)",
					t->path, t->line, name,
					*arrival_col + 1, col + 1);
			*arrival_col = col;
		}
		if (!strcmp(name, PROMPT_COLUMN) || !strcmp(name, GEN_COLUMN)) {
			uint32_t *at = !strcmp(name, PROMPT_COLUMN) ?
					       prompt_col :
					       gen_col;

			if (*at != UINT32_MAX)
				return kvc_err(
					-EINVAL,
					"%s:%u: column %s appears twice (columns %u and %u)",
					t->path, t->line, name, *at + 1,
					col + 1);
			*at = col;
		}
	}
	if (*prompt_col == UINT32_MAX || *gen_col == UINT32_MAX)
		return kvc_err(-EINVAL, "%s:%u: no column %s in the header",
			       t->path, t->line,
			       *prompt_col == UINT32_MAX ? PROMPT_COLUMN :
							   GEN_COLUMN);
	return 0;
}

/* A whole number 0..TRACE_MAX_VALUE, or -EINVAL naming @column. */
static int parse_count(const struct trace_file *t, const char *field,
		       const char *column, uint32_t *value)
{
	uint64_t v = 0;
	const char *s = field;

	if (!*s)
		return kvc_err(-EINVAL, "%s:%u: %s is empty", t->path, t->line,
			       column);
	if (*s == '-')
		return kvc_err(-EINVAL, "%s:%u: %s \"%.32s\" is negative",
			       t->path, t->line, column, field);
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return kvc_err(
				-EINVAL,
				"%s:%u: %s \"%.32s\" is not a whole number",
				t->path, t->line, column, field);
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > TRACE_MAX_VALUE)
			return kvc_err(-EINVAL,
				       "%s:%u: %s \"%.32s\" is above 2^31",
				       t->path, t->line, column, field);
	}
	*value = (uint32_t)v;
	return 0;
}

/* Seconds, a finite decimal number >= 0, or -EINVAL naming the line. */
static int parse_seconds(const struct trace_file *t, const char *field,
			 double *value)
{
	char *end;
	double v;

	v = strtod(field, &end);
	if (!*field || *end || !isfinite(v) || !(v >= 0))
		return kvc_err(-EINVAL,
			       "%s:%u: %s \"%.32s\" is not a finite number "
			       "of seconds >= 0",
			       t->path, t->line, ARRIVAL_COLUMN, field);
	*value = v;
	return 0;
}

/*
 * One request from the line in @t->buf, and its arrival time when
 * @arrival_col is a column (UINT32_MAX: none).
 */
static int read_request(struct trace_file *t, uint32_t prompt_col,
			uint32_t gen_col, uint32_t arrival_col,
			struct kvc_request *req, double *arrival)
{
	uint32_t need = (prompt_col > gen_col ? prompt_col : gen_col) + 1;
	char *cursor = t->buf, *prompt = NULL, *gen = NULL, *at = NULL;
	char *field;
	uint32_t col;
	int err;

	if (arrival_col != UINT32_MAX && arrival_col + 1 > need)
		need = arrival_col + 1;

	for (col = 0; cursor && col < need; col++) {
		field = next_field(&cursor);
		if (!field)
			return kvc_err(-EINVAL,
				       "%s:%u: field %u: unclosed quote",
				       t->path, t->line, col + 1);
		if (col == prompt_col)
			prompt = field;
		if (col == gen_col)
			gen = field;
		if (col == arrival_col)
			at = field;
	}
	if (col < need)
		return kvc_err(-EINVAL,
			       "%s:%u: %u field(s), %s need at least %u",
			       t->path, t->line, col,
			       arrival_col == UINT32_MAX ?
				       PROMPT_COLUMN " and " GEN_COLUMN :
				       PROMPT_COLUMN ", " GEN_COLUMN
						     " and " ARRIVAL_COLUMN,
			       need);
	err = parse_count(t, prompt, PROMPT_COLUMN, &req->prompt);
	if (err)
		return err;
	err = parse_count(t, gen, GEN_COLUMN, &req->gen);
	if (err)
		return err;
	if (!req->prompt)
		return kvc_err(-EINVAL, "%s:%u: a prompt of 0 tokens", t->path,
			       t->line);
	if (at)
		return parse_seconds(t, at, arrival);
	return 0;
}

/*
 * Room for request @count in *@arr (and in *@times when not NULL), which
 * have room for *@cap.
 */
static int reserve(const struct trace_file *t, struct kvc_request **arr,
		   double **times, uint32_t count, uint32_t *cap)
{
	struct kvc_request *grown;
	double *grown_times;
	uint32_t want;

	if (count < *cap)
		return 0;
	if (count == UINT32_MAX)
		return kvc_err(-EINVAL, "%s:%u: more than %u requests", t->path,
			       t->line, UINT32_MAX);
	want = *cap > UINT32_MAX / 2 ? UINT32_MAX : *cap ? *cap * 2 : 256;
	grown = realloc(*arr, (size_t)want * sizeof(**arr));
	if (!grown)
		return kvc_err(-ENOMEM, "%s:%u: out of memory for %u requests",
			       t->path, t->line, want);
	*arr = grown;
	if (times) {
		grown_times = realloc(*times, (size_t)want * sizeof(**times));
		if (!grown_times)
			return kvc_err(-ENOMEM,
				       "%s:%u: out of memory for %u requests",
				       t->path, t->line, want);
		*times = grown_times;
	}
	*cap = want;
	return 0;
}

int kvc_trace_read_timed(const char *path, uint32_t max,
			 struct kvc_request **reqs, double **arrival,
			 uint32_t *n)
{
	uint32_t prompt_col, gen_col, arrival_col = UINT32_MAX;
	uint32_t count = 0, cap = 0;
	struct kvc_request *arr = NULL;
	double *times = NULL;
	struct trace_file *t;
	int err;

	if (!path || !reqs || !n)
		return kvc_err(-EINVAL, "kvc_trace_read: NULL %s",
			       !path ? "path" :
			       !reqs ? "reqs" :
				       "n");
	*reqs = NULL;
	*n = 0;
	if (arrival)
		*arrival = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return kvc_err(-ENOMEM, "kvc_trace_read: out of memory");
	t->path = path;
	t->f = fopen(path, "r");
	if (!t->f) {
		err = -errno;
		free(t);
		return kvc_err(err, "%s: cannot open: %s", path,
			       strerror(-err));
	}

	err = read_header(t, &prompt_col, &gen_col,
			  arrival ? &arrival_col : NULL);
	if (err)
		goto err_close;
	while (!max || count < max) {
		err = next_line(t);
		if (err < 0)
			goto err_free;
		if (!err)
			break;
		if (blank_line(t->buf))
			continue;
		err = reserve(t, &arr,
			      arrival_col != UINT32_MAX ? &times : NULL, count,
			      &cap);
		if (err)
			goto err_free;
		err = read_request(t, prompt_col, gen_col, arrival_col,
				   &arr[count], times ? &times[count] : NULL);
		if (err)
			goto err_free;
		count++;
	}
	if (!count) {
		err = kvc_err(-EINVAL, "%s: no request after the header", path);
		goto err_free;
	}
	fclose(t->f);
	free(t);
	*reqs = arr;
	*n = count;
	if (arrival)
		*arrival = times;
	return 0;

err_free:
	free(times);
	free(arr);
err_close:
	fclose(t->f);
	free(t);
	return err;
}

int kvc_trace_read(const char *path, uint32_t max, struct kvc_request **reqs,
		   uint32_t *n)
{
	return kvc_trace_read_timed(path, max, reqs, NULL, n);
}
