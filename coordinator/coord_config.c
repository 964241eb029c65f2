#include "coordinator/coord_config.h"

#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/fl_config.h"
#include "common/fl_flags.h"
#include "common/fl_util.h"
#include "coordinator/coord_devtab.h"
#include "model/mdl_data.h"
#include "proto/pb_xfer.h"

#define MiB (1024ULL * 1024ULL)

enum opt_id {
    OPT_BIND = 256,
    OPT_ENDPOINT_FILE,
    OPT_CURVE_SECRET,
    OPT_AUTHORIZED_KEYS,
    OPT_INSECURE,
    OPT_MAX_DEVICES_CONNECTED,
    OPT_MAX_MSG_RATE,
    OPT_MAX_MSG_BURST,
    OPT_MIN_DEVICES,
    OPT_WAIT_TIMEOUT,
    OPT_FRACTION,
    OPT_MAX_DEVICES,
    OPT_ROUND_TIMEOUT,
    OPT_QUORUM,
    OPT_MAX_ATTEMPTS,
    OPT_ROUNDS,
    OPT_SEED,
    OPT_HIDDEN,
    OPT_DENSITY,
    OPT_TOPK,
    OPT_VALUES,
    OPT_CODEC,
    OPT_ERROR_FEEDBACK,
    OPT_MOMENTUM_CORRECTION,
    OPT_DENSITY_WARMUP,
    OPT_CLIP_NORM,
    OPT_UPLINK_BUDGET,
    OPT_PER_TENSOR,
    OPT_ALLOW_OVERRIDES,
    OPT_DOWN_DENSITY,
    OPT_DOWN_VALUES,
    OPT_SAVE_BROADCAST_MODEL,
    OPT_SERVER_LR,
    OPT_SERVER_MOMENTUM,
    OPT_LOCAL_EPOCHS,
    OPT_LOCAL_STEPS,
    OPT_BATCH_SIZE,
    OPT_LR,
    OPT_MOMENTUM,
    OPT_DATA_DIR,
    OPT_EVAL_LIMIT,
    OPT_REPORT_DIR,
    OPT_STATE_DIR,
    OPT_SAVE_MODEL,
    OPT_SAVE_EVERY_ROUND,
    OPT_MAX_SAMPLES,
    OPT_MAX_DEVICE_SHARE,
    OPT_MAX_UPDATE_NORM,
    OPT_PENALTY_AFTER,
    OPT_PENALTY_ROUNDS,
    OPT_MAX_MESSAGE,
    OPT_CHUNK_BYTES,
    OPT_CHUNK_WINDOW,
    OPT_INLINE_BYTES,
    OPT_MAX_INFLIGHT_CHUNKS,
    OPT_UPLOAD_SLOTS,
    OPT_UPLOAD_STALL_MS,
    OPT_HEARTBEAT_MS,
    OPT_IO_THREADS,
    OPT_BACKLOG,
    OPT_KEEP_VERSIONS,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_METRICS_BIND,
    OPT_METRICS_PORT_FILE,
    OPT_CHECK_CONFIG
};

static const struct option long_options[] = {
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"bind", required_argument, NULL, OPT_BIND},
    {"endpoint-file", required_argument, NULL, OPT_ENDPOINT_FILE},
    {"curve-secret", required_argument, NULL, OPT_CURVE_SECRET},
    {"authorized-keys", required_argument, NULL, OPT_AUTHORIZED_KEYS},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"max-devices-connected", required_argument, NULL,
     OPT_MAX_DEVICES_CONNECTED},
    {"max-msg-rate", required_argument, NULL, OPT_MAX_MSG_RATE},
    {"max-msg-burst", required_argument, NULL, OPT_MAX_MSG_BURST},
    {"min-devices", required_argument, NULL, OPT_MIN_DEVICES},
    {"wait-timeout", required_argument, NULL, OPT_WAIT_TIMEOUT},
    {"fraction", required_argument, NULL, OPT_FRACTION},
    {"max-devices", required_argument, NULL, OPT_MAX_DEVICES},
    {"round-timeout", required_argument, NULL, OPT_ROUND_TIMEOUT},
    {"quorum", required_argument, NULL, OPT_QUORUM},
    {"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
    {"rounds", required_argument, NULL, OPT_ROUNDS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"hidden", required_argument, NULL, OPT_HIDDEN},
    {"density", required_argument, NULL, OPT_DENSITY},
    {"topk", required_argument, NULL, OPT_TOPK},
    {"values", required_argument, NULL, OPT_VALUES},
    {"codec", required_argument, NULL, OPT_CODEC},
    {"error-feedback", required_argument, NULL, OPT_ERROR_FEEDBACK},
    {"momentum-correction", optional_argument, NULL,
     OPT_MOMENTUM_CORRECTION},
    {"density-warmup", required_argument, NULL, OPT_DENSITY_WARMUP},
    {"clip-norm", required_argument, NULL, OPT_CLIP_NORM},
    {"uplink-budget", required_argument, NULL, OPT_UPLINK_BUDGET},
    {"per-tensor", no_argument, NULL, OPT_PER_TENSOR},
    {"allow-device-overrides", no_argument, NULL, OPT_ALLOW_OVERRIDES},
    {"down-density", required_argument, NULL, OPT_DOWN_DENSITY},
    {"down-values", required_argument, NULL, OPT_DOWN_VALUES},
    {"save-broadcast-model", required_argument, NULL,
     OPT_SAVE_BROADCAST_MODEL},
    {"server-lr", required_argument, NULL, OPT_SERVER_LR},
    {"server-momentum", required_argument, NULL, OPT_SERVER_MOMENTUM},
    {"local-epochs", required_argument, NULL, OPT_LOCAL_EPOCHS},
    {"local-steps", required_argument, NULL, OPT_LOCAL_STEPS},
    {"batch-size", required_argument, NULL, OPT_BATCH_SIZE},
    {"lr", required_argument, NULL, OPT_LR},
    {"momentum", required_argument, NULL, OPT_MOMENTUM},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"eval-limit", required_argument, NULL, OPT_EVAL_LIMIT},
    {"report-dir", required_argument, NULL, OPT_REPORT_DIR},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"save-model", required_argument, NULL, OPT_SAVE_MODEL},
    {"save-every-round", no_argument, NULL, OPT_SAVE_EVERY_ROUND},
    {"max-samples", required_argument, NULL, OPT_MAX_SAMPLES},
    {"max-device-share", required_argument, NULL, OPT_MAX_DEVICE_SHARE},
    {"max-update-norm", required_argument, NULL, OPT_MAX_UPDATE_NORM},
    {"penalty-after", required_argument, NULL, OPT_PENALTY_AFTER},
    {"penalty-rounds", required_argument, NULL, OPT_PENALTY_ROUNDS},
    {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
    {"chunk-bytes", required_argument, NULL, OPT_CHUNK_BYTES},
    {"chunk-window", required_argument, NULL, OPT_CHUNK_WINDOW},
    {"inline-bytes", required_argument, NULL, OPT_INLINE_BYTES},
    {"max-inflight-chunks", required_argument, NULL, OPT_MAX_INFLIGHT_CHUNKS},
    {"upload-slots", required_argument, NULL, OPT_UPLOAD_SLOTS},
    {"upload-stall-ms", required_argument, NULL, OPT_UPLOAD_STALL_MS},
    {"heartbeat-ms", required_argument, NULL, OPT_HEARTBEAT_MS},
    {"io-threads", required_argument, NULL, OPT_IO_THREADS},
    {"backlog", required_argument, NULL, OPT_BACKLOG},
    {"keep-versions", required_argument, NULL, OPT_KEEP_VERSIONS},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"metrics-bind", required_argument, NULL, OPT_METRICS_BIND},
    {"metrics-port-file", required_argument, NULL, OPT_METRICS_PORT_FILE},
    {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
    {NULL, 0, NULL, 0}};

