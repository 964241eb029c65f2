/*
 * test_pb_xfer.c - chunk arithmetic, reassembly and its refusals.
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
#include "proto/pb_msg.h"
#include "proto/pb_xfer.h"

static void test_arithmetic(void **state)
{
    static const struct {
        uint64_t bytes;
        uint32_t chunk;
        uint32_t total;
        size_t last_len;
    } cases[] = {
        {0, 1024, 0, 0},
        {1, 1024, 1, 1},
        {1024, 1024, 1, 1024},
        {1025, 1024, 2, 1},
        {4096, 1024, 4, 1024},
        {5000, 0, 0, 0},
        {(uint64_t)UINT32_MAX * 1024 + 1, 1024, 0, 0}, /* count overflows */
        {(uint64_t)UINT32_MAX * 1024, 1024, UINT32_MAX, 1024},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        const uint32_t t = pb_xfer_chunks(cases[i].bytes, cases[i].chunk);
        assert_int_equal(t, cases[i].total);
        if (t == 0) {
            assert_int_equal(pb_xfer_chunk_len(cases[i].bytes,
                                               cases[i].chunk, 0), 0);
            continue;
        }
        assert_int_equal(pb_xfer_chunk_len(cases[i].bytes, cases[i].chunk,
                                           t - 1), cases[i].last_len);
        assert_int_equal(pb_xfer_chunk_len(cases[i].bytes, cases[i].chunk,
                                           t), 0);
        if (t > 1)
            assert_int_equal(pb_xfer_chunk_len(cases[i].bytes,
                                               cases[i].chunk, 0),
                             cases[i].chunk);
    }
    assert_true(pb_xfer_geometry_ok(PB_XFER_MIN_CHUNK, 1));
    assert_true(pb_xfer_geometry_ok(PB_XFER_MAX_CHUNK, PB_XFER_MAX_WINDOW));
    assert_false(pb_xfer_geometry_ok(PB_XFER_MIN_CHUNK - 1, 1));
    assert_false(pb_xfer_geometry_ok(PB_XFER_MAX_CHUNK + 1, 1));
    assert_false(pb_xfer_geometry_ok(4096, 0));
    assert_false(pb_xfer_geometry_ok(4096, PB_XFER_MAX_WINDOW + 1));
}

static void test_begin_refusals(void **state)
{
    static const struct {
        uint64_t transfer, bytes;
        uint32_t chunk;
        uint64_t max;
        enum fl_err rc;
    } cases[] = {
        {1, 100, 1024, 100, FL_OK},
        {0, 100, 1024, 1000, FL_ERR_FORMAT},
        {1, 0, 1024, 1000, FL_ERR_FORMAT},
        {1, 100, 16, 1000, FL_ERR_FORMAT},
        {1, 100, PB_XFER_MAX_CHUNK + 1, 1000, FL_ERR_FORMAT},
        {1, 101, 1024, 100, FL_ERR_TOO_LARGE},
        {1, UINT64_MAX, 1024, UINT64_MAX, FL_ERR_FORMAT},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        struct pb_xfer_rx rx;
        memset(&rx, 0, sizeof(rx));
        assert_int_equal(pb_xfer_rx_begin(&rx, cases[i].transfer,
                                          cases[i].bytes, cases[i].chunk,
                                          cases[i].max),
                         cases[i].rc);
        assert_int_equal(pb_xfer_rx_active(&rx), cases[i].rc == FL_OK);
        pb_xfer_rx_reset(&rx);
        assert_false(pb_xfer_rx_active(&rx));
    }
}

/* Every wrong chunk is refused without changing the state; the right ones
 * then complete the payload byte for byte. */
