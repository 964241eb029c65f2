/*
 * wrk_client.c - the worker's protocol loop (wrk_client.h,
 * docs/protocol.md, docs/worker.md).
 *
 * State that matters across messages:
 *   epoch       the coordinator instance we joined; a change means restart
 *   model       the global model held (version), for XOR deltas
 *   upd         residual, velocity and the pending update (wrk_update.h)
 *
 * The fate of the pending update is learned from, in order of arrival:
 * a Reject naming its round, the next Task (last_update), or the final Bye.
 * Each verdict applies only to the round it names, so a verdict that
 * arrives twice restores nothing twice. A Task for a later round that names
 * another round (or NONE) means the coordinator closed our round without
 * the update: it was not used.
 *
 * Chunked transfers (docs/protocol.md "Transfers", wrk_xfer.h): with the
 * Welcome's geometry, a Task whose model comes in chunks is kept (its
 * pb_msg) while the chunks are reassembled (struct pb_xfer_rx), then goes
 * on exactly as an inline Task, its timeout counted from the last chunk.
 * An Update payload over chunk_bytes is announced and sent in chunks as
 * the coordinator's Credits allow (struct wrk_xfer_tx). The payload of
 * the pending update is borrowed from the update state's encoder: it stays
 * valid until the next encode, and the upload never outlives it (do_round
 * and free_model end it first).
 */
#include "worker/wrk_client.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "common/fl_alloc.h"
#include "common/fl_keys.h"
#include "common/fl_log.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "model/mdl_file.h"
#include "model/mdl_trainer.h"
#include "proto/pb_msg.h"
#include "proto/pb_xfer.h"
#include "worker/wrk_data.h"
#include "worker/wrk_model.h"
#include "worker/wrk_state.h"
#include "worker/wrk_stats.h"
#include "worker/wrk_update.h"
#include "worker/wrk_xfer.h"

#define HELLO_BACKOFF_MIN_MS 1000u
#define HELLO_BACKOFF_MAX_MS 8000u
#define HELLO_FAST_RETRY_MS 20u
#define HELLO_FAST_RETRIES 25u
#define POLL_MS 250
#define SEND_TIMEOUT_MS 5000
#define LINGER_MS 1000
#define HEARTBEAT_IVL_MS 1000
#define HEARTBEAT_TIMEOUT_MS 5000
#define HEARTBEAT_TTL_MS 10000
#define DEFAULT_BATCH 32u
#define DEFAULT_MC_MOMENTUM 0.9f
#define NS_PER_MS 1000000ull
/* a Chunk frame is its data plus a few varints */
#define CHUNK_FRAME_SLACK 64u

static volatile sig_atomic_t stop_requested;

/* Everything measured while making one update. */
struct round_work {
    uint64_t t0_ns;               /* the Task (its last chunk) arrived */
    uint64_t load_ns;
    uint64_t train_ns;
    uint64_t encode_ns;
    struct mdl_train_result tr;
    struct wrk_settings s;
    struct wrk_encoded enc;
};

/* The update being sent (or last sent), for a chunked upload and a
 * re-sent Task: rw.enc.payload is borrowed from the update state. */
struct sending {
    bool valid;                   /* rw describes the pending update */
    bool chunked;
    bool again;                   /* a re-send: logged as such, no row */
    uint64_t round;
    uint64_t max_update_bytes;    /* the Task's, echoed in Update.used */
    uint32_t timeout_ms;          /* the Task's */
    uint64_t deadline_ns;         /* give a chunked upload up; 0 = none */
    struct round_work rw;
    uint64_t t0_ns;               /* first byte handed to ZeroMQ */
    uint64_t bytes;               /* frames handed over */
    uint32_t chunks;
    bool cost_open;               /* the round's cost not reported yet */
};

struct wrk_client {
    const struct wrk_config *cfg;
    void *zctx;
    void *sock;
    void *mon;
    struct mdl_dataset *data;
    struct wrk_data_info dinfo;
    struct mdl_trainer *trainer;
    struct wrk_held_model model;
    float *u;
    struct wrk_update *upd;
    struct cmp_ctx *mctx;         /* model decode */
    struct pb_limits lim;
    uint8_t *buf;                 /* packed outgoing message */
    size_t bufcap;
    uint8_t *last_update;         /* frame of the last update sent */
    size_t last_update_len;
    size_t last_update_cap;
    uint64_t last_update_round;
    char state_path[WRK_PATH_MAX + 32]; /* <state-dir>/ef-state.bin */
    uint8_t *sbuf;                /* encoded state (wrk_state.h) */
    size_t scap;
    bool handshake_failed;        /* logged since the last good one */
    bool handshake_ok;            /* a handshake ever completed */
    bool welcomed;                /* Welcome seen since the last Hello need */
    bool ever_welcomed;
    bool have_epoch;
    uint64_t epoch;
    uint64_t start_ns;
    uint64_t hello_due_ns;
    uint32_t backoff_ms;
    uint32_t fast_retries;
    bool overrides_noted;
    float mc_noted;               /* momentum factor last logged */
    bool done;
    int exit_code;
    uint64_t send_start_ns;       /* set by send_env before zmq_send */
    /* chunked transfers: geometry from the Welcome, 0 = none */
    uint32_t chunk_bytes;
    uint32_t chunk_window;
    struct pb_xfer_rx rx;         /* downlink: the model of rx_task */
    struct pb_msg *rx_msg;        /* owns rx_task while chunks come */
    const struct pb_task *rx_task;
    uint64_t rx_start_ns;
    uint64_t rx_cancelled;        /* last transfer we cancelled */
    struct wrk_xfer_tx tx;        /* uplink of the pending update */
    uint64_t tx_ids;              /* transfer id counter */
    struct sending snd;
    FILE *stats;                  /* --stats-csv */
};

void wrk_client_request_stop(void) { stop_requested = 1; }

static void drop_download(struct wrk_client *c);
static void end_upload(struct wrk_client *c, bool restore, const char *why);

static uint64_t ms_since(uint64_t t0_ns)
{
    return (fl_now_ns() - t0_ns) / NS_PER_MS;
}

static uint32_t ns_to_ms32(uint64_t ns)
{
    return (uint32_t)FL_MIN(ns / NS_PER_MS, (uint64_t)UINT32_MAX);
}

/* Seed mixing: a value that differs per shard for the same base seed. */
static uint64_t mix_seed(uint64_t seed, uint64_t salt)
{
    struct fl_rng r;
    fl_rng_seed(&r, seed ^ (0x9e3779b97f4a7c15ULL * (salt + 1)));
    return fl_rng_next(&r);
}

static void finish(struct wrk_client *c, int code)
{
    c->done = true;
    c->exit_code = code;
}

/* ---------------------------------------------------------------- sending */

/* Pack and send one envelope. *sent gets the frame size on success.
 * FL_ERR_TIMEOUT when it could not be queued (EAGAIN), FL_ERR_ZMQ else. */
static enum fl_err send_env(struct wrk_client *c,
                            const struct pb_envelope *env, int flags,
                            size_t *sent)
{
    size_t len = pb_packed_size(env);
    enum fl_err rc = FL_OK;
    if (len == 0)
        return FL_ERR_INVALID_ARG;
    if (len > c->bufcap) {
        uint8_t *nb = fl_realloc(c->buf, len);
        if (nb == NULL)
            return FL_ERR_NOMEM;
        c->buf = nb;
        c->bufcap = len;
    }
    rc = pb_pack(env, c->buf, c->bufcap, &len);
    if (rc != FL_OK)
        return rc;
    c->send_start_ns = fl_now_ns();
    for (;;) {
        const int n = zmq_send(c->sock, c->buf, len, flags);
        if (n >= 0) {
            *sent = (size_t)n;
            return FL_OK;
        }
        if (errno == EINTR && !stop_requested)
            continue;
        if (errno == EAGAIN || errno == EINTR)
            return FL_ERR_TIMEOUT;
        fl_log(FL_LOG_WARN, "cannot send %s to '%s': %s",
               pb_body_name(env->body), c->cfg->connect,
               zmq_strerror(errno));
        return FL_ERR_ZMQ;
    }
}

static void send_hello(struct wrk_client *c)
{
    struct pb_envelope env;
    size_t sent = 0;
    const uint64_t now = fl_now_ns();

    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_HELLO;
    env.hello.device_id = c->cfg->id;
    env.hello.n_samples = c->dinfo.shard_n;
    env.hello.codecs_mask =
        (1u << CMP_CODEC_NONE) | (1u << CMP_CODEC_LZ4) | (1u << CMP_CODEC_ZSTD);
    env.hello.has_model_version = c->model.have;
    env.hello.model_version = c->model.version;
    env.hello.has_epoch = c->have_epoch;
    env.hello.epoch = c->epoch;
    env.hello.software = WRK_VERSION_STRING;

    const enum fl_err rc = send_env(c, &env, ZMQ_DONTWAIT, &sent);
    if (rc == FL_ERR_TIMEOUT && c->fast_retries > 0) {
        /* The handshake event can beat the pipe's attachment by a moment. */
        c->fast_retries--;
        c->hello_due_ns = now + HELLO_FAST_RETRY_MS * NS_PER_MS;
        return;
    }
    if (rc == FL_OK) {
        c->fast_retries = 0;
        fl_log(FL_LOG_DEBUG, "sent hello (%zu bytes, model version %s%" PRIu64
               ")", sent, c->model.have ? "" : "none ",
               c->model.have ? c->model.version : 0);
    } else {
        fl_log(FL_LOG_DEBUG, "hello not sent (%s): not connected yet",
               fl_strerror(rc));
    }
    c->hello_due_ns = now + (uint64_t)c->backoff_ms * NS_PER_MS;
    c->backoff_ms = FL_MIN(c->backoff_ms * 2, HELLO_BACKOFF_MAX_MS);
}

