/*
 * fedcomp-router-baseline: the transport cost of a coordinator, without the
 * coordinator. A plain ROUTER (the same socket options as the coordinator)
 * that receives and counts the messages a coordinator receives, and sends
 * the same downlink, from precomputed frames:
 *   Hello  -> a precomputed Welcome (with the chunk geometry); once
 *             --min-devices have joined (all of them by default, like the
 *             coordinator's first round), the Task of round 1 (the full
 *             model, version 1) to every device joined, and to later ones
 *             at their Hello
 *   Update -> the Task of the device's next round (an XOR delta of the
 *             model against the previous version), or Bye after --rounds
 * Transfers (docs/protocol.md "Transfers"), as the coordinator does them:
 * a model payload over --inline-bytes is announced in the Task and sent as
 * Chunk frames of --chunk-bytes, packed once per model version and queued
 * to every device from the same buffers (zmq_send_const, no copy); the
 * first --chunk-window go at once, the rest as the device's Credits come
 * in, with at most --max-inflight-chunks in flight over all devices.
 * Devices waiting for that cap are served in the order they asked, those
 * whose download has begun before those not started (as the coordinator's
 * scheduler, coordinator/coord_xfer.h), so downloads finish early. An
 * announced Update is granted (Credit{received = 0}) at once, each of its
 * chunks is checked (seq, total, length) and credited, and the complete
 * upload counts as the Update.
 *
 * It never parses or decodes an inline Update: the body type is read from
 * the envelope's third byte (field 1 = version comes first, then the body
 * field, as protobuf-c writes them). Only the small messages of the
 * transfer protocol are parsed (Credits, Chunks, announcements). The model
 * evolves by changing a fixed set of --delta-fraction of the parameters
 * per version, like a coordinator that aggregates the swarm's few distinct
 * updates.
 *
 * At the end it prints and writes (--report) messages, bytes, CPU time per
 * message and per update, and the peak RSS (getrusage ru_maxrss). CPU
 * time is of every thread of the process; the baseline figures
 * (cpu_us_per_msg, cpu_us_per_update) cover the rounds, as the
 * coordinator's rounds.csv cpu_s does: from the first Task (when
 * --min-devices joined) to the last Bye, with the messages received in
 * that span. The same over the whole run (first message to exit, joins
 * and teardown included) are the *_run figures.
 * Exit codes: 0 every device got its Bye, 1 not (timeout or signal),
 * 2 usage or setup error.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>

#include <zmq.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_log.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "compress/cmp_types.h"
#include "proto/pb_msg.h"
#include "proto/pb_xfer.h"

#define PROGRAM "fedcomp-router-baseline"
#define VERSION "0.2.0"
#define NS_PER_MS 1000000ULL
#define NS_PER_S 1000000000ULL
#define RECV_BATCH 1024
#define RID_MAX 32            /* ROUTER-made ids are 5 bytes */
#define TAG_HELLO 0x52        /* field 10, length-delimited */
#define TAG_UPDATE 0x6a       /* field 13 */
#define TAG_BYE 0x7a          /* field 15 */
#define TAG2_CHUNK 0x82       /* field 16: 0x82 0x01 */
#define TAG2_CREDIT 0x8a      /* field 17: 0x8a 0x01 */
#define ANNOUNCE_MAX 1024     /* an announced Update is smaller than this */
#define FRAME_SLACK (64u << 10) /* ZMQ_MAXMSGSIZE = chunk + this */
#define NO_DEV UINT32_MAX
#define Q_STARTED 0
#define Q_NEW 1

struct options {
    const char *bind;
    const char *endpoint_file;
    const char *report;
    uint32_t devices;
    uint32_t min_devices;     /* 0 = devices */
    uint64_t dimension;
    uint32_t rounds;
    double delta_fraction;
    double density;
    enum cmp_value_coding values;
    enum cmp_codec codec;
    int level;
    uint32_t timeout_ms;
    uint32_t backlog;
    uint32_t heartbeat_ms;    /* ZMTP heartbeat interval, 0 = off */
    uint32_t io_threads;
    uint32_t chunk_bytes;     /* 0 = every payload inline */
    uint32_t chunk_window;
    uint32_t inline_bytes;
    uint32_t max_inflight;    /* chunks in flight over all devices */
    uint32_t stall_ms;        /* a download without credit this long ends */
    double max_seconds;
    uint64_t seed;
    enum fl_log_level log_level;
};

struct frame {
    uint8_t *buf;
    size_t len;
};

/* The Task of one round (model version) and, when its payload is
 * announced, the chunks every device is sent from. */
struct content {
    struct frame task;
    struct frame *chunks;     /* NULL: model inline */
    uint32_t nchunks;
    uint64_t transfer;        /* the id naming this content */
    size_t payload_bytes;
};

struct dev {
    uint8_t len;
    uint8_t rid[RID_MAX];
    uint32_t round;           /* the round of the Task last sent */
    bool pending;             /* that Task is not answered yet */
    bool queued;              /* waiting for the in-flight cap */
    uint32_t qnext;           /* FIFO link */
    /* download: the chunks of contents[down] */
    uint32_t down;            /* 0: none */
    uint32_t next;            /* next seq to send */
    uint32_t acked;           /* credited */
    uint32_t limit;           /* seq < limit may be sent */
    uint64_t last_ns;         /* chunks went out to an idle window, or the
                               * last credit came */
    /* upload of an announced Update */
    uint64_t up_transfer;     /* 0: none */
    uint64_t up_bytes;
    uint32_t up_total;
    uint32_t up_received;
};

struct stats {
    uint64_t msgs_in, hellos, updates, byes_in, other_in, bytes_in;
    uint64_t msgs_out, bytes_out, send_failures, byes_out;
    uint64_t unknown_updates;
    uint64_t hellos_again;    /* Hello from a known routing id */
    uint64_t dup_updates;     /* Update without an open Task */
    uint64_t chunks_out, chunk_bytes_out, credits_in, stale_credits;
    uint64_t downloads, downloads_done, downloads_cut, downloads_stalled;
    uint64_t cap_waits, inflight_max;
    uint64_t uploads, uploads_done, chunks_in, chunk_bytes_in, credits_out;
    uint64_t stale_chunks, transfer_errors, parse_errors;
};

