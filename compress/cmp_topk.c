/*
 * cmp_topk.c - top-k by magnitude fused with error feedback.
 *
 * Both methods compare magnitudes as the integer pattern of |a| (the float
 * bits without the sign): for non-negative IEEE floats the order of the
 * patterns is the order of the values, and NaN/Inf sort above everything,
 * so selection always terminates.
 *
 * Fast path, shared by both methods (one pass over n):
 *
 *   sample   |a| at m = clamp(n/128, 4096, 32768) elements, in runs of
 *            16 consecutive ones (a cache line) at stratified random
 *            offsets; the threshold t is the sample's rank that should
 *            leave k plus 2.5 standard deviations of candidates above it
 *            (about k * 1.14 at 1% of 10M)
 *   filter   a = u + r, r = a, collect (i, a) with |a| >= t   (vectorized,
 *            one mask test per 16 elements, appends only for hits; the
 *            residual of a candidate is zeroed on the spot)
 *   trim     c > k candidates: radix select among them gives the exact
 *            threshold T and how many entries equal to T to take (the first
 *            by index); every non-candidate is < t <= T, so the result is
 *            exactly the exact method's top-k. The few left out get their
 *            value back in the residual, with prefetched writes
 *
 * If the filter found too few candidates (exact, or EXACT_K: fewer than k;
 * sampled: fewer than 0.95 k) or more than the scratch holds, the exact
 * histogram path runs over r (which already holds a):
 *
 *   pass 1   histogram of |a| >> 20 -> the bucket B holding the k-th
 *            largest; extra passes on bits 19..9 and 8..0 narrow B while it
 *            is too big for the scratch (heavy ties, e.g. mostly zeros)
 *   pass 2   collect the elements >= B's lower bound, then trim as above;
 *            with massive ties at one exact value the final emission scans
 *            all n against that value instead
 *
 * So the exact method's result never depends on the sample, only its speed.
 */
#include "compress/cmp_topk.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/fl_alloc.h"
#include "common/fl_util.h"
#include "compress/cmp_internal.h"

#define HBITS 11
#define HBUCKETS (1u << HBITS)
#define HSHIFT 20      /* histogram level 1: |a| bits 30..20 */
#define MIN_SAMPLE 4096   /* sample n / 128 elements, at least 4096 ... */
#define MAX_SAMPLE 32768  /* ... and at most 32768 */
#define SAMPLE_DIV 128
#define SAMPLE_RUN 16     /* consecutive elements per stratum: a cache line */
#define SAMPLE_Z 2.5      /* margin in standard deviations (short: ~0.6%) */
#define VBLOCK 16      /* filter: elements per mask test */

struct cmp_topk {
    struct fl_rng rng;
    uint32_t *cand;   /* candidate indices; capacity cap */
    uint32_t *keys;   /* candidate value patterns; capacity cap */
    uint32_t *sample; /* the sample, then a copy of candidate magnitudes */
    size_t cap;
    size_t sample_cap;
    struct cmp_topk_stats stats;
    uint32_t hist[4][HBUCKETS];
};

/* one level of a radix select: the bits [shift, shift + width) of |a| */
struct level {
    unsigned shift;
    unsigned width;
};

static const struct level levels[3] = {{20, 11}, {9, 11}, {0, 9}};

/* GCC/clang vector extensions: SSE2 on x86-64, NEON on arm64, scalar code
 * elsewhere; no intrinsics except the optional movemask below. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f load4(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(float *p, v4f v)
{
    memcpy(p, &v, sizeof v);
}

/* bit l set when lane l of m is non-zero (lanes are 0 or -1) */
static inline unsigned lane_mask(v4i m)
{
#if defined(__SSE2__)
    return (unsigned)_mm_movemask_ps((__m128)m);
#else
    return (unsigned)(m[0] & 1) | (unsigned)(m[1] & 1) << 1 |
           (unsigned)(m[2] & 1) << 2 | (unsigned)(m[3] & 1) << 3;
#endif
}

static inline uint32_t abs_bits(float f)
{
    return cmp_f32_bits(f) & 0x7fffffffu;
}

