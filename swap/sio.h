/* SPDX-License-Identifier: MIT */
/*
 * The swap's I/O engine: one file, reads and writes queued up to a queue
 * depth and reaped as they complete, through io_uring where the kernel
 * allows it and pread/pwrite where not; O_DIRECT where the file system
 * takes it, buffered I/O where not. Short transfers are continued, so an
 * op either moves all its bytes or fails.
 */
#ifndef KVC_SWAP_SIO_H
#define KVC_SWAP_SIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Flags of kvc_sio_open(); the values match KVC_SWAP_NO_* and QUIET. */
#define KVC_SIO_NO_URING (1u << 0)
#define KVC_SIO_NO_DIRECT (1u << 1)
#define KVC_SIO_QUIET (1u << 3)

/* Op groups: completion can be awaited per group (double buffering). */
#define KVC_SIO_GROUPS 4

/** KVC_SIO_MAX_IOV - The most iovecs one op takes. */
#define KVC_SIO_MAX_IOV 256

struct kvc_sio;

/**
 * typedef kvc_sio_fault_fn - A fault to inject, for tests.
 * @arg: the hook's argument.
 * @write: the op writes.
 * @off: its file offset.
 * @bytes: its length.
 *
 * Called once per op as it is queued (and for syncs with @bytes 0 and
 * @off ~0). Return: 0 to let it run, or a -errno with which the op then
 * completes without touching the file.
 */
typedef int (*kvc_sio_fault_fn)(void *arg, bool write, uint64_t off,
				uint64_t bytes);

/**
 * struct kvc_sio_op - One read or write.
 * @write: true to write the memory to the file, false to read.
 * @off: file offset (a multiple of kvc_sio_align() under O_DIRECT).
 * @iov: the memory, @nr_iov pieces in order (each address and length
 *       aligned to kvc_sio_align() under O_DIRECT); copied when queued.
 * @nr_iov: 1 to %KVC_SIO_MAX_IOV.
 * @group: below %KVC_SIO_GROUPS.
 *
 * An op of one piece inside the registered buffer uses io_uring's fixed
 * buffer ops.
 */
struct kvc_sio_op {
	bool write;
	uint64_t off;
	const struct iovec *iov;
	uint32_t nr_iov;
	uint32_t group;
};

/**
 * kvc_sio_open() - Open a file for swap I/O.
 * @path: the file; created (0600) when missing.
 * @queue_depth: ops in flight at once, 1 to 4096.
 * @flags: %KVC_SIO_NO_URING, %KVC_SIO_NO_DIRECT, %KVC_SIO_QUIET.
 * @out: set to the engine.
 *
 * Tries O_DIRECT first (unless %KVC_SIO_NO_DIRECT): when the file system
 * refuses it, opens buffered with a one-line notice (kvc_notice()).
 * Likewise io_uring (unless %KVC_SIO_NO_URING): when the ring cannot be
 * set up (old kernel, seccomp, a sysctl), pread/pwrite with a notice.
 *
 * Return: 0; -EINVAL; -ENOMEM; open(2)'s error with a message naming the
 * file.
 */
int kvc_sio_open(const char *path, uint32_t queue_depth, uint32_t flags,
		 struct kvc_sio **out);

/**
 * kvc_sio_close() - Wait for what is in flight, then close.
 * @io: the engine, or NULL.
 */
void kvc_sio_close(struct kvc_sio *io);

/**
 * kvc_sio_register() - Register one buffer for fixed-buffer ops.
 * @io: the engine, nothing in flight.
 * @buf: the buffer (aligned to kvc_sio_align()), or NULL to unregister.
 * @bytes: its size.
 *
 * Without io_uring, or where registration fails (locked-memory limit),
 * ops in it simply run as ordinary ones.
 *
 * Return: 0, or -EBUSY with ops in flight.
 */
int kvc_sio_register(struct kvc_sio *io, void *buf, size_t bytes);

/**
 * kvc_sio_queue() - Queue one op.
 * @io: the engine.
 * @op: the op.
 *
 * When @queue_depth ops are in flight, first waits for one to finish.
 * The pread/pwrite engine runs the op before returning. A failed op
 * (an error, or a transfer that ends early: end of file on a read is
 * -EIO) is remembered, the first failure per group, for
 * kvc_sio_wait().
 *
 * Return: 0, or -EINVAL for a bad op (not queued).
 */
int kvc_sio_queue(struct kvc_sio *io, const struct kvc_sio_op *op);

/**
 * kvc_sio_wait() - Wait until no op of a group is in flight.
 * @io: the engine.
 * @group: the group, or -1 for every group.
 *
 * Return: 0, or the first failure among the group's ops since the last
 * wait on it (then cleared), with a message naming the op.
 */
int kvc_sio_wait(struct kvc_sio *io, int group);

/**
 * kvc_sio_sync() - Make every completed write durable (fdatasync).
 * @io: the engine; waits for every op first.
 *
 * Return: 0, the first failure of an op in flight, or the sync's error.
 */
int kvc_sio_sync(struct kvc_sio *io);

/**
 * kvc_sio_allocate() - Reserve file space [@off, @off + @bytes) so that
 * writes there cannot fail for want of space (fallocate(2); where the
 * file system does not support it, nothing is done).
 * @io: the engine.
 * @off: offset.
 * @bytes: length.
 *
 * Return: 0, -ENOSPC, -EFBIG past the file-size limit, or another error.
 */
int kvc_sio_allocate(struct kvc_sio *io, uint64_t off, uint64_t bytes);

/**
 * kvc_sio_truncate() - Set the file's size.
 * @io: the engine, nothing in flight.
 * @bytes: the size.
 *
 * Return: 0 or ftruncate(2)'s error.
 */
int kvc_sio_truncate(struct kvc_sio *io, uint64_t bytes);

/**
 * kvc_sio_align() - The alignment ops need: the file's O_DIRECT memory
 * and offset alignment (at least 512), or 1 when buffered.
 * @io: the engine.
 *
 * Return: the alignment.
 */
uint32_t kvc_sio_align(const struct kvc_sio *io);

/**
 * kvc_sio_engine() - "io_uring" or "pread".
 * @io: the engine.
 *
 * Return: the name.
 */
const char *kvc_sio_engine(const struct kvc_sio *io);

/**
 * kvc_sio_direct() - Whether O_DIRECT is in use.
 * @io: the engine.
 *
 * Return: true or false.
 */
bool kvc_sio_direct(const struct kvc_sio *io);

/**
 * kvc_sio_set_fault() - Inject faults (tests).
 * @io: the engine.
 * @fn: the hook, or NULL for none.
 * @arg: passed to it.
 */
void kvc_sio_set_fault(struct kvc_sio *io, kvc_sio_fault_fn fn, void *arg);

/**
 * kvc_sio_errors() - Ops and syncs that failed since the engine opened.
 * @io: the engine.
 *
 * Return: the count.
 */
uint64_t kvc_sio_errors(const struct kvc_sio *io);

#endif /* KVC_SWAP_SIO_H */
