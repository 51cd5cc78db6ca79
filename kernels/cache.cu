// SPDX-License-Identifier: MIT
/*
 * The cache's data movers (args.h has the contracts): storing new K and V
 * rows (reshape_and_cache), moving KVs between slots (KV-Compress
 * MoveCache) and batched copies of whole blocks (compaction). A warp
 * takes a row, a move, or a stretch of a copy (4 KiB of 16-byte words);
 * every access is the widest the addresses allow, 16 bytes where they
 * are aligned.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <kvc/kv.h>

#include "args.h"

/* Rows (or moves) a CTA of 128 threads takes: a warp each. */
#define ROWS_PER_CTA 4u

/* Block id of global slot @slot, and its offset in @off (64-bit division
 * only where the slot needs it). */
__device__ __forceinline__ uint64_t slot_block(uint64_t slot, uint32_t bs,
					       uint32_t *off)
{
	uint32_t s = (uint32_t)slot;

	if (!(slot >> 32)) {
		*off = s % bs;
		return s / bs;
	}
	*off = (uint32_t)(slot % bs);
	return slot / bs;
}

/* Address of the K row of global slot @slot (its V row is block_size rows
 * further). */
__device__ __forceinline__ uint8_t *k_row(const struct kvc_kargs_paged *kv,
					  uint64_t slot, uint64_t row_bytes)
{
	uint32_t off;
	uint64_t blk = slot_block(slot, kv->block_size, &off);

	return (uint8_t *)kv->base + blk * kv->block_bytes + off * row_bytes;
}

/* ------------------------------------------------------------------ */
/* Cache write */

/* Eight floats as eight 16-bit values, rounded to nearest even. */
template <bool BF16> __device__ __forceinline__ uint4 cvt8(float4 a, float4 b)
{
	uint4 r;

	if (BF16) {
		__nv_bfloat162 h[4] = { __floats2bfloat162_rn(a.x, a.y),
					__floats2bfloat162_rn(a.z, a.w),
					__floats2bfloat162_rn(b.x, b.y),
					__floats2bfloat162_rn(b.z, b.w) };

		memcpy(&r, h, sizeof(r));
	} else {
		__half2 h[4] = { __floats2half2_rn(a.x, a.y),
				 __floats2half2_rn(a.z, a.w),
				 __floats2half2_rn(b.x, b.y),
				 __floats2half2_rn(b.z, b.w) };

		memcpy(&r, h, sizeof(r));
	}
	return r;
}

/*
 * One f32 row of @hd values into @dst as @dtype, by the 32 lanes of a
 * warp: eight values a lane at a time where the row's length and both
 * addresses allow 16-byte accesses, else one value a lane.
 */
__device__ __forceinline__ void store_row(uint8_t *dst, const float *src,
					  uint32_t hd, uint32_t dtype,
					  uint32_t lane)
{
	bool vec = !(hd & 7u) && !((uintptr_t)dst & 15u) &&
		   !((uintptr_t)src & 15u);
	uint32_t c, d;

	if (vec) {
		for (c = lane; c < hd / 8u; c += 32u) {
			float4 a = __ldg((const float4 *)src + 2u * c);
			float4 b = __ldg((const float4 *)src + 2u * c + 1u);

			if (dtype == KVC_DTYPE_F32) {
				((float4 *)dst)[2u * c] = a;
				((float4 *)dst)[2u * c + 1u] = b;
			} else if (dtype == KVC_DTYPE_BF16) {
				((uint4 *)dst)[c] = cvt8<true>(a, b);
			} else {
				((uint4 *)dst)[c] = cvt8<false>(a, b);
			}
		}
		return;
	}
	for (d = lane; d < hd; d += 32u) {
		float x = __ldg(src + d);

		if (dtype == KVC_DTYPE_F32)
			((float *)dst)[d] = x;
		else if (dtype == KVC_DTYPE_BF16)
			((__nv_bfloat16 *)dst)[d] = __float2bfloat16_rn(x);
		else
			((__half *)dst)[d] = __float2half_rn(x);
	}
}

