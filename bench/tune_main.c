/*
 * tune_main.c - fedcomp-tune: short in-process federated trainings over a
 * grid of compression settings, the Pareto frontier of accuracy against
 * uplink bytes per round, and the cheapest setting within a tolerance of
 * the best, printed as coordinator flags (docs/tuning.md).
 *
 * One configuration is run with the real pipeline and no sockets:
 *
 *     for each round r:                    coordinator side
 *         for each device d:               worker side
 *             u = mdl_trainer_train(w_global, shard d)
 *             wrk_update_encode(u)         clip/MC/EF/top-k/quantize/codec
 *             bytes += pb_packed_size(Update envelope with the tensor)
 *             cmp_sparse_decode -> coord_agg_add(weight = shard size)
 *             wrk_update_apply_fate(used)
 *         coord_agg_commit()               FedAvg step
 *     evaluate the final model on the test set
 *
 * Every configuration starts from the same initial model, shards and
 * training seeds, so the results differ only by the settings.
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "compress/cmp_types.h"
#include "coordinator/coord_agg.h"
#include "coordinator/coord_config.h"
#include "model/mdl_data.h"
#include "model/mdl_partition.h"
#include "model/mdl_trainer.h"
#include "proto/pb_msg.h"
#include "worker/wrk_data.h"
#include "worker/wrk_update.h"

#define TUNE_VERSION "0.1.0"
#define MAX_LIST 16
#define MAX_CONFIGS 4096
#define MAX_DEVICES 1024
#define MC_FACTOR 0.9f       /* the coordinator's --momentum-correction */
#define WARMUP_ROUNDS 2u

enum tech_flags { TECH_WARMUP = 1 << 0, TECH_MC = 1 << 1 };

struct tune_opts {
    uint32_t devices;
    uint32_t rounds;
    const char *data_dir;
    uint32_t train_limit;            /* 0 = all */
    uint32_t eval_limit;             /* 0 = all */
    struct mdl_partition_config part;
    struct mdl_mlp_config mlp;
    double tolerance;                /* accuracy points */
    const char *out_dir;             /* NULL = no files */
    uint64_t seed;
    double densities[MAX_LIST];
    size_t ndensities;
    enum cmp_value_coding values[MAX_LIST];
    size_t nvalues;
    enum cmp_codec codecs[MAX_LIST];
    int levels[MAX_LIST];
    size_t ncodecs;
    bool efs[2];
    size_t nefs;
    unsigned techs[MAX_LIST];
    size_t ntechs;
};

struct tune_config {
    double density;
    enum cmp_value_coding values;
    enum cmp_codec codec;
    int level;
    bool ef;
    unsigned tech;
};

struct tune_result {
    struct tune_config c;
    double accuracy;                 /* [0, 1] */
    double loss;
    double up_bytes;                 /* mean Update envelope bytes / round */
    double dense_bytes;              /* dim * 4 * devices */
    double seconds;
    bool pareto;
};

/* The data and model shared by every configuration. */
struct tune_env {
    struct mdl_trainer *trainer;
    size_t dim;
    float *init;
    struct mdl_dataset **shards;
    uint32_t nshards;
    struct mdl_dataset *test;
    struct cmp_ctx *ctx;             /* decode side */
    float *u;
};

/* ------------------------------------------------------------ options */

