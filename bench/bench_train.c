/*
 * bench_train.c - `fedcomp-bench train`.
 *
 * One local epoch of mdl_trainer_train on a shard (default: the first 3,750
 * Fashion-MNIST training images, batch 32, lr 0.05, momentum 0.9, one BLAS
 * thread) against its own floor: the same sequence of cblas_sgemm calls -
 * same shapes, transposes, betas and count - on preallocated buffers, with
 * nothing else. The ratio is the trainer's overhead over pure BLAS (bias,
 * ReLU, softmax, batch gathering, the SGD update); target <= 1.4.
 *
 * Each side runs once untimed (page faults, scratch growth), then --repeat
 * times interleaved; the best time of each is reported. The trainer's own
 * sgemm counters are compared with the baseline's, so the baseline cannot
 * silently drift from what the trainer does.
 */
#include "bench/bench_train.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench_util.h"
#include "common/fl_alloc.h"
#include "common/fl_util.h"
#include "model/mdl_data.h"
#include "model/mdl_trainer.h"

#define BT_MAX_LAYERS (MDL_MAX_HIDDEN + 1)
#define BT_LR 0.05f
#define BT_MOMENTUM 0.9f
#define BT_SEED 1

struct bt_opts {
    uint32_t shard;
    uint32_t batch;
    uint32_t repeat;
    int json;
    const char *data_dir;
    struct mdl_mlp_config mlp;
};

/* The baseline's buffers: the trainer's matrices, filled with noise. */
struct bt_base {
    uint32_t nlayers;
    uint32_t size[BT_MAX_LAYERS + 1];
    size_t woff[BT_MAX_LAYERS];
    float *x;                        /* batch x size[0] */
    float *act[BT_MAX_LAYERS + 1];   /* batch x size[l], l >= 1 */
    float *delta[BT_MAX_LAYERS + 1];
    float *w, *g;                    /* dim */
    float *mem;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fedcomp-bench train [--shard N] [--batch N] "
            "[--hidden LIST] [--repeat N]\n"
            "                           [--data-dir DIR] [--json]\n"
            "Times one epoch of the MLP trainer on the first N training "
            "images (default\n3750; random data when the dataset is "
            "missing) against the same cblas_sgemm\ncalls alone. Defaults: "
            "--batch 32 --hidden 256,128 --repeat 3, lr 0.05,\nmomentum "
            "0.9, one BLAS thread. Target: epoch / sgemm-only <= 1.4.\n");
}

static int parse_u32(const char *opt, const char *s, uint32_t max,
                     uint32_t *out)
{
    uint64_t v = 0;
    if (fl_parse_u64(s, 1, max, &v) != FL_OK) {
        fprintf(stderr, "fedcomp-bench train: bad value '%s' for %s\n",
                s != NULL ? s : "", opt);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* 0 ok, 1 help shown, 2 usage error */
static int parse_args(int argc, char **argv, struct bt_opts *o)
{
    o->shard = 3750;
    o->batch = 32;
    o->repeat = 3;
    o->data_dir = MDL_DEFAULT_DATA_DIR;
    o->mlp.input = 784;
    o->mlp.classes = 10;
    (void)mdl_mlp_parse_hidden("256,128", &o->mlp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        } else if (v == NULL) {
            fprintf(stderr, "fedcomp-bench train: unknown option or missing "
                    "value: '%s'\n", a);
            bad = 1;
        } else if (strcmp(a, "--shard") == 0) {
            bad = parse_u32(a, v, 60000000, &o->shard);
        } else if (strcmp(a, "--batch") == 0) {
            bad = parse_u32(a, v, 65536, &o->batch);
        } else if (strcmp(a, "--repeat") == 0) {
            bad = parse_u32(a, v, 1000, &o->repeat);
        } else if (strcmp(a, "--data-dir") == 0) {
            o->data_dir = v;
        } else if (strcmp(a, "--hidden") == 0) {
            bad = mdl_mlp_parse_hidden(v, &o->mlp);
            if (bad)
                fprintf(stderr, "fedcomp-bench train: bad --hidden '%s' "
                        "(want e.g. 256,128)\n", v);
        } else {
            fprintf(stderr, "fedcomp-bench train: unknown option '%s'\n", a);
            bad = 1;
        }
        if (bad) {
            usage(stderr);
            return 2;
        }
        i++;
    }
    return 0;
}

static void fill_noise(float *p, size_t n, struct fl_rng *rng, float scale)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(fl_rng_uniform(rng) - 0.5) * scale;
}

