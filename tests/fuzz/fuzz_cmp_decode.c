/*
 * fuzz_cmp_decode.c - fuzz target for compress/: the decoder on hostile
 * metadata and payloads, and encode/decode round trips.
 *
 * Input layout (byte 0 & 3 selects the mode):
 *
 *   decode modes (0, 1: sparse; 3: dense), a 17-byte header then payload
 *     [1] index coding % 6   [2] value coding % 6   [3] codec % 5
 *         (so 0 and unknown ids occur: the decoder must refuse them)
 *     [4..5] dimension - 1 (LE)   [6..7] k (LE)
 *     [8..11] raw_size (LE)       [12..15] checksum (LE)
 *     [16] flags: bit 0 replace the checksum by the CRC of what the codec
 *          really produces (so mutated payloads reach the index and value
 *          checks); bit 1 codec none: raw_size = payload length;
 *          bit 2 dense: decode against an XOR base
 *     On success the result must be valid (indices strictly increasing and
 *     < dimension, values finite); it is re-encoded twice (same bytes:
 *     determinism) and decoded again (same indices; same values except
 *     int8, whose block scales may change).
 *
 *   mode 2, sparse encode round trip:
 *     [1] index coding % 5  [2] value coding  [3] codec  [4] zstd level
 *     [5..6] n - 1 (LE); the rest is a bitmap choosing the indices and
 *     the source of the values
 *
 * The seed corpus in corpus/fuzz_cmp_decode/ is written by
 * FL_REGEN_CORPUS=1 build/.../tests/test_cmp_golden.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <zstd.h>

#include "compress/cmp_internal.h"
#include "compress/cmp_tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HDR 17
#define MAX_RAW_CHECK (1u << 22)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_cmp_decode: check failed: %s (line %d)\n",  \
                    #cond, __LINE__);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

static uint32_t le16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t le32(const uint8_t *p)
{
    return le16(p) | le16(p + 2) << 16;
}

/* CRC of what the codec really makes of the payload, or 0 if it fails. */
static uint32_t real_crc(enum cmp_codec codec, const uint8_t *pl, size_t len,
                         uint64_t raw_size)
{
    if (codec == CMP_CODEC_NONE)
        return cmp_crc32(pl, len);
    if (raw_size == 0 || raw_size > MAX_RAW_CHECK)
        return 0;
    uint8_t *buf = malloc((size_t)raw_size);
    uint32_t crc = 0;
    if (buf == NULL)
        return 0;
    if (codec == CMP_CODEC_ZSTD) {
        const size_t r = ZSTD_decompress(buf, (size_t)raw_size, pl, len);
        if (!ZSTD_isError(r) && r == raw_size)
            crc = cmp_crc32(buf, r);
    } else if (codec == CMP_CODEC_LZ4 && len <= (size_t)LZ4_MAX_INPUT_SIZE) {
        const int r = LZ4_decompress_safe((const char *)pl, (char *)buf,
                                          (int)len, (int)raw_size);
        if (r >= 0 && (uint64_t)r == raw_size)
            crc = cmp_crc32(buf, (size_t)r);
    }
    free(buf);
    return crc;
}

static void check_result(uint64_t n, const uint32_t *idx, const float *val,
                         size_t k)
{
    for (size_t j = 0; j < k; j++) {
        CHECK(idx[j] < n);
        CHECK(j == 0 || idx[j] > idx[j - 1]);
        CHECK(isfinite(val[j]));
    }
}

