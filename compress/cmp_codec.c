/*
 * cmp_codec.c - the codec backends behind one small table: none, LZ4, zstd.
 *
 * The rest of compress/ never sees a library's API. Each backend checks on
 * decompression that the output is exactly the declared raw size (which the
 * caller has already bounded from dimension, k and the codings) and, for
 * zstd, that the payload is exactly one frame (TRAPS.md: content sizes can
 * lie and trailing frames would otherwise be accepted).
 *
 * Encoding with zstd knows the parts of the raw stream (index stream, value
 * planes) and ends a block at each: see zstd_compress_parts.
 *
 * zstd's own allocations go through fl_malloc/fl_free (ZSTD_customMem), so
 * the allocation-failure tests reach them too; LZ4's one-shot API uses a
 * state on the stack and allocates nothing.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_customMem, create*_advanced,
                                  ZSTD_getCParams */
#include <lz4.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "common/fl_alloc.h"
#include "compress/cmp_internal.h"

/* ------------------------------------------------------------ none */

static size_t none_bound(size_t len)
{
    return len;
}

static enum fl_err none_compress(struct cmp_codecs *cs, const uint8_t *src,
                                 size_t len, uint8_t *dst, size_t cap,
                                 int level, size_t *out_len)
{
    (void)cs;
    (void)level;
    if (cap < len)
        return FL_ERR_INVALID_ARG;
    if (len > 0)
        memcpy(dst, src, len);
    *out_len = len;
    return FL_OK;
}

/* Without a codec the payload is the raw stream itself: a short payload is
 * truncated, a long one has trailing bytes. */
static enum fl_err none_decompress(struct cmp_codecs *cs, const uint8_t *src,
                                   size_t len, uint8_t *dst, size_t raw_size)
{
    (void)cs;
    if (len < raw_size)
        return FL_ERR_TRUNCATED;
    if (len > raw_size)
        return FL_ERR_TRAILING;
    if (len > 0)
        memcpy(dst, src, len);
    return FL_OK;
}

/* ------------------------------------------------------------ LZ4 */

static size_t lz4_bound(size_t len)
{
    if (len > (size_t)LZ4_MAX_INPUT_SIZE)
        return 0;
    return (size_t)LZ4_compressBound((int)len);
}

static enum fl_err lz4_compress(struct cmp_codecs *cs, const uint8_t *src,
                                size_t len, uint8_t *dst, size_t cap,
                                int level, size_t *out_len)
{
    (void)cs;
    (void)level;
    if (len > (size_t)LZ4_MAX_INPUT_SIZE)
        return FL_ERR_TOO_LARGE;
    const int icap = cap > (size_t)INT_MAX ? INT_MAX : (int)cap;
    const int r = LZ4_compress_default((const char *)src, (char *)dst,
                                       (int)len, icap);
    if (r <= 0)
        return FL_ERR_CODEC;
    *out_len = (size_t)r;
    return FL_OK;
}

/* LZ4 blocks carry no length: the decoder is given exactly raw_size bytes
 * of room, so a block that would produce more fails (codec error) and one
 * that produces less is a size mismatch. */
static enum fl_err lz4_decompress(struct cmp_codecs *cs, const uint8_t *src,
                                  size_t len, uint8_t *dst, size_t raw_size)
{
    (void)cs;
    if (len > (size_t)INT_MAX || raw_size > (size_t)INT_MAX)
        return FL_ERR_CODEC;
    const int r = LZ4_decompress_safe((const char *)src, (char *)dst,
                                      (int)len, (int)raw_size);
    if (r < 0)
        return FL_ERR_CODEC;
    if ((size_t)r != raw_size)
        return FL_ERR_SIZE_MISMATCH;
    return FL_OK;
}

/* ------------------------------------------------------------ zstd */

static void *zstd_alloc(void *opaque, size_t size)
{
    (void)opaque;
    return fl_malloc(size);
}

static void zstd_free(void *opaque, void *address)
{
    (void)opaque;
    fl_free(address);
}

static const ZSTD_customMem zstd_mem = {zstd_alloc, zstd_free, NULL};

static enum fl_err zstd_error(size_t r)
{
    const ZSTD_ErrorCode code = ZSTD_getErrorCode(r);
    if (code == ZSTD_error_memory_allocation)
        return FL_ERR_NOMEM;
    if (code == ZSTD_error_dstSize_tooSmall)
        return FL_ERR_SIZE_MISMATCH;
    return FL_ERR_CODEC;
}

