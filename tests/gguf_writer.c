// SPDX-License-Identifier: MIT
/*
 * The in-memory GGUF writer of the tests. Metadata entries are encoded as
 * they are added into one growing buffer; tensors are kept aside and laid
 * out at gw_finish(), when the alignment is final.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf_writer.h"

struct gw_buf {
	uint8_t *p;
	size_t len;
	size_t cap;
};

struct gw_tensor {
	char *name;
	uint32_t type;
	uint32_t n_dims;
	uint64_t dims[4];
	uint8_t *data;
	uint64_t bytes;
};

struct gguf_writer {
	int err;
	uint32_t version;
	uint64_t alignment;
	uint64_t nr_kv;
	struct gw_buf kv;
	struct gw_tensor *tensors;
	uint64_t nr_tensors;
};

static int buf_put(struct gw_buf *b, const void *p, size_t n)
{
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 256;
		uint8_t *q;

		while (cap - b->len < n)
			cap *= 2;
		q = realloc(b->p, cap);
		if (!q)
			return -ENOMEM;
		b->p = q;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int buf_le(struct gw_buf *b, uint64_t v, unsigned int bytes)
{
	uint8_t le[8];
	unsigned int i;

	for (i = 0; i < bytes; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	return buf_put(b, le, bytes);
}

static int buf_str(struct gw_buf *b, const char *s, uint64_t len)
{
	int err = buf_le(b, len, 8);

	return err ? err : buf_put(b, s, len);
}

/* Remember the first error; later calls return it. */
static int fail(struct gguf_writer *w, int err)
{
	if (!w->err)
		w->err = err;
	return w->err;
}

struct gguf_writer *gw_new(void)
{
	struct gguf_writer *w = calloc(1, sizeof(*w));

	if (w) {
		w->version = 3;
		w->alignment = 32;
	}
	return w;
}

void gw_free(struct gguf_writer *w)
{
	uint64_t i;

	if (!w)
		return;
	for (i = 0; i < w->nr_tensors; i++) {
		free(w->tensors[i].name);
		free(w->tensors[i].data);
	}
	free(w->tensors);
	free(w->kv.p);
	free(w);
}

int gw_set_version(struct gguf_writer *w, uint32_t version)
{
	if (!w->err)
		w->version = version;
	return w->err;
}

/* Key and type of a new entry; the caller writes the value. */
static int kv_head(struct gguf_writer *w, const char *key, uint32_t type)
{
	int err;

	if (w->err)
		return w->err;
	err = buf_str(&w->kv, key, strlen(key));
	if (!err)
		err = buf_le(&w->kv, type, 4);
	if (err)
		return fail(w, err);
	w->nr_kv++;
	return 0;
}

static int add_scalar(struct gguf_writer *w, const char *key, uint32_t type,
		      uint64_t bits, unsigned int bytes)
{
	int err = kv_head(w, key, type);

	if (!err)
		err = buf_le(&w->kv, bits, bytes);
	return err ? fail(w, err) : 0;
}

int gw_set_alignment(struct gguf_writer *w, uint32_t align)
{
	if (!align || (align & (align - 1)))
		return fail(w, -EINVAL);
	if (w->err)
		return w->err;
	w->alignment = align;
	return add_scalar(w, "general.alignment", KVC_GGUF_U32, align, 4);
}

int gw_add_u8(struct gguf_writer *w, const char *key, uint8_t v)
{
	return add_scalar(w, key, KVC_GGUF_U8, v, 1);
}

int gw_add_i8(struct gguf_writer *w, const char *key, int8_t v)
{
	return add_scalar(w, key, KVC_GGUF_I8, (uint8_t)v, 1);
}

int gw_add_u16(struct gguf_writer *w, const char *key, uint16_t v)
{
	return add_scalar(w, key, KVC_GGUF_U16, v, 2);
}

int gw_add_i16(struct gguf_writer *w, const char *key, int16_t v)
{
	return add_scalar(w, key, KVC_GGUF_I16, (uint16_t)v, 2);
}

