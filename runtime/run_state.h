/* SPDX-License-Identifier: MIT */
/*
 * kvc_run()'s state, shared by run.c (the loop and the report) and
 * preempt.c (preemption and the swap). Not a public interface.
 */
#ifndef KVC_RUNTIME_RUN_H
#define KVC_RUNTIME_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <kvc/attention.h>
#include <kvc/evict.h>
#include <kvc/kv.h>
#include <kvc/run.h>
#include <kvc/swap.h>

#include "workload.h"

/**
 * enum run_state - Where a sequence of the run is.
 * @RUN_WAITING: not admitted yet.
 * @RUN_RUNNING: in the cache (decoding, or finished and held).
 * @RUN_SWAPPED: preempted, its KV in the swap under its index.
 * @RUN_RECOMPUTE: preempted without its KV: it starts again from its
 *                 prompt when admitted.
 * @RUN_DONE: finished and freed (with a swap only).
 */
enum run_state {
	RUN_WAITING = 0,
	RUN_RUNNING,
	RUN_SWAPPED,
	RUN_RECOMPUTE,
	RUN_DONE,
};

/**
 * struct run_seq - One sequence of the run.
 * @seq: its place in the evicting cache (NULL unless running).
 * @full: its place in the uncompressed cache, or NULL.
 * @prompt: prompt tokens.
 * @gen: tokens to generate.
 * @done: tokens generated so far.
 * @counted: decode steps of it counted in the run's steps (a recomputed
 *           sequence's steps count once).
 * @state: where it is.
 * @digest: FNV-1a of its attention outputs so far.
 * @fin_tokens: at its end (freed sequences): its tokens.
 * @fin_live: its KVs held over all tables.
 * @fin_conv_blocks: its blocks in the conventional layout.
 */
struct run_seq {
	struct kvc_seq *seq;
	struct kvc_seq *full;
	uint32_t prompt;
	uint32_t gen;
	uint32_t done;
	uint32_t counted;
	enum run_state state;
	uint64_t digest;
	uint64_t fin_tokens;
	uint64_t fin_live;
	uint64_t fin_conv_blocks;
};

/**
 * struct run - A run in progress.
 * @p: the parameters.
 * @shape: the model shape.
 * @kv: the cache the policy evicts from.
 * @full_kv: the cache that keeps everything, or NULL without error samples.
 * @pol: the policy.
 * @synth: the synthetic Q/K/V.
 * @obs: what prefill attention collects for the policy.
 * @decode_metric: what decode attention adds.
 * @seqs: every sequence, in arrival order.
 * @nr_seqs: how many.
 * @arrived: sequences prefilled so far.
 * @k: K scratch for appends, [layers][kv_heads][n][head_dim].
 * @v: V scratch, same layout.
 * @append_tokens: tokens @k and @v hold.
 * @q: query scratch: [n][q_heads][head_dim] for the observed prefill
 *     queries, or one layer's decode queries.
 * @q_tokens: rows of q_heads x head_dim floats that @q and @out hold (at
 *            least layers).
 * @out: attention outputs, as @q; for decode, [layers][q_heads][head_dim].
 * @out_full: decode outputs over the uncompressed cache, same layout.
 * @total_steps: decode steps the whole run makes.
 * @steps: decode steps made so far.
 * @samples: error samples to take.
 * @samples_taken: taken so far.
 * @err_sum: sum of the relative errors sampled.
 * @err_max: the largest.
 * @compressions: kvc_policy_compress() calls.
 * @start: when the run started (CLOCK_MONOTONIC).
 * @progress_at: when progress was last printed (seconds since @start).
 * @progress_shown: a progress line is on the terminal.
 * @be: the evicting cache's backend.
 * @own_be: @be when the run opened it (closed at teardown), else NULL.
 * @device: @be is a cuda backend: its free memory is measured.
 * @free_start: free device memory before the cache was made.
 * @free_min: the least seen since.
 * @mapped_seen: the most the pool was seen to map, for @free_min.
 * @rec: the recorder attached to @kv's pool, or NULL.
 * @sw: the swap, or NULL.
 * @preemptions: running sequences preempted.
 * @recomputes: sequences restarted from their prompt.
 * @swap_failures: swap-outs and swap-ins that failed.
 * @swap_notice: a failed swap was reported on stderr already.
 */
