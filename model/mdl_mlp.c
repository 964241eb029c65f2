/*
 * mdl_mlp.c - the multilayer perceptron behind mdl_trainer_new_mlp().
 *
 * Shapes (row-major, B = rows in the batch, L = linear layers):
 *   act[0] = X            B x size[0]        (training: gathered batch)
 *   act[l] = relu(act[l-1] W_l^T + b_l)       B x size[l], l < L
 *   act[L] = logits                            B x size[L]
 *   delta[L] = (softmax(act[L]) - onehot(y)) / N
 *   dW_l = delta[l]^T act[l-1],  db_l = colsum(delta[l])
 *   delta[l-1] = (delta[l] W_l) * (act[l-1] > 0)
 * so one step is L forward and 2L-1 backward sgemm calls (no input
 * gradient). Everything else is a single fused pass over a small matrix.
 *
 * Momentum is folded into the weight-gradient sgemm: with beta = mu and C =
 * the velocity, sgemm computes v = mu*v + g directly (PyTorch's SGD), so a
 * step ends with one flat loop w -= lr*v. The same backward with beta = 0
 * into a gradient buffer serves loss_grad.
 *
 * Scratch (activations, deltas, the batch copy, the permutation) is sized
 * for the largest batch asked for so far and grows only when a bigger one
 * comes: no allocation inside the step loop.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"
#include "model/mdl_trainer.h"
#include "model/mdl_trainer_internal.h"

#define MLP_MAX_LAYERS (MDL_MAX_HIDDEN + 1)
#define MLP_EVAL_ROWS 1000u          /* rows per forward pass in evaluate */
#define MLP_MAX_WIDTH (1u << 20)
#define MLP_MAX_CLASSES 256u          /* labels are uint8_t */
#define MLP_MAX_DIM ((uint64_t)1 << 30)

struct mdl_mlp {
    struct mdl_trainer base;          /* first: the generic part */
    uint32_t nlayers;                 /* linear layers, nhidden + 1 */
    uint32_t size[MLP_MAX_LAYERS + 1];
    size_t woff[MLP_MAX_LAYERS];      /* weight offset of layer l (0-based) */
    size_t boff[MLP_MAX_LAYERS];
    float *w;                         /* working parameters, dim */
    float *v;                         /* velocity / gradient, dim */
    uint32_t cap;                     /* batch rows the scratch holds */
    float *slab;                      /* all activation/delta scratch */
    float *act[MLP_MAX_LAYERS + 1];   /* act[0]: gathered input batch */
    float *delta[MLP_MAX_LAYERS + 1]; /* delta[0] unused */
    uint8_t *ybuf;                    /* labels of the gathered batch */
    uint32_t *perm;
    uint32_t perm_cap;
};

static struct mdl_mlp *mlp_of(struct mdl_trainer *t)
{
    return (struct mdl_mlp *)(void *)t;
}

static const struct mdl_mlp *mlp_of_const(const struct mdl_trainer *t)
{
    return (const struct mdl_mlp *)(const void *)t;
}

/* ---- scratch */

static enum fl_err ensure_rows(struct mdl_mlp *m, uint32_t rows)
{
    size_t per_row = m->size[0];
    float *slab, *p;
    uint8_t *ybuf;
    if (rows <= m->cap)
        return FL_OK;
    for (uint32_t l = 1; l <= m->nlayers; l++)
        per_row += 2 * (size_t)m->size[l];
    slab = fl_malloc(per_row * rows * sizeof(float));
    ybuf = fl_malloc(rows);
    if (slab == NULL || ybuf == NULL) {
        fl_free(slab);
        fl_free(ybuf);
        return FL_ERR_NOMEM;
    }
    fl_free(m->slab);
    fl_free(m->ybuf);
    m->slab = slab;
    m->ybuf = ybuf;
    p = slab;
    m->act[0] = p;
    p += (size_t)rows * m->size[0];
    for (uint32_t l = 1; l <= m->nlayers; l++) {
        m->act[l] = p;
        p += (size_t)rows * m->size[l];
        m->delta[l] = p;
        p += (size_t)rows * m->size[l];
    }
    m->cap = rows;
    return FL_OK;
}

