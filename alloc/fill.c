// SPDX-License-Identifier: MIT
/*
 * Mapped chunks sorted by fill: list k holds the chunks with k live blocks,
 * and a two-level bitmap says which partial lists are non-empty, so the
 * fullest partly used chunk is found in O(1). This is what makes
 * allocation pack chunks densely: the emptiest chunks are left to drain,
 * and drained chunks can go back to the device.
 *
 * Never touches a block or the device; only lists, bits and counters.
 */
#include <errno.h>
#include <stdlib.h>

#include <kvc/error.h>

#include "error.h"
#include "internal.h"

static uint8_t fill_column(uint32_t nr_live, uint32_t bpc)
{
	if (nr_live == 0)
		return 0;
	if (nr_live == bpc)
		return KVC_FILL_BUCKETS - 1;
	/* 1..10: deciles of a partly used chunk, (0,10%] .. (90%,100%). */
	return (uint8_t)(1 + ((uint64_t)nr_live * 10 - 1) / bpc);
}

int kvc_fill_init(struct kvc_fill *fill, uint32_t bpc)
{
	uint32_t k;

	fill->nr_words = (bpc + 1 + 63) / 64;
	fill->nr_summary = (fill->nr_words + 63) / 64;
	fill->lists = calloc(bpc + 1, sizeof(*fill->lists));
	fill->bits = calloc(fill->nr_words, sizeof(*fill->bits));
	fill->summary = calloc(fill->nr_summary, sizeof(*fill->summary));
	fill->column = calloc(bpc + 1, sizeof(*fill->column));
	if (!fill->lists || !fill->bits || !fill->summary || !fill->column) {
		kvc_fill_exit(fill);
		return kvc_err(-ENOMEM, "out of memory for %u fill lists",
			       bpc + 1);
	}
	for (k = 0; k <= bpc; k++) {
		list_init(&fill->lists[k]);
		fill->column[k] = fill_column(k, bpc);
	}
	return 0;
}

void kvc_fill_exit(struct kvc_fill *fill)
{
	free(fill->lists);
	free(fill->bits);
	free(fill->summary);
	free(fill->column);
	fill->lists = NULL;
	fill->bits = fill->summary = NULL;
	fill->column = NULL;
}

static bool is_partial(const struct kvc_pool *pool, uint32_t nr_live)
{
	return nr_live > 0 && nr_live < pool->bpc;
}

static void list_became_nonempty(struct kvc_fill *fill, uint32_t k)
{
	set_bit(fill->bits, k);
	set_bit(fill->summary, k / 64);
}

static void list_became_empty(struct kvc_fill *fill, uint32_t k)
{
	clear_bit(fill->bits, k);
	if (!fill->bits[k / 64])
		clear_bit(fill->summary, k / 64);
}

/**
 * kvc_fill_add() - Link a newly mapped chunk into the list of its fill.
 * @pool: the pool.
 * @c: the chunk, mapped, not linked.
 */
void kvc_fill_add(struct kvc_pool *pool, struct kvc_chunk *c)
{
	struct kvc_fill *fill = &pool->fill;
	struct list_head *list = &fill->lists[c->nr_live];

	if (is_partial(pool, c->nr_live) && list_empty(list))
		list_became_nonempty(fill, c->nr_live);
	list_add(&c->link, list);
	fill->hist[fill->column[c->nr_live]]++;
}

/**
 * kvc_fill_del() - Unlink a chunk that is about to be unmapped.
 * @pool: the pool.
 * @c: the chunk, linked.
 */
void kvc_fill_del(struct kvc_pool *pool, struct kvc_chunk *c)
{
	struct kvc_fill *fill = &pool->fill;

	list_del_init(&c->link);
	if (is_partial(pool, c->nr_live) &&
	    list_empty(&fill->lists[c->nr_live]))
		list_became_empty(fill, c->nr_live);
	fill->hist[fill->column[c->nr_live]]--;
}

/**
 * kvc_fill_set_live() - Move a chunk to the list of its new live count.
 * @pool: the pool.
 * @c: the chunk, linked.
 * @nr_live: its new live count.
 */
