/* Unit tests for model/mdl_partition: IID and Dirichlet splits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "model/mdl_partition.h"

#define NCLASSES 10u

/* n labels, balanced over the classes, in a seeded random order */
static uint8_t *make_labels(uint32_t n, uint64_t seed)
{
    struct fl_rng rng;
    uint8_t *y = malloc(n);
    assert_non_null(y);
    for (uint32_t i = 0; i < n; i++)
        y[i] = (uint8_t)(i % NCLASSES);
    fl_rng_seed(&rng, seed);
    for (uint32_t i = n; i > 1; i--) {
        const uint32_t j = (uint32_t)fl_rng_below(&rng, i);
        const uint8_t t = y[i - 1];
        y[i - 1] = y[j];
        y[j] = t;
    }
    return y;
}

static uint32_t *run(const uint8_t *y, uint32_t n,
                     const struct mdl_partition_config *cfg)
{
    uint32_t *shard_of = malloc((size_t)n * sizeof(*shard_of));
    assert_non_null(shard_of);
    assert_int_equal(mdl_partition(y, n, NCLASSES, cfg, shard_of), FL_OK);
    return shard_of;
}

/* Mean over shards (weighted by size) of the label entropy, in units of
 * log(NCLASSES): 1 = perfectly mixed, 0 = one class per shard. */
static double label_entropy(const uint8_t *y, const uint32_t *shard_of,
                            uint32_t n, uint32_t nshards)
{
    double total = 0.0;
    uint32_t *cnt = calloc((size_t)nshards * NCLASSES, sizeof(*cnt));
    assert_non_null(cnt);
    for (uint32_t i = 0; i < n; i++)
        cnt[shard_of[i] * NCLASSES + y[i]]++;
    for (uint32_t s = 0; s < nshards; s++) {
        uint32_t size = 0;
        double h = 0.0;
        for (uint32_t c = 0; c < NCLASSES; c++)
            size += cnt[s * NCLASSES + c];
        for (uint32_t c = 0; c < NCLASSES && size > 0; c++) {
            const double p = (double)cnt[s * NCLASSES + c] / size;
            if (p > 0)
                h -= p * log(p);
        }
        total += h * size;
    }
    free(cnt);
    return total / n / log((double)NCLASSES);
}

/* ---- parsing */

struct parse_case {
    const char *s;
    int rc;
    enum mdl_partition_kind kind;
    double alpha;
};

static const struct parse_case parse_cases[] = {
    {"iid", 0, MDL_PARTITION_IID, 0.0},
    {"dirichlet:0.5", 0, MDL_PARTITION_DIRICHLET, 0.5},
    {"dirichlet:100", 0, MDL_PARTITION_DIRICHLET, 100.0},
    {"dirichlet:1e-3", 0, MDL_PARTITION_DIRICHLET, 1e-3},
    {"dirichlet:", -1, 0, 0},
    {"dirichlet", -1, 0, 0},
    {"dirichlet:0", -1, 0, 0},
    {"dirichlet:-1", -1, 0, 0},
    {"dirichlet:0.5x", -1, 0, 0},
    {"dirichlet:nan", -1, 0, 0},
    {"dirichlet:inf", -1, 0, 0},
    {"IID", -1, 0, 0},
    {"iid ", -1, 0, 0},
    {"", -1, 0, 0},
    {"noniid", -1, 0, 0},
};

static void test_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(parse_cases); i++) {
        const struct parse_case *c = &parse_cases[i];
        struct mdl_partition_config cfg = {.kind = MDL_PARTITION_IID,
                                           .alpha = -7.0};
        const int rc = mdl_partition_parse(c->s, &cfg);
        if (rc != c->rc)
            fail_msg("'%s': rc %d, want %d", c->s, rc, c->rc);
        if (rc == 0) {
            assert_int_equal(cfg.kind, c->kind);
            if (c->kind == MDL_PARTITION_DIRICHLET)
                assert_true(cfg.alpha == c->alpha);
        }
    }
    assert_int_equal(mdl_partition_parse(NULL, NULL), -1);
}

/* ---- every sample in exactly one shard */

