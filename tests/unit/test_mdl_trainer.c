/* Unit tests for model/mdl_trainer + mdl_mlp: layout, init, a gradient check
 * against a double-precision reference, SGD-with-momentum semantics,
 * training on a separable set, determinism, errors, allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "model/mdl_data.h"
#include "model/mdl_trainer.h"

#define REF_MAX_WIDTH 64

/* ---- fixtures */

/* n random samples of dim features in [0, 1), labels < classes. */
static struct mdl_dataset *random_data(uint32_t n, uint32_t dim,
                                       uint32_t classes, uint64_t seed)
{
    struct fl_rng rng;
    struct mdl_dataset *d = fl_calloc(1, sizeof(*d));
    assert_non_null(d);
    d->n = n;
    d->dim = dim;
    d->nclasses = classes;
    d->x = fl_malloc((size_t)n * dim * sizeof(float));
    d->y = fl_malloc(n);
    assert_non_null(d->x);
    assert_non_null(d->y);
    fl_rng_seed(&rng, seed);
    for (size_t i = 0; i < (size_t)n * dim; i++)
        d->x[i] = (float)fl_rng_uniform(&rng);
    for (uint32_t i = 0; i < n; i++)
        d->y[i] = (uint8_t)fl_rng_below(&rng, classes);
    return d;
}

/* Linearly separable: class c lights up features c and c + classes. */
static struct mdl_dataset *separable_data(uint32_t n, uint32_t classes,
                                          uint64_t seed)
{
    struct mdl_dataset *d = random_data(n, 2 * classes, classes, seed);
    for (uint32_t i = 0; i < n; i++) {
        float *x = d->x + (size_t)i * d->dim;
        for (uint32_t j = 0; j < d->dim; j++)
            x[j] *= 0.2f;
        x[d->y[i]] += 1.0f;
        x[d->y[i] + classes] += 0.5f;
    }
    return d;
}

static struct mdl_trainer *new_mlp(uint32_t in, const char *hidden,
                                   uint32_t classes,
                                   struct mdl_mlp_config *out_cfg)
{
    struct mdl_mlp_config c = {.input = in, .classes = classes};
    struct mdl_trainer *t = NULL;
    if (hidden != NULL)
        assert_int_equal(mdl_mlp_parse_hidden(hidden, &c), 0);
    assert_int_equal(mdl_trainer_new_mlp(&c, &t), FL_OK);
    if (out_cfg != NULL)
        *out_cfg = c;
    return t;
}

static float *params_new(const struct mdl_trainer *t)
{
    float *p = fl_malloc(mdl_trainer_layout(t)->dim * sizeof(float));
    assert_non_null(p);
    return p;
}

/* ---- a double-precision reference of the same network */

static double ref_loss(const struct mdl_mlp_config *c,
                       const struct mdl_layout *lay, const double *p,
                       const struct mdl_dataset *d, uint32_t first,
                       uint32_t count)
{
    double sum = 0.0;
    const uint32_t nl = c->nhidden + 1;
    for (uint32_t s = first; s < first + count; s++) {
        double h[REF_MAX_WIDTH], z[REF_MAX_WIDTH];
        uint32_t in = c->input;
        for (uint32_t j = 0; j < in; j++)
            h[j] = d->x[(size_t)s * in + j];
        for (uint32_t l = 0; l < nl; l++) {
            const uint32_t out = l < c->nhidden ? c->hidden[l] : c->classes;
            const double *w = p + lay->tensors[2 * l].offset;
            const double *b = p + lay->tensors[2 * l + 1].offset;
            for (uint32_t o = 0; o < out; o++) {
                z[o] = b[o];
                for (uint32_t i = 0; i < in; i++)
                    z[o] += w[(size_t)o * in + i] * h[i];
                if (l + 1 < nl && z[o] < 0)
                    z[o] = 0;
            }
            memcpy(h, z, out * sizeof(double));
            in = out;
        }
        double m = h[0], e = 0.0;
        for (uint32_t j = 1; j < c->classes; j++)
            m = fmax(m, h[j]);
        for (uint32_t j = 0; j < c->classes; j++)
            e += exp(h[j] - m);
        sum += m + log(e) - h[d->y[s]];
    }
    return sum / count;
}