struct router {
    const struct options *o;
    void *zctx;
    void *sock;
    char endpoint[256];
    struct frame welcome;
    struct frame bye;
    struct content *tasks;    /* [1] full model, [2..rounds] deltas */
    struct dev *devs;         /* stable indices */
    size_t ndevs, capdevs;
    uint32_t *tab;            /* rid -> index + 1; 0 empty */
    size_t cap;
    struct pb_limits lim;
    /* devices waiting for the in-flight cap: [Q_STARTED] downloads begun,
     * served first; [Q_NEW] not started */
    uint32_t qhead[2], qtail[2];
    uint64_t inflight;        /* chunks sent, not credited, all devices */
    struct stats st;
    bool started;
    bool opened;              /* min_devices joined: Tasks flow */
    size_t joined;
    struct rusage ru0;        /* first message */
    uint64_t t0_ns;
    struct rusage ru_open;    /* first Task */
    uint64_t open_ns, msgs_open;
    struct rusage ru_close;   /* last Bye */
    uint64_t close_ns, msgs_close;
    bool closed;
    long rss_setup_kb;
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

/* ---- options */

static void usage(FILE *f)
{
    fputs(
        "usage: " PROGRAM " --devices N --dimension D [OPTIONS]\n"
        "\n"
        "A plain ZeroMQ ROUTER that counts what fedcomp-swarm sends and\n"
        "answers with precomputed Welcome, Task, Chunk and Bye frames,\n"
        "without parsing updates: the baseline of the coordinator's\n"
        "per-update cost.\n"
        "\n"
        "  --bind ENDPOINT        endpoint to bind (tcp://127.0.0.1:*)\n"
        "  --endpoint-file FILE   write the bound endpoint into FILE\n"
        "  --devices N            stop when N devices got Bye (required)\n"
        "  --min-devices N        send the first Tasks once N devices have\n"
        "                         joined (default: --devices)\n"
        "  --dimension D          model parameters (required)\n"
        "  --rounds R             Tasks per device before Bye (3)\n"
        "  --delta-fraction F     parameters changed per model version\n"
        "                         (0.04: four distinct 1% updates)\n"
        "  --density F            density asked for in the Task (0.01)\n"
        "  --values CODING        value coding asked for (fp16)\n"
        "  --codec CODEC          model codec and update codec (zstd:1)\n"
        "  --timeout-ms MS        Task.timeout_ms (600000)\n"
        "  --backlog N            ZMQ_BACKLOG (100)\n"
        "  --heartbeat-ms MS      ZMTP heartbeat interval, timeout and TTL\n"
        "                         5x it; 0 = off (2000)\n"
        "  --io-threads N         ZeroMQ I/O threads (1)\n"
        "  --chunk-bytes B        chunk size of transfers, 0 = every\n"
        "                         payload inline (1048576)\n"
        "  --chunk-window W       chunks in flight per transfer (4)\n"
        "  --inline-bytes B       larger model payloads are chunked (65536,\n"
        "                         at most --chunk-bytes)\n"
        "  --max-inflight-chunks N  chunks in flight over all devices (64)\n"
        "  --stall-ms MS          a download without a credit for MS ends\n"
        "                         (its chunks stop counting in flight)\n"
        "                         (30000)\n"
        "  --max-seconds S        give up after S seconds (600)\n"
        "  --seed N               model content (1)\n"
        "  --report FILE          write the JSON figures into FILE\n"
        "  --log-level LEVEL      debug|info|notice|warn|err (notice)\n"
        "  -h, --help, -V, --version\n",
        f);
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int bad(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", PROGRAM);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", PROGRAM);
    return -1;
}

static int num_u64(const char *flag, const char *s, uint64_t min,
                   uint64_t max, uint64_t *out)
{
    if (fl_parse_u64(s, min, max, out) != FL_OK)
        return bad("--%s: '%s' is not a whole number in [%llu, %llu]", flag,
                   s, (unsigned long long)min, (unsigned long long)max);
    return 0;
}

static int num_u32(const char *flag, const char *s, uint32_t min,
                   uint32_t max, uint32_t *out)
{
    uint64_t v = 0;
    if (num_u64(flag, s, min, max, &v) != 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int num_dbl(const char *flag, const char *s, double min, double max,
                   double *out)
{
    if (fl_parse_double(s, min, max, out) != FL_OK)
        return bad("--%s: '%s' is not a number in [%g, %g]", flag, s, min,
                   max);
    return 0;
}

static int parse_codings(struct options *o, int c, const char *s)
{
    int lvl;
    if (c == 'v') {
        if (cmp_value_coding_parse(s, &o->values) != 0)
            return bad("--values: '%s' is not fp32, fp16, bf16 or int8", s);
        return 0;
    }
    if (c == 'c') {
        o->level = 1;
        if (cmp_codec_parse(s, &o->codec, &o->level) != 0 ||
            (o->codec == CMP_CODEC_ZSTD &&
             (o->level < CMP_ZSTD_LEVEL_MIN ||
              o->level > CMP_ZSTD_LEVEL_MAX)))
            return bad("--codec: '%s' is not none, lz4 or zstd[:1-19]", s);
        if (o->codec != CMP_CODEC_ZSTD)
            o->level = 0;
        return 0;
    }
    lvl = fl_log_level_parse(s);
    if (lvl < 0)
        return bad("--log-level: '%s' is not a level", s);
    o->log_level = (enum fl_log_level)lvl;
    return 0;
}

static int parse_transfer_flag(struct options *o, int c, const char *s)
{
    switch (c) {
    case 'C': return num_u32("chunk-bytes", s, 0, PB_XFER_MAX_CHUNK,
                             &o->chunk_bytes);
    case 'W': return num_u32("chunk-window", s, 1, PB_XFER_MAX_WINDOW,
                             &o->chunk_window);
    case 'i': return num_u32("inline-bytes", s, 0, PB_XFER_MAX_CHUNK,
                             &o->inline_bytes);
    case 'X': return num_u32("max-inflight-chunks", s, 1, 1000000,
                             &o->max_inflight);
    case 'S': return num_u32("stall-ms", s, 1, 3600000, &o->stall_ms);
    default: return parse_codings(o, c, s);
    }
}

static int parse_one(struct options *o, int c, const char *s)
{
    switch (c) {
    case 'b': o->bind = s; return 0;
    case 'e': o->endpoint_file = s; return 0;
    case 'r': o->report = s; return 0;
    case 'n': return num_u32("devices", s, 1, 1000000, &o->devices);
    case 'M': return num_u32("min-devices", s, 1, 1000000, &o->min_devices);
    case 'd': return num_u64("dimension", s, 1, UINT32_MAX, &o->dimension);
    case 'R': return num_u32("rounds", s, 1, 100000, &o->rounds);
    case 'f':
        return num_dbl("delta-fraction", s, 0, 1, &o->delta_fraction);
    case 'D':
        if (num_dbl("density", s, 0, 1, &o->density) != 0)
            return -1;
        return o->density > 0 ? 0 : bad("--density: must be above 0");
    case 't': return num_u32("timeout-ms", s, 1, UINT32_MAX, &o->timeout_ms);
    case 'B': return num_u32("backlog", s, 1, 1000000, &o->backlog);
    case 'H': return num_u32("heartbeat-ms", s, 0, 600000, &o->heartbeat_ms);
    case 'I': return num_u32("io-threads", s, 1, 64, &o->io_threads);
    case 'm': return num_dbl("max-seconds", s, 0, 1e7, &o->max_seconds);
    case 's': return num_u64("seed", s, 0, UINT64_MAX, &o->seed);
    default: return parse_transfer_flag(o, c, s);
    }
}

static int check_options(struct options *o)
{
    if (o->devices == 0 || o->dimension == 0)
        return bad("--devices and --dimension are required");
    if (o->min_devices == 0 || o->min_devices > o->devices)
        o->min_devices = o->devices;
    if (o->chunk_bytes != 0 &&
        !pb_xfer_geometry_ok(o->chunk_bytes, o->chunk_window))
        return bad("--chunk-bytes %u: not 0 or in [%u, %u]", o->chunk_bytes,
                   PB_XFER_MIN_CHUNK, PB_XFER_MAX_CHUNK);
    if (o->inline_bytes > o->chunk_bytes)
        o->inline_bytes = o->chunk_bytes;   /* never above a chunk */
    return 0;
}

/* 0 run, 1 exit 0 (help/version printed), -1 usage error. */
static int parse_options(struct options *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"bind", required_argument, NULL, 'b'},
        {"endpoint-file", required_argument, NULL, 'e'},
        {"report", required_argument, NULL, 'r'},
        {"devices", required_argument, NULL, 'n'},
        {"min-devices", required_argument, NULL, 'M'},
        {"dimension", required_argument, NULL, 'd'},
        {"rounds", required_argument, NULL, 'R'},
        {"delta-fraction", required_argument, NULL, 'f'},
        {"density", required_argument, NULL, 'D'},
        {"values", required_argument, NULL, 'v'},
        {"codec", required_argument, NULL, 'c'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"backlog", required_argument, NULL, 'B'},
        {"heartbeat-ms", required_argument, NULL, 'H'},
        {"io-threads", required_argument, NULL, 'I'},
        {"chunk-bytes", required_argument, NULL, 'C'},
        {"chunk-window", required_argument, NULL, 'W'},
        {"inline-bytes", required_argument, NULL, 'i'},
        {"max-inflight-chunks", required_argument, NULL, 'X'},
        {"stall-ms", required_argument, NULL, 'S'},
        {"max-seconds", required_argument, NULL, 'm'},
        {"seed", required_argument, NULL, 's'},
        {"log-level", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    while (true) {
        c = getopt_long(argc, argv, ":hV", opts, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == 'V') {
            printf("%s %s\n", PROGRAM, VERSION);
            return 1;
        }
        if (c == ':' || c == '?')
            return bad("%s: %s", argv[optind - 1],
                       c == ':' ? "missing argument" : "unknown option");
        if (parse_one(o, c, optarg) != 0)
            return -1;
    }
    if (optind < argc)
        return bad("unexpected argument '%s'", argv[optind]);
    return check_options(o);
}

/* ---- precomputed frames */

static enum fl_err pack_frame(const struct pb_envelope *env, struct frame *f)
{
    return pb_pack_alloc(env, &f->buf, &f->len);
}

/* The Task of round `round`; with transfer != 0 its payload is announced
 * (empty payload, payload_transfer, payload_bytes = len). */
static void fill_task(const struct options *o, uint32_t round,
                      const struct cmp_meta *m, const uint8_t *payload,
                      size_t len, uint64_t transfer, struct pb_envelope *env)
{
    memset(env, 0, sizeof(*env));
    env->version = PB_PROTOCOL_VERSION;
    env->body = PB_BODY_TASK;
    struct pb_task *t = &env->task;
    t->round = round;
    t->epoch = o->seed + 1;
    t->model_version = round;
    t->model = (struct pb_tensor){
        .dimension = m->dimension, .k = m->k,
        .index_coding = (uint32_t)m->index_coding,
        .value_coding = (uint32_t)m->value_coding,
        .codec = (uint32_t)m->codec, .raw_size = m->raw_size,
        .checksum = m->checksum,
        .payload = transfer != 0 ? NULL : payload,
        .payload_len = transfer != 0 ? 0 : len,
        .has_base_version = round > 1, .base_version = round - 1,
        .payload_transfer = transfer,
        .payload_bytes = transfer != 0 ? len : 0};
    t->train = (struct pb_train_cfg){.local_epochs = 1, .batch_size = 32,
                                     .lr = 0.05f, .momentum = 0.9f,
                                     .seed = round};
    t->compress = (struct pb_compress_cfg){
        .density = (float)o->density, .topk = CMP_TOPK_SAMPLED,
        .values = (uint32_t)o->values, .codec = (uint32_t)o->codec,
        .level = o->level, .error_feedback = true};
    t->timeout_ms = o->timeout_ms;
    t->last_update = round > 1 ? PB_UPDATE_USED : PB_UPDATE_NONE;
    t->last_update_round = round > 1 ? round - 1 : 0;
}

/* The Task of a round and, when the payload is over --inline-bytes, its
 * chunk frames (transfer id = the round: one id per model content). */
static enum fl_err build_content(const struct options *o, uint32_t round,
                                 const struct cmp_meta *m,
                                 const uint8_t *payload, size_t len,
                                 struct content *c)
{
    struct pb_envelope env;
    const bool chunked = o->chunk_bytes != 0 && len > o->inline_bytes;
    c->transfer = chunked ? round : 0;
    c->payload_bytes = len;
    fill_task(o, round, m, payload, len, c->transfer, &env);
    FL_FORWARD_ERR(pack_frame(&env, &c->task));
    if (!chunked)
        return FL_OK;
    const uint32_t total = pb_xfer_chunks(len, o->chunk_bytes);
    if (total == 0)
        return FL_ERR_TOO_LARGE;
    c->chunks = fl_calloc(total, sizeof(*c->chunks));
    if (c->chunks == NULL)
        return FL_ERR_NOMEM;
    c->nchunks = total;
    for (uint32_t seq = 0; seq < total; seq++) {
        FL_FORWARD_ERR(pb_xfer_pack_chunk(
            c->transfer, seq, total,
            payload + (size_t)seq * o->chunk_bytes,
            pb_xfer_chunk_len(len, o->chunk_bytes, seq), &c->chunks[seq].buf,
            &c->chunks[seq].len));
    }
    return FL_OK;
}

/* Model version 1, then per version a fixed set of positions changes. */
static enum fl_err build_tasks(struct router *r)
{
    const struct options *o = r->o;
    const size_t n = (size_t)o->dimension;
    struct fl_rng rng;
    struct cmp_meta meta;
    const uint8_t *payload = NULL;
    size_t len = 0;
    enum fl_err rc = FL_ERR_NOMEM;
    float *cur = fl_malloc(n * sizeof(float));
    float *prev = fl_malloc(n * sizeof(float));
    uint8_t *change = fl_calloc(n, 1);
    struct cmp_ctx *ctx = cmp_ctx_new();
    r->tasks = fl_calloc((size_t)o->rounds + 1, sizeof(*r->tasks));
    if (cur == NULL || prev == NULL || change == NULL || ctx == NULL ||
        r->tasks == NULL)
        goto out;
    fl_rng_seed(&rng, o->seed);
    for (size_t i = 0; i < n; i++) {
        cur[i] = (float)(0.05 * fl_rng_normal(&rng));
        change[i] = fl_rng_uniform(&rng) < o->delta_fraction;
    }
    for (uint32_t round = 1; round <= o->rounds; round++) {
        if (round > 1) {
            memcpy(prev, cur, n * sizeof(float));
            for (size_t i = 0; i < n; i++)
                cur[i] += change[i] ? (float)(1e-3 * fl_rng_normal(&rng))
                                    : 0.0f;
        }
        rc = cmp_dense_encode(ctx, cur, n, round > 1 ? prev : NULL,
                              o->codec, o->level, &meta, &payload, &len);
        if (rc == FL_OK)
            rc = build_content(o, round, &meta, payload, len,
                               &r->tasks[round]);
        if (rc != FL_OK)
            goto out;
    }
out:
    cmp_ctx_destroy(&ctx);
    fl_free(change);
    fl_free(prev);
    fl_free(cur);
    return rc;
}

static enum fl_err build_frames(struct router *r)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_WELCOME;
    env.welcome.epoch = r->o->seed + 1;
    env.welcome.device_id = "baseline";
    env.welcome.dimension = r->o->dimension;
    env.welcome.heartbeat_ms = r->o->heartbeat_ms;
    env.welcome.current_round = 1;
    env.welcome.chunk_bytes = r->o->chunk_bytes;
    env.welcome.chunk_window = r->o->chunk_bytes != 0 ? r->o->chunk_window
                                                      : 0;
    FL_FORWARD_ERR(pack_frame(&env, &r->welcome));
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_BYE;
    env.bye.reason = "training complete";
    env.bye.last_update = PB_UPDATE_USED;
    env.bye.last_update_round = r->o->rounds;
    FL_FORWARD_ERR(pack_frame(&env, &r->bye));
    return build_tasks(r);
}

/* ---- routing-id table (open addressing, FNV-1a) over stable indices */

static uint64_t rid_hash(const uint8_t *rid, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ rid[i]) * 1099511628211ULL;
    return h;
}

static uint32_t *tab_probe(const struct router *r, uint32_t *tab, size_t cap,
                           const uint8_t *rid, size_t len)
{
    size_t i = (size_t)rid_hash(rid, len) & (cap - 1);
    while (tab[i] != 0) {
        const struct dev *d = &r->devs[tab[i] - 1];
        if (d->len == len && memcmp(d->rid, rid, len) == 0)
            break;
        i = (i + 1) & (cap - 1);
    }
    return &tab[i];
}

static enum fl_err tab_grow(struct router *r)
{
    const size_t cap = r->cap ? r->cap * 2 : 1024;
    uint32_t *t = fl_calloc(cap, sizeof(*t));
    if (t == NULL)
        return FL_ERR_NOMEM;
    for (size_t i = 0; i < r->ndevs; i++)
        *tab_probe(r, t, cap, r->devs[i].rid, r->devs[i].len) =
            (uint32_t)i + 1;
    fl_free(r->tab);
    r->tab = t;
    r->cap = cap;
    return FL_OK;
}

static enum fl_err devs_grow(struct router *r)
{
    const size_t cap = r->capdevs ? r->capdevs * 2 : 1024;
    struct dev *d = fl_realloc(r->devs, cap * sizeof(*d));
    if (d == NULL)
        return FL_ERR_NOMEM;
    r->devs = d;
    r->capdevs = cap;
    return FL_OK;
}

/* The index of rid; created when create is set. NO_DEV when the id is
 * too long, unknown (create false) or memory ran out. */
static uint32_t tab_get(struct router *r, const uint8_t *rid, size_t len,
                        bool create)
{
    if (len == 0 || len > RID_MAX)
        return NO_DEV;
    if (r->cap == 0 || (create && (r->ndevs + 1) * 2 > r->cap)) {
        if (tab_grow(r) != FL_OK)
            return NO_DEV;
    }
    uint32_t *slot = tab_probe(r, r->tab, r->cap, rid, len);
    if (*slot != 0)
        return *slot - 1;
    if (!create || (r->ndevs == r->capdevs && devs_grow(r) != FL_OK))
        return NO_DEV;
    struct dev *d = &r->devs[r->ndevs];
    memset(d, 0, sizeof(*d));
    d->len = (uint8_t)len;
    memcpy(d->rid, rid, len);
    d->qnext = NO_DEV;
    *slot = (uint32_t)++r->ndevs;
    return (uint32_t)(r->ndevs - 1);
}

/* ---- the socket */

static enum fl_err zmq_fail(const char *what)
{
    fl_log(FL_LOG_ERR, "%s: %s", what, zmq_strerror(errno));
    return FL_ERR_ZMQ;
}

static enum fl_err write_endpoint(const struct router *r)
{
    char line[sizeof(r->endpoint) + 1];
    const int n = snprintf(line, sizeof(line), "%s\n", r->endpoint);
    if (fl_file_write_atomic(r->o->endpoint_file, line, (size_t)n) != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot write the endpoint file '%s': %s",
               r->o->endpoint_file, strerror(errno));
        return FL_ERR_IO;
    }
    return FL_OK;
}

