/* Description: swap I/O engine (io_uring and pread, buffered and direct): random round trips, groups, fixed buffers, EOF, faults, allocate, sync, bad ops */
// SPDX-License-Identifier: MIT
/*
 * Tests of the swap's I/O engine (swap/sio.h). Every case runs four times:
 * io_uring and pread/pwrite, each buffered and with O_DIRECT (where the
 * temporary directory's file system takes it; elsewhere the engine falls
 * back to buffered I/O and the case runs buffered). Data is checked
 * byte for byte, through the engine and through a second descriptor.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include "tmpdir.h"

#include "../swap/sio.h"

#define MAX_BUFS 16

/**
 * struct config - One way of running the engine.
 * @name: shown in the case's name.
 * @flags: passed to kvc_sio_open().
 */
struct config {
	const char *name;
	uint32_t flags;
};

static const struct config uring_buffered = {
	"io_uring, buffered", KVC_SIO_NO_DIRECT | KVC_SIO_QUIET
};
static const struct config uring_direct = { "io_uring, direct", KVC_SIO_QUIET };
static const struct config pread_buffered = {
	"pread, buffered", KVC_SIO_NO_URING | KVC_SIO_NO_DIRECT | KVC_SIO_QUIET
};
static const struct config pread_direct = { "pread, direct",
					    KVC_SIO_NO_URING | KVC_SIO_QUIET };

struct fixture {
	const struct config *cfg;
	char dir[256];
	char path[300];
	struct kvc_sio *io;
	void *bufs[MAX_BUFS];
	uint32_t nr_bufs;
	uint64_t rng;
};

static int setup(void **state)
{
	const struct config *cfg = *state;
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	fx->cfg = cfg;
	fx->rng = 0x9e3779b97f4a7c15ull;
	if (tmpdir_make(fx->dir, sizeof(fx->dir), "kvc-test-swap-io")) {
		free(fx);
		return -1;
	}
	snprintf(fx->path, sizeof(fx->path), "%s/swap", fx->dir);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	uint32_t i;
	int err;

	kvc_sio_close(fx->io);
	for (i = 0; i < fx->nr_bufs; i++)
		free(fx->bufs[i]);
	err = tmpdir_remove(fx->dir);
	if (err)
		fprintf(stderr, "test_swap_io: cannot remove %s: %s\n", fx->dir,
			strerror(errno));
	free(fx);
	return err;
}

/* Memory freed in teardown, 4096-aligned (enough for any O_DIRECT). */
static uint8_t *buf(struct fixture *fx, size_t bytes)
{
	void *p = aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);

	if (!p || fx->nr_bufs == MAX_BUFS)
		fail_msg("no memory for a %zu-byte buffer", bytes);
	fx->bufs[fx->nr_bufs++] = p;
	return p;
}

static void fill_random(struct fixture *fx, uint8_t *p, size_t bytes)
{
	size_t i;

	for (i = 0; i < bytes; i++)
		p[i] = (uint8_t)(rng_next(&fx->rng) >> 56);
}

static void open_io(struct fixture *fx, uint32_t depth)
{
	int err;

	kvc_sio_close(fx->io);
	fx->io = NULL;
	err = kvc_sio_open(fx->path, depth, fx->cfg->flags, &fx->io);
	if (err)
		fail_msg("kvc_sio_open(%s, %u) = %d: %s", fx->cfg->name, depth,
			 err, kvc_last_error());
	if (fx->cfg->flags & KVC_SIO_NO_URING)
		assert_string_equal(kvc_sio_engine(fx->io), "pread");
	if (fx->cfg->flags & KVC_SIO_NO_DIRECT) {
		assert_false(kvc_sio_direct(fx->io));
		EXPECT_U64(kvc_sio_align(fx->io), 1);
	}
}

/* The unit sizes and offsets are made of: the alignment, or 1 byte. */
static uint32_t unit(struct fixture *fx)
{
	return kvc_sio_align(fx->io);
}

