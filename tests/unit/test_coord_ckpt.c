/*
 * Unit tests for coordinator/coord_ckpt (the checkpoint file) and the
 * engine's checkpoint/resume (coord_engine_resume, io.checkpoint):
 *   - round trips over a table of shapes (dimension, devices, momentum,
 *     reports), field by field and bit for bit;
 *   - every single-byte corruption, every truncation and trailing bytes
 *     are refused; a table of targeted corruptions gives the right code;
 *   - files: save/load, NOT_FOUND, overwrite, no temporary left behind;
 *   - compatibility checks (dimension, layout, seed, server momentum);
 *   - report files cut back to the recorded lengths (torn lines removed),
 *     refused when shorter than recorded, nothing changed then;
 *   - the engine: checkpoint after a commit, after an abandon and on stop;
 *     a resumed engine continues the round, model version, cohort RNG and
 *     device fates of the original, sends full models, ends at once when
 *     the checkpoint is past --rounds, and counts --max-attempts from the
 *     resumed attempt.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
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
#include "coordinator/coord_ckpt.h"
#include "coordinator/coord_engine.h"
#include "proto/pb_msg.h"
#include "tests/unit/coord_harness.h"
#include "fixture_bytes.h"

#define S (1000000000ULL)
#define DIM 24

/* ---- helpers */

static void make_layout(struct mdl_layout *l, uint32_t rows)
{
    memset(l, 0, sizeof(*l));
    l->ntensors = 2;
    snprintf(l->tensors[0].name, MDL_TENSOR_NAME_MAX, "fc1.weight");
    l->tensors[0].size = rows * 5;
    l->tensors[0].ndim = 2;
    l->tensors[0].shape[0] = rows;
    l->tensors[0].shape[1] = 5;
    snprintf(l->tensors[1].name, MDL_TENSOR_NAME_MAX, "fc1.bias");
    l->tensors[1].offset = rows * 5;
    l->tensors[1].size = rows;
    l->tensors[1].ndim = 1;
    l->tensors[1].shape[0] = rows;
    l->dim = rows * 6;
}

/* A checkpoint with seeded contents; arrays in the caller's buffers. */
static void fill_ckpt(struct coord_ckpt *ck, uint64_t dim, uint32_t ndev,
                      bool mom, bool reports, float *params, float *m,
                      struct coord_ckpt_device *devs, uint64_t seed)
{
    struct fl_rng r;
    fl_rng_seed(&r, seed);
    memset(ck, 0, sizeof(*ck));
    ck->dim = dim;
    ck->layout_crc = (uint32_t)fl_rng_next(&r);
    ck->seed = fl_rng_next(&r);
    ck->epoch = fl_rng_next(&r);
    ck->next_round = 1 + fl_rng_below(&r, 1000);
    ck->next_attempt = 1 + (uint32_t)fl_rng_below(&r, 5);
    ck->model_version = 1 + fl_rng_below(&r, 1000);
    for (int i = 0; i < 4; i++)
        ck->rng.s[i] = fl_rng_next(&r);
    ck->has_reports = reports;
    for (int i = 0; i < COORD_RF_COUNT; i++)
        ck->report_len[i] = reports ? fl_rng_below(&r, 1u << 20) : 0;
    ck->sum.rounds_done = fl_rng_below(&r, 100);
    ck->sum.attempts = fl_rng_below(&r, 100);
    ck->sum.up_wire_bytes = fl_rng_next(&r);
    ck->sum.up_dense_bytes = fl_rng_next(&r);
    ck->sum.other_rx_bytes = fl_rng_next(&r);
    ck->sum.down_wire_bytes = fl_rng_next(&r);
    ck->sum.down_dense_bytes = fl_rng_next(&r);
    ck->sum.updates_used = fl_rng_next(&r);
    ck->sum.updates_rejected = fl_rng_next(&r);
    ck->sum.updates_late = fl_rng_next(&r);
    ck->sum.send_failures = fl_rng_next(&r);
    ck->sum.initial_acc = 0.1;
    ck->sum.final_acc = NAN; /* NaN travels (nothing committed yet) */
    ck->sum.final_loss = 2.5;
    for (uint64_t i = 0; i < dim; i++) {
        params[i] = (float)fl_rng_normal(&r);
        if (mom)
            m[i] = (float)fl_rng_normal(&r);
    }
    for (uint32_t i = 0; i < ndev; i++) {
        struct coord_ckpt_device *d = &devs[i];
        memset(d, 0, sizeof(*d));
        if (i == 0) /* the longest id allowed */
            memset(d->id, 'x', COORD_ID_MAX);
        else
            snprintf(d->id, sizeof(d->id), "dev-%u.a_b:c", i);
        d->last_status = (uint32_t)fl_rng_below(&r, 4);
        d->last_round = fl_rng_next(&r);
        d->n_used = (uint32_t)fl_rng_next(&r);
        d->n_rejected = (uint32_t)fl_rng_next(&r);
        d->n_late = (uint32_t)fl_rng_next(&r);
        d->total_up_bytes = fl_rng_next(&r);
        d->total_down_bytes = fl_rng_next(&r);
    }
    ck->ndevices = ndev;
    ck->devices = ndev > 0 ? devs : NULL;
    ck->params = params;
    ck->momentum = mom ? m : NULL;
}

static uint8_t *encode(const struct coord_ckpt *ck, size_t *len)
{
    const size_t n = coord_ckpt_size(ck);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    assert_int_equal(coord_ckpt_encode(ck, buf, n, len), FL_OK);
    assert_int_equal(*len, n);
    return buf;
}

