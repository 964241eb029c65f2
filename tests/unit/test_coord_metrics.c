/*
 * Unit tests for coordinator/coord_metrics: the exposition text (every
 * family has HELP and TYPE, every sample belongs to a declared family),
 * hook sequences against expected values, histogram buckets against a
 * naive count (seeded property test), the HTTP server on a free loopback
 * port (200 / 404 / 405, port in use, bad addresses) and consistent
 * snapshots while another thread keeps updating.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fl_err.h"
#include "common/fl_util.h"
#include "coordinator/coord_metrics.h"

#define HTTP_MAX (256 * 1024)

/* ---- helpers */

static char *render(struct coord_metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(coord_metrics_render(m, &text, &len), FL_OK);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* The value of the sample line that starts with `series ` ("name" or
 * "name{labels}"); fails the test when absent. */
static double value_of(const char *text, const char *series)
{
    const size_t n = strlen(series);
    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = nl + 1;
    }
    fail_msg("series '%s' not in the output", series);
    return 0;
}

static bool has_series(const char *text, const char *series)
{
    const size_t n = strlen(series);
    for (const char *p = text; *p != '\0'; p = strchr(p, '\n') + 1) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return true;
    }
    return false;
}

/* Structure check: every sample's metric name is a family declared by a
 * TYPE line before it (histograms: _bucket, _sum, _count), HELP comes
 * right before TYPE, and a family is declared once. */
static void check_structure(char *text)
{
    char family[128] = "", type[32] = "";
    char seen[64][128];
    size_t nseen = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char name[128];
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s %31s", family, type), 2);
            for (size_t i = 0; i < nseen; i++)
                assert_string_not_equal(seen[i], family);
            assert_true(nseen < 64);
            snprintf(seen[nseen++], sizeof(seen[0]), "%s", family);
            continue;
        }
        assert_int_not_equal(line[0], '#');
        const size_t n = strcspn(line, "{ ");
        assert_true(n > 0 && n < sizeof(name));
        memcpy(name, line, n);
        name[n] = '\0';
        if (strcmp(type, "histogram") == 0) {
            const size_t f = strlen(family);
            assert_memory_equal(name, family, f);
            assert_true(strcmp(name + f, "_bucket") == 0 ||
                        strcmp(name + f, "_sum") == 0 ||
                        strcmp(name + f, "_count") == 0);
        } else {
            assert_string_equal(name, family);
        }
    }
}

static void check_help_type(const char *text, const char *name,
                            const char *type)
{
    char help[160], typeline[160];
    snprintf(help, sizeof(help), "# HELP %s ", name);
    snprintf(typeline, sizeof(typeline), "# TYPE %s %s\n", name, type);
    assert_non_null(strstr(text, help));
    assert_non_null(strstr(text, typeline));
}

static struct coord_round_row row_of(bool committed, double wall_s,
                                     double acc, double loss)
{
    struct coord_round_row r;
    memset(&r, 0, sizeof(r));
    r.committed = committed;
    r.wall_s = wall_s;
    r.test_acc = acc;
    r.test_loss = loss;
    return r;
}

/* ---- the text */

