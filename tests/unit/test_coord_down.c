/*
 * Unit tests for coordinator/coord_down: the lossy downlink with
 * server-side error feedback.
 *
 * Device copies are advanced with the worker's own code (wrk_model_apply /
 * wrk_model_apply_delta on the payload bytes), so "every device holds the
 * broadcast model bit for bit" is checked across the two sides. Also: the
 * residual w_s - w_b is exactly the mass not yet sent, top-k picks the
 * largest differences, the residual drains when the server model stops
 * moving, payload kinds and sharing, errors and allocation failures, and
 * the engine end to end (Task fields, updates aggregated into w_s, devices
 * that fall behind, --save-broadcast-model, the momentum factor).
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
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "coordinator/coord_down.h"
#include "coordinator/coord_engine.h"
#include "model/mdl_file.h"
#include "proto/pb_msg.h"
#include "tests/unit/coord_harness.h"
#include "worker/wrk_model.h"

/* ------------------------------------------------------------ helpers */

static float *random_params(struct fl_rng *r, size_t dim, double scale)
{
    float *p = malloc(dim * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < dim; i++)
        p[i] = (float)(fl_rng_normal(r) * scale);
    return p;
}

static struct coord_down *down_make(size_t dim, double density,
                                    enum cmp_value_coding values,
                                    uint32_t keep, const float *init)
{
    struct coord_down *d = NULL;
    const struct coord_down_config cfg = {dim, density, values, keep};
    assert_int_equal(coord_down_new(&cfg, init, 1, &d), FL_OK);
    assert_non_null(d);
    return d;
}

/* A device: what the worker holds. */
struct device {
    struct wrk_held_model m;
    struct cmp_ctx *ctx;
};

static void device_init(struct device *dv, size_t dim)
{
    memset(dv, 0, sizeof(*dv));
    dv->m.dim = dim;
    dv->m.w = calloc(dim, sizeof(float));
    dv->ctx = cmp_ctx_new();
    assert_non_null(dv->m.w);
    assert_non_null(dv->ctx);
}

static void device_release(struct device *dv)
{
    free(dv->m.w);
    cmp_ctx_destroy(&dv->ctx);
}

/* Apply a payload the way the worker applies a Task; returns the kind. */
static enum coord_payload_kind device_apply(struct device *dv,
                                         const struct coord_payload *p)
{
    struct pb_tensor t;
    wrk_pb_from_meta(&p->meta, p->data, p->len, &t);
    if (p->kind == COORD_PAYLOAD_SPARSE) {
        assert_int_equal(wrk_model_apply_delta(dv->ctx, &dv->m, &t,
                                               p->base_version, p->version),
                         FL_OK);
        return p->kind;
    }
    t.has_base_version = p->kind == COORD_PAYLOAD_XOR;
    t.base_version = p->base_version;
    assert_int_equal(wrk_model_apply(dv->ctx, &dv->m, &t, p->version),
                     FL_OK);
    return p->kind;
}

/* Fetch the payload for what dv holds and apply it; dv then holds w_b. */
static enum coord_payload_kind device_sync(struct coord_down *d,
                                        struct device *dv,
                                        enum cmp_codec codec)
{
    const struct coord_payload *p = NULL;
    const uint64_t held = dv->m.have ? dv->m.version : 0;
    assert_int_equal(coord_down_task_payload(d, held, codec, 1, &p), FL_OK);
    assert_int_equal(p->version, coord_down_version(d));
    const enum coord_payload_kind kind = device_apply(dv, p);
    assert_int_equal(dv->m.version, coord_down_version(d));
    assert_memory_equal(dv->m.w, coord_down_params(d),
                        dv->m.dim * sizeof(float));
    return kind;
}

/* ------------------------------------------------------------- tables */

static void test_k_table(void **state)
{
    static const struct {
        double density;
        size_t dim;
        size_t k;
    } cases[] = {
        {1.0, 1000, 1000},   {0.1, 1000, 100},     {0.001, 1000, 1},
        {0.0001, 1000, 1},   {0.15, 10, 2},        {0.5, 3, 2},
        {0.1f, 1000, 100},   {0.01, 235146, 2352}, {1e-9, 5, 1},
        {0.999, 7, 7},       {0.3, 10, 3},         {1.0, 1, 1},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        const size_t k = coord_down_k(cases[i].density, cases[i].dim);
        if (k != cases[i].k)
            fail_msg("density %g dim %zu: k %zu, want %zu",
                     cases[i].density, cases[i].dim, k, cases[i].k);
    }
}

static void test_bad_config(void **state)
{
    static const struct {
        size_t dim;
        double density;
        int values;
        uint32_t keep;
    } bad[] = {
        {0, 0.1, CMP_VALUE_FP16, 2},   {10, 0.0, CMP_VALUE_FP16, 2},
        {10, 1.5, CMP_VALUE_FP16, 2},  {10, NAN, CMP_VALUE_FP16, 2},
        {10, 0.1, 0, 2},               {10, 0.1, 9, 2},
        {10, 0.1, CMP_VALUE_FP16, 0},  {10, 0.1, CMP_VALUE_FP16, 5000},
    };
    float init[10] = {0};
    struct coord_down *d = NULL;
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(bad); i++) {
        const struct coord_down_config cfg = {
            bad[i].dim, bad[i].density, (enum cmp_value_coding)bad[i].values,
            bad[i].keep};
        assert_int_equal(coord_down_new(&cfg, init, 1, &d),
                         FL_ERR_INVALID_ARG);
        assert_null(d);
    }
    const struct coord_down_config ok = {10, 0.1, CMP_VALUE_INT8, 1};
    assert_int_equal(coord_down_new(&ok, init, 0, &d), FL_ERR_INVALID_ARG);
    init[3] = INFINITY;
    assert_int_equal(coord_down_new(&ok, init, 1, &d), FL_ERR_INVALID_ARG);
    init[3] = 0;
    assert_int_equal(coord_down_new(&ok, init, 1, &d), FL_OK);
    coord_down_destroy(&d);
    assert_null(d);
    coord_down_destroy(&d); /* a pointer to NULL is fine */
    coord_down_destroy(NULL);
}

