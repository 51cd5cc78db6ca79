/* SPDX-License-Identifier: MIT */
/*
 * An in-memory GGUF writer for tests: build a small model file (metadata
 * of every type, tensors from given bytes) and get it back as one buffer
 * that kvc_gguf_parse() reads, or as a file for kvc_gguf_open().
 *
 * Errors are sticky: the first failed call is remembered and every later
 * call returns it, so a test may add everything and check only
 * gw_finish(). Entries and tensors keep the order they were added in;
 * each tensor's data starts at the next multiple of the alignment.
 */
#ifndef KVC_TESTS_GGUF_WRITER_H
#define KVC_TESTS_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../model/gguf.h"

struct gguf_writer;

/**
 * gw_new() - Start an empty GGUF file (version 3, alignment 32).
 *
 * Return: the writer, or NULL without memory.
 */
struct gguf_writer *gw_new(void);

/* Free a writer; NULL is a no-op. */
void gw_free(struct gguf_writer *w);

/**
 * gw_set_version() - Write @version in the header (2 or 3; others are
 * written too, for tests of refused files).
 * @w: the writer.
 * @version: the version field.
 *
 * Return: the writer's error state (0 when all went well so far).
 */
int gw_set_version(struct gguf_writer *w, uint32_t version);

/**
 * gw_set_alignment() - Add the general.alignment entry (u32) and lay the
 * tensors out on it.
 * @w: the writer.
 * @align: a nonzero power of two.
 *
 * Return: 0; -EINVAL for a bad @align; the sticky error.
 */
int gw_set_alignment(struct gguf_writer *w, uint32_t align);

/*
 * Scalar entries, one per metadata type. Each returns 0, -ENOMEM or the
 * sticky error. Keys are not checked for duplicates (tests of refused
 * files add them on purpose).
 */
int gw_add_u8(struct gguf_writer *w, const char *key, uint8_t v);
int gw_add_i8(struct gguf_writer *w, const char *key, int8_t v);
int gw_add_u16(struct gguf_writer *w, const char *key, uint16_t v);
int gw_add_i16(struct gguf_writer *w, const char *key, int16_t v);
int gw_add_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gw_add_i32(struct gguf_writer *w, const char *key, int32_t v);
int gw_add_f32(struct gguf_writer *w, const char *key, float v);
int gw_add_bool(struct gguf_writer *w, const char *key, bool v);
int gw_add_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gw_add_i64(struct gguf_writer *w, const char *key, int64_t v);
int gw_add_f64(struct gguf_writer *w, const char *key, double v);

/* A string entry from a NUL-terminated string. */
int gw_add_str(struct gguf_writer *w, const char *key, const char *v);

/**
 * gw_add_str_n() - A string entry of @len bytes (may hold NULs).
 * @w: the writer.
 * @key: the key.
 * @v: the bytes.
 * @len: their count.
 *
 * Return: 0, -ENOMEM or the sticky error.
 */
int gw_add_str_n(struct gguf_writer *w, const char *key, const char *v,
		 uint64_t len);

/**
 * gw_add_arr() - An array entry of fixed-size elements.
 * @w: the writer.
 * @key: the key.
 * @elem_type: any scalar type (not string or array).
 * @elems: @count elements as the host holds them (uint8_t, int16_t,
 *         float, double, bool as uint8_t...), written little-endian.
 * @count: elements (0 is fine).
 *
 * Return: 0; -EINVAL for a string or array @elem_type; -ENOMEM; the
 * sticky error.
 */
int gw_add_arr(struct gguf_writer *w, const char *key,
	       enum kvc_gguf_type elem_type, const void *elems, uint64_t count);

/**
 * gw_add_arr_str() - An array-of-strings entry.
 * @w: the writer.
 * @key: the key.
 * @strs: @count NUL-terminated strings.
 * @count: strings (0 is fine).
 *
 * Return: 0, -ENOMEM or the sticky error.
 */
int gw_add_arr_str(struct gguf_writer *w, const char *key,
		   const char *const *strs, uint64_t count);

/**
 * gw_add_tensor() - A tensor and its bytes (copied).
 * @w: the writer.
 * @name: its name.
 * @type: enum kvc_ggml_type (F32, F16, Q4_0, Q4_1, Q8_0).
 * @n_dims: 1..4.
 * @dims: @n_dims dimensions, dims[0] the row.
 * @data: the tensor's bytes as stored (F16 as IEEE halves, quantized
 *        types as ggml blocks), or NULL for zeros.
 * @bytes: their count: must be what the type and dims make
 *         (kvc_ggml_row_bytes(type, dims[0]) times the rows).
 *
 * Return: 0; -EINVAL for bad dims or a wrong @bytes; -ENOMEM; the sticky
 * error.
 */
int gw_add_tensor(struct gguf_writer *w, const char *name, uint32_t type,
		  uint32_t n_dims, const uint64_t *dims, const void *data,
		  uint64_t bytes);

/**
 * gw_finish() - The file as one buffer.
 * @w: the writer (still usable afterwards: finishing twice gives the
 *     same bytes).
 * @buf: set to a malloc()ed buffer (the caller frees it).
 * @size: set to its size.
 *
 * Return: 0; the sticky error; -ENOMEM.
 */
int gw_finish(struct gguf_writer *w, uint8_t **buf, size_t *size);

/**
 * gw_write_file() - The file written to @path.
 * @w: the writer.
 * @path: created or truncated.
 *
 * Return: 0; -errno; the sticky error.
 */
int gw_write_file(struct gguf_writer *w, const char *path);

/**
 * gw_tensor_offset() - Offset of tensor @i's data from the start of the
 * data section, as gw_finish() lays it out.
 * @w: the writer.
 * @i: index in the order the tensors were added.
 *
 * Return: the offset, or UINT64_MAX for a bad @i.
 */
uint64_t gw_tensor_offset(const struct gguf_writer *w, uint64_t i);

#endif /* KVC_TESTS_GGUF_WRITER_H */