static bool same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0;
}

static void assert_ckpt_equal(const struct coord_ckpt *a,
                              const struct coord_ckpt *b)
{
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->layout_crc, b->layout_crc);
    assert_int_equal(a->seed, b->seed);
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->next_round, b->next_round);
    assert_int_equal(a->next_attempt, b->next_attempt);
    assert_int_equal(a->model_version, b->model_version);
    assert_memory_equal(&a->rng, &b->rng, sizeof(a->rng));
    assert_int_equal(a->has_reports, b->has_reports);
    for (int i = 0; i < COORD_RF_COUNT; i++)
        assert_int_equal(a->report_len[i], b->report_len[i]);
    assert_int_equal(a->sum.rounds_done, b->sum.rounds_done);
    assert_int_equal(a->sum.attempts, b->sum.attempts);
    assert_int_equal(a->sum.up_wire_bytes, b->sum.up_wire_bytes);
    assert_int_equal(a->sum.up_dense_bytes, b->sum.up_dense_bytes);
    assert_int_equal(a->sum.other_rx_bytes, b->sum.other_rx_bytes);
    assert_int_equal(a->sum.down_wire_bytes, b->sum.down_wire_bytes);
    assert_int_equal(a->sum.down_dense_bytes, b->sum.down_dense_bytes);
    assert_int_equal(a->sum.updates_used, b->sum.updates_used);
    assert_int_equal(a->sum.updates_rejected, b->sum.updates_rejected);
    assert_int_equal(a->sum.updates_late, b->sum.updates_late);
    assert_int_equal(a->sum.send_failures, b->sum.send_failures);
    assert_true(same_double(a->sum.initial_acc, b->sum.initial_acc));
    assert_true(same_double(a->sum.final_acc, b->sum.final_acc));
    assert_true(same_double(a->sum.final_loss, b->sum.final_loss));
    assert_int_equal(a->ndevices, b->ndevices);
    for (uint32_t i = 0; i < a->ndevices; i++) {
        const struct coord_ckpt_device *x = &a->devices[i];
        const struct coord_ckpt_device *y = &b->devices[i];
        assert_string_equal(x->id, y->id);
        assert_int_equal(x->last_status, y->last_status);
        assert_int_equal(x->last_round, y->last_round);
        assert_int_equal(x->n_used, y->n_used);
        assert_int_equal(x->n_rejected, y->n_rejected);
        assert_int_equal(x->n_late, y->n_late);
        assert_int_equal(x->total_up_bytes, y->total_up_bytes);
        assert_int_equal(x->total_down_bytes, y->total_down_bytes);
    }
    assert_memory_equal(a->params, b->params, a->dim * sizeof(float));
    assert_int_equal(a->momentum != NULL, b->momentum != NULL);
    if (a->momentum != NULL)
        assert_memory_equal(a->momentum, b->momentum,
                            a->dim * sizeof(float));
}

/* ---- the file format */

static void test_roundtrip_table(void **state)
{
    (void)state;
    static const struct {
        uint64_t dim;
        uint32_t ndev;
        bool mom;
        bool reports;
    } table[] = {
        {1, 0, false, false},  {24, 3, false, true}, {24, 3, true, true},
        {1000, 0, true, false}, {7, 40, false, true}, {4096, 2, true, true},
    };
    for (size_t t = 0; t < FL_ARRAY_LEN(table); t++) {
        const uint64_t dim = table[t].dim;
        float *p = calloc(dim, sizeof(float));
        float *m = calloc(dim, sizeof(float));
        struct coord_ckpt_device *devs =
            calloc(table[t].ndev + 1, sizeof(*devs));
        struct coord_ckpt ck, back;
        size_t len = 0;
        assert_non_null(p);
        assert_non_null(m);
        assert_non_null(devs);
        fill_ckpt(&ck, dim, table[t].ndev, table[t].mom, table[t].reports,
                  p, m, devs, 100 + t);
        uint8_t *buf = encode(&ck, &len);
        assert_int_equal(len, 240 + 104 * table[t].ndev +
                                  4 * dim * (table[t].mom ? 2 : 1) + 4);
        assert_memory_equal(buf, "FCMPCKPT", 8);
        assert_int_equal(coord_ckpt_decode(buf, len, &back), FL_OK);
        assert_non_null(back.owned);
        assert_ckpt_equal(&ck, &back);
        /* encoding what was decoded gives the same bytes */
        size_t len2 = 0;
        uint8_t *buf2 = encode(&back, &len2);
        assert_int_equal(len2, len);
        assert_memory_equal(buf, buf2, len);
        coord_ckpt_release(&back);
        assert_null(back.owned);
        assert_null(back.params);
        coord_ckpt_release(&back); /* twice is harmless */
        free(buf2);
        free(buf);
        free(devs);
        free(m);
        free(p);
    }
}

static void test_encode_refuses(void **state)
{
    (void)state;
    float p[4] = {0};
    struct coord_ckpt_device d;
    struct coord_ckpt ck;
    uint8_t buf[1024];
    size_t len = 0;
    fill_ckpt(&ck, 4, 1, false, false, p, NULL, &d, 1);
    assert_int_equal(coord_ckpt_encode(&ck, buf, coord_ckpt_size(&ck) - 1,
                                       &len),
                     FL_ERR_TOO_LARGE);
    ck.devices = NULL;
    assert_int_equal(coord_ckpt_encode(&ck, buf, sizeof(buf), &len),
                     FL_ERR_INVALID_ARG);
    ck.devices = &d;
    ck.params = NULL;
    assert_int_equal(coord_ckpt_encode(&ck, buf, sizeof(buf), &len),
                     FL_ERR_INVALID_ARG);
}

