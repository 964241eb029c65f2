/*
 * Unit tests for coordinator/coord_plot (the logic of fedcomp-report):
 * the CSV reader (good files, wrong column counts, missing columns,
 * non-numeric values, empty files), the reader against files written by
 * the coordinator's own coord_report (the contract between the two), the
 * derived data (bytes per round, cumulative uplink bytes, per-device
 * aggregation, totals) against hand-computed values, seeded property
 * tests, failing allocations, the chart data files, and gnuplot errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "coordinator/coord_plot.h"
#include "coordinator/coord_report.h"

#define ERR_CAP 512

/* ------------------------------------------------------------ helpers */

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/test_coord_plot.XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

/* Remove dir and the plain files in it (the tests make no subfolders). */
static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024];
    assert_non_null(d);
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static char *read_text(const char *dir, const char *name)
{
    char path[1024];
    void *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(fl_file_read(path, 1 << 22, &data, &len), FL_OK);
    return data;
}

static struct coord_plot_table *parse_ok(const char *text)
{
    struct coord_plot_table *t = NULL;
    char err[ERR_CAP] = "";
    const enum fl_err rc = coord_plot_table_parse("t.csv", text,
                                                  strlen(text), &t, err,
                                                  sizeof(err));
    if (rc != FL_OK)
        fail_msg("parse failed: %s", err);
    assert_non_null(t);
    return t;
}

/* A rounds.csv in the coordinator's format: its real header + rows. */
static struct coord_plot_table *rounds_table(const char *rows)
{
    char text[8192];
    snprintf(text, sizeof(text), "%s\n%s", coord_rounds_csv_header, rows);
    return parse_ok(text);
}

/* ------------------------------------------------------- CSV reader */

static void test_table_good(void **state)
{
    (void)state;
    struct coord_plot_table *t =
        parse_ok("a,b,c\n1,2,3\r\nx,,z\n\n\n");
    assert_int_equal(coord_plot_table_cols(t), 3);
    assert_int_equal(coord_plot_table_rows(t), 2);
    assert_string_equal(coord_plot_table_cell(t, 0, 0), "1");
    assert_string_equal(coord_plot_table_cell(t, 0, 2), "3"); /* no \r */
    assert_string_equal(coord_plot_table_cell(t, 1, 1), "");
    assert_string_equal(coord_plot_table_cell(t, 1, 2), "z");
    assert_int_equal(coord_plot_table_line(t, 0), 2);
    assert_int_equal(coord_plot_table_line(t, 1), 3);
    assert_string_equal(coord_plot_table_name(t), "t.csv");
    size_t c = 99;
    assert_int_equal(coord_plot_table_col(t, "c", &c, NULL, 0), FL_OK);
    assert_int_equal(c, 2);
    coord_plot_table_destroy(&t);
    assert_null(t);
    coord_plot_table_destroy(&t); /* pointer to NULL */
    coord_plot_table_destroy(NULL);

    /* header only, and a last line without newline */
    t = parse_ok("a,b");
    assert_int_equal(coord_plot_table_rows(t), 0);
    coord_plot_table_destroy(&t);
    t = parse_ok("a,b\n5,6");
    assert_int_equal(coord_plot_table_rows(t), 1);
    assert_string_equal(coord_plot_table_cell(t, 0, 1), "6");
    coord_plot_table_destroy(&t);
}

static void test_table_bad_shapes(void **state)
{
    static const struct {
        const char *text;
        size_t len;              /* 0: strlen */
        const char *msg;
    } cases[] = {
        {"a,b,c\n1,2,3\n1,2\n", 0,
         "'t.csv' line 3: expected 3 columns, got 2"},
        {"a,b,c\n1,2,3,4\n", 0, "'t.csv' line 2: expected 3 columns, got 4"},
        {"a,b,c\n1,2,3\n7\n", 0, "'t.csv' line 3: expected 3 columns, got 1"},
        {"a,b\n1,2\n\n3,4\n", 0, "'t.csv' line 3: blank line inside"},
        {"", 0, "'t.csv' is empty (no header line)"},
        {"\n1,2\n", 0, "'t.csv' is empty (no header line)"},
        {"a,b,a\n", 0, "'t.csv' line 1: column 'a' appears twice"},
        {"a,,c\n", 0, "'t.csv' line 1: column 2 has no name"},
        {"a,b\n1\0,2\n", 9, "'t.csv' contains a NUL byte"},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        struct coord_plot_table *t = (void *)1;
        char err[ERR_CAP] = "";
        const size_t len = cases[i].len ? cases[i].len
                                        : strlen(cases[i].text);
        const enum fl_err rc = coord_plot_table_parse(
            "t.csv", cases[i].text, len, &t, err, sizeof(err));
        assert_int_equal(rc, FL_ERR_FORMAT);
        assert_null(t);
        if (strstr(err, cases[i].msg) == NULL)
            fail_msg("case %zu: '%s' does not contain '%s'", i, err,
                     cases[i].msg);
    }
}

