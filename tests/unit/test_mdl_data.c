/* Unit tests for model/mdl_data: IDX readers on tiny generated files, gzip
 * and plain, valid and broken; optionally the real Fashion-MNIST files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "model/mdl_data.h"

#define MAGIC_LABELS 0x00000801u
#define MAGIC_IMAGES 0x00000803u

static char tmpdir[256];

/* ---- fixtures: IDX bytes in memory, written gzip or plain */

struct buf {
    unsigned char *p;
    size_t len, cap;
};

static void buf_put(struct buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_u32be(struct buf *b, uint32_t v)
{
    const unsigned char x[4] = {(unsigned char)(v >> 24),
                                (unsigned char)(v >> 16),
                                (unsigned char)(v >> 8), (unsigned char)v};
    buf_put(b, x, 4);
}

static unsigned char pixel(uint32_t img, uint32_t j)
{
    return (unsigned char)((img * 31u + j * 7u + img * j) % 256u);
}

static uint8_t label_of(uint32_t i) { return (uint8_t)((i * 7u + 3u) % 10u); }

/* An image file with header count hdr_count and `real` images of r x c. */
static struct buf images_idx(uint32_t magic, uint32_t hdr_count, uint32_t r,
                             uint32_t c, uint32_t real)
{
    struct buf b = {0};
    buf_u32be(&b, magic);
    buf_u32be(&b, hdr_count);
    buf_u32be(&b, r);
    buf_u32be(&b, c);
    for (uint32_t i = 0; i < real; i++)
        for (uint32_t j = 0; j < r * c; j++) {
            const unsigned char px = pixel(i, j);
            buf_put(&b, &px, 1);
        }
    return b;
}

static struct buf labels_idx(uint32_t magic, uint32_t hdr_count,
                             uint32_t real)
{
    struct buf b = {0};
    buf_u32be(&b, magic);
    buf_u32be(&b, hdr_count);
    for (uint32_t i = 0; i < real; i++) {
        const uint8_t l = label_of(i);
        buf_put(&b, &l, 1);
    }
    return b;
}

static void path_in(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", tmpdir, name);
}

/* Write b to tmpdir/name (gzip when gz), free b, return the path. */
static const char *put_file(const char *name, struct buf *b, int gz)
{
    static char path[512];
    path_in(path, sizeof(path), name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        if (b->len > 0)
            assert_int_equal(gzwrite(f, b->p, (unsigned)b->len), b->len);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(b->p, 1, b->len, f), b->len);
        assert_int_equal(fclose(f), 0);
    }
    free(b->p);
    b->p = NULL;
    return path;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_mdl_data.XXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void check_image_rows(const float *x, const uint32_t *rows,
                             uint32_t n, uint32_t dim)
{
    for (uint32_t k = 0; k < n; k++)
        for (uint32_t j = 0; j < dim; j++)
            assert_true(x[(size_t)k * dim + j] ==
                        (float)pixel(rows[k], j) / 255.0f);
}

/* ---- valid files */

static void test_read_valid_gz_and_plain(void **state)
{
    (void)state;
    for (int gz = 0; gz <= 1; gz++) {
        struct buf bi = images_idx(MAGIC_IMAGES, 12, 5, 3, 12);
        struct buf bl = labels_idx(MAGIC_LABELS, 12, 12);
        char ipath[512], err[256] = "";
        float *x = NULL;
        uint8_t *y = NULL;
        uint32_t n = 0, dim = 0, nl = 0, all[12];
        snprintf(ipath, sizeof(ipath), "%s", put_file("img", &bi, gz));
        const char *lpath = put_file("lab", &bl, gz);
        assert_int_equal(mdl_idx_read_labels(lpath, &y, &nl, err,
                                             sizeof(err)), FL_OK);
        assert_int_equal(nl, 12);
        for (uint32_t i = 0; i < 12; i++)
            assert_int_equal(y[i], label_of(i));
        assert_int_equal(mdl_idx_read_images(ipath, NULL, 0, &x, &n, &dim,
                                             err, sizeof(err)), FL_OK);
        assert_int_equal(n, 12);
        assert_int_equal(dim, 15);
        for (uint32_t i = 0; i < 12; i++)
            all[i] = i;
        check_image_rows(x, all, 12, 15);
        /* pixels in [0, 1], with 0 and 255 mapping to the ends */
        for (uint32_t i = 0; i < 12 * 15; i++)
            assert_true(x[i] >= 0.0f && x[i] <= 1.0f);
        fl_free(x);
        fl_free(y);
    }
}

/* A larger image count than one read chunk, so growth is exercised. */
static void test_read_many_rows_grows(void **state)
{
    (void)state;
    struct buf bi = images_idx(MAGIC_IMAGES, 3000, 4, 4, 3000);
    const char *path = put_file("many.gz", &bi, 1);
    float *x = NULL;
    uint32_t n = 0, dim = 0, rows[3000];
    assert_int_equal(mdl_idx_read_images(path, NULL, 0, &x, &n, &dim, NULL,
                                         0), FL_OK);
    assert_int_equal(n, 3000);
    for (uint32_t i = 0; i < 3000; i++)
        rows[i] = i;
    check_image_rows(x, rows, 3000, 16);
    fl_free(x);
}

/* Property: a random ascending keep list returns exactly those rows. */
static void test_keep_subset_exact_rows(void **state)
{
    (void)state;
    struct fl_rng rng;
    struct buf bi = images_idx(MAGIC_IMAGES, 300, 7, 5, 300);
    const char *path = put_file("keep.gz", &bi, 1);
    fl_rng_seed(&rng, 11);
    for (int trial = 0; trial < 20; trial++) {
        uint32_t keep[300], nkeep = 0, n = 99, dim = 0;
        float *x = NULL;
        const uint64_t pct = fl_rng_below(&rng, 100);
        for (uint32_t i = 0; i < 300; i++)
            if (fl_rng_below(&rng, 100) < pct)
                keep[nkeep++] = i;
        assert_int_equal(mdl_idx_read_images(path, keep, nkeep, &x, &n, &dim,
                                             NULL, 0), FL_OK);
        assert_int_equal(n, nkeep);
        assert_int_equal(dim, 35);
        check_image_rows(x, keep, nkeep, dim);
        fl_free(x);
    }
}

static void test_keep_list_errors(void **state)
{
    (void)state;
    struct buf bi = images_idx(MAGIC_IMAGES, 10, 2, 2, 10);
    const char *path = put_file("k.idx", &bi, 0);
    const uint32_t unordered[] = {1, 5, 5}, outside[] = {2, 10};
    float *x = NULL;
    uint32_t n = 0, dim = 0;
    char err[256] = "";
    assert_int_equal(mdl_idx_read_images(path, unordered, 3, &x, &n, &dim,
                                         err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "ascending"));
    assert_int_equal(mdl_idx_read_images(path, outside, 2, &x, &n, &dim, err,
                                         sizeof(err)), FL_ERR_DATA);
    assert_non_null(strstr(err, "row 10"));
    assert_null(x);
}

/* ---- broken files: a table of {file bytes, expected error, message} */

struct bad_case {
    const char *name;
    int images;          /* 1: image reader, 0: label reader */
    uint32_t magic, hdr_count, real, rows, cols;
    int gz;
    enum fl_err want;
    const char *msg;     /* substring of the error message */
};

static const struct bad_case bad_cases[] = {
    {"trunc-img.gz", 1, MAGIC_IMAGES, 10, 7, 4, 4, 1, FL_ERR_DATA,
     "truncated after 7 of 10 images"},
    {"trunc-img", 1, MAGIC_IMAGES, 10, 7, 4, 4, 0, FL_ERR_DATA,
     "truncated after 7 of 10 images"},
    {"lying-img.gz", 1, MAGIC_IMAGES, 1000000, 5, 28, 28, 1, FL_ERR_DATA,
     "truncated after 5 of 1000000 images"},
    {"extra-img", 1, MAGIC_IMAGES, 4, 6, 4, 4, 0, FL_ERR_DATA,
     "unexpected data after 4 images"},
    {"magic-img", 1, MAGIC_LABELS, 4, 4, 4, 4, 0, FL_ERR_DATA, "bad magic"},
    {"zero-rows", 1, MAGIC_IMAGES, 4, 4, 0, 4, 0, FL_ERR_DATA,
     "image size 0x4"},
    {"huge-side", 1, MAGIC_IMAGES, 1, 0, 5000, 1, 0, FL_ERR_DATA,
     "out of range"},
    {"huge-area", 1, MAGIC_IMAGES, 1, 0, 2048, 1024, 0, FL_ERR_DATA,
     "out of range"},
    {"trunc-lab.gz", 0, MAGIC_LABELS, 10, 9, 0, 0, 1, FL_ERR_DATA,
     "truncated after 9 of 10 labels"},
    {"lying-lab", 0, MAGIC_LABELS, 4000000000u, 20, 0, 0, 0, FL_ERR_DATA,
     "truncated after 20 of 4000000000 labels"},
    {"extra-lab.gz", 0, MAGIC_LABELS, 3, 5, 0, 0, 1, FL_ERR_DATA,
     "unexpected data after 3 labels"},
    {"magic-lab", 0, MAGIC_IMAGES, 3, 3, 0, 0, 1, FL_ERR_DATA, "bad magic"},
};

static void test_broken_files_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(bad_cases); i++) {
        const struct bad_case *c = &bad_cases[i];
        struct buf b = c->images ? images_idx(c->magic, c->hdr_count,
                                              c->rows, c->cols, c->real)
                                 : labels_idx(c->magic, c->hdr_count,
                                              c->real);
        const char *path = put_file(c->name, &b, c->gz);
        char err[256] = "";
        float *x = NULL;
        uint8_t *y = NULL;
        uint32_t n = 0, dim = 0;
        enum fl_err rc;
        if (c->images)
            rc = mdl_idx_read_images(path, NULL, 0, &x, &n, &dim, err,
                                     sizeof(err));
        else
            rc = mdl_idx_read_labels(path, &y, &n, err, sizeof(err));
        if (rc != c->want || strstr(err, c->msg) == NULL ||
            strstr(err, c->name) == NULL)
            fail_msg("case %s: rc %d, err '%s'", c->name, rc, err);
        assert_null(x);
        assert_null(y);
    }
}

