/*
 * Unit tests for worker/wrk_state (the worker's persistent update state)
 * and wrk_update_export/import:
 *   - round trips over a table (dimension, velocity, pending k, error
 *     feedback, model version, epoch), field by field and bit for bit;
 *   - every bit flip sampled over the file, every truncation, trailing
 *     bytes are refused; targeted corruptions give the right code;
 *   - save/load through files, NOT_FOUND, no temporary left behind;
 *   - a worker "restart": the state saved after an encode, loaded into a
 *     fresh struct wrk_update, behaves exactly as the original (same fate
 *     handling, same residual, same next update, bytes for bytes), and
 *     the error-feedback invariant holds across the restart;
 *   - import refuses bad input and leaves the state unchanged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "worker/wrk_state.h"
#include "worker/wrk_update.h"
#include "fixture_bytes.h"

#define DIM 1000

static struct wrk_settings settings(float density, float momentum, bool ef)
{
    struct wrk_settings s;
    memset(&s, 0, sizeof(s));
    s.density = density;
    s.topk = CMP_TOPK_EXACT;
    s.params.index_coding = CMP_INDEX_AUTO;
    s.params.values = CMP_VALUE_FP16;
    s.params.codec = CMP_CODEC_ZSTD;
    s.params.level = 1;
    s.error_feedback = ef;
    s.momentum = momentum;
    return s;
}

static void random_vec(struct fl_rng *r, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)fl_rng_normal(r);
}

/* A state with seeded contents in the caller's arrays. */
static void fill_state(struct wrk_state *s, uint64_t dim, bool vel, size_t k,
                       bool ef, float *res, float *v, uint32_t *idx,
                       float *val, uint64_t seed)
{
    struct fl_rng r;
    fl_rng_seed(&r, seed);
    memset(s, 0, sizeof(*s));
    s->dim = dim;
    s->has_model_version = (seed & 1) != 0;
    s->model_version = s->has_model_version ? 1 + fl_rng_below(&r, 99) : 0;
    s->has_epoch = (seed & 2) != 0;
    s->epoch = s->has_epoch ? fl_rng_next(&r) : 0;
    random_vec(&r, res, dim);
    if (vel)
        random_vec(&r, v, dim);
    for (size_t i = 0; i < k; i++) {
        idx[i] = (uint32_t)((i * dim) / k); /* increasing, < dim */
        val[i] = (float)fl_rng_normal(&r);
    }
    s->upd.residual = res;
    s->upd.velocity = vel ? v : NULL;
    s->upd.pending = k > 0;
    s->upd.pending_ef = k > 0 && ef;
    s->upd.pending_round = k > 0 ? 1 + fl_rng_below(&r, 1000) : 0;
    s->upd.pending_k = k;
    s->upd.pending_idx = k > 0 ? idx : NULL;
    s->upd.pending_val = k > 0 ? val : NULL;
}

static uint8_t *encode(const struct wrk_state *s, size_t *len)
{
    const size_t n = wrk_state_size(s);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    assert_int_equal(wrk_state_encode(s, buf, n, len), FL_OK);
    assert_int_equal(*len, n);
    return buf;
}

static void assert_state_equal(const struct wrk_state *a,
                               const struct wrk_state *b)
{
    const struct wrk_update_state *x = &a->upd, *y = &b->upd;
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->has_model_version, b->has_model_version);
    assert_int_equal(a->model_version, b->model_version);
    assert_int_equal(a->has_epoch, b->has_epoch);
    assert_int_equal(a->epoch, b->epoch);
    assert_memory_equal(x->residual, y->residual, a->dim * sizeof(float));
    assert_int_equal(x->velocity != NULL, y->velocity != NULL);
    if (x->velocity != NULL)
        assert_memory_equal(x->velocity, y->velocity,
                            a->dim * sizeof(float));
    assert_int_equal(x->pending, y->pending);
    assert_int_equal(x->pending_ef, y->pending_ef);
    assert_int_equal(x->pending_round, y->pending_round);
    assert_int_equal(x->pending_k, y->pending_k);
    if (x->pending) {
        assert_memory_equal(x->pending_idx, y->pending_idx,
                            x->pending_k * sizeof(uint32_t));
        assert_memory_equal(x->pending_val, y->pending_val,
                            x->pending_k * sizeof(float));
    }
}

/* ---- the format */

