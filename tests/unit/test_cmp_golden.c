/*
 * Golden vectors of the payload format (docs/wire-format.md (section 12)).
 *
 * tests/golden/<name>.in   the input: n, k, codings, indices, values (as
 *                          float bit patterns), for dense the vector and
 *                          its XOR base
 * tests/golden/<name>.meta the metadata the encoder produced and the
 *                          values a decoder must return
 * tests/golden/<name>.bin  the payload bytes
 *
 * The test re-encodes every .in: raw_size and CRC-32 (which cover the raw
 * stream byte for byte) must match for every codec, and the payload bytes
 * too for codec "none" (zstd/LZ4 output may change between library
 * versions). It decodes every .bin and checks indices and values.
 *
 * FL_REGEN_GOLDEN=1 rewrites the three files of every case from the
 * definitions below (do it deliberately, when the format changes).
 * FL_REGEN_CORPUS=1 writes the seed corpus of tests/fuzz/fuzz_cmp_decode.c
 * into tests/fuzz/corpus/fuzz_cmp_decode/ (input layout: see that file).
 * Both run from the repository root (FL_GOLDEN_DIR overrides tests/golden).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_util.h"
#include "compress/cmp_internal.h"
#include "compress/cmp_tensor.h"

#define MAX_N 1024

struct golden {
    char name[64];
    int dense;
    uint64_t n;
    size_t k;
    struct cmp_params p;
    uint32_t idx[MAX_N];
    float val[MAX_N];  /* sparse values, or dense x */
    float base[MAX_N]; /* dense only */
    int has_base;
};

static const char *golden_dir(void)
{
    const char *d = getenv("FL_GOLDEN_DIR");
    return d != NULL ? d : "tests/golden";
}

/* ------------------------------------------------------------ cases */

static void def_case(struct golden *g, int which)
{
    struct fl_rng rng;
    memset(g, 0, sizeof *g);
    fl_rng_seed(&rng, 100 + (uint64_t)which);
    switch (which) {
    case 0: { /* the worked example of the doc */
        static const uint32_t idx[3] = {2, 7, 19};
        static const float val[3] = {0.5f, -1.25f, 3.140625f};
        snprintf(g->name, sizeof g->name, "n20_varint_fp32_none");
        g->n = 20;
        g->k = 3;
        g->p = (struct cmp_params){CMP_INDEX_DELTA_VARINT, CMP_VALUE_FP32,
                                   CMP_CODEC_NONE, 0};
        memcpy(g->idx, idx, sizeof idx);
        memcpy(g->val, val, sizeof val);
        return;
    }
    case 1:
        snprintf(g->name, sizeof g->name, "n64_bitmap_fp16_zstd");
        g->n = 64;
        g->k = 24;
        g->p = (struct cmp_params){CMP_INDEX_BITMAP, CMP_VALUE_FP16,
                                   CMP_CODEC_ZSTD, 3};
        break;
    case 2:
        snprintf(g->name, sizeof g->name, "n1000_rice_bf16_lz4");
        g->n = 1000;
        g->k = 50;
        g->p = (struct cmp_params){CMP_INDEX_RICE, CMP_VALUE_BF16,
                                   CMP_CODEC_LZ4, 0};
        break;
    case 3:
        snprintf(g->name, sizeof g->name, "n40_rice_fp16_none");
        g->n = 40;
        g->k = 9;
        g->p = (struct cmp_params){CMP_INDEX_RICE, CMP_VALUE_FP16,
                                   CMP_CODEC_NONE, 0};
        break;
    case 4:
        snprintf(g->name, sizeof g->name, "n600_varint_int8_none");
        g->n = 600;
        g->k = 300; /* two int8 blocks: 256 + 44 */
        g->p = (struct cmp_params){CMP_INDEX_DELTA_VARINT, CMP_VALUE_INT8,
                                   CMP_CODEC_NONE, 0};
        break;
    case 5:
        snprintf(g->name, sizeof g->name, "n30_bitmap_bf16_none");
        g->n = 30;
        g->k = 12;
        g->p = (struct cmp_params){CMP_INDEX_BITMAP, CMP_VALUE_BF16,
                                   CMP_CODEC_NONE, 0};
        break;
    case 6:
        snprintf(g->name, sizeof g->name, "dense_n16_xor_none");
        g->dense = 1;
        g->has_base = 1;
        g->n = 16;
        g->k = 16;
        g->p = (struct cmp_params){CMP_INDEX_ALL, CMP_VALUE_FP32,
                                   CMP_CODEC_NONE, 0};
        break;
    case 7:
        snprintf(g->name, sizeof g->name, "dense_n256_xor_zstd");
        g->dense = 1;
        g->has_base = 1;
        g->n = 256;
        g->k = 256;
        g->p = (struct cmp_params){CMP_INDEX_ALL, CMP_VALUE_FP32,
                                   CMP_CODEC_ZSTD, 1};
        break;
    default:
        fail();
    }
    if (g->dense) {
        for (size_t i = 0; i < g->n; i++) {
            g->base[i] = (float)(fl_rng_normal(&rng) * 0.1);
            g->val[i] = fl_rng_below(&rng, 4) == 0
                            ? g->base[i] + (float)(fl_rng_normal(&rng) * 1e-3)
                            : g->base[i];
        }
        return;
    }
    /* k distinct sorted indices: a partial Fisher-Yates over 0..n-1 */
    uint32_t all[MAX_N];
    for (uint32_t i = 0; i < g->n; i++)
        all[i] = i;
    for (size_t j = 0; j < g->k; j++) {
        const size_t r = j + (size_t)fl_rng_below(&rng, g->n - j);
        const uint32_t t = all[j];
        all[j] = all[r];
        all[r] = t;
    }
    for (size_t j = 0; j < g->k; j++) { /* insertion sort: small k */
        uint32_t v = all[j];
        size_t q = j;
        while (q > 0 && g->idx[q - 1] > v) {
            g->idx[q] = g->idx[q - 1];
            q--;
        }
        g->idx[q] = v;
    }
    for (size_t j = 0; j < g->k; j++)
        g->val[j] = (float)(fl_rng_normal(&rng) * 0.05);
}

