#include "coordinator/coord_server.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include <zmq.h>

#include "common/fl_alloc.h"
#include "common/fl_keys.h"
#include "common/fl_log.h"
#include "common/fl_util.h"
#include "coordinator/coord_metrics.h"
#include "coordinator/coord_ckpt.h"
#include "coordinator/coord_ratelim.h"
#include "coordinator/coord_report.h"
#include "coordinator/coord_xfer.h"
#include "coordinator/coord_zap.h"
#include "model/mdl_data.h"
#include "model/mdl_trainer.h"
#include "proto/pb_msg.h"

#define RECV_BATCH 1024
#define POLL_MAX_MS 250
#define MONITOR_EP "inproc://fedcomp-coordinator-monitor"
#define DRAIN_MIN_S 5.0
#define DRAIN_MAX_S 30.0
#define DRAIN_STOP_S 1.0

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t signal_count;
static volatile sig_atomic_t reload_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
    signal_count++;
}

static void on_hup(int sig)
{
    (void)sig;
    reload_signal = 1;
}

struct server {
    const struct coord_config *cfg;
    void *zctx;
    void *sock;
    void *mon;                   /* PAIR reading the ROUTER's monitor */
    int peers;                   /* TCP peers connected (from the monitor) */
    struct mdl_dataset *test;
    struct mdl_trainer *trainer;
    float *init;
    struct coord_report *report;
    struct coord_engine *engine;
    struct coord_ckpt ck;          /* loaded from --state-dir */
    bool resume;                   /* ck holds a checkpoint to resume */
    struct coord_metrics *metrics; /* NULL without --metrics-bind */
    /* security and admission (docs/security.md) */
    struct coord_zap *zap;         /* ZAP handler; NULL in plaintext */
    struct coord_ratelim *rl;      /* NULL without --max-msg-rate */
    uint64_t zap_refused_seen;     /* ZAP refusals already counted */
    uint64_t rate_limited;         /* not yet handed to the engine */
    uint64_t revoked_dropped;      /* messages of revoked keys dropped */
    bool revoked_logged;           /* since the last reload */
    char endpoint[512];
};

int coord_exit_code(enum fl_err rc, enum coord_status status)
{
    if (rc != FL_OK)
        return 1;
    switch (status) {
    case COORD_DONE:
    case COORD_STOPPED:
        return 0;
    case COORD_NO_DEVICES:
        return 3;
    case COORD_TOO_MANY_ATTEMPTS:
        return 4;
    case COORD_RUNNING:
    case COORD_FAILED:
        break;
    }
    return 1;
}

static enum fl_err install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: zmq_poll returns EINTR */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 ||
        sigaction(SIGTERM, &sa, NULL) != 0)
        return FL_ERR_IO;
    sa.sa_handler = on_hup;    /* reload the authorized keys */
    if (sigaction(SIGHUP, &sa, NULL) != 0)
        return FL_ERR_IO;
    signal(SIGPIPE, SIG_IGN);
    return FL_OK;
}

static uint64_t draw_epoch(void)
{
    uint64_t x = 0;
    if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != (ssize_t)sizeof(x)) {
        struct fl_rng r;
        fl_rng_seed(&r, fl_now_ns() ^ ((uint64_t)getpid() << 32));
        x = fl_rng_next(&r);
    }
    return x != 0 ? x : 1;
}

/* ---- model and test data */

static enum fl_err load_model(struct server *s)
{
    const struct coord_config *cfg = s->cfg;
    char err[256] = "";
    enum fl_err rc = mdl_dataset_load(cfg->data_dir, "t10k", NULL, 0,
                                      &s->test, err, sizeof(err));
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot load the test set from '%s': %s",
               cfg->data_dir, err[0] != '\0' ? err : fl_strerror(rc));
        return rc;
    }
    if (cfg->eval_limit > 0 && cfg->eval_limit < s->test->n)
        mdl_dataset_truncate(s->test, cfg->eval_limit);
    struct mdl_mlp_config mlp = cfg->mlp;
    mlp.input = s->test->dim;
    mlp.classes = s->test->nclasses;
    rc = mdl_trainer_new_mlp(&mlp, &s->trainer);
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot build the model: %s", fl_strerror(rc));
        return rc;
    }
    const struct mdl_layout *l = mdl_trainer_layout(s->trainer);
    s->init = fl_malloc(l->dim * sizeof(float));
    if (s->init == NULL)
        return FL_ERR_NOMEM;
    mdl_trainer_init_params(s->trainer, cfg->seed, s->init);
    fl_log(FL_LOG_INFO, "model: %zu parameters in %zu tensors; evaluating "
           "on %u test images", l->dim, l->ntensors, s->test->n);
    return FL_OK;
}

