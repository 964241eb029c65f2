/* Unit tests for compress/cmp_value: fp16/bf16 rounding, int8 blocks and
 * the byte-planar layout, against hand-checked vectors and properties. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_util.h"
#include "compress/cmp_internal.h"

static void test_f16_table(void **state)
{
    (void)state;
    static const struct {
        float in;
        uint16_t want;
    } cases[] = {
        {1.0f, 0x3c00},
        {-2.0f, 0xc000},
        {0.1f, 0x2e66},
        {65504.0f, 0x7bff},
        {65519.99f, 0x7bff},
        {65520.0f, 0x7bff}, /* would round to infinity: saturates */
        {1e10f, 0x7bff},
        {-1e10f, 0xfbff},
        {0x1p-14f, 0x0400},           /* smallest normal */
        {0x1p-24f, 0x0001},           /* smallest subnormal */
        {0x1p-25f, 0x0000},           /* tie between 0 and 1: even */
        {0x1.8p-24f, 0x0002},         /* tie between 1 and 2: even */
        {0x1.4p-24f, 0x0001},
        {1.0f + 0x1p-11f, 0x3c00},    /* tie: even */
        {1.0f + 0x1.8p-10f, 0x3c02},  /* tie: odd -> up */
        {1.0f + 0x1.01p-11f, 0x3c01}, /* just above the tie */
        {-0.0f, 0x8000},
        {0.0f, 0x0000},
        {INFINITY, 0x7c00},
        {-INFINITY, 0xfc00},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        const uint16_t h = cmp_f32_to_f16(cases[i].in);
        if (h != cases[i].want)
            fail_msg("case %zu (%a): got 0x%04x want 0x%04x", i,
                     (double)cases[i].in, h, cases[i].want);
    }
    assert_int_equal(cmp_f32_to_f16(NAN) & 0x7c00, 0x7c00);
    assert_int_not_equal(cmp_f32_to_f16(NAN) & 0x3ff, 0);
}

/* Every finite half survives half -> float -> half; the float value is the
 * exact value of the half. */
static void test_f16_exhaustive_roundtrip(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 0x10000; h++) {
        const float f = cmp_f16_to_f32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00) {
            assert_false(isfinite(f));
            continue;
        }
        const int e = (int)((h >> 10) & 0x1f);
        const double m = (double)(h & 0x3ff);
        const double v = e == 0 ? ldexp(m, -24) : ldexp(1024.0 + m, e - 25);
        assert_true((double)fabsf(f) == v);
        assert_true((signbit(f) != 0) == ((h & 0x8000) != 0));
        assert_int_equal(cmp_f32_to_f16(f), h);
    }
}

/* The fp16 stream readers (portable lanes, and F16C where the CPU has it)
 * on all 65536 patterns: every finite half decodes to the scalar
 * conversion bit for bit, and a stream is refused (NONFINITE) iff it holds
 * an exponent-all-ones pattern (Inf or NaN), wherever it sits: in the
 * 16-wide SIMD body, the 8-wide body or the scalar tail. */
static void test_f16_read_paths(void **state)
{
    (void)state;
    enum { K = 0x10000 };
    uint8_t *src = malloc(2 * K);
    float *out = malloc(K * sizeof *out);
    assert_true(src && out);
    for (int simd = 0; simd <= 1; simd++) {
        /* the whole range in one stream: refused (it holds 0x7c00..) */
        for (uint32_t h = 0; h < K; h++) {
            src[h] = (uint8_t)h;
            src[K + h] = (uint8_t)(h >> 8);
        }
        assert_int_equal(cmp_f16_read_with(src, K, out, simd),
                         FL_ERR_NONFINITE);
        for (uint32_t h = 0; h < K; h++) {
            if ((h & 0x7c00) == 0x7c00)
                continue;
            const uint32_t want = cmp_f32_bits(cmp_f16_to_f32((uint16_t)h));
            if (cmp_f32_bits(out[h]) != want)
                fail_msg("simd %d: half 0x%04x -> 0x%08x want 0x%08x", simd, h,
                         cmp_f32_bits(out[h]), want);
        }
        /* short streams of finite halves, with at most one bad pattern at
         * every position */
        for (size_t k = 1; k <= 40; k++) {
            for (size_t bad = 0; bad <= k; bad++) {
                uint8_t s[80];
                float o[40];
                for (size_t i = 0; i < k; i++) {
                    uint16_t h = (uint16_t)(0x3c00 + 37 * i);
                    if (i == bad)
                        h = (uint16_t)(i % 2 ? 0x7c00 : 0xfe01); /* Inf, NaN */
                    s[i] = (uint8_t)h;
                    s[k + i] = (uint8_t)(h >> 8);
                }
                const enum fl_err rc = cmp_f16_read_with(s, k, o, simd);
                assert_int_equal(rc, bad < k ? FL_ERR_NONFINITE : FL_OK);
                for (size_t i = 0; i < k; i++) {
                    if (i != bad)
                        assert_true(o[i] == cmp_f16_to_f32(
                                                (uint16_t)(0x3c00 + 37 * i)));
                }
            }
        }
    }
    free(src);
    free(out);
}

