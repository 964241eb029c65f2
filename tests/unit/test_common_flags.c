/*
 * test_common_flags.c - flag values and their usage messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_err.h"
#include "common/fl_flags.h"
#include "common/fl_util.h"

static void test_whole_numbers(void **state)
{
    static const struct {
        const char *s;
        enum fl_err rc;
        uint32_t v;
        const char *msg;
    } cases[] = {
        {"7", FL_OK, 7, ""},
        {"1", FL_OK, 1, ""},
        {"100", FL_OK, 100, ""},
        {"0", FL_ERR_INVALID_ARG, 0, "--n: '0' is not in [1, 100]"},
        {"101", FL_ERR_INVALID_ARG, 0, "--n: '101' is not in [1, 100]"},
        {"ten", FL_ERR_INVALID_ARG, 0, "--n: 'ten' is not a whole number"},
        {"3x", FL_ERR_INVALID_ARG, 0, "--n: '3x'"},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        char err[128] = "";
        uint32_t v = 12345;
        assert_int_equal(fl_flag_u32("n", cases[i].s, 1, 100, &v, err,
                                     sizeof(err)), cases[i].rc);
        assert_int_equal(v, cases[i].rc == FL_OK ? cases[i].v : 12345);
        assert_non_null(strstr(err, cases[i].msg));
    }
}

static void test_numbers_and_switches(void **state)
{
    char err[128] = "";
    double d = -1;
    bool b = false;
    (void)state;
    assert_int_equal(fl_flag_double("x", "0.5", 0, 1, true, &d, err,
                                    sizeof(err)), FL_OK);
    assert_true(d == 0.5);
    assert_int_equal(fl_flag_double("x", "0", 0, 1, true, &d, err,
                                    sizeof(err)), FL_ERR_INVALID_ARG);
    assert_string_equal(err, "--x: '0' is not in (0, 1]");
    assert_int_equal(fl_flag_double("x", "0", 0, 1, false, &d, err,
                                    sizeof(err)), FL_OK);
    assert_int_equal(fl_flag_double("x", "abc", 0, 1, false, &d, err,
                                    sizeof(err)), FL_ERR_INVALID_ARG);
    assert_string_equal(err, "--x: 'abc' is not a number");
    assert_int_equal(fl_flag_onoff("ef", "yes", &b, err, sizeof(err)),
                     FL_OK);
    assert_true(b);
    assert_int_equal(fl_flag_onoff("ef", "0", &b, err, sizeof(err)), FL_OK);
    assert_false(b);
    assert_int_equal(fl_flag_onoff("ef", "maybe", &b, NULL, 0),
                     FL_ERR_INVALID_ARG);
}

static void test_sizes(void **state)
{
    static const struct {
        const char *s;
        enum fl_err rc;
        size_t v;
    } cases[] = {
        {"4096", FL_OK, 4096},       {"4K", FL_OK, 4096},
        {"4k", FL_OK, 4096},         {"2M", FL_OK, 2u << 20},
        {"1G", FL_OK, 1u << 30},     {"1023", FL_ERR_INVALID_ARG, 0},
        {"2G", FL_ERR_INVALID_ARG, 0}, {"", FL_ERR_INVALID_ARG, 0},
        {"K", FL_ERR_INVALID_ARG, 0}, {"5X", FL_ERR_INVALID_ARG, 0},
        {"99999999999999999999G", FL_ERR_INVALID_ARG, 0},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        char err[128] = "";
        size_t v = 7;
        assert_int_equal(fl_flag_bytes("b", cases[i].s, 1024, 1u << 30, &v,
                                       err, sizeof(err)), cases[i].rc);
        assert_int_equal(v, cases[i].rc == FL_OK ? cases[i].v : 7);
        if (cases[i].rc != FL_OK)
            assert_non_null(strstr(err, "--b: '"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_numbers),
        cmocka_unit_test(test_numbers_and_switches),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
