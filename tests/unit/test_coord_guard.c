/*
 * Unit tests for coordinator/coord_guard: the share cap (table, property
 * and streaming equivalence against a direct weighted mean), the norm
 * bound, the penalty box, log escaping and the flags; then the same rules
 * inside the engine, driven without sockets: Reject 47 with its detail,
 * the capped weights of a committed round, a device put in the penalty box
 * (dropped messages, Reject 52 once per round, not drawn, released), late
 * updates versus replays, and the counters of rounds.jsonl.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_log.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "coordinator/coord_engine.h"
#include "coordinator/coord_guard.h"
#include "proto/pb_msg.h"
#include "tests/unit/coord_harness.h"

#define S (1000000000ULL)
#define DIM 24

/* ------------------------------------------------------------ share cap */

struct cap_case {
    double w[6];
    size_t n;
    double share;
    double cap;              /* INFINITY: no cap */
};

static void test_share_cap_table(void **state)
{
    (void)state;
    static const struct cap_case cases[] = {
        {{100, 200, 300}, 3, 0.5, INFINITY},    /* 300 is exactly half */
        {{1000, 10, 10, 10}, 4, 0.5, 30},       /* 30 of 60 */
        {{1000, 900, 10}, 3, 0.5, 910},         /* 910 of 1820 */
        {{1000, 900, 10}, 3, 0.4, 20},          /* 20, 20, 10: two capped */
        {{5, 1}, 2, 0.5, 1},                    /* equal: half each */
        {{5, 1}, 2, 0.4, 1},                    /* cannot hold: plain mean */
        {{7}, 1, 0.5, 7},                       /* one update: itself */
        {{7, 3, 2}, 3, 1.0, INFINITY},          /* share 1: no cap */
        {{4, 4, 4, 4}, 4, 0.25, INFINITY},
        {{9, 4, 4, 4}, 4, 0.25, 4},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        const struct cap_case *c = &cases[i];
        const double got = coord_share_cap(c->w, c->n, c->share);
        if (isinf(c->cap)) {
            if (!isinf(got))
                fail_msg("case %zu: cap %g, want none", i, got);
        } else if (!(fabs(got - c->cap) < 1e-9 * c->cap)) {
            fail_msg("case %zu: cap %g, want %g", i, got, c->cap);
        }
    }
}

/* For random weights: the capped weights meet the share whenever that is
 * possible, and a capped device holds exactly the share (c is the largest
 * cap that works); otherwise every weight is the smallest. */
static void test_share_cap_property(void **state)
{
    (void)state;
    struct fl_rng r;
    fl_rng_seed(&r, 4242);
    for (int iter = 0; iter < 3000; iter++) {
        double w[40];
        const size_t n = 1 + (size_t)fl_rng_below(&r, 40);
        const double s = 0.05 + 0.95 * fl_rng_uniform(&r);
        double minw = INFINITY;
        for (size_t i = 0; i < n; i++) {
            w[i] = fl_rng_below(&r, 4) == 0
                       ? 1 + (double)fl_rng_below(&r, 1000000)
                       : 1 + (double)fl_rng_below(&r, 100);
            minw = fmin(minw, w[i]);
        }
        const double c = coord_share_cap(w, n, s);
        double total = 0, max = 0;
        size_t capped = 0;
        for (size_t i = 0; i < n; i++) {
            const double x = fmin(w[i], c);
            total += x;
            max = fmax(max, x);
            capped += w[i] > c;
        }
        if ((double)n * s < 1 - 1e-12) {
            assert_true(fabs(c - minw) <= 1e-9 * minw);
            continue;
        }
        assert_true(max <= s * total * (1 + 1e-9));
        if (capped > 0)
            assert_true(max >= s * total * (1 - 1e-9));
        else
            assert_true(isinf(c));
    }
}

/* Random updates streamed through the guard into an agg give the same
 * model as the weighted mean with the capped weights computed directly. */
