// SPDX-License-Identifier: MIT
/*
 * The logical replay (kvc_sim_run()): a continuous-batching serving loop
 * over a real kvc pool on the sim backend, which maps nothing. Requests
 * are admitted first come, first served, prefilled, decoded one token per
 * step in every (layer, KV head), compressed as the eviction model says
 * (sim_evict.c), preempted when a decode cannot get a block, and finished;
 * the pool compacts as asked and the byte ladder is sampled every step.
 * The model is documented in Documentation/replay.rst.
 *
 * Avoids per-token work: a sequence's heads all append together, so a
 * decode step touches a sequence's heads only when one of them crosses a
 * block boundary (@room counts the appends until then). Keeps no global
 * state: replays may run in several threads at once.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kvc/compact.h>
#include <kvc/pool.h>
#include <kvc/record.h>
#include <kvc/sim.h>

#include "../alloc/clock.h"
#include "../alloc/error.h"
#include "internal.h"
#include "sim.h"

/* The sim backend's granularity: chunks are multiples of it. */
#define SIM_GRANULARITY 4096ull
/* Owner tag: slot << 40 | unit << 20 | index in the unit's table. */
#define OWNER_SLOT_SHIFT 40
#define OWNER_UNIT_SHIFT 20
#define OWNER_FIELD_MASK ((1ull << 20) - 1)
#define OWNER_MAX_SLOTS (1u << 24)

/**
 * struct sim_seq - A request being served (a slot; reused when it ends).
 * @req: the request's index in the stream.
 * @gen: tokens it generates in all (after the cut).
 * @generated: tokens generated so far, across preemptions.
 * @tokens: tokens seen (the logical length T), @pending included.
 * @decoded: decode steps since this admission's prefill.
 * @room: appends every head can take before one needs a new block.
 * @pending: appends not yet added to @len (all heads alike).
 * @live: KVs held over all heads, @pending included.
 * @nr_blocks: blocks held.
 * @table_cap: blocks each unit's table holds.
 * @len: KVs per head, layer-major (without @pending).
 * @nb: blocks per unit (a head; or a layer for the paged layout).
 * @blocks: @table_cap block ids per unit.
 * @weight: head weights (kvcompress).
 * @cap_blocks: ids @blocks has room for.
 * @have_arrays: @len, @nb and @weight are allocated (once per slot).
 */
struct sim_seq {
	uint32_t req;
	uint32_t gen;
	uint32_t generated;
	uint32_t tokens;
	uint32_t decoded;
	uint32_t room;
	uint32_t pending;
	uint64_t live;
	uint64_t nr_blocks;
	uint32_t table_cap;
	uint32_t *len;
	uint32_t *nb;
	uint32_t *blocks;
	float *weight;
	uint64_t cap_blocks;
	bool have_arrays;
};

/* A request waiting to be (re)admitted, and what it generated before. */
struct sim_wait {
	uint32_t req;
	uint32_t generated;
};

/**
 * struct sim - One replay.
 * @p: the parameters.
 * @reqs: the stream; @n requests.
 * @heads: layers x KV heads.
 * @units: block tables per sequence: @heads, or layers when paged.
 * @per_unit: heads per unit (1, or KV heads when paged).
 * @bs: tokens per block.
 * @unit_bytes: bytes of one block.
 * @kv_bytes: bytes of one token in one head.
 * @cap_blocks: blocks of the region.
 * @held: blocks held by sequences.
 * @pool: the pool; @be its backend.
 * @ev: the eviction model.
 * @seqs: @nr_slots slots; @free_slots a stack of unused ones.
 * @running: running slots by request index, @nr_running of them.
 * @preempted: preempted requests, the next to readmit last.
 * @next_arrive: the first request not yet eligible.
 * @next_admit: the first eligible request never admitted.
 * @ids: scratch block ids, @cap_ids.
 * @kept: scratch, one per head.
 * @need: scratch, one per unit: the units that take a block.
 * @freed: a block was freed this step.
 * @latency: per finished request, @done of them.
 * @done: requests finished.
 * @preemptions: sequences preempted so far.
 * @tokens_generated: tokens decoded so far.
 * @step: the step being run; @now its time in seconds.
 */
struct sim {
	const struct kvc_sim_params *p;
	const struct kvc_sim_request *reqs;
	uint32_t n;
	uint32_t heads;
	uint32_t units;
	uint32_t per_unit;
	uint32_t bs;
	uint64_t unit_bytes;
	uint64_t kv_bytes;
	uint64_t cap_blocks;
	uint64_t held;
	struct kvc_backend *be;
	struct kvc_pool *pool;
	struct sim_evict ev;
	struct sim_seq *seqs;
	uint32_t nr_slots;
	uint32_t *free_slots;
	uint32_t nr_free_slots;
	uint32_t *running;
	uint32_t nr_running;
	struct sim_wait *preempted;
	uint32_t nr_preempted;
	uint32_t next_arrive;
	uint32_t next_admit;
	uint32_t *ids;
	uint64_t cap_ids;
	uint32_t *kept;
	uint32_t *need;
	bool freed;
	double *latency;
	uint64_t done;
	uint64_t preemptions;
	uint64_t tokens_generated;
	uint64_t step;
	double now;
};

/* ------------------------------------------------------------------ */
/* Parts both loops use */

/* The request's lengths after the max_len cut: the prompt first. */
void sim_cut(const struct kvc_sim_params *p, const struct kvc_sim_request *r,
	     uint32_t *prompt, uint32_t *gen)
{
	uint32_t pr = r->prompt, g = r->gen;

	if (p->max_len) {
		if (pr > p->max_len)
			pr = p->max_len;
		if (g > p->max_len - pr)
			g = p->max_len - pr;
	}
	*prompt = pr;
	*gen = g;
}