/* Every bit flip of every byte, every truncation and extra bytes: never
 * accepted, and nothing is owned after a failure. */
static void test_corruption_detected(void **state)
{
    (void)state;
    float p[DIM], m[DIM];
    struct coord_ckpt_device devs[2];
    struct coord_ckpt ck, back;
    size_t len = 0;
    fill_ckpt(&ck, DIM, 2, true, true, p, m, devs, 7);
    uint8_t *buf = encode(&ck, &len);
    uint8_t *copy = malloc(len + 1);
    assert_non_null(copy);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(copy, buf, len);
            copy[i] ^= (uint8_t)(1u << bit);
            const enum fl_err rc = coord_ckpt_decode(copy, len, &back);
            if (rc == FL_OK)
                fail_msg("flip of bit %d of byte %zu accepted", bit, i);
            assert_null(back.owned);
        }
    }
    for (size_t n = 0; n < len; n++) {
        const enum fl_err rc = coord_ckpt_decode(buf, n, &back);
        if (rc == FL_OK)
            fail_msg("truncation to %zu of %zu bytes accepted", n, len);
        assert_true(rc == FL_ERR_TRUNCATED || rc == FL_ERR_CHECKSUM ||
                    rc == FL_ERR_FORMAT);
    }
    memcpy(copy, buf, len);
    copy[len] = 0;
    assert_int_equal(coord_ckpt_decode(copy, len + 1, &back), FL_ERR_FORMAT);
    free(copy);
    free(buf);
}

/* Corruptions with a correct CRC: the field checks themselves. */
static void test_targeted_corruption(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        size_t off;      /* byte offset of the field */
        int width;       /* 1, 4 or 8 bytes */
        uint64_t value;
        bool keep_crc;   /* leave the CRC as it was */
        enum fl_err want;
    } table[] = {
        {"magic", 0, 1, 'X', true, FL_ERR_FORMAT},
        {"version", 8, 4, 2, true, FL_ERR_VERSION},
        {"unknown flag", 12, 4, 1u << 5, false, FL_ERR_FORMAT},
        {"dimension 0", 16, 8, 0, false, FL_ERR_FORMAT},
        {"dimension > 2^32", 16, 8, 1ULL << 33, false, FL_ERR_FORMAT},
        {"dimension larger", 16, 8, DIM + 1, false, FL_ERR_TRUNCATED},
        {"dimension smaller", 16, 8, DIM - 1, false, FL_ERR_FORMAT},
        {"too many devices", 28, 4, 70000, false, FL_ERR_FORMAT},
        {"next round 0", 48, 8, 0, false, FL_ERR_FORMAT},
        {"next attempt 0", 56, 4, 0, false, FL_ERR_FORMAT},
        {"reserved", 60, 4, 1, false, FL_ERR_FORMAT},
        {"model version 0", 64, 8, 0, false, FL_ERR_FORMAT},
        {"device id char", 240, 1, '/', false, FL_ERR_FORMAT},
        {"device id empty", 240, 1, 0, false, FL_ERR_FORMAT},
        {"parameter NaN", 240 + 104, 4, 0x7fc00000u, false,
         FL_ERR_NONFINITE},
        {"parameter Inf", 240 + 104 + 8, 4, 0x7f800000u, false,
         FL_ERR_NONFINITE},
        {"crc", 240 + 104 + DIM * 4, 4, 0, true, FL_ERR_CHECKSUM},
    };
    float p[DIM];
    struct coord_ckpt_device d;
    struct coord_ckpt ck, back;
    size_t len = 0;
    fill_ckpt(&ck, DIM, 1, false, true, p, NULL, &d, 9);
    snprintf(d.id, sizeof(d.id), "w1");
    uint8_t *buf = encode(&ck, &len);
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    for (size_t t = 0; t < FL_ARRAY_LEN(table); t++) {
        memcpy(copy, buf, len);
        if (table[t].width == 1)
            copy[table[t].off] = (uint8_t)table[t].value;
        else if (table[t].width == 4)
            fb_le32(copy + table[t].off, (uint32_t)table[t].value);
        else
            fb_le64(copy + table[t].off, table[t].value);
        if (!table[t].keep_crc)
            fb_fix_crc32(copy, len);
        const enum fl_err rc = coord_ckpt_decode(copy, len, &back);
        if (rc != table[t].want)
            fail_msg("%s: got %s, want %s", table[t].what, fl_err_name(rc),
                     fl_err_name(table[t].want));
        assert_null(back.owned);
    }
    /* "w1" followed by a stray byte inside the NUL padding */
    memcpy(copy, buf, len);
    copy[240 + 10] = 'z';
    fb_fix_crc32(copy, len);
    assert_int_equal(coord_ckpt_decode(copy, len, &back), FL_ERR_FORMAT);
    free(copy);
    free(buf);
}

/* ---- files */

static char *temp_dir(void)
{
    char tmpl[] = "/tmp/test_coord_ckpt.XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    return strdup(tmpl);
}

