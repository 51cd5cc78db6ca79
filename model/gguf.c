// SPDX-License-Identifier: MIT
/*
 * The GGUF reader. The file is untrusted: every read goes through a
 * cursor that checks the bytes are there first, every size is computed
 * with overflow checks, and counts are bounded by what the rest of the
 * file could hold before anything is allocated for them. Values are
 * decoded byte by byte, so neither the host's byte order nor the
 * alignment of the fields matters.
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kvc/error.h>

#include "../alloc/error.h"
#include "gguf.h"

#define GGUF_HEADER_BYTES 24
#define GGUF_DEFAULT_ALIGNMENT 32
/* Smallest entry: key length, a 1-byte key, type, a 1-byte value. */
#define GGUF_MIN_KV_BYTES 14
/* Smallest tensor info: name length, 1-byte name, n_dims, 1 dim, type, offset. */
#define GGUF_MIN_TENSOR_BYTES 33
/* Longest name quoted in a message. */
#define NAME_MAX_SHOWN 64

struct cursor {
	const uint8_t *base;
	uint64_t size;
	uint64_t off;
};

static uint64_t le(const uint8_t *p, unsigned int bytes)
{
	uint64_t v = 0;

	while (bytes--)
		v = v << 8 | p[bytes];
	return v;
}

static int need(struct cursor *c, uint64_t bytes, const char *field)
{
	if (bytes > c->size - c->off)
		return kvc_err(-EINVAL,
			       "gguf: %s at offset %llu: needs %llu bytes, "
			       "%llu left in the file",
			       field, (unsigned long long)c->off,
			       (unsigned long long)bytes,
			       (unsigned long long)(c->size - c->off));
	return 0;
}

static int rd_u32(struct cursor *c, const char *field, uint32_t *v)
{
	int err = need(c, 4, field);

	if (err)
		return err;
	*v = (uint32_t)le(c->base + c->off, 4);
	c->off += 4;
	return 0;
}

static int rd_u64(struct cursor *c, const char *field, uint64_t *v)
{
	int err = need(c, 8, field);

	if (err)
		return err;
	*v = le(c->base + c->off, 8);
	c->off += 8;
	return 0;
}

static int rd_str(struct cursor *c, const char *field, struct kvc_gguf_str *s)
{
	uint64_t at = c->off, len;
	int err = rd_u64(c, field, &len);

	if (err)
		return err;
	if (len > c->size - c->off)
		return kvc_err(-EINVAL,
			       "gguf: %s at offset %llu: length %llu runs past "
			       "the end of the file",
			       field, (unsigned long long)at,
			       (unsigned long long)len);
	s->len = len;
	s->s = (const char *)c->base + c->off;
	c->off += len;
	return 0;
}

static int shown(const struct kvc_gguf_str *s)
{
	return s->len > NAME_MAX_SHOWN ? NAME_MAX_SHOWN : (int)s->len;
}

/* Bytes of one scalar of @type; 0 for strings, arrays and unknown types. */
static unsigned int scalar_bytes(uint32_t type)
{
	switch (type) {
	case KVC_GGUF_U8:
	case KVC_GGUF_I8:
	case KVC_GGUF_BOOL:
		return 1;
	case KVC_GGUF_U16:
	case KVC_GGUF_I16:
		return 2;
	case KVC_GGUF_U32:
	case KVC_GGUF_I32:
	case KVC_GGUF_F32:
		return 4;
	case KVC_GGUF_U64:
	case KVC_GGUF_I64:
	case KVC_GGUF_F64:
		return 8;
	default:
		return 0;
	}
}

uint64_t kvc_ggml_row_bytes(uint32_t type, uint64_t n)
{
	uint32_t elems = 1;
	uint32_t bytes = kvc_ggml_block(type, &elems);

	if (!bytes || n % elems || n / elems > UINT64_MAX / bytes)
		return 0;
	return n / elems * bytes;
}

static int str_cmp(const struct kvc_gguf_str *a, const struct kvc_gguf_str *b)
{
	uint64_t n = a->len < b->len ? a->len : b->len;
	int r = n ? memcmp(a->s, b->s, n) : 0;

	if (r)
		return r;
	return a->len < b->len ? -1 : a->len > b->len;
}

