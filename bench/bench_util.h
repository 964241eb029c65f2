/*
 * bench_util.h - timing helpers shared by the benchmarks: medians of
 * repeated runs and a "keep this value alive" sink so the compiler does not
 * remove measured work.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stddef.h>

/* Median of n doubles (sorts the array in place). */
double bench_median(double *v, size_t n);

/* Fold a value into a global sink the optimiser cannot see through. */
void bench_sink(double x);

/* The fixed reference kernel r[i] += u[i]: two arrays read, one written.
 * Compiled with the project's flags in its own translation unit, never tuned. */
void bench_ref_add(float *r, const float *u, size_t n);

#endif /* BENCH_UTIL_H */
