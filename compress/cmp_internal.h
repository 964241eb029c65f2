/*
 * cmp_internal.h - pieces shared inside compress/ only; nothing outside
 * compress/ (except its own unit tests) includes this header.
 *
 * The payload layout these functions produce and check is specified byte by
 * byte in docs/wire-format.md (section 12); keep the two in step.
 *
 *   cmp_index.c  index streams (delta-varint, bitmap, Rice) and their sizes
 *   cmp_value.c  value streams (fp32/fp16/bf16 byte-planar, int8 blocks)
 *   cmp_codec.c  codec backends (none/LZ4/zstd) behind one small vtable
 *   cmp_tensor.c the public encode/decode API built from the three above
 */
#ifndef CMP_INTERNAL_H
#define CMP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/fl_err.h"
#include "compress/cmp_types.h"

/* ---- float <-> bit pattern, without aliasing games */
static inline uint32_t cmp_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float cmp_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- growable scratch buffer (contents are not preserved on growth) */
struct cmp_buf {
    void *p;
    size_t cap;
};

/* Make b hold at least size bytes. On failure the old buffer is kept and
 * FL_ERR_NOMEM is returned. */
enum fl_err cmp_buf_reserve(struct cmp_buf *b, size_t size);
/* Free the buffer and zero the struct; the struct may be reused. */
void cmp_buf_release(struct cmp_buf *b);

/* ---- index streams (cmp_index.c)
 * All three codings store v_j = idx_j - idx_{j-1} - 1 with idx_{-1} = -1,
 * i.e. the first index itself and then each gap minus one. */

/* Exact size of the delta-varint stream of idx[0..k). */
size_t cmp_varint_size(const uint32_t *idx, size_t k);
/* Size of the bitmap stream: ceil(n / 8). */
uint64_t cmp_bitmap_size(uint64_t n);
/* Rice: choose the parameter from the mean gap (trying a few neighbours,
 * sizes computed exactly) and return the exact stream size including the
 * parameter byte; *b_out receives the parameter. k >= 1. */
size_t cmp_rice_size(const uint32_t *idx, size_t k, unsigned *b_out);
/* Exact size of the Rice stream with a given parameter. */
size_t cmp_rice_size_b(const uint32_t *idx, size_t k, unsigned b);

/* Write the stream (caller sized dst with the functions above; for Rice
 * dst must have 8 spare bytes past the exact size). Returns bytes written. */
size_t cmp_varint_write(const uint32_t *idx, size_t k, uint8_t *dst);
size_t cmp_bitmap_write(const uint32_t *idx, size_t k, uint64_t n,
                        uint8_t *dst);
size_t cmp_rice_write(const uint32_t *idx, size_t k, unsigned b,
                      uint8_t *dst);

/* Decode exactly k indices from a stream of exactly len bytes, each < n
 * (n <= 2^32). Errors: FL_ERR_INDEX_RANGE, FL_ERR_TRUNCATED (stream ends
 * before k indices), FL_ERR_TRAILING (bytes, bits or bitmap entries after the
 * k-th index), FL_ERR_FORMAT (non-canonical or over-long varint, Rice
 * parameter > 31). Never reads outside [src, src + len). */
enum fl_err cmp_varint_read(const uint8_t *src, size_t len, uint64_t n,
                            size_t k, uint32_t *idx);
enum fl_err cmp_bitmap_read(const uint8_t *src, size_t len, uint64_t n,
                            size_t k, uint32_t *idx);
enum fl_err cmp_rice_read(const uint8_t *src, size_t len, uint64_t n,
                          size_t k, uint32_t *idx);

/* Bounds of the index stream size for k indices below n with coding c
 * (the decoder rejects a declared raw size outside them before it
 * decompresses anything). FL_ERR_K_RANGE if the coding cannot hold k of n
 * (INDEX_ALL needs k == n); FL_ERR_UNSUPPORTED for an unknown coding. */
enum fl_err cmp_index_bounds(enum cmp_index_coding c, uint64_t n, uint64_t k,
                             uint64_t *min, uint64_t *max);

/* ---- value streams (cmp_value.c) */

/* 1 if v is a coding this build knows. */
int cmp_value_known(enum cmp_value_coding v);
/* Exact size of the value stream of k values (0 for an unknown coding). */
uint64_t cmp_value_size(enum cmp_value_coding v, uint64_t k);
/* Quantize and write k finite values; val[i] is replaced by the value the
 * decoder will produce. Writes exactly cmp_value_size() bytes. */
void cmp_value_write(enum cmp_value_coding v, float *val, size_t k,
                     uint8_t *dst);
/* Read k values from exactly cmp_value_size() bytes. FL_ERR_NONFINITE if a
 * value (or an int8 block scale) is NaN or infinite, FL_ERR_FORMAT for a
 * negative int8 scale or a quantized value of -128. */
enum fl_err cmp_value_read(enum cmp_value_coding v, const uint8_t *src,
                           size_t k, float *out);

/* A function built twice by GCC, for x86-64-v3 (AVX2, FMA, LZCNT, SHLX)
 * and for the baseline, the clone picked at load time (ifunc); both give
 * the same result bit for bit. Nothing elsewhere. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) &&      \
    defined(__linux__)
#define CMP_SIMD_CLONES                                                       \
    __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CMP_SIMD_CLONES
#endif

/* cmp_value_read(), and *sumsq = the sum of the squared values (double).
 * For fp16 on x86-64 with F16C the squares are summed as the values are
 * converted; otherwise by cmp_sumsq() after the read. 0 on failure. */