static void test_streaming_equals_direct(void **state)
{
    (void)state;
    enum { N = 50 };
    static const double shares[] = {1.0, 0.5, 0.34, 0.2, 0.05};
    struct fl_rng r;
    fl_rng_seed(&r, 77);
    float init[N];
    for (int i = 0; i < N; i++)
        init[i] = (float)i * 0.01f;
    for (int iter = 0; iter < 400; iter++) {
        const double share = shares[iter % FL_ARRAY_LEN(shares)];
        const struct coord_agg_config acfg = {N, 1.0, 0.0, 1};
        const struct coord_guard_config gcfg = {share, 0, 0, 0, 5};
        struct coord_agg *a = NULL;
        struct coord_guard *g = NULL;
        assert_int_equal(coord_agg_new(&acfg, init, &a), FL_OK);
        assert_int_equal(coord_guard_new(&gcfg, &g), FL_OK);
        const size_t nupd = 1 + (size_t)fl_rng_below(&r, 12);
        static uint32_t idx[12][N];
        static float val[12][N];
        size_t k[12];
        double w[12];
        for (size_t u = 0; u < nupd; u++) {
            k[u] = 0;
            for (uint32_t i = 0; i < N; i++) {
                if (fl_rng_below(&r, 3) == 0) {
                    idx[u][k[u]] = i;
                    val[u][k[u]++] = (float)fl_rng_normal(&r);
                }
            }
            w[u] = fl_rng_below(&r, 3) == 0
                       ? 1 + (double)fl_rng_below(&r, 100000)
                       : 1 + (double)fl_rng_below(&r, 50);
            assert_int_equal(coord_guard_add(g, a, idx[u], val[u], k[u],
                                             w[u], 1.0),
                             FL_OK);
        }
        assert_int_equal(coord_guard_count(g), nupd);
        uint32_t capped = 99;
        assert_int_equal(coord_guard_finish(g, a, &capped), FL_OK);
        assert_int_equal(coord_agg_count(a), nupd);
        const double c = coord_share_cap(w, nupd, share);
        double ref[N] = {0}, total = 0;
        uint32_t want_capped = 0;
        for (size_t u = 0; u < nupd; u++) {
            const double wu = fmin(w[u], c);
            want_capped += w[u] > c;
            total += wu;
            for (size_t j = 0; j < k[u]; j++)
                ref[idx[u][j]] += wu * val[u][j];
        }
        assert_int_equal(capped, want_capped);
        assert_int_equal(coord_agg_commit(a), FL_OK);
        const float *p = coord_agg_params(a);
        for (int i = 0; i < N; i++) {
            const double want = init[i] + ref[i] / total;
            if (!(fabs(p[i] - want) <= 1e-4 * (1 + fabs(want))))
                fail_msg("iter %d share %g param %d: %g, want %g", iter,
                         share, i, (double)p[i], want);
        }
        coord_guard_committed(g);
        assert_int_equal(coord_guard_count(g), 0);
        coord_guard_destroy(&g);
        assert_null(g);
        coord_agg_destroy(&a);
    }
}

static void test_guard_config_and_nomem(void **state)
{
    (void)state;
    struct coord_guard *g = NULL;
    static const struct coord_guard_config bad[] = {
        {0.04, 0, 0, 0, 1}, {1.01, 0, 0, 0, 1}, {0.5, -1, 0, 0, 1},
        {0.5, 0, -2, 0, 1}, {0.5, INFINITY, 0, 0, 1}, {0.5, 0, 0, 3, 0},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(bad); i++) {
        assert_int_equal(coord_guard_new(&bad[i], &g), FL_ERR_INVALID_ARG);
        assert_null(g);
    }
    /* every allocation failure leaves nothing changed */
    const struct coord_guard_config cfg = {0.25, 0, 10, 3, 5};
    const struct coord_agg_config acfg = {8, 1.0, 0.0, 1};
    static const float init[8];
    static const uint32_t idx[3] = {1, 4, 7};
    static const float val[3] = {1, 2, 3};
    for (long n = 0; n < 40; n++) {
        struct coord_agg *a = NULL;
        assert_int_equal(coord_agg_new(&acfg, init, &a), FL_OK);
        fl_alloc_fail_after(n);
        enum fl_err rc = coord_guard_new(&cfg, &g);
        uint32_t added = 0;
        for (int u = 0; rc == FL_OK && u < 6; u++) {
            rc = coord_guard_add(g, a, idx, val, 3, 1.0 + u, 1.0);
            added += rc == FL_OK;
        }
        fl_alloc_fail_reset();
        if (g != NULL) {
            assert_int_equal(coord_guard_count(g), added);
            assert_int_equal(coord_guard_finish(g, a, NULL), FL_OK);
            assert_int_equal(coord_agg_count(a), added);
        }
        coord_guard_destroy(&g);
        coord_agg_destroy(&a);
    }
}

