/*
 * replay_main.c - plain main() driver for the fuzz targets (no libFuzzer).
 *
 * Linked with one tests/fuzz/fuzz_*.c by gcc, it feeds every file named on
 * the command line, or found directly inside a directory named there (not
 * recursive, dot files skipped), to LLVMFuzzerTestOneInput once. A crash or
 * a failed check in the target aborts the process, so `make test` sees a
 * non-zero exit. Prints "replayed N inputs" and returns 0, or 1 when a file
 * cannot be read.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLAY_MAX_INPUT (64u << 20)

/* Read a whole file; caller frees *data. 0 on success. */
static int read_file(const char *path, uint8_t **data, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    struct stat st;
    uint8_t *buf;
    int rc = -1;

    *data = NULL;
    *len = 0;
    if (fp == NULL)
        return -1;
    if (fstat(fileno(fp), &st) != 0 || st.st_size < 0 ||
        (uint64_t)st.st_size > REPLAY_MAX_INPUT)
        goto out;
    /* one spare byte so that an empty file still gets a valid pointer */
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL)
        goto out;
    if (fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
        free(buf);
        goto out;
    }
    *data = buf;
    *len = (size_t)st.st_size;
    rc = 0;
out:
    fclose(fp);
    return rc;
}

static int replay_file(const char *path, long *count)
{
    uint8_t *data;
    size_t len;

    if (read_file(path, &data, &len) != 0) {
        fprintf(stderr, "replay: cannot read '%s': %s\n", path,
                strerror(errno));
        return -1;
    }
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    (*count)++;
    return 0;
}

static int replay_dir(const char *dir, long *count)
{
    DIR *d = opendir(dir);
    const struct dirent *de;
    int rc = 0;

    if (d == NULL) {
        fprintf(stderr, "replay: cannot open '%s': %s\n", dir,
                strerror(errno));
        return -1;
    }
    for (de = readdir(d); de != NULL; de = readdir(d)) {
        char path[4096];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >=
            (int)sizeof(path)) {
            rc = -1;
            continue;
        }
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (replay_file(path, count) != 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    long count = 0;
    int status = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        int rc;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: cannot stat '%s': %s\n", argv[i],
                    strerror(errno));
            status = 1;
            continue;
        }
        rc = S_ISDIR(st.st_mode) ? replay_dir(argv[i], &count)
                                 : replay_file(argv[i], &count);
        if (rc != 0)
            status = 1;
    }
    printf("replayed %ld inputs\n", count);
    return status;
}
