// SPDX-License-Identifier: MIT
/*
 * The swap's I/O engine: reads and writes of one file, queued up to a
 * queue depth through io_uring, or run at once with preadv/pwritev where
 * io_uring cannot be had. Every op either moves all its bytes or fails:
 * short transfers are continued from where they stopped, and a transfer
 * that makes no progress (end of file) fails with -EIO.
 *
 * No allocation on the hot path: one slot per op in flight is made at
 * open, each with room for a few iovecs; a slot grows to the full
 * %KVC_SIO_MAX_IOV once, the first time it needs more, and keeps it.
 *
 * Never reports a failure at completion time: the first failure of each
 * group is kept and turned into a message when the group is waited for,
 * so a later success cannot overwrite it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sio.h"

#include "../alloc/error.h"

/* Inline iovecs per slot: enough for the common op without growing. */
#define SIO_INLINE_IOV 4
/* user_data of the fsync SQE; slots are numbered from 0. */
#define SIO_SYNC_TAG UINT64_MAX
/* Alignment when the file system does not say. */
#define SIO_DEFAULT_ALIGN 4096u

/**
 * struct sio_slot - One op in flight.
 * @iov: its memory, the caller's iovecs copied; the piece at @first and
 *       after are what is left to move (@iov[@first] is trimmed in place).
 * @inline_iov: @iov until more pieces are needed.
 * @iov_cap: pieces @iov holds.
 * @nr_iov: pieces of the op.
 * @first: first piece not wholly moved.
 * @off: the op's file offset.
 * @bytes: the op's length.
 * @done: bytes moved so far.
 * @group: its group.
 * @write: whether it writes.
 * @fixed: whether it uses the registered buffer.
 * @busy: taken by an op.
 * @next_free: next free slot, or -1.
 */
struct sio_slot {
	struct iovec *iov;
	struct iovec inline_iov[SIO_INLINE_IOV];
	uint32_t iov_cap;
	uint32_t nr_iov;
	uint32_t first;
	uint64_t off;
	uint64_t bytes;
	uint64_t done;
	uint32_t group;
	bool write;
	bool fixed;
	bool busy;
	int32_t next_free;
};

/**
 * struct sio_fail - The first failure of a group since its last wait.
 * @err: the -errno, 0 for none.
 * @write: the op wrote.
 * @off: the op's offset.
 * @bytes: the op's length.
 * @seq: when it happened, to find the first across groups.
 */
struct sio_fail {
	int err;
	bool write;
	uint64_t off;
	uint64_t bytes;
	uint64_t seq;
};

struct kvc_sio {
	int fd;
	char *path;
	uint32_t align;
	bool direct;
	bool uring;
	bool ring_up;
	uint32_t flags;
	struct io_uring ring;
	uint32_t depth;
	struct sio_slot *slots;
	uint32_t nr_slots;
	int32_t free_slot;
	uint32_t inflight;
	uint32_t group_inflight[KVC_SIO_GROUPS];
	struct sio_fail fail[KVC_SIO_GROUPS];
	uint64_t fail_seq;
	uint64_t errors;
	bool sync_busy;
	int sync_res;
	void *reg_base;
	size_t reg_bytes;
	bool registered;
	kvc_sio_fault_fn fault;
	void *fault_arg;
};

/*
 * The kernel's struct statx up to the direct I/O alignment, which older C
 * libraries keep as padding; the layout is the kernel ABI.
 */
struct sio_statx {
	uint32_t mask;
	uint32_t blksize;
	uint64_t attributes;
	uint32_t nlink;
	uint32_t uid;
	uint32_t gid;
	uint16_t mode;
	uint16_t pad0;
	uint64_t ino;
	uint64_t size;
	uint64_t blocks;
	uint64_t attributes_mask;
	struct {
		int64_t sec;
		uint32_t nsec;
		int32_t pad;
	} atime, btime, ctime, mtime;
	uint32_t rdev_major;
	uint32_t rdev_minor;
	uint32_t dev_major;
	uint32_t dev_minor;
	uint64_t mnt_id;
	uint32_t dio_mem_align;
	uint32_t dio_offset_align;
	uint64_t spare[12];
};

