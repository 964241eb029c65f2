/* coord_harness.c - see coord_harness.h. */
#include "tests/unit/coord_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/fl_alloc.h"
#include "common/fl_err.h"
#include "tests/unit/split_argv.h"

enum fl_err th_config_try(struct coord_config *cfg, const char *flags,
                          char *err, size_t errlen)
{
    enum coord_action action;
    char *argv[64];
    const size_t n = strlen(flags) + sizeof("coord ");
    char *buf = malloc(n);
    assert_non_null(buf);
    const int argc = ta_split("coord", flags, buf, n, argv, 64);
    coord_config_defaults(cfg);
    const enum fl_err rc = coord_config_parse(cfg, argc, argv, &action, err,
                                              errlen);
    /* cfg keeps its own copy of argv (the ASan build would see a read of
     * freed memory otherwise) */
    free(buf);
    return rc;
}

void th_config(struct coord_config *cfg, const char *flags)
{
    char err[256];
    if (th_config_try(cfg, flags, err, sizeof(err)) != FL_OK)
        fail_msg("bad test flags '%s': %s", flags, err);
}

enum fl_err th_outbox_send(struct th_outbox *o, const uint8_t *rid,
                           size_t rid_len, uint8_t *buf, size_t len)
{
    assert_int_equal(rid_len, 1);
    if (o->dead[rid[0]]) {
        fl_free(buf);
        return FL_ERR_UNKNOWN_DEVICE;
    }
    assert_true(o->nout < TH_MAX_SENT);
    o->out[o->nout++] = (struct th_sent){rid[0], buf, len};
    return FL_OK;
}

void th_outbox_clear(struct th_outbox *o)
{
    for (size_t i = 0; i < o->nout; i++)
        fl_free(o->out[i].buf);
    o->nout = 0;
}

void th_outbox_release(struct th_outbox *o)
{
    th_outbox_clear(o);
    for (size_t i = 0; i < o->nkept; i++)
        pb_msg_destroy(&o->kept[i]);
    o->nkept = 0;
}

size_t th_outbox_count(const struct th_outbox *o, uint8_t rid)
{
    size_t n = 0;
    for (size_t i = 0; i < o->nout; i++)
        n += o->out[i].rid == rid;
    return n;
}

static void remove_at(struct th_outbox *o, size_t i)
{
    fl_free(o->out[i].buf);
    memmove(&o->out[i], &o->out[i + 1], (o->nout - i - 1) * sizeof(o->out[0]));
    o->nout--;
}

const struct pb_envelope *th_outbox_take(struct th_outbox *o, uint8_t rid,
                                         enum pb_body body, bool drop_before,
                                         struct pb_msg **msg, size_t *len)
{
    static const struct pb_limits lim = {1u << 24, 1u << 26};
    if (msg != NULL)
        *msg = NULL;
    for (size_t i = 0; i < o->nout;) {
        const struct pb_envelope *env = NULL;
        struct pb_msg *m = NULL;
        if (o->out[i].rid != rid) {
            i++;
            continue;
        }
        assert_int_equal(pb_unpack(o->out[i].buf, o->out[i].len, &lim, &m,
                                   &env, NULL, NULL, 0),
                         FL_OK);
        if (body == PB_BODY_NONE || env->body == body) {
            if (len != NULL)
                *len = o->out[i].len;
            remove_at(o, i);
            if (msg != NULL) {
                *msg = m;
            } else {
                assert_true(o->nkept < TH_MAX_SENT);
                o->kept[o->nkept++] = m;
            }
            return env;
        }
        pb_msg_destroy(&m);
        if (drop_before)
            remove_at(o, i);
        else
            i++;
    }
    return NULL;
}

void th_feed(struct coord_engine *e, uint8_t rid, const char *uid,
             const uint8_t *buf, size_t len, uint64_t now)
{
    if (uid != NULL)
        coord_engine_on_message_auth(e, &rid, 1, uid, buf, len, 0, 0, now);
    else
        coord_engine_on_message(e, &rid, 1, buf, len, 0, 0, now);
}

size_t th_feed_env(struct coord_engine *e, uint8_t rid, const char *uid,
                   const struct pb_envelope *env, uint64_t now)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(pb_pack_alloc(env, &buf, &len), FL_OK);
    th_feed(e, rid, uid, buf, len, now);
    fl_free(buf);
    return len;
}

struct coord_engine *th_engine(const struct coord_config *cfg,
                               const struct mdl_layout *layout,
                               const float *init, const struct coord_io *io,
                               struct coord_report *report, uint64_t epoch)
{
    struct coord_engine *e = NULL;
    const struct coord_engine_env env = {
        .cfg = cfg,
        .layout = layout,
        .init = init,
        .io = *io,
        .report = report,
        .epoch = epoch,
    };
    assert_int_equal(coord_engine_new(&env, &e), FL_OK);
    return e;
}
