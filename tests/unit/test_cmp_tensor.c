/* Unit tests for compress/cmp_tensor: round trips of every coding and
 * codec, the decoder's validation (each bad input its own error code),
 * dense XOR deltas, scatter-add and allocation-failure torture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lz4.h>
#include <zlib.h>
#include <zstd.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "compress/cmp_internal.h"
#include "compress/cmp_tensor.h"

/* ------------------------------------------------------------ helpers */

/* k distinct sorted indices below n */
static void random_indices(struct fl_rng *rng, uint64_t n, size_t k,
                           uint32_t *idx)
{
    if ((uint64_t)k * 2 >= n) { /* dense: pick by rejection of the rest */
        uint8_t *in = calloc((size_t)n, 1);
        size_t have = (size_t)n;
        assert_non_null(in);
        memset(in, 1, (size_t)n);
        while (have > k) {
            const size_t i = (size_t)fl_rng_below(rng, n);
            if (in[i]) {
                in[i] = 0;
                have--;
            }
        }
        size_t j = 0;
        for (size_t i = 0; i < n; i++) {
            if (in[i])
                idx[j++] = (uint32_t)i;
        }
        free(in);
        return;
    }
    /* sparse: Floyd's sampling into a bitmap, then collect */
    uint8_t *in = calloc((size_t)(n + 7) / 8, 1);
    assert_non_null(in);
    for (uint64_t j = n - k; j < n; j++) {
        uint64_t t = fl_rng_below(rng, j + 1);
        if (in[t >> 3] & (1u << (t & 7)))
            t = j;
        in[t >> 3] |= (uint8_t)(1u << (t & 7));
    }
    size_t c = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (in[i >> 3] & (1u << (i & 7)))
            idx[c++] = (uint32_t)i;
    }
    assert_int_equal(c, k);
    free(in);
}

/* Compress raw with a codec through the library's own backend. */
static size_t pack(enum cmp_codec codec, const uint8_t *raw, size_t len,
                   uint8_t *out, size_t cap)
{
    struct cmp_codecs cs = {NULL, NULL};
    const struct cmp_codec_backend *be = cmp_codec_backend_get(codec);
    size_t out_len = 0;
    assert_non_null(be);
    assert_int_equal(be->compress(&cs, raw, len, out, cap, 3, &out_len),
                     FL_OK);
    cmp_codecs_release(&cs);
    return out_len;
}

/* fp32 value stream (byte-planar) */
static void put_fp32(uint8_t *dst, const float *v, size_t k)
{
    cmp_fp32_write_xor(v, NULL, k, dst);
}

struct crafted {
    uint8_t raw[256];
    size_t raw_len;
    uint8_t payload[512];
    size_t payload_len;
    struct cmp_meta meta;
};

/* Build a payload from hand-made index bytes + fp32 values, with a
 * correct CRC, so that the decoder gets past the checksum. */
static void craft(struct crafted *c, uint64_t n, uint64_t k,
                  enum cmp_index_coding ic, const uint8_t *ib, size_t ilen,
                  const float *vals, enum cmp_codec codec)
{
    memcpy(c->raw, ib, ilen);
    put_fp32(c->raw + ilen, vals, (size_t)k);
    c->raw_len = ilen + 4 * (size_t)k;
    c->meta.dimension = n;
    c->meta.k = k;
    c->meta.index_coding = ic;
    c->meta.value_coding = CMP_VALUE_FP32;
    c->meta.codec = codec;
    c->meta.raw_size = c->raw_len;
    c->meta.checksum = cmp_crc32(c->raw, c->raw_len);
    c->payload_len =
        pack(codec, c->raw, c->raw_len, c->payload, sizeof c->payload);
}

static enum fl_err decode_crafted(struct cmp_ctx *ctx, const struct crafted *c,
                                  uint64_t dim)
{
    const struct cmp_limits lim = {dim, 0, 0};
    const uint32_t *idx;
    const float *val;
    size_t k;
    return cmp_sparse_decode(ctx, &c->meta, c->payload, c->payload_len, &lim,
                             &idx, &val, &k);
}

static double max_rel_err(enum cmp_value_coding v)
{
    switch (v) {
    case CMP_VALUE_FP32:
        return 0.0;
    case CMP_VALUE_FP16:
        return 1.0 / 2048; /* 2^-11 for normal halves */
    case CMP_VALUE_BF16:
        return 1.0 / 256;  /* 2^-8 */
    case CMP_VALUE_INT8:
        return -1.0;       /* checked against the block scale instead */
    }
    return 0.0;
}

/* ------------------------------------------------------------ round trips */

static void roundtrip_one(struct cmp_ctx *ctx, struct fl_rng *rng,
                          uint64_t n, size_t k, enum cmp_index_coding ic,
                          enum cmp_value_coding vc, enum cmp_codec codec)
{
    uint32_t *idx = malloc(k * sizeof *idx);
    float *orig = malloc(k * sizeof *orig);
    float *val = malloc(k * sizeof *val);
    assert_true(idx && orig && val);
    random_indices(rng, n, k, idx);
    for (size_t j = 0; j < k; j++) {
        orig[j] = (float)(fl_rng_normal(rng) * 0.01);
        if (j % 97 == 5)
            orig[j] = 0.0f;
    }
    memcpy(val, orig, k * sizeof *val);
    const struct cmp_params p = {ic, vc, codec, 1 + (int)(k % 5)};
    struct cmp_meta meta;
    const uint8_t *pl;
    size_t pl_len;
    assert_int_equal(
        cmp_sparse_encode(ctx, n, idx, val, k, &p, &meta, &pl, &pl_len),
        FL_OK);
    assert_int_equal(meta.dimension, n);
    assert_int_equal(meta.k, k);
    assert_int_equal(meta.value_coding, vc);
    assert_int_equal(meta.codec, codec);
    if (ic != CMP_INDEX_AUTO)
        assert_int_equal(meta.index_coding, ic);
    assert_true(pl_len <= cmp_sparse_bound(n, k, &p));

    /* copy the payload: decoding reuses the context's buffers */
    uint8_t *copy = malloc(pl_len + 1);
    assert_non_null(copy);
    memcpy(copy, pl, pl_len);
    const struct cmp_limits lim = {n, 0, 0};
    const uint32_t *didx;
    const float *dval;
    size_t dk;
    assert_int_equal(cmp_sparse_decode(ctx, &meta, copy, pl_len, &lim, &didx,
                                       &dval, &dk),
                     FL_OK);
    assert_int_equal(dk, k);
    assert_memory_equal(didx, idx, k * sizeof *idx);
    assert_memory_equal(dval, val, k * sizeof *val);
    /* the decoder with the norm: the same entries, and the norm of exactly
     * those values as the plain double sum gives it (to rounding) */
    double l2 = -1, ref = 0;
    assert_int_equal(cmp_sparse_decode_l2(ctx, &meta, copy, pl_len, &lim,
                                          &didx, &dval, &dk, &l2),
                     FL_OK);
    assert_int_equal(dk, k);
    assert_memory_equal(didx, idx, k * sizeof *idx);
    assert_memory_equal(dval, val, k * sizeof *val);
    for (size_t j = 0; j < k; j++)
        ref += (double)val[j] * (double)val[j];
    assert_true(fabs(l2 - sqrt(ref)) <= 1e-12 * sqrt(ref));
    assert_true(l2 == sqrt(cmp_sumsq(val, k)));
    const double tol = max_rel_err(vc);
    for (size_t j = 0; j < k; j++) {
        const double e = fabs((double)val[j] - (double)orig[j]);
        if (tol >= 0) {
            /* fp16 subnormals: half of their 2^-24 step */
            const double abs_tol = vc == CMP_VALUE_FP16 ? 0x1p-25 : 0.0;
            assert_true(e <= tol * fabs((double)orig[j]) + abs_tol);
        } else {
            /* int8: half a step of the block's scale */
            const size_t b0 = j / CMP_INT8_BLOCK * CMP_INT8_BLOCK;
            const size_t b1 = FL_MIN(k, b0 + CMP_INT8_BLOCK);
            double amax = 0;
            for (size_t i = b0; i < b1; i++)
                amax = fmax(amax, fabs((double)orig[i]));
            assert_true(e <= amax / 127 * 0.5001 + 1e-12);
        }
    }
    free(copy);
    free(idx);
    free(orig);
    free(val);
}

