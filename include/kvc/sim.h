/* SPDX-License-Identifier: MIT */
/*
 * Replays for fragmentation studies.
 *
 * Logical replay (kvc_sim_run()): a request stream - arrival time, prompt
 * and output lengths, from a CSV or from a recorded trace's %KVC_REC_ARRIVE
 * events - served step by step by a continuous-batching scheduler over a
 * real kvc pool that maps nothing (the "sim" backend), under any
 * configuration: layout, placement, chunk size, watermark, compaction and
 * eviction. No K or V is computed: what memory sees is how many KVs each
 * (layer, KV head) keeps, and the eviction model decides that (see
 * Documentation/replay.rst).
 *
 * Exact replay (kvc_replay_exact()): a recorded trace's allocator events
 * applied verbatim to a pool of the recorded geometry, checking the pool's
 * invariants and the byte ladder after every event and the final state
 * against the closing snapshot.
 */
#ifndef KVC_SIM_H
#define KVC_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/evict.h>
#include <kvc/kv.h>
#include <kvc/pool.h>

#ifdef __cplusplus
extern "C" {
#endif

struct kvc_recorder;

/**
 * struct kvc_sim_request - One request of a stream.
 * @arrival_s: arrival time in seconds from the stream's start.
 * @prompt: prompt tokens (>= 1).
 * @gen: tokens to generate (>= 0).
 */
struct kvc_sim_request {
	double arrival_s;
	uint32_t prompt;
	uint32_t gen;
};

/**
 * kvc_sim_requests_csv() - Read a timed request stream from a CSV.
 * @path: a CSV as kvc_trace_read() reads; the arrival time comes from a
 *        column "arrival_s" (seconds, decimal) when there is one, else
 *        requests arrive one per second.
 * @max: at most this many (0 = all).
 * @reqs: set to a malloc'ed array, sorted by arrival (stable).
 * @n: set to the count.
 *
 * Return: 0; kvc_trace_read()'s errors; -EINVAL naming the line for an
 * arrival time that is not a finite number >= 0.
 */
int kvc_sim_requests_csv(const char *path, uint32_t max,
			 struct kvc_sim_request **reqs, uint32_t *n);

/**
 * kvc_sim_requests_rec() - Read the request stream of a recorded trace.
 * @path: a trace (see kvc/record.h).
 * @max: at most this many (0 = all).
 * @reqs: set to a malloc'ed array of its %KVC_REC_ARRIVE events, by
 *        arrival.
 * @n: set to the count.
 *
 * Return: 0; the reader's errors; -EINVAL when the trace holds no
 * request.
 */
int kvc_sim_requests_rec(const char *path, uint32_t max,
			 struct kvc_sim_request **reqs, uint32_t *n);

/**
 * enum kvc_sim_layout - How the KV region is laid out.
 * @KVC_LAYOUT_PER_HEAD: kvc: one block = block_size tokens of one (layer,
 *                       KV head), chunks mapped on demand.
 * @KVC_LAYOUT_PAGED: a conventional paged cache (vLLM): one block =
 *                    block_size tokens of every KV head of one layer, so a
 *                    layer needs ceil(longest head / block_size) blocks;
 *                    the whole region is allocated up front.
 * @KVC_LAYOUT_CONTIG_MAX: a contiguous reservation per request of the
 *                         maximum length (Orca "Max").
 * @KVC_LAYOUT_CONTIG_POW2: ... of the request's final length rounded up
 *                          to a power of two (Orca "Pow2").
 * @KVC_LAYOUT_CONTIG_ORACLE: ... of exactly its final length (Orca
 *                            "Oracle").
 *
 * Contiguous layouts allocate whole reservations from the region at slot
 * (token) granularity and evict nothing.
 */
enum kvc_sim_layout {
	KVC_LAYOUT_PER_HEAD = 0,
	KVC_LAYOUT_PAGED = 1,
	KVC_LAYOUT_CONTIG_MAX = 2,
	KVC_LAYOUT_CONTIG_POW2 = 3,
	KVC_LAYOUT_CONTIG_ORACLE = 4,
};

/**
 * kvc_sim_layout_parse() - Parse "per-head", "paged", "contig-max",
 * "contig-pow2" or "contig-oracle".
 * @name: the name.
 * @out: set on success.
 *
 * Return: 0, or -EINVAL with a message.
 */
int kvc_sim_layout_parse(const char *name, enum kvc_sim_layout *out);

/**
 * kvc_sim_layout_name() - The name of a layout.
 * @l: the layout.
 *
 * Return: a static string.
 */
const char *kvc_sim_layout_name(enum kvc_sim_layout l);

/**
 * enum kvc_sim_compact - When the pool compacts during a replay.
 * @KVC_SIM_COMPACT_OFF: never.
 * @KVC_SIM_COMPACT_FULL: in full at the end of every step that freed
 *                        blocks.
 * @KVC_SIM_COMPACT_PROACTIVE: one kvc_pool_compact_tick() per step, with
 *                             the pool's marks and budget.
 */
enum kvc_sim_compact {
	KVC_SIM_COMPACT_OFF = 0,
	KVC_SIM_COMPACT_FULL = 1,
	KVC_SIM_COMPACT_PROACTIVE = 2,
};

/**
 * kvc_sim_compact_name() - The name of a compaction mode: "off", "full"
 * or "proactive".
 * @c: the mode.
 *
 * Return: the name, or "?".
 */
const char *kvc_sim_compact_name(enum kvc_sim_compact c);

/**
 * struct kvc_sim_params - One configuration of a logical replay.
 * @label: the configuration's name in tables and plots (NULL: made from
 *         the settings).
 * @shape: the model geometry (q_heads unused).
 * @layout: see &enum kvc_sim_layout.
 * @capacity_bytes: the KV region: the most the cache may map (> 0).
 * @chunk_bytes: physical chunk size (0 = 2 MiB); a multiple of 4 KiB,
 *               and of the block size.
 * @watermark: empty chunks kept mapped.
 * @placement: block placement policy.
 * @seed: seeds placement and the eviction model.
 * @compact: see &enum kvc_sim_compact.
 * @compact_high: proactive start mark (0 < high < 1).
 * @compact_low: proactive stop mark (0 <= low < high).
 * @compact_budget_bytes: bytes one proactive tick may copy (0 = no limit).
 * @policy: eviction policy and rate, as for the runtime (name "full" or
 *          rate 1 = no eviction); only name, rate, max_cache_tokens,
 *          protected_window, sinks, compress_once, interval,
 *          window_tokens and the pyramid parameters are used.
 * @head_skew: "kvcompress": sigma of the log-normal spread of how many
 *             KVs each head keeps (0 = every head alike; default 1).
 * @step_s: seconds one iteration takes (> 0; default 0.05).
 * @max_seqs: most sequences running at once (0 = no limit).
 * @max_len: requests are cut to this many tokens, prompt first (0 = no
 *           cut; contiguous "Max" needs it: it is what Max reserves).
 * @max_steps: stop after this many steps (0 = when every request is
 *             done).
 * @sample_every: steps between samples kept in the series (0 = 1); the
 *                summary weighs every step whatever this is.
 * @rec: record the replay's request and allocator events, or NULL.
 */
struct kvc_sim_params {
	const char *label;
	struct kvc_model_shape shape;
	enum kvc_sim_layout layout;
	uint64_t capacity_bytes;
	uint64_t chunk_bytes;
	uint32_t watermark;
	enum kvc_placement placement;
	uint64_t seed;
	enum kvc_sim_compact compact;
	double compact_high;
	double compact_low;
	uint64_t compact_budget_bytes;
	struct kvc_policy_params policy;
	double head_skew;
	double step_s;
	uint32_t max_seqs;
	uint32_t max_len;
	uint64_t max_steps;
	uint32_t sample_every;
	struct kvc_recorder *rec;
};

/**
 * kvc_sim_params_init() - Defaults: SmolLM2-135M's geometry (30 layers, 3
 * KV heads, head dim 64, block 16, f16), per-head layout, 1 GiB, 2 MiB
 * chunks, watermark 1, fullest placement, seed 1, full compaction, marks
 * 0.2/0.05, no budget, no eviction ("full"), skew 1, 50 ms steps, no
 * limits, every step sampled.
 * @p: filled.
 */
void kvc_sim_params_init(struct kvc_sim_params *p);

/**
 * struct kvc_sim_sample - The state at one step.
 * @step: the step.
 * @t_s: its time, @step x step_s.
 * @ladder: the byte ladder (for contiguous layouts: mapped = the region,
 *          held = the reservations, free_mapped = the rest, parked 0;
 *          per-order fields unused).
 * @internal: bytes held that the request will never fill (known because
 *            the replay knows final lengths): unfilled tail slots beyond
 *            the final length, or beyond the KVs a head keeps at the end.
 * @running: sequences running.
 * @waiting: requests arrived and not admitted (preempted ones included).
 * @done: requests finished so far.
 * @preemptions: so far.
 * @blocks_moved: by compaction, so far.
 * @bytes_copied: so far.
 * @map_calls: chunk maps so far.
 * @unmap_calls: chunk unmaps so far.
 *
 * ladder.reservation holds the slots that will still be filled, and
 * ladder.tail = held - live - reservation = @internal (two-pass).
 */
struct kvc_sim_sample {
	uint64_t step;
	double t_s;
	struct kvc_ladder ladder;
	uint64_t internal;
	uint32_t running;
	uint32_t waiting;
	uint64_t done;
	uint64_t preemptions;
	uint64_t blocks_moved;
	uint64_t bytes_copied;
	uint64_t map_calls;
	uint64_t unmap_calls;
};

/**
 * struct kvc_sim_summary - One configuration's result.
 * @label: its label (points into the params or a static buffer inside
 *         the result; valid as long as the result).
 * @layout: its layout.
 * @capacity_bytes: the region.
 * @requests: requests in the stream.
 * @done: requests finished.
 * @steps: steps run.
 * @seconds: simulated seconds.
 * @wall_s: wall time the replay took.
 * @peaks: peaks and step-weighted means of the ladder.
 * @share_live: time-weighted mean of live / capacity.
 * @share_reservation: ... of reservation / capacity.
 * @share_internal: ... of internal / capacity.
 * @share_external: ... of (held region not held by a request) / capacity:
 *                  free blocks in mapped chunks and parked chunks, or for
 *                  layouts that allocate up front the whole free region
 *                  (vLLM's "external frag. & others").
 * @share_unmapped: ... of capacity never mapped (given back; 0 for
 *                  up-front layouts).
 * @mean_pack_ratio: time-weighted mean of the pack ratio.
 * @mean_hole_ratio: ... of the hole ratio.
 * @mean_unusable_chunk: ... of the unusable index at the chunk's order.
 * @mean_running: ... of running sequences; @peak_running the most.
 * @preemptions: sequences preempted.
 * @alloc_failures: allocations refused.
 * @blocks_moved: blocks compaction moved.
 * @bytes_copied: bytes it copied.
 * @map_calls: chunk maps; @unmap_calls chunk unmaps.
 * @map_ns: time in the (sim) backend's maps; @unmap_ns in its unmaps.
 * @tokens_generated: tokens decoded.
 * @mean_latency_s: mean of finish - arrival over finished requests.
 * @p99_latency_s: its 99th percentile.
 */
struct kvc_sim_summary {
	const char *label;
	enum kvc_sim_layout layout;
	uint64_t capacity_bytes;
	uint64_t requests;
	uint64_t done;
	uint64_t steps;
	double seconds;
	double wall_s;
	struct kvc_ladder_peaks peaks;
	double share_live;
	double share_reservation;
	double share_internal;
	double share_external;
	double share_unmapped;
	double mean_pack_ratio;
	double mean_hole_ratio;
	double mean_unusable_chunk;
	double mean_running;
	uint32_t peak_running;
	uint64_t preemptions;
	uint64_t alloc_failures;
	uint64_t blocks_moved;
	uint64_t bytes_copied;
	uint64_t map_calls;
	uint64_t unmap_calls;
	uint64_t map_ns;
	uint64_t unmap_ns;
	uint64_t tokens_generated;
	double mean_latency_s;
	double p99_latency_s;
};

/**
 * struct kvc_sim_result - A replay's output.
 * @summary: the summary.
 * @samples: the series, @nr_samples long (malloc'ed).
 * @nr_samples: samples kept.
 * @heat_step: the step of @heat (the step at which the most chunks were
 *             mapped, for per-head and paged layouts).
 * @heat: live blocks per mapped chunk at @heat_step, @heat_chunks of them,
 *        in chunk order, unmapped chunks as -1 (malloc'ed; NULL for
 *        contiguous layouts).
 * @heat_chunks: entries in @heat.
 * @blocks_per_chunk: the pool's blocks per chunk.
 * @label_buf: storage for a made-up label.
 */
struct kvc_sim_result {
	struct kvc_sim_summary summary;
	struct kvc_sim_sample *samples;
	uint64_t nr_samples;
	uint64_t heat_step;
	int32_t *heat;
	uint32_t heat_chunks;
	uint32_t blocks_per_chunk;
	char label_buf[96];
};

/**
 * kvc_sim_run() - Replay a request stream under one configuration.
 * @p: the configuration.
 * @reqs: the stream, by arrival.
 * @n: its length (>= 1).
 * @res: filled; free with kvc_sim_result_free().
 *
 * The scheduler, each step: admits waiting requests in arrival order
 * (preempted ones first) while their prompt fits and @max_seqs allows,
 * prefills them (and compresses them when the policy compresses after
 * prefill); decodes one token of every running sequence; compresses the
 * ones due; compacts as @compact says; samples (the batch as it computes,
 * the sequences finishing with this step included); finishes the ones
 * done, freeing their blocks. The series closes with the drained state,
 * which weighs nothing in the means. When a decode cannot get a block, the latest
 * arrived running sequence is preempted (its blocks freed, its progress
 * lost: it is recomputed when readmitted) until the decode fits. A request
 * whose prompt alone cannot fit in an empty region is an error.
 *
 * Return: 0; -EINVAL with a message for bad parameters or a request that
 * can never fit; -ENOMEM; the pool's errors.
 */
int kvc_sim_run(const struct kvc_sim_params *p,
		const struct kvc_sim_request *reqs, uint32_t n,
		struct kvc_sim_result *res);

/**
 * kvc_sim_result_free() - Free a result's arrays.
 * @res: the result, or NULL.
 */
void kvc_sim_result_free(struct kvc_sim_result *res);

/**
 * struct kvc_replay_result - What an exact replay found.
 * @events: events applied.
 * @steps: step markers seen.
 * @samples: ladder samples compared with the pool's own.
 * @checks: invariant checks run (one after every event).
 * @allocs: blocks allocated; @frees blocks freed; @moves blocks moved.
 * @maps: chunks mapped; @unmaps chunks unmapped.
 * @alloc_failures: failed allocations recorded.
 * @final_snapshot: the trace closed with a snapshot, and the replayed
 *                  pool matched it block for block.
 * @final: the replayed pool's ladder at the end, with the last sample's
 *         usage.
 * @peaks: peaks and means over the trace's samples (step-weighted).
 * @on_sample: if set, called with each sample's ladder as replayed.
 * @arg: passed to @on_sample.
 */
struct kvc_replay_result {
	uint64_t events;
	uint64_t steps;
	uint64_t samples;
	uint64_t checks;
	uint64_t allocs;
	uint64_t frees;
	uint64_t moves;
	uint64_t maps;
	uint64_t unmaps;
	uint64_t alloc_failures;
	bool final_snapshot;
	struct kvc_ladder final;
	struct kvc_ladder_peaks peaks;
	void (*on_sample)(void *arg, const struct kvc_ladder *l);
	void *arg;
};

/**
 * kvc_replay_exact() - Apply a trace's allocator events to a fresh pool.
 * @path: the trace.
 * @res: filled (set @on_sample and @arg before the call, or zero them).
 *
 * The pool is built from %KVC_REC_CONFIG on the sim backend. Every block
 * and chunk event is applied as recorded (the block ids, not the policy,
 * decide), then kvc_pool_check() and the ladder's identities are checked;
 * each %KVC_REC_SAMPLE must agree with the replayed pool on held, mapped
 * and parked bytes; a closing snapshot must match the pool block for block
 * (owner tags included).
 *
 * Return: 0; -EPROTO with a message naming the event index for a trace
 * that does not replay (an event the pool refuses, a broken invariant, a
 * disagreeing sample or snapshot); the reader's errors; -ENOMEM.
 */
int kvc_replay_exact(const char *path, struct kvc_replay_result *res);

#ifdef __cplusplus
}
#endif
#endif /* KVC_SIM_H */
