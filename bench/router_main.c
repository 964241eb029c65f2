/*
 * fedcomp-router-baseline: the transport cost of a coordinator, without the
 * coordinator. A plain ROUTER (the same socket options as the coordinator)
 * that receives and counts messages and their bytes, and answers only what
 * keeps fedcomp-swarm going:
 *   Hello  -> a precomputed Welcome; once --min-devices have joined (all
 *             of them by default, like the coordinator's first round),
 *             the precomputed Task of round 1 (the full model, version 1)
 *             to every device joined, and to later ones at their Hello
 *   Update -> the precomputed Task of the device's next round (an XOR
 *             delta of the model against the previous version), or Bye
 *             after --rounds
 * It never parses or decodes an Update: the body type is read from the
 * envelope's third byte (field 1 = version comes first, then the body
 * field, as protobuf-c writes them). Frames are sent with zmq_send_const
 * (no copy). The model evolves by changing a fixed set of
 * --delta-fraction of the parameters per version, like a coordinator that
 * aggregates the swarm's few distinct updates.
 *
 * At the end it prints and writes (--report) messages, bytes, CPU time per
 * message and per update (from the first message received to the end,
 * every thread of the process), and the peak RSS (getrusage ru_maxrss).
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

#define PROGRAM "fedcomp-router-baseline"
#define VERSION "0.1.0"
#define NS_PER_S 1000000000ULL
#define RECV_BATCH 1024
#define RID_MAX 32            /* ROUTER-made ids are 5 bytes */
#define TAG_HELLO 0x52        /* field 10, length-delimited */
#define TAG_UPDATE 0x6a       /* field 13 */
#define TAG_BYE 0x7a          /* field 15 */

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
    double max_seconds;
    uint64_t seed;
    enum fl_log_level log_level;
};

struct frame {
    uint8_t *buf;
    size_t len;
};

struct slot {
    uint8_t len;              /* 0 = empty */
    uint8_t rid[RID_MAX];
    uint32_t round;           /* the round of the Task last sent */
    bool pending;             /* that Task is not answered yet */
};

struct stats {
    uint64_t msgs_in, hellos, updates, byes_in, other_in, bytes_in;
    uint64_t msgs_out, bytes_out, send_failures, byes_out;
    uint64_t unknown_updates;
    uint64_t hellos_again;    /* Hello from a known routing id */
    uint64_t dup_updates;     /* Update without an open Task */
};

struct router {
    const struct options *o;
    void *zctx;
    void *sock;
    char endpoint[256];
    struct frame welcome;
    struct frame bye;
    struct frame *tasks;      /* [1] full model, [2..rounds] deltas */
    struct slot *tab;
    size_t cap;
    size_t used;
    struct stats st;
    bool started;
    bool opened;              /* min_devices joined: Tasks flow */
    size_t joined;
    struct rusage ru0;
    uint64_t t0_ns;
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
        "answers with precomputed Welcome, Task and Bye frames, without\n"
        "parsing updates: the baseline of the coordinator's per-update cost.\n"
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
        "  --backlog N            ZMQ_BACKLOG, as the coordinator's (100)\n"
        "  --heartbeat-ms MS      ZMTP heartbeat interval, timeout and TTL\n"
        "                         5x it; 0 = off (2000, as the coordinator)\n"
        "  --io-threads N         ZeroMQ I/O threads (1)\n"
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
    default: return parse_codings(o, c, s);
    }
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
    if (o->devices == 0 || o->dimension == 0)
        return bad("--devices and --dimension are required");
    if (o->min_devices == 0 || o->min_devices > o->devices)
        o->min_devices = o->devices;
    return 0;
}

/* ---- precomputed frames */

static enum fl_err pack_frame(const struct pb_envelope *env, struct frame *f)
{
    return pb_pack_alloc(env, &f->buf, &f->len);
}

static void fill_task(const struct options *o, uint32_t round,
                      const struct cmp_meta *m, const uint8_t *payload,
                      size_t len, struct pb_envelope *env)
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
        .checksum = m->checksum, .payload = payload, .payload_len = len,
        .has_base_version = round > 1, .base_version = round - 1};
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

/* Model version 1, then per version a fixed set of positions changes. */
static enum fl_err build_tasks(struct router *r)
{
    const struct options *o = r->o;
    const size_t n = (size_t)o->dimension;
    struct fl_rng rng;
    struct cmp_meta meta;
    const uint8_t *payload = NULL;
    size_t len = 0;
    struct pb_envelope env;
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
        if (rc == FL_OK) {
            fill_task(o, round, &meta, payload, len, &env);
            rc = pack_frame(&env, &r->tasks[round]);
        }
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
    env.welcome.heartbeat_ms = 2000;
    env.welcome.current_round = 1;
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

/* ---- routing-id table (open addressing, FNV-1a) */

static uint64_t rid_hash(const uint8_t *rid, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ rid[i]) * 1099511628211ULL;
    return h;
}

