/*
 * wrk_update.c - the worker's update pipeline (see wrk_update.h).
 *
 * Buffers: residual and work are dim floats from the start; the velocity is
 * allocated the first time momentum correction is used; idx/val/orig grow to
 * the largest k seen. After the first rounds nothing is allocated.
 *
 * idx/val hold the pending update between an encode and its fate: val holds
 * the quantized values the coordinator decodes, which is what a NOT_USED
 * fate must put back into the residual.
 */
#include "worker/wrk_update.h"

#include <math.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "compress/cmp_tensor.h"
#include "compress/cmp_topk.h"

/* Attempts to fit max_bytes by cutting k, and the margin of each cut. */
#define WRK_MAX_SHRINKS 6
#define WRK_SHRINK_MARGIN 0.9

struct wrk_update {
    size_t dim;
    struct wrk_span *spans;
    size_t nspans;
    float *residual;
    float *work;          /* clipped u, or zeros on a budget retry */
    float *velocity;      /* NULL until momentum correction is used */
    bool velocity_dirty;  /* velocity holds something non-zero */
    uint32_t *idx;
    float *val;
    float *orig;          /* val before quantization */
    size_t cap;           /* capacity of idx/val/orig */
    size_t *kspan;        /* k per span for the current encode */
    struct cmp_topk *topk;
    struct cmp_ctx *ctx;
    bool pending;
    bool pending_ef;
    uint64_t pending_round;
    size_t pending_k;
};

static bool spans_valid(size_t dim, const struct wrk_span *spans, size_t n)
{
    size_t next = 0;
    for (size_t i = 0; i < n; i++) {
        if (spans[i].offset != next || spans[i].size == 0)
            return false;
        if (spans[i].size > dim - next)
            return false;
        next += spans[i].size;
    }
    return next == dim;
}

struct wrk_update *wrk_update_new(size_t dim, const struct wrk_span *spans,
                                  size_t nspans, uint64_t seed)
{
    struct wrk_update *w = NULL;
    const struct wrk_span whole = {0, dim};

    if (dim == 0 || dim > UINT32_MAX)
        return NULL;
    if (nspans == 0) {
        spans = &whole;
        nspans = 1;
    }
    if (!spans_valid(dim, spans, nspans))
        return NULL;
    w = fl_calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->dim = dim;
    w->nspans = nspans;
    w->spans = fl_malloc(nspans * sizeof(*w->spans));
    w->kspan = fl_calloc(nspans, sizeof(*w->kspan));
    w->residual = fl_calloc(dim, sizeof(float));
    w->work = fl_malloc(dim * sizeof(float));
    w->topk = cmp_topk_new(seed);
    w->ctx = cmp_ctx_new();
    if (w->spans == NULL || w->kspan == NULL || w->residual == NULL ||
        w->work == NULL || w->topk == NULL || w->ctx == NULL) {
        wrk_update_destroy(&w);
        return NULL;
    }
    memcpy(w->spans, spans, nspans * sizeof(*spans));
    return w;
}

void wrk_update_destroy(struct wrk_update **wp)
{
    if (wp == NULL || *wp == NULL)
        return;
    struct wrk_update *w = *wp;
    cmp_ctx_destroy(&w->ctx);
    cmp_topk_destroy(&w->topk);
    fl_free(w->spans);
    fl_free(w->kspan);
    fl_free(w->residual);
    fl_free(w->work);
    fl_free(w->velocity);
    fl_free(w->idx);
    fl_free(w->val);
    fl_free(w->orig);
    fl_free(w);
    *wp = NULL;
}

size_t wrk_update_k(float density, size_t n)
{
    if (n == 0)
        return 0;
    if (!(density > 0.0f))
        return 1;
    if (density >= 1.0f)
        return n;
    const double x = (double)density * (double)n;
    const double r = nearbyint(x);
    double k = ceil(x);
    if (fabs(x - r) <= 1e-6 * fmax(1.0, x))
        k = r;
    if (k < 1.0)
        return 1;
    if (k > (double)n)
        return n;
    return (size_t)k;
}

