/*
 * test_coord_xfer.c - the coordinator's transfer scheduler: shared chunk
 * frames, per-device windows, the global in-flight cap, credits, and
 * upload slots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "coordinator/coord_xfer.h"
#include "proto/pb_msg.h"
#include "proto/pb_xfer.h"

enum { CH = 1024 };

static uint8_t body[10 * CH + 5];

static struct coord_xfer *make(uint32_t window, uint32_t inflight,
                               uint32_t slots, uint32_t blobs)
{
    const struct coord_xfer_cfg cfg = {CH, window, inflight, slots, blobs};
    struct coord_xfer *x = NULL;
    assert_int_equal(coord_xfer_new(&cfg, &x), FL_OK);
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(i * 7 + 3);
    return x;
}

/* Decode a frame: it must be a Chunk of transfer t. Returns its seq. */
static uint32_t frame_seq(const struct coord_frame *f, uint64_t t)
{
    const struct pb_limits lim = {1 << 20, 1 << 22};
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    assert_int_equal(pb_unpack(coord_frame_data(f), coord_frame_len(f), &lim,
                               &msg, &env, NULL, NULL, 0), FL_OK);
    assert_int_equal(env->body, PB_BODY_CHUNK);
    assert_int_equal(env->chunk.transfer, t);
    const uint32_t seq = env->chunk.seq;
    assert_int_equal(env->chunk.total, 11);
    assert_int_equal(env->chunk.len, seq < 10 ? CH : 5);
    assert_memory_equal(env->chunk.data, body + (size_t)seq * CH,
                        env->chunk.len);
    pb_msg_destroy(&msg);
    return seq;
}

static void test_bad_config(void **state)
{
    static const struct coord_xfer_cfg bad[] = {
        {100, 4, 64, 8, 4},      /* chunk under the minimum */
        {CH, 0, 64, 8, 4},       /* no window */
        {CH, 4, 0, 8, 4},
        {CH, 4, 64, 0, 4},
        {CH, 4, 64, 8, 0},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(bad); i++) {
        struct coord_xfer *x = NULL;
        assert_int_equal(coord_xfer_new(&bad[i], &x), FL_ERR_INVALID_ARG);
        assert_null(x);
    }
}

/* One body is cut once; equal keys share it; frames decode to the body. */
static void test_blob_shared_and_exact(void **state)
{
    struct coord_xfer *x = make(4, 64, 8, 2);
    const struct coord_blob_key k1 = {0, 3, 7, 0}, k2 = {1, 3, 7, 6},
                                k3 = {0, 3, 8, 0};
    uint64_t t1 = 0, t1b = 0, t2 = 0, t3 = 0;
    uint32_t total = 0;
    struct coord_xfer_stats st;
    (void)state;

    assert_int_equal(coord_xfer_blob(x, &k1, body, sizeof(body), &t1,
                                     &total), FL_OK);
    assert_int_equal(total, 11);
    assert_int_equal(coord_xfer_blob(x, &k1, body, sizeof(body), &t1b,
                                     &total), FL_OK);
    assert_int_equal(t1, t1b);
    assert_int_equal(coord_xfer_blob(x, &k2, body, sizeof(body), &t2,
                                     &total), FL_OK);
    assert_int_not_equal(t1, t2);
    coord_xfer_stats(x, &st);
    assert_int_equal(st.blobs_packed, 2);
    /* two devices download t1: the same frame pointers go to both */
    assert_int_equal(coord_xfer_start(x, 0, t1), FL_OK);
    assert_int_equal(coord_xfer_start(x, 5, t1), FL_OK);
    const struct coord_frame *seen[2][4];
    for (int i = 0; i < 8; i++) {
        uint32_t dev = 99;
        const struct coord_frame *f = coord_xfer_next(x, &dev);
        assert_non_null(f);
        assert_true(dev == 0 || dev == 5);
        const uint32_t seq = frame_seq(f, t1);
        seen[dev == 5][seq] = f;
    }
    for (int s = 0; s < 4; s++)
        assert_ptr_equal(seen[0][s], seen[1][s]);
    /* a third body evicts a body nobody downloads (t2) before the least
     * recently used one (t1, in use) */
    assert_int_equal(coord_xfer_blob(x, &k3, body, sizeof(body), &t3,
                                     &total), FL_OK);
    assert_int_equal(coord_xfer_start(x, 1, t2), FL_ERR_NOT_FOUND);
    struct coord_frame *keep = NULL;
    {
        union {
            const struct coord_frame *c;
            struct coord_frame *m;
        } u = {.c = seen[0][0]};
        keep = u.m;
        coord_frame_ref(keep);   /* as the transport would */
    }
    /* with t3 in use too, a fourth body evicts the least recently used,
     * t1, while it is downloaded; stopping its downloads frees it, but
     * not the frame the transport still holds */
    assert_int_equal(coord_xfer_start(x, 7, t3), FL_OK);
    const struct coord_blob_key k4 = {2, 3, 9, 0};
    uint64_t t4 = 0;
    assert_int_equal(coord_xfer_blob(x, &k4, body, sizeof(body), &t4,
                                     &total), FL_OK);
    coord_xfer_stop(x, 0);
    coord_xfer_stop(x, 5);
    assert_int_equal(coord_xfer_start(x, 8, t1), FL_ERR_NOT_FOUND);
    assert_int_equal(frame_seq(keep, t1), 0);
    coord_frame_unref(keep);
    coord_xfer_destroy(&x);
    assert_null(x);
}

