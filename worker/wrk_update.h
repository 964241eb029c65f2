/*
 * wrk_update.h - the worker's update pipeline: clipping, momentum
 * correction, top-k with error feedback, encoding, and the bookkeeping of the
 * update that was sent until its fate is known. Pure: no sockets, no
 * logging, no model; a benchmark can drive it in-process.
 *
 * One encode, for the trainer's u = w_local - w_global:
 *
 *     u    <- u * min(1, clip_norm / |u|)        (clip_norm > 0)
 *     f    <- u                                  (momentum m == 0)
 *     v    <- m * v + u;  f <- v                 (momentum m > 0, DGC)
 *     a     = f + residual                       (EF off: a = f)
 *     S     = top-k of |a| (global, or per tensor with offsets added)
 *     sent  = quantize(a[S])                     (cmp_sparse_encode)
 *     residual = a with a[S] := a[S] - sent      (EF on; else untouched)
 *     v[S] := 0                                  (momentum factor masking)
 *     pending := (round, S, sent)
 *
 * The pending update is kept until its fate is known
 * (wrk_update_apply_fate): USED drops it; NOT_USED adds `sent` back into the
 * residual (cmp_ef_restore), so no work is lost.
 *
 * Invariant (error feedback on, to float rounding), with f_t the vector fed
 * to the selection in round t:
 *     sum_t f_t == sum of the sent values of USED updates
 *                  + sum of the sent values still pending + residual
 * Without momentum correction f_t is the (clipped) u_t, so this is the
 * classic EF invariant on the updates. With momentum correction f_t is the
 * velocity after adding u_t; the velocity obeys v_t = m * mask(v_{t-1}) +
 * u_t, where mask zeroes the entries sent in round t-1, so the updates are
 * accounted for through the velocity: sum_t u_t == sum_t f_t -
 * m * sum_t mask(v_{t-1}).
 *
 * Ownership: a struct wrk_update owns its residual, velocity, scratch, its
 * struct cmp_topk and struct cmp_ctx. The encoded payload points into the
 * context and is valid until the next encode. One thread at a time.
 * Hot path: every buffer is allocated by wrk_update_new(); encode does not
 * allocate except for the compress/ scratch growth on the first call.
 */
#ifndef WRK_UPDATE_H
#define WRK_UPDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "compress/cmp_types.h"

/* A tensor of the flat parameter vector: [offset, offset + size). */
struct wrk_span {
    size_t offset;
    size_t size;
};

/* How to build one update. */
struct wrk_settings {
    float density;                 /* (0, 1]: k = ceil(density * n), >= 1 */
    enum cmp_topk_method topk;
    struct cmp_params params;      /* index coding, values, codec, level */
    bool error_feedback;
    float momentum;                /* momentum correction factor, 0 = off */
    float clip_norm;               /* L2 bound on u, 0 = off */
    bool per_tensor;               /* k per tensor (needs the spans) */
    uint64_t max_bytes;            /* payload budget, 0 = none */
};

/* What one encode produced; pointers valid until the next encode. */
struct wrk_encoded {
    struct cmp_meta meta;
    const uint8_t *payload;
    size_t payload_len;
    size_t k;                      /* entries sent (== meta.k) */
    double norm;                   /* L2 norm of u before clipping */
    bool clipped;
    unsigned shrinks;              /* times k was cut to fit max_bytes */
};

/* What applying a fate did. */
enum wrk_fate {
    WRK_FATE_NO_PENDING = 0,       /* nothing pending: ignored */
    WRK_FATE_OTHER_ROUND = 1,      /* pending is for another round: ignored */
    WRK_FATE_USED = 2,             /* pending dropped */
    WRK_FATE_RESTORED = 3,         /* NOT_USED: added back into the residual */
    WRK_FATE_DISCARDED = 4         /* NOT_USED, but sent with EF off: lost */
};

struct wrk_update;

/* Create the state for a model of `dim` floats. spans (copied) describe the
 * tensors for per-tensor top-k: they must be sorted, contiguous and cover
 * [0, dim) exactly; nspans == 0 means one tensor. seed seeds the sampled
 * top-k. Caller owns; free with wrk_update_destroy(). Returns NULL on
 * allocation failure or invalid spans (dim == 0, dim > UINT32_MAX). */
