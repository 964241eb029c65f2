/*
 * coord_xfer.h - the coordinator's side of chunked transfers
 * (docs/protocol.md "Transfers"), without sockets.
 *
 * Downlink: an encoded model body is cut once into packed Chunk frames
 * (struct coord_blob); the frames are reference-counted (struct
 * coord_frame) so the transport queues the same bytes to every device
 * (zmq_msg_init_data) and memory does not grow with the number of devices.
 * A scheduler decides which device gets which frame next: per device at
 * most `window` chunks beyond its last Credit, over all devices at most
 * `max_inflight` chunks not yet acknowledged. Devices that were granted
 * credit are served before devices that have not started, so downloads
 * finish early rather than all at the end.
 *
 * Uplink: an announced Update waits in a FIFO for one of `upload_slots`;
 * a granted slot holds the reassembly buffer (pb_xfer_rx) and the announced
 * message (kept until the payload is complete), so upload memory is bounded
 * by the slots times the largest accepted payload.
 *
 * Devices are named by their device-table index (coord_device.index).
 * Not thread-safe except coord_frame_unref(), which the transport's I/O
 * thread calls when ZeroMQ is done with a frame.
 */
#ifndef COORD_XFER_H
#define COORD_XFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "proto/pb_msg.h"
#include "proto/pb_xfer.h"

/* A packed frame shared by many sends. refs starts at 1 (the creator). */
struct coord_frame;
struct coord_frame *coord_frame_new(const uint8_t *data, size_t len);
void coord_frame_ref(struct coord_frame *f);
void coord_frame_unref(struct coord_frame *f);   /* thread-safe */
const uint8_t *coord_frame_data(const struct coord_frame *f);
size_t coord_frame_len(const struct coord_frame *f);

/* What an encoded body is, so that equal bodies share one blob. */
struct coord_blob_key {
    uint32_t kind;            /* caller's tag (full / XOR / sparse delta) */
    uint32_t codec;
    uint64_t version;
    uint64_t base_version;
};

struct coord_xfer_cfg {
    uint32_t chunk_bytes;
    uint32_t window;          /* chunks per device beyond its credit */
    uint32_t max_inflight;    /* chunks sent, not acknowledged, all devices */
    uint32_t upload_slots;    /* uploads reassembled at a time */
    uint32_t max_blobs;       /* bodies kept packed (>= 1) */
};

struct coord_xfer;

/* Caller owns *out (coord_xfer_destroy()). FL_ERR_INVALID_ARG for a bad
 * geometry, FL_ERR_NOMEM. */
enum fl_err coord_xfer_new(const struct coord_xfer_cfg *cfg,
                           struct coord_xfer **out);
void coord_xfer_destroy(struct coord_xfer **xp);

/* ---- downlink */

/* The transfer id for the body `key` (data, len), packing its chunk frames
 * the first time; *total gets the chunk count. Equal keys must mean equal
 * bytes. FL_ERR_NOMEM, FL_ERR_INVALID_ARG (len 0). */
enum fl_err coord_xfer_blob(struct coord_xfer *x,
                            const struct coord_blob_key *key,
                            const uint8_t *data, size_t len,
                            uint64_t *transfer, uint32_t *total);

/* Start sending transfer `transfer` (from coord_xfer_blob(), not evicted
 * since) to device dev, replacing whatever it was downloading. */
enum fl_err coord_xfer_start(struct coord_xfer *x, uint32_t dev,
                             uint64_t transfer);

/* The next frame to send: to device *dev. NULL when nothing may be sent
 * now. The frame is borrowed (coord_frame_ref() to keep it); the scheduler
 * counts it as in flight. A send that then fails: coord_xfer_stop(). */
const struct coord_frame *coord_xfer_next(struct coord_xfer *x,
                                          uint32_t *dev);

/* A Credit from dev. FL_OK; FL_ERR_TRANSFER when dev is not downloading
 * that transfer or `received` is not between its last credit and what was
 * sent (the download is then stopped). cancel stops the download. *done
 * is set when every chunk has been acknowledged (the download ends). */
enum fl_err coord_xfer_credit(struct coord_xfer *x, uint32_t dev,
                              uint64_t transfer, uint32_t received,
                              bool cancel, bool *done);

/* Stop dev's download (gone, new round, Bye); its in-flight chunks no
 * longer count. */
void coord_xfer_stop(struct coord_xfer *x, uint32_t dev);

bool coord_xfer_downloading(const struct coord_xfer *x, uint32_t dev);

/* ---- uplink */

/* Device dev announced an upload: msg (ownership taken, also on failure)
 * holds the Update whose delta announces `transfer` of `bytes` bytes; len
 * is the announcement's frame size. Replaces any upload dev had. */
enum fl_err coord_xfer_up_announce(struct coord_xfer *x, uint32_t dev,
                                   struct pb_msg *msg, size_t len,
                                   uint64_t transfer, uint64_t bytes);

/* Grant the next waiting upload a slot (allocates its buffer): *dev and
 * *transfer to send Credit{transfer, 0} to. false when no slot is free or
 * nobody waits. An allocation failure drops that upload: *failed is set
 * and *dev names it. */
bool coord_xfer_up_grant(struct coord_xfer *x, uint64_t now_ns,
                         uint32_t *dev, uint64_t *transfer, bool *failed);

/* A Chunk from dev. FL_OK (*received: chunks taken in so far, for the
 * Credit; *complete when it was the last); FL_ERR_TRANSFER when dev has no
 * granted upload of that transfer or the chunk is not the next one: any
 * upload dev had, waiting or granted, is then dropped. */
enum fl_err coord_xfer_up_chunk(struct coord_xfer *x, uint32_t dev,
                                const struct pb_chunk *c, size_t frame_len,
                                uint64_t now_ns, uint32_t *received,
                                bool *complete);

/* A granted upload that has made no progress (grant or chunk) since
 * before_ns: *dev names it (the caller drops it). false when none. A slot
 * held by a device that sends nothing would otherwise block uploads for
 * the rest of the round. */
bool coord_xfer_up_stalled(const struct coord_xfer *x, uint64_t before_ns,
                           uint32_t *dev);

/* A complete upload: the announced message (caller owns it now,
 * pb_msg_destroy()), the payload (caller fl_free()s it) and the wire bytes
 * of the announcement plus every chunk frame. The slot is free again. */
enum fl_err coord_xfer_up_take(struct coord_xfer *x, uint32_t dev,
                               struct pb_msg **msg, uint8_t **payload,
                               size_t *payload_len, uint64_t *wire_bytes);

/* Drop dev's upload, waiting or receiving. Returns the wire bytes it had
 * received (0 when it had none). */
uint64_t coord_xfer_up_drop(struct coord_xfer *x, uint32_t dev);

/* Does dev have an upload waiting or in progress? Its transfer id. */
bool coord_xfer_uploading(const struct coord_xfer *x, uint32_t dev,
                          uint64_t *transfer);

/* Has dev been granted an upload slot (chunks expected)? */
bool coord_xfer_up_receiving(const struct coord_xfer *x, uint32_t dev);

/* Counters for logs and metrics. */
struct coord_xfer_stats {
    uint64_t chunks_sent;
    uint64_t blobs_packed;
    uint32_t inflight;
    uint32_t downloads;       /* devices downloading now */
    uint32_t uploads_active;
    uint32_t uploads_waiting;
    uint64_t chunks_received;
};
void coord_xfer_stats(const struct coord_xfer *x, struct coord_xfer_stats *s);

#endif /* COORD_XFER_H */
