/*
 * pb_xfer.h - chunked transfers: the arithmetic both sides share and the
 * receiver's reassembly (docs/protocol.md "Transfers").
 *
 * A payload of B bytes travels as total = ceil(B / chunk_bytes) Chunk
 * messages, seq 0 .. total-1 in order, every one chunk_bytes long except
 * the last (1 .. chunk_bytes). The receiver grants credit: having taken in
 * `received` chunks, it lets the sender have seq < received + window in
 * flight.
 *
 * struct pb_xfer_rx reassembles one transfer. Every chunk is checked
 * against what the announcement (transfer id, payload_bytes) implies before
 * a byte is copied: an unknown transfer, a seq other than the next one, a
 * total other than the computed one, or a length other than the expected
 * one is FL_ERR_TRANSFER and leaves the state as it was. The buffer is
 * allocated once at pb_xfer_rx_begin (bounded by the caller's max_bytes,
 * which the caller derives from what it is willing to receive).
 *
 * Ownership: the rx owns its buffer until pb_xfer_rx_take() hands it to the
 * caller (free with fl_free()). Not thread-safe; one per transfer.
 */
#ifndef PB_XFER_H
#define PB_XFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "proto/pb_msg.h"

/* Limits on the announced chunk geometry, both sides. */
#define PB_XFER_MIN_CHUNK 1024u
#define PB_XFER_MAX_CHUNK (64u << 20)
#define PB_XFER_MAX_WINDOW 1024u

/* Chunks for a payload of `bytes` (0 when bytes == 0, chunk_bytes == 0, or
 * the count does not fit uint32). */
uint32_t pb_xfer_chunks(uint64_t bytes, uint32_t chunk_bytes);

/* Length of chunk seq (0 when seq is out of range). */
size_t pb_xfer_chunk_len(uint64_t bytes, uint32_t chunk_bytes, uint32_t seq);

/* Is (chunk_bytes, window) a geometry both sides accept? */
bool pb_xfer_geometry_ok(uint32_t chunk_bytes, uint32_t window);

struct pb_xfer_rx {
    uint64_t transfer;        /* 0: idle */
    uint64_t bytes;           /* announced payload size */
    uint32_t chunk_bytes;
    uint32_t total;
    uint32_t received;        /* chunks taken in */
    uint8_t *buf;             /* bytes long once begun */
};

/* Start receiving transfer `transfer` of `bytes` bytes in chunks of
 * chunk_bytes. Resets anything the rx held. FL_ERR_FORMAT when transfer is
 * 0, bytes is 0 or the geometry is bad; FL_ERR_TOO_LARGE when bytes >
 * max_bytes; FL_ERR_NOMEM. On failure the rx is idle. */
enum fl_err pb_xfer_rx_begin(struct pb_xfer_rx *rx, uint64_t transfer,
                             uint64_t bytes, uint32_t chunk_bytes,
                             uint64_t max_bytes);

/* Take in one chunk. FL_ERR_TRANSFER (state unchanged) when it is not the
 * next chunk of this transfer with the expected total and length;
 * FL_ERR_BAD_STATE when the rx is idle or already complete. *complete is
 * set when this was the last chunk. */
enum fl_err pb_xfer_rx_add(struct pb_xfer_rx *rx, const struct pb_chunk *c,
                           bool *complete);

static inline bool pb_xfer_rx_active(const struct pb_xfer_rx *rx)
{
    return rx->transfer != 0;
}

static inline bool pb_xfer_rx_done(const struct pb_xfer_rx *rx)
{
    return rx->transfer != 0 && rx->received == rx->total;
}

/* Hand the complete payload to the caller (fl_free()) and go idle.
 * FL_ERR_BAD_STATE when not complete. */
enum fl_err pb_xfer_rx_take(struct pb_xfer_rx *rx, uint8_t **buf,
                            size_t *len);

/* Drop whatever the rx holds and go idle. */
void pb_xfer_rx_reset(struct pb_xfer_rx *rx);

/* Pack a Chunk or a Credit into a new buffer (caller fl_free()s it). */
enum fl_err pb_xfer_pack_chunk(uint64_t transfer, uint32_t seq,
                               uint32_t total, const uint8_t *data,
                               size_t len, uint8_t **buf, size_t *buflen);
enum fl_err pb_xfer_pack_credit(uint64_t transfer, uint32_t received,
                                bool cancel, uint8_t **buf, size_t *buflen);

#endif /* PB_XFER_H */