static void usage(FILE *f)
{
    fputs(
        "usage: fedcomp-tune [options]\n"
        "Short in-process trainings over a grid of compression settings;\n"
        "prints each result, the Pareto frontier (accuracy against uplink\n"
        "bytes per round) and the cheapest setting within --tolerance of\n"
        "the best as coordinator flags.\n"
        "Simulation:\n"
        "  --devices N          simulated devices (8)\n"
        "  --rounds R           rounds per configuration (5)\n"
        "  --data-dir DIR       Fashion-MNIST IDX files\n"
        "                       (" MDL_DEFAULT_DATA_DIR ")\n"
        "  --train-limit N      use the first N training samples, 0 = all (0)\n"
        "  --eval-limit N       evaluate on N test samples, 0 = all (0)\n"
        "  --partition P        iid | dirichlet:ALPHA (iid)\n"
        "  --hidden LIST        hidden layer sizes (256,128)\n"
        "  --seed S             model, partition and batch seed (1)\n"
        "Grid (comma-separated lists):\n"
        "  --density LIST       (0.1,0.01,0.001)\n"
        "  --values LIST        fp32 fp16 bf16 int8 (fp16,int8)\n"
        "  --codec LIST         none lz4 zstd[:LEVEL] (zstd:1,lz4)\n"
        "  --error-feedback LIST on off (on,off)\n"
        "  --techniques LIST    none, or warmup and/or mc joined by '+'\n"
        "                       (warmup = density warm-up over 2 rounds,\n"
        "                       mc = momentum correction 0.9) (none,warmup+mc)\n"
        "Output:\n"
        "  --tolerance PTS      accuracy points below the best still\n"
        "                       acceptable for the recommendation (1.0)\n"
        "  --out DIR            write DIR/tune.csv and DIR/pareto.csv\n"
        "  --help, --version\n",
        f);
}

/* Split s at commas into items (at most MAX_LIST); each item is parsed by
 * the caller. Returns the count, or -1 for too many or an empty item. */
static int split_list(const char *s, char items[MAX_LIST][32])
{
    int n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        const size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (n == MAX_LIST || len == 0 || len >= 32)
            return -1;
        memcpy(items[n], p, len);
        items[n][len] = '\0';
        n++;
        if (comma == NULL)
            return n;
        p = comma + 1;
    }
}

static int parse_tech(const char *s, unsigned *out)
{
    char buf[32];
    unsigned t = 0;
    const size_t n = strlen(s);
    if (strcmp(s, "none") == 0) {
        *out = 0;
        return 0;
    }
    if (n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n + 1);
    char *p = buf;
    for (;;) {
        char *plus = strchr(p, '+');
        if (plus != NULL)
            *plus = '\0';
        if (strcmp(p, "warmup") == 0)
            t |= TECH_WARMUP;
        else if (strcmp(p, "mc") == 0)
            t |= TECH_MC;
        else
            return -1;
        if (plus == NULL)
            break;
        p = plus + 1;
    }
    *out = t;
    return 0;
}

static int parse_item(struct tune_opts *o, int id, const char *it, size_t i)
{
    switch (id) {
    case 'd':
        return fl_parse_double(it, 1e-9, 1.0, &o->densities[i]) == FL_OK
                   ? 0 : -1;
    case 'v':
        return cmp_value_coding_parse(it, &o->values[i]);
    case 'c':
        o->levels[i] = 1;
        return cmp_codec_parse(it, &o->codecs[i], &o->levels[i]);
    case 'e':
        if (i >= 2)
            return -1;
        if (strcmp(it, "on") == 0 || strcmp(it, "off") == 0) {
            o->efs[i] = strcmp(it, "on") == 0;
            return 0;
        }
        return -1;
    case 't':
        return parse_tech(it, &o->techs[i]);
    default:
        return -1;
    }
}

/* A grid flag: --density/--values/--codec/--error-feedback/--techniques. */
static int parse_grid(struct tune_opts *o, int id, const char *s)
{
    char items[MAX_LIST][32];
    const int n = split_list(s, items);
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (parse_item(o, id, items[i], (size_t)i) != 0)
            return -1;
    }
    switch (id) {
    case 'd': o->ndensities = (size_t)n; break;
    case 'v': o->nvalues = (size_t)n; break;
    case 'c': o->ncodecs = (size_t)n; break;
    case 'e': o->nefs = (size_t)n; break;
    default: o->ntechs = (size_t)n; break;
    }
    return 0;
}

