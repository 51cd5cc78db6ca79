/* Description: a device cache's blocks to and from pinned buffers (kvc_dev_xfer_*) and the slot metadata pushed up (kvc_dev_meta_push), against a host cache fed alike; async streams, bad arguments and driver faults */
// SPDX-License-Identifier: MIT
/*
 * Each test fills two caches with the same appends: one on the host
 * backend, whose blocks the test reads directly, and one on the cuda
 * backend over the fake driver. Both pools have the same granularity and
 * history, so a block's bytes on the device cache are the host cache's
 * bytes of the block at the same place in the same sequence's tables.
 * Teardown checks the fake holds nothing and saw no broken rule (races
 * and frees of memory queued copies use included).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/kv.h>
#include <kvc/kvc.h>
#include <kvc/pool.h>

#include "../runtime/device.h"
#include "../runtime/internal.h"
#include "backend.h"
#include "fake_check.h"
#include "fake_driver.h"

#define GRAN (64ull << 10)
#define CAPACITY 512
#define NR_SEQS 3
#define HOST 0
#define DEV 1
#define BUF_BYTES (128u << 10)
/* What the test writes into buffers before a copy, to see what changed. */
#define POISON 0xa5

static const struct kvc_model_shape shape_f16 = {
	.layers = 2,
	.q_heads = 4,
	.kv_heads = 2,
	.head_dim = 64,
	.block_size = 16,
	.dtype = KVC_DTYPE_F16,
};

/**
 * struct fixture - A host cache and a device cache, filled alike.
 * @drv: the fake driver.
 * @be: the backends, [HOST] and [DEV].
 * @kv: the caches.
 * @seq: their sequences.
 * @xfer: the device cache's buffers, or NULL.
 * @rng: the test's random state.
 */
struct fixture {
	const struct kvc_cuda_driver *drv;
	struct kvc_backend *be[2];
	struct kvc_kv *kv[2];
	struct kvc_seq *seq[2][NR_SEQS];
	struct kvc_dev_xfer *xfer;
	uint64_t rng;
};

/**
 * struct blocks - The blocks of one sequence, in table order.
 * @id: their ids in each cache.
 * @filled: KVs each holds.
 * @n: how many.
 */
struct blocks {
	uint32_t id[2][CAPACITY];
	uint32_t filled[CAPACITY];
	uint32_t n;
};

/* ------------------------------------------------------------------ */
/* Fake driver checks */

static void assert_no_violation(void)
{
	struct kvc_fake_counts fc;

	kvc_fake_counts(&fc);
	if (fc.violations)
		fail_msg("driver rule broken: %s", kvc_fake_last_violation());
}

static uint64_t fake_calls(enum kvc_fake_fn fn)
{
	struct kvc_fake_counts fc;

	kvc_fake_counts(&fc);
	return fc.calls[fn];
}

/* ------------------------------------------------------------------ */
/* Fixtures */

