/*
 * coord_plot.c - report directory -> gnuplot data, scripts and summary.
 *
 * The CSV reader keeps one copy of the file and cuts it into cells in
 * place, so a table costs the file plus one pointer per cell. Everything
 * the charts need is derived from typed rows by small pure functions (the
 * unit tests check them against hand-computed values); the chart writers
 * only format those results. Gnuplot runs as a child process in the output
 * directory, so no path ever has to be quoted inside a script.
 */
#include "coordinator/coord_plot.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"

#define PATH_CAP 4096
#define SHOW_CAP 40              /* cell text shown in an error message */
#define GNUPLOT_PKG "gnuplot-nox"
#define MAX_EXACT 9007199254740992.0 /* 2^53 */
#define MAX_XTIC_LABELS 40       /* devices named under the bars */
#define JITTER_SLOTS 15

static const char *const palette[] = {
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22",
};

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static enum fl_err join_path(char *buf, size_t len, const char *dir,
                             const char *name)
{
    const int n = snprintf(buf, len, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= len ? FL_ERR_TOO_LARGE : FL_OK;
}

static char *dup_str(const char *s)
{
    const size_t n = strlen(s) + 1;
    char *d = fl_malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* ================================================================ tables */

struct coord_plot_table {
    char *name;
    char *buf;                   /* the text, cells cut in place */
    char **cells;                /* (rows + 1) * cols, header first */
    size_t *lines;               /* file line of each data row */
    size_t cols;
    size_t rows;
};

void coord_plot_table_destroy(struct coord_plot_table **tp)
{
    struct coord_plot_table *t;
    if (tp == NULL || *tp == NULL)
        return;
    t = *tp;
    fl_free(t->name);
    fl_free(t->buf);
    fl_free(t->cells);
    fl_free(t->lines);
    fl_free(t);
    *tp = NULL;
}

size_t coord_plot_table_rows(const struct coord_plot_table *t)
{
    return t->rows;
}

size_t coord_plot_table_cols(const struct coord_plot_table *t)
{
    return t->cols;
}

const char *coord_plot_table_name(const struct coord_plot_table *t)
{
    return t->name;
}

size_t coord_plot_table_line(const struct coord_plot_table *t, size_t row)
{
    assert(row < t->rows);
    return t->lines[row];
}

const char *coord_plot_table_cell(const struct coord_plot_table *t,
                                  size_t row, size_t col)
{
    assert(row < t->rows && col < t->cols);
    return t->cells[(row + 1) * t->cols + col];
}

/* Cut line (NUL-terminated, no newline) at commas into cells[0..]; returns
 * the number of cells found, writing at most cap of them. */
static size_t split_line(char *line, char **cells, size_t cap)
{
    size_t n = 0;
    char *p = line;
    for (;;) {
        char *comma = strchr(p, ',');
        if (n < cap)
            cells[n] = p;
        n++;
        if (comma == NULL)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    return n;
}

static enum fl_err check_header(const struct coord_plot_table *t, char *err,
                                size_t errlen)
{
    for (size_t i = 0; i < t->cols; i++) {
        if (t->cells[i][0] == '\0') {
            set_err(err, errlen, "'%s' line 1: column %zu has no name",
                    t->name, i + 1);
            return FL_ERR_FORMAT;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(t->cells[i], t->cells[j]) == 0) {
                set_err(err, errlen, "'%s' line 1: column '%s' appears twice",
                        t->name, t->cells[i]);
                return FL_ERR_FORMAT;
            }
        }
    }
    return FL_OK;
}

/* Next line of buf starting at *pos: NUL-terminated in place, '\r'
 * dropped. Returns NULL at the end. */
static char *next_line(char *buf, size_t len, size_t *pos)
{
    char *line, *nl;
    size_t n;
    if (*pos >= len)
        return NULL;
    line = buf + *pos;
    nl = memchr(line, '\n', len - *pos);
    n = nl != NULL ? (size_t)(nl - line) : len - *pos;
    line[n] = '\0';
    *pos += n + 1;
    if (n > 0 && line[n - 1] == '\r')
        line[n - 1] = '\0';
    return line;
}

static enum fl_err table_alloc(struct coord_plot_table *t, const char *text,
                               size_t len)
{
    size_t max_lines = 1, commas = 0;
    for (size_t i = 0; i < len && text[i] != '\n'; i++)
        commas += text[i] == ',';
    for (size_t i = 0; i < len; i++)
        max_lines += text[i] == '\n';
    t->cols = commas + 1;
    if (max_lines > SIZE_MAX / sizeof(char *) / t->cols)
        return FL_ERR_TOO_LARGE;
    t->buf = fl_malloc(len + 1);
    t->cells = fl_calloc(max_lines * t->cols, sizeof(char *));
    t->lines = fl_calloc(max_lines, sizeof(size_t));
    if (t->buf == NULL || t->cells == NULL || t->lines == NULL)
        return FL_ERR_NOMEM;
    memcpy(t->buf, text, len);
    t->buf[len] = '\0';
    return FL_OK;
}

static enum fl_err table_cut(struct coord_plot_table *t, size_t len,
                             char *err, size_t errlen)
{
    size_t pos = 0, lineno = 1, blank_at = 0;
    char *line = next_line(t->buf, len, &pos);
    if (line == NULL || line[0] == '\0') {
        set_err(err, errlen, "'%s' is empty (no header line)", t->name);
        return FL_ERR_FORMAT;
    }
    split_line(line, t->cells, t->cols);
    FL_FORWARD_ERR(check_header(t, err, errlen));
    for (line = next_line(t->buf, len, &pos); line != NULL;
         line = next_line(t->buf, len, &pos)) {
        lineno++;
        if (line[0] == '\0') {
            blank_at = blank_at != 0 ? blank_at : lineno;
            continue;
        }
        if (blank_at != 0) {
            set_err(err, errlen, "'%s' line %zu: blank line inside the data",
                    t->name, blank_at);
            return FL_ERR_FORMAT;
        }
        char **row = t->cells + (t->rows + 1) * t->cols;
        const size_t got = split_line(line, row, t->cols);
        if (got != t->cols) {
            set_err(err, errlen, "'%s' line %zu: expected %zu columns, got %zu",
                    t->name, lineno, t->cols, got);
            return FL_ERR_FORMAT;
        }
        t->lines[t->rows++] = lineno;
    }
    return FL_OK;
}

enum fl_err coord_plot_table_parse(const char *name, const char *text,
                                   size_t len, struct coord_plot_table **out,
                                   char *err, size_t errlen)
{
    enum fl_err rc = FL_OK;
    struct coord_plot_table *t;
    *out = NULL;
    t = fl_calloc(1, sizeof(*t));
    if (t == NULL)
        return FL_ERR_NOMEM;
    t->name = dup_str(name);
    if (t->name == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    if (len > 0 && memchr(text, '\0', len) != NULL) {
        set_err(err, errlen, "'%s' contains a NUL byte: not a CSV file",
                name);
        rc = FL_ERR_FORMAT;
        goto out;
    }
    rc = table_alloc(t, text, len);
    if (rc == FL_ERR_NOMEM)
        set_err(err, errlen, "out of memory reading '%s'", name);
    else if (rc != FL_OK)
        set_err(err, errlen, "'%s' is too large", name);
    if (rc != FL_OK)
        goto out;
    rc = table_cut(t, len, err, errlen);
out:
    if (rc != FL_OK)
        coord_plot_table_destroy(&t);
    *out = t;
    return rc;
}

enum fl_err coord_plot_table_read(const char *path,
                                  struct coord_plot_table **out, char *err,
                                  size_t errlen)
{
    void *data = NULL;
    size_t len = 0;
    enum fl_err rc;
    *out = NULL;
    rc = fl_file_read(path, COORD_PLOT_MAX_FILE, &data, &len);
    if (rc == FL_ERR_NOT_FOUND) {
        set_err(err, errlen, "'%s' does not exist", path);
        return rc;
    }
    if (rc == FL_ERR_TOO_LARGE) {
        set_err(err, errlen, "'%s' is larger than %zu bytes", path,
                COORD_PLOT_MAX_FILE);
        return rc;
    }
    if (rc != FL_OK) {
        set_err(err, errlen, "cannot read '%s': %s", path,
                errno != 0 ? strerror(errno) : fl_strerror(rc));
        return rc;
    }
    rc = coord_plot_table_parse(path, data, len, out, err, errlen);
    free(data);
    return rc;
}

enum fl_err coord_plot_table_col(const struct coord_plot_table *t,
                                 const char *col, size_t *idx, char *err,
                                 size_t errlen)
{
    for (size_t i = 0; i < t->cols; i++) {
        if (strcmp(t->cells[i], col) == 0) {
            *idx = i;
            return FL_OK;
        }
    }
    set_err(err, errlen, "'%s': no column '%s' in the header line", t->name,
            col);
    return FL_ERR_NOT_FOUND;
}

enum fl_err coord_plot_table_num(const struct coord_plot_table *t,
                                 size_t row, size_t col, bool required,
                                 double *out, char *err, size_t errlen)
{
    const char *s = coord_plot_table_cell(t, row, col);
    char *end = NULL;
    double v;
    if (s[0] == '\0' || strcasecmp(s, "nan") == 0) {
        if (!required) {
            *out = NAN;
            return FL_OK;
        }
        set_err(err, errlen, "'%s' line %zu, column '%s': value is %s",
                t->name, t->lines[row], t->cells[col],
                s[0] == '\0' ? "empty" : "nan");
        return FL_ERR_FORMAT;
    }
    errno = 0;
    v = strtod(s, &end);
    if (isspace((unsigned char)s[0]) || end == s || *end != '\0' ||
        errno == ERANGE || !isfinite(v)) {
        set_err(err, errlen,
                "'%s' line %zu, column '%s': '%.*s' is not a number",
                t->name, t->lines[row], t->cells[col], SHOW_CAP, s);
        return FL_ERR_FORMAT;
    }
    *out = v;
    return FL_OK;
}

/* ============================================================ typed rows */

enum col_kind {
    COL_COUNT,                   /* required, >= 0 */
    COL_INT,                     /* required integer >= 0, < 2^53 */
    COL_OPT                      /* may be empty (NAN) */
};

struct col_spec {
    const char *name;
    size_t off;                  /* offset of a double in the row struct */
    enum col_kind kind;
};

#define RCOL(n, field, kind) {n, offsetof(struct coord_plot_round, field), kind}
static const struct col_spec round_specs[] = {
    RCOL("selected", selected, COL_COUNT),
    RCOL("reported", reported, COL_COUNT),
    RCOL("dropped", dropped, COL_COUNT),
    RCOL("rejected", rejected, COL_COUNT),
    RCOL("late", late, COL_COUNT),
    RCOL("up_wire_bytes", up_wire, COL_COUNT),
    RCOL("up_dense_bytes", up_dense, COL_COUNT),
    RCOL("other_rx_bytes", other_rx, COL_COUNT),
    RCOL("down_wire_bytes", down_wire, COL_COUNT),
    RCOL("down_dense_bytes", down_dense, COL_COUNT),
    RCOL("wall_s", wall_s, COL_OPT),
    RCOL("cpu_s", cpu_s, COL_OPT),
    RCOL("agg_s", agg_s, COL_OPT),
    RCOL("test_acc", test_acc, COL_OPT),
    RCOL("test_loss", test_loss, COL_OPT),
};
#undef RCOL

#define DCOL(n, field, kind) {n, offsetof(struct coord_plot_dev, field), kind}
static const struct col_spec dev_specs[] = {
    DCOL("up_bytes", up_bytes, COL_COUNT),
    DCOL("down_bytes", down_bytes, COL_COUNT),
    DCOL("upload_ms", upload_ms, COL_OPT),
};
#undef DCOL

/* Read one cell by spec into *v, checking its kind. */
static enum fl_err read_cell(const struct coord_plot_table *t, size_t row,
                             size_t col, enum col_kind kind, double *v,
                             char *err, size_t errlen)
{
    FL_FORWARD_ERR(coord_plot_table_num(t, row, col, kind != COL_OPT, v, err,
                                        errlen));
    if (kind == COL_OPT && isnan(*v))
        return FL_OK;
    if (*v < 0 || (kind == COL_INT && (floor(*v) != *v || *v >= MAX_EXACT))) {
        set_err(err, errlen, "'%s' line %zu, column '%s': '%.*s' is not %s",
                t->name, t->lines[row], t->cells[col], SHOW_CAP,
                coord_plot_table_cell(t, row, col),
                kind == COL_INT ? "a non-negative integer"
                                : "a non-negative number");
        return FL_ERR_FORMAT;
    }
    return FL_OK;
}

/* Look up every spec's column; cols must have room for n entries. */
static enum fl_err find_cols(const struct coord_plot_table *t,
                             const struct col_spec *specs, size_t n,
                             size_t *cols, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        FL_FORWARD_ERR(coord_plot_table_col(t, specs[i].name, &cols[i], err,
                                            errlen));
    return FL_OK;
}

/* Fill the doubles of one row struct (at base) from the specs. */
static enum fl_err read_specs(const struct coord_plot_table *t, size_t row,
                              const struct col_spec *specs, const size_t *cols,
                              size_t n, void *base, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        double v;
        FL_FORWARD_ERR(read_cell(t, row, cols[i], specs[i].kind, &v, err,
                                 errlen));
        memcpy((char *)base + specs[i].off, &v, sizeof(v));
    }
    return FL_OK;
}

static enum fl_err read_u64(const struct coord_plot_table *t, size_t row,
                            size_t col, uint64_t *out, char *err,
                            size_t errlen)
{
    double v;
    FL_FORWARD_ERR(read_cell(t, row, col, COL_INT, &v, err, errlen));
    *out = (uint64_t)v;
    return FL_OK;
}

enum fl_err coord_plot_rounds_from_table(const struct coord_plot_table *t,
                                         struct coord_plot_round **rows,
                                         size_t *n, char *err, size_t errlen)
{
    enum { NS = FL_ARRAY_LEN(round_specs) };
    size_t cols[NS], c_round, c_attempt;
    struct coord_plot_round *r = NULL;
    enum fl_err rc;
    *rows = NULL;
    *n = 0;
    rc = coord_plot_table_col(t, "round", &c_round, err, errlen);
    if (rc == FL_OK)
        rc = coord_plot_table_col(t, "attempt", &c_attempt, err, errlen);
    if (rc == FL_OK)
        rc = find_cols(t, round_specs, NS, cols, err, errlen);
    if (rc != FL_OK)
        return rc;
    r = fl_calloc(t->rows > 0 ? t->rows : 1, sizeof(*r));
    if (r == NULL)
        return FL_ERR_NOMEM;
    for (size_t i = 0; i < t->rows && rc == FL_OK; i++) {
        rc = read_u64(t, i, c_round, &r[i].round, err, errlen);
        if (rc == FL_OK)
            rc = read_u64(t, i, c_attempt, &r[i].attempt, err, errlen);
        if (rc == FL_OK)
            rc = read_specs(t, i, round_specs, cols, NS, &r[i], err, errlen);
    }
    if (rc != FL_OK) {
        fl_free(r);
        return rc;
    }
    *rows = r;
    *n = t->rows;
    return FL_OK;
}

static enum fl_err read_status(const struct coord_plot_table *t, size_t row,
                               size_t col, enum coord_dev_status *out,
                               char *err, size_t errlen)
{
    static const enum coord_dev_status all[] = {
        COORD_DEV_REPORTED, COORD_DEV_DROPPED, COORD_DEV_REJECTED,
        COORD_DEV_LATE,
    };
    const char *s = coord_plot_table_cell(t, row, col);
    for (size_t i = 0; i < FL_ARRAY_LEN(all); i++) {
        if (strcmp(s, coord_dev_status_name(all[i])) == 0) {
            *out = all[i];
            return FL_OK;
        }
    }
    set_err(err, errlen, "'%s' line %zu, column '%s': unknown status '%.*s'",
            t->name, t->lines[row], t->cells[col], SHOW_CAP, s);
    return FL_ERR_FORMAT;
}

static enum fl_err read_dev_row(const struct coord_plot_table *t, size_t i,
                                const size_t *cols, struct coord_plot_dev *d,
                                char *err, size_t errlen)
{
    /* cols: round, device, status, then dev_specs */
    FL_FORWARD_ERR(read_u64(t, i, cols[0], &d->round, err, errlen));
    d->device = coord_plot_table_cell(t, i, cols[1]);
    if (d->device[0] == '\0') {
        set_err(err, errlen, "'%s' line %zu, column 'device': value is empty",
                t->name, t->lines[i]);
        return FL_ERR_FORMAT;
    }
    FL_FORWARD_ERR(read_status(t, i, cols[2], &d->status, err, errlen));
    return read_specs(t, i, dev_specs, cols + 3, FL_ARRAY_LEN(dev_specs), d,
                      err, errlen);
}

enum fl_err coord_plot_devs_from_table(const struct coord_plot_table *t,
                                       struct coord_plot_dev **rows,
                                       size_t *n, char *err, size_t errlen)
{
    size_t cols[3 + FL_ARRAY_LEN(dev_specs)];
    struct coord_plot_dev *d;
    enum fl_err rc = FL_OK;
    static const char *const fixed[] = {"round", "device", "status"};
    *rows = NULL;
    *n = 0;
    for (size_t i = 0; i < 3; i++)
        FL_FORWARD_ERR(coord_plot_table_col(t, fixed[i], &cols[i], err,
                                            errlen));
    FL_FORWARD_ERR(find_cols(t, dev_specs, FL_ARRAY_LEN(dev_specs), cols + 3,
                             err, errlen));
    d = fl_calloc(t->rows > 0 ? t->rows : 1, sizeof(*d));
    if (d == NULL)
        return FL_ERR_NOMEM;
    for (size_t i = 0; i < t->rows && rc == FL_OK; i++)
        rc = read_dev_row(t, i, cols, &d[i], err, errlen);
    if (rc != FL_OK) {
        fl_free(d);
        return rc;
    }
    *rows = d;
    *n = t->rows;
    return FL_OK;
}

void coord_plot_run_destroy(struct coord_plot_run **rp)
{
    struct coord_plot_run *r;
    if (rp == NULL || *rp == NULL)
        return;
    r = *rp;
    fl_free(r->dir);
    fl_free(r->name);
    fl_free(r->rounds);
    fl_free(r->devs);
    coord_plot_table_destroy(&r->rounds_table);
    coord_plot_table_destroy(&r->devs_table);
    fl_free(r);
    *rp = NULL;
}

/* The last path component of dir, trailing slashes ignored. */
static char *base_name(const char *dir)
{
    size_t end = strlen(dir), start;
    char *s;
    while (end > 1 && dir[end - 1] == '/')
        end--;
    start = end;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    if (start == end) /* "/" */
        return dup_str(dir);
    s = fl_malloc(end - start + 1);
    if (s != NULL) {
        memcpy(s, dir + start, end - start);
        s[end - start] = '\0';
    }
    return s;
}

static enum fl_err run_load_rounds(struct coord_plot_run *r, char *err,
                                   size_t errlen)
{
    char path[PATH_CAP];
    if (join_path(path, sizeof(path), r->dir, "rounds.csv") != FL_OK) {
        set_err(err, errlen, "report path '%s' is too long", r->dir);
        return FL_ERR_TOO_LARGE;
    }
    FL_FORWARD_ERR(coord_plot_table_read(path, &r->rounds_table, err, errlen));
    FL_FORWARD_ERR(coord_plot_rounds_from_table(r->rounds_table, &r->rounds,
                                                &r->n_rounds, err, errlen));
    if (r->n_rounds == 0) {
        set_err(err, errlen, "'%s' has a header but no round rows yet", path);
        return FL_ERR_FORMAT;
    }
    return FL_OK;
}

static enum fl_err run_load_devs(struct coord_plot_run *r, char *err,
                                 size_t errlen)
{
    char path[PATH_CAP];
    enum fl_err rc;
    if (join_path(path, sizeof(path), r->dir, "devices.csv") != FL_OK) {
        set_err(err, errlen, "report path '%s' is too long", r->dir);
        return FL_ERR_TOO_LARGE;
    }
    rc = coord_plot_table_read(path, &r->devs_table, err, errlen);
    if (rc == FL_ERR_NOT_FOUND) {
        set_err(err, errlen, "%s", "");
        return FL_OK; /* optional */
    }
    FL_FORWARD_ERR(rc);
    r->has_devs = true;
    return coord_plot_devs_from_table(r->devs_table, &r->devs, &r->n_devs,
                                      err, errlen);
}

/* dir/initial_acc (optional): one number, the accuracy before round 1. */
static enum fl_err run_load_initial(struct coord_plot_run *r, char *err,
                                    size_t errlen)
{
    char path[PATH_CAP];
    void *data = NULL;
    size_t len = 0;
    char *end = NULL;
    enum fl_err rc;
    r->initial_acc = NAN;
    if (join_path(path, sizeof(path), r->dir, "initial_acc") != FL_OK)
        return FL_ERR_TOO_LARGE;
    rc = fl_file_read(path, 64, &data, &len);
    if (rc == FL_ERR_NOT_FOUND)
        return FL_OK;
    if (rc == FL_OK) {
        char *text = data;
        text[len > 0 && text[len - 1] == '\n' ? len - 1 : len] = '\0';
        r->initial_acc = strtod(text, &end);
        if (end == text || *end != '\0' || !isfinite(r->initial_acc))
            rc = FL_ERR_FORMAT;
    }
    if (rc != FL_OK)
        set_err(err, errlen, "'%s' does not hold one number", path);
    free(data);
    return rc;
}

enum fl_err coord_plot_run_load(const char *dir, struct coord_plot_run **out,
                                char *err, size_t errlen)
{
    enum fl_err rc = FL_OK;
    struct coord_plot_run *r;
    *out = NULL;
    r = fl_calloc(1, sizeof(*r));
    if (r == NULL)
        return FL_ERR_NOMEM;
    r->dir = dup_str(dir);
    r->name = base_name(dir);
    if (r->name != NULL && r->name[0] == '.' &&
        (r->name[1] == '\0' || strcmp(r->name, "..") == 0)) {
        /* "." names nothing: use the directory's real name */
        char *real = realpath(dir, NULL);
        if (real != NULL) {
            fl_free(r->name);
            r->name = base_name(real);
            free(real);
        }
    }
    if (r->dir == NULL || r->name == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    rc = run_load_rounds(r, err, errlen);
    if (rc == FL_OK)
        rc = run_load_devs(r, err, errlen);
    if (rc == FL_OK)
        rc = run_load_initial(r, err, errlen);
out:
    if (rc == FL_ERR_NOMEM)
        set_err(err, errlen, "out of memory loading '%s'", dir);
    if (rc != FL_OK)
        coord_plot_run_destroy(&r);
    *out = r;
    return rc;
}

/* ========================================================== derived data */

static int cmp_round_bytes(const void *a, const void *b)
{
    const struct coord_plot_round_bytes *x = a, *y = b;
    return (x->round > y->round) - (x->round < y->round);
}

size_t coord_plot_bytes_per_round(const struct coord_plot_round *rows,
                                  size_t n,
                                  struct coord_plot_round_bytes *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = (struct coord_plot_round_bytes){
            .round = rows[i].round, .attempts = 1,
            .up_wire = rows[i].up_wire, .up_dense = rows[i].up_dense,
            .down_wire = rows[i].down_wire,
            .down_dense = rows[i].down_dense,
        };
    }
    if (n == 0)
        return 0;
    qsort(out, n, sizeof(*out), cmp_round_bytes);
    for (size_t i = 1; i < n; i++) {
        struct coord_plot_round_bytes *last = &out[m];
        if (out[i].round == last->round) {
            last->attempts += out[i].attempts;
            last->up_wire += out[i].up_wire;
            last->up_dense += out[i].up_dense;
            last->down_wire += out[i].down_wire;
            last->down_dense += out[i].down_dense;
        } else {
            out[++m] = out[i];
        }
    }
    return m + 1;
}

size_t coord_plot_acc_curve(const struct coord_plot_round *rows, size_t n,
                            struct coord_plot_acc_point *out)
{
    double wire = 0, dense = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        wire += rows[i].up_wire;
        dense += rows[i].up_dense;
        if (!isfinite(rows[i].test_acc))
            continue;
        out[m++] = (struct coord_plot_acc_point){
            .round = rows[i].round, .cum_up_wire = wire,
            .cum_up_dense = dense, .acc = rows[i].test_acc,
        };
    }
    return m;
}

int coord_plot_name_cmp(const char *a, const char *b)
{
    const unsigned char *p = (const unsigned char *)a;
    const unsigned char *q = (const unsigned char *)b;
    while (*p != '\0' && *q != '\0') {
        if (isdigit(*p) && isdigit(*q)) {
            size_t np = 0, nq = 0;
            while (*p == '0' && isdigit(p[1]))
                p++;
            while (*q == '0' && isdigit(q[1]))
                q++;
            while (isdigit(p[np]))
                np++;
            while (isdigit(q[nq]))
                nq++;
            if (np != nq)
                return np < nq ? -1 : 1;
            const int c = memcmp(p, q, np);
            if (c != 0)
                return c;
            p += np;
            q += nq;
            continue;
        }
        if (*p != *q)
            return *p < *q ? -1 : 1;
        p++;
        q++;
    }
    if (*p != '\0' || *q != '\0')
        return *p != '\0' ? 1 : -1;
    return strcmp(a, b); /* "w01" and "w1" stay apart */
}

static int cmp_dev_ptr(const void *a, const void *b)
{
    const struct coord_plot_dev *const *x = a;
    const struct coord_plot_dev *const *y = b;
    const int c = coord_plot_name_cmp((*x)->device, (*y)->device);
    if (c != 0)
        return c;
    return (*x < *y) ? -1 : (*x > *y); /* stable: file order */
}

static void stat_add(struct coord_plot_dev_stat *s,
                     const struct coord_plot_dev *d)
{
    s->rows++;
    if ((unsigned)d->status < FL_ARRAY_LEN(s->by_status))
        s->by_status[d->status]++;
    if (d->up_bytes > 0) {
        s->uploads++;
        s->up_bytes_total += d->up_bytes;
    }
    if (isfinite(d->upload_ms)) {
        if (s->timed == 0 || d->upload_ms < s->upload_ms_min)
            s->upload_ms_min = d->upload_ms;
        if (s->timed == 0 || d->upload_ms > s->upload_ms_max)
            s->upload_ms_max = d->upload_ms;
        s->timed++;
        s->upload_ms_mean += d->upload_ms; /* sum until stat_finish */
    }
}

static void stat_finish(struct coord_plot_dev_stat *s)
{
    s->up_bytes_mean = s->uploads > 0
                           ? s->up_bytes_total / (double)s->uploads : NAN;
    if (s->timed > 0) {
        s->upload_ms_mean /= (double)s->timed;
    } else {
        s->upload_ms_mean = NAN;
        s->upload_ms_min = NAN;
        s->upload_ms_max = NAN;
    }
}

enum fl_err coord_plot_dev_stats(const struct coord_plot_dev *rows, size_t n,
                                 struct coord_plot_dev_stat **out,
                                 size_t *n_out)
{
    const struct coord_plot_dev **order;
    struct coord_plot_dev_stat *st;
    size_t m = 0;
    *out = NULL;
    *n_out = 0;
    order = fl_malloc((n > 0 ? n : 1) * sizeof(*order));
    st = fl_calloc(n > 0 ? n : 1, sizeof(*st));
    if (order == NULL || st == NULL) {
        fl_free(order);
        fl_free(st);
        return FL_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = &rows[i];
    qsort(order, n, sizeof(*order), cmp_dev_ptr);
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(order[i]->device, st[m - 1].device) != 0)
            st[m++].device = order[i]->device;
        stat_add(&st[m - 1], order[i]);
    }
    for (size_t i = 0; i < m; i++)
        stat_finish(&st[i]);
    fl_free(order);
    *out = st;
    *n_out = m;
    return FL_OK;
}