struct cmp_topk *cmp_topk_new(uint64_t seed)
{
    struct cmp_topk *t = fl_calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    fl_rng_seed(&t->rng, seed);
    return t;
}

void cmp_topk_destroy(struct cmp_topk **tp)
{
    if (tp == NULL || *tp == NULL)
        return;
    struct cmp_topk *t = *tp;
    fl_free(t->cand);
    fl_free(t->keys);
    fl_free(t->sample);
    fl_free(t);
    *tp = NULL;
}

/* ------------------------------------------------------------ scratch */

static enum fl_err grow_u32(uint32_t **p, size_t *cap, size_t want)
{
    if (want <= *cap)
        return FL_OK;
    uint32_t *q = fl_malloc(want * sizeof *q);
    if (q == NULL)
        return FL_ERR_NOMEM;
    fl_free(*p);
    *p = q;
    *cap = want;
    return FL_OK;
}

/* Candidate capacity: the k winners plus max(k, 64K) more (sampling margin,
 * or the histogram path's boundary bucket, which is narrowed further when
 * it is bigger), plus one block of slack for the filter's appends. */
static size_t cand_capacity(size_t n, size_t k)
{
    const size_t extra = FL_MAX(k, (size_t)65536);
    return FL_MIN(n, k + extra) + VBLOCK + 1;
}

static size_t sample_size(size_t n)
{
    const size_t m = FL_MIN((size_t)MAX_SAMPLE, n / SAMPLE_DIV);
    return FL_MIN(n, FL_MAX((size_t)MIN_SAMPLE, m));
}

static enum fl_err reserve(struct cmp_topk *t, size_t n, size_t k)
{
    const size_t cap = cand_capacity(n, k);
    enum fl_err rc = FL_OK;

    if (cap > t->cap) {
        size_t cap_keys = t->cap;
        size_t cap_cand = t->cap;
        rc = grow_u32(&t->keys, &cap_keys, cap);
        if (rc == FL_OK)
            rc = grow_u32(&t->cand, &cap_cand, cap);
        if (rc == FL_OK) /* on failure keep the smaller, valid capacity */
            t->cap = cap;
    }
    if (rc == FL_OK)
        rc = grow_u32(&t->sample, &t->sample_cap,
                      FL_MAX(sample_size(n), cap));
    return rc;
}

/* ------------------------------------------------------------ radix */

/* Find the bucket of h[0, nb) holding the k-th largest, given that `above`
 * elements rank above every bucket of h; returns the bucket and adds the
 * counts of the buckets above it to *above. */
static uint32_t pick_bucket(const uint32_t *h, uint32_t nb, size_t k,
                            size_t *above)
{
    uint32_t b = nb - 1;
    size_t cum = 0;
    while (b > 0 && *above + cum + h[b] < k) {
        cum += h[b];
        b--;
    }
    *above += cum;
    return b;
}

/* The need-th largest (1 <= need <= m) of src[j] & smask, j < m. The
 * first level reads src and compacts its boundary bucket into scratch
 * (which may be src itself), later levels work in scratch. Returns the
 * value and stores in *gt how many are strictly greater. */
static uint32_t radix_select(const uint32_t *src, size_t m, uint32_t smask,
                             uint32_t *scratch, size_t need, uint32_t *hist,
                             size_t *gt)
{
    uint32_t prefix = 0;
    size_t above = 0;
    const uint32_t *in = src;
    for (size_t l = 0; l < FL_ARRAY_LEN(levels); l++) {
        const unsigned s = levels[l].shift;
        const uint32_t mask = (1u << levels[l].width) - 1;
        memset(hist, 0, (mask + 1) * sizeof *hist);
        for (size_t j = 0; j < m; j++)
            hist[((in[j] & smask) >> s) & mask]++;
        const uint32_t b = pick_bucket(hist, mask + 1, need, &above);
        prefix = (prefix << levels[l].width) | b;
        size_t w = 0;
        for (size_t j = 0; j < m; j++) {
            const uint32_t key = in[j] & smask;
            scratch[w] = key;
            w += ((key >> s) & mask) == b;
        }
        m = w;
        in = scratch;
    }
    *gt = above;
    return prefix;
}

