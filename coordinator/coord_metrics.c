#include "coordinator/coord_metrics.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define HTTP_MAX_CONNECTIONS 16
#define HTTP_TIMEOUT_S 10

/* Seconds; a round is a local training pass plus transfers: from a tenth
 * of a second on loopback to many minutes on a slow fleet. */
static const double buckets[COORD_METRICS_BUCKETS] = {
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};

/* Reasons always exported (as 0 until seen), so that a query for one of
 * them finds a series; any other reason appears once it occurs. */
static const enum fl_err base_reasons[] = {
    FL_ERR_LATE,         FL_ERR_STALE_ROUND, FL_ERR_NOT_IN_COHORT,
    FL_ERR_DUPLICATE,    FL_ERR_SAMPLES,     FL_ERR_DIMENSION,
    FL_ERR_K_RANGE,      FL_ERR_UNKNOWN_DEVICE};

/* Everything the HTTP thread copies under the lock. */
struct values {
    uint64_t rounds_completed;
    uint64_t attempts_abandoned;
    uint64_t round;
    uint64_t devices;
    uint64_t updates_received;
    uint64_t rejected[FL_ERR__MAX];
    uint64_t up_wire;
    uint64_t up_dense;
    uint64_t down_wire;
    uint64_t down_dense;
    uint64_t bucket[COORD_METRICS_BUCKETS + 1]; /* per bucket; last: +Inf */
    uint64_t duration_count;
    double duration_sum;
    double accuracy;
    double loss;
};

struct coord_metrics {
    pthread_mutex_t lock;
    struct values v;
    struct MHD_Daemon *httpd;
};

const double *coord_metrics_buckets(void) { return buckets; }

enum fl_err coord_metrics_new(struct coord_metrics **out)
{
    struct coord_metrics *m = fl_calloc(1, sizeof(*m));
    *out = NULL;
    if (m == NULL)
        return FL_ERR_NOMEM;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        fl_free(m);
        return FL_ERR_NOMEM;
    }
    m->v.accuracy = NAN;
    m->v.loss = NAN;
    *out = m;
    return FL_OK;
}

void coord_metrics_destroy(struct coord_metrics **mp)
{
    if (mp == NULL || *mp == NULL)
        return;
    struct coord_metrics *m = *mp;
    if (m->httpd != NULL)
        MHD_stop_daemon(m->httpd); /* joins the thread */
    pthread_mutex_destroy(&m->lock);
    fl_free(m);
    *mp = NULL;
}

/* ---- hooks */

void coord_metrics_set_state(struct coord_metrics *m, uint64_t round,
                             size_t devices)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    m->v.round = round;
    m->v.devices = devices;
    pthread_mutex_unlock(&m->lock);
}

void coord_metrics_on_update(struct coord_metrics *m, enum fl_err rc,
                             uint64_t wire_bytes, uint64_t dense_bytes)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    m->v.updates_received++;
    if (rc == FL_OK) {
        m->v.up_wire += wire_bytes;
        m->v.up_dense += dense_bytes;
    } else if ((unsigned)rc < FL_ERR__MAX) {
        m->v.rejected[rc]++;
    }
    pthread_mutex_unlock(&m->lock);
}

void coord_metrics_add_down(struct coord_metrics *m, uint64_t wire_bytes,
                            uint64_t dense_bytes)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    m->v.down_wire += wire_bytes;
    m->v.down_dense += dense_bytes;
    pthread_mutex_unlock(&m->lock);
}

static size_t bucket_of(double s)
{
    size_t i = 0;
    while (i < COORD_METRICS_BUCKETS && !(s <= buckets[i]))
        i++;
    return i;
}

void coord_metrics_on_round(struct coord_metrics *m,
                            const struct coord_round_row *row)
{
    if (m == NULL)
        return;
    const double s = isfinite(row->wall_s) && row->wall_s > 0 ? row->wall_s
                                                              : 0.0;
    pthread_mutex_lock(&m->lock);
    if (row->committed) {
        m->v.rounds_completed++;
        m->v.bucket[bucket_of(s)]++;
        m->v.duration_count++;
        m->v.duration_sum += s;
        m->v.accuracy = row->test_acc;
        m->v.loss = row->test_loss;
    } else {
        m->v.attempts_abandoned++;
    }
    pthread_mutex_unlock(&m->lock);
}

/* ---- exposition text */

