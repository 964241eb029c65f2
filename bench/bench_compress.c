/*
 * bench_compress.c - `fedcomp-bench compress`.
 *
 * For each size n and data distribution the benchmark draws an update u and
 * a residual r (the residual at a quarter of the update's scale, as after a
 * few rounds of error feedback), then per density:
 *   select_ef_ms  cmp_topk_select (a = u + r, top-k, residual written back),
 *                 exact and sampled, median over repetitions
 *   ref_ms        bench_ref_add(r, u) over the same n: the fixed baseline
 * and per value coding x codec, on the exact selection:
 *   encode_ms     cmp_sparse_encode (index + value coding + codec + crc)
 *   codec_ms      the codec's share: encode time minus the same encode with
 *                 codec none
 *   wire_bytes    the whole serialized Update envelope carrying the tensor
 *   decode_aggregate_ns_per_nnz  cmp_sparse_decode + cmp_scatter_add
 *   scatter_ref_ns_per_nnz       acc[idx[i]] += w * val[i] on decoded pairs
 * Every ratio is computed from figures measured in this run.
 */
#define _POSIX_C_SOURCE 200809L
#include "bench/bench_compress.h"

#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "compress/cmp_topk.h"
#include "proto/pb_msg.h"

enum dist { DIST_GAUSS, DIST_LAPLACE };
static const char *const dist_names[] = {"gaussian", "laplace"};

struct codec_case {
    const char *name;
    enum cmp_codec codec;
    int level;
};

static const struct codec_case codec_cases[] = {
    {"none", CMP_CODEC_NONE, 0},
    {"lz4", CMP_CODEC_LZ4, 0},
    {"zstd-1", CMP_CODEC_ZSTD, 1},
    {"zstd-3", CMP_CODEC_ZSTD, 3},
};

static const enum cmp_value_coding value_cases[] = {
    CMP_VALUE_FP32, CMP_VALUE_FP16, CMP_VALUE_BF16, CMP_VALUE_INT8};

struct opts {
    size_t sizes[4];
    size_t nsizes;
    double densities[4];
    size_t ndensities;
    int reps;
    bool json;
    bool laplace;
};

/* One measured configuration, printed as a table row and a JSON line. */
struct row {
    size_t n;
    const char *dist;
    double density;
    const char *values;
    const char *codec;
    const char *topk;
    size_t k;
    double select_ef_ms, ref_ms, encode_ms, codec_ms;
    size_t wire_bytes, dense_bytes;
    double bits_per_nnz, max_rel_error;
    double dec_agg_ns, scatter_ref_ns;
};

/* Targets, judged on the Gaussian data at the largest n. */
struct verdicts {
    size_t n;
    double sampled_ratio, exact_ratio;            /* at 1% */
    double sampled_ms, exact_ms, ref_ms;
    double fp16_zstd_ratio;                       /* best zstd level, 0.1% */
    double best_ratio;                            /* max_rel_error <= 1% */
    char best_name[64];
    double dec_ratio_1, dec_ratio_01;             /* fp16 zstd-1 */
};

static void fill(float *x, size_t n, enum dist d, double scale,
                 struct fl_rng *rng)
{
    for (size_t i = 0; i < n; i++) {
        double v;
        if (d == DIST_GAUSS) {
            v = fl_rng_normal(rng);
        } else {
            double u;
            do {
                u = fl_rng_uniform(rng);
            } while (u <= 0.0);
            v = (fl_rng_uniform(rng) < 0.5 ? -1.0 : 1.0) * -log(u) / sqrt(2.0);
        }
        x[i] = (float)(v * scale);
    }
}

static double ms_since(uint64_t t0) { return (double)(fl_now_ns() - t0) / 1e6; }

static size_t update_wire_bytes(const struct cmp_meta *m, const uint8_t *payload,
                                size_t len)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_UPDATE;
    env.update.round = 1;
    env.update.n_samples = 3750;
    env.update.delta = (struct pb_tensor){
        .dimension = m->dimension, .k = m->k,
        .index_coding = (uint32_t)m->index_coding,
        .value_coding = (uint32_t)m->value_coding,
        .codec = (uint32_t)m->codec, .raw_size = m->raw_size,
        .checksum = m->checksum, .payload = payload, .payload_len = len};
    return pb_packed_size(&env);
}

