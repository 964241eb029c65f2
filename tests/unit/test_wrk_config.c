/*
 * Unit tests for worker/wrk_config: flag parsing (tables of accepted and
 * refused command lines), --help/--version, and the persistent device id.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fl_util.h"
#include "tests/unit/split_argv.h"
#include "worker/wrk_config.h"

#define MAXARGS 16

/* Split a command line on spaces into argv (no quoting needed here). */
static int split(const char *line, char *buf, size_t cap, char **argv)
{
    return ta_split("fedcomp-worker", line, buf, cap, argv, MAXARGS);
}

static enum fl_err parse_line(const char *line, struct wrk_config *cfg,
                              enum wrk_action *action, char *err,
                              size_t errlen)
{
    char buf[1024];
    char *argv[MAXARGS];
    const int argc = split(line, buf, sizeof(buf), argv);
    wrk_config_defaults(cfg);
    err[0] = '\0';
    return wrk_config_parse(cfg, argc, argv, action, err, errlen);
}

static void test_defaults(void **state)
{
    (void)state;
    struct wrk_config c;
    enum wrk_action a;
    char err[256];
    assert_int_equal(parse_line("", &c, &a, err, sizeof(err)), FL_OK);
    assert_int_equal(a, WRK_ACTION_RUN);
    assert_string_equal(c.connect, "tcp://127.0.0.1:5555");
    assert_string_equal(c.state_dir, "./fedcomp-worker-state");
    assert_string_equal(c.data_dir, "/usr/share/datasets/fashion-mnist");
    assert_string_equal(c.id, "");
    assert_int_equal(c.partition.kind, MDL_PARTITION_IID);
    assert_int_equal(c.partition.nshards, 1);
    assert_int_equal(c.partition.seed, 1);
    assert_int_equal(c.partition.min_shard, 1);
    assert_int_equal(c.shard, 0);
    assert_int_equal(c.train_limit, 0);
    assert_int_equal(c.log_level, FL_LOG_INFO);
    assert_int_equal(c.hello_timeout_s, 0);
    assert_false(c.overrides.has_density || c.overrides.has_codec ||
                 c.overrides.has_values || c.overrides.has_topk);
    assert_false(c.has_test_delay || c.has_test_exit);
}

