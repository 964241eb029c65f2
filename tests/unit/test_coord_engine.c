/*
 * Unit tests for coordinator/coord_engine: the round state machine driven
 * without sockets. Fake devices say Hello, receive Tasks (whose models are
 * decoded and checked bit for bit), send real encoded Updates (good and
 * bad), and a fake clock moves deadlines. Checks: the weighted-mean model,
 * every reject code, quorum at the deadline, abandon and retry, late
 * updates and the fate reported back in Task/Bye, stop, wait timeout,
 * unreachable peers, re-Hello, report rows, and hostile bytes.
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

#include "common/fl_alloc.h"
#include "common/fl_log.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "coordinator/coord_engine.h"
#include "proto/pb_msg.h"
#include "tests/unit/coord_harness.h"

#define S (1000000000ULL)
#define DIM 24

struct harness {
    struct coord_config cfg;
    struct mdl_layout layout;
    float init[DIM];
    struct coord_report *report;
    struct coord_engine *e;
    struct th_outbox ob;       /* ob.dead[rid]: sends to rid fail */
    uint64_t now;
    int evals;
    char *report_dir;
    struct cmp_ctx *ctx;
};

/* ---- fake transport */

/* Takes ownership of buf, as the real transport does. */
static enum fl_err fake_send(void *ctx, const uint8_t *rid, size_t rid_len,
                             uint8_t *buf, size_t len)
{
    struct harness *h = ctx;
    return th_outbox_send(&h->ob, rid, rid_len, buf, len);
}

static enum fl_err fake_eval(void *ctx, const float *params, size_t dim,
                             double *acc, double *loss)
{
    struct harness *h = ctx;
    (void)params;
    assert_int_equal(dim, DIM);
    *acc = 0.5 + 0.01 * h->evals;
    *loss = 1.0 / (1 + h->evals);
    h->evals++;
    return FL_OK;
}

static void make_layout(struct mdl_layout *l)
{
    memset(l, 0, sizeof(*l));
    l->dim = DIM;
    l->ntensors = 2;
    snprintf(l->tensors[0].name, MDL_TENSOR_NAME_MAX, "fc1.weight");
    l->tensors[0].offset = 0;
    l->tensors[0].size = 20;
    l->tensors[0].ndim = 2;
    l->tensors[0].shape[0] = 4;
    l->tensors[0].shape[1] = 5;
    snprintf(l->tensors[1].name, MDL_TENSOR_NAME_MAX, "fc1.bias");
    l->tensors[1].offset = 20;
    l->tensors[1].size = 4;
    l->tensors[1].ndim = 1;
    l->tensors[1].shape[0] = 4;
}

static struct harness *harness_new(const char *flags, bool with_reports)
{
    struct harness *h = calloc(1, sizeof(*h));
    char err[256];
    assert_non_null(h);
    th_config(&h->cfg, flags);
    make_layout(&h->layout);
    for (int i = 0; i < DIM; i++)
        h->init[i] = (float)(i - 12) * 0.125f;
    if (with_reports) {
        char tmpl[] = "/tmp/test_coord_engine.XXXXXX";
        assert_non_null(mkdtemp(tmpl));
        h->report_dir = strdup(tmpl);
    }
    assert_int_equal(coord_report_open(h->report_dir, &h->report, err,
                                       sizeof(err)),
                     FL_OK);
    const struct coord_io io = {.ctx = h, .send = fake_send,
                                .evaluate = fake_eval};
    h->e = th_engine(&h->cfg, &h->layout, h->init, &io, h->report, 0xabcdef);
    h->ctx = cmp_ctx_new();
    assert_non_null(h->ctx);
    h->now = 1000 * S;
    coord_engine_start(h->e, h->now);
    return h;
}

static void harness_free(struct harness *h)
{
    coord_engine_destroy(&h->e);
    coord_config_release(&h->cfg);
    coord_report_close(&h->report);
    th_outbox_release(&h->ob);
    cmp_ctx_destroy(&h->ctx);
    if (h->report_dir != NULL) {
        static const char *const names[] = {"rounds.csv", "rounds.jsonl",
                                            "devices.csv", "initial_acc"};
        char path[512];
        for (size_t i = 0; i < FL_ARRAY_LEN(names); i++) {
            snprintf(path, sizeof(path), "%s/%s", h->report_dir, names[i]);
            unlink(path);
        }
        rmdir(h->report_dir);
        free(h->report_dir);
    }
    free(h);
}

/* The first queued message to rid (optionally of one body type), removed
 * from the queue and parsed; NULL when there is none. */
static const struct pb_envelope *take(struct harness *h, uint8_t rid,
                                      enum pb_body body, size_t *len)
{
    return th_outbox_take(&h->ob, rid, body, false, NULL, len);
}

static size_t count_to(const struct harness *h, uint8_t rid)
{
    return th_outbox_count(&h->ob, rid);
}

/* The CURVE User-Id that feed() gives messages; NULL = plaintext. */
static const char *feed_user;

static void feed(struct harness *h, uint8_t rid, const uint8_t *buf,
                 size_t len)
{
    th_feed(h->e, rid, feed_user, buf, len, h->now);
}

static size_t feed_env(struct harness *h, uint8_t rid,
                       const struct pb_envelope *env)
{
    return th_feed_env(h->e, rid, feed_user, env, h->now);
}

static void hello(struct harness *h, uint8_t rid, const char *id,
                  uint64_t samples)
{
    struct pb_envelope env = {.version = 1, .body = PB_BODY_HELLO};
    env.hello.device_id = id;
    env.hello.n_samples = samples;
    feed_env(h, rid, &env);
    const struct pb_envelope *w = take(h, rid, PB_BODY_WELCOME, NULL);
    assert_non_null(w);
    assert_string_equal(w->welcome.device_id, id);
    assert_int_equal(w->welcome.dimension, DIM);
    assert_int_equal(w->welcome.epoch, 0xabcdef);
    assert_int_equal(w->welcome.nlayout, 2);
    assert_string_equal(w->welcome.layout[0].name, "fc1.weight");
    assert_int_equal(w->welcome.layout[0].shape[1], 5);
    assert_int_equal(w->welcome.layout[1].offset, 20);
}

/* Take the Task sent to rid, check its model decodes (against held when it
 * is a delta) to exactly the coordinator's current model, and store it in
 * held. */
static const struct pb_task *take_task(struct harness *h, uint8_t rid,
                                       float *held)
{
    const struct pb_envelope *env = take(h, rid, PB_BODY_TASK, NULL);
    if (env == NULL)
        return NULL;
    const struct pb_task *t = &env->task;
    const struct cmp_meta meta = {
        .dimension = t->model.dimension,
        .k = t->model.k,
        .index_coding = (enum cmp_index_coding)t->model.index_coding,
        .value_coding = (enum cmp_value_coding)t->model.value_coding,
        .codec = (enum cmp_codec)t->model.codec,
        .raw_size = t->model.raw_size,
        .checksum = t->model.checksum};
    const struct cmp_limits l = {.dimension = DIM};
    assert_int_equal(t->epoch, 0xabcdef);
    assert_int_equal(cmp_dense_decode(h->ctx, &meta, t->model.payload,
                                      t->model.payload_len, &l,
                                      t->model.has_base_version ? held : NULL,
                                      held),
                     FL_OK);
    const struct coord_agg *a = coord_engine_agg(h->e);
    assert_int_equal(t->model_version, coord_agg_version(a));
    assert_memory_equal(held, coord_agg_params(a), DIM * sizeof(float));
    return t;
}

