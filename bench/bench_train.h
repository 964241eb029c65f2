/*
 * bench_train.h - `fedcomp-bench train`: the time of one local epoch of the
 * MLP trainer against the time of exactly the same cblas_sgemm calls alone,
 * measured in the same run (target: ratio <= 1.4).
 */
#ifndef BENCH_TRAIN_H
#define BENCH_TRAIN_H

/* Entry point; argv[0] is "train". Returns a process exit code (0 ok,
 * 1 runtime error, 2 usage). */
int bench_train_run(int argc, char **argv);

#endif /* BENCH_TRAIN_H */
