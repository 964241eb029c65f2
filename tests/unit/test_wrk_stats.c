/*
 * Unit tests for worker/wrk_stats: the --stats-csv file (header once, rows
 * appended, millisecond values), the log phrase, and the memory readings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fl_util.h"
#include "worker/wrk_stats.h"

static char dir[] = "/tmp/test_wrk_stats.XXXXXX";
static char path[300];

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/stats.csv", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

static char *slurp(void)
{
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(fl_file_read(path, 1 << 20, &data, &len), FL_OK);
    char *s = realloc(data, len + 1);
    assert_non_null(s);
    s[len] = '\0';
    return s;
}

static void test_csv_rows(void **state)
{
    (void)state;
    FILE *f = NULL;
    const struct wrk_round_cost a = {3, 1500000, 2000000000ULL, 12345678,
                                     999, 5872, 0, 123456};
    const struct wrk_round_cost b = {4, 0, 1, 2, 3, 4000000, 977, 7};
    unlink(path);
    assert_int_equal(wrk_stats_open(path, &f), FL_OK);
    assert_non_null(f);
    assert_int_equal(wrk_stats_write(f, &a), FL_OK);
    wrk_stats_close(&f);
    assert_null(f);
    wrk_stats_close(&f); /* NULL is fine */
    wrk_stats_close(NULL);
    /* reopened: appended, no second header */
    assert_int_equal(wrk_stats_open(path, &f), FL_OK);
    assert_int_equal(wrk_stats_write(f, &b), FL_OK);
    wrk_stats_close(&f);
    char *s = slurp();
    assert_string_equal(s, WRK_STATS_HEADER "\n"
                           "3,1.500,2000.000,12.346,0.001,5872,0,123456\n"
                           "4,0.000,0.000,0.000,0.000,4000000,977,7\n");
    free(s);
}

static void test_open_fails(void **state)
{
    (void)state;
    FILE *f = (FILE *)1;
    char bad[400];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/x.csv", dir);
    assert_int_equal(wrk_stats_open(bad, &f), FL_ERR_IO);
    assert_null(f);
}

static void test_format_and_memory(void **state)
{
    (void)state;
    char line[256];
    const struct wrk_round_cost a = {1, 2500000, 10000000, 500000, 100000,
                                     70000, 3, 2048};
    wrk_stats_format(&a, line, sizeof(line));
    assert_string_equal(line, "load 2.500 ms, train 10.000 ms, encode "
                              "0.500 ms, send 0.100 ms, update 70000 bytes "
                              "in 3 chunks, peak RSS 2048 KiB");
    const uint64_t now = wrk_stats_rss_kb();
    const uint64_t peak = wrk_stats_peak_rss_kb();
    assert_true(now > 0);
    assert_true(peak > 0);
    /* touch 16 MiB: both readings see it */
    const size_t n = 16u << 20;
    char *p = malloc(n);
    assert_non_null(p);
    memset(p, 1, n);
    assert_true(wrk_stats_rss_kb() >= now + 12 * 1024);
    assert_true(wrk_stats_peak_rss_kb() >= now + 12 * 1024);
    assert_true(wrk_stats_peak_rss_kb() >= peak);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_rows),
        cmocka_unit_test(test_open_fails),
        cmocka_unit_test(test_format_and_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
