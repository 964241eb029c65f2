#include "coordinator/coord_devtab.h"

#include <string.h>

#include "common/fl_alloc.h"

/* Open addressing with linear probing. A slot holds index + 1 of a device
 * record, 0 when empty. Capacities are powers of two, kept at least twice
 * the number of keys. Deletion (routing ids only) shifts the following
 * cluster back, so no tombstones are needed. */
struct hslots {
    uint32_t *slot;
    size_t cap;                  /* power of two */
    size_t used;
};

struct coord_devtab {
    struct coord_device **devs;
    size_t count;
    size_t cap;
    size_t max;
    struct hslots by_id;
    struct hslots by_rid;
};

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_id(const struct coord_device *d)
{
    return fnv1a((const uint8_t *)d->id, strlen(d->id));
}

static uint64_t hash_rid(const struct coord_device *d)
{
    return fnv1a(d->rid, d->rid_len);
}

bool coord_device_id_valid(const char *id)
{
    size_t n = 0;
    if (id == NULL)
        return false;
    for (; id[n] != '\0'; n++) {
        const char c = id[n];
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                        c == ':' || c == '-';
        if (!ok || n >= COORD_ID_MAX)
            return false;
    }
    return n >= 1;
}

static enum fl_err hslots_init(struct hslots *h, size_t cap)
{
    h->slot = fl_calloc(cap, sizeof(uint32_t));
    if (h->slot == NULL)
        return FL_ERR_NOMEM;
    h->cap = cap;
    h->used = 0;
    return FL_OK;
}

enum fl_err coord_devtab_new(size_t max_devices, struct coord_devtab **out)
{
    struct coord_devtab *t = fl_calloc(1, sizeof(*t));
    *out = NULL;
    if (t == NULL)
        return FL_ERR_NOMEM;
    t->max = max_devices == 0 || max_devices > COORD_DEVICES_MAX
                 ? COORD_DEVICES_MAX
                 : max_devices;
    if (hslots_init(&t->by_id, 64) != FL_OK ||
        hslots_init(&t->by_rid, 64) != FL_OK) {
        coord_devtab_destroy(&t);
        return FL_ERR_NOMEM;
    }
    *out = t;
    return FL_OK;
}

void coord_devtab_destroy(struct coord_devtab **tp)
{
    struct coord_devtab *t;
    if (tp == NULL || *tp == NULL)
        return;
    t = *tp;
    for (size_t i = 0; i < t->count; i++)
        fl_free(t->devs[i]);
    fl_free(t->devs);
    fl_free(t->by_id.slot);
    fl_free(t->by_rid.slot);
    fl_free(t);
    *tp = NULL;
}

size_t coord_devtab_count(const struct coord_devtab *t) { return t->count; }

struct coord_device *coord_devtab_at(const struct coord_devtab *t, size_t i)
{
    return i < t->count ? t->devs[i] : NULL;
}

size_t coord_devtab_connected(const struct coord_devtab *t)
{
    return t->by_rid.used;
}

/* ---- generic probing; `hash` and `same` pick the key */

static void hslots_put(struct hslots *h, uint64_t hv, uint32_t value)
{
    size_t i = (size_t)hv & (h->cap - 1);
    while (h->slot[i] != 0)
        i = (i + 1) & (h->cap - 1);
    h->slot[i] = value;
    h->used++;
}

static enum fl_err hslots_grow(struct coord_devtab *t, struct hslots *h,
                               uint64_t (*hash)(const struct coord_device *))
{
    struct hslots n;
    if ((h->used + 1) * 2 <= h->cap)
        return FL_OK;
    FL_FORWARD_ERR(hslots_init(&n, h->cap * 2));
    for (size_t i = 0; i < h->cap; i++) {
        const uint32_t v = h->slot[i];
        if (v != 0)
            hslots_put(&n, hash(t->devs[v - 1]), v);
    }
    fl_free(h->slot);
    *h = n;
    return FL_OK;
}

struct coord_device *coord_devtab_by_id(const struct coord_devtab *t,
                                        const char *id)
{
    const struct hslots *h = &t->by_id;
    size_t i = (size_t)fnv1a((const uint8_t *)id, strlen(id)) & (h->cap - 1);
    for (; h->slot[i] != 0; i = (i + 1) & (h->cap - 1)) {
        struct coord_device *d = t->devs[h->slot[i] - 1];
        if (strcmp(d->id, id) == 0)
            return d;
    }
    return NULL;
}

