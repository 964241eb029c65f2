#include "coordinator/coord_down.h"

#include <math.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "compress/cmp_tensor.h"
#include "compress/cmp_topk.h"
#include "coordinator/coord_models.h"

struct coord_down {
    struct coord_down_config cfg;
    size_t k;                    /* entries per delta */

    /* The kept broadcast versions (the current one is w_b) and the
     * payloads encoded from w_b. */
    struct coord_models *models;

    /* The last delta: from delta_base (0 = none) to version. */
    uint64_t delta_base;
    size_t nsent;
    uint32_t *idx;               /* k: ascending indices */
    float *sel;                  /* k: r[S] before quantization */
    float *val;                  /* k: the decoded values applied to w_b */
    float *scratch;              /* k: values handed to the encoder */
    float *diff;                 /* dim: r = w_s - w_b */
    struct coord_down_stats stats;

    struct cmp_topk *topk;
    struct cmp_ctx *ectx;        /* encoding */
    struct cmp_ctx *dctx;        /* decoding, to check sparse payloads */
};

static bool all_finite(const float *x, size_t n)
{
    /* x - x is 0 for finite x and NaN for Inf/NaN; NaN survives the sum. */
    float z = 0.0f;
    for (size_t i = 0; i < n; i++)
        z += x[i] - x[i];
    return z == 0.0f;
}

size_t coord_down_k(double density, size_t dim)
{
    const double x = density * (double)dim;
    const double r = nearbyint(x);
    double k = fabs(x - r) <= 1e-6 * (x > 1 ? x : 1) ? r : ceil(x);
    if (!(k >= 1))
        k = 1;
    return k >= (double)dim ? dim : (size_t)k;
}

static bool config_ok(const struct coord_down_config *cfg)
{
    return cfg->dim > 0 && cfg->dim <= UINT32_MAX && cfg->density > 0 &&
           cfg->density <= 1 && cfg->keep_versions >= 1 &&
           cfg->keep_versions <= 1024 &&
           (cfg->values == CMP_VALUE_FP32 || cfg->values == CMP_VALUE_FP16 ||
            cfg->values == CMP_VALUE_BF16 || cfg->values == CMP_VALUE_INT8);
}

enum fl_err coord_down_new(const struct coord_down_config *cfg,
                           const float *init, uint64_t version,
                           struct coord_down **out)
{
    struct coord_down *d = NULL;
    *out = NULL;
    if (!config_ok(cfg) || version == 0 || init == NULL ||
        !all_finite(init, cfg->dim))
        return FL_ERR_INVALID_ARG;
    d = fl_calloc(1, sizeof(*d));
    if (d == NULL)
        return FL_ERR_NOMEM;
    d->cfg = *cfg;
    d->k = coord_down_k(cfg->density, cfg->dim);
    d->idx = fl_malloc(d->k * sizeof(*d->idx));
    d->sel = fl_malloc(d->k * sizeof(float));
    d->val = fl_malloc(d->k * sizeof(float));
    d->scratch = fl_malloc(d->k * sizeof(float));
    d->diff = fl_malloc(cfg->dim * sizeof(float));
    d->topk = cmp_topk_new(0x646f776eULL);
    d->ectx = cmp_ctx_new();
    d->dctx = cmp_ctx_new();
    if (d->idx == NULL || d->sel == NULL || d->val == NULL || d->scratch == NULL ||
        d->diff == NULL || d->topk == NULL || d->ectx == NULL ||
        d->dctx == NULL)
        goto out_free;
    if (coord_models_new(cfg->dim, cfg->keep_versions, init, version,
                         &d->models) != FL_OK)
        goto out_free;
    *out = d;
    return FL_OK;
out_free:
    coord_down_destroy(&d);
    return FL_ERR_NOMEM;
}