static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    char path[1024];
    assert_non_null(d);
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, ent->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    size_t n = 0;
    assert_non_null(d);
    while ((ent = readdir(d)) != NULL)
        n += ent->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_save_load(void **state)
{
    (void)state;
    char *dir = temp_dir();
    float p[DIM], m[DIM];
    struct coord_ckpt_device devs[3];
    struct coord_ckpt ck, back;
    assert_int_equal(coord_ckpt_load(dir, &back), FL_ERR_NOT_FOUND);
    fill_ckpt(&ck, DIM, 3, true, true, p, m, devs, 11);
    assert_int_equal(coord_ckpt_save(dir, &ck), FL_OK);
    assert_int_equal(count_entries(dir), 1); /* no temporary left */
    assert_int_equal(coord_ckpt_load(dir, &back), FL_OK);
    assert_ckpt_equal(&ck, &back);
    coord_ckpt_release(&back);
    /* overwritten by the next one */
    ck.next_round++;
    p[3] = 42.0f;
    assert_int_equal(coord_ckpt_save(dir, &ck), FL_OK);
    assert_int_equal(coord_ckpt_load(dir, &back), FL_OK);
    assert_int_equal(back.next_round, ck.next_round);
    assert_true(back.params[3] == 42.0f);
    coord_ckpt_release(&back);
    assert_int_equal(count_entries(dir), 1);
    /* a damaged file is refused */
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, COORD_CKPT_FILE);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 300, SEEK_SET), 0);
    fputc(0x55, f);
    fclose(f);
    assert_int_equal(coord_ckpt_load(dir, &back), FL_ERR_CHECKSUM);
    assert_null(back.owned);
    /* a directory that does not exist cannot be saved into */
    char missing[1100];
    snprintf(missing, sizeof(missing), "%s/no/such/dir", dir);
    assert_int_equal(coord_ckpt_save(missing, &ck), FL_ERR_IO);
    remove_dir(dir);
}

static void test_layout_crc(void **state)
{
    (void)state;
    struct mdl_layout a, b;
    make_layout(&a, 4);
    make_layout(&b, 4);
    assert_int_equal(coord_ckpt_layout_crc(&a), coord_ckpt_layout_crc(&b));
    make_layout(&b, 5);
    assert_int_not_equal(coord_ckpt_layout_crc(&a),
                         coord_ckpt_layout_crc(&b));
    make_layout(&b, 4);
    snprintf(b.tensors[1].name, MDL_TENSOR_NAME_MAX, "fc2.bias");
    assert_int_not_equal(coord_ckpt_layout_crc(&a),
                         coord_ckpt_layout_crc(&b));
    make_layout(&b, 4);
    b.tensors[0].shape[0] = 5; /* same sizes, transposed shape */
    b.tensors[0].shape[1] = 4;
    assert_int_not_equal(coord_ckpt_layout_crc(&a),
                         coord_ckpt_layout_crc(&b));
}

static void test_check_config(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        int change;      /* 0 none, 1 dim, 2 layout, 3 seed, 4 mom on,
                            5 mom off */
        const char *needle;
    } table[] = {
        {"same", 0, NULL},
        {"dimension", 1, "parameters"},
        {"layout", 2, "layout"},
        {"seed", 3, "--seed 5, not 6"},
        {"momentum on", 4, "without server momentum"},
        {"momentum off", 5, "with server momentum"},
    };
    for (size_t t = 0; t < FL_ARRAY_LEN(table); t++) {
        struct coord_config cfg;
        struct mdl_layout l;
        struct coord_ckpt ck;
        float p[DIM], m[DIM];
        char err[256] = "";
        coord_config_defaults(&cfg);
        make_layout(&l, 4);
        fill_ckpt(&ck, DIM, 0, table[t].change == 5, false, p, m, NULL, 3);
        ck.layout_crc = coord_ckpt_layout_crc(&l);
        ck.seed = 5;
        cfg.seed = 5;
        switch (table[t].change) {
        case 1: make_layout(&l, 5); ck.layout_crc = coord_ckpt_layout_crc(&l);
            break;
        case 2: snprintf(l.tensors[0].name, MDL_TENSOR_NAME_MAX, "x"); break;
        case 3: cfg.seed = 6; break;
        case 4: cfg.server_momentum = 0.9; break;
        default: break;
        }
        const enum fl_err rc = coord_ckpt_check(&ck, &cfg, &l, err,
                                                sizeof(err));
        if (table[t].needle == NULL) {
            assert_int_equal(rc, FL_OK);
            continue;
        }
        assert_int_equal(rc, FL_ERR_INVALID_ARG);
        if (strstr(err, table[t].needle) == NULL)
            fail_msg("%s: '%s' lacks '%s'", table[t].what, err,
                     table[t].needle);
    }
}

/* ---- report files */

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void append_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *dir, const char *name)
{
    char path[1024];
    void *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(fl_file_read(path, 1u << 20, &data, &len), FL_OK);
    return data;
}

