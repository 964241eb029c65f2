/*
 * fedcomp-attack: a hostile device for testing the coordinator.
 *
 * It connects a DEALER, says Hello with the given id, waits for its Task
 * (or, with --no-task, uses the round of the Welcome), then sends one
 * chosen malicious message (--repeat N: N times), collects what comes back
 * until --reply-timeout passes without news, and prints one line per
 * Reject and an outcome line:
 *   outcome: reject CODE NAME     the last Reject received
 *   outcome: no reply             nothing came back
 *   outcome: disconnected         the coordinator dropped the connection
 * With --expect CODE|NAME|drop|none|disconnected (or several, separated
 * by commas) it exits 0 when the outcome matches one (drop: no reply or
 * disconnected; none: no reply), else 1.
 * Then it says Bye (after a disconnect: Hello again first, so that the Bye
 * is read), so that the round does not wait for it; --no-bye skips that.
 * Exit codes: 0 ok, 1 unexpected outcome, 2 usage, 3 no Welcome or Task.
 *
 * The messages are built with pb_pack and the compress/ encoder, or as raw
 * bytes where the encoder refuses to produce them (NaN, bad indices):
 *   garbage        bytes that are not protobuf              -> 40 proto
 *   truncated      the first half of a valid Update         -> 40 proto
 *   oversize       one frame of --size bytes                -> disconnected
 *   zipbomb        zstd of 64 MiB of zeros, raw_size honest -> 29
 *   nan            a NaN value, CRC right                   -> 26
 *   index-range    an index >= dimension                    -> 23
 *   index-order    a gap of -3 (the wire has only unsigned
 *                  gaps: a wrapped 32-bit gap)              -> 23
 *   wrong-dim      dimension + 1                            -> 20
 *   stale-round    an update for the last round, then the
 *                  same again (late once, then a replay)    -> 49, 43
 *   duplicate      a valid update twice                     -> 45
 *   huge-samples   n_samples 2^40                           -> 46
 *   huge-norm      values of 1e6 (after a round committed)  -> 47
 *   k-over-dim     k = dimension + 1                        -> 21
 *   bad-checksum   the CRC off by one bit                   -> 25
 *   trailing-frame a second zstd frame after the payload    -> 28
 *   wrong-version  Envelope version 2                       -> 7
 *   no-body        an Envelope without a body               -> 41
 *   multipart      an Update plus a second frame            -> dropped
 *   log-inject     a Reject whose reason holds a newline,
 *                  escape codes and a fake log line         -> no reply
 *   valid          a small valid update (--update-samples)  -> no reply
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zmq.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_log.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "proto/pb_msg.h"

#define MON_EP "inproc://fedcomp-attack-monitor"
#define MAX_MSGS 8
#define MAX_K 8

enum outcome_kind { OUT_NONE = 0, OUT_REJECT = 1, OUT_DISCONNECTED = 2 };

struct opts {
    const char *connect;
    const char *id;
    const char *attack;
    const char *expect;
    uint64_t samples;
    uint64_t update_samples;
    uint64_t size;
    uint32_t repeat;
    double task_timeout;
    double reply_timeout;
    bool no_task;
    bool bye;
    uint64_t seed;
};

/* One message to send: frames (1 or 2), owned. */
struct msg {
    uint8_t *frame[2];
    size_t len[2];
    int nframes;
};

struct client {
    const struct opts *o;
    void *zctx;
    void *sock;
    void *mon;
    uint64_t dimension;
    uint64_t round;
    float density;
    bool disconnected;
    enum outcome_kind out;
    uint32_t code;
    struct msg msgs[MAX_MSGS];
    int nmsgs;
    struct cmp_ctx *ctx;
};

static const struct pb_limits lim = {1u << 30, 1u << 30};

/* ---------------------------------------------------------------- wire */

