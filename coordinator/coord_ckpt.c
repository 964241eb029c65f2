/*
 * coord_ckpt.c - the coordinator's checkpoint file (coord_ckpt.h,
 * docs/checkpoint.md).
 *
 *   header  240 bytes   magic, version, flags, identity, progress, totals
 *   devices 104 bytes each
 *   params  dim float32
 *   momentum dim float32 (flag bit 0)
 *   crc32   of everything before it
 *
 * Every integer and float is little-endian, written byte by byte, so the
 * file is the same on any host.
 */
#include "coordinator/coord_ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "common/fl_alloc.h"

#define MAGIC "FCMPCKPT"
#define MAGIC_LEN 8
#define HEADER_LEN 240
#define DEVICE_LEN 104
#define CRC_LEN 4
#define FLAG_MOMENTUM (1u << 0)
#define FLAG_REPORTS (1u << 1)
#define FLAGS_KNOWN (FLAG_MOMENTUM | FLAG_REPORTS)
#define PATH_CAP 4096
/* a checkpoint of the largest model the config allows, with room */
#define LOAD_MAX ((size_t)1 << 36)

const char *const coord_ckpt_report_names[COORD_RF_COUNT] = {
    "rounds.csv", "rounds.jsonl", "devices.csv"};

/* ---- little-endian writer / reader */

struct wbuf {
    uint8_t *p;
};

static void put_u32(struct wbuf *w, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        *w->p++ = (uint8_t)(v >> (8 * i));
}

static void put_u64(struct wbuf *w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        *w->p++ = (uint8_t)(v >> (8 * i));
}

static void put_f64(struct wbuf *w, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof(v));
    put_u64(w, v);
}

static void put_f32s(struct wbuf *w, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, &x[i], sizeof(v));
        put_u32(w, v);
    }
}

struct rbuf {
    const uint8_t *p;
};

static uint32_t get_u32(struct rbuf *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)r->p[i] << (8 * i);
    r->p += 4;
    return v;
}

static uint64_t get_u64(struct rbuf *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    return v;
}

static double get_f64(struct rbuf *r)
{
    const uint64_t v = get_u64(r);
    double d;
    memcpy(&d, &v, sizeof(d));
    return d;
}

/* Read n floats; false when one is not finite. */
static bool get_f32s(struct rbuf *r, float *x, size_t n)
{
    float z = 0.0f;
    for (size_t i = 0; i < n; i++) {
        const uint32_t v = get_u32(r);
        memcpy(&x[i], &v, sizeof(v));
        z += x[i] - x[i];
    }
    return z == 0.0f;
}

static uint32_t crc_of(const uint8_t *p, size_t len)
{
    uLong c = crc32(0L, Z_NULL, 0);
    /* zlib takes uInt lengths: feed large buffers in pieces */
    while (len > 0) {
        const uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)c;
}

uint32_t coord_ckpt_layout_crc(const struct mdl_layout *layout)
{
    uint8_t b[8 + 4 + 8 + 8];
    uLong c = crc32(0L, Z_NULL, 0);
    for (size_t i = 0; i < layout->ntensors && i < MDL_MAX_TENSORS; i++) {
        const struct mdl_tensor_info *t = &layout->tensors[i];
        struct wbuf w = {b};
        c = crc32(c, (const Bytef *)t->name, (uInt)strlen(t->name) + 1);
        put_u64(&w, t->offset);
        put_u32(&w, t->ndim);
        put_u64(&w, t->ndim > 0 ? t->shape[0] : 0);
        put_u64(&w, t->ndim > 1 ? t->shape[1] : 0);
        c = crc32(c, b, (uInt)sizeof(b));
    }
    return (uint32_t)c;
}

/* ---- encode */

size_t coord_ckpt_size(const struct coord_ckpt *ck)
{
    const size_t floats = ck->momentum != NULL ? 2 * ck->dim : ck->dim;
    return HEADER_LEN + (size_t)ck->ndevices * DEVICE_LEN + floats * 4 +
           CRC_LEN;
}

