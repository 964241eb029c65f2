/*
 * coord_plot.h - the logic of fedcomp-report: read a coordinator's report
 * directory (and a sweep's CSVs), derive what is plotted, write gnuplot
 * data files (.dat) and scripts (.gp), run gnuplot, and write the summary.
 *
 * Layers of this module, each usable (and tested) on its own:
 *   1. CSV tables (struct coord_plot_table): a whole file split into
 *      header + rows of string cells; every row must have as many cells as
 *      the header; columns are looked up by header name, never by position.
 *      Quoted fields are not supported (the writers never quote).
 *   2. Typed rows (struct coord_plot_round, struct coord_plot_dev) converted
 *      from tables by column name, with strict number parsing, and a run
 *      (struct coord_plot_run) = one report directory.
 *   3. Derived data: bytes per round, accuracy against cumulative uplink
 *      bytes, per-device statistics, totals for the summary.
 *   4. Charts: .dat + .gp files in an output directory, and running
 *      gnuplot on them (fork/exec, never a shell).
 *
 * Errors: every function that can fail returns enum fl_err and, when it is
 * given an `err` buffer, writes one lowercase message naming the file, line
 * and column ("'rep/rounds.csv' line 7: expected 22 columns, got 5").
 * Nothing here prints; the program (report_main.c) does.
 * Ownership is stated per function. Nothing is thread-safe.
 */
#ifndef COORD_PLOT_H
#define COORD_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/fl_err.h"
#include "coordinator/coord_report.h"

/* Largest CSV file read (bytes); larger ones give FL_ERR_TOO_LARGE. */
#define COORD_PLOT_MAX_FILE ((size_t)1 << 30)

/* ------------------------------------------------------------ 1. tables */

struct coord_plot_table;

/* Parse CSV text. `name` is used in error messages (usually the path) and
 * copied. The text is copied, so the caller keeps [text, len].
 * Blank lines are allowed only at the end; a trailing '\r' is dropped.
 * FL_ERR_FORMAT: empty text (no header), an empty or duplicate column name,
 * a row whose cell count differs from the header's. FL_ERR_NOMEM.
 * Caller owns *out (coord_plot_table_destroy()); *out is NULL on failure. */
enum fl_err coord_plot_table_parse(const char *name, const char *text,
                                   size_t len, struct coord_plot_table **out,
                                   char *err, size_t errlen);

/* Read and parse the file at path (at most COORD_PLOT_MAX_FILE bytes).
 * FL_ERR_NOT_FOUND when it does not exist, FL_ERR_IO, FL_ERR_TOO_LARGE,
 * and whatever coord_plot_table_parse() returns. */
enum fl_err coord_plot_table_read(const char *path,
                                  struct coord_plot_table **out, char *err,
                                  size_t errlen);

/* Accepts NULL and a pointer to NULL; sets *tp to NULL. */
void coord_plot_table_destroy(struct coord_plot_table **tp);

size_t coord_plot_table_rows(const struct coord_plot_table *t);
size_t coord_plot_table_cols(const struct coord_plot_table *t);
const char *coord_plot_table_name(const struct coord_plot_table *t);

/* Index of the column called `col`. FL_ERR_NOT_FOUND ("'x.csv': no column
 * 'foo'") when the header has no such column. */
enum fl_err coord_plot_table_col(const struct coord_plot_table *t,
                                 const char *col, size_t *idx, char *err,
                                 size_t errlen);

/* The cell text (never NULL; "" for an empty cell), valid while t lives.
 * row < rows, col < cols (asserted). */
const char *coord_plot_table_cell(const struct coord_plot_table *t,
                                  size_t row, size_t col);

/* The line number in the file of data row `row` (the header is line 1). */
size_t coord_plot_table_line(const struct coord_plot_table *t, size_t row);

/* The cell as a number. An empty cell, or "nan" in any case, gives NAN
 * when `required` is false and FL_ERR_FORMAT ("... is empty") when true.
 * Anything else must be a whole finite decimal number: FL_ERR_FORMAT
 * ("'x.csv' line 3, column 'up_wire_bytes': 'abc' is not a number"). */
enum fl_err coord_plot_table_num(const struct coord_plot_table *t,
                                 size_t row, size_t col, bool required,
                                 double *out, char *err, size_t errlen);

/* ------------------------------------------------------- 2. typed rows */

/* One rounds.csv row (one round attempt). Byte counts are exact up to 2^53.
 * test_acc and test_loss are NAN for an abandoned attempt. */
struct coord_plot_round {
    uint64_t round;
    uint64_t attempt;
    double selected;
    double reported;
    double dropped;
    double rejected;
    double late;
    double up_wire;
    double up_dense;
    double other_rx;
    double down_wire;
    double down_dense;
    double wall_s;
    double cpu_s;
    double agg_s;
    double test_acc;
    double test_loss;
};

