/*
 * Unit tests for coordinator/coord_agg: the weighted mean of sparse updates
 * against a dense reference, server momentum, the finite check, the
 * version cache with XOR deltas and the shared downlink payloads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "coordinator/coord_agg.h"

/* One random sparse update: k distinct ascending indices below dim. */
struct sparse {
    uint32_t *idx;
    float *val;
    size_t k;
};

static void sparse_random(struct fl_rng *r, size_t dim, size_t k,
                          struct sparse *s)
{
    uint8_t *taken = calloc(dim, 1);
    assert_non_null(taken);
    s->idx = malloc(k * sizeof(uint32_t));
    s->val = malloc(k * sizeof(float));
    assert_non_null(s->idx);
    assert_non_null(s->val);
    s->k = k;
    for (size_t n = 0; n < k;) {
        const size_t i = (size_t)fl_rng_below(r, dim);
        if (!taken[i]) {
            taken[i] = 1;
            n++;
        }
    }
    for (size_t i = 0, n = 0; i < dim; i++) {
        if (taken[i]) {
            s->idx[n] = (uint32_t)i;
            s->val[n] = (float)fl_rng_normal(r);
            n++;
        }
    }
    free(taken);
}

static void sparse_free(struct sparse *s)
{
    free(s->idx);
    free(s->val);
}

static float *random_params(struct fl_rng *r, size_t dim)
{
    float *p = malloc(dim * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < dim; i++)
        p[i] = (float)(fl_rng_uniform(r) * 2 - 1);
    return p;
}

static struct coord_agg *agg_make(size_t dim, double lr, double mom,
                                  uint32_t keep, const float *init)
{
    struct coord_agg *a = NULL;
    const struct coord_agg_config cfg = {
        .dim = dim, .server_lr = lr, .server_momentum = mom,
        .keep_versions = keep};
    assert_int_equal(coord_agg_new(&cfg, init, &a), FL_OK);
    assert_non_null(a);
    return a;
}

static void assert_close(const float *got, const double *want, size_t n,
                         double tol)
{
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - want[i]);
        if (err > tol * (1.0 + fabs(want[i]))) {
            fail_msg("element %zu: got %.9g, want %.9g", i, (double)got[i],
                     want[i]);
        }
    }
}

/* ---- the server step */

static void test_weighted_mean_matches_dense_reference(void **state)
{
    (void)state;
    static const struct {
        size_t dim;
        size_t nupdates;
        double density;
        double lr;
    } cases[] = {
        {1, 1, 1.0, 1.0},   {10, 3, 0.3, 1.0},  {1000, 8, 0.01, 1.0},
        {1000, 5, 0.5, 0.5}, {4097, 16, 0.05, 2.0}, {50000, 4, 0.001, 1.0},
    };
    for (size_t c = 0; c < FL_ARRAY_LEN(cases); c++) {
        struct fl_rng r;
        fl_rng_seed(&r, 100 + c);
        const size_t dim = cases[c].dim;
        float *w0 = random_params(&r, dim);
        double *ref = calloc(dim, sizeof(double));
        assert_non_null(ref);
        struct coord_agg *a = agg_make(dim, cases[c].lr, 0, 2, w0);
        double wsum = 0;
        for (size_t u = 0; u < cases[c].nupdates; u++) {
            struct sparse s;
            size_t k = (size_t)ceil(cases[c].density * (double)dim);
            sparse_random(&r, dim, k, &s);
            const double weight = (double)(1 + fl_rng_below(&r, 5000));
            assert_int_equal(coord_agg_add(a, s.idx, s.val, s.k, weight),
                             FL_OK);
            for (size_t i = 0; i < s.k; i++)
                ref[s.idx[i]] += weight * (double)s.val[i];
            wsum += weight;
            sparse_free(&s);
        }
        assert_int_equal(coord_agg_count(a), cases[c].nupdates);
        assert_true(fabs(coord_agg_weight(a) - wsum) < 1e-6);
        for (size_t i = 0; i < dim; i++)
            ref[i] = (double)w0[i] + cases[c].lr * ref[i] / wsum;
        assert_int_equal(coord_agg_version(a), 1);
        assert_int_equal(coord_agg_commit(a), FL_OK);
        assert_int_equal(coord_agg_version(a), 2);
        assert_int_equal(coord_agg_count(a), 0);
        assert_close(coord_agg_params(a), ref, dim, 1e-5);
        coord_agg_destroy(&a);
        assert_null(a);
        free(ref);
        free(w0);
    }
}