/* A sparse update as a worker would send it (fp32 values, codec none). */
static size_t send_update(struct harness *h, uint8_t rid, uint64_t round,
                          uint64_t samples, const uint32_t *idx,
                          const float *val, size_t k)
{
    float v[DIM];
    const uint8_t *payload = NULL;
    size_t plen = 0;
    struct cmp_meta meta;
    const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP32,
                                 CMP_CODEC_ZSTD, 1};
    memcpy(v, val, k * sizeof(float));
    assert_int_equal(cmp_sparse_encode(h->ctx, DIM, idx, v, k, &p, &meta,
                                       &payload, &plen),
                     FL_OK);
    struct pb_envelope env = {.version = 1, .body = PB_BODY_UPDATE};
    struct pb_update *u = &env.update;
    u->round = round;
    u->n_samples = samples;
    u->delta.dimension = meta.dimension;
    u->delta.k = meta.k;
    u->delta.index_coding = meta.index_coding;
    u->delta.value_coding = meta.value_coding;
    u->delta.codec = meta.codec;
    u->delta.raw_size = meta.raw_size;
    u->delta.checksum = meta.checksum;
    u->delta.payload = payload;
    u->delta.payload_len = plen;
    u->stats.loss = 0.5f;
    u->stats.train_ms = 10;
    return feed_env(h, rid, &env);
}

static const struct pb_reject *take_reject(struct harness *h, uint8_t rid)
{
    const struct pb_envelope *env = take(h, rid, PB_BODY_REJECT, NULL);
    assert_non_null(env);
    return &env->reject;
}

/* ---- tests */

static void test_round_commits_weighted_mean(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 3 --rounds 3 "
                                    "--density 0.25", true);
    float held[4][DIM];
    double ref[DIM];
    hello(h, 1, "w1", 100);
    hello(h, 2, "w2", 200);
    assert_int_equal(coord_engine_tick(h->e, h->now), COORD_RUNNING);
    assert_int_equal(count_to(h, 1), 0); /* still waiting for the third */
    hello(h, 3, "w3", 300);
    assert_int_equal(coord_engine_tick(h->e, h->now), COORD_RUNNING);
    for (uint8_t r = 1; r <= 3; r++) {
        const struct pb_task *t = take_task(h, r, held[r]);
        assert_non_null(t);
        assert_int_equal(t->round, 1);
        assert_int_equal(t->model_version, 1);
        assert_false(t->model.has_base_version);
        assert_int_equal(t->last_update, PB_UPDATE_NONE);
        assert_true(fabsf(t->compress.density - 0.25f) < 1e-6f);
        assert_int_equal(t->compress.values, CMP_VALUE_FP16);
        assert_int_equal(t->compress.codec, CMP_CODEC_ZSTD);
        assert_int_equal(t->compress.level, 1);
        assert_true(t->compress.error_feedback);
        assert_int_equal(t->train.batch_size, 32);
        assert_int_equal(t->timeout_ms, 60000);
    }
    /* three updates with different weights (k = 6 = density * 24) */
    static const uint32_t idx[3][6] = {{0, 1, 2, 3, 4, 5},
                                       {3, 4, 5, 6, 7, 23},
                                       {1, 5, 9, 13, 17, 21}};
    static const float val[3][6] = {{1, 2, 3, 4, 5, 6},
                                    {-1, -2, -3, 0.5f, 0.25f, 8},
                                    {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f}};
    static const uint64_t w[3] = {100, 200, 300};
    for (int i = 0; i < DIM; i++)
        ref[i] = 0;
    size_t up = 0;
    for (int d = 0; d < 3; d++) {
        up += send_update(h, (uint8_t)(d + 1), 1, w[d], idx[d], val[d], 6);
        for (int j = 0; j < 6; j++)
            ref[idx[d][j]] += (double)w[d] * val[d][j] / 600.0;
        assert_int_equal(count_to(h, (uint8_t)(d + 1)), 0); /* no reply */
    }
    h->now += 2 * S;
    assert_int_equal(coord_engine_tick(h->e, h->now), COORD_RUNNING);
    const struct coord_agg *a = coord_engine_agg(h->e);
    assert_int_equal(coord_agg_version(a), 2);
    for (int i = 0; i < DIM; i++)
        assert_true(fabs((double)coord_agg_params(a)[i] -
                         ((double)h->init[i] + ref[i])) < 1e-6);
    const struct coord_round_row *row = coord_engine_last_row(h->e);
    assert_int_equal(row->round, 1);
    assert_int_equal(row->attempt, 1);
    assert_true(row->committed);
    assert_int_equal(row->joined, 3);
    assert_int_equal(row->selected, 3);
    assert_int_equal(row->reported, 3);
    assert_int_equal(row->dropped, 0);
    assert_int_equal(row->rejected, 0);
    assert_int_equal(row->up_wire_bytes, up);
    assert_int_equal(row->up_dense_bytes, 3 * DIM * 4);
    assert_int_equal(row->down_dense_bytes, 3 * DIM * 4);
    assert_true(row->down_wire_bytes > 0);
    assert_true(fabs(row->test_acc - 0.51) < 1e-9); /* second evaluation */
    assert_true(fabs(row->wall_s - 2.0) < 1e-9);

    /* round 2 opened at once; the Task is a delta from version 1 and
     * says the last update was used */
    assert_int_equal(coord_engine_round(h->e), 2);
    for (uint8_t r = 1; r <= 3; r++) {
        const struct pb_task *t = take_task(h, r, held[r]);
        assert_non_null(t);
        assert_int_equal(t->round, 2);
        assert_true(t->model.has_base_version);
        assert_int_equal(t->model.base_version, 1);
        assert_int_equal(t->last_update, PB_UPDATE_USED);
        assert_int_equal(t->last_update_round, 1);
    }
    /* rounds 2 and 3: one update each is enough to finish (quorum 0.5 at
     * the deadline) */
    for (uint64_t round = 2; round <= 3; round++) {
        send_update(h, 1, round, 10, idx[0], val[0], 6);
        send_update(h, 2, round, 10, idx[1], val[1], 6);
        h->now += 61 * S;
        coord_engine_tick(h->e, h->now);
        if (round == 2) {
            for (uint8_t r = 1; r <= 3; r++)
                assert_non_null(take_task(h, r, held[r]));
        }
    }
    assert_int_equal(coord_engine_status(h->e), COORD_DONE);
    for (uint8_t r = 1; r <= 3; r++) {
        const struct pb_envelope *b = take(h, r, PB_BODY_BYE, NULL);
        assert_non_null(b);
        assert_int_equal(b->bye.last_update, PB_UPDATE_USED);
        assert_int_equal(b->bye.last_update_round, r == 3 ? 1 : 3);
    }
    struct coord_summary s;
    coord_engine_summary(h->e, h->now, &s);
    assert_int_equal(s.rounds_done, 3);
    assert_int_equal(s.attempts, 3);
    assert_int_equal(s.updates_used, 7);
    assert_true(s.down_wire_bytes > row->down_wire_bytes);
    assert_true(fabs(s.initial_acc - 0.5) < 1e-9);

    /* the report has 3 round rows and 9 device rows */
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "test $(wc -l < %s/rounds.csv) -eq 4 && "
             "test $(wc -l < %s/devices.csv) -eq 10 && "
             "test $(grep -c ',dropped,' %s/devices.csv) -eq 2 && "
             "test \"$(cat %s/initial_acc)\" = 0.500000",
             h->report_dir, h->report_dir, h->report_dir, h->report_dir);
    assert_int_equal(system(cmd), 0);
    harness_free(h);
}