int gw_add_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
	return add_scalar(w, key, KVC_GGUF_U32, v, 4);
}

int gw_add_i32(struct gguf_writer *w, const char *key, int32_t v)
{
	return add_scalar(w, key, KVC_GGUF_I32, (uint32_t)v, 4);
}

int gw_add_f32(struct gguf_writer *w, const char *key, float v)
{
	uint32_t bits;

	memcpy(&bits, &v, sizeof(bits));
	return add_scalar(w, key, KVC_GGUF_F32, bits, 4);
}

int gw_add_bool(struct gguf_writer *w, const char *key, bool v)
{
	return add_scalar(w, key, KVC_GGUF_BOOL, v ? 1 : 0, 1);
}

int gw_add_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
	return add_scalar(w, key, KVC_GGUF_U64, v, 8);
}

int gw_add_i64(struct gguf_writer *w, const char *key, int64_t v)
{
	return add_scalar(w, key, KVC_GGUF_I64, (uint64_t)v, 8);
}

int gw_add_f64(struct gguf_writer *w, const char *key, double v)
{
	uint64_t bits;

	memcpy(&bits, &v, sizeof(bits));
	return add_scalar(w, key, KVC_GGUF_F64, bits, 8);
}

int gw_add_str_n(struct gguf_writer *w, const char *key, const char *v,
		 uint64_t len)
{
	int err = kv_head(w, key, KVC_GGUF_STRING);

	if (!err)
		err = buf_str(&w->kv, v, len);
	return err ? fail(w, err) : 0;
}

int gw_add_str(struct gguf_writer *w, const char *key, const char *v)
{
	return gw_add_str_n(w, key, v, strlen(v));
}