static void test_server_momentum(void **state)
{
    (void)state;
    const size_t dim = 257;
    const double lr = 0.7, beta = 0.9;
    struct fl_rng r;
    fl_rng_seed(&r, 7);
    float *w0 = random_params(&r, dim);
    double *w = malloc(dim * sizeof(double));
    double *m = calloc(dim, sizeof(double));
    double *g = malloc(dim * sizeof(double));
    assert_non_null(w);
    assert_non_null(m);
    assert_non_null(g);
    for (size_t i = 0; i < dim; i++)
        w[i] = w0[i];
    struct coord_agg *a = agg_make(dim, lr, beta, 3, w0);
    for (int round = 0; round < 5; round++) {
        double wsum = 0;
        memset(g, 0, dim * sizeof(double));
        for (int u = 0; u < 3; u++) {
            struct sparse s;
            sparse_random(&r, dim, 40, &s);
            const double weight = (double)(u + 1) * 100;
            assert_int_equal(coord_agg_add(a, s.idx, s.val, s.k, weight),
                             FL_OK);
            for (size_t i = 0; i < s.k; i++)
                g[s.idx[i]] += weight * s.val[i];
            wsum += weight;
            sparse_free(&s);
        }
        for (size_t i = 0; i < dim; i++) {
            m[i] = beta * m[i] + g[i] / wsum;
            w[i] += lr * m[i];
        }
        assert_int_equal(coord_agg_commit(a), FL_OK);
        assert_close(coord_agg_params(a), w, dim, 1e-5);
    }
    /* Momentum carries the update on even when the round brings little:
     * a round with one tiny update still moves every coordinate m != 0. */
    const float *before = coord_agg_params(a);
    float *copy = malloc(dim * sizeof(float));
    assert_non_null(copy);
    memcpy(copy, before, dim * sizeof(float));
    const uint32_t one = 0;
    const float tiny = 0.0f;
    assert_int_equal(coord_agg_add(a, &one, &tiny, 1, 1.0), FL_OK);
    assert_int_equal(coord_agg_commit(a), FL_OK);
    size_t moved = 0;
    for (size_t i = 0; i < dim; i++)
        moved += coord_agg_params(a)[i] != copy[i];
    assert_true(moved > dim / 2);
    coord_agg_destroy(&a);
    free(copy);
    free(w0);
    free(w);
    free(m);
    free(g);
}

static void test_nonfinite_candidate_rejected(void **state)
{
    (void)state;
    const size_t dim = 64;
    struct fl_rng r;
    fl_rng_seed(&r, 3);
    float *w0 = random_params(&r, dim);
    float *snap = malloc(dim * sizeof(float));
    assert_non_null(snap);
    static const struct {
        double lr;
        double mom;
        float val;
        double weight;
    } cases[] = {
        {1.0, 0.0, 3e38f, 10.0},      /* weighted sum overflows */
        {1.0, 0.5, 3e38f, 10.0},      /* same with server momentum */
        {1e6, 0.0, 1e35f, 1.0},       /* the server step overflows */
    };
    for (size_t c = 0; c < FL_ARRAY_LEN(cases); c++) {
        struct coord_agg *a = agg_make(dim, cases[c].lr, cases[c].mom, 2, w0);
        const uint32_t idx[2] = {5, 9};
        const float good[2] = {0.5f, -0.25f};
        /* one good round first so that momentum is non-zero */
        assert_int_equal(coord_agg_add(a, idx, good, 2, 1.0), FL_OK);
        assert_int_equal(coord_agg_commit(a), FL_OK);
        memcpy(snap, coord_agg_params(a), dim * sizeof(float));
        const uint64_t ver = coord_agg_version(a);

        const float bad[2] = {cases[c].val, cases[c].val};
        assert_int_equal(coord_agg_add(a, idx, bad, 2, cases[c].weight),
                         FL_OK);
        assert_int_equal(coord_agg_add(a, idx, bad, 2, cases[c].weight),
                         FL_OK);
        assert_int_equal(coord_agg_commit(a), FL_ERR_NONFINITE);
        assert_memory_equal(coord_agg_params(a), snap, dim * sizeof(float));
        assert_int_equal(coord_agg_version(a), ver);
        assert_int_equal(coord_agg_count(a), 0);

        /* the next round works and starts from the unchanged model (and
         * unchanged momentum) */
        double want[2];
        for (int i = 0; i < 2; i++) {
            const double m = cases[c].mom * good[i] + good[i];
            want[i] = (double)snap[idx[i]] + cases[c].lr * m;
        }
        assert_int_equal(coord_agg_add(a, idx, good, 2, 1.0), FL_OK);
        assert_int_equal(coord_agg_commit(a), FL_OK);
        const float got[2] = {coord_agg_params(a)[5], coord_agg_params(a)[9]};
        assert_close(got, want, 2, 1e-5);
        coord_agg_destroy(&a);
    }
    free(snap);
    free(w0);
}

