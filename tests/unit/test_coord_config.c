/*
 * Unit tests for coordinator/coord_config: defaults, every flag parsed into
 * its field, usage errors for bad values and combinations, --help and
 * --version, and the density warm-up schedule.
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

#include "common/fl_util.h"
#include "coordinator/coord_config.h"
#include "tests/unit/split_argv.h"

#define MAX_ARGS 16

/* Parse a space-separated command line (no quoting needed here). */
static enum fl_err parse_line(const char *line, struct coord_config *cfg,
                              enum coord_action *action, char *err,
                              size_t errlen)
{
    static char buf[1024];
    char *argv[MAX_ARGS + 1];
    const int argc = ta_split("fedcomp-coordinator", line, buf, sizeof(buf),
                              argv, MAX_ARGS + 1);
    coord_config_release(cfg);
    coord_config_defaults(cfg);
    return coord_config_parse(cfg, argc, argv, action, err, errlen);
}

static void test_defaults(void **state)
{
    (void)state;
    struct coord_config c = {0};
    enum coord_action a;
    char err[256];
    assert_int_equal(parse_line("", &c, &a, err, sizeof(err)), FL_OK);
    assert_int_equal(a, COORD_ACTION_RUN);
    assert_string_equal(c.bind, "tcp://*:5555");
    assert_null(c.endpoint_file);
    assert_int_equal(c.min_devices, 2);
    assert_true(c.wait_timeout == 120.0);
    assert_true(c.fraction == 1.0);
    assert_int_equal(c.max_devices, 0);
    assert_true(c.round_timeout == 60.0);
    assert_true(c.quorum == 0.5);
    assert_int_equal(c.max_attempts, 3);
    assert_int_equal(c.rounds, 10);
    assert_int_equal(c.seed, 1);
    assert_int_equal(c.mlp.nhidden, 2);
    assert_int_equal(c.mlp.hidden[0], 256);
    assert_int_equal(c.mlp.hidden[1], 128);
    assert_true(c.density == 0.01);
    assert_int_equal(c.topk, CMP_TOPK_SAMPLED);
    assert_int_equal(c.values, CMP_VALUE_FP16);
    assert_int_equal(c.codec, CMP_CODEC_ZSTD);
    assert_int_equal(c.level, 1);
    assert_true(c.error_feedback);
    assert_true(c.momentum_correction == 0.0);
    assert_int_equal(c.density_warmup, 0);
    assert_true(c.clip_norm == 0.0);
    assert_false(c.per_tensor);
    assert_false(c.allow_overrides);
    assert_true(c.server_lr == 1.0);
    assert_true(c.server_momentum == 0.0);
    assert_int_equal(c.local_epochs, 1);
    assert_int_equal(c.local_steps, 0);
    assert_int_equal(c.batch_size, 32);
    assert_true(fabs(c.lr - 0.05) < 1e-12);
    assert_true(fabs(c.momentum - 0.9) < 1e-12);
    assert_string_equal(c.data_dir, "/usr/share/datasets/fashion-mnist");
    assert_int_equal(c.eval_limit, 0);
    assert_null(c.report_dir);
    assert_null(c.save_model);
    assert_int_equal(c.max_samples, 1000000);
    assert_int_equal(c.max_message, 64u << 20);
    assert_int_equal(c.keep_versions, 4);
    assert_int_equal(c.log_level, FL_LOG_INFO);
    coord_config_release(&c);
}

