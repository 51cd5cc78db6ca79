/* SPDX-License-Identifier: MIT */
/*
 * Event traces: what a pool and the runtime above it did, one fixed-size
 * record per event, written off the hot path (buffered, flushed through
 * io_uring) and read back by a hardened reader for `kvcctl trace dump` and
 * `kvcctl replay`.
 *
 * File layout: a 64-byte &struct kvc_rec_header, then 64-byte events
 * (&struct kvc_rec_event), little-endian. The first events are the
 * configuration (%KVC_REC_CONFIG, %KVC_REC_SHAPE, %KVC_REC_NAME); a
 * snapshot (%KVC_REC_SNAPSHOT and its %KVC_REC_SNAP_CHUNK and
 * %KVC_REC_SNAP_BLOCK records) follows where recording starts on a pool
 * that already holds blocks, and closes the trace before %KVC_REC_END.
 */
#ifndef KVC_RECORD_H
#define KVC_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** KVC_REC_MAGIC - First 8 bytes of a trace: "KVCTRACE". */
#define KVC_REC_MAGIC "KVCTRACE"
/** KVC_REC_VERSION - Format version; a reader refuses any other. */
#define KVC_REC_VERSION 1u
/** KVC_REC_PAYLOAD - 64-bit payload words per event. */
#define KVC_REC_PAYLOAD 6

/**
 * struct kvc_rec_header - The first 64 bytes of a trace.
 * @magic: %KVC_REC_MAGIC, not NUL-terminated.
 * @version: %KVC_REC_VERSION.
 * @header_bytes: 64.
 * @event_bytes: 64.
 * @flags: 0 (readers refuse unknown bits).
 * @created_ns: CLOCK_REALTIME of the start, in ns.
 * @reserved: zero.
 */
struct kvc_rec_header {
	char magic[8];
	uint32_t version;
	uint32_t header_bytes;
	uint32_t event_bytes;
	uint32_t flags;
	uint64_t created_ns;
	uint8_t reserved[32];
};

/**
 * enum kvc_rec_kind - What an event says; p[] is its payload.
 *
 * Markers and configuration:
 * @KVC_REC_CONFIG: the pool: p0 block bytes, p1 chunk bytes, p2 blocks
 *                  total, p3 empty chunks kept, p4 placement, p5 chunks
 *                  mappable at most (the mapped-bytes cap in chunks).
 * @KVC_REC_SHAPE: the model: p0 layers, p1 KV heads, p2 head dim, p3
 *                 tokens per block, p4 dtype (&enum kvc_dtype), p5 query
 *                 heads.
 * @KVC_REC_NAME: text: p0 what it names (%KVC_REC_NAME_POLICY,
 *                %KVC_REC_NAME_POOL, %KVC_REC_NAME_BACKEND), p1..p5 up
 *                to 40 bytes of text, NUL-padded.
 * @KVC_REC_STEP: an iteration starts: p0 the step number (also in
 *                @step of this and every later event).
 * @KVC_REC_SAMPLE: a ladder sample: p0 logical, p1 live, p2 held, p3
 *                  mapped, p4 parked, p5 reservation (bytes).
 * @KVC_REC_SNAPSHOT: a state dump follows: p0 mapped chunks, p1 live
 *                    blocks; then p0 %KVC_REC_SNAP_CHUNK and p1
 *                    %KVC_REC_SNAP_BLOCK events.
 * @KVC_REC_SNAP_CHUNK: p0 a mapped chunk.
 * @KVC_REC_SNAP_BLOCK: p0 a live block, p1 its owner tag.
 * @KVC_REC_END: the last event: p0 events written before it, p1 events
 *               lost (the writer could not keep up or failed).
 *
 * Request level (logical replay):
 * @KVC_REC_ARRIVE: p0 sequence id, p1 prompt tokens, p2 tokens to
 *                  generate, p3 arrival time in ns from the trace start.
 * @KVC_REC_APPEND: p0 sequence, p1 tokens appended, p2 tokens after.
 * @KVC_REC_COMPRESS: p0 sequence, p1 KVs before, p2 KVs after, p3 blocks
 *                    freed.
 * @KVC_REC_PREEMPT: p0 sequence, p1 its blocks freed.
 * @KVC_REC_FINISH: p0 sequence, p1 final tokens.
 *
 * Allocator level (exact replay); a call event precedes the per-block
 * events it caused:
 * @KVC_REC_ALLOC: a kvc_pool_alloc() that succeeded: p0 blocks; p0
 *                 %KVC_REC_BLK_ALLOC events follow.
 * @KVC_REC_BLK_ALLOC: p0 a block handed out (owner tag 0).
 * @KVC_REC_ALLOC_FAIL: a kvc_pool_alloc() that failed: p0 blocks wanted,
 *                      p1 free blocks in mapped chunks, p2 the -errno.
 * @KVC_REC_FREE: a free that succeeded: p0 blocks, p1 the fence's
 *                sequence number (0: unfenced); p0 %KVC_REC_BLK_FREE
 *                follow (free requested: the block is free at once).
 * @KVC_REC_BLK_FREE: p0 a block freed.
 * @KVC_REC_FREE_DONE: fences completed: p0 every fence up to this
 *                     sequence number is done (their chunks may go).
 * @KVC_REC_OWNER: p0 block, p1 its new owner tag.
 * @KVC_REC_MOVE: compaction moved a block: p0 from, p1 to, p2 owner.
 * @KVC_REC_CHUNK_MAP: p0 chunk mapped, p1 ns the backend took.
 * @KVC_REC_CHUNK_UNMAP: p0 chunk unmapped, p1 ns the backend took.
 * @KVC_REC_COMPACT: a compaction starts: p0 byte budget, p1 chunk
 *                   budget, p2 1 for a proactive tick; its moves, map and
 *                   unmap events follow.
 * @KVC_REC_KIND_MAX: one past the last kind.
 */