/* Forget the coordinator's welcome and say Hello right away. */
static void hello_again(struct wrk_client *c)
{
    c->welcomed = false;
    c->backoff_ms = HELLO_BACKOFF_MIN_MS;
    c->fast_retries = HELLO_FAST_RETRIES;
    c->hello_due_ns = fl_now_ns();
}

static void say_bye(struct wrk_client *c, const char *reason)
{
    struct pb_envelope env;
    size_t sent = 0;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_BYE;
    env.bye.reason = reason;
    if (send_env(c, &env, ZMQ_DONTWAIT, &sent) == FL_OK)
        fl_log(FL_LOG_DEBUG, "sent bye (%zu bytes)", sent);
}

/* Send a frame packed by pb_xfer (taking it: freed here or by ZeroMQ once
 * sent, without a copy). *sent gets its size. */
static void free_frame(void *data, void *hint)
{
    (void)hint;
    fl_free(data);
}

static enum fl_err send_frame(struct wrk_client *c, uint8_t *buf, size_t len,
                              const char *what, size_t *sent)
{
    zmq_msg_t m;
    if (zmq_msg_init_data(&m, buf, len, free_frame, NULL) != 0) {
        fl_free(buf);
        return FL_ERR_NOMEM;
    }
    for (;;) {
        if (zmq_msg_send(&m, c->sock, 0) >= 0) {
            *sent = len;
            return FL_OK;
        }
        if (errno == EINTR && !stop_requested)
            continue;
        const int e = errno;
        zmq_msg_close(&m);
        if (e == EAGAIN || e == EINTR)
            return FL_ERR_TIMEOUT;
        fl_log(FL_LOG_WARN, "cannot send %s to '%s': %s", what,
               c->cfg->connect, zmq_strerror(e));
        return FL_ERR_ZMQ;
    }
}

/* Credit{transfer, received, cancel} for a downlink transfer. */
static enum fl_err send_credit(struct wrk_client *c, uint64_t transfer,
                               uint32_t received, bool cancel)
{
    uint8_t *buf = NULL;
    size_t len = 0, sent = 0;
    enum fl_err rc = pb_xfer_pack_credit(transfer, received, cancel, &buf,
                                         &len);
    if (rc == FL_OK)
        rc = send_frame(c, buf, len, "credit", &sent);
    if (rc != FL_OK)
        fl_log(FL_LOG_WARN, "cannot send a credit for transfer %016" PRIx64
               ": %s", transfer, fl_strerror(rc));
    return rc;
}

/* Tell the coordinator to stop sending `transfer` (once per transfer). */
static void cancel_transfer(struct wrk_client *c, uint64_t transfer)
{
    if (transfer == 0 || transfer == c->rx_cancelled)
        return;
    c->rx_cancelled = transfer;
    const uint32_t received =
        c->rx.transfer == transfer ? c->rx.received : 0;
    if (send_credit(c, transfer, received, true) == FL_OK)
        fl_log(FL_LOG_DEBUG, "cancelled transfer %016" PRIx64, transfer);
}

/* ------------------------------------------------------ persistent state */

/* Write residual, velocity and pending update (wrk_state.h). A failure
 * costs only what a crash would: it is logged, work goes on. */
static void save_state(struct wrk_client *c)
{
    struct wrk_state st;
    if (c->upd == NULL)
        return;
    wrk_state_of_update(c->upd, &st);
    st.has_model_version = c->model.have;
    st.model_version = c->model.version;
    st.has_epoch = c->have_epoch;
    st.epoch = c->epoch;
    const enum fl_err rc = wrk_state_save(c->state_path, &st, &c->sbuf,
                                          &c->scap);
    if (rc != FL_OK)
        fl_log(FL_LOG_WARN, "cannot save the update state to '%s': %s%s%s",
               c->state_path, fl_strerror(rc), rc == FL_ERR_IO ? ": " : "",
               rc == FL_ERR_IO ? strerror(errno) : "");
}

/* ------------------------------------------------------------ update fate */

static void resolve(struct wrk_client *c, uint64_t round, bool used,
                    const char *why)
{
    size_t k = 0;
    /* Once its fate is known (above all when restored into the residual)
     * no more of the update may reach the coordinator. */
    if (wrk_xfer_tx_active(&c->tx) && c->tx.round == round)
        end_upload(c, false, " (its fate is known)");
    const enum wrk_fate fate = wrk_update_apply_fate(c->upd, round, used, &k);
    if (fate != WRK_FATE_NO_PENDING && fate != WRK_FATE_OTHER_ROUND &&
        c->snd.round == round)
        c->snd.valid = false;
    /* A used update only leaves the file with a stale pending update,
     * whose fate a restarted worker learns again (the coordinator keeps
     * it): no write, so a normal round costs one. */
    if (fate == WRK_FATE_RESTORED || fate == WRK_FATE_DISCARDED)
        save_state(c);
    switch (fate) {
    case WRK_FATE_USED:
        fl_log(FL_LOG_INFO, "update of round %" PRIu64 " was used", round);
        break;
    case WRK_FATE_RESTORED:
        fl_log(FL_LOG_INFO,
               "update of round %" PRIu64 " was not used: restored into the "
               "residual (k=%zu, residual norm %.4g)%s",
               round, k, wrk_update_residual_norm(c->upd), why);
        break;
    case WRK_FATE_DISCARDED:
        fl_log(FL_LOG_INFO,
               "update of round %" PRIu64 " was not used: dropped (error "
               "feedback off)%s",
               round, why);
        break;
    case WRK_FATE_NO_PENDING:
    case WRK_FATE_OTHER_ROUND:
        fl_log(FL_LOG_DEBUG, "fate of round %" PRIu64 " (%s): nothing pending",
               round, used ? "used" : "not used");
        break;
    }
}

/* Apply a verdict (Task/Bye last_update). task_round > 0 for a Task: a
 * pending update of an earlier round that the verdict does not name was
 * not used (the coordinator closed that round without it). */
static void apply_fate(struct wrk_client *c, uint32_t status, uint64_t round,
                       uint64_t task_round)
{
    uint64_t pr = 0;
    if (!wrk_update_pending(c->upd, &pr))
        return;
    if ((status == PB_UPDATE_USED || status == PB_UPDATE_NOT_USED) &&
        round == pr) {
        resolve(c, pr, status == PB_UPDATE_USED, "");
        return;
    }
    if (task_round == 0 || task_round <= pr)
        return;
    if (status == 0) {
        wrk_update_forget(c->upd);
        save_state(c);
        fl_log(FL_LOG_NOTICE,
               "task of round %" PRIu64 " says nothing about the update of "
               "round %" PRIu64 ": its fate is unknown, forgotten",
               task_round, pr);
        return;
    }
    resolve(c, pr, false, " (its round closed without it)");
}

/* ------------------------------------------------------------------ model */

static void free_model(struct wrk_client *c)
{
    /* the upload borrows its payload from the update state */
    wrk_xfer_tx_reset(&c->tx);
    c->snd.valid = false;
    mdl_trainer_destroy(&c->trainer);
    wrk_update_destroy(&c->upd);
    fl_free(c->model.w);
    fl_free(c->u);
    memset(&c->model, 0, sizeof(c->model));
    c->u = NULL;
}

static void model_name(const struct mdl_mlp_config *m, char *s, size_t cap)
{
    int n = snprintf(s, cap, "mlp %u", m->input);
    for (uint32_t i = 0; i < m->nhidden && n > 0 && (size_t)n < cap; i++)
        n += snprintf(s + n, cap - (size_t)n, "-%u", m->hidden[i]);
    if (n > 0 && (size_t)n < cap)
        snprintf(s + n, cap - (size_t)n, "-%u", m->classes);
}

/* The coordinator restarted (a new epoch) and resumed at current_round
 * from its checkpoint, or started over at 1. A pending update of that
 * round or later was not committed before the restart: not used. One of
 * an earlier round was decided before the checkpoint, which keeps the
 * devices' fates: the next Task says which. */
static void settle_after_restart(struct wrk_client *c, uint64_t current_round)
{
    uint64_t pr = 0;
    if (c->upd == NULL || !wrk_update_pending(c->upd, &pr))
        return;
    if (pr >= current_round) {
        resolve(c, pr, false, " (not committed before the coordinator "
                "restart)");
        return;
    }
    fl_log(FL_LOG_NOTICE, "the update of round %" PRIu64 " is pending: its "
           "fate comes with the next task", pr);
}

/* Continue from <state-dir>/ef-state.bin when it fits the Welcome's model
 * (the update state was just built empty). */
static void load_state(struct wrk_client *c, const struct pb_welcome *w)
{
    struct wrk_state st;
    uint64_t pr = 0;
    enum fl_err rc = wrk_state_load(c->state_path,
                                    c->cfg->max_message / sizeof(float), &st);
    if (rc == FL_ERR_NOT_FOUND) {
        fl_log(FL_LOG_INFO, "no saved update state in '%s': the residual "
               "starts at zero", c->state_path);
        return;
    }
    if (rc == FL_OK && st.dim != c->model.dim) {
        fl_log(FL_LOG_NOTICE, "discarding the saved update state '%s': "
               "dimension %" PRIu64 ", the coordinator's model has %zu",
               c->state_path, st.dim, c->model.dim);
        wrk_state_release(&st);
        return;
    }
    if (rc == FL_OK)
        rc = wrk_update_import(c->upd, &st.upd);
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "cannot use the saved update state '%s': %s: "
               "the residual starts at zero", c->state_path,
               fl_strerror(rc));
        wrk_state_release(&st);
        return;
    }
    const bool pending = wrk_update_pending(c->upd, &pr);
    fl_log(FL_LOG_INFO, "loaded error-feedback state from '%s': residual "
           "norm %.4g%s%s", c->state_path, wrk_update_residual_norm(c->upd),
           st.upd.velocity != NULL ? ", velocity" : "",
           pending ? ", an update pending" : "");
    if (pending)
        fl_log(FL_LOG_INFO, "the saved update of round %" PRIu64 " (k=%zu) "
               "awaits its fate", pr, st.upd.pending_k);
    if (pending && st.has_epoch && st.epoch != w->epoch)
        settle_after_restart(c, w->current_round);
    wrk_state_release(&st);
}