/* ------------------------------------------------------------ filter */

/* a = u + r, r = a (fused; else a = u, read only), and collect the index
 * and bit pattern of every a with |a| >= tb, in index order; fused, the
 * residual of a candidate is zeroed on the spot (the caller puts back those
 * it does not select).
 *
 * Branches on streamed data are expensive here: a mispredicted one is only
 * resolved when its load arrives from memory. So each block of 16 stores
 * its first hit (or a dummy) unconditionally and advances the count by
 * (hits != 0); only blocks with two or more hits (rare at the densities of
 * interest) take a branch.
 *
 * Sets *count; returns 1 when more than the scratch holds were found: then
 * collection (and zeroing) stopped at *count, the rest of r is still
 * updated. */
static inline __attribute__((always_inline)) int
filter_kernel(float *r, const float *u, size_t n, uint32_t tb, uint32_t *ci,
              uint32_t *cv, size_t cap, size_t *count, const int fused)
{
    const int32_t thr1 = (int32_t)tb - 1; /* |a| > tb - 1, signed lanes */
    const v4i thr = {thr1, thr1, thr1, thr1};
    const v4i absm = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
    float blk[VBLOCK + 1];
    size_t c = 0;
    size_t i = 0;

    blk[VBLOCK] = 0.0f; /* the dummy "first hit" of a block without hits */
    for (; i + VBLOCK <= n && c + VBLOCK < cap; i += VBLOCK) {
        v4f x0 = load4(u + i);
        v4f x1 = load4(u + i + 4);
        v4f x2 = load4(u + i + 8);
        v4f x3 = load4(u + i + 12);
        if (fused) {
            x0 += load4(r + i);
            x1 += load4(r + i + 4);
            x2 += load4(r + i + 8);
            x3 += load4(r + i + 12);
        }
        const v4i m0 = ((v4i)x0 & absm) > thr;
        const v4i m1 = ((v4i)x1 & absm) > thr;
        const v4i m2 = ((v4i)x2 & absm) > thr;
        const v4i m3 = ((v4i)x3 & absm) > thr;
        if (fused) { /* r = a, zero where collected */
            store4(r + i, (v4f)((v4i)x0 & ~m0));
            store4(r + i + 4, (v4f)((v4i)x1 & ~m1));
            store4(r + i + 8, (v4f)((v4i)x2 & ~m2));
            store4(r + i + 12, (v4f)((v4i)x3 & ~m3));
        }
        unsigned hits = lane_mask(m0) | lane_mask(m1) << 4 |
                        lane_mask(m2) << 8 | lane_mask(m3) << 12;
        store4(blk, x0);
        store4(blk + 4, x1);
        store4(blk + 8, x2);
        store4(blk + 12, x3);
        const unsigned first = (unsigned)__builtin_ctz(hits | 1u << VBLOCK);
        ci[c] = (uint32_t)(i + first);
        cv[c] = cmp_f32_bits(blk[first]);
        c += hits != 0;
        hits &= hits - 1;
        while (hits != 0) {
            const unsigned l = (unsigned)__builtin_ctz(hits);
            ci[c] = (uint32_t)(i + l);
            cv[c] = cmp_f32_bits(blk[l]);
            c++;
            hits &= hits - 1;
        }
    }
    int overflow = 0;
    for (; i < n; i++) { /* tail, or everything after an overflow */
        const float x = fused ? u[i] + r[i] : u[i];
        if (fused)
            r[i] = x;
        if (abs_bits(x) < tb || overflow)
            continue;
        if (c + 1 >= cap) {
            overflow = 1;
            continue;
        }
        ci[c] = (uint32_t)i;
        cv[c++] = cmp_f32_bits(x);
        if (fused)
            r[i] = 0.0f;
    }
    *count = c;
    return overflow;
}

/* The two specializations (the flag is a compile-time constant in each). */
static int filter_fused(float *r, const float *u, size_t n, uint32_t tb,
                        uint32_t *ci, uint32_t *cv, size_t cap, size_t *count)
{
    return filter_kernel(r, u, n, tb, ci, cv, cap, count, 1);
}