#define N_CASES 8

/* ------------------------------------------------------------ files */

static void path_of(char *buf, size_t len, const char *name, const char *ext)
{
    const int r = snprintf(buf, len, "%s/%s.%s", golden_dir(), name, ext);
    assert_true(r > 0 && (size_t)r < len);
}

static void write_words(FILE *f, const char *key, const float *v,
                        size_t count)
{
    fprintf(f, "%s", key);
    for (size_t i = 0; i < count; i++)
        fprintf(f, "%s0x%08" PRIx32, i % 8 == 0 ? " \\\n  " : " ",
                cmp_f32_bits(v[i]));
    fprintf(f, "\n");
}

static void write_input(const struct golden *g)
{
    char path[512];
    path_of(path, sizeof path, g->name, "in");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# fedcomp golden vector input (docs/wire-format.md (section 12))\n");
    fprintf(f, "# values are IEEE-754 float32 bit patterns\n");
    fprintf(f, "kind %s\n", g->dense ? "dense" : "sparse");
    fprintf(f, "n %" PRIu64 "\nk %zu\n", g->n, g->k);
    fprintf(f, "index_coding %s\nvalue_coding %s\ncodec %s\nlevel %d\n",
            cmp_index_coding_name(g->p.index_coding),
            cmp_value_coding_name(g->p.values), cmp_codec_name(g->p.codec),
            g->p.level);
    if (g->dense) {
        write_words(f, "x", g->val, (size_t)g->n);
        if (g->has_base)
            write_words(f, "base", g->base, (size_t)g->n);
    } else {
        fprintf(f, "idx");
        for (size_t j = 0; j < g->k; j++)
            fprintf(f, "%s%" PRIu32, j % 16 == 0 ? " \\\n  " : " ", g->idx[j]);
        fprintf(f, "\n");
        write_words(f, "val", g->val, g->k);
    }
    fclose(f);
}

/* A tiny reader for "key value value ..." lines with '\' continuations. */
struct kv {
    char key[32];
    char *text; /* everything after the key, continuations joined */
};

