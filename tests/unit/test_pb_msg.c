/*
 * Unit tests for proto/pb_msg: pack/unpack round trips of every body,
 * golden bytes, limits, versions, hostile bytes, allocation torture.
 *
 * With FL_REGEN_CORPUS set (to 1 or to a directory) the seed-corpus test
 * also writes the fuzz seeds, by default to tests/fuzz/corpus/fuzz_pb_unpack
 * (run from the repository root).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "common/fl_util.h"
#include "proto/pb_msg.h"
#include "proto/pb_msg_internal.h"

#define ANY_RC (-1)

static const struct pb_limits lim_default = {1u << 20, 1u << 22};

/* ------------------------------------------------------------ fixtures */

static const uint8_t payload_a[] = {
    0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
    0x07, 0x08, 0x09, 0x0a, 0xff, 0xfe, 0xfd, 0x00, 0x00, 0x00, 0x80, 0x3f,
};

static const struct pb_layout_entry layout3[] = {
    {"fc1.weight", 0, {256, 784, 0, 0}, 2},
    {"fc1.bias", 200704, {256, 0, 0, 0}, 1},
    {"conv.w", 200960, {8, 3, 3, 3}, 4},
    {"scalar", 201176, {0, 0, 0, 0}, 0},
};

static const struct pb_compress_cfg compress_full = {
    .density = 0.01f, .topk = 2, .values = 2, .codec = 3, .level = -5,
    .error_feedback = true, .momentum_correction = true, .clip_norm = 5.5f,
    .per_tensor = true, .max_update_bytes = 1u << 20,
    .momentum_factor = 0.75f,
};

static struct pb_envelope hello_full(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_HELLO};
    e.hello = (struct pb_hello){
        .device_id = "dev-01", .n_samples = 3750,
        .codecs_mask = (1u << 1) | (1u << 2) | (1u << 3),
        .has_model_version = true, .model_version = 17,
        .has_epoch = true, .epoch = 0xdeadbeefcafef00dULL,
        .software = "fedcomp 0.1"};
    return e;
}

static struct pb_envelope hello_min(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_HELLO};
    e.hello.device_id = "a";
    e.hello.n_samples = 5;
    return e;
}

static struct pb_envelope welcome_full(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_WELCOME};
    e.welcome = (struct pb_welcome){
        .epoch = UINT64_MAX, .device_id = "dev-01", .dimension = 201177,
        .layout = layout3, .nlayout = FL_ARRAY_LEN(layout3),
        .heartbeat_ms = 1000, .current_round = 42};
    return e;
}

static struct pb_envelope welcome_min(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_WELCOME};
    e.welcome.device_id = "";
    return e;
}

static struct pb_envelope task_full(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_TASK};
    e.task = (struct pb_task){
        .round = 9, .epoch = 77, .model_version = 8,
        .model = {.dimension = 6, .k = 6, .index_coding = 4,
                  .value_coding = 1, .codec = 3, .raw_size = 24,
                  .checksum = 0x12345678, .payload = payload_a,
                  .payload_len = sizeof(payload_a), .has_base_version = true,
                  .base_version = 7},
        .train = {.local_epochs = 2, .local_steps = 100, .batch_size = 32,
                  .lr = 0.05f, .momentum = 0.9f, .seed = 123456789},
        .compress = compress_full,
        .timeout_ms = 30000, .last_update = PB_UPDATE_NOT_USED,
        .last_update_round = 8, .allow_overrides = true,
        .has_model_delta = true,
        .model_delta = {.dimension = 6, .k = 2, .index_coding = 1,
                        .value_coding = 2, .codec = 3, .raw_size = 6,
                        .checksum = 0x9abcdef0, .payload = payload_a,
                        .payload_len = 12},
        .model_delta_base = 7};
    return e;
}

static struct pb_envelope task_min(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_TASK};
    e.task.model.dimension = 6;
    e.task.model.k = 6;
    e.task.model.index_coding = 4;
    return e;
}

static struct pb_envelope update_full(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_UPDATE};
    e.update = (struct pb_update){
        .round = 9, .n_samples = 3750,
        .delta = {.dimension = 1000000, .k = 10000, .index_coding = 3,
                  .value_coding = 4, .codec = 2, .raw_size = 30000,
                  .checksum = 0xffffffffu, .payload = payload_a,
                  .payload_len = sizeof(payload_a)},
        .stats = {.loss = 0.4321f, .train_ms = 812, .encode_ms = 12,
                  .load_ms = 3, .peak_rss_kb = 65536, .steps = 118},
        .has_used = true, .used = compress_full};
    return e;
}

static struct pb_envelope update_min(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_UPDATE};
    e.update.delta.dimension = 10;
    e.update.delta.k = 1;
    return e;
}

static struct pb_envelope reject_full(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_REJECT};
    e.reject = (struct pb_reject){.code = FL_ERR_CHECKSUM,
                                  .reason = "checksum mismatch in update",
                                  .has_round = true, .round = 9};
    return e;
}

static struct pb_envelope reject_min(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_REJECT};
    e.reject.reason = "";
    return e;
}

static struct pb_envelope bye_full(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_BYE};
    e.bye = (struct pb_bye){.reason = "training finished",
                            .last_update = PB_UPDATE_USED,
                            .last_update_round = 30};
    return e;
}

static struct pb_envelope bye_min(void)
{
    struct pb_envelope e = {.version = 1, .body = PB_BODY_BYE};
    return e;
}

struct fixture {
    const char *name;
    struct pb_envelope (*make)(void);
};

static const struct fixture fixtures[] = {
    {"hello_full", hello_full},     {"hello_min", hello_min},
    {"welcome_full", welcome_full}, {"welcome_min", welcome_min},
    {"task_full", task_full},       {"task_min", task_min},
    {"update_full", update_full},   {"update_min", update_min},
    {"reject_full", reject_full},   {"reject_min", reject_min},
    {"bye_full", bye_full},         {"bye_min", bye_min},
};

/* ------------------------------------------- a tiny protobuf writer */

struct wb {
    uint8_t b[16384];
    size_t n;
};

static void wb_raw(struct wb *w, const void *p, size_t n)
{
    assert_true(w->n + n <= sizeof(w->b));
    if (n > 0)
        memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void wb_varint(struct wb *w, uint64_t v)
{
    uint8_t c;
    do {
        c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v != 0)
            c |= 0x80;
        wb_raw(w, &c, 1);
    } while (v != 0);
}

static void wb_u64(struct wb *w, unsigned field, uint64_t v)
{
    wb_varint(w, (uint64_t)field << 3);
    wb_varint(w, v);
}

static void wb_bytes(struct wb *w, unsigned field, const void *p, size_t n)
{
    wb_varint(w, ((uint64_t)field << 3) | 2);
    wb_varint(w, n);
    wb_raw(w, p, n);
}

static void wb_str(struct wb *w, unsigned field, const char *s)
{
    wb_bytes(w, field, s, strlen(s));
}

static void wb_msg(struct wb *w, unsigned field, const struct wb *sub)
{
    wb_bytes(w, field, sub->b, sub->n);
}

/* Envelope{version, body field = sub} */
static void wb_envelope(struct wb *w, uint32_t version, unsigned body,
                        const struct wb *sub)
{
    w->n = 0;
    wb_u64(w, 1, version);
    if (sub != NULL)
        wb_msg(w, body, sub);
}

static void wb_hello(struct wb *w, const char *device_id)
{
    w->n = 0;
    wb_str(w, 1, device_id);
    wb_u64(w, 2, 10);
}

/* ------------------------------------------------------------- helpers */

static void pack_fixture(const struct pb_envelope *e, uint8_t **buf,
                         size_t *len)
{
    assert_int_equal(pb_pack_alloc(e, buf, len), FL_OK);
    assert_non_null(*buf);
    assert_true(*len > 0);
}

/* Unpack with lim and check the error-path contract. */
static enum fl_err unpack_check(const uint8_t *buf, size_t len,
                                const struct pb_limits *lim,
                                struct pb_msg **msg,
                                const struct pb_envelope **env)
{
    char err[256] = "untouched";
    uint32_t ver = 12345;
    const enum fl_err rc = pb_unpack(buf, len, lim, msg, env, &ver, err,
                                     sizeof(err));
    if (rc == FL_OK) {
        assert_non_null(*msg);
        assert_non_null(*env);
        assert_int_equal(ver, PB_PROTOCOL_VERSION);
        assert_string_equal(err, "");
    } else {
        assert_null(*msg);
        assert_null(*env);
        assert_true(strlen(err) > 0);
        assert_null(strchr(err, '\n'));
        if (rc != FL_ERR_VERSION && rc != FL_ERR_MISSING_FIELD &&
            rc != FL_ERR_TOO_LARGE)
            assert_int_equal(ver, 0);
    }
    return rc;
}

static void expect_rc(const uint8_t *buf, size_t len, enum fl_err want)
{
    struct pb_msg *msg = (struct pb_msg *)&msg; /* must be overwritten */
    const struct pb_envelope *env = NULL;
    const enum fl_err rc = unpack_check(buf, len, &lim_default, &msg, &env);
    if (rc != want)
        fail_msg("got %s, want %s", fl_err_name(rc), fl_err_name(want));
    pb_msg_destroy(&msg);
    assert_null(msg);
}

static void expect_wb(const struct wb *w, enum fl_err want)
{
    expect_rc(w->b, w->n, want);
}

/* ------------------------------------------------------ round trips */

