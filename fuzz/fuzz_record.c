// SPDX-License-Identifier: MIT
/*
 * Fuzz target of the trace reader: the input is written to an in-memory
 * file and read back event by event, each event formatted as text and as
 * JSON. A refusal must be -EPROTO with a message; an accepted trace must
 * keep the promises the reader makes (time and step never go back, a
 * count is followed by exactly its per-block events, END comes last).
 * With -DKVC_FUZZ_MAIN it is a plain program that runs the files given
 * as arguments, for compilers without libFuzzer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <kvc/error.h>
#include <kvc/record.h>

static int memfd = -1;
static char memfd_path[64];

/* What an accepted trace must look like, checked from outside. */
static void check_event(const struct kvc_rec_event *ev,
			const struct kvc_rec_event *prev, uint64_t *want,
			uint16_t *want_kind)
{
	char buf[512];

	if (kvc_rec_format(ev, 0, false, buf, sizeof(buf)) < 0 ||
	    kvc_rec_format(ev, UINT64_MAX, true, buf, sizeof(buf)) < 0)
		abort();
	if (!kvc_rec_kind_name(ev->kind) || ev->flags)
		abort();
	if (prev && (ev->t_ns < prev->t_ns || ev->step < prev->step))
		abort();
	if (*want) {
		if (ev->kind != *want_kind)
			abort();
		(*want)--;
		return;
	}
	if (ev->kind == KVC_REC_ALLOC || ev->kind == KVC_REC_FREE) {
		*want = ev->p[0];
		*want_kind = ev->kind == KVC_REC_ALLOC ? KVC_REC_BLK_ALLOC :
							 KVC_REC_BLK_FREE;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvc_rec_event ev, prev;
	struct kvc_rec_reader *r;
	uint64_t want = 0, n = 0;
	uint16_t want_kind = 0;
	int ret;

	if (memfd < 0) {
		memfd = memfd_create("kvc-fuzz-trace", 0);
		if (memfd < 0)
			abort();
		snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d",
			 memfd);
	}
	if (ftruncate(memfd, 0) ||
	    (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
		abort();
	ret = kvc_rec_reader_open(memfd_path, &r);
	if (ret) {
		if (ret != -EPROTO || !kvc_last_error()[0])
			abort();
		return 0;
	}
	while ((ret = kvc_rec_next(r, &ev)) == 1) {
		check_event(&ev, n ? &prev : NULL, &want, &want_kind);
		if (kvc_rec_reader_index(r) != n)
			abort();
		prev = ev;
		n++;
	}
	if (ret < 0) {
		if (ret != -EPROTO || !kvc_last_error()[0])
			abort();
		/* A refusal sticks. */
		if (kvc_rec_next(r, &ev) != ret)
			abort();
	} else if (!n || prev.kind != KVC_REC_END || want) {
		abort();
	}
	kvc_rec_reader_close(r);
	return 0;
}

#include "fuzz_main.h"
