// SPDX-License-Identifier: MIT
/*
 * Sequences: one block table and one length per (layer, KV head), and the
 * cache write that appends K and V to them. An append is all or nothing:
 * every table is given room first, then the blocks all heads need come
 * from the pool in one call, and only then is anything written, so a
 * failure leaves the sequence as it was (on the device, a write that
 * cannot be queued gives the new blocks back). Never leaves a block live
 * that no table holds, nor a table entry without its owner tag.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/kv.h>
#include <kvc/pool.h>

#include "../alloc/error.h"
#include "../kernels/half.h"
#include "device.h"
#include "internal.h"

/* At most 2^24 live sequences: the owner tag has 24 bits for the id. */
#define SEQ_MAX_IDS (1u << KVC_SEQ_BITS)
/* At most 2^20 blocks per table: the owner tag's index field. */
#define TABLE_MAX_BLOCKS (1u << KVC_INDEX_BITS)

static uint32_t nr_tables(const struct kvc_kv *kv)
{
	return kv->shape.layers * kv->shape.kv_heads;
}

/* Address of slot @slot of K in block @block; V is block_size rows on. */
static uint8_t *slot_k(const struct kvc_kv *kv, uint32_t block, uint32_t slot)
{
	return kv->base + (uint64_t)block * kv->block_bytes +
	       (uint64_t)slot * kv->shape.head_dim *
		       kvc_dtype_bytes(kv->shape.dtype);
}

static uint8_t *slot_v(const struct kvc_kv *kv, uint32_t block, uint32_t slot)
{
	uint64_t k_bytes = (uint64_t)kv->shape.block_size * kv->shape.head_dim *
			   kvc_dtype_bytes(kv->shape.dtype);

	return slot_k(kv, block, slot) + k_bytes;
}

static struct kvc_slot_meta *slot_meta(const struct kvc_kv *kv, uint32_t block,
				       uint32_t slot)
{
	return &kv->meta[(uint64_t)block * kv->shape.block_size + slot];
}

/* Store one K or V vector (head_dim floats) as the cache's dtype. */
static void store_row(const struct kvc_kv *kv, uint8_t *dst, const float *src)
{
	uint32_t d, n = kv->shape.head_dim;
	uint16_t h;

	if (kv->shape.dtype == KVC_DTYPE_F32) {
		memcpy(dst, src, (size_t)n * sizeof(*src));
		return;
	}
	for (d = 0; d < n; d++) {
		h = kv->shape.dtype == KVC_DTYPE_BF16 ?
			    kvc_f32_to_bf16(src[d]) :
			    kvc_f32_to_f16(src[d]);
		memcpy(dst + 2 * d, &h, sizeof(h));
	}
}

static int grow_ids(struct kvc_kv *kv, uint32_t n)
{
	uint32_t *ids;

	if (n <= kv->ids_cap)
		return 0;
	ids = realloc(kv->ids, (size_t)n * sizeof(*ids));
	if (!ids)
		return kvc_err(-ENOMEM, "out of memory for %u block ids", n);
	kv->ids = ids;
	kv->ids_cap = n;
	return 0;
}

/* Room for @n entries in @t; the blocks already there are kept. */
static int grow_table(struct kvc_head_table *t, uint32_t n)
{
	uint32_t cap = t->cap ? t->cap : 4;
	uint32_t *blocks;

	if (n <= t->cap)
		return 0;
	if (n > TABLE_MAX_BLOCKS)
		return kvc_err(-EINVAL,
			       "a block table of %u entries, at most %u", n,
			       TABLE_MAX_BLOCKS);
	while (cap < n)
		cap = cap > TABLE_MAX_BLOCKS / 2 ? TABLE_MAX_BLOCKS : cap * 2;
	blocks = realloc(t->blocks, (size_t)cap * sizeof(*blocks));
	if (!blocks)
		return kvc_err(-ENOMEM,
			       "out of memory for a block table of %u entries",
			       cap);
	t->blocks = blocks;
	t->cap = cap;
	return 0;
}