static void test_families(void **state)
{
    static const struct {
        const char *name, *type;
    } fams[] = {
        {"fedcomp_rounds_completed_total", "counter"},
        {"fedcomp_round", "gauge"},
        {"fedcomp_devices_connected", "gauge"},
        {"fedcomp_updates_received_total", "counter"},
        {"fedcomp_updates_rejected_total", "counter"},
        {"fedcomp_bytes_up_wire_total", "counter"},
        {"fedcomp_bytes_up_dense_total", "counter"},
        {"fedcomp_bytes_down_wire_total", "counter"},
        {"fedcomp_bytes_down_dense_total", "counter"},
        {"fedcomp_uplink_compression_ratio", "gauge"},
        {"fedcomp_round_duration_seconds", "histogram"},
        {"fedcomp_test_accuracy", "gauge"},
        {"fedcomp_test_loss", "gauge"},
    };
    struct coord_metrics *m = NULL;
    (void)state;
    assert_int_equal(coord_metrics_new(&m), FL_OK);
    char *text = render(m);
    for (size_t i = 0; i < FL_ARRAY_LEN(fams); i++)
        check_help_type(text, fams[i].name, fams[i].type);
    /* fresh: zero counters, NaN where nothing is known yet */
    assert_true(value_of(text, "fedcomp_rounds_completed_total") == 0);
    assert_true(value_of(text, "fedcomp_round_duration_seconds_count") == 0);
    assert_true(isnan(value_of(text, "fedcomp_test_accuracy")));
    assert_true(isnan(value_of(text, "fedcomp_test_loss")));
    assert_true(isnan(value_of(text, "fedcomp_uplink_compression_ratio")));
    assert_true(value_of(text,
                         "fedcomp_updates_rejected_total{reason=\"late\"}") ==
                0);
    assert_non_null(strstr(text, "NaN\n"));
    assert_int_equal(text[strlen(text) - 1], '\n');
    check_structure(text);
    free(text);
    coord_metrics_destroy(&m);
    assert_null(m);
    coord_metrics_destroy(&m); /* pointer to NULL */
    coord_metrics_destroy(NULL);
}

static void test_null_hooks(void **state)
{
    const struct coord_round_row r = row_of(true, 1.0, 0.5, 1.0);
    (void)state;
    coord_metrics_set_state(NULL, 3, 4);
    coord_metrics_on_update(NULL, FL_OK, 1, 2);
    coord_metrics_add_down(NULL, 1, 2);
    coord_metrics_on_round(NULL, &r);
}

/* ---- hooks: a table of calls and the values they must give */

enum call_kind { C_STATE, C_UPDATE, C_DOWN, C_ROUND };

struct call {
    enum call_kind kind;
    enum fl_err rc;          /* C_UPDATE */
    uint64_t a, b;           /* state: round, devices; bytes: wire, dense */
    bool committed;          /* C_ROUND */
    double wall, acc, loss;  /* C_ROUND */
};

struct expect {
    const char *series;
    double value;            /* NAN: must be NaN */
};

static void apply(struct coord_metrics *m, const struct call *c)
{
    struct coord_round_row r;
    switch (c->kind) {
    case C_STATE:
        coord_metrics_set_state(m, c->a, (size_t)c->b);
        break;
    case C_UPDATE:
        coord_metrics_on_update(m, c->rc, c->a, c->b);
        break;
    case C_DOWN:
        coord_metrics_add_down(m, c->a, c->b);
        break;
    case C_ROUND:
        r = row_of(c->committed, c->wall, c->acc, c->loss);
        coord_metrics_on_round(m, &r);
        break;
    }
}

