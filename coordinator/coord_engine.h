/*
 * coord_engine.h - the coordinator's round state machine, without sockets.
 *
 * The engine owns the global model (struct coord_agg), the device table and
 * the round state. The transport feeds it received frames
 * (coord_engine_on_message) and calls coord_engine_tick() whenever time
 * passes; the engine sends frames back through the io callbacks. Time is
 * passed in as now_ns (any monotonic clock), so tests drive deadlines
 * without sleeping. docs/protocol.md is the behaviour it implements:
 *
 *            min devices joined
 *   WAITING -------------------> OPEN (cohort drawn, Tasks sent)
 *     ^  | wait timeout            | all cohort members reported/rejected/
 *     |  v                         | gone, or the round deadline
 *     | NO_DEVICES (exit 3)        v
 *     |                  quorum? --yes--> commit, evaluate, report
 *     |                     |no             | last round? -> DONE (Bye all)
 *     |                     v               v
 *     +------------- abandon, attempt + 1   round + 1 --> WAITING
 *                           | attempts > max -> TOO_MANY_ATTEMPTS (exit 4)
 *
 * coord_engine_stop() (SIGINT/SIGTERM) abandons the open attempt,
 * checkpoints, says Bye to every device and ends in STOPPED. Every closed
 * attempt (committed or abandoned) is followed by a checkpoint through
 * io.checkpoint, so a restarted coordinator resumes at the next attempt
 * (coord_engine_resume(), coord_ckpt.h). Every terminal state sends Bye to
 * every connected device, saves the model when asked, and syncs the report.
 * After the end the engine still answers: an Update (counted late, its
 * fate NOT_USED) or a Hello gets a Bye, for devices that were busy when
 * the first Bye was sent; anything else is counted and ignored.
 *
 * A bad message never changes the model: every field of an Update is
 * checked (round, cohort, duplicate, samples, tensor, norm bound) before it
 * reaches the accumulator, one update's share of the weight is capped, a
 * commit whose result is not finite is abandoned, and a device refused
 * --penalty-after times in a row is ignored for a while (coord_guard.h).
 * Not thread-safe; one loop drives it.
 */
#ifndef COORD_ENGINE_H
#define COORD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/fl_err.h"
#include "coordinator/coord_agg.h"
#include "coordinator/coord_ckpt.h"
#include "coordinator/coord_config.h"
#include "coordinator/coord_devtab.h"
#include "coordinator/coord_metrics.h"
#include "coordinator/coord_report.h"
#include "model/mdl_trainer.h"

enum coord_status {
    COORD_RUNNING = 0,
    COORD_DONE = 1,              /* all rounds trained */
    COORD_NO_DEVICES = 2,        /* --wait-timeout passed */
    COORD_TOO_MANY_ATTEMPTS = 3, /* --max-attempts of one round failed */
    COORD_STOPPED = 4,           /* coord_engine_stop() */
    COORD_FAILED = 5             /* runtime error (e.g. report write) */
};

struct coord_frame;

struct coord_io {
    void *ctx;
    /* Send one frame to a routing id. Takes ownership of buf (from
     * fl_malloc(); the transport fl_free()s it, also on failure), so a
     * large Task is packed once and never copied again. FL_OK when queued.
     * Otherwise the engine treats the device as gone for the open round;
     * FL_ERR_UNKNOWN_DEVICE (the peer is not connected) also forgets its
     * routing id. The transport logs errno details. */
    enum fl_err (*send)(void *ctx, const uint8_t *rid, size_t rid_len,
                        uint8_t *buf, size_t len);
    /* Send a shared frame (a chunk of a model body, coord_xfer.h): the
     * transport takes its own reference (coord_frame_ref()) for as long as
     * it needs the bytes and leaves the caller's alone. Same return values
     * as send. NULL: the engine copies the frame and uses send. */
    enum fl_err (*send_shared)(void *ctx, const uint8_t *rid,
                               size_t rid_len, struct coord_frame *frame);
    /* Evaluate params (dim floats); NULL: no evaluation (accuracy empty). */
    enum fl_err (*evaluate)(void *ctx, const float *params, size_t dim,
                            double *acc, double *loss);
    /* Save a checkpoint (NULL: none). Called after every closed attempt,
     * once its rows are written, and on coord_engine_stop(). ck borrows
     * the engine's memory for the call; the transport fills in the report
     * lengths and writes it (coord_ckpt_save()). A failure is logged and
     * counted; training goes on. */
    enum fl_err (*checkpoint)(void *ctx, struct coord_ckpt *ck);
};

struct coord_engine_env {
    const struct coord_config *cfg;    /* read for the engine's lifetime */
    const struct mdl_layout *layout;   /* read for the engine's lifetime */
    const float *init;                 /* layout->dim floats, copied */
    struct coord_io io;
    struct coord_report *report;       /* not owned; may be a no-file one */
    FILE *progress;                    /* per-round lines; NULL = none */
    uint64_t epoch;                    /* random per coordinator start */
    struct coord_metrics *metrics;     /* not owned; NULL = none */
};

struct coord_engine;

/* Caller owns *out (coord_engine_destroy()). FL_ERR_INVALID_ARG,
 * FL_ERR_NOMEM. */
