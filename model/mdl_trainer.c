/*
 * mdl_trainer.c - the model-independent half of the trainer interface:
 * argument checks, dispatch through the ops table, layout helpers.
 * The MLP itself is in mdl_mlp.c.
 */
#include "model/mdl_trainer.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/fl_util.h"
#include "model/mdl_trainer_internal.h"

int mdl_mlp_parse_hidden(const char *s, struct mdl_mlp_config *cfg)
{
    char buf[16];
    uint32_t n = 0;
    if (s == NULL || cfg == NULL || *s == '\0')
        return -1;
    while (*s != '\0') {
        const char *comma = strchr(s, ',');
        const size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        uint64_t v = 0;
        if (len == 0 || len >= sizeof(buf) || n == MDL_MAX_HIDDEN)
            return -1;
        memcpy(buf, s, len);
        buf[len] = '\0';
        if (fl_parse_u64(buf, 1, 1u << 16, &v) != FL_OK)
            return -1;
        cfg->hidden[n++] = (uint32_t)v;
        s += len;
        if (*s == ',') {
            s++;
            if (*s == '\0') /* trailing comma */
                return -1;
        }
    }
    cfg->nhidden = n;
    return 0;
}

void mdl_trainer_destroy(struct mdl_trainer **tp)
{
    if (tp == NULL || *tp == NULL)
        return;
    (*tp)->ops->destroy(*tp);
    *tp = NULL;
}

const struct mdl_layout *mdl_trainer_layout(const struct mdl_trainer *t)
{
    return &t->layout;
}

void mdl_trainer_init_params(const struct mdl_trainer *t, uint64_t seed,
                             float *params)
{
    t->ops->init_params(t, seed, params);
}

/* Samples [first, first + count) of d fit the model. */
static int data_ok(const struct mdl_trainer *t, const struct mdl_dataset *d,
                   uint32_t first, uint32_t count)
{
    if (d == NULL || d->n == 0 || d->x == NULL || d->y == NULL ||
        d->dim != t->input_dim || count == 0 || first >= d->n ||
        count > d->n - first)
        return 0;
    for (uint32_t i = first; i < first + count; i++)
        if (d->y[i] >= t->nclasses)
            return 0;
    return 1;
}

enum fl_err mdl_trainer_train(struct mdl_trainer *t, const float *w_global,
                              const struct mdl_dataset *data,
                              const struct mdl_train_config *cfg,
                              float *update, struct mdl_train_result *res)
{
    if (t == NULL || w_global == NULL || update == NULL || res == NULL ||
        cfg == NULL || data == NULL || !data_ok(t, data, 0, data->n))
        return FL_ERR_INVALID_ARG;
    if (cfg->batch_size == 0 || !isfinite(cfg->lr) ||
        !isfinite(cfg->momentum) || cfg->momentum < 0.0f ||
        (cfg->local_steps == 0 && cfg->local_epochs == 0))
        return FL_ERR_INVALID_ARG;
    return t->ops->train(t, w_global, data, cfg, update, res);
}

enum fl_err mdl_trainer_evaluate(struct mdl_trainer *t, const float *params,
                                 const struct mdl_dataset *data,
                                 struct mdl_eval_result *res)
{
    if (t == NULL || params == NULL || res == NULL || data == NULL ||
        !data_ok(t, data, 0, data->n))
        return FL_ERR_INVALID_ARG;
    return t->ops->evaluate(t, params, data, res);
}

enum fl_err mdl_trainer_loss_grad(struct mdl_trainer *t, const float *params,
                                  const struct mdl_dataset *data,
                                  uint32_t first, uint32_t count,
                                  double *loss, float *grad)
{
    if (t == NULL || params == NULL || loss == NULL || grad == NULL ||
        !data_ok(t, data, first, count))
        return FL_ERR_INVALID_ARG;
    return t->ops->loss_grad(t, params, data, first, count, loss, grad);
}

void mdl_blas_single_thread(void) { openblas_set_num_threads(1); }

void mdl_trainer_get_counters(const struct mdl_trainer *t,
                              struct mdl_trainer_counters *c)
{
    *c = t->counters;
}

/* tensors[i] must be "fc<layer>.<kind>" */
static int is_named(const struct mdl_tensor_info *ti, uint32_t layer,
                    const char *kind)
{
    char want[MDL_TENSOR_NAME_MAX];
    const int n = snprintf(want, sizeof(want), "fc%u.%s", layer, kind);
    return n > 0 && (size_t)n < sizeof(want) && strcmp(ti->name, want) == 0;
}

enum fl_err mdl_mlp_config_from_layout(const struct mdl_layout *layout,
                                       struct mdl_mlp_config *cfg)
{
    struct mdl_mlp_config c = {0};
    size_t off = 0;
    if (layout == NULL || cfg == NULL || layout->ntensors < 2 ||
        layout->ntensors % 2 != 0 || layout->ntensors > MDL_MAX_TENSORS)
        return FL_ERR_FORMAT;
    const uint32_t nlayers = (uint32_t)(layout->ntensors / 2);
    if (nlayers - 1 > MDL_MAX_HIDDEN)
        return FL_ERR_TOO_LARGE;
    for (uint32_t l = 0; l < nlayers; l++) {
        const struct mdl_tensor_info *w = &layout->tensors[2 * l];
        const struct mdl_tensor_info *b = &layout->tensors[2 * l + 1];
        if (!is_named(w, l + 1, "weight") || !is_named(b, l + 1, "bias") ||
            w->ndim != 2 || b->ndim != 1 || w->shape[0] == 0 ||
            w->shape[1] == 0 || b->shape[0] != w->shape[0] ||
            w->offset != off ||
            w->size != (size_t)w->shape[0] * w->shape[1] ||
            b->offset != off + w->size || b->size != b->shape[0])
            return FL_ERR_FORMAT;
        if (l == 0)
            c.input = w->shape[1];
        else if (w->shape[1] != c.hidden[l - 1])
            return FL_ERR_FORMAT;
        if (l + 1 < nlayers)
            c.hidden[l] = w->shape[0];
        else
            c.classes = w->shape[0];
        off = b->offset + b->size;
    }
    if (off != layout->dim)
        return FL_ERR_FORMAT;
    c.nhidden = nlayers - 1;
    *cfg = c;
    return FL_OK;
}

int mdl_layout_equal(const struct mdl_layout *a, const struct mdl_layout *b)
{
    if (a->dim != b->dim || a->ntensors != b->ntensors ||
        a->ntensors > MDL_MAX_TENSORS)
        return 0;
    for (size_t i = 0; i < a->ntensors; i++) {
        const struct mdl_tensor_info *x = &a->tensors[i], *y = &b->tensors[i];
        if (strncmp(x->name, y->name, MDL_TENSOR_NAME_MAX) != 0 ||
            x->offset != y->offset || x->size != y->size ||
            x->ndim != y->ndim || x->shape[0] != y->shape[0] ||
            (x->ndim == 2 && x->shape[1] != y->shape[1]))
            return 0;
    }
    return 1;
}