/* ------------------------------------------------------------ norm bound */

static void test_norm_bound(void **state)
{
    (void)state;
    static const float v[4] = {3, 4, 0, 0};
    struct coord_guard *g = NULL;
    const struct coord_guard_config cfg = {1.0, 0, 10, 0, 1};
    assert_int_equal(coord_guard_new(&cfg, &g), FL_OK);
    assert_true(isinf(coord_guard_norm_bound(g)));     /* no round yet */
    assert_int_equal(coord_guard_check_norm(g, 1e30), FL_OK);
    assert_int_equal(coord_guard_check_norm(g, NAN), FL_ERR_NORM);

    const struct coord_agg_config acfg = {4, 1.0, 0.0, 1};
    static const float init[4];
    static const uint32_t idx[2] = {0, 1};
    struct coord_agg *a = NULL;
    assert_int_equal(coord_agg_new(&acfg, init, &a), FL_OK);
    static const double norms[] = {1, 2, 3, 100};
    for (size_t i = 0; i < FL_ARRAY_LEN(norms); i++)
        assert_int_equal(coord_guard_add(g, a, idx, v, 2, 1, norms[i]),
                         FL_OK);
    /* abandoned: the reference does not move */
    coord_guard_discard(g);
    coord_agg_discard(a);
    assert_true(isinf(coord_guard_norm_bound(g)));
    for (size_t i = 0; i < FL_ARRAY_LEN(norms); i++)
        assert_int_equal(coord_guard_add(g, a, idx, v, 2, 1, norms[i]),
                         FL_OK);
    coord_guard_committed(g);                      /* median 2.5 */
    assert_true(fabs(coord_guard_norm_bound(g) - 25) < 1e-12);
    assert_int_equal(coord_guard_check_norm(g, 25), FL_OK);
    assert_int_equal(coord_guard_check_norm(g, 25.001), FL_ERR_NORM);
    /* a round of zero updates gives no bound rather than 0 */
    assert_int_equal(coord_guard_add(g, a, idx, v, 2, 1, 0), FL_OK);
    coord_guard_committed(g);
    assert_true(isinf(coord_guard_norm_bound(g)));
    coord_guard_destroy(&g);

    /* absolute and adaptive together: the smaller one */
    const struct coord_guard_config both = {1.0, 7, 2, 0, 1};
    assert_int_equal(coord_guard_new(&both, &g), FL_OK);
    assert_true(coord_guard_norm_bound(g) == 7);
    assert_int_equal(coord_guard_add(g, a, idx, v, 2, 1, 1), FL_OK);
    coord_guard_committed(g);
    assert_true(coord_guard_norm_bound(g) == 2);
    coord_guard_destroy(&g);
    coord_agg_destroy(&a);
}

/* ------------------------------------------------------------ penalty box */

static void test_penalty_box(void **state)
{
    (void)state;
    struct coord_guard *g = NULL;
    const struct coord_guard_config cfg = {1.0, 0, 0, 3, 5};
    assert_int_equal(coord_guard_new(&cfg, &g), FL_OK);
    assert_false(coord_guard_ignored(g, 7, 1));
    /* two strikes, forgiven, two more: not yet */
    assert_false(coord_guard_strike(g, 7, 2));
    assert_false(coord_guard_strike(g, 7, 2));
    coord_guard_forgive(g, 7);
    assert_false(coord_guard_strike(g, 7, 2));
    assert_false(coord_guard_strike(g, 7, 2));
    assert_int_equal(coord_guard_boxed(g), 0);
    /* the third in a row: ignored in rounds 2 .. 6 */
    assert_true(coord_guard_strike(g, 7, 2));
    assert_int_equal(coord_guard_boxed(g), 1);
    assert_false(coord_guard_strike(g, 7, 2)); /* already in the box */
    coord_guard_forgive(g, 7);                 /* no way out early */
    assert_false(coord_guard_ignored(g, 6, 3));
    assert_false(coord_guard_ignored(g, 100000, 3));
    for (uint64_t round = 1; round <= 6; round++)
        assert_true(coord_guard_ignored(g, 7, round));
    assert_true(coord_guard_first_drop(g, 7, 3));
    assert_false(coord_guard_first_drop(g, 7, 3));
    assert_true(coord_guard_first_drop(g, 7, 4));
    /* released in round 7 with a clean slate */
    assert_false(coord_guard_ignored(g, 7, 7));
    assert_int_equal(coord_guard_boxed(g), 0);
    assert_false(coord_guard_strike(g, 7, 8));
    assert_false(coord_guard_strike(g, 7, 8));
    assert_true(coord_guard_strike(g, 7, 8));
    coord_guard_destroy(&g);

    const struct coord_guard_config off = {1.0, 0, 0, 0, 5};
    assert_int_equal(coord_guard_new(&off, &g), FL_OK);
    for (int i = 0; i < 100; i++)
        assert_false(coord_guard_strike(g, 1, 1));
    assert_false(coord_guard_ignored(g, 1, 1));
    coord_guard_destroy(&g);
}

