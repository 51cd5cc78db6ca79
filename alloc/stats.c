// SPDX-License-Identifier: MIT
/*
 * The stats page: a pool's counters, its latest ladder sample and a ring of
 * recent ones, published in one fixed-size file under /dev/shm, and the
 * reader that validates such pages. The writer never
 * blocks on readers (a seqlock); a reader never trusts a page it has not
 * checked (owner, mode, size, magic, version, layout size, pid).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stddef.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <kvc/error.h>
#include <kvc/stats.h>

#include "error.h"
#include "stats.h"

#define STATS_FILE_BYTES KVC_STATS_FILE_BYTES
#define READ_RETRIES 10000

_Static_assert(sizeof(struct kvc_stats_page) <= STATS_FILE_BYTES,
	       "stats page outgrew its file");

struct kvc_stats_pub {
	struct kvc_stats_page *page;
	char path[256];
};

static atomic_uint next_page_nr;

static uint64_t now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Field 22 of /proc/PID/stat; 0 when it cannot be read. */
static uint64_t proc_start_time(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	ssize_t len;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return 0;
	buf[len] = '\0';
	/* The command name may hold spaces and ')': skip past the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	for (field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &start) != 1)
		return 0;
	return start;
}

const char *kvc_stats_dir(void)
{
	const char *dir = getenv("KVC_STATS_DIR");

	return dir && *dir ? dir : KVC_STATS_DIR;
}

int kvc_stats_pub_open(const char *backend, int device, const char *name,
		       struct kvc_stats_pub **out)
{
	struct kvc_stats_pub *pub;
	struct kvc_stats_page *page;
	int fd, err;

	pub = calloc(1, sizeof(*pub));
	if (!pub)
		return kvc_err(-ENOMEM, "stats page: out of memory");
	if (snprintf(pub->path, sizeof(pub->path),
		     "%s/" KVC_STATS_PREFIX "%d.%u", kvc_stats_dir(),
		     (int)getpid(), atomic_fetch_add(&next_page_nr, 1)) >=
	    (int)sizeof(pub->path)) {
		err = kvc_err(-ENAMETOOLONG,
			      "stats page: directory name too long: %s",
			      kvc_stats_dir());
		goto err_free;
	}

	fd = open(pub->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		err = -errno;
		kvc_err(err, "stats page %s: %s", pub->path, strerror(errno));
		goto err_free;
	}
	/* umask may have cleared bits; readers insist on exactly 0600. */
	if (fchmod(fd, 0600) || ftruncate(fd, STATS_FILE_BYTES)) {
		err = -errno;
		kvc_err(err, "stats page %s: %s", pub->path, strerror(errno));
		goto err_unlink;
	}
	page = mmap(NULL, STATS_FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
		    fd, 0);
	if (page == MAP_FAILED) {
		err = -errno;
		kvc_err(err, "stats page %s: mmap: %s", pub->path,
			strerror(errno));
		goto err_unlink;
	}
	close(fd);
	page->version = KVC_STATS_VERSION;
	page->page_bytes = sizeof(*page);
	page->pid = (uint32_t)getpid();
	page->start_time = proc_start_time(getpid());
	page->device = device;
	snprintf(page->backend, sizeof(page->backend), "%s", backend);
	snprintf(page->name, sizeof(page->name), "%s", name ? name : "");
	page->created_ns = page->updated_ns = now_ns(CLOCK_REALTIME_COARSE);
	/* Magic last: a reader racing creation sees no page, not half of one. */
	__atomic_store_n(&page->magic, KVC_STATS_MAGIC, __ATOMIC_RELEASE);
	pub->page = page;
	*out = pub;
	return 0;

err_unlink:
	unlink(pub->path);
	close(fd);
err_free:
	free(pub);
	return err;
}

