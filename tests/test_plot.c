/* Description: kvcctl replay's plot writers on hand-made results: labels, timeline, waste, chunk map, series and trade-off rows; every figure's files in a directory; the caps on timelines and chunk maps; quoting; gnuplot missing and, where installed, PNG and SVG drawn */
// SPDX-License-Identifier: MIT
/*
 * The writers are given results filled by hand (ladders that satisfy
 * kvc_ladder_check(), checked before use), and their text is compared
 * with the rows expected, so a change of format is a deliberate one.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <kvc/kvc.h>
#include <kvc/sim.h>

#include "../tools/kvcctl/plot.h"

#define MIB (1024ull * 1024)
#define NR_RES 3
#define NR_SAMPLES 2

/**
 * struct fx - One test's results and directory.
 * @dir: a fresh temporary directory.
 * @res: the results.
 * @ptr: pointers to them, as the writers take them.
 * @samples: their samples.
 * @heat: the first result's chunk map.
 */
struct fx {
	char dir[64];
	struct kvc_sim_result res[NR_RES];
	const struct kvc_sim_result *ptr[NR_RES];
	struct kvc_sim_sample samples[NR_RES][NR_SAMPLES];
	int32_t heat[5];
};

/* A ladder of whole MiB: live, reservation, tail, free, parked. */
static void ladder(struct kvc_ladder *l, uint64_t live, uint64_t resv,
		   uint64_t tail, uint64_t free_mapped, uint64_t parked)
{
	memset(l, 0, sizeof(*l));
	l->live = live * MIB;
	l->reservation = resv * MIB;
	l->tail = tail * MIB;
	l->free_mapped = free_mapped * MIB;
	l->parked = parked * MIB;
	l->held = l->live + l->reservation + l->tail;
	l->mapped = l->held + l->free_mapped + l->parked;
	l->pack_ratio = 1.5;
	l->hole_ratio = 0.25;
	l->nr_orders = 3;
	l->unusable[2] = 0.5;
}

