/*
 * fl_flags.h - command-line values with the programs' usage messages.
 *
 * Each function parses one flag's value strictly (fl_util's parsers) and,
 * when it does not fit, writes a one-line message naming the flag into err
 * ("--rounds: 'ten' is not a whole number") and returns
 * FL_ERR_INVALID_ARG. *out is written only on success. err may be NULL.
 * Shared by the coordinator's and the swarm's option parsing.
 */
#ifndef FL_FLAGS_H
#define FL_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"

/* Format a usage message into err; always FL_ERR_INVALID_ARG. */
enum fl_err fl_flag_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A whole number in [min, max]. */
enum fl_err fl_flag_u64(const char *flag, const char *s, uint64_t min,
                        uint64_t max, uint64_t *out, char *err,
                        size_t errlen);
enum fl_err fl_flag_u32(const char *flag, const char *s, uint32_t min,
                        uint32_t max, uint32_t *out, char *err,
                        size_t errlen);

/* A number in [min, max]; with open_min, min itself is refused. */
enum fl_err fl_flag_double(const char *flag, const char *s, double min,
                           double max, bool open_min, double *out,
                           char *err, size_t errlen);

/* Bytes with an optional K, M or G suffix (powers of 1024), in
 * [min, max]. */
enum fl_err fl_flag_bytes(const char *flag, const char *s, uint64_t min,
                          uint64_t max, size_t *out, char *err,
                          size_t errlen);

/* on|1|yes or off|0|no. */
enum fl_err fl_flag_onoff(const char *flag, const char *s, bool *out,
                          char *err, size_t errlen);

#endif /* FL_FLAGS_H */