static void totals_rounds(const struct coord_plot_run *run,
                          struct coord_plot_totals *t)
{
    double wall = 0;
    size_t n_wall = 0;
    for (size_t i = 0; i < run->n_rounds; i++) {
        const struct coord_plot_round *r = &run->rounds[i];
        t->attempts++;
        t->up_wire += r->up_wire;
        t->up_dense += r->up_dense;
        t->other_rx += r->other_rx;
        t->down_wire += r->down_wire;
        t->down_dense += r->down_dense;
        if (isfinite(r->wall_s)) {
            wall += r->wall_s;
            n_wall++;
        }
        if (isfinite(r->test_acc)) {
            t->committed++;
            t->last_round = r->round;
            t->final_acc = r->test_acc;
            t->final_loss = r->test_loss;
        }
    }
    t->up_ratio = t->up_wire > 0 ? t->up_dense / t->up_wire : NAN;
    t->mean_wall_s = n_wall > 0 ? wall / (double)n_wall : NAN;
}

void coord_plot_totals(const struct coord_plot_run *run,
                       const struct coord_plot_dev_stat *stats,
                       size_t n_stats, struct coord_plot_totals *out)
{
    *out = (struct coord_plot_totals){
        .final_acc = NAN, .final_loss = NAN, .fastest = -1, .slowest = -1,
    };
    totals_rounds(run, out);
    out->devices = n_stats;
    for (size_t i = 0; i < n_stats; i++) {
        const struct coord_plot_dev_stat *s = &stats[i];
        for (size_t k = 0; k < FL_ARRAY_LEN(out->dev_rows); k++)
            out->dev_rows[k] += s->by_status[k];
        if (s->timed == 0)
            continue;
        if (out->fastest < 0 ||
            s->upload_ms_mean < stats[out->fastest].upload_ms_mean)
            out->fastest = (long)i;
        if (out->slowest < 0 ||
            s->upload_ms_mean > stats[out->slowest].upload_ms_mean)
            out->slowest = (long)i;
    }
}