static int send_frames(struct client *c, const struct msg *m)
{
    for (int i = 0; i < m->nframes; i++) {
        const int more = i + 1 < m->nframes ? ZMQ_SNDMORE : 0;
        if (zmq_send(c->sock, m->frame[i], m->len[i], more) < 0) {
            fl_log(FL_LOG_ERR, "cannot send: %s", zmq_strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int send_env(struct client *c, const struct pb_envelope *env)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (pb_pack_alloc(env, &buf, &len) != FL_OK)
        return -1;
    const struct msg m = {{buf, NULL}, {len, 0}, 1};
    const int rc = send_frames(c, &m);
    fl_free(buf);
    return rc;
}

static void read_monitor(struct client *c)
{
    for (;;) {
        zmq_msg_t m;
        uint16_t ev = 0;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (zmq_msg_size(&m) >= sizeof(ev))
            memcpy(&ev, zmq_msg_data(&m), sizeof(ev));
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) {
            zmq_msg_init(&m);
            more = zmq_msg_recv(&m, c->mon, 0) >= 0 && zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        if (ev == ZMQ_EVENT_DISCONNECTED)
            c->disconnected = true;
    }
}

/* Wait up to ms for a message; *env (owned by *pm) or NULL on timeout.
 * -1 on a socket error. */
static int recv_env(struct client *c, int ms, struct pb_msg **pm,
                    const struct pb_envelope **env)
{
    zmq_pollitem_t items[2] = {{.socket = c->sock, .events = ZMQ_POLLIN},
                               {.socket = c->mon, .events = ZMQ_POLLIN}};
    *pm = NULL;
    *env = NULL;
    const uint64_t end = fl_now_ns() + (uint64_t)ms * 1000000ULL;
    for (;;) {
        const uint64_t now = fl_now_ns();
        if (now >= end)
            return 0;
        const int left = (int)((end - now) / 1000000ULL) + 1;
        if (zmq_poll(items, 2, left) < 0)
            return errno == EINTR ? 0 : -1;
        if (items[1].revents & ZMQ_POLLIN)
            read_monitor(c);
        if (!(items[0].revents & ZMQ_POLLIN)) {
            if (c->disconnected)
                return 0;
            continue;
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, 0) < 0) {
            zmq_msg_close(&m);
            return -1;
        }
        const enum fl_err rc = pb_unpack(zmq_msg_data(&m), zmq_msg_size(&m),
                                         &lim, pm, env, NULL, NULL, 0);
        zmq_msg_close(&m);
        if (rc == FL_OK)
            return 0;
        fl_log(FL_LOG_WARN, "cannot parse a reply: %s", fl_strerror(rc));
    }
}

/* ---------------------------------------------------------------- build */

static void msg_add(struct client *c, uint8_t *buf, size_t len)
{
    if (c->nmsgs < MAX_MSGS) {
        c->msgs[c->nmsgs] = (struct msg){{buf, NULL}, {len, 0}, 1};
        c->nmsgs++;
    } else {
        fl_free(buf);
    }
}

static void add_env(struct client *c, const struct pb_envelope *env)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (pb_pack_alloc(env, &buf, &len) == FL_OK)
        msg_add(c, buf, len);
}

/* k spread indices and small alternating values. */
static size_t plan(const struct client *c, uint32_t *idx, float *val,
                   float scale)
{
    double want = ceil((double)c->density * (double)c->dimension);
    size_t k = want < 1 ? 1 : want > MAX_K ? MAX_K : (size_t)want;
    if (k > c->dimension)
        k = (size_t)c->dimension;
    const uint64_t step = c->dimension / k;
    for (size_t i = 0; i < k; i++) {
        idx[i] = (uint32_t)(i * step);
        val[i] = scale * (i % 2 == 0 ? 1.0f : -1.0f);
    }
    return k;
}

/* A valid update envelope in *env; payload bytes live in c->ctx (or in
 * *own when the codec is none and we patch them). */
static int build_update(struct client *c, uint64_t round, float scale,
                        enum cmp_index_coding ic, enum cmp_codec codec,
                        struct pb_envelope *env)
{
    uint32_t idx[MAX_K];
    float val[MAX_K];
    const uint8_t *payload = NULL;
    size_t plen = 0;
    struct cmp_meta meta;
    const size_t k = plan(c, idx, val, scale);
    const struct cmp_params p = {ic, CMP_VALUE_FP32, codec, 1};
    const enum fl_err rc = cmp_sparse_encode(c->ctx, c->dimension, idx, val,
                                             k, &p, &meta, &payload, &plen);
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot encode an update: %s", fl_strerror(rc));
        return -1;
    }
    memset(env, 0, sizeof(*env));
    env->version = PB_PROTOCOL_VERSION;
    env->body = PB_BODY_UPDATE;
    env->update.round = round;
    env->update.n_samples = c->o->update_samples;
    env->update.delta = (struct pb_tensor){
        .dimension = meta.dimension, .k = meta.k,
        .index_coding = meta.index_coding, .value_coding = meta.value_coding,
        .codec = meta.codec, .raw_size = meta.raw_size,
        .checksum = meta.checksum, .payload = payload, .payload_len = plen};
    return 0;
}