static void test_round_trip_every_fixture(void **state)
{
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(fixtures); i++) {
        const struct pb_envelope in = fixtures[i].make();
        uint8_t *buf, *buf2;
        size_t len, len2;
        struct pb_msg *msg = NULL;
        const struct pb_envelope *out = NULL;

        pack_fixture(&in, &buf, &len);
        assert_int_equal(pb_packed_size(&in), len);
        /* pb_pack into an exact buffer writes the same bytes */
        buf2 = malloc(len);
        assert_non_null(buf2);
        assert_int_equal(pb_pack(&in, buf2, len, &len2), FL_OK);
        assert_int_equal(len2, len);
        assert_memory_equal(buf, buf2, len);
        /* one byte short: refused, nothing claimed written */
        assert_int_equal(pb_pack(&in, buf2, len - 1, &len2),
                         FL_ERR_TOO_LARGE);
        assert_int_equal(len2, 0);
        free(buf2);

        assert_int_equal(unpack_check(buf, len, &lim_default, &msg, &out),
                         FL_OK);
        const char *d = pb_envelope_diff(&in, out);
        if (d != NULL)
            fail_msg("%s: field %s differs after the round trip",
                     fixtures[i].name, d);
        /* packing the unpacked envelope gives the same bytes again */
        assert_int_equal(pb_pack_alloc(out, &buf2, &len2), FL_OK);
        assert_int_equal(len2, len);
        assert_memory_equal(buf, buf2, len);
        fl_free(buf2);
        pb_msg_destroy(&msg);
        assert_null(msg);
        fl_free(buf);
    }
}

/* Unpack a fixture; caller destroys msg. */
static const struct pb_envelope *unpack_fixture(struct pb_envelope (*make)(void),
                                                struct pb_msg **msg)
{
    const struct pb_envelope in = make();
    const struct pb_envelope *out = NULL;
    uint8_t *buf;
    size_t len;

    pack_fixture(&in, &buf, &len);
    assert_int_equal(unpack_check(buf, len, &lim_default, msg, &out), FL_OK);
    fl_free(buf);
    return out;
}

static void test_full_fields_read_back(void **state)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *e;
    (void)state;

    e = unpack_fixture(hello_full, &msg);
    assert_int_equal(e->body, PB_BODY_HELLO);
    assert_string_equal(e->hello.device_id, "dev-01");
    assert_int_equal(e->hello.codecs_mask, 0xe);
    assert_true(e->hello.has_epoch);
    assert_true(e->hello.epoch == 0xdeadbeefcafef00dULL);
    assert_string_equal(e->hello.software, "fedcomp 0.1");
    pb_msg_destroy(&msg);

    e = unpack_fixture(welcome_full, &msg);
    assert_int_equal(e->welcome.nlayout, 4);
    assert_string_equal(e->welcome.layout[2].name, "conv.w");
    assert_int_equal(e->welcome.layout[2].nshape, 4);
    assert_int_equal(e->welcome.layout[0].shape[1], 784);
    assert_int_equal(e->welcome.layout[3].nshape, 0);
    assert_true(e->welcome.epoch == UINT64_MAX);
    pb_msg_destroy(&msg);

    e = unpack_fixture(task_full, &msg);
    /* a dense tensor reads back with k = dimension and index coding "all" */
    assert_int_equal(e->task.model.k, 6);
    assert_int_equal(e->task.model.index_coding, 4);
    assert_true(e->task.model.has_base_version);
    assert_int_equal(e->task.model.base_version, 7);
    assert_memory_equal(e->task.model.payload, payload_a, sizeof(payload_a));
    assert_true(e->task.train.lr == 0.05f);
    assert_int_equal(e->task.compress.level, -5);
    assert_true(e->task.compress.momentum_factor == 0.75f);
    assert_int_equal(e->task.last_update, PB_UPDATE_NOT_USED);
    /* the lossy-downlink delta is a sparse tensor with its base */
    assert_true(e->task.has_model_delta);
    assert_int_equal(e->task.model_delta.k, 2);
    assert_int_equal(e->task.model_delta.index_coding, 1);
    assert_int_equal(e->task.model_delta.value_coding, 2);
    assert_int_equal(e->task.model_delta.payload_len, 12);
    assert_memory_equal(e->task.model_delta.payload, payload_a, 12);
    assert_false(e->task.model_delta.has_base_version);
    assert_int_equal(e->task.model_delta_base, 7);
    pb_msg_destroy(&msg);

    e = unpack_fixture(update_full, &msg);
    assert_int_equal(e->update.delta.k, 10000);
    assert_int_equal(e->update.delta.index_coding, 3);
    assert_false(e->update.delta.has_base_version);
    assert_true(e->update.has_used);
    assert_true(e->update.used.density == 0.01f);
    assert_int_equal(e->update.stats.steps, 118);
    pb_msg_destroy(&msg);
}

static void test_optional_fields_absent(void **state)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *e;
    (void)state;

    e = unpack_fixture(hello_min, &msg);
    assert_null(e->hello.software);
    assert_false(e->hello.has_model_version);
    assert_false(e->hello.has_epoch);
    assert_int_equal(e->hello.codecs_mask, 0);
    pb_msg_destroy(&msg);

    e = unpack_fixture(welcome_min, &msg);
    assert_null(e->welcome.layout);
    assert_int_equal(e->welcome.nlayout, 0);
    assert_int_equal(e->welcome.heartbeat_ms, 0);
    assert_string_equal(e->welcome.device_id, "");
    pb_msg_destroy(&msg);

    e = unpack_fixture(task_min, &msg);
    assert_int_equal(e->task.last_update, 0);
    assert_int_equal(e->task.last_update_round, 0);
    assert_false(e->task.allow_overrides);
    assert_false(e->task.model.has_base_version);
    assert_int_equal(e->task.model.payload_len, 0);
    assert_false(e->task.has_model_delta);
    assert_int_equal(e->task.model_delta_base, 0);
    assert_true(e->task.compress.momentum_factor == 0.0f);
    pb_msg_destroy(&msg);

    e = unpack_fixture(update_min, &msg);
    assert_false(e->update.has_used);
    assert_int_equal(e->update.stats.train_ms, 0);
    assert_int_equal(e->update.delta.payload_len, 0);
    pb_msg_destroy(&msg);

    e = unpack_fixture(reject_min, &msg);
    assert_false(e->reject.has_round);
    assert_string_equal(e->reject.reason, "");
    pb_msg_destroy(&msg);

    e = unpack_fixture(bye_min, &msg);
    assert_null(e->bye.reason);
    assert_int_equal(e->bye.last_update, 0);
    pb_msg_destroy(&msg);
}

/* Golden bytes: what goes on the wire for small envelopes. */
static void test_golden_bytes(void **state)
{
    static const uint8_t bye_min_bytes[] = {0x08, 0x01, 0x7a, 0x00};
    static const uint8_t bye_bytes[] = {0x08, 0x01, 0x7a, 0x07, 0x0a, 0x01,
                                        'x', 0x10, 0x02, 0x18, 0x05};
    static const uint8_t reject_bytes[] = {
        0x08, 0x01, 0x72, 0x0b, 0x08, 0x07, 0x12, 0x07,
        'v', 'e', 'r', 's', 'i', 'o', 'n'};
    static const uint8_t hello_bytes[] = {0x08, 0x01, 0x52, 0x09, 0x0a,
                                          0x01, 'a', 0x10, 0x05, 0x18,
                                          0x01, 0x18, 0x03};
    struct {
        struct pb_envelope env;
        const uint8_t *bytes;
        size_t len;
    } cases[4];
    (void)state;

    cases[0].env = bye_min();
    cases[0].bytes = bye_min_bytes;
    cases[0].len = sizeof(bye_min_bytes);
    cases[1].env = bye_min();
    cases[1].env.bye = (struct pb_bye){"x", PB_UPDATE_USED, 5};
    cases[1].bytes = bye_bytes;
    cases[1].len = sizeof(bye_bytes);
    cases[2].env = reject_min();
    cases[2].env.reject = (struct pb_reject){FL_ERR_VERSION, "version",
                                             false, 99};
    cases[2].bytes = reject_bytes;
    cases[2].len = sizeof(reject_bytes);
    cases[3].env = hello_min();
    cases[3].env.hello.codecs_mask = (1u << 3) | (1u << 1);
    cases[3].bytes = hello_bytes;
    cases[3].len = sizeof(hello_bytes);

    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        uint8_t buf[64];
        size_t len;
        assert_int_equal(pb_pack(&cases[i].env, buf, sizeof(buf), &len),
                         FL_OK);
        assert_int_equal(len, cases[i].len);
        assert_memory_equal(buf, cases[i].bytes, len);
        expect_rc(cases[i].bytes, cases[i].len, FL_OK);
    }
}

/* -------------------------------------------------- pack refusals */

