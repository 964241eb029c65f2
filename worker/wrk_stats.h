/*
 * wrk_stats.h - what one round costs the device: time to load the model,
 * to train, to encode (compress) the update and to send it, the update's
 * bytes and chunks, and the peak resident memory. The worker logs one line
 * per round and, with --stats-csv FILE, appends one CSV row per round
 * (docs/worker.md "Cost per round"):
 *
 *   round,load_ms,train_ms,encode_ms,send_ms,update_bytes,chunks,peak_rss_kb
 *
 * Times are written in milliseconds with three decimals (measured in ns).
 * No sockets; writing a row is one fprintf + fflush. Not thread-safe.
 */
#ifndef WRK_STATS_H
#define WRK_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/fl_err.h"

#define WRK_STATS_HEADER                                                       \
    "round,load_ms,train_ms,encode_ms,send_ms,update_bytes,chunks,"            \
    "peak_rss_kb"

struct wrk_round_cost {
    uint64_t round;
    uint64_t load_ns;         /* apply the Task's model (decode) */
    uint64_t train_ns;        /* local training */
    uint64_t encode_ns;       /* top-k, quantize, encode, compress */
    uint64_t send_ns;         /* first byte of the Update handed to ZeroMQ
                                 .. last chunk handed over (or the send) */
    uint64_t update_bytes;    /* frames handed over: Update (+ chunks) */
    uint32_t chunks;          /* Chunk frames (0: inline) */
    uint64_t peak_rss_kb;     /* getrusage ru_maxrss */
};

/* Open path for appending (created mode 0644 if missing); the header line
 * is written when the file is empty. Caller owns *out: wrk_stats_close().
 * FL_ERR_IO with errno set. */
enum fl_err wrk_stats_open(const char *path, FILE **out);

/* Append one row and flush. FL_ERR_IO when the write fails. */
enum fl_err wrk_stats_write(FILE *f, const struct wrk_round_cost *cost);

/* Close and set *fp to NULL; accepts NULL and a pointer to NULL. */
void wrk_stats_close(FILE **fp);

/* The round as one log phrase ("load 1.250 ms, train ..."), into buf. */
void wrk_stats_format(const struct wrk_round_cost *cost, char *buf,
                      size_t cap);

/* Peak resident set of this process in KiB (getrusage), 0 if unknown. */
uint64_t wrk_stats_peak_rss_kb(void);

/* Resident set of this process now in KiB (/proc/self/statm), 0 if
 * unknown. */
uint64_t wrk_stats_rss_kb(void);

#endif /* WRK_STATS_H */
