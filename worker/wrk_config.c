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

#include "common/fl_config.h"
#include "common/fl_keys.h"
#include "common/fl_util.h"
#include "model/mdl_data.h"

enum {
    OPT_CONNECT = 256,
    OPT_CURVE_KEY,
    OPT_COORDINATOR_KEY,
    OPT_INSECURE,
    OPT_ID,
    OPT_STATE_DIR,
    OPT_DATA_DIR,
    OPT_PARTITION,
    OPT_SHARD,
    OPT_SEED,
    OPT_MIN_SHARD,
    OPT_TRAIN_LIMIT,
    OPT_SAVE_MODEL,
    OPT_DENSITY,
    OPT_TOPK,
    OPT_VALUES,
    OPT_CODEC,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_CHECK_CONFIG,
    OPT_HELLO_TIMEOUT,
    OPT_MAX_MESSAGE,
    OPT_STATS_CSV,
    OPT_TEST_DELAY,
    OPT_TEST_EXIT,
    OPT_HELP,
    OPT_VERSION
};

static const struct option long_opts[] = {
    {"connect", required_argument, NULL, OPT_CONNECT},
    {"curve-key", required_argument, NULL, OPT_CURVE_KEY},
    {"coordinator-key", required_argument, NULL, OPT_COORDINATOR_KEY},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"id", required_argument, NULL, OPT_ID},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"partition", required_argument, NULL, OPT_PARTITION},
    {"shard", required_argument, NULL, OPT_SHARD},
    {"seed", required_argument, NULL, OPT_SEED},
    {"min-shard", required_argument, NULL, OPT_MIN_SHARD},
    {"train-limit", required_argument, NULL, OPT_TRAIN_LIMIT},
    {"save-model", required_argument, NULL, OPT_SAVE_MODEL},
    {"density", required_argument, NULL, OPT_DENSITY},
    {"topk", required_argument, NULL, OPT_TOPK},
    {"values", required_argument, NULL, OPT_VALUES},
    {"codec", required_argument, NULL, OPT_CODEC},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
    {"hello-timeout", required_argument, NULL, OPT_HELLO_TIMEOUT},
    {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
    {"stats-csv", required_argument, NULL, OPT_STATS_CSV},
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
    cfg->log_format = FL_LOG_TEXT;
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
        "  --curve-key FILE      this device's key pair (fedcomp-keygen):\n"
        "                        CURVE encryption and authentication\n"
        "  --coordinator-key FILE  the coordinator's public key (.pub)\n"
        "  --insecure            plaintext (needed when no keys are given)\n"
        "  --id ID               device id, 1-64 of [A-Za-z0-9._:-]\n"
        "                        (default: the --curve-key file's name, or\n"
        "                        random, kept in the state dir)\n"
        "  --state-dir DIR       private state, mode 0700\n"
        "                        (" WRK_DEFAULT_STATE_DIR ")\n"
        "  --data-dir DIR        Fashion-MNIST IDX files\n"
        "                        (" MDL_DEFAULT_DATA_DIR ")\n"
        "  --partition P         iid | dirichlet:ALPHA (iid)\n"
        "  --shard I/N           this device's shard, 0 <= I < N (0/1)\n"
        "  --seed S              partition seed, same on all devices (1)\n"
        "  --min-shard N         minimum samples per shard (1)\n"
        "  --train-limit N       use the first N training images (0 = all)\n"
        "  --save-model FILE     save the model held at exit (the\n"
        "                        coordinator's --save-broadcast-model)\n"
        "  --density D           local override, (0, 1]\n"
        "  --topk M              local override: exact | sampled\n"
        "  --values V            local override: fp32|fp16|bf16|int8\n"
        "  --codec C             local override: none|lz4|zstd[:LEVEL]\n"
        "                        (overrides apply only when the Task allows)\n"
        "  --config FILE         read 'flag = value' lines from FILE first\n"
        "                        (the command line wins)\n"
        "  --log-level L         debug|info|notice|warn|err (info)\n"
        "  --log-format F        text | json (text)\n"
        "  --check-config        print the effective settings and exit\n"
        "  --hello-timeout S     give up (exit 3) without a Welcome after S\n"
        "                        seconds (0 = wait forever)\n"
        "  --max-message BYTES   largest frame accepted (67108864)\n"
        "  --stats-csv FILE      append one row per round: load, train,\n"
        "                        encode and send times, bytes, peak RSS\n"
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
    case OPT_CURVE_KEY:
        *what = "need a key file";
        return copy_str(cfg->curve_key, sizeof(cfg->curve_key), a);
    case OPT_COORDINATOR_KEY:
        *what = "need a key file";
        return copy_str(cfg->coordinator_key, sizeof(cfg->coordinator_key),
                        a);
    case OPT_INSECURE:
        cfg->insecure = true;
        return FL_OK;
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
    case OPT_SAVE_MODEL:
        *what = "need a file path";
        return copy_str(cfg->save_model, sizeof(cfg->save_model), a);
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
    case OPT_LOG_FORMAT:
        *what = "need text or json";
        if (strcmp(a, "text") != 0 && strcmp(a, "json") != 0)
            return FL_ERR_INVALID_ARG;
        cfg->log_format = a[0] == 'j' ? FL_LOG_JSON : FL_LOG_TEXT;
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
    case OPT_STATS_CSV:
        *what = "need a file name";
        return copy_str(cfg->stats_csv, sizeof(cfg->stats_csv), a);
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

static enum fl_err parse_expanded(struct wrk_config *cfg, int argc,
                                  char **argv, enum wrk_action *action,
                                  char *err, size_t errlen)
{
    int opt = 0;
    bool check = false;
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
        if (opt == OPT_CHECK_CONFIG) {
            check = true;
            continue;
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
    if (check)
        *action = WRK_ACTION_CHECK_CONFIG;
    return FL_OK;
}

enum fl_err wrk_config_parse(struct wrk_config *cfg, int argc, char **argv,
                             enum wrk_action *action, char *err,
                             size_t errlen)
{
    char **xargv = NULL;
    int xargc = 0;
    *action = WRK_ACTION_RUN;
    if (fl_config_expand(argc, argv, long_opts, &xargc, &xargv, err,
                         errlen) != FL_OK)
        return FL_ERR_INVALID_ARG;
    const enum fl_err rc = parse_expanded(cfg, xargc, xargv, action, err,
                                          errlen);
    fl_config_free_argv(xargc, xargv);
    return rc;
}

/* ---- --check-config */

static void print_opt_str(FILE *f, const char *key, const char *v)
{
    if (v[0] != '\0')
        fprintf(f, "%s = %s\n", key, v);
    else
        fprintf(f, "# %s = (not set)\n", key);
}

static void print_overrides(const struct wrk_overrides *o, FILE *f)
{
    if (o->has_density)
        fprintf(f, "density = %.9g\n", (double)o->density);
    else
        fputs("# density = (from the task)\n", f);
    if (o->has_topk)
        fprintf(f, "topk = %s\n", cmp_topk_method_name(o->topk));
    else
        fputs("# topk = (from the task)\n", f);
    if (o->has_values)
        fprintf(f, "values = %s\n", cmp_value_coding_name(o->values));
    else
        fputs("# values = (from the task)\n", f);
    if (!o->has_codec)
        fputs("# codec = (from the task)\n", f);
    else if (o->codec == CMP_CODEC_ZSTD && o->level != 0)
        fprintf(f, "codec = zstd:%d\n", o->level);
    else
        fprintf(f, "codec = %s\n", cmp_codec_name(o->codec));
}

void wrk_config_print(const struct wrk_config *cfg, FILE *f)
{
    static const char *const levels[] = {"debug", "info", "notice", "warn",
                                         "err", "err"};
    const struct mdl_partition_config *p = &cfg->partition;
    fputs("# " WRK_VERSION_STRING " effective settings\n", f);
    print_opt_str(f, "connect", cfg->connect);
    print_opt_str(f, "curve-key", cfg->curve_key);
    print_opt_str(f, "coordinator-key", cfg->coordinator_key);
    fprintf(f, "insecure = %s\n", cfg->insecure ? "true" : "false");
    print_opt_str(f, "id", cfg->id);
    print_opt_str(f, "state-dir", cfg->state_dir);
    print_opt_str(f, "data-dir", cfg->data_dir);
    if (p->kind == MDL_PARTITION_DIRICHLET) {
        char a[40]; /* the shortest text that reads back the same */
        snprintf(a, sizeof(a), "%.15g", p->alpha);
        if (strtod(a, NULL) != p->alpha)
            snprintf(a, sizeof(a), "%.17g", p->alpha);
        fprintf(f, "partition = dirichlet:%s\n", a);
    } else
        fputs("partition = iid\n", f);
    fprintf(f, "shard = %u/%u\n", cfg->shard, p->nshards);
    fprintf(f, "seed = %" PRIu64 "\n", p->seed);
    fprintf(f, "min-shard = %u\n", p->min_shard);
    fprintf(f, "train-limit = %u\n", cfg->train_limit);
    print_opt_str(f, "save-model", cfg->save_model);
    print_overrides(&cfg->overrides, f);
    fprintf(f, "log-level = %s\n",
            (unsigned)cfg->log_level < FL_ARRAY_LEN(levels)
                ? levels[cfg->log_level]
                : "info");
    fprintf(f, "log-format = %s\n",
            cfg->log_format == FL_LOG_JSON ? "json" : "text");
    fprintf(f, "hello-timeout = %u\n", cfg->hello_timeout_s);
    fprintf(f, "max-message = %zu\n", cfg->max_message);
    print_opt_str(f, "stats-csv", cfg->stats_csv);
    if (cfg->has_test_delay)
        fprintf(f, "test-delay-update = %" PRIu64 ":%u\n",
                cfg->test_delay_round, cfg->test_delay_ms);
    if (cfg->has_test_exit)
        fprintf(f, "test-exit-at-round = %" PRIu64 "\n",
                cfg->test_exit_round);
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
    if (cfg->curve_key[0] != '\0' &&
        fl_keys_name_from_path(cfg->curve_key, cfg->id, sizeof(cfg->id)) ==
            FL_OK)
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

enum fl_err wrk_config_check_security(const struct wrk_config *cfg,
                                      char *err, size_t errlen)
{
    const bool key = cfg->curve_key[0] != '\0';
    const bool coord = cfg->coordinator_key[0] != '\0';
    if (cfg->insecure && (key || coord)) {
        snprintf(err, errlen, "--insecure cannot be combined with "
                 "--curve-key or --coordinator-key");
        return FL_ERR_INVALID_ARG;
    }
    if (key != coord) {
        snprintf(err, errlen, "%s needs %s too (docs/security.md)",
                 key ? "--curve-key" : "--coordinator-key",
                 key ? "--coordinator-key FILE" : "--curve-key FILE");
        return FL_ERR_INVALID_ARG;
    }
    if (!key && !cfg->insecure) {
        snprintf(err, errlen, "refusing to connect without encryption: give "
                 "--curve-key FILE and --coordinator-key FILE (make keys "
                 "with fedcomp-keygen, docs/security.md), or --insecure for "
                 "plaintext on a trusted network");
        return FL_ERR_INVALID_ARG;
    }
    return FL_OK;
}