enum kvc_rec_kind {
	KVC_REC_CONFIG = 1,
	KVC_REC_SHAPE = 2,
	KVC_REC_NAME = 3,
	KVC_REC_STEP = 4,
	KVC_REC_SAMPLE = 5,
	KVC_REC_SNAPSHOT = 6,
	KVC_REC_SNAP_CHUNK = 7,
	KVC_REC_SNAP_BLOCK = 8,
	KVC_REC_END = 9,
	KVC_REC_ARRIVE = 16,
	KVC_REC_APPEND = 17,
	KVC_REC_COMPRESS = 18,
	KVC_REC_PREEMPT = 19,
	KVC_REC_FINISH = 20,
	KVC_REC_ALLOC = 32,
	KVC_REC_BLK_ALLOC = 33,
	KVC_REC_ALLOC_FAIL = 34,
	KVC_REC_FREE = 35,
	KVC_REC_BLK_FREE = 36,
	KVC_REC_FREE_DONE = 37,
	KVC_REC_OWNER = 38,
	KVC_REC_MOVE = 39,
	KVC_REC_CHUNK_MAP = 40,
	KVC_REC_CHUNK_UNMAP = 41,
	KVC_REC_COMPACT = 42,
	KVC_REC_KIND_MAX = 43,
};

/* What a %KVC_REC_NAME event names (its p0). */
#define KVC_REC_NAME_POLICY 1u
#define KVC_REC_NAME_POOL 2u
#define KVC_REC_NAME_BACKEND 3u

/**
 * struct kvc_rec_event - One event (64 bytes).
 * @t_ns: CLOCK_MONOTONIC ns since the recorder opened.
 * @step: the step number of the latest %KVC_REC_STEP (0 before any).
 * @kind: &enum kvc_rec_kind.
 * @flags: 0.
 * @p: the payload, as the kind says; unused words are 0.
 */
struct kvc_rec_event {
	uint64_t t_ns;
	uint32_t step;
	uint16_t kind;
	uint16_t flags;
	uint64_t p[KVC_REC_PAYLOAD];
};

struct kvc_recorder;

/**
 * struct kvc_recorder_params - How to record.
 * @buffer_bytes: bytes of each of the two buffers events gather in before
 *                a flush (rounded to whole events; 0 = 1 MiB; at least
 *                one event).
 * @sync_io: write with pwrite() in the caller's thread instead of
 *           io_uring (for tests of the fallback; it is also taken, with
 *           a notice, when io_uring cannot be set up).
 */
struct kvc_recorder_params {
	uint64_t buffer_bytes;
	bool sync_io;
};

/**
 * kvc_recorder_open() - Create a trace file and start recording.
 * @path: the file; created (mode 0644) or truncated.
 * @params: NULL for the defaults.
 * @out: set to the recorder.
 *
 * Return: 0; -errno of the open; -EINVAL for bad arguments; -ENOMEM.
 */
int kvc_recorder_open(const char *path,
		      const struct kvc_recorder_params *params,
		      struct kvc_recorder **out);

/**
 * kvc_recorder_emit() - Record one event.
 * @rec: the recorder, or NULL (then nothing happens).
 * @kind: the event's kind.
 * @p: its payload, %KVC_REC_PAYLOAD words (NULL: zeros).
 *
 * Copies the event into the current buffer; a full buffer is handed to
 * the kernel and the other one used while it is written. Never blocks on
 * the disk unless both buffers are in flight. Thread-safe. A write error
 * is kept and returned by every later call and by kvc_recorder_close();
 * events are then counted as lost.
 *
 * Return: 0, or the first write error met.
 */
int kvc_recorder_emit(struct kvc_recorder *rec, enum kvc_rec_kind kind,
		      const uint64_t *p);

/**
 * kvc_recorder_step() - Record a step marker and make @step current.
 * @rec: the recorder, or NULL.
 * @step: the step number.
 *
 * Return: as kvc_recorder_emit().
 */
