/*
 * fuzz_pb_unpack - libFuzzer target for proto/pb_msg's parser.
 *
 * For every input:
 *   1. pb_unpack with modest limits must return one of the documented codes
 *      and, on failure, leave nothing behind (*msg and *env NULL, a reason
 *      in errbuf). ASan/LSan catch leaks and bad reads.
 *   2. The same input with a small parse budget (derived from the input)
 *      must give the same answer or FL_ERR_NOMEM, never a different error:
 *      the budget is told apart from bad bytes.
 *   3. On success: pack the envelope again (pb_packed_size agrees, packing
 *      twice gives the same bytes), unpack that, and every field that
 *      travels must be equal (pb_envelope_diff). Repacked bytes must parse
 *      whatever the original bytes looked like (unknown fields, repeats).
 * A broken property aborts, which libFuzzer reports as a crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "proto/pb_msg.h"
#include "proto/pb_msg_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_pb_unpack: %s:%d: check failed: %s\n",       \
                    __FILE__, __LINE__, #cond);                                \
            abort();                                                           \
        }                                                                      \
    } while (0)

static const struct pb_limits fuzz_lim = {1u << 20, 4u << 20};

static int rc_documented(enum fl_err rc)
{
    return rc == FL_OK || rc == FL_ERR_PROTO || rc == FL_ERR_NOMEM ||
           rc == FL_ERR_VERSION || rc == FL_ERR_MISSING_FIELD ||
           rc == FL_ERR_TOO_LARGE || rc == FL_ERR_FORMAT;
}

static enum fl_err unpack(const uint8_t *data, size_t size,
                          const struct pb_limits *lim, struct pb_msg **msg,
                          const struct pb_envelope **env)
{
    char err[160] = "untouched";
    const enum fl_err rc = pb_unpack(data, size, lim, msg, env, NULL, err,
                                     sizeof(err));
    FUZZ_CHECK(rc_documented(rc));
    if (rc == FL_OK) {
        FUZZ_CHECK(*msg != NULL && *env != NULL);
        FUZZ_CHECK(err[0] == '\0');
    } else {
        FUZZ_CHECK(*msg == NULL && *env == NULL);
        FUZZ_CHECK(err[0] != '\0' && strcmp(err, "untouched") != 0);
        FUZZ_CHECK(strchr(err, '\n') == NULL);
    }
    return rc;
}

static void check_round_trip(const struct pb_envelope *env)
{
    struct pb_msg *msg2 = NULL;
    const struct pb_envelope *env2 = NULL;
    uint8_t *buf = NULL, *buf2;
    size_t len = 0, len2 = 0;
    const char *diff;

    FUZZ_CHECK(pb_pack_alloc(env, &buf, &len) == FL_OK);
    FUZZ_CHECK(pb_packed_size(env) == len);
    buf2 = malloc(len);
    FUZZ_CHECK(buf2 != NULL);
    FUZZ_CHECK(pb_pack(env, buf2, len, &len2) == FL_OK);
    FUZZ_CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
    free(buf2);

    FUZZ_CHECK(unpack(buf, len, &fuzz_lim, &msg2, &env2) == FL_OK);
    diff = pb_envelope_diff(env, env2);
    if (diff != NULL) {
        fprintf(stderr, "fuzz_pb_unpack: %s body: field %s differs after "
                "re-pack\n", pb_body_name(env->body), diff);
        abort();
    }
    pb_msg_destroy(&msg2);
    FUZZ_CHECK(msg2 == NULL);
    fl_free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    enum fl_err rc, rc_small;
    uint32_t h = 2166136261u;

    rc = unpack(data, size, &fuzz_lim, &msg, &env);
    if (rc == FL_OK)
        check_round_trip(env);
    pb_msg_destroy(&msg);

    /* a tight budget, different for different inputs */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    const struct pb_limits small = {fuzz_lim.max_message, h % 2048};
    rc_small = unpack(data, size, &small, &msg, &env);
    FUZZ_CHECK(rc_small == rc || rc_small == FL_ERR_NOMEM);
    pb_msg_destroy(&msg);
    return 0;
}