static void print_row(const struct row *r, bool json)
{
    if (json) {
        printf("{\"n\":%zu,\"dist\":\"%s\",\"density\":%g,\"values\":\"%s\","
               "\"codec\":\"%s\",\"topk\":\"%s\",\"k\":%zu,"
               "\"select_ef_ms\":%.3f,\"ref_ms\":%.3f,\"encode_ms\":%.3f,"
               "\"codec_ms\":%.3f,\"wire_bytes\":%zu,\"dense_bytes\":%zu,"
               "\"ratio\":%.1f,\"bits_per_nnz\":%.2f,\"max_rel_error\":%.3g,"
               "\"decode_aggregate_ns_per_nnz\":%.2f,"
               "\"scatter_ref_ns_per_nnz\":%.2f}\n",
               r->n, r->dist, r->density, r->values, r->codec, r->topk, r->k,
               r->select_ef_ms, r->ref_ms, r->encode_ms, r->codec_ms,
               r->wire_bytes, r->dense_bytes,
               (double)r->dense_bytes / (double)r->wire_bytes,
               r->bits_per_nnz, r->max_rel_error, r->dec_agg_ns,
               r->scatter_ref_ns);
        return;
    }
    printf("%9zu %-8s %6.3f%% %-4s %-6s %-7s %8.2f %7.2f %5.2fx %7.2f %7.2f "
           "%10zu %8.1f %6.2f %8.2g %7.2f %7.2f %5.2fx\n",
           r->n, r->dist, r->density * 100, r->values, r->codec, r->topk,
           r->select_ef_ms, r->ref_ms, r->select_ef_ms / r->ref_ms,
           r->encode_ms, r->codec_ms, r->wire_bytes,
           (double)r->dense_bytes / (double)r->wire_bytes, r->bits_per_nnz,
           r->max_rel_error, r->dec_agg_ns, r->scatter_ref_ns,
           r->dec_agg_ns / r->scatter_ref_ns);
}

static void print_header(void)
{
    printf("%9s %-8s %7s %-4s %-6s %-7s %8s %7s %6s %7s %7s %10s %8s %6s %8s "
           "%7s %7s %6s\n",
           "n", "data", "density", "vals", "codec", "topk", "sel+ef", "ref",
           "ratio", "enc_ms", "codecms", "wire_B", "dense/w", "bit/nz",
           "maxrelE", "dec+agg", "scatref", "ratio");
    printf("%9s %-8s %7s %-4s %-6s %-7s %8s %7s %6s %7s %7s %10s %8s %6s %8s "
           "%7s %7s %6s\n",
           "", "", "", "", "", "", "ms", "ms", "", "", "", "", "", "", "",
           "ns/nnz", "ns/nnz", "");
}

struct bufs {
    float *u, *r0, *r, *val, *orig, *acc;
    uint32_t *idx;
};

static int bufs_alloc(struct bufs *b, size_t n)
{
    memset(b, 0, sizeof(*b));
    b->u = malloc(n * sizeof(float));
    b->r0 = malloc(n * sizeof(float));
    b->r = malloc(n * sizeof(float));
    b->acc = calloc(n, sizeof(float));
    b->val = malloc(n * sizeof(float));
    b->orig = malloc(n * sizeof(float));
    b->idx = malloc(n * sizeof(uint32_t));
    return b->u && b->r0 && b->r && b->acc && b->val && b->orig && b->idx
               ? 0 : -1;
}

static void bufs_free(struct bufs *b)
{
    free(b->u);
    free(b->r0);
    free(b->r);
    free(b->acc);
    free(b->val);
    free(b->orig);
    free(b->idx);
}

static double time_ref(struct bufs *b, size_t n, int reps)
{
    double t[32];
    for (int i = 0; i < reps; i++) {
        memcpy(b->r, b->r0, n * sizeof(float));
        const uint64_t t0 = fl_now_ns();
        bench_ref_add(b->r, b->u, n);
        t[i] = ms_since(t0);
        bench_sink(b->r[n / 2]);
    }
    return bench_median(t, (size_t)reps);
}

/* Time the selection; leaves the selection of the last rep in b->idx/val. */
static int time_select(struct cmp_topk *tk, struct bufs *b, size_t n,
                       size_t k, enum cmp_topk_method m, int reps,
                       double *ms, size_t *k_out)
{
    double t[32];
    for (int i = 0; i < reps; i++) {
        memcpy(b->r, b->r0, n * sizeof(float));
        const uint64_t t0 = fl_now_ns();
        const enum fl_err rc = cmp_topk_select(tk, b->r, b->u, n, k, m, 0,
                                               b->idx, b->val, k_out);
        t[i] = ms_since(t0);
        if (rc != FL_OK) {
            fprintf(stderr, "bench: selection failed: %s\n", fl_strerror(rc));
            return -1;
        }
    }
    *ms = bench_median(t, (size_t)reps);
    return 0;
}