enum fl_err wrk_settings_check(const struct wrk_settings *s)
{
    if (!(s->density > 0.0f && s->density <= 1.0f))
        return FL_ERR_INVALID_ARG;
    if (!(s->momentum >= 0.0f && s->momentum < 1.0f))
        return FL_ERR_INVALID_ARG;
    if (!(s->clip_norm >= 0.0f) || !isfinite(s->clip_norm))
        return FL_ERR_INVALID_ARG;
    switch (s->topk) {
    case CMP_TOPK_EXACT:
    case CMP_TOPK_SAMPLED:
        break;
    default:
        return FL_ERR_UNSUPPORTED;
    }
    switch (s->params.values) {
    case CMP_VALUE_FP32:
    case CMP_VALUE_FP16:
    case CMP_VALUE_BF16:
    case CMP_VALUE_INT8:
        break;
    default:
        return FL_ERR_UNSUPPORTED;
    }
    switch (s->params.codec) {
    case CMP_CODEC_NONE:
    case CMP_CODEC_LZ4:
    case CMP_CODEC_ZSTD:
        break;
    default:
        return FL_ERR_UNSUPPORTED;
    }
    switch (s->params.index_coding) {
    case CMP_INDEX_AUTO:
    case CMP_INDEX_DELTA_VARINT:
    case CMP_INDEX_BITMAP:
    case CMP_INDEX_RICE:
        break;
    case CMP_INDEX_ALL:
    default:
        return FL_ERR_UNSUPPORTED;
    }
    return FL_OK;
}

/* L2 norm of u in double; false when u has a NaN or Inf. */
static bool norm_finite(const float *u, size_t n, double *norm)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (double)u[i] * (double)u[i];
    *norm = sqrt(ss);
    return isfinite(ss);
}

static enum fl_err ensure_cap(struct wrk_update *w, size_t k)
{
    if (k <= w->cap)
        return FL_OK;
    uint32_t *idx = fl_realloc(w->idx, k * sizeof(*idx));
    if (idx == NULL)
        return FL_ERR_NOMEM;
    w->idx = idx;
    float *val = fl_realloc(w->val, k * sizeof(*val));
    if (val == NULL)
        return FL_ERR_NOMEM;
    w->val = val;
    float *orig = fl_realloc(w->orig, k * sizeof(*orig));
    if (orig == NULL)
        return FL_ERR_NOMEM;
    w->orig = orig;
    w->cap = k;
    return FL_OK;
}

/* f = the vector fed to the selection: clipped u, or the velocity after
 * adding it (DGC momentum correction). */