static const char *const labels[NR_RES] = { "per-head/full",
					    "per-head/kvcompress-8x",
					    "contig-max" };

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct kvc_sim_sample *s;
	uint32_t i;

	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/kvc-test-plot-XXXXXX");
	if (!mkdtemp(fx->dir)) {
		free(fx);
		return -1;
	}
	for (i = 0; i < NR_RES; i++) {
		struct kvc_sim_result *r = &fx->res[i];

		s = fx->samples[i];
		s[0].step = 0;
		s[0].t_s = 0;
		ladder(&s[0].ladder, 1, 2, 3, 4, 0);
		s[0].internal = 3 * MIB;
		s[0].running = 2;
		s[0].waiting = 1;
		s[1].step = 1;
		s[1].t_s = 0.05;
		ladder(&s[1].ladder, 2, 1, 1, 2, 2);
		s[1].internal = 1 * MIB;
		s[1].running = 3;
		s[1].done = 1;
		s[1].preemptions = 3;
		r->samples = s;
		r->nr_samples = NR_SAMPLES;
		r->summary.label = labels[i];
		r->summary.share_live = 0.25;
		r->summary.share_reservation = 0.1;
		r->summary.share_internal = 0.05;
		r->summary.share_external = 0.5;
		r->summary.share_unmapped = 0.1;
		r->summary.bytes_copied = 3 * MIB * i;
		r->blocks_per_chunk = 8;
		fx->ptr[i] = r;
	}
	/* Only the first has chunks: the contiguous one has no map. */
	fx->heat[0] = 3;
	fx->heat[1] = -1;
	fx->heat[2] = 0;
	fx->heat[3] = 8;
	fx->heat[4] = 2;
	fx->res[0].heat = fx->heat;
	fx->res[0].heat_chunks = 5;
	fx->res[0].heat_step = 7;
	fx->res[2].summary.layout = KVC_LAYOUT_CONTIG_MAX;
	fx->res[2].samples[0].ladder.nr_orders = 0;
	fx->res[2].samples[1].ladder.nr_orders = 0;
	for (i = 0; i < NR_RES; i++) {
		assert_int_equal(kvc_ladder_check(&fx->samples[i][0].ladder),
				 0);
		assert_int_equal(kvc_ladder_check(&fx->samples[i][1].ladder),
				 0);
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	struct dirent *de;
	char path[512];
	DIR *d = opendir(fx->dir);

	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", fx->dir, de->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

/* A stream into memory: *@buf holds what was written once it is closed. */
static void capture_begin(FILE **f, char **buf, size_t *len)
{
	*f = open_memstream(buf, len);
	assert_non_null(*f);
}

static void capture_end(FILE *f)
{
	assert_int_equal(fclose(f), 0);
}

static bool exists(const struct fx *fx, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
	return !access(path, R_OK);
}

static char *slurp(const struct fx *fx, const char *name)
{
	char path[512], *buf;
	long len;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
	f = fopen(path, "r");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	return buf;
}

static void test_labels(void **state)
{
	struct fx *fx = *state;
	char *buf = NULL;
	size_t len;
	FILE *f;

	capture_begin(&f, &buf, &len);
	kvcctl_plot_labels(f, fx->ptr, NR_RES);
	capture_end(f);
	assert_string_equal(buf, "# N label\n"
				 "1 per-head/full\n"
				 "2 per-head/kvcompress-8x\n"
				 "3 contig-max\n");
	free(buf);
}

static void test_timeline_rows(void **state)
{
	struct fx *fx = *state;
	char *buf = NULL, *row;
	size_t len;
	FILE *f;

	capture_begin(&f, &buf, &len);
	kvcctl_plot_timeline_data(f, fx->samples[0], NR_SAMPLES);
	capture_end(f);
	row = strchr(buf, '\n');
	assert_non_null(row);
	assert_true(!strncmp(buf, "# step t_s live_mib", 19));
	/* Levels in MiB stack to mapped; 3 preemptions since the last. */
	assert_string_equal(row + 1, "0 0 1 2 3 4 0 10 2 0\n"
				     "1 0.05 2 1 1 2 2 8 3 3\n");
	free(buf);
}

static void test_waste_rows(void **state)
{
	struct fx *fx = *state;
	char *buf = NULL;
	size_t len;
	FILE *f;

	capture_begin(&f, &buf, &len);
	kvcctl_plot_waste_data(f, fx->ptr, 2);
	capture_end(f);
	assert_string_equal(
		buf,
		"# N label live_pct reservation_pct internal_pct external_pct unmapped_pct\n"
		"1 \"per-head/full\" 25 10 5 50 10\n"
		"2 \"per-head/kvcompress-8x\" 25 10 5 50 10\n");
	free(buf);
}

static void test_heat_rows(void **state)
{
	struct fx *fx = *state;
	char *buf = NULL, *row;
	size_t len;
	FILE *f;

	capture_begin(&f, &buf, &len);
	/* Five chunks: a 3 x 2 grid, the last cell past the end. */
	assert_int_equal(kvcctl_plot_heat_data(f, &fx->res[0]), 3);
	capture_end(f);
	assert_non_null(strstr(buf, "at step 7"));
	row = strchr(buf, '\n');
	assert_non_null(row);
	assert_string_equal(row + 1, "0 0 3\n1 0 -1\n2 0 0\n\n"
				     "0 1 8\n1 1 2\n2 1 -2\n\n");
	free(buf);

	buf = NULL;
	capture_begin(&f, &buf, &len);
	assert_int_equal(kvcctl_plot_heat_data(f, &fx->res[2]), 0);
	capture_end(f);
	assert_string_equal(buf, "");
	free(buf);
}

static void test_series_rows(void **state)
{
	struct fx *fx = *state;
	char *buf = NULL, *second;
	size_t len;
	FILE *f;

	capture_begin(&f, &buf, &len);
	kvcctl_plot_series_data(f, &fx->ptr[1], 2);
	capture_end(f);
	/* Two blocks, two blank lines apart; "?" where no order exists. */
	second = strstr(buf, "\n\n\n# 2 contig-max\n");
	assert_non_null(second);
	assert_non_null(strstr(buf, "# 1 per-head/kvcompress-8x\n"));
	assert_non_null(strstr(buf, "\n0 0 2 1 0 0 0.5 1.5 0.25\n"
				    "1 0.05 3 0 1 3 0.5 1.5 0.25\n"));
	assert_non_null(strstr(second, "\n0 0 2 1 0 0 ? 1.5 0.25\n"
				       "1 0.05 3 0 1 3 ? 1.5 0.25\n"));
	free(buf);
}

static void test_tradeoff_rows(void **state)
{
	struct fx *fx = *state;
	char *buf = NULL;
	size_t len;
	FILE *f;

	fx->res[1].summary.share_external = 0.125;
	capture_begin(&f, &buf, &len);
	kvcctl_plot_tradeoff_data(f, fx->ptr, NR_RES);
	capture_end(f);
	assert_string_equal(buf, "# N label mib_copied external_pct\n"
				 "1 \"per-head/full\" 0 50\n"
				 "2 \"per-head/kvcompress-8x\" 3 12.5\n"
				 "3 \"contig-max\" 6 50\n");
	free(buf);
}

static void test_quoting(void **state)
{
	struct fx *fx = *state;
	struct kvcctl_plot_files files;
	char *buf = NULL, *gp;
	size_t len;
	FILE *f;

	fx->res[0].summary.label = "it's \"odd\"";
	capture_begin(&f, &buf, &len);
	kvcctl_plot_waste_data(f, fx->ptr, 1);
	capture_end(f);
	/* A data label never closes its quotes early. */
	assert_non_null(strstr(buf, "1 \"it's _odd_\" 25"));
	free(buf);
	memset(&files, 0, sizeof(files));
	assert_int_equal(
		kvcctl_plot_timeline(fx->dir, 1, fx->res[0].summary.label,
				     fx->samples[0], NR_SAMPLES, &files),
		0);
	gp = slurp(fx, "timeline-1.gp");
	/* In a gnuplot string a quote is doubled. */
	assert_non_null(strstr(gp, "'it''s \"odd\"'"));
	free(gp);
}

static void test_all_files(void **state)
{
	static const char *const names[] = {
		"labels.txt",	  "timeline-1.dat", "timeline-1.gp",
		"timeline-3.dat", "chunks-1.dat",   "chunks-1.gp",
		"waste.dat",	  "waste.gp",	    "series.dat",
		"indices.gp",	  "concurrency.gp", "tradeoff.dat",
		"tradeoff.gp",
	};
	struct fx *fx = *state;
	struct kvcctl_plot_files files;
	char *gp;
	size_t i;

	assert_int_equal(kvcctl_plot_results(fx->dir, fx->ptr, NR_RES, &files),
			 0);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!exists(fx, names[i]))
			fail_msg("%s was not written", names[i]);
	assert_false(exists(fx, "chunks-3.dat"));
	/* 3 timelines, 1 chunk map, waste, indices, concurrency, tradeoff. */
	assert_int_equal(files.nr, 8);
	assert_int_equal(files.timelines, 3);
	assert_int_equal(files.heat_maps, 1);
	assert_int_equal(files.heat_skipped, 0);
	assert_string_equal(files.names[0], "timeline-1.gp");
	assert_string_equal(files.names[3], "chunks-1.gp");
	assert_string_equal(files.names[7], "tradeoff.gp");
	gp = slurp(fx, "waste.gp");
	assert_non_null(strstr(gp, "png svg"));
	assert_non_null(strstr(gp, "set output 'waste.'.term"));
	assert_non_null(strstr(gp, "'waste.dat'"));
	assert_non_null(strstr(gp, "rowstacked"));
	free(gp);
	/* A contiguous layout has no chunk indices, but it runs sequences. */
	gp = slurp(fx, "indices.gp");
	assert_non_null(strstr(gp, "'series.dat' index 1 using 2:7"));
	assert_null(strstr(gp, "index 2"));
	free(gp);
	gp = slurp(fx, "concurrency.gp");
	assert_non_null(strstr(
		gp,
		"'series.dat' index 2 using 2:3 with lines title 'contig-max'"));
	free(gp);
	gp = slurp(fx, "waste.dat");
	assert_non_null(strstr(gp, "3 \"contig-max\" 25 10 5 50 10\n"));
	free(gp);
	/* The key lists the stack top down, as it is drawn. */
	gp = slurp(fx, "waste.gp");
	assert_non_null(strstr(gp, "set key outside right top invert"));
	free(gp);
	gp = slurp(fx, "timeline-1.gp");
	assert_non_null(strstr(gp, "set key outside right top invert"));
	assert_non_null(strstr(gp, "set ylabel 'KV region (MiB)'"));
	free(gp);
	/* A pack ratio spiking near empty steps stays legible: log scale. */
	gp = slurp(fx, "indices.gp");
	assert_non_null(strstr(gp, "set logscale y"));
	free(gp);
	/*
	 * Points that coincide stay told apart: each configuration is a
	 * series of its own with its label in the key, the point numbered.
	 */
	gp = slurp(fx, "tradeoff.gp");
	assert_non_null(strstr(gp, "every ::2::2 using 3:4 with points pt 7 "
				   "ps 1.5 title '3: ' . 'contig-max'"));
	assert_non_null(strstr(gp, "sprintf('%d', $1)) with labels"));
	assert_non_null(strstr(gp, "set xrange [0:*]"));
	free(gp);
}