static uint64_t pick(struct fixture *fx, uint64_t lo, uint64_t hi)
{
	return lo + rng_next(&fx->rng) % (hi - lo + 1);
}

#define queue_ok(fx, op) queue_at(fx, op, __LINE__)

static void queue_at(struct fixture *fx, const struct kvc_sio_op *op, int line)
{
	int err = kvc_sio_queue(fx->io, op);

	if (err)
		fail_msg("line %d: kvc_sio_queue(%s of %u pieces at %" PRIu64
			 ") = %d: %s",
			 line, op->write ? "write" : "read", op->nr_iov,
			 op->off, err, kvc_last_error());
}

#define wait_ok(fx, group) wait_at(fx, group, __LINE__)

static void wait_at(struct fixture *fx, int group, int line)
{
	int err = kvc_sio_wait(fx->io, group);

	if (err)
		fail_msg("line %d: kvc_sio_wait(%d) = %d: %s", line, group, err,
			 kvc_last_error());
}

/* One op of one piece. */
static void queue1(struct fixture *fx, bool write, uint64_t off, void *mem,
		   size_t bytes, uint32_t group)
{
	struct iovec v = { mem, bytes };
	struct kvc_sio_op op = { write, off, &v, 1, group };

	queue_ok(fx, &op);
}

/* Reads the file through a second descriptor, past the engine. */
static void read_back(struct fixture *fx, uint64_t off, void *mem, size_t bytes)
{
	int fd = open(fx->path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	assert_true(fd >= 0);
	n = pread(fd, mem, bytes, (off_t)off);
	close(fd);
	EXPECT_U64(n, bytes);
}

static void expect_same(const uint8_t *got, const uint8_t *want, size_t bytes,
			const char *what)
{
	size_t i;

	for (i = 0; i < bytes; i++)
		if (got[i] != want[i])
			fail_msg("%s: byte %zu is 0x%02x, expected 0x%02x",
				 what, i, got[i], want[i]);
}

struct span {
	uint64_t off;
	uint64_t bytes;
};

/* Cuts [0, @region) into spans of 1 to @max_units units, in random order. */
static struct span *cut(struct fixture *fx, uint64_t region, uint64_t u,
			uint64_t max_units, uint32_t *nr)
{
	struct span *s = NULL;
	uint32_t n = 0, i;
	uint64_t off = 0;

	while (off < region) {
		uint64_t left = (region - off) / u;
		uint64_t len =
			u * pick(fx, 1, left < max_units ? left : max_units);

		s = realloc(s, (n + 1) * sizeof(*s));
		assert_non_null(s);
		s[n].off = off;
		s[n].bytes = len;
		n++;
		off += len;
	}
	for (i = n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)pick(fx, 0, i);
		struct span t = s[i];

		s[i] = s[j];
		s[j] = t;
	}
	*nr = n;
	return s;
}

/* Splits @bytes (a multiple of @u) into up to @max pieces of whole units. */
static uint32_t split(struct fixture *fx, uint64_t bytes, uint64_t u,
		      uint32_t max, uint64_t *len)
{
	uint64_t units = bytes / u;
	uint32_t k, i;

	/* Mostly a few pieces; now and then as many as an op takes. */
	if (rng_next(&fx->rng) % 8 == 0)
		max = KVC_SIO_MAX_IOV;
	k = (uint32_t)pick(fx, 1, units < max ? units : max);
	for (i = 0; i < k; i++)
		len[i] = u * (units / k + (i < units % k));
	return k;
}

/*
 * Writes a region in random ops gathered from random places of a pool of
 * random bytes, then reads it back in other random ops, pieces of each
 * read landing side by side.
 */
