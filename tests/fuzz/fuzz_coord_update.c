/*
 * fuzz_coord_update.c - fuzz target for the coordinator's update path.
 *
 * The input is one message (the bytes of one ZeroMQ frame) from a cohort
 * member, handed to a real struct coord_engine: no sockets, a fake clock,
 * the default safe-aggregation settings (share cap 0.5, adaptive norm
 * bound 10, penalty box).
 *
 * Setup for every input: a 24-parameter model (one tensor), devices "d1"
 * (routing id 1) and "d2" (routing id 2); round 1 is committed from two
 * fixed updates, so the adaptive norm bound is in force, and round 2 is
 * open. Then the input arrives from d1, then d2's fixed round-2 update,
 * then the round closes (everyone answered, or at the deadline).
 *
 * Checks:
 *   - the global model is finite;
 *   - it changed only if a round-2 update was accepted, and then it is
 *     the model of round 1 plus the mean of the accepted updates (two
 *     updates under a share cap of 0.5 weigh the same), recomputed here
 *     from an independent pb_unpack + cmp_sparse_decode of the input;
 *   - an accepted input update is within the norm bound of the round.
 * Anything else (a Hello, a Bye, garbage) may happen on the way; the
 * invariants hold whatever the input did to d1 and d2.
 *
 * Seeds: tests/fuzz/corpus/fuzz_coord_update/ is written by this file
 * built with -DFUZZ_COORD_SEEDS (a main() of its own):
 *   make FL_INNER=1 B=build/x build-rel
 *   gcc -std=c11 -D_DEFAULT_SOURCE -DFUZZ_COORD_SEEDS -I. -Ibuild/x/gen \
 *       tests/fuzz/fuzz_coord_update.c build/x/rel/lib{coord,mdl,pb,cmp,\
 *       common}.a $(pkg-config --libs libzmq libprotobuf-c libzstd liblz4 \
 *       openblas zlib) -lm -o /tmp/seeds && /tmp/seeds DIR
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "common/fl_log.h"
#include "compress/cmp_internal.h"
#include "compress/cmp_tensor.h"
#include "coordinator/coord_engine.h"
#include "coordinator/coord_guard.h"
#include "proto/pb_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIM 24
#define S 1000000000ULL

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_coord_update: check failed: %s (line %d)\n", \
                    #cond, __LINE__);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

static const struct pb_limits lim = {1u << 26, 1u << 27};

/* The fixed updates: round 1 from d1 and d2, round 2 from d2. */
static const uint32_t fixed_idx[4] = {0, 5, 11, 23};
static const float fixed_val[3][4] = {{0.5f, -0.25f, 1.0f, 0.125f},
                                      {-0.5f, 0.75f, 0.25f, 1.0f},
                                      {0.3f, 0.2f, -0.1f, -0.4f}};

static enum fl_err drop_send(void *ctx, const uint8_t *rid, size_t rid_len,
                             uint8_t *buf, size_t len)
{
    (void)ctx;
    (void)rid;
    (void)rid_len;
    (void)len;
    fl_free(buf);
    return FL_OK;
}

static void make_layout(struct mdl_layout *l)
{
    memset(l, 0, sizeof(*l));
    l->dim = DIM;
    l->ntensors = 1;
    snprintf(l->tensors[0].name, MDL_TENSOR_NAME_MAX, "w");
    l->tensors[0].size = DIM;
    l->tensors[0].ndim = 1;
    l->tensors[0].shape[0] = DIM;
}

/* Pack an update of round `round`: k entries, with the given codings.
 * Caller frees *buf (fl_free). */
static void pack_update(uint64_t round, uint64_t samples, const uint32_t *idx,
                        const float *val, size_t k,
                        const struct cmp_params *p, uint8_t **buf,
                        size_t *len)
{
    float v[DIM];
    const uint8_t *payload = NULL;
    size_t plen = 0;
    struct cmp_meta meta;
    struct cmp_ctx *ctx = cmp_ctx_new();
    CHECK(ctx != NULL && k <= DIM);
    memcpy(v, val, k * sizeof(float));
    CHECK(cmp_sparse_encode(ctx, DIM, idx, v, k, p, &meta, &payload,
                            &plen) == FL_OK);
    struct pb_envelope env = {.version = 1, .body = PB_BODY_UPDATE};
    env.update.round = round;
    env.update.n_samples = samples;
    env.update.delta = (struct pb_tensor){
        .dimension = meta.dimension, .k = meta.k,
        .index_coding = meta.index_coding, .value_coding = meta.value_coding,
        .codec = meta.codec, .raw_size = meta.raw_size,
        .checksum = meta.checksum, .payload = payload, .payload_len = plen};
    CHECK(pb_pack_alloc(&env, buf, len) == FL_OK);
    cmp_ctx_destroy(&ctx);
}