static void opts_defaults(struct tune_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->devices = 8;
    o->rounds = 5;
    o->data_dir = MDL_DEFAULT_DATA_DIR;
    o->part.kind = MDL_PARTITION_IID;
    o->part.alpha = 0.5;
    o->part.min_shard = 1;
    o->mlp.input = 784;
    o->mlp.classes = 10;
    o->tolerance = 1.0;
    o->seed = 1;
    (void)mdl_mlp_parse_hidden("256,128", &o->mlp);
    (void)parse_grid(o, 'd', "0.1,0.01,0.001");
    (void)parse_grid(o, 'v', "fp16,int8");
    (void)parse_grid(o, 'c', "zstd:1,lz4");
    (void)parse_grid(o, 'e', "on,off");
    (void)parse_grid(o, 't', "none,warmup+mc");
}

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *v)
{
    uint64_t x = 0;
    if (fl_parse_u64(s, min, max, &x) != FL_OK)
        return -1;
    *v = (uint32_t)x;
    return 0;
}

static int parse_opt(struct tune_opts *o, int id, const char *a)
{
    switch (id) {
    case 'N': return parse_u32(a, 1, MAX_DEVICES, &o->devices);
    case 'R': return parse_u32(a, 1, 100000, &o->rounds);
    case 'D': o->data_dir = a; return 0;
    case 'L': return parse_u32(a, 0, 60000, &o->train_limit);
    case 'E': return parse_u32(a, 0, UINT32_MAX, &o->eval_limit);
    case 'P': return mdl_partition_parse(a, &o->part);
    case 'H': return mdl_mlp_parse_hidden(a, &o->mlp);
    case 'S': return fl_parse_u64(a, 0, UINT64_MAX, &o->seed) == FL_OK
                         ? 0 : -1;
    case 'T': return fl_parse_double(a, 0, 100, &o->tolerance) == FL_OK
                         ? 0 : -1;
    case 'O': o->out_dir = a; return 0;
    default: return parse_grid(o, id, a);
    }
}

