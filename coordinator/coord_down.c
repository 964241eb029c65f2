#include "coordinator/coord_down.h"

#include <math.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "compress/cmp_tensor.h"
#include "compress/cmp_topk.h"

/* One cached encoding. Entries are allocated one by one so that a payload
 * handed out stays put while the table grows. */
struct down_entry {
    bool valid;
    enum coord_down_kind kind;
    uint64_t base;
    enum cmp_codec codec;
    int level;
    struct coord_down_payload p;
    uint8_t *buf;                /* owned, capacity cap */
    size_t cap;
};

struct coord_down {
    struct coord_down_config cfg;
    size_t k;                    /* entries per delta */

    /* Ring of kept broadcast versions; ring[cur] is w_b. */
    float **ring;
    uint64_t *ring_ver;          /* 0 = slot empty */
    uint32_t cur;
    uint64_t version;

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
    struct down_entry **cache;
    size_t ncache;
    uint64_t encodes;
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
    d->ring = fl_calloc(cfg->keep_versions, sizeof(*d->ring));
    d->ring_ver = fl_calloc(cfg->keep_versions, sizeof(*d->ring_ver));
    d->idx = fl_malloc(d->k * sizeof(*d->idx));
    d->sel = fl_malloc(d->k * sizeof(float));
    d->val = fl_malloc(d->k * sizeof(float));
    d->scratch = fl_malloc(d->k * sizeof(float));
    d->diff = fl_malloc(cfg->dim * sizeof(float));
    d->topk = cmp_topk_new(0x646f776eULL);
    d->ectx = cmp_ctx_new();
    d->dctx = cmp_ctx_new();
    if (d->ring == NULL || d->ring_ver == NULL || d->idx == NULL ||
        d->sel == NULL || d->val == NULL || d->scratch == NULL ||
        d->diff == NULL || d->topk == NULL || d->ectx == NULL ||
        d->dctx == NULL)
        goto out_free;
    for (uint32_t i = 0; i < cfg->keep_versions; i++) {
        d->ring[i] = fl_malloc(cfg->dim * sizeof(float));
        if (d->ring[i] == NULL)
            goto out_free;
    }
    memcpy(d->ring[0], init, cfg->dim * sizeof(float));
    d->ring_ver[0] = version;
    d->version = version;
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
    if (d->ring != NULL) {
        for (uint32_t i = 0; i < d->cfg.keep_versions; i++)
            fl_free(d->ring[i]);
    }
    for (size_t i = 0; i < d->ncache; i++) {
        fl_free(d->cache[i]->buf);
        fl_free(d->cache[i]);
    }
    fl_free(d->cache);
    cmp_topk_destroy(&d->topk);
    cmp_ctx_destroy(&d->ectx);
    cmp_ctx_destroy(&d->dctx);
    fl_free(d->ring);
    fl_free(d->ring_ver);
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
    return d->ring[d->cur];
}

uint64_t coord_down_version(const struct coord_down *d) { return d->version; }

const float *coord_down_version_params(const struct coord_down *d,
                                       uint64_t version)
{
    if (version == 0)
        return NULL;
    for (uint32_t i = 0; i < d->cfg.keep_versions; i++) {
        if (d->ring_ver[i] == version)
            return d->ring[i];
    }
    return NULL;
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
    return d->encodes;
}

static void invalidate_cache(struct coord_down *d)
{
    for (size_t i = 0; i < d->ncache; i++)
        d->cache[i]->valid = false;
}

/* The next ring slot becomes w_b of `version`; the oldest kept version is
 * dropped. next must already hold the new parameters. */
static void ring_push(struct coord_down *d, uint32_t next, uint64_t version)
{
    d->ring_ver[next] = version;
    d->cur = next;
    d->version = version;
    invalidate_cache(d);
}

/* r = w_s - w_b into diff; returns sum of r^2. */
static double compute_diff(struct coord_down *d, const float *w_s)
{
    const float *wb = d->ring[d->cur];
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
    const uint32_t next = (d->cur + 1) % d->cfg.keep_versions;
    size_t n = 0;
    enum fl_err rc;
    if (version <= d->version)
        return FL_ERR_INVALID_ARG;
    /* idx/sel/val are about to change: the previous delta is gone, also
     * if this advance fails */
    d->delta_base = 0;
    d->nsent = 0;
    invalidate_cache(d);
    const double before = compute_diff(d, w_s);
    rc = cmp_topk_select(d->topk, NULL, d->diff, dim, d->k, CMP_TOPK_EXACT,
                         0, d->idx, d->sel, &n);
    if (rc == FL_OK)
        rc = quantize(d, n);
    if (rc != FL_OK)
        return rc;

    /* The candidate goes into the slot of the oldest kept version (with
     * keep_versions == 1 that is w_b itself: check before writing). */
    float *const wb = d->ring[d->cur];
    float *const nb = d->ring[next];
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
    d->delta_base = d->version;
    d->nsent = n;
    d->stats.k = n;
    d->stats.sent_norm = sqrt(sent);
    d->stats.residual_norm = sqrt(after > 0 ? after : 0);
    ring_push(d, next, version);
    return FL_OK;
}