/* Encode, decode+aggregate and the scatter reference for one coding. */
static int measure_coding(struct cmp_ctx *ctx, struct bufs *b, size_t n,
                          size_t k, const struct cmp_params *p, int reps,
                          struct row *row)
{
    double te[32], td[32], ts[32];
    struct cmp_meta meta;
    const uint8_t *payload = NULL;
    size_t plen = 0;
    const struct cmp_limits lim = {.dimension = n};

    for (int i = 0; i < reps; i++) {
        memcpy(b->val, b->orig, k * sizeof(float));
        const uint64_t t0 = fl_now_ns();
        const enum fl_err rc = cmp_sparse_encode(ctx, n, b->idx, b->val, k, p,
                                                 &meta, &payload, &plen);
        te[i] = ms_since(t0);
        if (rc != FL_OK) {
            fprintf(stderr, "bench: encode failed: %s\n", fl_strerror(rc));
            return -1;
        }
    }
    row->encode_ms = bench_median(te, (size_t)reps);
    row->wire_bytes = update_wire_bytes(&meta, payload, plen);
    row->bits_per_nnz = (double)row->wire_bytes * 8.0 / (double)k;

    double maxrel = 0;
    for (size_t i = 0; i < k; i++) {
        const double o = b->orig[i];
        if (o != 0.0) {
            const double e = fabs((double)b->val[i] - o) / fabs(o);
            maxrel = e > maxrel ? e : maxrel;
        }
    }
    row->max_rel_error = maxrel;

    /* The payload lives in ctx until the next call: copy it out. */
    uint8_t *copy = malloc(plen ? plen : 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, payload, plen);
    for (int i = 0; i < reps; i++) {
        const uint32_t *di;
        const float *dv;
        size_t dk;
        const uint64_t t0 = fl_now_ns();
        const enum fl_err rc = cmp_sparse_decode(ctx, &meta, copy, plen, &lim,
                                                 &di, &dv, &dk);
        if (rc != FL_OK) {
            fprintf(stderr, "bench: decode failed: %s\n", fl_strerror(rc));
            free(copy);
            return -1;
        }
        cmp_scatter_add(b->acc, di, dv, dk, 0.25f);
        td[i] = ms_since(t0);
        /* the reference: the same scatter on already-decoded pairs */
        const uint64_t t1 = fl_now_ns();
        for (size_t j = 0; j < dk; j++)
            b->acc[b->idx[j]] += 0.25f * b->val[j];
        ts[i] = ms_since(t1);
    }
    free(copy);
    bench_sink(b->acc[b->idx[0]]);
    row->dec_agg_ns = bench_median(td, (size_t)reps) * 1e6 / (double)k;
    row->scatter_ref_ns = bench_median(ts, (size_t)reps) * 1e6 / (double)k;
    return 0;
}

static void judge(struct verdicts *v, const struct row *r, size_t n_max)
{
    if (r->n != n_max || strcmp(r->dist, "gaussian") != 0)
        return;
    const double ratio = (double)r->dense_bytes / (double)r->wire_bytes;
    if (fabs(r->density - 0.01) < 1e-9 && strcmp(r->values, "fp16") == 0 &&
        strcmp(r->codec, "zstd-1") == 0) {
        if (strcmp(r->topk, "sampled") == 0) {
            v->sampled_ratio = r->select_ef_ms / r->ref_ms;
            v->sampled_ms = r->select_ef_ms;
        } else {
            v->exact_ratio = r->select_ef_ms / r->ref_ms;
            v->exact_ms = r->select_ef_ms;
        }
        v->ref_ms = r->ref_ms;
        if (strcmp(r->topk, "exact") == 0)
            v->dec_ratio_1 = r->dec_agg_ns / r->scatter_ref_ns;
    }
    if (fabs(r->density - 0.001) < 1e-9 && strcmp(r->topk, "exact") == 0) {
        if (strcmp(r->values, "fp16") == 0 && strncmp(r->codec, "zstd", 4) == 0
            && ratio > v->fp16_zstd_ratio)
            v->fp16_zstd_ratio = ratio;
        if (r->max_rel_error <= 0.01 && ratio > v->best_ratio) {
            v->best_ratio = ratio;
            snprintf(v->best_name, sizeof(v->best_name), "%s + %s", r->values,
                     r->codec);
        }
        if (strcmp(r->values, "fp16") == 0 && strcmp(r->codec, "zstd-1") == 0)
            v->dec_ratio_01 = r->dec_agg_ns / r->scatter_ref_ns;
    }
}

