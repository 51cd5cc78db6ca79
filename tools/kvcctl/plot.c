// SPDX-License-Identifier: MIT
/*
 * kvcctl replay's figures: the gnuplot data files, the scripts that draw
 * them as PNG and SVG, and running gnuplot on them. Scripts name their
 * files relative to their own directory, so `gnuplot waste.gp` there
 * redraws a figure. Never decides what a replay measured: it only lays
 * out numbers the results already hold.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../alloc/error.h"
#include "plot.h"

#define MIB (1024.0 * 1024.0)
#define GNUPLOT_LOG "gnuplot.log"

/* The terminals every script draws on, and the size of a figure. */
#define GP_LOOP_START                                                 \
	"do for [term in \"png svg\"] {\n"                            \
	"\teval sprintf(\"set terminal %%s size %u,%u noenhanced\", " \
	"term)\n"

static double mib(uint64_t bytes)
{
	return (double)bytes / MIB;
}

static double pct(double share)
{
	return share * 100.0;
}

void kvcctl_gp_string(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f);
		fputc(*s, f);
	}
	fputc('\'', f);
}

/* A label in a data file: double-quoted, with no quote or newline. */
static void put_data_label(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++)
		fputc(*s == '"' || *s == '\n' || *s == '\r' ? '_' : *s, f);
	fputc('"', f);
}

static const char *label_of(const struct kvc_sim_result *r)
{
	return r->summary.label ? r->summary.label : "?";
}

void kvcctl_plot_labels(FILE *f, const struct kvc_sim_result *const *res,
			uint32_t n)
{
	uint32_t i;

	fputs("# N label\n", f);
	for (i = 0; i < n; i++)
		fprintf(f, "%u %s\n", i + 1, label_of(res[i]));
}

void kvcctl_plot_timeline_data(FILE *f, const struct kvc_sim_sample *s,
			       uint64_t n)
{
	uint64_t i, before = 0;

	fputs("# step t_s live_mib reservation_mib internal_mib free_mapped_mib parked_mib mapped_mib running new_preemptions\n",
	      f);
	for (i = 0; i < n; i++) {
		const struct kvc_ladder *l = &s[i].ladder;
		uint64_t now = s[i].preemptions;

		fprintf(f, "%llu %.9g %.9g %.9g %.9g %.9g %.9g %.9g %u %llu\n",
			(unsigned long long)s[i].step, s[i].t_s, mib(l->live),
			mib(l->reservation), mib(l->tail), mib(l->free_mapped),
			mib(l->parked), mib(l->mapped), s[i].running,
			(unsigned long long)(now > before ? now - before : 0));
		before = now;
	}
}

void kvcctl_plot_waste_data(FILE *f, const struct kvc_sim_result *const *res,
			    uint32_t n)
{
	uint32_t i;

	fputs("# N label live_pct reservation_pct internal_pct external_pct unmapped_pct\n",
	      f);
	for (i = 0; i < n; i++) {
		const struct kvc_sim_summary *s = &res[i]->summary;

		fprintf(f, "%u ", i + 1);
		put_data_label(f, label_of(res[i]));
		fprintf(f, " %.6g %.6g %.6g %.6g %.6g\n", pct(s->share_live),
			pct(s->share_reservation), pct(s->share_internal),
			pct(s->share_external), pct(s->share_unmapped));
	}
}

/* Grid width for @chunks cells: ceil(sqrt(chunks)). */
static uint32_t grid_width(uint32_t chunks)
{
	uint32_t w = (uint32_t)sqrt((double)chunks);

	while ((uint64_t)w * w < chunks)
		w++;
	while (w > 1 && (uint64_t)(w - 1) * (w - 1) >= chunks)
		w--;
	return w ? w : 1;
}