/* Build trainer, model and update state from a Welcome. */
static enum fl_err build_model(struct wrk_client *c,
                               const struct pb_welcome *w)
{
    struct mdl_mlp_config mcfg;
    struct wrk_span spans[MDL_MAX_TENSORS];
    char err[256] = "";
    char name[128];
    enum fl_err rc = wrk_model_config(w->layout, w->nlayout, w->dimension,
                                      c->cfg->max_message / sizeof(float),
                                      &mcfg, err, sizeof(err));
    if (rc == FL_OK &&
        (mcfg.input != c->data->dim || mcfg.classes != c->data->nclasses)) {
        snprintf(err, sizeof(err),
                 "model takes %u inputs and %u classes, the data has %u and "
                 "%u",
                 mcfg.input, mcfg.classes, c->data->dim, c->data->nclasses);
        rc = FL_ERR_DIMENSION;
    }
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot use the coordinator's model: %s", err);
        return rc;
    }
    free_model(c);
    rc = mdl_trainer_new_mlp(&mcfg, &c->trainer);
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot build the model: %s", fl_strerror(rc));
        return rc;
    }
    const struct mdl_layout *ml = mdl_trainer_layout(c->trainer);
    if (!wrk_model_layout_equal(ml, w->layout, w->nlayout, err,
                                sizeof(err))) {
        fl_log(FL_LOG_ERR, "cannot use the coordinator's model: %s", err);
        return FL_ERR_FORMAT;
    }
    c->model.dim = ml->dim;
    c->model.w = fl_calloc(ml->dim, sizeof(float));
    c->u = fl_calloc(ml->dim, sizeof(float));
    c->upd = wrk_update_new(ml->dim, spans, wrk_model_spans(ml, spans),
                            mix_seed(c->cfg->partition.seed, c->cfg->shard));
    if (c->model.w == NULL || c->u == NULL || c->upd == NULL) {
        fl_log(FL_LOG_ERR, "out of memory for a model of %zu floats",
               ml->dim);
        return FL_ERR_NOMEM;
    }
    model_name(&mcfg, name, sizeof(name));
    fl_log(FL_LOG_INFO, "model: %s, %zu parameters in %zu tensors", name,
           ml->dim, ml->ntensors);
    load_state(c, w);
    return FL_OK;
}

/* The chunk geometry of the Welcome (none: every payload inline). */
static void take_geometry(struct wrk_client *c, const struct pb_welcome *w)
{
    uint32_t bytes = 0, window = 0;
    if (w->chunk_bytes != 0 || w->chunk_window != 0) {
        if (pb_xfer_geometry_ok(w->chunk_bytes, w->chunk_window)) {
            bytes = w->chunk_bytes;
            window = w->chunk_window;
        } else {
            fl_log(FL_LOG_WARN, "the coordinator's chunks (%u bytes, window "
                   "%u) are out of range: no chunked transfers",
                   w->chunk_bytes, w->chunk_window);
        }
    }
    if (bytes == c->chunk_bytes && window == c->chunk_window)
        return;
    if (bytes != 0 && (uint64_t)bytes + CHUNK_FRAME_SLACK > c->cfg->max_message)
        fl_log(FL_LOG_WARN, "the coordinator's chunks of %u bytes do not fit "
               "--max-message %zu: its chunked models would be dropped",
               bytes, c->cfg->max_message);
    if (bytes != 0)
        fl_log(FL_LOG_INFO, "chunked transfers: chunks of %u bytes, window "
               "%u", bytes, window);
    c->chunk_bytes = bytes;
    c->chunk_window = window;
}

static void on_welcome(struct wrk_client *c, const struct pb_welcome *w)
{
    char err[256] = "";
    const bool restarted = c->have_epoch && w->epoch != c->epoch;

    if (c->welcomed && !restarted) {
        fl_log(FL_LOG_DEBUG, "welcome again (epoch %016" PRIx64 ")",
               w->epoch);
        return;
    }
    take_geometry(c, w);
    if (restarted) {
        fl_log(FL_LOG_NOTICE,
               "coordinator restarted (epoch %016" PRIx64 " -> %016" PRIx64
               ")",
               c->epoch, w->epoch);
        drop_download(c);
        end_upload(c, false, " (the coordinator restarted)");
        settle_after_restart(c, w->current_round);
        c->model.have = false;
    }
    if (c->trainer == NULL ||
        !wrk_model_layout_equal(mdl_trainer_layout(c->trainer), w->layout,
                                w->nlayout, err, sizeof(err))) {
        if (c->trainer != NULL)
            fl_log(FL_LOG_NOTICE, "the coordinator's model changed (%s)",
                   err);
        if (build_model(c, w) != FL_OK) {
            finish(c, WRK_EXIT_ERROR);
            return;
        }
    }
    c->welcomed = true;
    c->have_epoch = true;
    c->epoch = w->epoch;
    c->backoff_ms = HELLO_BACKOFF_MIN_MS;
    c->fast_retries = 0;
    if (w->device_id != NULL && strcmp(w->device_id, c->cfg->id) != 0)
        fl_log(FL_LOG_NOTICE, "the coordinator calls this device '%s'",
               w->device_id);
    fl_log(FL_LOG_INFO,
           "joined %s as '%s' (epoch %016" PRIx64 ", dimension %" PRIu64
           ", round %" PRIu64 ", %u samples)",
           c->cfg->connect, c->cfg->id, w->epoch, w->dimension,
           w->current_round, c->dinfo.shard_n);
    c->ever_welcomed = true;
}

/* ------------------------------------------------------------------- task */

static enum fl_err train_config(const struct wrk_client *c,
                                const struct pb_train_cfg *t,
                                struct mdl_train_config *tc)
{
    memset(tc, 0, sizeof(*tc));
    if (!isfinite(t->lr) || !(t->lr > 0.0f) || !(t->momentum >= 0.0f) ||
        !(t->momentum < 1.0f))
        return FL_ERR_INVALID_ARG;
    tc->local_epochs = t->local_epochs;
    tc->local_steps = t->local_steps;
    if (tc->local_epochs == 0 && tc->local_steps == 0)
        tc->local_epochs = 1;
    tc->batch_size = t->batch_size != 0 ? t->batch_size : DEFAULT_BATCH;
    tc->lr = t->lr;
    tc->momentum = t->momentum;
    tc->seed = mix_seed(t->seed, c->cfg->shard);
    return FL_OK;
}

static void apply_overrides(struct wrk_client *c, bool allowed,
                            struct wrk_settings *s)
{
    const struct wrk_overrides *o = &c->cfg->overrides;
    const bool any =
        o->has_density || o->has_topk || o->has_values || o->has_codec;
    if (!any)
        return;
    if (!allowed) {
        if (!c->overrides_noted)
            fl_log(FL_LOG_NOTICE, "the coordinator does not allow local "
                                  "overrides: --density/--topk/--values/"
                                  "--codec are ignored");
        c->overrides_noted = true;
        return;
    }
    if (!c->overrides_noted)
        fl_log(FL_LOG_INFO, "applying local compression overrides");
    c->overrides_noted = true;
    if (o->has_density)
        s->density = o->density;
    if (o->has_topk)
        s->topk = o->topk;
    if (o->has_values)
        s->params.values = o->values;
    if (o->has_codec) {
        s->params.codec = o->codec;
        if (o->level != 0)
            s->params.level = o->level;
    }
}

static enum fl_err task_settings(struct wrk_client *c, const struct pb_task *t,
                                 struct wrk_settings *s)
{
    const struct pb_compress_cfg *cc = &t->compress;
    memset(s, 0, sizeof(*s));
    s->density = cc->density;
    s->topk = cc->topk != 0 ? (enum cmp_topk_method)cc->topk : CMP_TOPK_EXACT;
    s->params.index_coding = CMP_INDEX_AUTO;
    s->params.values =
        cc->values != 0 ? (enum cmp_value_coding)cc->values : CMP_VALUE_FP32;
    s->params.codec =
        cc->codec != 0 ? (enum cmp_codec)cc->codec : CMP_CODEC_NONE;
    s->params.level = cc->level != 0 ? cc->level : 3;
    s->error_feedback = cc->error_feedback;
    s->momentum = 0.0f;
    if (cc->momentum_correction) {
        /* the coordinator's factor; from one that sends none (or a factor
         * out of range), the local momentum */
        const float f = cc->momentum_factor;
        const float m = t->train.momentum;
        s->momentum = (f > 0.0f && f < 1.0f)   ? f
                      : (m > 0.0f && m < 1.0f) ? m
                                               : DEFAULT_MC_MOMENTUM;
        if (s->momentum != c->mc_noted)
            fl_log(FL_LOG_INFO, "momentum correction with factor %g (%s)",
                   (double)s->momentum,
                   f > 0.0f && f < 1.0f ? "the coordinator's"
                                        : "no factor sent: the momentum");
        c->mc_noted = s->momentum;
    }
    s->clip_norm = cc->clip_norm;
    s->per_tensor = cc->per_tensor;
    s->max_bytes = cc->max_update_bytes;
    apply_overrides(c, t->allow_overrides, s);
    s->params.level = FL_MAX(CMP_ZSTD_LEVEL_MIN,
                             FL_MIN(CMP_ZSTD_LEVEL_MAX, s->params.level));
    return wrk_settings_check(s);
}