/* cmp_sumsq against a plain double sum: every length around the unrolled
 * step of 16, a sum that overflows float, and the exact small case. */
static void test_sumsq(void **state)
{
    (void)state;
    static const float v[4] = {3, 4, 0, 0};
    assert_true(cmp_sumsq(v, 4) == 25.0);
    assert_true(cmp_sumsq(v, 0) == 0.0);
    static const float big[2] = {3e38f, 3e38f};
    assert_true(isfinite(cmp_sumsq(big, 2)));
    float w[70];
    for (size_t n = 0; n <= 70; n++) {
        double ref = 0;
        for (size_t i = 0; i < n; i++) {
            w[i] = (float)(i + 1) * (i % 2 ? -0.5f : 1.25f);
            ref += (double)w[i] * w[i];
        }
        assert_true(fabs(cmp_sumsq(w, n) - ref) <= 1e-14 * ref);
    }
}

/* cmp_value_read_sumsq: for every coding, the values cmp_value_read gives
 * and, bit for bit, cmp_sumsq of them (the fused fp16 path groups its sums
 * as cmp_sumsq does); on a non-finite value the error and 0. */
static void test_read_sumsq(void **state)
{
    (void)state;
    static const enum cmp_value_coding vcs[] = {
        CMP_VALUE_FP32, CMP_VALUE_FP16, CMP_VALUE_BF16, CMP_VALUE_INT8};
    struct fl_rng rng;
    fl_rng_seed(&rng, 99);
    float *val = malloc(2000 * sizeof *val);
    float *a = malloc(2000 * sizeof *a);
    float *b = malloc(2000 * sizeof *b);
    uint8_t *src = malloc(8 * 2000 + 64);
    assert_true(val && a && b && src);
    static const size_t ks[] = {1, 2, 15, 16, 17, 31, 32, 33, 47, 1000, 2000};
    for (size_t c = 0; c < FL_ARRAY_LEN(vcs); c++) {
        for (size_t t = 0; t < FL_ARRAY_LEN(ks); t++) {
            const size_t k = ks[t];
            for (size_t i = 0; i < k; i++)
                val[i] = (float)(fl_rng_normal(&rng) * 0.03);
            cmp_value_write(vcs[c], val, k, src);
            double sq = -1;
            assert_int_equal(cmp_value_read(vcs[c], src, k, a), FL_OK);
            assert_int_equal(cmp_value_read_sumsq(vcs[c], src, k, b, &sq),
                             FL_OK);
            assert_memory_equal(a, b, k * sizeof *a);
            assert_true(sq == cmp_sumsq(a, k));
        }
    }
    /* fp16 with an infinity at every position of a short stream */
    for (size_t k = 1; k <= 40; k++) {
        for (size_t i = 0; i < k; i++)
            val[i] = 1.0f;
        cmp_value_write(CMP_VALUE_FP16, val, k, src);
        for (size_t bad = 0; bad < k; bad++) {
            uint8_t s2[80];
            memcpy(s2, src, 2 * k);
            s2[k + bad] = 0x7c;   /* high byte of +Inf */
            s2[bad] = 0;
            double sq = -1;
            assert_int_equal(cmp_value_read_sumsq(CMP_VALUE_FP16, s2, k, b,
                                                  &sq), FL_ERR_NONFINITE);
            assert_true(sq == 0);
        }
    }
    free(val);
    free(a);
    free(b);
    free(src);
}

/* Random floats: the chosen half is the nearest (ties to even). */
static void test_f16_nearest_property(void **state)
{
    (void)state;
    struct fl_rng rng;
    fl_rng_seed(&rng, 10);
    for (int i = 0; i < 200000; i++) {
        float x = cmp_bits_f32((uint32_t)fl_rng_next(&rng));
        if (!isfinite(x) || fabsf(x) >= 65504.0f)
            continue;
        const uint16_t h = cmp_f32_to_f16(x);
        const double d = fabs((double)x - (double)cmp_f16_to_f32(h));
        const uint16_t mag = h & 0x7fff;
        /* neighbours of the same sign */
        if (mag > 0) {
            const double dn =
                fabs((double)x - (double)cmp_f16_to_f32((uint16_t)(h - 1)));
            assert_true(d < dn || (d == dn && (h & 1) == 0));
        }
        if (mag < 0x7bff) {
            const double up =
                fabs((double)x - (double)cmp_f16_to_f32((uint16_t)(h + 1)));
            assert_true(d < up || (d == up && (h & 1) == 0));
        }
    }
}