uint32_t kvcctl_plot_heat_data(FILE *f, const struct kvc_sim_result *r)
{
	uint32_t w, h, x, y, c;

	if (!r->heat || !r->heat_chunks)
		return 0;
	w = grid_width(r->heat_chunks);
	h = (r->heat_chunks + w - 1) / w;
	fprintf(f,
		"# x y live_blocks: chunk x + y * %u at step %llu; -1 unmapped, -2 no chunk\n",
		w, (unsigned long long)r->heat_step);
	for (y = 0; y < h; y++) {
		for (x = 0; x < w; x++) {
			c = y * w + x;
			fprintf(f, "%u %u %d\n", x, y,
				c < r->heat_chunks ? r->heat[c] : -2);
		}
		fputc('\n', f);
	}
	return w;
}

/* The unusable index at the chunk's order: the highest order filled. */
static void put_unusable(FILE *f, const struct kvc_ladder *l)
{
	if (!l->nr_orders || l->nr_orders > KVC_LADDER_ORDERS ||
	    !isfinite(l->unusable[l->nr_orders - 1]))
		fputs(" ?", f);
	else
		fprintf(f, " %.6g", l->unusable[l->nr_orders - 1]);
}

void kvcctl_plot_series_data(FILE *f, const struct kvc_sim_result *const *res,
			     uint32_t n)
{
	uint64_t j;
	uint32_t i;

	for (i = 0; i < n; i++) {
		fprintf(f, "# %u %s\n", i + 1, label_of(res[i]));
		fputs("# step t_s running waiting done preemptions unusable_chunk pack_ratio hole_ratio\n",
		      f);
		for (j = 0; j < res[i]->nr_samples; j++) {
			const struct kvc_sim_sample *s = &res[i]->samples[j];

			fprintf(f, "%llu %.9g %u %u %llu %llu",
				(unsigned long long)s->step, s->t_s, s->running,
				s->waiting, (unsigned long long)s->done,
				(unsigned long long)s->preemptions);
			put_unusable(f, &s->ladder);
			fprintf(f, " %.6g %.6g\n", s->ladder.pack_ratio,
				s->ladder.hole_ratio);
		}
		/* A data block needs a row; an empty series plots nothing. */
		if (!res[i]->nr_samples)
			fputs("? ? ? ? ? ? ? ? ?\n", f);
		fputs("\n\n", f);
	}
}

void kvcctl_plot_tradeoff_data(FILE *f, const struct kvc_sim_result *const *res,
			       uint32_t n)
{
	uint32_t i;

	fputs("# N label mib_copied external_pct\n", f);
	for (i = 0; i < n; i++) {
		fprintf(f, "%u ", i + 1);
		put_data_label(f, label_of(res[i]));
		fprintf(f, " %.9g %.6g\n", mib(res[i]->summary.bytes_copied),
			pct(res[i]->summary.share_external));
	}
}

/* ---- Scripts ---- */

static void script_head(FILE *f, const char *name, const char *what,
			unsigned int width, unsigned int height)
{
	fprintf(f,
		"# kvcctl replay: %s.\n"
		"# Draws %s.png and %s.svg; run 'gnuplot %s.gp' in this directory.\n"
		"set datafile missing '?'\n"
		"set grid\n" GP_LOOP_START "\tset output '%s.'.term\n",
		what, name, name, name, width, height, name);
}

static void script_tail(FILE *f)
{
	fputs("\tset output\n}\n", f);
}

static void timeline_script(FILE *f, const char *name, const char *dat,
			    uint32_t idx, const char *label)
{
	script_head(f, name, "memory timeline of one configuration", 1200, 600);
	fputs("\tset title ", f);
	fprintf(f, "'%u: ' . ", idx);
	kvcctl_gp_string(f, label);
	fprintf(f,
		"\n"
		"\tset xlabel 'time (s)'\n"
		"\tset ylabel 'KV region (MiB)'\n"
		"\tset key outside right top invert\n"
		"\tset style fill solid 0.85 noborder\n"
		"\tplot '%s' using 2:(0):3 with filledcurves title 'live', \\\n"
		"\t     '' using 2:3:($3+$4) with filledcurves title 'reservation', \\\n"
		"\t     '' using 2:($3+$4):($3+$4+$5) with filledcurves title 'tail (internal)', \\\n"
		"\t     '' using 2:($3+$4+$5):($3+$4+$5+$6) with filledcurves title 'free in mapped chunks', \\\n"
		"\t     '' using 2:($3+$4+$5+$6):($3+$4+$5+$6+$7) with filledcurves title 'parked', \\\n"
		"\t     '' using 2:8 with lines lw 2 lc rgb 'black' title 'mapped', \\\n"
		"\t     '' using 2:($10 > 0 ? $8 : 1/0) with points pt 7 ps 0.8 lc rgb 'red' title 'preemption'\n",
		dat);
	script_tail(f);
}

