/*
 * mdl_trainer.h - the trainer interface both programs use, and its MLP
 * implementation.
 *
 * A model is a flat float32 parameter vector with a layout of named tensors
 * (struct mdl_layout). The coordinator only needs init + evaluate; the
 * worker needs set params + train one round. Another model (or an external
 * trainer) plugs in by providing another constructor that fills the same
 * ops table (see docs/trainer.md).
 *
 * The MLP: input -> hidden[0] -> ... -> classes, ReLU between layers,
 * softmax cross-entropy, minibatch SGD with momentum, matrix products with
 * OpenBLAS cblas_sgemm. Each linear layer has tensors "fcN.weight"
 * (out x in, row-major) and "fcN.bias" (out). Initialisation follows the
 * common default: weights and biases uniform in +-1/sqrt(fan_in), from the
 * seed. Batches are drawn from a seeded permutation each epoch, so a run is
 * reproducible on one machine (BLAS kernels vary across machines).
 *
 * One thread at a time per trainer. The caller should have called
 * openblas_set_num_threads(1) (mdl_blas_single_thread()) in processes that
 * run several trainers or share cores.
 */
#ifndef MDL_TRAINER_H
#define MDL_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "model/mdl_data.h"

#define MDL_MAX_TENSORS 32
#define MDL_MAX_HIDDEN 8
#define MDL_TENSOR_NAME_MAX 32

struct mdl_tensor_info {
    char name[MDL_TENSOR_NAME_MAX];
    size_t offset;        /* in floats, into the flat vector */
    size_t size;          /* number of floats */
    uint32_t ndim;        /* 1 or 2 */
    uint32_t shape[2];
};

struct mdl_layout {
    size_t dim;           /* total floats */
    size_t ntensors;
    struct mdl_tensor_info tensors[MDL_MAX_TENSORS];
};

struct mdl_mlp_config {
    uint32_t input;                    /* 784 */
    uint32_t nhidden;                  /* number of hidden layers */
    uint32_t hidden[MDL_MAX_HIDDEN];   /* e.g. 256, 128 */
    uint32_t classes;                  /* 10 */
};

/* Parse "256,128" into cfg->hidden/nhidden. 0 on success, -1 else. */
int mdl_mlp_parse_hidden(const char *s, struct mdl_mlp_config *cfg);

struct mdl_train_config {
    uint32_t local_epochs;  /* used when local_steps == 0 */
    uint32_t local_steps;   /* > 0: exactly this many minibatch steps */
    uint32_t batch_size;
    float lr;
    float momentum;         /* local SGD momentum, reset every round */
    uint64_t seed;          /* batch order; vary per round and device */
};

struct mdl_train_result {
    double loss;            /* mean training loss over the steps taken */
    uint32_t steps;
    uint64_t samples_seen;
};

struct mdl_eval_result {
    double loss;            /* mean cross-entropy */
    double accuracy;        /* in [0, 1] */
    uint32_t n;
};

struct mdl_trainer;

/* Build an MLP trainer. Caller owns *out; free with mdl_trainer_destroy().
 * FL_ERR_INVALID_ARG for a bad config, FL_ERR_NOMEM. */
enum fl_err mdl_trainer_new_mlp(const struct mdl_mlp_config *cfg,
                                struct mdl_trainer **out);
void mdl_trainer_destroy(struct mdl_trainer **tp);

/* The layout; owned by the trainer, valid for its lifetime. */
const struct mdl_layout *mdl_trainer_layout(const struct mdl_trainer *t);

/* Deterministic initial parameters from seed into params (layout->dim). */
void mdl_trainer_init_params(const struct mdl_trainer *t, uint64_t seed,
                             float *params);

/* Train one round starting from w_global (layout->dim floats) on data and
 * write update = w_local - w_global into update (layout->dim floats).
 * data->n == 0 gives FL_ERR_INVALID_ARG. The trainer keeps no state from
 * one round to the next except its scratch buffers. */
enum fl_err mdl_trainer_train(struct mdl_trainer *t, const float *w_global,
                              const struct mdl_dataset *data,
                              const struct mdl_train_config *cfg,
                              float *update, struct mdl_train_result *res);

/* Loss and accuracy of params on data (batched forward passes). */
enum fl_err mdl_trainer_evaluate(struct mdl_trainer *t, const float *params,
                                 const struct mdl_dataset *data,
                                 struct mdl_eval_result *res);

/* Mean loss and its gradient w.r.t. params on samples [first, first+count)
 * of data, into grad (layout->dim floats). For gradient checks and tests. */
enum fl_err mdl_trainer_loss_grad(struct mdl_trainer *t, const float *params,
                                  const struct mdl_dataset *data,
                                  uint32_t first, uint32_t count,
                                  double *loss, float *grad);

/* openblas_set_num_threads(1). */
void mdl_blas_single_thread(void);

/* ---- additions (model engineer): counters, layout helpers */

/* Work done since construction, for benchmarks: the BLAS matrix products
 * and their floating-point operations (2*m*n*k each). A trainer that does
 * not count leaves them 0. */
struct mdl_trainer_counters {
    uint64_t sgemm_calls;
    uint64_t sgemm_flops;
};

void mdl_trainer_get_counters(const struct mdl_trainer *t,
                              struct mdl_trainer_counters *c);

/* Recover the MLP config from a layout made by mdl_trainer_new_mlp (for
 * example one read back by mdl_file_load): tensors fc1.weight, fc1.bias,
 * ..., fcL.weight, fcL.bias, contiguous, with chained shapes.
 * FL_ERR_FORMAT when the layout is not such an MLP, FL_ERR_TOO_LARGE when
 * it has more than MDL_MAX_HIDDEN hidden layers. */
enum fl_err mdl_mlp_config_from_layout(const struct mdl_layout *layout,
                                       struct mdl_mlp_config *cfg);

/* 1 when the layouts are identical (dim, names, shapes, offsets), else 0. */
int mdl_layout_equal(const struct mdl_layout *a, const struct mdl_layout *b);

#endif /* MDL_TRAINER_H */