static enum fl_err open_socket(struct router *r)
{
    const int one = 1, linger = 1000, hb = (int)r->o->heartbeat_ms;
    const int hb_to = hb * 5;
    const int hs = 5000, backlog = (int)r->o->backlog;
    /* as the coordinator: with transfers no frame is over a chunk */
    const int64_t maxmsg = r->o->chunk_bytes != 0
                               ? (int64_t)r->o->chunk_bytes + FRAME_SLACK
                               : 64LL << 20;
    size_t len = sizeof(r->endpoint);
    r->zctx = zmq_ctx_new();
    if (r->zctx == NULL)
        return zmq_fail("cannot create a zeromq context");
    if (zmq_ctx_set(r->zctx, ZMQ_IO_THREADS, (int)r->o->io_threads) != 0)
        return zmq_fail("cannot set ZMQ_IO_THREADS");
    r->sock = zmq_socket(r->zctx, ZMQ_ROUTER);
    if (r->sock == NULL)
        return zmq_fail("cannot create the router socket");
    if (zmq_setsockopt(r->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)) ||
        zmq_setsockopt(r->sock, ZMQ_LINGER, &linger, sizeof(linger)) ||
        zmq_setsockopt(r->sock, ZMQ_HEARTBEAT_IVL, &hb, sizeof(hb)) ||
        zmq_setsockopt(r->sock, ZMQ_HEARTBEAT_TTL, &hb_to, sizeof(hb_to)) ||
        zmq_setsockopt(r->sock, ZMQ_HEARTBEAT_TIMEOUT, &hb_to,
                       sizeof(hb_to)) ||
        zmq_setsockopt(r->sock, ZMQ_HANDSHAKE_IVL, &hs, sizeof(hs)) ||
        zmq_setsockopt(r->sock, ZMQ_BACKLOG, &backlog, sizeof(backlog)) ||
        zmq_setsockopt(r->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)))
        return zmq_fail("cannot set the router socket options");
    if (zmq_bind(r->sock, r->o->bind) != 0) {
        fl_log(FL_LOG_ERR, "cannot bind '%s': %s", r->o->bind,
               zmq_strerror(errno));
        return FL_ERR_ZMQ;
    }
    if (zmq_getsockopt(r->sock, ZMQ_LAST_ENDPOINT, r->endpoint, &len) != 0)
        return zmq_fail("cannot read the bound endpoint");
    r->endpoint[sizeof(r->endpoint) - 1] = '\0';
    fl_log(FL_LOG_NOTICE, "listening on %s", r->endpoint);
    return r->o->endpoint_file != NULL ? write_endpoint(r) : FL_OK;
}