static void test_roundtrip_table(void **state)
{
    (void)state;
    static const struct {
        uint64_t dim;
        bool vel;
        size_t k;
        bool ef;
        uint64_t seed;
    } table[] = {
        {1, false, 0, false, 0},   {1, true, 1, true, 3},
        {10, false, 10, true, 1},  {1000, true, 10, false, 2},
        {1000, false, 0, false, 3}, {4097, true, 41, true, 7},
    };
    for (size_t t = 0; t < FL_ARRAY_LEN(table); t++) {
        const uint64_t dim = table[t].dim;
        float *res = calloc(dim, sizeof(float));
        float *v = calloc(dim, sizeof(float));
        uint32_t *idx = calloc(table[t].k + 1, sizeof(uint32_t));
        float *val = calloc(table[t].k + 1, sizeof(float));
        struct wrk_state s, back;
        size_t len = 0;
        assert_true(res != NULL && v != NULL && idx != NULL && val != NULL);
        fill_state(&s, dim, table[t].vel, table[t].k, table[t].ef, res, v,
                   idx, val, table[t].seed);
        uint8_t *buf = encode(&s, &len);
        assert_int_equal(len, 56 + 4 * dim * (table[t].vel ? 2 : 1) +
                                  8 * table[t].k + 4);
        assert_memory_equal(buf, "FCWSTATE", 8);
        assert_int_equal(wrk_state_decode(buf, len, dim, &back), FL_OK);
        assert_state_equal(&s, &back);
        wrk_state_release(&back);
        assert_null(back.owned);
        wrk_state_release(&back);
        /* a larger model than allowed is refused */
        if (dim > 1)
            assert_int_equal(wrk_state_decode(buf, len, dim - 1, &back),
                             FL_ERR_TOO_LARGE);
        free(buf);
        free(val);
        free(idx);
        free(v);
        free(res);
    }
}

static void test_encode_refuses(void **state)
{
    (void)state;
    float res[4] = {0}, val[1] = {1};
    uint32_t idx[1] = {0};
    struct wrk_state s;
    uint8_t buf[256];
    size_t len = 0;
    fill_state(&s, 4, false, 1, true, res, NULL, idx, val, 0);
    assert_int_equal(wrk_state_encode(&s, buf, wrk_state_size(&s) - 1,
                                      &len),
                     FL_ERR_TOO_LARGE);
    s.upd.pending_k = 0;
    assert_int_equal(wrk_state_encode(&s, buf, sizeof(buf), &len),
                     FL_ERR_INVALID_ARG);
    s.upd.pending_k = 5; /* more than dim */
    assert_int_equal(wrk_state_encode(&s, buf, sizeof(buf), &len),
                     FL_ERR_INVALID_ARG);
    s.upd.pending = false;
    s.upd.residual = NULL;
    assert_int_equal(wrk_state_encode(&s, buf, sizeof(buf), &len),
                     FL_ERR_INVALID_ARG);
}

static void test_corruption_detected(void **state)
{
    (void)state;
    enum { D = 64, K = 6 };
    float res[D], v[D], val[K];
    uint32_t idx[K];
    struct wrk_state s, back;
    size_t len = 0;
    fill_state(&s, D, true, K, true, res, v, idx, val, 3);
    uint8_t *buf = encode(&s, &len);
    uint8_t *copy = malloc(len + 1);
    assert_non_null(copy);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 2) {
            memcpy(copy, buf, len);
            copy[i] ^= (uint8_t)(1u << bit);
            if (wrk_state_decode(copy, len, D, &back) == FL_OK)
                fail_msg("flip of bit %d of byte %zu accepted", bit, i);
            assert_null(back.owned);
        }
    }
    for (size_t n = 0; n < len; n++) {
        if (wrk_state_decode(buf, n, D, &back) == FL_OK)
            fail_msg("truncation to %zu of %zu bytes accepted", n, len);
    }
    memcpy(copy, buf, len);
    copy[len] = 0;
    assert_int_equal(wrk_state_decode(copy, len + 1, D, &back),
                     FL_ERR_FORMAT);
    free(copy);
    free(buf);
}