static void test_hooks_table(void **state)
{
    static const struct call calls[] = {
        {C_STATE, FL_OK, 1, 4, false, 0, 0, 0},
        {C_DOWN, FL_OK, 1000, 0, false, 0, 0, 0},
        {C_DOWN, FL_OK, 0, 40000, false, 0, 0, 0},
        {C_UPDATE, FL_OK, 100, 4000, false, 0, 0, 0},
        {C_UPDATE, FL_OK, 300, 4000, false, 0, 0, 0},
        {C_UPDATE, FL_ERR_LATE, 50, 4000, false, 0, 0, 0},
        {C_UPDATE, FL_ERR_CHECKSUM, 70, 4000, false, 0, 0, 0},
        {C_UPDATE, FL_ERR_LATE, 50, 4000, false, 0, 0, 0},
        {C_ROUND, FL_OK, 0, 0, true, 0.3, 0.75, 0.5},
        {C_ROUND, FL_OK, 0, 0, false, 60, NAN, NAN},
        {C_STATE, FL_OK, 2, 3, false, 0, 0, 0},
    };
    static const struct expect want[] = {
        {"fedcomp_round", 2},
        {"fedcomp_devices_connected", 3},
        {"fedcomp_updates_received_total", 5},
        {"fedcomp_updates_rejected_total{reason=\"late\"}", 2},
        {"fedcomp_updates_rejected_total{reason=\"checksum\"}", 1},
        {"fedcomp_updates_rejected_total{reason=\"duplicate\"}", 0},
        {"fedcomp_bytes_up_wire_total", 400},
        {"fedcomp_bytes_up_dense_total", 8000},
        {"fedcomp_bytes_down_wire_total", 1000},
        {"fedcomp_bytes_down_dense_total", 40000},
        {"fedcomp_uplink_compression_ratio", 20},
        {"fedcomp_rounds_completed_total", 1},
        {"fedcomp_round_attempts_abandoned_total", 1},
        {"fedcomp_round_duration_seconds_count", 1},
        {"fedcomp_round_duration_seconds_sum", 0.3},
        {"fedcomp_round_duration_seconds_bucket{le=\"0.25\"}", 0},
        {"fedcomp_round_duration_seconds_bucket{le=\"0.5\"}", 1},
        {"fedcomp_round_duration_seconds_bucket{le=\"+Inf\"}", 1},
        {"fedcomp_test_accuracy", 0.75},
        {"fedcomp_test_loss", 0.5},
    };
    struct coord_metrics *m = NULL;
    (void)state;
    assert_int_equal(coord_metrics_new(&m), FL_OK);
    for (size_t i = 0; i < FL_ARRAY_LEN(calls); i++)
        apply(m, &calls[i]);
    char *text = render(m);
    for (size_t i = 0; i < FL_ARRAY_LEN(want); i++) {
        const double v = value_of(text, want[i].series);
        if (fabs(v - want[i].value) > 1e-12)
            fail_msg("%s: got %.17g, want %.17g", want[i].series, v,
                     want[i].value);
    }
    /* a reason never seen and not in the base set is not exported */
    assert_false(has_series(text,
                            "fedcomp_updates_rejected_total{reason=\"norm\"}"));
    check_structure(text);
    free(text);
    coord_metrics_destroy(&m);
}

/* A duration on a bucket bound belongs to that bucket (le is <=). */
static void test_bucket_bounds(void **state)
{
    const double *b = coord_metrics_buckets();
    (void)state;
    for (size_t i = 1; i < COORD_METRICS_BUCKETS; i++)
        assert_true(b[i] > b[i - 1]);
    for (size_t i = 0; i < COORD_METRICS_BUCKETS; i++) {
        struct coord_metrics *m = NULL;
        char series[96];
        assert_int_equal(coord_metrics_new(&m), FL_OK);
        const struct coord_round_row r = row_of(true, b[i], 0.5, 0.5);
        coord_metrics_on_round(m, &r);
        char *text = render(m);
        snprintf(series, sizeof(series),
                 "fedcomp_round_duration_seconds_bucket{le=\"%g\"}", b[i]);
        assert_true(value_of(text, series) == 1);
        if (i > 0) {
            snprintf(series, sizeof(series),
                     "fedcomp_round_duration_seconds_bucket{le=\"%g\"}",
                     b[i - 1]);
            assert_true(value_of(text, series) == 0);
        }
        free(text);
        coord_metrics_destroy(&m);
    }
}

/* Random durations (log-uniform over 1 ms .. 2000 s, some abandoned):
 * each cumulative bucket equals a naive count, sum and count agree. */