/* ================================================================ summary */

static void sum_bytes(FILE *f, const char *what, double bytes)
{
    char h[32];
    coord_format_bytes((uint64_t)bytes, h, sizeof(h));
    fprintf(f, "  %-20s %12s  (%.0f bytes)\n", what, h, bytes);
}

static void sum_device(FILE *f, const char *what,
                       const struct coord_plot_dev_stat *s)
{
    fprintf(f, "  %-20s %12s  mean %.1f ms (min %.1f, max %.1f) over %zu"
            " uploads\n", what, s->device, s->upload_ms_mean,
            s->upload_ms_min, s->upload_ms_max, s->timed);
}

static void sum_compare_row(FILE *f, const struct coord_plot_run *run)
{
    struct coord_plot_totals t;
    char h[32];
    coord_plot_totals(run, NULL, 0, &t);
    coord_format_bytes((uint64_t)t.up_wire, h, sizeof(h));
    fprintf(f, "  %-24s %8zu %10.4f %12s %7.1fx %10.3f\n", run->name,
            t.committed, t.final_acc, h, t.up_ratio, t.mean_wall_s);
}

static void sum_compare(FILE *f, const struct coord_plot_run *run,
                        const struct coord_plot_run *const *others, size_t n)
{
    fprintf(f, "\ncompared runs:\n  %-24s %8s %10s %12s %8s %10s\n", "run",
            "rounds", "final acc", "uplink wire", "ratio", "round s");
    sum_compare_row(f, run);
    for (size_t i = 0; i < n; i++)
        sum_compare_row(f, others[i]);
}

