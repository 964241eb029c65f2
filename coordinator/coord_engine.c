#include "coordinator/coord_engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "common/fl_log.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "coordinator/coord_down.h"
#include "coordinator/coord_guard.h"
#include "coordinator/coord_xfer.h"
#include "model/mdl_file.h"
#include "proto/pb_msg.h"
#include "proto/pb_xfer.h"

#define NS_PER_S 1000000000.0

enum engine_state {
    ST_WAITING = 0,
    ST_OPEN = 1,
    ST_END = 2
};

struct coord_engine {
    const struct coord_config *cfg;
    const struct mdl_layout *layout;
    struct coord_io io;
    struct coord_report *report;
    struct coord_metrics *metrics; /* not owned; NULL = none */
    FILE *progress;
    uint64_t epoch;
    size_t dim;

    struct coord_agg *agg;
    struct coord_down *down;       /* lossy downlink; NULL = lossless */
    uint64_t sent_version;         /* newest model version sent in a Task */
    struct coord_guard *guard;     /* norm bound, share cap, penalty box */
    char why[128];                 /* detail of the next update Reject */
    struct coord_devtab *devs;
    struct coord_xfer *xfer;       /* chunked transfers, both ways */
    struct cmp_ctx *dctx;          /* decoding updates */
    struct pb_limits lim;
    struct pb_layout_entry layout_pb[MDL_MAX_TENSORS];
    struct fl_rng rng;

    enum engine_state state;
    enum coord_status status;
    uint64_t round;                /* open or next round, 1-based */
    uint32_t attempt;              /* of that round, 1-based */
    uint64_t start_ns;
    uint64_t start_cpu_ns;
    uint64_t wait_deadline;        /* UINT64_MAX: none */
    uint64_t round_deadline;
    uint64_t open_ns;
    uint64_t open_cpu_ns;
    uint64_t agg_ns;
    double density;                /* of the open round */
    uint64_t max_k;                /* of the open round */

    struct coord_device **cohort;
    size_t cohort_cap;
    uint32_t ncohort;
    uint32_t pending;              /* cohort members still TASKED */
    struct coord_device **scratch; /* candidates when drawing a cohort */
    size_t scratch_cap;

    struct coord_round_row row;    /* counters of the current period */
    struct coord_round_row last;   /* last row written */
    struct coord_summary sum;
    uint64_t send_failures;

    /* identity of the message being handled: the User-Id the ZAP handler
     * gave its CURVE connection (coord_engine_on_message_auth()); NULL in
     * plaintext, where the Hello's device_id is the identity */
    const char *auth_id;

    /* checkpoints (coord_ckpt.h) */
    struct coord_ckpt_device *ckdevs; /* export scratch, ckdevs_cap long */
    size_t ckdevs_cap;
    uint32_t first_attempt;        /* attempt this process began the round at */
    uint64_t trusted_version;      /* held versions <= it are not trusted */
    bool resumed;
};

const char *coord_status_name(enum coord_status s)
{
    switch (s) {
    case COORD_RUNNING: return "running";
    case COORD_DONE: return "completed";
    case COORD_NO_DEVICES: return "not enough devices";
    case COORD_TOO_MANY_ATTEMPTS: return "too many failed attempts";
    case COORD_STOPPED: return "interrupted";
    case COORD_FAILED: return "failed";
    }
    return "unknown";
}

static uint64_t s_to_ns(double s)
{
    const double ns = s * NS_PER_S;
    return ns >= 1.8e19 ? UINT64_MAX : (uint64_t)ns;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- construction */

static void init_layout(struct coord_engine *e)
{
    const struct mdl_layout *l = e->layout;
    for (size_t i = 0; i < l->ntensors && i < MDL_MAX_TENSORS; i++) {
        struct pb_layout_entry *p = &e->layout_pb[i];
        const struct mdl_tensor_info *t = &l->tensors[i];
        p->name = t->name;
        p->offset = t->offset;
        p->nshape = t->ndim <= 2 ? t->ndim : 2;
        for (size_t j = 0; j < p->nshape; j++)
            p->shape[j] = t->shape[j];
    }
}

/* The lossy downlink's broadcast model starts as the initial model. */
static enum fl_err new_down(struct coord_engine *e, const float *init)
{
    const struct coord_down_config dcfg = {
        .dim = e->dim,
        .density = e->cfg->down_density,
        .values = e->cfg->down_values,
        .keep_versions = e->cfg->keep_versions,
    };
    if (!coord_config_lossy_downlink(e->cfg))
        return FL_OK;
    return coord_down_new(&dcfg, init, coord_agg_version(e->agg), &e->down);
}

static enum fl_err new_guard(struct coord_engine *e)
{
    const struct coord_guard_config gcfg = {
        .max_share = e->cfg->max_device_share,
        .max_norm = e->cfg->max_update_norm,
        .norm_factor = e->cfg->update_norm_factor,
        .penalty_after = e->cfg->penalty_after,
        .penalty_rounds = e->cfg->penalty_rounds,
    };
    return coord_guard_new(&gcfg, &e->guard);
}

enum fl_err coord_engine_new(const struct coord_engine_env *env,
                             struct coord_engine **out)
{
    enum fl_err rc = FL_OK;
    struct coord_engine *e = NULL;
    const struct coord_config *cfg = env->cfg;
    *out = NULL;
    if (cfg == NULL || env->layout == NULL || env->init == NULL ||
        env->io.send == NULL || env->report == NULL ||
        env->layout->dim == 0 || env->layout->ntensors > MDL_MAX_TENSORS)
        return FL_ERR_INVALID_ARG;
    e = fl_calloc(1, sizeof(*e));
    if (e == NULL)
        return FL_ERR_NOMEM;
    e->cfg = cfg;
    e->layout = env->layout;
    e->io = env->io;
    e->report = env->report;
    e->metrics = env->metrics;
    e->progress = env->progress;
    e->epoch = env->epoch;
    e->dim = env->layout->dim;
    e->lim.max_message = coord_config_frame_limit(cfg);
    init_layout(e);
    fl_rng_seed(&e->rng, cfg->seed ^ 0x636f6f7264ULL);
    e->round = 1;
    e->attempt = 1;
    e->first_attempt = 1;
    e->wait_deadline = UINT64_MAX;
    e->round_deadline = UINT64_MAX;
    e->sum.initial_acc = NAN;
    e->sum.final_acc = NAN;
    e->sum.final_loss = NAN;
    e->sum.rounds_total = cfg->rounds;
    e->last.test_acc = NAN;
    e->last.test_loss = NAN;

    const struct coord_agg_config acfg = {
        .dim = e->dim,
        .server_lr = cfg->server_lr,
        .server_momentum = cfg->server_momentum,
        /* lossy downlink: devices hold broadcast versions, kept there */
        .keep_versions = coord_config_lossy_downlink(cfg)
                             ? 1
                             : cfg->keep_versions,
    };
    rc = coord_agg_new(&acfg, env->init, &e->agg);
    if (rc == FL_OK)
        rc = new_down(e, env->init);
    if (rc != FL_OK)
        goto out;
    rc = coord_devtab_new(0, &e->devs);
    if (rc != FL_OK)
        goto out;
    const struct coord_xfer_cfg xcfg = {
        .chunk_bytes = (uint32_t)cfg->chunk_bytes,
        .window = cfg->chunk_window,
        .max_inflight = cfg->max_inflight_chunks,
        .upload_slots = cfg->upload_slots,
        /* full, XOR and sparse bodies of a round and the one before */
        .max_blobs = 2 * cfg->keep_versions + 4,
    };
    rc = coord_xfer_new(&xcfg, &e->xfer);
    if (rc != FL_OK)
        goto out;
    e->dctx = cmp_ctx_new();
    if (e->dctx == NULL)
        rc = FL_ERR_NOMEM;
    if (rc == FL_OK)
        rc = new_guard(e);
out:
    if (rc != FL_OK)
        coord_engine_destroy(&e);
    *out = e;
    return rc;
}

void coord_engine_destroy(struct coord_engine **ep)
{
    struct coord_engine *e;
    if (ep == NULL || *ep == NULL)
        return;
    e = *ep;
    coord_agg_destroy(&e->agg);
    coord_down_destroy(&e->down);
    coord_devtab_destroy(&e->devs);
    coord_xfer_destroy(&e->xfer);
    cmp_ctx_destroy(&e->dctx);
    coord_guard_destroy(&e->guard);
    fl_free(e->cohort);
    fl_free(e->scratch);
    fl_free(e->ckdevs);
    fl_free(e);
    *ep = NULL;
}

/* ---- accessors */

enum coord_status coord_engine_status(const struct coord_engine *e)
{
    return e->status;
}
const struct coord_agg *coord_engine_agg(const struct coord_engine *e)
{
    return e->agg;
}
const struct coord_down *coord_engine_down(const struct coord_engine *e)
{
    return e->down;
}
const struct coord_devtab *coord_engine_devices(const struct coord_engine *e)
{
    return e->devs;
}
uint64_t coord_engine_round(const struct coord_engine *e) { return e->round; }
const struct coord_round_row *coord_engine_last_row(
    const struct coord_engine *e)
{
    return &e->last;
}

uint64_t coord_engine_next_deadline(const struct coord_engine *e)
{
    if (e->state == ST_WAITING)
        return e->wait_deadline;
    if (e->state == ST_OPEN)
        return e->round_deadline;
    return UINT64_MAX;
}

/* ---- sending */

static void mark_gone(struct coord_engine *e, struct coord_device *d)
{
    coord_xfer_stop(e->xfer, d->index);
    coord_xfer_up_drop(e->xfer, d->index);
    if (d->rstate == COORD_RS_TASKED) {
        d->rstate = COORD_RS_GONE;
        e->pending--;
    }
}

/* Pack env into a new buffer and hand it to the transport, to d (or to a
 * bare routing id when d is NULL). On a send failure d is gone for this
 * round. */
static enum fl_err send_env(struct coord_engine *e, struct coord_device *d,
                            const uint8_t *rid, size_t rid_len,
                            const struct pb_envelope *env)
{
    size_t len = 0;
    enum fl_err rc;
    uint8_t *buf = NULL;
    const size_t need = pb_packed_size(env);
    if (d != NULL) {
        rid = d->rid;
        rid_len = d->rid_len;
        if (rid_len == 0)
            return FL_ERR_UNKNOWN_DEVICE;
    }
    if (need == 0)
        return FL_ERR_INVALID_ARG;
    buf = fl_malloc(need);
    if (buf == NULL)
        return FL_ERR_NOMEM;
    rc = pb_pack(env, buf, need, &len);
    if (rc != FL_OK) {
        fl_free(buf);
        fl_log(FL_LOG_ERR, "cannot pack %s: %s", pb_body_name(env->body),
               fl_strerror(rc));
        return rc;
    }
    rc = e->io.send(e->io.ctx, rid, rid_len, buf, len);
    if (rc != FL_OK) {
        e->send_failures++;
        if (d != NULL) {
            fl_log(FL_LOG_NOTICE, "cannot send %s to worker '%s': %s",
                   pb_body_name(env->body), d->id, fl_strerror(rc));
            mark_gone(e, d);
            if (rc == FL_ERR_UNKNOWN_DEVICE)
                coord_devtab_unbind(e->devs, d);
        }
        return rc;
    }
    e->row.down_wire_bytes += len;
    coord_metrics_add_down(e->metrics, len, 0);
    if (d != NULL) {
        d->down_bytes += len;
        d->total_down_bytes += len;
    }
    return FL_OK;
}

static void set_fate(struct coord_device *d, uint32_t status,
                     uint64_t round);

/* Refusals an honest device can get (its update came late, its attempt
 * was replaced, ...) or that are not its doing: no strike for those. */
static bool is_strike(enum fl_err code)
{
    return code != FL_OK && code != FL_ERR_NOMEM &&
           code != FL_ERR_NOT_IN_COHORT && code != FL_ERR_UNKNOWN_DEVICE &&
           code != FL_ERR_LATE && code != FL_ERR_RATE &&
           code != FL_ERR_FULL && code != FL_ERR_IGNORED;
}

/* A refusal counts against d; at --penalty-after in a row it is ignored
 * (coord_guard.h) and, if it still owes this round an update, it has
 * none: the round does not wait for it. */
static void charge(struct coord_engine *e, struct coord_device *d,
                   enum fl_err code)
{
    const uint64_t first = e->round + (e->state == ST_OPEN ? 1 : 0);
    if (!is_strike(code) || !coord_guard_strike(e->guard, d->index, first))
        return;
    fl_log(FL_LOG_WARN, "worker '%s' is ignored until round %llu: %u "
           "refused messages in a row, the last one: %s", d->id,
           (unsigned long long)(first + e->cfg->penalty_rounds),
           e->cfg->penalty_after, fl_strerror(code));
    if (e->state == ST_OPEN && d->rstate == COORD_RS_TASKED) {
        d->rstate = COORD_RS_REJECTED;
        d->n_rejected++;
        e->pending--;
        set_fate(d, PB_UPDATE_NOT_USED, e->round);
    }
}

/* Reject{code, reason}: reason is fl_strerror(code), then ": detail" when
 * detail is given. Counted by code; charged to d (when known). */
static void send_reject_why(struct coord_engine *e, struct coord_device *d,
                            const uint8_t *rid, size_t rid_len,
                            enum fl_err code, bool has_round, uint64_t round,
                            const char *detail)
{
    struct pb_envelope env;
    char reason[PB_MAX_STRING];
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_REJECT;
    env.reject.code = (uint32_t)code;
    env.reject.reason = fl_strerror(code);
    if (detail != NULL && detail[0] != '\0') {
        snprintf(reason, sizeof(reason), "%s: %s", fl_strerror(code),
                 detail);
        env.reject.reason = reason;
    }
    env.reject.has_round = has_round;
    env.reject.round = round;
    if ((unsigned)code < FL_ERR__MAX)
        e->row.rejects[code]++;
    if (d != NULL)
        charge(e, d, code);
    send_env(e, d, rid, rid_len, &env);
}

static void send_reject(struct coord_engine *e, struct coord_device *d,
                        const uint8_t *rid, size_t rid_len, enum fl_err code,
                        bool has_round, uint64_t round)
{
    send_reject_why(e, d, rid, rid_len, code, has_round, round, NULL);
}

static void send_welcome(struct coord_engine *e, struct coord_device *d)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_WELCOME;
    env.welcome.epoch = e->epoch;
    env.welcome.device_id = d->id;
    env.welcome.dimension = e->dim;
    env.welcome.layout = e->layout_pb;
    env.welcome.nlayout = e->layout->ntensors;
    env.welcome.heartbeat_ms = e->cfg->heartbeat_ms;
    env.welcome.current_round = e->round;
    env.welcome.chunk_bytes = (uint32_t)e->cfg->chunk_bytes;
    env.welcome.chunk_window = e->cfg->chunk_window;
    send_env(e, d, NULL, 0, &env);
}