/* The range check works on eight indices at a time and the rest one by
 * one: an index out of range is refused wherever it sits, including the
 * largest values (dim itself, UINT32_MAX), and nothing is added. */
static void test_index_range_every_position(void **state)
{
    (void)state;
    const size_t dim = 64;
    float w0[64] = {0};
    struct coord_agg *a = agg_make(dim, 1.0, 0, 1, w0);
    uint32_t idx[40];
    float val[40];
    static const uint32_t bad[] = {64, 65, 0x80000000u, UINT32_MAX};
    for (size_t k = 1; k <= 40; k++) {
        for (size_t i = 0; i < k; i++) {
            idx[i] = (uint32_t)i;
            val[i] = 1.0f;
        }
        for (size_t pos = 0; pos < k; pos++) {
            for (size_t b = 0; b < FL_ARRAY_LEN(bad); b++) {
                idx[pos] = bad[b];
                assert_int_equal(coord_agg_add(a, idx, val, k, 1.0),
                                 FL_ERR_INDEX_RANGE);
            }
            idx[pos] = (uint32_t)(dim - 1); /* the largest valid index */
            assert_int_equal(coord_agg_add(a, idx, val, k, 1.0), FL_OK);
            idx[pos] = (uint32_t)pos;
        }
    }
    /* only the accepted adds count: sum over k of k adds */
    assert_int_equal(coord_agg_count(a), 40 * 41 / 2);
    coord_agg_destroy(&a);
}

static void test_add_and_commit_misuse(void **state)
{
    (void)state;
    const size_t dim = 16;
    float w0[16] = {0};
    struct coord_agg *a = agg_make(dim, 1.0, 0, 1, w0);
    const uint32_t idx[3] = {1, 2, 3};
    const uint32_t out_of_range[2] = {1, 16};
    const float val[3] = {1, 2, 3};
    static const double bad_weights[] = {0.0, -1.0, NAN, INFINITY, 1e39};

    assert_int_equal(coord_agg_commit(a), FL_ERR_BAD_STATE);
    for (size_t i = 0; i < FL_ARRAY_LEN(bad_weights); i++)
        assert_int_equal(coord_agg_add(a, idx, val, 3, bad_weights[i]),
                         FL_ERR_INVALID_ARG);
    assert_int_equal(coord_agg_add(a, idx, val, 17, 1.0), FL_ERR_INVALID_ARG);
    assert_int_equal(coord_agg_add(a, out_of_range, val, 2, 1.0),
                     FL_ERR_INDEX_RANGE);
    assert_int_equal(coord_agg_count(a), 0);
    assert_int_equal(coord_agg_commit(a), FL_ERR_BAD_STATE);

    /* discard drops what was added */
    assert_int_equal(coord_agg_add(a, idx, val, 3, 2.0), FL_OK);
    coord_agg_discard(a);
    assert_int_equal(coord_agg_count(a), 0);
    assert_int_equal(coord_agg_commit(a), FL_ERR_BAD_STATE);
    assert_int_equal(coord_agg_add(a, idx, val, 1, 2.0), FL_OK);
    assert_int_equal(coord_agg_commit(a), FL_OK);
    assert_true(coord_agg_params(a)[1] == 1.0f);
    assert_true(coord_agg_params(a)[2] == 0.0f);

    /* bad configurations */
    struct coord_agg *b = NULL;
    const struct coord_agg_config bad[] = {
        {0, 1.0, 0, 1}, {16, 0.0, 0, 1}, {16, 1.0, 1.0, 1},
        {16, 1.0, -0.1, 1}, {16, 1.0, 0, 0}, {16, NAN, 0, 1},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(bad); i++) {
        assert_int_equal(coord_agg_new(&bad[i], w0, &b), FL_ERR_INVALID_ARG);
        assert_null(b);
    }
    float nonfinite[16] = {0};
    nonfinite[7] = NAN;
    const struct coord_agg_config ok = {16, 1.0, 0, 1};
    assert_int_equal(coord_agg_new(&ok, nonfinite, &b), FL_ERR_INVALID_ARG);
    coord_agg_destroy(&a);
    coord_agg_destroy(&a); /* NULL is fine */
    coord_agg_destroy(NULL);
}

