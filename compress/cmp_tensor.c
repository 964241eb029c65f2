/*
 * cmp_tensor.c - sparse and dense tensors to payloads and back.
 *
 * Encoding: index stream || value stream = raw; checksum = CRC-32(raw);
 * payload = codec(raw). Decoding validates in a fixed order, cheapest and
 * most fundamental first, so that nothing is allocated or decompressed for
 * a payload whose metadata is already wrong:
 *
 *   ids known -> dimension -> k range -> raw size within the bounds implied
 *   by (n, k, codings) -> decompress exactly raw_size -> CRC -> indices ->
 *   values finite
 *
 * The raw-size bounds are what make decompression bombs harmless: scratch
 * is sized from the validated raw_size, and the codec must produce exactly
 * that many bytes. docs/wire-format.md (section 12) lists every rule and its code.
 */
#include "compress/cmp_tensor.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"
#include "compress/cmp_internal.h"

/* Largest dimension: indices travel as uint32. */
#define MAX_DIMENSION ((uint64_t)UINT32_MAX + 1)

struct cmp_ctx {
    struct cmp_codecs codecs;
    struct cmp_buf raw; /* encode: raw stream; decode: decompressed raw */
    struct cmp_buf out; /* encode: compressed payload */
    struct cmp_buf idx; /* decode: indices */
    struct cmp_buf val; /* decode: values (dense: the decoded model) */
};

struct cmp_ctx *cmp_ctx_new(void)
{
    return fl_calloc(1, sizeof(struct cmp_ctx));
}

void cmp_ctx_destroy(struct cmp_ctx **cp)
{
    if (cp == NULL || *cp == NULL)
        return;
    struct cmp_ctx *c = *cp;
    cmp_codecs_release(&c->codecs);
    cmp_buf_release(&c->raw);
    cmp_buf_release(&c->out);
    cmp_buf_release(&c->idx);
    cmp_buf_release(&c->val);
    fl_free(c);
    *cp = NULL;
}

/* ------------------------------------------------------------ encode */

struct index_plan {
    enum cmp_index_coding coding;
    size_t size;
    unsigned rice_b;
};

/* Pick the index coding and its exact size. AUTO takes the smallest
 * stream (on equal sizes Rice wins over bitmap), except that varint is
 * kept while it is at most 1/256 larger than the smallest: it decodes
 * about twice as fast as Rice (0.6 against 1.2 ns per index, measured) and
 * far faster than a sparse bitmap, which is worth more than those few
 * bytes. On geometric gaps (top-k of noisy updates) Rice is 10-20%
 * smaller and still chosen. */
#define VARINT_SLACK_DIV 256
static void plan_index(const uint32_t *idx, size_t k, uint64_t n,
                       enum cmp_index_coding want, struct index_plan *pl)
{
    pl->coding = want;
    pl->rice_b = 0;
    switch (want) {
    case CMP_INDEX_ALL:
        pl->size = 0;
        return;
    case CMP_INDEX_DELTA_VARINT:
        pl->size = cmp_varint_size(idx, k);
        return;
    case CMP_INDEX_BITMAP:
        pl->size = (size_t)cmp_bitmap_size(n);
        return;
    case CMP_INDEX_RICE:
        pl->size = cmp_rice_size(idx, k, &pl->rice_b);
        return;
    case CMP_INDEX_AUTO:
        break;
    }
    if (k == n) {
        pl->coding = CMP_INDEX_ALL;
        pl->size = 0;
        return;
    }
    unsigned b;
    const size_t vs = cmp_varint_size(idx, k);
    const size_t rs = cmp_rice_size(idx, k, &b);
    const size_t bs = (size_t)cmp_bitmap_size(n);
    pl->coding = CMP_INDEX_RICE;
    pl->size = rs;
    pl->rice_b = b;
    if (bs < pl->size) {
        pl->coding = CMP_INDEX_BITMAP;
        pl->size = bs;
        pl->rice_b = 0;
    }
    if (vs <= pl->size + pl->size / VARINT_SLACK_DIV) {
        pl->coding = CMP_INDEX_DELTA_VARINT;
        pl->size = vs;
        pl->rice_b = 0;
    }
}

static size_t write_index(const struct index_plan *pl, const uint32_t *idx,
                          size_t k, uint64_t n, uint8_t *dst)
{
    switch (pl->coding) {
    case CMP_INDEX_DELTA_VARINT:
        return cmp_varint_write(idx, k, dst);
    case CMP_INDEX_BITMAP:
        return cmp_bitmap_write(idx, k, n, dst);
    case CMP_INDEX_RICE:
        return cmp_rice_write(idx, k, pl->rice_b, dst);
    case CMP_INDEX_ALL:
    case CMP_INDEX_AUTO:
        break;
    }
    return 0;
}

