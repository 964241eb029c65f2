/*
 * Unit tests for coordinator/coord_devtab: device id validation, binding
 * devices to routing ids, rebinding on reconnect, and a seeded property
 * test of the hash tables against a naive reference.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"
#include "coordinator/coord_devtab.h"

static void test_id_validation(void **state)
{
    (void)state;
    char long_ok[COORD_ID_MAX + 1];
    char too_long[COORD_ID_MAX + 2];
    memset(long_ok, 'a', COORD_ID_MAX);
    long_ok[COORD_ID_MAX] = '\0';
    memset(too_long, 'b', COORD_ID_MAX + 1);
    too_long[COORD_ID_MAX + 1] = '\0';
    static const struct {
        const char *id;
        bool ok;
    } cases[] = {
        {"w0", true},          {"dev-0123456789abcdef", true},
        {"A.b_c:d-e", true},   {"9", true},
        {"", false},           {"with space", false},
        {"semi;colon", false}, {"slash/", false},
        {"quote'", false},     {"comma,", false},
        {"tab\t", false},      {"\xc3\xa9t\xc3\xa9", false},
        {"new\nline", false},  {"percent%s", false},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        if (coord_device_id_valid(cases[i].id) != cases[i].ok)
            fail_msg("'%s': want %d", cases[i].id, cases[i].ok);
    }
    assert_true(coord_device_id_valid(long_ok));
    assert_false(coord_device_id_valid(too_long));
    assert_false(coord_device_id_valid(NULL));
}

static void test_bind_and_rebind(void **state)
{
    (void)state;
    struct coord_devtab *t = NULL;
    struct coord_device *a = NULL, *b = NULL, *x = NULL;
    bool created = false;
    const uint8_t r1[] = {0, 1, 2, 3, 4};
    const uint8_t r2[] = {0, 9, 9, 9, 9};
    const uint8_t r3[] = {0, 5, 5, 5, 5};
    assert_int_equal(coord_devtab_new(0, &t), FL_OK);

    assert_int_equal(coord_devtab_bind(t, "a", r1, 5, &a, &created), FL_OK);
    assert_true(created);
    assert_int_equal(coord_devtab_bind(t, "b", r2, 5, &b, &created), FL_OK);
    assert_true(created);
    assert_int_equal(coord_devtab_count(t), 2);
    assert_int_equal(coord_devtab_connected(t), 2);
    assert_ptr_equal(coord_devtab_by_rid(t, r1, 5), a);
    assert_ptr_equal(coord_devtab_by_rid(t, r2, 5), b);
    assert_ptr_equal(coord_devtab_by_id(t, "a"), a);
    assert_null(coord_devtab_by_id(t, "c"));
    assert_null(coord_devtab_by_rid(t, r3, 5));
    assert_null(coord_devtab_by_rid(t, r1, 4));

    /* same id, same rid: nothing changes */
    assert_int_equal(coord_devtab_bind(t, "a", r1, 5, &x, &created), FL_OK);
    assert_ptr_equal(x, a);
    assert_false(created);

    /* a reconnects from r3: r1 is forgotten */
    assert_int_equal(coord_devtab_bind(t, "a", r3, 5, &x, &created), FL_OK);
    assert_ptr_equal(x, a);
    assert_false(created);
    assert_null(coord_devtab_by_rid(t, r1, 5));
    assert_ptr_equal(coord_devtab_by_rid(t, r3, 5), a);
    assert_int_equal(coord_devtab_connected(t), 2);

    /* the connection r2 now says it is "a": b loses it, a moves there */
    assert_int_equal(coord_devtab_bind(t, "a", r2, 5, &x, &created), FL_OK);
    assert_ptr_equal(x, a);
    assert_int_equal(b->rid_len, 0);
    assert_null(coord_devtab_by_rid(t, r3, 5));
    assert_ptr_equal(coord_devtab_by_rid(t, r2, 5), a);
    assert_int_equal(coord_devtab_connected(t), 1);

    coord_devtab_unbind(t, a);
    coord_devtab_unbind(t, a); /* twice is fine */
    assert_int_equal(coord_devtab_connected(t), 0);
    assert_null(coord_devtab_by_rid(t, r2, 5));
    assert_ptr_equal(coord_devtab_by_id(t, "a"), a); /* the record stays */

    assert_int_equal(coord_devtab_bind(t, "bad id", r1, 5, &x, &created),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(coord_devtab_bind(t, "ok", r1, 0, &x, &created),
                     FL_ERR_INVALID_ARG);
    assert_ptr_equal(coord_devtab_at(t, 0), a);
    assert_ptr_equal(coord_devtab_at(t, 1), b);
    assert_null(coord_devtab_at(t, 2));
    coord_devtab_destroy(&t);
    assert_null(t);
    coord_devtab_destroy(&t);
}