static int filter_plain(const float *a, size_t n, uint32_t tb, uint32_t *ci,
                        uint32_t *cv, size_t cap, size_t *count)
{
    return filter_kernel(NULL, a, n, tb, ci, cv, cap, count, 0);
}

/* r[ci[j]] = bits cv[j] for j < m, with the targets prefetched for
 * writing some iterations ahead so that the misses overlap. */
#define PUT_AHEAD 24
static void put_back(float *r, const uint32_t *ci, const uint32_t *cv,
                     size_t m)
{
    for (size_t j = 0; j < m; j++) {
        if (j + PUT_AHEAD < m)
            __builtin_prefetch(r + ci[j + PUT_AHEAD], 1);
        r[ci[j]] = cmp_bits_f32(cv[j]);
    }
}

/* Emit the k largest of the c >= k candidates (ascending indices in
 * t->cand, value patterns in t->keys) into idx/val, in index order, ties
 * at the threshold going to the smaller indices. Exact top-k of the whole
 * tensor provided every element >= the k-th largest is a candidate. With
 * restore != NULL the candidates left out get their value back there. */
static size_t take_top(struct cmp_topk *t, size_t c, size_t k, uint32_t *idx,
                       float *val, float *restore)
{
    size_t gt;
    const uint32_t T = radix_select(t->keys, c, 0x7fffffffu, t->sample, k,
                                    t->hist[0], &gt);
    const size_t need_t = k - gt;
    size_t out = 0;
    size_t left = 0;
    size_t ties = 0;
    /* Most candidates are taken: the branch on `take` is well predicted.
     * The left-out ones are compacted in place to the front of cand/keys
     * (left <= j), and their values go back into the residual afterwards,
     * with prefetching: those writes hit lines that the filter streamed
     * out of the cache long ago, and one at a time they would cost a full
     * miss each. */
    for (size_t j = 0; j < c; j++) {
        const uint32_t key = t->keys[j];
        const uint32_t ab = key & 0x7fffffffu;
        const int take = ab > T || (ab == T && ties < need_t);
        ties += ab == T;
        if (take) {
            idx[out] = t->cand[j];
            val[out] = cmp_bits_f32(key);
            out++;
        } else {
            t->cand[left] = t->cand[j];
            t->keys[left] = key;
            left++;
        }
    }
    if (restore != NULL)
        put_back(restore, t->cand, t->keys, left);
    return out;
}

/* ------------------------------------------------------------ exact */

/* Level-1 histogram of |a| >> 20 into t->hist[0]. Four histograms break the
 * store-to-load dependency when consecutive elements fall into the same
 * bucket (they usually do). */
static void hist_pass(struct cmp_topk *t, const float *a, size_t n)
{
    uint32_t(*h)[HBUCKETS] = t->hist;
    size_t i = 0;
    memset(t->hist, 0, sizeof t->hist);
    for (; i + 4 <= n; i += 4) {
        h[0][abs_bits(a[i]) >> HSHIFT]++;
        h[1][abs_bits(a[i + 1]) >> HSHIFT]++;
        h[2][abs_bits(a[i + 2]) >> HSHIFT]++;
        h[3][abs_bits(a[i + 3]) >> HSHIFT]++;
    }
    for (; i < n; i++)
        h[0][abs_bits(a[i]) >> HSHIFT]++;
    for (uint32_t j = 0; j < HBUCKETS; j++)
        h[0][j] += h[1][j] + h[2][j] + h[3][j];
}

/* The boundary bucket: elements with (|a| >> shift) == prefix, bcnt of
 * them; `above` elements are greater. */
struct bucket {
    unsigned shift;
    uint32_t prefix;
    size_t above;
    size_t bcnt;
};

/* Rare path: one more pass over n splitting the boundary bucket on the next
 * bits; the histogram's extra last slot takes everything outside it. */
