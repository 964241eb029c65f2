/* Unit tests for common/: errors, RNG, strict parsing, atomic files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_log.h"
#include "common/fl_util.h"

static void test_strerror_covers_every_code(void **state)
{
    (void)state;
    assert_string_equal(fl_strerror(FL_OK), "success");
    assert_string_equal(fl_err_name(FL_ERR_CHECKSUM), "checksum");
    assert_string_equal(fl_strerror((enum fl_err)9999), "unknown error");
    assert_string_equal(fl_strerror(FL_ERR__MAX), "unknown error");
    /* every named code has text and a name */
    for (int e = 0; e < FL_ERR__MAX; e++) {
        const char *t = fl_strerror((enum fl_err)e);
        const char *n = fl_err_name((enum fl_err)e);
        assert_non_null(t);
        assert_non_null(n);
        if (strcmp(n, "unknown") != 0)
            assert_string_not_equal(t, "unknown error");
    }
}

static void test_rng_deterministic(void **state)
{
    (void)state;
    struct fl_rng a, b;
    fl_rng_seed(&a, 42);
    fl_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(fl_rng_next(&a), fl_rng_next(&b));
    fl_rng_seed(&b, 43);
    assert_int_not_equal(fl_rng_next(&a), fl_rng_next(&b));
}

static void test_rng_below_in_range_and_uniformish(void **state)
{
    (void)state;
    struct fl_rng r;
    unsigned counts[7] = {0};
    fl_rng_seed(&r, 1);
    for (int i = 0; i < 70000; i++) {
        const uint64_t x = fl_rng_below(&r, 7);
        assert_true(x < 7);
        counts[x]++;
    }
    for (int i = 0; i < 7; i++)
        assert_in_range(counts[i], 9500, 10500);
}

static void test_rng_gamma_mean(void **state)
{
    (void)state;
    struct fl_rng r;
    fl_rng_seed(&r, 7);
    const double shapes[] = {0.3, 1.0, 4.5};
    for (size_t s = 0; s < FL_ARRAY_LEN(shapes); s++) {
        double sum = 0;
        for (int i = 0; i < 40000; i++) {
            const double g = fl_rng_gamma(&r, shapes[s]);
            assert_true(g >= 0.0);
            sum += g;
        }
        const double mean = sum / 40000;
        assert_true(mean > shapes[s] * 0.95 && mean < shapes[s] * 1.05);
    }
}

static void test_parse_u64_strict(void **state)
{
    (void)state;
    uint64_t v = 0;
    const struct {
        const char *s;
        enum fl_err rc;
        uint64_t v;
    } cases[] = {
        {"0", FL_OK, 0},          {"17", FL_OK, 17},
        {"100", FL_ERR_INVALID_ARG, 0}, {"", FL_ERR_FORMAT, 0},
        {"-1", FL_ERR_FORMAT, 0}, {"12x", FL_ERR_FORMAT, 0},
        {" 1", FL_ERR_FORMAT, 0}, {"99999999999999999999999", FL_ERR_INVALID_ARG, 0},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        v = 12345;
        assert_int_equal(fl_parse_u64(cases[i].s, 0, 99, &v), cases[i].rc);
        if (cases[i].rc == FL_OK)
            assert_int_equal(v, cases[i].v);
    }
}

static void test_parse_double_strict(void **state)
{
    (void)state;
    double d = 0;
    assert_int_equal(fl_parse_double("0.25", 0, 1, &d), FL_OK);
    assert_true(d == 0.25);
    assert_int_equal(fl_parse_double("1.5", 0, 1, &d), FL_ERR_INVALID_ARG);
    assert_int_equal(fl_parse_double("nan", 0, 1, &d), FL_ERR_INVALID_ARG);
    assert_int_equal(fl_parse_double("0.5s", 0, 1, &d), FL_ERR_FORMAT);
    assert_int_equal(fl_parse_double("", 0, 1, &d), FL_ERR_FORMAT);
}

static void test_atomic_write_and_read(void **state)
{
    (void)state;
    char dir[] = "/tmp/fl_test_XXXXXX";
    char path[256];
    void *data = NULL;
    size_t len = 0;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/a/b/file", dir);
    char sub[256];
    snprintf(sub, sizeof(sub), "%s/a/b", dir);
    assert_int_equal(fl_mkdir_p(sub, 0), FL_OK);
    assert_int_equal(fl_file_write_atomic(path, "hello", 5), FL_OK);
    assert_int_equal(fl_file_write_atomic(path, "world!", 6), FL_OK);
    assert_int_equal(fl_file_read(path, 100, &data, &len), FL_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(data, "world!", 6);
    free(data);
    assert_int_equal(fl_file_read(path, 3, &data, &len), FL_ERR_TOO_LARGE);
    snprintf(sub, sizeof(sub), "%s/missing", dir);
    assert_int_equal(fl_file_read(sub, 3, &data, &len), FL_ERR_NOT_FOUND);
    unlink(path);
    snprintf(sub, sizeof(sub), "rm -rf '%s'", dir);
    assert_int_equal(system(sub), 0);
}

static void test_alloc_fail_injection(void **state)
{
    (void)state;
    fl_alloc_fail_after(2);
    void *a = fl_malloc(8), *b = fl_malloc(8), *c = fl_malloc(8);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c);
    fl_alloc_fail_reset();
    c = fl_malloc(8);
    assert_non_null(c);
    fl_free(a);
    fl_free(b);
    fl_free(c);
}

/* fl_calloc_huge: zeroed, aligned to a huge page from FL_HUGE_PAGE bytes
 * on, an ordinary calloc below, NULL on overflow, and it takes part in
 * failure injection like every other allocation. */
static void test_calloc_huge(void **state)
{
    (void)state;
    const size_t n = FL_HUGE_PAGE + 12345; /* floats: about 8 MiB */
    float *big = fl_calloc_huge(n, sizeof(float));
    assert_non_null(big);
    assert_true((uintptr_t)big % FL_HUGE_PAGE == 0);
    for (size_t i = 0; i < n; i += 4093)
        assert_true(big[i] == 0.0f);
    assert_true(big[n - 1] == 0.0f);
    big[n - 1] = 1.0f; /* the whole array is writable */
    fl_free(big);

    uint8_t *small = fl_calloc_huge(100, 1);
    assert_non_null(small);
    assert_int_equal(small[99], 0);
    fl_free(small);

    assert_null(fl_calloc_huge(SIZE_MAX / 2, 4));
    assert_null(fl_calloc_huge(SIZE_MAX - 1, 1));

    fl_alloc_fail_after(0);
    assert_null(fl_calloc_huge(n, sizeof(float)));
    assert_null(fl_calloc_huge(100, 1));
    fl_alloc_fail_reset();
}

static void test_log_level_parse(void **state)
{
    (void)state;
    assert_int_equal(fl_log_level_parse("debug"), FL_LOG_DEBUG);
    assert_int_equal(fl_log_level_parse("warn"), FL_LOG_WARN);
    assert_int_equal(fl_log_level_parse("off"), FL_LOG_OFF);
    assert_int_equal(fl_log_level_parse("loud"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_covers_every_code),
        cmocka_unit_test(test_rng_deterministic),
        cmocka_unit_test(test_rng_below_in_range_and_uniformish),
        cmocka_unit_test(test_rng_gamma_mean),
        cmocka_unit_test(test_parse_u64_strict),
        cmocka_unit_test(test_parse_double_strict),
        cmocka_unit_test(test_atomic_write_and_read),
        cmocka_unit_test(test_alloc_fail_injection),
        cmocka_unit_test(test_calloc_huge),
        cmocka_unit_test(test_log_level_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
