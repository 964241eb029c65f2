/* split_argv.h - a command line for the unit tests of flag parsers. */
#ifndef FEDCOMP_TESTS_SPLIT_ARGV_H
#define FEDCOMP_TESTS_SPLIT_ARGV_H

#include <stddef.h>

/* argv = prog, then the words of line (split on spaces, no quoting), then
 * NULL; the words are written into buf (cap bytes). At most max entries
 * including the NULL: more words, or a line that does not fit buf, fail
 * the running cmocka test. Returns argc. */
int ta_split(const char *prog, const char *line, char *buf, size_t cap,
             char **argv, int max);

#endif