int kvc_seq_create(struct kvc_kv *kv, struct kvc_seq **out)
{
	struct kvc_seq *seq, **seqs;
	uint32_t id, cap;

	if (!kv || !out)
		return kvc_err(-EINVAL, "kvc_seq_create: NULL %s",
			       kv ? "out" : "cache");
	if (kv->nr_seqs >= SEQ_MAX_IDS)
		return kvc_err(-ENOSPC, "%u sequences live, at most %u",
			       kv->nr_seqs, SEQ_MAX_IDS);
	/* The lowest free id: ids are reused as sequences end. */
	for (id = 0; id < kv->nr_ids && kv->seqs[id]; id++)
		;
	if (id == kv->nr_ids) {
		cap = kv->nr_ids ? kv->nr_ids * 2 : 16;
		if (cap > SEQ_MAX_IDS)
			cap = SEQ_MAX_IDS;
		seqs = realloc(kv->seqs, (size_t)cap * sizeof(*seqs));
		if (!seqs)
			return kvc_err(-ENOMEM,
				       "out of memory for %u sequence slots",
				       cap);
		memset(seqs + kv->nr_ids, 0,
		       (size_t)(cap - kv->nr_ids) * sizeof(*seqs));
		kv->seqs = seqs;
		kv->nr_ids = cap;
	}
	seq = calloc(1, sizeof(*seq));
	if (!seq)
		return kvc_err(-ENOMEM, "out of memory for a sequence");
	seq->tables = calloc(nr_tables(kv), sizeof(*seq->tables));
	if (!seq->tables) {
		free(seq);
		return kvc_err(-ENOMEM, "out of memory for %u block tables",
			       nr_tables(kv));
	}
	seq->kv = kv;
	seq->id = id;
	kv->seqs[id] = seq;
	kv->nr_seqs++;
	*out = seq;
	return 0;
}

uint64_t kvc_seq_blocks(const struct kvc_seq *seq)
{
	uint64_t n = 0;
	uint32_t t;

	for (t = 0; t < nr_tables(seq->kv); t++)
		n += seq->tables[t].nr_blocks;
	return n;
}

void kvc_seq_block_ids(const struct kvc_seq *seq, uint32_t *ids)
{
	uint32_t t;

	for (t = 0; t < nr_tables(seq->kv); t++) {
		const struct kvc_head_table *h = &seq->tables[t];

		/* An empty table may have no array. */
		if (h->nr_blocks)
			memcpy(ids, h->blocks,
			       (size_t)h->nr_blocks * sizeof(*ids));
		ids += h->nr_blocks;
	}
}

void kvc_seq_destroy(struct kvc_seq *seq)
{
	struct kvc_kv *kv;
	uint64_t total;
	uint32_t t;

	if (!seq)
		return;
	kv = seq->kv;
	total = kvc_seq_blocks(seq);
	if (total && total <= UINT32_MAX && !grow_ids(kv, (uint32_t)total)) {
		kvc_seq_block_ids(seq, kv->ids);
		kvc_dev_free(kv, (uint32_t)total, kv->ids);
	} else if (total) {
		/* No scratch for one call: one call per table still frees. */
		for (t = 0; t < nr_tables(kv); t++)
			kvc_dev_free(kv, seq->tables[t].nr_blocks,
				     seq->tables[t].blocks);
	}
	for (t = 0; t < nr_tables(kv); t++)
		free(seq->tables[t].blocks);
	free(seq->tables);
	kv->seqs[seq->id] = NULL;
	kv->nr_seqs--;
	free(seq);
}

