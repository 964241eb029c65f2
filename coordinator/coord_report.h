/*
 * coord_report.h - the coordinator's communication report.
 *
 * Files in the report directory (docs/coordinator.md has every column):
 *   rounds.csv    one row per round attempt (committed or abandoned),
 *                 appended, flushed and fsync'd when the attempt closes
 *   rounds.jsonl  the same rows as JSON objects, plus "rejects":
 *                 {reason_name: count}
 *   devices.csv   one row per cohort member per attempt (+ a "late" row
 *                 when a late update arrives), fsync'd with each round
 *   summary.txt   the final summary table (atomic write)
 *   initial_acc   accuracy of the initial model (one number)
 * Existing files are appended to; a CSV header is written only into an
 * empty file. Without a directory nothing is written, but the summary and
 * progress lines still work.
 *
 * Doubles that are "empty" (abandoned attempt: no accuracy) are NAN; they
 * are written as an empty CSV field and JSON null.
 * Not thread-safe; the coordinator's loop is the only user.
 */
#ifndef COORD_REPORT_H
#define COORD_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/fl_err.h"
#include "compress/cmp_types.h"

struct coord_report;

struct coord_round_row {
    uint64_t round;
    uint32_t attempt;            /* 1-based */
    bool committed;              /* false: abandoned (accuracy empty) */
    uint32_t joined;             /* devices connected when it opened */
    uint32_t selected;           /* cohort size */
    uint32_t reported;           /* cohort members with an accepted update */
    uint32_t dropped;            /* cohort members without any update */
    uint32_t rejected;           /* cohort members whose update was refused */
    uint32_t late;               /* late updates received in this attempt */
    uint64_t up_wire_bytes;      /* frames of accepted updates */
    uint64_t up_dense_bytes;     /* dimension * 4 per accepted update */
    uint64_t other_rx_bytes;     /* everything else received */
    uint64_t down_wire_bytes;    /* every frame sent successfully */
    uint64_t down_dense_bytes;   /* dimension * 4 per Task sent */
    double density;              /* requested density of the round */
    enum cmp_value_coding values;
    enum cmp_codec codec;
    int level;
    double wall_s;               /* open .. row written (incl. eval) */
    double cpu_s;                /* coordinator CPU over the same span */
    double agg_s;                /* decode + aggregate + commit */
    double test_acc;             /* NAN when not evaluated */
    double test_loss;            /* NAN when not evaluated */
    uint32_t rejects[FL_ERR__MAX]; /* Rejects sent, by enum fl_err value;
                                    * FL_ERR_IGNORED counts every message
                                    * of a penalised device dropped */
    /* hostile input (rounds.jsonl only; coord_guard.h) */
    uint32_t disconnects;        /* TCP peers gone or failed handshakes:
                                  * a frame over --max-message is one cause */
    uint32_t multipart;          /* messages of several frames dropped */
    uint32_t weight_capped;      /* updates whose weight the share cap cut */
    double norm_bound;           /* update norm bound in force; <= 0 or
                                  * NAN: none */
    /* admission (rounds.jsonl only; docs/security.md) */
    uint64_t refused_handshakes; /* CURVE handshakes the ZAP handler refused */
    uint64_t rate_limited;       /* messages dropped by --max-msg-rate */
    /* byte budget (rounds.jsonl only; docs/tuning.md) */
    uint64_t uplink_budget;      /* --uplink-budget, 0 = off */
    uint32_t over_budget;        /* updates over their device's cap */
};

enum coord_dev_status {
    COORD_DEV_REPORTED = 0,
    COORD_DEV_DROPPED = 1,
    COORD_DEV_REJECTED = 2,
    COORD_DEV_LATE = 3
};

struct coord_device_row {
    uint64_t round;
    uint32_t attempt;            /* 0 = unknown (late rows) */
    const char *device;
    enum coord_dev_status status;
    uint64_t samples;            /* 0 = empty */
    uint64_t up_bytes;
    uint64_t down_bytes;
    bool has_update;             /* k .. loss below are meaningful */
    uint64_t k;
    double density;              /* k / dimension */
    enum cmp_value_coding values;
    enum cmp_codec codec;
    uint32_t train_ms;
    uint32_t encode_ms;
    double upload_ms;
    double loss;                 /* NAN when the worker sent none */
    uint64_t budget;             /* cap sent in the Task; 0 = none (empty) */
    uint32_t load_ms;            /* the worker's: with has_update */
    uint64_t peak_rss_kb;        /* the worker's; 0 = not sent (empty) */
};

struct coord_summary {
    uint64_t rounds_done;        /* committed rounds */
    uint64_t rounds_total;       /* rounds asked for */
    uint64_t attempts;           /* attempts including abandoned ones */
    uint64_t up_wire_bytes;
    uint64_t up_dense_bytes;
    uint64_t other_rx_bytes;
    uint64_t down_wire_bytes;
    uint64_t down_dense_bytes;
    uint64_t updates_used;
    uint64_t updates_rejected;
    uint64_t updates_late;
    uint64_t send_failures;      /* sends refused (peer gone or not reading) */
    uint64_t refused_handshakes; /* CURVE handshakes refused (ZAP 400) */
    uint64_t rate_limited;       /* messages dropped by the rate limit */
    double initial_acc;          /* NAN when unknown */
    double final_acc;            /* NAN when no round committed */
    double final_loss;
    double wall_s;
    double cpu_s;
    const char *outcome;         /* "completed", "interrupted", ... */
};

/* Open (create) the report files in dir, which is created if missing; dir
 * NULL means no files. Caller owns *out (coord_report_close()).
 * FL_ERR_IO (errno set; the failing path in err) or FL_ERR_NOMEM. */
enum fl_err coord_report_open(const char *dir, struct coord_report **out,
                              char *err, size_t errlen);

/* Flush, fsync and close the files; accepts NULL and pointer to NULL. */
void coord_report_close(struct coord_report **rp);

/* Append one round row to rounds.csv and rounds.jsonl, flush and fsync
 * both (and devices.csv). FL_ERR_IO when a write fails. */
enum fl_err coord_report_round(struct coord_report *r,
                               const struct coord_round_row *row);

/* Append one device row to devices.csv (flushed with the next round row
 * or by coord_report_sync()). */
enum fl_err coord_report_device(struct coord_report *r,
                                const struct coord_device_row *row);

/* Flush and fsync every open file. */
enum fl_err coord_report_sync(struct coord_report *r);

/* Write initial_acc (atomically). No-op without a directory. */
enum fl_err coord_report_initial(struct coord_report *r, double acc);

/* Print the summary table to out (may be NULL) and write summary.txt. */
enum fl_err coord_report_summary(struct coord_report *r,
                                 const struct coord_summary *s, FILE *out);

/* The one-line progress text of a row (no newline), e.g.
 * "round 3/20: 8/8 reported, up 123.4 KiB (x85.2 vs dense), down 1.2 MiB,
 *  acc 0.7812, loss 0.6021, 4.21 s". */
void coord_report_progress(const struct coord_round_row *row,
                           uint64_t rounds_total, char *buf, size_t len);

/* "123 B", "1.2 KiB", "3.4 MiB", "5.6 GiB" into buf. */
void coord_format_bytes(uint64_t bytes, char *buf, size_t len);

/* Name of a device status ("reported", "dropped", "rejected", "late"). */
const char *coord_dev_status_name(enum coord_dev_status s);

/* The CSV headers, for tests and docs. */
extern const char coord_rounds_csv_header[];
extern const char coord_devices_csv_header[];

#endif /* COORD_REPORT_H */
