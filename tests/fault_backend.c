/* Description: support, not a test: a backend wrapper that fails the Nth call of any op. */
#include <errno.h>
#include <stdlib.h>

#include "fault_backend.h"

#define COPY_LOG_MAX (64u << 10)

struct fault_backend {
	struct kvc_backend be;
	struct kvc_backend *inner;
	struct fault_counts counts;
	uint64_t fail_at[FAULT_NR_OPS];
	int fail_err[FAULT_NR_OPS];
	struct kvc_copy *copy_log;
	uint64_t copy_log_n;
	uint64_t copy_log_lost;
};

static struct fault_backend *fb(struct kvc_backend *be)
{
	return (struct fault_backend *)be;
}

static struct kvc_backend *inner(struct kvc_backend *be)
{
	return fb(be)->inner;
}

/* Count the call; return the injected error if it is the chosen one. */
static int enter(struct kvc_backend *be, enum fault_op op)
{
	struct fault_backend *f = fb(be);
	uint64_t n = ++f->counts.calls[op];

	if (f->fail_at[op] && n == f->fail_at[op]) {
		f->fail_at[op] = 0;
		return f->fail_err[op];
	}
	return 0;
}

static int f_reserve(struct kvc_backend *be, uint64_t bytes, struct kvc_va *va)
{
	int err = enter(be, FAULT_RESERVE);

	if (!err)
		err = inner(be)->ops->reserve(inner(be), bytes, va);
	fb(be)->counts.reserved += !err;
	return err;
}

static int f_release(struct kvc_backend *be, struct kvc_va *va)
{
	int err = enter(be, FAULT_RELEASE);

	if (!err)
		err = inner(be)->ops->release(inner(be), va);
	fb(be)->counts.reserved -= !err;
	return err;
}

static int f_map(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		 uint64_t bytes, uint64_t *handle)
{
	int err = enter(be, FAULT_MAP);

	if (!err)
		err = inner(be)->ops->map(inner(be), va, off, bytes, handle);
	fb(be)->counts.mapped += !err;
	return err;
}

static int f_unmap(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		   uint64_t bytes, uint64_t handle)
{
	int err = enter(be, FAULT_UNMAP);

	if (!err)
		err = inner(be)->ops->unmap(inner(be), va, off, bytes, handle);
	fb(be)->counts.mapped -= !err;
	return err;
}

static void log_copies(struct fault_backend *f, const struct kvc_copy *copies,
		       uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++) {
		f->counts.copied_blocks++;
		f->counts.copied_bytes += copies[i].bytes;
		if (!f->copy_log)
			f->copy_log =
				malloc(COPY_LOG_MAX * sizeof(*f->copy_log));
		if (!f->copy_log || f->copy_log_n == COPY_LOG_MAX) {
			f->copy_log_lost++;
			continue;
		}
		f->copy_log[f->copy_log_n++] = copies[i];
	}
}

static int f_copy(struct kvc_backend *be, struct kvc_va *va,
		  const struct kvc_copy *copies, uint32_t n)
{
	int err = enter(be, FAULT_COPY);

	if (!err)
		err = inner(be)->ops->copy(inner(be), va, copies, n);
	if (!err)
		log_copies(fb(be), copies, n);
	return err;
}

static int f_fence(struct kvc_backend *be, struct kvc_va *va)
{
	int err = enter(be, FAULT_FENCE);

	return err ? err : inner(be)->ops->fence(inner(be), va);
}

static int f_fence_after(struct kvc_backend *be, struct kvc_va *va,
			 const struct kvc_fence *f)
{
	int err = enter(be, FAULT_FENCE_AFTER);

	return err ? err : inner(be)->ops->fence_after(inner(be), va, f);
}

static int f_fence_record(struct kvc_backend *be, struct kvc_va *va,
			  uint64_t *token)
{
	int err = enter(be, FAULT_FENCE_RECORD);

	if (!err)
		err = inner(be)->ops->fence_record(inner(be), va, token);
	fb(be)->counts.tokens += !err;
	return err;
}

static int f_fence_query(struct kvc_backend *be, struct kvc_va *va,
			 uint64_t token)
{
	int err = enter(be, FAULT_FENCE_QUERY);

	return err ? err : inner(be)->ops->fence_query(inner(be), va, token);
}

static int f_fence_sync(struct kvc_backend *be, struct kvc_va *va,
			uint64_t token)
{
	int err = enter(be, FAULT_FENCE_SYNC);

	return err ? err : inner(be)->ops->fence_sync(inner(be), va, token);
}

static int f_fence_signal(struct kvc_backend *be, struct kvc_va *va,
			  uint64_t token, const struct kvc_fence *f)
{
	int err = enter(be, FAULT_FENCE_SIGNAL);

	return err ? err :
		     inner(be)->ops->fence_signal(inner(be), va, token, f);
}

static void f_fence_put(struct kvc_backend *be, struct kvc_va *va,
			uint64_t token)
{
	fb(be)->counts.tokens--;
	fb(be)->counts.puts++;
	inner(be)->ops->fence_put(inner(be), va, token);
}

static void f_close(struct kvc_backend *be)
{
	kvc_backend_close(inner(be));
	free(fb(be)->copy_log);
	free(fb(be));
}

static const struct kvc_backend_ops fault_ops = {
	.reserve = f_reserve,
	.release = f_release,
	.map = f_map,
	.unmap = f_unmap,
	.copy = f_copy,
	.fence = f_fence,
	.fence_after = f_fence_after,
	.fence_record = f_fence_record,
	.fence_query = f_fence_query,
	.fence_sync = f_fence_sync,
	.fence_signal = f_fence_signal,
	.fence_put = f_fence_put,
	.close = f_close,
};

struct kvc_backend *fault_backend_wrap(struct kvc_backend *inner_be)
{
	struct fault_backend *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->be = *inner_be;
	f->be.ops = &fault_ops;
	f->inner = inner_be;
	return &f->be;
}

void fault_backend_fail(struct kvc_backend *be, enum fault_op op, uint64_t nth,
			int err)
{
	struct fault_backend *f = fb(be);

	f->fail_at[op] = nth ? f->counts.calls[op] + nth : 0;
	f->fail_err[op] = err;
}

void fault_backend_counts(struct kvc_backend *be, struct fault_counts *out)
{
	*out = fb(be)->counts;
}

const char *fault_op_name(enum fault_op op)
{
	static const char *const names[FAULT_NR_OPS] = {
		"reserve",     "release",    "map",	     "unmap",
		"copy",	       "fence",	     "fence_after",  "fence_record",
		"fence_query", "fence_sync", "fence_signal",
	};

	return op < FAULT_NR_OPS ? names[op] : "?";
}

const struct kvc_copy *fault_backend_copy_log(struct kvc_backend *be,
					      uint64_t *n, uint64_t *lost)
{
	*n = fb(be)->copy_log_n;
	if (lost)
		*lost = fb(be)->copy_log_lost;
	return fb(be)->copy_log;
}

void fault_backend_copy_log_reset(struct kvc_backend *be)
{
	fb(be)->copy_log_n = 0;
	fb(be)->copy_log_lost = 0;
}

void fault_backend_forget_reservation(struct kvc_backend *be)
{
	fb(be)->counts.reserved--;
}
