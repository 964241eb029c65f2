/* cmp_types.c - names and parsers of the codings, codecs and methods. */
#include "compress/cmp_types.h"

#include <stdlib.h>
#include <string.h>

#include "common/fl_util.h"

struct name_entry {
    int value;
    const char *name;
};

static const struct name_entry value_names[] = {
    {CMP_VALUE_FP32, "fp32"},
    {CMP_VALUE_FP16, "fp16"},
    {CMP_VALUE_BF16, "bf16"},
    {CMP_VALUE_INT8, "int8"},
};

static const struct name_entry codec_names[] = {
    {CMP_CODEC_NONE, "none"},
    {CMP_CODEC_LZ4, "lz4"},
    {CMP_CODEC_ZSTD, "zstd"},
};

static const struct name_entry index_names[] = {
    {CMP_INDEX_AUTO, "auto"},
    {CMP_INDEX_DELTA_VARINT, "delta_varint"},
    {CMP_INDEX_BITMAP, "bitmap"},
    {CMP_INDEX_RICE, "rice"},
    {CMP_INDEX_ALL, "all"},
};

static const struct name_entry method_names[] = {
    {CMP_TOPK_EXACT, "exact"},
    {CMP_TOPK_SAMPLED, "sampled"},
};

static const char *name_of(const struct name_entry *t, size_t len, int v)
{
    for (size_t i = 0; i < len; i++) {
        if (t[i].value == v)
            return t[i].name;
    }
    return "unknown";
}

static int value_of(const struct name_entry *t, size_t len, const char *s,
                    int *out)
{
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (strcmp(t[i].name, s) == 0) {
            *out = t[i].value;
            return 0;
        }
    }
    return -1;
}

const char *cmp_value_coding_name(enum cmp_value_coding v)
{
    return name_of(value_names, FL_ARRAY_LEN(value_names), (int)v);
}

const char *cmp_codec_name(enum cmp_codec c)
{
    return name_of(codec_names, FL_ARRAY_LEN(codec_names), (int)c);
}

const char *cmp_index_coding_name(enum cmp_index_coding c)
{
    return name_of(index_names, FL_ARRAY_LEN(index_names), (int)c);
}

const char *cmp_topk_method_name(enum cmp_topk_method m)
{
    return name_of(method_names, FL_ARRAY_LEN(method_names), (int)m);
}

int cmp_value_coding_parse(const char *s, enum cmp_value_coding *out)
{
    int v;
    if (value_of(value_names, FL_ARRAY_LEN(value_names), s, &v) != 0)
        return -1;
    *out = (enum cmp_value_coding)v;
    return 0;
}

int cmp_topk_method_parse(const char *s, enum cmp_topk_method *out)
{
    int v;
    if (value_of(method_names, FL_ARRAY_LEN(method_names), s, &v) != 0)
        return -1;
    *out = (enum cmp_topk_method)v;
    return 0;
}

/* "zstd:LEVEL": the level must be a whole number in the accepted range;
 * anything else (empty, sign, trailing text, out of range) is refused. */
static int parse_zstd_level(const char *s, int *level)
{
    uint64_t v;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    if (fl_parse_u64(s, CMP_ZSTD_LEVEL_MIN, CMP_ZSTD_LEVEL_MAX, &v) != FL_OK)
        return -1;
    *level = (int)v;
    return 0;
}

int cmp_codec_parse(const char *s, enum cmp_codec *out, int *level)
{
    static const char zstd_prefix[] = "zstd:";
    int v;
    int lvl = -1;

    if (s == NULL)
        return -1;
    if (strncmp(s, zstd_prefix, sizeof zstd_prefix - 1) == 0) {
        if (parse_zstd_level(s + sizeof zstd_prefix - 1, &lvl) != 0)
            return -1;
        v = CMP_CODEC_ZSTD;
    } else if (value_of(codec_names, FL_ARRAY_LEN(codec_names), s, &v) != 0) {
        return -1;
    }
    *out = (enum cmp_codec)v;
    /* Without ":LEVEL" the caller's level (its default) is left alone. */
    if (level != NULL && lvl >= 0)
        *level = lvl;
    return 0;
}
