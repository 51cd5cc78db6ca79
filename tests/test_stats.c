/* Description: stats pages: publishing, reading back, listing, refusing bad pages (other layout versions too), stale pages, the fragmentation and compaction fields, ladder samples and their ring, seqlock consistency under a live writer */
// SPDX-License-Identifier: MIT
/*
 * Tests of the shared-memory stats page written against include/kvc/stats.h
 * and include/kvc/pool.h. Each test gets its own directory through
 * $KVC_STATS_DIR. Forged pages are copies of a real pool's page with one
 * thing changed, so each refusal has exactly one cause.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include <kvc/kvc.h>

#define GRAN (64ull << 10)
#define BLOCK 4096ull
#define BPC ((uint32_t)(GRAN / BLOCK))
#define PAGE_FILE_BYTES KVC_STATS_FILE_BYTES
#define PAGE_V2_FILE_BYTES 4096 /* version 2 pages were one 4 KiB page */

struct fixture {
	char dir[128];
	struct kvc_backend *be;
	struct kvc_pool *pool;
	struct kvc_pool_params params;
};

/* ------------------------------------------------------------------ */
/* helpers */

/* clang-format off */
#define STATS_FIELDS(X) \
	X(block_bytes) \
	X(chunk_bytes) \
	X(blocks_per_chunk) \
	X(blocks_total) \
	X(blocks_live) \
	X(blocks_free) \
	X(blocks_free_mapped) \
	X(chunks_total) \
	X(chunks_mapped) \
	X(chunks_empty) \
	X(chunks_partial) \
	X(chunks_full) \
	X(bytes_reserved) \
	X(bytes_mapped) \
	X(bytes_live) \
	X(blocks_live_hwm) \
	X(bytes_mapped_hwm) \
	X(alloc_calls) \
	X(free_calls) \
	X(alloc_failures) \
	X(unmap_failures) \
	X(backend_create) \
	X(backend_map) \
	X(backend_set_access) \
	X(backend_unmap) \
	X(backend_release) \
	X(backend_copy) \
	X(free_blocks_in_partial_chunks) \
	X(free_chunks_mapped) \
	X(chunks_reclaimable) \
	X(compactions) \
	X(blocks_moved) \
	X(bytes_copied) \
	X(chunks_vacated) \
	X(chunks_released) \
	X(compact_failures) \
	X(fences_pending) \
	X(chunks_unmap_deferred) \
	X(map_ns) \
	X(map_ns_max) \
	X(unmap_ns) \
	X(unmap_ns_max) \
	X(placement)

/* The doubles, after the counters. */
#define STATS_REALS(X) \
	X(frag_ratio) \
	X(unusable_index) \
	X(fragmentation_index) \
	X(compact_score)
/* clang-format on */

#define STATS_SIZE(f) +sizeof(((struct kvc_pool_stats *)0)->f)
_Static_assert(0 STATS_FIELDS(STATS_SIZE) STATS_REALS(STATS_SIZE) ==
		       sizeof(struct kvc_pool_stats),
	       "the test compares every member of struct kvc_pool_stats");

/* Size of a version 1 page: the same, without the fields version 2 added. */
#define PAGE_V1_BYTES                     \
	(sizeof(struct kvc_stats_page) -  \
	 (sizeof(struct kvc_pool_stats) - \
	  offsetof(struct kvc_pool_stats, free_blocks_in_partial_chunks)))

static void expect_same_stats(const struct kvc_pool_stats *page,
			      const uint64_t *page_hist,
			      const struct kvc_pool_stats *pool,
			      const uint64_t *pool_hist, const char *when)
{
	int i;

#define CMP(f)                                                  \
	if (page->f != pool->f)                                 \
		fail_msg("%s: page says " #f " = %" PRIu64 ", " \
			 "kvc_pool_get_stats() says %" PRIu64,  \
			 when, page->f, pool->f);
	STATS_FIELDS(CMP)
#undef CMP
	/* Bit for bit: infinity and -1 must come through as they are. */
#define CMP_REAL(f)                                      \
	if (memcmp(&page->f, &pool->f, sizeof(double)))  \
		fail_msg("%s: page says " #f " = %g, "   \
			 "kvc_pool_get_stats() says %g", \
			 when, page->f, pool->f);
	STATS_REALS(CMP_REAL)
#undef CMP_REAL
	for (i = 0; i < KVC_FILL_BUCKETS; i++)
		if (page_hist[i] != pool_hist[i])
			fail_msg("%s: page fill_hist[%d] = %" PRIu64 ", pool "
				 "says %" PRIu64,
				 when, i, page_hist[i], pool_hist[i]);
}

static void page_matches_pool(struct kvc_pool *pool, const char *when)
{
	struct kvc_stats_snapshot snap;
	struct kvc_pool_stats st;
	uint64_t hist[KVC_FILL_BUCKETS];
	int err;

	CHECK(pool);
	kvc_pool_get_stats(pool, &st, hist);
	err = kvc_stats_read(kvc_pool_stats_path(pool), &snap);
	if (err)
		fail_msg("%s: kvc_stats_read(own page) = %d: %s", when, err,
			 kvc_last_error());
	expect_same_stats(&snap.page.stats, snap.page.fill_hist, &st, hist,
			  when);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	/* Make foreign-owned or read-only entries removable too. */
	return remove(path);
}

static void page_name(const struct fixture *fx, char *buf, size_t len, long pid,
		      unsigned nr)
{
	snprintf(buf, len, "%s/" KVC_STATS_PREFIX "%ld.%u", fx->dir, pid, nr);
}

/* A valid page's bytes: the own pool's page as read back. */
static void good_page(struct fixture *fx, struct kvc_stats_page *page)
{
	struct kvc_stats_snapshot snap;
	int err = kvc_stats_read(kvc_pool_stats_path(fx->pool), &snap);

	if (err)
		fail_msg("kvc_stats_read(own page) = %d: %s", err,
			 kvc_last_error());
	*page = snap.page;
}

/* Write @page padded with zeros to @bytes, then set @mode exactly. */
static void write_page(const char *path, const struct kvc_stats_page *page,
		       size_t bytes, mode_t mode)
{
	char *buf = calloc(1, bytes ? bytes : 1);
	int fd;

	assert_non_null(buf);
	memcpy(buf, page, bytes < sizeof(*page) ? bytes : sizeof(*page));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0)
		fail_msg("create %s: %s", path, strerror(errno));
	assert_int_equal(write(fd, buf, bytes), (ssize_t)bytes);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	free(buf);
}

