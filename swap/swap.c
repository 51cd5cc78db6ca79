// SPDX-License-Identifier: MIT
/*
 * The swap tier: sequences of a cache written to a file and read back.
 *
 * An entry is one sequence: its blocks, table by table (layer-major, then
 * head, then logical block), fill data slots in the order of its extents;
 * the slot metadata of those blocks (metric and position of each slot),
 * packed, fills the slots after them. Each block's crc32c covers its K
 * and V bytes, then its metadata. The journal's PUT record says where the
 * entry lies and what its checksums are; it is appended only once the
 * data is durable, and a DROP record is durable before the entry's slots
 * can be reused, so the journal never points at slots holding anything
 * but what it describes.
 *
 * Blocks go to the file three ways:
 *  - staged (the host default): blocks are copied into an aligned staging
 *    buffer registered with io_uring, at slot stride, and written from
 *    there with fixed-buffer ops; reads come back the same way;
 *  - zero copy (%KVC_SWAP_ZERO_COPY): a host cache whose blocks fill
 *    their slots exactly and meet the O_DIRECT alignment is written
 *    straight from its chunks and read straight into them (vectored I/O,
 *    one iovec per block). It saves the copy but pins the chunks' pages
 *    on every I/O, which costs more than the copy where the chunks are
 *    shared memory (the host backend's memfd): see the benchmark;
 *  - device: a cuda cache's blocks pass through pinned staging; the
 *    device copies of one region overlap the file writes of the others.
 * The staging is cut into KVC_SIO_GROUPS regions; a region is refilled
 * only once the I/O of its group has completed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kvc/error.h>
#include <kvc/swap.h>

#include "../alloc/clock.h"
#include "../alloc/error.h"
#include "../runtime/device.h"
#include "../runtime/internal.h"
#include "crc32c.h"
#include "extent.h"
#include "journal.h"
#include "sio.h"
#include "swap_internal.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "swap format is little-endian: add byte swaps for this machine");
_Static_assert(KVC_SWAP_NO_URING == KVC_SIO_NO_URING &&
		       KVC_SWAP_NO_DIRECT == KVC_SIO_NO_DIRECT &&
		       KVC_SWAP_QUIET == KVC_SIO_QUIET,
	       "swap and I/O flags agree");

#define SWAP_MAGIC "KVCSWAP1"
#define SWAP_VERSION 1u
/* Slots are whole sectors: O_DIRECT can move them where it takes 512. */
#define SWAP_SLOT_ALIGN 512u
/* Staging: queue depth x io_bytes, within these bounds. */
#define SWAP_STAGE_MIN (4ull << 20)
#define SWAP_STAGE_MAX (32ull << 20)
/* Rewrite the journal when it is this much larger than what is live. */
#define SWAP_JOURNAL_SLACK (4ull << 20)

enum swap_rec {
	SWAP_REC_HEADER = 1,
	SWAP_REC_PUT = 2,
	SWAP_REC_DROP = 3,
};

/* The journal's first record: what the file was made for. */
struct swap_header {
	char magic[8];
	uint32_t version;
	uint32_t layers;
	uint32_t kv_heads;
	uint32_t head_dim;
	uint32_t block_size;
	uint32_t dtype;
	uint64_t block_bytes;
	uint64_t slot_bytes;
	uint64_t meta_block_bytes;
};

/* A PUT record: this head, lens[tables], crcs[blocks], pad, extents. */
struct swap_put {
	uint64_t key;
	uint32_t tokens;
	uint32_t nr_tables;
	uint64_t nr_blocks;
	uint32_t nr_ext;
	uint32_t reserved;
};

/**
 * struct swap_ent - One sequence in the swap.
 * @key: its key.
 * @tokens: its tokens.
 * @lens: KVs of each table.
 * @nr_blocks: blocks over all tables.
 * @crcs: the crc32c of each block, in slot order.
 * @ext: the extents of its slots, in the order they are used.
 * @nr_ext: how many.
 * @slots: data and metadata slots.
 * @bad: a block failed its checksum: never handed out again.
 */
struct swap_ent {
	uint64_t key;
	uint32_t tokens;
	uint32_t *lens;
	uint64_t nr_blocks;
	uint32_t *crcs;
	struct kvc_extent *ext;
	uint32_t nr_ext;
	uint64_t slots;
	bool bad;
};

/**
 * struct kvc_swap - An open swap.
 * @kv: the cache.
 * @p: the parameters (the path copied).
 * @path: the data file.
 * @io: its I/O engine.
 * @jr: the journal.
 * @map: the slot map.
 * @ents: entries, in the order they went out.
 * @nr_ents: how many.
 * @ents_cap: room in @ents.
 * @tables: tables per sequence.
 * @block_bytes: bytes of a block.
 * @slot_bytes: bytes of a slot.
 * @meta_block_bytes: bytes of one block's slot metadata.
 * @ios_per_op: blocks one I/O moves.
 * @zero_copy: blocks go straight between the chunks and the file.
 * @stage: the staging buffer (host, or pinned through @xfer), or NULL.
 * @stage_bytes: its size.
 * @region_bytes: one group's part of it.
 * @xfer: pinned staging of a device cache, or NULL.
 * @meta: buffer for an entry's metadata area.
 * @meta_cap: its size.
 * @ids: scratch: block ids of a sequence in slot order.
 * @ids_cap: room in @ids.
 * @allocated_slots: file space reserved so far (kvc_sio_allocate()).
 * @live_journal: bytes the journal would take holding only what is live.
 * @orphan_slots: slots of swap-outs whose record may have reached the
 *                journal although its append failed: never reused until
 *                the swap is opened again, when the journal decides.
 * @st: the figures.
 */
struct kvc_swap {
	struct kvc_kv *kv;
	struct kvc_swap_params p;
	char *path;
	struct kvc_sio *io;
	struct kvc_journal *jr;
	struct kvc_extents map;
	struct swap_ent **ents;
	uint64_t nr_ents;
	uint64_t ents_cap;
	uint32_t tables;
	uint64_t block_bytes;
	uint64_t slot_bytes;
	uint64_t meta_block_bytes;
	uint32_t ios_per_op;
	bool zero_copy;
	uint8_t *stage;
	uint64_t stage_bytes;
	uint64_t region_bytes;
	struct kvc_dev_xfer *xfer;
	uint8_t *meta;
	uint64_t meta_cap;
	uint32_t *ids;
	uint64_t ids_cap;
	uint64_t allocated_slots;
	uint64_t live_journal;
	uint64_t orphan_slots;
	struct kvc_swap_stats st;
};

static uint64_t round_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b * b;
}

void kvc_swap_params_init(struct kvc_swap_params *p)
{
	memset(p, 0, sizeof(*p));
	p->cap_bytes = 1ull << 30;
	p->queue_depth = 32;
	p->io_bytes = 1u << 20;
}