/* Bye carrying d's fate (NONE when d is NULL), to rid when given, else to
 * d's routing id. */
static void send_bye(struct coord_engine *e, struct coord_device *d,
                     const uint8_t *rid, size_t rid_len, const char *reason)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_BYE;
    env.bye.reason = reason;
    env.bye.last_update = d != NULL && d->last_status != 0 ? d->last_status
                                                           : PB_UPDATE_NONE;
    env.bye.last_update_round = d != NULL ? d->last_round : 0;
    send_env(e, rid != NULL ? NULL : d, rid, rid_len, &env);
}

static uint64_t task_seed(const struct coord_engine *e)
{
    struct fl_rng r;
    fl_rng_seed(&r, e->cfg->seed ^ (e->round * 0x9e3779b97f4a7c15ULL) ^
                        ((uint64_t)e->attempt << 48));
    return fl_rng_next(&r);
}

static enum cmp_codec device_codec(const struct coord_engine *e,
                                   const struct coord_device *d)
{
    const enum cmp_codec c = e->cfg->codec;
    if (d->codecs_mask == 0 || (d->codecs_mask & (1u << c)) != 0)
        return c;
    return CMP_CODEC_NONE;
}

/* --uplink-budget split evenly over the cohort: each member's cap on the
 * bytes of its Update frame (0 = no cap; at least 1 byte when on). */
static uint64_t device_budget(const struct coord_engine *e)
{
    const uint64_t b = e->cfg->uplink_budget;
    if (b == 0 || e->ncohort == 0)
        return 0;
    return b / e->ncohort > 0 ? b / e->ncohort : 1;
}

static void fill_task_cfg(const struct coord_engine *e, enum cmp_codec codec,
                          struct pb_task *t)
{
    const struct coord_config *c = e->cfg;
    const double ms = c->round_timeout * 1000.0;
    t->train.local_epochs = c->local_epochs;
    t->train.local_steps = c->local_steps;
    t->train.batch_size = c->batch_size;
    t->train.lr = (float)c->lr;
    t->train.momentum = (float)c->momentum;
    t->train.seed = task_seed(e);
    t->compress.density = (float)e->density;
    t->compress.topk = (uint32_t)c->topk;
    t->compress.values = (uint32_t)c->values;
    t->compress.codec = (uint32_t)codec;
    t->compress.level = codec == CMP_CODEC_ZSTD ? c->level : 0;
    t->compress.error_feedback = c->error_feedback;
    t->compress.momentum_correction = c->momentum_correction > 0;
    t->compress.momentum_factor =
        c->momentum_correction > 0 ? (float)c->momentum_correction : 0.0f;
    t->compress.clip_norm = (float)c->clip_norm;
    t->compress.per_tensor = c->per_tensor;
    t->compress.max_update_bytes = device_budget(e);
    t->timeout_ms = ms >= 4294967295.0 ? UINT32_MAX : (uint32_t)ms;
    t->allow_overrides = c->allow_overrides;
}

/* ---- downlink (docs/protocol.md "Lossy downlink", coord_down.h) */

/* The broadcast model follows the server model's version; when it could
 * not (a failed advance, a resume), it catches up losslessly: devices then
 * get the full model or a XOR against a version they hold. */
static void sync_broadcast(struct coord_engine *e)
{
    const uint64_t v = coord_agg_version(e->agg);
    if (e->down == NULL || coord_down_version(e->down) >= v)
        return;
    const enum fl_err rc = coord_down_reset(e->down, coord_agg_params(e->agg),
                                            v);
    if (rc != FL_OK)
        fl_log(FL_LOG_ERR, "cannot set the broadcast model to version %llu: "
               "%s", (unsigned long long)v, fl_strerror(rc));
}

/* After a commit: w_b += compressed (w_s - w_b) (server-side error
 * feedback); the time counts as aggregation time. */
static void advance_broadcast(struct coord_engine *e)
{
    struct coord_down_stats st;
    const uint64_t v = coord_agg_version(e->agg);
    const uint64_t t0 = fl_now_ns();
    if (e->down == NULL)
        return;
    const enum fl_err rc =
        coord_down_advance(e->down, coord_agg_params(e->agg), v);
    e->agg_ns += fl_now_ns() - t0;
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "cannot compress the downlink of model version "
               "%llu: %s: devices get it losslessly",
               (unsigned long long)v, fl_strerror(rc));
        sync_broadcast(e);
        return;
    }
    coord_down_get_stats(e->down, &st);
    fl_log(FL_LOG_INFO, "broadcast model version %llu: %zu of %zu entries "
           "sent (%s), residual norm %.4g", (unsigned long long)v, st.k,
           e->dim, cmp_value_coding_name(e->cfg->down_values),
           st.residual_norm);
}

static void count_down(struct coord_engine *e, struct coord_device *d,
                       size_t len)
{
    e->row.down_wire_bytes += len;
    coord_metrics_add_down(e->metrics, len, 0);
    d->down_bytes += len;
    d->total_down_bytes += len;
}

/* One shared frame to d; without send_shared, a copy through send. */
static enum fl_err send_frame(struct coord_engine *e, struct coord_device *d,
                              const struct coord_frame *f)
{
    const size_t len = coord_frame_len(f);
    if (d->rid_len == 0)
        return FL_ERR_UNKNOWN_DEVICE;
    if (e->io.send_shared != NULL) {
        /* the transport takes its own reference: the bytes are not
         * changed, only the count */
        union {
            const struct coord_frame *c;
            struct coord_frame *m;
        } u = {.c = f};
        return e->io.send_shared(e->io.ctx, d->rid, d->rid_len, u.m);
    }
    uint8_t *buf = fl_malloc(len);
    if (buf == NULL)
        return FL_ERR_NOMEM;
    memcpy(buf, coord_frame_data(f), len);
    return e->io.send(e->io.ctx, d->rid, d->rid_len, buf, len);
}

/* Send every chunk the transfer scheduler allows now. */
static void pump(struct coord_engine *e)
{
    const struct coord_frame *f;
    uint32_t dev = 0;
    while ((f = coord_xfer_next(e->xfer, &dev)) != NULL) {
        struct coord_device *d = coord_devtab_at(e->devs, dev);
        const enum fl_err rc = d != NULL ? send_frame(e, d, f)
                                         : FL_ERR_UNKNOWN_DEVICE;
        if (rc == FL_OK) {
            count_down(e, d, coord_frame_len(f));
            continue;
        }
        e->send_failures++;
        coord_xfer_stop(e->xfer, dev);
        if (d == NULL)
            continue;
        fl_log(FL_LOG_NOTICE, "cannot send a model chunk to worker '%s': %s",
               d->id, fl_strerror(rc));
        mark_gone(e, d);
        if (rc == FL_ERR_UNKNOWN_DEVICE)
            coord_devtab_unbind(e->devs, d);
    }
}

