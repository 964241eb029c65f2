/*
 * cmp_index.c - index streams: delta-varint, bitmap and Rice.
 *
 * Every coding stores v_j = idx_j - idx_{j-1} - 1 (idx_{-1} = -1): the first
 * index, then each gap minus one. Indices are therefore strictly increasing
 * by construction; a decoder only has to check the range (computed in 64
 * bits, so a huge gap cannot wrap around) and the stream's length.
 * Byte-level layouts: docs/wire-format.md (section 12).
 */
#include <stdint.h>
#include <string.h>

#include "common/fl_util.h"
#include "compress/cmp_internal.h"

/* ------------------------------------------------------------ helpers */

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint64_t load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* Sum of v_j over the stream: idx_last + 1 - k. */
static uint64_t gap_sum(const uint32_t *idx, size_t k)
{
    return (uint64_t)idx[k - 1] + 1 - k;
}

/* ------------------------------------------------------------ varint */

static inline size_t varint_len(uint32_t v)
{
    return 1 + (v >= (1u << 7)) + (v >= (1u << 14)) + (v >= (1u << 21)) +
           (v >= (1u << 28));
}

size_t cmp_varint_size(const uint32_t *idx, size_t k)
{
    size_t total = 0;
    uint32_t prev_next = 0; /* idx_{j-1} + 1 */
    for (size_t j = 0; j < k; j++) {
        total += varint_len(idx[j] - prev_next);
        prev_next = idx[j] + 1;
    }
    return total;
}

size_t cmp_varint_write(const uint32_t *idx, size_t k, uint8_t *dst)
{
    uint8_t *p = dst;
    uint32_t prev_next = 0;
    for (size_t j = 0; j < k; j++) {
        uint32_t v = idx[j] - prev_next;
        while (v >= 0x80) {
            *p++ = (uint8_t)(v | 0x80);
            v >>= 7;
        }
        *p++ = (uint8_t)v;
        prev_next = idx[j] + 1;
    }
    return (size_t)(p - dst);
}

/* A varint of two or more bytes. Canonical form only: at most 5 bytes and
 * no final zero byte (which would encode the same value in fewer bytes). */
static enum fl_err varint_slow(const uint8_t **pp, const uint8_t *end,
                               uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    unsigned shift = 0;
    for (;;) {
        if (p == end)
            return FL_ERR_TRUNCATED;
        const uint8_t byte = *p++;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) {
            if (byte == 0 && shift > 0)
                return FL_ERR_FORMAT;
            break;
        }
        shift += 7;
        if (shift >= 35)
            return FL_ERR_FORMAT;
    }
    *pp = p;
    *out = v;
    return FL_OK;
}

enum fl_err cmp_varint_read(const uint8_t *src, size_t len, uint64_t n,
                            size_t k, uint32_t *idx)
{
    const uint8_t *p = src;
    const uint8_t *const end = src + len;
    uint64_t next = 0; /* smallest index allowed next */

    for (size_t j = 0; j < k; j++) {
        uint64_t v;
        if (p == end)
            return FL_ERR_TRUNCATED;
        if (*p < 0x80) { /* one-byte gaps dominate above ~1% density */
            v = *p++;
        } else {
            const enum fl_err rc = varint_slow(&p, end, &v);
            if (rc != FL_OK)
                return rc;
        }
        const uint64_t i = next + v;
        if (i >= n)
            return FL_ERR_INDEX_RANGE;
        idx[j] = (uint32_t)i;
        next = i + 1;
    }
    return p == end ? FL_OK : FL_ERR_TRAILING;
}

/* ------------------------------------------------------------ bitmap */

uint64_t cmp_bitmap_size(uint64_t n)
{
    return n / 8 + (n % 8 != 0);
}

size_t cmp_bitmap_write(const uint32_t *idx, size_t k, uint64_t n,
                        uint8_t *dst)
{
    const size_t len = (size_t)cmp_bitmap_size(n);
    memset(dst, 0, len);
    for (size_t j = 0; j < k; j++)
        dst[idx[j] >> 3] |= (uint8_t)(1u << (idx[j] & 7));
    return len;
}