static void test_pack_refuses_bad_envelopes(void **state)
{
    static char long_str[PB_MAX_STRING + 2];
    static char max_str[PB_MAX_STRING + 1];
    struct pb_layout_entry many[PB_MAX_LAYOUT + 1];
    struct pb_layout_entry bad_shape = {"w", 0, {1, 2, 3, 4}, PB_MAX_SHAPE + 1};
    struct {
        struct pb_envelope env;
        enum fl_err want;
    } cases[16];
    size_t n = 0;
    (void)state;

    memset(long_str, 'x', PB_MAX_STRING + 1);
    memset(max_str, 'y', PB_MAX_STRING);
    for (size_t i = 0; i < FL_ARRAY_LEN(many); i++)
        many[i] = layout3[0];

    cases[n].env = bye_min();
    cases[n].env.body = PB_BODY_NONE;
    cases[n++].want = FL_ERR_INVALID_ARG;
    cases[n].env = bye_min();
    cases[n].env.body = (enum pb_body)99;
    cases[n++].want = FL_ERR_INVALID_ARG;
    cases[n].env = hello_min();
    cases[n].env.hello.device_id = NULL;
    cases[n++].want = FL_ERR_INVALID_ARG;
    cases[n].env = welcome_min();
    cases[n].env.welcome.device_id = NULL;
    cases[n++].want = FL_ERR_INVALID_ARG;
    cases[n].env = reject_min();
    cases[n].env.reject.reason = NULL;
    cases[n++].want = FL_ERR_INVALID_ARG;
    cases[n].env = hello_min();
    cases[n].env.hello.device_id = long_str;
    cases[n++].want = FL_ERR_TOO_LARGE;
    cases[n].env = hello_min();
    cases[n].env.hello.software = long_str;
    cases[n++].want = FL_ERR_TOO_LARGE;
    cases[n].env = bye_min();
    cases[n].env.bye.reason = long_str;
    cases[n++].want = FL_ERR_TOO_LARGE;
    cases[n].env = welcome_min();
    cases[n].env.welcome.layout = many;
    cases[n].env.welcome.nlayout = PB_MAX_LAYOUT + 1;
    cases[n++].want = FL_ERR_TOO_LARGE;
    cases[n].env = welcome_min();
    cases[n].env.welcome.layout = &bad_shape;
    cases[n].env.welcome.nlayout = 1;
    cases[n++].want = FL_ERR_TOO_LARGE;
    cases[n].env = welcome_min();
    cases[n].env.welcome.nlayout = 1; /* layout NULL */
    cases[n++].want = FL_ERR_INVALID_ARG;
    cases[n].env = update_min();
    cases[n].env.update.delta.payload_len = 5; /* payload NULL */
    cases[n++].want = FL_ERR_INVALID_ARG;
    cases[n].env = task_min();
    cases[n].env.task.model.payload_len = 5;
    cases[n++].want = FL_ERR_INVALID_ARG;
    /* the limits themselves are fine */
    cases[n].env = hello_min();
    cases[n].env.hello.device_id = max_str;
    cases[n++].want = FL_OK;
    cases[n].env = welcome_min();
    cases[n].env.welcome.layout = many;
    cases[n].env.welcome.nlayout = PB_MAX_LAYOUT;
    cases[n++].want = FL_OK;

    for (size_t i = 0; i < n; i++) {
        uint8_t buf[8192];
        uint8_t *abuf = (uint8_t *)&abuf;
        size_t len = 77, alen = 77;
        const enum fl_err rc = pb_pack(&cases[i].env, buf, sizeof(buf), &len);
        if (rc != cases[i].want)
            fail_msg("case %zu: got %s, want %s", i, fl_err_name(rc),
                     fl_err_name(cases[i].want));
        assert_int_equal(pb_pack_alloc(&cases[i].env, &abuf, &alen),
                         cases[i].want);
        if (cases[i].want != FL_OK) {
            assert_int_equal(pb_packed_size(&cases[i].env), 0);
            assert_int_equal(len, 0);
            assert_null(abuf);
            assert_int_equal(alen, 0);
        } else {
            expect_rc(buf, len, FL_OK);
        }
        fl_free(abuf);
    }
    assert_int_equal(pb_packed_size(NULL), 0);
    assert_int_equal(pb_pack(NULL, NULL, 0, &n), FL_ERR_INVALID_ARG);
}

/* ------------------------------------------------------------ limits */

static void test_max_message(void **state)
{
    static const uint8_t one = 0;
    const struct pb_envelope in = update_full();
    const struct pb_limits big = {64u << 20, 1u << 20};
    uint8_t *buf;
    size_t len;
    char err[128];
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    (void)state;

    /* refused before a byte is read: the buffer may be shorter */
    assert_int_equal(pb_unpack(&one, 70000000, &big, &msg, &env, NULL, err,
                               sizeof(err)),
                     FL_ERR_TOO_LARGE);
    assert_string_equal(err, "message of 70000000 bytes exceeds the "
                             "67108864-byte limit");
    assert_null(msg);

    pack_fixture(&in, &buf, &len);
    struct pb_limits lim = {len - 1, 1u << 20};
    assert_int_equal(unpack_check(buf, len, &lim, &msg, &env),
                     FL_ERR_TOO_LARGE);
    lim.max_message = len;
    assert_int_equal(unpack_check(buf, len, &lim, &msg, &env), FL_OK);
    pb_msg_destroy(&msg);
    fl_free(buf);
}

/* The budget: NOMEM below some size, OK from it on, never a crash. */
static void test_max_alloc_threshold(void **state)
{
    (void)state;
    for (size_t f = 0; f < FL_ARRAY_LEN(fixtures); f++) {
        const struct pb_envelope in = fixtures[f].make();
        uint8_t *buf;
        size_t len, budget, first_ok = 0;
        char err[128];

        pack_fixture(&in, &buf, &len);
        for (budget = 0; budget < 100000; budget++) {
            struct pb_limits lim = {1u << 20, budget};
            struct pb_msg *msg = NULL;
            const struct pb_envelope *env = NULL;
            const enum fl_err rc = pb_unpack(buf, len, &lim, &msg, &env, NULL,
                                             err, sizeof(err));
            if (rc == FL_OK) {
                pb_msg_destroy(&msg);
                first_ok = budget;
                break;
            }
            assert_int_equal(rc, FL_ERR_NOMEM);
            assert_non_null(strstr(err, "parse budget"));
            assert_null(msg);
        }
        assert_true(first_ok > 0);
        /* every larger budget works too */
        for (budget = first_ok; budget < first_ok + 64; budget++) {
            struct pb_limits lim = {1u << 20, budget};
            struct pb_msg *msg = NULL;
            const struct pb_envelope *env = NULL;
            assert_int_equal(pb_unpack(buf, len, &lim, &msg, &env, NULL, NULL,
                                       0),
                             FL_OK);
            pb_msg_destroy(&msg);
        }
        fl_free(buf);
    }
}

/* Payload bytes are copied by the parser, so they count in the budget. */
static void test_budget_counts_payload(void **state)
{
    const size_t n = 100000;
    uint8_t *payload = calloc(1, n);
    struct pb_envelope in = update_min();
    uint8_t *buf;
    size_t len;
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    struct pb_limits lim = {1u << 20, n / 2};
    (void)state;

    assert_non_null(payload);
    in.update.delta.payload = payload;
    in.update.delta.payload_len = n;
    pack_fixture(&in, &buf, &len);
    assert_int_equal(unpack_check(buf, len, &lim, &msg, &env), FL_ERR_NOMEM);
    lim.max_alloc = n + 4096;
    assert_int_equal(unpack_check(buf, len, &lim, &msg, &env), FL_OK);
    assert_int_equal(env->update.delta.payload_len, n);
    pb_msg_destroy(&msg);
    fl_free(buf);
    free(payload);
}

/* Smallest budget with which buf parses (bisection; parsing is monotone
 * in the budget, test_max_alloc_threshold checks that). */
static size_t min_budget(const uint8_t *buf, size_t len)
{
    size_t lo = 0, hi = 1u << 26;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const struct pb_limits lim = {1u << 20, mid};
        struct pb_msg *msg = NULL;
        const struct pb_envelope *env = NULL;
        const enum fl_err rc = pb_unpack(buf, len, &lim, &msg, &env, NULL,
                                         NULL, 0);
        pb_msg_destroy(&msg);
        assert_true(rc == FL_OK || rc == FL_ERR_NOMEM);
        if (rc == FL_OK)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* The budget bounds the memory held at once: a string that the parser
 * replaces 50 times costs its size once, not 50 times. */
static void test_budget_counts_live_bytes(void **state)
{
    static char s256[PB_MAX_STRING + 1];
    static struct wb once, many, sub;
    size_t b_once, b_many;
    (void)state;

    memset(s256, 'z', PB_MAX_STRING);
    wb_hello(&sub, s256);
    wb_envelope(&once, 1, 10, &sub);
    for (int i = 0; i < 49; i++)
        wb_str(&sub, 1, s256);
    wb_envelope(&many, 1, 10, &sub);
    b_once = min_budget(once.b, once.n);
    b_many = min_budget(many.b, many.n);
    assert_true(b_once > PB_MAX_STRING);
    /* the parser's scan bookkeeping grows a little with the field count */
    if (b_many > b_once + 6000)
        fail_msg("budget %zu for 50 copies vs %zu for one", b_many, b_once);
}

/* --------------------------------------------- version and body */

static void test_wrong_version(void **state)
{
    static const uint32_t versions[] = {0, 2, 3, 255, UINT32_MAX};
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(versions); i++) {
        struct pb_envelope in = bye_full();
        uint8_t *buf;
        size_t len;
        uint32_t ver = 1;
        char err[128];
        struct pb_msg *msg = NULL;
        const struct pb_envelope *env = NULL;

        in.version = versions[i];
        pack_fixture(&in, &buf, &len);
        assert_int_equal(pb_unpack(buf, len, &lim_default, &msg, &env, &ver,
                                   err, sizeof(err)),
                         FL_ERR_VERSION);
        assert_int_equal(ver, versions[i]);
        assert_null(msg);
        assert_null(env);
        assert_non_null(strstr(err, "protocol version"));
        /* version_out may be NULL */
        assert_int_equal(pb_unpack(buf, len, &lim_default, &msg, &env, NULL,
                                   NULL, 0),
                         FL_ERR_VERSION);
        fl_free(buf);
    }
}

static void test_missing_body(void **state)
{
    struct wb w;
    char err[128];
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    uint32_t ver;
    (void)state;

    wb_envelope(&w, 1, 0, NULL);
    assert_int_equal(pb_unpack(w.b, w.n, &lim_default, &msg, &env, &ver, err,
                               sizeof(err)),
                     FL_ERR_MISSING_FIELD);
    assert_string_equal(err, "envelope body is missing");
    assert_int_equal(ver, 1);
    /* the version is judged first */
    wb_envelope(&w, 2, 0, NULL);
    expect_wb(&w, FL_ERR_VERSION);
    /* no version at all: protobuf's required field, a parse failure */
    w.n = 0;
    expect_wb(&w, FL_ERR_PROTO);
    expect_rc(NULL, 0, FL_ERR_PROTO);
}

/* ------------------------------------------------- hostile bytes */

