/*
 * fixture_bytes.h - test fixtures written byte by byte: little-endian
 * fields patched into a buffer, a trailing CRC-32 recomputed after such a
 * patch, and a tiny Fashion-MNIST-shaped IDX data set.
 *
 * For the unit tests only (linked from libtesthelp.a). The patching
 * helpers never fail; fb_write_idx returns 0 or -1 (a file could not be
 * written) and leaves what it wrote for the caller's teardown.
 */
#ifndef FIXTURE_BYTES_H
#define FIXTURE_BYTES_H

#include <stddef.h>
#include <stdint.h>

/* Little-endian writers for targeted corruption of a serialised file. */
void fb_le32(uint8_t *p, uint32_t v);
void fb_le64(uint8_t *p, uint64_t v);

/* The last 4 bytes of buf[0, len) := zlib CRC-32 of the bytes before them,
 * little-endian (the layout of the model, checkpoint and worker-state
 * files). len >= 4. */
void fb_fix_crc32(uint8_t *buf, size_t len);

/* DIR/train-labels-idx1-ubyte (label of sample i = i % 10) and
 * DIR/train-images-idx3-ubyte (n images of 2 x 2 pixels, filled by
 * pixels(i, px)). */
int fb_write_idx(const char *dir, uint32_t n,
                 void (*pixels)(uint32_t i, uint8_t px[4]));

#endif /* FIXTURE_BYTES_H */