/* First `shard` training images, or random data when the files are
 * missing (*synthetic = 1). */
static enum fl_err load_shard(const struct bt_opts *o,
                              struct mdl_dataset **out, int *synthetic,
                              char *err, size_t errlen)
{
    enum fl_err rc = FL_OK;
    struct mdl_dataset *ds = NULL;
    struct fl_rng rng;
    uint32_t *keep = fl_malloc((size_t)o->shard * sizeof(*keep));
    if (keep == NULL)
        return FL_ERR_NOMEM;
    for (uint32_t i = 0; i < o->shard; i++)
        keep[i] = i;
    rc = mdl_dataset_load(o->data_dir, "train", keep, o->shard, out, err,
                          errlen);
    fl_free(keep);
    *synthetic = rc == FL_ERR_NOT_FOUND;
    if (rc != FL_ERR_NOT_FOUND)
        return rc;
    ds = fl_calloc(1, sizeof(*ds));
    if (ds == NULL)
        return FL_ERR_NOMEM;
    ds->n = o->shard;
    ds->dim = o->mlp.input;
    ds->nclasses = o->mlp.classes;
    ds->x = fl_malloc((size_t)ds->n * ds->dim * sizeof(float));
    ds->y = fl_malloc(ds->n);
    if (ds->x == NULL || ds->y == NULL) {
        mdl_dataset_destroy(&ds);
        return FL_ERR_NOMEM;
    }
    fl_rng_seed(&rng, BT_SEED);
    for (size_t i = 0; i < (size_t)ds->n * ds->dim; i++)
        ds->x[i] = (float)fl_rng_uniform(&rng);
    for (uint32_t i = 0; i < ds->n; i++)
        ds->y[i] = (uint8_t)fl_rng_below(&rng, o->mlp.classes);
    *out = ds;
    return FL_OK;
}

static enum fl_err base_init(struct bt_base *b, const struct bt_opts *o,
                             const struct mdl_layout *lay)
{
    struct fl_rng rng;
    size_t total = 2 * lay->dim;
    const uint32_t rows = FL_MIN(o->batch, o->shard);
    float *p;
    b->nlayers = o->mlp.nhidden + 1;
    b->size[0] = o->mlp.input;
    for (uint32_t l = 0; l < o->mlp.nhidden; l++)
        b->size[l + 1] = o->mlp.hidden[l];
    b->size[b->nlayers] = o->mlp.classes;
    total += (size_t)rows * b->size[0];
    for (uint32_t l = 1; l <= b->nlayers; l++)
        total += 2 * (size_t)rows * b->size[l];
    b->mem = fl_malloc(total * sizeof(float));
    if (b->mem == NULL)
        return FL_ERR_NOMEM;
    fl_rng_seed(&rng, BT_SEED);
    fill_noise(b->mem, total, &rng, 0.1f);
    p = b->mem;
    b->w = p;
    p += lay->dim;
    b->g = p;
    p += lay->dim;
    b->x = p;
    p += (size_t)rows * b->size[0];
    for (uint32_t l = 1; l <= b->nlayers; l++) {
        b->act[l] = p;
        p += (size_t)rows * b->size[l];
        b->delta[l] = p;
        p += (size_t)rows * b->size[l];
    }
    for (uint32_t l = 0; l < b->nlayers; l++)
        b->woff[l] = lay->tensors[2 * l].offset;
    return FL_OK;
}