enum fl_err coord_engine_new(const struct coord_engine_env *env,
                             struct coord_engine **out);
void coord_engine_destroy(struct coord_engine **ep);

/* Continue from a checkpoint (call before coord_engine_start()): the
 * model, its version, the server momentum, the cohort RNG, the next round
 * and attempt, the summary totals and the devices' last-update fates come
 * from ck. Versions a device says it holds from before the restart are not
 * trusted (it gets the full model), and the --max-attempts count starts
 * again at the resumed attempt. FL_ERR_INVALID_ARG with a message in err
 * when ck does not fit this configuration (coord_ckpt_check()) or is
 * inconsistent; the engine is unusable then. */
enum fl_err coord_engine_resume(struct coord_engine *e,
                                const struct coord_ckpt *ck, char *err,
                                size_t errlen);

/* Evaluate the initial model (initial_acc in the report; not after a
 * resume) and start waiting for devices. A resumed engine whose next round
 * is past --rounds ends at once as COORD_DONE. */
void coord_engine_start(struct coord_engine *e, uint64_t now_ns);

/* One received message: the routing id and the first body frame;
 * extra_frames/extra_bytes describe further frames the transport drained
 * (such a message is dropped and counted). */
void coord_engine_on_message(struct coord_engine *e, const uint8_t *rid,
                             size_t rid_len, const uint8_t *data,
                             size_t len, size_t extra_frames,
                             size_t extra_bytes, uint64_t now_ns);

/* coord_engine_on_message() for a CURVE connection: user_id is the
 * User-Id the ZAP handler gave it (the device name of its key; NULL or ""
 * = plaintext). Then the key decides who a message is from: a Hello binds
 * user_id whatever its device_id says (a different one is logged), and a
 * message on a routing id bound to another device is treated as coming
 * from an unknown device. docs/security.md. */
void coord_engine_on_message_auth(struct coord_engine *e,
                                  const uint8_t *rid, size_t rid_len,
                                  const char *user_id, const uint8_t *data,
                                  size_t len, size_t extra_frames,
                                  size_t extra_bytes, uint64_t now_ns);

/* Is a transfer open with the device on this routing id (a download it
 * may credit, or an upload it was granted)? The transport exempts its
 * Chunk/Credit messages from --max-msg-rate then: the credit window
 * already bounds them, and a rate limit would stall a large model.
 * user_id as in coord_engine_on_message_auth(). */
bool coord_engine_in_transfer(const struct coord_engine *e,
                              const uint8_t *rid, size_t rid_len,
                              const char *user_id);

/* Keys were revoked: every connected device for which allowed(ctx, id) is
 * false gets Bye{"key revoked"}, is gone for the open round and its
 * routing id is forgotten (its later messages are the transport's to
 * drop). Returns how many were dropped. */
size_t coord_engine_revoke(struct coord_engine *e,
                           bool (*allowed)(void *ctx, const char *id),
                           void *ctx);

/* Admission counters seen by the transport (handshakes the ZAP handler
 * refused, messages the rate limit dropped), added to the current row. */
void coord_engine_count_admission(struct coord_engine *e,
                                  uint64_t refused_handshakes,
                                  uint64_t rate_limited);

/* The transport saw a TCP peer disconnect (zmq_socket_monitor). libzmq
 * does not say which device or why: a frame over --max-message (the peer
 * is dropped without a message reaching us), a failed handshake, a
 * heartbeat timeout or a worker that left. Counted per attempt as
 * "disconnects" in rounds.jsonl. */
void coord_engine_on_disconnect(struct coord_engine *e);

/* Advance deadlines and state; returns the status (RUNNING until a
 * terminal state). */
enum coord_status coord_engine_tick(struct coord_engine *e, uint64_t now_ns);

/* The next time tick() has something to do (UINT64_MAX: none). */
uint64_t coord_engine_next_deadline(const struct coord_engine *e);

/* Stop now: abandon the open attempt (its row is written), Bye to all. */
void coord_engine_stop(struct coord_engine *e, uint64_t now_ns);

enum coord_status coord_engine_status(const struct coord_engine *e);

/* Totals for the final summary (wall time from start to now_ns). */
void coord_engine_summary(const struct coord_engine *e, uint64_t now_ns,
                          struct coord_summary *s);

/* For tests and the transport: the model, the devices, the round number
 * (the open or next one), the last row written. */
const struct coord_agg *coord_engine_agg(const struct coord_engine *e);

/* The lossy downlink (coordinator/coord_down.h): the broadcast model every
 * device holds. NULL when the downlink is lossless (devices then hold
 * coord_engine_agg()'s model). */
struct coord_down;
const struct coord_down *coord_engine_down(const struct coord_engine *e);
const struct coord_devtab *coord_engine_devices(const struct coord_engine *e);
uint64_t coord_engine_round(const struct coord_engine *e);
const struct coord_round_row *coord_engine_last_row(
    const struct coord_engine *e);

/* The reason sent in Bye: "training complete" or the status name. */
const char *coord_engine_end_reason(const struct coord_engine *e);

/* Name of a status for logs ("completed", "interrupted", ...). */
const char *coord_status_name(enum coord_status s);

#endif /* COORD_ENGINE_H */