static enum fl_err ensure_perm(struct mdl_mlp *m, uint32_t n)
{
    uint32_t *p;
    if (n <= m->perm_cap)
        return FL_OK;
    p = fl_malloc((size_t)n * sizeof(*p));
    if (p == NULL)
        return FL_ERR_NOMEM;
    fl_free(m->perm);
    m->perm = p;
    m->perm_cap = n;
    return FL_OK;
}

/* ---- kernels */

/* C = alpha * op(A) op(B) + beta * C, row-major, counted. */
static void mm(struct mdl_mlp *m, enum CBLAS_TRANSPOSE ta,
               enum CBLAS_TRANSPOSE tb, uint32_t rows, uint32_t cols,
               uint32_t inner, const float *a, uint32_t lda, const float *b,
               uint32_t ldb, float beta, float *c)
{
    cblas_sgemm(CblasRowMajor, ta, tb, (blasint)rows, (blasint)cols,
                (blasint)inner, 1.0f, a, (blasint)lda, b, (blasint)ldb, beta,
                c, (blasint)cols);
    m->base.counters.sgemm_calls++;
    m->base.counters.sgemm_flops += 2ull * rows * cols * inner;
}

/*
 * The element-wise kernels below walk their arrays in blocks of MLP_BLOCK
 * with a constant inner trip count: gcc -O2 ("very cheap" vectorizer cost
 * model) vectorizes only loops whose scalar count is a known multiple of
 * the vector width, so a plain `for (i < n)` loop would stay scalar. The
 * scalar tail handles the last n % MLP_BLOCK elements.
 */
#define MLP_BLOCK 16

/* z[r][j] = relu(z[r][j] + b[j]) (relu != 0) or z[r][j] + b[j] */
static void add_bias_act(float *restrict z, const float *restrict b,
                         uint32_t rows, uint32_t cols, int relu)
{
    const uint32_t cb = cols - cols % MLP_BLOCK;
    for (uint32_t r = 0; r < rows; r++, z += cols) {
        uint32_t j = 0;
        for (; j < cb; j += MLP_BLOCK)
            for (uint32_t k = 0; k < MLP_BLOCK; k++) {
                const float t = z[j + k] + b[j + k];
                z[j + k] = relu && t < 0.0f ? 0.0f : t;
            }
        for (; j < cols; j++) {
            const float t = z[j] + b[j];
            z[j] = relu && t < 0.0f ? 0.0f : t;
        }
    }
}

/* gb = beta * gb + colsum(d) */
static void bias_grad(float *restrict gb, const float *restrict d,
                      uint32_t rows, uint32_t cols, float beta)
{
    const uint32_t cb = cols - cols % MLP_BLOCK;
    if (beta == 0.0f)
        memset(gb, 0, cols * sizeof(*gb));
    else if (beta != 1.0f)
        for (uint32_t j = 0; j < cols; j++)
            gb[j] *= beta;
    for (uint32_t r = 0; r < rows; r++, d += cols) {
        uint32_t j = 0;
        for (; j < cb; j += MLP_BLOCK)
            for (uint32_t k = 0; k < MLP_BLOCK; k++)
                gb[j + k] += d[j + k];
        for (; j < cols; j++)
            gb[j] += d[j];
    }
}

/* d[i] = 0 where the ReLU output h[i] was 0 */
static void relu_mask(float *restrict d, const float *restrict h, size_t n)
{
    const size_t nb = n - n % MLP_BLOCK;
    size_t i = 0;
    for (; i < nb; i += MLP_BLOCK)
        for (size_t k = 0; k < MLP_BLOCK; k++)
            d[i + k] = h[i + k] > 0.0f ? d[i + k] : 0.0f;
    for (; i < n; i++)
        d[i] = h[i] > 0.0f ? d[i] : 0.0f;
}

/* w -= lr * v over the whole flat vector */
static void sgd_apply(float *restrict w, const float *restrict v, size_t n,
                      float lr)
{
    const size_t nb = n - n % MLP_BLOCK;
    size_t i = 0;
    for (; i < nb; i += MLP_BLOCK)
        for (size_t k = 0; k < MLP_BLOCK; k++)
            w[i + k] -= lr * v[i + k];
    for (; i < n; i++)
        w[i] -= lr * v[i];
}