static void base_mm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
                    uint32_t m, uint32_t n, uint32_t k, const float *a,
                    uint32_t lda, const float *bm, uint32_t ldb, float beta,
                    float *c, struct mdl_trainer_counters *cnt)
{
    cblas_sgemm(CblasRowMajor, ta, tb, (blasint)m, (blasint)n, (blasint)k,
                1.0f, a, (blasint)lda, bm, (blasint)ldb, beta, c, (blasint)n);
    cnt->sgemm_calls++;
    cnt->sgemm_flops += 2ull * m * n * k;
}

/* The sgemm calls of one epoch of the trainer (mdl_mlp.c), nothing else. */
static void base_epoch(const struct bt_base *b, uint32_t n, uint32_t batch,
                       struct mdl_trainer_counters *cnt)
{
    for (uint32_t pos = 0; pos < n; pos += batch) {
        const uint32_t rows = FL_MIN(batch, n - pos);
        const float *in = b->x;
        for (uint32_t l = 0; l < b->nlayers; l++) {
            base_mm(CblasNoTrans, CblasTrans, rows, b->size[l + 1],
                    b->size[l], in, b->size[l], b->w + b->woff[l],
                    b->size[l], 0.0f, b->act[l + 1], cnt);
            in = b->act[l + 1];
        }
        for (uint32_t l = b->nlayers; l-- > 0;) {
            const uint32_t fin = b->size[l], fout = b->size[l + 1];
            base_mm(CblasTrans, CblasNoTrans, fout, fin, rows,
                    b->delta[l + 1], fout, l == 0 ? b->x : b->act[l], fin,
                    BT_MOMENTUM, b->g + b->woff[l], cnt);
            if (l > 0)
                base_mm(CblasNoTrans, CblasNoTrans, rows, fin, fout,
                        b->delta[l + 1], fout, b->w + b->woff[l], fin, 0.0f,
                        b->delta[l], cnt);
        }
    }
}

struct bt_result {
    double epoch_ms, sgemm_ms;
    struct mdl_trainer_counters tr, base;
    double loss;
};

static enum fl_err run_bench(const struct bt_opts *o,
                             const struct mdl_dataset *ds,
                             struct bt_result *r)
{
    struct mdl_trainer *t = NULL;
    struct bt_base b = {0};
    float *w0 = NULL, *upd = NULL;
    const struct mdl_train_config tc = {
        .local_epochs = 1, .batch_size = o->batch, .lr = BT_LR,
        .momentum = BT_MOMENTUM, .seed = BT_SEED};
    enum fl_err rc = mdl_trainer_new_mlp(&o->mlp, &t);
    if (rc)
        return rc;
    const struct mdl_layout *lay = mdl_trainer_layout(t);
    w0 = fl_malloc(lay->dim * sizeof(float));
    upd = fl_malloc(lay->dim * sizeof(float));
    rc = w0 == NULL || upd == NULL ? FL_ERR_NOMEM : base_init(&b, o, lay);
    if (rc)
        goto out;
    mdl_trainer_init_params(t, BT_SEED, w0);
    r->epoch_ms = r->sgemm_ms = 1e300;
    for (uint32_t rep = 0; rep <= o->repeat; rep++) { /* rep 0: warm-up */
        struct mdl_train_result res;
        struct mdl_trainer_counters c0, c1, cb = {0};
        mdl_trainer_get_counters(t, &c0);
        uint64_t t0 = fl_now_ns();
        rc = mdl_trainer_train(t, w0, ds, &tc, upd, &res);
        const double ems = (double)(fl_now_ns() - t0) / 1e6;
        if (rc)
            goto out;
        mdl_trainer_get_counters(t, &c1);
        t0 = fl_now_ns();
        base_epoch(&b, ds->n, FL_MIN(o->batch, ds->n), &cb);
        const double sms = (double)(fl_now_ns() - t0) / 1e6;
        bench_sink(b.g[0] + upd[0]);
        r->tr.sgemm_calls = c1.sgemm_calls - c0.sgemm_calls;
        r->tr.sgemm_flops = c1.sgemm_flops - c0.sgemm_flops;
        r->base = cb;
        r->loss = res.loss;
        if (rep > 0) {
            r->epoch_ms = FL_MIN(r->epoch_ms, ems);
            r->sgemm_ms = FL_MIN(r->sgemm_ms, sms);
        }
    }
out:
    fl_free(b.mem);
    fl_free(upd);
    fl_free(w0);
    mdl_trainer_destroy(&t);
    return rc;
}

