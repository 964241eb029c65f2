/*
 * coord_metrics.h - the coordinator's Prometheus metrics.
 *
 * A struct coord_metrics holds counters, gauges and one histogram. The
 * coordinator's loop (the engine and the server) updates them through the
 * hook functions below; coord_metrics_listen() serves them as
 * `GET /metrics` in the Prometheus text exposition format (version 0.0.4)
 * from libmicrohttpd's own thread (MHD_USE_INTERNAL_POLLING_THREAD).
 *
 * Thread-safety: one mutex guards the values. The loop holds it for a few
 * additions per hook; the HTTP thread holds it only to copy the values
 * (a struct copy of about 1 KiB) and formats the copy after unlocking, so
 * a slow or stalled scraper never holds up the poll loop. Every hook
 * accepts m == NULL and then does nothing, so the engine can run without
 * metrics (unit tests, --metrics-bind not given).
 *
 * Metrics (docs/coordinator.md has the table):
 *   fedcomp_rounds_completed_total          counter, committed rounds
 *   fedcomp_round_attempts_abandoned_total  counter
 *   fedcomp_round                           gauge, open or next round
 *   fedcomp_devices_connected               gauge
 *   fedcomp_updates_received_total          counter, Update messages
 *   fedcomp_updates_rejected_total{reason}  counter, not used updates
 *   fedcomp_bytes_up_wire_total             counter, accepted updates
 *   fedcomp_bytes_up_dense_total            counter, dimension*4 each
 *   fedcomp_bytes_down_wire_total           counter, frames sent
 *   fedcomp_bytes_down_dense_total          counter, dimension*4 per Task
 *   fedcomp_uplink_compression_ratio        gauge, dense / wire (NaN: none)
 *   fedcomp_round_duration_seconds          histogram, committed rounds
 *   fedcomp_test_accuracy, fedcomp_test_loss gauges (NaN: no round yet)
 * The byte counters count what the report's rounds rows count, so their
 * values equal the sums of the columns of the rows written so far (plus
 * the round that is open).
 */
#ifndef COORD_METRICS_H
#define COORD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "coordinator/coord_report.h"

/* Upper bounds of the round-duration buckets, in seconds (+Inf implied). */
#define COORD_METRICS_BUCKETS 12

struct coord_metrics;

/* A new set of metrics, all zero (accuracy and loss NaN), not served yet.
 * Caller owns *out (coord_metrics_destroy()). FL_ERR_NOMEM. */
enum fl_err coord_metrics_new(struct coord_metrics **out);

/* Stop the HTTP server (if any; waits for its thread) and free. Accepts
 * NULL and a pointer to NULL; sets *mp to NULL. */
void coord_metrics_destroy(struct coord_metrics **mp);

/* Serve GET /metrics on bind: "HOST:PORT", "[V6ADDR]:PORT" or ":PORT"
 * (every interface); PORT 0 picks a free port. *port gets the port really
 * bound. Other paths get 404, other methods 405. The HTTP thread blocks
 * SIGINT/SIGTERM/SIGHUP so that they reach the poll loop. A port in use
 * is an error (no SO_REUSEPORT). Returns
 * FL_ERR_INVALID_ARG (bad address; message in err), FL_ERR_IO (cannot
 * bind: in use, not local...; message in err) or FL_ERR_BAD_STATE when
 * already listening. */
enum fl_err coord_metrics_listen(struct coord_metrics *m, const char *bind,
                                 uint16_t *port, char *err, size_t errlen);

/* ---- hooks: called from the coordinator's loop (any one thread) */

/* The open (or next) round and the devices connected now. */
void coord_metrics_set_state(struct coord_metrics *m, uint64_t round,
                             size_t devices);

/* An Update message was handled with result rc: FL_OK counts wire_bytes
 * and dense_bytes up; anything else counts a rejection with reason
 * fl_err_name(rc). */
void coord_metrics_on_update(struct coord_metrics *m, enum fl_err rc,
                             uint64_t wire_bytes, uint64_t dense_bytes);

/* Bytes sent down: a frame (wire) or the dense size of a Task's model. */
void coord_metrics_add_down(struct coord_metrics *m, uint64_t wire_bytes,
                            uint64_t dense_bytes);

/* An attempt closed with this row: a committed one counts a round, its
 * wall time goes into the histogram, its accuracy and loss become the
 * gauges; an abandoned one counts an abandoned attempt. */
void coord_metrics_on_round(struct coord_metrics *m,
                            const struct coord_round_row *row);

/* ---- output */

/* The exposition text of the current values into *out (caller frees with
 * free()), *len bytes, NUL-terminated. FL_ERR_NOMEM. Thread-safe. */
enum fl_err coord_metrics_render(struct coord_metrics *m, char **out,
                                 size_t *len);

/* The bucket bounds (COORD_METRICS_BUCKETS of them, increasing). */
const double *coord_metrics_buckets(void);

#endif /* COORD_METRICS_H */