static void test_flags_set_fields(void **state)
{
    (void)state;
    struct coord_config c = {0};
    enum coord_action a;
    char err[256];
#define OK(line) assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)), \
                                  FL_OK)
    OK("--bind tcp://127.0.0.1:* --endpoint-file /tmp/ep --min-devices 4");
    assert_string_equal(c.bind, "tcp://127.0.0.1:*");
    assert_string_equal(c.endpoint_file, "/tmp/ep");
    assert_int_equal(c.min_devices, 4);
    OK("--wait-timeout 0 --fraction 0.25 --max-devices 9 --round-timeout 0.5");
    assert_true(c.wait_timeout == 0.0);
    assert_true(c.fraction == 0.25);
    assert_int_equal(c.max_devices, 9);
    assert_true(c.round_timeout == 0.5);
    OK("--quorum 1 --max-attempts 7 --rounds 30 --seed 18446744073709551615");
    assert_true(c.quorum == 1.0);
    assert_int_equal(c.max_attempts, 7);
    assert_int_equal(c.rounds, 30);
    assert_int_equal(c.seed, UINT64_MAX);
    OK("--hidden 64 --density 1 --topk exact --values int8 --codec lz4");
    assert_int_equal(c.mlp.nhidden, 1);
    assert_int_equal(c.mlp.hidden[0], 64);
    assert_true(c.density == 1.0);
    assert_int_equal(c.topk, CMP_TOPK_EXACT);
    assert_int_equal(c.values, CMP_VALUE_INT8);
    assert_int_equal(c.codec, CMP_CODEC_LZ4);
    OK("--codec zstd:7 --values bf16 --error-feedback off");
    assert_int_equal(c.codec, CMP_CODEC_ZSTD);
    assert_int_equal(c.level, 7);
    assert_int_equal(c.values, CMP_VALUE_BF16);
    assert_false(c.error_feedback);
    OK("--codec zstd");
    assert_int_equal(c.level, 1);
    OK("--codec none --values fp32");
    assert_int_equal(c.codec, CMP_CODEC_NONE);
    assert_int_equal(c.values, CMP_VALUE_FP32);
    OK("--density-warmup 5 --clip-norm 2.5 --per-tensor "
       "--allow-device-overrides --server-lr 0.5 --server-momentum 0.9");
    assert_int_equal(c.density_warmup, 5);
    assert_true(c.clip_norm == 2.5);
    assert_true(c.per_tensor);
    assert_true(c.allow_overrides);
    assert_true(c.server_lr == 0.5);
    assert_true(c.server_momentum == 0.9);
    OK("--local-epochs 0 --local-steps 20 --batch-size 64 --lr 0.1 "
       "--momentum 0");
    assert_int_equal(c.local_epochs, 0);
    assert_int_equal(c.local_steps, 20);
    assert_int_equal(c.batch_size, 64);
    assert_true(c.lr == 0.1);
    assert_true(c.momentum == 0.0);
    OK("--data-dir /d --eval-limit 2000 --report-dir out/r --save-model m.bin "
       "--save-every-round");
    assert_string_equal(c.data_dir, "/d");
    assert_int_equal(c.eval_limit, 2000);
    assert_string_equal(c.report_dir, "out/r");
    assert_string_equal(c.save_model, "m.bin");
    assert_true(c.save_every_round);
    OK("--max-samples 5 --max-message 1M --keep-versions 1 --log-level debug "
       "--log-format json");
    assert_int_equal(c.max_samples, 5);
    assert_int_equal(c.max_message, 1u << 20);
    assert_int_equal(c.keep_versions, 1);
    assert_int_equal(c.log_level, FL_LOG_DEBUG);
    assert_int_equal(c.log_format, FL_LOG_JSON);
    OK("--max-message 65536");
    assert_int_equal(c.max_message, 65536);
    OK("--bind=tcp://*:6000");
    assert_string_equal(c.bind, "tcp://*:6000");
#undef OK
    coord_config_release(&c);
}