static void test_histogram_property(void **state)
{
    const double *b = coord_metrics_buckets();
    struct fl_rng rng;
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct coord_metrics *m = NULL;
        uint64_t naive[COORD_METRICS_BUCKETS] = {0};
        uint64_t count = 0;
        double sum = 0;
        char series[96];
        fl_rng_seed(&rng, seed);
        assert_int_equal(coord_metrics_new(&m), FL_OK);
        const uint64_t n = 1 + fl_rng_below(&rng, 300);
        for (uint64_t i = 0; i < n; i++) {
            const double s = pow(10.0, -3.0 + 6.3 * fl_rng_uniform(&rng));
            const bool committed = fl_rng_below(&rng, 5) != 0;
            const struct coord_round_row r = row_of(committed, s, 0.1, 2.0);
            coord_metrics_on_round(m, &r);
            if (!committed)
                continue;
            count++;
            sum += s;
            for (size_t j = 0; j < COORD_METRICS_BUCKETS; j++)
                naive[j] += s <= b[j];
        }
        char *text = render(m);
        for (size_t j = 0; j < COORD_METRICS_BUCKETS; j++) {
            snprintf(series, sizeof(series),
                     "fedcomp_round_duration_seconds_bucket{le=\"%g\"}",
                     b[j]);
            assert_true(value_of(text, series) == (double)naive[j]);
        }
        assert_true(value_of(text, "fedcomp_round_duration_seconds_bucket"
                                   "{le=\"+Inf\"}") == (double)count);
        assert_true(value_of(text, "fedcomp_round_duration_seconds_count") ==
                    (double)count);
        assert_true(value_of(text, "fedcomp_rounds_completed_total") ==
                    (double)count);
        assert_true(value_of(text, "fedcomp_round_attempts_abandoned_total") ==
                    (double)(n - count));
        const double got = value_of(text, "fedcomp_round_duration_seconds_sum");
        assert_true(fabs(got - sum) <= 1e-9 * (sum + 1));
        free(text);
        coord_metrics_destroy(&m);
    }
}

/* ---- HTTP */

/* One HTTP/1.0 request to 127.0.0.1:port; the whole response in *out
 * (caller frees). */
static void http(uint16_t port, const char *method, const char *path,
                 char **out)
{
    struct sockaddr_in sa;
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    char req[256];
    char *buf = malloc(HTTP_MAX + 1);
    size_t got = 0;
    assert_non_null(buf);
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    const int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\n"
                           "Host: 127.0.0.1\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    for (;;) {
        const ssize_t r = read(fd, buf + got, HTTP_MAX - got);
        assert_true(r >= 0);
        if (r == 0)
            break;
        got += (size_t)r;
        assert_true(got < HTTP_MAX);
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
}

static int http_status(const char *resp)
{
    int code = 0;
    assert_memory_equal(resp, "HTTP/1.", 7);
    assert_int_equal(sscanf(resp + 8, " %d", &code), 1);
    return code;
}

static const char *http_body(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    return b + 4;
}

static void test_http(void **state)
{
    struct coord_metrics *m = NULL;
    char err[256] = "";
    uint16_t port = 0, port2 = 0;
    char *resp = NULL;
    (void)state;
    alarm(60);
    assert_int_equal(coord_metrics_new(&m), FL_OK);
    coord_metrics_set_state(m, 7, 2);
    assert_int_equal(coord_metrics_listen(m, "127.0.0.1:0", &port, err,
                                          sizeof(err)),
                     FL_OK);
    assert_true(port != 0);
    assert_int_equal(coord_metrics_listen(m, "127.0.0.1:0", &port2, err,
                                          sizeof(err)),
                     FL_ERR_BAD_STATE);

    http(port, "GET", "/metrics", &resp);
    assert_int_equal(http_status(resp), 200);
    assert_non_null(strstr(resp, "text/plain; version=0.0.4"));
    char *text = render(m);
    assert_string_equal(http_body(resp), text);
    assert_true(value_of(http_body(resp), "fedcomp_round") == 7);
    free(text);
    free(resp);

    http(port, "GET", "/", &resp);
    assert_int_equal(http_status(resp), 404);
    free(resp);
    http(port, "POST", "/metrics", &resp);
    assert_int_equal(http_status(resp), 405);
    free(resp);

    /* the port is taken: a second server must fail, not share it */
    struct coord_metrics *m2 = NULL;
    char bind[64];
    assert_int_equal(coord_metrics_new(&m2), FL_OK);
    snprintf(bind, sizeof(bind), "127.0.0.1:%u", (unsigned)port);
    assert_int_equal(coord_metrics_listen(m2, bind, &port2, err, sizeof(err)),
                     FL_ERR_IO);
    assert_non_null(strstr(err, bind));
    coord_metrics_destroy(&m2);

    coord_metrics_destroy(&m);
    alarm(0);
}

