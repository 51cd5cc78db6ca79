/* SPDX-License-Identifier: MIT */
/*
 * GGUF files (the llama.cpp model format), read from memory that may come
 * from anyone: every count, length, offset and dimension is checked
 * against the file's size before it is used, and a malformed file is
 * refused with a message (kvc_last_error()) naming what is wrong.
 *
 * Layout (little-endian): magic "GGUF", u32 version (2 or 3), u64
 * tensor_count, u64 kv_count; kv_count entries (string key, u32 type,
 * value); tensor_count infos (string name, u32 n_dims <= 4, u64 dims,
 * u32 ggml type, u64 offset relative to the data section); the data
 * section starts at the end of the infos rounded up to general.alignment
 * (default 32). A string is a u64 length and its bytes (no NUL).
 *
 * Also refused: empty keys and tensor names, duplicate keys or tensor
 * names, a bool other than 0 or 1, nested arrays, a zero dimension,
 * unknown ggml types, a general.alignment that is not a u32 power of two,
 * misaligned, out-of-file or overlapping tensor data.
 */
#ifndef KVC_MODEL_GGUF_H
#define KVC_MODEL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Metadata value types. */
enum kvc_gguf_type {
	KVC_GGUF_U8 = 0,
	KVC_GGUF_I8 = 1,
	KVC_GGUF_U16 = 2,
	KVC_GGUF_I16 = 3,
	KVC_GGUF_U32 = 4,
	KVC_GGUF_I32 = 5,
	KVC_GGUF_F32 = 6,
	KVC_GGUF_BOOL = 7,
	KVC_GGUF_STRING = 8,
	KVC_GGUF_ARRAY = 9,
	KVC_GGUF_U64 = 10,
	KVC_GGUF_I64 = 11,
	KVC_GGUF_F64 = 12,
};

/* Tensor element types (ggml_type) this reader knows the sizes of. */
enum kvc_ggml_type {
	KVC_GGML_F32 = 0,
	KVC_GGML_F16 = 1,
	KVC_GGML_Q4_0 = 2,
	KVC_GGML_Q4_1 = 3,
	KVC_GGML_Q8_0 = 8,
};

/* Elements of a block of the quantized types (Q4_0, Q4_1, Q8_0). */
#define KVC_GGML_QK 32
/* Bytes of such a block: the fp16 scale d (and for Q4_1 the fp16 min m). */
#define KVC_GGML_Q4_0_BYTES 18 /* d, 16 B of nibbles */
#define KVC_GGML_Q4_1_BYTES 20 /* d, m, 16 B of nibbles */
#define KVC_GGML_Q8_0_BYTES 34 /* d, 32 int8 */

/**
 * kvc_ggml_block() - The unit a ggml type is stored in.
 * @type: enum kvc_ggml_type.
 * @elems: set to the elements of a block (KVC_GGML_QK for the quantized
 *         types, 1 for F32 and F16) unless the type is unknown; may be
 *         NULL.
 *
 * The one table of type sizes: the reader, the model loader and the
 * dequantizer all size rows from it, so they cannot disagree. Inline, as
 * the dot products check every row against it.
 *
 * Return: the bytes of a block, or 0 for an unknown type.
 */
static inline uint32_t kvc_ggml_block(uint32_t type, uint32_t *elems)
{
	uint32_t e = KVC_GGML_QK, bytes;

	switch (type) {
	case KVC_GGML_F32:
		e = 1;
		bytes = 4;
		break;
	case KVC_GGML_F16:
		e = 1;
		bytes = 2;
		break;
	case KVC_GGML_Q4_0:
		bytes = KVC_GGML_Q4_0_BYTES;
		break;
	case KVC_GGML_Q4_1:
		bytes = KVC_GGML_Q4_1_BYTES;
		break;
	case KVC_GGML_Q8_0:
		bytes = KVC_GGML_Q8_0_BYTES;
		break;
	default:
		return 0;
	}
	if (elems)
		*elems = e;
	return bytes;
}

/**
 * kvc_ggml_quantized() - Whether @type is stored in blocks of KVC_GGML_QK.
 * @type: enum kvc_ggml_type.
 *
 * Return: true for the quantized types; false for F32, F16 and unknown
 * types.
 */
static inline bool kvc_ggml_quantized(uint32_t type)
{
	uint32_t elems = 0;

	return kvc_ggml_block(type, &elems) && elems > 1;
}

/**
 * struct kvc_gguf_str - A string inside the file (not NUL-terminated).
 * @len: bytes.
 * @s: the bytes.
 */
struct kvc_gguf_str {
	uint64_t len;
	const char *s;
};

/**
 * struct kvc_gguf_kv - One metadata entry.
 * @key: its key.
 * @type: its value's type.
 * @arr_type: for an array, its elements' type (never an array).
 * @count: for an array, its elements; else 1.
 * @data: the value's bytes in the file (for an array of strings, the
 *        first string's length field; walk them with
 *        kvc_gguf_arr_str()).
 * @str_first: private: for an array of strings, the index of its first
 *             string in the parser's table of string offsets.
 */