static int append_check(const struct kvc_seq *seq, uint32_t n, const float *k,
			const float *v)
{
	if (!k != !v)
		return kvc_err(-EINVAL, "kvc_seq_append: NULL %s",
			       k ? "v" : "k");
	/* Slots to fill layer by layer: the host's, which the host writes. */
	if (!k && seq->kv->dev)
		return kvc_err(
			-EOPNOTSUPP,
			"kvc_seq_append: NULL K and V reserve slots on host caches only");
	if ((uint64_t)seq->tokens + n > INT32_MAX)
		return kvc_err(
			-EINVAL,
			"kvc_seq_append: %u tokens after %u: positions are below 2^31",
			n, seq->tokens);
	return 0;
}

/*
 * Blocks for every table of @seq to hold its new length: @lens[t] KVs, or
 * @add more than now when @lens is NULL. Tables grow first, then the pool
 * gives every block in one call (all or nothing), then each is owned and
 * entered in its table: nothing can fail once blocks are ours. The new
 * ids stay in kv->ids, table by table; *@taken says how many.
 */
static int take_blocks(struct kvc_seq *seq, uint32_t add, const uint32_t *lens,
		       uint32_t *taken)
{
	struct kvc_kv *kv = seq->kv;
	uint64_t total = 0, bs = kv->shape.block_size, len;
	uint32_t t, need, used = 0;
	int err;

	for (t = 0; t < nr_tables(kv); t++) {
		struct kvc_head_table *h = &seq->tables[t];

		len = lens ? lens[t] : (uint64_t)h->len + add;
		if ((len + bs - 1) / bs > TABLE_MAX_BLOCKS)
			return kvc_err(
				-EINVAL,
				"table %u would hold %llu KVs, more than %u blocks",
				t, (unsigned long long)len, TABLE_MAX_BLOCKS);
		need = (uint32_t)((len + bs - 1) / bs) - h->nr_blocks;
		err = grow_table(h, h->nr_blocks + need);
		if (err)
			return err;
		total += need;
	}
	if (total > UINT32_MAX)
		return kvc_err(-ENOMEM, "%llu blocks in one call",
			       (unsigned long long)total);
	if (total) {
		err = grow_ids(kv, (uint32_t)total);
		if (!err)
			err = kvc_pool_alloc(kv->pool, (uint32_t)total,
					     kv->ids);
		if (err)
			return err;
	}
	for (t = 0; t < nr_tables(kv); t++) {
		struct kvc_head_table *h = &seq->tables[t];

		len = lens ? lens[t] : (uint64_t)h->len + add;
		need = (uint32_t)((len + bs - 1) / bs) - h->nr_blocks;
		while (need--) {
			uint32_t b = kv->ids[used++];

			/* Cannot fail: the block was just handed to us. */
			kvc_pool_set_owner(
				kv->pool, b,
				kvc_owner_tag(seq->id, t, h->nr_blocks));
			h->blocks[h->nr_blocks++] = b;
		}
	}
	*taken = used;
	return 0;
}

/* Write the @n new KVs of table @table at its length, and count them. */
static void append_table(struct kvc_seq *seq, uint32_t table, uint32_t n,
			 const float *k, const float *v)
{
	struct kvc_kv *kv = seq->kv;
	struct kvc_head_table *t = &seq->tables[table];
	uint32_t bs = kv->shape.block_size, hd = kv->shape.head_dim, i;
	const float *kt = k ? k + (uint64_t)table * n * hd : NULL;
	const float *vt = v ? v + (uint64_t)table * n * hd : NULL;

	for (i = 0; i < n; i++) {
		uint32_t at = t->len + i, block = t->blocks[at / bs];
		struct kvc_slot_meta *m = slot_meta(kv, block, at % bs);

		if (k) {
			store_row(kv, slot_k(kv, block, at % bs),
				  kt + (uint64_t)i * hd);
			store_row(kv, slot_v(kv, block, at % bs),
				  vt + (uint64_t)i * hd);
		}
		m->metric = 0;
		m->pos = (int32_t)(seq->tokens + i);
	}
	t->len += n;
}

/*
 * Undo the table growth of a device append that could not be queued: the
 * @used new blocks, still in kv->ids, leave the tables and go back.
 */