static int index_coding_known(enum cmp_index_coding c)
{
    switch (c) {
    case CMP_INDEX_DELTA_VARINT:
    case CMP_INDEX_BITMAP:
    case CMP_INDEX_RICE:
    case CMP_INDEX_ALL:
        return 1;
    case CMP_INDEX_AUTO:
        break;
    }
    return 0;
}

static enum fl_err check_sparse_args(uint64_t n, const uint32_t *idx,
                                     const float *val, size_t k,
                                     const struct cmp_params *p)
{
    if (p == NULL || idx == NULL || val == NULL)
        return FL_ERR_INVALID_ARG;
    if (!cmp_value_known(p->values) || cmp_codec_backend_get(p->codec) == NULL)
        return FL_ERR_UNSUPPORTED;
    if (p->index_coding != CMP_INDEX_AUTO &&
        !index_coding_known(p->index_coding))
        return FL_ERR_UNSUPPORTED;
    if (n == 0 || n > MAX_DIMENSION || k == 0 || k > n)
        return FL_ERR_INVALID_ARG;
    if (p->index_coding == CMP_INDEX_ALL && k != n)
        return FL_ERR_INVALID_ARG;
    for (size_t j = 0; j < k; j++) {
        if (idx[j] >= n || (j > 0 && idx[j] <= idx[j - 1]))
            return FL_ERR_INVALID_ARG;
    }
    uint32_t bad = 0;
    for (size_t j = 0; j < k; j++)
        bad |= (cmp_f32_bits(val[j]) & 0x7f800000u) == 0x7f800000u;
    return bad ? FL_ERR_NONFINITE : FL_OK;
}

/* CRC and codec over ctx->raw[0, raw_size), made of the index stream
 * (isize bytes) and the value stream of k values coded v (the codec may
 * use the parts; `sparse`: top-k values, literal-dominated, unlike the
 * zero runs of a dense XOR delta); fills the codec-related meta fields and
 * the payload pointer. */
static enum fl_err finish_payload(struct cmp_ctx *ctx, size_t raw_size,
                                  size_t isize, enum cmp_value_coding v,
                                  size_t k, int sparse,
                                  const struct cmp_params *p,
                                  struct cmp_meta *meta,
                                  const uint8_t **payload, size_t *payload_len)
{
    const enum cmp_codec codec = p->codec;
    const int level = p->level;
    const struct cmp_codec_backend *be = cmp_codec_backend_get(codec);
    const uint8_t *raw = ctx->raw.p;
    enum fl_err rc;

    meta->codec = codec;
    meta->raw_size = raw_size;
    meta->checksum = cmp_crc32(raw, raw_size);
    if (be->passthrough) {
        *payload = raw;
        *payload_len = raw_size;
        return FL_OK;
    }
    const size_t bound = be->bound(raw_size);
    if (bound == 0)
        return FL_ERR_TOO_LARGE;
    rc = cmp_buf_reserve(&ctx->out, bound);
    if (rc != FL_OK)
        return rc;
    if (be->compress_parts != NULL) {
        struct cmp_parts pt;
        cmp_parts_of(&pt, isize, v, k);
        pt.literal = sparse;
        rc = be->compress_parts(&ctx->codecs, raw, raw_size, &pt, ctx->out.p,
                                bound, level, payload_len);
    } else {
        rc = be->compress(&ctx->codecs, raw, raw_size, ctx->out.p, bound,
                          level, payload_len);
    }
    if (rc != FL_OK)
        return rc;
    *payload = ctx->out.p;
    return FL_OK;
}

enum fl_err cmp_sparse_encode(struct cmp_ctx *ctx, uint64_t n,
                              const uint32_t *idx, float *val, size_t k,
                              const struct cmp_params *p,
                              struct cmp_meta *meta, const uint8_t **payload,
                              size_t *payload_len)
{
    struct index_plan plan;
    enum fl_err rc;

    if (ctx == NULL || meta == NULL || payload == NULL || payload_len == NULL)
        return FL_ERR_INVALID_ARG;
    rc = check_sparse_args(n, idx, val, k, p);
    if (rc != FL_OK)
        return rc;
    plan_index(idx, k, n, p->index_coding, &plan);
    const size_t vsize = (size_t)cmp_value_size(p->values, k);
    const size_t raw_size = plan.size + vsize;
    rc = cmp_buf_reserve(&ctx->raw, raw_size);
    if (rc != FL_OK)
        return rc;

    uint8_t *const raw = ctx->raw.p;
    const size_t isize = write_index(&plan, idx, k, n, raw);
    if (isize != plan.size)
        return FL_ERR_INVALID_ARG; /* unreachable: sizes are exact */
    cmp_value_write(p->values, val, k, raw + isize);

    meta->dimension = n;
    meta->k = k;
    meta->index_coding = plan.coding;
    meta->value_coding = p->values;
    return finish_payload(ctx, raw_size, isize, p->values, k, 1, p, meta,
                          payload, payload_len);
}

