/*
 * wrk_config.h - the worker's command line and its persistent device id.
 *
 * wrk_config_parse() fills a struct wrk_config from argv with getopt_long
 * (strict number parsing, every value range-checked). It does not print:
 * errors come back as a one-line message, --help and --version as an
 * action for the caller. Not thread-safe (getopt's globals).
 */
#ifndef WRK_CONFIG_H
#define WRK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/fl_err.h"
#include "common/fl_log.h"
#include "compress/cmp_types.h"
#include "model/mdl_partition.h"

#define WRK_VERSION_STRING "fedcomp-worker 0.1.0"
#define WRK_DEFAULT_CONNECT "tcp://127.0.0.1:5555"
#define WRK_DEFAULT_STATE_DIR "./fedcomp-worker-state"
#define WRK_DEVICE_ID_MAX 64
#define WRK_PATH_MAX 1024
#define WRK_DEFAULT_MAX_MESSAGE (64u << 20)

enum wrk_action {
    WRK_ACTION_RUN = 0,
    WRK_ACTION_HELP = 1,
    WRK_ACTION_VERSION = 2,
    WRK_ACTION_CHECK_CONFIG = 3      /* print the settings, exit 0 */
};

/* Local compression settings; each applies only when its has_ flag is set
 * and the Task allows overrides. */
struct wrk_overrides {
    bool has_density;
    float density;
    bool has_topk;
    enum cmp_topk_method topk;
    bool has_values;
    enum cmp_value_coding values;
    bool has_codec;
    enum cmp_codec codec;
    int level;                     /* with has_codec; 0 = default */
};

struct wrk_config {
    char connect[WRK_PATH_MAX];
    /* CURVE (docs/security.md): both files, or insecure */
    char curve_key[WRK_PATH_MAX];    /* own key pair file; "" = none */
    char coordinator_key[WRK_PATH_MAX]; /* coordinator's .pub; "" = none */
    bool insecure;                   /* plaintext asked for */
    char id[WRK_DEVICE_ID_MAX + 1];  /* empty: from the state dir */
    char state_dir[WRK_PATH_MAX];
    char data_dir[WRK_PATH_MAX];
    struct mdl_partition_config partition; /* kind, alpha, nshards, seed,
                                              min_shard */
    uint32_t shard;                  /* 0 <= shard < partition.nshards */
    uint32_t train_limit;            /* 0 = all training images */
    char save_model[WRK_PATH_MAX];   /* model held at exit; "" = none */
    struct wrk_overrides overrides;
    enum fl_log_level log_level;
    enum fl_log_format log_format;   /* --log-format text|json */
    uint32_t hello_timeout_s;        /* 0 = wait forever */
    size_t max_message;              /* ZMQ_MAXMSGSIZE and parse limit */
    char stats_csv[WRK_PATH_MAX];    /* per-round cost rows; "" = none */
    /* test-only fault injection */
    bool has_test_delay;
    uint64_t test_delay_round;
    uint32_t test_delay_ms;
    bool has_test_exit;
    uint64_t test_exit_round;
};

/* Defaults as documented in docs/worker.md. */
void wrk_config_defaults(struct wrk_config *cfg);

/* Parse argv (argv[0] is the program name) over the defaults. On
 * FL_ERR_INVALID_ARG err holds "what is wrong" (e.g. "invalid --shard
 * '4/4': need I/N with 0 <= I < N"). *action says whether to run, to
 * print help/version or (--check-config) the settings. Positional
 * arguments are an error. `--config FILE` reads `key = value` lines (long
 * flag names, common/fl_config.h) placed before the command line, so the
 * command line wins; a bad file is FL_ERR_INVALID_ARG naming file and
 * line. Every string is copied into cfg: argv may go away afterwards. */
enum fl_err wrk_config_parse(struct wrk_config *cfg, int argc, char **argv,
                             enum wrk_action *action, char *err,
                             size_t errlen);

/* Print the --help text. */
void wrk_config_usage(FILE *f);

/* Print the effective settings as `key = value` lines with the flags'
 * long names (what --check-config shows); the text is itself a valid
 * --config file giving the same settings. Unset values are comments. */
void wrk_config_print(const struct wrk_config *cfg, FILE *f);

/* True for 1-64 characters of [A-Za-z0-9._:-]. */
bool wrk_device_id_valid(const char *id);

/* The security policy (docs/security.md), checked by the program before it
 * connects (wrk_client itself uses CURVE exactly when --curve-key is set):
 * CURVE needs --curve-key and --coordinator-key; without them --insecure
 * must be given, and not with them. FL_ERR_INVALID_ARG, message in err. */
enum fl_err wrk_config_check_security(const struct wrk_config *cfg,
                                      char *err, size_t errlen);

/* Create the state dir (0700) and settle the device id: --id when given,
 * else the name of the --curve-key file ("keys/w3.key" -> "w3": the name
 * the coordinator knows the key by, if its .pub kept the name), else the
 * id stored in <state-dir>/device-id, else a new random
 * "dev-<16 hex>" stored there (atomically, so it survives restarts).
 * *created tells whether a new id was made. FL_ERR_IO (err says what),
 * FL_ERR_FORMAT when the stored id is invalid. */
enum fl_err wrk_config_device_id(struct wrk_config *cfg, bool *created,
                                 char *err, size_t errlen);

#endif /* WRK_CONFIG_H */