static void settings_to_pb(const struct wrk_settings *s,
                           struct pb_compress_cfg *p)
{
    memset(p, 0, sizeof(*p));
    p->density = s->density;
    p->topk = (uint32_t)s->topk;
    p->values = (uint32_t)s->params.values;
    p->codec = (uint32_t)s->params.codec;
    p->level = s->params.level;
    p->error_feedback = s->error_feedback;
    p->momentum_correction = s->momentum > 0.0f;
    p->momentum_factor = s->momentum;
    p->clip_norm = s->clip_norm;
    p->per_tensor = s->per_tensor;
    p->max_update_bytes = s->max_bytes;
}

/* --test-delay-update: hold the update as a slow device would. */
static void test_hold(const struct wrk_client *c, uint64_t round)
{
    if (!c->cfg->has_test_delay || c->cfg->test_delay_round != round)
        return;
    fl_log(FL_LOG_NOTICE, "test: holding the update of round %" PRIu64
           " for %u ms", round, c->cfg->test_delay_ms);
    const uint64_t end =
        fl_now_ns() + (uint64_t)c->cfg->test_delay_ms * NS_PER_MS;
    while (!stop_requested) {
        const uint64_t now = fl_now_ns();
        if (now >= end)
            break;
        const uint64_t left = FL_MIN(end - now, 50 * NS_PER_MS);
        const struct timespec ts = {0, (long)left};
        nanosleep(&ts, NULL);
    }
}

/* ------------------------------------------------------- cost per round */

/* The round's cost is complete once its update is handed over, or its
 * sending ended otherwise: one log line, one --stats-csv row. */
static void report_cost(struct wrk_client *c, uint64_t end_ns)
{
    struct sending *sd = &c->snd;
    struct wrk_round_cost cost;
    char line[256];
    if (!sd->cost_open)
        return;
    sd->cost_open = false;
    memset(&cost, 0, sizeof(cost));
    cost.round = sd->round;
    cost.load_ns = sd->rw.load_ns;
    cost.train_ns = sd->rw.train_ns;
    cost.encode_ns = sd->rw.encode_ns;
    cost.send_ns = end_ns > sd->t0_ns ? end_ns - sd->t0_ns : 0;
    cost.update_bytes = sd->bytes;
    cost.chunks = sd->chunks;
    cost.peak_rss_kb = wrk_stats_peak_rss_kb();
    wrk_stats_format(&cost, line, sizeof(line));
    fl_log(FL_LOG_INFO, "round %" PRIu64 " cost: %s", sd->round, line);
    if (c->stats != NULL && wrk_stats_write(c->stats, &cost) != FL_OK) {
        fl_log(FL_LOG_WARN, "cannot write to '%s': %s: no more rows",
               c->cfg->stats_csv, strerror(errno));
        wrk_stats_close(&c->stats);
    }
}

/* ----------------------------------------------------------------- update */

/* Keep the frame just sent (still in c->buf) so that a Task re-sent for
 * the same round (a retry attempt, or an update the coordinator dropped
 * under its rate limit) is answered with the same update instead of being
 * ignored: training again would change the residual twice. */
static void keep_last_update(struct wrk_client *c, uint64_t round,
                             size_t len)
{
    if (len > c->last_update_cap) {
        uint8_t *nb = fl_realloc(c->last_update, len);
        if (nb == NULL) {
            c->last_update_len = 0;
            return;
        }
        c->last_update = nb;
        c->last_update_cap = len;
    }
    memcpy(c->last_update, c->buf, len);
    c->last_update_len = len;
    c->last_update_round = round;
}

/* Send the kept update of `round` again; false when there is none. */
static bool resend_last_update(struct wrk_client *c, uint64_t round)
{
    if (c->last_update_len == 0 || c->last_update_round != round)
        return false;
    for (;;) {
        const int n = zmq_send(c->sock, c->last_update, c->last_update_len, 0);
        if (n >= 0) {
            fl_log(FL_LOG_INFO, "sent update round %" PRIu64 " again: %d "
                   "bytes (task re-sent)", round, n);
            return true;
        }
        if (errno == EINTR && !stop_requested)
            continue;
        fl_log(FL_LOG_WARN, "cannot re-send the update of round %" PRIu64
               ": %s", round, zmq_strerror(errno));
        return false;
    }
}

/* The Update of c->snd. transfer != 0 makes it an announcement: no
 * payload, its size and the transfer id instead. */
static void update_env(const struct wrk_client *c, uint64_t transfer,
                       struct pb_envelope *env)
{
    const struct sending *sd = &c->snd;
    const struct round_work *rw = &sd->rw;
    memset(env, 0, sizeof(*env));
    env->version = PB_PROTOCOL_VERSION;
    env->body = PB_BODY_UPDATE;
    env->update.round = sd->round;
    env->update.n_samples = c->dinfo.shard_n;
    wrk_pb_from_meta(&rw->enc.meta, rw->enc.payload, rw->enc.payload_len,
                     &env->update.delta);
    if (transfer != 0) {
        env->update.delta.payload = NULL;
        env->update.delta.payload_len = 0;
        env->update.delta.payload_transfer = transfer;
        env->update.delta.payload_bytes = rw->enc.payload_len;
    }
    env->update.stats.loss = (float)rw->tr.loss;
    env->update.stats.train_ms = ns_to_ms32(rw->train_ns);
    env->update.stats.encode_ms = ns_to_ms32(rw->encode_ns);
    env->update.stats.load_ms = ns_to_ms32(rw->load_ns);
    env->update.stats.peak_rss_kb = wrk_stats_peak_rss_kb();
    env->update.stats.steps = rw->tr.steps;
    env->update.has_used = true;
    settings_to_pb(&rw->s, &env->update.used);
    env->update.used.max_update_bytes = sd->max_update_bytes;
}

/* "sent update round R: B bytes (...)": B is every frame handed to
 * ZeroMQ for the update (the Update, and its chunks), the bytes the
 * coordinator's report counts for it. */
static void log_sent(const struct wrk_client *c)
{
    const struct sending *sd = &c->snd;
    const struct round_work *rw = &sd->rw;
    char chunks[48] = "";
    if (sd->chunked)
        snprintf(chunks, sizeof(chunks), " in %u chunks", sd->chunks);
    if (sd->again) {
        fl_log(FL_LOG_INFO, "sent update round %" PRIu64 " again: %" PRIu64
               " bytes (task re-sent, payload%s)", sd->round, sd->bytes,
               chunks);
        return;
    }
    fl_log(FL_LOG_INFO,
           "sent update round %" PRIu64 ": %" PRIu64 " bytes (k=%zu of %zu, "
           "%s, %s, payload %zu%s, loss %.4f, %u steps, train %u ms, encode "
           "%u ms%s)",
           sd->round, sd->bytes, rw->enc.k, c->model.dim,
           cmp_value_coding_name(rw->s.params.values),
           cmp_codec_name(rw->s.params.codec), rw->enc.payload_len, chunks,
           rw->tr.loss, rw->tr.steps, ns_to_ms32(rw->train_ns),
           ns_to_ms32(rw->encode_ns), rw->enc.clipped ? ", clipped" : "");
    const uint64_t took = ms_since(rw->t0_ns);
    if (sd->timeout_ms != 0 && took > sd->timeout_ms)
        fl_log(FL_LOG_NOTICE,
               "round %" PRIu64 " took %" PRIu64 " ms, over the %u ms "
               "allowed",
               sd->round, took, sd->timeout_ms);
}

/* The update in one Update frame. */
static void send_inline(struct wrk_client *c)
{
    struct sending *sd = &c->snd;
    struct pb_envelope env;
    size_t sent = 0;
    update_env(c, 0, &env);
    const enum fl_err rc = send_env(c, &env, 0, &sent);
    const uint64_t end = fl_now_ns();
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "cannot send the update of round %" PRIu64 ": %s",
               sd->round, fl_strerror(rc));
        sd->valid = false;
        sd->cost_open = false;
        resolve(c, sd->round, false, " (never sent)");
        return;
    }
    keep_last_update(c, sd->round, sent);
    sd->t0_ns = c->send_start_ns;
    sd->bytes = sent;
    log_sent(c);
    report_cost(c, end);
}

/* Stop the upload in progress. With `restore` the coordinator has not got
 * the whole payload and will not (a send failed, the deadline passed): the
 * update was not used and goes back into the residual. Otherwise (Credit
 * cancel, Reject, a Task of another round, a restart) its fate comes as
 * usual, from Reject, Task or Bye. */
static void end_upload(struct wrk_client *c, bool restore, const char *why)
{
    if (!wrk_xfer_tx_active(&c->tx))
        return;
    const uint64_t round = c->tx.round;
    fl_log(FL_LOG_NOTICE, "upload of the update of round %" PRIu64 " "
           "stopped after %u of %u chunks%s", round, c->tx.next, c->tx.total,
           why);
    wrk_xfer_tx_reset(&c->tx);
    report_cost(c, fl_now_ns());
    if (restore) {
        c->snd.valid = false;
        resolve(c, round, false, why);
    }
}

/* Hand over every chunk the coordinator's credit allows; the upload is
 * complete when the last one is. */
