/* SPDX-License-Identifier: MIT */
/* Sequences, snapshots and checks shared by the swap tier's tests. */
#ifndef KVC_TESTS_SWAP_SEQ_H
#define KVC_TESTS_SWAP_SEQ_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <kvc/evict.h>
#include <kvc/kv.h>
#include <kvc/kvc.h>
#include <kvc/swap.h>

/* Tables (layers * kv_heads) a snapshot can hold. */
#define SWAP_SNAP_MAX_TABLES 64

/* Building sequences (usable in a forked child: no cmocka here) */

/* A uniform float in [-1, 1) from @rng. */
float swap_seq_rng_float(uint64_t *rng);

/* Appends @n tokens of random K and V to @seq. */
int swap_seq_append(struct kvc_seq *seq, const struct kvc_model_shape *s,
		    uint32_t n, uint64_t *rng);

/*
 * One decode step on every layer with random queries, adding the L2
 * metric. Outputs go to @outs (layers * q_heads * head_dim floats) when
 * given.
 */
int swap_seq_decode(struct kvc_seq *seq, const struct kvc_model_shape *s,
		    uint64_t *rng, float *outs);

/*
 * The sequence of @key: @prefill random tokens, @steps decode steps (one
 * token and one attention per layer each), compression by @pol when given,
 * then one more decode step. The same arguments on caches of the same
 * shape give the same sequence.
 */
int swap_seq_build(struct kvc_kv *kv, struct kvc_policy *pol, uint64_t key,
		   uint32_t prefill, uint32_t steps, struct kvc_seq **out);

/* KV-Compress, rate 3, protected window 8, no sinks, L2 metric. */
int swap_seq_policy(const struct kvc_model_shape *s, struct kvc_policy **out);

/**
 * struct swap_snap - What a sequence holds, as stored.
 * @tokens: its tokens.
 * @nr_tables: layers * kv_heads.
 * @len: per table, KVs held.
 * @kv: per table, per KV: K row, V row, slot metadata.
 * @rec: bytes of one KV's record in @kv.
 * @row: bytes of one K or V row.
 * @blocks: blocks over all tables.
 */
struct swap_snap {
	uint32_t tokens;
	uint32_t nr_tables;
	uint32_t len[SWAP_SNAP_MAX_TABLES];
	uint8_t *kv[SWAP_SNAP_MAX_TABLES];
	size_t rec;
	size_t row;
	uint64_t blocks;
};

void swap_snap_free(struct swap_snap *sn);

/* The host address of block @id of @kv's pool; fails the test if none. */
const uint8_t *swap_seq_block_host(struct kvc_kv *kv, uint32_t id);

/* @with_metric false leaves metrics out (a device cache's host mirror). */
void swap_snap_take(struct kvc_kv *kv, const struct kvc_seq *seq,
		    struct swap_snap *sn, bool with_metric);

#define SNAP_EQUAL(a, b) swap_snap_equal(a, b, __FILE__, __LINE__)

/* @b holds what @a holds, byte for byte, or the test fails at @file:@line. */
void swap_snap_equal(const struct swap_snap *a, const struct swap_snap *b,
		     const char *file, int line);

/* Checks and wrappers */

#define SW_CHECK(sw) swap_seq_check(sw, __FILE__, __LINE__)

/* kvc_swap_check() passes, or the test fails at @file:@line. */
void swap_seq_check(const struct kvc_swap *sw, const char *file, int line);

#define EXPECT_ERR(call, want)                                               \
	do {                                                                 \
		int got_ = (call);                                           \
		if (got_ != (want))                                          \
			fail_msg("%s = %d, expected %d (%s)", #call, got_,   \
				 (int)(want), got_ ? kvc_last_error() : ""); \
	} while (0)

struct kvc_swap_stats swap_seq_stats(const struct kvc_swap *sw);

uint64_t swap_seq_live_blocks(struct kvc_kv *kv);

/* The entry of @key, which the swap must hold. */
struct kvc_swap_entry swap_seq_lookup(const struct kvc_swap *sw, uint64_t key);

/* Flips the byte at @off of the file @path. */
void swap_seq_flip_byte(const char *path, uint64_t off);

uint64_t swap_seq_file_size(const char *path);

/* Fixture: one host cache and the swap under test */

/* The host backend's granularity in the fixture's cache. */
#define SWAP_FX_GRAN (64ull << 10)

/* 2 x 16 x 64 x 2 = 4096-byte blocks: zero copy between chunks and file. */
extern const struct kvc_model_shape swap_shape_f16;

/*
 * 2 x 16 x 80 x 2 = 5120-byte blocks: not a multiple of 4096, so through
 * the staging buffer.
 */
extern const struct kvc_model_shape swap_shape_hd80;

/**
 * struct swap_fx_cfg - What the fixtures of one test program share.
 * @name: the program's name, for messages.
 * @tmp_name: the prefix of its temporary directories.
 * @capacity: the cache's capacity in blocks.
 * @swap_cap: the swap's cap on its data file, in bytes.
 * @io_bytes: the most bytes one swap I/O moves, or 0 for the default.
 */
