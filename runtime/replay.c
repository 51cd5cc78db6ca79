// SPDX-License-Identifier: MIT
/*
 * Exact replay: a recorded trace's allocator events applied verbatim, in
 * file order, to a fresh pool of the recorded geometry on the sim backend.
 * The writer emits each event right after the state change it describes,
 * so the replay passes through every state the recorded pool passed
 * through; after each event the pool's invariants and the byte ladder's
 * identities are checked, each sample is compared with the replayed pool,
 * and a closing snapshot must match it block for block. Never lets the
 * pool's own policy choose a block or trim a chunk: the trace decides.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/backend.h>
#include <kvc/error.h>
#include <kvc/pool.h>
#include <kvc/record.h>
#include <kvc/sim.h>

#include "../alloc/error.h"
#include "../alloc/internal.h"
#include "../alloc/replay.h"

/**
 * struct snap_buf - A snapshot being gathered from its events.
 * @active: a %KVC_REC_SNAPSHOT was read and its records are due.
 * @want_chunks: chunk records announced; @want_blocks block records.
 * @nr_chunks: chunk records read; @nr_blocks block records.
 * @cap_chunks: room in @chunks; @cap_blocks in @ids; @cap_owners in
 *              @owners.
 * @chunks: the chunks; @ids, @owners: the blocks.
 *
 * Grown as records arrive: a count in a trace sizes nothing.
 */
struct snap_buf {
	bool active;
	uint64_t want_chunks;
	uint64_t want_blocks;
	uint64_t nr_chunks;
	uint64_t nr_blocks;
	uint64_t cap_chunks;
	uint64_t cap_blocks;
	uint64_t cap_owners;
	uint64_t *chunks;
	uint64_t *ids;
	uint64_t *owners;
};

/**
 * struct replay - One exact replay in progress.
 * @reader: the trace.
 * @be: the sim backend the pool maps through.
 * @pool: the replayed pool (NULL before %KVC_REC_CONFIG).
 * @res: the caller's result.
 * @acc: peaks and means over the samples.
 * @usage: the last sample's usage; @have_usage once there is one.
 * @sample_step: the step of the last sample.
 * @last_step: the step of the last event.
 * @last_ns: its recorded time.
 * @applied: a block or chunk event (or a snapshot) has changed the pool.
 * @snap: the snapshot being gathered.
 */
struct replay {
	struct kvc_rec_reader *reader;
	struct kvc_backend *be;
	struct kvc_pool *pool;
	struct kvc_replay_result *res;
	struct kvc_ladder_acc acc;
	struct kvc_pool_usage usage;
	bool have_usage;
	uint64_t sample_step;
	uint64_t last_step;
	uint64_t last_ns;
	bool applied;
	struct snap_buf snap;
};

/* Grow @arr (@cap entries) to hold one more than @n, doubling. */
static int grow(uint64_t **arr, uint64_t *cap, uint64_t n)
{
	uint64_t ncap;
	uint64_t *p;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 64;
	p = realloc(*arr, ncap * sizeof(**arr));
	if (!p)
		return kvc_err(-ENOMEM, "out of memory for a snapshot");
	*arr = p;
	*cap = ncap;
	return 0;
}

static uint64_t pow2_granularity(uint64_t chunk)
{
	/* The chunk itself when it can be the unit; else the smallest. */
	if (chunk >= 4096 && !(chunk & (chunk - 1)))
		return chunk;
	return 4096;
}

static int open_pool(struct replay *rp, const struct kvc_rec_event *ev)
{
	struct kvc_pool_params p;
	int err;

	if (ev->p[4] > KVC_PLACE_RANDOM)
		return kvc_err(-EPROTO, "unknown placement %llu",
			       (unsigned long long)ev->p[4]);
	if (ev->p[3] > UINT32_MAX)
		return kvc_err(-EPROTO, "%llu empty chunks kept: too many",
			       (unsigned long long)ev->p[3]);
	err = kvc_backend_open_sim(pow2_granularity(ev->p[1]), &rp->be);
	if (err)
		return err;
	kvc_pool_params_init(&p);
	p.backend = rp->be;
	p.block_bytes = ev->p[0];
	p.chunk_bytes = ev->p[1];
	p.capacity_blocks = ev->p[2];
	p.empty_chunks_kept = (uint32_t)ev->p[3];
	p.placement = (enum kvc_placement)ev->p[4];
	p.flags = KVC_POOL_NO_STATS_PAGE;
	/* 0: no cap; a cap past the capacity is no cap either. */
	if (ev->p[5] && ev->p[1] && ev->p[5] <= UINT64_MAX / ev->p[1])
		p.max_mapped_bytes = ev->p[5] * ev->p[1];
	err = kvc_pool_create(&p, &rp->pool);
	if (err)
		return err;
	if (rp->pool->nr_blocks != ev->p[2])
		return kvc_err(-EPROTO,
			       "%llu blocks recorded, the geometry gives %llu",
			       (unsigned long long)ev->p[2],
			       (unsigned long long)rp->pool->nr_blocks);
	/*
	 * Events land between the steps of one call (a map before its
	 * blocks are taken, frees before the trim's unmaps), where more
	 * empty chunks are mapped than the watermark allows at rest. The
	 * trace says when chunks go; the samples say how many were parked.
	 */
	rp->pool->empty_kept = rp->pool->nr_chunks;
	return 0;
}