static void test_roundtrip_all_combinations(void **state)
{
    (void)state;
    static const enum cmp_index_coding ics[] = {
        CMP_INDEX_AUTO, CMP_INDEX_DELTA_VARINT, CMP_INDEX_BITMAP,
        CMP_INDEX_RICE};
    static const enum cmp_value_coding vcs[] = {
        CMP_VALUE_FP32, CMP_VALUE_FP16, CMP_VALUE_BF16, CMP_VALUE_INT8};
    static const enum cmp_codec codecs[] = {CMP_CODEC_NONE, CMP_CODEC_LZ4,
                                            CMP_CODEC_ZSTD};
    static const double dens[] = {1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0};
    struct cmp_ctx *ctx = cmp_ctx_new();
    struct fl_rng rng;
    assert_non_null(ctx);
    fl_rng_seed(&rng, 31337);
    int it = 0;
    for (size_t a = 0; a < FL_ARRAY_LEN(ics); a++) {
        for (size_t b = 0; b < FL_ARRAY_LEN(vcs); b++) {
            for (size_t c = 0; c < FL_ARRAY_LEN(codecs); c++) {
                for (int rep = 0; rep < 3; rep++, it++) {
                    const uint64_t n =
                        it % 23 == 7 ? 1000000
                                     : 1 + fl_rng_below(&rng, rep ? 5000
                                                                  : 200000);
                    const double d = dens[fl_rng_below(&rng, 6)];
                    size_t k = (size_t)ceil(d * (double)n);
                    k = (size_t)FL_MAX(1, FL_MIN(k, n));
                    roundtrip_one(ctx, &rng, n, k, ics[a], vcs[b], codecs[c]);
                }
            }
        }
    }
    /* INDEX_ALL needs k == n */
    for (size_t b = 0; b < FL_ARRAY_LEN(vcs); b++) {
        for (size_t c = 0; c < FL_ARRAY_LEN(codecs); c++) {
            const uint64_t n = 1 + fl_rng_below(&rng, 3000);
            roundtrip_one(ctx, &rng, n, (size_t)n, CMP_INDEX_ALL, vcs[b],
                          codecs[c]);
        }
    }
    cmp_ctx_destroy(&ctx);
    assert_null(ctx);
}

/* The coding AUTO must pick: the smallest of the three (Rice before
 * bitmap on equal sizes), unless varint is at most 1/256 larger than it
 * (varint decodes about twice as fast). */
static enum cmp_index_coding auto_want(const size_t sizes[3], size_t *size)
{
    enum cmp_index_coding c = CMP_INDEX_RICE;
    *size = sizes[2];
    if (sizes[1] < *size) {
        c = CMP_INDEX_BITMAP;
        *size = sizes[1];
    }
    if (sizes[0] <= *size + *size / 256) {
        c = CMP_INDEX_DELTA_VARINT;
        *size = sizes[0];
    }
    return c;
}

static void auto_check(struct cmp_ctx *ctx, const uint32_t *idx, size_t k,
                       uint64_t n, float *val)
{
    unsigned b;
    const size_t sizes[3] = {cmp_varint_size(idx, k),
                             (size_t)cmp_bitmap_size(n),
                             cmp_rice_size(idx, k, &b)};
    size_t want_size;
    const enum cmp_index_coding want = auto_want(sizes, &want_size);
    for (size_t j = 0; j < k; j++)
        val[j] = 1.0f;
    const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP32,
                                 CMP_CODEC_NONE, 0};
    struct cmp_meta meta;
    const uint8_t *pl;
    size_t pl_len;
    assert_int_equal(
        cmp_sparse_encode(ctx, n, idx, val, k, &p, &meta, &pl, &pl_len),
        FL_OK);
    assert_int_equal(meta.index_coding, want);
    assert_int_equal(meta.raw_size, want_size + 4 * k);
    assert_true(pl_len <= cmp_sparse_bound(n, k, &p));
    /* and the Rice choice is at least as good as b-1 and b+1 */
    if (b > 0)
        assert_true(sizes[2] <= cmp_rice_size_b(idx, k, b - 1));
    assert_true(sizes[2] <= cmp_rice_size_b(idx, k, b + 1));
}

static void test_auto_picks_smallest(void **state)
{
    (void)state;
    static const double dens[] = {1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 0.9};
    struct cmp_ctx *ctx = cmp_ctx_new();
    struct fl_rng rng;
    const uint64_t n = 100000;
    uint32_t *idx = malloc(n * sizeof *idx);
    float *val = malloc(n * sizeof *val);
    assert_true(ctx && idx && val);
    fl_rng_seed(&rng, 8);
    for (size_t d = 0; d < FL_ARRAY_LEN(dens); d++) {
        const size_t k = (size_t)(dens[d] * (double)n);
        random_indices(&rng, n, k, idx);
        auto_check(ctx, idx, k, n, val);
    }
    /* Near ties, by table: gaps of 100 (v = 99: one varint byte, 8 Rice
     * bits at b = 6) with every m-th gap short (v < 64: 7 Rice bits), so
     * that Rice is a little smaller. {k, m, coding AUTO must pick} */
    static const struct {
        size_t k;
        size_t m;
        enum cmp_index_coding want;
    } ties[] = {
        {10000, 0, CMP_INDEX_DELTA_VARINT},   /* varint 1 byte smaller */
        {10000, 300, CMP_INDEX_DELTA_VARINT}, /* Rice 3 smaller, slack 39 */
        {10000, 10, CMP_INDEX_RICE},          /* Rice 124 bytes smaller */
        {900, 45, CMP_INDEX_DELTA_VARINT},    /* Rice 1 smaller, slack 3 */
        {900, 20, CMP_INDEX_RICE},            /* Rice 4 bytes smaller */
    };
    for (size_t t = 0; t < FL_ARRAY_LEN(ties); t++) {
        uint64_t next = 0;
        for (size_t j = 0; j < ties[t].k; j++) {
            const uint64_t v = ties[t].m && j % ties[t].m == 0 ? 10 : 99;
            idx[j] = (uint32_t)(next + v);
            next += v + 1;
        }
        unsigned b;
        const size_t vs = cmp_varint_size(idx, ties[t].k);
        const size_t rs = cmp_rice_size(idx, ties[t].k, &b);
        struct cmp_meta meta;
        const uint8_t *pl;
        size_t pl_len;
        const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP32,
                                     CMP_CODEC_NONE, 0};
        for (size_t j = 0; j < ties[t].k; j++)
            val[j] = 1.0f;
        assert_int_equal(cmp_sparse_encode(ctx, 100 * n, idx, val,
                                           ties[t].k, &p, &meta, &pl,
                                           &pl_len), FL_OK);
        if (meta.index_coding != ties[t].want)
            fail_msg("tie %zu: varint %zu Rice %zu bytes: got coding %d",
                     t, vs, rs, meta.index_coding);
        auto_check(ctx, idx, ties[t].k, 100 * n, val);
    }
    cmp_ctx_destroy(&ctx);
    free(idx);
    free(val);
}

/* ------------------------------------------------------------ encoder args */

static void test_encode_bad_args(void **state)
{
    (void)state;
    struct cmp_ctx *ctx = cmp_ctx_new();
    float val[4] = {1, 2, 3, 4};
    const uint8_t *pl;
    size_t len;
    struct cmp_meta meta;
    static const struct {
        uint64_t n;
        uint32_t idx[4];
        size_t k;
        int ic, vc, codec;
        float bad;
        enum fl_err want;
    } cases[] = {
        {10, {1, 2, 3, 4}, 4, CMP_INDEX_AUTO, CMP_VALUE_FP32, CMP_CODEC_NONE,
         0, FL_OK},
        {10, {1, 1, 3, 4}, 4, CMP_INDEX_AUTO, CMP_VALUE_FP32, CMP_CODEC_NONE,
         0, FL_ERR_INVALID_ARG}, /* duplicate */
        {10, {3, 2, 5, 6}, 4, CMP_INDEX_RICE, CMP_VALUE_FP32, CMP_CODEC_NONE,
         0, FL_ERR_INVALID_ARG}, /* decreasing */
        {10, {1, 2, 3, 10}, 4, CMP_INDEX_AUTO, CMP_VALUE_FP32, CMP_CODEC_NONE,
         0, FL_ERR_INVALID_ARG}, /* out of range */
        {10, {1, 2, 3, 4}, 0, CMP_INDEX_AUTO, CMP_VALUE_FP32, CMP_CODEC_NONE,
         0, FL_ERR_INVALID_ARG}, /* k = 0 */
        {3, {0, 1, 2, 3}, 4, CMP_INDEX_AUTO, CMP_VALUE_FP32, CMP_CODEC_NONE,
         0, FL_ERR_INVALID_ARG}, /* k > n */
        {0, {0, 1, 2, 3}, 1, CMP_INDEX_AUTO, CMP_VALUE_FP32, CMP_CODEC_NONE,
         0, FL_ERR_INVALID_ARG}, /* n = 0 */
        {10, {1, 2, 3, 4}, 4, CMP_INDEX_ALL, CMP_VALUE_FP32, CMP_CODEC_NONE,
         0, FL_ERR_INVALID_ARG}, /* ALL needs k == n */
        {10, {1, 2, 3, 4}, 4, 9, CMP_VALUE_FP32, CMP_CODEC_NONE, 0,
         FL_ERR_UNSUPPORTED},
        {10, {1, 2, 3, 4}, 4, CMP_INDEX_AUTO, 0, CMP_CODEC_NONE, 0,
         FL_ERR_UNSUPPORTED},
        {10, {1, 2, 3, 4}, 4, CMP_INDEX_AUTO, CMP_VALUE_FP32, 0, 0,
         FL_ERR_UNSUPPORTED},
        {10, {1, 2, 3, 4}, 4, CMP_INDEX_AUTO, CMP_VALUE_FP16, CMP_CODEC_NONE,
         NAN, FL_ERR_NONFINITE},
        {10, {1, 2, 3, 4}, 4, CMP_INDEX_AUTO, CMP_VALUE_INT8, CMP_CODEC_NONE,
         INFINITY, FL_ERR_NONFINITE},
    };
    assert_non_null(ctx);
    for (size_t c = 0; c < FL_ARRAY_LEN(cases); c++) {
        const struct cmp_params p = {(enum cmp_index_coding)cases[c].ic,
                                     (enum cmp_value_coding)cases[c].vc,
                                     (enum cmp_codec)cases[c].codec, 1};
        float v[4];
        memcpy(v, val, sizeof v);
        if (cases[c].bad != 0 || isnan(cases[c].bad))
            v[2] = cases[c].bad;
        const enum fl_err rc = cmp_sparse_encode(
            ctx, cases[c].n, cases[c].idx, v, cases[c].k, &p, &meta, &pl, &len);
        if (rc != cases[c].want)
            fail_msg("case %zu: got %d want %d", c, rc, cases[c].want);
    }
    const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP32,
                                 CMP_CODEC_NONE, 1};
    const uint32_t idx[1] = {0};
    assert_int_equal(cmp_sparse_encode(ctx, 1, idx, val, 1, NULL, &meta, &pl,
                                       &len), FL_ERR_INVALID_ARG);
    assert_int_equal(cmp_sparse_encode(ctx, 1, NULL, val, 1, &p, &meta, &pl,
                                       &len), FL_ERR_INVALID_ARG);
    assert_int_equal(cmp_sparse_bound(10, 0, &p), 0);
    cmp_ctx_destroy(&ctx);
}

