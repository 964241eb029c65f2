/*
 * fl_config.h - configuration files for the programs.
 *
 * A file holds one `key = value` per line, keys being the programs' long
 * flag names without the dashes; '#' starts a comment; blank lines are
 * ignored; a flag without argument takes `true|on|yes|1` (set) or
 * `false|off|no|0` (line ignored). The file becomes command-line arguments
 * placed *before* the real ones, so flags given on the command line
 * override the file (the programs' option parsing is last-wins).
 *
 * Ownership: the argv built by fl_config_expand() is owned by the caller and
 * freed with fl_config_free_argv(); its strings are copies.
 */
#ifndef FL_CONFIG_H
#define FL_CONFIG_H

#include <getopt.h>
#include <stddef.h>

#include "common/fl_err.h"

/* Look for `--config FILE` or `--config=FILE` in argv. If present, read the
 * file, check every key against longopts (the program's table; "config"
 * itself is not allowed inside the file) and build a new argv:
 *   argv[0], the file's options, the original argv[1..] minus --config.
 * If absent, *out_argv is a plain copy. On error err gets a one-line message
 * naming the file and line ("'/etc/x.conf' line 7: unknown key 'bnid'"):
 * FL_ERR_NOT_FOUND / FL_ERR_IO for the file, FL_ERR_FORMAT for a bad line
 * or unknown key, FL_ERR_INVALID_ARG for a missing FILE after --config. */
enum fl_err fl_config_expand(int argc, char *const *argv,
                             const struct option *longopts, int *out_argc,
                             char ***out_argv, char *err, size_t errlen);

void fl_config_free_argv(int argc, char **argv);

#endif /* FL_CONFIG_H */