/* ------------------------------------------------------------------ */
/* Entries */

static void ent_free(struct swap_ent *e)
{
	if (!e)
		return;
	free(e->lens);
	free(e->crcs);
	free(e->ext);
	free(e);
}

static struct swap_ent *ent_find(const struct kvc_swap *sw, uint64_t key,
				 uint64_t *at)
{
	uint64_t i;

	for (i = 0; i < sw->nr_ents; i++) {
		if (sw->ents[i]->key == key) {
			if (at)
				*at = i;
			return sw->ents[i];
		}
	}
	return NULL;
}

/* Room for one more entry, so that adding it cannot fail. */
static int ent_reserve(struct kvc_swap *sw)
{
	struct swap_ent **ents;
	uint64_t cap;

	if (sw->nr_ents == sw->ents_cap) {
		cap = sw->ents_cap ? sw->ents_cap * 2 : 16;
		ents = realloc(sw->ents, cap * sizeof(*ents));
		if (!ents)
			return kvc_err(-ENOMEM,
				       "swap: out of memory for %llu entries",
				       (unsigned long long)cap);
		sw->ents = ents;
		sw->ents_cap = cap;
	}
	return 0;
}

static int ent_add(struct kvc_swap *sw, struct swap_ent *e)
{
	int err = ent_reserve(sw);

	if (!err)
		sw->ents[sw->nr_ents++] = e;
	return err;
}

static void ent_remove(struct kvc_swap *sw, uint64_t at)
{
	memmove(sw->ents + at, sw->ents + at + 1,
		(sw->nr_ents - at - 1) * sizeof(*sw->ents));
	sw->nr_ents--;
}

static uint64_t meta_slots(const struct kvc_swap *sw, uint64_t blocks)
{
	return (blocks * sw->meta_block_bytes + sw->slot_bytes - 1) /
	       sw->slot_bytes;
}

/* Bytes of an entry's PUT payload. */
static uint64_t put_bytes(uint32_t tables, uint64_t blocks, uint32_t nr_ext)
{
	return round_up(sizeof(struct swap_put) + 4ull * tables + 4ull * blocks,
			8) +
	       (uint64_t)nr_ext * sizeof(struct kvc_extent);
}

/* The PUT payload of @e, malloc'ed. */
static int put_encode(const struct kvc_swap *sw, const struct swap_ent *e,
		      void **out, uint32_t *len)
{
	uint64_t n = put_bytes(sw->tables, e->nr_blocks, e->nr_ext);
	struct swap_put h = {
		.key = e->key,
		.tokens = e->tokens,
		.nr_tables = sw->tables,
		.nr_blocks = e->nr_blocks,
		.nr_ext = e->nr_ext,
	};
	uint8_t *p;

	if (n > KVC_JREC_MAX)
		return kvc_err(
			-ENOSPC,
			"swap: a sequence of %llu blocks needs a journal record of %llu bytes, more than %u",
			(unsigned long long)e->nr_blocks, (unsigned long long)n,
			KVC_JREC_MAX);
	p = calloc(1, n);
	if (!p)
		return kvc_err(-ENOMEM, "swap: out of memory for a record");
	memcpy(p, &h, sizeof(h));
	memcpy(p + sizeof(h), e->lens, 4ull * sw->tables);
	if (e->nr_blocks)
		memcpy(p + sizeof(h) + 4ull * sw->tables, e->crcs,
		       4ull * e->nr_blocks);
	if (e->nr_ext)
		memcpy(p + n - (uint64_t)e->nr_ext * sizeof(struct kvc_extent),
		       e->ext, (uint64_t)e->nr_ext * sizeof(struct kvc_extent));
	*out = p;
	*len = (uint32_t)n;
	return 0;
}

/* An entry from a PUT payload, every field checked against the swap. */
static int put_decode(const struct kvc_swap *sw, const void *payload,
		      uint32_t len, struct swap_ent **out)
{
	const uint8_t *p = payload;
	struct swap_put h;
	struct swap_ent *e;
	uint64_t blocks = 0, slots = 0, i;
	uint32_t bs = sw->kv->shape.block_size;

	if (len < sizeof(h))
		return kvc_err(-EINVAL, "swap journal: short PUT record");
	memcpy(&h, p, sizeof(h));
	if (h.nr_tables != sw->tables || h.tokens > INT32_MAX ||
	    h.nr_blocks > (1ull << 40) || h.nr_ext > (1u << 30) ||
	    put_bytes(h.nr_tables, h.nr_blocks, h.nr_ext) != len)
		return kvc_err(
			-EINVAL,
			"swap journal: PUT record of key %llu is malformed",
			(unsigned long long)h.key);
	e = calloc(1, sizeof(*e));
	if (!e)
		return kvc_err(-ENOMEM, "swap: out of memory for an entry");
	e->key = h.key;
	e->tokens = h.tokens;
	e->nr_blocks = h.nr_blocks;
	e->nr_ext = h.nr_ext;
	e->lens = malloc(4ull * sw->tables);
	e->crcs = malloc(4ull * (h.nr_blocks ? h.nr_blocks : 1));
	e->ext = malloc(sizeof(*e->ext) * (h.nr_ext ? h.nr_ext : 1));
	if (!e->lens || !e->crcs || !e->ext) {
		ent_free(e);
		return kvc_err(-ENOMEM, "swap: out of memory for an entry");
	}
	memcpy(e->lens, p + sizeof(h), 4ull * sw->tables);
	memcpy(e->crcs, p + sizeof(h) + 4ull * sw->tables, 4ull * h.nr_blocks);
	memcpy(e->ext, p + len - (uint64_t)h.nr_ext * sizeof(*e->ext),
	       (uint64_t)h.nr_ext * sizeof(*e->ext));
	for (i = 0; i < sw->tables; i++) {
		if (e->lens[i] > e->tokens)
			goto bad;
		blocks += (e->lens[i] + bs - 1) / bs;
	}
	for (i = 0; i < e->nr_ext; i++) {
		if (!e->ext[i].len || e->ext[i].len > (1ull << 40))
			goto bad;
		slots += e->ext[i].len;
	}
	if (blocks != e->nr_blocks || slots != blocks + meta_slots(sw, blocks))
		goto bad;
	e->slots = slots;
	*out = e;
	return 0;
bad:
	ent_free(e);
	return kvc_err(-EINVAL,
		       "swap journal: PUT record of key %llu does not add up",
		       (unsigned long long)h.key);
}

/* ------------------------------------------------------------------ */
/* Slot order: which file offset the j-th slot of an entry is at */

struct slot_cursor {
	const struct swap_ent *e;
	uint32_t ext;
	uint64_t in;
};

