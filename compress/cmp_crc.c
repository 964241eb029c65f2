/*
 * cmp_crc.c - CRC-32 as zlib computes it (reflected polynomial 0xEDB88320,
 * initial and final XOR 0xFFFFFFFF), over the raw stream of a payload.
 *
 * zlib's table-driven crc32_z runs at about 4 GB/s, which is a visible part
 * of decoding a payload. On x86-64 with PCLMULQDQ the bulk of the buffer is
 * folded 64 bytes at a time with carry-less multiplications instead (the
 * method of Intel's "Fast CRC Computation for Generic Polynomials Using
 * PCLMULQDQ", with the constants for this polynomial as in Linux's
 * crc32-pclmul), and zlib does the remaining < 16 bytes. Where the CPU has
 * VPCLMULQDQ (256/512-bit carry-less multiplies), the bulk is folded 128
 * bytes at a time in four ymm lanes (AVX2), or 256 bytes in four zmm lanes
 * (AVX-512F), each about twice as fast as the step before. All give the
 * same value bit for bit; the unit tests compare each with zlib on many
 * lengths.
 *
 * Folding constants (bit-reflected, as the 33-bit values the algorithm
 * uses): for a fold over D bits the low half multiplies by
 * reflect32(x^(D+32) mod P) << 1 and the high half by
 * reflect32(x^(D-32) mod P) << 1, P = 0x104C11DB7.
 */
#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "compress/cmp_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CMP_CRC_CLMUL 1
#include <immintrin.h>
#endif

#ifdef CMP_CRC_CLMUL

/* zlib's value continues a "raw" CRC state c as ~crc32_z(~c, ...). */
static uint32_t crc_raw_zlib(uint32_t c, const uint8_t *p, size_t len)
{
    return ~(uint32_t)crc32_z(~c & 0xffffffffu, p, len);
}

static inline __m128i load16(const uint8_t *p)
{
    return _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* Fold x (128 bits) forward over 128 bits with the constant pair k and
 * add the next 16 bytes d. */
__attribute__((target("pclmul"))) static inline __m128i
fold16(__m128i x, __m128i k, __m128i d)
{
    const __m128i lo = _mm_clmulepi64_si128(x, k, 0x00);
    const __m128i hi = _mm_clmulepi64_si128(x, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), d);
}

/* 128 bits of folded state -> the raw 32-bit CRC state: 128 -> 64 bits
 * (appending 32 zero bits), 64 -> 32, then a Barrett reduction, all
 * bit-reflected. */
__attribute__((target("pclmul"))) static inline uint32_t
crc_reduce128(__m128i x1)
{
    const __m128i k3k4 = _mm_set_epi64x(0x00000000ccaa009e, 0x00000001751997d0);
    const __m128i k5 = _mm_set_epi64x(0, 0x0000000163cd6124);
    const __m128i poly = _mm_set_epi64x(0x00000001f7011641, 0x00000001db710641);
    const __m128i mask32 = _mm_set_epi32(0, 0, 0, -1);

    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8),
                       _mm_clmulepi64_si128(x1, k3k4, 0x10));
    __m128i x2b = _mm_srli_si128(x1, 4);
    x1 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), k5, 0x00);
    x1 = _mm_xor_si128(x1, x2b);
    x2b = x1;
    x1 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), poly, 0x10);
    x1 = _mm_clmulepi64_si128(_mm_and_si128(x1, mask32), poly, 0x00);
    x1 = _mm_xor_si128(x1, x2b);
    return (uint32_t)_mm_cvtsi128_si32(_mm_srli_si128(x1, 4));
}

/* Fold x over 128 bits and add the following 16-byte blocks, down to the
 * last < 16 bytes; returns the raw CRC state. */
__attribute__((target("pclmul"))) static inline uint32_t
crc_tail16(__m128i x1, const uint8_t *p, size_t len)
{
    const __m128i k3k4 = _mm_set_epi64x(0x00000000ccaa009e, 0x00000001751997d0);
    while (len >= 16) {
        x1 = fold16(x1, k3k4, load16(p));
        p += 16;
        len -= 16;
    }
    return crc_reduce128(x1);
}

