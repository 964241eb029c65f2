/* coord_harness.h - what the unit tests that drive a coordinator engine by
 * hand share (test_coord_engine, _ckpt, _guard, _down): the coordinator's
 * flags given as one string, a fake transport that queues what the engine
 * sends, taking messages off that queue, feeding messages in, and building
 * the engine. Each test keeps its own harness struct with these inside.
 *
 * The helpers fail the running cmocka test on an unexpected error; what
 * they return is what the test looks at (th_config_try's parse result,
 * th_outbox_send's answer to the engine). Routing ids are one byte (the
 * device's number). */
#ifndef FEDCOMP_TESTS_COORD_HARNESS_H
#define FEDCOMP_TESTS_COORD_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/coord_config.h"
#include "coordinator/coord_engine.h"
#include "proto/pb_msg.h"

/* cfg = the defaults, then the flags in `flags` (space-separated, no
 * quoting): coord_config_parse's result (err may be NULL). The caller
 * releases cfg (coord_config_release) either way. */
enum fl_err th_config_try(struct coord_config *cfg, const char *flags,
                          char *err, size_t errlen);

/* th_config_try that fails the test on a bad flag. */
void th_config(struct coord_config *cfg, const char *flags);

#define TH_MAX_SENT 512

struct th_sent {
    uint8_t rid;
    uint8_t *buf;
    size_t len;
};

/* The messages the engine sent, oldest first, and the ones taken off the
 * queue that the outbox keeps (their envelopes stay valid). */
struct th_outbox {
    struct th_sent out[TH_MAX_SENT];
    size_t nout;
    uint8_t dead[256];           /* rid -> sends to it fail (gone) */
    struct pb_msg *kept[TH_MAX_SENT];
    size_t nkept;
};

/* The engine's io.send, on an outbox: queues buf (owned from here on), or
 * frees it and returns FL_ERR_UNKNOWN_DEVICE when the rid is dead. */
enum fl_err th_outbox_send(struct th_outbox *o, const uint8_t *rid,
                           size_t rid_len, uint8_t *buf, size_t len);

/* Frees every queued message. */
void th_outbox_clear(struct th_outbox *o);

/* Frees the queued messages and the kept ones. */
void th_outbox_release(struct th_outbox *o);

/* Messages queued for rid. */
size_t th_outbox_count(const struct th_outbox *o, uint8_t rid);

/* The first message queued for rid whose body is `body` (any body for
 * PB_BODY_NONE), taken off the queue and unpacked: *msg is the caller's
 * (pb_msg_destroy), or with msg NULL the outbox keeps it until
 * th_outbox_release. *len is its size when len != NULL. Messages for rid
 * before it are dropped when drop_before, else left queued. NULL (and *msg
 * NULL) when there is none. */
const struct pb_envelope *th_outbox_take(struct th_outbox *o, uint8_t rid,
                                         enum pb_body body, bool drop_before,
                                         struct pb_msg **msg, size_t *len);

/* Hands len bytes to the engine as a message from rid at time now: with
 * the CURVE User-Id uid, or plaintext when uid is NULL. */
void th_feed(struct coord_engine *e, uint8_t rid, const char *uid,
             const uint8_t *buf, size_t len, uint64_t now);

/* Packs env and hands it to the engine as a message from rid at time now:
 * with the CURVE User-Id uid, or plaintext when uid is NULL. Returns the
 * packed size. */
size_t th_feed_env(struct coord_engine *e, uint8_t rid, const char *uid,
                   const struct pb_envelope *env, uint64_t now);

/* An engine (not started) on these parts; the caller destroys it. */
struct coord_engine *th_engine(const struct coord_config *cfg,
                               const struct mdl_layout *layout,
                               const float *init,
                               const struct coord_io *io,
                               struct coord_report *report, uint64_t epoch);

#endif