static char *slurp(const char *path)
{
    void *data = NULL;
    size_t len = 0;
    if (fl_file_read(path, 1 << 22, &data, &len) != FL_OK)
        fail_msg("cannot read '%s' (run from the repo root)", path);
    char *s = realloc(data, len + 1);
    assert_non_null(s);
    s[len] = '\0';
    for (size_t i = 0; i + 1 < len; i++) { /* join continuations */
        if (s[i] == '\\' && s[i + 1] == '\n') {
            s[i] = ' ';
            s[i + 1] = ' ';
        }
    }
    return s;
}

/* Value of `key` in the text (a line starting with it), or NULL. */
static const char *find_key(const char *text, const char *key)
{
    const size_t kl = strlen(key);
    const char *p = text;
    while (p != NULL && *p != '\0') {
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ')
            return p + kl + 1;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return NULL;
}

static uint64_t get_u64(const char *text, const char *key)
{
    const char *v = find_key(text, key);
    if (v == NULL)
        fail_msg("missing key '%s'", key);
    char *end;
    const uint64_t x = strtoull(v, &end, 0);
    assert_true(end != v);
    return x;
}

static const char *get_word(const char *text, const char *key, char *buf,
                            size_t len)
{
    const char *v = find_key(text, key);
    if (v == NULL)
        fail_msg("missing key '%s'", key);
    size_t i = 0;
    while (v[i] != '\0' && v[i] != '\n' && v[i] != ' ' && i + 1 < len) {
        buf[i] = v[i];
        i++;
    }
    buf[i] = '\0';
    return buf;
}

static size_t get_list(const char *text, const char *key, uint32_t *out,
                       size_t max)
{
    const char *v = find_key(text, key);
    size_t c = 0;
    if (v == NULL)
        return 0;
    const char *eol = strchr(v, '\n');
    while (c < max) {
        char *end;
        while (*v == ' ')
            v++;
        if (eol != NULL && v >= eol)
            break;
        const unsigned long long x = strtoull(v, &end, 0);
        if (end == v)
            break;
        out[c++] = (uint32_t)x;
        v = end;
    }
    return c;
}

/* A list of float bit patterns into floats. */
static size_t get_floats(const char *text, const char *key, float *out,
                         size_t max)
{
    static uint32_t words[MAX_N];
    const size_t c = get_list(text, key, words, FL_MIN(max, (size_t)MAX_N));
    for (size_t i = 0; i < c; i++)
        out[i] = cmp_bits_f32(words[i]);
    return c;
}

static int index_parse(const char *s)
{
    for (int c = CMP_INDEX_AUTO; c <= CMP_INDEX_ALL; c++) {
        if (strcmp(cmp_index_coding_name((enum cmp_index_coding)c), s) == 0)
            return c;
    }
    fail_msg("bad index coding '%s'", s);
    return -1;
}

static void read_input(const char *name, struct golden *g)
{
    char path[512];
    char w[32];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    path_of(path, sizeof path, name, "in");
    char *t = slurp(path);
    g->dense = strcmp(get_word(t, "kind", w, sizeof w), "dense") == 0;
    g->n = get_u64(t, "n");
    g->k = (size_t)get_u64(t, "k");
    assert_true(g->n <= MAX_N && g->k <= g->n);
    g->p.index_coding =
        (enum cmp_index_coding)index_parse(get_word(t, "index_coding", w,
                                                    sizeof w));
    assert_int_equal(cmp_value_coding_parse(get_word(t, "value_coding", w,
                                                     sizeof w),
                                            &g->p.values), 0);
    assert_int_equal(cmp_codec_parse(get_word(t, "codec", w, sizeof w),
                                     &g->p.codec, NULL), 0);
    g->p.level = (int)get_u64(t, "level");
    if (g->dense) {
        assert_int_equal(get_floats(t, "x", g->val, MAX_N), g->n);
        g->has_base = get_floats(t, "base", g->base, MAX_N) == g->n;
    } else {
        assert_int_equal(get_list(t, "idx", g->idx, MAX_N), g->k);
        assert_int_equal(get_floats(t, "val", g->val, MAX_N), g->k);
    }
    free(t);
}

/* ------------------------------------------------------------ encode */

struct encoded {
    struct cmp_meta meta;
    const uint8_t *payload;
    size_t len;
    float decoded[MAX_N]; /* what a decoder returns */
};

static void encode(struct cmp_ctx *ctx, const struct golden *g,
                   struct encoded *e)
{
    if (g->dense) {
        assert_int_equal(cmp_dense_encode(ctx, g->val, (size_t)g->n,
                                          g->has_base ? g->base : NULL,
                                          g->p.codec, g->p.level, &e->meta,
                                          &e->payload, &e->len), FL_OK);
        memcpy(e->decoded, g->val, (size_t)g->n * sizeof(float));
        return;
    }
    memcpy(e->decoded, g->val, g->k * sizeof(float));
    assert_int_equal(cmp_sparse_encode(ctx, g->n, g->idx, e->decoded, g->k,
                                       &g->p, &e->meta, &e->payload, &e->len),
                     FL_OK);
}

static void write_outputs(const struct golden *g, const struct encoded *e)
{
    char path[512];
    path_of(path, sizeof path, g->name, "bin");
    assert_int_equal(fl_file_write_atomic(path, e->payload, e->len), FL_OK);
    path_of(path, sizeof path, g->name, "meta");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "# fedcomp golden vector output: metadata and decoded values\n");
    fprintf(f, "dimension %" PRIu64 "\nk %" PRIu64 "\n", e->meta.dimension,
            e->meta.k);
    fprintf(f, "index_coding %d\nvalue_coding %d\ncodec %d\n",
            (int)e->meta.index_coding, (int)e->meta.value_coding,
            (int)e->meta.codec);
    fprintf(f, "raw_size %" PRIu64 "\nchecksum 0x%08" PRIx32 "\n",
            e->meta.raw_size, e->meta.checksum);
    fprintf(f, "payload_len %zu\n", e->len);
    if (!g->dense) {
        fprintf(f, "decoded_idx");
        for (size_t j = 0; j < g->k; j++)
            fprintf(f, "%s%" PRIu32, j % 16 == 0 ? " \\\n  " : " ", g->idx[j]);
        fprintf(f, "\n");
    }
    write_words(f, "decoded_val", e->decoded, (size_t)e->meta.k);
    fclose(f);
}