static void roundtrip(struct fixture *fx, uint32_t depth)
{
	const uint64_t region = 2u << 20, pool_bytes = 1u << 20;
	uint64_t u, max_units, len[KVC_SIO_MAX_IOV];
	struct iovec iov[KVC_SIO_MAX_IOV];
	uint8_t *want, *got, *pool;
	struct span *ops;
	uint32_t nr, i, j, k;

	open_io(fx, depth);
	u = unit(fx);
	max_units = (64u << 10) / u;
	want = buf(fx, region);
	got = buf(fx, region);
	pool = buf(fx, pool_bytes);
	fill_random(fx, pool, pool_bytes);

	ops = cut(fx, region, u, max_units, &nr);
	for (i = 0; i < nr; i++) {
		struct kvc_sio_op op = { true, ops[i].off, iov, 0,
					 (uint32_t)pick(fx, 0, 3) };
		uint64_t pos = 0;

		k = split(fx, ops[i].bytes, u, 16, len);
		for (j = 0; j < k; j++) {
			uint64_t at =
				u * pick(fx, 0, (pool_bytes - len[j]) / u);

			iov[j].iov_base = pool + at;
			iov[j].iov_len = len[j];
			memcpy(want + ops[i].off + pos, pool + at, len[j]);
			pos += len[j];
		}
		op.nr_iov = k;
		queue_ok(fx, &op);
		/* The engine took a copy: the caller may reuse its array. */
		memset(iov, 0xa5, sizeof(iov));
	}
	wait_ok(fx, -1);
	free(ops);

	memset(got, 0xaa, region);
	ops = cut(fx, region, u, max_units, &nr);
	for (i = 0; i < nr; i++) {
		struct kvc_sio_op op = { false, ops[i].off, iov, 0,
					 (uint32_t)pick(fx, 0, 3) };
		uint64_t pos = 0;

		k = split(fx, ops[i].bytes, u, 16, len);
		for (j = 0; j < k; j++) {
			iov[j].iov_base = got + ops[i].off + pos;
			iov[j].iov_len = len[j];
			pos += len[j];
		}
		op.nr_iov = k;
		queue_ok(fx, &op);
		memset(iov, 0xa5, sizeof(iov));
	}
	wait_ok(fx, -1);
	free(ops);
	expect_same(got, want, region, "read back");
	EXPECT_U64(kvc_sio_errors(fx->io), 0);

	memset(got, 0, region);
	read_back(fx, 0, got, region);
	expect_same(got, want, region, "read past the engine");
}

static void test_roundtrip_depth1(void **state)
{
	roundtrip(*state, 1);
}

static void test_roundtrip_depth4(void **state)
{
	roundtrip(*state, 4);
}

static void test_roundtrip_depth64(void **state)
{
	roundtrip(*state, 64);
}

/* Waiting for one group finishes its ops, whatever the others do. */
static void test_groups(void **state)
{
	struct fixture *fx = *state;
	uint64_t size, i;
	uint8_t *data, *got;

	open_io(fx, 8);
	size = 16384 > unit(fx) ? 16384 : unit(fx);
	data = buf(fx, 8 * size);
	got = buf(fx, 8 * size);
	fill_random(fx, data, 8 * size);
	for (i = 0; i < 8; i++)
		queue1(fx, true, i * size, data + i * size, size,
		       (uint32_t)(i % 2));
	wait_ok(fx, 0);
	for (i = 0; i < 8; i += 2) {
		read_back(fx, i * size, got, size);
		expect_same(got, data + i * size, size, "group 0");
	}
	wait_ok(fx, 1);
	for (i = 1; i < 8; i += 2) {
		read_back(fx, i * size, got, size);
		expect_same(got, data + i * size, size, "group 1");
	}
	/* Nothing left: every wait returns at once. */
	for (i = 0; i < KVC_SIO_GROUPS; i++)
		wait_ok(fx, (int)i);
	wait_ok(fx, -1);
	EXPECT_U64(kvc_sio_errors(fx->io), 0);
}