static void test_targeted_corruption(void **state)
{
    (void)state;
    enum { D = 16, K = 2 };
    static const struct {
        const char *what;
        size_t off;
        int width;
        uint64_t value;
        bool keep_crc;
        enum fl_err want;
    } table[] = {
        {"magic", 1, 1, 'X', true, FL_ERR_FORMAT},
        {"version", 8, 4, 9, true, FL_ERR_VERSION},
        {"unknown flag", 12, 4, (1u << 1) | (1u << 2) | (1u << 7), false,
         FL_ERR_FORMAT},
        {"pending flag without k", 40, 8, 0, false, FL_ERR_FORMAT},
        {"k > dim", 40, 8, D + 1, false, FL_ERR_FORMAT},
        {"dim 0", 16, 8, 0, false, FL_ERR_FORMAT},
        {"dim larger", 16, 8, D + 1, false, FL_ERR_TOO_LARGE},
        {"residual NaN", 56 + 4, 4, 0x7fc00000u, false, FL_ERR_NONFINITE},
        {"index >= dim", 56 + 4 * D, 4, D, false, FL_ERR_INDEX_RANGE},
        {"value Inf", 56 + 4 * D + 4 * K + 4, 4, 0x7f800000u, false,
         FL_ERR_NONFINITE},
        {"crc", 56 + 4 * D + 8 * K, 4, 1, true,
         FL_ERR_CHECKSUM},
    };
    float res[D], val[K];
    uint32_t idx[K];
    struct wrk_state s, back;
    size_t len = 0;
    fill_state(&s, D, false, K, true, res, NULL, idx, val, 1);
    uint8_t *buf = encode(&s, &len);
    assert_int_equal(len, 56 + 4 * D + 8 * K + 4);
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    for (size_t t = 0; t < FL_ARRAY_LEN(table); t++) {
        memcpy(copy, buf, len);
        if (table[t].width == 1)
            copy[table[t].off] = (uint8_t)table[t].value;
        else if (table[t].width == 4)
            fb_le32(copy + table[t].off, (uint32_t)table[t].value);
        else
            fb_le64(copy + table[t].off, table[t].value);
        if (!table[t].keep_crc)
            fb_fix_crc32(copy, len);
        const enum fl_err rc = wrk_state_decode(copy, len, D, &back);
        if (rc != table[t].want)
            fail_msg("%s: got %s, want %s", table[t].what, fl_err_name(rc),
                     fl_err_name(table[t].want));
        assert_null(back.owned);
    }
    free(copy);
    free(buf);
}

static void test_save_load(void **state)
{
    (void)state;
    enum { D = 100, K = 5 };
    char tmpl[] = "/tmp/test_wrk_state.XXXXXX";
    char path[256], missing[300];
    float res[D], v[D], val[K];
    uint32_t idx[K];
    struct wrk_state s, back;
    uint8_t *buf = NULL;
    size_t cap = 0;
    assert_non_null(mkdtemp(tmpl));
    snprintf(path, sizeof(path), "%s/%s", tmpl, WRK_STATE_FILE);
    assert_int_equal(wrk_state_load(path, D, &back), FL_ERR_NOT_FOUND);
    fill_state(&s, D, true, K, true, res, v, idx, val, 3);
    assert_int_equal(wrk_state_save(path, &s, &buf, &cap), FL_OK);
    assert_true(cap >= wrk_state_size(&s));
    assert_int_equal(wrk_state_load(path, D, &back), FL_OK);
    assert_state_equal(&s, &back);
    wrk_state_release(&back);
    /* the buffer is reused for the next, smaller save */
    const uint8_t *first = buf;
    s.upd.velocity = NULL;
    s.upd.pending = false;
    s.upd.pending_k = 0;
    assert_int_equal(wrk_state_save(path, &s, &buf, &cap), FL_OK);
    assert_ptr_equal(buf, first);
    assert_int_equal(wrk_state_load(path, D, &back), FL_OK);
    assert_false(back.upd.pending);
    assert_null(back.upd.velocity);
    wrk_state_release(&back);
    /* a file for a bigger model than max_dim is refused before reading */
    assert_int_equal(wrk_state_load(path, D / 4, &back), FL_ERR_TOO_LARGE);
    /* no temporary files left: only the state */
    DIR *d = opendir(tmpl);
    struct dirent *ent;
    int n = 0;
    assert_non_null(d);
    while ((ent = readdir(d)) != NULL)
        n += ent->d_name[0] != '.';
    closedir(d);
    assert_int_equal(n, 1);
    snprintf(missing, sizeof(missing), "%s/none/%s", tmpl, WRK_STATE_FILE);
    assert_int_equal(wrk_state_save(missing, &s, &buf, &cap), FL_ERR_IO);
    fl_free(buf);
    unlink(path);
    rmdir(tmpl);
}