static void refine_bucket(struct cmp_topk *t, const float *a, size_t n,
                          size_t k, size_t level, struct bucket *bk)
{
    const unsigned s = levels[level].shift;
    const uint32_t mask = (1u << levels[level].width) - 1;
    uint32_t *h = t->hist[0];
    memset(h, 0, (mask + 2) * sizeof *h);
    for (size_t i = 0; i < n; i++) {
        const uint32_t ab = abs_bits(a[i]);
        const uint32_t slot = (ab >> s) & mask;
        h[(ab >> bk->shift) == bk->prefix ? slot : mask + 1]++;
    }
    const uint32_t b = pick_bucket(h, mask + 1, k, &bk->above);
    bk->prefix = (bk->prefix << levels[level].width) | b;
    bk->shift = s;
    bk->bcnt = h[b];
}

/* Massive ties: emit, scanning all n, everything above the exact value T
 * plus the first need_t elements equal to it. */
static size_t emit_all(const float *a, size_t n, uint32_t T, size_t need_t,
                       uint32_t *idx, float *val)
{
    size_t out = 0;
    size_t ties = 0;
    for (size_t i = 0; i < n; i++) {
        const uint32_t ab = abs_bits(a[i]);
        const int take = ab > T || (ab == T && ties < need_t);
        ties += ab == T;
        if (take) {
            idx[out] = (uint32_t)i;
            val[out] = a[i];
            out++;
        }
    }
    return out;
}

/* Exact selection over a (read only) by histograms. */
static size_t exact_hist(struct cmp_topk *t, const float *a, size_t n,
                         size_t k, uint32_t *idx, float *val)
{
    struct bucket bk = {HSHIFT, 0, 0, 0};

    hist_pass(t, a, n);
    bk.prefix = pick_bucket(t->hist[0], HBUCKETS, k, &bk.above);
    bk.bcnt = t->hist[0][bk.prefix];
    for (size_t l = 1; bk.above + bk.bcnt + VBLOCK >= t->cap && l < 3; l++)
        refine_bucket(t, a, n, k, l, &bk);
    if (bk.above + bk.bcnt + VBLOCK >= t->cap)
        return emit_all(a, n, bk.prefix, k - bk.above, idx, val);

    const uint32_t lower = bk.prefix << bk.shift;
    size_t c;
    filter_plain(a, n, lower, t->cand, t->keys, t->cap, &c);
    return take_top(t, c, k, idx, val, NULL);
}

/* ------------------------------------------------------------ sampled */

/* Threshold pattern from a stratified sample: m / SAMPLE_RUN strata of
 * `stride` elements, from each a run of SAMPLE_RUN consecutive elements at
 * a random offset (positions by multiply-shift, no division). A run costs
 * about one cache miss per array, like a single element, so the sample is
 * 16 times larger for the same time, and the threshold accordingly closer:
 * at 1% of 10M the sample holds ~330 elements above the k-th, and the rank
 * aims at that plus SAMPLE_Z standard deviations (~1/sqrt(330) = 5.5% each)
 * so that fewer than k candidates is rare (~0.6%) and trimming stays
 * cheap. Positions go to t->cand (free until the filter), values to
 * t->sample. Small tensors are sampled whole. */
#define PREFETCH_AHEAD 16
static uint32_t sample_threshold(struct cmp_topk *t, const float *r,
                                 const float *u, size_t n, size_t k)
{
    size_t m = sample_size(n);
    uint32_t *const s = t->sample;
    if (m >= n) {
        m = n;
        for (size_t i = 0; i < n; i++)
            s[i] = abs_bits(r != NULL ? u[i] + r[i] : u[i]);
    } else {
        /* m >= MIN_SAMPLE: runs >= 256, and stride >= SAMPLE_RUN as
         * runs <= m / SAMPLE_RUN <= n / SAMPLE_RUN */
        const size_t runs = m / SAMPLE_RUN;
        const uint64_t stride = n / runs;
        const uint64_t span = stride - SAMPLE_RUN + 1;
        uint32_t *const pos = t->cand;
        for (size_t j = 0; j < runs; j++) {
            const uint64_t x = fl_rng_next(&t->rng) >> 32;
            pos[j] = (uint32_t)(j * stride + ((x * span) >> 32));
        }
        m = runs * SAMPLE_RUN;
        for (size_t j = 0; j < runs; j++) {
            if (j + PREFETCH_AHEAD < runs) {
                const size_t q = pos[j + PREFETCH_AHEAD];
                __builtin_prefetch(u + q);
                __builtin_prefetch(u + q + SAMPLE_RUN - 1);
                if (r != NULL) {
                    __builtin_prefetch(r + q);
                    __builtin_prefetch(r + q + SAMPLE_RUN - 1);
                }
            }
            const size_t p = pos[j];
            uint32_t *const o = s + j * SAMPLE_RUN;
            for (size_t e = 0; e < SAMPLE_RUN; e++)
                o[e] = abs_bits(r != NULL ? u[p + e] + r[p + e] : u[p + e]);
        }
    }
    const double h = (double)k * (double)m / (double)n;
    double rank = ceil(h + SAMPLE_Z * sqrt(h) + 1.0);
    if (rank > (double)m)
        rank = (double)m;
    size_t gt;
    return radix_select(s, m, 0xffffffffu, s, (size_t)rank, t->hist[0], &gt);
}