void coord_config_defaults(struct coord_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->bind = "tcp://*:5555";
    cfg->endpoint_file = NULL;
    cfg->curve_secret = NULL;
    cfg->authorized_keys = NULL;
    cfg->insecure = false;
    cfg->max_devices_connected = 10000;
    cfg->max_msg_rate = 50;
    cfg->max_msg_burst = 100;
    cfg->max_message = 64 * MiB;
    cfg->chunk_bytes = 256 * 1024;
    cfg->chunk_window = 4;
    cfg->inline_bytes = 64 * 1024;
    cfg->max_inflight_chunks = 64;
    cfg->upload_slots = 8;
    cfg->upload_stall_ms = 30000;
    cfg->heartbeat_ms = 2000;
    cfg->io_threads = 1;
    cfg->backlog = 1024;
    cfg->min_devices = 2;
    cfg->wait_timeout = 120.0;
    cfg->fraction = 1.0;
    cfg->max_devices = 0;
    cfg->round_timeout = 60.0;
    cfg->quorum = 0.5;
    cfg->max_attempts = 3;
    cfg->rounds = 10;
    cfg->seed = 1;
    cfg->max_samples = 1000000;
    cfg->max_device_share = 0.5;
    cfg->max_update_norm = 0;
    cfg->update_norm_factor = 10;
    cfg->penalty_after = 3;
    cfg->penalty_rounds = 5;
    cfg->keep_versions = 4;
    cfg->mlp.input = 784;
    cfg->mlp.nhidden = 2;
    cfg->mlp.hidden[0] = 256;
    cfg->mlp.hidden[1] = 128;
    cfg->mlp.classes = 10;
    cfg->local_epochs = 1;
    cfg->local_steps = 0;
    cfg->batch_size = 32;
    cfg->lr = 0.05;
    cfg->momentum = 0.9;
    cfg->density = 0.01;
    cfg->topk = CMP_TOPK_SAMPLED;
    cfg->values = CMP_VALUE_FP16;
    cfg->codec = CMP_CODEC_ZSTD;
    cfg->level = 1;
    cfg->error_feedback = true;
    cfg->momentum_correction = 0.0;
    cfg->density_warmup = 0;
    cfg->clip_norm = 0.0;
    cfg->uplink_budget = 0;
    cfg->per_tensor = false;
    cfg->allow_overrides = false;
    cfg->down_density = 1.0;
    cfg->down_values = CMP_VALUE_FP32;
    cfg->save_broadcast_model = NULL;
    cfg->server_lr = 1.0;
    cfg->server_momentum = 0.0;
    cfg->data_dir = MDL_DEFAULT_DATA_DIR;
    cfg->eval_limit = 0;
    cfg->report_dir = NULL;
    cfg->state_dir = NULL;
    cfg->save_model = NULL;
    cfg->save_every_round = false;
    cfg->log_level = FL_LOG_INFO;
    cfg->log_format = FL_LOG_TEXT;
}