static enum fl_err evaluate_cb(void *ctx, const float *params, size_t dim,
                               double *acc, double *loss)
{
    struct server *s = ctx;
    struct mdl_eval_result res;
    (void)dim;
    FL_FORWARD_ERR(mdl_trainer_evaluate(s->trainer, params, s->test, &res));
    *acc = res.accuracy;
    *loss = res.loss;
    return FL_OK;
}

/* ---- the socket */

static enum fl_err zmq_fail(const char *what)
{
    fl_log(FL_LOG_ERR, "%s: %s (errno %d)", what, zmq_strerror(errno),
           errno);
    return FL_ERR_ZMQ;
}

static enum fl_err set_int(void *sock, int opt, int v, const char *name)
{
    if (zmq_setsockopt(sock, opt, &v, sizeof(v)) != 0)
        return zmq_fail(name);
    return FL_OK;
}

/* Connection events tell when every worker has gone after its Bye. */
static enum fl_err open_monitor(struct server *s)
{
    if (zmq_socket_monitor(s->sock, MONITOR_EP,
                           ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0)
        return zmq_fail("cannot monitor the router socket");
    s->mon = zmq_socket(s->zctx, ZMQ_PAIR);
    if (s->mon == NULL)
        return zmq_fail("cannot create the monitor socket");
    FL_FORWARD_ERR(set_int(s->mon, ZMQ_LINGER, 0, "cannot set ZMQ_LINGER"));
    if (zmq_connect(s->mon, MONITOR_EP) != 0)
        return zmq_fail("cannot connect the monitor socket");
    return FL_OK;
}

static void read_monitor(struct server *s)
{
    for (;;) {
        zmq_msg_t m;
        uint16_t ev = 0;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (zmq_msg_size(&m) >= sizeof(ev))
            memcpy(&ev, zmq_msg_data(&m), sizeof(ev));
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) { /* the endpoint frame */
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s->mon, 0) < 0)
                more = 0;
            else
                more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        if (ev == ZMQ_EVENT_ACCEPTED)
            s->peers++;
        else if (ev == ZMQ_EVENT_DISCONNECTED && s->peers > 0)
            s->peers--;
        /* also how a frame over ZMQ_MAXMSGSIZE shows: the peer is gone */
        if (ev == ZMQ_EVENT_DISCONNECTED && s->engine != NULL)
            coord_engine_on_disconnect(s->engine);
        fl_log(FL_LOG_DEBUG, "%s: %d peers connected",
               ev == ZMQ_EVENT_ACCEPTED ? "peer connected"
                                        : "peer disconnected",
               s->peers);
    }
}

/* ---- security and admission (docs/security.md) */

/* CURVE on the ROUTER: the ZAP handler first (it must be bound before the
 * ROUTER binds, or libzmq lets every key in), then the server key. */
static enum fl_err setup_curve(struct server *s)
{
    const struct coord_config *cfg = s->cfg;
    struct fl_keypair kp;
    char buf[4096], err[512], fpr[FL_KEY_FPR_LEN + 1];
    const int one = 1;
    if (cfg->curve_secret == NULL || cfg->authorized_keys == NULL) {
        fl_log(FL_LOG_WARN, "insecure: plaintext, no encryption and no "
               "authentication; any peer can join under any device id");
        return FL_OK;
    }
    const char *path = fl_keys_resolve(cfg->curve_secret, buf, sizeof(buf));
    if (fl_keys_read_secret(path, &kp, err, sizeof(err)) != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot read the coordinator's key: %s", err);
        return FL_ERR_INVALID_ARG;
    }
    fl_keys_fingerprint(kp.public_z85, fpr);
    const char *dir = fl_keys_resolve(cfg->authorized_keys, buf,
                                      sizeof(buf));
    enum fl_err rc = coord_zap_new(s->zctx, dir, &s->zap);
    if (rc == FL_OK &&
        (zmq_setsockopt(s->sock, ZMQ_ZAP_DOMAIN, COORD_ZAP_DOMAIN,
                        strlen(COORD_ZAP_DOMAIN)) != 0 ||
         zmq_setsockopt(s->sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) != 0 ||
         zmq_setsockopt(s->sock, ZMQ_CURVE_SECRETKEY, kp.secret_z85,
                        FL_KEY_Z85_LEN + 1) != 0))
        rc = zmq_fail("cannot set the CURVE options");
    fl_keys_clear(&kp);
    if (rc != FL_OK)
        return rc;
    fl_log(FL_LOG_INFO, "CURVE on: coordinator key %s, %zu authorized keys "
           "in '%s'", fpr, coord_zap_count(s->zap), dir);
    return FL_OK;
}