/* ------------------------------------------------------------ tests */

static void regen_corpus(void);

static void regen_if_asked(void)
{
    const char *rc = getenv("FL_REGEN_CORPUS");
    if (rc != NULL && strcmp(rc, "1") == 0)
        regen_corpus();
    const char *r = getenv("FL_REGEN_GOLDEN");
    if (r == NULL || strcmp(r, "1") != 0)
        return;
    struct cmp_ctx *ctx = cmp_ctx_new();
    static struct golden g;
    static struct encoded e;
    assert_non_null(ctx);
    assert_int_equal(fl_mkdir_p(golden_dir(), 0), FL_OK);
    for (int c = 0; c < N_CASES; c++) {
        def_case(&g, c);
        write_input(&g);
        encode(ctx, &g, &e);
        write_outputs(&g, &e);
    }
    cmp_ctx_destroy(&ctx);
}

static void case_names(char names[N_CASES][64])
{
    static struct golden g;
    for (int c = 0; c < N_CASES; c++) {
        def_case(&g, c);
        snprintf(names[c], 64, "%s", g.name);
    }
}

/* Re-encode each input: same metadata (raw_size and CRC pin the raw stream
 * byte for byte), same payload for codec none. */
static void test_reencode(void **state)
{
    (void)state;
    char names[N_CASES][64];
    static struct golden g;
    static struct encoded e;
    char path[512];
    struct cmp_ctx *ctx = cmp_ctx_new();
    assert_non_null(ctx);
    regen_if_asked();
    case_names(names);
    for (int c = 0; c < N_CASES; c++) {
        read_input(names[c], &g);
        encode(ctx, &g, &e);
        path_of(path, sizeof path, names[c], "meta");
        char *m = slurp(path);
        assert_int_equal(e.meta.dimension, get_u64(m, "dimension"));
        assert_int_equal(e.meta.k, get_u64(m, "k"));
        assert_int_equal(e.meta.index_coding, get_u64(m, "index_coding"));
        assert_int_equal(e.meta.value_coding, get_u64(m, "value_coding"));
        assert_int_equal(e.meta.codec, get_u64(m, "codec"));
        if (e.meta.raw_size != get_u64(m, "raw_size") ||
            e.meta.checksum != get_u64(m, "checksum"))
            fail_msg("%s: raw stream differs from the golden one", names[c]);
        if (g.p.codec == CMP_CODEC_NONE) {
            void *bin;
            size_t len;
            path_of(path, sizeof path, names[c], "bin");
            assert_int_equal(fl_file_read(path, 1 << 20, &bin, &len), FL_OK);
            assert_int_equal(len, e.len);
            assert_memory_equal(bin, e.payload, len);
            free(bin);
        }
        free(m);
    }
    cmp_ctx_destroy(&ctx);
}