/* ------------------------------------------- server-side error feedback */

struct ef_case {
    enum cmp_value_coding values;
    double density;
    enum cmp_codec codec;
};

/* R rounds of w_s += g; after each, w_b advances and the device copies
 * follow. Checks bit-exact copies, the residual as unsent mass, top-k. */
static void run_ef_case(const struct ef_case *c, uint64_t seed)
{
    enum { DIM = 777, ROUNDS = 24, NDEV = 3 };
    struct fl_rng r;
    struct device dev[NDEV];
    double sent[DIM], target[DIM];
    uint8_t touched[DIM];
    fl_rng_seed(&r, seed);
    float *ws = random_params(&r, DIM, 1.0);
    float *init = malloc(DIM * sizeof(float));
    float *diff = malloc(DIM * sizeof(float));
    struct cmp_ctx *ctx = cmp_ctx_new();
    assert_non_null(init);
    assert_non_null(diff);
    assert_non_null(ctx);
    memcpy(init, ws, DIM * sizeof(float));
    struct coord_down *d = down_make(DIM, c->density, c->values, 3, ws);
    for (int i = 0; i < NDEV; i++) {
        device_init(&dev[i], DIM);
        assert_int_equal(device_sync(d, &dev[i], c->codec), COORD_PAYLOAD_FULL);
    }
    for (size_t i = 0; i < DIM; i++) {
        sent[i] = 0;
        target[i] = ws[i];
        touched[i] = 0;
    }
    const size_t k = coord_down_k(c->density, DIM);
    for (uint64_t round = 1; round <= ROUNDS; round++) {
        const uint64_t v = round + 1;
        const float *wb = coord_down_params(d);
        /* the server model moves (as coord_agg_commit would move it) */
        for (size_t i = 0; i < DIM; i++) {
            const float g = (float)(fl_rng_normal(&r) * 0.05);
            ws[i] += g;
            target[i] += g;
            diff[i] = ws[i] - wb[i];
        }
        assert_int_equal(coord_down_advance(d, ws, v), FL_OK);
        assert_int_equal(coord_down_version(d), v);
        /* device 0 every round (sparse), device 1 every other round
         * (behind by one: XOR against a kept version), device 2 only at
         * the end (full model) */
        assert_int_equal(device_sync(d, &dev[0], c->codec),
                         COORD_PAYLOAD_SPARSE);
        if (round % 2 == 0)
            assert_int_equal(device_sync(d, &dev[1], c->codec),
                             COORD_PAYLOAD_XOR);

        /* the delta as bytes: top-k of |w_s - w_b|, quantized */
        const struct coord_payload *p = NULL;
        const uint32_t *idx = NULL;
        const float *val = NULL;
        size_t n = 0;
        const struct cmp_limits lim = {DIM, 0, 0};
        assert_int_equal(coord_down_task_payload(d, v - 1, CMP_CODEC_NONE,
                                                 0, &p),
                         FL_OK);
        assert_int_equal(p->kind, COORD_PAYLOAD_SPARSE);
        assert_int_equal(p->meta.value_coding, c->values);
        assert_int_equal(cmp_sparse_decode(ctx, &p->meta, p->data, p->len,
                                           &lim, &idx, &val, &n),
                         FL_OK);
        assert_int_equal(n, k);
        float smallest_sent = INFINITY, largest_unsent = 0;
        for (size_t j = 0, i = 0; i < DIM; i++) {
            if (j < n && idx[j] == i) {
                smallest_sent = fminf(smallest_sent, fabsf(diff[i]));
                sent[i] += val[j];
                touched[i] = 1;
                j++;
            } else {
                largest_unsent = fmaxf(largest_unsent, fabsf(diff[i]));
            }
        }
        assert_true(smallest_sent >= largest_unsent);
    }
    assert_int_equal(device_sync(d, &dev[2], c->codec), COORD_PAYLOAD_FULL);
    const float *wb = coord_down_params(d);
    double res2 = 0;
    for (size_t i = 0; i < DIM; i++) {
        /* w_s - w_b is what was not sent: (init + sum g) - (init + sum
         * delta), to float rounding */
        const double unsent = target[i] - (init[i] + sent[i]);
        const double got = (double)ws[i] - (double)wb[i];
        const double tol = 1e-5 * (1 + fabs(target[i]));
        if (fabs(got - unsent) > tol)
            fail_msg("%s density %g: entry %zu: w_s - w_b = %.9g, unsent "
                     "mass %.9g", cmp_value_coding_name(c->values),
                     c->density, i, got, unsent);
        if (!touched[i]) /* never sent: w_b is the initial model exactly */
            assert_memory_equal(&wb[i], &init[i], sizeof(float));
        res2 += got * got;
    }
    struct coord_down_stats st;
    coord_down_get_stats(d, &st);
    assert_int_equal(st.k, k);
    assert_true(fabs(st.residual_norm - sqrt(res2)) <=
                1e-4 * (1 + sqrt(res2)));
    for (int i = 0; i < NDEV; i++)
        device_release(&dev[i]);
    coord_down_destroy(&d);
    cmp_ctx_destroy(&ctx);
    free(ws);
    free(init);
    free(diff);
}