void coord_plot_summary_write(FILE *f, const struct coord_plot_run *run,
                              const struct coord_plot_totals *t,
                              const struct coord_plot_dev_stat *stats,
                              const struct coord_plot_run *const *others,
                              size_t n_others)
{
    fprintf(f, "fedcomp-report: %s\n", run->dir);
    fprintf(f, "  %-20s %12zu  committed (%zu attempts, %zu abandoned)\n",
            "rounds", t->committed, t->attempts, t->attempts - t->committed);
    if (isfinite(run->initial_acc))
        fprintf(f, "  %-20s %12.4f  (before round 1)\n", "initial accuracy",
                run->initial_acc);
    if (isfinite(t->final_acc))
        fprintf(f, "  %-20s %12.4f  (loss %.4f, round %llu)\n",
                "final accuracy", t->final_acc, t->final_loss,
                (unsigned long long)t->last_round);
    else
        fprintf(f, "  %-20s %12s\n", "final accuracy", "-");
    sum_bytes(f, "uplink wire", t->up_wire);
    sum_bytes(f, "uplink dense", t->up_dense);
    if (isfinite(t->up_ratio))
        fprintf(f, "  %-20s %11.1fx  dense / wire\n", "uplink ratio",
                t->up_ratio);
    else
        fprintf(f, "  %-20s %12s\n", "uplink ratio", "-");
    sum_bytes(f, "downlink wire", t->down_wire);
    sum_bytes(f, "downlink dense", t->down_dense);
    if (t->down_wire > 0)
        fprintf(f, "  %-20s %11.1fx  dense / wire\n", "downlink ratio",
                t->down_dense / t->down_wire);
    sum_bytes(f, "other received", t->other_rx);
    fprintf(f, "  %-20s %10.3f s  (mean over %zu attempts)\n",
            "round time", t->mean_wall_s, t->attempts);
    if (!run->has_devs) {
        fprintf(f, "  %-20s %12s  (no devices.csv)\n", "devices", "-");
    } else {
        fprintf(f, "  %-20s %12zu  seen; device-rounds: %zu reported, "
                "%zu dropped, %zu rejected, %zu late\n", "devices",
                t->devices, t->dev_rows[COORD_DEV_REPORTED],
                t->dev_rows[COORD_DEV_DROPPED],
                t->dev_rows[COORD_DEV_REJECTED], t->dev_rows[COORD_DEV_LATE]);
    }
    if (t->fastest >= 0) {
        sum_device(f, "fastest upload", &stats[t->fastest]);
        sum_device(f, "slowest upload", &stats[t->slowest]);
    }
    if (n_others > 0)
        sum_compare(f, run, others, n_others);
}

/* ============================================================ chart files */

struct out_file {
    FILE *f;
    char path[PATH_CAP];
};

static enum fl_err out_open(const struct coord_plot_opts *o, const char *name,
                            struct out_file *of, char *err, size_t errlen)
{
    of->f = NULL;
    if (join_path(of->path, sizeof(of->path), o->out_dir, name) != FL_OK) {
        set_err(err, errlen, "output path '%s/%s' is too long", o->out_dir,
                name);
        return FL_ERR_TOO_LARGE;
    }
    of->f = fopen(of->path, "w");
    if (of->f == NULL) {
        set_err(err, errlen, "cannot create '%s': %s", of->path,
                strerror(errno));
        return FL_ERR_IO;
    }
    return FL_OK;
}

static enum fl_err out_close(struct out_file *of, char *err, size_t errlen)
{
    int bad;
    if (of->f == NULL)
        return FL_OK;
    bad = ferror(of->f);
    bad |= fclose(of->f);
    of->f = NULL;
    if (bad) {
        set_err(err, errlen, "cannot write '%s': %s", of->path,
                strerror(errno));
        return FL_ERR_IO;
    }
    return FL_OK;
}

/* A number for a .dat file: "?" (gnuplot's missing value) when not
 * finite, integers exactly, others with full precision. */
static void dat_num(FILE *f, double v)
{
    if (!isfinite(v))
        fputs(" ?", f);
    else if (floor(v) == v && fabs(v) < MAX_EXACT)
        fprintf(f, " %.0f", v);
    else
        fprintf(f, " %.10g", v);
}

/* A quoted data-file string: double quotes, with '"', '\\' and control
 * characters replaced by '_' (gnuplot has no escapes inside them). */
static void dat_str(FILE *f, const char *s)
{
    fputs(" \"", f);
    for (; *s != '\0'; s++) {
        const unsigned char c = (unsigned char)*s;
        fputc(c < 0x20 || c == '"' || c == '\\' || c == 0x7f ? '_' : c, f);
    }
    fputc('"', f);
}

/* A single-quoted gnuplot string: no escapes are processed inside, a
 * quote is written twice, control characters become '?'. */
static void gp_str(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s != '\0'; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '\'')
            fputs("''", f);
        else
            fputc(c < 0x20 || c == 0x7f ? '?' : c, f);
    }
    fputc('\'', f);
}

/* prefix + s as one gnuplot string (prefix may be NULL). */
static void gp_title_str(FILE *f, const char *prefix, const char *s)
{
    char both[PATH_CAP];
    snprintf(both, sizeof(both), "%s%s", prefix != NULL ? prefix : "", s);
    gp_str(f, both);
}

static void gp_title(FILE *f, const char *cmd, const char *prefix,
                     const char *s)
{
    fprintf(f, "set %s ", cmd);
    gp_title_str(f, prefix, s);
    fputc('\n', f);
}

/* Settings every panel starts from (multiplot keeps settings). */
static void gp_panel_reset(FILE *b)
{
    fputs("unset logscale\nunset label\nunset title\n"
          "set autoscale\nset xtics autofreq\nset ytics autofreq\n"
          "set format x '%g'\nset format y '%g'\n"
          "set grid xtics ytics lc rgb '#dddddd'\n"
          "set key top left opaque box lc rgb '#bbbbbb'\n"
          "set style fill solid 0.6 border -1\n", b);
}

static void gp_empty_panel(FILE *b, const char *title)
{
    gp_panel_reset(b);
    gp_title(b, "title", NULL, title);
    fputs("set xrange [0:1]\nset yrange [0:1]\nunset xtics\nunset ytics\n"
          "set label 1 'no data' at graph 0.5,0.5 center\n"
          "plot 2 notitle\nunset label 1\n", b);
}

/* A log2 byte axis from lo to hi (> 0) with readable tics. */
static void gp_log_bytes(FILE *b, char axis, double lo, double hi)
{
    int elo = (int)floor(log2(lo / 1.15)), ehi = (int)ceil(log2(hi * 1.15));
    int step;
    if (ehi <= elo)
        ehi = elo + 1;
    step = (ehi - elo + 7) / 8;
    elo -= ((elo % step) + step) % step;
    fprintf(b, "set logscale %c 2\nset format %c '%%.0b %%BB'\n", axis, axis);
    fprintf(b, "set %crange [%.17g:%.17g]\nset %ctics %.17g, %.17g\n", axis,
            ldexp(1, elo), ldexp(1, ehi), axis, ldexp(1, elo),
            ldexp(1, step));
}

/* Rounds on x from lo to hi: integer tics. */
static void gp_round_axis(FILE *b, uint64_t lo, uint64_t hi)
{
    fprintf(b, "set xrange [%.1f:%.1f]\nset xlabel 'round'\n",
            (double)lo - 0.5, (double)hi + 0.5);
    if (hi - lo <= 30)
        fputs("set xtics 1\n", b);
    fputs("set format x '%.0f'\n", b);
}

/* The unit for a linear byte axis whose largest value is max. */
static double byte_unit(double max, const char **name)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double div = 1;
    size_t u = 0;
    while (max >= 1024 * div && u + 1 < FL_ARRAY_LEN(names)) {
        div *= 1024;
        u++;
    }
    *name = names[u];
    return div;
}

struct range {
    double lo;                   /* smallest value > 0 */
    double hi;
    size_t n;                    /* values > 0 */
};

/* Any finite value (range_add below: only values > 0, for log axes). */
static void span_add(struct range *r, double v)
{
    if (!isfinite(v))
        return;
    if (r->n == 0 || v < r->lo)
        r->lo = v;
    if (r->n == 0 || v > r->hi)
        r->hi = v;
    r->n++;
}

static void range_add(struct range *r, double v)
{
    if (!(v > 0) || !isfinite(v))
        return;
    if (r->n == 0 || v < r->lo)
        r->lo = v;
    if (r->n == 0 || v > r->hi)
        r->hi = v;
    r->n++;
}

/* Write the script NAME.gp: for each format the terminal, the output file
 * and the body. */
static enum fl_err write_script(const struct coord_plot_opts *o,
                                const char *name, int w, int h,
                                const char *body, char *script,
                                size_t script_len, char *err, size_t errlen)
{
    struct out_file of;
    char file[256];
    snprintf(file, sizeof(file), "%s.gp", name);
    FL_FORWARD_ERR(out_open(o, file, &of, err, errlen));
    fprintf(of.f, "# %s - written by fedcomp-report; run in this directory:"
            " gnuplot %s\n", file, file);
    if (o->formats & COORD_PLOT_SVG) {
        fprintf(of.f, "set terminal svg size %d,%d noenhanced font 'sans,12'"
                " background rgb 'white'\nset output '%s.svg'\n%s"
                "unset multiplot\nunset output\n", w, h, name, body);
    }
    if (o->formats & COORD_PLOT_PNG) {
        if (o->pngcairo)
            fprintf(of.f, "set terminal pngcairo size %d,%d noenhanced"
                    " font 'sans,10' background rgb 'white'\n", w, h);
        else
            fprintf(of.f, "set terminal png size %d,%d noenhanced\n", w, h);
        fprintf(of.f, "set output '%s.png'\n%sunset multiplot\n"
                "unset output\n", name, body);
    }
    FL_FORWARD_ERR(out_close(&of, err, errlen));
    if (script != NULL)
        snprintf(script, script_len, "%s", file);
    return FL_OK;
}