/* 0: run; 1: exit 0 (help/version printed); 2: usage error. */
static int parse_args(int argc, char **argv, struct tune_opts *o)
{
    static const struct option longopts[] = {
        {"devices", required_argument, NULL, 'N'},
        {"rounds", required_argument, NULL, 'R'},
        {"data-dir", required_argument, NULL, 'D'},
        {"train-limit", required_argument, NULL, 'L'},
        {"eval-limit", required_argument, NULL, 'E'},
        {"partition", required_argument, NULL, 'P'},
        {"hidden", required_argument, NULL, 'H'},
        {"seed", required_argument, NULL, 'S'},
        {"tolerance", required_argument, NULL, 'T'},
        {"out", required_argument, NULL, 'O'},
        {"density", required_argument, NULL, 'd'},
        {"values", required_argument, NULL, 'v'},
        {"codec", required_argument, NULL, 'c'},
        {"error-feedback", required_argument, NULL, 'e'},
        {"techniques", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    int id;
    opts_defaults(o);
    opterr = 0;
    for (;;) {
        id = getopt_long(argc, argv, "", longopts, NULL);
        if (id == -1)
            break;
        if (id == 'h') {
            usage(stdout);
            return 1;
        }
        if (id == 'V') {
            printf("fedcomp-tune " TUNE_VERSION "\n");
            return 1;
        }
        if (id == '?' || parse_opt(o, id, optarg) != 0) {
            fprintf(stderr, "fedcomp-tune: bad option '%s'\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fedcomp-tune: unexpected argument '%s'\n",
                argv[optind]);
        return 2;
    }
    return 0;
}

/* ---------------------------------------------------------- data, model */

static void env_release(struct tune_env *e)
{
    mdl_trainer_destroy(&e->trainer);
    for (uint32_t i = 0; i < e->nshards; i++)
        mdl_dataset_destroy(&e->shards[i]);
    fl_free(e->shards);
    mdl_dataset_destroy(&e->test);
    cmp_ctx_destroy(&e->ctx);
    fl_free(e->init);
    fl_free(e->u);
    memset(e, 0, sizeof(*e));
}

/* Each device's shard, loaded and partitioned exactly as a worker does. */
static enum fl_err load_shards(struct tune_env *e, const struct tune_opts *o,
                               char *err, size_t errlen)
{
    struct mdl_partition_config pc = o->part;
    struct wrk_data_info info;
    pc.nshards = o->devices;
    pc.seed = o->seed;
    e->shards = fl_calloc(o->devices, sizeof(*e->shards));
    if (e->shards == NULL)
        return FL_ERR_NOMEM;
    for (uint32_t s = 0; s < o->devices; s++) {
        e->nshards = s + 1;
        FL_FORWARD_ERR(wrk_data_load_shard(o->data_dir, o->train_limit, &pc,
                                           s, &e->shards[s], &info, err,
                                           errlen));
    }
    return FL_OK;
}

static enum fl_err env_init(struct tune_env *e, const struct tune_opts *o,
                            char *err, size_t errlen)
{
    enum fl_err rc;
    memset(e, 0, sizeof(*e));
    mdl_blas_single_thread();
    rc = mdl_trainer_new_mlp(&o->mlp, &e->trainer);
    if (rc != FL_OK)
        return rc;
    e->dim = mdl_trainer_layout(e->trainer)->dim;
    e->init = fl_malloc(e->dim * sizeof(float));
    e->u = fl_malloc(e->dim * sizeof(float));
    e->ctx = cmp_ctx_new();
    if (e->init == NULL || e->u == NULL || e->ctx == NULL)
        return FL_ERR_NOMEM;
    mdl_trainer_init_params(e->trainer, o->seed, e->init);
    rc = load_shards(e, o, err, errlen);
    if (rc != FL_OK)
        return rc;
    rc = mdl_dataset_load(o->data_dir, "t10k", NULL, 0, &e->test, err,
                          errlen);
    if (rc == FL_OK && o->eval_limit > 0 && o->eval_limit < e->test->n)
        mdl_dataset_truncate(e->test, o->eval_limit);
    return rc;
}

/* ------------------------------------------------------------ one run */

/* Bytes of the Update frame a worker would send for this tensor. */
static size_t update_wire_bytes(const struct wrk_encoded *enc, uint64_t round,
                                uint64_t n_samples)
{
    struct pb_envelope env;
    const struct cmp_meta *m = &enc->meta;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_UPDATE;
    env.update.round = round;
    env.update.n_samples = n_samples;
    env.update.delta = (struct pb_tensor){
        .dimension = m->dimension, .k = m->k,
        .index_coding = (uint32_t)m->index_coding,
        .value_coding = (uint32_t)m->value_coding,
        .codec = (uint32_t)m->codec, .raw_size = m->raw_size,
        .checksum = m->checksum, .payload = enc->payload,
        .payload_len = enc->payload_len};
    return pb_packed_size(&env);
}

static void settings_for(const struct tune_config *c, uint64_t round,
                         struct wrk_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->density = (float)((c->tech & TECH_WARMUP)
                             ? coord_density_for_round(c->density,
                                                       WARMUP_ROUNDS, round)
                             : c->density);
    s->topk = CMP_TOPK_SAMPLED;          /* the coordinator's default */
    s->params.index_coding = CMP_INDEX_AUTO;
    s->params.values = c->values;
    s->params.codec = c->codec;
    s->params.level = c->codec == CMP_CODEC_ZSTD ? c->level : 0;
    s->error_feedback = c->ef;
    s->momentum = (c->tech & TECH_MC) ? MC_FACTOR : 0.0f;
}

/* One device's part of a round: train, encode, count, decode, add. */
static enum fl_err device_round(struct tune_env *e, struct coord_agg *agg,
                                struct wrk_update *w, uint32_t d,
                                uint64_t round, const struct wrk_settings *s,
                                uint64_t seed, double *bytes)
{
    const struct mdl_dataset *ds = e->shards[d];
    struct mdl_train_config tc = {.local_epochs = 1, .batch_size = 32,
                                  .lr = 0.05f, .momentum = 0.9f};
    struct mdl_train_result tr;
    struct wrk_encoded enc;
    const uint32_t *idx = NULL;
    const float *val = NULL;
    size_t k = 0;
    const struct cmp_limits lim = {.dimension = e->dim};
    tc.seed = seed ^ (round * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)d << 40);
    FL_FORWARD_ERR(mdl_trainer_train(e->trainer, coord_agg_params(agg), ds,
                                     &tc, e->u, &tr));
    FL_FORWARD_ERR(wrk_update_encode(w, round, e->u, s, &enc));
    *bytes += (double)update_wire_bytes(&enc, round, ds->n);
    FL_FORWARD_ERR(cmp_sparse_decode(e->ctx, &enc.meta, enc.payload,
                                     enc.payload_len, &lim, &idx, &val, &k));
    FL_FORWARD_ERR(coord_agg_add(agg, idx, val, k, (double)ds->n));
    (void)wrk_update_apply_fate(w, round, true, NULL);
    return FL_OK;
}

static enum fl_err run_config(struct tune_env *e, const struct tune_opts *o,
                              struct tune_result *r)
{
    const struct coord_agg_config ac = {.dim = e->dim, .server_lr = 1.0,
                                        .keep_versions = 1};
    struct coord_agg *agg = NULL;
    struct wrk_update **w = NULL;
    struct wrk_settings s;
    struct mdl_eval_result ev;
    double bytes = 0.0;
    const uint64_t t0 = fl_now_ns();
    enum fl_err rc = coord_agg_new(&ac, e->init, &agg);
    if (rc != FL_OK)
        goto out;
    w = fl_calloc(e->nshards, sizeof(*w));
    rc = w == NULL ? FL_ERR_NOMEM : FL_OK;
    for (uint32_t d = 0; rc == FL_OK && d < e->nshards; d++) {
        w[d] = wrk_update_new(e->dim, NULL, 0, o->seed + d);
        rc = w[d] == NULL ? FL_ERR_NOMEM : FL_OK;
    }
    for (uint64_t round = 1; rc == FL_OK && round <= o->rounds; round++) {
        settings_for(&r->c, round, &s);
        for (uint32_t d = 0; rc == FL_OK && d < e->nshards; d++)
            rc = device_round(e, agg, w[d], d, round, &s, o->seed, &bytes);
        if (rc == FL_OK)
            rc = coord_agg_commit(agg);
    }
    if (rc == FL_OK)
        rc = mdl_trainer_evaluate(e->trainer, coord_agg_params(agg), e->test,
                                  &ev);
    if (rc == FL_OK) {
        r->accuracy = ev.accuracy;
        r->loss = ev.loss;
        r->up_bytes = bytes / (double)o->rounds;
        r->dense_bytes = (double)e->dim * 4.0 * (double)e->nshards;
        r->seconds = (double)(fl_now_ns() - t0) / 1e9;
    }
out:
    for (uint32_t d = 0; w != NULL && d < e->nshards; d++)
        wrk_update_destroy(&w[d]);
    fl_free(w);
    coord_agg_destroy(&agg);
    return rc;
}

/* ------------------------------------------------------------- results */

static void tech_name(unsigned t, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s", (t & TECH_WARMUP) ? "warmup" : "",
             (t & TECH_WARMUP) && (t & TECH_MC) ? "+" : "",
             (t & TECH_MC) ? "mc" : t == 0 ? "none" : "");
}

static void codec_name(const struct tune_config *c, char *buf, size_t len)
{
    coord_codec_format(c->codec, c->level, buf, len);
}

/* The coordinator flags that give configuration c. */
static void coord_flags(const struct tune_config *c, char *buf, size_t len)
{
    char codec[32];
    codec_name(c, codec, sizeof(codec));
    snprintf(buf, len, "--density %g --values %s --codec %s "
             "--error-feedback %s%s%s", c->density,
             cmp_value_coding_name(c->values), codec, c->ef ? "on" : "off",
             (c->tech & TECH_WARMUP) ? " --density-warmup 2" : "",
             (c->tech & TECH_MC) ? " --momentum-correction=0.9" : "");
}

static bool dominates(const struct tune_result *a, const struct tune_result *b)
{
    return a->up_bytes <= b->up_bytes && a->accuracy >= b->accuracy &&
           (a->up_bytes < b->up_bytes || a->accuracy > b->accuracy);
}

static void mark_pareto(struct tune_result *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        r[i].pareto = true;
        for (size_t j = 0; j < n && r[i].pareto; j++)
            r[i].pareto = !dominates(&r[j], &r[i]);
    }
}

