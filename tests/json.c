/* Description: support, not a test: a strict JSON parser, and look-ups by name that fail the test on a missing or mistyped member. */
// SPDX-License-Identifier: MIT
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

struct json_parser {
	const char *p;
	int depth;
};

void json_free(struct json *v)
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
	size_t i;

	/* Legal JSON, but which value a reader sees is undefined: refuse it. */
	for (i = 0; v->type == JSON_OBJECT && i < v->n; i++)
		if (!strcmp(v->keys[i], key))
			return -1;

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

int json_parse_all(const char *text, struct json **values, int max)
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

struct json *json_parse(const char *text)
{
	struct json *v;

	return json_parse_all(text, &v, 1) == 1 ? v : NULL;
}

const struct json *json_get(const struct json *obj, const char *key)
{
	size_t i;

	assert_int_equal(obj->type, JSON_OBJECT);
	for (i = 0; i < obj->n; i++)
		if (!strcmp(obj->keys[i], key))
			return obj->items[i];
	return NULL;
}

uint64_t json_u64(const struct json *obj, const char *key)
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

const char *json_str(const struct json *obj, const char *key)
{
	const struct json *v = json_get(obj, key);

	if (!v || v->type != JSON_STRING)
		fail_msg("\"%s\" missing or not a string", key);
	return v->text;
}

bool json_bool(const struct json *obj, const char *key)
{
	const struct json *v = json_get(obj, key);

	if (!v || v->type != JSON_BOOL)
		fail_msg("\"%s\" missing or not a boolean", key);
	return v->boolean;
}

double json_real(const struct json *obj, const char *key, bool null_ok)
{
	const struct json *v = json_get(obj, key);
	const char *p, *point;

	if (!v)
		fail_msg("JSON object has no \"%s\"", key);
	if (v->type == JSON_NULL) {
		if (!null_ok)
			fail_msg("\"%s\" is null", key);
		return NAN;
	}
	if (v->type != JSON_NUMBER)
		fail_msg("\"%s\" is not a number", key);
	p = v->text + (v->text[0] == '-');
	point = strchr(p, '.');
	if (!point || point == p || strlen(point) != 4 ||
	    strspn(p, "0123456789") != (size_t)(point - p) ||
	    strspn(point + 1, "0123456789") != 3)
		fail_msg("\"%s\" is %s, not a number with three decimals", key,
			 v->text);
	return strtod(v->text, NULL);
}

const char *json_text(const struct json *obj, const char *key)
{
	const struct json *v = json_get(obj, key);

	if (!v)
		fail_msg("JSON object has no \"%s\"", key);
	if (v->type == JSON_NULL)
		return "null";
	if (v->type != JSON_NUMBER)
		fail_msg("\"%s\" is not a number", key);
	return v->text;
}

size_t json_key_index(const struct json *obj, const char *key)
{
	size_t i;

	assert_int_equal(obj->type, JSON_OBJECT);
	for (i = 0; i < obj->n; i++)
		if (!strcmp(obj->keys[i], key))
			return i;
	fail_msg("JSON object has no \"%s\"", key);
	return 0;
}

const struct json *json_member(const struct json *obj, const char *key,
			       enum json_type type)
{
	const struct json *v = json_get(obj, key);

	if (!v || v->type != type)
		fail_msg("\"%s\" missing or of the wrong type", key);
	return v;
}

double json_number(const struct json *obj, const char *key)
{
	const struct json *v = json_get(obj, key);

	if (!v || v->type != JSON_NUMBER)
		fail_msg("\"%s\" missing or not a number", key);
	return strtod(v->text, NULL);
}