static void expect_read_err(const char *path, int want, const char *what)
{
	struct kvc_stats_snapshot snap;
	int err = kvc_stats_read(path, &snap);

	if (want ? err != want : (err >= 0 || err == -ENOENT))
		fail_msg("%s: kvc_stats_read() = %d, expected %s%d (%s)", what,
			 err, want ? "" : "a refusal, not ",
			 want ? want : -ENOENT, kvc_last_error());
	if (!kvc_last_error()[0])
		fail_msg("%s: refused without a message", what);
}

struct bad_seen {
	char path[PATH_MAX];
	int err;
	char msg[256];
};

struct bad_log {
	struct bad_seen seen[64];
	int n;
};

static void on_bad(const char *path, int err, const char *msg, void *arg)
{
	struct bad_log *log = arg;

	if (log->n < 64) {
		snprintf(log->seen[log->n].path, sizeof(log->seen[0].path),
			 "%s", path);
		log->seen[log->n].err = err;
		snprintf(log->seen[log->n].msg, sizeof(log->seen[0].msg), "%s",
			 msg ? msg : "");
	}
	log->n++;
}

static const struct bad_seen *bad_find(const struct bad_log *log,
				       const char *path)
{
	int i;

	for (i = 0; i < log->n && i < 64; i++)
		if (!strcmp(log->seen[i].path, path))
			return &log->seen[i];
	return NULL;
}

static uint32_t list_count(const char *dir, pid_t pid)
{
	struct kvc_stats_snapshot *snaps = NULL;
	uint32_t n = 0;
	int err = kvc_stats_list(dir, pid, &snaps, &n, NULL, NULL);

	if (err)
		fail_msg("kvc_stats_list(%s) = %d: %s", dir, err,
			 kvc_last_error());
	free(snaps);
	return n;
}

/* ------------------------------------------------------------------ */
/* fixtures */

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct stat st;

	if (!fx)
		return -1;
	/* Where pages really live when it is usable; /tmp otherwise. */
	if (!stat("/dev/shm", &st) && S_ISDIR(st.st_mode) &&
	    !access("/dev/shm", W_OK))
		snprintf(fx->dir, sizeof(fx->dir), "/dev/shm/kvc-test-XXXXXX");
	else
		snprintf(fx->dir, sizeof(fx->dir), "/tmp/kvc-test-XXXXXX");
	if (!mkdtemp(fx->dir)) {
		perror("mkdtemp");
		free(fx);
		return -1;
	}
	setenv("KVC_STATS_DIR", fx->dir, 1);
	if (kvc_backend_open_host(GRAN, &fx->be)) {
		fprintf(stderr, "kvc_backend_open_host: %s\n",
			kvc_last_error());
		rmdir(fx->dir);
		free(fx);
		return -1;
	}
	kvc_pool_params_init(&fx->params);
	fx->params.block_bytes = BLOCK;
	fx->params.capacity_blocks = 8 * BPC;
	fx->params.empty_chunks_kept = 1;
	fx->params.backend = fx->be;
	fx->params.name = "stats-test";
	fx->params.flags = 0;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	kvc_pool_destroy(fx->pool);
	kvc_backend_close(fx->be);
	nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	unsetenv("KVC_STATS_DIR");
	free(fx);
	return 0;
}

static struct kvc_pool *pool_open(struct fixture *fx)
{
	int err = kvc_pool_create(&fx->params, &fx->pool);

	if (err)
		fail_msg("kvc_pool_create() = %d: %s", err, kvc_last_error());
	CHECK(fx->pool);
	return fx->pool;
}

/*
 * Fork a child that publishes a page in the fixture's directory, writes
 * its path to @path, then either exits at once without destroying the pool
 * (@linger false: the page goes stale) or waits for a byte on the returned
 * fd before destroying the pool cleanly.
 */
static pid_t spawn_publisher(char *path, size_t len, bool linger, int *go_fd)
{
	int to_parent[2], to_child[2];
	ssize_t got;
	pid_t pid;

	assert_int_equal(pipe(to_parent), 0);
	assert_int_equal(pipe(to_child), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct kvc_pool_params p;
		struct kvc_pool *pool;
		char byte, msg[PATH_MAX];

		close(to_parent[0]);
		close(to_child[1]);
		kvc_pool_params_init(&p);
		p.backend_kind = KVC_BACKEND_HOST;
		p.block_bytes = 64 << 10;
		p.capacity_blocks = 64;
		p.name = "child";
		if (kvc_pool_create(&p, &pool)) {
			snprintf(msg, sizeof(msg), "!%s", kvc_last_error());
			(void)!write(to_parent[1], msg, strlen(msg) + 1);
			_exit(1);
		}
		snprintf(msg, sizeof(msg), "%s",
			 kvc_pool_stats_path(pool) ? kvc_pool_stats_path(pool) :
						     "!no stats page");
		(void)!write(to_parent[1], msg, strlen(msg) + 1);
		if (!linger)
			_exit(0); /* no kvc_pool_destroy(): the page stays */
		(void)!read(to_child[0], &byte, 1);
		kvc_pool_destroy(pool);
		_exit(0);
	}
	close(to_parent[1]);
	close(to_child[0]);
	memset(path, 0, len);
	got = read(to_parent[0], path, len - 1);
	close(to_parent[0]);
	if (got <= 0 || path[0] == '!') {
		close(to_child[1]);
		waitpid(pid, NULL, 0);
		fail_msg("child publisher failed: %s",
			 got > 0 ? path + 1 : "no answer");
	}
	if (go_fd)
		*go_fd = to_child[1];
	else
		close(to_child[1]);
	return pid;
}

/* ------------------------------------------------------------------ */
/* tests */

static void test_stats_dir(void **state)
{
	struct fixture *fx = *state;

	assert_string_equal(kvc_stats_dir(), fx->dir);
	setenv("KVC_STATS_DIR", "", 1);
	assert_string_equal(kvc_stats_dir(), KVC_STATS_DIR);
	unsetenv("KVC_STATS_DIR");
	assert_string_equal(kvc_stats_dir(), KVC_STATS_DIR);
	assert_string_equal(KVC_STATS_DIR, "/dev/shm");
	setenv("KVC_STATS_DIR", fx->dir, 1);
}