static void print_verdicts(const struct verdicts *v, bool json)
{
    const struct {
        const char *what;
        double got;
        double target;
        bool le;
    } t[] = {
        {"sampled top-k + EF at 1%: select_ef_ms / ref_ms", v->sampled_ratio,
         1.3, true},
        {"exact top-k + EF at 1%: select_ef_ms / ref_ms", v->exact_ratio, 2.5,
         true},
        {"0.1%: dense/wire with fp16 + zstd", v->fp16_zstd_ratio, 1200, false},
        {"0.1%: dense/wire, best coding with max_rel_error <= 1%",
         v->best_ratio, 1500, false},
        {"fp16 + zstd-1 at 1%: decode+aggregate / scatter ref", v->dec_ratio_1,
         2.0, true},
        {"fp16 + zstd-1 at 0.1%: decode+aggregate / scatter ref",
         v->dec_ratio_01, 2.0, true},
    };
    if (json) {
        for (size_t i = 0; i < FL_ARRAY_LEN(t); i++) {
            const bool ok = t[i].le ? t[i].got <= t[i].target
                                    : t[i].got >= t[i].target;
            printf("{\"target\":\"%s\",\"n\":%zu,\"value\":%.3f,"
                   "\"limit\":%g,\"met\":%s}\n",
                   t[i].what, v->n, t[i].got, t[i].target,
                   ok ? "true" : "false");
        }
        return;
    }
    printf("\ntargets (gaussian data, n = %zu; baselines from this run):\n",
           v->n);
    printf("  reference r[i] += u[i]: %.2f ms; sampled select+EF: %.2f ms; "
           "exact select+EF: %.2f ms\n",
           v->ref_ms, v->sampled_ms, v->exact_ms);
    for (size_t i = 0; i < FL_ARRAY_LEN(t); i++) {
        const bool ok = t[i].le ? t[i].got <= t[i].target
                                : t[i].got >= t[i].target;
        printf("  %-58s %9.2f  (target %s %g)  %s\n", t[i].what, t[i].got,
               t[i].le ? "<=" : ">=", t[i].target, ok ? "met" : "MISSED");
    }
    printf("  best coding with max_rel_error <= 1%% at 0.1%%: %s\n",
           v->best_name[0] ? v->best_name : "(none)");
}

static int run_size(const struct opts *o, size_t n, enum dist d,
                    struct verdicts *v, size_t n_max)
{
    struct bufs b = {0};
    struct fl_rng rng;
    int ret = -1;
    struct cmp_topk *tk = cmp_topk_new(7);
    struct cmp_ctx *ctx = cmp_ctx_new();
    const int reps = n >= 5000000 ? o->reps : o->reps * 2 + 1;

    if (tk == NULL || ctx == NULL || bufs_alloc(&b, n) != 0) {
        fprintf(stderr, "bench: out of memory for n = %zu\n", n);
        goto out;
    }
    fl_rng_seed(&rng, 1234 + n + (size_t)d);
    fill(b.u, n, d, 1.0, &rng);
    fill(b.r0, n, d, 0.25, &rng);
    const double ref_ms = time_ref(&b, n, reps);