static enum fl_err open_ratelim(struct server *s)
{
    const struct coord_config *cfg = s->cfg;
    if (!(cfg->max_msg_rate > 0))
        return FL_OK;
    /* room for every connection a full coordinator may see at once */
    const size_t peers = 2 * (size_t)cfg->max_devices_connected + 1024;
    const enum fl_err rc =
        coord_ratelim_new(cfg->max_msg_rate, cfg->max_msg_burst, peers,
                          draw_epoch(), &s->rl);
    if (rc != FL_OK)
        fl_log(FL_LOG_ERR, "cannot set up the message rate limit: %s",
               fl_strerror(rc));
    return rc;
}

/* SIGHUP: re-read the authorized keys; devices whose key went away are
 * dropped at once (their connections stay open, but every message of
 * theirs is dropped from now on: see deliver()). */
static bool key_allowed(void *ctx, const char *id)
{
    return coord_zap_authorized(ctx, id);
}

static void reload_keys(struct server *s)
{
    size_t removed = 0;
    if (s->zap == NULL) {
        fl_log(FL_LOG_NOTICE, "SIGHUP ignored: no --authorized-keys to "
               "reload (plaintext)");
        return;
    }
    if (coord_zap_reload(s->zap, NULL, &removed) != FL_OK || removed == 0)
        return;
    s->revoked_logged = false;
    const size_t n = coord_engine_revoke(s->engine, key_allowed, s->zap);
    fl_log(FL_LOG_NOTICE, "%zu connected devices dropped after the reload",
           n);
}

/* Hand the counters gathered outside the engine to its report row. */
static void count_admission(struct server *s)
{
    const uint64_t refused = s->zap != NULL ? coord_zap_refused(s->zap) : 0;
    if (refused == s->zap_refused_seen && s->rate_limited == 0)
        return;
    coord_engine_count_admission(s->engine, refused - s->zap_refused_seen,
                                 s->rate_limited);
    s->zap_refused_seen = refused;
    s->rate_limited = 0;
}

/* The rate limit, by routing id; true when the message may go on. */
static bool rate_ok(struct server *s, zmq_msg_t *rid, const char *uid)
{
    char hex[2 * 16 + 1];
    const uint8_t *b = zmq_msg_data(rid);
    const size_t n = zmq_msg_size(rid);
    if (s->rl == NULL)
        return true;
    const enum coord_rl_verdict v = coord_ratelim_check(
        s->rl, b, n, coord_engine_round(s->engine), fl_now_ns());
    if (v == COORD_RL_PASS)
        return true;
    s->rate_limited++;
    if (v == COORD_RL_DROP_FIRST) {
        /* in plaintext the name is the one its Hello bound, if any */
        const struct coord_device *d =
            uid == NULL ? coord_devtab_by_rid(coord_engine_devices(s->engine),
                                              b, n)
                        : NULL;
        if (d != NULL)
            uid = d->id;
        for (size_t i = 0; i < n && i < 16; i++)
            snprintf(hex + 2 * i, 3, "%02x", b[i]);
        hex[2 * (n < 16 ? n : 16)] = '\0';
        fl_log(FL_LOG_NOTICE, "rate limit: dropping messages from %s%s%s "
               "(routing id %s) in round %llu: over %g/s, burst %g",
               uid != NULL ? "worker '" : "a peer",
               uid != NULL ? uid : "", uid != NULL ? "'" : "", hex,
               (unsigned long long)coord_engine_round(s->engine),
               s->cfg->max_msg_rate, s->cfg->max_msg_burst);
    }
    return false;
}