/* Send a precomputed frame (no copy). false when it was not sent. */
static bool send_frame(struct router *r, const struct dev *d,
                       const struct frame *f)
{
    if (zmq_send(r->sock, d->rid, d->len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send_const(r->sock, f->buf, f->len, ZMQ_DONTWAIT) < 0) {
        r->st.send_failures++;
        fl_log(FL_LOG_DEBUG, "send of %zu bytes failed: %s", f->len,
               zmq_strerror(errno));
        return false;
    }
    r->st.msgs_out++;
    r->st.bytes_out += f->len;
    return true;
}

/* Pack and send a Credit (a copy: it is small). */
static void send_credit(struct router *r, const struct dev *d,
                        uint64_t transfer, uint32_t received)
{
    struct pb_envelope env;
    uint8_t buf[64];
    size_t len = 0;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_CREDIT;
    env.credit.transfer = transfer;
    env.credit.received = received;
    if (pb_pack(&env, buf, sizeof(buf), &len) != FL_OK ||
        zmq_send(r->sock, d->rid, d->len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(r->sock, buf, len, ZMQ_DONTWAIT) < 0) {
        r->st.send_failures++;
        return;
    }
    r->st.msgs_out++;
    r->st.bytes_out += len;
    r->st.credits_out++;
}

/* ---- downloads: shared chunk frames, credits, the in-flight cap */

static uint32_t dev_index(const struct router *r, const struct dev *d)
{
    return (uint32_t)(d - r->devs);
}

/* The download of d ends (done, replaced, failed or stalled): its chunks
 * no longer count in flight. */
static void download_end(struct router *r, struct dev *d)
{
    if (d->down == 0)
        return;
    r->inflight -= d->next - d->acked;
    d->down = 0;
    d->next = d->acked = d->limit = 0;
}

static void enqueue(struct router *r, struct dev *d)
{
    const uint32_t i = dev_index(r, d);
    const int q = d->next > 0 ? Q_STARTED : Q_NEW;
    if (d->queued)
        return;
    d->queued = true;
    d->qnext = NO_DEV;
    if (r->qtail[q] == NO_DEV)
        r->qhead[q] = i;
    else
        r->devs[r->qtail[q]].qnext = i;
    r->qtail[q] = i;
    r->st.cap_waits++;
}

static struct dev *dequeue(struct router *r)
{
    const int q = r->qhead[Q_STARTED] != NO_DEV ? Q_STARTED : Q_NEW;
    if (r->qhead[q] == NO_DEV)
        return NULL;
    struct dev *d = &r->devs[r->qhead[q]];
    r->qhead[q] = d->qnext;
    if (r->qhead[q] == NO_DEV)
        r->qtail[q] = NO_DEV;
    d->queued = false;
    d->qnext = NO_DEV;
    return d;
}

/* Send the chunks d's window allows, while the cap allows; wait in line
 * for the cap otherwise. */
static void pump(struct router *r, struct dev *d)
{
    while (d->down != 0) {
        const struct content *c = &r->tasks[d->down];
        if (d->next >= d->limit || d->next >= c->nchunks)
            return;
        if (r->inflight >= r->o->max_inflight) {
            enqueue(r, d);
            return;
        }
        if (!send_frame(r, d, &c->chunks[d->next])) {
            r->st.downloads_cut++;   /* the peer is gone */
            download_end(r, d);
            return;
        }
        if (d->next == d->acked)
            d->last_ns = fl_now_ns();   /* a wait for the cap is no stall */
        r->st.chunks_out++;
        r->st.chunk_bytes_out +=
            pb_xfer_chunk_len(c->payload_bytes, r->o->chunk_bytes, d->next);
        d->next++;
        r->inflight++;
        r->st.inflight_max = FL_MAX(r->st.inflight_max, r->inflight);
    }
}

static void serve_queue(struct router *r)
{
    while (r->inflight < r->o->max_inflight) {
        struct dev *d = dequeue(r);
        if (d == NULL)
            return;
        pump(r, d);
    }
}

/* Send the Task of d's round; a chunked model starts its download. */
static void send_task(struct router *r, struct dev *d)
{
    if (d->round == 0)
        d->round = 1;
    const struct content *c = &r->tasks[d->round];
    if (d->down != 0) {
        r->st.downloads_cut++;   /* a Task replaces the download */
        download_end(r, d);
    }
    if (!send_frame(r, d, &c->task) || c->chunks == NULL)
        return;
    r->st.downloads++;
    d->down = d->round;
    d->limit = r->o->chunk_window;
    if (r->qhead[Q_STARTED] == NO_DEV && r->qhead[Q_NEW] == NO_DEV)
        pump(r, d);
    else
        enqueue(r, d);       /* behind those waiting for the cap */
}

/* Downloads whose device stopped crediting chunks it was sent (it
 * reconnected under a new routing id, or vanished) give their place in
 * flight back. Time spent waiting for the cap does not count. */
static void expire_stalled(struct router *r, uint64_t now)
{
    const uint64_t stall = (uint64_t)r->o->stall_ms * NS_PER_MS;
    bool freed = false;
    for (size_t i = 0; i < r->ndevs; i++) {
        struct dev *d = &r->devs[i];
        if (d->down != 0 && d->next > d->acked && now - d->last_ns > stall) {
            r->st.downloads_stalled++;
            download_end(r, d);
            freed = true;
        }
    }
    if (freed)
        serve_queue(r);
}

/* ---- handlers */

/* Enough devices joined: the round-1 Task to each of them. */
static void open_first_round(struct router *r)
{
    r->opened = true;
    getrusage(RUSAGE_SELF, &r->ru_open);
    r->open_ns = fl_now_ns();
    r->msgs_open = r->st.msgs_in;
    for (size_t i = 0; i < r->ndevs; i++) {
        if (r->devs[i].pending)
            send_task(r, &r->devs[i]);
    }
}

/* Welcome, then the round-1 Task; a known device that says Hello again
 * (a retry that crossed the Welcome) gets its open Task again, as the
 * coordinator does. */
static void on_hello(struct router *r, const uint8_t *rid, size_t len)
{
    const uint32_t i = tab_get(r, rid, len, true);
    r->st.hellos++;
    if (i == NO_DEV) {
        r->st.other_in++;
        return;
    }
    struct dev *d = &r->devs[i];
    send_frame(r, d, &r->welcome);
    if (d->round != 0 || d->pending)
        r->st.hellos_again++;
    if (d->round == 0 && !d->pending) {
        d->pending = true;    /* joined; its first Task is due */
        r->joined++;
    }
    if (!r->opened && r->joined >= r->o->min_devices)
        open_first_round(r);
    else if (r->opened && d->pending)
        send_task(r, d);
}

/* The device's Update is in: its next Task, or Bye. */
static void update_done(struct router *r, struct dev *d)
{
    if (!d->pending) {
        r->st.dup_updates++;
        return;
    }
    d->round++;
    if (d->round > r->o->rounds) {
        d->pending = false;
        download_end(r, d);
        send_frame(r, d, &r->bye);
        r->st.byes_out++;
        if (r->st.byes_out == r->o->devices && !r->closed) {
            r->closed = true;
            getrusage(RUSAGE_SELF, &r->ru_close);
            r->close_ns = fl_now_ns();
            r->msgs_close = r->st.msgs_in;
        }
        return;
    }
    send_task(r, d);
}

/* Parse one of the small transfer messages. NULL when it does not parse
 * (counted); the caller destroys *msg. */
static const struct pb_envelope *parse_small(struct router *r,
                                             const uint8_t *body, size_t len,
                                             struct pb_msg **msg)
{
    const struct pb_envelope *env = NULL;
    if (pb_unpack(body, len, &r->lim, msg, &env, NULL, NULL, 0) != FL_OK) {
        r->st.parse_errors++;
        return NULL;
    }
    return env;
}

/* An announced Update: granted at once (the baseline holds no upload). */
static bool on_announced(struct router *r, struct dev *d, const uint8_t *body,
                         size_t len)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = parse_small(r, body, len, &msg);
    bool announced = false;
    if (env != NULL && env->body == PB_BODY_UPDATE &&
        env->update.delta.payload_transfer != 0) {
        announced = true;
        const struct pb_tensor *t = &env->update.delta;
        d->up_transfer = t->payload_transfer;
        d->up_bytes = t->payload_bytes;
        d->up_total = pb_xfer_chunks(t->payload_bytes, r->o->chunk_bytes);
        d->up_received = 0;
        r->st.uploads++;
        if (d->up_total == 0) {
            r->st.transfer_errors++;
            d->up_transfer = 0;
        } else {
            send_credit(r, d, d->up_transfer, 0);
        }
    }
    pb_msg_destroy(&msg);
    return announced;
}

static void on_update(struct router *r, const uint8_t *rid, size_t rid_len,
                      const uint8_t *body, size_t len)
{
    const uint32_t i = tab_get(r, rid, rid_len, false);
    struct dev *d = i == NO_DEV ? NULL : &r->devs[i];
    if (d == NULL || d->round == 0 || !r->opened) {
        r->st.updates++;
        r->st.unknown_updates++;
        return;
    }
    /* an inline update is never parsed; an announcement is small */
    if (r->o->chunk_bytes != 0 && len < ANNOUNCE_MAX &&
        on_announced(r, d, body, len))
        return;
    r->st.updates++;
    update_done(r, d);
}

/* A chunk of an upload: checked (seq, total, length), credited; the
 * last one completes the Update. */
static void on_chunk(struct router *r, struct dev *d, const uint8_t *body,
                     size_t len)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = parse_small(r, body, len, &msg);
    if (env == NULL || env->body != PB_BODY_CHUNK)
        goto out;
    const struct pb_chunk *c = &env->chunk;
    r->st.chunks_in++;
    r->st.chunk_bytes_in += c->len;
    if (d->up_transfer == 0 || c->transfer != d->up_transfer) {
        r->st.stale_chunks++;
        goto out;
    }
    if (c->seq != d->up_received || c->total != d->up_total ||
        c->len != pb_xfer_chunk_len(d->up_bytes, r->o->chunk_bytes, c->seq)) {
        r->st.transfer_errors++;
        d->up_transfer = 0;
        goto out;
    }
    d->up_received++;
    send_credit(r, d, d->up_transfer, d->up_received);
    if (d->up_received == d->up_total) {
        d->up_transfer = 0;
        r->st.uploads_done++;
        r->st.updates++;
        update_done(r, d);
    }
out:
    pb_msg_destroy(&msg);
}