/**
 * kvc_cache_write() - Store new K and V rows and their slots' metadata.
 * @a: the rows; grid (ceil(rows / 4)), 128 threads, a warp a row.
 *
 * Row r goes to global slot slots[r], converted from f32 to the cache's
 * dtype with round to nearest even; with positions, the slot's metadata
 * becomes { metric 0, pos[r] }.
 */
extern "C" __global__ void __launch_bounds__(32u * ROWS_PER_CTA)
	kvc_cache_write(const __grid_constant__ struct kvc_cache_write_args a)
{
	const uint32_t lane = threadIdx.x & 31u;
	const uint64_t r =
		(uint64_t)blockIdx.x * ROWS_PER_CTA + threadIdx.x / 32u;
	const uint32_t hd = a.kv.head_dim;
	const uint64_t row_bytes =
		(uint64_t)hd * (a.kv.dtype == KVC_DTYPE_F32 ? 4u : 2u);
	uint64_t slot;
	uint8_t *dst;

	if (r >= a.rows)
		return;
	slot = ((const uint64_t *)a.slots)[r];
	dst = k_row(&a.kv, slot, row_bytes);
	store_row(dst, (const float *)a.k + r * hd, hd, a.kv.dtype, lane);
	store_row(dst + a.kv.block_size * row_bytes,
		  (const float *)a.v + r * hd, hd, a.kv.dtype, lane);
	if (a.pos && a.kv.meta && lane == 0) {
		uint32_t *m = (uint32_t *)(a.kv.meta + 8u * slot);
		uint32_t pos = ((const uint32_t *)a.pos)[r];

		if (!(a.kv.meta & 7u)) {
			*(uint2 *)m = make_uint2(0u, pos); /* 0.0f, pos */
		} else {
			m[0] = 0u;
			m[1] = pos;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Moves */

/* @bytes from @src to @dst by a warp, in words of type W. */
template <class W>
__device__ __forceinline__ void warp_copy(uint8_t *dst, const uint8_t *src,
					  uint64_t bytes, uint32_t lane)
{
	uint64_t k, words = bytes / sizeof(W);

	for (k = lane; k < words; k += 32u)
		((W *)dst)[k] = ((const W *)src)[k];
}

/* @bytes from @src to @dst by a warp, in the widest words that fit. */
__device__ __forceinline__ void copy_any(uint8_t *dst, const uint8_t *src,
					 uint64_t bytes, uint32_t lane)
{
	uint64_t x =
		(uint64_t)(uintptr_t)dst | (uint64_t)(uintptr_t)src | bytes;

	if (!(x & 15u))
		warp_copy<uint4>(dst, src, bytes, lane);
	else if (!(x & 7u))
		warp_copy<uint2>(dst, src, bytes, lane);
	else if (!(x & 3u))
		warp_copy<uint32_t>(dst, src, bytes, lane);
	else if (!(x & 1u))
		warp_copy<uint16_t>(dst, src, bytes, lane);
	else
		warp_copy<uint8_t>(dst, src, bytes, lane);
}

/**
 * kvc_move_cache() - Copy KVs between slots (MoveCache).
 * @a: the moves; grid (ceil(n / 4)), 128 threads, a warp a move.
 *
 * Move m copies the K row, the V row and (when the cache keeps them) the
 * metadata of global slot moves[2m] to global slot moves[2m + 1]. No slot
 * is both a source and a destination, so the moves run in any order.
 */
extern "C" __global__ void __launch_bounds__(32u * ROWS_PER_CTA)
	kvc_move_cache(const __grid_constant__ struct kvc_move_args a)
{
	const uint32_t lane = threadIdx.x & 31u;
	const uint64_t m =
		(uint64_t)blockIdx.x * ROWS_PER_CTA + threadIdx.x / 32u;
	const uint64_t row_bytes = (uint64_t)a.kv.head_dim *
				   (a.kv.dtype == KVC_DTYPE_F32 ? 4u : 2u);
	const uint64_t v_delta = a.kv.block_size * row_bytes;
	uint64_t from, to;
	uint8_t *dst;
	const uint8_t *src;

	if (m >= a.n)
		return;
	from = ((const uint64_t *)a.moves)[2u * m];
	to = ((const uint64_t *)a.moves)[2u * m + 1u];
	src = k_row(&a.kv, from, row_bytes);
	dst = k_row(&a.kv, to, row_bytes);
	copy_any(dst, src, row_bytes, lane);
	copy_any(dst + v_delta, src + v_delta, row_bytes, lane);
	if (a.kv.meta && lane == 0) {
		uint8_t *meta = (uint8_t *)a.kv.meta;

		if (!(a.kv.meta & 7u)) {
			*(uint2 *)(meta + 8u * to) =
				*(const uint2 *)(meta + 8u * from);
		} else {
			((uint32_t *)(meta + 8u * to))[0] =
				((const uint32_t *)(meta + 8u * from))[0];
			((uint32_t *)(meta + 8u * to))[1] =
				((const uint32_t *)(meta + 8u * from))[1];
		}
	}
}

/* ------------------------------------------------------------------ */
/* Block copies */

/* Words of a copy a lane keeps in flight: 128 bytes of 16-byte words,
 * 64 of 4-byte ones. */
template <class W> struct copy_unroll {
	static constexpr uint32_t n = sizeof(W) == 16u ? 8u : 16u;
};

/*
 * The items cut into stretches of 32 * U words (4 KiB of 16-byte words),
 * each a warp's: all its loads, then all its stores, so up to 128 bytes a
 * lane are in flight. Warps take stretches grid-strided; the (item, stretch)
 * pair steps by a precomputed quotient and remainder, so the loop itself
 * never divides.
 */
template <class W>
__device__ __forceinline__ void copy_items(const struct kvc_copy_args &a)
{
	constexpr uint32_t U = copy_unroll<W>::n;
	const uint32_t lane = threadIdx.x & 31u;
	const uint64_t words = a.bytes / sizeof(W);
	/* stretches an item: under 2^32 for any item under 16 TiB */
	const uint32_t per = (uint32_t)((words + 32u * U - 1u) / (32u * U));
	const uint32_t warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32u;
	const uint32_t warps = gridDim.x * blockDim.x / 32u;
	const uint32_t step_item = warps / per, step_part = warps % per;
	const uint32_t *pairs_dev = (const uint32_t *)a.pairs_dev;
	uint64_t item = warp / per, k0;
	uint32_t part = warp % per, src, dst, u;
	const W *s;
	W *d, v[U];

	while (item < a.n) {
		if (pairs_dev) {
			src = __ldg(&pairs_dev[2u * item]);
			dst = __ldg(&pairs_dev[2u * item + 1u]);
		} else {
			src = a.pairs[2u * item];
			dst = a.pairs[2u * item + 1u];
		}
		k0 = (uint64_t)part * 32u * U + lane;
		s = (const W *)(a.src_base + (uint64_t)src * a.bytes) + k0;
		d = (W *)(a.dst_base + (uint64_t)dst * a.bytes) + k0;
		if (k0 + 32u * (U - 1u) < words) {
#pragma unroll
			for (u = 0; u < U; u++)
				v[u] = __ldcs(s + 32u * u);
#pragma unroll
			for (u = 0; u < U; u++)
				__stcs(d + 32u * u, v[u]);
		} else {
#pragma unroll
			for (u = 0; u < U; u++)
				if (k0 + 32u * u < words)
					v[u] = __ldcs(s + 32u * u);
#pragma unroll
			for (u = 0; u < U; u++)
				if (k0 + 32u * u < words)
					__stcs(d + 32u * u, v[u]);
		}
		item += step_item;
		part += step_part;
		if (part >= per) {
			part -= per;
			item++;
		}
	}
}

/**
 * kvc_block_copy() - Batched copy of equal-sized items.
 * @a: the copy; 256 threads, grid from the launch logic (any size).
 *
 * Item k copies @a.bytes from src_base + src * bytes to dst_base + dst *
 * bytes, (src, dst) the k-th pair of @a.pairs_dev or of @a.pairs. 16-byte
 * words where the size and both bases are 16-byte aligned, else 4-byte
 * words.
 */
extern "C" __global__ void __launch_bounds__(256)
	kvc_block_copy(const __grid_constant__ struct kvc_copy_args a)
{
	if (!a.n || a.bytes < 4u)
		return;
	if (!((a.bytes | a.src_base | a.dst_base) & 15u))
		copy_items<uint4>(a);
	else
		copy_items<uint32_t>(a);
}
