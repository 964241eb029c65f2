/*
 * wrk_state.h - the worker's persistent update state: the error-feedback
 * residual, the momentum-correction velocity, the pending update (its
 * round, indices and sent values) and the model version held, in one file
 * <state-dir>/ef-state.bin (docs/checkpoint.md has the byte layout).
 *
 * The worker rewrites it with fl_file_write_atomic() before each update
 * goes out and whenever a fate changes the residual, so a
 * killed worker restarts with what it had before its current round: the
 * residual is kept, and a pending update learns its fate from the
 * coordinator as if nothing had happened (a restored NOT_USED update goes
 * back into the residual; the file on disk never has it twice). Cost per
 * save: about dim * 4 bytes (dim * 8 with momentum correction) plus 8 bytes
 * per pending entry, one fsync.
 *
 * Little-endian, magic + version, CRC-32 (zlib) at the end; a file that
 * fails a check is refused as a whole. Pointers in struct wrk_state are
 * borrowed for saving and point into `owned` after a load
 * (wrk_state_release()). Not thread-safe; no logging.
 */
#ifndef WRK_STATE_H
#define WRK_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "worker/wrk_update.h"

#define WRK_STATE_FILE "ef-state.bin"
#define WRK_STATE_VERSION 1u

struct wrk_state {
    uint64_t dim;                  /* floats of the residual */
    bool has_model_version;        /* a model was held when it was saved */
    uint64_t model_version;        /* (informational: the model itself is
                                      not saved, a restarted worker asks
                                      for the full model) */
    bool has_epoch;                /* a coordinator had welcomed it */
    uint64_t epoch;                /* that coordinator's epoch: another one
                                      at restart means the coordinator
                                      restarted too */
    struct wrk_update_state upd;   /* residual, velocity, pending update */
    void *owned;                   /* after a load: the block behind upd */
};

/* Bytes of the encoded state. */
size_t wrk_state_size(const struct wrk_state *s);

/* Encode into buf (cap >= wrk_state_size()). FL_ERR_INVALID_ARG (no
 * residual, dim 0, pending without entries), FL_ERR_TOO_LARGE (cap). */
enum fl_err wrk_state_encode(const struct wrk_state *s, uint8_t *buf,
                             size_t cap, size_t *len);

/* Decode and check a whole file image; on success *out owns copies
 * (wrk_state_release()), on failure it is zeroed. dims above max_dim are
 * refused (FL_ERR_TOO_LARGE). FL_ERR_TRUNCATED, FL_ERR_FORMAT (magic,
 * flags, sizes, trailing bytes), FL_ERR_VERSION, FL_ERR_CHECKSUM,
 * FL_ERR_INDEX_RANGE, FL_ERR_NONFINITE, FL_ERR_NOMEM. */
enum fl_err wrk_state_decode(const uint8_t *buf, size_t len, size_t max_dim,
                             struct wrk_state *out);

/* Free what a decode allocated and zero *s; accepts a zeroed struct. */
void wrk_state_release(struct wrk_state *s);

/* Encode into *buf (grown with fl_realloc() as needed, *cap its size;
 * the caller frees it with fl_free()) and write path atomically.
 * FL_ERR_IO (errno set), FL_ERR_NOMEM, or an encode error. */
enum fl_err wrk_state_save(const char *path, const struct wrk_state *s,
                           uint8_t **buf, size_t *cap);

/* Read and decode path. FL_ERR_NOT_FOUND when it does not exist. */
enum fl_err wrk_state_load(const char *path, size_t max_dim,
                           struct wrk_state *out);

/* The state of w as a struct wrk_state (views into w); the model version
 * and epoch are left unset for the caller. */
void wrk_state_of_update(const struct wrk_update *w, struct wrk_state *s);

#endif /* WRK_STATE_H */
