/*
 * Unit tests for worker/wrk_xfer: the uplink sender's state (no chunk
 * before the first Credit, the window, cancel, bad and foreign credits,
 * completion, the deadline), a property test that the chunks handed over
 * reassemble (pb_xfer_rx) into the payload for random sizes and
 * geometries, transfer ids, and the bound on a downlink payload (a valid
 * encoding always fits, wrong announcements are refused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "proto/pb_xfer.h"
#include "worker/wrk_model.h"
#include "worker/wrk_xfer.h"

static struct pb_credit credit(uint64_t transfer, uint32_t received,
                               bool cancel)
{
    struct pb_credit c = {transfer, received, cancel};
    return c;
}

/* Hand over chunks until the window closes; returns how many. */
static uint32_t drain(struct wrk_xfer_tx *tx)
{
    uint32_t seq = 0, n = 0;
    const uint8_t *data = NULL;
    size_t len = 0;
    while (wrk_xfer_tx_next(tx, &seq, &data, &len)) {
        assert_int_equal(seq, tx->next);
        wrk_xfer_tx_sent(tx);
        n++;
    }
    return n;
}

static void test_begin_refuses(void **state)
{
    (void)state;
    static uint8_t p[4096];
    struct wrk_xfer_tx tx;
    memset(&tx, 0xa5, sizeof(tx));
    assert_int_equal(wrk_xfer_tx_begin(&tx, 0, 1, p, sizeof(p), 1024, 4, 0),
                     FL_ERR_INVALID_ARG);
    assert_false(wrk_xfer_tx_active(&tx));
    assert_int_equal(wrk_xfer_tx_begin(&tx, 7, 1, NULL, 10, 1024, 4, 0),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(wrk_xfer_tx_begin(&tx, 7, 1, p, 0, 1024, 4, 0),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(wrk_xfer_tx_begin(&tx, 7, 1, p, sizeof(p), 1023, 4, 0),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(wrk_xfer_tx_begin(&tx, 7, 1, p, sizeof(p), 1024, 0, 0),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(wrk_xfer_tx_begin(&tx, 7, 1, p, sizeof(p), 1024,
                                       PB_XFER_MAX_WINDOW + 1, 0),
                     FL_ERR_INVALID_ARG);
    assert_false(wrk_xfer_tx_active(&tx));
    assert_false(wrk_xfer_tx_expired(&tx, UINT64_MAX));
}

static void test_window_and_credits(void **state)
{
    (void)state;
    static uint8_t p[10 * 1024 + 5];
    struct wrk_xfer_tx tx;
    struct pb_credit cr;
    uint32_t seq = 0;
    const uint8_t *data = NULL;
    size_t len = 0;
    for (size_t i = 0; i < sizeof(p); i++)
        p[i] = (uint8_t)(i * 7);
    assert_int_equal(wrk_xfer_tx_begin(&tx, 42, 3, p, sizeof(p), 1024, 3, 0),
                     FL_OK);
    assert_true(wrk_xfer_tx_active(&tx));
    assert_int_equal(tx.total, 11);
    /* nothing before the first credit */
    assert_false(wrk_xfer_tx_next(&tx, &seq, &data, &len));
    /* another transfer's credit changes nothing */
    cr = credit(41, 0, false);
    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_OTHER);
    assert_false(wrk_xfer_tx_next(&tx, &seq, &data, &len));
    /* a count above what was sent is refused */
    cr = credit(42, 1, false);
    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_BAD);
    assert_false(wrk_xfer_tx_next(&tx, &seq, &data, &len));
    /* received 0: a window of 3 */
    cr = credit(42, 0, false);
    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_OK);
    assert_true(wrk_xfer_tx_next(&tx, &seq, &data, &len));
    assert_int_equal(seq, 0);
    assert_ptr_equal(data, p);
    assert_int_equal(len, 1024);
    assert_int_equal(drain(&tx), 3);
    /* one acknowledged: one more */
    cr = credit(42, 1, false);
    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_OK);
    assert_int_equal(drain(&tx), 1);
    assert_int_equal(tx.next, 4);
    /* an older count changes nothing */
    cr = credit(42, 0, false);
    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_OK);
    assert_int_equal(drain(&tx), 0);
    /* everything acknowledged at once: up to the window */
    cr = credit(42, 4, false);
    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_OK);
    assert_int_equal(drain(&tx), 3);
    cr = credit(42, 7, false);
    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_OK);
    assert_int_equal(drain(&tx), 3);
    assert_false(wrk_xfer_tx_complete(&tx));
    cr = credit(42, 10, false);
    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_OK);
    assert_true(wrk_xfer_tx_next(&tx, &seq, &data, &len));
    assert_int_equal(seq, 10);
    assert_int_equal(len, 5);
    assert_ptr_equal(data, p + 10 * 1024);
    wrk_xfer_tx_sent(&tx);
    assert_true(wrk_xfer_tx_complete(&tx));
    assert_false(wrk_xfer_tx_next(&tx, &seq, &data, &len));
    /* sent() past the end does nothing */
    wrk_xfer_tx_sent(&tx);
    assert_int_equal(tx.next, 11);
    /* a complete transfer never expires */
    tx.deadline_ns = 1;
    assert_false(wrk_xfer_tx_expired(&tx, 100));
    wrk_xfer_tx_reset(&tx);
    assert_false(wrk_xfer_tx_active(&tx));
}