_Static_assert(offsetof(struct sio_statx, dio_mem_align) == 152,
	       "statx layout: dio_mem_align at 152");
_Static_assert(sizeof(struct sio_statx) == 256, "statx is 256 bytes");

#define SIO_STATX_DIOALIGN 0x00002000u

static const char *op_name(bool write)
{
	return write ? "write" : "read";
}

static void note_fail(struct kvc_sio *io, uint32_t group, int err, bool write,
		      uint64_t off, uint64_t bytes)
{
	struct sio_fail *f = &io->fail[group];

	io->errors++;
	if (f->err)
		return;
	f->err = err;
	f->write = write;
	f->off = off;
	f->bytes = bytes;
	f->seq = ++io->fail_seq;
}

static void slot_finish(struct kvc_sio *io, struct sio_slot *s, int err)
{
	if (err)
		note_fail(io, s->group, err, s->write, s->off, s->bytes);
	io->group_inflight[s->group]--;
	io->inflight--;
	s->busy = false;
	s->next_free = io->free_slot;
	io->free_slot = (int32_t)(s - io->slots);
}

/* Move @n more bytes of @s as done: drop whole pieces, trim the next. */
static void slot_advance(struct sio_slot *s, uint64_t n)
{
	s->done += n;
	while (n && s->first < s->nr_iov) {
		struct iovec *v = &s->iov[s->first];

		if (n < v->iov_len) {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= n;
			return;
		}
		n -= v->iov_len;
		s->first++;
	}
	while (s->first < s->nr_iov && !s->iov[s->first].iov_len)
		s->first++;
}

/* ---- pread/pwrite engine ---- */

static int run_sync(struct kvc_sio *io, struct sio_slot *s)
{
	while (s->done < s->bytes) {
		struct iovec *v = &s->iov[s->first];
		int cnt = (int)(s->nr_iov - s->first);
		off_t pos = (off_t)(s->off + s->done);
		ssize_t n;

		n = s->write ? pwritev(io->fd, v, cnt, pos) :
			       preadv(io->fd, v, cnt, pos);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		slot_advance(s, (uint64_t)n);
		/* Under O_DIRECT an unaligned stop is the end of the file. */
		if (io->direct && s->done < s->bytes &&
		    (s->off + s->done) % io->align)
			return -EIO;
	}
	return 0;
}

/* ---- io_uring engine ---- */

static int ring_submit(struct kvc_sio *io)
{
	int ret;

	do {
		ret = io_uring_submit(&io->ring);
	} while (ret == -EINTR);
	/* -EAGAIN, -EBUSY: the SQEs stay in the ring for the next enter. */
	return ret < 0 ? ret : 0;
}

static struct io_uring_sqe *ring_sqe(struct kvc_sio *io)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);

	if (!sqe) {
		ring_submit(io);
		sqe = io_uring_get_sqe(&io->ring);
	}
	return sqe;
}

/* Hand the rest of @s to the kernel; 0, or an error the op fails with. */
static int slot_prep(struct kvc_sio *io, struct sio_slot *s)
{
	struct io_uring_sqe *sqe = ring_sqe(io);
	struct iovec *v = &s->iov[s->first];
	uint64_t pos = s->off + s->done;

	/* The SQ holds the queue depth, so this means a broken ring. */
	if (!sqe)
		return -EBUSY;
	if (s->fixed) {
		if (s->write)
			io_uring_prep_write_fixed(sqe, io->fd, v->iov_base,
						  (unsigned int)v->iov_len, pos,
						  0);
		else
			io_uring_prep_read_fixed(sqe, io->fd, v->iov_base,
						 (unsigned int)v->iov_len, pos,
						 0);
	} else if (s->write) {
		io_uring_prep_writev(sqe, io->fd, v, s->nr_iov - s->first, pos);
	} else {
		io_uring_prep_readv(sqe, io->fd, v, s->nr_iov - s->first, pos);
	}
	io_uring_sqe_set_data64(sqe, (uint64_t)(s - io->slots));
	return 0;
}

