/*
 * Unit tests for worker/wrk_model: deriving the MLP from a Welcome layout
 * (accepted and refused layouts), comparing it with the trainer's, and
 * applying full and XOR-delta models.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "model/mdl_trainer.h"
#include "worker/wrk_model.h"

struct layout_copy {
    struct pb_layout_entry e[MDL_MAX_TENSORS];
    char names[MDL_MAX_TENSORS][MDL_TENSOR_NAME_MAX];
    size_t n;
    uint64_t dim;
};

/* The Welcome a coordinator with this trainer would send. */
static void layout_of(const struct mdl_layout *ml, struct layout_copy *lc)
{
    memset(lc, 0, sizeof(*lc));
    lc->n = ml->ntensors;
    lc->dim = ml->dim;
    for (size_t i = 0; i < ml->ntensors; i++) {
        const struct mdl_tensor_info *t = &ml->tensors[i];
        memcpy(lc->names[i], t->name, sizeof(lc->names[i]));
        lc->e[i].name = lc->names[i];
        lc->e[i].offset = t->offset;
        lc->e[i].nshape = t->ndim;
        for (uint32_t d = 0; d < t->ndim; d++)
            lc->e[i].shape[d] = t->shape[d];
    }
}

static struct mdl_trainer *mlp(uint32_t in, const char *hidden,
                               uint32_t classes)
{
    struct mdl_mlp_config cfg;
    struct mdl_trainer *t = NULL;
    memset(&cfg, 0, sizeof(cfg));
    cfg.input = in;
    cfg.classes = classes;
    if (hidden[0] != '\0')
        assert_int_equal(mdl_mlp_parse_hidden(hidden, &cfg), 0);
    assert_int_equal(mdl_trainer_new_mlp(&cfg, &t), FL_OK);
    return t;
}

static void test_config_round_trip(void **state)
{
    (void)state;
    static const struct {
        uint32_t in;
        const char *hidden;
        uint32_t classes;
    } cases[] = {
        {784, "256,128", 10}, {784, "", 10}, {16, "8", 3}, {5, "4,4,4,4", 2},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        struct mdl_trainer *t = mlp(cases[i].in, cases[i].hidden,
                                    cases[i].classes);
        const struct mdl_layout *ml = mdl_trainer_layout(t);
        struct layout_copy lc;
        struct mdl_mlp_config got;
        char err[256] = "";
        layout_of(ml, &lc);
        assert_int_equal(wrk_model_config(lc.e, lc.n, lc.dim, 1u << 30, &got,
                                          err, sizeof(err)),
                         FL_OK);
        assert_int_equal(got.input, cases[i].in);
        assert_int_equal(got.classes, cases[i].classes);
        struct mdl_trainer *t2 = NULL;
        assert_int_equal(mdl_trainer_new_mlp(&got, &t2), FL_OK);
        assert_true(wrk_model_layout_equal(mdl_trainer_layout(t2), lc.e, lc.n,
                                           err, sizeof(err)));
        struct wrk_span spans[MDL_MAX_TENSORS];
        const size_t ns = wrk_model_spans(ml, spans);
        assert_int_equal(ns, lc.n);
        size_t next = 0;
        for (size_t s = 0; s < ns; s++) {
            assert_int_equal(spans[s].offset, next);
            next += spans[s].size;
        }
        assert_int_equal(next, ml->dim);
        mdl_trainer_destroy(&t2);
        mdl_trainer_destroy(&t);
    }
}

enum mutation {
    MUT_NONE,
    MUT_DROP_LAST,       /* odd count */
    MUT_RENAME_BIAS,     /* not a weight/bias pair */
    MUT_SWAP_PAIR,       /* bias before weight */
    MUT_GAP,             /* offsets not contiguous */
    MUT_CHAIN,           /* layer 2 input != layer 1 output */
    MUT_BIAS_SHAPE,      /* bias [out+1] */
    MUT_DIM,             /* dimension one more than the layout */
    MUT_3D,              /* weight with three dims */
    MUT_TOO_BIG          /* dimension over the bound */
};