/* Bytes of one element of a fixed-size metadata type; 0 for others. */
static unsigned int elem_bytes(enum kvc_gguf_type t)
{
	switch (t) {
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

int gw_add_arr(struct gguf_writer *w, const char *key,
	       enum kvc_gguf_type elem_type, const void *elems, uint64_t count)
{
	unsigned int sz = elem_bytes(elem_type);
	const uint8_t *p = elems;
	uint64_t i;
	int err;

	if (!sz)
		return fail(w, -EINVAL);
	err = kv_head(w, key, KVC_GGUF_ARRAY);
	if (!err)
		err = buf_le(&w->kv, elem_type, 4);
	if (!err)
		err = buf_le(&w->kv, count, 8);
	for (i = 0; !err && i < count; i++) {
		uint64_t v = 0;

		/* Host order in, little-endian out. */
		switch (sz) {
		case 1:
			v = p[i];
			break;
		case 2: {
			uint16_t x;

			memcpy(&x, p + i * 2, 2);
			v = x;
			break;
		}
		case 4: {
			uint32_t x;

			memcpy(&x, p + i * 4, 4);
			v = x;
			break;
		}
		default:
			memcpy(&v, p + i * 8, 8);
			break;
		}
		err = buf_le(&w->kv, v, sz);
	}
	return err ? fail(w, err) : 0;
}

int gw_add_arr_str(struct gguf_writer *w, const char *key,
		   const char *const *strs, uint64_t count)
{
	uint64_t i;
	int err = kv_head(w, key, KVC_GGUF_ARRAY);

	if (!err)
		err = buf_le(&w->kv, KVC_GGUF_STRING, 4);
	if (!err)
		err = buf_le(&w->kv, count, 8);
	for (i = 0; !err && i < count; i++)
		err = buf_str(&w->kv, strs[i], strlen(strs[i]));
	return err ? fail(w, err) : 0;
}

int gw_add_tensor(struct gguf_writer *w, const char *name, uint32_t type,
		  uint32_t n_dims, const uint64_t *dims, const void *data,
		  uint64_t bytes)
{
	struct gw_tensor *t;
	uint64_t want, rows = 1;
	uint32_t d;

	if (w->err)
		return w->err;
	if (n_dims < 1 || n_dims > 4)
		return fail(w, -EINVAL);
	for (d = 1; d < n_dims; d++) {
		if (!dims[d] || rows > UINT64_MAX / dims[d])
			return fail(w, -EINVAL);
		rows *= dims[d];
	}
	want = kvc_ggml_row_bytes(type, dims[0]);
	if (!want || want > UINT64_MAX / rows || want * rows != bytes ||
	    bytes > SIZE_MAX)
		return fail(w, -EINVAL);
	t = realloc(w->tensors, (w->nr_tensors + 1) * sizeof(*t));
	if (!t)
		return fail(w, -ENOMEM);
	w->tensors = t;
	t = &w->tensors[w->nr_tensors];
	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	t->data = data ? malloc(bytes) : calloc(1, bytes);
	if (!t->name || !t->data) {
		free(t->name);
		free(t->data);
		return fail(w, -ENOMEM);
	}
	if (data)
		memcpy(t->data, data, bytes);
	t->type = type;
	t->n_dims = n_dims;
	for (d = 0; d < 4; d++)
		t->dims[d] = d < n_dims ? dims[d] : 1;
	t->bytes = bytes;
	w->nr_tensors++;
	return 0;
}

static uint64_t round_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}

uint64_t gw_tensor_offset(const struct gguf_writer *w, uint64_t i)
{
	uint64_t off = 0, k;

	if (i >= w->nr_tensors)
		return UINT64_MAX;
	for (k = 0; k < i; k++)
		off = round_up(off + w->tensors[k].bytes, w->alignment);
	return off;
}

int gw_finish(struct gguf_writer *w, uint8_t **buf, size_t *size)
{
	struct gw_buf b = { 0 };
	uint64_t i, off = 0;
	int err;

	*buf = NULL;
	*size = 0;
	if (w->err)
		return w->err;
	err = buf_put(&b, "GGUF", 4);
	if (!err)
		err = buf_le(&b, w->version, 4);
	if (!err)
		err = buf_le(&b, w->nr_tensors, 8);
	if (!err)
		err = buf_le(&b, w->nr_kv, 8);
	if (!err)
		err = buf_put(&b, w->kv.p, w->kv.len);
	for (i = 0; !err && i < w->nr_tensors; i++) {
		const struct gw_tensor *t = &w->tensors[i];
		uint32_t d;

		err = buf_str(&b, t->name, strlen(t->name));
		if (!err)
			err = buf_le(&b, t->n_dims, 4);
		for (d = 0; !err && d < t->n_dims; d++)
			err = buf_le(&b, t->dims[d], 8);
		if (!err)
			err = buf_le(&b, t->type, 4);
		if (!err)
			err = buf_le(&b, off, 8);
		off = round_up(off + t->bytes, w->alignment);
	}
	for (i = 0; !err && i < w->nr_tensors; i++) {
		static const uint8_t zeros[256];
		const struct gw_tensor *t = &w->tensors[i];

		/* Pad to the data section, then between tensors. */
		while (!err && b.len % w->alignment) {
			size_t pad = w->alignment - b.len % w->alignment;

			err = buf_put(&b, zeros,
				      pad < sizeof(zeros) ? pad :
							    sizeof(zeros));
		}
		if (!err)
			err = buf_put(&b, t->data, t->bytes);
	}
	if (err) {
		free(b.p);
		return fail(w, err);
	}
	*buf = b.p;
	*size = b.len;
	return 0;
}

int gw_write_file(struct gguf_writer *w, const char *path)
{
	uint8_t *buf;
	size_t size, done = 0;
	int fd, err = gw_finish(w, &buf, &size);

	if (err)
		return err;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		free(buf);
		return err;
	}
	while (done < size) {
		ssize_t n = write(fd, buf + done, size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)n;
	}
	if (close(fd) && !err)
		err = -errno;
	free(buf);
	return err;
}