int kvc_recorder_step(struct kvc_recorder *rec, uint32_t step);

/**
 * kvc_recorder_name() - Record a %KVC_REC_NAME event.
 * @rec: the recorder, or NULL.
 * @what: %KVC_REC_NAME_POLICY, %KVC_REC_NAME_POOL or %KVC_REC_NAME_BACKEND.
 * @text: the text (cut at 40 bytes).
 *
 * Return: as kvc_recorder_emit().
 */
int kvc_recorder_name(struct kvc_recorder *rec, uint32_t what,
		      const char *text);

/**
 * kvc_recorder_flush() - Write every buffered event and wait for it.
 * @rec: the recorder.
 *
 * Return: 0, or the first write error.
 */
int kvc_recorder_flush(struct kvc_recorder *rec);

/**
 * kvc_recorder_close() - Write %KVC_REC_END, flush, close, free.
 * @rec: the recorder, or NULL.
 *
 * Detach it from every pool first (kvc_pool_set_recorder(pool, NULL)),
 * which also records the closing snapshot.
 *
 * Return: 0, or the first write error (the recorder is freed anyway).
 */
int kvc_recorder_close(struct kvc_recorder *rec);

/**
 * struct kvc_recorder_stats - What a recorder did.
 * @events: events recorded.
 * @lost: events dropped after a write error.
 * @bytes: bytes written to the file so far.
 * @flushes: buffers handed to the kernel.
 * @waits: times an emit waited for a buffer still in flight.
 * @uring: whether io_uring carries the writes.
 */
struct kvc_recorder_stats {
	uint64_t events;
	uint64_t lost;
	uint64_t bytes;
	uint64_t flushes;
	uint64_t waits;
	bool uring;
};

/**
 * kvc_recorder_get_stats() - Copy a recorder's counters.
 * @rec: the recorder.
 * @out: filled.
 */
void kvc_recorder_get_stats(struct kvc_recorder *rec,
			    struct kvc_recorder_stats *out);

struct kvc_rec_reader;

/**
 * kvc_rec_reader_open() - Open a trace and check its header.
 * @path: the file.
 * @out: set to the reader.
 *
 * Return: 0; -errno of the open; -EPROTO with a message for a file that
 * is not a trace, another version, header or event size, unknown flags,
 * or a size that is not a whole number of events; -ENOMEM.
 */
int kvc_rec_reader_open(const char *path, struct kvc_rec_reader **out);

/**
 * kvc_rec_next() - Read the next event, checked.
 * @r: the reader.
 * @ev: filled.
 *
 * Each event is checked on its own and against the trace so far: a
 * known kind, zero flags, time and step not going backwards, the
 * configuration first and once, block and chunk ids below the configured
 * counts, counts that the events after them honour (an %KVC_REC_ALLOC of
 * n is followed by exactly n %KVC_REC_BLK_ALLOC, a snapshot by exactly
 * the chunks and blocks it announces, none beyond the configured totals),
 * and NAME text that is printable.
 *
 * Return: 1 with an event; 0 at a clean end (after %KVC_REC_END); -EPROTO
 * with a message naming the event's index for a bad event or a trace
 * that stops before %KVC_REC_END (truncated); -errno of a read.
 */
int kvc_rec_next(struct kvc_rec_reader *r, struct kvc_rec_event *ev);

/**
 * kvc_rec_reader_index() - Index of the last event read (0-based).
 * @r: the reader.
 *
 * Return: the index.
 */
uint64_t kvc_rec_reader_index(const struct kvc_rec_reader *r);

/**
 * kvc_rec_reader_header() - The trace's header.
 * @r: the reader.
 *
 * Return: the header as read.
 */
const struct kvc_rec_header *
kvc_rec_reader_header(const struct kvc_rec_reader *r);

/**
 * kvc_rec_reader_close() - Close and free.
 * @r: the reader, or NULL.
 */
void kvc_rec_reader_close(struct kvc_rec_reader *r);

/**
 * kvc_rec_kind_name() - Name of a kind, as `kvcctl trace dump` prints it.
 * @kind: the kind.
 *
 * Return: "alloc", "blk_alloc", ..., or NULL for an unknown kind.
 */
const char *kvc_rec_kind_name(uint32_t kind);

/**
 * kvc_rec_format() - An event as one line of text or JSON.
 * @ev: the event.
 * @index: its index in the trace.
 * @json: JSONL (one object) instead of text.
 * @buf: receives the line, NUL-terminated, without a newline.
 * @size: bytes of @buf (512 is always enough).
 *
 * Payload words are named by kind (e.g. "block", "owner", "seq").
 *
 * Return: the length written, -EINVAL, or -ENOSPC when @size is too small.
 */
int kvc_rec_format(const struct kvc_rec_event *ev, uint64_t index, bool json,
		   char *buf, uint32_t size);

#ifdef __cplusplus
}
#endif
#endif /* KVC_RECORD_H */
