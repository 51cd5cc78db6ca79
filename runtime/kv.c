// SPDX-License-Identifier: MIT
/*
 * The paged KV cache: a model shape, the pool its blocks come from, the
 * per-slot metadata beside them, and the table of live sequences. Owns
 * the pool's move hook, so compaction patches block tables and moves slot
 * metadata with its block. Never lets a block table point at a block that
 * is not live and tagged with that table's entry (kvc_kv_check() says so).
 * On the cuda backend the cache also has a device side (device.h): the
 * blocks and the metadata live on the device, kv->meta is their host
 * mirror, and the move hook moves both.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <kvc/compact.h>
#include <kvc/kv.h>
#include <kvc/pool.h>

#include "../alloc/error.h"
#include "device.h"
#include "internal.h"

/* Blocks per chunk at most: the pool's free stacks hold 16-bit indices. */
#define KV_MAX_BLOCKS_PER_CHUNK 65536u

int kvc_model_shape_check(const struct kvc_model_shape *shape)
{
	uint64_t tables;

	if (!shape)
		return kvc_err(-EINVAL, "kvc_model_shape_check: NULL shape");
	if (!shape->layers)
		return kvc_err(-EINVAL, "shape: layers is 0");
	if (!shape->kv_heads)
		return kvc_err(-EINVAL, "shape: kv_heads is 0");
	if (!shape->q_heads || shape->q_heads % shape->kv_heads)
		return kvc_err(
			-EINVAL,
			"shape: q_heads %u is not a non-zero multiple of kv_heads %u",
			shape->q_heads, shape->kv_heads);
	tables = (uint64_t)shape->layers * shape->kv_heads;
	if (tables > (1ull << KVC_TABLE_BITS))
		return kvc_err(
			-EINVAL,
			"shape: layers %u x kv_heads %u = %llu block tables per sequence, at most %llu",
			shape->layers, shape->kv_heads,
			(unsigned long long)tables,
			(unsigned long long)(1ull << KVC_TABLE_BITS));
	switch (shape->head_dim) {
	case 64:
	case 80:
	case 96:
	case 128:
	case 256:
		break;
	default:
		return kvc_err(
			-EINVAL,
			"shape: head_dim %u is not one of 64, 80, 96, 128, 256",
			shape->head_dim);
	}
	switch (shape->block_size) {
	case 8:
	case 16:
	case 32:
		break;
	default:
		return kvc_err(-EINVAL,
			       "shape: block_size %u is not one of 8, 16, 32",
			       shape->block_size);
	}
	if (shape->dtype != KVC_DTYPE_F32 && shape->dtype != KVC_DTYPE_F16 &&
	    shape->dtype != KVC_DTYPE_BF16)
		return kvc_err(-EINVAL,
			       "shape: dtype %d is not f32, f16 or bf16",
			       (int)shape->dtype);
	return 0;
}

static const char *const dtype_names[] = {
	[KVC_DTYPE_F32] = "f32",
	[KVC_DTYPE_F16] = "f16",
	[KVC_DTYPE_BF16] = "bf16",
};

const char *kvc_dtype_name(enum kvc_dtype dtype)
{
	if ((unsigned)dtype < sizeof(dtype_names) / sizeof(dtype_names[0]))
		return dtype_names[dtype];
	return "?";
}

int kvc_dtype_parse(const char *name, enum kvc_dtype *out)
{
	uint32_t i;

	if (!out)
		return kvc_err(-EINVAL, "kvc_dtype_parse: NULL out");
	for (i = 0; name && i < sizeof(dtype_names) / sizeof(dtype_names[0]);
	     i++) {
		if (!strcmp(name, dtype_names[i])) {
			*out = (enum kvc_dtype)i;
			return 0;
		}
	}
	return kvc_err(-EINVAL, "storage type '%s' is not f16, bf16 or f32",
		       name ? name : "(null)");
}

uint64_t kvc_kv_block_bytes(const struct kvc_model_shape *shape)
{
	return 2ull * shape->block_size * shape->head_dim *
	       kvc_dtype_bytes(shape->dtype);
}

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t r = a % b;

		a = b;
		b = r;
	}
	return a;
}

/*
 * The smallest multiple of @gran that whole blocks fill: lcm(block, gran).
 * head_dim 80 or 96 gives blocks of 5 or 3 times a power of two, so the
 * chunk is 5 or 3 granules.
 */