/* A device gets `window` chunks beyond its credit, no more. */
static void test_window_and_credits(void **state)
{
    struct coord_xfer *x = make(3, 64, 8, 4);
    const struct coord_blob_key k = {0, 1, 1, 0};
    uint64_t t = 0;
    uint32_t total = 0, dev = 0, expect = 0;
    bool done = false;
    (void)state;

    assert_int_equal(coord_xfer_blob(x, &k, body, sizeof(body), &t, &total),
                     FL_OK);
    assert_int_equal(coord_xfer_start(x, 2, t), FL_OK);
    assert_true(coord_xfer_downloading(x, 2));
    uint32_t received = 0;
    while (received < total) {
        const struct coord_frame *f;
        uint32_t sent_now = 0;
        while ((f = coord_xfer_next(x, &dev)) != NULL) {
            assert_int_equal(dev, 2);
            assert_int_equal(frame_seq(f, t), expect);
            expect++;
            sent_now++;
        }
        assert_true(expect - received <= 3);
        assert_true(sent_now > 0 || expect == total);
        /* the device takes in one chunk at a time */
        received++;
        assert_int_equal(coord_xfer_credit(x, 2, t, received, false, &done),
                         FL_OK);
        assert_int_equal(done, received == total);
    }
    assert_int_equal(expect, total);
    assert_false(coord_xfer_downloading(x, 2));
    struct coord_xfer_stats st;
    coord_xfer_stats(x, &st);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(st.downloads, 0);
    assert_int_equal(st.chunks_sent, total);
    coord_xfer_destroy(&x);
}

static void test_credit_refusals(void **state)
{
    struct coord_xfer *x = make(4, 64, 8, 4);
    const struct coord_blob_key k = {0, 1, 1, 0};
    uint64_t t = 0;
    uint32_t total = 0, dev = 0;
    bool done = false;
    (void)state;

    assert_int_equal(coord_xfer_blob(x, &k, body, sizeof(body), &t, &total),
                     FL_OK);
    /* no download: not found */
    assert_int_equal(coord_xfer_credit(x, 3, t, 0, false, &done),
                     FL_ERR_NOT_FOUND);
    assert_int_equal(coord_xfer_start(x, 3, t), FL_OK);
    while (coord_xfer_next(x, &dev) != NULL)
        ;
    /* another transfer: not found, the download goes on */
    assert_int_equal(coord_xfer_credit(x, 3, t + 100, 1, false, &done),
                     FL_ERR_NOT_FOUND);
    assert_true(coord_xfer_downloading(x, 3));
    /* more than was sent: refused, and the download stops */
    assert_int_equal(coord_xfer_credit(x, 3, t, 5, false, &done),
                     FL_ERR_TRANSFER);
    assert_false(coord_xfer_downloading(x, 3));
    struct coord_xfer_stats st;
    coord_xfer_stats(x, &st);
    assert_int_equal(st.inflight, 0);
    /* going backwards is refused too */
    assert_int_equal(coord_xfer_start(x, 3, t), FL_OK);
    while (coord_xfer_next(x, &dev) != NULL)
        ;
    assert_int_equal(coord_xfer_credit(x, 3, t, 2, false, &done), FL_OK);
    assert_int_equal(coord_xfer_credit(x, 3, t, 1, false, &done),
                     FL_ERR_TRANSFER);
    /* cancel ends it and frees its in-flight count */
    assert_int_equal(coord_xfer_start(x, 3, t), FL_OK);
    while (coord_xfer_next(x, &dev) != NULL)
        ;
    assert_int_equal(coord_xfer_credit(x, 3, t, 1, true, &done), FL_OK);
    assert_false(done);
    assert_false(coord_xfer_downloading(x, 3));
    coord_xfer_stats(x, &st);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(st.downloads, 0);
    coord_xfer_destroy(&x);
}

