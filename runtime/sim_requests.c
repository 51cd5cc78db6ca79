// SPDX-License-Identifier: MIT
/*
 * Request streams for the logical replay: from a CSV (trace.c's reader,
 * with an optional arrival_s column) or from the %KVC_REC_ARRIVE events
 * of a recorded trace; and the names of the layouts. Never reorders
 * requests that arrive together (the sort is stable), so a replay serves
 * them in the file's order.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <kvc/record.h>
#include <kvc/sim.h>

#include "../alloc/error.h"
#include "sim.h"

static const char *const layout_names[] = {
	[KVC_LAYOUT_PER_HEAD] = "per-head",
	[KVC_LAYOUT_PAGED] = "paged",
	[KVC_LAYOUT_CONTIG_MAX] = "contig-max",
	[KVC_LAYOUT_CONTIG_POW2] = "contig-pow2",
	[KVC_LAYOUT_CONTIG_ORACLE] = "contig-oracle",
};

#define NR_LAYOUTS (sizeof(layout_names) / sizeof(layout_names[0]))

int kvc_sim_layout_parse(const char *name, enum kvc_sim_layout *out)
{
	uint32_t i;

	if (!out)
		return kvc_err(-EINVAL, "kvc_sim_layout_parse: NULL out");
	for (i = 0; name && i < NR_LAYOUTS; i++) {
		if (!strcmp(name, layout_names[i])) {
			*out = (enum kvc_sim_layout)i;
			return 0;
		}
	}
	return kvc_err(-EINVAL,
		       "unknown layout \"%s\": per-head, paged, contig-max, "
		       "contig-pow2 or contig-oracle",
		       name ? name : "(null)");
}

const char *kvc_sim_layout_name(enum kvc_sim_layout l)
{
	if ((unsigned)l < NR_LAYOUTS)
		return layout_names[l];
	return "?";
}

const char *kvc_sim_compact_name(enum kvc_sim_compact c)
{
	static const char *const names[] = {
		[KVC_SIM_COMPACT_OFF] = "off",
		[KVC_SIM_COMPACT_FULL] = "full",
		[KVC_SIM_COMPACT_PROACTIVE] = "proactive",
	};

	if ((unsigned)c < sizeof(names) / sizeof(names[0]))
		return names[c];
	return "?";
}

/* Stable merge sort by arrival; halves already in order are not merged. */
static void merge_sort(struct kvc_sim_request *a, struct kvc_sim_request *tmp,
		       uint32_t n)
{
	uint32_t mid = n / 2, i = 0, j = mid, k = 0;

	if (n < 2)
		return;
	merge_sort(a, tmp, mid);
	merge_sort(a + mid, tmp, n - mid);
	if (a[mid - 1].arrival_s <= a[mid].arrival_s)
		return;
	while (i < mid && j < n)
		tmp[k++] = a[j].arrival_s < a[i].arrival_s ? a[j++] : a[i++];
	while (i < mid)
		tmp[k++] = a[i++];
	while (j < n)
		tmp[k++] = a[j++];
	memcpy(a, tmp, (size_t)n * sizeof(*a));
}

static int sort_by_arrival(struct kvc_sim_request *a, uint32_t n)
{
	struct kvc_sim_request *tmp;
	uint32_t i;

	for (i = 1; i < n; i++)
		if (a[i].arrival_s < a[i - 1].arrival_s)
			break;
	if (i >= n)
		return 0;
	tmp = malloc((size_t)n * sizeof(*tmp));
	if (!tmp)
		return kvc_err(-ENOMEM, "no memory to sort %u requests", n);
	merge_sort(a, tmp, n);
	free(tmp);
	return 0;
}

int kvc_sim_requests_csv(const char *path, uint32_t max,
			 struct kvc_sim_request **reqs, uint32_t *n)
{
	struct kvc_sim_request *out;
	struct kvc_request *in;
	double *arrival;
	uint32_t i, count;
	int err;

	if (!path || !reqs || !n)
		return kvc_err(-EINVAL, "kvc_sim_requests_csv: NULL %s",
			       !path ? "path" :
			       !reqs ? "reqs" :
				       "n");
	*reqs = NULL;
	*n = 0;
	err = kvc_trace_read_timed(path, max, &in, &arrival, &count);
	if (err)
		return err;
	out = malloc((size_t)count * sizeof(*out));
	if (!out) {
		free(in);
		free(arrival);
		return kvc_err(-ENOMEM, "%s: no memory for %u requests", path,
			       count);
	}
	for (i = 0; i < count; i++) {
		/* Without arrival_s, one request a second. */
		out[i].arrival_s = arrival ? arrival[i] : (double)i;
		out[i].prompt = in[i].prompt;
		out[i].gen = in[i].gen;
	}
	free(in);
	free(arrival);
	err = sort_by_arrival(out, count);
	if (err) {
		free(out);
		return err;
	}
	*reqs = out;
	*n = count;
	return 0;
}

int kvc_sim_requests_rec(const char *path, uint32_t max,
			 struct kvc_sim_request **reqs, uint32_t *n)
{
	struct kvc_sim_request *out = NULL, *grown;
	struct kvc_rec_reader *r;
	struct kvc_rec_event ev;
	uint32_t count = 0, cap = 0;
	int err;

	if (!path || !reqs || !n)
		return kvc_err(-EINVAL, "kvc_sim_requests_rec: NULL %s",
			       !path ? "path" :
			       !reqs ? "reqs" :
				       "n");
	*reqs = NULL;
	*n = 0;
	err = kvc_rec_reader_open(path, &r);
	if (err)
		return err;
	while (!max || count < max) {
		err = kvc_rec_next(r, &ev);
		if (err < 0)
			goto err_free;
		if (!err)
			break;
		if (ev.kind != KVC_REC_ARRIVE)
			continue;
		if (ev.p[1] < 1 || ev.p[1] > UINT32_MAX ||
		    ev.p[2] > UINT32_MAX) {
			err = kvc_err(
				-EINVAL,
				"%s: event %llu: a request of %llu prompt "
				"and %llu output tokens",
				path,
				(unsigned long long)kvc_rec_reader_index(r),
				(unsigned long long)ev.p[1],
				(unsigned long long)ev.p[2]);
			goto err_free;
		}
		if (count == cap) {
			if (cap >= UINT32_MAX / 2) {
				err = kvc_err(-EINVAL, "%s: too many requests",
					      path);
				goto err_free;
			}
			cap = cap ? cap * 2 : 256;
			grown = realloc(out, (size_t)cap * sizeof(*out));
			if (!grown) {
				err = kvc_err(-ENOMEM,
					      "%s: no memory for %u requests",
					      path, cap);
				goto err_free;
			}
			out = grown;
		}
		out[count].arrival_s = (double)ev.p[3] / 1e9;
		out[count].prompt = (uint32_t)ev.p[1];
		out[count].gen = (uint32_t)ev.p[2];
		count++;
	}
	kvc_rec_reader_close(r);
	if (!count) {
		free(out);
		return kvc_err(-EINVAL, "%s: the trace holds no request", path);
	}
	err = sort_by_arrival(out, count);
	if (err) {
		free(out);
		return err;
	}
	*reqs = out;
	*n = count;
	return 0;

err_free:
	kvc_rec_reader_close(r);
	free(out);
	return err;
}