static void send_credit(struct coord_engine *e, struct coord_device *d,
                        uint64_t transfer, uint32_t received, bool cancel)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_CREDIT;
    env.credit.transfer = transfer;
    env.credit.received = received;
    env.credit.cancel = cancel;
    send_env(e, d, NULL, 0, &env);
}

static void set_fate(struct coord_device *d, uint32_t status,
                     uint64_t round);

/* A cohort member's upload of the open round failed (broken, stalled, no
 * memory): that is its update for the round, refused. */
static void refuse_upload(struct coord_engine *e, struct coord_device *d)
{
    if (d->rstate != COORD_RS_TASKED)
        return;
    e->pending--;
    d->rstate = COORD_RS_REJECTED;
    d->n_rejected++;
    set_fate(d, PB_UPDATE_NOT_USED, e->round);
    if (e->round > d->answered_round)
        d->answered_round = e->round;
}

static bool version_known(const struct coord_engine *e, uint64_t v)
{
    if (e->down != NULL)
        return coord_down_knows(e->down, v);
    return coord_agg_version_params(e->agg, v) != NULL;
}

/* The Task payload for d: from the broadcast model with a lossy downlink,
 * else the server model (full, or XOR against a kept version). */
static enum fl_err task_payload(struct coord_engine *e,
                                const struct coord_device *d,
                                enum cmp_codec codec,
                                struct coord_payload *out)
{
    const struct coord_payload *p = NULL;
    enum fl_err rc;
    if (e->down != NULL) {
        sync_broadcast(e);
        rc = coord_down_task_payload(e->down, d->model_version, codec,
                                     e->cfg->level, &p);
        if (rc == FL_ERR_BAD_STATE) {
            fl_log(FL_LOG_ERR, "the sparse downlink delta does not decode "
                   "to the broadcast change: worker '%s' gets the full "
                   "model", d->id);
            rc = coord_down_task_payload(e->down, 0, codec, e->cfg->level,
                                         &p);
        }
    } else {
        rc = coord_model_task_payload(e->agg, d->model_version, codec,
                                      e->cfg->level, &p);
    }
    if (rc == FL_OK)
        *out = *p;
    return rc;
}

static void tensor_from_meta(struct pb_tensor *t, const struct cmp_meta *m,
                             const uint8_t *data, size_t len)
{
    t->dimension = m->dimension;
    t->k = m->k;
    t->index_coding = (uint32_t)m->index_coding;
    t->value_coding = (uint32_t)m->value_coding;
    t->codec = (uint32_t)m->codec;
    t->raw_size = m->raw_size;
    t->checksum = m->checksum;
    t->payload = data;
    t->payload_len = len;
}

static void fill_task_model(struct pb_task *t,
                            const struct coord_payload *p)
{
    t->model_version = p->version;
    if (p->kind != COORD_PAYLOAD_SPARSE) {
        tensor_from_meta(&t->model, &p->meta, p->data, p->len);
        t->model.has_base_version = p->kind == COORD_PAYLOAD_XOR;
        t->model.base_version = p->base_version;
        return;
    }
    /* Task.model is required: an empty placeholder that a worker which
     * does not know model_delta fails to decode, so that it asks for the
     * full model instead of training from a wrong one. */
    t->model.dimension = p->meta.dimension;
    t->model.k = p->meta.dimension;
    t->model.index_coding = (uint32_t)CMP_INDEX_ALL;
    t->model.value_coding = (uint32_t)CMP_VALUE_FP32;
    t->model.codec = (uint32_t)CMP_CODEC_NONE;
    t->has_model_delta = true;
    tensor_from_meta(&t->model_delta, &p->meta, p->data, p->len);
    t->model_delta_base = p->base_version;
}

/* The model the devices hold at the end: the (broadcast) version of the
 * last Task sent, not the result of the last commit, which no device has
 * been sent. Its round field is version - 1, as the worker's --save-model
 * writes it, so that the two files compare equal byte for byte. */
static void save_broadcast(struct coord_engine *e, const char *path)
{
    sync_broadcast(e);
    const uint64_t v = e->sent_version != 0 ? e->sent_version
                                            : coord_agg_version(e->agg);
    const float *w = e->down != NULL ? coord_down_version_params(e->down, v)
                                     : coord_agg_version_params(e->agg, v);
    if (w == NULL) {
        fl_log(FL_LOG_ERR, "cannot save the broadcast model to '%s': "
               "version %llu is no longer kept (--keep-versions)", path,
               (unsigned long long)v);
        return;
    }
    const enum fl_err rc = mdl_file_save(path, e->layout, w, v - 1);
    if (rc != FL_OK)
        fl_log(FL_LOG_ERR, "cannot save the broadcast model to '%s': %s",
               path, fl_strerror(rc));
    else
        fl_log(FL_LOG_INFO, "broadcast model version %llu saved to '%s'",
               (unsigned long long)v, path);
}

static void send_task(struct coord_engine *e, struct coord_device *d,
                      uint64_t now_ns)
{
    struct pb_envelope env;
    struct coord_payload pl;
    const struct coord_payload *p = &pl;
    const enum cmp_codec codec = device_codec(e, d);
    enum fl_err rc = task_payload(e, d, codec, &pl);
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot encode the model for worker '%s': %s",
               d->id, fl_strerror(rc));
        mark_gone(e, d);
        return;
    }
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_TASK;
    struct pb_task *t = &env.task;
    t->round = e->round;
    t->epoch = e->epoch;
    fill_task_model(t, p);
    fill_task_cfg(e, codec, t);
    t->last_update = d->last_status != 0 ? d->last_status : PB_UPDATE_NONE;
    t->last_update_round = d->last_round;
    /* a large body goes as shared chunks (docs/protocol.md "Transfers") */
    uint64_t transfer = 0;
    uint32_t chunks = 0;
    coord_xfer_stop(e->xfer, d->index);
    if (p->len > FL_MIN(e->cfg->inline_bytes, e->cfg->chunk_bytes)) {
        const struct coord_blob_key key = {(uint32_t)p->kind, (uint32_t)codec,
                                           p->version, p->base_version};
        rc = coord_xfer_blob(e->xfer, &key, p->data, p->len, &transfer,
                             &chunks);
        if (rc != FL_OK) {
            fl_log(FL_LOG_ERR, "cannot cut the model into chunks for worker "
                   "'%s': %s", d->id, fl_strerror(rc));
            mark_gone(e, d);
            return;
        }
        struct pb_tensor *body = p->kind == COORD_PAYLOAD_SPARSE
                                     ? &t->model_delta
                                     : &t->model;
        body->payload = NULL;
        body->payload_len = 0;
        body->payload_transfer = transfer;
        body->payload_bytes = p->len;
    }
    rc = send_env(e, d, NULL, 0, &env);
    if (rc != FL_OK) {
        mark_gone(e, d); /* also when packing failed */
        return;
    }
    if (transfer != 0) {
        rc = coord_xfer_start(e->xfer, d->index, transfer);
        if (rc != FL_OK) {
            fl_log(FL_LOG_ERR, "cannot start the model transfer to worker "
                   "'%s': %s", d->id, fl_strerror(rc));
            mark_gone(e, d);
            return;
        }
        pump(e);
    }
    fl_log(FL_LOG_DEBUG, "task for round %llu sent to worker '%s' (%s, %zu "
           "bytes)", (unsigned long long)e->round, d->id,
           p->kind == COORD_PAYLOAD_SPARSE ? "sparse delta"
           : p->kind == COORD_PAYLOAD_XOR  ? "delta"
                                        : "full model", p->len);
    d->model_version = p->version;
    e->sent_version = FL_MAX(e->sent_version, p->version);
    d->task_sent_ns = now_ns;
    e->row.down_dense_bytes += (uint64_t)e->dim * 4;
    coord_metrics_add_down(e->metrics, 0, (uint64_t)e->dim * 4);
}

/* ---- rounds */

static int cmp_dev_id(const void *a, const void *b)
{
    const struct coord_device *const *x = a;
    const struct coord_device *const *y = b;
    return strcmp((*x)->id, (*y)->id);
}

static enum fl_err grow_ptrs(struct coord_device ***arr, size_t *cap,
                             size_t need)
{
    if (need <= *cap)
        return FL_OK;
    struct coord_device **n = fl_realloc(*arr, need * sizeof(*n));
    if (n == NULL)
        return FL_ERR_NOMEM;
    *arr = n;
    *cap = need;
    return FL_OK;
}

/* Whether d is in the penalty box for the open (or next) round. */
static bool ignored(struct coord_engine *e, const struct coord_device *d)
{
    return coord_guard_ignored(e->guard, d->index, e->round);
}

/* Connected devices that may be drawn (not in the penalty box). */
static size_t eligible(struct coord_engine *e)
{
    const size_t n = coord_devtab_count(e->devs);
    size_t c = 0;
    if (coord_guard_boxed(e->guard) == 0)
        return coord_devtab_connected(e->devs);
    for (size_t i = 0; i < n; i++) {
        const struct coord_device *d = coord_devtab_at(e->devs, i);
        c += d->rid_len > 0 && !ignored(e, d);
    }
    return c;
}

/* Draw the cohort: connected devices that are not ignored, sorted by id
 * (so the draw does not depend on arrival order), then a partial
 * Fisher-Yates shuffle. */
static enum fl_err draw_cohort(struct coord_engine *e, uint32_t *joined)
{
    const size_t n = coord_devtab_count(e->devs);
    size_t ncand = 0;
    FL_FORWARD_ERR(grow_ptrs(&e->scratch, &e->scratch_cap, n + 1));
    for (size_t i = 0; i < n; i++) {
        struct coord_device *d = coord_devtab_at(e->devs, i);
        if (d->rid_len > 0 && !ignored(e, d))
            e->scratch[ncand++] = d;
    }
    *joined = (uint32_t)ncand;
    qsort(e->scratch, ncand, sizeof(*e->scratch), cmp_dev_id);
    double want = ceil(e->cfg->fraction * (double)ncand - 1e-9);
    size_t size = want < 1 ? 1 : (size_t)want;
    if (size < e->cfg->min_devices)
        size = e->cfg->min_devices;
    if (e->cfg->max_devices > 0 && size > e->cfg->max_devices)
        size = e->cfg->max_devices;
    if (size > ncand)
        size = ncand;
    for (size_t i = 0; i < size; i++) {
        const size_t j = i + (size_t)fl_rng_below(&e->rng, ncand - i);
        struct coord_device *tmp = e->scratch[i];
        e->scratch[i] = e->scratch[j];
        e->scratch[j] = tmp;
    }
    FL_FORWARD_ERR(grow_ptrs(&e->cohort, &e->cohort_cap, size + 1));
    memcpy(e->cohort, e->scratch, size * sizeof(*e->cohort));
    e->ncohort = (uint32_t)size;
    return FL_OK;
}

