/* SPDX-License-Identifier: MIT */
/*
 * IEEE half and bfloat16 <-> float, bit by bit: no compiler extension, the same results
 * on every host. Round to nearest even; infinities and NaNs kept;
 * subnormals handled. The CUDA kernels will use the device's own
 * conversions, which round the same way.
 */
#ifndef KVC_KERNELS_HALF_H
#define KVC_KERNELS_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t kvc_f32_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static inline float kvc_bits_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* float -> half, round to nearest even. */
static inline uint16_t kvc_f32_to_f16(float f)
{
	uint32_t x = kvc_f32_bits(f);
	uint32_t sign = (x >> 16) & 0x8000u;
	uint32_t exp = (x >> 23) & 0xffu;
	uint32_t mant = x & 0x7fffffu;
	uint32_t half, shift, rest, halfway;
	int32_t e;

	if (exp == 0xff) /* inf or NaN (keep a quiet NaN) */
		return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
	e = (int32_t)exp - 127 + 15;
	if (e >= 31) /* overflow */
		return (uint16_t)(sign | 0x7c00u);
	if (e <= 0) {
		/* subnormal half, or zero */
		if (e < -10)
			return (uint16_t)sign;
		mant |= 0x800000u;
		shift = (uint32_t)(14 - e);
		half = mant >> shift;
		rest = mant & ((1u << shift) - 1);
		halfway = 1u << (shift - 1);
		if (rest > halfway || (rest == halfway && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	half = ((uint32_t)e << 10) | (mant >> 13);
	rest = mant & 0x1fffu;
	if (rest > 0x1000u || (rest == 0x1000u && (half & 1)))
		half++; /* may carry into the exponent: still correct */
	return (uint16_t)(sign | half);
}

/* half -> float, exact. */
static inline float kvc_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t mant = h & 0x3ffu;

	if (exp == 0x1f)
		return kvc_bits_f32(sign | 0x7f800000u | (mant << 13));
	if (exp == 0) {
		if (!mant)
			return kvc_bits_f32(sign);
		/* subnormal: normalise */
		exp = 1;
		while (!(mant & 0x400u)) {
			mant <<= 1;
			exp--;
		}
		mant &= 0x3ffu;
		return kvc_bits_f32(sign | ((exp + 127 - 15) << 23) |
				    (mant << 13));
	}
	return kvc_bits_f32(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

/* float -> bfloat16, round to nearest even; NaNs stay quiet NaNs. */
static inline uint16_t kvc_f32_to_bf16(float f)
{
	uint32_t x = kvc_f32_bits(f);

	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 0x40u);
	x += 0x7fffu + ((x >> 16) & 1u);
	return (uint16_t)(x >> 16);
}

/* bfloat16 -> float, exact. */
static inline float kvc_bf16_to_f32(uint16_t h)
{
	return kvc_bits_f32((uint32_t)h << 16);
}

#endif /* KVC_KERNELS_HALF_H */