/* A device's credit for its download: the window moves on. When others
 * wait for the cap, the device queues behind them. */
static void on_credit(struct router *r, struct dev *d, const uint8_t *body,
                      size_t len)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = parse_small(r, body, len, &msg);
    if (env == NULL || env->body != PB_BODY_CREDIT)
        goto out;
    const struct pb_credit *c = &env->credit;
    r->st.credits_in++;
    if (d->down == 0 || c->transfer != r->tasks[d->down].transfer ||
        c->received < d->acked || c->received > d->next) {
        r->st.stale_credits++;
        goto out;
    }
    r->inflight -= c->received - d->acked;
    d->acked = c->received;
    d->limit = c->received + r->o->chunk_window;
    d->last_ns = fl_now_ns();
    if (c->cancel || d->acked == r->tasks[d->down].nchunks) {
        if (!c->cancel)
            r->st.downloads_done++;
        download_end(r, d);
    } else if (r->qhead[Q_STARTED] == NO_DEV) {
        pump(r, d);          /* before the devices not started */
    } else {
        enqueue(r, d);
    }
    serve_queue(r);
out:
    pb_msg_destroy(&msg);
}

/* A message of the transfer protocol (two-byte body tag). */
static void dispatch_transfer(struct router *r, const uint8_t *rid,
                              size_t rid_len, const uint8_t *body, size_t len)
{
    const uint32_t i = tab_get(r, rid, rid_len, false);
    if (len < 4 || body[3] != 0x01 || i == NO_DEV) {
        r->st.other_in++;
        return;
    }
    if (body[2] == TAG2_CHUNK)
        on_chunk(r, &r->devs[i], body, len);
    else if (body[2] == TAG2_CREDIT)
        on_credit(r, &r->devs[i], body, len);
    else
        r->st.other_in++;
}