static int kv_cmp(const void *a, const void *b)
{
	const struct kvc_gguf_kv *x = *(const struct kvc_gguf_kv *const *)a;
	const struct kvc_gguf_kv *y = *(const struct kvc_gguf_kv *const *)b;

	return str_cmp(&x->key, &y->key);
}

static int tensor_name_cmp(const void *a, const void *b)
{
	const struct kvc_gguf_tensor *x =
		*(const struct kvc_gguf_tensor *const *)a;
	const struct kvc_gguf_tensor *y =
		*(const struct kvc_gguf_tensor *const *)b;

	return str_cmp(&x->name, &y->name);
}

static int tensor_data_cmp(const void *a, const void *b)
{
	const struct kvc_gguf_tensor *x =
		*(const struct kvc_gguf_tensor *const *)a;
	const struct kvc_gguf_tensor *y =
		*(const struct kvc_gguf_tensor *const *)b;

	return x->data < y->data ? -1 : x->data > y->data;
}

/* Record the offsets of an array's strings, growing the table as needed. */
static int push_str_off(struct kvc_gguf *g, uint64_t *cap, uint64_t off)
{
	if (g->nr_str_offs == *cap) {
		uint64_t ncap = *cap ? *cap * 2 : 64;
		uint64_t *p = realloc(g->str_offs, ncap * sizeof(*p));

		if (!p)
			return kvc_err(-ENOMEM,
				       "gguf: no memory for %llu "
				       "string offsets",
				       (unsigned long long)ncap);
		g->str_offs = p;
		*cap = ncap;
	}
	g->str_offs[g->nr_str_offs++] = off;
	return 0;
}

static int parse_value(struct kvc_gguf *g, struct cursor *c,
		       struct kvc_gguf_kv *kv, uint64_t *str_cap)
{
	uint64_t at = c->off;
	unsigned int sz;
	int err;

	kv->count = 1;
	kv->arr_type = kv->type;
	kv->data = c->base + c->off;
	if (kv->type == KVC_GGUF_STRING) {
		struct kvc_gguf_str s;

		return rd_str(c, "string value", &s);
	}
	if (kv->type == KVC_GGUF_ARRAY) {
		uint32_t et;
		uint64_t n, i;

		err = rd_u32(c, "array element type", &et);
		if (err)
			return err;
		if (et == KVC_GGUF_ARRAY)
			return kvc_err(-EINVAL,
				       "gguf: array element type at offset "
				       "%llu: nested arrays are not supported",
				       (unsigned long long)at);
		if (et != KVC_GGUF_STRING && !scalar_bytes(et))
			return kvc_err(-EINVAL,
				       "gguf: array element type at offset "
				       "%llu: unknown type %u",
				       (unsigned long long)at, et);
		err = rd_u64(c, "array count", &n);
		if (err)
			return err;
		kv->arr_type = (enum kvc_gguf_type)et;
		kv->count = n;
		kv->data = c->base + c->off;
		if (et != KVC_GGUF_STRING) {
			sz = scalar_bytes(et);
			if (n > (c->size - c->off) / sz)
				return kvc_err(
					-EINVAL,
					"gguf: array count at offset "
					"%llu: %llu elements of %u bytes "
					"run past the end of the file",
					(unsigned long long)(at + 4),
					(unsigned long long)n, sz);
			c->off += n * sz;
			return 0;
		}
		/* Every string needs its 8-byte length at least. */
		if (n > (c->size - c->off) / 8)
			return kvc_err(-EINVAL,
				       "gguf: array count at offset %llu: %llu "
				       "strings cannot fit in the file",
				       (unsigned long long)(at + 4),
				       (unsigned long long)n);
		kv->str_first = g->nr_str_offs;
		for (i = 0; i < n; i++) {
			struct kvc_gguf_str s;

			err = push_str_off(g, str_cap, c->off);
			if (err)
				return err;
			err = rd_str(c, "array string", &s);
			if (err)
				return err;
		}
		return 0;
	}
	sz = scalar_bytes(kv->type);
	if (!sz)
		return kvc_err(-EINVAL,
			       "gguf: value type at offset %llu: unknown type "
			       "%u",
			       (unsigned long long)(at - 4),
			       (unsigned)kv->type);
	err = need(c, sz, "value");
	if (err)
		return err;
	if (kv->type == KVC_GGUF_BOOL && c->base[c->off] > 1)
		return kvc_err(-EINVAL,
			       "gguf: bool value at offset %llu: %u is neither "
			       "0 nor 1",
			       (unsigned long long)c->off, c->base[c->off]);
	c->off += sz;
	return 0;
}