static void put_double(FILE *f, double x)
{
    if (isnan(x))
        fputs("NaN", f);
    else if (isinf(x))
        fputs(x > 0 ? "+Inf" : "-Inf", f);
    else
        fprintf(f, "%.17g", x);
}

static void family(FILE *f, const char *name, const char *type,
                   const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(FILE *f, const char *name, const char *help,
                    uint64_t v)
{
    family(f, name, "counter", help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(FILE *f, const char *name, const char *help, double v)
{
    family(f, name, "gauge", help);
    fprintf(f, "%s ", name);
    put_double(f, v);
    fputc('\n', f);
}

static bool is_base_reason(unsigned code)
{
    for (size_t i = 0; i < FL_ARRAY_LEN(base_reasons); i++) {
        if ((unsigned)base_reasons[i] == code)
            return true;
    }
    return false;
}

static void render_rejects(FILE *f, const struct values *v)
{
    family(f, "fedcomp_updates_rejected_total", "counter",
           "Updates not used, by the reason of their Reject.");
    for (unsigned c = 1; c < FL_ERR__MAX; c++) {
        if (v->rejected[c] == 0 && !is_base_reason(c))
            continue;
        fprintf(f, "fedcomp_updates_rejected_total{reason=\"%s\"} %llu\n",
                fl_err_name((enum fl_err)c),
                (unsigned long long)v->rejected[c]);
    }
}

static void render_histogram(FILE *f, const struct values *v)
{
    static const char name[] = "fedcomp_round_duration_seconds";
    uint64_t cum = 0;
    family(f, name, "histogram",
           "Wall time of committed rounds, from opening to the report row.");
    for (size_t i = 0; i < COORD_METRICS_BUCKETS; i++) {
        cum += v->bucket[i];
        fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, buckets[i],
                (unsigned long long)cum);
    }
    cum += v->bucket[COORD_METRICS_BUCKETS];
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name,
            (unsigned long long)cum);
    fprintf(f, "%s_sum ", name);
    put_double(f, v->duration_sum);
    fprintf(f, "\n%s_count %llu\n", name,
            (unsigned long long)v->duration_count);
}

static void render_values(FILE *f, const struct values *v)
{
    counter(f, "fedcomp_rounds_completed_total",
            "Rounds committed (aggregated, evaluated, reported).",
            v->rounds_completed);
    counter(f, "fedcomp_round_attempts_abandoned_total",
            "Round attempts abandoned (no quorum, non-finite model, stop).",
            v->attempts_abandoned);
    gauge(f, "fedcomp_round", "The round open now, or the next one.",
          (double)v->round);
    gauge(f, "fedcomp_devices_connected", "Devices connected now.",
          (double)v->devices);
    counter(f, "fedcomp_updates_received_total",
            "Update messages received, used or not.", v->updates_received);
    render_rejects(f, v);
    counter(f, "fedcomp_bytes_up_wire_total",
            "Bytes of the accepted updates as received (protobuf frames).",
            v->up_wire);
    counter(f, "fedcomp_bytes_up_dense_total",
            "Bytes the accepted updates would take as dense float32.",
            v->up_dense);
    counter(f, "fedcomp_bytes_down_wire_total",
            "Bytes of every frame sent successfully.", v->down_wire);
    counter(f, "fedcomp_bytes_down_dense_total",
            "Bytes of the models sent in Tasks as dense float32.",
            v->down_dense);
    gauge(f, "fedcomp_uplink_compression_ratio",
          "Uplink dense bytes over wire bytes since the start (NaN: none).",
          v->up_wire > 0 ? (double)v->up_dense / (double)v->up_wire : NAN);
    render_histogram(f, v);
    gauge(f, "fedcomp_test_accuracy",
          "Test accuracy of the model of the last committed round.",
          v->accuracy);
    gauge(f, "fedcomp_test_loss",
          "Test loss of the model of the last committed round.", v->loss);
}

enum fl_err coord_metrics_render(struct coord_metrics *m, char **out,
                                 size_t *len)
{
    struct values v;
    char *buf = NULL;
    size_t n = 0;
    *out = NULL;
    *len = 0;
    pthread_mutex_lock(&m->lock);
    v = m->v;
    pthread_mutex_unlock(&m->lock);
    FILE *f = open_memstream(&buf, &n);
    if (f == NULL)
        return FL_ERR_NOMEM;
    render_values(f, &v);
    const bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        free(buf);
        return FL_ERR_NOMEM;
    }
    *out = buf;
    *len = n;
    return FL_OK;
}