void coord_down_destroy(struct coord_down **dp)
{
    struct coord_down *d;
    if (dp == NULL || *dp == NULL)
        return;
    d = *dp;
    coord_models_destroy(&d->models);
    cmp_topk_destroy(&d->topk);
    cmp_ctx_destroy(&d->ectx);
    cmp_ctx_destroy(&d->dctx);
    fl_free(d->idx);
    fl_free(d->sel);
    fl_free(d->val);
    fl_free(d->scratch);
    fl_free(d->diff);
    fl_free(d);
    *dp = NULL;
}

const float *coord_down_params(const struct coord_down *d)
{
    return coord_models_current(d->models);
}

uint64_t coord_down_version(const struct coord_down *d)
{
    return coord_models_version(d->models);
}

const float *coord_down_version_params(const struct coord_down *d,
                                       uint64_t version)
{
    return coord_models_find(d->models, version);
}

bool coord_down_knows(const struct coord_down *d, uint64_t version)
{
    return version != 0 && (version == d->delta_base ||
                            coord_down_version_params(d, version) != NULL);
}

void coord_down_get_stats(const struct coord_down *d,
                          struct coord_down_stats *st)
{
    *st = d->stats;
}

uint64_t coord_down_encode_count(const struct coord_down *d)
{
    return coord_models_stores(d->models);
}

/* r = w_s - w_b into diff; returns sum of r^2. */
static double compute_diff(struct coord_down *d, const float *w_s)
{
    const float *wb = coord_models_current(d->models);
    double ss = 0;
    for (size_t i = 0; i < d->cfg.dim; i++) {
        const float r = w_s[i] - wb[i];
        d->diff[i] = r;
        ss += (double)r * r;
    }
    return ss;
}

/* Quantize sel into val: the values a receiver decodes. */
static enum fl_err quantize(struct coord_down *d, size_t n)
{
    const struct cmp_params p = {CMP_INDEX_AUTO, d->cfg.values,
                                 CMP_CODEC_NONE, 0};
    struct cmp_meta meta;
    const uint8_t *bytes = NULL;
    size_t len = 0;
    memcpy(d->val, d->sel, n * sizeof(float));
    return cmp_sparse_encode(d->ectx, d->cfg.dim, d->idx, d->val, n, &p,
                             &meta, &bytes, &len);
}

enum fl_err coord_down_advance(struct coord_down *d, const float *w_s,
                               uint64_t version)
{
    const size_t dim = d->cfg.dim;
    size_t n = 0;
    enum fl_err rc;
    if (version <= coord_down_version(d))
        return FL_ERR_INVALID_ARG;
    /* idx/sel/val are about to change: the previous delta is gone, also
     * if this advance fails (a cached sparse payload is keyed by
     * delta_base, so none can be found any more) */
    d->delta_base = 0;
    d->nsent = 0;
    const double before = compute_diff(d, w_s);
    rc = cmp_topk_select(d->topk, NULL, d->diff, dim, d->k, CMP_TOPK_EXACT,
                         0, d->idx, d->sel, &n);
    if (rc == FL_OK)
        rc = quantize(d, n);
    if (rc != FL_OK)
        return rc;

    /* The candidate goes into the slot of the oldest kept version (with
     * keep_versions == 1 that is w_b itself: check before writing). */
    const float *const wb = coord_down_params(d);
    float *const nb = coord_models_oldest(d->models);
    double sent = 0, after = before;
    for (size_t i = 0; i < n; i++) {
        const uint32_t j = d->idx[i];
        const float c = wb[j] + d->val[i];
        const float r = w_s[j] - c;
        if (!isfinite(c))
            return FL_ERR_NONFINITE;
        sent += (double)d->val[i] * d->val[i];
        after += (double)r * r - (double)d->diff[j] * d->diff[j];
    }
    if (nb != wb)
        memcpy(nb, wb, dim * sizeof(float));
    /* The devices' operation, exactly (see the header). */
    cmp_scatter_add(nb, d->idx, d->val, n, 1.0f);
    d->delta_base = coord_down_version(d);
    d->nsent = n;
    d->stats.k = n;
    d->stats.sent_norm = sqrt(sent);
    d->stats.residual_norm = sqrt(after > 0 ? after : 0);
    coord_models_push(d->models, version);
    return FL_OK;
}

