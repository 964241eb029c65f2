/*
 * fedcomp-eval: evaluate a saved model file (docs/model-format.md) on the
 * Fashion-MNIST test set (t10k, 10,000 images) and print loss and accuracy.
 *
 * The architecture comes from the file's layout (fc1.weight ... fcL.bias),
 * so any MLP the coordinator saved can be evaluated without flags.
 * Exit codes: 0 ok, 1 runtime error (file, data, memory), 2 usage.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "model/mdl_data.h"
#include "model/mdl_file.h"
#include "model/mdl_trainer.h"

#define EVAL_VERSION "0.1.0"
#define EVAL_MAX_DIM ((size_t)1 << 30) /* the MLP's own limit */

struct eval_opts {
    const char *model;
    const char *data_dir;
    uint32_t limit;        /* 0: all */
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fedcomp-eval MODEL [--data-dir DIR] [--limit N]\n"
            "\n"
            "Evaluate a saved fedcomp model file on the Fashion-MNIST test "
            "set\n(t10k, 10,000 images) and print its loss and accuracy.\n"
            "\n"
            "  --data-dir DIR  directory of the IDX files (default %s)\n"
            "  --limit N       evaluate only the first N test images\n"
            "  --help          show this help\n"
            "  --version       show the version\n"
            "\n"
            "Exit status: 0 ok, 1 runtime error, 2 usage error.\n",
            MDL_DEFAULT_DATA_DIR);
}

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fedcomp-eval: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'fedcomp-eval --help'.\n");
    va_end(ap);
    return 2;
}

/* -1: parsed, go on; else the exit code */
static int parse_args(int argc, char **argv, struct eval_opts *o)
{
    o->data_dir = MDL_DEFAULT_DATA_DIR;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("fedcomp-eval " EVAL_VERSION "\n");
            return 0;
        }
        if (strcmp(a, "--data-dir") == 0 || strcmp(a, "--limit") == 0) {
            uint64_t v = 0;
            if (i + 1 >= argc)
                return usage_error("option '%s' needs a value", a);
            if (a[2] == 'd') {
                o->data_dir = argv[++i];
                continue;
            }
            if (fl_parse_u64(argv[++i], 1, UINT32_MAX, &v) != FL_OK)
                return usage_error("--limit wants a positive number, not "
                                   "'%s'", argv[i]);
            o->limit = (uint32_t)v;
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage_error("unknown option '%s'", a);
        } else if (o->model != NULL) {
            return usage_error("one model file only ('%s' is extra)", a);
        } else {
            o->model = a;
        }
    }
    if (o->model == NULL)
        return usage_error("no model file given");
    return -1;
}

static void arch_string(const struct mdl_mlp_config *c, char *buf,
                        size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "%u", c->input);
    for (uint32_t l = 0; l <= c->nhidden && used < len; l++)
        used += (size_t)snprintf(buf + used, len - used, "-%u",
                                 l < c->nhidden ? c->hidden[l] : c->classes);
}

/* The loaded model's trainer: rebuild the MLP and check the layout. */
static enum fl_err model_trainer(const struct eval_opts *o,
                                 const struct mdl_layout *lay,
                                 struct mdl_trainer **t,
                                 struct mdl_mlp_config *mc)
{
    enum fl_err rc = mdl_mlp_config_from_layout(lay, mc);
    if (rc) {
        fprintf(stderr, "fedcomp-eval: '%s': not an MLP layout this "
                "program knows (%s)\n", o->model, fl_strerror(rc));
        return rc;
    }
    rc = mdl_trainer_new_mlp(mc, t);
    if (rc == FL_OK && !mdl_layout_equal(mdl_trainer_layout(*t), lay))
        rc = FL_ERR_FORMAT;
    if (rc)
        fprintf(stderr, "fedcomp-eval: '%s': cannot build its model: %s\n",
                o->model, fl_strerror(rc));
    return rc;
}

static int run(const struct eval_opts *o)
{
    struct mdl_layout lay;
    struct mdl_mlp_config mc;
    struct mdl_trainer *t = NULL;
    struct mdl_dataset *test = NULL;
    struct mdl_eval_result ev;
    float *params = NULL;
    uint64_t round = 0;
    char err[512] = "", arch[160];
    enum fl_err rc = mdl_file_load(o->model, EVAL_MAX_DIM, &lay, &params,
                                   &round, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "fedcomp-eval: cannot load model: %s\n",
                err[0] != '\0' ? err : fl_strerror(rc));
        goto out;
    }
    rc = model_trainer(o, &lay, &t, &mc);
    if (rc)
        goto out;
    rc = mdl_dataset_load(o->data_dir, "t10k", NULL, 0, &test, err,
                          sizeof(err));
    if (rc) {
        fprintf(stderr, "fedcomp-eval: cannot load the test set: %s\n",
                err[0] != '\0' ? err : fl_strerror(rc));
        goto out;
    }
    if (o->limit > 0)
        mdl_dataset_truncate(test, o->limit);
    if (test->dim != mc.input) {
        fprintf(stderr, "fedcomp-eval: the model takes %u inputs but the "
                "test images have %u pixels\n", mc.input, test->dim);
        rc = FL_ERR_DATA;
        goto out;
    }
    mdl_blas_single_thread();
    rc = mdl_trainer_evaluate(t, params, test, &ev);
    if (rc) {
        fprintf(stderr, "fedcomp-eval: evaluation failed: %s\n",
                fl_strerror(rc));
        goto out;
    }
    arch_string(&mc, arch, sizeof(arch));
    printf("model '%s': round %llu, mlp %s (%zu parameters)\n", o->model,
           (unsigned long long)round, arch, lay.dim);
    printf("test: %u images, loss %.4f, accuracy %.4f (%.2f%%)\n", ev.n,
           ev.loss, ev.accuracy, 100.0 * ev.accuracy);
out:
    mdl_dataset_destroy(&test);
    mdl_trainer_destroy(&t);
    fl_free(params);
    return rc == FL_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct eval_opts o = {0};
    const int code = parse_args(argc, argv, &o);
    if (code >= 0)
        return code;
    return run(&o);
}