static void slot_resubmit(struct kvc_sio *io, struct sio_slot *s)
{
	int ret = slot_prep(io, s);

	if (ret)
		slot_finish(io, s, ret);
}

static void ring_complete(struct kvc_sio *io, uint64_t tag, int res)
{
	struct sio_slot *s;

	if (tag == SIO_SYNC_TAG) {
		io->sync_res = res;
		io->sync_busy = false;
		return;
	}
	s = &io->slots[tag];
	if (res == -EAGAIN || res == -EINTR) {
		slot_resubmit(io, s);
		return;
	}
	if (res < 0) {
		slot_finish(io, s, res);
		return;
	}
	if (res == 0) {
		slot_finish(io, s, -EIO);
		return;
	}
	slot_advance(s, (uint64_t)res);
	if (s->done >= s->bytes)
		slot_finish(io, s, 0);
	else if (io->direct && (s->off + s->done) % io->align)
		slot_finish(io, s, -EIO);
	else
		slot_resubmit(io, s);
}

/* Handle every completion that is there; submit what that requeued. */
static void ring_reap(struct kvc_sio *io)
{
	struct io_uring_cqe *cqe;
	unsigned int head, n = 0;

	io_uring_for_each_cqe(&io->ring, head, cqe)
	{
		ring_complete(io, io_uring_cqe_get_data64(cqe), cqe->res);
		n++;
	}
	io_uring_cq_advance(&io->ring, n);
	if (io_uring_sq_ready(&io->ring))
		ring_submit(io);
}

/*
 * A ring that can no longer be entered (none of the errors entering it
 * is documented to give for reads and writes): fail what it holds and
 * run the rest with pread/pwrite, rather than wait for ever.
 */
static void ring_break(struct kvc_sio *io, int err)
{
	uint32_t i;

	kvc_notice("swap: io_uring failed on %s (%s); using pread/pwrite",
		   io->path, strerror(-err));
	for (i = 0; i < io->nr_slots; i++)
		if (io->slots[i].busy)
			slot_finish(io, &io->slots[i], err);
	if (io->sync_busy) {
		io->sync_res = err;
		io->sync_busy = false;
	}
	io->uring = false;
}

/* Wait for at least one completion and handle what came. */
static void ring_wait(struct kvc_sio *io)
{
	int ret;

	for (;;) {
		ret = io_uring_submit_and_wait(&io->ring, 1);
		if (ret >= 0 || ret == -EINTR)
			break;
		if (ret == -EAGAIN || ret == -EBUSY) {
			/* Short of resources: wait without submitting. */
			struct io_uring_cqe *cqe;

			ret = io_uring_wait_cqe(&io->ring, &cqe);
			if (ret == 0 || ret == -EINTR)
				break;
		}
		ring_break(io, ret);
		return;
	}
	ring_reap(io);
}

static bool busy(const struct kvc_sio *io, int group)
{
	if (group < 0)
		return io->inflight || io->sync_busy;
	return io->group_inflight[group];
}

static void wait_idle(struct kvc_sio *io, int group)
{
	while (io->uring && busy(io, group))
		ring_wait(io);
}

/* ---- the interface ---- */

static int open_file(struct kvc_sio *io, bool direct)
{
	int flags = O_RDWR | O_CREAT | O_CLOEXEC | (direct ? O_DIRECT : 0);

	do {
		io->fd = open(io->path, flags, 0600);
	} while (io->fd < 0 && errno == EINTR);
	return io->fd < 0 ? -errno : 0;
}

/* The larger of the memory and offset alignments, at least 512; 0 when
 * the file system says it takes no direct I/O for this file. */