static void waste_script(FILE *f)
{
	script_head(
		f, "waste",
		"time-averaged shares of the KV region, one bar per configuration",
		1200, 650);
	fputs("\tset title 'Where the KV region goes (time-averaged)'\n"
	      "\tset ylabel 'share of the KV region (%)'\n"
	      "\tset yrange [0:100]\n"
	      "\tset style data histograms\n"
	      "\tset style histogram rowstacked\n"
	      "\tset style fill solid 0.85 border -1\n"
	      "\tset boxwidth 0.7\n"
	      "\tset xtics rotate by -30 left\n"
	      "\tset key outside right top invert\n"
	      "\tplot 'waste.dat' using 3:xtic(2) title 'token states (live)', \\\n"
	      "\t     '' using 4 title 'reservation', \\\n"
	      "\t     '' using 5 title 'internal frag.', \\\n"
	      "\t     '' using 6 title 'external frag. & others', \\\n"
	      "\t     '' using 7 title 'unmapped'\n"
	      "\tunset xtics\n"
	      "\tset xtics\n",
	      f);
	script_tail(f);
}

static void heat_script(FILE *f, const char *name, const char *dat,
			uint32_t idx, const struct kvc_sim_result *r,
			uint32_t width)
{
	uint32_t height = (r->heat_chunks + width - 1) / width;
	uint32_t full = r->blocks_per_chunk ? r->blocks_per_chunk : 1;
	/* Whole chunks on the axes, about 16 tics at most. */
	uint32_t tics = width / 16 + 1;

	script_head(f, name, "live blocks per chunk at one step", 900, 800);
	fprintf(f, "\tset title '%u: ' . ", idx);
	kvcctl_gp_string(f, label_of(r));
	fprintf(f,
		" . ' - live blocks per chunk at step %llu'\n"
		"\tunset grid\n"
		"\tset xrange [-0.5:%u.5]\n"
		"\tset yrange [%u.5:-0.5]\n"
		"\tset xtics %u\n"
		"\tset ytics %u\n"
		"\tset xlabel 'chunk mod %u  (gray: unmapped; light gray: past the last chunk)'\n"
		"\tset ylabel 'chunk / %u'\n"
		"\tset cbrange [-2:%u]\n"
		"\tset cblabel 'live blocks (of %u)' offset 2,0\n"
		"\tset palette defined (-2 'gray90', -1 'gray60', 0 '#fff5eb', %u '#7f2704')\n"
		"\tplot '%s' using 1:2:3 with image notitle\n"
		"\tset grid\n"
		"\tset xtics autofreq\n"
		"\tset ytics autofreq\n",
		(unsigned long long)r->heat_step, width - 1, height - 1, tics,
		tics, width, width, full, full, full, dat);
	script_tail(f);
}

static bool has_chunks(const struct kvc_sim_result *r)
{
	return r->summary.layout == KVC_LAYOUT_PER_HEAD ||
	       r->summary.layout == KVC_LAYOUT_PAGED;
}

/*
 * One line per configuration from series.dat, column @col against t_s;
 * with @chunked, only the configurations whose layout has chunks.
 */
static void series_plot(FILE *f, const struct kvc_sim_result *const *res,
			uint32_t n, int col, bool chunked)
{
	const char *sep = "\tplot ";
	uint32_t i;

	for (i = 0; i < n; i++) {
		if (chunked && !has_chunks(res[i]))
			continue;
		fprintf(f,
			"%s'series.dat' index %u using 2:%d with lines title ",
			sep, i, col);
		kvcctl_gp_string(f, label_of(res[i]));
		sep = ", \\\n\t     ";
	}
	fputc('\n', f);
}

