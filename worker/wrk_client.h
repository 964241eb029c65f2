/*
 * wrk_client.h - the worker's life: join the coordinator, and for every Task
 * apply the model, train on the shard, send a compressed update; learn the
 * fate of each update and restore unused ones into the residual.
 *
 * One DEALER socket (docs/protocol.md), without ZMQ_IMMEDIATE: with it
 * libzmq drops the pipe at once when the connection goes, and a Bye that
 * arrived just before the coordinator exited would be lost unread
 * (docs/scale.md); a socket monitor says Hello again as soon as a
 * (re)connection completes its handshake; Hello is also repeated with
 * back-off (1 s doubling to 8 s) until a Welcome arrives. A Task or Welcome
 * with another epoch means the coordinator restarted: Hello again.
 * Payloads over the Welcome's chunk size travel as chunked transfers both
 * ways (docs/protocol.md "Transfers", worker/wrk_xfer.h).
 *
 * Single-threaded; one client per process (the stop flag is global so
 * that a signal handler can set it).
 */
#ifndef WRK_CLIENT_H
#define WRK_CLIENT_H

#include "common/fl_err.h"
#include "worker/wrk_config.h"

/* Exit codes of the worker program. */
enum wrk_exit {
    WRK_EXIT_OK = 0,          /* Bye from the coordinator, or a signal */
    WRK_EXIT_ERROR = 1,       /* setup failed, unusable model, fatal reject */
    WRK_EXIT_USAGE = 2,       /* bad command line */
    WRK_EXIT_NO_WELCOME = 3   /* no Welcome within --hello-timeout */
};

struct wrk_client;

/* Load the shard and open the socket. cfg (with the device id settled,
 * wrk_config_device_id()) must outlive the client. Logs what it loaded.
 * Caller owns *out; free with wrk_client_destroy(). */
enum fl_err wrk_client_new(const struct wrk_config *cfg,
                           struct wrk_client **out);

/* Run until Bye, a stop request or a fatal error; returns an enum
 * wrk_exit value. */
int wrk_client_run(struct wrk_client *c);

/* Close the socket (linger 1 s) and free everything; accepts NULL. */
void wrk_client_destroy(struct wrk_client **cp);

/* Ask the running client to say Bye and return. Async-signal-safe. */
void wrk_client_request_stop(void);

#endif /* WRK_CLIENT_H */