static int parse_kvs(struct kvc_gguf *g, struct cursor *c)
{
	uint64_t str_cap = 0, i;
	int err;

	for (i = 0; i < g->nr_kv; i++) {
		struct kvc_gguf_kv *kv = &g->kv[i];
		uint64_t at = c->off;
		uint32_t type;

		err = rd_str(c, "key", &kv->key);
		if (err)
			return err;
		if (!kv->key.len)
			return kvc_err(-EINVAL,
				       "gguf: key at offset %llu: empty key "
				       "(entry %llu)",
				       (unsigned long long)at,
				       (unsigned long long)i);
		err = rd_u32(c, "value type", &type);
		if (err)
			return err;
		kv->type = (enum kvc_gguf_type)type;
		err = parse_value(g, c, kv, &str_cap);
		if (err)
			return err;
		g->kv_by_key[i] = kv;
	}
	qsort(g->kv_by_key, g->nr_kv, sizeof(*g->kv_by_key), kv_cmp);
	for (i = 1; i < g->nr_kv; i++) {
		const struct kvc_gguf_kv *kv = g->kv_by_key[i];

		if (!str_cmp(&g->kv_by_key[i - 1]->key, &kv->key))
			return kvc_err(-EINVAL,
				       "gguf: key at offset %llu: duplicate "
				       "key \"%.*s\"",
				       (unsigned long long)((const uint8_t *)
								    kv->key.s -
							    c->base - 8),
				       shown(&kv->key), kv->key.s);
	}
	return 0;
}

/* general.alignment: a u32 power of two when present, else 32. */
static int read_alignment(struct kvc_gguf *g)
{
	const struct kvc_gguf_kv *kv = kvc_gguf_find(g, "general.alignment");
	uint64_t at, a;

	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (!kv)
		return 0;
	at = (uint64_t)(kv->data - g->data);
	if (kv->type != KVC_GGUF_U32)
		return kvc_err(-EINVAL,
			       "gguf: general.alignment at offset %llu: type "
			       "%u, expected u32",
			       (unsigned long long)at, (unsigned)kv->type);
	a = le(kv->data, 4);
	if (!a || (a & (a - 1)))
		return kvc_err(-EINVAL,
			       "gguf: general.alignment at offset %llu: %llu "
			       "is not a nonzero power of two",
			       (unsigned long long)at, (unsigned long long)a);
	g->alignment = a;
	return 0;
}

static int parse_tensor_info(struct kvc_gguf *g, struct cursor *c, uint64_t i,
			     uint64_t *offset)
{
	struct kvc_gguf_tensor *t = &g->tensors[i];
	uint64_t at = c->off, rows;
	uint32_t d;
	int err;

	err = rd_str(c, "tensor name", &t->name);
	if (err)
		return err;
	if (!t->name.len)
		return kvc_err(-EINVAL,
			       "gguf: tensor name at offset %llu: empty name "
			       "(tensor %llu)",
			       (unsigned long long)at, (unsigned long long)i);
	at = c->off;
	err = rd_u32(c, "tensor n_dims", &t->n_dims);
	if (err)
		return err;
	if (t->n_dims < 1 || t->n_dims > 4)
		return kvc_err(-EINVAL,
			       "gguf: n_dims of tensor \"%.*s\" at offset "
			       "%llu: %u, expected 1..4",
			       shown(&t->name), t->name.s,
			       (unsigned long long)at, t->n_dims);
	t->elems = 1;
	for (d = 0; d < 4; d++) {
		t->dims[d] = 1;
		if (d >= t->n_dims)
			continue;
		at = c->off;
		err = rd_u64(c, "tensor dim", &t->dims[d]);
		if (err)
			return err;
		if (!t->dims[d])
			return kvc_err(-EINVAL,
				       "gguf: dims[%u] of tensor \"%.*s\" at "
				       "offset %llu: 0",
				       d, shown(&t->name), t->name.s,
				       (unsigned long long)at);
		if (t->elems > UINT64_MAX / t->dims[d])
			return kvc_err(-EINVAL,
				       "gguf: dims[%u] of tensor \"%.*s\" at "
				       "offset %llu: element count overflows",
				       d, shown(&t->name), t->name.s,
				       (unsigned long long)at);
		t->elems *= t->dims[d];
	}
	at = c->off;
	err = rd_u32(c, "tensor type", &t->type);
	if (err)
		return err;
	if (!kvc_ggml_block(t->type, NULL))
		return kvc_err(-EINVAL,
			       "gguf: type of tensor \"%.*s\" at offset %llu: "
			       "unknown ggml type %u",
			       shown(&t->name), t->name.s,
			       (unsigned long long)at, t->type);
	t->bytes = kvc_ggml_row_bytes(t->type, t->dims[0]);
	if (!t->bytes)
		return kvc_err(-EINVAL,
			       "gguf: dims[0] of tensor \"%.*s\" at offset "
			       "%llu: %llu elements of type %u are not whole "
			       "blocks or overflow the row size",
			       shown(&t->name), t->name.s,
			       (unsigned long long)at,
			       (unsigned long long)t->dims[0], t->type);
	rows = t->elems / t->dims[0];
	if (t->bytes > UINT64_MAX / rows)
		return kvc_err(-EINVAL,
			       "gguf: dims of tensor \"%.*s\" at offset %llu: "
			       "byte size overflows",
			       shown(&t->name), t->name.s,
			       (unsigned long long)at);
	t->bytes *= rows;
	return rd_u64(c, "tensor offset", offset);
}