enum fl_err cmp_bitmap_read(const uint8_t *src, size_t len, uint64_t n,
                            size_t k, uint32_t *idx)
{
    const uint64_t want = cmp_bitmap_size(n);
    size_t c = 0;

    if (len < want)
        return FL_ERR_TRUNCATED;
    if (len > want)
        return FL_ERR_TRAILING;
    for (size_t w = 0; w < len; w += 8) {
        uint64_t word;
        if (len - w >= 8) {
            word = load_le64(src + w);
        } else {
            word = 0;
            for (size_t b = len - w; b-- > 0;)
                word = (word << 8) | src[w + b];
        }
        while (word != 0) {
            const uint64_t i =
                (uint64_t)w * 8 + (unsigned)__builtin_ctzll(word);
            if (i >= n)
                return FL_ERR_INDEX_RANGE;
            if (c == k)
                return FL_ERR_TRAILING;
            idx[c++] = (uint32_t)i;
            word &= word - 1;
        }
    }
    return c == k ? FL_OK : FL_ERR_TRUNCATED;
}

/* ------------------------------------------------------------ Rice */

size_t cmp_rice_size_b(const uint32_t *idx, size_t k, unsigned b)
{
    uint64_t qsum = 0;
    uint32_t prev_next = 0;
    for (size_t j = 0; j < k; j++) {
        qsum += (idx[j] - prev_next) >> b;
        prev_next = idx[j] + 1;
    }
    const uint64_t bits = qsum + (uint64_t)k * (b + 1);
    return (size_t)(1 + bits / 8 + (bits % 8 != 0));
}

/* For geometric gaps of mean m the best Rice parameter is close to
 * log2(m * ln 2); the exact sizes of that parameter and its two neighbours
 * are compared, which costs three short passes over the k indices. */
size_t cmp_rice_size(const uint32_t *idx, size_t k, unsigned *b_out)
{
    const double mean = (double)gap_sum(idx, k) / (double)k;
    double m = mean * 0.6931471805599453;
    unsigned b0 = 0;
    while (m >= 2.0 && b0 < 31) {
        m /= 2.0;
        b0++;
    }
    size_t best = SIZE_MAX;
    unsigned best_b = 0;
    const unsigned lo = b0 > 0 ? b0 - 1 : 0;
    const unsigned hi = b0 < 31 ? b0 + 1 : 31;
    for (unsigned b = lo; b <= hi; b++) {
        const size_t s = cmp_rice_size_b(idx, k, b);
        if (s < best) {
            best = s;
            best_b = b;
        }
    }
    *b_out = best_b;
    return best;
}

/* MSB-first bit writer: acc holds cnt (< 8 between calls) pending bits. */
struct bitwr {
    uint8_t *p;
    uint64_t acc;
    unsigned cnt;
};

static inline void bw_put(struct bitwr *w, uint32_t value, unsigned nbits)
{
    w->acc = (w->acc << nbits) | value;
    w->cnt += nbits;
    while (w->cnt >= 8) {
        w->cnt -= 8;
        *w->p++ = (uint8_t)(w->acc >> w->cnt);
    }
}

size_t cmp_rice_write(const uint32_t *idx, size_t k, unsigned b, uint8_t *dst)
{
    struct bitwr w = {dst + 1, 0, 0};
    uint32_t prev_next = 0;
    const uint32_t low_mask = (uint32_t)((1ull << b) - 1);

    dst[0] = (uint8_t)b;
    for (size_t j = 0; j < k; j++) {
        const uint32_t v = idx[j] - prev_next;
        uint32_t q = v >> b;
        prev_next = idx[j] + 1;
        while (q >= 24) {
            bw_put(&w, 0xffffffu, 24);
            q -= 24;
        }
        /* q ones, a zero, then the b low bits: at most 23 + 1 + 31 bits,
         * so it goes in two pieces */
        bw_put(&w, ((1u << q) - 1) << 1, q + 1);
        bw_put(&w, v & low_mask, b);
    }
    if (w.cnt > 0)
        *w.p++ = (uint8_t)(w.acc << (8 - w.cnt));
    return (size_t)(w.p - dst);
}

