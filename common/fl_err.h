/*
 * fl_err.h - the one error type of fedcomp.
 *
 * Every function that can fail returns enum fl_err. FL_OK is 0, so
 * `if (rc) goto out;` reads naturally. Values are explicit and stable: they
 * travel on the wire as Reject reason codes (docs/wire-format.md), so a value
 * is never renumbered or reused. Gaps are allowed.
 */
#ifndef FL_ERR_H
#define FL_ERR_H

enum fl_err {
    FL_OK = 0,

    /* generic */
    FL_ERR_NOMEM = 1,          /* an allocation failed (or hit its budget) */
    FL_ERR_INVALID_ARG = 2,    /* caller passed something out of contract */
    FL_ERR_TOO_LARGE = 3,      /* input or buffer over a configured maximum */
    FL_ERR_IO = 4,             /* read/write/fsync/rename failed (errno logged) */
    FL_ERR_FORMAT = 5,         /* malformed input, nothing more specific */
    FL_ERR_TRUNCATED = 6,      /* input ends before it should */
    FL_ERR_VERSION = 7,        /* unsupported protocol or file version */
    FL_ERR_UNSUPPORTED = 8,    /* unknown coding, codec or option value */
    FL_ERR_NOT_FOUND = 9,      /* file, key or object does not exist */

    /* sparse / dense tensor validation (compress/) */
    FL_ERR_DIMENSION = 20,     /* dimension differs from the model's */
    FL_ERR_K_RANGE = 21,       /* k == 0 or k > dimension */
    FL_ERR_INDEX_ORDER = 22,   /* indices not strictly increasing */
    FL_ERR_INDEX_RANGE = 23,   /* an index >= dimension */
    FL_ERR_RAW_SIZE = 24,      /* declared raw size inconsistent with n/k/codings */
    FL_ERR_CHECKSUM = 25,      /* checksum of decoded raw stream differs */
    FL_ERR_NONFINITE = 26,     /* NaN or Inf value */
    FL_ERR_CODEC = 27,         /* the codec (zstd/LZ4) failed to decode */
    FL_ERR_TRAILING = 28,      /* bytes after the end of the stream/frame */
    FL_ERR_SIZE_MISMATCH = 29, /* decoded size differs from declared size */

    /* messages and protocol (proto/, coordinator, worker) */
    FL_ERR_PROTO = 40,         /* protobuf could not parse the message */
    FL_ERR_MISSING_FIELD = 41, /* a required field or body is absent */
    FL_ERR_BAD_STATE = 42,     /* message not allowed in the current state */
    FL_ERR_STALE_ROUND = 43,   /* update for a round that is not open */
    FL_ERR_NOT_IN_COHORT = 44, /* sender was not selected for this round */
    FL_ERR_DUPLICATE = 45,     /* second update for the same round */
    FL_ERR_SAMPLES = 46,       /* sample count out of range */
    FL_ERR_NORM = 47,          /* update norm over the bound */
    FL_ERR_UNKNOWN_DEVICE = 48,/* message from a device that never said Hello */
    FL_ERR_LATE = 49,          /* update arrived after the round closed */
    FL_ERR_RATE = 50,          /* too many messages from one peer */
    FL_ERR_FULL = 51,          /* too many devices connected */
    FL_ERR_IGNORED = 52,       /* device is in its penalty period */
    FL_ERR_TRANSFER = 53,      /* chunk of an unknown transfer, out of order,
                                  of the wrong size, or over the budget */

    /* system */
    FL_ERR_ZMQ = 60,           /* a libzmq call failed (zmq_strerror logged) */
    FL_ERR_TIMEOUT = 61,       /* a wait ran out */
    FL_ERR_INTERRUPTED = 62,   /* a signal asked us to stop */
    FL_ERR_DATA = 63,          /* training data missing or malformed */

    FL_ERR__MAX                /* never use: one past the last value */
};

/* fl_strerror - short lowercase text for an error code; never NULL.
 * Unknown values give "unknown error". Thread-safe (static strings). */
const char *fl_strerror(enum fl_err err);

/* fl_err_name - the symbolic name without the FL_ERR_ prefix, lowercase
 * ("checksum", "index_range", "ok"); for report columns and JSON keys. */
const char *fl_err_name(enum fl_err err);

/* Return-forwarding helpers; the names say that they return. */
#define FL_FORWARD_ERR(expr)                                                   \
    do {                                                                       \
        const enum fl_err fl_fwd_rc_ = (expr);                                 \
        if (fl_fwd_rc_ != FL_OK)                                               \
            return fl_fwd_rc_;                                                 \
    } while (0)

#define FL_RETURN_ERR_IF(cond, err)                                            \
    do {                                                                       \
        if (cond)                                                              \
            return (err);                                                      \
    } while (0)

#endif /* FL_ERR_H */