static void check_exact_cover(const uint32_t *shard_of, uint32_t n,
                              uint32_t nshards)
{
    uint8_t *seen = calloc(n, 1);
    uint64_t total = 0;
    assert_non_null(seen);
    for (uint32_t i = 0; i < n; i++)
        assert_true(shard_of[i] < nshards);
    for (uint32_t s = 0; s < nshards; s++) {
        uint32_t *idx = NULL, count = 0;
        assert_int_equal(mdl_partition_indices(shard_of, n, s, &idx, &count),
                         FL_OK);
        for (uint32_t k = 0; k < count; k++) {
            assert_true(idx[k] < n);
            assert_true(k == 0 || idx[k] > idx[k - 1]); /* ascending */
            assert_int_equal(shard_of[idx[k]], s);
            assert_int_equal(seen[idx[k]], 0);
            seen[idx[k]] = 1;
        }
        total += count;
        fl_free(idx);
    }
    assert_int_equal(total, n);
    free(seen);
}

static void test_exact_cover_many_configs(void **state)
{
    (void)state;
    const double alphas[] = {0.0 /* iid */, 0.01, 0.1, 0.5, 5.0, 1000.0};
    const uint32_t shards[] = {1, 3, 16, 100};
    const uint32_t ns[] = {997, 6000};
    for (size_t a = 0; a < FL_ARRAY_LEN(alphas); a++)
        for (size_t s = 0; s < FL_ARRAY_LEN(shards); s++)
            for (size_t k = 0; k < FL_ARRAY_LEN(ns); k++) {
                uint8_t *y = make_labels(ns[k], 3);
                struct mdl_partition_config cfg = {
                    .kind = alphas[a] > 0 ? MDL_PARTITION_DIRICHLET
                                          : MDL_PARTITION_IID,
                    .alpha = alphas[a], .nshards = shards[s],
                    .seed = 42 + a, .min_shard = (uint32_t)(k * 5)};
                uint32_t *shard_of = run(y, ns[k], &cfg);
                check_exact_cover(shard_of, ns[k], shards[s]);
                free(shard_of);
                free(y);
            }
}

/* ---- determinism */

static void test_reproducible_per_seed(void **state)
{
    (void)state;
    const uint32_t n = 5000;
    uint8_t *y = make_labels(n, 9);
    for (int kind = 0; kind <= 1; kind++) {
        struct mdl_partition_config cfg = {
            .kind = kind ? MDL_PARTITION_DIRICHLET : MDL_PARTITION_IID,
            .alpha = 0.3, .nshards = 16, .seed = 1234, .min_shard = 10};
        uint32_t *a = run(y, n, &cfg), *b = run(y, n, &cfg), *c;
        assert_memory_equal(a, b, n * sizeof(*a));
        cfg.seed = 1235;
        c = run(y, n, &cfg);
        assert_memory_not_equal(a, c, n * sizeof(*a));
        free(a);
        free(b);
        free(c);
    }
    free(y);
}

/* IID deals the shuffled samples round-robin: sizes differ by at most 1. */
static void test_iid_round_robin_sizes(void **state)
{
    (void)state;
    const uint8_t y[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1};
    struct mdl_partition_config cfg = {.kind = MDL_PARTITION_IID,
                                       .nshards = 3, .seed = 5};
    uint32_t a[12], sizes[3] = {0};
    assert_int_equal(mdl_partition(y, 12, NCLASSES, &cfg, a), FL_OK);
    for (int i = 0; i < 12; i++)
        sizes[a[i]]++;
    assert_int_equal(sizes[0], 4);
    assert_int_equal(sizes[1], 4);
    assert_int_equal(sizes[2], 4);
}

/* ---- balance and skew */

static void test_iid_balanced(void **state)
{
    (void)state;
    const uint32_t n = 10000, nshards = 7;
    uint8_t *y = make_labels(n, 4);
    struct mdl_partition_config cfg = {.kind = MDL_PARTITION_IID,
                                       .nshards = nshards, .seed = 77};
    uint32_t *shard_of = run(y, n, &cfg);
    uint32_t size[7] = {0};
    for (uint32_t i = 0; i < n; i++)
        size[shard_of[i]]++;
    for (uint32_t s = 0; s < nshards; s++)
        assert_in_range(size[s], n / nshards, n / nshards + 1);
    assert_true(label_entropy(y, shard_of, n, nshards) > 0.99);
    free(shard_of);
    free(y);
}