static void indices_script(FILE *f, const struct kvc_sim_result *const *res,
			   uint32_t n)
{
	script_head(
		f, "indices",
		"unusable index at the chunk order and pack ratio over time",
		1200, 800);
	fputs("\tset multiplot layout 2,1\n"
	      "\tset key outside right top\n"
	      "\tset xlabel 'time (s)'\n"
	      "\tset ylabel 'unusable index (chunk order)'\n"
	      "\tset yrange [0:1.05]\n",
	      f);
	series_plot(f, res, n, 7, true);
	/* Near-empty steps spike the ratio: a log scale keeps 1-2 legible. */
	fputs("\tset ylabel 'pack ratio (mapped / packed floor, log)'\n"
	      "\tset autoscale y\n"
	      "\tset logscale y\n",
	      f);
	series_plot(f, res, n, 8, true);
	fputs("\tunset multiplot\n"
	      "\tunset logscale y\n"
	      "\tset autoscale y\n",
	      f);
	script_tail(f);
}

static void concurrency_script(FILE *f, const struct kvc_sim_result *const *res,
			       uint32_t n)
{
	script_head(f, "concurrency", "running sequences over time", 1200, 600);
	fputs("\tset title 'Running sequences'\n"
	      "\tset xlabel 'time (s)'\n"
	      "\tset ylabel 'sequences running'\n"
	      "\tset key outside right top\n",
	      f);
	series_plot(f, res, n, 3, false);
	script_tail(f);
}

/*
 * One series per configuration, so each has its own colour and its label
 * in the key; next to each point only its number, which stays legible
 * where configurations land on (nearly) the same point.
 */
static void tradeoff_script(FILE *f, const struct kvc_sim_result *const *res,
			    uint32_t n)
{
	const char *sep = "\tplot ";
	bool copied = false, shared = false;
	uint32_t i;

	for (i = 0; i < n; i++) {
		copied |= res[i]->summary.bytes_copied > 0;
		shared |= res[i]->summary.share_external > 0;
	}
	script_head(f, "tradeoff",
		    "external fragmentation against bytes copied by compaction",
		    1100, 700);
	fputs("\tset title 'Fragmentation against compaction cost'\n"
	      "\tset xlabel 'MiB copied by compaction'\n"
	      "\tset ylabel 'external share of the region, time-averaged (%)'\n"
	      "\tset key outside right top\n"
	      "\tset offsets 0, graph 0.1, graph 0.1, 0\n",
	      f);
	/* All at 0 (nothing compacted): a fixed range, no empty-range noise. */
	fprintf(f, "\tset xrange [0:%s]\n\tset yrange [0:%s]\n",
		copied ? "*" : "1", shared ? "*" : "1");
	for (i = 0; i < n; i++) {
		fprintf(f,
			"%s'tradeoff.dat' every ::%u::%u using 3:4 with points pt 7 ps 1.5 title ",
			sep, i, i);
		fprintf(f, "'%u: ' . ", i + 1);
		kvcctl_gp_string(f, label_of(res[i]));
		sep = ", \\\n\t     ";
	}
	fprintf(f,
		"%s'tradeoff.dat' using 3:4:(sprintf('%%d', $1)) with labels offset 0.8,0.8 left notitle\n",
		sep);
	fputs("\tunset offsets\n"
	      "\tset autoscale x\n"
	      "\tset autoscale y\n",
	      f);
	script_tail(f);
}

/* ---- Files ---- */

/* @dir/@name opened for writing; -errno with a message. */
static int open_in(const char *dir, const char *name, FILE **out)
{
	char path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    sizeof(path))
		return kvc_err(-ENAMETOOLONG, "--plot: %s/%s: path too long",
			       dir, name);
	*out = fopen(path, "w");
	if (!*out)
		return kvc_err(-errno, "--plot: cannot write %s: %s", path,
			       strerror(errno));
	return 0;
}

