/* Unit tests for model/mdl_file: the FCMODEL1 format, byte for byte, round
 * trips, and detection of every truncation and every flipped byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "model/mdl_file.h"
#include "model/mdl_trainer.h"
#include "fixture_bytes.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_mdl_file.XXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *path_of(const char *name)
{
    static char p[512];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    return p;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b;
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    *len = (size_t)ftell(f);
    rewind(f);
    b = malloc(*len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void spill(const char *path, const unsigned char *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

struct model {
    struct mdl_trainer *t;
    const struct mdl_layout *lay;
    float *p;
};

static struct model model_new(const char *hidden, uint64_t seed)
{
    struct model m;
    struct mdl_mlp_config c = {.input = 6, .classes = 3};
    assert_int_equal(mdl_mlp_parse_hidden(hidden, &c), 0);
    assert_int_equal(mdl_trainer_new_mlp(&c, &m.t), FL_OK);
    m.lay = mdl_trainer_layout(m.t);
    m.p = fl_malloc(m.lay->dim * sizeof(float));
    assert_non_null(m.p);
    mdl_trainer_init_params(m.t, seed, m.p);
    return m;
}

static void model_free(struct model *m)
{
    fl_free(m->p);
    mdl_trainer_destroy(&m->t);
}

/* ---- the exact bytes */

static void test_golden_bytes(void **state)
{
    (void)state;
    struct mdl_layout lay = {.dim = 3, .ntensors = 2};
    const float p[3] = {1.0f, -2.0f, 0.5f};
    static const unsigned char want_head[] = {
        'F', 'C', 'M', 'O', 'D', 'E', 'L', '1',
        1, 0, 0, 0,                          /* version */
        2, 0, 0, 0,                          /* ntensors */
        3, 0, 0, 0, 0, 0, 0, 0,              /* dim */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* round */
        1, 0, 'w',                           /* name */
        2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0,  /* ndim 2, shape 1 x 2 */
        0, 0, 0, 0, 0, 0, 0, 0,              /* offset 0 */
        2, 0, 0, 0, 0, 0, 0, 0,              /* size 2 */
        2, 0, 'b', '1',
        1, 0, 0, 0, 1, 0, 0, 0,              /* ndim 1, shape 1 */
        2, 0, 0, 0, 0, 0, 0, 0,              /* offset 2 */
        1, 0, 0, 0, 0, 0, 0, 0,              /* size 1 */
        0x00, 0x00, 0x80, 0x3f,              /* 1.0f */
        0x00, 0x00, 0x00, 0xc0,              /* -2.0f */
        0x00, 0x00, 0x00, 0x3f,              /* 0.5f */
    };
    size_t len = 0;
    memcpy(lay.tensors[0].name, "w", 2);
    lay.tensors[0].ndim = 2;
    lay.tensors[0].shape[0] = 1;
    lay.tensors[0].shape[1] = 2;
    lay.tensors[0].size = 2;
    memcpy(lay.tensors[1].name, "b1", 3);
    lay.tensors[1].ndim = 1;
    lay.tensors[1].shape[0] = 1;
    lay.tensors[1].offset = 2;
    lay.tensors[1].size = 1;
    assert_int_equal(mdl_file_save(path_of("golden"), &lay, p,
                                   0x0102030405060708ull), FL_OK);
    unsigned char *b = slurp(path_of("golden"), &len);
    assert_int_equal(len, sizeof(want_head) + 4);
    assert_memory_equal(b, want_head, sizeof(want_head));
    const uint32_t crc = (uint32_t)crc32(0, want_head, sizeof(want_head));
    for (int i = 0; i < 4; i++)
        assert_int_equal(b[sizeof(want_head) + i], (crc >> (8 * i)) & 0xff);
    free(b);
}

/* ---- round trips */

static void test_round_trip(void **state)
{
    (void)state;
    const char *hiddens[] = {"5,4", "17", "3,3,3,3"};
    const uint64_t rounds[] = {0, 7, UINT64_MAX};
    for (size_t i = 0; i < FL_ARRAY_LEN(hiddens); i++) {
        struct model m = model_new(hiddens[i], i + 1);
        struct mdl_layout back;
        float *p = NULL;
        uint64_t round = 1;
        char err[256] = "";
        m.p[0] = -0.0f; /* bit patterns survive, sign of zero included */
        m.p[1] = 1e-40f; /* a subnormal */
        assert_int_equal(mdl_file_save(path_of("rt"), m.lay, m.p, rounds[i]),
                         FL_OK);
        assert_int_equal(mdl_file_load(path_of("rt"), m.lay->dim, &back, &p,
                                       &round, err, sizeof(err)), FL_OK);
        assert_true(mdl_layout_equal(&back, m.lay));
        assert_memory_equal(p, m.p, m.lay->dim * sizeof(float));
        assert_int_equal(round, rounds[i]);
        fl_free(p);
        model_free(&m);
    }
    assert_int_equal(access(path_of("rt"), F_OK), 0);
}

/* ---- corruption */