/* Ops of one piece inside the registered buffer, and ops outside it. */
static void test_fixed_buffer(void **state)
{
	struct fixture *fx = *state;
	const size_t half = 512u << 10, op = 32u << 10;
	uint8_t *reg, *other;
	size_t i;
	int err;

	open_io(fx, 16);
	reg = buf(fx, 2 * half);
	other = buf(fx, op);
	fill_random(fx, reg, half);
	fill_random(fx, other, op);
	assert_int_equal(kvc_sio_register(fx->io, reg, 2 * half), 0);
	for (i = 0; i < half / op; i++)
		queue1(fx, true, i * op, reg + i * op, op, (uint32_t)(i % 4));
	queue1(fx, true, half, other, op, 0);
	wait_ok(fx, -1);

	memset(reg + half, 0, half);
	for (i = 0; i < half / op; i++)
		queue1(fx, false, i * op, reg + half + i * op, op,
		       (uint32_t)(i % 4));
	wait_ok(fx, -1);
	expect_same(reg + half, reg, half, "fixed read");

	/* Registering with ops in flight is refused (io_uring holds them
	 * until a wait); without io_uring nothing stays in flight. */
	queue1(fx, false, 0, reg + half, op, 0);
	err = kvc_sio_register(fx->io, NULL, 0);
	if (!strcmp(kvc_sio_engine(fx->io), "io_uring"))
		assert_int_equal(err, -EBUSY);
	else
		assert_int_equal(err, 0);
	wait_ok(fx, -1);

	/* Unregistered, the same ops run as ordinary ones. */
	assert_int_equal(kvc_sio_register(fx->io, NULL, 0), 0);
	memset(reg + half, 0, op);
	queue1(fx, false, half, reg + half, op, 2);
	wait_ok(fx, 2);
	expect_same(reg + half, other, op, "read after unregistering");
	EXPECT_U64(kvc_sio_errors(fx->io), 0);
}

/* A buffer larger than the locked-memory limit may not register; ops in
 * it still work. */
static void test_fixed_buffer_large(void **state)
{
	struct fixture *fx = *state;
	const size_t bytes = 16u << 20, op = 1u << 20;
	uint8_t *big, *want;

	open_io(fx, 4);
	big = buf(fx, bytes);
	want = buf(fx, op);
	fill_random(fx, want, op);
	memcpy(big + bytes - op, want, op);
	assert_int_equal(kvc_sio_register(fx->io, big, bytes), 0);
	queue1(fx, true, 0, big + bytes - op, op, 0);
	wait_ok(fx, 0);
	memset(big, 0, op);
	queue1(fx, false, 0, big, op, 0);
	wait_ok(fx, 0);
	expect_same(big, want, op, "large buffer");
}

/* A read past the end of the file fails with -EIO, also a partial one. */
static void test_read_past_eof(void **state)
{
	struct fixture *fx = *state;
	uint64_t size;
	uint8_t *data, *got;

	open_io(fx, 4);
	size = 8192 > unit(fx) ? 8192 : unit(fx);
	data = buf(fx, 2 * size);
	got = buf(fx, 2 * size);
	fill_random(fx, data, size);
	queue1(fx, true, 0, data, size, 0);
	wait_ok(fx, 0);

	queue1(fx, false, 0, got, 2 * size, 1);
	assert_int_equal(kvc_sio_wait(fx->io, 1), -EIO);
	assert_non_null(strstr(kvc_last_error(), "swap read of"));
	assert_non_null(strstr(kvc_last_error(), "Input/output error"));
	queue1(fx, false, size, got, size, 1);
	assert_int_equal(kvc_sio_wait(fx->io, -1), -EIO);
	EXPECT_U64(kvc_sio_errors(fx->io), 2);

	queue1(fx, false, 0, got, size, 1);
	wait_ok(fx, 1);
	expect_same(got, data, size, "read up to the end");
}