void kvc_fill_set_live(struct kvc_pool *pool, struct kvc_chunk *c,
		       uint32_t nr_live)
{
	kvc_fill_del(pool, c);
	c->nr_live = nr_live;
	kvc_fill_add(pool, c);
}

static int find_last_set(const uint64_t *words, uint32_t nr_words)
{
	uint32_t w = nr_words;

	while (w--)
		if (words[w])
			return (int)(w * 64 + 63 - __builtin_clzll(words[w]));
	return -1;
}

/**
 * kvc_fill_fullest_partial() - The chunk allocation should take from first.
 * @pool: the pool.
 *
 * Return: a chunk from the fullest non-empty partial list, or NULL.
 */
struct kvc_chunk *kvc_fill_fullest_partial(struct kvc_pool *pool)
{
	struct kvc_fill *fill = &pool->fill;
	int w, k;

	w = find_last_set(fill->summary, fill->nr_summary);
	if (w < 0)
		return NULL;
	k = w * 64 + 63 - __builtin_clzll(fill->bits[w]);
	return list_first_entry(&fill->lists[k], struct kvc_chunk, link);
}

/**
 * kvc_fill_first() - First chunk of a fill list.
 * @pool: the pool.
 * @nr_live: which list (0 = empty chunks).
 *
 * Return: the chunk, or NULL when the list is empty.
 */
struct kvc_chunk *kvc_fill_first(struct kvc_pool *pool, uint32_t nr_live)
{
	struct list_head *list = &pool->fill.lists[nr_live];

	return list_empty(list) ?
		       NULL :
		       list_first_entry(list, struct kvc_chunk, link);
}

/**
 * kvc_fill_check() - Check the lists, bits and histogram.
 * @pool: the pool.
 *
 * Return: 0, or -EFAULT with a message naming the broken invariant.
 */
int kvc_fill_check(struct kvc_pool *pool)
{
	struct kvc_fill *fill = &pool->fill;
	uint64_t hist[KVC_FILL_BUCKETS] = { 0 };
	uint64_t nr_linked = 0;
	struct list_head *pos;
	uint32_t k, w;

	for (k = 0; k <= pool->bpc; k++) {
		bool nonempty = !list_empty(&fill->lists[k]);

		if (is_partial(pool, k) && nonempty != test_bit(fill->bits, k))
			return kvc_err(-EFAULT, "fill: bit %u is %d, list %s",
				       k, test_bit(fill->bits, k),
				       nonempty ? "non-empty" : "empty");
		if (!is_partial(pool, k) && test_bit(fill->bits, k))
			return kvc_err(
				-EFAULT,
				"fill: bit %u set for a list that is not partial",
				k);
		list_for_each(pos, &fill->lists[k])
		{
			struct kvc_chunk *c =
				list_entry(pos, struct kvc_chunk, link);

			if (!chunk_mapped(c))
				return kvc_err(
					-EFAULT,
					"fill: chunk %u on list %u is not mapped",
					chunk_index(pool, c), k);
			if (c->nr_live != k)
				return kvc_err(
					-EFAULT,
					"fill: chunk %u with %u live on list %u",
					chunk_index(pool, c), c->nr_live, k);
			hist[fill->column[k]]++;
			nr_linked++;
		}
	}
	for (w = 0; w < fill->nr_words; w++)
		if (!!fill->bits[w] != test_bit(fill->summary, w))
			return kvc_err(
				-EFAULT,
				"fill: summary bit %u disagrees with its word",
				w);
	if (nr_linked != pool->nr_mapped)
		return kvc_err(-EFAULT, "fill: %llu chunks linked, %u mapped",
			       (unsigned long long)nr_linked, pool->nr_mapped);
	for (k = 0; k < KVC_FILL_BUCKETS; k++)
		if (hist[k] != fill->hist[k])
			return kvc_err(
				-EFAULT,
				"fill: histogram column %u is %llu, counted %llu",
				k, (unsigned long long)fill->hist[k],
				(unsigned long long)hist[k]);
	return 0;
}