/* An fp32/none/varint update from a raw stream we write ourselves: the
 * index bytes, then k fp32 values (CRC computed here). */
static void add_raw_update(struct client *c, const uint8_t *ibytes,
                           size_t ilen, size_t k, int nan_last)
{
    uint8_t raw[64];
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    if (ilen + 4 * k > sizeof(raw))
        return;
    memcpy(raw, ibytes, ilen);
    /* fp32 values travel byte-shuffled: byte j of value i at j * k + i */
    for (size_t i = 0; i < k; i++) {
        const float v = nan_last && i + 1 == k ? NAN : 0.01f;
        uint32_t u;
        memcpy(&u, &v, 4);
        for (size_t j = 0; j < 4; j++)
            raw[ilen + j * k + i] = (uint8_t)(u >> (8 * j));
    }
    const size_t len = ilen + 4 * k;
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_UPDATE;
    env.update.round = c->round;
    env.update.n_samples = c->o->update_samples;
    env.update.delta = (struct pb_tensor){
        .dimension = c->dimension, .k = k,
        .index_coding = CMP_INDEX_DELTA_VARINT,
        .value_coding = CMP_VALUE_FP32, .codec = CMP_CODEC_NONE,
        .raw_size = len, .checksum = (uint32_t)crc32(0L, raw, (uInt)len),
        .payload = raw, .payload_len = len};
    add_env(c, &env);
}

static size_t put_varint(uint64_t v, uint8_t *out)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

static void build_zipbomb(struct client *c)
{
    const size_t n = 16u << 20; /* 64 MiB of float zeros */
    float *zeros = fl_calloc(n, sizeof(float));
    struct cmp_ctx *big = cmp_ctx_new();
    const uint8_t *payload = NULL;
    size_t plen = 0;
    struct cmp_meta meta;
    struct pb_envelope env;
    if (zeros != NULL && big != NULL &&
        cmp_dense_encode(big, zeros, n, NULL, CMP_CODEC_ZSTD, 3, &meta,
                         &payload, &plen) == FL_OK &&
        build_update(c, c->round, 0.01f, CMP_INDEX_DELTA_VARINT,
                     CMP_CODEC_ZSTD, &env) == 0) {
        /* the declared raw size stays the honest one for k */
        env.update.delta.payload = payload;
        env.update.delta.payload_len = plen;
        add_env(c, &env);
        fl_log(FL_LOG_INFO, "zip bomb: %zu bytes expand to %zu", plen,
               n * sizeof(float));
    }
    cmp_ctx_destroy(&big);
    fl_free(zeros);
}

static void build_trailing(struct client *c)
{
    struct pb_envelope env;
    if (build_update(c, c->round, 0.01f, CMP_INDEX_AUTO, CMP_CODEC_ZSTD,
                     &env) != 0)
        return;
    const size_t plen = env.update.delta.payload_len;
    uint8_t *two = fl_malloc(2 * plen);
    if (two == NULL)
        return;
    memcpy(two, env.update.delta.payload, plen);
    memcpy(two + plen, env.update.delta.payload, plen);
    env.update.delta.payload = two;
    env.update.delta.payload_len = 2 * plen;
    add_env(c, &env);
    fl_free(two);
}

static void build_oversize(struct client *c)
{
    uint8_t *buf = fl_malloc((size_t)c->o->size);
    if (buf == NULL)
        return;
    memset(buf, 0x5a, (size_t)c->o->size);
    msg_add(c, buf, (size_t)c->o->size);
}

static void build_multipart(struct client *c)
{
    struct pb_envelope env;
    uint8_t *extra = fl_malloc(1);
    if (extra == NULL)
        return;
    extra[0] = 'x';
    if (build_update(c, c->round, 0.01f, CMP_INDEX_AUTO, CMP_CODEC_ZSTD,
                     &env) != 0 || c->nmsgs >= MAX_MSGS) {
        fl_free(extra);
        return;
    }
    add_env(c, &env);
    struct msg *m = &c->msgs[c->nmsgs - 1];
    m->frame[1] = extra;
    m->len[1] = 1;
    m->nframes = 2;
}