/* ------------------------------------------------------------ validation */

/* A valid payload to corrupt: n = 1000, k = 6, delta-varint, fp32. */
static void valid_case(struct crafted *c, enum cmp_codec codec)
{
    /* 3, 13, 14, 115, 245, 246 */
    const uint8_t ib[7] = {3, 9, 0, 100, 0x81, 0x01, 0};
    const float v[6] = {1.5f, -2.0f, 0.25f, 3.0f, -0.5f, 8.0f};
    craft(c, 1000, 6, CMP_INDEX_DELTA_VARINT, ib, 7, v, codec);
}

static void test_valid_case_decodes(void **state)
{
    (void)state;
    struct cmp_ctx *ctx = cmp_ctx_new();
    struct crafted c;
    const uint32_t want[6] = {3, 13, 14, 115, 245, 246};
    for (int codec = CMP_CODEC_NONE; codec <= CMP_CODEC_ZSTD; codec++) {
        valid_case(&c, (enum cmp_codec)codec);
        const struct cmp_limits lim = {1000, 0, 0};
        const uint32_t *idx;
        const float *val;
        size_t k;
        assert_int_equal(cmp_sparse_decode(ctx, &c.meta, c.payload,
                                           c.payload_len, &lim, &idx, &val,
                                           &k), FL_OK);
        assert_int_equal(k, 6);
        assert_memory_equal(idx, want, sizeof want);
        assert_true(val[5] == 8.0f && val[1] == -2.0f);
        /* the norm variant: its argument is required; a bad payload gives
         * the decoder's error and a norm of 0 */
        double l2 = -1;
        assert_int_equal(cmp_sparse_decode_l2(ctx, &c.meta, c.payload,
                                              c.payload_len, &lim, &idx, &val,
                                              &k, NULL), FL_ERR_INVALID_ARG);
        struct cmp_meta bad = c.meta;
        bad.checksum ^= 1;
        assert_int_equal(cmp_sparse_decode_l2(ctx, &bad, c.payload,
                                              c.payload_len, &lim, &idx, &val,
                                              &k, &l2), FL_ERR_CHECKSUM);
        assert_true(l2 == 0);
    }
    cmp_ctx_destroy(&ctx);
}

/* Metadata errors, in the documented order: each its own code. */
static void test_meta_errors(void **state)
{
    (void)state;
    struct cmp_ctx *ctx = cmp_ctx_new();
    struct crafted c;
    static const struct {
        const char *what;
        int ic, vc, codec;
        uint64_t dim, k, raw_delta, lim_dim, max_k, max_raw;
        enum fl_err want;
    } cases[] = {
        {"ok", 1, 1, 1, 1000, 6, 0, 1000, 0, 0, FL_OK},
        {"index auto on wire", 0, 1, 1, 1000, 6, 0, 1000, 0, 0,
         FL_ERR_UNSUPPORTED},
        {"index 5", 5, 1, 1, 1000, 6, 0, 1000, 0, 0, FL_ERR_UNSUPPORTED},
        {"value 0", 1, 0, 1, 1000, 6, 0, 1000, 0, 0, FL_ERR_UNSUPPORTED},
        {"value 9", 1, 9, 1, 1000, 6, 0, 1000, 0, 0, FL_ERR_UNSUPPORTED},
        {"codec 0", 1, 1, 0, 1000, 6, 0, 1000, 0, 0, FL_ERR_UNSUPPORTED},
        {"codec 4", 1, 1, 4, 1000, 6, 0, 1000, 0, 0, FL_ERR_UNSUPPORTED},
        {"unknown id beats dimension", 7, 1, 1, 5, 6, 0, 1000, 0, 0,
         FL_ERR_UNSUPPORTED},
        {"wrong dimension", 1, 1, 1, 999, 6, 0, 1000, 0, 0, FL_ERR_DIMENSION},
        {"k = 0", 1, 1, 1, 1000, 0, 0, 1000, 0, 0, FL_ERR_K_RANGE},
        {"k > dimension", 1, 1, 1, 1000, 1001, 0, 1000, 0, 0,
         FL_ERR_K_RANGE},
        {"k > max_k", 1, 1, 1, 1000, 6, 0, 1000, 5, 0, FL_ERR_K_RANGE},
        {"ALL with k != n", 4, 1, 1, 1000, 6, 0, 1000, 0, 0, FL_ERR_K_RANGE},
        {"raw too small", 1, 1, 1, 1000, 6, (uint64_t)-1, 1000, 0, 0,
         FL_ERR_RAW_SIZE},
        {"raw too big", 1, 1, 1, 1000, 6, 100, 1000, 0, 0, FL_ERR_RAW_SIZE},
        {"raw huge", 1, 1, 1, 1000, 6, 1ull << 40, 1000, 0, 0,
         FL_ERR_RAW_SIZE},
        {"raw over max_raw_size", 1, 1, 1, 1000, 6, 0, 1000, 0, 20,
         FL_ERR_RAW_SIZE},
    };
    valid_case(&c, CMP_CODEC_NONE);
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        struct cmp_meta m = c.meta;
        m.index_coding = (enum cmp_index_coding)cases[i].ic;
        m.value_coding = (enum cmp_value_coding)cases[i].vc;
        m.codec = (enum cmp_codec)cases[i].codec;
        m.dimension = cases[i].dim;
        m.k = cases[i].k;
        m.raw_size = c.meta.raw_size + cases[i].raw_delta;
        if (cases[i].raw_delta == (uint64_t)-1)
            m.raw_size = 6 + 4 * 6 - 1; /* below k + 4k */
        const struct cmp_limits lim = {cases[i].lim_dim, cases[i].max_k,
                                       cases[i].max_raw};
        const uint32_t *idx;
        const float *val;
        size_t k;
        const enum fl_err rc = cmp_sparse_decode(
            ctx, &m, c.payload, c.payload_len, &lim, &idx, &val, &k);
        if (rc != cases[i].want)
            fail_msg("%s: got %d (%s) want %d", cases[i].what, rc,
                     fl_strerror(rc), cases[i].want);
    }
    /* caller errors */
    const struct cmp_limits zero = {0, 0, 0};
    const uint32_t *idx;
    const float *val;
    size_t k;
    assert_int_equal(cmp_sparse_decode(ctx, &c.meta, c.payload,
                                       c.payload_len, &zero, &idx, &val, &k),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(cmp_sparse_decode(ctx, &c.meta, c.payload,
                                       c.payload_len, NULL, &idx, &val, &k),
                     FL_ERR_INVALID_ARG);
    cmp_ctx_destroy(&ctx);
}

/* Payload-level errors: truncation, trailing data, codec failures. */
static void test_payload_errors(void **state)
{
    (void)state;
    struct cmp_ctx *ctx = cmp_ctx_new();
    struct crafted c;
    assert_non_null(ctx);

    valid_case(&c, CMP_CODEC_NONE); /* no codec: payload is raw */
    c.payload_len--;
    assert_int_equal(decode_crafted(ctx, &c, 1000), FL_ERR_TRUNCATED);
    c.payload_len += 2;
    assert_int_equal(decode_crafted(ctx, &c, 1000), FL_ERR_TRAILING);

    valid_case(&c, CMP_CODEC_ZSTD);
    c.payload_len--;
    assert_int_equal(decode_crafted(ctx, &c, 1000), FL_ERR_CODEC);
    c.payload_len = 3;
    assert_int_equal(decode_crafted(ctx, &c, 1000), FL_ERR_CODEC);
    c.payload_len = 0;
    assert_int_equal(decode_crafted(ctx, &c, 1000), FL_ERR_CODEC);

    valid_case(&c, CMP_CODEC_LZ4);
    c.payload_len--;
    assert_int_equal(decode_crafted(ctx, &c, 1000), FL_ERR_CODEC);

    /* zstd: a second frame after the first, or garbage after it */
    valid_case(&c, CMP_CODEC_ZSTD);
    {
        const size_t one = c.payload_len;
        memcpy(c.payload + one, c.payload, one);
        c.payload_len = 2 * one;
        assert_int_equal(decode_crafted(ctx, &c, 1000), FL_ERR_TRAILING);
        c.payload[one] = 0x00;
        c.payload_len = one + 1;
        assert_int_equal(decode_crafted(ctx, &c, 1000), FL_ERR_TRAILING);
    }

    /* checksum: valid frame, wrong CRC */
    valid_case(&c, CMP_CODEC_ZSTD);
    c.meta.checksum ^= 1;
    assert_int_equal(decode_crafted(ctx, &c, 1000), FL_ERR_CHECKSUM);
    cmp_ctx_destroy(&ctx);
}