static void test_accepted_lines(void **state)
{
    (void)state;
    struct wrk_config c;
    enum wrk_action a;
    char err[256];

    assert_int_equal(
        parse_line("--connect tcp://10.0.0.1:7000 --id dev.A_1:x-2 "
                   "--shard 3/8 --seed 42 --min-shard 10 --train-limit 8000",
                   &c, &a, err, sizeof(err)),
        FL_OK);
    assert_string_equal(c.connect, "tcp://10.0.0.1:7000");
    assert_string_equal(c.id, "dev.A_1:x-2");
    assert_int_equal(c.shard, 3);
    assert_int_equal(c.partition.nshards, 8);
    assert_int_equal(c.partition.seed, 42);
    assert_int_equal(c.partition.min_shard, 10);
    assert_int_equal(c.train_limit, 8000);

    assert_int_equal(parse_line("--partition=dirichlet:0.5 --shard=0/1 "
                                "--log-level debug --hello-timeout 30",
                                &c, &a, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(c.partition.kind, MDL_PARTITION_DIRICHLET);
    assert_true(c.partition.alpha == 0.5);
    assert_int_equal(c.log_level, FL_LOG_DEBUG);
    assert_int_equal(c.hello_timeout_s, 30);

    assert_int_equal(parse_line("--density 0.01 --topk sampled --values int8 "
                                "--codec zstd:7",
                                &c, &a, err, sizeof(err)),
                     FL_OK);
    assert_true(c.overrides.has_density && c.overrides.density == 0.01f);
    assert_true(c.overrides.has_topk &&
                c.overrides.topk == CMP_TOPK_SAMPLED);
    assert_true(c.overrides.has_values &&
                c.overrides.values == CMP_VALUE_INT8);
    assert_true(c.overrides.has_codec && c.overrides.codec == CMP_CODEC_ZSTD);
    assert_int_equal(c.overrides.level, 7);

    assert_int_equal(parse_line("--test-delay-update 2:1500 "
                                "--test-exit-at-round 4 --max-message 1048576",
                                &c, &a, err, sizeof(err)),
                     FL_OK);
    assert_true(c.has_test_delay);
    assert_int_equal(c.test_delay_round, 2);
    assert_int_equal(c.test_delay_ms, 1500);
    assert_true(c.has_test_exit);
    assert_int_equal(c.test_exit_round, 4);
    assert_int_equal(c.max_message, 1048576);
}

static void test_refused_lines(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *in_err;
    } cases[] = {
        {"--shard 4/4", "--shard"},
        {"--shard 1/0", "--shard"},
        {"--shard 1", "--shard"},
        {"--shard -1/4", "--shard"},
        {"--shard 1/4x", "--shard"},
        {"--seed -3", "--seed"},
        {"--seed 12abc", "--seed"},
        {"--partition dirichlet:0", "--partition"},
        {"--partition zipf", "--partition"},
        {"--density 0", "--density"},
        {"--density 1.5", "--density"},
        {"--density nan", "--density"},
        {"--topk fastest", "--topk"},
        {"--values fp8", "--values"},
        {"--codec gzip", "--codec"},
        {"--log-level loud", "--log-level"},
        {"--id bad/id", "--id"},
        {"--id", "--id"},
        {"--train-limit 70000", "--train-limit"},
        {"--hello-timeout 1e3", "--hello-timeout"},
        {"--test-delay-update 3", "--test-delay-update"},
        {"--test-delay-update x:10", "--test-delay-update"},
        {"--max-message 10", "--max-message"},
        {"--bogus", "--bogus"},
        {"positional", "positional"},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        struct wrk_config c;
        enum wrk_action a;
        char err[256];
        const enum fl_err rc = parse_line(cases[i].line, &c, &a, err,
                                          sizeof(err));
        if (rc != FL_ERR_INVALID_ARG)
            fail_msg("'%s' accepted", cases[i].line);
        if (strstr(err, cases[i].in_err) == NULL)
            fail_msg("'%s': message '%s' does not name '%s'", cases[i].line,
                     err, cases[i].in_err);
    }
}

static void test_help_and_version(void **state)
{
    (void)state;
    struct wrk_config c;
    enum wrk_action a;
    char err[256];
    assert_int_equal(parse_line("--help", &c, &a, err, sizeof(err)), FL_OK);
    assert_int_equal(a, WRK_ACTION_HELP);
    assert_int_equal(parse_line("--shard 0/2 --version", &c, &a, err,
                                sizeof(err)),
                     FL_OK);
    assert_int_equal(a, WRK_ACTION_VERSION);
    assert_string_equal(WRK_VERSION_STRING, "fedcomp-worker 0.1.0");
    /* usage text mentions every flag */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    wrk_config_usage(f);
    fclose(f);
    static const char *const flags[] = {
        "--connect", "--id", "--state-dir", "--data-dir", "--partition",
        "--shard", "--seed", "--min-shard", "--train-limit", "--density",
        "--topk", "--values", "--codec", "--log-level", "--hello-timeout",
        "--test-delay-update", "--test-exit-at-round", "--help"};
    for (size_t i = 0; i < FL_ARRAY_LEN(flags); i++)
        assert_non_null(strstr(text, flags[i]));
    free(text);
}

static void test_device_id_valid_table(void **state)
{
    (void)state;
    static const struct {
        const char *id;
        bool ok;
    } cases[] = {
        {"a", true},
        {"dev-0123456789abcdef", true},
        {"A.b_c:d-9", true},
        {"", false},
        {"has space", false},
        {"slash/", false},
        {"ünï", false},
        {"0123456789012345678901234567890123456789012345678901234567890123",
         true},
        {"01234567890123456789012345678901234567890123456789012345678901234",
         false},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        if (wrk_device_id_valid(cases[i].id) != cases[i].ok)
            fail_msg("id '%s'", cases[i].id);
    }
}

static void test_device_id_persists(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/test_wrk_config.XXXXXX";
    char first[WRK_DEVICE_ID_MAX + 1];
    char path[WRK_PATH_MAX + 64];
    char err[256];
    struct wrk_config c;
    struct stat st;
    bool created = false;
    assert_non_null(mkdtemp(tmpl));

    wrk_config_defaults(&c);
    snprintf(c.state_dir, sizeof(c.state_dir), "%s/a/state", tmpl);
    assert_int_equal(wrk_config_device_id(&c, &created, err, sizeof(err)),
                     FL_OK);
    assert_true(created);
    assert_int_equal(strlen(c.id), 20);
    assert_memory_equal(c.id, "dev-", 4);
    for (size_t i = 4; i < 20; i++)
        assert_non_null(strchr("0123456789abcdef", c.id[i]));
    assert_int_equal(stat(c.state_dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(first, sizeof(first), "%s", c.id);

    /* a restart finds the same id */
    c.id[0] = '\0';
    assert_int_equal(wrk_config_device_id(&c, &created, err, sizeof(err)),
                     FL_OK);
    assert_false(created);
    assert_string_equal(c.id, first);

    /* --id wins and the file is left alone */
    snprintf(c.id, sizeof(c.id), "given");
    assert_int_equal(wrk_config_device_id(&c, &created, err, sizeof(err)),
                     FL_OK);
    assert_false(created);
    assert_string_equal(c.id, "given");

    /* a corrupt stored id is an error, not silently replaced */
    snprintf(path, sizeof(path), "%s/device-id", c.state_dir);
    assert_int_equal(fl_file_write_atomic(path, "bad id\n", 7), FL_OK);
    c.id[0] = '\0';
    assert_int_equal(wrk_config_device_id(&c, &created, err, sizeof(err)),
                     FL_ERR_FORMAT);
    assert_non_null(strstr(err, "device-id"));

    /* a state dir that cannot be made (a file is in the way) */
    snprintf(c.state_dir, sizeof(c.state_dir), "%s/a/state/device-id/x", tmpl);
    c.id[0] = '\0';
    assert_int_equal(wrk_config_device_id(&c, &created, err, sizeof(err)),
                     FL_ERR_IO);

    snprintf(path, sizeof(path), "%s/a/state/device-id", tmpl);
    unlink(path);
    snprintf(path, sizeof(path), "%s/a/state", tmpl);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/a", tmpl);
    rmdir(path);
    rmdir(tmpl);
}

/* The settings printed by --check-config, as one string (caller frees). */
static char *printed(const struct wrk_config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    wrk_config_print(cfg, f);
    assert_int_equal(fclose(f), 0);
    return text;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* --config FILE (the command line wins), --log-format, --check-config. */
static void test_config_file_and_log_format(void **state)
{
    struct wrk_config c;
    enum wrk_action a;
    char err[256], line[128];
    char path[] = "/tmp/test_wrk_config.XXXXXX";
    (void)state;
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, "# a device\n"
                     "connect = tcp://10.1.2.3:5555\n"
                     "shard = 2/4   # third of four\n"
                     "log-format = json\n"
                     "log-level = debug\n");
    snprintf(line, sizeof(line), "--config %s --log-level warn", path);
    assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)), FL_OK);
    assert_int_equal(a, WRK_ACTION_RUN);
    assert_string_equal(c.connect, "tcp://10.1.2.3:5555");
    assert_int_equal(c.shard, 2);
    assert_int_equal(c.partition.nshards, 4);
    assert_int_equal(c.log_format, FL_LOG_JSON);
    assert_int_equal(c.log_level, FL_LOG_WARN); /* command line wins */

    assert_int_equal(parse_line("--log-format text", &c, &a, err,
                                sizeof(err)),
                     FL_OK);
    assert_int_equal(c.log_format, FL_LOG_TEXT);
    assert_int_equal(parse_line("", &c, &a, err, sizeof(err)), FL_OK);
    assert_int_equal(c.log_format, FL_LOG_TEXT);
    assert_int_equal(parse_line("--log-format xml", &c, &a, err,
                                sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "--log-format"));

    write_file(path, "shard = 1/2\nshrad = 3/4\n");
    snprintf(line, sizeof(line), "--config=%s", path);
    assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "line 2"));
    assert_non_null(strstr(err, "shrad"));
    write_file(path, "shard = 4/4\n");
    assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "--shard"));
    unlink(path);
    assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_non_null(strstr(err, path));
    assert_int_equal(parse_line("--config", &c, &a, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
}

/* What --check-config prints is a config file giving the same settings. */
static void test_check_config_round_trip(void **state)
{
    static const char *const lines[] = {
        "",
        "--connect tcp://h:1 --id d1 --shard 3/8 --seed 42 --min-shard 5",
        "--partition dirichlet:0.3 --density 0.001 --topk exact --values bf16",
        "--codec zstd:7 --log-format json --hello-timeout 9 --train-limit 99",
        "--codec lz4 --test-delay-update 2:150 --test-exit-at-round 4",
    };
    struct wrk_config c;
    enum wrk_action a;
    char err[256], line[160];
    char path[] = "/tmp/test_wrk_check.XXXXXX";
    (void)state;
    assert_int_equal(parse_line("--check-config --shard 9/2", &c, &a, err,
                                sizeof(err)),
                     FL_ERR_INVALID_ARG);
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    for (size_t i = 0; i < FL_ARRAY_LEN(lines); i++) {
        snprintf(line, sizeof(line), "%s --check-config", lines[i]);
        assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)), FL_OK);
        assert_int_equal(a, WRK_ACTION_CHECK_CONFIG);
        char *first = printed(&c);
        write_file(path, first);
        snprintf(line, sizeof(line), "--config %s", path);
        if (parse_line(line, &c, &a, err, sizeof(err)) != FL_OK)
            fail_msg("'%s': printed settings do not parse: %s", lines[i],
                     err);
        assert_int_equal(a, WRK_ACTION_RUN);
        char *second = printed(&c);
        assert_string_equal(first, second);
        free(first);
        free(second);
    }
    assert_int_equal(parse_line("--shard 1/3", &c, &a, err, sizeof(err)),
                     FL_OK);
    char *text = printed(&c);
    assert_non_null(strstr(text, "\nshard = 1/3\n"));
    assert_non_null(strstr(text, "\n# id = (not set)\n"));
    free(text);
    unlink(path);
}