/* ---- parsing, layout, construction */

struct hidden_case {
    const char *s;
    int rc;
    uint32_t n;
    uint32_t h0, hlast;
};

static const struct hidden_case hidden_cases[] = {
    {"256,128", 0, 2, 256, 128},
    {"10", 0, 1, 10, 10},
    {"1,2,3,4,5,6,7,8", 0, 8, 1, 8},
    {"1,2,3,4,5,6,7,8,9", -1, 0, 0, 0},
    {"65536", 0, 1, 65536, 65536},
    {"65537", -1, 0, 0, 0},
    {"", -1, 0, 0, 0},
    {"0", -1, 0, 0, 0},
    {"256,", -1, 0, 0, 0},
    {",256", -1, 0, 0, 0},
    {"256,,128", -1, 0, 0, 0},
    {"256;128", -1, 0, 0, 0},
    {"-5", -1, 0, 0, 0},
    {" 5", -1, 0, 0, 0},
};

static void test_parse_hidden_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(hidden_cases); i++) {
        const struct hidden_case *c = &hidden_cases[i];
        struct mdl_mlp_config cfg = {.nhidden = 77};
        const int rc = mdl_mlp_parse_hidden(c->s, &cfg);
        if (rc != c->rc)
            fail_msg("'%s': rc %d, want %d", c->s, rc, c->rc);
        if (rc == 0) {
            assert_int_equal(cfg.nhidden, c->n);
            assert_int_equal(cfg.hidden[0], c->h0);
            assert_int_equal(cfg.hidden[c->n - 1], c->hlast);
        }
    }
}

static void test_layout_784_256_128_10(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        uint32_t ndim, s0, s1;
        size_t offset;
    } want[] = {
        {"fc1.weight", 2, 256, 784, 0},
        {"fc1.bias", 1, 256, 0, 200704},
        {"fc2.weight", 2, 128, 256, 200960},
        {"fc2.bias", 1, 128, 0, 233728},
        {"fc3.weight", 2, 10, 128, 233856},
        {"fc3.bias", 1, 10, 0, 235136},
    };
    struct mdl_mlp_config back;
    struct mdl_trainer *t = new_mlp(784, "256,128", 10, NULL);
    const struct mdl_layout *lay = mdl_trainer_layout(t);
    assert_int_equal(lay->dim, 235146);
    assert_int_equal(lay->ntensors, 6);
    for (size_t i = 0; i < 6; i++) {
        const struct mdl_tensor_info *ti = &lay->tensors[i];
        assert_string_equal(ti->name, want[i].name);
        assert_int_equal(ti->ndim, want[i].ndim);
        assert_int_equal(ti->shape[0], want[i].s0);
        assert_int_equal(ti->offset, want[i].offset);
        assert_int_equal(ti->size, ti->ndim == 2
                                       ? (size_t)want[i].s0 * want[i].s1
                                       : want[i].s0);
        if (ti->ndim == 2)
            assert_int_equal(ti->shape[1], want[i].s1);
    }
    /* and back to the config */
    assert_int_equal(mdl_mlp_config_from_layout(lay, &back), FL_OK);
    assert_int_equal(back.input, 784);
    assert_int_equal(back.nhidden, 2);
    assert_int_equal(back.hidden[0], 256);
    assert_int_equal(back.hidden[1], 128);
    assert_int_equal(back.classes, 10);
    assert_true(mdl_layout_equal(lay, lay));
    mdl_trainer_destroy(&t);
    assert_null(t);
    mdl_trainer_destroy(&t);
}