static void test_truncate_reports(void **state)
{
    (void)state;
    static const char *const good[COORD_RF_COUNT] = {
        "round,attempt\n1,1\n2,1\n",
        "{\"round\":1}\n{\"round\":2}\n",
        "round,device\n1,w1\n1,w2\n2,w1\n2,w2\n",
    };
    /* what a crash may leave after the checkpoint: the open round's rows,
     * a torn line */
    static const char *const extra[COORD_RF_COUNT] = {
        "3,1\n4,1,2,3", "{\"round\":3}\n{\"rou", "3,w1\n3,w",
    };
    char *dir = temp_dir();
    uint64_t len[COORD_RF_COUNT], now[COORD_RF_COUNT], cut = 0;
    char err[512] = "";
    assert_int_equal(coord_ckpt_report_lengths(dir, len), FL_OK);
    for (int i = 0; i < COORD_RF_COUNT; i++)
        assert_int_equal(len[i], 0); /* missing files have length 0 */
    for (int i = 0; i < COORD_RF_COUNT; i++)
        write_file(dir, coord_ckpt_report_names[i], good[i]);
    assert_int_equal(coord_ckpt_report_lengths(dir, len), FL_OK);
    for (int i = 0; i < COORD_RF_COUNT; i++)
        assert_int_equal(len[i], strlen(good[i]));
    /* nothing to cut */
    assert_int_equal(coord_ckpt_truncate_reports(dir, len, &cut, err,
                                                 sizeof(err)),
                     FL_OK);
    assert_int_equal(cut, 0);
    uint64_t added = 0;
    for (int i = 0; i < COORD_RF_COUNT; i++) {
        append_file(dir, coord_ckpt_report_names[i], extra[i]);
        added += strlen(extra[i]);
    }
    assert_int_equal(coord_ckpt_truncate_reports(dir, len, &cut, err,
                                                 sizeof(err)),
                     FL_OK);
    assert_int_equal(cut, added);
    for (int i = 0; i < COORD_RF_COUNT; i++) {
        char *text = read_text(dir, coord_ckpt_report_names[i]);
        assert_string_equal(text, good[i]);
        free(text);
    }
    /* a file shorter than recorded: refused, and no file is touched */
    append_file(dir, coord_ckpt_report_names[0], "junk");
    write_file(dir, coord_ckpt_report_names[2], "round,device\n");
    assert_int_equal(coord_ckpt_truncate_reports(dir, len, &cut, err,
                                                 sizeof(err)),
                     FL_ERR_TRUNCATED);
    assert_non_null(strstr(err, "devices.csv"));
    assert_int_equal(coord_ckpt_report_lengths(dir, now), FL_OK);
    assert_int_equal(now[0], len[0] + 4);
    /* a missing file with a recorded length is refused too; one recorded
     * as empty may be missing */
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, coord_ckpt_report_names[2]);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(coord_ckpt_truncate_reports(dir, len, &cut, err,
                                                 sizeof(err)),
                     FL_ERR_TRUNCATED);
    len[2] = 0;
    assert_int_equal(coord_ckpt_truncate_reports(dir, len, &cut, err,
                                                 sizeof(err)),
                     FL_OK);
    assert_int_equal(cut, 4);
    remove_dir(dir);
}

/* ---- the engine: checkpoint and resume */

struct harness {
    struct coord_config cfg;
    struct mdl_layout layout;
    float init[DIM];
    struct coord_report *report;
    struct coord_engine *e;
    struct th_outbox ob;
    uint64_t now;
    struct cmp_ctx *ctx;
    uint8_t *ckpt;             /* the last checkpoint, encoded */
    size_t ckpt_len;
    int nckpt;
};

static enum fl_err fake_send(void *ctx, const uint8_t *rid, size_t rid_len,
                             uint8_t *buf, size_t len)
{
    struct harness *h = ctx;
    return th_outbox_send(&h->ob, rid, rid_len, buf, len);
}

/* io.checkpoint: keep the encoded bytes, as coord_ckpt_save() would. */
static enum fl_err fake_checkpoint(void *ctx, struct coord_ckpt *ck)
{
    struct harness *h = ctx;
    size_t len = 0;
    free(h->ckpt);
    h->ckpt = encode(ck, &len);
    h->ckpt_len = len;
    h->nckpt++;
    return FL_OK;
}

/* An engine (not started) with the flags; epoch tells runs apart. */
static struct harness *harness_new(const char *flags, uint64_t epoch)
{
    struct harness *h = calloc(1, sizeof(*h));
    char err[256];
    assert_non_null(h);
    th_config(&h->cfg, flags);
    make_layout(&h->layout, 4);
    for (int i = 0; i < DIM; i++)
        h->init[i] = (float)(i - 12) * 0.125f;
    assert_int_equal(coord_report_open(NULL, &h->report, err, sizeof(err)),
                     FL_OK);
    const struct coord_io io = {.ctx = h, .send = fake_send,
                                .checkpoint = fake_checkpoint};
    h->e = th_engine(&h->cfg, &h->layout, h->init, &io, h->report, epoch);
    h->ctx = cmp_ctx_new();
    assert_non_null(h->ctx);
    h->now = 1000 * S;
    return h;
}

static void harness_free(struct harness *h)
{
    coord_engine_destroy(&h->e);
    coord_config_release(&h->cfg);
    coord_report_close(&h->report);
    th_outbox_release(&h->ob);
    cmp_ctx_destroy(&h->ctx);
    free(h->ckpt);
    free(h);
}

static const struct pb_envelope *take(struct harness *h, uint8_t rid,
                                      enum pb_body body)
{
    return th_outbox_take(&h->ob, rid, body, false, NULL, NULL);
}

static void feed_env(struct harness *h, uint8_t rid,
                     const struct pb_envelope *env)
{
    th_feed_env(h->e, rid, NULL, env, h->now);
}

/* Hello from device w<rid>; version > 0: says it holds that version. */
static void hello(struct harness *h, uint8_t rid, uint64_t version)
{
    char id[16];
    struct pb_envelope env = {.version = 1, .body = PB_BODY_HELLO};
    snprintf(id, sizeof(id), "w%u", rid);
    env.hello.device_id = id;
    env.hello.n_samples = 100;
    env.hello.has_model_version = version > 0;
    env.hello.model_version = version;
    feed_env(h, rid, &env);
    assert_non_null(take(h, rid, PB_BODY_WELCOME));
}