static void test_table_numbers(void **state)
{
    static const struct {
        const char *cell;
        bool required;
        enum fl_err rc;
        double value;            /* NAN: expect NAN */
        const char *msg;
    } cases[] = {
        {"12", true, FL_OK, 12, NULL},
        {"0.25", true, FL_OK, 0.25, NULL},
        {"1e3", true, FL_OK, 1000, NULL},
        {"-3.5", true, FL_OK, -3.5, NULL},
        {"", false, FL_OK, NAN, NULL},
        {"nan", false, FL_OK, NAN, NULL},
        {"NaN", false, FL_OK, NAN, NULL},
        {"", true, FL_ERR_FORMAT, 0, "column 'v': value is empty"},
        {"abc", true, FL_ERR_FORMAT, 0, "line 2, column 'v': 'abc' is not a"},
        {"12abc", false, FL_ERR_FORMAT, 0, "'12abc' is not a number"},
        {" 1", true, FL_ERR_FORMAT, 0, "is not a number"},
        {"1 ", true, FL_ERR_FORMAT, 0, "is not a number"},
        {"inf", false, FL_ERR_FORMAT, 0, "'inf' is not a number"},
        {"1e999", true, FL_ERR_FORMAT, 0, "is not a number"},
        {"zstd:1", true, FL_ERR_FORMAT, 0, "'zstd:1' is not a number"},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        char text[128], err[ERR_CAP] = "";
        double v = -12345;
        snprintf(text, sizeof(text), "k,v\n1,%s\n", cases[i].cell);
        struct coord_plot_table *t = parse_ok(text);
        const enum fl_err rc = coord_plot_table_num(t, 0, 1,
                                                    cases[i].required, &v,
                                                    err, sizeof(err));
        assert_int_equal(rc, cases[i].rc);
        if (rc == FL_OK && isnan(cases[i].value))
            assert_true(isnan(v));
        else if (rc == FL_OK)
            assert_true(v == cases[i].value);
        else if (strstr(err, cases[i].msg) == NULL)
            fail_msg("case %zu: '%s' does not contain '%s'", i, err,
                     cases[i].msg);
        coord_plot_table_destroy(&t);
    }
}

