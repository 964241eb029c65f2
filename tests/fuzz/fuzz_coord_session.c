/*
 * fuzz_coord_session.c - fuzz target for whole sessions with the
 * coordinator: many messages from several devices over time, with chunked
 * transfers both ways, so that the transfer state (windows, credits,
 * upload slots, stalls, cancels, reassembly) is driven into corners one
 * message cannot reach (fuzz_coord_update takes a single message).
 *
 * Setup for every input: a real struct coord_engine, no sockets, a fake
 * clock; a 1,024-parameter model (random, so its dense encoding does not
 * shrink: about 4 chunks of 1 KiB), every Task payload chunked
 * (--inline-bytes 0 --chunk-bytes 1024), window 2, 3 chunks in flight over
 * all devices, 1 upload slot, a 2 s upload stall, 3 rounds, quorum 0.34,
 * round deadline 10 s. Devices d1, d2, d3 (routing ids 1-3) say Hello;
 * routing id 4 never does.
 *
 * The input is a list of operations, each one byte `op` (device = op & 3,
 * kind = op >> 2 & 7) and its arguments:
 *   0  raw:     2 bytes length (little endian), then that many bytes,
 *               handed over as one message from the device
 *   1  credit:  1 byte n: Credit{the device's current download, n}
 *   2  time:    1 byte t: the clock moves t x 50 ms, then a tick
 *   3  announce: 1 byte k: an Update of the open round with k (1..256)
 *               entries, its payload announced (payload_transfer 100 + dev)
 *   4  chunk:   1 byte s: chunk s of that announced payload (s >= total:
 *               a chunk with a seq out of range)
 *   5  update:  1 byte k: the same Update with its payload inline
 *   6  hello:   the device says Hello again
 *   7  cancel:  Credit{the device's current download, cancel}
 * The device learns its download's transfer id from the Tasks the engine
 * sends it. At the end the clock moves 60 s in steps, so every deadline
 * passes.
 *
 * Checks: the global model stays finite; its version never decreases and
 * never passes 1 + rounds; the engine ends without a crash, a sanitizer
 * report or a leak (ASan/UBSan/LSan in the fuzz and replay builds).
 *
 * Seeds: tests/fuzz/corpus/fuzz_coord_session/ is written by this file
 * built with -DFUZZ_SESSION_SEEDS (a main() of its own), like
 * fuzz_coord_update.c says.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "common/fl_log.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "coordinator/coord_engine.h"
#include "coordinator/coord_xfer.h"
#include "proto/pb_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIM 1024
#define NDEV 4
#define MS 1000000ULL
#define S 1000000000ULL

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_coord_session: check failed: %s (line "    \
                    "%d)\n", #cond, __LINE__);                                \
            abort();                                                          \
        }                                                                     \
    } while (0)

static const struct pb_limits lim = {1u << 24, 1u << 25};

/* What the fake devices know. */
struct dev {
    uint64_t download;        /* transfer id of the current download */
    uint8_t *upload;          /* the announced payload (fl_malloc) */
    size_t upload_len;
};

struct session {
    struct dev dev[NDEV];
    uint64_t round;           /* of the last Task seen by anyone */
};

static struct session ses;

/* The engine's frames to a device: learn Tasks' transfer ids. */
static void learn(const uint8_t *rid, size_t rid_len, const uint8_t *buf,
                  size_t len)
{
    struct pb_msg *m = NULL;
    const struct pb_envelope *env = NULL;
    if (rid_len != 1 || rid[0] < 1 || rid[0] > NDEV)
        return;
    if (pb_unpack(buf, len, &lim, &m, &env, NULL, NULL, 0) != FL_OK)
        return;
    if (env->body == PB_BODY_TASK) {
        ses.dev[rid[0] - 1].download = env->task.model.payload_transfer;
        if (env->task.round > ses.round)
            ses.round = env->task.round;
    }
    pb_msg_destroy(&m);
}

