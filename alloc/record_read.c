// SPDX-License-Identifier: MIT
/*
 * The trace reader. A trace is untrusted input: the header is checked
 * before anything else, the file size must be a whole number of events,
 * and each event is checked on its own and against the trace so far
 * (kinds, flags, time, step, ids below the configured counts, counts
 * honoured by the events that follow) before it is handed out. Never
 * allocates per event and never trusts a count to size anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kvc/record.h>

#include "error.h"

_Static_assert(
	__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	"trace format is little-endian: add byte swaps for this machine");

#define EV_BYTES ((uint64_t)sizeof(struct kvc_rec_event))
#define HDR_BYTES ((uint64_t)sizeof(struct kvc_rec_header))
/* Events read from the file at a time. */
#define READ_BATCH 256u
/* Bytes of text a NAME event carries. */
#define NAME_TEXT 40u

/**
 * struct kvc_rec_reader - A trace being read.
 * @fd: the file.
 * @hdr: its header.
 * @nr_events: events the file holds.
 * @next: index of the next event.
 * @batch: events read ahead; @batch_first the index of @batch[0],
 *         @batch_nr how many.
 * @err: a sticky error (0: none); @ended after END.
 * @last_t, @last_step: of the previous event.
 * @have_config: CONFIG seen; @nr_blocks, @nr_chunks from it.
 * @want: the per-block kind the events that follow must be, 0 for none;
 *        @want_left of them still due; @want_from the event announcing
 *        them; @then_blocks SNAP_BLOCK events due after the SNAP_CHUNKs.
 */
struct kvc_rec_reader {
	int fd;
	struct kvc_rec_header hdr;
	uint64_t nr_events;
	uint64_t next;
	struct kvc_rec_event batch[READ_BATCH];
	uint64_t batch_first;
	uint32_t batch_nr;
	int err;
	bool ended;
	uint64_t last_t;
	uint32_t last_step;
	bool have_config;
	uint64_t nr_blocks;
	uint64_t nr_chunks;
	uint16_t want;
	uint64_t want_left;
	uint64_t want_from;
	uint64_t then_blocks;
};

static const char *const kind_names[KVC_REC_KIND_MAX] = {
	[KVC_REC_CONFIG] = "config",
	[KVC_REC_SHAPE] = "shape",
	[KVC_REC_NAME] = "name",
	[KVC_REC_STEP] = "step",
	[KVC_REC_SAMPLE] = "sample",
	[KVC_REC_SNAPSHOT] = "snapshot",
	[KVC_REC_SNAP_CHUNK] = "snap_chunk",
	[KVC_REC_SNAP_BLOCK] = "snap_block",
	[KVC_REC_END] = "end",
	[KVC_REC_ARRIVE] = "arrive",
	[KVC_REC_APPEND] = "append",
	[KVC_REC_COMPRESS] = "compress",
	[KVC_REC_PREEMPT] = "preempt",
	[KVC_REC_FINISH] = "finish",
	[KVC_REC_ALLOC] = "alloc",
	[KVC_REC_BLK_ALLOC] = "blk_alloc",
	[KVC_REC_ALLOC_FAIL] = "alloc_fail",
	[KVC_REC_FREE] = "free",
	[KVC_REC_BLK_FREE] = "blk_free",
	[KVC_REC_FREE_DONE] = "free_done",
	[KVC_REC_OWNER] = "owner",
	[KVC_REC_MOVE] = "move",
	[KVC_REC_CHUNK_MAP] = "chunk_map",
	[KVC_REC_CHUNK_UNMAP] = "chunk_unmap",
	[KVC_REC_COMPACT] = "compact",
};

/*
 * Names of the payload words per kind; NULL ends the list. Words not
 * named are unused (zero). NAME's text is formatted on its own.
 */