/* Raw CRC state c over len bytes, len >= 64 and a multiple of 16. */
__attribute__((target("pclmul"))) static uint32_t
crc_raw_clmul(uint32_t c, const uint8_t *p, size_t len)
{
    const __m128i k1k2 = _mm_set_epi64x(0x00000001c6e41596, 0x0000000154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x00000000ccaa009e, 0x00000001751997d0);

    __m128i x1 = _mm_xor_si128(load16(p), _mm_cvtsi32_si128((int)c));
    __m128i x2 = load16(p + 16);
    __m128i x3 = load16(p + 32);
    __m128i x4 = load16(p + 48);
    p += 64;
    len -= 64;
    while (len >= 64) { /* four independent lanes of folding */
        x1 = fold16(x1, k1k2, load16(p));
        x2 = fold16(x2, k1k2, load16(p + 16));
        x3 = fold16(x3, k1k2, load16(p + 32));
        x4 = fold16(x4, k1k2, load16(p + 48));
        p += 64;
        len -= 64;
    }
    x1 = fold16(x1, k3k4, x2); /* four lanes into one */
    x1 = fold16(x1, k3k4, x3);
    x1 = fold16(x1, k3k4, x4);
    return crc_tail16(x1, p, len);
}

#define CRC_VTARGET __attribute__((target("avx2,vpclmulqdq,pclmul")))

static inline CRC_VTARGET __m256i load32(const uint8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)p);
}

/* fold32: fold16 on both 128-bit halves of a ymm register */
static inline CRC_VTARGET __m256i fold32(__m256i x, __m256i k, __m256i d)
{
    const __m256i lo = _mm256_clmulepi64_epi128(x, k, 0x00);
    const __m256i hi = _mm256_clmulepi64_epi128(x, k, 0x11);
    return _mm256_xor_si256(_mm256_xor_si256(lo, hi), d);
}

/* Raw CRC state c over len bytes, len >= 128 and a multiple of 16: four
 * ymm lanes fold over 1024 bits (128 bytes per round), then into one ymm
 * over 256 bits, its two halves into one xmm over 128 bits, and the rest
 * as crc_raw_clmul. */
static CRC_VTARGET uint32_t crc_raw_vclmul(uint32_t c, const uint8_t *p,
                                           size_t len)
{
    const __m256i k1024 = _mm256_set_epi64x(0x000000014a7fe880,
                                            0x00000001e88ef372,
                                            0x000000014a7fe880,
                                            0x00000001e88ef372);
    const __m256i k256 = _mm256_set_epi64x(0x000000015a546366,
                                           0x00000000f1da05aa,
                                           0x000000015a546366,
                                           0x00000000f1da05aa);
    const __m128i k3k4 = _mm_set_epi64x(0x00000000ccaa009e, 0x00000001751997d0);

    __m256i x0 = _mm256_xor_si256(
        load32(p), _mm256_zextsi128_si256(_mm_cvtsi32_si128((int)c)));
    __m256i x1 = load32(p + 32);
    __m256i x2 = load32(p + 64);
    __m256i x3 = load32(p + 96);
    p += 128;
    len -= 128;
    while (len >= 128) {
        x0 = fold32(x0, k1024, load32(p));
        x1 = fold32(x1, k1024, load32(p + 32));
        x2 = fold32(x2, k1024, load32(p + 64));
        x3 = fold32(x3, k1024, load32(p + 96));
        p += 128;
        len -= 128;
    }
    x1 = fold32(x0, k256, x1);
    x2 = fold32(x1, k256, x2);
    x3 = fold32(x2, k256, x3);
    const __m128i x = fold16(_mm256_castsi256_si128(x3), k3k4,
                             _mm256_extracti128_si256(x3, 1));
    return crc_tail16(x, p, len);
}

#define CRC_ZTARGET __attribute__((target("avx512f,vpclmulqdq,pclmul")))

static inline CRC_ZTARGET __m512i load64(const uint8_t *p)
{
    return _mm512_loadu_si512((const void *)p);
}

/* fold16 on the four 128-bit lanes of a zmm register */
static inline CRC_ZTARGET __m512i fold64(__m512i x, __m512i k, __m512i d)
{
    const __m512i lo = _mm512_clmulepi64_epi128(x, k, 0x00);
    const __m512i hi = _mm512_clmulepi64_epi128(x, k, 0x11);
    return _mm512_xor_si512(_mm512_xor_si512(lo, hi), d);
}