/* ---- version cache and payloads */

static void decode_payload(const struct coord_agg *a,
                           const struct coord_payload *p, const float *base,
                           float *out)
{
    struct cmp_ctx *ctx = cmp_ctx_new();
    assert_non_null(ctx);
    const struct cmp_limits lim = {.dimension = coord_agg_dim(a)};
    assert_int_equal(p->meta.dimension, coord_agg_dim(a));
    assert_int_equal(p->meta.k, coord_agg_dim(a));
    assert_int_equal(cmp_dense_decode(ctx, &p->meta, p->data, p->len, &lim,
                                      base, out),
                     FL_OK);
    cmp_ctx_destroy(&ctx);
}

static void test_version_cache_deltas_decode_exactly(void **state)
{
    (void)state;
    const size_t dim = 3000;
    const uint32_t keep = 4;
    static const struct {
        enum cmp_codec codec;
        int level;
    } codecs[] = {{CMP_CODEC_NONE, 0}, {CMP_CODEC_LZ4, 0},
                  {CMP_CODEC_ZSTD, 1}, {CMP_CODEC_ZSTD, 19}};
    struct fl_rng r;
    fl_rng_seed(&r, 11);
    float *w0 = random_params(&r, dim);
    float *out = malloc(dim * sizeof(float));
    float *held[16];
    assert_non_null(out);
    struct coord_agg *a = agg_make(dim, 1.0, 0, keep, w0);
    held[1] = malloc(dim * sizeof(float));
    assert_non_null(held[1]);
    memcpy(held[1], w0, dim * sizeof(float));
    for (uint64_t v = 2; v <= 7; v++) {
        struct sparse s;
        sparse_random(&r, dim, 30, &s);
        assert_int_equal(coord_agg_add(a, s.idx, s.val, s.k, 1.0), FL_OK);
        assert_int_equal(coord_agg_commit(a), FL_OK);
        sparse_free(&s);
        assert_int_equal(coord_agg_version(a), v);
        held[v] = malloc(dim * sizeof(float));
        assert_non_null(held[v]);
        memcpy(held[v], coord_agg_params(a), dim * sizeof(float));
    }
    /* kept: the last 4 versions, 4..7 */
    for (uint64_t v = 1; v <= 7; v++) {
        const bool kept = v >= 4;
        assert_int_equal(coord_agg_version_params(a, v) != NULL, kept);
        if (kept)
            assert_memory_equal(coord_agg_version_params(a, v), held[v],
                                dim * sizeof(float));
    }
    assert_null(coord_agg_version_params(a, 0));
    assert_null(coord_agg_version_params(a, 8));

    for (size_t c = 0; c < FL_ARRAY_LEN(codecs); c++) {
        for (uint64_t v = 0; v <= 7; v++) {
            const struct coord_payload *p = NULL;
            assert_int_equal(coord_model_task_payload(a, v, codecs[c].codec,
                                                      codecs[c].level, &p),
                             FL_OK);
            assert_non_null(p);
            assert_int_equal(p->version, 7);
            const bool delta = v >= 4;
            assert_int_equal(p->kind == COORD_PAYLOAD_XOR, delta);
            assert_int_equal(p->meta.codec, codecs[c].codec);
            memset(out, 0xff, dim * sizeof(float));
            if (delta) {
                assert_int_equal(p->base_version, v);
                /* the device applies the delta to the copy it holds */
                memcpy(out, held[v], dim * sizeof(float));
                decode_payload(a, p, out, out);
            } else {
                decode_payload(a, p, NULL, out);
            }
            assert_memory_equal(out, held[7], dim * sizeof(float));
        }
    }
    /* a delta against the current version is (almost) free with zstd */
    const struct coord_payload *same = NULL, *full = NULL;
    assert_int_equal(
        coord_model_task_payload(a, 7, CMP_CODEC_ZSTD, 1, &same), FL_OK);
    assert_int_equal(
        coord_model_task_payload(a, 0, CMP_CODEC_ZSTD, 1, &full), FL_OK);
    assert_true(same->len * 20 < full->len);
    for (uint64_t v = 1; v <= 7; v++)
        free(held[v]);
    coord_agg_destroy(&a);
    free(out);
    free(w0);
}