static void test_momentum_correction_forms(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        double want;
        uint32_t rounds;
    } cases[] = {
        {"--momentum-correction", 0.9, 10},
        {"--momentum-correction=0.8", 0.8, 10},
        {"--momentum-correction 0.95", 0.95, 10},
        {"--momentum-correction 0.5 --rounds 3", 0.5, 3},
        {"--momentum-correction --rounds 3", 0.9, 3},
        {"--rounds 4 --momentum-correction", 0.9, 4},
        {"--momentum-correction=0", 0.0, 10},
    };
    struct coord_config c = {0};
    enum coord_action a;
    char err[256];
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        assert_int_equal(parse_line(cases[i].line, &c, &a, err, sizeof(err)),
                         FL_OK);
        assert_true(fabs(c.momentum_correction - cases[i].want) < 1e-12);
        assert_int_equal(c.rounds, cases[i].rounds);
    }
    assert_int_equal(parse_line("--momentum-correction=1.5", &c, &a, err,
                                sizeof(err)),
                     FL_ERR_INVALID_ARG);
    /* a following number out of range is not taken as the factor */
    assert_int_equal(parse_line("--momentum-correction 7", &c, &a, err,
                                sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "'7'"));
    coord_config_release(&c);
}

static void test_usage_errors(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *msg; /* part of the message */
    } cases[] = {
        {"--no-such-flag", "unknown option '--no-such-flag'"},
        {"-x", "unknown option"},
        {"--rounds", "needs a value"},
        {"--rounds 0", "--rounds"},
        {"--rounds ten", "not a whole number"},
        {"--rounds -3", "--rounds"},
        {"--rounds 3x", "--rounds"},
        {"--min-devices 0", "--min-devices"},
        {"--fraction 0", "--fraction"},
        {"--fraction 1.5", "--fraction"},
        {"--quorum -0.1", "--quorum"},
        {"--quorum nan", "--quorum"},
        {"--density 0", "--density"},
        {"--density 2", "--density"},
        {"--density inf", "--density"},
        {"--round-timeout 0", "--round-timeout"},
        {"--topk fast", "--topk"},
        {"--values fp8", "--values"},
        {"--codec gzip", "--codec"},
        {"--codec zstd:0", "--codec"},
        {"--codec zstd:99", "--codec"},
        {"--error-feedback maybe", "--error-feedback"},
        {"--hidden 256,,128", "--hidden"},
        {"--hidden abc", "--hidden"},
        {"--server-lr 0", "--server-lr"},
        {"--server-momentum 1", "--server-momentum"},
        {"--lr -1", "--lr"},
        {"--batch-size 0", "--batch-size"},
        {"--max-message 10", "--max-message"},
        {"--max-message 5X", "--max-message"},
        {"--max-message 65G", "--max-message"},
        {"--chunk-bytes 100", "--chunk-bytes"},
        {"--chunk-bytes 65M", "--chunk-bytes"},
        {"--chunk-window 0", "--chunk-window"},
        {"--chunk-window 1025", "--chunk-window"},
        {"--inline-bytes 65M", "--inline-bytes"},
        {"--upload-slots 0", "--upload-slots"},
        {"--max-inflight-chunks 0", "--max-inflight-chunks"},
        {"--io-threads 0", "--io-threads"},
        {"--backlog 0", "--backlog"},
        {"--heartbeat-ms -1", "--heartbeat-ms"},
        {"--keep-versions 0", "--keep-versions"},
        {"--max-samples 0", "--max-samples"},
        {"--log-level loud", "--log-level"},
        {"--log-format xml", "--log-format"},
        {"--local-epochs 0", "both 0"},
        {"--min-devices 5 --max-devices 3", "--max-devices"},
        {"--save-every-round", "--save-model"},
        {"--bind=", "--bind"},
        {"--report-dir=", "--report-dir"},
        {"stray", "unexpected argument 'stray'"},
        {"--rounds 3 stray", "unexpected argument 'stray'"},
    };
    struct coord_config c = {0};
    enum coord_action a;
    char err[256];
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        err[0] = '\0';
        const enum fl_err rc = parse_line(cases[i].line, &c, &a, err,
                                          sizeof(err));
        if (rc != FL_ERR_INVALID_ARG)
            fail_msg("'%s' gave %d, not a usage error", cases[i].line, rc);
        if (strstr(err, cases[i].msg) == NULL)
            fail_msg("'%s': message '%s' lacks '%s'", cases[i].line, err,
                     cases[i].msg);
    }
    coord_config_release(&c);
}