static const char *const field_names[KVC_REC_KIND_MAX][KVC_REC_PAYLOAD] = {
	[KVC_REC_CONFIG] = { "block_bytes", "chunk_bytes", "blocks",
			     "empty_kept", "placement", "max_chunks" },
	[KVC_REC_SHAPE] = { "layers", "kv_heads", "head_dim", "block_size",
			    "dtype", "q_heads" },
	[KVC_REC_SAMPLE] = { "logical", "live", "held", "mapped", "parked",
			     "reservation" },
	[KVC_REC_SNAPSHOT] = { "chunks", "blocks" },
	[KVC_REC_SNAP_CHUNK] = { "chunk" },
	[KVC_REC_SNAP_BLOCK] = { "block", "owner" },
	[KVC_REC_END] = { "events", "lost" },
	[KVC_REC_ARRIVE] = { "seq", "prompt", "gen", "arrival_ns" },
	[KVC_REC_APPEND] = { "seq", "n", "tokens" },
	[KVC_REC_COMPRESS] = { "seq", "kvs_before", "kvs_after",
			       "blocks_freed" },
	[KVC_REC_PREEMPT] = { "seq", "blocks" },
	[KVC_REC_FINISH] = { "seq", "tokens" },
	[KVC_REC_ALLOC] = { "n" },
	[KVC_REC_BLK_ALLOC] = { "block" },
	[KVC_REC_ALLOC_FAIL] = { "n", "free_mapped", "err" },
	[KVC_REC_FREE] = { "n", "fence" },
	[KVC_REC_BLK_FREE] = { "block" },
	[KVC_REC_FREE_DONE] = { "done_seq" },
	[KVC_REC_OWNER] = { "block", "owner" },
	[KVC_REC_MOVE] = { "from", "to", "owner" },
	[KVC_REC_CHUNK_MAP] = { "chunk", "ns" },
	[KVC_REC_CHUNK_UNMAP] = { "chunk", "ns" },
	[KVC_REC_COMPACT] = { "max_bytes", "max_chunks", "tick" },
};

const char *kvc_rec_kind_name(uint32_t kind)
{
	if (kind >= KVC_REC_KIND_MAX)
		return NULL;
	return kind_names[kind];
}

static const char *name_what(uint64_t what)
{
	switch (what) {
	case KVC_REC_NAME_POLICY:
		return "policy";
	case KVC_REC_NAME_POOL:
		return "pool";
	case KVC_REC_NAME_BACKEND:
		return "backend";
	default:
		return "?";
	}
}

static int open_err(struct kvc_rec_reader *r, const char *path, int err,
		    const char *what)
{
	if (r->fd >= 0)
		close(r->fd);
	free(r);
	return kvc_err(err, "trace %s: %s", path, what);
}