/* Largest k accepted: the k the workers were asked for (global or summed
 * per tensor) with 5% slack for sampled selection, or the dimension when
 * devices may override the settings. */
static uint64_t round_max_k(const struct coord_engine *e)
{
    double k = 0;
    if (e->cfg->allow_overrides)
        return e->dim;
    if (e->cfg->per_tensor) {
        for (size_t i = 0; i < e->layout->ntensors; i++) {
            const double s = (double)e->layout->tensors[i].size;
            k += fmax(1.0, ceil(e->density * s));
        }
    } else {
        k = fmax(1.0, ceil(e->density * (double)e->dim));
    }
    k = ceil(k * 1.05) + (double)e->layout->ntensors + 1;
    return k >= (double)e->dim ? e->dim : (uint64_t)k;
}

static void reset_attempt_fields(struct coord_device *d)
{
    d->rstate = COORD_RS_TASKED;
    d->task_sent_ns = 0;
    d->update_ns = 0;
    d->up_bytes = 0;
    d->down_bytes = 0;
    d->u_samples = 0;
    d->u_k = 0;
    d->u_values = 0;
    d->u_codec = 0;
    d->u_train_ms = 0;
    d->u_encode_ms = 0;
    d->u_load_ms = 0;
    d->u_peak_rss_kb = 0;
    d->u_loss = 0;
    d->u_has_stats = false;
}

static void enter_end(struct coord_engine *e, enum coord_status status,
                      uint64_t now_ns);

static void open_round(struct coord_engine *e, uint64_t now_ns)
{
    uint32_t joined = 0;
    const enum fl_err rc = draw_cohort(e, &joined);
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot draw the cohort of round %llu: %s",
               (unsigned long long)e->round, fl_strerror(rc));
        enter_end(e, COORD_FAILED, now_ns);
        return;
    }
    e->density = coord_density_for_round(e->cfg->density,
                                         e->cfg->density_warmup, e->round);
    e->max_k = round_max_k(e);
    e->row.round = e->round;
    e->row.attempt = e->attempt;
    e->row.joined = joined;
    e->row.selected = e->ncohort;
    e->row.uplink_budget = e->cfg->uplink_budget;
    e->row.density = e->density;
    e->row.norm_bound = coord_guard_norm_bound(e->guard);
    e->row.values = e->cfg->values;
    e->row.codec = e->cfg->codec;
    e->row.level = e->cfg->codec == CMP_CODEC_ZSTD ? e->cfg->level : 0;
    e->open_ns = now_ns;
    e->open_cpu_ns = fl_cpu_ns();
    e->agg_ns = 0;
    e->state = ST_OPEN;
    e->round_deadline = add_sat(now_ns, s_to_ns(e->cfg->round_timeout));
    fl_log(FL_LOG_INFO,
           "round %llu attempt %u opened: cohort of %u from %u devices, "
           "density %g, model version %llu",
           (unsigned long long)e->round, e->attempt, e->ncohort, joined,
           e->density, (unsigned long long)coord_agg_version(e->agg));
    e->pending = e->ncohort;
    for (uint32_t i = 0; i < e->ncohort; i++)
        reset_attempt_fields(e->cohort[i]);
    for (uint32_t i = 0; i < e->ncohort; i++) {
        if (e->cohort[i]->rstate == COORD_RS_TASKED)
            send_task(e, e->cohort[i], now_ns);
    }
}

static void enter_waiting(struct coord_engine *e, uint64_t now_ns)
{
    e->state = ST_WAITING;
    e->wait_deadline = e->cfg->wait_timeout > 0
                           ? add_sat(now_ns, s_to_ns(e->cfg->wait_timeout))
                           : UINT64_MAX;
    e->round_deadline = UINT64_MAX;
}

static void write_device_rows(struct coord_engine *e)
{
    for (uint32_t i = 0; i < e->ncohort; i++) {
        const struct coord_device *d = e->cohort[i];
        struct coord_device_row r;
        memset(&r, 0, sizeof(r));
        r.round = e->round;
        r.attempt = e->attempt;
        r.device = d->id;
        r.status = d->rstate == COORD_RS_REPORTED   ? COORD_DEV_REPORTED
                   : d->rstate == COORD_RS_REJECTED ? COORD_DEV_REJECTED
                                                    : COORD_DEV_DROPPED;
        r.samples = d->u_samples;
        r.up_bytes = d->up_bytes;
        r.down_bytes = d->down_bytes;
        r.budget = device_budget(e);
        r.loss = NAN;
        if (d->rstate == COORD_RS_REPORTED) {
            r.has_update = true;
            r.k = d->u_k;
            r.density = (double)d->u_k / (double)e->dim;
            r.values = (enum cmp_value_coding)d->u_values;
            r.codec = (enum cmp_codec)d->u_codec;
            r.train_ms = d->u_train_ms;
            r.encode_ms = d->u_encode_ms;
            r.load_ms = d->u_load_ms;
            r.peak_rss_kb = d->u_peak_rss_kb;
            double up = (double)(d->update_ns - d->task_sent_ns) / 1e6 -
                        (double)d->u_load_ms - (double)d->u_train_ms -
                        (double)d->u_encode_ms;
            r.upload_ms = up > 0 ? up : 0;
            r.loss = d->u_has_stats ? (double)d->u_loss : NAN;
        }
        if (coord_report_device(e->report, &r) != FL_OK)
            fl_log(FL_LOG_ERR, "cannot write a row of devices.csv");
    }
}

/* Finish the row of the attempt that is closing and write it. */
static void finish_row(struct coord_engine *e, bool committed, double acc,
                       double loss, uint64_t now_ns)
{
    struct coord_round_row *row = &e->row;
    uint32_t reported = 0, rejected = 0;
    char line[256];
    for (uint32_t i = 0; i < e->ncohort; i++) {
        reported += e->cohort[i]->rstate == COORD_RS_REPORTED;
        rejected += e->cohort[i]->rstate == COORD_RS_REJECTED;
    }
    row->committed = committed;
    row->reported = reported;
    row->rejected = rejected;
    row->dropped = e->ncohort - reported - rejected;
    row->wall_s = (double)(now_ns - e->open_ns) / NS_PER_S;
    row->cpu_s = (double)(fl_cpu_ns() - e->open_cpu_ns) / NS_PER_S;
    row->agg_s = (double)e->agg_ns / NS_PER_S;
    row->test_acc = committed ? acc : NAN;
    row->test_loss = committed ? loss : NAN;
    write_device_rows(e);
    if (coord_report_round(e->report, row) != FL_OK)
        fl_log(FL_LOG_ERR, "cannot write the report row of round %llu",
               (unsigned long long)e->round);
    if (e->progress != NULL) {
        coord_report_progress(row, e->cfg->rounds, line, sizeof(line));
        fprintf(e->progress, "%s\n", line);
        fflush(e->progress);
    }
    e->sum.attempts++;
    e->sum.rounds_done += committed;
    e->sum.updates_used += committed ? reported : 0;
    e->sum.updates_rejected += rejected;
    e->sum.updates_late += row->late;
    e->sum.up_wire_bytes += row->up_wire_bytes;
    e->sum.up_dense_bytes += row->up_dense_bytes;
    e->sum.other_rx_bytes += row->other_rx_bytes;
    e->sum.down_wire_bytes += row->down_wire_bytes;
    e->sum.down_dense_bytes += row->down_dense_bytes;
    e->sum.refused_handshakes += row->refused_handshakes;
    e->sum.rate_limited += row->rate_limited;
    coord_metrics_on_round(e->metrics, row);
    e->last = *row;
    memset(row, 0, sizeof(*row));
    for (uint32_t i = 0; i < e->ncohort; i++)
        e->cohort[i]->rstate = COORD_RS_IDLE;
    e->ncohort = 0;
    e->pending = 0;
}

static void save_model(struct coord_engine *e, const char *path)
{
    const enum fl_err rc = mdl_file_save(path, e->layout,
                                         coord_agg_params(e->agg),
                                         e->sum.rounds_done);
    if (rc != FL_OK)
        fl_log(FL_LOG_ERR, "cannot save the model to '%s': %s", path,
               fl_strerror(rc));
    else
        fl_log(FL_LOG_INFO, "model saved to '%s'", path);
}

static void evaluate(struct coord_engine *e, double *acc, double *loss)
{
    *acc = NAN;
    *loss = NAN;
    if (e->io.evaluate == NULL)
        return;
    const enum fl_err rc = e->io.evaluate(e->io.ctx, coord_agg_params(e->agg),
                                          e->dim, acc, loss);
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "cannot evaluate the model: %s",
               fl_strerror(rc));
        *acc = NAN;
        *loss = NAN;
    }
}

static void set_fate(struct coord_device *d, uint32_t status, uint64_t round)
{
    if (round >= d->last_round) {
        d->last_status = status;
        d->last_round = round;
    }
}

/* The attempt closes: downloads stop, and an upload not complete is
 * dropped (cancelled; the device learns NOT_USED). */
static void end_transfers(struct coord_engine *e)
{
    for (uint32_t i = 0; i < e->ncohort; i++) {
        struct coord_device *d = e->cohort[i];
        uint64_t transfer = 0;
        coord_xfer_stop(e->xfer, d->index);
        if (!coord_xfer_uploading(e->xfer, d->index, &transfer))
            continue;
        e->row.other_rx_bytes += coord_xfer_up_drop(e->xfer, d->index);
        set_fate(d, PB_UPDATE_NOT_USED, e->round);
        if (e->round > d->answered_round)
            d->answered_round = e->round;
        fl_log(FL_LOG_NOTICE, "upload of worker '%s' for round %llu not "
               "complete when the round closed: dropped", d->id,
               (unsigned long long)e->round);
        if (d->rid_len > 0)
            send_credit(e, d, transfer, 0, true);
    }
}

/* The open attempt ends without changing the model. */
static void abandon(struct coord_engine *e, uint64_t now_ns)
{
    end_transfers(e);
    coord_agg_discard(e->agg);
    coord_guard_discard(e->guard);
    for (uint32_t i = 0; i < e->ncohort; i++) {
        if (e->cohort[i]->rstate == COORD_RS_REPORTED)
            set_fate(e->cohort[i], PB_UPDATE_NOT_USED, e->round);
    }
    finish_row(e, false, NAN, NAN, now_ns);
}

static void commit(struct coord_engine *e, uint64_t now_ns)
{
    double acc, loss;
    char path[4096];
    advance_broadcast(e);
    for (uint32_t i = 0; i < e->ncohort; i++) {
        struct coord_device *d = e->cohort[i];
        if (d->rstate == COORD_RS_REPORTED) {
            set_fate(d, PB_UPDATE_USED, e->round);
            d->n_used++;
        }
    }
    evaluate(e, &acc, &loss);
    e->sum.final_acc = acc;
    e->sum.final_loss = loss;
    if (e->cfg->save_every_round && e->cfg->save_model != NULL) {
        snprintf(path, sizeof(path), "%s.round%llu", e->cfg->save_model,
                 (unsigned long long)e->round);
        save_model(e, path);
    }
    finish_row(e, true, acc, loss, now_ns);
}