void coord_config_usage(FILE *out)
{
    fputs(
        "usage: " COORD_PROGRAM " [OPTIONS]\n"
        "\n"
        "Federated-learning coordinator: accepts workers over ZeroMQ, runs\n"
        "training rounds with compressed updates and writes a report.\n"
        "\n"
        "  --config FILE            read 'flag = value' lines from FILE first\n"
        "                           (the command line wins)\n"
        "Network:\n"
        "  --bind ENDPOINT          ROUTER endpoint (tcp://*:5555)\n"
        "  --endpoint-file FILE     write the bound endpoint into FILE\n"
        "  --max-message BYTES      largest message or chunked payload\n"
        "                           accepted; K/M/G suffixes (64M)\n"
        "  --chunk-bytes BYTES      chunk size of large payloads, both\n"
        "                           ways; frames are at most this + 64K;\n"
        "                           one chunk must cross the slowest uplink\n"
        "                           well within 5 x --heartbeat-ms (256K)\n"
        "  --chunk-window N         chunks in flight per transfer (4)\n"
        "  --inline-bytes BYTES     model payloads above it are sent as\n"
        "                           shared chunks (64K; at most --chunk-bytes\n"
        "                           is used)\n"
        "  --max-inflight-chunks N  chunks sent and not yet acknowledged,\n"
        "                           all devices together (64)\n"
        "  --upload-slots N         chunked updates reassembled at a time (8)\n"
        "  --upload-stall-ms MS     a slot whose upload sends no chunk for\n"
        "                           this long is taken back (30000; must\n"
        "                           exceed one chunk on the slowest link)\n"
        "  --heartbeat-ms MS        ZMTP heartbeat interval, timeout 5x;\n"
        "                           0 = off (2000; see docs/scale.md)\n"
        "  --io-threads N           ZeroMQ I/O threads (1)\n"
        "  --backlog N              listen backlog (1024; the kernel clips\n"
        "                           it to net.core.somaxconn)\n",
        out);
    fputs(
        "Security and admission (docs/security.md):\n"
        "  --curve-secret FILE      this coordinator's key pair (from\n"
        "                           fedcomp-keygen): CURVE encryption\n"
        "  --authorized-keys DIR    one NAME.pub per device; NAME is its id;\n"
        "                           re-read on SIGHUP\n"
        "  --insecure               plaintext, no authentication (needed\n"
        "                           when no keys are given)\n"
        "  --max-devices-connected N  devices joined at once; a Hello past\n"
        "                           it gets Reject 51 (10000)\n"
        "  --max-msg-rate R         messages a second per connection, more\n"
        "                           are dropped; 0 = no limit (50)\n"
        "  --max-msg-burst B        messages a connection may send at once\n"
        "                           (100)\n",
        out);
    fputs(
        "Devices and rounds:\n"
        "  --min-devices N          devices needed to open a round (2)\n"
        "  --wait-timeout S         seconds to wait for them, 0 = forever;\n"
        "                           exit 3 when not met (120)\n"
        "  --fraction F             fraction of joined devices per round (1.0)\n"
        "  --max-devices N          cohort cap, 0 = none (0)\n"
        "  --round-timeout S        round deadline in seconds (60)\n"
        "  --quorum Q               fraction of the cohort needed to close at\n"
        "                           the deadline (0.5)\n"
        "  --max-attempts N         attempts per round before giving up with\n"
        "                           exit 4 (3)\n"
        "  --rounds N               rounds to train (10)\n"
        "  --seed N                 model init, cohorts, batch seeds (1)\n"
        "  --max-samples N          largest sample count accepted (1000000)\n"
        "Safe aggregation:\n"
        "  --max-device-share F     largest share of a round's weight one\n"
        "                           update carries, in [0.05, 1] (0.5)\n"
        "  --max-update-norm SPEC   refuse updates above an L2 norm: X,\n"
        "                           adaptive:M (M x last round's median),\n"
        "                           both as X,adaptive:M, or off "
        "(adaptive:10)\n"
        "  --penalty-after N        refusals in a row that put a device in\n"
        "                           the penalty box, 0 = never (3)\n"
        "  --penalty-rounds R       rounds a device in the box is ignored "
        "(5)\n"
        "  --keep-versions N        model versions kept for delta downloads "
        "(4)\n"
        "Model and local training:\n"
        "  --hidden LIST            hidden layer sizes (256,128)\n"
        "  --local-epochs N         local epochs per round (1)\n"
        "  --local-steps N          local steps instead of epochs, 0 = off (0)\n"
        "  --batch-size N           local batch size (32)\n"
        "  --lr X                   local learning rate (0.05)\n"
        "  --momentum X             local SGD momentum (0.9)\n"
        "Compression of updates:\n"
        "  --density D              fraction of entries sent (0.01)\n"
        "  --topk exact|sampled     selection method (sampled)\n"
        "  --values fp32|fp16|bf16|int8  value coding (fp16)\n"
        "  --codec none|lz4|zstd[:LEVEL] codec, also for models sent "
        "(zstd:1)\n"
        "  --error-feedback on|off  keep what was not sent (on)\n"
        "  --momentum-correction[=F] DGC momentum correction with factor F\n"
        "                           (off; F defaults to 0.9)\n"
        "  --density-warmup N       rounds of density decaying from 0.25 to\n"
        "                           --density, 0 = off (0)\n"
        "  --clip-norm X            clip each local update's L2 norm, 0 = off\n"
        "  --per-tensor             top-k per tensor instead of global\n"
        "  --uplink-budget BYTES    update bytes per round, split evenly over\n"
        "                           the cohort; K/M/G suffixes, 0 = off (0)\n"
        "  --allow-device-overrides let workers use their own settings\n"
        "Downlink (lossy = server-side error feedback):\n"
        "  --down-density D         fraction of the model change sent per\n"
        "                           round, 1 = lossless (1)\n"
        "  --down-values fp32|fp16|bf16|int8  its value coding (fp32)\n"
        "  --save-broadcast-model FILE  save the model the devices hold at\n"
        "                           the end (equals --save-model when\n"
        "                           lossless)\n"
        "Server step:\n"
        "  --server-lr X            server learning rate (1.0)\n"
        "  --server-momentum X      server momentum, 0 = off (0)\n",
        out);
    /* two strings: ISO C guarantees string literals of 4095 bytes only */
    fputs(
        "Evaluation, reports, files:\n"
        "  --data-dir DIR           Fashion-MNIST directory\n"
        "                           (" MDL_DEFAULT_DATA_DIR ")\n"
        "  --eval-limit N           evaluate on the first N test images,\n"
        "                           0 = all (0)\n"
        "  --report-dir DIR         write rounds.csv, rounds.jsonl, "
        "devices.csv,\n"
        "                           summary.txt into DIR (none)\n"
        "  --state-dir DIR          checkpoint after every round into DIR and\n"
        "                           resume from it on start (none)\n"
        "  --save-model FILE        save the final model into FILE\n"
        "  --save-every-round       also save FILE.roundN after each round\n"
        "  --log-level LEVEL        debug|info|notice|warn|err (info)\n"
        "  --log-format text|json   log line format (text)\n"
        "Metrics:\n"
        "  --metrics-bind HOST:PORT serve Prometheus metrics at /metrics\n"
        "                           (off; port 0 picks a free port)\n"
        "  --metrics-port-file FILE write the metrics port into FILE\n"
        "  --check-config           print the effective settings and exit\n"
        "  -h, --help               this text\n"
        "  -V, --version            print the version\n"
        "\n"
        "Exit codes: 0 ok, 1 runtime error, 2 usage, 3 not enough devices in\n"
        "time, 4 too many failed attempts of a round.\n",
        out);
}