/* An Update whose payload is announced and sent as chunks. */
static size_t announce_update(struct harness *h, uint8_t rid, uint64_t round,
                              uint64_t transfer, const uint8_t **payload,
                              size_t *plen)
{
    static const uint32_t idx[6] = {0, 3, 7, 11, 19, 23};
    float v[6] = {0.5f, -1, 2, 0.25f, 1, -0.5f};
    struct cmp_meta meta;
    const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP32,
                                 CMP_CODEC_ZSTD, 1};
    assert_int_equal(cmp_sparse_encode(h->ctx, DIM, idx, v, 6, &p, &meta,
                                       payload, plen), FL_OK);
    struct pb_envelope env = {.version = 1, .body = PB_BODY_UPDATE};
    struct pb_update *u = &env.update;
    u->round = round;
    u->n_samples = 50;
    u->delta.dimension = meta.dimension;
    u->delta.k = meta.k;
    u->delta.index_coding = meta.index_coding;
    u->delta.value_coding = meta.value_coding;
    u->delta.codec = meta.codec;
    u->delta.raw_size = meta.raw_size;
    u->delta.checksum = meta.checksum;
    u->delta.payload_transfer = transfer;
    u->delta.payload_bytes = *plen;
    return feed_env(h, rid, &env);
}

static size_t feed_chunk(struct harness *h, uint8_t rid, uint64_t transfer,
                         uint32_t seq, uint32_t total, const uint8_t *data,
                         size_t len)
{
    struct pb_envelope env = {.version = 1, .body = PB_BODY_CHUNK};
    env.chunk.transfer = transfer;
    env.chunk.seq = seq;
    env.chunk.total = total;
    env.chunk.data = data;
    env.chunk.len = len;
    return feed_env(h, rid, &env);
}

static void feed_credit(struct harness *h, uint8_t rid, uint64_t transfer,
                        uint32_t received)
{
    struct pb_envelope env = {.version = 1, .body = PB_BODY_CREDIT};
    env.credit.transfer = transfer;
    env.credit.received = received;
    feed_env(h, rid, &env);
}

/* Chunked transfers both ways: the model comes as one shared chunk per
 * device after a payload-less Task; an announced update waits for the
 * coordinator's credit, its chunks are checked and it is aggregated like
 * an inline one; a chunk out of place refuses the device's update. */
static void test_chunked_transfers(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 3 --rounds 1 "
                                    "--inline-bytes 0 --chunk-bytes 1024 --quorum 0.3 "
                                    "--density 0.25 --upload-slots 1", true);
    hello(h, 1, "w1", 100);
    hello(h, 2, "w2", 100);
    hello(h, 3, "w3", 100);
    assert_int_equal(coord_engine_tick(h->e, h->now), COORD_RUNNING);
    uint64_t transfer = 0;
    const uint8_t *first = NULL;
    size_t first_len = 0;
    for (uint8_t r = 1; r <= 3; r++) {
        const struct pb_envelope *te = take(h, r, PB_BODY_TASK, NULL);
        assert_non_null(te);
        const struct pb_tensor *m = &te->task.model;
        assert_int_equal(m->payload_len, 0);
        assert_int_not_equal(m->payload_transfer, 0);
        assert_true(m->payload_bytes > 0 && m->payload_bytes <= 1024);
        if (r == 1)
            transfer = m->payload_transfer;
        assert_int_equal(m->payload_transfer, transfer);  /* shared body */
        size_t clen = 0;
        const struct pb_envelope *c = take(h, r, PB_BODY_CHUNK, &clen);
        assert_non_null(c);
        assert_int_equal(c->chunk.transfer, transfer);
        assert_int_equal(c->chunk.seq, 0);
        assert_int_equal(c->chunk.total, 1);
        assert_int_equal(c->chunk.len, m->payload_bytes);
        if (r == 1) {
            first = c->chunk.data;
            first_len = c->chunk.len;
        } else {
            assert_memory_equal(c->chunk.data, first, first_len);
        }
        /* the chunk decodes to the model */
        float held[DIM];
        const struct cmp_meta meta = {
            .dimension = m->dimension, .k = m->k,
            .index_coding = (enum cmp_index_coding)m->index_coding,
            .value_coding = (enum cmp_value_coding)m->value_coding,
            .codec = (enum cmp_codec)m->codec, .raw_size = m->raw_size,
            .checksum = m->checksum};
        const struct cmp_limits l = {.dimension = DIM};
        assert_int_equal(cmp_dense_decode(h->ctx, &meta, c->chunk.data,
                                          c->chunk.len, &l, NULL, held),
                         FL_OK);
        assert_memory_equal(held, h->init, sizeof(held));
        feed_credit(h, r, transfer, 1);
        assert_int_equal(count_to(h, r), 0);
    }
    /* w1: announce, credit 0, one chunk, credit 1, accepted */
    const uint8_t *payload = NULL;
    size_t plen = 0;
    const size_t alen = announce_update(h, 1, 1, 77, &payload, &plen);
    const struct pb_envelope *cr = take(h, 1, PB_BODY_CREDIT, NULL);
    assert_non_null(cr);
    assert_int_equal(cr->credit.transfer, 77);
    assert_int_equal(cr->credit.received, 0);
    assert_false(cr->credit.cancel);
    /* w2 announces while w1 holds the only slot: no credit yet */
    uint8_t copy[1024];
    assert_true(plen <= sizeof(copy));
    memcpy(copy, payload, plen);
    announce_update(h, 2, 1, 88, &payload, &plen);
    assert_null(take(h, 2, PB_BODY_CREDIT, NULL));
    const size_t clen = feed_chunk(h, 1, 77, 0, 1, copy, plen);
    cr = take(h, 1, PB_BODY_CREDIT, NULL);
    assert_non_null(cr);
    assert_int_equal(cr->credit.received, 1);
    assert_null(take(h, 1, PB_BODY_REJECT, NULL));
    /* the slot went to w2 */
    cr = take(h, 2, PB_BODY_CREDIT, NULL);
    assert_non_null(cr);
    assert_int_equal(cr->credit.transfer, 88);
    /* w2 sends a chunk of the wrong length: its update is refused */
    feed_chunk(h, 2, 88, 0, 1, copy, plen - 1);
    const struct pb_reject *rj = take_reject(h, 2);
    assert_int_equal(rj->code, FL_ERR_TRANSFER);
    /* w3 sends a chunk with no announcement: refused too */
    feed_chunk(h, 3, 5, 0, 1, copy, plen);
    rj = take_reject(h, 3);
    assert_int_equal(rj->code, FL_ERR_TRANSFER);
    /* every member has answered: the round commits w1's update */
    assert_int_equal(coord_engine_tick(h->e, h->now), COORD_DONE);
    const struct coord_round_row *row = coord_engine_last_row(h->e);
    assert_true(row->committed);
    assert_int_equal(row->reported, 1);
    assert_int_equal(row->rejected, 2);
    assert_int_equal(row->up_wire_bytes, alen + clen);
    const float *w = coord_agg_params(coord_engine_agg(h->e));
    assert_true(fabsf(w[3] - (h->init[3] - 1.0f)) < 1e-6f);
    harness_free(h);
}

/* An announcement over the bound is refused before any chunk; a round
 * that closes drops an upload still waiting and cancels it. */