/* ------------------------------------------------------------ escaping */

static void test_escape(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"w-1.a:b_c", 64, "w-1.a:b_c"},
        {"a\nb", 64, "a\\x0ab"},
        {"it's", 64, "it\\x27s"},
        {"back\\slash", 64, "back\\x5cslash"},
        {"\x1b[31mred", 64, "\\x1b[31mred"},
        {"\xff\xfe", 64, "\\xff\\xfe"},
        {NULL, 64, "(null)"},
        {"abcdefghij", 8, "abcd..."},
        {"ab\ncdefghij", 8, "ab\\x..."},
        {"abc", 4, "abc"},
        {"abcd", 4, "..."},
        {"abcd", 1, ""},
        {"", 8, ""},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        char buf[64];
        memset(buf, 'Z', sizeof(buf));
        const char *r = coord_escape(cases[i].in, buf, cases[i].len);
        assert_ptr_equal(r, buf);
        assert_string_equal(buf, cases[i].out);
        assert_true(strlen(buf) < cases[i].len);
    }
}

/* ------------------------------------------------------------ flags */

static enum fl_err parse(struct coord_config *cfg, const char *line)
{
    return th_config_try(cfg, line, NULL, 0);
}

static void test_flags(void **state)
{
    (void)state;
    struct coord_config cfg;
    assert_int_equal(parse(&cfg, ""), FL_OK);
    assert_true(cfg.max_device_share == 0.5);
    assert_true(cfg.max_update_norm == 0);
    assert_true(cfg.update_norm_factor == 10);
    assert_int_equal(cfg.penalty_after, 3);
    assert_int_equal(cfg.penalty_rounds, 5);
    coord_config_release(&cfg);

    static const struct {
        const char *flags;
        double share, norm, factor;
        uint32_t after, rounds;
    } good[] = {
        {"--max-device-share 0.3 --max-update-norm 7,adaptive:4 "
         "--penalty-after 0 --penalty-rounds 2", 0.3, 7, 4, 0, 2},
        {"--max-update-norm adaptive:2.5,12", 0.5, 12, 2.5, 3, 5},
        {"--max-update-norm 3.5", 0.5, 3.5, 0, 3, 5},
        {"--max-update-norm off --max-device-share 1", 1, 0, 0, 3, 5},
        {"--max-device-share 0.05", 0.05, 0, 10, 3, 5},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(good); i++) {
        if (parse(&cfg, good[i].flags) != FL_OK)
            fail_msg("'%s' refused", good[i].flags);
        assert_true(cfg.max_device_share == good[i].share);
        assert_true(cfg.max_update_norm == good[i].norm);
        assert_true(cfg.update_norm_factor == good[i].factor);
        assert_int_equal(cfg.penalty_after, good[i].after);
        assert_int_equal(cfg.penalty_rounds, good[i].rounds);
        coord_config_release(&cfg);
    }
    static const char *const bad[] = {
        "--max-device-share 0.04", "--max-device-share 1.5",
        "--max-device-share x", "--max-update-norm adaptive:",
        "--max-update-norm 1,2", "--max-update-norm adaptive:3,adaptive:4",
        "--max-update-norm -1", "--max-update-norm 0",
        "--max-update-norm 1,adaptive:2,3", "--max-update-norm ,",
        "--max-update-norm adaptive:0", "--penalty-rounds 0",
        "--penalty-after -1",
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(bad); i++) {
        if (parse(&cfg, bad[i]) != FL_ERR_INVALID_ARG)
            fail_msg("'%s' accepted", bad[i]);
        coord_config_release(&cfg);
    }
    /* --check-config prints what reads back */
    assert_int_equal(parse(&cfg, "--max-update-norm 7,adaptive:4"), FL_OK);
    char *text = NULL;
    size_t tlen = 0;
    FILE *f = open_memstream(&text, &tlen);
    assert_non_null(f);
    coord_config_print(&cfg, f);
    fclose(f);
    assert_non_null(strstr(text, "max-update-norm = 7,adaptive:4\n"));
    assert_non_null(strstr(text, "max-device-share = 0.5\n"));
    assert_non_null(strstr(text, "penalty-after = 3\n"));
    free(text);
    coord_config_release(&cfg);
}

