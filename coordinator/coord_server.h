/*
 * coord_server.h - the coordinator process: loads the test set and the
 * model, binds the ZeroMQ ROUTER socket and drives struct coord_engine from
 * one zmq_poll loop until training ends or SIGINT/SIGTERM asks it to stop.
 *
 * Socket: ZMQ_ROUTER_MANDATORY (a send to a vanished peer fails with
 * EHOSTUNREACH instead of being dropped), ZMQ_MAXMSGSIZE = --max-message,
 * ZMQ_LINGER 1 s, ZMTP heartbeats 2 s / 10 s / 10 s, ZMQ_HANDSHAKE_IVL
 * 5 s. Every send is non-blocking; EHOSTUNREACH and EAGAIN are counted,
 * logged and make the device gone for the open round. The endpoint really
 * bound is logged as exactly one info line "listening on ENDPOINT" and,
 * with --endpoint-file, written atomically into that file.
 *
 * Security (docs/security.md): with --curve-secret and --authorized-keys
 * the ZAP handler (coord_zap.h) starts before the ROUTER binds, the ROUTER
 * is a CURVE server in ZAP domain "fedcomp", and every message goes to the
 * engine with its connection's User-Id (coord_engine_on_message_auth());
 * messages of keys no longer listed are dropped. SIGHUP re-reads the keys
 * and drops the devices whose key went (coord_engine_revoke()). Without
 * keys it runs in plaintext with a warning (the program insists on
 * --insecure). --max-msg-rate drops messages per routing id before they
 * are parsed (coord_ratelim.h); refusals and drops are counted in the
 * report rows.
 *
 * When training ends every device gets a Bye; then the loop keeps serving
 * until every TCP peer has disconnected (zmq_socket_monitor events), for
 * at most the round timeout clamped to [5 s, 30 s] (1 s after SIGINT or
 * SIGTERM; a second signal ends it at once), so that a worker that was
 * busy still reads its Bye, or gets another one in answer to its late
 * update, before the socket closes.
 *
 * The summary table goes to stdout (and summary.txt), per-round progress
 * lines to stderr.
 */
#ifndef COORD_SERVER_H
#define COORD_SERVER_H

#include "common/fl_err.h"
#include "coordinator/coord_config.h"
#include "coordinator/coord_engine.h"

/* Run the coordinator with cfg until it ends. *status is the engine's end
 * state (meaningful when FL_OK is returned). Returns FL_ERR_DATA (test set),
 * FL_ERR_ZMQ (socket, bind), FL_ERR_IO (report files), FL_ERR_NOMEM or
 * another setup error, each logged. */
enum fl_err coord_server_run(const struct coord_config *cfg,
                             enum coord_status *status);

/* Exit code for a run: 0 done or stopped, 3 no devices, 4 too many
 * attempts, 1 otherwise. */
int coord_exit_code(enum fl_err rc, enum coord_status status);

#endif /* COORD_SERVER_H */