static void test_config_from_bad_layouts(void **state)
{
    (void)state;
    struct mdl_trainer *t = new_mlp(6, "5,4", 3, NULL);
    const struct mdl_layout *good = mdl_trainer_layout(t);
    struct mdl_layout l;
    struct mdl_mlp_config c;
    l = *good;
    l.tensors[2].name[2] = '9'; /* fc9.weight */
    assert_int_equal(mdl_mlp_config_from_layout(&l, &c), FL_ERR_FORMAT);
    assert_false(mdl_layout_equal(&l, good));
    l = *good;
    l.tensors[2].shape[1] = 6; /* does not chain from fc1 (5) */
    l.tensors[2].size = 4 * 6;
    assert_int_equal(mdl_mlp_config_from_layout(&l, &c), FL_ERR_FORMAT);
    l = *good;
    l.dim += 1;
    assert_int_equal(mdl_mlp_config_from_layout(&l, &c), FL_ERR_FORMAT);
    assert_false(mdl_layout_equal(&l, good));
    l = *good;
    l.ntensors = 5;
    assert_int_equal(mdl_mlp_config_from_layout(&l, &c), FL_ERR_FORMAT);
    l = *good;
    l.tensors[3].offset += 1;
    assert_int_equal(mdl_mlp_config_from_layout(&l, &c), FL_ERR_FORMAT);
    assert_false(mdl_layout_equal(&l, good));
    mdl_trainer_destroy(&t);
}

static void test_new_mlp_rejects_bad_configs(void **state)
{
    (void)state;
    static const struct mdl_mlp_config bad[] = {
        {.input = 0, .classes = 10},
        {.input = 784, .classes = 1},
        {.input = 784, .classes = 257},
        {.input = 784, .classes = 10, .nhidden = MDL_MAX_HIDDEN + 1},
        {.input = 784, .classes = 10, .nhidden = 2, .hidden = {256, 0}},
        {.input = 1u << 20, .classes = 10, .nhidden = 1,
         .hidden = {1u << 20}},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(bad); i++) {
        struct mdl_trainer *t = NULL;
        assert_int_equal(mdl_trainer_new_mlp(&bad[i], &t),
                         FL_ERR_INVALID_ARG);
        assert_null(t);
    }
    {
        const struct mdl_mlp_config lin = {.input = 4, .classes = 2};
        struct mdl_trainer *t = NULL;
        assert_int_equal(mdl_trainer_new_mlp(&lin, &t), FL_OK); /* 0 hidden */
        assert_int_equal(mdl_trainer_layout(t)->dim, 10);
        mdl_trainer_destroy(&t);
    }
}

static void test_init_params(void **state)
{
    (void)state;
    struct mdl_trainer *t = new_mlp(784, "256,128", 10, NULL);
    const struct mdl_layout *lay = mdl_trainer_layout(t);
    float *a = params_new(t), *b = params_new(t);
    mdl_trainer_init_params(t, 7, a);
    mdl_trainer_init_params(t, 7, b);
    assert_memory_equal(a, b, lay->dim * sizeof(float));
    mdl_trainer_init_params(t, 8, b);
    assert_memory_not_equal(a, b, lay->dim * sizeof(float));
    for (size_t k = 0; k < lay->ntensors; k++) {
        const struct mdl_tensor_info *ti = &lay->tensors[k];
        const uint32_t fan_in = lay->tensors[k & ~(size_t)1].shape[1];
        const double bound = 1.0 / sqrt((double)fan_in);
        double mx = 0.0, mean = 0.0;
        for (size_t i = 0; i < ti->size; i++) {
            const double v = a[ti->offset + i];
            assert_true(fabs(v) <= bound);
            mx = fmax(mx, fabs(v));
            mean += v;
        }
        mean /= (double)ti->size;
        /* really spread over the range, centred (where there are enough
         * values for that to be certain) */
        if (ti->size >= 128) {
            assert_true(mx > 0.9 * bound);
            assert_true(fabs(mean) < 0.25 * bound);
        }
    }
    fl_free(a);
    fl_free(b);
    mdl_trainer_destroy(&t);
}

/* ---- the gradient check */

