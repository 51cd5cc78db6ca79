/* Description: the KV cache on the cuda backend (fake driver, kernels emulated) against the same cache on the host: appends, decode and prefill outputs and metrics, KV-Compress evictions, compaction with the device metadata, kvc_run figures; driver faults leave the cache as it was; async streams stay ordered */
// SPDX-License-Identifier: MIT
/*
 * Every test drives two caches through the same calls: one on the host
 * backend (the CPU reference path) and one on the cuda backend over the
 * fake driver, whose kernels run as their CPU emulation. Both use the
 * same granularity, so pools of the same history hand out the same block
 * ids and map the same chunks. Outputs and metrics must agree within
 * 1e-5 relative (the device sums decode partitions in another order);
 * positions, lengths, eviction choices and pool figures exactly.
 * kvc_kv_check() runs after every step; on the device cache it also
 * compares the device's slot metadata with its host mirror. Teardown
 * checks the fake holds nothing and saw no broken rule (races included).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/compact.h>
#include <kvc/evict.h>
#include <kvc/kv.h>
#include <kvc/kvc.h>
#include <kvc/run.h>

#include "../runtime/device.h"
#include "../runtime/internal.h"
#include "backend.h"
#include "fake_check.h"
#include "fake_driver.h"

#define GRAN (64ull << 10)
#define CAPACITY 512
#define REL 1e-5
#define MAX_SEQS 4
#define HOST 0
#define DEV 1

static const struct kvc_model_shape shape_f16 = {
	.layers = 2,
	.q_heads = 4,
	.kv_heads = 2,
	.head_dim = 64,
	.block_size = 16,
	.dtype = KVC_DTYPE_F16,
};

/**
 * struct fixture - A host cache and a device cache, driven alike.
 * @drv: the fake driver.
 * @be: the backends, [HOST] and [DEV].
 * @kv: the caches.
 * @seq: their sequences, by index.
 * @params: how the caches are made (backend set per cache).
 * @rng: the test's random state (Q, K, V).
 */
struct fixture {
	const struct kvc_cuda_driver *drv;
	struct kvc_backend *be[2];
	struct kvc_kv *kv[2];
	struct kvc_seq *seq[2][MAX_SEQS];
	struct kvc_kv_params params;
	uint64_t rng;
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

/* The fake's entry point of this name, so that tests need no enum name. */
static enum kvc_fake_fn fake_fn(const char *name)
{
	int fn;

	for (fn = 0; fn < KVC_FAKE_NR_FNS; fn++)
		if (!strcmp(kvc_fake_fn_name((enum kvc_fake_fn)fn), name))
			return (enum kvc_fake_fn)fn;
	fail_msg("the fake driver has no entry point %s", name);
	return KVC_FAKE_NR_FNS;
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
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	fx->drv = kvc_fake_driver(&cfg);
	if (!fx->drv || kvc_backend_open_host(GRAN, &fx->be[HOST]) ||
	    kvc_backend_open_cuda_driver(fx->drv, 0, &fx->be[DEV])) {
		fprintf(stderr, "test_kv_cuda setup: %s\n", kvc_last_error());
		kvc_backend_close(fx->be[HOST]);
		free(fx);
		return -1;
	}
	fx->params.shape = shape_f16;
	fx->params.capacity_blocks = CAPACITY;
	fx->params.empty_chunks_kept = 0;
	fx->params.flags = KVC_POOL_NO_STATS_PAGE;
	fx->rng = 0x9e3779b97f4a7c15ull;
	*state = fx;
	return 0;
}

static void close_caches(struct fixture *fx)
{
	int c;

	for (c = HOST; c <= DEV; c++) {
		kvc_kv_destroy(fx->kv[c]);
		fx->kv[c] = NULL;
	}
	memset(fx->seq, 0, sizeof(fx->seq));
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	close_caches(fx);
	kvc_fake_set_async(false);
	kvc_backend_close(fx->be[DEV]);
	kvc_backend_close(fx->be[HOST]);
	FAKE_EXPECT_CLEAN(FAKE_KEEP_NONE);
	free(fx);
	return 0;
}

static struct kvc_kv *open_cache(struct fixture *fx, int c)
{
	struct kvc_kv_params kp = fx->params;
	int err;