/* A zstd bomb: a small payload that expands to far more than declared.
 * With its content size in the header it is refused before decompressing;
 * without it, decompression stops at the declared size. Declaring the huge
 * size itself is refused by the raw-size bound. */
static void test_zstd_bomb(void **state)
{
    (void)state;
    struct cmp_ctx *ctx = cmp_ctx_new();
    const size_t big = 64u << 20;
    uint8_t *zeros = calloc(big, 1);
    const size_t cap = ZSTD_compressBound(big);
    uint8_t *bomb = malloc(cap);
    struct crafted c;
    assert_true(ctx && zeros && bomb);
    valid_case(&c, CMP_CODEC_ZSTD);

    size_t blen = ZSTD_compress(bomb, cap, zeros, big, 1);
    assert_false(ZSTD_isError(blen));
    assert_true(blen < 10000);
    const struct cmp_limits lim = {1000, 0, 0};
    const uint32_t *idx;
    const float *val;
    size_t k;
    assert_int_equal(cmp_sparse_decode(ctx, &c.meta, bomb, blen, &lim, &idx,
                                       &val, &k), FL_ERR_SIZE_MISMATCH);
    struct cmp_meta huge = c.meta;
    huge.raw_size = big;
    assert_int_equal(cmp_sparse_decode(ctx, &huge, bomb, blen, &lim, &idx,
                                       &val, &k), FL_ERR_RAW_SIZE);

    /* no content size in the frame header (streaming API) */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    assert_non_null(cc);
    assert_false(ZSTD_isError(
        ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)));
    ZSTD_outBuffer out = {bomb, cap, 0};
    ZSTD_inBuffer in = {zeros, big, 0};
    size_t rem;
    do {
        rem = ZSTD_compressStream2(cc, &out, &in, ZSTD_e_end);
        assert_false(ZSTD_isError(rem));
    } while (rem != 0);
    ZSTD_freeCCtx(cc);
    assert_int_equal(ZSTD_getFrameContentSize(bomb, out.pos),
                     ZSTD_CONTENTSIZE_UNKNOWN);
    assert_int_equal(cmp_sparse_decode(ctx, &c.meta, bomb, out.pos, &lim,
                                       &idx, &val, &k), FL_ERR_SIZE_MISMATCH);
    free(zeros);
    free(bomb);
    cmp_ctx_destroy(&ctx);
}

/* LZ4 blocks whose output is shorter or longer than declared. */
static void test_lz4_size_mismatch(void **state)
{
    (void)state;
    struct cmp_ctx *ctx = cmp_ctx_new();
    struct crafted c;
    uint8_t blk[256];
    const struct cmp_limits lim = {1000, 0, 0};
    const uint32_t *idx;
    const float *val;
    size_t k;
    valid_case(&c, CMP_CODEC_LZ4);
    /* shorter: the raw stream without its last byte */
    int len = LZ4_compress_default((const char *)c.raw, (char *)blk,
                                   (int)c.raw_len - 1, (int)sizeof blk);
    assert_true(len > 0);
    assert_int_equal(cmp_sparse_decode(ctx, &c.meta, blk, (size_t)len, &lim,
                                       &idx, &val, &k), FL_ERR_SIZE_MISMATCH);
    /* longer: raw plus some bytes; does not fit the declared size */
    uint8_t longer[300];
    memcpy(longer, c.raw, c.raw_len);
    memset(longer + c.raw_len, 7, 40);
    len = LZ4_compress_default((const char *)longer, (char *)blk,
                               (int)c.raw_len + 40, (int)sizeof blk);
    assert_true(len > 0);
    assert_int_equal(cmp_sparse_decode(ctx, &c.meta, blk, (size_t)len, &lim,
                                       &idx, &val, &k), FL_ERR_CODEC);
    cmp_ctx_destroy(&ctx);
}

/* Index streams with a valid CRC: the index check itself is reached. */
static void test_index_errors(void **state)
{
    (void)state;
    struct cmp_ctx *ctx = cmp_ctx_new();
    struct crafted c;
    const float v[4] = {1, 2, 3, 4};
    static const struct {
        const char *what;
        uint64_t n, k;
        int ic;
        uint8_t ib[16];
        size_t ilen;
        enum fl_err want;
    } cases[] = {
        {"varint ok", 100, 3, 1, {5, 0, 90}, 3, FL_OK},
        {"varint last index == n", 100, 3, 1, {5, 0, 93}, 3,
         FL_ERR_INDEX_RANGE},
        {"varint first index >= n", 100, 1, 1, {100}, 1, FL_ERR_INDEX_RANGE},
        {"varint gap past 2^32", 1ull << 32, 2, 1,
         {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
         6, FL_ERR_INDEX_RANGE},
        {"varint ends early", 1000, 3, 1, {5, 0x80, 0x81}, 3,
         FL_ERR_TRUNCATED},
        {"varint trailing byte", 1000, 2, 1, {5, 6, 7}, 3, FL_ERR_TRAILING},
        {"varint non-canonical", 1000, 2, 1, {0x85, 0x00, 7}, 3,
         FL_ERR_FORMAT},
        {"varint 6 bytes", 1ull << 32, 2, 1,
         {0x80, 0x80, 0x80, 0x80, 0x81, 0x01, 1}, 7, FL_ERR_FORMAT},
        {"bitmap ok", 16, 2, 2, {0x05, 0x00}, 2, FL_OK},
        {"bitmap too many bits", 16, 2, 2, {0x07, 0x00}, 2, FL_ERR_TRAILING},
        {"bitmap too few bits", 16, 3, 2, {0x05, 0x00}, 2, FL_ERR_TRUNCATED},
        {"bitmap bit >= n", 12, 2, 2, {0x01, 0x10}, 2, FL_ERR_INDEX_RANGE},
        /* Rice b = 2: values 1 (0 01), 5 (10 01): bits 0011001 0 */
        {"rice ok", 100, 2, 3, {2, 0x32}, 2, FL_OK},
        {"rice parameter 32", 100, 2, 3, {32, 0x32}, 2, FL_ERR_FORMAT},
        {"rice index >= n", 6, 2, 3, {2, 0x32}, 2, FL_ERR_INDEX_RANGE},
        {"rice long unary >= n", 20, 1, 3, {0, 0xff, 0xff, 0xff}, 4,
         FL_ERR_INDEX_RANGE},
        {"rice ends in unary", 1000, 2, 3, {2, 0x3f}, 2, FL_ERR_TRUNCATED},
        {"rice ends in low bits", 1000, 2, 3, {4, 0x00}, 2, FL_ERR_TRUNCATED},
        {"rice padding not zero", 100, 2, 3, {2, 0x33}, 2, FL_ERR_TRAILING},
        {"rice trailing byte", 100, 2, 3, {2, 0x32, 0x00}, 3,
         FL_ERR_TRAILING},
    };
    assert_non_null(ctx);
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        craft(&c, cases[i].n, cases[i].k, (enum cmp_index_coding)cases[i].ic,
              cases[i].ib, cases[i].ilen, v, CMP_CODEC_NONE);
        const enum fl_err rc = decode_crafted(ctx, &c, cases[i].n);
        if (rc != cases[i].want)
            fail_msg("%s: got %d (%s) want %d", cases[i].what, rc,
                     fl_strerror(rc), cases[i].want);
    }
    cmp_ctx_destroy(&ctx);
}