static void put_summary(struct wbuf *w, const struct coord_summary *s)
{
    put_u64(w, s->rounds_done);
    put_u64(w, s->attempts);
    put_u64(w, s->up_wire_bytes);
    put_u64(w, s->up_dense_bytes);
    put_u64(w, s->other_rx_bytes);
    put_u64(w, s->down_wire_bytes);
    put_u64(w, s->down_dense_bytes);
    put_u64(w, s->updates_used);
    put_u64(w, s->updates_rejected);
    put_u64(w, s->updates_late);
    put_u64(w, s->send_failures);
    put_f64(w, s->initial_acc);
    put_f64(w, s->final_acc);
    put_f64(w, s->final_loss);
}

static void put_header(struct wbuf *w, const struct coord_ckpt *ck)
{
    uint32_t flags = 0;
    if (ck->momentum != NULL)
        flags |= FLAG_MOMENTUM;
    if (ck->has_reports)
        flags |= FLAG_REPORTS;
    memcpy(w->p, MAGIC, MAGIC_LEN);
    w->p += MAGIC_LEN;
    put_u32(w, COORD_CKPT_VERSION);
    put_u32(w, flags);
    put_u64(w, ck->dim);
    put_u32(w, ck->layout_crc);
    put_u32(w, ck->ndevices);
    put_u64(w, ck->seed);
    put_u64(w, ck->epoch);
    put_u64(w, ck->next_round);
    put_u32(w, ck->next_attempt);
    put_u32(w, 0);
    put_u64(w, ck->model_version);
    for (int i = 0; i < 4; i++)
        put_u64(w, ck->rng.s[i]);
    for (int i = 0; i < COORD_RF_COUNT; i++)
        put_u64(w, ck->has_reports ? ck->report_len[i] : 0);
    put_summary(w, &ck->sum);
}

static void put_device(struct wbuf *w, const struct coord_ckpt_device *d)
{
    const size_t n = strnlen(d->id, COORD_ID_MAX);
    memset(w->p, 0, COORD_ID_MAX);
    memcpy(w->p, d->id, n);
    w->p += COORD_ID_MAX;
    put_u32(w, d->last_status);
    put_u32(w, d->n_used);
    put_u32(w, d->n_rejected);
    put_u32(w, d->n_late);
    put_u64(w, d->last_round);
    put_u64(w, d->total_up_bytes);
    put_u64(w, d->total_down_bytes);
}

enum fl_err coord_ckpt_encode(const struct coord_ckpt *ck, uint8_t *buf,
                              size_t cap, size_t *len)
{
    struct wbuf w = {buf};
    if (ck->params == NULL || ck->dim == 0 || ck->dim > UINT32_MAX ||
        (ck->ndevices > 0 && ck->devices == NULL))
        return FL_ERR_INVALID_ARG;
    const size_t need = coord_ckpt_size(ck);
    if (cap < need)
        return FL_ERR_TOO_LARGE;
    put_header(&w, ck);
    for (uint32_t i = 0; i < ck->ndevices; i++)
        put_device(&w, &ck->devices[i]);
    put_f32s(&w, ck->params, ck->dim);
    if (ck->momentum != NULL)
        put_f32s(&w, ck->momentum, ck->dim);
    put_u32(&w, crc_of(buf, (size_t)(w.p - buf)));
    *len = (size_t)(w.p - buf);
    return FL_OK;
}

/* ---- decode */

static void get_summary(struct rbuf *r, struct coord_summary *s)
{
    memset(s, 0, sizeof(*s));
    s->rounds_done = get_u64(r);
    s->attempts = get_u64(r);
    s->up_wire_bytes = get_u64(r);
    s->up_dense_bytes = get_u64(r);
    s->other_rx_bytes = get_u64(r);
    s->down_wire_bytes = get_u64(r);
    s->down_dense_bytes = get_u64(r);
    s->updates_used = get_u64(r);
    s->updates_rejected = get_u64(r);
    s->updates_late = get_u64(r);
    s->send_failures = get_u64(r);
    s->initial_acc = get_f64(r);
    s->final_acc = get_f64(r);
    s->final_loss = get_f64(r);
}