/* Finish a body memstream and write the script from it. */
static enum fl_err finish_body(const struct coord_plot_opts *o,
                               const char *name, int w, int h, FILE *b,
                               char **text, char *script, size_t script_len,
                               char *err, size_t errlen)
{
    enum fl_err rc;
    if (fclose(b) != 0 || *text == NULL) {
        set_err(err, errlen, "out of memory writing '%s.gp'", name);
        return FL_ERR_NOMEM;
    }
    rc = write_script(o, name, w, h, *text, script, script_len, err, errlen);
    free(*text);
    *text = NULL;
    return rc;
}

static FILE *body_open(char **text, size_t *len, char *err, size_t errlen)
{
    FILE *b;
    *text = NULL;
    b = open_memstream(text, len);
    if (b == NULL)
        set_err(err, errlen, "%s", "out of memory");
    return b;
}

/* ---------------------------------------------------- chart 1: bytes */

/* The dense lines of up and down often coincide (same model size): one
 * wide dashed, one dotted on top, so both stay visible. */
static const char *const bytes_style[] = {
    "lw 2 pt 7 ps 0.8", "dt 2 lw 3", "lw 2 pt 5 ps 0.8", "dt 3 lw 2",
};

static const char *const bytes_series[] = {
    "uplink, wire", "uplink, dense float32 equivalent",
    "downlink, wire", "downlink, dense float32 equivalent",
};

static enum fl_err bytes_dat(const struct coord_plot_opts *o,
                             const struct coord_plot_round_bytes *rb,
                             size_t m, char *err, size_t errlen)
{
    struct out_file of;
    FL_FORWARD_ERR(out_open(o, "bytes.dat", &of, err, errlen));
    fputs("# round up_wire_bytes up_dense_bytes down_wire_bytes"
          " down_dense_bytes attempts\n", of.f);
    for (size_t i = 0; i < m; i++) {
        fprintf(of.f, "%llu", (unsigned long long)rb[i].round);
        dat_num(of.f, rb[i].up_wire);
        dat_num(of.f, rb[i].up_dense);
        dat_num(of.f, rb[i].down_wire);
        dat_num(of.f, rb[i].down_dense);
        fprintf(of.f, " %llu\n", (unsigned long long)rb[i].attempts);
    }
    return out_close(&of, err, errlen);
}

static void bytes_body(FILE *b, const struct coord_plot_run *run,
                       const struct coord_plot_round_bytes *rb, size_t m,
                       const struct range *per, const struct range *all)
{
    bool first = true;
    fputs("reset\nset datafile missing '?'\n", b);
    gp_panel_reset(b);
    fputs("set key outside right top vertical\n", b);
    gp_title(b, "title", "Bytes per round (all attempts): ", run->name);
    fputs("set ylabel 'bytes per round (log scale)'\n", b);
    gp_round_axis(b, rb[0].round, rb[m - 1].round);
    gp_log_bytes(b, 'y', all->lo, all->hi);
    fputs("plot ", b);
    for (int s = 0; s < 4; s++) {
        if (per[s].n == 0)
            continue;
        fprintf(b, "%s'bytes.dat' using 1:($%d>0?$%d:1/0) with %s "
                "lc rgb '%s' %s title '%s'", first ? "" : ", \\\n     ",
                s + 2, s + 2, s % 2 == 0 ? "linespoints" : "lines",
                palette[s / 2], bytes_style[s], bytes_series[s]);
        first = false;
    }
    fputc('\n', b);
}

