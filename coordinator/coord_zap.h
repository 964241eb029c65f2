/*
 * coord_zap.h - the coordinator's ZAP handler (ZeroMQ RFC 27): which CURVE
 * keys may connect, and under which device name.
 *
 * The allowlist is a directory of NAME.pub files (common/fl_keys.h format);
 * the device name is the file's base name. A key in two files is kept under
 * the first name in sort order (a warning names the other). Files that are
 * not NAME.pub with a valid name (1-64 of [A-Za-z0-9._:-], no leading '.')
 * are ignored; unreadable or malformed ones are skipped with a warning.
 *
 * The handler is an actor (STYLE.md 9): coord_zap_new() starts a thread
 * that binds a REP socket on inproc://zeromq.zap.01 in the given context
 * and returns once it is ready, so it must be called *before* the CURVE
 * ROUTER binds (libzmq accepts every key when no handler is bound). The
 * thread answers each handshake: 200 with User-Id = the device name for a
 * listed key, 400 otherwise (domain other than "fedcomp", mechanism other
 * than CURVE, unknown key); refusals are counted and logged with the key's
 * fingerprint (at most 10 lines a second, then a count of the rest).
 * coord_zap_destroy() sends $TERM over a PAIR pipe and joins the thread.
 *
 * coord_zap_reload() (SIGHUP) re-reads the directory in the caller's
 * thread, logs every key added and removed by name and fingerprint, hands
 * the new immutable set to the handler over the pipe, waits for its ack
 * and frees the old set. The set is never modified once built, so both
 * threads may read the current one. All functions except the counters are
 * for the coordinator's main thread only.
 */
#ifndef COORD_ZAP_H
#define COORD_ZAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"

#define COORD_ZAP_DOMAIN "fedcomp"
#define COORD_ZAP_MAX_KEYS 65536

struct coord_zap;

/* Load the keys of dir and start the handler in zctx. Caller owns *out
 * (coord_zap_destroy() before zmq_ctx_term()). FL_ERR_NOT_FOUND / FL_ERR_IO
 * (directory), FL_ERR_ZMQ (the ZAP endpoint is taken or a socket failed),
 * FL_ERR_NOMEM, FL_ERR_INTERRUPTED (pthread_create failed); all logged. An
 * empty directory is allowed (every key is refused until a reload). */
enum fl_err coord_zap_new(void *zctx, const char *dir,
                          struct coord_zap **out);

/* Stop the thread, close its sockets, free everything; accepts NULL. */
void coord_zap_destroy(struct coord_zap **zp);

/* Re-read the directory. On failure (directory gone, no memory) the old
 * set stays in force and the error is logged and returned. *added and
 * *removed (may be NULL) get the counts of names added and removed
 * (a changed key counts as both). */
enum fl_err coord_zap_reload(struct coord_zap *z, size_t *added,
                             size_t *removed);

/* True when `name` has a key in the current set. */
bool coord_zap_authorized(const struct coord_zap *z, const char *name);

/* Keys in the current set. */
size_t coord_zap_count(const struct coord_zap *z);

/* Handshakes answered 200 / 400 since the start. Any thread. */
uint64_t coord_zap_accepted(const struct coord_zap *z);
uint64_t coord_zap_refused(const struct coord_zap *z);

#endif /* COORD_ZAP_H */