enum fl_err cmp_dense_encode(struct cmp_ctx *ctx, const float *x, size_t n,
                             const float *base, enum cmp_codec codec,
                             int level, struct cmp_meta *meta,
                             const uint8_t **payload, size_t *payload_len)
{
    if (ctx == NULL || x == NULL || meta == NULL || payload == NULL ||
        payload_len == NULL)
        return FL_ERR_INVALID_ARG;
    if (cmp_codec_backend_get(codec) == NULL)
        return FL_ERR_UNSUPPORTED;
    if (n == 0 || (uint64_t)n > MAX_DIMENSION)
        return FL_ERR_INVALID_ARG;
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= (cmp_f32_bits(x[i]) & 0x7f800000u) == 0x7f800000u;
    if (bad)
        return FL_ERR_NONFINITE;

    const enum fl_err rc = cmp_buf_reserve(&ctx->raw, 4 * n);
    if (rc != FL_OK)
        return rc;
    cmp_fp32_write_xor(x, base, n, ctx->raw.p);
    meta->dimension = n;
    meta->k = n;
    meta->index_coding = CMP_INDEX_ALL;
    meta->value_coding = CMP_VALUE_FP32;
    const struct cmp_params dp = {CMP_INDEX_ALL, CMP_VALUE_FP32, codec, level};
    return finish_payload(ctx, 4 * n, 0, CMP_VALUE_FP32, n, 0, &dp, meta,
                          payload, payload_len);
}

/* ------------------------------------------------------------ decode */

/* The metadata checks shared by sparse and dense decoding, in the
 * documented order; afterwards meta->raw_size is safe to allocate. */
static enum fl_err check_meta(const struct cmp_meta *meta,
                              const struct cmp_limits *lim, int dense)
{
    if (!index_coding_known(meta->index_coding) ||
        !cmp_value_known(meta->value_coding) ||
        cmp_codec_backend_get(meta->codec) == NULL)
        return FL_ERR_UNSUPPORTED;
    if (dense && (meta->index_coding != CMP_INDEX_ALL ||
                  meta->value_coding != CMP_VALUE_FP32))
        return FL_ERR_UNSUPPORTED;
    if (meta->dimension != lim->dimension)
        return FL_ERR_DIMENSION;

    const uint64_t n = lim->dimension;
    uint64_t max_k = lim->max_k == 0 ? n : FL_MIN(lim->max_k, n);
    if (dense)
        max_k = n;
    if (meta->k == 0 || meta->k > max_k)
        return FL_ERR_K_RANGE;

    uint64_t imin;
    uint64_t imax;
    const enum fl_err rc =
        cmp_index_bounds(meta->index_coding, n, meta->k, &imin, &imax);
    if (rc != FL_OK)
        return rc;
    const uint64_t vsize = cmp_value_size(meta->value_coding, meta->k);
    if (meta->raw_size < imin + vsize || meta->raw_size > imax + vsize)
        return FL_ERR_RAW_SIZE;
    if (lim->max_raw_size != 0 && meta->raw_size > lim->max_raw_size)
        return FL_ERR_RAW_SIZE;
    return FL_OK;
}

/* Decompress into scratch sized from the validated raw size (or use the
 * payload itself without a codec) and verify the checksum. */
static enum fl_err open_raw(struct cmp_ctx *ctx, const struct cmp_meta *meta,
                            const uint8_t *payload, size_t payload_len,
                            const uint8_t **raw_out)
{
    const struct cmp_codec_backend *be = cmp_codec_backend_get(meta->codec);
    const size_t raw_size = (size_t)meta->raw_size;
    const uint8_t *raw;
    enum fl_err rc;

    if (payload == NULL && payload_len > 0)
        return FL_ERR_INVALID_ARG;
    if (be->passthrough) {
        if (payload_len < raw_size)
            return FL_ERR_TRUNCATED;
        if (payload_len > raw_size)
            return FL_ERR_TRAILING;
        raw = payload;
    } else {
        rc = cmp_buf_reserve(&ctx->raw, raw_size);
        if (rc != FL_OK)
            return rc;
        rc = be->decompress(&ctx->codecs, payload, payload_len, ctx->raw.p,
                            raw_size);
        if (rc != FL_OK)
            return rc;
        raw = ctx->raw.p;
    }
    if (cmp_crc32(raw, raw_size) != meta->checksum)
        return FL_ERR_CHECKSUM;
    *raw_out = raw;
    return FL_OK;
}

