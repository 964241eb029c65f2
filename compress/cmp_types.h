/*
 * cmp_types.h - the codings and codecs of compress/, and the metadata that
 * travels with every encoded tensor.
 *
 * The numeric values equal those of proto/fedcomp.proto (IndexCoding,
 * ValueCoding, Codec, TopkMethod) and of docs/wire-format.md, so that the
 * proto/ layer converts by value. They never change.
 */
#ifndef CMP_TYPES_H
#define CMP_TYPES_H

#include <stddef.h>
#include <stdint.h>

enum cmp_index_coding {
    CMP_INDEX_AUTO = 0,         /* encoder only: smallest, or varint if within 1/256 */
    CMP_INDEX_DELTA_VARINT = 1,
    CMP_INDEX_BITMAP = 2,
    CMP_INDEX_RICE = 3,
    CMP_INDEX_ALL = 4           /* k == n, no index stream */
};

enum cmp_value_coding {
    CMP_VALUE_FP32 = 1,
    CMP_VALUE_FP16 = 2,
    CMP_VALUE_BF16 = 3,
    CMP_VALUE_INT8 = 4
};

enum cmp_codec {
    CMP_CODEC_NONE = 1,
    CMP_CODEC_LZ4 = 2,
    CMP_CODEC_ZSTD = 3
};

enum cmp_topk_method {
    CMP_TOPK_EXACT = 1,
    CMP_TOPK_SAMPLED = 2
};

/* int8 values: one fp32 scale per block of this many values. */
#define CMP_INT8_BLOCK 256
/* zstd levels accepted; a level from the wire is clamped into this range. */
#define CMP_ZSTD_LEVEL_MIN 1
#define CMP_ZSTD_LEVEL_MAX 19

/* How to encode: chosen by the sender. */
struct cmp_params {
    enum cmp_index_coding index_coding; /* CMP_INDEX_AUTO recommended */
    enum cmp_value_coding values;
    enum cmp_codec codec;
    int level;                          /* zstd level; ignored otherwise */
};

/* What travels beside the payload (proto SparseTensor / DenseTensor fields).
 * For a dense tensor k == dimension and index_coding == CMP_INDEX_ALL. */
struct cmp_meta {
    uint64_t dimension;
    uint64_t k;
    enum cmp_index_coding index_coding;
    enum cmp_value_coding value_coding;
    enum cmp_codec codec;
    uint64_t raw_size;   /* bytes before the codec */
    uint32_t checksum;   /* CRC-32 (zlib polynomial) of the raw bytes */
};

/* Parse/format helpers for flags and reports ("fp16", "zstd", ...).
 * *_parse return 0 on success, -1 for an unknown name. */
const char *cmp_value_coding_name(enum cmp_value_coding v);
const char *cmp_codec_name(enum cmp_codec c);
const char *cmp_index_coding_name(enum cmp_index_coding c);
const char *cmp_topk_method_name(enum cmp_topk_method m);
int cmp_value_coding_parse(const char *s, enum cmp_value_coding *out);
/* Accepts "none", "lz4", "zstd" and "zstd:LEVEL". */
int cmp_codec_parse(const char *s, enum cmp_codec *out, int *level);
int cmp_topk_method_parse(const char *s, enum cmp_topk_method *out);

#endif /* CMP_TYPES_H */