static void test_page_published(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot snap;
	char prefix[PATH_MAX];
	const char *path;
	uint32_t ids[40];
	struct stat st;
	int err;

	pool_open(fx);
	path = kvc_pool_stats_path(fx->pool);
	assert_non_null(path);
	snprintf(prefix, sizeof(prefix), "%s/" KVC_STATS_PREFIX "%d.", fx->dir,
		 (int)getpid());
	if (strncmp(path, prefix, strlen(prefix)))
		fail_msg("page path %s does not start with %s", path, prefix);

	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	if ((st.st_mode & 07777) != 0600)
		fail_msg("page mode %04o, expected 0600",
			 (unsigned)(st.st_mode & 07777));
	EXPECT_U64(st.st_uid, geteuid());
	EXPECT_U64(st.st_size, PAGE_FILE_BYTES);

	err = kvc_stats_read(path, &snap);
	if (err)
		fail_msg("kvc_stats_read() = %d: %s", err, kvc_last_error());
	assert_string_equal(snap.path, path);
	EXPECT_U64(snap.page.magic, KVC_STATS_MAGIC);
	EXPECT_U64(snap.page.version, KVC_STATS_VERSION);
	EXPECT_U64(snap.page.page_bytes, sizeof(struct kvc_stats_page));
	EXPECT_U64(snap.page.pid, getpid());
	EXPECT_U64(snap.page.seq % 2, 0);
	assert_true(snap.page.start_time != 0);
	assert_int_equal(snap.page.device, -1);
	assert_string_equal(snap.page.backend, "host");
	assert_string_equal(snap.page.name, "stats-test");
	assert_true(snap.page.created_ns != 0);
	assert_true(snap.page.created_ns <= snap.page.updated_ns);
	assert_true(snap.alive);

	page_matches_pool(fx->pool, "fresh pool");
	assert_int_equal(kvc_pool_alloc(fx->pool, 20, ids), 0);
	page_matches_pool(fx->pool, "after alloc(20)");
	assert_int_equal(kvc_pool_free(fx->pool, 5, ids), 0);
	page_matches_pool(fx->pool, "after free(5)");
	assert_int_equal(kvc_pool_alloc(fx->pool, 1000, ids), -ENOMEM);
	page_matches_pool(fx->pool, "after a failed alloc");
	assert_int_equal(kvc_pool_free(fx->pool, 15, ids + 5), 0);
	page_matches_pool(fx->pool, "after free(15)");
	assert_int_equal(kvc_pool_trim(fx->pool, 0), 0);
	page_matches_pool(fx->pool, "after trim(0)");
	assert_int_equal(kvc_pool_alloc(fx->pool, 40, ids), 0);
	page_matches_pool(fx->pool, "after alloc(40)");
	assert_int_equal(kvc_pool_set_owner(fx->pool, ids[0], 99), 0);
	page_matches_pool(fx->pool, "after set_owner()");
	assert_int_equal(kvc_stats_read(path, &snap), 0);
	EXPECT_U64(snap.page.stats.blocks_live, 40);
}

static void test_page_mode_and_name(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot snap;
	mode_t old = umask(0277);
	struct stat st;
	int err;

	/* Under a umask that would leave 0400, the page is still 0600. */
	fx->params.name = "a-label-that-is-longer-than-thirty-one-bytes";
	err = kvc_pool_create(&fx->params, &fx->pool);
	umask(old);
	if (err)
		fail_msg("kvc_pool_create() = %d: %s", err, kvc_last_error());
	CHECK(fx->pool);
	assert_int_equal(stat(kvc_pool_stats_path(fx->pool), &st), 0);
	if ((st.st_mode & 07777) != 0600)
		fail_msg("page mode %04o under umask 0277, expected 0600",
			 (unsigned)(st.st_mode & 07777));
	assert_int_equal(kvc_stats_read(kvc_pool_stats_path(fx->pool), &snap),
			 0);
	/* "at most 31 bytes used" */
	assert_string_equal(snap.page.name, "a-label-that-is-longer-than-thi");
	assert_int_equal(kvc_pool_destroy(fx->pool), 0);
	fx->pool = NULL;

	fx->params.name = NULL;
	pool_open(fx);
	assert_int_equal(kvc_stats_read(kvc_pool_stats_path(fx->pool), &snap),
			 0);
	assert_string_equal(snap.page.name, "");
}

static void test_page_removed_on_destroy(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot snap;
	char path[PATH_MAX];
	uint32_t ids[4];
	struct stat st;

	pool_open(fx);
	assert_int_equal(kvc_pool_alloc(fx->pool, 4, ids), 0);
	snprintf(path, sizeof(path), "%s", kvc_pool_stats_path(fx->pool));
	assert_int_equal(list_count(fx->dir, 0), 1);
	assert_int_equal(kvc_pool_destroy(fx->pool), 0);
	fx->pool = NULL;
	if (stat(path, &st) == 0 || errno != ENOENT)
		fail_msg("%s still exists after kvc_pool_destroy()", path);
	assert_int_equal(kvc_stats_read(path, &snap), -ENOENT);
	assert_int_equal(list_count(fx->dir, 0), 0);
}

static void test_no_stats_page_flag(void **state)
{
	struct fixture *fx = *state;

	fx->params.flags = KVC_POOL_NO_STATS_PAGE;
	pool_open(fx);
	assert_null(kvc_pool_stats_path(fx->pool));
	assert_int_equal(list_count(fx->dir, 0), 0);
}

