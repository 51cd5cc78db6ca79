/* SPDX-License-Identifier: MIT */
/* A strict JSON reader for the tests: parse kvcctl's output, look up by name. */
#ifndef KVC_TESTS_JSON_H
#define KVC_TESTS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/**
 * json_free() - Free a parsed value and everything in it.
 * @v: the value; NULL is fine.
 */
void json_free(struct json *v);

/**
 * json_parse_all() - Parse JSON values that follow one another.
 * @text: the text; whitespace may separate and surround the values.
 * @values: gets the values parsed.
 * @max: room in @values.
 *
 * Strict: a bad escape, a raw control character, broken UTF-8, a duplicate
 * key or more than @max values all make the text invalid.
 *
 * Return: how many values, or -1 when @text is not such a sequence.
 */
int json_parse_all(const char *text, struct json **values, int max);

/**
 * json_parse() - Parse a text that holds exactly one JSON value.
 * @text: the text.
 *
 * Return: the value, or NULL when @text is not exactly one valid value.
 */
struct json *json_parse(const char *text);

/**
 * json_get() - Look up an object's member; fails the test on a non-object.
 * @obj: the object.
 * @key: the member's name.
 *
 * Return: the member's value, or NULL when there is none.
 */
const struct json *json_get(const struct json *obj, const char *key);

/**
 * json_member() - A member that must be there and be of @type.
 * @obj: the object.
 * @key: the member's name.
 * @type: the kind of value it must be.
 *
 * Return: the member's value; the test fails when it is missing or other.
 */
const struct json *json_member(const struct json *obj, const char *key,
			       enum json_type type);

/**
 * json_key_index() - The position of @key among @obj's members.
 * @obj: the object.
 * @key: the member's name.
 *
 * Return: its index; the test fails when it is not there.
 */
size_t json_key_index(const struct json *obj, const char *key);

/**
 * json_u64() - A member that must be a non-negative integer.
 * @obj: the object.
 * @key: the member's name.
 *
 * Return: its value; the test fails when it is missing or other.
 */
uint64_t json_u64(const struct json *obj, const char *key);

/**
 * json_number() - A member that must be a number, of any precision.
 * @obj: the object.
 * @key: the member's name.
 *
 * Return: its value; the test fails when it is missing or other.
 */
double json_number(const struct json *obj, const char *key);

/**
 * json_real() - A member that must be a number with three decimals.
 * @obj: the object.
 * @key: the member's name.
 * @null_ok: whether null is accepted too.
 *
 * The number must read -?[0-9]+\.[0-9]{3}.
 *
 * Return: its value; NAN for null. The test fails when it is other.
 */
double json_real(const struct json *obj, const char *key, bool null_ok);

/**
 * json_text() - A member that must be a number or null, as written.
 * @obj: the object.
 * @key: the member's name.
 *
 * Return: the number's text, or "null"; the test fails when it is other.
 */
const char *json_text(const struct json *obj, const char *key);

/**
 * json_str() - A member that must be a string.
 * @obj: the object.
 * @key: the member's name.
 *
 * Return: the string, decoded; the test fails when it is missing or other.
 */
const char *json_str(const struct json *obj, const char *key);

/**
 * json_bool() - A member that must be true or false.
 * @obj: the object.
 * @key: the member's name.
 *
 * Return: its value; the test fails when it is missing or other.
 */
bool json_bool(const struct json *obj, const char *key);

#endif /* KVC_TESTS_JSON_H */