static void pump_upload(struct wrk_client *c)
{
    struct sending *sd = &c->snd;
    uint32_t seq = 0;
    const uint8_t *data = NULL;
    size_t len = 0;
    while (wrk_xfer_tx_next(&c->tx, &seq, &data, &len)) {
        uint8_t *buf = NULL;
        size_t blen = 0, sent = 0;
        enum fl_err rc = pb_xfer_pack_chunk(c->tx.transfer, seq, c->tx.total,
                                            data, len, &buf, &blen);
        if (rc == FL_OK)
            rc = send_frame(c, buf, blen, "a chunk", &sent);
        if (rc != FL_OK) {
            fl_log(FL_LOG_WARN, "cannot send chunk %u of the update of round "
                   "%" PRIu64 ": %s", seq, sd->round, fl_strerror(rc));
            end_upload(c, true, " (a chunk could not be sent)");
            return;
        }
        wrk_xfer_tx_sent(&c->tx);
        sd->bytes += sent;
        sd->chunks++;
    }
    if (wrk_xfer_tx_complete(&c->tx)) {
        const uint64_t end = fl_now_ns();
        wrk_xfer_tx_reset(&c->tx);
        log_sent(c);
        report_cost(c, end);
    }
}

/* Announce the update under a fresh transfer id; the chunks follow the
 * coordinator's first Credit (on_credit). Also the answer to a re-sent
 * Task: the whole upload starts over. */
static void start_upload(struct wrk_client *c)
{
    struct sending *sd = &c->snd;
    struct pb_envelope env;
    size_t sent = 0;
    const uint64_t id = wrk_xfer_id_next(&c->tx_ids);
    enum fl_err rc = wrk_xfer_tx_begin(
        &c->tx, id, sd->round, sd->rw.enc.payload, sd->rw.enc.payload_len,
        c->chunk_bytes, c->chunk_window, sd->deadline_ns);
    if (rc == FL_OK) {
        update_env(c, id, &env);
        rc = send_env(c, &env, 0, &sent);
    }
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "cannot announce the update of round %" PRIu64
               ": %s", sd->round, fl_strerror(rc));
        wrk_xfer_tx_reset(&c->tx);
        sd->valid = false;
        sd->cost_open = false;
        resolve(c, sd->round, false, " (never sent)");
        return;
    }
    if (!sd->again)
        sd->t0_ns = c->send_start_ns;
    sd->bytes = sent;
    sd->chunks = 0;
    c->last_update_len = 0; /* a re-send starts over (resend_update) */
    fl_log(FL_LOG_INFO, "announced update round %" PRIu64 ": payload %zu "
           "bytes in %u chunks of %u (transfer %016" PRIx64 "), waiting for "
           "credit", sd->round, sd->rw.enc.payload_len, c->tx.total,
           c->chunk_bytes, id);
}

/* Answer a re-sent Task of the round whose update is pending with that
 * update; false when the worker no longer has it (restarted since). */
static bool resend_update(struct wrk_client *c, const struct pb_task *t,
                          uint64_t t0_ns)
{
    struct sending *sd = &c->snd;
    if (!(sd->valid && sd->chunked && sd->round == t->round))
        return resend_last_update(c, t->round);
    sd->again = true;
    sd->timeout_ms = t->timeout_ms;
    sd->deadline_ns =
        t->timeout_ms != 0 ? t0_ns + (uint64_t)t->timeout_ms * NS_PER_MS : 0;
    start_upload(c);
    return true;
}

static void on_credit(struct wrk_client *c, const struct pb_credit *cr)
{
    const uint64_t round = c->tx.round;
    const uint32_t sent = c->tx.next;
    switch (wrk_xfer_tx_credit(&c->tx, cr)) {
    case WRK_CREDIT_OK:
        pump_upload(c);
        break;
    case WRK_CREDIT_CANCEL:
        fl_log(FL_LOG_NOTICE, "the coordinator cancelled the upload of the "
               "update of round %" PRIu64 " after %u chunks: its fate comes "
               "with the next task", round, sent);
        report_cost(c, fl_now_ns());
        break;
    case WRK_CREDIT_BAD:
        fl_log(FL_LOG_WARN, "credit for transfer %016" PRIx64 " counts %u "
               "chunks received, only %u were sent: ignored", cr->transfer,
               cr->received, sent);
        break;
    case WRK_CREDIT_OTHER:
        fl_log(FL_LOG_DEBUG, "credit for transfer %016" PRIx64 " (%u%s), "
               "which is not being sent: ignored", cr->transfer,
               cr->received, cr->cancel ? ", cancel" : "");
        break;
    }
}

/* The update is encoded and saved: send it, inline or in chunks. */
static void send_update(struct wrk_client *c, const struct pb_task *t,
                        const struct round_work *rw)
{
    struct sending *sd = &c->snd;
    memset(sd, 0, sizeof(*sd));
    sd->valid = true;
    sd->round = t->round;
    sd->max_update_bytes = t->compress.max_update_bytes;
    sd->timeout_ms = t->timeout_ms;
    sd->deadline_ns = t->timeout_ms != 0
                          ? rw->t0_ns + (uint64_t)t->timeout_ms * NS_PER_MS
                          : 0;
    sd->rw = *rw;
    sd->cost_open = true;
    sd->chunked = wrk_xfer_chunked(rw->enc.payload_len, c->chunk_bytes);
    if (sd->chunked)
        start_upload(c);
    else
        send_inline(c);
}

/* The Task's max_update_bytes caps the whole Update frame (the bytes the
 * coordinator counts), but wrk_update_encode() caps the payload: take off
 * the envelope around it. The overhead is measured on a worst-case
 * envelope (every varint at its widest, a payload of the full cap), so a
 * payload within the returned budget always gives a frame within the cap.
 * 0 = no cap; at least 1 when capped. */
static uint64_t payload_budget(const struct wrk_client *c,
                               const struct pb_task *t,
                               const struct wrk_settings *s)
{
    static const uint8_t dummy = 0;
    const uint64_t cap = t->compress.max_update_bytes;
    struct pb_envelope env;
    if (cap == 0)
        return 0;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_UPDATE;
    env.update.round = t->round;
    env.update.n_samples = c->dinfo.shard_n;
    env.update.delta.dimension = c->model.dim;
    env.update.delta.k = c->model.dim;
    env.update.delta.index_coding = UINT32_MAX;
    env.update.delta.value_coding = UINT32_MAX;
    env.update.delta.codec = UINT32_MAX;
    env.update.delta.raw_size = UINT64_MAX;
    env.update.delta.checksum = UINT32_MAX;
    env.update.delta.payload = &dummy;
    env.update.delta.payload_len = (size_t)cap;
    env.update.stats.loss = 1.0f;
    env.update.stats.train_ms = UINT32_MAX;
    env.update.stats.encode_ms = UINT32_MAX;
    env.update.stats.load_ms = UINT32_MAX;
    env.update.stats.peak_rss_kb = UINT64_MAX;
    env.update.stats.steps = UINT32_MAX;
    env.update.has_used = true;
    settings_to_pb(s, &env.update.used);
    env.update.used.max_update_bytes = cap;
    const size_t size = pb_packed_size(&env);
    if (size <= cap)
        return cap;     /* not packable (0): send will fail anyway */
    return size - cap < cap ? cap - (size - cap) : 1;
}

/* Model in place and fates applied: train, encode, send. */
static void do_round(struct wrk_client *c, const struct pb_task *t,
                     struct round_work *rw)
{
    struct mdl_train_config tc;
    uint64_t t1 = 0;
    enum fl_err rc = task_settings(c, t, &rw->s);
    if (rc == FL_OK)
        rc = train_config(c, &t->train, &tc);
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "task of round %" PRIu64 " has unusable "
               "settings (%s): skipped", t->round, fl_strerror(rc));
        return;
    }
    rw->s.max_bytes = payload_budget(c, t, &rw->s);
    t1 = fl_now_ns();
    rc = mdl_trainer_train(c->trainer, c->model.w, c->data, &tc, c->u,
                           &rw->tr);
    rw->train_ns = fl_now_ns() - t1;
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "training for round %" PRIu64 " failed: %s",
               t->round, fl_strerror(rc));
        return;
    }
    /* The encode replaces the payload an upload borrows (on_task has
     * ended any upload of another round; this only guards odd verdicts) */
    end_upload(c, false, " (a new update replaces it)");
    c->snd.valid = false;
    t1 = fl_now_ns();
    rc = wrk_update_encode(c->upd, t->round, c->u, &rw->s, &rw->enc);
    rw->encode_ns = fl_now_ns() - t1;
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "cannot encode the update of round %" PRIu64
               ": %s", t->round, fl_strerror(rc));
        return;
    }
    test_hold(c, t->round);
    if (stop_requested) {
        resolve(c, t->round, false, " (never sent: stopping)");
        return;
    }
    /* Saved before it goes out: if this process dies now, the restarted
     * one still holds the update and learns its fate like this one would
     * have. */
    save_state(c);
    send_update(c, t, rw);
}

/* The Task's model is here (inline, or reassembled from its chunks at
 * t0_ns): apply it, then train and send. */
