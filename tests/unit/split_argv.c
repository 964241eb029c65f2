/* split_argv.c - see split_argv.h. */
#include "tests/unit/split_argv.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>

#include <cmocka.h>

int ta_split(const char *prog, const char *line, char *buf, size_t cap,
             char **argv, int max)
{
    int argc = 0;
    const int n = snprintf(buf, cap, "%s %s", prog, line);
    assert_true(n >= 0 && (size_t)n < cap);
    for (char *p = buf; *p != '\0';) {
        while (*p == ' ')
            *p++ = '\0';
        if (*p == '\0')
            break;
        assert_true(argc < max - 1);
        argv[argc++] = p;
        while (*p != '\0' && *p != ' ')
            p++;
    }
    argv[argc] = NULL;
    return argc;
}