static void test_hand_made_messages(void **state)
{
    static char s257[PB_MAX_STRING + 2];
    static char s256[PB_MAX_STRING + 1];
    struct wb w, sub, sub2, lay;
    (void)state;

    memset(s257, 'a', PB_MAX_STRING + 1);
    memset(s256, 'b', PB_MAX_STRING);

    /* strings: 256 bytes pass, 257 do not, wherever they are */
    wb_hello(&sub, s256);
    wb_envelope(&w, 1, 10, &sub);
    expect_wb(&w, FL_OK);
    wb_hello(&sub, s257);
    wb_envelope(&w, 1, 10, &sub);
    expect_wb(&w, FL_ERR_TOO_LARGE);
    wb_hello(&sub, "d");
    wb_str(&sub, 6, s257);
    wb_envelope(&w, 1, 10, &sub);
    expect_wb(&w, FL_ERR_TOO_LARGE);
    sub.n = 0;
    wb_u64(&sub, 1, 3);
    wb_str(&sub, 2, s257);
    wb_envelope(&w, 1, 14, &sub);
    expect_wb(&w, FL_ERR_TOO_LARGE);
    sub.n = 0;
    wb_str(&sub, 1, s257);
    wb_envelope(&w, 1, 15, &sub);
    expect_wb(&w, FL_ERR_TOO_LARGE);

    /* layouts: 64 tensors pass, 65 do not; 4 dims pass, 5 do not */
    lay.n = 0;
    wb_str(&lay, 1, "t");
    wb_u64(&lay, 2, 0);
    for (int d = 0; d < PB_MAX_SHAPE; d++)
        wb_u64(&lay, 3, 2);
    sub.n = 0;
    wb_u64(&sub, 1, 1);
    wb_str(&sub, 2, "d");
    wb_u64(&sub, 3, 16);
    for (int i = 0; i < PB_MAX_LAYOUT; i++)
        wb_msg(&sub, 4, &lay);
    wb_envelope(&w, 1, 11, &sub);
    expect_wb(&w, FL_OK);
    wb_msg(&sub, 4, &lay);
    wb_envelope(&w, 1, 11, &sub);
    expect_wb(&w, FL_ERR_TOO_LARGE);
    wb_u64(&lay, 3, 2);
    sub.n = 0;
    wb_u64(&sub, 1, 1);
    wb_str(&sub, 2, "d");
    wb_u64(&sub, 3, 16);
    wb_msg(&sub, 4, &lay);
    wb_envelope(&w, 1, 11, &sub);
    expect_wb(&w, FL_ERR_TOO_LARGE);
    sub2.n = 0;
    wb_str(&sub2, 1, s257);
    wb_u64(&sub2, 2, 0);
    sub.n = 0;
    wb_u64(&sub, 1, 1);
    wb_str(&sub, 2, "d");
    wb_u64(&sub, 3, 16);
    wb_msg(&sub, 4, &sub2);
    wb_envelope(&w, 1, 11, &sub);
    expect_wb(&w, FL_ERR_TOO_LARGE);

    /* error texts never quote wire strings (a newline would split a log
     * line); unpack_check asserts there is no newline */
    lay.n = 0;
    wb_str(&lay, 1, "evil\nname");
    wb_u64(&lay, 2, 0);
    for (int d = 0; d <= PB_MAX_SHAPE; d++)
        wb_u64(&lay, 3, 2);
    sub.n = 0;
    wb_u64(&sub, 1, 1);
    wb_str(&sub, 2, "d\n");
    wb_u64(&sub, 3, 16);
    wb_msg(&sub, 4, &lay);
    wb_envelope(&w, 1, 11, &sub);
    expect_wb(&w, FL_ERR_TOO_LARGE);

    /* a length prefix far past the end */
    w.n = 0;
    wb_u64(&w, 1, 1);
    wb_varint(&w, (13u << 3) | 2);
    wb_varint(&w, 0xffffffffffull);
    wb_raw(&w, "abc", 3);
    expect_wb(&w, FL_ERR_PROTO);

    /* a Task without its required model: protobuf-c refuses it */
    sub.n = 0;
    wb_u64(&sub, 1, 1);
    wb_u64(&sub, 2, 1);
    wb_u64(&sub, 3, 1);
    wb_bytes(&sub, 5, "", 0);
    wb_bytes(&sub, 6, "", 0);
    wb_u64(&sub, 7, 100);
    wb_envelope(&w, 1, 12, &sub);
    expect_wb(&w, FL_ERR_PROTO);

    /* wrong wire type for the version */
    w.n = 0;
    wb_str(&w, 1, "1");
    expect_wb(&w, FL_ERR_PROTO);
}

/* Enum numbers the .proto does not know pass through; receivers judge. */
/* A Task by hand: the dense placeholder model, empty settings, and a
 * sparse model_delta with or without its base version. */
static void wb_task_with_delta(struct wb *w, bool with_base)
{
    static struct wb task, dense, sparse, empty;
    dense.n = 0;
    wb_u64(&dense, 1, 6);
    wb_u64(&dense, 2, 1);
    wb_u64(&dense, 3, 1);
    wb_u64(&dense, 4, 0);
    wb_u64(&dense, 5, 0);
    wb_bytes(&dense, 6, "", 0);
    sparse.n = 0;
    for (unsigned f = 1; f <= 7; f++)
        wb_u64(&sparse, f, f == 2 ? 2 : 1);
    wb_bytes(&sparse, 8, "ab", 2);
    empty.n = 0;
    task.n = 0;
    wb_u64(&task, 1, 3);
    wb_u64(&task, 2, 1);
    wb_u64(&task, 3, 5);
    wb_msg(&task, 4, &dense);
    wb_msg(&task, 5, &empty);
    wb_msg(&task, 6, &empty);
    wb_u64(&task, 7, 1000);
    wb_msg(&task, 11, &sparse);
    if (with_base)
        wb_u64(&task, 12, 4);
    wb_envelope(w, 1, 12, &task);
}

static void test_task_model_delta(void **state)
{
    static struct wb w;
    struct pb_msg *msg = NULL;
    const struct pb_envelope *e = NULL;
    (void)state;

    wb_task_with_delta(&w, true);
    assert_int_equal(unpack_check(w.b, w.n, &lim_default, &msg, &e), FL_OK);
    assert_true(e->task.has_model_delta);
    assert_int_equal(e->task.model_delta_base, 4);
    assert_int_equal(e->task.model_delta.dimension, 1);
    assert_int_equal(e->task.model_delta.k, 2);
    assert_int_equal(e->task.model_delta.payload_len, 2);
    assert_int_equal(e->task.model_version, 5);
    /* an old sender's settings carry no factor: it reads as 0 */
    assert_true(e->task.compress.momentum_factor == 0.0f);
    pb_msg_destroy(&msg);
    /* a delta without the version it applies to is unusable */
    wb_task_with_delta(&w, false);
    expect_wb(&w, FL_ERR_MISSING_FIELD);
}

/* A tensor's payload is inline or announced as a transfer, never both;
 * an announced one has an id and a size. */
static void test_chunked_payload_fields(void **state)
{
    static const struct {
        uint64_t transfer, bytes;
        size_t inline_len;
        enum fl_err rc;
    } cases[] = {
        {7, 1000, 0, FL_OK},            /* announced */
        {0, 0, 3, FL_OK},               /* inline */
        {7, 1000, 3, FL_ERR_FORMAT},    /* both */
        {7, 0, 0, FL_ERR_INVALID_ARG},  /* packs as transfer without size */
    };
    static const uint8_t bytes3[3] = {1, 2, 3};
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(cases); i++) {
        struct pb_envelope env;
        uint8_t *buf = NULL;
        size_t len = 0;
        struct pb_msg *msg = NULL;
        const struct pb_envelope *out = NULL;
        memset(&env, 0, sizeof(env));
        env.version = PB_PROTOCOL_VERSION;
        env.body = PB_BODY_UPDATE;
        env.update.round = 1;
        env.update.n_samples = 1;
        env.update.delta.dimension = 10;
        env.update.delta.k = 1;
        env.update.delta.payload_transfer = cases[i].transfer;
        env.update.delta.payload_bytes = cases[i].bytes;
        env.update.delta.payload = cases[i].inline_len ? bytes3 : NULL;
        env.update.delta.payload_len = cases[i].inline_len;
        assert_int_equal(pb_pack_alloc(&env, &buf, &len), FL_OK);
        const enum fl_err rc = pb_unpack(buf, len, &lim_default, &msg, &out,
                                         NULL, NULL, 0);
        if (cases[i].rc == FL_ERR_INVALID_ARG) {
            /* packing sends has_payload_bytes with the transfer only:
             * a transfer of 0 bytes reads back as inconsistent */
            assert_int_equal(rc, FL_ERR_FORMAT);
        } else {
            assert_int_equal(rc, cases[i].rc);
        }
        if (rc == FL_OK) {
            assert_int_equal(out->update.delta.payload_transfer,
                             cases[i].transfer);
            assert_int_equal(out->update.delta.payload_bytes,
                             cases[i].bytes);
            assert_int_equal(out->update.delta.payload_len,
                             cases[i].inline_len);
        }
        pb_msg_destroy(&msg);
        fl_free(buf);
    }
}

