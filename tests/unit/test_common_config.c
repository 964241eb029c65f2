/* Unit tests for common/fl_config: config files become leading arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fl_config.h"

static const struct option opts[] = {
    {"bind", required_argument, NULL, 'b'},
    {"rounds", required_argument, NULL, 'r'},
    {"insecure", no_argument, NULL, 'i'},
    {"config", required_argument, NULL, 'c'},
    {NULL, 0, NULL, 0},
};

static char path[64];

/* argv of heap copies (string literals are const under -Wwrite-strings) */
static char **mkargv(int n, const char *const *src)
{
    char **v = calloc((size_t)n + 1, sizeof(*v));
    assert_non_null(v);
    for (int i = 0; i < n; i++) {
        v[i] = strdup(src[i]);
        assert_non_null(v[i]);
    }
    return v;
}

static void freeargv(int n, char **v)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int write_file(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/fl_cfg_test_%ld.conf", (long)getpid());
    return 0;
}

static int remove_file(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static void put(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_file_then_flags_override(void **state)
{
    (void)state;
    put("# a comment\nbind = tcp://*:6000\n\nrounds=5  # trailing\n"
        "insecure = true\n");
    const char *src[] = {"prog", "--config", path, "--rounds", "9"};
    char **argv = mkargv(5, src);
    int n = 0;
    char **v = NULL;
    char err[256] = "";
    assert_int_equal(fl_config_expand(5, argv, opts, &n, &v, err, sizeof(err)),
                     FL_OK);
    const char *want[] = {"prog", "--bind=tcp://*:6000", "--rounds=5",
                          "--insecure", "--rounds", "9"};
    assert_int_equal(n, 6);
    for (int i = 0; i < n; i++)
        assert_string_equal(v[i], want[i]);
    assert_null(v[n]);
    fl_config_free_argv(n, v);
    freeargv(5, argv);
}

static void test_bool_false_is_dropped(void **state)
{
    (void)state;
    put("insecure = off\n");
    char arg[128];
    snprintf(arg, sizeof(arg), "--config=%s", path);
    const char *src[] = {"prog", arg};
    char **argv = mkargv(2, src);
    int n = 0;
    char **v = NULL;
    char err[256] = "";
    assert_int_equal(fl_config_expand(2, argv, opts, &n, &v, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(n, 1);
    fl_config_free_argv(n, v);
    freeargv(2, argv);
}

static void test_errors_name_the_line(void **state)
{
    (void)state;
    const struct {
        const char *text;
        const char *msg_part;
    } cases[] = {
        {"bind = a\nbnid = b\n", "line 2: unknown key 'bnid'"},
        {"rounds\n", "line 1: expected 'key = value'"},
        {"insecure = maybe\n", "line 1: 'insecure' takes true or false"},
        {"bind =\n", "line 1: 'bind' needs a value"},
        {"config = other.conf\n", "line 1: unknown key 'config'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        put(cases[i].text);
        const char *src[] = {"prog", "--config", path};
        char **argv = mkargv(3, src);
        int n = 0;
        char **v = NULL;
        char err[256] = "";
        assert_int_equal(
            fl_config_expand(3, argv, opts, &n, &v, err, sizeof(err)),
            FL_ERR_FORMAT);
        assert_non_null(strstr(err, cases[i].msg_part));
        assert_null(v);
        freeargv(3, argv);
    }
}

static void test_missing_file_and_argument(void **state)
{
    (void)state;
    int n = 0;
    char **v = NULL;
    char err[256] = "";
    const char *s1[] = {"prog", "--config", "/nonexistent/fedcomp.conf"};
    char **a1 = mkargv(3, s1);
    assert_int_equal(fl_config_expand(3, a1, opts, &n, &v, err, sizeof(err)),
                     FL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "/nonexistent/fedcomp.conf"));
    const char *s2[] = {"prog", "--config"};
    char **a2 = mkargv(2, s2);
    assert_int_equal(fl_config_expand(2, a2, opts, &n, &v, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    freeargv(3, a1);
    freeargv(2, a2);
}

static void test_no_config_copies_argv(void **state)
{
    (void)state;
    const char *src[] = {"prog", "--bind", "x"};
    char **argv = mkargv(3, src);
    int n = 0;
    char **v = NULL;
    char err[256] = "";
    assert_int_equal(fl_config_expand(3, argv, opts, &n, &v, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[2], "x");
    assert_ptr_not_equal(v[2], argv[2]);
    fl_config_free_argv(n, v);
    freeargv(3, argv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_file_then_flags_override,
                                        write_file, remove_file),
        cmocka_unit_test_setup_teardown(test_bool_false_is_dropped, write_file,
                                        remove_file),
        cmocka_unit_test_setup_teardown(test_errors_name_the_line, write_file,
                                        remove_file),
        cmocka_unit_test(test_missing_file_and_argument),
        cmocka_unit_test(test_no_config_copies_argv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