static void test_list(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot *snaps = NULL;
	struct kvc_pool *second = NULL;
	char child_path[PATH_MAX], mine[2][PATH_MAX];
	struct bad_log log = { .n = 0 };
	int go_fd, status;
	uint32_t n, i;
	pid_t child;

	pool_open(fx);
	fx->params.name = "second";
	assert_int_equal(kvc_pool_create(&fx->params, &second), 0);
	CHECK(second);
	snprintf(mine[0], PATH_MAX, "%s", kvc_pool_stats_path(fx->pool));
	snprintf(mine[1], PATH_MAX, "%s", kvc_pool_stats_path(second));
	if (strcmp(mine[0], mine[1]) > 0) {
		char t[PATH_MAX];

		memcpy(t, mine[0], PATH_MAX);
		memcpy(mine[0], mine[1], PATH_MAX);
		memcpy(mine[1], t, PATH_MAX);
	}
	child = spawn_publisher(child_path, sizeof(child_path), true, &go_fd);

	assert_int_equal(kvc_stats_list(fx->dir, 0, &snaps, &n, on_bad, &log),
			 0);
	EXPECT_U64(log.n, 0);
	EXPECT_U64(n, 3);
	for (i = 0; i < n; i++) {
		assert_true(snaps[i].alive);
		if (i && (snaps[i - 1].page.pid > snaps[i].page.pid ||
			  (snaps[i - 1].page.pid == snaps[i].page.pid &&
			   strcmp(snaps[i - 1].path, snaps[i].path) > 0)))
			fail_msg("list not sorted by pid then path: %s before "
				 "%s",
				 snaps[i - 1].path, snaps[i].path);
	}
	free(snaps);

	/* By pid. */
	assert_int_equal(
		kvc_stats_list(fx->dir, getpid(), &snaps, &n, NULL, NULL), 0);
	EXPECT_U64(n, 2);
	assert_string_equal(snaps[0].path, mine[0]);
	assert_string_equal(snaps[1].path, mine[1]);
	EXPECT_U64(snaps[0].page.pid, getpid());
	free(snaps);
	assert_int_equal(kvc_stats_list(fx->dir, child, &snaps, &n, NULL, NULL),
			 0);
	EXPECT_U64(n, 1);
	assert_string_equal(snaps[0].path, child_path);
	EXPECT_U64(snaps[0].page.pid, child);
	assert_string_equal(snaps[0].page.name, "child");
	assert_true(snaps[0].alive);
	free(snaps);
	EXPECT_U64(list_count(fx->dir, 1), 0);

	/* NULL dir means kvc_stats_dir(). */
	EXPECT_U64(list_count(NULL, 0), 3);

	/* The child destroys its pool: its page goes. */
	assert_int_equal(write(go_fd, "x", 1), 1);
	close(go_fd);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	EXPECT_U64(list_count(fx->dir, 0), 2);
	EXPECT_U64(list_count(fx->dir, child), 0);

	assert_int_equal(kvc_pool_destroy(second), 0);
	EXPECT_U64(list_count(fx->dir, 0), 1);

	/* A directory that does not exist. */
	assert_int_equal(kvc_stats_list("/nonexistent/kvc-test-dir", 0, &snaps,
					&n, NULL, NULL),
			 -ENOENT);
	assert_true(kvc_last_error()[0] != '\0');
}

static void test_non_page_names_ignored(void **state)
{
	static const char *const names[] = {
		"foo",	       "kvc.",	    "kvc.abc.1", "kvc.123",
		"kvc.123.",    "kvc.12x.3", "kvcx.1.1",	 ".kvc.1.1",
		"kvc.1.1.tmp", "kvc..1",    "kvc.1",	 "KVC.1.1",
	};
	struct fixture *fx = *state;
	struct kvc_stats_snapshot *snaps = NULL;
	struct kvc_stats_page page;
	struct bad_log log = { .n = 0 };
	char path[PATH_MAX];
	uint32_t n;
	size_t i;

	pool_open(fx);
	good_page(fx, &page);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", fx->dir, names[i]);
		write_page(path, &page, PAGE_FILE_BYTES, 0600);
	}
	assert_int_equal(kvc_stats_list(fx->dir, 0, &snaps, &n, on_bad, &log),
			 0);
	if (log.n)
		fail_msg("on_bad called for %s (%s): not a page name, "
			 "should be ignored",
			 log.seen[0].path, log.seen[0].msg);
	EXPECT_U64(n, 1);
	assert_string_equal(snaps[0].path, kvc_pool_stats_path(fx->pool));
	free(snaps);
}

struct forged {
	const char *what;
	char path[PATH_MAX];
	int err; /* expected; 0 = any refusal */
};

static void test_refused_pages(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot *snaps = NULL;
	struct kvc_stats_page good, page;
	struct bad_log log = { .n = 0 };
	struct forged f[32];
	const struct bad_seen *seen;
	int nf = 0, i;
	long me = (long)getpid();
	uint32_t n;

	pool_open(fx);
	good_page(fx, &good);

#define FORGE(desc, want)                                                 \
	(f[nf].what = (desc), f[nf].err = (want),                         \
	 page_name(fx, f[nf].path, PATH_MAX, me, 9000 + nf), page = good, \
	 &f[nf++])

	FORGE("wrong magic", -EPROTO);
	page.magic = 0x4b4f4f4c5f544f4eull;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	FORGE("next version", -EPROTO);
	page.version = KVC_STATS_VERSION + 1;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	/* A page of a kvc from before the fragmentation fields. */
	FORGE("version 1 with its own layout size", -EPROTO);
	page.version = 1;
	page.page_bytes = PAGE_V1_BYTES;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	FORGE("version 1 with this layout's size", -EPROTO);
	page.version = 1;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	FORGE("this version with version 1's size", -EPROTO);
	page.page_bytes = PAGE_V1_BYTES;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	/* A page of a kvc from before the ladder: one 4 KiB page. */
	FORGE("version 2 in its own 4 KiB file", -EPROTO);
	page.version = 2;
	write_page(f[nf - 1].path, &page, PAGE_V2_FILE_BYTES, 0600);

	FORGE("version 2 in a file of this size", -EPROTO);
	page.version = 2;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	FORGE("ring head out of range", -EPROTO);
	page.ring_head = KVC_STATS_RING;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	FORGE("ring count out of range", -EPROTO);
	page.ring_count = KVC_STATS_RING + 1;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	FORGE("ladder orders out of range", -EPROTO);
	page.ladder.nr_orders = KVC_LADDER_ORDERS + 1;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	FORGE("version 0", -EPROTO);
	page.version = 0;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	FORGE("wrong page_bytes", -EPROTO);
	page.page_bytes = sizeof(page) + 8;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	FORGE("truncated to 100 bytes", -EPROTO);
	write_page(f[nf - 1].path, &page, 100, 0600);

	FORGE("empty file", -EPROTO);
	write_page(f[nf - 1].path, &page, 0, 0600);

	FORGE("one byte short of a page", -EPROTO);
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES - 1, 0600);

	FORGE("two pages long", -EPROTO);
	write_page(f[nf - 1].path, &page, 2 * PAGE_FILE_BYTES, 0600);

	FORGE("mode 0644", -EPERM);
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0644);

	FORGE("mode 0400", -EPERM);
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0400);

	FORGE("mode 0660", -EPERM);
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0660);

	FORGE("mode 04600", -EPERM);
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 04600);

	FORGE("seq stuck odd (writer never finishes)", -EAGAIN);
	page.seq = 7;
	write_page(f[nf - 1].path, &page, PAGE_FILE_BYTES, 0600);

	{
		/* The name says pid 1, the page says this process. */
		struct forged *g =
			FORGE("name pid differs from page pid", -EPROTO);

		page_name(fx, g->path, PATH_MAX, 1, 9000 + nf);
		write_page(g->path, &page, PAGE_FILE_BYTES, 0600);
	}
	{
		struct forged *g =
			FORGE("page pid differs from name pid", -EPROTO);

		page.pid = 1;
		write_page(g->path, &page, PAGE_FILE_BYTES, 0600);
	}
	{
		struct forged *g = FORGE("symlink to a good page", 0);

		assert_int_equal(
			symlink(kvc_pool_stats_path(fx->pool), g->path), 0);
	}
	{
		struct forged *g = FORGE("directory", 0);

		assert_int_equal(mkdir(g->path, 0700), 0);
	}
	{
		/* Opening a FIFO without O_NONBLOCK would hang the reader. */
		struct forged *g = FORGE("FIFO", 0);

		assert_int_equal(mkfifo(g->path, 0600), 0);
	}