/* The fixed header; *flags gets the flag word. */
static enum fl_err get_header(struct rbuf *r, struct coord_ckpt *ck,
                              uint32_t *flags)
{
    if (memcmp(r->p, MAGIC, MAGIC_LEN) != 0)
        return FL_ERR_FORMAT;
    r->p += MAGIC_LEN;
    if (get_u32(r) != COORD_CKPT_VERSION)
        return FL_ERR_VERSION;
    *flags = get_u32(r);
    ck->dim = get_u64(r);
    ck->layout_crc = get_u32(r);
    ck->ndevices = get_u32(r);
    ck->seed = get_u64(r);
    ck->epoch = get_u64(r);
    ck->next_round = get_u64(r);
    ck->next_attempt = get_u32(r);
    const uint32_t reserved = get_u32(r);
    ck->model_version = get_u64(r);
    for (int i = 0; i < 4; i++)
        ck->rng.s[i] = get_u64(r);
    for (int i = 0; i < COORD_RF_COUNT; i++)
        ck->report_len[i] = get_u64(r);
    ck->has_reports = (*flags & FLAG_REPORTS) != 0;
    get_summary(r, &ck->sum);
    if ((*flags & ~FLAGS_KNOWN) != 0 || reserved != 0 || ck->dim == 0 ||
        ck->dim > UINT32_MAX || ck->ndevices > COORD_DEVICES_MAX ||
        ck->next_round == 0 || ck->next_attempt == 0 ||
        ck->model_version == 0 ||
        (ck->rng.s[0] | ck->rng.s[1] | ck->rng.s[2] | ck->rng.s[3]) == 0)
        return FL_ERR_FORMAT;
    return FL_OK;
}

static enum fl_err get_device(struct rbuf *r, struct coord_ckpt_device *d)
{
    memcpy(d->id, r->p, COORD_ID_MAX);
    d->id[COORD_ID_MAX] = '\0';
    /* NUL padding only: no bytes after the end of the id */
    const size_t n = strlen(d->id);
    for (size_t i = n; i < COORD_ID_MAX; i++) {
        if (r->p[i] != 0)
            return FL_ERR_FORMAT;
    }
    r->p += COORD_ID_MAX;
    d->last_status = get_u32(r);
    d->n_used = get_u32(r);
    d->n_rejected = get_u32(r);
    d->n_late = get_u32(r);
    d->last_round = get_u64(r);
    d->total_up_bytes = get_u64(r);
    d->total_down_bytes = get_u64(r);
    return coord_device_id_valid(d->id) ? FL_OK : FL_ERR_FORMAT;
}

/* Check sizes and CRC before anything is allocated. */
static enum fl_err check_frame(const uint8_t *buf, size_t len,
                               struct coord_ckpt *hdr, uint32_t *flags)
{
    struct rbuf r = {buf};
    if (len < HEADER_LEN + CRC_LEN)
        return len >= MAGIC_LEN && memcmp(buf, MAGIC, MAGIC_LEN) != 0
                   ? FL_ERR_FORMAT
                   : FL_ERR_TRUNCATED;
    FL_FORWARD_ERR(get_header(&r, hdr, flags));
    const uint64_t floats =
        (*flags & FLAG_MOMENTUM) != 0 ? 2 * hdr->dim : hdr->dim;
    const uint64_t want = (uint64_t)HEADER_LEN +
                          (uint64_t)hdr->ndevices * DEVICE_LEN + floats * 4 +
                          CRC_LEN;
    if ((uint64_t)len < want)
        return FL_ERR_TRUNCATED;
    if ((uint64_t)len > want)
        return FL_ERR_FORMAT;
    struct rbuf c = {buf + len - CRC_LEN};
    if (get_u32(&c) != crc_of(buf, len - CRC_LEN))
        return FL_ERR_CHECKSUM;
    return FL_OK;
}