/* The next run of up to @max adjacent slots; returns its length. */
static uint64_t cursor_run(struct slot_cursor *c, uint64_t max, uint64_t *first)
{
	const struct kvc_extent *x;
	uint64_t n;

	while (c->ext < c->e->nr_ext && c->in == c->e->ext[c->ext].len) {
		c->ext++;
		c->in = 0;
	}
	if (c->ext == c->e->nr_ext)
		return 0;
	x = &c->e->ext[c->ext];
	n = x->len - c->in;
	if (n > max)
		n = max;
	*first = x->start + c->in;
	c->in += n;
	return n;
}

/* Slot of the @j-th slot of @e. */
static uint64_t slot_of(const struct swap_ent *e, uint64_t j)
{
	uint32_t i;

	for (i = 0; i < e->nr_ext; i++) {
		if (j < e->ext[i].len)
			return e->ext[i].start + j;
		j -= e->ext[i].len;
	}
	return UINT64_MAX;
}

/* ------------------------------------------------------------------ */
/* Buffers */

static int grow(void **p, uint64_t *cap, uint64_t need, uint64_t align)
{
	void *q;

	if (need <= *cap)
		return 0;
	need = round_up(need, 1u << 16);
	if (posix_memalign(&q, align, need))
		return kvc_err(-ENOMEM, "swap: out of memory for %llu bytes",
			       (unsigned long long)need);
	free(*p);
	*p = q;
	*cap = need;
	return 0;
}

/* The block ids of @seq in slot order, in sw->ids. */
static int seq_ids(struct kvc_swap *sw, const struct kvc_seq *seq, uint64_t *n)
{
	uint64_t total = kvc_seq_blocks(seq);
	int err;

	err = grow((void **)&sw->ids, &sw->ids_cap, total * 4 + 4, 64);
	if (err)
		return err;
	kvc_seq_block_ids(seq, sw->ids);
	*n = total;
	return 0;
}

static uint8_t *host_block(const struct kvc_swap *sw, uint32_t id)
{
	return sw->kv->base + (uint64_t)id * sw->block_bytes;
}

static struct kvc_slot_meta *host_meta(const struct kvc_swap *sw, uint32_t id)
{
	return sw->kv->meta + (uint64_t)id * sw->kv->shape.block_size;
}

static uint32_t block_crc(const struct kvc_swap *sw, const void *data,
			  const void *meta)
{
	uint32_t crc = kvc_crc32c(0, data, sw->block_bytes);

	return kvc_crc32c(crc, meta, sw->meta_block_bytes);
}

/* ------------------------------------------------------------------ */
/* Moving an entry's slots */

static int queue(struct kvc_swap *sw, bool write, uint64_t slot,
		 const struct iovec *iov, uint32_t nr, uint32_t group)
{
	struct kvc_sio_op op = {
		.write = write,
		.off = slot * sw->slot_bytes,
		.iov = iov,
		.nr_iov = nr,
		.group = group,
	};

	return kvc_sio_queue(sw->io, &op);
}

/*
 * Blocks move in waves: a wave's I/O is queued in one group, and the
 * checksums of one wave are computed while the I/O of the next is in
 * flight. Staged, a wave fills one region of the staging; zero copy, it
 * is what keeps half the queue busy.
 */
struct wave {
	uint64_t first;
	uint64_t n;
	uint32_t region;
};

static uint64_t wave_blocks(const struct kvc_swap *sw)
{
	uint32_t ops = sw->p.queue_depth / 2 ? sw->p.queue_depth / 2 : 1;

	if (!sw->zero_copy)
		return sw->region_bytes / sw->slot_bytes;
	return (uint64_t)sw->ios_per_op * ops;
}

static uint8_t *region_buf(struct kvc_swap *sw, uint32_t region)
{
	if (sw->xfer)
		return kvc_dev_xfer_buf(sw->xfer, region);
	return sw->stage + (uint64_t)region * sw->region_bytes;
}

/* Where block @j of wave @w is in memory: its chunk, or the staging. */
static uint8_t *wave_block(struct kvc_swap *sw, const struct wave *w,
			   uint64_t j)
{
	if (sw->zero_copy)
		return host_block(sw, sw->ids[w->first + j]);
	return region_buf(sw, w->region) + j * sw->slot_bytes;
}

/* Queue the I/O of a wave: runs of adjacent slots, one op per run. */
static int wave_queue(struct kvc_swap *sw, struct slot_cursor *c,
		      const struct wave *w, bool write)
{
	struct iovec iov[KVC_SIO_MAX_IOV];
	uint64_t k, i, run, first;
	int err;

	for (k = 0; k < w->n; k += run) {
		run = w->n - k < sw->ios_per_op ? w->n - k : sw->ios_per_op;
		first = 0;
		run = cursor_run(c, run, &first);
		if (!run)
			return kvc_err(
				-EFAULT,
				"swap: key %llu has fewer slots than blocks",
				(unsigned long long)c->e->key);
		if (sw->zero_copy) {
			for (i = 0; i < run; i++) {
				iov[i].iov_base = wave_block(sw, w, k + i);
				iov[i].iov_len = sw->block_bytes;
			}
			err = queue(sw, write, first, iov, (uint32_t)run,
				    w->region);
		} else {
			iov[0].iov_base = wave_block(sw, w, k);
			iov[0].iov_len = run * sw->slot_bytes;
			err = queue(sw, write, first, iov, 1, w->region);
		}
		if (err)
			return err;
	}
	return 0;
}

/* Blocks copied into a staging region at slot stride, padding zeroed. */
static int stage_in(struct kvc_swap *sw, const struct wave *w)
{
	uint8_t *dst = region_buf(sw, w->region);
	uint64_t i;
	int err;

	if (sw->xfer) {
		err = kvc_dev_xfer_down(sw->xfer, w->region, sw->ids + w->first,
					(uint32_t)w->n, sw->slot_bytes);
		if (err)
			return err;
		return kvc_dev_xfer_wait(sw->xfer, w->region);
	}
	for (i = 0; i < w->n; i++) {
		memcpy(dst + i * sw->slot_bytes,
		       host_block(sw, sw->ids[w->first + i]), sw->block_bytes);
		memset(dst + i * sw->slot_bytes + sw->block_bytes, 0,
		       sw->slot_bytes - sw->block_bytes);
	}
	return 0;
}

/*
 * Write every block: a region is refilled once its group's writes are
 * done, so the copies into one region (device copies on a cuda cache)
 * and the checksums overlap the writes of the others. The checksums are
 * taken from the bytes that are written: on a device, the only host copy.
 */