void coord_codec_format(enum cmp_codec codec, int level, char *buf,
                        size_t len)
{
    if (codec == CMP_CODEC_ZSTD)
        snprintf(buf, len, "zstd:%d", level);
    else if (codec == CMP_CODEC_LZ4)
        snprintf(buf, len, "lz4");
    else if (codec == CMP_CODEC_NONE)
        snprintf(buf, len, "none");
    else
        snprintf(buf, len, "codec%d", (int)codec);
}

size_t coord_config_frame_limit(const struct coord_config *cfg)
{
    return FL_MIN(cfg->max_message, cfg->chunk_bytes + COORD_FRAME_OVERHEAD);
}

bool coord_config_lossy_downlink(const struct coord_config *cfg)
{
    return cfg->down_density < 1.0 || cfg->down_values != CMP_VALUE_FP32;
}

double coord_density_for_round(double target, uint32_t warmup,
                               uint64_t round)
{
    const double start = 0.25;
    if (warmup == 0 || round == 0 || round > warmup || target >= start)
        return target;
    if (warmup == 1)
        return start;
    const double t = (double)(round - 1) / (double)(warmup - 1);
    const double d = start * pow(target / start, t);
    return d < target ? target : d;
}

/* ---- parsing helpers: each writes a message naming the flag */

/* --momentum-correction takes an optional factor, either as
 * --momentum-correction=F or as a following argument that is a number. */
static enum fl_err get_momentum_correction(struct coord_config *cfg, int argc,
                                           char **argv, char *err,
                                           size_t errlen)
{
    const char *s = optarg != NULL && optarg[0] != '\0' ? optarg : NULL;
    double v = 0;
    if (s == NULL && optind < argc &&
        fl_parse_double(argv[optind], 0.0, 1.0, &v) == FL_OK) {
        s = argv[optind];
        optind++;
    }
    if (s == NULL) {
        cfg->momentum_correction = 0.9;
        return FL_OK;
    }
    FL_FORWARD_ERR(fl_flag_double("momentum-correction", s, 0.0, 0.999, false, &v,
                                  err, errlen));
    cfg->momentum_correction = v;
    return FL_OK;
}

static enum fl_err parse_codec(struct coord_config *cfg, const char *s,
                               char *err, size_t errlen)
{
    enum cmp_codec codec;
    int level = 0;
    if (cmp_codec_parse(s, &codec, &level) != 0)
        return fl_flag_err(err, errlen,
                           "--codec: '%s' is not none, lz4 or zstd[:LEVEL]", s);
    if (codec == CMP_CODEC_ZSTD) {
        if (strchr(s, ':') == NULL)
            level = 1;
        if (level < CMP_ZSTD_LEVEL_MIN || level > CMP_ZSTD_LEVEL_MAX)
            return fl_flag_err(err, errlen,
                               "--codec: zstd level in '%s' is not in [%d, %d]",
                               s, CMP_ZSTD_LEVEL_MIN, CMP_ZSTD_LEVEL_MAX);
    }
    cfg->codec = codec;
    cfg->level = codec == CMP_CODEC_ZSTD ? level : 0;
    return FL_OK;
}

static enum fl_err parse_hidden(struct coord_config *cfg, const char *s,
                                char *err, size_t errlen)
{
    struct mdl_mlp_config mlp = cfg->mlp;
    if (mdl_mlp_parse_hidden(s, &mlp) != 0 || mlp.nhidden > MDL_MAX_HIDDEN)
        return fl_flag_err(err, errlen,
                           "--hidden: '%s' is not a list of up to %d layer "
                           "sizes like 256,128",
                           s, MDL_MAX_HIDDEN);
    for (uint32_t i = 0; i < mlp.nhidden; i++) {
        if (mlp.hidden[i] == 0 || mlp.hidden[i] > 65536)
            return fl_flag_err(err, errlen,
                               "--hidden: layer size %u in '%s' is not in "
                               "[1, 65536]",
                               mlp.hidden[i], s);
    }
    cfg->mlp = mlp;
    return FL_OK;
}

/* --max-update-norm: "off", or up to two comma-separated items, an
 * absolute bound X and/or adaptive:M. */
static enum fl_err parse_norm(struct coord_config *cfg, const char *s,
                              char *err, size_t errlen)
{
    char buf[64];
    double abs_bound = 0, factor = 0;
    const size_t n = strlen(s);
    if (strcmp(s, "off") == 0) {
        cfg->max_update_norm = 0;
        cfg->update_norm_factor = 0;
        return FL_OK;
    }
    if (n == 0 || n >= sizeof(buf))
        goto bad;
    memcpy(buf, s, n + 1);
    char *item = buf;
    for (int i = 0; i < 2 && item != NULL; i++) {
        char *comma = strchr(item, ',');
        if (comma != NULL)
            *comma = '\0';
        if (strncmp(item, "adaptive:", 9) == 0) {
            if (factor > 0 ||
                fl_parse_double(item + 9, 1e-6, 1e12, &factor) != FL_OK)
                goto bad;
        } else if (abs_bound > 0 ||
                   fl_parse_double(item, 1e-30, 1e30, &abs_bound) != FL_OK) {
            goto bad;
        }
        item = comma != NULL ? comma + 1 : NULL;
    }
    if (item != NULL)
        goto bad;
    cfg->max_update_norm = abs_bound;
    cfg->update_norm_factor = factor;
    return FL_OK;
bad:
    return fl_flag_err(err, errlen,
                       "--max-update-norm: '%s' is not off, X, adaptive:M or "
                       "X,adaptive:M (X, M > 0)", s);
}

