/*
 * wrk_model.h - the worker's view of the global model: derive the MLP from
 * the layout a Welcome carries, check that the trainer we built has exactly
 * that layout, and apply the model of a Task: the dense tensor (full or
 * XOR delta against the version held) or the sparse delta of a lossy
 * downlink.
 *
 * The coordinator decides the architecture. A layout is accepted when it is
 * a chain of linear layers: pairs "<p>.weight" [out, in] and "<p>.bias"
 * [out], at contiguous offsets from 0, where each layer's `in` is the
 * previous layer's `out`, and the sizes add up to the Welcome's dimension.
 * No sockets, no logging: errors come back with a one-line message.
 */
#ifndef WRK_MODEL_H
#define WRK_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "compress/cmp_tensor.h"
#include "model/mdl_trainer.h"
#include "proto/pb_msg.h"
#include "worker/wrk_update.h"

/* Largest layer width accepted from a Welcome. */
#define WRK_MAX_WIDTH (1u << 20)

/* Derive the MLP config from a Welcome's layout (see above). max_dim
 * bounds the dimension. FL_ERR_FORMAT (err says which tensor and why),
 * FL_ERR_DIMENSION (sizes do not add up to dimension), FL_ERR_TOO_LARGE. */
enum fl_err wrk_model_config(const struct pb_layout_entry *layout,
                             size_t nlayout, uint64_t dimension,
                             uint64_t max_dim, struct mdl_mlp_config *cfg,
                             char *err, size_t errlen);

/* True when the trainer's layout has the same names, offsets and shapes as
 * the Welcome's (err says the first difference otherwise). */
bool wrk_model_layout_equal(const struct mdl_layout *ml,
                            const struct pb_layout_entry *layout,
                            size_t nlayout, char *err, size_t errlen);

/* The tensors of a layout as spans for per-tensor top-k; spans has room
 * for MDL_MAX_TENSORS. Returns the count. */
size_t wrk_model_spans(const struct mdl_layout *ml, struct wrk_span *spans);

/* The model held by a device. */
struct wrk_held_model {
    bool have;           /* w holds the model of `version` */
    uint64_t version;
    size_t dim;
    float *w;            /* dim floats, owned by the caller */
};

/* Apply a Task's model tensor to the held model. A full tensor replaces w;
 * a XOR delta (has_base_version) needs base_version == the held version,
 * else FL_ERR_NOT_FOUND and nothing changes. On success the held model is
 * `version`. Decode errors (FL_ERR_CHECKSUM, FL_ERR_DIMENSION, ...) leave
 * w unchanged and `have` as it was. ctx is a decode context. */
enum fl_err wrk_model_apply(struct cmp_ctx *ctx, struct wrk_held_model *m,
                            const struct pb_tensor *t, uint64_t version);

/* Apply a Task's sparse model delta (lossy downlink, docs/protocol.md):
 * the held model must be base_version, else FL_ERR_NOT_FOUND and nothing
 * changes. Each decoded entry is added with one float addition
 * (cmp_scatter_add, weight 1), exactly as the coordinator advanced its
 * broadcast model, so the result equals that model bit for bit. Decode
 * errors, and a sum that would not be finite (FL_ERR_NONFINITE), leave w
 * and the version unchanged. On success the held model is `version`. */
enum fl_err wrk_model_apply_delta(struct cmp_ctx *ctx,
                                  struct wrk_held_model *m,
                                  const struct pb_tensor *t,
                                  uint64_t base_version, uint64_t version);

/* cmp_meta of a wire tensor (codings converted by value). */
void wrk_meta_from_pb(const struct pb_tensor *t, bool dense,
                      struct cmp_meta *meta);

/* pb_tensor of encoded meta + payload (the payload is borrowed). */
void wrk_pb_from_meta(const struct cmp_meta *meta, const uint8_t *payload,
                      size_t payload_len, struct pb_tensor *t);

#endif /* WRK_MODEL_H */