static void feed_env(struct coord_engine *e, uint8_t rid,
                     const struct pb_envelope *env, uint64_t now)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(pb_pack_alloc(env, &buf, &len) == FL_OK);
    coord_engine_on_message(e, &rid, 1, buf, len, 0, 0, now);
    fl_free(buf);
}

static void fixed_update(struct coord_engine *e, uint8_t rid, uint64_t round,
                         int which, uint64_t now)
{
    static const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP32,
                                        CMP_CODEC_ZSTD, 1};
    uint8_t *buf = NULL;
    size_t len = 0;
    pack_update(round, 100, fixed_idx, fixed_val[which], 4, &p, &buf, &len);
    coord_engine_on_message(e, &rid, 1, buf, len, 0, 0, now);
    fl_free(buf);
}

static bool reported(const struct coord_engine *e, const char *id)
{
    const struct coord_device *d =
        coord_devtab_by_id(coord_engine_devices(e), id);
    return d != NULL && d->rstate == COORD_RS_REPORTED;
}

/* The values of the input as an update (dense, DIM), decoded on our own.
 * 0 when it is not a decodable update. */
static int decode_input(const uint8_t *data, size_t size, double *dense,
                        double *norm)
{
    struct pb_msg *m = NULL;
    const struct pb_envelope *env = NULL;
    const uint32_t *idx = NULL;
    const float *val = NULL;
    size_t k = 0;
    int ok = 0;
    if (pb_unpack(data, size, &lim, &m, &env, NULL, NULL, 0) != FL_OK)
        return 0;
    if (env->body == PB_BODY_UPDATE) {
        const struct pb_tensor *t = &env->update.delta;
        const struct cmp_meta meta = {
            t->dimension, t->k, (enum cmp_index_coding)t->index_coding,
            (enum cmp_value_coding)t->value_coding, (enum cmp_codec)t->codec,
            t->raw_size, t->checksum};
        const struct cmp_limits cl = {.dimension = DIM};
        struct cmp_ctx *ctx = cmp_ctx_new();
        CHECK(ctx != NULL);
        if (cmp_sparse_decode(ctx, &meta, t->payload, t->payload_len, &cl,
                              &idx, &val, &k) == FL_OK) {
            double s = 0;
            for (size_t i = 0; i < k; i++) {
                dense[idx[i]] = val[i];
                s += (double)val[i] * val[i];
            }
            *norm = sqrt(s);
            ok = 1;
        }
        cmp_ctx_destroy(&ctx);
    }
    pb_msg_destroy(&m);
    return ok;
}