static void arch_string(const struct mdl_mlp_config *c, char *buf,
                        size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "%u", c->input);
    for (uint32_t l = 0; l <= c->nhidden && used < len; l++)
        used += (size_t)snprintf(buf + used, len - used, "-%u",
                                 l < c->nhidden ? c->hidden[l] : c->classes);
}

static void report(const struct bt_opts *o, const struct mdl_dataset *ds,
                   int synthetic, const struct bt_result *r)
{
    char arch[128];
    const double ratio = r->epoch_ms / r->sgemm_ms;
    const uint32_t steps = (ds->n + o->batch - 1) / o->batch;
    const double gflops = (double)r->base.sgemm_flops / (r->sgemm_ms * 1e6);
    arch_string(&o->mlp, arch, sizeof(arch));
    if (o->json) {
        printf("{\"bench\":\"train\",\"model\":\"%s\",\"shard\":%u,"
               "\"data\":\"%s\",\"batch\":%u,\"steps\":%u,\"repeat\":%u,"
               "\"sgemm_calls\":%llu,\"epoch_ms\":%.3f,\"sgemm_ms\":%.3f,"
               "\"ratio\":%.4f,\"target\":1.4,\"meets_target\":%s,"
               "\"sgemm_gflops\":%.2f,\"train_loss\":%.4f}\n",
               arch, ds->n, synthetic ? "random" : "fashion-mnist", o->batch,
               steps, o->repeat, (unsigned long long)r->base.sgemm_calls,
               r->epoch_ms, r->sgemm_ms, ratio,
               ratio <= 1.4 ? "true" : "false", gflops, r->loss);
        return;
    }
    printf("fedcomp-bench train: MLP %s, shard %u (%s), batch %u, %u steps, "
           "lr %.2f, momentum %.1f, 1 BLAS thread\n",
           arch, ds->n,
           synthetic ? "RANDOM data: dataset not found" :
                       "fashion-mnist train",
           o->batch, steps, (double)BT_LR, (double)BT_MOMENTUM);
    printf("  epoch (mdl_trainer_train)      %9.2f ms   best of %u\n",
           r->epoch_ms, o->repeat);
    printf("  sgemm only (same %llu calls)   %9.2f ms   %.1f GFLOP/s\n",
           (unsigned long long)r->base.sgemm_calls, r->sgemm_ms, gflops);
    printf("  ratio epoch / sgemm-only       %9.3f      target <= 1.40: %s\n",
           ratio, ratio <= 1.4 ? "ok" : "OVER");
}

int bench_train_run(int argc, char **argv)
{
    struct bt_opts o = {0};
    struct bt_result r = {0};
    struct mdl_dataset *ds = NULL;
    char err[512] = "";
    int synthetic = 0, code = 0;
    enum fl_err rc;
    const int pa = parse_args(argc, argv, &o);
    if (pa != 0)
        return pa == 1 ? 0 : 2;
    mdl_blas_single_thread();
    rc = load_shard(&o, &ds, &synthetic, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "fedcomp-bench train: cannot load data: %s\n",
                err[0] != '\0' ? err : fl_strerror(rc));
        return 1;
    }
    rc = run_bench(&o, ds, &r);
    if (rc) {
        fprintf(stderr, "fedcomp-bench train: %s\n", fl_strerror(rc));
        code = 1;
    } else if (r.tr.sgemm_calls != r.base.sgemm_calls ||
               r.tr.sgemm_flops != r.base.sgemm_flops) {
        fprintf(stderr, "fedcomp-bench train: baseline does not match the "
                "trainer (%llu vs %llu sgemm calls)\n",
                (unsigned long long)r.base.sgemm_calls,
                (unsigned long long)r.tr.sgemm_calls);
        code = 1;
    } else {
        report(&o, ds, synthetic, &r);
    }
    mdl_dataset_destroy(&ds);
    return code;
}
