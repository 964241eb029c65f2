/* Unit tests for coordinator/coord_ratelim: per-routing-id token buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_util.h"
#include "coordinator/coord_ratelim.h"

#define MS 1000000ULL
#define SEC 1000000000ULL

static enum coord_rl_verdict check(struct coord_ratelim *r, const char *rid,
                                   uint64_t round, uint64_t now)
{
    return coord_ratelim_check(r, (const uint8_t *)rid, strlen(rid), round,
                               now);
}

static void test_new_refuses_bad_arguments(void **state)
{
    (void)state;
    static const struct {
        double rate, burst;
        size_t peers;
        enum fl_err want;
    } cases[] = {
        {50, 100, 10, FL_OK},      {0, 100, 10, FL_ERR_INVALID_ARG},
        {-1, 100, 10, FL_ERR_INVALID_ARG}, {50, 0.5, 10, FL_ERR_INVALID_ARG},
        {50, 100, 0, FL_ERR_INVALID_ARG},
        {50, 100, (1u << 24) + 1, FL_ERR_INVALID_ARG},
        {1e-12, 100, 10, FL_ERR_INVALID_ARG},   /* refill would overflow */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct coord_ratelim *r = NULL;
        assert_int_equal(coord_ratelim_new(cases[i].rate, cases[i].burst,
                                           cases[i].peers, 1, &r),
                         cases[i].want);
        assert_true((r != NULL) == (cases[i].want == FL_OK));
        coord_ratelim_destroy(&r);
        assert_null(r);
    }
    coord_ratelim_destroy(NULL);
}

static void test_burst_then_drop_logged_once_per_round(void **state)
{
    struct coord_ratelim *r = NULL;
    (void)state;
    assert_int_equal(coord_ratelim_new(50, 100, 16, 7, &r), FL_OK);
    for (int i = 0; i < 100; i++)
        assert_int_equal(check(r, "peer-a", 1, 0), COORD_RL_PASS);
    assert_int_equal(check(r, "peer-a", 1, 0), COORD_RL_DROP_FIRST);
    assert_int_equal(check(r, "peer-a", 1, 0), COORD_RL_DROP);
    assert_int_equal(check(r, "peer-a", 1, 1 * MS), COORD_RL_DROP);
    /* another peer is not affected */
    assert_int_equal(check(r, "peer-b", 1, 1 * MS), COORD_RL_PASS);
    /* a new round logs again, once */
    assert_int_equal(check(r, "peer-a", 2, 2 * MS), COORD_RL_DROP_FIRST);
    assert_int_equal(check(r, "peer-a", 2, 3 * MS), COORD_RL_DROP);
    /* 20 ms at 50/s is one token (from 3 ms: 23 ms) */
    assert_int_equal(check(r, "peer-a", 2, 23 * MS), COORD_RL_PASS);
    assert_int_equal(check(r, "peer-a", 2, 23 * MS), COORD_RL_DROP);
    /* after 2 s it is full again: exactly 100 pass */
    int passed = 0;
    for (int i = 0; i < 150; i++)
        passed += check(r, "peer-a", 3, 3 * SEC) == COORD_RL_PASS;
    assert_int_equal(passed, 100);
    assert_int_equal(coord_ratelim_size(r), 2);
    coord_ratelim_destroy(&r);
}

/* Property: over any run, a peer gets at most burst + rate * T messages
 * through, and a peer sending steadily at twice the rate gets close to the
 * rate (seeded random arrival jitter). */
