/*
 * mdl_data.c - IDX (MNIST-style) readers, gzip or plain, streamed.
 *
 * An IDX file is a big-endian header (magic, then one u32 count per
 * dimension) followed by the raw unsigned bytes. gzopen() reads plain files
 * transparently, so one code path serves both. Nothing is sized from the
 * header alone: a header can lie, so buffers grow as real data arrives
 * (labels, all images) or are sized by the caller's keep list, and every
 * read is checked, up to the last byte the header promises and one past it.
 */
#include "model/mdl_data.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"

#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAX_SIDE 4096u
#define IDX_MAX_PIXELS (1u << 20)
#define IDX_NCLASSES 10u
#define IDX_CHUNK (64u * 1024u)      /* read/skip granularity in bytes */
#define IDX_GZ_BUFFER (128u * 1024u)
#define IDX_PATH_MAX 4096

_Static_assert(sizeof(size_t) >= 8, "n * dim * 4 must fit in size_t");

/* An open IDX file and where its errors go. */
struct idx_file {
    gzFile gz;
    const char *path;
    char *err;
    size_t errlen;
};

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

static enum fl_err idx_open(struct idx_file *f, const char *path, char *err,
                            size_t errlen)
{
    f->path = path;
    f->err = err;
    f->errlen = errlen;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (f->gz == NULL) {
        if (errno == ENOENT) {
            set_err(err, errlen, "'%s': no such file", path);
            return FL_ERR_NOT_FOUND;
        }
        set_err(err, errlen, "'%s': cannot open: %s", path,
                errno != 0 ? strerror(errno) : "out of memory");
        return errno != 0 ? FL_ERR_IO : FL_ERR_NOMEM;
    }
    gzbuffer(f->gz, IDX_GZ_BUFFER);
    return FL_OK;
}

static void idx_close(struct idx_file *f)
{
    if (f->gz != NULL)
        gzclose(f->gz);
    f->gz = NULL;
}

/* Read up to len bytes; returns the count read (short only at the end of
 * the data) or -1 on a read or decompression error (message set). A gzip
 * stream cut short is reported by zlib as a short read, not an error. */