/* A lying count is caught even when the caller keeps only early rows. */
static void test_lying_header_with_keep(void **state)
{
    (void)state;
    struct buf bi = images_idx(MAGIC_IMAGES, 50, 3, 3, 20);
    const char *path = put_file("lie-keep.gz", &bi, 1);
    const uint32_t keep[] = {0, 3, 19};
    char err[256] = "";
    float *x = NULL;
    uint32_t n = 0, dim = 0;
    assert_int_equal(mdl_idx_read_images(path, keep, 3, &x, &n, &dim, err,
                                         sizeof(err)), FL_ERR_DATA);
    assert_non_null(strstr(err, "truncated after 20 of 50 images"));
}

static void test_header_cut_short(void **state)
{
    (void)state;
    struct buf b = {0};
    char err[256] = "";
    uint8_t *y = NULL;
    uint32_t n = 0;
    buf_u32be(&b, MAGIC_LABELS);
    buf_put(&b, "\0\0", 2);
    const char *path = put_file("short-hdr", &b, 0);
    assert_int_equal(mdl_idx_read_labels(path, &y, &n, err, sizeof(err)),
                     FL_ERR_DATA);
    assert_non_null(strstr(err, "truncated header"));
}

static void test_label_out_of_range(void **state)
{
    (void)state;
    struct buf b = labels_idx(MAGIC_LABELS, 6, 5);
    const uint8_t bad = 10;
    char err[256] = "";
    uint8_t *y = NULL;
    uint32_t n = 0;
    buf_put(&b, &bad, 1);
    const char *path = put_file("label10.gz", &b, 1);
    assert_int_equal(mdl_idx_read_labels(path, &y, &n, err, sizeof(err)),
                     FL_ERR_DATA);
    assert_non_null(strstr(err, "sample 5"));
    assert_null(y);
}