enum fl_err cmp_value_read_sumsq(enum cmp_value_coding v, const uint8_t *src,
                                 size_t k, float *out, double *sumsq);

/* The sum of x[i]^2 over i < n, in double. */
double cmp_sumsq(const float *x, size_t n);

/* The fp16 reader of cmp_value_read(), with the CPU-specific (F16C) path
 * allowed or not, so that tests can compare both on one machine. */
enum fl_err cmp_f16_read_with(const uint8_t *src, size_t k, float *out,
                              int allow_simd);

/* Dense fp32 helpers: byte-planar shuffle of the bit patterns of x, XORed
 * with base when base != NULL; the inverse checks the result for NaN/Inf
 * and returns FL_ERR_NONFINITE (out is written either way). */
void cmp_fp32_write_xor(const float *x, const float *base, size_t k,
                        uint8_t *dst);
enum fl_err cmp_fp32_read_xor(const uint8_t *src, const float *base, size_t k,
                              float *out);

/* Scalar conversions (exposed for tests and docs examples). */
uint16_t cmp_f32_to_f16(float f);  /* round-to-nearest-even, saturating */
float cmp_f16_to_f32(uint16_t h);
uint16_t cmp_f32_to_bf16(float f); /* round-to-nearest-even, saturating */
float cmp_bf16_to_f32(uint16_t h);

/* ---- codec backends (cmp_codec.c) */

/* Library contexts, created on first use and reused (zstd CCtx/DCtx). */
struct cmp_codecs {
    void *zstd_c;
    void *zstd_d;
};

/* Part boundaries of a raw stream, for compress_parts: the parts end at
 * ends[0] < ... < ends[n - 1] == len. `literal` says the parts are
 * literal-dominated (sparse payloads: index bits, mantissa and exponent
 * bytes), where short LZ matches cost more than they save. */
#define CMP_MAX_PARTS 6
struct cmp_parts {
    size_t ends[CMP_MAX_PARTS];
    size_t n;
    int literal;
};

struct cmp_codec_backend {
    enum cmp_codec id;
    int passthrough;               /* payload == raw: no (de)compression */
    /* worst-case output size for len input bytes; 0 if len is too large */
    size_t (*bound)(size_t len);
    /* compress [src, len) into dst (capacity cap >= bound(len)) */
    enum fl_err (*compress)(struct cmp_codecs *cs, const uint8_t *src,
                            size_t len, uint8_t *dst, size_t cap, int level,
                            size_t *out_len);
    /* decompress exactly raw_size bytes into dst (capacity raw_size);
     * FL_ERR_CODEC, FL_ERR_SIZE_MISMATCH, FL_ERR_TRAILING, FL_ERR_NOMEM */
    enum fl_err (*decompress)(struct cmp_codecs *cs, const uint8_t *src,
                              size_t len, uint8_t *dst, size_t raw_size);
    /* Optional (NULL: use compress): compress as above, told where the
     * parts of the raw stream end (index stream, value planes; see struct
     * cmp_parts). zstd starts a new block at a part boundary, so that each
     * part gets its own entropy tables and an incompressible one (Rice
     * bits, low mantissa bytes) is stored raw: smaller and much faster to
     * decode than one mixed block. The output is an ordinary frame, within
     * bound(len). */
    enum fl_err (*compress_parts)(struct cmp_codecs *cs, const uint8_t *src,
                                  size_t len, const struct cmp_parts *pt,
                                  uint8_t *dst, size_t cap, int level,
                                  size_t *out_len);
};

/* The parts of a raw stream of isize index bytes followed by the value
 * stream of k values with coding v (planes, or int8 scales and bytes).
 * Parts shorter than CMP_MIN_PART are merged into a neighbour: a block of
 * its own would cost more (block header, entropy tables) than it saves.
 * pt->literal is set to 0; the caller sets it for sparse payloads. */
#define CMP_MIN_PART 256
void cmp_parts_of(struct cmp_parts *pt, size_t isize,
                  enum cmp_value_coding v, size_t k);

/* The backend for a codec id, or NULL when unknown. */
const struct cmp_codec_backend *cmp_codec_backend_get(enum cmp_codec id);
/* Free the library contexts; the struct is left zeroed and reusable. */
void cmp_codecs_release(struct cmp_codecs *cs);
/* zstd level actually used for a requested level: clamped to
 * [CMP_ZSTD_LEVEL_MIN, CMP_ZSTD_LEVEL_MAX]. */
int cmp_zstd_level_clamp(int level);

/* CRC-32 of [p, len) as zlib's crc32() computes it (initial value 0). */
uint32_t cmp_crc32(const uint8_t *p, size_t len);
/* The same with the fastest method limited to max_level (0 zlib only,
 * 1 PCLMULQDQ, 2 VPCLMULQDQ with ymm, 3 with zmm; the CPU's own limit
 * applies too), so that tests can compare every method on one machine. */
uint32_t cmp_crc32_impl(const uint8_t *p, size_t len, int max_level);

#endif /* CMP_INTERNAL_H */