static void test_help_and_version(void **state)
{
    (void)state;
    struct coord_config c = {0};
    enum coord_action a;
    char err[256];
    assert_int_equal(parse_line("--help", &c, &a, err, sizeof(err)), FL_OK);
    assert_int_equal(a, COORD_ACTION_HELP);
    assert_int_equal(parse_line("--rounds 3 -h", &c, &a, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(a, COORD_ACTION_HELP);
    assert_int_equal(parse_line("--version", &c, &a, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(a, COORD_ACTION_VERSION);

    /* --help lists every long option */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    coord_config_usage(f);
    fclose(f);
    static const char *const flags[] = {
        "--bind", "--endpoint-file", "--min-devices", "--wait-timeout",
        "--fraction", "--max-devices", "--round-timeout", "--quorum",
        "--max-attempts", "--rounds", "--seed", "--hidden", "--density",
        "--topk", "--values", "--codec", "--error-feedback",
        "--momentum-correction", "--density-warmup", "--clip-norm",
        "--per-tensor", "--allow-device-overrides", "--server-lr",
        "--server-momentum", "--local-epochs", "--local-steps",
        "--batch-size", "--lr", "--momentum", "--data-dir", "--eval-limit",
        "--report-dir", "--save-model", "--save-every-round",
        "--max-samples", "--max-message", "--keep-versions", "--log-level",
        "--log-format", "--help", "--version", "--config"};
    for (size_t i = 0; i < FL_ARRAY_LEN(flags); i++) {
        if (strstr(text, flags[i]) == NULL)
            fail_msg("--help does not mention %s", flags[i]);
    }
    free(text);
    coord_config_release(&c);
}

static void test_config_file(void **state)
{
    (void)state;
    struct coord_config c = {0};
    enum coord_action a;
    char err[256];
    char path[] = "/tmp/test_coord_config.XXXXXX";
    char line[128];
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char text[] =
        "# a run\n"
        "rounds = 7\n"
        "bind = tcp://127.0.0.1:*\n"
        "codec = lz4   # trailing comment\n"
        "per-tensor = true\n"
        "allow-device-overrides = false\n"
        "momentum-correction =\n"
        "\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1),
                     (ssize_t)(sizeof(text) - 1));
    close(fd);
    /* the file comes first, so the command line wins */
    snprintf(line, sizeof(line), "--rounds 9 --config %s", path);
    assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)), FL_OK);
    assert_int_equal(c.rounds, 9);
    assert_string_equal(c.bind, "tcp://127.0.0.1:*");
    assert_int_equal(c.codec, CMP_CODEC_LZ4);
    assert_true(c.per_tensor);
    assert_false(c.allow_overrides);
    assert_true(fabs(c.momentum_correction - 0.9) < 1e-12);
    snprintf(line, sizeof(line), "--config=%s", path);
    assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)), FL_OK);
    assert_int_equal(c.rounds, 7);

    /* bad files are usage errors that name the file and line */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("rounds = 3\nrondus = 4\n", f);
    fclose(f);
    snprintf(line, sizeof(line), "--config %s", path);
    assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "line 2"));
    assert_non_null(strstr(err, "rondus"));
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("density = 5\n", f);
    fclose(f);
    assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "--density"));
    unlink(path);
    assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_non_null(strstr(err, path));
    assert_int_equal(parse_line("--config", &c, &a, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    coord_config_release(&c);
    coord_config_release(&c); /* twice is fine */
}

static void test_density_schedule(void **state)
{
    (void)state;
    /* DGC: 75%, 93.75%, 98.4375%, 99.6%, 99.9% sparsity */
    static const double dgc[] = {0.25, 0.0625, 0.015625, 0.00390625, 0.001};
    for (uint64_t r = 1; r <= 5; r++) {
        const double d = coord_density_for_round(0.001, 5, r);
        /* geometric from 0.25 to 0.001 in 4 steps: ratio 0.2515 vs 0.25 */
        assert_true(fabs(d - dgc[r - 1]) / dgc[r - 1] < 0.03);
    }
    assert_true(coord_density_for_round(0.001, 5, 1) == 0.25);
    assert_true(coord_density_for_round(0.001, 5, 5) == 0.001);
    assert_true(coord_density_for_round(0.001, 5, 6) == 0.001);
    assert_true(coord_density_for_round(0.01, 0, 1) == 0.01);
    assert_true(coord_density_for_round(0.01, 1, 1) == 0.25);
    assert_true(coord_density_for_round(0.01, 1, 2) == 0.01);
    assert_true(coord_density_for_round(0.5, 4, 1) == 0.5);
    /* monotone non-increasing and never below the target */
    for (uint32_t w = 2; w < 30; w++) {
        double prev = 1.0;
        for (uint64_t r = 1; r <= w + 2; r++) {
            const double d = coord_density_for_round(0.002, w, r);
            assert_true(d <= prev);
            assert_true(d >= 0.002);
            prev = d;
        }
    }
    char buf[16];
    coord_codec_format(CMP_CODEC_ZSTD, 3, buf, sizeof(buf));
    assert_string_equal(buf, "zstd:3");
    coord_codec_format(CMP_CODEC_LZ4, 0, buf, sizeof(buf));
    assert_string_equal(buf, "lz4");
    coord_codec_format(CMP_CODEC_NONE, 0, buf, sizeof(buf));
    assert_string_equal(buf, "none");
}

/* The settings printed by --check-config, as one string (caller frees). */
static char *printed(const struct coord_config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    coord_config_print(cfg, f);
    assert_int_equal(fclose(f), 0);
    return text;
}

static void test_metrics_flags(void **state)
{
    static const struct {
        const char *line;
        const char *in_err;   /* NULL: accepted */
    } cases[] = {
        {"--metrics-bind 127.0.0.1:9464", NULL},
        {"--metrics-bind :0 --metrics-port-file /tmp/p", NULL},
        {"--metrics-port-file /tmp/p", "--metrics-bind"},
        {"--metrics-bind=", "--metrics-bind"},
        {"--metrics-bind :0 --metrics-port-file=", "--metrics-port-file"},
    };
    struct coord_config c = {0};
    enum coord_action a;
    char err[256];
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        const enum fl_err rc = parse_line(cases[i].line, &c, &a, err,
                                          sizeof(err));
        if (cases[i].in_err == NULL) {
            assert_int_equal(rc, FL_OK);
            assert_non_null(c.metrics_bind);
            continue;
        }
        assert_int_equal(rc, FL_ERR_INVALID_ARG);
        if (strstr(err, cases[i].in_err) == NULL)
            fail_msg("'%s': error '%s' lacks '%s'", cases[i].line, err,
                     cases[i].in_err);
    }
    assert_int_equal(parse_line("--metrics-bind :0 --metrics-port-file /tmp/p",
                                &c, &a, err, sizeof(err)),
                     FL_OK);
    assert_string_equal(c.metrics_bind, ":0");
    assert_string_equal(c.metrics_port_file, "/tmp/p");
    assert_int_equal(parse_line("", &c, &a, err, sizeof(err)), FL_OK);
    assert_null(c.metrics_bind); /* off by default */
    assert_null(c.metrics_port_file);
    coord_config_release(&c);
}