enum fl_err coord_plot_chart_bytes(const struct coord_plot_opts *opts,
                                   const struct coord_plot_run *run,
                                   char *script, size_t script_len,
                                   char *err, size_t errlen)
{
    struct coord_plot_round_bytes *rb;
    struct range per[4] = {{0, 0, 0}}, all = {0, 0, 0};
    enum fl_err rc = FL_OK;
    char *text = NULL;
    size_t m, len = 0;
    FILE *b = NULL;
    rb = fl_calloc(run->n_rounds > 0 ? run->n_rounds : 1, sizeof(*rb));
    if (rb == NULL)
        return FL_ERR_NOMEM;
    m = coord_plot_bytes_per_round(run->rounds, run->n_rounds, rb);
    for (size_t i = 0; i < m; i++) {
        const double v[4] = {rb[i].up_wire, rb[i].up_dense, rb[i].down_wire,
                             rb[i].down_dense};
        for (int s = 0; s < 4; s++) {
            range_add(&per[s], v[s]);
            range_add(&all, v[s]);
        }
    }
    if (all.n == 0) {
        set_err(err, errlen, "'%s': no bytes were counted in any round",
                run->dir);
        rc = FL_ERR_NOT_FOUND;
        goto out;
    }
    rc = bytes_dat(opts, rb, m, err, errlen);
    if (rc != FL_OK)
        goto out;
    b = body_open(&text, &len, err, errlen);
    if (b == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    bytes_body(b, run, rb, m, per, &all);
    rc = finish_body(opts, "bytes", 1000, 600, b, &text, script, script_len,
                     err, errlen);
out:
    fl_free(rb);
    return rc;
}

/* ------------------------------------------------- chart 2: accuracy */

static enum fl_err acc_dat(const struct coord_plot_opts *o, size_t idx,
                           const struct coord_plot_run *run,
                           const struct coord_plot_acc_point *p, size_t m,
                           char *err, size_t errlen)
{
    struct out_file of;
    char name[64];
    snprintf(name, sizeof(name), "accuracy-%zu.dat", idx + 1);
    FL_FORWARD_ERR(out_open(o, name, &of, err, errlen));
    fputs("# run:", of.f);
    dat_str(of.f, run->dir);
    fputs("\n# round cum_up_wire_bytes cum_up_dense_bytes test_acc\n", of.f);
    for (size_t i = 0; i < m; i++) {
        fprintf(of.f, "%llu", (unsigned long long)p[i].round);
        dat_num(of.f, p[i].cum_up_wire);
        dat_num(of.f, p[i].cum_up_dense);
        dat_num(of.f, p[i].acc);
        fputc('\n', of.f);
    }
    return out_close(&of, err, errlen);
}

/* Write accuracy-<i>.dat for every run; plotted[i] says whether run i has
 * a point to draw (accuracy after some uplink bytes). */
static enum fl_err acc_dats(const struct coord_plot_opts *o,
                            const struct coord_plot_run *const *runs,
                            size_t n_runs, bool *plotted, struct range *x,
                            struct range *y, char *err, size_t errlen)
{
    enum fl_err rc = FL_OK;
    for (size_t r = 0; r < n_runs && rc == FL_OK; r++) {
        const size_t n = runs[r]->n_rounds;
        struct coord_plot_acc_point *p = fl_calloc(n > 0 ? n : 1,
                                                   sizeof(*p));
        size_t m;
        if (p == NULL)
            return FL_ERR_NOMEM;
        m = coord_plot_acc_curve(runs[r]->rounds, n, p);
        plotted[r] = false;
        for (size_t i = 0; i < m; i++) {
            plotted[r] |= p[i].cum_up_wire > 0;
            range_add(x, p[i].cum_up_wire);
            if (p[i].cum_up_wire > 0)
                span_add(y, p[i].acc * 100);
            if (n_runs == 1)
                range_add(x, p[i].cum_up_dense);
        }
        rc = acc_dat(o, r, runs[r], p, m, err, errlen);
        fl_free(p);
    }
    return rc;
}

static void acc_body(FILE *b, const struct coord_plot_run *const *runs,
                     size_t n_runs, const bool *plotted,
                     const struct range *x, const struct range *y)
{
    bool first = true;
    fputs("reset\nset datafile missing '?'\n", b);
    gp_panel_reset(b);
    /* accuracy rises to the right: the top left corner is free */
    fputs("set key top left\n", b);
    fputs("set title 'Test accuracy against cumulative uplink bytes'\n", b);
    fputs("set xlabel 'uplink bytes so far, all devices (log scale)'\n"
          "set ylabel 'test accuracy (%)'\n", b);
    gp_log_bytes(b, 'x', x->lo, x->hi);
    /* room above the highest point for the key */
    fprintf(b, "set yrange [%.0f:%.0f]\n", floor(y->lo / 5 - 0.2) * 5,
            ceil((y->hi + 0.15 * (y->hi - y->lo) + 1) / 5 + 1) * 5);
    fputs("plot ", b);
    for (size_t r = 0; r < n_runs; r++) {
        const char *color = palette[r % FL_ARRAY_LEN(palette)];
        if (!plotted[r])
            continue;
        fprintf(b, "%s'accuracy-%zu.dat' using ($2>0?$2:1/0):($4*100) with "
                "linespoints lw 2 pt 7 ps 0.8 lc rgb '%s' title ",
                first ? "" : ", \\\n     ", r + 1, color);
        gp_str(b, runs[r]->name);
        if (n_runs == 1)
            fprintf(b, ", \\\n     'accuracy-1.dat' using ($3>0?$3:1/0):"
                    "($4*100) with lines dt 2 lw 2 lc rgb '%s' title "
                    "'same rounds with dense float32 uploads'", color);
        first = false;
    }
    fputc('\n', b);
}

enum fl_err coord_plot_chart_accuracy(const struct coord_plot_opts *opts,
                                      const struct coord_plot_run *const *runs,
                                      size_t n_runs, char *script,
                                      size_t script_len, char *err,
                                      size_t errlen)
{
    bool *plotted = fl_calloc(n_runs > 0 ? n_runs : 1, sizeof(bool));
    struct range x = {0, 0, 0}, y = {0, 0, 0};
    enum fl_err rc;
    char *text = NULL;
    size_t len = 0;
    FILE *b;
    if (plotted == NULL)
        return FL_ERR_NOMEM;
    rc = acc_dats(opts, runs, n_runs, plotted, &x, &y, err, errlen);
    if (rc == FL_OK && x.n == 0) {
        set_err(err, errlen, "%s", "no run has an evaluated round after "
                "uplink bytes");
        rc = FL_ERR_NOT_FOUND;
    }
    if (rc != FL_OK)
        goto out;
    b = body_open(&text, &len, err, errlen);
    if (b == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    acc_body(b, runs, n_runs, plotted, &x, &y);
    rc = finish_body(opts, "accuracy", 1000, 600, b, &text, script,
                     script_len, err, errlen);
out:
    fl_free(plotted);
    return rc;
}

/* ---------------------------------------------------- chart 3: sweep */

static const char *const sweep_metrics[] = {
    "up_bytes_per_round", "up_bytes_per_device", "down_bytes_per_round",
    "down_bytes_per_device", "coord_cpu_s_per_round", "agg_s_per_round",
    "round_wall_s",
};
enum { SWEEP_NM = FL_ARRAY_LEN(sweep_metrics) };

struct sweep_panel {
    const char *title;
    bool bytes;
    int metrics[2];              /* indexes into sweep_metrics, -1 none */
    const char *labels[2];
};

static const struct sweep_panel sweep_panels[] = {
    {"Uplink bytes against devices", true, {0, 1},
     {"per round", "per device per round"}},
    {"Downlink bytes against devices", true, {2, 3},
     {"per round", "per device per round"}},
    {"Coordinator CPU per round", false, {4, 5},
     {"coordinator CPU", "of which decode + aggregate"}},
    {"Round wall time", false, {6, -1}, {"round wall time", NULL}},
};

void coord_plot_sweep_release(struct coord_plot_sweep *sw)
{
    coord_plot_table_destroy(&sw->data);
    coord_plot_table_destroy(&sw->fit);
}

static enum fl_err sweep_check(const struct coord_plot_table *t, char *err,
                               size_t errlen)
{
    size_t c;
    double v;
    FL_FORWARD_ERR(coord_plot_table_col(t, "devices", &c, err, errlen));
    for (size_t i = 0; i < t->rows; i++)
        FL_FORWARD_ERR(read_cell(t, i, c, COL_COUNT, &v, err, errlen));
    for (size_t m = 0; m < SWEEP_NM; m++) {
        FL_FORWARD_ERR(coord_plot_table_col(t, sweep_metrics[m], &c, err,
                                            errlen));
        for (size_t i = 0; i < t->rows; i++)
            FL_FORWARD_ERR(read_cell(t, i, c, COL_OPT, &v, err, errlen));
    }
    if (t->rows == 0) {
        set_err(err, errlen, "'%s' has a header but no rows", t->name);
        return FL_ERR_FORMAT;
    }
    return FL_OK;
}

static enum fl_err fit_check(const struct coord_plot_table *t, char *err,
                             size_t errlen)
{
    static const char *const need[] = {"metric", "a", "b"};
    size_t c;
    double v;
    for (size_t k = 0; k < FL_ARRAY_LEN(need); k++) {
        FL_FORWARD_ERR(coord_plot_table_col(t, need[k], &c, err, errlen));
        for (size_t i = 0; k > 0 && i < t->rows; i++)
            FL_FORWARD_ERR(coord_plot_table_num(t, i, c, false, &v, err,
                                                errlen));
    }
    return FL_OK;
}

enum fl_err coord_plot_sweep_load(const char *dir, struct coord_plot_sweep *sw,
                                  char *err, size_t errlen)
{
    char path[PATH_CAP];
    enum fl_err rc;
    sw->data = NULL;
    sw->fit = NULL;
    /* the longer of the two names decides whether both paths fit */
    if (join_path(path, sizeof(path), dir, "sweep-fit.csv") != FL_OK) {
        set_err(err, errlen, "sweep path '%s' is too long", dir);
        return FL_ERR_TOO_LARGE;
    }
    snprintf(path, sizeof(path), "%s/sweep.csv", dir);
    rc = coord_plot_table_read(path, &sw->data, err, errlen);
    if (rc == FL_OK)
        rc = sweep_check(sw->data, err, errlen);
    if (rc == FL_OK) {
        snprintf(path, sizeof(path), "%s/sweep-fit.csv", dir);
        rc = coord_plot_table_read(path, &sw->fit, err, errlen);
        if (rc == FL_ERR_NOT_FOUND)
            rc = FL_OK; /* optional */
        else if (rc == FL_OK)
            rc = fit_check(sw->fit, err, errlen);
    }
    if (rc != FL_OK)
        coord_plot_sweep_release(sw);
    return rc;
}

static enum fl_err sweep_dat(const struct coord_plot_opts *o,
                             const struct coord_plot_table *t,
                             struct range *ranges, struct range *x,
                             char *err, size_t errlen)
{
    struct out_file of;
    size_t cols[SWEEP_NM + 1];
    double v;
    (void)coord_plot_table_col(t, "devices", &cols[0], NULL, 0);
    for (size_t m = 0; m < SWEEP_NM; m++)
        (void)coord_plot_table_col(t, sweep_metrics[m], &cols[m + 1], NULL, 0);
    FL_FORWARD_ERR(out_open(o, "sweep.dat", &of, err, errlen));
    fputs("# devices", of.f);
    for (size_t m = 0; m < SWEEP_NM; m++)
        fprintf(of.f, " %s", sweep_metrics[m]);
    fputc('\n', of.f);
    for (size_t i = 0; i < t->rows; i++) {
        for (size_t m = 0; m <= SWEEP_NM; m++) {
            /* checked by coord_plot_sweep_load */
            (void)coord_plot_table_num(t, i, cols[m], m == 0, &v, NULL, 0);
            if (m == 0) {
                range_add(x, v);
                fprintf(of.f, "%.10g", v);
                continue;
            }
            range_add(&ranges[m - 1], v);
            dat_num(of.f, v);
        }
        fputc('\n', of.f);
    }
    return out_close(&of, err, errlen);
}

/* The fitted line of metric m from sweep-fit.csv, appended to the plot
 * command; nothing when there is no fit for it. */
static void sweep_fit_line(FILE *b, const struct coord_plot_table *fit,
                           size_t m, const char *color)
{
    size_t cm, ca, cb, cr, cp;
    double a, bb, r2 = NAN, p = NAN;
    char title[160];
    if (fit == NULL ||
        coord_plot_table_col(fit, "metric", &cm, NULL, 0) != FL_OK ||
        coord_plot_table_col(fit, "a", &ca, NULL, 0) != FL_OK ||
        coord_plot_table_col(fit, "b", &cb, NULL, 0) != FL_OK)
        return;
    for (size_t i = 0; i < fit->rows; i++) {
        if (strcmp(coord_plot_table_cell(fit, i, cm), sweep_metrics[m]) != 0)
            continue;
        if (coord_plot_table_num(fit, i, ca, true, &a, NULL, 0) != FL_OK ||
            coord_plot_table_num(fit, i, cb, true, &bb, NULL, 0) != FL_OK)
            return;
        if (coord_plot_table_col(fit, "r2", &cr, NULL, 0) == FL_OK)
            (void)coord_plot_table_num(fit, i, cr, false, &r2, NULL, 0);
        if (coord_plot_table_col(fit, "p", &cp, NULL, 0) == FL_OK)
            (void)coord_plot_table_num(fit, i, cp, false, &p, NULL, 0);
        snprintf(title, sizeof(title), "fit %.4g + %.4g*N", a, bb);
        if (isfinite(r2)) {
            const size_t n = strlen(title);
            snprintf(title + n, sizeof(title) - n, ", R^2=%.3f", r2);
        }
        if (isfinite(p)) {
            const size_t n = strlen(title);
            snprintf(title + n, sizeof(title) - n, ", ~N^%.2f", p);
        }
        fprintf(b, ", \\\n     (%.10g + %.10g*x) with lines dt 2 lw 1.5 "
                "lc rgb '%s' title '%s'", a, bb, color, title);
        return;
    }
}

/* A y axis in seconds: log scale only when the values span enough for
 * it to show more than one tic. */
static void gp_seconds_axis(FILE *b, const struct range *y)
{
    if (y->hi / y->lo < 20) {
        fprintf(b, "set ylabel 'seconds'\nset yrange [0:%.10g]\n",
                y->hi * 1.5);
        return;
    }
    fprintf(b, "set ylabel 'seconds (log scale)'\nset logscale y 10\n"
            "set yrange [%.10g:%.10g]\n", y->lo / 2, y->hi * 2);
}

static void sweep_panel(FILE *b, const struct sweep_panel *p,
                        const struct coord_plot_table *fit,
                        const struct range *ranges, const struct range *x,
                        const char *xtics)
{
    struct range y = {0, 0, 0};
    bool first = true;
    for (int k = 0; k < 2; k++) {
        if (p->metrics[k] >= 0 && ranges[p->metrics[k]].n > 0) {
            range_add(&y, ranges[p->metrics[k]].lo);
            range_add(&y, ranges[p->metrics[k]].hi);
        }
    }
    if (y.n == 0 || x->n == 0) {
        gp_empty_panel(b, p->title);
        return;
    }
    gp_panel_reset(b);
    gp_title(b, "title", NULL, p->title);
    fputs("set xlabel 'devices N (log scale)'\nset logscale x 10\n", b);
    fprintf(b, "set xrange [%.10g:%.10g]\n%s", x->lo / 1.25, x->hi * 1.25,
            xtics);
    if (p->bytes) {
        fputs("set ylabel 'bytes (log scale)'\n", b);
        gp_log_bytes(b, 'y', y.lo, y.hi);
    } else {
        gp_seconds_axis(b, &y);
    }
    fputs("plot ", b);
    for (int k = 0; k < 2; k++) {
        const int m = p->metrics[k];
        if (m < 0 || ranges[m].n == 0)
            continue;
        fprintf(b, "%s'sweep.dat' using 1:($%d>0?$%d:1/0) with linespoints "
                "lw 2 pt 7 lc rgb '%s' title '%s'", first ? "" : ", \\\n     ",
                m + 2, m + 2, palette[k], p->labels[k]);
        sweep_fit_line(b, fit, (size_t)m, palette[k]);
        first = false;
    }
    fputc('\n', b);
}

/* "set xtics (4, 16, 64)\n": a tic at each device count of the sweep, so
 * a log axis over a short range still shows numbers; nothing when there
 * are too many to label. */
static void sweep_xtics(const struct coord_plot_table *t, char *buf,
                        size_t len)
{
    size_t col, n = 0, used;
    double v;
    buf[0] = '\0';
    if (t->rows > 16 || coord_plot_table_col(t, "devices", &col, NULL, 0))
        return;
    used = (size_t)snprintf(buf, len, "set xtics (");
    for (size_t i = 0; i < t->rows && used < len; i++) {
        if (coord_plot_table_num(t, i, col, true, &v, NULL, 0) != FL_OK ||
            !(v > 0))
            continue;
        used += (size_t)snprintf(buf + used, len - used, "%s%.10g",
                                 n++ > 0 ? ", " : "", v);
    }
    if (n == 0 || used + 3 >= len) {
        buf[0] = '\0';
        return;
    }
    snprintf(buf + used, len - used, ")\n");
}

enum fl_err coord_plot_chart_sweep(const struct coord_plot_opts *opts,
                                   const struct coord_plot_sweep *sw,
                                   char *script, size_t script_len,
                                   char *err, size_t errlen)
{
    struct range ranges[SWEEP_NM], x = {0, 0, 0};
    char *text = NULL;
    size_t len = 0;
    FILE *b;
    char xtics[512];
    memset(ranges, 0, sizeof(ranges));
    FL_FORWARD_ERR(sweep_dat(opts, sw->data, ranges, &x, err, errlen));
    sweep_xtics(sw->data, xtics, sizeof(xtics));
    if (x.n == 0) {
        set_err(err, errlen, "'%s': no device count above 0",
                sw->data->name);
        return FL_ERR_NOT_FOUND;
    }
    b = body_open(&text, &len, err, errlen);
    if (b == NULL)
        return FL_ERR_NOMEM;
    fputs("reset\nset datafile missing '?'\nset samples 200\n"
          "set multiplot layout 2,2 title 'Cost against device count'\n", b);
    for (size_t i = 0; i < FL_ARRAY_LEN(sweep_panels); i++)
        sweep_panel(b, &sweep_panels[i], sw->fit, ranges, &x, xtics);
    return finish_body(opts, "sweep", 1200, 900, b, &text, script,
                       script_len, err, errlen);
}

/* -------------------------------------------------- chart 4: devices */

static int cmp_stat_name(const void *key, const void *elem)
{
    const struct coord_plot_dev_stat *s = elem;
    return coord_plot_name_cmp(key, s->device);
}

/* Offset of device idx of n within its round, so the points of one round
 * spread out and each device keeps its place. */
static double jitter(size_t idx, size_t n)
{
    const size_t slots = FL_MIN(n, (size_t)JITTER_SLOTS);
    if (slots <= 1)
        return 0;
    return ((double)(idx % slots) / (double)(slots - 1) - 0.5) * 0.6;
}

static enum fl_err devices_rounds_dat(const struct coord_plot_opts *o,
                                      const struct coord_plot_run *run,
                                      const struct coord_plot_dev_stat *st,
                                      size_t n_st, char *err, size_t errlen)
{
    struct out_file of;
    FL_FORWARD_ERR(out_open(o, "devices-rounds.dat", &of, err, errlen));
    fputs("# round x up_bytes upload_ms status device"
          " (rows with an upload)\n", of.f);
    for (size_t i = 0; i < run->n_devs; i++) {
        const struct coord_plot_dev *d = &run->devs[i];
        const struct coord_plot_dev_stat *s;
        if (!(d->up_bytes > 0) && !isfinite(d->upload_ms))
            continue;
        s = bsearch(d->device, st, n_st, sizeof(*st), cmp_stat_name);
        assert(s != NULL);
        fprintf(of.f, "%llu", (unsigned long long)d->round);
        dat_num(of.f, (double)d->round +
                      jitter((size_t)(s - st), n_st));
        dat_num(of.f, d->up_bytes > 0 ? d->up_bytes : NAN);
        dat_num(of.f, d->upload_ms);
        fprintf(of.f, " %s", coord_dev_status_name(d->status));
        dat_str(of.f, d->device);
        fputc('\n', of.f);
    }
    return out_close(&of, err, errlen);
}

static int cmp_stat_bytes(const void *a, const void *b)
{
    const struct coord_plot_dev_stat *const *x = a, *const *y = b;
    const double u = (*x)->up_bytes_mean, v = (*y)->up_bytes_mean;
    if (isnan(u) != isnan(v))
        return isnan(u) ? 1 : -1;
    if (u != v && !isnan(u))
        return u < v ? -1 : 1;
    return (*x < *y) ? -1 : (*x > *y);
}

static int cmp_stat_ms(const void *a, const void *b)
{
    const struct coord_plot_dev_stat *const *x = a, *const *y = b;
    const double u = (*x)->upload_ms_mean, v = (*y)->upload_ms_mean;
    if (isnan(u) != isnan(v))
        return isnan(u) ? 1 : -1;
    if (u != v && !isnan(u))
        return u < v ? -1 : 1;
    return (*x < *y) ? -1 : (*x > *y);
}

/* rank[i] = place of st[i] when sorted by cmp (NAN values last). */
static enum fl_err stat_ranks(const struct coord_plot_dev_stat *st, size_t n,
                              int (*cmp)(const void *, const void *),
                              size_t *rank)
{
    const struct coord_plot_dev_stat **order =
        fl_malloc((n > 0 ? n : 1) * sizeof(*order));
    if (order == NULL)
        return FL_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        order[i] = &st[i];
    qsort(order, n, sizeof(*order), cmp);
    for (size_t i = 0; i < n; i++)
        rank[order[i] - st] = i;
    fl_free(order);
    return FL_OK;
}

static void devices_dat_row(FILE *f, size_t i,
                            const struct coord_plot_dev_stat *s,
                            size_t rank_bytes, size_t rank_ms)
{
    fprintf(f, "%zu", i);
    dat_str(f, s->device);
    fprintf(f, " %zu %zu %zu %zu %zu %zu", s->rows,
            s->by_status[COORD_DEV_REPORTED], s->by_status[COORD_DEV_DROPPED],
            s->by_status[COORD_DEV_REJECTED], s->by_status[COORD_DEV_LATE],
            s->uploads);
    dat_num(f, s->up_bytes_mean);
    dat_num(f, s->upload_ms_mean);
    dat_num(f, s->upload_ms_min);
    dat_num(f, s->upload_ms_max);
    dat_num(f, isnan(s->up_bytes_mean) ? NAN : (double)rank_bytes);
    dat_num(f, isnan(s->upload_ms_mean) ? NAN : (double)rank_ms);
    fputc('\n', f);
}

static enum fl_err devices_dat(const struct coord_plot_opts *o,
                               const struct coord_plot_dev_stat *st,
                               size_t n_st, char *err, size_t errlen)
{
    struct out_file of;
    size_t *rank = fl_calloc(2 * (n_st > 0 ? n_st : 1), sizeof(*rank));
    enum fl_err rc;
    if (rank == NULL)
        return FL_ERR_NOMEM;
    rc = stat_ranks(st, n_st, cmp_stat_bytes, rank);
    if (rc == FL_OK)
        rc = stat_ranks(st, n_st, cmp_stat_ms, rank + n_st);
    if (rc == FL_OK)
        rc = out_open(o, "devices.dat", &of, err, errlen);
    if (rc != FL_OK) {
        fl_free(rank);
        return rc;
    }
    fputs("# index device rows reported dropped rejected late uploads"
          " up_bytes_mean upload_ms_mean upload_ms_min upload_ms_max"
          " rank_up_bytes rank_upload_ms\n", of.f);
    for (size_t i = 0; i < n_st; i++)
        devices_dat_row(of.f, i, &st[i], rank[i], rank[n_st + i]);
    fl_free(rank);
    return out_close(&of, err, errlen);
}

struct dev_ranges {
    struct range bytes;          /* per row */
    struct range ms;
    uint64_t round_lo;
    uint64_t round_hi;
    size_t points;               /* rows in devices-rounds.dat */
};

static void dev_ranges(const struct coord_plot_run *run, struct dev_ranges *r)
{
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < run->n_devs; i++) {
        const struct coord_plot_dev *d = &run->devs[i];
        range_add(&r->bytes, d->up_bytes);
        r->points += d->up_bytes > 0 || isfinite(d->upload_ms);
        if (isfinite(d->upload_ms))
            range_add(&r->ms, d->upload_ms > 0 ? d->upload_ms : 1e-9);
        if (i == 0 || d->round < r->round_lo)
            r->round_lo = d->round;
        if (i == 0 || d->round > r->round_hi)
            r->round_hi = d->round;
    }
}

/* Panels (a) and (b): every upload as a point, the round's mean as a line. */
static void dev_round_panel(FILE *b, const struct dev_ranges *r, bool bytes)
{
    const char *unit = "ms";
    double div = 1;
    const int col = bytes ? 3 : 4;
    if (bytes)
        div = byte_unit(r->bytes.hi, &unit);
    gp_panel_reset(b);
    fprintf(b, "set title '%s per device and round'\n",
            bytes ? "Upload size" : "Upload time");
    /* headroom above the points for the key */
    fprintf(b, "set ylabel '%s (%s)'\nset yrange [0:%.10g]\n",
            bytes ? "update size on the wire" : "upload time", unit,
            (bytes ? r->bytes.hi : r->ms.hi) / div * 1.35);
    gp_round_axis(b, r->round_lo, r->round_hi);
    fputs("set key top right\n", b);
    /* many points: small and translucent ('#AARRGGBB'), so density shows */
    fprintf(b, "plot 'devices-rounds.dat' using 2:($%d/%.0f) with points "
            "pt 7 ps %s lc rgb '%s%s' title 'one upload', \\\n"
            "     '' using 1:($%d/%.0f) smooth unique with lines lw 2 "
            "lc rgb '%s' title 'mean of the round'\n", col, div,
            r->points > 1000 ? "0.3" : "0.6", r->points > 1000 ? "#b0" : "#",
            palette[0] + 1, col, div, palette[1]);
}

/* Panels (c) and (d) for a few devices: one bar per device, by name. */
static void dev_bar_panel(FILE *b, const struct dev_ranges *r, size_t n_st,
                          bool bytes)
{
    const char *unit = "ms";
    double div = 1;
    if (bytes)
        div = byte_unit(r->bytes.hi, &unit);
    gp_panel_reset(b);
    fputs(bytes ? "unset key\n" : "set key top right\n", b);
    fputs("set boxwidth 0.7\n", b);
    fprintf(b, "set title 'Mean upload %s per device'\n",
            bytes ? "size" : "time");
    fprintf(b, "set ylabel '%s (%s)'\nset yrange [0:%.10g]\n",
            bytes ? "mean update size" : "upload time", unit,
            (bytes ? r->bytes.hi : r->ms.hi) / div * 1.35);
    fprintf(b, "set xrange [-0.6:%zu.4]\n", n_st - 1);
    fprintf(b, "set xlabel 'device'\nset xtics rotate by %d right\n",
            n_st > 12 ? 45 : 0);
    fprintf(b, "plot 'devices.dat' using 1:($%d/%.0f):xtic(2) with boxes "
            "lc rgb '%s' title 'mean'", bytes ? 9 : 10, div,
            palette[bytes ? 0 : 2]);
    if (!bytes)
        fputs(", \\\n     '' using 1:10:11:12 with yerrorbars pt 7 ps 0.5 "
              "lc rgb 'black' title 'min..max of the device'", b);
    fputc('\n', b);
}

/* Panels (c) and (d) for many devices: names cannot be read, so the
 * devices are sorted by the value (ranks in devices.dat) and the panel
 * shows its distribution; min..max as one thin line per device. */
static void dev_rank_panel(FILE *b, const struct dev_ranges *r, size_t n_st,
                           bool bytes)
{
    const char *unit = "ms";
    double div = 1;
    if (bytes)
        div = byte_unit(r->bytes.hi, &unit);
    gp_panel_reset(b);
    fprintf(b, "set title 'Mean upload %s per device, sorted'\n",
            bytes ? "size" : "time");
    fprintf(b, "set ylabel '%s (%s)'\nset yrange [0:%.10g]\n",
            bytes ? "mean update size" : "upload time", unit,
            (bytes ? r->bytes.hi : r->ms.hi) / div * 1.35);
    fprintf(b, "set xrange [-0.5:%zu.5]\nset xlabel 'devices sorted by "
            "mean upload %s (%zu)'\n", n_st - 1, bytes ? "size" : "time",
            n_st);
    fputs("set key top left\nset boxwidth 1\n", b);
    if (bytes) {
        fprintf(b, "plot 'devices.dat' using 13:($9/%.0f) with boxes "
                "fs solid 0.7 noborder lc rgb '%s' title 'mean of the "
                "device'\n", div, palette[0]);
        return;
    }
    fprintf(b, "plot 'devices.dat' using 14:11:(0):($12-$11) with vectors "
            "nohead lc rgb '#a0c8a0' title 'min..max of the device', "
            "\\\n     '' using 14:10 with points pt 7 ps 0.3 lc rgb '%s' "
            "title 'mean of the device'\n", palette[2]);
}

static void devices_body(FILE *b, const struct coord_plot_run *run,
                         size_t n_st)
{
    struct dev_ranges r;
    dev_ranges(run, &r);
    fputs("reset\nset datafile missing '?'\n", b);
    fputs("set multiplot layout 2,2 title ", b);
    gp_title_str(b, "Uploads per device: ", run->name);
    fputc('\n', b);
    if (r.bytes.n > 0)
        dev_round_panel(b, &r, true);
    else
        gp_empty_panel(b, "Upload size per device and round");
    if (r.ms.n > 0)
        dev_round_panel(b, &r, false);
    else
        gp_empty_panel(b, "Upload time per device and round");
    if (r.bytes.n > 0 && n_st <= MAX_XTIC_LABELS)
        dev_bar_panel(b, &r, n_st, true);
    else if (r.bytes.n > 0)
        dev_rank_panel(b, &r, n_st, true);
    else
        gp_empty_panel(b, "Mean upload size per device");
    if (r.ms.n > 0 && n_st <= MAX_XTIC_LABELS)
        dev_bar_panel(b, &r, n_st, false);
    else if (r.ms.n > 0)
        dev_rank_panel(b, &r, n_st, false);
    else
        gp_empty_panel(b, "Mean upload time per device");
}

enum fl_err coord_plot_chart_devices(const struct coord_plot_opts *opts,
                                     const struct coord_plot_run *run,
                                     const struct coord_plot_dev_stat *stats,
                                     size_t n_stats, char *script,
                                     size_t script_len, char *err,
                                     size_t errlen)
{
    char *text = NULL;
    size_t len = 0, uploads = 0;
    FILE *b;
    for (size_t i = 0; i < n_stats; i++)
        uploads += stats[i].uploads + stats[i].timed;
    if (!run->has_devs || uploads == 0) {
        set_err(err, errlen, "'%s': %s", run->dir,
                run->has_devs ? "devices.csv has no upload"
                              : "no devices.csv");
        return FL_ERR_NOT_FOUND;
    }
    FL_FORWARD_ERR(devices_rounds_dat(opts, run, stats, n_stats, err,
                                      errlen));
    FL_FORWARD_ERR(devices_dat(opts, stats, n_stats, err, errlen));
    b = body_open(&text, &len, err, errlen);
    if (b == NULL)
        return FL_ERR_NOMEM;
    devices_body(b, run, n_stats);
    return finish_body(opts, "devices", 1200, 900, b, &text, script,
                       script_len, err, errlen);
}

/* ================================================================ gnuplot */

static void not_found_msg(char *err, size_t errlen, int e)
{
    set_err(err, errlen, "cannot run 'gnuplot': %s; install it with "
            "'apt-get install %s' (Debian package %s)", strerror(e),
            GNUPLOT_PKG, GNUPLOT_PKG);
}

/* Fork and exec argv[0] from PATH in dir (NULL: here) with stdout and
 * stderr on out_fd and stdin from /dev/null. Returns the exec errno via
 * *exec_errno (0 when exec succeeded) and the exit status via *status. */
static enum fl_err spawn_wait(const char *dir, char *const argv[], int out_fd,
                              int *exec_errno, int *status)
{
    int pfd[2];
    pid_t pid;
    ssize_t got;
    *exec_errno = 0;
    if (pipe(pfd) != 0)
        return FL_ERR_IO;
    if (fcntl(pfd[1], F_SETFD, FD_CLOEXEC) != 0) {
        close(pfd[0]);
        close(pfd[1]);
        return FL_ERR_IO;
    }
    pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return FL_ERR_IO;
    }
    if (pid == 0) {
        /* child: only async-signal-safe calls until exec */
        int e;
        const int nul = open("/dev/null", O_RDONLY);
        close(pfd[0]);
        if (nul >= 0)
            dup2(nul, STDIN_FILENO);
        dup2(out_fd, STDOUT_FILENO);
        dup2(out_fd, STDERR_FILENO);
        if (dir == NULL || chdir(dir) == 0)
            execvp(argv[0], argv);
        e = errno;
        if (write(pfd[1], &e, sizeof(e)) < 0)
            _exit(126);
        _exit(127);
    }
    close(pfd[1]);
    do {
        got = read(pfd[0], exec_errno, sizeof(*exec_errno));
    } while (got < 0 && errno == EINTR);
    if (got != (ssize_t)sizeof(*exec_errno))
        *exec_errno = 0;
    close(pfd[0]);
    while (waitpid(pid, status, 0) < 0) {
        if (errno != EINTR)
            return FL_ERR_IO;
    }
    return FL_OK;
}