/* Updates that the encoder makes and we then spoil: tweak 0 none,
 * 1 dimension + 1, 2 k = dimension + 1, 3 CRC off, 4 version 2. */
static void build_spoiled(struct client *c, uint64_t round, float scale,
                          int tweak)
{
    struct pb_envelope env;
    if (build_update(c, round, scale, CMP_INDEX_AUTO, CMP_CODEC_ZSTD,
                     &env) != 0)
        return;
    if (tweak == 1)
        env.update.delta.dimension = c->dimension + 1;
    else if (tweak == 2)
        env.update.delta.k = c->dimension + 1;
    else if (tweak == 3)
        env.update.delta.checksum ^= 1;
    else if (tweak == 4)
        env.version = 2;
    add_env(c, &env);
}

static int build_attack(struct client *c)
{
    const char *a = c->o->attack;
    uint8_t ib[16];
    size_t n = 0;
    if (strcmp(a, "garbage") == 0) {
        static const uint8_t g[] = {0xff, 0x00, 0x13, 0x37, 0x42, 0x07, 0x99};
        uint8_t *buf = fl_malloc(sizeof(g));
        if (buf != NULL)
            memcpy(buf, g, sizeof(g));
        if (buf != NULL)
            msg_add(c, buf, sizeof(g));
    } else if (strcmp(a, "truncated") == 0) {
        struct pb_envelope env;
        uint8_t *buf = NULL;
        size_t len = 0;
        if (build_update(c, c->round, 0.01f, CMP_INDEX_AUTO, CMP_CODEC_ZSTD,
                         &env) == 0 &&
            pb_pack_alloc(&env, &buf, &len) == FL_OK)
            msg_add(c, buf, len / 2);
    } else if (strcmp(a, "oversize") == 0) {
        build_oversize(c);
    } else if (strcmp(a, "zipbomb") == 0) {
        build_zipbomb(c);
    } else if (strcmp(a, "nan") == 0) {
        n = put_varint(1, ib);
        n += put_varint(2, ib + n);
        add_raw_update(c, ib, n, 2, 1);
    } else if (strcmp(a, "index-range") == 0) {
        n = put_varint(0, ib);
        n += put_varint(c->dimension + 5, ib + n);
        add_raw_update(c, ib, n, 2, 0);
    } else if (strcmp(a, "index-order") == 0) {
        n = put_varint(5, ib);
        n += put_varint(0xfffffffdULL, ib + n); /* "-3" as a 32-bit gap */
        add_raw_update(c, ib, n, 2, 0);
    } else if (strcmp(a, "wrong-dim") == 0) {
        build_spoiled(c, c->round, 0.01f, 1);
    } else if (strcmp(a, "stale-round") == 0) {
        const uint64_t r = c->round > 1 ? c->round - 1 : 0;
        build_spoiled(c, r, 0.01f, 0);
        build_spoiled(c, r, 0.01f, 0);
    } else if (strcmp(a, "duplicate") == 0) {
        build_spoiled(c, c->round, 0.01f, 0);
        build_spoiled(c, c->round, 0.01f, 0);
    } else if (strcmp(a, "huge-samples") == 0) {
        struct pb_envelope env;
        if (build_update(c, c->round, 0.01f, CMP_INDEX_AUTO, CMP_CODEC_ZSTD,
                         &env) == 0) {
            env.update.n_samples = 1ULL << 40;
            add_env(c, &env);
        }
    } else if (strcmp(a, "huge-norm") == 0) {
        build_spoiled(c, c->round, 1e6f, 0);
    } else if (strcmp(a, "k-over-dim") == 0) {
        build_spoiled(c, c->round, 0.01f, 2);
    } else if (strcmp(a, "bad-checksum") == 0) {
        build_spoiled(c, c->round, 0.01f, 3);
    } else if (strcmp(a, "trailing-frame") == 0) {
        build_trailing(c);
    } else if (strcmp(a, "wrong-version") == 0) {
        build_spoiled(c, c->round, 0.01f, 4);
    } else if (strcmp(a, "no-body") == 0) {
        uint8_t *buf = fl_malloc(2);
        if (buf != NULL) {
            buf[0] = 0x08; /* field 1 (version), varint */
            buf[1] = 0x01;
            msg_add(c, buf, 2);
        }
    } else if (strcmp(a, "multipart") == 0) {
        build_multipart(c);
    } else if (strcmp(a, "log-inject") == 0) {
        struct pb_envelope env;
        memset(&env, 0, sizeof(env));
        env.version = PB_PROTOCOL_VERSION;
        env.body = PB_BODY_REJECT;
        env.reject.code = FL_ERR_FORMAT;
        env.reject.reason = "x\nFAKE coordinator[1] info: round 99 committed"
                            "\x1b[2J'";
        add_env(c, &env);
    } else if (strcmp(a, "valid") == 0) {
        build_spoiled(c, c->round, 0.01f, 0);
    } else {
        fl_log(FL_LOG_ERR, "unknown attack '%s'", a);
        return -1;
    }
    if (c->nmsgs == 0) {
        fl_log(FL_LOG_ERR, "cannot build the '%s' message", a);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- run */

static int open_client(struct client *c)
{
    const int linger = 2000, ivl = 100;
    c->zctx = zmq_ctx_new();
    c->sock = c->zctx != NULL ? zmq_socket(c->zctx, ZMQ_DEALER) : NULL;
    if (c->sock == NULL)
        return -1;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(c->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl));
    if (zmq_socket_monitor(c->sock, MON_EP, ZMQ_EVENT_DISCONNECTED) != 0)
        return -1;
    c->mon = zmq_socket(c->zctx, ZMQ_PAIR);
    if (c->mon == NULL || zmq_connect(c->mon, MON_EP) != 0)
        return -1;
    if (zmq_connect(c->sock, c->o->connect) != 0) {
        fl_log(FL_LOG_ERR, "cannot connect to '%s': %s", c->o->connect,
               zmq_strerror(errno));
        return -1;
    }
    return 0;
}

static int say_hello(struct client *c)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_HELLO;
    env.hello.device_id = c->o->id;
    env.hello.n_samples = c->o->samples;
    env.hello.codecs_mask = 1u << CMP_CODEC_NONE | 1u << CMP_CODEC_LZ4 |
                            1u << CMP_CODEC_ZSTD;
    env.hello.software = "fedcomp-attack";
    return send_env(c, &env);
}

