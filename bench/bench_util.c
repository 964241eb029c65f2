#include "bench/bench_util.h"

#include <stdlib.h>

static volatile double sink_value;

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void bench_sink(double x) { sink_value += x; }

void bench_ref_add(float *r, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        r[i] += u[i];
}