static void test_contiguous_only(void **state)
{
	struct fx *fx = *state;
	struct kvcctl_plot_files files;

	assert_int_equal(kvcctl_plot_results(fx->dir, &fx->ptr[2], 1, &files),
			 0);
	/* A timeline, waste, concurrency, tradeoff; no chunks, no indices. */
	assert_int_equal(files.nr, 4);
	assert_int_equal(files.heat_maps, 0);
	assert_false(exists(fx, "indices.gp"));
	assert_false(exists(fx, "chunks-1.dat"));
	assert_true(exists(fx, "series.dat"));
}

static void test_caps(void **state)
{
	struct fx *fx = *state;
	const struct kvc_sim_result *many[20];
	struct kvcctl_plot_files files;
	uint32_t i;

	/* 20 configurations, every one with chunks: 16 of each drawn. */
	for (i = 0; i < 20; i++)
		many[i] = &fx->res[0];
	assert_int_equal(kvcctl_plot_results(fx->dir, many, 20, &files), 0);
	assert_int_equal(files.timelines, KVCCTL_PLOT_MAX_EACH);
	assert_int_equal(files.heat_maps, KVCCTL_PLOT_MAX_EACH);
	assert_int_equal(files.heat_skipped, 4);
	assert_int_equal(files.nr, 2 * KVCCTL_PLOT_MAX_EACH + 4);
	assert_true(exists(fx, "timeline-16.gp"));
	assert_false(exists(fx, "timeline-17.gp"));
	assert_true(exists(fx, "chunks-16.dat"));
	assert_false(exists(fx, "chunks-17.dat"));
}