struct kvc_gguf_kv {
	struct kvc_gguf_str key;
	enum kvc_gguf_type type;
	enum kvc_gguf_type arr_type;
	uint64_t count;
	const uint8_t *data;
	uint64_t str_first;
};

/**
 * struct kvc_gguf_tensor - One tensor.
 * @name: its name.
 * @n_dims: 1..4.
 * @dims: its dimensions, dims[0] the fastest-varying (a row); unused
 *        ones are 1.
 * @type: enum kvc_ggml_type.
 * @elems: product of the dims.
 * @bytes: its size in the file.
 * @data: its bytes (inside the file, checked to fit).
 */
struct kvc_gguf_tensor {
	struct kvc_gguf_str name;
	uint32_t n_dims;
	uint64_t dims[4];
	uint32_t type;
	uint64_t elems;
	uint64_t bytes;
	const uint8_t *data;
};

/**
 * struct kvc_gguf - A parsed file.
 * @version: 2 or 3.
 * @nr_kv: metadata entries.
 * @kv: the entries.
 * @nr_tensors: tensors.
 * @tensors: the tensors.
 * @alignment: of the data section.
 * @data: the file's bytes.
 * @size: the file's size.
 * @map: the mapping to unmap at close (NULL when parsed from a buffer).
 * @data_offset: where the data section starts in the file.
 * @str_offs: private: file offset of every string of every array of
 *            strings, so kvc_gguf_arr_str() is O(1).
 * @nr_str_offs: private: entries of @str_offs.
 * @kv_by_key: private: the entries sorted by key, for lookups.
 * @tensor_by_name: private: the tensors sorted by name, for lookups.
 */
struct kvc_gguf {
	uint32_t version;
	uint64_t nr_kv;
	struct kvc_gguf_kv *kv;
	uint64_t nr_tensors;
	struct kvc_gguf_tensor *tensors;
	uint64_t alignment;
	const uint8_t *data;
	size_t size;
	void *map;
	uint64_t data_offset;
	uint64_t *str_offs;
	uint64_t nr_str_offs;
	const struct kvc_gguf_kv **kv_by_key;
	const struct kvc_gguf_tensor **tensor_by_name;
};

/**
 * kvc_gguf_parse() - Parse a GGUF image held in memory.
 * @data: the bytes; must outlive the result.
 * @size: their count.
 * @out: the parsed file.
 *
 * Return: 0; -EINVAL for a malformed file (message names the field and
 * its offset); -ENOMEM.
 */
int kvc_gguf_parse(const void *data, size_t size, struct kvc_gguf **out);

/**
 * kvc_gguf_open() - Map a GGUF file read-only and parse it.
 * @path: the file.
 * @out: the parsed file.
 *
 * Return: 0; -errno of open/mmap (message names the path); as
 * kvc_gguf_parse().
 */
int kvc_gguf_open(const char *path, struct kvc_gguf **out);

/**
 * kvc_gguf_close() - Free a parsed file (and its mapping). NULL is a no-op.
 * @g: the file.
 */
void kvc_gguf_close(struct kvc_gguf *g);

/* The entry of @key, or NULL. */
const struct kvc_gguf_kv *kvc_gguf_find(const struct kvc_gguf *g,
					const char *key);

/**
 * kvc_gguf_get_u32() - A scalar integer entry as u32.
 * @g: the file.
 * @key: the key.
 * @out: the value.
 *
 * Any integer type whose value fits is taken.
 *
 * Return: 0, -ENOENT (absent), -EINVAL (wrong type or out of range; with
 * a message).
 */
int kvc_gguf_get_u32(const struct kvc_gguf *g, const char *key, uint32_t *out);

/* As kvc_gguf_get_u32(), for a float entry (f32 or f64). */
int kvc_gguf_get_f32(const struct kvc_gguf *g, const char *key, float *out);

/* As kvc_gguf_get_u32(), for a string entry. */
int kvc_gguf_get_str(const struct kvc_gguf *g, const char *key,
		     struct kvc_gguf_str *out);

/**
 * kvc_gguf_arr_str() - String @i of an array-of-strings entry.
 * @kv: the entry (type array, arr_type string).
 * @i: index below @kv->count.
 * @out: the string.
 *
 * Strings have variable length, so the parser records their offsets:
 * this is O(1).
 *
 * Return: 0 or -EINVAL.
 */
int kvc_gguf_arr_str(const struct kvc_gguf *g, const struct kvc_gguf_kv *kv,
		     uint64_t i, struct kvc_gguf_str *out);

/* The tensor named @name, or NULL. */
const struct kvc_gguf_tensor *kvc_gguf_tensor(const struct kvc_gguf *g,
					      const char *name);

/**
 * kvc_ggml_row_bytes() - Bytes of @n elements of @type.
 * @type: enum kvc_ggml_type.
 * @n: elements; quantized types need a multiple of their block
 *     (KVC_GGML_QK).
 *
 * Return: the bytes, or 0 for an unknown type or a bad @n.
 */
uint64_t kvc_ggml_row_bytes(uint32_t type, uint64_t n);

#endif /* KVC_MODEL_GGUF_H */