static void checkpoint(struct coord_engine *e, uint64_t round,
                       uint32_t attempt);

static void close_round(struct coord_engine *e, uint64_t now_ns)
{
    uint32_t reported = 0;
    end_transfers(e);
    for (uint32_t i = 0; i < e->ncohort; i++)
        reported += e->cohort[i]->rstate == COORD_RS_REPORTED;
    double need = ceil(e->cfg->quorum * (double)e->ncohort - 1e-9);
    const uint32_t needed = need < 1 ? 1 : (uint32_t)need;
    if (reported >= needed) {
        const uint64_t t0 = fl_now_ns();
        /* the held (heaviest) updates go in with their capped weights */
        enum fl_err rc = coord_guard_finish(e->guard, e->agg,
                                            &e->row.weight_capped);
        if (rc == FL_OK)
            rc = coord_agg_commit(e->agg);
        e->agg_ns += fl_now_ns() - t0;
        if (rc == FL_OK) {
            coord_guard_committed(e->guard);
            commit(e, now_ns);
            if (e->round >= e->cfg->rounds) {
                checkpoint(e, e->round + 1, 1);
                enter_end(e, COORD_DONE, now_ns);
                return;
            }
            e->round++;
            e->attempt = 1;
            e->first_attempt = 1;
            checkpoint(e, e->round, e->attempt);
            enter_waiting(e, now_ns);
            return;
        }
        fl_log(FL_LOG_WARN,
               "round %llu attempt %u abandoned: the aggregated model is "
               "not finite (%s)",
               (unsigned long long)e->round, e->attempt, fl_strerror(rc));
    } else {
        fl_log(FL_LOG_NOTICE,
               "round %llu attempt %u abandoned: %u of %u reported, "
               "quorum %u",
               (unsigned long long)e->round, e->attempt, reported,
               e->ncohort, needed);
    }
    abandon(e, now_ns);
    /* after a resume the attempts count from the resumed one */
    if (e->attempt - e->first_attempt + 1 >= e->cfg->max_attempts) {
        fl_log(FL_LOG_ERR, "round %llu failed %u attempts: giving up",
               (unsigned long long)e->round,
               e->attempt - e->first_attempt + 1);
        checkpoint(e, e->round, e->attempt + 1);
        enter_end(e, COORD_TOO_MANY_ATTEMPTS, now_ns);
        return;
    }
    e->attempt++;
    checkpoint(e, e->round, e->attempt);
    enter_waiting(e, now_ns);
}

static void enter_end(struct coord_engine *e, enum coord_status status,
                      uint64_t now_ns)
{
    const size_t n = coord_devtab_count(e->devs);
    (void)now_ns;
    e->state = ST_END;
    e->status = status;
    const char *reason = coord_engine_end_reason(e);
    for (size_t i = 0; i < n; i++) {
        struct coord_device *d = coord_devtab_at(e->devs, i);
        if (d->rid_len > 0)
            send_bye(e, d, NULL, 0, reason);
    }
    if (e->cfg->save_model != NULL && status != COORD_NO_DEVICES &&
        status != COORD_FAILED)
        save_model(e, e->cfg->save_model);
    if (e->cfg->save_broadcast_model != NULL && status != COORD_NO_DEVICES &&
        status != COORD_FAILED)
        save_broadcast(e, e->cfg->save_broadcast_model);
    if (coord_report_sync(e->report) != FL_OK)
        fl_log(FL_LOG_ERR, "cannot flush the report files");
    fl_log(FL_LOG_INFO, "training ended: %s", coord_status_name(status));
}

void coord_engine_start(struct coord_engine *e, uint64_t now_ns)
{
    double acc, loss;
    e->start_ns = now_ns;
    e->start_cpu_ns = fl_cpu_ns();
    if (e->resumed && e->round > e->cfg->rounds) {
        fl_log(FL_LOG_NOTICE, "the checkpoint is past round %u: training "
               "is already complete", e->cfg->rounds);
        enter_end(e, COORD_DONE, now_ns);
        return;
    }
    if (e->resumed) {
        enter_waiting(e, now_ns);
        return;
    }
    evaluate(e, &acc, &loss);
    e->sum.initial_acc = acc;
    if (isfinite(acc)) {
        fl_log(FL_LOG_INFO, "initial model: acc %.4f, loss %.4f", acc, loss);
        if (coord_report_initial(e->report, acc) != FL_OK)
            fl_log(FL_LOG_WARN, "cannot write initial_acc");
    }
    enter_waiting(e, now_ns);
}

static void grant_uploads(struct coord_engine *e, uint64_t now_ns);

/* --upload-stall-ms: a granted upload with no chunk for that long gives
 * its slot back; the device's update is refused (53). */
static void drop_stalled_uploads(struct coord_engine *e, uint64_t now_ns)
{
    const uint64_t stall = (uint64_t)e->cfg->upload_stall_ms * 1000000u;
    uint32_t dev = 0;
    if (now_ns <= stall)
        return;
    while (coord_xfer_up_stalled(e->xfer, now_ns - stall, &dev)) {
        struct coord_device *d = coord_devtab_at(e->devs, dev);
        uint64_t transfer = 0;
        coord_xfer_uploading(e->xfer, dev, &transfer);
        e->row.other_rx_bytes += coord_xfer_up_drop(e->xfer, dev);
        if (d == NULL)
            continue;
        fl_log(FL_LOG_NOTICE, "upload of worker '%s' made no progress for "
               "%u ms: dropped", d->id, e->cfg->upload_stall_ms);
        refuse_upload(e, d);
        if (d->rid_len > 0)
            send_credit(e, d, transfer, 0, true);
        snprintf(e->why, sizeof(e->why), "upload stalled");
        send_reject_why(e, d, NULL, 0, FL_ERR_TRANSFER, true, e->round,
                        e->why);
        e->why[0] = '\0';
    }
    grant_uploads(e, now_ns);
}

enum coord_status coord_engine_tick(struct coord_engine *e, uint64_t now_ns)
{
    /* A few transitions can chain (close -> wait -> open); bound them. */
    for (int guard = 0; guard < 8; guard++) {
        if (e->state == ST_WAITING) {
            const size_t joined = eligible(e);
            if (joined >= e->cfg->min_devices) {
                open_round(e, now_ns);
                continue;
            }
            if (now_ns >= e->wait_deadline) {
                fl_log(FL_LOG_ERR,
                       "only %zu of %u devices joined within %g s",
                       joined, e->cfg->min_devices, e->cfg->wait_timeout);
                enter_end(e, COORD_NO_DEVICES, now_ns);
            }
            break;
        }
        if (e->state == ST_OPEN) {
            drop_stalled_uploads(e, now_ns);
            if (e->pending == 0 || now_ns >= e->round_deadline) {
                close_round(e, now_ns);
                continue;
            }
            break;
        }
        break;
    }
    return e->status;
}

void coord_engine_stop(struct coord_engine *e, uint64_t now_ns)
{
    uint32_t next = e->attempt;
    if (e->state == ST_END)
        return;
    if (e->state == ST_OPEN) {
        fl_log(FL_LOG_NOTICE, "stopping: round %llu attempt %u abandoned",
               (unsigned long long)e->round, e->attempt);
        abandon(e, now_ns);
        next = e->attempt + 1;
    }
    /* also while waiting: late rows written since the last one count */
    checkpoint(e, e->round, next);
    enter_end(e, COORD_STOPPED, now_ns);
}

const char *coord_engine_end_reason(const struct coord_engine *e)
{
    return e->status == COORD_DONE ? "training complete"
                                   : coord_status_name(e->status);
}

void coord_engine_summary(const struct coord_engine *e, uint64_t now_ns,
                          struct coord_summary *s)
{
    *s = e->sum;
    /* traffic after the last row (Byes, late messages) */
    s->up_wire_bytes += e->row.up_wire_bytes;
    s->up_dense_bytes += e->row.up_dense_bytes;
    s->other_rx_bytes += e->row.other_rx_bytes;
    s->down_wire_bytes += e->row.down_wire_bytes;
    s->down_dense_bytes += e->row.down_dense_bytes;
    s->updates_late += e->row.late;
    s->refused_handshakes += e->row.refused_handshakes;
    s->rate_limited += e->row.rate_limited;
    s->send_failures = e->send_failures;
    s->wall_s = (double)(now_ns - e->start_ns) / NS_PER_S;
    s->cpu_s = (double)(fl_cpu_ns() - e->start_cpu_ns) / NS_PER_S;
    s->outcome = coord_status_name(e->status);
}

/* ---- receiving */

/* The id a Hello binds. With CURVE it is the key's name (the User-Id of
 * the connection), whatever the Hello says, so that a device can never
 * take another's name or evict it; a Hello naming another id is logged.
 * In plaintext it is the Hello's device_id. docs/security.md. */
static const char *hello_identity(const struct coord_engine *e,
                                  const struct pb_hello *h)
{
    char said[96];
    if (e->auth_id == NULL)
        return h->device_id;
    if (h->device_id == NULL || strcmp(h->device_id, e->auth_id) != 0)
        fl_log(FL_LOG_NOTICE, "hello from the key of device '%s' says it is "
               "'%s': it is '%s'", e->auth_id,
               coord_escape(h->device_id, said, sizeof(said)), e->auth_id);
    return e->auth_id;
}

/* --max-devices-connected: a device that is not connected yet may join
 * only below the cap (a reconnect of a connected one replaces its old
 * connection and is always let in). Rejects with 51 when full. */
static bool admit(struct coord_engine *e, const char *id, const uint8_t *rid,
                  size_t rid_len)
{
    const struct coord_device *d = coord_devtab_by_id(e->devs, id);
    const size_t connected = coord_devtab_connected(e->devs);
    if ((d != NULL && d->rid_len > 0) ||
        connected < e->cfg->max_devices_connected)
        return true;
    fl_log(FL_LOG_NOTICE, "rejected hello from worker '%s': %zu devices "
           "connected, the --max-devices-connected limit", id, connected);
    send_reject(e, NULL, rid, rid_len, FL_ERR_FULL, false, 0);
    return false;
}

static void grant_uploads(struct coord_engine *e, uint64_t now_ns);

