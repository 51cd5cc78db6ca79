/* Description: support, not a test: sequences with random K and V, snapshots of what they hold, checks, and one host cache with its swap as a fixture, shared by the swap tier's tests. */
// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/attention.h>
#include <kvc/backend.h>
#include <kvc/evict.h>
#include <kvc/kv.h>
#include <kvc/kvc.h>
#include <kvc/swap.h>

#include "../runtime/internal.h"
#include "swap_seq.h"
#include "tmpdir.h"

/* ------------------------------------------------------------------ */
/* Building sequences (usable in a forked child: no cmocka here) */

float swap_seq_rng_float(uint64_t *rng)
{
	return (float)(rng_next(rng) >> 40) / (float)(1u << 23) - 1.0f;
}

int swap_seq_append(struct kvc_seq *seq, const struct kvc_model_shape *s,
		    uint32_t n, uint64_t *rng)
{
	uint64_t count = (uint64_t)s->layers * s->kv_heads * n * s->head_dim;
	float *k = malloc(count * sizeof(float));
	float *v = malloc(count * sizeof(float));
	uint64_t i;
	int err = -ENOMEM;

	if (k && v) {
		for (i = 0; i < count; i++) {
			k[i] = swap_seq_rng_float(rng);
			v[i] = swap_seq_rng_float(rng);
		}
		err = kvc_seq_append(seq, n, k, v);
	}
	free(k);
	free(v);
	return err;
}

int swap_seq_decode(struct kvc_seq *seq, const struct kvc_model_shape *s,
		    uint64_t *rng, float *outs)
{
	uint32_t nq = s->q_heads * s->head_dim, layer, i;
	float *q = malloc(nq * sizeof(float));
	float *out = outs ? NULL : malloc(nq * sizeof(float));
	int err = q && (outs || out) ? 0 : -ENOMEM;

	for (layer = 0; !err && layer < s->layers; layer++) {
		for (i = 0; i < nq; i++)
			q[i] = swap_seq_rng_float(rng);
		err = kvc_attn_decode(seq, layer, q,
				      outs ? outs + (uint64_t)layer * nq : out,
				      KVC_METRIC_L2);
	}
	free(q);
	free(out);
	return err;
}

int swap_seq_build(struct kvc_kv *kv, struct kvc_policy *pol, uint64_t key,
		   uint32_t prefill, uint32_t steps, struct kvc_seq **out)
{
	const struct kvc_model_shape *s = kvc_kv_shape(kv);
	uint64_t rng = key * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
	struct kvc_seq *seq;
	uint32_t i;
	int err;

	err = kvc_seq_create(kv, &seq);
	if (err)
		return err;
	if (prefill)
		err = swap_seq_append(seq, s, prefill, &rng);
	for (i = 0; !err && i < steps; i++) {
		err = swap_seq_append(seq, s, 1, &rng);
		if (!err)
			err = swap_seq_decode(seq, s, &rng, NULL);
	}
	if (!err && pol) {
		err = kvc_policy_compress(pol, seq, NULL);
		if (!err)
			err = swap_seq_append(seq, s, 1, &rng);
		if (!err)
			err = swap_seq_decode(seq, s, &rng, NULL);
	}
	if (err) {
		kvc_seq_destroy(seq);
		return err;
	}
	*out = seq;
	return 0;
}

int swap_seq_policy(const struct kvc_model_shape *s, struct kvc_policy **out)
{
	struct kvc_policy_params pp;

	kvc_policy_params_init(&pp);
	pp.name = "kvcompress";
	pp.rate = 3;
	pp.protected_window = 8;
	pp.sinks = 0;
	pp.metric = KVC_METRIC_L2;
	return kvc_policy_create(&pp, s, out);
}

/* ------------------------------------------------------------------ */
/* Snapshots */

void swap_snap_free(struct swap_snap *sn)
{
	uint32_t t;

	for (t = 0; t < sn->nr_tables; t++)
		free(sn->kv[t]);
	memset(sn, 0, sizeof(*sn));
}