static void test_bad_bind(void **state)
{
    static const char *const bad[] = {
        "", "9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
        "127.0.0.1:-1", "127.0.0.1:94x", "[::1", "[::1]9464",
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(bad); i++) {
        struct coord_metrics *m = NULL;
        char err[256] = "";
        uint16_t port = 0;
        assert_int_equal(coord_metrics_new(&m), FL_OK);
        const enum fl_err rc = coord_metrics_listen(m, bad[i], &port, err,
                                                    sizeof(err));
        if (rc != FL_ERR_INVALID_ARG)
            fail_msg("'%s': %s, want invalid_arg", bad[i], fl_err_name(rc));
        assert_non_null(strstr(err, "--metrics-bind"));
        coord_metrics_destroy(&m);
    }
}

/* ":0" and "*:0" listen on every interface; loopback reaches them. */
static void test_any_address(void **state)
{
    static const char *const any[] = {":0", "*:0", "localhost:0"};
    (void)state;
    alarm(60);
    for (size_t i = 0; i < FL_ARRAY_LEN(any); i++) {
        struct coord_metrics *m = NULL;
        char err[256] = "";
        uint16_t port = 0;
        char *resp = NULL;
        assert_int_equal(coord_metrics_new(&m), FL_OK);
        const enum fl_err rc = coord_metrics_listen(m, any[i], &port, err,
                                                    sizeof(err));
        if (rc != FL_OK)
            fail_msg("'%s': %s", any[i], err);
        http(port, "GET", "/metrics", &resp);
        assert_int_equal(http_status(resp), 200);
        free(resp);
        coord_metrics_destroy(&m);
    }
    alarm(0);
}

/* ---- a writer thread and scrapes at the same time */

struct writer {
    struct coord_metrics *m;
    atomic_int stop;
    uint64_t iterations;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct fl_rng rng;
    fl_rng_seed(&rng, 99);
    while (!atomic_load(&w->stop)) {
        const double s = pow(10.0, -2.0 + 4.0 * fl_rng_uniform(&rng));
        const struct coord_round_row r = row_of(true, s, 0.5, 0.5);
        coord_metrics_on_update(w->m, FL_OK, 3, 12);
        coord_metrics_on_round(w->m, &r);
        w->iterations++;
    }
    return NULL;
}

static void test_concurrent_scrapes(void **state)
{
    struct writer w = {0};
    pthread_t th;
    char err[256] = "";
    uint16_t port = 0;
    (void)state;
    alarm(60);
    assert_int_equal(coord_metrics_new(&w.m), FL_OK);
    assert_int_equal(coord_metrics_listen(w.m, "127.0.0.1:0", &port, err,
                                          sizeof(err)),
                     FL_OK);
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    double last = -1;
    for (int i = 0; i < 40; i++) {
        char *resp = NULL;
        http(port, "GET", "/metrics", &resp);
        const char *t = http_body(resp);
        const double wire = value_of(t, "fedcomp_bytes_up_wire_total");
        const double dense = value_of(t, "fedcomp_bytes_up_dense_total");
        const double count = value_of(t,
                                      "fedcomp_round_duration_seconds_count");
        const double inf = value_of(t, "fedcomp_round_duration_seconds_bucket"
                                       "{le=\"+Inf\"}");
        /* one snapshot: the values written together are seen together */
        assert_true(dense == 4 * wire);
        assert_true(inf == count);
        assert_true(count >= last); /* counters never go back */
        last = count;
        free(resp);
    }
    atomic_store(&w.stop, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(w.iterations > 0);
    coord_metrics_destroy(&w.m);
    alarm(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_null_hooks),
        cmocka_unit_test(test_hooks_table),
        cmocka_unit_test(test_bucket_bounds),
        cmocka_unit_test(test_histogram_property),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_bad_bind),
        cmocka_unit_test(test_any_address),
        cmocka_unit_test(test_concurrent_scrapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
