#include "coordinator/coord_models.h"

#include <string.h>

#include "common/fl_alloc.h"

/* One cached payload. Allocated one by one, so that a payload handed out
 * stays put while the table grows. */
struct entry {
    bool valid;
    struct coord_payload_key key;
    struct coord_payload p;
    uint8_t *buf;                /* owned, capacity cap */
    size_t cap;
};

struct coord_models {
    size_t dim;
    uint32_t keep;
    float **ring;                /* keep buffers; ring[cur] is current */
    uint64_t *ver;               /* version held by each; 0 = none */
    uint32_t cur;
    struct entry **cache;
    size_t ncache;
    uint64_t stores;
};

enum fl_err coord_models_new(size_t dim, uint32_t keep, const float *init,
                             uint64_t version, struct coord_models **out)
{
    *out = NULL;
    if (dim == 0 || keep == 0 || keep > 1024 || version == 0 ||
        init == NULL || dim > SIZE_MAX / sizeof(float))
        return FL_ERR_INVALID_ARG;
    struct coord_models *m = fl_calloc(1, sizeof(*m));
    if (m == NULL)
        return FL_ERR_NOMEM;
    m->dim = dim;
    m->keep = keep;
    m->ring = fl_calloc(keep, sizeof(*m->ring));
    m->ver = fl_calloc(keep, sizeof(*m->ver));
    if (m->ring == NULL || m->ver == NULL)
        goto out_free;
    for (uint32_t i = 0; i < keep; i++) {
        m->ring[i] = fl_malloc(dim * sizeof(float));
        if (m->ring[i] == NULL)
            goto out_free;
    }
    memcpy(m->ring[0], init, dim * sizeof(float));
    m->ver[0] = version;
    *out = m;
    return FL_OK;
out_free:
    coord_models_destroy(&m);
    return FL_ERR_NOMEM;
}

void coord_models_destroy(struct coord_models **mp)
{
    if (mp == NULL || *mp == NULL)
        return;
    struct coord_models *m = *mp;
    if (m->ring != NULL) {
        for (uint32_t i = 0; i < m->keep; i++)
            fl_free(m->ring[i]);
    }
    for (size_t i = 0; i < m->ncache; i++) {
        fl_free(m->cache[i]->buf);
        fl_free(m->cache[i]);
    }
    fl_free(m->cache);
    fl_free(m->ring);
    fl_free(m->ver);
    fl_free(m);
    *mp = NULL;
}

const float *coord_models_current(const struct coord_models *m)
{
    return m->ring[m->cur];
}

uint64_t coord_models_version(const struct coord_models *m)
{
    return m->ver[m->cur];
}

const float *coord_models_find(const struct coord_models *m,
                               uint64_t version)
{
    if (version == 0)
        return NULL;
    for (uint32_t i = 0; i < m->keep; i++) {
        if (m->ver[i] == version)
            return m->ring[i];
    }
    return NULL;
}

static void drop_payloads(struct coord_models *m)
{
    for (size_t i = 0; i < m->ncache; i++)
        m->cache[i]->valid = false;
}

float *coord_models_oldest(struct coord_models *m)
{
    return m->ring[(m->cur + 1) % m->keep];
}

void coord_models_push(struct coord_models *m, uint64_t version)
{
    m->cur = (m->cur + 1) % m->keep;
    m->ver[m->cur] = version;
    drop_payloads(m);
}

float *coord_models_push_buffer(struct coord_models *m, float *buf,
                                uint64_t version)
{
    const uint32_t next = (m->cur + 1) % m->keep;
    float *const old = m->ring[next];
    m->ring[next] = buf;
    coord_models_push(m, version);
    return old;
}

void coord_models_reset(struct coord_models *m, const float *params,
                        uint64_t version)
{
    memmove(m->ring[m->cur], params, m->dim * sizeof(float));
    for (uint32_t i = 0; i < m->keep; i++)
        m->ver[i] = i == m->cur ? version : 0;
    drop_payloads(m);
}

struct coord_payload_key coord_payload_key(enum coord_payload_kind kind,
                                           uint64_t base,
                                           enum cmp_codec codec, int level)
{
    if (codec != CMP_CODEC_ZSTD)
        level = 0;
    else if (level < CMP_ZSTD_LEVEL_MIN)
        level = CMP_ZSTD_LEVEL_MIN;
    else if (level > CMP_ZSTD_LEVEL_MAX)
        level = CMP_ZSTD_LEVEL_MAX;
    return (struct coord_payload_key){kind, base, codec, level};
}

static bool same_key(const struct coord_payload_key *a,
                     const struct coord_payload_key *b)
{
    return a->kind == b->kind && a->base == b->base &&
           a->codec == b->codec && a->level == b->level;
}

const struct coord_payload *
coord_models_cached(const struct coord_models *m,
                    const struct coord_payload_key *key)
{
    for (size_t i = 0; i < m->ncache; i++) {
        const struct entry *e = m->cache[i];
        if (e->valid && same_key(&e->key, key))
            return &e->p;
    }
    return NULL;
}

/* The entry to fill for key: the one holding it, a free one or a new one;
 * NULL when out of memory. */
static struct entry *slot_for(struct coord_models *m,
                              const struct coord_payload_key *key)
{
    struct entry *free_slot = NULL;
    for (size_t i = 0; i < m->ncache; i++) {
        struct entry *e = m->cache[i];
        if (e->valid && same_key(&e->key, key))
            return e;
        if (!e->valid && free_slot == NULL)
            free_slot = e;
    }
    if (free_slot != NULL)
        return free_slot;
    struct entry **grown =
        fl_realloc(m->cache, (m->ncache + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    m->cache = grown;
    struct entry *e = fl_calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    m->cache[m->ncache++] = e;
    return e;
}

enum fl_err coord_models_store(struct coord_models *m,
                               const struct coord_payload_key *key,
                               const struct cmp_meta *meta,
                               const uint8_t *bytes, size_t len,
                               const struct coord_payload **out)
{
    *out = NULL;
    struct entry *e = slot_for(m, key);
    if (e == NULL)
        return FL_ERR_NOMEM;
    e->valid = false;
    if (len > e->cap) {
        uint8_t *nb = fl_realloc(e->buf, len);
        if (nb == NULL)
            return FL_ERR_NOMEM;
        e->buf = nb;
        e->cap = len;
    }
    if (len > 0)
        memcpy(e->buf, bytes, len);
    e->key = *key;
    e->p = (struct coord_payload){
        .kind = key->kind,
        .version = coord_models_version(m),
        .base_version = key->base,
        .meta = *meta,
        .level = key->level,
        .data = e->buf,
        .len = len,
    };
    e->valid = true;
    m->stores++;
    *out = &e->p;
    return FL_OK;
}

uint64_t coord_models_stores(const struct coord_models *m)
{
    return m->stores;
}