    for (size_t di = 0; di < o->ndensities; di++) {
        const double density = o->densities[di];
        size_t k = (size_t)ceil(density * (double)n);
        k = k < 1 ? 1 : k;
        for (int m = 0; m < 2; m++) {
            const enum cmp_topk_method meth =
                m == 0 ? CMP_TOPK_EXACT : CMP_TOPK_SAMPLED;
            double sel_ms = 0;
            size_t kk = 0;
            if (time_select(tk, &b, n, k, meth, reps, &sel_ms, &kk) != 0)
                goto out;
            memcpy(b.orig, b.val, kk * sizeof(float));
            double none_ms[FL_ARRAY_LEN(value_cases)] = {0};
            for (size_t vi = 0; vi < FL_ARRAY_LEN(value_cases); vi++) {
                for (size_t ci = 0; ci < FL_ARRAY_LEN(codec_cases); ci++) {
                    const struct cmp_params p = {
                        .index_coding = CMP_INDEX_AUTO,
                        .values = value_cases[vi],
                        .codec = codec_cases[ci].codec,
                        .level = codec_cases[ci].level};
                    struct row r = {
                        .n = n, .dist = dist_names[d], .density = density,
                        .values = cmp_value_coding_name(value_cases[vi]),
                        .codec = codec_cases[ci].name,
                        .topk = cmp_topk_method_name(meth), .k = kk,
                        .select_ef_ms = sel_ms, .ref_ms = ref_ms,
                        .dense_bytes = n * 4};
                    if (measure_coding(ctx, &b, n, kk, &p, reps, &r) != 0)
                        goto out;
                    if (ci == 0)
                        none_ms[vi] = r.encode_ms;
                    r.codec_ms = r.encode_ms - none_ms[vi];
                    if (r.codec_ms < 0)
                        r.codec_ms = 0;
                    print_row(&r, o->json);
                    judge(v, &r, n_max);
                    fflush(stdout);
                }
            }
        }
    }
    ret = 0;
out:
    bufs_free(&b);
    cmp_topk_destroy(&tk);
    cmp_ctx_destroy(&ctx);
    return ret;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fedcomp-bench compress [--quick] [--n N[,N]] "
            "[--density D[,D]] [--reps R] [--no-laplace] [--json]\n"
            "  Measures top-k + error feedback, encoding, codecs and\n"
            "  decode+aggregate against baselines measured in the same run.\n"
            "  defaults: --n 1000000,10000000 --density 0.01,0.001 --reps 5\n"
            "  --quick   n = 1M only (a fast look; targets are judged at the\n"
            "            largest n measured)\n");
}

static int parse_list_size(const char *s, size_t *out, size_t cap, size_t *n)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (*n >= cap || fl_parse_u64(t, 1, 1ULL << 31, &v) != FL_OK)
            return -1;
        out[(*n)++] = (size_t)v;
    }
    return *n > 0 ? 0 : -1;
}

static int parse_list_double(const char *s, double *out, size_t cap,
                             size_t *n)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        double v;
        if (*n >= cap || fl_parse_double(t, 1e-7, 1.0, &v) != FL_OK)
            return -1;
        out[(*n)++] = v;
    }
    return *n > 0 ? 0 : -1;
}

int bench_compress_run(int argc, char **argv)
{
    struct opts o = {.sizes = {1000000, 10000000}, .nsizes = 2,
                     .densities = {0.01, 0.001}, .ndensities = 2, .reps = 5,
                     .laplace = true};
    static const struct option longopts[] = {
        {"quick", no_argument, NULL, 'q'}, {"n", required_argument, NULL, 'n'},
        {"density", required_argument, NULL, 'd'},
        {"reps", required_argument, NULL, 'r'},
        {"no-laplace", no_argument, NULL, 'L'},
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        uint64_t v;
        switch (c) {
        case 'q':
            o.sizes[0] = 1000000;
            o.nsizes = 1;
            break;
        case 'n':
            if (parse_list_size(optarg, o.sizes, 4, &o.nsizes) != 0) {
                fprintf(stderr, "bench: bad --n '%s'\n", optarg);
                return 2;
            }
            break;
        case 'd':
            if (parse_list_double(optarg, o.densities, 4, &o.ndensities)) {
                fprintf(stderr, "bench: bad --density '%s'\n", optarg);
                return 2;
            }
            break;
        case 'r':
            if (fl_parse_u64(optarg, 1, 15, &v) != FL_OK) {
                fprintf(stderr, "bench: --reps takes 1..15\n");
                return 2;
            }
            o.reps = (int)v;
            break;
        case 'L':
            o.laplace = false;
            break;
        case 'j':
            o.json = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    size_t n_max = 0;
    for (size_t i = 0; i < o.nsizes; i++)
        n_max = o.sizes[i] > n_max ? o.sizes[i] : n_max;
    struct verdicts v = {.n = n_max};
    if (!o.json)
        print_header();
    for (size_t i = 0; i < o.nsizes; i++) {
        for (int d = 0; d < (o.laplace ? 2 : 1); d++) {
            if (run_size(&o, o.sizes[i], (enum dist)d, &v, n_max) != 0)
                return 1;
        }
    }
    print_verdicts(&v, o.json);
    return 0;
}