/* Non-finite and malformed values, with valid CRCs. */
static void test_value_errors(void **state)
{
    (void)state;
    struct cmp_ctx *ctx = cmp_ctx_new();
    static const struct {
        const char *what;
        int vc;
        uint8_t vb[16];
        size_t vlen;
        enum fl_err want;
    } cases[] = {
        /* k = 2 values; planar byte order */
        {"fp32 ok", 1, {0, 0, 0, 0, 0x80, 0, 0x3f, 0x3f}, 8, FL_OK},
        {"fp32 NaN", 1, {0, 1, 0, 0, 0xc0, 0, 0x7f, 0x3f}, 8,
         FL_ERR_NONFINITE},
        {"fp32 -Inf", 1, {0, 0, 0, 0, 0x80, 0, 0xff, 0x3f}, 8,
         FL_ERR_NONFINITE},
        {"fp16 ok", 2, {0x00, 0xff, 0x3c, 0x7b}, 4, FL_OK},
        {"fp16 Inf", 2, {0x00, 0x00, 0x7c, 0x3c}, 4, FL_ERR_NONFINITE},
        {"fp16 NaN", 2, {0x01, 0x00, 0xfc, 0x3c}, 4, FL_ERR_NONFINITE},
        {"bf16 ok", 3, {0x80, 0x7f, 0x3f, 0x7f}, 4, FL_OK},
        {"bf16 NaN", 3, {0xc0, 0x00, 0x7f, 0x3f}, 4, FL_ERR_NONFINITE},
        /* int8: scale (LE fp32), then q0 q1 */
        {"int8 ok", 4, {0, 0, 0x80, 0x3f, 1, 0x81}, 6, FL_OK},
        {"int8 scale Inf", 4, {0, 0, 0x80, 0x7f, 1, 2}, 6, FL_ERR_NONFINITE},
        {"int8 scale NaN", 4, {1, 0, 0x80, 0x7f, 1, 2}, 6, FL_ERR_NONFINITE},
        {"int8 scale negative", 4, {0, 0, 0x80, 0xbf, 1, 2}, 6,
         FL_ERR_FORMAT},
        {"int8 scale -0 ok", 4, {0, 0, 0, 0x80, 1, 2}, 6, FL_OK},
        {"int8 q = -128", 4, {0, 0, 0x80, 0x3f, 0x80, 2}, 6, FL_ERR_FORMAT},
        {"int8 q*scale overflows", 4, {0xff, 0xff, 0x7f, 0x7f, 127, 2}, 6,
         FL_ERR_NONFINITE},
    };
    assert_non_null(ctx);
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        uint8_t raw[32];
        raw[0] = 0;
        raw[1] = 0; /* varint indices 0, 1 */
        memcpy(raw + 2, cases[i].vb, cases[i].vlen);
        struct cmp_meta m = {10, 2, CMP_INDEX_DELTA_VARINT,
                             (enum cmp_value_coding)cases[i].vc,
                             CMP_CODEC_NONE, 2 + cases[i].vlen, 0};
        m.checksum = cmp_crc32(raw, 2 + cases[i].vlen);
        const struct cmp_limits lim = {10, 0, 0};
        const uint32_t *idx;
        const float *val;
        size_t k;
        const enum fl_err rc = cmp_sparse_decode(ctx, &m, raw, 2 + cases[i].vlen,
                                                 &lim, &idx, &val, &k);
        if (rc != cases[i].want)
            fail_msg("%s: got %d (%s) want %d", cases[i].what, rc,
                     fl_strerror(rc), cases[i].want);
    }
    cmp_ctx_destroy(&ctx);
}

/* Random corruption of real payloads: never a crash, never OK with
 * different content, and a flipped bit is (almost always) caught. */
static void test_bit_flips_and_truncations(void **state)
{
    (void)state;
    static const enum cmp_codec codecs[] = {CMP_CODEC_NONE, CMP_CODEC_LZ4,
                                            CMP_CODEC_ZSTD};
    struct cmp_ctx *ctx = cmp_ctx_new();
    struct fl_rng rng;
    const uint64_t n = 5000;
    const size_t k = 120;
    uint32_t idx[120];
    float val[120];
    assert_non_null(ctx);
    fl_rng_seed(&rng, 4);
    for (size_t ci = 0; ci < FL_ARRAY_LEN(codecs); ci++) {
        for (int vc = CMP_VALUE_FP32; vc <= CMP_VALUE_INT8; vc++) {
            random_indices(&rng, n, k, idx);
            for (size_t j = 0; j < k; j++)
                val[j] = (float)fl_rng_normal(&rng);
            const struct cmp_params p = {CMP_INDEX_AUTO,
                                         (enum cmp_value_coding)vc,
                                         codecs[ci], 3};
            struct cmp_meta meta;
            const uint8_t *pl;
            size_t len;
            assert_int_equal(cmp_sparse_encode(ctx, n, idx, val, k, &p, &meta,
                                               &pl, &len), FL_OK);
            uint8_t *good = malloc(len);
            uint8_t *bad = malloc(len);
            assert_true(good && bad);
            memcpy(good, pl, len);
            const struct cmp_limits lim = {n, 0, 0};
            const uint32_t *didx;
            const float *dval;
            size_t dk;
            int caught = 0;
            for (int f = 0; f < 200; f++) {
                memcpy(bad, good, len);
                const size_t bit = (size_t)fl_rng_below(&rng, len * 8);
                bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                const enum fl_err rc = cmp_sparse_decode(
                    ctx, &meta, bad, len, &lim, &didx, &dval, &dk);
                if (rc != FL_OK) {
                    caught++;
                } else { /* only possible if the content is unchanged */
                    assert_memory_equal(didx, idx, k * sizeof *idx);
                    assert_memory_equal(dval, val, k * sizeof *val);
                }
                const size_t cut = (size_t)fl_rng_below(&rng, len);
                assert_int_not_equal(cmp_sparse_decode(ctx, &meta, good, cut,
                                                       &lim, &didx, &dval,
                                                       &dk), FL_OK);
            }
            assert_true(caught >= 190);
            free(good);
            free(bad);
        }
    }
    cmp_ctx_destroy(&ctx);
}

/* ------------------------------------------------------------ dense */

static void test_dense_roundtrip(void **state)
{
    (void)state;
    static const enum cmp_codec codecs[] = {CMP_CODEC_NONE, CMP_CODEC_LZ4,
                                            CMP_CODEC_ZSTD};
    struct cmp_ctx *ctx = cmp_ctx_new();
    struct fl_rng rng;
    assert_non_null(ctx);
    fl_rng_seed(&rng, 21);
    for (int it = 0; it < 12; it++) {
        const size_t n = 1 + (size_t)fl_rng_below(&rng, it == 5 ? 1000000 : 50000);
        float *x = malloc(n * sizeof *x);
        float *base = malloc(n * sizeof *base);
        float *out = malloc(n * sizeof *out);
        assert_true(x && base && out);
        for (size_t i = 0; i < n; i++) {
            base[i] = (float)fl_rng_normal(&rng);
            /* a model step: most entries unchanged */
            x[i] = fl_rng_below(&rng, 10) == 0
                       ? base[i] + (float)fl_rng_normal(&rng) * 0.01f
                       : base[i];
        }
        const enum cmp_codec codec = codecs[it % 3];
        const int use_base = it % 2;
        struct cmp_meta meta;
        const uint8_t *pl;
        size_t len;
        assert_int_equal(cmp_dense_encode(ctx, x, n, use_base ? base : NULL,
                                          codec, 3, &meta, &pl, &len), FL_OK);
        assert_int_equal(meta.k, n);
        assert_int_equal(meta.index_coding, CMP_INDEX_ALL);
        assert_int_equal(meta.value_coding, CMP_VALUE_FP32);
        assert_int_equal(meta.raw_size, 4 * n);
        uint8_t *copy = malloc(len + 1);
        assert_non_null(copy);
        memcpy(copy, pl, len);
        const struct cmp_limits lim = {n, 0, 0};
        assert_int_equal(cmp_dense_decode(ctx, &meta, copy, len, &lim,
                                          use_base ? base : NULL, out), FL_OK);
        assert_memory_equal(out, x, n * sizeof *x);
        if (use_base) { /* in place: out aliases base */
            assert_int_equal(cmp_dense_decode(ctx, &meta, copy, len, &lim,
                                              base, base), FL_OK);
            assert_memory_equal(base, x, n * sizeof *x);
        }
        /* the same payload also decodes through the sparse API */
        if (!use_base) {
            const uint32_t *di;
            const float *dv;
            size_t dk;
            assert_int_equal(cmp_sparse_decode(ctx, &meta, copy, len, &lim,
                                               &di, &dv, &dk), FL_OK);
            assert_int_equal(dk, n);
            assert_int_equal(di[n - 1], n - 1);
            assert_memory_equal(dv, x, n * sizeof *x);
        }
        free(copy);
        free(x);
        free(base);
        free(out);
    }
    cmp_ctx_destroy(&ctx);
}

/* XOR deltas of an unchanged model compress to almost nothing. */
static void test_dense_xor_small(void **state)
{
    (void)state;
    struct cmp_ctx *ctx = cmp_ctx_new();
    const size_t n = 200000;
    float *x = malloc(n * sizeof *x);
    struct fl_rng rng;
    struct cmp_meta meta;
    const uint8_t *pl;
    size_t len;
    assert_true(ctx && x);
    fl_rng_seed(&rng, 2);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)fl_rng_normal(&rng);
    assert_int_equal(cmp_dense_encode(ctx, x, n, x, CMP_CODEC_ZSTD, 3, &meta,
                                      &pl, &len), FL_OK);
    assert_true(len < 200);
    assert_int_equal(cmp_dense_encode(ctx, x, n, NULL, CMP_CODEC_ZSTD, 3,
                                      &meta, &pl, &len), FL_OK);
    assert_true(len > n * 3);
    free(x);
    cmp_ctx_destroy(&ctx);
}