static void test_table_files(void **state)
{
    char *dir = make_tmpdir();
    char path[512], err[ERR_CAP] = "";
    struct coord_plot_table *t = NULL;
    (void)state;
    snprintf(path, sizeof(path), "%s/none.csv", dir);
    assert_int_equal(coord_plot_table_read(path, &t, err, sizeof(err)),
                     FL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "does not exist"));
    write_file(dir, "empty.csv", "");
    snprintf(path, sizeof(path), "%s/empty.csv", dir);
    assert_int_equal(coord_plot_table_read(path, &t, err, sizeof(err)),
                     FL_ERR_FORMAT);
    assert_null(t);
    assert_non_null(strstr(err, "empty.csv' is empty"));
    write_file(dir, "ok.csv", "x,y\n1,2\n");
    snprintf(path, sizeof(path), "%s/ok.csv", dir);
    assert_int_equal(coord_plot_table_read(path, &t, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(coord_plot_table_rows(t), 1);
    assert_string_equal(coord_plot_table_name(t), path);
    coord_plot_table_destroy(&t);
    remove_dir(dir);
}

static void test_missing_columns(void **state)
{
    static const char *const needed[] = {
        "round", "attempt", "up_wire_bytes", "up_dense_bytes",
        "down_wire_bytes", "down_dense_bytes", "test_acc", "wall_s",
    };
    (void)state;
    for (size_t k = 0; k < FL_ARRAY_LEN(needed); k++) {
        /* the coordinator's header with one column renamed */
        char header[1024], text[2048], err[ERR_CAP] = "";
        char *p;
        struct coord_plot_round *rows = (void *)1;
        size_t n = 7;
        snprintf(header, sizeof(header), ",%s,", coord_rounds_csv_header);
        char key[64];
        snprintf(key, sizeof(key), ",%s,", needed[k]);
        p = strstr(header, key);
        assert_non_null(p);
        p[1] = 'X'; /* "round" -> "Xound" */
        header[strlen(header) - 1] = '\0';
        snprintf(text, sizeof(text), "%s\n", header + 1);
        struct coord_plot_table *t = parse_ok(text);
        assert_int_equal(coord_plot_rounds_from_table(t, &rows, &n, err,
                                                      sizeof(err)),
                         FL_ERR_NOT_FOUND);
        assert_null(rows);
        assert_int_equal(n, 0);
        char want[128];
        snprintf(want, sizeof(want), "'t.csv': no column '%s'", needed[k]);
        if (strstr(err, want) == NULL)
            fail_msg("'%s' does not contain '%s'", err, want);
        coord_plot_table_destroy(&t);
    }
}

/* --------------------------------------------------- typed rows */

static void test_rounds_from_table(void **state)
{
    /* coordinator format: an abandoned attempt (empty acc/loss), then a
     * retry; an extra unknown column would be ignored */
    struct coord_plot_table *t = rounds_table(
        "1,1,4,4,4,0,0,0,1000,400000,78,500000,400000,400.0000,0.01,fp16,"
        "zstd:1,0.5,0.1,0.01,0.61,1.2\n"
        "2,1,4,4,1,3,0,0,250,100000,0,20000,400000,400.0000,0.01,fp16,"
        "zstd:1,2.0,0.2,0.00,,\n"
        "2,2,4,4,4,0,0,1,1100,400000,0,520000,400000,363.6364,0.01,fp16,"
        "zstd:1,0.7,0.1,0.02,0.72,0.9\n");
    struct coord_plot_round *r = NULL;
    size_t n = 0;
    char err[ERR_CAP] = "";
    (void)state;
    assert_int_equal(coord_plot_rounds_from_table(t, &r, &n, err,
                                                  sizeof(err)), FL_OK);
    assert_int_equal(n, 3);
    assert_int_equal(r[0].round, 1);
    assert_int_equal(r[2].attempt, 2);
    assert_true(r[0].up_wire == 1000 && r[0].up_dense == 400000);
    assert_true(r[0].other_rx == 78 && r[0].down_wire == 500000);
    assert_true(r[1].dropped == 3 && r[1].reported == 1);
    assert_true(r[2].late == 1);
    assert_true(r[0].test_acc == 0.61 && r[0].test_loss == 1.2);
    assert_true(isnan(r[1].test_acc) && isnan(r[1].test_loss));
    assert_true(r[1].wall_s == 2.0);
    fl_free(r);
    coord_plot_table_destroy(&t);
}

static void test_rounds_bad_values(void **state)
{
    static const struct {
        const char *row;
        const char *msg;
    } cases[] = {
        {"1,1,4,4,4,0,0,0,abc,4,0,5,4,1,0.01,fp16,zstd:1,1,1,1,0.5,1\n",
         "line 2, column 'up_wire_bytes': 'abc' is not a number"},
        {"1,1,4,4,4,0,0,0,-5,4,0,5,4,1,0.01,fp16,zstd:1,1,1,1,0.5,1\n",
         "'-5' is not a non-negative number"},
        {"1.5,1,4,4,4,0,0,0,5,4,0,5,4,1,0.01,fp16,zstd:1,1,1,1,0.5,1\n",
         "column 'round': '1.5' is not a non-negative integer"},
        {"1,1,4,4,4,0,0,0,,4,0,5,4,1,0.01,fp16,zstd:1,1,1,1,0.5,1\n",
         "column 'up_wire_bytes': value is empty"},
        {"1,1,4,4,4,0,0,0,5,4,0,5,4,1,0.01,fp16,zstd:1,1,1,1,high,1\n",
         "column 'test_acc': 'high' is not a number"},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        struct coord_plot_table *t = rounds_table(cases[i].row);
        struct coord_plot_round *r = (void *)1;
        size_t n = 9;
        char err[ERR_CAP] = "";
        assert_int_equal(coord_plot_rounds_from_table(t, &r, &n, err,
                                                      sizeof(err)),
                         FL_ERR_FORMAT);
        assert_null(r);
        assert_int_equal(n, 0);
        if (strstr(err, cases[i].msg) == NULL)
            fail_msg("case %zu: '%s' does not contain '%s'", i, err,
                     cases[i].msg);
        coord_plot_table_destroy(&t);
    }
}

static void test_devs_bad_status(void **state)
{
    char text[1024], err[ERR_CAP] = "";
    struct coord_plot_dev *d = NULL;
    size_t n = 0;
    (void)state;
    snprintf(text, sizeof(text), "%s\n1,w0,gone,,0,10,,,,,,,,,1,,,\n",
             coord_devices_csv_header);
    struct coord_plot_table *t = parse_ok(text);
    assert_int_equal(coord_plot_devs_from_table(t, &d, &n, err, sizeof(err)),
                     FL_ERR_FORMAT);
    assert_non_null(strstr(err, "line 2, column 'status': unknown status "
                                "'gone'"));
    coord_plot_table_destroy(&t);
}

static void write_round(struct coord_report *rep, uint64_t round,
                        uint32_t attempt, bool committed, uint64_t up)
{
    struct coord_round_row r;
    memset(&r, 0, sizeof(r));
    r.round = round;
    r.attempt = attempt;
    r.committed = committed;
    r.joined = r.selected = 3;
    r.reported = committed ? 2 : 0;
    r.dropped = committed ? 1 : 3;
    r.up_wire_bytes = up;
    r.up_dense_bytes = committed ? 2 * 40000 : 0;
    r.down_wire_bytes = 3 * 7000 + round;
    r.down_dense_bytes = 3 * 40000;
    r.density = 0.01;
    r.values = CMP_VALUE_FP16;
    r.codec = CMP_CODEC_ZSTD;
    r.level = 1;
    r.wall_s = 0.5 * (double)attempt;
    r.cpu_s = 0.1;
    r.agg_s = 0.01;
    r.test_acc = committed ? 0.5 + 0.1 * (double)round : NAN;
    r.test_loss = committed ? 1.0 / (double)round : NAN;
    assert_int_equal(coord_report_round(rep, &r), FL_OK);
}

static void write_dev(struct coord_report *rep, uint64_t round,
                      const char *dev, enum coord_dev_status st,
                      uint64_t up, double ms)
{
    struct coord_device_row d;
    memset(&d, 0, sizeof(d));
    d.round = round;
    d.attempt = st == COORD_DEV_LATE ? 0 : 1;
    d.device = dev;
    d.status = st;
    d.samples = up > 0 ? 1000 : 0;
    d.up_bytes = up;
    d.down_bytes = 7000;
    d.has_update = isfinite(ms);
    d.k = 400;
    d.density = 0.01;
    d.values = CMP_VALUE_FP16;
    d.codec = CMP_CODEC_ZSTD;
    d.train_ms = 50;
    d.encode_ms = 2;
    d.upload_ms = ms;
    d.loss = 0.9;
    assert_int_equal(coord_report_device(rep, &d), FL_OK);
}

/* The reader against files written by the coordinator's own writer. */
static void test_run_from_coord_report(void **state)
{
    char *dir = make_tmpdir();
    struct coord_report *rep = NULL;
    struct coord_plot_run *run = NULL;
    char err[ERR_CAP] = "";
    (void)state;
    assert_int_equal(coord_report_open(dir, &rep, err, sizeof(err)), FL_OK);
    assert_int_equal(coord_report_initial(rep, 0.0985), FL_OK);
    write_dev(rep, 1, "w1", COORD_DEV_REPORTED, 500, 10.0);
    write_dev(rep, 1, "w2", COORD_DEV_REPORTED, 700, 30.0);
    write_dev(rep, 1, "w3", COORD_DEV_DROPPED, 0, NAN);
    write_round(rep, 1, 1, true, 1200);
    write_dev(rep, 2, "w1", COORD_DEV_DROPPED, 0, NAN);
    write_dev(rep, 2, "w2", COORD_DEV_DROPPED, 0, NAN);
    write_dev(rep, 2, "w3", COORD_DEV_DROPPED, 0, NAN);
    write_round(rep, 2, 1, false, 0);
    write_dev(rep, 2, "w1", COORD_DEV_REPORTED, 600, 20.0);
    write_dev(rep, 2, "w2", COORD_DEV_REJECTED, 650, NAN);
    write_dev(rep, 1, "w3", COORD_DEV_LATE, 800, 90.0);
    write_round(rep, 2, 2, true, 600);
    coord_report_close(&rep);

    assert_int_equal(coord_plot_run_load(dir, &run, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(run->n_rounds, 3);
    assert_true(run->has_devs);
    assert_int_equal(run->n_devs, 9);
    assert_true(run->rounds[0].up_wire == 1200);
    assert_true(run->rounds[1].attempt == 1 && isnan(run->rounds[1].test_acc));
    assert_true(run->rounds[2].down_wire == 3 * 7000 + 2);
    assert_true(fabs(run->rounds[2].test_acc - 0.7) < 1e-9);
    assert_string_equal(run->devs[8].device, "w3");
    assert_int_equal(run->devs[8].status, COORD_DEV_LATE);
    assert_true(run->devs[8].upload_ms == 90.0);
    assert_true(isnan(run->devs[2].upload_ms));
    assert_true(isnan(run->devs[7].upload_ms)); /* rejected, no update */
    assert_true(run->devs[7].up_bytes == 650);
    assert_non_null(strstr(run->name, "test_coord_plot."));
    assert_true(fabs(run->initial_acc - 0.0985) < 1e-12);

    /* summary of it: hand-computed totals */
    struct coord_plot_dev_stat *st = NULL;
    size_t n_st = 0;
    struct coord_plot_totals tot;
    assert_int_equal(coord_plot_dev_stats(run->devs, run->n_devs, &st,
                                          &n_st), FL_OK);
    coord_plot_totals(run, st, n_st, &tot);
    assert_int_equal(tot.attempts, 3);
    assert_int_equal(tot.committed, 2);
    assert_int_equal(tot.last_round, 2);
    assert_true(tot.up_wire == 1800 && tot.up_dense == 160000);
    assert_true(tot.down_wire == 3 * 21000 + 1 + 2 + 2);
    assert_true(fabs(tot.up_ratio - 160000.0 / 1800.0) < 1e-12);
    assert_true(fabs(tot.mean_wall_s - (0.5 + 0.5 + 1.0) / 3) < 1e-12);
    assert_int_equal(tot.devices, 3);
    assert_int_equal(tot.dev_rows[COORD_DEV_REPORTED], 3);
    assert_int_equal(tot.dev_rows[COORD_DEV_DROPPED], 4);
    assert_int_equal(tot.dev_rows[COORD_DEV_REJECTED], 1);
    assert_int_equal(tot.dev_rows[COORD_DEV_LATE], 1);
    /* w1 15 ms, w2 30 ms, w3 90 ms */
    assert_string_equal(st[tot.fastest].device, "w1");
    assert_string_equal(st[tot.slowest].device, "w3");

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    coord_plot_summary_write(f, run, &tot, st, NULL, 0);
    assert_int_equal(fclose(f), 0);
    assert_non_null(strstr(text, "2  committed (3 attempts, 1 abandoned)"));
    assert_non_null(strstr(text, "0.7000  (loss 0.5000, round 2)"));
    assert_non_null(strstr(text, "initial accuracy           0.0985"));
    assert_non_null(strstr(text, "(1800 bytes)"));
    assert_non_null(strstr(text, "downlink ratio"));
    assert_non_null(strstr(text, "88.9x"));
    assert_non_null(strstr(text, "3 reported, 4 dropped, 1 rejected, 1 late"));
    assert_non_null(strstr(text, "fastest upload"));
    assert_non_null(strstr(text, "w1  mean 15.0 ms (min 10.0, max 20.0)"));
    free(text);
    fl_free(st);
    coord_plot_run_destroy(&run);
    assert_null(run);
    remove_dir(dir);
}

static void test_run_load_errors(void **state)
{
    char *dir = make_tmpdir();
    struct coord_plot_run *run = (void *)1;
    char err[ERR_CAP] = "", text[1024];
    (void)state;
    assert_int_equal(coord_plot_run_load(dir, &run, err, sizeof(err)),
                     FL_ERR_NOT_FOUND);
    assert_null(run);
    assert_non_null(strstr(err, "rounds.csv' does not exist"));
    snprintf(text, sizeof(text), "%s\n", coord_rounds_csv_header);
    write_file(dir, "rounds.csv", text);
    assert_int_equal(coord_plot_run_load(dir, &run, err, sizeof(err)),
                     FL_ERR_FORMAT);
    assert_non_null(strstr(err, "no round rows yet"));
    snprintf(text, sizeof(text), "%s\n1,1,1,1,1,0,0,0,10,40,0,40,40,4,0.1,"
             "fp32,none,1,1,1,0.5,1\n1,1,1\n", coord_rounds_csv_header);
    write_file(dir, "rounds.csv", text);
    assert_int_equal(coord_plot_run_load(dir, &run, err, sizeof(err)),
                     FL_ERR_FORMAT);
    assert_non_null(strstr(err, "rounds.csv' line 3: expected 22 columns, "
                                "got 3"));
    /* good rounds; devices.csv is optional, but checked when present */
    snprintf(text, sizeof(text), "%s\n1,1,1,1,1,0,0,0,10,40,0,40,40,4,0.1,"
             "fp32,none,1,1,1,0.5,1\n", coord_rounds_csv_header);
    write_file(dir, "rounds.csv", text);
    assert_int_equal(coord_plot_run_load(dir, &run, err, sizeof(err)),
                     FL_OK);
    assert_false(run->has_devs);
    assert_int_equal(run->n_devs, 0);
    assert_true(isnan(run->initial_acc));
    coord_plot_run_destroy(&run);
    write_file(dir, "initial_acc", "0.25\n");
    assert_int_equal(coord_plot_run_load(dir, &run, err, sizeof(err)),
                     FL_OK);
    assert_true(run->initial_acc == 0.25);
    coord_plot_run_destroy(&run);
    write_file(dir, "initial_acc", "0.25x\n");
    assert_int_equal(coord_plot_run_load(dir, &run, err, sizeof(err)),
                     FL_ERR_FORMAT);
    assert_non_null(strstr(err, "initial_acc' does not hold one number"));
    write_file(dir, "initial_acc", "0.5\n");
    write_file(dir, "devices.csv", "round,device\n1,w0\n");
    assert_int_equal(coord_plot_run_load(dir, &run, err, sizeof(err)),
                     FL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "devices.csv': no column 'status'"));
    remove_dir(dir);
}

/* ------------------------------------------------------ derived data */

static void test_bytes_per_round(void **state)
{
    /* rounds out of order, round 3 with three attempts */
    static const struct coord_plot_round in[] = {
        {.round = 3, .attempt = 1, .up_wire = 10, .up_dense = 100,
         .down_wire = 1000, .down_dense = 10000},
        {.round = 1, .attempt = 1, .up_wire = 1, .up_dense = 2,
         .down_wire = 3, .down_dense = 4},
        {.round = 3, .attempt = 2, .up_wire = 20, .up_dense = 200,
         .down_wire = 2000, .down_dense = 20000},
        {.round = 2, .attempt = 1, .up_wire = 5, .up_dense = 6,
         .down_wire = 7, .down_dense = 8},
        {.round = 3, .attempt = 3, .up_wire = 30, .up_dense = 300,
         .down_wire = 3000, .down_dense = 30000},
    };
    static const struct coord_plot_round_bytes want[] = {
        {1, 1, 1, 2, 3, 4},
        {2, 1, 5, 6, 7, 8},
        {3, 3, 60, 600, 6000, 60000},
    };
    struct coord_plot_round_bytes out[FL_ARRAY_LEN(in)];
    (void)state;
    const size_t m = coord_plot_bytes_per_round(in, FL_ARRAY_LEN(in), out);
    assert_int_equal(m, FL_ARRAY_LEN(want));
    for (size_t i = 0; i < m; i++) {
        assert_int_equal(out[i].round, want[i].round);
        assert_int_equal(out[i].attempts, want[i].attempts);
        assert_true(out[i].up_wire == want[i].up_wire);
        assert_true(out[i].up_dense == want[i].up_dense);
        assert_true(out[i].down_wire == want[i].down_wire);
        assert_true(out[i].down_dense == want[i].down_dense);
    }
    assert_int_equal(coord_plot_bytes_per_round(in, 0, out), 0);
}

static void test_acc_curve(void **state)
{
    /* the abandoned attempt's bytes count towards the next point */
    static const struct coord_plot_round in[] = {
        {.round = 1, .up_wire = 100, .up_dense = 1000, .test_acc = 0.5},
        {.round = 2, .up_wire = 40, .up_dense = 400, .test_acc = NAN},
        {.round = 2, .up_wire = 110, .up_dense = 1000, .test_acc = 0.6},
        {.round = 3, .up_wire = 0, .up_dense = 0, .test_acc = 0.55},
        {.round = 4, .up_wire = 90, .up_dense = 1000, .test_acc = NAN},
    };
    static const struct coord_plot_acc_point want[] = {
        {1, 100, 1000, 0.5},
        {2, 250, 2400, 0.6},
        {3, 250, 2400, 0.55},
    };
    struct coord_plot_acc_point out[FL_ARRAY_LEN(in)];
    (void)state;
    const size_t m = coord_plot_acc_curve(in, FL_ARRAY_LEN(in), out);
    assert_int_equal(m, FL_ARRAY_LEN(want));
    for (size_t i = 0; i < m; i++) {
        assert_int_equal(out[i].round, want[i].round);
        assert_true(out[i].cum_up_wire == want[i].cum_up_wire);
        assert_true(out[i].cum_up_dense == want[i].cum_up_dense);
        assert_true(out[i].acc == want[i].acc);
    }
}

static void test_name_cmp(void **state)
{
    static const struct {
        const char *a, *b;
        int sign;
    } cases[] = {
        {"w2", "w10", -1}, {"w10", "w2", 1}, {"w10", "w10", 0},
        {"a", "b", -1}, {"w", "w1", -1}, {"dev-9-b", "dev-10-a", -1},
        {"w01", "w1", -1}, {"w1", "w01", 1}, {"w007", "w7x", -1},
        {"x99999999999999999999", "x100000000000000000000", -1},
        {"", "a", -1},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        const int c = coord_plot_name_cmp(cases[i].a, cases[i].b);
        const int sign = (c > 0) - (c < 0);
        if (sign != cases[i].sign)
            fail_msg("case %zu: cmp('%s', '%s') = %d", i, cases[i].a,
                     cases[i].b, c);
    }
}

static void test_dev_stats(void **state)
{
    static const struct coord_plot_dev in[] = {
        {1, "w10", COORD_DEV_REPORTED, 1000, 50, 4.0},
        {1, "w2", COORD_DEV_REPORTED, 3000, 50, 10.0},
        {1, "w01", COORD_DEV_DROPPED, 0, 50, NAN},
        {2, "w10", COORD_DEV_REPORTED, 2000, 50, 8.0},
        {2, "w2", COORD_DEV_REJECTED, 500, 50, NAN},
        {2, "w1", COORD_DEV_REPORTED, 100, 50, 1.0},
        {3, "w10", COORD_DEV_DROPPED, 0, 50, NAN},
        {1, "w10", COORD_DEV_LATE, 3000, 0, 12.0},
    };
    static const struct {
        const char *device;
        size_t rows, reported, dropped, rejected, late, uploads, timed;
        double total, mean_bytes, mean_ms, min_ms, max_ms;
    } want[] = {
        {"w01", 1, 0, 1, 0, 0, 0, 0, 0, NAN, NAN, NAN, NAN},
        {"w1", 1, 1, 0, 0, 0, 1, 1, 100, 100, 1.0, 1.0, 1.0},
        {"w2", 2, 1, 0, 1, 0, 2, 1, 3500, 1750, 10.0, 10.0, 10.0},
        {"w10", 4, 2, 1, 0, 1, 3, 3, 6000, 2000, 8.0, 4.0, 12.0},
    };
    struct coord_plot_dev_stat *st = NULL;
    size_t n = 0;
    (void)state;
    assert_int_equal(coord_plot_dev_stats(in, FL_ARRAY_LEN(in), &st, &n),
                     FL_OK);
    assert_int_equal(n, FL_ARRAY_LEN(want));
    for (size_t i = 0; i < n; i++) {
        const struct coord_plot_dev_stat *s = &st[i];
        assert_string_equal(s->device, want[i].device);
        assert_int_equal(s->rows, want[i].rows);
        assert_int_equal(s->by_status[COORD_DEV_REPORTED], want[i].reported);
        assert_int_equal(s->by_status[COORD_DEV_DROPPED], want[i].dropped);
        assert_int_equal(s->by_status[COORD_DEV_REJECTED], want[i].rejected);
        assert_int_equal(s->by_status[COORD_DEV_LATE], want[i].late);
        assert_int_equal(s->uploads, want[i].uploads);
        assert_int_equal(s->timed, want[i].timed);
        assert_true(s->up_bytes_total == want[i].total);
        if (isnan(want[i].mean_bytes)) {
            assert_true(isnan(s->up_bytes_mean));
            assert_true(isnan(s->upload_ms_mean));
            assert_true(isnan(s->upload_ms_min));
            assert_true(isnan(s->upload_ms_max));
            continue;
        }
        assert_true(fabs(s->up_bytes_mean - want[i].mean_bytes) < 1e-9);
        assert_true(fabs(s->upload_ms_mean - want[i].mean_ms) < 1e-9);
        assert_true(s->upload_ms_min == want[i].min_ms);
        assert_true(s->upload_ms_max == want[i].max_ms);
    }
    struct coord_plot_run run = {.dir = (char[]){"d"}, .name = (char[]){"d"}};
    struct coord_plot_totals tot;
    coord_plot_totals(&run, st, n, &tot);
    assert_string_equal(st[tot.fastest].device, "w1");
    assert_string_equal(st[tot.slowest].device, "w2");
    assert_int_equal(tot.devices, 4);
    assert_true(isnan(tot.final_acc) && isnan(tot.up_ratio));
    fl_free(st);

    assert_int_equal(coord_plot_dev_stats(in, 0, &st, &n), FL_OK);
    assert_int_equal(n, 0);
    coord_plot_totals(&run, st, n, &tot);
    assert_int_equal(tot.fastest, -1);
    assert_int_equal(tot.slowest, -1);
    fl_free(st);
}

/* Seeded property test: whatever the rows, grouping keeps the totals,
 * rounds come out strictly increasing, the curve's bytes never decrease
 * and per-device rows add up. */
static void test_derived_properties(void **state)
{
    enum { N = 300, TRIALS = 50 };
    static const char *const names[] = {"a", "b7", "b10", "c", "d01", "d1"};
    struct fl_rng rng;
    (void)state;
    fl_rng_seed(&rng, 20261125);
    for (int trial = 0; trial < TRIALS; trial++) {
        struct coord_plot_round rows[N];
        struct coord_plot_round_bytes rb[N];
        struct coord_plot_acc_point pts[N];
        struct coord_plot_dev devs[N];
        struct coord_plot_dev_stat *st = NULL;
        const size_t n = 1 + fl_rng_below(&rng, N);
        double up = 0, down = 0, last = -1;
        size_t acc_rows = 0, n_st = 0, sum_rows = 0, sum_up = 0;
        memset(rows, 0, sizeof(rows));
        for (size_t i = 0; i < n; i++) {
            rows[i].round = fl_rng_below(&rng, 40);
            rows[i].up_wire = (double)fl_rng_below(&rng, 100000);
            rows[i].down_wire = (double)fl_rng_below(&rng, 100000);
            rows[i].test_acc = fl_rng_below(&rng, 4) == 0
                                   ? NAN : fl_rng_uniform(&rng);
            up += rows[i].up_wire;
            down += rows[i].down_wire;
            acc_rows += isfinite(rows[i].test_acc);
            devs[i] = (struct coord_plot_dev){
                .round = rows[i].round,
                .device = names[fl_rng_below(&rng, FL_ARRAY_LEN(names))],
                .status = (enum coord_dev_status)fl_rng_below(&rng, 4),
                .up_bytes = (double)fl_rng_below(&rng, 3) * 100,
                .upload_ms = NAN,
            };
            sum_up += devs[i].up_bytes > 0;
        }
        const size_t m = coord_plot_bytes_per_round(rows, n, rb);
        double up2 = 0, down2 = 0;
        uint64_t attempts = 0;
        for (size_t i = 0; i < m; i++) {
            if (i > 0)
                assert_true(rb[i].round > rb[i - 1].round);
            up2 += rb[i].up_wire;
            down2 += rb[i].down_wire;
            attempts += rb[i].attempts;
        }
        assert_true(up2 == up && down2 == down);
        assert_int_equal(attempts, n);
        const size_t k = coord_plot_acc_curve(rows, n, pts);
        assert_int_equal(k, acc_rows);
        for (size_t i = 0; i < k; i++) {
            assert_true(pts[i].cum_up_wire >= last);
            assert_true(pts[i].cum_up_wire <= up);
            last = pts[i].cum_up_wire;
        }
        assert_int_equal(coord_plot_dev_stats(devs, n, &st, &n_st), FL_OK);
        size_t sum_uploads = 0;
        for (size_t i = 0; i < n_st; i++) {
            if (i > 0)
                assert_true(coord_plot_name_cmp(st[i - 1].device,
                                                st[i].device) < 0);
            sum_rows += st[i].rows;
            sum_uploads += st[i].uploads;
        }
        assert_int_equal(sum_rows, n);
        assert_int_equal(sum_uploads, sum_up);
        fl_free(st);
    }
}

/* Every allocation of the reader and the aggregation may fail: the result
 * is FL_ERR_NOMEM and nothing leaks (ASan checks the leaks). */
static void test_alloc_failures(void **state)
{
    static const char text[] = "round,device,status,up_bytes,down_bytes,"
                               "upload_ms\n1,w1,reported,10,20,3.5\n"
                               "1,w2,dropped,0,20,\n";
    (void)state;
    for (long fail_at = 0;; fail_at++) {
        struct coord_plot_table *t = NULL;
        struct coord_plot_dev *d = NULL;
        struct coord_plot_dev_stat *st = NULL;
        size_t n = 0, n_st = 0;
        enum fl_err rc;
        fl_alloc_fail_after(fail_at);
        rc = coord_plot_table_parse("t.csv", text, strlen(text), &t, NULL,
                                    0);
        if (rc == FL_OK)
            rc = coord_plot_devs_from_table(t, &d, &n, NULL, 0);
        if (rc == FL_OK)
            rc = coord_plot_dev_stats(d, n, &st, &n_st);
        fl_alloc_fail_reset();
        fl_free(st);
        fl_free(d);
        coord_plot_table_destroy(&t);
        if (rc == FL_OK) {
            assert_true(fail_at >= 5); /* it did allocate several times */
            break;
        }
        assert_int_equal(rc, FL_ERR_NOMEM);
        assert_true(fail_at < 100);
    }
}

/* --------------------------------------------------------- charts */

static void test_chart_files(void **state)
{
    char *dir = make_tmpdir();
    char *rep = make_tmpdir();
    char text[2048], err[ERR_CAP] = "", script[64] = "";
    struct coord_plot_run *run = NULL;
    struct coord_plot_dev_stat *st = NULL;
    size_t n_st = 0;
    (void)state;
    snprintf(text, sizeof(text),
             "%s\n"
             "2,1,2,2,2,0,0,0,300,8000,0,9000,8000,26.6,0.01,fp16,zstd:1,"
             "1,1,1,0.6,1\n"
             "1,1,2,2,0,2,0,0,0,0,0,9000,8000,,0.01,fp16,zstd:1,1,1,1,,\n"
             "1,2,2,2,2,0,0,0,200,8000,0,9000,8000,40.0,0.01,fp16,zstd:1,"
             "1,1,1,0.5,1\n", coord_rounds_csv_header);
    write_file(rep, "rounds.csv", text);
    snprintf(text, sizeof(text),
             "%s\n1,w2,reported,1000,4500,100,400,0.01,fp16,zstd,5,1,3.500,"
             "0.9,2,,3,40000\n1,\"odd\" name,reported,1000,4500,100,400,"
             "0.01,fp16,zstd,5,1,4.500,0.9,2,,3,40000\n",
             coord_devices_csv_header);
    write_file(rep, "devices.csv", text);
    assert_int_equal(coord_plot_run_load(rep, &run, err, sizeof(err)),
                     FL_OK);
    const struct coord_plot_opts o = {dir, COORD_PLOT_SVG, true};

    assert_int_equal(coord_plot_chart_bytes(&o, run, script, sizeof(script),
                                            err, sizeof(err)), FL_OK);
    assert_string_equal(script, "bytes.gp");
    char *dat = read_text(dir, "bytes.dat");
    /* round 1: both attempts summed; round 2 after it */
    assert_non_null(strstr(dat, "\n1 200 8000 18000 16000 2\n"
                                "2 300 8000 9000 8000 1\n"));
    free(dat);
    char *gp = read_text(dir, "bytes.gp");
    assert_non_null(strstr(gp, "set output 'bytes.svg'"));
    assert_null(strstr(gp, "bytes.png"));
    assert_non_null(strstr(gp, "set logscale y 2"));
    free(gp);

    const struct coord_plot_run *const runs[] = {run};
    assert_int_equal(coord_plot_chart_accuracy(&o, runs, 1, script,
                                               sizeof(script), err,
                                               sizeof(err)), FL_OK);
    dat = read_text(dir, "accuracy-1.dat");
    /* file order: 300 after round 2, then 300 + 0 + 200 after round 1 */
    assert_non_null(strstr(dat, "\n2 300 8000 0.6\n1 500 16000 0.5\n"));
    free(dat);

    assert_int_equal(coord_plot_dev_stats(run->devs, run->n_devs, &st,
                                          &n_st), FL_OK);
    assert_int_equal(coord_plot_chart_devices(&o, run, st, n_st, script,
                                              sizeof(script), err,
                                              sizeof(err)), FL_OK);
    dat = read_text(dir, "devices.dat");
    /* quotes in a device name cannot break the data file; the last two
     * columns rank the devices by mean size (a tie: by name) and time */
    assert_non_null(strstr(dat, "\n0 \"_odd_ name\" 1 1 0 0 0 1 4500 4.5 "
                                "4.5 4.5 0 1\n1 \"w2\" 1 1 0 0 0 1 4500 3.5 "
                                "3.5 3.5 1 0\n"));
    free(dat);
    fl_free(st);
    coord_plot_run_destroy(&run);
    remove_dir(dir);
    remove_dir(rep);
}

static void test_chart_nothing_to_plot(void **state)
{
    char *dir = make_tmpdir();
    char err[ERR_CAP] = "", script[64] = "";
    struct coord_plot_round rows[1] = {{.round = 1, .test_acc = NAN}};
    struct coord_plot_run run = {
        .dir = (char[]){"empty-run"}, .name = (char[]){"empty-run"},
        .rounds = rows, .n_rounds = 1,
    };
    const struct coord_plot_run *const runs[] = {&run};
    const struct coord_plot_opts o = {dir, COORD_PLOT_SVG, true};
    (void)state;
    assert_int_equal(coord_plot_chart_bytes(&o, &run, script, sizeof(script),
                                            err, sizeof(err)),
                     FL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "no bytes"));
    assert_int_equal(coord_plot_chart_accuracy(&o, runs, 1, script,
                                               sizeof(script), err,
                                               sizeof(err)),
                     FL_ERR_NOT_FOUND);
    assert_int_equal(coord_plot_chart_devices(&o, &run, NULL, 0, script,
                                              sizeof(script), err,
                                              sizeof(err)),
                     FL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "no devices.csv"));
    remove_dir(dir);
}