int kvc_rec_reader_open(const char *path, struct kvc_rec_reader **out)
{
	struct kvc_rec_reader *r;
	struct kvc_rec_header *h;
	struct stat st;
	ssize_t got;
	char msg[160];
	int ret;

	if (!path || !out)
		return kvc_err(-EINVAL, "trace: no path or no output");
	r = calloc(1, sizeof(*r));
	if (!r)
		return kvc_err(-ENOMEM, "trace: out of memory");
	r->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		ret = -errno;
		return open_err(r, path, ret, strerror(-ret));
	}
	if (fstat(r->fd, &st)) {
		ret = -errno;
		return open_err(r, path, ret, strerror(-ret));
	}
	if (!S_ISREG(st.st_mode))
		return open_err(r, path, -EPROTO, "not a regular file");
	h = &r->hdr;
	do {
		got = pread(r->fd, h, sizeof(*h), 0);
	} while (got < 0 && errno == EINTR);
	if (got < 0) {
		ret = -errno;
		return open_err(r, path, ret, strerror(-ret));
	}
	if ((uint64_t)got < HDR_BYTES) {
		snprintf(
			msg, sizeof(msg),
			"%lld bytes, shorter than the %llu-byte header: not a trace",
			(long long)got, (unsigned long long)HDR_BYTES);
		return open_err(r, path, -EPROTO, msg);
	}
	if (memcmp(h->magic, KVC_REC_MAGIC, sizeof(h->magic)))
		return open_err(r, path, -EPROTO,
				"bad magic: not a trace (no \"KVCTRACE\")");
	if (h->version != KVC_REC_VERSION) {
		snprintf(msg, sizeof(msg),
			 "format version %u, this reader knows only version %u",
			 h->version, KVC_REC_VERSION);
		return open_err(r, path, -EPROTO, msg);
	}
	if (h->header_bytes != HDR_BYTES || h->event_bytes != EV_BYTES) {
		snprintf(
			msg, sizeof(msg),
			"header size %u and event size %u, expected %llu and %llu",
			h->header_bytes, h->event_bytes,
			(unsigned long long)HDR_BYTES,
			(unsigned long long)EV_BYTES);
		return open_err(r, path, -EPROTO, msg);
	}
	if (h->flags) {
		snprintf(msg, sizeof(msg), "unknown header flags 0x%x",
			 h->flags);
		return open_err(r, path, -EPROTO, msg);
	}
	if (((uint64_t)st.st_size - HDR_BYTES) % EV_BYTES) {
		snprintf(
			msg, sizeof(msg),
			"%llu bytes after the header, not a whole number of %llu-byte events (truncated mid-event?)",
			(unsigned long long)((uint64_t)st.st_size - HDR_BYTES),
			(unsigned long long)EV_BYTES);
		return open_err(r, path, -EPROTO, msg);
	}
	r->nr_events = ((uint64_t)st.st_size - HDR_BYTES) / EV_BYTES;
	*out = r;
	return 0;
}

uint64_t kvc_rec_reader_index(const struct kvc_rec_reader *r)
{
	return r && r->next ? r->next - 1 : 0;
}

const struct kvc_rec_header *
kvc_rec_reader_header(const struct kvc_rec_reader *r)
{
	return r ? &r->hdr : NULL;
}

void kvc_rec_reader_close(struct kvc_rec_reader *r)
{
	if (!r)
		return;
	close(r->fd);
	free(r);
}

static const char *kind_str(uint32_t kind, char *buf, size_t size)
{
	const char *name = kvc_rec_kind_name(kind);

	if (name)
		return name;
	snprintf(buf, size, "kind %u", kind);
	return buf;
}

/* Fail the event being read; the error sticks. */
__attribute__((format(printf, 3, 4))) static int
bad(struct kvc_rec_reader *r, const struct kvc_rec_event *ev, const char *fmt,
    ...)
{
	char why[160], kb[24];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	r->err = -EPROTO;
	return kvc_err(-EPROTO, "trace: event %llu (%s): %s",
		       (unsigned long long)(r->next - 1),
		       kind_str(ev->kind, kb, sizeof(kb)), why);
}

