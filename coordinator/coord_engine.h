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
 * coord_engine_stop() (SIGINT/SIGTERM) abandons the open attempt, says Bye
 * to every device and ends in STOPPED. Every terminal state sends Bye to
 * every connected device, saves the model when asked, and syncs the report.
 * After the end the engine still answers: an Update (counted late, its
 * fate NOT_USED) or a Hello gets a Bye, for devices that were busy when
 * the first Bye was sent; anything else is counted and ignored.
 *
 * A bad message never changes the model: every field of an Update is
 * checked (round, cohort, duplicate, samples, tensor) before it reaches the
 * accumulator, and a commit whose result is not finite is abandoned.
 * Not thread-safe; one loop drives it.
 */
#ifndef COORD_ENGINE_H
#define COORD_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/fl_err.h"
#include "coordinator/coord_agg.h"
#include "coordinator/coord_config.h"
#include "coordinator/coord_devtab.h"
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
    /* Evaluate params (dim floats); NULL: no evaluation (accuracy empty). */
    enum fl_err (*evaluate)(void *ctx, const float *params, size_t dim,
                            double *acc, double *loss);
};

struct coord_engine_env {
    const struct coord_config *cfg;    /* read for the engine's lifetime */
    const struct mdl_layout *layout;   /* read for the engine's lifetime */
    const float *init;                 /* layout->dim floats, copied */
    struct coord_io io;
    struct coord_report *report;       /* not owned; may be a no-file one */
    FILE *progress;                    /* per-round lines; NULL = none */
    uint64_t epoch;                    /* random per coordinator start */
};

struct coord_engine;

/* Caller owns *out (coord_engine_destroy()). FL_ERR_INVALID_ARG,
 * FL_ERR_NOMEM. */
enum fl_err coord_engine_new(const struct coord_engine_env *env,
                             struct coord_engine **out);
void coord_engine_destroy(struct coord_engine **ep);

/* Evaluate the initial model (initial_acc in the report) and start
 * waiting for devices. */
void coord_engine_start(struct coord_engine *e, uint64_t now_ns);

/* One received message: the routing id and the first body frame;
 * extra_frames/extra_bytes describe further frames the transport drained
 * (such a message is dropped and counted). */
void coord_engine_on_message(struct coord_engine *e, const uint8_t *rid,
                             size_t rid_len, const uint8_t *data,
                             size_t len, size_t extra_frames,
                             size_t extra_bytes, uint64_t now_ns);

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
const struct coord_devtab *coord_engine_devices(const struct coord_engine *e);
uint64_t coord_engine_round(const struct coord_engine *e);
const struct coord_round_row *coord_engine_last_row(
    const struct coord_engine *e);

/* The reason sent in Bye: "training complete" or the status name. */
const char *coord_engine_end_reason(const struct coord_engine *e);

/* Name of a status for logs ("completed", "interrupted", ...). */
const char *coord_status_name(enum coord_status s);

#endif /* COORD_ENGINE_H */