static enum fl_err read_index(enum cmp_index_coding c, const uint8_t *src,
                              size_t len, uint64_t n, size_t k, uint32_t *idx)
{
    switch (c) {
    case CMP_INDEX_DELTA_VARINT:
        return cmp_varint_read(src, len, n, k, idx);
    case CMP_INDEX_BITMAP:
        return cmp_bitmap_read(src, len, n, k, idx);
    case CMP_INDEX_RICE:
        return cmp_rice_read(src, len, n, k, idx);
    case CMP_INDEX_ALL:
        for (size_t i = 0; i < k; i++)
            idx[i] = (uint32_t)i;
        return len == 0 ? FL_OK : FL_ERR_TRAILING;
    case CMP_INDEX_AUTO:
        break;
    }
    return FL_ERR_UNSUPPORTED;
}

static int limits_usable(const struct cmp_limits *lim)
{
    return lim != NULL && lim->dimension > 0 &&
           lim->dimension <= MAX_DIMENSION;
}

static enum fl_err sparse_decode(struct cmp_ctx *ctx,
                                 const struct cmp_meta *meta,
                                 const uint8_t *payload, size_t payload_len,
                                 const struct cmp_limits *lim,
                                 const uint32_t **idx, const float **val,
                                 size_t *k, double *l2)
{
    const uint8_t *raw;
    enum fl_err rc;

    if (ctx == NULL || meta == NULL || !limits_usable(lim) || idx == NULL ||
        val == NULL || k == NULL)
        return FL_ERR_INVALID_ARG;
    rc = check_meta(meta, lim, 0);
    if (rc != FL_OK)
        return rc;
    const size_t kk = (size_t)meta->k;
    rc = cmp_buf_reserve(&ctx->idx, kk * sizeof(uint32_t));
    if (rc == FL_OK)
        rc = cmp_buf_reserve(&ctx->val, kk * sizeof(float));
    if (rc == FL_OK)
        rc = open_raw(ctx, meta, payload, payload_len, &raw);
    if (rc != FL_OK)
        return rc;

    const size_t vsize = (size_t)cmp_value_size(meta->value_coding, kk);
    const size_t isize = (size_t)meta->raw_size - vsize;
    rc = read_index(meta->index_coding, raw, isize, meta->dimension, kk,
                    ctx->idx.p);
    if (rc != FL_OK)
        return rc;
    if (l2 != NULL) {
        double sq = 0;
        rc = cmp_value_read_sumsq(meta->value_coding, raw + isize, kk,
                                  ctx->val.p, &sq);
        *l2 = rc == FL_OK ? sqrt(sq) : 0;
    } else {
        rc = cmp_value_read(meta->value_coding, raw + isize, kk, ctx->val.p);
    }
    if (rc != FL_OK)
        return rc;
    *idx = ctx->idx.p;
    *val = ctx->val.p;
    *k = kk;
    return FL_OK;
}

enum fl_err cmp_sparse_decode(struct cmp_ctx *ctx, const struct cmp_meta *meta,
                              const uint8_t *payload, size_t payload_len,
                              const struct cmp_limits *lim,
                              const uint32_t **idx, const float **val,
                              size_t *k)
{
    return sparse_decode(ctx, meta, payload, payload_len, lim, idx, val, k,
                         NULL);
}

enum fl_err cmp_sparse_decode_l2(struct cmp_ctx *ctx,
                                 const struct cmp_meta *meta,
                                 const uint8_t *payload, size_t payload_len,
                                 const struct cmp_limits *lim,
                                 const uint32_t **idx, const float **val,
                                 size_t *k, double *l2)
{
    if (l2 == NULL)
        return FL_ERR_INVALID_ARG;
    *l2 = 0;
    return sparse_decode(ctx, meta, payload, payload_len, lim, idx, val, k,
                         l2);
}