static uint32_t dio_align(int fd)
{
	struct sio_statx stx;
	uint32_t a;

	memset(&stx, 0, sizeof(stx));
	if (syscall(SYS_statx, fd, "", AT_EMPTY_PATH, SIO_STATX_DIOALIGN,
		    &stx) ||
	    !(stx.mask & SIO_STATX_DIOALIGN))
		return SIO_DEFAULT_ALIGN;
	if (!stx.dio_mem_align || !stx.dio_offset_align)
		return 0;
	a = stx.dio_mem_align > stx.dio_offset_align ? stx.dio_mem_align :
						       stx.dio_offset_align;
	return a < 512 ? 512 : a;
}

static int sio_open_fd(struct kvc_sio *io)
{
	int ret;

	if (!(io->flags & KVC_SIO_NO_DIRECT)) {
		ret = open_file(io, true);
		if (ret == 0) {
			io->align = dio_align(io->fd);
			if (io->align) {
				io->direct = true;
				return 0;
			}
			close(io->fd);
			ret = -EINVAL;
		}
		if (ret != -EINVAL)
			return kvc_err(ret, "swap: cannot open %s: %s",
				       io->path, strerror(-ret));
		if (!(io->flags & KVC_SIO_QUIET))
			kvc_notice(
				"swap: %s does not take O_DIRECT; using buffered I/O",
				io->path);
	}
	ret = open_file(io, false);
	if (ret)
		return kvc_err(ret, "swap: cannot open %s: %s", io->path,
			       strerror(-ret));
	io->align = 1;
	return 0;
}

static int sio_ring_init(struct kvc_sio *io)
{
	/* Completions are handled only when we wait: no need for IPIs. */
	int ret = io_uring_queue_init(io->depth, &io->ring,
				      IORING_SETUP_COOP_TASKRUN |
					      IORING_SETUP_TASKRUN_FLAG);

	if (ret == -EINVAL)
		ret = io_uring_queue_init(io->depth, &io->ring, 0);
	return ret;
}

static void free_slots(struct kvc_sio *io)
{
	uint32_t i;

	if (!io->slots)
		return;
	for (i = 0; i < io->nr_slots; i++)
		if (io->slots[i].iov != io->slots[i].inline_iov)
			free(io->slots[i].iov);
	free(io->slots);
}

int kvc_sio_open(const char *path, uint32_t queue_depth, uint32_t flags,
		 struct kvc_sio **out)
{
	struct kvc_sio *io;
	uint32_t i;
	int ret;

	if (!path || !*path || !out)
		return kvc_err(-EINVAL, "swap: no file or no result pointer");
	if (queue_depth < 1 || queue_depth > 4096)
		return kvc_err(-EINVAL,
			       "swap: queue depth %u is not within 1 to 4096",
			       queue_depth);
	io = calloc(1, sizeof(*io));
	if (!io)
		return kvc_err(-ENOMEM, "swap: out of memory");
	io->fd = -1;
	io->flags = flags;
	io->depth = queue_depth;
	io->path = strdup(path);
	if (!io->path) {
		free(io);
		return kvc_err(-ENOMEM, "swap: out of memory");
	}
	ret = sio_open_fd(io);
	if (ret)
		goto err_path;
	if (!(flags & KVC_SIO_NO_URING)) {
		ret = sio_ring_init(io);
		if (ret == 0) {
			io->uring = true;
			io->ring_up = true;
		} else if (!(flags & KVC_SIO_QUIET)) {
			kvc_notice(
				"swap: io_uring unavailable (%s); using pread/pwrite",
				strerror(-ret));
		}
	}
	/* The pread engine runs one op at a time, in one slot. */
	io->nr_slots = io->uring ? queue_depth : 1;
	io->slots = calloc(io->nr_slots, sizeof(*io->slots));
	if (!io->slots) {
		ret = kvc_err(-ENOMEM, "swap: no memory for %u op slots",
			      io->nr_slots);
		goto err_ring;
	}
	for (i = 0; i < io->nr_slots; i++) {
		io->slots[i].iov = io->slots[i].inline_iov;
		io->slots[i].iov_cap = SIO_INLINE_IOV;
		io->slots[i].next_free =
			i + 1 < io->nr_slots ? (int32_t)(i + 1) : -1;
	}
	io->free_slot = 0;
	*out = io;
	return 0;

err_ring:
	if (io->uring)
		io_uring_queue_exit(&io->ring);
	close(io->fd);
err_path:
	free(io->path);
	free(io);
	return ret;
}