	kp.backend = fx->be[c];
	err = kvc_kv_create(&kp, &fx->kv[c]);
	if (err)
		fail_msg("kvc_kv_create(%s) = %d: %s",
			 kvc_backend_name(fx->be[c]), err, kvc_last_error());
	KV_CHECK(fx->kv[c]);
	return fx->kv[c];
}

static void open_both(struct fixture *fx)
{
	open_cache(fx, HOST);
	open_cache(fx, DEV);
	assert_string_equal(kvc_kv_backend_name(fx->kv[HOST]), "host");
	assert_string_equal(kvc_kv_backend_name(fx->kv[DEV]), "cuda-fake");
}

/* ------------------------------------------------------------------ */
/* Data and comparisons */

static uint32_t nr_tables(const struct kvc_model_shape *s)
{
	return s->layers * s->kv_heads;
}

/* Uniform in [-1, 1), a multiple of 2^-10: exact in f16 and bf16. */
static float rnd(uint64_t *rng)
{
	return (float)((int32_t)(rng_next(rng) >> 53) - 1024) / 1024.0f;
}

static float *rnd_floats(uint64_t *rng, uint64_t n)
{
	float *p = malloc((n ? n : 1) * sizeof(float));
	uint64_t i;

	assert_non_null(p);
	for (i = 0; i < n; i++)
		p[i] = rnd(rng) * 4;
	return p;
}

/* @a close to the reference @b: within REL of the larger of the two
 * and of a hundredth of the vector's largest value. */
static void expect_close(const float *a, const float *b, uint64_t n,
			 const char *what)
{
	double scale = 0, d, tol;
	uint64_t i;

	for (i = 0; i < n; i++)
		scale = fmax(scale, fabs((double)b[i]));
	for (i = 0; i < n; i++) {
		d = fabs((double)a[i] - (double)b[i]);
		tol = REL * fmax(fmax(fabs((double)a[i]), fabs((double)b[i])),
				 scale / 100);
		if (!(d <= tol) && !(a[i] == b[i]))
			fail_msg("%s[%llu]: device %.9g, host %.9g (diff %.3g)",
				 what, (unsigned long long)i, (double)a[i],
				 (double)b[i], d);
	}
}

static const struct kvc_slot_meta *meta_at(const struct kvc_seq *seq,
					   uint32_t t, uint32_t i)
{
	const struct kvc_kv *kv = seq->kv;
	uint32_t bs = kv->shape.block_size;

	return &kv->meta[(uint64_t)seq->tables[t].blocks[i / bs] * bs + i % bs];
}

/*
 * Sequence @s of both caches holds the same KVs in the same slots (by
 * position), with the same metrics; the device's metrics are copied down
 * first.
 */
static void compare_seq(struct fixture *fx, int s)
{
	const struct kvc_seq *h = fx->seq[HOST][s], *d = fx->seq[DEV][s];
	uint32_t t, i, nr = nr_tables(&fx->params.shape);
	float *mh, *md;
	uint64_t n = 0;
	int err;

	err = kvc_dev_meta_sync(fx->seq[DEV][s]);
	if (err)
		fail_msg("kvc_dev_meta_sync() = %d: %s", err, kvc_last_error());
	assert_false(d->meta_dirty);
	EXPECT_U64(kvc_seq_tokens(d), kvc_seq_tokens(h));
	for (t = 0; t < nr; t++) {
		EXPECT_U64(d->tables[t].len, h->tables[t].len);
		EXPECT_U64(d->tables[t].nr_blocks, h->tables[t].nr_blocks);
		n += h->tables[t].len;
	}
	mh = malloc((n ? n : 1) * sizeof(float));
	md = malloc((n ? n : 1) * sizeof(float));
	assert_non_null(mh);
	assert_non_null(md);
	n = 0;
	for (t = 0; t < nr; t++)
		for (i = 0; i < h->tables[t].len; i++, n++) {
			if (meta_at(d, t, i)->pos != meta_at(h, t, i)->pos)
				fail_msg(
					"seq %d table %u slot %u: position %d on the device, %d on the host",
					s, t, i, meta_at(d, t, i)->pos,
					meta_at(h, t, i)->pos);
			mh[n] = meta_at(h, t, i)->metric;
			md[n] = meta_at(d, t, i)->metric;
		}
	expect_close(md, mh, n, "metric");
	free(mh);
	free(md);
	KV_CHECK(fx->kv[DEV]);
}

/* ------------------------------------------------------------------ */
/* Steps, on both caches */

static void create_seq(struct fixture *fx, int s)
{
	int c;

	for (c = HOST; c <= DEV; c++)
		assert_int_equal(kvc_seq_create(fx->kv[c], &fx->seq[c][s]), 0);
}

static void append_both(struct fixture *fx, int s, uint32_t n)
{
	const struct kvc_model_shape *sh = &fx->params.shape;
	uint64_t count = (uint64_t)nr_tables(sh) * n * sh->head_dim;
	float *k = rnd_floats(&fx->rng, count),
	      *v = rnd_floats(&fx->rng, count);
	int c, err;

	for (c = HOST; c <= DEV; c++) {
		err = kvc_seq_append(fx->seq[c][s], n, k, v);
		if (err)
			fail_msg("kvc_seq_append(%s) = %d: %s",
				 c ? "device" : "host", err, kvc_last_error());
		KV_CHECK(fx->kv[c]);
	}
	free(k);
	free(v);
}

/* One decode step of every layer on both; outputs compared. */
static void decode_both(struct fixture *fx, int s, enum kvc_metric_kind m)
{
	const struct kvc_model_shape *sh = &fx->params.shape;
	uint64_t nq = (uint64_t)sh->q_heads * sh->head_dim;
	float *out[2], *q;
	uint32_t layer;
	int c, err;

	for (layer = 0; layer < sh->layers; layer++) {
		q = rnd_floats(&fx->rng, nq);
		for (c = HOST; c <= DEV; c++) {
			out[c] = malloc(nq * sizeof(float));
			assert_non_null(out[c]);
			err = kvc_attn_decode(fx->seq[c][s], layer, q, out[c],
					      m);
			if (err)
				fail_msg("kvc_attn_decode(%s) = %d: %s",
					 c ? "device" : "host", err,
					 kvc_last_error());
		}
		expect_close(out[DEV], out[HOST], nq, "decode output");
		for (c = HOST; c <= DEV; c++)
			free(out[c]);
		free(q);
	}
	KV_CHECK(fx->kv[DEV]);
}

/* Prefill of the newest @n tokens of every layer; outputs compared. */
static void prefill_both(struct fixture *fx, int s, uint32_t n,
			 const struct kvc_observe *obs)
{
	const struct kvc_model_shape *sh = &fx->params.shape;
	uint64_t nq = (uint64_t)n * sh->q_heads * sh->head_dim;
	float *out[2], *q;
	uint32_t layer;
	int c, err;

	for (layer = 0; layer < sh->layers; layer++) {
		q = rnd_floats(&fx->rng, nq);
		for (c = HOST; c <= DEV; c++) {
			out[c] = malloc(nq * sizeof(float));
			assert_non_null(out[c]);
			err = kvc_attn_prefill(fx->seq[c][s], layer, n, q,
					       out[c], obs);
			if (err)
				fail_msg("kvc_attn_prefill(%s) = %d: %s",
					 c ? "device" : "host", err,
					 kvc_last_error());
		}
		expect_close(out[DEV], out[HOST], nq, "prefill output");
		for (c = HOST; c <= DEV; c++)
			free(out[c]);
		free(q);
	}
	KV_CHECK(fx->kv[DEV]);
}

static struct kvc_policy *kvcompress(const struct kvc_model_shape *sh,
				     double rate)
{
	struct kvc_policy_params p;
	struct kvc_policy *pol;

	kvc_policy_params_init(&p);
	p.name = "kvcompress";
	p.rate = rate;
	p.protected_window = 8;
	p.metric = KVC_METRIC_L2;
	assert_int_equal(kvc_policy_create(&p, sh, &pol), 0);
	return pol;
}

/* Compress sequence @s of both: the same KVs go, the same survive. */
static void compress_both(struct fixture *fx, struct kvc_policy *pol, int s)
{
	struct kvc_evict_stats st[2];
	int c, err;

	for (c = HOST; c <= DEV; c++) {
		err = kvc_policy_compress(pol, fx->seq[c][s], &st[c]);
		if (err)
			fail_msg("kvc_policy_compress(%s) = %d: %s",
				 c ? "device" : "host", err, kvc_last_error());
		KV_CHECK(fx->kv[c]);
	}
	EXPECT_U64(st[DEV].kvs_before, st[HOST].kvs_before);
	EXPECT_U64(st[DEV].kvs_after, st[HOST].kvs_after);
	EXPECT_U64(st[DEV].blocks_freed, st[HOST].blocks_freed);
	EXPECT_U64(st[DEV].kvs_moved, st[HOST].kvs_moved);
	assert_true(st[HOST].kvs_after < st[HOST].kvs_before);
	compare_seq(fx, s);
}

/* ------------------------------------------------------------------ */
/* Tests */

static void test_create(void **state)
{
	struct fixture *fx = *state;
	struct kvc_kv_params kp = fx->params;
	struct kvc_fence f;
	struct kvc_kv *kv = NULL;

	open_both(fx);
	kvc_kv_fence(fx->kv[HOST], &f);
	assert_int_equal(f.kind, KVC_FENCE_NONE);
	kvc_kv_fence(fx->kv[DEV], &f);
	assert_int_equal(f.kind, KVC_FENCE_CUDA_STREAM);
	assert_non_null(f.handle);
	EXPECT_U64(kvc_kv_device_overhead(fx->kv[HOST]), 0);
	/* The metadata array of the whole capacity, at the least. */
	assert_true(kvc_kv_device_overhead(fx->kv[DEV]) >=
		    (uint64_t)CAPACITY * shape_f16.block_size * 8);
	assert_null(fx->kv[DEV]->base);

	/* More query heads per KV head than the kernels take. */
	kp.backend = fx->be[DEV];
	kp.shape.q_heads = 34;
	kp.shape.kv_heads = 2;
	assert_int_equal(kvc_kv_create(&kp, &kv), -EOPNOTSUPP);
	assert_non_null(strstr(kvc_last_error(), "query heads per KV head"));
	assert_null(kv);
}

/* A fake device whose kernels do not load: the cache refuses it. */
static void test_no_kernels(void **state)
{
	static const struct kvc_fake_config cfg = { .granularity = GRAN,
						    .devices = 1,
						    .no_kernels = true };
	struct fixture *fx = *state;
	struct kvc_kv_params kp = fx->params;
	struct kvc_backend *be;
	struct kvc_kv *kv = NULL;

	kvc_backend_close(fx->be[DEV]);
	fx->be[DEV] = NULL;
	fx->drv = kvc_fake_driver(&cfg);
	assert_non_null(fx->drv);
	assert_int_equal(kvc_backend_open_cuda_driver(fx->drv, 0, &be), 0);
	kp.backend = be;
	assert_int_equal(kvc_kv_create(&kp, &kv), -EOPNOTSUPP);
	assert_non_null(strstr(kvc_last_error(), "no CUDA kernels"));
	assert_null(kv);
	kvc_backend_close(be);
}

static void test_append_decode(void **state)
{
	static const enum kvc_metric_kind kinds[] = {
		KVC_METRIC_L2, KVC_METRIC_L1, KVC_METRIC_NONE, KVC_METRIC_AVG
	};
	struct fixture *fx = *state;
	uint32_t i;

	open_both(fx);
	create_seq(fx, 0);
	create_seq(fx, 1);
	append_both(fx, 0, 37);
	append_both(fx, 1, 5);
	compare_seq(fx, 0);
	compare_seq(fx, 1);
	for (i = 0; i < 8; i++) {
		append_both(fx, i % 2, 1 + i);
		decode_both(fx, i % 2, kinds[i % 4]);
		decode_both(fx, 1 - i % 2, kinds[(i + 1) % 4]);
	}
	compare_seq(fx, 0);
	compare_seq(fx, 1);
}

/* f32 and bf16 storage, head_dim 80 (a padded kernel variant), block 8. */
static void test_dtypes(void **state)
{
	static const enum kvc_dtype dtypes[] = { KVC_DTYPE_F32,
						 KVC_DTYPE_BF16 };
	struct fixture *fx = *state;
	size_t d;

	for (d = 0; d < 2; d++) {
		fx->params.shape.dtype = dtypes[d];
		fx->params.shape.head_dim = d ? 80 : 128;
		fx->params.shape.block_size = d ? 8 : 32;
		open_both(fx);
		create_seq(fx, 0);
		append_both(fx, 0, 50);
		decode_both(fx, 0, KVC_METRIC_L2);
		append_both(fx, 0, 1);
		decode_both(fx, 0, KVC_METRIC_L1);
		compare_seq(fx, 0);
		close_caches(fx);
	}
}

static void test_prefill_observe(void **state)
{
	struct kvc_observe obs[] = {
		{ .metric = KVC_METRIC_L2, .window = 8 },
		{ .metric = KVC_METRIC_L1, .window = 0, .buffer = 2 },
		{ .metric = KVC_METRIC_L1, .window = 16, .pool_kernel = 5 },
		{ .metric = KVC_METRIC_NONE },
	};
	struct fixture *fx = *state;
	size_t i;

	open_both(fx);
	for (i = 0; i < sizeof(obs) / sizeof(obs[0]); i++) {
		create_seq(fx, (int)i);
		append_both(fx, (int)i, 40 + 9 * (uint32_t)i);
		prefill_both(fx, (int)i, 24, &obs[i]);
		compare_seq(fx, (int)i);
	}
	/* No observation at all, and a prefill of the last token only. */
	append_both(fx, 0, 3);
	prefill_both(fx, 0, 3, NULL);
	append_both(fx, 0, 1);
	prefill_both(fx, 0, 1, &obs[0]);
	compare_seq(fx, 0);
}

static void test_kvcompress(void **state)
{
	struct kvc_observe obs = { .metric = KVC_METRIC_L2, .window = 8 };
	struct fixture *fx = *state;
	struct kvc_policy *pol = kvcompress(&shape_f16, 2);
	uint32_t step;

	open_both(fx);
	create_seq(fx, 0);
	append_both(fx, 0, 96);
	prefill_both(fx, 0, 8, &obs);
	compress_both(fx, pol, 0);
	for (step = 0; step < 20; step++) {
		append_both(fx, 0, 1);
		decode_both(fx, 0, KVC_METRIC_L2);
		if (step % 8 == 7)
			compress_both(fx, pol, 0);
	}
	decode_both(fx, 0, KVC_METRIC_L2);
	compare_seq(fx, 0);
	kvc_policy_destroy(pol);
}

/* One head evicted alone (kvc_evict_apply), the rest left as they are. */
static void test_evict_apply(void **state)
{
	struct fixture *fx = *state;
	struct kvc_evict_stats st[2] = { { 0 } };
	bool drop[45];
	uint32_t i;
	int c;

	open_both(fx);
	create_seq(fx, 0);
	append_both(fx, 0, 45);
	for (i = 0; i < 45; i++)
		drop[i] = i % 3 == 1 || (i > 10 && i < 30);
	for (c = HOST; c <= DEV; c++) {
		assert_int_equal(
			kvc_evict_apply(fx->seq[c][0], 1, 0, drop, &st[c]), 0);
		KV_CHECK(fx->kv[c]);
	}
	EXPECT_U64(st[DEV].kvs_moved, st[HOST].kvs_moved);
	EXPECT_U64(st[DEV].blocks_freed, st[HOST].blocks_freed);
	compare_seq(fx, 0);
	decode_both(fx, 0, KVC_METRIC_L1);
	compare_seq(fx, 0);
}

/*
 * Sequences compressed unevenly leave sparse chunks; compaction moves
 * blocks and their metadata: afterwards attention reads the same KVs and
 * the device's metadata still matches the mirror (KV_CHECK).
 */
static void test_compaction(void **state)
{
	struct fixture *fx = *state;
	struct kvc_policy *pol = kvcompress(&shape_f16, 4);
	struct kvc_compact_result res[2];
	struct kvc_pool_stats st[2];
	int s, c;

	open_both(fx);
	for (s = 0; s < MAX_SEQS; s++) {
		create_seq(fx, s);
		append_both(fx, s, 120 + 40 * (uint32_t)s);
		decode_both(fx, s, KVC_METRIC_L2);
	}
	for (s = 0; s < MAX_SEQS; s += 2)
		compress_both(fx, pol, s);
	for (s = 0; s < MAX_SEQS; s++)
		decode_both(fx, s, KVC_METRIC_L2); /* metrics left dirty */
	for (c = HOST; c <= DEV; c++) {
		int err = kvc_kv_compact(fx->kv[c], &res[c]);

		if (err)
			fail_msg("kvc_kv_compact(%s) = %d: %s",
				 c ? "device" : "host", err, kvc_last_error());
		KV_CHECK(fx->kv[c]);
		kvc_pool_get_stats(kvc_kv_pool(fx->kv[c]), &st[c], NULL);
	}
	assert_true(res[HOST].blocks_moved > 0);
	EXPECT_U64(res[DEV].blocks_moved, res[HOST].blocks_moved);
	EXPECT_U64(st[DEV].bytes_mapped, st[HOST].bytes_mapped);
	for (s = 0; s < MAX_SEQS; s++) {
		compare_seq(fx, s);
		decode_both(fx, s, KVC_METRIC_L2);
		compare_seq(fx, s);
	}
	for (s = 1; s < MAX_SEQS; s += 2)
		compress_both(fx, pol, s);
	kvc_policy_destroy(pol);
}

/* ------------------------------------------------------------------ */
/* kvc_run on each backend */

static void small_run(struct kvc_run_params *p)
{
	kvc_run_params_init(p);
	p->shape.layers = 2;
	p->shape.q_heads = 4;
	p->shape.kv_heads = 2;
	p->seqs = 3;
	p->prompt_len = 128;
	p->gen_len = 24;
	p->err_samples = 4;
	p->pool_name = NULL;
}

static void run_on(struct fixture *fx, struct kvc_backend *be,
		   struct kvc_run_report *rep)
{
	struct kvc_run_params p;
	int err;

