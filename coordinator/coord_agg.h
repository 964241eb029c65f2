/*
 * coord_agg.h - the global model, the server step and the downlink model
 * cache. Pure computation: no sockets, no logging, no clocks, so the
 * benchmark can simulate training in-process with the same code.
 *
 * Round life cycle:
 *
 *     coord_agg_add() x N  --->  coord_agg_commit()   model version + 1
 *                          \-->  coord_agg_discard()  nothing changes
 *
 * Accumulator: acc[i] = sum over updates of weight * val (sparse scatter-add
 * with cmp_scatter_add, never densified per update); W = sum of weights.
 * Commit computes, per parameter,
 *     g  = acc / W                        (weighted mean update)
 *     m' = server_momentum * m + g        (m' = g when server_momentum = 0)
 *     w' = w + server_lr * m'
 * into a candidate, and replaces the global model (and m) only when every
 * w' and m' is finite. Otherwise FL_ERR_NONFINITE: the model, its version
 * and m are unchanged and the round's accumulator is discarded.
 *
 * Versions: the initial model is version 1; each commit adds 1. The last
 * keep_versions versions (the current one included) stay in memory, so a
 * device holding one of them can be sent the XOR delta against it.
 *
 * Downlink payloads: coord_model_task_payload() encodes the current model
 * (in full, or as the XOR against a kept base) once per (base, codec) and
 * hands out the same cached payload to every device that asks until the
 * next commit. Never per device.
 *
 * Memory: (keep_versions + 3) * dim floats plus the cached payloads; the
 * accumulator is rounded up to whole 2 MiB huge pages (fl_calloc_huge:
 * its scattered writes miss the TLB less).
 * Thread-safety: one thread at a time per struct coord_agg.
 */
#ifndef COORD_AGG_H
#define COORD_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "compress/cmp_types.h"
#include "coordinator/coord_models.h"

struct coord_agg;

struct coord_agg_config {
    size_t dim;              /* parameters, 1 .. UINT32_MAX */
    double server_lr;        /* > 0 */
    double server_momentum;  /* [0, 1) */
    uint32_t keep_versions;  /* >= 1 */
};

/* Task.model payloads are struct coord_payload (coord_models.h): kind
 * COORD_PAYLOAD_FULL or COORD_PAYLOAD_XOR, meta dense (k == dimension,
 * CMP_INDEX_ALL). Owned by the agg; valid until the next
 * coord_agg_commit(), coord_agg_resume() or coord_agg_destroy(). */

/* Create with a copy of init (cfg->dim floats, finite) as version 1.
 * Caller owns *out (coord_agg_destroy()). FL_ERR_INVALID_ARG for a bad
 * config or non-finite init, FL_ERR_NOMEM. */
enum fl_err coord_agg_new(const struct coord_agg_config *cfg,
                          const float *init, struct coord_agg **out);

/* Free everything and set *ap to NULL; accepts NULL and pointer to NULL. */
void coord_agg_destroy(struct coord_agg **ap);

size_t coord_agg_dim(const struct coord_agg *a);

/* The current global model (dim floats); valid until the next commit. */
const float *coord_agg_params(const struct coord_agg *a);

/* Current model version (1 for the initial model). */
uint64_t coord_agg_version(const struct coord_agg *a);

/* The parameters of a kept version, or NULL when it is not kept. */
const float *coord_agg_version_params(const struct coord_agg *a,
                                      uint64_t version);

/* Add one decoded sparse update: acc[idx[i]] += weight * val[i].
 * idx: k indices < dim (as returned by cmp_sparse_decode); weight finite
 * and > 0. FL_ERR_INVALID_ARG (bad weight, k > dim) and FL_ERR_INDEX_RANGE
 * leave the accumulator unchanged. */
enum fl_err coord_agg_add(struct coord_agg *a, const uint32_t *idx,
                          const float *val, size_t k, double weight);

/* Updates added and their total weight since the last commit/discard. */
uint32_t coord_agg_count(const struct coord_agg *a);
double coord_agg_weight(const struct coord_agg *a);

/* Apply the server step as described at the top; the accumulator is empty
 * afterwards in every case. FL_ERR_BAD_STATE when nothing was added,
 * FL_ERR_NONFINITE when the candidate is not finite (model unchanged). */
enum fl_err coord_agg_commit(struct coord_agg *a);

/* Drop the accumulated updates of the round. */
void coord_agg_discard(struct coord_agg *a);

/* The Task.model payload for a device that holds held_version (0 = none):
 * an XOR delta when held_version is kept, else the full model; encoded
 * with codec (zstd: level) on first use and cached until the next commit.
 * *out is owned by the agg. FL_ERR_UNSUPPORTED (codec), FL_ERR_NOMEM or an
 * encoder error; nothing is cached then. */
enum fl_err coord_model_task_payload(struct coord_agg *a,
                                     uint64_t held_version,
                                     enum cmp_codec codec, int level,
                                     const struct coord_payload **out);

/* The server momentum buffer m (dim floats), NULL without server momentum;
 * valid until the next commit. For checkpoints. */
const float *coord_agg_momentum(const struct coord_agg *a);

/* Continue from a checkpoint: params (dim floats, finite) become the
 * current model with number `version` (>= 1), momentum (dim floats, or
 * NULL for zeros) the momentum buffer; no other version is kept, the
 * accumulator and the payload cache are emptied. FL_ERR_INVALID_ARG
 * (version 0, non-finite input, momentum given without server momentum):
 * nothing changes then. */
enum fl_err coord_agg_resume(struct coord_agg *a, uint64_t version,
                             const float *params, const float *momentum);

/* Number of payload encodings done since creation (for tests and reports:
 * shows that payloads are shared, not encoded per device). */
uint64_t coord_agg_encode_count(const struct coord_agg *a);

#endif /* COORD_AGG_H */