static void csv_header(FILE *f)
{
    fputs("config,density,values,codec,error_feedback,techniques,accuracy,"
          "loss,up_bytes_per_round,dense_bytes_per_round,ratio,seconds,"
          "pareto,flags\n", f);
}

static void csv_row(FILE *f, size_t i, const struct tune_result *r)
{
    char tech[32], codec[32], flags[256];
    tech_name(r->c.tech, tech, sizeof(tech));
    codec_name(&r->c, codec, sizeof(codec));
    coord_flags(&r->c, flags, sizeof(flags));
    fprintf(f, "%zu,%g,%s,%s,%s,%s,%.6f,%.6f,%.1f,%.0f,%.2f,%.3f,%d,%s\n",
            i + 1, r->c.density, cmp_value_coding_name(r->c.values), codec,
            r->c.ef ? "on" : "off", tech, r->accuracy, r->loss, r->up_bytes,
            r->dense_bytes, r->dense_bytes / r->up_bytes, r->seconds,
            r->pareto ? 1 : 0, flags);
}

static int by_bytes(const void *a, const void *b)
{
    const struct tune_result *x = *(const struct tune_result *const *)a;
    const struct tune_result *y = *(const struct tune_result *const *)b;
    return (x->up_bytes > y->up_bytes) - (x->up_bytes < y->up_bytes);
}