/* Encode (idx, val) twice: identical output; then decode and compare. */
static void reencode(struct cmp_ctx *ctx, uint64_t n, const uint32_t *idx,
                     const float *val, size_t k, const struct cmp_params *p)
{
    float *v1 = malloc(k * sizeof *v1);
    float *v2 = malloc(k * sizeof *v2);
    uint8_t *first = NULL;
    struct cmp_meta m1;
    struct cmp_meta m2;
    const uint8_t *pl;
    size_t len1;
    size_t len2;
    if (v1 == NULL || v2 == NULL)
        goto out;
    memcpy(v1, val, k * sizeof *v1);
    memcpy(v2, val, k * sizeof *v2);
    const enum fl_err rc = cmp_sparse_encode(ctx, n, idx, v1, k, p, &m1, &pl,
                                             &len1);
    if (p->index_coding == CMP_INDEX_ALL && k != n) {
        CHECK(rc == FL_ERR_INVALID_ARG);
        goto out;
    }
    CHECK(rc == FL_OK);
    first = malloc(len1 + 1);
    if (first == NULL)
        goto out;
    memcpy(first, pl, len1);
    CHECK(cmp_sparse_encode(ctx, n, idx, v2, k, p, &m2, &pl, &len2) == FL_OK);
    CHECK(len1 == len2 && memcmp(first, pl, len1) == 0);
    CHECK(m1.dimension == m2.dimension && m1.k == m2.k &&
          m1.index_coding == m2.index_coding &&
          m1.value_coding == m2.value_coding && m1.codec == m2.codec &&
          m1.raw_size == m2.raw_size && m1.checksum == m2.checksum);
    CHECK(memcmp(v1, v2, k * sizeof *v1) == 0);

    const struct cmp_limits lim = {n, 0, 0};
    const uint32_t *di;
    const float *dv;
    size_t dk;
    CHECK(cmp_sparse_decode(ctx, &m1, first, len1, &lim, &di, &dv, &dk) ==
          FL_OK);
    CHECK(dk == k);
    CHECK(memcmp(di, idx, k * sizeof *di) == 0);
    CHECK(memcmp(dv, v1, k * sizeof *dv) == 0);
    if (p->values != CMP_VALUE_INT8)
        CHECK(memcmp(v1, val, k * sizeof *v1) == 0); /* idempotent */
out:
    free(first);
    free(v1);
    free(v2);
}

static void fuzz_sparse_decode(struct cmp_ctx *ctx, const struct cmp_meta *m,
                               const uint8_t *pl, size_t len)
{
    const struct cmp_limits lim = {m->dimension, 0, 0};
    const uint32_t *idx;
    const float *val;
    size_t k;
    if (cmp_sparse_decode(ctx, m, pl, len, &lim, &idx, &val, &k) != FL_OK)
        return;
    CHECK(k == m->k);
    check_result(m->dimension, idx, val, k);
    uint32_t *ci = malloc(k * sizeof *ci);
    float *cv = malloc(k * sizeof *cv);
    if (ci != NULL && cv != NULL) {
        memcpy(ci, idx, k * sizeof *ci);
        memcpy(cv, val, k * sizeof *cv);
        const struct cmp_params p = {m->index_coding, m->value_coding,
                                     m->codec, 1};
        reencode(ctx, m->dimension, ci, cv, k, &p);
    }
    free(ci);
    free(cv);
}