static long idx_read(struct idx_file *f, void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < len) {
        const size_t want = FL_MIN(len - got, (size_t)IDX_CHUNK * 16u);
        const int r = gzread(f->gz, p + got, (unsigned)want);
        if (r < 0) {
            int errnum = 0;
            const char *msg = gzerror(f->gz, &errnum);
            set_err(f->err, f->errlen, "'%s': read error: %s", f->path,
                    errnum == Z_ERRNO ? strerror(errno) : msg);
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (long)got;
}

static enum fl_err idx_read_u32(struct idx_file *f, uint32_t *v)
{
    unsigned char b[4];
    const long r = idx_read(f, b, sizeof(b));
    if (r < 0)
        return FL_ERR_IO;
    if (r != (long)sizeof(b)) {
        set_err(f->err, f->errlen, "'%s': truncated header", f->path);
        return FL_ERR_DATA;
    }
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
         (uint32_t)b[3];
    return FL_OK;
}

static enum fl_err idx_check_magic(struct idx_file *f, uint32_t want,
                                   const char *what)
{
    uint32_t magic = 0;
    FL_FORWARD_ERR(idx_read_u32(f, &magic));
    if (magic != want) {
        set_err(f->err, f->errlen,
                "'%s': bad magic 0x%08x (expected 0x%08x, an IDX %s file)",
                f->path, magic, want, what);
        return FL_ERR_DATA;
    }
    return FL_OK;
}

/* The data must end exactly where the header says. */
static enum fl_err idx_expect_eof(struct idx_file *f, uint32_t count,
                                  const char *what)
{
    unsigned char extra;
    const long r = idx_read(f, &extra, 1);
    if (r < 0)
        return FL_ERR_IO;
    if (r > 0) {
        set_err(f->err, f->errlen,
                "'%s': unexpected data after %u %s (header count too small)",
                f->path, count, what);
        return FL_ERR_DATA;
    }
    return FL_OK;
}

/* Discard nrows rows of rowlen bytes through buf (buflen >= rowlen).
 * *done gets the number of whole rows skipped. */
static enum fl_err idx_skip_rows(struct idx_file *f, uint64_t nrows,
                                 size_t rowlen, unsigned char *buf,
                                 size_t buflen, uint64_t *done)
{
    const uint64_t total = nrows * rowlen;
    uint64_t skipped = 0;
    while (skipped < total) {
        const size_t want = (size_t)FL_MIN(total - skipped, (uint64_t)buflen);
        const long r = idx_read(f, buf, want);
        if (r < 0)
            return FL_ERR_IO;
        skipped += (uint64_t)r;
        if ((size_t)r < want)
            break;
    }
    *done = skipped / rowlen;
    return skipped == total ? FL_OK : FL_ERR_TRUNCATED;
}

enum fl_err mdl_idx_read_labels(const char *path, uint8_t **labels,
                                uint32_t *n, char *err, size_t errlen)
{
    struct idx_file f = {0};
    enum fl_err rc = FL_OK;
    uint8_t *buf = NULL;
    uint32_t count = 0;
    size_t cap = 0, got = 0;

    if (path == NULL || labels == NULL || n == NULL) {
        set_err(err, errlen, "read labels: invalid argument");
        return FL_ERR_INVALID_ARG;
    }
    rc = idx_open(&f, path, err, errlen);
    if (rc)
        return rc;
    rc = idx_check_magic(&f, IDX_MAGIC_LABELS, "label (idx1)");
    if (rc)
        goto out;
    rc = idx_read_u32(&f, &count);
    if (rc)
        goto out;
    /* Grow with the data actually read, never to the header's word. */
    while (got < count) {
        if (got == cap) {
            const size_t ncap = FL_MIN((size_t)count,
                                       FL_MAX(cap * 2, (size_t)IDX_CHUNK));
            uint8_t *nb = fl_realloc(buf, ncap);
            if (nb == NULL) {
                set_err(err, errlen, "'%s': out of memory", path);
                rc = FL_ERR_NOMEM;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        const long r = idx_read(&f, buf + got, cap - got);
        if (r < 0) {
            rc = FL_ERR_IO;
            goto out;
        }
        got += (size_t)r;
        if (got < cap)
            break;
    }
    if (got < count) {
        set_err(err, errlen, "'%s': truncated after %zu of %u labels", path,
                got, count);
        rc = FL_ERR_DATA;
        goto out;
    }
    rc = idx_expect_eof(&f, count, "labels");
    if (rc)
        goto out;
    for (size_t i = 0; i < got; i++) {
        if (buf[i] >= IDX_NCLASSES) {
            set_err(err, errlen, "'%s': label %u of sample %zu is not in 0..9",
                    path, buf[i], i);
            rc = FL_ERR_DATA;
            goto out;
        }
    }
    if (buf == NULL) { /* count == 0: still hand back an owned buffer */
        buf = fl_malloc(1);
        if (buf == NULL) {
            set_err(err, errlen, "'%s': out of memory", path);
            rc = FL_ERR_NOMEM;
            goto out;
        }
    }
    *labels = buf;
    *n = count;
    buf = NULL;
out:
    fl_free(buf);
    idx_close(&f);
    return rc;
}

/* Check the caller's keep list against the file's row count. */
static enum fl_err check_keep(const struct idx_file *f, const uint32_t *keep,
                              uint32_t nkeep, uint32_t count)
{
    for (uint32_t k = 0; k < nkeep; k++) {
        if (k > 0 && keep[k] <= keep[k - 1]) {
            set_err(f->err, f->errlen,
                    "'%s': keep list not strictly ascending at entry %u",
                    f->path, k);
            return FL_ERR_INVALID_ARG;
        }
    }
    if (nkeep > 0 && keep[nkeep - 1] >= count) {
        set_err(f->err, f->errlen, "'%s': row %u asked for but the file has "
                "%u images", f->path, keep[nkeep - 1], count);
        return FL_ERR_DATA;
    }
    return FL_OK;
}

/* Where a read of images stands. */
struct img_read {
    struct idx_file f;
    uint32_t count;        /* rows the header promises */
    size_t dim;            /* bytes (pixels) per row */
    unsigned char *chunk;  /* row / skip buffer, >= dim bytes */
    size_t chunklen;
    float *x;              /* output, cap rows */
    size_t cap;
    uint32_t next_row;     /* next row in the file not yet consumed */
};

static enum fl_err img_header(struct img_read *s, uint32_t expect_count)
{
    uint32_t rows = 0, cols = 0;
    FL_FORWARD_ERR(idx_check_magic(&s->f, IDX_MAGIC_IMAGES, "image (idx3)"));
    FL_FORWARD_ERR(idx_read_u32(&s->f, &s->count));
    FL_FORWARD_ERR(idx_read_u32(&s->f, &rows));
    FL_FORWARD_ERR(idx_read_u32(&s->f, &cols));
    if (rows == 0 || cols == 0 || rows > IDX_MAX_SIDE || cols > IDX_MAX_SIDE ||
        (uint64_t)rows * cols > IDX_MAX_PIXELS) {
        set_err(s->f.err, s->f.errlen, "'%s': image size %ux%u out of range",
                s->f.path, rows, cols);
        return FL_ERR_DATA;
    }
    if (expect_count != UINT32_MAX && s->count != expect_count) {
        set_err(s->f.err, s->f.errlen,
                "'%s': %u images but the label file has %u labels",
                s->f.path, s->count, expect_count);
        return FL_ERR_DATA;
    }
    s->dim = (size_t)rows * cols;
    return FL_OK;
}

static enum fl_err img_truncated(struct img_read *s, uint64_t whole_rows)
{
    set_err(s->f.err, s->f.errlen, "'%s': truncated after %llu of %u images",
            s->f.path, (unsigned long long)whole_rows, s->count);
    return FL_ERR_DATA;
}

/* Skip forward to file row `row` (>= next_row). */
static enum fl_err img_skip_to(struct img_read *s, uint32_t row)
{
    uint64_t done = 0;
    const enum fl_err rc = idx_skip_rows(&s->f, row - s->next_row, s->dim,
                                         s->chunk, s->chunklen, &done);
    if (rc == FL_ERR_TRUNCATED)
        return img_truncated(s, s->next_row + done);
    if (rc)
        return rc;
    s->next_row = row;
    return FL_OK;
}

/* Read file row next_row into output row k (growing the output if asked). */
static enum fl_err img_read_row(struct img_read *s, size_t k, int grow)
{
    if (grow && k == s->cap) {
        const size_t ncap = FL_MIN((size_t)s->count,
                                   FL_MAX(s->cap * 2, (size_t)1024));
        float *nx = fl_realloc(s->x, ncap * s->dim * sizeof(float));
        if (nx == NULL) {
            set_err(s->f.err, s->f.errlen, "'%s': out of memory", s->f.path);
            return FL_ERR_NOMEM;
        }
        s->x = nx;
        s->cap = ncap;
    }
    const long r = idx_read(&s->f, s->chunk, s->dim);
    if (r < 0)
        return FL_ERR_IO;
    if ((size_t)r < s->dim)
        return img_truncated(s, s->next_row);
    float *dst = s->x + k * s->dim;
    for (size_t j = 0; j < s->dim; j++)
        dst[j] = (float)s->chunk[j] / 255.0f;
    s->next_row++;
    return FL_OK;
}

static enum fl_err img_read_body(struct img_read *s, const uint32_t *keep,
                                 uint32_t nkeep, uint32_t *nrows)
{
    const uint32_t want = keep != NULL ? nkeep : s->count;
    s->chunklen = FL_MAX(s->dim, (size_t)IDX_CHUNK);
    s->chunk = fl_malloc(s->chunklen);
    if (keep != NULL)
        s->x = fl_malloc((size_t)nkeep * s->dim * sizeof(float));
    if (s->chunk == NULL || (keep != NULL && s->x == NULL)) {
        set_err(s->f.err, s->f.errlen, "'%s': out of memory", s->f.path);
        return FL_ERR_NOMEM;
    }
    s->cap = keep != NULL ? nkeep : 0;
    for (uint32_t k = 0; k < want; k++) {
        if (keep != NULL)
            FL_FORWARD_ERR(img_skip_to(s, keep[k]));
        FL_FORWARD_ERR(img_read_row(s, k, keep == NULL));
    }
    FL_FORWARD_ERR(img_skip_to(s, s->count));
    FL_FORWARD_ERR(idx_expect_eof(&s->f, s->count, "images"));
    if (s->x == NULL) { /* zero rows: still an owned buffer */
        s->x = fl_malloc(sizeof(float));
        if (s->x == NULL) {
            set_err(s->f.err, s->f.errlen, "'%s': out of memory", s->f.path);
            return FL_ERR_NOMEM;
        }
    }
    *nrows = want;
    return FL_OK;
}

/* expect_count: UINT32_MAX for any, else the header count must equal it. */
static enum fl_err read_images(const char *path, const uint32_t *keep,
                               uint32_t nkeep, uint32_t expect_count,
                               float **x, uint32_t *nrows, uint32_t *dim,
                               char *err, size_t errlen)
{
    struct img_read s = {0};
    enum fl_err rc = idx_open(&s.f, path, err, errlen);
    if (rc)
        return rc;
    rc = img_header(&s, expect_count);
    if (rc)
        goto out;
    if (keep != NULL) {
        rc = check_keep(&s.f, keep, nkeep, s.count);
        if (rc)
            goto out;
    }
    rc = img_read_body(&s, keep, nkeep, nrows);
    if (rc)
        goto out;
    *x = s.x;
    *dim = (uint32_t)s.dim;
    s.x = NULL;
out:
    fl_free(s.x);
    fl_free(s.chunk);
    idx_close(&s.f);
    return rc;
}

enum fl_err mdl_idx_read_images(const char *path, const uint32_t *keep,
                                uint32_t nkeep, float **x, uint32_t *nrows,
                                uint32_t *dim, char *err, size_t errlen)
{
    if (path == NULL || x == NULL || nrows == NULL || dim == NULL) {
        set_err(err, errlen, "read images: invalid argument");
        return FL_ERR_INVALID_ARG;
    }
    return read_images(path, keep, nkeep, UINT32_MAX, x, nrows, dim, err,
                       errlen);
}

/* "<dir>/<split>-<kind>-ubyte.gz" if it exists, else without ".gz". */
static enum fl_err find_file(const char *dir, const char *split,
                             const char *kind, char *path, size_t pathlen,
                             char *err, size_t errlen)
{
    const int n = snprintf(path, pathlen, "%s/%s-%s-ubyte.gz", dir, split,
                           kind);
    if (n < 0 || (size_t)n >= pathlen) {
        set_err(err, errlen, "data path too long: '%s'", dir);
        return FL_ERR_INVALID_ARG;
    }
    if (access(path, F_OK) == 0)
        return FL_OK;
    path[n - 3] = '\0';
    if (access(path, F_OK) == 0)
        return FL_OK;
    set_err(err, errlen, "'%s': no such file (nor with .gz)", path);
    return FL_ERR_NOT_FOUND;
}

enum fl_err mdl_dataset_load(const char *dir, const char *split,
                             const uint32_t *keep, uint32_t nkeep,
                             struct mdl_dataset **out, char *err,
                             size_t errlen)
{
    char lpath[IDX_PATH_MAX], ipath[IDX_PATH_MAX];
    struct mdl_dataset *ds = NULL;
    uint8_t *labels = NULL;
    uint32_t nlabels = 0;
    enum fl_err rc = FL_OK;

    if (dir == NULL || split == NULL || *split == '\0' || out == NULL ||
        strchr(split, '/') != NULL) {
        set_err(err, errlen, "load dataset: invalid argument");
        return FL_ERR_INVALID_ARG;
    }
    rc = find_file(dir, split, "labels-idx1", lpath, sizeof(lpath), err,
                   errlen);
    if (rc == FL_OK)
        rc = find_file(dir, split, "images-idx3", ipath, sizeof(ipath), err,
                       errlen);
    if (rc == FL_OK)
        rc = mdl_idx_read_labels(lpath, &labels, &nlabels, err, errlen);
    if (rc)
        goto out;
    ds = fl_calloc(1, sizeof(*ds));
    if (ds == NULL) {
        set_err(err, errlen, "load dataset '%s': out of memory", split);
        rc = FL_ERR_NOMEM;
        goto out;
    }
    rc = read_images(ipath, keep, nkeep, nlabels, &ds->x, &ds->n, &ds->dim,
                     err, errlen);
    if (rc)
        goto out;
    if (keep != NULL) { /* compact the kept labels in place (ascending) */
        for (uint32_t k = 0; k < nkeep; k++)
            labels[k] = labels[keep[k]];
    }
    ds->y = labels;
    labels = NULL;
    ds->nclasses = IDX_NCLASSES;
    *out = ds;
    ds = NULL;
out:
    fl_free(labels);
    mdl_dataset_destroy(&ds);
    return rc;
}

void mdl_dataset_truncate(struct mdl_dataset *ds, uint32_t n)
{
    if (ds != NULL && n < ds->n)
        ds->n = n;
}

void mdl_dataset_destroy(struct mdl_dataset **dsp)
{
    if (dsp == NULL || *dsp == NULL)
        return;
    fl_free((*dsp)->x);
    fl_free((*dsp)->y);
    fl_free(*dsp);
    *dsp = NULL;
}