/* Slot position of rid in the rid table, or cap when absent. */
static size_t rid_pos(const struct coord_devtab *t, const uint8_t *rid,
                      size_t rid_len)
{
    const struct hslots *h = &t->by_rid;
    size_t i = (size_t)fnv1a(rid, rid_len) & (h->cap - 1);
    for (; h->slot[i] != 0; i = (i + 1) & (h->cap - 1)) {
        const struct coord_device *d = t->devs[h->slot[i] - 1];
        if (d->rid_len == rid_len && memcmp(d->rid, rid, rid_len) == 0)
            return i;
    }
    return h->cap;
}

struct coord_device *coord_devtab_by_rid(const struct coord_devtab *t,
                                         const uint8_t *rid, size_t rid_len)
{
    if (rid_len == 0 || rid_len > COORD_RID_MAX)
        return NULL;
    const size_t i = rid_pos(t, rid, rid_len);
    return i == t->by_rid.cap ? NULL : t->devs[t->by_rid.slot[i] - 1];
}

void coord_devtab_unbind(struct coord_devtab *t, struct coord_device *d)
{
    struct hslots *h = &t->by_rid;
    const size_t mask = h->cap - 1;
    if (d->rid_len == 0)
        return;
    size_t i = rid_pos(t, d->rid, d->rid_len);
    if (i == h->cap) {
        d->rid_len = 0;
        return;
    }
    /* Backward-shift deletion: move later members of the cluster into the
     * hole unless their home slot lies cyclically in (hole, j]. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (h->slot[j] == 0)
            break;
        const size_t home =
            (size_t)hash_rid(t->devs[h->slot[j] - 1]) & mask;
        const bool stays = i <= j ? (i < home && home <= j)
                                  : (i < home || home <= j);
        if (stays)
            continue;
        h->slot[i] = h->slot[j];
        i = j;
    }
    h->slot[i] = 0;
    h->used--;
    d->rid_len = 0;
}

static enum fl_err create_device(struct coord_devtab *t, const char *id,
                                 struct coord_device **out)
{
    struct coord_device *d;
    if (t->count >= t->max)
        return FL_ERR_FULL;
    if (t->count == t->cap) {
        const size_t ncap = t->cap == 0 ? 16 : t->cap * 2;
        struct coord_device **nd =
            fl_realloc(t->devs, ncap * sizeof(*nd));
        if (nd == NULL)
            return FL_ERR_NOMEM;
        t->devs = nd;
        t->cap = ncap;
    }
    FL_FORWARD_ERR(hslots_grow(t, &t->by_id, hash_id));
    d = fl_calloc(1, sizeof(*d));
    if (d == NULL)
        return FL_ERR_NOMEM;
    memcpy(d->id, id, strlen(id) + 1);
    d->index = (uint32_t)t->count;
    t->devs[t->count++] = d;
    hslots_put(&t->by_id, hash_id(d), d->index + 1);
    *out = d;
    return FL_OK;
}

enum fl_err coord_devtab_bind(struct coord_devtab *t, const char *id,
                              const uint8_t *rid, size_t rid_len,
                              struct coord_device **out, bool *created)
{
    struct coord_device *d;
    struct coord_device *holder;
    *out = NULL;
    *created = false;
    if (!coord_device_id_valid(id) || rid_len == 0 ||
        rid_len > COORD_RID_MAX)
        return FL_ERR_INVALID_ARG;
    FL_FORWARD_ERR(hslots_grow(t, &t->by_rid, hash_rid));
    d = coord_devtab_by_id(t, id);
    if (d == NULL) {
        FL_FORWARD_ERR(create_device(t, id, &d));
        *created = true;
    }
    holder = coord_devtab_by_rid(t, rid, rid_len);
    if (holder == d) {
        *out = d;
        return FL_OK;
    }
    if (holder != NULL)
        coord_devtab_unbind(t, holder);
    coord_devtab_unbind(t, d);
    memcpy(d->rid, rid, rid_len);
    d->rid_len = (uint8_t)rid_len;
    hslots_put(&t->by_rid, hash_rid(d), d->index + 1);
    *out = d;
    return FL_OK;
}