static void grad_check(const char *hidden, uint32_t in, uint32_t classes,
                       uint32_t n, uint32_t first, uint32_t count,
                       uint64_t seed)
{
    struct mdl_mlp_config cfg;
    struct mdl_trainer *t = new_mlp(in, hidden, classes, &cfg);
    const struct mdl_layout *lay = mdl_trainer_layout(t);
    struct mdl_dataset *d = random_data(n, in, classes, seed);
    float *p = params_new(t), *g = params_new(t);
    double *pd = malloc(lay->dim * sizeof(double)), loss = 0.0;
    size_t checked = 0;
    assert_non_null(pd);
    for (size_t i = 0; i < (size_t)n * in; i++) /* centred: fewer dead units */
        d->x[i] = 2.0f * d->x[i] - 1.0f;
    mdl_trainer_init_params(t, seed, p);
    for (size_t i = 0; i < lay->dim; i++) /* bigger weights, livelier net */
        p[i] *= 3.0f;
    for (size_t i = 0; i < lay->dim; i++)
        pd[i] = p[i];
    assert_int_equal(mdl_trainer_loss_grad(t, p, d, first, count, &loss, g),
                     FL_OK);
    const double ref = ref_loss(&cfg, lay, pd, d, first, count);
    assert_true(fabs(loss - ref) <= 1e-5 * fmax(1.0, fabs(ref)));
    for (size_t i = 0; i < lay->dim; i++) {
        const double eps = 1e-6, save = pd[i];
        pd[i] = save + eps;
        const double lp = ref_loss(&cfg, lay, pd, d, first, count);
        pd[i] = save - eps;
        const double lm = ref_loss(&cfg, lay, pd, d, first, count);
        pd[i] = save;
        const double num = (lp - lm) / (2 * eps), an = g[i];
        if (fabs(an - num) > 1e-4)
            fail_msg("coord %zu: analytic %.6g numeric %.6g", i, an, num);
        if (fabs(num) > 1e-3) {
            checked++;
            if (fabs(an - num) / fabs(num) > 1e-2)
                fail_msg("coord %zu: analytic %.6g numeric %.6g (rel)", i,
                         an, num);
        }
    }
    /* most coordinates carry a real gradient, so the check means something */
    if (checked <= lay->dim / 2)
        fail_msg("hidden '%s': only %zu of %zu coordinates checked",
                 hidden != NULL ? hidden : "", checked, lay->dim);
    free(pd);
    fl_free(p);
    fl_free(g);
    mdl_dataset_destroy(&d);
    mdl_trainer_destroy(&t);
}

static void test_gradient_check(void **state)
{
    (void)state;
    grad_check("5,4", 6, 3, 7, 0, 7, 1);   /* the 6-5-4-3 net */
    grad_check("5,4", 6, 3, 9, 2, 4, 2);   /* a slice of the data */
    grad_check("7", 6, 4, 12, 0, 12, 3);   /* one hidden layer */
    grad_check(NULL, 5, 3, 8, 1, 6, 4);    /* no hidden layer */
    grad_check("8,6,5", 6, 3, 10, 0, 10, 5);
    /* widths past the kernels' 16-float blocks, with tails */
    grad_check("20,33", 18, 17, 12, 0, 12, 6);
}

/* loss_grad over more rows than one internal chunk equals the
 * sample-weighted mean of the chunks computed separately. */
static void test_loss_grad_chunked_equals_parts(void **state)
{
    (void)state;
    struct mdl_trainer *t = new_mlp(6, "5", 3, NULL);
    const size_t dim = mdl_trainer_layout(t)->dim;
    struct mdl_dataset *d = random_data(2500, 6, 3, 11);
    float *p = params_new(t), *g = params_new(t), *gp = params_new(t);
    double *acc = calloc(dim, sizeof(double)), loss = 0, lp = 0, lsum = 0;
    const uint32_t cut[] = {0, 700, 1900, 2500};
    assert_non_null(acc);
    mdl_trainer_init_params(t, 2, p);
    assert_int_equal(mdl_trainer_loss_grad(t, p, d, 0, 2500, &loss, g),
                     FL_OK);
    for (int k = 0; k < 3; k++) {
        const uint32_t cnt = cut[k + 1] - cut[k];
        assert_int_equal(mdl_trainer_loss_grad(t, p, d, cut[k], cnt, &lp,
                                               gp), FL_OK);
        lsum += lp * cnt;
        for (size_t i = 0; i < dim; i++)
            acc[i] += (double)gp[i] * cnt;
    }
    assert_true(fabs(loss - lsum / 2500) < 1e-6);
    for (size_t i = 0; i < dim; i++)
        assert_true(fabs(g[i] - acc[i] / 2500) < 1e-5);
    free(acc);
    fl_free(p);
    fl_free(g);
    fl_free(gp);
    mdl_dataset_destroy(&d);
    mdl_trainer_destroy(&t);
}

