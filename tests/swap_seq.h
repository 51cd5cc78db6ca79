/* SPDX-License-Identifier: MIT */
/* Sequences, snapshots and checks shared by the swap tier's tests. */
#ifndef KVC_TESTS_SWAP_SEQ_H
#define KVC_TESTS_SWAP_SEQ_H

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

/* Temporary directories */

/* Makes a fresh @dir ($TMPDIR or /tmp, then @name-XXXXXX): 0 or -1. */
int swap_seq_mkdtemp(char *dir, size_t n, const char *name);

/* Removes @dir and the files in it: 0 or -1. */
int swap_seq_remove_dir(const char *dir);

#endif /* KVC_TESTS_SWAP_SEQ_H */