/* One message that passed the transport: the key's name goes with it. */
static void deliver(struct server *s, zmq_msg_t *rid, zmq_msg_t *body,
                    size_t nextra, size_t extra_bytes)
{
    /* the User-Id of the connection, set by the ZAP handler (CURVE) */
    const char *uid = s->zap != NULL ? zmq_msg_gets(body, "User-Id") : NULL;
    if (s->zap != NULL && (uid == NULL || !coord_zap_authorized(s->zap, uid))) {
        s->revoked_dropped++;
        if (!s->revoked_logged)
            fl_log(FL_LOG_NOTICE, "dropping messages of device '%s': its key "
                   "is no longer authorized", uid != NULL ? uid : "?");
        s->revoked_logged = true;
        return;
    }
    /* Chunks and Credits of an open transfer are paced by the credit
     * window, not by the message rate (docs/protocol.md "Transfers") */
    const enum pb_body kind = pb_peek_body(zmq_msg_data(body),
                                           zmq_msg_size(body));
    const bool paced = (kind == PB_BODY_CHUNK || kind == PB_BODY_CREDIT) &&
                       nextra == 0 &&
                       coord_engine_in_transfer(s->engine, zmq_msg_data(rid),
                                                zmq_msg_size(rid), uid);
    if (!paced && !rate_ok(s, rid, uid))
        return;
    coord_engine_on_message_auth(s->engine, zmq_msg_data(rid),
                                 zmq_msg_size(rid), uid, zmq_msg_data(body),
                                 zmq_msg_size(body), nextra, extra_bytes,
                                 fl_now_ns());
}

/* One descriptor per device: take the hard limit of open files as the
 * soft one (a shell's 1024 would stop the coordinator near 1,000 devices;
 * docs/scale.md). */
static void raise_nofile(uint32_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        const rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            fl_log(FL_LOG_DEBUG, "open-file limit raised from %llu to %llu",
                   (unsigned long long)old, (unsigned long long)rl.rlim_cur);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want + 100)
        fl_log(FL_LOG_WARN, "the open-file limit is %llu: fewer than the "
               "%u devices --max-devices-connected allows can connect "
               "(raise LimitNOFILE / ulimit -n)",
               (unsigned long long)rl.rlim_cur, want);
}

static enum fl_err open_socket(struct server *s)
{
    size_t len = sizeof(s->endpoint);
    const int64_t maxmsg = (int64_t)coord_config_frame_limit(s->cfg);
    const int hb = (int)s->cfg->heartbeat_ms;
    raise_nofile(s->cfg->max_devices_connected);
    s->zctx = zmq_ctx_new();
    if (s->zctx == NULL)
        return zmq_fail("cannot create the zeromq context");
    if (zmq_ctx_set(s->zctx, ZMQ_IO_THREADS, (int)s->cfg->io_threads) != 0)
        return zmq_fail("cannot set ZMQ_IO_THREADS");
    s->sock = zmq_socket(s->zctx, ZMQ_ROUTER);
    if (s->sock == NULL)
        return zmq_fail("cannot create the router socket");
    FL_FORWARD_ERR(set_int(s->sock, ZMQ_ROUTER_MANDATORY, 1,
                           "cannot set ZMQ_ROUTER_MANDATORY"));
    FL_FORWARD_ERR(set_int(s->sock, ZMQ_LINGER, 1000,
                           "cannot set ZMQ_LINGER"));
    /* --heartbeat-ms 0: no ZMTP heartbeats (docs/scale.md: at thousands
     * of connections per I/O thread their timers cost O(N^2)) */
    if (hb > 0) {
        const int tmo = hb > INT_MAX / 5 ? INT_MAX : hb * 5;
        FL_FORWARD_ERR(set_int(s->sock, ZMQ_HEARTBEAT_IVL, hb,
                               "cannot set ZMQ_HEARTBEAT_IVL"));
        FL_FORWARD_ERR(set_int(s->sock, ZMQ_HEARTBEAT_TTL,
                               FL_MIN(tmo, 6553500),
                               "cannot set ZMQ_HEARTBEAT_TTL"));
        FL_FORWARD_ERR(set_int(s->sock, ZMQ_HEARTBEAT_TIMEOUT, tmo,
                               "cannot set ZMQ_HEARTBEAT_TIMEOUT"));
    }
    FL_FORWARD_ERR(set_int(s->sock, ZMQ_BACKLOG, (int)s->cfg->backlog,
                           "cannot set ZMQ_BACKLOG"));
    FL_FORWARD_ERR(set_int(s->sock, ZMQ_HANDSHAKE_IVL, 5000,
                           "cannot set ZMQ_HANDSHAKE_IVL"));
    if (zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &maxmsg,
                       sizeof(maxmsg)) != 0)
        return zmq_fail("cannot set ZMQ_MAXMSGSIZE");
    FL_FORWARD_ERR(setup_curve(s));
    FL_FORWARD_ERR(open_ratelim(s));
    FL_FORWARD_ERR(open_monitor(s));
    if (zmq_bind(s->sock, s->cfg->bind) != 0) {
        fl_log(FL_LOG_ERR, "cannot bind '%s': %s", s->cfg->bind,
               zmq_strerror(errno));
        return FL_ERR_ZMQ;
    }
    if (zmq_getsockopt(s->sock, ZMQ_LAST_ENDPOINT, s->endpoint, &len) != 0)
        return zmq_fail("cannot read the bound endpoint");
    s->endpoint[sizeof(s->endpoint) - 1] = '\0';
    fl_log(FL_LOG_INFO, "listening on %s", s->endpoint);
    if (s->cfg->endpoint_file != NULL) {
        char line[sizeof(s->endpoint) + 1];
        const int n = snprintf(line, sizeof(line), "%s\n", s->endpoint);
        if (fl_file_write_atomic(s->cfg->endpoint_file, line, (size_t)n) !=
            FL_OK) {
            fl_log(FL_LOG_ERR, "cannot write the endpoint file '%s': %s",
                   s->cfg->endpoint_file, strerror(errno));
            return FL_ERR_IO;
        }
    }
    return FL_OK;
}