static void test_long_run_rate(void **state)
{
    (void)state;
    struct fl_rng rng;
    fl_rng_seed(&rng, 42);
    static const struct {
        double rate, burst;
        double min_frac;   /* of rate * T that must get through */
    } cases[] = {{50, 100, 0.95}, {10, 1, 0.7}, {1000, 10, 0.95},
                 {3.5, 7, 0.95}};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct coord_ratelim *r = NULL;
        const double rate = cases[c].rate, burst = cases[c].burst;
        const uint64_t horizon = 20 * SEC;
        uint64_t t = 0, passed = 0;
        assert_int_equal(coord_ratelim_new(rate, burst, 8, 99, &r), FL_OK);
        while (t < horizon) {
            /* mean gap: half of 1/rate */
            const double gap = (double)SEC / rate * fl_rng_uniform(&rng);
            t += (uint64_t)gap + 1;
            passed += check(r, "p", 1, t) == COORD_RL_PASS;
        }
        const double secs = (double)t / (double)SEC;
        assert_true((double)passed <= burst + rate * secs + 1e-6);
        /* with burst 1 a token that is full waits for the next arrival
         * (a third of a gap on average): about 0.75 of the rate */
        assert_true((double)passed >= cases[c].min_frac * rate * secs);
        coord_ratelim_destroy(&r);
    }
}

static void test_table_full_passes_and_sweeps(void **state)
{
    struct coord_ratelim *r = NULL;
    char rid[16];
    (void)state;
    /* rate 1/s, burst 2: a bucket is full again 2 s after its last use */
    assert_int_equal(coord_ratelim_new(1, 2, 4, 3, &r), FL_OK);
    for (int i = 0; i < 4; i++) {
        snprintf(rid, sizeof(rid), "p%d", i);
        assert_int_equal(check(r, rid, 1, 0), COORD_RL_PASS);
    }
    assert_int_equal(coord_ratelim_size(r), 4);
    /* all four are busy: a fifth peer passes unlimited, counted */
    for (int i = 0; i < 10; i++)
        assert_int_equal(check(r, "p4", 1, 1 * SEC), COORD_RL_PASS);
    assert_int_equal(coord_ratelim_overflows(r), 10);
    /* p0 keeps sending; the others go idle and are swept at 3 s */
    assert_int_equal(check(r, "p0", 1, 2 * SEC), COORD_RL_PASS);
    assert_int_equal(check(r, "p4", 1, 3 * SEC), COORD_RL_PASS);
    assert_int_equal(coord_ratelim_size(r), 2);
    assert_int_equal(coord_ratelim_overflows(r), 10);
    /* p4 has its own bucket now: 1 token left of its burst of 2 */
    assert_int_equal(check(r, "p4", 1, 3 * SEC), COORD_RL_PASS);
    assert_int_equal(check(r, "p4", 1, 3 * SEC), COORD_RL_DROP_FIRST);
    /* p0's state survived the sweep: it spent 2 of 2 (1 refilled) */
    assert_int_equal(check(r, "p0", 1, 2 * SEC), COORD_RL_PASS);
    assert_int_equal(check(r, "p0", 1, 2 * SEC), COORD_RL_DROP_FIRST);
    coord_ratelim_destroy(&r);
}

static void test_many_peers_are_independent(void **state)
{
    struct coord_ratelim *r = NULL;
    uint8_t rid[5] = {0};
    (void)state;
    assert_int_equal(coord_ratelim_new(5, 3, 20000, 11, &r), FL_OK);
    /* 5-byte ids like the ROUTER makes: 0 + a 32-bit counter */
    for (uint32_t i = 0; i < 20000; i++) {
        memcpy(rid + 1, &i, sizeof(i));
        for (int k = 0; k < 3; k++)
            assert_int_equal(coord_ratelim_check(r, rid, 5, 1, 0),
                             COORD_RL_PASS);
    }
    for (uint32_t i = 0; i < 20000; i++) {
        memcpy(rid + 1, &i, sizeof(i));
        assert_int_equal(coord_ratelim_check(r, rid, 5, 1, 0),
                         COORD_RL_DROP_FIRST);
    }
    assert_int_equal(coord_ratelim_size(r), 20000);
    assert_int_equal(coord_ratelim_overflows(r), 0);
    coord_ratelim_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_refuses_bad_arguments),
        cmocka_unit_test(test_burst_then_drop_logged_once_per_round),
        cmocka_unit_test(test_long_run_rate),
        cmocka_unit_test(test_table_full_passes_and_sweeps),
        cmocka_unit_test(test_many_peers_are_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