static int parse_tensors(struct kvc_gguf *g, struct cursor *c)
{
	const struct kvc_gguf_tensor **by_data = NULL;
	uint64_t *offs, *info_at, i, room;
	int err = 0;

	offs = calloc(g->nr_tensors ? g->nr_tensors : 1, 2 * sizeof(*offs));
	if (!offs)
		return kvc_err(-ENOMEM, "gguf: no memory for %llu tensors",
			       (unsigned long long)g->nr_tensors);
	info_at = offs + g->nr_tensors;
	for (i = 0; i < g->nr_tensors; i++) {
		info_at[i] = c->off;
		err = parse_tensor_info(g, c, i, &offs[i]);
		if (err)
			goto out;
		g->tensor_by_name[i] = &g->tensors[i];
	}
	/* A file without tensors may end right after its infos. */
	g->data_offset = c->off;
	if (g->nr_tensors) {
		g->data_offset =
			(c->off + g->alignment - 1) & ~(g->alignment - 1);
		if (g->data_offset > c->size) {
			err = kvc_err(-EINVAL,
				      "gguf: data section at offset %llu: past "
				      "the end of the file (%llu bytes)",
				      (unsigned long long)g->data_offset,
				      (unsigned long long)c->size);
			goto out;
		}
	}
	room = c->size - g->data_offset;
	for (i = 0; i < g->nr_tensors; i++) {
		struct kvc_gguf_tensor *t = &g->tensors[i];

		if (offs[i] % g->alignment) {
			err = kvc_err(
				-EINVAL,
				"gguf: offset of tensor \"%.*s\" (info at "
				"offset %llu): %llu is not a multiple of "
				"the alignment %llu",
				shown(&t->name), t->name.s,
				(unsigned long long)info_at[i],
				(unsigned long long)offs[i],
				(unsigned long long)g->alignment);
			goto out;
		}
		if (offs[i] > room || t->bytes > room - offs[i]) {
			err = kvc_err(
				-EINVAL,
				"gguf: offset of tensor \"%.*s\" (info at "
				"offset %llu): %llu bytes at %llu run "
				"past the end of the data section (%llu "
				"bytes)",
				shown(&t->name), t->name.s,
				(unsigned long long)info_at[i],
				(unsigned long long)t->bytes,
				(unsigned long long)offs[i],
				(unsigned long long)room);
			goto out;
		}
		t->data = c->base + g->data_offset + offs[i];
	}

	qsort(g->tensor_by_name, g->nr_tensors, sizeof(*g->tensor_by_name),
	      tensor_name_cmp);
	for (i = 1; i < g->nr_tensors; i++) {
		const struct kvc_gguf_tensor *t = g->tensor_by_name[i];

		if (!str_cmp(&g->tensor_by_name[i - 1]->name, &t->name)) {
			err = kvc_err(-EINVAL,
				      "gguf: tensor name at offset %llu: "
				      "duplicate name \"%.*s\"",
				      (unsigned long long)((const uint8_t *)
								   t->name.s -
							   c->base - 8),
				      shown(&t->name), t->name.s);
			goto out;
		}
	}

	if (g->nr_tensors > 1) {
		by_data = malloc(g->nr_tensors * sizeof(*by_data));
		if (!by_data) {
			err = kvc_err(-ENOMEM,
				      "gguf: no memory for %llu "
				      "tensors",
				      (unsigned long long)g->nr_tensors);
			goto out;
		}
		memcpy(by_data, g->tensor_by_name,
		       g->nr_tensors * sizeof(*by_data));
		qsort(by_data, g->nr_tensors, sizeof(*by_data),
		      tensor_data_cmp);
	}
	for (i = 1; by_data && i < g->nr_tensors; i++) {
		const struct kvc_gguf_tensor *a = by_data[i - 1];
		const struct kvc_gguf_tensor *b = by_data[i];

		if ((uint64_t)(b->data - a->data) < a->bytes) {
			err = kvc_err(-EINVAL,
				      "gguf: offset of tensor \"%.*s\" (data "
				      "at offset %llu): overlaps tensor "
				      "\"%.*s\"",
				      shown(&b->name), b->name.s,
				      (unsigned long long)(b->data - c->base),
				      shown(&a->name), a->name.s);
			goto out;
		}
	}
out:
	free(by_data);
	free(offs);
	return err;
}

