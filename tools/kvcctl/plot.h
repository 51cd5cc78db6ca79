/* SPDX-License-Identifier: MIT */
/*
 * kvcctl replay's figures: gnuplot data files and scripts written into one
 * directory, then drawn by running gnuplot there. The data and scripts are
 * the product; the PNG and SVG are a convenience, so a user without
 * gnuplot (or with other taste) still has everything to draw them.
 * kvcctl eval's figure uses the quoting and the running of gnuplot too.
 */
#ifndef KVCCTL_PLOT_H
#define KVCCTL_PLOT_H

#include <stdint.h>
#include <stdio.h>

#include <kvc/sim.h>

/* Timelines and chunk maps drawn at most, one per configuration. */
#define KVCCTL_PLOT_MAX_EACH 16
/* Scripts one directory can hold: the per-configuration ones and four. */
#define KVCCTL_PLOT_MAX_SCRIPTS (2 * KVCCTL_PLOT_MAX_EACH + 8)

/**
 * struct kvcctl_plot_files - The scripts written into a directory.
 * @names: their file names ("waste.gp"), relative to the directory.
 * @nr: how many.
 * @timelines: timelines written (configurations 1 .. @timelines).
 * @heat_maps: chunk maps written.
 * @heat_skipped: configurations with a chunk map beyond the cap.
 */
struct kvcctl_plot_files {
	char names[KVCCTL_PLOT_MAX_SCRIPTS][32];
	uint32_t nr;
	uint32_t timelines;
	uint32_t heat_maps;
	uint32_t heat_skipped;
};

/**
 * kvcctl_plot_labels() - Write the labels file: "N label" per line.
 * @f: the stream.
 * @res: the configurations' results, in order.
 * @n: their count.
 */
void kvcctl_plot_labels(FILE *f, const struct kvc_sim_result *const *res,
			uint32_t n);

/**
 * kvcctl_plot_timeline_data() - Write one configuration's memory timeline.
 * @f: the stream.
 * @s: its samples.
 * @n: their count.
 *
 * One row per sample: step, t_s, then live, reservation, internal (the
 * ladder's tail), free in mapped chunks, parked and mapped in MiB, then
 * running sequences and the preemptions since the previous sample. The
 * five levels stack up to mapped.
 */
void kvcctl_plot_timeline_data(FILE *f, const struct kvc_sim_sample *s,
			       uint64_t n);

/**
 * kvcctl_plot_waste_data() - Write the waste bars: one row per
 * configuration with its number, quoted label and the time-averaged
 * shares of the region in percent (live, reservation, internal, external,
 * unmapped).
 * @f: the stream.
 * @res: the results.
 * @n: their count.
 */
void kvcctl_plot_waste_data(FILE *f, const struct kvc_sim_result *const *res,
			    uint32_t n);

/**
 * kvcctl_plot_heat_data() - Write a chunk map: live blocks per chunk at
 * the result's heat step, on a grid about as wide as it is tall.
 * @f: the stream.
 * @r: a result with a heat map.
 *
 * Rows of "x y value", a blank line after each grid row (gnuplot's
 * "with image" form); chunk x + y * width; -1 marks an unmapped chunk and
 * -2 the cells past the last chunk.
 *
 * Return: the grid's width (0 when @r has no heat map; nothing written).
 */
uint32_t kvcctl_plot_heat_data(FILE *f, const struct kvc_sim_result *r);

/**
 * kvcctl_plot_series_data() - Write every configuration's series, one
 * gnuplot data block each (two blank lines apart), for the index and
 * concurrency figures.
 * @f: the stream.
 * @res: the results.
 * @n: their count.
 *
 * Columns: step, t_s, running, waiting, done, preemptions, unusable index
 * at the chunk order ("?" when the layout has none), pack ratio, hole
 * ratio.
 */
void kvcctl_plot_series_data(FILE *f, const struct kvc_sim_result *const *res,
			     uint32_t n);

/**
 * kvcctl_plot_tradeoff_data() - Write the trade-off points: number,
 * quoted label, MiB copied by compaction, time-averaged external share of
 * the region in percent.
 * @f: the stream.
 * @res: the results.
 * @n: their count.
 */
void kvcctl_plot_tradeoff_data(FILE *f, const struct kvc_sim_result *const *res,
			       uint32_t n);

/**
 * kvcctl_plot_timeline() - Write timeline-@idx.dat and its script.
 * @dir: the directory (it exists).
 * @idx: the configuration's number, from 1.
 * @label: its label.
 * @s: its samples.
 * @n: their count.
 * @files: the script's name is added.
 *
 * Return: 0, or -errno with a message naming the file.
 */
int kvcctl_plot_timeline(const char *dir, uint32_t idx, const char *label,
			 const struct kvc_sim_sample *s, uint64_t n,
			 struct kvcctl_plot_files *files);

/**
 * kvcctl_plot_results() - Write every figure's data and script for a set
 * of configurations: labels.txt, timeline-N and chunks-N (at most
 * %KVCCTL_PLOT_MAX_EACH of each), waste, indices, tradeoff, concurrency.
 * @dir: the directory; made when missing.
 * @res: the results, in configuration order.
 * @n: their count (>= 1).
 * @files: filled.
 *
 * Return: 0, or -errno with a message naming the file.
 */
int kvcctl_plot_results(const char *dir,
			const struct kvc_sim_result *const *res, uint32_t n,
			struct kvcctl_plot_files *files);

/**
 * kvcctl_plot_mkdir() - Make the plot directory when it is missing.
 * @dir: the directory.
 *
 * Return: 0, or -errno with a message.
 */
int kvcctl_plot_mkdir(const char *dir);

/**
 * kvcctl_plot_draw() - Run gnuplot on each script, in @dir.
 * @dir: the directory.
 * @files: the scripts.
 *
 * Return: 0; -ENOENT when gnuplot is not installed; -EIO with a message
 * naming the first script gnuplot failed on (the others are still run).
 */
int kvcctl_plot_draw(const char *dir, const struct kvcctl_plot_files *files);

/**
 * kvcctl_in_path() - Whether a program can be run from $PATH.
 * @prog: its name.
 *
 * Return: true when an executable of that name is in a $PATH directory
 * (/usr/bin:/bin when $PATH is unset).
 */
bool kvcctl_in_path(const char *prog);

/**
 * kvcctl_gp_string() - Write a gnuplot single-quoted string.
 * @f: the stream.
 * @s: the text (a path, a title), written between quotes with each quote
 *     doubled, as gnuplot reads it back.
 */
void kvcctl_gp_string(FILE *f, const char *s);

/**
 * kvcctl_run_gnuplot() - Run gnuplot on a script and wait for it.
 * @dir: its working directory, or NULL for the current one.
 * @script: the script, relative to @dir.
 * @log_file: a file (relative to @dir) that gnuplot's chatter is
 *            appended to, or NULL to leave it on our stdout and stderr.
 *
 * Flushes every stdio stream first, so output already written comes
 * before gnuplot's.
 *
 * Return: 0 when gnuplot ran and exited with 0; -EIO when it could not
 * be run or failed; another -errno when it could not be started or
 * waited for.
 */
int kvcctl_run_gnuplot(const char *dir, const char *script,
		       const char *log_file);

#endif /* KVCCTL_PLOT_H */
