// SPDX-License-Identifier: MIT
/*
 * The swap's journal: checksummed records appended to a file with plain
 * pwrite() and made durable with fdatasync() before the append returns,
 * replayed in order at open. Records are small and rare next to the data
 * they describe, so nothing here is asynchronous.
 *
 * Never lets a torn record stand: replay stops at the first record that is
 * short, fails its checksum or breaks the sequence, and cuts the file
 * there, so the next append follows valid records. Never replaces the
 * journal in place: a rewrite goes to "<path>.tmp" and is renamed over it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kvc/error.h>

#include "../alloc/error.h"
#include "crc32c.h"
#include "journal.h"

/* The format is little-endian; so is every machine this is built for. */
_Static_assert(
	__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	"journal format is little-endian: add byte swaps for this machine");
_Static_assert(sizeof(struct kvc_jrec_head) == 24, "record head is 24 bytes");

#define JREC_ALIGN 8u

/**
 * struct kvc_journal - An open journal.
 * @fd: the file, read-write.
 * @path: its name, for messages and rewrites.
 * @end: bytes of valid records: where the next one goes.
 * @records: valid records.
 * @torn: bytes cut off at open.
 * @dirty: a failed append could not be cut back; the next append cuts
 *         the file to @end before writing.
 */
struct kvc_journal {
	int fd;
	char *path;
	uint64_t end;
	uint64_t records;
	uint64_t torn;
	bool dirty;
};

static const uint8_t zeros[JREC_ALIGN];

static uint64_t pad_of(uint32_t len)
{
	return (JREC_ALIGN - len % JREC_ALIGN) % JREC_ALIGN;
}

static uint32_t rec_crc(const struct kvc_jrec_head *h, const void *payload,
			uint32_t len)
{
	struct kvc_jrec_head c = *h;
	uint32_t crc;

	c.crc = 0;
	crc = kvc_crc32c(0, &c, sizeof(c));
	return len ? kvc_crc32c(crc, payload, len) : crc;
}

/* Returns bytes read (fewer only at end of file) or -errno. */
static int64_t pread_full(int fd, void *buf, uint64_t len, uint64_t off)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		done += (uint64_t)r;
	}
	return (int64_t)done;
}

static int pwrite_full(int fd, const void *buf, uint64_t len, uint64_t off)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		/* A write that makes no progress would loop for ever. */
		if (r == 0)
			return -EIO;
		done += (uint64_t)r;
	}
	return 0;
}

/* Head, payload and padding of record @seqno at @off. */
static int write_rec(int fd, uint64_t off, uint64_t seqno, uint32_t kind,
		     const void *payload, uint32_t len)
{
	struct kvc_jrec_head h = {
		.magic = KVC_JREC_MAGIC,
		.kind = kind,
		.len = len,
		.seqno = seqno,
	};
	int err;

	h.crc = rec_crc(&h, payload, len);
	err = pwrite_full(fd, &h, sizeof(h), off);
	if (!err && len)
		err = pwrite_full(fd, payload, len, off + sizeof(h));
	if (!err && pad_of(len))
		err = pwrite_full(fd, zeros, pad_of(len),
				  off + sizeof(h) + len);
	return err;
}