/* act[1..L] from x (rows x size[0]) */
static void forward(struct mdl_mlp *m, const float *params, const float *x,
                    uint32_t rows)
{
    const float *in = x;
    for (uint32_t l = 0; l < m->nlayers; l++) {
        const uint32_t fin = m->size[l], fout = m->size[l + 1];
        float *z = m->act[l + 1];
        mm(m, CblasNoTrans, CblasTrans, rows, fout, fin, in, fin,
           params + m->woff[l], fin, 0.0f, z);
        add_bias_act(z, params + m->boff[l], rows, fout, l + 1 < m->nlayers);
        in = z;
    }
}

/*
 * Softmax cross-entropy of the logits act[L] against y: adds the summed
 * loss to *loss and the number of right argmax guesses to *correct. With
 * scale != 0 also writes delta[L] = (softmax - onehot) * scale.
 * log-sum-exp is shifted by the row maximum, so no exp overflows.
 */
static void softmax_xent(struct mdl_mlp *m, const uint8_t *y, uint32_t rows,
                         float scale, double *loss, uint64_t *correct)
{
    const uint32_t c = m->size[m->nlayers];
    const float *z = m->act[m->nlayers];
    float *d = m->delta[m->nlayers];
    double lsum = 0.0;
    uint64_t right = 0;
    for (uint32_t r = 0; r < rows; r++, z += c, d += c) {
        uint32_t arg = 0;
        float sum = 0.0f;
        for (uint32_t j = 1; j < c; j++)
            if (z[j] > z[arg])
                arg = j;
        const float zmax = z[arg];
        for (uint32_t j = 0; j < c; j++) {
            const float e = expf(z[j] - zmax);
            if (scale != 0.0f)
                d[j] = e;
            sum += e;
        }
        lsum += (double)zmax + log((double)sum) - (double)z[y[r]];
        right += arg == y[r];
        if (scale != 0.0f) {
            const float k = scale / sum;
            for (uint32_t j = 0; j < c; j++)
                d[j] *= k;
            d[y[r]] -= scale;
        }
    }
    *loss += lsum;
    *correct += right;
}

/* Gradients of the weights into g (beta: keep beta * g, see mm()). */
static void backward(struct mdl_mlp *m, const float *params, const float *x,
                     uint32_t rows, float *g, float beta)
{
    for (uint32_t l = m->nlayers; l-- > 0;) {
        const uint32_t fin = m->size[l], fout = m->size[l + 1];
        const float *hin = l == 0 ? x : m->act[l];
        const float *dz = m->delta[l + 1];
        mm(m, CblasTrans, CblasNoTrans, fout, fin, rows, dz, fout, hin, fin,
           beta, g + m->woff[l]);
        bias_grad(g + m->boff[l], dz, rows, fout, beta);
        if (l > 0) {
            mm(m, CblasNoTrans, CblasNoTrans, rows, fin, fout, dz, fout,
               params + m->woff[l], fin, 0.0f, m->delta[l]);
            relu_mask(m->delta[l], m->act[l], (size_t)rows * fin);
        }
    }
}

/* ---- ops */

static void mlp_init_params(const struct mdl_trainer *t, uint64_t seed,
                            float *params)
{
    const struct mdl_mlp *m = mlp_of_const(t);
    struct fl_rng rng;
    fl_rng_seed(&rng, seed);
    for (uint32_t l = 0; l < m->nlayers; l++) {
        const double bound = 1.0 / sqrt((double)m->size[l]);
        const size_t nw = (size_t)m->size[l] * m->size[l + 1];
        float *p = params + m->woff[l];
        /* weights then biases: they are adjacent in the layout */
        for (size_t i = 0; i < nw + m->size[l + 1]; i++)
            p[i] = (float)((2.0 * fl_rng_uniform(&rng) - 1.0) * bound);
    }
}

static void shuffle(uint32_t *a, uint32_t n, struct fl_rng *rng)
{
    for (uint32_t i = n; i > 1; i--) {
        const uint32_t j = (uint32_t)fl_rng_below(rng, i);
        const uint32_t tmp = a[i - 1];
        a[i - 1] = a[j];
        a[j] = tmp;
    }
}

/* Copy the samples idx[0..rows) into act[0] / ybuf. */
static void gather(struct mdl_mlp *m, const struct mdl_dataset *d,
                   const uint32_t *idx, uint32_t rows)
{
    const size_t dim = m->size[0];
    for (uint32_t r = 0; r < rows; r++) {
        memcpy(m->act[0] + r * dim, d->x + (size_t)idx[r] * dim,
               dim * sizeof(float));
        m->ybuf[r] = d->y[idx[r]];
    }
}