/* ------------------------------------------------------------ engine */

struct harness {
    struct coord_config cfg;
    struct mdl_layout layout;
    float init[DIM];
    struct coord_report *report;
    struct coord_engine *e;
    struct th_outbox ob;
    uint64_t now;
    struct cmp_ctx *ctx;
};

static enum fl_err fake_send(void *ctx, const uint8_t *rid, size_t rid_len,
                             uint8_t *buf, size_t len)
{
    struct harness *h = ctx;
    return th_outbox_send(&h->ob, rid, rid_len, buf, len);
}

static struct harness *harness_new(const char *flags)
{
    struct harness *h = calloc(1, sizeof(*h));
    char err[256];
    assert_non_null(h);
    th_config(&h->cfg, flags);
    struct mdl_layout *l = &h->layout;
    l->dim = DIM;
    l->ntensors = 1;
    snprintf(l->tensors[0].name, MDL_TENSOR_NAME_MAX, "w");
    l->tensors[0].size = DIM;
    l->tensors[0].ndim = 1;
    l->tensors[0].shape[0] = DIM;
    for (int i = 0; i < DIM; i++)
        h->init[i] = (float)i * 0.5f;
    assert_int_equal(coord_report_open(NULL, &h->report, err, sizeof(err)),
                     FL_OK);
    const struct coord_io io = {.ctx = h, .send = fake_send};
    h->e = th_engine(&h->cfg, l, h->init, &io, h->report, 77);
    h->ctx = cmp_ctx_new();
    assert_non_null(h->ctx);
    h->now = 100 * S;
    coord_engine_start(h->e, h->now);
    return h;
}

static void harness_free(struct harness *h)
{
    coord_engine_destroy(&h->e);
    coord_config_release(&h->cfg);
    coord_report_close(&h->report);
    th_outbox_release(&h->ob);
    cmp_ctx_destroy(&h->ctx);
    free(h);
}

/* The first message queued for rid with this body (any body for
 * PB_BODY_NONE), taken off the queue; NULL when there is none. */
static const struct pb_envelope *take(struct harness *h, uint8_t rid,
                                      enum pb_body body)
{
    return th_outbox_take(&h->ob, rid, body, false, NULL, NULL);
}

static void feed(struct harness *h, uint8_t rid, const uint8_t *buf,
                 size_t len)
{
    th_feed(h->e, rid, NULL, buf, len, h->now);
}

static void feed_env(struct harness *h, uint8_t rid,
                     const struct pb_envelope *env)
{
    th_feed_env(h->e, rid, NULL, env, h->now);
}

static void hello(struct harness *h, uint8_t rid, const char *id)
{
    struct pb_envelope env = {.version = 1, .body = PB_BODY_HELLO};
    env.hello.device_id = id;
    env.hello.n_samples = 100;
    feed_env(h, rid, &env);
    assert_non_null(take(h, rid, PB_BODY_WELCOME));
}

/* The round of the Task queued for rid (taken), 0 when there is none. */
static uint64_t task_round(struct harness *h, uint8_t rid)
{
    const struct pb_envelope *t = take(h, rid, PB_BODY_TASK);
    return t != NULL ? t->task.round : 0;
}