static void test_reassembly_and_refusals(void **state)
{
    enum { CH = 1024, BYTES = 5 * CH + 77 };
    static uint8_t src[BYTES];
    struct fl_rng r;
    struct pb_xfer_rx rx;
    bool done = false;
    (void)state;

    fl_rng_seed(&r, 7);
    for (size_t i = 0; i < BYTES; i++)
        src[i] = (uint8_t)fl_rng_next(&r);
    memset(&rx, 0, sizeof(rx));
    struct pb_chunk c = {.transfer = 9, .seq = 0, .total = 6, .data = src,
                         .len = CH};
    assert_int_equal(pb_xfer_rx_add(&rx, &c, &done), FL_ERR_BAD_STATE);
    assert_int_equal(pb_xfer_rx_begin(&rx, 9, BYTES, CH, BYTES), FL_OK);
    assert_int_equal(rx.total, 6);
    for (uint32_t seq = 0; seq < 6; seq++) {
        const size_t len = seq < 5 ? CH : 77;
        const struct pb_chunk good = {9, seq, 6, src + (size_t)seq * CH, len};
        struct pb_chunk bad[6];
        for (size_t b = 0; b < FL_ARRAY_LEN(bad); b++)
            bad[b] = good;
        bad[0].transfer = 8;
        bad[1].seq = seq + 1;
        bad[2].seq = seq == 0 ? 5 : seq - 1;
        bad[3].total = 7;
        bad[4].len = len - 1;
        bad[5].len = len + 1;
        for (size_t b = 0; b < FL_ARRAY_LEN(bad); b++) {
            assert_int_equal(pb_xfer_rx_add(&rx, &bad[b], &done),
                             FL_ERR_TRANSFER);
            assert_false(done);
            assert_int_equal(rx.received, seq);
        }
        assert_int_equal(pb_xfer_rx_add(&rx, &good, &done), FL_OK);
        assert_int_equal(done, seq == 5);
    }
    assert_true(pb_xfer_rx_done(&rx));
    /* complete: any further chunk is out of place */
    assert_int_equal(pb_xfer_rx_add(&rx, &c, &done), FL_ERR_BAD_STATE);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(pb_xfer_rx_take(&rx, &buf, &len), FL_OK);
    assert_int_equal(len, BYTES);
    assert_memory_equal(buf, src, BYTES);
    fl_free(buf);
    assert_false(pb_xfer_rx_active(&rx));
    assert_int_equal(pb_xfer_rx_take(&rx, &buf, &len), FL_ERR_BAD_STATE);
}

/* Chunk and Credit messages survive packing and unpacking. */
static void test_pack_round_trip(void **state)
{
    static const uint8_t data[5] = {1, 2, 3, 4, 5};
    const struct pb_limits lim = {1 << 20, 1 << 20};
    uint8_t *buf = NULL;
    size_t len = 0;
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    (void)state;

    assert_int_equal(pb_xfer_pack_chunk(1ull << 40, 3, 4, data, 5, &buf,
                                        &len), FL_OK);
    assert_int_equal(pb_unpack(buf, len, &lim, &msg, &env, NULL, NULL, 0),
                     FL_OK);
    assert_int_equal(env->body, PB_BODY_CHUNK);
    assert_int_equal(env->chunk.transfer, 1ull << 40);
    assert_int_equal(env->chunk.seq, 3);
    assert_int_equal(env->chunk.total, 4);
    assert_int_equal(env->chunk.len, 5);
    assert_memory_equal(env->chunk.data, data, 5);
    pb_msg_destroy(&msg);
    fl_free(buf);

    assert_int_equal(pb_xfer_pack_credit(77, 12, true, &buf, &len), FL_OK);
    assert_int_equal(pb_unpack(buf, len, &lim, &msg, &env, NULL, NULL, 0),
                     FL_OK);
    assert_int_equal(env->body, PB_BODY_CREDIT);
    assert_int_equal(env->credit.transfer, 77);
    assert_int_equal(env->credit.received, 12);
    assert_true(env->credit.cancel);
    pb_msg_destroy(&msg);
    fl_free(buf);
}

static void test_alloc_failure(void **state)
{
    struct pb_xfer_rx rx;
    uint8_t *buf = NULL;
    size_t len = 0;
    (void)state;
    memset(&rx, 0, sizeof(rx));
    fl_alloc_fail_after(0);
    assert_int_equal(pb_xfer_rx_begin(&rx, 1, 5000, 1024, 5000),
                     FL_ERR_NOMEM);
    assert_false(pb_xfer_rx_active(&rx));
    assert_int_equal(pb_xfer_pack_credit(1, 0, false, &buf, &len),
                     FL_ERR_NOMEM);
    fl_alloc_fail_reset();
    assert_null(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arithmetic),
        cmocka_unit_test(test_begin_refusals),
        cmocka_unit_test(test_reassembly_and_refusals),
        cmocka_unit_test(test_pack_round_trip),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