/* One minibatch step on the gathered batch: v = mu v + g, w -= lr v. */
static void sgd_step(struct mdl_mlp *m, uint32_t rows, float lr, float mu,
                     double *loss)
{
    uint64_t correct = 0;
    forward(m, m->w, m->act[0], rows);
    softmax_xent(m, m->ybuf, rows, 1.0f / (float)rows, loss, &correct);
    backward(m, m->w, m->act[0], rows, m->v, mu);
    sgd_apply(m->w, m->v, m->base.layout.dim, lr);
}

static uint64_t steps_of(const struct mdl_train_config *cfg, uint32_t n,
                         uint32_t batch)
{
    if (cfg->local_steps > 0)
        return cfg->local_steps;
    return (uint64_t)cfg->local_epochs * ((n + (uint64_t)batch - 1) / batch);
}

static enum fl_err mlp_train(struct mdl_trainer *t, const float *w_global,
                             const struct mdl_dataset *data,
                             const struct mdl_train_config *cfg,
                             float *update, struct mdl_train_result *res)
{
    struct mdl_mlp *m = mlp_of(t);
    const size_t dim = t->layout.dim;
    const uint32_t n = data->n, batch = FL_MIN(cfg->batch_size, data->n);
    const uint64_t nsteps = steps_of(cfg, n, batch);
    struct fl_rng rng;
    double loss = 0.0;
    uint64_t seen = 0;
    uint32_t pos = n; /* forces a shuffle before the first batch */
    int finite = 1;

    FL_FORWARD_ERR(ensure_rows(m, batch));
    FL_FORWARD_ERR(ensure_perm(m, n));
    fl_rng_seed(&rng, cfg->seed);
    for (uint32_t i = 0; i < n; i++)
        m->perm[i] = i;
    memcpy(m->w, w_global, dim * sizeof(float));
    memset(m->v, 0, dim * sizeof(float));
    for (uint64_t s = 0; s < nsteps; s++) {
        if (pos == n) {
            shuffle(m->perm, n, &rng);
            pos = 0;
        }
        const uint32_t rows = FL_MIN(batch, n - pos);
        gather(m, data, m->perm + pos, rows);
        sgd_step(m, rows, cfg->lr, cfg->momentum, &loss);
        pos += rows;
        seen += rows;
    }
    for (size_t i = 0; i < dim; i++) {
        update[i] = m->w[i] - w_global[i];
        finite &= isfinite(update[i]) != 0;
    }
    res->loss = seen > 0 ? loss / (double)seen : 0.0;
    res->steps = (uint32_t)FL_MIN(nsteps, (uint64_t)UINT32_MAX);
    res->samples_seen = seen;
    return finite && isfinite(res->loss) ? FL_OK : FL_ERR_NONFINITE;
}

static enum fl_err mlp_evaluate(struct mdl_trainer *t, const float *params,
                                const struct mdl_dataset *data,
                                struct mdl_eval_result *res)
{
    struct mdl_mlp *m = mlp_of(t);
    const uint32_t chunk = FL_MIN(MLP_EVAL_ROWS, data->n);
    double loss = 0.0;
    uint64_t correct = 0;
    FL_FORWARD_ERR(ensure_rows(m, chunk));
    for (uint32_t first = 0; first < data->n; first += chunk) {
        const uint32_t rows = FL_MIN(chunk, data->n - first);
        forward(m, params, data->x + (size_t)first * m->size[0], rows);
        softmax_xent(m, data->y + first, rows, 0.0f, &loss, &correct);
    }
    res->loss = loss / data->n;
    res->accuracy = (double)correct / data->n;
    res->n = data->n;
    return FL_OK;
}