/* ---- training */

/* Full-batch steps make SGD deterministic in closed form: with v = mu v + g
 * and w -= lr v (PyTorch), two steps give
 *   w1 = w0 - lr g(w0),  w2 = w1 - lr (mu g(w0) + g(w1)).
 * The update must be w2 - w0, and a second call must not see the first
 * call's velocity. */
static void test_momentum_semantics_and_update(void **state)
{
    (void)state;
    struct mdl_trainer *t = new_mlp(6, "5,4", 3, NULL);
    const size_t dim = mdl_trainer_layout(t)->dim;
    struct mdl_dataset *d = random_data(16, 6, 3, 21);
    float *w0 = params_new(t), *w1 = params_new(t), *g0 = params_new(t),
          *g1 = params_new(t), *u = params_new(t), *u2 = params_new(t);
    const float lr = 0.1f, mu = 0.9f;
    struct mdl_train_config tc = {.local_steps = 2, .batch_size = 16,
                                  .lr = lr, .momentum = mu, .seed = 3};
    struct mdl_train_result res;
    double l0 = 0, l1 = 0;
    mdl_trainer_init_params(t, 5, w0);
    assert_int_equal(mdl_trainer_loss_grad(t, w0, d, 0, 16, &l0, g0), FL_OK);
    for (size_t i = 0; i < dim; i++)
        w1[i] = w0[i] - lr * g0[i];
    assert_int_equal(mdl_trainer_loss_grad(t, w1, d, 0, 16, &l1, g1), FL_OK);
    assert_int_equal(mdl_trainer_train(t, w0, d, &tc, u, &res), FL_OK);
    assert_int_equal(res.steps, 2);
    assert_int_equal(res.samples_seen, 32);
    assert_true(fabs(res.loss - (l0 + l1) / 2) < 1e-5);
    for (size_t i = 0; i < dim; i++) {
        const double want = -(double)lr * g0[i] -
                            (double)lr * ((double)mu * g0[i] + g1[i]);
        assert_true(fabs(u[i] - want) < 1e-5);
    }
    /* the velocity is zeroed at the start of every call */
    assert_int_equal(mdl_trainer_train(t, w0, d, &tc, u2, &res), FL_OK);
    assert_memory_equal(u, u2, dim * sizeof(float));
    /* one step without momentum is plain gradient descent */
    tc.local_steps = 1;
    tc.momentum = 0.0f;
    assert_int_equal(mdl_trainer_train(t, w0, d, &tc, u, &res), FL_OK);
    for (size_t i = 0; i < dim; i++)
        assert_true(fabs(u[i] + lr * g0[i]) < 1e-6);
    fl_free(w0);
    fl_free(w1);
    fl_free(g0);
    fl_free(g1);
    fl_free(u);
    fl_free(u2);
    mdl_dataset_destroy(&d);
    mdl_trainer_destroy(&t);
}

static void test_loss_falls_on_separable_set(void **state)
{
    (void)state;
    struct mdl_trainer *t = new_mlp(8, "16", 4, NULL);
    const size_t dim = mdl_trainer_layout(t)->dim;
    struct mdl_dataset *d = separable_data(200, 4, 31);
    float *w = params_new(t), *u = params_new(t);
    const struct mdl_train_config tc = {.local_epochs = 20, .batch_size = 10,
                                        .lr = 0.05f, .momentum = 0.9f,
                                        .seed = 4};
    struct mdl_train_result res;
    struct mdl_eval_result before, after;
    mdl_trainer_init_params(t, 1, w);
    assert_int_equal(mdl_trainer_evaluate(t, w, d, &before), FL_OK);
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res), FL_OK);
    assert_int_equal(res.steps, 20 * 20);
    assert_int_equal(res.samples_seen, 20 * 200);
    for (size_t i = 0; i < dim; i++)
        w[i] += u[i];
    assert_int_equal(mdl_trainer_evaluate(t, w, d, &after), FL_OK);
    assert_true(after.loss < 0.1 * before.loss);
    assert_true(after.accuracy >= 0.99);
    assert_true(before.accuracy < 0.6);
    assert_int_equal(after.n, 200);
    fl_free(w);
    fl_free(u);
    mdl_dataset_destroy(&d);
    mdl_trainer_destroy(&t);
}

