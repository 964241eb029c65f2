/*
 * Unit tests for worker/wrk_update: the error-feedback invariant across
 * rounds with used and restored updates, fate bookkeeping, per-tensor k,
 * clipping, momentum correction and masking, the byte budget, and
 * allocation failures.
 *
 * The invariant checked (wrk_update.h): with f_t the vector fed to the
 * selection (u_t, or the velocity after adding u_t with momentum
 * correction),
 *     sum_t f_t == sum of used updates + pending update + residual
 * where the used/pending updates are what the receiver decodes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "worker/wrk_update.h"

#define DIM 1110

static const struct wrk_span spans3[] = {{0, 100}, {100, 10}, {110, 1000}};

static struct wrk_settings settings(float density, enum cmp_value_coding v,
                                    enum cmp_codec c)
{
    struct wrk_settings s;
    memset(&s, 0, sizeof(s));
    s.density = density;
    s.topk = CMP_TOPK_EXACT;
    s.params.index_coding = CMP_INDEX_AUTO;
    s.params.values = v;
    s.params.codec = c;
    s.params.level = 3;
    s.error_feedback = true;
    return s;
}

static void random_vec(struct fl_rng *r, float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(fl_rng_normal(r) * scale);
}

/* Decode what the receiver sees and add weight * it into acc (double). */
static size_t decode_into(const struct wrk_encoded *e, size_t dim,
                          double *acc, double weight)
{
    struct cmp_ctx *ctx = cmp_ctx_new();
    const struct cmp_limits lim = {dim, 0, 0};
    const uint32_t *idx = NULL;
    const float *val = NULL;
    size_t k = 0;
    assert_non_null(ctx);
    assert_int_equal(cmp_sparse_decode(ctx, &e->meta, e->payload,
                                       e->payload_len, &lim, &idx, &val, &k),
                     FL_OK);
    assert_int_equal(k, e->k);
    for (size_t i = 0; i < k; i++) {
        assert_true(idx[i] < dim);
        if (i > 0)
            assert_true(idx[i] > idx[i - 1]);
        if (acc != NULL)
            acc[idx[i]] += weight * (double)val[i];
    }
    cmp_ctx_destroy(&ctx);
    return k;
}

/* max |a - b| relative to max(1, |a|) over n. */
static double max_rel_diff(const double *a, const double *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs(a[i] - b[i]) / fmax(1.0, fabs(a[i]));
        worst = fmax(worst, d);
    }
    return worst;
}

static void check_invariant(const struct wrk_update *w, const double *fed,
                            const double *used, const double *pend,
                            double *rhs)
{
    const float *res = wrk_update_residual(w);
    for (size_t i = 0; i < DIM; i++)
        rhs[i] = used[i] + pend[i] + (double)res[i];
    const double d = max_rel_diff(fed, rhs, DIM);
    if (!(d < 1e-4))
        fail_msg("invariant broken: max relative difference %g", d);
}

/* Run 12 rounds with random fates and check the invariant after each
 * step. momentum > 0 tracks f_t through the velocity. */
static void run_invariant(float momentum, bool per_tensor,
                          enum cmp_value_coding v, uint64_t seed)
{
    struct fl_rng r;
    struct wrk_update *w = wrk_update_new(DIM, spans3, 3, seed);
    float *u = calloc(DIM, sizeof(float));
    double *fed = calloc(DIM, sizeof(double));
    double *used = calloc(DIM, sizeof(double));
    double *pend = calloc(DIM, sizeof(double));
    double *rhs = calloc(DIM, sizeof(double));
    struct wrk_settings s = settings(0.02f, v, CMP_CODEC_ZSTD);
    unsigned restored = 0, was_used = 0;