static void unappend(struct kvc_seq *seq, uint32_t used)
{
	struct kvc_kv *kv = seq->kv;
	uint32_t t, bs = kv->shape.block_size;

	for (t = 0; t < nr_tables(kv); t++) {
		struct kvc_head_table *h = &seq->tables[t];

		h->nr_blocks = h->len / bs + !!(h->len % bs);
	}
	/* Cannot fail: the blocks are live and ours. */
	if (used)
		kvc_dev_free(kv, used, kv->ids);
}

int kvc_seq_append(struct kvc_seq *seq, uint32_t n, const float *k,
		   const float *v)
{
	struct kvc_kv *kv;
	uint32_t t, used = 0;
	int err;

	if (!seq)
		return kvc_err(-EINVAL, "kvc_seq_append: NULL sequence");
	if (!n)
		return 0;
	kv = seq->kv;
	err = append_check(seq, n, k, v);
	if (!err)
		err = take_blocks(seq, n, NULL, &used);
	if (err)
		return err;
	for (t = 0; t < nr_tables(kv) && !kv->dev; t++)
		append_table(seq, t, n, k, v);
	if (kv->dev) {
		err = kvc_dev_append(seq, n, k, v);
		if (err) {
			unappend(seq, used);
			return err;
		}
		for (t = 0; t < nr_tables(kv); t++)
			seq->tables[t].len += n;
	}
	seq->tokens += n;
	return 0;
}

int kvc_seq_write_layer(struct kvc_seq *seq, uint32_t layer, uint32_t n,
			const float *k, const float *v)
{
	const struct kvc_kv *kv;
	const struct kvc_head_table *t;
	uint32_t bs, hd, h, i, at, block;
	const struct kvc_slot_meta *m;
	int32_t want;

	if (!seq || !k || !v)
		return kvc_err(-EINVAL, "kvc_seq_write_layer: NULL %s",
			       !seq ? "sequence" :
			       !k   ? "k" :
				      "v");
	kv = seq->kv;
	if (layer >= kv->shape.layers)
		return kvc_err(-EINVAL, "kvc_seq_write_layer: layer %u of %u",
			       layer, kv->shape.layers);
	if (kv->dev)
		return kvc_err(-EOPNOTSUPP,
			       "kvc_seq_write_layer: not on a %s cache",
			       kvc_kv_backend_name(kv));
	if (n > seq->tokens)
		return kvc_err(
			-EINVAL,
			"kvc_seq_write_layer: %u KVs, the sequence has %u", n,
			seq->tokens);
	bs = kv->shape.block_size;
	hd = kv->shape.head_dim;
	/* Check every head before writing any: a failed call writes nothing. */
	for (h = 0; h < kv->shape.kv_heads; h++) {
		t = kvc_seq_head(seq, layer, h);
		if (t->len < n)
			return kvc_err(
				-EINVAL,
				"kvc_seq_write_layer: layer %u head %u holds %u KVs, fewer than %u",
				layer, h, t->len, n);
		for (i = 0; i < n; i++) {
			at = t->len - n + i;
			m = slot_meta(kv, t->blocks[at / bs], at % bs);
			want = (int32_t)(seq->tokens - n + i);
			if (m->pos != want)
				return kvc_err(
					-EINVAL,
					"kvc_seq_write_layer: layer %u head %u slot %u holds position %d, not %d",
					layer, h, at, m->pos, want);
		}
	}
	for (h = 0; h < kv->shape.kv_heads; h++) {
		t = kvc_seq_head(seq, layer, h);
		for (i = 0; i < n; i++) {
			uint64_t row = ((uint64_t)h * n + i) * hd;

			at = t->len - n + i;
			block = t->blocks[at / bs];
			store_row(kv, slot_k(kv, block, at % bs), k + row);
			store_row(kv, slot_v(kv, block, at % bs), v + row);
		}
	}
	return 0;
}