static void test_sweep(void **state)
{
    char *dir = make_tmpdir();
    char err[ERR_CAP] = "", script[64] = "";
    struct coord_plot_sweep sw;
    const struct coord_plot_opts o = {dir, COORD_PLOT_PNG, false};
    static const char header[] =
        "devices,rounds,up_bytes_per_round,up_bytes_per_device,"
        "down_bytes_per_round,down_bytes_per_device,coord_cpu_s_per_round,"
        "coord_cpu_ms_per_device,agg_s_per_round,round_wall_s,final_acc\n";
    char text[1024];
    (void)state;
    assert_int_equal(coord_plot_sweep_load(dir, &sw, err, sizeof(err)),
                     FL_ERR_NOT_FOUND);
    assert_null(sw.data);
    snprintf(text, sizeof(text), "%s10,3,1000.5,100.05,5000,500,0.01,1,"
             "0.001,0.5,0.8\n100,3,10000,100,50000,500,0.1,1,0.01,0.9,0.8\n",
             header);
    write_file(dir, "sweep.csv", text);
    write_file(dir, "sweep-fit.csv", "metric,a,b,r2,p,r2_loglog\n"
               "up_bytes_per_round,0.5,100,0.999,1.0,0.998\n"
               "round_wall_s,0.45,0.0045,1,nan,nan\n");
    assert_int_equal(coord_plot_sweep_load(dir, &sw, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(coord_plot_chart_sweep(&o, &sw, script, sizeof(script),
                                            err, sizeof(err)), FL_OK);
    assert_string_equal(script, "sweep.gp");
    char *dat = read_text(dir, "sweep.dat");
    assert_non_null(strstr(dat, "\n10 1000.5 100.05 5000 500 0.01 0.001 0.5"
                                "\n100 10000 100 50000 500 0.1 0.01 0.9\n"));
    free(dat);
    char *gp = read_text(dir, "sweep.gp");
    assert_non_null(strstr(gp, "set terminal png size"));
    assert_non_null(strstr(gp, "(0.5 + 100*x)"));
    assert_non_null(strstr(gp, "fit 0.5 + 100*N, R^2=0.999, ~N^1.00'"));
    assert_non_null(strstr(gp, "(0.45 + 0.0045*x)"));
    assert_non_null(strstr(gp, "fit 0.45 + 0.0045*N, R^2=1.000'")); /* p nan */
    free(gp);
    coord_plot_sweep_release(&sw);
    assert_null(sw.data);

    /* a sweep.csv without a needed column */
    write_file(dir, "sweep.csv", "devices,rounds\n10,3\n");
    assert_int_equal(coord_plot_sweep_load(dir, &sw, err, sizeof(err)),
                     FL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "no column 'up_bytes_per_round'"));
    remove_dir(dir);
}

/* ------------------------------------------------------------ gnuplot */

static void test_gnuplot_missing(void **state)
{
    char *dir = make_tmpdir();
    char err[ERR_CAP] = "";
    const char *old = getenv("PATH");
    char *saved = old != NULL ? strdup(old) : NULL;
    bool svg = true, cairo = true, png = true;
    (void)state;
    assert_int_equal(setenv("PATH", dir, 1), 0); /* no gnuplot in there */
    const enum fl_err rc1 = coord_plot_gnuplot_probe(&svg, &cairo, &png, err,
                                                     sizeof(err));
    const bool said_pkg = strstr(err, "gnuplot-nox") != NULL;
    const enum fl_err rc2 = coord_plot_gnuplot_run(dir, "x.gp", err,
                                                   sizeof(err));
    if (saved != NULL)
        setenv("PATH", saved, 1);
    free(saved);
    assert_int_equal(rc1, FL_ERR_NOT_FOUND);
    assert_true(said_pkg);
    assert_false(svg || cairo || png);
    assert_int_equal(rc2, FL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "cannot run 'gnuplot'"));
    assert_non_null(strstr(err, "apt-get install gnuplot-nox"));
    remove_dir(dir);
}