static void test_chunked_limits(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 2 --rounds 2 "
                                    "--quorum 0 --chunk-bytes 1024 "
                                    "--density 0.25 "
                                    "--upload-stall-ms 100000", true);
    hello(h, 1, "w1", 100);
    hello(h, 2, "w2", 100);
    assert_int_equal(coord_engine_tick(h->e, h->now), COORD_RUNNING);
    float held[DIM];
    assert_non_null(take_task(h, 1, held));
    assert_non_null(take_task(h, 2, held));
    struct pb_envelope env = {.version = 1, .body = PB_BODY_UPDATE};
    env.update.round = 1;
    env.update.n_samples = 5;
    env.update.delta.dimension = DIM;
    env.update.delta.k = 6;
    env.update.delta.index_coding = CMP_INDEX_DELTA_VARINT;
    env.update.delta.value_coding = CMP_VALUE_FP32;
    env.update.delta.codec = CMP_CODEC_NONE;
    env.update.delta.raw_size = 30;
    env.update.delta.payload_transfer = 9;
    env.update.delta.payload_bytes = 1u << 30;
    feed_env(h, 1, &env);
    assert_int_equal(take_reject(h, 1)->code, FL_ERR_TOO_LARGE);
    assert_null(take(h, 1, PB_BODY_CREDIT, NULL));
    /* w2 announces, gets its credit, sends nothing; the deadline closes
     * the round: its upload is cancelled and the device learns NOT_USED */
    env.update.delta.payload_bytes = 50;
    feed_env(h, 2, &env);
    const struct pb_envelope *cr = take(h, 2, PB_BODY_CREDIT, NULL);
    assert_non_null(cr);
    h->now += 61 * S;
    coord_engine_tick(h->e, h->now);
    cr = take(h, 2, PB_BODY_CREDIT, NULL);
    assert_non_null(cr);
    assert_int_equal(cr->credit.transfer, 9);
    assert_true(cr->credit.cancel);
    const struct pb_task *t = take_task(h, 2, held);
    assert_non_null(t);
    assert_int_equal(t->last_update, PB_UPDATE_NOT_USED);
    assert_int_equal(t->last_update_round, 1);
    harness_free(h);
}

/* A device that is granted an upload slot and sends nothing loses it after
 * --upload-stall-ms, and its update for the round is refused (53). */
static void test_chunked_stall(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 2 --rounds 1 "
                                    "--chunk-bytes 1024 --density 0.25 "
                                    "--upload-slots 1 --upload-stall-ms 5000",
                                    true);
    hello(h, 1, "w1", 100);
    hello(h, 2, "w2", 100);
    assert_int_equal(coord_engine_tick(h->e, h->now), COORD_RUNNING);
    float held[DIM];
    assert_non_null(take_task(h, 1, held));
    assert_non_null(take_task(h, 2, held));
    const uint8_t *payload = NULL;
    size_t plen = 0;
    announce_update(h, 1, 1, 11, &payload, &plen);
    assert_non_null(take(h, 1, PB_BODY_CREDIT, NULL));
    announce_update(h, 2, 1, 22, &payload, &plen);
    assert_null(take(h, 2, PB_BODY_CREDIT, NULL));   /* waits */
    h->now += 4 * S;
    coord_engine_tick(h->e, h->now);
    assert_int_equal(count_to(h, 1), 0);
    h->now += 2 * S;
    coord_engine_tick(h->e, h->now);
    const struct pb_envelope *cr = take(h, 1, PB_BODY_CREDIT, NULL);
    assert_non_null(cr);
    assert_true(cr->credit.cancel);
    assert_int_equal(take_reject(h, 1)->code, FL_ERR_TRANSFER);
    /* the slot went to w2 */
    cr = take(h, 2, PB_BODY_CREDIT, NULL);
    assert_non_null(cr);
    assert_int_equal(cr->credit.transfer, 22);
    assert_false(cr->credit.cancel);
    harness_free(h);
}