static int quiet;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct coord_config cfg;
    struct mdl_layout layout;
    struct coord_report *report = NULL;
    struct coord_engine *e = NULL;
    float init[DIM], before[DIM];
    char err[128];
    uint64_t now = 1000 * S;
    if (!quiet) {
        fl_log_init("fuzz", NULL);
        fl_log_set_level(FL_LOG_OFF);
        quiet = 1;
    }
    coord_config_defaults(&cfg);
    cfg.min_devices = 2;
    cfg.rounds = 5;
    cfg.density = 0.25;
    cfg.quorum = 0.5;
    cfg.round_timeout = 10;
    make_layout(&layout);
    for (int i = 0; i < DIM; i++)
        init[i] = (float)(i - 12) * 0.0625f;
    CHECK(coord_report_open(NULL, &report, err, sizeof(err)) == FL_OK);
    const struct coord_engine_env env = {
        .cfg = &cfg, .layout = &layout, .init = init,
        .io = {.send = drop_send}, .report = report, .epoch = 5};
    CHECK(coord_engine_new(&env, &e) == FL_OK);
    coord_engine_start(e, now);

    /* round 1, committed */
    struct pb_envelope he = {.version = 1, .body = PB_BODY_HELLO};
    he.hello.n_samples = 100;
    he.hello.device_id = "d1";
    feed_env(e, 1, &he, now);
    he.hello.device_id = "d2";
    feed_env(e, 2, &he, now);
    coord_engine_tick(e, now);
    fixed_update(e, 1, 1, 0, now);
    fixed_update(e, 2, 1, 1, now);
    coord_engine_tick(e, now);
    const struct coord_agg *a = coord_engine_agg(e);
    CHECK(coord_agg_version(a) == 2 && coord_engine_round(e) == 2);
    memcpy(before, coord_agg_params(a), sizeof(before));

    /* round 2: the input from d1, then d2's update, then the close */
    coord_engine_on_message(e, &(uint8_t){1}, 1, data, size, 0, 0, now);
    const bool in_ok = reported(e, "d1");
    fixed_update(e, 2, 2, 2, now);
    const bool d2_ok = reported(e, "d2");
    coord_engine_tick(e, now);
    now += 11 * S;
    coord_engine_tick(e, now);

    /* the reference */
    double v1[DIM] = {0}, v2[DIM] = {0}, norm = 0;
    for (int j = 0; j < 4; j++)
        v2[fixed_idx[j]] = fixed_val[2][j];
    if (in_ok) {
        CHECK(decode_input(data, size, v1, &norm));
        /* 10 x the median of round 1's norms (sum of squares of the
         * fixed values: 1.328125 and 1.875) */
        const double bound = 10 * 0.5 * (sqrt(1.328125) + sqrt(1.875));
        CHECK(norm <= bound * (1 + 1e-9));
    }
    const int n = in_ok + d2_ok;
    const float *w = coord_agg_params(a);
    for (int i = 0; i < DIM; i++)
        CHECK(isfinite(w[i]));
    if (n == 0 || coord_agg_version(a) == 2) {
        /* nothing accepted, or the round was abandoned */
        CHECK(memcmp(w, before, sizeof(before)) == 0);
    } else {
        CHECK(coord_agg_version(a) == 3);
        for (int i = 0; i < DIM; i++) {
            const double want =
                before[i] + ((in_ok ? v1[i] : 0) + (d2_ok ? v2[i] : 0)) / n;
            const double tol =
                1e-5 * (fabs(want) + fabs(v1[i]) + fabs(v2[i])) + 1e-30;
            if (!(fabs(w[i] - want) <= tol)) {
                fprintf(stderr, "param %d: %g, want %g (n %d)\n", i,
                        (double)w[i], want, n);
                CHECK(0);
            }
        }
    }
    coord_engine_destroy(&e);
    coord_report_close(&report);
    coord_config_release(&cfg);
    return 0;
}

#ifdef FUZZ_COORD_SEEDS
#include "tests/fuzz/fuzz_seed.h"

/* ---- the seed corpus: valid round-2 updates of every coding from d1,
 * and the usual suspects */

static void seed_update(const char *dir, const char *name, uint64_t round,
                        uint64_t samples, size_t k, float scale,
                        enum cmp_index_coding ic, enum cmp_value_coding vc,
                        enum cmp_codec codec)
{
    uint32_t idx[DIM];
    float val[DIM];
    uint8_t *buf = NULL;
    size_t len = 0;
    const struct cmp_params p = {ic, vc, codec, 3};
    for (size_t i = 0; i < k; i++) {
        idx[i] = (uint32_t)((i * 7) % DIM);
        val[i] = scale * (float)((int)i - 3) * 0.1f;
    }
    /* sort the indices */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && idx[j - 1] > idx[j]; j--) {
            const uint32_t t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    pack_update(round, samples, idx, val, k, &p, &buf, &len);
    fuzz_seed_write(dir, name, buf, len);
    fl_free(buf);
}

static void seed_env(const char *dir, const char *name,
                     const struct pb_envelope *env)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(pb_pack_alloc(env, &buf, &len) == FL_OK);
    fuzz_seed_write(dir, name, buf, len);
    fl_free(buf);
}