static int write_blocks(struct kvc_swap *sw, struct swap_ent *e)
{
	struct slot_cursor c = { .e = e };
	uint64_t per = wave_blocks(sw), j;
	struct wave w = { 0 };
	int err;

	for (w.first = 0; w.first < e->nr_blocks; w.first += w.n) {
		w.n = e->nr_blocks - w.first < per ? e->nr_blocks - w.first :
						     per;
		if (!sw->zero_copy) {
			err = kvc_sio_wait(sw->io, (int)w.region);
			if (!err)
				err = stage_in(sw, &w);
			if (err)
				return err;
		}
		for (j = 0; j < w.n; j++)
			e->crcs[w.first + j] = block_crc(
				sw, wave_block(sw, &w, j),
				sw->meta +
					(w.first + j) * sw->meta_block_bytes);
		err = wave_queue(sw, &c, &w, true);
		if (err)
			return err;
		w.region = (w.region + 1) % KVC_SIO_GROUPS;
	}
	return 0;
}

/*
 * A wave that was read: once its reads are done, every block checked
 * against its crc, then (staged) copied to its block. The first bad one
 * is named in @bad.
 */
static int wave_check(struct kvc_swap *sw, const struct swap_ent *e,
		      const struct wave *w, uint64_t *bad, uint64_t *nr_bad)
{
	uint64_t j;
	int err = 0;

	/* The metadata, read first in the last group, checks every block. */
	if (!w->first)
		err = kvc_sio_wait(sw->io, KVC_SIO_GROUPS - 1);
	if (!err)
		err = kvc_sio_wait(sw->io, (int)w->region);
	if (err)
		return err;
	for (j = 0; j < w->n; j++) {
		if (block_crc(sw, wave_block(sw, w, j),
			      sw->meta +
				      (w->first + j) * sw->meta_block_bytes) ==
		    e->crcs[w->first + j])
			continue;
		if (!(*nr_bad)++)
			*bad = w->first + j;
	}
	if (*nr_bad)
		return -EBADMSG;
	if (sw->zero_copy)
		return 0;
	if (sw->xfer)
		return kvc_dev_xfer_up(sw->xfer, w->region, sw->ids + w->first,
				       (uint32_t)w->n, sw->slot_bytes);
	for (j = 0; j < w->n; j++)
		memcpy(host_block(sw, sw->ids[w->first + j]),
		       wave_block(sw, w, j), sw->block_bytes);
	return 0;
}

/* Read every block, each wave checked while the next one is read. */
static int read_blocks(struct kvc_swap *sw, const struct swap_ent *e,
		       uint64_t *bad, uint64_t *nr_bad)
{
	struct slot_cursor c = { .e = e };
	uint64_t per = wave_blocks(sw);
	struct wave w = { 0 }, prev;
	bool have_prev = false;
	int err;

	for (w.first = 0; w.first < e->nr_blocks; w.first += w.n) {
		w.n = e->nr_blocks - w.first < per ? e->nr_blocks - w.first :
						     per;
		/* The region's last wave is on its way to the device. */
		if (sw->xfer) {
			err = kvc_dev_xfer_wait(sw->xfer, w.region);
			if (err)
				return err;
		}
		err = wave_queue(sw, &c, &w, false);
		if (err)
			return err;
		if (have_prev) {
			err = wave_check(sw, e, &prev, bad, nr_bad);
			if (err)
				return err;
		}
		prev = w;
		have_prev = true;
		w.region = (w.region + 1) % KVC_SIO_GROUPS;
	}
	if (have_prev) {
		err = wave_check(sw, e, &prev, bad, nr_bad);
		if (err)
			return err;
	}
	if (!sw->xfer)
		return 0;
	for (w.region = 0; w.region < KVC_SIO_GROUPS; w.region++) {
		err = kvc_dev_xfer_wait(sw->xfer, w.region);
		if (err)
			return err;
	}
	return 0;
}