/* "adaptive:10", "5", "5,adaptive:10" or "off" */
static void format_norm(const struct coord_config *cfg, char *buf,
                        size_t len)
{
    const double x = cfg->max_update_norm, m = cfg->update_norm_factor;
    if (x > 0 && m > 0)
        snprintf(buf, len, "%.17g,adaptive:%.17g", x, m);
    else if (x > 0)
        snprintf(buf, len, "%.17g", x);
    else if (m > 0)
        snprintf(buf, len, "adaptive:%.17g", m);
    else
        snprintf(buf, len, "off");
}

static enum fl_err parse_enum_flag(struct coord_config *cfg, int id,
                                   const char *s, char *err, size_t errlen)
{
    int lvl;
    switch (id) {
    case OPT_TOPK:
        if (cmp_topk_method_parse(s, &cfg->topk) != 0)
            return fl_flag_err(err, errlen,
                               "--topk: '%s' is not exact or sampled", s);
        return FL_OK;
    case OPT_VALUES:
        if (cmp_value_coding_parse(s, &cfg->values) != 0)
            return fl_flag_err(err, errlen,
                               "--values: '%s' is not fp32, fp16, bf16 or "
                               "int8", s);
        return FL_OK;
    case OPT_CODEC:
        return parse_codec(cfg, s, err, errlen);
    case OPT_DOWN_VALUES:
        if (cmp_value_coding_parse(s, &cfg->down_values) != 0)
            return fl_flag_err(err, errlen,
                               "--down-values: '%s' is not fp32, fp16, bf16 "
                               "or int8", s);
        return FL_OK;
    case OPT_LOG_LEVEL:
        lvl = fl_log_level_parse(s);
        if (lvl < 0)
            return fl_flag_err(err, errlen,
                               "--log-level: '%s' is not debug, info, notice, "
                               "warn or err", s);
        cfg->log_level = (enum fl_log_level)lvl;
        return FL_OK;
    case OPT_LOG_FORMAT:
        if (strcmp(s, "text") == 0)
            cfg->log_format = FL_LOG_TEXT;
        else if (strcmp(s, "json") == 0)
            cfg->log_format = FL_LOG_JSON;
        else
            return fl_flag_err(err, errlen,
                               "--log-format: '%s' is not text or json", s);
        return FL_OK;
    default:
        return fl_flag_err(err, errlen, "internal: unhandled option %d", id);
    }
}

static enum fl_err parse_number_flag(struct coord_config *cfg, int id,
                                     const char *s, char *err, size_t errlen)
{
    uint32_t *u32 = NULL;
    const char *name = NULL;
    uint32_t min = 0, max = UINT32_MAX;
    switch (id) {
    case OPT_MIN_DEVICES: u32 = &cfg->min_devices; name = "min-devices";
        min = 1; max = 1000000; break;
    case OPT_MAX_DEVICES: u32 = &cfg->max_devices; name = "max-devices";
        max = 1000000; break;
    case OPT_MAX_ATTEMPTS: u32 = &cfg->max_attempts; name = "max-attempts";
        min = 1; max = 1000; break;
    case OPT_ROUNDS: u32 = &cfg->rounds; name = "rounds"; min = 1;
        max = 10000000; break;
    case OPT_DENSITY_WARMUP: u32 = &cfg->density_warmup;
        name = "density-warmup"; max = 1000000; break;
    case OPT_LOCAL_EPOCHS: u32 = &cfg->local_epochs; name = "local-epochs";
        max = 10000; break;
    case OPT_LOCAL_STEPS: u32 = &cfg->local_steps; name = "local-steps";
        max = 100000000; break;
    case OPT_BATCH_SIZE: u32 = &cfg->batch_size; name = "batch-size";
        min = 1; max = 1000000; break;
    case OPT_EVAL_LIMIT: u32 = &cfg->eval_limit; name = "eval-limit"; break;
    case OPT_KEEP_VERSIONS: u32 = &cfg->keep_versions;
        name = "keep-versions"; min = 1; max = 64; break;
    case OPT_MAX_DEVICES_CONNECTED: u32 = &cfg->max_devices_connected;
        name = "max-devices-connected"; min = 1; max = COORD_DEVICES_MAX;
        break;
    case OPT_PENALTY_AFTER: u32 = &cfg->penalty_after;
        name = "penalty-after"; max = 1000000; break;
    case OPT_PENALTY_ROUNDS: u32 = &cfg->penalty_rounds;
        name = "penalty-rounds"; min = 1; max = 1000000; break;
    case OPT_CHUNK_WINDOW: u32 = &cfg->chunk_window; name = "chunk-window";
        min = 1; max = PB_XFER_MAX_WINDOW; break;
    case OPT_MAX_INFLIGHT_CHUNKS: u32 = &cfg->max_inflight_chunks;
        name = "max-inflight-chunks"; min = 1; max = 1000000; break;
    case OPT_UPLOAD_SLOTS: u32 = &cfg->upload_slots; name = "upload-slots";
        min = 1; max = 4096; break;
    case OPT_UPLOAD_STALL_MS: u32 = &cfg->upload_stall_ms;
        name = "upload-stall-ms"; min = 100; max = 86400000; break;
    case OPT_HEARTBEAT_MS: u32 = &cfg->heartbeat_ms; name = "heartbeat-ms";
        max = 3600000; break;
    case OPT_IO_THREADS: u32 = &cfg->io_threads; name = "io-threads";
        min = 1; max = 64; break;
    case OPT_BACKLOG: u32 = &cfg->backlog; name = "backlog"; min = 1;
        max = 1000000; break;
    default: break;
    }
    if (u32 != NULL)
        return fl_flag_u32(name, s, min, max, u32, err, errlen);

    switch (id) {
    case OPT_SEED:
        return fl_flag_u64("seed", s, 0, UINT64_MAX, &cfg->seed, err, errlen);
    case OPT_MAX_MSG_RATE:
        return fl_flag_double("max-msg-rate", s, 0, 1e9, false, &cfg->max_msg_rate,
                              err, errlen);
    case OPT_MAX_MSG_BURST:
        return fl_flag_double("max-msg-burst", s, 1, 1e9, false,
                              &cfg->max_msg_burst, err, errlen);
    case OPT_MAX_SAMPLES:
        return fl_flag_u64("max-samples", s, 1, UINT32_MAX, &cfg->max_samples,
                           err, errlen);
    case OPT_MAX_DEVICE_SHARE:
        return fl_flag_double("max-device-share", s, 0.05, 1, false,
                              &cfg->max_device_share, err, errlen);
    case OPT_MAX_MESSAGE:
        return fl_flag_bytes("max-message", s, 4096, 64ULL * 1024 * MiB,
                             &cfg->max_message, err, errlen);
    case OPT_CHUNK_BYTES:
        return fl_flag_bytes("chunk-bytes", s, PB_XFER_MIN_CHUNK,
                             PB_XFER_MAX_CHUNK, &cfg->chunk_bytes, err, errlen);
    case OPT_INLINE_BYTES:
        return fl_flag_bytes("inline-bytes", s, 0, PB_XFER_MAX_CHUNK,
                             &cfg->inline_bytes, err, errlen);
    case OPT_WAIT_TIMEOUT:
        return fl_flag_double("wait-timeout", s, 0, 1e7, false, &cfg->wait_timeout,
                              err, errlen);
    case OPT_ROUND_TIMEOUT:
        return fl_flag_double("round-timeout", s, 0, 4e6, true, &cfg->round_timeout,
                              err, errlen);
    case OPT_FRACTION:
        return fl_flag_double("fraction", s, 0, 1, true, &cfg->fraction, err,
                              errlen);
    case OPT_QUORUM:
        return fl_flag_double("quorum", s, 0, 1, false, &cfg->quorum, err, errlen);
    case OPT_DENSITY:
        return fl_flag_double("density", s, 0, 1, true, &cfg->density, err, errlen);
    case OPT_DOWN_DENSITY:
        return fl_flag_double("down-density", s, 0, 1, true, &cfg->down_density,
                              err, errlen);
    case OPT_CLIP_NORM:
        return fl_flag_double("clip-norm", s, 0, 1e30, false, &cfg->clip_norm, err,
                              errlen);
    case OPT_UPLINK_BUDGET:
        return fl_flag_bytes("uplink-budget", s, 0, UINT64_MAX / 2,
                             &cfg->uplink_budget, err, errlen);
    case OPT_SERVER_LR:
        return fl_flag_double("server-lr", s, 0, 1e6, true, &cfg->server_lr, err,
                              errlen);
    case OPT_SERVER_MOMENTUM:
        return fl_flag_double("server-momentum", s, 0, 0.999, false,
                              &cfg->server_momentum, err, errlen);
    case OPT_LR:
        return fl_flag_double("lr", s, 0, 1e6, true, &cfg->lr, err, errlen);
    case OPT_MOMENTUM:
        return fl_flag_double("momentum", s, 0, 0.999, false, &cfg->momentum, err,
                              errlen);
    default:
        return fl_flag_err(err, errlen, "internal: unhandled option %d", id);
    }
}