/* Does the terminal list in text have a line whose first word is name? */
static bool has_terminal(const char *text, const char *name)
{
    const size_t n = strlen(name);
    for (const char *p = text; p != NULL && *p != '\0';) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, name, n) == 0 && (p[n] == ' ' || p[n] == '\t'))
            return true;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return false;
}

enum fl_err coord_plot_gnuplot_probe(bool *has_svg, bool *has_pngcairo,
                                     bool *has_png, char *err, size_t errlen)
{
    char *const argv[] = {(char[]){"gnuplot"}, (char[]){"-e"},
                          (char[]){"set terminal"}, NULL};
    char tmpl[] = "/tmp/fedcomp-report.XXXXXX";
    char buf[16384];
    int fd, e, status = 0;
    ssize_t n;
    enum fl_err rc;
    *has_svg = *has_pngcairo = *has_png = false;
    fd = mkstemp(tmpl);
    if (fd < 0) {
        set_err(err, errlen, "cannot create a temporary file: %s",
                strerror(errno));
        return FL_ERR_IO;
    }
    unlink(tmpl);
    rc = spawn_wait(NULL, argv, fd, &e, &status);
    if (rc == FL_OK && e != 0) {
        not_found_msg(err, errlen, e);
        rc = FL_ERR_NOT_FOUND;
    } else if (rc == FL_OK && (!WIFEXITED(status) ||
                               WEXITSTATUS(status) != 0)) {
        set_err(err, errlen, "'gnuplot -e \"set terminal\"' failed "
                "(status %d)", status);
        rc = FL_ERR_IO;
    } else if (rc != FL_OK) {
        set_err(err, errlen, "cannot start gnuplot: %s", strerror(errno));
    }
    n = rc == FL_OK ? pread(fd, buf, sizeof(buf) - 1, 0) : -1;
    close(fd);
    if (rc != FL_OK)
        return rc;
    buf[n > 0 ? n : 0] = '\0';
    *has_svg = has_terminal(buf, "svg");
    *has_pngcairo = has_terminal(buf, "pngcairo");
    *has_png = has_terminal(buf, "png");
    return FL_OK;
}

