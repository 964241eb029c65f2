/*
 * report_main.c - fedcomp-report: charts (gnuplot, SVG and PNG) and a text
 * summary from a coordinator's report directory. docs/report.md has the
 * details; the logic is in coord_plot.c.
 *
 * Exit status: 0 everything written, 1 a file could not be read or
 * written or gnuplot failed or is missing, 2 bad command line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"
#include "coordinator/coord_plot.h"

#define PROG "fedcomp-report"
#define VERSION "0.1.0"
#define ERR_CAP 1024
#define PATH_CAP 4096
#define N_CHARTS 4

static const char usage_text[] =
    "usage: " PROG " REPORT_DIR [--out DIR] [--compare DIR...] "
    "[--sweep DIR]\n"
    "                      [--format svg,png]\n"
    "\n"
    "Reads a coordinator's report directory (rounds.csv, devices.csv) and\n"
    "writes charts, their gnuplot data (.dat) and scripts (.gp), and a\n"
    "summary (also printed) into the output directory:\n"
    "  bytes      bytes up and down per round, wire and dense (log scale)\n"
    "  accuracy   test accuracy against cumulative uplink bytes, one line\n"
    "             per run\n"
    "  sweep      cost against device count with the fitted lines (with\n"
    "             --sweep, or when REPORT_DIR/sweep.csv exists)\n"
    "  devices    upload sizes and times per round and per device\n"
    "\n"
    "options:\n"
    "  --out DIR          output directory (default REPORT_DIR/plots)\n"
    "  --compare DIR...   more report directories for the accuracy chart\n"
    "                     (every argument up to the next option)\n"
    "  --sweep DIR        directory with sweep.csv and sweep-fit.csv\n"
    "                     (bench/analyze.py sweep)\n"
    "  --format LIST      svg, png or svg,png (default)\n"
    "  --help, --version\n"
    "\n"
    "Needs gnuplot (Debian package gnuplot-nox). Exit status: 0 done,\n"
    "1 failed, 2 bad command line.\n";

struct args {
    const char *dir;
    const char *out;
    const char **compare;        /* points into argv */
    size_t n_compare;
    const char *sweep;
    unsigned formats;
};

enum parse_result { PARSE_RUN, PARSE_EXIT_OK, PARSE_USAGE };

__attribute__((format(printf, 1, 2)))
static enum parse_result usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\ntry '" PROG " --help'\n", stderr);
    return PARSE_USAGE;
}

static bool parse_formats(const char *s, unsigned *out)
{
    char buf[64];
    char *p, *comma;
    *out = 0;
    if (snprintf(buf, sizeof(buf), "%s", s) >= (int)sizeof(buf))
        return false;
    for (p = buf;; p = comma + 1) {
        comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        if (strcmp(p, "svg") == 0)
            *out |= COORD_PLOT_SVG;
        else if (strcmp(p, "png") == 0)
            *out |= COORD_PLOT_PNG;
        else
            return false;
        if (comma == NULL)
            return true;
    }
}