    assert_non_null(w);
    s.momentum = momentum;
    s.per_tensor = per_tensor;
    fl_rng_seed(&r, seed);
    for (uint64_t round = 1; round <= 12; round++) {
        struct wrk_encoded e;
        random_vec(&r, u, DIM, 0.01 * (double)round);
        const float *vel = wrk_update_velocity(w);
        for (size_t i = 0; i < DIM; i++) {
            const double prev = (momentum > 0 && vel != NULL) ? vel[i] : 0.0;
            fed[i] += (double)momentum * prev + (double)u[i];
        }
        assert_int_equal(wrk_update_encode(w, round, u, &s, &e), FL_OK);
        memset(pend, 0, DIM * sizeof(double));
        decode_into(&e, DIM, pend, 1.0);
        if (momentum > 0) {
            /* masking: the velocity is zero where an entry was sent */
            vel = wrk_update_velocity(w);
            assert_non_null(vel);
            for (size_t i = 0; i < DIM; i++) {
                if (pend[i] != 0.0)
                    assert_true(vel[i] == 0.0f);
            }
        }
        /* invariant while the update is pending */
        check_invariant(w, fed, used, pend, rhs);
        /* the fate: used, not used, or first a verdict for another round */
        const uint64_t pick = fl_rng_below(&r, 3);
        if (pick == 2) {
            assert_int_equal(wrk_update_apply_fate(w, round - 1, false, NULL),
                             WRK_FATE_OTHER_ROUND);
            check_invariant(w, fed, used, pend, rhs);
        }
        size_t k = 0;
        const bool is_used = pick == 0 || (pick == 2 && round % 2 == 0);
        const enum wrk_fate f = wrk_update_apply_fate(w, round, is_used, &k);
        assert_int_equal(k, e.k);
        if (is_used) {
            assert_int_equal(f, WRK_FATE_USED);
            for (size_t i = 0; i < DIM; i++)
                used[i] += pend[i];
            was_used++;
        } else {
            assert_int_equal(f, WRK_FATE_RESTORED);
            restored++;
        }
        memset(pend, 0, DIM * sizeof(double));
        assert_false(wrk_update_pending(w, NULL));
        check_invariant(w, fed, used, pend, rhs);
    }
    assert_true(restored > 0 && was_used > 0);
    wrk_update_destroy(&w);
    assert_null(w);
    free(u);
    free(fed);
    free(used);
    free(pend);
    free(rhs);
}

static void test_ef_invariant_fp32(void **state)
{
    (void)state;
    run_invariant(0.0f, false, CMP_VALUE_FP32, 11);
}

static void test_ef_invariant_fp16_per_tensor(void **state)
{
    (void)state;
    run_invariant(0.0f, true, CMP_VALUE_FP16, 12);
}

static void test_ef_invariant_int8(void **state)
{
    (void)state;
    run_invariant(0.0f, false, CMP_VALUE_INT8, 13);
}

static void test_ef_invariant_momentum(void **state)
{
    (void)state;
    run_invariant(0.9f, false, CMP_VALUE_FP16, 14);
    run_invariant(0.5f, true, CMP_VALUE_BF16, 15);
}

/* Property: in the first round the residual is exactly u with the sent
 * entries replaced by their quantization error. */
static void test_first_round_residual(void **state)
{
    (void)state;
    struct fl_rng r;
    float u[DIM];
    double sent[DIM];
    struct wrk_encoded e;
    struct wrk_update *w = wrk_update_new(DIM, NULL, 0, 1);
    const struct wrk_settings s = settings(0.05f, CMP_VALUE_BF16,
                                           CMP_CODEC_LZ4);
    assert_non_null(w);
    fl_rng_seed(&r, 99);
    random_vec(&r, u, DIM, 1.0);
    memset(sent, 0, sizeof(sent));
    assert_int_equal(wrk_update_encode(w, 1, u, &s, &e), FL_OK);
    assert_int_equal(e.k, 56); /* ceil(0.05 * 1110) */
    decode_into(&e, DIM, sent, 1.0);
    const float *res = wrk_update_residual(w);
    float smallest_sent = INFINITY, largest_kept = 0.0f;
    for (size_t i = 0; i < DIM; i++) {
        assert_true(fabs((double)res[i] + sent[i] - (double)u[i]) < 1e-6);
        if (sent[i] != 0.0)
            smallest_sent = fminf(smallest_sent, fabsf(u[i]));
        else
            largest_kept = fmaxf(largest_kept, fabsf(u[i]));
    }
    assert_true(smallest_sent >= largest_kept); /* it is the top-k */
    wrk_update_destroy(&w);
}