static enum fl_err load_bytes(const unsigned char *b, size_t len,
                              size_t max_dim, char *err, size_t errlen)
{
    struct mdl_layout lay;
    float *p = NULL;
    uint64_t round = 0;
    spill(path_of("bad"), b, len);
    const enum fl_err rc = mdl_file_load(path_of("bad"), max_dim, &lay, &p,
                                         &round, err, errlen);
    if (rc != FL_OK)
        assert_null(p);
    fl_free(p);
    return rc;
}

static void test_every_truncation_detected(void **state)
{
    (void)state;
    struct model m = model_new("5,4", 3);
    size_t len = 0;
    char err[256];
    assert_int_equal(mdl_file_save(path_of("t"), m.lay, m.p, 5), FL_OK);
    unsigned char *b = slurp(path_of("t"), &len);
    for (size_t cut = 0; cut < len; cut++) {
        err[0] = '\0';
        const enum fl_err rc = load_bytes(b, cut, 1u << 20, err, sizeof(err));
        if (rc != FL_ERR_TRUNCATED || strstr(err, "/bad") == NULL)
            fail_msg("cut at %zu: rc %d '%s'", cut, rc, err);
    }
    b[len] = 0; /* one byte too many */
    assert_int_equal(load_bytes(b, len + 1, 1u << 20, err, sizeof(err)),
                     FL_ERR_TRAILING);
    assert_int_equal(load_bytes(b, len, 1u << 20, err, sizeof(err)), FL_OK);
    free(b);
    model_free(&m);
}

static void test_every_flipped_byte_detected(void **state)
{
    (void)state;
    struct model m = model_new("5,4", 4);
    size_t len = 0;
    char err[256];
    const unsigned char masks[] = {0x01, 0x80, 0xff};
    assert_int_equal(mdl_file_save(path_of("f"), m.lay, m.p, 5), FL_OK);
    unsigned char *b = slurp(path_of("f"), &len);
    for (size_t i = 0; i < len; i++)
        for (size_t k = 0; k < FL_ARRAY_LEN(masks); k++) {
            b[i] ^= masks[k];
            err[0] = '\0';
            const enum fl_err rc = load_bytes(b, len, 1u << 20, err,
                                              sizeof(err));
            if (rc == FL_OK || err[0] == '\0')
                fail_msg("flip 0x%02x at byte %zu not detected", masks[k], i);
            b[i] ^= masks[k];
        }
    free(b);
    model_free(&m);
}

/* Field errors that the CRC alone would also catch are reported as what
 * they are: patch a field, fix the CRC, expect the specific error. */
struct patch_case {
    size_t off;
    unsigned char val;
    enum fl_err want;
    const char *msg;
};

static const struct patch_case patch_cases[] = {
    {0, 'X', FL_ERR_FORMAT, "bad magic"},
    {8, 2, FL_ERR_VERSION, "version 2"},
    {12, 0, FL_ERR_FORMAT, "no tensors"},
    {12, 33, FL_ERR_TOO_LARGE, "33 tensors"},
    {16, 0, FL_ERR_FORMAT, "zero parameters"},         /* dim 74 -> 0 */
    {16, 10, FL_ERR_FORMAT, "tensors extend past dim"}, /* dim 74 -> 10 */
    {16, 75, FL_ERR_FORMAT, "tensors do not cover dim"},
    {32, 0, FL_ERR_FORMAT, "invalid name"},            /* name length 0 */
    {32, 40, FL_ERR_FORMAT, "invalid name"},           /* name too long */
    {35, ' ', FL_ERR_FORMAT, "invalid name"},          /* space in name */
    {44, 3, FL_ERR_FORMAT, "3 dimensions"},            /* fc1.weight ndim */
    {48, 6, FL_ERR_FORMAT, "inconsistent"},            /* shape 6 x 6 */
    {56, 1, FL_ERR_FORMAT, "inconsistent"},            /* offset 1 */
    {64, 31, FL_ERR_FORMAT, "inconsistent"},           /* size 31 */
};

static void test_patched_fields(void **state)
{
    (void)state;
    struct model m = model_new("5,4", 5);
    size_t len = 0;
    char err[256];
    assert_int_equal(mdl_file_save(path_of("p"), m.lay, m.p, 5), FL_OK);
    unsigned char *b = slurp(path_of("p"), &len);
    unsigned char *c = malloc(len);
    assert_non_null(c);
    /* layout of the first tensor record starts at byte 32 */
    assert_int_equal(b[32], 10); /* strlen("fc1.weight") */
    assert_memory_equal(b + 34, "fc1.weight", 10);
    for (size_t i = 0; i < FL_ARRAY_LEN(patch_cases); i++) {
        const struct patch_case *pc = &patch_cases[i];
        memcpy(c, b, len);
        c[pc->off] = pc->val;
        fb_fix_crc32(c, len);
        err[0] = '\0';
        const enum fl_err rc = load_bytes(c, len, 1u << 20, err, sizeof(err));
        if (rc != pc->want || strstr(err, pc->msg) == NULL)
            fail_msg("patch %zu: rc %d '%s'", i, rc, err);
    }
    /* a NaN parameter with a valid CRC */
    memcpy(c, b, len);
    c[len - 5] = 0x7f;
    c[len - 6] = 0xc0;
    fb_fix_crc32(c, len);
    assert_int_equal(load_bytes(c, len, 1u << 20, err, sizeof(err)),
                     FL_ERR_NONFINITE);
    /* a flipped float without CRC repair: checksum */
    memcpy(c, b, len);
    c[len - 9] ^= 0x10;
    assert_int_equal(load_bytes(c, len, 1u << 20, err, sizeof(err)),
                     FL_ERR_CHECKSUM);
    assert_non_null(strstr(err, "checksum mismatch"));
    free(c);
    free(b);
    model_free(&m);
}