static void task_with_model(struct wrk_client *c, const struct pb_task *t,
                            uint64_t t0_ns)
{
    struct round_work rw;
    memset(&rw, 0, sizeof(rw));
    rw.t0_ns = t0_ns;
    const uint64_t t1 = fl_now_ns();
    /* a lossy downlink sends a sparse delta; `model` is then a placeholder */
    const enum fl_err rc =
        t->has_model_delta
            ? wrk_model_apply_delta(c->mctx, &c->model, &t->model_delta,
                                    t->model_delta_base, t->model_version)
            : wrk_model_apply(c->mctx, &c->model, &t->model,
                              t->model_version);
    rw.load_ns = fl_now_ns() - t1;
    if (rc == FL_ERR_NOT_FOUND) {
        fl_log(FL_LOG_NOTICE, "task of round %" PRIu64 " is a delta from "
               "model version %" PRIu64 ", which this device does not hold: "
               "asking for the full model", t->round,
               t->has_model_delta ? t->model_delta_base
                                  : t->model.base_version);
        hello_again(c);
        return;
    }
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "cannot decode the model of round %" PRIu64
               ": %s: asking for the full model", t->round, fl_strerror(rc));
        c->model.have = false;
        hello_again(c);
        return;
    }
    do_round(c, t, &rw);
}

/* --------------------------------------------------------------- download */

/* Forget the download in progress (and the Task it belongs to). */
static void drop_download(struct wrk_client *c)
{
    pb_xfer_rx_reset(&c->rx);
    pb_msg_destroy(&c->rx_msg);
    c->rx_task = NULL;
}

/* A Task whose model comes in chunks: keep the Task (taking *msgp) and get
 * ready for the chunks. The buffer is bounded by what a valid encoding of
 * the model can be (wrk_xfer_max_payload). A Task the worker cannot take
 * is cancelled and asked for again with a Hello. */
static void begin_download(struct wrk_client *c, struct pb_msg **msgp,
                           const struct pb_task *t,
                           const struct pb_tensor *mt)
{
    uint64_t max = 0;
    enum fl_err rc = FL_ERR_BAD_STATE; /* no geometry in the Welcome */
    if (c->chunk_bytes != 0)
        rc = wrk_xfer_max_payload(c->model.dim, mt, !t->has_model_delta,
                                  &max);
    if (rc == FL_OK)
        rc = pb_xfer_rx_begin(&c->rx, mt->payload_transfer, mt->payload_bytes,
                              c->chunk_bytes, max);
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "cannot take the model of round %" PRIu64 " in "
               "chunks (transfer %016" PRIx64 ", %" PRIu64 " bytes, at most "
               "%" PRIu64 "): %s: asking for the task again", t->round,
               mt->payload_transfer, mt->payload_bytes, max,
               fl_strerror(rc));
        cancel_transfer(c, mt->payload_transfer);
        hello_again(c);
        return;
    }
    c->rx_msg = *msgp;
    *msgp = NULL;
    c->rx_task = t;
    c->rx_start_ns = fl_now_ns();
    if (c->rx_cancelled == mt->payload_transfer)
        c->rx_cancelled = 0;
    fl_log(FL_LOG_DEBUG, "receiving the model of round %" PRIu64 ": %" PRIu64
           " bytes in %u chunks (transfer %016" PRIx64 ")", t->round,
           mt->payload_bytes, c->rx.total, mt->payload_transfer);
}

/* Every chunk is in: the Task goes on as an inline one, from now. */
static void finish_download(struct wrk_client *c)
{
    struct pb_task t = *c->rx_task;
    struct pb_tensor *mt = t.has_model_delta ? &t.model_delta : &t.model;
    struct pb_msg *msg = c->rx_msg;
    const uint32_t chunks = c->rx.total;
    uint8_t *buf = NULL;
    size_t len = 0;
    c->rx_msg = NULL;
    c->rx_task = NULL;
    if (pb_xfer_rx_take(&c->rx, &buf, &len) != FL_OK) {
        pb_msg_destroy(&msg); /* unreachable: called when complete */
        return;
    }
    mt->payload = buf;
    mt->payload_len = len;
    mt->payload_transfer = 0;
    mt->payload_bytes = 0;
    fl_log(FL_LOG_INFO, "model of round %" PRIu64 " received: %zu bytes in "
           "%u chunks in %" PRIu64 " ms", t.round, len, chunks,
           ms_since(c->rx_start_ns));
    task_with_model(c, &t, fl_now_ns());
    fl_free(buf);
    pb_msg_destroy(&msg);
}

/* A chunk: the next one of the download in progress gets a Credit; one of
 * another transfer (left over from a replaced Task) is cancelled; a bad
 * one ends the download, which is cancelled and asked for again. */
static void on_chunk(struct wrk_client *c, const struct pb_chunk *ch)
{
    bool complete = false;
    if (!pb_xfer_rx_active(&c->rx) || ch->transfer != c->rx.transfer) {
        if (ch->transfer != c->rx_cancelled)
            fl_log(FL_LOG_NOTICE, "chunk %u of transfer %016" PRIx64 ", "
                   "which this device is not receiving: cancelling it",
                   ch->seq, ch->transfer);
        cancel_transfer(c, ch->transfer);
        return;
    }
    const enum fl_err rc = pb_xfer_rx_add(&c->rx, ch, &complete);
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "bad chunk of the model of round %" PRIu64 " "
               "(seq %u of %u, %zu bytes; expected seq %u of %u): %s: "
               "dropping the transfer, asking for the task again",
               c->rx_task->round, ch->seq, ch->total, ch->len,
               c->rx.received, c->rx.total, fl_strerror(rc));
        cancel_transfer(c, c->rx.transfer);
        drop_download(c);
        hello_again(c);
        return;
    }
    /* before the (long) training, so that the coordinator can go on */
    send_credit(c, c->rx.transfer, c->rx.received, false);
    if (complete)
        finish_download(c);
}

/* ------------------------------------------------------------------- task */

static void on_task(struct wrk_client *c, struct pb_msg **msgp,
                    const struct pb_task *t)
{
    const uint64_t t0 = fl_now_ns();
    const struct pb_tensor *mt = t->has_model_delta ? &t->model_delta
                                                    : &t->model;
    const uint64_t xfer = mt->payload_transfer;
    char chunked[64] = "";
    uint64_t pr = 0;

    if (xfer != 0)
        snprintf(chunked, sizeof(chunked), ", model of %" PRIu64 " bytes "
                 "in chunks", mt->payload_bytes);
    fl_log(FL_LOG_INFO,
           "task received: round %" PRIu64 " (model version %" PRIu64
           "%s, timeout %u ms%s)",
           t->round, t->model_version,
           t->has_model_delta           ? ", sparse delta"
           : t->model.has_base_version ? ", delta"
                                       : "",
           t->timeout_ms, chunked);
    if (c->cfg->has_test_exit && c->cfg->test_exit_round == t->round) {
        fl_log(FL_LOG_WARN, "test: crashing at round %" PRIu64, t->round);
        _exit(1);
    }
    /* a new Task replaces a download in progress */
    if (pb_xfer_rx_active(&c->rx))
        fl_log(FL_LOG_NOTICE, "the model of round %" PRIu64 " was not "
               "complete (%u of %u chunks): replaced by the new task",
               c->rx_task->round, c->rx.received, c->rx.total);
    drop_download(c);
    if (!c->have_epoch || c->trainer == NULL) {
        fl_log(FL_LOG_NOTICE, "task of round %" PRIu64 " before any "
               "welcome: saying hello", t->round);
        cancel_transfer(c, xfer);
        hello_again(c);
        return;
    }
    if (t->epoch != c->epoch) {
        fl_log(FL_LOG_NOTICE,
               "task of round %" PRIu64 " from coordinator epoch %016" PRIx64
               ", joined %016" PRIx64 ": saying hello again",
               t->round, t->epoch, c->epoch);
        cancel_transfer(c, xfer);
        hello_again(c);
        return;
    }
    if (wrk_xfer_tx_active(&c->tx) && c->tx.round != t->round) {
        char why[64];
        snprintf(why, sizeof(why), " (a task of round %" PRIu64 " came)",
                 t->round);
        end_upload(c, false, why);
    }
    apply_fate(c, t->last_update, t->last_update_round, t->round);
    if (wrk_update_pending(c->upd, &pr) && pr == t->round &&
        resend_update(c, t, t0)) {
        cancel_transfer(c, xfer); /* the model is not needed */
        return;
    }
    if (wrk_update_pending(c->upd, &pr) && pr >= t->round) {
        /* The coordinator re-sends a Task to a cohort member that says
         * Hello before it has reported (after a reconnect). Our update of
         * that round was sent: it either arrives (used) or was lost with
         * the old connection (the next verdict says not used and it is
         * restored). Training again would only make a duplicate. */
        fl_log(FL_LOG_NOTICE, "task of round %" PRIu64 " again, but the "
               "update of round %" PRIu64 " was already sent: ignored",
               t->round, pr);
        cancel_transfer(c, xfer);
        return;
    }
    if (xfer != 0) {
        begin_download(c, msgp, t, mt);
        return;
    }
    task_with_model(c, t, t0);
}

/* ---------------------------------------------------------- reject / bye */

static void on_reject(struct wrk_client *c, const struct pb_reject *r)
{
    const enum fl_err code = (enum fl_err)r->code;
    char rnd[48] = "";
    if (r->has_round)
        snprintf(rnd, sizeof(rnd), " (round %" PRIu64 ")", r->round);
    fl_log(FL_LOG_NOTICE, "coordinator rejected a message%s: %s: %s", rnd,
           fl_err_name(code), r->reason != NULL ? r->reason : "");
    if (r->has_round && wrk_xfer_tx_active(&c->tx) &&
        c->tx.round == r->round)
        end_upload(c, false, " (rejected)");
    if (r->has_round && c->upd != NULL)
        resolve(c, r->round, false, " (rejected)");
    if (code == FL_ERR_UNKNOWN_DEVICE) {
        /* Hello at once only if welcomed: messages queued before a
         * reconnection are refused one by one, and a Hello for each would
         * join as often, each join bringing the open Task again and each
         * Task a duplicate Update. Not welcomed, a Hello is already on
         * its retry schedule; the coordinator being there, the next one
         * comes within the shortest backoff. */
        if (c->welcomed)
            hello_again(c);
        else
            c->hello_due_ns = FL_MIN(c->hello_due_ns,
                                     fl_now_ns() +
                                         HELLO_BACKOFF_MIN_MS * NS_PER_MS);
        return;
    }
    if (!c->ever_welcomed &&
        (code == FL_ERR_VERSION || code == FL_ERR_SAMPLES ||
         code == FL_ERR_INVALID_ARG || code == FL_ERR_FORMAT)) {
        fl_log(FL_LOG_ERR, "the coordinator refuses this device: %s",
               fl_strerror(code));
        finish(c, WRK_EXIT_ERROR);
    }
}