static enum fl_err mlp_loss_grad(struct mdl_trainer *t, const float *params,
                                 const struct mdl_dataset *data,
                                 uint32_t first, uint32_t count,
                                 double *loss, float *grad)
{
    struct mdl_mlp *m = mlp_of(t);
    const uint32_t chunk = FL_MIN(MLP_EVAL_ROWS, count);
    const float scale = 1.0f / (float)count;
    double sum = 0.0;
    uint64_t correct = 0;
    FL_FORWARD_ERR(ensure_rows(m, chunk));
    for (uint32_t done = 0; done < count; done += chunk) {
        const uint32_t rows = FL_MIN(chunk, count - done);
        const float *x = data->x + (size_t)(first + done) * m->size[0];
        forward(m, params, x, rows);
        softmax_xent(m, data->y + first + done, rows, scale, &sum, &correct);
        backward(m, params, x, rows, grad, done == 0 ? 0.0f : 1.0f);
    }
    *loss = sum / count;
    return FL_OK;
}

static void mlp_destroy(struct mdl_trainer *t)
{
    struct mdl_mlp *m = mlp_of(t);
    fl_free(m->w);
    fl_free(m->v);
    fl_free(m->slab);
    fl_free(m->ybuf);
    fl_free(m->perm);
    fl_free(m);
}

static const struct mdl_trainer_ops mlp_ops = {
    .name = "mlp",
    .destroy = mlp_destroy,
    .init_params = mlp_init_params,
    .train = mlp_train,
    .evaluate = mlp_evaluate,
    .loss_grad = mlp_loss_grad,
};

/* ---- construction */

static int config_ok(const struct mdl_mlp_config *cfg)
{
    uint64_t dim = 0;
    uint32_t prev = cfg->input;
    if (cfg->input == 0 || cfg->input > MLP_MAX_WIDTH || cfg->classes < 2 ||
        cfg->classes > MLP_MAX_CLASSES || cfg->nhidden > MDL_MAX_HIDDEN)
        return 0;
    for (uint32_t l = 0; l <= cfg->nhidden; l++) {
        const uint32_t out = l < cfg->nhidden ? cfg->hidden[l] : cfg->classes;
        if (out == 0 || out > MLP_MAX_WIDTH)
            return 0;
        dim += (uint64_t)prev * out + out;
        prev = out;
    }
    return dim <= MLP_MAX_DIM;
}

static void add_tensor(struct mdl_layout *lay, uint32_t layer,
                       const char *kind, uint32_t ndim, uint32_t d0,
                       uint32_t d1)
{
    struct mdl_tensor_info *ti = &lay->tensors[lay->ntensors++];
    snprintf(ti->name, sizeof(ti->name), "fc%u.%s", layer, kind);
    ti->ndim = ndim;
    ti->shape[0] = d0;
    ti->shape[1] = ndim == 2 ? d1 : 0;
    ti->size = ndim == 2 ? (size_t)d0 * d1 : d0;
    ti->offset = lay->dim;
    lay->dim += ti->size;
}

static void build_layout(struct mdl_mlp *m, const struct mdl_mlp_config *cfg)
{
    struct mdl_layout *lay = &m->base.layout;
    m->nlayers = cfg->nhidden + 1;
    m->size[0] = cfg->input;
    for (uint32_t l = 0; l < cfg->nhidden; l++)
        m->size[l + 1] = cfg->hidden[l];
    m->size[m->nlayers] = cfg->classes;
    for (uint32_t l = 0; l < m->nlayers; l++) {
        m->woff[l] = lay->dim;
        add_tensor(lay, l + 1, "weight", 2, m->size[l + 1], m->size[l]);
        m->boff[l] = lay->dim;
        add_tensor(lay, l + 1, "bias", 1, m->size[l + 1], 0);
    }
    m->base.input_dim = cfg->input;
    m->base.nclasses = cfg->classes;
}

enum fl_err mdl_trainer_new_mlp(const struct mdl_mlp_config *cfg,
                                struct mdl_trainer **out)
{
    struct mdl_mlp *m = NULL;
    if (cfg == NULL || out == NULL || !config_ok(cfg))
        return FL_ERR_INVALID_ARG;
    m = fl_calloc(1, sizeof(*m));
    if (m == NULL)
        return FL_ERR_NOMEM;
    m->base.ops = &mlp_ops;
    build_layout(m, cfg);
    m->w = fl_malloc(m->base.layout.dim * sizeof(float));
    m->v = fl_malloc(m->base.layout.dim * sizeof(float));
    if (m->w == NULL || m->v == NULL) {
        mlp_destroy(&m->base);
        return FL_ERR_NOMEM;
    }
    *out = &m->base;
    return FL_OK;
}