/* The value of option argv[*i] ("--opt VALUE" or "--opt=VALUE"). */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    const size_t n = strlen(name);
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (*i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

static bool is_opt(const char *arg, const char *name)
{
    const size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

static enum parse_result parse_one(int argc, char **argv, int *i,
                                   struct args *a)
{
    const char *arg = argv[*i], *v;
    if (is_opt(arg, "--out") || is_opt(arg, "--sweep") ||
        is_opt(arg, "--format")) {
        const char *name = arg[2] == 'o' ? "--out"
                           : arg[2] == 's' ? "--sweep" : "--format";
        v = opt_value(argc, argv, i, name);
        if (v == NULL || v[0] == '\0')
            return usage_error("option '%s' needs a value", name);
        if (arg[2] == 'o')
            a->out = v;
        else if (arg[2] == 's')
            a->sweep = v;
        else if (!parse_formats(v, &a->formats))
            return usage_error("--format '%s': expected svg, png or svg,png",
                               v);
        return PARSE_RUN;
    }
    if (strcmp(arg, "--compare") == 0) {
        const size_t before = a->n_compare;
        while (*i + 1 < argc && argv[*i + 1][0] != '-')
            a->compare[a->n_compare++] = argv[++*i];
        if (a->n_compare == before)
            return usage_error("%s needs at least one report directory",
                               "--compare");
        return PARSE_RUN;
    }
    if (arg[0] == '-')
        return usage_error("unknown option '%s'", arg);
    if (a->dir != NULL)
        return usage_error("unexpected argument '%s' (one REPORT_DIR; "
                           "more runs go after --compare)", arg);
    a->dir = arg;
    return PARSE_RUN;
}

static enum parse_result parse_args(int argc, char **argv, struct args *a)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return PARSE_EXIT_OK;
        }
        if (strcmp(argv[i], "--version") == 0) {
            puts(PROG " " VERSION);
            return PARSE_EXIT_OK;
        }
    }
    for (int i = 1; i < argc; i++) {
        const enum parse_result r = parse_one(argc, argv, &i, a);
        if (r != PARSE_RUN)
            return r;
    }
    if (a->dir == NULL)
        return usage_error("%s", "missing REPORT_DIR");
    if (a->formats == 0)
        a->formats = COORD_PLOT_SVG | COORD_PLOT_PNG;
    return PARSE_RUN;
}

/* ------------------------------------------------------------------ run */

struct report {
    struct args a;
    char out_dir[PATH_CAP];
    struct coord_plot_run **runs;  /* runs[0]: REPORT_DIR */
    size_t n_runs;
    struct coord_plot_sweep sweep;
    bool has_sweep;
    struct coord_plot_dev_stat *stats;
    size_t n_stats;
    struct coord_plot_opts opts;
    char scripts[N_CHARTS][64];
    size_t n_scripts;
    char gnuplot_err[ERR_CAP];   /* non-empty: gnuplot cannot be run */
};

static int fail(const char *msg)
{
    fprintf(stderr, PROG ": error: %s\n", msg);
    return 1;
}

/* The last k components of dir (trailing slashes ignored); caller frees
 * with fl_free(). */
static char *path_tail(const char *dir, int k)
{
    size_t end = strlen(dir), start;
    char *s;
    while (end > 1 && dir[end - 1] == '/')
        end--;
    start = end;
    while (start > 0 && (dir[start - 1] != '/' || --k > 0))
        start--;
    s = fl_malloc(end - start + 1);
    if (s != NULL) {
        memcpy(s, dir + start, end - start);
        s[end - start] = '\0';
    }
    return s;
}

static bool names_unique(struct coord_plot_run *const *runs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(runs[i]->name, runs[j]->name) == 0)
                return false;
    return true;
}

/* Legends must tell runs apart: when two share a base name, name every
 * run by as many trailing path components as it takes ("x/run"). */
static int make_names_unique(struct report *r)
{
    for (int k = 2; k <= 16 && !names_unique(r->runs, r->n_runs); k++) {
        for (size_t i = 0; i < r->n_runs; i++) {
            char *name = path_tail(r->runs[i]->dir, k);
            if (name == NULL)
                return fail("out of memory");
            fl_free(r->runs[i]->name);
            r->runs[i]->name = name;
        }
    }
    return 0;
}

static int load_runs(struct report *r)
{
    char err[ERR_CAP];
    r->runs = fl_calloc(1 + r->a.n_compare, sizeof(*r->runs));
    if (r->runs == NULL)
        return fail("out of memory");
    for (size_t i = 0; i <= r->a.n_compare; i++) {
        const char *dir = i == 0 ? r->a.dir : r->a.compare[i - 1];
        if (coord_plot_run_load(dir, &r->runs[i], err, sizeof(err)) != FL_OK)
            return fail(err);
        r->n_runs++;
    }
    return make_names_unique(r);
}