int cmp_zstd_level_clamp(int level)
{
    if (level < CMP_ZSTD_LEVEL_MIN)
        return CMP_ZSTD_LEVEL_MIN;
    if (level > CMP_ZSTD_LEVEL_MAX)
        return CMP_ZSTD_LEVEL_MAX;
    return level;
}

static size_t zstd_bound(size_t len)
{
    const size_t b = ZSTD_compressBound(len);
    return ZSTD_isError(b) ? 0 : b;
}

static enum fl_err zstd_compress(struct cmp_codecs *cs, const uint8_t *src,
                                 size_t len, uint8_t *dst, size_t cap,
                                 int level, size_t *out_len)
{
    if (cs->zstd_c == NULL) {
        cs->zstd_c = ZSTD_createCCtx_advanced(zstd_mem);
        if (cs->zstd_c == NULL)
            return FL_ERR_NOMEM;
    }
    const size_t r = ZSTD_compressCCtx(cs->zstd_c, dst, cap, src, len,
                                       cmp_zstd_level_clamp(level));
    if (ZSTD_isError(r))
        return zstd_error(r) == FL_ERR_NOMEM ? FL_ERR_NOMEM : FL_ERR_CODEC;
    *out_len = r;
    return FL_OK;
}

static enum fl_err zstd_decompress(struct cmp_codecs *cs, const uint8_t *src,
                                   size_t len, uint8_t *dst, size_t raw_size)
{
    const size_t frame = ZSTD_findFrameCompressedSize(src, len);
    if (ZSTD_isError(frame))
        return FL_ERR_CODEC;
    if (frame != len)
        return FL_ERR_TRAILING;
    /* A frame that declares another size is refused before any work. */
    const unsigned long long declared = ZSTD_getFrameContentSize(src, len);
    if (declared != ZSTD_CONTENTSIZE_UNKNOWN &&
        declared != ZSTD_CONTENTSIZE_ERROR && declared != raw_size)
        return FL_ERR_SIZE_MISMATCH;
    if (cs->zstd_d == NULL) {
        cs->zstd_d = ZSTD_createDCtx_advanced(zstd_mem);
        if (cs->zstd_d == NULL)
            return FL_ERR_NOMEM;
    }
    const size_t r = ZSTD_decompressDCtx(cs->zstd_d, dst, raw_size, src, len);
    if (ZSTD_isError(r))
        return zstd_error(r);
    return r == raw_size ? FL_OK : FL_ERR_SIZE_MISMATCH;
}

/* One frame, a block boundary at every part end (ZSTD_e_flush ends the
 * current block); the content size goes into the header as with
 * ZSTD_compressCCtx. Each block is at most 3 bytes more than its input, so
 * the frame stays within ZSTD_compressBound(len) for the few parts we
 * use; should it not, the loop stops and reports a codec error.
 *
 * Literal-dominated parts at the fast levels (strategy ZSTD_fast, which
 * takes every match of minMatch bytes it finds): the longest minMatch and
 * the smallest hash table. In sparse payloads the short matches found in
 * exponent bytes of few distinct values cost more bits than Huffman-coded
 * literals and slow the decoder; measured on top-k updates (1e6..1e7
 * elements, 0.1..10%): never larger (within 0.03%), fp16 1-3% smaller,
 * and decoding fp16 values 1.4-1.9 times faster. From level 3 on zstd
 * weighs its matches and the tuning is neutral (+-0.5%), so it is not
 * applied there. */
static size_t zstd_setup(ZSTD_CCtx *cc, size_t len, const struct cmp_parts *pt,
                         int level)
{
    size_t r = ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r) && pt->literal &&
        ZSTD_getCParams(level, len, 0).strategy == ZSTD_fast) {
        r = ZSTD_CCtx_setParameter(cc, ZSTD_c_minMatch, ZSTD_MINMATCH_MAX);
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(cc, ZSTD_c_hashLog, ZSTD_HASHLOG_MIN);
    }
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setPledgedSrcSize(cc, len);
    return r;
}