/* As crc_raw_vclmul with four zmm lanes: 256 bytes per round folded over
 * 2048 bits, then into one zmm over 512 bits, its four 128-bit lanes into
 * one over 128 bits each. len >= 256 and a multiple of 16. Twice the
 * speed of the ymm version on AMD Zen 4 (5 against 10 us for 300 KB). */
static CRC_ZTARGET uint32_t crc_raw_zclmul(uint32_t c, const uint8_t *p,
                                           size_t len)
{
    const __m512i k2048 = _mm512_set_epi64(
        0x00000001322d1430, 0x000000011542778a, 0x00000001322d1430,
        0x000000011542778a, 0x00000001322d1430, 0x000000011542778a,
        0x00000001322d1430, 0x000000011542778a);
    const __m512i k512 = _mm512_set_epi64(
        0x00000001c6e41596, 0x0000000154442bd4, 0x00000001c6e41596,
        0x0000000154442bd4, 0x00000001c6e41596, 0x0000000154442bd4,
        0x00000001c6e41596, 0x0000000154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x00000000ccaa009e, 0x00000001751997d0);

    __m512i x0 = _mm512_xor_si512(
        load64(p), _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)c)));
    __m512i x1 = load64(p + 64);
    __m512i x2 = load64(p + 128);
    __m512i x3 = load64(p + 192);
    p += 256;
    len -= 256;
    while (len >= 256) {
        x0 = fold64(x0, k2048, load64(p));
        x1 = fold64(x1, k2048, load64(p + 64));
        x2 = fold64(x2, k2048, load64(p + 128));
        x3 = fold64(x3, k2048, load64(p + 192));
        p += 256;
        len -= 256;
    }
    x1 = fold64(x0, k512, x1);
    x2 = fold64(x1, k512, x2);
    x3 = fold64(x2, k512, x3);
    __m128i x = _mm512_extracti32x4_epi32(x3, 0);
    x = fold16(x, k3k4, _mm512_extracti32x4_epi32(x3, 1));
    x = fold16(x, k3k4, _mm512_extracti32x4_epi32(x3, 2));
    x = fold16(x, k3k4, _mm512_extracti32x4_epi32(x3, 3));
    return crc_tail16(x, p, len);
}

/* 3: VPCLMULQDQ and AVX-512F, 2: VPCLMULQDQ and AVX2, 1: PCLMULQDQ,
 * 0: none (zlib only). __builtin_cpu_supports also checks that the OS
 * saves the ymm/zmm state. */
static int clmul_level(void)
{
    __builtin_cpu_init(); /* idempotent: a no-op once libgcc has run it */
    if (!__builtin_cpu_supports("pclmul"))
        return 0;
    if (!__builtin_cpu_supports("vpclmulqdq"))
        return 1;
    if (__builtin_cpu_supports("avx512f"))
        return 3;
    return __builtin_cpu_supports("avx2") ? 2 : 1;
}

#endif /* CMP_CRC_CLMUL */

uint32_t cmp_crc32_impl(const uint8_t *p, size_t len, int max_level)
{
#ifdef CMP_CRC_CLMUL
    if (len >= 128) {
        int level = clmul_level();
        level = level < max_level ? level : max_level;
        const size_t bulk = len & ~(size_t)15;
        uint32_t c;
        if (level >= 3 && bulk >= 256)
            c = crc_raw_zclmul(0xffffffffu, p, bulk);
        else if (level >= 2)
            c = crc_raw_vclmul(0xffffffffu, p, bulk);
        else if (level == 1)
            c = crc_raw_clmul(0xffffffffu, p, bulk);
        else
            return (uint32_t)crc32_z(0, p, len);
        c = crc_raw_zlib(c, p + bulk, len - bulk);
        return ~c;
    }
#endif
    (void)max_level;
    return (uint32_t)crc32_z(0, p, len);
}

uint32_t cmp_crc32(const uint8_t *p, size_t len)
{
    return cmp_crc32_impl(p, len, 3);
}