	small_run(&p);
	p.backend = be;
	err = kvc_run(&p, rep, NULL, NULL);
	if (err)
		fail_msg("kvc_run(%s) = %d: %s", kvc_backend_name(be), err,
			 kvc_last_error());
}

static void test_run(void **state)
{
	struct fixture *fx = *state;
	struct kvc_run_report h, d;
	char dir[] = "/tmp/kvc-kv-cuda.XXXXXX";
	char cmd[64];

	assert_non_null(mkdtemp(dir));
	assert_int_equal(setenv("KVC_STATS_DIR", dir, 1), 0);
	run_on(fx, fx->be[HOST], &h);
	run_on(fx, fx->be[DEV], &d);
	unsetenv("KVC_STATS_DIR");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);

	assert_string_equal(h.backend, "host");
	assert_string_equal(d.backend, "cuda-fake");
	EXPECT_U64(d.steps, h.steps);
	EXPECT_U64(d.logical_bytes, h.logical_bytes);
	EXPECT_U64(d.live_bytes, h.live_bytes);
	EXPECT_U64(d.mapped_bytes, h.mapped_bytes);
	EXPECT_U64(d.peak_mapped_bytes, h.peak_mapped_bytes);
	EXPECT_U64(d.conventional_mapped_bytes, h.conventional_mapped_bytes);
	EXPECT_U64(d.compressions, h.compressions);
	EXPECT_U64(d.blocks_moved, h.blocks_moved);
	assert_true(d.physical_ratio == h.physical_ratio);
	assert_true(fabs(d.attn_rel_err - h.attn_rel_err) <=
		    1e-4 * fmax(h.attn_rel_err, 1e-3));