static void handle_hello(struct coord_engine *e, const uint8_t *rid,
                         size_t rid_len, const struct pb_hello *h,
                         uint64_t now_ns)
{
    struct coord_device *d = NULL;
    struct coord_device *holder = coord_devtab_by_rid(e->devs, rid, rid_len);
    bool created = false;
    enum fl_err rc = FL_OK;
    const char *id = hello_identity(e, h);
    if (!coord_device_id_valid(id)) {
        char esc[96];
        fl_log(FL_LOG_NOTICE, "rejected hello: device id '%s' is not 1-64 "
               "characters of [A-Za-z0-9._:-]",
               coord_escape(id, esc, sizeof(esc)));
        send_reject(e, NULL, rid, rid_len, FL_ERR_INVALID_ARG, false, 0);
        return;
    }
    if (h->n_samples == 0 || h->n_samples > e->cfg->max_samples) {
        fl_log(FL_LOG_NOTICE, "rejected hello from worker '%s': %llu samples "
               "is not in [1, %llu]", id,
               (unsigned long long)h->n_samples,
               (unsigned long long)e->cfg->max_samples);
        send_reject(e, NULL, rid, rid_len, FL_ERR_SAMPLES, false, 0);
        return;
    }
    if (!admit(e, id, rid, rid_len))
        return;
    if (holder != NULL && strcmp(holder->id, id) != 0)
        mark_gone(e, holder);   /* its connection now speaks for another */
    rc = coord_devtab_bind(e->devs, id, rid, rid_len, &d, &created);
    if (rc != FL_OK) {
        fl_log(FL_LOG_NOTICE, "rejected hello from worker '%s': %s",
               id, fl_strerror(rc));
        send_reject(e, NULL, rid, rid_len, rc, false, 0);
        return;
    }
    d->n_samples = h->n_samples;
    d->codecs_mask = h->codecs_mask;
    d->last_seen_ns = now_ns;
    /* A version from before a resume may not be the model this run has
     * under that number: such a device gets the full model. */
    d->model_version =
        h->has_model_version && h->model_version > e->trusted_version &&
                version_known(e, h->model_version)
            ? h->model_version
            : 0;
    fl_log(FL_LOG_INFO, "worker '%s' %s (%llu samples, %zu connected)",
           d->id, created ? "joined" : "joined again",
           (unsigned long long)d->n_samples,
           coord_devtab_connected(e->devs));
    send_welcome(e, d);
    /* A cohort member that says Hello again lost its Task or could not
     * apply it (e.g. unknown base version): send the Task again. */
    if (e->state == ST_OPEN &&
        (d->rstate == COORD_RS_TASKED || d->rstate == COORD_RS_GONE) &&
        d->rid_len > 0) {
        if (d->rstate == COORD_RS_GONE) {
            d->rstate = COORD_RS_TASKED;
            e->pending++;
        }
        /* an upload it had begun is lost with its old connection */
        coord_xfer_up_drop(e->xfer, d->index);
        grant_uploads(e, now_ns);
        send_task(e, d, now_ns);
    }
}

static void reject_update(struct coord_engine *e, struct coord_device *d,
                          const uint8_t *rid, size_t rid_len, uint64_t round,
                          enum fl_err code)
{
    fl_log(FL_LOG_NOTICE, "rejected update from worker '%s' for round %llu: "
           "%s%s%s", d != NULL ? d->id : "?", (unsigned long long)round,
           fl_strerror(code), e->why[0] != '\0' ? ": " : "", e->why);
    send_reject_why(e, d, rid, rid_len, code, true, round, e->why);
    e->why[0] = '\0';
}

/* A late update: counted, a "late" device row, and the device's fate for
 * that round becomes NOT_USED. */
static void record_late(struct coord_engine *e, struct coord_device *d,
                        const struct pb_update *u, size_t len)
{
    struct coord_device_row r;
    e->row.late++;
    d->n_late++;
    set_fate(d, PB_UPDATE_NOT_USED, u->round);
    memset(&r, 0, sizeof(r));
    r.round = u->round;
    r.device = d->id;
    r.status = COORD_DEV_LATE;
    r.samples = u->n_samples;
    r.up_bytes = len;
    r.loss = NAN;
    if (coord_report_device(e->report, &r) != FL_OK)
        fl_log(FL_LOG_ERR, "cannot write a row of devices.csv");
}

/* Checks before decoding: the update's round, sender and sample count. */
static enum fl_err check_update(struct coord_engine *e,
                                const struct coord_device *d,
                                const struct pb_update *u)
{
    if (e->state != ST_OPEN || u->round != e->round) {
        /* Late: a round that has closed and that the device has not
         * answered yet. A future round or a replay is stale. */
        if (u->round > d->answered_round && u->round <= e->round)
            return FL_ERR_LATE;
        return FL_ERR_STALE_ROUND;
    }
    if (d->rstate == COORD_RS_IDLE)
        return FL_ERR_NOT_IN_COHORT;
    if (d->rstate == COORD_RS_REPORTED || d->rstate == COORD_RS_REJECTED)
        return FL_ERR_DUPLICATE;
    if (u->n_samples == 0 || u->n_samples > e->cfg->max_samples) {
        snprintf(e->why, sizeof(e->why), "%llu is not in [1, %llu]",
                 (unsigned long long)u->n_samples,
                 (unsigned long long)e->cfg->max_samples);
        return FL_ERR_SAMPLES;
    }
    return FL_OK;
}

/* The largest raw stream an update of up to max_k entries can declare,
 * over every index and value coding (each bound grows with k). */
static uint64_t raw_bound(uint64_t dim, uint64_t max_k)
{
    static const enum cmp_index_coding ic[] = {
        CMP_INDEX_DELTA_VARINT, CMP_INDEX_BITMAP, CMP_INDEX_RICE,
        CMP_INDEX_ALL};
    static const enum cmp_value_coding vc[] = {
        CMP_VALUE_FP32, CMP_VALUE_FP16, CMP_VALUE_BF16, CMP_VALUE_INT8};
    size_t max = 0;
    for (size_t i = 0; i < FL_ARRAY_LEN(ic); i++) {
        for (size_t j = 0; j < FL_ARRAY_LEN(vc); j++) {
            const struct cmp_params p = {ic[i], vc[j], CMP_CODEC_NONE, 0};
            max = FL_MAX(max, cmp_sparse_bound(dim, (size_t)max_k, &p));
        }
    }
    return max > 0 ? max : dim * 9 + dim / 8 + 1024;
}

static enum fl_err decode_and_add(struct coord_engine *e,
                                  const struct pb_update *u)
{
    const struct pb_tensor *t = &u->delta;
    const uint32_t *idx = NULL;
    const float *val = NULL;
    size_t k = 0;
    const struct cmp_meta meta = {
        .dimension = t->dimension,
        .k = t->k,
        .index_coding = (enum cmp_index_coding)t->index_coding,
        .value_coding = (enum cmp_value_coding)t->value_coding,
        .codec = (enum cmp_codec)t->codec,
        .raw_size = t->raw_size,
        .checksum = t->checksum,
    };
    const struct cmp_limits lim = {
        .dimension = e->dim,
        .max_k = e->max_k,
        .max_raw_size = raw_bound(e->dim, e->max_k),
    };
    if (t->dimension != e->dim) {
        snprintf(e->why, sizeof(e->why), "dimension %llu, the model has %zu",
                 (unsigned long long)t->dimension, e->dim);
        return FL_ERR_DIMENSION;
    }
    if (t->k == 0 || t->k > e->max_k) {
        snprintf(e->why, sizeof(e->why), "k %llu is not in [1, %llu]",
                 (unsigned long long)t->k, (unsigned long long)e->max_k);
        return FL_ERR_K_RANGE;
    }
    /* the norm comes with the values (no pass of its own) */
    double norm = 0;
    FL_FORWARD_ERR(cmp_sparse_decode_l2(e->dctx, &meta, t->payload,
                                        t->payload_len, &lim, &idx, &val, &k,
                                        &norm));
    if (k != t->k)
        return FL_ERR_K_RANGE;
    /* the bound in force, then the share cap (coord_guard.h) */
    if (coord_guard_check_norm(e->guard, norm) != FL_OK) {
        snprintf(e->why, sizeof(e->why), "L2 norm %.6g is over the bound "
                 "%.6g", norm, coord_guard_norm_bound(e->guard));
        return FL_ERR_NORM;
    }
    return coord_guard_add(e->guard, e->agg, idx, val, k,
                           (double)u->n_samples, norm);
}

static void finish_update(struct coord_engine *e, struct coord_device *d,
                          const struct pb_update *u, size_t len,
                          enum fl_err rc, uint64_t now_ns);

/* An announced (chunked) update: the checks that need no payload, and the
 * announced size against what a valid payload can be. */
static enum fl_err check_announce(struct coord_engine *e,
                                  const struct pb_update *u)
{
    const struct pb_tensor *t = &u->delta;
    if (t->dimension != e->dim) {
        snprintf(e->why, sizeof(e->why), "dimension %llu, the model has %zu",
                 (unsigned long long)t->dimension, e->dim);
        return FL_ERR_DIMENSION;
    }
    if (t->k == 0 || t->k > e->max_k) {
        snprintf(e->why, sizeof(e->why), "k %llu is not in [1, %llu]",
                 (unsigned long long)t->k, (unsigned long long)e->max_k);
        return FL_ERR_K_RANGE;
    }
    /* a codec may grow incompressible data a little */
    const uint64_t raw = raw_bound(e->dim, e->max_k);
    const uint64_t max = FL_MIN((uint64_t)e->cfg->max_message,
                                raw + raw / 64 + 4096);
    if (t->payload_bytes > max) {
        snprintf(e->why, sizeof(e->why), "announced payload of %llu bytes "
                 "is over %llu", (unsigned long long)t->payload_bytes,
                 (unsigned long long)max);
        return FL_ERR_TOO_LARGE;
    }
    return FL_OK;
}

/* Give free upload slots to waiting uploads: Credit{transfer, 0}. */
static void grant_uploads(struct coord_engine *e, uint64_t now_ns)
{
    uint32_t dev = 0;
    uint64_t transfer = 0;
    bool failed = false;
    while (coord_xfer_up_grant(e->xfer, now_ns, &dev, &transfer,
                               &failed)) {
        struct coord_device *d = coord_devtab_at(e->devs, dev);
        if (d == NULL)
            continue;
        if (failed) {
            fl_log(FL_LOG_ERR, "no memory for the upload of worker '%s'",
                   d->id);
            refuse_upload(e, d);
            send_credit(e, d, transfer, 0, true);
            continue;
        }
        send_credit(e, d, transfer, 0, false);
    }
}