/* Append @s to the series, growing it geometrically. */
int sim_keep_sample(struct kvc_sim_result *res, uint64_t *cap,
		    const struct kvc_sim_sample *s)
{
	struct kvc_sim_sample *grown;
	uint64_t want;

	if (res->nr_samples == *cap) {
		want = *cap ? *cap * 2 : 1024;
		if (want < *cap || want > SIZE_MAX / sizeof(*grown))
			return kvc_err(-ENOMEM, "replay: too many samples");
		grown = realloc(res->samples, (size_t)want * sizeof(*grown));
		if (!grown)
			return kvc_err(-ENOMEM,
				       "replay: no memory for %llu samples",
				       (unsigned long long)want);
		res->samples = grown;
		*cap = want;
	}
	res->samples[res->nr_samples++] = *s;
	return 0;
}

/* The time-weighted shares of the region, from the means. */
void sim_shares(struct kvc_sim_summary *sum, const struct kvc_ladder_peaks *pk)
{
	double cap = (double)sum->capacity_bytes;

	sum->share_live = pk->mean_live / cap;
	sum->share_reservation = pk->mean_reservation / cap;
	sum->share_internal = pk->mean_tail / cap;
	sum->share_external = (pk->mean_free_mapped + pk->mean_parked) / cap;
	sum->share_unmapped = (cap - pk->mean_mapped) / cap;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Mean and 99th percentile (nearest rank) of @n latencies; sorts @lat. */
void sim_latency(double *lat, uint64_t n, struct kvc_sim_summary *sum)
{
	double total = 0;
	uint64_t i, rank;

	sum->mean_latency_s = 0;
	sum->p99_latency_s = 0;
	if (!n)
		return;
	for (i = 0; i < n; i++)
		total += lat[i];
	qsort(lat, n, sizeof(*lat), cmp_double);
	rank = (uint64_t)ceil(0.99 * (double)n);
	sum->mean_latency_s = total / (double)n;
	sum->p99_latency_s = lat[rank ? rank - 1 : 0];
}

/* The label: the caller's, or one made from the settings. */
void sim_label(const struct kvc_sim_params *p, struct kvc_sim_result *res)
{
	const char *name = p->policy.name ? p->policy.name : "?";

	if (p->label) {
		res->summary.label = p->label;
		return;
	}
	if (p->layout >= KVC_LAYOUT_CONTIG_MAX)
		snprintf(res->label_buf, sizeof(res->label_buf), "%s",
			 kvc_sim_layout_name(p->layout));
	else if (p->policy.rate > 0 && strcmp(name, "full"))
		snprintf(res->label_buf, sizeof(res->label_buf),
			 "%s %s/%g %s compact-%s",
			 kvc_sim_layout_name(p->layout), name, p->policy.rate,
			 kvc_placement_name(p->placement),
			 kvc_sim_compact_name(p->compact));
	else
		snprintf(res->label_buf, sizeof(res->label_buf),
			 "%s %s %s compact-%s", kvc_sim_layout_name(p->layout),
			 name, kvc_placement_name(p->placement),
			 kvc_sim_compact_name(p->compact));
	res->summary.label = res->label_buf;
}

void kvc_sim_params_init(struct kvc_sim_params *p)
{
	struct kvc_run_params run;

	if (!p)
		return;
	memset(p, 0, sizeof(*p));
	/* The model kvc_run() defaults to: SmolLM2-135M. */
	kvc_run_params_init(&run);
	p->shape = run.shape;
	p->layout = KVC_LAYOUT_PER_HEAD;
	p->capacity_bytes = 1ull << 30;
	p->chunk_bytes = 2ull << 20;
	p->watermark = 1;
	p->placement = KVC_PLACE_FULLEST;
	p->seed = 1;
	p->compact = KVC_SIM_COMPACT_FULL;
	p->compact_high = 0.2;
	p->compact_low = 0.05;
	p->compact_budget_bytes = 0;
	kvc_policy_params_init(&p->policy);
	p->policy.name = "full";
	p->policy.rate = 0;
	p->head_skew = 1;
	p->step_s = 0.05;
	p->sample_every = 1;
}

void kvc_sim_result_free(struct kvc_sim_result *res)
{
	if (!res)
		return;
	free(res->samples);
	free(res->heat);
	res->samples = NULL;
	res->heat = NULL;
	res->nr_samples = 0;
	res->heat_chunks = 0;
}

/* ------------------------------------------------------------------ */
/* Block tables */

static uint32_t div_up32(uint64_t a, uint32_t b)
{
	return (uint32_t)((a + b - 1) / b);
}

static uint32_t unit_of(const struct sim *sim, uint32_t head)
{
	return head / sim->per_unit;
}

/* Compaction moved blocks: patch the tables from the owner tags. */
static void on_move(void *arg, const struct kvc_move *moves, uint32_t n)
{
	struct sim *sim = arg;
	uint32_t i;

	for (i = 0; i < n; i++) {
		uint64_t o = moves[i].owner;
		uint32_t slot = (uint32_t)(o >> OWNER_SLOT_SHIFT);
		uint32_t unit =
			(uint32_t)((o >> OWNER_UNIT_SHIFT) & OWNER_FIELD_MASK);
		uint32_t idx = (uint32_t)(o & OWNER_FIELD_MASK);
		struct sim_seq *s;

		if (slot >= sim->nr_slots || unit >= sim->units)
			continue;
		s = &sim->seqs[slot];
		if (idx < s->table_cap)
			s->blocks[(uint64_t)unit * s->table_cap + idx] =
				moves[i].to;
	}
}

static int grow_ids(struct sim *sim, uint64_t want)
{
	uint32_t *grown;

	if (want <= sim->cap_ids)
		return 0;
	if (want > UINT32_MAX)
		return kvc_err(-EINVAL,
			       "replay: a sequence would hold %llu blocks",
			       (unsigned long long)want);
	grown = realloc(sim->ids, (size_t)want * sizeof(*grown));
	if (!grown)
		return kvc_err(-ENOMEM, "replay: no memory for %llu block ids",
			       (unsigned long long)want);
	sim->ids = grown;
	sim->cap_ids = want;
	return 0;
}

/* Give block sim->ids[@i] to unit @u of slot @slot, tagging its owner. */
static int take_block(struct sim *sim, uint32_t slot, uint32_t u, uint32_t i)
{
	struct sim_seq *s = &sim->seqs[slot];
	uint32_t idx = s->nb[u];

	if (idx >= s->table_cap)
		return kvc_err(-EFAULT,
			       "replay: request %u outgrew its block table "
			       "(%u blocks): a bug",
			       s->req, s->table_cap);
	s->blocks[(uint64_t)u * s->table_cap + idx] = sim->ids[i];
	s->nb[u] = idx + 1;
	return kvc_pool_set_owner(sim->pool, sim->ids[i],
				  (uint64_t)slot << OWNER_SLOT_SHIFT |
					  (uint64_t)u << OWNER_UNIT_SHIFT |
					  idx);
}

/*
 * Hand out the blocks in sim->ids[0 .. @n) to units: to @units[i] when
 * @units is not NULL, else @per blocks to each unit in turn (a prefill).
 */
static int take_blocks(struct sim *sim, uint32_t slot, const uint32_t *units,
		       uint32_t per, uint32_t n)
{
	uint32_t i = 0, u, b;
	int err = 0;

	if (units) {
		for (; i < n && !err; i++)
			err = take_block(sim, slot, units[i], i);
	} else {
		for (u = 0; i < n && !err; u++)
			for (b = 0; b < per && !err; b++, i++)
				err = take_block(sim, slot, u, i);
	}
	if (err)
		return err;
	sim->seqs[slot].nr_blocks += n;
	sim->held += n;
	return 0;
}

/* Fold the pending appends into the heads' lengths. */
static void materialize(struct sim_seq *s, uint32_t heads)
{
	uint32_t h;

	if (!s->pending)
		return;
	for (h = 0; h < heads; h++)
		s->len[h] += s->pending;
	s->pending = 0;
}

/* Appends before some head needs a block: min over heads of free slots. */
static void set_room(struct sim *sim, struct sim_seq *s)
{
	uint32_t u, h, room = UINT32_MAX, per = sim->per_unit;

	for (u = 0; u < sim->units; u++) {
		uint32_t cap = s->nb[u] * sim->bs;

		for (h = u * per; h < (u + 1) * per; h++) {
			uint32_t r = cap - s->len[h];

			room = r < room ? r : room;
		}
	}
	s->room = room;
}

/* ------------------------------------------------------------------ */
/* Sequences */

static int emit(struct sim *sim, enum kvc_rec_kind kind, uint64_t p0,
		uint64_t p1, uint64_t p2, uint64_t p3)
{
	uint64_t p[KVC_REC_PAYLOAD] = { p0, p1, p2, p3 };

	if (!sim->p->rec)
		return 0;
	return kvc_recorder_emit(sim->p->rec, kind, p);
}

/* Give back every block of slot @slot (one pool call). */
static int free_all(struct sim *sim, uint32_t slot, uint64_t *freed)
{
	struct sim_seq *s = &sim->seqs[slot];
	uint64_t k = 0;
	uint32_t u, i;
	int err;

	for (u = 0; u < sim->units; u++)
		for (i = 0; i < s->nb[u]; i++)
			sim->ids[k++] =
				s->blocks[(uint64_t)u * s->table_cap + i];
	if (k) {
		err = kvc_pool_free(sim->pool, (uint32_t)k, sim->ids);
		if (err)
			return err;
		sim->freed = true;
	}
	memset(s->nb, 0, (size_t)sim->units * sizeof(*s->nb));
	sim->held -= k;
	s->nr_blocks = 0;
	*freed = k;
	return 0;
}

static int get_slot(struct sim *sim, uint32_t *out)
{
	struct sim_seq *grown;
	uint32_t *slots, i, want;

	if (!sim->nr_free_slots) {
		want = sim->nr_slots ? sim->nr_slots * 2 : 64;
		if (want > OWNER_MAX_SLOTS)
			want = OWNER_MAX_SLOTS;
		if (want <= sim->nr_slots)
			return kvc_err(-EINVAL,
				       "replay: more than %u sequences at once",
				       OWNER_MAX_SLOTS);
		grown = realloc(sim->seqs, (size_t)want * sizeof(*grown));
		if (!grown)
			return kvc_err(-ENOMEM,
				       "replay: no memory for %u "
				       "sequences",
				       want);
		memset(grown + sim->nr_slots, 0,
		       (size_t)(want - sim->nr_slots) * sizeof(*grown));
		sim->seqs = grown;
		slots = realloc(sim->free_slots, (size_t)want * sizeof(*slots));
		if (!slots)
			return kvc_err(-ENOMEM,
				       "replay: no memory for %u "
				       "sequences",
				       want);
		sim->free_slots = slots;
		for (i = want; i > sim->nr_slots; i--)
			sim->free_slots[sim->nr_free_slots++] = i - 1;
		sim->nr_slots = want;
	}
	*out = sim->free_slots[--sim->nr_free_slots];
	return 0;
}

/*
 * Size slot @slot's arrays for request @req of final length @final_len:
 * 64 bits, as prompt + output of two 32-bit counts may not fit 32.
 */
static int size_slot(struct sim *sim, struct sim_seq *s, uint32_t req,
		     uint64_t final_len)
{
	uint64_t blocks_per_table = (final_len + sim->bs - 1) / sim->bs;
	uint64_t want = blocks_per_table * sim->units;
	uint32_t *blocks, cap;

	if (blocks_per_table > OWNER_FIELD_MASK + 1)
		return kvc_err(-EINVAL,
			       "replay: request %u of %llu tokens needs %llu "
			       "blocks per table, more than the %llu a replay "
			       "tracks",
			       req, (unsigned long long)final_len,
			       (unsigned long long)blocks_per_table,
			       OWNER_FIELD_MASK + 1);
	cap = (uint32_t)blocks_per_table;
	if (!s->have_arrays) {
		s->len = calloc(sim->heads, sizeof(*s->len));
		s->weight = calloc(sim->heads, sizeof(*s->weight));
		s->nb = calloc(sim->units, sizeof(*s->nb));
		if (!s->len || !s->weight || !s->nb)
			return kvc_err(-ENOMEM, "replay: no memory for a "
						"sequence");
		s->have_arrays = true;
	}
	if (want > s->cap_blocks) {
		blocks = realloc(s->blocks, (size_t)want * sizeof(*blocks));
		if (!blocks)
			return kvc_err(-ENOMEM,
				       "replay: no memory for a block "
				       "table of %llu",
				       (unsigned long long)want);
		s->blocks = blocks;
		s->cap_blocks = want;
	}
	s->table_cap = cap;
	memset(s->nb, 0, (size_t)sim->units * sizeof(*s->nb));
	return grow_ids(sim, want);
}

/* Insert @slot into the running list, kept by request index. */
static void run_insert(struct sim *sim, uint32_t slot)
{
	uint32_t req = sim->seqs[slot].req, i = sim->nr_running;

	while (i > 0 && sim->seqs[sim->running[i - 1]].req > req) {
		sim->running[i] = sim->running[i - 1];
		i--;
	}
	sim->running[i] = slot;
	sim->nr_running++;
}

static void run_remove(struct sim *sim, uint32_t i)
{
	memmove(&sim->running[i], &sim->running[i + 1],
		(size_t)(sim->nr_running - i - 1) * sizeof(*sim->running));
	sim->nr_running--;
}

/*
 * Compress slot @slot: the model decides how many KVs each head keeps;
 * the blocks past them go back in one pool call.
 */
static int compress(struct sim *sim, uint32_t slot)
{
	struct sim_seq *s = &sim->seqs[slot];
	uint64_t before = s->live, after = 0, k = 0;
	uint32_t u, h, i, need;
	int err;

	materialize(s, sim->heads);
	sim_evict_keep(&sim->ev, s->tokens, s->len, s->weight, sim->kept);
	for (u = 0; u < sim->units; u++) {
		uint32_t longest = 0;

		for (h = u * sim->per_unit; h < (u + 1) * sim->per_unit; h++)
			longest =
				sim->kept[h] > longest ? sim->kept[h] : longest;
		need = div_up32(longest, sim->bs);
		for (i = need; i < s->nb[u]; i++)
			sim->ids[k++] =
				s->blocks[(uint64_t)u * s->table_cap + i];
	}
	if (k) {
		err = kvc_pool_free(sim->pool, (uint32_t)k, sim->ids);
		if (err)
			return err;
		sim->freed = true;
	}
	for (u = 0; u < sim->units; u++) {
		uint32_t longest = 0;

		for (h = u * sim->per_unit; h < (u + 1) * sim->per_unit; h++)
			longest =
				sim->kept[h] > longest ? sim->kept[h] : longest;
		need = div_up32(longest, sim->bs);
		if (need < s->nb[u])
			s->nb[u] = need;
	}
	for (h = 0; h < sim->heads; h++) {
		s->len[h] = sim->kept[h];
		after += s->len[h];
	}
	s->live = after;
	s->nr_blocks -= k;
	sim->held -= k;
	set_room(sim, s);
	return emit(sim, KVC_REC_COMPRESS, s->req, before, after, k);
}

/* Preempt the running sequence at @i: free it, queue it to go first. */
static int preempt(struct sim *sim, uint32_t i)
{
	uint32_t slot = sim->running[i];
	struct sim_seq *s = &sim->seqs[slot];
	uint64_t freed;
	int err;

	err = free_all(sim, slot, &freed);
	if (err)
		return err;
	sim->preempted[sim->nr_preempted].req = s->req;
	sim->preempted[sim->nr_preempted].generated = s->generated;
	sim->nr_preempted++;
	sim->preemptions++;
	run_remove(sim, i);
	sim->free_slots[sim->nr_free_slots++] = slot;
	return emit(sim, KVC_REC_PREEMPT, s->req, freed, 0, 0);
}

/*
 * Admit waiting requests, preempted ones first, then new ones by arrival,
 * while the prompt fits with a block of headroom per unit of every
 * running sequence. Stops at the first that does not fit (no skipping).
 */
static int admit(struct sim *sim)
{
	const struct kvc_sim_params *p = sim->p;
	uint32_t req, generated, prompt, gen, slot = 0, h, per;
	uint64_t need, headroom;
	bool was_preempted;
	struct sim_seq *s;
	int err;

	for (;;) {
		if (p->max_seqs && sim->nr_running >= p->max_seqs)
			return 0;
		was_preempted = sim->nr_preempted > 0;
		if (was_preempted) {
			req = sim->preempted[sim->nr_preempted - 1].req;
			generated =
				sim->preempted[sim->nr_preempted - 1].generated;
		} else if (sim->next_admit < sim->next_arrive) {
			req = sim->next_admit;
			generated = 0;
		} else {
			return 0;
		}
		sim_cut(p, &sim->reqs[req], &prompt, &gen);
		/* Recomputed: what it generated before joins the prompt. */
		prompt += generated;
		per = div_up32(prompt, sim->bs);
		need = (uint64_t)per * sim->units;
		/*
		 * Only a preempted request gets here: sim_open() refused the
		 * prompts that never fit. Evicting its KVs let it grow past
		 * what a recompute (a prefill of everything, then eviction)
		 * can ever hold.
		 */
		if (need > sim->cap_blocks)
			return kvc_err(
				-EINVAL,
				"replay: request %u, preempted after "
				"generating %u tokens, cannot be readmitted: "
				"recomputing its %u tokens needs %llu "
				"blocks before eviction, the region "
				"holds %llu (a larger region or a "
				"shorter max_len would do)",
				req, generated, prompt,
				(unsigned long long)need,
				(unsigned long long)sim->cap_blocks);
		headroom = (uint64_t)sim->units * sim->nr_running;
		if (need + headroom > sim->cap_blocks - sim->held)
			return 0;

		err = get_slot(sim, &slot);
		if (err)
			return err;
		s = &sim->seqs[slot];
		err = size_slot(sim, s, req,
				(uint64_t)prompt - generated + gen);
		if (!err && need)
			err = kvc_pool_alloc(sim->pool, (uint32_t)need,
					     sim->ids);
		if (err) {
			sim->free_slots[sim->nr_free_slots++] = slot;
			return err;
		}
		s->req = req;
		s->gen = gen;
		s->generated = generated;
		s->tokens = prompt;
		s->decoded = 0;
		s->pending = 0;
		s->nr_blocks = 0;
		s->live = (uint64_t)prompt * sim->heads;
		for (h = 0; h < sim->heads; h++)
			s->len[h] = prompt;
		if (sim->ev.kind == SIM_KEEP_KVCOMPRESS)
			sim_evict_weights(&sim->ev, req, s->weight);
		if (was_preempted)
			sim->nr_preempted--;
		else
			sim->next_admit++;
		run_insert(sim, slot);
		err = take_blocks(sim, slot, NULL, per, (uint32_t)need);
		if (err)
			return err;
		set_room(sim, s);
		err = emit(sim, KVC_REC_APPEND, req, prompt, prompt, 0);
		if (err)
			return err;
		if (sim_evict_after_prefill(&sim->ev)) {
			err = compress(sim, slot);
			if (err)
				return err;
		}
	}
}

/*
 * Append one token to every head of slot @slot. Return: 0, or -ENOMEM
 * when a block it needs cannot be had (nothing changed).
 */
static int append(struct sim *sim, uint32_t slot)
{
	struct sim_seq *s = &sim->seqs[slot];
	uint32_t u, h, n = 0;
	int err;

	if (!s->room) {
		materialize(s, sim->heads);
		for (u = 0; u < sim->units; u++) {
			uint32_t cap = s->nb[u] * sim->bs;

			for (h = u * sim->per_unit; h < (u + 1) * sim->per_unit;
			     h++) {
				if (s->len[h] == cap) {
					sim->need[n++] = u;
					break;
				}
			}
		}
		if (n) {
			err = kvc_pool_alloc(sim->pool, n, sim->ids);
			if (err)
				return err;
			err = take_blocks(sim, slot, sim->need, 0, n);
			if (err)
				return err;
		}
		set_room(sim, s);
		if (!s->room)
			return kvc_err(-EFAULT,
				       "replay: request %u has no room after "
				       "taking blocks: a bug",
				       s->req);
	}
	s->room--;
	s->pending++;
	s->tokens++;
	s->generated++;
	s->decoded++;
	s->live += sim->heads;
	sim->tokens_generated++;
	return 0;
}

/*
 * Decode one token of every running sequence, in arrival order. When a
 * block cannot be had, the latest-arrived running sequence is preempted
 * (it is last in the list) and the append retried.
 */
static int decode(struct sim *sim)
{
	uint32_t i = 0, slot;
	int err;

	while (i < sim->nr_running) {
		slot = sim->running[i];
		if (sim->seqs[slot].generated >= sim->seqs[slot].gen) {
			i++;
			continue;
		}
		err = append(sim, slot);
		if (!err) {
			i++;
			continue;
		}
		if (err != -ENOMEM)
			return err;
		if (sim->nr_running == 1)
			return kvc_err(-EINVAL,
				       "replay: request %u alone needs more "
				       "than the region's %llu blocks at %u "
				       "tokens",
				       sim->seqs[slot].req,
				       (unsigned long long)sim->cap_blocks,
				       sim->seqs[slot].tokens + 1);
		err = preempt(sim, sim->nr_running - 1);
		if (err)
			return err;
		/* The victim was this one: it is gone, the step goes on. */
	}
	return 0;
}

/* Compress the sequences that are due (not the ones finishing now). */
static int compress_due(struct sim *sim)
{
	uint32_t i;
	int err;

	for (i = 0; i < sim->nr_running; i++) {
		struct sim_seq *s = &sim->seqs[sim->running[i]];

		if (s->generated >= s->gen ||
		    !sim_evict_due(&sim->ev, s->decoded))
			continue;
		err = compress(sim, sim->running[i]);
		if (err)
			return err;
	}
	return 0;
}

/* Running sequences that generated their last token: finish() takes them. */
static uint32_t finishing(const struct sim *sim)
{
	uint32_t i, n = 0;

	for (i = 0; i < sim->nr_running; i++) {
		const struct sim_seq *s = &sim->seqs[sim->running[i]];

		n += s->generated >= s->gen;
	}
	return n;
}

/* Finish the sequences that generated their last token. */
static int finish(struct sim *sim)
{
	uint32_t i = 0, slot;
	uint64_t freed;
	int err;

	while (i < sim->nr_running) {
		struct sim_seq *s;

		slot = sim->running[i];
		s = &sim->seqs[slot];
		if (s->generated < s->gen) {
			i++;
			continue;
		}
		err = free_all(sim, slot, &freed);
		if (err)
			return err;
		sim->latency[sim->done++] =
			sim->now - sim->reqs[s->req].arrival_s;
		err = emit(sim, KVC_REC_FINISH, s->req, s->tokens, 0, 0);
		if (err)
			return err;
		run_remove(sim, i);
		sim->free_slots[sim->nr_free_slots++] = slot;
	}
	return 0;
}

/*
 * KVs the running sequences will still write into the slots they hold:
 * per head, min(unfilled slots of its blocks, tokens still to come).
 */
static uint64_t reservation(const struct sim *sim)
{
	uint64_t total = 0;
	uint32_t i, h;

	for (i = 0; i < sim->nr_running; i++) {
		const struct sim_seq *s = &sim->seqs[sim->running[i]];
		uint32_t rem = s->gen - s->generated;

		if (!rem)
			continue;
		/* Per-head tables hold fewer than bs free slots per head. */
		if (sim->per_unit == 1 && rem >= sim->bs) {
			total += s->nr_blocks * sim->bs - s->live;
			continue;
		}
		for (h = 0; h < sim->heads; h++) {
			uint32_t cap = s->nb[unit_of(sim, h)] * sim->bs;
			uint32_t free_slots = cap - (s->len[h] + s->pending);

			total += free_slots < rem ? free_slots : rem;
		}
	}
	return total;
}

static uint64_t tokens_running(const struct sim *sim)
{
	uint64_t total = 0;
	uint32_t i;

	for (i = 0; i < sim->nr_running; i++)
		total += sim->seqs[sim->running[i]].tokens;
	return total;
}

static uint64_t live_running(const struct sim *sim)
{
	uint64_t total = 0;
	uint32_t i;

	for (i = 0; i < sim->nr_running; i++)
		total += sim->seqs[sim->running[i]].live;
	return total;
}

/* ------------------------------------------------------------------ */
/* Sampling and the run */

/**
 * struct sim_means - Per-step sums the ladder accumulator does not keep.
 * @pack: pack ratio.
 * @hole: hole ratio.
 * @unusable: unusable index at the chunk's order.
 * @running: sequences running.
 */
struct sim_means {
	double pack;
	double hole;
	double unusable;
	double running;
};

/*
 * Sample the step: into the means and peaks when @acc is not NULL, into
 * the series every sample_every steps and when @last. A NULL @acc takes
 * the drained state after the last step: kept in the series (so it ends
 * where the region is empty) with no weight in any mean.
 */
static int sample(struct sim *sim, struct kvc_sim_result *res,
		  struct kvc_ladder_acc *acc, struct sim_means *m,
		  uint64_t *cap_samples, uint32_t *heat_max, bool last)
{
	const struct kvc_sim_params *p = sim->p;
	struct kvc_pool_usage usage = { 0 };
	struct kvc_sim_sample smp;
	struct kvc_pool_stats st;
	struct kvc_ladder *l = &smp.ladder;
	uint32_t chunks;
	int err;

	memset(&smp, 0, sizeof(smp));
	usage.logical_bytes = tokens_running(sim) * sim->heads * sim->kv_bytes;
	usage.live_bytes = live_running(sim) * sim->kv_bytes;
	usage.reservation_bytes = reservation(sim) * sim->kv_bytes;
	usage.seqs = sim->nr_running;
	usage.preemptions = sim->preemptions;
	/* The drained state is a step of its own in a trace. */
	if (p->rec && !acc) {
		err = kvc_recorder_step(p->rec, (uint32_t)sim->step);
		if (err)
			return err;
	}
	if (p->rec) {
		err = kvc_pool_sample(sim->pool, &usage, sim->step);
		if (err)
			return err;
	}
	err = kvc_pool_ladder(sim->pool, &usage, sim->step, l);
	if (err)
		return err;
	/*
	 * The pool stamps the wall clock; a replay's time is the simulated
	 * one, so peaks say when in the stream they happened and repeat from
	 * run to run.
	 */
	l->t_ns = (uint64_t)llround(sim->now * 1e9);
	kvc_pool_get_stats(sim->pool, &st, NULL);
	/* Where mapped chunks reach a new high, keep the chunk map. */
	if (res->heat && l->mapped_chunks > *heat_max) {
		*heat_max = (uint32_t)l->mapped_chunks;
		kvc_pool_occupancy(sim->pool, res->heat, res->heat_chunks);
		res->heat_step = sim->step;
	}
	if (p->layout == KVC_LAYOUT_PAGED) {
		/* vLLM allocates its whole region up front. */
		chunks = (uint32_t)(res->summary.capacity_bytes /
				    st.chunk_bytes);
		l->mapped = res->summary.capacity_bytes;
		l->parked = 0;
		l->free_mapped = l->mapped - l->held;
		l->mapped_chunks = chunks;
		l->pack_ratio =
			l->floor_chunks ?
				(double)chunks / (double)l->floor_chunks :
				(double)chunks;
	}
	smp.step = sim->step;
	smp.t_s = sim->now;
	smp.internal = l->tail;
	smp.running = sim->nr_running;
	smp.waiting = sim->nr_preempted + (sim->next_arrive - sim->next_admit);
	smp.done = sim->done;
	smp.preemptions = sim->preemptions;
	smp.blocks_moved = st.blocks_moved;
	smp.bytes_copied = st.bytes_copied;
	smp.map_calls = st.backend_map;
	smp.unmap_calls = st.backend_unmap;

	if (!acc)
		return sim_keep_sample(res, cap_samples, &smp);
	err = kvc_ladder_acc_add(acc, l, (double)sim->step);
	if (err)
		return err;
	m->pack += l->pack_ratio;
	m->hole += l->hole_ratio;
	m->unusable += l->nr_orders ? l->unusable[l->nr_orders - 1] : 0;
	m->running += sim->nr_running;
	if (sim->nr_running > res->summary.peak_running)
		res->summary.peak_running = sim->nr_running;
	/* The last step is always kept: the series ends where the run did. */
	if (sim->step % p->sample_every && !last)
		return 0;
	return sim_keep_sample(res, cap_samples, &smp);
}

static int check_params(const struct kvc_sim_params *p,
			const struct kvc_sim_request *reqs, uint32_t n,
			struct kvc_sim_result *res)
{
	struct kvc_model_shape shape;
	uint32_t i;
	int err;

	if (!p || !reqs || !res)
		return kvc_err(-EINVAL, "kvc_sim_run: NULL %s",
			       !p    ? "parameters" :
			       !reqs ? "requests" :
				       "result");
	if (!n)
		return kvc_err(-EINVAL, "kvc_sim_run: no request");
	shape = p->shape;
	if (!shape.q_heads)
		shape.q_heads = shape.kv_heads;
	err = kvc_model_shape_check(&shape);
	if (err)
		return err;
	if ((unsigned)p->layout > KVC_LAYOUT_CONTIG_ORACLE)
		return kvc_err(-EINVAL, "kvc_sim_run: layout %d is unknown",
			       (int)p->layout);
	if ((unsigned)p->compact > KVC_SIM_COMPACT_PROACTIVE)
		return kvc_err(-EINVAL,
			       "kvc_sim_run: compaction mode %d is "
			       "unknown",
			       (int)p->compact);
	if (!p->capacity_bytes)
		return kvc_err(-EINVAL, "kvc_sim_run: capacity is 0");
	if (!(p->step_s > 0) || !isfinite(p->step_s))
		return kvc_err(-EINVAL,
			       "kvc_sim_run: step_s %g is not a finite "
			       "number > 0",
			       p->step_s);
	for (i = 0; i < n; i++) {
		if (!reqs[i].prompt)
			return kvc_err(-EINVAL,
				       "kvc_sim_run: request %u has an empty "
				       "prompt",
				       i);
		if (!(reqs[i].arrival_s >= 0) || !isfinite(reqs[i].arrival_s) ||
		    (i && reqs[i].arrival_s < reqs[i - 1].arrival_s))
			return kvc_err(-EINVAL,
				       "kvc_sim_run: request %u arrives at %g "
				       "s: arrivals must be finite, >= 0 and "
				       "in order",
				       i, reqs[i].arrival_s);
	}
	return 0;
}

/* Build the pool (on the sim backend) and the scratch of one replay. */
static int sim_open(struct sim *sim, const struct kvc_sim_params *p,
		    struct kvc_sim_result *res)
{
	const struct kvc_model_shape *sh = &p->shape;
	struct kvc_pool_params pp;
	uint64_t chunk = p->chunk_bytes ? p->chunk_bytes : 2ull << 20;
	uint64_t chunks;
	uint32_t i;
	int err;

	sim->heads = sh->layers * sh->kv_heads;
	sim->bs = sh->block_size;
	sim->kv_bytes = kvc_kv_block_bytes(sh) / sh->block_size;
	if (p->layout == KVC_LAYOUT_PAGED) {
		sim->units = sh->layers;
		sim->per_unit = sh->kv_heads;
	} else {
		sim->units = sim->heads;
		sim->per_unit = 1;
	}
	sim->unit_bytes = kvc_kv_block_bytes(sh) * sim->per_unit;
	if (sim->units > OWNER_FIELD_MASK + 1)
		return kvc_err(-EINVAL,
			       "replay: %u block tables per sequence, more "
			       "than a replay tracks",
			       sim->units);
	if (p->layout == KVC_LAYOUT_PAGED && chunk % sim->unit_bytes) {
		/*
		 * A layer's block (KV heads x the head's) often divides no
		 * power of two; chunks only shape the paged layout's chunk
		 * map, so take the next multiple of it and of 4 KiB.
		 */
		uint64_t step = sim->unit_bytes;

		while (step % SIM_GRANULARITY)
			step += sim->unit_bytes;
		chunk = (chunk + step - 1) / step * step;
	}
	if (chunk % SIM_GRANULARITY || chunk % sim->unit_bytes)
		return kvc_err(-EINVAL,
			       "replay: chunk of %llu bytes is not a multiple "
			       "of 4 KiB and of the %llu-byte block",
			       (unsigned long long)chunk,
			       (unsigned long long)sim->unit_bytes);
	/* Whole chunks: the region never maps more than it was given. */
	chunks = p->capacity_bytes / chunk;
	if (!chunks)
		return kvc_err(-EINVAL,
			       "replay: capacity of %llu bytes holds no "
			       "%llu-byte chunk",
			       (unsigned long long)p->capacity_bytes,
			       (unsigned long long)chunk);
	sim->cap_blocks = chunks * (chunk / sim->unit_bytes);
	res->summary.capacity_bytes = chunks * chunk;
	/* Refuse a prompt that can never fit before serving anything. */
	for (i = 0; i < sim->n; i++) {
		uint32_t prompt, gen;
		uint64_t need;

		sim_cut(p, &sim->reqs[i], &prompt, &gen);
		need = (uint64_t)div_up32(prompt, sim->bs) * sim->units;
		if (need > sim->cap_blocks)
			return kvc_err(-EINVAL,
				       "replay: request %u: its prompt of %u "
				       "tokens needs %llu blocks, the region "
				       "holds %llu",
				       i, prompt, (unsigned long long)need,
				       (unsigned long long)sim->cap_blocks);
	}

	err = sim_evict_init(&sim->ev, p);
	if (err)
		return err;
	err = kvc_backend_open_sim(SIM_GRANULARITY, &sim->be);
	if (err)
		return err;
	kvc_pool_params_init(&pp);
	pp.block_bytes = sim->unit_bytes;
	pp.capacity_blocks = sim->cap_blocks;
	pp.chunk_bytes = chunk;
	pp.empty_chunks_kept = p->watermark;
	pp.backend = sim->be;
	pp.name = "replay";
	pp.flags = KVC_POOL_NO_STATS_PAGE;
	pp.placement = p->placement;
	pp.placement_seed = p->seed;
	if (p->compact == KVC_SIM_COMPACT_PROACTIVE) {
		pp.compact_high = p->compact_high;
		pp.compact_low = p->compact_low;
		pp.compact_budget_bytes = p->compact_budget_bytes;
	}
	err = kvc_pool_create(&pp, &sim->pool);
	if (err)
		return err;
	err = kvc_pool_set_move_hook(sim->pool, on_move, sim);
	if (err)
		return err;

	sim->kept = calloc(sim->heads, sizeof(*sim->kept));
	sim->need = calloc(sim->units, sizeof(*sim->need));
	sim->running = calloc(sim->n, sizeof(*sim->running));
	sim->preempted = calloc(sim->n, sizeof(*sim->preempted));
	sim->latency = calloc(sim->n, sizeof(*sim->latency));
	res->heat_chunks = kvc_pool_occupancy(sim->pool, NULL, 0);
	res->heat = calloc(res->heat_chunks ? res->heat_chunks : 1,
			   sizeof(*res->heat));
	if (!sim->kept || !sim->need || !sim->running || !sim->preempted ||
	    !sim->latency || !res->heat)
		return kvc_err(-ENOMEM, "replay: no memory for %u requests",
			       sim->n);
	for (i = 0; i < res->heat_chunks; i++)
		res->heat[i] = -1;
	res->blocks_per_chunk = (uint32_t)(chunk / sim->unit_bytes);
	return grow_ids(sim, sim->units);
}

static void sim_close(struct sim *sim)
{
	uint32_t i;

	if (sim->pool) {
		if (sim->p->rec)
			kvc_pool_set_recorder(sim->pool, NULL);
		kvc_pool_destroy(sim->pool);
	}
	kvc_backend_close(sim->be);
	sim_evict_exit(&sim->ev);
	for (i = 0; i < sim->nr_slots; i++) {
		free(sim->seqs[i].len);
		free(sim->seqs[i].nb);
		free(sim->seqs[i].blocks);
		free(sim->seqs[i].weight);
	}
	free(sim->seqs);
	free(sim->free_slots);
	free(sim->running);
	free(sim->preempted);
	free(sim->ids);
	free(sim->kept);
	free(sim->need);
	free(sim->latency);
}

/* Start recording: the shape and the policy follow the pool's config. */
static int rec_start(struct sim *sim)
{
	return kvc_rec_model(sim->p->rec, sim->pool, &sim->p->shape,
			     sim->ev.name);
}

static int sim_loop(struct sim *sim, struct kvc_sim_result *res)
{
	const struct kvc_sim_params *p = sim->p;
	struct kvc_sim_summary *sum = &res->summary;
	struct sim_means m = { 0 };
	struct kvc_ladder_acc acc;
	struct kvc_pool_stats st;
	uint64_t cap_samples = 0;
	uint32_t heat_max = 0, prompt, gen;
	int err;

	kvc_ladder_acc_init(&acc);
	for (sim->step = 0; !p->max_steps || sim->step < p->max_steps;
	     sim->step++) {
		sim->now = (double)sim->step * p->step_s;
		if (p->rec) {
			err = kvc_recorder_step(p->rec, (uint32_t)sim->step);
			if (err)
				return err;
		}
		while (sim->next_arrive < sim->n &&
		       sim->reqs[sim->next_arrive].arrival_s <= sim->now) {
			const struct kvc_sim_request *r =
				&sim->reqs[sim->next_arrive];

			sim_cut(p, r, &prompt, &gen);
			err = emit(sim, KVC_REC_ARRIVE, sim->next_arrive,
				   prompt, gen,
				   (uint64_t)llround(r->arrival_s * 1e9));
			if (err)
				return err;
			sim->next_arrive++;
		}
		err = admit(sim);
		if (!err)
			err = decode(sim);
		if (!err)
			err = compress_due(sim);
		if (err)
			return err;
		/* Between compression and the batch's compute, as a server
		 * would; frees of the last step's finishes count too. */
		if (p->compact == KVC_SIM_COMPACT_FULL && sim->freed)
			err = kvc_pool_compact(sim->pool, NULL, NULL);
		else if (p->compact == KVC_SIM_COMPACT_PROACTIVE)
			err = kvc_pool_compact_tick(sim->pool, NULL, NULL);
		if (err < 0)
			return err;
		sim->freed = false;
		/*
		 * The sample is the step's working set: what its batch holds
		 * while it computes, sequences that finish with this step
		 * included. Their blocks go back at the step's end, when the
		 * next step's admissions can take them: sampling after that
		 * would count, for a whole step, memory that a server reuses
		 * at once (and the Orca-Max check would read 9.4 %, not 8.9 %).
		 */
		err = sample(sim, res, &acc, &m, &cap_samples, &heat_max,
			     sim->done + finishing(sim) == sim->n ||
				     (p->max_steps &&
				      sim->step + 1 == p->max_steps));
		if (!err)
			err = finish(sim);
		if (err)
			return err;
		if (sim->done == sim->n) {
			sim->step++;
			break;
		}
	}

	sum->steps = sim->step;
	sum->seconds = (double)sim->step * p->step_s;
	if (sim->done == sim->n) {
		sim->now = sum->seconds;
		err = sample(sim, res, NULL, &m, &cap_samples, &heat_max, true);
		if (err)
			return err;
	}
	kvc_ladder_acc_end(&acc, (double)sim->step, &sum->peaks);
	sim_shares(sum, &sum->peaks);
	if (sim->step) {
		sum->mean_pack_ratio = m.pack / (double)sim->step;
		sum->mean_hole_ratio = m.hole / (double)sim->step;
		sum->mean_unusable_chunk = m.unusable / (double)sim->step;
		sum->mean_running = m.running / (double)sim->step;
	}
	kvc_pool_get_stats(sim->pool, &st, NULL);
	sum->done = sim->done;
	sum->preemptions = sim->preemptions;
	sum->alloc_failures = st.alloc_failures;
	sum->blocks_moved = st.blocks_moved;
	sum->bytes_copied = st.bytes_copied;
	sum->map_calls = st.backend_map;
	sum->unmap_calls = st.backend_unmap;
	sum->map_ns = st.map_ns;
	sum->unmap_ns = st.unmap_ns;
	sum->tokens_generated = sim->tokens_generated;
	sim_latency(sim->latency, sim->done, sum);
	return 0;
}

int kvc_sim_run(const struct kvc_sim_params *p,
		const struct kvc_sim_request *reqs, uint32_t n,
		struct kvc_sim_result *res)
{
	struct kvc_sim_params q;
	double start = (double)kvc_now_ns() / 1e9;
	struct sim sim;
	int err;

	if (res)
		memset(res, 0, sizeof(*res));
	err = check_params(p, reqs, n, res);
	if (err)
		return err;
	q = *p;
	if (!q.sample_every)
		q.sample_every = 1;
	sim_label(&q, res);
	res->summary.layout = q.layout;
	res->summary.requests = n;
	if (q.layout >= KVC_LAYOUT_CONTIG_MAX) {
		err = sim_contig_run(&q, reqs, n, res);
	} else {
		memset(&sim, 0, sizeof(sim));
		sim.p = &q;
		sim.reqs = reqs;
		sim.n = n;
		err = sim_open(&sim, &q, res);
		if (!err && q.rec)
			err = rec_start(&sim);
		if (!err)
			err = sim_loop(&sim, res);
		sim_close(&sim);
	}
	res->summary.wall_s = (double)kvc_now_ns() / 1e9 - start;
	if (err)
		kvc_sim_result_free(res);
	return err;
}
