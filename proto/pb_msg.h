/*
 * pb_msg.h - the only door to protobuf in fedcomp.
 *
 * Messages are plain C structs (struct pb_envelope and its bodies) so that
 * nothing outside proto/ sees a protobuf-c type. Packing writes the wire
 * bytes of an envelope; unpacking parses untrusted bytes:
 *   1. input longer than lim->max_message -> FL_ERR_TOO_LARGE (not parsed)
 *   2. parse with an allocator that fails past lim->max_alloc bytes
 *      (FL_ERR_PROTO when the bytes do not parse, FL_ERR_NOMEM when the
 *      budget or memory runs out)
 *   3. version != PB_PROTOCOL_VERSION -> FL_ERR_VERSION
 *   4. no body -> FL_ERR_MISSING_FIELD
 *   5. strings longer than PB_MAX_STRING, more than PB_MAX_LAYOUT tensors or
 *      PB_MAX_SHAPE dims -> FL_ERR_TOO_LARGE
 *   6. a tensor whose payload is both inline and announced as a chunked
 *      transfer, or announced without a size -> FL_ERR_FORMAT
 * Field values (dimension, k, codings, rounds) are NOT judged here: the
 * receiver knows its model and state and checks them.
 *
 * Ownership: pb_unpack returns a struct pb_msg that owns everything the
 * envelope points to (strings, payload bytes, layout arrays). The envelope
 * stays valid until pb_msg_destroy(). For packing, the caller's envelope is
 * only read.
 *
 * Optional proto fields that are absent read as 0/false/NULL, except where a
 * has_* member is given. Thread-safe: no shared state.
 */
#ifndef PB_MSG_H
#define PB_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"

#define PB_PROTOCOL_VERSION 1
#define PB_MAX_STRING 256
#define PB_MAX_LAYOUT 64
#define PB_MAX_SHAPE 4

enum pb_body {
    PB_BODY_NONE = 0,
    PB_BODY_HELLO = 10,
    PB_BODY_WELCOME = 11,
    PB_BODY_TASK = 12,
    PB_BODY_UPDATE = 13,
    PB_BODY_REJECT = 14,
    PB_BODY_BYE = 15,
    PB_BODY_CHUNK = 16,
    PB_BODY_CREDIT = 17
};

/* Values of pb_task.last_update (proto UpdateStatus). */
enum pb_update_status {
    PB_UPDATE_NONE = 1,
    PB_UPDATE_USED = 2,
    PB_UPDATE_NOT_USED = 3
};

/* A tensor as it travels: codings as the numbers of proto/fedcomp.proto
 * (equal to enum cmp_* values), payload as bytes. Used for both
 * SparseTensor (k <= dimension) and DenseTensor (k = dimension, index
 * coding 4 = all). */
struct pb_tensor {
    uint64_t dimension;
    uint64_t k;
    uint32_t index_coding;
    uint32_t value_coding;
    uint32_t codec;
    uint64_t raw_size;
    uint32_t checksum;
    const uint8_t *payload;
    size_t payload_len;
    bool has_base_version;    /* dense only */
    uint64_t base_version;
    /* Chunked transfer (docs/protocol.md "Transfers"): payload_transfer
     * != 0 means payload is empty and its payload_bytes bytes come as Chunk
     * messages. Unpack refuses payload_transfer with a non-empty payload or
     * payload_bytes == 0, and payload_bytes without payload_transfer
     * (FL_ERR_FORMAT). */
    uint64_t payload_transfer;
    uint64_t payload_bytes;
};

struct pb_layout_entry {
    const char *name;
    uint64_t offset;
    uint32_t shape[PB_MAX_SHAPE];
    size_t nshape;
};

struct pb_hello {
    const char *device_id;
    uint64_t n_samples;
    uint32_t codecs_mask;     /* bit (1 << codec) for each codec listed */
    bool has_model_version;
    uint64_t model_version;
    bool has_epoch;
    uint64_t epoch;
    const char *software;     /* may be NULL */
};

struct pb_welcome {
    uint64_t epoch;
    const char *device_id;
    uint64_t dimension;
    const struct pb_layout_entry *layout;
    size_t nlayout;
    uint32_t heartbeat_ms;
    uint64_t current_round;
    uint32_t chunk_bytes;     /* 0 = absent (no chunked transfers) */
    uint32_t chunk_window;
};

struct pb_train_cfg {
    uint32_t local_epochs;
    uint32_t local_steps;
    uint32_t batch_size;
    float lr;
    float momentum;
    uint64_t seed;
};