static void test_steps_and_partial_batches(void **state)
{
    (void)state;
    struct mdl_trainer *t = new_mlp(6, "5", 3, NULL);
    struct mdl_dataset *d = random_data(23, 6, 3, 8);
    float *w = params_new(t), *u = params_new(t);
    struct mdl_train_config tc = {.local_epochs = 3, .batch_size = 5,
                                  .lr = 0.01f, .momentum = 0.5f, .seed = 1};
    struct mdl_train_result res;
    mdl_trainer_init_params(t, 1, w);
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res), FL_OK);
    assert_int_equal(res.steps, 3 * 5); /* ceil(23 / 5) per epoch */
    assert_int_equal(res.samples_seen, 3 * 23);
    tc.local_steps = 7; /* overrides epochs */
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res), FL_OK);
    assert_int_equal(res.steps, 7);
    assert_int_equal(res.samples_seen, 5 * 4 + 3 + 5 * 2);
    tc.batch_size = 100; /* larger than the data: whole set per step */
    tc.local_steps = 2;
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res), FL_OK);
    assert_int_equal(res.samples_seen, 46);
    fl_free(w);
    fl_free(u);
    mdl_dataset_destroy(&d);
    mdl_trainer_destroy(&t);
}

static void test_deterministic_per_seed(void **state)
{
    (void)state;
    struct mdl_trainer *a = new_mlp(6, "5,4", 3, NULL);
    struct mdl_trainer *b = new_mlp(6, "5,4", 3, NULL);
    const size_t dim = mdl_trainer_layout(a)->dim;
    struct mdl_dataset *d = random_data(50, 6, 3, 2);
    float *w = params_new(a), *ua = params_new(a), *ub = params_new(b);
    struct mdl_train_config tc = {.local_epochs = 2, .batch_size = 8,
                                  .lr = 0.05f, .momentum = 0.9f, .seed = 99};
    struct mdl_train_result ra, rb;
    mdl_trainer_init_params(a, 3, w);
    assert_int_equal(mdl_trainer_train(a, w, d, &tc, ua, &ra), FL_OK);
    assert_int_equal(mdl_trainer_train(b, w, d, &tc, ub, &rb), FL_OK);
    assert_memory_equal(ua, ub, dim * sizeof(float));
    assert_true(ra.loss == rb.loss);
    tc.seed = 100; /* another batch order */
    assert_int_equal(mdl_trainer_train(b, w, d, &tc, ub, &rb), FL_OK);
    assert_memory_not_equal(ua, ub, dim * sizeof(float));
    fl_free(w);
    fl_free(ua);
    fl_free(ub);
    mdl_dataset_destroy(&d);
    mdl_trainer_destroy(&a);
    mdl_trainer_destroy(&b);
}

