/*
 * fedcomp-bench: the benchmarks. Each subcommand measures its baseline in
 * the same run and prints ratios, because the machines are shared and noisy.
 */
#include <stdio.h>
#include <string.h>

#include "bench/bench_compress.h"
#include "bench/bench_train.h"

#define BENCH_VERSION "0.1.0"

struct subcommand {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv);
};

static const struct subcommand subcommands[] = {
    {"compress", "top-k + error feedback, coding, codecs, decode+aggregate",
     bench_compress_run},
    {"train", "one epoch of the MLP trainer vs the same sgemm calls alone",
     bench_train_run},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: fedcomp-bench COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
        fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].help);
    fprintf(f, "\n'fedcomp-bench COMMAND --help' describes each command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("fedcomp-bench " BENCH_VERSION "\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "fedcomp-bench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