/* An update of k entries: idx[i] = i * 2, val[i] = scale * (i + 1). */
static void update(struct harness *h, uint8_t rid, uint64_t round,
                   uint64_t samples, size_t k, float scale)
{
    uint32_t idx[DIM];
    float val[DIM];
    const uint8_t *payload = NULL;
    size_t plen = 0;
    struct cmp_meta meta;
    const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP32,
                                 CMP_CODEC_NONE, 0};
    for (size_t i = 0; i < k; i++) {
        idx[i] = (uint32_t)(2 * i);
        val[i] = scale * (float)(i + 1);
    }
    assert_int_equal(cmp_sparse_encode(h->ctx, DIM, idx, val, k, &p, &meta,
                                       &payload, &plen),
                     FL_OK);
    struct pb_envelope env = {.version = 1, .body = PB_BODY_UPDATE};
    env.update.round = round;
    env.update.n_samples = samples;
    env.update.delta = (struct pb_tensor){
        .dimension = DIM, .k = meta.k, .index_coding = meta.index_coding,
        .value_coding = meta.value_coding, .codec = meta.codec,
        .raw_size = meta.raw_size, .checksum = meta.checksum,
        .payload = payload, .payload_len = plen};
    feed_env(h, rid, &env);
}

/* The code of the Reject queued for rid (its reason into why), or -1. */
static int reject_code(struct harness *h, uint8_t rid, char *why,
                       size_t len)
{
    const struct pb_envelope *r = take(h, rid, PB_BODY_REJECT);
    if (r == NULL)
        return -1;
    if (why != NULL)
        snprintf(why, len, "%s", r->reject.reason);
    return (int)r->reject.code;
}

static const struct coord_round_row *last_row(struct harness *h)
{
    return coord_engine_last_row(h->e);
}

/* Round 1 with devices 1 and 2 (k 4, scale 1): committed. */
static void first_round(struct harness *h)
{
    hello(h, 1, "d1");
    hello(h, 2, "d2");
    coord_engine_tick(h->e, h->now);
    assert_int_equal(task_round(h, 1), 1);
    assert_int_equal(task_round(h, 2), 1);
    update(h, 1, 1, 100, 4, 1.0f);
    update(h, 2, 1, 100, 4, 1.0f);
    coord_engine_tick(h->e, h->now);
    assert_true(last_row(h)->committed);
    assert_true(isnan(last_row(h)->norm_bound) ||
                isinf(last_row(h)->norm_bound));
}

static void test_engine_norm_bound(void **state)
{
    (void)state;
    char why[256];
    struct harness *h = harness_new("--min-devices 2 --density 0.25");
    first_round(h);
    /* norm of k 4, scale 1: sqrt(1 + 4 + 9 + 16); the bound is 10 x it */
    const double n1 = sqrt(30.0);
    assert_int_equal(task_round(h, 1), 2);
    assert_int_equal(task_round(h, 2), 2);
    const struct coord_agg *a = coord_engine_agg(h->e);
    float before[DIM];
    memcpy(before, coord_agg_params(a), sizeof(before));
    update(h, 1, 2, 100, 4, 10.5f);        /* 10.5 x the median: refused */
    assert_int_equal(reject_code(h, 1, why, sizeof(why)), FL_ERR_NORM);
    assert_non_null(strstr(why, "update norm over the bound: L2 norm"));
    update(h, 2, 2, 100, 4, 9.5f);         /* under the bound */
    assert_int_equal(reject_code(h, 2, NULL, 0), -1);
    coord_engine_tick(h->e, h->now);
    const struct coord_round_row *row = last_row(h);
    assert_int_equal(row->round, 2);
    assert_true(row->committed);
    assert_int_equal(row->reported, 1);
    assert_int_equal(row->rejected, 1);
    assert_int_equal(row->rejects[FL_ERR_NORM], 1);
    assert_true(fabs(row->norm_bound - 10 * n1) < 1e-9);
    /* only the accepted update moved the model */
    for (int i = 0; i < DIM; i++) {
        const float want = before[i] + (i % 2 == 0 && i < 8
                                            ? 9.5f * (float)(i / 2 + 1)
                                            : 0.0f);
        assert_true(fabsf(coord_agg_params(a)[i] - want) < 1e-4f);
    }
    harness_free(h);
}

static void test_engine_share_cap(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 3 --density 0.25 "
                                    "--max-samples 1000");
    hello(h, 1, "heavy");
    hello(h, 2, "l1");
    hello(h, 3, "l2");
    coord_engine_tick(h->e, h->now);
    for (uint8_t r = 1; r <= 3; r++)
        assert_int_equal(task_round(h, r), 1);
    update(h, 1, 1, 1000, 1, 8.0f);        /* entry 0: 8 */
    update(h, 2, 1, 10, 1, 2.0f);          /* entry 0: 2 */
    update(h, 3, 1, 10, 1, 4.0f);          /* entry 0: 4 */
    coord_engine_tick(h->e, h->now);
    const struct coord_round_row *row = last_row(h);
    assert_true(row->committed);
    assert_int_equal(row->weight_capped, 1);
    /* heavy capped to 20 = half of 40: (20 * 8 + 10 * 2 + 10 * 4) / 40 */
    const float got = coord_agg_params(coord_engine_agg(h->e))[0];
    assert_true(fabsf(got - (h->init[0] + 5.5f)) < 1e-5f);
    harness_free(h);
}