static void dispatch(struct router *r, const uint8_t *rid, size_t rid_len,
                     const uint8_t *body, size_t len)
{
    /* Envelope: 08 01 (version 1), then the body's tag */
    if (len < 3 || body[0] != 0x08 || body[1] != 0x01) {
        r->st.other_in++;
        return;
    }
    switch (body[2]) {
    case TAG_HELLO:
        on_hello(r, rid, rid_len);
        return;
    case TAG_UPDATE:
        on_update(r, rid, rid_len, body, len);
        return;
    case TAG_BYE:
        r->st.byes_in++;
        return;
    default:
        dispatch_transfer(r, rid, rid_len, body, len);
        return;
    }
}

/* 1 handled, 0 nothing waiting, -1 error. */
static int recv_one(struct router *r)
{
    zmq_msg_t rid, body;
    int rc = 1;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&rid, r->sock, ZMQ_DONTWAIT) < 0) {
        rc = errno == EAGAIN || errno == EINTR ? 0 : -1;
        goto out;
    }
    if (!r->started) {
        r->started = true;
        getrusage(RUSAGE_SELF, &r->ru0);
        r->t0_ns = fl_now_ns();
    }
    if (!zmq_msg_more(&rid) || zmq_msg_recv(&body, r->sock, 0) < 0) {
        r->st.other_in++;
        goto out;
    }
    r->st.msgs_in++;
    r->st.bytes_in += zmq_msg_size(&body);
    if (zmq_msg_more(&body)) {
        r->st.other_in++;
        while (zmq_msg_more(&body) && zmq_msg_recv(&body, r->sock, 0) >= 0)
            ;
        goto out;
    }
    dispatch(r, zmq_msg_data(&rid), zmq_msg_size(&rid), zmq_msg_data(&body),
             zmq_msg_size(&body));
