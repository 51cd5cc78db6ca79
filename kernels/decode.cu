// SPDX-License-Identifier: MIT
/*
 * Paged decode attention: one query per query head against every KV its
 * (layer, KV head) holds, split-K over partitions of the keys, then a
 * reduce that merges the partitions (and adds the eviction metric).
 *
 * Partition kernel: one pass, online softmax (no scores of the whole
 * partition are kept, so shared memory does not grow with it). A CTA
 * streams its keys through a ring of KVC_DECODE_STAGES stages in shared
 * memory, each a tile of K rows and their V rows (16 KiB), filled by
 * cp.async: while one tile is used the next two are in flight (32 KiB a
 * CTA) without holding registers, and every K and V byte is read from
 * memory once, for the whole GQA group. Copies are coalesced (consecutive
 * threads take consecutive 16-byte vectors of a row); their block ids are
 * read a tile ahead, so no table lookup stalls a copy. One barrier a
 * stage hands it from the copies to the compute and back.
 *
 * Two ways to compute a stage, chosen by storage type and group:
 *
 * FP32 (f32 storage; 16-bit storage with groups of up to 4 and head_dim
 * up to 128). A row of the variant is CH 16-byte vectors; LPR = min(CH,
 * 32) consecutive lanes take a row (VPL vectors each), so a warp reads
 * RPW = 32 / LPR rows at once, consecutive 16 bytes from shared memory
 * (no bank conflicts). A warp scores a sub-tile (a quarter of the stage),
 * sums each row's partial dot products over its LPR lanes by a
 * reduce-scatter (each exchange halves the values a lane holds: far fewer
 * shuffles than a butterfly a value), updates its softmax state, and adds
 * the sub-tile's weighted V rows into accumulators in registers. The
 * group is cut in slices of GW = 4 query heads: a warp keeps one slice's
 * queries (f32, the elements of its own vectors) and accumulators in
 * registers, so every row read serves four heads; groups up to 4 (smaller
 * ones padded with zero queries) have the four warps split the keys, up
 * to 8 two slices, up to 16 four. At the end the warps' states are merged.
 *
 * Tensor cores (16-bit storage, groups over 4 or head_dim 256): FP32
 * issue, two multiply-adds an element and query head, would bound those
 * well below memory speed, so mma.m16n8k16 does the products: A is the
 * group (16 rows), B the K rows (scores) or V rows (outputs), read by
 * ldmatrix from a stage stored with its vectors swizzled against bank
 * conflicts. Queries and weights are split hi + lo in the storage type,
 * so the products carry 22 (f16) or 16 (bf16) bits, added in f32: as
 * exact as the reference needs. See part_mma().
 *
 * Groups up to 4 stay on FP32 even for 16-bit storage: there the memory
 * is the bound, and the FP32 form needs fewer barriers a stage.
 *
 * exp() is kvc_attn_exp(), the reference's own rather than __expf(): a
 * handful a key and query head against a row of multiply-adds, so it
 * costs little, and the weights, and so the metric, stay within rounding
 * of the reference.
 */
#include <math.h>
#include <stdint.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "args.h"
#include "attention_math.h"
#include "decode_layout.h"

#define FULL_MASK 0xffffffffu
#define NR_WARPS ((int)(KVC_DECODE_THREADS / 32u))

/* ------------------------------------------------------------------ */
/* Shapes */

/**
 * struct rows_geom - How the lanes of a warp cover K and V rows.
 * @es: bytes per element.
 * @epv: elements per 16-byte vector.
 * @ch: vectors per row of the head_dim variant.
 * @lpr: lanes per row.
 * @vpl: vectors per lane and row.
 * @rpw: rows a warp covers with one load.
 * @el: elements per lane and row.
 * @uw: rows a lane scores per sub-tile.
 * @ts: keys of a sub-tile (a warp's share of a stage).
 * @tt: keys of a stage.
 */
template <int DT, int HD> struct rows_geom {
	static constexpr int es = DT == KVC_DTYPE_F32 ? 4 : 2;
	static constexpr int epv = 16 / es;
	static constexpr int ch = HD * es / 16;
	static constexpr int lpr = ch < 32 ? ch : 32;
	static constexpr int vpl = ch / lpr;
	static constexpr int rpw = 32 / lpr;
	static constexpr int el = vpl * epv;
	static constexpr int uw = 4 / vpl;
	static constexpr int ts = uw * rpw;
	static constexpr int tt = NR_WARPS * ts;
	static_assert(2 * tt * ch * 16 == KVC_DECODE_STAGE_BYTES,
		      "a stage is a tile of K and V rows");
};

/* Group members a warp takes: the group is split in slices of GW. */
#define GW ((int)KVC_DECODE_SLICE)
#define WARP_SCRATCH ((int)KVC_DECODE_WARP_SCRATCH)

/* ------------------------------------------------------------------ */
/* Helpers */

/*
 * n / d for n < 2^31 by a multiply-high (d >= 1): the magic number is
 * worked out once per thread.
 */
struct fast_div {
	uint32_t d;
	uint32_t mul;
	uint32_t shift;
};

static __device__ __forceinline__ struct fast_div fast_div_init(uint32_t d)
{
	struct fast_div f;
	uint32_t s = 0;

	while ((1ull << s) < d)
		s++;
	f.d = d;
	f.shift = s;
	f.mul = (uint32_t)(((1ull << 32) * ((1ull << s) - d)) / d) + 1u;
	return f;
}

static __device__ __forceinline__ uint32_t fast_div_do(const struct fast_div &f,
						       uint32_t n)
{
	return (__umulhi(n, f.mul) + n) >> f.shift;
}

/*
 * Copy 16 bytes to shared memory asynchronously, through L2 only (K and
 * V are read once); @bytes 0 reads nothing and stores zeros.
 */
static __device__ __forceinline__ void cp_async16(void *dst, const void *src,
						  uint32_t bytes)
{
	uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);

	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
		     :
		     : "r"(d), "l"(src), "r"(bytes)
		     : "memory");
}

static __device__ __forceinline__ void cp_async_commit(void)
{
	asm volatile("cp.async.commit_group;" ::: "memory");
}