/* Decode each .bin with its .meta: the listed indices and values. */
static void test_decode(void **state)
{
    (void)state;
    char names[N_CASES][64];
    static uint32_t want_idx[MAX_N];
    static uint32_t want_val[MAX_N];
    static float out[MAX_N];
    static struct golden g;
    char path[512];
    struct cmp_ctx *ctx = cmp_ctx_new();
    assert_non_null(ctx);
    case_names(names);
    for (int c = 0; c < N_CASES; c++) {
        path_of(path, sizeof path, names[c], "meta");
        char *m = slurp(path);
        struct cmp_meta meta = {
            get_u64(m, "dimension"),
            get_u64(m, "k"),
            (enum cmp_index_coding)get_u64(m, "index_coding"),
            (enum cmp_value_coding)get_u64(m, "value_coding"),
            (enum cmp_codec)get_u64(m, "codec"),
            get_u64(m, "raw_size"),
            (uint32_t)get_u64(m, "checksum")};
        const size_t k = (size_t)meta.k;
        assert_int_equal(get_list(m, "decoded_val", want_val, MAX_N), k);
        void *bin;
        size_t len;
        path_of(path, sizeof path, names[c], "bin");
        assert_int_equal(fl_file_read(path, 1 << 20, &bin, &len), FL_OK);
        assert_int_equal(len, get_u64(m, "payload_len"));
        const struct cmp_limits lim = {meta.dimension, 0, 0};
        if (find_key(m, "decoded_idx") == NULL) { /* dense */
            read_input(names[c], &g);
            assert_int_equal(cmp_dense_decode(ctx, &meta, bin, len, &lim,
                                              g.has_base ? g.base : NULL,
                                              out), FL_OK);
            assert_memory_equal(out, want_val, k * sizeof(float));
        } else {
            const uint32_t *idx;
            const float *val;
            size_t dk;
            assert_int_equal(get_list(m, "decoded_idx", want_idx, MAX_N), k);
            assert_int_equal(cmp_sparse_decode(ctx, &meta, bin, len, &lim,
                                               &idx, &val, &dk), FL_OK);
            assert_int_equal(dk, k);
            assert_memory_equal(idx, want_idx, k * sizeof(uint32_t));
            assert_memory_equal(val, want_val, k * sizeof(float));
        }
        free(bin);
        free(m);
    }
    cmp_ctx_destroy(&ctx);
}

/* The worked example of docs/wire-format.md (section 12), byte for byte. */
static void test_doc_example(void **state)
{
    (void)state;
    static const uint8_t want[15] = {
        0x02, 0x04, 0x0b,                   /* varint: 2, 7-2-1, 19-7-1 */
        0x00, 0x00, 0x00,                   /* byte 0 of the three values */
        0x00, 0x00, 0x00,                   /* byte 1 */
        0x00, 0xa0, 0x49,                   /* byte 2 */
        0x3f, 0xbf, 0x40};                  /* byte 3 */
    void *bin;
    size_t len;
    char path[512];
    path_of(path, sizeof path, "n20_varint_fp32_none", "bin");
    assert_int_equal(fl_file_read(path, 1 << 20, &bin, &len), FL_OK);
    assert_int_equal(len, sizeof want);
    assert_memory_equal(bin, want, sizeof want);
    assert_int_equal(cmp_crc32(want, sizeof want), 0x2dbd5ba5u);
    free(bin);
}

