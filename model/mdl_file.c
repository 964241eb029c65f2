/*
 * mdl_file.c - save and load the "FCMODEL1" model file
 * (docs/model-format.md is the byte-level description).
 *
 *   "FCMODEL1" | u32 version | u32 ntensors | u64 dim | u64 round |
 *   ntensors x { u16 namelen | name | u32 ndim | u32 shape[ndim] |
 *                u64 offset | u64 size } |
 *   dim x f32 | u32 crc32(all preceding bytes)
 *
 * Little-endian throughout, written byte by byte so the format does not
 * depend on the host. Loading streams the file: the header is checked
 * field by field before anything is sized from it, the parameters are
 * allocated only once dim <= max_dim is known, and the CRC is checked
 * before anything is handed back.
 */
#include "model/mdl_file.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"

#define MF_MAGIC "FCMODEL1"
#define MF_MAGIC_LEN 8
#define MF_VERSION 1u
#define MF_FIXED_HEADER 32u  /* magic, version, ntensors, dim, round */

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- layout rules shared by save and load */

static int name_ok(const char *name, size_t len)
{
    if (len == 0 || len >= MDL_TENSOR_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (name[i] < 0x21 || name[i] > 0x7e)
            return 0;
    return 1;
}

/* One tensor against the running offset: shapes non-zero, size their
 * product, tensors back to back in order. 0 ok, else -1. */
static int tensor_ok(const struct mdl_tensor_info *ti, size_t expect_off)
{
    uint64_t prod = 1;
    if (ti->ndim != 1 && ti->ndim != 2)
        return -1;
    for (uint32_t d = 0; d < ti->ndim; d++) {
        if (ti->shape[d] == 0)
            return -1;
        prod *= ti->shape[d];
    }
    return prod == ti->size && ti->offset == expect_off ? 0 : -1;
}

static int layout_ok(const struct mdl_layout *lay)
{
    size_t off = 0;
    if (lay->ntensors == 0 || lay->ntensors > MDL_MAX_TENSORS ||
        lay->dim == 0)
        return 0;
    for (size_t i = 0; i < lay->ntensors; i++) {
        const struct mdl_tensor_info *ti = &lay->tensors[i];
        if (!name_ok(ti->name, strnlen(ti->name, MDL_TENSOR_NAME_MAX)) ||
            tensor_ok(ti, off) != 0 || ti->size > lay->dim - off)
            return 0;
        off += ti->size;
    }
    return off == lay->dim;
}

/* ---- save */

static unsigned char *put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

static unsigned char *put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}

static unsigned char *put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 8;
}

static size_t header_size(const struct mdl_layout *lay)
{
    size_t n = MF_FIXED_HEADER;
    for (size_t i = 0; i < lay->ntensors; i++)
        n += 2 + strlen(lay->tensors[i].name) + 4 +
             4 * (size_t)lay->tensors[i].ndim + 16;
    return n;
}

enum fl_err mdl_file_save(const char *path, const struct mdl_layout *layout,
                          const float *params, uint64_t round)
{
    enum fl_err rc = FL_OK;
    unsigned char *buf, *p;
    size_t total;
    if (path == NULL || layout == NULL || params == NULL ||
        !layout_ok(layout))
        return FL_ERR_INVALID_ARG;
    for (size_t i = 0; i < layout->dim; i++)
        if (!isfinite(params[i]))
            return FL_ERR_NONFINITE;
    total = header_size(layout) + layout->dim * 4 + 4;
    buf = fl_malloc(total);
    if (buf == NULL)
        return FL_ERR_NOMEM;
    memcpy(buf, MF_MAGIC, MF_MAGIC_LEN);
    p = put_u32(buf + MF_MAGIC_LEN, MF_VERSION);
    p = put_u32(p, (uint32_t)layout->ntensors);
    p = put_u64(p, layout->dim);
    p = put_u64(p, round);
    for (size_t i = 0; i < layout->ntensors; i++) {
        const struct mdl_tensor_info *ti = &layout->tensors[i];
        const size_t len = strlen(ti->name);
        p = put_u16(p, (uint16_t)len);
        memcpy(p, ti->name, len);
        p = put_u32(p + len, ti->ndim);
        for (uint32_t d = 0; d < ti->ndim; d++)
            p = put_u32(p, ti->shape[d]);
        p = put_u64(p, ti->offset);
        p = put_u64(p, ti->size);
    }
    for (size_t i = 0; i < layout->dim; i++) {
        uint32_t bits;
        memcpy(&bits, &params[i], sizeof(bits));
        p = put_u32(p, bits);
    }
    put_u32(p, (uint32_t)crc32_z(0, buf, (size_t)(p - buf)));
    rc = fl_file_write_atomic(path, buf, total);
    fl_free(buf);
    return rc;
}