	/* The host measures nothing on a device. */
	EXPECT_U64(h.device_free_start, 0);
	EXPECT_U64(h.device_measured_bytes, 0);
	assert_true(h.device_ratio == 0);
	/*
	 * The fake counts exactly what is mapped and allocated: the pool's
	 * chunks and the cache's own device memory, nothing else.
	 */
	assert_true(d.device_free_start > 0);
	EXPECT_U64(d.device_measured_bytes,
		   d.device_free_start - d.device_free_end);
	EXPECT_U64(d.device_measured_bytes,
		   d.mapped_bytes + d.device_overhead_bytes);
	assert_true(d.device_overhead_bytes > 0);
	EXPECT_U64(d.device_peak_bytes,
		   d.device_free_start - d.device_free_min);
	assert_true(d.device_peak_bytes >= d.peak_mapped_bytes);
	assert_true(fabs(d.device_ratio - h.physical_ratio) <=
		    1e-9 * h.physical_ratio);
}

/* ------------------------------------------------------------------ */
/* Faults */

/**
 * struct snap - What a failed call must leave as it was.
 * @tokens: the sequence's tokens.
 * @len: per table, its length.
 * @nr_blocks: per table, its blocks.
 * @first: per table, its first block (0 when empty).
 */
struct snap {
	uint32_t tokens;
	uint32_t len[16];
	uint32_t nr_blocks[16];
	uint32_t first[16];
};

