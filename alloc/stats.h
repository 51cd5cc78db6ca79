/* SPDX-License-Identifier: MIT */
/* Publishing a pool's counters in a shared-memory page (writer side). */
#ifndef KVC_ALLOC_STATS_H
#define KVC_ALLOC_STATS_H

#include <kvc/stats.h>

struct kvc_stats_pub;

/**
 * kvc_stats_pub_open() - Create this process's next stats page.
 * @backend: backend name to record.
 * @device: device ordinal, -1 for host.
 * @name: pool label, or NULL.
 * @out: set to the publisher.
 *
 * The page is created mode 0600, exclusively, in kvc_stats_dir().
 *
 * Return: 0 or -errno.
 */
int kvc_stats_pub_open(const char *backend, int device, const char *name,
		       struct kvc_stats_pub **out);

/**
 * kvc_stats_pub_update() - Publish counters under the seqlock.
 * @pub: the publisher, or NULL (then nothing happens).
 * @stats: the counters.
 * @fill_hist: %KVC_FILL_BUCKETS chunk counts.
 *
 * The caller serialises updates (the pool lock).
 */
void kvc_stats_pub_update(struct kvc_stats_pub *pub,
			  const struct kvc_pool_stats *stats,
			  const uint64_t *fill_hist);

/**
 * kvc_stats_pub_sample() - Publish a ladder sample under the seqlock.
 * @pub: the publisher, or NULL (then nothing happens).
 * @ladder: the sample, whole.
 * @sample: the same, compact, for the ring.
 * @peaks: the peaks and means including it.
 *
 * Writes the one new ring slot, not the whole ring: a sample costs a few
 * hundred bytes of copying. The caller serialises updates (the pool lock).
 */
void kvc_stats_pub_sample(struct kvc_stats_pub *pub,
			  const struct kvc_ladder *ladder,
			  const struct kvc_stats_sample *sample,
			  const struct kvc_ladder_peaks *peaks);

/**
 * kvc_stats_pub_path() - Path of the page.
 * @pub: the publisher, or NULL.
 *
 * Return: the path, or NULL.
 */
const char *kvc_stats_pub_path(const struct kvc_stats_pub *pub);

/**
 * kvc_stats_pub_close() - Unmap and remove the page.
 * @pub: the publisher, or NULL.
 */
void kvc_stats_pub_close(struct kvc_stats_pub *pub);

#endif /* KVC_ALLOC_STATS_H */