static void test_unknown_enum_values_pass_through(void **state)
{
    struct wb w, sub, delta;
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    (void)state;

    wb_hello(&sub, "d");
    wb_u64(&sub, 3, 3);
    wb_u64(&sub, 3, 40);                   /* beyond the mask */
    wb_u64(&sub, 3, (uint64_t)-2);         /* negative int32 */
    wb_u64(&sub, 3, 1);
    wb_u64(&sub, 3, 3);                    /* twice */
    wb_envelope(&w, 1, 10, &sub);
    assert_int_equal(unpack_check(w.b, w.n, &lim_default, &msg, &env), FL_OK);
    assert_int_equal(env->hello.codecs_mask, (1u << 1) | (1u << 3));
    pb_msg_destroy(&msg);

    delta.n = 0;
    wb_u64(&delta, 1, 10);
    wb_u64(&delta, 2, 1);
    wb_u64(&delta, 3, 99);
    wb_u64(&delta, 4, (uint64_t)-1);
    wb_u64(&delta, 5, 7);
    wb_u64(&delta, 6, 0);
    wb_u64(&delta, 7, 0);
    wb_bytes(&delta, 8, "", 0);
    sub.n = 0;
    wb_u64(&sub, 1, 1);
    wb_u64(&sub, 2, 1);
    wb_msg(&sub, 3, &delta);
    wb_envelope(&w, 1, 13, &sub);
    assert_int_equal(unpack_check(w.b, w.n, &lim_default, &msg, &env), FL_OK);
    assert_int_equal(env->update.delta.index_coding, 99);
    assert_int_equal(env->update.delta.value_coding, UINT32_MAX);
    assert_int_equal(env->update.delta.codec, 7);
    pb_msg_destroy(&msg);

    /* and pack sends what it is given */
    struct pb_envelope t = task_full();
    uint8_t *buf;
    size_t len;
    t.task.last_update = 7;
    t.task.compress.codec = 1000;
    pack_fixture(&t, &buf, &len);
    assert_int_equal(unpack_check(buf, len, &lim_default, &msg, &env), FL_OK);
    assert_int_equal(env->task.last_update, 7);
    assert_int_equal(env->task.compress.codec, 1000);
    pb_msg_destroy(&msg);
    fl_free(buf);
}

static void test_unknown_fields_and_repeats(void **state)
{
    struct wb w, sub;
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    (void)state;

    /* unknown fields anywhere are skipped */
    wb_hello(&sub, "dev");
    wb_u64(&sub, 99, 5);
    wb_str(&sub, 100, "future");
    wb_envelope(&w, 1, 10, &sub);
    wb_u64(&w, 2000, 1);
    wb_str(&w, 7, "unknown envelope field");
    assert_int_equal(unpack_check(w.b, w.n, &lim_default, &msg, &env), FL_OK);
    assert_string_equal(env->hello.device_id, "dev");
    pb_msg_destroy(&msg);

    /* two bodies: the last one wins (protobuf oneof rule), nothing leaks */
    wb_hello(&sub, "dev");
    wb_envelope(&w, 1, 10, &sub);
    sub.n = 0;
    wb_str(&sub, 1, "bye");
    wb_msg(&w, 15, &sub);
    assert_int_equal(unpack_check(w.b, w.n, &lim_default, &msg, &env), FL_OK);
    assert_int_equal(env->body, PB_BODY_BYE);
    assert_string_equal(env->bye.reason, "bye");
    pb_msg_destroy(&msg);

    /* a repeated scalar: the last value wins */
    wb_hello(&sub, "first");
    wb_str(&sub, 1, "second");
    wb_envelope(&w, 1, 10, &sub);
    wb_u64(&w, 1, 1);
    assert_int_equal(unpack_check(w.b, w.n, &lim_default, &msg, &env), FL_OK);
    assert_string_equal(env->hello.device_id, "second");
    pb_msg_destroy(&msg);

    /* a sub-message that appears twice is merged (protobuf rule) */
    {
        struct wb dense, part1, part2;
        dense.n = 0;
        wb_u64(&dense, 1, 1);
        wb_u64(&dense, 2, 1);
        wb_u64(&dense, 3, 1);
        wb_u64(&dense, 4, 4);
        wb_u64(&dense, 5, 0);
        wb_bytes(&dense, 6, "abcd", 4);
        part1.n = 0;
        wb_u64(&part1, 1, 2);          /* local_epochs */
        part2.n = 0;
        wb_u64(&part2, 3, 32);         /* batch_size */
        sub.n = 0;
        wb_u64(&sub, 1, 1);
        wb_u64(&sub, 2, 1);
        wb_u64(&sub, 3, 1);
        wb_msg(&sub, 4, &dense);
        wb_msg(&sub, 5, &part1);
        wb_bytes(&sub, 6, "", 0);
        wb_u64(&sub, 7, 5);
        wb_msg(&sub, 5, &part2);
        wb_envelope(&w, 1, 12, &sub);
        assert_int_equal(unpack_check(w.b, w.n, &lim_default, &msg, &env),
                         FL_OK);
        assert_int_equal(env->task.train.local_epochs, 2);
        assert_int_equal(env->task.train.batch_size, 32);
        assert_int_equal(env->task.model.payload_len, 4);
        pb_msg_destroy(&msg);
    }

    /* a NUL inside a string cuts it (documented) */
    sub.n = 0;
    wb_bytes(&sub, 1, "ab\0cd", 5);
    wb_u64(&sub, 2, 1);
    wb_envelope(&w, 1, 10, &sub);
    assert_int_equal(unpack_check(w.b, w.n, &lim_default, &msg, &env), FL_OK);
    assert_string_equal(env->hello.device_id, "ab");
    pb_msg_destroy(&msg);
}

/* Every proper prefix of every fixture is an error, never a crash. */
static void test_every_prefix_fails(void **state)
{
    (void)state;
    for (size_t f = 0; f < FL_ARRAY_LEN(fixtures); f++) {
        const struct pb_envelope in = fixtures[f].make();
        uint8_t *buf;
        size_t len;

        pack_fixture(&in, &buf, &len);
        for (size_t n = 0; n < len; n++) {
            /* an exact-size copy, so ASan sees any read past the end */
            uint8_t *p = malloc(n + 1);
            struct pb_msg *msg = NULL;
            const struct pb_envelope *env = NULL;
            assert_non_null(p);
            memcpy(p, buf, n);
            const enum fl_err rc = unpack_check(n ? p : NULL, n, &lim_default,
                                                &msg, &env);
            if (rc == FL_OK)
                fail_msg("%s: prefix of %zu/%zu bytes parsed",
                         fixtures[f].name, n, len);
            assert_true(rc == FL_ERR_PROTO || rc == FL_ERR_MISSING_FIELD);
            free(p);
        }
        fl_free(buf);
    }
}

static int rc_allowed(enum fl_err rc)
{
    return rc == FL_OK || rc == FL_ERR_PROTO || rc == FL_ERR_NOMEM ||
           rc == FL_ERR_VERSION || rc == FL_ERR_MISSING_FIELD ||
           rc == FL_ERR_TOO_LARGE;
}

/* Seeded garbage and bit flips: the error contract holds, and anything
 * that parses survives a re-pack with equal fields. */
static void test_random_and_mutated_bytes(void **state)
{
    struct fl_rng rng;
    uint8_t *bufs[FL_ARRAY_LEN(fixtures)];
    size_t lens[FL_ARRAY_LEN(fixtures)];
    size_t parsed = 0;
    (void)state;

    fl_rng_seed(&rng, 20240601);
    for (size_t f = 0; f < FL_ARRAY_LEN(fixtures); f++) {
        const struct pb_envelope in = fixtures[f].make();
        pack_fixture(&in, &bufs[f], &lens[f]);
    }
    for (int iter = 0; iter < 30000; iter++) {
        uint8_t data[512];
        size_t n;
        if (iter % 3 == 0) {
            n = (size_t)fl_rng_below(&rng, 64);
            for (size_t i = 0; i < n; i++)
                data[i] = (uint8_t)fl_rng_next(&rng);
        } else {
            const size_t f = (size_t)fl_rng_below(&rng, FL_ARRAY_LEN(fixtures));
            n = lens[f];
            assert_true(n <= sizeof(data));
            memcpy(data, bufs[f], n);
            const int flips = 1 + (int)fl_rng_below(&rng, 3);
            for (int k = 0; k < flips; k++)
                data[fl_rng_below(&rng, n)] ^=
                    (uint8_t)(1u << fl_rng_below(&rng, 8));
        }
        struct pb_msg *msg = NULL, *msg2 = NULL;
        const struct pb_envelope *env = NULL, *env2 = NULL;
        const enum fl_err rc = unpack_check(data, n, &lim_default, &msg, &env);
        assert_true(rc_allowed(rc));
        if (rc != FL_OK)
            continue;
        parsed++;
        uint8_t *re;
        size_t relen;
        assert_int_equal(pb_pack_alloc(env, &re, &relen), FL_OK);
        assert_int_equal(unpack_check(re, relen, &lim_default, &msg2, &env2),
                         FL_OK);
        assert_null(pb_envelope_diff(env, env2));
        pb_msg_destroy(&msg2);
        pb_msg_destroy(&msg);
        fl_free(re);
    }
    assert_true(parsed > 100); /* the mutations do reach the far side */
    for (size_t f = 0; f < FL_ARRAY_LEN(fixtures); f++)
        fl_free(bufs[f]);
}

/* --------------------------------------------- property: random envelopes */

struct rand_store {
    char str[3][PB_MAX_STRING + 1];
    char names[PB_MAX_LAYOUT][PB_MAX_STRING + 1];
    struct pb_layout_entry layout[PB_MAX_LAYOUT];
    uint8_t payload[600];
};

static const char *rand_string(struct fl_rng *r, char *s, int allow_null)
{
    if (allow_null && fl_rng_below(r, 4) == 0)
        return NULL;
    /* lengths near the limit are as likely as short ones */
    const size_t n = fl_rng_below(r, 2) ? (size_t)fl_rng_below(r, 12)
                                        : PB_MAX_STRING -
                                              (size_t)fl_rng_below(r, 4);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(1 + fl_rng_below(r, 255)); /* any byte but NUL */
    s[n] = '\0';
    return s;
}