const uint8_t *swap_seq_block_host(struct kvc_kv *kv, uint32_t id)
{
	uint64_t addr = 0;
	int err = kvc_pool_block_addr(kvc_kv_pool(kv), id, &addr);

	if (err)
		fail_msg("kvc_pool_block_addr(%u) = %d: %s", id, err,
			 kvc_last_error());
	return (const uint8_t *)(uintptr_t)addr;
}

void swap_snap_take(struct kvc_kv *kv, const struct kvc_seq *seq,
		    struct swap_snap *sn, bool with_metric)
{
	const struct kvc_model_shape *s = kvc_kv_shape(kv);
	uint32_t bs = s->block_size, t, i, nr;

	memset(sn, 0, sizeof(*sn));
	sn->tokens = kvc_seq_tokens(seq);
	sn->nr_tables = s->layers * s->kv_heads;
	assert_true(sn->nr_tables <= SWAP_SNAP_MAX_TABLES);
	sn->row = (size_t)s->head_dim * kvc_dtype_bytes(s->dtype);
	sn->rec = 2 * sn->row + sizeof(struct kvc_slot_meta);
	for (t = 0; t < sn->nr_tables; t++) {
		uint32_t layer = t / s->kv_heads, head = t % s->kv_heads;
		const uint32_t *table = kvc_seq_table(seq, layer, head, &nr);
		uint32_t len = kvc_seq_len(seq, layer, head);

		EXPECT_U64(nr, (len + bs - 1) / bs);
		sn->len[t] = len;
		sn->blocks += nr;
		sn->kv[t] = calloc(len ? len : 1, sn->rec);
		assert_non_null(sn->kv[t]);
		for (i = 0; i < len; i++) {
			const uint8_t *b =
				swap_seq_block_host(kv, table[i / bs]);
			uint8_t *r = sn->kv[t] + i * sn->rec;
			struct kvc_slot_meta m =
				kv->meta[(uint64_t)table[i / bs] * bs + i % bs];

			if (!with_metric)
				m.metric = 0;
			memcpy(r, b + (i % bs) * sn->row, sn->row);
			memcpy(r + sn->row, b + (bs + i % bs) * sn->row,
			       sn->row);
			memcpy(r + 2 * sn->row, &m, sizeof(m));
		}
	}
}

void swap_snap_equal(const struct swap_snap *a, const struct swap_snap *b,
		     const char *file, int line)
{
	uint32_t t, i;

	if (a->tokens != b->tokens)
		fail_msg("%s:%d: %u tokens, expected %u", file, line, b->tokens,
			 a->tokens);
	assert_int_equal(a->nr_tables, b->nr_tables);
	for (t = 0; t < a->nr_tables; t++) {
		if (a->len[t] != b->len[t])
			fail_msg("%s:%d: table %u holds %u KVs, expected %u",
				 file, line, t, b->len[t], a->len[t]);
		for (i = 0; i < a->len[t]; i++) {
			const uint8_t *x = a->kv[t] + i * a->rec;
			const uint8_t *y = b->kv[t] + i * a->rec;
			struct kvc_slot_meta mx, my;

			if (memcmp(x, y, a->row))
				fail_msg("%s:%d: table %u KV %u: K differs",
					 file, line, t, i);
			if (memcmp(x + a->row, y + a->row, a->row))
				fail_msg("%s:%d: table %u KV %u: V differs",
					 file, line, t, i);
			memcpy(&mx, x + 2 * a->row, sizeof(mx));
			memcpy(&my, y + 2 * a->row, sizeof(my));
			if (memcmp(&mx, &my, sizeof(mx)))
				fail_msg(
					"%s:%d: table %u KV %u: metric %a pos %d, expected metric %a pos %d",
					file, line, t, i, (double)my.metric,
					my.pos, (double)mx.metric, mx.pos);
		}
	}
	EXPECT_U64(b->blocks, a->blocks);
}