static void take_snap(const struct kvc_seq *seq, struct snap *sn)
{
	uint32_t t, nr = nr_tables(&seq->kv->shape);

	assert_true(nr <= 16);
	memset(sn, 0, sizeof(*sn));
	sn->tokens = seq->tokens;
	for (t = 0; t < nr; t++) {
		sn->len[t] = seq->tables[t].len;
		sn->nr_blocks[t] = seq->tables[t].nr_blocks;
		sn->first[t] =
			seq->tables[t].nr_blocks ? seq->tables[t].blocks[0] : 0;
	}
}

/**
 * struct script - The calls of test_faults(), on one cache.
 * @fx: the fixture (shape, backends).
 * @be: the backend the cache is made on.
 * @kv: the cache.
 * @seq: its sequences.
 * @pol: the policy.
 * @fn: the entry point made to fail, or KVC_FAKE_NR_FNS for none.
 * @failures: calls that failed (and were retried).
 * @out: the outputs of the last decode of every sequence, per layer.
 */
struct script {
	struct fixture *fx;
	struct kvc_backend *be;
	struct kvc_kv *kv;
	struct kvc_seq *seq[2];
	struct kvc_policy *pol;
	enum kvc_fake_fn fn;
	uint32_t failures;
	float out[2][2][4 * 64];
};