static void test_table_full(void **state)
{
    (void)state;
    struct coord_devtab *t = NULL;
    struct coord_device *d = NULL;
    bool created;
    char id[16];
    uint8_t rid[4] = {1, 0, 0, 0};
    assert_int_equal(coord_devtab_new(3, &t), FL_OK);
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof(id), "d%d", i);
        rid[1] = (uint8_t)i;
        assert_int_equal(coord_devtab_bind(t, id, rid, 4, &d, &created),
                         FL_OK);
    }
    rid[1] = 77;
    assert_int_equal(coord_devtab_bind(t, "d3", rid, 4, &d, &created),
                     FL_ERR_FULL);
    assert_null(d);
    /* a known device may still rebind */
    assert_int_equal(coord_devtab_bind(t, "d1", rid, 4, &d, &created),
                     FL_OK);
    coord_devtab_destroy(&t);
}

/* Random binds and unbinds of many devices with short routing ids (so the
 * hash tables see collisions, growth and backward-shift deletion),
 * checked after every step against plain arrays. */
static void test_property_against_reference(void **state)
{
    (void)state;
    enum { NDEV = 3000, NRID = 4000, STEPS = 30000 };
    struct coord_devtab *t = NULL;
    int *rid_of = malloc(NDEV * sizeof(int));   /* device -> rid or -1 */
    int *dev_of = malloc(NRID * sizeof(int));   /* rid -> device or -1 */
    struct coord_device **rec = calloc(NDEV, sizeof(*rec));
    struct fl_rng r;
    assert_non_null(rid_of);
    assert_non_null(dev_of);
    assert_non_null(rec);
    for (int i = 0; i < NDEV; i++)
        rid_of[i] = -1;
    for (int i = 0; i < NRID; i++)
        dev_of[i] = -1;
    fl_rng_seed(&r, 2024);
    assert_int_equal(coord_devtab_new(0, &t), FL_OK);
    size_t connected = 0;
    for (int s = 0; s < STEPS; s++) {
        const int dv = (int)fl_rng_below(&r, NDEV);
        char id[16];
        snprintf(id, sizeof(id), "dev%d", dv);
        if (fl_rng_below(&r, 4) == 0) {
            if (rec[dv] != NULL) {
                coord_devtab_unbind(t, rec[dv]);
                if (rid_of[dv] >= 0) {
                    dev_of[rid_of[dv]] = -1;
                    rid_of[dv] = -1;
                    connected--;
                }
            }
        } else {
            const int rd = (int)fl_rng_below(&r, NRID);
            const uint8_t rid[2] = {(uint8_t)(rd >> 8), (uint8_t)rd};
            struct coord_device *d = NULL;
            bool created;
            assert_int_equal(coord_devtab_bind(t, id, rid, 2, &d, &created),
                             FL_OK);
            assert_int_equal(created, rec[dv] == NULL);
            rec[dv] = d;
            if (dev_of[rd] != dv) {
                if (dev_of[rd] >= 0) {
                    rid_of[dev_of[rd]] = -1;
                    connected--;
                }
                if (rid_of[dv] >= 0) {
                    dev_of[rid_of[dv]] = -1;
                    connected--;
                }
                dev_of[rd] = dv;
                rid_of[dv] = rd;
                connected++;
            }
        }
        assert_int_equal(coord_devtab_connected(t), connected);
        if (s % 1000 == 0 || s == STEPS - 1) {
            for (int i = 0; i < NRID; i++) {
                const uint8_t rid[2] = {(uint8_t)(i >> 8), (uint8_t)i};
                const struct coord_device *d = coord_devtab_by_rid(t, rid, 2);
                if (dev_of[i] < 0)
                    assert_null(d);
                else
                    assert_ptr_equal(d, rec[dev_of[i]]);
            }
            for (int i = 0; i < NDEV; i++) {
                char id2[16];
                snprintf(id2, sizeof(id2), "dev%d", i);
                assert_ptr_equal(coord_devtab_by_id(t, id2), rec[i]);
            }
        }
    }
    coord_devtab_destroy(&t);
    free(rid_of);
    free(dev_of);
    free(rec);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    int done = 0;
    for (long n = 0; n < 500 && !done; n++) {
        struct coord_devtab *t = NULL;
        enum fl_err rc;
        fl_alloc_fail_after(n);
        rc = coord_devtab_new(0, &t);
        for (int i = 0; rc == FL_OK && i < 100; i++) {
            char id[16];
            const uint8_t rid[2] = {(uint8_t)i, 7};
            struct coord_device *d;
            bool created;
            snprintf(id, sizeof(id), "d%d", i);
            rc = coord_devtab_bind(t, id, rid, 2, &d, &created);
        }
        fl_alloc_fail_reset();
        if (rc == FL_OK)
            done = 1;
        else
            assert_int_equal(rc, FL_ERR_NOMEM);
        coord_devtab_destroy(&t);
    }
    assert_true(done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_validation),
        cmocka_unit_test(test_bind_and_rebind),
        cmocka_unit_test(test_table_full),
        cmocka_unit_test(test_property_against_reference),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
