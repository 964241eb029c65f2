/*
 * fuzz_seed.h - for the seed generators of the fuzz targets (the main()
 * a target file has under -DFUZZ_..._SEEDS): write one seed file and run
 * it through the target once, so that every seed passes the target's own
 * checks. Header only: it is included by the target's .c file, which
 * defines LLVMFuzzerTestOneInput.
 */
#ifndef FUZZ_SEED_H
#define FUZZ_SEED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Write buf (len bytes) to DIR/NAME and run it through the target; exits
 * the generator on an I/O error. */
static void fuzz_seed_write(const char *dir, const char *name,
                            const uint8_t *buf, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (len > 0 && fwrite(buf, 1, len, f) != len) ||
        fclose(f) != 0) {
        fprintf(stderr, "cannot write the seed %s\n", path);
        exit(1);
    }
    LLVMFuzzerTestOneInput(buf, len);
}

#endif /* FUZZ_SEED_H */