static int chunk_size(uint64_t block_bytes, uint64_t gran, uint64_t *out)
{
	uint64_t bpc = gran / gcd_u64(block_bytes, gran);

	if (bpc > KV_MAX_BLOCKS_PER_CHUNK)
		return kvc_err(
			-EINVAL,
			"blocks of %llu bytes make %llu blocks per chunk of granularity %llu, at most %u",
			(unsigned long long)block_bytes,
			(unsigned long long)bpc, (unsigned long long)gran,
			KV_MAX_BLOCKS_PER_CHUNK);
	if (__builtin_mul_overflow(block_bytes, bpc, out))
		return kvc_err(
			-EINVAL,
			"chunk of %llu blocks of %llu bytes overflows 64 bits",
			(unsigned long long)bpc,
			(unsigned long long)block_bytes);
	return 0;
}

/*
 * The pool moved blocks: point each owner's table entry at the new id and
 * carry the slot metadata along (on the device too, queued on the cache's
 * stream: it may run beside the pool's block copies, which touch only the
 * blocks, never the metadata array). Runs under the pool's lock. An owner
 * tag that names no table entry is skipped; kvc_kv_check() would report
 * it.
 */
static void kv_move_hook(void *arg, const struct kvc_move *moves, uint32_t n)
{
	struct kvc_kv *kv = arg;
	uint32_t bs = kv->shape.block_size, i;
	uint32_t nr_tables = kv->shape.layers * kv->shape.kv_heads;

	for (i = 0; i < n; i++) {
		uint32_t id = kvc_owner_seq(moves[i].owner);
		uint32_t table = kvc_owner_table(moves[i].owner);
		uint32_t index = kvc_owner_index(moves[i].owner);
		struct kvc_head_table *t;

		if (id >= kv->nr_ids || !kv->seqs[id] || table >= nr_tables)
			continue;
		t = &kv->seqs[id]->tables[table];
		if (index >= t->nr_blocks || t->blocks[index] != moves[i].from)
			continue;
		t->blocks[index] = moves[i].to;
		memcpy(&kv->meta[(uint64_t)moves[i].to * bs],
		       &kv->meta[(uint64_t)moves[i].from * bs],
		       bs * sizeof(*kv->meta));
	}
	/* Every moved block: metadata of a skipped one is harmless to copy. */
	kvc_dev_blocks_moved(kv, moves, n);
}

static int open_pool(struct kvc_kv *kv, const struct kvc_kv_params *params,
		     struct kvc_backend *be)
{
	struct kvc_pool_params pp;
	struct kvc_pool_stats st;
	uint64_t chunk_bytes = 0;
	int err;

	err = chunk_size(kv->block_bytes, kvc_backend_granularity(be),
			 &chunk_bytes);
	if (err)
		return err;
	kvc_pool_params_init(&pp);
	pp.block_bytes = kv->block_bytes;
	pp.capacity_blocks = params->capacity_blocks;
	pp.chunk_bytes = chunk_bytes;
	pp.empty_chunks_kept = params->empty_chunks_kept;
	pp.max_mapped_bytes = params->max_mapped_bytes;
	pp.backend_kind = params->backend_kind;
	pp.backend = be;
	pp.name = params->name;
	pp.flags = params->flags;
	err = kvc_pool_create(&pp, &kv->pool);
	if (err)
		return err;
	kvc_pool_get_stats(kv->pool, &st, NULL);
	kv->capacity_blocks = st.blocks_total;
	err = kvc_dev_create(kv, be, &kv->dev);
	if (err) {
		kvc_pool_destroy(kv->pool);
		return err;
	}
	/* Block memory the host may touch only on the host backend. */
	if (!kv->dev)
		kv->base = (uint8_t *)(uintptr_t)kvc_pool_base(kv->pool);
	return 0;
}

/* Metadata for every slot of the capacity, paid for only where touched. */
static int map_meta(struct kvc_kv *kv)
{
	uint64_t slots, bytes;
	void *p;

	if (__builtin_mul_overflow(kv->capacity_blocks,
				   (uint64_t)kv->shape.block_size, &slots) ||
	    __builtin_mul_overflow(slots, (uint64_t)sizeof(*kv->meta),
				   &bytes) ||
	    bytes > SIZE_MAX)
		return kvc_err(
			-EINVAL,
			"slot metadata for %llu blocks of %u tokens overflows",
			(unsigned long long)kv->capacity_blocks,
			kv->shape.block_size);
	p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return kvc_err(-ENOMEM,
			       "cannot reserve %llu bytes of slot metadata",
			       (unsigned long long)bytes);
	kv->meta = p;
	kv->meta_bytes = bytes;
	return 0;
}