static int setup(void **state)
{
	static const struct kvc_fake_config cfg = { .granularity = GRAN,
						    .devices = 1 };
	struct kvc_kv_params kp = { 0 };
	struct fixture *fx = calloc(1, sizeof(*fx));
	int c;

	if (!fx)
		return -1;
	fx->drv = kvc_fake_driver(&cfg);
	if (!fx->drv || kvc_backend_open_host(GRAN, &fx->be[HOST]) ||
	    kvc_backend_open_cuda_driver(fx->drv, 0, &fx->be[DEV])) {
		fprintf(stderr, "test_dev_xfer setup: %s\n", kvc_last_error());
		kvc_backend_close(fx->be[HOST]);
		free(fx);
		return -1;
	}
	kp.shape = shape_f16;
	kp.capacity_blocks = CAPACITY;
	kp.flags = KVC_POOL_NO_STATS_PAGE;
	for (c = HOST; c <= DEV; c++) {
		kp.backend = fx->be[c];
		if (kvc_kv_create(&kp, &fx->kv[c])) {
			fprintf(stderr, "test_dev_xfer setup: %s\n",
				kvc_last_error());
			return -1;
		}
	}
	fx->rng = 0x9e3779b97f4a7c15ull;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	int c;

	kvc_dev_xfer_destroy(fx->xfer);
	for (c = HOST; c <= DEV; c++)
		kvc_kv_destroy(fx->kv[c]);
	kvc_fake_set_async(false);
	kvc_backend_close(fx->be[DEV]);
	kvc_backend_close(fx->be[HOST]);
	FAKE_EXPECT_CLEAN(FAKE_KEEP_NONE);
	free(fx);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Data */

/* Uniform in [-4, 4), a multiple of 2^-8: exact in f16. */
static float rnd(uint64_t *rng)
{
	return (float)((int32_t)(rng_next(rng) >> 53) - 1024) / 256.0f;
}

static void append_both(struct fixture *fx, int s, uint32_t n)
{
	const struct kvc_model_shape *sh = &shape_f16;
	uint64_t i,
		count = (uint64_t)sh->layers * sh->kv_heads * n * sh->head_dim;
	float *k = malloc(count * sizeof(float)),
	      *v = malloc(count * sizeof(float));
	int c, err;

	assert_non_null(k);
	assert_non_null(v);
	for (i = 0; i < count; i++) {
		k[i] = rnd(&fx->rng);
		v[i] = rnd(&fx->rng);
	}
	for (c = HOST; c <= DEV; c++) {
		if (!fx->seq[c][s])
			assert_int_equal(
				kvc_seq_create(fx->kv[c], &fx->seq[c][s]), 0);
		err = kvc_seq_append(fx->seq[c][s], n, k, v);
		if (err)
			fail_msg("kvc_seq_append(%s) = %d: %s",
				 c ? "device" : "host", err, kvc_last_error());
		KV_CHECK(fx->kv[c]);
	}
	free(k);
	free(v);
}

/*
 * Three sequences whose appends interleave, so that a sequence's blocks
 * come in runs of adjacent ids broken by the others'.
 */
static void fill(struct fixture *fx)
{
	append_both(fx, 0, 20);
	append_both(fx, 1, 40);
	append_both(fx, 0, 30);
	append_both(fx, 2, 7);
	append_both(fx, 1, 9);
}

static void seq_blocks(const struct fixture *fx, int s, struct blocks *b)
{
	uint32_t nr = shape_f16.layers * shape_f16.kv_heads,
		 bs = shape_f16.block_size, t, i;
	int c;

	b->n = 0;
	for (t = 0; t < nr; t++) {
		const struct kvc_head_table *h = &fx->seq[HOST][s]->tables[t];

		EXPECT_U64(fx->seq[DEV][s]->tables[t].nr_blocks, h->nr_blocks);
		for (i = 0; i < h->nr_blocks; i++, b->n++) {
			for (c = HOST; c <= DEV; c++)
				b->id[c][b->n] =
					fx->seq[c][s]->tables[t].blocks[i];
			b->filled[b->n] =
				h->len - i * bs < bs ? h->len - i * bs : bs;
		}
	}
}

/* Runs of adjacent ids: the copies a packed transfer takes. */
static uint32_t runs(const uint32_t *ids, uint32_t n)
{
	uint32_t k, r = n ? 1 : 0;

	for (k = 1; k < n; k++)
		r += ids[k] != ids[k - 1] + 1;
	return r;
}

static const uint8_t *host_block(struct fixture *fx, uint32_t id)
{
	uint64_t addr;

	assert_int_equal(kvc_pool_block_addr(fx->kv[HOST]->pool, id, &addr), 0);
	return (const uint8_t *)(uintptr_t)addr;
}

static uint64_t block_bytes(void)
{
	return kvc_kv_block_bytes(&shape_f16);
}

/* The written slots of a block, K and V, equal @want's. */
static void expect_kvs(const uint8_t *got, const uint8_t *want, uint32_t filled,
		       const char *what, uint32_t k)
{
	uint64_t half = block_bytes() / 2, row = half / shape_f16.block_size, j;

	for (j = 0; j < filled; j++) {
		if (memcmp(got + j * row, want + j * row, row))
			fail_msg("%s: block %u slot %llu: K differs", what, k,
				 (unsigned long long)j);
		if (memcmp(got + half + j * row, want + half + j * row, row))
			fail_msg("%s: block %u slot %llu: V differs", what, k,
				 (unsigned long long)j);
	}
}

/* Bytes [@from, @to) of @p are all @byte. */
static void expect_bytes(const uint8_t *p, uint64_t from, uint64_t to,
			 uint8_t byte, const char *what)
{
	uint64_t i;

	for (i = from; i < to; i++)
		if (p[i] != byte)
			fail_msg("%s: byte %llu is 0x%02x, expected 0x%02x",
				 what, (unsigned long long)i, p[i], byte);
}

static struct kvc_dev_xfer *xfer(struct fixture *fx, uint32_t nr_bufs)
{
	int err =
		kvc_dev_xfer_create(fx->kv[DEV], BUF_BYTES, nr_bufs, &fx->xfer);

	if (err)
		fail_msg("kvc_dev_xfer_create() = %d: %s", err,
			 kvc_last_error());
	return fx->xfer;
}

static void down(struct kvc_dev_xfer *x, uint32_t i, const struct blocks *b,
		 uint64_t stride)
{
	int err = kvc_dev_xfer_down(x, i, b->id[DEV], b->n, stride);

	if (err)
		fail_msg("kvc_dev_xfer_down(%u blocks, stride %llu) = %d: %s",
			 b->n, (unsigned long long)stride, err,
			 kvc_last_error());
}

static void up(struct kvc_dev_xfer *x, uint32_t i, const struct blocks *b,
	       uint64_t stride)
{
	int err = kvc_dev_xfer_up(x, i, b->id[DEV], b->n, stride);

	if (err)
		fail_msg("kvc_dev_xfer_up(%u blocks, stride %llu) = %d: %s",
			 b->n, (unsigned long long)stride, err,
			 kvc_last_error());
}

static void wait_buf(struct kvc_dev_xfer *x, uint32_t i)
{
	int err = kvc_dev_xfer_wait(x, i);

	if (err)
		fail_msg("kvc_dev_xfer_wait(%u) = %d: %s", i, err,
			 kvc_last_error());
}

/* Buffer @buf holds blocks @b at @stride as the host cache has them. */
static void expect_host(struct fixture *fx, const uint8_t *buf,
			const struct blocks *b, uint64_t stride,
			const char *what)
{
	uint32_t k;

	for (k = 0; k < b->n; k++)
		expect_kvs(buf + k * stride, host_block(fx, b->id[HOST][k]),
			   b->filled[k], what, k);
}

/* Buffer @buf holds blocks @b at @stride, whole, as @want does packed. */
static void expect_packed(const uint8_t *buf, const uint8_t *want,
			  const struct blocks *b, uint64_t stride,
			  const char *what)
{
	uint64_t bb = block_bytes();
	uint32_t k;

	for (k = 0; k < b->n; k++)
		if (memcmp(buf + k * stride, want + k * bb, bb))
			fail_msg("%s: block %u (id %u) differs", what, k,
				 b->id[DEV][k]);
}

/* ------------------------------------------------------------------ */
/* Tests */

/* Blocks come down as the host cache has them, packed or spread out, in
 * one copy per run of adjacent ids when packed. */
static void test_down(void **state)
{
	struct fixture *fx = *state;
	uint64_t bb = block_bytes(), wide = bb + 512, calls;
	struct kvc_dev_xfer *x;
	struct blocks b;
	uint8_t *packed, *spread;
	uint32_t k;
	int s;

	fill(fx);
	x = xfer(fx, 2);
	packed = kvc_dev_xfer_buf(x, 0);
	spread = kvc_dev_xfer_buf(x, 1);
	assert_non_null(packed);
	assert_non_null(spread);
	EXPECT_U64((uintptr_t)packed % 4096, 0);
	EXPECT_U64((uintptr_t)spread % 4096, 0);
	for (s = 0; s < NR_SEQS; s++) {
		seq_blocks(fx, s, &b);
		assert_true(b.n * wide <= BUF_BYTES);
		memset(packed, POISON, BUF_BYTES);
		memset(spread, POISON, BUF_BYTES);

		calls = fake_calls(KVC_FAKE_MEMCPY_DTOH);
		down(x, 0, &b, bb);
		EXPECT_U64(fake_calls(KVC_FAKE_MEMCPY_DTOH) - calls,
			   runs(b.id[DEV], b.n));
		calls = fake_calls(KVC_FAKE_MEMCPY_DTOH);
		down(x, 1, &b, wide);
		EXPECT_U64(fake_calls(KVC_FAKE_MEMCPY_DTOH) - calls, b.n);
		wait_buf(x, 0);
		wait_buf(x, 1);

		expect_host(fx, packed, &b, bb, "packed");
		expect_host(fx, spread, &b, wide, "spread");
		expect_packed(spread, packed, &b, wide, "spread vs packed");
		expect_bytes(packed, b.n * bb, BUF_BYTES, POISON,
			     "past the packed blocks");
		for (k = 0; k < b.n; k++)
			expect_bytes(spread, k * wide + bb, (k + 1) * wide,
				     POISON, "gap between spread blocks");
	}
	/* Sequence 0's blocks do not all follow one another. */
	seq_blocks(fx, 0, &b);
	assert_true(runs(b.id[DEV], b.n) > 1);
	assert_true(runs(b.id[DEV], b.n) < b.n);
	KV_CHECK(fx->kv[DEV]);
}

/* Bytes go up into the blocks and come back down as they were sent; the
 * other sequences' blocks stay as they were. */
static void test_up(void **state)
{
	struct fixture *fx = *state;
	uint64_t bb = block_bytes(), wide = 2 * bb, i, calls;
	struct kvc_dev_xfer *x;
	struct blocks b, other;
	uint8_t *buf, *sent, *back;

	fill(fx);
	x = xfer(fx, 3);
	buf = kvc_dev_xfer_buf(x, 0);
	back = kvc_dev_xfer_buf(x, 1);
	seq_blocks(fx, 0, &b);
	seq_blocks(fx, 1, &other);
	assert_true(b.n * wide <= BUF_BYTES);

	sent = malloc(b.n * bb);
	assert_non_null(sent);
	for (i = 0; i < b.n * bb; i++)
		sent[i] = (uint8_t)rng_next(&fx->rng);
	memset(buf, POISON, BUF_BYTES);
	for (i = 0; i < b.n; i++)
		memcpy(buf + i * wide, sent + i * bb, bb);
	calls = fake_calls(KVC_FAKE_MEMCPY_HTOD);
	up(x, 0, &b, wide);
	EXPECT_U64(fake_calls(KVC_FAKE_MEMCPY_HTOD) - calls, b.n);
	wait_buf(x, 0);

	memset(back, POISON, BUF_BYTES);
	down(x, 1, &b, bb);
	wait_buf(x, 1);
	expect_packed(back, sent, &b, bb, "sent spread, read back packed");

	/* Packed up, in runs, then back down spread out. */
	for (i = 0; i < b.n * bb; i++)
		sent[i] ^= 0x3c;
	memcpy(buf, sent, b.n * bb);
	calls = fake_calls(KVC_FAKE_MEMCPY_HTOD);
	up(x, 0, &b, bb);
	EXPECT_U64(fake_calls(KVC_FAKE_MEMCPY_HTOD) - calls,
		   runs(b.id[DEV], b.n));
	wait_buf(x, 0);
	down(x, 1, &b, wide);
	wait_buf(x, 1);
	expect_packed(back, sent, &b, wide, "sent packed, read back spread");

	down(x, 2, &other, bb);
	wait_buf(x, 2);
	expect_host(fx, kvc_dev_xfer_buf(x, 2), &other, bb,
		    "another sequence's blocks");
	free(sent);
	KV_CHECK(fx->kv[DEV]);
}

/* With copies that take time, the bytes are there after the wait and not
 * before; copies are ordered after the appends queued before them; buffers
 * with copies still queued can be destroyed. */
static void test_async(void **state)
{
	struct fixture *fx = *state;
	uint64_t bb = block_bytes(), i;
	struct kvc_dev_xfer *x;
	struct blocks b;
	uint8_t *buf, *back, *sent;

	fill(fx);
	x = xfer(fx, 2);
	buf = kvc_dev_xfer_buf(x, 0);
	back = kvc_dev_xfer_buf(x, 1);
	kvc_fake_set_async(true);
	/* Queued behind this append's cache write. */
	append_both(fx, 2, 30);
	seq_blocks(fx, 2, &b);

	memset(buf, POISON, BUF_BYTES);
	down(x, 0, &b, bb);
	expect_bytes(buf, 0, BUF_BYTES, POISON, "before the wait");
	wait_buf(x, 0);
	expect_host(fx, buf, &b, bb, "after the wait");

	sent = malloc(b.n * bb);
	assert_non_null(sent);
	for (i = 0; i < b.n * bb; i++)
		sent[i] = (uint8_t)rng_next(&fx->rng);
	memcpy(buf, sent, b.n * bb);
	up(x, 0, &b, bb);
	memset(back, POISON, BUF_BYTES);
	down(x, 1, &b, bb);
	wait_buf(x, 1);
	expect_packed(back, sent, &b, bb, "up then down, one wait");
	wait_buf(x, 0);
	free(sent);

	/* Destroyed with its copies queued: it waits for them first. */
	seq_blocks(fx, 0, &b);
	down(x, 0, &b, bb);
	down(x, 1, &b, bb + 4096);
	kvc_dev_xfer_destroy(x);
	fx->xfer = NULL;
	assert_no_violation();

	/* A wait on a buffer nothing was queued on returns at once. */
	x = xfer(fx, 1);
	wait_buf(x, 0);
}

/* Slot metadata written on the host reaches the device array. */
static void test_meta_push(void **state)
{
	struct fixture *fx = *state;
	struct kvc_kv *kv;
	struct kvc_seq *seq;
	struct blocks b;
	uint32_t bs = shape_f16.block_size, t, i, j, nr;
	uint64_t calls;
	struct kvc_slot_meta *m;
	int err, async;

	fill(fx);
	kv = fx->kv[DEV];
	for (async = 0; async <= 1; async++) {
		kvc_fake_set_async(async);
		seq = fx->seq[DEV][async];
		assert_false(seq->meta_dirty);
		nr = shape_f16.layers * shape_f16.kv_heads;
		/* Reverse each table's positions, and give metrics. */
		for (t = 0; t < nr; t++) {
			const struct kvc_head_table *h = &seq->tables[t];

			for (i = 0, j = h->len - 1; i < h->len; i++, j--) {
				m = &kv->meta[(uint64_t)h->blocks[i / bs] * bs +
					      i % bs];
				m->pos = (int32_t)(seq->tokens - 1 - i);
				m->metric = (float)(t * 1000 + j);
			}
		}
		err = kvc_kv_check(kv);
		assert_int_equal(err, -EFAULT);

		seq_blocks(fx, async, &b);
		calls = fake_calls(KVC_FAKE_MEMCPY_HTOD);
		err = kvc_dev_meta_push(kv, b.id[DEV], b.n);
		if (err)
			fail_msg("kvc_dev_meta_push() = %d: %s", err,
				 kvc_last_error());
		EXPECT_U64(fake_calls(KVC_FAKE_MEMCPY_HTOD) - calls,
			   runs(b.id[DEV], b.n));
		/* Positions, and metrics of a clean sequence, compared. */
		KV_CHECK(kv);
	}
	assert_int_equal(kvc_dev_meta_push(kv, NULL, 0), 0);
}

/* Bad arguments are refused with -EINVAL and queue nothing. */
static void test_bad_args(void **state)
{
	struct fixture *fx = *state;
	uint64_t bb = block_bytes();
	struct kvc_dev_xfer *x = NULL;
	struct blocks b;
	uint32_t bad[2];
	uint64_t calls;

	fill(fx);
	seq_blocks(fx, 0, &b);
	assert_int_equal(kvc_dev_xfer_create(fx->kv[HOST], BUF_BYTES, 1, &x),
			 -EINVAL);
	assert_null(x);
	assert_int_equal(kvc_dev_xfer_create(NULL, BUF_BYTES, 1, &x), -EINVAL);
	assert_int_equal(kvc_dev_xfer_create(fx->kv[DEV], 0, 1, &x), -EINVAL);
	assert_int_equal(kvc_dev_xfer_create(fx->kv[DEV], 4095, 1, &x),
			 -EINVAL);
	assert_int_equal(kvc_dev_xfer_create(fx->kv[DEV], BUF_BYTES, 0, &x),
			 -EINVAL);
	assert_int_equal(kvc_dev_xfer_create(fx->kv[DEV], BUF_BYTES, 5, &x),
			 -EINVAL);
	assert_int_equal(kvc_dev_xfer_create(fx->kv[DEV], BUF_BYTES, 1, NULL),
			 -EINVAL);
	assert_null(x);

	x = xfer(fx, 2);
	calls = fake_calls(KVC_FAKE_MEMCPY_DTOH) +
		fake_calls(KVC_FAKE_MEMCPY_HTOD);
	assert_null(kvc_dev_xfer_buf(x, 2));
	assert_int_equal(kvc_dev_xfer_down(x, 2, b.id[DEV], 1, bb), -EINVAL);
	assert_int_equal(kvc_dev_xfer_up(x, 2, b.id[DEV], 1, bb), -EINVAL);
	assert_int_equal(kvc_dev_xfer_wait(x, 2), -EINVAL);
	assert_int_equal(kvc_dev_xfer_down(NULL, 0, b.id[DEV], 1, bb), -EINVAL);
	assert_int_equal(kvc_dev_xfer_wait(NULL, 0), -EINVAL);
	/* Stride below a block, or blocks past the buffer's end. */
	assert_int_equal(kvc_dev_xfer_down(x, 0, b.id[DEV], 1, bb - 1),
			 -EINVAL);
	assert_int_equal(
		kvc_dev_xfer_down(x, 0, b.id[DEV], BUF_BYTES / bb + 1, bb),
		-EINVAL);
	assert_int_equal(kvc_dev_xfer_up(x, 0, b.id[DEV], 2, BUF_BYTES / 2 + 1),
			 -EINVAL);
	assert_int_equal(kvc_dev_xfer_down(x, 0, b.id[DEV], 1, UINT64_MAX / 2),
			 -EINVAL);
	assert_int_equal(kvc_dev_xfer_down(x, 0, NULL, 1, bb), -EINVAL);
	/* Ids past the capacity, or not live; the bad one comes last. */
	bad[0] = b.id[DEV][0];
	bad[1] = CAPACITY;
	assert_int_equal(kvc_dev_xfer_down(x, 0, bad, 2, bb), -EINVAL);
	assert_int_equal(kvc_dev_xfer_up(x, 0, bad, 2, bb), -EINVAL);
	assert_int_equal(kvc_dev_meta_push(fx->kv[DEV], bad, 2), -EINVAL);
	bad[1] = CAPACITY - 1;
	assert_int_equal(kvc_dev_xfer_down(x, 0, bad, 2, bb), -EINVAL);
	assert_int_equal(kvc_dev_xfer_up(x, 0, bad, 2, bb), -EINVAL);
	assert_int_equal(kvc_dev_meta_push(fx->kv[DEV], bad, 2), -EINVAL);
	assert_int_equal(kvc_dev_meta_push(fx->kv[DEV], NULL, 1), -EINVAL);
	assert_int_equal(kvc_dev_meta_push(fx->kv[HOST], b.id[HOST], 1),
			 -EINVAL);
	assert_int_equal(kvc_dev_meta_push(NULL, b.id[DEV], 1), -EINVAL);
	EXPECT_U64(fake_calls(KVC_FAKE_MEMCPY_DTOH) +
			   fake_calls(KVC_FAKE_MEMCPY_HTOD),
		   calls);
	/* No blocks: nothing to do. */
	assert_int_equal(kvc_dev_xfer_down(x, 0, NULL, 0, bb), 0);
	assert_int_equal(kvc_dev_xfer_up(x, 1, NULL, 0, bb), 0);
	wait_buf(x, 0);
	KV_CHECK(fx->kv[DEV]);
}

/* The fake's host allocations and events now, to see that nothing leaked. */
static void held(uint64_t *host_allocs, uint64_t *events)
{
	struct kvc_fake_counts fc;

	kvc_fake_counts(&fc);
	*host_allocs = fc.host_allocs;
	*events = fc.events;
}

static void expect_fault(int err, int want, const char *what)
{
	if (err != want)
		fail_msg("%s under a driver fault = %d, expected %d (%s)", what,
			 err, want, kvc_last_error());
}

/* Driver faults are returned, leak nothing, and leave the buffers and the
 * cache usable. */
static void test_faults(void **state)
{
	struct fixture *fx = *state;
	uint64_t bb = block_bytes(), ha, ev, ha2, ev2;
	struct kvc_dev_xfer *x = NULL;
	struct blocks b;
	int async;

	fill(fx);
	seq_blocks(fx, 0, &b);
	assert_true(runs(b.id[DEV], b.n) > 2);

	held(&ha, &ev);
	kvc_fake_fail(KVC_FAKE_MEM_ALLOC_HOST, 3, KVC_CUDA_ERROR_OUT_OF_MEMORY);
	expect_fault(kvc_dev_xfer_create(fx->kv[DEV], BUF_BYTES, 4, &x),
		     -ENOMEM, "kvc_dev_xfer_create");
	assert_null(x);
	kvc_fake_fail(KVC_FAKE_EVENT_CREATE, 2, KVC_CUDA_ERROR_OUT_OF_MEMORY);
	expect_fault(kvc_dev_xfer_create(fx->kv[DEV], BUF_BYTES, 2, &x),
		     -ENOMEM, "kvc_dev_xfer_create");
	assert_null(x);
	kvc_fake_fail(KVC_FAKE_CTX_PUSH, 1, KVC_CUDA_ERROR_INVALID_CONTEXT);
	assert_true(kvc_dev_xfer_create(fx->kv[DEV], BUF_BYTES, 2, &x) < 0);
	assert_null(x);
	held(&ha2, &ev2);
	EXPECT_U64(ha2, ha);
	EXPECT_U64(ev2, ev);

	x = xfer(fx, 2);
	for (async = 0; async <= 1; async++) {
		kvc_fake_set_async(async);
		/* A copy fails after others were queued. */
		kvc_fake_fail(KVC_FAKE_MEMCPY_DTOH, 2,
			      KVC_CUDA_ERROR_OUT_OF_MEMORY);
		expect_fault(kvc_dev_xfer_down(x, 0, b.id[DEV], b.n, bb),
			     -ENOMEM, "kvc_dev_xfer_down");
		/* Half done, it writes the blocks' own bytes back. */
		down(x, 1, &b, bb + 64);
		wait_buf(x, 1);
		kvc_fake_fail(KVC_FAKE_MEMCPY_HTOD, 3,
			      KVC_CUDA_ERROR_OUT_OF_MEMORY);
		expect_fault(kvc_dev_xfer_up(x, 1, b.id[DEV], b.n, bb + 64),
			     -ENOMEM, "kvc_dev_xfer_up");
		/* The copies were queued, their record failed. */
		kvc_fake_fail(KVC_FAKE_EVENT_RECORD, 1,
			      KVC_CUDA_ERROR_OUT_OF_MEMORY);
		expect_fault(kvc_dev_xfer_down(x, 1, b.id[DEV], b.n, bb),
			     -ENOMEM, "kvc_dev_xfer_down");
		kvc_fake_fail(KVC_FAKE_MEMCPY_HTOD, 2,
			      KVC_CUDA_ERROR_OUT_OF_MEMORY);
		expect_fault(kvc_dev_meta_push(fx->kv[DEV], b.id[DEV], b.n),
			     -ENOMEM, "kvc_dev_meta_push");
		kvc_fake_fail(KVC_FAKE_STREAM_SYNC, 1,
			      KVC_CUDA_ERROR_OUT_OF_MEMORY);
		expect_fault(kvc_dev_meta_push(fx->kv[DEV], b.id[DEV], b.n),
			     -ENOMEM, "kvc_dev_meta_push");
		kvc_fake_fail(KVC_FAKE_CTX_PUSH, 1,
			      KVC_CUDA_ERROR_INVALID_CONTEXT);
		assert_true(kvc_dev_xfer_down(x, 0, b.id[DEV], b.n, bb) < 0);

		down(x, 0, &b, bb);
		kvc_fake_fail(KVC_FAKE_EVENT_SYNC, 1,
			      KVC_CUDA_ERROR_OUT_OF_MEMORY);
		expect_fault(kvc_dev_xfer_wait(x, 0), -ENOMEM,
			     "kvc_dev_xfer_wait");
		assert_no_violation();

		/* All still works. */
		memset(kvc_dev_xfer_buf(x, 0), POISON, BUF_BYTES);
		down(x, 0, &b, bb);
		wait_buf(x, 0);
		expect_host(fx, kvc_dev_xfer_buf(x, 0), &b, bb,
			    "after the faults");
		assert_int_equal(kvc_dev_meta_push(fx->kv[DEV], b.id[DEV], b.n),
				 0);
		KV_CHECK(fx->kv[DEV]);
	}
	/* Destroyed, copies queued, with a wait that fails: the buffers are
	 * freed all the same, once the copies are done (else a violation). */
	down(x, 1, &b, bb);
	kvc_fake_fail(KVC_FAKE_EVENT_SYNC, 1, KVC_CUDA_ERROR_OUT_OF_MEMORY);
	kvc_dev_xfer_destroy(x);
	fx->xfer = NULL;
	assert_no_violation();
	held(&ha2, &ev2);
	EXPECT_U64(ha2, ha);
	EXPECT_U64(ev2, ev);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_down),	   T(test_up),	     T(test_async),
		T(test_meta_push), T(test_bad_args), T(test_faults),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
