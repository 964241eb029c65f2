/*
 * cmp_value.c - value streams.
 *
 * fp32, fp16 and bf16 values are stored byte-planar: the k values' byte 0
 * (least significant) first, then their byte 1, and so on. Sign and exponent
 * bytes then sit together and zstd squeezes them far better than interleaved
 * little-endian words. int8 stores all block scales (fp32 little-endian)
 * first, then the k quantized bytes. Layouts: docs/wire-format.md (section 12).
 *
 * The decode loops are written branch-free (selects and an OR-ed "bad" flag)
 * so that the compiler can vectorize them; the finiteness verdict is taken
 * once per stream, not per value.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
/* clang 14 rejects __builtin_cpu_supports("f16c"): the F16C path is
 * gcc-only (the libFuzzer builds use clang and take the portable path). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CMP_F16C 1
#include <immintrin.h>
#endif

#include "common/fl_util.h"
#include "compress/cmp_internal.h"

/* GCC/clang vector extensions: SSE2 on x86-64, NEON on arm64. */
typedef int32_t v4i __attribute__((vector_size(16)));
typedef float v4f __attribute__((vector_size(16)));

/* ------------------------------------------------------------ scalars */

uint16_t cmp_f32_to_f16(float f)
{
    uint32_t x = cmp_f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t h;

    x &= 0x7fffffffu;
    if (x > 0x7f800000u) {
        h = 0x7e00u; /* NaN */
    } else if (x == 0x7f800000u) {
        h = 0x7c00u; /* infinity */
    } else if (x >= 0x477ff000u) {
        h = 0x7bffu; /* >= 65520 would round to infinity: saturate */
    } else if (x < 0x38800000u) {
        /* below 2^-14: a half subnormal (or zero). Adding 0.5 puts the
         * value's bits at the 2^-24 ulp of [0.5, 1), rounded to nearest
         * even by the FPU; subtracting 0.5's pattern leaves the half. */
        h = cmp_f32_bits(cmp_bits_f32(x) + 0.5f) - 0x3f000000u;
    } else {
        /* rebias the exponent (127 -> 15) and round to nearest even */
        const uint32_t odd = (x >> 13) & 1u;
        h = (x + 0xc8000fffu + odd) >> 13;
    }
    return (uint16_t)(h | sign);
}

static inline uint32_t f16_bits_to_f32_bits(uint32_t h)
{
    const uint32_t em = h & 0x7fffu;
    const uint32_t sign = (h & 0x8000u) << 16;
    const uint32_t normal = (em << 13) + 0x38000000u;
    const uint32_t sub = cmp_f32_bits((float)em * 0x1p-24f);
    const uint32_t special = 0x7f800000u | ((em & 0x3ffu) << 13);
    uint32_t bits = em < 0x400u ? sub : normal;
    bits = em >= 0x7c00u ? special : bits;
    return bits | sign;
}

float cmp_f16_to_f32(uint16_t h)
{
    return cmp_bits_f32(f16_bits_to_f32_bits(h));
}