static bool text_ok(const uint64_t *p)
{
	const unsigned char *s = (const unsigned char *)&p[1];
	uint32_t i = 0;

	for (; i < NAME_TEXT && s[i]; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	for (; i < NAME_TEXT; i++)
		if (s[i])
			return false;
	return true;
}

static int check_config(struct kvc_rec_reader *r,
			const struct kvc_rec_event *ev)
{
	const uint64_t *p = ev->p;
	uint64_t bpc;

	if (r->have_config)
		return bad(r, ev, "a second config (the first is event 0)");
	if (!p[0] || !p[1] || p[1] % p[0])
		return bad(r, ev,
			   "block bytes %llu do not divide chunk bytes %llu",
			   (unsigned long long)p[0], (unsigned long long)p[1]);
	bpc = p[1] / p[0];
	if (!p[2] || p[2] % bpc || p[2] > (1ull << 32))
		return bad(
			r, ev,
			"%llu blocks total is not a whole number of %llu-block chunks up to 2^32 blocks",
			(unsigned long long)p[2], (unsigned long long)bpc);
	r->nr_blocks = p[2];
	r->nr_chunks = p[2] / bpc;
	/* The empty-chunk watermark (p3) may exceed the chunks: no check. */
	if (p[5] > r->nr_chunks)
		return bad(r, ev,
			   "%llu chunks mappable, beyond the %llu chunks",
			   (unsigned long long)p[5],
			   (unsigned long long)r->nr_chunks);
	r->have_config = true;
	return 0;
}

static int check_block(struct kvc_rec_reader *r, const struct kvc_rec_event *ev,
		       uint64_t id)
{
	if (id >= r->nr_blocks)
		return bad(r, ev, "block %llu out of range (%llu blocks)",
			   (unsigned long long)id,
			   (unsigned long long)r->nr_blocks);
	return 0;
}

static int check_chunk(struct kvc_rec_reader *r, const struct kvc_rec_event *ev,
		       uint64_t id)
{
	if (id >= r->nr_chunks)
		return bad(r, ev, "chunk %llu out of range (%llu chunks)",
			   (unsigned long long)id,
			   (unsigned long long)r->nr_chunks);
	return 0;
}

/* A count announcing @n events of @kind: bounded by @max, then awaited. */
static int expect(struct kvc_rec_reader *r, const struct kvc_rec_event *ev,
		  uint16_t kind, uint64_t n, uint64_t max, const char *what)
{
	if (n > max)
		return bad(r, ev, "huge count: %llu %s, the pool has %llu",
			   (unsigned long long)n, what,
			   (unsigned long long)max);
	r->want = n ? kind : 0;
	r->want_left = n;
	r->want_from = r->next - 1;
	return 0;
}

/* The per-block events an earlier count announced. */
static int check_want(struct kvc_rec_reader *r, const struct kvc_rec_event *ev)
{
	uint16_t k = ev->kind;
	bool per_block = k == KVC_REC_BLK_ALLOC || k == KVC_REC_BLK_FREE ||
			 k == KVC_REC_SNAP_CHUNK || k == KVC_REC_SNAP_BLOCK;

	if (r->want && k != r->want)
		return bad(r, ev,
			   "event %llu announced %llu more %s events, found %s",
			   (unsigned long long)r->want_from,
			   (unsigned long long)r->want_left,
			   kind_names[r->want], kind_names[k]);
	if (!r->want && per_block)
		return bad(r, ev, "%s not announced by a count before it",
			   kind_names[k]);
	if (!r->want)
		return 0;
	if (--r->want_left)
		return 0;
	r->want = 0;
	if (k == KVC_REC_SNAP_CHUNK && r->then_blocks) {
		r->want = KVC_REC_SNAP_BLOCK;
		r->want_left = r->then_blocks;
		r->then_blocks = 0;
	}
	return 0;
}

static int check_event(struct kvc_rec_reader *r, const struct kvc_rec_event *ev)
{
	const uint64_t *p = ev->p;
	int ret;

	if (ev->kind >= KVC_REC_KIND_MAX || !kind_names[ev->kind])
		return bad(r, ev, "unknown kind");
	if (ev->flags)
		return bad(r, ev, "unknown flags 0x%x", ev->flags);
	if (ev->t_ns < r->last_t)
		return bad(r, ev, "time goes backwards (%llu ns after %llu ns)",
			   (unsigned long long)ev->t_ns,
			   (unsigned long long)r->last_t);
	if (ev->step < r->last_step)
		return bad(r, ev, "step goes backwards (%u after %u)", ev->step,
			   r->last_step);
	r->last_t = ev->t_ns;
	r->last_step = ev->step;
	if (!r->have_config && ev->kind != KVC_REC_CONFIG)
		return bad(r, ev, "the trace must start with a config event");
	ret = check_want(r, ev);
	if (ret)
		return ret;

	switch (ev->kind) {
	case KVC_REC_CONFIG:
		return check_config(r, ev);
	case KVC_REC_NAME:
		if (p[0] < KVC_REC_NAME_POLICY || p[0] > KVC_REC_NAME_BACKEND)
			return bad(r, ev, "names unknown thing %llu",
				   (unsigned long long)p[0]);
		if (!text_ok(p))
			return bad(r, ev, "text is not printable");
		return 0;
	case KVC_REC_STEP:
		if (p[0] != ev->step)
			return bad(r, ev, "step %llu marked in step %u",
				   (unsigned long long)p[0], ev->step);
		return 0;
	case KVC_REC_SNAPSHOT:
		if (p[0] > r->nr_chunks)
			return bad(r, ev,
				   "huge count: %llu chunks, the pool has %llu",
				   (unsigned long long)p[0],
				   (unsigned long long)r->nr_chunks);
		if (p[1] > r->nr_blocks)
			return bad(r, ev,
				   "huge count: %llu blocks, the pool has %llu",
				   (unsigned long long)p[1],
				   (unsigned long long)r->nr_blocks);
		if (p[0])
			r->then_blocks = p[1];
		return expect(r, ev,
			      p[0] ? KVC_REC_SNAP_CHUNK : KVC_REC_SNAP_BLOCK,
			      p[0] ? p[0] : p[1], r->nr_chunks + r->nr_blocks,
			      "events");
	case KVC_REC_SNAP_CHUNK:
	case KVC_REC_CHUNK_MAP:
	case KVC_REC_CHUNK_UNMAP:
		return check_chunk(r, ev, p[0]);
	case KVC_REC_SNAP_BLOCK:
	case KVC_REC_BLK_ALLOC:
	case KVC_REC_BLK_FREE:
	case KVC_REC_OWNER:
		return check_block(r, ev, p[0]);
	case KVC_REC_MOVE:
		ret = check_block(r, ev, p[0]);
		if (!ret)
			ret = check_block(r, ev, p[1]);
		if (!ret && p[0] == p[1])
			return bad(r, ev, "moves block %llu onto itself",
				   (unsigned long long)p[0]);
		return ret;
	case KVC_REC_ALLOC:
		return expect(r, ev, KVC_REC_BLK_ALLOC, p[0], r->nr_blocks,
			      "blocks");
	case KVC_REC_FREE:
		return expect(r, ev, KVC_REC_BLK_FREE, p[0], r->nr_blocks,
			      "blocks");
	case KVC_REC_END:
		if (p[0] != r->next - 1)
			return bad(
				r, ev,
				"says %llu events before it, the trace has %llu",
				(unsigned long long)p[0],
				(unsigned long long)(r->next - 1));
		r->ended = true;
		return 0;
	default:
		return 0;
	}
}

static int fill_batch(struct kvc_rec_reader *r)
{
	uint64_t n = r->nr_events - r->next;
	uint64_t off = HDR_BYTES + r->next * EV_BYTES;
	uint64_t bytes, got = 0;

	if (n > READ_BATCH)
		n = READ_BATCH;
	bytes = n * EV_BYTES;
	while (got < bytes) {
		ssize_t w = pread(r->fd, (char *)r->batch + got, bytes - got,
				  (off_t)(off + got));

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			r->err = -errno;
			return kvc_err(r->err, "trace: reading event %llu: %s",
				       (unsigned long long)r->next,
				       strerror(errno));
		}
		if (w == 0) {
			r->err = -EPROTO;
			return kvc_err(
				-EPROTO,
				"trace: the file shrank while read, at event %llu",
				(unsigned long long)r->next);
		}
		got += (uint64_t)w;
	}
	r->batch_first = r->next;
	r->batch_nr = (uint32_t)n;
	return 0;
}

