/* SPDX-License-Identifier: MIT */
/*
 * The shared-memory stats page each pool publishes, and the reader that
 * `kvcctl stats` uses. Writers update under a seqlock; readers copy and
 * retry so they never see a torn update, and trust nothing in a page until
 * its owner, mode, size, magic and version have been checked.
 */
#ifndef KVC_STATS_H
#define KVC_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <kvc/pool.h>

#ifdef __cplusplus
extern "C" {
#endif

/** KVC_STATS_MAGIC - First 8 bytes of a stats page: "KVCSTAT\0". */
#define KVC_STATS_MAGIC 0x0054415453435654ull
/** KVC_STATS_VERSION - Layout version; bumped on any incompatible change. */
#define KVC_STATS_VERSION 3u
/** KVC_STATS_FILE_BYTES - Size of a page's file; readers refuse others. */
#define KVC_STATS_FILE_BYTES 65536u
/** KVC_STATS_RING - Ladder samples a page keeps, the latest ones. */
#define KVC_STATS_RING 256u
/** KVC_STATS_DIR - Where pages live; the KVC_STATS_DIR variable overrides. */
#define KVC_STATS_DIR "/dev/shm"
/** KVC_STATS_PREFIX - File names are "kvc.<pid>.<n>". */
#define KVC_STATS_PREFIX "kvc."

/**
 * struct kvc_stats_sample - One ladder sample, compact, for trends.
 * @t_ns: CLOCK_MONOTONIC time of the sample.
 * @step: the caller's step number.
 * @logical: &struct kvc_ladder @logical, and so on for the bytes below.
 * @live: KV bytes stored.
 * @held: blocks handed out x block bytes.
 * @mapped: chunks mapped x chunk bytes.
 * @parked: empty mapped chunks x chunk bytes.
 * @reservation: held bytes reserved for tokens to come.
 * @free_mapped: free blocks in partly used chunks x block bytes.
 * @seqs: sequences holding blocks.
 * @preemptions: preemptions so far.
 * @blocks_moved: blocks compaction had moved by then.
 * @backend_map: backend map calls by then.
 * @backend_unmap: backend unmap calls by then.
 * @alloc_failures: failed allocations by then.
 * @unusable_chunk: the unusable index at the chunk order.
 * @pack_ratio: mapped chunks / packed floor.
 * @hole_ratio: llama.cpp's window fragmentation.
 */
struct kvc_stats_sample {
	uint64_t t_ns;
	uint64_t step;
	uint64_t logical;
	uint64_t live;
	uint64_t held;
	uint64_t mapped;
	uint64_t parked;
	uint64_t reservation;
	uint64_t free_mapped;
	uint64_t seqs;
	uint64_t preemptions;
	uint64_t blocks_moved;
	uint64_t backend_map;
	uint64_t backend_unmap;
	uint64_t alloc_failures;
	double unusable_chunk;
	double pack_ratio;
	double hole_ratio;
};

/**
 * struct kvc_stats_page - Layout of a stats page (%KVC_STATS_FILE_BYTES).
 * @magic: %KVC_STATS_MAGIC.
 * @version: %KVC_STATS_VERSION.
 * @page_bytes: sizeof(struct kvc_stats_page), checked by readers.
 * @seq: seqlock sequence: odd while the writer is updating.
 * @pid: the publishing process.
 * @start_time: the process's start time in clock ticks since boot
 *              (/proc/PID/stat field 22), so a reused pid is not mistaken
 *              for the publisher.
 * @device: CUDA device ordinal, or -1 for host.
 * @backend: backend name, NUL-terminated.
 * @name: the pool's label, NUL-terminated.
 * @created_ns: CLOCK_REALTIME_COARSE of creation, in ns.
 * @updated_ns: CLOCK_REALTIME_COARSE of the last update, in ns.
 * @stats: the counters.
 * @fill_hist: mapped chunks by fill (%KVC_FILL_BUCKETS columns).
 * @samples: ladder samples taken so far (kvc_pool_sample()); 0: the
 *           fields below are zero.
 * @ring_head: the ring slot the next sample goes to.
 * @ring_count: samples in the ring, at most %KVC_STATS_RING; the oldest
 *              is at (@ring_head - @ring_count) mod %KVC_STATS_RING.
 * @ladder: the latest sample, whole.
 * @peaks: peaks and means over every sample, the last weighing one step.
 * @ring: the latest samples, compact.
 *
 * The counters are rewritten on every pool operation; the ladder, peaks
 * and ring only when a sample is taken.
 */
struct kvc_stats_page {
	uint64_t magic;
	uint32_t version;
	uint32_t page_bytes;
	uint32_t seq;
	uint32_t pid;
	uint64_t start_time;
	int32_t device;
	uint32_t reserved0;
	char backend[16];
	char name[32];
	uint64_t created_ns;
	uint64_t updated_ns;
	struct kvc_pool_stats stats;
	uint64_t fill_hist[KVC_FILL_BUCKETS];
	uint64_t samples;
	uint32_t ring_head;
	uint32_t ring_count;
	struct kvc_ladder ladder;
	struct kvc_ladder_peaks peaks;
	struct kvc_stats_sample ring[KVC_STATS_RING];
};

/**
 * struct kvc_stats_snapshot - A consistent copy of one page, as read.
 * @path: the page's path.
 * @page: the page's contents.
 * @alive: whether the publishing process still runs (same pid, same start
 *         time); a page whose process is gone is stale.
 * @torn: the process died in the middle of an update, so the counters
 *        may disagree with each other (only ever with @alive false).
 */
struct kvc_stats_snapshot {
	char path[256];
	struct kvc_stats_page page;
	bool alive;
	bool torn;
};

/**
 * kvc_stats_dir() - Directory the pages are published in.
 *
 * Return: $KVC_STATS_DIR when set and not empty, else %KVC_STATS_DIR.
 */
const char *kvc_stats_dir(void);

/**
 * kvc_stats_read() - Read and validate one stats page.
 * @path: the page's path.
 * @snap: filled on success.
 *
 * The page is refused, never trusted, when it is not a regular file owned
 * by the caller's user with mode 0600, is not %KVC_STATS_FILE_BYTES long,
 * or carries another magic, version or layout size, or a ring position
 * out of range.
 *
 * Return: 0; -ENOENT when gone; -EPERM for another user's page, a wrong
 * mode or a symbolic link; -EPROTO for a name that is not a page's, a
 * malformed page, another version, or a pid that disagrees with the name;
 * -EAGAIN when a running writer kept it busy through every retry (a page
 * whose writer died mid-update reads as stale and @torn); -EINVAL for
 * a path that is too long. kvc_last_error() says why.
 */
int kvc_stats_read(const char *path, struct kvc_stats_snapshot *snap);

/**
 * kvc_stats_list() - Read every page in a directory.
 * @dir: the directory, or NULL for kvc_stats_dir().
 * @pid: only pages of this process, or 0 for all.
 * @snaps: set to a malloc'ed array of the pages that read well, sorted by
 *         pid then path; the caller frees it.
 * @n: set to the number of entries.
 * @on_bad: called for each page that is refused (may be NULL), with the
 *          path, the error and the message.
 * @arg: passed to @on_bad.
 *
 * Return: 0, -ENOENT when @dir does not exist, -ENOMEM.
 */
int kvc_stats_list(const char *dir, pid_t pid,
		   struct kvc_stats_snapshot **snaps, uint32_t *n,
		   void (*on_bad)(const char *path, int err, const char *msg,
				  void *arg),
		   void *arg);

/**
 * kvc_stats_remove_stale() - Remove a page whose process is gone.
 * @path: the page.
 *
 * Refuses pages that do not validate or whose process still runs.
 *
 * Return: 0; -EBUSY when the process is alive; an error of
 * kvc_stats_read(); -errno of unlink.
 */
int kvc_stats_remove_stale(const char *path);

#ifdef __cplusplus
}
#endif
#endif /* KVC_STATS_H */