static void test_every_reject_code(void **state)
{
    (void)state;
    /* --penalty-after 0: members here earn several refusals in a row */
    struct harness *h = harness_new("--min-devices 5 --max-devices 5 "
                                    "--density 0.25 --max-samples 1000 "
                                    "--quorum 0 --penalty-after 0", false);
    float held[8][DIM];
    static const uint32_t idx[6] = {0, 2, 4, 6, 8, 10};
    static const float val[6] = {1, 1, 1, 1, 1, 1};
    uint32_t big_idx[DIM];
    float big_val[DIM];
    for (int i = 0; i < DIM; i++) {
        big_idx[i] = (uint32_t)i;
        big_val[i] = 1;
    }
    /* six devices, a cohort of five */
    static const char *const ids[] = {"a", "b", "c", "d", "e", "f"};
    for (uint8_t r = 1; r <= 6; r++)
        hello(h, r, ids[r - 1], 10);
    coord_engine_tick(h->e, h->now);
    uint8_t in[5], out = 0;
    int nin = 0;
    for (uint8_t r = 1; r <= 6; r++) {
        if (take_task(h, r, held[r]) != NULL)
            in[nin++] = r;
        else
            out = r;
    }
    assert_int_equal(nin, 5);
    assert_int_not_equal(out, 0);

    /* unknown device (no Hello) */
    send_update(h, 9, 1, 10, idx, val, 6);
    assert_int_equal(take_reject(h, 9)->code, FL_ERR_UNKNOWN_DEVICE);
    /* not in the cohort */
    send_update(h, out, 1, 10, idx, val, 6);
    const struct pb_reject *rj = take_reject(h, out);
    assert_int_equal(rj->code, FL_ERR_NOT_IN_COHORT);
    assert_true(rj->has_round);
    assert_int_equal(rj->round, 1);
    /* a round from the future: refused, the member may still report */
    send_update(h, in[0], 7, 10, idx, val, 6);
    assert_int_equal(take_reject(h, in[0])->code, FL_ERR_STALE_ROUND);
    /* member 0: too many samples; a second update is a duplicate */
    send_update(h, in[0], 1, 1001, idx, val, 6);
    assert_int_equal(take_reject(h, in[0])->code, FL_ERR_SAMPLES);
    send_update(h, in[0], 1, 10, idx, val, 6);
    assert_int_equal(take_reject(h, in[0])->code, FL_ERR_DUPLICATE);
    /* member 1: k above what was asked for */
    send_update(h, in[1], 1, 10, big_idx, big_val, DIM);
    assert_int_equal(take_reject(h, in[1])->code, FL_ERR_K_RANGE);

    /* member 2: a corrupted payload; member 3: a wrong dimension */
    {
        float v[6];
        const uint8_t *payload = NULL;
        size_t plen = 0;
        struct cmp_meta meta;
        const struct cmp_params p = {CMP_INDEX_DELTA_VARINT, CMP_VALUE_FP32,
                                     CMP_CODEC_NONE, 0};
        memcpy(v, val, sizeof(v));
        assert_int_equal(cmp_sparse_encode(h->ctx, DIM, idx, v, 6, &p, &meta,
                                           &payload, &plen),
                         FL_OK);
        uint8_t *bad = malloc(plen);
        assert_non_null(bad);
        memcpy(bad, payload, plen);
        struct pb_envelope env = {.version = 1, .body = PB_BODY_UPDATE};
        env.update.round = 1;
        env.update.n_samples = 10;
        env.update.delta = (struct pb_tensor){
            .dimension = DIM, .k = 6, .index_coding = meta.index_coding,
            .value_coding = meta.value_coding, .codec = meta.codec,
            .raw_size = meta.raw_size, .checksum = meta.checksum,
            .payload = bad, .payload_len = plen};
        env.update.delta.dimension = DIM + 1;
        feed_env(h, in[3], &env);
        assert_int_equal(take_reject(h, in[3])->code, FL_ERR_DIMENSION);
        env.update.delta.dimension = DIM;
        bad[plen - 1] ^= 0x40;
        feed_env(h, in[2], &env);
        assert_int_equal(take_reject(h, in[2])->code, FL_ERR_CHECKSUM);
        free(bad);
    }
    /* garbage, wrong version, multi-frame, a body meant for workers */
    static const uint8_t garbage[] = {0xff, 0x00, 0x13, 0x37, 0x42};
    feed(h, in[4], garbage, sizeof(garbage));
    assert_int_equal(take_reject(h, in[4])->code, FL_ERR_PROTO);
    struct pb_envelope v2 = {.version = 2, .body = PB_BODY_BYE};
    feed_env(h, in[4], &v2);
    assert_int_equal(take_reject(h, in[4])->code, FL_ERR_VERSION);
    coord_engine_on_message(h->e, &in[4], 1, garbage, sizeof(garbage), 2,
                            100, h->now);
    assert_int_equal(count_to(h, in[4]), 0);
    struct pb_envelope welcome = {.version = 1, .body = PB_BODY_WELCOME};
    welcome.welcome.device_id = "x";
    feed_env(h, in[4], &welcome);
    assert_int_equal(take_reject(h, in[4])->code, FL_ERR_BAD_STATE);
    /* hellos with a bad id and a bad sample count */
    struct pb_envelope bad_hello = {.version = 1, .body = PB_BODY_HELLO};
    bad_hello.hello.device_id = "bad id!";
    bad_hello.hello.n_samples = 5;
    feed_env(h, 20, &bad_hello);
    assert_int_equal(take_reject(h, 20)->code, FL_ERR_INVALID_ARG);
    bad_hello.hello.device_id = "fine";
    bad_hello.hello.n_samples = 0;
    feed_env(h, 20, &bad_hello);
    assert_int_equal(take_reject(h, 20)->code, FL_ERR_SAMPLES);

    /* nothing touched the model; the round is still open */
    const struct coord_agg *a = coord_engine_agg(h->e);
    assert_int_equal(coord_agg_count(a), 0);
    assert_int_equal(coord_agg_version(a), 1);
    assert_memory_equal(coord_agg_params(a), h->init, sizeof(h->init));
    assert_int_equal(coord_engine_round(h->e), 1);
    coord_engine_tick(h->e, h->now);
    assert_int_equal(coord_engine_round(h->e), 1);

    /* member 4 sends a good update: every member has now answered */
    send_update(h, in[4], 1, 10, idx, val, 6);
    coord_engine_tick(h->e, h->now);
    const struct coord_round_row *row = coord_engine_last_row(h->e);
    assert_int_equal(row->round, 1);
    assert_true(row->committed);
    assert_int_equal(row->selected, 5);
    assert_int_equal(row->reported, 1);
    assert_int_equal(row->rejected, 4);
    assert_int_equal(row->dropped, 0);
    assert_int_equal(row->rejects[FL_ERR_UNKNOWN_DEVICE], 1);
    assert_int_equal(row->rejects[FL_ERR_NOT_IN_COHORT], 1);
    assert_int_equal(row->rejects[FL_ERR_STALE_ROUND], 1);
    assert_int_equal(row->rejects[FL_ERR_SAMPLES], 2);
    assert_int_equal(row->rejects[FL_ERR_DUPLICATE], 1);
    assert_int_equal(row->rejects[FL_ERR_K_RANGE], 1);
    assert_int_equal(row->rejects[FL_ERR_DIMENSION], 1);
    assert_int_equal(row->rejects[FL_ERR_CHECKSUM], 1);
    assert_int_equal(row->rejects[FL_ERR_PROTO], 1);
    assert_int_equal(row->rejects[FL_ERR_VERSION], 1);
    assert_int_equal(row->rejects[FL_ERR_BAD_STATE], 1);
    assert_int_equal(row->rejects[FL_ERR_INVALID_ARG], 1);
    assert_true(row->other_rx_bytes > 0);
    /* the model moved by exactly the one good update */
    for (int i = 0; i < DIM; i++) {
        const float want = h->init[i] + ((i % 2 == 0 && i <= 10) ? 1.0f : 0);
        assert_true(coord_agg_params(a)[i] == want);
    }
    /* next Tasks: the rejected members learn NOT_USED for round 1 */
    int seen = 0;
    for (int j = 0; j < 5; j++) {
        const struct pb_task *t = take_task(h, in[j], held[in[j]]);
        if (t == NULL)
            continue;
        seen++;
        assert_int_equal(t->last_update_round, 1);
        assert_int_equal(t->last_update, j == 4 ? PB_UPDATE_USED
                                                : PB_UPDATE_NOT_USED);
    }
    assert_true(seen >= 4);
    harness_free(h);
}

static void test_deadline_quorum_and_late(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 4 --quorum 0.5 "
                                    "--round-timeout 30 --rounds 3 "
                                    "--density 0.25", true);
    float held[5][DIM];
    static const uint32_t idx[6] = {0, 1, 2, 3, 4, 5};
    static const float val[6] = {1, 1, 1, 1, 1, 1};
    hello(h, 1, "d1", 10);
    hello(h, 2, "d2", 10);
    hello(h, 3, "d3", 10);
    hello(h, 4, "d4", 10);
    coord_engine_tick(h->e, h->now);
    for (uint8_t r = 1; r <= 4; r++)
        assert_non_null(take_task(h, r, held[r]));
    send_update(h, 1, 1, 10, idx, val, 6);
    send_update(h, 2, 1, 10, idx, val, 6);
    h->now += 29 * S;
    coord_engine_tick(h->e, h->now);
    assert_int_equal(coord_engine_round(h->e), 1); /* before the deadline */
    assert_int_equal(coord_engine_next_deadline(h->e), 1030 * S);
    h->now += 1 * S;
    coord_engine_tick(h->e, h->now);
    const struct coord_round_row *row = coord_engine_last_row(h->e);
    assert_true(row->committed);
    assert_int_equal(row->reported, 2);
    assert_int_equal(row->dropped, 2);
    assert_int_equal(coord_engine_round(h->e), 2);
    for (uint8_t r = 1; r <= 4; r++)
        assert_non_null(take_task(h, r, held[r]));

    /* d3's round-1 update arrives during round 2: late */
    send_update(h, 3, 1, 10, idx, val, 6);
    const struct pb_reject *rj = take_reject(h, 3);
    assert_int_equal(rj->code, FL_ERR_LATE);
    assert_int_equal(rj->round, 1);
    /* round 2: d1, d2 report; d3, d4 do not; deadline */
    send_update(h, 1, 2, 10, idx, val, 6);
    send_update(h, 2, 2, 10, idx, val, 6);
    h->now += 30 * S;
    coord_engine_tick(h->e, h->now);
    row = coord_engine_last_row(h->e);
    assert_int_equal(row->round, 2);
    assert_int_equal(row->late, 1);
    assert_int_equal(row->rejects[FL_ERR_LATE], 1);
    /* round 3 Task: d3 learns NOT_USED for round 1, d4 still NONE */
    const struct pb_task *t3 = take_task(h, 3, held[3]);
    assert_non_null(t3);
    assert_int_equal(t3->round, 3);
    assert_int_equal(t3->last_update, PB_UPDATE_NOT_USED);
    assert_int_equal(t3->last_update_round, 1);
    const struct pb_task *t4 = take_task(h, 4, held[4]);
    assert_int_equal(t4->last_update, PB_UPDATE_NONE);
    /* d4 held version 1 and receives a delta from it */
    assert_true(t4->model.has_base_version);
    h->now += 30 * S;
    coord_engine_tick(h->e, h->now); /* nobody reports: abandoned */
    row = coord_engine_last_row(h->e);
    assert_false(row->committed);
    assert_int_equal(row->attempt, 1);
    assert_true(isnan(row->test_acc));

    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "grep -q '^1,d3,late,10,' %s/devices.csv && "
             "test $(grep -c ',dropped,' %s/devices.csv) -eq 8 && "
             "tail -1 %s/rounds.csv | grep -q '^3,1,4,4,0,4,0,0,'",
             h->report_dir, h->report_dir, h->report_dir);
    assert_int_equal(system(cmd), 0);
    harness_free(h);
}