static void handle_update(struct coord_engine *e, struct coord_device *d,
                          const uint8_t *rid, size_t rid_len,
                          const struct pb_update *u, size_t len,
                          struct pb_msg **msgp, uint64_t now_ns)
{
    enum fl_err rc;
    if (d == NULL) {
        e->row.other_rx_bytes += len;
        fl_log(FL_LOG_NOTICE, "rejected update for round %llu from an "
               "unknown device (no hello)", (unsigned long long)u->round);
        coord_metrics_on_update(e->metrics, FL_ERR_UNKNOWN_DEVICE, len, 0);
        send_reject(e, NULL, rid, rid_len, FL_ERR_UNKNOWN_DEVICE, true,
                    u->round);
        return;
    }
    rc = check_update(e, d, u);
    if (rc == FL_OK && u->delta.payload_transfer != 0) {
        uint64_t busy = 0;
        rc = check_announce(e, u);
        if (rc == FL_OK && coord_xfer_uploading(e->xfer, d->index, &busy)) {
            snprintf(e->why, sizeof(e->why), "an upload (transfer %llu) is "
                     "already in progress", (unsigned long long)busy);
            rc = FL_ERR_DUPLICATE;
        }
        if (rc == FL_OK) {
            const uint64_t transfer = u->delta.payload_transfer;
            rc = coord_xfer_up_announce(e->xfer, d->index, *msgp, len,
                                        transfer, u->delta.payload_bytes);
            *msgp = NULL;   /* kept (or freed) by the transfer */
            if (rc == FL_OK) {
                fl_log(FL_LOG_DEBUG, "worker '%s' announced an update of "
                       "%llu bytes for round %llu", d->id,
                       (unsigned long long)u->delta.payload_bytes,
                       (unsigned long long)e->round);
                grant_uploads(e, now_ns);
                return;
            }
            /* u pointed into the freed message: report without it */
            fl_log(FL_LOG_ERR, "cannot queue the upload of worker '%s': %s",
                   d->id, fl_strerror(rc));
            refuse_upload(e, d);
            send_reject(e, d, NULL, 0, rc, true, e->round);
            return;
        }
    }
    if (rc == FL_OK) {
        const uint64_t t0 = fl_now_ns();
        rc = decode_and_add(e, u);
        e->agg_ns += fl_now_ns() - t0;
    }
    finish_update(e, d, u, len, rc, now_ns);
}

/* Count and answer an update whose checks gave rc (FL_OK: it is in the
 * accumulator). len is its wire size (announcement and chunks). */
static void finish_update(struct coord_engine *e, struct coord_device *d,
                          const struct pb_update *u, size_t len,
                          enum fl_err rc, uint64_t now_ns)
{
    if (rc != FL_ERR_STALE_ROUND && u->round > d->answered_round)
        d->answered_round = u->round;
    coord_metrics_on_update(e->metrics, rc, len, (uint64_t)e->dim * 4);
    if (rc == FL_ERR_LATE) {
        e->row.other_rx_bytes += len;
        record_late(e, d, u, len);
        reject_update(e, d, NULL, 0, u->round, FL_ERR_LATE);
        return;
    }
    const bool member = rc != FL_ERR_NOT_IN_COHORT &&
                        rc != FL_ERR_DUPLICATE && rc != FL_ERR_STALE_ROUND;
    if (member) {
        /* the update counts for this cohort member, good or bad */
        if (d->rstate == COORD_RS_TASKED)
            e->pending--;
        d->update_ns = now_ns;
        d->up_bytes += len;
        if (device_budget(e) > 0 && len > device_budget(e)) {
            /* a worker that honours the cap never gets here: counted and
             * logged, not rejected (the bytes were spent anyway) */
            e->row.over_budget++;
            fl_log(FL_LOG_WARN, "update from worker '%s' for round %llu is "
                   "%zu bytes, over its budget of %llu", d->id,
                   (unsigned long long)u->round, len,
                   (unsigned long long)device_budget(e));
        }
        d->u_samples = u->n_samples;
        d->u_k = u->delta.k;
        d->u_values = u->delta.value_coding;
        d->u_codec = u->delta.codec;
        d->u_train_ms = u->stats.train_ms;
        d->u_encode_ms = u->stats.encode_ms;
        d->u_load_ms = u->stats.load_ms;
        d->u_peak_rss_kb = u->stats.peak_rss_kb;
        d->u_loss = u->stats.loss;
        d->u_has_stats = true;
    }
    if (rc == FL_OK) {
        d->rstate = COORD_RS_REPORTED;
        coord_guard_forgive(e->guard, d->index);
        d->total_up_bytes += len;
        e->row.up_wire_bytes += len;
        e->row.up_dense_bytes += (uint64_t)e->dim * 4;
        fl_log(FL_LOG_DEBUG, "update from worker '%s' for round %llu: %zu "
               "bytes, k %llu", d->id, (unsigned long long)u->round, len,
               (unsigned long long)u->delta.k);
        return;
    }
    e->row.other_rx_bytes += len;
    if (member) {
        d->rstate = COORD_RS_REJECTED;
        d->n_rejected++;
        set_fate(d, PB_UPDATE_NOT_USED, u->round);
    } else if (rc == FL_ERR_NOT_IN_COHORT) {
        set_fate(d, PB_UPDATE_NOT_USED, u->round);
    }
    reject_update(e, d, NULL, 0, u->round, rc);
}

/* A Credit for one of our downloads. */
static void handle_credit(struct coord_engine *e, struct coord_device *d,
                          const struct pb_credit *c, size_t len)
{
    bool done = false;
    e->row.other_rx_bytes += len;
    if (d == NULL)
        return;
    const enum fl_err rc = coord_xfer_credit(e->xfer, d->index, c->transfer,
                                             c->received, c->cancel, &done);
    if (rc == FL_ERR_NOT_FOUND) {
        /* a credit for a transfer that has ended (replaced by a newer
         * Task, or its round closed): harmless */
        fl_log(FL_LOG_DEBUG, "credit from worker '%s' for transfer %llu, "
               "which is not open", d->id, (unsigned long long)c->transfer);
    } else if (rc != FL_OK) {
        fl_log(FL_LOG_NOTICE, "worker '%s' sent credit %u for transfer "
               "%llu, out of range: the transfer is stopped", d->id,
               c->received, (unsigned long long)c->transfer);
        send_reject(e, d, NULL, 0, FL_ERR_TRANSFER, false, 0);
        mark_gone(e, d);
    } else if (c->cancel) {
        fl_log(FL_LOG_NOTICE, "worker '%s' cancelled the model transfer "
               "%llu", d->id, (unsigned long long)c->transfer);
    } else if (done) {
        fl_log(FL_LOG_DEBUG, "model transfer %llu to worker '%s' complete",
               (unsigned long long)c->transfer, d->id);
    }
    pump(e);
}

/* A Chunk of an upload. The complete payload goes through the same checks
 * and accumulator as an inline update. */
static void handle_chunk(struct coord_engine *e, struct coord_device *d,
                         const uint8_t *rid, size_t rid_len,
                         const struct pb_chunk *c, size_t len,
                         uint64_t now_ns)
{
    bool complete = false;
    uint32_t received = 0;
    if (d == NULL) {
        e->row.other_rx_bytes += len;
        send_reject(e, NULL, rid, rid_len, FL_ERR_UNKNOWN_DEVICE, false, 0);
        return;
    }
    enum fl_err rc = coord_xfer_up_chunk(e->xfer, d->index, c, len, now_ns,
                                         &received, &complete);
    if (rc != FL_OK) {
        e->row.other_rx_bytes += len;
        fl_log(FL_LOG_NOTICE, "chunk %u/%u of transfer %llu from worker '%s' "
               "does not belong to an upload in progress: refused", c->seq,
               c->total, (unsigned long long)c->transfer, d->id);
        coord_metrics_on_update(e->metrics, FL_ERR_TRANSFER, len, 0);
        /* a broken upload is the device's update for the round */
        if (e->state == ST_OPEN)
            refuse_upload(e, d);
        send_reject(e, d, NULL, 0, FL_ERR_TRANSFER, e->state == ST_OPEN,
                    e->round);
        grant_uploads(e, now_ns);
        return;
    }
    send_credit(e, d, c->transfer, received, false);
    if (!complete)
        return;
    struct pb_msg *msg = NULL;
    uint8_t *payload = NULL;
    size_t plen = 0;
    uint64_t wire = 0;
    rc = coord_xfer_up_take(e->xfer, d->index, &msg, &payload, &plen, &wire);
    if (rc == FL_OK) {
        const struct pb_envelope *env = pb_msg_envelope(msg);
        struct pb_update u = env->update;
        u.delta.payload = payload;
        u.delta.payload_len = plen;
        u.delta.payload_transfer = 0;
        u.delta.payload_bytes = 0;
        rc = check_update(e, d, &u);
        if (rc == FL_OK) {
            const uint64_t t0 = fl_now_ns();
            rc = decode_and_add(e, &u);
            e->agg_ns += fl_now_ns() - t0;
        }
        finish_update(e, d, &u, (size_t)wire, rc, now_ns);
    } else {
        fl_log(FL_LOG_ERR, "cannot take the upload of worker '%s': %s",
               d->id, fl_strerror(rc));
    }
    fl_free(payload);
    pb_msg_destroy(&msg);
    grant_uploads(e, now_ns);
}

static void handle_bye(struct coord_engine *e, struct coord_device *d)
{
    if (d == NULL)
        return;
    fl_log(FL_LOG_INFO, "worker '%s' left", d->id);
    mark_gone(e, d);
    coord_devtab_unbind(e->devs, d);
}

static void dispatch(struct coord_engine *e, struct coord_device *d,
                     const uint8_t *rid, size_t rid_len,
                     const struct pb_envelope *env, size_t len,
                     struct pb_msg **msgp, uint64_t now_ns)
{
    switch (env->body) {
    case PB_BODY_HELLO:
        e->row.other_rx_bytes += len;
        handle_hello(e, rid, rid_len, &env->hello, now_ns);
        return;
    case PB_BODY_UPDATE:
        handle_update(e, d, rid, rid_len, &env->update, len, msgp, now_ns);
        return;
    case PB_BODY_CREDIT:
        handle_credit(e, d, &env->credit, len);
        return;
    case PB_BODY_CHUNK:
        handle_chunk(e, d, rid, rid_len, &env->chunk, len, now_ns);
        return;
    case PB_BODY_BYE:
        e->row.other_rx_bytes += len;
        handle_bye(e, d);
        return;
    case PB_BODY_REJECT: {
        char esc[PB_MAX_STRING + 64];
        e->row.other_rx_bytes += len;
        fl_log(FL_LOG_NOTICE, "worker '%s' rejected a message: '%s' (code "
               "%u)", d != NULL ? d->id : "?",
               coord_escape(env->reject.reason, esc, sizeof(esc)),
               env->reject.code);
        return;
    }
    case PB_BODY_NONE:
    case PB_BODY_WELCOME:
    case PB_BODY_TASK:
        break;
    }
    e->row.other_rx_bytes += len;
    fl_log(FL_LOG_NOTICE, "rejected %s from worker '%s': not a message for "
           "the coordinator", pb_body_name(env->body),
           d != NULL ? d->id : "?");
    send_reject(e, d, rid, rid_len, FL_ERR_BAD_STATE, false, 0);
}

/* Training is over: a device that did not get its Bye (it was busy, or
 * came back) gets it now; a late update is counted as late first. */