static void test_refused_layouts(void **state)
{
    (void)state;
    static const struct {
        enum mutation m;
        enum fl_err want;
    } cases[] = {
        {MUT_NONE, FL_OK},
        {MUT_DROP_LAST, FL_ERR_FORMAT},
        {MUT_RENAME_BIAS, FL_ERR_FORMAT},
        {MUT_SWAP_PAIR, FL_ERR_FORMAT},
        {MUT_GAP, FL_ERR_FORMAT},
        {MUT_CHAIN, FL_ERR_FORMAT},
        {MUT_BIAS_SHAPE, FL_ERR_FORMAT},
        {MUT_DIM, FL_ERR_DIMENSION},
        {MUT_3D, FL_ERR_FORMAT},
        {MUT_TOO_BIG, FL_ERR_TOO_LARGE},
    };
    struct mdl_trainer *t = mlp(12, "6,5", 4);
    struct layout_copy base;
    layout_of(mdl_trainer_layout(t), &base);
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        struct layout_copy lc = base;
        struct mdl_mlp_config got;
        char err[256] = "";
        uint64_t max_dim = 1u << 20;
        for (size_t j = 0; j < lc.n; j++)
            lc.e[j].name = lc.names[j];
        switch (cases[i].m) {
        case MUT_NONE:
            break;
        case MUT_DROP_LAST:
            lc.n--;
            break;
        case MUT_RENAME_BIAS:
            snprintf(lc.names[1], sizeof(lc.names[1]), "fcX.bias");
            break;
        case MUT_SWAP_PAIR: {
            const struct pb_layout_entry tmp = lc.e[0];
            lc.e[0] = lc.e[1];
            lc.e[1] = tmp;
            break;
        }
        case MUT_GAP:
            lc.e[1].offset++;
            break;
        case MUT_CHAIN:
            lc.e[2].shape[1]++;
            break;
        case MUT_BIAS_SHAPE:
            lc.e[3].shape[0]++;
            break;
        case MUT_DIM:
            lc.dim++;
            break;
        case MUT_3D:
            lc.e[4].nshape = 3;
            break;
        case MUT_TOO_BIG:
            max_dim = lc.dim - 1;
            break;
        }
        const enum fl_err rc = wrk_model_config(lc.e, lc.n, lc.dim, max_dim,
                                                &got, err, sizeof(err));
        if (rc != cases[i].want)
            fail_msg("mutation %d: %s (%s), expected %s", (int)cases[i].m,
                     fl_err_name(rc), err, fl_err_name(cases[i].want));
        if (rc != FL_OK)
            assert_true(err[0] != '\0');
    }
    /* a trainer of another shape is not equal to the layout */
    struct mdl_trainer *other = mlp(12, "6,6", 4);
    char err[256] = "";
    assert_false(wrk_model_layout_equal(mdl_trainer_layout(other), base.e,
                                        base.n, err, sizeof(err)));
    assert_true(err[0] != '\0');
    mdl_trainer_destroy(&other);
    mdl_trainer_destroy(&t);
}

static void encode_model(struct cmp_ctx *ctx, const float *x, size_t n,
                         const float *base, uint64_t base_version,
                         struct pb_tensor *t)
{
    struct cmp_meta meta;
    const uint8_t *payload = NULL;
    size_t len = 0;
    assert_int_equal(cmp_dense_encode(ctx, x, n, base, CMP_CODEC_ZSTD, 3,
                                      &meta, &payload, &len),
                     FL_OK);
    wrk_pb_from_meta(&meta, payload, len, t);
    t->has_base_version = base != NULL;
    t->base_version = base_version;
}

