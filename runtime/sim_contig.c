// SPDX-License-Identifier: MIT
/*
 * Contiguous layouts for the logical replay: Orca's reservation schemes
 * as vLLM's paper measured them (Max, Pow2, Oracle). A request reserves
 * one run of token slots for its whole life, covering every layer and KV
 * head, so it never needs more: no eviction, no preemption. The region is
 * counted in slots; placement inside it is not modelled (a request is
 * admitted while the reservations fit), so external waste here is the
 * region no reservation holds - vLLM's "external frag. & others".
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/sim.h>

#include "../alloc/error.h"
#include "sim.h"

/* One running request: its length now, final length and reservation. */
struct contig_seq {
	uint32_t req;
	uint64_t len;
	uint64_t final_len;
	uint64_t reserved;
};

static uint64_t pow2_at_least(uint64_t v)
{
	uint64_t r = 1;

	while (r < v)
		r <<= 1;
	return r;
}

/* Slots a request of final length @len reserves under @p's layout. */
static uint64_t reserve_slots(const struct kvc_sim_params *p, uint64_t len)
{
	switch (p->layout) {
	case KVC_LAYOUT_CONTIG_MAX:
		return p->max_len;
	case KVC_LAYOUT_CONTIG_POW2:
		return pow2_at_least(len);
	default:
		return len;
	}
}

static void contig_sample(const struct contig_seq *run, uint32_t nr,
			  uint64_t slots, uint64_t tok_bytes, uint64_t step,
			  double now, struct kvc_ladder *l)
{
	uint64_t live = 0, held = 0, fill = 0;
	uint32_t i;

	memset(l, 0, sizeof(*l));
	for (i = 0; i < nr; i++) {
		uint64_t will = run[i].reserved < run[i].final_len ?
					run[i].reserved :
					run[i].final_len;

		live += run[i].len;
		held += run[i].reserved;
		fill += will;
	}
	l->t_ns = (uint64_t)(now * 1e9);
	l->step = step;
	l->live = live * tok_bytes;
	l->logical = l->live;
	l->held = held * tok_bytes;
	l->mapped = slots * tok_bytes;
	l->reservation = (fill - live) * tok_bytes;
	l->tail = (held - fill) * tok_bytes;
	l->free_mapped = (slots - held) * tok_bytes;
	l->seqs = nr;
}

int sim_contig_run(const struct kvc_sim_params *p,
		   const struct kvc_sim_request *reqs, uint32_t n,
		   struct kvc_sim_result *res)
{
	const struct kvc_model_shape *sh = &p->shape;
	struct kvc_sim_summary *sum = &res->summary;
	uint64_t tok_bytes, slots, held = 0, step, cap_samples = 0;
	uint32_t i, nr = 0, next_arrive = 0, next_admit = 0, prompt, gen;
	struct contig_seq *run = NULL;
	struct kvc_ladder_acc acc;
	struct kvc_sim_sample smp;
	double running_sum = 0, *lat = NULL, now;
	int err = 0;

