/*
 * wrk_xfer.h - the worker's side of chunked transfers (docs/protocol.md
 * "Transfers"): how large a downlink payload may be, and the sender's state
 * of an uplink (Update) transfer. proto/pb_xfer.h has the shared arithmetic
 * and the receiver's reassembly (the worker uses struct pb_xfer_rx as is).
 *
 * Uplink, one transfer at a time (W = the Welcome's chunk_window):
 *
 *   worker                               coordinator
 *   Update{payload_transfer T, bytes} -->        (checks it, waits for a slot)
 *                                     <-- Credit{T, received 0}
 *   Chunk{T, 0} .. Chunk{T, W-1}      -->
 *                                     <-- Credit{T, 1}
 *   Chunk{T, W}                       -->
 *   ...                                   ...
 *   Chunk{T, total-1}                 -->  complete: the fate comes as usual
 *
 * The sender sends seq only while seq < received + W, nothing before the
 * first Credit. Credit{cancel} ends the transfer. A transfer not complete
 * at its deadline (the Task's) is given up by the caller.
 *
 * Pure: no sockets, no clock, no logging; times are the caller's
 * (fl_now_ns()). The payload is borrowed: the caller keeps it alive and
 * unchanged while the transfer is active. Not thread-safe.
 */
#ifndef WRK_XFER_H
#define WRK_XFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "proto/pb_msg.h"

struct wrk_xfer_tx {
    uint64_t transfer;        /* 0: idle */
    uint64_t round;           /* of the update being sent */
    const uint8_t *payload;   /* borrowed, len bytes */
    size_t len;
    uint32_t chunk_bytes;
    uint32_t window;
    uint32_t total;           /* chunks */
    uint32_t next;            /* next seq to hand over */
    uint32_t received;        /* the receiver's last count */
    bool granted;             /* a Credit has come */
    uint64_t deadline_ns;     /* 0 = none */
};

/* What a Credit did to the transfer. */
enum wrk_credit {
    WRK_CREDIT_OTHER = 0,     /* not this transfer (or idle): ignored */
    WRK_CREDIT_OK = 1,        /* accepted; the window may have moved */
    WRK_CREDIT_CANCEL = 2,    /* the receiver dropped it: now idle */
    WRK_CREDIT_BAD = 3        /* received above the chunks sent: ignored */
};

/* True when a payload of len bytes travels in chunks under this geometry
 * (chunk_bytes 0 = the coordinator announced none: always inline). */
bool wrk_xfer_chunked(size_t len, uint32_t chunk_bytes);

/* A fresh transfer id from *counter: never 0, never the previous one. */
uint64_t wrk_xfer_id_next(uint64_t *counter);

/* Start sending payload (len bytes, borrowed) as `transfer` for `round`.
 * Nothing may be sent before the first Credit. FL_ERR_INVALID_ARG for
 * transfer 0, an empty payload, a bad geometry (pb_xfer_geometry_ok) or
 * more than UINT32_MAX chunks; the tx is then idle. */
enum fl_err wrk_xfer_tx_begin(struct wrk_xfer_tx *tx, uint64_t transfer,
                              uint64_t round, const uint8_t *payload,
                              size_t len, uint32_t chunk_bytes,
                              uint32_t window, uint64_t deadline_ns);

/* Take in a Credit from the receiver (see enum wrk_credit). A count below
 * the last one changes nothing (still WRK_CREDIT_OK). */
enum wrk_credit wrk_xfer_tx_credit(struct wrk_xfer_tx *tx,
                                   const struct pb_credit *cr);

/* The chunk that may be handed over now: true with its seq, data and
 * length, false when the window is closed, no Credit came yet, every chunk
 * is out, or the tx is idle. Call wrk_xfer_tx_sent() once it went out. */
bool wrk_xfer_tx_next(const struct wrk_xfer_tx *tx, uint32_t *seq,
                      const uint8_t **data, size_t *len);

/* The chunk wrk_xfer_tx_next() returned went out. */
void wrk_xfer_tx_sent(struct wrk_xfer_tx *tx);

/* Every chunk handed over. */
bool wrk_xfer_tx_complete(const struct wrk_xfer_tx *tx);

/* Active, not complete, and its deadline (if any) is at or before now. */
bool wrk_xfer_tx_expired(const struct wrk_xfer_tx *tx, uint64_t now_ns);

/* Forget the transfer (the payload is not the tx's to free). */
void wrk_xfer_tx_reset(struct wrk_xfer_tx *tx);

static inline bool wrk_xfer_tx_active(const struct wrk_xfer_tx *tx)
{
    return tx->transfer != 0;
}

/* The largest payload a valid encoding of the announced tensor can have,
 * for pb_xfer_rx_begin(): a model of dim floats (dense: fp32, no index
 * stream) or a sparse delta of t->k entries with t's codings, at the
 * codec's worst case (cmp_sparse_bound). FL_ERR_DIMENSION when
 * t->dimension != dim, FL_ERR_K_RANGE (sparse k 0 or above dim),
 * FL_ERR_UNSUPPORTED for codings or a codec the worker does not know. */
enum fl_err wrk_xfer_max_payload(uint64_t dim, const struct pb_tensor *t,
                                 bool dense, uint64_t *max);

#endif /* WRK_XFER_H */