void kvc_stats_pub_update(struct kvc_stats_pub *pub,
			  const struct kvc_pool_stats *stats,
			  const uint64_t *fill_hist)
{
	struct kvc_stats_page *page;
	uint32_t seq;

	if (!pub)
		return;
	page = pub->page;
	seq = __atomic_load_n(&page->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&page->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	page->stats = *stats;
	memcpy(page->fill_hist, fill_hist, sizeof(page->fill_hist));
	/* Coarse clock: a few ns instead of tens, on every pool operation. */
	page->updated_ns = now_ns(CLOCK_REALTIME_COARSE);
	__atomic_store_n(&page->seq, seq + 2, __ATOMIC_RELEASE);
}

void kvc_stats_pub_sample(struct kvc_stats_pub *pub,
			  const struct kvc_ladder *ladder,
			  const struct kvc_stats_sample *sample,
			  const struct kvc_ladder_peaks *peaks)
{
	struct kvc_stats_page *page;
	uint32_t seq, head;

	if (!pub)
		return;
	page = pub->page;
	seq = __atomic_load_n(&page->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&page->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	head = page->ring_head % KVC_STATS_RING;
	page->ring[head] = *sample;
	page->ring_head = (head + 1) % KVC_STATS_RING;
	if (page->ring_count < KVC_STATS_RING)
		page->ring_count++;
	page->samples++;
	page->ladder = *ladder;
	page->peaks = *peaks;
	page->updated_ns = now_ns(CLOCK_REALTIME_COARSE);
	__atomic_store_n(&page->seq, seq + 2, __ATOMIC_RELEASE);
}

const char *kvc_stats_pub_path(const struct kvc_stats_pub *pub)
{
	return pub ? pub->path : NULL;
}

void kvc_stats_pub_close(struct kvc_stats_pub *pub)
{
	if (!pub)
		return;
	munmap(pub->page, STATS_FILE_BYTES);
	unlink(pub->path);
	free(pub);
}

/* "kvc.<pid>.<n>" -> pid, or 0 when the name is not a page's. */
static pid_t name_pid(const char *name)
{
	unsigned long pid;
	char *end;

	if (strncmp(name, KVC_STATS_PREFIX, strlen(KVC_STATS_PREFIX)))
		return 0;
	name += strlen(KVC_STATS_PREFIX);
	if (*name < '0' || *name > '9')
		return 0;
	pid = strtoul(name, &end, 10);
	if (*end != '.' || pid == 0 || pid > INT_MAX)
		return 0;
	strtoul(end + 1, &end, 10);
	if (*end != '\0' || end[-1] == '.')
		return 0;
	return (pid_t)pid;
}

/* One pread of @bytes at @off: never faults, even if the file shrinks. */
static int read_at(int fd, void *buf, size_t bytes, off_t off)
{
	ssize_t n = pread(fd, buf, bytes, off);

	if (n < 0)
		return -errno;
	return (size_t)n == bytes ? 0 : -EPROTO;
}

/*
 * The reader's half of the seqlock, through pread: seq, then the page,
 * then seq again, each a separate system call so none is reordered. A
 * writer that died mid-update leaves seq odd for good; then there is no
 * point in waiting.
 */
static int copy_page(int fd, struct kvc_stats_page *copy, bool writer_alive)
{
	const off_t seq_off = offsetof(struct kvc_stats_page, seq);
	uint32_t s1, s2;
	int i, err;

	for (i = 0; i < READ_RETRIES; i++) {
		err = read_at(fd, &s1, sizeof(s1), seq_off);
		if (err)
			return err;
		if (s1 & 1) {
			if (!writer_alive)
				return -EAGAIN;
			sched_yield();
			continue;
		}
		err = read_at(fd, copy, sizeof(*copy), 0);
		if (!err)
			err = read_at(fd, &s2, sizeof(s2), seq_off);
		if (err)
			return err;
		if (s1 == s2)
			return 0;
	}
	return -EAGAIN;
}

int kvc_stats_read(const char *path, struct kvc_stats_snapshot *snap)
{
	struct kvc_stats_page *page = &snap->page;
	const char *base;
	struct stat st;
	pid_t pid;
	int fd, err;

	memset(snap, 0, sizeof(*snap));
	if (snprintf(snap->path, sizeof(snap->path), "%s", path) >=
	    (int)sizeof(snap->path))
		return kvc_err(-EINVAL, "%s: path too long", path);
	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	pid = name_pid(base);
	if (!pid)
		return kvc_err(-EPROTO, "%s: not a kvc stats page name", path);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		if (err == -ELOOP)
			return kvc_err(-EPERM,
				       "%s: is a symbolic link, refused", path);
		return kvc_err(err, "%s: %s", path, strerror(errno));
	}
	if (fstat(fd, &st)) {
		err = kvc_err(-errno, "%s: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		err = kvc_err(-EPROTO, "%s: not a regular file", path);
		goto out_close;
	}
	if (st.st_uid != geteuid()) {
		err = kvc_err(-EPERM, "%s: owned by uid %u, not by you (%u)",
			      path, (unsigned)st.st_uid, (unsigned)geteuid());
		goto out_close;
	}
	if ((st.st_mode & 07777) != 0600) {
		err = kvc_err(-EPERM, "%s: mode %04o, expected 0600", path,
			      (unsigned)(st.st_mode & 07777));
		goto out_close;
	}
	/*
	 * Pages of other versions have other sizes: name the version when
	 * the file starts like a page, rather than only its size.
	 */
	if (st.st_size != STATS_FILE_BYTES) {
		if (st.st_size >= 16 && !read_at(fd, page, 16, 0) &&
		    page->magic == KVC_STATS_MAGIC &&
		    page->version != KVC_STATS_VERSION)
			err = kvc_err(
				-EPROTO,
				"%s: layout version %u, this kvc reads only version %u: the pool runs another kvc",
				path, page->version, KVC_STATS_VERSION);
		else
			err = kvc_err(-EPROTO, "%s: %lld bytes, expected %u",
				      path, (long long)st.st_size,
				      STATS_FILE_BYTES);
		goto out_close;
	}
	/* The header is written once, before the magic: check it first. */
	err = read_at(fd, page, sizeof(*page), 0);
	if (err) {
		kvc_err(err, "%s: cannot read: %s", path, strerror(-err));
		goto out_close;
	}
	if (page->magic != KVC_STATS_MAGIC) {
		err = kvc_err(-EPROTO, "%s: bad magic, not a kvc stats page",
			      path);
		goto out_close;
	}
	if (page->version != KVC_STATS_VERSION) {
		err = kvc_err(
			-EPROTO,
			"%s: layout version %u, this kvc reads only version %u: the pool runs another kvc",
			path, page->version, KVC_STATS_VERSION);
		goto out_close;
	}
	if (page->page_bytes != sizeof(*page)) {
		err = kvc_err(-EPROTO, "%s: layout of %u bytes, expected %zu",
			      path, page->page_bytes, sizeof(*page));
		goto out_close;
	}
	if (page->pid != (uint32_t)pid) {
		err = kvc_err(-EPROTO, "%s: names pid %d but holds pid %u",
			      path, (int)pid, page->pid);
		goto out_close;
	}
	/*
	 * A publisher that could not read its start time is judged by its
	 * pid alone, so its page is never removed while it runs.
	 */
	if (page->start_time)
		snap->alive = proc_start_time(pid) == page->start_time;
	else
		snap->alive = !kill(pid, 0) || errno == EPERM;
	err = copy_page(fd, page, snap->alive);
	if (err == -EAGAIN && !snap->alive) {
		/* Its writer died mid-update: stale, counters unreliable. */
		snap->torn = true;
		err = read_at(fd, page, sizeof(*page), 0);
	}
	if (err) {
		kvc_err(err, "%s: %s", path,
			err == -EAGAIN ? "writer busy, no consistent copy" :
					 "cannot read");
		goto out_close;
	}
	/* The copy is re-read: the header must still hold. */
	if (page->magic != KVC_STATS_MAGIC ||
	    page->version != KVC_STATS_VERSION ||
	    page->page_bytes != sizeof(*page) || page->pid != (uint32_t)pid) {
		err = kvc_err(-EPROTO, "%s: header changed while reading",
			      path);
		goto out_close;
	}
	/* Indices a reader will follow: never trusted. */
	if (page->ring_head >= KVC_STATS_RING ||
	    page->ring_count > KVC_STATS_RING ||
	    page->ladder.nr_orders > KVC_LADDER_ORDERS) {
		err = kvc_err(
			-EPROTO,
			"%s: malformed sample ring (head %u, count %u, orders %u)",
			path, page->ring_head, page->ring_count,
			page->ladder.nr_orders);
		goto out_close;
	}
	page->backend[sizeof(page->backend) - 1] = '\0';
	page->name[sizeof(page->name) - 1] = '\0';
	err = 0;
out_close:
	close(fd);
	return err;
}

static int snap_cmp(const void *a, const void *b)
{
	const struct kvc_stats_snapshot *x = a, *y = b;

	if (x->page.pid != y->page.pid)
		return x->page.pid < y->page.pid ? -1 : 1;
	return strcmp(x->path, y->path);
}

int kvc_stats_list(const char *dir, pid_t pid,
		   struct kvc_stats_snapshot **snaps, uint32_t *n,
		   void (*on_bad)(const char *path, int err, const char *msg,
				  void *arg),
		   void *arg)
{
	struct kvc_stats_snapshot *arr = NULL, *grown;
	uint32_t count = 0, cap = 0;
	struct dirent *de;
	char path[512];
	DIR *d;
	int err;

	if (!dir)
		dir = kvc_stats_dir();
	*snaps = NULL;
	*n = 0;
	d = opendir(dir);
	if (!d)
		return kvc_err(-errno, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		pid_t owner = name_pid(de->d_name);

		if (!owner || (pid && owner != pid))
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(arr, cap * sizeof(*arr));
			if (!grown) {
				free(arr);
				closedir(d);
				return kvc_err(-ENOMEM, "out of memory");
			}
			arr = grown;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		err = kvc_stats_read(path, &arr[count]);
		if (err) {
			if (on_bad && err != -ENOENT)
				on_bad(path, err, kvc_last_error(), arg);
			continue;
		}
		count++;
	}
	closedir(d);
	if (count)
		qsort(arr, count, sizeof(*arr), snap_cmp);
	*snaps = arr;
	*n = count;
	return 0;
}

int kvc_stats_remove_stale(const char *path)
{
	struct kvc_stats_snapshot snap;
	int err;

	err = kvc_stats_read(path, &snap);
	if (err)
		return err;
	if (snap.alive)
		return kvc_err(-EBUSY, "%s: process %u is still running", path,
			       snap.page.pid);
	if (unlink(path))
		return kvc_err(-errno, "%s: %s", path, strerror(errno));
	return 0;
}