	tok_bytes = kvc_kv_block_bytes(sh) / sh->block_size * sh->layers *
		    sh->kv_heads;
	slots = p->capacity_bytes / tok_bytes;
	if (p->rec)
		return kvc_err(-EINVAL,
			       "replay: recording needs a pool; layout %s "
			       "has none",
			       kvc_sim_layout_name(p->layout));
	if (!slots)
		return kvc_err(-EINVAL,
			       "replay: capacity of %llu bytes holds no token "
			       "of %llu bytes",
			       (unsigned long long)p->capacity_bytes,
			       (unsigned long long)tok_bytes);
	if (p->layout == KVC_LAYOUT_CONTIG_MAX && !p->max_len)
		return kvc_err(-EINVAL,
			       "replay: layout contig-max needs max_len (what "
			       "it reserves per request)");
	for (i = 0; i < n; i++) {
		sim_cut(p, &reqs[i], &prompt, &gen);
		if (reserve_slots(p, (uint64_t)prompt + gen) > slots)
			return kvc_err(-EINVAL,
				       "replay: request %u reserves %llu token "
				       "slots, the region holds %llu",
				       i,
				       (unsigned long long)reserve_slots(
					       p, (uint64_t)prompt + gen),
				       (unsigned long long)slots);
	}
	sum->capacity_bytes = slots * tok_bytes;
	run = calloc(n, sizeof(*run));
	lat = calloc(n, sizeof(*lat));
	if (!run || !lat) {
		err = kvc_err(-ENOMEM, "replay: no memory for %u requests", n);
		goto out;
	}
	kvc_ladder_acc_init(&acc);
	for (step = 0; !p->max_steps || step < p->max_steps; step++) {
		now = (double)step * p->step_s;
		while (next_arrive < n && reqs[next_arrive].arrival_s <= now)
			next_arrive++;
		/* Admit in arrival order while the reservation fits. */
		while (next_admit < next_arrive &&
		       (!p->max_seqs || nr < p->max_seqs)) {
			uint64_t c;

			sim_cut(p, &reqs[next_admit], &prompt, &gen);
			c = reserve_slots(p, (uint64_t)prompt + gen);
			if (held + c > slots)
				break;
			run[nr].req = next_admit;
			run[nr].len = prompt;
			run[nr].final_len = (uint64_t)prompt + gen;
			run[nr].reserved = c;
			held += c;
			nr++;
			next_admit++;
		}
		/* Decode; the ones done leave after the sample. */
		for (i = 0; i < nr; i++) {
			if (run[i].len < run[i].final_len) {
				run[i].len++;
				sum->tokens_generated++;
			}
		}
		/* The step's working set, before the done ones leave (sim.c). */
		memset(&smp, 0, sizeof(smp));
		contig_sample(run, nr, slots, tok_bytes, step, now,
			      &smp.ladder);
		smp.step = step;
		smp.t_s = now;
		smp.internal = smp.ladder.tail;
		smp.running = nr;
		smp.waiting = next_arrive - next_admit;
		err = kvc_ladder_acc_add(&acc, &smp.ladder, (double)step);
		if (err)
			goto out;
		running_sum += nr;
		if (nr > sum->peak_running)
			sum->peak_running = nr;
		for (i = 0; i < nr;) {
			if (run[i].len < run[i].final_len) {
				i++;
				continue;
			}
			lat[sum->done++] = now - reqs[run[i].req].arrival_s;
			held -= run[i].reserved;
			memmove(&run[i], &run[i + 1],
				(size_t)(nr - i - 1) * sizeof(*run));
			nr--;
		}
		smp.done = sum->done;
		/* The last step is always kept: the series ends with the run. */
		if (!(step % p->sample_every) || sum->done == n ||
		    (p->max_steps && step + 1 == p->max_steps)) {
			err = sim_keep_sample(res, &cap_samples, &smp);
			if (err)
				goto out;
		}
		if (sum->done == n) {
			step++;
			break;
		}
	}
	sum->steps = step;
	sum->seconds = (double)step * p->step_s;
	if (sum->done == n) {
		/* The drained region closes the series, with no weight. */
		memset(&smp, 0, sizeof(smp));
		contig_sample(run, 0, slots, tok_bytes, step, sum->seconds,
			      &smp.ladder);
		smp.step = step;
		smp.t_s = sum->seconds;
		smp.done = n;
		err = sim_keep_sample(res, &cap_samples, &smp);
		if (err)
			goto out;
	}
	kvc_ladder_acc_end(&acc, (double)step, &sum->peaks);
	sim_shares(sum, &sum->peaks);
	sum->mean_running = step ? running_sum / (double)step : 0;
	sim_latency(lat, sum->done, sum);
out:
	free(run);
	free(lat);
	return err;
}