static void test_dense_errors(void **state)
{
    (void)state;
    struct cmp_ctx *ctx = cmp_ctx_new();
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float base[8] = {0};
    float out[8];
    const float sentinel[8] = {9, 9, 9, 9, 9, 9, 9, 9};
    struct cmp_meta meta;
    const uint8_t *pl;
    size_t len;
    const struct cmp_limits lim = {8, 0, 0};
    assert_non_null(ctx);
    assert_int_equal(cmp_dense_encode(ctx, x, 8, NULL, CMP_CODEC_NONE, 0,
                                      &meta, &pl, &len), FL_OK);
    uint8_t raw[32];
    memcpy(raw, pl, len);
    struct cmp_meta m = meta;
    m.value_coding = CMP_VALUE_FP16;
    assert_int_equal(cmp_dense_decode(ctx, &m, raw, len, &lim, NULL, out),
                     FL_ERR_UNSUPPORTED);
    m = meta;
    m.index_coding = CMP_INDEX_DELTA_VARINT;
    assert_int_equal(cmp_dense_decode(ctx, &m, raw, len, &lim, NULL, out),
                     FL_ERR_UNSUPPORTED);
    m = meta;
    m.k = 7;
    assert_int_equal(cmp_dense_decode(ctx, &m, raw, len, &lim, NULL, out),
                     FL_ERR_K_RANGE);
    m = meta;
    m.dimension = 9;
    assert_int_equal(cmp_dense_decode(ctx, &m, raw, len, &lim, NULL, out),
                     FL_ERR_DIMENSION);
    m = meta;
    m.raw_size = 31;
    assert_int_equal(cmp_dense_decode(ctx, &m, raw, len, &lim, NULL, out),
                     FL_ERR_RAW_SIZE);
    /* a base that turns a value into NaN: out must stay untouched */
    base[3] = cmp_bits_f32(0x7fc00000u ^ cmp_f32_bits(x[3]));
    memcpy(out, sentinel, sizeof out);
    assert_int_equal(cmp_dense_decode(ctx, &meta, raw, len, &lim, base, out),
                     FL_ERR_NONFINITE);
    assert_memory_equal(out, sentinel, sizeof out);
    raw[0] ^= 1;
    assert_int_equal(cmp_dense_decode(ctx, &meta, raw, len, &lim, NULL, out),
                     FL_ERR_CHECKSUM);
    assert_memory_equal(out, sentinel, sizeof out);
    x[2] = INFINITY;
    assert_int_equal(cmp_dense_encode(ctx, x, 8, NULL, CMP_CODEC_NONE, 0,
                                      &meta, &pl, &len), FL_ERR_NONFINITE);
    assert_int_equal(cmp_dense_encode(ctx, x, 8, NULL, (enum cmp_codec)7, 0,
                                      &meta, &pl, &len), FL_ERR_UNSUPPORTED);
    cmp_ctx_destroy(&ctx);
}

/* ------------------------------------------------------------ Rice */

/* The Rice decoder of docs/wire-format.md 12.3.3 one bit at a time: the
 * reference the fast decoder must agree with, error code included. */
static int ref_bit(const uint8_t *s, uint64_t pos)
{
    return (s[pos >> 3] >> (7 - (pos & 7))) & 1;
}

static enum fl_err rice_ref(const uint8_t *src, size_t len, uint64_t n,
                            size_t k, uint32_t *idx)
{
    if (len < 1)
        return FL_ERR_TRUNCATED;
    const unsigned b = src[0];
    if (b > 31)
        return FL_ERR_FORMAT;
    const uint8_t *s = src + 1;
    const uint64_t nbits = (uint64_t)(len - 1) * 8;
    const uint64_t qmax = (n - 1) >> b;
    uint64_t pos = 0;
    uint64_t next = 0;
    for (size_t j = 0; j < k; j++) {
        uint64_t q = 0;
        for (;;) {
            if (pos == nbits)
                return FL_ERR_TRUNCATED;
            if (!ref_bit(s, pos++))
                break;
            if (++q > qmax)
                return FL_ERR_INDEX_RANGE;
        }
        uint64_t low = 0;
        for (unsigned i = 0; i < b; i++) {
            if (pos == nbits)
                return FL_ERR_TRUNCATED;
            low = low << 1 | (uint64_t)ref_bit(s, pos++);
        }
        const uint64_t i = next + ((q << b) | low);
        if (i >= n)
            return FL_ERR_INDEX_RANGE;
        idx[j] = (uint32_t)i;
        next = i + 1;
    }
    if ((pos + 7) / 8 != len - 1)
        return FL_ERR_TRAILING;
    for (; pos < nbits; pos++) {
        if (ref_bit(s, pos))
            return FL_ERR_TRAILING;
    }
    return FL_OK;
}

/* Both decoders on one stream: same verdict, same indices when OK. */
static void rice_agree(const uint8_t *s, size_t len, uint64_t n, size_t k,
                       uint32_t *got, uint32_t *want, const char *what)
{
    const enum fl_err rg = cmp_rice_read(s, len, n, k, got);
    const enum fl_err rw = rice_ref(s, len, n, k, want);
    if (rg != rw)
        fail_msg("%s: len %zu n %" PRIu64 " k %zu b %u: got %d want %d", what,
                 len, n, k, len ? s[0] : 0, rg, rw);
    if (rw == FL_OK && k > 0)
        assert_memory_equal(got, want, k * sizeof *got);
}

/* Gaps of several shapes: geometric around a mean, long unary runs (gaps
 * far above 2^b, so codes longer than the 64-bit buffer), and gaps near
 * the top of a 2^32 dimension. */
static uint64_t rice_gaps(struct fl_rng *rng, int shape, unsigned b,
                          uint32_t *idx, size_t k, uint64_t n)
{
    uint64_t next = 0;
    for (size_t j = 0; j < k; j++) {
        uint64_t v;
        switch (shape) {
        case 0: /* geometric, mean about 2^b */
            v = (uint64_t)(-log(1.0 - fl_rng_uniform(rng)) * (double)(1u << b));
            break;
        case 1: /* now and then a unary run of up to 300 ones */
            v = fl_rng_below(rng, 8) == 0
                    ? ((uint64_t)fl_rng_below(rng, 300) << b) +
                          fl_rng_below(rng, 1ull << b)
                    : fl_rng_below(rng, 2ull << b);
            break;
        default: /* huge gaps: the indices spread over all of n */
            v = fl_rng_below(rng, (n - next) / (k - j + 1) + 1);
            break;
        }
        if (next + v >= n - (k - 1 - j))
            v = n - (k - 1 - j) - 1 - next; /* keep room for the rest */
        idx[j] = (uint32_t)(next + v);
        next += v + 1;
    }
    return next;
}

/* Valid streams for every parameter 0..31 and several gap shapes decode
 * to what was written; then the same streams mutated (bit flips, cut,
 * extended, another parameter byte, a smaller n) give the reference's
 * verdict. Lengths vary so that the bulk loop, the tail refill and the
 * slow path all meet every kind of fault. */
static void test_rice_vs_reference(void **state)
{
    (void)state;
    enum { KMAX = 700 };
    static uint32_t idx[KMAX];
    static uint32_t got[KMAX];
    static uint32_t want[KMAX];
    static uint8_t s[KMAX * 48 + 64];
    static uint8_t m[sizeof s];
    struct fl_rng rng;
    fl_rng_seed(&rng, 424242);
    for (unsigned b = 0; b <= 31; b++) {
        for (int shape = 0; shape < 3; shape++) {
            const size_t k = 1 + (size_t)fl_rng_below(&rng, KMAX);
            const uint64_t n = shape == 2 ? (1ull << 32) - fl_rng_below(&rng, 3)
                                          : ((uint64_t)k << (b + 1)) + 400 * k;
            if (shape == 2 && b < 20)
                continue; /* unary codes of 2^(32-b) bits: too long */
            rice_gaps(&rng, shape, b, idx, k, FL_MIN(n, 1ull << 32));
            const size_t len = cmp_rice_size_b(idx, k, b);
            assert_true(len + 8 <= sizeof s);
            assert_int_equal(cmp_rice_write(idx, k, b, s), len);
            assert_int_equal(cmp_rice_read(s, len, n, k, got), FL_OK);
            assert_memory_equal(got, idx, k * sizeof *got);
            rice_agree(s, len, n, k, got, want, "valid");
            /* the last index exactly at n - 1, and one below the limit */
            rice_agree(s, len, (uint64_t)idx[k - 1] + 1, k, got, want,
                       "n=last+1");
            rice_agree(s, len, idx[k - 1], k, got, want, "n=last");
            for (int t = 0; t < 40; t++) {
                size_t ml = len;
                uint64_t mn = n;
                size_t mk = k;
                memcpy(m, s, len + 8);
                switch (t % 5) {
                case 0: /* flip one bit after the parameter byte */
                    if (len > 1) {
                        const size_t at =
                            1 + (size_t)fl_rng_below(&rng, len - 1);
                        m[at] ^= (uint8_t)(1u << fl_rng_below(&rng, 8));
                    }
                    break;
                case 1: /* cut */
                    ml = (size_t)fl_rng_below(&rng, len + 1);
                    break;
                case 2: /* extend with a zero or random byte */
                    m[ml] = t % 2 ? 0 : (uint8_t)fl_rng_next(&rng);
                    ml++;
                    break;
                case 3: /* another parameter, another k */
                    m[0] = (uint8_t)fl_rng_below(&rng, 34);
                    mk = 1 + (size_t)fl_rng_below(&rng, KMAX);
                    break;
                default: /* a smaller dimension */
                    mn = 1 + fl_rng_below(&rng, (uint64_t)idx[k - 1] + 1);
                    break;
                }
                rice_agree(m, ml, mn, mk, got, want, "mutated");
            }
        }
    }
    /* garbage of every length up to 80 bytes, all-ones runs included */
    for (int t = 0; t < 3000; t++) {
        const size_t len = (size_t)fl_rng_below(&rng, 81);
        for (size_t i = 0; i < len; i++)
            m[i] = t % 3 == 0 ? 0xff : (uint8_t)fl_rng_next(&rng);
        if (len > 0)
            m[0] = (uint8_t)fl_rng_below(&rng, 33);
        const size_t k = 1 + (size_t)fl_rng_below(&rng, 200);
        const uint64_t n = 1 + fl_rng_below(&rng, t % 2 ? 1ull << 32 : 5000);
        rice_agree(m, len, n, k, got, want, "garbage");
    }
}