static int fdatasync_retry(int fd)
{
	while (fdatasync(fd)) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* Cut the file to @len and make the cut durable. */
static int cut(int fd, uint64_t len)
{
	while (ftruncate(fd, (off_t)len)) {
		if (errno != EINTR)
			return -errno;
	}
	return fdatasync_retry(fd);
}

/*
 * Checks the record at @off and reads its payload into @buf (grown as
 * needed). Returns 1 for a valid record, 0 for a torn or foreign one
 * (replay ends there: short, bad magic, kind 0, too long, out of sequence,
 * padding not zero, crc wrong), -errno when the file cannot be read.
 */
static int read_rec(int fd, uint64_t off, uint64_t size, uint64_t seqno,
		    struct kvc_jrec_head *h, void **buf, uint64_t *cap)
{
	uint64_t body;
	int64_t r;

	if (size - off < sizeof(*h))
		return 0;
	r = pread_full(fd, h, sizeof(*h), off);
	if (r < 0)
		return (int)r;
	if ((uint64_t)r < sizeof(*h))
		return 0;
	if (h->magic != KVC_JREC_MAGIC || !h->kind || h->len > KVC_JREC_MAX ||
	    h->seqno != seqno || size - off < kvc_journal_rec_bytes(h->len))
		return 0;
	/* Payload and padding together; never 0 bytes, so that an empty
	 * payload is a valid pointer too. */
	body = kvc_journal_rec_bytes(h->len) - sizeof(*h);
	if (*cap < body || !*buf) {
		uint64_t want = body > 4096 ? body : 4096;
		void *p = realloc(*buf, want);

		if (!p)
			return -ENOMEM;
		*buf = p;
		*cap = want;
	}
	r = pread_full(fd, *buf, body, off + sizeof(*h));
	if (r < 0)
		return (int)r;
	if ((uint64_t)r < body)
		return 0;
	/* The padding is not under the crc: zeros are all we ever write. */
	if (memcmp((char *)*buf + h->len, zeros, body - h->len))
		return 0;
	return rec_crc(h, *buf, h->len) == h->crc;
}

static int replay(struct kvc_journal *j, kvc_journal_apply_fn apply, void *arg)
{
	struct kvc_jrec_head h;
	void *buf = NULL;
	uint64_t cap = 0, size;
	struct stat st;
	int err = 0;

	if (fstat(j->fd, &st))
		return kvc_err(-errno, "journal %s: stat: %s", j->path,
			       strerror(errno));
	size = (uint64_t)st.st_size;
	for (;;) {
		int ok = read_rec(j->fd, j->end, size, j->records + 1, &h, &buf,
				  &cap);

		if (ok < 0) {
			err = kvc_err(ok,
				      "journal %s: reading record at %" PRIu64
				      ": %s",
				      j->path, j->end, strerror(-ok));
			goto out;
		}
		if (!ok)
			break;
		if (apply) {
			/* Cleared so that a callback failing silently is told
			 * from one that said why. */
			kvc_err(0, "%s", "");
			err = apply(arg, h.kind, buf, h.len);
			if (err) {
				if (!kvc_last_error()[0])
					kvc_err(err, "callback failed: %s",
						strerror(-err));
				err = kvc_err(err,
					      "journal %s: record %" PRIu64
					      " (kind %" PRIu32 "): %s",
					      j->path, h.seqno, h.kind,
					      kvc_last_error());
				goto out;
			}
		}
		j->end += kvc_journal_rec_bytes(h.len);
		j->records++;
	}
	/*
	 * Nothing valid, and the first word is not a record's: another
	 * file, not a journal a crash tore. Refused, never cut.
	 */
	if (!j->records && size >= sizeof(uint32_t)) {
		uint32_t magic = 0;

		if (pread(j->fd, &magic, sizeof(magic), 0) ==
			    (ssize_t)sizeof(magic) &&
		    magic != KVC_JREC_MAGIC) {
			err = kvc_err(
				-EINVAL,
				"journal %s: not a kvc journal (it does not start with a record)",
				j->path);
			goto out;
		}
	}
	if (j->end < size) {
		j->torn = size - j->end;
		err = cut(j->fd, j->end);
		if (err)
			err = kvc_err(
				err,
				"journal %s: cutting the torn tail at %" PRIu64
				": %s",
				j->path, j->end, strerror(-err));
	}
out:
	free(buf);
	return err;
}

int kvc_journal_open(const char *path, bool fresh, kvc_journal_apply_fn apply,
		     void *arg, struct kvc_journal **out)
{
	struct kvc_journal *j;
	struct stat st;
	int err;

	if (!path || !path[0] || !out)
		return kvc_err(-EINVAL, "kvc_journal_open: %s",
			       out ? "no path" : "NULL out");
	*out = NULL;
	j = calloc(1, sizeof(*j));
	if (!j)
		return kvc_err(-ENOMEM, "journal %s: out of memory", path);
	j->path = strdup(path);
	if (!j->path) {
		err = kvc_err(-ENOMEM, "journal %s: out of memory", path);
		goto err_free;
	}
	j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->fd < 0) {
		err = kvc_err(-errno, "journal %s: open: %s", path,
			      strerror(errno));
		goto err_free;
	}
	if (fstat(j->fd, &st)) {
		err = kvc_err(-errno, "journal %s: stat: %s", path,
			      strerror(errno));
		goto err_close;
	}
	if (!S_ISREG(st.st_mode)) {
		err = kvc_err(-EINVAL, "journal %s: not a regular file", path);
		goto err_close;
	}
	if (fresh) {
		err = cut(j->fd, 0);
		if (err) {
			err = kvc_err(err, "journal %s: emptying: %s", path,
				      strerror(-err));
			goto err_close;
		}
	} else {
		err = replay(j, apply, arg);
		if (err)
			goto err_close;
	}
	*out = j;
	return 0;

err_close:
	close(j->fd);
err_free:
	free(j->path);
	free(j);
	return err;
}

void kvc_journal_close(struct kvc_journal *j)
{
	if (!j)
		return;
	close(j->fd);
	free(j->path);
	free(j);
}