static void on_bye(struct wrk_client *c, const struct pb_bye *b)
{
    uint64_t pr = 0;
    drop_download(c);
    end_upload(c, false, " (the coordinator said bye)");
    if (c->upd != NULL) {
        apply_fate(c, b->last_update, b->last_update_round, 0);
        if (wrk_update_pending(c->upd, &pr))
            fl_log(FL_LOG_NOTICE, "fate of the update of round %" PRIu64
                   " is unknown", pr);
    }
    fl_log(FL_LOG_INFO, "coordinator said bye%s%s: leaving",
           b->reason != NULL ? ": " : "", b->reason != NULL ? b->reason : "");
    finish(c, WRK_EXIT_OK);
}

/* --------------------------------------------------------------- receive */

static void on_frame(struct wrk_client *c, const uint8_t *data, size_t len)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    uint32_t version = 0;
    char err[256] = "";
    const enum fl_err rc =
        pb_unpack(data, len, &c->lim, &msg, &env, &version, err, sizeof(err));
    if (rc == FL_ERR_VERSION) {
        fl_log(FL_LOG_ERR, "the coordinator speaks protocol version %u, this "
               "worker %d", version, PB_PROTOCOL_VERSION);
        finish(c, WRK_EXIT_ERROR);
        return;
    }
    if (rc != FL_OK) {
        fl_log(FL_LOG_WARN, "cannot parse a message of %zu bytes from the "
               "coordinator: %s (%s)", len, fl_strerror(rc), err);
        return;
    }
    switch (env->body) {
    case PB_BODY_WELCOME:
        on_welcome(c, &env->welcome);
        break;
    case PB_BODY_TASK:
        on_task(c, &msg, &env->task); /* may keep msg (chunked model) */
        break;
    case PB_BODY_CHUNK:
        on_chunk(c, &env->chunk);
        break;
    case PB_BODY_CREDIT:
        on_credit(c, &env->credit);
        break;
    case PB_BODY_REJECT:
        on_reject(c, &env->reject);
        break;
    case PB_BODY_BYE:
        on_bye(c, &env->bye);
        break;
    case PB_BODY_NONE:
    case PB_BODY_HELLO:
    case PB_BODY_UPDATE:
    default:
        fl_log(FL_LOG_WARN, "unexpected %s from the coordinator: ignored",
               pb_body_name(env->body));
        break;
    }
    pb_msg_destroy(&msg);
}

static void drain_socket(struct wrk_client *c)
{
    while (!c->done && !stop_requested) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) < 0) {
            const int e = errno;
            zmq_msg_close(&m);
            if (e != EAGAIN && e != EINTR)
                fl_log(FL_LOG_WARN, "cannot receive: %s", zmq_strerror(e));
            return;
        }
        if (zmq_msg_more(&m)) {
            /* Protocol: one frame per message. Drop the rest. */
            size_t parts = 1;
            while (zmq_msg_more(&m)) {
                zmq_msg_close(&m);
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, c->sock, 0) < 0)
                    break;
                parts++;
            }
            zmq_msg_close(&m);
            fl_log(FL_LOG_WARN, "dropped a message of %zu frames from the "
                   "coordinator", parts);
            continue;
        }
        on_frame(c, zmq_msg_data(&m), zmq_msg_size(&m));
        zmq_msg_close(&m);
    }
}

/* A handshake that failed. libzmq gives up on a connection after a
 * protocol error (a key the coordinator refuses: AUTH; a mechanism
 * mismatch or bad crypto: PROTOCOL), so the worker cannot get in and
 * stops with exit 1 and a clear reason. Other failures (NO_DETAIL: the
 * peer went away mid-handshake) are retried by libzmq: logged once. */
static void handshake_failed(struct wrk_client *c, uint16_t ev,
                             uint32_t value)
{
    const bool curve = c->cfg->curve_key[0] != '\0';
    if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        fl_log(FL_LOG_ERR, "the coordinator at '%s' refused this device's "
               "key (status %u): its .pub must be in the coordinator's "
               "--authorized-keys (then SIGHUP it)", c->cfg->connect,
               (unsigned)value);
        finish(c, WRK_EXIT_ERROR);
        return;
    }
    if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
        fl_log(FL_LOG_ERR, "handshake with '%s' failed (protocol error "
               "%#x%s): %s", c->cfg->connect, (unsigned)value,
               value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
                   ? ", security mechanism mismatch"
                   : "",
               curve ? "does the coordinator use CURVE, with the key of "
                       "--coordinator-key?"
                     : "the coordinator probably requires CURVE keys "
                       "(--curve-key, --coordinator-key)");
        finish(c, WRK_EXIT_ERROR);
        return;
    }
    if (!c->handshake_failed)
        fl_log(FL_LOG_NOTICE, "handshake with '%s' did not complete (%s): "
               "retrying", c->cfg->connect, zmq_strerror((int)value));
    c->handshake_failed = true;
}

/* Monitor events: [u16 event, u32 value] then the endpoint frame. */
static void drain_monitor(struct wrk_client *c)
{
    for (;;) {
        zmq_msg_t m;
        uint16_t ev = 0;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        uint32_t value = 0;
        if (zmq_msg_size(&m) >= sizeof(ev))
            memcpy(&ev, zmq_msg_data(&m), sizeof(ev));
        if (zmq_msg_size(&m) >= sizeof(ev) + sizeof(value))
            memcpy(&value, (const uint8_t *)zmq_msg_data(&m) + sizeof(ev),
                   sizeof(value));
        while (zmq_msg_more(&m)) {
            zmq_msg_close(&m);
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, c->mon, 0) < 0)
                break;
        }
        zmq_msg_close(&m);
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
            ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
            ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            handshake_failed(c, ev, value);
        } else if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            fl_log(FL_LOG_DEBUG, "connected to '%s'", c->cfg->connect);
            c->handshake_failed = false;
            c->handshake_ok = true;
            hello_again(c);
        } else if (ev == ZMQ_EVENT_DISCONNECTED) {
            fl_log(FL_LOG_NOTICE, "disconnected from '%s': reconnecting",
                   c->cfg->connect);
        }
    }
}

/* ------------------------------------------------------------- lifecycle */

static enum fl_err zmq_fail(const char *what, const char *ep)
{
    fl_log(FL_LOG_ERR, "%s '%s': %s", what, ep, zmq_strerror(errno));
    return FL_ERR_ZMQ;
}

/* With --curve-key: this device's key pair and the coordinator's public
 * key on the DEALER (a CURVE client), before it connects. Key paths may
 * be relative to $CREDENTIALS_DIRECTORY (fl_keys_resolve()). */
static enum fl_err setup_curve(struct wrk_client *c)
{
    const struct wrk_config *cfg = c->cfg;
    struct fl_keypair kp;
    char server[FL_KEY_Z85_LEN + 1], buf[WRK_PATH_MAX + 256], err[512];
    char fpr[FL_KEY_FPR_LEN + 1], sfpr[FL_KEY_FPR_LEN + 1];
    enum fl_err rc;
    if (cfg->curve_key[0] == '\0') {
        fl_log(FL_LOG_NOTICE, "insecure: plaintext to '%s', no encryption "
               "and no authentication", cfg->connect);
        return FL_OK;
    }
    rc = fl_keys_read_public(fl_keys_resolve(cfg->coordinator_key, buf,
                                             sizeof(buf)),
                             server, err, sizeof(err));
    if (rc == FL_OK)
        rc = fl_keys_read_secret(fl_keys_resolve(cfg->curve_key, buf,
                                                 sizeof(buf)),
                                 &kp, err, sizeof(err));
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot read the CURVE keys: %s", err);
        return rc;
    }
    if (zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, server,
                       FL_KEY_Z85_LEN + 1) != 0 ||
        zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, kp.public_z85,
                       FL_KEY_Z85_LEN + 1) != 0 ||
        zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, kp.secret_z85,
                       FL_KEY_Z85_LEN + 1) != 0)
        rc = zmq_fail("cannot set the CURVE keys for", cfg->connect);
    fl_keys_fingerprint(kp.public_z85, fpr);
    fl_keys_fingerprint(server, sfpr);
    fl_keys_clear(&kp);
    if (rc == FL_OK)
        fl_log(FL_LOG_INFO, "CURVE on: device key %s, coordinator key %s",
               fpr, sfpr);
    return rc;
}

static enum fl_err open_socket(struct wrk_client *c)
{
    char mon_ep[64];
    const int linger = LINGER_MS, zero = 0;
    const int ivl = 100, ivl_max = 5000, sndtimeo = SEND_TIMEOUT_MS;
    const int hb_ivl = HEARTBEAT_IVL_MS, hb_to = HEARTBEAT_TIMEOUT_MS;
    const int hb_ttl = HEARTBEAT_TTL_MS;
    const int64_t maxmsg = (int64_t)c->cfg->max_message;

