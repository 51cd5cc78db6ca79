// SPDX-License-Identifier: MIT
/*
 * The trace writer: fixed 64-byte events gathered in two buffers; a full
 * buffer goes to the kernel as one io_uring write while the other fills,
 * so recording costs a copy under a mutex, not a system call per event.
 * Where io_uring cannot be set up (old kernel, seccomp) or the caller asks
 * for it, the writes are plain pwrite() calls in the caller's thread.
 *
 * Ordering rule, which an exact replayer depends on: every event is
 * emitted right after the state change it describes, in the order the
 * changes happen, with the pool lock held, so applying the events in file
 * order passes through every intermediate state of the pool:
 *  - an alloc's grow shows its CHUNK_MAP events first, then ALLOC and its
 *    BLK_ALLOC records together once the blocks are taken;
 *  - a failed alloc shows the CHUNK_MAP and CHUNK_UNMAP of its grow and
 *    unwind as they happened, then ALLOC_FAIL;
 *  - FREE and its BLK_FREE records come right after the blocks are freed,
 *    before the CHUNK_UNMAP events of the trim that follows;
 *  - a compaction is COMPACT, then one MOVE per block (take `to` with the
 *    owner, free `from`), with the CHUNK_UNMAP of a vacated chunk after the
 *    moves that emptied it;
 *  - OWNER follows the tag being set; FREE_DONE follows fences retiring.
 *
 * A write the kernel cancels because the thread that submitted it exited
 * is submitted again (see reap()).
 *
 * Never loses an event silently: after a write error every later event is
 * counted as lost and the first error is returned by every call.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <kvc/record.h>

#include "clock.h"
#include "error.h"
#include "recorder.h"

/* The format is little-endian; so is every machine this is built for. */
_Static_assert(
	__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	"trace format is little-endian: add byte swaps for this machine");
_Static_assert(sizeof(struct kvc_rec_header) == 64, "header is 64 bytes");
_Static_assert(sizeof(struct kvc_rec_event) == 64, "event is 64 bytes");

#define REC_DEFAULT_BUFFER (1ull << 20)
/* Bound on a buffer so that a mistaken size fails cleanly, not in malloc. */
#define REC_MAX_BUFFER (1ull << 30)

/**
 * struct rec_buf - One of the two event buffers.
 * @ev: the events.
 * @nr: events gathered (current buffer) or being written (in flight).
 * @inflight: handed to the kernel, completion not yet reaped.
 * @off: file offset of the write.
 * @done: bytes of the write completed so far (short writes).
 * @retries: resubmissions after a cancelled write.
 */
struct rec_buf {
	struct kvc_rec_event *ev;
	uint32_t nr;
	bool inflight;
	uint64_t off;
	uint64_t done;
	uint32_t retries;
};

/**
 * struct kvc_recorder - A trace being written.
 * @lock: serialises emits, flushes and the buffers.
 * @fd: the file.
 * @t0: CLOCK_MONOTONIC at open.
 * @step: the current step, stamped on each event.
 * @buf: the two buffers.
 * @cur: index of the buffer events go to.
 * @cap: events per buffer.
 * @off: file offset where the next buffer goes.
 * @uring: whether @ring carries the writes.
 * @ring: the io_uring.
 * @err: the first write error (0: none).
 * @stats: counters.
 * @group_ns: the time stamped on the events of a group, taken by
 *            kvc_recorder_lock().
 */
struct kvc_recorder {
	pthread_mutex_t lock;
	int fd;
	uint64_t t0;
	uint32_t step;
	struct rec_buf buf[2];
	int cur;
	uint32_t cap;
	uint64_t off;
	bool uring;
	struct io_uring ring;
	int err;
	struct kvc_recorder_stats stats;
	uint64_t group_ns;
};

static void set_err(struct kvc_recorder *rec, int err)
{
	if (!rec->err)
		rec->err = err;
}