/* Hello, Welcome, then the Task (or only the Welcome with --no-task).
 * 0, or 3 when they do not come. */
static int join(struct client *c)
{
    const uint64_t end =
        fl_now_ns() + (uint64_t)(c->o->task_timeout * 1e9);
    bool welcomed = false;
    if (say_hello(c) != 0)
        return 3;
    while (fl_now_ns() < end) {
        struct pb_msg *m = NULL;
        const struct pb_envelope *env = NULL;
        if (recv_env(c, 200, &m, &env) < 0)
            return 3;
        if (env == NULL)
            continue;
        if (env->body == PB_BODY_WELCOME) {
            welcomed = true;
            c->dimension = env->welcome.dimension;
            c->round = env->welcome.current_round;
            c->density = 0.01f;
            if (c->o->no_task) {
                pb_msg_destroy(&m);
                return 0;
            }
        } else if (env->body == PB_BODY_TASK && welcomed) {
            c->round = env->task.round;
            c->density = env->task.compress.density;
            pb_msg_destroy(&m);
            return 0;
        } else if (env->body == PB_BODY_REJECT) {
            printf("hello refused: reject %u %s\n", env->reject.code,
                   fl_err_name((enum fl_err)env->reject.code));
        } else if (env->body == PB_BODY_BYE) {
            printf("hello answered with bye\n");
            pb_msg_destroy(&m);
            return 3;
        }
        pb_msg_destroy(&m);
    }
    printf("no %s within %g s\n", welcomed ? "task" : "welcome",
           c->o->task_timeout);
    return 3;
}

/* Collect replies until reply_timeout passes without one. */
static void collect(struct client *c)
{
    const int ms = (int)(c->o->reply_timeout * 1000);
    for (;;) {
        struct pb_msg *m = NULL;
        const struct pb_envelope *env = NULL;
        if (recv_env(c, ms, &m, &env) < 0 || env == NULL)
            break;
        if (env->body == PB_BODY_REJECT) {
            char rnd[32] = "-";
            if (env->reject.has_round)
                snprintf(rnd, sizeof(rnd), "%llu",
                         (unsigned long long)env->reject.round);
            printf("reply: reject %u %s (round %s): %s\n", env->reject.code,
                   fl_err_name((enum fl_err)env->reject.code), rnd,
                   env->reject.reason);
            c->out = OUT_REJECT;
            c->code = env->reject.code;
        } else {
            printf("reply: %s\n", pb_body_name(env->body));
        }
        pb_msg_destroy(&m);
    }
    if (c->disconnected) {
        c->out = OUT_DISCONNECTED;
        printf("reply: disconnected\n");
    }
}