uint16_t cmp_f32_to_bf16(float f)
{
    const uint32_t x = cmp_f32_bits(f);
    const uint32_t ax = x & 0x7fffffffu;

    if (ax > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u); /* NaN stays a (quiet) NaN */
    if (ax == 0x7f800000u)
        return (uint16_t)(x >> 16);
    uint16_t h = (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
    if ((h & 0x7fffu) == 0x7f80u) /* finite value rounded to infinity */
        h = (uint16_t)((h & 0x8000u) | 0x7f7fu);
    return h;
}

float cmp_bf16_to_f32(uint16_t h)
{
    return cmp_bits_f32((uint32_t)h << 16);
}

/* ------------------------------------------------------------ sizes */

int cmp_value_known(enum cmp_value_coding v)
{
    switch (v) {
    case CMP_VALUE_FP32:
    case CMP_VALUE_FP16:
    case CMP_VALUE_BF16:
    case CMP_VALUE_INT8:
        return 1;
    }
    return 0;
}

static uint64_t int8_blocks(uint64_t k)
{
    return k / CMP_INT8_BLOCK + (k % CMP_INT8_BLOCK != 0);
}

uint64_t cmp_value_size(enum cmp_value_coding v, uint64_t k)
{
    switch (v) {
    case CMP_VALUE_FP32:
        return 4 * k;
    case CMP_VALUE_FP16:
    case CMP_VALUE_BF16:
        return 2 * k;
    case CMP_VALUE_INT8:
        return 4 * int8_blocks(k) + k;
    }
    return 0;
}

/* ------------------------------------------------------------ fp32 */

void cmp_fp32_write_xor(const float *x, const float *base, size_t k,
                        uint8_t *dst)
{
    uint8_t *const p0 = dst;
    uint8_t *const p1 = dst + k;
    uint8_t *const p2 = dst + 2 * k;
    uint8_t *const p3 = dst + 3 * k;
    for (size_t i = 0; i < k; i++) {
        uint32_t u = cmp_f32_bits(x[i]);
        if (base != NULL)
            u ^= cmp_f32_bits(base[i]);
        p0[i] = (uint8_t)u;
        p1[i] = (uint8_t)(u >> 8);
        p2[i] = (uint8_t)(u >> 16);
        p3[i] = (uint8_t)(u >> 24);
    }
}

enum fl_err cmp_fp32_read_xor(const uint8_t *src, const float *base, size_t k,
                              float *out)
{
    const uint8_t *const p0 = src;
    const uint8_t *const p1 = src + k;
    const uint8_t *const p2 = src + 2 * k;
    const uint8_t *const p3 = src + 3 * k;
    uint32_t bad = 0;
    for (size_t i = 0; i < k; i++) {
        uint32_t u = (uint32_t)p0[i] | (uint32_t)p1[i] << 8 |
                     (uint32_t)p2[i] << 16 | (uint32_t)p3[i] << 24;
        if (base != NULL)
            u ^= cmp_f32_bits(base[i]);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
        out[i] = cmp_bits_f32(u);
    }
    return bad ? FL_ERR_NONFINITE : FL_OK;
}

/* ------------------------------------------------------------ 16-bit */

static void half_write(float *val, size_t k, uint8_t *dst, int bf16)
{
    uint8_t *const lo = dst;
    uint8_t *const hi = dst + k;
    for (size_t i = 0; i < k; i++) {
        const uint16_t h =
            bf16 ? cmp_f32_to_bf16(val[i]) : cmp_f32_to_f16(val[i]);
        lo[i] = (uint8_t)h;
        hi[i] = (uint8_t)(h >> 8);
        val[i] = bf16 ? cmp_bf16_to_f32(h) : cmp_f16_to_f32(h);
    }
}

/* fp16 -> fp32 four lanes at a time: normal halves by rebiasing the
 * exponent, subnormals through an exact int -> float conversion times
 * 2^-24, picked by a lane mask. */

static inline v4i f16x4_to_f32_bits(v4i h, v4i *bad)
{
    const v4i em = h & 0x7fff;
    const v4i sign = (h & 0x8000) << 16;
    const v4i normal = (em << 13) + 0x38000000;
    const v4f subf = __builtin_convertvector(em, v4f) * 0x1p-24f;
    const v4i is_sub = em < 0x400;
    *bad |= em >= 0x7c00;
    return ((normal & ~is_sub) | ((v4i)subf & is_sub)) | sign;
}

/* Widen 8 planar 16-bit values (low bytes at lo, high bytes at hi) to two
 * vectors of 4 x uint32: SSE2 unpacks where available. */
static inline void load_u16x8(const uint8_t *lo, const uint8_t *hi, v4i *a,
                              v4i *b)
{
#if defined(__SSE2__)
    const __m128i l = _mm_loadl_epi64((const __m128i *)(const void *)lo);
    const __m128i h = _mm_loadl_epi64((const __m128i *)(const void *)hi);
    const __m128i x = _mm_unpacklo_epi8(l, h);
    const __m128i z = _mm_setzero_si128();
    *a = (v4i)_mm_unpacklo_epi16(x, z);
    *b = (v4i)_mm_unpackhi_epi16(x, z);
#else
    for (int j = 0; j < 4; j++) {
        (*a)[j] = (int32_t)(lo[j] | hi[j] << 8);
        (*b)[j] = (int32_t)(lo[j + 4] | hi[j + 4] << 8);
    }
#endif
}

/* The verdict and the tail of both fp16 readers: values i.. one at a time */
static uint32_t f16_read_tail(const uint8_t *src, size_t k, size_t i,
                              float *out)
{
    const uint8_t *const lo = src;
    const uint8_t *const hi = src + k;
    uint32_t bad = 0;
    for (; i < k; i++) {
        const uint32_t h = (uint32_t)lo[i] | (uint32_t)hi[i] << 8;
        bad |= (h & 0x7c00u) == 0x7c00u;
        out[i] = cmp_bits_f32(f16_bits_to_f32_bits(h));
    }
    return bad;
}

static enum fl_err f16_read_portable(const uint8_t *src, size_t k,
                                     float *out)
{
    const uint8_t *const lo = src;
    const uint8_t *const hi = src + k;
    v4i vbad = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= k; i += 8) {
        v4i a;
        v4i b;
        load_u16x8(lo + i, hi + i, &a, &b);
        a = f16x4_to_f32_bits(a, &vbad);
        b = f16x4_to_f32_bits(b, &vbad);
        memcpy(out + i, &a, sizeof a);
        memcpy(out + i + 4, &b, sizeof b);
    }
    uint32_t bad = (vbad[0] | vbad[1] | vbad[2] | vbad[3]) != 0;
    bad |= f16_read_tail(src, k, i, out);
    return bad ? FL_ERR_NONFINITE : FL_OK;
}