/* Wait until at most @N of this thread's copy groups are in flight. */
template <int N> static __device__ __forceinline__ void cp_async_wait(void)
{
	asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* A 16-byte vector of the storage type as f32 (exact). */
template <int DT>
static __device__ __forceinline__ void to_f32(float *dst, uint4 v)
{
	const uint32_t w[4] = { v.x, v.y, v.z, v.w };

	if constexpr (DT == KVC_DTYPE_F32) {
#pragma unroll
		for (int j = 0; j < 4; j++)
			dst[j] = __uint_as_float(w[j]);
	} else if constexpr (DT == KVC_DTYPE_F16) {
#pragma unroll
		for (int j = 0; j < 4; j++) {
			__half2 h = *reinterpret_cast<const __half2 *>(&w[j]);
			float2 f = __half22float2(h);

			dst[2 * j] = f.x;
			dst[2 * j + 1] = f.y;
		}
	} else {
#pragma unroll
		for (int j = 0; j < 4; j++) {
			dst[2 * j] = __uint_as_float(w[j] << 16);
			dst[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
		}
	}
}

/*
 * Sum @x over the lanes of a row (xor masks below 2 * M) keeping only a
 * share per lane: at each step a lane sends the half it gives up and adds
 * the partner's copy of the half it keeps (upper half where its lane bit
 * is set). With N values and LPR lanes, lane l ends with the sums of
 * entries [l * N / LPR, ... + max(N / LPR, 1)) in x[0..); once a lane is
 * down to one value the remaining steps are a plain butterfly.
 */
template <int N, int M, int NN>
static __device__ __forceinline__ void reduce_scatter(float (&x)[NN],
						      uint32_t lane)
{
	if constexpr (M >= 1) {
		if constexpr (N == 1) {
			x[0] += __shfl_xor_sync(FULL_MASK, x[0], M);
			reduce_scatter<1, M / 2>(x, lane);
		} else {
			const bool up = lane & M;
#pragma unroll
			for (int j = 0; j < N / 2; j++) {
				float lo = x[j], hi = x[j + N / 2];
				float send = up ? lo : hi;

				x[j] = (up ? hi : lo) +
				       __shfl_xor_sync(FULL_MASK, send, M);
			}
			reduce_scatter<N / 2, M / 2>(x, lane);
		}
	}
}

/* exp(@old - @max), the factor of what was weighted against @old. */
static __device__ __forceinline__ float rescale_factor(float old, float max)
{
	if (old == max)
		return 1.0f;
	return old == -INFINITY ? 0.0f : kvc_attn_exp(old - max);
}

/* ------------------------------------------------------------------ */
/* Partition kernel */

/**
 * struct part_ctx - A partition as every thread of its CTA sees it.
 * @k: the cache: the K row of (block b, offset o) is at
 *     k + b * block_bytes + o * row_bytes, its V row @v_off further.
 * @block_bytes: bytes per block.
 * @v_off: bytes from a K row to its V row.
 * @row_bytes: bytes per row.
 * @nch: vectors of a row that hold data (the rest is the variant's pad).
 * @n: keys of the partition.
 * @bs: block_size, as a fast divisor.
 * @tab: the partition's block ids (its slice of the head's table).
 */
struct part_ctx {
	const uint8_t *k;
	uint64_t block_bytes;
	uint64_t v_off;
	uint32_t row_bytes;
	uint32_t nch;
	uint32_t n;
	struct fast_div bs;
	const uint32_t *tab;
};

/* Vectors of K (and of V) a thread copies per tile. */
#define COPIES (KVC_DECODE_STAGE_BYTES / 32u / KVC_DECODE_THREADS)

/*
 * The block ids of the rows a thread copies for tile @j, read a tile
 * ahead of the copies that need them, so their latency is hidden.
 */
template <int TT, int CH>
static __device__ __forceinline__ void fetch_ids(uint32_t (&ids)[COPIES],
						 const struct part_ctx &c,
						 uint32_t j, uint32_t tid)
{
#pragma unroll
	for (int k = 0; k < (int)COPIES; k++) {
		const uint32_t t = j * TT + (k * KVC_DECODE_THREADS + tid) / CH;

		ids[k] = t < c.n ? __ldg(c.tab + fast_div_do(c.bs, t)) : 0;
	}
}

/*
 * Queue the copy of tile @j (keys [j * TT, j * TT + TT) of the partition,
 * in blocks @ids) into stage @dst: K rows, then V rows, [TT][CH] vectors
 * each. A thread copies vectors tid, tid + 128, ..., so a warp's copies
 * are whole rows, coalesced. Vectors past the row's data or the
 * partition's end are zero-filled (nothing read), so they add nothing.
 * With @SWZ, vector ch of row r is stored at ch ^ (r % 8), so that eight
 * rows' same vector sit in distinct banks for ldmatrix.
 */
template <int TT, int CH, bool SWZ>
static __device__ __forceinline__ void
issue_tile(uint8_t *dst, const struct part_ctx &c, uint32_t j,
	   const uint32_t (&ids)[COPIES], uint32_t tid)
{
#pragma unroll
	for (int k = 0; k < (int)COPIES; k++) {
		const uint32_t x = k * KVC_DECODE_THREADS + tid;
		const uint32_t r = x / CH, ch = x % CH, t = j * TT + r;
		const uint8_t *src = c.k;
		uint32_t bytes = 0;

		if (t < c.n && ch < c.nch) {
			uint32_t bi = fast_div_do(c.bs, t);
			uint32_t o = t - bi * c.bs.d;

			src += ids[k] * c.block_bytes +
			       (uint64_t)o * c.row_bytes + 16u * ch;
			bytes = 16;
		}
		const uint32_t at = SWZ ? r * CH + (ch ^ (r % 8u)) : x;

		cp_async16(dst + 16u * at, src, bytes);
		cp_async16(dst + KVC_DECODE_STAGE_BYTES / 2 + 16u * at,
			   bytes ? src + c.v_off : src, bytes);
	}
}

/*
 * Set up partition blockIdx.x of head blockIdx.y (rows of @es bytes);
 * one past the head's end gets an empty softmax state (max -INFINITY, sum
 * and accumulator 0) and false.
 */
static __device__ __forceinline__ bool
part_begin(const struct kvc_decode_args &a, uint32_t es, uint32_t hd,
	   struct part_ctx &c)
{
	const uint32_t tid = threadIdx.x, p = blockIdx.x, i = blockIdx.y;
	const uint32_t group = a.group, head_dim = a.kv.head_dim;
	const uint32_t len = ((const uint32_t *)a.lens)[i];
	const uint32_t start = p * a.part_tokens, bs = a.kv.block_size;

	if (group - 1 >= KVC_KERNEL_MAX_GROUP || head_dim > hd)
		return false; /* not a shape the planner gives */
	if (start >= len) {
		const struct kvc_decode_ws ws =
			kvc_decode_ws_layout(a.nr_heads, group, a.nr_parts,
					     head_dim, a.max_len, a.metric);
		const uint64_t state0 = ((uint64_t)i * group) * a.nr_parts + p;
		float *wsf = (float *)a.ws;

		for (uint32_t o = tid; o < group * head_dim;
		     o += KVC_DECODE_THREADS) {
			uint32_t g = o / head_dim, d = o % head_dim;

			wsf[ws.acc +
			    (state0 + (uint64_t)g * a.nr_parts) * head_dim +
			    d] = 0.0f;
		}
		if (tid < group) {
			wsf[ws.max + state0 + (uint64_t)tid * a.nr_parts] =
				-INFINITY;
			wsf[ws.sum + state0 + (uint64_t)tid * a.nr_parts] =
				0.0f;
		}
		return false;
	}
	c.n = min(len - start, a.part_tokens);
	c.row_bytes = head_dim * es;
	c.nch = c.row_bytes / 16u;
	c.block_bytes = a.kv.block_bytes;
	c.v_off = (uint64_t)bs * c.row_bytes;
	c.k = (const uint8_t *)a.kv.base;
	c.bs = fast_div_init(bs);
	c.tab = (const uint32_t *)a.tables + (uint64_t)i * a.table_stride +
		start / bs;
	return true;
}

/*
 * One partition (blockIdx.x) of one head (blockIdx.y): see the file's
 * comment. Shared memory: the stages (at the end, the CTA's merged
 * accumulator), then WARP_SCRATCH floats a warp.
 */
template <int DT, int HD>
static __device__ __forceinline__ void part_fma(const struct kvc_decode_args &a)
{
	using G = rows_geom<DT, HD>;
	constexpr int LPR = G::lpr, VPL = G::vpl, RPW = G::rpw, EL = G::el;
	constexpr int EPV = G::epv, CH = G::ch, UW = G::uw, TS = G::ts;
	constexpr int TT = G::tt, NS = GW * UW;
	constexpr int NF = NS / LPR > 1 ? NS / LPR : 1;
	constexpr int TPL = (TS * GW + 31) / 32;

	extern __shared__ float4 smem4[];
	uint8_t *stages = reinterpret_cast<uint8_t *>(smem4);
	float *scratch0 = reinterpret_cast<float *>(
		stages + KVC_DECODE_STAGES * KVC_DECODE_STAGE_BYTES);
	const uint32_t tid = threadIdx.x, lane = tid % 32u, warp = tid / 32u;
	const uint32_t rs = lane / LPR, cl = lane % LPR;
	const uint32_t p = blockIdx.x, i = blockIdx.y;
	const uint32_t group = a.group, head_dim = a.kv.head_dim;
	const uint32_t start = p * a.part_tokens;
	const struct kvc_decode_ws ws = kvc_decode_ws_layout(
		a.nr_heads, group, a.nr_parts, head_dim, a.max_len, a.metric);
	float *wsf = (float *)a.ws;
	const uint64_t state0 = ((uint64_t)i * group) * a.nr_parts + p;
	/* Warps split the group in slices of GW (wg) and the keys (wt). */
	const uint32_t nwg = group > GW ? (group > 2 * GW ? 4u : 2u) : 1u;
	const uint32_t nwt = NR_WARPS / nwg;
	const uint32_t wg = warp % nwg, wt = warp / nwg, g0 = wg * GW;
	float *scratch = scratch0 + warp * WARP_SCRATCH;
	float *sc = scratch, *alpha_s = scratch + TS * GW;

	struct part_ctx c;

	if (!part_begin(a, G::es, HD, c))
		return;

	/* The first tiles' block ids, then their copies, all in flight. */
	const uint32_t ntiles = (c.n + TT - 1) / TT;
	uint32_t ids[KVC_DECODE_STAGES][COPIES];

#pragma unroll
	for (int s = 0; s < (int)KVC_DECODE_STAGES; s++)
		fetch_ids<TT, CH>(ids[s], c, s, tid);
#pragma unroll
	for (int s = 0; s < (int)KVC_DECODE_STAGES - 1; s++) {
		if ((uint32_t)s < ntiles)
			issue_tile<TT, CH, false>(
				stages + s * KVC_DECODE_STAGE_BYTES, c, s,
				ids[s], tid);
		cp_async_commit();
	}

	/* This warp's queries, the elements of the lane's vectors. */
	float qv[GW][EL];

#pragma unroll
	for (int g = 0; g < GW; g++) {
		const float *q = (const float *)a.q +
				 ((uint64_t)i * group + g0 + g) * head_dim;

#pragma unroll
		for (int v = 0; v < VPL; v++) {
			uint32_t ch = cl + v * LPR;

#pragma unroll
			for (int e = 0; e < EPV; e += 4) {
				float4 f = make_float4(0.0f, 0.0f, 0.0f, 0.0f);

				if (g0 + g < group && ch < c.nch)
					f = *reinterpret_cast<const float4 *>(
						q + ch * EPV + e);
				qv[g][v * EPV + e] = f.x;
				qv[g][v * EPV + e + 1] = f.y;
				qv[g][v * EPV + e + 2] = f.z;
				qv[g][v * EPV + e + 3] = f.w;
			}
		}
	}

	const float scale = a.scale;
	float *scores = a.metric ?
				wsf + ws.scores +
					((uint64_t)i * group + g0) * a.max_len +
					start :
				nullptr;
	float acc[GW][EL];
	float m_run = -INFINITY, l_run = 0.0f;

#pragma unroll
	for (int g = 0; g < GW; g++)
#pragma unroll
		for (int k = 0; k < EL; k++)
			acc[g][k] = 0.0f;

	for (uint32_t j = 0; j < ntiles; j++) {
		const uint32_t jn = j + KVC_DECODE_STAGES - 1;
		const uint8_t *st = stages + (j % KVC_DECODE_STAGES) *
						     KVC_DECODE_STAGE_BYTES;

		/* Tile j has landed, and every warp is done with j - 1,
		 * whose stage the next copy reuses. */
		cp_async_wait<KVC_DECODE_STAGES - 2>();
		__syncthreads();
		if (jn < ntiles) {
			issue_tile<TT, CH, false>(
				stages + (jn % KVC_DECODE_STAGES) *
						 KVC_DECODE_STAGE_BYTES,
				c, jn, ids[KVC_DECODE_STAGES - 1], tid);
			fetch_ids<TT, CH>(ids[KVC_DECODE_STAGES - 1], c, jn + 1,
					  tid);
		}
		cp_async_commit();

		for (uint32_t sb = wt; sb < NR_WARPS; sb += nwt) {
			const uint32_t tb = j * TT + sb * TS;

			if (tb >= c.n)
				break;

			/* Scores of the sub-tile, summed over a row's lanes. */
			float x[NS];

#pragma unroll
			for (int u = 0; u < UW; u++) {
				const uint32_t r = sb * TS + u * RPW + rs;
				float kf[EL];

#pragma unroll
				for (int v = 0; v < VPL; v++)
					to_f32<DT>(&kf[v * EPV],
						   *reinterpret_cast<
							   const uint4 *>(
							   st +
							   16u * (r * CH + cl +
								  v * LPR)));
#pragma unroll
				for (int g = 0; g < GW; g++) {
					float s = 0.0f;

#pragma unroll
					for (int k = 0; k < EL; k++)
						s = fmaf(qv[g][k], kf[k], s);
					x[u * GW + g] = s;
				}
			}
			reduce_scatter<NS, LPR / 2>(x, lane);
#pragma unroll
			for (int f = 0; f < NF; f++) {
				const uint32_t idx = cl * NS / LPR + f;
				const uint32_t g = idx % GW;
				const uint32_t t = (idx / GW) * RPW + rs;
				const float s = scale * x[f];

				sc[t * GW + g] = s;
				if (scores && g0 + g < group && tb + t < c.n)
					scores[(uint64_t)g * a.max_len + tb +
					       t] = s;
			}
			__syncwarp();

			/* Online softmax; lane owns group member lane % GW. */
			{
				const uint32_t g = lane % GW;
				float sv[TPL], tmax = -INFINITY, psum = 0.0f;
				float fac;

#pragma unroll
				for (int k = 0; k < TPL; k++) {
					const uint32_t t =
						lane / GW + k * 32 / GW;

					sv[k] = -INFINITY;
					if (t < TS && tb + t < c.n)
						sv[k] = sc[t * GW + g];
					tmax = fmaxf(tmax, sv[k]);
				}
#pragma unroll
				for (int m = GW; m < 32; m *= 2)
					tmax = fmaxf(tmax,
						     __shfl_xor_sync(FULL_MASK,
								     tmax, m));
				tmax = fmaxf(tmax, m_run);
				fac = rescale_factor(m_run, tmax);
#pragma unroll
				for (int k = 0; k < TPL; k++) {
					const uint32_t t =
						lane / GW + k * 32 / GW;
					float w = 0.0f;

					if (sv[k] != -INFINITY)
						w = kvc_attn_exp(sv[k] - tmax);
					if (t < TS)
						sc[t * GW + g] = w;
					psum += w;
				}
#pragma unroll
				for (int m = GW; m < 32; m *= 2)
					psum += __shfl_xor_sync(FULL_MASK, psum,
								m);
				l_run = l_run * fac + psum;
				m_run = tmax;
				if (lane < GW)
					alpha_s[lane] = fac;
			}
			__syncwarp();

			/* Weighted V rows into the accumulators. */
			{
				const float4 al =
					*reinterpret_cast<const float4 *>(
						alpha_s);
				const float alv[GW] = { al.x, al.y, al.z,
							al.w };

				if (al.x != 1.0f || al.y != 1.0f ||
				    al.z != 1.0f || al.w != 1.0f) {
#pragma unroll
					for (int g = 0; g < GW; g++)
#pragma unroll
						for (int k = 0; k < EL; k++)
							acc[g][k] *= alv[g];
				}
			}
#pragma unroll
			for (int u = 0; u < UW; u++) {
				const uint32_t t = u * RPW + rs;
				const uint32_t r = sb * TS + t;
				const float4 pw =
					*reinterpret_cast<const float4 *>(
						&sc[t * GW]);
				const float w[GW] = { pw.x, pw.y, pw.z, pw.w };
				float vf[EL];

#pragma unroll
				for (int v = 0; v < VPL; v++)
					to_f32<DT>(
						&vf[v * EPV],
						*reinterpret_cast<
							const uint4 *>(
							st +
							KVC_DECODE_STAGE_BYTES /
								2 +
							16u * (r * CH + cl +
							       v * LPR)));
#pragma unroll
				for (int g = 0; g < GW; g++)
#pragma unroll
					for (int k = 0; k < EL; k++)
						acc[g][k] = fmaf(w[g], vf[k],
								 acc[g][k]);
			}
			__syncwarp();
		}
	}
	cp_async_wait<0>();

	/* The rows of a warp's lanes, then the warps, into one state. */
#pragma unroll
	for (int m = LPR; m < 32; m *= 2)
#pragma unroll
		for (int g = 0; g < GW; g++)
#pragma unroll
			for (int k = 0; k < EL; k++)
				acc[g][k] += __shfl_xor_sync(FULL_MASK,
							     acc[g][k], m);
	if (lane < GW) {
		scratch[TS * GW + GW + lane] = m_run;
		scratch[TS * GW + 2 * GW + lane] = l_run;
	}
	__syncthreads();

	float *buf = reinterpret_cast<float *>(stages);
	float fw[GW];

#pragma unroll
	for (int g = 0; g < GW; g++) {
		const float own = scratch[TS * GW + GW + g];
		float mx = -INFINITY;

		for (uint32_t w = 0; w < nwt; w++)
			mx = fmaxf(mx, scratch0[(wg + w * nwg) * WARP_SCRATCH +
						TS * GW + GW + g]);
		fw[g] = own == -INFINITY ? 0.0f : rescale_factor(own, mx);
	}
	for (uint32_t w = 0; w < nwt; w++) {
		if (wt == w && rs == 0) {
#pragma unroll
			for (int g = 0; g < GW; g++) {
#pragma unroll
				for (int k = 0; k < EL; k++) {
					const uint32_t ch =
						cl + (k / EPV) * LPR;
					const uint32_t d = ch * EPV + k % EPV;
					float *o = &buf[(g0 + g) * HD + d];
					const float v = acc[g][k] * fw[g];

					*o = w ? *o + v : v;
				}
			}
		}
		__syncthreads();
	}
	if (tid < group) {
		const uint32_t swg = tid / GW, g = tid % GW;
		float mx = -INFINITY, sum = 0.0f;

		for (uint32_t w = 0; w < nwt; w++)
			mx = fmaxf(mx, scratch0[(swg + w * nwg) * WARP_SCRATCH +
						TS * GW + GW + g]);
		for (uint32_t w = 0; w < nwt; w++) {
			const float *s = scratch0 +
					 (swg + w * nwg) * WARP_SCRATCH +
					 TS * GW;

			if (s[GW + g] != -INFINITY)
				sum += s[2 * GW + g] *
				       rescale_factor(s[GW + g], mx);
		}
		wsf[ws.max + state0 + (uint64_t)tid * a.nr_parts] = mx;
		wsf[ws.sum + state0 + (uint64_t)tid * a.nr_parts] = sum;
	}
	for (uint32_t o = tid; o < group * head_dim; o += KVC_DECODE_THREADS) {
		const uint32_t g = o / head_dim, d = o % head_dim;

		wsf[ws.acc + (state0 + (uint64_t)g * a.nr_parts) * head_dim +
		    d] = buf[g * HD + d];
	}
}

/* ------------------------------------------------------------------ */
/* Tensor cores, for 16-bit storage */

/* Shared memory address of @p, for ldmatrix. */
static __device__ __forceinline__ uint32_t smem_addr(const void *p)
{
	return (uint32_t)__cvta_generic_to_shared(p);
}

/* Two 8x8 matrices of 16-bit elements; lanes 0-15 give the row addresses. */
static __device__ __forceinline__ void ldsm_x2(uint32_t &r0, uint32_t &r1,
					       const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];"
		     : "=r"(r0), "=r"(r1)
		     : "r"(smem_addr(p))
		     : "memory");
}