/*
 * A call that failed: it returned -errno and left the sequence as it was;
 * cancel the fault and check the whole cache.
 */
static void failed(struct script *sc, int err, const struct kvc_seq *seq,
		   const struct snap *before, const char *what)
{
	struct snap after;

	if (err >= 0)
		fail_msg("%s = %d, expected -errno", what, err);
	if (sc->fn == KVC_FAKE_NR_FNS)
		fail_msg("%s = %d with no fault injected: %s", what, err,
			 kvc_last_error());
	assert_true(strlen(kvc_last_error()) > 0);
	kvc_fake_fail(sc->fn, 0, 0);
	sc->failures++;
	if (seq) {
		take_snap(seq, &after);
		if (memcmp(&after, before, sizeof(after)))
			fail_msg("%s failed (%d) and changed the sequence",
				 what, err);
	}
	if (sc->kv)
		KV_CHECK(sc->kv);
}

/*
 * The whole cache's check, once the injected fault has fired: the check
 * reads the device too, and must not take the fault meant for the script.
 */
static void script_check(struct script *sc)
{
	if (sc->kv && (sc->fn == KVC_FAKE_NR_FNS || sc->failures))
		KV_CHECK(sc->kv);
}

/* Run @call until it succeeds; at most one failure (the injected one). */
#define RETRY(sc, seq, call)                                \
	do {                                                \
		struct snap sn_;                            \
		int err_, tries_ = 0;                       \
		memset(&sn_, 0, sizeof(sn_));               \
		if (seq)                                    \
			take_snap(seq, &sn_);               \
		while ((err_ = (call)) != 0) {              \
			assert_true(++tries_ < 2);          \
			failed(sc, err_, seq, &sn_, #call); \
		}                                           \
		script_check(sc);                           \
	} while (0)

static void script_append(struct script *sc, int s, uint32_t n, uint64_t seed)
{
	const struct kvc_model_shape *sh = &sc->fx->params.shape;
	uint64_t count = (uint64_t)nr_tables(sh) * n * sh->head_dim;
	float *k, *v;

	k = rnd_floats(&seed, count);
	v = rnd_floats(&seed, count);
	RETRY(sc, sc->seq[s], kvc_seq_append(sc->seq[s], n, k, v));
	free(k);
	free(v);
}

/* Attention of every layer; a failed call must not write @out. */
static void script_attend(struct script *sc, int s, uint32_t n,
			  const struct kvc_observe *obs, uint64_t seed)
{
	const struct kvc_model_shape *sh = &sc->fx->params.shape;
	uint64_t nq = (uint64_t)(n ? n : 1) * sh->q_heads * sh->head_dim, i;
	float *q = rnd_floats(&seed, nq * sh->layers);
	float *out = malloc(nq * sizeof(float));
	struct snap sn;
	uint32_t layer;
	int err, tries;

	assert_non_null(out);
	take_snap(sc->seq[s], &sn);
	for (layer = 0; layer < sh->layers; layer++) {
		for (tries = 0;; tries++) {
			for (i = 0; i < nq; i++)
				out[i] = -12345.0f;
			err = n ? kvc_attn_prefill(sc->seq[s], layer, n,
						   q + layer * nq, out, obs) :
				  kvc_attn_decode(sc->seq[s], layer,
						  q + layer * nq, out,
						  KVC_METRIC_L2);
			if (!err)
				break;
			assert_true(tries < 1);
			for (i = 0; i < nq; i++)
				if (out[i] != -12345.0f)
					fail_msg(
						"a failed attention call wrote its output");
			failed(sc, err, sc->seq[s], &sn, "attention");
		}
		if (!n)
			memcpy(sc->out[s][layer], out, nq * sizeof(float));
	}
	script_check(sc);
	free(q);
	free(out);
}

static void script_run(struct script *sc)
{
	struct kvc_observe obs = { .metric = KVC_METRIC_L2,
				   .window = 8,
				   .pool_kernel = 3 };
	struct kvc_kv_params kp = sc->fx->params;
	uint32_t step;
	int s;

	kp.backend = sc->be;
	RETRY(sc, (struct kvc_seq *)NULL, kvc_kv_create(&kp, &sc->kv));
	for (s = 0; s < 2; s++) {
		RETRY(sc, (struct kvc_seq *)NULL,
		      kvc_seq_create(sc->kv, &sc->seq[s]));
		script_append(sc, s, 40 + 30 * (uint32_t)s, 11 + (uint64_t)s);
		script_attend(sc, s, 8, &obs, 21 + (uint64_t)s);
		RETRY(sc, sc->seq[s],
		      kvc_policy_compress(sc->pol, sc->seq[s], NULL));
	}
	for (step = 0; step < 6; step++) {
		s = (int)(step % 2);
		script_append(sc, s, 1, 31 + step);
		script_attend(sc, s, 0, NULL, 41 + step);
		if (step == 3) {
			RETRY(sc, sc->seq[0],
			      kvc_policy_compress(sc->pol, sc->seq[0], NULL));
			RETRY(sc, (struct kvc_seq *)NULL,
			      kvc_kv_compact(sc->kv, NULL));
		}
	}
	for (s = 0; s < 2; s++)
		script_attend(sc, s, 0, NULL, 51 + (uint64_t)s);
	if (sc->fn != KVC_FAKE_NR_FNS)
		kvc_fake_fail(sc->fn, 0, 0);
	KV_CHECK(sc->kv);
}

/*
 * Make the nth call of a driver entry point fail, for every n the script
 * reaches: each failed call returns -errno and leaves the cache as it was,
 * and once retried the script ends where a faultless run on the host does.
 */
static void test_faults(void **state)
{
	static const struct {
		const char *name;
		kvc_cu_result result;
	} faults[] = {
		{ "cuLaunchKernel", KVC_CUDA_ERROR_INVALID_VALUE },
		{ "cuMemAlloc", KVC_CUDA_ERROR_OUT_OF_MEMORY },
		{ "cuMemcpyHtoDAsync", KVC_CUDA_ERROR_INVALID_VALUE },
	};
	struct fixture *fx = *state;
	struct script *ref = calloc(1, sizeof(*ref));
	struct script *sc = calloc(1, sizeof(*sc));
	uint64_t calls, nth;
	size_t f;
	uint32_t fired = 0;

	assert_non_null(ref);
	assert_non_null(sc);
	ref->fx = fx;
	ref->fn = KVC_FAKE_NR_FNS;
	ref->pol = kvcompress(&shape_f16, 3);
	/* The reference: the script on the host backend. */
	ref->be = fx->be[HOST];
	script_run(ref);
	for (f = 0; f < sizeof(faults) / sizeof(faults[0]); f++) {
		enum kvc_fake_fn fn = fake_fn(faults[f].name);

		/* How many calls a faultless device run makes. */
		memset(sc, 0, sizeof(*sc));
		sc->fx = fx;
		sc->be = fx->be[DEV];
		sc->fn = KVC_FAKE_NR_FNS;
		sc->pol = ref->pol;
		calls = fake_calls(fn);
		script_run(sc);
		calls = fake_calls(fn) - calls;
		kvc_kv_destroy(sc->kv);
		assert_true(calls > 0);
		for (nth = 1; nth <= calls; nth++) {
			memset(sc, 0, sizeof(*sc));
			sc->fx = fx;
			sc->be = fx->be[DEV];
			sc->fn = fn;
			sc->pol = ref->pol;
			kvc_fake_fail(fn, nth, faults[f].result);
			script_run(sc);
			kvc_fake_fail(fn, 0, 0);
			fired += sc->failures;
			expect_close(&sc->out[0][0][0], &ref->out[0][0][0],
				     sizeof(sc->out) / sizeof(float),
				     faults[f].name);
			kvc_kv_destroy(sc->kv);
			assert_no_violation();
		}
	}
	/* Most faults hit a call that returns; some hit a fallback path. */
	assert_true(fired > 0);
	kvc_kv_destroy(ref->kv);
	kvc_policy_destroy(ref->pol);
	free(ref);
	free(sc);
}

/*
 * Device work that takes time: the fake queues it and runs it only when
 * something waits. Everything of a cache is on its one stream, and the
 * compaction's copies are fenced with it, so results do not change and
 * no race is reported.
 */
static void test_async(void **state)
{
	struct kvc_observe obs = { .metric = KVC_METRIC_L2, .window = 8 };
	struct fixture *fx = *state;
	struct kvc_policy *pol = kvcompress(&shape_f16, 3);
	struct kvc_compact_result res[2];
	struct kvc_fake_counts fc;
	uint32_t step;
	int s, c;

	kvc_fake_set_async(true);
	open_both(fx);
	for (s = 0; s < 3; s++) {
		create_seq(fx, s);
		append_both(fx, s, 60 + 20 * (uint32_t)s);
		prefill_both(fx, s, 8, &obs);
		compress_both(fx, pol, s);
	}
	for (step = 0; step < 12; step++) {
		s = (int)(step % 3);
		append_both(fx, s, 1);
		decode_both(fx, s, KVC_METRIC_L2);
		if (step % 4 == 3) {
			compress_both(fx, pol, s);
			for (c = HOST; c <= DEV; c++)
				assert_int_equal(
					kvc_kv_compact(fx->kv[c], &res[c]), 0);
			EXPECT_U64(res[DEV].blocks_moved,
				   res[HOST].blocks_moved);
		}
	}
	/* A sequence ends with its writes possibly still queued. */
	append_both(fx, 1, 3);
	for (c = HOST; c <= DEV; c++)
		kvc_seq_destroy(fx->seq[c][1]);
	fx->seq[HOST][1] = fx->seq[DEV][1] = NULL;
	KV_CHECK(fx->kv[DEV]);
	for (s = 0; s < 3; s += 2) {
		decode_both(fx, s, KVC_METRIC_L1);
		compare_seq(fx, s);
	}
	kvc_fake_counts(&fc);
	assert_true(fc.calls[fake_fn("cuLaunchKernel")] > 0);
	assert_no_violation();
	kvc_policy_destroy(pol);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_create),
		T(test_no_kernels),
		T(test_append_decode),
		T(test_dtypes),
		T(test_prefill_observe),
		T(test_kvcompress),
		T(test_evict_apply),
		T(test_compaction),
		T(test_run),
		T(test_faults),
		T(test_async),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