/* MSB-first bit reader. buf holds cnt valid bits at its top; the fast
 * refill may also leave the following stream bits below them, which a later
 * refill ORs in again at the same place (Giesen's "variant 4" refill).
 * Both refills keep cnt <= 63 (the fast Rice path relies on it). */
struct bitrd {
    const uint8_t *p;
    const uint8_t *end;
    uint64_t buf;
    unsigned cnt;
};

static inline void br_refill(struct bitrd *r)
{
    if (r->end - r->p >= 8) {
        r->buf |= load_be64(r->p) >> r->cnt;
        r->p += (63 - r->cnt) >> 3;
        r->cnt |= 56;
        return;
    }
    while (r->cnt <= 55 && r->p < r->end) {
        r->buf |= (uint64_t)*r->p++ << (56 - r->cnt);
        r->cnt += 8;
    }
}

static inline void br_skip(struct bitrd *r, unsigned m)
{
    r->buf = m < 64 ? r->buf << m : 0;
    r->cnt -= m;
}

/* Count the unary quotient: ones up to the first zero, which is consumed.
 * Stops early once the quotient exceeds qmax (index out of range). */
static enum fl_err rice_unary(struct bitrd *r, uint64_t qmax, uint64_t *qp)
{
    uint64_t q = 0;
    for (;;) {
        if (r->cnt <= 56)
            br_refill(r);
        const uint64_t inv = ~r->buf;
        const unsigned ones = inv != 0 ? (unsigned)__builtin_clzll(inv) : 64;
        if (ones < r->cnt) {
            q += ones;
            br_skip(r, ones + 1);
            break;
        }
        q += r->cnt;
        br_skip(r, r->cnt);
        if (q > qmax)
            return FL_ERR_INDEX_RANGE;
        if (r->p == r->end)
            return FL_ERR_TRUNCATED;
    }
    if (q > qmax)
        return FL_ERR_INDEX_RANGE;
    *qp = q;
    return FL_OK;
}

/* After the last value: the rest of the current byte must be zero padding
 * and no byte may follow. */
static enum fl_err rice_check_end(const struct bitrd *r, const uint8_t *start)
{
    const uint64_t bits = (uint64_t)(r->p - start) * 8 - r->cnt;
    const uint64_t used = bits / 8 + (bits % 8 != 0);
    const unsigned pad = (unsigned)((8 - bits % 8) % 8);

    if (used != (uint64_t)(r->end - start))
        return FL_ERR_TRAILING;
    if (pad > 0 && (r->buf >> (64 - pad)) != 0)
        return FL_ERR_TRAILING;
    return FL_OK;
}

/* Slow path of one value: a unary run longer than the bits at hand, or the
 * end of the stream near. */
static enum fl_err rice_value_slow(struct bitrd *r, unsigned b, uint64_t qmax,
                                   uint64_t *v)
{
    uint64_t q;
    const enum fl_err rc = rice_unary(r, qmax, &q);
    if (rc != FL_OK)
        return rc;
    uint64_t low = 0;
    if (b > 0) {
        if (r->cnt < b)
            br_refill(r);
        if (r->cnt < b)
            return FL_ERR_TRUNCATED;
        low = r->buf >> (64 - b);
        br_skip(r, b);
    }
    *v = (q << b) | low;
    return FL_OK;
}

/* The fast path keeps the bits at hand *inverted* in x (cnt valid bits at
 * the top, MSB first): a unary run of ones is then a run of zeros that one
 * count-leading-zeros measures. Per value, with c1 = b + 1:
 *
 *     z    = clz(x)                   unary length
 *     vlen = z + c1                   code length
 *     x'   = x << vlen                next code at the top: the chain from
 *                                     one value to the next is 3 steps
 *     u    = rotl(x, vlen) & (2^c1 - 1)
 *
 * The code's top z bits are zeros, so the rotation brings exactly the stop
 * bit (inverted: 1) and the b low bits L (inverted) to the bottom:
 * u = 2^c1 - 1 - L, and v + 1 = (z << b) + L + 1 = T[z] - u with the table
 * T[z] = (z + 2) << b. That leaves about a dozen instructions per value and
 * few of them on the shift ports, which is what bounds the speed once the
 * chain is short (measured: 1.25 ns/value, from 2.1 for a plain reader).
 *
 * clz needs x != 0: a guard bit set below the valid bits at every refill
 * keeps it so, since a code never consumes more than the valid bits, the
 * guard only moves up and stays below them; a run that reaches it fails the
 * length check. The refill clears the bits below the valid ones (guard
 * included) before it ORs in the stream.
 *
 * With x86-64-v3 (LZCNT, SHLX) the chain is shortest, so GCC builds a
 * clone for it, picked at load time (ifunc); the result is the same bit for
 * bit (CMP_SIMD_CLONES). */