/* ------------------------------------------------------------------ */
/* Checks and wrappers */

void swap_seq_check(const struct kvc_swap *sw, const char *file, int line)
{
	int err = kvc_swap_check(sw);

	if (err)
		fail_msg("%s:%d: kvc_swap_check() = %d: %s", file, line, err,
			 kvc_last_error());
}

struct kvc_swap_stats swap_seq_stats(const struct kvc_swap *sw)
{
	struct kvc_swap_stats st;

	memset(&st, 0xa5, sizeof(st));
	kvc_swap_get_stats(sw, &st);
	return st;
}

uint64_t swap_seq_live_blocks(struct kvc_kv *kv)
{
	struct kvc_pool_stats st;

	kvc_pool_get_stats(kvc_kv_pool(kv), &st, NULL);
	return st.blocks_live;
}

struct kvc_swap_entry swap_seq_lookup(const struct kvc_swap *sw, uint64_t key)
{
	struct kvc_swap_entry e;
	int err;

	memset(&e, 0, sizeof(e));
	err = kvc_swap_lookup(sw, key, &e);
	if (err)
		fail_msg("kvc_swap_lookup(%" PRIu64 ") = %d", key, err);
	EXPECT_U64(e.key, key);
	return e;
}

void swap_seq_flip_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	assert_int_equal(close(fd), 0);
}

uint64_t swap_seq_file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st))
		fail_msg("stat(%s): %s", path, strerror(errno));
	return (uint64_t)st.st_size;
}

/* ------------------------------------------------------------------ */
/* Wrappers */

struct kvc_seq *swap_seq_build_ok(struct kvc_kv *kv, struct kvc_policy *pol,
				  uint64_t key, uint32_t prefill,
				  uint32_t steps, const char *file, int line)
{
	struct kvc_seq *seq = NULL;
	int err = swap_seq_build(kv, pol, key, prefill, steps, &seq);

	if (err)
		fail_msg("%s:%d: building sequence %" PRIu64 " = %d: %s", file,
			 line, key, err, kvc_last_error());
	check_kv_at(kv, file, line);
	return seq;
}

void swap_seq_out_ok(struct kvc_kv *kv, struct kvc_swap *sw,
		     struct kvc_seq *seq, uint64_t key, const char *file,
		     int line)
{
	int err = kvc_swap_out(sw, seq, key);

	if (err)
		fail_msg("%s:%d: kvc_swap_out(%" PRIu64 ") = %d: %s", file,
			 line, key, err, kvc_last_error());
	swap_seq_check(sw, file, line);
	check_kv_at(kv, file, line);
}

struct kvc_seq *swap_seq_in_ok(struct kvc_kv *kv, struct kvc_swap *sw,
			       uint64_t key, const char *file, int line)
{
	struct kvc_swap_entry e;
	struct kvc_seq *seq = NULL;
	int err = kvc_swap_in(sw, key, &seq);

	if (err)
		fail_msg("%s:%d: kvc_swap_in(%" PRIu64 ") = %d: %s", file, line,
			 key, err, kvc_last_error());
	if (!seq)
		fail_msg("%s:%d: kvc_swap_in(%" PRIu64 ") gave no sequence",
			 file, line, key);
	if (kvc_swap_lookup(sw, key, &e) != -ENOENT)
		fail_msg("%s:%d: key %" PRIu64
			 " still in the swap after swap-in",
			 file, line, key);
	swap_seq_check(sw, file, line);
	check_kv_at(kv, file, line);
	return seq;
}

void swap_seq_untouched(struct kvc_kv *kv, const struct kvc_seq *seq,
			const struct swap_snap *sn, const char *file, int line)
{
	struct swap_snap now;

	swap_snap_take(kv, seq, &now, true);
	swap_snap_equal(sn, &now, file, line);
	swap_snap_free(&now);
}

/* ------------------------------------------------------------------ */
/* Fixture */

