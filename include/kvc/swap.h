/* SPDX-License-Identifier: MIT */
/*
 * The swap tier: the KV blocks of preempted sequences written to a file
 * through io_uring, checksummed per block, indexed by a journal that
 * survives a crash, and read back bit-exact or refused.
 *
 * Two files: PATH holds the data, cut into slots of the cache's block
 * size rounded up to the I/O alignment; PATH.idx is the journal that
 * says which slots hold which sequence. Space inside PATH is managed like
 * the pool manages chunks: extents of slots are taken and given back, up
 * to a hard cap, and freed space is reused lowest address first.
 *
 * Durability: a sequence's record reaches the journal only after its data
 * is durable (the data is written, then fdatasync'ed, then the record is
 * appended and fdatasync'ed). So after a crash, kvc_swap_open() on the
 * same path recovers every sequence whose kvc_swap_out() returned 0, and
 * ignores data that no complete record points to.
 *
 * A swap is bound to one cache (its shape, its backend); close it before
 * the cache is destroyed. Not thread-safe: one thread at a time.
 */
#ifndef KVC_SWAP_H
#define KVC_SWAP_H

#include <stdbool.h>
#include <stdint.h>

#include <kvc/kv.h>

#ifdef __cplusplus
extern "C" {
#endif

struct kvc_swap;

/* Flags of struct kvc_swap_params. */
/** KVC_SWAP_NO_URING - Use pread/pwrite even where io_uring works. */
#define KVC_SWAP_NO_URING (1u << 0)
/** KVC_SWAP_NO_DIRECT - Buffered I/O even where O_DIRECT works. */
#define KVC_SWAP_NO_DIRECT (1u << 1)
/** KVC_SWAP_FRESH - Discard what the files hold instead of recovering it. */
#define KVC_SWAP_FRESH (1u << 2)
/** KVC_SWAP_QUIET - No notice on stderr when a fallback is taken. */
#define KVC_SWAP_QUIET (1u << 3)
/**
 * KVC_SWAP_ZERO_COPY - On a host cache, move blocks straight between the
 * chunks and the file (no staging copy) where blocks fill whole aligned
 * slots. Off by default: pinning shared-memory pages on every I/O costs
 * more than the copy into the registered staging buffer.
 */
#define KVC_SWAP_ZERO_COPY (1u << 4)

/**
 * struct kvc_swap_params - How to open a swap.
 * @path: the data file; the journal is @path with ".idx" appended. Both
 *        are created (mode 0600) when missing.
 * @cap_bytes: hard cap on the data file's size in bytes, rounded down to
 *             whole slots; at least one block's slot.
 * @queue_depth: I/Os in flight at once: 1 to 4096 (default 32).
 * @io_bytes: the most bytes one I/O moves: a multiple of 4096, 4 KiB to
 *            64 MiB (default 1 MiB). Adjacent slots of one sequence are
 *            moved in I/Os of up to this size.
 * @flags: %KVC_SWAP_NO_URING, %KVC_SWAP_NO_DIRECT, %KVC_SWAP_FRESH,
 *         %KVC_SWAP_QUIET, %KVC_SWAP_ZERO_COPY.
 */
struct kvc_swap_params {
	const char *path;
	uint64_t cap_bytes;
	uint32_t queue_depth;
	uint32_t io_bytes;
	uint32_t flags;
};

/**
 * kvc_swap_params_init() - Defaults: no path, a 1 GiB cap, queue depth 32,
 * I/Os of 1 MiB, no flags.
 * @p: filled.
 */
void kvc_swap_params_init(struct kvc_swap_params *p);

/**
 * kvc_swap_open() - Open (or create) a swap for a cache.
 * @p: the parameters.
 * @kv: the cache whose sequences go out and come back in; it must outlive
 *      the swap.
 * @out: set to the swap.
 *
 * An existing journal is replayed: every sequence it records as swapped
 * out is there again (see kvc_swap_keys()), the slots no complete record
 * points to are free, and a torn record at its end (a crash while it was
 * written) is cut off. The journal is then rewritten with only what is
 * live. O_DIRECT is used where the file system takes it, io_uring where
 * the kernel allows it; each fallback prints one notice on stderr (unless
 * %KVC_SWAP_QUIET).
 *
 * Return: 0; -EINVAL for bad parameters or a journal written for another
 * model shape or slot size, or one that is not a kvc swap journal;
 * -ENOSPC when the cap is below what the recovered sequences hold;
 * -ENOMEM; the file system's -errno for a file that cannot be opened,
 * read or written (with a message naming it).
 */
int kvc_swap_open(const struct kvc_swap_params *p, struct kvc_kv *kv,
		  struct kvc_swap **out);

/**
 * kvc_swap_close() - Close a swap. What it holds stays in the files, to be
 * recovered by the next kvc_swap_open() without %KVC_SWAP_FRESH.
 * @sw: the swap, or NULL.
 */
void kvc_swap_close(struct kvc_swap *sw);

/**
 * kvc_swap_out() - Write a sequence to the swap, durably.
 * @sw: the swap.
 * @seq: a sequence of the swap's cache; it is left as it was (free it
 *       with kvc_seq_destroy() to give its blocks back to the pool).
 * @key: the caller's name for it, not in the swap already.
 *
 * Every block of every (layer, KV head) goes out with the eviction
 * metric and position of each slot, and a crc32c per block; then the
 * data is made durable, then the journal records the sequence. On the
 * cuda backend blocks go through a pinned staging buffer, the device
 * copies of one piece overlapping the file writes of the previous one.
 *
 * Return: 0; -EINVAL (bad arguments, a sequence of another cache);
 * -EEXIST when @key is in the swap; -ENOSPC when the cap is reached or
 * the file system is full (-EFBIG past the file-size limit); -EIO or the
 * file system's error when a write or a sync fails; the driver's error
 * on the cuda backend. On error nothing is recorded, the space taken is
 * free again, and @seq is untouched.
 */
int kvc_swap_out(struct kvc_swap *sw, struct kvc_seq *seq, uint64_t key);

/**
 * kvc_swap_in() - Read a sequence back into the cache.
 * @sw: the swap.
 * @key: a key in the swap.
 * @out: set to a new sequence of the swap's cache with the same tokens,
 *       per-head lengths, K, V, metrics and positions as the one that was
 *       swapped out.
 *
 * Every block's checksum is verified before the sequence is handed out;
 * then its record is dropped and its slots are free.
 *
 * Return: 0; -ENOENT for an unknown key; -EINVAL; -ENOMEM when the pool
 * cannot hold the sequence (the entry stays); -EBADMSG when a block's
 * data does not match its checksum (nothing is created, the entry stays,
 * marked bad: it is never handed out, only dropped); -EIO or the file
 * system's error for a failed read; the driver's error on the cuda
 * backend.
 */
int kvc_swap_in(struct kvc_swap *sw, uint64_t key, struct kvc_seq **out);

/**
 * kvc_swap_drop() - Forget a sequence and free its space.
 * @sw: the swap.
 * @key: a key in the swap.
 *
 * Return: 0, -ENOENT, or the file system's error when the journal cannot
 * be written (the entry stays).
 */
int kvc_swap_drop(struct kvc_swap *sw, uint64_t key);

/**
 * struct kvc_swap_entry - One sequence in the swap.
 * @key: its key.
 * @tokens: its tokens (positions 0 .. @tokens - 1).
 * @blocks: KV blocks it holds over all its (layer, KV head) tables.
 * @bytes: file bytes it takes (data and metadata slots).
 * @bad: a checksum failed on swap-in: it can only be dropped.
 */
struct kvc_swap_entry {
	uint64_t key;
	uint32_t tokens;
	uint64_t blocks;
	uint64_t bytes;
	bool bad;
};

/**
 * kvc_swap_lookup() - What the swap holds under a key.
 * @sw: the swap.
 * @key: the key.
 * @e: filled.
 *
 * Return: 0 or -ENOENT.
 */
int kvc_swap_lookup(const struct kvc_swap *sw, uint64_t key,
		    struct kvc_swap_entry *e);

/**
 * kvc_swap_keys() - The keys the swap holds, in the order they went out.
 * @sw: the swap.
 * @keys: filled with up to @max keys (may be NULL when @max is 0).
 * @max: room in @keys.
 *
 * Return: the number of keys held (which may exceed @max).
 */
uint64_t kvc_swap_keys(const struct kvc_swap *sw, uint64_t *keys, uint64_t max);

/**
 * kvc_swap_locate() - Where one block of a swapped sequence lies.
 * @sw: the swap.
 * @key: the sequence.
 * @layer: the layer.
 * @head: the KV head.
 * @block: the logical block of that (layer, head).
 * @offset: set to its byte offset in the data file.
 * @crc: set to its crc32c (K and V bytes, then its slots' metadata).
 *
 * Return: 0, -ENOENT for an unknown key or a block the head does not
 * hold.
 */
int kvc_swap_locate(const struct kvc_swap *sw, uint64_t key, uint32_t layer,
		    uint32_t head, uint32_t block, uint64_t *offset,
		    uint32_t *crc);

/**
 * struct kvc_swap_stats - What a swap did and holds.
 * @engine: "io_uring" or "pread".
 * @direct: O_DIRECT is in use.
 * @zero_copy: blocks move straight between the chunks and the file.
 * @slot_bytes: bytes of one slot.
 * @cap_bytes: the cap, in whole slots.
 * @file_bytes: the data file's size (its highest slot ever used).
 * @used_bytes: bytes of slots held by entries.
 * @entries: sequences held.
 * @recovered: sequences found by kvc_swap_open() in the journal.
 * @torn_bytes: journal bytes cut off at open (a record torn by a crash).
 * @out_seqs: successful kvc_swap_out() calls.
 * @in_seqs: successful kvc_swap_in() calls.
 * @out_bytes: bytes those wrote to the data file.
 * @in_bytes: bytes those read from it.
 * @out_ns: time spent in successful kvc_swap_out() calls, syncs included.
 * @in_ns: time spent in successful kvc_swap_in() calls.
 * @checksum_failures: blocks whose data did not match their checksum.
 * @io_errors: failed reads, writes and syncs.
 * @cap_refusals: kvc_swap_out() calls refused for the cap or a full
 *                file system.
 */
struct kvc_swap_stats {
	const char *engine;
	bool direct;
	bool zero_copy;
	uint64_t slot_bytes;
	uint64_t cap_bytes;
	uint64_t file_bytes;
	uint64_t used_bytes;
	uint64_t entries;
	uint64_t recovered;
	uint64_t torn_bytes;
	uint64_t out_seqs;
	uint64_t in_seqs;
	uint64_t out_bytes;
	uint64_t in_bytes;
	uint64_t out_ns;
	uint64_t in_ns;
	uint64_t checksum_failures;
	uint64_t io_errors;
	uint64_t cap_refusals;
};

/**
 * kvc_swap_get_stats() - Read a swap's figures.
 * @sw: the swap.
 * @st: filled.
 */
void kvc_swap_get_stats(const struct kvc_swap *sw, struct kvc_swap_stats *st);

/**
 * kvc_swap_check() - Check every invariant of a swap: each entry's
 * extents lie inside the cap and are held by it alone, the extent map's
 * own invariants, the used bytes are the sum of the entries'.
 * @sw: the swap.
 *
 * Return: 0, or -EFAULT with a message.
 */
int kvc_swap_check(const struct kvc_swap *sw);

#ifdef __cplusplus
}
#endif
#endif /* KVC_SWAP_H */