struct wrk_update *wrk_update_new(size_t dim, const struct wrk_span *spans,
                                  size_t nspans, uint64_t seed);

/* Free and set *wp to NULL; accepts NULL and a pointer to NULL. */
void wrk_update_destroy(struct wrk_update **wp);

/* k for n elements at this density: ceil(density * n) in [1, n]. A
 * product within 1e-6 relative of an integer counts as that integer, so a
 * float density such as 0.1f gives exactly 100 of 1000. */
size_t wrk_update_k(float density, size_t n);

/* Check settings: density in (0, 1], known codings and method, momentum in
 * [0, 1), clip_norm >= 0 and finite. FL_ERR_INVALID_ARG or
 * FL_ERR_UNSUPPORTED. */
enum fl_err wrk_settings_check(const struct wrk_settings *s);

/* Build the update of `round` from u (dim floats, read only) as described
 * at the top, and make it the pending update. A pending update whose fate
 * was never applied is dropped first (see wrk_update_pending()).
 * Errors: those of wrk_settings_check, FL_ERR_NONFINITE when u has NaN/Inf
 * (state unchanged), errors of compress/ (FL_ERR_NOMEM...): nothing is
 * pending afterwards and no entry is counted twice, but this round's u may
 * be lost in part (what was already folded into the residual stays). */
enum fl_err wrk_update_encode(struct wrk_update *w, uint64_t round,
                              const float *u, const struct wrk_settings *s,
                              struct wrk_encoded *out);

/* Apply the coordinator's verdict on the update of `round`: only when it
 * matches the pending round (a verdict can arrive twice, e.g. as Reject and
 * again in the next Task; the second finds nothing pending). *k_out (may be
 * NULL) gets the number of entries concerned. */
enum wrk_fate wrk_update_apply_fate(struct wrk_update *w, uint64_t round,
                                    bool used, size_t *k_out);

/* Forget the pending update without touching the residual (its fate can
 * no longer be learned, e.g. after a coordinator restart). Returns true
 * when something was pending. */
bool wrk_update_forget(struct wrk_update *w);

/* True when an update is pending; its round in *round (may be NULL). */
bool wrk_update_pending(const struct wrk_update *w, uint64_t *round);

/* Read-only views for tests and statistics (dim floats). The velocity is
 * NULL until momentum correction has been used once. */
const float *wrk_update_residual(const struct wrk_update *w);
const float *wrk_update_velocity(const struct wrk_update *w);
size_t wrk_update_dim(const struct wrk_update *w);

/* L2 norm of the residual (for logs). */
double wrk_update_residual_norm(const struct wrk_update *w);

/* Zero residual and velocity and forget the pending update. */
void wrk_update_reset(struct wrk_update *w);

/* The state that survives a worker restart (worker/wrk_state.h): views
 * into a struct wrk_update from wrk_update_export(), or caller data for
 * wrk_update_import(). */
struct wrk_update_state {
    const float *residual;         /* dim floats */
    const float *velocity;         /* dim floats; NULL = none (zeros) */
    bool pending;                  /* an update awaits its fate */
    bool pending_ef;               /* it was built with error feedback */
    uint64_t pending_round;
    size_t pending_k;
    const uint32_t *pending_idx;   /* pending_k indices < dim */
    const float *pending_val;      /* the values sent (quantized) */
};

/* Views of w's residual, velocity (NULL while unused) and pending update,
 * valid until the next call that changes w. */
void wrk_update_export(const struct wrk_update *w,
                       struct wrk_update_state *st);

/* Replace w's residual, velocity and pending update with copies of st's.
 * FL_ERR_INVALID_ARG (no residual, pending_k 0 or > dim with pending),
 * FL_ERR_INDEX_RANGE (an index >= dim), FL_ERR_NONFINITE (NaN/Inf
 * anywhere), FL_ERR_NOMEM: w is unchanged then. */
enum fl_err wrk_update_import(struct wrk_update *w,
                              const struct wrk_update_state *st);

#endif /* WRK_UPDATE_H */