static void fuzz_dense_decode(struct cmp_ctx *ctx, const struct cmp_meta *m,
                              const uint8_t *pl, size_t len, int use_base)
{
    const size_t n = (size_t)m->dimension;
    float *out = malloc(n * sizeof *out);
    float *base = malloc(n * sizeof *base);
    const struct cmp_limits lim = {m->dimension, 0, 0};
    if (out == NULL || base == NULL)
        goto out;
    for (size_t i = 0; i < n; i++)
        base[i] = (float)i * 0.5f - 3.0f;
    for (size_t i = 0; i < n; i++)
        out[i] = 7.0f;
    const float *b = use_base ? base : NULL;
    if (cmp_dense_decode(ctx, m, pl, len, &lim, b, out) != FL_OK) {
        for (size_t i = 0; i < n; i++) /* untouched on error */
            CHECK(out[i] == 7.0f);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        CHECK(isfinite(out[i]));
    struct cmp_meta m2;
    const uint8_t *p2;
    size_t len2;
    CHECK(cmp_dense_encode(ctx, out, n, b, m->codec, 1, &m2, &p2, &len2) ==
          FL_OK);
    CHECK(m2.checksum == m->checksum && m2.raw_size == m->raw_size);
    uint8_t *copy = malloc(len2 + 1);
    if (copy != NULL) {
        memcpy(copy, p2, len2);
        /* with a base: in place, the output aliasing the base */
        CHECK(cmp_dense_decode(ctx, &m2, copy, len2, &lim, b, base) ==
              FL_OK);
        CHECK(memcmp(base, out, n * sizeof *out) == 0);
    }
    free(copy);
out:
    free(out);
    free(base);
}

static void fuzz_decode(struct cmp_ctx *ctx, const uint8_t *d, size_t size)
{
    if (size < HDR)
        return;
    const uint8_t *pl = d + HDR;
    const size_t len = size - HDR;
    struct cmp_meta m = {
        1 + (uint64_t)le16(d + 4), le16(d + 6),
        (enum cmp_index_coding)(d[1] % 6), (enum cmp_value_coding)(d[2] % 6),
        (enum cmp_codec)(d[3] % 5), le32(d + 8), le32(d + 12)};
    const uint8_t flags = d[16];
    if ((flags & 2) && m.codec == CMP_CODEC_NONE)
        m.raw_size = len;
    if (flags & 1)
        m.checksum = real_crc(m.codec, pl, len, m.raw_size);
    if ((d[0] & 3) == 3)
        fuzz_dense_decode(ctx, &m, pl, len, (flags & 4) != 0);
    else
        fuzz_sparse_decode(ctx, &m, pl, len);
}

static void fuzz_encode(struct cmp_ctx *ctx, const uint8_t *d, size_t size)
{
    if (size < 8)
        return;
    const uint8_t *rest = d + 7;
    const size_t rlen = size - 7;
    const uint64_t n = 1 + (uint64_t)le16(d + 5);
    uint32_t *idx = malloc((size_t)n * sizeof *idx);
    float *val = malloc((size_t)n * sizeof *val);
    size_t k = 0;
    if (idx == NULL || val == NULL)
        goto out;
    for (uint64_t i = 0; i < n && i / 8 < rlen; i++) {
        if (rest[i / 8] & (1u << (i % 8)))
            idx[k++] = (uint32_t)i;
    }
    for (size_t j = 0; j < k; j++) {
        const int8_t m = (int8_t)rest[(3 * j + 1) % rlen];
        const int e = rest[(5 * j + 2) % rlen] % 48 - 24;
        val[j] = ldexpf((float)m, e);
    }
    if (k == 0)
        goto out;
    const struct cmp_params p = {(enum cmp_index_coding)(d[1] % 5),
                                 (enum cmp_value_coding)(1 + d[2] % 4),
                                 (enum cmp_codec)(1 + d[3] % 3),
                                 (int)(d[4] % 24) - 2};
    /* what the encoder writes back is what reencode() compares against:
     * quantize once first, then the round trip must be exact */
    float *q = malloc(k * sizeof *q);
    if (q != NULL) {
        struct cmp_meta m;
        const uint8_t *pl;
        size_t len;
        memcpy(q, val, k * sizeof *q);
        const enum fl_err rc =
            cmp_sparse_encode(ctx, n, idx, q, k, &p, &m, &pl, &len);
        CHECK(rc == FL_OK || (p.index_coding == CMP_INDEX_ALL && k != n));
        if (rc == FL_OK)
            CHECK(len <= cmp_sparse_bound(n, k, &p));
        reencode(ctx, n, idx, rc == FL_OK ? q : val, k, &p);
    }
    free(q);
out:
    free(idx);
    free(val);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct cmp_ctx *ctx = cmp_ctx_new();
    if (ctx == NULL)
        return 0;
    if ((data[0] & 3) == 2)
        fuzz_encode(ctx, data, size);
    else
        fuzz_decode(ctx, data, size);
    cmp_ctx_destroy(&ctx);
    return 0;
}