/* ---- restart of a worker: export, file, import */

/* Save w through a file image and load it into a fresh update state. */
static struct wrk_update *restart(const struct wrk_update *w, uint64_t seed)
{
    struct wrk_state s, back;
    size_t len = 0;
    wrk_state_of_update(w, &s);
    s.has_epoch = true;
    s.epoch = 77;
    uint8_t *buf = encode(&s, &len);
    assert_int_equal(wrk_state_decode(buf, len, wrk_update_dim(w), &back),
                     FL_OK);
    assert_int_equal(back.epoch, 77);
    struct wrk_update *n = wrk_update_new(wrk_update_dim(w), NULL, 0, seed);
    assert_non_null(n);
    assert_int_equal(wrk_update_import(n, &back.upd), FL_OK);
    wrk_state_release(&back);
    free(buf);
    return n;
}

static void assert_same_update(const struct wrk_update *a,
                               const struct wrk_update *b)
{
    uint64_t ra = 0, rb = 0;
    assert_memory_equal(wrk_update_residual(a), wrk_update_residual(b),
                        DIM * sizeof(float));
    assert_int_equal(wrk_update_velocity(a) != NULL,
                     wrk_update_velocity(b) != NULL);
    assert_int_equal(wrk_update_pending(a, &ra), wrk_update_pending(b, &rb));
    assert_int_equal(ra, rb);
}

/* After a restart at any point of a sequence of rounds (encode, fate), the
 * restarted state produces the same updates as the original, byte for
 * byte, with and without momentum correction. */
static void test_restart_is_transparent(void **state)
{
    (void)state;
    static const struct {
        float momentum;
        bool ef;
    } table[] = {{0.0f, true}, {0.9f, true}, {0.0f, false}};
    static float u[DIM];
    for (size_t t = 0; t < FL_ARRAY_LEN(table); t++) {
        const struct wrk_settings s = settings(0.02f, table[t].momentum,
                                               table[t].ef);
        struct fl_rng r;
        fl_rng_seed(&r, 40 + t);
        struct wrk_update *a = wrk_update_new(DIM, NULL, 0, 5);
        assert_non_null(a);
        for (uint64_t round = 1; round <= 8; round++) {
            struct wrk_encoded ea, eb;
            random_vec(&r, u, DIM);
            assert_int_equal(wrk_update_encode(a, round, u, &s, &ea), FL_OK);
            /* the worker saves here, before sending; it may die now */
            struct wrk_update *b = restart(a, 5);
            assert_same_update(a, b);
            /* fates: rounds 3 and 6 are not used */
            const bool used = round % 3 != 0;
            size_t ka = 0, kb = 0;
            const enum wrk_fate fa =
                wrk_update_apply_fate(a, round, used, &ka);
            assert_int_equal(wrk_update_apply_fate(b, round, used, &kb), fa);
            assert_int_equal(ka, kb);
            assert_same_update(a, b);
            /* the next update is the same bytes */
            random_vec(&r, u, DIM);
            assert_int_equal(wrk_update_encode(a, round + 100, u, &s, &ea),
                             FL_OK);
            uint8_t *pa = malloc(ea.payload_len);
            assert_non_null(pa);
            memcpy(pa, ea.payload, ea.payload_len);
            assert_int_equal(wrk_update_encode(b, round + 100, u, &s, &eb),
                             FL_OK);
            assert_int_equal(ea.payload_len, eb.payload_len);
            assert_memory_equal(pa, eb.payload, ea.payload_len);
            assert_same_update(a, b);
            free(pa);
            wrk_update_apply_fate(a, round + 100, true, NULL);
            wrk_update_destroy(&b);
        }
        wrk_update_destroy(&a);
    }
}

/* The error-feedback invariant (wrk_update.h) across a restart that
 * happens while an update is pending and turns out NOT_USED: the restored
 * update is counted once, not lost and not twice. */