static void test_ef_every_coding(void **state)
{
    static const struct ef_case cases[] = {
        {CMP_VALUE_FP16, 0.1, CMP_CODEC_ZSTD},
        {CMP_VALUE_FP16, 0.01, CMP_CODEC_LZ4},
        {CMP_VALUE_BF16, 0.05, CMP_CODEC_NONE},
        {CMP_VALUE_INT8, 0.1, CMP_CODEC_ZSTD},
        {CMP_VALUE_INT8, 0.5, CMP_CODEC_NONE},
        {CMP_VALUE_FP32, 0.2, CMP_CODEC_ZSTD},
        {CMP_VALUE_FP16, 1.0, CMP_CODEC_ZSTD},  /* all entries, quantized */
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++)
        run_ef_case(&cases[i], 1000 + i);
}

/* When the server model stops moving, the residual drains: every entry
 * is sent in turn and the quantization error is sent again, so w_b
 * converges to w_s. Without error feedback it would stay put. */
static void test_residual_drains(void **state)
{
    enum { DIM = 500 };
    static const enum cmp_value_coding codings[] = {
        CMP_VALUE_FP32, CMP_VALUE_FP16, CMP_VALUE_BF16, CMP_VALUE_INT8};
    struct fl_rng r;
    struct coord_down_stats st;
    (void)state;
    for (size_t c = 0; c < FL_ARRAY_LEN(codings); c++) {
        fl_rng_seed(&r, 77 + c);
        float *w0 = random_params(&r, DIM, 1.0);
        float *ws = malloc(DIM * sizeof(float));
        assert_non_null(ws);
        for (size_t i = 0; i < DIM; i++)
            ws[i] = w0[i] + (float)fl_rng_normal(&r);
        struct coord_down *d = down_make(DIM, 0.1, codings[c], 1, w0);
        uint64_t v = 1;
        assert_int_equal(coord_down_advance(d, ws, ++v), FL_OK);
        coord_down_get_stats(d, &st);
        const double first = st.residual_norm;
        assert_true(first > 1);
        for (int round = 0; round < 60; round++)
            assert_int_equal(coord_down_advance(d, ws, ++v), FL_OK);
        coord_down_get_stats(d, &st);
        if (!(st.residual_norm < 1e-4 * first))
            fail_msg("%s: residual %g after 60 rounds (first %g)",
                     cmp_value_coding_name(codings[c]), st.residual_norm,
                     first);
        double max = 0;
        for (size_t i = 0; i < DIM; i++)
            max = fmax(max, fabs((double)ws[i] - coord_down_params(d)[i]));
        assert_true(max < 1e-4);
        coord_down_destroy(&d);
        free(w0);
        free(ws);
    }
}

/* ---------------------------------------------------------- payloads */

static void test_payload_kinds_and_sharing(void **state)
{
    enum { DIM = 300 };
    struct fl_rng r;
    const struct coord_payload *p = NULL, *q = NULL;
    (void)state;
    fl_rng_seed(&r, 5);
    float *w = random_params(&r, DIM, 1.0);
    struct coord_down *d = down_make(DIM, 0.1, CMP_VALUE_FP16, 2, w);

    /* version 1 only: the full model, or XOR against itself */
    assert_false(coord_down_knows(d, 0));
    assert_true(coord_down_knows(d, 1));
    assert_false(coord_down_knows(d, 2));
    assert_int_equal(coord_down_task_payload(d, 0, CMP_CODEC_ZSTD, 1, &p),
                     FL_OK);
    assert_int_equal(p->kind, COORD_PAYLOAD_FULL);
    assert_int_equal(p->meta.k, DIM);
    assert_int_equal(coord_down_task_payload(d, 1, CMP_CODEC_ZSTD, 1, &p),
                     FL_OK);
    assert_int_equal(p->kind, COORD_PAYLOAD_XOR);
    assert_int_equal(p->base_version, 1);
    assert_int_equal(coord_down_task_payload(d, 9, CMP_CODEC_ZSTD, 1, &p),
                     FL_OK);
    assert_int_equal(p->kind, COORD_PAYLOAD_FULL);

    for (size_t i = 0; i < DIM; i++)
        w[i] += (float)fl_rng_normal(&r);
    assert_int_equal(coord_down_advance(d, w, 2), FL_OK);
    const uint64_t before = coord_down_encode_count(d);
    assert_int_equal(coord_down_task_payload(d, 1, CMP_CODEC_ZSTD, 1, &p),
                     FL_OK);
    assert_int_equal(p->kind, COORD_PAYLOAD_SPARSE);
    assert_int_equal(p->base_version, 1);
    assert_int_equal(p->version, 2);
    assert_int_equal(p->meta.k, 30);
    assert_int_equal(p->meta.value_coding, CMP_VALUE_FP16);
    assert_int_equal(p->meta.codec, CMP_CODEC_ZSTD);
    /* the same request is served from the cache; a level out of range is
     * clamped and so is the same entry as the clamped level */
    assert_int_equal(coord_down_task_payload(d, 1, CMP_CODEC_ZSTD, 1, &q),
                     FL_OK);
    assert_ptr_equal(p, q);
    assert_int_equal(coord_down_task_payload(d, 1, CMP_CODEC_ZSTD, -7, &q),
                     FL_OK);
    assert_ptr_equal(p, q);
    assert_int_equal(coord_down_encode_count(d), before + 1);
    /* another codec: another encoding of the same delta */
    assert_int_equal(coord_down_task_payload(d, 1, CMP_CODEC_NONE, 0, &q),
                     FL_OK);
    assert_int_equal(q->kind, COORD_PAYLOAD_SPARSE);
    assert_int_equal(q->meta.codec, CMP_CODEC_NONE);
    assert_int_equal(coord_down_encode_count(d), before + 2);
    /* the current version: XOR (all zero patterns, small) */
    assert_int_equal(coord_down_task_payload(d, 2, CMP_CODEC_ZSTD, 1, &q),
                     FL_OK);
    assert_int_equal(q->kind, COORD_PAYLOAD_XOR);
    assert_true(q->len < DIM);
    assert_int_equal(coord_down_task_payload(d, 0, CMP_CODEC_LZ4, 0, &q),
                     FL_OK);
    assert_int_equal(q->kind, COORD_PAYLOAD_FULL);
    assert_int_equal(coord_down_task_payload(d, 1, (enum cmp_codec)9, 0, &q),
                     FL_ERR_UNSUPPORTED);
    assert_null(q);

    /* keep 2: after two more versions, version 1 is gone and so is the
     * delta from it */
    assert_int_equal(coord_down_advance(d, w, 3), FL_OK);
    assert_true(coord_down_knows(d, 2));
    assert_false(coord_down_knows(d, 1));
    assert_null(coord_down_version_params(d, 1));
    assert_non_null(coord_down_version_params(d, 2));
    assert_int_equal(coord_down_task_payload(d, 1, CMP_CODEC_ZSTD, 1, &q),
                     FL_OK);
    assert_int_equal(q->kind, COORD_PAYLOAD_FULL);
    coord_down_destroy(&d);
    free(w);
}