/* --check-config validates like a run, and what it prints is a config
 * file that gives the same settings again. */
static void test_check_config(void **state)
{
    static const char *const lines[] = {
        "",
        "--rounds 7 --density 0.001 --values int8 --codec lz4 --per-tensor",
        "--lr 0.1234567890123 --momentum-correction --hidden 64,32,16",
        "--report-dir /tmp/r --metrics-bind 127.0.0.1:0 --log-format json",
        "--error-feedback off --quorum 1 --wait-timeout 0 --codec zstd:9",
    };
    struct coord_config c = {0};
    enum coord_action a;
    char err[256], line[128];
    char path[] = "/tmp/test_coord_check.XXXXXX";
    (void)state;
    assert_int_equal(parse_line("--check-config --density 5", &c, &a, err,
                                sizeof(err)),
                     FL_ERR_INVALID_ARG);
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    for (size_t i = 0; i < FL_ARRAY_LEN(lines); i++) {
        snprintf(line, sizeof(line), "--check-config %s", lines[i]);
        assert_int_equal(parse_line(line, &c, &a, err, sizeof(err)), FL_OK);
        assert_int_equal(a, COORD_ACTION_CHECK_CONFIG);
        char *first = printed(&c);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(first, f);
        assert_int_equal(fclose(f), 0);
        snprintf(line, sizeof(line), "--config %s", path);
        if (parse_line(line, &c, &a, err, sizeof(err)) != FL_OK)
            fail_msg("'%s': printed settings do not parse: %s", lines[i],
                     err);
        assert_int_equal(a, COORD_ACTION_RUN);
        char *second = printed(&c);
        assert_string_equal(first, second);
        free(first);
        free(second);
    }
    assert_int_equal(parse_line("--lr 0.1234567890123", &c, &a, err,
                                sizeof(err)),
                     FL_OK);
    char *text = printed(&c);
    assert_non_null(strstr(text, "\nlr = 0.1234567890123\n"));
    assert_non_null(strstr(text, "\n# report-dir = (not set)\n"));
    free(text);
    unlink(path);
    coord_config_release(&c);
}