/* With --metrics-bind: serve /metrics from libmicrohttpd's thread, log
 * the address and write the port into --metrics-port-file. */
static enum fl_err open_metrics(struct server *s)
{
    char err[256] = "";
    uint16_t port = 0;
    if (s->cfg->metrics_bind == NULL)
        return FL_OK;
    FL_FORWARD_ERR(coord_metrics_new(&s->metrics));
    const enum fl_err rc = coord_metrics_listen(s->metrics,
                                                s->cfg->metrics_bind, &port,
                                                err, sizeof(err));
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "%s", err);
        return rc;
    }
    fl_log(FL_LOG_INFO, "metrics on '%s', port %u, path /metrics",
           s->cfg->metrics_bind, (unsigned)port);
    if (s->cfg->metrics_port_file != NULL) {
        char line[16];
        const int n = snprintf(line, sizeof(line), "%u\n", (unsigned)port);
        if (fl_file_write_atomic(s->cfg->metrics_port_file, line,
                                 (size_t)n) != FL_OK) {
            fl_log(FL_LOG_ERR, "cannot write the metrics port file '%s': %s",
                   s->cfg->metrics_port_file, strerror(errno));
            return FL_ERR_IO;
        }
    }
    return FL_OK;
}

static void publish_state(const struct server *s)
{
    coord_metrics_set_state(s->metrics, coord_engine_round(s->engine),
                            coord_devtab_connected(
                                coord_engine_devices(s->engine)));
}

/* ---- checkpoint and resume (coord_ckpt.h, docs/checkpoint.md) */

/* io.checkpoint: the report lengths after the attempt's rows, then the
 * file. */
static enum fl_err checkpoint_cb(void *ctx, struct coord_ckpt *ck)
{
    struct server *s = ctx;
    const char *rdir = s->cfg->report_dir;
    enum fl_err rc = FL_OK;
    ck->has_reports = rdir != NULL;
    if (rdir != NULL) {
        rc = coord_report_sync(s->report);
        if (rc == FL_OK)
            rc = coord_ckpt_report_lengths(rdir, ck->report_len);
    }
    if (rc == FL_OK)
        rc = coord_ckpt_save(s->cfg->state_dir, ck);
    if (rc == FL_ERR_IO)
        fl_log(FL_LOG_ERR, "cannot write the checkpoint in '%s': %s",
               s->cfg->state_dir, strerror(errno));
    else if (rc == FL_OK)
        fl_log(FL_LOG_DEBUG, "checkpoint written: next round %llu attempt "
               "%u, model version %llu", (unsigned long long)ck->next_round,
               ck->next_attempt, (unsigned long long)ck->model_version);
    return rc;
}