/* Four 8x8 matrices; lane l gives row l % 8 of matrix l / 8. */
static __device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void *p)
{
	asm volatile(
		"ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
		: "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		: "r"(smem_addr(p))
		: "memory");
}

/* As ldsm_x4(), each matrix transposed. */
static __device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4],
						 const void *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 "
		     "{%0, %1, %2, %3}, [%4];"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(smem_addr(p))
		     : "memory");
}

/* d += a (16x16, row) * b (16x8, col), f32 accumulators. */
template <int DT>
static __device__ __forceinline__ void
mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
	if constexpr (DT == KVC_DTYPE_F16)
		asm volatile(
			"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
			"{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
			"{%0, %1, %2, %3};"
			: "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
			: "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0),
			  "r"(b1));
	else
		asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16."
			     "f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
			     "{%8, %9}, {%0, %1, %2, %3};"
			     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
			     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]),
			       "r"(b0), "r"(b1));
}

/* @x rounded to the storage type, as its bits. */
template <int DT> static __device__ __forceinline__ uint16_t to16(float x)
{
	if constexpr (DT == KVC_DTYPE_F16)
		return __half_as_ushort(__float2half_rn(x));
	else
		return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}

/* The bits of a storage-type value, as f32 (exact). */
template <int DT> static __device__ __forceinline__ float from16(uint16_t h)
{
	if constexpr (DT == KVC_DTYPE_F16)
		return __half2float(__ushort_as_half(h));
	else
		return __uint_as_float((uint32_t)h << 16);
}