/* ---- load */

struct mf_reader {
    FILE *f;
    const char *path;
    uLong crc;
    uint64_t pos;
    char *err;
    size_t errlen;
};

static enum fl_err rd(struct mf_reader *r, void *buf, size_t n)
{
    const size_t got = fread(buf, 1, n, r->f);
    r->crc = crc32_z(r->crc, buf, got);
    r->pos += got;
    if (got == n)
        return FL_OK;
    if (ferror(r->f)) {
        set_err(r->err, r->errlen, "'%s': read error: %s", r->path,
                strerror(errno));
        return FL_ERR_IO;
    }
    set_err(r->err, r->errlen, "'%s': truncated at byte %llu", r->path,
            (unsigned long long)r->pos);
    return FL_ERR_TRUNCATED;
}

static uint64_t get_le(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static enum fl_err rd_u16(struct mf_reader *r, uint16_t *v)
{
    unsigned char b[2];
    FL_FORWARD_ERR(rd(r, b, sizeof(b)));
    *v = (uint16_t)get_le(b, 2);
    return FL_OK;
}

static enum fl_err rd_u32(struct mf_reader *r, uint32_t *v)
{
    unsigned char b[4];
    FL_FORWARD_ERR(rd(r, b, sizeof(b)));
    *v = (uint32_t)get_le(b, 4);
    return FL_OK;
}

static enum fl_err rd_u64(struct mf_reader *r, uint64_t *v)
{
    unsigned char b[8];
    FL_FORWARD_ERR(rd(r, b, sizeof(b)));
    *v = get_le(b, 8);
    return FL_OK;
}

static enum fl_err bad(struct mf_reader *r, enum fl_err rc, const char *what)
{
    set_err(r->err, r->errlen, "'%s': %s", r->path, what);
    return rc;
}

static enum fl_err rd_fixed(struct mf_reader *r, size_t max_dim,
                            uint32_t *ntensors, uint64_t *dim,
                            uint64_t *round)
{
    char magic[MF_MAGIC_LEN];
    uint32_t version = 0;
    FL_FORWARD_ERR(rd(r, magic, sizeof(magic)));
    if (memcmp(magic, MF_MAGIC, MF_MAGIC_LEN) != 0)
        return bad(r, FL_ERR_FORMAT, "not a fedcomp model file (bad magic)");
    FL_FORWARD_ERR(rd_u32(r, &version));
    if (version != MF_VERSION) {
        set_err(r->err, r->errlen, "'%s': unsupported model file version %u"
                " (expected %u)", r->path, version, MF_VERSION);
        return FL_ERR_VERSION;
    }
    FL_FORWARD_ERR(rd_u32(r, ntensors));
    FL_FORWARD_ERR(rd_u64(r, dim));
    FL_FORWARD_ERR(rd_u64(r, round));
    if (*ntensors == 0)
        return bad(r, FL_ERR_FORMAT, "no tensors");
    if (*ntensors > MDL_MAX_TENSORS) {
        set_err(r->err, r->errlen, "'%s': %u tensors, more than the limit %d",
                r->path, *ntensors, MDL_MAX_TENSORS);
        return FL_ERR_TOO_LARGE;
    }
    if (*dim == 0)
        return bad(r, FL_ERR_FORMAT, "zero parameters");
    if (*dim > max_dim || *dim > SIZE_MAX / sizeof(float)) {
        set_err(r->err, r->errlen, "'%s': %llu parameters, more than the "
                "limit %zu", r->path, (unsigned long long)*dim, max_dim);
        return FL_ERR_TOO_LARGE;
    }
    return FL_OK;
}

static enum fl_err rd_tensor(struct mf_reader *r, size_t i, size_t off,
                             struct mdl_tensor_info *ti)
{
    uint16_t len = 0;
    uint64_t offset = 0, size = 0;
    char msg[96];
    FL_FORWARD_ERR(rd_u16(r, &len));
    if (len == 0 || len >= MDL_TENSOR_NAME_MAX)
        goto bad_name;
    FL_FORWARD_ERR(rd(r, ti->name, len));
    ti->name[len] = '\0';
    if (!name_ok(ti->name, len))
        goto bad_name;
    FL_FORWARD_ERR(rd_u32(r, &ti->ndim));
    if (ti->ndim != 1 && ti->ndim != 2) {
        snprintf(msg, sizeof(msg), "tensor %zu '%s' has %u dimensions",
                 i, ti->name, ti->ndim);
        return bad(r, FL_ERR_FORMAT, msg);
    }
    for (uint32_t d = 0; d < ti->ndim; d++)
        FL_FORWARD_ERR(rd_u32(r, &ti->shape[d]));
    FL_FORWARD_ERR(rd_u64(r, &offset));
    FL_FORWARD_ERR(rd_u64(r, &size));
    ti->offset = (size_t)offset;
    ti->size = (size_t)size;
    if (offset != off || tensor_ok(ti, off) != 0) {
        snprintf(msg, sizeof(msg), "tensor %zu '%s': shape, offset or size "
                 "inconsistent", i, ti->name);
        return bad(r, FL_ERR_FORMAT, msg);
    }
    return FL_OK;
bad_name:
    snprintf(msg, sizeof(msg), "tensor %zu has an invalid name", i);
    return bad(r, FL_ERR_FORMAT, msg);
}

static enum fl_err rd_layout(struct mf_reader *r, uint32_t ntensors,
                             uint64_t dim, struct mdl_layout *lay)
{
    size_t off = 0;
    memset(lay, 0, sizeof(*lay));
    lay->dim = (size_t)dim;
    lay->ntensors = ntensors;
    for (size_t i = 0; i < ntensors; i++) {
        FL_FORWARD_ERR(rd_tensor(r, i, off, &lay->tensors[i]));
        if (lay->tensors[i].size > dim - off)
            return bad(r, FL_ERR_FORMAT, "tensors extend past dim");
        off += lay->tensors[i].size;
    }
    if (off != dim)
        return bad(r, FL_ERR_FORMAT, "tensors do not cover dim");
    return FL_OK;
}

/* Parameters, CRC, end of file, finiteness. p: dim floats. */
static enum fl_err rd_body(struct mf_reader *r, size_t dim, float *p)
{
    unsigned char *bytes = (unsigned char *)p;
    unsigned char extra;
    uint32_t crc = 0;
    FL_FORWARD_ERR(rd(r, bytes, dim * 4));
    for (size_t i = 0; i < dim; i++) { /* LE bytes -> host floats in place */
        const uint32_t bits = (uint32_t)get_le(bytes + 4 * i, 4);
        memcpy(&p[i], &bits, sizeof(bits));
    }
    const uint32_t want = (uint32_t)r->crc;
    FL_FORWARD_ERR(rd_u32(r, &crc));
    if (crc != want) {
        set_err(r->err, r->errlen, "'%s': checksum mismatch (stored %08x, "
                "computed %08x)", r->path, crc, want);
        return FL_ERR_CHECKSUM;
    }
    if (fread(&extra, 1, 1, r->f) != 0)
        return bad(r, FL_ERR_TRAILING, "unexpected data after the checksum");
    for (size_t i = 0; i < dim; i++)
        if (!isfinite(p[i]))
            return bad(r, FL_ERR_NONFINITE, "non-finite parameter");
    return FL_OK;
}

enum fl_err mdl_file_load(const char *path, size_t max_dim,
                          struct mdl_layout *layout, float **params,
                          uint64_t *round, char *err, size_t errlen)
{
    struct mf_reader r = {.path = path, .err = err, .errlen = errlen};
    uint32_t ntensors = 0;
    uint64_t dim = 0, rnd = 0;
    float *p = NULL;
    enum fl_err rc = FL_OK;
    if (path == NULL || layout == NULL || params == NULL || round == NULL) {
        set_err(err, errlen, "load model: invalid argument");
        return FL_ERR_INVALID_ARG;
    }
    *params = NULL;
    r.f = fopen(path, "rb");
    if (r.f == NULL) {
        set_err(err, errlen, "'%s': %s", path, strerror(errno));
        return errno == ENOENT ? FL_ERR_NOT_FOUND : FL_ERR_IO;
    }
    r.crc = crc32_z(0, NULL, 0);
    rc = rd_fixed(&r, max_dim, &ntensors, &dim, &rnd);
    if (rc == FL_OK)
        rc = rd_layout(&r, ntensors, dim, layout);
    if (rc)
        goto out;
    p = fl_malloc((size_t)dim * sizeof(float));
    if (p == NULL) {
        rc = bad(&r, FL_ERR_NOMEM, "out of memory for the parameters");
        goto out;
    }
    rc = rd_body(&r, (size_t)dim, p);
    if (rc)
        goto out;
    *params = p;
    *round = rnd;
    p = NULL;
out:
    if (rc)
        memset(layout, 0, sizeof(*layout));
    fl_free(p);
    fclose(r.f);
    return rc;
}