int kvc_gguf_parse(const void *data, size_t size, struct kvc_gguf **out)
{
	struct cursor c = { .base = data, .size = size, .off = 0 };
	struct kvc_gguf *g;
	uint64_t room;
	int err;

	if (!out || (!data && size))
		return kvc_err(-EINVAL, "gguf: no buffer or no result pointer");
	*out = NULL;
	if (size < GGUF_HEADER_BYTES)
		return kvc_err(-EINVAL,
			       "gguf: header at offset 0: file of %zu bytes is "
			       "too small for a GGUF header (%d bytes)",
			       size, GGUF_HEADER_BYTES);
	if (memcmp(data, "GGUF", 4))
		return kvc_err(-EINVAL,
			       "gguf: magic at offset 0: not \"GGUF\"");

	g = calloc(1, sizeof(*g));
	if (!g)
		return kvc_err(-ENOMEM, "gguf: no memory");
	g->data = data;
	g->size = size;
	c.off = 4;
	g->version = (uint32_t)le(c.base + 4, 4);
	g->nr_tensors = le(c.base + 8, 8);
	g->nr_kv = le(c.base + 16, 8);
	c.off = GGUF_HEADER_BYTES;
	if (g->version != 2 && g->version != 3) {
		err = kvc_err(-EINVAL,
			      "gguf: version at offset 4: %u, expected 2 or 3",
			      g->version);
		goto fail;
	}
	/* Bound the counts by the file before allocating for them. */
	room = size - GGUF_HEADER_BYTES;
	if (g->nr_tensors > room / GGUF_MIN_TENSOR_BYTES) {
		err = kvc_err(-EINVAL,
			      "gguf: tensor_count at offset 8: %llu tensors "
			      "cannot fit in %llu bytes",
			      (unsigned long long)g->nr_tensors,
			      (unsigned long long)room);
		goto fail;
	}
	if (g->nr_kv > room / GGUF_MIN_KV_BYTES ||
	    g->nr_kv * GGUF_MIN_KV_BYTES >
		    room - g->nr_tensors * GGUF_MIN_TENSOR_BYTES) {
		err = kvc_err(-EINVAL,
			      "gguf: kv_count at offset 16: %llu entries and "
			      "%llu tensors cannot fit in %llu bytes",
			      (unsigned long long)g->nr_kv,
			      (unsigned long long)g->nr_tensors,
			      (unsigned long long)room);
		goto fail;
	}
	g->kv = calloc(g->nr_kv ? g->nr_kv : 1, sizeof(*g->kv));
	g->kv_by_key = calloc(g->nr_kv ? g->nr_kv : 1, sizeof(*g->kv_by_key));
	g->tensors =
		calloc(g->nr_tensors ? g->nr_tensors : 1, sizeof(*g->tensors));
	g->tensor_by_name = calloc(g->nr_tensors ? g->nr_tensors : 1,
				   sizeof(*g->tensor_by_name));
	if (!g->kv || !g->kv_by_key || !g->tensors || !g->tensor_by_name) {
		err = kvc_err(-ENOMEM,
			      "gguf: no memory for %llu entries and "
			      "%llu tensors",
			      (unsigned long long)g->nr_kv,
			      (unsigned long long)g->nr_tensors);
		goto fail;
	}
	err = parse_kvs(g, &c);
	if (!err)
		err = read_alignment(g);
	if (!err)
		err = parse_tensors(g, &c);
	if (err)
		goto fail;
	*out = g;
	return 0;
fail:
	kvc_gguf_close(g);
	return err;
}