/* A corrupted gzip stream must fail, whatever zlib reports. */
static void test_corrupt_gzip(void **state)
{
    (void)state;
    struct buf bi = images_idx(MAGIC_IMAGES, 200, 10, 10, 200);
    char path[512];
    float *x = NULL;
    uint32_t n = 0, dim = 0;
    snprintf(path, sizeof(path), "%s", put_file("corrupt.gz", &bi, 1));
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    const long size = ftell(f);
    for (long off = 20; off < size - 8; off += 97) {
        unsigned char c;
        assert_int_equal(fseek(f, off, SEEK_SET), 0);
        assert_int_equal(fread(&c, 1, 1, f), 1);
        c ^= 0x5a;
        assert_int_equal(fseek(f, off, SEEK_SET), 0);
        assert_int_equal(fwrite(&c, 1, 1, f), 1);
    }
    assert_int_equal(fclose(f), 0);
    assert_int_not_equal(mdl_idx_read_images(path, NULL, 0, &x, &n, &dim,
                                             NULL, 0), FL_OK);
    assert_null(x);
}

static void test_missing_file(void **state)
{
    (void)state;
    char path[512], err[256] = "";
    uint8_t *y = NULL;
    uint32_t n = 0;
    struct mdl_dataset *ds = NULL;
    path_in(path, sizeof(path), "nope");
    assert_int_equal(mdl_idx_read_labels(path, &y, &n, err, sizeof(err)),
                     FL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "nope"));
    assert_int_equal(mdl_dataset_load(tmpdir, "absent", NULL, 0, &ds, err,
                                      sizeof(err)), FL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "absent-labels-idx1-ubyte"));
    assert_null(ds);
}

