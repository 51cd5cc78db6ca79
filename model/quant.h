/* SPDX-License-Identifier: MIT */
/*
 * Dequantization and quantized dot products for the ggml tensor types a
 * GGUF model stores its weights in (F32, F16, Q4_0, Q4_1, Q8_0). Rows are
 * read in place: kvc_qdot() never materialises a dequantized row, so a
 * matrix-vector product streams the weights once at their stored size.
 *
 * Quantized types come in blocks of 32 elements, each with an fp16 scale
 * d (and for Q4_1 an fp16 minimum m):
 *   Q4_0 (18 B): d, 16 B of nibbles; w[j] = ((q[j] & 15) - 8) * d,
 *                w[j + 16] = ((q[j] >> 4) - 8) * d.
 *   Q4_1 (20 B): d, m, 16 B of nibbles; w[j] = (q[j] & 15) * d + m,
 *                w[j + 16] = (q[j] >> 4) * d + m.
 *   Q8_0 (34 B): d, 32 int8; w[j] = q[j] * d.
 */
#ifndef KVC_MODEL_QUANT_H
#define KVC_MODEL_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

/* Elements of a quantized block. */
#define KVC_QBLOCK KVC_GGML_QK

/**
 * kvc_dequant() - Expand @n elements of @type to floats.
 * @type: enum kvc_ggml_type.
 * @src: the stored elements.
 * @dst: @n floats.
 * @n: elements; a multiple of KVC_QBLOCK for the quantized types.
 *
 * Return: 0; -EINVAL for an unknown type or a bad @n (with a message).
 */
int kvc_dequant(uint32_t type, const void *src, float *dst, size_t n);

/**
 * kvc_qdot() - The dot product of a stored row with @x.
 * @type: enum kvc_ggml_type.
 * @row: @n stored elements.
 * @x: @n floats.
 * @n: elements; a multiple of KVC_QBLOCK for the quantized types.
 *
 * Equal, up to float rounding, to dequantizing the row and taking its
 * dot product with @x; the scales are factored out of each block. The
 * caller checks @type and @n (kvc_ggml_row_bytes() != 0): a bad one
 * gives 0.
 *
 * Return: the dot product.
 */
float kvc_qdot(uint32_t type, const void *row, const float *x, size_t n);

/**
 * kvc_matvec() - y = W x for a stored row-major matrix W.
 * @type: enum kvc_ggml_type of W.
 * @w: @rows rows of @cols stored elements, back to back.
 * @rows: rows of W (elements of @y).
 * @cols: columns of W (elements of @x); a multiple of KVC_QBLOCK for the
 *        quantized types.
 * @x: @cols floats.
 * @y: @rows floats; must not overlap @x.
 *
 * Large products are split over threads by rows (kvc_attn_parallel());
 * the result does not depend on the threads.
 *
 * Return: 0; -EINVAL for an unknown type or a bad @cols (with a message).
 */
int kvc_matvec(uint32_t type, const void *w, uint32_t rows, uint32_t cols,
	       const float *x, float *y);

#endif /* KVC_MODEL_QUANT_H */