#undef FORGE

	/* One at a time. */
	for (i = 0; i < nf; i++)
		expect_read_err(f[i].path, f[i].err, f[i].what);

	/* All together: only the real page is listed, on_bad names each. */
	assert_int_equal(kvc_stats_list(fx->dir, 0, &snaps, &n, on_bad, &log),
			 0);
	EXPECT_U64(n, 1);
	assert_string_equal(snaps[0].path, kvc_pool_stats_path(fx->pool));
	free(snaps);
	for (i = 0; i < nf; i++) {
		seen = bad_find(&log, f[i].path);
		if (!seen)
			fail_msg("%s: on_bad not called for %s", f[i].what,
				 f[i].path);
		if (f[i].err ? seen->err != f[i].err :
			       (seen->err >= 0 || seen->err == -ENOENT))
			fail_msg("%s: on_bad got err %d, expected %d",
				 f[i].what, seen->err, f[i].err);
		if (!seen->msg[0])
			fail_msg("%s: on_bad got an empty message", f[i].what);
	}
	EXPECT_U64(log.n, nf);

	/* Filtered to our pid, refused pages with other names are skipped. */
	log.n = 0;
	assert_int_equal(kvc_stats_list(fx->dir, 1, &snaps, &n, on_bad, &log),
			 0);
	EXPECT_U64(n, 0);
	free(snaps);
	EXPECT_U64(log.n, 1); /* the one named for pid 1 */
}

static void test_foreign_owner(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot *snaps = NULL;
	struct kvc_stats_page page;
	struct bad_log log = { .n = 0 };
	char path[PATH_MAX];
	uint32_t n;

	if (geteuid() != 0) {
		print_message("  not root: cannot chown a page to uid 65534\n");
		skip();
	}
	pool_open(fx);
	good_page(fx, &page);
	page_name(fx, path, sizeof(path), (long)getpid(), 4242);
	write_page(path, &page, PAGE_FILE_BYTES, 0600);
	assert_int_equal(chown(path, 65534, 65534), 0);
	expect_read_err(path, -EPERM, "page owned by uid 65534");
	assert_int_equal(kvc_stats_list(fx->dir, 0, &snaps, &n, on_bad, &log),
			 0);
	EXPECT_U64(n, 1);
	free(snaps);
	EXPECT_U64(log.n, 1);
	assert_string_equal(log.seen[0].path, path);
	assert_int_equal(log.seen[0].err, -EPERM);
	/* Nor will remove_stale() touch it. */
	assert_int_equal(kvc_stats_remove_stale(path), -EPERM);
	assert_int_equal(access(path, F_OK), 0);
}

static void test_stale_page(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot snap, *snaps = NULL;
	char path[PATH_MAX];
	int status, err;
	uint32_t n;
	pid_t child;

	pool_open(fx);
	child = spawn_publisher(path, sizeof(path), false, NULL);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	err = kvc_stats_read(path, &snap);
	if (err)
		fail_msg("dead child's page: kvc_stats_read() = %d: %s", err,
			 kvc_last_error());
	EXPECT_U64(snap.page.pid, child);
	if (snap.alive)
		fail_msg("page of exited process %d reads as alive",
			 (int)child);
	assert_int_equal(kvc_stats_list(fx->dir, child, &snaps, &n, NULL, NULL),
			 0);
	EXPECT_U64(n, 1);
	assert_false(snaps[0].alive);
	free(snaps);

	/* A live page is not stale. */
	err = kvc_stats_remove_stale(kvc_pool_stats_path(fx->pool));
	if (err != -EBUSY)
		fail_msg("remove_stale(live page) = %d, expected -EBUSY", err);
	assert_true(kvc_last_error()[0] != '\0');
	assert_int_equal(access(kvc_pool_stats_path(fx->pool), F_OK), 0);

	err = kvc_stats_remove_stale(path);
	if (err)
		fail_msg("remove_stale(dead page) = %d: %s", err,
			 kvc_last_error());
	if (access(path, F_OK) == 0)
		fail_msg("%s still there after kvc_stats_remove_stale()", path);
	assert_int_equal(kvc_stats_remove_stale(path), -ENOENT);
	EXPECT_U64(list_count(fx->dir, 0), 1);
	page_matches_pool(fx->pool, "after removing another page");
}

/* Same pid, another start time: the pid was reused, the page is stale. */
static void test_reused_pid_is_stale(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot snap;
	struct kvc_stats_page page;
	char path[PATH_MAX], bad[PATH_MAX];

	pool_open(fx);
	good_page(fx, &page);
	page.start_time += 12345;
	page_name(fx, path, sizeof(path), (long)getpid(), 777);
	write_page(path, &page, PAGE_FILE_BYTES, 0600);
	assert_int_equal(kvc_stats_read(path, &snap), 0);
	if (snap.alive)
		fail_msg("page with our pid but another start time reads as "
			 "alive");
	assert_int_equal(kvc_stats_remove_stale(path), 0);
	assert_int_equal(access(path, F_OK), -1);

	/* remove_stale() refuses what does not validate, and keeps it. */
	good_page(fx, &page);
	page.magic ^= 1;
	page.start_time += 12345;
	page_name(fx, bad, sizeof(bad), (long)getpid(), 778);
	write_page(bad, &page, PAGE_FILE_BYTES, 0600);
	assert_int_equal(kvc_stats_remove_stale(bad), -EPROTO);
	assert_int_equal(access(bad, F_OK), 0);
}

/* A writer that died mid-update: stale and torn, read at once, removable. */
static void test_torn_page_of_dead_writer(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot snap;
	struct kvc_stats_page page;
	char path[PATH_MAX];

	pool_open(fx);
	good_page(fx, &page);
	page.seq |= 1;
	page.start_time += 12345; /* our pid, but not us: a dead writer */
	page_name(fx, path, sizeof(path), (long)getpid(), 779);
	write_page(path, &page, PAGE_FILE_BYTES, 0600);
	assert_int_equal(kvc_stats_read(path, &snap), 0);
	assert_false(snap.alive);
	assert_true(snap.torn);
	assert_int_equal(kvc_stats_remove_stale(path), 0);
	assert_int_equal(access(path, F_OK), -1);
	/* A consistent page is not torn. */
	assert_int_equal(kvc_stats_read(kvc_pool_stats_path(fx->pool), &snap),
			 0);
	assert_false(snap.torn);
}

