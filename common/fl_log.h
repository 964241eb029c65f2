/*
 * fl_log.h - one logging macro for every program.
 *
 * fl_log(level, fmt, ...) writes one line to the log stream (stderr by
 * default) when level >= the current threshold, and returns *before*
 * evaluating its arguments otherwise. Lines look like
 *   2026-11-25T13:00:00.123Z coordinator[1234] info: round 3 opened
 * or, with FL_LOG_JSON, one JSON object per line.
 * Libraries (compress/, proto/, model/) do not log: they return errors.
 * Not thread-safe to reconfigure; logging itself is one fprintf per line.
 */
#ifndef FL_LOG_H
#define FL_LOG_H

#include <stdio.h>

enum fl_log_level {
    FL_LOG_DEBUG = 0,
    FL_LOG_INFO = 1,
    FL_LOG_NOTICE = 2,
    FL_LOG_WARN = 3,
    FL_LOG_ERR = 4,
    FL_LOG_OFF = 5
};

enum fl_log_format { FL_LOG_TEXT = 0, FL_LOG_JSON = 1 };

extern enum fl_log_level fl_log_threshold;

/* Set the identity printed on each line (e.g. "worker"); the string is
 * copied. Stream NULL means stderr. */
void fl_log_init(const char *ident, FILE *stream);
void fl_log_set_level(enum fl_log_level level);
void fl_log_set_format(enum fl_log_format format);

/* Parse "debug|info|notice|warn|err"; returns -1 when unknown. */
int fl_log_level_parse(const char *s);

void fl_log_write(enum fl_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define fl_log(level, ...)                                                     \
    do {                                                                       \
        if ((level) >= fl_log_threshold)                                       \
            fl_log_write((level), __VA_ARGS__);                                \
    } while (0)

#endif /* FL_LOG_H */