static void test_fate_only_for_matching_round(void **state)
{
    (void)state;
    struct fl_rng r;
    float u[DIM];
    float before[DIM];
    struct wrk_encoded e;
    size_t k = 99;
    struct wrk_update *w = wrk_update_new(DIM, NULL, 0, 2);
    const struct wrk_settings s = settings(0.01f, CMP_VALUE_FP16,
                                           CMP_CODEC_ZSTD);
    assert_non_null(w);
    fl_rng_seed(&r, 5);
    random_vec(&r, u, DIM, 1.0);

    /* nothing pending yet */
    assert_int_equal(wrk_update_apply_fate(w, 1, false, &k),
                     WRK_FATE_NO_PENDING);
    assert_int_equal(k, 0);

    assert_int_equal(wrk_update_encode(w, 5, u, &s, &e), FL_OK);
    memcpy(before, wrk_update_residual(w), sizeof(before));
    /* a verdict about another round changes nothing */
    assert_int_equal(wrk_update_apply_fate(w, 4, false, NULL),
                     WRK_FATE_OTHER_ROUND);
    assert_int_equal(wrk_update_apply_fate(w, 6, true, NULL),
                     WRK_FATE_OTHER_ROUND);
    assert_memory_equal(before, wrk_update_residual(w), sizeof(before));
    assert_true(wrk_update_pending(w, NULL));

    /* the matching one restores exactly the decoded values */
    double sent[DIM];
    memset(sent, 0, sizeof(sent));
    decode_into(&e, DIM, sent, 1.0);
    assert_int_equal(wrk_update_apply_fate(w, 5, false, &k),
                     WRK_FATE_RESTORED);
    assert_int_equal(k, e.k);
    const float *res = wrk_update_residual(w);
    for (size_t i = 0; i < DIM; i++)
        assert_true(fabs((double)res[i] - ((double)before[i] + sent[i])) <
                    1e-6);
    /* the same verdict again (Reject, then Task) restores nothing twice */
    memcpy(before, res, sizeof(before));
    assert_int_equal(wrk_update_apply_fate(w, 5, false, NULL),
                     WRK_FATE_NO_PENDING);
    assert_memory_equal(before, wrk_update_residual(w), sizeof(before));

    /* forget: no residual change, nothing pending */
    assert_int_equal(wrk_update_encode(w, 6, u, &s, &e), FL_OK);
    memcpy(before, wrk_update_residual(w), sizeof(before));
    assert_true(wrk_update_forget(w));
    assert_false(wrk_update_forget(w));
    assert_false(wrk_update_pending(w, NULL));
    assert_memory_equal(before, wrk_update_residual(w), sizeof(before));

    /* an encode drops an unresolved pending update */
    assert_int_equal(wrk_update_encode(w, 7, u, &s, &e), FL_OK);
    assert_int_equal(wrk_update_encode(w, 8, u, &s, &e), FL_OK);
    assert_int_equal(wrk_update_apply_fate(w, 7, false, NULL),
                     WRK_FATE_OTHER_ROUND);
    assert_int_equal(wrk_update_apply_fate(w, 8, true, NULL),
                     WRK_FATE_USED);
    wrk_update_destroy(&w);
}

static void test_k_table(void **state)
{
    (void)state;
    static const struct {
        float density;
        size_t n;
        size_t k;
    } cases[] = {
        {0.01f, 235146, 2352}, {0.1f, 1000, 100}, {0.01f, 1000, 10},
        {1.0f, 7, 7},          {1e-9f, 10, 1},    {0.5f, 3, 2},
        {0.3f, 10, 3},         {0.001f, 999, 1},  {0.25f, 1, 1},
        {0.999f, 1000, 999},   {0.0f, 10, 1},     {0.5f, 0, 0},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        const size_t k = wrk_update_k(cases[i].density, cases[i].n);
        if (k != cases[i].k)
            fail_msg("case %zu: density %g n %zu: k %zu, expected %zu", i,
                     (double)cases[i].density, cases[i].n, k, cases[i].k);
    }
}