static enum fl_err parse_one(struct coord_config *cfg, int id, int argc,
                             char **argv, char *err, size_t errlen)
{
    switch (id) {
    case OPT_BIND: cfg->bind = optarg; return FL_OK;
    case OPT_ENDPOINT_FILE: cfg->endpoint_file = optarg; return FL_OK;
    case OPT_CURVE_SECRET: cfg->curve_secret = optarg; return FL_OK;
    case OPT_AUTHORIZED_KEYS: cfg->authorized_keys = optarg; return FL_OK;
    case OPT_INSECURE: cfg->insecure = true; return FL_OK;
    case OPT_DATA_DIR: cfg->data_dir = optarg; return FL_OK;
    case OPT_REPORT_DIR: cfg->report_dir = optarg; return FL_OK;
    case OPT_STATE_DIR: cfg->state_dir = optarg; return FL_OK;
    case OPT_SAVE_MODEL: cfg->save_model = optarg; return FL_OK;
    case OPT_SAVE_EVERY_ROUND: cfg->save_every_round = true; return FL_OK;
    case OPT_SAVE_BROADCAST_MODEL: cfg->save_broadcast_model = optarg;
        return FL_OK;
    case OPT_METRICS_BIND: cfg->metrics_bind = optarg; return FL_OK;
    case OPT_METRICS_PORT_FILE: cfg->metrics_port_file = optarg;
        return FL_OK;
    case OPT_PER_TENSOR: cfg->per_tensor = true; return FL_OK;
    case OPT_ALLOW_OVERRIDES: cfg->allow_overrides = true; return FL_OK;
    case OPT_HIDDEN: return parse_hidden(cfg, optarg, err, errlen);
    case OPT_MAX_UPDATE_NORM: return parse_norm(cfg, optarg, err, errlen);
    case OPT_ERROR_FEEDBACK:
        return fl_flag_onoff("error-feedback", optarg, &cfg->error_feedback, err,
                             errlen);
    case OPT_MOMENTUM_CORRECTION:
        return get_momentum_correction(cfg, argc, argv, err, errlen);
    case OPT_TOPK: case OPT_VALUES: case OPT_CODEC: case OPT_LOG_LEVEL:
    case OPT_LOG_FORMAT: case OPT_DOWN_VALUES:
        return parse_enum_flag(cfg, id, optarg, err, errlen);
    default:
        return parse_number_flag(cfg, id, optarg, err, errlen);
    }
}

void coord_config_release(struct coord_config *cfg)
{
    fl_config_free_argv(cfg->owned_argc, cfg->owned_argv);
    cfg->owned_argv = NULL;
    cfg->owned_argc = 0;
}