static void test_engine_penalty_box(void **state)
{
    (void)state;
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0x01};
    struct harness *h = harness_new("--min-devices 3 --density 0.25 "
                                    "--rounds 20 --penalty-rounds 2");
    hello(h, 1, "d1");
    hello(h, 2, "d2");
    hello(h, 3, "bad");
    coord_engine_tick(h->e, h->now);
    for (uint8_t r = 1; r <= 3; r++)
        assert_int_equal(task_round(h, r), 1);
    feed(h, 3, garbage, sizeof(garbage));
    assert_int_equal(reject_code(h, 3, NULL, 0), FL_ERR_PROTO);
    update(h, 3, 1, 0, 4, 1.0f);
    assert_int_equal(reject_code(h, 3, NULL, 0), FL_ERR_SAMPLES);
    feed(h, 3, garbage, sizeof(garbage)); /* the third: in the box */
    assert_int_equal(reject_code(h, 3, NULL, 0), FL_ERR_PROTO);
    /* dropped unread: one Reject 52 per round, then silence */
    update(h, 3, 1, 100, 4, 1.0f);
    assert_int_equal(reject_code(h, 3, NULL, 0), FL_ERR_IGNORED);
    feed(h, 3, garbage, sizeof(garbage));
    coord_engine_on_message(h->e, &(uint8_t){3}, 1, garbage,
                            sizeof(garbage), 2, 10, h->now);
    assert_int_equal(reject_code(h, 3, NULL, 0), -1);
    /* the round does not wait for it */
    update(h, 1, 1, 100, 4, 1.0f);
    update(h, 2, 1, 100, 4, 1.0f);
    coord_engine_tick(h->e, h->now);
    const struct coord_round_row *row = last_row(h);
    assert_int_equal(row->round, 1);
    assert_true(row->committed);
    assert_int_equal(row->selected, 3);
    assert_int_equal(row->reported, 2);
    assert_int_equal(row->rejected, 1);
    assert_int_equal(row->rejects[FL_ERR_PROTO], 2);
    assert_int_equal(row->rejects[FL_ERR_SAMPLES], 1);
    assert_int_equal(row->rejects[FL_ERR_IGNORED], 3);
    assert_int_equal(row->multipart, 0); /* dropped before that check */
    /* rounds 2 and 3 wait for a third device that may be drawn */
    assert_int_equal(task_round(h, 1), 0);
    struct pb_envelope bye = {.version = 1, .body = PB_BODY_BYE};
    hello(h, 4, "d4");
    coord_engine_tick(h->e, h->now);
    for (uint64_t round = 2; round <= 4; round++) {
        assert_int_equal(task_round(h, 1), round);
        assert_int_equal(task_round(h, 2), round);
        assert_int_equal(task_round(h, 4), round);
        assert_int_equal(task_round(h, 3), round == 4 ? 4 : 0);
        if (round < 4) {
            update(h, 3, round, 100, 4, 1.0f);
            assert_int_equal(reject_code(h, 3, NULL, 0), FL_ERR_IGNORED);
        } else {
            update(h, 3, round, 100, 4, 1.0f);
            assert_int_equal(reject_code(h, 3, NULL, 0), -1);
        }
        update(h, 1, round, 100, 4, 1.0f);
        update(h, 2, round, 100, 4, 1.0f);
        update(h, 4, round, 100, 4, 1.0f);
        coord_engine_tick(h->e, h->now);
        row = last_row(h);
        assert_int_equal(row->round, round);
        assert_true(row->committed);
        assert_int_equal(row->joined, round == 4 ? 4 : 3);
        assert_int_equal(row->selected, round == 4 ? 4 : 3);
        assert_int_equal(row->reported, round == 4 ? 4 : 3);
    }
    /* a Bye from a device that is not in the box is read */
    feed_env(h, 4, &bye);
    assert_int_equal(coord_devtab_connected(coord_engine_devices(h->e)), 3);
    harness_free(h);
}

