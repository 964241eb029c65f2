/*
 * fedcomp-coordinator: parse the flags, set up logging, run the server.
 * Exit codes: 0 ok, 1 runtime error, 2 usage, 3 not enough devices in
 * time, 4 too many failed attempts of a round.
 */
#include <stdio.h>

#include "common/fl_log.h"
#include "coordinator/coord_config.h"
#include "coordinator/coord_server.h"

int main(int argc, char **argv)
{
    struct coord_config cfg;
    enum coord_action action;
    enum coord_status status = COORD_FAILED;
    char err[512];

    coord_config_defaults(&cfg);
    if (coord_config_parse(&cfg, argc, argv, &action, err, sizeof(err)) !=
        FL_OK) {
        fprintf(stderr, "%s: %s\nTry '%s --help'.\n", COORD_PROGRAM, err,
                COORD_PROGRAM);
        coord_config_release(&cfg);
        return 2;
    }
    if (action != COORD_ACTION_RUN) {
        if (action == COORD_ACTION_HELP)
            coord_config_usage(stdout);
        else if (action == COORD_ACTION_CHECK_CONFIG) {
            /* everything a start would refuse, the security policy too */
            if (coord_config_check_security(&cfg, err, sizeof(err)) !=
                FL_OK) {
                fprintf(stderr, "%s: %s\n", COORD_PROGRAM, err);
                coord_config_release(&cfg);
                return 2;
            }
            coord_config_print(&cfg, stdout);
        } else
            printf("%s %s\n", COORD_PROGRAM, COORD_VERSION);
        coord_config_release(&cfg);
        return 0;
    }
    if (coord_config_check_security(&cfg, err, sizeof(err)) != FL_OK) {
        fprintf(stderr, "%s: %s\n", COORD_PROGRAM, err);
        coord_config_release(&cfg);
        return 2;
    }
    fl_log_init("coordinator", NULL);
    fl_log_set_level(cfg.log_level);
    fl_log_set_format(cfg.log_format);
    const enum fl_err rc = coord_server_run(&cfg, &status);
    coord_config_release(&cfg);
    return coord_exit_code(rc, status);
}