struct swap_fx_cfg {
	const char *name;
	const char *tmp_name;
	uint32_t capacity;
	uint64_t swap_cap;
	uint32_t io_bytes;
};

/**
 * struct swap_fx - One cache and the swap under test.
 * @cfg: what the program's fixtures share.
 * @dir: a fresh temporary directory, removed in teardown.
 * @path: the swap's data file in it.
 * @idx: its journal.
 * @shape: the cache's shape.
 * @flags: engine flags every swap of the test is opened with.
 * @be: the host backend.
 * @kv: the cache.
 * @pol: KV-Compress, rate 3.
 * @sw: the swap, or NULL.
 */
struct swap_fx {
	const struct swap_fx_cfg *cfg;
	char dir[PATH_MAX / 2];
	char path[PATH_MAX];
	char idx[PATH_MAX + 8];
	struct kvc_model_shape shape;
	uint32_t flags;
	struct kvc_backend *be;
	struct kvc_kv *kv;
	struct kvc_policy *pol;
	struct kvc_swap *sw;
};

/**
 * swap_fx_cache() - Creates @fx's backend, cache and policy.
 * @fx: a fixture with @cfg and @shape set and no cache yet.
 *
 * Uses no cmocka, so that a forked child can build a cache of its own
 * like the parent's. On failure what was created is left in @fx for
 * swap_fx_teardown() or the process's exit.
 *
 * Return: 0, or a negative errno with kvc_last_error() set.
 */
int swap_fx_cache(struct swap_fx *fx);

/**
 * swap_fx_setup() - A cmocka setup: a fresh directory and a cache.
 * @state: where the new &struct swap_fx goes.
 * @cfg: what the program's fixtures share; must outlive the test.
 * @shape: the cache's shape.
 * @flags: engine flags for every swap of the test (KVC_SWAP_NO_URING...).
 *
 * Return: 0, or -1 with a message on stderr.
 */
int swap_fx_setup(void **state, const struct swap_fx_cfg *cfg,
		  const struct kvc_model_shape *shape, uint32_t flags);

/**
 * swap_fx_teardown() - A cmocka teardown: closes and frees what
 * swap_fx_setup() made, the swap included, and removes the directory.
 * @state: the &struct swap_fx.
 *
 * Return: 0, or -1 with a message on stderr when the directory could not
 * be removed.
 */
int swap_fx_teardown(void **state);

/**
 * swap_fx_params() - The parameters the test's swaps are opened with.
 * @fx: the fixture.
 * @path: the data file.
 * @flags: flags for this open, added to @fx's and KVC_SWAP_QUIET.
 * @p: filled in.
 */
void swap_fx_params(const struct swap_fx *fx, const char *path, uint32_t flags,
		    struct kvc_swap_params *p);

#define SWAP_OPEN(fx, flags) swap_fx_open(fx, flags, __FILE__, __LINE__)

/**
 * swap_fx_open() - Opens @fx->sw on @fx->path, or the test fails.
 * @fx: the fixture, with no swap open.
 * @flags: flags for this open (KVC_SWAP_FRESH...).
 * @file: the caller's file, for messages.
 * @line: the caller's line.
 *
 * Return: the stats of the swap just opened.
 */
struct kvc_swap_stats swap_fx_open(struct swap_fx *fx, uint32_t flags,
				   const char *file, int line);

/* Closes @fx->sw; the test may open it again. */
void swap_fx_close(struct swap_fx *fx);

/* Wrappers that fail the test at the caller's line */

#define SWAP_BUILD(kv, pol, key, prefill, steps) \
	swap_seq_build_ok(kv, pol, key, prefill, steps, __FILE__, __LINE__)

/* swap_seq_build(), which must succeed, then kvc_kv_check(). */
struct kvc_seq *swap_seq_build_ok(struct kvc_kv *kv, struct kvc_policy *pol,
				  uint64_t key, uint32_t prefill,
				  uint32_t steps, const char *file, int line);

#define SWAP_OUT(kv, sw, seq, key) \
	swap_seq_out_ok(kv, sw, seq, key, __FILE__, __LINE__)

/* kvc_swap_out(), which must succeed, then both checks. */
void swap_seq_out_ok(struct kvc_kv *kv, struct kvc_swap *sw,
		     struct kvc_seq *seq, uint64_t key, const char *file,
		     int line);

#define SWAP_IN(kv, sw, key) swap_seq_in_ok(kv, sw, key, __FILE__, __LINE__)

/*
 * kvc_swap_in(), which must give a sequence and take @key out of the
 * swap, then both checks.
 */
struct kvc_seq *swap_seq_in_ok(struct kvc_kv *kv, struct kvc_swap *sw,
			       uint64_t key, const char *file, int line);

#define SWAP_UNTOUCHED(kv, seq, sn) \
	swap_seq_untouched(kv, seq, sn, __FILE__, __LINE__)

/* @seq still holds what @sn says, metrics included. */
void swap_seq_untouched(struct kvc_kv *kv, const struct kvc_seq *seq,
			const struct swap_snap *sn, const char *file, int line);

#endif /* KVC_TESTS_SWAP_SEQ_H */