    c->zctx = zmq_ctx_new();
    if (c->zctx == NULL)
        return zmq_fail("cannot create a zmq context for", c->cfg->connect);
    c->sock = zmq_socket(c->zctx, ZMQ_DEALER);
    if (c->sock == NULL)
        return zmq_fail("cannot create a socket for", c->cfg->connect);
    if (zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(int)) != 0 ||
        zmq_setsockopt(c->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof(int)) != 0 ||
        zmq_setsockopt(c->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max,
                       sizeof(int)) != 0 ||
        zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) !=
            0 ||
        zmq_setsockopt(c->sock, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof(int)) !=
            0 ||
        zmq_setsockopt(c->sock, ZMQ_HEARTBEAT_TIMEOUT, &hb_to, sizeof(int)) !=
            0 ||
        zmq_setsockopt(c->sock, ZMQ_HEARTBEAT_TTL, &hb_ttl, sizeof(int)) !=
            0 ||
        zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &sndtimeo, sizeof(int)) != 0)
        return zmq_fail("cannot set socket options for", c->cfg->connect);
    snprintf(mon_ep, sizeof(mon_ep), "inproc://wrk-monitor-%ld",
             (long)getpid());
    FL_FORWARD_ERR(setup_curve(c));
    if (zmq_socket_monitor(c->sock, mon_ep,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                               ZMQ_EVENT_DISCONNECTED |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0)
        return zmq_fail("cannot monitor the socket of", c->cfg->connect);
    c->mon = zmq_socket(c->zctx, ZMQ_PAIR);
    if (c->mon == NULL ||
        zmq_setsockopt(c->mon, ZMQ_LINGER, &zero, sizeof(int)) != 0 ||
        zmq_connect(c->mon, mon_ep) != 0)
        return zmq_fail("cannot connect the monitor of", c->cfg->connect);
    if (zmq_connect(c->sock, c->cfg->connect) != 0)
        return zmq_fail("cannot connect to", c->cfg->connect);
    return FL_OK;
}

static enum fl_err load_data(struct wrk_client *c)
{
    char err[512] = "";
    const struct wrk_config *cfg = c->cfg;
    const uint64_t t0 = fl_now_ns();
    const enum fl_err rc =
        wrk_data_load_shard(cfg->data_dir, cfg->train_limit, &cfg->partition,
                            cfg->shard, &c->data, &c->dinfo, err, sizeof(err));
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot load the training data from '%s': %s",
               cfg->data_dir, err);
        return rc;
    }
    char part[48] = "iid";
    if (cfg->partition.kind == MDL_PARTITION_DIRICHLET)
        snprintf(part, sizeof(part), "dirichlet:%g", cfg->partition.alpha);
    fl_log(FL_LOG_INFO,
           "loaded shard %u/%u: %u of %u training images (%s, seed %" PRIu64
           ") in %" PRIu64 " ms",
           cfg->shard, cfg->partition.nshards, c->dinfo.shard_n,
           c->dinfo.total, part, cfg->partition.seed, ms_since(t0));
    return FL_OK;
}

enum fl_err wrk_client_new(const struct wrk_config *cfg,
                           struct wrk_client **out)
{
    enum fl_err rc = FL_OK;
    struct wrk_client *c = fl_calloc(1, sizeof(*c));
    *out = NULL;
    if (c == NULL)
        return FL_ERR_NOMEM;
    c->cfg = cfg;
    c->lim.max_message = cfg->max_message;
    c->lim.max_alloc = 2 * cfg->max_message + (1u << 20);
    c->backoff_ms = HELLO_BACKOFF_MIN_MS;
    snprintf(c->state_path, sizeof(c->state_path), "%s/%s", cfg->state_dir,
             WRK_STATE_FILE);
    /* the baseline of the memory a round costs (bench/worker_cost.sh) */
    fl_log(FL_LOG_INFO, "memory at start: %" PRIu64 " KiB resident (before "
           "loading data)", wrk_stats_rss_kb());
    {
        /* transfer ids: distinct from those of an earlier run */
        struct fl_rng r;
        fl_rng_seed(&r, fl_now_ns() ^ ((uint64_t)getpid() << 32));
        c->tx_ids = fl_rng_next(&r);
    }
    if (cfg->stats_csv[0] != '\0') {
        rc = wrk_stats_open(cfg->stats_csv, &c->stats);
        if (rc != FL_OK) {
            fl_log(FL_LOG_ERR, "cannot open '%s': %s", cfg->stats_csv,
                   strerror(errno));
            goto out;
        }
    }
    mdl_blas_single_thread();
    rc = load_data(c);
    if (rc != FL_OK)
        goto out;
    c->mctx = cmp_ctx_new();
    if (c->mctx == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    rc = open_socket(c);
out:
    if (rc != FL_OK)
        wrk_client_destroy(&c);
    *out = c;
    return rc;
}

void wrk_client_destroy(struct wrk_client **cp)
{
    if (cp == NULL || *cp == NULL)
        return;
    struct wrk_client *c = *cp;
    if (c->sock != NULL) {
        zmq_socket_monitor(c->sock, NULL, 0);
        zmq_close(c->sock);
    }
    if (c->mon != NULL)
        zmq_close(c->mon);
    if (c->zctx != NULL) {
        while (zmq_ctx_term(c->zctx) != 0 && errno == EINTR)
            ;
    }
    drop_download(c);
    free_model(c);
    wrk_stats_close(&c->stats);
    cmp_ctx_destroy(&c->mctx);
    mdl_dataset_destroy(&c->data);
    fl_free(c->buf);
    fl_free(c->last_update);
    fl_free(c->sbuf);
    fl_free(c);
    *cp = NULL;
}

/* Milliseconds to wait in zmq_poll: until the next Hello is due while not
 * welcomed, bounded so that a stop request is seen quickly. */
static long poll_timeout(const struct wrk_client *c)
{
    if (c->welcomed)
        return POLL_MS;
    const uint64_t now = fl_now_ns();
    if (c->hello_due_ns <= now)
        return 0;
    const uint64_t ms = (c->hello_due_ns - now + NS_PER_MS - 1) / NS_PER_MS;
    return (long)FL_MIN(ms, (uint64_t)POLL_MS);
}

/* --save-model: the model held at exit, with round = version - 1 as the
 * coordinator's --save-broadcast-model writes it (the files then compare
 * equal byte for byte). */
static void save_held_model(const struct wrk_client *c)
{
    const char *path = c->cfg->save_model;
    if (path[0] == '\0')
        return;
    if (c->trainer == NULL || !c->model.have) {
        fl_log(FL_LOG_NOTICE, "no model held: '%s' not written", path);
        return;
    }
    const enum fl_err rc =
        mdl_file_save(path, mdl_trainer_layout(c->trainer), c->model.w,
                      c->model.version - 1);
    if (rc != FL_OK)
        fl_log(FL_LOG_ERR, "cannot save the model to '%s': %s", path,
               fl_strerror(rc));
    else
        fl_log(FL_LOG_INFO, "model version %" PRIu64 " saved to '%s'",
               c->model.version, path);
}

int wrk_client_run(struct wrk_client *c)
{
    const uint64_t hello_limit_ns =
        (uint64_t)c->cfg->hello_timeout_s * 1000 * NS_PER_MS;
    /* The first Hello goes out when the monitor reports a completed
     * handshake (drain_monitor); the back-off timer is only the fallback.
     * Sending at once as well would race with that event and say Hello
     * twice. */
    c->start_ns = fl_now_ns();
    c->hello_due_ns = c->start_ns + HELLO_BACKOFF_MIN_MS * NS_PER_MS;
    c->backoff_ms = FL_MIN(2 * HELLO_BACKOFF_MIN_MS, HELLO_BACKOFF_MAX_MS);
    fl_log(FL_LOG_INFO, "connecting to %s as '%s'", c->cfg->connect,
           c->cfg->id);
    while (!c->done) {
        zmq_pollitem_t items[2] = {{c->sock, 0, ZMQ_POLLIN, 0},
                                   {c->mon, 0, ZMQ_POLLIN, 0}};
        if (stop_requested) {
            say_bye(c, "stopped by signal");
            fl_log(FL_LOG_INFO, "stopping on signal");
            save_held_model(c);
            return WRK_EXIT_OK;
        }
        if (!c->welcomed) {
            if (!c->ever_welcomed && hello_limit_ns > 0 &&
                fl_now_ns() - c->start_ns >= hello_limit_ns) {
                fl_log(FL_LOG_ERR, "no welcome from %s within %u s: giving "
                       "up%s", c->cfg->connect, c->cfg->hello_timeout_s,
                       c->handshake_ok || c->cfg->curve_key[0] == '\0'
                           ? ""
                           : " (no CURVE handshake completed: is "
                             "--coordinator-key the coordinator's key?)");
                return WRK_EXIT_NO_WELCOME;
            }
            if (fl_now_ns() >= c->hello_due_ns)
                send_hello(c);
        }
        if (zmq_poll(items, 2, poll_timeout(c)) < 0) {
            if (errno == EINTR)
                continue;
            fl_log(FL_LOG_ERR, "poll failed: %s", zmq_strerror(errno));
            return WRK_EXIT_ERROR;
        }
        if (items[1].revents & ZMQ_POLLIN)
            drain_monitor(c);
        if (items[0].revents & ZMQ_POLLIN)
            drain_socket(c);
        if (wrk_xfer_tx_expired(&c->tx, fl_now_ns()))
            end_upload(c, true, c->tx.granted
                                    ? " (not complete at the task's deadline)"
                                    : " (no credit before the task's "
                                      "deadline)");
    }
    save_held_model(c);
    return c->exit_code;
}