static void send_update(struct harness *h, uint8_t rid, uint64_t round)
{
    uint32_t idx[2] = {rid % DIM, (rid + 7u) % DIM};
    float val[2] = {0.5f * rid, -0.25f};
    const uint8_t *payload = NULL;
    size_t plen = 0;
    struct cmp_meta meta;
    const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP32,
                                 CMP_CODEC_NONE, 0};
    if (idx[0] > idx[1]) {
        const uint32_t t = idx[0];
        idx[0] = idx[1];
        idx[1] = t;
    }
    assert_int_equal(cmp_sparse_encode(h->ctx, DIM, idx, val, 2, &p, &meta,
                                       &payload, &plen),
                     FL_OK);
    struct pb_envelope env = {.version = 1, .body = PB_BODY_UPDATE};
    struct pb_update *u = &env.update;
    u->round = round;
    u->n_samples = 100;
    u->delta.dimension = meta.dimension;
    u->delta.k = meta.k;
    u->delta.index_coding = meta.index_coding;
    u->delta.value_coding = meta.value_coding;
    u->delta.codec = meta.codec;
    u->delta.raw_size = meta.raw_size;
    u->delta.checksum = meta.checksum;
    u->delta.payload = payload;
    u->delta.payload_len = plen;
    feed_env(h, rid, &env);
}

/* Bitmask of the devices 1..n that got a Task of `round` (taken). */
static unsigned tasked(struct harness *h, uint8_t n, uint64_t round)
{
    unsigned mask = 0;
    for (uint8_t r = 1; r <= n; r++) {
        const struct pb_envelope *t = take(h, r, PB_BODY_TASK);
        if (t == NULL)
            continue;
        assert_int_equal(t->task.round, round);
        mask |= 1u << r;
    }
    return mask;
}

/* Run the open round: every device in mask reports; then the deadline. */
static void finish_round(struct harness *h, unsigned mask, uint64_t round)
{
    for (uint8_t r = 1; r < 32; r++) {
        if (mask & (1u << r))
            send_update(h, r, round);
    }
    h->now += 61 * S;
    coord_engine_tick(h->e, h->now);
}

static struct harness *resumed(const char *flags, const struct harness *from)
{
    struct harness *h = harness_new(flags, 0x2222);
    struct coord_ckpt ck;
    char err[256] = "";
    assert_int_equal(coord_ckpt_decode(from->ckpt, from->ckpt_len, &ck),
                     FL_OK);
    assert_int_equal(coord_engine_resume(h->e, &ck, err, sizeof(err)),
                     FL_OK);
    coord_ckpt_release(&ck);
    coord_engine_start(h->e, h->now);
    return h;
}

static void test_engine_resume_continues(void **state)
{
    (void)state;
    static const char flags[] = "--min-devices 2 --fraction 0.5 --rounds 4 "
                                "--density 0.1 --quorum 1";
    struct harness *a = harness_new(flags, 0x1111);
    struct coord_ckpt ck;
    coord_engine_start(a->e, a->now);
    for (uint8_t r = 1; r <= 4; r++)
        hello(a, r, 0);
    coord_engine_tick(a->e, a->now);
    const unsigned c1 = tasked(a, 4, 1);
    assert_int_equal(__builtin_popcount(c1), 2);
    assert_int_equal(a->nckpt, 0);
    finish_round(a, c1, 1);
    /* one checkpoint, after the commit of round 1 */
    assert_int_equal(a->nckpt, 1);
    assert_int_equal(coord_ckpt_decode(a->ckpt, a->ckpt_len, &ck), FL_OK);
    assert_int_equal(ck.next_round, 2);
    assert_int_equal(ck.next_attempt, 1);
    assert_int_equal(ck.model_version, 2);
    assert_int_equal(ck.epoch, 0x1111);
    assert_int_equal(ck.sum.rounds_done, 1);
    assert_int_equal(ck.sum.updates_used, 2);
    assert_int_equal(ck.ndevices, 4);
    assert_memory_equal(ck.params, coord_agg_params(coord_engine_agg(a->e)),
                        DIM * sizeof(float));
    for (uint32_t i = 0; i < ck.ndevices; i++) {
        const unsigned bit = 1u << (ck.devices[i].id[1] - '0');
        assert_int_equal(ck.devices[i].last_status,
                         (c1 & bit) ? PB_UPDATE_USED : 0);
        assert_int_equal(ck.devices[i].last_round, (c1 & bit) ? 1 : 0);
    }
    coord_ckpt_release(&ck);

    /* b resumes from a's checkpoint; a goes on as if nothing happened */
    struct harness *b = resumed(flags, a);
    assert_int_equal(coord_engine_round(b->e), 2);
    assert_int_equal(coord_agg_version(coord_engine_agg(b->e)), 2);
    assert_memory_equal(coord_agg_params(coord_engine_agg(b->e)),
                        coord_agg_params(coord_engine_agg(a->e)),
                        DIM * sizeof(float));
    /* devices come back claiming the version they held: not trusted */
    for (uint8_t r = 1; r <= 4; r++)
        hello(b, r, 2);
    coord_engine_tick(b->e, b->now);
    const unsigned c2a = tasked(a, 4, 2);
    unsigned c2b = 0;
    for (uint8_t r = 1; r <= 4; r++) {
        const struct pb_envelope *t = take(b, r, PB_BODY_TASK);
        if (t == NULL)
            continue;
        c2b |= 1u << r;
        assert_int_equal(t->task.round, 2);
        assert_int_equal(t->task.epoch, 0x2222);
        assert_int_equal(t->task.model_version, 2);
        assert_false(t->task.model.has_base_version); /* full model */
        /* the fate of its last update survived the restart */
        if (c1 & (1u << r)) {
            assert_int_equal(t->task.last_update, PB_UPDATE_USED);
            assert_int_equal(t->task.last_update_round, 1);
        } else {
            assert_int_equal(t->task.last_update, PB_UPDATE_NONE);
        }
    }
    /* the same cohort as the original: the RNG was checkpointed */
    assert_int_equal(c2a, c2b);
    finish_round(a, c2a, 2);
    finish_round(b, c2b, 2);
    assert_int_equal(coord_agg_version(coord_engine_agg(b->e)), 3);
    assert_memory_equal(coord_agg_params(coord_engine_agg(b->e)),
                        coord_agg_params(coord_engine_agg(a->e)),
                        DIM * sizeof(float));
    assert_int_equal(tasked(a, 4, 3), tasked(b, 4, 3));
    struct coord_summary sa, sb;
    coord_engine_summary(a->e, a->now, &sa);
    coord_engine_summary(b->e, b->now, &sb);
    assert_int_equal(sb.rounds_done, 2);
    assert_int_equal(sb.updates_used, sa.updates_used);
    assert_int_equal(sb.attempts, sa.attempts);
    harness_free(a);
    harness_free(b);
}