/* ---- mdl_dataset_load */

static void make_split(const char *split, uint32_t nimg, uint32_t nlab,
                       int gz)
{
    char name[128];
    struct buf bi = images_idx(MAGIC_IMAGES, nimg, 4, 3, nimg);
    struct buf bl = labels_idx(MAGIC_LABELS, nlab, nlab);
    snprintf(name, sizeof(name), "%s-images-idx3-ubyte%s", split,
             gz ? ".gz" : "");
    put_file(name, &bi, gz);
    snprintf(name, sizeof(name), "%s-labels-idx1-ubyte%s", split,
             gz ? ".gz" : "");
    put_file(name, &bl, gz);
}

static void test_dataset_load_gz_plain_keep(void **state)
{
    (void)state;
    struct mdl_dataset *ds = NULL;
    const uint32_t keep[] = {2, 3, 17, 39};
    char err[256] = "";
    make_split("train", 40, 40, 1);
    make_split("t10k", 25, 25, 0);
    assert_int_equal(mdl_dataset_load(tmpdir, "train", keep, 4, &ds, err,
                                      sizeof(err)), FL_OK);
    assert_int_equal(ds->n, 4);
    assert_int_equal(ds->dim, 12);
    assert_int_equal(ds->nclasses, 10);
    for (uint32_t k = 0; k < 4; k++)
        assert_int_equal(ds->y[k], label_of(keep[k]));
    check_image_rows(ds->x, keep, 4, 12);
    mdl_dataset_truncate(ds, 2);
    assert_int_equal(ds->n, 2);
    mdl_dataset_truncate(ds, 9); /* never grows */
    assert_int_equal(ds->n, 2);
    mdl_dataset_destroy(&ds);
    assert_null(ds);
    mdl_dataset_destroy(&ds); /* NULL is fine */
    assert_int_equal(mdl_dataset_load(tmpdir, "t10k", NULL, 0, &ds, err,
                                      sizeof(err)), FL_OK);
    assert_int_equal(ds->n, 25);
    assert_int_equal(ds->y[24], label_of(24));
    mdl_dataset_destroy(&ds);
}