enum fl_err coord_ckpt_decode(const uint8_t *buf, size_t len,
                              struct coord_ckpt *out)
{
    struct coord_ckpt ck;
    uint32_t flags = 0;
    enum fl_err rc = FL_OK;
    memset(out, 0, sizeof(*out));
    memset(&ck, 0, sizeof(ck));
    FL_FORWARD_ERR(check_frame(buf, len, &ck, &flags));
    const size_t nfloat =
        (flags & FLAG_MOMENTUM) != 0 ? 2 * (size_t)ck.dim : (size_t)ck.dim;
    /* one block: devices, then the floats (alignment of both holds) */
    const size_t dev_bytes = (size_t)ck.ndevices * sizeof(*ck.devices);
    uint8_t *block = fl_malloc(dev_bytes + nfloat * sizeof(float) + 1);
    if (block == NULL)
        return FL_ERR_NOMEM;
    struct coord_ckpt_device *devs = (struct coord_ckpt_device *)(void *)block;
    float *params = (float *)(void *)(block + dev_bytes);
    struct rbuf r = {buf + HEADER_LEN};
    for (uint32_t i = 0; i < ck.ndevices && rc == FL_OK; i++)
        rc = get_device(&r, &devs[i]);
    if (rc == FL_OK && !get_f32s(&r, params, nfloat))
        rc = FL_ERR_NONFINITE;
    if (rc != FL_OK) {
        fl_free(block);
        return rc;
    }
    ck.devices = devs;
    ck.params = params;
    ck.momentum = (flags & FLAG_MOMENTUM) != 0 ? params + ck.dim : NULL;
    ck.owned = block;
    *out = ck;
    return FL_OK;
}

void coord_ckpt_release(struct coord_ckpt *ck)
{
    if (ck == NULL)
        return;
    fl_free(ck->owned);
    memset(ck, 0, sizeof(*ck));
}

/* ---- files */

static enum fl_err path_in(const char *dir, const char *name, char *buf,
                           size_t cap)
{
    const int n = snprintf(buf, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? FL_ERR_TOO_LARGE : FL_OK;
}

enum fl_err coord_ckpt_save(const char *dir, const struct coord_ckpt *ck)
{
    char path[PATH_CAP];
    size_t len = 0;
    enum fl_err rc = path_in(dir, COORD_CKPT_FILE, path, sizeof(path));
    if (rc != FL_OK)
        return rc;
    const size_t need = coord_ckpt_size(ck);
    uint8_t *buf = fl_malloc(need);
    if (buf == NULL)
        return FL_ERR_NOMEM;
    rc = coord_ckpt_encode(ck, buf, need, &len);
    if (rc == FL_OK)
        rc = fl_file_write_atomic(path, buf, len);
    fl_free(buf);
    return rc;
}

enum fl_err coord_ckpt_load(const char *dir, struct coord_ckpt *out)
{
    char path[PATH_CAP];
    void *data = NULL;
    size_t len = 0;
    memset(out, 0, sizeof(*out));
    FL_FORWARD_ERR(path_in(dir, COORD_CKPT_FILE, path, sizeof(path)));
    FL_FORWARD_ERR(fl_file_read(path, LOAD_MAX, &data, &len));
    const enum fl_err rc = coord_ckpt_decode(data, len, out);
    free(data); /* fl_file_read allocates with malloc() */
    return rc;
}

enum fl_err coord_ckpt_check(const struct coord_ckpt *ck,
                             const struct coord_config *cfg,
                             const struct mdl_layout *layout, char *err,
                             size_t errlen)
{
    const bool mom = cfg->server_momentum > 0;
    if (ck->dim != layout->dim) {
        snprintf(err, errlen, "the checkpoint's model has %llu parameters, "
                 "this configuration %zu (--hidden or the data changed)",
                 (unsigned long long)ck->dim, layout->dim);
        return FL_ERR_INVALID_ARG;
    }
    if (ck->layout_crc != coord_ckpt_layout_crc(layout)) {
        snprintf(err, errlen, "the checkpoint's model has another layout "
                 "of tensors (--hidden changed)");
        return FL_ERR_INVALID_ARG;
    }
    if (ck->seed != cfg->seed) {
        snprintf(err, errlen, "the checkpoint was written with --seed "
                 "%llu, not %llu",
                 (unsigned long long)ck->seed,
                 (unsigned long long)cfg->seed);
        return FL_ERR_INVALID_ARG;
    }
    if ((ck->momentum != NULL) != mom) {
        snprintf(err, errlen, "the checkpoint was written %s server "
                 "momentum, --server-momentum is %g",
                 ck->momentum != NULL ? "with" : "without",
                 cfg->server_momentum);
        return FL_ERR_INVALID_ARG;
    }
    return FL_OK;
}

enum fl_err coord_ckpt_report_lengths(const char *dir,
                                      uint64_t len[COORD_RF_COUNT])
{
    char path[PATH_CAP];
    struct stat st;
    for (int i = 0; i < COORD_RF_COUNT; i++) {
        FL_FORWARD_ERR(path_in(dir, coord_ckpt_report_names[i], path,
                               sizeof(path)));
        if (stat(path, &st) != 0) {
            if (errno != ENOENT)
                return FL_ERR_IO;
            len[i] = 0;
            continue;
        }
        len[i] = (uint64_t)st.st_size;
    }
    return FL_OK;
}

/* Size of dir/name, or -1 when it does not exist. */
static enum fl_err file_size(const char *path, int64_t *size)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT)
            return FL_ERR_IO;
        *size = -1;
        return FL_OK;
    }
    *size = (int64_t)st.st_size;
    return FL_OK;
}