/* The selection proper; residual handling included (see the top). */
static size_t select_k(struct cmp_topk *t, float *residual, const float *u,
                       size_t n, size_t k, size_t min_ok, uint32_t *idx,
                       float *val)
{
    const uint32_t tb = sample_threshold(t, residual, u, n, k);
    size_t c;
    int overflow;
    if (residual != NULL)
        overflow = filter_fused(residual, u, n, tb, t->cand, t->keys, t->cap,
                                &c);
    else
        overflow = filter_plain(u, n, tb, t->cand, t->keys, t->cap, &c);

    t->stats.last_candidates = c;
    if (!overflow && c > k)
        return take_top(t, c, k, idx, val, residual);
    if (!overflow && c >= min_ok) {
        for (size_t j = 0; j < c; j++) {
            idx[j] = t->cand[j];
            val[j] = cmp_bits_f32(t->keys[j]);
        }
        return c;
    }
    if (overflow)
        t->stats.fallback_overflow++;
    else
        t->stats.fallback_short++;
    if (residual == NULL)
        return exact_hist(t, u, n, k, idx, val);
    /* fall back: undo the zeroing, select from r (= a), zero the winners */
    for (size_t j = 0; j < c; j++)
        residual[t->cand[j]] = cmp_bits_f32(t->keys[j]);
    const size_t out = exact_hist(t, residual, n, k, idx, val);
    for (size_t j = 0; j < out; j++)
        residual[idx[j]] = 0.0f;
    return out;
}

/* ------------------------------------------------------------ API */

enum fl_err cmp_topk_select(struct cmp_topk *t, float *residual,
                            const float *update, size_t n, size_t k,
                            enum cmp_topk_method method, unsigned flags,
                            uint32_t *idx, float *val, size_t *k_out)
{
    if (t == NULL || update == NULL || idx == NULL || val == NULL ||
        k_out == NULL)
        return FL_ERR_INVALID_ARG;
    if (n == 0 || k == 0 || k > n || (uint64_t)n > UINT32_MAX)
        return FL_ERR_INVALID_ARG;
    if (method != CMP_TOPK_EXACT && method != CMP_TOPK_SAMPLED)
        return FL_ERR_UNSUPPORTED;
    /* All scratch is grown before the residual is touched. */
    const enum fl_err rc = reserve(t, n, k);
    if (rc != FL_OK)
        return rc;

    size_t min_ok = k;
    if (method == CMP_TOPK_SAMPLED && (flags & CMP_TOPK_EXACT_K) == 0)
        min_ok = k - k / 20;
    *k_out = select_k(t, residual, update, n, k, min_ok, idx, val);
    t->stats.calls++;
    return FL_OK;
}

void cmp_topk_get_stats(const struct cmp_topk *t, struct cmp_topk_stats *st)
{
    *st = t->stats;
}

void cmp_ef_add_error(float *residual, const uint32_t *idx, const float *orig,
                      const float *sent, size_t k)
{
    for (size_t j = 0; j < k; j++)
        residual[idx[j]] += orig[j] - sent[j];
}

void cmp_ef_restore(float *residual, const uint32_t *idx, const float *sent,
                    size_t k)
{
    for (size_t j = 0; j < k; j++)
        residual[idx[j]] += sent[j];
}
