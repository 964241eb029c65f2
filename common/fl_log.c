#define _POSIX_C_SOURCE 200809L
#include "common/fl_log.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum fl_log_level fl_log_threshold = FL_LOG_INFO;

static char log_ident[32] = "fedcomp";
static FILE *log_stream;
static enum fl_log_format log_format = FL_LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "notice", "warn",
                                          "err"};

void fl_log_init(const char *ident, FILE *stream)
{
    if (ident != NULL)
        snprintf(log_ident, sizeof(log_ident), "%s", ident);
    log_stream = stream;
}

void fl_log_set_level(enum fl_log_level level) { fl_log_threshold = level; }

void fl_log_set_format(enum fl_log_format format) { log_format = format; }

int fl_log_level_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0]));
         i++) {
        if (strcmp(s, level_names[i]) == 0)
            return i;
    }
    if (strcmp(s, "off") == 0)
        return FL_LOG_OFF;
    return -1;
}

/* Escape a message for a JSON string value. */
static void json_put_escaped(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

void fl_log_write(enum fl_log_level level, const char *fmt, ...)
{
    FILE *const f = log_stream != NULL ? log_stream : stderr;
    char msg[1024];
    char stamp[40];
    struct timespec ts;
    struct tm tm;
    va_list ap;

    if (level < FL_LOG_DEBUG || level > FL_LOG_ERR)
        level = FL_LOG_ERR;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

    if (log_format == FL_LOG_JSON) {
        fprintf(f, "{\"ts\":\"%s.%03ldZ\",\"ident\":\"%s\",\"pid\":%ld,"
                   "\"level\":\"%s\",\"msg\":\"",
                stamp, ts.tv_nsec / 1000000, log_ident, (long)getpid(),
                level_names[level]);
        json_put_escaped(f, msg);
        fputs("\"}\n", f);
    } else {
        fprintf(f, "%s.%03ldZ %s[%ld] %s: %s\n", stamp, ts.tv_nsec / 1000000,
                log_ident, (long)getpid(), level_names[level], msg);
    }
    fflush(f);
}
