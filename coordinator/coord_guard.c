#include "coordinator/coord_guard.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"

/* One update held back because it is among the heaviest of the attempt. */
struct held {
    double weight;
    size_t k;
    size_t cap;               /* entries idx/val can take */
    uint32_t *idx;
    float *val;
};

/* Penalty state of one device, by coord_device.index. */
struct strikes {
    uint32_t count;           /* refusals in a row */
    uint64_t until;           /* ignored in rounds < until; 0 = not boxed */
    uint64_t told;            /* last round a Reject 52 was sent (+1) */
};

struct coord_guard {
    struct coord_guard_config cfg;

    /* the attempt */
    struct held *held;        /* nheld_max slots */
    size_t nheld_max;
    size_t nheld;
    double folded_max;        /* heaviest weight folded at once */
    uint32_t count;
    double *norms;            /* norms of the updates accepted */
    size_t nnorms;
    size_t norms_cap;

    double ref_median;        /* of the last committed round; 0 = none */

    struct strikes *dev;
    size_t ndev;
    size_t boxed;
};

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a;
    const double y = *(const double *)b;
    return (x > y) - (x < y);
}

enum fl_err coord_guard_new(const struct coord_guard_config *cfg,
                            struct coord_guard **out)
{
    struct coord_guard *g;
    *out = NULL;
    if (!(cfg->max_share >= COORD_SHARE_MIN && cfg->max_share <= 1) ||
        !(cfg->max_norm >= 0) || !isfinite(cfg->max_norm) ||
        !(cfg->norm_factor >= 0) || !isfinite(cfg->norm_factor) ||
        (cfg->penalty_after > 0 && cfg->penalty_rounds == 0))
        return FL_ERR_INVALID_ARG;
    g = fl_calloc(1, sizeof(*g));
    if (g == NULL)
        return FL_ERR_NOMEM;
    g->cfg = *cfg;
    /* 1e-9: a share of exactly 1/m must give m - 1, not m */
    g->nheld_max = (size_t)ceil(1.0 / cfg->max_share - 1e-9) - 1;
    if (g->nheld_max > 0) {
        g->held = fl_calloc(g->nheld_max, sizeof(*g->held));
        if (g->held == NULL) {
            fl_free(g);
            return FL_ERR_NOMEM;
        }
    }
    *out = g;
    return FL_OK;
}

void coord_guard_destroy(struct coord_guard **gp)
{
    struct coord_guard *g;
    if (gp == NULL || *gp == NULL)
        return;
    g = *gp;
    for (size_t i = 0; i < g->nheld_max; i++) {
        fl_free(g->held[i].idx);
        fl_free(g->held[i].val);
    }
    fl_free(g->held);
    fl_free(g->norms);
    fl_free(g->dev);
    fl_free(g);
    *gp = NULL;
}

/* ---- norm bound */

double coord_guard_norm_bound(const struct coord_guard *g)
{
    double b = INFINITY;
    if (g->cfg.max_norm > 0)
        b = g->cfg.max_norm;
    if (g->cfg.norm_factor > 0 && g->ref_median > 0)
        b = fmin(b, g->cfg.norm_factor * g->ref_median);
    return b;
}

enum fl_err coord_guard_check_norm(const struct coord_guard *g, double norm)
{
    return norm <= coord_guard_norm_bound(g) ? FL_OK : FL_ERR_NORM;
}

/* ---- aggregation */

static enum fl_err note_norm(struct coord_guard *g, double norm)
{
    if (g->nnorms == g->norms_cap) {
        const size_t cap = g->norms_cap == 0 ? 16 : 2 * g->norms_cap;
        double *n = fl_realloc(g->norms, cap * sizeof(*n));
        if (n == NULL)
            return FL_ERR_NOMEM;
        g->norms = n;
        g->norms_cap = cap;
    }
    g->norms[g->nnorms++] = norm;
    return FL_OK;
}

static enum fl_err reserve_held(struct held *h, size_t k)
{
    if (k <= h->cap)
        return FL_OK;
    uint32_t *idx = fl_realloc(h->idx, k * sizeof(*idx));
    if (idx == NULL)
        return FL_ERR_NOMEM;
    h->idx = idx;
    float *val = fl_realloc(h->val, k * sizeof(*val));
    if (val == NULL)
        return FL_ERR_NOMEM;
    h->val = val;
    h->cap = k;
    return FL_OK;
}

