// SPDX-License-Identifier: MIT
/*
 * Writing text that people and programs read: byte counts in binary units,
 * and strings that came from other processes (pool names, backend names,
 * paths). Such a string is never written raw: on a terminal it could move
 * the cursor or retitle the window, in JSON it could break the document.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kvcctl.h"

#define NR_UNITS 6

static int stdout_error;

int kvcctl_flush(void)
{
	if (!stdout_error && fflush(stdout))
		stdout_error = errno ? errno : EIO;
	if (!stdout_error && ferror(stdout))
		stdout_error = EIO;
	return -stdout_error;
}

char *kvcctl_human_bytes(uint64_t bytes, char *buf)
{
	static const char *const units[NR_UNITS] = { "KiB", "MiB", "GiB",
						     "TiB", "PiB", "EiB" };
	double value = (double)bytes / 1024;
	unsigned int unit = 0;

	if (bytes < 1024) {
		snprintf(buf, KVCCTL_BYTES_LEN, "%" PRIu64 " B", bytes);
		return buf;
	}
	/* Move up while "%.1f" would print 1024.0 or more. */
	while (value >= 1023.95 && unit + 1 < NR_UNITS) {
		value /= 1024;
		unit++;
	}
	snprintf(buf, KVCCTL_BYTES_LEN, "%.1f %s", value, units[unit]);
	return buf;
}

/*
 * Length of the valid UTF-8 sequence at @s (1 to 4), or 0 when the bytes
 * there are not one: overlong forms, surrogates and code points above
 * U+10FFFF are invalid. A NUL ends a sequence early, so the string's end is
 * never read past. @cp receives the code point.
 */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
	size_t len, i;
	uint32_t c = s[0];

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		c &= 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		c &= 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		c &= 0x07;
	} else {
		return 0;
	}
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

static bool is_control(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

void kvcctl_sanitize(char *dst, size_t len, const char *src)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t used = 0, n;
	uint32_t cp;

	while (*s) {
		n = utf8_decode(s, &cp);
		if (!n || is_control(cp)) {
			if (used + 1 >= len)
				break;
			dst[used++] = '?';
			s += n ? n : 1;
			continue;
		}
		if (used + n >= len)
			break;
		memcpy(dst + used, s, n);
		used += n;
		s += n;
	}
	dst[used] = '\0';
}

size_t kvcctl_text_width(const char *s)
{
	size_t width = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			width++;
	return width;
}

void kvcctl_json_string(FILE *out, const char *src)
{
	const unsigned char *s = (const unsigned char *)src;
	uint32_t cp;
	size_t n;

	fputc('"', out);
	while (*s) {
		n = utf8_decode(s, &cp);
		if (!n) {
			fputs("\\ufffd", out);
			s++;
			continue;
		}
		switch (cp) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\r':
			fputs("\\r", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		default:
			if (is_control(cp))
				fprintf(out, "\\u%04x", (unsigned int)cp);
			else
				fwrite(s, 1, n, out);
		}
		s += n;
	}
	fputc('"', out);
}
