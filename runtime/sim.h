/* SPDX-License-Identifier: MIT */
/*
 * The logical replay's inner parts, shared by sim.c (the serving loop),
 * sim_evict.c (the eviction model), sim_contig.c (contiguous layouts),
 * sim_requests.c (request streams) and trace.c. Not a public interface.
 */
#ifndef KVC_RUNTIME_SIM_H
#define KVC_RUNTIME_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/evict.h>
#include <kvc/kv.h>
#include <kvc/run.h>
#include <kvc/sim.h>

/**
 * kvc_trace_read_timed() - kvc_trace_read(), with the arrival_s column.
 * @path: the CSV.
 * @max: at most this many requests (0 = all).
 * @reqs: set to a malloc'ed array.
 * @arrival: if not NULL, set to a malloc'ed array of arrival times when
 *           the header names a column arrival_s, else to NULL.
 * @n: set to the count.
 *
 * Return: as kvc_trace_read(); -EINVAL naming file:line for an arrival
 * time that is not a finite number >= 0.
 */
int kvc_trace_read_timed(const char *path, uint32_t max,
			 struct kvc_request **reqs, double **arrival,
			 uint32_t *n);

/**
 * enum sim_evict_kind - How the eviction model sizes each head.
 * @SIM_KEEP_ALL: "full", or a budget policy at rate 1.
 * @SIM_KEEP_KVCOMPRESS: one budget over all heads, shared by head weight.
 * @SIM_KEEP_UNIFORM: every head the same budget (h2o, snapkv).
 * @SIM_KEEP_PYRAMIDKV: per-layer budgets falling linearly with depth.
 * @SIM_KEEP_PYRAMIDINFER: per-layer fractions falling as a cosine.
 * @SIM_KEEP_STREAMING: sinks and a recent window, every head.
 * @SIM_KEEP_WINDOW: a recent window in chosen layers, all elsewhere.
 */
enum sim_evict_kind {
	SIM_KEEP_ALL,
	SIM_KEEP_KVCOMPRESS,
	SIM_KEEP_UNIFORM,
	SIM_KEEP_PYRAMIDKV,
	SIM_KEEP_PYRAMIDINFER,
	SIM_KEEP_STREAMING,
	SIM_KEEP_WINDOW,
};

/**
 * struct sim_evict - The eviction model of one replay.
 * @kind: see &enum sim_evict_kind.
 * @name: the policy's name.
 * @p: the policy's parameters as the runtime normalises them (sinks of
 *     streamingllm filled in).
 * @layers: layers of the model.
 * @kv_heads: KV heads per layer.
 * @block_size: tokens per block.
 * @interval: decode steps between compressions.
 * @once: compress only after prefill.
 * @skew: sigma of the head weights (kvcompress).
 * @seed: seeds the head weights.
 * @pol: the runtime's policy built from the same parameters: it checks
 *       them, and its budget rule (kvc_policy_keep_tokens()) and layer
 *       list are used as they are.
 * @windowed: per layer, whether "window" applies to it (the policy's).
 * @order: scratch for the water-filling, one entry per head.
 */
struct sim_evict {
	enum sim_evict_kind kind;
	const char *name;
	struct kvc_policy_params p;
	uint32_t layers;
	uint32_t kv_heads;
	uint32_t block_size;
	uint32_t interval;
	bool once;
	double skew;
	uint64_t seed;
	struct kvc_policy *pol;
	const bool *windowed;
	struct sim_order *order;
};

int sim_evict_init(struct sim_evict *ev, const struct kvc_sim_params *p);
void sim_evict_exit(struct sim_evict *ev);
bool sim_evict_after_prefill(const struct sim_evict *ev);
bool sim_evict_due(const struct sim_evict *ev, uint32_t decoded);
void sim_evict_weights(const struct sim_evict *ev, uint32_t req, float *w);
void sim_evict_keep(const struct sim_evict *ev, uint32_t tokens,
		    const uint32_t *len, const float *w, uint32_t *kept);

/* sim_contig.c */
int sim_contig_run(const struct kvc_sim_params *p,
		   const struct kvc_sim_request *reqs, uint32_t n,
		   struct kvc_sim_result *res);

/* sim.c: parts both loops use */
void sim_cut(const struct kvc_sim_params *p, const struct kvc_sim_request *r,
	     uint32_t *prompt, uint32_t *gen);
int sim_keep_sample(struct kvc_sim_result *res, uint64_t *cap,
		    const struct kvc_sim_sample *s);
void sim_shares(struct kvc_sim_summary *sum, const struct kvc_ladder_peaks *pk);
void sim_latency(double *lat, uint64_t n, struct kvc_sim_summary *sum);
void sim_label(const struct kvc_sim_params *p, struct kvc_sim_result *res);

#endif /* KVC_RUNTIME_SIM_H */
