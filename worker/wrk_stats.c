/*
 * wrk_stats.c - per-round cost of the worker (wrk_stats.h).
 */
#include "worker/wrk_stats.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define NS_PER_MS 1e6

enum fl_err wrk_stats_open(const char *path, FILE **out)
{
    struct stat st;
    *out = NULL;
    const int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                        0644);
    if (fd < 0)
        return FL_ERR_IO;
    FILE *f = fdopen(fd, "a");
    if (f == NULL) {
        const int e = errno;
        close(fd);
        errno = e;
        return FL_ERR_IO;
    }
    if (fstat(fd, &st) != 0 ||
        (st.st_size == 0 &&
         (fputs(WRK_STATS_HEADER "\n", f) < 0 || fflush(f) != 0))) {
        const int e = errno;
        fclose(f);
        errno = e;
        return FL_ERR_IO;
    }
    *out = f;
    return FL_OK;
}

static double ms(uint64_t ns)
{
    return (double)ns / NS_PER_MS;
}

enum fl_err wrk_stats_write(FILE *f, const struct wrk_round_cost *c)
{
    if (fprintf(f, "%" PRIu64 ",%.3f,%.3f,%.3f,%.3f,%" PRIu64 ",%u,%" PRIu64
                   "\n",
                c->round, ms(c->load_ns), ms(c->train_ns), ms(c->encode_ns),
                ms(c->send_ns), c->update_bytes, c->chunks,
                c->peak_rss_kb) < 0 ||
        fflush(f) != 0)
        return FL_ERR_IO;
    return FL_OK;
}

void wrk_stats_close(FILE **fp)
{
    if (fp == NULL || *fp == NULL)
        return;
    fclose(*fp);
    *fp = NULL;
}

void wrk_stats_format(const struct wrk_round_cost *c, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "load %.3f ms, train %.3f ms, encode %.3f ms, send %.3f ms, "
             "update %" PRIu64 " bytes in %u chunks, peak RSS %" PRIu64
             " KiB",
             ms(c->load_ns), ms(c->train_ns), ms(c->encode_ns),
             ms(c->send_ns), c->update_bytes, c->chunks, c->peak_rss_kb);
}

uint64_t wrk_stats_peak_rss_kb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0 || ru.ru_maxrss < 0)
        return 0;
    return (uint64_t)ru.ru_maxrss;
}

uint64_t wrk_stats_rss_kb(void)
{
    unsigned long size = 0, resident = 0;
    const long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    const int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (n != 2 || page <= 0)
        return 0;
    return (uint64_t)resident * (uint64_t)page / 1024;
}