/* The metadata area: after the data slots, in the entry's slot order. */
static int move_meta(struct kvc_swap *sw, const struct swap_ent *e, bool write)
{
	uint64_t slots = e->slots - e->nr_blocks, j, first = 0, run;
	struct slot_cursor c = { .e = e };
	struct iovec iov;
	int err;

	/* Past the data slots, then adjacent slots of the area in one I/O. */
	for (j = e->nr_blocks; j; j -= run)
		if (!(run = cursor_run(&c, j, &first)))
			break;
	for (j = 0; j < slots; j += run) {
		run = slots - j < sw->ios_per_op ? slots - j : sw->ios_per_op;
		run = cursor_run(&c, run, &first);
		if (!run)
			return kvc_err(
				-EFAULT,
				"swap: key %llu has fewer slots than its metadata",
				(unsigned long long)e->key);
		iov.iov_base = sw->meta + j * sw->slot_bytes;
		iov.iov_len = run * sw->slot_bytes;
		err = queue(sw, write, first, &iov, 1, KVC_SIO_GROUPS - 1);
		if (err)
			return err;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Journal */

static int journal_put(struct kvc_swap *sw, const struct swap_ent *e)
{
	uint32_t len;
	void *rec;
	int err;

	err = put_encode(sw, e, &rec, &len);
	if (err)
		return err;
	err = kvc_journal_append(sw->jr, SWAP_REC_PUT, rec, len);
	free(rec);
	if (!err)
		sw->live_journal += kvc_journal_rec_bytes(len);
	return err;
}

static int journal_drop(struct kvc_swap *sw, const struct swap_ent *e)
{
	int err = kvc_journal_append(sw->jr, SWAP_REC_DROP, &e->key,
				     sizeof(e->key));

	if (!err)
		sw->live_journal -= kvc_journal_rec_bytes(
			put_bytes(sw->tables, e->nr_blocks, e->nr_ext));
	return err;
}

static void header_of(const struct kvc_swap *sw, struct swap_header *h)
{
	const struct kvc_model_shape *s = &sw->kv->shape;

	memset(h, 0, sizeof(*h));
	memcpy(h->magic, SWAP_MAGIC, 8);
	h->version = SWAP_VERSION;
	h->layers = s->layers;
	h->kv_heads = s->kv_heads;
	h->head_dim = s->head_dim;
	h->block_size = s->block_size;
	h->dtype = (uint32_t)s->dtype;
	h->block_bytes = sw->block_bytes;
	h->slot_bytes = sw->slot_bytes;
	h->meta_block_bytes = sw->meta_block_bytes;
}

/* The journal holding only the header and the live entries. */
static int journal_compact(struct kvc_swap *sw)
{
	struct kvc_jrec *recs;
	struct swap_header h;
	uint64_t i, n = 0;
	int err = 0;

	recs = calloc(sw->nr_ents + 1, sizeof(*recs));
	if (!recs)
		return kvc_err(-ENOMEM, "swap: out of memory for the journal");
	header_of(sw, &h);
	recs[n++] = (struct kvc_jrec){ SWAP_REC_HEADER, &h, sizeof(h) };
	sw->live_journal = kvc_journal_rec_bytes(sizeof(h));
	for (i = 0; i < sw->nr_ents && !err; i++) {
		void *p;
		uint32_t len;

		err = put_encode(sw, sw->ents[i], &p, &len);
		if (!err) {
			recs[n++] = (struct kvc_jrec){ SWAP_REC_PUT, p, len };
			sw->live_journal += kvc_journal_rec_bytes(len);
		}
	}
	if (!err)
		err = kvc_journal_rewrite(sw->jr, recs, (uint32_t)n);
	for (i = 1; i < n; i++)
		free((void *)recs[i].payload);
	free(recs);
	return err;
}

static int maybe_compact_journal(struct kvc_swap *sw)
{
	if (kvc_journal_bytes(sw->jr) <=
	    2 * sw->live_journal + SWAP_JOURNAL_SLACK)
		return 0;
	return journal_compact(sw);
}

/* Replay: the header first, then PUT and DROP records. */
static int replay(void *arg, uint32_t kind, const void *payload, uint32_t len)
{
	struct kvc_swap *sw = arg;
	struct swap_header want, got;
	struct swap_ent *e = NULL;
	uint64_t key, at;
	int err;

	if (kind == SWAP_REC_HEADER) {
		header_of(sw, &want);
		if (len != sizeof(got))
			return kvc_err(-EINVAL,
				       "%s.idx is not a kvc swap journal",
				       sw->path);
		memcpy(&got, payload, sizeof(got));
		if (memcmp(got.magic, SWAP_MAGIC, 8) ||
		    got.version != SWAP_VERSION)
			return kvc_err(
				-EINVAL,
				"%s.idx is not a kvc swap journal of version %u",
				sw->path, SWAP_VERSION);
		if (memcmp(&got, &want, sizeof(got)))
			return kvc_err(
				-EINVAL,
				"%s holds KV of another shape (%u layers, %u KV heads, head_dim %u, block %u, dtype %u) than the cache's",
				sw->path, got.layers, got.kv_heads,
				got.head_dim, got.block_size, got.dtype);
		sw->live_journal = kvc_journal_rec_bytes(len);
		return 0;
	}
	if (!sw->live_journal)
		return kvc_err(-EINVAL, "%s.idx does not start with a header",
			       sw->path);
	if (kind == SWAP_REC_PUT) {
		err = put_decode(sw, payload, len, &e);
		if (err)
			return err;
		if (ent_find(sw, e->key, NULL)) {
			key = e->key;
			ent_free(e);
			return kvc_err(-EINVAL,
				       "%s.idx: key %llu recorded twice",
				       sw->path, (unsigned long long)key);
		}
		err = kvc_extents_mark(&sw->map, e->ext, e->nr_ext);
		if (err) {
			uint64_t end = 0;
			uint32_t i;

			for (i = 0; i < e->nr_ext; i++)
				if (e->ext[i].start + e->ext[i].len > end)
					end = e->ext[i].start + e->ext[i].len;
			ent_free(e);
			if (end > sw->map.cap)
				return kvc_err(
					-ENOSPC,
					"%s: the cap of %llu bytes is below what the swapped sequences hold",
					sw->path,
					(unsigned long long)(sw->map.cap *
							     sw->slot_bytes));
			return kvc_err(-EINVAL,
				       "%s.idx: entries overlap in the file",
				       sw->path);
		}
		err = ent_add(sw, e);
		if (err) {
			kvc_extents_free(&sw->map, e->ext, e->nr_ext);
			ent_free(e);
			return err;
		}
		sw->live_journal += kvc_journal_rec_bytes(len);
		return 0;
	}
	if (kind == SWAP_REC_DROP && len == sizeof(key)) {
		memcpy(&key, payload, sizeof(key));
		e = ent_find(sw, key, &at);
		if (!e)
			return kvc_err(-EINVAL, "%s.idx drops unknown key %llu",
				       sw->path, (unsigned long long)key);
		kvc_extents_free(&sw->map, e->ext, e->nr_ext);
		sw->live_journal -= kvc_journal_rec_bytes(
			put_bytes(sw->tables, e->nr_blocks, e->nr_ext));
		ent_remove(sw, at);
		ent_free(e);
		return 0;
	}
	return kvc_err(-EINVAL, "%s.idx: unknown record kind %u", sw->path,
		       kind);
}

/* ------------------------------------------------------------------ */
/* Open and close */

static int check_params(const struct kvc_swap_params *p, struct kvc_kv *kv)
{
	if (!p || !kv)
		return kvc_err(-EINVAL, "kvc_swap_open: NULL %s",
			       p ? "cache" : "parameters");
	if (!p->path || !*p->path)
		return kvc_err(-EINVAL, "kvc_swap_open: no path");
	if (!p->queue_depth || p->queue_depth > 4096)
		return kvc_err(-EINVAL,
			       "kvc_swap_open: queue depth %u, 1 to 4096",
			       p->queue_depth);
	if (p->io_bytes < 4096 || p->io_bytes > (64u << 20) ||
	    p->io_bytes % 4096)
		return kvc_err(
			-EINVAL,
			"kvc_swap_open: io_bytes %u: a multiple of 4096 from 4 KiB to 64 MiB",
			p->io_bytes);
	if (p->flags & ~(KVC_SWAP_NO_URING | KVC_SWAP_NO_DIRECT |
			 KVC_SWAP_FRESH | KVC_SWAP_QUIET | KVC_SWAP_ZERO_COPY))
		return kvc_err(-EINVAL, "kvc_swap_open: unknown flags %#x",
			       p->flags);
	return 0;
}

/* The engine, buffered where O_DIRECT cannot move whole slots. */
static int open_io(struct kvc_swap *sw)
{
	uint32_t flags = sw->p.flags &
			 (KVC_SIO_NO_URING | KVC_SIO_NO_DIRECT | KVC_SIO_QUIET);
	uint32_t align;
	int err;

	err = kvc_sio_open(sw->path, sw->p.queue_depth, flags, &sw->io);
	if (err)
		return err;
	align = kvc_sio_align(sw->io);
	if (kvc_sio_direct(sw->io) && sw->slot_bytes % align) {
		kvc_sio_close(sw->io);
		sw->io = NULL;
		if (!(sw->p.flags & KVC_SWAP_QUIET))
			kvc_notice(
				"%s: slots of %llu bytes are not a multiple of the O_DIRECT alignment %u: buffered I/O",
				sw->path, (unsigned long long)sw->slot_bytes,
				align);
		err = kvc_sio_open(sw->path, sw->p.queue_depth,
				   flags | KVC_SIO_NO_DIRECT | KVC_SIO_QUIET,
				   &sw->io);
		if (err)
			return err;
	}
	return 0;
}

/* Staging for whatever cannot go straight between chunks and file. */
static int open_stage(struct kvc_swap *sw)
{
	uint64_t bytes = (uint64_t)sw->p.queue_depth * sw->p.io_bytes;
	uint64_t per_op = (uint64_t)sw->ios_per_op * sw->slot_bytes;
	uint32_t align = kvc_sio_align(sw->io);
	int err;

	sw->zero_copy = (sw->p.flags & KVC_SWAP_ZERO_COPY) && !sw->kv->dev &&
			sw->block_bytes == sw->slot_bytes &&
			sw->block_bytes % align == 0 &&
			(uint64_t)(uintptr_t)sw->kv->base % align == 0;
	if (sw->zero_copy)
		return 0;
	if (bytes < SWAP_STAGE_MIN)
		bytes = SWAP_STAGE_MIN;
	if (bytes > SWAP_STAGE_MAX)
		bytes = SWAP_STAGE_MAX;
	/* Each region holds whole I/Os, at least one. */
	sw->region_bytes = bytes / KVC_SIO_GROUPS / per_op * per_op;
	if (!sw->region_bytes)
		sw->region_bytes = per_op;
	sw->stage_bytes = sw->region_bytes * KVC_SIO_GROUPS;
	/* Pinned buffers come in pages; a region fills only its part. */
	if (sw->kv->dev)
		return kvc_dev_xfer_create(sw->kv,
					   round_up(sw->region_bytes, 4096),
					   KVC_SIO_GROUPS, &sw->xfer);
	if (posix_memalign((void **)&sw->stage, 4096, sw->stage_bytes))
		return kvc_err(-ENOMEM,
			       "swap: out of memory for %llu bytes of staging",
			       (unsigned long long)sw->stage_bytes);
	err = kvc_sio_register(sw->io, sw->stage, sw->stage_bytes);
	return err;
}

int kvc_swap_open(const struct kvc_swap_params *p, struct kvc_kv *kv,
		  struct kvc_swap **out)
{
	struct kvc_swap *sw;
	struct swap_header h;
	char *jpath = NULL;
	uint64_t cap;
	int err;

	err = check_params(p, kv);
	if (err)
		return err;
	if (!out)
		return kvc_err(-EINVAL, "kvc_swap_open: NULL out");
	sw = calloc(1, sizeof(*sw));
	if (!sw)
		return kvc_err(-ENOMEM, "kvc_swap_open: out of memory");
	sw->kv = kv;
	sw->p = *p;
	sw->tables = kv->shape.layers * kv->shape.kv_heads;
	sw->block_bytes = kv->block_bytes;
	sw->slot_bytes = round_up(kv->block_bytes, SWAP_SLOT_ALIGN);
	sw->meta_block_bytes =
		(uint64_t)kv->shape.block_size * sizeof(struct kvc_slot_meta);
	sw->ios_per_op = (uint32_t)(p->io_bytes / sw->slot_bytes);
	if (!sw->ios_per_op)
		sw->ios_per_op = 1;
	if (sw->ios_per_op > KVC_SIO_MAX_IOV)
		sw->ios_per_op = KVC_SIO_MAX_IOV;
	cap = p->cap_bytes / sw->slot_bytes;
	sw->path = strdup(p->path);
	if (!sw->path || asprintf(&jpath, "%s.idx", p->path) < 0) {
		jpath = NULL;
		err = kvc_err(-ENOMEM, "kvc_swap_open: out of memory");
		goto fail;
	}
	sw->p.path = sw->path;
	if (!cap) {
		err = kvc_err(
			-EINVAL,
			"kvc_swap_open: a cap of %llu bytes holds no slot of %llu bytes",
			(unsigned long long)p->cap_bytes,
			(unsigned long long)sw->slot_bytes);
		goto fail;
	}
	err = kvc_extents_init(&sw->map, cap);
	if (err)
		goto fail;
	err = open_io(sw);
	if (err)
		goto fail;
	err = kvc_journal_open(jpath, p->flags & KVC_SWAP_FRESH, replay, sw,
			       &sw->jr);
	if (err)
		goto fail;
	sw->st.recovered = sw->nr_ents;
	sw->st.torn_bytes = kvc_journal_torn(sw->jr);
	if (!kvc_journal_records(sw->jr)) {
		/* A new journal: the data file's old content means nothing. */
		header_of(sw, &h);
		err = kvc_sio_truncate(sw->io, 0);
		if (!err)
			err = kvc_journal_append(sw->jr, SWAP_REC_HEADER, &h,
						 sizeof(h));
		sw->live_journal = kvc_journal_rec_bytes(sizeof(h));
	} else if (kvc_journal_records(sw->jr) > sw->nr_ents + 1) {
		err = journal_compact(sw);
	}
	if (err)
		goto fail;
	sw->allocated_slots = sw->map.high;
	err = open_stage(sw);
	if (err)
		goto fail;
	free(jpath);
	*out = sw;
	return 0;
fail:
	free(jpath);
	kvc_swap_close(sw);
	return err;
}

void kvc_swap_close(struct kvc_swap *sw)
{
	uint64_t i;

	if (!sw)
		return;
	if (sw->io)
		kvc_sio_wait(sw->io, -1);
	kvc_dev_xfer_destroy(sw->xfer);
	kvc_sio_close(sw->io);
	kvc_journal_close(sw->jr);
	kvc_extents_destroy(&sw->map);
	for (i = 0; i < sw->nr_ents; i++)
		ent_free(sw->ents[i]);
	free(sw->ents);
	free(sw->stage);
	free(sw->meta);
	free(sw->ids);
	free(sw->path);
	free(sw);
}

/* ------------------------------------------------------------------ */
/* Out */

/* File space for slots up to the map's high water, reserved up front. */
static int reserve_file(struct kvc_swap *sw)
{
	uint64_t high = sw->map.high;
	int err;

	if (high <= sw->allocated_slots)
		return 0;
	err = kvc_sio_allocate(sw->io, sw->allocated_slots * sw->slot_bytes,
			       (high - sw->allocated_slots) * sw->slot_bytes);
	if (err)
		return err;
	sw->allocated_slots = high;
	return 0;
}

/* Every block's metadata packed, in slot order. */
static int gather_meta(struct kvc_swap *sw, struct swap_ent *e)
{
	uint64_t j, area = (e->slots - e->nr_blocks) * sw->slot_bytes;
	int err;

	err = grow((void **)&sw->meta, &sw->meta_cap, area + 1, 4096);
	if (err)
		return err;
	memset(sw->meta, 0, area);
	for (j = 0; j < e->nr_blocks; j++)
		memcpy(sw->meta + j * sw->meta_block_bytes,
		       host_meta(sw, sw->ids[j]), sw->meta_block_bytes);
	return 0;
}

static struct swap_ent *ent_new(const struct kvc_swap *sw, uint64_t key,
				const struct kvc_seq *seq, uint64_t blocks)
{
	struct swap_ent *e = calloc(1, sizeof(*e));
	uint32_t t;

	if (!e)
		return NULL;
	e->key = key;
	e->tokens = seq->tokens;
	e->nr_blocks = blocks;
	e->lens = malloc(4ull * sw->tables);
	e->crcs = malloc(4ull * (blocks ? blocks : 1));
	if (!e->lens || !e->crcs) {
		ent_free(e);
		return NULL;
	}
	for (t = 0; t < sw->tables; t++)
		e->lens[t] = seq->tables[t].len;
	e->slots = blocks + meta_slots(sw, blocks);
	return e;
}

static int out_fail(struct kvc_swap *sw, struct swap_ent *e, int err,
		    bool journaled)
{
	uint32_t i;

	/* Whatever was queued is done before its slots can be reused. */
	kvc_sio_wait(sw->io, -1);
	/*
	 * A record that failed to append may still have reached the file
	 * (written, then the sync failed): it points at these slots, whose
	 * data is durable and right. Never reuse them in this session.
	 */
	if (journaled) {
		for (i = 0; i < e->nr_ext; i++)
			sw->orphan_slots += e->ext[i].len;
	} else if (e->nr_ext) {
		kvc_extents_free(&sw->map, e->ext, e->nr_ext);
	}
	ent_free(e);
	if (err == -ENOSPC || err == -EFBIG)
		sw->st.cap_refusals++;
	return err;
}

int kvc_swap_out(struct kvc_swap *sw, struct kvc_seq *seq, uint64_t key)
{
	uint64_t t0 = kvc_now_ns(), blocks;
	struct swap_ent *e;
	int err;

	if (!sw || !seq)
		return kvc_err(-EINVAL, "kvc_swap_out: NULL %s",
			       sw ? "sequence" : "swap");
	if (seq->kv != sw->kv)
		return kvc_err(
			-EINVAL,
			"kvc_swap_out: the sequence is not of the swap's cache");
	if (ent_find(sw, key, NULL))
		return kvc_err(-EEXIST, "kvc_swap_out: key %llu is in the swap",
			       (unsigned long long)key);
	if (sw->kv->dev) {
		/* Metrics that device attention added, down to the mirror. */
		err = kvc_dev_meta_sync(seq);
		if (err)
			return err;
	}
	err = seq_ids(sw, seq, &blocks);
	if (err)
		return err;
	err = ent_reserve(sw);
	if (err)
		return err;
	e = ent_new(sw, key, seq, blocks);
	if (!e)
		return kvc_err(-ENOMEM, "kvc_swap_out: out of memory");
	if (e->slots) {
		err = kvc_extents_alloc(&sw->map, e->slots, &e->ext,
					&e->nr_ext);
		if (err == -ENOSPC)
			err = kvc_err(
				-ENOSPC,
				"%s: the cap of %llu bytes is reached: %llu bytes needed, %llu free",
				sw->path,
				(unsigned long long)(sw->map.cap *
						     sw->slot_bytes),
				(unsigned long long)(e->slots * sw->slot_bytes),
				(unsigned long long)(kvc_extents_free_slots(
							     &sw->map) *
						     sw->slot_bytes));
		if (err)
			return out_fail(sw, e, err, false);
		err = reserve_file(sw);
		if (err)
			return out_fail(sw, e, err, false);
	}
	err = gather_meta(sw, e);
	if (!err)
		err = move_meta(sw, e, true);
	if (!err)
		err = write_blocks(sw, e);
	/* Data durable first; only then may the journal point at it. */
	if (!err)
		err = kvc_sio_sync(sw->io);
	if (err)
		return out_fail(sw, e, err, false);
	err = journal_put(sw, e);
	if (err)
		return out_fail(sw, e, err, true);
	sw->ents[sw->nr_ents++] = e;
	sw->st.out_seqs++;
	sw->st.out_bytes += e->slots * sw->slot_bytes;
	sw->st.out_ns += kvc_now_ns() - t0;
	/* A failed rewrite leaves the old journal whole: not this call's. */
	maybe_compact_journal(sw);
	return 0;
}

/* ------------------------------------------------------------------ */
/* In */

/* The table, head and block of the @j-th block, for messages. */
static void block_name(const struct kvc_swap *sw, const struct swap_ent *e,
		       uint64_t j, uint32_t *layer, uint32_t *head,
		       uint32_t *block)
{
	uint32_t t, bs = sw->kv->shape.block_size, nb;

	for (t = 0; t < sw->tables; t++) {
		nb = (e->lens[t] + bs - 1) / bs;
		if (j < nb)
			break;
		j -= nb;
	}
	*layer = t / sw->kv->shape.kv_heads;
	*head = t % sw->kv->shape.kv_heads;
	*block = (uint32_t)j;
}

/* The metadata area, then the blocks checked against it. */
static int read_all(struct kvc_swap *sw, const struct swap_ent *e,
		    uint64_t *bad, uint64_t *nr_bad)
{
	uint64_t area = (e->slots - e->nr_blocks) * sw->slot_bytes;
	int err;

	err = grow((void **)&sw->meta, &sw->meta_cap, area + 1, 4096);
	if (!err)
		err = move_meta(sw, e, false);
	if (!err)
		err = read_blocks(sw, e, bad, nr_bad);
	if (!err)
		err = kvc_sio_wait(sw->io, -1);
	return err;
}

/* The metadata read into the mirror (and the device's array). */
static int place_meta(struct kvc_swap *sw, const struct swap_ent *e)
{
	uint64_t j;

	for (j = 0; j < e->nr_blocks; j++)
		memcpy(host_meta(sw, sw->ids[j]),
		       sw->meta + j * sw->meta_block_bytes,
		       sw->meta_block_bytes);
	if (!sw->kv->dev || !e->nr_blocks)
		return 0;
	return kvc_dev_meta_push(sw->kv, sw->ids, (uint32_t)e->nr_blocks);
}

int kvc_swap_in(struct kvc_swap *sw, uint64_t key, struct kvc_seq **out)
{
	uint64_t t0 = kvc_now_ns(), blocks, bad = 0, nr_bad = 0, at;
	uint32_t layer, head, block;
	struct kvc_seq *seq;
	struct swap_ent *e;
	int err;

	if (!sw || !out)
		return kvc_err(-EINVAL, "kvc_swap_in: NULL %s",
			       sw ? "out" : "swap");
	e = ent_find(sw, key, &at);
	if (!e)
		return kvc_err(-ENOENT, "kvc_swap_in: no key %llu in the swap",
			       (unsigned long long)key);
	if (e->bad)
		return kvc_err(
			-EBADMSG,
			"kvc_swap_in: key %llu failed its checksum before: it can only be dropped",
			(unsigned long long)key);
	err = kvc_seq_restore(sw->kv, e->tokens, e->lens, &seq);
	if (err)
		return err;
	err = seq_ids(sw, seq, &blocks);
	if (!err && blocks != e->nr_blocks)
		err = kvc_err(-EFAULT, "kvc_swap_in: %llu blocks for %llu",
			      (unsigned long long)blocks,
			      (unsigned long long)e->nr_blocks);
	if (!err)
		err = read_all(sw, e, &bad, &nr_bad);
	if (err == -EBADMSG) {
		block_name(sw, e, bad, &layer, &head, &block);
		e->bad = true;
		sw->st.checksum_failures += nr_bad;
		err = kvc_err(
			-EBADMSG,
			"%s: key %llu: %llu blocks fail their checksum, the first at layer %u, head %u, block %u",
			sw->path, (unsigned long long)key,
			(unsigned long long)nr_bad, layer, head, block);
	}
	if (!err)
		err = place_meta(sw, e);
	/* Durable before the slots can be reused: see the file's head. */
	if (!err)
		err = journal_drop(sw, e);
	if (err) {
		kvc_sio_wait(sw->io, -1);
		kvc_seq_destroy(seq);
		return err;
	}
	kvc_extents_free(&sw->map, e->ext, e->nr_ext);
	ent_remove(sw, at);
	sw->st.in_seqs++;
	sw->st.in_bytes += e->slots * sw->slot_bytes;
	sw->st.in_ns += kvc_now_ns() - t0;
	ent_free(e);
	maybe_compact_journal(sw);
	*out = seq;
	return 0;
}

int kvc_swap_drop(struct kvc_swap *sw, uint64_t key)
{
	struct swap_ent *e;
	uint64_t at;
	int err;

	if (!sw)
		return kvc_err(-EINVAL, "kvc_swap_drop: NULL swap");
	e = ent_find(sw, key, &at);
	if (!e)
		return kvc_err(-ENOENT,
			       "kvc_swap_drop: no key %llu in the swap",
			       (unsigned long long)key);
	err = journal_drop(sw, e);
	if (err)
		return err;
	kvc_extents_free(&sw->map, e->ext, e->nr_ext);
	ent_remove(sw, at);
	ent_free(e);
	maybe_compact_journal(sw);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Queries */

int kvc_swap_lookup(const struct kvc_swap *sw, uint64_t key,
		    struct kvc_swap_entry *out)
{
	const struct swap_ent *e;

	if (!sw || !out)
		return kvc_err(-EINVAL, "kvc_swap_lookup: NULL argument");
	e = ent_find(sw, key, NULL);
	if (!e)
		return -ENOENT;
	out->key = e->key;
	out->tokens = e->tokens;
	out->blocks = e->nr_blocks;
	out->bytes = e->slots * sw->slot_bytes;
	out->bad = e->bad;
	return 0;
}

uint64_t kvc_swap_keys(const struct kvc_swap *sw, uint64_t *keys, uint64_t max)
{
	uint64_t i;

	if (!sw)
		return 0;
	for (i = 0; keys && i < max && i < sw->nr_ents; i++)
		keys[i] = sw->ents[i]->key;
	return sw->nr_ents;
}

int kvc_swap_locate(const struct kvc_swap *sw, uint64_t key, uint32_t layer,
		    uint32_t head, uint32_t block, uint64_t *offset,
		    uint32_t *crc)
{
	uint32_t t, bs, target;
	const struct swap_ent *e;
	uint64_t j = 0;

	if (!sw || !offset || !crc)
		return kvc_err(-EINVAL, "kvc_swap_locate: NULL argument");
	e = ent_find(sw, key, NULL);
	if (!e)
		return kvc_err(-ENOENT, "kvc_swap_locate: no key %llu",
			       (unsigned long long)key);
	bs = sw->kv->shape.block_size;
	if (layer >= sw->kv->shape.layers || head >= sw->kv->shape.kv_heads)
		return kvc_err(-ENOENT, "kvc_swap_locate: no layer %u head %u",
			       layer, head);
	target = layer * sw->kv->shape.kv_heads + head;
	for (t = 0; t < target; t++)
		j += (e->lens[t] + bs - 1) / bs;
	if (block >= (e->lens[target] + bs - 1) / bs)
		return kvc_err(
			-ENOENT,
			"kvc_swap_locate: layer %u head %u holds no block %u",
			layer, head, block);
	j += block;
	*offset = slot_of(e, j) * sw->slot_bytes;
	*crc = e->crcs[j];
	return 0;
}

void kvc_swap_get_stats(const struct kvc_swap *sw, struct kvc_swap_stats *st)
{
	*st = sw->st;
	st->engine = kvc_sio_engine(sw->io);
	st->direct = kvc_sio_direct(sw->io);
	st->zero_copy = sw->zero_copy;
	st->slot_bytes = sw->slot_bytes;
	st->cap_bytes = sw->map.cap * sw->slot_bytes;
	st->file_bytes = sw->map.high * sw->slot_bytes;
	st->used_bytes = sw->map.used * sw->slot_bytes;
	st->entries = sw->nr_ents;
	st->io_errors = kvc_sio_errors(sw->io);
}

int kvc_swap_check(const struct kvc_swap *sw)
{
	struct kvc_extents seen;
	uint64_t i, used = 0;
	int err;

	if (!sw)
		return kvc_err(-EINVAL, "kvc_swap_check: NULL swap");
	err = kvc_extents_check(&sw->map);
	if (err)
		return err;
	err = kvc_extents_init(&seen, sw->map.cap);
	if (err)
		return err;
	for (i = 0; i < sw->nr_ents && !err; i++) {
		const struct swap_ent *e = sw->ents[i];
		uint64_t j, slots = 0;

		for (j = 0; j < e->nr_ext; j++) {
			const struct kvc_extent *x = &e->ext[j];
			uint64_t s;

			slots += x->len;
			for (s = x->start; s < x->start + x->len; s++) {
				if (s >= sw->map.cap ||
				    !(sw->map.bits[s / 64] >> (s % 64) & 1)) {
					err = kvc_err(
						-EFAULT,
						"swap: key %llu holds slot %llu, which the map says is free",
						(unsigned long long)e->key,
						(unsigned long long)s);
					break;
				}
			}
		}
		if (!err && kvc_extents_mark(&seen, e->ext, e->nr_ext))
			err = kvc_err(
				-EFAULT,
				"swap: key %llu shares slots with another entry",
				(unsigned long long)e->key);
		if (!err && slots != e->slots)
			err = kvc_err(
				-EFAULT,
				"swap: key %llu has %llu slots in its extents, %llu counted",
				(unsigned long long)e->key,
				(unsigned long long)slots,
				(unsigned long long)e->slots);
		used += slots;
	}
	if (!err && used + sw->orphan_slots != sw->map.used)
		err = kvc_err(
			-EFAULT,
			"swap: entries hold %llu slots, the map says %llu",
			(unsigned long long)used,
			(unsigned long long)sw->map.used);
	kvc_extents_destroy(&seen);
	return err;
}

void kvc_swap_set_fault(struct kvc_swap *sw, kvc_sio_fault_fn fn, void *arg)
{
	kvc_sio_set_fault(sw->io, fn, arg);
}