static enum fl_err fold(struct coord_guard *g, struct coord_agg *a,
                        const uint32_t *idx, const float *val, size_t k,
                        double weight)
{
    FL_FORWARD_ERR(coord_agg_add(a, idx, val, k, weight));
    g->folded_max = fmax(g->folded_max, weight);
    return FL_OK;
}

/* The slot a new update of weight w goes into: a free one, or the
 * lightest held one when w is heavier (*evict = 1: fold it first);
 * NULL when the update is to be folded at once. */
static struct held *slot_for(struct coord_guard *g, double w, int *evict)
{
    struct held *light = NULL;
    *evict = 0;
    if (g->nheld_max == 0)
        return NULL;
    if (g->nheld < g->nheld_max)
        return &g->held[g->nheld];
    for (size_t i = 0; i < g->nheld; i++) {
        if (light == NULL || g->held[i].weight < light->weight)
            light = &g->held[i];
    }
    if (!(w > light->weight))
        return NULL;
    *evict = 1;
    return light;
}

enum fl_err coord_guard_add(struct coord_guard *g, struct coord_agg *a,
                            const uint32_t *idx, const float *val, size_t k,
                            double weight, double norm)
{
    int evict = 0;
    if (!(weight > 0) || !isfinite(weight) || k > coord_agg_dim(a))
        return FL_ERR_INVALID_ARG;
    struct held *h = slot_for(g, weight, &evict);
    if (h == NULL) {
        FL_FORWARD_ERR(note_norm(g, norm));
        const enum fl_err rc = fold(g, a, idx, val, k, weight);
        if (rc != FL_OK) {
            g->nnorms--;
            return rc;
        }
        g->count++;
        return FL_OK;
    }
    /* Everything that can fail happens before anything changes. */
    FL_FORWARD_ERR(reserve_held(h, k));
    FL_FORWARD_ERR(note_norm(g, norm));
    if (evict) {
        const enum fl_err rc = fold(g, a, h->idx, h->val, h->k, h->weight);
        if (rc != FL_OK) {
            g->nnorms--;
            return rc;
        }
    } else {
        g->nheld++;
    }
    memcpy(h->idx, idx, k * sizeof(*idx));
    memcpy(h->val, val, k * sizeof(*val));
    h->k = k;
    h->weight = weight;
    g->count++;
    return FL_OK;
}

uint32_t coord_guard_count(const struct coord_guard *g) { return g->count; }

/* The cap for held weights h (sorted, heaviest first) over folded ones of
 * total f and maximum fmax (all <= the lightest held one). */
static double cap_sorted(const double *h, size_t nh, double f, double fmax,
                         double s)
{
    double total = f;
    for (size_t i = 0; i < nh; i++)
        total += h[i];
    if (nh == 0 || h[0] <= s * total)
        return INFINITY;
    /* m devices above the cap c hold m * c; the rest r: c = s (m c + r) */
    double above = 0;
    for (size_t m = 1; m <= nh; m++) {
        above += h[m - 1];
        if (1.0 - s * (double)m <= 0)
            break;
        const double c = s * (total - above) / (1.0 - s * (double)m);
        const double next = m < nh ? h[m] : fmax;
        if (c > 0 && c >= next) /* c == 0: nobody left below the cap */
            return c;
    }
    /* Fewer updates than 1/s: the plain mean is the best there is. With
     * folded updates this cannot happen (see the header); the heaviest
     * folded weight is the safe answer then. */
    return f > 0 ? fmax : h[nh - 1];
}

double coord_share_cap(const double *w, size_t n, double max_share)
{
    double *h;
    double c;
    if (n == 0 || !(max_share > 0) || max_share >= 1)
        return INFINITY;
    h = malloc(n * sizeof(*h));
    if (h == NULL)
        return INFINITY;
    memcpy(h, w, n * sizeof(*h));
    qsort(h, n, sizeof(*h), cmp_double);
    for (size_t i = 0; i < n / 2; i++) { /* heaviest first */
        const double t = h[i];
        h[i] = h[n - 1 - i];
        h[n - 1 - i] = t;
    }
    c = cap_sorted(h, n, 0, 0, max_share);
    free(h);
    return c;
}

