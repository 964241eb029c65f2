/*
 * mdl_file.h - the saved-model file format (docs/model-format.md).
 *
 * Little-endian: magic "FCMODEL1", a header with the layout (tensor names,
 * shapes, offsets), the round number, the float32 parameters, and a CRC-32
 * of everything before it. Written atomically (temporary file, fsync,
 * rename). Loading checks every field and the CRC before returning.
 */
#ifndef MDL_FILE_H
#define MDL_FILE_H

#include <stdint.h>

#include "common/fl_err.h"
#include "model/mdl_trainer.h"

enum fl_err mdl_file_save(const char *path, const struct mdl_layout *layout,
                          const float *params, uint64_t round);

/* Caller owns *params (fl_free()). The layout is copied into *layout.
 * max_dim bounds the allocation (FL_ERR_TOO_LARGE above it). */
enum fl_err mdl_file_load(const char *path, size_t max_dim,
                          struct mdl_layout *layout, float **params,
                          uint64_t *round, char *err, size_t errlen);

#endif /* MDL_FILE_H */