static enum fl_err on_send(void *ctx, const uint8_t *rid, size_t rid_len,
                           uint8_t *buf, size_t len)
{
    (void)ctx;
    learn(rid, rid_len, buf, len);
    fl_free(buf);
    return FL_OK;
}

static enum fl_err on_send_shared(void *ctx, const uint8_t *rid,
                                  size_t rid_len, struct coord_frame *f)
{
    (void)ctx;
    (void)rid;
    (void)rid_len;
    /* a chunk: the bytes are read to catch a frame freed too early */
    const uint8_t *d = coord_frame_data(f);
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < coord_frame_len(f); i += 512)
        sink ^= d[i];
    (void)sink;
    return FL_OK;
}

static void feed(struct coord_engine *e, uint8_t rid,
                 const struct pb_envelope *env, uint64_t now)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(pb_pack_alloc(env, &buf, &len) == FL_OK);
    coord_engine_on_message(e, &rid, 1, buf, len, 0, 0, now);
    fl_free(buf);
}

/* An Update of the open round with k entries; announced (the payload kept
 * for chunks) or inline. */
static void send_update(struct coord_engine *e, struct cmp_ctx *ctx,
                        uint8_t dev, unsigned k, bool announce, uint64_t now)
{
    uint32_t idx[256];
    float val[256];
    struct cmp_meta meta;
    const uint8_t *payload = NULL;
    size_t plen = 0;
    k = 1 + k % 256;
    for (unsigned i = 0; i < k; i++) {
        idx[i] = (uint32_t)(i * (DIM / 256) + dev);
        val[i] = 0.001f * (float)((int)(i % 7) - 3);
    }
    const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP32,
                                 CMP_CODEC_NONE, 0};
    CHECK(cmp_sparse_encode(ctx, DIM, idx, val, k, &p, &meta, &payload,
                            &plen) == FL_OK);
    struct pb_envelope env = {.version = 1, .body = PB_BODY_UPDATE};
    struct pb_update *u = &env.update;
    u->round = ses.round;
    u->n_samples = 100;
    u->delta = (struct pb_tensor){
        .dimension = meta.dimension, .k = meta.k,
        .index_coding = meta.index_coding, .value_coding = meta.value_coding,
        .codec = meta.codec, .raw_size = meta.raw_size,
        .checksum = meta.checksum};
    struct dev *d = &ses.dev[dev];
    if (announce) {
        fl_free(d->upload);
        d->upload = fl_malloc(plen);
        CHECK(d->upload != NULL);
        memcpy(d->upload, payload, plen);
        d->upload_len = plen;
        u->delta.payload_transfer = 100 + dev;
        u->delta.payload_bytes = plen;
    } else {
        u->delta.payload = payload;
        u->delta.payload_len = plen;
    }
    feed(e, (uint8_t)(dev + 1), &env, now);
}

static void send_chunk(struct coord_engine *e, uint8_t dev, unsigned seq,
                       uint64_t now)
{
    const struct dev *d = &ses.dev[dev];
    const size_t cb = 1024;
    const size_t total = d->upload_len == 0 ? 1
                                            : (d->upload_len + cb - 1) / cb;
    struct pb_envelope env = {.version = 1, .body = PB_BODY_CHUNK};
    env.chunk.transfer = 100 + dev;
    env.chunk.seq = seq;
    env.chunk.total = (uint32_t)total;
    if (seq < total && d->upload != NULL) {
        const size_t off = (size_t)seq * cb;
        env.chunk.data = d->upload + off;
        env.chunk.len = FL_MIN(cb, d->upload_len - off);
    } else {
        static const uint8_t junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        env.chunk.data = junk;
        env.chunk.len = sizeof(junk);
    }
    feed(e, (uint8_t)(dev + 1), &env, now);
}

static void hello(struct coord_engine *e, uint8_t dev, uint64_t now)
{
    static const char *const ids[NDEV] = {"d1", "d2", "d3", "d4"};
    struct pb_envelope env = {.version = 1, .body = PB_BODY_HELLO};
    env.hello.device_id = ids[dev];
    env.hello.n_samples = 100;
    feed(e, (uint8_t)(dev + 1), &env, now);
}