/* One devices.csv row. upload_ms is NAN when the device sent no update. */
struct coord_plot_dev {
    uint64_t round;
    const char *device;          /* points into the table it came from */
    enum coord_dev_status status;
    double up_bytes;
    double down_bytes;
    double upload_ms;
};

/* Columns read from rounds.csv / devices.csv (by name; others ignored). */
extern const char *const coord_plot_round_cols[];
extern const size_t coord_plot_round_ncols;
extern const char *const coord_plot_dev_cols[];
extern const size_t coord_plot_dev_ncols;

/* Convert a rounds.csv table. Every listed column must exist; round,
 * attempt and the byte and count columns must be non-empty non-negative
 * numbers (round and attempt integers); the time and accuracy columns may
 * be empty (NAN). Caller owns *rows (fl_free()); *n may be 0.
 * FL_ERR_NOT_FOUND (missing column), FL_ERR_FORMAT, FL_ERR_NOMEM. */
enum fl_err coord_plot_rounds_from_table(const struct coord_plot_table *t,
                                         struct coord_plot_round **rows,
                                         size_t *n, char *err, size_t errlen);

/* Convert a devices.csv table; status must be one of coord_dev_status's
 * names, device non-empty. Device names point into t: keep t alive.
 * Caller owns *rows (fl_free()). Errors as above. */
enum fl_err coord_plot_devs_from_table(const struct coord_plot_table *t,
                                       struct coord_plot_dev **rows,
                                       size_t *n, char *err, size_t errlen);

/* One report directory. rounds.csv is required and must have at least
 * one row; devices.csv (n_devs 0, has_devs false) and initial_acc are
 * optional, but checked when present. */
struct coord_plot_run {
    char *dir;                   /* as given */
    char *name;                  /* legend name (basename of dir) */
    struct coord_plot_round *rounds;
    size_t n_rounds;
    struct coord_plot_dev *devs;
    size_t n_devs;
    bool has_devs;
    double initial_acc;          /* dir/initial_acc, NAN when missing */
    struct coord_plot_table *rounds_table;
    struct coord_plot_table *devs_table;
};

/* Load dir/rounds.csv and dir/devices.csv. Caller owns *out
 * (coord_plot_run_destroy()); NULL on failure. */
enum fl_err coord_plot_run_load(const char *dir, struct coord_plot_run **out,
                                char *err, size_t errlen);

/* Accepts NULL and a pointer to NULL; sets *rp to NULL. */
void coord_plot_run_destroy(struct coord_plot_run **rp);

/* ---------------------------------------------------- 3. derived data */

/* Bytes of one round, summed over its attempts. */
struct coord_plot_round_bytes {
    uint64_t round;
    uint64_t attempts;
    double up_wire;
    double up_dense;
    double down_wire;
    double down_dense;
};

/* Group rows by round number (any order in, ascending rounds out). out
 * must have room for n entries; returns the number written. */
size_t coord_plot_bytes_per_round(const struct coord_plot_round *rows,
                                  size_t n,
                                  struct coord_plot_round_bytes *out);

/* A point of the accuracy curve: after `round`, `cum_up_wire` bytes had
 * been uploaded in total (every attempt so far, abandoned ones included,
 * in file order) and the model had test accuracy `acc`. */
struct coord_plot_acc_point {
    uint64_t round;
    double cum_up_wire;
    double cum_up_dense;
    double acc;
};

/* One point per row with a finite test_acc. out must have room for n
 * entries; returns the number written. */
size_t coord_plot_acc_curve(const struct coord_plot_round *rows, size_t n,
                            struct coord_plot_acc_point *out);

/* Per-device statistics over devices.csv rows. "uploads" are rows with
 * up_bytes > 0; "timed" rows have a finite upload_ms. Means are NAN when
 * their count is 0. */
struct coord_plot_dev_stat {
    const char *device;          /* borrowed from the rows */
    size_t rows;
    size_t by_status[4];         /* indexed by enum coord_dev_status */
    size_t uploads;
    size_t timed;
    double up_bytes_total;
    double up_bytes_mean;
    double upload_ms_mean;
    double upload_ms_min;
    double upload_ms_max;
};

/* Aggregate per device, sorted by device name in natural order ("w2"
 * before "w10"). Caller owns *out (fl_free()); *n_out may be 0.
 * FL_ERR_NOMEM. */
enum fl_err coord_plot_dev_stats(const struct coord_plot_dev *rows, size_t n,
                                 struct coord_plot_dev_stat **out,
                                 size_t *n_out);

/* Natural-order comparison of names (digit runs compared as numbers). */
int coord_plot_name_cmp(const char *a, const char *b);

