/* SPDX-License-Identifier: MIT */
/*
 * The recorder's inside door, for the pool's event hooks: a group of
 * events (a call and its per-block records, a snapshot) is emitted under
 * one hold of the recorder's lock, so that no other thread's event can
 * land between a count and the records it announces.
 */
#ifndef KVC_ALLOC_RECORDER_H
#define KVC_ALLOC_RECORDER_H

#include <stdint.h>

#include <kvc/record.h>

/**
 * kvc_recorder_lock() - Hold the recorder for a group of events.
 * @rec: the recorder.
 *
 * The events emitted until kvc_recorder_unlock() carry one time stamp,
 * taken here: they are one call's.
 */
void kvc_recorder_lock(struct kvc_recorder *rec);

/**
 * kvc_recorder_unlock() - End a group.
 * @rec: the recorder.
 */
void kvc_recorder_unlock(struct kvc_recorder *rec);

/**
 * kvc_recorder_emit_locked() - kvc_recorder_emit() inside a group.
 * @rec: the recorder, held.
 * @kind: the event's kind.
 * @p: its payload (NULL: zeros).
 *
 * Return: 0, or the first write error.
 */
int kvc_recorder_emit_locked(struct kvc_recorder *rec, enum kvc_rec_kind kind,
			     const uint64_t *p);

/* One event with up to three payload words, the rest zero. */
static inline int kvc_rec3(struct kvc_recorder *rec, enum kvc_rec_kind kind,
			   uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t p[KVC_REC_PAYLOAD] = { a, b, c };

	return kvc_recorder_emit(rec, kind, p);
}

#endif /* KVC_ALLOC_RECORDER_H */