struct fault {
	uint64_t off;
	int err;
	bool sync;
	uint32_t calls;
};

static int fault_hook(void *arg, bool write, uint64_t off, uint64_t bytes)
{
	struct fault *f = arg;

	f->calls++;
	if (off == ~0ull && bytes == 0)
		return f->sync ? f->err : 0;
	return write && off == f->off ? f->err : 0;
}

/* A failed op fails its own group's wait, once, and touches nothing. */
static void test_fault(void **state)
{
	struct fixture *fx = *state;
	struct fault f = { 0, -ENOSPC, false, 0 };
	uint64_t size, i;
	uint8_t *data, *got;
	char want[128];

	open_io(fx, 8);
	size = 4096 > unit(fx) ? 4096 : unit(fx);
	data = buf(fx, 4 * size);
	got = buf(fx, size);
	fill_random(fx, data, 4 * size);
	assert_int_equal(kvc_sio_truncate(fx->io, 4 * size), 0);
	f.off = 2 * size;
	kvc_sio_set_fault(fx->io, fault_hook, &f);
	for (i = 0; i < 4; i++)
		queue1(fx, true, i * size, data + i * size, size,
		       i == 2 ? 1 : 0);
	EXPECT_U64(f.calls, 4);
	wait_ok(fx, 0);
	wait_ok(fx, 2);
	assert_int_equal(kvc_sio_wait(fx->io, 1), -ENOSPC);
	snprintf(want, sizeof(want),
		 "swap write of %" PRIu64 " bytes at offset %" PRIu64
		 " failed: No space left on device",
		 size, 2 * size);
	assert_string_equal(kvc_last_error(), want);
	wait_ok(fx, 1);
	wait_ok(fx, -1);
	EXPECT_U64(kvc_sio_errors(fx->io), 1);
	read_back(fx, 2 * size, got, size);
	for (i = 0; i < size; i++)
		if (got[i])
			fail_msg("the failed write touched byte %" PRIu64, i);

	/* Across groups, a wait for all reports the first failure. */
	f.err = -EIO;
	queue1(fx, true, 2 * size, data, size, 3);
	f.err = -EFBIG;
	queue1(fx, true, 2 * size, data, size, 2);
	assert_int_equal(kvc_sio_wait(fx->io, -1), -EIO);
	wait_ok(fx, 2);
	EXPECT_U64(kvc_sio_errors(fx->io), 3);

	/* A failing sync. */
	f.sync = true;
	f.err = -EIO;
	assert_int_equal(kvc_sio_sync(fx->io), -EIO);
	assert_non_null(strstr(kvc_last_error(), "swap sync of"));
	EXPECT_U64(kvc_sio_errors(fx->io), 4);
	kvc_sio_set_fault(fx->io, NULL, NULL);
	assert_int_equal(kvc_sio_sync(fx->io), 0);
}

/* fallocate, and -EFBIG past RLIMIT_FSIZE (with SIGXFSZ ignored). */
static void test_allocate(void **state)
{
	struct fixture *fx = *state;
	struct sigaction ign = { .sa_handler = SIG_IGN }, old_sa;
	struct rlimit old_rl, rl;
	struct stat st;
	int fd, err;

	open_io(fx, 4);
	assert_int_equal(kvc_sio_allocate(fx->io, 0, 1u << 20), 0);
	assert_int_equal(kvc_sio_allocate(fx->io, 0, 0), 0);
	fd = open(fx->path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	close(fd);
	/* Where fallocate is not supported nothing is done. */
	assert_true(st.st_size == 1 << 20 || st.st_size == 0);

	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_rl), 0);
	assert_int_equal(sigaction(SIGXFSZ, &ign, &old_sa), 0);
	rl = old_rl;
	rl.rlim_cur = 2u << 20;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < rl.rlim_cur)
		rl.rlim_cur = rl.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
	err = kvc_sio_allocate(fx->io, 0, rl.rlim_cur + (4u << 20));
	setrlimit(RLIMIT_FSIZE, &old_rl);
	sigaction(SIGXFSZ, &old_sa, NULL);
	if (st.st_size)
		assert_int_equal(err, -EFBIG);
	if (err)
		assert_non_null(strstr(kvc_last_error(), "File too large"));
}

