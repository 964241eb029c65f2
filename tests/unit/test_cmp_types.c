/* Unit tests for compress/cmp_types: names and parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_util.h"
#include "compress/cmp_types.h"

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(cmp_value_coding_name(CMP_VALUE_FP32), "fp32");
    assert_string_equal(cmp_value_coding_name(CMP_VALUE_FP16), "fp16");
    assert_string_equal(cmp_value_coding_name(CMP_VALUE_BF16), "bf16");
    assert_string_equal(cmp_value_coding_name(CMP_VALUE_INT8), "int8");
    assert_string_equal(cmp_value_coding_name((enum cmp_value_coding)0),
                        "unknown");
    assert_string_equal(cmp_codec_name(CMP_CODEC_NONE), "none");
    assert_string_equal(cmp_codec_name(CMP_CODEC_LZ4), "lz4");
    assert_string_equal(cmp_codec_name(CMP_CODEC_ZSTD), "zstd");
    assert_string_equal(cmp_codec_name((enum cmp_codec)9), "unknown");
    assert_string_equal(cmp_index_coding_name(CMP_INDEX_AUTO), "auto");
    assert_string_equal(cmp_index_coding_name(CMP_INDEX_DELTA_VARINT),
                        "delta_varint");
    assert_string_equal(cmp_index_coding_name(CMP_INDEX_BITMAP), "bitmap");
    assert_string_equal(cmp_index_coding_name(CMP_INDEX_RICE), "rice");
    assert_string_equal(cmp_index_coding_name(CMP_INDEX_ALL), "all");
    assert_string_equal(cmp_topk_method_name(CMP_TOPK_EXACT), "exact");
    assert_string_equal(cmp_topk_method_name(CMP_TOPK_SAMPLED), "sampled");
    assert_string_equal(cmp_topk_method_name((enum cmp_topk_method)0),
                        "unknown");
}

static void test_value_and_method_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int rc;
        int want;
    } vals[] = {
        {"fp32", 0, CMP_VALUE_FP32}, {"fp16", 0, CMP_VALUE_FP16},
        {"bf16", 0, CMP_VALUE_BF16}, {"int8", 0, CMP_VALUE_INT8},
        {"FP16", -1, 0},             {"fp", -1, 0},
        {"", -1, 0},                 {"fp16 ", -1, 0},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(vals); i++) {
        enum cmp_value_coding v = (enum cmp_value_coding)0;
        assert_int_equal(cmp_value_coding_parse(vals[i].s, &v), vals[i].rc);
        if (vals[i].rc == 0)
            assert_int_equal(v, vals[i].want);
    }
    enum cmp_value_coding v;
    assert_int_equal(cmp_value_coding_parse(NULL, &v), -1);
    enum cmp_topk_method m;
    assert_int_equal(cmp_topk_method_parse("exact", &m), 0);
    assert_int_equal(m, CMP_TOPK_EXACT);
    assert_int_equal(cmp_topk_method_parse("sampled", &m), 0);
    assert_int_equal(m, CMP_TOPK_SAMPLED);
    assert_int_equal(cmp_topk_method_parse("random", &m), -1);
}

static void test_codec_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int rc;
        int codec;
        int level; /* -7: unchanged */
    } cases[] = {
        {"none", 0, CMP_CODEC_NONE, -7}, {"lz4", 0, CMP_CODEC_LZ4, -7},
        {"zstd", 0, CMP_CODEC_ZSTD, -7}, {"zstd:1", 0, CMP_CODEC_ZSTD, 1},
        {"zstd:19", 0, CMP_CODEC_ZSTD, 19}, {"zstd:20", -1, 0, 0},
        {"zstd:0", -1, 0, 0},            {"zstd:", -1, 0, 0},
        {"zstd:-1", -1, 0, 0},           {"zstd:3x", -1, 0, 0},
        {"zstd:+3", -1, 0, 0},           {"lz4:1", -1, 0, 0},
        {"gzip", -1, 0, 0},              {"", -1, 0, 0},
    };
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        enum cmp_codec c = (enum cmp_codec)0;
        int level = -7;
        const int rc = cmp_codec_parse(cases[i].s, &c, &level);
        if (rc != cases[i].rc)
            fail_msg("'%s': rc %d", cases[i].s, rc);
        if (rc == 0) {
            assert_int_equal(c, cases[i].codec);
            assert_int_equal(level, cases[i].level);
        }
    }
    enum cmp_codec c;
    assert_int_equal(cmp_codec_parse("zstd:5", &c, NULL), 0);
    assert_int_equal(cmp_codec_parse(NULL, &c, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_value_and_method_parse),
        cmocka_unit_test(test_codec_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
