/*
 * Unit tests for coordinator/coord_models: the ring of kept versions
 * (which version each buffer holds after pushes, buffer swaps and resets;
 * a kept version is never overwritten before it is the oldest) and the
 * payload cache (one entry per key, level normalised, payloads dropped
 * when the current version changes, handed-out payloads never move while
 * the table grows), and every allocation failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "coordinator/coord_models.h"

enum { DIM = 5 };

static void fill(float *x, float v)
{
    for (size_t i = 0; i < DIM; i++)
        x[i] = v + (float)i;
}

/* the buffer holds version v's parameters (fill(x, v)) */
static void assert_holds(const float *x, uint64_t v)
{
    assert_non_null(x);
    for (size_t i = 0; i < DIM; i++)
        assert_true(x[i] == (float)v + (float)i);
}

static void test_ring_keeps_the_last_versions(void **state)
{
    (void)state;
    float init[DIM];
    fill(init, 1);
    struct coord_models *m = NULL;
    assert_int_equal(coord_models_new(DIM, 3, init, 1, &m), FL_OK);
    assert_int_equal(coord_models_version(m), 1);
    assert_holds(coord_models_current(m), 1);
    assert_null(coord_models_find(m, 0));
    assert_null(coord_models_find(m, 2));

    for (uint64_t v = 2; v <= 7; v++) {
        float *next = coord_models_oldest(m);
        assert_true(next != coord_models_current(m));
        /* the oldest buffer is no kept version's but the oldest one's */
        if (v > 3)
            assert_true(next == coord_models_find(m, v - 3));
        fill(next, (float)v);
        coord_models_push(m, v);
        assert_int_equal(coord_models_version(m), v);
        assert_holds(coord_models_current(m), v);
        for (uint64_t k = 1; k <= v; k++) {
            if (k + 3 > v)
                assert_holds(coord_models_find(m, k), k);
            else
                assert_null(coord_models_find(m, k));
        }
    }

    /* a swapped-in buffer becomes current; the oldest comes back */
    float *mine = malloc(DIM * sizeof(float));
    fill(mine, 8);
    const float *oldest = coord_models_find(m, 5);
    float *back = coord_models_push_buffer(m, mine, 8);
    assert_true(back == oldest);
    assert_holds(back, 5); /* untouched: it is only scratch now */
    assert_true(coord_models_current(m) == mine);
    assert_null(coord_models_find(m, 5));
    assert_holds(coord_models_find(m, 6), 6);
    assert_holds(coord_models_find(m, 7), 7);
    free(back); /* the caller's now */

    /* reset: one version left, any number */
    float other[DIM];
    fill(other, 3);
    coord_models_reset(m, other, 3);
    assert_int_equal(coord_models_version(m), 3);
    assert_holds(coord_models_current(m), 3);
    assert_null(coord_models_find(m, 7));
    assert_null(coord_models_find(m, 8));
    coord_models_destroy(&m);
    assert_null(m);
    coord_models_destroy(&m);
    coord_models_destroy(NULL);
}

