/*
 * fl_flags.c - command-line values with usage messages (fl_flags.h).
 */
#include "common/fl_flags.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/fl_util.h"

enum fl_err fl_flag_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return FL_ERR_INVALID_ARG;
}

enum fl_err fl_flag_u64(const char *flag, const char *s, uint64_t min,
                        uint64_t max, uint64_t *out, char *err,
                        size_t errlen)
{
    const enum fl_err rc = fl_parse_u64(s, min, max, out);
    if (rc == FL_ERR_FORMAT)
        return fl_flag_err(err, errlen, "--%s: '%s' is not a whole number",
                           flag, s);
    if (rc != FL_OK)
        return fl_flag_err(err, errlen, "--%s: '%s' is not in [%llu, %llu]",
                           flag, s, (unsigned long long)min,
                           (unsigned long long)max);
    return FL_OK;
}

enum fl_err fl_flag_u32(const char *flag, const char *s, uint32_t min,
                        uint32_t max, uint32_t *out, char *err,
                        size_t errlen)
{
    uint64_t v = 0;
    FL_FORWARD_ERR(fl_flag_u64(flag, s, min, max, &v, err, errlen));
    *out = (uint32_t)v;
    return FL_OK;
}

enum fl_err fl_flag_double(const char *flag, const char *s, double min,
                           double max, bool open_min, double *out,
                           char *err, size_t errlen)
{
    double v = 0;
    const enum fl_err rc = fl_parse_double(s, min, max, &v);
    if (rc == FL_ERR_FORMAT)
        return fl_flag_err(err, errlen, "--%s: '%s' is not a number", flag,
                           s);
    if (rc != FL_OK || (open_min && v <= min))
        return fl_flag_err(err, errlen, "--%s: '%s' is not in %c%g, %g]",
                           flag, s, open_min ? '(' : '[', min, max);
    *out = v;
    return FL_OK;
}

enum fl_err fl_flag_bytes(const char *flag, const char *s, uint64_t min,
                          uint64_t max, size_t *out, char *err,
                          size_t errlen)
{
    char num[32];
    uint64_t mult = 1;
    uint64_t v = 0;
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(num))
        return fl_flag_err(err, errlen, "--%s: '%s' is not a size", flag, s);
    memcpy(num, s, n + 1);
    switch (num[n - 1]) {
    case 'k': case 'K': mult = 1024ULL; break;
    case 'm': case 'M': mult = 1024ULL * 1024; break;
    case 'g': case 'G': mult = 1024ULL * 1024 * 1024; break;
    default: break;
    }
    if (mult != 1)
        num[--n] = '\0';
    if (fl_parse_u64(num, 0, UINT64_MAX / mult, &v) != FL_OK ||
        v * mult < min || v * mult > max || v * mult > SIZE_MAX)
        return fl_flag_err(err, errlen,
                           "--%s: '%s' is not a size in [%llu, %llu] bytes",
                           flag, s, (unsigned long long)min,
                           (unsigned long long)max);
    *out = (size_t)(v * mult);
    return FL_OK;
}

enum fl_err fl_flag_onoff(const char *flag, const char *s, bool *out,
                          char *err, size_t errlen)
{
    if (strcmp(s, "on") == 0 || strcmp(s, "1") == 0 ||
        strcmp(s, "yes") == 0) {
        *out = true;
        return FL_OK;
    }
    if (strcmp(s, "off") == 0 || strcmp(s, "0") == 0 ||
        strcmp(s, "no") == 0) {
        *out = false;
        return FL_OK;
    }
    return fl_flag_err(err, errlen, "--%s: '%s' is not on or off", flag, s);
}