static enum fl_err feed_vector(struct wrk_update *w, const float *u,
                               float scale, float m, float **f)
{
    const size_t n = w->dim;
    for (size_t i = 0; i < n; i++)
        w->work[i] = u[i] * scale;
    if (m == 0.0f) {
        if (w->velocity_dirty) {
            /* Momentum correction was switched off: the velocity of the
             * old setting no longer means anything. */
            memset(w->velocity, 0, n * sizeof(float));
            w->velocity_dirty = false;
        }
        *f = w->work;
        return FL_OK;
    }
    if (w->velocity == NULL) {
        w->velocity = fl_calloc(n, sizeof(float));
        if (w->velocity == NULL)
            return FL_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        w->velocity[i] = m * w->velocity[i] + w->work[i];
    w->velocity_dirty = true;
    *f = w->velocity;
    return FL_OK;
}

/* k per span (or for the whole vector), from the density. */
static size_t plan_k(struct wrk_update *w, const struct wrk_settings *s)
{
    size_t total = 0;
    if (!s->per_tensor || w->nspans == 1) {
        w->kspan[0] = wrk_update_k(s->density, w->dim);
        for (size_t i = 1; i < w->nspans; i++)
            w->kspan[i] = 0;
        return w->kspan[0];
    }
    for (size_t i = 0; i < w->nspans; i++) {
        w->kspan[i] = wrk_update_k(s->density, w->spans[i].size);
        total += w->kspan[i];
    }
    return total;
}

/* Cut every k by `ratio`, keeping at least 1 per selected span. */
static void shrink_k(struct wrk_update *w, double ratio)
{
    for (size_t i = 0; i < w->nspans; i++) {
        if (w->kspan[i] == 0)
            continue;
        const double k = floor((double)w->kspan[i] * ratio);
        w->kspan[i] = k < 1.0 ? 1 : (size_t)k;
    }
}

/* Select top-k of f (+ residual) per planned span into idx/val. With one
 * plan entry for the whole vector, span 0 stands for [0, dim). */
static enum fl_err select_all(struct wrk_update *w, const float *f,
                              float *res, const struct wrk_settings *s,
                              size_t *k_out)
{
    const bool whole = !s->per_tensor || w->nspans == 1;
    const size_t nsel = whole ? 1 : w->nspans;
    size_t k = 0;

    for (size_t i = 0; i < nsel; i++) {
        const size_t off = whole ? 0 : w->spans[i].offset;
        const size_t n = whole ? w->dim : w->spans[i].size;
        size_t got = 0;
        const enum fl_err rc = cmp_topk_select(
            w->topk, res != NULL ? res + off : NULL, f + off, n, w->kspan[i],
            s->topk, 0, w->idx + k, w->val + k, &got);
        if (rc != FL_OK) {
            /* Put back what earlier spans took out of the residual. */
            if (res != NULL)
                cmp_ef_restore(res, w->idx, w->val, k);
            return rc;
        }
        for (size_t j = 0; j < got; j++)
            w->idx[k + j] += (uint32_t)off;
        k += got;
    }
    *k_out = k;
    return FL_OK;
}

/* One selection + encode attempt. On failure, and when undo is set, the
 * residual is as if nothing had been selected (it holds f + old residual). */
static enum fl_err attempt(struct wrk_update *w, const float *f, float *res,
                           const struct wrk_settings *s,
                           struct wrk_encoded *out)
{
    size_t k = 0;
    enum fl_err rc = select_all(w, f, res, s, &k);
    if (rc != FL_OK)
        return rc;
    memcpy(w->orig, w->val, k * sizeof(float));
    rc = cmp_sparse_encode(w->ctx, w->dim, w->idx, w->val, k, &s->params,
                           &out->meta, &out->payload, &out->payload_len);
    if (rc != FL_OK) {
        if (res != NULL)
            cmp_ef_restore(res, w->idx, w->orig, k);
        return rc;
    }
    out->k = k;
    return FL_OK;
}

enum fl_err wrk_update_encode(struct wrk_update *w, uint64_t round,
                              const float *u, const struct wrk_settings *s,
                              struct wrk_encoded *out)
{
    float *f = NULL;
    double norm = 0.0;
    float scale = 1.0f;
    enum fl_err rc = wrk_settings_check(s);
    if (rc != FL_OK)
        return rc;
    if (!norm_finite(u, w->dim, &norm))
        return FL_ERR_NONFINITE;
    memset(out, 0, sizeof(*out));
    out->norm = norm;
    if (s->clip_norm > 0.0f && norm > (double)s->clip_norm) {
        scale = (float)((double)s->clip_norm / norm);
        out->clipped = true;
    }
    rc = ensure_cap(w, plan_k(w, s));
    if (rc != FL_OK)
        return rc;
    wrk_update_forget(w);
    rc = feed_vector(w, u, scale, s->momentum, &f);
    if (rc != FL_OK)
        return rc;

    float *const res = s->error_feedback ? w->residual : NULL;
    const size_t min_k = (s->per_tensor && w->nspans > 1) ? w->nspans : 1;
    for (;;) {
        rc = attempt(w, f, res, s, out);
        if (rc != FL_OK)
            return rc;
        if (s->max_bytes == 0 || out->payload_len <= s->max_bytes ||
            out->shrinks >= WRK_MAX_SHRINKS || out->k <= min_k)
            break;
        /* Over budget: undo the selection and retry with a smaller k. With
         * EF the residual now holds all of f, so the retry feeds zeros. */
        if (res != NULL) {
            cmp_ef_restore(res, w->idx, w->orig, out->k);
            memset(w->work, 0, w->dim * sizeof(float));
            f = w->work;
        }
        shrink_k(w, WRK_SHRINK_MARGIN * (double)s->max_bytes /
                        (double)out->payload_len);
        out->shrinks++;
    }

    if (res != NULL)
        cmp_ef_add_error(res, w->idx, w->orig, w->val, out->k);
    if (s->momentum > 0.0f) {
        for (size_t i = 0; i < out->k; i++)
            w->velocity[w->idx[i]] = 0.0f;
    }
    w->pending = true;
    w->pending_ef = s->error_feedback;
    w->pending_round = round;
    w->pending_k = out->k;
    return FL_OK;
}

enum wrk_fate wrk_update_apply_fate(struct wrk_update *w, uint64_t round,
                                    bool used, size_t *k_out)
{
    if (k_out != NULL)
        *k_out = 0;
    if (!w->pending)
        return WRK_FATE_NO_PENDING;
    if (w->pending_round != round)
        return WRK_FATE_OTHER_ROUND;
    if (k_out != NULL)
        *k_out = w->pending_k;
    w->pending = false;
    if (used)
        return WRK_FATE_USED;
    if (!w->pending_ef)
        return WRK_FATE_DISCARDED;
    cmp_ef_restore(w->residual, w->idx, w->val, w->pending_k);
    return WRK_FATE_RESTORED;
}

bool wrk_update_forget(struct wrk_update *w)
{
    const bool was = w->pending;
    w->pending = false;
    return was;
}

bool wrk_update_pending(const struct wrk_update *w, uint64_t *round)
{
    if (w->pending && round != NULL)
        *round = w->pending_round;
    return w->pending;
}

const float *wrk_update_residual(const struct wrk_update *w)
{
    return w->residual;
}

const float *wrk_update_velocity(const struct wrk_update *w)
{
    return w->velocity;
}

size_t wrk_update_dim(const struct wrk_update *w) { return w->dim; }

double wrk_update_residual_norm(const struct wrk_update *w)
{
    double ss = 0.0;
    for (size_t i = 0; i < w->dim; i++)
        ss += (double)w->residual[i] * (double)w->residual[i];
    return sqrt(ss);
}

void wrk_update_reset(struct wrk_update *w)
{
    memset(w->residual, 0, w->dim * sizeof(float));
    if (w->velocity != NULL)
        memset(w->velocity, 0, w->dim * sizeof(float));
    w->velocity_dirty = false;
    w->pending = false;
}

void wrk_update_export(const struct wrk_update *w,
                       struct wrk_update_state *st)
{
    memset(st, 0, sizeof(*st));
    st->residual = w->residual;
    st->velocity = w->velocity_dirty ? w->velocity : NULL;
    st->pending = w->pending;
    if (!w->pending)
        return;
    st->pending_ef = w->pending_ef;
    st->pending_round = w->pending_round;
    st->pending_k = w->pending_k;
    st->pending_idx = w->idx;
    st->pending_val = w->val;
}

static enum fl_err check_import(const struct wrk_update *w,
                                const struct wrk_update_state *st)
{
    double norm = 0.0;
    if (st->residual == NULL)
        return FL_ERR_INVALID_ARG;
    if (!norm_finite(st->residual, w->dim, &norm) ||
        (st->velocity != NULL && !norm_finite(st->velocity, w->dim, &norm)))
        return FL_ERR_NONFINITE;
    if (!st->pending)
        return FL_OK;
    if (st->pending_k == 0 || st->pending_k > w->dim ||
        st->pending_idx == NULL || st->pending_val == NULL)
        return FL_ERR_INVALID_ARG;
    for (size_t i = 0; i < st->pending_k; i++) {
        if (st->pending_idx[i] >= w->dim)
            return FL_ERR_INDEX_RANGE;
    }
    if (!norm_finite(st->pending_val, st->pending_k, &norm))
        return FL_ERR_NONFINITE;
    return FL_OK;
}

enum fl_err wrk_update_import(struct wrk_update *w,
                              const struct wrk_update_state *st)
{
    const size_t n = w->dim;
    FL_FORWARD_ERR(check_import(w, st));
    if (st->pending)
        FL_FORWARD_ERR(ensure_cap(w, st->pending_k));
    if (st->velocity != NULL && w->velocity == NULL) {
        w->velocity = fl_calloc(n, sizeof(float));
        if (w->velocity == NULL)
            return FL_ERR_NOMEM;
    }
    memcpy(w->residual, st->residual, n * sizeof(float));
    if (st->velocity != NULL)
        memcpy(w->velocity, st->velocity, n * sizeof(float));
    else if (w->velocity != NULL)
        memset(w->velocity, 0, n * sizeof(float));
    w->velocity_dirty = st->velocity != NULL;
    w->pending = st->pending;
    if (!st->pending)
        return FL_OK;
    memcpy(w->idx, st->pending_idx, st->pending_k * sizeof(uint32_t));
    memcpy(w->val, st->pending_val, st->pending_k * sizeof(float));
    w->pending_ef = st->pending_ef;
    w->pending_round = st->pending_round;
    w->pending_k = st->pending_k;
    return FL_OK;
}