static float rand_float(struct fl_rng *r)
{
    const uint32_t bits = (uint32_t)fl_rng_next(r);
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

static uint64_t rand_u64(struct fl_rng *r)
{
    switch (fl_rng_below(r, 3)) {
    case 0:
        return 0;
    case 1:
        return fl_rng_below(r, 1000);
    default:
        return fl_rng_next(r);
    }
}

static void rand_tensor(struct fl_rng *r, struct rand_store *st,
                        struct pb_tensor *t)
{
    t->dimension = rand_u64(r);
    t->k = rand_u64(r);
    t->index_coding = (uint32_t)rand_u64(r);
    t->value_coding = (uint32_t)rand_u64(r);
    t->codec = (uint32_t)rand_u64(r);
    t->raw_size = rand_u64(r);
    t->checksum = (uint32_t)fl_rng_next(r);
    t->payload_len = (size_t)fl_rng_below(r, sizeof(st->payload));
    for (size_t i = 0; i < t->payload_len; i++)
        st->payload[i] = (uint8_t)fl_rng_next(r);
    t->payload = t->payload_len ? st->payload : NULL;
    t->has_base_version = fl_rng_below(r, 2);
    t->base_version = rand_u64(r);
    /* a chunked payload (transfer and size, nothing inline) or none */
    if (fl_rng_below(r, 4) == 0) {
        t->payload_len = 0;
        t->payload = NULL;
        t->payload_transfer = rand_u64(r) | 1;
        t->payload_bytes = rand_u64(r) | 1;
    }
}

static void rand_compress(struct fl_rng *r, struct pb_compress_cfg *c)
{
    c->density = rand_float(r);
    c->topk = (uint32_t)rand_u64(r);
    c->values = (uint32_t)rand_u64(r);
    c->codec = (uint32_t)rand_u64(r);
    c->level = (int32_t)fl_rng_next(r);
    c->error_feedback = fl_rng_below(r, 2);
    c->momentum_correction = fl_rng_below(r, 2);
    c->clip_norm = rand_float(r);
    c->per_tensor = fl_rng_below(r, 2);
    c->max_update_bytes = rand_u64(r);
    c->momentum_factor = rand_float(r);
}

static void rand_welcome(struct fl_rng *r, struct rand_store *st,
                         struct pb_welcome *w)
{
    w->epoch = rand_u64(r);
    w->device_id = rand_string(r, st->str[0], 0);
    w->dimension = rand_u64(r);
    w->nlayout = (size_t)fl_rng_below(r, PB_MAX_LAYOUT + 1);
    for (size_t i = 0; i < w->nlayout; i++) {
        struct pb_layout_entry *e = &st->layout[i];
        e->name = rand_string(r, st->names[i], 0);
        e->offset = rand_u64(r);
        e->nshape = (size_t)fl_rng_below(r, PB_MAX_SHAPE + 1);
        for (size_t d = 0; d < PB_MAX_SHAPE; d++)
            e->shape[d] = (uint32_t)fl_rng_next(r);
    }
    w->layout = w->nlayout ? st->layout : NULL;
    w->heartbeat_ms = (uint32_t)rand_u64(r);
    w->current_round = rand_u64(r);
    w->chunk_bytes = (uint32_t)rand_u64(r);
    w->chunk_window = (uint32_t)rand_u64(r);
}

static void rand_envelope(struct fl_rng *r, struct rand_store *st,
                          struct pb_envelope *e)
{
    static const enum pb_body bodies[] = {PB_BODY_HELLO, PB_BODY_WELCOME,
                                          PB_BODY_TASK, PB_BODY_UPDATE,
                                          PB_BODY_REJECT, PB_BODY_BYE,
                                          PB_BODY_CHUNK, PB_BODY_CREDIT};
    memset(e, 0, sizeof(*e));
    e->version = PB_PROTOCOL_VERSION;
    e->body = bodies[fl_rng_below(r, FL_ARRAY_LEN(bodies))];
    switch (e->body) {
    case PB_BODY_HELLO:
        e->hello.device_id = rand_string(r, st->str[0], 0);
        e->hello.n_samples = rand_u64(r);
        e->hello.codecs_mask = (uint32_t)fl_rng_next(r);
        e->hello.has_model_version = fl_rng_below(r, 2);
        e->hello.model_version = rand_u64(r);
        e->hello.has_epoch = fl_rng_below(r, 2);
        e->hello.epoch = rand_u64(r);
        e->hello.software = rand_string(r, st->str[1], 1);
        break;
    case PB_BODY_WELCOME:
        rand_welcome(r, st, &e->welcome);
        break;
    case PB_BODY_TASK:
        e->task.round = rand_u64(r);
        e->task.epoch = rand_u64(r);
        e->task.model_version = rand_u64(r);
        rand_tensor(r, st, &e->task.model);
        e->task.model.k = e->task.model.dimension; /* what a dense one has */
        e->task.model.index_coding = 4;
        e->task.train.local_epochs = (uint32_t)rand_u64(r);
        e->task.train.lr = rand_float(r);
        e->task.train.momentum = rand_float(r);
        e->task.train.seed = rand_u64(r);
        rand_compress(r, &e->task.compress);
        e->task.timeout_ms = (uint32_t)rand_u64(r);
        e->task.last_update = (uint32_t)fl_rng_below(r, 5);
        e->task.last_update_round = rand_u64(r);
        e->task.allow_overrides = fl_rng_below(r, 2);
        e->task.has_model_delta = fl_rng_below(r, 2);
        if (e->task.has_model_delta) {
            /* shares the payload store with the model; it does not
             * change between pack and compare */
            rand_tensor(r, st, &e->task.model_delta);
            e->task.model_delta_base = rand_u64(r);
        }
        break;
    case PB_BODY_UPDATE:
        e->update.round = rand_u64(r);
        e->update.n_samples = rand_u64(r);
        rand_tensor(r, st, &e->update.delta);
        e->update.stats.loss = rand_float(r);
        e->update.stats.peak_rss_kb = rand_u64(r);
        e->update.stats.steps = (uint32_t)rand_u64(r);
        e->update.has_used = fl_rng_below(r, 2);
        rand_compress(r, &e->update.used);
        break;
    case PB_BODY_REJECT:
        e->reject.code = (uint32_t)rand_u64(r);
        e->reject.reason = rand_string(r, st->str[2], 0);
        e->reject.has_round = fl_rng_below(r, 2);
        e->reject.round = rand_u64(r);
        break;
    case PB_BODY_BYE:
        e->bye.reason = rand_string(r, st->str[2], 1);
        e->bye.last_update = (uint32_t)fl_rng_next(r);
        e->bye.last_update_round = rand_u64(r);
        break;
    case PB_BODY_CHUNK:
        e->chunk.transfer = rand_u64(r);
        e->chunk.seq = (uint32_t)rand_u64(r);
        e->chunk.total = (uint32_t)rand_u64(r);
        e->chunk.len = (size_t)fl_rng_below(r, sizeof(st->payload));
        for (size_t i = 0; i < e->chunk.len; i++)
            st->payload[i] = (uint8_t)fl_rng_next(r);
        e->chunk.data = e->chunk.len ? st->payload : NULL;
        break;
    case PB_BODY_CREDIT:
        e->credit.transfer = rand_u64(r);
        e->credit.received = (uint32_t)rand_u64(r);
        e->credit.cancel = fl_rng_below(r, 2);
        break;
    case PB_BODY_NONE:
    default:
        fail();
    }
}

static void test_property_random_envelopes(void **state)
{
    static struct rand_store st;
    struct fl_rng r;
    (void)state;

    fl_rng_seed(&r, 42);
    for (int iter = 0; iter < 10000; iter++) {
        struct pb_envelope in;
        uint8_t *buf;
        size_t len;
        struct pb_msg *msg = NULL;
        const struct pb_envelope *out = NULL;

        rand_envelope(&r, &st, &in);
        pack_fixture(&in, &buf, &len);
        assert_int_equal(pb_packed_size(&in), len);
        assert_int_equal(unpack_check(buf, len, &lim_default, &msg, &out),
                         FL_OK);
        const char *d = pb_envelope_diff(&in, out);
        if (d != NULL)
            fail_msg("iteration %d (%s): %s differs", iter,
                     pb_body_name(in.body), d);
        pb_msg_destroy(&msg);
        fl_free(buf);
    }
}

/* The comparator used by the fuzz target must notice every field. */
static const char *mutate_field(struct pb_envelope *e, int i)
{
    static const struct pb_layout_entry other_layout[4] = {
        {"fc1.weight", 0, {256, 784, 0, 0}, 2},
        {"fc1.bias", 200704, {256, 0, 0, 0}, 1},
        {"conv.w", 200960, {8, 3, 3, 4}, 4},
        {"scalar", 201176, {0, 0, 0, 0}, 0},
    };
    static const uint8_t other_payload[sizeof(payload_a)] = {1};
    struct pb_tensor *t = e->body == PB_BODY_TASK ? &e->task.model
                                                  : &e->update.delta;
#define C(body, i) case PB_BODY_##body * 100 + (i)
    switch (e->body * 100 + i) {
    C(HELLO, 0):
        e->hello.device_id = "dev-02";
        return "hello.device_id";
    C(HELLO, 1):
        e->hello.n_samples++;
        return "hello.n_samples";
    C(HELLO, 2):
        e->hello.codecs_mask = 1;
        return "hello.codecs_mask";
    C(HELLO, 3):
        e->hello.has_model_version = false;
        return "hello.has_model_version";
    C(HELLO, 4):
        e->hello.model_version++;
        return "hello.model_version";
    C(HELLO, 5):
        e->hello.has_epoch = false;
        return "hello.has_epoch";
    C(HELLO, 6):
        e->hello.epoch++;
        return "hello.epoch";
    C(HELLO, 7):
        e->hello.software = NULL;
        return "hello.software";
    C(WELCOME, 0):
        e->welcome.epoch--;
        return "welcome.epoch";
    C(WELCOME, 1):
        e->welcome.device_id = "x";
        return "welcome.device_id";
    C(WELCOME, 2):
        e->welcome.dimension++;
        return "welcome.dimension";
    C(WELCOME, 3):
        e->welcome.nlayout--;
        return "welcome.nlayout";
    C(WELCOME, 4):
        e->welcome.layout = other_layout;
        return "welcome.layout.shape";
    C(WELCOME, 5):
        e->welcome.heartbeat_ms++;
        return "welcome.heartbeat_ms";
    C(WELCOME, 6):
        e->welcome.current_round++;
        return "welcome.current_round";
    C(TASK, 0):
        e->task.round++;
        return "task.round";
    C(TASK, 1):
        e->task.epoch++;
        return "task.epoch";
    C(TASK, 2):
        e->task.model_version++;
        return "task.model_version";
    C(TASK, 3):
        t->dimension++;
        return "task.model.dimension";
    C(TASK, 4):
        t->value_coding++;
        return "task.model.value_coding";
    C(TASK, 5):
        t->codec++;
        return "task.model.codec";
    C(TASK, 6):
        t->raw_size++;
        return "task.model.raw_size";
    C(TASK, 7):
        t->checksum++;
        return "task.model.checksum";
    C(TASK, 8):
        t->payload = other_payload;
        return "task.model.payload";
    C(TASK, 9):
        t->payload_len--;
        return "task.model.payload";
    C(TASK, 10):
        t->has_base_version = false;
        return "task.model.has_base_version";
    C(TASK, 11):
        t->base_version++;
        return "task.model.base_version";
    C(TASK, 12):
        e->task.train.local_epochs++;
        return "train.local_epochs";
    C(TASK, 13):
        e->task.train.local_steps++;
        return "train.local_steps";
    C(TASK, 14):
        e->task.train.batch_size++;
        return "train.batch_size";
    C(TASK, 15):
        e->task.train.lr = 1;
        return "train.lr";
    C(TASK, 16):
        e->task.train.momentum = 0;
        return "train.momentum";
    C(TASK, 17):
        e->task.train.seed++;
        return "train.seed";
    C(TASK, 18):
        e->task.compress.density = 0;
        return "compress.density";
    C(TASK, 19):
        e->task.compress.topk++;
        return "compress.topk";
    C(TASK, 20):
        e->task.compress.values++;
        return "compress.values";
    C(TASK, 21):
        e->task.compress.codec++;
        return "compress.codec";
    C(TASK, 22):
        e->task.compress.level++;
        return "compress.level";
    C(TASK, 23):
        e->task.compress.error_feedback = false;
        return "compress.error_feedback";
    C(TASK, 24):
        e->task.compress.momentum_correction = false;
        return "compress.momentum_correction";
    C(TASK, 25):
        e->task.compress.clip_norm = -0.0f;
        return "compress.clip_norm";
    C(TASK, 26):
        e->task.compress.per_tensor = false;
        return "compress.per_tensor";
    C(TASK, 27):
        e->task.compress.max_update_bytes++;
        return "compress.max_update_bytes";
    C(TASK, 28):
        e->task.timeout_ms++;
        return "task.timeout_ms";
    C(TASK, 29):
        e->task.last_update = 1;
        return "task.last_update";
    C(TASK, 30):
        e->task.last_update_round++;
        return "task.last_update_round";
    C(TASK, 31):
        e->task.allow_overrides = false;
        return "task.allow_overrides";
    C(TASK, 32):
        e->task.compress.momentum_factor = 0.5f;
        return "compress.momentum_factor";
    C(TASK, 33):
        e->task.has_model_delta = false;
        return "task.has_model_delta";
    C(TASK, 34):
        e->task.model_delta.k++;
        return "task.model_delta";
    C(TASK, 35):
        e->task.model_delta.payload = other_payload;
        return "task.model_delta";
    C(TASK, 36):
        e->task.model_delta_base++;
        return "task.model_delta_base";
    C(UPDATE, 0):
        e->update.round++;
        return "update.round";
    C(UPDATE, 1):
        e->update.n_samples++;
        return "update.n_samples";
    C(UPDATE, 2):
        t->dimension++;
        return "update.delta.dimension";
    C(UPDATE, 3):
        t->k++;
        return "update.delta.k";
    C(UPDATE, 4):
        t->index_coding++;
        return "update.delta.index_coding";
    C(UPDATE, 5):
        t->value_coding++;
        return "update.delta.value_coding";
    C(UPDATE, 6):
        t->codec++;
        return "update.delta.codec";
    C(UPDATE, 7):
        t->raw_size++;
        return "update.delta.raw_size";
    C(UPDATE, 8):
        t->checksum++;
        return "update.delta.checksum";
    C(UPDATE, 9):
        t->payload = other_payload;
        return "update.delta.payload";
    C(UPDATE, 10):
        e->update.stats.loss = 1;
        return "update.stats.loss";
    C(UPDATE, 11):
        e->update.stats.train_ms++;
        return "update.stats.train_ms";
    C(UPDATE, 12):
        e->update.stats.encode_ms++;
        return "update.stats.encode_ms";
    C(UPDATE, 13):
        e->update.stats.load_ms++;
        return "update.stats.load_ms";
    C(UPDATE, 14):
        e->update.stats.peak_rss_kb++;
        return "update.stats.peak_rss_kb";
    C(UPDATE, 15):
        e->update.stats.steps++;
        return "update.stats.steps";
    C(UPDATE, 16):
        e->update.has_used = false;
        return "update.has_used";
    C(UPDATE, 17):
        e->update.used.level++;
        return "compress.level";
    C(REJECT, 0):
        e->reject.code++;
        return "reject.code";
    C(REJECT, 1):
        e->reject.reason = "other";
        return "reject.reason";
    C(REJECT, 2):
        e->reject.has_round = false;
        return "reject.has_round";
    C(REJECT, 3):
        e->reject.round++;
        return "reject.round";
    C(BYE, 0):
        e->bye.reason = NULL;
        return "bye.reason";
    C(BYE, 1):
        e->bye.last_update++;
        return "bye.last_update";
    C(BYE, 2):
        e->bye.last_update_round++;
        return "bye.last_update_round";
    default:
        return NULL;
    }
#undef C
}

static void test_diff_notices_every_field(void **state)
{
    static struct pb_envelope (*const fulls[])(void) = {
        hello_full, welcome_full, task_full, update_full, reject_full,
        bye_full};
    (void)state;
    for (size_t f = 0; f < FL_ARRAY_LEN(fulls); f++) {
        const struct pb_envelope base = fulls[f]();
        int i;
        assert_null(pb_envelope_diff(&base, &base));
        for (i = 0;; i++) {
            struct pb_envelope m = base;
            const char *want = mutate_field(&m, i);
            if (want == NULL)
                break;
            const char *got = pb_envelope_diff(&base, &m);
            if (got == NULL || strcmp(got, want) != 0)
                fail_msg("%s field %d: diff says %s, want %s",
                         pb_body_name(base.body), i, got ? got : "(equal)",
                         want);
        }
        assert_true(i >= 3);
    }
    /* fields the wire does not carry are not compared */
    struct pb_envelope a = update_full(), b = update_full();
    b.update.delta.has_base_version = true;
    b.update.delta.base_version = 9;
    assert_null(pb_envelope_diff(&a, &b));
    a = task_full();
    b = task_full();
    b.task.model.k = 1;
    b.task.model.index_coding = 1;
    assert_null(pb_envelope_diff(&a, &b));
    a = reject_min();
    b = reject_min();
    b.reject.round = 5; /* has_round false */
    assert_null(pb_envelope_diff(&a, &b));
    b = bye_min();
    assert_string_equal(pb_envelope_diff(&a, &b), "body");
    b = reject_min();
    b.version = 2;
    assert_string_equal(pb_envelope_diff(&a, &b), "version");
}

/* --------------------------------------------- allocation torture */

static void test_alloc_torture_pack(void **state)
{
    (void)state;
    for (size_t f = 0; f < FL_ARRAY_LEN(fixtures); f++) {
        const struct pb_envelope in = fixtures[f].make();
        long n;
        for (n = 0; n < 100; n++) {
            uint8_t *buf = (uint8_t *)&buf;
            size_t len = 5;
            fl_alloc_fail_after(n);
            const enum fl_err rc = pb_pack_alloc(&in, &buf, &len);
            fl_alloc_fail_reset();
            if (rc == FL_OK) {
                assert_non_null(buf);
                fl_free(buf);
                break;
            }
            assert_int_equal(rc, FL_ERR_NOMEM);
            assert_null(buf);
            assert_int_equal(len, 0);
        }
        assert_int_equal(n, 1); /* exactly one allocation: the buffer */
    }
}

static void test_alloc_torture_unpack(void **state)
{
    (void)state;
    for (size_t f = 0; f < FL_ARRAY_LEN(fixtures); f++) {
        const struct pb_envelope in = fixtures[f].make();
        uint8_t *buf;
        size_t len;
        long n;

        pack_fixture(&in, &buf, &len);
        for (n = 0; n < 10000; n++) {
            struct pb_msg *msg = NULL;
            const struct pb_envelope *env = NULL;
            char err[128];
            fl_alloc_fail_after(n);
            const enum fl_err rc = pb_unpack(buf, len, &lim_default, &msg,
                                             &env, NULL, err, sizeof(err));
            const long used = fl_alloc_count();
            fl_alloc_fail_reset();
            if (rc == FL_OK) {
                assert_null(pb_envelope_diff(&in, env));
                pb_msg_destroy(&msg);
                /* the run that succeeded allocated exactly n times */
                assert_int_equal(used, n);
                break;
            }
            if (rc != FL_ERR_NOMEM)
                fail_msg("%s: allocation %ld failing gave %s (%s)",
                         fixtures[f].name, n, fl_err_name(rc), err);
            assert_null(msg);
            assert_null(env);
            assert_non_null(strstr(err, "out of memory"));
        }
        assert_true(n >= 2); /* the message and at least the envelope */
        fl_free(buf);
    }
}

/* --------------------------------------------------------- misc */

/* pb_peek_body names the body of every packed envelope, and a truncated
 * or garbage frame scans to NONE (or a body) without reading past it. */
static void test_peek_body(void **state)
{
    static struct rand_store st;
    struct fl_rng r;
    (void)state;
    fl_rng_seed(&r, 4242);
    for (int iter = 0; iter < 3000; iter++) {
        struct pb_envelope in;
        uint8_t *buf = NULL;
        size_t len = 0;
        rand_envelope(&r, &st, &in);
        if (pb_pack_alloc(&in, &buf, &len) != FL_OK)
            continue;
        assert_int_equal(pb_peek_body(buf, len), in.body);
        /* a prefix cut inside the body field does not scan */
        const size_t cut = (size_t)fl_rng_below(&r, len);
        uint8_t *copy = malloc(cut > 0 ? cut : 1);
        assert_non_null(copy);
        memcpy(copy, buf, cut);
        const enum pb_body b = pb_peek_body(copy, cut);
        assert_true(b == PB_BODY_NONE || b == in.body);
        free(copy);
        fl_free(buf);
    }
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t junk[64];
        const size_t n = (size_t)fl_rng_below(&r, sizeof(junk));
        for (size_t i = 0; i < n; i++)
            junk[i] = (uint8_t)fl_rng_next(&r);
        const enum pb_body b = pb_peek_body(junk, n);
        assert_true(b == PB_BODY_NONE ||
                    (b >= PB_BODY_HELLO && b <= PB_BODY_CREDIT));
    }
    assert_int_equal(pb_peek_body(NULL, 0), PB_BODY_NONE);
}

