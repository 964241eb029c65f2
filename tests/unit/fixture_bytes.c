/* fixture_bytes.c - see fixture_bytes.h. */
#include "fixture_bytes.h"

#include <stdio.h>
#include <zlib.h>

void fb_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void fb_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void fb_fix_crc32(uint8_t *buf, size_t len)
{
    const uLong c = crc32(crc32(0L, Z_NULL, 0), buf, (uInt)(len - 4));
    fb_le32(buf + len - 4, (uint32_t)c);
}

/* IDX headers are big-endian. */
static int put_be32(FILE *f, uint32_t v)
{
    const uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16),
                          (uint8_t)(v >> 8), (uint8_t)v};
    return fwrite(b, 1, 4, f) == 4 ? 0 : -1;
}

int fb_write_idx(const char *dir, uint32_t n,
                 void (*pixels)(uint32_t i, uint8_t px[4]))
{
    char path[512];
    int bad = 0;
    snprintf(path, sizeof(path), "%s/train-labels-idx1-ubyte", dir);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    bad |= put_be32(f, 0x801) | put_be32(f, n);
    for (uint32_t i = 0; i < n; i++)
        bad |= fputc((int)(i % 10), f) == EOF;
    bad |= fclose(f) != 0;
    snprintf(path, sizeof(path), "%s/train-images-idx3-ubyte", dir);
    f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    bad |= put_be32(f, 0x803) | put_be32(f, n) | put_be32(f, 2) |
           put_be32(f, 2);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t px[4];
        pixels(i, px);
        bad |= fwrite(px, 1, 4, f) != 4;
    }
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}