static void test_abandon_retry_and_give_up(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 2 --quorum 1 "
                                    "--max-attempts 2 --round-timeout 5 "
                                    "--density 0.25", false);
    float held[3][DIM];
    static const uint32_t idx[6] = {0, 1, 2, 3, 4, 5};
    static const float val[6] = {1, 1, 1, 1, 1, 1};
    hello(h, 1, "p", 10);
    hello(h, 2, "q", 10);
    coord_engine_tick(h->e, h->now);
    for (uint8_t r = 1; r <= 2; r++)
        assert_non_null(take_task(h, r, held[r]));
    send_update(h, 1, 1, 10, idx, val, 6);
    h->now += 5 * S;
    coord_engine_tick(h->e, h->now);
    const struct coord_round_row *row = coord_engine_last_row(h->e);
    assert_false(row->committed);
    assert_int_equal(row->attempt, 1);
    assert_int_equal(row->reported, 1);
    assert_int_equal(row->dropped, 1);
    const struct coord_agg *a = coord_engine_agg(h->e);
    assert_int_equal(coord_agg_version(a), 1);
    assert_memory_equal(coord_agg_params(a), h->init, sizeof(h->init));
    /* attempt 2 of round 1: p learns its update was not used */
    const struct pb_task *t = take_task(h, 1, held[1]);
    assert_non_null(t);
    assert_int_equal(t->round, 1);
    assert_int_equal(t->last_update, PB_UPDATE_NOT_USED);
    assert_int_equal(t->last_update_round, 1);
    assert_true(t->model.has_base_version); /* same version it holds */
    assert_non_null(take_task(h, 2, held[2]));
    /* q's update of attempt 1 arrives now: it counts for attempt 2 */
    send_update(h, 2, 1, 10, idx, val, 6);
    assert_int_equal(count_to(h, 2), 0);
    h->now += 5 * S;
    assert_int_equal(coord_engine_tick(h->e, h->now),
                     COORD_TOO_MANY_ATTEMPTS);
    row = coord_engine_last_row(h->e);
    assert_int_equal(row->attempt, 2);
    assert_int_equal(row->reported, 1);
    for (uint8_t r = 1; r <= 2; r++) {
        const struct pb_envelope *b = take(h, r, PB_BODY_BYE, NULL);
        assert_non_null(b);
        assert_int_equal(b->bye.last_update, PB_UPDATE_NOT_USED);
        assert_int_equal(b->bye.last_update_round, 1);
    }
    assert_int_equal(coord_agg_version(a), 1);
    /* after the end, an update (late) or a hello is answered with Bye;
     * other messages are ignored */
    send_update(h, 1, 1, 10, idx, val, 6);
    const struct pb_envelope *b2 = take(h, 1, PB_BODY_BYE, NULL);
    assert_non_null(b2);
    assert_int_equal(b2->bye.last_update, PB_UPDATE_NOT_USED);
    assert_int_equal(count_to(h, 1), 0);
    struct pb_envelope he = {.version = 1, .body = PB_BODY_HELLO};
    he.hello.device_id = "q";
    he.hello.n_samples = 10;
    feed_env(h, 7, &he);
    b2 = take(h, 7, PB_BODY_BYE, NULL);
    assert_non_null(b2);
    assert_int_equal(b2->bye.last_update, PB_UPDATE_NOT_USED);
    assert_int_equal(b2->bye.last_update_round, 1);
    struct pb_envelope bye = {.version = 1, .body = PB_BODY_BYE};
    feed_env(h, 1, &bye);
    assert_int_equal(h->ob.nout, 0);
    harness_free(h);
}

static void test_wait_timeout_and_stop(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 2 --wait-timeout 10",
                                    false);
    hello(h, 1, "lonely", 10);
    h->now += 9 * S;
    assert_int_equal(coord_engine_tick(h->e, h->now), COORD_RUNNING);
    h->now += 1 * S;
    assert_int_equal(coord_engine_tick(h->e, h->now), COORD_NO_DEVICES);
    assert_non_null(take(h, 1, PB_BODY_BYE, NULL));
    harness_free(h);

    /* stop in the middle of a round: the attempt is abandoned, Bye to all */
    h = harness_new("--min-devices 2 --density 0.25", false);
    float held[3][DIM];
    static const uint32_t idx[6] = {0, 1, 2, 3, 4, 5};
    static const float val[6] = {1, 1, 1, 1, 1, 1};
    hello(h, 1, "s1", 10);
    hello(h, 2, "s2", 10);
    coord_engine_tick(h->e, h->now);
    assert_non_null(take_task(h, 1, held[1]));
    assert_non_null(take_task(h, 2, held[2]));
    send_update(h, 1, 1, 10, idx, val, 6);
    coord_engine_stop(h->e, h->now);
    assert_int_equal(coord_engine_status(h->e), COORD_STOPPED);
    const struct coord_round_row *row = coord_engine_last_row(h->e);
    assert_false(row->committed);
    assert_int_equal(row->reported, 1);
    const struct pb_envelope *b = take(h, 1, PB_BODY_BYE, NULL);
    assert_int_equal(b->bye.last_update, PB_UPDATE_NOT_USED);
    assert_int_equal(b->bye.last_update_round, 1);
    b = take(h, 2, PB_BODY_BYE, NULL);
    assert_int_equal(b->bye.last_update, PB_UPDATE_NONE);
    coord_engine_stop(h->e, h->now); /* twice is harmless */
    assert_int_equal(coord_engine_tick(h->e, h->now), COORD_STOPPED);
    harness_free(h);
}