enum fl_err coord_down_reset(struct coord_down *d, const float *w,
                             uint64_t version)
{
    if (version <= coord_down_version(d) || w == NULL ||
        !all_finite(w, d->cfg.dim))
        return FL_ERR_INVALID_ARG;
    memcpy(coord_models_oldest(d->models), w, d->cfg.dim * sizeof(float));
    d->delta_base = 0;
    d->nsent = 0;
    memset(&d->stats, 0, sizeof(d->stats));
    coord_models_push(d->models, version);
    return FL_OK;
}

/* The payload must decode, with the devices' decoder, to exactly the delta
 * applied to w_b. */
static enum fl_err check_sparse(struct coord_down *d,
                                const struct cmp_meta *meta,
                                const uint8_t *bytes, size_t len)
{
    const struct cmp_limits lim = {d->cfg.dim, 0, 0};
    const uint32_t *idx = NULL;
    const float *val = NULL;
    size_t k = 0;
    const enum fl_err rc = cmp_sparse_decode(d->dctx, meta, bytes, len, &lim,
                                             &idx, &val, &k);
    if (rc != FL_OK)
        return rc;
    if (k != d->nsent || memcmp(idx, d->idx, k * sizeof(*idx)) != 0 ||
        memcmp(val, d->val, k * sizeof(*val)) != 0)
        return FL_ERR_BAD_STATE;
    return FL_OK;
}

static enum fl_err encode_sparse(struct coord_down *d,
                                 const struct coord_payload_key *key,
                                 const struct coord_payload **out)
{
    const struct cmp_params p = {CMP_INDEX_AUTO, d->cfg.values, key->codec,
                                 key->level};
    struct cmp_meta meta;
    const uint8_t *bytes = NULL;
    size_t len = 0;
    memcpy(d->scratch, d->sel, d->nsent * sizeof(float));
    FL_FORWARD_ERR(cmp_sparse_encode(d->ectx, d->cfg.dim, d->idx, d->scratch,
                                     d->nsent, &p, &meta, &bytes, &len));
    /* bytes live in ectx; the check decodes with dctx */
    FL_FORWARD_ERR(check_sparse(d, &meta, bytes, len));
    return coord_models_store(d->models, key, &meta, bytes, len, out);
}

static enum fl_err encode_dense(struct coord_down *d,
                                const struct coord_payload_key *key,
                                const float *base,
                                const struct coord_payload **out)
{
    struct cmp_meta meta;
    const uint8_t *bytes = NULL;
    size_t len = 0;
    FL_FORWARD_ERR(cmp_dense_encode(d->ectx, coord_down_params(d),
                                    d->cfg.dim, base, key->codec, key->level,
                                    &meta, &bytes, &len));
    return coord_models_store(d->models, key, &meta, bytes, len, out);
}

enum fl_err coord_down_task_payload(struct coord_down *d,
                                    uint64_t held_version,
                                    enum cmp_codec codec, int level,
                                    const struct coord_payload **out)
{
    enum coord_payload_kind kind = COORD_PAYLOAD_FULL;
    const float *base = NULL;
    uint64_t base_ver = 0;
    *out = NULL;
    if (codec != CMP_CODEC_NONE && codec != CMP_CODEC_LZ4 &&
        codec != CMP_CODEC_ZSTD)
        return FL_ERR_UNSUPPORTED;
    if (held_version != 0 && held_version == d->delta_base) {
        kind = COORD_PAYLOAD_SPARSE;
        base_ver = held_version;
    } else {
        base = coord_down_version_params(d, held_version);
        kind = base != NULL ? COORD_PAYLOAD_XOR : COORD_PAYLOAD_FULL;
        base_ver = base != NULL ? held_version : 0;
    }
    const struct coord_payload_key key =
        coord_payload_key(kind, base_ver, codec, level);
    *out = coord_models_cached(d->models, &key);
    if (*out != NULL)
        return FL_OK;
    return kind == COORD_PAYLOAD_SPARSE ? encode_sparse(d, &key, out)
                                        : encode_dense(d, &key, base, out);
}