/* evaluate: accuracy in [0, 1], finite loss, chunking invisible. */
static void test_evaluate(void **state)
{
    (void)state;
    struct mdl_trainer *t = new_mlp(6, "5", 3, NULL);
    struct mdl_dataset *d = random_data(2300, 6, 3, 4);
    float *w = params_new(t);
    struct mdl_eval_result all, part;
    double lsum = 0, csum = 0;
    mdl_trainer_init_params(t, 9, w);
    assert_int_equal(mdl_trainer_evaluate(t, w, d, &all), FL_OK);
    assert_int_equal(all.n, 2300);
    assert_true(all.accuracy >= 0.0 && all.accuracy <= 1.0);
    assert_true(isfinite(all.loss) && all.loss > 0.0);
    /* the first 1300 and the last 1000 separately */
    mdl_dataset_truncate(d, 1300);
    assert_int_equal(mdl_trainer_evaluate(t, w, d, &part), FL_OK);
    lsum += part.loss * 1300;
    csum += part.accuracy * 1300;
    d->n = 2300; /* restore (truncate keeps the memory) and shift */
    {
        struct mdl_dataset tail = *d;
        tail.n = 1000;
        tail.x = d->x + (size_t)1300 * 6;
        tail.y = d->y + 1300;
        assert_int_equal(mdl_trainer_evaluate(t, w, &tail, &part), FL_OK);
    }
    lsum += part.loss * 1000;
    csum += part.accuracy * 1000;
    assert_true(fabs(all.loss - lsum / 2300) < 1e-6);
    assert_true(fabs(all.accuracy - csum / 2300) < 1e-9);
    fl_free(w);
    mdl_dataset_destroy(&d);
    mdl_trainer_destroy(&t);
}

static void test_counters(void **state)
{
    (void)state;
    struct mdl_trainer *t = new_mlp(6, "5,4", 3, NULL); /* L = 3 layers */
    struct mdl_dataset *d = random_data(10, 6, 3, 4);
    float *w = params_new(t), *u = params_new(t);
    const struct mdl_train_config tc = {.local_steps = 4, .batch_size = 10,
                                        .lr = 0.01f, .seed = 1};
    struct mdl_train_result res;
    struct mdl_trainer_counters c;
    mdl_trainer_init_params(t, 1, w);
    mdl_trainer_get_counters(t, &c);
    assert_int_equal(c.sgemm_calls, 0);
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res), FL_OK);
    mdl_trainer_get_counters(t, &c);
    assert_int_equal(c.sgemm_calls, 4 * (3 + 5)); /* L fwd + 2L-1 bwd */
    /* flops: 3 products per layer except the input gradient of fc1 */
    assert_int_equal(c.sgemm_flops,
                     4 * 2ull * 10 * (3 * (5 * 4 + 4 * 3) + 2 * 6 * 5));
    fl_free(w);
    fl_free(u);
    mdl_dataset_destroy(&d);
    mdl_trainer_destroy(&t);
}

/* ---- errors */

static void test_invalid_arguments(void **state)
{
    (void)state;
    struct mdl_trainer *t = new_mlp(6, "5", 3, NULL);
    struct mdl_dataset *d = random_data(10, 6, 3, 4);
    float *w = params_new(t), *u = params_new(t);
    struct mdl_train_config tc = {.local_epochs = 1, .batch_size = 4,
                                  .lr = 0.01f, .seed = 1};
    struct mdl_train_result res;
    struct mdl_eval_result ev;
    double loss;
    mdl_trainer_init_params(t, 1, w);
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res), FL_OK);
    tc.batch_size = 0;
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res),
                     FL_ERR_INVALID_ARG);
    tc.batch_size = 4;
    tc.lr = NAN;
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res),
                     FL_ERR_INVALID_ARG);
    tc.lr = 0.01f;
    tc.local_epochs = 0;
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res),
                     FL_ERR_INVALID_ARG);
    tc.local_epochs = 1;
    d->y[3] = 3; /* label >= classes */
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(mdl_trainer_evaluate(t, w, d, &ev), FL_ERR_INVALID_ARG);
    d->y[3] = 2;
    d->dim = 7; /* not the model's input */
    assert_int_equal(mdl_trainer_evaluate(t, w, d, &ev), FL_ERR_INVALID_ARG);
    d->dim = 6;
    d->n = 0;
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(mdl_trainer_evaluate(t, w, d, &ev), FL_ERR_INVALID_ARG);
    d->n = 10;
    assert_int_equal(mdl_trainer_loss_grad(t, w, d, 8, 3, &loss, u),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(mdl_trainer_loss_grad(t, w, d, 0, 0, &loss, u),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(mdl_trainer_loss_grad(t, w, d, 8, 2, &loss, u), FL_OK);
    assert_int_equal(mdl_trainer_train(t, w, NULL, &tc, u, &res),
                     FL_ERR_INVALID_ARG);
    fl_free(w);
    fl_free(u);
    mdl_dataset_destroy(&d);
    mdl_trainer_destroy(&t);
}

static void test_divergence_reported(void **state)
{
    (void)state;
    struct mdl_trainer *t = new_mlp(6, "5", 3, NULL);
    struct mdl_dataset *d = random_data(20, 6, 3, 4);
    float *w = params_new(t), *u = params_new(t);
    const struct mdl_train_config tc = {.local_epochs = 5, .batch_size = 4,
                                        .lr = 1e30f, .momentum = 0.9f,
                                        .seed = 1};
    struct mdl_train_result res;
    mdl_trainer_init_params(t, 1, w);
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res),
                     FL_ERR_NONFINITE);
    fl_free(w);
    fl_free(u);
    mdl_dataset_destroy(&d);
    mdl_trainer_destroy(&t);
}