static void test_invariant_across_restart(void **state)
{
    (void)state;
    const struct wrk_settings s = settings(0.05f, 0.0f, true);
    static float u[DIM];
    static double fed[DIM], used[DIM];
    struct fl_rng r;
    struct wrk_encoded e;
    struct cmp_ctx *ctx = cmp_ctx_new();
    const struct cmp_limits lim = {DIM, 0, 0};
    struct wrk_update *w = wrk_update_new(DIM, NULL, 0, 1);
    assert_non_null(ctx);
    assert_non_null(w);
    fl_rng_seed(&r, 99);
    memset(fed, 0, sizeof(fed));
    memset(used, 0, sizeof(used));
    for (uint64_t round = 1; round <= 6; round++) {
        random_vec(&r, u, DIM);
        for (size_t i = 0; i < DIM; i++)
            fed[i] += u[i];
        assert_int_equal(wrk_update_encode(w, round, u, &s, &e), FL_OK);
        const uint32_t *idx = NULL;
        const float *val = NULL;
        size_t k = 0;
        assert_int_equal(cmp_sparse_decode(ctx, &e.meta, e.payload,
                                           e.payload_len, &lim, &idx, &val,
                                           &k),
                         FL_OK);
        /* the worker dies after saving; the new process learns the fate */
        struct wrk_update *n = restart(w, 1);
        wrk_update_destroy(&w);
        w = n;
        const bool ok = round % 2 == 0;
        assert_int_equal(wrk_update_apply_fate(w, round, ok, NULL),
                         ok ? WRK_FATE_USED : WRK_FATE_RESTORED);
        for (size_t i = 0; i < k && ok; i++)
            used[idx[i]] += val[i];
    }
    const float *res = wrk_update_residual(w);
    for (size_t i = 0; i < DIM; i++) {
        const double want = fed[i];
        const double got = used[i] + res[i];
        if (fabs(want - got) > 1e-4 * fmax(1.0, fabs(want)))
            fail_msg("entry %zu: fed %g, used + residual %g", i, want, got);
    }
    wrk_update_destroy(&w);
    cmp_ctx_destroy(&ctx);
}

static void test_import_refuses(void **state)
{
    (void)state;
    enum { D = 8 };
    static const struct {
        const char *what;
        int bad;         /* 1 no residual, 2 k 0, 3 k > dim, 4 index,
                            5 NaN residual, 6 Inf value, 7 NaN velocity */
        enum fl_err want;
    } table[] = {
        {"no residual", 1, FL_ERR_INVALID_ARG},
        {"k 0", 2, FL_ERR_INVALID_ARG},
        {"k > dim", 3, FL_ERR_INVALID_ARG},
        {"index", 4, FL_ERR_INDEX_RANGE},
        {"NaN residual", 5, FL_ERR_NONFINITE},
        {"Inf value", 6, FL_ERR_NONFINITE},
        {"NaN velocity", 7, FL_ERR_NONFINITE},
    };
    struct wrk_update *w = wrk_update_new(D, NULL, 0, 1);
    float res[D], vel[D], val[2] = {1, 2};
    uint32_t idx[2] = {1, 5};
    assert_non_null(w);
    for (size_t t = 0; t < FL_ARRAY_LEN(table); t++) {
        struct wrk_update_state st;
        for (int i = 0; i < D; i++)
            res[i] = vel[i] = (float)i;
        memset(&st, 0, sizeof(st));
        st.residual = res;
        st.velocity = vel;
        st.pending = true;
        st.pending_round = 3;
        st.pending_k = 2;
        st.pending_idx = idx;
        st.pending_val = val;
        idx[1] = 5;
        val[1] = 2;
        switch (table[t].bad) {
        case 1: st.residual = NULL; break;
        case 2: st.pending_k = 0; break;
        case 3: st.pending_k = D + 1; break;
        case 4: idx[1] = D; break;
        case 5: res[2] = NAN; break;
        case 6: val[1] = INFINITY; break;
        default: vel[0] = NAN; break;
        }
        const enum fl_err rc = wrk_update_import(w, &st);
        if (rc != table[t].want)
            fail_msg("%s: got %s", table[t].what, fl_err_name(rc));
        /* unchanged: still the fresh, empty state */
        assert_false(wrk_update_pending(w, NULL));
        assert_true(wrk_update_residual_norm(w) == 0.0);
        assert_null(wrk_update_velocity(w));
    }
    wrk_update_destroy(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_table),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_corruption_detected),
        cmocka_unit_test(test_targeted_corruption),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_restart_is_transparent),
        cmocka_unit_test(test_invariant_across_restart),
        cmocka_unit_test(test_import_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