static int close_in(const char *dir, const char *name, FILE *f)
{
	int bad = ferror(f);

	if (fclose(f) || bad)
		return kvc_err(-EIO, "--plot: cannot write %s/%s", dir, name);
	return 0;
}

static void add_script(struct kvcctl_plot_files *files, const char *name)
{
	if (files->nr < KVCCTL_PLOT_MAX_SCRIPTS)
		snprintf(files->names[files->nr++], sizeof(files->names[0]),
			 "%s.gp", name);
}

int kvcctl_plot_mkdir(const char *dir)
{
	struct stat st;

	if (!mkdir(dir, 0777))
		return 0;
	if (errno == EEXIST && !stat(dir, &st) && S_ISDIR(st.st_mode))
		return 0;
	if (errno == EEXIST)
		return kvc_err(-ENOTDIR, "--plot: %s is not a directory", dir);
	return kvc_err(-errno, "--plot: cannot make %s: %s", dir,
		       strerror(errno));
}

int kvcctl_plot_timeline(const char *dir, uint32_t idx, const char *label,
			 const struct kvc_sim_sample *s, uint64_t n,
			 struct kvcctl_plot_files *files)
{
	char name[24], file[32];
	FILE *f;
	int err;

	snprintf(name, sizeof(name), "timeline-%u", idx);
	snprintf(file, sizeof(file), "%s.dat", name);
	err = open_in(dir, file, &f);
	if (err)
		return err;
	kvcctl_plot_timeline_data(f, s, n);
	err = close_in(dir, file, f);
	if (err)
		return err;
	snprintf(file, sizeof(file), "%s.gp", name);
	err = open_in(dir, file, &f);
	if (err)
		return err;
	snprintf(file, sizeof(file), "%s.dat", name);
	timeline_script(f, name, file, idx, label);
	snprintf(file, sizeof(file), "%s.gp", name);
	err = close_in(dir, file, f);
	if (!err) {
		add_script(files, name);
		files->timelines++;
	}
	return err;
}

static int write_heat(const char *dir, uint32_t idx,
		      const struct kvc_sim_result *r,
		      struct kvcctl_plot_files *files)
{
	char name[24], dat[32], gp[32];
	uint32_t width;
	FILE *f;
	int err;

	snprintf(name, sizeof(name), "chunks-%u", idx);
	snprintf(dat, sizeof(dat), "%s.dat", name);
	snprintf(gp, sizeof(gp), "%s.gp", name);
	err = open_in(dir, dat, &f);
	if (err)
		return err;
	width = kvcctl_plot_heat_data(f, r);
	err = close_in(dir, dat, f);
	if (err)
		return err;
	err = open_in(dir, gp, &f);
	if (err)
		return err;
	heat_script(f, name, dat, idx, r, width);
	err = close_in(dir, gp, f);
	if (!err) {
		add_script(files, name);
		files->heat_maps++;
	}
	return err;
}

typedef void (*writer_fn)(FILE *f, const struct kvc_sim_result *const *res,
			  uint32_t n);

/* @name (a file name) written by @fn. */
static int write_file(const char *dir, const char *name,
		      const struct kvc_sim_result *const *res, uint32_t n,
		      writer_fn fn)
{
	FILE *f;
	int err;

	err = open_in(dir, name, &f);
	if (err)
		return err;
	fn(f, res, n);
	return close_in(dir, name, f);
}

/* @name.gp written by @fn, and listed to be drawn. */
static int write_script(const char *dir, const char *name,
			const struct kvc_sim_result *const *res, uint32_t n,
			writer_fn fn, struct kvcctl_plot_files *files)
{
	char file[32];
	int err;

	snprintf(file, sizeof(file), "%s.gp", name);
	err = write_file(dir, file, res, n, fn);
	if (!err)
		add_script(files, name);
	return err;
}

static void waste_script_of(FILE *f, const struct kvc_sim_result *const *res,
			    uint32_t n)
{
	waste_script(f);
}