/*
 * @x as hi + lo, both of the storage type: hi carries 11 (f16) or 8
 * (bf16) bits of the mantissa, lo the next as many, so that tensor cores
 * multiplying 16-bit values (exactly, adding in f32) see @x to 2^-22 or
 * 2^-16: well within the reference's tolerance.
 */
template <int DT>
static __device__ __forceinline__ void split16(float x, uint16_t &hi,
					       uint16_t &lo)
{
	hi = to16<DT>(x);
	lo = to16<DT>(x - from16<DT>(hi));
}

/* Pairs of (column 2k, 2k + 1) elements as a fragment register. */
template <int DT>
static __device__ __forceinline__ void split_pair(float x0, float x1,
						  uint32_t &hi, uint32_t &lo)
{
	uint16_t h0, l0, h1, l1;

	split16<DT>(x0, h0, l0);
	split16<DT>(x1, h1, l1);
	hi = (uint32_t)h0 | (uint32_t)h1 << 16;
	lo = (uint32_t)l0 | (uint32_t)l1 << 16;
}

/*
 * One partition of one head, 16-bit storage, on tensor cores
 * (mma.m16n8k16: A 16x16, B 16x8, f32 accumulators). The 16 rows of A
 * are the group's query heads, padded with zero queries; each stage is
 * done in three steps, between CTA barriers:
 *
 * Scores: warp w multiplies the queries' dimensions [w * HD / 4,
 * (w + 1) * HD / 4) (its A fragments, split hi + lo, kept in registers
 * for the whole partition) by the stage's K rows (B, by ldmatrix), and
 * stores its partial sums.
 *
 * Softmax: each query head's row is taken by 32 / rows-a-warp lanes of
 * one warp: the four partial sums added in a fixed order, scaled, the
 * online softmax state updated, and the weights, split hi + lo, stored
 * as A of the next step.
 *
 * Output: warp w adds weights x V rows (B, by ldmatrix.trans) into its
 * accumulators of dimensions [w * HD / 4, (w + 1) * HD / 4).
 *
 * The queries are scaled by a power of two per row and warp (exact), so
 * that f16 neither overflows nor loses their low part to subnormals.
 * Shared memory after the stages: the partial sums [4][16][TT + 8] f32,
 * the weights hi and lo [16][TT + 8] each, the rescale factors [16] (rows
 * padded by 8 so that no access has bank conflicts).
 */