/* Bad ops and arguments are refused with -EINVAL and not counted. */
static void test_bad_ops(void **state)
{
	struct fixture *fx = *state;
	struct iovec v[KVC_SIO_MAX_IOV + 1];
	struct kvc_sio_op op = { true, 0, v, 1, 0 };
	struct kvc_sio *io = NULL;
	uint32_t u, i;
	uint8_t *mem;

	assert_int_equal(kvc_sio_open(fx->path, 0, fx->cfg->flags, &io),
			 -EINVAL);
	assert_int_equal(kvc_sio_open(fx->path, 4097, fx->cfg->flags, &io),
			 -EINVAL);
	assert_int_equal(kvc_sio_open(NULL, 4, fx->cfg->flags, &io), -EINVAL);
	assert_null(io);

	open_io(fx, 4);
	u = unit(fx);
	if (kvc_sio_direct(fx->io))
		assert_true(u >= 512 && !(u & (u - 1)));
	mem = buf(fx, 2 * (u > 4096 ? u : 4096));
	for (i = 0; i <= KVC_SIO_MAX_IOV; i++) {
		v[i].iov_base = mem;
		v[i].iov_len = u;
	}
	op.nr_iov = 0;
	assert_int_equal(kvc_sio_queue(fx->io, &op), -EINVAL);
	op.nr_iov = KVC_SIO_MAX_IOV + 1;
	assert_int_equal(kvc_sio_queue(fx->io, &op), -EINVAL);
	op.nr_iov = 1;
	op.iov = NULL;
	assert_int_equal(kvc_sio_queue(fx->io, &op), -EINVAL);
	op.iov = v;
	op.group = KVC_SIO_GROUPS;
	assert_int_equal(kvc_sio_queue(fx->io, &op), -EINVAL);
	op.group = 0;
	v[0].iov_len = 0;
	assert_int_equal(kvc_sio_queue(fx->io, &op), -EINVAL);
	assert_non_null(strstr(kvc_last_error(), "no bytes"));
	v[0].iov_len = u;
	op.off = (uint64_t)INT64_MAX;
	assert_int_equal(kvc_sio_queue(fx->io, &op), -EINVAL);
	op.off = 0;
	assert_int_equal(kvc_sio_queue(NULL, &op), -EINVAL);
	assert_int_equal(kvc_sio_queue(fx->io, NULL), -EINVAL);
	assert_int_equal(kvc_sio_wait(fx->io, KVC_SIO_GROUPS), -EINVAL);
	assert_int_equal(kvc_sio_wait(fx->io, -2), -EINVAL);
	assert_int_equal(kvc_sio_register(fx->io, mem, 0), -EINVAL);

	if (kvc_sio_direct(fx->io)) {
		op.off = 1;
		assert_int_equal(kvc_sio_queue(fx->io, &op), -EINVAL);
		assert_non_null(strstr(kvc_last_error(), "alignment"));
		op.off = 0;
		v[0].iov_base = mem + 1;
		assert_int_equal(kvc_sio_queue(fx->io, &op), -EINVAL);
		v[0].iov_base = mem;
		v[0].iov_len = u + 1;
		assert_int_equal(kvc_sio_queue(fx->io, &op), -EINVAL);
	} else {
		/* Buffered, any offset, address and length will do. */
		memset(mem, 7, 3);
		op.off = 1;
		v[0].iov_base = mem + 1;
		v[0].iov_len = 2;
		queue_ok(fx, &op);
		wait_ok(fx, -1);
	}
	EXPECT_U64(kvc_sio_errors(fx->io), 0);
}

