/* SPDX-License-Identifier: MIT */
/*
 * The swap's journal: an append-only file of checksummed records, each
 * made durable before the append returns, replayed in order at open. A
 * record torn by a crash (short, or failing its checksum, or out of
 * sequence) ends the replay and is cut off: everything before it stands.
 *
 * Record framing (little-endian): a 24-byte &struct kvc_jrec_head, then
 * @len payload bytes, then zero padding to a multiple of 8.
 */
#ifndef KVC_SWAP_JOURNAL_H
#define KVC_SWAP_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

/** KVC_JREC_MAGIC - "KVJR" read as a little-endian word. */
#define KVC_JREC_MAGIC 0x524a564bu
/** KVC_JREC_MAX - The largest payload: 256 MiB. */
#define KVC_JREC_MAX (256u << 20)

/**
 * struct kvc_jrec_head - The head of one record.
 * @magic: %KVC_JREC_MAGIC.
 * @kind: what the payload is (the journal's user decides; not 0).
 * @len: payload bytes, at most %KVC_JREC_MAX.
 * @crc: crc32c of this head (with @crc 0) then of the payload.
 * @seqno: 1 for the first record of the file, then one more per record.
 */
struct kvc_jrec_head {
	uint32_t magic;
	uint32_t kind;
	uint32_t len;
	uint32_t crc;
	uint64_t seqno;
};

/**
 * struct kvc_jrec - A record to write, for kvc_journal_rewrite().
 * @kind: its kind.
 * @payload: its payload.
 * @len: payload bytes.
 */
struct kvc_jrec {
	uint32_t kind;
	const void *payload;
	uint32_t len;
};

/**
 * kvc_journal_rec_bytes() - File bytes of a record: head, payload, and the
 * padding to 8 bytes.
 * @len: payload bytes.
 *
 * Return: the size.
 */
static inline uint64_t kvc_journal_rec_bytes(uint32_t len)
{
	return sizeof(struct kvc_jrec_head) + (((uint64_t)len + 7) & ~7ull);
}

struct kvc_journal;

/**
 * typedef kvc_journal_apply_fn - Called for each record at replay.
 * @arg: the caller's.
 * @kind: the record's kind.
 * @payload: its payload (valid during the call).
 * @len: its length.
 *
 * Return: 0 to go on, or a -errno that fails kvc_journal_open().
 */
typedef int (*kvc_journal_apply_fn)(void *arg, uint32_t kind,
				    const void *payload, uint32_t len);

/**
 * kvc_journal_open() - Open a journal and replay it.
 * @path: the file; created (0600) when missing.
 * @fresh: empty it instead of replaying.
 * @apply: called for each valid record in order (may be NULL).
 * @arg: passed to @apply.
 * @out: set to the journal, positioned after the last valid record.
 *
 * The torn tail, if any, is cut off (truncated and synced) before
 * kvc_journal_open() returns.
 *
 * Return: 0; @apply's error; -EINVAL for a file that holds no valid
 * record and does not start with a record's magic (another file: it is
 * left as it was); -ENOMEM; the file system's -errno with a message
 * naming the file.
 */
int kvc_journal_open(const char *path, bool fresh, kvc_journal_apply_fn apply,
		     void *arg, struct kvc_journal **out);

/**
 * kvc_journal_close() - Close a journal.
 * @j: the journal, or NULL.
 */
void kvc_journal_close(struct kvc_journal *j);

/**
 * kvc_journal_append() - Append one record durably.
 * @j: the journal.
 * @kind: not 0.
 * @payload: the payload (may be NULL when @len is 0).
 * @len: at most %KVC_JREC_MAX.
 *
 * Writes the record, then fdatasync()s the file. On failure the file is
 * cut back to where it was (so a later append follows valid records),
 * and the record does not count.
 *
 * Return: 0, -EINVAL, or the file system's error.
 */
int kvc_journal_append(struct kvc_journal *j, uint32_t kind,
		       const void *payload, uint32_t len);

/**
 * kvc_journal_rewrite() - Replace the whole journal by these records.
 * @j: the journal.
 * @recs: the records, in order.
 * @n: how many.
 *
 * Written to "<path>.tmp", synced, renamed over the journal, and the
 * directory synced: at every moment either the old journal or the new
 * one is whole on disk.
 *
 * Return: 0 (the journal is the new one), or the file system's error
 * (the old one stands).
 */
int kvc_journal_rewrite(struct kvc_journal *j, const struct kvc_jrec *recs,
			uint32_t n);

/**
 * kvc_journal_bytes() - The journal's size.
 * @j: the journal.
 *
 * Return: bytes.
 */
uint64_t kvc_journal_bytes(const struct kvc_journal *j);

/**
 * kvc_journal_records() - Records in the journal.
 * @j: the journal.
 *
 * Return: the count.
 */
uint64_t kvc_journal_records(const struct kvc_journal *j);

/**
 * kvc_journal_torn() - Bytes cut off at open.
 * @j: the journal.
 *
 * Return: bytes (0 when the journal ended with a whole record).
 */
uint64_t kvc_journal_torn(const struct kvc_journal *j);

#endif /* KVC_SWAP_JOURNAL_H */