static void test_body_names(void **state)
{
    static const struct {
        enum pb_body body;
        const char *name;
    } names[] = {
        {PB_BODY_NONE, "none"},     {PB_BODY_HELLO, "hello"},
        {PB_BODY_WELCOME, "welcome"}, {PB_BODY_TASK, "task"},
        {PB_BODY_UPDATE, "update"}, {PB_BODY_REJECT, "reject"},
        {PB_BODY_BYE, "bye"},       {PB_BODY_CHUNK, "chunk"},
        {PB_BODY_CREDIT, "credit"}, {(enum pb_body)77, "unknown"},
    };
    (void)state;
    for (size_t i = 0; i < FL_ARRAY_LEN(names); i++)
        assert_string_equal(pb_body_name(names[i].body), names[i].name);
}

static void test_bad_arguments(void **state)
{
    static const uint8_t b[] = {0x08, 0x01, 0x7a, 0x00};
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    char err[8];
    (void)state;

    assert_int_equal(pb_unpack(b, sizeof(b), NULL, &msg, &env, NULL, NULL, 0),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(pb_unpack(NULL, 3, &lim_default, &msg, &env, NULL, NULL,
                               0),
                     FL_ERR_INVALID_ARG);
    assert_int_equal(pb_unpack(b, sizeof(b), &lim_default, NULL, &env, NULL,
                               NULL, 0),
                     FL_ERR_INVALID_ARG);
    assert_null(env);
    /* a short errbuf is truncated, not overrun */
    assert_int_equal(pb_unpack(b, 3, &lim_default, &msg, &env, NULL, err,
                               sizeof(err)),
                     FL_ERR_PROTO);
    assert_int_equal(strlen(err), sizeof(err) - 1);
    pb_msg_destroy(NULL);
    pb_msg_destroy(&msg);
    uint8_t *buf;
    size_t len;
    const struct pb_envelope e = bye_min();
    assert_int_equal(pb_pack_alloc(&e, NULL, &len), FL_ERR_INVALID_ARG);
    assert_int_equal(pb_pack_alloc(&e, &buf, NULL), FL_ERR_INVALID_ARG);
    assert_int_equal(pb_pack(&e, NULL, 100, &len), FL_ERR_TOO_LARGE);
    assert_int_equal(pb_pack(&e, NULL, 0, NULL), FL_ERR_INVALID_ARG);
}

/* ------------------------------------------------ fuzz seed corpus */

struct seed {
    char name[48];
    uint8_t bytes[2048];
    size_t len;
    int want; /* enum fl_err, or ANY_RC */
};

static void seed_add(struct seed *s, size_t *n, const char *name,
                     const void *bytes, size_t len, int want)
{
    assert_true(len <= sizeof(s[0].bytes));
    snprintf(s[*n].name, sizeof(s[*n].name), "%s", name);
    memcpy(s[*n].bytes, bytes, len);
    s[*n].len = len;
    s[*n].want = want;
    (*n)++;
}

static size_t build_seeds(struct seed *s)
{
    static char s257[PB_MAX_STRING + 2];
    static struct wb w, sub, sub2;
    struct fl_rng rng;
    uint8_t junk[48];
    size_t n = 0;

    for (size_t f = 0; f < FL_ARRAY_LEN(fixtures); f++) {
        const struct pb_envelope in = fixtures[f].make();
        uint8_t *buf;
        size_t len;
        char name[48];
        pack_fixture(&in, &buf, &len);
        snprintf(name, sizeof(name), "valid_%s", fixtures[f].name);
        seed_add(s, &n, name, buf, len, FL_OK);
        if (f % 2 == 0) { /* truncations of the full ones */
            snprintf(name, sizeof(name), "trunc_%s", fixtures[f].name);
            seed_add(s, &n, name, buf, len / 2, ANY_RC);
        }
        fl_free(buf);
    }
    struct pb_envelope v = bye_full();
    v.version = 2;
    assert_int_equal(pb_pack(&v, w.b, sizeof(w.b), &w.n), FL_OK);
    seed_add(s, &n, "version_2", w.b, w.n, FL_ERR_VERSION);
    wb_envelope(&w, 1, 0, NULL);
    seed_add(s, &n, "no_body", w.b, w.n, FL_ERR_MISSING_FIELD);
    seed_add(s, &n, "empty", "", 0, FL_ERR_PROTO);
    memset(s257, 'a', PB_MAX_STRING + 1);
    wb_hello(&sub, s257);
    wb_envelope(&w, 1, 10, &sub);
    seed_add(s, &n, "long_device_id", w.b, w.n, FL_ERR_TOO_LARGE);
    wb_hello(&sub, "d");
    wb_u64(&sub, 3, 40);
    wb_u64(&sub, 3, (uint64_t)-2);
    wb_u64(&sub, 99, 1);
    wb_envelope(&w, 1, 10, &sub);
    wb_str(&w, 15, "");
    seed_add(s, &n, "odd_codecs_unknown_two_bodies", w.b, w.n, FL_OK);
    w.n = 0;
    wb_u64(&w, 1, 1);
    wb_varint(&w, (13u << 3) | 2);
    wb_varint(&w, 0xffffffffffull);
    seed_add(s, &n, "huge_length", w.b, w.n, FL_ERR_PROTO);
    /* regression: the fuzzer's first find, a wire string in the reason */
    sub2.n = 0;
    wb_str(&sub2, 1, "a\nb");
    wb_u64(&sub2, 2, 0);
    for (int d = 0; d <= PB_MAX_SHAPE; d++)
        wb_u64(&sub2, 3, 2);
    sub.n = 0;
    wb_u64(&sub, 1, 1);
    wb_str(&sub, 2, "d");
    wb_u64(&sub, 3, 16);
    wb_msg(&sub, 4, &sub2);
    wb_envelope(&w, 1, 11, &sub);
    seed_add(s, &n, "layout_newline_name_5_dims", w.b, w.n,
             FL_ERR_TOO_LARGE);
    fl_rng_seed(&rng, 7);
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)fl_rng_next(&rng);
    seed_add(s, &n, "garbage", junk, sizeof(junk), ANY_RC);
    return n;
}