/* Bring the report files back to what the checkpoint recorded. */
static enum fl_err restore_reports(struct server *s)
{
    char err[512] = "";
    uint64_t cut = 0;
    const char *rdir = s->cfg->report_dir;
    if (!s->ck.has_reports) {
        if (rdir != NULL)
            fl_log(FL_LOG_NOTICE, "the checkpoint was written without "
                   "--report-dir: the report files are appended to as "
                   "they are");
        return FL_OK;
    }
    if (rdir == NULL) {
        fl_log(FL_LOG_NOTICE, "no --report-dir: the reports of the resumed "
               "run are not continued");
        return FL_OK;
    }
    const enum fl_err rc =
        coord_ckpt_truncate_reports(rdir, s->ck.report_len, &cut, err,
                                    sizeof(err));
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot resume the reports in '%s': %s", rdir,
               err);
        return rc;
    }
    if (cut > 0)
        fl_log(FL_LOG_NOTICE, "removed %llu bytes of report rows written "
               "after the checkpoint", (unsigned long long)cut);
    return FL_OK;
}

/* With --state-dir: create it, and load and check its checkpoint if there
 * is one. A checkpoint that cannot be used is an error, never silently
 * replaced: starting over would write round 1 after the old rows. */
static enum fl_err load_checkpoint(struct server *s)
{
    char err[512] = "";
    const char *dir = s->cfg->state_dir;
    if (dir == NULL)
        return FL_OK;
    enum fl_err rc = fl_mkdir_p(dir, 1);
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot create the state directory '%s': %s",
               dir, strerror(errno));
        return rc;
    }
    rc = coord_ckpt_load(dir, &s->ck);
    if (rc == FL_ERR_NOT_FOUND) {
        fl_log(FL_LOG_INFO, "no checkpoint in '%s': starting at round 1",
               dir);
        return FL_OK;
    }
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot read the checkpoint '%s/%s': %s (remove "
               "it to start over)", dir, COORD_CKPT_FILE, fl_strerror(rc));
        return rc;
    }
    rc = coord_ckpt_check(&s->ck, s->cfg, mdl_trainer_layout(s->trainer),
                          err, sizeof(err));
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot resume from '%s/%s': %s", dir,
               COORD_CKPT_FILE, err);
        return rc;
    }
    rc = restore_reports(s);
    if (rc != FL_OK)
        return rc;
    s->resume = true;
    fl_log(FL_LOG_NOTICE, "resuming from '%s/%s': round %llu attempt %u, "
           "model version %llu, %llu rounds done (epoch %016llx before)",
           dir, COORD_CKPT_FILE, (unsigned long long)s->ck.next_round,
           s->ck.next_attempt, (unsigned long long)s->ck.model_version,
           (unsigned long long)s->ck.sum.rounds_done,
           (unsigned long long)s->ck.epoch);
    return FL_OK;
}

static enum fl_err resume_engine(struct server *s)
{
    char err[512] = "";
    if (!s->resume)
        return FL_OK;
    const enum fl_err rc = coord_engine_resume(s->engine, &s->ck, err,
                                               sizeof(err));
    if (rc != FL_OK)
        fl_log(FL_LOG_ERR, "cannot resume: %s", err);
    coord_ckpt_release(&s->ck);
    return rc;
}

static void free_frame(void *data, void *hint)
{
    (void)hint;
    fl_free(data);
}

/* Owns buf: ZeroMQ frees it once sent (zero copy), or zmq_msg_close()
 * does when the send fails. */
static enum fl_err send_cb(void *ctx, const uint8_t *rid, size_t rid_len,
                           uint8_t *buf, size_t len)
{
    struct server *s = ctx;
    zmq_msg_t msg;
    if (zmq_msg_init_data(&msg, buf, len, free_frame, NULL) != 0) {
        fl_free(buf);
        return FL_ERR_NOMEM;
    }
    if (zmq_send(s->sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&msg, s->sock, ZMQ_DONTWAIT) < 0) {
        const int err = errno;
        zmq_msg_close(&msg);
        fl_log(FL_LOG_NOTICE, "send of %zu bytes failed: %s", len,
               zmq_strerror(err));
        if (err == EHOSTUNREACH)
            return FL_ERR_UNKNOWN_DEVICE;
        if (err == EAGAIN)
            return FL_ERR_TIMEOUT;
        return FL_ERR_ZMQ;
    }
    return FL_OK;
}

static void unref_frame(void *data, void *hint)
{
    (void)data;
    coord_frame_unref(hint);
}

/* A shared frame: ZeroMQ holds a reference until it has sent the bytes
 * (zmq_msg_init_data, no copy); the caller keeps its own. */
