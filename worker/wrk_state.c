/*
 * wrk_state.c - the worker's persistent update state (wrk_state.h,
 * docs/checkpoint.md).
 *
 *   header   56 bytes   magic, version, flags, dim, model version,
 *                       pending round, pending k, epoch
 *   residual dim float32
 *   velocity dim float32               (flag VELOCITY)
 *   pending  k uint32 indices, k float32 values   (flag PENDING)
 *   crc32    of everything before it
 */
#include "worker/wrk_state.h"

#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"

#define MAGIC "FCWSTATE"
#define MAGIC_LEN 8
#define HEADER_LEN 56
#define CRC_LEN 4
#define FLAG_VELOCITY (1u << 0)
#define FLAG_PENDING (1u << 1)
#define FLAG_PENDING_EF (1u << 2)
#define FLAG_MODEL (1u << 3)
#define FLAG_EPOCH (1u << 4)
#define FLAGS_KNOWN (FLAG_VELOCITY | FLAG_PENDING | FLAG_PENDING_EF | \
                     FLAG_MODEL | FLAG_EPOCH)

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}

static uint8_t *put_f32s(uint8_t *p, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, &x[i], sizeof(v));
        p = put_u32(p, v);
    }
    return p;
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* n little-endian 32-bit words into dst (floats or indices). */
static const uint8_t *get_words(const uint8_t *p, void *dst, size_t n)
{
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++) {
        const uint32_t v = get_u32(p + 4 * i);
        memcpy(d + 4 * i, &v, sizeof(v));
    }
    return p + 4 * n;
}

static uint32_t crc_of(const uint8_t *p, size_t len)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (len > 0) {
        const uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)c;
}

static bool all_finite(const float *x, size_t n)
{
    float z = 0.0f;
    for (size_t i = 0; i < n; i++)
        z += x[i] - x[i];
    return z == 0.0f;
}

/* ---- encode */

static size_t floats_of(const struct wrk_state *s)
{
    const size_t dim = (size_t)s->dim;
    return s->upd.velocity != NULL ? 2 * dim : dim;
}

size_t wrk_state_size(const struct wrk_state *s)
{
    const size_t k = s->upd.pending ? s->upd.pending_k : 0;
    return HEADER_LEN + floats_of(s) * 4 + k * 8 + CRC_LEN;
}

enum fl_err wrk_state_encode(const struct wrk_state *s, uint8_t *buf,
                             size_t cap, size_t *len)
{
    const struct wrk_update_state *u = &s->upd;
    uint32_t flags = 0;
    uint8_t *p = buf;
    if (u->residual == NULL || s->dim == 0 || s->dim > UINT32_MAX ||
        (u->pending && (u->pending_k == 0 || u->pending_k > s->dim ||
                        u->pending_idx == NULL || u->pending_val == NULL)))
        return FL_ERR_INVALID_ARG;
    if (cap < wrk_state_size(s))
        return FL_ERR_TOO_LARGE;
    if (u->velocity != NULL)
        flags |= FLAG_VELOCITY;
    if (u->pending)
        flags |= FLAG_PENDING | (u->pending_ef ? FLAG_PENDING_EF : 0);
    if (s->has_model_version)
        flags |= FLAG_MODEL;
    if (s->has_epoch)
        flags |= FLAG_EPOCH;
    memcpy(p, MAGIC, MAGIC_LEN);
    p = put_u32(p + MAGIC_LEN, WRK_STATE_VERSION);
    p = put_u32(p, flags);
    p = put_u64(p, s->dim);
    p = put_u64(p, s->has_model_version ? s->model_version : 0);
    p = put_u64(p, u->pending ? u->pending_round : 0);
    p = put_u64(p, u->pending ? u->pending_k : 0);
    p = put_u64(p, s->has_epoch ? s->epoch : 0);
    p = put_f32s(p, u->residual, (size_t)s->dim);
    if (u->velocity != NULL)
        p = put_f32s(p, u->velocity, (size_t)s->dim);
    if (u->pending) {
        for (size_t i = 0; i < u->pending_k; i++)
            p = put_u32(p, u->pending_idx[i]);
        p = put_f32s(p, u->pending_val, u->pending_k);
    }
    p = put_u32(p, crc_of(buf, (size_t)(p - buf)));
    *len = (size_t)(p - buf);
    return FL_OK;
}

/* ---- decode */

/* Header fields and the frame (sizes, CRC) before anything is
 * allocated. */
