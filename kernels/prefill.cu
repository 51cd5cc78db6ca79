// SPDX-License-Identifier: MIT
/*
 * Causal prefill attention over the paged cache on tensor cores, and the
 * eviction metric its observed queries leave on the keys (args.h, struct
 * kvc_prefill_args, has the contract; attention_ref.c the reference).
 *
 * A CTA of kvc_prefill_attn takes the 64 queries of a tile of one KV head
 * with every member of the GQA group: rows rho = j * group + g, 64 at a
 * time (a pass), 16 a warp. Keys stream through shared memory a tile at a
 * time (cp.async, the next tile's K landing while this tile's V is
 * used), flash-attention style: S = Q K^T and O += P V with mma.sync,
 * online softmax in f32 in registers.
 *
 * The products take 16-bit operands, so an f32 operand is split into a
 * high and a low 16-bit part, x = hi + lo to 16 or more significant
 * bits, and the parts are multiplied in turn (f32 accumulation): queries
 * and weights always, K and V when stored as f32. The result is then
 * within a few f32 roundings of the reference, not 8 bits of it. f16
 * keys multiply f16 parts, with each query row scaled by a power of two
 * so that its parts stay in f16's range (the scale comes out exactly);
 * bf16 and f32 keys multiply bf16 parts.
 *
 * kvc_prefill_metric recomputes the observed scores one key tile a CTA,
 * with the same fragments in the same order (the same bits), and weighs
 * them with the saved softmax states; kvc_prefill_pool max-pools.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "args.h"
#include "attention_math.h"
#include "prefill_layout.h"

#define WARPS (KVC_PREFILL_THREADS / 32u)
#define PASS_ROWS KVC_PREFILL_PASS_ROWS
#define KEY_NONE (~0ull)
#define LOG2E 1.4426950408889634f

static_assert(PASS_ROWS == 16u * WARPS, "a warp takes 16 rows of a pass");
static_assert(KVC_PREFILL_METRIC_THREADS == KVC_PREFILL_THREADS,
	      "both kernels share the warp layout");

/* ------------------------------------------------------------------ */
/* Types */

/*
 * How a storage type multiplies: @f16: f16 products (else bf16); @lo: K
 * and V carry a low plane (f32 storage); @scaled: query rows scaled by a
 * power of two (f16's range); @elem: bytes of a stored element.
 */
template <int DT> struct dtype_traits;

template <> struct dtype_traits<KVC_DTYPE_F32> {
	static constexpr bool f16 = false, lo = true, scaled = false;
	static constexpr uint32_t elem = 4;
};

template <> struct dtype_traits<KVC_DTYPE_F16> {
	static constexpr bool f16 = true, lo = false, scaled = true;
	static constexpr uint32_t elem = 2;
};

template <> struct dtype_traits<KVC_DTYPE_BF16> {
	static constexpr bool f16 = false, lo = false, scaled = false;
	static constexpr uint32_t elem = 2;
};

/* Keys a tile of kvc_prefill_attn holds: two planes each for f32. */
template <int DT> __host__ __device__ constexpr uint32_t attn_keys(uint32_t hd)
{
	return kvc_prefill_kv_tile(hd) / (dtype_traits<DT>::lo ? 2u : 1u);
}

/* ------------------------------------------------------------------ */
/* Instructions */

__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
	return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void
ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 "
		     "{%0, %1, %2, %3}, [%4];\n"
		     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
		     : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t addr, uint32_t &r0,
					      uint32_t &r1, uint32_t &r2,
					      uint32_t &r3)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 "
		     "{%0, %1, %2, %3}, [%4];\n"
		     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
		     : "r"(addr));
}

/* c += a b on a 16x8x16 tile, f32 accumulators. */
template <bool F16>
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4],
				    uint32_t b0, uint32_t b1)
{
	if (F16)
		asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
		    "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
		    "{%0, %1, %2, %3};\n"
		    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0),
		      "r"(b1));
	else
		asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
		    "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
		    "{%0, %1, %2, %3};\n"
		    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0),
		      "r"(b1));
}

/* 16 bytes from global @src to shared @dst; zeros past @bytes (0 or 16). */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src,
					   uint32_t bytes)
{
	asm volatile(
		"cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst),
		"l"(src), "r"(bytes)
		: "memory");
}