static void test_per_tensor_k_and_offsets(void **state)
{
    (void)state;
    struct fl_rng r;
    float u[DIM];
    double sent[DIM];
    struct wrk_encoded e;
    struct wrk_update *w = wrk_update_new(DIM, spans3, 3, 3);
    struct wrk_settings s = settings(0.05f, CMP_VALUE_FP32, CMP_CODEC_NONE);
    assert_non_null(w);
    s.per_tensor = true;
    fl_rng_seed(&r, 8);
    random_vec(&r, u, DIM, 1.0);
    /* make the last tensor dominate: a global top-k would pick only there */
    for (size_t i = 110; i < DIM; i++)
        u[i] *= 100.0f;
    memset(sent, 0, sizeof(sent));
    assert_int_equal(wrk_update_encode(w, 1, u, &s, &e), FL_OK);
    /* ceil(0.05 * 100) + ceil(0.05 * 10) + ceil(0.05 * 1000) */
    assert_int_equal(e.k, 5 + 1 + 50);
    decode_into(&e, DIM, sent, 1.0);
    for (size_t t = 0; t < 3; t++) {
        size_t count = 0;
        float min_sent = INFINITY, max_kept = 0.0f;
        for (size_t i = spans3[t].offset;
             i < spans3[t].offset + spans3[t].size; i++) {
            if (sent[i] != 0.0) {
                count++;
                assert_true(sent[i] == (double)u[i]); /* fp32 is exact */
                min_sent = fminf(min_sent, fabsf(u[i]));
            } else {
                max_kept = fmaxf(max_kept, fabsf(u[i]));
            }
        }
        const size_t want[] = {5, 1, 50};
        assert_int_equal(count, want[t]);
        assert_true(min_sent >= max_kept);
    }
    /* global selection on the same input picks only the big tensor */
    wrk_update_reset(w);
    s.per_tensor = false;
    memset(sent, 0, sizeof(sent));
    assert_int_equal(wrk_update_encode(w, 2, u, &s, &e), FL_OK);
    assert_int_equal(e.k, 56);
    decode_into(&e, DIM, sent, 1.0);
    for (size_t i = 0; i < 110; i++)
        assert_true(sent[i] == 0.0);
    wrk_update_destroy(&w);
}

static void test_clip_norm(void **state)
{
    (void)state;
    float u[DIM];
    double sent[DIM];
    struct wrk_encoded e;
    struct wrk_update *w = wrk_update_new(DIM, NULL, 0, 4);
    struct wrk_settings s = settings(1.0f, CMP_VALUE_FP32, CMP_CODEC_NONE);
    assert_non_null(w);
    s.error_feedback = false;
    /* |u| = 10: one entry 6, one 8 */
    memset(u, 0, sizeof(u));
    u[3] = 6.0f;
    u[700] = -8.0f;
    s.clip_norm = 2.5f;
    memset(sent, 0, sizeof(sent));
    assert_int_equal(wrk_update_encode(w, 1, u, &s, &e), FL_OK);
    assert_true(e.clipped);
    assert_true(fabs(e.norm - 10.0) < 1e-9);
    decode_into(&e, DIM, sent, 1.0);
    assert_true(fabs(sent[3] - 1.5) < 1e-6);
    assert_true(fabs(sent[700] + 2.0) < 1e-6);
    /* a bound above the norm changes nothing */
    s.clip_norm = 10.5f;
    memset(sent, 0, sizeof(sent));
    assert_int_equal(wrk_update_encode(w, 2, u, &s, &e), FL_OK);
    assert_false(e.clipped);
    decode_into(&e, DIM, sent, 1.0);
    assert_true(sent[3] == 6.0 && sent[700] == -8.0);
    wrk_update_destroy(&w);
}