static enum fl_err check_frame(const uint8_t *buf, size_t len, size_t max_dim,
                               struct wrk_state *s, uint32_t *flags)
{
    if (len < HEADER_LEN + CRC_LEN)
        return len >= MAGIC_LEN && memcmp(buf, MAGIC, MAGIC_LEN) != 0
                   ? FL_ERR_FORMAT
                   : FL_ERR_TRUNCATED;
    if (memcmp(buf, MAGIC, MAGIC_LEN) != 0)
        return FL_ERR_FORMAT;
    if (get_u32(buf + 8) != WRK_STATE_VERSION)
        return FL_ERR_VERSION;
    *flags = get_u32(buf + 12);
    s->dim = get_u64(buf + 16);
    s->model_version = get_u64(buf + 24);
    s->upd.pending_round = get_u64(buf + 32);
    const uint64_t k = get_u64(buf + 40);
    s->epoch = get_u64(buf + 48);
    const bool pending = (*flags & FLAG_PENDING) != 0;
    if ((*flags & ~FLAGS_KNOWN) != 0 || s->dim == 0 ||
        s->dim > UINT32_MAX || pending != (k > 0) || k > s->dim ||
        (!pending && (*flags & FLAG_PENDING_EF) != 0))
        return FL_ERR_FORMAT;
    if (s->dim > max_dim)
        return FL_ERR_TOO_LARGE;
    s->upd.pending_k = (size_t)k;
    s->upd.pending = pending;
    s->upd.pending_ef = (*flags & FLAG_PENDING_EF) != 0;
    s->has_model_version = (*flags & FLAG_MODEL) != 0;
    s->has_epoch = (*flags & FLAG_EPOCH) != 0;
    const uint64_t floats =
        (*flags & FLAG_VELOCITY) != 0 ? 2 * s->dim : s->dim;
    const uint64_t want = HEADER_LEN + floats * 4 + k * 8 + CRC_LEN;
    if ((uint64_t)len < want)
        return FL_ERR_TRUNCATED;
    if ((uint64_t)len > want)
        return FL_ERR_FORMAT;
    if (get_u32(buf + len - CRC_LEN) != crc_of(buf, len - CRC_LEN))
        return FL_ERR_CHECKSUM;
    return FL_OK;
}

/* The arrays, into one block laid out as the file. */
static enum fl_err get_arrays(const uint8_t *buf, uint32_t flags,
                              struct wrk_state *s)
{
    struct wrk_update_state *u = &s->upd;
    const size_t dim = (size_t)s->dim;
    const size_t k = u->pending_k;
    const size_t nfloat = (flags & FLAG_VELOCITY) != 0 ? 2 * dim : dim;
    uint8_t *block = fl_malloc((nfloat + 2 * k) * 4 + 1);
    if (block == NULL)
        return FL_ERR_NOMEM;
    float *res = (float *)(void *)block;
    uint32_t *idx = (uint32_t *)(void *)(block + nfloat * 4);
    float *val = (float *)(void *)(block + (nfloat + k) * 4);
    const uint8_t *p = get_words(buf + HEADER_LEN, res, nfloat);
    p = get_words(p, idx, k);
    get_words(p, val, k);
    enum fl_err rc = FL_OK;
    for (size_t i = 0; i < k && rc == FL_OK; i++)
        rc = idx[i] < dim ? FL_OK : FL_ERR_INDEX_RANGE;
    if (rc == FL_OK && (!all_finite(res, nfloat) || !all_finite(val, k)))
        rc = FL_ERR_NONFINITE;
    if (rc != FL_OK) {
        fl_free(block);
        return rc;
    }
    u->residual = res;
    u->velocity = (flags & FLAG_VELOCITY) != 0 ? res + dim : NULL;
    u->pending_idx = k > 0 ? idx : NULL;
    u->pending_val = k > 0 ? val : NULL;
    s->owned = block;
    return FL_OK;
}

enum fl_err wrk_state_decode(const uint8_t *buf, size_t len, size_t max_dim,
                             struct wrk_state *out)
{
    struct wrk_state s;
    uint32_t flags = 0;
    memset(out, 0, sizeof(*out));
    memset(&s, 0, sizeof(s));
    FL_FORWARD_ERR(check_frame(buf, len, max_dim, &s, &flags));
    FL_FORWARD_ERR(get_arrays(buf, flags, &s));
    if (!s.has_model_version)
        s.model_version = 0;
    if (!s.has_epoch)
        s.epoch = 0;
    if (!s.upd.pending)
        s.upd.pending_round = 0;
    *out = s;
    return FL_OK;
}

void wrk_state_release(struct wrk_state *s)
{
    if (s == NULL)
        return;
    fl_free(s->owned);
    memset(s, 0, sizeof(*s));
}

/* ---- files */

enum fl_err wrk_state_save(const char *path, const struct wrk_state *s,
                           uint8_t **buf, size_t *cap)
{
    size_t len = 0;
    const size_t need = wrk_state_size(s);
    if (need > *cap) {
        uint8_t *nb = fl_realloc(*buf, need);
        if (nb == NULL)
            return FL_ERR_NOMEM;
        *buf = nb;
        *cap = need;
    }
    FL_FORWARD_ERR(wrk_state_encode(s, *buf, *cap, &len));
    return fl_file_write_atomic(path, *buf, len);
}

enum fl_err wrk_state_load(const char *path, size_t max_dim,
                           struct wrk_state *out)
{
    void *data = NULL;
    size_t len = 0;
    /* the largest file for max_dim: residual, velocity, k = dim entries */
    const size_t max_len = HEADER_LEN + (size_t)max_dim * 16 + CRC_LEN;
    memset(out, 0, sizeof(*out));
    FL_FORWARD_ERR(fl_file_read(path, max_len, &data, &len));
    const enum fl_err rc = wrk_state_decode(data, len, max_dim, out);
    free(data); /* fl_file_read allocates with malloc() */
    return rc;
}

void wrk_state_of_update(const struct wrk_update *w, struct wrk_state *s)
{
    memset(s, 0, sizeof(*s));
    s->dim = wrk_update_dim(w);
    wrk_update_export(w, &s->upd);
}