static void test_bad_dir(void **state)
{
	struct fx *fx = *state;
	struct kvcctl_plot_files files;
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/file", fx->dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(kvcctl_plot_results(path, fx->ptr, NR_RES, &files),
			 -ENOTDIR);
	assert_non_null(strstr(kvc_last_error(), "not a directory"));
	assert_int_equal(kvcctl_plot_results(fx->dir, fx->ptr, 0, &files),
			 -EINVAL);
	/* A directory is made when missing. */
	snprintf(path, sizeof(path), "%s/sub", fx->dir);
	assert_int_equal(kvcctl_plot_results(path, fx->ptr, 1, &files), 0);
	snprintf(path, sizeof(path), "%s/sub/waste.gp", fx->dir);
	assert_int_equal(access(path, R_OK), 0);
	/* Leave the directory empty for the teardown. */
	snprintf(path, sizeof(path), "rm -r '%s/sub'", fx->dir);
	assert_int_equal(system(path), 0);
}

static void test_gnuplot_missing(void **state)
{
	struct fx *fx = *state;
	struct kvcctl_plot_files files;
	char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	int err;

	assert_int_equal(kvcctl_plot_results(fx->dir, fx->ptr, 1, &files), 0);
	setenv("PATH", fx->dir, 1);
	err = kvcctl_plot_draw(fx->dir, &files);
	if (old)
		setenv("PATH", old, 1);
	else
		unsetenv("PATH");
	free(old);
	assert_int_equal(err, -ENOENT);
	assert_false(exists(fx, "waste.png"));
}

static bool have_gnuplot(void)
{
	return !system("command -v gnuplot >/dev/null 2>&1");
}

static void test_draw(void **state)
{
	static const char *const figures[] = {
		"timeline-1", "timeline-3", "chunks-1",	   "waste",
		"indices",    "tradeoff",   "concurrency",
	};
	struct fx *fx = *state;
	struct kvcctl_plot_files files;
	char name[64];
	size_t i;

	if (!have_gnuplot())
		skip();
	assert_int_equal(kvcctl_plot_results(fx->dir, fx->ptr, NR_RES, &files),
			 0);
	assert_int_equal(kvcctl_plot_draw(fx->dir, &files), 0);
	assert_true(exists(fx, "gnuplot.log"));
	for (i = 0; i < sizeof(figures) / sizeof(figures[0]); i++) {
		snprintf(name, sizeof(name), "%s.png", figures[i]);
		if (!exists(fx, name))
			fail_msg("%s was not drawn", name);
		snprintf(name, sizeof(name), "%s.svg", figures[i]);
		if (!exists(fx, name))
			fail_msg("%s was not drawn", name);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_labels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeline_rows, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_waste_rows, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_heat_rows, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_series_rows, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tradeoff_rows, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_quoting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_files, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_contiguous_only, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gnuplot_missing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_draw, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