/* ------------------------------------------------------------ corpus */

/* Seed inputs of fuzz_cmp_decode; layout documented in that file. */
static void corpus_write(const char *dir, int *count, const uint8_t *data,
                         size_t len)
{
    char path[512];
    const int r = snprintf(path, sizeof path, "%s/seed-%02d", dir, (*count)++);
    assert_true(r > 0 && (size_t)r < sizeof path);
    assert_int_equal(fl_file_write_atomic(path, data, len), FL_OK);
}

static void corpus_decode_seed(const char *dir, int *count,
                               const struct golden *g, struct cmp_ctx *ctx,
                               uint8_t flags)
{
    static struct encoded e;
    uint8_t buf[4096];
    encode(ctx, g, &e);
    if (17 + e.len > sizeof buf || g->n > 65536 || g->k > 65535)
        return;
    buf[0] = g->dense ? 3 : 0;
    buf[1] = (uint8_t)e.meta.index_coding;
    buf[2] = (uint8_t)e.meta.value_coding;
    buf[3] = (uint8_t)e.meta.codec;
    const uint32_t words[4] = {(uint32_t)(g->n - 1), (uint32_t)g->k,
                               (uint32_t)e.meta.raw_size, e.meta.checksum};
    buf[4] = (uint8_t)words[0];
    buf[5] = (uint8_t)(words[0] >> 8);
    buf[6] = (uint8_t)words[1];
    buf[7] = (uint8_t)(words[1] >> 8);
    for (int b = 0; b < 4; b++) {
        buf[8 + b] = (uint8_t)(words[2] >> (8 * b));
        buf[12 + b] = (uint8_t)(words[3] >> (8 * b));
    }
    buf[16] = flags;
    memcpy(buf + 17, e.payload, e.len);
    corpus_write(dir, count, buf, 17 + e.len);
}

static void regen_corpus(void)
{
    const char *dir = "tests/fuzz/corpus/fuzz_cmp_decode";
    struct cmp_ctx *ctx = cmp_ctx_new();
    static struct golden g;
    struct fl_rng rng;
    int count = 0;
    assert_non_null(ctx);
    assert_int_equal(fl_mkdir_p(dir, 0), FL_OK);
    fl_rng_seed(&rng, 1);
    /* valid payloads of every golden case, with their real CRC */
    for (int c = 0; c < N_CASES; c++) {
        def_case(&g, c);
        corpus_decode_seed(dir, &count, &g, ctx, 0);
    }
    /* more codings: every index x value coding, codecs in turn */
    for (int ic = CMP_INDEX_DELTA_VARINT; ic <= CMP_INDEX_RICE; ic++) {
        for (int vc = CMP_VALUE_FP32; vc <= CMP_VALUE_INT8; vc++) {
            def_case(&g, 3);
            g.p.index_coding = (enum cmp_index_coding)ic;
            g.p.values = (enum cmp_value_coding)vc;
            g.p.codec = (enum cmp_codec)(1 + (ic + vc) % 3);
            corpus_decode_seed(dir, &count, &g, ctx, (uint8_t)(vc & 1));
        }
    }
    /* sparse-encode and dense round-trip modes, and some garbage */
    for (int i = 0; i < 8; i++) {
        uint8_t buf[200];
        const size_t len = 20 + (size_t)fl_rng_below(&rng, 180);
        for (size_t j = 0; j < len; j++)
            buf[j] = (uint8_t)fl_rng_next(&rng);
        buf[0] = (uint8_t)(i < 3 ? 2 : (i < 5 ? 3 : i));
        corpus_write(dir, &count, buf, len);
    }
    cmp_ctx_destroy(&ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reencode),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_doc_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
