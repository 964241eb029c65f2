/*
 * wrk_config.c - command line and device id of the worker (wrk_config.h).
 */
#include "worker/wrk_config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fl_util.h"
#include "model/mdl_data.h"

enum {
    OPT_CONNECT = 256,
    OPT_ID,
    OPT_STATE_DIR,
    OPT_DATA_DIR,
    OPT_PARTITION,
    OPT_SHARD,
    OPT_SEED,
    OPT_MIN_SHARD,
    OPT_TRAIN_LIMIT,
    OPT_DENSITY,
    OPT_TOPK,
    OPT_VALUES,
    OPT_CODEC,
    OPT_LOG_LEVEL,
    OPT_HELLO_TIMEOUT,
    OPT_MAX_MESSAGE,
    OPT_TEST_DELAY,
    OPT_TEST_EXIT,
    OPT_HELP,
    OPT_VERSION
};

static const struct option long_opts[] = {
    {"connect", required_argument, NULL, OPT_CONNECT},
    {"id", required_argument, NULL, OPT_ID},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"partition", required_argument, NULL, OPT_PARTITION},
    {"shard", required_argument, NULL, OPT_SHARD},
    {"seed", required_argument, NULL, OPT_SEED},
    {"min-shard", required_argument, NULL, OPT_MIN_SHARD},
    {"train-limit", required_argument, NULL, OPT_TRAIN_LIMIT},
    {"density", required_argument, NULL, OPT_DENSITY},
    {"topk", required_argument, NULL, OPT_TOPK},
    {"values", required_argument, NULL, OPT_VALUES},
    {"codec", required_argument, NULL, OPT_CODEC},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"hello-timeout", required_argument, NULL, OPT_HELLO_TIMEOUT},
    {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
    {"test-delay-update", required_argument, NULL, OPT_TEST_DELAY},
    {"test-exit-at-round", required_argument, NULL, OPT_TEST_EXIT},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0}};

void wrk_config_defaults(struct wrk_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->connect, sizeof(cfg->connect), "%s", WRK_DEFAULT_CONNECT);
    snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s",
             WRK_DEFAULT_STATE_DIR);
    snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s",
             MDL_DEFAULT_DATA_DIR);
    cfg->partition.kind = MDL_PARTITION_IID;
    cfg->partition.alpha = 0.5;
    cfg->partition.nshards = 1;
    cfg->partition.seed = 1;
    cfg->partition.min_shard = 1;
    cfg->shard = 0;
    cfg->log_level = FL_LOG_INFO;
    cfg->max_message = WRK_DEFAULT_MAX_MESSAGE;
}

void wrk_config_usage(FILE *f)
{
    fputs(
        "usage: fedcomp-worker [options]\n"
        "\n"
        "A fedcomp edge device: joins the coordinator, trains on its shard\n"
        "of Fashion-MNIST and sends compressed updates.\n"
        "\n"
        "  --connect EP          coordinator endpoint (" WRK_DEFAULT_CONNECT
        ")\n"
        "  --id ID               device id, 1-64 of [A-Za-z0-9._:-]\n"
        "                        (default: random, kept in the state dir)\n"
        "  --state-dir DIR       private state, mode 0700\n"
        "                        (" WRK_DEFAULT_STATE_DIR ")\n"
        "  --data-dir DIR        Fashion-MNIST IDX files\n"
        "                        (" MDL_DEFAULT_DATA_DIR ")\n"
        "  --partition P         iid | dirichlet:ALPHA (iid)\n"
        "  --shard I/N           this device's shard, 0 <= I < N (0/1)\n"
        "  --seed S              partition seed, same on all devices (1)\n"
        "  --min-shard N         minimum samples per shard (1)\n"
        "  --train-limit N       use the first N training images (0 = all)\n"
        "  --density D           local override, (0, 1]\n"
        "  --topk M              local override: exact | sampled\n"
        "  --values V            local override: fp32|fp16|bf16|int8\n"
        "  --codec C             local override: none|lz4|zstd[:LEVEL]\n"
        "                        (overrides apply only when the Task allows)\n"
        "  --log-level L         debug|info|notice|warn|err (info)\n"
        "  --hello-timeout S     give up (exit 3) without a Welcome after S\n"
        "                        seconds (0 = wait forever)\n"
        "  --max-message BYTES   largest frame accepted (67108864)\n"
        "  --test-delay-update R:MS  hold round R's update for MS ms\n"
        "  --test-exit-at-round R    crash (_exit(1)) on round R's Task\n"
        "  --help, --version\n"
        "\n"
        "exit status: 0 done (Bye or signal), 1 error, 2 usage,\n"
        "             3 no Welcome within --hello-timeout\n",
        f);
}