void kvc_sio_close(struct kvc_sio *io)
{
	if (!io)
		return;
	wait_idle(io, -1);
	if (io->registered)
		io_uring_unregister_buffers(&io->ring);
	if (io->ring_up)
		io_uring_queue_exit(&io->ring);
	close(io->fd);
	free_slots(io);
	free(io->path);
	free(io);
}

int kvc_sio_register(struct kvc_sio *io, void *buf, size_t bytes)
{
	struct iovec v = { .iov_base = buf, .iov_len = bytes };
	int ret;

	if (!io)
		return kvc_err(-EINVAL, "swap: no engine");
	if (buf && !bytes)
		return kvc_err(-EINVAL, "swap: registering an empty buffer");
	if (io->inflight)
		return kvc_err(
			-EBUSY,
			"swap: cannot register a buffer with %u ops in flight",
			io->inflight);
	if (io->registered) {
		io_uring_unregister_buffers(&io->ring);
		io->registered = false;
	}
	io->reg_base = NULL;
	io->reg_bytes = 0;
	if (!buf || !io->uring)
		return 0;
	ret = io_uring_register_buffers(&io->ring, &v, 1);
	if (ret) {
		/* Ops in the buffer still run, as ordinary ones. */
		if (!(io->flags & KVC_SIO_QUIET))
			kvc_notice(
				"swap: cannot register a %zu-byte buffer (%s); using ordinary I/O",
				bytes, strerror(-ret));
		return 0;
	}
	io->registered = true;
	io->reg_base = buf;
	io->reg_bytes = bytes;
	return 0;
}

/* Checks @op and sums its length into @bytes; 0 or -EINVAL. */
static int check_op(const struct kvc_sio *io, const struct kvc_sio_op *op,
		    uint64_t *bytes)
{
	uint64_t sum = 0;
	uint32_t i;

	if (!op)
		return kvc_err(-EINVAL, "swap: no op");
	if (op->nr_iov < 1 || op->nr_iov > KVC_SIO_MAX_IOV || !op->iov)
		return kvc_err(-EINVAL,
			       "swap %s at offset %llu: %u pieces, not 1 to %u",
			       op_name(op->write), (unsigned long long)op->off,
			       op->nr_iov, KVC_SIO_MAX_IOV);
	if (op->group >= KVC_SIO_GROUPS)
		return kvc_err(-EINVAL, "swap %s: group %u is not below %u",
			       op_name(op->write), op->group, KVC_SIO_GROUPS);
	if (op->off % io->align)
		return kvc_err(
			-EINVAL,
			"swap %s: offset %llu is not a multiple of the direct I/O alignment %u",
			op_name(op->write), (unsigned long long)op->off,
			io->align);
	for (i = 0; i < op->nr_iov; i++) {
		const struct iovec *v = &op->iov[i];

		if ((uintptr_t)v->iov_base % io->align ||
		    v->iov_len % io->align)
			return kvc_err(
				-EINVAL,
				"swap %s at offset %llu: piece %u (%zu bytes at %p) is not aligned to %u",
				op_name(op->write), (unsigned long long)op->off,
				i, v->iov_len, v->iov_base, io->align);
		if (v->iov_len && !v->iov_base)
			return kvc_err(
				-EINVAL,
				"swap %s at offset %llu: piece %u has no memory",
				op_name(op->write), (unsigned long long)op->off,
				i);
		sum += v->iov_len;
		if (sum > (uint64_t)SSIZE_MAX)
			return kvc_err(-EINVAL,
				       "swap %s at offset %llu: too long",
				       op_name(op->write),
				       (unsigned long long)op->off);
	}
	if (!sum)
		return kvc_err(-EINVAL, "swap %s at offset %llu: no bytes",
			       op_name(op->write), (unsigned long long)op->off);
	if (op->off > (uint64_t)INT64_MAX - sum)
		return kvc_err(
			-EINVAL,
			"swap %s of %llu bytes at offset %llu: past the largest file offset",
			op_name(op->write), (unsigned long long)sum,
			(unsigned long long)op->off);
	*bytes = sum;
	return 0;
}