/* The global cap holds over all devices; started downloads go first. */
static void test_global_cap_and_priority(void **state)
{
    struct coord_xfer *x = make(4, 5, 8, 4);
    const struct coord_blob_key k = {0, 1, 1, 0};
    uint64_t t = 0;
    uint32_t total = 0, dev = 0;
    uint32_t sent[8] = {0};
    bool done = false;
    (void)state;

    assert_int_equal(coord_xfer_blob(x, &k, body, sizeof(body), &t, &total),
                     FL_OK);
    for (uint32_t d = 0; d < 8; d++)
        assert_int_equal(coord_xfer_start(x, d, t), FL_OK);
    for (int i = 0; i < 5; i++) {
        assert_non_null(coord_xfer_next(x, &dev));
        sent[dev]++;
    }
    assert_null(coord_xfer_next(x, &dev));   /* cap of 5 reached */
    /* first come, whole window first: device 0 got 4, device 1 got 1 */
    assert_int_equal(sent[0], 4);
    assert_int_equal(sent[1], 1);
    /* device 0 acknowledges 2: it goes before the devices not started */
    assert_int_equal(coord_xfer_credit(x, 0, t, 2, false, &done), FL_OK);
    for (int i = 0; i < 2; i++) {
        assert_non_null(coord_xfer_next(x, &dev));
        assert_int_equal(dev, 0);
        sent[dev]++;
    }
    assert_null(coord_xfer_next(x, &dev));
    struct coord_xfer_stats st;
    coord_xfer_stats(x, &st);
    assert_int_equal(st.inflight, 5);
    /* a device that stops frees its share of the cap */
    coord_xfer_stop(x, 1);
    assert_non_null(coord_xfer_next(x, &dev));
    assert_int_equal(dev, 2);
    coord_xfer_destroy(&x);
}

static struct pb_msg *announce_msg(uint64_t transfer, uint64_t bytes,
                                   size_t *len)
{
    struct pb_envelope env;
    uint8_t *buf = NULL;
    const struct pb_limits lim = {1 << 20, 1 << 22};
    struct pb_msg *msg = NULL;
    const struct pb_envelope *out = NULL;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_UPDATE;
    env.update.round = 1;
    env.update.n_samples = 10;
    env.update.delta.dimension = 100;
    env.update.delta.k = 1;
    env.update.delta.payload_transfer = transfer;
    env.update.delta.payload_bytes = bytes;
    assert_int_equal(pb_pack_alloc(&env, &buf, len), FL_OK);
    assert_int_equal(pb_unpack(buf, *len, &lim, &msg, &out, NULL, NULL, 0),
                     FL_OK);
    fl_free(buf);
    return msg;
}

/* Uploads wait for a slot in order; chunks reassemble; a bad chunk drops
 * the upload and frees the slot. */