static void test_errors_leave_state(void **state)
{
    enum { DIM = 64 };
    float w[DIM], far[DIM], copy[DIM];
    struct coord_down_stats st;
    const struct coord_payload *p = NULL;
    (void)state;
    for (size_t i = 0; i < DIM; i++) {
        w[i] = 3.0e38f;
        far[i] = i == 7 ? -3.0e38f : 3.0e38f;
    }
    struct coord_down *d = down_make(DIM, 0.5, CMP_VALUE_FP32, 1, w);
    memcpy(copy, coord_down_params(d), sizeof(copy));
    /* versions only go up */
    assert_int_equal(coord_down_advance(d, w, 1), FL_ERR_INVALID_ARG);
    assert_int_equal(coord_down_reset(d, w, 1), FL_ERR_INVALID_ARG);
    /* w_s - w_b overflows: the model does not change, even with one kept
     * slot, and no sparse delta is left over */
    assert_int_not_equal(coord_down_advance(d, far, 2), FL_OK);
    assert_int_equal(coord_down_version(d), 1);
    assert_memory_equal(coord_down_params(d), copy, sizeof(copy));
    assert_int_equal(coord_down_task_payload(d, 1, CMP_CODEC_NONE, 0, &p),
                     FL_OK);
    assert_int_equal(p->kind, COORD_PAYLOAD_XOR);
    /* catch up losslessly: no delta, the full model */
    assert_int_equal(coord_down_reset(d, far, 2), FL_OK);
    assert_int_equal(coord_down_version(d), 2);
    assert_memory_equal(coord_down_params(d), far, sizeof(far));
    assert_false(coord_down_knows(d, 1));
    coord_down_get_stats(d, &st);
    assert_int_equal(st.k, 0);
    assert_int_equal(coord_down_task_payload(d, 1, CMP_CODEC_ZSTD, 1, &p),
                     FL_OK);
    assert_int_equal(p->kind, COORD_PAYLOAD_FULL);
    far[3] = NAN;
    assert_int_equal(coord_down_reset(d, far, 3), FL_ERR_INVALID_ARG);
    coord_down_destroy(&d);

    /* a failed advance after a good one: the old delta is not served from
     * the buffers the failed one overwrote */
    for (size_t i = 0; i < DIM; i++)
        copy[i] = i == 9 ? 3.0e38f : (float)i;
    d = down_make(DIM, 0.5, CMP_VALUE_FP32, 2, copy);
    copy[20] += 5;
    assert_int_equal(coord_down_advance(d, copy, 2), FL_OK);
    assert_int_equal(coord_down_task_payload(d, 1, CMP_CODEC_NONE, 0, &p),
                     FL_OK);
    assert_int_equal(p->kind, COORD_PAYLOAD_SPARSE);
    copy[9] = -3.0e38f; /* w_s - w_b = -inf */
    assert_int_not_equal(coord_down_advance(d, copy, 3), FL_OK);
    assert_int_equal(coord_down_version(d), 2);
    assert_true(coord_down_knows(d, 1)); /* kept: XOR, not the delta */
    assert_int_equal(coord_down_task_payload(d, 1, CMP_CODEC_LZ4, 0, &p),
                     FL_OK);
    assert_int_equal(p->kind, COORD_PAYLOAD_XOR);
    coord_down_destroy(&d);
}

/* Every allocation of new, advance and payload fails in turn: an error
 * comes back, nothing leaks (ASan), and after a failed advance the state
 * is as before. */