/* A directory name too long for a page path: the pool works, no page. */
static void test_stats_dir_too_long(void **state)
{
	struct fixture *fx = *state;
	char dir[400];
	uint32_t ids[4];

	memset(dir, 'd', sizeof(dir) - 1);
	dir[0] = '/';
	dir[sizeof(dir) - 1] = '\0';
	assert_int_equal(setenv("KVC_STATS_DIR", dir, 1), 0);
	pool_open(fx);
	assert_null(kvc_pool_stats_path(fx->pool));
	assert_int_equal(kvc_pool_alloc(fx->pool, 4, ids), 0);
	assert_int_equal(kvc_pool_free(fx->pool, 4, ids), 0);
	assert_int_equal(setenv("KVC_STATS_DIR", fx->dir, 1), 0);
}

/*
 * Version 3: the ladder, its peaks and a ring of samples after the
 * counters, in a file of a fixed 64 KiB.
 */
static void test_page_layout(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_page page;

	EXPECT_U64(KVC_STATS_VERSION, 3);
	EXPECT_U64(PAGE_FILE_BYTES, 65536);
	assert_true(sizeof(struct kvc_stats_page) <= PAGE_FILE_BYTES);
	assert_true(sizeof(struct kvc_stats_page) > PAGE_V2_FILE_BYTES);
	EXPECT_U64(offsetof(struct kvc_stats_page, ring) % _Alignof(double), 0);
	assert_true(PAGE_V1_BYTES < sizeof(struct kvc_stats_page));
	/* The doubles follow the counters, aligned, in a page of their own. */
	EXPECT_U64(offsetof(struct kvc_pool_stats, frag_ratio) %
			   _Alignof(double),
		   0);
	EXPECT_U64(offsetof(struct kvc_pool_stats, compact_score) +
			   sizeof(double),
		   sizeof(struct kvc_pool_stats));
	pool_open(fx);
	good_page(fx, &page);
	EXPECT_U64(page.version, 3);
	EXPECT_U64(page.samples, 0);
	EXPECT_U64(page.ring_count, 0);
	EXPECT_U64(page.page_bytes, sizeof(struct kvc_stats_page));
}

/* A page of the version before: refused, and the message says why. */
static void test_version2_page_refused(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_page page;
	char path[PATH_MAX];

	pool_open(fx);
	good_page(fx, &page);
	page.version = 2;
	page_name(fx, path, sizeof(path), (long)getpid(), 7000);
	write_page(path, &page, PAGE_V2_FILE_BYTES, 0600);
	expect_read_err(path, -EPROTO, "version 2 page");
	if (!strstr(kvc_last_error(), "layout version 2") ||
	    !strstr(kvc_last_error(), "reads only version 3"))
		fail_msg("unclear refusal of a version 2 page: %s",
			 kvc_last_error());
	/* Something else of that size is still refused for its size. */
	page.magic = 0;
	page_name(fx, path, sizeof(path), (long)getpid(), 7001);
	write_page(path, &page, PAGE_V2_FILE_BYTES, 0600);
	expect_read_err(path, -EPROTO, "4 KiB non-page");
	assert_non_null(strstr(kvc_last_error(), "4096 bytes, expected 65536"));
}

/*
 * Samples reach the page: the latest ladder, the peaks and the ring,
 * oldest first from (head - count); more samples than the ring holds
 * keep the latest ones. Counters alone do not touch the ring.
 */
static void test_samples_published(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot *snap = malloc(sizeof(*snap));
	struct kvc_pool_usage u = { 0 };
	struct kvc_ladder_peaks peaks;
	struct kvc_ladder l;
	const struct kvc_stats_sample *s;
	uint32_t ids[8 * BPC], i, oldest, total = KVC_STATS_RING + 44;

	assert_non_null(snap);
	pool_open(fx);
	assert_int_equal(kvc_pool_alloc(fx->pool, 3, ids), 0);
	for (i = 0; i < 5; i++) {
		u.live_bytes = (i + 1) * 1000;
		u.logical_bytes = 2 * u.live_bytes;
		u.seqs = i;
		assert_int_equal(kvc_pool_sample(fx->pool, &u, 100 + 2 * i), 0);
		CHECK(fx->pool);
	}
	assert_int_equal(kvc_stats_read(kvc_pool_stats_path(fx->pool), snap),
			 0);
	EXPECT_U64(snap->page.samples, 5);
	EXPECT_U64(snap->page.ring_count, 5);
	EXPECT_U64(snap->page.ring_head, 5);
	for (i = 0; i < 5; i++) {
		s = &snap->page.ring[i];
		EXPECT_U64(s->step, 100 + 2 * i);
		EXPECT_U64(s->live, (i + 1) * 1000);
		EXPECT_U64(s->logical, 2 * (i + 1) * 1000);
		EXPECT_U64(s->held, 3 * BLOCK);
		EXPECT_U64(s->mapped, GRAN);
		EXPECT_U64(s->seqs, i);
		EXPECT_U64(s->free_mapped, (BPC - 3) * BLOCK);
		assert_true(s->t_ns != 0);
	}
	assert_int_equal(kvc_pool_ladder(fx->pool, &u, 108, &l), 0);
	EXPECT_U64(snap->page.ladder.step, 108);
	EXPECT_U64(snap->page.ladder.live, l.live);
	EXPECT_U64(snap->page.ladder.mapped, l.mapped);
	EXPECT_U64(snap->page.ladder.nr_orders, l.nr_orders);
	assert_memory_equal(snap->page.ladder.unusable, l.unusable,
			    sizeof(l.unusable));
	kvc_pool_peaks(fx->pool, &peaks);
	assert_memory_equal(&snap->page.peaks, &peaks, sizeof(peaks));
	EXPECT_U64(peaks.live_peak, 5000);
	EXPECT_U64(peaks.live_peak_step, 108);

	/* Operations update the counters, leave the samples alone. */
	assert_int_equal(kvc_pool_alloc(fx->pool, 1, ids + 3), 0);
	assert_int_equal(kvc_stats_read(kvc_pool_stats_path(fx->pool), snap),
			 0);
	EXPECT_U64(snap->page.stats.blocks_live, 4);
	EXPECT_U64(snap->page.samples, 5);
	EXPECT_U64(snap->page.ring[4].held, 3 * BLOCK);

	/* Wrap around: the ring keeps the latest KVC_STATS_RING. */
	for (i = 5; i < total; i++)
		assert_int_equal(kvc_pool_sample(fx->pool, NULL, 100 + 2 * i),
				 0);
	assert_int_equal(kvc_stats_read(kvc_pool_stats_path(fx->pool), snap),
			 0);
	EXPECT_U64(snap->page.samples, total);
	EXPECT_U64(snap->page.ring_count, KVC_STATS_RING);
	EXPECT_U64(snap->page.ring_head, total % KVC_STATS_RING);
	oldest = snap->page.ring_head; /* full ring: the oldest is next */
	EXPECT_U64(snap->page.ring[oldest].step,
		   100 + 2 * (total - KVC_STATS_RING));
	s = &snap->page.ring[(oldest + KVC_STATS_RING - 1) % KVC_STATS_RING];
	EXPECT_U64(s->step, 100 + 2 * (total - 1));
	EXPECT_U64(s->live, 4 * BLOCK); /* no usage: live = held */
	EXPECT_U64(snap->page.peaks.samples, total);
	page_matches_pool(fx->pool, "after samples");
	free(snap);
}

