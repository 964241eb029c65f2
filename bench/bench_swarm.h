/*
 * bench_swarm.h - fedcomp-swarm: thousands of simulated devices that speak
 * the real protocol (docs/protocol.md) to one coordinator, for scale tests.
 *
 * The swarm forks P processes (default ceil(N / 4000)); each has its own
 * ZeroMQ context and plays its share of the N devices, one DEALER socket
 * per device with its own device id ("<prefix>-<global index>"). One
 * event loop per process: epoll on every socket's ZMQ_FD (edge-triggered),
 * and after each wake-up the socket's ZMQ_EVENTS is drained until it shows
 * no more POLLIN (the descriptor is only a hint). Sends never block: a
 * device keeps a small queue of what it could not send yet (EAGAIN) and
 * flushes it when ZMQ_EVENTS shows POLLOUT.
 *
 * Like a worker, a device watches its connection (a socket monitor for
 * HANDSHAKE_SUCCEEDED and DISCONNECTED): when libzmq reconnects it after a
 * drop, the coordinator knows the new connection under a new routing id
 * only after a Hello, and a Task queued on the old connection is lost, so
 * the device says Hello again (and answers the Task sent again).
 *
 * Each device says Hello, takes the dimension from Welcome, answers every
 * Task with an Update carrying a valid compressed sparse update of the
 * Task's dimension, density and codings. The updates are precomputed per
 * process (cmp_topk_select + cmp_sparse_encode on Gaussian data; a few
 * distinct ones, the same set in every process for a given --seed) and
 * packed into an Update envelope per send. The model in each Task is
 * checked: a full model is decoded once per version per process into one
 * shared buffer, an XOR delta is applied to that buffer when its base is
 * the buffer's version; a Task whose model was already checked is matched
 * by checksum and size. Each device tracks its own held version; a delta
 * against a version the device does not hold is an error.
 *
 * Chunked transfers (docs/protocol.md "Transfers"): the chunk geometry
 * comes from Welcome. A Task whose model (or model_delta) payload is
 * announced is answered only once its transfer is complete: each Chunk is
 * checked against the announcement with the pb_xfer arithmetic (next seq,
 * total, length; anything else ends the transfer with FL_ERR_TRANSFER and
 * a Credit{cancel}) and credited (Credit{transfer, received} after every
 * chunk). The bytes are not kept per device: each process reassembles one
 * copy per model content (the transfer id names the content, so all its
 * devices get the same bytes), decodes it like an inline model, and
 * compares every other device's chunks with it byte for byte (at most a
 * few payloads per process, not one per device). A newer Task replaces a
 * transfer in progress (its Task counts as "replaced", not unanswered).
 * An Update payload over chunk_bytes is announced; its chunks follow the
 * coordinator's Credit{received = 0}, within the window, each one sent
 * from the shared precomputed update. Counts of chunks, credits and
 * transfers (both directions) are in the summary and the JSON report.
 *
 * Children report through a shared anonymous mapping; the parent adds
 * them up, prints the summary and the verdict, and writes the JSON report.
 *
 * Ownership: struct bench_swarm_config is plain data whose strings point
 * into argv (or static defaults). Not thread-safe (getopt, signals).
 */
#ifndef BENCH_SWARM_H
#define BENCH_SWARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/fl_err.h"
#include "common/fl_log.h"
#include "compress/cmp_types.h"

#define BENCH_SWARM_VERSION "0.1.0"
#define BENCH_SWARM_PROGRAM "fedcomp-swarm"
/* devices per process when --procs is not given */
#define BENCH_SWARM_PER_PROC 4000
/* distinct precomputed updates per process, at most */
#define BENCH_SWARM_MAX_DISTINCT 16
/* rounds tracked one by one; later rounds share the last slot */
#define BENCH_SWARM_MAX_ROUNDS 1024
/* longest --id-prefix (ids are at most 64 characters) */
#define BENCH_SWARM_MAX_PREFIX 48

enum bench_swarm_action {
    BENCH_SWARM_RUN = 0,
    BENCH_SWARM_HELP = 1,
    BENCH_SWARM_VERSION_ACTION = 2
};

struct bench_swarm_config {
    const char *connect;          /* coordinator endpoint */
    uint32_t devices;             /* N */
    uint32_t procs;               /* 0 = ceil(N / BENCH_SWARM_PER_PROC) */
    uint64_t dimension;           /* 0 = from Welcome; else checked */
    double density;               /* until a Task says otherwise */
    enum cmp_value_coding values; /* idem */
    enum cmp_codec codec;         /* idem */
    int level;                    /* zstd level */
    uint64_t samples;             /* n_samples in Hello and Update */
    uint32_t think_ms;            /* delay before answering a Task */
    uint32_t jitter_ms;           /* + uniform [0, jitter] */
    double vanish;                /* share of devices vanishing per Task */
    int64_t vanish_ms;            /* reconnect delay; < 0 = task timeout
                                   * + 250 ms (the round has closed) */
    const char *id_prefix;        /* device ids are PREFIX-INDEX */
    uint64_t rounds_expected;     /* 0 = until Bye */
    double max_seconds;           /* whole run; 0 = no limit */
    uint32_t connect_batch;       /* sockets connected per loop pass */
    uint32_t io_threads;          /* ZeroMQ I/O threads per process */
    uint32_t hello_retry_ms;      /* first Hello retry; doubles to 8x */
    uint32_t distinct;            /* precomputed updates per process */
    bool monitor;                 /* watch each connection with a socket
                                   * monitor and say Hello again after a
                                   * reconnect, as a worker does (two more
                                   * sockets and descriptors per device) */
    uint64_t seed;
    const char *report;           /* JSON summary file; NULL = none */
    enum fl_log_level log_level;
};

/* Fill cfg with the defaults shown by --help. */
void bench_swarm_config_defaults(struct bench_swarm_config *cfg);

/* Parse argv over cfg (defaults first) and validate. *action tells main
 * what to do. FL_ERR_INVALID_ARG with a one-line message in err. */
enum fl_err bench_swarm_config_parse(struct bench_swarm_config *cfg,
                                     int argc, char **argv,
                                     enum bench_swarm_action *action,
                                     char *err, size_t errlen);

void bench_swarm_usage(FILE *out);

/* Processes to use and the descriptors one of them needs: *procs is
 * cfg->procs or ceil(devices / BENCH_SWARM_PER_PROC), never more than
 * devices; *fds_per_proc is the estimate for the largest share (two per
 * device, four with cfg->monitor, plus a margin). */
void bench_swarm_plan(const struct bench_swarm_config *cfg, uint32_t *procs,
                      uint64_t *fds_per_proc);

/* Run the swarm to the end (every device got Bye, --rounds-expected
 * reached, --max-seconds passed or a signal). Prints the summary and the
 * verdict to out, writes cfg->report. Returns the process exit code:
 * 0 when every device joined and every Task that was received by a device
 * that did not vanish was answered (no rejects, no bad model); 1 when the
 * run ended but the verdict is negative; 2 on a setup error (the message
 * is logged), e.g. not enough descriptors for the devices per process. */
int bench_swarm_run(const struct bench_swarm_config *cfg, FILE *out);

#endif /* BENCH_SWARM_H */