/* Copies the op into @s; -ENOMEM when a slot cannot grow. */
static int slot_fill(struct kvc_sio *io, struct sio_slot *s,
		     const struct kvc_sio_op *op, uint64_t bytes)
{
	if (op->nr_iov > s->iov_cap) {
		struct iovec *v = malloc(KVC_SIO_MAX_IOV * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->iov = v;
		s->iov_cap = KVC_SIO_MAX_IOV;
	}
	memcpy(s->iov, op->iov, op->nr_iov * sizeof(*s->iov));
	s->nr_iov = op->nr_iov;
	s->first = 0;
	s->off = op->off;
	s->bytes = bytes;
	s->done = 0;
	s->group = op->group;
	s->write = op->write;
	s->fixed =
		io->registered && op->nr_iov == 1 &&
		(char *)s->iov[0].iov_base >= (char *)io->reg_base &&
		s->iov[0].iov_len <= io->reg_bytes &&
		(size_t)((char *)s->iov[0].iov_base - (char *)io->reg_base) <=
			io->reg_bytes - s->iov[0].iov_len;
	/* Skip leading empty pieces, as a short transfer would. */
	slot_advance(s, 0);
	return 0;
}

int kvc_sio_queue(struct kvc_sio *io, const struct kvc_sio_op *op)
{
	struct sio_slot *s;
	uint64_t bytes = 0;
	int ret;

	if (!io)
		return kvc_err(-EINVAL, "swap: no engine");
	ret = check_op(io, op, &bytes);
	if (ret)
		return ret;
	if (io->fault) {
		ret = io->fault(io->fault_arg, op->write, op->off, bytes);
		if (ret) {
			note_fail(io, op->group, ret < 0 ? ret : -ret,
				  op->write, op->off, bytes);
			return 0;
		}
	}
	while (io->uring && io->free_slot < 0)
		ring_wait(io);
	s = &io->slots[io->free_slot];
	io->free_slot = s->next_free;
	s->busy = true;
	io->inflight++;
	io->group_inflight[op->group]++;
	ret = slot_fill(io, s, op, bytes);
	if (ret) {
		slot_finish(io, s, ret);
		return 0;
	}
	if (!io->uring) {
		slot_finish(io, s, run_sync(io, s));
		return 0;
	}
	/*
	 * Submitted now, not batched: the caller may go on filling the next
	 * buffer before it waits, and the device should be busy meanwhile.
	 */
	ret = slot_prep(io, s);
	if (ret)
		slot_finish(io, s, ret);
	else
		ring_submit(io);
	return 0;
}

static int report(struct kvc_sio *io, const struct sio_fail *f)
{
	return kvc_err(f->err,
		       "swap %s of %llu bytes at offset %llu failed: %s",
		       op_name(f->write), (unsigned long long)f->bytes,
		       (unsigned long long)f->off, strerror(-f->err));
}

int kvc_sio_wait(struct kvc_sio *io, int group)
{
	struct sio_fail first = { 0 };
	int g;

	if (!io)
		return kvc_err(-EINVAL, "swap: no engine");
	if (group < -1 || group >= KVC_SIO_GROUPS)
		return kvc_err(-EINVAL, "swap: no group %d", group);
	wait_idle(io, group);
	for (g = 0; g < KVC_SIO_GROUPS; g++) {
		struct sio_fail *f = &io->fail[g];

		if (group >= 0 && g != group)
			continue;
		if (f->err && (!first.err || f->seq < first.seq))
			first = *f;
		f->err = 0;
	}
	return first.err ? report(io, &first) : 0;
}

static int sync_uring(struct kvc_sio *io)
{
	struct io_uring_sqe *sqe = ring_sqe(io);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data64(sqe, SIO_SYNC_TAG);
	io->sync_busy = true;
	while (io->sync_busy)
		ring_wait(io);
	return io->sync_res;
}

int kvc_sio_sync(struct kvc_sio *io)
{
	int ret, err;

	if (!io)
		return kvc_err(-EINVAL, "swap: no engine");
	ret = kvc_sio_wait(io, -1);
	err = io->fault ? io->fault(io->fault_arg, true, ~0ull, 0) : 0;
	if (err) {
		err = err < 0 ? err : -err;
	} else if (io->uring) {
		do {
			err = sync_uring(io);
		} while (err == -EINTR);
	} else {
		do {
			err = fdatasync(io->fd) ? -errno : 0;
		} while (err == -EINTR);
	}
	if (!err)
		return ret;
	io->errors++;
	if (ret)
		return ret;
	return kvc_err(err, "swap sync of %s failed: %s", io->path,
		       strerror(-err));
}

int kvc_sio_allocate(struct kvc_sio *io, uint64_t off, uint64_t bytes)
{
	int ret;

	if (!io)
		return kvc_err(-EINVAL, "swap: no engine");
	if (!bytes)
		return 0;
	if (off > (uint64_t)INT64_MAX || bytes > (uint64_t)INT64_MAX)
		return kvc_err(
			-EINVAL,
			"swap: cannot allocate %llu bytes at offset %llu: past the largest file offset",
			(unsigned long long)bytes, (unsigned long long)off);
	do {
		ret = fallocate(io->fd, 0, (off_t)off, (off_t)bytes) ? -errno :
								       0;
	} while (ret == -EINTR);
	if (ret == -EOPNOTSUPP)
		return 0;
	if (ret)
		return kvc_err(
			ret,
			"swap: cannot allocate %llu bytes at offset %llu of %s: %s",
			(unsigned long long)bytes, (unsigned long long)off,
			io->path, strerror(-ret));
	return 0;
}

int kvc_sio_truncate(struct kvc_sio *io, uint64_t bytes)
{
	int ret;

	if (!io)
		return kvc_err(-EINVAL, "swap: no engine");
	if (io->inflight)
		return kvc_err(-EBUSY,
			       "swap: cannot truncate %s with %u ops in flight",
			       io->path, io->inflight);
	if (bytes > (uint64_t)INT64_MAX)
		return kvc_err(-EINVAL, "swap: size %llu is too large",
			       (unsigned long long)bytes);
	do {
		ret = ftruncate(io->fd, (off_t)bytes) ? -errno : 0;
	} while (ret == -EINTR);
	if (ret)
		return kvc_err(
			ret, "swap: cannot set the size of %s to %llu: %s",
			io->path, (unsigned long long)bytes, strerror(-ret));
	return 0;
}

uint32_t kvc_sio_align(const struct kvc_sio *io)
{
	return io->align;
}

const char *kvc_sio_engine(const struct kvc_sio *io)
{
	return io->uring ? "io_uring" : "pread";
}

bool kvc_sio_direct(const struct kvc_sio *io)
{
	return io->direct;
}

void kvc_sio_set_fault(struct kvc_sio *io, kvc_sio_fault_fn fn, void *arg)
{
	io->fault = fn;
	io->fault_arg = arg;
}

uint64_t kvc_sio_errors(const struct kvc_sio *io)
{
	return io->errors;
}