struct run {
	const struct kvc_run_params *p;
	struct kvc_model_shape shape;
	struct kvc_backend *be;
	struct kvc_backend *own_be;
	bool device;
	uint64_t free_start;
	uint64_t free_min;
	uint64_t mapped_seen;
	struct kvc_kv *kv;
	struct kvc_kv *full_kv;
	struct kvc_policy *pol;
	struct kvc_synth *synth;
	struct kvc_observe obs;
	enum kvc_metric_kind decode_metric;
	struct run_seq *seqs;
	uint32_t nr_seqs;
	uint32_t arrived;
	float *k;
	float *v;
	uint32_t append_tokens;
	float *q;
	uint32_t q_tokens;
	float *out;
	float *out_full;
	uint64_t total_steps;
	uint64_t steps;
	uint64_t samples;
	uint64_t samples_taken;
	double err_sum;
	double err_max;
	uint64_t compressions;
	struct timespec start;
	double progress_at;
	bool progress_shown;
	struct kvc_recorder *rec;
	struct kvc_swap *sw;
	uint64_t preemptions;
	uint64_t recomputes;
	uint64_t swap_failures;
	bool swap_notice;
};

/**
 * kvc_run_rec() - Record a request-level event, when the run records.
 * @r: the run.
 * @kind: the event.
 * @a: payload word 0.
 * @b: payload word 1.
 * @c: payload word 2.
 * @d: payload word 3.
 *
 * A write error stays in the recorder; closing it reports it.
 */
void kvc_run_rec(struct run *r, enum kvc_rec_kind kind, uint64_t a, uint64_t b,
		 uint64_t c, uint64_t d);

/**
 * kvc_run_prefill() - Admit sequence @i: create it (in both caches),
 * append its prompt, observe it, compress it when due.
 * @r: the run.
 * @i: the sequence.
 * @compressed: set when it was compressed.
 *
 * Return: 0; -EAGAIN when, with a swap, it did not fit and was the one to
 * give way (nothing of it is left in the caches); or the error.
 */
int kvc_run_prefill(struct run *r, uint32_t i, bool *compressed);

/**
 * kvc_run_release() - Free sequence @i in both caches (its figures and
 * state are the caller's to keep).
 * @r: the run.
 * @i: the sequence.
 */
void kvc_run_release(struct run *r, uint32_t i);

/**
 * kvc_run_finish() - A sequence generated its last token: with a swap,
 * note its figures and free it.
 * @r: the run.
 * @i: the sequence.
 */
void kvc_run_finish(struct run *r, uint32_t i);

/**
 * kvc_run_make_room() - An allocation for sequence @self failed under the
 * budget: compact, or preempt a running sequence.
 * @r: the run (with a swap).
 * @self: the sequence that needs room.
 * @admitting: @self is being prefilled (not running yet).
 *
 * Return: 0 to try again; -EAGAIN when @self is the one to give way (a
 * running @self is preempted; an admitted one must be dropped by the
 * caller); or an error.
 */
int kvc_run_make_room(struct run *r, uint32_t self, bool admitting);

/**
 * kvc_run_readmit() - Bring preempted sequences back, first come first
 * served, while memory allows.
 * @r: the run (with a swap).
 * @compressed: set when a recomputed prefill compressed.
 * @resident: sequences in the cache.
 * @progress: set when one came back.
 *
 * Return: 0, or an error (-ENOMEM when the cache holds nothing and the
 * first sequence still does not fit the budget).
 */
int kvc_run_readmit(struct run *r, bool *compressed, uint32_t resident,
		    bool *progress);

/**
 * kvc_run_admissible() - Would sequence @i's prompt, and its first token,
 * fit under the budget now (once compacted)? Admission waits until it
 * does rather than preempting: preemption is for sequences that run.
 * @r: the run (with a swap).
 * @i: the sequence.
 *
 * Return: true or false.
 */
bool kvc_run_admissible(struct run *r, uint32_t i);

/**
 * kvc_run_waiting() - Is any preempted sequence waiting to come back?
 * @r: the run.
 *
 * Return: true or false.
 */
bool kvc_run_waiting(const struct run *r);

#endif /* KVC_RUNTIME_RUN_H */
