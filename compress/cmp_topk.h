/*
 * cmp_topk.h - top-k selection by magnitude fused with error feedback.
 *
 * The worker's step, per tensor (or for the whole flat vector):
 *     a        = update + residual          (residual == NULL: a = update)
 *     S        = indices of the k largest |a[i]|
 *     sent     = a[S]                        (returned, indices ascending)
 *     residual = a with a[S] set to 0
 * After value quantization the caller adds the quantization error back with
 * cmp_ef_add_error(); when the coordinator did not use an update, the caller
 * puts the whole sent update back with cmp_ef_restore(). Invariant (to float
 * rounding): sum of inputs == sum of what was used + residual.
 *
 * Exact method: the k largest |a|; ties at the threshold are broken towards
 * smaller indices, so the result is deterministic. Sampled method: the
 * threshold is estimated from a sample of |a|, one filter pass selects the
 * candidates; with CMP_TOPK_EXACT_K the candidates are trimmed or completed
 * to exactly k, otherwise any count within 5% of k is accepted.
 *
 * NaN or Inf in update/residual: selection still terminates and never reads
 * out of bounds; results are then unspecified (the coordinator rejects
 * non-finite updates anyway).
 *
 * Thread-safety: a struct cmp_topk is used by one thread at a time.
 */
#ifndef CMP_TOPK_H
#define CMP_TOPK_H

#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "compress/cmp_types.h"

struct cmp_topk; /* scratch space and sampling RNG, reused across calls */

enum cmp_topk_flags {
    CMP_TOPK_EXACT_K = 1 << 0  /* sampled method: return exactly k */
};

/* Create a selector with a deterministic sampling seed.
 * Returns NULL on allocation failure. Caller owns; free with
 * cmp_topk_destroy(). */
struct cmp_topk *cmp_topk_new(uint64_t seed);

/* Free the selector and set *tp to NULL; accepts NULL and pointer to NULL. */
void cmp_topk_destroy(struct cmp_topk **tp);

/* Select top-k of |update + residual| over n elements and update residual
 * in place as described above.
 *   residual : n floats, read and written; NULL disables error feedback
 *   update   : n floats, read only
 *   k        : 1 <= k <= n
 *   idx, val : caller buffers of capacity k (sampled without EXACT_K may
 *              return up to k; it never writes more than k entries)
 *   k_out    : number of entries written; indices strictly ascending
 * Errors: FL_ERR_INVALID_ARG (n == 0, k == 0, k > n, n > UINT32_MAX),
 * FL_ERR_NOMEM (scratch growth; residual is then unchanged).
 * Hot path: no allocation once scratch has grown to the largest n seen. */
enum fl_err cmp_topk_select(struct cmp_topk *t, float *residual,
                            const float *update, size_t n, size_t k,
                            enum cmp_topk_method method, unsigned flags,
                            uint32_t *idx, float *val, size_t *k_out);

/* Counters of how selections went (added for benchmarks and tests): the
 * fast path is the sampled threshold + one filter pass; a fallback runs the
 * histogram-based exact selection over the whole tensor as well. */
struct cmp_topk_stats {
    uint64_t calls;             /* successful cmp_topk_select() calls */
    uint64_t fallback_short;    /* too few candidates above the estimate */
    uint64_t fallback_overflow; /* more candidates than the scratch holds */
    uint64_t last_candidates;   /* candidates of the last filter pass */
};

/* Copy the counters of t into *st. */
void cmp_topk_get_stats(const struct cmp_topk *t, struct cmp_topk_stats *st);

/* residual[idx[i]] += orig[i] - sent[i]: the quantization error of values
 * that were sent goes back into the residual. */
void cmp_ef_add_error(float *residual, const uint32_t *idx, const float *orig,
                      const float *sent, size_t k);

/* residual[idx[i]] += sent[i]: an update the coordinator did not use is put
 * back, so that no work is lost. */
void cmp_ef_restore(float *residual, const uint32_t *idx, const float *sent,
                    size_t k);

#endif /* CMP_TOPK_H */