/* Values decoded per refill: a refill leaves at least 56 bits at hand
 * while 8 bytes of stream remain. A typical code is b + 2 or b + 3 bits, so
 * 56 / (b + 3) of them (at most 8) almost always fit; one that does not
 * ends the group early (its slow path is taken only after a refill). */
static inline unsigned rice_group(unsigned b)
{
    const unsigned g = 56 / (b + 3);
    return g < 1 ? 1 : g > 8 ? 8 : g;
}

/* Refill the inverted buffer near the end of the stream (cnt <= 63 before
 * and after, so bit 0 is never valid and holds the guard). */
static inline __attribute__((always_inline)) void
rice_refill_tail(const uint8_t **pp, const uint8_t *end, uint64_t *x,
                 int *cnt)
{
    const uint8_t *p = *pp;
    uint64_t v = *x & ~(~0ull >> *cnt);
    unsigned c = (unsigned)*cnt;
    if (end - p >= 8) {
        v |= ~load_be64(p) >> c;
        p += (63 - c) >> 3;
        c |= 56;
    } else {
        while (c <= 55 && p < end) {
            v |= (uint64_t)(uint8_t)~*p++ << (56 - c);
            c += 8;
        }
    }
    *x = v | 1;
    *cnt = (int)c;
    *pp = p;
}

/* Decode constants: T[z] = (z + 2) << b (z < 64), the mask of the stop
 * and low bits, c1 = b + 1. */
struct rice_k {
    uint64_t t[64];
    uint64_t m;
    unsigned c1;
};

/* One value if its whole code lies in the cnt valid bits (else 0, nothing
 * consumed); *last (the last index, UINT64_MAX before the first) advances
 * by v + 1. */
static inline __attribute__((always_inline)) int
rice_fast(uint64_t *x, int *cnt, const struct rice_k *rk, uint64_t *last)
{
    const uint64_t xv = *x;
    const unsigned z = (unsigned)__builtin_clzll(xv); /* xv != 0: guard */
    const unsigned vlen = z + rk->c1;
    if ((int)vlen > *cnt)
        return 0;
    /* 1 <= vlen <= cnt <= 63: every shift below is in range */
    *x = xv << vlen;
    const uint64_t r = (xv << vlen) | (xv >> (64 - vlen));
    *last += rk->t[z] - (r & rk->m);
    *cnt -= (int)vlen;
    return 1;
}

/* The valid bits of an inverted buffer as a plain bitrd buffer (zeros
 * below them), and back. */
static inline uint64_t rice_flip(uint64_t x, unsigned cnt)
{
    return ~x & ~(~0ull >> cnt);
}

/* The main loop, per group of up to rice_group(b) values:
 *
 *   refill    x gets the stream bits after its valid ones from `nxt`, the
 *             8 bytes at p loaded one group ahead, so that the load latency
 *             is off the chain (a plain refill near the end)
 *   decode    the first value fast or, if its code does not fit, with the
 *             plain bit reader (a long unary run, the end of the stream);
 *             then the others while they fit
 *   check     the group's last index < n
 *
 * `nxt` is the inverted 8 bytes at p whenever 16 remain. Indices are not
 * range-checked one by one: v_j >= 0 makes them increasing, so idx_j < n
 * for all j iff the last one is. The check once per group also keeps
 * `last` far from overflow (a fast value is < 2^37, a slow one < 2 n), and
 * as only a group's first value can take the slow path, an index out of
 * range is still reported before a later truncation, as a decoder checking
 * one at a time would. */
