/*
 * coord_config.h - the coordinator's settings: defaults, command-line
 * parsing (getopt_long), validation and the --help text.
 *
 * struct coord_config is plain data. Strings point into argv, into the
 * argument copies the config owns (from --config FILE, see
 * common/fl_config.h) or to static defaults; coord_config_release() frees
 * the copies. Parsing never prints: a usage error comes back as
 * FL_ERR_INVALID_ARG with a one-line message in err ("--density: '2' is not
 * in (0, 1]"). The flags and their defaults are listed in
 * coord_config_usage() and docs/coordinator.md.
 */
#ifndef COORD_CONFIG_H
#define COORD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/fl_err.h"
#include "common/fl_log.h"
#include "compress/cmp_types.h"
#include "model/mdl_trainer.h"

#define COORD_VERSION "0.1.0"
#define COORD_PROGRAM "fedcomp-coordinator"

enum coord_action {
    COORD_ACTION_RUN = 0,
    COORD_ACTION_HELP = 1,
    COORD_ACTION_VERSION = 2,
    COORD_ACTION_CHECK_CONFIG = 3   /* print the settings, exit 0 */
};

struct coord_config {
    /* network */
    const char *bind;             /* ZeroMQ endpoint to bind */
    const char *endpoint_file;    /* NULL: do not write the bound endpoint */
    size_t max_message;           /* bytes: largest message or payload */
    /* chunked transfers (docs/protocol.md "Transfers") */
    size_t chunk_bytes;           /* every chunk but the last */
    uint32_t chunk_window;        /* chunks in flight per transfer */
    size_t inline_bytes;          /* Task payloads above it are chunked */
    uint32_t max_inflight_chunks; /* chunks unacknowledged, all devices */
    uint32_t upload_slots;        /* uploads reassembled at a time */
    uint32_t upload_stall_ms;     /* a granted upload idle this long: out */
    /* ZeroMQ at scale (docs/scale.md) */
    uint32_t heartbeat_ms;        /* ZMTP heartbeat interval; 0 = off */
    uint32_t io_threads;          /* ZMQ_IO_THREADS */
    uint32_t backlog;             /* ZMQ_BACKLOG */

    /* security and admission (docs/security.md) */
    const char *curve_secret;     /* own key pair file; NULL = no CURVE */
    const char *authorized_keys;  /* directory of NAME.pub; NULL = none */
    bool insecure;                /* plaintext asked for */
    uint32_t max_devices_connected; /* Hello past it: Reject 51 full */
    double max_msg_rate;          /* messages/s per routing id; 0 = off */
    double max_msg_burst;         /* bucket size, >= 1 */

    /* devices and rounds */
    uint32_t min_devices;
    double wait_timeout;          /* seconds; 0 = wait forever */
    double fraction;              /* (0, 1] of joined devices per round */
    uint32_t max_devices;         /* cohort cap, 0 = none */
    double round_timeout;         /* seconds */
    double quorum;                /* [0, 1] of the cohort */
    uint32_t max_attempts;        /* per round */
    uint32_t rounds;
    uint64_t seed;
    uint64_t max_samples;         /* per Hello/Update */

    /* safe aggregation and the penalty box (coord_guard.h) */
    double max_device_share;      /* [0.05, 1]; 1 = no cap */
    double max_update_norm;       /* absolute L2 bound; 0 = none */
    double update_norm_factor;    /* adaptive bound factor; 0 = none */
    uint32_t penalty_after;       /* refusals in a row; 0 = never */
    uint32_t penalty_rounds;
    uint32_t keep_versions;       /* model versions kept for XOR deltas */

    /* model and training (sent to workers) */
    struct mdl_mlp_config mlp;    /* hidden layers from --hidden */
    uint32_t local_epochs;
    uint32_t local_steps;
    uint32_t batch_size;
    double lr;
    double momentum;

    /* compression (sent to workers) */
    double density;
    enum cmp_topk_method topk;
    enum cmp_value_coding values;
    enum cmp_codec codec;
    int level;                    /* zstd level */
    bool error_feedback;
    double momentum_correction;   /* factor; 0 = off */
    uint32_t density_warmup;      /* rounds, 0 = off */
    double clip_norm;             /* 0 = off */
    size_t uplink_budget;         /* Update bytes per round, 0 = off */
    bool per_tensor;
    bool allow_overrides;