static void test_payload_shared_across_devices(void **state)
{
    (void)state;
    const size_t dim = 5000;
    struct fl_rng r;
    fl_rng_seed(&r, 5);
    float *w0 = random_params(&r, dim);
    struct coord_agg *a = agg_make(dim, 1.0, 0, 4, w0);
    const struct coord_payload *p1 = NULL, *p2 = NULL, *q = NULL;

    /* 100 devices holding nothing and 100 holding version 1: two encodings */
    for (int dev = 0; dev < 100; dev++) {
        assert_int_equal(
            coord_model_task_payload(a, 0, CMP_CODEC_ZSTD, 1, &q), FL_OK);
        if (p1 == NULL)
            p1 = q;
        assert_ptr_equal(q, p1);
        assert_int_equal(
            coord_model_task_payload(a, 1, CMP_CODEC_ZSTD, 1, &q), FL_OK);
        if (p2 == NULL)
            p2 = q;
        assert_ptr_equal(q, p2);
    }
    assert_ptr_not_equal(p1, p2);
    assert_int_equal(coord_agg_encode_count(a), 2);
    /* an unknown held version is served the cached full model */
    assert_int_equal(coord_model_task_payload(a, 99, CMP_CODEC_ZSTD, 1, &q),
                     FL_OK);
    assert_ptr_equal(q, p1);
    /* another codec is another encoding */
    assert_int_equal(coord_model_task_payload(a, 0, CMP_CODEC_NONE, 0, &q),
                     FL_OK);
    assert_ptr_not_equal(q, p1);
    assert_int_equal(coord_agg_encode_count(a), 3);
    assert_int_equal(coord_model_task_payload(a, 0, (enum cmp_codec)9, 0, &q),
                     FL_ERR_UNSUPPORTED);
    assert_null(q);

    /* after a commit the cache is refreshed once per base again */
    const uint32_t i0 = 3;
    const float v0 = 1.0f;
    assert_int_equal(coord_agg_add(a, &i0, &v0, 1, 1.0), FL_OK);
    assert_int_equal(coord_agg_commit(a), FL_OK);
    for (int dev = 0; dev < 10; dev++) {
        assert_int_equal(
            coord_model_task_payload(a, 1, CMP_CODEC_ZSTD, 1, &q), FL_OK);
        assert_int_equal(q->version, 2);
        assert_true(q->kind == COORD_PAYLOAD_XOR);
        assert_int_equal(q->base_version, 1);
    }
    assert_int_equal(coord_agg_encode_count(a), 4);
    coord_agg_destroy(&a);
    free(w0);
}

/* Every allocation of coord_agg_new and the first payload may fail:
 * errors come back as FL_ERR_NOMEM and nothing leaks (ASan checks). */
static void test_allocation_failures(void **state)
{
    (void)state;
    const size_t dim = 100;
    float w0[100];
    for (size_t i = 0; i < dim; i++)
        w0[i] = (float)i * 0.01f;
    const struct coord_agg_config cfg = {dim, 1.0, 0.5, 3};
    int ok = 0;
    for (long n = 0; n < 200 && !ok; n++) {
        struct coord_agg *a = NULL;
        fl_alloc_fail_after(n);
        const enum fl_err rc = coord_agg_new(&cfg, w0, &a);
        fl_alloc_fail_reset();
        if (rc == FL_OK) {
            ok = 1;
            coord_agg_destroy(&a);
        } else {
            assert_int_equal(rc, FL_ERR_NOMEM);
            assert_null(a);
        }
    }
    assert_true(ok);

    ok = 0;
    for (long n = 0; n < 200 && !ok; n++) {
        struct coord_agg *a = NULL;
        const struct coord_payload *p = NULL;
        assert_int_equal(coord_agg_new(&cfg, w0, &a), FL_OK);
        fl_alloc_fail_after(n);
        const enum fl_err rc =
            coord_model_task_payload(a, 0, CMP_CODEC_ZSTD, 1, &p);
        fl_alloc_fail_reset();
        if (rc == FL_OK) {
            ok = 1;
            assert_non_null(p);
        } else {
            assert_null(p);
            /* a failure is not cached: the next call works */
            assert_int_equal(
                coord_model_task_payload(a, 0, CMP_CODEC_ZSTD, 1, &p), FL_OK);
        }
        coord_agg_destroy(&a);
    }
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weighted_mean_matches_dense_reference),
        cmocka_unit_test(test_server_momentum),
        cmocka_unit_test(test_nonfinite_candidate_rejected),
        cmocka_unit_test(test_index_range_every_position),
        cmocka_unit_test(test_add_and_commit_misuse),
        cmocka_unit_test(test_version_cache_deltas_decode_exactly),
        cmocka_unit_test(test_payload_shared_across_devices),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