static void test_apply_full_and_delta(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct fl_rng r;
    static float v1[N], v2[N], held[N], before[N];
    struct cmp_ctx *enc = cmp_ctx_new();
    struct cmp_ctx *dec = cmp_ctx_new();
    struct wrk_held_model m = {false, 0, N, held};
    struct pb_tensor t;
    assert_non_null(enc);
    assert_non_null(dec);
    fl_rng_seed(&r, 3);
    for (size_t i = 0; i < N; i++) {
        v1[i] = (float)fl_rng_normal(&r);
        v2[i] = i % 7 == 0 ? v1[i] + 0.5f : v1[i];
    }
    /* a delta without a held model: ask for the full model */
    encode_model(enc, v2, N, v1, 1, &t);
    assert_int_equal(wrk_model_apply(dec, &m, &t, 2), FL_ERR_NOT_FOUND);
    assert_false(m.have);

    /* full model of version 1 */
    encode_model(enc, v1, N, NULL, 0, &t);
    assert_int_equal(wrk_model_apply(dec, &m, &t, 1), FL_OK);
    assert_true(m.have);
    assert_int_equal(m.version, 1);
    assert_memory_equal(held, v1, sizeof(v1));

    /* delta 1 -> 2 */
    encode_model(enc, v2, N, v1, 1, &t);
    assert_int_equal(wrk_model_apply(dec, &m, &t, 2), FL_OK);
    assert_int_equal(m.version, 2);
    assert_memory_equal(held, v2, sizeof(v2));

    /* delta from a version not held: nothing changes */
    memcpy(before, held, sizeof(before));
    encode_model(enc, v1, N, v2, 7, &t);
    assert_int_equal(wrk_model_apply(dec, &m, &t, 8), FL_ERR_NOT_FOUND);
    assert_int_equal(m.version, 2);
    assert_memory_equal(held, before, sizeof(before));

    /* a corrupted checksum, a wrong dimension, a sparse coding: refused,
     * model unchanged */
    encode_model(enc, v1, N, NULL, 0, &t);
    t.checksum ^= 1;
    assert_int_not_equal(wrk_model_apply(dec, &m, &t, 3), FL_OK);
    encode_model(enc, v1, N - 1, NULL, 0, &t);
    assert_int_equal(wrk_model_apply(dec, &m, &t, 3), FL_ERR_DIMENSION);
    encode_model(enc, v1, N, NULL, 0, &t);
    t.value_coding = CMP_VALUE_FP16;
    assert_int_equal(wrk_model_apply(dec, &m, &t, 3), FL_ERR_UNSUPPORTED);
    t.value_coding = CMP_VALUE_FP32;
    t.codec = 9;
    assert_int_equal(wrk_model_apply(dec, &m, &t, 3), FL_ERR_UNSUPPORTED);
    assert_int_equal(m.version, 2);
    assert_memory_equal(held, before, sizeof(before));

    cmp_ctx_destroy(&enc);
    cmp_ctx_destroy(&dec);
}

static void test_meta_conversion(void **state)
{
    (void)state;
    const struct cmp_meta meta = {1000, 17, CMP_INDEX_RICE, CMP_VALUE_BF16,
                                  CMP_CODEC_LZ4, 123, 0xdeadbeef};
    static const uint8_t payload[3] = {1, 2, 3};
    struct pb_tensor t;
    struct cmp_meta back;
    wrk_pb_from_meta(&meta, payload, sizeof(payload), &t);
    assert_int_equal(t.dimension, 1000);
    assert_int_equal(t.k, 17);
    assert_int_equal(t.index_coding, 3);
    assert_int_equal(t.value_coding, 3);
    assert_int_equal(t.codec, 2);
    assert_ptr_equal(t.payload, payload);
    assert_int_equal(t.payload_len, 3);
    assert_false(t.has_base_version);
    wrk_meta_from_pb(&t, false, &back);
    assert_int_equal(back.dimension, meta.dimension);
    assert_int_equal(back.k, meta.k);
    assert_int_equal(back.index_coding, meta.index_coding);
    assert_int_equal(back.value_coding, meta.value_coding);
    assert_int_equal(back.codec, meta.codec);
    assert_int_equal(back.raw_size, meta.raw_size);
    assert_int_equal(back.checksum, meta.checksum);
    wrk_meta_from_pb(&t, true, &back);
    assert_int_equal(back.k, 1000);
    assert_int_equal(back.index_coding, CMP_INDEX_ALL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_round_trip),
        cmocka_unit_test(test_refused_layouts),
        cmocka_unit_test(test_apply_full_and_delta),
        cmocka_unit_test(test_meta_conversion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
