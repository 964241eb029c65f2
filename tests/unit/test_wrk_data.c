/*
 * Unit tests for worker/wrk_data: a device loads exactly its shard of a
 * tiny generated IDX set; the shards of all devices partition the first
 * `limit` samples; errors for impossible partitions and missing files.
 *
 * Each generated image's pixels encode its sample index, so the test can
 * tell which rows a shard holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fl_util.h"
#include "worker/wrk_data.h"
#include "fixture_bytes.h"

#define NSAMP 200

static char dir[] = "/tmp/test_wrk_data.XXXXXX";

/* pixels 0, 1: the sample's index in base 256; pixels 2, 3: fixed */
static void index_pixels(uint32_t i, uint8_t px[4])
{
    px[0] = (uint8_t)(i % 256);
    px[1] = (uint8_t)(i / 256);
    px[2] = 7;
    px[3] = 255;
}

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    return fb_write_idx(dir, NSAMP, index_pixels);
}

static int teardown(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof(path), "%s/train-labels-idx1-ubyte", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/train-images-idx3-ubyte", dir);
    unlink(path);
    rmdir(dir);
    return 0;
}

static uint32_t sample_of(const struct mdl_dataset *ds, uint32_t row)
{
    const float *px = ds->x + (size_t)row * ds->dim;
    return (uint32_t)(px[0] * 255.0f + 0.5f) +
           256u * (uint32_t)(px[1] * 255.0f + 0.5f);
}

static void check_partition(const struct mdl_partition_config *base,
                            uint32_t limit)
{
    uint8_t seen[NSAMP];
    const uint32_t total = limit == 0 ? NSAMP : limit;
    uint32_t sum = 0;
    memset(seen, 0, sizeof(seen));
    for (uint32_t s = 0; s < base->nshards; s++) {
        struct mdl_dataset *ds = NULL;
        struct wrk_data_info info;
        char err[256] = "";
        const enum fl_err rc = wrk_data_load_shard(dir, limit, base, s, &ds,
                                                   &info, err, sizeof(err));
        if (rc != FL_OK)
            fail_msg("shard %u: %s: %s", s, fl_strerror(rc), err);
        assert_int_equal(info.total, total);
        assert_int_equal(info.shard_n, ds->n);
        assert_int_equal(ds->dim, 4);
        uint32_t counted = 0;
        for (uint32_t c = 0; c < 10; c++)
            counted += info.class_count[c];
        assert_int_equal(counted, ds->n);
        for (uint32_t i = 0; i < ds->n; i++) {
            const uint32_t k = sample_of(ds, i);
            assert_true(k < total);              /* within the limit */
            assert_int_equal(ds->y[i], k % 10);  /* label goes with image */
            assert_int_equal(seen[k], 0);        /* in one shard only */
            seen[k] = 1;
            if (i > 0)
                assert_true(k > sample_of(ds, i - 1)); /* file order */
        }
        sum += ds->n;
        mdl_dataset_destroy(&ds);
        assert_null(ds);
    }
    assert_int_equal(sum, total);
}

static void test_iid_shards_partition(void **state)
{
    (void)state;
    struct mdl_partition_config pc = {MDL_PARTITION_IID, 0.0, 4, 1, 1};
    check_partition(&pc, 0);
    check_partition(&pc, 150);
    pc.nshards = 1;
    check_partition(&pc, 0);
}

static void test_dirichlet_shards_partition(void **state)
{
    (void)state;
    struct mdl_partition_config pc = {MDL_PARTITION_DIRICHLET, 0.3, 5, 9, 3};
    check_partition(&pc, 0);
    check_partition(&pc, 120);
}

static void test_same_seed_same_shard(void **state)
{
    (void)state;
    const struct mdl_partition_config pc = {MDL_PARTITION_DIRICHLET, 0.5, 3,
                                            42, 1};
    struct mdl_dataset *a = NULL, *b = NULL;
    struct wrk_data_info ia, ib;
    char err[256];
    assert_int_equal(wrk_data_load_shard(dir, 0, &pc, 1, &a, &ia, err,
                                         sizeof(err)),
                     FL_OK);
    assert_int_equal(wrk_data_load_shard(dir, 0, &pc, 1, &b, &ib, err,
                                         sizeof(err)),
                     FL_OK);
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->x, b->x, (size_t)a->n * a->dim * sizeof(float));
    mdl_dataset_destroy(&a);
    mdl_dataset_destroy(&b);
}

static void test_errors(void **state)
{
    (void)state;
    struct mdl_partition_config pc = {MDL_PARTITION_IID, 0.0, 4, 1, 1};
    struct mdl_dataset *ds = NULL;
    struct wrk_data_info info;
    char err[256] = "";
    /* shard out of range */
    assert_int_equal(wrk_data_load_shard(dir, 0, &pc, 4, &ds, &info, err,
                                         sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_null(ds);
    /* more shards than samples with a minimum: cannot partition */
    pc.nshards = 300;
    err[0] = '\0';
    assert_int_equal(wrk_data_load_shard(dir, 0, &pc, 0, &ds, &info, err,
                                         sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "partition"));
    /* without a minimum, shard 250 of 300 is empty */
    pc.min_shard = 0;
    assert_int_equal(wrk_data_load_shard(dir, 0, &pc, 250, &ds, &info, err,
                                         sizeof(err)),
                     FL_ERR_DATA);
    assert_non_null(strstr(err, "empty"));
    assert_null(ds);
    /* missing files */
    pc.nshards = 1;
    err[0] = '\0';
    assert_int_not_equal(wrk_data_load_shard("/nonexistent/dir", 0, &pc, 0,
                                             &ds, &info, err, sizeof(err)),
                         FL_OK);
    assert_true(err[0] != '\0');
    assert_null(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iid_shards_partition),
        cmocka_unit_test(test_dirichlet_shards_partition),
        cmocka_unit_test(test_same_seed_same_shard),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