static void leave(struct client *c)
{
    struct pb_envelope bye;
    memset(&bye, 0, sizeof(bye));
    bye.version = PB_PROTOCOL_VERSION;
    bye.body = PB_BODY_BYE;
    bye.bye.reason = "attack over";
    if (c->disconnected) {
        /* a new connection: Hello binds it to our id, then the Bye */
        struct pb_msg *m = NULL;
        const struct pb_envelope *env = NULL;
        say_hello(c);
        for (int i = 0; i < 30; i++) {
            if (recv_env(c, 100, &m, &env) < 0)
                break;
            const bool done = env != NULL && env->body == PB_BODY_WELCOME;
            pb_msg_destroy(&m);
            if (done)
                break;
        }
    }
    send_env(c, &bye);
}

static bool matches_one(const struct client *c, const char *expect)
{
    uint64_t code = 0;
    if (strcmp(expect, "drop") == 0)
        return c->out != OUT_REJECT;
    if (strcmp(expect, "none") == 0)
        return c->out == OUT_NONE;
    if (strcmp(expect, "disconnected") == 0)
        return c->out == OUT_DISCONNECTED;
    if (c->out != OUT_REJECT)
        return false;
    if (fl_parse_u64(expect, 0, UINT32_MAX, &code) == FL_OK)
        return c->code == code;
    return strcmp(expect, fl_err_name((enum fl_err)c->code)) == 0;
}

/* expect is a comma-separated list of alternatives */
static bool matches(const struct client *c, const char *expect)
{
    char buf[128];
    const size_t n = strlen(expect);
    if (n >= sizeof(buf))
        return false;
    memcpy(buf, expect, n + 1);
    for (char *item = buf; item != NULL;) {
        char *comma = strchr(item, ',');
        if (comma != NULL)
            *comma = '\0';
        if (matches_one(c, item))
            return true;
        item = comma != NULL ? comma + 1 : NULL;
    }
    return false;
}

static void release(struct client *c)
{
    for (int i = 0; i < c->nmsgs; i++) {
        fl_free(c->msgs[i].frame[0]);
        fl_free(c->msgs[i].frame[1]);
    }
    if (c->sock != NULL)
        zmq_socket_monitor(c->sock, NULL, 0);
    if (c->mon != NULL)
        zmq_close(c->mon);
    if (c->sock != NULL)
        zmq_close(c->sock);
    if (c->zctx != NULL)
        zmq_ctx_term(c->zctx);
    cmp_ctx_destroy(&c->ctx);
}

static int run(const struct opts *o)
{
    struct client c;
    int rc = 0;
    memset(&c, 0, sizeof(c));
    c.o = o;
    c.ctx = cmp_ctx_new();
    if (c.ctx == NULL || open_client(&c) != 0) {
        fl_log(FL_LOG_ERR, "cannot set up the socket");
        rc = 3;
        goto out;
    }
    rc = join(&c);
    if (rc != 0)
        goto out;
    for (uint32_t r = 0; r < o->repeat && rc == 0; r++) {
        if (build_attack(&c) != 0) {
            rc = 2;
            break;
        }
    }
    for (int i = 0; i < c.nmsgs && rc == 0; i++) {
        size_t total = c.msgs[i].len[0] + c.msgs[i].len[1];
        if (send_frames(&c, &c.msgs[i]) != 0)
            rc = 3;
        else
            printf("attack %s: sent %zu bytes in %d frame(s) for round "
                   "%llu\n", o->attack, total, c.msgs[i].nframes,
                   (unsigned long long)c.round);
    }
    if (rc != 0)
        goto out;
    collect(&c);
    printf("outcome: %s", c.out == OUT_REJECT         ? "reject"
                          : c.out == OUT_DISCONNECTED ? "disconnected"
                                                      : "no reply");
    if (c.out == OUT_REJECT)
        printf(" %u %s", c.code, fl_err_name((enum fl_err)c.code));
    printf("\n");
    if (o->expect != NULL && !matches(&c, o->expect)) {
        printf("unexpected: wanted %s\n", o->expect);
        rc = 1;
    }
    if (o->bye)
        leave(&c);
out:
    fflush(stdout);
    release(&c);
    return rc;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fputs("usage: fedcomp-attack --connect EP --attack NAME [OPTIONS]\n"
          "\n"
          "A hostile device: joins, waits for its Task, sends one malicious\n"
          "message and reports what the coordinator answered.\n"
          "\n"
          "  --connect EP          coordinator endpoint\n"
          "  --attack NAME         garbage truncated oversize zipbomb nan\n"
          "                        index-range index-order wrong-dim\n"
          "                        stale-round duplicate huge-samples\n"
          "                        huge-norm k-over-dim bad-checksum\n"
          "                        trailing-frame wrong-version no-body\n"
          "                        multipart log-inject valid\n"
          "  --expect WHAT         CODE, code name, drop, none or\n"
          "                        disconnected, or several of them with\n"
          "                        commas; exit 1 when none is met\n"
          "  --id ID               device id (attacker)\n"
          "  --samples N           n_samples in Hello (100)\n"
          "  --update-samples N    n_samples in updates (= --samples)\n"
          "  --size BYTES          frame size for oversize (67108865)\n"
          "  --repeat N            send the attack N times (1)\n"
          "  --no-task             do not wait for a Task: use the Welcome's\n"
          "                        round\n"
          "  --task-timeout S      wait for Welcome and Task (30)\n"
          "  --reply-timeout S     quiet time that ends the wait for\n"
          "                        replies (3)\n"
          "  --no-bye              leave without Bye\n"
          "Exit: 0 ok, 1 unexpected outcome, 2 usage, 3 no Welcome/Task.\n",
          f);
}