/* The last non-empty line of the log from offset on, into err. */
static void log_tail(int fd, off_t from, char *err, size_t errlen)
{
    char buf[2048];
    const off_t end = lseek(fd, 0, SEEK_END);
    off_t start = end - (off_t)sizeof(buf) + 1;
    ssize_t n;
    size_t len;
    char *line;
    if (start < from)
        start = from;
    n = start < end ? pread(fd, buf, (size_t)(end - start), start) : 0;
    len = n > 0 ? (size_t)n : 0;
    buf[len] = '\0';
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
        buf[--len] = '\0';
    line = strrchr(buf, '\n');
    line = line != NULL ? line + 1 : buf;
    set_err(err, errlen, "%s", line);
}

enum fl_err coord_plot_gnuplot_run(const char *dir, const char *script,
                                   char *err, size_t errlen)
{
    char log_path[PATH_CAP], msg[512], arg[PATH_CAP];
    char *const argv[] = {(char[]){"gnuplot"}, arg, NULL};
    int fd, e = 0, status = 0;
    off_t from;
    enum fl_err rc;
    snprintf(arg, sizeof(arg), "%s", script);
    if (join_path(log_path, sizeof(log_path), dir, "gnuplot.log") != FL_OK) {
        set_err(err, errlen, "output path '%s' is too long", dir);
        return FL_ERR_TOO_LARGE;
    }
    fd = open(log_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        set_err(err, errlen, "cannot open '%s': %s", log_path,
                strerror(errno));
        return FL_ERR_IO;
    }
    from = lseek(fd, 0, SEEK_END);
    rc = spawn_wait(dir, argv, fd, &e, &status);
    if (rc != FL_OK) {
        set_err(err, errlen, "cannot start gnuplot: %s", strerror(errno));
    } else if (e != 0) {
        not_found_msg(err, errlen, e);
        rc = FL_ERR_NOT_FOUND;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        log_tail(fd, from, msg, sizeof(msg));
        set_err(err, errlen, "gnuplot failed on '%s/%s' (%s %d): %s", dir,
                script, WIFEXITED(status) ? "exit status" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                msg);
        rc = FL_ERR_IO;
    }
    close(fd);
    return rc;
}
