/*
 * coord_ckpt.h - the coordinator's checkpoint: everything a restarted
 * coordinator needs to continue a training run where the last closed
 * attempt left it (docs/checkpoint.md has the byte layout).
 *
 * One file, <state-dir>/checkpoint.bin, rewritten after every closed
 * attempt (committed or abandoned) and when the coordinator stops, with
 * fl_file_write_atomic() (temporary file, fsync, rename, directory fsync):
 * a crash leaves either the previous checkpoint or the new one, never a
 * mix. Little-endian, magic + format version, CRC-32 (zlib) of all the
 * bytes before it at the end; a file that fails any check is refused
 * (FL_ERR_CHECKSUM, FL_ERR_FORMAT, FL_ERR_VERSION, FL_ERR_TRUNCATED), never
 * half-used.
 *
 * The report files are append-only; the checkpoint records their byte
 * lengths right after the attempt's rows were written and fsync'd. A
 * resume first truncates them to those lengths, so rows written after the
 * checkpoint (the round that was open at a crash, a torn last line) are
 * removed and written again when that round runs again: no row is lost,
 * torn or duplicated.
 *
 * Pointers in struct coord_ckpt are borrowed when the caller fills it for
 * saving (the engine's memory), and point into `owned` after a load
 * (coord_ckpt_release() frees them). Not thread-safe; no logging.
 */
#ifndef COORD_CKPT_H
#define COORD_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "common/fl_util.h"
#include "coordinator/coord_config.h"
#include "coordinator/coord_devtab.h"
#include "coordinator/coord_report.h"
#include "model/mdl_trainer.h"

#define COORD_CKPT_FILE "checkpoint.bin"
#define COORD_CKPT_VERSION 1u

/* The report files whose lengths a checkpoint records, in this order. */
enum coord_report_file {
    COORD_RF_ROUNDS_CSV = 0,
    COORD_RF_ROUNDS_JSONL = 1,
    COORD_RF_DEVICES_CSV = 2,
    COORD_RF_COUNT = 3
};

/* "rounds.csv", "rounds.jsonl", "devices.csv" (as coord_report names
 * them). */
extern const char *const coord_ckpt_report_names[COORD_RF_COUNT];

/* What the coordinator remembers of a device across a restart: the fate of
 * its last update (so the next Task can tell it) and its totals. */
struct coord_ckpt_device {
    char id[COORD_ID_MAX + 1];
    uint32_t last_status;        /* enum pb_update_status value, 0 = none */
    uint64_t last_round;
    uint32_t n_used;
    uint32_t n_rejected;
    uint32_t n_late;
    uint64_t total_up_bytes;
    uint64_t total_down_bytes;
};

struct coord_ckpt {
    /* identity: a resume with settings that change these is refused */
    uint64_t dim;                /* parameters */
    uint32_t layout_crc;         /* coord_ckpt_layout_crc() */
    uint64_t seed;               /* --seed */
    /* where the run stands */
    uint64_t epoch;              /* epoch of the run that wrote it */
    uint64_t next_round;         /* round to run next (rounds + 1: done) */
    uint32_t next_attempt;       /* its attempt number, 1-based */
    uint64_t model_version;      /* version of params */
    struct fl_rng rng;           /* cohort RNG */
    bool has_reports;            /* report_len is meaningful */
    uint64_t report_len[COORD_RF_COUNT];
    /* totals for the summary (rounds_total, wall_s, cpu_s and outcome are
     * not stored: they belong to one process) */
    struct coord_summary sum;
    uint32_t ndevices;
    const struct coord_ckpt_device *devices;
    const float *params;         /* dim floats: the global model */
    const float *momentum;       /* dim floats, NULL: no server momentum */
    void *owned;                 /* after a load: the block behind them */
};

/* CRC-32 over the layout's tensor names, offsets and shapes: two layouts
 * with the same CRC are (almost certainly) the same architecture. */
uint32_t coord_ckpt_layout_crc(const struct mdl_layout *layout);

/* Bytes of the encoded checkpoint. */
size_t coord_ckpt_size(const struct coord_ckpt *ck);

/* Encode into buf (cap >= coord_ckpt_size()). FL_ERR_INVALID_ARG (no
 * params, dim 0, devices missing), FL_ERR_TOO_LARGE (cap too small). */
enum fl_err coord_ckpt_encode(const struct coord_ckpt *ck, uint8_t *buf,
                              size_t cap, size_t *len);

/* Decode and check a whole file image. On success *out is complete and
 * owns a copy of the arrays (coord_ckpt_release()); on failure *out is
 * zeroed and owns nothing. FL_ERR_TRUNCATED (shorter than the header or
 * than the sizes it declares), FL_ERR_FORMAT (magic, trailing bytes,
 * bad values), FL_ERR_VERSION, FL_ERR_CHECKSUM, FL_ERR_NONFINITE
 * (a parameter is NaN/Inf), FL_ERR_NOMEM. */
enum fl_err coord_ckpt_decode(const uint8_t *buf, size_t len,
                              struct coord_ckpt *out);

/* Free what a load allocated and zero *ck; accepts a zeroed struct. */
void coord_ckpt_release(struct coord_ckpt *ck);

/* Write dir/checkpoint.bin atomically (dir must exist). FL_ERR_IO (errno
 * set), FL_ERR_NOMEM, or an encode error; the old file is kept then. */
enum fl_err coord_ckpt_save(const char *dir, const struct coord_ckpt *ck);

/* Read and decode dir/checkpoint.bin. FL_ERR_NOT_FOUND when there is
 * none, FL_ERR_IO, or a decode error. */
enum fl_err coord_ckpt_load(const char *dir, struct coord_ckpt *out);

/* Can a run with cfg and layout continue from ck? FL_ERR_INVALID_ARG with
 * a one-line message in err naming what differs (dimension, layout, seed,
 * server momentum on/off). */
enum fl_err coord_ckpt_check(const struct coord_ckpt *ck,
                             const struct coord_config *cfg,
                             const struct mdl_layout *layout, char *err,
                             size_t errlen);

/* Current byte lengths of the report files in dir (a missing file has
 * length 0). FL_ERR_IO (errno set) when one cannot be examined. */
enum fl_err coord_ckpt_report_lengths(const char *dir,
                                      uint64_t len[COORD_RF_COUNT]);

/* Cut each report file in dir back to len[] (and fsync it). A file that is
 * shorter than its recorded length (or missing while the length is not 0)
 * means these are not the reports the checkpoint was written with:
 * FL_ERR_TRUNCATED, message in err, nothing changed. *cut (may be NULL)
 * gets the number of bytes removed in total. FL_ERR_IO on a system error. */
enum fl_err coord_ckpt_truncate_reports(const char *dir,
                                        const uint64_t len[COORD_RF_COUNT],
                                        uint64_t *cut, char *err,
                                        size_t errlen);

#endif /* COORD_CKPT_H */