static void test_dirichlet_skew_grows_as_alpha_falls(void **state)
{
    (void)state;
    const uint32_t n = 20000, nshards = 20;
    uint8_t *y = make_labels(n, 5);
    const double alphas[] = {100.0, 1.0, 0.1, 0.01};
    double prev = 2.0;
    for (size_t a = 0; a < FL_ARRAY_LEN(alphas); a++) {
        struct mdl_partition_config cfg = {
            .kind = MDL_PARTITION_DIRICHLET, .alpha = alphas[a],
            .nshards = nshards, .seed = 3};
        uint32_t *shard_of = run(y, n, &cfg);
        const double h = label_entropy(y, shard_of, n, nshards);
        if (!(h < prev))
            fail_msg("alpha %g: entropy %.3f not below %.3f", alphas[a], h,
                     prev);
        if (alphas[a] >= 100.0)
            assert_true(h > 0.97);
        if (alphas[a] <= 0.1)
            assert_true(h < 0.6);
        prev = h;
        free(shard_of);
    }
    free(y);
}

/* ---- min_shard */

static void test_min_shard_respected(void **state)
{
    (void)state;
    const uint32_t n = 3000, nshards = 50, min = 40;
    uint8_t *y = make_labels(n, 6);
    struct mdl_partition_config cfg = {.kind = MDL_PARTITION_DIRICHLET,
                                       .alpha = 0.05, .nshards = nshards,
                                       .seed = 8};
    uint32_t *before = run(y, n, &cfg), *after;
    uint32_t sb[50] = {0}, sa[50] = {0}, small = 0, moved = 0;
    cfg.min_shard = min;
    after = run(y, n, &cfg);
    for (uint32_t i = 0; i < n; i++) {
        sb[before[i]]++;
        sa[after[i]]++;
        moved += before[i] != after[i];
    }
    for (uint32_t s = 0; s < nshards; s++) {
        small += sb[s] < min;
        assert_true(sa[s] >= min);
        if (sb[s] >= min) /* donors stay at or above the minimum */
            assert_true(sa[s] >= min && sa[s] <= sb[s]);
        else /* receivers get exactly what they lacked */
            assert_int_equal(sa[s], min);
    }
    assert_true(small > 0); /* the case really needed a top-up */
    {
        uint32_t lacking = 0;
        for (uint32_t s = 0; s < nshards; s++)
            lacking += sb[s] < min ? min - sb[s] : 0;
        assert_int_equal(moved, lacking); /* no sample moved needlessly */
    }
    check_exact_cover(after, n, nshards);
    free(before);
    free(after);
    free(y);
}

/* min_shard * nshards == n: every shard exactly full. */
static void test_min_shard_tight(void **state)
{
    (void)state;
    const uint32_t n = 1000, nshards = 10;
    uint8_t *y = make_labels(n, 1);
    struct mdl_partition_config cfg = {.kind = MDL_PARTITION_DIRICHLET,
                                       .alpha = 0.01, .nshards = nshards,
                                       .seed = 2, .min_shard = 100};
    uint32_t *shard_of = run(y, n, &cfg), size[10] = {0};
    for (uint32_t i = 0; i < n; i++)
        size[shard_of[i]]++;
    for (uint32_t s = 0; s < nshards; s++)
        assert_int_equal(size[s], 100);
    free(shard_of);
    free(y);
}

/* ---- errors */

