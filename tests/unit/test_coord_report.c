/*
 * Unit tests for coordinator/coord_report: rows appended with one CSV
 * header, every JSON line valid (checked with python3 when present, and
 * with a small structural check always), values that round-trip, the
 * progress line and the summary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fl_err.h"
#include "common/fl_util.h"
#include "coordinator/coord_report.h"

#define MAX_LINES 64
#define MAX_FIELDS 64

struct text {
    char *data;
    char *lines[MAX_LINES];
    size_t nlines;
};

static void text_read(const char *dir, const char *name, struct text *t)
{
    char path[512];
    void *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(fl_file_read(path, 1 << 20, &data, &len), FL_OK);
    t->data = data;
    t->nlines = 0;
    for (char *p = t->data; *p != '\0';) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl); /* every line is terminated */
        *nl = '\0';
        assert_true(t->nlines < MAX_LINES);
        t->lines[t->nlines++] = p;
        p = nl + 1;
    }
}

static size_t split_csv(char *line, char **fields)
{
    size_t n = 0;
    fields[n++] = line;
    for (char *p = line; *p != '\0'; p++) {
        if (*p == ',') {
            *p = '\0';
            assert_true(n < MAX_FIELDS);
            fields[n++] = p + 1;
        }
    }
    return n;
}