/* docs/security.md: keys both or --insecure; the key's name as the id */
static void test_security_policy(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        bool ok;
        const char *msg;
    } cases[] = {
        {"", false, "refusing to connect without encryption"},
        {"--insecure", true, ""},
        {"--curve-key k/w3.key --coordinator-key c.pub", true, ""},
        {"--curve-key k/w3.key", false, "--curve-key needs"},
        {"--coordinator-key c.pub", false, "--coordinator-key needs"},
        {"--insecure --curve-key k/w3.key --coordinator-key c.pub", false,
         "cannot be combined"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct wrk_config c;
        enum wrk_action a;
        char err[256];
        assert_int_equal(parse_line(cases[i].line, &c, &a, err, sizeof(err)),
                         FL_OK);
        err[0] = '\0';
        const enum fl_err rc = wrk_config_check_security(&c, err,
                                                         sizeof(err));
        if ((rc == FL_OK) != cases[i].ok)
            fail_msg("'%s': %d (%s)", cases[i].line, rc, err);
        assert_non_null(strstr(err, cases[i].msg));
    }

    /* the default id is the key file's name; --id still wins */
    char tmpl[] = "/tmp/test_wrk_config.XXXXXX";
    char err[256];
    struct wrk_config c;
    enum wrk_action a;
    bool created = true;
    assert_non_null(mkdtemp(tmpl));
    assert_int_equal(parse_line("--curve-key /etc/fedcomp/pi-7.key "
                                "--coordinator-key c.pub",
                                &c, &a, err, sizeof(err)),
                     FL_OK);
    snprintf(c.state_dir, sizeof(c.state_dir), "%s", tmpl);
    assert_int_equal(wrk_config_device_id(&c, &created, err, sizeof(err)),
                     FL_OK);
    assert_false(created);
    assert_string_equal(c.id, "pi-7");
    assert_int_equal(parse_line("--curve-key pi-7.key --id other",
                                &c, &a, err, sizeof(err)),
                     FL_OK);
    snprintf(c.state_dir, sizeof(c.state_dir), "%s", tmpl);
    assert_int_equal(wrk_config_device_id(&c, &created, err, sizeof(err)),
                     FL_OK);
    assert_string_equal(c.id, "other");
    rmdir(tmpl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_accepted_lines),
        cmocka_unit_test(test_refused_lines),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_device_id_valid_table),
        cmocka_unit_test(test_device_id_persists),
        cmocka_unit_test(test_config_file_and_log_format),
        cmocka_unit_test(test_check_config_round_trip),
        cmocka_unit_test(test_security_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
