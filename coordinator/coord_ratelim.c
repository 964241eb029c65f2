/*
 * coord_ratelim.c - per-routing-id token buckets (coord_ratelim.h).
 *
 * Open addressing with linear probing over a power-of-two table of
 * 2 * max_peers slots; a slot's key 0 means empty (a hash that comes out 0
 * is stored as 1). There is no deletion in place: when the table holds
 * max_peers buckets, it is rebuilt keeping only the buckets that are not
 * full again, which also clears the probe chains.
 */
#include "coordinator/coord_ratelim.h"

#include <string.h>

#include "common/fl_alloc.h"

#define MAX_PEERS_LIMIT (1u << 24)

struct bucket {
    uint64_t key;                /* hash of the routing id; 0 = empty */
    uint64_t last_ns;            /* when tokens was computed */
    uint64_t logged_round;       /* round of the last DROP_FIRST, + 1 */
    double tokens;
};

struct coord_ratelim {
    double rate;                 /* tokens per nanosecond */
    double burst;
    uint64_t refill_ns;          /* empty -> full */
    uint64_t seed;
    struct bucket *slots;
    struct bucket *spare;        /* for rebuilding */
    size_t mask;
    size_t count;
    size_t max_peers;
    uint64_t overflows;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Keyed hash: FNV-1a over the id, seeded, with a strong final mix. */
static uint64_t hash_rid(uint64_t seed, const uint8_t *rid, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ mix64(seed);
    for (size_t i = 0; i < len; i++) {
        h ^= rid[i];
        h *= 0x100000001b3ULL;
    }
    h = mix64(h ^ seed ^ (uint64_t)len);
    return h != 0 ? h : 1;
}

enum fl_err coord_ratelim_new(double rate, double burst, size_t max_peers,
                              uint64_t seed, struct coord_ratelim **out)
{
    struct coord_ratelim *r;
    size_t slots = 2;
    *out = NULL;
    if (!(rate > 0) || !(burst >= 1) || max_peers == 0 ||
        max_peers > MAX_PEERS_LIMIT || !(burst / rate < 1e9))
        return FL_ERR_INVALID_ARG;
    while (slots < 2 * max_peers)
        slots *= 2;
    r = fl_calloc(1, sizeof(*r));
    if (r == NULL)
        return FL_ERR_NOMEM;
    r->slots = fl_calloc(slots, sizeof(*r->slots));
    r->spare = fl_calloc(slots, sizeof(*r->spare));
    if (r->slots == NULL || r->spare == NULL) {
        coord_ratelim_destroy(&r);
        return FL_ERR_NOMEM;
    }
    r->rate = rate / 1e9;
    r->burst = burst;
    r->refill_ns = (uint64_t)(burst / rate * 1e9) + 1;
    r->seed = seed;
    r->mask = slots - 1;
    r->max_peers = max_peers;
    *out = r;
    return FL_OK;
}

void coord_ratelim_destroy(struct coord_ratelim **rp)
{
    if (rp == NULL || *rp == NULL)
        return;
    fl_free((*rp)->slots);
    fl_free((*rp)->spare);
    fl_free(*rp);
    *rp = NULL;
}

static struct bucket *probe(struct bucket *slots, size_t mask, uint64_t key)
{
    size_t i = (size_t)key & mask;
    while (slots[i].key != 0 && slots[i].key != key)
        i = (i + 1) & mask;
    return &slots[i];
}

/* Keep only the buckets that are not full again at now_ns. */
static void sweep(struct coord_ratelim *r, uint64_t now_ns)
{
    struct bucket *old = r->slots;
    memset(r->spare, 0, (r->mask + 1) * sizeof(*r->spare));
    r->count = 0;
    for (size_t i = 0; i <= r->mask; i++) {
        const struct bucket *b = &old[i];
        if (b->key == 0 ||
            (now_ns >= b->last_ns && now_ns - b->last_ns >= r->refill_ns))
            continue;
        *probe(r->spare, r->mask, b->key) = *b;
        r->count++;
    }
    r->slots = r->spare;
    r->spare = old;
}

enum coord_rl_verdict coord_ratelim_check(struct coord_ratelim *r,
                                          const uint8_t *rid, size_t rid_len,
                                          uint64_t round, uint64_t now_ns)
{
    const uint64_t key = hash_rid(r->seed, rid, rid_len);
    struct bucket *b = probe(r->slots, r->mask, key);
    if (b->key == 0) {
        if (r->count >= r->max_peers) {
            sweep(r, now_ns);
            b = probe(r->slots, r->mask, key);
        }
        if (r->count >= r->max_peers) {
            r->overflows++;
            return COORD_RL_PASS;
        }
        b->key = key;
        b->tokens = r->burst;
        b->last_ns = now_ns;
        b->logged_round = 0;
        r->count++;
    } else if (now_ns > b->last_ns) {
        const double t = b->tokens + (double)(now_ns - b->last_ns) * r->rate;
        b->tokens = t < r->burst ? t : r->burst;
        b->last_ns = now_ns;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return COORD_RL_PASS;
    }
    if (b->logged_round != round + 1) {
        b->logged_round = round + 1;
        return COORD_RL_DROP_FIRST;
    }
    return COORD_RL_DROP;
}

size_t coord_ratelim_size(const struct coord_ratelim *r)
{
    return r->count;
}

uint64_t coord_ratelim_overflows(const struct coord_ratelim *r)
{
    return r->overflows;
}