static void test_alloc_torture(void **state)
{
    enum { DIM = 200 };
    struct fl_rng r;
    const struct coord_down_config cfg = {DIM, 0.1, CMP_VALUE_INT8, 2};
    (void)state;
    fl_rng_seed(&r, 9);
    float *w = random_params(&r, DIM, 1.0);
    float *w2 = random_params(&r, DIM, 1.0);
    struct coord_down *ref = down_make(DIM, 0.1, CMP_VALUE_INT8, 2, w);
    assert_int_equal(coord_down_advance(ref, w2, 2), FL_OK);
    int failures = 0;
    for (long n = 0; n < 200; n++) {
        struct coord_down *d = NULL;
        const struct coord_payload *p = NULL;
        enum fl_err rc;
        fl_alloc_fail_after(n);
        rc = coord_down_new(&cfg, w, 1, &d);
        if (rc == FL_OK)
            rc = coord_down_advance(d, w2, 2);
        if (rc == FL_OK)
            rc = coord_down_task_payload(d, 1, CMP_CODEC_ZSTD, 1, &p);
        if (rc == FL_OK)
            rc = coord_down_task_payload(d, 0, CMP_CODEC_LZ4, 0, &p);
        fl_alloc_fail_reset();
        if (rc == FL_OK) {
            coord_down_destroy(&d);
            assert_true(failures > 5);
            break;
        }
        failures++;
        assert_int_equal(rc, FL_ERR_NOMEM);
        if (d != NULL) {
            /* the model is version 1 or 2, never half of one */
            const uint64_t v = coord_down_version(d);
            assert_true(v == 1 || v == 2);
            assert_memory_equal(coord_down_params(d),
                                v == 1 ? w : coord_down_params(ref),
                                DIM * sizeof(float));
        }
        coord_down_destroy(&d);
    }
    assert_true(failures > 5);
    coord_down_destroy(&ref);
    free(w);
    free(w2);
}

/* --------------------------------------------- the worker's side */

/* wrk_model_apply_delta refuses what it cannot apply exactly and then
 * leaves the held model as it was. */
static void test_worker_delta_errors(void **state)
{
    enum { DIM = 100 };
    struct fl_rng r;
    struct device dv;
    const struct coord_payload *p = NULL;
    float before[DIM];
    struct pb_tensor t;
    (void)state;
    fl_rng_seed(&r, 11);
    float *w = random_params(&r, DIM, 1.0);
    struct coord_down *d = down_make(DIM, 0.2, CMP_VALUE_BF16, 2, w);
    device_init(&dv, DIM);
    assert_int_equal(device_sync(d, &dv, CMP_CODEC_NONE), COORD_PAYLOAD_FULL);
    w[5] = 1.0e38f; /* sent; a held value near FLT_MAX then overflows */
    assert_int_equal(coord_down_advance(d, w, 2), FL_OK);
    assert_int_equal(coord_down_task_payload(d, 1, CMP_CODEC_NONE, 0, &p),
                     FL_OK);
    assert_int_equal(p->kind, COORD_PAYLOAD_SPARSE);
    wrk_pb_from_meta(&p->meta, p->data, p->len, &t);
    memcpy(before, dv.m.w, sizeof(before));

    /* {tensor change, base, expected}: each leaves w and version alone */
    uint8_t bad[4096];
    assert_true(p->len <= sizeof(bad));
    struct pb_tensor bt = t;
    assert_int_equal(wrk_model_apply_delta(dv.ctx, &dv.m, &t, 2, 3),
                     FL_ERR_NOT_FOUND);
    bt.dimension = DIM + 1;
    assert_int_equal(wrk_model_apply_delta(dv.ctx, &dv.m, &bt, 1, 2),
                     FL_ERR_DIMENSION);
    bt = t;
    memcpy(bad, p->data, p->len);
    bad[p->len - 1] ^= 0x40; /* a value byte: the checksum catches it */
    bt.payload = bad;
    assert_int_equal(wrk_model_apply_delta(dv.ctx, &dv.m, &bt, 1, 2),
                     FL_ERR_CHECKSUM);
    bt = t;
    bt.k = t.k + 1;
    assert_int_not_equal(wrk_model_apply_delta(dv.ctx, &dv.m, &bt, 1, 2),
                         FL_OK);
    dv.m.w[5] = 3.0e38f; /* + delta overflows */
    float keep5 = dv.m.w[5];
    assert_int_equal(wrk_model_apply_delta(dv.ctx, &dv.m, &t, 1, 2),
                     FL_ERR_NONFINITE);
    assert_true(dv.m.w[5] == keep5);
    dv.m.w[5] = before[5];
    assert_memory_equal(dv.m.w, before, sizeof(before));
    assert_int_equal(dv.m.version, 1);
    dv.m.have = false;
    assert_int_equal(wrk_model_apply_delta(dv.ctx, &dv.m, &t, 1, 2),
                     FL_ERR_NOT_FOUND);
    dv.m.have = true;
    /* and the good one applies */
    assert_int_equal(wrk_model_apply_delta(dv.ctx, &dv.m, &t, 1, 2), FL_OK);
    assert_memory_equal(dv.m.w, coord_down_params(d), sizeof(before));
    device_release(&dv);
    coord_down_destroy(&d);
    free(w);
}

/* --------------------------------------------------------- the flags */