static enum fl_err zstd_compress_parts(struct cmp_codecs *cs,
                                       const uint8_t *src, size_t len,
                                       const struct cmp_parts *pt,
                                       uint8_t *dst, size_t cap, int level,
                                       size_t *out_len)
{
    if (cs->zstd_c == NULL) {
        cs->zstd_c = ZSTD_createCCtx_advanced(zstd_mem);
        if (cs->zstd_c == NULL)
            return FL_ERR_NOMEM;
    }
    ZSTD_CCtx *const cc = cs->zstd_c;
    size_t r = zstd_setup(cc, len, pt, cmp_zstd_level_clamp(level));
    ZSTD_outBuffer out = {dst, cap, 0};
    size_t start = 0;
    for (size_t i = 0; i < pt->n && !ZSTD_isError(r); i++) {
        ZSTD_inBuffer in = {src + start, pt->ends[i] - start, 0};
        const ZSTD_EndDirective mode =
            i + 1 == pt->n ? ZSTD_e_end : ZSTD_e_flush;
        do {
            const size_t before = out.pos;
            r = ZSTD_compressStream2(cc, &out, &in, mode);
            if (!ZSTD_isError(r) && r != 0 && out.pos == before &&
                out.pos == out.size)
                return FL_ERR_CODEC; /* no room: cannot happen */
        } while (!ZSTD_isError(r) && r != 0);
        start = pt->ends[i];
    }
    if (ZSTD_isError(r))
        return zstd_error(r) == FL_ERR_NOMEM ? FL_ERR_NOMEM : FL_ERR_CODEC;
    if (start != len)
        return FL_ERR_INVALID_ARG;
    *out_len = out.pos;
    return FL_OK;
}

/* ------------------------------------------------------------ table */

static const struct cmp_codec_backend backends[] = {
    {CMP_CODEC_NONE, 1, none_bound, none_compress, none_decompress, NULL},
    {CMP_CODEC_LZ4, 0, lz4_bound, lz4_compress, lz4_decompress, NULL},
    {CMP_CODEC_ZSTD, 0, zstd_bound, zstd_compress, zstd_decompress,
     zstd_compress_parts},
};

const struct cmp_codec_backend *cmp_codec_backend_get(enum cmp_codec id)
{
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        if (backends[i].id == id)
            return &backends[i];
    }
    return NULL;
}

void cmp_codecs_release(struct cmp_codecs *cs)
{
    ZSTD_freeCCtx(cs->zstd_c);
    ZSTD_freeDCtx(cs->zstd_d);
    cs->zstd_c = NULL;
    cs->zstd_d = NULL;
}

/* ------------------------------------------------------------ parts */

static void parts_add(struct cmp_parts *pt, size_t end)
{
    if (pt->n < CMP_MAX_PARTS && (pt->n == 0 || end > pt->ends[pt->n - 1]))
        pt->ends[pt->n++] = end;
}

void cmp_parts_of(struct cmp_parts *pt, size_t isize,
                  enum cmp_value_coding v, size_t k)
{
    const size_t vsize = (size_t)cmp_value_size(v, k);
    const size_t len = isize + vsize;
    size_t cuts[CMP_MAX_PARTS];
    size_t nc = 0;

    cuts[nc++] = isize;
    switch (v) {
    case CMP_VALUE_FP32:
        cuts[nc++] = isize + k;
        cuts[nc++] = isize + 2 * k;
        cuts[nc++] = isize + 3 * k;
        break;
    case CMP_VALUE_FP16:
    case CMP_VALUE_BF16:
        cuts[nc++] = isize + k;
        break;
    case CMP_VALUE_INT8:
        cuts[nc++] = isize + (vsize - k); /* the scales, then the bytes */
        break;
    }
    /* keep a cut only with CMP_MIN_PART bytes on both sides of it */
    pt->n = 0;
    pt->literal = 0;
    size_t last = 0;
    for (size_t i = 0; i < nc; i++) {
        if (cuts[i] - last >= CMP_MIN_PART && len - cuts[i] >= CMP_MIN_PART) {
            parts_add(pt, cuts[i]);
            last = cuts[i];
        }
    }
    parts_add(pt, len);
}

/* ------------------------------------------------------------ buffers */

enum fl_err cmp_buf_reserve(struct cmp_buf *b, size_t size)
{
    if (size <= b->cap)
        return FL_OK;
    /* Grow by at least half again so that slowly rising sizes do not
     * reallocate every call; the old contents are not needed. */
    size_t want = b->cap + b->cap / 2;
    if (want < size)
        want = size;
    void *p = fl_malloc(want);
    if (p == NULL)
        return FL_ERR_NOMEM;
    fl_free(b->p);
    b->p = p;
    b->cap = want;
    return FL_OK;
}

void cmp_buf_release(struct cmp_buf *b)
{
    fl_free(b->p);
    b->p = NULL;
    b->cap = 0;
}
