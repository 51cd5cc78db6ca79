/* Description: support, not a test: a backend wrapper that fails the Nth call of any op. */
#include <errno.h>
#include <stdlib.h>

#include "fault_backend.h"

struct fault_backend {
	struct kvc_backend be;
	struct kvc_backend *inner;
	struct fault_counts counts;
	uint64_t fail_at[FAULT_NR_OPS];
	int fail_err[FAULT_NR_OPS];
};

static struct fault_backend *fb(struct kvc_backend *be)
{
	return (struct fault_backend *)be;
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
		err = fb(be)->inner->ops->reserve(fb(be)->inner, bytes, va);
	fb(be)->counts.reserved += !err;
	return err;
}

static int f_release(struct kvc_backend *be, struct kvc_va *va)
{
	int err = enter(be, FAULT_RELEASE);

	if (!err)
		err = fb(be)->inner->ops->release(fb(be)->inner, va);
	fb(be)->counts.reserved -= !err;
	return err;
}

static int f_map(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		 uint64_t bytes, uint64_t *handle)
{
	int err = enter(be, FAULT_MAP);

	if (!err)
		err = fb(be)->inner->ops->map(fb(be)->inner, va, off, bytes,
					      handle);
	fb(be)->counts.mapped += !err;
	return err;
}

static int f_unmap(struct kvc_backend *be, struct kvc_va *va, uint64_t off,
		   uint64_t bytes, uint64_t handle)
{
	int err = enter(be, FAULT_UNMAP);

	if (!err)
		err = fb(be)->inner->ops->unmap(fb(be)->inner, va, off, bytes,
						handle);
	fb(be)->counts.mapped -= !err;
	return err;
}

static int f_copy(struct kvc_backend *be, struct kvc_va *va,
		  const struct kvc_copy *copies, uint32_t n)
{
	int err = enter(be, FAULT_COPY);

	return err ? err :
		     fb(be)->inner->ops->copy(fb(be)->inner, va, copies, n);
}

static int f_fence(struct kvc_backend *be, struct kvc_va *va)
{
	int err = enter(be, FAULT_FENCE);

	return err ? err : fb(be)->inner->ops->fence(fb(be)->inner, va);
}

static void f_close(struct kvc_backend *be)
{
	kvc_backend_close(fb(be)->inner);
	free(fb(be));
}

static const struct kvc_backend_ops fault_ops = {
	.reserve = f_reserve,
	.release = f_release,
	.map = f_map,
	.unmap = f_unmap,
	.copy = f_copy,
	.fence = f_fence,
	.close = f_close,
};

struct kvc_backend *fault_backend_wrap(struct kvc_backend *inner)
{
	struct fault_backend *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->be = *inner;
	f->be.ops = &fault_ops;
	f->inner = inner;
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
		"reserve", "release", "map", "unmap", "copy", "fence",
	};

	return op < FAULT_NR_OPS ? names[op] : "?";
}