#ifdef CMP_F16C
static inline __m128i load_u8x16(const uint8_t *p)
{
    return _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* x86-64 with F16C (checked at run time): VCVTPH2PS converts 8 halves at
 * once, exactly (subnormals included); the NaN/Inf verdict is taken on the
 * half patterns (exponent all ones), 16 at a time. About four times the
 * speed of the portable lanes. With want_sq, the squares of the values are
 * summed in double lanes while they are in registers (*sumsq, grouped as
 * cmp_sumsq() groups them; the tail is added by the caller). */
static inline __attribute__((always_inline, target("avx2,f16c"))) uint32_t
f16c_loop(const uint8_t *src, size_t k, float *out, size_t *done,
          const int want_sq, double *sumsq)
{
    const uint8_t *const lo = src;
    const uint8_t *const hi = src + k;
    const __m128i expm = _mm_set1_epi16(0x7c00);
    __m128i vbad = _mm_setzero_si128();
    __m256d s0 = _mm256_setzero_pd();
    __m256d s1 = _mm256_setzero_pd();
    __m256d s2 = _mm256_setzero_pd();
    __m256d s3 = _mm256_setzero_pd();
    size_t i = 0;
    for (; i + 16 <= k; i += 16) {
        const __m128i l = load_u8x16(lo + i);
        const __m128i h = load_u8x16(hi + i);
        const __m128i a = _mm_unpacklo_epi8(l, h);
        const __m128i b = _mm_unpackhi_epi8(l, h);
        vbad = _mm_or_si128(
            vbad, _mm_cmpeq_epi16(_mm_and_si128(a, expm), expm));
        vbad = _mm_or_si128(
            vbad, _mm_cmpeq_epi16(_mm_and_si128(b, expm), expm));
        const __m256 fa = _mm256_cvtph_ps(a);
        const __m256 fb = _mm256_cvtph_ps(b);
        _mm256_storeu_ps(out + i, fa);
        _mm256_storeu_ps(out + i + 8, fb);
        if (want_sq) {
            const __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(fa));
            const __m256d d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(fa, 1));
            const __m256d d2 = _mm256_cvtps_pd(_mm256_castps256_ps128(fb));
            const __m256d d3 = _mm256_cvtps_pd(_mm256_extractf128_ps(fb, 1));
            s0 = _mm256_add_pd(s0, _mm256_mul_pd(d0, d0));
            s1 = _mm256_add_pd(s1, _mm256_mul_pd(d1, d1));
            s2 = _mm256_add_pd(s2, _mm256_mul_pd(d2, d2));
            s3 = _mm256_add_pd(s3, _mm256_mul_pd(d3, d3));
        }
    }
    if (want_sq) {
        double lane[4];
        _mm256_storeu_pd(lane, _mm256_add_pd(_mm256_add_pd(s0, s1),
                                             _mm256_add_pd(s2, s3)));
        *sumsq = (lane[0] + lane[1]) + (lane[2] + lane[3]);
    }
    *done = i;
    return _mm_movemask_epi8(vbad) != 0;
}

