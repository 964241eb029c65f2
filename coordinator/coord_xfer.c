/*
 * coord_xfer.c - chunked transfers, coordinator side (coord_xfer.h).
 */
#include "coordinator/coord_xfer.h"

#include <stdatomic.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"

#define NONE UINT32_MAX

struct coord_frame {
    atomic_size_t refs;
    size_t len;
    uint8_t data[];
};

struct coord_frame *coord_frame_new(const uint8_t *data, size_t len)
{
    if (len > SIZE_MAX - sizeof(struct coord_frame))
        return NULL;
    struct coord_frame *f = fl_malloc(sizeof(*f) + len);
    if (f == NULL)
        return NULL;
    atomic_init(&f->refs, 1);
    f->len = len;
    if (len > 0)
        memcpy(f->data, data, len);
    return f;
}

void coord_frame_ref(struct coord_frame *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void coord_frame_unref(struct coord_frame *f)
{
    if (f == NULL)
        return;
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        fl_free(f);
}

const uint8_t *coord_frame_data(const struct coord_frame *f)
{
    return f->data;
}

size_t coord_frame_len(const struct coord_frame *f) { return f->len; }

struct coord_blob {
    struct coord_blob_key key;
    uint64_t transfer;
    uint32_t total;
    uint32_t users;           /* downloads using it */
    bool cached;              /* still in the cache */
    uint64_t last_use;
    struct coord_frame **frames;
};

enum up_state { UP_NONE = 0, UP_WAITING, UP_RECEIVING };

struct xdev {
    /* downlink */
    struct coord_blob *blob;
    uint32_t next;            /* next seq to send */
    uint32_t acked;           /* chunks the device said it took in */
    uint32_t qprev, qnext;
    bool queued;
    /* uplink */
    enum up_state up;
    uint32_t uprev, unext;
    struct pb_msg *up_msg;
    uint64_t up_transfer;
    uint64_t up_bytes;
    uint64_t up_wire;
    uint64_t up_progress_ns;  /* grant or last chunk */
    struct pb_xfer_rx rx;
};

struct coord_xfer {
    struct coord_xfer_cfg cfg;
    struct xdev **devs;
    size_t ndevs;
    struct coord_blob **blobs;     /* cache, cfg.max_blobs long */
    uint64_t next_transfer;
    uint64_t clock;
    uint32_t qhead, qtail;         /* devices that may be sent a chunk */
    uint32_t uhead, utail;         /* uploads waiting for a slot */
    uint32_t *active;              /* devices holding a slot */
    struct coord_xfer_stats st;
};

enum fl_err coord_xfer_new(const struct coord_xfer_cfg *cfg,
                           struct coord_xfer **out)
{
    *out = NULL;
    if (cfg == NULL || !pb_xfer_geometry_ok(cfg->chunk_bytes, cfg->window) ||
        cfg->max_inflight == 0 || cfg->upload_slots == 0 ||
        cfg->max_blobs == 0)
        return FL_ERR_INVALID_ARG;
    struct coord_xfer *x = fl_calloc(1, sizeof(*x));
    if (x == NULL)
        return FL_ERR_NOMEM;
    x->blobs = fl_calloc(cfg->max_blobs, sizeof(*x->blobs));
    x->active = fl_calloc(cfg->upload_slots, sizeof(*x->active));
    if (x->blobs == NULL || x->active == NULL) {
        fl_free(x->blobs);
        fl_free(x->active);
        fl_free(x);
        return FL_ERR_NOMEM;
    }
    x->cfg = *cfg;
    x->next_transfer = 1;
    x->qhead = x->qtail = NONE;
    x->uhead = x->utail = NONE;
    *out = x;
    return FL_OK;
}

static void blob_free(struct coord_blob *b)
{
    if (b == NULL)
        return;
    for (uint32_t i = 0; i < b->total && b->frames != NULL; i++)
        coord_frame_unref(b->frames[i]);
    fl_free(b->frames);
    fl_free(b);
}

static void blob_release(struct coord_blob *b)
{
    if (b->users > 0)
        b->users--;
    if (b->users == 0 && !b->cached)
        blob_free(b);
}

static void up_reset(struct coord_xfer *x, struct xdev *d);

void coord_xfer_destroy(struct coord_xfer **xp)
{
    struct coord_xfer *x = *xp;
    if (x == NULL)
        return;
    for (size_t i = 0; i < x->ndevs; i++) {
        struct xdev *d = x->devs[i];
        if (d == NULL)
            continue;
        if (d->blob != NULL)
            blob_release(d->blob);
        pb_xfer_rx_reset(&d->rx);
        pb_msg_destroy(&d->up_msg);
        fl_free(d);
    }
    for (uint32_t i = 0; i < x->cfg.max_blobs; i++) {
        if (x->blobs[i] != NULL) {
            x->blobs[i]->cached = false;
            if (x->blobs[i]->users == 0)
                blob_free(x->blobs[i]);
        }
    }
    fl_free(x->blobs);
    fl_free(x->active);
    fl_free(x->devs);
    fl_free(x);
    *xp = NULL;
}

/* The state of device i, created on first use (NULL: out of memory). */
static struct xdev *dev_get(struct coord_xfer *x, uint32_t i)
{
    if (i == NONE)
        return NULL;
    if (i >= x->ndevs) {
        size_t n = x->ndevs > 0 ? x->ndevs : 64;
        while (n <= i)
            n *= 2;
        struct xdev **p = fl_realloc(x->devs, n * sizeof(*p));
        if (p == NULL)
            return NULL;
        memset(p + x->ndevs, 0, (n - x->ndevs) * sizeof(*p));
        x->devs = p;
        x->ndevs = n;
    }
    if (x->devs[i] == NULL) {
        struct xdev *d = fl_calloc(1, sizeof(*d));
        if (d == NULL)
            return NULL;
        d->qprev = d->qnext = d->uprev = d->unext = NONE;
        x->devs[i] = d;
    }
    return x->devs[i];
}

static struct xdev *dev_find(const struct coord_xfer *x, uint32_t i)
{
    return i < x->ndevs ? x->devs[i] : NULL;
}

/* ---- the ready queue (intrusive, by device index) */

static void q_remove(struct coord_xfer *x, uint32_t i, struct xdev *d)
{
    if (!d->queued)
        return;
    if (d->qprev != NONE)
        x->devs[d->qprev]->qnext = d->qnext;
    else
        x->qhead = d->qnext;
    if (d->qnext != NONE)
        x->devs[d->qnext]->qprev = d->qprev;
    else
        x->qtail = d->qprev;
    d->qprev = d->qnext = NONE;
    d->queued = false;
    (void)i;
}

static void q_push(struct coord_xfer *x, uint32_t i, struct xdev *d,
                   bool front)
{
    if (d->queued)
        return;
    d->queued = true;
    if (x->qhead == NONE) {
        d->qprev = d->qnext = NONE;
        x->qhead = x->qtail = i;
    } else if (front) {
        d->qprev = NONE;
        d->qnext = x->qhead;
        x->devs[x->qhead]->qprev = i;
        x->qhead = i;
    } else {
        d->qnext = NONE;
        d->qprev = x->qtail;
        x->devs[x->qtail]->qnext = i;
        x->qtail = i;
    }
}

static bool ready(const struct coord_xfer *x, const struct xdev *d)
{
    return d->blob != NULL && d->next < d->blob->total &&
           d->next - d->acked < x->cfg.window;
}

/* ---- downlink */

static struct coord_blob *blob_by_key(const struct coord_xfer *x,
                                      const struct coord_blob_key *k)
{
    for (uint32_t i = 0; i < x->cfg.max_blobs; i++) {
        const struct coord_blob *b = x->blobs[i];
        if (b != NULL && b->key.kind == k->kind &&
            b->key.codec == k->codec && b->key.version == k->version &&
            b->key.base_version == k->base_version)
            return x->blobs[i];
    }
    return NULL;
}

static struct coord_blob *blob_by_transfer(const struct coord_xfer *x,
                                           uint64_t transfer)
{
    for (uint32_t i = 0; i < x->cfg.max_blobs; i++)
        if (x->blobs[i] != NULL && x->blobs[i]->transfer == transfer)
            return x->blobs[i];
    return NULL;
}

static enum fl_err blob_pack(struct coord_xfer *x, struct coord_blob *b,
                             const uint8_t *data, size_t len)
{
    const uint32_t cb = x->cfg.chunk_bytes;
    b->total = pb_xfer_chunks(len, cb);
    if (b->total == 0)
        return FL_ERR_INVALID_ARG;
    b->frames = fl_calloc(b->total, sizeof(*b->frames));
    if (b->frames == NULL)
        return FL_ERR_NOMEM;
    for (uint32_t s = 0; s < b->total; s++) {
        uint8_t *buf = NULL;
        size_t blen = 0;
        const size_t clen = pb_xfer_chunk_len(len, cb, s);
        FL_FORWARD_ERR(pb_xfer_pack_chunk(b->transfer, s, b->total,
                                          data + (size_t)s * cb, clen, &buf,
                                          &blen));
        b->frames[s] = coord_frame_new(buf, blen);
        fl_free(buf);
        if (b->frames[s] == NULL)
            return FL_ERR_NOMEM;
    }
    return FL_OK;
}

enum fl_err coord_xfer_blob(struct coord_xfer *x,
                            const struct coord_blob_key *key,
                            const uint8_t *data, size_t len,
                            uint64_t *transfer, uint32_t *total)
{
    struct coord_blob *b = blob_by_key(x, key);
    if (b == NULL) {
        if (len == 0 || data == NULL)
            return FL_ERR_INVALID_ARG;
        b = fl_calloc(1, sizeof(*b));
        if (b == NULL)
            return FL_ERR_NOMEM;
        b->key = *key;
        b->transfer = x->next_transfer++;
        const enum fl_err rc = blob_pack(x, b, data, len);
        if (rc != FL_OK) {
            blob_free(b);
            return rc;
        }
        /* an empty slot, else the least recently used body that nobody
         * downloads, else the least recently used */
        uint32_t slot = 0;
        for (uint32_t i = 0; i < x->cfg.max_blobs; i++) {
            const struct coord_blob *c = x->blobs[i], *o = x->blobs[slot];
            if (c == NULL) {
                slot = i;
                break;
            }
            const bool c_idle = c->users == 0, o_idle = o->users == 0;
            if ((c_idle && !o_idle) ||
                (c_idle == o_idle && c->last_use < o->last_use))
                slot = i;
        }
        struct coord_blob *old = x->blobs[slot];
        if (old != NULL) {
            old->cached = false;
            if (old->users == 0)
                blob_free(old);
        }
        b->cached = true;
        x->blobs[slot] = b;
        x->st.blobs_packed++;
    }
    b->last_use = ++x->clock;
    *transfer = b->transfer;
    *total = b->total;
    return FL_OK;
}

void coord_xfer_stop(struct coord_xfer *x, uint32_t dev)
{
    struct xdev *d = dev_find(x, dev);
    if (d == NULL || d->blob == NULL)
        return;
    q_remove(x, dev, d);
    x->st.inflight -= d->next - d->acked;
    blob_release(d->blob);
    d->blob = NULL;
    d->next = d->acked = 0;
    x->st.downloads--;
}

enum fl_err coord_xfer_start(struct coord_xfer *x, uint32_t dev,
                             uint64_t transfer)
{
    struct coord_blob *b = blob_by_transfer(x, transfer);
    if (b == NULL)
        return FL_ERR_NOT_FOUND;
    struct xdev *d = dev_get(x, dev);
    if (d == NULL)
        return FL_ERR_NOMEM;
    coord_xfer_stop(x, dev);
    d->blob = b;
    b->users++;
    d->next = d->acked = 0;
    x->st.downloads++;
    q_push(x, dev, d, false);
    return FL_OK;
}

const struct coord_frame *coord_xfer_next(struct coord_xfer *x,
                                          uint32_t *dev)
{
    while (x->qhead != NONE && x->st.inflight < x->cfg.max_inflight) {
        const uint32_t i = x->qhead;
        struct xdev *d = x->devs[i];
        if (!ready(x, d)) {
            q_remove(x, i, d);
            continue;
        }
        const struct coord_frame *f = d->blob->frames[d->next];
        d->next++;
        x->st.inflight++;
        x->st.chunks_sent++;
        if (!ready(x, d))
            q_remove(x, i, d);
        *dev = i;
        return f;
    }
    return NULL;
}

enum fl_err coord_xfer_credit(struct coord_xfer *x, uint32_t dev,
                              uint64_t transfer, uint32_t received,
                              bool cancel, bool *done)
{
    struct xdev *d = dev_find(x, dev);
    *done = false;
    if (d == NULL || d->blob == NULL || d->blob->transfer != transfer)
        return FL_ERR_NOT_FOUND;
    if (received < d->acked || received > d->next) {
        coord_xfer_stop(x, dev);
        return FL_ERR_TRANSFER;
    }
    x->st.inflight -= received - d->acked;
    d->acked = received;
    if (cancel) {
        coord_xfer_stop(x, dev);
        return FL_OK;
    }
    if (d->acked == d->blob->total) {
        coord_xfer_stop(x, dev);
        *done = true;
        return FL_OK;
    }
    if (ready(x, d))
        q_push(x, dev, d, true);   /* started downloads go first */
    return FL_OK;
}

bool coord_xfer_downloading(const struct coord_xfer *x, uint32_t dev)
{
    const struct xdev *d = dev_find(x, dev);
    return d != NULL && d->blob != NULL;
}

/* ---- uplink */

static void u_remove(struct coord_xfer *x, struct xdev *d)
{
    if (d->uprev != NONE)
        x->devs[d->uprev]->unext = d->unext;
    else
        x->uhead = d->unext;
    if (d->unext != NONE)
        x->devs[d->unext]->uprev = d->uprev;
    else
        x->utail = d->uprev;
    d->uprev = d->unext = NONE;
}

static void up_reset(struct coord_xfer *x, struct xdev *d)
{
    if (d->up == UP_WAITING) {
        u_remove(x, d);
        x->st.uploads_waiting--;
    } else if (d->up == UP_RECEIVING) {
        for (uint32_t i = 0; i < x->st.uploads_active; i++) {
            if (x->devs[x->active[i]] == d) {
                x->active[i] = x->active[x->st.uploads_active - 1];
                break;
            }
        }
        x->st.uploads_active--;
    }
    pb_xfer_rx_reset(&d->rx);
    pb_msg_destroy(&d->up_msg);
    d->up = UP_NONE;
    d->up_transfer = 0;
    d->up_bytes = 0;
    d->up_wire = 0;
}

enum fl_err coord_xfer_up_announce(struct coord_xfer *x, uint32_t dev,
                                   struct pb_msg *msg, size_t len,
                                   uint64_t transfer, uint64_t bytes)
{
    struct xdev *d = dev_get(x, dev);
    if (d == NULL) {
        pb_msg_destroy(&msg);
        return FL_ERR_NOMEM;
    }
    up_reset(x, d);
    if (transfer == 0 || bytes == 0) {
        pb_msg_destroy(&msg);
        return FL_ERR_INVALID_ARG;
    }
    d->up = UP_WAITING;
    d->up_msg = msg;
    d->up_transfer = transfer;
    d->up_bytes = bytes;
    d->up_wire = len;
    d->unext = NONE;
    d->uprev = x->utail;
    if (x->utail != NONE)
        x->devs[x->utail]->unext = dev;
    else
        x->uhead = dev;
    x->utail = dev;
    x->st.uploads_waiting++;
    return FL_OK;
}

bool coord_xfer_up_grant(struct coord_xfer *x, uint64_t now_ns,
                         uint32_t *dev, uint64_t *transfer, bool *failed)
{
    *failed = false;
    if (x->uhead == NONE || x->st.uploads_active >= x->cfg.upload_slots)
        return false;
    const uint32_t i = x->uhead;
    struct xdev *d = x->devs[i];
    u_remove(x, d);
    x->st.uploads_waiting--;
    *dev = i;
    *transfer = d->up_transfer;
    if (pb_xfer_rx_begin(&d->rx, d->up_transfer, d->up_bytes,
                         x->cfg.chunk_bytes, UINT64_MAX) != FL_OK) {
        d->up = UP_NONE;
        up_reset(x, d);
        *failed = true;
        return true;
    }
    d->up = UP_RECEIVING;
    d->up_progress_ns = now_ns;
    x->active[x->st.uploads_active++] = i;
    return true;
}

enum fl_err coord_xfer_up_chunk(struct coord_xfer *x, uint32_t dev,
                                const struct pb_chunk *c, size_t frame_len,
                                uint64_t now_ns, uint32_t *received,
                                bool *complete)
{
    struct xdev *d = dev_find(x, dev);
    *complete = false;
    *received = 0;
    if (d == NULL)
        return FL_ERR_TRANSFER;
    if (d->up != UP_RECEIVING || c->transfer != d->up_transfer) {
        up_reset(x, d);   /* a chunk before its credit breaks the upload */
        return FL_ERR_TRANSFER;
    }
    if (pb_xfer_rx_add(&d->rx, c, complete) != FL_OK) {
        up_reset(x, d);
        return FL_ERR_TRANSFER;
    }
    d->up_wire += frame_len;
    d->up_progress_ns = now_ns;
    *received = d->rx.received;
    x->st.chunks_received++;
    return FL_OK;
}

enum fl_err coord_xfer_up_take(struct coord_xfer *x, uint32_t dev,
                               struct pb_msg **msg, uint8_t **payload,
                               size_t *payload_len, uint64_t *wire_bytes)
{
    struct xdev *d = dev_find(x, dev);
    if (d == NULL || d->up != UP_RECEIVING || !pb_xfer_rx_done(&d->rx))
        return FL_ERR_BAD_STATE;
    FL_FORWARD_ERR(pb_xfer_rx_take(&d->rx, payload, payload_len));
    *msg = d->up_msg;
    d->up_msg = NULL;
    *wire_bytes = d->up_wire;
    up_reset(x, d);
    return FL_OK;
}

uint64_t coord_xfer_up_drop(struct coord_xfer *x, uint32_t dev)
{
    struct xdev *d = dev_find(x, dev);
    if (d == NULL || d->up == UP_NONE)
        return 0;
    const uint64_t wire = d->up_wire;
    up_reset(x, d);
    return wire;
}

bool coord_xfer_up_stalled(const struct coord_xfer *x, uint64_t before_ns,
                           uint32_t *dev)
{
    for (uint32_t i = 0; i < x->st.uploads_active; i++) {
        if (x->devs[x->active[i]]->up_progress_ns < before_ns) {
            *dev = x->active[i];
            return true;
        }
    }
    return false;
}

bool coord_xfer_uploading(const struct coord_xfer *x, uint32_t dev,
                          uint64_t *transfer)
{
    const struct xdev *d = dev_find(x, dev);
    if (d == NULL || d->up == UP_NONE)
        return false;
    if (transfer != NULL)
        *transfer = d->up_transfer;
    return true;
}

bool coord_xfer_up_receiving(const struct coord_xfer *x, uint32_t dev)
{
    const struct xdev *d = dev_find(x, dev);
    return d != NULL && d->up == UP_RECEIVING;
}

void coord_xfer_stats(const struct coord_xfer *x, struct coord_xfer_stats *s)
{
    *s = x->st;
}