struct pb_compress_cfg {
    float density;
    uint32_t topk;            /* proto TopkMethod */
    uint32_t values;          /* proto ValueCoding */
    uint32_t codec;           /* proto Codec */
    int32_t level;
    bool error_feedback;
    bool momentum_correction;
    float clip_norm;
    bool per_tensor;
    uint64_t max_update_bytes;
    float momentum_factor;    /* momentum correction factor, 0 = absent */
};

struct pb_task {
    uint64_t round;
    uint64_t epoch;
    uint64_t model_version;
    struct pb_tensor model;   /* dense; has_base_version for a XOR delta */
    struct pb_train_cfg train;
    struct pb_compress_cfg compress;
    uint32_t timeout_ms;
    uint32_t last_update;     /* enum pb_update_status, 0 when absent */
    uint64_t last_update_round;
    bool allow_overrides;
    /* Lossy downlink: the model is the held version model_delta_base plus
     * this sparse delta, and `model` is an empty placeholder. Unpack
     * refuses a model_delta without model_delta_base (FL_ERR_MISSING_FIELD). */
    bool has_model_delta;
    struct pb_tensor model_delta;   /* sparse */
    uint64_t model_delta_base;
};

struct pb_train_stats {
    float loss;
    uint32_t train_ms;
    uint32_t encode_ms;
    uint32_t load_ms;
    uint64_t peak_rss_kb;
    uint32_t steps;
};

struct pb_update {
    uint64_t round;
    uint64_t n_samples;
    struct pb_tensor delta;   /* sparse */
    struct pb_train_stats stats;
    bool has_used;
    struct pb_compress_cfg used;
};

struct pb_reject {
    uint32_t code;            /* enum fl_err value */
    const char *reason;
    bool has_round;
    uint64_t round;
};

struct pb_bye {
    const char *reason;       /* may be NULL */
    uint32_t last_update;     /* enum pb_update_status, 0 when absent */
    uint64_t last_update_round;
};

/* A piece of a transfer. data points into the message. */
struct pb_chunk {
    uint64_t transfer;
    uint32_t seq;
    uint32_t total;
    const uint8_t *data;
    size_t len;
};

struct pb_credit {
    uint64_t transfer;
    uint32_t received;
    bool cancel;
};

struct pb_envelope {
    uint32_t version;
    enum pb_body body;
    union {
        struct pb_hello hello;
        struct pb_welcome welcome;
        struct pb_task task;
        struct pb_update update;
        struct pb_reject reject;
        struct pb_bye bye;
        struct pb_chunk chunk;
        struct pb_credit credit;
    };
};

struct pb_limits {
    size_t max_message;       /* bytes of input accepted */
    size_t max_alloc;         /* bytes the parser may allocate */
};

struct pb_msg;

/* Serialized size of env (0 when env is not packable). */
size_t pb_packed_size(const struct pb_envelope *env);

/* Pack env into buf (capacity cap). FL_ERR_TOO_LARGE when cap is short,
 * FL_ERR_INVALID_ARG when env has no body or a NULL required string. */
enum fl_err pb_pack(const struct pb_envelope *env, uint8_t *buf, size_t cap,
                    size_t *len);

/* Pack into a new buffer. Caller owns *buf (free with fl_free()). */
enum fl_err pb_pack_alloc(const struct pb_envelope *env, uint8_t **buf,
                          size_t *len);

/* Parse untrusted bytes as described above. On success caller owns *msg
 * (pb_msg_destroy()) and *env points into it. On failure *msg is NULL and,
 * when errbuf is given, it holds a one-line reason. When the only problem is
 * the version, rc is FL_ERR_VERSION and *version_out (if not NULL) holds
 * the version the peer spoke. */
enum fl_err pb_unpack(const uint8_t *buf, size_t len,
                      const struct pb_limits *lim, struct pb_msg **msg,
                      const struct pb_envelope **env, uint32_t *version_out,
                      char *errbuf, size_t errlen);

void pb_msg_destroy(struct pb_msg **msgp);

/* The envelope a message holds (the one pb_unpack() returned), for a
 * receiver that keeps the message past the call. */
const struct pb_envelope *pb_msg_envelope(const struct pb_msg *msg);

/* The body type of a serialized envelope without parsing it: a scan of
 * the top-level fields (the last body field wins, as in protobuf). For a
 * cheap decision before the real parse (the coordinator's rate limit
 * exempts Chunk/Credit of an open transfer); PB_BODY_NONE when the bytes
 * do not scan. Not a validation: pb_unpack() still decides. */
enum pb_body pb_peek_body(const uint8_t *buf, size_t len);

/* Name of a body type for logs ("hello", "task", ...). */
const char *pb_body_name(enum pb_body body);

#endif /* PB_MSG_H */