static void test_cancel_and_deadline(void **state)
{
    (void)state;
    static uint8_t p[3000];
    struct wrk_xfer_tx tx;
    struct pb_credit cr;
    assert_int_equal(wrk_xfer_tx_begin(&tx, 9, 1, p, sizeof(p), 1024, 1,
                                       1000),
                     FL_OK);
    assert_false(wrk_xfer_tx_expired(&tx, 999));
    assert_true(wrk_xfer_tx_expired(&tx, 1000));
    cr = credit(9, 0, false);
    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_OK);
    assert_int_equal(drain(&tx), 1);
    assert_true(tx.granted);
    cr = credit(9, 0, true);
    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_CANCEL);
    assert_false(wrk_xfer_tx_active(&tx));
    assert_false(wrk_xfer_tx_expired(&tx, UINT64_MAX));
    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_OTHER);
    /* deadline 0 = none */
    assert_int_equal(wrk_xfer_tx_begin(&tx, 10, 1, p, sizeof(p), 1024, 1, 0),
                     FL_OK);
    assert_false(wrk_xfer_tx_expired(&tx, UINT64_MAX));
}

/* Random payloads and geometries: the chunks handed over, credited one by
 * one as the coordinator does, reassemble into the payload. */
static void test_property_reassembles(void **state)
{
    (void)state;
    struct fl_rng rng;
    fl_rng_seed(&rng, 2024);
    for (int iter = 0; iter < 200; iter++) {
        const uint32_t cb = 1024 + (uint32_t)fl_rng_below(&rng, 3000);
        const uint32_t win = 1 + (uint32_t)fl_rng_below(&rng, 6);
        const size_t len = 1 + (size_t)fl_rng_below(&rng, 20 * cb);
        uint8_t *p = malloc(len);
        assert_non_null(p);
        for (size_t i = 0; i < len; i++)
            p[i] = (uint8_t)fl_rng_next(&rng);
        struct wrk_xfer_tx tx;
        struct pb_xfer_rx rx;
        struct pb_credit cr;
        memset(&rx, 0, sizeof(rx));
        assert_int_equal(wrk_xfer_tx_begin(&tx, 5 + (uint64_t)iter, 1, p, len,
                                           cb, win, 0),
                         FL_OK);
        assert_int_equal(pb_xfer_rx_begin(&rx, tx.transfer, len, cb, len),
                         FL_OK);
        cr = credit(tx.transfer, 0, false);
        assert_int_equal(wrk_xfer_tx_credit(&tx, &cr), WRK_CREDIT_OK);
        bool complete = false;
        while (!complete) {
            /* the sender hands over what the window allows ... */
            struct pb_chunk q[8];
            uint32_t nq = 0, seq = 0;
            const uint8_t *data = NULL;
            size_t clen = 0;
            while (wrk_xfer_tx_next(&tx, &seq, &data, &clen)) {
                assert_true(nq < win);
                const struct pb_chunk ch = {tx.transfer, seq, tx.total, data,
                                            clen};
                q[nq++] = ch;
                wrk_xfer_tx_sent(&tx);
            }
            assert_true(nq > 0);
            /* ... the receiver takes them in and credits some of them,
             * always the last one */
            for (uint32_t i = 0; i < nq; i++) {
                assert_int_equal(pb_xfer_rx_add(&rx, &q[i], &complete), FL_OK);
                if (i + 1 == nq || fl_rng_below(&rng, 2) == 0) {
                    cr = credit(tx.transfer, rx.received, false);
                    assert_int_equal(wrk_xfer_tx_credit(&tx, &cr),
                                     WRK_CREDIT_OK);
                }
            }
        }
        assert_true(wrk_xfer_tx_complete(&tx));
        uint8_t *out = NULL;
        size_t out_len = 0;
        assert_int_equal(pb_xfer_rx_take(&rx, &out, &out_len), FL_OK);
        assert_int_equal(out_len, len);
        assert_memory_equal(out, p, len);
        fl_free(out);
        free(p);
    }
}

static void test_ids_and_threshold(void **state)
{
    (void)state;
    uint64_t counter = UINT64_MAX - 1;
    assert_int_equal(wrk_xfer_id_next(&counter), UINT64_MAX);
    assert_int_equal(wrk_xfer_id_next(&counter), 1); /* never 0 */
    assert_int_equal(wrk_xfer_id_next(&counter), 2);
    assert_false(wrk_xfer_chunked(5000, 0));
    assert_false(wrk_xfer_chunked(1024, 1024));
    assert_true(wrk_xfer_chunked(1025, 1024));
}

/* The bound holds every real encoding: dense models (full and XOR, every
 * codec, incompressible values) and sparse deltas. */