    /* downlink (docs/protocol.md "Lossy downlink"): lossy when
     * down_density < 1 or down_values != fp32 */
    double down_density;          /* (0, 1], 1 = lossless */
    enum cmp_value_coding down_values;

    /* server step */
    double server_lr;
    double server_momentum;

    /* evaluation, reports and files */
    const char *data_dir;
    uint32_t eval_limit;          /* 0 = all test images */
    const char *report_dir;       /* NULL = no report files */
    const char *state_dir;        /* checkpoint directory; NULL = none */
    const char *save_model;       /* NULL = do not save */
    const char *save_broadcast_model; /* devices' model at the end; NULL */
    bool save_every_round;

    /* logging */
    enum fl_log_level log_level;
    enum fl_log_format log_format;

    /* Prometheus metrics (coord_metrics.h) */
    const char *metrics_bind;     /* HOST:PORT; NULL = no metrics server */
    const char *metrics_port_file; /* NULL: do not write the bound port */

    /* owned: the argv expanded from --config FILE (NULL without one) */
    char **owned_argv;
    int owned_argc;
};

/* Fill cfg with the defaults (the values --help shows). */
void coord_config_defaults(struct coord_config *cfg);

/* Parse argv over the defaults already in cfg (call coord_config_defaults()
 * first) and validate the result. `--config FILE` reads `key = value` lines
 * (long flag names) that act as flags placed before the command line, so
 * the command line wins. *action says what main should do; with
 * COORD_ACTION_HELP/VERSION the rest of cfg is unspecified.
 * Returns FL_OK or FL_ERR_INVALID_ARG (usage error or unreadable/bad
 * config file, message in err). Call coord_config_release() afterwards in
 * every case. Not thread-safe (getopt state); may be called repeatedly. */
enum fl_err coord_config_parse(struct coord_config *cfg, int argc,
                               char **argv, enum coord_action *action,
                               char *err, size_t errlen);

/* Free what parse allocated (the --config argument copies); the strings of
 * cfg that pointed there become invalid. Accepts a released config. */
void coord_config_release(struct coord_config *cfg);

/* Check the combination of settings (also called by parse).
 * FL_ERR_INVALID_ARG with a message in err. */
enum fl_err coord_config_validate(const struct coord_config *cfg, char *err,
                                  size_t errlen);

/* Print the --help text. */
void coord_config_usage(FILE *out);

/* The security policy (docs/security.md), checked by the program before it
 * starts (not by coord_config_validate(), so that tests and tools can run
 * an engine without keys): CURVE needs both --curve-secret and
 * --authorized-keys; without them --insecure must be given, and not with
 * them. FL_ERR_INVALID_ARG with a message in err. */
enum fl_err coord_config_check_security(const struct coord_config *cfg,
                                        char *err, size_t errlen);

/* Print the effective settings of cfg as `key = value` lines with the
 * flags' long names (what --check-config shows); the text is itself a
 * valid --config file giving the same settings. Unset optional paths are
 * printed as comments. */
void coord_config_print(const struct coord_config *cfg, FILE *out);

/* "zstd:1", "lz4", "none": the codec as the flag spells it. */
void coord_codec_format(enum cmp_codec codec, int level, char *buf,
                        size_t len);

/* Density of round `round` (1-based) with the warm-up schedule: for
 * warmup >= 2 and round <= warmup, 0.25 * (target/0.25)^((round-1) /
 * (warmup-1)), so round 1 has 0.25 and round `warmup` the target (DGC's
 * 75% ... 99.9% sparsity for warmup 5 and target 0.001); warmup == 1 gives
 * round 1 density 0.25. Never below target; a target >= 0.25 is used as is. */
double coord_density_for_round(double target, uint32_t warmup,
                               uint64_t round);

/* True when the downlink is lossy (server-side error feedback on). */
bool coord_config_lossy_downlink(const struct coord_config *cfg);

/* The largest single frame accepted (ZMQ_MAXMSGSIZE and the parse limit):
 * a chunk and its envelope, never more than --max-message. */
size_t coord_config_frame_limit(const struct coord_config *cfg);

#define COORD_FRAME_OVERHEAD (64u * 1024u)

#endif /* COORD_CONFIG_H */