out:
    zmq_msg_close(&body);
    zmq_msg_close(&rid);
    return rc;
}

static bool run_loop(struct router *r)
{
    zmq_pollitem_t item = {.socket = r->sock, .events = ZMQ_POLLIN};
    uint64_t next_expire = fl_now_ns() + NS_PER_S;
    const uint64_t deadline =
        r->o->max_seconds > 0
            ? fl_now_ns() + (uint64_t)(r->o->max_seconds * 1e9)
            : UINT64_MAX;
    while (r->st.byes_out < r->o->devices && stop_signal == 0) {
        const uint64_t now = fl_now_ns();
        if (now >= deadline) {
            fl_log(FL_LOG_ERR, "timed out: %llu of %u devices got Bye",
                   (unsigned long long)r->st.byes_out, r->o->devices);
            return false;
        }
        if (now >= next_expire) {
            expire_stalled(r, now);
            next_expire = now + NS_PER_S;
        }
        const int n = zmq_poll(&item, 1, 200);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            zmq_fail("zmq_poll failed");
            return false;
        }
        for (int i = 0; n > 0 && i < RECV_BATCH; i++) {
            const int got = recv_one(r);
            if (got < 0) {
                zmq_fail("cannot receive");
                return false;
            }
            if (got == 0)
                break;
        }
        /* downloads that ended without a credit (replaced, failed) freed
         * their places: hand them on */
        serve_queue(r);
    }
    return stop_signal == 0;
}

/* ---- figures */

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

#define JU(name, v) fprintf(f, "\"%s\":%llu,", name, (unsigned long long)(v))

static void report_counts(FILE *f, const struct router *r)
{
    const struct stats *s = &r->st;
    JU("msgs_in", s->msgs_in);
    JU("hellos", s->hellos);
    JU("updates", s->updates);
    JU("byes_in", s->byes_in);
    JU("other_in", s->other_in);
    JU("unknown_updates", s->unknown_updates);
    JU("hellos_again", s->hellos_again);
    JU("dup_updates", s->dup_updates);
    JU("bytes_in", s->bytes_in);
    JU("msgs_out", s->msgs_out);
    JU("bytes_out", s->bytes_out);
    JU("send_failures", s->send_failures);
    JU("byes_out", s->byes_out);
    fputc('\n', f);
    JU("chunks_out", s->chunks_out);
    JU("chunk_bytes_out", s->chunk_bytes_out);
    JU("credits_in", s->credits_in);
    JU("stale_credits", s->stale_credits);
    JU("downloads", s->downloads);
    JU("downloads_done", s->downloads_done);
    JU("downloads_cut", s->downloads_cut);
    JU("downloads_stalled", s->downloads_stalled);
    JU("cap_waits", s->cap_waits);
    JU("inflight_max", s->inflight_max);
    fputc('\n', f);
    JU("uploads", s->uploads);
    JU("uploads_done", s->uploads_done);
    JU("chunks_in", s->chunks_in);
    JU("chunk_bytes_in", s->chunk_bytes_in);
    JU("credits_out", s->credits_out);
    JU("stale_chunks", s->stale_chunks);
    JU("transfer_errors", s->transfer_errors);
    JU("parse_errors", s->parse_errors);
    fputc('\n', f);
}