static void test_invalid_args(void **state)
{
    (void)state;
    uint8_t y[20] = {0};
    uint32_t out[20];
    struct mdl_partition_config ok = {.kind = MDL_PARTITION_IID,
                                      .nshards = 4, .seed = 1};
    struct mdl_partition_config c = ok;
    assert_int_equal(mdl_partition(y, 20, NCLASSES, &c, out), FL_OK);
    c.nshards = 0;
    assert_int_equal(mdl_partition(y, 20, NCLASSES, &c, out),
                     FL_ERR_INVALID_ARG);
    c = ok;
    c.min_shard = 6; /* 4 * 6 > 20 */
    assert_int_equal(mdl_partition(y, 20, NCLASSES, &c, out),
                     FL_ERR_INVALID_ARG);
    c.min_shard = 5;
    assert_int_equal(mdl_partition(y, 20, NCLASSES, &c, out), FL_OK);
    c = ok;
    c.kind = MDL_PARTITION_DIRICHLET;
    c.alpha = 0.0;
    assert_int_equal(mdl_partition(y, 20, NCLASSES, &c, out),
                     FL_ERR_INVALID_ARG);
    c.alpha = NAN;
    assert_int_equal(mdl_partition(y, 20, NCLASSES, &c, out),
                     FL_ERR_INVALID_ARG);
    c.alpha = INFINITY;
    assert_int_equal(mdl_partition(y, 20, NCLASSES, &c, out),
                     FL_ERR_INVALID_ARG);
    c = ok;
    y[7] = NCLASSES; /* label out of range */
    assert_int_equal(mdl_partition(y, 20, NCLASSES, &c, out),
                     FL_ERR_INVALID_ARG);
    y[7] = 0;
    assert_int_equal(mdl_partition(y, 20, 0, &c, out), FL_ERR_INVALID_ARG);
    assert_int_equal(mdl_partition(NULL, 20, NCLASSES, &c, out),
                     FL_ERR_INVALID_ARG);
}

static void test_indices_empty_shard(void **state)
{
    (void)state;
    const uint32_t shard_of[5] = {0, 0, 2, 0, 2};
    uint32_t *idx = NULL, count = 99;
    assert_int_equal(mdl_partition_indices(shard_of, 5, 1, &idx, &count),
                     FL_OK);
    assert_int_equal(count, 0);
    assert_non_null(idx);
    fl_free(idx);
    assert_int_equal(mdl_partition_indices(shard_of, 5, 2, &idx, &count),
                     FL_OK);
    assert_int_equal(count, 2);
    assert_int_equal(idx[0], 2);
    assert_int_equal(idx[1], 4);
    fl_free(idx);
}

/* Every allocation failure gives FL_ERR_NOMEM (ASan checks for leaks). */
static void test_alloc_torture(void **state)
{
    (void)state;
    const uint32_t n = 2000;
    uint8_t *y = make_labels(n, 12);
    uint32_t *shard_of = malloc(n * sizeof(*shard_of)), *idx = NULL, cnt;
    struct mdl_partition_config cfg = {.kind = MDL_PARTITION_DIRICHLET,
                                       .alpha = 0.05, .nshards = 30,
                                       .seed = 1, .min_shard = 30};
    long k;
    assert_non_null(shard_of);
    for (int kind = 0; kind <= 1; kind++) {
        cfg.kind = kind ? MDL_PARTITION_DIRICHLET : MDL_PARTITION_IID;
        for (k = 0; k < 50; k++) {
            fl_alloc_fail_after(k);
            const enum fl_err rc = mdl_partition(y, n, NCLASSES, &cfg,
                                                 shard_of);
            fl_alloc_fail_reset();
            if (rc == FL_OK)
                break;
            assert_int_equal(rc, FL_ERR_NOMEM);
        }
        assert_true(k > 0 && k < 50);
    }
    fl_alloc_fail_after(0);
    assert_int_equal(mdl_partition_indices(shard_of, n, 0, &idx, &cnt),
                     FL_ERR_NOMEM);
    fl_alloc_fail_reset();
    free(shard_of);
    free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_exact_cover_many_configs),
        cmocka_unit_test(test_reproducible_per_seed),
        cmocka_unit_test(test_iid_round_robin_sizes),
        cmocka_unit_test(test_iid_balanced),
        cmocka_unit_test(test_dirichlet_skew_grows_as_alpha_falls),
        cmocka_unit_test(test_min_shard_respected),
        cmocka_unit_test(test_min_shard_tight),
        cmocka_unit_test(test_invalid_args),
        cmocka_unit_test(test_indices_empty_shard),
        cmocka_unit_test(test_alloc_torture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