int kvc_journal_append(struct kvc_journal *j, uint32_t kind,
		       const void *payload, uint32_t len)
{
	int err;

	if (!j)
		return kvc_err(-EINVAL, "kvc_journal_append: NULL journal");
	if (!kind || len > KVC_JREC_MAX || (len && !payload))
		return kvc_err(-EINVAL,
			       "journal %s: append: bad record (kind %" PRIu32
			       ", %" PRIu32 " bytes%s)",
			       j->path, kind, len,
			       len && !payload ? ", no payload" : "");
	if (j->dirty) {
		err = cut(j->fd, j->end);
		if (err)
			return kvc_err(
				err, "journal %s: cutting a failed append: %s",
				j->path, strerror(-err));
		j->dirty = false;
	}
	err = write_rec(j->fd, j->end, j->records + 1, kind, payload, len);
	if (!err)
		err = fdatasync_retry(j->fd);
	if (err) {
		/* Best effort; if it fails the next append tries again. */
		if (cut(j->fd, j->end))
			j->dirty = true;
		return kvc_err(err, "journal %s: append at %" PRIu64 ": %s",
			       j->path, j->end, strerror(-err));
	}
	j->end += kvc_journal_rec_bytes(len);
	j->records++;
	return 0;
}

/* fsync() the directory holding @path, so that a rename in it lasts. */
static int sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, err = 0;

	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return -ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -errno;
	/* Some file systems cannot sync a directory (EINVAL): nothing more
	 * can be done there. */
	if (fsync(fd) && errno != EINVAL)
		err = -errno;
	close(fd);
	return err;
}

int kvc_journal_rewrite(struct kvc_journal *j, const struct kvc_jrec *recs,
			uint32_t n)
{
	uint64_t off = 0;
	char *tmp;
	uint32_t i;
	int fd, err;

	if (!j)
		return kvc_err(-EINVAL, "kvc_journal_rewrite: NULL journal");
	if (n && !recs)
		return kvc_err(-EINVAL, "journal %s: rewrite: NULL records",
			       j->path);
	for (i = 0; i < n; i++) {
		if (!recs[i].kind || recs[i].len > KVC_JREC_MAX ||
		    (recs[i].len && !recs[i].payload))
			return kvc_err(
				-EINVAL,
				"journal %s: rewrite: bad record %" PRIu32
				" (kind %" PRIu32 ", %" PRIu32 " bytes%s)",
				j->path, i, recs[i].kind, recs[i].len,
				recs[i].len && !recs[i].payload ?
					", no payload" :
					"");
	}
	if (asprintf(&tmp, "%s.tmp", j->path) < 0)
		return kvc_err(-ENOMEM, "journal %s: out of memory", j->path);
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = kvc_err(-errno, "journal %s: rewrite: open %s: %s",
			      j->path, tmp, strerror(errno));
		free(tmp);
		return err;
	}
	for (i = 0; i < n; i++) {
		err = write_rec(fd, off, (uint64_t)i + 1, recs[i].kind,
				recs[i].payload, recs[i].len);
		if (err) {
			err = kvc_err(err,
				      "journal %s: rewrite: writing %s: %s",
				      j->path, tmp, strerror(-err));
			goto err_unlink;
		}
		off += kvc_journal_rec_bytes(recs[i].len);
	}
	err = fdatasync_retry(fd);
	if (err) {
		err = kvc_err(err, "journal %s: rewrite: syncing %s: %s",
			      j->path, tmp, strerror(-err));
		goto err_unlink;
	}
	if (rename(tmp, j->path)) {
		err = kvc_err(-errno, "journal %s: rewrite: renaming %s: %s",
			      j->path, tmp, strerror(errno));
		goto err_unlink;
	}
	free(tmp);
	/*
	 * The path names the new file from here on: appends must go to it
	 * even if the directory cannot be synced, or they would be lost.
	 */
	close(j->fd);
	j->fd = fd;
	j->end = off;
	j->records = n;
	j->dirty = false;
	err = sync_dir(j->path);
	if (err)
		return kvc_err(err,
			       "journal %s: rewrite: syncing its directory: %s",
			       j->path, strerror(-err));
	return 0;

err_unlink:
	close(fd);
	unlink(tmp);
	free(tmp);
	return err;
}

uint64_t kvc_journal_bytes(const struct kvc_journal *j)
{
	return j ? j->end : 0;
}

uint64_t kvc_journal_records(const struct kvc_journal *j)
{
	return j ? j->records : 0;
}

uint64_t kvc_journal_torn(const struct kvc_journal *j)
{
	return j ? j->torn : 0;
}