/* Append the nbits low bits of v, MSB first, at bit pos of s. */
static void put_bits(uint8_t *s, uint64_t *pos, uint64_t v, unsigned nbits)
{
    while (nbits-- > 0) {
        if ((v >> nbits) & 1)
            s[*pos >> 3] |= (uint8_t)(0x80u >> (*pos & 7));
        (*pos)++;
    }
}

/* Hand-made streams at the edges: parameter 0 and 31, a unary run longer
 * than 64 bits, an index of 2^32 - 1. */
static void test_rice_edges(void **state)
{
    (void)state;
    uint32_t got[4];
    uint32_t want[4];
    /* b = 0: v = 70 (70 ones, a zero), then v = 0 (a zero): 72 bits */
    uint8_t s1[1 + 9 + 8] = {0};
    memset(s1 + 1, 0xff, 8);
    s1[9] = 0xfc; /* 6 more ones (70 in all), zero, zero */
    assert_int_equal(cmp_rice_read(s1, 10, 1000, 2, got), FL_OK);
    assert_int_equal(got[0], 70);
    assert_int_equal(got[1], 71);
    rice_agree(s1, 10, 1000, 2, got, want, "b=0 long run");
    assert_int_equal(cmp_rice_read(s1, 10, 71, 2, got), FL_ERR_INDEX_RANGE);
    assert_int_equal(cmp_rice_read(s1, 10, 70, 2, got), FL_ERR_INDEX_RANGE);
    assert_int_equal(cmp_rice_read(s1, 9, 1000, 2, got), FL_ERR_TRUNCATED);
    /* b = 31: first index 2^32 - 2 = (1 << 31) + (2^31 - 2): q = 1, then
     * index 2^32 - 1 (v = 0): bits 1 0 <31 bits> 0 <31 zero bits> */
    uint32_t idx2[2] = {0xfffffffeu, 0xffffffffu};
    uint8_t s2[16];
    const size_t l2 = cmp_rice_size_b(idx2, 2, 31);
    assert_int_equal(cmp_rice_write(idx2, 2, 31, s2), l2);
    assert_int_equal(cmp_rice_read(s2, l2, 1ull << 32, 2, got), FL_OK);
    assert_int_equal(got[0], 0xfffffffeu);
    assert_int_equal(got[1], 0xffffffffu);
    assert_int_equal(cmp_rice_read(s2, l2, (1ull << 32) - 1, 2, got),
                     FL_ERR_INDEX_RANGE);
    rice_agree(s2, l2, 1ull << 32, 2, got, want, "b=31");
    /* a gap that would pass 2^32 is out of range, never wrapped: index
     * 2^32 - 2 (q = 1, low 2^31 - 2), then v = 1 (q = 0, low 1) */
    uint8_t s3[12] = {31};
    uint64_t pos = 0;
    put_bits(s3 + 1, &pos, 2, 2);                   /* 1 0 */
    put_bits(s3 + 1, &pos, (1u << 31) - 2, 31);
    put_bits(s3 + 1, &pos, 0, 1);                   /* q = 0 */
    put_bits(s3 + 1, &pos, 1, 31);
    const size_t l3 = 1 + (size_t)(pos + 7) / 8;
    rice_agree(s3, l3, 1ull << 32, 2, got, want, "past 2^32");
    assert_int_equal(cmp_rice_read(s3, l3, 1ull << 32, 2, got),
                     FL_ERR_INDEX_RANGE);
}

/* ------------------------------------------------------------ aggregate */

static void test_scatter_add(void **state)
{
    (void)state;
    float acc[10] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const uint32_t idx[5] = {0, 3, 4, 8, 9};
    const float val[5] = {1, -2, 0.5f, 4, 8};
    cmp_scatter_add(acc, idx, val, 5, 0.5f);
    const float want[10] = {1.5f, 1, 1, 0, 1.25f, 1, 1, 1, 3, 5};
    assert_memory_equal(acc, want, sizeof acc);
    cmp_scatter_add(acc, idx, val, 0, 2.0f);
    assert_memory_equal(acc, want, sizeof acc);
    /* every k around the unrolled, prefetching and tail loops, against a
     * plain loop (seeded random distinct sorted indices) */
    enum { N = 4096 };
    static float big[N], ref[N];
    static uint32_t bi[N];
    static float bv[N];
    struct fl_rng r;
    fl_rng_seed(&r, 31);
    for (size_t k = 60; k <= 140; k++) {
        size_t c = 0;
        for (uint32_t j = 0; j < N && c < k; j++)
            if (fl_rng_below(&r, N) < 4 * k)
                bi[c++] = j;
        for (size_t j = 0; j < c; j++)
            bv[j] = (float)fl_rng_below(&r, 1000) / 8.0f - 60.0f;
        for (size_t j = 0; j < N; j++)
            big[j] = ref[j] = (float)j;
        cmp_scatter_add(big, bi, bv, c, 0.25f);
        for (size_t j = 0; j < c; j++)
            ref[bi[j]] += 0.25f * bv[j];
        assert_memory_equal(big, ref, sizeof big);
    }
}

/* ------------------------------------------------------------ crc */

/* cmp_crc32 (folding with VPCLMULQDQ or PCLMULQDQ where available) must
 * equal zlib's crc32 for every length and alignment, and so must every
 * method the CPU has (cmp_crc32_impl limited to each level in turn). */
static void test_crc_matches_zlib(void **state)
{
    (void)state;
    const size_t big = 1 << 20;
    uint8_t *buf = malloc(big + 64);
    struct fl_rng rng;
    assert_non_null(buf);
    fl_rng_seed(&rng, 12);
    for (size_t i = 0; i < big + 64; i++)
        buf[i] = (uint8_t)fl_rng_next(&rng);
    assert_int_equal(cmp_crc32((const uint8_t *)"123456789", 9), 0xcbf43926u);
    for (int level = 0; level <= 3; level++) {
        for (size_t len = 0; len <= 1100; len++) {
            const size_t off = len % 17;
            if (cmp_crc32_impl(buf + off, len, level) !=
                (uint32_t)crc32_z(0, buf + off, len))
                fail_msg("level %d len %zu off %zu", level, len, off);
        }
        for (int r = 0; r < 30; r++) {
            const size_t off = (size_t)fl_rng_below(&rng, 64);
            const size_t len = (size_t)fl_rng_below(&rng, big);
            assert_int_equal(cmp_crc32_impl(buf + off, len, level),
                             (uint32_t)crc32_z(0, buf + off, len));
        }
    }
    for (size_t r = 0; r < 50; r++) {
        const size_t off = (size_t)fl_rng_below(&rng, 64);
        const size_t len = (size_t)fl_rng_below(&rng, big);
        assert_int_equal(cmp_crc32(buf + off, len),
                         (uint32_t)crc32_z(0, buf + off, len));
    }
    memset(buf, 0, 4096); /* all zeros and all ones */
    assert_int_equal(cmp_crc32(buf, 4096), (uint32_t)crc32_z(0, buf, 4096));
    memset(buf, 0xff, 4096);
    assert_int_equal(cmp_crc32(buf, 4096), (uint32_t)crc32_z(0, buf, 4096));
    free(buf);
}

/* ------------------------------------------------------------ zstd parts */

/* Where the raw stream is cut for the codec: {isize, coding, k} ->
 * part ends; parts below CMP_MIN_PART (256) bytes merge forward. */
static void test_parts_table(void **state)
{
    (void)state;
    static const struct {
        size_t isize;
        int vc;
        size_t k;
        size_t n;
        size_t ends[CMP_MAX_PARTS];
    } cases[] = {
        {1000, CMP_VALUE_FP16, 1000, 3, {1000, 2000, 3000}},
        {1000, CMP_VALUE_FP32, 1000, 5, {1000, 2000, 3000, 4000, 5000}},
        {1000, CMP_VALUE_BF16, 100, 1, {1200}},          /* planes too small */
        {100, CMP_VALUE_FP16, 1000, 2, {1100, 2100}},    /* index merged */
        {0, CMP_VALUE_FP32, 300, 4, {300, 600, 900, 1200}}, /* dense */
        {500, CMP_VALUE_INT8, 20000, 3, {500, 816, 20816}}, /* scales 316 B */
        {500, CMP_VALUE_INT8, 1000, 2, {500, 1516}},     /* scales merged */
        {10, CMP_VALUE_FP16, 5, 1, {20}},
        {0, CMP_VALUE_FP16, 0, 1, {0}},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        struct cmp_parts pt;
        cmp_parts_of(&pt, cases[i].isize, (enum cmp_value_coding)cases[i].vc,
                     cases[i].k);
        if (pt.n != cases[i].n)
            fail_msg("case %zu: %zu parts, want %zu", i, pt.n, cases[i].n);
        assert_memory_equal(pt.ends, cases[i].ends, pt.n * sizeof pt.ends[0]);
        assert_int_equal(pt.literal, 0);
    }
}