#undef JU

static double cpu_between(const struct rusage *a, const struct rusage *b)
{
    return tv_s(b->ru_utime) + tv_s(b->ru_stime) - tv_s(a->ru_utime) -
           tv_s(a->ru_stime);
}

static double per(double cpu_s, uint64_t n)
{
    return n ? cpu_s * 1e6 / (double)n : 0.0;
}

/* The baseline over the rounds (first Task .. last Bye). */
static void report_rounds(FILE *f, const struct router *r)
{
    const bool span = r->opened && r->closed;
    const double cpu = span ? cpu_between(&r->ru_open, &r->ru_close) : 0.0;
    const uint64_t msgs = span ? r->msgs_close - r->msgs_open : 0;
    fprintf(f, "\"rounds_cpu_s\":%.4f,\"rounds_wall_s\":%.4f,"
            "\"rounds_msgs_in\":%llu,\"cpu_us_per_msg\":%.3f,"
            "\"cpu_us_per_update\":%.3f,\n", cpu,
            span ? (double)(r->close_ns - r->open_ns) / 1e9 : 0.0,
            (unsigned long long)msgs, per(cpu, msgs),
            per(cpu, span ? r->st.updates : 0));
}

static void report(struct router *r, bool ok, const struct rusage *ru1,
                   uint64_t t1_ns)
{
    const struct stats *s = &r->st;
    const struct options *o = r->o;
    const double cpu = r->started ? cpu_between(&r->ru0, ru1) : 0.0;
    const double wall = r->started ? (double)(t1_ns - r->t0_ns) / 1e9 : 0.0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return;
    fprintf(f, "{\"program\":\"%s\",\"ok\":%s,\"devices\":%u,"
            "\"dimension\":%llu,\"rounds\":%u,\"delta_fraction\":%g,"
            "\"chunk_bytes\":%u,\"chunk_window\":%u,\"inline_bytes\":%u,"
            "\"max_inflight_chunks\":%u,\"heartbeat_ms\":%u,"
            "\"io_threads\":%u,\"backlog\":%u,\n",
            PROGRAM, ok ? "true" : "false", o->devices,
            (unsigned long long)o->dimension, o->rounds, o->delta_fraction,
            o->chunk_bytes, o->chunk_window, o->inline_bytes,
            o->max_inflight, o->heartbeat_ms, o->io_threads, o->backlog);
    report_counts(f, r);
    report_rounds(f, r);
    fprintf(f, "\"full_model_bytes\":%zu,\"delta_bytes\":%zu,"
            "\"full_model_chunks\":%u,"
            "\"cpu_s\":%.4f,\"wall_s\":%.4f,\"cpu_us_per_msg_run\":%.3f,"
            "\"cpu_us_per_update_run\":%.3f,\"rss_setup_kb\":%ld,"
            "\"peak_rss_kb\":%ld}\n",
            r->tasks[1].payload_bytes,
            o->rounds > 1 ? r->tasks[2].payload_bytes : 0,
            r->tasks[1].nchunks, cpu, wall, per(cpu, s->msgs_in),
            per(cpu, s->updates), r->rss_setup_kb, ru1->ru_maxrss);
    if (fclose(f) != 0) {
        free(buf);
        return;
    }
    fputs(buf, stdout);
    if (o->report != NULL &&
        fl_file_write_atomic(o->report, buf, len) != FL_OK)
        fl_log(FL_LOG_ERR, "cannot write the report '%s': %s", o->report,
               strerror(errno));
    free(buf);
}

static void release(struct router *r)
{
    if (r->sock != NULL)
        zmq_close(r->sock);
    r->sock = NULL;
    if (r->zctx != NULL) {
        while (zmq_ctx_term(r->zctx) != 0 && errno == EINTR)
            ;
    }
    r->zctx = NULL;
}

static void free_frames(struct router *r)
{
    if (r->tasks != NULL) {
        for (uint32_t i = 0; i <= r->o->rounds; i++) {
            struct content *c = &r->tasks[i];
            fl_free(c->task.buf);
            for (uint32_t j = 0; c->chunks != NULL && j < c->nchunks; j++)
                fl_free(c->chunks[j].buf);
            fl_free(c->chunks);
        }
    }
    fl_free(r->tasks);
    fl_free(r->welcome.buf);
    fl_free(r->bye.buf);
    fl_free(r->tab);
    fl_free(r->devs);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
    struct options o = {.bind = "tcp://127.0.0.1:*", .rounds = 3,
                        .delta_fraction = 0.04, .density = 0.01,
                        .values = CMP_VALUE_FP16, .codec = CMP_CODEC_ZSTD,
                        .level = 1, .timeout_ms = 600000, .backlog = 100,
                        .heartbeat_ms = 2000, .io_threads = 1,
                        .chunk_bytes = 1u << 20, .chunk_window = 4,
                        .inline_bytes = 64u << 10, .max_inflight = 64,
                        .stall_ms = 30000, .max_seconds = 600, .seed = 1,
                        .log_level = FL_LOG_NOTICE};
    struct router r;
    struct rusage ru1;
    const int p = parse_options(&o, argc, argv);
    if (p != 0)
        return p > 0 ? 0 : 2;
    fl_log_init("router-baseline", NULL);
    fl_log_set_level(o.log_level);
    install_signals();
    memset(&r, 0, sizeof(r));
    r.o = &o;
    r.qhead[Q_STARTED] = r.qtail[Q_STARTED] = NO_DEV;
    r.qhead[Q_NEW] = r.qtail[Q_NEW] = NO_DEV;
    r.lim.max_message = (size_t)o.chunk_bytes + FRAME_SLACK;
    r.lim.max_alloc = 2 * r.lim.max_message + (1u << 20);
    enum fl_err rc = build_frames(&r);
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot build the frames: %s", fl_strerror(rc));
        free_frames(&r);
        return 2;
    }
    getrusage(RUSAGE_SELF, &ru1);
    r.rss_setup_kb = ru1.ru_maxrss;
    rc = open_socket(&r);
    bool ok = false;
    if (rc == FL_OK)
        ok = run_loop(&r);
    release(&r);  /* linger: the last frames leave before the figures */
    const uint64_t t1 = fl_now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    if (rc == FL_OK)
        report(&r, ok, &ru1, t1);
    free_frames(&r);
    if (rc != FL_OK)
        return 2;
    return ok ? 0 : 1;
}