static int quiet;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct coord_config cfg;
    struct mdl_layout layout;
    struct coord_report *report = NULL;
    struct coord_engine *e = NULL;
    static float init[DIM];
    char err[128];
    uint64_t now = 1000 * S;
    if (!quiet) {
        fl_log_init("fuzz", NULL);
        fl_log_set_level(FL_LOG_OFF);
        struct fl_rng r;
        fl_rng_seed(&r, 7);
        for (int i = 0; i < DIM; i++)
            init[i] = (float)(0.1 * fl_rng_normal(&r));
        quiet = 1;
    }
    memset(&ses, 0, sizeof(ses));
    coord_config_defaults(&cfg);
    cfg.min_devices = 3;
    cfg.rounds = 3;
    cfg.density = 0.25;
    cfg.quorum = 0.34;
    cfg.round_timeout = 10;
    cfg.inline_bytes = 0;
    cfg.chunk_bytes = 1024;
    cfg.chunk_window = 2;
    cfg.max_inflight_chunks = 3;
    cfg.upload_slots = 1;
    cfg.upload_stall_ms = 2000;
    memset(&layout, 0, sizeof(layout));
    layout.dim = DIM;
    layout.ntensors = 1;
    snprintf(layout.tensors[0].name, MDL_TENSOR_NAME_MAX, "w");
    layout.tensors[0].size = DIM;
    layout.tensors[0].ndim = 1;
    layout.tensors[0].shape[0] = DIM;
    CHECK(coord_report_open(NULL, &report, err, sizeof(err)) == FL_OK);
    const struct coord_engine_env env = {
        .cfg = &cfg, .layout = &layout, .init = init,
        .io = {.send = on_send, .send_shared = on_send_shared},
        .report = report, .epoch = 5};
    CHECK(coord_engine_new(&env, &e) == FL_OK);
    struct cmp_ctx *ctx = cmp_ctx_new();
    CHECK(ctx != NULL);
    coord_engine_start(e, now);
    for (uint8_t d = 0; d < 3; d++)
        hello(e, d, now);
    coord_engine_tick(e, now);

    const struct coord_agg *a = coord_engine_agg(e);
    uint64_t version = coord_agg_version(a);
    size_t i = 0;
    while (i < size) {
        const uint8_t op = data[i++];
        const uint8_t dev = op & 3;
        const unsigned kind = (op >> 2) & 7;
        unsigned arg = 0;
        if (kind != 0 && kind != 6 && kind != 7) {
            if (i >= size)
                break;
            arg = data[i++];
        }
        switch (kind) {
        case 0: {
            if (size - i < 2) {
                i = size;
                break;
            }
            size_t len = (size_t)data[i] | (size_t)data[i + 1] << 8;
            i += 2;
            len = FL_MIN(len, size - i);
            const uint8_t rid = (uint8_t)(dev + 1);
            coord_engine_on_message(e, &rid, 1, data + i, len, 0, 0, now);
            i += len;
            break;
        }
        case 1: {
            struct pb_envelope c = {.version = 1, .body = PB_BODY_CREDIT};
            c.credit.transfer = ses.dev[dev].download;
            c.credit.received = arg;
            feed(e, (uint8_t)(dev + 1), &c, now);
            break;
        }
        case 2:
            now += (uint64_t)arg * 50 * MS;
            coord_engine_tick(e, now);
            break;
        case 3:
        case 5:
            send_update(e, ctx, dev, arg, kind == 3, now);
            break;
        case 4:
            send_chunk(e, dev, arg, now);
            break;
        case 6:
            hello(e, dev, now);
            break;
        default: {
            struct pb_envelope c = {.version = 1, .body = PB_BODY_CREDIT};
            c.credit.transfer = ses.dev[dev].download;
            c.credit.cancel = true;
            feed(e, (uint8_t)(dev + 1), &c, now);
            break;
        }
        }
        const uint64_t v = coord_agg_version(a);
        CHECK(v >= version && v <= 1 + cfg.rounds);
        version = v;
    }
    for (int t = 0; t < 60; t++) {
        now += S;
        coord_engine_tick(e, now);
    }
    CHECK(coord_agg_version(a) >= version &&
          coord_agg_version(a) <= 1 + cfg.rounds);
    const float *w = coord_agg_params(a);
    for (int j = 0; j < DIM; j++)
        CHECK(isfinite(w[j]));
    cmp_ctx_destroy(&ctx);
    coord_engine_destroy(&e);
    coord_report_close(&report);
    coord_config_release(&cfg);
    for (int d = 0; d < NDEV; d++)
        fl_free(ses.dev[d].upload);
    memset(&ses, 0, sizeof(ses));
    return 0;
}