/* With both present, the .gz file is the one read. */
static void test_dataset_prefers_gz(void **state)
{
    (void)state;
    struct mdl_dataset *ds = NULL;
    make_split("pref", 5, 5, 0);
    make_split("pref", 8, 8, 1);
    assert_int_equal(mdl_dataset_load(tmpdir, "pref", NULL, 0, &ds, NULL, 0),
                     FL_OK);
    assert_int_equal(ds->n, 8);
    mdl_dataset_destroy(&ds);
}

static void test_dataset_count_mismatch(void **state)
{
    (void)state;
    struct mdl_dataset *ds = NULL;
    char err[256] = "";
    make_split("odd", 6, 7, 1);
    assert_int_equal(mdl_dataset_load(tmpdir, "odd", NULL, 0, &ds, err,
                                      sizeof(err)), FL_ERR_DATA);
    assert_non_null(strstr(err, "6 images but the label file has 7"));
    assert_null(ds);
}

/* Every allocation failure gives FL_ERR_NOMEM and leaks nothing (ASan). */
static void test_alloc_torture(void **state)
{
    (void)state;
    const uint32_t keep[] = {1, 4, 30};
    long n;
    make_split("tort", 2500, 2500, 1);
    for (n = 0; n < 100; n++) {
        struct mdl_dataset *ds = NULL;
        fl_alloc_fail_after(n);
        const enum fl_err rc = mdl_dataset_load(tmpdir, "tort", n % 2 ? keep
                                                : NULL, 3, &ds, NULL, 0);
        fl_alloc_fail_reset();
        if (rc == FL_OK) {
            assert_int_equal(ds->n, n % 2 ? 3 : 2500);
            mdl_dataset_destroy(&ds);
            if (n > 8)
                break;
            continue;
        }
        assert_int_equal(rc, FL_ERR_NOMEM);
        assert_null(ds);
    }
    assert_true(n < 100);
}

/* The real files, when installed: shape, labels, a known pixel. */
static void test_real_fashion_mnist(void **state)
{
    (void)state;
    char path[512];
    struct mdl_dataset *ds = NULL;
    char err[256] = "";
    const uint32_t keep[] = {0, 4, 9999};
    snprintf(path, sizeof(path), "%s/t10k-images-idx3-ubyte.gz",
             MDL_DEFAULT_DATA_DIR);
    if (access(path, R_OK) != 0)
        skip();
    assert_int_equal(mdl_dataset_load(MDL_DEFAULT_DATA_DIR, "t10k", keep, 3,
                                      &ds, err, sizeof(err)), FL_OK);
    assert_int_equal(ds->n, 3);
    assert_int_equal(ds->dim, 784);
    assert_int_equal(ds->y[0], 9); /* the first test image: an ankle boot */
    assert_int_equal(ds->y[1], 6);
    assert_true(ds->x[404] == 98.0f / 255.0f); /* byte 0x62 */
    mdl_dataset_destroy(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_valid_gz_and_plain),
        cmocka_unit_test(test_read_many_rows_grows),
        cmocka_unit_test(test_keep_subset_exact_rows),
        cmocka_unit_test(test_keep_list_errors),
        cmocka_unit_test(test_broken_files_table),
        cmocka_unit_test(test_lying_header_with_keep),
        cmocka_unit_test(test_header_cut_short),
        cmocka_unit_test(test_label_out_of_range),
        cmocka_unit_test(test_corrupt_gzip),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_dataset_load_gz_plain_keep),
        cmocka_unit_test(test_dataset_prefers_gz),
        cmocka_unit_test(test_dataset_count_mismatch),
        cmocka_unit_test(test_alloc_torture),
        cmocka_unit_test(test_real_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