/* keep == 1: the next version is written over the current one */
static void test_ring_of_one(void **state)
{
    (void)state;
    float init[DIM];
    fill(init, 1);
    struct coord_models *m = NULL;
    assert_int_equal(coord_models_new(DIM, 1, init, 4, &m), FL_OK);
    assert_true(coord_models_oldest(m) == coord_models_current(m));
    fill(coord_models_oldest(m), 5);
    coord_models_push(m, 5);
    assert_holds(coord_models_find(m, 5), 5);
    assert_null(coord_models_find(m, 4));
    coord_models_destroy(&m);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    float init[DIM] = {0};
    struct coord_models *m = (struct coord_models *)&m;
    assert_int_equal(coord_models_new(0, 1, init, 1, &m), FL_ERR_INVALID_ARG);
    assert_null(m);
    assert_int_equal(coord_models_new(DIM, 0, init, 1, &m),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(coord_models_new(DIM, 1025, init, 1, &m),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(coord_models_new(DIM, 1, init, 0, &m),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(coord_models_new(DIM, 1, NULL, 1, &m),
                     FL_ERR_INVALID_ARG);
    assert_null(m);
}

static const struct cmp_meta meta5 = {.dimension = DIM, .k = DIM};

static void test_payload_cache(void **state)
{
    (void)state;
    float init[DIM];
    fill(init, 1);
    struct coord_models *m = NULL;
    assert_int_equal(coord_models_new(DIM, 2, init, 1, &m), FL_OK);

    /* level: 0 unless zstd, else clamped */
    struct coord_payload_key k = coord_payload_key(COORD_PAYLOAD_FULL, 0,
                                                   CMP_CODEC_LZ4, 7);
    assert_int_equal(k.level, 0);
    k = coord_payload_key(COORD_PAYLOAD_FULL, 0, CMP_CODEC_ZSTD, -5);
    assert_int_equal(k.level, CMP_ZSTD_LEVEL_MIN);
    k = coord_payload_key(COORD_PAYLOAD_FULL, 0, CMP_CODEC_ZSTD, 99);
    assert_int_equal(k.level, CMP_ZSTD_LEVEL_MAX);

    const struct coord_payload_key full =
        coord_payload_key(COORD_PAYLOAD_FULL, 0, CMP_CODEC_ZSTD, 3);
    const struct coord_payload *p = NULL;
    assert_null(coord_models_cached(m, &full));
    const uint8_t bytes[4] = {1, 2, 3, 4};
    assert_int_equal(coord_models_store(m, &full, &meta5, bytes, 4, &p),
                     FL_OK);
    assert_non_null(p);
    assert_int_equal(p->kind, COORD_PAYLOAD_FULL);
    assert_int_equal(p->version, 1);
    assert_int_equal(p->base_version, 0);
    assert_int_equal(p->level, 3);
    assert_int_equal(p->len, 4);
    assert_int_equal(p->meta.dimension, DIM);
    assert_memory_equal(p->data, bytes, 4);
    assert_true(p->data != bytes); /* a copy */
    assert_true(coord_models_cached(m, &full) == p);
    /* another level, codec, kind or base is another payload */
    const struct coord_payload_key others[] = {
        coord_payload_key(COORD_PAYLOAD_FULL, 0, CMP_CODEC_ZSTD, 4),
        coord_payload_key(COORD_PAYLOAD_FULL, 0, CMP_CODEC_LZ4, 3),
        coord_payload_key(COORD_PAYLOAD_XOR, 7, CMP_CODEC_ZSTD, 3),
        coord_payload_key(COORD_PAYLOAD_SPARSE, 7, CMP_CODEC_ZSTD, 3),
        coord_payload_key(COORD_PAYLOAD_SPARSE, 6, CMP_CODEC_ZSTD, 3),
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(others); i++)
        assert_null(coord_models_cached(m, &others[i]));

    /* many more entries: the first payload does not move */
    uint8_t big[300];
    memset(big, 0xab, sizeof(big));
    for (uint64_t base = 1; base <= 40; base++) {
        const struct coord_payload_key kx =
            coord_payload_key(COORD_PAYLOAD_XOR, base, CMP_CODEC_NONE, 0);
        const struct coord_payload *q = NULL;
        assert_int_equal(coord_models_store(m, &kx, &meta5, big,
                                            (size_t)base * 7, &q), FL_OK);
        assert_int_equal(q->base_version, base);
    }
    assert_true(coord_models_cached(m, &full) == p);
    assert_memory_equal(p->data, bytes, 4);
    assert_int_equal(coord_models_stores(m), 41);

    /* storing under a key again replaces its payload */
    const uint8_t again[2] = {9, 9};
    assert_int_equal(coord_models_store(m, &full, &meta5, again, 2, &p),
                     FL_OK);
    assert_true(coord_models_cached(m, &full) == p);
    assert_int_equal(p->len, 2);

    /* a new current version drops every payload, and entries are reused */
    fill(coord_models_oldest(m), 2);
    coord_models_push(m, 2);
    assert_null(coord_models_cached(m, &full));
    const long before = fl_alloc_count();
    assert_int_equal(coord_models_store(m, &full, &meta5, bytes, 4, &p),
                     FL_OK);
    assert_int_equal(fl_alloc_count(), before); /* no new allocation */
    assert_int_equal(p->version, 2);
    coord_models_reset(m, init, 9);
    assert_null(coord_models_cached(m, &full));
    /* an empty payload */
    assert_int_equal(coord_models_store(m, &full, &meta5, NULL, 0, &p),
                     FL_OK);
    assert_int_equal(p->len, 0);
    assert_int_equal(p->version, 9);
    coord_models_destroy(&m);
}

/* Every allocation that can fail does so once: FL_ERR_NOMEM, nothing
 * cached, and nothing leaks (under ASan/LSan). */
static void test_allocation_failures(void **state)
{
    (void)state;
    float init[DIM];
    fill(init, 1);
    int failed = 0;
    for (long n = 0; n < 16; n++) {
        struct coord_models *m = NULL;
        fl_alloc_fail_after(n);
        const enum fl_err rc = coord_models_new(DIM, 3, init, 1, &m);
        fl_alloc_fail_reset();
        if (rc != FL_OK) {
            assert_int_equal(rc, FL_ERR_NOMEM);
            assert_null(m);
            failed++;
        }
        coord_models_destroy(&m);
    }
    assert_int_equal(failed, 6); /* struct, ring, versions, 3 buffers */

    /* store: the table, the entry, the bytes */
    struct coord_models *m = NULL;
    assert_int_equal(coord_models_new(DIM, 3, init, 1, &m), FL_OK);
    const struct coord_payload_key k =
        coord_payload_key(COORD_PAYLOAD_FULL, 0, CMP_CODEC_NONE, 0);
    const uint8_t bytes[8] = {0};
    failed = 0;
    for (long n = 0; n < 8; n++) {
        const struct coord_payload *p = (const struct coord_payload *)&k;
        fl_alloc_fail_after(n);
        const enum fl_err rc =
            coord_models_store(m, &k, &meta5, bytes, sizeof(bytes), &p);
        fl_alloc_fail_reset();
        if (rc != FL_OK) {
            assert_int_equal(rc, FL_ERR_NOMEM);
            assert_null(p);
            assert_null(coord_models_cached(m, &k));
            failed++;
            continue;
        }
        assert_non_null(coord_models_cached(m, &k));
        fill(coord_models_oldest(m), (float)n + 2);
        coord_models_push(m, (uint64_t)n + 2); /* empty again */
    }
    assert_int_equal(failed, 3);
    coord_models_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_keeps_the_last_versions),
        cmocka_unit_test(test_ring_of_one),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_payload_cache),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