static void expect_real(double got, double want, const char *what)
{
	if (memcmp(&got, &want, sizeof(double)) && !(fabs(got - want) < 1e-12))
		fail_msg("%s = %.17g, expected %.17g", what, got, want);
}

/*
 * The page carries the new fields as kvc_pool_get_stats() gives them,
 * through fragmentation, compaction and an empty pool (+infinity).
 */
static void test_fragmentation_fields_published(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot snap;
	struct kvc_compact_result res;
	const struct kvc_pool_stats *st = &snap.page.stats;
	uint32_t ids[4 * BPC], odd[2 * BPC], live[8 * BPC], i, n = 0;
	const char *path;

	pool_open(fx);
	path = kvc_pool_stats_path(fx->pool);
	assert_int_equal(kvc_pool_alloc(fx->pool, 4 * BPC, ids), 0);
	for (i = 1; i < 4 * BPC; i += 2)
		odd[n++] = ids[i];
	assert_int_equal(kvc_pool_free(fx->pool, n, odd), 0);
	page_matches_pool(fx->pool, "four half-full chunks");
	assert_int_equal(kvc_stats_read(path, &snap), 0);
	EXPECT_U64(st->chunks_partial, 4);
	EXPECT_U64(st->free_blocks_in_partial_chunks, 2 * BPC);
	EXPECT_U64(st->free_chunks_mapped, 0);
	EXPECT_U64(st->chunks_reclaimable, 2);
	expect_real(st->frag_ratio, 1.0, "frag_ratio");
	expect_real(st->unusable_index, 1.0, "unusable_index");
	/* 1 - (1 + 2 * BPC / BPC) / 4 */
	expect_real(st->fragmentation_index, 0.25, "fragmentation_index");
	expect_real(st->compact_score, 0.5, "compact_score");

	assert_int_equal(kvc_pool_compact(fx->pool, NULL, &res), 0);
	CHECK(fx->pool);
	page_matches_pool(fx->pool, "after kvc_pool_compact()");
	assert_int_equal(kvc_stats_read(path, &snap), 0);
	EXPECT_U64(st->compactions, 1);
	EXPECT_U64(st->blocks_moved, res.blocks_moved);
	EXPECT_U64(st->blocks_moved, BPC);
	EXPECT_U64(st->bytes_copied, BPC * BLOCK);
	EXPECT_U64(st->chunks_vacated, 2);
	EXPECT_U64(st->compact_failures, 0);
	EXPECT_U64(st->chunks_reclaimable, 0);
	expect_real(st->compact_score, 0, "compact_score after compaction");
	/* The watermark keeps one emptied chunk: a whole chunk is free. */
	EXPECT_U64(st->free_chunks_mapped, 1);
	expect_real(st->fragmentation_index, -1,
		    "fragmentation_index with an empty chunk");

	/* Nothing live, a chunk still mapped: +infinity, bit for bit. */
	for (i = 0, n = 0; i < 8 * BPC; i++)
		if (kvc_pool_is_live(fx->pool, i))
			live[n++] = i;
	EXPECT_U64(n, 2 * BPC);
	assert_int_equal(kvc_pool_free(fx->pool, n, live), 0);
	CHECK(fx->pool);
	page_matches_pool(fx->pool, "everything freed");
	assert_int_equal(kvc_stats_read(path, &snap), 0);
	EXPECT_U64(st->chunks_mapped, 1);
	if (!isinf(st->frag_ratio) || st->frag_ratio < 0)
		fail_msg("frag_ratio = %g with nothing live, expected +inf",
			 st->frag_ratio);
	expect_real(st->unusable_index, 0, "unusable_index, all empty");
}

/* The reader takes any double in a page; judging them is kvcctl's job. */
static void test_forged_reals_read_back(void **state)
{
	static const double values[] = { INFINITY, -INFINITY, NAN,
					 -1,	   -0.0,      1e300 };
	struct fixture *fx = *state;
	struct kvc_stats_snapshot snap;
	struct kvc_stats_page page;
	char path[PATH_MAX];
	size_t i;

	pool_open(fx);
	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		good_page(fx, &page);
		page.stats.frag_ratio = values[i];
		page.stats.fragmentation_index = values[i];
		page.stats.chunks_unmap_deferred = 1000 + i;
		page_name(fx, path, sizeof(path), (long)getpid(),
			  4300 + (unsigned)i);
		write_page(path, &page, PAGE_FILE_BYTES, 0600);
		assert_int_equal(kvc_stats_read(path, &snap), 0);
		assert_int_equal(memcmp(&snap.page.stats, &page.stats,
					sizeof(page.stats)),
				 0);
	}
	EXPECT_U64(list_count(fx->dir, getpid()), 1 + i);
}

/* ------------------------------------------------------------------ */
/* seqlock */

struct writer {
	struct kvc_pool *pool;
	atomic_bool stop;
	uint64_t ops;
	char err[256];
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t rng = 0x853c49e6748fea9bull;
	uint32_t held[8 * 16], nheld = 0, n, i, k, ids[16];
	int err;