enum fl_err coord_config_parse(struct coord_config *cfg, int argc,
                               char **argv, enum coord_action *action,
                               char *err, size_t errlen)
{
    enum fl_err rc = FL_OK;
    bool check = false;
    int c;
    *action = COORD_ACTION_RUN;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    coord_config_release(cfg);
    rc = fl_config_expand(argc, argv, long_options, &cfg->owned_argc,
                          &cfg->owned_argv, err, errlen);
    if (rc != FL_OK)
        return FL_ERR_INVALID_ARG;
    argc = cfg->owned_argc;
    argv = cfg->owned_argv;
    optind = 0; /* GNU: full re-initialisation, so parse can run again */
    opterr = 0;
    for (;;) {
        c = getopt_long(argc, argv, "+:hV", long_options, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            *action = COORD_ACTION_HELP;
            return FL_OK;
        }
        if (c == 'V') {
            *action = COORD_ACTION_VERSION;
            return FL_OK;
        }
        if (c == OPT_CHECK_CONFIG) {
            check = true;
            continue;
        }
        if (c == '?' || c == ':') {
            const char *arg =
                optind > 0 && optind <= argc ? argv[optind - 1] : "?";
            if (c == ':')
                return fl_flag_err(err, errlen, "option '%s' needs a value",
                                   arg);
            return fl_flag_err(err, errlen, "unknown option '%s'", arg);
        }
        rc = parse_one(cfg, c, argc, argv, err, errlen);
        if (rc != FL_OK)
            return rc;
    }
    if (optind < argc)
        return fl_flag_err(err, errlen, "unexpected argument '%s'",
                           argv[optind]);
    rc = coord_config_validate(cfg, err, errlen);
    if (rc == FL_OK && check)
        *action = COORD_ACTION_CHECK_CONFIG;
    return rc;
}

enum fl_err coord_config_validate(const struct coord_config *cfg, char *err,
                                  size_t errlen)
{
    if (cfg->bind == NULL || cfg->bind[0] == '\0')
        return fl_flag_err(err, errlen, "--bind: the endpoint is empty");
    if (cfg->local_epochs == 0 && cfg->local_steps == 0)
        return fl_flag_err(err, errlen,
                           "--local-epochs and --local-steps are both 0: "
                           "workers would not train");
    if (cfg->max_devices != 0 && cfg->max_devices < cfg->min_devices)
        return fl_flag_err(err, errlen,
                           "--max-devices %u is below --min-devices %u",
                           cfg->max_devices, cfg->min_devices);
    if (cfg->save_every_round && cfg->save_model == NULL)
        return fl_flag_err(err, errlen,
                           "--save-every-round needs --save-model FILE");
    if (!(cfg->density > 0 && cfg->density <= 1))
        return fl_flag_err(err, errlen, "--density: %g is not in (0, 1]",
                           cfg->density);
    if (!(cfg->fraction > 0 && cfg->fraction <= 1))
        return fl_flag_err(err, errlen, "--fraction: %g is not in (0, 1]",
                           cfg->fraction);
    if (!(cfg->quorum >= 0 && cfg->quorum <= 1))
        return fl_flag_err(err, errlen, "--quorum: %g is not in [0, 1]",
                           cfg->quorum);
    if (!(cfg->round_timeout > 0))
        return fl_flag_err(err, errlen, "--round-timeout must be above 0");
    if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0')
        return fl_flag_err(err, errlen, "--data-dir: the path is empty");
    if (cfg->report_dir != NULL && cfg->report_dir[0] == '\0')
        return fl_flag_err(err, errlen, "--report-dir: the path is empty");
    if (cfg->state_dir != NULL && cfg->state_dir[0] == '\0')
        return fl_flag_err(err, errlen, "--state-dir: the path is empty");
    if (cfg->save_model != NULL && cfg->save_model[0] == '\0')
        return fl_flag_err(err, errlen, "--save-model: the path is empty");
    if (!(cfg->down_density > 0 && cfg->down_density <= 1))
        return fl_flag_err(err, errlen, "--down-density: %g is not in (0, 1]",
                           cfg->down_density);
    if (cfg->save_broadcast_model != NULL &&
        cfg->save_broadcast_model[0] == '\0')
        return fl_flag_err(err, errlen,
                           "--save-broadcast-model: the path is empty");
    if (cfg->endpoint_file != NULL && cfg->endpoint_file[0] == '\0')
        return fl_flag_err(err, errlen, "--endpoint-file: the path is empty");
    if (cfg->curve_secret != NULL && cfg->curve_secret[0] == '\0')
        return fl_flag_err(err, errlen, "--curve-secret: the path is empty");
    if (cfg->authorized_keys != NULL && cfg->authorized_keys[0] == '\0')
        return fl_flag_err(err, errlen, "--authorized-keys: the path is empty");
    if (cfg->metrics_bind != NULL && cfg->metrics_bind[0] == '\0')
        return fl_flag_err(err, errlen, "--metrics-bind: the address is empty");
    if (cfg->metrics_port_file != NULL &&
        (cfg->metrics_port_file[0] == '\0' || cfg->metrics_bind == NULL))
        return fl_flag_err(err, errlen,
                           "--metrics-port-file needs a path and "
                           "--metrics-bind");
    return FL_OK;
}

/* ---- --check-config */

static void print_str(FILE *out, const char *key, const char *v)
{
    if (v != NULL)
        fprintf(out, "%s = %s\n", key, v);
    else
        fprintf(out, "# %s = (not set)\n", key);
}