static void test_max_payload_holds_encodings(void **state)
{
    (void)state;
    static const enum cmp_codec codecs[] = {CMP_CODEC_NONE, CMP_CODEC_LZ4,
                                            CMP_CODEC_ZSTD};
    const size_t dim = 5000;
    struct fl_rng rng;
    struct cmp_ctx *ctx = cmp_ctx_new();
    float *w = malloc(dim * sizeof(float));
    uint32_t *idx = malloc(dim * sizeof(uint32_t));
    float *val = malloc(dim * sizeof(float));
    assert_non_null(ctx);
    assert_non_null(w);
    assert_non_null(idx);
    assert_non_null(val);
    fl_rng_seed(&rng, 7);
    for (size_t i = 0; i < dim; i++)
        w[i] = (float)fl_rng_normal(&rng);
    for (size_t c = 0; c < FL_ARRAY_LEN(codecs); c++) {
        struct cmp_meta meta;
        struct pb_tensor t;
        const uint8_t *payload = NULL;
        size_t len = 0;
        uint64_t max = 0;
        assert_int_equal(cmp_dense_encode(ctx, w, dim, NULL, codecs[c], 3,
                                          &meta, &payload, &len),
                         FL_OK);
        wrk_pb_from_meta(&meta, payload, len, &t);
        assert_int_equal(wrk_xfer_max_payload(dim, &t, true, &max), FL_OK);
        assert_true(len <= max);
        assert_true(max >= dim * sizeof(float));
        assert_true(max <= dim * sizeof(float) + dim / 8 + 1024);
        /* a sparse delta: k random entries, fp16 */
        const size_t k = 1 + (size_t)fl_rng_below(&rng, dim);
        size_t n = 0;
        for (size_t i = 0; i < dim && n < k; i++) {
            if (fl_rng_below(&rng, dim - i) < k - n) {
                idx[n] = (uint32_t)i;
                val[n++] = w[i];
            }
        }
        const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP16,
                                     codecs[c], 3};
        assert_int_equal(cmp_sparse_encode(ctx, dim, idx, val, n, &p, &meta,
                                           &payload, &len),
                         FL_OK);
        wrk_pb_from_meta(&meta, payload, len, &t);
        assert_int_equal(wrk_xfer_max_payload(dim, &t, false, &max), FL_OK);
        assert_true(len <= max);
        assert_true(max < dim * sizeof(float) + 1024);
    }
    free(w);
    free(idx);
    free(val);
    cmp_ctx_destroy(&ctx);
}

static void test_max_payload_refuses(void **state)
{
    (void)state;
    struct pb_tensor t;
    uint64_t max = 1;
    memset(&t, 0, sizeof(t));
    t.dimension = 100;
    t.k = 10;
    t.index_coding = CMP_INDEX_DELTA_VARINT;
    t.value_coding = CMP_VALUE_FP32;
    t.codec = CMP_CODEC_ZSTD;
    assert_int_equal(wrk_xfer_max_payload(100, &t, false, &max), FL_OK);
    assert_true(max > 0);
    assert_int_equal(wrk_xfer_max_payload(101, &t, false, &max),
                     FL_ERR_DIMENSION);
    assert_int_equal(max, 0);
    assert_int_equal(wrk_xfer_max_payload(0, &t, false, &max),
                     FL_ERR_DIMENSION);
    t.k = 0;
    assert_int_equal(wrk_xfer_max_payload(100, &t, false, &max),
                     FL_ERR_K_RANGE);
    t.k = 101;
    assert_int_equal(wrk_xfer_max_payload(100, &t, false, &max),
                     FL_ERR_K_RANGE);
    t.k = 10;
    t.codec = 9;
    assert_int_equal(wrk_xfer_max_payload(100, &t, false, &max),
                     FL_ERR_UNSUPPORTED);
    assert_int_equal(wrk_xfer_max_payload(100, &t, true, &max),
                     FL_ERR_UNSUPPORTED);
    t.codec = CMP_CODEC_NONE;
    t.value_coding = 0;
    assert_int_equal(wrk_xfer_max_payload(100, &t, false, &max),
                     FL_ERR_UNSUPPORTED);
    t.value_coding = CMP_VALUE_FP32;
    t.index_coding = 0; /* AUTO is not a wire coding */
    assert_int_equal(wrk_xfer_max_payload(100, &t, false, &max),
                     FL_ERR_UNSUPPORTED);
    t.index_coding = CMP_INDEX_ALL; /* only with k == dimension */
    assert_int_equal(wrk_xfer_max_payload(100, &t, false, &max),
                     FL_ERR_UNSUPPORTED);
    /* dense: the value coding announced does not widen the bound */
    t.value_coding = 77;
    assert_int_equal(wrk_xfer_max_payload(100, &t, true, &max), FL_OK);
    assert_int_equal(max, 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_begin_refuses),
        cmocka_unit_test(test_window_and_credits),
        cmocka_unit_test(test_cancel_and_deadline),
        cmocka_unit_test(test_property_reassembles),
        cmocka_unit_test(test_ids_and_threshold),
        cmocka_unit_test(test_max_payload_holds_encodings),
        cmocka_unit_test(test_max_payload_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