bool wrk_device_id_valid(const char *id)
{
    const size_t n = strlen(id);
    if (n == 0 || n > WRK_DEVICE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        const char c = id[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                        c == ':' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static enum fl_err copy_str(char *dst, size_t cap, const char *src)
{
    const size_t n = strlen(src);
    if (n == 0 || n >= cap)
        return FL_ERR_INVALID_ARG;
    memcpy(dst, src, n + 1);
    return FL_OK;
}

/* "I/N" with 0 <= I < N. */
static enum fl_err parse_shard(const char *s, uint32_t *shard,
                               uint32_t *nshards)
{
    char buf[64];
    uint64_t i = 0, n = 0;
    const char *slash = strchr(s, '/');
    if (slash == NULL || (size_t)(slash - s) >= sizeof(buf))
        return FL_ERR_INVALID_ARG;
    memcpy(buf, s, (size_t)(slash - s));
    buf[slash - s] = '\0';
    if (fl_parse_u64(slash + 1, 1, 1000000, &n) != FL_OK ||
        fl_parse_u64(buf, 0, n - 1, &i) != FL_OK)
        return FL_ERR_INVALID_ARG;
    *shard = (uint32_t)i;
    *nshards = (uint32_t)n;
    return FL_OK;
}

/* "ROUND:MS". */
static enum fl_err parse_round_ms(const char *s, uint64_t *round,
                                  uint32_t *ms)
{
    char buf[64];
    uint64_t r = 0, m = 0;
    const char *colon = strchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof(buf))
        return FL_ERR_INVALID_ARG;
    memcpy(buf, s, (size_t)(colon - s));
    buf[colon - s] = '\0';
    if (fl_parse_u64(buf, 0, UINT64_MAX, &r) != FL_OK ||
        fl_parse_u64(colon + 1, 0, 3600000, &m) != FL_OK)
        return FL_ERR_INVALID_ARG;
    *round = r;
    *ms = (uint32_t)m;
    return FL_OK;
}

static enum fl_err parse_u32(const char *s, uint64_t min, uint64_t max,
                             uint32_t *out)
{
    uint64_t v = 0;
    const enum fl_err rc = fl_parse_u64(s, min, max, &v);
    if (rc == FL_OK)
        *out = (uint32_t)v;
    return rc;
}

/* One option; err gets the reason when it is not acceptable. */
static enum fl_err apply_opt(struct wrk_config *cfg, int opt, const char *a,
                             const char **what)
{
    struct wrk_overrides *o = &cfg->overrides;
    uint64_t v = 0;
    double d = 0.0;
    int lvl = 0;

    switch (opt) {
    case OPT_CONNECT:
        *what = "need an endpoint such as tcp://host:port";
        return copy_str(cfg->connect, sizeof(cfg->connect), a);
    case OPT_ID:
        *what = "need 1-64 characters of [A-Za-z0-9._:-]";
        if (!wrk_device_id_valid(a))
            return FL_ERR_INVALID_ARG;
        return copy_str(cfg->id, sizeof(cfg->id), a);
    case OPT_STATE_DIR:
        *what = "need a directory path";
        return copy_str(cfg->state_dir, sizeof(cfg->state_dir), a);
    case OPT_DATA_DIR:
        *what = "need a directory path";
        return copy_str(cfg->data_dir, sizeof(cfg->data_dir), a);
    case OPT_PARTITION:
        *what = "need iid or dirichlet:ALPHA with ALPHA > 0";
        return mdl_partition_parse(a, &cfg->partition) == 0
                   ? FL_OK
                   : FL_ERR_INVALID_ARG;
    case OPT_SHARD:
        *what = "need I/N with 0 <= I < N";
        return parse_shard(a, &cfg->shard, &cfg->partition.nshards);
    case OPT_SEED:
        *what = "need an unsigned integer";
        return fl_parse_u64(a, 0, UINT64_MAX, &cfg->partition.seed);
    case OPT_MIN_SHARD:
        *what = "need an integer in [0, 60000]";
        return parse_u32(a, 0, 60000, &cfg->partition.min_shard);
    case OPT_TRAIN_LIMIT:
        *what = "need an integer in [0, 60000]";
        return parse_u32(a, 0, 60000, &cfg->train_limit);
    case OPT_DENSITY:
        *what = "need a number in (0, 1]";
        if (fl_parse_double(a, 0.0, 1.0, &d) != FL_OK || d <= 0.0)
            return FL_ERR_INVALID_ARG;
        o->has_density = true;
        o->density = (float)d;
        return FL_OK;
    case OPT_TOPK:
        *what = "need exact or sampled";
        o->has_topk = cmp_topk_method_parse(a, &o->topk) == 0;
        return o->has_topk ? FL_OK : FL_ERR_INVALID_ARG;
    case OPT_VALUES:
        *what = "need fp32, fp16, bf16 or int8";
        o->has_values = cmp_value_coding_parse(a, &o->values) == 0;
        return o->has_values ? FL_OK : FL_ERR_INVALID_ARG;
    case OPT_CODEC:
        *what = "need none, lz4, zstd or zstd:LEVEL";
        o->has_codec = cmp_codec_parse(a, &o->codec, &o->level) == 0;
        return o->has_codec ? FL_OK : FL_ERR_INVALID_ARG;
    case OPT_LOG_LEVEL:
        *what = "need debug, info, notice, warn or err";
        lvl = fl_log_level_parse(a);
        if (lvl < 0)
            return FL_ERR_INVALID_ARG;
        cfg->log_level = (enum fl_log_level)lvl;
        return FL_OK;
    case OPT_HELLO_TIMEOUT:
        *what = "need seconds in [0, 86400]";
        return parse_u32(a, 0, 86400, &cfg->hello_timeout_s);
    case OPT_MAX_MESSAGE:
        *what = "need bytes in [65536, 2147483647]";
        if (fl_parse_u64(a, 65536, INT32_MAX, &v) != FL_OK)
            return FL_ERR_INVALID_ARG;
        cfg->max_message = (size_t)v;
        return FL_OK;
    case OPT_TEST_DELAY:
        *what = "need ROUND:MS";
        cfg->has_test_delay = parse_round_ms(a, &cfg->test_delay_round,
                                             &cfg->test_delay_ms) == FL_OK;
        return cfg->has_test_delay ? FL_OK : FL_ERR_INVALID_ARG;
    case OPT_TEST_EXIT:
        *what = "need a round number";
        cfg->has_test_exit =
            fl_parse_u64(a, 0, UINT64_MAX, &cfg->test_exit_round) == FL_OK;
        return cfg->has_test_exit ? FL_OK : FL_ERR_INVALID_ARG;
    default:
        *what = "unknown option";
        return FL_ERR_INVALID_ARG;
    }
}

static const char *opt_name(int opt)
{
    for (size_t i = 0; long_opts[i].name != NULL; i++) {
        if (long_opts[i].val == opt)
            return long_opts[i].name;
    }
    return "?";
}

enum fl_err wrk_config_parse(struct wrk_config *cfg, int argc, char **argv,
                             enum wrk_action *action, char *err,
                             size_t errlen)
{
    int opt = 0;
    *action = WRK_ACTION_RUN;
    opterr = 0;
    optind = 0; /* GNU: full re-initialisation, so tests can parse twice */
    for (;;) {
        const char *what = "";
        opt = getopt_long(argc, argv, "", long_opts, NULL);
        if (opt == -1)
            break;
        if (opt == OPT_HELP || opt == OPT_VERSION) {
            *action = opt == OPT_HELP ? WRK_ACTION_HELP : WRK_ACTION_VERSION;
            return FL_OK;
        }
        if (opt == '?' || opt == ':') {
            /* getopt has stepped past the offending element */
            const int at = FL_MAX(1, FL_MIN(optind - 1, argc - 1));
            snprintf(err, errlen, "unknown option or missing value '%s'",
                     argv[at]);
            return FL_ERR_INVALID_ARG;
        }
        if (apply_opt(cfg, opt, optarg, &what) != FL_OK) {
            snprintf(err, errlen, "invalid value '%s' for --%s: %s", optarg,
                     opt_name(opt), what);
            return FL_ERR_INVALID_ARG;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return FL_ERR_INVALID_ARG;
    }
    return FL_OK;
}

static enum fl_err random_id(char *out, size_t cap)
{
    uint8_t b[8];
    size_t got = 0;
    const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FL_ERR_IO;
    while (got < sizeof(b)) {
        const ssize_t r = read(fd, b + got, sizeof(b) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            return FL_ERR_IO;
        }
        got += (size_t)r;
    }
    close(fd);
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(b); i++)
        v = (v << 8) | b[i];
    snprintf(out, cap, "dev-%016" PRIx64, v);
    return FL_OK;
}

enum fl_err wrk_config_device_id(struct wrk_config *cfg, bool *created,
                                 char *err, size_t errlen)
{
    char path[WRK_PATH_MAX + 16];
    void *data = NULL;
    size_t len = 0;
    enum fl_err rc = FL_OK;

    *created = false;
    rc = fl_mkdir_p(cfg->state_dir, 1);
    if (rc != FL_OK) {
        snprintf(err, errlen, "cannot create state dir '%s': %s",
                 cfg->state_dir, strerror(errno));
        return rc;
    }
    if (cfg->id[0] != '\0')
        return FL_OK;
    snprintf(path, sizeof(path), "%s/device-id", cfg->state_dir);
    rc = fl_file_read(path, 256, &data, &len);
    if (rc == FL_OK) {
        char *s = data;
        while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
            s[--len] = '\0';
        if (!wrk_device_id_valid(s)) {
            snprintf(err, errlen, "invalid device id in '%s'", path);
            rc = FL_ERR_FORMAT;
        } else {
            memcpy(cfg->id, s, len + 1);
        }
        free(data);
        return rc;
    }
    if (rc != FL_ERR_NOT_FOUND) {
        snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        return rc;
    }
    rc = random_id(cfg->id, sizeof(cfg->id));
    if (rc == FL_OK) {
        char line[WRK_DEVICE_ID_MAX + 2];
        const int n = snprintf(line, sizeof(line), "%s\n", cfg->id);
        rc = fl_file_write_atomic(path, line, (size_t)n);
    }
    if (rc != FL_OK) {
        snprintf(err, errlen, "cannot store a new device id in '%s': %s",
                 path, strerror(errno));
        cfg->id[0] = '\0';
        return rc;
    }
    *created = true;
    return FL_OK;
}