/* ---- HTTP */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             char *body, size_t len,
                             enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (r == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    const enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version,
                                  const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    static char not_found[] = "not found: the metrics are at /metrics\n";
    static char not_allowed[] = "method not allowed\n";
    static char no_memory[] = "out of memory\n";
    struct coord_metrics *m = cls;
    char *body = NULL;
    size_t len = 0;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed,
                     sizeof(not_allowed) - 1, MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/metrics") != 0)
        return reply(c, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1,
                     MHD_RESPMEM_PERSISTENT);
    if (coord_metrics_render(m, &body, &len) != FL_OK)
        return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, no_memory,
                     sizeof(no_memory) - 1, MHD_RESPMEM_PERSISTENT);
    return reply(c, MHD_HTTP_OK, body, len, MHD_RESPMEM_MUST_FREE);
}

static enum fl_err bind_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum fl_err bind_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return FL_ERR_INVALID_ARG;
}

/* "HOST:PORT", "[V6]:PORT", ":PORT" or "*:PORT" into host (empty: every
 * interface) and port text. */
static enum fl_err split_bind(const char *bind, char *host, size_t hostlen,
                              char *port, size_t portlen)
{
    const char *colon;
    const char *h = bind;
    size_t hn;
    if (bind[0] == '[') {
        const char *close = strchr(bind, ']');
        if (close == NULL || close[1] != ':')
            return FL_ERR_INVALID_ARG;
        h = bind + 1;
        hn = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(bind, ':');
        if (colon == NULL)
            return FL_ERR_INVALID_ARG;
        hn = (size_t)(colon - bind);
    }
    if (hn >= hostlen || strlen(colon + 1) >= portlen)
        return FL_ERR_INVALID_ARG;
    memcpy(host, h, hn);
    host[hn] = '\0';
    if (strcmp(host, "*") == 0)
        host[0] = '\0';
    memcpy(port, colon + 1, strlen(colon + 1) + 1);
    return FL_OK;
}

static enum fl_err resolve(const char *bind, struct sockaddr_storage *ss,
                           char *err, size_t errlen)
{
    char host[256], port[16];
    uint64_t p = 0;
    struct addrinfo hints, *res = NULL;
    if (split_bind(bind, host, sizeof(host), port, sizeof(port)) != FL_OK ||
        fl_parse_u64(port, 0, 65535, &p) != FL_OK)
        return bind_err(err, errlen, "--metrics-bind: '%s' is not "
                        "HOST:PORT, [ADDR]:PORT or :PORT", bind);
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    hints.ai_family = host[0] == '\0' ? AF_INET : AF_UNSPEC;
    if (host[0] == '\0')
        hints.ai_flags |= AI_PASSIVE;
    const int g = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints,
                              &res);
    if (g != 0 || res == NULL)
        return bind_err(err, errlen, "--metrics-bind: cannot resolve '%s': %s",
                        bind, gai_strerror(g));
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, res->ai_addr, FL_MIN(sizeof(*ss), (size_t)res->ai_addrlen));
    freeaddrinfo(res);
    return FL_OK;
}

/* Start the daemon with SIGINT/SIGTERM/SIGHUP blocked: its thread
 * inherits the mask, so those signals interrupt the poll loop, never the
 * HTTP thread. No SO_REUSEPORT: a second coordinator on the same port must
 * fail to bind rather than share the scrapes. */
static struct MHD_Daemon *start_httpd(struct coord_metrics *m,
                                      const struct sockaddr_storage *ss)
{
    sigset_t block, old;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD;
    if (ss->ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR,
        (const struct sockaddr *)ss, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)HTTP_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_END);
    const int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return d;
}

enum fl_err coord_metrics_listen(struct coord_metrics *m, const char *bind,
                                 uint16_t *port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (m->httpd != NULL)
        return FL_ERR_BAD_STATE;
    FL_FORWARD_ERR(resolve(bind, &ss, err, errlen));
    errno = 0;
    m->httpd = start_httpd(m, &ss);
    if (m->httpd == NULL) {
        const int e = errno;
        bind_err(err, errlen, "cannot serve metrics on '%s': %s", bind,
                 e != 0 ? strerror(e) : "libmicrohttpd could not start");
        return FL_ERR_IO;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(m->httpd, MHD_DAEMON_INFO_BIND_PORT);
    *port = info != NULL ? info->port : 0;
    return FL_OK;
}