	while (!atomic_load(&w->stop)) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		n = 1 + (uint32_t)(rng % 16);
		if (nheld + n <= 8 * 16 && (nheld == 0 || (rng >> 20) % 2)) {
			err = kvc_pool_alloc(w->pool, n, ids);
			if (err && err != -ENOMEM) {
				snprintf(w->err, sizeof(w->err),
					 "alloc(%u) = %d: %s", n, err,
					 kvc_last_error());
				break;
			}
			for (i = 0; !err && i < n; i++)
				held[nheld++] = ids[i];
		} else {
			if (n > nheld)
				n = nheld;
			for (i = 0; i < n; i++) {
				k = (uint32_t)((rng >> (i + 8)) % nheld);
				ids[i] = held[k];
				held[k] = held[--nheld];
			}
			err = kvc_pool_free(w->pool, n, ids);
			if (err) {
				snprintf(w->err, sizeof(w->err),
					 "free(%u) = %d: %s", n, err,
					 kvc_last_error());
				break;
			}
		}
		if (kvc_pool_check(w->pool)) {
			snprintf(w->err, sizeof(w->err), "kvc_pool_check(): %s",
				 kvc_last_error());
			break;
		}
		w->ops++;
	}
	return NULL;
}

static void test_seqlock_consistent_snapshots(void **state)
{
	struct fixture *fx = *state;
	struct kvc_stats_snapshot snap;
	struct kvc_pool_stats last = { 0 };
	struct writer w = { .stop = false, .ops = 0 };
	uint64_t distinct = 0, eagain = 0, sum;
	const struct kvc_pool_stats *s;
	pthread_t thread;
	const int reads = 20000;
	int i, b, err;

	fx->params.empty_chunks_kept = 1;
	pool_open(fx);
	w.pool = fx->pool;
	assert_int_equal(pthread_create(&thread, NULL, writer_main, &w), 0);

	for (i = 0; i < reads; i++) {
		err = kvc_stats_read(kvc_pool_stats_path(fx->pool), &snap);
		if (err == -EAGAIN) {
			eagain++;
			continue;
		}
		if (err) {
			atomic_store(&w.stop, true);
			pthread_join(thread, NULL);
			fail_msg("read %d: kvc_stats_read() = %d: %s", i, err,
				 kvc_last_error());
		}
		s = &snap.page.stats;
		sum = 0;
		for (b = 0; b < KVC_FILL_BUCKETS; b++)
			sum += snap.page.fill_hist[b];
#define SNAP_EXPECT(cond)                                                    \
	do {                                                                 \
		if (!(cond)) {                                               \
			atomic_store(&w.stop, true);                         \
			pthread_join(thread, NULL);                          \
			fail_msg("read %d: torn snapshot, %s does not hold " \
				 "(live %" PRIu64 " free %" PRIu64           \
				 " total %" PRIu64 " mapped %" PRIu64        \
				 " empty %" PRIu64 " partial %" PRIu64       \
				 " full %" PRIu64 " hist sum %" PRIu64 ")",  \
				 i, #cond, s->blocks_live, s->blocks_free,   \
				 s->blocks_total, s->chunks_mapped,          \
				 s->chunks_empty, s->chunks_partial,         \
				 s->chunks_full, sum);                       \
		}                                                            \
	} while (0)
		SNAP_EXPECT(snap.page.seq % 2 == 0);
		SNAP_EXPECT(s->blocks_live + s->blocks_free == s->blocks_total);
		SNAP_EXPECT(s->bytes_live == s->blocks_live * s->block_bytes);
		SNAP_EXPECT(s->bytes_mapped ==
			    s->chunks_mapped * s->chunk_bytes);
		SNAP_EXPECT(s->chunks_empty + s->chunks_partial +
				    s->chunks_full ==
			    s->chunks_mapped);
		SNAP_EXPECT(s->blocks_free_mapped ==
			    s->chunks_mapped * s->blocks_per_chunk -
				    s->blocks_live);
		SNAP_EXPECT(sum == s->chunks_mapped);
		SNAP_EXPECT(snap.page.fill_hist[0] == s->chunks_empty);
		SNAP_EXPECT(snap.page.fill_hist[KVC_FILL_BUCKETS - 1] ==
			    s->chunks_full);
		/* The new fields are published in the same update. */
		SNAP_EXPECT(s->free_chunks_mapped == s->chunks_empty);
		SNAP_EXPECT(s->free_blocks_in_partial_chunks +
				    s->chunks_empty * s->blocks_per_chunk ==
			    s->blocks_free_mapped);
		SNAP_EXPECT(s->chunks_reclaimable <=
			    s->chunks_partial + s->chunks_full);
		SNAP_EXPECT(s->compact_score >= 0 && s->compact_score <= 1);
		SNAP_EXPECT(s->chunks_empty ? s->fragmentation_index == -1 :
					      s->fragmentation_index >= 0);
		SNAP_EXPECT(s->blocks_live <= s->blocks_live_hwm);
		SNAP_EXPECT(s->bytes_mapped <= s->bytes_mapped_hwm);
		/* Counters never run backwards between two reads. */
		SNAP_EXPECT(s->alloc_calls >= last.alloc_calls);
		SNAP_EXPECT(s->free_calls >= last.free_calls);
		SNAP_EXPECT(s->backend_map >= last.backend_map);
		SNAP_EXPECT(s->blocks_live_hwm >= last.blocks_live_hwm);
		SNAP_EXPECT(s->chunks_released >= last.chunks_released);
#undef SNAP_EXPECT
		if (s->alloc_calls + s->free_calls !=
		    last.alloc_calls + last.free_calls)
			distinct++;
		last = *s;
	}
	atomic_store(&w.stop, true);
	assert_int_equal(pthread_join(thread, NULL), 0);
	if (w.err[0])
		fail_msg("writer thread: %s", w.err);
	print_message("  %d reads (%" PRIu64 " -EAGAIN), %" PRIu64
		      " distinct states seen, writer made %" PRIu64 " ops\n",
		      reads, eagain, distinct, w.ops);
	if (eagain == (uint64_t)reads)
		fail_msg("every read gave -EAGAIN");
	/* Quiet now: the page equals the pool. */
	page_matches_pool(fx->pool, "after the writer stopped");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_stats_dir, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_page_published, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_page_mode_and_name, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_page_removed_on_destroy,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_stats_page_flag, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_non_page_names_ignored,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_pages, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_foreign_owner, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stale_page, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reused_pid_is_stale, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_torn_page_of_dead_writer,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_stats_dir_too_long, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_version2_page_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_samples_published, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_page_layout, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_fragmentation_fields_published, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forged_reals_read_back,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_seqlock_consistent_snapshots, setup, teardown),
	};

	return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