enum fl_err coord_down_reset(struct coord_down *d, const float *w,
                             uint64_t version)
{
    const uint32_t next = (d->cur + 1) % d->cfg.keep_versions;
    if (version <= d->version || w == NULL || !all_finite(w, d->cfg.dim))
        return FL_ERR_INVALID_ARG;
    memcpy(d->ring[next], w, d->cfg.dim * sizeof(float));
    d->delta_base = 0;
    d->nsent = 0;
    memset(&d->stats, 0, sizeof(d->stats));
    ring_push(d, next, version);
    return FL_OK;
}

/* The cache entry for a key, valid or to be filled; NULL: out of memory. */
static struct down_entry *cache_slot(struct coord_down *d,
                                     enum coord_down_kind kind, uint64_t base,
                                     enum cmp_codec codec, int level)
{
    struct down_entry *free_slot = NULL;
    for (size_t i = 0; i < d->ncache; i++) {
        struct down_entry *e = d->cache[i];
        if (e->valid && e->kind == kind && e->base == base &&
            e->codec == codec && e->level == level)
            return e;
        if (!e->valid && free_slot == NULL)
            free_slot = e;
    }
    if (free_slot != NULL)
        return free_slot;
    struct down_entry **grown =
        fl_realloc(d->cache, (d->ncache + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    d->cache = grown;
    struct down_entry *e = fl_calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    d->cache[d->ncache++] = e;
    return e;
}

static enum fl_err entry_store(struct down_entry *e, const uint8_t *bytes,
                               size_t len)
{
    if (len > e->cap) {
        uint8_t *nb = fl_realloc(e->buf, len);
        if (nb == NULL)
            return FL_ERR_NOMEM;
        e->buf = nb;
        e->cap = len;
    }
    if (len > 0)
        memcpy(e->buf, bytes, len);
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

static enum fl_err encode_sparse(struct coord_down *d, struct down_entry *e,
                                 enum cmp_codec codec, int level)
{
    const struct cmp_params p = {CMP_INDEX_AUTO, d->cfg.values, codec,
                                 level};
    const uint8_t *bytes = NULL;
    size_t len = 0;
    memcpy(d->scratch, d->sel, d->nsent * sizeof(float));
    FL_FORWARD_ERR(cmp_sparse_encode(d->ectx, d->cfg.dim, d->idx, d->scratch,
                                     d->nsent, &p, &e->p.meta, &bytes, &len));
    FL_FORWARD_ERR(entry_store(e, bytes, len));
    FL_FORWARD_ERR(check_sparse(d, &e->p.meta, e->buf, len));
    e->p.len = len;
    return FL_OK;
}

static enum fl_err encode_dense(struct coord_down *d, struct down_entry *e,
                                const float *base, enum cmp_codec codec,
                                int level)
{
    const uint8_t *bytes = NULL;
    size_t len = 0;
    FL_FORWARD_ERR(cmp_dense_encode(d->ectx, d->ring[d->cur], d->cfg.dim,
                                    base, codec, level, &e->p.meta, &bytes,
                                    &len));
    FL_FORWARD_ERR(entry_store(e, bytes, len));
    e->p.len = len;
    return FL_OK;
}

static int clamp_level(enum cmp_codec codec, int level)
{
    if (codec != CMP_CODEC_ZSTD)
        return 0;
    if (level < CMP_ZSTD_LEVEL_MIN)
        return CMP_ZSTD_LEVEL_MIN;
    return level > CMP_ZSTD_LEVEL_MAX ? CMP_ZSTD_LEVEL_MAX : level;
}

enum fl_err coord_down_task_payload(struct coord_down *d,
                                    uint64_t held_version,
                                    enum cmp_codec codec, int level,
                                    const struct coord_down_payload **out)
{
    enum coord_down_kind kind = COORD_DOWN_FULL;
    const float *base = NULL;
    uint64_t base_ver = 0;
    enum fl_err rc;
    *out = NULL;
    if (codec != CMP_CODEC_NONE && codec != CMP_CODEC_LZ4 &&
        codec != CMP_CODEC_ZSTD)
        return FL_ERR_UNSUPPORTED;
    level = clamp_level(codec, level);
    if (held_version != 0 && held_version == d->delta_base) {
        kind = COORD_DOWN_SPARSE;
        base_ver = held_version;
    } else {
        base = coord_down_version_params(d, held_version);
        kind = base != NULL ? COORD_DOWN_XOR : COORD_DOWN_FULL;
        base_ver = base != NULL ? held_version : 0;
    }
    struct down_entry *e = cache_slot(d, kind, base_ver, codec, level);
    if (e == NULL)
        return FL_ERR_NOMEM;
    if (e->valid) {
        *out = &e->p;
        return FL_OK;
    }
    rc = kind == COORD_DOWN_SPARSE ? encode_sparse(d, e, codec, level)
                                   : encode_dense(d, e, base, codec, level);
    if (rc != FL_OK)
        return rc;
    e->kind = kind;
    e->base = base_ver;
    e->codec = codec;
    e->level = level;
    e->p.kind = kind;
    e->p.version = d->version;
    e->p.base_version = base_ver;
    e->p.data = e->buf;
    e->valid = true;
    d->encodes++;
    *out = &e->p;
    return FL_OK;
}
