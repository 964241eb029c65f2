/*
 * mdl_partition.c - IID and Dirichlet(alpha) splits of a labelled set.
 *
 * Everything is drawn from one xoshiro stream seeded with cfg->seed, in a
 * fixed order (IID: one shuffle; Dirichlet: per class, a shuffle of its
 * samples then nshards gamma draws; then the top-up's sample order), so the
 * same labels, config and seed give the same shards on every machine.
 */
#include "model/mdl_partition.h"

#include <math.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"

#define PART_MAX_CLASSES 256u

int mdl_partition_parse(const char *s, struct mdl_partition_config *cfg)
{
    static const char prefix[] = "dirichlet:";
    double alpha = 0.0;
    if (s == NULL || cfg == NULL)
        return -1;
    if (strcmp(s, "iid") == 0) {
        cfg->kind = MDL_PARTITION_IID;
        return 0;
    }
    if (strncmp(s, prefix, sizeof(prefix) - 1) != 0)
        return -1;
    if (fl_parse_double(s + sizeof(prefix) - 1, 0.0, 1e9, &alpha) != FL_OK ||
        !(alpha > 0.0))
        return -1;
    cfg->kind = MDL_PARTITION_DIRICHLET;
    cfg->alpha = alpha;
    return 0;
}

static void shuffle_u32(uint32_t *a, uint32_t n, struct fl_rng *rng)
{
    for (uint32_t i = n; i > 1; i--) {
        const uint32_t j = (uint32_t)fl_rng_below(rng, i);
        const uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static enum fl_err part_iid(uint32_t n, uint32_t nshards, struct fl_rng *rng,
                            uint32_t *shard_of)
{
    uint32_t *perm = fl_malloc((size_t)n * sizeof(*perm));
    if (perm == NULL)
        return FL_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    shuffle_u32(perm, n, rng);
    for (uint32_t i = 0; i < n; i++)
        shard_of[perm[i]] = i % nshards;
    fl_free(perm);
    return FL_OK;
}

/* Proportions p[0..nshards) ~ Dir(alpha) as cumulative sums in cum[]. With a
 * tiny alpha every gamma draw can underflow to 0; then one shard, drawn
 * uniformly, takes the whole class (the limit of Dir(alpha -> 0)). */
static void dirichlet_cumulative(struct fl_rng *rng, double alpha,
                                 uint32_t nshards, double *cum)
{
    double sum = 0.0;
    for (uint32_t j = 0; j < nshards; j++) {
        const double g = fl_rng_gamma(rng, alpha);
        sum += g;
        cum[j] = sum;
    }
    if (!(sum > 0.0)) {
        const uint32_t pick = (uint32_t)fl_rng_below(rng, nshards);
        for (uint32_t j = 0; j < nshards; j++)
            cum[j] = j >= pick ? 1.0 : 0.0;
        return;
    }
    for (uint32_t j = 0; j < nshards; j++)
        cum[j] /= sum;
    cum[nshards - 1] = 1.0;
}

static enum fl_err part_dirichlet(const uint8_t *labels, uint32_t n,
                                  uint32_t nclasses, double alpha,
                                  uint32_t nshards, struct fl_rng *rng,
                                  uint32_t *shard_of)
{
    enum fl_err rc = FL_OK;
    uint32_t start[PART_MAX_CLASSES + 1] = {0};
    uint32_t *byclass = fl_malloc((size_t)n * sizeof(*byclass));
    double *cum = fl_malloc((size_t)nshards * sizeof(*cum));
    if (byclass == NULL || cum == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    /* counting sort of the sample indices by class */
    for (uint32_t i = 0; i < n; i++)
        start[labels[i] + 1]++;
    for (uint32_t c = 0; c < nclasses; c++)
        start[c + 1] += start[c];
    {
        uint32_t fill[PART_MAX_CLASSES];
        memcpy(fill, start, sizeof(fill));
        for (uint32_t i = 0; i < n; i++)
            byclass[fill[labels[i]]++] = i;
    }
    for (uint32_t c = 0; c < nclasses; c++) {
        uint32_t *const cls = byclass + start[c];
        const uint32_t cnt = start[c + 1] - start[c];
        uint32_t k = 0;
        shuffle_u32(cls, cnt, rng);
        dirichlet_cumulative(rng, alpha, nshards, cum);
        for (uint32_t j = 0; j < nshards; j++) {
            const uint32_t end = (uint32_t)(cum[j] * cnt + 0.5);
            for (; k < end && k < cnt; k++)
                shard_of[cls[k]] = j;
        }
        for (; k < cnt; k++) /* rounding guard; cum ends at 1.0 */
            shard_of[cls[k]] = nshards - 1;
    }
out:
    fl_free(cum);
    fl_free(byclass);
    return rc;
}

static uint32_t largest_shard(const uint32_t *count, uint32_t nshards)
{
    uint32_t best = 0;
    for (uint32_t j = 1; j < nshards; j++)
        if (count[j] > count[best])
            best = j;
    return best;
}

/*
 * Bring every shard up to min_shard. First plan the moves on the counts
 * alone: each missing sample is taken from the shard that is largest at
 * that moment (a donor always keeps more than min_shard, so donors and
 * receivers never mix). Then one pass over the samples in a seeded random
 * order hands each donor's first `give[donor]` samples to its receivers.
 */
static enum fl_err top_up(uint32_t n, uint32_t nshards, uint32_t min_shard,
                          struct fl_rng *rng, uint32_t *shard_of)
{
    enum fl_err rc = FL_OK;
    uint32_t *count = fl_calloc(nshards, sizeof(*count));
    uint32_t *give = fl_calloc((size_t)nshards + 1, sizeof(*give));
    uint32_t *to = NULL, *order = NULL;
    uint32_t nmoves = 0;
    if (count == NULL || give == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < n; i++)
        count[shard_of[i]]++;
    for (uint32_t s = 0; s < nshards; s++)
        if (count[s] < min_shard)
            nmoves += min_shard - count[s];
    if (nmoves == 0)
        goto out;
    to = fl_malloc((size_t)nmoves * 2 * sizeof(*to));
    order = fl_malloc((size_t)n * sizeof(*order));
    if (to == NULL || order == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    /* to[0..nmoves): donor of move m; to[nmoves..): receiver of move m */
    for (uint32_t s = 0, m = 0; s < nshards; s++) {
        while (count[s] < min_shard) {
            const uint32_t d = largest_shard(count, nshards);
            count[d]--;
            count[s]++;
            to[m] = d;
            to[nmoves + m] = s;
            give[d + 1]++;
            m++;
        }
    }
    /* group receivers by donor: give[d]..give[d+1) becomes donor d's range
     * of receivers; order[] is borrowed as scratch (nmoves <= n) */
    for (uint32_t s = 0; s < nshards; s++)
        give[s + 1] += give[s];
    for (uint32_t s = 0; s < nshards; s++)
        count[s] = give[s]; /* cursor per donor */
    for (uint32_t m = 0; m < nmoves; m++)
        order[count[to[m]]++] = to[nmoves + m];
    memcpy(to, order, (size_t)nmoves * sizeof(*to));
    /* to[give[d] .. give[d+1]) are donor d's receivers, in plan order */
    for (uint32_t i = 0; i < n; i++)
        order[i] = i;
    shuffle_u32(order, n, rng);
    for (uint32_t s = 0; s < nshards; s++)
        count[s] = give[s]; /* cursor into to[] per donor */
    for (uint32_t k = 0; k < n; k++) {
        const uint32_t i = order[k], d = shard_of[i];
        if (count[d] < give[d + 1])
            shard_of[i] = to[count[d]++];
    }
out:
    fl_free(order);
    fl_free(to);
    fl_free(give);
    fl_free(count);
    return rc;
}

enum fl_err mdl_partition(const uint8_t *labels, uint32_t n,
                          uint32_t nclasses,
                          const struct mdl_partition_config *cfg,
                          uint32_t *shard_of)
{
    struct fl_rng rng;
    enum fl_err rc = FL_OK;
    if (labels == NULL || cfg == NULL || shard_of == NULL ||
        cfg->nshards == 0 || nclasses == 0 || nclasses > PART_MAX_CLASSES ||
        (uint64_t)cfg->nshards * cfg->min_shard > n)
        return FL_ERR_INVALID_ARG;
    if (cfg->kind == MDL_PARTITION_DIRICHLET &&
        !(cfg->alpha > 0.0 && isfinite(cfg->alpha)))
        return FL_ERR_INVALID_ARG;
    if (cfg->kind != MDL_PARTITION_IID &&
        cfg->kind != MDL_PARTITION_DIRICHLET)
        return FL_ERR_INVALID_ARG;
    for (uint32_t i = 0; i < n; i++)
        if (labels[i] >= nclasses)
            return FL_ERR_INVALID_ARG;
    fl_rng_seed(&rng, cfg->seed);
    if (cfg->kind == MDL_PARTITION_IID)
        rc = part_iid(n, cfg->nshards, &rng, shard_of);
    else
        rc = part_dirichlet(labels, n, nclasses, cfg->alpha, cfg->nshards,
                            &rng, shard_of);
    if (rc == FL_OK && cfg->min_shard > 0)
        rc = top_up(n, cfg->nshards, cfg->min_shard, &rng, shard_of);
    return rc;
}

enum fl_err mdl_partition_indices(const uint32_t *shard_of, uint32_t n,
                                  uint32_t s, uint32_t **idx,
                                  uint32_t *count)
{
    uint32_t c = 0;
    uint32_t *out = NULL;
    if (shard_of == NULL || idx == NULL || count == NULL)
        return FL_ERR_INVALID_ARG;
    for (uint32_t i = 0; i < n; i++)
        c += shard_of[i] == s;
    out = fl_malloc((size_t)FL_MAX(c, 1u) * sizeof(*out));
    if (out == NULL)
        return FL_ERR_NOMEM;
    for (uint32_t i = 0, k = 0; i < n; i++)
        if (shard_of[i] == s)
            out[k++] = i;
    *idx = out;
    *count = c;
    return FL_OK;
}