static void tradeoff_script_of(FILE *f, const struct kvc_sim_result *const *res,
			       uint32_t n)
{
	tradeoff_script(f, res, n);
}

int kvcctl_plot_results(const char *dir,
			const struct kvc_sim_result *const *res, uint32_t n,
			struct kvcctl_plot_files *files)
{
	uint32_t i;
	int err;

	memset(files, 0, sizeof(*files));
	if (!n)
		return kvc_err(-EINVAL, "--plot: no configuration to plot");
	err = kvcctl_plot_mkdir(dir);
	if (!err)
		err = write_file(dir, "labels.txt", res, n, kvcctl_plot_labels);
	for (i = 0; !err && i < n && i < KVCCTL_PLOT_MAX_EACH; i++)
		err = kvcctl_plot_timeline(dir, i + 1, label_of(res[i]),
					   res[i]->samples, res[i]->nr_samples,
					   files);
	for (i = 0; !err && i < n; i++) {
		if (!res[i]->heat || !res[i]->heat_chunks)
			continue;
		if (files->heat_maps == KVCCTL_PLOT_MAX_EACH)
			files->heat_skipped++;
		else
			err = write_heat(dir, i + 1, res[i], files);
	}
	if (!err)
		err = write_file(dir, "waste.dat", res, n,
				 kvcctl_plot_waste_data);
	if (!err)
		err = write_script(dir, "waste", res, n, waste_script_of,
				   files);
	/* One series file feeds the index and concurrency figures. */
	if (!err)
		err = write_file(dir, "series.dat", res, n,
				 kvcctl_plot_series_data);
	for (i = 0; i < n && !has_chunks(res[i]); i++)
		;
	/* Contiguous layouts have no chunks: no indices to draw. */
	if (!err && i < n)
		err = write_script(dir, "indices", res, n, indices_script,
				   files);
	if (!err)
		err = write_script(dir, "concurrency", res, n,
				   concurrency_script, files);
	if (!err)
		err = write_file(dir, "tradeoff.dat", res, n,
				 kvcctl_plot_tradeoff_data);
	if (!err)
		err = write_script(dir, "tradeoff", res, n, tradeoff_script_of,
				   files);
	return err;
}

/* ---- Drawing ---- */

bool kvcctl_in_path(const char *prog)
{
	const char *path = getenv("PATH"), *p;
	char buf[4096];
	size_t len;

	for (p = path ? path : "/usr/bin:/bin"; *p; p += len + !!p[len]) {
		len = strcspn(p, ":");
		if (!len || len + strlen(prog) + 2 > sizeof(buf))
			continue;
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, p, prog);
		if (!access(buf, X_OK))
			return true;
	}
	return false;
}

int kvcctl_run_gnuplot(const char *dir, const char *script,
		       const char *log_file)
{
	int ws, fd = -1;
	pid_t pid;

	/* What the caller buffered must come out before gnuplot's own output. */
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		if (dir && chdir(dir))
			_exit(127);
		if (log_file)
			fd = open(log_file,
				  O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
				  0666);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		execlp("gnuplot", "gnuplot", script, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &ws, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(ws) && !WEXITSTATUS(ws) ? 0 : -EIO;
}

int kvcctl_plot_draw(const char *dir, const struct kvcctl_plot_files *files)
{
	const char *failed = NULL;
	uint32_t i;

	char log[4096];

	if (!kvcctl_in_path("gnuplot"))
		return -ENOENT;
	snprintf(log, sizeof(log), "%s/" GNUPLOT_LOG, dir);
	unlink(log);
	for (i = 0; i < files->nr; i++)
		if (kvcctl_run_gnuplot(dir, files->names[i], GNUPLOT_LOG) &&
		    !failed)
			failed = files->names[i];
	if (failed)
		return kvc_err(
			-EIO,
			"--plot: gnuplot failed on %s/%s (see %s/" GNUPLOT_LOG
			")",
			dir, failed, dir);
	return 0;
}