/* Frontier rows sorted by bytes into order (n entries); returns the count. */
static size_t pareto_order(struct tune_result *r, size_t n,
                           struct tune_result **order, size_t *pos)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].pareto)
            order[m++] = &r[i];
    }
    qsort(order, m, sizeof(*order), by_bytes);
    for (size_t i = 0; i < m; i++)
        pos[i] = (size_t)(order[i] - r);
    return m;
}

static int write_csvs(const char *dir, const struct tune_result *r, size_t n,
                      struct tune_result *const *order, const size_t *pos,
                      size_t m)
{
    char path[4096];
    FILE *f = NULL;
    if (fl_mkdir_p(dir, 0) != FL_OK) {
        fprintf(stderr, "fedcomp-tune: cannot create '%s'\n", dir);
        return -1;
    }
    for (int which = 0; which < 2; which++) {
        snprintf(path, sizeof(path), "%s/%s", dir,
                 which == 0 ? "tune.csv" : "pareto.csv");
        f = fopen(path, "w");
        if (f == NULL) {
            fprintf(stderr, "fedcomp-tune: cannot write '%s'\n", path);
            return -1;
        }
        csv_header(f);
        for (size_t i = 0; i < (which == 0 ? n : m); i++) {
            if (which == 0)
                csv_row(f, i, &r[i]);
            else
                csv_row(f, pos[i], order[i]);
        }
        if (fclose(f) != 0) {
            fprintf(stderr, "fedcomp-tune: cannot write '%s'\n", path);
            return -1;
        }
    }
    return 0;
}

static void print_line(const char *lead, size_t i, size_t n,
                       const struct tune_result *r)
{
    char tech[32], codec[32];
    tech_name(r->c.tech, tech, sizeof(tech));
    codec_name(&r->c, codec, sizeof(codec));
    printf("%s[%zu/%zu] density %-6g %-4s %-7s ef %-3s %-9s  acc %6.2f%%  "
           "%10.0f B/round (%7.1fx)  %.1f s\n", lead, i + 1, n,
           r->c.density, cmp_value_coding_name(r->c.values), codec,
           r->c.ef ? "on" : "off", tech, 100.0 * r->accuracy, r->up_bytes,
           r->dense_bytes / r->up_bytes, r->seconds);
    fflush(stdout);
}