/* Write the rest of @b with pwrite(); the caller's thread waits. */
static int write_sync(struct kvc_recorder *rec, struct rec_buf *b)
{
	uint64_t len = (uint64_t)b->nr * sizeof(struct kvc_rec_event);

	while (b->done < len) {
		ssize_t w = pwrite(rec->fd, (char *)b->ev + b->done,
				   len - b->done, (off_t)(b->off + b->done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		b->done += (uint64_t)w;
		rec->stats.bytes += (uint64_t)w;
	}
	return 0;
}

/* Hand the rest of @b to the kernel. */
static int submit_uring(struct kvc_recorder *rec, struct rec_buf *b)
{
	uint64_t len = (uint64_t)b->nr * sizeof(struct kvc_rec_event);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&rec->ring);
	int ret;

	if (!sqe)
		return -EBUSY;
	io_uring_prep_write(sqe, rec->fd, (char *)b->ev + b->done,
			    (unsigned int)(len - b->done), b->off + b->done);
	/* Punted to a kernel worker: the copy into the page cache happens
	 * there, not in the thread that emitted the events. */
	io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
	io_uring_sqe_set_data64(sqe, (uint64_t)(b - rec->buf));
	ret = io_uring_submit(&rec->ring);
	if (ret < 0)
		return ret;
	b->inflight = true;
	return 0;
}

/* Resubmissions of one buffer before its cancellations count as errors. */
#define REC_MAX_RETRIES 16

/*
 * Reap completions until @b is no longer in flight. A short write is
 * resubmitted for the rest; an error is kept and the buffer dropped.
 * The kernel cancels a request whose submitting thread exits (emits come
 * from any thread): such a write is submitted again from this one, which
 * is safe because a write of the same bytes at the same offset is
 * idempotent.
 */
static void reap(struct kvc_recorder *rec, struct rec_buf *b)
{
	while (b->inflight) {
		struct io_uring_cqe *cqe;
		struct rec_buf *done;
		uint64_t len;
		int ret = io_uring_wait_cqe(&rec->ring, &cqe);

		if (ret == -EINTR)
			continue;
		if (ret < 0) {
			/* The ring is broken: nothing more will complete. */
			set_err(rec, ret);
			rec->buf[0].inflight = rec->buf[1].inflight = false;
			return;
		}
		done = &rec->buf[io_uring_cqe_get_data64(cqe) & 1];
		ret = cqe->res;
		io_uring_cqe_seen(&rec->ring, cqe);
		done->inflight = false;
		len = (uint64_t)done->nr * sizeof(struct kvc_rec_event);
		if ((ret == -ECANCELED || ret == -EINTR || ret == -EAGAIN) &&
		    done->retries++ < REC_MAX_RETRIES) {
			ret = submit_uring(rec, done);
			if (ret)
				set_err(rec, ret);
			continue;
		}
		if (ret < 0) {
			set_err(rec, ret);
			continue;
		}
		if (ret == 0) {
			set_err(rec, -EIO);
			continue;
		}
		done->done += (uint64_t)ret;
		rec->stats.bytes += (uint64_t)ret;
		if (done->done < len) {
			ret = submit_uring(rec, done);
			if (ret)
				set_err(rec, ret);
		}
	}
}

/* Send the current buffer to the file and switch to the other one. */
static void submit_current(struct kvc_recorder *rec)
{
	struct rec_buf *b = &rec->buf[rec->cur];
	struct rec_buf *next = &rec->buf[rec->cur ^ 1];
	int ret;

	if (!b->nr)
		return;
	b->off = rec->off;
	b->done = 0;
	b->retries = 0;
	rec->off += (uint64_t)b->nr * sizeof(struct kvc_rec_event);
	rec->stats.flushes++;
	if (rec->uring) {
		ret = submit_uring(rec, b);
		if (ret)
			set_err(rec, ret);
	} else {
		ret = write_sync(rec, b);
		if (ret)
			set_err(rec, ret);
	}
	if (next->inflight) {
		rec->stats.waits++;
		reap(rec, next);
	}
	next->nr = 0;
	rec->cur ^= 1;
}

static int emit_locked(struct kvc_recorder *rec, uint16_t kind,
		       const uint64_t *p, uint64_t now)
{
	struct rec_buf *b;
	struct kvc_rec_event *ev;

	/* Counted, not said: this runs under the pool's lock, per block. */
	if (rec->err) {
		rec->stats.lost++;
		return rec->err;
	}
	b = &rec->buf[rec->cur];
	ev = &b->ev[b->nr++];
	ev->t_ns = now > rec->t0 ? now - rec->t0 : 0;
	ev->step = rec->step;
	ev->kind = kind;
	ev->flags = 0;
	if (p)
		memcpy(ev->p, p, sizeof(ev->p));
	else
		memset(ev->p, 0, sizeof(ev->p));
	rec->stats.events++;
	if (b->nr == rec->cap)
		submit_current(rec);
	return rec->err;
}

void kvc_recorder_lock(struct kvc_recorder *rec)
{
	pthread_mutex_lock(&rec->lock);
	/* One call's events share its time: a clock read per block cost more
	 * than the rest of recording it. */
	rec->group_ns = kvc_now_ns();
}

void kvc_recorder_unlock(struct kvc_recorder *rec)
{
	pthread_mutex_unlock(&rec->lock);
}

int kvc_recorder_emit_locked(struct kvc_recorder *rec, enum kvc_rec_kind kind,
			     const uint64_t *p)
{
	return emit_locked(rec, (uint16_t)kind, p, rec->group_ns);
}

/* The message of an event lost to an earlier write error, said once. */
static int lost(int err)
{
	if (!err)
		return 0;
	return kvc_err(
		err, "recorder: writing the trace failed (%s); events are lost",
		strerror(-err));
}

int kvc_recorder_emit(struct kvc_recorder *rec, enum kvc_rec_kind kind,
		      const uint64_t *p)
{
	int ret;

	if (!rec)
		return 0;
	if (kind <= 0 || kind >= KVC_REC_KIND_MAX)
		return kvc_err(-EINVAL, "recorder: event kind %d is not known",
			       (int)kind);
	pthread_mutex_lock(&rec->lock);
	ret = emit_locked(rec, (uint16_t)kind, p, kvc_now_ns());
	pthread_mutex_unlock(&rec->lock);
	return lost(ret);
}

int kvc_recorder_step(struct kvc_recorder *rec, uint32_t step)
{
	uint64_t p[KVC_REC_PAYLOAD] = { step };
	int ret;

	if (!rec)
		return 0;
	pthread_mutex_lock(&rec->lock);
	/* Steps go up only: readers refuse a trace where they go back. */
	if (step < rec->step) {
		pthread_mutex_unlock(&rec->lock);
		return kvc_err(-EINVAL, "recorder: step %u after step %u", step,
			       rec->step);
	}
	rec->step = step;
	ret = emit_locked(rec, KVC_REC_STEP, p, kvc_now_ns());
	pthread_mutex_unlock(&rec->lock);
	return lost(ret);
}

int kvc_recorder_name(struct kvc_recorder *rec, uint32_t what, const char *text)
{
	uint64_t p[KVC_REC_PAYLOAD] = { what };
	size_t len;

	if (!rec)
		return 0;
	if (!text)
		text = "";
	len = strnlen(text, 5 * sizeof(uint64_t));
	memcpy(&p[1], text, len);
	return kvc_recorder_emit(rec, KVC_REC_NAME, p);
}

static int flush_locked(struct kvc_recorder *rec)
{
	if (rec->buf[rec->cur].nr && !rec->err)
		submit_current(rec);
	if (rec->uring) {
		reap(rec, &rec->buf[0]);
		reap(rec, &rec->buf[1]);
	}
	return rec->err;
}

int kvc_recorder_flush(struct kvc_recorder *rec)
{
	int ret;

	if (!rec)
		return kvc_err(-EINVAL, "recorder: NULL");
	pthread_mutex_lock(&rec->lock);
	ret = flush_locked(rec);
	pthread_mutex_unlock(&rec->lock);
	if (ret)
		return kvc_err(ret, "recorder: writing the trace failed: %s",
			       strerror(-ret));
	return 0;
}

void kvc_recorder_get_stats(struct kvc_recorder *rec,
			    struct kvc_recorder_stats *out)
{
	if (!out)
		return;
	if (!rec) {
		memset(out, 0, sizeof(*out));
		return;
	}
	pthread_mutex_lock(&rec->lock);
	*out = rec->stats;
	out->uring = rec->uring;
	pthread_mutex_unlock(&rec->lock);
}

static int write_header(int fd)
{
	struct kvc_rec_header h;
	struct timespec ts;
	ssize_t w;

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, KVC_REC_MAGIC, sizeof(h.magic));
	h.version = KVC_REC_VERSION;
	h.header_bytes = sizeof(h);
	h.event_bytes = sizeof(struct kvc_rec_event);
	clock_gettime(CLOCK_REALTIME, &ts);
	h.created_ns =
		(uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	do {
		w = pwrite(fd, &h, sizeof(h), 0);
	} while (w < 0 && errno == EINTR);
	if (w < 0)
		return -errno;
	if (w != sizeof(h))
		return -EIO;
	return 0;
}

static void free_recorder(struct kvc_recorder *rec)
{
	if (rec->uring)
		io_uring_queue_exit(&rec->ring);
	free(rec->buf[0].ev);
	free(rec->buf[1].ev);
	pthread_mutex_destroy(&rec->lock);
	free(rec);
}

int kvc_recorder_open(const char *path,
		      const struct kvc_recorder_params *params,
		      struct kvc_recorder **out)
{
	uint64_t bytes = params && params->buffer_bytes ? params->buffer_bytes :
							  REC_DEFAULT_BUFFER;
	struct kvc_recorder *rec;
	size_t alloc;
	int ret;

	if (!path || !*path || !out)
		return kvc_err(-EINVAL, "recorder: no path or no output");
	if (bytes > REC_MAX_BUFFER)
		return kvc_err(-EINVAL,
			       "recorder: buffer of %llu bytes, at most %llu",
			       (unsigned long long)bytes,
			       (unsigned long long)REC_MAX_BUFFER);
	rec = calloc(1, sizeof(*rec));
	if (!rec)
		return kvc_err(-ENOMEM, "recorder: out of memory");
	rec->cap = (uint32_t)(bytes / sizeof(struct kvc_rec_event));
	if (!rec->cap)
		rec->cap = 1;
	alloc = (size_t)rec->cap * sizeof(struct kvc_rec_event);
	rec->buf[0].ev = malloc(alloc);
	rec->buf[1].ev = malloc(alloc);
	pthread_mutex_init(&rec->lock, NULL);
	if (!rec->buf[0].ev || !rec->buf[1].ev) {
		free_recorder(rec);
		return kvc_err(-ENOMEM,
			       "recorder: no memory for two %zu-byte buffers",
			       alloc);
	}
	rec->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (rec->fd < 0) {
		ret = -errno;
		free_recorder(rec);
		return kvc_err(ret, "recorder: cannot create %s: %s", path,
			       strerror(-ret));
	}
	ret = write_header(rec->fd);
	if (ret) {
		close(rec->fd);
		free_recorder(rec);
		return kvc_err(ret,
			       "recorder: cannot write the header of %s: %s",
			       path, strerror(-ret));
	}
	rec->off = sizeof(struct kvc_rec_header);
	rec->stats.bytes = rec->off;
	if (!params || !params->sync_io) {
		ret = io_uring_queue_init(4, &rec->ring, 0);
		if (ret == 0)
			rec->uring = true;
		else
			kvc_notice(
				"recorder: io_uring unavailable (%s); writing the trace with pwrite()",
				strerror(-ret));
	}
	rec->t0 = kvc_now_ns();
	*out = rec;
	return 0;
}

int kvc_recorder_close(struct kvc_recorder *rec)
{
	uint64_t p[KVC_REC_PAYLOAD] = { 0 };
	int ret;

	if (!rec)
		return 0;
	pthread_mutex_lock(&rec->lock);
	p[0] = rec->stats.events;
	p[1] = rec->stats.lost;
	emit_locked(rec, KVC_REC_END, p, kvc_now_ns());
	ret = flush_locked(rec);
	pthread_mutex_unlock(&rec->lock);
	if (!ret && fsync(rec->fd))
		ret = -errno;
	if (close(rec->fd) && !ret)
		ret = -errno;
	free_recorder(rec);
	if (ret)
		return kvc_err(ret, "recorder: writing the trace failed: %s",
			       strerror(-ret));
	return 0;
}