static int parse(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"connect", required_argument, NULL, 'c'},
        {"attack", required_argument, NULL, 'a'},
        {"expect", required_argument, NULL, 'e'},
        {"id", required_argument, NULL, 'i'},
        {"samples", required_argument, NULL, 's'},
        {"update-samples", required_argument, NULL, 'u'},
        {"size", required_argument, NULL, 'z'},
        {"repeat", required_argument, NULL, 'r'},
        {"no-task", no_argument, NULL, 'n'},
        {"task-timeout", required_argument, NULL, 't'},
        {"reply-timeout", required_argument, NULL, 'w'},
        {"no-bye", no_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    bool usamples = false;
    uint64_t v = 0;
    int ch;
    memset(o, 0, sizeof(*o));
    o->id = "attacker";
    o->samples = 100;
    o->size = (64ULL << 20) + 1;
    o->repeat = 1;
    o->task_timeout = 30;
    o->reply_timeout = 3;
    o->bye = true;
    opterr = 0;
    for (;;) {
        enum fl_err rc = FL_OK;
        ch = getopt_long(argc, argv, "h", lo, NULL);
        if (ch == -1)
            break;
        switch (ch) {
        case 'c': o->connect = optarg; break;
        case 'a': o->attack = optarg; break;
        case 'e': o->expect = optarg; break;
        case 'i': o->id = optarg; break;
        case 's': rc = fl_parse_u64(optarg, 0, UINT64_MAX, &o->samples);
            break;
        case 'u': rc = fl_parse_u64(optarg, 0, UINT64_MAX,
                                    &o->update_samples);
            usamples = true;
            break;
        case 'z': rc = fl_parse_u64(optarg, 1, 1ULL << 31, &o->size); break;
        case 'r': rc = fl_parse_u64(optarg, 1, MAX_MSGS / 2, &v);
            o->repeat = (uint32_t)v;
            break;
        case 'n': o->no_task = true; break;
        case 't': rc = fl_parse_double(optarg, 0.1, 3600, &o->task_timeout);
            break;
        case 'w': rc = fl_parse_double(optarg, 0.05, 600, &o->reply_timeout);
            break;
        case 'b': o->bye = false; break;
        case 'h': usage(stdout); return 1;
        default:
            fprintf(stderr, "fedcomp-attack: bad option '%s'\n",
                    argv[optind - 1]);
            return 2;
        }
        if (rc != FL_OK) {
            fprintf(stderr, "fedcomp-attack: bad value '%s'\n", optarg);
            return 2;
        }
    }
    if (o->connect == NULL || o->attack == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!usamples)
        o->update_samples = o->samples;
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    const int p = parse(argc, argv, &o);
    if (p != 0)
        return p == 1 ? 0 : 2;
    fl_log_init("attack", NULL);
    fl_log_set_level(FL_LOG_NOTICE);
    return run(&o);
}