static void test_engine_checkpoint_on_abandon_and_stop(void **state)
{
    (void)state;
    static const char flags[] = "--min-devices 2 --rounds 3 --quorum 1 "
                                "--max-attempts 5";
    struct harness *a = harness_new(flags, 0x1111);
    struct coord_ckpt ck;
    coord_engine_start(a->e, a->now);
    hello(a, 1, 0);
    hello(a, 2, 0);
    coord_engine_tick(a->e, a->now);
    assert_int_equal(tasked(a, 2, 1), 0x6);
    finish_round(a, 0x2, 1); /* one of two: no quorum, abandoned */
    assert_int_equal(a->nckpt, 1);
    assert_int_equal(coord_ckpt_decode(a->ckpt, a->ckpt_len, &ck), FL_OK);
    assert_int_equal(ck.next_round, 1);
    assert_int_equal(ck.next_attempt, 2);
    assert_int_equal(ck.model_version, 1);
    assert_int_equal(ck.sum.attempts, 1);
    assert_int_equal(ck.sum.rounds_done, 0);
    coord_ckpt_release(&ck);
    /* attempt 2 is open: stop abandons it and checkpoints attempt 3 */
    assert_int_equal(tasked(a, 2, 1), 0x6);
    coord_engine_stop(a->e, a->now);
    assert_int_equal(coord_engine_status(a->e), COORD_STOPPED);
    assert_int_equal(a->nckpt, 2);
    assert_int_equal(coord_ckpt_decode(a->ckpt, a->ckpt_len, &ck), FL_OK);
    assert_int_equal(ck.next_round, 1);
    assert_int_equal(ck.next_attempt, 3);
    assert_int_equal(ck.sum.attempts, 2);
    coord_ckpt_release(&ck);
    /* the resumed run opens round 1 attempt 3 */
    struct harness *b = resumed(flags, a);
    hello(b, 1, 0);
    hello(b, 2, 0);
    coord_engine_tick(b->e, b->now);
    assert_int_equal(tasked(b, 2, 1), 0x6);
    finish_round(b, 0x6, 1);
    const struct coord_round_row *row = coord_engine_last_row(b->e);
    assert_int_equal(row->round, 1);
    assert_int_equal(row->attempt, 3);
    assert_true(row->committed);
    /* round 2 opened at once; stopping abandons it */
    coord_engine_stop(b->e, b->now);
    assert_int_equal(coord_ckpt_decode(b->ckpt, b->ckpt_len, &ck), FL_OK);
    assert_int_equal(ck.next_round, 2);
    assert_int_equal(ck.next_attempt, 2);
    coord_ckpt_release(&ck);
    /* stop while waiting for devices: a checkpoint of where it waits */
    struct harness *c = harness_new(flags, 0x3333);
    coord_engine_start(c->e, c->now);
    hello(c, 1, 0);
    coord_engine_tick(c->e, c->now);
    assert_int_equal(c->nckpt, 0);
    coord_engine_stop(c->e, c->now);
    assert_int_equal(c->nckpt, 1);
    assert_int_equal(coord_ckpt_decode(c->ckpt, c->ckpt_len, &ck), FL_OK);
    assert_int_equal(ck.next_round, 1);
    assert_int_equal(ck.next_attempt, 1);
    assert_int_equal(ck.sum.attempts, 0);
    assert_int_equal(ck.ndevices, 1);
    coord_ckpt_release(&ck);
    harness_free(a);
    harness_free(b);
    harness_free(c);
}

static void test_engine_resume_past_end(void **state)
{
    (void)state;
    struct harness *a = harness_new("--min-devices 1 --rounds 1", 0x1111);
    struct coord_ckpt ck;
    coord_engine_start(a->e, a->now);
    hello(a, 1, 0);
    coord_engine_tick(a->e, a->now);
    finish_round(a, tasked(a, 1, 1), 1);
    assert_int_equal(coord_engine_status(a->e), COORD_DONE);
    assert_int_equal(coord_ckpt_decode(a->ckpt, a->ckpt_len, &ck), FL_OK);
    assert_int_equal(ck.next_round, 2); /* past the last round */
    coord_ckpt_release(&ck);
    struct harness *b = resumed("--min-devices 1 --rounds 1", a);
    assert_int_equal(coord_engine_tick(b->e, b->now), COORD_DONE);
    /* with more rounds asked for, it goes on at round 2 */
    struct harness *c = resumed("--min-devices 1 --rounds 2", a);
    assert_int_equal(coord_engine_tick(c->e, c->now), COORD_RUNNING);
    assert_int_equal(coord_engine_round(c->e), 2);
    harness_free(a);
    harness_free(b);
    harness_free(c);
}

