/*
 * bench_compress.h - `fedcomp-bench compress`: selection + error feedback,
 * encoding, codecs and decode+aggregate over sizes, densities, value codings
 * and codecs, each against baselines measured in the same run.
 */
#ifndef BENCH_COMPRESS_H
#define BENCH_COMPRESS_H

/* Entry point; argv[0] is "compress". Returns a process exit code. */
int bench_compress_run(int argc, char **argv);

#endif /* BENCH_COMPRESS_H */