static int column(const char *header, const char *name)
{
    char copy[1024];
    char *f[MAX_FIELDS];
    snprintf(copy, sizeof(copy), "%s", header);
    const size_t n = split_csv(copy, f);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(f[i], name) == 0)
            return (int)i;
    }
    fail_msg("no column '%s'", name);
    return -1;
}

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/test_coord_report.XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void remove_dir(const char *dir)
{
    static const char *const names[] = {"rounds.csv", "rounds.jsonl",
                                        "devices.csv", "summary.txt",
                                        "initial_acc"};
    char path[512];
    for (size_t i = 0; i < FL_ARRAY_LEN(names); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static struct coord_round_row sample_row(uint64_t round, bool committed)
{
    struct coord_round_row r;
    memset(&r, 0, sizeof(r));
    r.round = round;
    r.attempt = committed ? 1 : 2;
    r.committed = committed;
    r.joined = 9;
    r.selected = 8;
    r.reported = committed ? 7 : 2;
    r.dropped = committed ? 1 : 6;
    r.rejected = 0;
    r.late = (uint32_t)round % 3;
    r.up_wire_bytes = 12345 * round;
    r.up_dense_bytes = 940000 * round;
    r.other_rx_bytes = 77 + round;
    r.down_wire_bytes = 1000000 + round;
    r.down_dense_bytes = 8 * 940000;
    r.density = 0.01;
    r.values = CMP_VALUE_FP16;
    r.codec = CMP_CODEC_ZSTD;
    r.level = 3;
    r.wall_s = 1.5 + (double)round;
    r.cpu_s = 0.25;
    r.agg_s = 0.125;
    r.test_acc = committed ? 0.5 + 0.01 * (double)round : NAN;
    r.test_loss = committed ? 1.0 / (double)round : NAN;
    if (!committed) {
        r.rejects[FL_ERR_CHECKSUM] = 2;
        r.rejects[FL_ERR_LATE] = 1;
    }
    return r;
}

/* A small structural check of one JSON object line: balanced braces
 * outside strings, keys quoted, no NaN/Inf literals. */
static void check_json_line(const char *s)
{
    int depth = 0;
    bool in_str = false;
    assert_true(s[0] == '{');
    for (const char *p = s; *p != '\0'; p++) {
        if (in_str) {
            if (*p == '\\')
                p++;
            else if (*p == '"')
                in_str = false;
            continue;
        }
        if (*p == '"')
            in_str = true;
        else if (*p == '{')
            depth++;
        else if (*p == '}')
            depth--;
        assert_true(depth >= 0);
    }
    assert_int_equal(depth, 0);
    assert_false(in_str);
    assert_null(strstr(s, "nan"));
    assert_null(strstr(s, "inf"));
}

static bool have_python(void)
{
    return system("python3 -c 'import json' >/dev/null 2>&1") == 0;
}

static void test_rows_appended_header_once(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    struct coord_report *r = NULL;
    char err[256];
    struct text t;

    /* first run: rounds 1 (committed), 2 (abandoned), 2 (committed) */
    assert_int_equal(coord_report_open(dir, &r, err, sizeof(err)), FL_OK);
    struct coord_round_row rows[4] = {sample_row(1, true),
                                      sample_row(2, false),
                                      sample_row(2, true), sample_row(3, true)};
    for (int i = 0; i < 3; i++)
        assert_int_equal(coord_report_round(r, &rows[i]), FL_OK);
    /* the row is on disk as soon as it was reported, before close */
    text_read(dir, "rounds.csv", &t);
    assert_int_equal(t.nlines, 4);
    free(t.data);
    coord_report_close(&r);
    assert_null(r);

    /* second run into the same directory appends, no second header */
    assert_int_equal(coord_report_open(dir, &r, err, sizeof(err)), FL_OK);
    assert_int_equal(coord_report_round(r, &rows[3]), FL_OK);
    coord_report_close(&r);

    text_read(dir, "rounds.csv", &t);
    assert_int_equal(t.nlines, 5);
    assert_string_equal(t.lines[0], coord_rounds_csv_header);
    for (size_t i = 1; i < t.nlines; i++)
        assert_null(strstr(t.lines[i], "round,"));
    const int c_round = column(t.lines[0], "round");
    const int c_attempt = column(t.lines[0], "attempt");
    const int c_up = column(t.lines[0], "up_wire_bytes");
    const int c_dense = column(t.lines[0], "up_dense_bytes");
    const int c_ratio = column(t.lines[0], "up_ratio");
    const int c_codec = column(t.lines[0], "codec");
    const int c_values = column(t.lines[0], "values");
    const int c_wall = column(t.lines[0], "wall_s");
    const int c_acc = column(t.lines[0], "test_acc");
    const int c_loss = column(t.lines[0], "test_loss");
    const int c_late = column(t.lines[0], "late");
    /* the benchmark scripts read test_acc as the second-to-last column */
    char hdr[1024];
    char *hf[MAX_FIELDS];
    snprintf(hdr, sizeof(hdr), "%s", t.lines[0]);
    const size_t ncols = split_csv(hdr, hf);
    assert_int_equal(c_acc, (int)ncols - 2);
    for (size_t i = 1; i < t.nlines; i++) {
        char *f[MAX_FIELDS];
        const struct coord_round_row *want = &rows[i - 1];
        assert_int_equal(split_csv(t.lines[i], f), ncols);
        assert_int_equal(strtoull(f[c_round], NULL, 10), want->round);
        assert_int_equal(strtoul(f[c_attempt], NULL, 10), want->attempt);
        assert_int_equal(strtoull(f[c_up], NULL, 10), want->up_wire_bytes);
        assert_int_equal(strtoull(f[c_dense], NULL, 10),
                         want->up_dense_bytes);
        assert_int_equal(strtoul(f[c_late], NULL, 10), want->late);
        const double ratio = (double)want->up_dense_bytes /
                             (double)want->up_wire_bytes;
        assert_true(fabs(strtod(f[c_ratio], NULL) - ratio) < 1e-4);
        assert_string_equal(f[c_codec], "zstd:3");
        assert_string_equal(f[c_values], "fp16");
        assert_true(fabs(strtod(f[c_wall], NULL) - want->wall_s) < 1e-6);
        if (want->committed) {
            assert_true(fabs(strtod(f[c_acc], NULL) - want->test_acc) < 1e-6);
            assert_true(fabs(strtod(f[c_loss], NULL) - want->test_loss) <
                        1e-6);
        } else {
            assert_string_equal(f[c_acc], "");
            assert_string_equal(f[c_loss], "");
        }
    }
    free(t.data);

    text_read(dir, "rounds.jsonl", &t);
    assert_int_equal(t.nlines, 4);
    for (size_t i = 0; i < t.nlines; i++)
        check_json_line(t.lines[i]);
    assert_non_null(strstr(t.lines[1], "\"test_acc\":null"));
    assert_non_null(
        strstr(t.lines[1], "\"rejects\":{\"checksum\":2,\"late\":1}"));
    assert_non_null(strstr(t.lines[0], "\"rejects\":{}"));
    free(t.data);

    if (have_python()) {
        char cmd[1024];
        /* every line parses; keys are the CSV columns, "rejects", then
         * the JSONL-only counters; values agree with the CSV */
        snprintf(cmd, sizeof(cmd),
                 "python3 - '%s' <<'EOF'\n"
                 "import csv, json, sys\n"
                 "d = sys.argv[1]\n"
                 "js = [json.loads(l) for l in open(d + '/rounds.jsonl')]\n"
                 "rows = list(csv.DictReader(open(d + '/rounds.csv')))\n"
                 "assert len(js) == len(rows) == 4, (len(js), len(rows))\n"
                 "for j, r in zip(js, rows):\n"
                 "    n = len(r)\n"
                 "    assert list(j)[:n] == list(r), (list(j), list(r))\n"
                 "    assert list(j)[n] == 'rejects'\n"
                 "    for k, v in r.items():\n"
                 "        if v == '': assert j[k] is None, k\n"
                 "        elif isinstance(j[k], str): assert j[k] == v, k\n"
                 "        else: assert abs(float(v) - j[k]) < 1e-9, k\n"
                 "assert js[1]['rejects'] == {'checksum': 2, 'late': 1}\n"
                 "EOF",
                 dir);
        assert_int_equal(system(cmd), 0);
    }
    remove_dir(dir);
    free(dir);
}

static void test_device_rows(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    struct coord_report *r = NULL;
    struct text t;
    assert_int_equal(coord_report_open(dir, &r, NULL, 0), FL_OK);
    const struct coord_device_row rows[] = {
        {.round = 4, .attempt = 1, .device = "w-1", .status =
         COORD_DEV_REPORTED, .samples = 3750, .up_bytes = 2345,
         .down_bytes = 99999, .has_update = true, .k = 2357,
         .density = 0.01, .values = CMP_VALUE_BF16, .codec = CMP_CODEC_LZ4,
         .train_ms = 812, .encode_ms = 12, .upload_ms = 3.5, .loss = 0.75,
         .budget = 4096, .load_ms = 7, .peak_rss_kb = 44616},
        {.round = 4, .attempt = 1, .device = "w 5", .status =
         COORD_DEV_REPORTED, .samples = 1, .up_bytes = 10, .has_update = true,
         .k = 1, .density = 0.5, .values = CMP_VALUE_FP32,
         .codec = CMP_CODEC_NONE, .loss = NAN},
        {.round = 4, .attempt = 1, .device = "w.2", .status =
         COORD_DEV_DROPPED, .down_bytes = 1234, .loss = NAN},
        {.round = 4, .attempt = 1, .device = "w:3", .status =
         COORD_DEV_REJECTED, .samples = 10, .up_bytes = 50, .loss = NAN},
        {.round = 3, .device = "w_4", .status = COORD_DEV_LATE,
         .samples = 5, .up_bytes = 60, .loss = NAN},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(rows); i++)
        assert_int_equal(coord_report_device(r, &rows[i]), FL_OK);
    assert_int_equal(coord_report_sync(r), FL_OK);
    coord_report_close(&r);

    text_read(dir, "devices.csv", &t);
    assert_int_equal(t.nlines, 6);
    assert_string_equal(t.lines[0], coord_devices_csv_header);
    /* the worker's load time on reported rows; its peak RSS when sent */
    static const char *const want[] = {
        "4,w-1,reported,3750,2345,99999,2357,0.01,bf16,lz4,812,12,3.500,"
        "0.750000,1,4096,7,44616",
        "4,w 5,reported,1,10,0,1,0.5,fp32,none,0,0,0.000,,1,,0,",
        "4,w.2,dropped,,0,1234,,,,,,,,,1,,,",
        "4,w:3,rejected,10,50,0,,,,,,,,,1,,,",
        "3,w_4,late,5,60,0,,,,,,,,,,,,",
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(want); i++)
        assert_string_equal(t.lines[i + 1], want[i]);
    free(t.data);
    remove_dir(dir);
    free(dir);
}

static void test_no_directory_writes_nothing(void **state)
{
    (void)state;
    struct coord_report *r = NULL;
    char err[128];
    assert_int_equal(coord_report_open(NULL, &r, err, sizeof(err)), FL_OK);
    struct coord_round_row row = sample_row(1, true);
    assert_int_equal(coord_report_round(r, &row), FL_OK);
    const struct coord_device_row d = {.round = 1, .device = "x"};
    assert_int_equal(coord_report_device(r, &d), FL_OK);
    assert_int_equal(coord_report_initial(r, 0.1), FL_OK);
    struct coord_summary s = {.outcome = "completed", .initial_acc = NAN,
                              .final_acc = NAN};
    assert_int_equal(coord_report_summary(r, &s, NULL), FL_OK);
    coord_report_close(&r);

    /* a directory that cannot be created is an error with a message */
    assert_int_equal(coord_report_open("/proc/no/such/dir", &r, err,
                                       sizeof(err)),
                     FL_ERR_IO);
    assert_null(r);
    assert_non_null(strstr(err, "/proc/no/such/dir"));
}

static void test_progress_line(void **state)
{
    (void)state;
    char line[256];
    struct coord_round_row row;
    memset(&row, 0, sizeof(row));
    row.round = 3;
    row.attempt = 1;
    row.committed = true;
    row.selected = 8;
    row.reported = 8;
    row.up_wire_bytes = 126362;            /* 123.4 KiB */
    row.up_dense_bytes = 10766042;         /* x85.2 */
    row.down_wire_bytes = 1258291;         /* 1.2 MiB */
    row.test_acc = 0.7812;
    row.test_loss = 0.6021;
    row.wall_s = 4.21;
    coord_report_progress(&row, 20, line, sizeof(line));
    assert_string_equal(line, "round 3/20: 8/8 reported, up 123.4 KiB "
                              "(x85.2 vs dense), down 1.2 MiB, acc 0.7812, "
                              "loss 0.6021, 4.21 s");
    row.committed = false;
    row.attempt = 2;
    row.reported = 1;
    row.dropped = 6;
    row.rejected = 1;
    row.test_acc = NAN;
    coord_report_progress(&row, 20, line, sizeof(line));
    assert_string_equal(line, "round 3/20 attempt 2 abandoned: 1/8 reported, "
                              "1 rejected, 6 dropped, up 123.4 KiB (x85.2 vs "
                              "dense), down 1.2 MiB, 4.21 s");
    /* a tiny buffer truncates, never overflows */
    char small[16];
    coord_report_progress(&row, 20, small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void test_format_bytes(void **state)
{
    (void)state;
    static const struct {
        uint64_t in;
        const char *want;
    } cases[] = {
        {0, "0 B"},           {1023, "1023 B"},      {1024, "1.0 KiB"},
        {126362, "123.4 KiB"}, {1258291, "1.2 MiB"}, {5ULL << 30, "5.0 GiB"},
        {UINT64_MAX, "16777216.0 TiB"},
    };
    char buf[32];
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        coord_format_bytes(cases[i].in, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].want);
    }
    assert_string_equal(coord_dev_status_name(COORD_DEV_LATE), "late");
    assert_string_equal(coord_dev_status_name((enum coord_dev_status)9),
                        "unknown");
}

static void test_summary_and_initial_acc(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    struct coord_report *r = NULL;
    struct text t;
    char *printed = NULL;
    size_t plen = 0;
    assert_int_equal(coord_report_open(dir, &r, NULL, 0), FL_OK);
    assert_int_equal(coord_report_initial(r, 0.1234), FL_OK);
    const struct coord_summary s = {
        .rounds_done = 20, .rounds_total = 20, .attempts = 21,
        .up_wire_bytes = 1000, .up_dense_bytes = 85000,
        .down_wire_bytes = 2048, .down_dense_bytes = 4096,
        .updates_used = 160, .initial_acc = 0.1, .final_acc = 0.8412,
        .final_loss = 0.441, .wall_s = 84.2, .cpu_s = 12.3,
        .outcome = "completed"};
    FILE *mem = open_memstream(&printed, &plen);
    assert_non_null(mem);
    assert_int_equal(coord_report_summary(r, &s, mem), FL_OK);
    fclose(mem);
    coord_report_close(&r);

    text_read(dir, "summary.txt", &t);
    assert_true(t.nlines >= 10);
    /* the file holds exactly what was printed */
    char *joined = calloc(1, plen + 2);
    size_t at = 0;
    assert_non_null(joined);
    for (size_t i = 0; i < t.nlines; i++) {
        const size_t n = strlen(t.lines[i]);
        assert_true(at + n + 1 <= plen);
        memcpy(joined + at, t.lines[i], n);
        joined[at + n] = '\n';
        at += n + 1;
    }
    assert_string_equal(joined, printed);
    assert_non_null(strstr(printed, "fedcomp summary (completed)"));
    assert_non_null(strstr(printed, "x85.0"));
    assert_non_null(strstr(printed, "x2.0"));
    assert_non_null(strstr(printed, "0.8412"));
    assert_non_null(strstr(printed, "84.20"));
    free(joined);
    free(t.data);
    free(printed);

    text_read(dir, "initial_acc", &t);
    assert_int_equal(t.nlines, 1);
    assert_string_equal(t.lines[0], "0.123400");
    free(t.data);
    remove_dir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_appended_header_once),
        cmocka_unit_test(test_device_rows),
        cmocka_unit_test(test_no_directory_writes_nothing),
        cmocka_unit_test(test_progress_line),
        cmocka_unit_test(test_format_bytes),
        cmocka_unit_test(test_summary_and_initial_acc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