static enum fl_err cut_file(const char *path, uint64_t len)
{
    const int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return FL_ERR_IO;
    enum fl_err rc = FL_OK;
    if (ftruncate(fd, (off_t)len) != 0 || fsync(fd) != 0)
        rc = FL_ERR_IO;
    const int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

enum fl_err coord_ckpt_truncate_reports(const char *dir,
                                        const uint64_t len[COORD_RF_COUNT],
                                        uint64_t *cut, char *err,
                                        size_t errlen)
{
    char path[COORD_RF_COUNT][PATH_CAP];
    int64_t size[COORD_RF_COUNT];
    uint64_t total = 0;
    if (cut != NULL)
        *cut = 0;
    /* check all three before changing any */
    for (int i = 0; i < COORD_RF_COUNT; i++) {
        FL_FORWARD_ERR(path_in(dir, coord_ckpt_report_names[i], path[i],
                               sizeof(path[i])));
        if (file_size(path[i], &size[i]) != FL_OK) {
            snprintf(err, errlen, "cannot examine '%s': %s", path[i],
                     strerror(errno));
            return FL_ERR_IO;
        }
        if ((size[i] < 0 && len[i] > 0) ||
            (size[i] >= 0 && (uint64_t)size[i] < len[i])) {
            snprintf(err, errlen, "report file '%s' has %lld bytes, the "
                     "checkpoint recorded %llu: not the reports of this "
                     "run",
                     path[i], (long long)(size[i] < 0 ? 0 : size[i]),
                     (unsigned long long)len[i]);
            return FL_ERR_TRUNCATED;
        }
    }
    for (int i = 0; i < COORD_RF_COUNT; i++) {
        if (size[i] < 0 || (uint64_t)size[i] == len[i])
            continue;
        if (cut_file(path[i], len[i]) != FL_OK) {
            snprintf(err, errlen, "cannot truncate '%s': %s", path[i],
                     strerror(errno));
            return FL_ERR_IO;
        }
        total += (uint64_t)size[i] - len[i];
    }
    if (cut != NULL)
        *cut = total;
    return FL_OK;
}