/* Construction and scratch growth under allocation failure: FL_ERR_NOMEM,
 * nothing leaked (ASan), and a trainer whose growth failed still works. */
static void test_alloc_torture(void **state)
{
    (void)state;
    const struct mdl_mlp_config cfg = {.input = 6, .nhidden = 2,
                                       .hidden = {5, 4}, .classes = 3};
    struct mdl_dataset *d = random_data(40, 6, 3, 4);
    struct mdl_trainer *t = NULL;
    float *w = NULL, *u = NULL;
    struct mdl_train_config tc = {.local_epochs = 1, .batch_size = 8,
                                  .lr = 0.01f, .seed = 1};
    struct mdl_train_result res;
    struct mdl_eval_result ev;
    long k;
    for (k = 0; k < 20; k++) {
        fl_alloc_fail_after(k);
        const enum fl_err rc = mdl_trainer_new_mlp(&cfg, &t);
        fl_alloc_fail_reset();
        if (rc == FL_OK)
            break;
        assert_int_equal(rc, FL_ERR_NOMEM);
        assert_null(t);
    }
    assert_true(k > 0 && k < 20);
    w = params_new(t);
    u = params_new(t);
    mdl_trainer_init_params(t, 1, w);
    for (k = 0; k < 10; k++) {
        fl_alloc_fail_after(k);
        const enum fl_err rc = mdl_trainer_train(t, w, d, &tc, u, &res);
        fl_alloc_fail_reset();
        if (rc == FL_OK)
            break;
        assert_int_equal(rc, FL_ERR_NOMEM);
    }
    assert_true(k > 0 && k < 10);
    fl_alloc_fail_after(0); /* evaluate needs bigger scratch: 40 rows */
    assert_int_equal(mdl_trainer_evaluate(t, w, d, &ev), FL_ERR_NOMEM);
    fl_alloc_fail_reset();
    assert_int_equal(mdl_trainer_evaluate(t, w, d, &ev), FL_OK);
    tc.batch_size = 4; /* smaller batch: scratch already there */
    fl_alloc_fail_after(0);
    assert_int_equal(mdl_trainer_train(t, w, d, &tc, u, &res), FL_OK);
    fl_alloc_fail_reset();
    fl_free(w);
    fl_free(u);
    mdl_dataset_destroy(&d);
    mdl_trainer_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_hidden_table),
        cmocka_unit_test(test_layout_784_256_128_10),
        cmocka_unit_test(test_config_from_bad_layouts),
        cmocka_unit_test(test_new_mlp_rejects_bad_configs),
        cmocka_unit_test(test_init_params),
        cmocka_unit_test(test_gradient_check),
        cmocka_unit_test(test_loss_grad_chunked_equals_parts),
        cmocka_unit_test(test_momentum_semantics_and_update),
        cmocka_unit_test(test_loss_falls_on_separable_set),
        cmocka_unit_test(test_steps_and_partial_batches),
        cmocka_unit_test(test_deterministic_per_seed),
        cmocka_unit_test(test_evaluate),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_divergence_reported),
        cmocka_unit_test(test_alloc_torture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