/* Sync after writes; the file holds them through another descriptor. */
static void test_sync(void **state)
{
	struct fixture *fx = *state;
	const size_t bytes = 256u << 10;
	uint8_t *data, *got;
	uint32_t i;

	open_io(fx, 4);
	assert_int_equal(kvc_sio_sync(fx->io), 0);
	data = buf(fx, bytes);
	got = buf(fx, bytes);
	fill_random(fx, data, bytes);
	for (i = 0; i < 8; i++)
		queue1(fx, true, i * (bytes / 8), data + i * (bytes / 8),
		       bytes / 8, i % 4);
	assert_int_equal(kvc_sio_sync(fx->io), 0);
	read_back(fx, 0, got, bytes);
	expect_same(got, data, bytes, "after sync");
	EXPECT_U64(kvc_sio_errors(fx->io), 0);
}

/* Size changes; refused with ops in flight. */
static void test_truncate(void **state)
{
	struct fixture *fx = *state;
	struct stat st;
	uint8_t *data;

	open_io(fx, 4);
	assert_int_equal(kvc_sio_truncate(fx->io, 12345), 0);
	assert_int_equal(stat(fx->path, &st), 0);
	EXPECT_U64(st.st_size, 12345);
	data = buf(fx, 4096);
	memset(data, 1, 4096);
	queue1(fx, true, 0, data, 4096, 0);
	if (!strcmp(kvc_sio_engine(fx->io), "io_uring"))
		assert_int_equal(kvc_sio_truncate(fx->io, 0), -EBUSY);
	wait_ok(fx, -1);
	assert_int_equal(kvc_sio_truncate(fx->io, 0), 0);
	assert_int_equal(stat(fx->path, &st), 0);
	EXPECT_U64(st.st_size, 0);
}

/* Closing with ops in flight finishes them and frees everything. */
static void test_close_in_flight(void **state)
{
	struct fixture *fx = *state;
	const uint32_t ops = 64, pieces = 16;
	struct iovec v[16];
	uint64_t u, piece, i, j;
	uint8_t *data, *got;

	open_io(fx, 32);
	u = unit(fx);
	piece = u > 1024 ? u : 1024;
	data = buf(fx, ops * pieces * piece);
	got = buf(fx, ops * pieces * piece);
	fill_random(fx, data, ops * pieces * piece);
	for (i = 0; i < ops; i++) {
		struct kvc_sio_op op = { true, i * pieces * piece, v, pieces,
					 (uint32_t)(i % 4) };

		for (j = 0; j < pieces; j++) {
			v[j].iov_base = data + (i * pieces + j) * piece;
			v[j].iov_len = piece;
		}
		queue_ok(fx, &op);
	}
	kvc_sio_close(fx->io);
	fx->io = NULL;
	read_back(fx, 0, got, ops * pieces * piece);
	expect_same(got, data, ops * pieces * piece, "after close");
}

/* Each case once per way of running the engine, named after both. */
/* clang-format off */
#define ONE(fn, cfg) { #fn " (" #cfg ")", fn, setup, teardown, (void *)&cfg }
#define FOUR(fn) ONE(fn, uring_buffered), ONE(fn, uring_direct), \
	ONE(fn, pread_buffered), ONE(fn, pread_direct)
/* clang-format on */

int main(void)
{
	const struct CMUnitTest tests[] = {
		FOUR(test_roundtrip_depth1),
		FOUR(test_roundtrip_depth4),
		FOUR(test_roundtrip_depth64),
		FOUR(test_groups),
		FOUR(test_fixed_buffer),
		FOUR(test_fixed_buffer_large),
		FOUR(test_read_past_eof),
		FOUR(test_fault),
		FOUR(test_allocate),
		FOUR(test_bad_ops),
		FOUR(test_sync),
		FOUR(test_truncate),
		FOUR(test_close_in_flight),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