static void after_end(struct coord_engine *e, struct coord_device *d,
                      const uint8_t *rid, size_t rid_len,
                      const struct pb_envelope *env, size_t len)
{
    e->row.other_rx_bytes += len;
    if (env->body == PB_BODY_HELLO) {
        const char *id = hello_identity(e, &env->hello);
        if (coord_device_id_valid(id))
            d = coord_devtab_by_id(e->devs, id);
        send_bye(e, d, rid, rid_len, coord_engine_end_reason(e));
        if (d != NULL)
            fl_log(FL_LOG_INFO, "worker '%s' came back after the end: bye",
                   d->id);
        return;
    }
    if (env->body != PB_BODY_UPDATE || d == NULL)
        return;
    record_late(e, d, &env->update, len);
    coord_metrics_on_update(e->metrics, FL_ERR_LATE, len, 0);
    fl_log(FL_LOG_NOTICE, "late update from worker '%s' for round %llu after "
           "the end: bye", d->id, (unsigned long long)env->update.round);
    send_bye(e, d, rid, rid_len, coord_engine_end_reason(e));
}

void coord_engine_on_disconnect(struct coord_engine *e)
{
    e->row.disconnects++;
}

/* A message from a device in the penalty box: dropped unread and counted
 * as FL_ERR_IGNORED; the first one of each round is answered. */
static void drop_ignored(struct coord_engine *e, struct coord_device *d,
                         const uint8_t *rid, size_t rid_len, size_t len)
{
    e->row.other_rx_bytes += len;
    if (!coord_guard_first_drop(e->guard, d->index, e->round)) {
        e->row.rejects[FL_ERR_IGNORED]++;
        return;
    }
    fl_log(FL_LOG_NOTICE, "dropped a message of %zu bytes from worker '%s': "
           "it is in its penalty period", len, d->id);
    send_reject(e, d, rid, rid_len, FL_ERR_IGNORED, false, 0);
}

void coord_engine_on_message(struct coord_engine *e, const uint8_t *rid,
                             size_t rid_len, const uint8_t *data,
                             size_t len, size_t extra_frames,
                             size_t extra_bytes, uint64_t now_ns)
{
    struct coord_device *d = coord_devtab_by_rid(e->devs, rid, rid_len);
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    uint32_t version = 0;
    char why[160];
    enum fl_err rc;
    /* With CURVE a routing id is only trusted together with the key that
     * bound it: a connection of another key (a peer may choose its
     * routing id, e.g. one a device used before it disconnected) is not
     * that device. */
    if (d != NULL && e->auth_id != NULL && strcmp(d->id, e->auth_id) != 0)
        d = NULL;
    if (d != NULL)
        d->last_seen_ns = now_ns;
    if (d != NULL && e->state != ST_END && ignored(e, d)) {
        drop_ignored(e, d, rid, rid_len, len + extra_bytes);
        return;
    }
    if (extra_frames > 0) {
        e->row.other_rx_bytes += len + extra_bytes;
        e->row.multipart++;
        fl_log(FL_LOG_NOTICE, "dropped a message of %zu frames from worker "
               "'%s': one frame expected", extra_frames + 1,
               d != NULL ? d->id : "?");
        return;
    }
    why[0] = '\0';
    /* The parser may allocate twice the message plus 1 MiB: enough for
     * any honest message, and a bound on what a crafted one can cost. */
    e->lim.max_alloc = 2 * len + (1u << 20);
    rc = pb_unpack(data, len, &e->lim, &msg, &env, &version, why,
                   sizeof(why));
    if (rc != FL_OK) {
        e->row.other_rx_bytes += len;
        if (rc == FL_ERR_NOMEM)
            rc = FL_ERR_TOO_LARGE;   /* over the parse budget */
        char esc[sizeof(why) + 16];
        fl_log(FL_LOG_NOTICE, "rejected a message of %zu bytes from worker "
               "'%s': %s%s%s", len, d != NULL ? d->id : "?",
               fl_strerror(rc), why[0] != '\0' ? ": " : "",
               coord_escape(why, esc, sizeof(esc)));
        send_reject(e, d, rid, rid_len, rc, false, 0);
        return;
    }
    if (e->state == ST_END)
        after_end(e, d, rid, rid_len, env, len);
    else
        dispatch(e, d, rid, rid_len, env, len, &msg, now_ns);
    pb_msg_destroy(&msg);
}

void coord_engine_on_message_auth(struct coord_engine *e,
                                  const uint8_t *rid, size_t rid_len,
                                  const char *user_id, const uint8_t *data,
                                  size_t len, size_t extra_frames,
                                  size_t extra_bytes, uint64_t now_ns)
{
    e->auth_id = user_id != NULL && user_id[0] != '\0' ? user_id : NULL;
    coord_engine_on_message(e, rid, rid_len, data, len, extra_frames,
                            extra_bytes, now_ns);
    e->auth_id = NULL;
}

bool coord_engine_in_transfer(const struct coord_engine *e,
                              const uint8_t *rid, size_t rid_len,
                              const char *user_id)
{
    const struct coord_device *d = coord_devtab_by_rid(e->devs, rid,
                                                       rid_len);
    if (d == NULL || (user_id != NULL && user_id[0] != '\0' &&
                      strcmp(d->id, user_id) != 0))
        return false;
    return coord_xfer_downloading(e->xfer, d->index) ||
           coord_xfer_up_receiving(e->xfer, d->index);
}

size_t coord_engine_revoke(struct coord_engine *e,
                           bool (*allowed)(void *ctx, const char *id),
                           void *ctx)
{
    const size_t n = coord_devtab_count(e->devs);
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        struct coord_device *d = coord_devtab_at(e->devs, i);
        if (d->rid_len == 0 || allowed(ctx, d->id))
            continue;
        fl_log(FL_LOG_NOTICE, "worker '%s' dropped: its key was revoked",
               d->id);
        send_bye(e, d, NULL, 0, "key revoked");
        mark_gone(e, d);
        coord_devtab_unbind(e->devs, d);
        dropped++;
    }
    return dropped;
}

void coord_engine_count_admission(struct coord_engine *e,
                                  uint64_t refused_handshakes,
                                  uint64_t rate_limited)
{
    e->row.refused_handshakes += refused_handshakes;
    e->row.rate_limited += rate_limited;
}

/* ---- checkpoints */

static enum fl_err export_devices(struct coord_engine *e, size_t n)
{
    if (n > e->ckdevs_cap) {
        struct coord_ckpt_device *p =
            fl_realloc(e->ckdevs, n * sizeof(*p));
        if (p == NULL)
            return FL_ERR_NOMEM;
        e->ckdevs = p;
        e->ckdevs_cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        const struct coord_device *d = coord_devtab_at(e->devs, i);
        struct coord_ckpt_device *c = &e->ckdevs[i];
        memset(c, 0, sizeof(*c));
        memcpy(c->id, d->id, sizeof(c->id));
        c->last_status = d->last_status;
        c->last_round = d->last_round;
        c->n_used = d->n_used;
        c->n_rejected = d->n_rejected;
        c->n_late = d->n_late;
        c->total_up_bytes = d->total_up_bytes;
        c->total_down_bytes = d->total_down_bytes;
    }
    return FL_OK;
}

/* Hand the state to io.checkpoint, with (round, attempt) as the attempt to
 * run next. */
static void checkpoint(struct coord_engine *e, uint64_t round,
                       uint32_t attempt)
{
    struct coord_ckpt ck;
    const size_t n = coord_devtab_count(e->devs);
    if (e->io.checkpoint == NULL)
        return;
    enum fl_err rc = export_devices(e, n);
    if (rc == FL_OK) {
        memset(&ck, 0, sizeof(ck));
        ck.dim = e->dim;
        ck.layout_crc = coord_ckpt_layout_crc(e->layout);
        ck.seed = e->cfg->seed;
        ck.epoch = e->epoch;
        ck.next_round = round;
        ck.next_attempt = attempt;
        ck.model_version = coord_agg_version(e->agg);
        ck.rng = e->rng;
        ck.sum = e->sum;
        ck.sum.send_failures = e->send_failures;
        ck.ndevices = (uint32_t)n;
        ck.devices = e->ckdevs;
        ck.params = coord_agg_params(e->agg);
        ck.momentum = coord_agg_momentum(e->agg);
        rc = e->io.checkpoint(e->io.ctx, &ck);
    }
    if (rc != FL_OK)
        fl_log(FL_LOG_ERR, "cannot checkpoint before round %llu attempt %u: "
               "%s", (unsigned long long)round, attempt, fl_strerror(rc));
}

/* Devices of the checkpoint come back unbound, with their fates: bound to
 * a routing id no peer uses (nobody is connected yet), then unbound. */
static enum fl_err resume_devices(struct coord_engine *e,
                                  const struct coord_ckpt *ck)
{
    static const uint8_t tmp_rid[] = {0xff, 'c', 'k', 'p', 't'};
    for (uint32_t i = 0; i < ck->ndevices; i++) {
        const struct coord_ckpt_device *c = &ck->devices[i];
        struct coord_device *d = NULL;
        bool created = false;
        FL_FORWARD_ERR(coord_devtab_bind(e->devs, c->id, tmp_rid,
                                         sizeof(tmp_rid), &d, &created));
        coord_devtab_unbind(e->devs, d);
        d->last_status = c->last_status;
        d->last_round = c->last_round;
        d->n_used = c->n_used;
        d->n_rejected = c->n_rejected;
        d->n_late = c->n_late;
        d->total_up_bytes = c->total_up_bytes;
        d->total_down_bytes = c->total_down_bytes;
    }
    return FL_OK;
}

enum fl_err coord_engine_resume(struct coord_engine *e,
                                const struct coord_ckpt *ck, char *err,
                                size_t errlen)
{
    enum fl_err rc = coord_ckpt_check(ck, e->cfg, e->layout, err, errlen);
    if (rc != FL_OK)
        return rc;
    if (e->resumed || e->start_ns != 0 || coord_devtab_count(e->devs) > 0) {
        snprintf(err, errlen, "the coordinator has already started");
        return FL_ERR_INVALID_ARG;
    }
    rc = coord_agg_resume(e->agg, ck->model_version, ck->params,
                          ck->momentum);
    if (rc == FL_OK)
        rc = resume_devices(e, ck);
    if (rc != FL_OK) {
        snprintf(err, errlen, "cannot restore the checkpoint: %s",
                 fl_strerror(rc));
        return FL_ERR_INVALID_ARG;
    }
    e->round = ck->next_round;
    e->attempt = ck->next_attempt;
    e->first_attempt = ck->next_attempt;
    e->rng = ck->rng;
    e->sum = ck->sum;
    e->sum.rounds_total = e->cfg->rounds;
    e->sum.outcome = NULL;
    e->sum.wall_s = 0;
    e->sum.cpu_s = 0;
    e->send_failures = ck->sum.send_failures;
    e->sum.send_failures = 0;
    e->trusted_version = ck->model_version;
    e->resumed = true;
    return FL_OK;
}
