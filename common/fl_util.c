#define _POSIX_C_SOURCE 200809L
#include "common/fl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void fl_rng_seed(struct fl_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t fl_rng_next(struct fl_rng *rng)
{
    uint64_t *s = rng->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t fl_rng_below(struct fl_rng *rng, uint64_t bound)
{
    /* Rejection sampling on the top of the range removes modulo bias. */
    const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do {
        x = fl_rng_next(rng);
    } while (x >= limit);
    return x % bound;
}

double fl_rng_uniform(struct fl_rng *rng)
{
    return (double)(fl_rng_next(rng) >> 11) * 0x1.0p-53;
}

double fl_rng_normal(struct fl_rng *rng)
{
    double u1;
    do {
        u1 = fl_rng_uniform(rng);
    } while (u1 <= 0.0);
    const double u2 = fl_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double fl_rng_gamma(struct fl_rng *rng, double shape)
{
    if (shape < 1.0) {
        /* Boost: Gamma(a) = Gamma(a + 1) * U^(1/a). */
        double u;
        do {
            u = fl_rng_uniform(rng);
        } while (u <= 0.0);
        return fl_rng_gamma(rng, shape + 1.0) * pow(u, 1.0 / shape);
    }
    const double d = shape - 1.0 / 3.0;
    const double c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = fl_rng_normal(rng);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        const double u = fl_rng_uniform(rng);
        if (u < 1.0 - 0.0331 * x * x * x * x)
            return d * v;
        if (u > 0.0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return d * v;
    }
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t fl_now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
uint64_t fl_cpu_ns(void) { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

double fl_wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

enum fl_err fl_parse_u64(const char *s, uint64_t min, uint64_t max,
                         uint64_t *out)
{
    char *end = NULL;
    if (s == NULL || *s == '\0' || *s == '-' || *s == '+' || *s == ' ')
        return FL_ERR_FORMAT;
    errno = 0;
    const unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE)
        return FL_ERR_INVALID_ARG;
    if (errno != 0 || end == s || *end != '\0')
        return FL_ERR_FORMAT;
    if (v < min || v > max)
        return FL_ERR_INVALID_ARG;
    *out = v;
    return FL_OK;
}

enum fl_err fl_parse_double(const char *s, double min, double max,
                            double *out)
{
    char *end = NULL;
    if (s == NULL || *s == '\0' || *s == ' ')
        return FL_ERR_FORMAT;
    errno = 0;
    const double v = strtod(s, &end);
    if (errno == ERANGE)
        return FL_ERR_INVALID_ARG;
    if (errno != 0 || end == s || *end != '\0')
        return FL_ERR_FORMAT;
    if (!isfinite(v) || v < min || v > max)
        return FL_ERR_INVALID_ARG;
    *out = v;
    return FL_OK;
}

static enum fl_err write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        const ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return FL_ERR_IO;
        }
        p += w;
        len -= (size_t)w;
    }
    return FL_OK;
}

static enum fl_err fsync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == path) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        const size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir))
            return FL_ERR_TOO_LARGE;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    const int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return FL_ERR_IO;
    const int rc = fsync(fd);
    close(fd);
    return rc == 0 ? FL_OK : FL_ERR_IO;
}

enum fl_err fl_file_write_atomic(const char *path, const void *data,
                                 size_t len)
{
    char tmp[4096];
    enum fl_err rc = FL_OK;
    const int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path,
                           (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return FL_ERR_TOO_LARGE;
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return FL_ERR_IO;
    rc = write_all(fd, data, len);
    if (rc == FL_OK && fsync(fd) != 0)
        rc = FL_ERR_IO;
    if (close(fd) != 0 && rc == FL_OK)
        rc = FL_ERR_IO;
    if (rc == FL_OK && rename(tmp, path) != 0)
        rc = FL_ERR_IO;
    if (rc != FL_OK) {
        const int saved = errno;
        unlink(tmp);
        errno = saved;
        return rc;
    }
    return fsync_dir_of(path);
}

enum fl_err fl_file_read(const char *path, size_t max_len, void **data,
                         size_t *len)
{
    struct stat st;
    enum fl_err rc = FL_OK;
    char *buf = NULL;
    size_t got = 0;
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? FL_ERR_NOT_FOUND : FL_ERR_IO;
    if (fstat(fd, &st) != 0) {
        rc = FL_ERR_IO;
        goto out;
    }
    if ((uint64_t)st.st_size > max_len) {
        rc = FL_ERR_TOO_LARGE;
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    while (got < (size_t)st.st_size) {
        const ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = FL_ERR_IO;
            goto out;
        }
        got += (size_t)r;
    }
    buf[got] = '\0';
    *data = buf;
    *len = got;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

enum fl_err fl_mkdir_p(const char *path, int private_dir)
{
    char buf[4096];
    const mode_t mode = private_dir ? 0700 : 0755;
    const size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return FL_ERR_INVALID_ARG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        const char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return FL_ERR_IO;
        buf[i] = saved;
    }
    return FL_OK;
}