static void test_config_flags(void **state)
{
    static const struct {
        const char *args[4];
        enum fl_err rc;
        bool lossy;
    } cases[] = {
        {{NULL}, FL_OK, false},
        {{"--down-density", "1", NULL}, FL_OK, false},
        {{"--down-density", "0.1", NULL}, FL_OK, true},
        {{"--down-values", "fp16", NULL}, FL_OK, true},
        {{"--down-values", "fp32", NULL}, FL_OK, false},
        {{"--down-values", "int8", "--down-density", "1"}, FL_OK, true},
        {{"--down-density", "0", NULL}, FL_ERR_INVALID_ARG, false},
        {{"--down-density", "1.5", NULL}, FL_ERR_INVALID_ARG, false},
        {{"--down-density", "x", NULL}, FL_ERR_INVALID_ARG, false},
        {{"--down-values", "fp64", NULL}, FL_ERR_INVALID_ARG, false},
        {{"--save-broadcast-model", "", NULL}, FL_ERR_INVALID_ARG, false},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        struct coord_config cfg;
        enum coord_action action;
        char err[256] = "";
        char *argv[6] = {(char *)(uintptr_t)"coord"};
        int argc = 1;
        for (int j = 0; j < 4 && cases[i].args[j] != NULL; j++)
            argv[argc++] = (char *)(uintptr_t)cases[i].args[j];
        argv[argc] = NULL;
        coord_config_defaults(&cfg);
        const enum fl_err rc = coord_config_parse(&cfg, argc, argv, &action,
                                                  err, sizeof(err));
        if (rc != cases[i].rc)
            fail_msg("case %zu: %s (%s)", i, fl_err_name(rc), err);
        if (rc == FL_OK)
            assert_int_equal(coord_config_lossy_downlink(&cfg),
                             cases[i].lossy);
        else
            assert_non_null(strstr(err, "down-") != NULL
                                    ? strstr(err, "down-")
                                    : strstr(err, "broadcast"));
        coord_config_release(&cfg);
    }
}

/* ------------------------------------------------- engine end to end */

#define E_DIM 620
#define E_NDEV 4

struct harness {
    struct coord_config cfg;
    struct mdl_layout layout;
    float init[E_DIM];
    struct coord_report *report;
    struct coord_engine *e;
    struct th_outbox ob;       /* ob.dead[rid]: sends to rid fail */
    uint64_t now;
    struct device dev[E_NDEV + 1];
    struct cmp_ctx *ctx;
};

static enum fl_err h_send(void *ctx, const uint8_t *rid, size_t rid_len,
                          uint8_t *buf, size_t len)
{
    struct harness *h = ctx;
    return th_outbox_send(&h->ob, rid, rid_len, buf, len);
}

static void h_layout(struct mdl_layout *l)
{
    memset(l, 0, sizeof(*l));
    l->dim = E_DIM;
    l->ntensors = 2;
    snprintf(l->tensors[0].name, MDL_TENSOR_NAME_MAX, "fc1.weight");
    l->tensors[0].size = 600;
    l->tensors[0].ndim = 2;
    l->tensors[0].shape[0] = 20;
    l->tensors[0].shape[1] = 30;
    snprintf(l->tensors[1].name, MDL_TENSOR_NAME_MAX, "fc1.bias");
    l->tensors[1].offset = 600;
    l->tensors[1].size = 20;
    l->tensors[1].ndim = 1;
    l->tensors[1].shape[0] = 20;
}

static struct harness *h_new(const char *flags)
{
    struct harness *h = calloc(1, sizeof(*h));
    char err[256];
    assert_non_null(h);
    th_config(&h->cfg, flags);
    h_layout(&h->layout);
    struct fl_rng r;
    fl_rng_seed(&r, 3);
    for (int i = 0; i < E_DIM; i++)
        h->init[i] = (float)(fl_rng_normal(&r) * 0.1);
    assert_int_equal(coord_report_open(NULL, &h->report, err, sizeof(err)),
                     FL_OK);
    const struct coord_io io = {.ctx = h, .send = h_send};
    h->e = th_engine(&h->cfg, &h->layout, h->init, &io, h->report, 0x5eed);
    h->ctx = cmp_ctx_new();
    assert_non_null(h->ctx);
    for (int i = 1; i <= E_NDEV; i++)
        device_init(&h->dev[i], E_DIM);
    h->now = 1000000000000ULL;
    coord_engine_start(h->e, h->now);
    return h;
}

static void h_free(struct harness *h)
{
    coord_engine_destroy(&h->e);
    coord_config_release(&h->cfg);
    coord_report_close(&h->report);
    th_outbox_release(&h->ob);
    for (int i = 1; i <= E_NDEV; i++)
        device_release(&h->dev[i]);
    cmp_ctx_destroy(&h->ctx);
    free(h);
}

static void h_feed(struct harness *h, uint8_t rid,
                   const struct pb_envelope *env)
{
    th_feed_env(h->e, rid, NULL, env, h->now);
}

/* The first message of `body` queued for rid, unpacked (caller destroys
 * *msg); NULL when there is none. Messages before it are dropped. */
static const struct pb_envelope *h_take(struct harness *h, uint8_t rid,
                                        enum pb_body body,
                                        struct pb_msg **msg, size_t *len)
{
    return th_outbox_take(&h->ob, rid, body, true, msg, len);
}

static void h_hello(struct harness *h, uint8_t rid)
{
    struct pb_envelope env = {.version = 1, .body = PB_BODY_HELLO};
    struct pb_msg *m = NULL;
    char id[8];
    snprintf(id, sizeof(id), "d%u", rid);
    env.hello.device_id = id;
    env.hello.n_samples = 100;
    env.hello.has_model_version = h->dev[rid].m.have;
    env.hello.model_version = h->dev[rid].m.version;
    h_feed(h, rid, &env);
    assert_non_null(h_take(h, rid, PB_BODY_WELCOME, &m, NULL));
    pb_msg_destroy(&m);
}