__device__ __forceinline__ void cp_async_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N> __device__ __forceinline__ void cp_async_wait(void)
{
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* 2^x; subnormal results flush to 0, which no weight notices. */
__device__ __forceinline__ float ex2(float x)
{
	float y;

	asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
	return y;
}

/* 2^e for e in [-126, 127], exactly. */
__device__ __forceinline__ float pow2i(int e)
{
	return __uint_as_float((uint32_t)(127 + e) << 23);
}

/* Two floats as a 16-bit pair, @x in the low half (the lower column). */
template <bool F16> __device__ __forceinline__ uint32_t pack2(float x, float y)
{
	uint32_t u;

	if (F16) {
		__half2 h = __floats2half2_rn(x, y);

		memcpy(&u, &h, sizeof(u));
	} else {
		__nv_bfloat162 b = __floats2bfloat162_rn(x, y);

		memcpy(&u, &b, sizeof(u));
	}
	return u;
}

template <bool F16> __device__ __forceinline__ float2 unpack2(uint32_t u)
{
	if (F16) {
		__half2 h;

		memcpy(&h, &u, sizeof(u));
		return __half22float2(h);
	}
	return make_float2(__uint_as_float(u << 16),
			   __uint_as_float(u & 0xffff0000u));
}

/* x = hi + lo: the pair rounded, and what the rounding left, rounded. */
template <bool F16>
__device__ __forceinline__ void split2(float x, float y, uint32_t &hi,
				       uint32_t &lo)
{
	float2 h;

	hi = pack2<F16>(x, y);
	h = unpack2<F16>(hi);
	lo = pack2<F16>(x - h.x, y - h.y);
}

/* Byte offset of 16-byte chunk @c of row @r in a swizzled 16-bit plane of
 * @hd columns: chunk c ^ (r % 8), so ldmatrix's 8 rows hit 8 bank groups. */
__device__ __forceinline__ uint32_t swz(uint32_t r, uint32_t c, uint32_t hd)
{
	return r * hd * 2u + ((c ^ (r & 7u)) << 4);
}

/* ------------------------------------------------------------------ */
/* The cache */

/* Position of slot @t of a head (its slot index without metadata). */
__device__ __forceinline__ int32_t slot_pos(const struct kvc_prefill_args &a,
					    const uint32_t *table, uint32_t t)
{
	uint32_t bs = a.kv.block_size, blk;

	if (!a.kv.meta)
		return (int32_t)t;
	blk = __ldg(&table[kvc_attn_slot_block(t, bs)]);
	return ((const struct kvc_slot_meta *)a.kv
			.meta)[kvc_attn_meta_index(
				       blk, kvc_attn_slot_offset(t, bs), bs)]
		.pos;
}

/* Where slot @t's K row is (bytes from the cache base) and its position;
 * a slot at or past @end is KEY_NONE, seen by no query. */
__device__ __forceinline__ void key_info(const struct kvc_prefill_args &a,
					 const uint32_t *table, uint32_t t,
					 uint32_t end, uint64_t row_bytes,
					 uint64_t *off, int32_t *pos)
{
	uint32_t bs = a.kv.block_size, blk, o;

	if (t >= end) {
		*off = KEY_NONE;
		*pos = INT32_MAX;
		return;
	}
	blk = __ldg(&table[kvc_attn_slot_block(t, bs)]);
	o = kvc_attn_slot_offset(t, bs);
	*off = (uint64_t)blk * a.kv.block_bytes + o * row_bytes;
	*pos = a.kv.meta ? ((const struct kvc_slot_meta *)
				    a.kv.meta)[kvc_attn_meta_index(blk, o, bs)]
				   .pos :
			   (int32_t)t;
}

/*
 * Rows of K or V into shared memory, as 16-bit planes (swizzled, zeros
 * past head_dim and for missing keys). Every thread of the CTA calls
 * issue() with the keys' offsets, then land() before the data is read:
 * 16-bit rows copy as they are with cp.async (land() is empty, the
 * caller waits on the group); f32 rows load into registers at issue()
 * and are split into a high and a low plane at land().
 */
template <int DT, uint32_t HD, uint32_t KEYS> struct tile_loader {
	static constexpr uint32_t chunks = HD / 8u; /* 8 elements each */
	static constexpr uint32_t items = KEYS * chunks / KVC_PREFILL_THREADS;
	static_assert(items * KVC_PREFILL_THREADS == KEYS * chunks,
		      "whole chunks a thread");

	__device__ __forceinline__ void issue(const struct kvc_prefill_args &a,
					      const uint64_t *offs,
					      uint64_t delta, uint32_t dst)
	{
		const uint8_t *base = (const uint8_t *)a.kv.base;
		uint32_t u, it, r, c, ok;
		uint64_t off;

#pragma unroll
		for (u = 0; u < items; u++) {
			it = threadIdx.x + u * KVC_PREFILL_THREADS;
			r = it / chunks;
			c = it % chunks;
			off = offs[r];
			ok = off != KEY_NONE && c * 8u < a.kv.head_dim;
			cp_async16(dst + swz(r, c, HD),
				   ok ? base + off + delta + c * 16u : base,
				   ok ? 16u : 0u);
		}
	}

	__device__ __forceinline__ void land(uint32_t dst)
	{
	}
};

template <uint32_t HD, uint32_t KEYS>
struct tile_loader<KVC_DTYPE_F32, HD, KEYS> {
	static constexpr uint32_t chunks = HD / 8u;
	static constexpr uint32_t items = KEYS * chunks / KVC_PREFILL_THREADS;
	static_assert(items * KVC_PREFILL_THREADS == KEYS * chunks,
		      "whole chunks a thread");
	float4 v[items][2];

	__device__ __forceinline__ void issue(const struct kvc_prefill_args &a,
					      const uint64_t *offs,
					      uint64_t delta, uint32_t dst)
	{
		const uint8_t *base = (const uint8_t *)a.kv.base;
		const float4 *p;
		uint32_t u, it, r, c;
		uint64_t off;

#pragma unroll
		for (u = 0; u < items; u++) {
			it = threadIdx.x + u * KVC_PREFILL_THREADS;
			r = it / chunks;
			c = it % chunks;
			off = offs[r];
			if (off != KEY_NONE && c * 8u < a.kv.head_dim) {
				p = (const float4 *)(base + off + delta +
						     c * 32u);
				v[u][0] = __ldg(p);
				v[u][1] = __ldg(p + 1);
			} else {
				v[u][0] = make_float4(0.f, 0.f, 0.f, 0.f);
				v[u][1] = v[u][0];
			}
		}
	}

	__device__ __forceinline__ void land(uint32_t dst)
	{
		uint32_t u, it, r, c, at;
		uint4 hi, lo;

#pragma unroll
		for (u = 0; u < items; u++) {
			it = threadIdx.x + u * KVC_PREFILL_THREADS;
			r = it / chunks;
			c = it % chunks;
			split2<false>(v[u][0].x, v[u][0].y, hi.x, lo.x);
			split2<false>(v[u][0].z, v[u][0].w, hi.y, lo.y);
			split2<false>(v[u][1].x, v[u][1].y, hi.z, lo.z);
			split2<false>(v[u][1].z, v[u][1].w, hi.w, lo.w);
			at = dst + swz(r, c, HD);
			asm volatile(
				"st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::
					"r"(at),
				"r"(hi.x), "r"(hi.y), "r"(hi.z), "r"(hi.w)
				: "memory");
			asm volatile(
				"st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::
					"r"(at + KEYS * HD * 2u),
				"r"(lo.x), "r"(lo.y), "r"(lo.z), "r"(lo.w)
				: "memory");
		}
	}
};

/* ------------------------------------------------------------------ */
/* Queries */

/*
 * The head's query rows as the kernels number them: rho = j * group + g.
 * @head: row index in @a.q of (query 0, member 0) of the head; @stride:
 * rows from one query to the next (kv_heads * group).
 */
struct qrows {
	uint64_t head;
	uint64_t stride;
	uint32_t group;
};

__device__ __forceinline__ struct qrows
head_rows(const struct kvc_prefill_args &a, uint32_t i)
{
	struct qrows q;
	uint32_t seq = i / a.kv_heads, kvh = i % a.kv_heads;

	q.stride = (uint64_t)a.kv_heads * a.group;
	q.head = (uint64_t)seq * a.n * q.stride + (uint64_t)kvh * a.group;
	q.group = a.group;
	return q;
}

/* Row index in @a.q and @a.out of row @rho. */
__device__ __forceinline__ uint64_t q_row(const struct qrows &q, uint32_t rho)
{
	uint32_t j = rho / q.group;

	return q.head + j * q.stride + (rho - j * q.group);
}

/*
 * Stage one warp's 16 query rows rho0.. in shared memory: row @r0 + r of
 * the two 16-bit planes at @qs (high, then low part), swizzled; rows at or
 * past @end are zeros. f16 rows are scaled by 2^e first, e (in @qexp[r0 +
 * r]) putting the row's largest magnitude in [2^13, 2^14): both parts
 * stay within f16's range and the low part keeps what the high one lost.
 */
template <int DT, uint32_t HD>
__device__ __forceinline__ void
stage_q(const struct kvc_prefill_args &a, const struct qrows &q, uint32_t qs,
	int32_t *qexp, uint32_t r0, uint32_t rho0, uint32_t end)
{
	constexpr bool F16 = dtype_traits<DT>::f16;
	constexpr uint32_t lanes = HD / 8u; /* a row's lanes, a chunk each */
	constexpr uint32_t rows = 32u / lanes; /* rows a step */
	constexpr uint32_t steps = 16u / rows;
	/* loads in flight: all a lane's for small rows, fewer where f32 keys
	 * want registers */
	constexpr uint32_t batch = steps < 8u		? steps :
				   dtype_traits<DT>::lo ? 4u :
							  8u;
	const uint32_t lane = threadIdx.x & 31u, c = lane % lanes;
	const float *src = (const float *)a.q;
	uint32_t s0, s, r, at, hd = a.kv.head_dim;
	float4 v[batch][2];
	uint4 hi, lo;
	int e;

#pragma unroll
	for (s0 = 0; s0 < steps; s0 += batch) {
#pragma unroll
		for (s = 0; s < batch; s++) {
			r = (s0 + s) * rows + lane / lanes;
			if (rho0 + r < end && c * 8u < hd) {
				const float4 *p =
					(const float4 *)(src +
							 q_row(q, rho0 + r) *
								 hd +
							 c * 8u);

				v[s][0] = __ldg(p);
				v[s][1] = __ldg(p + 1);
			} else {
				v[s][0] = make_float4(0.f, 0.f, 0.f, 0.f);
				v[s][1] = v[s][0];
			}
		}
#pragma unroll
		for (s = 0; s < batch; s++) {
			r = r0 + (s0 + s) * rows + lane / lanes;
			e = 0;
			if (dtype_traits<DT>::scaled) {
				float m = fmaxf(fmaxf(fmaxf(fabsf(v[s][0].x),
							    fabsf(v[s][0].y)),
						      fmaxf(fabsf(v[s][0].z),
							    fabsf(v[s][0].w))),
						fmaxf(fmaxf(fabsf(v[s][1].x),
							    fabsf(v[s][1].y)),
						      fmaxf(fabsf(v[s][1].z),
							    fabsf(v[s][1].w))));
				uint32_t o;
				float f;

#pragma unroll
				for (o = lanes / 2u; o; o /= 2u)
					m = fmaxf(m,
						  __shfl_xor_sync(~0u, m, o));
				if (m > 0.0f && m <= 3.0e38f) {
					e = 13 -
					    ((int)(__float_as_uint(m) >> 23) -
					     127);
					e = e > 126 ? 126 :
						      (e < -126 ? -126 : e);
				}
				if (c == 0)
					qexp[r] = e;
				f = pow2i(e);
				v[s][0].x *= f;
				v[s][0].y *= f;
				v[s][0].z *= f;
				v[s][0].w *= f;
				v[s][1].x *= f;
				v[s][1].y *= f;
				v[s][1].z *= f;
				v[s][1].w *= f;
			}
			split2<F16>(v[s][0].x, v[s][0].y, hi.x, lo.x);
			split2<F16>(v[s][0].z, v[s][0].w, hi.y, lo.y);
			split2<F16>(v[s][1].x, v[s][1].y, hi.z, lo.z);
			split2<F16>(v[s][1].z, v[s][1].w, hi.w, lo.w);
			at = qs + swz(r, c, HD);
			asm volatile(
				"st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::
					"r"(at),
				"r"(hi.x), "r"(hi.y), "r"(hi.z), "r"(hi.w)
				: "memory");
			asm volatile(
				"st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::
					"r"(at + PASS_ROWS * HD * 2u),
				"r"(lo.x), "r"(lo.y), "r"(lo.z), "r"(lo.w)
				: "memory");
		}
	}
}

/* The A fragments (high, low) of k-step @ks of a warp's 16 staged rows. */
template <uint32_t HD>
__device__ __forceinline__ void load_qfrag(uint32_t qrow, uint32_t ks,
					   uint32_t (&hi)[4], uint32_t (&lo)[4])
{
	const uint32_t lane = threadIdx.x & 31u;
	uint32_t at = qrow + (((2u * ks + (lane >> 4)) ^ (lane & 7u)) << 4);

	ldsm_x4(at, hi[0], hi[1], hi[2], hi[3]);
	ldsm_x4(at + PASS_ROWS * HD * 2u, lo[0], lo[1], lo[2], lo[3]);
}

/* Shared address of this lane's ldmatrix row among a warp's staged rows. */
__device__ __forceinline__ uint32_t qfrag_row(uint32_t qs, uint32_t r0,
					      uint32_t hd)
{
	const uint32_t lane = threadIdx.x & 31u;

	return qs + (r0 + ((lane >> 3) & 1u) * 8u + (lane & 7u)) * hd * 2u;
}

/*
 * s = Q K^T for a warp's 16 staged rows (at @qrow) and @KEYS keys of the
 * tile at @kt (K planes: high, then low for f32). The fragments come from
 * shared memory each time (registers go to more CTAs instead). Same
 * operations in the same order in both kernels, so the same bits.
 */
template <int DT, uint32_t HD, uint32_t KEYS>
__device__ __forceinline__ void qk(float (&s)[KEYS / 8][4], uint32_t qrow,
				   uint32_t kt, uint32_t hd)
{
	constexpr bool F16 = dtype_traits<DT>::f16;
	const uint32_t lane = threadIdx.x & 31u;
	const uint32_t krow = kt + (((lane >> 4) * 8u + (lane & 7u)) * HD * 2u);
	uint32_t ks, np, b[KEYS / 16][4], bl[KEYS / 16][4], ah[4], al[4], at;

#pragma unroll
	for (np = 0; np < KEYS / 8; np++)
		s[np][0] = s[np][1] = s[np][2] = s[np][3] = 0.0f;
#pragma unroll
	for (ks = 0; ks < HD / 16; ks++) {
		if (ks * 16u >= hd)
			break;
		load_qfrag<HD>(qrow, ks, ah, al);
		/* the products of one accumulator 8 mma apart, not back to back */
#pragma unroll
		for (np = 0; np < KEYS / 16; np++) {
			at = krow + np * 16u * HD * 2u +
			     (((2u * ks + ((lane >> 3) & 1u)) ^ (lane & 7u))
			      << 4);
			ldsm_x4(at, b[np][0], b[np][1], b[np][2], b[np][3]);
			if (dtype_traits<DT>::lo)
				ldsm_x4(at + KEYS * HD * 2u, bl[np][0],
					bl[np][1], bl[np][2], bl[np][3]);
		}
#pragma unroll
		for (np = 0; np < KEYS / 16; np++) {
			mma<F16>(s[2 * np], ah, b[np][0], b[np][1]);
			mma<F16>(s[2 * np + 1], ah, b[np][2], b[np][3]);
		}
#pragma unroll
		for (np = 0; np < KEYS / 16; np++) {
			mma<F16>(s[2 * np], al, b[np][0], b[np][1]);
			mma<F16>(s[2 * np + 1], al, b[np][2], b[np][3]);
		}
		if (dtype_traits<DT>::lo) {
#pragma unroll
			for (np = 0; np < KEYS / 16; np++) {
				mma<F16>(s[2 * np], ah, bl[np][0], bl[np][1]);
				mma<F16>(s[2 * np + 1], ah, bl[np][2],
					 bl[np][3]);
			}
		}
	}
}

/* ------------------------------------------------------------------ */
/* Attention */

/* A lane's two rows (g and g + 8 of its warp's 16). */
struct lane_rows {
	int32_t pos[2]; /* INT32_MIN: no row (sees nothing) */
	uint64_t row[2]; /* row index in q and out */
	uint64_t state[2]; /* index of the row's softmax state */
	bool ok[2];
};

__device__ __forceinline__ struct lane_rows
get_rows(const struct kvc_prefill_args &a, const struct qrows &q,
	 const uint32_t *table, uint32_t len, uint32_t rho0, uint32_t end)
{
	const uint32_t lane = threadIdx.x & 31u, i = blockIdx.y;
	struct lane_rows lr;
	uint32_t h, rho, j;

#pragma unroll
	for (h = 0; h < 2; h++) {
		rho = rho0 + lane / 4u + 8u * h;
		lr.ok[h] = rho < end;
		j = rho / a.group;
		lr.row[h] = q_row(q, rho);
		lr.state[h] =
			((uint64_t)i * a.n + j) * a.group + (rho - j * a.group);
		lr.pos[h] = lr.ok[h] ? slot_pos(a, table, len - a.n + j) :
				       INT32_MIN;
	}
	return lr;
}

/* score = acc * fac of the lane's row @h: the scale, and 2^-e for f16. */
template <int DT>
__device__ __forceinline__ float row_fac(const struct kvc_prefill_args &a,
					 const int32_t *qexp, uint32_t r0,
					 uint32_t h)
{
	const uint32_t lane = threadIdx.x & 31u;

	if (!dtype_traits<DT>::scaled)
		return a.scale;
	return a.scale * pow2i(-qexp[r0 + lane / 4u + 8u * h]);
}

__device__ __forceinline__ int32_t warp_max(int32_t x)
{
	uint32_t o;

	for (o = 16; o; o /= 2)
		x = max(x, __shfl_xor_sync(~0u, x, o));
	return x;
}

__device__ __forceinline__ int32_t warp_min(int32_t x)
{
	uint32_t o;

	for (o = 16; o; o /= 2)
		x = min(x, __shfl_xor_sync(~0u, x, o));
	return x;
}

template <int DT, uint32_t HD>
__device__ __forceinline__ void prefill_attn(const struct kvc_prefill_args &a)
{
	using T = dtype_traits<DT>;
	constexpr uint32_t KEYS = attn_keys<DT>(HD);
	constexpr uint32_t KT = kvc_prefill_kv_tile(HD);
	constexpr uint32_t QT = kvc_prefill_q_tile(HD);
	constexpr uint32_t KV = 4u * KT * HD; /* K and V tiles, bytes */
	constexpr uint32_t QB = 4u * PASS_ROWS * HD; /* staged rows, bytes */
	constexpr uint32_t AREA = KV + QB;
	static_assert(AREA + 2u * KT * 12u + 4u * PASS_ROWS + 32u ==
			      kvc_prefill_attn_smem(1, HD),
		      "layout as prefill_layout.h says");
	extern __shared__ __align__(16) uint8_t smem[];
	const uint32_t kbuf = smem_addr(smem), vbuf = kbuf + KV / 2u;
	const uint32_t qbuf = kbuf + KV;
	uint64_t(*koff)[KT] = (uint64_t(*)[KT])(smem + AREA);
	int32_t(*kpos)[KT] = (int32_t(*)[KT])(smem + AREA + 2u * KT * 8u);
	int32_t *qexp = (int32_t *)(smem + AREA + 2u * KT * 12u);
	int32_t *red = qexp + PASS_ROWS;

	const uint32_t i = blockIdx.y, tid = threadIdx.x, lane = tid & 31u,
		       w = tid >> 5, t4 = lane & 3u;
	const uint32_t n = a.n, hd = a.kv.head_dim;
	const uint32_t len = ((const uint32_t *)a.lens)[i];
	/* the last queries see the most keys: start them first */
	const uint32_t j0 = (gridDim.x - 1u - blockIdx.x) * QT;
	const uint32_t *table =
		(const uint32_t *)a.tables + (uint64_t)i * a.table_stride;
	const uint64_t row_bytes = (uint64_t)hd * T::elem;
	const uint64_t vdelta = (uint64_t)a.kv.block_size * row_bytes;
	const struct qrows q = head_rows(a, i);
	float *ws = (float *)a.ws;
	const struct kvc_prefill_ws wl = kvc_prefill_ws_layout(
		a.nr_heads, a.group, n, a.max_len, a.metric, a.pool_kernel);
	tile_loader<DT, HD, KEYS> ldk, ldv;
	uint32_t rho_pass, end, qrow, kend, ntiles, it, b, h, nt, kk, dp, x, y;
	float s[KEYS / 8][4], o[HD / 8][4], m[2], l[2];

	if (!n || j0 >= n || len < n || hd > HD || !a.group)
		return;
	end = min(j0 + QT, n) * a.group;
	qrow = qfrag_row(qbuf, w * 16u, HD);
	for (rho_pass = j0 * a.group; rho_pass < end; rho_pass += PASS_ROWS) {
		__syncthreads(); /* the last pass is done with shared memory */
		stage_q<DT, HD>(a, q, qbuf, qexp, w * 16u, rho_pass + w * 16u,
				end);
		__syncwarp();
		const struct lane_rows lr =
			get_rows(a, q, table, len, rho_pass + w * 16u, end);
		const float fac[2] = { row_fac<DT>(a, qexp, w * 16u, 0),
				       row_fac<DT>(a, qexp, w * 16u, 1) };

		/*
		 * The keys any row of the pass sees end at the pass's last
		 * query, or later where a later slot holds an earlier
		 * position (positions need not follow slots).
		 */
		int32_t qmax = warp_max(max(lr.pos[0], lr.pos[1]));
		uint32_t last = (min(rho_pass + PASS_ROWS, end) - 1u) / a.group;

		if (lane == 0)
			red[w] = qmax;
		__syncthreads();
		qmax = max(max(red[0], red[1]), max(red[2], red[3]));
		kend = len - n + last + 1u;
		if (a.kv.meta) {
			int32_t found = (int32_t)kend;

#pragma unroll 4
			for (it = kend + tid; it < len;
			     it += KVC_PREFILL_THREADS)
				if (slot_pos(a, table, it) <= qmax)
					found = (int32_t)it + 1;
			found = warp_max(found);
			if (lane == 0)
				red[4 + w] = found;
		}
		if (tid < KEYS)
			key_info(a, table, tid, len, row_bytes, &koff[0][tid],
				 &kpos[0][tid]);
		__syncthreads();
		if (a.kv.meta)
			kend = (uint32_t)max(max(red[4], red[5]),
					     max(red[6], red[7]));
		ntiles = (kend + KEYS - 1u) / KEYS;

#pragma unroll
		for (h = 0; h < 2; h++) {
			m[h] = -INFINITY;
			l[h] = 0.0f;
		}
#pragma unroll
		for (nt = 0; nt < HD / 8; nt++)
			o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;

		ldk.issue(a, koff[0], 0, kbuf);
		cp_async_commit();
		for (it = 0; it < ntiles; it++) {
			b = it & 1u;
			ldv.issue(a, koff[b], vdelta, vbuf);
			cp_async_commit();
			if (it + 1u < ntiles && tid < KEYS)
				key_info(a, table, (it + 1u) * KEYS + tid, kend,
					 row_bytes, &koff[b ^ 1u][tid],
					 &kpos[b ^ 1u][tid]);
			ldk.land(kbuf);
			cp_async_wait<1>();
			__syncthreads(); /* K of this tile is in */

			qk<DT, HD, KEYS>(s, qrow, kbuf, hd);

			/* online softmax, rows g and g + 8 of the warp */
#pragma unroll
			for (h = 0; h < 2; h++) {
				float mx = -INFINITY, mu, alpha, ml;

#pragma unroll
				for (nt = 0; nt < KEYS / 8; nt++) {
					int2 kp = *(
						const int2 *)&kpos[b][nt * 8u +
								      2u * t4];
					float v0 = s[nt][2 * h] * fac[h];
					float v1 = s[nt][2 * h + 1] * fac[h];

					v0 = kp.x > lr.pos[h] ? -INFINITY : v0;
					v1 = kp.y > lr.pos[h] ? -INFINITY : v1;
					s[nt][2 * h] = v0;
					s[nt][2 * h + 1] = v1;
					mx = fmaxf(mx, fmaxf(v0, v1));
				}
				mx = fmaxf(mx, __shfl_xor_sync(~0u, mx, 1));
				mx = fmaxf(mx, __shfl_xor_sync(~0u, mx, 2));
				mx = fmaxf(m[h], mx);
				mu = mx == -INFINITY ? 0.0f : mx;
				alpha = ex2((m[h] - mu) * LOG2E);
				m[h] = mx;
				ml = mu * LOG2E;
				l[h] *= alpha;
				/* the maximum settles: most tiles rescale nothing */
				if (__any_sync(~0u, alpha != 1.0f)) {
#pragma unroll
					for (nt = 0; nt < HD / 8; nt++) {
						o[nt][2 * h] *= alpha;
						o[nt][2 * h + 1] *= alpha;
					}
				}
#pragma unroll
				for (nt = 0; nt < KEYS / 8; nt++) {
					float p0 = ex2(
						fmaf(s[nt][2 * h], LOG2E, -ml));
					float p1 = ex2(fmaf(s[nt][2 * h + 1],
							    LOG2E, -ml));

					l[h] += p0 + p1;
					s[nt][2 * h] = p0;
					s[nt][2 * h + 1] = p1;
				}
			}

			__syncthreads(); /* K is free, the next offsets are in */
			if (it + 1u < ntiles) {
				ldk.issue(a, koff[b ^ 1u], 0, kbuf);
				cp_async_commit();
			}
			ldv.land(vbuf);
			if (it + 1u < ntiles)
				cp_async_wait<1>();
			else
				cp_async_wait<0>();
			__syncthreads(); /* V of this tile is in */

			/* o += P V, P split in two 16-bit parts */
#pragma unroll
			for (kk = 0; kk < KEYS / 16; kk++) {
				uint32_t ph[4], pl[4];

				split2<T::f16>(s[2 * kk][0], s[2 * kk][1],
					       ph[0], pl[0]);
				split2<T::f16>(s[2 * kk][2], s[2 * kk][3],
					       ph[1], pl[1]);
				split2<T::f16>(s[2 * kk + 1][0],
					       s[2 * kk + 1][1], ph[2], pl[2]);
				split2<T::f16>(s[2 * kk + 1][2],
					       s[2 * kk + 1][3], ph[3], pl[3]);
				/* two 16-column pairs at a time: 4 mma between the
				 * products of one accumulator */
#pragma unroll
				for (dp = 0; dp < HD / 16; dp += 2) {
					uint32_t bv[2][4], bl[2][4], at;

					if (dp * 16u >= hd)
						break;
					x = kk * 16u + ((lane >> 3) & 1u) * 8u +
					    (lane & 7u);
#pragma unroll
					for (y = 0; y < 2; y++) {
						at = vbuf +
						     swz(x,
							 2u * (dp + y) +
								 (lane >> 4),
							 HD);
						ldsm_x4_trans(
							at, bv[y][0], bv[y][1],
							bv[y][2], bv[y][3]);
						if (T::lo)
							ldsm_x4_trans(
								at + KEYS * HD *
										2u,
								bl[y][0],
								bl[y][1],
								bl[y][2],
								bl[y][3]);
					}
#pragma unroll
					for (y = 0; y < 2; y++) {
						mma<T::f16>(o[2 * (dp + y)], ph,
							    bv[y][0], bv[y][1]);
						mma<T::f16>(o[2 * (dp + y) + 1],
							    ph, bv[y][2],
							    bv[y][3]);
					}
#pragma unroll
					for (y = 0; y < 2; y++) {
						mma<T::f16>(o[2 * (dp + y)], pl,
							    bv[y][0], bv[y][1]);
						mma<T::f16>(o[2 * (dp + y) + 1],
							    pl, bv[y][2],
							    bv[y][3]);
					}
					if (T::lo) {
#pragma unroll
						for (y = 0; y < 2; y++) {
							mma<T::f16>(
								o[2 * (dp + y)],
								ph, bl[y][0],
								bl[y][1]);
							mma<T::f16>(
								o[2 * (dp + y) +
								  1],
								ph, bl[y][2],
								bl[y][3]);
						}
					}
				}
			}
			__syncthreads(); /* V is free for the next tile */
		}

#pragma unroll
		for (h = 0; h < 2; h++) {
			float inv;

			l[h] += __shfl_xor_sync(~0u, l[h], 1);
			l[h] += __shfl_xor_sync(~0u, l[h], 2);
			inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
			if (!lr.ok[h])
				continue;
			float *dst = (float *)a.out + lr.row[h] * hd + 2u * t4;

#pragma unroll
			for (nt = 0; nt < HD / 8; nt++)
				if (nt * 8u < hd)
					*(float2 *)(dst + nt * 8u) =
						make_float2(o[nt][2 * h] * inv,
							    o[nt][2 * h + 1] *
								    inv);
			if (a.metric && t4 == 0) {
				ws[wl.max + lr.state[h]] = m[h];
				ws[wl.sum + lr.state[h]] = l[h];
			}
		}
	}
}

/* ------------------------------------------------------------------ */
/* Metric */

template <int DT, uint32_t HD>
__device__ __forceinline__ void prefill_metric(const struct kvc_prefill_args &a)
{
	using T = dtype_traits<DT>;
	constexpr uint32_t KT = kvc_prefill_k_tile(HD);
	constexpr uint32_t KEYS = T::lo ? KT / 2u : KT;
	constexpr uint32_t KB = 4u * KT * HD; /* two 16-bit planes */
	constexpr uint32_t QB = 4u * PASS_ROWS * HD;
	static_assert(KB + QB + KT * 12u + 4u * PASS_ROWS + 16u * KT + 32u ==
			      kvc_prefill_metric_smem(1, HD),
		      "layout as prefill_layout.h says");
	extern __shared__ __align__(16) uint8_t smem[];
	const uint32_t kbuf = smem_addr(smem), qbuf = kbuf + KB;
	uint64_t *koff = (uint64_t *)(smem + KB + QB);
	int32_t *kpos = (int32_t *)(smem + KB + QB + KT * 8u);
	int32_t *qexp = (int32_t *)(smem + KB + QB + KT * 12u);
	float(*sum)[KT] = (float(*)[KT])(qexp + PASS_ROWS);
	int32_t *red = (int32_t *)(sum + WARPS);

	const uint32_t i = blockIdx.y, tid = threadIdx.x, lane = tid & 31u,
		       w = tid >> 5, t4 = lane & 3u;
	const uint32_t n = a.n, hd = a.kv.head_dim;
	const uint32_t len = ((const uint32_t *)a.lens)[i];
	const uint32_t t0 = blockIdx.x * KT;
	const uint32_t *table =
		(const uint32_t *)a.tables + (uint64_t)i * a.table_stride;
	const uint64_t row_bytes = (uint64_t)hd * T::elem;
	const struct qrows q = head_rows(a, i);
	const float *ws = (const float *)a.ws;
	const struct kvc_prefill_ws wl = kvc_prefill_ws_layout(
		a.nr_heads, a.group, n, a.max_len, a.metric, a.pool_kernel);
	const enum kvc_metric_kind kind = (enum kvc_metric_kind)a.metric;
	tile_loader<DT, HD, KEYS> ld;
	uint32_t rho, end, qrow, first, h, nt, e, u;
	float s[KT / 8][4], acc[KT / 8][2];
	int32_t kmin, qmax;
	bool sq, any;

	if (!a.metric || !a.kv.meta || !n || len < n || t0 >= len || hd > HD ||
	    !a.group)
		return;
	first = kvc_attn_first_observer(n, a.window);
	end = n * a.group;
	/* kvc_metric_term(): the weight, its square, or nothing */
	sq = kind == KVC_METRIC_L2;
	any = sq || kind == KVC_METRIC_L1 || kind == KVC_METRIC_AVG;
	qrow = qfrag_row(qbuf, w * 16u, HD);

	/* the key tile, in the two halves of KT for f32 */
	for (u = 0; u < KT / KEYS; u++) {
		int32_t p = INT32_MAX;

		if (tid < KEYS) {
			key_info(a, table, t0 + u * KEYS + tid, len, row_bytes,
				 &koff[u * KEYS + tid], &kpos[u * KEYS + tid]);
			p = kpos[u * KEYS + tid];
		}
		p = warp_min(p);
		if (lane == 0 && u == 0)
			red[w] = p;
		if (lane == 0 && u)
			red[w] = min(red[w], p);
	}
	__syncthreads();
	kmin = min(min(red[0], red[1]), min(red[2], red[3]));
#pragma unroll
	for (u = 0; u < KT / KEYS; u++) {
		ld.issue(a, koff + u * KEYS, 0, kbuf + u * KB / 2u);
		ld.land(kbuf + u * KB / 2u);
	}
	cp_async_commit();
	cp_async_wait<0>();
	__syncthreads();

#pragma unroll
	for (nt = 0; nt < KT / 8; nt++)
		acc[nt][0] = acc[nt][1] = 0.0f;
	rho = first * a.group + w * 16u;
	struct lane_rows next = get_rows(a, q, table, len, rho, end);

	for (; rho < end && any; rho += PASS_ROWS) {
		/* these rows' positions came with the last rows' work */
		const struct lane_rows lr = next;
		float ml[2], inv[2], fac[2];
		int32_t lim[2];
		bool obs[2];

		if (rho + PASS_ROWS < end)
			next = get_rows(a, q, table, len, rho + PASS_ROWS, end);
		/* rows that observe none of the tile's keys add nothing */
		qmax = warp_max(max(lr.pos[0], lr.pos[1]));
		if ((int64_t)qmax - (int64_t)a.buffer < (int64_t)kmin)
			continue;
		__syncwarp(); /* the last rows' fragments are read */
		stage_q<DT, HD>(a, q, qbuf, qexp, w * 16u, rho, end);
		__syncwarp();

#pragma unroll
		for (h = 0; h < 2; h++) {
			float mx = -INFINITY, sm = 0.0f;
			/* observed: k_pos <= q_pos - buffer (buffer >= 0) */
			int64_t l = (int64_t)lr.pos[h] - (int64_t)a.buffer;

			if (lr.ok[h]) {
				mx = ws[wl.max + lr.state[h]];
				sm = ws[wl.sum + lr.state[h]];
			}
			ml[h] = (mx == -INFINITY ? 0.0f : mx) * LOG2E;
			inv[h] = sm > 0.0f ? 1.0f / sm : 0.0f;
			fac[h] = row_fac<DT>(a, qexp, w * 16u, h);
			obs[h] = lr.ok[h] && l >= INT32_MIN;
			lim[h] = obs[h] ? (int32_t)l : INT32_MIN;
		}
#pragma unroll
		for (u = 0; u < KT / KEYS; u++) {
			float su[KEYS / 8][4];

			qk<DT, HD, KEYS>(su, qrow, kbuf + u * KB / 2u, hd);
#pragma unroll
			for (nt = 0; nt < KEYS / 8; nt++)
#pragma unroll
				for (e = 0; e < 4; e++)
					s[u * KEYS / 8 + nt][e] = su[nt][e];
		}
#pragma unroll
		for (nt = 0; nt < KT / 8; nt++) {
			int2 kp = *(const int2 *)&kpos[nt * 8u + 2u * t4];

#pragma unroll
			for (h = 0; h < 2; h++) {
#pragma unroll
				for (e = 0; e < 2; e++) {
					/* kvc_softmax_weight(), then its term */
					float p = ex2(fmaf(s[nt][2 * h + e] *
								   fac[h],
							   LOG2E, -ml[h])) *
						  inv[h];

					p *= sq ? p : 1.0f;
					if (obs[h] &&
					    (e ? kp.y : kp.x) <= lim[h])
						acc[nt][e] += p;
				}
			}
		}
	}

	/* the lanes of a column, then the warps, in a fixed order */
#pragma unroll
	for (nt = 0; nt < KT / 8; nt++)
#pragma unroll
		for (e = 0; e < 2; e++) {
			acc[nt][e] += __shfl_xor_sync(~0u, acc[nt][e], 4);
			acc[nt][e] += __shfl_xor_sync(~0u, acc[nt][e], 8);
			acc[nt][e] += __shfl_xor_sync(~0u, acc[nt][e], 16);
			if (lane < 4)
				sum[w][nt * 8u + 2u * t4 + e] = acc[nt][e];
		}
	__syncthreads();
	if (tid < KT && t0 + tid < len) {
		float v = (sum[0][tid] + sum[1][tid]) +
			  (sum[2][tid] + sum[3][tid]);
		uint32_t t = t0 + tid, bs = a.kv.block_size;

		if (a.pool_kernel > 1) {
			((float *)a.ws)[wl.unpooled + (uint64_t)i * a.max_len +
					t] = v;
		} else {
			uint32_t blk =
				__ldg(&table[kvc_attn_slot_block(t, bs)]);

			((struct kvc_slot_meta *)a.kv.meta)
				[kvc_attn_meta_index(
					 blk, kvc_attn_slot_offset(t, bs), bs)]
					.metric += v;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Entry points */

/**
 * kvc_prefill_attn_<dtype>_<hd>() - Causal prefill attention of a batch.
 * @a: the prefill; grid (ceil(n / kvc_prefill_q_tile(hd)), nr_heads),
 *     %KVC_PREFILL_THREADS threads, kvc_prefill_attn_smem() bytes.
 *
 * CTA (x, i) takes 64 queries of head i (the last tile first) with all
 * their group members, and writes their outputs; with a metric, also
 * each row's final softmax state (maximum of scale * q.k, and the sum of
 * exp(score - maximum)) at ws.max and ws.sum [(i * n + j) * group + g].
 *
 * kvc_prefill_metric_<dtype>_<hd>() - The metric of the observed queries.
 * @a: the same prefill, after the attention kernel; grid (ceil(max_len /
 *     kvc_prefill_k_tile(hd)), nr_heads), %KVC_PREFILL_METRIC_THREADS
 *     threads, kvc_prefill_metric_smem() bytes.
 *
 * CTA (x, i) sums, for each key t of its tile of head i (t < lens[i]),
 * kvc_metric_term() of the weight of every observed (query, member) pair
 * (query j >= kvc_attn_first_observer(), kvc_attn_observed() positions),
 * and adds the sum to the slot's metric, or without pooling writes it to
 * ws.unpooled[i * max_len + t] for kvc_prefill_pool().
 */

/*
 * CTAs of kvc_prefill_attn an SM keeps: three where the registers allow
 * it, two for f32 keys (which hold a tile in registers between load and
 * split) and for head_dim 256 (whose accumulators take 128 registers).
 */
#define ATTN_CTAS(dt, hd) ((dt) == KVC_DTYPE_F32 || (hd) > 128 ? 2 : 3)

#define PREFILL_KERNELS(name, dt, hd)                                      \
	extern "C" __global__ void __launch_bounds__(KVC_PREFILL_THREADS,  \
						     ATTN_CTAS(dt, hd))    \
		kvc_prefill_attn_##name##_##hd(                            \
			const __grid_constant__ struct kvc_prefill_args a) \
	{                                                                  \
		prefill_attn<dt, hd>(a);                                   \
	}                                                                  \
	extern "C" __global__ void __launch_bounds__(                      \
		KVC_PREFILL_METRIC_THREADS, 3)                             \
		kvc_prefill_metric_##name##_##hd(                          \
			const __grid_constant__ struct kvc_prefill_args a) \
	{                                                                  \
		prefill_metric<dt, hd>(a);                                 \
	}

PREFILL_KERNELS(f32, KVC_DTYPE_F32, 64)
PREFILL_KERNELS(f32, KVC_DTYPE_F32, 128)
PREFILL_KERNELS(f32, KVC_DTYPE_F32, 256)
PREFILL_KERNELS(f16, KVC_DTYPE_F16, 64)
PREFILL_KERNELS(f16, KVC_DTYPE_F16, 128)
PREFILL_KERNELS(f16, KVC_DTYPE_F16, 256)
PREFILL_KERNELS(bf16, KVC_DTYPE_BF16, 64)
PREFILL_KERNELS(bf16, KVC_DTYPE_BF16, 128)
PREFILL_KERNELS(bf16, KVC_DTYPE_BF16, 256)

/**
 * kvc_prefill_pool() - Add the max-pool of the unpooled metric to the slots.
 * @a: the prefill; grid (ceil(max_len / 256), nr_heads), 256 threads.
 *
 * Thread t of head i adds to slot t's metric the largest unpooled value of
 * the keys kvc_attn_pool_range() puts around it, as the reference does.
 */
extern "C" __global__ void __launch_bounds__(KVC_PREFILL_POOL_THREADS)
	kvc_prefill_pool(const __grid_constant__ struct kvc_prefill_args a)
{
	const uint32_t i = blockIdx.y,
		       t = blockIdx.x * KVC_PREFILL_POOL_THREADS + threadIdx.x;
	const uint32_t len = ((const uint32_t *)a.lens)[i],
		       bs = a.kv.block_size;
	const struct kvc_prefill_ws wl = kvc_prefill_ws_layout(
		a.nr_heads, a.group, a.n, a.max_len, a.metric, a.pool_kernel);
	const float *u;
	uint32_t lo, hi, k, blk;
	float mx;

	if (!a.metric || !a.kv.meta || a.pool_kernel <= 1 || !a.n ||
	    len < a.n || t >= len)
		return;
	u = (const float *)a.ws + wl.unpooled + (uint64_t)i * a.max_len;
	kvc_attn_pool_range(t, len, a.pool_kernel, &lo, &hi);
	mx = u[lo];
	for (k = lo + 1; k < hi; k++)
		mx = u[k] > mx ? u[k] : mx;
	blk = ((const uint32_t *)a.tables)[(uint64_t)i * a.table_stride +
					   kvc_attn_slot_block(t, bs)];
	((struct kvc_slot_meta *)
		 a.kv.meta)[kvc_attn_meta_index(
				    blk, kvc_attn_slot_offset(t, bs), bs)]
		.metric += mx;
}