CMP_SIMD_CLONES
enum fl_err cmp_rice_read(const uint8_t *src, size_t len, uint64_t n,
                          size_t k, uint32_t *idx)
{
    if (len < 1)
        return FL_ERR_TRUNCATED;
    const unsigned b = src[0];
    if (b > 31)
        return FL_ERR_FORMAT;

    struct rice_k rk;
    for (unsigned z = 0; z < 64; z++)
        rk.t[z] = (uint64_t)(z + 2) << b;
    rk.m = (2ull << b) - 1;
    rk.c1 = b + 1;
    const uint64_t qmax = (n - 1) >> b;
    const size_t group = rice_group(b);

    /* the reader's state in locals that stay in registers */
    const uint8_t *p = src + 1;
    const uint8_t *const end = src + len;
    uint64_t x = 1; /* inverted bits, guard at bit 0 */
    int cnt = 0;
    uint64_t nxt = end - p >= 16 ? ~load_be64(p) : 0;
    uint64_t last = UINT64_MAX; /* the last index; +1 wraps to 0 */
    size_t j = 0;
    while (j < k) {
        if (end - p >= 16) {
            x = (x & ~(~0ull >> cnt)) | (nxt >> cnt) | 1;
            p += (63 - cnt) >> 3;
            cnt |= 56;
            nxt = ~load_be64(p);
        } else {
            rice_refill_tail(&p, end, &x, &cnt);
        }
        if (!rice_fast(&x, &cnt, &rk, &last)) {
            struct bitrd r = {p, end, rice_flip(x, (unsigned)cnt),
                              (unsigned)cnt};
            uint64_t v;
            const enum fl_err rc = rice_value_slow(&r, b, qmax, &v);
            if (rc != FL_OK)
                return rc;
            p = r.p;
            x = rice_flip(r.buf, r.cnt) | 1;
            cnt = (int)r.cnt;
            nxt = end - p >= 16 ? ~load_be64(p) : 0;
            last += v + 1;
        }
        idx[j++] = (uint32_t)last;
        const size_t stop = k - j > group - 1 ? j + group - 1 : k;
        while (j < stop && rice_fast(&x, &cnt, &rk, &last))
            idx[j++] = (uint32_t)last;
        if (last >= n)
            return FL_ERR_INDEX_RANGE;
    }
    const struct bitrd fin = {p, end, rice_flip(x, (unsigned)cnt),
                              (unsigned)cnt};
    return rice_check_end(&fin, src + 1);
}

/* ------------------------------------------------------------ bounds */

/* Largest Rice stream for k indices below n over every parameter 0..31:
 * bits = k (b + 1) + sum (v_j >> b) <= k (b + 1) + ((n - k) >> b). */
static uint64_t rice_max_bytes(uint64_t n, uint64_t k)
{
    uint64_t max_bits = 0;
    for (unsigned b = 0; b <= 31; b++) {
        const uint64_t bits = k * (b + 1) + ((n - k) >> b);
        max_bits = FL_MAX(max_bits, bits);
    }
    return 1 + max_bits / 8 + (max_bits % 8 != 0);
}

enum fl_err cmp_index_bounds(enum cmp_index_coding c, uint64_t n, uint64_t k,
                             uint64_t *min, uint64_t *max)
{
    switch (c) {
    case CMP_INDEX_DELTA_VARINT:
        /* A varint has one byte plus e extra bytes, and e extra bytes need
         * v >= 128^e >= 128 e; the v_j add up to at most n - k. */
        *min = k;
        *max = k + FL_MIN(4 * k, (n - k) / 128);
        return FL_OK;
    case CMP_INDEX_BITMAP:
        *min = *max = cmp_bitmap_size(n);
        return FL_OK;
    case CMP_INDEX_RICE:
        *min = 1 + k / 8 + (k % 8 != 0);
        *max = rice_max_bytes(n, k);
        return FL_OK;
    case CMP_INDEX_ALL:
        if (k != n)
            return FL_ERR_K_RANGE;
        *min = *max = 0;
        return FL_OK;
    case CMP_INDEX_AUTO:
        break;
    }
    return FL_ERR_UNSUPPORTED;
}
