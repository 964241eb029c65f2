/*
 * coord_models.h - the kept versions of a model and the downlink payloads
 * encoded from the current one. Shared by the server model (coord_agg.h)
 * and the broadcast model of a lossy downlink (coord_down.h), which both
 * keep the last few versions so that a device holding one of them can be
 * sent a small delta, and both encode each payload once for every device.
 * Pure bookkeeping: no encoding, no sockets, no logging.
 *
 * Versions: a ring of `keep` buffers of dim floats. The current version is
 * the newest; the next version goes into the buffer of the oldest kept one
 * (with keep == 1, into the current buffer itself). Version numbers are the
 * owners' (0 means "none" and is never kept).
 *
 * Payloads: encoded bytes keyed by (kind, base version, codec, level), for
 * the current version only. Every change of the current version (push,
 * reset) drops them. A payload handed out stays where it is until then:
 * entries are allocated one by one and reused, never moved.
 *
 * Ownership: the struct owns its buffers and the payload bytes (copied in).
 * Memory: keep * dim floats plus the payloads of the current version.
 * Thread-safety: one thread at a time.
 */
#ifndef COORD_MODELS_H
#define COORD_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "compress/cmp_types.h"

struct coord_models;

/* What a downlink payload carries. */
enum coord_payload_kind {
    COORD_PAYLOAD_FULL = 0,   /* the model itself (dense) */
    COORD_PAYLOAD_XOR = 1,    /* the model XOR base_version (dense) */
    COORD_PAYLOAD_SPARSE = 2  /* the sparse change from base_version */
};

/* An encoded downlink payload; owned by the struct coord_models. */
struct coord_payload {
    enum coord_payload_kind kind;
    uint64_t version;        /* the version the device ends with */
    uint64_t base_version;   /* XOR and SPARSE: the version it must hold */
    struct cmp_meta meta;    /* dense (k == dim, all) or sparse */
    int level;               /* zstd level it was encoded with, else 0 */
    const uint8_t *data;
    size_t len;
};

struct coord_payload_key {
    enum coord_payload_kind kind;
    uint64_t base;           /* base version; 0 for FULL */
    enum cmp_codec codec;
    int level;
};

/* The key of a payload; level is normalised: 0 unless codec is zstd, else
 * clamped to zstd's range, so that equal encodings have equal keys. */
struct coord_payload_key coord_payload_key(enum coord_payload_kind kind,
                                           uint64_t base,
                                           enum cmp_codec codec, int level);

/* keep (1 .. 1024) buffers of dim (>= 1) floats; a copy of init becomes
 * version (>= 1). Caller owns *out (coord_models_destroy()).
 * FL_ERR_INVALID_ARG, FL_ERR_NOMEM. */
enum fl_err coord_models_new(size_t dim, uint32_t keep, const float *init,
                             uint64_t version, struct coord_models **out);

/* Free everything and set *mp to NULL; accepts NULL and pointer to NULL. */
void coord_models_destroy(struct coord_models **mp);

const float *coord_models_current(const struct coord_models *m);
uint64_t coord_models_version(const struct coord_models *m);

/* The parameters of a kept version; NULL for 0 or a version not kept. */
const float *coord_models_find(const struct coord_models *m,
                               uint64_t version);

/* The buffer the next version goes into: the oldest kept version's (the
 * current one when keep == 1). Write it, then coord_models_push(). */
float *coord_models_oldest(struct coord_models *m);

/* The oldest buffer, as written, becomes the current version `version`;
 * the version it held is no longer kept. Payloads are dropped. */
void coord_models_push(struct coord_models *m, uint64_t version);

/* buf (dim floats, the caller's) becomes the current version `version` in
 * the place of the oldest kept one, and the buffer it replaces is returned
 * to the caller (as scratch: its contents are the dropped version). For an
 * owner that computes a candidate and keeps it only if it is good, without
 * ever overwriting a kept version. Payloads are dropped. */
float *coord_models_push_buffer(struct coord_models *m, float *buf,
                                uint64_t version);

/* A copy of params (dim floats) becomes the only kept version, numbered
 * `version` (>= 1; any number, for a resume). Payloads are dropped. */
void coord_models_reset(struct coord_models *m, const float *params,
                        uint64_t version);

/* The payload cached for key, or NULL. Valid until the current version
 * changes or coord_models_destroy(). */
const struct coord_payload *
coord_models_cached(const struct coord_models *m,
                    const struct coord_payload_key *key);

/* Cache a copy of the encoded bytes for key, with meta, as a payload of
 * the current version; *out points to it (lifetime as above). A payload
 * already cached for key is replaced. FL_ERR_NOMEM: nothing is cached. */
enum fl_err coord_models_store(struct coord_models *m,
                               const struct coord_payload_key *key,
                               const struct cmp_meta *meta,
                               const uint8_t *bytes, size_t len,
                               const struct coord_payload **out);

/* Payloads stored since creation (shows they are shared, not per device). */
uint64_t coord_models_stores(const struct coord_models *m);

#endif /* COORD_MODELS_H */