int kvc_rec_next(struct kvc_rec_reader *r, struct kvc_rec_event *ev)
{
	int ret;

	if (!r || !ev)
		return kvc_err(-EINVAL, "trace: no reader or no event");
	if (r->err)
		return r->err;
	if (r->ended) {
		if (r->next < r->nr_events) {
			r->next++;
			memset(ev, 0, sizeof(*ev));
			r->err = -EPROTO;
			return kvc_err(
				-EPROTO,
				"trace: event %llu: events after the end",
				(unsigned long long)(r->next - 1));
		}
		return 0;
	}
	if (r->next >= r->nr_events) {
		r->err = -EPROTO;
		if (!r->next)
			return kvc_err(-EPROTO, "trace: no events (truncated)");
		return kvc_err(
			-EPROTO,
			"trace: truncated after event %llu: no end event",
			(unsigned long long)(r->next - 1));
	}
	if (r->next >= r->batch_first + r->batch_nr) {
		ret = fill_batch(r);
		if (ret)
			return ret;
	}
	*ev = r->batch[r->next - r->batch_first];
	r->next++;
	ret = check_event(r, ev);
	if (ret)
		return ret;
	return 1;
}

/* NAME's text, made safe for both outputs (the reader refuses others). */
static void name_text(const uint64_t *p, char *out, bool json)
{
	const unsigned char *s = (const unsigned char *)&p[1];
	uint32_t i, o = 0;

	for (i = 0; i < NAME_TEXT && s[i]; i++) {
		unsigned char c = s[i];

		if (c < 0x20 || c > 0x7e)
			c = '?';
		if (json && (c == '"' || c == '\\'))
			out[o++] = '\\';
		out[o++] = (char)c;
	}
	out[o] = '\0';
}