int kvc_kv_create(const struct kvc_kv_params *params, struct kvc_kv **out)
{
	struct kvc_backend *be;
	struct kvc_kv *kv;
	int err;

	if (!params || !out)
		return kvc_err(-EINVAL, "kvc_kv_create: NULL %s",
			       params ? "out" : "params");
	err = kvc_model_shape_check(&params->shape);
	if (err)
		return err;
	if (!params->capacity_blocks)
		return kvc_err(-EINVAL, "kvc_kv_create: capacity_blocks is 0");
	kv = calloc(1, sizeof(*kv));
	if (!kv)
		return kvc_err(-ENOMEM, "out of memory for the KV cache");
	kv->shape = params->shape;
	kv->block_bytes = kvc_kv_block_bytes(&kv->shape);

	be = params->backend;
	if (!be) {
		err = kvc_dev_backend_open(params->backend_kind, &params->shape,
					   &be);
		if (err)
			goto err_free;
		kv->own_backend = be;
	}
	err = open_pool(kv, params, be);
	if (err)
		goto err_backend;
	err = map_meta(kv);
	if (err)
		goto err_pool;
	err = kvc_pool_set_move_hook(kv->pool, kv_move_hook, kv);
	if (err)
		goto err_meta;
	*out = kv;
	return 0;

err_meta:
	munmap(kv->meta, kv->meta_bytes);
err_pool:
	kvc_dev_destroy(kv->dev);
	kvc_pool_destroy(kv->pool);
err_backend:
	kvc_backend_close(kv->own_backend);
err_free:
	free(kv);
	return err;
}

void kvc_kv_destroy(struct kvc_kv *kv)
{
	uint32_t id;

	if (!kv)
		return;
	/* The pool goes whole: no need to give the blocks back one by one. */
	for (id = 0; id < kv->nr_ids; id++) {
		struct kvc_seq *seq = kv->seqs[id];
		uint32_t t, nr_tables = kv->shape.layers * kv->shape.kv_heads;

		if (!seq)
			continue;
		for (t = 0; t < nr_tables; t++)
			free(seq->tables[t].blocks);
		free(seq->tables);
		free(seq);
	}
	/* Queued work may still use blocks: it finishes before they go. */
	kvc_dev_destroy(kv->dev);
	kvc_pool_destroy(kv->pool);
	kvc_backend_close(kv->own_backend);
	munmap(kv->meta, kv->meta_bytes);
	free(kv->seqs);
	free(kv->ids);
	free(kv);
}

struct kvc_pool *kvc_kv_pool(struct kvc_kv *kv)
{
	return kv->pool;
}

const struct kvc_model_shape *kvc_kv_shape(const struct kvc_kv *kv)
{
	return &kv->shape;
}

const char *kvc_kv_backend_name(const struct kvc_kv *kv)
{
	return kvc_backend_name(kvc_pool_backend(kv->pool));
}

void kvc_kv_fence(const struct kvc_kv *kv, struct kvc_fence *f)
{
	kvc_dev_fence(kv->dev, f);
}

uint64_t kvc_kv_device_overhead(const struct kvc_kv *kv)
{
	return kvc_dev_overhead(kv->dev);
}

int kvc_kv_compact(struct kvc_kv *kv, struct kvc_compact_result *res)
{
	struct kvc_compact_params cp = { 0 };
	struct kvc_fence f;

	if (!kv)
		return kvc_err(-EINVAL, "kvc_kv_compact: NULL cache");
	kvc_kv_fence(kv, &f);
	cp.fence = &f;
	return kvc_pool_compact(kv->pool, &cp, res);
}

