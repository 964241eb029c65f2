/*
 * wrk_model.c - MLP from a Welcome layout, and applying Task models
 * (wrk_model.h).
 */
#include "worker/wrk_model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Split "fc1.weight" into prefix length and kind; false when the name ends
 * in neither ".weight" nor ".bias". */
static bool split_name(const char *name, size_t *plen, bool *is_weight)
{
    const size_t n = strlen(name);
    static const char w[] = ".weight";
    static const char b[] = ".bias";
    if (n > sizeof(w) - 1 && strcmp(name + n - (sizeof(w) - 1), w) == 0) {
        *plen = n - (sizeof(w) - 1);
        *is_weight = true;
        return true;
    }
    if (n > sizeof(b) - 1 && strcmp(name + n - (sizeof(b) - 1), b) == 0) {
        *plen = n - (sizeof(b) - 1);
        *is_weight = false;
        return true;
    }
    return false;
}

/* Check one weight/bias pair at *offset; returns out/in of the layer. */
static enum fl_err check_pair(const struct pb_layout_entry *wt,
                              const struct pb_layout_entry *bs,
                              uint64_t *offset, uint32_t *in, uint32_t *out,
                              char *err, size_t errlen)
{
    size_t pw = 0, pb = 0;
    bool w_is = false, b_is = true;
    if (!split_name(wt->name, &pw, &w_is) || !w_is ||
        !split_name(bs->name, &pb, &b_is) || b_is || pw != pb ||
        strncmp(wt->name, bs->name, pw) != 0) {
        snprintf(err, errlen,
                 "layout tensors '%s', '%s' are not a <p>.weight, <p>.bias "
                 "pair",
                 wt->name, bs->name);
        return FL_ERR_FORMAT;
    }
    if (wt->nshape != 2 || bs->nshape != 1 || wt->shape[0] == 0 ||
        wt->shape[1] == 0 || wt->shape[0] != bs->shape[0] ||
        wt->shape[0] > WRK_MAX_WIDTH || wt->shape[1] > WRK_MAX_WIDTH) {
        snprintf(err, errlen,
                 "layout tensor '%s' is not [out, in] with bias [out]",
                 wt->name);
        return FL_ERR_FORMAT;
    }
    if (wt->offset != *offset ||
        bs->offset != *offset + (uint64_t)wt->shape[0] * wt->shape[1]) {
        snprintf(err, errlen, "layout tensors '%s', '%s' are not contiguous",
                 wt->name, bs->name);
        return FL_ERR_FORMAT;
    }
    *out = wt->shape[0];
    *in = wt->shape[1];
    *offset = bs->offset + bs->shape[0];
    return FL_OK;
}

enum fl_err wrk_model_config(const struct pb_layout_entry *layout,
                             size_t nlayout, uint64_t dimension,
                             uint64_t max_dim, struct mdl_mlp_config *cfg,
                             char *err, size_t errlen)
{
    uint64_t offset = 0;
    uint32_t prev_out = 0;
    const size_t nlayers = nlayout / 2;

    memset(cfg, 0, sizeof(*cfg));
    if (nlayout == 0 || nlayout % 2 != 0 || nlayers - 1 > MDL_MAX_HIDDEN) {
        snprintf(err, errlen,
                 "layout has %zu tensors: need 2 to %d (weight, bias pairs)",
                 nlayout, 2 * (MDL_MAX_HIDDEN + 1));
        return FL_ERR_FORMAT;
    }
    if (dimension == 0 || dimension > max_dim) {
        snprintf(err, errlen, "model dimension %llu out of range (max %llu)",
                 (unsigned long long)dimension, (unsigned long long)max_dim);
        return FL_ERR_TOO_LARGE;
    }
    for (size_t l = 0; l < nlayers; l++) {
        uint32_t in = 0, out = 0;
        const enum fl_err rc = check_pair(&layout[2 * l], &layout[2 * l + 1],
                                          &offset, &in, &out, err, errlen);
        if (rc != FL_OK)
            return rc;
        if (l == 0) {
            cfg->input = in;
        } else if (in != prev_out) {
            snprintf(err, errlen,
                     "layout tensor '%s' takes %u inputs, previous layer "
                     "gives %u",
                     layout[2 * l].name, in, prev_out);
            return FL_ERR_FORMAT;
        } else {
            cfg->hidden[l - 1] = in;
        }
        if (offset > dimension)
            break;
        prev_out = out;
    }
    if (offset != dimension) {
        snprintf(err, errlen,
                 "layout covers %llu floats, dimension is %llu",
                 (unsigned long long)offset, (unsigned long long)dimension);
        return FL_ERR_DIMENSION;
    }
    cfg->nhidden = (uint32_t)(nlayers - 1);
    cfg->classes = prev_out;
    return FL_OK;
}