enum fl_err cmp_dense_decode(struct cmp_ctx *ctx, const struct cmp_meta *meta,
                             const uint8_t *payload, size_t payload_len,
                             const struct cmp_limits *lim, const float *base,
                             float *out)
{
    const uint8_t *raw;
    enum fl_err rc;

    if (ctx == NULL || meta == NULL || !limits_usable(lim) || out == NULL)
        return FL_ERR_INVALID_ARG;
    rc = check_meta(meta, lim, 1);
    if (rc != FL_OK)
        return rc;
    const size_t n = (size_t)meta->dimension;
    rc = cmp_buf_reserve(&ctx->val, n * sizeof(float));
    if (rc == FL_OK)
        rc = open_raw(ctx, meta, payload, payload_len, &raw);
    if (rc != FL_OK)
        return rc;
    /* Decode into scratch: out (which may be base) changes only once the
     * whole result is known to be finite. */
    rc = cmp_fp32_read_xor(raw, base, n, ctx->val.p);
    if (rc != FL_OK)
        return rc;
    memcpy(out, ctx->val.p, n * sizeof(float));
    return FL_OK;
}

/* ------------------------------------------------------------ aggregate */

void cmp_scatter_add(float *acc, const uint32_t *idx, const float *val,
                     size_t k, float weight)
{
    size_t i = 0;
    /* Independent updates (indices are distinct): unrolling lets the
     * loads of several cache lines overlap, and prefetching the lines of
     * the entries SCATTER_AHEAD further on hides most of their latency
     * when the accumulator is not in cache (the coordinator's case: a
     * round's socket traffic evicts it). The prefetch goes to L2
     * (locality 2: prefetcht1 on x86), not L1: more lines can be in
     * flight at once. Measured for 10,000 sorted entries into 1M floats,
     * accumulator evicted / in cache: no prefetch 106 / 16 us, 64 ahead
     * into L1 92 / 15 us, 128 ahead into L2 46-53 / 10 us. */
    enum { SCATTER_AHEAD = 128 };
    if (k > SCATTER_AHEAD + 4) {
        for (; i + 4 <= k - SCATTER_AHEAD; i += 4) {
            const uint32_t *ahead = idx + i + SCATTER_AHEAD;
            __builtin_prefetch(&acc[ahead[0]], 1, 2);
            __builtin_prefetch(&acc[ahead[1]], 1, 2);
            __builtin_prefetch(&acc[ahead[2]], 1, 2);
            __builtin_prefetch(&acc[ahead[3]], 1, 2);
            acc[idx[i]] += weight * val[i];
            acc[idx[i + 1]] += weight * val[i + 1];
            acc[idx[i + 2]] += weight * val[i + 2];
            acc[idx[i + 3]] += weight * val[i + 3];
        }
    }
    for (; i + 4 <= k; i += 4) {
        acc[idx[i]] += weight * val[i];
        acc[idx[i + 1]] += weight * val[i + 1];
        acc[idx[i + 2]] += weight * val[i + 2];
        acc[idx[i + 3]] += weight * val[i + 3];
    }
    for (; i < k; i++)
        acc[idx[i]] += weight * val[i];
}

/* ------------------------------------------------------------ bounds */

static uint64_t index_max(enum cmp_index_coding c, uint64_t n, uint64_t k)
{
    uint64_t lo;
    uint64_t hi;
    if (cmp_index_bounds(c, n, k, &lo, &hi) != FL_OK)
        return UINT64_MAX;
    return hi;
}

size_t cmp_sparse_bound(uint64_t n, size_t k, const struct cmp_params *p)
{
    if (p == NULL || n == 0 || n > MAX_DIMENSION || k == 0 || k > n ||
        !cmp_value_known(p->values))
        return 0;
    const struct cmp_codec_backend *be = cmp_codec_backend_get(p->codec);
    if (be == NULL)
        return 0;
    uint64_t imax;
    if (p->index_coding == CMP_INDEX_AUTO) {
        /* AUTO picks the smallest, or varint within 1/VARINT_SLACK_DIV of
         * it: so any one coding's maximum, plus that slack, bounds it */
        imax = FL_MIN(index_max(CMP_INDEX_DELTA_VARINT, n, k),
                      index_max(CMP_INDEX_RICE, n, k));
        imax = FL_MIN(imax, index_max(CMP_INDEX_BITMAP, n, k));
        imax += imax / VARINT_SLACK_DIV;
        if (k == n)
            imax = 0;
    } else {
        imax = index_max(p->index_coding, n, k);
        if (imax == UINT64_MAX)
            return 0;
    }
    const uint64_t raw = imax + cmp_value_size(p->values, k);
    if (raw > SIZE_MAX / 2)
        return 0;
    return be->bound((size_t)raw);
}