int kvc_rec_format(const struct kvc_rec_event *ev, uint64_t index, bool json,
		   char *buf, uint32_t size)
{
	const char *name;
	char kb[24], text[2 * NAME_TEXT + 1];
	uint32_t kind, i;
	int len, n;

	if (!ev || !buf || !size)
		return kvc_err(-EINVAL, "trace: format: no event or no buffer");
	kind = ev->kind;
	name = kvc_rec_kind_name(kind);
	if (!name) {
		snprintf(kb, sizeof(kb), "kind_%u", kind);
		name = kb;
	}
	if (json)
		len = snprintf(
			buf, size,
			"{\"i\":%llu,\"t_ns\":%llu,\"step\":%u,\"kind\":\"%s\"",
			(unsigned long long)index, (unsigned long long)ev->t_ns,
			ev->step, name);
	else
		len = snprintf(buf, size, "#%llu step %u %s",
			       (unsigned long long)index, ev->step, name);
	if (len < 0 || (uint32_t)len >= size)
		goto too_small;

	if (kind == KVC_REC_NAME) {
		name_text(ev->p, text, json);
		if (json)
			n = snprintf(buf + len, size - len,
				     ",\"what\":\"%s\",\"text\":\"%s\"",
				     name_what(ev->p[0]), text);
		else
			n = snprintf(buf + len, size - len,
				     " what=%s text=\"%s\"",
				     name_what(ev->p[0]), text);
		if (n < 0 || (uint32_t)n >= size - len)
			goto too_small;
		len += n;
	}
	for (i = 0; i < KVC_REC_PAYLOAD && kind != KVC_REC_NAME; i++) {
		const char *field = NULL;
		char word[24], fb[8];

		if (kind < KVC_REC_KIND_MAX && kind_names[kind])
			field = field_names[kind][i];
		else if (ev->p[i])
			field = fb;
		if (!field)
			continue;
		if (field == fb)
			snprintf(fb, sizeof(fb), "p%u", i);
		/* The errno of a failed alloc is negative. */
		if (kind == KVC_REC_ALLOC_FAIL && i == 2)
			snprintf(word, sizeof(word), "%lld",
				 (long long)(int64_t)ev->p[i]);
		else
			snprintf(word, sizeof(word), "%llu",
				 (unsigned long long)ev->p[i]);
		if (json)
			n = snprintf(buf + len, size - len, ",\"%s\":%s", field,
				     word);
		else
			n = snprintf(buf + len, size - len, " %s=%s", field,
				     word);
		if (n < 0 || (uint32_t)n >= size - len)
			goto too_small;
		len += n;
	}
	if (json) {
		if ((uint32_t)len + 1 >= size)
			goto too_small;
		buf[len++] = '}';
		buf[len] = '\0';
	}
	return len;

too_small:
	buf[0] = '\0';
	return kvc_err(-ENOSPC, "trace: format: %u bytes are not enough", size);
}
