/*
 * mdl_trainer_internal.h - what a model implementation provides to the
 * generic trainer interface (model/mdl_trainer.c). See docs/trainer.md.
 *
 * A trainer is a struct mdl_trainer embedded as the FIRST member of the
 * implementation's own struct, with `ops` pointing at a static table and
 * `layout` filled by the constructor. The public mdl_trainer_* functions
 * check the common arguments (NULL pointers, data->n, data->dim against
 * the input size, the train config) and then call the ops; an op only
 * checks what is specific to its model.
 */
#ifndef MDL_TRAINER_INTERNAL_H
#define MDL_TRAINER_INTERNAL_H

#include "model/mdl_trainer.h"

struct mdl_trainer_ops {
    const char *name;
    /* free everything the implementation owns, including t itself */
    void (*destroy)(struct mdl_trainer *t);
    void (*init_params)(const struct mdl_trainer *t, uint64_t seed,
                        float *params);
    enum fl_err (*train)(struct mdl_trainer *t, const float *w_global,
                         const struct mdl_dataset *data,
                         const struct mdl_train_config *cfg, float *update,
                         struct mdl_train_result *res);
    enum fl_err (*evaluate)(struct mdl_trainer *t, const float *params,
                            const struct mdl_dataset *data,
                            struct mdl_eval_result *res);
    enum fl_err (*loss_grad)(struct mdl_trainer *t, const float *params,
                             const struct mdl_dataset *data, uint32_t first,
                             uint32_t count, double *loss, float *grad);
};

struct mdl_trainer {
    const struct mdl_trainer_ops *ops;
    struct mdl_layout layout;
    uint32_t input_dim;     /* floats per sample the model expects */
    uint32_t nclasses;      /* labels must be < this */
    struct mdl_trainer_counters counters;
};

#endif /* MDL_TRAINER_INTERNAL_H */