static void test_ef_off_leaves_no_residual(void **state)
{
    (void)state;
    struct fl_rng r;
    float u[DIM];
    struct wrk_encoded e;
    struct wrk_update *w = wrk_update_new(DIM, spans3, 3, 5);
    struct wrk_settings s = settings(0.01f, CMP_VALUE_INT8, CMP_CODEC_ZSTD);
    assert_non_null(w);
    s.error_feedback = false;
    fl_rng_seed(&r, 21);
    for (uint64_t round = 1; round <= 5; round++) {
        random_vec(&r, u, DIM, 1.0);
        s.per_tensor = round % 2 == 0;
        assert_int_equal(wrk_update_encode(w, round, u, &s, &e), FL_OK);
        /* a not-used update cannot be restored without a residual */
        assert_int_equal(wrk_update_apply_fate(w, round, round % 2 == 0,
                                               NULL),
                         round % 2 == 0 ? WRK_FATE_USED : WRK_FATE_DISCARDED);
        const float *res = wrk_update_residual(w);
        for (size_t i = 0; i < DIM; i++)
            assert_true(res[i] == 0.0f);
    }
    assert_true(wrk_update_residual_norm(w) == 0.0);
    wrk_update_destroy(&w);
}

static void test_momentum_masking(void **state)
{
    (void)state;
    struct fl_rng r;
    float u[DIM];
    float v1[DIM];
    double sent[DIM];
    struct wrk_encoded e;
    struct wrk_update *w = wrk_update_new(DIM, NULL, 0, 6);
    struct wrk_settings s = settings(0.1f, CMP_VALUE_FP16, CMP_CODEC_LZ4);
    assert_non_null(w);
    s.momentum = 0.9f;
    fl_rng_seed(&r, 31);
    random_vec(&r, u, DIM, 1.0);
    assert_null(wrk_update_velocity(w));
    memset(sent, 0, sizeof(sent));
    assert_int_equal(wrk_update_encode(w, 1, u, &s, &e), FL_OK);
    decode_into(&e, DIM, sent, 1.0);
    const float *v = wrk_update_velocity(w);
    assert_non_null(v);
    size_t zeros = 0;
    for (size_t i = 0; i < DIM; i++) {
        if (sent[i] != 0.0) {
            assert_true(v[i] == 0.0f);
            zeros++;
        } else {
            assert_true(v[i] == u[i]); /* v = 0.9 * 0 + u */
        }
    }
    assert_int_equal(zeros, e.k);
    memcpy(v1, v, sizeof(v1));
    /* round 2: v = 0.9 v1 + u, then masked again */
    assert_int_equal(wrk_update_apply_fate(w, 1, true, NULL), WRK_FATE_USED);
    memset(sent, 0, sizeof(sent));
    assert_int_equal(wrk_update_encode(w, 2, u, &s, &e), FL_OK);
    decode_into(&e, DIM, sent, 1.0);
    v = wrk_update_velocity(w);
    for (size_t i = 0; i < DIM; i++) {
        const float want = sent[i] != 0.0 ? 0.0f : 0.9f * v1[i] + u[i];
        assert_true(fabsf(v[i] - want) <= 1e-6f * fmaxf(1.0f, fabsf(want)));
    }
    /* switching momentum correction off clears the velocity */
    s.momentum = 0.0f;
    assert_int_equal(wrk_update_encode(w, 3, u, &s, &e), FL_OK);
    v = wrk_update_velocity(w);
    for (size_t i = 0; i < DIM; i++)
        assert_true(v[i] == 0.0f);
    wrk_update_destroy(&w);
}