static void test_engine_max_attempts_after_resume(void **state)
{
    (void)state;
    static const char flags[] = "--min-devices 2 --rounds 2 --quorum 1 "
                                "--max-attempts 2";
    struct harness *a = harness_new(flags, 0x1111);
    coord_engine_start(a->e, a->now);
    hello(a, 1, 0);
    hello(a, 2, 0);
    coord_engine_tick(a->e, a->now);
    finish_round(a, tasked(a, 2, 1) & 0x2, 1);
    coord_engine_tick(a->e, a->now);
    finish_round(a, tasked(a, 2, 1) & 0x2, 1);
    assert_int_equal(coord_engine_status(a->e), COORD_TOO_MANY_ATTEMPTS);
    struct coord_ckpt ck;
    assert_int_equal(coord_ckpt_decode(a->ckpt, a->ckpt_len, &ck), FL_OK);
    assert_int_equal(ck.next_attempt, 3);
    coord_ckpt_release(&ck);
    /* the resumed run gets --max-attempts tries of its own: 3 and 4 */
    struct harness *b = resumed(flags, a);
    hello(b, 1, 0);
    hello(b, 2, 0);
    coord_engine_tick(b->e, b->now);
    finish_round(b, tasked(b, 2, 1) & 0x2, 1);
    assert_int_equal(coord_engine_status(b->e), COORD_RUNNING);
    coord_engine_tick(b->e, b->now);
    finish_round(b, tasked(b, 2, 1) & 0x2, 1);
    assert_int_equal(coord_engine_status(b->e), COORD_TOO_MANY_ATTEMPTS);
    assert_int_equal(coord_engine_last_row(b->e)->attempt, 4);
    /* every device got a Bye */
    assert_non_null(take(b, 1, PB_BODY_BYE));
    assert_non_null(take(b, 2, PB_BODY_BYE));
    harness_free(a);
    harness_free(b);
}

static void test_engine_resume_refused(void **state)
{
    (void)state;
    struct harness *a = harness_new("--min-devices 1 --rounds 2", 0x1111);
    struct coord_ckpt ck;
    char err[256] = "";
    coord_engine_start(a->e, a->now);
    hello(a, 1, 0);
    coord_engine_tick(a->e, a->now);
    finish_round(a, tasked(a, 1, 1), 1);
    assert_int_equal(coord_ckpt_decode(a->ckpt, a->ckpt_len, &ck), FL_OK);
    struct harness *b = harness_new("--min-devices 1 --rounds 2 --seed 9",
                                    0x2);
    assert_int_equal(coord_engine_resume(b->e, &ck, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "--seed"));
    struct harness *c = harness_new("--min-devices 1 --rounds 2 "
                                    "--server-momentum 0.5", 0x3);
    assert_int_equal(coord_engine_resume(c->e, &ck, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    /* a started engine cannot be resumed */
    assert_int_equal(coord_engine_resume(a->e, &ck, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    coord_ckpt_release(&ck);
    harness_free(a);
    harness_free(b);
    harness_free(c);
}

/* Server momentum survives the checkpoint bit for bit. */
static void test_engine_momentum_resumed(void **state)
{
    (void)state;
    static const char flags[] = "--min-devices 2 --rounds 3 --quorum 1 "
                                "--server-momentum 0.9";
    struct harness *a = harness_new(flags, 0x1111);
    coord_engine_start(a->e, a->now);
    hello(a, 1, 0);
    hello(a, 2, 0);
    coord_engine_tick(a->e, a->now);
    finish_round(a, tasked(a, 2, 1), 1);
    struct harness *b = resumed(flags, a);
    assert_memory_equal(coord_agg_momentum(coord_engine_agg(a->e)),
                        coord_agg_momentum(coord_engine_agg(b->e)),
                        DIM * sizeof(float));
    hello(b, 1, 0);
    hello(b, 2, 0);
    coord_engine_tick(b->e, b->now);
    finish_round(a, tasked(a, 2, 2), 2);
    finish_round(b, tasked(b, 2, 2), 2);
    assert_memory_equal(coord_agg_params(coord_engine_agg(a->e)),
                        coord_agg_params(coord_engine_agg(b->e)),
                        DIM * sizeof(float));
    harness_free(a);
    harness_free(b);
}

int main(void)
{
    fl_log_set_level(getenv("FL_TEST_LOG") != NULL ? FL_LOG_DEBUG
                                                   : FL_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_table),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_corruption_detected),
        cmocka_unit_test(test_targeted_corruption),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_layout_crc),
        cmocka_unit_test(test_check_config),
        cmocka_unit_test(test_truncate_reports),
        cmocka_unit_test(test_engine_resume_continues),
        cmocka_unit_test(test_engine_checkpoint_on_abandon_and_stop),
        cmocka_unit_test(test_engine_resume_past_end),
        cmocka_unit_test(test_engine_max_attempts_after_resume),
        cmocka_unit_test(test_engine_resume_refused),
        cmocka_unit_test(test_engine_momentum_resumed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