static int load_sweep(struct report *r)
{
    char err[ERR_CAP];
    const char *dir = r->a.sweep != NULL ? r->a.sweep : r->a.dir;
    const enum fl_err rc = coord_plot_sweep_load(dir, &r->sweep, err,
                                                 sizeof(err));
    if (rc == FL_ERR_NOT_FOUND && r->a.sweep == NULL)
        return 0; /* no sweep next to the report: that chart is skipped */
    if (rc != FL_OK)
        return fail(err);
    r->has_sweep = true;
    return 0;
}

static int prepare_out(struct report *r)
{
    int n;
    if (r->a.out != NULL)
        n = snprintf(r->out_dir, sizeof(r->out_dir), "%s", r->a.out);
    else
        n = snprintf(r->out_dir, sizeof(r->out_dir), "%s/plots", r->a.dir);
    if (n < 0 || (size_t)n >= sizeof(r->out_dir))
        return fail("output directory path is too long");
    if (fl_mkdir_p(r->out_dir, 0) != FL_OK) {
        char msg[PATH_CAP + 128];
        snprintf(msg, sizeof(msg), "cannot create output directory '%s': %s",
                 r->out_dir, strerror(errno));
        return fail(msg);
    }
    r->opts.out_dir = r->out_dir;
    r->opts.formats = r->a.formats;
    return 0;
}

/* Which PNG terminal; gnuplot missing is remembered (the data, scripts
 * and summary are still written) and reported at the end. */
static int probe_gnuplot(struct report *r)
{
    bool svg, pngcairo, png;
    const enum fl_err rc = coord_plot_gnuplot_probe(
        &svg, &pngcairo, &png, r->gnuplot_err, sizeof(r->gnuplot_err));
    r->opts.pngcairo = true;
    if (rc == FL_ERR_NOT_FOUND)
        return 0;
    if (rc != FL_OK)
        return fail(r->gnuplot_err);
    r->gnuplot_err[0] = '\0';
    if ((r->opts.formats & COORD_PLOT_SVG) && !svg)
        return fail("this gnuplot has no 'svg' terminal; use --format png");
    if ((r->opts.formats & COORD_PLOT_PNG) && !pngcairo && !png)
        return fail("this gnuplot has neither 'pngcairo' nor 'png'; "
                    "use --format svg");
    r->opts.pngcairo = pngcairo;
    return 0;
}

/* One chart's result: a script to run, a skip note, or a failure. */
static int chart_done(struct report *r, enum fl_err rc, const char *chart,
                      const char *script, const char *err)
{
    if (rc == FL_ERR_NOT_FOUND) {
        fprintf(stderr, PROG ": note: no %s chart: %s\n", chart, err);
        return 0;
    }
    if (rc != FL_OK)
        return fail(err);
    snprintf(r->scripts[r->n_scripts++], sizeof(r->scripts[0]), "%s",
             script);
    return 0;
}

static int write_charts(struct report *r)
{
    const struct coord_plot_run *const *runs =
        (const struct coord_plot_run *const *)r->runs;
    const struct coord_plot_run *run = r->runs[0];
    char err[ERR_CAP] = "", script[64] = "";
    enum fl_err rc;
    rc = coord_plot_chart_bytes(&r->opts, run, script, sizeof(script), err,
                                sizeof(err));
    if (chart_done(r, rc, "bytes", script, err) != 0)
        return 1;
    rc = coord_plot_chart_accuracy(&r->opts, runs, r->n_runs, script,
                                   sizeof(script), err, sizeof(err));
    if (chart_done(r, rc, "accuracy", script, err) != 0)
        return 1;
    if (r->has_sweep) {
        rc = coord_plot_chart_sweep(&r->opts, &r->sweep, script,
                                    sizeof(script), err, sizeof(err));
        if (chart_done(r, rc, "sweep", script, err) != 0)
            return 1;
    }
    rc = coord_plot_chart_devices(&r->opts, run, r->stats, r->n_stats,
                                  script, sizeof(script), err, sizeof(err));
    return chart_done(r, rc, "devices", script, err);
}

