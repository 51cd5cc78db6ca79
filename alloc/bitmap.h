/* SPDX-License-Identifier: MIT */
/* Bitmaps of 64-bit words, as the pool, its ladder and the swap use them. */
#ifndef KVC_ALLOC_BITMAP_H
#define KVC_ALLOC_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

static inline bool test_bit(const uint64_t *map, uint32_t bit)
{
	return map[bit / 64] >> (bit % 64) & 1;
}

static inline void set_bit(uint64_t *map, uint32_t bit)
{
	map[bit / 64] |= 1ull << (bit % 64);
}

static inline void clear_bit(uint64_t *map, uint32_t bit)
{
	map[bit / 64] &= ~(1ull << (bit % 64));
}

/**
 * kvc_find_next_bit() - The first bit at or after @from that is set (or
 * clear), a word at a time.
 * @map: the bitmap, (@nbits + 63) / 64 words.
 * @nbits: bits that count; those past it in the last word are ignored.
 * @from: where to start.
 * @set: look for a set bit (true) or a clear one (false).
 *
 * Return: the bit's index, or @nbits when there is none.
 */
static inline uint64_t kvc_find_next_bit(const uint64_t *map, uint64_t nbits,
					 uint64_t from, bool set)
{
	uint64_t flip = set ? 0 : ~0ull, w, word, bit;

	if (from >= nbits)
		return nbits;
	w = from / 64;
	word = (map[w] ^ flip) & (~0ull << (from % 64));
	while (!word) {
		if (++w * 64 >= nbits)
			return nbits;
		word = map[w] ^ flip;
	}
	bit = w * 64 + (uint64_t)__builtin_ctzll(word);
	return bit < nbits ? bit : nbits;
}

#endif /* KVC_ALLOC_BITMAP_H */