int kvc_seq_restore(struct kvc_kv *kv, uint32_t tokens, const uint32_t *lens,
		    struct kvc_seq **out)
{
	struct kvc_seq *seq;
	uint32_t t, taken;
	int err;

	if (!kv || !lens || !out)
		return kvc_err(-EINVAL, "kvc_seq_restore: NULL argument");
	if (tokens > INT32_MAX)
		return kvc_err(-EINVAL, "kvc_seq_restore: %u tokens", tokens);
	for (t = 0; t < nr_tables(kv); t++)
		if (lens[t] > tokens)
			return kvc_err(
				-EINVAL,
				"kvc_seq_restore: table %u holds %u KVs of %u tokens",
				t, lens[t], tokens);
	err = kvc_seq_create(kv, &seq);
	if (err)
		return err;
	err = take_blocks(seq, 0, lens, &taken);
	if (err) {
		kvc_seq_destroy(seq);
		return err;
	}
	for (t = 0; t < nr_tables(kv); t++)
		seq->tables[t].len = lens[t];
	seq->tokens = tokens;
	*out = seq;
	return 0;
}

uint32_t kvc_seq_tokens(const struct kvc_seq *seq)
{
	return seq->tokens;
}

uint32_t kvc_seq_len(const struct kvc_seq *seq, uint32_t layer, uint32_t head)
{
	const struct kvc_model_shape *s = &seq->kv->shape;

	if (layer >= s->layers || head >= s->kv_heads)
		return 0;
	return kvc_seq_head(seq, layer, head)->len;
}

const uint32_t *kvc_seq_table(const struct kvc_seq *seq, uint32_t layer,
			      uint32_t head, uint32_t *nr_blocks)
{
	const struct kvc_model_shape *s = &seq->kv->shape;
	const struct kvc_head_table *t;

	if (layer >= s->layers || head >= s->kv_heads) {
		if (nr_blocks)
			*nr_blocks = 0;
		return NULL;
	}
	t = kvc_seq_head(seq, layer, head);
	if (nr_blocks)
		*nr_blocks = t->nr_blocks;
	return t->blocks;
}

int kvc_seq_truncate(struct kvc_seq *seq, uint32_t layer, uint32_t head,
		     uint32_t new_len)
{
	struct kvc_head_table *t;
	uint32_t bs, keep;
	int err;

	if (!seq)
		return kvc_err(-EINVAL, "kvc_seq_truncate: NULL sequence");
	if (layer >= seq->kv->shape.layers || head >= seq->kv->shape.kv_heads)
		return kvc_err(
			-EINVAL,
			"kvc_seq_truncate: layer %u head %u outside %u x %u",
			layer, head, seq->kv->shape.layers,
			seq->kv->shape.kv_heads);
	t = kvc_seq_head(seq, layer, head);
	if (new_len > t->len)
		return kvc_err(-EINVAL,
			       "kvc_seq_truncate: length %u is beyond %u KVs",
			       new_len, t->len);
	bs = seq->kv->shape.block_size;
	keep = new_len / bs + !!(new_len % bs);
	if (keep < t->nr_blocks) {
		err = kvc_dev_free(seq->kv, t->nr_blocks - keep,
				   t->blocks + keep);
		if (err)
			return err;
		t->nr_blocks = keep;
	}
	t->len = new_len;
	return 0;
}

void kvc_slot_copy(struct kvc_kv *kv, uint32_t from_block, uint32_t from_slot,
		   uint32_t to_block, uint32_t to_slot)
{
	size_t row =
		(size_t)kv->shape.head_dim * kvc_dtype_bytes(kv->shape.dtype);

	memmove(slot_k(kv, to_block, to_slot),
		slot_k(kv, from_block, from_slot), row);
	memmove(slot_v(kv, to_block, to_slot),
		slot_v(kv, from_block, from_slot), row);
	*slot_meta(kv, to_block, to_slot) =
		*slot_meta(kv, from_block, from_slot);
}