static int write_summary(struct report *r)
{
    const struct coord_plot_run *const *others =
        (const struct coord_plot_run *const *)r->runs + 1;
    struct coord_plot_totals tot;
    char path[PATH_CAP + 16];
    FILE *f;
    int bad;
    coord_plot_totals(r->runs[0], r->stats, r->n_stats, &tot);
    snprintf(path, sizeof(path), "%s/summary.txt", r->out_dir);
    f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, PROG ": error: cannot create '%s': %s\n", path,
                strerror(errno));
        return 1;
    }
    coord_plot_summary_write(f, r->runs[0], &tot, r->stats, others,
                             r->n_runs - 1);
    bad = ferror(f);
    bad |= fclose(f);
    if (bad) {
        fprintf(stderr, PROG ": error: cannot write '%s'\n", path);
        return 1;
    }
    coord_plot_summary_write(stdout, r->runs[0], &tot, r->stats, others,
                             r->n_runs - 1);
    return 0;
}

/* Run gnuplot on every script and check that each image appeared. */
static int render(struct report *r)
{
    static const struct { unsigned bit; const char *ext; } fmts[] = {
        {COORD_PLOT_SVG, "svg"}, {COORD_PLOT_PNG, "png"},
    };
    char err[ERR_CAP], path[PATH_CAP + 128];
    struct stat st;
    printf("\ncharts in %s:", r->out_dir);
    for (size_t i = 0; i < r->n_scripts; i++) {
        const char *s = r->scripts[i];
        const int stem = (int)(strlen(s) - 3); /* without ".gp" */
        if (coord_plot_gnuplot_run(r->out_dir, s, err, sizeof(err)) !=
            FL_OK) {
            printf("\n");
            return fail(err);
        }
        for (size_t k = 0; k < 2; k++) {
            if (!(r->opts.formats & fmts[k].bit))
                continue;
            snprintf(path, sizeof(path), "%s/%.*s.%s", r->out_dir, stem, s,
                     fmts[k].ext);
            if (stat(path, &st) != 0 || st.st_size == 0) {
                printf("\n");
                fprintf(stderr, PROG ": error: gnuplot wrote no '%s' (see "
                        "%s/gnuplot.log)\n", path, r->out_dir);
                return 1;
            }
            printf(" %.*s.%s", stem, s, fmts[k].ext);
        }
    }
    printf("\n");
    return 0;
}

static int run_report(struct report *r)
{
    if (load_runs(r) || load_sweep(r) || prepare_out(r) || probe_gnuplot(r))
        return 1;
    if (coord_plot_dev_stats(r->runs[0]->devs, r->runs[0]->n_devs,
                             &r->stats, &r->n_stats) != FL_OK)
        return fail("out of memory");
    if (write_charts(r) || write_summary(r))
        return 1;
    if (r->gnuplot_err[0] != '\0') {
        fprintf(stderr, PROG ": error: %s (data and scripts are in '%s')\n",
                r->gnuplot_err, r->out_dir);
        return 1;
    }
    return render(r);
}

int main(int argc, char **argv)
{
    struct report r;
    int status;
    memset(&r, 0, sizeof(r));
    r.a.compare = calloc((size_t)argc, sizeof(*r.a.compare));
    if (r.a.compare == NULL)
        return fail("out of memory");
    switch (parse_args(argc, argv, &r.a)) {
    case PARSE_EXIT_OK:
        free(r.a.compare);
        return 0;
    case PARSE_USAGE:
        free(r.a.compare);
        return 2;
    case PARSE_RUN:
        break;
    }
    fflush(stdout);
    status = run_report(&r);
    for (size_t i = 0; i < r.n_runs; i++)
        coord_plot_run_destroy(&r.runs[i]);
    fl_free(r.runs);
    fl_free(r.stats);
    if (r.has_sweep)
        coord_plot_sweep_release(&r.sweep);
    free(r.a.compare);
    fflush(stdout);
    return status;
}
