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
#define KVC_STATS_VERSION 2u
/** KVC_STATS_DIR - Where pages live; the KVC_STATS_DIR variable overrides. */
#define KVC_STATS_DIR "/dev/shm"
/** KVC_STATS_PREFIX - File names are "kvc.<pid>.<n>". */
#define KVC_STATS_PREFIX "kvc."

/**
 * struct kvc_stats_page - Layout of a stats page (one 4 KiB page).
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
 * by the caller's user with mode 0600, is smaller or larger than a page,
 * or carries another magic, version or layout size.
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