enum fl_err coord_guard_finish(struct coord_guard *g, struct coord_agg *a,
                               uint32_t *capped)
{
    double w[32];
    uint32_t n = 0;
    enum fl_err rc = FL_OK;
    if (capped != NULL)
        *capped = 0;
    if (g->nheld == 0)
        return FL_OK;
    if (g->nheld > FL_ARRAY_LEN(w))
        return FL_ERR_INVALID_ARG; /* unreachable: COORD_SHARE_MIN */
    for (size_t i = 0; i < g->nheld; i++)
        w[i] = g->held[i].weight;
    qsort(w, g->nheld, sizeof(*w), cmp_double);
    for (size_t i = 0; i < g->nheld / 2; i++) {
        const double t = w[i];
        w[i] = w[g->nheld - 1 - i];
        w[g->nheld - 1 - i] = t;
    }
    const double c = cap_sorted(w, g->nheld, coord_agg_weight(a),
                                g->folded_max, g->cfg.max_share);
    for (size_t i = 0; i < g->nheld && rc == FL_OK; i++) {
        const struct held *h = &g->held[i];
        const double wi = h->weight > c ? c : h->weight;
        n += h->weight > c;
        rc = coord_agg_add(a, h->idx, h->val, h->k, wi);
    }
    g->nheld = 0;
    if (capped != NULL)
        *capped = n;
    return rc;
}

static void clear_attempt(struct coord_guard *g)
{
    g->nheld = 0;
    g->folded_max = 0;
    g->count = 0;
    g->nnorms = 0;
}

void coord_guard_committed(struct coord_guard *g)
{
    if (g->nnorms > 0) {
        qsort(g->norms, g->nnorms, sizeof(*g->norms), cmp_double);
        const size_t n = g->nnorms;
        g->ref_median = n % 2 == 1
                            ? g->norms[n / 2]
                            : 0.5 * (g->norms[n / 2 - 1] + g->norms[n / 2]);
    }
    clear_attempt(g);
}

void coord_guard_discard(struct coord_guard *g) { clear_attempt(g); }

/* ---- penalty box */

static struct strikes *dev_slot(struct coord_guard *g, uint32_t dev)
{
    if (dev >= g->ndev) {
        size_t n = g->ndev == 0 ? 64 : g->ndev;
        while (n <= dev)
            n *= 2;
        struct strikes *d = fl_realloc(g->dev, n * sizeof(*d));
        if (d == NULL)
            return NULL;
        memset(d + g->ndev, 0, (n - g->ndev) * sizeof(*d));
        g->dev = d;
        g->ndev = n;
    }
    return &g->dev[dev];
}

bool coord_guard_strike(struct coord_guard *g, uint32_t dev,
                        uint64_t first_round)
{
    if (g->cfg.penalty_after == 0)
        return false;
    struct strikes *s = dev_slot(g, dev);
    if (s == NULL || s->until != 0)
        return false;
    if (++s->count < g->cfg.penalty_after)
        return false;
    s->until = first_round + g->cfg.penalty_rounds;
    s->told = 0;
    g->boxed++;
    return true;
}

void coord_guard_forgive(struct coord_guard *g, uint32_t dev)
{
    if (dev < g->ndev && g->dev[dev].until == 0)
        g->dev[dev].count = 0;
}

bool coord_guard_ignored(struct coord_guard *g, uint32_t dev, uint64_t round)
{
    if (g->boxed == 0 || dev >= g->ndev || g->dev[dev].until == 0)
        return false;
    struct strikes *s = &g->dev[dev];
    if (round < s->until)
        return true;
    s->until = 0;
    s->count = 0;
    g->boxed--;
    return false;
}

bool coord_guard_first_drop(struct coord_guard *g, uint32_t dev,
                            uint64_t round)
{
    if (dev >= g->ndev || g->dev[dev].told == round + 1)
        return false;
    g->dev[dev].told = round + 1;
    return true;
}

size_t coord_guard_boxed(const struct coord_guard *g) { return g->boxed; }

/* ---- logging */

const char *coord_escape(const char *s, char *buf, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (s == NULL)
        s = "(null)";
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0';
         p++) {
        const int plain = *p >= 0x20 && *p < 0x7f && *p != '\\' &&
                          *p != '\'';
        if (o + (plain ? 1 : 4) >= len) { /* no room: end with "..." */
            if (len >= 4) {
                o = o + 3 < len ? o : len - 4;
                memcpy(buf + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (plain) {
            buf[o++] = (char)*p;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[*p >> 4];
            buf[o++] = hex[*p & 15];
        }
    }
    buf[o] = '\0';
    return buf;
}