static struct slot *tab_probe(struct slot *tab, size_t cap,
                              const uint8_t *rid, size_t len)
{
    size_t i = (size_t)rid_hash(rid, len) & (cap - 1);
    while (tab[i].len != 0 &&
           (tab[i].len != len || memcmp(tab[i].rid, rid, len) != 0))
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

static enum fl_err tab_grow(struct router *r)
{
    const size_t cap = r->cap ? r->cap * 2 : 1024;
    struct slot *t = fl_calloc(cap, sizeof(*t));
    if (t == NULL)
        return FL_ERR_NOMEM;
    for (size_t i = 0; i < r->cap; i++) {
        if (r->tab[i].len != 0)
            *tab_probe(t, cap, r->tab[i].rid, r->tab[i].len) = r->tab[i];
    }
    fl_free(r->tab);
    r->tab = t;
    r->cap = cap;
    return FL_OK;
}

/* The slot of rid; created (round 0) when create is set. NULL when the id
 * is too long, unknown (create false) or memory ran out. */
static struct slot *tab_get(struct router *r, const uint8_t *rid,
                            size_t len, bool create)
{
    if (len == 0 || len > RID_MAX)
        return NULL;
    if (r->cap == 0 || (create && (r->used + 1) * 2 > r->cap)) {
        if (tab_grow(r) != FL_OK)
            return NULL;
    }
    struct slot *s = tab_probe(r->tab, r->cap, rid, len);
    if (s->len == 0) {
        if (!create)
            return NULL;
        s->len = (uint8_t)len;
        memcpy(s->rid, rid, len);
        s->round = 0;
        r->used++;
    }
    return s;
}

/* ---- the socket */

static enum fl_err zmq_fail(const char *what)
{
    fl_log(FL_LOG_ERR, "%s: %s", what, zmq_strerror(errno));
    return FL_ERR_ZMQ;
}

static enum fl_err open_socket(struct router *r)
{
    const int one = 1, linger = 1000, hb = (int)r->o->heartbeat_ms;
    const int hb_to = hb * 5;
    const int hs = 5000, backlog = (int)r->o->backlog;
    const int64_t maxmsg = 64LL << 20;
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
    if (r->o->endpoint_file != NULL) {
        char line[sizeof(r->endpoint) + 1];
        const int n = snprintf(line, sizeof(line), "%s\n", r->endpoint);
        if (fl_file_write_atomic(r->o->endpoint_file, line, (size_t)n) !=
            FL_OK) {
            fl_log(FL_LOG_ERR, "cannot write the endpoint file '%s': %s",
                   r->o->endpoint_file, strerror(errno));
            return FL_ERR_IO;
        }
    }
    return FL_OK;
}

static void send_frame(struct router *r, const uint8_t *rid, size_t rid_len,
                       const struct frame *f)
{
    if (zmq_send(r->sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send_const(r->sock, f->buf, f->len, ZMQ_DONTWAIT) < 0) {
        r->st.send_failures++;
        fl_log(FL_LOG_DEBUG, "send of %zu bytes failed: %s", f->len,
               zmq_strerror(errno));
        return;
    }
    r->st.msgs_out++;
    r->st.bytes_out += f->len;
}

static void send_task(struct router *r, struct slot *s)
{
    if (s->round == 0)
        s->round = 1;
    send_frame(r, s->rid, s->len, &r->tasks[s->round]);
}

/* Enough devices joined: the round-1 Task to each of them. */
static void open_first_round(struct router *r)
{
    r->opened = true;
    for (size_t i = 0; i < r->cap; i++) {
        if (r->tab[i].len != 0 && r->tab[i].pending)
            send_task(r, &r->tab[i]);
    }
}

/* Welcome, then the round-1 Task; a known device that says Hello again
 * (a retry that crossed the Welcome) gets its open Task again, as the
 * coordinator does. */
static void on_hello(struct router *r, const uint8_t *rid, size_t len)
{
    struct slot *s = tab_get(r, rid, len, true);
    r->st.hellos++;
    if (s == NULL) {
        r->st.other_in++;
        return;
    }
    send_frame(r, rid, len, &r->welcome);
    if (s->round != 0 || s->pending)
        r->st.hellos_again++;
    if (s->round == 0 && !s->pending) {
        s->pending = true;    /* joined; its first Task is due */
        r->joined++;
    }
    if (!r->opened && r->joined >= r->o->min_devices)
        open_first_round(r);
    else if (r->opened && s->pending)
        send_task(r, s);
}

static void on_update(struct router *r, const uint8_t *rid, size_t len)
{
    struct slot *s = tab_get(r, rid, len, false);
    r->st.updates++;
    if (s == NULL || s->round == 0 || !r->opened) {
        r->st.unknown_updates++;
        return;
    }
    if (!s->pending) {
        r->st.dup_updates++;
        return;
    }
    s->round++;
    if (s->round > r->o->rounds) {
        s->pending = false;
        send_frame(r, rid, len, &r->bye);
        r->st.byes_out++;
        return;
    }
    send_frame(r, rid, len, &r->tasks[s->round]);
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
        on_update(r, rid, rid_len);
        return;
    case TAG_BYE:
        r->st.byes_in++;
        return;
    default:
        r->st.other_in++;
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
    const uint64_t deadline =
        r->o->max_seconds > 0
            ? fl_now_ns() + (uint64_t)(r->o->max_seconds * 1e9)
            : UINT64_MAX;
    while (r->st.byes_out < r->o->devices && stop_signal == 0) {
        if (fl_now_ns() >= deadline) {
            fl_log(FL_LOG_ERR, "timed out: %llu of %u devices got Bye",
                   (unsigned long long)r->st.byes_out, r->o->devices);
            return false;
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
    }
    return stop_signal == 0;
}

/* ---- figures */

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void report(struct router *r, bool ok, const struct rusage *ru1,
                   uint64_t t1_ns)
{
    const struct stats *s = &r->st;
    const double cpu = r->started ? tv_s(ru1->ru_utime) + tv_s(ru1->ru_stime)
                                        - tv_s(r->ru0.ru_utime) -
                                        tv_s(r->ru0.ru_stime)
                                  : 0.0;
    const double wall = r->started ? (double)(t1_ns - r->t0_ns) / 1e9 : 0.0;
    const double per_msg = s->msgs_in ? cpu * 1e6 / (double)s->msgs_in : 0;
    const double per_upd = s->updates ? cpu * 1e6 / (double)s->updates : 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return;
    fprintf(f, "{\"program\":\"%s\",\"ok\":%s,\"devices\":%u,"
            "\"dimension\":%llu,\"rounds\":%u,\"delta_fraction\":%g,"
            "\"msgs_in\":%llu,\"hellos\":%llu,\"updates\":%llu,"
            "\"byes_in\":%llu,\"other_in\":%llu,\"unknown_updates\":%llu,"
            "\"hellos_again\":%llu,\"dup_updates\":%llu,"
            "\"bytes_in\":%llu,\"msgs_out\":%llu,\"bytes_out\":%llu,"
            "\"send_failures\":%llu,\"byes_out\":%llu,"
            "\"full_model_bytes\":%zu,\"delta_bytes\":%zu,"
            "\"cpu_s\":%.4f,\"wall_s\":%.4f,\"cpu_us_per_msg\":%.3f,"
            "\"cpu_us_per_update\":%.3f,\"rss_setup_kb\":%ld,"
            "\"peak_rss_kb\":%ld}\n",
            PROGRAM, ok ? "true" : "false", r->o->devices,
            (unsigned long long)r->o->dimension, r->o->rounds,
            r->o->delta_fraction, (unsigned long long)s->msgs_in,
            (unsigned long long)s->hellos, (unsigned long long)s->updates,
            (unsigned long long)s->byes_in, (unsigned long long)s->other_in,
            (unsigned long long)s->unknown_updates,
            (unsigned long long)s->hellos_again,
            (unsigned long long)s->dup_updates,
            (unsigned long long)s->bytes_in, (unsigned long long)s->msgs_out,
            (unsigned long long)s->bytes_out,
            (unsigned long long)s->send_failures,
            (unsigned long long)s->byes_out, r->tasks[1].len,
            r->o->rounds > 1 ? r->tasks[2].len : 0, cpu, wall, per_msg,
            per_upd, r->rss_setup_kb, ru1->ru_maxrss);
    if (fclose(f) != 0) {
        free(buf);
        return;
    }
    fputs(buf, stdout);
    if (r->o->report != NULL &&
        fl_file_write_atomic(r->o->report, buf, len) != FL_OK)
        fl_log(FL_LOG_ERR, "cannot write the report '%s': %s", r->o->report,
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
        for (uint32_t i = 0; i <= r->o->rounds; i++)
            fl_free(r->tasks[i].buf);
    }
    fl_free(r->tasks);
    fl_free(r->welcome.buf);
    fl_free(r->bye.buf);
    fl_free(r->tab);
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
                        .max_seconds = 600, .seed = 1,
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