static void test_max_dim_enforced(void **state)
{
    (void)state;
    struct model m = model_new("5,4", 6);
    struct mdl_layout lay;
    float *p = NULL;
    uint64_t round = 0;
    char err[256] = "";
    const size_t dim = m.lay->dim;
    assert_int_equal(mdl_file_save(path_of("m"), m.lay, m.p, 1), FL_OK);
    assert_int_equal(mdl_file_load(path_of("m"), dim - 1, &lay, &p, &round,
                                   err, sizeof(err)), FL_ERR_TOO_LARGE);
    assert_null(p);
    assert_non_null(strstr(err, "more than the limit"));
    assert_int_equal(mdl_file_load(path_of("m"), dim, &lay, &p, &round, err,
                                   sizeof(err)), FL_OK);
    fl_free(p);
    model_free(&m);
}

/* ---- save-side checks and I/O errors */

static void test_save_rejects(void **state)
{
    (void)state;
    struct model m = model_new("5,4", 7);
    struct mdl_layout l;
    char path[512];
    snprintf(path, sizeof(path), "%s", path_of("s"));
    l = *m.lay;
    l.tensors[1].offset += 1; /* gap */
    assert_int_equal(mdl_file_save(path, &l, m.p, 0), FL_ERR_INVALID_ARG);
    l = *m.lay;
    l.tensors[0].ndim = 3;
    assert_int_equal(mdl_file_save(path, &l, m.p, 0), FL_ERR_INVALID_ARG);
    l = *m.lay;
    l.tensors[0].name[0] = '\0';
    assert_int_equal(mdl_file_save(path, &l, m.p, 0), FL_ERR_INVALID_ARG);
    l = *m.lay;
    memset(l.tensors[0].name, 'a', sizeof(l.tensors[0].name)); /* no NUL */
    assert_int_equal(mdl_file_save(path, &l, m.p, 0), FL_ERR_INVALID_ARG);
    l = *m.lay;
    l.dim += 1;
    assert_int_equal(mdl_file_save(path, &l, m.p, 0), FL_ERR_INVALID_ARG);
    l = *m.lay;
    l.ntensors = 0;
    assert_int_equal(mdl_file_save(path, &l, m.p, 0), FL_ERR_INVALID_ARG);
    m.p[3] = INFINITY;
    assert_int_equal(mdl_file_save(path, m.lay, m.p, 0), FL_ERR_NONFINITE);
    m.p[3] = 0.0f;
    assert_int_equal(access(path, F_OK), -1); /* nothing was written */
    assert_int_equal(mdl_file_save("/nonexistent-dir/x/m.fcm", m.lay, m.p, 0),
                     FL_ERR_IO);
    model_free(&m);
}

static void test_load_missing(void **state)
{
    (void)state;
    struct mdl_layout lay;
    float *p = NULL;
    uint64_t round;
    char err[256] = "";
    assert_int_equal(mdl_file_load(path_of("absent"), 100, &lay, &p, &round,
                                   err, sizeof(err)), FL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "absent"));
    assert_null(p);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct model m = model_new("5,4", 8);
    struct mdl_layout lay;
    float *p = NULL;
    uint64_t round;
    assert_int_equal(mdl_file_save(path_of("a"), m.lay, m.p, 2), FL_OK);
    fl_alloc_fail_after(0);
    assert_int_equal(mdl_file_save(path_of("a2"), m.lay, m.p, 2),
                     FL_ERR_NOMEM);
    assert_int_equal(mdl_file_load(path_of("a"), 1000, &lay, &p, &round,
                                   NULL, 0), FL_ERR_NOMEM);
    fl_alloc_fail_reset();
    assert_null(p);
    assert_int_equal(mdl_file_load(path_of("a"), 1000, &lay, &p, &round,
                                   NULL, 0), FL_OK);
    assert_int_equal(round, 2);
    fl_free(p);
    model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_bytes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_every_truncation_detected),
        cmocka_unit_test(test_every_flipped_byte_detected),
        cmocka_unit_test(test_patched_fields),
        cmocka_unit_test(test_max_dim_enforced),
        cmocka_unit_test(test_save_rejects),
        cmocka_unit_test(test_load_missing),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