static int sample(struct replay *rp, const struct kvc_rec_event *ev)
{
	struct kvc_pool_usage u = { 0 };
	struct kvc_ladder l;
	int err;

	u.logical_bytes = ev->p[0];
	u.live_bytes = ev->p[1];
	u.reservation_bytes = ev->p[5];
	err = kvc_pool_ladder(rp->pool, &u, ev->step, &l);
	if (err)
		return kvc_err(-EPROTO, "%s", kvc_last_error());
	if (l.held != ev->p[2] || l.mapped != ev->p[3] || l.parked != ev->p[4])
		return kvc_err(
			-EPROTO,
			"recorded held %llu, mapped %llu, parked %llu; replayed %llu, %llu, %llu",
			(unsigned long long)ev->p[2],
			(unsigned long long)ev->p[3],
			(unsigned long long)ev->p[4],
			(unsigned long long)l.held,
			(unsigned long long)l.mapped,
			(unsigned long long)l.parked);
	/* When it was recorded, not when the replay got there. */
	l.t_ns = ev->t_ns;
	err = kvc_ladder_check(&l);
	if (!err)
		err = kvc_ladder_acc_add(&rp->acc, &l, (double)ev->step);
	if (err)
		return err;
	rp->usage = u;
	rp->have_usage = true;
	rp->sample_step = ev->step;
	rp->res->samples++;
	if (rp->res->on_sample)
		rp->res->on_sample(rp->res->arg, &l);
	return 0;
}

/*
 * A snapshot on a pool nothing has touched is where recording began: it
 * is applied. Any other is compared; one that matches with nothing after
 * it is the closing snapshot the trace promises.
 */
static int snap_done(struct replay *rp)
{
	struct snap_buf *s = &rp->snap;
	struct kvc_replay_snap v = { s->nr_chunks, s->chunks, s->nr_blocks,
				     s->ids, s->owners };
	int err;

	s->active = false;
	if (!rp->applied && (s->nr_chunks || s->nr_blocks)) {
		err = kvc_replay_snap_apply(rp->pool, &v);
		rp->applied = true;
		return err;
	}
	err = kvc_replay_snap_compare(rp->pool, &v);
	if (!err)
		rp->res->final_snapshot = true;
	return err;
}

static int snap_event(struct replay *rp, const struct kvc_rec_event *ev)
{
	struct snap_buf *s = &rp->snap;
	int err;

	switch (ev->kind) {
	case KVC_REC_SNAPSHOT:
		s->active = true;
		s->want_chunks = ev->p[0];
		s->want_blocks = ev->p[1];
		s->nr_chunks = s->nr_blocks = 0;
		break;
	case KVC_REC_SNAP_CHUNK:
		if (!s->active || s->nr_chunks >= s->want_chunks)
			return kvc_err(-EPROTO, "a chunk outside a snapshot");
		err = grow(&s->chunks, &s->cap_chunks, s->nr_chunks);
		if (err)
			return err;
		s->chunks[s->nr_chunks++] = ev->p[0];
		break;
	case KVC_REC_SNAP_BLOCK:
		if (!s->active || s->nr_blocks >= s->want_blocks)
			return kvc_err(-EPROTO, "a block outside a snapshot");
		err = grow(&s->ids, &s->cap_blocks, s->nr_blocks);
		if (!err)
			err = grow(&s->owners, &s->cap_owners, s->nr_blocks);
		if (err)
			return err;
		s->ids[s->nr_blocks] = ev->p[0];
		s->owners[s->nr_blocks++] = ev->p[1];
		break;
	}
	if (s->active && s->nr_chunks == s->want_chunks &&
	    s->nr_blocks == s->want_blocks)
		return snap_done(rp);
	return 0;
}

/* An event that changes the pool's blocks or chunks. */
static void touched(struct replay *rp)
{
	rp->applied = true;
	rp->res->final_snapshot = false;
}