/* What the summary shows about one run. */
struct coord_plot_totals {
    size_t attempts;
    size_t committed;            /* rows with a finite test_acc */
    uint64_t last_round;         /* of the last committed row (0: none) */
    double final_acc;            /* NAN when none committed */
    double final_loss;
    double up_wire;
    double up_dense;
    double other_rx;
    double down_wire;
    double down_dense;
    double up_ratio;             /* up_dense / up_wire; NAN when no bytes */
    double mean_wall_s;          /* over every attempt with a wall time */
    size_t devices;              /* distinct names in devices.csv */
    size_t dev_rows[4];          /* device rows by enum coord_dev_status */
    long fastest;                /* index into stats by mean upload_ms, */
    long slowest;                /*   -1 when no device has a timed upload */
};

void coord_plot_totals(const struct coord_plot_run *run,
                       const struct coord_plot_dev_stat *stats,
                       size_t n_stats, struct coord_plot_totals *out);

/* Write the summary of run (and a comparison table of `others`, which
 * may be 0) to f. */
void coord_plot_summary_write(FILE *f, const struct coord_plot_run *run,
                              const struct coord_plot_totals *tot,
                              const struct coord_plot_dev_stat *stats,
                              const struct coord_plot_run *const *others,
                              size_t n_others);

/* ------------------------------------------------------------ 4. charts */

enum coord_plot_formats {
    COORD_PLOT_SVG = 1 << 0,
    COORD_PLOT_PNG = 1 << 1
};

struct coord_plot_opts {
    const char *out_dir;         /* existing directory for every file */
    unsigned formats;            /* enum coord_plot_formats bits, != 0 */
    bool pngcairo;               /* PNG terminal: pngcairo, else png */
};

/* The benchmark sweep: sweep.csv (required) and sweep-fit.csv (optional,
 * fit NULL when missing). */
struct coord_plot_sweep {
    struct coord_plot_table *data;
    struct coord_plot_table *fit;
};

/* Load DIR/sweep.csv and DIR/sweep-fit.csv; checks the columns that the
 * chart uses. FL_ERR_NOT_FOUND when sweep.csv does not exist. On failure
 * nothing is left allocated. Release with coord_plot_sweep_release(). */
enum fl_err coord_plot_sweep_load(const char *dir, struct coord_plot_sweep *sw,
                                  char *err, size_t errlen);
void coord_plot_sweep_release(struct coord_plot_sweep *sw);

/* Each writer puts its data files and one script NAME.gp into
 * opts->out_dir and stores the script's file name (e.g. "bytes.gp") in
 * script. The script writes NAME.svg and/or NAME.png in the same
 * directory and refers to every file by a relative name, so gnuplot must
 * run in that directory (coord_plot_gnuplot_run does).
 * FL_ERR_IO (err names the file), FL_ERR_NOMEM, FL_ERR_NOT_FOUND when
 * there is nothing to plot (err says why). */

/* 1. bytes.gp: bytes up and down per round, wire and dense (bytes.dat). */
enum fl_err coord_plot_chart_bytes(const struct coord_plot_opts *opts,
                                   const struct coord_plot_run *run,
                                   char *script, size_t script_len,
                                   char *err, size_t errlen);

/* 2. accuracy.gp: test accuracy against cumulative uplink wire bytes, one
 * line per run (accuracy-1.dat, accuracy-2.dat, ...). */
enum fl_err coord_plot_chart_accuracy(const struct coord_plot_opts *opts,
                                      const struct coord_plot_run *const *runs,
                                      size_t n_runs, char *script,
                                      size_t script_len, char *err,
                                      size_t errlen);

/* 3. sweep.gp: cost against device count with the fitted lines
 * (sweep.dat). */
enum fl_err coord_plot_chart_sweep(const struct coord_plot_opts *opts,
                                   const struct coord_plot_sweep *sw,
                                   char *script, size_t script_len,
                                   char *err, size_t errlen);

/* 4. devices.gp: upload sizes and times per round (devices-rounds.dat)
 * and per device (devices.dat, rows in the order of stats). */
enum fl_err coord_plot_chart_devices(const struct coord_plot_opts *opts,
                                     const struct coord_plot_run *run,
                                     const struct coord_plot_dev_stat *stats,
                                     size_t n_stats, char *script,
                                     size_t script_len, char *err,
                                     size_t errlen);

/* Which terminals gnuplot has: runs `gnuplot -e "set terminal"` (from
 * PATH) once. FL_ERR_NOT_FOUND when gnuplot cannot be run (err says which
 * Debian package to install). */
enum fl_err coord_plot_gnuplot_probe(bool *has_svg, bool *has_pngcairo,
                                     bool *has_png, char *err, size_t errlen);

/* Run `gnuplot SCRIPT` in dir, its output appended to dir/gnuplot.log.
 * FL_ERR_NOT_FOUND when gnuplot cannot be run, FL_ERR_IO when it fails
 * (err holds the last line it printed). */
enum fl_err coord_plot_gnuplot_run(const char *dir, const char *script,
                                   char *err, size_t errlen);

#endif /* COORD_PLOT_H */