#ifdef FUZZ_SESSION_SEEDS
#include "tests/fuzz/fuzz_seed.h"

/* ---- the seed corpus: sessions that complete rounds both ways, and
 * some that misbehave */

#define OP(kind, dev) ((uint8_t)((kind) << 2 | (dev)))

/* every device downloads (4 credits), then uploads */
static size_t good_round(uint8_t *b, size_t n, bool announced)
{
    for (uint8_t d = 0; d < 3; d++)
        for (uint8_t c = 1; c <= 5; c++) {
            b[n++] = OP(1, d);
            b[n++] = c;
        }
    for (uint8_t d = 0; d < 3; d++) {
        b[n++] = OP(announced ? 3 : 5, d);
        b[n++] = 200;
        if (announced) {
            b[n++] = OP(4, d);
            b[n++] = 0;
            b[n++] = OP(4, d);
            b[n++] = 1;
            b[n++] = OP(2, d);
            b[n++] = 1;
        }
    }
    b[n++] = OP(2, 0);
    b[n++] = 2;
    return n;
}

int main(int argc, char **argv)
{
    uint8_t b[4096];
    size_t n = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    n = good_round(b, 0, false);
    n = good_round(b, n, false);
    n = good_round(b, n, false);
    fuzz_seed_write(dir, "three_rounds_inline", b, n);
    n = good_round(b, 0, true);
    n = good_round(b, n, true);
    fuzz_seed_write(dir, "two_rounds_chunked", b, n);
    /* an upload that stalls, a second one waiting for the slot */
    n = 0;
    b[n++] = OP(3, 0);
    b[n++] = 250;
    b[n++] = OP(3, 1);
    b[n++] = 250;
    b[n++] = OP(2, 0);
    b[n++] = 60; /* 3 s: past the stall */
    b[n++] = OP(4, 1);
    b[n++] = 0;
    b[n++] = OP(4, 1);
    b[n++] = 1;
    fuzz_seed_write(dir, "upload_stall", b, n);
    /* chunks out of place, a cancel, a rehello, credits out of range */
    n = 0;
    b[n++] = OP(3, 2);
    b[n++] = 250;
    b[n++] = OP(4, 2);
    b[n++] = 1;
    b[n++] = OP(4, 2);
    b[n++] = 9;
    b[n++] = OP(7, 0);
    b[n++] = OP(6, 1);
    b[n++] = OP(1, 2);
    b[n++] = 250;
    b[n++] = OP(1, 3);
    b[n++] = 1;
    fuzz_seed_write(dir, "misbehaving", b, n);
    /* a raw garbage message from an unknown device */
    n = 0;
    b[n++] = OP(0, 3);
    b[n++] = 5;
    b[n++] = 0;
    memcpy(b + n, "\xff\x13\x37\x00\x42", 5);
    n += 5;
    fuzz_seed_write(dir, "raw_garbage", b, n);
    fuzz_seed_write(dir, "empty", b, 0);
    printf("seeds written to %s\n", dir);
    return 0;
}
#endif