static void test_settings_check_table(void **state)
{
    (void)state;
    static const struct {
        float density, momentum, clip;
        int topk, values, codec, index;
        enum fl_err want;
    } cases[] = {
        {0.01f, 0.0f, 0.0f, 1, 2, 3, 0, FL_OK},
        {1.0f, 0.9f, 5.0f, 2, 4, 1, 1, FL_OK},
        {0.0f, 0.0f, 0.0f, 1, 2, 3, 0, FL_ERR_INVALID_ARG},
        {1.5f, 0.0f, 0.0f, 1, 2, 3, 0, FL_ERR_INVALID_ARG},
        {NAN, 0.0f, 0.0f, 1, 2, 3, 0, FL_ERR_INVALID_ARG},
        {0.1f, 1.0f, 0.0f, 1, 2, 3, 0, FL_ERR_INVALID_ARG},
        {0.1f, -0.1f, 0.0f, 1, 2, 3, 0, FL_ERR_INVALID_ARG},
        {0.1f, 0.0f, -1.0f, 1, 2, 3, 0, FL_ERR_INVALID_ARG},
        {0.1f, 0.0f, INFINITY, 1, 2, 3, 0, FL_ERR_INVALID_ARG},
        {0.1f, 0.0f, 0.0f, 0, 2, 3, 0, FL_ERR_UNSUPPORTED},
        {0.1f, 0.0f, 0.0f, 1, 5, 3, 0, FL_ERR_UNSUPPORTED},
        {0.1f, 0.0f, 0.0f, 1, 2, 0, 0, FL_ERR_UNSUPPORTED},
        {0.1f, 0.0f, 0.0f, 1, 2, 3, 4, FL_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        struct wrk_settings s = settings(cases[i].density,
                                         (enum cmp_value_coding)cases[i].values,
                                         (enum cmp_codec)cases[i].codec);
        s.momentum = cases[i].momentum;
        s.clip_norm = cases[i].clip;
        s.topk = (enum cmp_topk_method)cases[i].topk;
        s.params.index_coding = (enum cmp_index_coding)cases[i].index;
        const enum fl_err rc = wrk_settings_check(&s);
        if (rc != cases[i].want)
            fail_msg("case %zu: %s, expected %s", i, fl_err_name(rc),
                     fl_err_name(cases[i].want));
    }
}

static void test_nonfinite_input_changes_nothing(void **state)
{
    (void)state;
    float u[DIM];
    float before[DIM];
    struct wrk_encoded e;
    uint64_t pr = 0;
    struct wrk_update *w = wrk_update_new(DIM, NULL, 0, 7);
    const struct wrk_settings s = settings(0.01f, CMP_VALUE_FP16,
                                           CMP_CODEC_ZSTD);
    assert_non_null(w);
    for (size_t i = 0; i < DIM; i++)
        u[i] = (float)i * 1e-3f;
    assert_int_equal(wrk_update_encode(w, 1, u, &s, &e), FL_OK);
    memcpy(before, wrk_update_residual(w), sizeof(before));
    u[17] = NAN;
    assert_int_equal(wrk_update_encode(w, 2, u, &s, &e), FL_ERR_NONFINITE);
    u[17] = INFINITY;
    assert_int_equal(wrk_update_encode(w, 2, u, &s, &e), FL_ERR_NONFINITE);
    assert_memory_equal(before, wrk_update_residual(w), sizeof(before));
    assert_true(wrk_update_pending(w, &pr));
    assert_int_equal(pr, 1);
    wrk_update_destroy(&w);
}

static void test_byte_budget(void **state)
{
    (void)state;
    struct fl_rng r;
    float u[DIM];
    double fed[DIM], sent[DIM];
    struct wrk_encoded e;
    struct wrk_update *w = wrk_update_new(DIM, spans3, 3, 8);
    struct wrk_settings s = settings(0.5f, CMP_VALUE_FP32, CMP_CODEC_NONE);
    assert_non_null(w);
    fl_rng_seed(&r, 41);
    random_vec(&r, u, DIM, 1.0);
    /* unbounded first, for the size */
    assert_int_equal(wrk_update_encode(w, 1, u, &s, &e), FL_OK);
    const size_t full = e.payload_len;
    assert_int_equal(e.shrinks, 0);
    assert_int_equal(wrk_update_apply_fate(w, 1, false, NULL),
                     WRK_FATE_RESTORED);
    wrk_update_reset(w);
    for (int pt = 0; pt < 2; pt++) {
        wrk_update_reset(w);
        s.per_tensor = pt == 1;
        s.max_bytes = full / 4;
        assert_int_equal(wrk_update_encode(w, 2, u, &s, &e), FL_OK);
        assert_true(e.shrinks > 0);
        assert_true(e.payload_len <= s.max_bytes);
        assert_true(e.k < 555);
        /* nothing lost: f (== u) == sent + residual */
        memset(sent, 0, sizeof(sent));
        decode_into(&e, DIM, sent, 1.0);
        const float *res = wrk_update_residual(w);
        for (size_t i = 0; i < DIM; i++) {
            fed[i] = (double)u[i];
            sent[i] += (double)res[i];
        }
        assert_true(max_rel_diff(fed, sent, DIM) < 1e-6);
    }
    wrk_update_destroy(&w);
}

/* The budget over rounds with a compressing codec, as the worker uses it
 * under --uplink-budget: a table of {values, codec, budget fraction}; every
 * payload fits, k shrinks with the budget, and with error feedback nothing
 * is lost across rounds (sum of u == sum sent + residual). */
static void test_byte_budget_rounds(void **state)
{
    (void)state;
    static const struct {
        enum cmp_value_coding v;
        enum cmp_codec c;
        double frac;
    } cases[] = {
        {CMP_VALUE_FP16, CMP_CODEC_ZSTD, 0.6},
        {CMP_VALUE_INT8, CMP_CODEC_LZ4, 0.3},
        {CMP_VALUE_FP32, CMP_CODEC_NONE, 0.1},
    };
    struct fl_rng r;
    float u[DIM];
    double fed[DIM], sent[DIM];
    struct wrk_encoded e;
    fl_rng_seed(&r, 43);
    for (size_t c = 0; c < FL_ARRAY_LEN(cases); c++) {
        struct wrk_update *w = wrk_update_new(DIM, NULL, 0, 9);
        struct wrk_settings s = settings(0.2f, cases[c].v, cases[c].c);
        assert_non_null(w);
        random_vec(&r, u, DIM, 1.0);
        assert_int_equal(wrk_update_encode(w, 1, u, &s, &e), FL_OK);
        const size_t full_k = e.k;
        s.max_bytes = (uint64_t)(cases[c].frac * (double)e.payload_len);
        wrk_update_reset(w);
        memset(fed, 0, sizeof(fed));
        memset(sent, 0, sizeof(sent));
        for (uint64_t round = 1; round <= 3; round++) {
            random_vec(&r, u, DIM, 1.0);
            for (size_t i = 0; i < DIM; i++)
                fed[i] += (double)u[i];
            assert_int_equal(wrk_update_encode(w, round, u, &s, &e), FL_OK);
            assert_true(e.payload_len <= s.max_bytes);
            assert_true(e.k < full_k);
            assert_true(e.shrinks > 0);
            decode_into(&e, DIM, sent, 1.0);
            assert_int_equal(wrk_update_apply_fate(w, round, true, NULL),
                             WRK_FATE_USED);
        }
        const float *res = wrk_update_residual(w);
        for (size_t i = 0; i < DIM; i++)
            sent[i] += (double)res[i];
        assert_true(max_rel_diff(fed, sent, DIM) < 1e-5);
        wrk_update_destroy(&w);
    }
}

static void test_sampled_method(void **state)
{
    (void)state;
    struct fl_rng r;
    static float u[20000];
    double acc[20000];
    struct wrk_encoded e;
    struct wrk_update *w = wrk_update_new(20000, NULL, 0, 9);
    struct wrk_settings s = settings(0.01f, CMP_VALUE_FP32, CMP_CODEC_ZSTD);
    assert_non_null(w);
    s.topk = CMP_TOPK_SAMPLED;
    fl_rng_seed(&r, 51);
    random_vec(&r, u, 20000, 1.0);
    memset(acc, 0, sizeof(acc));
    assert_int_equal(wrk_update_encode(w, 1, u, &s, &e), FL_OK);
    assert_true(e.k >= 190 && e.k <= 200); /* within 5% below k */
    decode_into(&e, 20000, acc, 1.0);
    const float *res = wrk_update_residual(w);
    for (size_t i = 0; i < 20000; i++)
        assert_true(fabs(acc[i] + (double)res[i] - (double)u[i]) < 1e-6);
    wrk_update_destroy(&w);
}

static void test_new_rejects_bad_spans(void **state)
{
    (void)state;
    static const struct wrk_span gap[] = {{0, 10}, {11, 10}};
    static const struct wrk_span overlap[] = {{0, 10}, {9, 12}};
    static const struct wrk_span short_[] = {{0, 10}, {10, 10}};
    static const struct wrk_span empty[] = {{0, 0}, {0, 21}};
    static const struct wrk_span ok[] = {{0, 10}, {10, 11}};
    struct wrk_update *w = NULL;
    assert_null(wrk_update_new(21, gap, 2, 1));
    assert_null(wrk_update_new(21, overlap, 2, 1));
    assert_null(wrk_update_new(21, short_, 2, 1));
    assert_null(wrk_update_new(21, empty, 2, 1));
    assert_null(wrk_update_new(0, NULL, 0, 1));
    w = wrk_update_new(21, ok, 2, 1);
    assert_non_null(w);
    assert_int_equal(wrk_update_dim(w), 21);
    wrk_update_destroy(&w);
    wrk_update_destroy(&w); /* pointer to NULL is fine */
    wrk_update_destroy(NULL);
}

/* Every allocation of new + first encode fails in turn: NULL or an error,
 * never a crash or a leak (ASan checks leaks). */
static void test_alloc_failures(void **state)
{
    (void)state;
    float u[DIM];
    struct wrk_encoded e;
    struct wrk_settings s = settings(0.05f, CMP_VALUE_FP16, CMP_CODEC_ZSTD);
    s.momentum = 0.5f;
    s.per_tensor = true;
    for (size_t i = 0; i < DIM; i++)
        u[i] = (float)((i * 37) % 101) - 50.0f;
    unsigned ok_runs = 0;
    for (long n = 0; n < 2000; n++) {
        fl_alloc_fail_after(n);
        struct wrk_update *w = wrk_update_new(DIM, spans3, 3, 1);
        if (w != NULL) {
            const enum fl_err rc = wrk_update_encode(w, 1, u, &s, &e);
            assert_true(rc == FL_OK || rc == FL_ERR_NOMEM);
            if (rc == FL_OK)
                ok_runs++;
            else
                assert_false(wrk_update_pending(w, NULL));
        }
        fl_alloc_fail_reset();
        wrk_update_destroy(&w);
        if (ok_runs > 0)
            break;
    }
    assert_true(ok_runs > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ef_invariant_fp32),
        cmocka_unit_test(test_ef_invariant_fp16_per_tensor),
        cmocka_unit_test(test_ef_invariant_int8),
        cmocka_unit_test(test_ef_invariant_momentum),
        cmocka_unit_test(test_first_round_residual),
        cmocka_unit_test(test_fate_only_for_matching_round),
        cmocka_unit_test(test_k_table),
        cmocka_unit_test(test_per_tensor_k_and_offsets),
        cmocka_unit_test(test_clip_norm),
        cmocka_unit_test(test_ef_off_leaves_no_residual),
        cmocka_unit_test(test_momentum_masking),
        cmocka_unit_test(test_settings_check_table),
        cmocka_unit_test(test_nonfinite_input_changes_nothing),
        cmocka_unit_test(test_byte_budget),
        cmocka_unit_test(test_byte_budget_rounds),
        cmocka_unit_test(test_sampled_method),
        cmocka_unit_test(test_new_rejects_bad_spans),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