/* Cheapest result within tolerance points of the best accuracy. */
static size_t recommend(const struct tune_result *r, size_t n, double tol)
{
    double best = -1.0;
    size_t pick = 0;
    for (size_t i = 0; i < n; i++)
        best = fmax(best, r[i].accuracy);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        if (100.0 * (best - r[i].accuracy) > tol + 1e-9)
            continue;
        if (!found || r[i].up_bytes < r[pick].up_bytes) {
            pick = i;
            found = true;
        }
    }
    return pick;
}

/* --------------------------------------------------------------- grid */

static size_t build_grid(const struct tune_opts *o, struct tune_result *r)
{
    size_t n = 0;
    for (size_t a = 0; a < o->ndensities; a++)
        for (size_t b = 0; b < o->nvalues; b++)
            for (size_t c = 0; c < o->ncodecs; c++)
                for (size_t d = 0; d < o->nefs; d++)
                    for (size_t t = 0; t < o->ntechs; t++) {
                        if (n == MAX_CONFIGS)
                            return n;
                        memset(&r[n], 0, sizeof(r[n]));
                        r[n].c = (struct tune_config){
                            o->densities[a], o->values[b], o->codecs[c],
                            o->levels[c], o->efs[d], o->techs[t]};
                        n++;
                    }
    return n;
}

static int report(const struct tune_opts *o, struct tune_result *r, size_t n)
{
    struct tune_result **order = fl_calloc(n, sizeof(*order));
    size_t *pos = fl_calloc(n, sizeof(*pos));
    char flags[256];
    int rc = 0;
    if (order == NULL || pos == NULL) {
        rc = -1;
        goto out;
    }
    mark_pareto(r, n);
    const size_t m = pareto_order(r, n, order, pos);
    printf("\nPareto frontier (accuracy against uplink bytes per round):\n");
    for (size_t i = 0; i < m; i++)
        print_line("  ", pos[i], n, order[i]);
    const size_t pick = recommend(r, n, o->tolerance);
    coord_flags(&r[pick].c, flags, sizeof(flags));
    printf("\nrecommended (cheapest within %.2f points of the best): "
           "[%zu/%zu] accuracy %.2f%%, %.0f B/round\n"
           "  fedcomp-coordinator %s\n", o->tolerance, pick + 1, n,
           100.0 * r[pick].accuracy, r[pick].up_bytes, flags);
    if (o->out_dir != NULL)
        rc = write_csvs(o->out_dir, r, n, order, pos, m);
out:
    fl_free(order);
    fl_free(pos);
    return rc;
}

int main(int argc, char **argv)
{
    struct tune_opts o;
    struct tune_env e;
    char err[512] = "";
    int status = 1;
    const int prc = parse_args(argc, argv, &o);
    if (prc != 0)
        return prc == 1 ? 0 : 2;
    struct tune_result *r = fl_calloc(MAX_CONFIGS, sizeof(*r));
    if (r == NULL)
        return 1;
    const size_t n = build_grid(&o, r);
    enum fl_err rc = env_init(&e, &o, err, sizeof(err));
    if (rc != FL_OK) {
        fprintf(stderr, "fedcomp-tune: cannot set up the task: %s%s%s\n",
                fl_strerror(rc), err[0] != '\0' ? ": " : "", err);
        goto out;
    }
    printf("fedcomp-tune: %zu configurations, %u devices x %u rounds, "
           "model of %zu parameters\n", n, o.devices, o.rounds, e.dim);
    for (size_t i = 0; i < n; i++) {
        rc = run_config(&e, &o, &r[i]);
        if (rc != FL_OK) {
            fprintf(stderr, "fedcomp-tune: configuration %zu failed: %s\n",
                    i + 1, fl_strerror(rc));
            goto out;
        }
        print_line("", i, n, &r[i]);
    }
    status = report(&o, r, n) == 0 ? 0 : 1;
out:
    env_release(&e);
    fl_free(r);
    return status;
}