static void test_unreachable_bye_and_rehello(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 2 --quorum 1 "
                                    "--density 0.25 --rounds 2", false);
    float held[6][DIM];
    static const uint32_t idx[6] = {0, 1, 2, 3, 4, 5};
    static const float val[6] = {1, 1, 1, 1, 1, 1};
    hello(h, 1, "u1", 10);
    hello(h, 2, "u2", 10);
    hello(h, 3, "u3", 10);
    h->ob.dead[3] = 1; /* u3 vanished: its Task cannot be sent */
    coord_engine_tick(h->e, h->now);
    assert_non_null(take_task(h, 1, held[1]));
    assert_non_null(take_task(h, 2, held[2]));
    assert_int_equal(coord_devtab_connected(coord_engine_devices(h->e)), 2);
    struct coord_summary sum;
    coord_engine_summary(h->e, h->now, &sum);
    assert_int_equal(sum.send_failures, 1);

    /* u2 reconnects (new routing id 5) holding no model: Welcome and the
     * full model again */
    hello(h, 5, "u2", 10);
    const struct pb_task *t = take_task(h, 5, held[5]);
    assert_non_null(t);
    assert_false(t->model.has_base_version);
    assert_int_equal(t->round, 1);
    /* the old routing id is not u2 any more */
    send_update(h, 2, 1, 10, idx, val, 6);
    assert_int_equal(take_reject(h, 2)->code, FL_ERR_UNKNOWN_DEVICE);

    /* u1 reports; u2 says Bye: nobody is pending, quorum 1 fails */
    send_update(h, 1, 1, 10, idx, val, 6);
    struct pb_envelope bye = {.version = 1, .body = PB_BODY_BYE};
    feed_env(h, 5, &bye);
    coord_engine_tick(h->e, h->now);
    const struct coord_round_row *row = coord_engine_last_row(h->e);
    assert_false(row->committed);
    assert_int_equal(row->selected, 3);
    assert_int_equal(row->reported, 1);
    assert_int_equal(row->dropped, 2);
    /* attempt 2 waits: only u1 is connected */
    assert_int_equal(coord_devtab_connected(coord_engine_devices(h->e)), 1);
    assert_int_equal(count_to(h, 1), 0);
    /* u3 is back with version 1: it gets a delta */
    h->ob.dead[3] = 0;
    struct pb_envelope he = {.version = 1, .body = PB_BODY_HELLO};
    he.hello.device_id = "u3";
    he.hello.n_samples = 10;
    he.hello.has_model_version = true;
    he.hello.model_version = 1;
    feed_env(h, 4, &he);
    assert_non_null(take(h, 4, PB_BODY_WELCOME, NULL));
    coord_engine_tick(h->e, h->now);
    memcpy(held[4], h->init, sizeof(h->init));
    t = take_task(h, 4, held[4]);
    assert_non_null(t);
    assert_true(t->model.has_base_version);
    assert_int_equal(t->model.base_version, 1);
    harness_free(h);
}

static void test_codec_fallback_for_device(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 2 --codec lz4", false);
    float held[3][DIM];
    struct pb_envelope env = {.version = 1, .body = PB_BODY_HELLO};
    env.hello.device_id = "old";
    env.hello.n_samples = 5;
    env.hello.codecs_mask = 1u << CMP_CODEC_NONE | 1u << CMP_CODEC_ZSTD;
    feed_env(h, 1, &env);
    hello(h, 2, "new", 5);
    coord_engine_tick(h->e, h->now);
    const struct pb_task *t = take_task(h, 1, held[1]);
    assert_int_equal(t->model.codec, CMP_CODEC_NONE);
    assert_int_equal(t->compress.codec, CMP_CODEC_NONE);
    t = take_task(h, 2, held[2]);
    assert_int_equal(t->model.codec, CMP_CODEC_LZ4);
    assert_int_equal(t->compress.codec, CMP_CODEC_LZ4);
    harness_free(h);
}

/* --uplink-budget: each cohort member's cap is the budget split evenly;
 * an update over its cap is counted (over_budget), never rejected. */
static void test_uplink_budget(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 2 --uplink-budget 151 "
                                    "--density 0.25", false);
    float held[3][DIM];
    static const uint32_t idx[6] = {0, 1, 2, 3, 4, 5};
    static const float val[6] = {1, 2, 3, 4, 5, 6};
    hello(h, 1, "a", 10);
    hello(h, 2, "b", 10);
    coord_engine_tick(h->e, h->now);
    for (uint8_t r = 1; r <= 2; r++) {
        const struct pb_task *t = take_task(h, r, held[r]);
        assert_non_null(t);
        assert_int_equal(t->compress.max_update_bytes, 75); /* 151 / 2 */
    }
    /* a small update fits its cap of 75, a big one does not */
    const size_t small = send_update(h, 1, 1, 10, idx, val, 1);
    assert_true(small <= 75);
    static const uint32_t bidx[8] = {0, 3, 5, 8, 11, 17, 20, 23};
    static const float bval[8] = {0.123f, -4.56f, 7.89f, 1e-3f, -2.5e4f,
                                  3.3f, -0.77f, 9.9e5f};
    const size_t big = send_update(h, 2, 1, 10, bidx, bval, 8);
    assert_true(big > 75);
    h->now += 2 * S;
    coord_engine_tick(h->e, h->now);
    const struct coord_round_row *row = coord_engine_last_row(h->e);
    assert_true(row->committed);
    assert_int_equal(row->reported, 2);
    assert_int_equal(row->rejected, 0);
    assert_int_equal(row->uplink_budget, 151);
    assert_int_equal(row->over_budget, 1);
    harness_free(h);
}

/* Hostile bytes: random frames and mutated copies of a valid Update from a
 * cohort member. The engine must never crash (ASan checks memory) and the
 * model must stay finite; only a mutation that is still a valid update
 * can be accepted. */
static void test_hostile_bytes(void **state)
{
    (void)state;
    /* the penalty box would keep both devices out (test_coord_guard.c
     * covers it) */
    struct harness *h = harness_new("--min-devices 2 --density 0.25 "
                                    "--round-timeout 1 --rounds 50 "
                                    "--max-attempts 1000 --penalty-after 0",
                                    false);
    float held[3][DIM];
    static const uint32_t idx[6] = {0, 3, 6, 9, 12, 15};
    static const float val[6] = {0.5f, -0.5f, 1, -1, 2, -2};
    struct fl_rng r;
    fl_rng_seed(&r, 99);
    hello(h, 1, "f1", 10);
    hello(h, 2, "f2", 10);
    for (int round = 0; round < 40; round++) {
        /* a mutation may have been a Bye: the devices come back */
        struct pb_envelope he = {.version = 1, .body = PB_BODY_HELLO};
        he.hello.n_samples = 10;
        he.hello.device_id = "f1";
        feed_env(h, 1, &he);
        he.hello.device_id = "f2";
        feed_env(h, 2, &he);
        coord_engine_tick(h->e, h->now);
        const uint64_t rn = coord_engine_round(h->e);
        /* a valid update, packed */
        float v[6];
        const uint8_t *payload = NULL;
        size_t plen = 0;
        struct cmp_meta meta;
        const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP16,
                                     CMP_CODEC_ZSTD, 1};
        memcpy(v, val, sizeof(v));
        assert_int_equal(cmp_sparse_encode(h->ctx, DIM, idx, v, 6, &p, &meta,
                                           &payload, &plen),
                         FL_OK);
        struct pb_envelope env = {.version = 1, .body = PB_BODY_UPDATE};
        env.update.round = rn;
        env.update.n_samples = 10;
        env.update.delta = (struct pb_tensor){
            .dimension = DIM, .k = 6, .index_coding = meta.index_coding,
            .value_coding = meta.value_coding, .codec = meta.codec,
            .raw_size = meta.raw_size, .checksum = meta.checksum,
            .payload = payload, .payload_len = plen};
        uint8_t *good = NULL;
        size_t glen = 0;
        assert_int_equal(pb_pack_alloc(&env, &good, &glen), FL_OK);
        uint8_t *mut = malloc(glen + 64);
        assert_non_null(mut);
        for (int m = 0; m < 200; m++) {
            size_t len = glen;
            memcpy(mut, good, glen);
            const int flips = 1 + (int)fl_rng_below(&r, 4);
            for (int f = 0; f < flips; f++)
                mut[fl_rng_below(&r, glen)] ^=
                    (uint8_t)(1 + fl_rng_below(&r, 255));
            if (fl_rng_below(&r, 4) == 0)
                len = (size_t)fl_rng_below(&r, glen + 1);
            const uint8_t rid = (uint8_t)(1 + fl_rng_below(&r, 3));
            feed(h, rid, mut, len);
        }
        for (int m = 0; m < 50; m++) {
            uint8_t junk[64];
            const size_t len = (size_t)fl_rng_below(&r, sizeof(junk) + 1);
            for (size_t i = 0; i < len; i++)
                junk[i] = (uint8_t)fl_rng_next(&r);
            feed(h, (uint8_t)fl_rng_below(&r, 4), junk, len);
        }
        feed(h, 1, good, glen);
        feed(h, 2, good, glen);
        free(mut);
        fl_free(good);
        h->now += 2 * S;
        coord_engine_tick(h->e, h->now);
        /* drop what was sent */
        th_outbox_clear(&h->ob);
        (void)held;
        const struct coord_agg *a = coord_engine_agg(h->e);
        for (int i = 0; i < DIM; i++)
            assert_true(isfinite(coord_agg_params(a)[i]));
    }
    assert_true(coord_engine_round(h->e) > 10);
    harness_free(h);
}

