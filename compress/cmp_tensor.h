/*
 * cmp_tensor.h - encode and decode sparse and dense tensors to the payload
 * format of docs/wire-format.md, and add decoded updates into an accumulator.
 *
 * A payload is codec(raw); raw is the index stream followed by the value
 * stream. struct cmp_meta carries everything needed to validate a payload
 * before any decompression: the decoder computes the exact raw size (or, for
 * varint/Rice indices, its upper bound) from dimension, k and the codings,
 * and refuses a declared raw_size outside it, so a small payload can never
 * make the decoder allocate or write more than the limits allow.
 *
 * Ownership: a struct cmp_ctx owns its codec contexts and scratch buffers.
 * Payloads and decoded arrays returned by a call point into the context and
 * stay valid until the next call on the same context. One thread at a time.
 */
#ifndef CMP_TENSOR_H
#define CMP_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "compress/cmp_types.h"

struct cmp_ctx;

/* Bounds the decoder enforces, set by the receiver from its model. */
struct cmp_limits {
    uint64_t dimension;      /* required: must equal meta->dimension */
    uint64_t max_k;          /* 0 = dimension */
    uint64_t max_raw_size;   /* 0 = only the size implied by the codings */
};

/* Caller owns; free with cmp_ctx_destroy(). NULL on allocation failure. */
struct cmp_ctx *cmp_ctx_new(void);
void cmp_ctx_destroy(struct cmp_ctx **cp);

/* Encode k (index, value) pairs of a tensor of dimension n.
 *   idx : strictly ascending, each < n (checked: FL_ERR_INVALID_ARG)
 *   val : k values; on return val[i] holds the value the receiver will
 *         decode (after fp16/bf16/int8 rounding), so the caller can feed
 *         the quantization error to cmp_ef_add_error(); pass a copy if the
 *         originals are needed
 *   p   : codings; CMP_INDEX_AUTO picks the smallest index stream
 *         (varint when it is within 1/256 of the smallest)
 * On success *meta is filled and *payload and *payload_len point into ctx
 * (valid until the next call on ctx). */
enum fl_err cmp_sparse_encode(struct cmp_ctx *ctx, uint64_t n,
                              const uint32_t *idx, float *val, size_t k,
                              const struct cmp_params *p,
                              struct cmp_meta *meta, const uint8_t **payload,
                              size_t *payload_len);

/* Validate and decode a sparse payload. Every check happens before
 * anything is returned: codings known, dimension == lim->dimension,
 * 1 <= k <= max_k, raw_size consistent, codec output exactly raw_size and no
 * trailing frame, checksum, indices strictly increasing and < dimension,
 * values finite. Each failure has its own code (see fl_err.h).
 * On success *idx and *val point to k entries inside ctx. */
enum fl_err cmp_sparse_decode(struct cmp_ctx *ctx, const struct cmp_meta *meta,
                              const uint8_t *payload, size_t payload_len,
                              const struct cmp_limits *lim,
                              const uint32_t **idx, const float **val,
                              size_t *k);

/* cmp_sparse_decode(), and *l2 = the L2 norm of the k decoded values,
 * summed in double (the same value on every CPU, 0 on failure). For fp16
 * on x86-64 with F16C the squares are summed while the values are
 * converted, so the norm costs no pass of its own. */
enum fl_err cmp_sparse_decode_l2(struct cmp_ctx *ctx,
                                 const struct cmp_meta *meta,
                                 const uint8_t *payload, size_t payload_len,
                                 const struct cmp_limits *lim,
                                 const uint32_t **idx, const float **val,
                                 size_t *k, double *l2);

/* acc[idx[i]] += weight * val[i] for i < k. idx must be in range (as
 * returned by cmp_sparse_decode). The accumulator is never densified copy. */
void cmp_scatter_add(float *acc, const uint32_t *idx, const float *val,
                     size_t k, float weight);

/* Encode a dense fp32 vector losslessly. With base != NULL the values
 * encoded are x XOR base (as 32-bit patterns), which the codec squeezes to
 * almost nothing where x equals base. meta->k == n, CMP_INDEX_ALL,
 * CMP_VALUE_FP32. Payload points into ctx. */
enum fl_err cmp_dense_encode(struct cmp_ctx *ctx, const float *x, size_t n,
                             const float *base, enum cmp_codec codec,
                             int level, struct cmp_meta *meta,
                             const uint8_t **payload, size_t *payload_len);

/* Validate and decode a dense payload into out (n == lim->dimension floats).
 * With base != NULL the decoded patterns are XORed with base. out is written
 * only after every check (including finiteness) has passed; on error it is
 * unchanged. out and base may alias (in-place update of a held model). */
enum fl_err cmp_dense_decode(struct cmp_ctx *ctx, const struct cmp_meta *meta,
                             const uint8_t *payload, size_t payload_len,
                             const struct cmp_limits *lim, const float *base,
                             float *out);

/* Upper bound of the payload size for k entries of dimension n with the
 * given params (for budgets and buffer sizing). */
size_t cmp_sparse_bound(uint64_t n, size_t k, const struct cmp_params *p);

#endif /* CMP_TENSOR_H */
