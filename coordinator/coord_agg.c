#include "coordinator/coord_agg.h"

#include <math.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "compress/cmp_tensor.h"
#include "coordinator/coord_models.h"

struct coord_agg {
    struct coord_agg_config cfg;
    float *acc;                  /* dim: sum of weighted updates */
    double weight;               /* sum of weights */
    uint32_t count;
    float *mom;                  /* dim, NULL without server momentum */
    float *cand;                 /* dim scratch: the candidate model */
    struct coord_models *models; /* kept versions and their payloads */
    struct cmp_ctx *cctx;
};

static bool all_finite(const float *x, size_t n)
{
    /* x - x is 0 for finite x and NaN for Inf/NaN; NaN survives the sum. */
    float z = 0.0f;
    for (size_t i = 0; i < n; i++)
        z += x[i] - x[i];
    return z == 0.0f;
}

enum fl_err coord_agg_new(const struct coord_agg_config *cfg,
                          const float *init, struct coord_agg **out)
{
    struct coord_agg *a = NULL;
    const size_t dim = cfg->dim;
    *out = NULL;
    if (dim == 0 || dim > UINT32_MAX || cfg->keep_versions == 0 ||
        cfg->keep_versions > 1024 || !(cfg->server_lr > 0) ||
        !isfinite(cfg->server_lr) || !(cfg->server_momentum >= 0) ||
        !(cfg->server_momentum < 1) || !all_finite(init, dim))
        return FL_ERR_INVALID_ARG;
    a = fl_calloc(1, sizeof(*a));
    if (a == NULL)
        return FL_ERR_NOMEM;
    a->cfg = *cfg;
    a->acc = fl_calloc_huge(dim, sizeof(float));
    a->cand = fl_malloc(dim * sizeof(float));
    a->cctx = cmp_ctx_new();
    if (a->acc == NULL || a->cand == NULL || a->cctx == NULL)
        goto out_free;
    if (cfg->server_momentum > 0) {
        a->mom = fl_calloc(dim, sizeof(float));
        if (a->mom == NULL)
            goto out_free;
    }
    if (coord_models_new(dim, cfg->keep_versions, init, 1, &a->models) !=
        FL_OK)
        goto out_free;
    *out = a;
    return FL_OK;
out_free:
    coord_agg_destroy(&a);
    return FL_ERR_NOMEM;
}

void coord_agg_destroy(struct coord_agg **ap)
{
    struct coord_agg *a;
    if (ap == NULL || *ap == NULL)
        return;
    a = *ap;
    coord_models_destroy(&a->models);
    cmp_ctx_destroy(&a->cctx);
    fl_free(a->acc);
    fl_free(a->mom);
    fl_free(a->cand);
    fl_free(a);
    *ap = NULL;
}

size_t coord_agg_dim(const struct coord_agg *a) { return a->cfg.dim; }

const float *coord_agg_params(const struct coord_agg *a)
{
    return coord_models_current(a->models);
}

uint64_t coord_agg_version(const struct coord_agg *a)
{
    return coord_models_version(a->models);
}

const float *coord_agg_version_params(const struct coord_agg *a,
                                      uint64_t version)
{
    return coord_models_find(a->models, version);
}

uint32_t coord_agg_count(const struct coord_agg *a) { return a->count; }
double coord_agg_weight(const struct coord_agg *a) { return a->weight; }
uint64_t coord_agg_encode_count(const struct coord_agg *a)
{
    return coord_models_stores(a->models);
}

/* GCC vector type of 16 bytes: one SSE2 register on any x86-64 (wider
 * ones are split through memory without AVX), NEON on arm64. */
typedef uint32_t agg_u32x4 __attribute__((vector_size(16)));

/* Every idx[i] < dim? A vector pass, cheap next to the scatter; it keeps a
 * caller's bug from writing outside the accumulator. (A scalar max chain
 * took 1.5% of the coordinator's CPU at 1,000 devices.) */
static bool indices_below(const uint32_t *idx, size_t k, size_t dim)
{
    const uint32_t lim = dim > UINT32_MAX ? UINT32_MAX : (uint32_t)dim;
    const agg_u32x4 limv = {lim, lim, lim, lim};
    agg_u32x4 bad0 = {0, 0, 0, 0};
    agg_u32x4 bad1 = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= k; i += 8) {
        agg_u32x4 x[2];
        memcpy(x, idx + i, sizeof(x));
        bad0 |= (agg_u32x4)(x[0] >= limv);
        bad1 |= (agg_u32x4)(x[1] >= limv);
    }
    bad0 |= bad1;
    uint32_t any = bad0[0] | bad0[1] | bad0[2] | bad0[3];
    for (; i < k; i++)
        any |= idx[i] >= lim;
    return any == 0;
}