static void test_upload_slots(void **state)
{
    struct coord_xfer *x = make(4, 64, 1, 4);
    const uint64_t bytes = 2 * CH + 10;
    size_t alen = 0;
    uint32_t dev = 0, received = 0;
    uint64_t transfer = 0, tr = 0;
    bool failed = false, complete = false;
    (void)state;

    assert_false(coord_xfer_up_grant(x, 100, &dev, &transfer, &failed));
    {
        struct pb_msg *am = announce_msg(41, bytes, &alen);
        assert_int_equal(coord_xfer_up_announce(x, 4, am, alen, 41,
                                                bytes), FL_OK);
    }
    {
        struct pb_msg *am = announce_msg(61, bytes, &alen);
        assert_int_equal(coord_xfer_up_announce(x, 6, am, alen, 61,
                                                bytes), FL_OK);
    }
    assert_true(coord_xfer_uploading(x, 6, &tr));
    assert_int_equal(tr, 61);
    assert_true(coord_xfer_up_grant(x, 100, &dev, &transfer, &failed));
    assert_false(failed);
    assert_int_equal(dev, 4);
    assert_int_equal(transfer, 41);
    /* granted at 100 and nothing since: stalled for a cut-off after it */
    assert_false(coord_xfer_up_stalled(x, 100, &dev));
    assert_true(coord_xfer_up_stalled(x, 101, &dev));
    assert_int_equal(dev, 4);
    /* one slot: device 6 waits */
    assert_false(coord_xfer_up_grant(x, 100, &dev, &transfer, &failed));
    /* a chunk from the waiting device is refused and drops its upload */
    struct pb_chunk c = {61, 0, 3, body, CH};
    assert_int_equal(coord_xfer_up_chunk(x, 6, &c, CH + 20, 200, &received,
                                         &complete), FL_ERR_TRANSFER);
    assert_false(coord_xfer_uploading(x, 6, NULL));
    {
        struct pb_msg *am = announce_msg(61, bytes, &alen);
        assert_int_equal(coord_xfer_up_announce(x, 6, am, alen, 61,
                                                bytes), FL_OK);
    }
    for (uint32_t s = 0; s < 3; s++) {
        c = (struct pb_chunk){41, s, 3, body + (size_t)s * CH,
                              s < 2 ? CH : 10};
        assert_int_equal(coord_xfer_up_chunk(x, 4, &c, c.len + 20, 200,
                                             &received, &complete), FL_OK);
        /* progress at 200: not stalled before 150 */
        assert_false(coord_xfer_up_stalled(x, 150, &dev));
        assert_int_equal(received, s + 1);
        assert_int_equal(complete, s == 2);
    }
    struct pb_msg *msg = NULL;
    uint8_t *payload = NULL;
    size_t plen = 0;
    uint64_t wire = 0;
    assert_int_equal(coord_xfer_up_take(x, 4, &msg, &payload, &plen, &wire),
                     FL_OK);
    assert_int_equal(plen, bytes);
    assert_memory_equal(payload, body, bytes);
    assert_int_equal(wire, alen + bytes + 60);
    assert_int_equal(pb_msg_envelope(msg)->update.delta.payload_transfer,
                     41);
    fl_free(payload);
    pb_msg_destroy(&msg);
    assert_false(coord_xfer_uploading(x, 4, NULL));
    /* the slot is free: device 6 gets it */
    assert_true(coord_xfer_up_grant(x, 100, &dev, &transfer, &failed));
    assert_int_equal(dev, 6);
    /* out of order: dropped, slot free again */
    c = (struct pb_chunk){61, 1, 3, body, CH};
    assert_int_equal(coord_xfer_up_chunk(x, 6, &c, CH, 200, &received,
                                         &complete), FL_ERR_TRANSFER);
    assert_false(coord_xfer_uploading(x, 6, NULL));
    struct coord_xfer_stats st;
    coord_xfer_stats(x, &st);
    assert_int_equal(st.uploads_active, 0);
    assert_int_equal(st.uploads_waiting, 0);
    /* a waiting upload dropped by its device's departure */
    {
        struct pb_msg *am = announce_msg(91, bytes, &alen);
        assert_int_equal(coord_xfer_up_announce(x, 9, am, alen, 91,
                                                bytes), FL_OK);
    }
    assert_int_equal(coord_xfer_up_drop(x, 9), alen);
    assert_false(coord_xfer_up_grant(x, 100, &dev, &transfer, &failed));
    coord_xfer_destroy(&x);
}

/* Many devices and random credits: the counters stay consistent and every
 * device receives its chunks in order, once. */
static void test_property_many_devices(void **state)
{
    enum { NDEV = 200 };
    struct coord_xfer *x = make(3, 17, 8, 4);
    const struct coord_blob_key k = {0, 1, 1, 0};
    uint64_t t = 0;
    uint32_t total = 0, dev = 0;
    static uint32_t sent[NDEV], acked[NDEV];
    struct fl_rng r;
    bool done = false;
    (void)state;

    fl_rng_seed(&r, 99);
    memset(sent, 0, sizeof(sent));
    memset(acked, 0, sizeof(acked));
    assert_int_equal(coord_xfer_blob(x, &k, body, sizeof(body), &t, &total),
                     FL_OK);
    for (uint32_t d = 0; d < NDEV; d++)
        assert_int_equal(coord_xfer_start(x, d * 3, t), FL_OK);
    uint32_t finished = 0;
    for (int step = 0; step < 200000 && finished < NDEV; step++) {
        const struct coord_frame *f;
        while ((f = coord_xfer_next(x, &dev)) != NULL) {
            assert_int_equal(dev % 3, 0);
            assert_int_equal(frame_seq(f, t), sent[dev / 3]);
            sent[dev / 3]++;
        }
        struct coord_xfer_stats st;
        coord_xfer_stats(x, &st);
        uint32_t inflight = 0;
        for (uint32_t d = 0; d < NDEV; d++)
            inflight += sent[d] - acked[d];
        assert_int_equal(st.inflight, inflight);
        assert_true(inflight <= 17);
        /* a random device with chunks in flight acknowledges some */
        const uint32_t d = (uint32_t)fl_rng_below(&r, NDEV);
        if (sent[d] == acked[d])
            continue;
        acked[d] += 1 + (uint32_t)fl_rng_below(&r, sent[d] - acked[d]);
        assert_int_equal(coord_xfer_credit(x, d * 3, t, acked[d], false,
                                           &done), FL_OK);
        if (done)
            finished++;
    }
    assert_int_equal(finished, NDEV);
    coord_xfer_destroy(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_blob_shared_and_exact),
        cmocka_unit_test(test_window_and_credits),
        cmocka_unit_test(test_credit_refusals),
        cmocka_unit_test(test_global_cap_and_priority),
        cmocka_unit_test(test_upload_slots),
        cmocka_unit_test(test_property_many_devices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