/* The device takes its Task as the worker does and checks it now holds
 * the broadcast model; returns the Task's frame size (0: no Task). */
static size_t h_task(struct harness *h, uint8_t rid, uint64_t *round,
                     bool *sparse)
{
    struct pb_msg *m = NULL;
    size_t len = 0;
    struct device *dv = &h->dev[rid];
    const struct pb_envelope *env = h_take(h, rid, PB_BODY_TASK, &m, &len);
    if (env == NULL)
        return 0;
    const struct pb_task *t = &env->task;
    const struct coord_down *d = coord_engine_down(h->e);
    assert_non_null(d);
    *round = t->round;
    *sparse = t->has_model_delta;
    assert_true(t->compress.momentum_correction);
    assert_true(t->compress.momentum_factor == 0.8f);
    if (t->has_model_delta)
        assert_int_equal(wrk_model_apply_delta(dv->ctx, &dv->m,
                                               &t->model_delta,
                                               t->model_delta_base,
                                               t->model_version),
                         FL_OK);
    else
        assert_int_equal(wrk_model_apply(dv->ctx, &dv->m, &t->model,
                                         t->model_version),
                         FL_OK);
    assert_int_equal(dv->m.version, coord_down_version(d));
    assert_memory_equal(dv->m.w, coord_down_params(d),
                        E_DIM * sizeof(float));
    pb_msg_destroy(&m);
    return len;
}

/* An update of k random entries (fp32), added to acc with its weight. */
static void h_update(struct harness *h, uint8_t rid, uint64_t round,
                     struct fl_rng *r, float *acc, double *weight)
{
    enum { K = 40 };
    uint32_t idx[K];
    float val[K];
    const uint8_t *payload = NULL;
    size_t plen = 0;
    struct cmp_meta meta;
    const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP32,
                                 CMP_CODEC_NONE, 0};
    const uint32_t step = E_DIM / K;
    for (uint32_t i = 0; i < K; i++) {
        idx[i] = i * step + (uint32_t)fl_rng_below(r, step);
        val[i] = (float)(fl_rng_normal(r) * 0.1);
    }
    assert_int_equal(cmp_sparse_encode(h->ctx, E_DIM, idx, val, K, &p,
                                       &meta, &payload, &plen),
                     FL_OK);
    /* equal weights, so that no device carries much of a round */
    cmp_scatter_add(acc, idx, val, K, 100.0f);
    *weight += 100.0;
    struct pb_envelope env = {.version = 1, .body = PB_BODY_UPDATE};
    env.update.round = round;
    env.update.n_samples = 100;
    wrk_pb_from_meta(&meta, payload, plen, &env.update.delta);
    h_feed(h, rid, &env);
}

static void test_engine_lossy_downlink(void **state)
{
    enum { ROUNDS = 6, LATE = E_NDEV };
    char path_b[64], path_w[64], flags[512];
    struct fl_rng r;
    float ws[E_DIM];
    size_t bytes[2] = {0, 0}, count[2] = {0, 0}; /* full, sparse */
    (void)state;
    snprintf(path_b, sizeof(path_b), "/tmp/test_coord_down.%ld.b",
             (long)getpid());
    snprintf(path_w, sizeof(path_w), "/tmp/test_coord_down.%ld.w",
             (long)getpid());
    snprintf(flags, sizeof(flags),
             "--min-devices %d --rounds %d --quorum 0.5 --round-timeout 10 "
             "--down-density 0.05 --down-values fp16 --keep-versions 2 "
             "--density 0.1 --momentum-correction=0.8 "
             "--save-broadcast-model %s", E_NDEV, ROUNDS, path_b);
    struct harness *h = h_new(flags);
    fl_rng_seed(&r, 31);
    memcpy(ws, h->init, sizeof(ws));
    for (uint8_t i = 1; i <= E_NDEV; i++)
        h_hello(h, i);
    for (int round = 1; round <= ROUNDS; round++) {
        float acc[E_DIM] = {0};
        double weight = 0;
        coord_engine_tick(h->e, h->now); /* opens the round if waiting */
        for (uint8_t i = 1; i <= E_NDEV; i++) {
            uint64_t t_round = 0;
            bool sparse = false;
            const size_t len = h_task(h, i, &t_round, &sparse);
            if (i == LATE && round == 3) { /* unreachable in round 3 */
                assert_int_equal(len, 0);
                continue;
            }
            assert_true(len > 0);
            assert_int_equal(t_round, round);
            /* the first Task, and the one after missing round 3 (the
             * version held is no longer kept): the full model; otherwise
             * the sparse delta */
            const bool want_full = round == 1 || (i == LATE && round == 4);
            assert_int_equal(sparse, !want_full);
            bytes[sparse] += len;
            count[sparse]++;
            h_update(h, i, (uint64_t)round, &r, acc, &weight);
        }
        /* the closing tick opens the next round at once: device LATE's
         * Task of round 3 cannot be sent; it says Hello again after it */
        h->ob.dead[LATE] = round == 2;
        coord_engine_tick(h->e, h->now);
        if (round == 3)
            h_hello(h, LATE);
        assert_int_equal(coord_engine_round(h->e),
                         round < ROUNDS ? round + 1 : ROUNDS);
        /* updates went into the server model: w_s += mean(u), not
         * w_b + mean(u) */
        const float inv = (float)(1.0 / weight);
        for (size_t j = 0; j < E_DIM; j++)
            ws[j] = ws[j] + 1.0f * (acc[j] * inv);
        const float *got = coord_agg_params(coord_engine_agg(h->e));
        for (size_t j = 0; j < E_DIM; j++)
            assert_true(fabsf(got[j] - ws[j]) <= 1e-5f);
    }
    assert_int_equal(coord_engine_status(h->e), COORD_DONE);
    assert_int_equal(count[0], E_NDEV + 1);
    assert_int_equal(count[1], E_NDEV * ROUNDS - 1 - (E_NDEV + 1));
    /* the downlink saved bytes: 5% of the entries in fp16 vs all in fp32 */
    assert_true(bytes[1] / count[1] * 4 < bytes[0] / count[0]);
    /* the residual is real: the server and broadcast models differ */
    const struct coord_down *d = coord_engine_down(h->e);
    assert_true(memcmp(coord_down_params(d),
                       coord_agg_params(coord_engine_agg(h->e)),
                       E_DIM * sizeof(float)) != 0);
    /* --save-broadcast-model wrote what the devices hold (the version of
     * the last Task), byte for byte what a worker's --save-model writes */
    const struct device *dv = &h->dev[1];
    assert_int_equal(dv->m.version, ROUNDS);
    assert_int_equal(coord_down_version(d), ROUNDS + 1);
    assert_int_equal(mdl_file_save(path_w, &h->layout, dv->m.w,
                                   dv->m.version - 1),
                     FL_OK);
    FILE *fb = fopen(path_b, "rb"), *fw = fopen(path_w, "rb");
    assert_non_null(fb);
    assert_non_null(fw);
    static uint8_t bb[8192], bw[8192];
    const size_t nb = fread(bb, 1, sizeof(bb), fb);
    const size_t nw = fread(bw, 1, sizeof(bw), fw);
    fclose(fb);
    fclose(fw);
    assert_true(nb > E_DIM * 4);
    assert_int_equal(nb, nw);
    assert_memory_equal(bb, bw, nb);
    unlink(path_b);
    unlink(path_w);
    h_free(h);
}