static void write_seed(const char *dir, const struct seed *s)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, s->name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(s->bytes, 1, s->len, fp), s->len);
    assert_int_equal(fclose(fp), 0);
}

static void test_seed_corpus(void **state)
{
    static struct seed seeds[48];
    const char *regen = getenv("FL_REGEN_CORPUS");
    (void)state;

    const size_t n = build_seeds(seeds);
    assert_true(n >= 20 && n <= 40);
    for (size_t i = 0; i < n; i++) {
        struct pb_msg *msg = NULL;
        const struct pb_envelope *env = NULL;
        const enum fl_err rc = unpack_check(seeds[i].bytes, seeds[i].len,
                                            &lim_default, &msg, &env);
        pb_msg_destroy(&msg);
        if (seeds[i].want == ANY_RC)
            assert_true(rc_allowed(rc));
        else if ((int)rc != seeds[i].want)
            fail_msg("seed %s: got %s", seeds[i].name, fl_err_name(rc));
    }
    if (regen == NULL || regen[0] == '\0')
        return;
    const char *dir = strcmp(regen, "1") == 0
                          ? "tests/fuzz/corpus/fuzz_pb_unpack"
                          : regen;
    assert_int_equal(fl_mkdir_p(dir, 0), FL_OK);
    for (size_t i = 0; i < n; i++)
        write_seed(dir, &seeds[i]);
    print_message("wrote %zu seeds to %s\n", n, dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_fixture),
        cmocka_unit_test(test_full_fields_read_back),
        cmocka_unit_test(test_optional_fields_absent),
        cmocka_unit_test(test_golden_bytes),
        cmocka_unit_test(test_pack_refuses_bad_envelopes),
        cmocka_unit_test(test_max_message),
        cmocka_unit_test(test_max_alloc_threshold),
        cmocka_unit_test(test_budget_counts_payload),
        cmocka_unit_test(test_budget_counts_live_bytes),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_missing_body),
        cmocka_unit_test(test_hand_made_messages),
        cmocka_unit_test(test_task_model_delta),
        cmocka_unit_test(test_chunked_payload_fields),
        cmocka_unit_test(test_unknown_enum_values_pass_through),
        cmocka_unit_test(test_unknown_fields_and_repeats),
        cmocka_unit_test(test_every_prefix_fails),
        cmocka_unit_test(test_random_and_mutated_bytes),
        cmocka_unit_test(test_property_random_envelopes),
        cmocka_unit_test(test_diff_notices_every_field),
        cmocka_unit_test(test_alloc_torture_pack),
        cmocka_unit_test(test_alloc_torture_unpack),
        cmocka_unit_test(test_peek_body),
        cmocka_unit_test(test_body_names),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_seed_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