static enum fl_err send_shared_cb(void *ctx, const uint8_t *rid,
                                  size_t rid_len, struct coord_frame *f)
{
    struct server *s = ctx;
    zmq_msg_t msg;
    union {
        const uint8_t *c;
        uint8_t *m;
    } data = {.c = coord_frame_data(f)};
    coord_frame_ref(f);
    if (zmq_msg_init_data(&msg, data.m, coord_frame_len(f), unref_frame,
                          f) != 0) {
        coord_frame_unref(f);
        return FL_ERR_NOMEM;
    }
    if (zmq_send(s->sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&msg, s->sock, ZMQ_DONTWAIT) < 0) {
        const int err = errno;
        zmq_msg_close(&msg);   /* drops our reference */
        fl_log(FL_LOG_NOTICE, "send of a %zu-byte chunk failed: %s",
               coord_frame_len(f), zmq_strerror(err));
        if (err == EHOSTUNREACH)
            return FL_ERR_UNKNOWN_DEVICE;
        if (err == EAGAIN)
            return FL_ERR_TIMEOUT;
        return FL_ERR_ZMQ;
    }
    return FL_OK;
}

/* Receive one message. 1 when one was handled, 0 when none is waiting,
 * -1 on a socket error. */
static int recv_one(struct server *s)
{
    zmq_msg_t rid, body, extra;
    size_t nextra = 0, extra_bytes = 0;
    int more;
    zmq_msg_init(&rid);
    if (zmq_msg_recv(&rid, s->sock, ZMQ_DONTWAIT) < 0) {
        const int err = errno;
        zmq_msg_close(&rid);
        if (err == EAGAIN || err == EINTR)
            return 0;
        zmq_fail("cannot receive");
        return -1;
    }
    if (!zmq_msg_more(&rid)) {
        zmq_msg_close(&rid);
        return 1;
    }
    zmq_msg_init(&body);
    if (zmq_msg_recv(&body, s->sock, 0) < 0) {
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
        return errno == EINTR ? 0 : -1;
    }
    more = zmq_msg_more(&body);
    while (more) {
        zmq_msg_init(&extra);
        if (zmq_msg_recv(&extra, s->sock, 0) < 0) {
            zmq_msg_close(&extra);
            break;
        }
        nextra++;
        extra_bytes += zmq_msg_size(&extra);
        more = zmq_msg_more(&extra);
        zmq_msg_close(&extra);
    }
    deliver(s, &rid, &body, nextra, extra_bytes);
    zmq_msg_close(&body);
    zmq_msg_close(&rid);
    return 1;
}

static int poll_timeout_ms(const struct server *s)
{
    const uint64_t dl = coord_engine_next_deadline(s->engine);
    const uint64_t now = fl_now_ns();
    if (dl == UINT64_MAX)
        return POLL_MAX_MS;
    if (dl <= now)
        return 0;
    const uint64_t ms = (dl - now + 999999) / 1000000;
    return ms > POLL_MAX_MS ? POLL_MAX_MS : (int)ms;
}

/* Wait up to timeout_ms for a message or a connection event and handle
 * what arrived. FL_ERR_ZMQ on a socket error. */
static enum fl_err poll_once(struct server *s, int timeout_ms)
{
    zmq_pollitem_t items[2] = {{.socket = s->sock, .events = ZMQ_POLLIN},
                               {.socket = s->mon, .events = ZMQ_POLLIN}};
    const int n = zmq_poll(items, 2, timeout_ms);
    if (n < 0)
        return errno == EINTR ? FL_OK : zmq_fail("zmq_poll failed");
    if (items[1].revents & ZMQ_POLLIN)
        read_monitor(s);
    if ((items[0].revents & ZMQ_POLLIN) == 0)
        return FL_OK;
    for (int i = 0; i < RECV_BATCH; i++) {
        const int r = recv_one(s);
        if (r < 0)
            return FL_ERR_ZMQ;
        if (r == 0)
            break;
    }
    return FL_OK;
}

static enum fl_err run_loop(struct server *s)
{
    coord_engine_start(s->engine, fl_now_ns());
    publish_state(s);
    while (coord_engine_tick(s->engine, fl_now_ns()) == COORD_RUNNING) {
        if (stop_signal != 0) {
            fl_log(FL_LOG_NOTICE, "signal %d: stopping", (int)stop_signal);
            coord_engine_stop(s->engine, fl_now_ns());
            break;
        }
        if (reload_signal != 0) {
            reload_signal = 0;
            reload_keys(s);
        }
        FL_FORWARD_ERR(poll_once(s, poll_timeout_ms(s)));
        count_admission(s);
        publish_state(s);
    }
    publish_state(s);
    return FL_OK;
}