const struct kvc_model_shape swap_shape_f16 = {
	.layers = 2,
	.q_heads = 4,
	.kv_heads = 2,
	.head_dim = 64,
	.block_size = 16,
	.dtype = KVC_DTYPE_F16,
};

const struct kvc_model_shape swap_shape_hd80 = {
	.layers = 2,
	.q_heads = 4,
	.kv_heads = 2,
	.head_dim = 80,
	.block_size = 16,
	.dtype = KVC_DTYPE_F16,
};

int swap_fx_cache(struct swap_fx *fx)
{
	struct kvc_kv_params kp;
	int err;

	memset(&kp, 0, sizeof(kp));
	kp.shape = fx->shape;
	kp.capacity_blocks = fx->cfg->capacity;
	kp.flags = KVC_POOL_NO_STATS_PAGE;
	err = kvc_backend_open_host(SWAP_FX_GRAN, &fx->be);
	if (err)
		return err;
	kp.backend = fx->be;
	err = kvc_kv_create(&kp, &fx->kv);
	if (err)
		return err;
	return swap_seq_policy(&fx->shape, &fx->pol);
}

/*
 * Frees what swap_fx_cache() and swap_fx_setup() made, and @fx: 0, or -1
 * when the directory could not be removed.
 */
static int swap_fx_free(struct swap_fx *fx)
{
	int err = 0;

	kvc_swap_close(fx->sw);
	kvc_policy_destroy(fx->pol);
	kvc_kv_destroy(fx->kv);
	kvc_backend_close(fx->be);
	if (tmpdir_remove(fx->dir)) {
		fprintf(stderr, "%s: cannot remove %s: %s\n", fx->cfg->name,
			fx->dir, strerror(errno));
		err = -1;
	}
	free(fx);
	return err;
}

int swap_fx_setup(void **state, const struct swap_fx_cfg *cfg,
		  const struct kvc_model_shape *shape, uint32_t flags)
{
	struct swap_fx *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	fx->cfg = cfg;
	if (tmpdir_make(fx->dir, sizeof(fx->dir), cfg->tmp_name)) {
		fprintf(stderr, "%s setup: temporary directory: %s\n",
			cfg->name, strerror(errno));
		free(fx);
		return -1;
	}
	snprintf(fx->path, sizeof(fx->path), "%s/swap", fx->dir);
	snprintf(fx->idx, sizeof(fx->idx), "%s.idx", fx->path);
	fx->shape = *shape;
	fx->flags = flags;
	if (swap_fx_cache(fx)) {
		fprintf(stderr, "%s setup: %s\n", cfg->name, kvc_last_error());
		swap_fx_free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

int swap_fx_teardown(void **state)
{
	return swap_fx_free(*state);
}

void swap_fx_params(const struct swap_fx *fx, const char *path, uint32_t flags,
		    struct kvc_swap_params *p)
{
	kvc_swap_params_init(p);
	p->path = path;
	p->cap_bytes = fx->cfg->swap_cap;
	if (fx->cfg->io_bytes)
		p->io_bytes = fx->cfg->io_bytes;
	p->flags = flags | fx->flags | KVC_SWAP_QUIET;
}

struct kvc_swap_stats swap_fx_open(struct swap_fx *fx, uint32_t flags,
				   const char *file, int line)
{
	struct kvc_swap_params p;
	int err;

	swap_fx_params(fx, fx->path, flags, &p);
	assert_null(fx->sw);
	err = kvc_swap_open(&p, fx->kv, &fx->sw);
	if (err)
		fail_msg("%s:%d: kvc_swap_open(%s) = %d: %s", file, line,
			 fx->path, err, kvc_last_error());
	swap_seq_check(fx->sw, file, line);
	return swap_seq_stats(fx->sw);
}

void swap_fx_close(struct swap_fx *fx)
{
	kvc_swap_close(fx->sw);
	fx->sw = NULL;
}