/* A fp32/none/varint update whose last value is NaN, with a good CRC. */
static void seed_nan(const char *dir)
{
    static const uint32_t idx[3] = {1, 2, 3};
    static const float val[3] = {0.1f, 0.2f, 0.3f};
    static const struct cmp_params p = {CMP_INDEX_DELTA_VARINT,
                                        CMP_VALUE_FP32, CMP_CODEC_NONE, 0};
    uint8_t *buf = NULL;
    size_t len = 0;
    pack_update(2, 100, idx, val, 3, &p, &buf, &len);
    struct pb_msg *m = NULL;
    const struct pb_envelope *env = NULL;
    CHECK(pb_unpack(buf, len, &lim, &m, &env, NULL, NULL, 0) == FL_OK);
    struct pb_envelope copy = *env;
    uint8_t raw[64];
    CHECK(copy.update.delta.payload_len <= sizeof(raw));
    memcpy(raw, copy.update.delta.payload, copy.update.delta.payload_len);
    /* fp32 values are byte-shuffled (byte j of value i at j * k + i):
     * make value 2 of 3 a quiet NaN */
    const size_t vals = copy.update.delta.payload_len - 12;
    raw[vals + 0 * 3 + 2] = 0x00;
    raw[vals + 1 * 3 + 2] = 0x00;
    raw[vals + 2 * 3 + 2] = 0xc0;
    raw[vals + 3 * 3 + 2] = 0x7f;
    copy.update.delta.payload = raw;
    copy.update.delta.checksum = cmp_crc32(raw,
                                           copy.update.delta.payload_len);
    seed_env(dir, "nan_value", &copy);
    pb_msg_destroy(&m);
    fl_free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    seed_update(dir, "ok_varint_fp32_zstd", 2, 100, 6, 1, CMP_INDEX_AUTO,
                CMP_VALUE_FP32, CMP_CODEC_ZSTD);
    seed_update(dir, "ok_bitmap_fp16_lz4", 2, 50, 6, 1, CMP_INDEX_BITMAP,
                CMP_VALUE_FP16, CMP_CODEC_LZ4);
    seed_update(dir, "ok_rice_bf16_none", 2, 7, 6, 1, CMP_INDEX_RICE,
                CMP_VALUE_BF16, CMP_CODEC_NONE);
    seed_update(dir, "ok_varint_int8_zstd", 2, 100000, 6, 1,
                CMP_INDEX_DELTA_VARINT, CMP_VALUE_INT8, CMP_CODEC_ZSTD);
    seed_update(dir, "ok_k1", 2, 1, 1, 1, CMP_INDEX_AUTO, CMP_VALUE_FP32,
                CMP_CODEC_NONE);
    seed_update(dir, "k_over_max", 2, 100, DIM, 1, CMP_INDEX_ALL,
                CMP_VALUE_FP32, CMP_CODEC_NONE);
    seed_update(dir, "norm_over_bound", 2, 100, 6, 1000, CMP_INDEX_AUTO,
                CMP_VALUE_FP32, CMP_CODEC_ZSTD);
    seed_update(dir, "late_round1", 1, 100, 6, 1, CMP_INDEX_AUTO,
                CMP_VALUE_FP16, CMP_CODEC_ZSTD);
    seed_update(dir, "future_round", 9, 100, 6, 1, CMP_INDEX_AUTO,
                CMP_VALUE_FP16, CMP_CODEC_ZSTD);
    seed_update(dir, "samples_zero", 2, 0, 6, 1, CMP_INDEX_AUTO,
                CMP_VALUE_FP16, CMP_CODEC_ZSTD);
    seed_update(dir, "samples_huge", 2, (uint64_t)1 << 40, 6, 1,
                CMP_INDEX_AUTO, CMP_VALUE_FP16, CMP_CODEC_ZSTD);
    seed_nan(dir);

    struct pb_envelope env = {.version = 1, .body = PB_BODY_HELLO};
    env.hello.device_id = "d2";
    env.hello.n_samples = 3;
    seed_env(dir, "hello_as_d2", &env);
    env.hello.device_id = "d1";
    seed_env(dir, "hello_again", &env);
    env = (struct pb_envelope){.version = 1, .body = PB_BODY_BYE};
    seed_env(dir, "bye", &env);
    env = (struct pb_envelope){.version = 2, .body = PB_BODY_BYE};
    seed_env(dir, "version2", &env);
    env = (struct pb_envelope){.version = 1, .body = PB_BODY_REJECT};
    env.reject.code = 25;
    env.reject.reason = "line\nbreak";
    seed_env(dir, "worker_reject", &env);

    static const uint8_t garbage[] = {0xff, 0x13, 0x37, 0x00, 0x42};
    fuzz_seed_write(dir, "garbage", garbage, sizeof(garbage));
    fuzz_seed_write(dir, "empty", garbage, 0);
    /* a truncated valid update */
    {
        uint8_t *buf = NULL;
        size_t len = 0;
        static const struct cmp_params p = {CMP_INDEX_AUTO, CMP_VALUE_FP32,
                                            CMP_CODEC_ZSTD, 1};
        pack_update(2, 100, fixed_idx, fixed_val[0], 4, &p, &buf, &len);
        fuzz_seed_write(dir, "truncated", buf, len / 2);
        fl_free(buf);
    }
    printf("seeds written to %s\n", dir);
    return 0;
}
#endif