/* A worker that does not know model_delta applies the placeholder model:
 * it fails to decode, so the worker holds nothing, says Hello without a
 * version and is sent the full model. It never trains from a wrong one. */
static void test_engine_old_worker(void **state)
{
    struct pb_msg *m = NULL;
    struct fl_rng r;
    float acc[E_DIM] = {0};
    double weight = 0;
    uint64_t round = 0;
    bool sparse = false;
    (void)state;
    struct harness *h = h_new("--min-devices 1 --rounds 3 --density 0.1 "
                              "--down-density 0.1 "
                              "--momentum-correction=0.8");
    fl_rng_seed(&r, 8);
    h_hello(h, 1);
    coord_engine_tick(h->e, h->now);
    assert_true(h_task(h, 1, &round, &sparse) > 0);
    assert_false(sparse);
    h_update(h, 1, 1, &r, acc, &weight);
    coord_engine_tick(h->e, h->now); /* round 2 opens: a sparse delta */
    const struct pb_envelope *env = h_take(h, 1, PB_BODY_TASK, &m, NULL);
    assert_non_null(env);
    assert_true(env->task.has_model_delta);
    struct device *dv = &h->dev[1];
    float before[E_DIM];
    memcpy(before, dv->m.w, sizeof(before));
    assert_int_not_equal(wrk_model_apply(dv->ctx, &dv->m, &env->task.model,
                                         env->task.model_version),
                         FL_OK);
    assert_memory_equal(dv->m.w, before, sizeof(before));
    assert_int_equal(dv->m.version, 1);
    pb_msg_destroy(&m);
    dv->m.have = false; /* what the worker does on a model it cannot use */
    h_hello(h, 1);
    assert_true(h_task(h, 1, &round, &sparse) > 0); /* the Task again */
    assert_int_equal(round, 2);
    assert_false(sparse);
    h_free(h);
}

/* Lossless (the default): no broadcast model, no sparse delta, and the
 * momentum factor is 0 when momentum correction is off. */
static void test_engine_lossless_default(void **state)
{
    struct pb_msg *m = NULL;
    (void)state;
    struct harness *h = h_new("--min-devices 1 --rounds 1");
    assert_null(coord_engine_down(h->e));
    h_hello(h, 1);
    coord_engine_tick(h->e, h->now);
    const struct pb_envelope *env = h_take(h, 1, PB_BODY_TASK, &m, NULL);
    assert_non_null(env);
    assert_false(env->task.has_model_delta);
    assert_false(env->task.compress.momentum_correction);
    assert_true(env->task.compress.momentum_factor == 0.0f);
    assert_int_equal(env->task.model.k, E_DIM);
    pb_msg_destroy(&m);
    h_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_k_table),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_ef_every_coding),
        cmocka_unit_test(test_residual_drains),
        cmocka_unit_test(test_payload_kinds_and_sharing),
        cmocka_unit_test(test_errors_leave_state),
        cmocka_unit_test(test_alloc_torture),
        cmocka_unit_test(test_worker_delta_errors),
        cmocka_unit_test(test_config_flags),
        cmocka_unit_test(test_engine_lossy_downlink),
        cmocka_unit_test(test_engine_old_worker),
        cmocka_unit_test(test_engine_lossless_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