bool wrk_model_layout_equal(const struct mdl_layout *ml,
                            const struct pb_layout_entry *layout,
                            size_t nlayout, char *err, size_t errlen)
{
    if (ml->ntensors != nlayout) {
        snprintf(err, errlen, "trainer has %zu tensors, layout %zu",
                 ml->ntensors, nlayout);
        return false;
    }
    for (size_t i = 0; i < nlayout; i++) {
        const struct mdl_tensor_info *t = &ml->tensors[i];
        const struct pb_layout_entry *e = &layout[i];
        bool same = strcmp(t->name, e->name) == 0 && t->offset == e->offset &&
                    t->ndim == e->nshape;
        for (size_t d = 0; same && d < e->nshape; d++)
            same = t->shape[d] == e->shape[d];
        if (!same) {
            snprintf(err, errlen,
                     "trainer tensor %zu '%s' differs from layout '%s'", i,
                     t->name, e->name);
            return false;
        }
    }
    return true;
}

size_t wrk_model_spans(const struct mdl_layout *ml, struct wrk_span *spans)
{
    for (size_t i = 0; i < ml->ntensors; i++) {
        spans[i].offset = ml->tensors[i].offset;
        spans[i].size = ml->tensors[i].size;
    }
    return ml->ntensors;
}

void wrk_meta_from_pb(const struct pb_tensor *t, bool dense,
                      struct cmp_meta *meta)
{
    meta->dimension = t->dimension;
    meta->k = dense ? t->dimension : t->k;
    meta->index_coding =
        dense ? CMP_INDEX_ALL : (enum cmp_index_coding)t->index_coding;
    meta->value_coding = (enum cmp_value_coding)t->value_coding;
    meta->codec = (enum cmp_codec)t->codec;
    meta->raw_size = t->raw_size;
    meta->checksum = t->checksum;
}

void wrk_pb_from_meta(const struct cmp_meta *meta, const uint8_t *payload,
                      size_t payload_len, struct pb_tensor *t)
{
    memset(t, 0, sizeof(*t));
    t->dimension = meta->dimension;
    t->k = meta->k;
    t->index_coding = (uint32_t)meta->index_coding;
    t->value_coding = (uint32_t)meta->value_coding;
    t->codec = (uint32_t)meta->codec;
    t->raw_size = meta->raw_size;
    t->checksum = meta->checksum;
    t->payload = payload;
    t->payload_len = payload_len;
}

enum fl_err wrk_model_apply(struct cmp_ctx *ctx, struct wrk_held_model *m,
                            const struct pb_tensor *t, uint64_t version)
{
    struct cmp_meta meta;
    const struct cmp_limits lim = {m->dim, 0, 0};
    const float *base = NULL;

    if (t->has_base_version) {
        if (!m->have || t->base_version != m->version)
            return FL_ERR_NOT_FOUND;
        base = m->w;
    }
    if (t->dimension != m->dim)
        return FL_ERR_DIMENSION;
    if (t->value_coding != CMP_VALUE_FP32)
        return FL_ERR_UNSUPPORTED;
    if (t->codec < CMP_CODEC_NONE || t->codec > CMP_CODEC_ZSTD)
        return FL_ERR_UNSUPPORTED;
    wrk_meta_from_pb(t, true, &meta);
    const enum fl_err rc = cmp_dense_decode(ctx, &meta, t->payload,
                                            t->payload_len, &lim, base, m->w);
    if (rc != FL_OK)
        return rc;
    m->have = true;
    m->version = version;
    return FL_OK;
}

enum fl_err wrk_model_apply_delta(struct cmp_ctx *ctx,
                                  struct wrk_held_model *m,
                                  const struct pb_tensor *t,
                                  uint64_t base_version, uint64_t version)
{
    struct cmp_meta meta;
    const struct cmp_limits lim = {m->dim, 0, 0};
    const uint32_t *idx = NULL;
    const float *val = NULL;
    size_t k = 0;

    if (!m->have || base_version != m->version)
        return FL_ERR_NOT_FOUND;
    if (t->dimension != m->dim)
        return FL_ERR_DIMENSION;
    wrk_meta_from_pb(t, false, &meta);
    const enum fl_err rc = cmp_sparse_decode(ctx, &meta, t->payload,
                                             t->payload_len, &lim, &idx,
                                             &val, &k);
    if (rc != FL_OK)
        return rc;
    for (size_t i = 0; i < k; i++) {
        if (!isfinite(m->w[idx[i]] + val[i]))
            return FL_ERR_NONFINITE;
    }
    /* the coordinator's operation on its broadcast model, exactly */
    cmp_scatter_add(m->w, idx, val, k, 1.0f);
    m->version = version;
    return FL_OK;
}