static int check_table(struct kvc_kv *kv, const struct kvc_seq *seq,
		       uint32_t table)
{
	const struct kvc_head_table *t = &seq->tables[table];
	uint32_t bs = kv->shape.block_size, i;
	uint64_t owner;

	if (t->nr_blocks != t->len / bs + !!(t->len % bs))
		return kvc_err(
			-EFAULT,
			"seq %u table %u: %u blocks for %u KVs of block size %u",
			seq->id, table, t->nr_blocks, t->len, bs);
	if (t->len > seq->tokens)
		return kvc_err(
			-EFAULT,
			"seq %u table %u: %u KVs, more than its %u tokens",
			seq->id, table, t->len, seq->tokens);
	if (t->nr_blocks > t->cap || (t->nr_blocks && !t->blocks))
		return kvc_err(-EFAULT,
			       "seq %u table %u: %u blocks in room for %u",
			       seq->id, table, t->nr_blocks, t->cap);
	for (i = 0; i < t->nr_blocks; i++) {
		uint32_t b = t->blocks[i];

		if (b >= kv->capacity_blocks || !kvc_pool_is_live(kv->pool, b))
			return kvc_err(
				-EFAULT,
				"seq %u table %u entry %u: block %u is not live",
				seq->id, table, i, b);
		if (kvc_pool_get_owner(kv->pool, b, &owner))
			return kvc_err(
				-EFAULT,
				"seq %u table %u entry %u: no owner for block %u",
				seq->id, table, i, b);
		if (owner != kvc_owner_tag(seq->id, table, i))
			return kvc_err(
				-EFAULT,
				"seq %u table %u entry %u: block %u is owned by seq %u table %u entry %u",
				seq->id, table, i, b, kvc_owner_seq(owner),
				kvc_owner_table(owner), kvc_owner_index(owner));
	}
	for (i = 0; i < t->len; i++) {
		const struct kvc_slot_meta *m =
			&kv->meta[(uint64_t)t->blocks[i / bs] * bs + i % bs];

		if (m->pos < 0 || (uint32_t)m->pos >= seq->tokens)
			return kvc_err(
				-EFAULT,
				"seq %u table %u KV %u: position %d outside [0, %u)",
				seq->id, table, i, m->pos, seq->tokens);
	}
	return 0;
}

int kvc_kv_check(struct kvc_kv *kv)
{
	uint32_t nr_tables, id, t, nr_seqs = 0;
	struct kvc_pool_stats st;
	uint64_t blocks = 0;
	int err;

	if (!kv)
		return kvc_err(-EINVAL, "kvc_kv_check: NULL cache");
	err = kvc_pool_check(kv->pool);
	if (err)
		return err;
	nr_tables = kv->shape.layers * kv->shape.kv_heads;
	for (id = 0; id < kv->nr_ids; id++) {
		const struct kvc_seq *seq = kv->seqs[id];

		if (!seq)
			continue;
		nr_seqs++;
		if (seq->id != id || seq->kv != kv)
			return kvc_err(-EFAULT,
				       "sequence in slot %u says id %u%s", id,
				       seq->id,
				       seq->kv != kv ? ", another cache" : "");
		for (t = 0; t < nr_tables; t++) {
			err = check_table(kv, seq, t);
			if (err)
				return err;
			blocks += seq->tables[t].nr_blocks;
		}
	}
	if (nr_seqs != kv->nr_seqs)
		return kvc_err(-EFAULT, "%u sequences found, %u counted",
			       nr_seqs, kv->nr_seqs);
	kvc_pool_get_stats(kv->pool, &st, NULL);
	if (st.blocks_live != blocks)
		return kvc_err(
			-EFAULT,
			"pool has %llu live blocks, the tables hold %llu",
			(unsigned long long)st.blocks_live,
			(unsigned long long)blocks);
	if (!kv->dev != !!kv->base)
		return kvc_err(
			-EFAULT, "a %s cache %s a host address for its blocks",
			kv->dev ? "device" : "host", kv->dev ? "has" : "lacks");
	return kvc_dev_check(kv);
}

void kvc_kv_usage(const struct kvc_kv *kv, struct kvc_pool_usage *usage)
{
	uint64_t per_kv, tokens = 0, kvs = 0;
	uint32_t nr_tables, i, t;

	if (!usage)
		return;
	memset(usage, 0, sizeof(*usage));
	if (!kv)
		return;
	/* One KV (K and V of one token in one head) in bytes. */
	per_kv = kv->block_bytes / kv->shape.block_size;
	nr_tables = kv->shape.layers * kv->shape.kv_heads;
	for (i = 0; i < kv->nr_ids; i++) {
		const struct kvc_seq *seq = kv->seqs[i];

		if (!seq)
			continue;
		tokens += kvc_seq_tokens(seq);
		for (t = 0; t < nr_tables; t++)
			kvs += seq->tables[t].len;
	}
	usage->logical_bytes = tokens * nr_tables * per_kv;
	usage->live_bytes = kvs * per_kv;
	usage->seqs = kv->nr_seqs;
}