static void test_engine_late_versus_replay(void **state)
{
    (void)state;
    struct harness *h = harness_new("--min-devices 2 --density 0.25 "
                                    "--quorum 0.5 --round-timeout 10 "
                                    "--penalty-after 0");
    hello(h, 1, "d1");
    hello(h, 2, "d2");
    coord_engine_tick(h->e, h->now);
    update(h, 1, 1, 100, 4, 1.0f);
    h->now += 10 * S;                      /* d2 misses round 1 */
    coord_engine_tick(h->e, h->now);
    assert_int_equal(coord_engine_round(h->e), 2);
    update(h, 2, 1, 100, 4, 1.0f);         /* late, once */
    assert_int_equal(reject_code(h, 2, NULL, 0), FL_ERR_LATE);
    update(h, 2, 1, 100, 4, 1.0f);         /* the same again: a replay */
    assert_int_equal(reject_code(h, 2, NULL, 0), FL_ERR_STALE_ROUND);
    update(h, 1, 1, 100, 4, 1.0f);         /* d1 answered round 1 */
    assert_int_equal(reject_code(h, 1, NULL, 0), FL_ERR_STALE_ROUND);
    update(h, 1, 0, 100, 4, 1.0f);
    assert_int_equal(reject_code(h, 1, NULL, 0), FL_ERR_STALE_ROUND);
    update(h, 1, 9, 100, 4, 1.0f);         /* the future */
    assert_int_equal(reject_code(h, 1, NULL, 0), FL_ERR_STALE_ROUND);
    coord_engine_on_disconnect(h->e);
    coord_engine_on_disconnect(h->e);
    static const uint8_t two[] = {1, 2};
    coord_engine_on_message(h->e, &(uint8_t){1}, 1, two, sizeof(two), 1, 5,
                            h->now);
    assert_int_equal(reject_code(h, 1, NULL, 0), -1);
    update(h, 1, 2, 100, 4, 1.0f);
    update(h, 2, 2, 100, 4, 1.0f);
    coord_engine_tick(h->e, h->now);
    const struct coord_round_row *row = last_row(h);
    assert_int_equal(row->round, 2);
    assert_true(row->committed);
    assert_int_equal(row->reported, 2);
    assert_int_equal(row->late, 1);
    assert_int_equal(row->rejects[FL_ERR_LATE], 1);
    assert_int_equal(row->rejects[FL_ERR_STALE_ROUND], 4);
    assert_int_equal(row->disconnects, 2);
    assert_int_equal(row->multipart, 1);
    harness_free(h);
}

static void test_engine_reject_details(void **state)
{
    (void)state;
    char why[256];
    struct harness *h = harness_new("--min-devices 1 --density 0.25 "
                                    "--max-samples 1000");
    hello(h, 1, "d1");
    coord_engine_tick(h->e, h->now);
    update(h, 1, 1, 2000, 4, 1.0f);
    assert_int_equal(reject_code(h, 1, why, sizeof(why)), FL_ERR_SAMPLES);
    assert_string_equal(why, "sample count out of range: 2000 is not in "
                             "[1, 1000]");
    /* a worker's Reject with control characters is logged escaped (and
     * answers nothing) */
    struct pb_envelope env = {.version = 1, .body = PB_BODY_REJECT};
    env.reject.code = 5;
    env.reject.reason = "x\nfake: round 9 committed\x1b[0m";
    feed_env(h, 1, &env);
    assert_int_equal(reject_code(h, 1, NULL, 0), -1);
    harness_free(h);
}

int main(void)
{
    fl_log_init("test", NULL);
    fl_log_set_level(getenv("FL_TEST_LOG") != NULL ? FL_LOG_DEBUG
                                                   : FL_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_share_cap_table),
        cmocka_unit_test(test_share_cap_property),
        cmocka_unit_test(test_streaming_equals_direct),
        cmocka_unit_test(test_guard_config_and_nomem),
        cmocka_unit_test(test_norm_bound),
        cmocka_unit_test(test_penalty_box),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_engine_norm_bound),
        cmocka_unit_test(test_engine_share_cap),
        cmocka_unit_test(test_engine_penalty_box),
        cmocka_unit_test(test_engine_late_versus_replay),
        cmocka_unit_test(test_engine_reject_details),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