template <int DT, int HD>
static __device__ __forceinline__ void part_mma(const struct kvc_decode_args &a)
{
	constexpr int CH = HD / 8, TT = KVC_DECODE_STAGE_BYTES / (4 * HD);
	constexpr int SR = TT + 8, DW = HD / NR_WARPS, KS = DW / 16;
	constexpr int NT = DW / 8, TPL = TT / 8;

	extern __shared__ float4 smem4[];
	uint8_t *stages = reinterpret_cast<uint8_t *>(smem4);
	float *spart = reinterpret_cast<float *>(
		stages + KVC_DECODE_STAGES * KVC_DECODE_STAGE_BYTES);
	uint16_t *phi = reinterpret_cast<uint16_t *>(spart + 4 * 16 * SR);
	uint16_t *plo = phi + 16 * SR;
	float *alpha_s = reinterpret_cast<float *>(plo + 16 * SR);
	const uint32_t tid = threadIdx.x, lane = tid % 32u, warp = tid / 32u;
	const uint32_t gid = lane / 4u, tig = lane % 4u;
	const uint32_t p = blockIdx.x, i = blockIdx.y;
	const uint32_t group = a.group, head_dim = a.kv.head_dim;
	const uint32_t db = warp * DW;
	struct part_ctx c;

	if (!part_begin(a, 2, HD, c))
		return;

	const uint32_t ntiles = (c.n + TT - 1) / TT;
	uint32_t ids[KVC_DECODE_STAGES][COPIES];

#pragma unroll
	for (int s = 0; s < (int)KVC_DECODE_STAGES; s++)
		fetch_ids<TT, CH>(ids[s], c, s, tid);
#pragma unroll
	for (int s = 0; s < (int)KVC_DECODE_STAGES - 1; s++) {
		if ((uint32_t)s < ntiles)
			issue_tile<TT, CH, true>(
				stages + s * KVC_DECODE_STAGE_BYTES, c, s,
				ids[s], tid);
		cp_async_commit();
	}

	/* Rows past the group weigh nothing, and keep a factor of 1. */
	for (uint32_t o = tid; o < 2 * 16 * SR; o += KVC_DECODE_THREADS)
		phi[o] = 0;
	if (tid < 16)
		alpha_s[tid] = 1.0f;

	/* This warp's slice of the queries as A fragments, hi and lo. */
	uint32_t qhi[KS][4], qlo[KS][4];
	float unscale[2];
	{
		float qv[KS][8], mx[2] = { 0.0f, 0.0f };

#pragma unroll
		for (int ks = 0; ks < KS; ks++) {
#pragma unroll
			for (int j = 0; j < 4; j++) {
				/* a[j]: row gid (+8 if j odd), columns
				 * 2 tig, +1 (+8 if j >= 2). */
				const uint32_t g = gid + 8u * (j & 1);
				const uint32_t d =
					db + ks * 16 + 2 * tig + 8 * (j / 2);
				float2 f = make_float2(0.0f, 0.0f);

				if (g < group && d < head_dim)
					f = *reinterpret_cast<const float2 *>(
						(const float *)a.q +
						((uint64_t)i * group + g) *
							head_dim +
						d);
				qv[ks][2 * j] = f.x;
				qv[ks][2 * j + 1] = f.y;
				mx[j & 1] = fmaxf(mx[j & 1], fmaxf(fabsf(f.x),
								   fabsf(f.y)));
			}
		}
#pragma unroll
		for (int r = 0; r < 2; r++) {
			int e;

			mx[r] = fmaxf(mx[r],
				      __shfl_xor_sync(FULL_MASK, mx[r], 1));
			mx[r] = fmaxf(mx[r],
				      __shfl_xor_sync(FULL_MASK, mx[r], 2));
			frexpf(mx[r], &e);
			e = mx[r] > 0.0f ? min(max(15 - e, -100), 100) : 0;
			unscale[r] = ldexpf(1.0f, -e);
			mx[r] = ldexpf(1.0f, e);
		}
#pragma unroll
		for (int ks = 0; ks < KS; ks++)
#pragma unroll
			for (int j = 0; j < 4; j++)
				split_pair<DT>(qv[ks][2 * j] * mx[j & 1],
					       qv[ks][2 * j + 1] * mx[j & 1],
					       qhi[ks][j], qlo[ks][j]);
	}

	/* The softmax rows of this warp and lane. */
	const uint32_t rpw = group <= 4 ? 1u : group <= 8 ? 2u : 4u;
	const uint32_t lr = 32u / rpw, tl = lane % lr;
	const uint32_t g = warp * rpw + lane / lr;
	const bool row = g < group;
	const struct kvc_decode_ws ws = kvc_decode_ws_layout(
		a.nr_heads, group, a.nr_parts, head_dim, a.max_len, a.metric);
	float *wsf = (float *)a.ws;
	float *scores = a.metric && row ?
				wsf + ws.scores +
					((uint64_t)i * group + g) * a.max_len +
					p * a.part_tokens :
				nullptr;
	const float scale = a.scale;
	float m_run = -INFINITY, l_run = 0.0f;
	float o[NT][4];

#pragma unroll
	for (int nt = 0; nt < NT; nt++)
#pragma unroll
		for (int k = 0; k < 4; k++)
			o[nt][k] = 0.0f;

	for (uint32_t j = 0; j < ntiles; j++) {
		const uint32_t jn = j + KVC_DECODE_STAGES - 1, tb = j * TT;
		const uint8_t *st = stages + (j % KVC_DECODE_STAGES) *
						     KVC_DECODE_STAGE_BYTES;
		const uint8_t *sv = st + KVC_DECODE_STAGE_BYTES / 2;

		cp_async_wait<KVC_DECODE_STAGES - 2>();
		__syncthreads();
		if (jn < ntiles) {
			issue_tile<TT, CH, true>(
				stages + (jn % KVC_DECODE_STAGES) *
						 KVC_DECODE_STAGE_BYTES,
				c, jn, ids[KVC_DECODE_STAGES - 1], tid);
			fetch_ids<TT, CH>(ids[KVC_DECODE_STAGES - 1], c, jn + 1,
					  tid);
		}
		cp_async_commit();

		/* Partial scores: 8 keys (n) at a time, this warp's dims. */
#pragma unroll
		for (int nt = 0; nt < TT / 8; nt++) {
			float s4[4] = { 0.0f, 0.0f, 0.0f, 0.0f };

#pragma unroll
			for (int ks = 0; ks < KS; ks++) {
				/* b0: dims +0..7, b1: +8..15, of keys
				 * nt * 8 + lane % 8. */
				const uint32_t r = nt * 8 + lane % 8u;
				const uint32_t ch =
					(db + ks * 16) / 8 + (lane / 8u) % 2u;
				uint32_t b0, b1;

				ldsm_x2(b0, b1,
					st + 16u * (r * CH + (ch ^ (r % 8u))));
				mma16816<DT>(s4, qhi[ks], b0, b1);
				mma16816<DT>(s4, qlo[ks], b0, b1);
			}
			float *sp = spart + (warp * 16 + gid) * SR + nt * 8 +
				    2 * tig;

			*reinterpret_cast<float2 *>(sp) = make_float2(
				s4[0] * unscale[0], s4[1] * unscale[0]);
			*reinterpret_cast<float2 *>(sp + 8 * SR) = make_float2(
				s4[2] * unscale[1], s4[3] * unscale[1]);
		}
		__syncthreads();

		/* Online softmax of this lane's row, weights split (every
		 * lane takes part in the shuffles; rows past the group
		 * see no keys and store nothing). */
		{
			float sv2[TPL], tmax = -INFINITY, psum = 0.0f, fac;

#pragma unroll
			for (int k = 0; k < TPL; k++) {
				const uint32_t t = tl + k * lr;

				sv2[k] = -INFINITY;
				if (row && t < TT && tb + t < c.n) {
					const float *sp = spart + g * SR + t;

					sv2[k] = scale *
						 (((sp[0] + sp[16 * SR]) +
						   sp[32 * SR]) +
						  sp[48 * SR]);
					if (scores)
						scores[tb + t] = sv2[k];
				}
				tmax = fmaxf(tmax, sv2[k]);
			}
			for (uint32_t m = lr / 2; m >= 1; m /= 2)
				tmax = fmaxf(tmax, __shfl_xor_sync(FULL_MASK,
								   tmax, m));
			tmax = fmaxf(tmax, m_run);
			fac = rescale_factor(m_run, tmax);
#pragma unroll
			for (int k = 0; k < TPL; k++) {
				const uint32_t t = tl + k * lr;
				float w = 0.0f;
				uint16_t h, l;

				if (sv2[k] != -INFINITY)
					w = kvc_attn_exp(sv2[k] - tmax);
				psum += w;
				split16<DT>(w, h, l);
				if (row && t < TT) {
					phi[g * SR + t] = h;
					plo[g * SR + t] = l;
				}
			}
			for (uint32_t m = lr / 2; m >= 1; m /= 2)
				psum += __shfl_xor_sync(FULL_MASK, psum, m);
			l_run = l_run * fac + psum;
			m_run = tmax;
			if (row && tl == 0)
				alpha_s[g] = fac;
		}
		__syncthreads();

		/* Weighted V rows into this warp's dims. */
		{
			const float a0 = alpha_s[gid], a1 = alpha_s[gid + 8];

#pragma unroll
			for (int nt = 0; nt < NT; nt++) {
				o[nt][0] *= a0;
				o[nt][1] *= a0;
				o[nt][2] *= a1;
				o[nt][3] *= a1;
			}
		}
#pragma unroll
		for (int ks = 0; ks < TT / 16; ks++) {
			/* A: rows lane % 8 (+8 for odd matrices), keys
			 * ks * 16 (+8 for matrices 2, 3). */
			const uint32_t off =
				(lane % 8u + 8u * ((lane / 8u) % 2u)) * SR +
				ks * 16 + 8u * (lane / 16u);
			uint32_t ah[4], al[4];

			ldsm_x4(ah, phi + off);
			ldsm_x4(al, plo + off);
#pragma unroll
			for (int nt = 0; nt < NT; nt += 2) {
				/* B: keys ks * 16 + lane % 8 (+8 for odd
				 * matrices), dims +0..7 (+8 for 2, 3). */
				const uint32_t r = ks * 16 + lane % 8u +
						   8u * ((lane / 8u) % 2u);
				const uint32_t ch =
					(db + nt * 8) / 8 + lane / 16u;
				uint32_t b[4];

				ldsm_x4_t(b, sv + 16u * (r * CH +
							 (ch ^ (r % 8u))));
				mma16816<DT>(o[nt], ah, b[0], b[1]);
				mma16816<DT>(o[nt], al, b[0], b[1]);
				mma16816<DT>(o[nt + 1], ah, b[2], b[3]);
				mma16816<DT>(o[nt + 1], al, b[2], b[3]);
			}
		}
	}
	cp_async_wait<0>();

	/* This warp's dims of every row; the states from the row's lanes. */
	const uint64_t state0 = ((uint64_t)i * group) * a.nr_parts + p;

#pragma unroll
	for (int h = 0; h < 2; h++) {
		const uint32_t gr = gid + 8u * h;

		if (gr >= group)
			continue;
		float *acc = wsf + ws.acc +
			     (state0 + (uint64_t)gr * a.nr_parts) * head_dim;

#pragma unroll
		for (int nt = 0; nt < NT; nt++) {
			const uint32_t d = db + nt * 8 + 2 * tig;

			if (d < head_dim)
				*reinterpret_cast<float2 *>(acc + d) =
					make_float2(o[nt][2 * h],
						    o[nt][2 * h + 1]);
		}
	}
	if (row && tl == 0) {
		wsf[ws.max + state0 + (uint64_t)g * a.nr_parts] = m_run;
		wsf[ws.sum + state0 + (uint64_t)g * a.nr_parts] = l_run;
	}
}

