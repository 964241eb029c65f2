/*
 * coord_down.h - the lossy downlink: the broadcast model and server-side
 * error feedback. Pure computation (no sockets, logging or clocks).
 *
 * With a lossy downlink the coordinator keeps two models:
 *   w_s  the server's exact model (struct coord_agg): the weighted mean of
 *        the updates is applied to it, as without compression
 *   w_b  the broadcast model: what every device holds, bit for bit; the
 *        devices train from it and send u = w_local - w_b
 * After each commit w_b advances by a compressed delta (coord_down_advance):
 *
 *     r      = w_s - w_b                  everything not sent yet
 *     S      = top-k of |r|, k = ceil(density * dim) (exact, ties to the
 *              smaller index)
 *     delta  = decode(encode(r[S]))      quantized by the value coding
 *     w_b[i] = w_b[i] + delta[i] for i in S   (cmp_scatter_add, weight 1)
 *
 * The residual is implicit: w_s - w_b *is* the mass not yet sent (the
 * entries outside S and the quantization error of those in S), so it needs
 * no buffer of its own and is part of the next round's r. Nothing drifts:
 * whatever rounding happens, the next r measures it.
 *
 * Bit-exactness: a device holding version v - 1 gets the sparse delta as
 * bytes; it decodes them with the same decoder (cmp_sparse_decode) and does
 * the same single float addition per entry (cmp_scatter_add with weight
 * 1.0f: 1.0f * x == x exactly, so even a fused multiply-add rounds the
 * same) on the same w_b(v - 1). Each index appears once, so the order does
 * not matter either. Every sparse payload handed out is decoded here once
 * and compared with the delta applied to w_b before it is used; a
 * difference is an error (FL_ERR_BAD_STATE) and the caller sends the
 * lossless model instead.
 *
 * Payloads (coord_down_task_payload), chosen by the version the device
 * holds:
 *   the previous broadcast version  -> the sparse delta (Task.model_delta)
 *   another kept broadcast version  -> the XOR of the float32 patterns of
 *                                      w_b and that version (Task.model,
 *                                      lossless; tiny for the current one)
 *   none or an unknown version      -> the full w_b (Task.model)
 * Each is encoded once per (kind, base, codec, level) and shared by every
 * device until the next advance or reset.
 *
 * Versions: the same numbers as the server model's (the caller advances
 * both together); the last keep_versions broadcast versions stay in memory.
 * Memory: (keep_versions + 1) * dim floats + 16 bytes per delta entry +
 * the cached payloads. Thread-safety: one thread at a time.
 */
#ifndef COORD_DOWN_H
#define COORD_DOWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "compress/cmp_types.h"
#include "coordinator/coord_models.h"

struct coord_down;

struct coord_down_config {
    size_t dim;                    /* parameters, 1 .. UINT32_MAX */
    double density;                /* (0, 1]: share of entries per delta */
    enum cmp_value_coding values;  /* value coding of the delta */
    uint32_t keep_versions;        /* >= 1, broadcast versions kept */
};

/* Payloads are struct coord_payload (coord_models.h): kind
 * COORD_PAYLOAD_FULL (w_b), COORD_PAYLOAD_XOR (against base_version, in
 * Task.model) or COORD_PAYLOAD_SPARSE (the delta from base_version, in
 * Task.model_delta). Owned by the struct coord_down; valid until the next
 * coord_down_advance(), coord_down_reset() or destroy. */

/* What the last advance did (all zero before the first one). */
struct coord_down_stats {
    size_t k;                /* entries sent */
    double sent_norm;        /* L2 norm of the delta applied */
    double residual_norm;    /* L2 norm of w_s - w_b after it */
};

/* k of a delta: ceil(density * dim) in [1, dim]; a product within 1e-6
 * relative of an integer counts as that integer. */
size_t coord_down_k(double density, size_t dim);

/* Create with w_b = init (cfg->dim finite floats, copied) as `version`
 * (>= 1). A device that says it holds `version` is sent deltas against
 * init, so init must be what such a device holds (the initial model; after
 * a resume, devices drop their model on the new epoch). Caller owns *out
 * (coord_down_destroy()).
 * FL_ERR_INVALID_ARG (bad config, value coding or non-finite init),
 * FL_ERR_NOMEM. */
enum fl_err coord_down_new(const struct coord_down_config *cfg,
                           const float *init, uint64_t version,
                           struct coord_down **out);

/* Free everything and set *dp to NULL; accepts NULL and pointer to NULL. */
void coord_down_destroy(struct coord_down **dp);

/* The broadcast model (dim floats) and its version. */
const float *coord_down_params(const struct coord_down *d);
uint64_t coord_down_version(const struct coord_down *d);

/* The parameters of a kept broadcast version, or NULL. */
const float *coord_down_version_params(const struct coord_down *d,
                                       uint64_t version);

/* True when a device holding `version` can be sent something smaller than
 * the full model: the delta's base or a kept version. */
bool coord_down_knows(const struct coord_down *d, uint64_t version);

/* After the server model became w_s (dim finite floats) with `version`
 * (> the current broadcast version): advance w_b as described at the top.
 * FL_ERR_INVALID_ARG (version not above the current one: nothing
 * changes), FL_ERR_NONFINITE (w_b + delta would not be finite), FL_ERR_NOMEM
 * or an encoder error: the broadcast model and its version are then
 * unchanged but the previous sparse delta is dropped (devices get a XOR or
 * the full model; call coord_down_reset() to catch up losslessly). */
enum fl_err coord_down_advance(struct coord_down *d, const float *w_s,
                               uint64_t version);

/* Make w_b = w (dim finite floats, copied) the broadcast `version`
 * (> the current one, so that a version number never names two different
 * models) with no sparse delta: devices get the full model or a XOR
 * against a kept version. For a failed advance. FL_ERR_INVALID_ARG. */
enum fl_err coord_down_reset(struct coord_down *d, const float *w,
                             uint64_t version);

/* The Task payload for a device that holds held_version (0 = none), as
 * described at the top, encoded with codec (zstd: level, clamped) on first
 * use. *out is owned by d. FL_ERR_UNSUPPORTED (codec), FL_ERR_NOMEM, an
 * encoder error, or FL_ERR_BAD_STATE when a sparse payload would not
 * decode to the delta applied (see above); nothing is cached then. */
enum fl_err coord_down_task_payload(struct coord_down *d,
                                    uint64_t held_version,
                                    enum cmp_codec codec, int level,
                                    const struct coord_payload **out);

/* Statistics of the last advance. */
void coord_down_get_stats(const struct coord_down *d,
                          struct coord_down_stats *st);

/* Payload encodings done since creation (shows that payloads are shared,
 * not encoded per device). */
uint64_t coord_down_encode_count(const struct coord_down *d);

#endif /* COORD_DOWN_H */