int kvc_gguf_open(const char *path, struct kvc_gguf **out)
{
	char msg[256];
	struct stat st;
	void *map;
	int fd, err;

	if (!path || !out)
		return kvc_err(-EINVAL, "gguf: no path or no result pointer");
	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kvc_err(-errno, "gguf: %s: open: %s", path,
			       strerror(errno));
	if (fstat(fd, &st)) {
		err = -errno;
		close(fd);
		return kvc_err(err, "gguf: %s: fstat: %s", path,
			       strerror(-err));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return kvc_err(-EINVAL, "gguf: %s: not a regular file", path);
	}
	if (st.st_size < GGUF_HEADER_BYTES) {
		close(fd);
		return kvc_err(-EINVAL,
			       "gguf: %s: file of %lld bytes is too small for "
			       "a GGUF header (%d bytes)",
			       path, (long long)st.st_size, GGUF_HEADER_BYTES);
	}
	if ((unsigned long long)st.st_size > SIZE_MAX) {
		close(fd);
		return kvc_err(-EFBIG, "gguf: %s: too large to map", path);
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	err = map == MAP_FAILED ? -errno : 0;
	close(fd);
	if (err)
		return kvc_err(err, "gguf: %s: mmap: %s", path, strerror(-err));
	err = kvc_gguf_parse(map, (size_t)st.st_size, out);
	if (err) {
		/* Name the file in the parser's message. */
		snprintf(msg, sizeof(msg), "%s", kvc_last_error());
		munmap(map, (size_t)st.st_size);
		return kvc_err(err, "%s: %s", path, msg);
	}
	(*out)->map = map;
	return 0;
}

void kvc_gguf_close(struct kvc_gguf *g)
{
	if (!g)
		return;
	if (g->map)
		munmap(g->map, g->size);
	free(g->kv);
	free(g->kv_by_key);
	free(g->tensors);
	free(g->tensor_by_name);
	free(g->str_offs);
	free(g);
}

/*
 * Binary search of the kv entries, or with @tensors of the tensors, for
 * @name: both tables are sorted by str_cmp() at parse time, so one search
 * serves both lookups. Return: the index, or -1 when absent.
 */
static int64_t sorted_find(const struct kvc_gguf *g, bool tensors,
			   const char *name)
{
	struct kvc_gguf_str k = { strlen(name), name };
	uint64_t lo = 0, hi = tensors ? g->nr_tensors : g->nr_kv;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		int r = str_cmp(tensors ? &g->tensor_by_name[mid]->name :
					  &g->kv_by_key[mid]->key,
				&k);

		if (!r)
			return (int64_t)mid;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

const struct kvc_gguf_kv *kvc_gguf_find(const struct kvc_gguf *g,
					const char *key)
{
	int64_t i;

	if (!g || !key)
		return NULL;
	i = sorted_find(g, false, key);
	return i < 0 ? NULL : g->kv_by_key[i];
}

const struct kvc_gguf_tensor *kvc_gguf_tensor(const struct kvc_gguf *g,
					      const char *name)
{
	int64_t i;

	if (!g || !name)
		return NULL;
	i = sorted_find(g, true, name);
	return i < 0 ? NULL : g->tensor_by_name[i];
}

/* The scalar entry @key of @g, or -ENOENT/-EINVAL with a message. */
static int find_scalar(const struct kvc_gguf *g, const char *key,
		       const struct kvc_gguf_kv **out)
{
	const struct kvc_gguf_kv *kv;

	if (!g || !key)
		return kvc_err(-EINVAL, "gguf: no file or no key");
	kv = kvc_gguf_find(g, key);
	if (!kv)
		return kvc_err(-ENOENT, "gguf: no entry %s", key);
	if (kv->type == KVC_GGUF_ARRAY)
		return kvc_err(-EINVAL, "gguf: entry %s is an array", key);
	*out = kv;
	return 0;
}

int kvc_gguf_get_u32(const struct kvc_gguf *g, const char *key, uint32_t *out)
{
	const struct kvc_gguf_kv *kv;
	bool neg = false;
	uint64_t v;
	int err = find_scalar(g, key, &kv);

	if (err)
		return err;
	switch (kv->type) {
	case KVC_GGUF_U8:
	case KVC_GGUF_U16:
	case KVC_GGUF_U32:
	case KVC_GGUF_U64:
		v = le(kv->data, scalar_bytes(kv->type));
		break;
	case KVC_GGUF_I8:
		v = (uint64_t)(int64_t)(int8_t)kv->data[0];
		neg = (int8_t)kv->data[0] < 0;
		break;
	case KVC_GGUF_I16:
		v = (uint64_t)(int64_t)(int16_t)le(kv->data, 2);
		neg = (int16_t)le(kv->data, 2) < 0;
		break;
	case KVC_GGUF_I32:
		v = (uint64_t)(int64_t)(int32_t)le(kv->data, 4);
		neg = (int32_t)le(kv->data, 4) < 0;
		break;
	case KVC_GGUF_I64:
		v = le(kv->data, 8);
		neg = (int64_t)v < 0;
		break;
	default:
		return kvc_err(-EINVAL,
			       "gguf: entry %s has type %u, expected an "
			       "integer",
			       key, (unsigned)kv->type);
	}
	if (neg || v > UINT32_MAX)
		return kvc_err(-EINVAL,
			       "gguf: entry %s: value out of u32 range", key);
	*out = (uint32_t)v;
	return 0;
}

int kvc_gguf_get_f32(const struct kvc_gguf *g, const char *key, float *out)
{
	const struct kvc_gguf_kv *kv;
	int err = find_scalar(g, key, &kv);
	uint64_t bits;
	double d;

	if (err)
		return err;
	if (kv->type == KVC_GGUF_F32) {
		uint32_t b = (uint32_t)le(kv->data, 4);
		float f;

		memcpy(&f, &b, sizeof(f));
		*out = f;
		return 0;
	}
	if (kv->type != KVC_GGUF_F64)
		return kvc_err(
			-EINVAL,
			"gguf: entry %s has type %u, expected f32 or f64", key,
			(unsigned)kv->type);
	bits = le(kv->data, 8);
	memcpy(&d, &bits, sizeof(d));
	if (isfinite(d) && fabs(d) > FLT_MAX)
		return kvc_err(-EINVAL,
			       "gguf: entry %s: value out of f32 range", key);
	*out = (float)d;
	return 0;
}

int kvc_gguf_get_str(const struct kvc_gguf *g, const char *key,
		     struct kvc_gguf_str *out)
{
	const struct kvc_gguf_kv *kv;
	int err = find_scalar(g, key, &kv);

	if (err)
		return err;
	if (kv->type != KVC_GGUF_STRING)
		return kvc_err(-EINVAL,
			       "gguf: entry %s has type %u, expected a string",
			       key, (unsigned)kv->type);
	/* The parser checked the length against the file. */
	out->len = le(kv->data, 8);
	out->s = (const char *)kv->data + 8;
	return 0;
}

int kvc_gguf_arr_str(const struct kvc_gguf *g, const struct kvc_gguf_kv *kv,
		     uint64_t i, struct kvc_gguf_str *out)
{
	uint64_t off;

	if (!g || !kv || !out)
		return kvc_err(-EINVAL, "gguf: no file, entry or result");
	if (kv < g->kv || kv >= g->kv + g->nr_kv)
		return kvc_err(-EINVAL, "gguf: entry is not of this file");
	if (kv->type != KVC_GGUF_ARRAY || kv->arr_type != KVC_GGUF_STRING)
		return kvc_err(-EINVAL,
			       "gguf: entry %.*s is not an array of strings",
			       shown(&kv->key), kv->key.s);
	if (i >= kv->count)
		return kvc_err(-EINVAL,
			       "gguf: entry %.*s: index %llu past its %llu "
			       "strings",
			       shown(&kv->key), kv->key.s,
			       (unsigned long long)i,
			       (unsigned long long)kv->count);
	off = g->str_offs[kv->str_first + i];
	out->len = le(g->data + off, 8);
	out->s = (const char *)g->data + off + 8;
	return 0;
}