template <int DT, int HD>
static __device__ __forceinline__ void part(const struct kvc_decode_args &a)
{
	/* The same choice as kvc_decode_uses_mma(), which sizes the shared
	 * memory of the launch. */
	if constexpr (DT == KVC_DTYPE_F32)
		part_fma<DT, HD>(a);
	else if (!kvc_decode_uses_mma(DT, a.group, HD))
		part_fma<DT, HD>(a);
	else
		part_mma<DT, HD>(a);
}

/* ------------------------------------------------------------------ */
/* Reduce kernel */

/* Partitions a reduce thread has loads in flight for. */
#define REDUCE_UNROLL 16
/* Partition states, or slots, a reduce thread reads at once. */
#define REDUCE_BATCH 8

/*
 * Head blockIdx.x. First the global maximum and sum of each group member
 * over the partitions that hold keys (a warp a member); then the outputs:
 * a thread takes two elements of an output row and a slice of the
 * partitions (as many slices as threads allow, so that long heads with
 * many partitions keep enough loads in flight), the slices added in
 * shared memory; then the metric, a thread a slot. Shared memory: the
 * factor of each (member, partition), each member's maximum and 1 / sum,
 * and the threads' partial sums.
 */
static __device__ __forceinline__ void reduce(const struct kvc_decode_args &a)
{
	extern __shared__ float4 smem4[];
	constexpr uint32_t T = KVC_DECODE_REDUCE_THREADS;
	float2 *part_sum = reinterpret_cast<float2 *>(smem4);
	float *fac = reinterpret_cast<float *>(part_sum + T);
	const uint32_t tid = threadIdx.x, lane = tid % 32u, warp = tid / 32u;
	const uint32_t i = blockIdx.x, group = a.group;
	const uint32_t head_dim = a.kv.head_dim, nr_parts = a.nr_parts;
	const uint32_t len = ((const uint32_t *)a.lens)[i];
	const uint32_t np = (len + a.part_tokens - 1) / a.part_tokens;
	const struct kvc_decode_ws ws = kvc_decode_ws_layout(
		a.nr_heads, group, nr_parts, head_dim, a.max_len, a.metric);
	const float *wsf = (const float *)a.ws;
	float *mx_s = fac + group * nr_parts, *inv_s = mx_s + group;

	for (uint32_t g = warp; g < group; g += T / 32u) {
		const uint64_t s0 = ((uint64_t)i * group + g) * nr_parts;
		float mx = -INFINITY, sum = 0.0f;

		/* Eight loads in flight a lane before any use. */
		for (uint32_t p0 = lane; p0 < np; p0 += 32 * REDUCE_BATCH) {
			float v[REDUCE_BATCH];

#pragma unroll
			for (int k = 0; k < REDUCE_BATCH; k++)
				v[k] = p0 + 32 * k < np ?
					       __ldg(wsf + ws.max + s0 + p0 +
						     32 * k) :
					       -INFINITY;
#pragma unroll
			for (int k = 0; k < REDUCE_BATCH; k++) {
				if (p0 + 32 * k < np)
					fac[g * nr_parts + p0 + 32 * k] = v[k];
				mx = fmaxf(mx, v[k]);
			}
		}
		for (int m = 16; m >= 1; m /= 2)
			mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, m));
		for (uint32_t p0 = lane; p0 < np; p0 += 32 * REDUCE_BATCH) {
			float v[REDUCE_BATCH];

#pragma unroll
			for (int k = 0; k < REDUCE_BATCH; k++)
				v[k] = p0 + 32 * k < np ?
					       __ldg(wsf + ws.sum + s0 + p0 +
						     32 * k) :
					       0.0f;
#pragma unroll
			for (int k = 0; k < REDUCE_BATCH; k++) {
				const uint32_t q = g * nr_parts + p0 + 32 * k;

				if (p0 + 32 * k < np) {
					const float pm = fac[q];
					const float f =
						pm == -INFINITY ?
							0.0f :
							kvc_attn_exp(pm - mx);

					fac[q] = f;
					sum += v[k] * f;
				}
			}
		}
		for (int m = 16; m >= 1; m /= 2)
			sum += __shfl_xor_sync(FULL_MASK, sum, m);
		if (lane == 0) {
			mx_s[g] = mx;
			inv_s[g] = sum > 0.0f ? 1.0f / sum : 0.0f;
		}
	}
	__syncthreads();

	/* Outputs: items are (member, pair of elements). */
	const uint32_t nd2 = head_dim / 2, items = group * nd2;
	const uint32_t nsl = items < T ? T / items : 1, ipr = T / nsl;
	const uint32_t slice = tid / ipr;
	float2 *out = (float2 *)a.out + (uint64_t)i * items;

	for (uint32_t it = tid % ipr; it < items && slice < nsl; it += ipr) {
		const uint32_t g = it / nd2;
		const float2 *acc = (const float2 *)(wsf + ws.acc) +
				    ((uint64_t)i * group + g) * nr_parts * nd2 +
				    it % nd2;
		const float *f = fac + g * nr_parts;
		float2 s = make_float2(0.0f, 0.0f);
		uint32_t p = slice;

		for (; p + (REDUCE_UNROLL - 1) * nsl < np;
		     p += REDUCE_UNROLL * nsl) {
			float2 v[REDUCE_UNROLL];

#pragma unroll
			for (int k = 0; k < REDUCE_UNROLL; k++)
				v[k] = acc[(uint64_t)(p + k * nsl) * nd2];
#pragma unroll
			for (int k = 0; k < REDUCE_UNROLL; k++) {
				s.x = fmaf(v[k].x, f[p + k * nsl], s.x);
				s.y = fmaf(v[k].y, f[p + k * nsl], s.y);
			}
		}
		for (; p < np; p += nsl) {
			const float2 v = acc[(uint64_t)p * nd2];

			s.x = fmaf(v.x, f[p], s.x);
			s.y = fmaf(v.y, f[p], s.y);
		}
		if (nsl == 1)
			out[it] = make_float2(s.x * inv_s[g], s.y * inv_s[g]);
		else
			part_sum[tid] = s;
	}
	if (nsl > 1) {
		__syncthreads();
		if (tid < items) {
			const float inv = inv_s[tid / nd2];
			float2 s = part_sum[tid];

			for (uint32_t k = 1; k < nsl; k++) {
				s.x += part_sum[k * ipr + tid].x;
				s.y += part_sum[k * ipr + tid].y;
			}
			out[tid] = make_float2(s.x * inv, s.y * inv);
		}
	}

	if (a.metric == KVC_METRIC_NONE || !a.kv.meta)
		return;
	const enum kvc_metric_kind kind = (enum kvc_metric_kind)a.metric;
	const uint32_t bs = a.kv.block_size;
	const uint32_t *table =
		(const uint32_t *)a.tables + (uint64_t)i * a.table_stride;
	const float *scores = wsf + ws.scores + (uint64_t)i * group * a.max_len;
	struct kvc_slot_meta *meta = (struct kvc_slot_meta *)a.kv.meta;

	/* REDUCE_BATCH slots a thread at once: their loads, then their
	 * metric updates (a slot belongs to this head only). */
	for (uint32_t t0 = tid; t0 < len; t0 += T * REDUCE_BATCH) {
		float term[REDUCE_BATCH], old[REDUCE_BATCH];
		uint64_t slot[REDUCE_BATCH];

#pragma unroll
		for (int k = 0; k < REDUCE_BATCH; k++) {
			const uint32_t t = t0 + k * T;

			term[k] = 0.0f;
			slot[k] = 0;
			if (t < len) {
				const uint32_t b = t / bs;

				slot[k] = kvc_attn_meta_index(__ldg(table + b),
							      t - b * bs, bs);
			}
		}
		for (uint32_t g = 0; g < group; g++) {
			float sv[REDUCE_BATCH];

#pragma unroll
			for (int k = 0; k < REDUCE_BATCH; k++)
				sv[k] = t0 + k * T < len ?
						__ldg(scores +
						      (uint64_t)g * a.max_len +
						      t0 + k * T) :
						-INFINITY;
#pragma unroll
			for (int k = 0; k < REDUCE_BATCH; k++)
				term[k] += kvc_metric_term(
					kind, kvc_attn_exp(sv[k] - mx_s[g]) *
						      inv_s[g]);
		}
#pragma unroll
		for (int k = 0; k < REDUCE_BATCH; k++)
			if (t0 + k * T < len)
				old[k] = meta[slot[k]].metric;
#pragma unroll
		for (int k = 0; k < REDUCE_BATCH; k++)
			if (t0 + k * T < len)
				meta[slot[k]].metric = old[k] + term[k];
	}
}