static int apply(struct replay *rp, const struct kvc_rec_event *ev)
{
	struct kvc_replay_result *res = rp->res;
	struct kvc_pool *pool = rp->pool;
	int err = 0;

	if (ev->kind == KVC_REC_CONFIG)
		return open_pool(rp, ev);
	if (!pool)
		return kvc_err(-EPROTO, "an event before the configuration");
	if (rp->snap.active && ev->kind != KVC_REC_SNAP_CHUNK &&
	    ev->kind != KVC_REC_SNAP_BLOCK)
		return kvc_err(-EPROTO, "a snapshot left incomplete");
	switch (ev->kind) {
	case KVC_REC_STEP:
		res->steps++;
		break;
	case KVC_REC_SAMPLE:
		err = sample(rp, ev);
		break;
	case KVC_REC_SNAPSHOT:
	case KVC_REC_SNAP_CHUNK:
	case KVC_REC_SNAP_BLOCK:
		err = snap_event(rp, ev);
		break;
	case KVC_REC_ALLOC:
		pool->alloc_calls++;
		break;
	case KVC_REC_BLK_ALLOC:
		touched(rp);
		err = kvc_replay_take(pool, ev->p[0]);
		res->allocs += !err;
		break;
	case KVC_REC_ALLOC_FAIL:
		pool->alloc_failures++;
		res->alloc_failures++;
		break;
	case KVC_REC_FREE:
		pool->free_calls++;
		break;
	case KVC_REC_BLK_FREE:
		touched(rp);
		err = kvc_replay_free(pool, ev->p[0]);
		res->frees += !err;
		break;
	case KVC_REC_OWNER:
		touched(rp);
		err = kvc_replay_set_owner(pool, ev->p[0], ev->p[1]);
		break;
	case KVC_REC_MOVE:
		touched(rp);
		err = kvc_replay_move(pool, ev->p[0], ev->p[1], ev->p[2]);
		res->moves += !err;
		break;
	case KVC_REC_CHUNK_MAP:
		touched(rp);
		err = kvc_replay_map_chunk(pool, ev->p[0]);
		res->maps += !err;
		break;
	case KVC_REC_CHUNK_UNMAP:
		touched(rp);
		err = kvc_replay_unmap_chunk(pool, ev->p[0]);
		res->unmaps += !err;
		break;
	case KVC_REC_COMPACT:
		pool->compactions++;
		break;
	case KVC_REC_END:
		/* The reader checks the count; what it says was lost is gone. */
		if (ev->p[1])
			err = kvc_err(
				-EPROTO,
				"the recorder lost %llu events: the trace misses changes",
				(unsigned long long)ev->p[1]);
		break;
	default:
		/* Request level, names, fences retiring: nothing to apply. */
		break;
	}
	return err;
}

/* The pool's invariants and the ladder's identities, as they stand now. */
static int check(struct replay *rp, uint64_t step)
{
	struct kvc_ladder l;
	int err;

	if (!rp->pool)
		return 0;
	rp->res->checks++;
	err = kvc_pool_check(rp->pool);
	if (err)
		return err;
	err = kvc_pool_ladder(rp->pool, NULL, step, &l);
	if (!err)
		err = kvc_ladder_check(&l);
	return err;
}

static void replay_exit(struct replay *rp)
{
	kvc_pool_destroy(rp->pool);
	kvc_backend_close(rp->be);
	kvc_rec_reader_close(rp->reader);
	free(rp->snap.chunks);
	free(rp->snap.ids);
	free(rp->snap.owners);
}

int kvc_replay_exact(const char *path, struct kvc_replay_result *res)
{
	struct replay rp = { 0 };
	struct kvc_rec_event ev;
	void (*on_sample)(void *, const struct kvc_ladder *);
	void *arg;
	char msg[256];
	int ret, err = 0;

	if (!path || !res)
		return kvc_err(-EINVAL, "kvc_replay_exact: NULL %s",
			       path ? "result" : "path");
	on_sample = res->on_sample;
	arg = res->arg;
	memset(res, 0, sizeof(*res));
	res->on_sample = on_sample;
	res->arg = arg;
	rp.res = res;
	kvc_ladder_acc_init(&rp.acc);
	err = kvc_rec_reader_open(path, &rp.reader);
	if (err)
		return err;
	while ((ret = kvc_rec_next(rp.reader, &ev)) == 1) {
		res->events++;
		rp.last_step = ev.step;
		rp.last_ns = ev.t_ns;
		err = apply(&rp, &ev);
		if (!err)
			err = check(&rp, ev.step);
		if (err) {
			const char *kind = kvc_rec_kind_name(ev.kind);

			/* A refused trace has no closing snapshot to speak of. */
			res->final_snapshot = false;
			/* ENOMEM is ours, not the trace's. */
			if (err != -ENOMEM)
				err = -EPROTO;
			snprintf(msg, sizeof(msg), "%s", kvc_last_error());
			kvc_err(err, "%s: event %llu (%s): %s", path,
				(unsigned long long)kvc_rec_reader_index(
					rp.reader),
				kind ? kind : "?", msg);
			goto out;
		}
	}
	if (ret < 0) {
		res->final_snapshot = false;
		err = ret;
		goto out;
	}
	if (!rp.pool) {
		err = kvc_err(-EPROTO, "%s: no configuration event", path);
		goto out;
	}
	if (rp.snap.active) {
		err = kvc_err(-EPROTO, "%s: the last snapshot is incomplete",
			      path);
		goto out;
	}
	err = kvc_pool_ladder(rp.pool, rp.have_usage ? &rp.usage : NULL,
			      rp.last_step, &res->final);
	if (err) {
		err = kvc_err(-EPROTO, "%s: the final ladder: %s", path,
			      kvc_last_error());
		goto out;
	}
	res->final.t_ns = rp.last_ns;
	/* Closed as the pool closes its own: the last sample weighs a step. */
	kvc_ladder_acc_end(&rp.acc, (double)rp.sample_step + 1, &res->peaks);
out:
	replay_exit(&rp);
	return err;
}