__attribute__((target("avx2,f16c"))) static enum fl_err
f16_read_f16c(const uint8_t *src, size_t k, float *out)
{
    size_t i = 0;
    uint32_t bad = f16c_loop(src, k, out, &i, 0, NULL);
    bad |= f16_read_tail(src, k, i, out);
    return bad ? FL_ERR_NONFINITE : FL_OK;
}

__attribute__((target("avx2,f16c"))) static enum fl_err
f16_read_f16c_sq(const uint8_t *src, size_t k, float *out, double *sumsq)
{
    size_t i = 0;
    double s = 0;
    uint32_t bad = f16c_loop(src, k, out, &i, 1, &s);
    bad |= f16_read_tail(src, k, i, out);
    for (; i < k; i++) /* as cmp_sumsq() adds its tail: the same bits */
        s += (double)out[i] * (double)out[i];
    *sumsq = bad ? 0 : s;
    return bad ? FL_ERR_NONFINITE : FL_OK;
}

static int have_f16c(void)
{
    __builtin_cpu_init(); /* idempotent */
    return __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2");
}
#endif

enum fl_err cmp_f16_read_with(const uint8_t *src, size_t k, float *out,
                              int allow_simd)
{
#ifdef CMP_F16C
    if (allow_simd && have_f16c())
        return f16_read_f16c(src, k, out);
#endif
    (void)allow_simd;
    return f16_read_portable(src, k, out);
}

static enum fl_err f16_read(const uint8_t *src, size_t k, float *out)
{
    return cmp_f16_read_with(src, k, out, 1);
}

static enum fl_err bf16_read(const uint8_t *src, size_t k, float *out)
{
    const uint8_t *const lo = src;
    const uint8_t *const hi = src + k;
    const v4i expm = {0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000};
    v4i vbad = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= k; i += 8) {
        v4i a;
        v4i b;
        load_u16x8(lo + i, hi + i, &a, &b);
        a <<= 16;
        b <<= 16;
        vbad |= ((a & expm) == expm) | ((b & expm) == expm);
        memcpy(out + i, &a, sizeof a);
        memcpy(out + i + 4, &b, sizeof b);
    }
    uint32_t bad = (vbad[0] | vbad[1] | vbad[2] | vbad[3]) != 0;
    for (; i < k; i++) {
        const uint32_t u = ((uint32_t)lo[i] | (uint32_t)hi[i] << 8) << 16;
        bad |= (u & 0x7f800000u) == 0x7f800000u;
        out[i] = cmp_bits_f32(u);
    }
    return bad ? FL_ERR_NONFINITE : FL_OK;
}

/* ------------------------------------------------------------ int8 */

static void store_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* scale = max|v| / 127, nudged down in the (huge-value) case where 127 *
 * scale would overflow, so that every decoded value is finite. */
static float int8_scale(const float *v, size_t m)
{
    float amax = 0.0f;
    for (size_t i = 0; i < m; i++)
        amax = fmaxf(amax, fabsf(v[i]));
    float s = amax / 127.0f;
    while (s > 0.0f && !isfinite(127.0f * s))
        s = nextafterf(s, 0.0f);
    return s;
}

static void int8_write(float *val, size_t k, uint8_t *dst)
{
    const size_t nb = (size_t)int8_blocks(k);
    uint8_t *const q = dst + 4 * nb;
    for (size_t blk = 0; blk < nb; blk++) {
        const size_t start = blk * CMP_INT8_BLOCK;
        const size_t m = FL_MIN(k - start, (size_t)CMP_INT8_BLOCK);
        const float s = int8_scale(val + start, m);
        store_le32(dst + 4 * blk, cmp_f32_bits(s));
        for (size_t i = start; i < start + m; i++) {
            float r = s > 0.0f ? roundf(val[i] / s) : 0.0f;
            r = fminf(fmaxf(r, -127.0f), 127.0f);
            const int8_t qi = (int8_t)r;
            q[i] = (uint8_t)qi;
            val[i] = (float)qi * s;
        }
    }
}