enum fl_err coord_agg_add(struct coord_agg *a, const uint32_t *idx,
                          const float *val, size_t k, double weight)
{
    if (!(weight > 0) || !isfinite(weight) || weight > 3e38 ||
        k > a->cfg.dim)
        return FL_ERR_INVALID_ARG;
    if (!indices_below(idx, k, a->cfg.dim))
        return FL_ERR_INDEX_RANGE;
    cmp_scatter_add(a->acc, idx, val, k, (float)weight);
    a->weight += weight;
    a->count++;
    return FL_OK;
}

void coord_agg_discard(struct coord_agg *a)
{
    memset(a->acc, 0, a->cfg.dim * sizeof(float));
    a->weight = 0;
    a->count = 0;
}

enum fl_err coord_agg_commit(struct coord_agg *a)
{
    const size_t dim = a->cfg.dim;
    const float *w = coord_models_current(a->models);
    const float lr = (float)a->cfg.server_lr;
    const float beta = (float)a->cfg.server_momentum;
    if (a->count == 0 || !(a->weight > 0))
        return FL_ERR_BAD_STATE;
    const float inv = (float)(1.0 / a->weight);

    /* Candidate first; the model and momentum change only if it is all
     * finite. The momentum pass recomputes m' with the same operations,
     * so it equals what the candidate used. */
    float z = 0.0f;
    for (size_t i = 0; i < dim; i++) {
        const float g = a->acc[i] * inv;
        const float m = a->mom != NULL ? beta * a->mom[i] + g : g;
        const float c = w[i] + lr * m;
        a->cand[i] = c;
        z += (c - c) + (m - m);
    }
    if (z != 0.0f) {
        coord_agg_discard(a);
        return FL_ERR_NONFINITE;
    }
    if (a->mom != NULL) {
        for (size_t i = 0; i < dim; i++)
            a->mom[i] = beta * a->mom[i] + a->acc[i] * inv;
    }
    /* The candidate becomes the current version; the oldest kept
     * version's buffer becomes the next scratch. */
    a->cand = coord_models_push_buffer(a->models, a->cand,
                                       coord_models_version(a->models) + 1);
    coord_agg_discard(a);
    return FL_OK;
}

enum fl_err coord_model_task_payload(struct coord_agg *a,
                                     uint64_t held_version,
                                     enum cmp_codec codec, int level,
                                     const struct coord_payload **out)
{
    enum fl_err rc = FL_OK;
    const uint8_t *bytes = NULL;
    size_t len = 0;
    struct cmp_meta meta;
    *out = NULL;
    if (codec != CMP_CODEC_NONE && codec != CMP_CODEC_LZ4 &&
        codec != CMP_CODEC_ZSTD)
        return FL_ERR_UNSUPPORTED;
    const float *base = coord_agg_version_params(a, held_version);
    const struct coord_payload_key key = coord_payload_key(
        base != NULL ? COORD_PAYLOAD_XOR : COORD_PAYLOAD_FULL,
        base != NULL ? held_version : 0, codec, level);
    *out = coord_models_cached(a->models, &key);
    if (*out != NULL)
        return FL_OK;
    rc = cmp_dense_encode(a->cctx, coord_agg_params(a), a->cfg.dim, base,
                          codec, key.level, &meta, &bytes, &len);
    if (rc != FL_OK)
        return rc;
    return coord_models_store(a->models, &key, &meta, bytes, len, out);
}

const float *coord_agg_momentum(const struct coord_agg *a) { return a->mom; }

enum fl_err coord_agg_resume(struct coord_agg *a, uint64_t version,
                             const float *params, const float *momentum)
{
    const size_t dim = a->cfg.dim;
    if (version == 0 || !all_finite(params, dim) ||
        (momentum != NULL && (a->mom == NULL || !all_finite(momentum, dim))))
        return FL_ERR_INVALID_ARG;
    coord_models_reset(a->models, params, version);
    if (a->mom != NULL) {
        if (momentum != NULL)
            memcpy(a->mom, momentum, dim * sizeof(float));
        else
            memset(a->mom, 0, dim * sizeof(float));
    }
    coord_agg_discard(a);
    return FL_OK;
}