/* ---- identity from CURVE keys, admission (docs/security.md) */

/* Hello as `user` (a key's name) saying device_id `said`; returns the id
 * the Welcome gives, or NULL when there is none. */
static const char *hello_as(struct harness *h, uint8_t rid, const char *user,
                            const char *said)
{
    struct pb_envelope env = {.version = 1, .body = PB_BODY_HELLO};
    env.hello.device_id = said;
    env.hello.n_samples = 100;
    feed_user = user;
    feed_env(h, rid, &env);
    feed_user = NULL;
    const struct pb_envelope *w = take(h, rid, PB_BODY_WELCOME, NULL);
    return w != NULL ? w->welcome.device_id : NULL;
}

static void test_identity_from_key(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 2 --round-timeout 10",
                                    false);
    const struct coord_devtab *t = coord_engine_devices(h->e);
    float held1[DIM], held2[DIM];
    static const uint32_t idx[] = {1, 5, 7};
    static const float val[] = {0.5f, -1.0f, 2.0f};
    /* the key names the device, whatever the Hello says */
    assert_string_equal(hello_as(h, 1, "w0", "w0"), "w0");
    assert_string_equal(hello_as(h, 2, "mallory", "w0"), "mallory");
    const struct coord_device *w0 = coord_devtab_by_id(t, "w0");
    assert_non_null(w0);
    assert_int_equal(w0->rid_len, 1);
    assert_int_equal(w0->rid[0], 1);   /* not evicted */
    assert_int_equal(coord_devtab_connected(t), 2);
    assert_null(coord_devtab_by_id(t, "w9"));

    coord_engine_tick(h->e, h->now);
    assert_non_null(take_task(h, 1, held1));
    assert_non_null(take_task(h, 2, held2));
    /* a connection of mallory's key on w0's routing id (a peer may choose
     * its routing id) is not w0: its update comes from nobody */
    feed_user = "mallory";
    send_update(h, 1, 1, 100, idx, val, 3);
    feed_user = NULL;
    assert_int_equal(take_reject(h, 1)->code, FL_ERR_UNKNOWN_DEVICE);
    assert_int_equal(w0->rstate, COORD_RS_TASKED);
    /* the real owners' updates count */
    feed_user = "w0";
    send_update(h, 1, 1, 100, idx, val, 3);
    feed_user = "mallory";
    send_update(h, 2, 1, 100, idx, val, 3);
    feed_user = NULL;
    assert_int_equal(count_to(h, 1) + count_to(h, 2), 0);   /* no reject */
    coord_engine_tick(h->e, h->now);
    const struct coord_round_row *row = coord_engine_last_row(h->e);
    assert_int_equal(row->round, 1);
    assert_int_equal(row->reported, 2);
    assert_true(row->committed);
    /* a key reconnecting from a new routing id replaces its old one */
    assert_string_equal(hello_as(h, 3, "w0", "w0"), "w0");
    assert_int_equal(w0->rid[0], 3);
    assert_int_equal(coord_devtab_connected(t), 2);
    /* plaintext: the Hello's id, as before */
    assert_string_equal(hello_as(h, 4, NULL, "w9"), "w9");
    harness_free(h);
}

static bool allow_only_w0(void *ctx, const char *id)
{
    (void)ctx;
    return strcmp(id, "w0") == 0;
}

static void test_admission_full_and_revoke(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 5 --max-devices-connected "
                                    "2 --rounds 1 --round-timeout 1",
                                    false);
    const struct coord_devtab *t = coord_engine_devices(h->e);
    struct pb_envelope bye = {.version = 1, .body = PB_BODY_BYE};
    assert_string_equal(hello_as(h, 1, "w0", "w0"), "w0");
    assert_string_equal(hello_as(h, 2, "w1", "w1"), "w1");
    /* full: a third device is refused with 51, and not added */
    assert_null(hello_as(h, 3, "w2", "w2"));
    assert_int_equal(take_reject(h, 3)->code, FL_ERR_FULL);
    assert_null(coord_devtab_by_id(t, "w2"));
    /* a connected device reconnecting is let in (it replaces itself) */
    assert_string_equal(hello_as(h, 4, "w1", "w1"), "w1");
    assert_int_equal(coord_devtab_connected(t), 2);
    /* one leaves: now w2 fits */
    feed_user = "w1";
    feed_env(h, 4, &bye);
    feed_user = NULL;
    assert_string_equal(hello_as(h, 3, "w2", "w2"), "w2");
    assert_int_equal(coord_devtab_connected(t), 2);

    /* keys revoked: every connected device but w0 gets a Bye and is
     * forgotten */
    assert_int_equal(coord_engine_revoke(h->e, allow_only_w0, NULL), 1);
    const struct pb_envelope *b = take(h, 3, PB_BODY_BYE, NULL);
    assert_non_null(b);
    assert_string_equal(b->bye.reason, "key revoked");
    assert_null(take(h, 1, PB_BODY_BYE, NULL));
    assert_int_equal(coord_devtab_connected(t), 1);
    assert_int_equal(coord_devtab_by_id(t, "w2")->rid_len, 0);
    assert_int_equal(coord_engine_revoke(h->e, allow_only_w0, NULL), 0);

    /* transport counters land in the next row and the summary */
    coord_engine_count_admission(h->e, 3, 5);
    coord_engine_count_admission(h->e, 1, 0);
    struct coord_summary sum;
    coord_engine_summary(h->e, h->now, &sum);
    assert_int_equal(sum.refused_handshakes, 4);
    assert_int_equal(sum.rate_limited, 5);
    coord_engine_stop(h->e, h->now);
    coord_engine_summary(h->e, h->now, &sum);
    assert_int_equal(sum.refused_handshakes, 4);
    assert_int_equal(sum.rate_limited, 5);
    harness_free(h);
}

int main(void)
{
    fl_log_init("test", NULL);
    fl_log_set_level(getenv("FL_TEST_LOG") != NULL ? FL_LOG_DEBUG
                                                   : FL_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_commits_weighted_mean),
        cmocka_unit_test(test_chunked_transfers),
        cmocka_unit_test(test_chunked_limits),
        cmocka_unit_test(test_chunked_stall),
        cmocka_unit_test(test_every_reject_code),
        cmocka_unit_test(test_deadline_quorum_and_late),
        cmocka_unit_test(test_abandon_retry_and_give_up),
        cmocka_unit_test(test_wait_timeout_and_stop),
        cmocka_unit_test(test_unreachable_bye_and_rehello),
        cmocka_unit_test(test_codec_fallback_for_device),
        cmocka_unit_test(test_uplink_budget),
        cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_identity_from_key),
        cmocka_unit_test(test_admission_full_and_revoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
