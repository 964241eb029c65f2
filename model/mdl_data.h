/*
 * mdl_data.h - Fashion-MNIST (IDX format, gzip or plain) loading.
 *
 * Files are streamed through zlib's gzread, so a worker that keeps only its
 * shard never holds the whole training set: labels are read whole (60 kB),
 * images only for the rows asked for. Every header field is checked against
 * the file's real length; a truncated or lying file gives FL_ERR_DATA with a
 * message naming the file and what is wrong.
 */
#ifndef MDL_DATA_H
#define MDL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"

#define MDL_DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"

/* A labelled set of images, pixels scaled to [0, 1], row-major n x dim. */
struct mdl_dataset {
    uint32_t n;
    uint32_t dim;        /* rows * cols of one image (784) */
    uint32_t nclasses;   /* 10 */
    float *x;            /* n * dim */
    uint8_t *y;          /* n labels in [0, nclasses) */
};

/* Read an IDX1 label file. Caller owns *labels (fl_free()). Labels >= 10 are
 * an error. err gets a one-line message on failure. */
enum fl_err mdl_idx_read_labels(const char *path, uint8_t **labels,
                                uint32_t *n, char *err, size_t errlen);

/* Read the rows keep[0..nkeep) (strictly ascending, each < the file's count)
 * of an IDX3 image file, scaled to [0, 1]. keep == NULL reads all rows
 * (nkeep ignored). Caller owns *x (fl_free()). */
enum fl_err mdl_idx_read_images(const char *path, const uint32_t *keep,
                                uint32_t nkeep, float **x, uint32_t *nrows,
                                uint32_t *dim, char *err, size_t errlen);

/* Load "<dir>/<split>-images-idx3-ubyte[.gz]" and the matching labels, where
 * split is "train" or "t10k"; keep/nkeep as above. Caller owns *out; free
 * with mdl_dataset_destroy(). */
enum fl_err mdl_dataset_load(const char *dir, const char *split,
                             const uint32_t *keep, uint32_t nkeep,
                             struct mdl_dataset **out, char *err,
                             size_t errlen);

/* Keep only the first n samples (n <= ds->n); for quick runs and tests. */
void mdl_dataset_truncate(struct mdl_dataset *ds, uint32_t n);

void mdl_dataset_destroy(struct mdl_dataset **dsp);

#endif /* MDL_DATA_H */