static enum fl_err int8_read(const uint8_t *src, size_t k, float *out)
{
    const size_t nb = (size_t)int8_blocks(k);
    const uint8_t *const q = src + 4 * nb;
    uint32_t bad = 0;
    uint32_t neg = 0;
    uint32_t minq = 0;
    for (size_t blk = 0; blk < nb; blk++) {
        const uint32_t sb = load_le32(src + 4 * blk);
        const float s = cmp_bits_f32(sb);
        bad |= (sb & 0x7f800000u) == 0x7f800000u;
        neg |= sb > 0x80000000u; /* negative, -0.0 allowed */
        const size_t start = blk * CMP_INT8_BLOCK;
        const size_t end = FL_MIN(k, start + CMP_INT8_BLOCK);
        for (size_t i = start; i < end; i++) {
            const int8_t qi = (int8_t)q[i];
            minq |= q[i] == 0x80u;
            const float v = (float)qi * s;
            bad |= (cmp_f32_bits(v) & 0x7f800000u) == 0x7f800000u;
            out[i] = v;
        }
    }
    if (bad)
        return FL_ERR_NONFINITE;
    return neg | minq ? FL_ERR_FORMAT : FL_OK;
}

/* ------------------------------------------------------------ dispatch */

void cmp_value_write(enum cmp_value_coding v, float *val, size_t k,
                     uint8_t *dst)
{
    switch (v) {
    case CMP_VALUE_FP32:
        cmp_fp32_write_xor(val, NULL, k, dst);
        return;
    case CMP_VALUE_FP16:
        half_write(val, k, dst, 0);
        return;
    case CMP_VALUE_BF16:
        half_write(val, k, dst, 1);
        return;
    case CMP_VALUE_INT8:
        int8_write(val, k, dst);
        return;
    }
}

/* Four lanes of doubles in four independent sums: the chain of dependent
 * additions is a quarter of a scalar loop's, and the x86-64-v3 clone does
 * each lane step in one AVX instruction. */
typedef double cmp_v4d __attribute__((vector_size(32)));
typedef float cmp_v4f __attribute__((vector_size(16)));

CMP_SIMD_CLONES
double cmp_sumsq(const float *x, size_t n)
{
    cmp_v4d a0 = {0, 0, 0, 0};
    cmp_v4d a1 = a0;
    cmp_v4d a2 = a0;
    cmp_v4d a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        cmp_v4f f[4];
        memcpy(f, x + i, sizeof(f));
        const cmp_v4d d0 = __builtin_convertvector(f[0], cmp_v4d);
        const cmp_v4d d1 = __builtin_convertvector(f[1], cmp_v4d);
        const cmp_v4d d2 = __builtin_convertvector(f[2], cmp_v4d);
        const cmp_v4d d3 = __builtin_convertvector(f[3], cmp_v4d);
        a0 += d0 * d0;
        a1 += d1 * d1;
        a2 += d2 * d2;
        a3 += d3 * d3;
    }
    a0 = (a0 + a1) + (a2 + a3);
    double s = (a0[0] + a0[1]) + (a0[2] + a0[3]);
    for (; i < n; i++)
        s += (double)x[i] * (double)x[i];
    return s;
}

enum fl_err cmp_value_read_sumsq(enum cmp_value_coding v, const uint8_t *src,
                                 size_t k, float *out, double *sumsq)
{
#ifdef CMP_F16C
    if (v == CMP_VALUE_FP16 && have_f16c())
        return f16_read_f16c_sq(src, k, out, sumsq);
#endif
    const enum fl_err rc = cmp_value_read(v, src, k, out);
    *sumsq = rc == FL_OK ? cmp_sumsq(out, k) : 0;
    return rc;
}

enum fl_err cmp_value_read(enum cmp_value_coding v, const uint8_t *src,
                           size_t k, float *out)
{
    switch (v) {
    case CMP_VALUE_FP32:
        return cmp_fp32_read_xor(src, NULL, k, out);
    case CMP_VALUE_FP16:
        return f16_read(src, k, out);
    case CMP_VALUE_BF16:
        return bf16_read(src, k, out);
    case CMP_VALUE_INT8:
        return int8_read(src, k, out);
    }
    return FL_ERR_UNSUPPORTED;
}