/* ------------------------------------------------------------------ */
/* Entry points */

#define DECODE_PART(name, dt, hd)                                            \
	extern "C" __global__ void __launch_bounds__(KVC_DECODE_THREADS,     \
						     KVC_DECODE_CTAS_PER_SM) \
		kvc_decode_part_##name(                                      \
			const __grid_constant__ struct kvc_decode_args a)    \
	{                                                                    \
		part<dt, hd>(a);                                             \
	}

DECODE_PART(f32_64, KVC_DTYPE_F32, 64)
DECODE_PART(f32_128, KVC_DTYPE_F32, 128)
DECODE_PART(f32_256, KVC_DTYPE_F32, 256)
DECODE_PART(f16_64, KVC_DTYPE_F16, 64)
DECODE_PART(f16_128, KVC_DTYPE_F16, 128)
DECODE_PART(f16_256, KVC_DTYPE_F16, 256)
DECODE_PART(bf16_64, KVC_DTYPE_BF16, 64)
DECODE_PART(bf16_128, KVC_DTYPE_BF16, 128)
DECODE_PART(bf16_256, KVC_DTYPE_BF16, 256)

#define DECODE_REDUCE(hd)                                                 \
	extern "C" __global__ void __launch_bounds__(                     \
		KVC_DECODE_REDUCE_THREADS, 1)                             \
		kvc_decode_reduce_##hd(                                   \
			const __grid_constant__ struct kvc_decode_args a) \
	{                                                                 \
		reduce(a);                                                \
	}

DECODE_REDUCE(64)
DECODE_REDUCE(128)
DECODE_REDUCE(256)
