/*
 * fedcomp-swarm: thousands of simulated devices speaking the real protocol
 * to one coordinator (bench/bench_swarm.h). Exit codes: 0 every device
 * joined and every round got its answers, 1 the run ended without that,
 * 2 usage or setup error.
 */
#include <stdio.h>

#include "bench/bench_swarm.h"
#include "common/fl_log.h"

int main(int argc, char **argv)
{
    struct bench_swarm_config cfg;
    enum bench_swarm_action action;
    char err[512];

    bench_swarm_config_defaults(&cfg);
    if (bench_swarm_config_parse(&cfg, argc, argv, &action, err,
                                 sizeof(err)) != FL_OK) {
        fprintf(stderr, "%s: %s\nTry '%s --help'.\n", BENCH_SWARM_PROGRAM,
                err, BENCH_SWARM_PROGRAM);
        return 2;
    }
    if (action == BENCH_SWARM_HELP) {
        bench_swarm_usage(stdout);
        return 0;
    }
    if (action == BENCH_SWARM_VERSION_ACTION) {
        printf("%s %s\n", BENCH_SWARM_PROGRAM, BENCH_SWARM_VERSION);
        return 0;
    }
    fl_log_init("swarm", NULL);
    fl_log_set_level(cfg.log_level);
    return bench_swarm_run(&cfg, stdout);
}