/* The shortest text that reads back as the same double. */
static void print_dbl(FILE *out, const char *key, double v)
{
    char buf[40];
    snprintf(buf, sizeof(buf), "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, sizeof(buf), "%.17g", v);
    fprintf(out, "%s = %s\n", key, buf);
}

static const char *onoff(bool b) { return b ? "true" : "false"; }

static void print_network(const struct coord_config *cfg, FILE *out)
{
    print_str(out, "bind", cfg->bind);
    print_str(out, "endpoint-file", cfg->endpoint_file);
    print_str(out, "curve-secret", cfg->curve_secret);
    print_str(out, "authorized-keys", cfg->authorized_keys);
    fprintf(out, "insecure = %s\n", onoff(cfg->insecure));
    fprintf(out, "max-devices-connected = %u\n", cfg->max_devices_connected);
    print_dbl(out, "max-msg-rate", cfg->max_msg_rate);
    print_dbl(out, "max-msg-burst", cfg->max_msg_burst);
    fprintf(out, "max-message = %zu\n", cfg->max_message);
    fprintf(out, "chunk-bytes = %zu\n", cfg->chunk_bytes);
    fprintf(out, "chunk-window = %u\n", cfg->chunk_window);
    fprintf(out, "inline-bytes = %zu\n", cfg->inline_bytes);
    fprintf(out, "max-inflight-chunks = %u\n", cfg->max_inflight_chunks);
    fprintf(out, "upload-slots = %u\n", cfg->upload_slots);
    fprintf(out, "upload-stall-ms = %u\n", cfg->upload_stall_ms);
    fprintf(out, "heartbeat-ms = %u\n", cfg->heartbeat_ms);
    fprintf(out, "io-threads = %u\n", cfg->io_threads);
    fprintf(out, "backlog = %u\n", cfg->backlog);
    fprintf(out, "min-devices = %u\n", cfg->min_devices);
    print_dbl(out, "wait-timeout", cfg->wait_timeout);
    print_dbl(out, "fraction", cfg->fraction);
    fprintf(out, "max-devices = %u\n", cfg->max_devices);
    print_dbl(out, "round-timeout", cfg->round_timeout);
    print_dbl(out, "quorum", cfg->quorum);
    fprintf(out, "max-attempts = %u\n", cfg->max_attempts);
    fprintf(out, "rounds = %u\n", cfg->rounds);
    fprintf(out, "seed = %llu\n", (unsigned long long)cfg->seed);
    fprintf(out, "max-samples = %llu\n",
            (unsigned long long)cfg->max_samples);
    print_dbl(out, "max-device-share", cfg->max_device_share);
    char norm[96];
    format_norm(cfg, norm, sizeof(norm));
    fprintf(out, "max-update-norm = %s\n", norm);
    fprintf(out, "penalty-after = %u\n", cfg->penalty_after);
    fprintf(out, "penalty-rounds = %u\n", cfg->penalty_rounds);
    fprintf(out, "keep-versions = %u\n", cfg->keep_versions);
}

static void print_training(const struct coord_config *cfg, FILE *out)
{
    char codec[32];
    fputs("hidden = ", out);
    for (uint32_t i = 0; i < cfg->mlp.nhidden; i++)
        fprintf(out, "%s%u", i > 0 ? "," : "", cfg->mlp.hidden[i]);
    fputc('\n', out);
    fprintf(out, "local-epochs = %u\n", cfg->local_epochs);
    fprintf(out, "local-steps = %u\n", cfg->local_steps);
    fprintf(out, "batch-size = %u\n", cfg->batch_size);
    print_dbl(out, "lr", cfg->lr);
    print_dbl(out, "momentum", cfg->momentum);
    print_dbl(out, "density", cfg->density);
    fprintf(out, "topk = %s\n", cmp_topk_method_name(cfg->topk));
    fprintf(out, "values = %s\n", cmp_value_coding_name(cfg->values));
    coord_codec_format(cfg->codec, cfg->level, codec, sizeof(codec));
    fprintf(out, "codec = %s\n", codec);
    fprintf(out, "error-feedback = %s\n", cfg->error_feedback ? "on" : "off");
    print_dbl(out, "momentum-correction", cfg->momentum_correction);
    fprintf(out, "density-warmup = %u\n", cfg->density_warmup);
    print_dbl(out, "clip-norm", cfg->clip_norm);
    fprintf(out, "uplink-budget = %zu\n", cfg->uplink_budget);
    fprintf(out, "per-tensor = %s\n", onoff(cfg->per_tensor));
    fprintf(out, "allow-device-overrides = %s\n", onoff(cfg->allow_overrides));
    print_dbl(out, "server-lr", cfg->server_lr);
    print_dbl(out, "server-momentum", cfg->server_momentum);
    print_dbl(out, "down-density", cfg->down_density);
    fprintf(out, "down-values = %s\n",
            cmp_value_coding_name(cfg->down_values));
}

static void print_files(const struct coord_config *cfg, FILE *out)
{
    static const char *const levels[] = {"debug", "info", "notice", "warn",
                                         "err", "err"};
    print_str(out, "data-dir", cfg->data_dir);
    fprintf(out, "eval-limit = %u\n", cfg->eval_limit);
    print_str(out, "report-dir", cfg->report_dir);
    print_str(out, "state-dir", cfg->state_dir);
    print_str(out, "save-model", cfg->save_model);
    print_str(out, "save-broadcast-model", cfg->save_broadcast_model);
    fprintf(out, "save-every-round = %s\n", onoff(cfg->save_every_round));
    fprintf(out, "log-level = %s\n",
            (unsigned)cfg->log_level < FL_ARRAY_LEN(levels)
                ? levels[cfg->log_level]
                : "info");
    fprintf(out, "log-format = %s\n",
            cfg->log_format == FL_LOG_JSON ? "json" : "text");
    print_str(out, "metrics-bind", cfg->metrics_bind);
    print_str(out, "metrics-port-file", cfg->metrics_port_file);
}

void coord_config_print(const struct coord_config *cfg, FILE *out)
{
    fputs("# " COORD_PROGRAM " " COORD_VERSION " effective settings\n", out);
    print_network(cfg, out);
    print_training(cfg, out);
    print_files(cfg, out);
}

enum fl_err coord_config_check_security(const struct coord_config *cfg,
                                        char *err, size_t errlen)
{
    const bool secret = cfg->curve_secret != NULL;
    const bool keys = cfg->authorized_keys != NULL;
    if (cfg->insecure && (secret || keys))
        return fl_flag_err(err, errlen,
                           "--insecure cannot be combined with --curve-secret "
                           "or --authorized-keys");
    if (secret != keys)
        return fl_flag_err(err, errlen, "%s needs %s too (docs/security.md)",
                           secret ? "--curve-secret" : "--authorized-keys",
                           secret ? "--authorized-keys DIR"
                                  : "--curve-secret FILE");
    if (!secret && !cfg->insecure)
        return fl_flag_err(err, errlen,
                           "refusing to run without encryption: give "
                           "--curve-secret FILE and --authorized-keys DIR "
                           "(make keys with fedcomp-keygen, docs/security.md), "
                           "or --insecure for plaintext on a trusted network");
    return FL_OK;
}