/* Number of blocks of a single zstd frame (RFC 8878 3.1.1), -1 if bad. */
static int zstd_blocks(const uint8_t *f, size_t len)
{
    if (len < 6 || f[0] != 0x28 || f[1] != 0xb5 || f[2] != 0x2f ||
        f[3] != 0xfd)
        return -1;
    const uint8_t fhd = f[4];
    static const size_t fcs_len[4] = {0, 2, 4, 8};
    static const size_t did_len[4] = {0, 1, 2, 4};
    const int single = (fhd >> 5) & 1;
    size_t fcs = fcs_len[fhd >> 6];
    if (fcs == 0 && single)
        fcs = 1;
    size_t pos = 5 + (single ? 0 : 1) + did_len[fhd & 3] + fcs;
    int blocks = 0;
    for (;;) {
        if (pos + 3 > len)
            return -1;
        const uint32_t bh = (uint32_t)f[pos] | (uint32_t)f[pos + 1] << 8 |
                            (uint32_t)f[pos + 2] << 16;
        const uint32_t type = (bh >> 1) & 3;
        const size_t size = type == 1 ? 1 : bh >> 3; /* RLE: one byte */
        pos += 3 + size;
        blocks++;
        if (bh & 1)
            break;
    }
    return pos + ((fhd >> 2) & 1) * 4 == len ? blocks : -1;
}

/* Sparse payloads with zstd are one frame, with a block boundary at every
 * part (at least one block per part), the content size in the header and
 * within cmp_sparse_bound(); and compressing the parts apart beats one
 * mixed block on a typical top-k update (fp16 halves: random low bytes,
 * skewed high bytes). */
static void test_zstd_parts_frame(void **state)
{
    (void)state;
    const uint64_t n = 1000000;
    const size_t k = 10000;
    uint32_t *idx = malloc(k * sizeof *idx);
    float *val = malloc(k * sizeof *val);
    float *v2 = malloc(k * sizeof *v2);
    uint8_t *raw = malloc(8 * k + 64);
    uint8_t *mixed = malloc(ZSTD_compressBound(8 * k + 64));
    struct cmp_ctx *ctx = cmp_ctx_new();
    struct fl_rng rng;
    assert_true(idx && val && v2 && raw && mixed && ctx);
    fl_rng_seed(&rng, 77);
    random_indices(&rng, n, k, idx);
    for (size_t j = 0; j < k; j++) {
        const double g = fl_rng_normal(&rng);
        val[j] = (float)(g < 0 ? g - 2.5 : g + 2.5); /* a top-k tail */
    }
    static const enum cmp_value_coding vcs[] = {
        CMP_VALUE_FP32, CMP_VALUE_FP16, CMP_VALUE_BF16, CMP_VALUE_INT8};
    static const int levels[] = {1, 3, 19};
    for (size_t vi = 0; vi < FL_ARRAY_LEN(vcs); vi++) {
        for (size_t li = 0; li < FL_ARRAY_LEN(levels); li++) {
            const struct cmp_params p = {CMP_INDEX_AUTO, vcs[vi],
                                         CMP_CODEC_ZSTD, levels[li]};
            const struct cmp_params pn = {CMP_INDEX_AUTO, vcs[vi],
                                          CMP_CODEC_NONE, 0};
            struct cmp_meta meta;
            const uint8_t *pl;
            size_t len;
            size_t raw_len;
            memcpy(v2, val, k * sizeof *v2);
            assert_int_equal(cmp_sparse_encode(ctx, n, idx, v2, k, &pn, &meta,
                                               &pl, &raw_len), FL_OK);
            memcpy(raw, pl, raw_len);
            memcpy(v2, val, k * sizeof *v2);
            assert_int_equal(cmp_sparse_encode(ctx, n, idx, v2, k, &p, &meta,
                                               &pl, &len), FL_OK);
            assert_true(len <= cmp_sparse_bound(n, k, &p));
            assert_int_equal(ZSTD_getFrameContentSize(pl, len), raw_len);
            assert_int_equal(ZSTD_findFrameCompressedSize(pl, len), len);
            uint8_t *back = malloc(raw_len);
            assert_non_null(back);
            assert_int_equal(ZSTD_decompress(back, raw_len, pl, len), raw_len);
            assert_memory_equal(back, raw, raw_len);
            free(back);
            struct cmp_parts pt;
            cmp_parts_of(&pt, raw_len - (size_t)cmp_value_size(vcs[vi], k),
                         vcs[vi], k);
            const int blocks = zstd_blocks(pl, len);
            if (blocks < (int)pt.n)
                fail_msg("coding %d level %d: %d blocks for %zu parts",
                         vcs[vi], levels[li], blocks, pt.n);
            if (vcs[vi] == CMP_VALUE_FP16) {
                const size_t one = ZSTD_compress(mixed,
                                                  ZSTD_compressBound(raw_len),
                                                  raw, raw_len, levels[li]);
                assert_false(ZSTD_isError(one));
                if (len >= one)
                    fail_msg("level %d: parts %zu bytes, one block %zu",
                             levels[li], len, one);
            }
        }
    }
    cmp_ctx_destroy(&ctx);
    free(idx);
    free(val);
    free(v2);
    free(raw);
    free(mixed);
}

/* ------------------------------------------------------------ torture */

/* Run the whole encode/decode cycle with the N-th allocation failing, for
 * every N until it succeeds: only NULL/FL_ERR_NOMEM, nothing leaked. */
static void test_alloc_torture(void **state)
{
    (void)state;
    const uint64_t n = 30000;
    const size_t k = 400;
    uint32_t idx[400];
    float val[400];
    float dense[1000];
    float out[1000];
    struct fl_rng rng;
    fl_rng_seed(&rng, 6);
    random_indices(&rng, n, k, idx);
    for (size_t i = 0; i < 1000; i++)
        dense[i] = (float)fl_rng_normal(&rng);
    static const enum cmp_codec codecs[] = {CMP_CODEC_ZSTD, CMP_CODEC_LZ4,
                                            CMP_CODEC_NONE};
    for (size_t ci = 0; ci < FL_ARRAY_LEN(codecs); ci++) {
        int ok = 0;
        long fail;
        for (fail = 0; fail < 200 && !ok; fail++) {
            for (size_t j = 0; j < k; j++)
                val[j] = (float)j * 0.25f - 3.0f;
            fl_alloc_fail_after(fail);
            struct cmp_ctx *ctx = cmp_ctx_new();
            enum fl_err rc = FL_ERR_NOMEM;
            if (ctx != NULL) {
                const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP16,
                                             codecs[ci], 3};
                struct cmp_meta meta;
                const uint8_t *pl;
                size_t len;
                const uint32_t *di;
                const float *dv;
                size_t dk;
                const struct cmp_limits lim = {n, 0, 0};
                const struct cmp_limits dlim = {1000, 0, 0};
                rc = cmp_sparse_encode(ctx, n, idx, val, k, &p, &meta, &pl,
                                       &len);
                if (rc == FL_OK)
                    rc = cmp_sparse_decode(ctx, &meta, pl, len, &lim, &di,
                                           &dv, &dk);
                if (rc == FL_OK)
                    rc = cmp_dense_encode(ctx, dense, 1000, NULL, codecs[ci],
                                          1, &meta, &pl, &len);
                if (rc == FL_OK)
                    rc = cmp_dense_decode(ctx, &meta, pl, len, &dlim, NULL,
                                          out);
            }
            fl_alloc_fail_reset();
            if (rc == FL_OK)
                ok = 1;
            else
                assert_int_equal(rc, FL_ERR_NOMEM);
            cmp_ctx_destroy(&ctx);
        }
        assert_true(ok);
        assert_true(fail > 3); /* several allocations were really failed */
    }
}

/* ------------------------------------------------------------ main */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_combinations),
        cmocka_unit_test(test_auto_picks_smallest),
        cmocka_unit_test(test_encode_bad_args),
        cmocka_unit_test(test_valid_case_decodes),
        cmocka_unit_test(test_meta_errors),
        cmocka_unit_test(test_payload_errors),
        cmocka_unit_test(test_zstd_bomb),
        cmocka_unit_test(test_lz4_size_mismatch),
        cmocka_unit_test(test_index_errors),
        cmocka_unit_test(test_value_errors),
        cmocka_unit_test(test_bit_flips_and_truncations),
        cmocka_unit_test(test_rice_vs_reference),
        cmocka_unit_test(test_rice_edges),
        cmocka_unit_test(test_dense_roundtrip),
        cmocka_unit_test(test_dense_xor_small),
        cmocka_unit_test(test_dense_errors),
        cmocka_unit_test(test_scatter_add),
        cmocka_unit_test(test_crc_matches_zlib),
        cmocka_unit_test(test_parts_table),
        cmocka_unit_test(test_zstd_parts_frame),
        cmocka_unit_test(test_alloc_torture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