static bool have_gnuplot(void)
{
    bool a, b, c;
    return coord_plot_gnuplot_probe(&a, &b, &c, NULL, 0) == FL_OK;
}

static void test_gnuplot_errors_reported(void **state)
{
    char *dir;
    char err[ERR_CAP] = "";
    bool svg = false, cairo = false, png = false;
    (void)state;
    if (!have_gnuplot())
        skip();
    assert_int_equal(coord_plot_gnuplot_probe(&svg, &cairo, &png, err,
                                              sizeof(err)), FL_OK);
    assert_true(svg);
    assert_true(cairo || png);
    dir = make_tmpdir();
    write_file(dir, "bad.gp", "set terminal svg\nset output 'bad.svg'\n"
               "plot no_such_function(x)\n");
    assert_int_equal(coord_plot_gnuplot_run(dir, "bad.gp", err, sizeof(err)),
                     FL_ERR_IO);
    assert_non_null(strstr(err, "gnuplot failed on"));
    assert_non_null(strstr(err, "\"bad.gp\" line 3"));
    write_file(dir, "good.gp", "set terminal svg\nset output 'good.svg'\n"
               "plot x\n");
    assert_int_equal(coord_plot_gnuplot_run(dir, "good.gp", err,
                                            sizeof(err)), FL_OK);
    char *svg_text = read_text(dir, "good.svg");
    assert_non_null(strstr(svg_text, "<svg"));
    free(svg_text);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_good),
        cmocka_unit_test(test_table_bad_shapes),
        cmocka_unit_test(test_table_numbers),
        cmocka_unit_test(test_table_files),
        cmocka_unit_test(test_missing_columns),
        cmocka_unit_test(test_rounds_from_table),
        cmocka_unit_test(test_rounds_bad_values),
        cmocka_unit_test(test_devs_bad_status),
        cmocka_unit_test(test_run_from_coord_report),
        cmocka_unit_test(test_run_load_errors),
        cmocka_unit_test(test_bytes_per_round),
        cmocka_unit_test(test_acc_curve),
        cmocka_unit_test(test_name_cmp),
        cmocka_unit_test(test_dev_stats),
        cmocka_unit_test(test_derived_properties),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_chart_files),
        cmocka_unit_test(test_chart_nothing_to_plot),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_gnuplot_missing),
        cmocka_unit_test(test_gnuplot_errors_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
