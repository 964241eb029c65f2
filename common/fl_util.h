/*
 * fl_util.h - small utilities every part of fedcomp shares: a seeded RNG,
 * clocks, strict number parsing and atomic file writes.
 * Everything here is reentrant; the RNG state is the caller's.
 */
#ifndef FL_UTIL_H
#define FL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"

#define FL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define FL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- RNG: xoshiro256** seeded through splitmix64; deterministic per seed.
 * The state is plain data, so it can be checkpointed by copying it. */
struct fl_rng {
    uint64_t s[4];
};

void fl_rng_seed(struct fl_rng *rng, uint64_t seed);
uint64_t fl_rng_next(struct fl_rng *rng);
/* Uniform in [0, bound) without modulo bias; bound > 0. */
uint64_t fl_rng_below(struct fl_rng *rng, uint64_t bound);
/* Uniform double in [0, 1). */
double fl_rng_uniform(struct fl_rng *rng);
/* Standard normal (Box-Muller). */
double fl_rng_normal(struct fl_rng *rng);
/* Gamma(shape, 1) (Marsaglia-Tsang; shape > 0). */
double fl_rng_gamma(struct fl_rng *rng, double shape);

/* ---- clocks */
uint64_t fl_now_ns(void);      /* CLOCK_MONOTONIC */
uint64_t fl_cpu_ns(void);      /* CLOCK_PROCESS_CPUTIME_ID */
double fl_wall_seconds(void);  /* CLOCK_REALTIME, for timestamps only */

/* ---- strict parsing: the whole string must be a number in range,
 * no trailing characters, no overflow. Return FL_ERR_FORMAT or
 * FL_ERR_INVALID_ARG (out of range). */
enum fl_err fl_parse_u64(const char *s, uint64_t min, uint64_t max,
                         uint64_t *out);
enum fl_err fl_parse_double(const char *s, double min, double max,
                            double *out);

/* ---- files */
/* Write [data, len] to `path` atomically: write a temporary file in the same
 * directory, fsync it, rename it over `path`, fsync the directory.
 * On failure `path` is unchanged and errno-based detail is in errno. */
enum fl_err fl_file_write_atomic(const char *path, const void *data,
                                 size_t len);
/* Read a whole file of at most max_len bytes. Caller owns *data (free()).
 * FL_ERR_NOT_FOUND when missing, FL_ERR_TOO_LARGE when over max_len. */
enum fl_err fl_file_read(const char *path, size_t max_len, void **data,
                         size_t *len);
/* mkdir -p with mode 0755 (0700 when private is non-zero). */
enum fl_err fl_mkdir_p(const char *path, int private_dir);

#endif /* FL_UTIL_H */