/* docs/security.md: keys both or --insecure, and the admission flags */
static void test_security_flags(void **state)
{
    (void)state;
    struct coord_config c;
    enum coord_action a;
    char err[256];
    coord_config_defaults(&c);
    assert_null(c.curve_secret);
    assert_null(c.authorized_keys);
    assert_false(c.insecure);
    assert_int_equal(c.max_devices_connected, 10000);
    assert_true(c.max_msg_rate == 50 && c.max_msg_burst == 100);
    static const struct {
        const char *line;
        bool ok;
        const char *msg;
    } cases[] = {
        {"", false, "refusing to run without encryption"},
        {"--insecure", true, ""},
        {"--curve-secret c.key --authorized-keys keys", true, ""},
        {"--curve-secret c.key", false, "--curve-secret needs"},
        {"--authorized-keys keys", false, "--authorized-keys needs"},
        {"--insecure --curve-secret c.key --authorized-keys keys", false,
         "cannot be combined"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse_line(cases[i].line, &c, &a, err, sizeof(err)),
                         FL_OK);
        err[0] = '\0';
        const enum fl_err rc = coord_config_check_security(&c, err,
                                                           sizeof(err));
        if ((rc == FL_OK) != cases[i].ok)
            fail_msg("'%s': %d (%s)", cases[i].line, rc, err);
        assert_non_null(strstr(err, cases[i].msg));
    }
    assert_int_equal(parse_line("--curve-secret c.key --authorized-keys keys "
                                "--max-devices-connected 7 --max-msg-rate "
                                "0.5 --max-msg-burst 3",
                                &c, &a, err, sizeof(err)),
                     FL_OK);
    assert_string_equal(c.curve_secret, "c.key");
    assert_string_equal(c.authorized_keys, "keys");
    assert_int_equal(c.max_devices_connected, 7);
    assert_true(c.max_msg_rate == 0.5 && c.max_msg_burst == 3);
    static const char *const bad[] = {
        "--max-devices-connected 0", "--max-devices-connected 65537",
        "--max-msg-rate -1", "--max-msg-rate x", "--max-msg-burst 0.5",
        "--curve-secret=", "--authorized-keys=",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse_line(bad[i], &c, &a, err, sizeof(err)) !=
            FL_ERR_INVALID_ARG)
            fail_msg("'%s' was accepted", bad[i]);
    }
    coord_config_release(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_flags_set_fields),
        cmocka_unit_test(test_momentum_correction_forms),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_config_file),
        cmocka_unit_test(test_density_schedule),
        cmocka_unit_test(test_metrics_flags),
        cmocka_unit_test(test_check_config),
        cmocka_unit_test(test_security_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