/* After the Byes: a worker that was busy training reads its Bye only when
 * it is done, and a closed socket would take the unread Bye with it. So
 * keep serving (late updates and Hellos get a Bye again) until every peer
 * has disconnected, at most the round timeout clamped to [5 s, 30 s], 1 s
 * after a signal, and not at all after a second signal. */
static void drain(struct server *s)
{
    const int signals = signal_count;
    double grace = FL_MIN(FL_MAX(s->cfg->round_timeout, DRAIN_MIN_S),
                          DRAIN_MAX_S);
    if (coord_engine_status(s->engine) == COORD_STOPPED)
        grace = DRAIN_STOP_S;
    const uint64_t end = fl_now_ns() + (uint64_t)(grace * 1e9);
    read_monitor(s);
    while (s->peers > 0 && signal_count == signals) {
        const uint64_t now = fl_now_ns();
        if (now >= end) {
            fl_log(FL_LOG_NOTICE, "%d peers still connected %.1f s after "
                   "the bye: closing", s->peers, grace);
            return;
        }
        const uint64_t ms = (end - now) / 1000000 + 1;
        if (poll_once(s, ms > POLL_MAX_MS ? POLL_MAX_MS : (int)ms) != FL_OK)
            return;
        publish_state(s);
    }
}

static void release(struct server *s)
{
    coord_engine_destroy(&s->engine);
    if (s->sock != NULL && s->mon != NULL)
        zmq_socket_monitor(s->sock, NULL, 0);
    if (s->mon != NULL)
        zmq_close(s->mon);
    if (s->sock != NULL)
        zmq_close(s->sock);
    coord_zap_destroy(&s->zap);
    coord_ratelim_destroy(&s->rl);
    if (s->zctx != NULL) {
        while (zmq_ctx_term(s->zctx) != 0 && errno == EINTR)
            ;
    }
    coord_metrics_destroy(&s->metrics);
    coord_report_close(&s->report);
    coord_ckpt_release(&s->ck);
    mdl_trainer_destroy(&s->trainer);
    mdl_dataset_destroy(&s->test);
    fl_free(s->init);
}

enum fl_err coord_server_run(const struct coord_config *cfg,
                             enum coord_status *status)
{
    struct server s;
    struct coord_summary sum;
    char err[512] = "";
    enum fl_err rc = FL_OK;
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    *status = COORD_FAILED;
    stop_signal = 0;
    signal_count = 0;
    mdl_blas_single_thread();
    rc = install_signals();
    if (rc == FL_OK)
        rc = load_model(&s);
    if (rc == FL_OK)
        rc = load_checkpoint(&s);
    if (rc != FL_OK)
        goto out;
    rc = coord_report_open(cfg->report_dir, &s.report, err, sizeof(err));
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "%s", err);
        goto out;
    }
    rc = open_metrics(&s);
    if (rc != FL_OK)
        goto out;
    const struct coord_engine_env env = {
        .cfg = cfg,
        .layout = mdl_trainer_layout(s.trainer),
        .init = s.init,
        .io = {.ctx = &s, .send = send_cb, .send_shared = send_shared_cb,
               .evaluate = evaluate_cb,
               .checkpoint = cfg->state_dir != NULL ? checkpoint_cb : NULL},
        .report = s.report,
        .progress = stderr,
        .epoch = draw_epoch(),
        .metrics = s.metrics,
    };
    rc = coord_engine_new(&env, &s.engine);
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "cannot start the coordinator: %s",
               fl_strerror(rc));
        goto out;
    }
    rc = resume_engine(&s);
    if (rc != FL_OK)
        goto out;
    rc = open_socket(&s);
    if (rc != FL_OK)
        goto out;
    rc = run_loop(&s);
    if (rc != FL_OK && coord_engine_status(s.engine) == COORD_RUNNING)
        coord_engine_stop(s.engine, fl_now_ns());
    if (rc == FL_OK)
        drain(&s);
    count_admission(&s);
    if (s.revoked_dropped > 0)
        fl_log(FL_LOG_NOTICE, "%llu messages of revoked keys dropped",
               (unsigned long long)s.revoked_dropped);
    *status = coord_engine_status(s.engine);
    coord_engine_summary(s.engine, fl_now_ns(), &sum);
    if (rc != FL_OK)
        sum.outcome = "failed";
    if (coord_report_summary(s.report, &sum, stdout) != FL_OK)
        fl_log(FL_LOG_ERR, "cannot write summary.txt");
out:
    release(&s);
    return rc;
}