static void test_bf16_table(void **state)
{
    (void)state;
    static const struct {
        uint32_t in;
        uint16_t want;
    } cases[] = {
        {0x3f800000u, 0x3f80}, /* 1.0 */
        {0x3f808000u, 0x3f80}, /* tie, even: down */
        {0x3f818000u, 0x3f82}, /* tie, odd: up */
        {0x3f808001u, 0x3f81}, /* above the tie */
        {0x3dcccccdu, 0x3dcd}, /* 0.1 */
        {0x7f7fffffu, 0x7f7f}, /* FLT_MAX would round to inf: saturates */
        {0xff7fffffu, 0xff7f},
        {0x7f800000u, 0x7f80}, /* inf */
        {0x00000001u, 0x0000}, /* tiny subnormal rounds to zero */
        {0x80000000u, 0x8000},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++)
        assert_int_equal(cmp_f32_to_bf16(cmp_bits_f32(cases[i].in)),
                         cases[i].want);
    const uint16_t qn = cmp_f32_to_bf16(cmp_bits_f32(0x7f800001u));
    assert_true((qn & 0x7f80) == 0x7f80 && (qn & 0x7f) != 0);
    assert_true(cmp_bf16_to_f32(0x3f80) == 1.0f);
}

/* int8: scale = max|v| / 127, q = round half away from zero, layout is
 * all scales first, then the q bytes; val gets the decoded values. */
static void test_int8_block(void **state)
{
    (void)state;
    float v[5] = {127.0f, 2.5f, -2.5f, -0.49f, 0.0f};
    uint8_t out[4 + 5];
    assert_int_equal(cmp_value_size(CMP_VALUE_INT8, 5), 9);
    cmp_value_write(CMP_VALUE_INT8, v, 5, out);
    const uint8_t want[9] = {0x00, 0x00, 0x80, 0x3f, /* scale 1.0 */
                             127, 3, 0xfd, 0, 0};
    assert_memory_equal(out, want, sizeof want);
    const float dec[5] = {127.0f, 3.0f, -3.0f, 0.0f, 0.0f};
    assert_memory_equal(v, dec, sizeof dec);
    float back[5];
    assert_int_equal(cmp_value_read(CMP_VALUE_INT8, out, 5, back), FL_OK);
    assert_memory_equal(back, dec, sizeof dec);

    /* several blocks, each with its own scale */
    const size_t k = 3 * CMP_INT8_BLOCK + 7;
    float *x = malloc(k * sizeof *x);
    float *y = malloc(k * sizeof *y);
    uint8_t *buf = malloc((size_t)cmp_value_size(CMP_VALUE_INT8, k));
    assert_true(x && y && buf);
    for (size_t i = 0; i < k; i++)
        x[i] = (float)((double)(i % 13) - 6.0) * (float)(1 + i / CMP_INT8_BLOCK);
    float amax[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < k; i++)
        amax[i / CMP_INT8_BLOCK] = fmaxf(amax[i / CMP_INT8_BLOCK], fabsf(x[i]));
    cmp_value_write(CMP_VALUE_INT8, x, k, buf);
    for (size_t b = 0; b < 4; b++) {
        uint32_t sb;
        memcpy(&sb, buf + 4 * b, 4);
        assert_true(cmp_bits_f32(sb) == amax[b] / 127.0f);
    }
    assert_true(amax[3] == 20.0f); /* last block: 7 values, max |-5| * 4 */
    assert_int_equal(cmp_value_read(CMP_VALUE_INT8, buf, k, y), FL_OK);
    assert_memory_equal(x, y, k * sizeof *x);
    /* huge values: the scale is nudged so that decoding stays finite */
    float h[2] = {FLT_MAX, -FLT_MAX};
    uint8_t hb[6];
    cmp_value_write(CMP_VALUE_INT8, h, 2, hb);
    assert_true(isfinite(h[0]) && isfinite(h[1]));
    assert_int_equal(cmp_value_read(CMP_VALUE_INT8, hb, 2, h), FL_OK);
    free(x);
    free(y);
    free(buf);
}

/* Byte-planar layout: all byte 0s, then all byte 1s, ... */
static void test_planar_layout(void **state)
{
    (void)state;
    float v[2] = {cmp_bits_f32(0x44332211u), cmp_bits_f32(0x48776655u)};
    uint8_t out[8];
    cmp_value_write(CMP_VALUE_FP32, v, 2, out);
    const uint8_t want[8] = {0x11, 0x55, 0x22, 0x66, 0x33, 0x77, 0x44, 0x48};
    assert_memory_equal(out, want, sizeof want);
    float h[2] = {1.0f, -2.0f};
    uint8_t hb[4];
    cmp_value_write(CMP_VALUE_FP16, h, 2, hb);
    const uint8_t hw[4] = {0x00, 0x00, 0x3c, 0xc0};
    assert_memory_equal(hb, hw, sizeof hw);
    float b[2] = {1.0f, cmp_bits_f32(0x3f818000u)};
    cmp_value_write(CMP_VALUE_BF16, b, 2, hb);
    const uint8_t bw[4] = {0x80, 0x82, 0x3f, 0x3f};
    assert_memory_equal(hb, bw, sizeof bw);
    assert_true(b[1] == cmp_bits_f32(0x3f820000u)); /* written back */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_table),
        cmocka_unit_test(test_f16_exhaustive_roundtrip),
        cmocka_unit_test(test_f16_read_paths),
        cmocka_unit_test(test_sumsq),
        cmocka_unit_test(test_read_sumsq),
        cmocka_unit_test(test_f16_nearest_property),
        cmocka_unit_test(test_bf16_table),
        cmocka_unit_test(test_int8_block),
        cmocka_unit_test(test_planar_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
