/*
 * Unit tests for worker/wrk_client: the worker's protocol loop against a
 * scripted fake coordinator (a ROUTER socket in the test thread; the client
 * runs in its own thread). Covers what the end-to-end tests cannot easily
 * provoke: a Reject of the pending round, a verdict arriving twice, a
 * delta against a version the device does not hold, a Task from another
 * epoch, a coordinator restart, garbage and multi-frame messages, a layout
 * the device cannot use, the hello timeout and a stop request.
 *
 * Data: a tiny generated IDX set (40 images of 2x2 pixels), so the model is
 * a 4-8-10 MLP. Every receive has a timeout and alarm() is a watchdog; no
 * sleeps, no fixed ports. cmocka asserts only in the test thread.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "common/fl_log.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "model/mdl_trainer.h"
#include "proto/pb_msg.h"
#include "proto/pb_xfer.h"
#include "worker/wrk_client.h"
#include "worker/wrk_model.h"
#include "worker/wrk_state.h"
#include "worker/wrk_stats.h"
#include "worker/wrk_update.h"
#include "fixture_bytes.h"

#define NSAMP 40
#define E1 0x1111111111111111ULL
#define E2 0x2222222222222222ULL

static char dir[] = "/tmp/test_wrk_client.XXXXXX";
static char log_path[256];

/* ------------------------------------------------------------ fixtures */

/* a learnable pattern: the label in pixel 0, noise elsewhere */
static void label_pixels(uint32_t i, uint8_t px[4])
{
    px[0] = (uint8_t)((i % 10) * 25);
    px[1] = (uint8_t)((i * 37) % 256);
    px[2] = (uint8_t)((i * 91) % 256);
    px[3] = 128;
}

static int group_setup(void **state)
{
    (void)state;
    alarm(120); /* watchdog for the whole file */
    if (mkdtemp(dir) == NULL || fb_write_idx(dir, NSAMP, label_pixels) != 0)
        return -1;
    snprintf(log_path, sizeof(log_path), "%s/worker.log", dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char path[300];
    static const char *const names[] = {"train-labels-idx1-ubyte",
                                        "train-images-idx3-ubyte",
                                        "worker.log", "none.ipc",
                                        "stats.csv", WRK_STATE_FILE};
    for (size_t i = 0; i < FL_ARRAY_LEN(names); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}

/* ---------------------------------------------------- fake coordinator */

struct fake {
    void *ctx;
    void *router;
    char ep[256];
    uint8_t rid[256];
    size_t rid_len;
    struct mdl_trainer *trainer;
    struct pb_layout_entry layout[MDL_MAX_TENSORS];
    size_t nlayout;
    size_t dim;
    float *w;
    struct cmp_ctx *cctx;
};

static void fake_open_h(struct fake *f, uint32_t input, uint32_t hidden)
{
    struct mdl_mlp_config cfg = {input, 1, {hidden}, 10};
    const int timeout = 10000, zero = 0;
    size_t len = sizeof(f->ep);
    memset(f, 0, sizeof(*f));
    f->ctx = zmq_ctx_new();
    f->router = zmq_socket(f->ctx, ZMQ_ROUTER);
    assert_non_null(f->router);
    zmq_setsockopt(f->router, ZMQ_RCVTIMEO, &timeout, sizeof(int));
    zmq_setsockopt(f->router, ZMQ_LINGER, &zero, sizeof(int));
    assert_int_equal(zmq_bind(f->router, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(zmq_getsockopt(f->router, ZMQ_LAST_ENDPOINT, f->ep,
                                    &len),
                     0);
    assert_int_equal(mdl_trainer_new_mlp(&cfg, &f->trainer), FL_OK);
    const struct mdl_layout *ml = mdl_trainer_layout(f->trainer);
    f->nlayout = ml->ntensors;
    f->dim = ml->dim;
    for (size_t i = 0; i < ml->ntensors; i++) {
        f->layout[i].name = ml->tensors[i].name;
        f->layout[i].offset = ml->tensors[i].offset;
        f->layout[i].nshape = ml->tensors[i].ndim;
        f->layout[i].shape[0] = ml->tensors[i].shape[0];
        f->layout[i].shape[1] = ml->tensors[i].shape[1];
    }
    f->w = calloc(f->dim, sizeof(float));
    assert_non_null(f->w);
    mdl_trainer_init_params(f->trainer, 3, f->w);
    f->cctx = cmp_ctx_new();
    assert_non_null(f->cctx);
}

static void fake_open(struct fake *f, uint32_t input)
{
    fake_open_h(f, input, 8);
}

static void fake_close(struct fake *f)
{
    zmq_close(f->router);
    zmq_ctx_term(f->ctx);
    mdl_trainer_destroy(&f->trainer);
    cmp_ctx_destroy(&f->cctx);
    free(f->w);
}

/* Receive one envelope; caller destroys *msg. *len (may be NULL) gets the
 * frame's size. */
static const struct pb_envelope *fake_recv_any(struct fake *f,
                                               struct pb_msg **msg,
                                               size_t *len)
{
    const struct pb_limits lim = {1u << 24, 1u << 26};
    const struct pb_envelope *env = NULL;
    uint8_t buf[1 << 16];
    const int n = zmq_recv(f->router, f->rid, sizeof(f->rid), 0);
    if (n < 0)
        fail_msg("no message from the worker: %s", zmq_strerror(errno));
    f->rid_len = (size_t)n;
    const int m = zmq_recv(f->router, buf, sizeof(buf), 0);
    assert_true(m > 0 && (size_t)m <= sizeof(buf));
    assert_int_equal(pb_unpack(buf, (size_t)m, &lim, msg, &env, NULL, NULL,
                               0),
                     FL_OK);
    if (len != NULL)
        *len = (size_t)m;
    return env;
}

/* Receive one envelope of the expected body; caller destroys *msg. */
static const struct pb_envelope *fake_recv(struct fake *f, enum pb_body want,
                                           struct pb_msg **msg)
{
    const struct pb_envelope *env = fake_recv_any(f, msg, NULL);
    if (env->body != want)
        fail_msg("got %s, expected %s", pb_body_name(env->body),
                 pb_body_name(want));
    return env;
}

static void fake_send_raw(struct fake *f, const void *data, size_t len,
                          int more)
{
    assert_int_equal(zmq_send(f->router, f->rid, f->rid_len, ZMQ_SNDMORE),
                     (int)f->rid_len);
    assert_int_equal(zmq_send(f->router, data, len, more), (int)len);
}

static void fake_send(struct fake *f, const struct pb_envelope *env)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(pb_pack_alloc(env, &buf, &len), FL_OK);
    fake_send_raw(f, buf, len, 0);
    free(buf);
}

/* Reject{code, reason} (and its round, when has_round) to the worker. */
static void fake_reject(struct fake *f, enum fl_err code, const char *reason,
                        bool has_round, uint64_t round)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_REJECT;
    env.reject.code = code;
    env.reject.reason = reason;
    env.reject.has_round = has_round;
    env.reject.round = round;
    fake_send(f, &env);
}

static void fake_welcome_chunks(struct fake *f, uint64_t epoch,
                                uint32_t chunk_bytes, uint32_t window)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_WELCOME;
    env.welcome.epoch = epoch;
    env.welcome.device_id = "t1";
    env.welcome.dimension = f->dim;
    env.welcome.layout = f->layout;
    env.welcome.nlayout = f->nlayout;
    env.welcome.heartbeat_ms = 1000;
    env.welcome.current_round = 1;
    env.welcome.chunk_bytes = chunk_bytes;
    env.welcome.chunk_window = window;
    fake_send(f, &env);
}

static void fake_welcome(struct fake *f, uint64_t epoch)
{
    fake_welcome_chunks(f, epoch, 0, 0);
}

/* Send a Task; base != NULL makes the model a XOR delta from base_version. */
static bool task_allow_overrides;

static void fake_task(struct fake *f, uint64_t round, uint64_t epoch,
                      uint64_t version, const float *base,
                      uint64_t base_version, uint32_t last,
                      uint64_t last_round)
{
    struct pb_envelope env;
    struct cmp_meta meta;
    const uint8_t *payload = NULL;
    size_t len = 0;
    assert_int_equal(cmp_dense_encode(f->cctx, f->w, f->dim, base,
                                      CMP_CODEC_ZSTD, 3, &meta, &payload,
                                      &len),
                     FL_OK);
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_TASK;
    struct pb_task *t = &env.task;
    t->round = round;
    t->epoch = epoch;
    t->model_version = version;
    wrk_pb_from_meta(&meta, payload, len, &t->model);
    t->model.has_base_version = base != NULL;
    t->model.base_version = base_version;
    t->train.local_epochs = 1;
    t->train.batch_size = 8;
    t->train.lr = 0.1f;
    t->train.momentum = 0.9f;
    t->train.seed = 5;
    t->compress.density = 0.1f;
    t->compress.topk = CMP_TOPK_EXACT;
    t->compress.values = CMP_VALUE_FP32;
    t->compress.codec = CMP_CODEC_ZSTD;
    t->compress.level = 3;
    t->compress.error_feedback = true;
    t->timeout_ms = 10000;
    t->last_update = last;
    t->last_update_round = last_round;
    t->allow_overrides = task_allow_overrides;
    fake_send(f, &env);
}

/* Receive an Update for `round` and check it decodes against the model,
 * with k from `density` and the settings the fake asked for otherwise. */
static void expect_update_d(struct fake *f, uint64_t round, float density,
                            enum cmp_value_coding values)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = fake_recv(f, PB_BODY_UPDATE, &msg);
    const struct pb_update *u = &env->update;
    struct cmp_meta meta;
    const struct cmp_limits lim = {f->dim, 0, 0};
    const uint32_t *idx = NULL;
    const float *val = NULL;
    size_t k = 0;
    assert_int_equal(u->round, round);
    assert_int_equal(u->n_samples, NSAMP);
    wrk_meta_from_pb(&u->delta, false, &meta);
    assert_int_equal(cmp_sparse_decode(f->cctx, &meta, u->delta.payload,
                                       u->delta.payload_len, &lim, &idx,
                                       &val, &k),
                     FL_OK);
    assert_int_equal(k, wrk_update_k(density, f->dim));
    assert_true(u->stats.steps > 0);
    assert_true(u->stats.peak_rss_kb > 0);
    assert_true(u->has_used);
    assert_true(u->used.density == density);
    assert_int_equal(u->used.values, values);
    assert_int_equal(u->used.codec, CMP_CODEC_ZSTD);
    assert_true(u->used.error_feedback);
    pb_msg_destroy(&msg);
}

static void expect_update(struct fake *f, uint64_t round)
{
    expect_update_d(f, round, 0.1f, CMP_VALUE_FP32);
}

static void expect_hello(struct fake *f, bool has_version, uint64_t version,
                         bool has_epoch, uint64_t epoch)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = fake_recv(f, PB_BODY_HELLO, &msg);
    const struct pb_hello *h = &env->hello;
    assert_string_equal(h->device_id, "t1");
    assert_int_equal(h->n_samples, NSAMP);
    assert_int_equal(h->codecs_mask, (1u << 1) | (1u << 2) | (1u << 3));
    assert_int_equal(h->has_model_version, has_version);
    if (has_version)
        assert_int_equal(h->model_version, version);
    assert_int_equal(h->has_epoch, has_epoch);
    if (has_epoch)
        assert_int_equal(h->epoch, epoch);
    assert_non_null(h->software);
    assert_string_equal(h->software, WRK_VERSION_STRING);
    pb_msg_destroy(&msg);
}

/* ------------------------------------------------------- client thread */

struct runner {
    struct wrk_config cfg;
    struct wrk_client *client;
    pthread_t thread;
    int code;
    FILE *log;
};

static void *run_client(void *arg)
{
    struct runner *r = arg;
    r->code = wrk_client_run(r->client);
    return NULL;
}

/* Start a client on r->cfg (defaults unless keep_cfg) against ep. */
static void runner_start_cfg(struct runner *r, const char *ep, bool keep_cfg)
{
    if (!keep_cfg)
        wrk_config_defaults(&r->cfg);
    snprintf(r->cfg.connect, sizeof(r->cfg.connect), "%s", ep);
    snprintf(r->cfg.id, sizeof(r->cfg.id), "t1");
    snprintf(r->cfg.data_dir, sizeof(r->cfg.data_dir), "%s", dir);
    /* a new device each time: no update state from an earlier test */
    snprintf(r->cfg.state_dir, sizeof(r->cfg.state_dir), "%s", dir);
    char state_path[300];
    snprintf(state_path, sizeof(state_path), "%s/%s", dir, WRK_STATE_FILE);
    unlink(state_path);
    r->log = fopen(log_path, "w");
    assert_non_null(r->log);
    fl_log_init("worker", r->log);
    fl_log_set_level(FL_LOG_DEBUG);
    assert_int_equal(wrk_client_new(&r->cfg, &r->client), FL_OK);
    assert_int_equal(pthread_create(&r->thread, NULL, run_client, r), 0);
}

static void runner_start(struct runner *r, const char *ep)
{
    runner_start_cfg(r, ep, false);
}

static int runner_join(struct runner *r)
{
    assert_int_equal(pthread_join(r->thread, NULL), 0);
    wrk_client_destroy(&r->client);
    assert_null(r->client);
    fl_log_init("worker", NULL);
    fclose(r->log);
    return r->code;
}

/* Lines of the worker's log matching `needle`. */
static int log_count(const char *needle)
{
    char line[2048];
    int n = 0;
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, needle) != NULL)
            n++;
    }
    fclose(f);
    return n;
}

static void expect_log(const char *needle, int times)
{
    const int n = log_count(needle);
    if (n != times) {
        char line[2048];
        FILE *f = fopen(log_path, "r");
        while (f != NULL && fgets(line, sizeof(line), f) != NULL)
            fprintf(stderr, "  log: %s", line);
        if (f != NULL)
            fclose(f);
        fail_msg("log has '%s' %d times, expected %d", needle, n, times);
    }
}

/* --------------------------------------------------------------- tests */

/* A worker joined (Hello without a model, Welcome of epoch E1) that has
 * answered round 1's Task (full model). */
static void join_round1(struct fake *f, struct runner *r)
{
    fake_open(f, 4);
    runner_start(r, f->ep);
    expect_hello(f, false, 0, false, 0);
    fake_welcome(f, E1);
    fake_task(f, 1, E1, 1, NULL, 0, PB_UPDATE_NONE, 0);
    expect_update(f, 1);
}

static void test_protocol_paths(void **state)
{
    (void)state;
    struct fake f;
    struct runner r;
    struct pb_envelope env;
    fake_open(&f, 4);
    runner_start(&r, f.ep);

    /* join: Hello without a model, Welcome */
    expect_hello(&f, false, 0, false, 0);
    fake_welcome(&f, E1);

    /* round 1, full model */
    fake_task(&f, 1, E1, 1, NULL, 0, PB_UPDATE_NONE, 0);
    expect_update(&f, 1);

    /* garbage and a two-frame message are dropped, nothing breaks */
    fake_send_raw(&f, "\xff\xfe\xfd", 3, 0);
    fake_send_raw(&f, "a", 1, ZMQ_SNDMORE);
    assert_int_equal(zmq_send(f.router, "b", 1, 0), 1);

    /* the coordinator rejects round 1; the next Task says NOT_USED again */
    fake_reject(&f, FL_ERR_LATE, "update arrived after the round closed",
                true, 1);
    float *v1 = malloc(f.dim * sizeof(float));
    assert_non_null(v1);
    memcpy(v1, f.w, f.dim * sizeof(float));
    f.w[0] += 1.0f;
    f.w[f.dim - 1] -= 0.5f;
    fake_task(&f, 2, E1, 2, v1, 1, PB_UPDATE_NOT_USED, 1);
    expect_update(&f, 2);

    /* a delta from a version the device does not hold: Hello with the
     * version it holds (2), so the coordinator can send what fits */
    fake_task(&f, 3, E1, 9, v1, 8, PB_UPDATE_USED, 2);
    expect_hello(&f, true, 2, true, E1);
    fake_welcome(&f, E1);
    fake_task(&f, 3, E1, 3, NULL, 0, PB_UPDATE_USED, 2);
    expect_update(&f, 3);

    /* a Task from another epoch: Hello again, then the restart's Welcome
     * (current round 1): round 3's update was not committed before the
     * restart, so it goes back into the residual, and the model held is
     * not trusted any more */
    fake_task(&f, 4, E2, 1, NULL, 0, PB_UPDATE_NONE, 0);
    expect_hello(&f, true, 3, true, E1);
    fake_welcome(&f, E2);
    fake_task(&f, 4, E2, 2, v1, 1, PB_UPDATE_NONE, 0);
    expect_hello(&f, false, 0, true, E2);
    fake_welcome(&f, E2);
    fake_task(&f, 4, E2, 1, NULL, 0, PB_UPDATE_NONE, 0);
    expect_update(&f, 4);

    /* Bye with the fate of round 4 */
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_BYE;
    env.bye.reason = "training complete";
    env.bye.last_update = PB_UPDATE_USED;
    env.bye.last_update_round = 4;
    fake_send(&f, &env);
    assert_int_equal(runner_join(&r), WRK_EXIT_OK);

    expect_log("info: joined ", 4);
    expect_log("sent update round 1:", 1);
    expect_log("cannot parse a message of 3 bytes", 1);
    expect_log("dropped a message of 2 frames", 1);
    expect_log("coordinator rejected a message (round 1): late", 1);
    /* restored once, although Reject and Task both said so */
    expect_log("update of round 1 was not used: restored into the residual",
               1);
    expect_log("update of round 1 was used", 0);
    expect_log("(k=13, residual norm", 2); /* rounds 1 and 3 */
    expect_log(") (rejected)", 1); /* restored by the Reject, not the Task */
    expect_log("update of round 2 was used", 1);
    expect_log("which this device does not hold", 2);
    expect_log("saying hello again", 1);
    expect_log("coordinator restarted", 1);
    expect_log("update of round 3 was not used: restored into the residual",
               1);
    expect_log("(not committed before the coordinator restart)", 1);
    expect_log("no saved update state in", 1);
    expect_log("cannot save the update state", 0);
    expect_log("update of round 4 was used", 1);
    expect_log("coordinator said bye: training complete", 1);
    free(v1);
    fake_close(&f);
}

static void test_task_closes_round_without_update(void **state)
{
    (void)state;
    struct fake f;
    struct runner r;
    struct pb_envelope env;
    join_round1(&f, &r);
    /* the same Task again (a re-sent Task after a Hello or in a retry
     * attempt): answered with the very same update, not trained again */
    fake_task(&f, 1, E1, 1, NULL, 0, PB_UPDATE_NONE, 0);
    expect_update(&f, 1);
    /* round 2's Task names no fate for round 1 but NONE: the round closed
     * without the update, so it was not used */
    fake_task(&f, 2, E1, 2, NULL, 0, PB_UPDATE_NONE, 0);
    expect_update(&f, 2);
    /* round 3's Task has no last_update at all: fate unknown */
    fake_task(&f, 3, E1, 3, NULL, 0, 0, 0);
    expect_update(&f, 3);
    /* a late verdict for round 2 changes nothing any more */
    fake_task(&f, 4, E1, 4, NULL, 0, PB_UPDATE_USED, 3);
    expect_update(&f, 4);
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_BYE;
    fake_send(&f, &env);
    assert_int_equal(runner_join(&r), WRK_EXIT_OK);
    expect_log("update of round 1 was not used: restored into the residual"
               " (k=",
               1);
    expect_log("sent update round 1 again: ", 1);
    expect_log("sent update round 1:", 1);
    expect_log("says nothing about the update of round 2", 1);
    expect_log("update of round 3 was used", 1);
    expect_log("fate of the update of round 4 is unknown", 1);
    fake_close(&f);
}

static void test_overrides_only_when_allowed(void **state)
{
    (void)state;
    struct fake f;
    struct runner r;
    struct pb_envelope env;
    fake_open(&f, 4);
    wrk_config_defaults(&r.cfg);
    r.cfg.overrides.has_density = true;
    r.cfg.overrides.density = 0.5f;
    r.cfg.overrides.has_values = true;
    r.cfg.overrides.values = CMP_VALUE_FP16;
    runner_start_cfg(&r, f.ep, true);
    expect_hello(&f, false, 0, false, 0);
    fake_welcome(&f, E1);
    task_allow_overrides = false;
    fake_task(&f, 1, E1, 1, NULL, 0, PB_UPDATE_NONE, 0);
    expect_update_d(&f, 1, 0.1f, CMP_VALUE_FP32);
    fake_task(&f, 2, E1, 2, NULL, 0, PB_UPDATE_USED, 1);
    expect_update_d(&f, 2, 0.1f, CMP_VALUE_FP32);
    task_allow_overrides = true;
    fake_task(&f, 3, E1, 3, NULL, 0, PB_UPDATE_USED, 2);
    expect_update_d(&f, 3, 0.5f, CMP_VALUE_FP16);
    task_allow_overrides = false;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_BYE;
    fake_send(&f, &env);
    assert_int_equal(runner_join(&r), WRK_EXIT_OK);
    expect_log("--density/--topk/--values/--codec are ignored", 1);
    fake_close(&f);
}

static void test_unusable_layout_exits_1(void **state)
{
    (void)state;
    struct fake f;
    struct runner r;
    fake_open(&f, 5); /* the data has 4 pixels per image */
    runner_start(&r, f.ep);
    expect_hello(&f, false, 0, false, 0);
    fake_welcome(&f, E1);
    assert_int_equal(runner_join(&r), WRK_EXIT_ERROR);
    expect_log("cannot use the coordinator's model: model takes 5 inputs", 1);
    fake_close(&f);
}

static void test_refused_device_exits_1(void **state)
{
    (void)state;
    struct fake f;
    struct runner r;
    fake_open(&f, 4);
    runner_start(&r, f.ep);
    expect_hello(&f, false, 0, false, 0);
    fake_reject(&f, FL_ERR_SAMPLES, "too many samples", false, 0);
    assert_int_equal(runner_join(&r), WRK_EXIT_ERROR);
    expect_log("the coordinator refuses this device", 1);
    fake_close(&f);
}

static void test_hello_timeout_exits_3(void **state)
{
    (void)state;
    struct runner r;
    char ep[300];
    snprintf(ep, sizeof(ep), "ipc://%s/none.ipc", dir);
    wrk_config_defaults(&r.cfg);
    r.cfg.hello_timeout_s = 1;
    snprintf(r.cfg.connect, sizeof(r.cfg.connect), "%s", ep);
    snprintf(r.cfg.id, sizeof(r.cfg.id), "t1");
    snprintf(r.cfg.data_dir, sizeof(r.cfg.data_dir), "%s", dir);
    r.log = fopen(log_path, "w");
    assert_non_null(r.log);
    fl_log_init("worker", r.log);
    const uint64_t t0 = fl_now_ns();
    assert_int_equal(wrk_client_new(&r.cfg, &r.client), FL_OK);
    assert_int_equal(wrk_client_run(r.client), WRK_EXIT_NO_WELCOME);
    const uint64_t ms = (fl_now_ns() - t0) / 1000000;
    wrk_client_destroy(&r.client);
    fl_log_init("worker", NULL);
    fclose(r.log);
    assert_true(ms >= 900 && ms < 5000);
    expect_log("no welcome from", 1);
}

static void test_missing_data_fails(void **state)
{
    (void)state;
    struct wrk_config cfg;
    struct wrk_client *c = NULL;
    FILE *log = fopen(log_path, "w");
    assert_non_null(log);
    fl_log_init("worker", log);
    wrk_config_defaults(&cfg);
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s/nowhere", dir);
    snprintf(cfg.id, sizeof(cfg.id), "t1");
    assert_int_not_equal(wrk_client_new(&cfg, &c), FL_OK);
    assert_null(c);
    fl_log_init("worker", NULL);
    fclose(log);
    expect_log("cannot load the training data", 1);
}

/* ------------------------------------------------- chunked transfers */

#define CHUNK 1024u

/* What a Task of the chunked tests asks for. */
struct xtask {
    uint64_t transfer;          /* != 0: the model comes in chunks */
    float density;
    enum cmp_value_coding values;
    enum cmp_codec codec;
    uint32_t timeout_ms;
};

/* A dense fp32 update without codec: over one chunk for the wide model */
static const struct xtask X_DENSE = {0, 1.0f, CMP_VALUE_FP32, CMP_CODEC_NONE,
                                     10000};
/* 1% top-k with zstd: one small inline frame */
static const struct xtask X_SMALL = {0, 0.01f, CMP_VALUE_FP32,
                                     CMP_CODEC_ZSTD, 10000};

/* Send a Task; the model is encoded without a codec. With x->transfer the
 * model is only announced and its bytes go to *model (caller frees). */
static void fake_task_x(struct fake *f, uint64_t round, uint64_t version,
                        uint32_t last, uint64_t last_round,
                        const struct xtask *x, uint8_t **model,
                        size_t *model_len)
{
    struct pb_envelope env;
    struct cmp_meta meta;
    const uint8_t *payload = NULL;
    size_t len = 0;
    assert_int_equal(cmp_dense_encode(f->cctx, f->w, f->dim, NULL,
                                      CMP_CODEC_NONE, 0, &meta, &payload,
                                      &len),
                     FL_OK);
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_TASK;
    struct pb_task *t = &env.task;
    t->round = round;
    t->epoch = E1;
    t->model_version = version;
    wrk_pb_from_meta(&meta, payload, len, &t->model);
    if (x->transfer != 0) {
        *model = malloc(len);
        assert_non_null(*model);
        memcpy(*model, payload, len);
        *model_len = len;
        t->model.payload = NULL;
        t->model.payload_len = 0;
        t->model.payload_transfer = x->transfer;
        t->model.payload_bytes = len;
    }
    t->train.local_epochs = 1;
    t->train.batch_size = 8;
    t->train.lr = 0.1f;
    t->train.seed = 5;
    t->compress.density = x->density;
    t->compress.topk = CMP_TOPK_EXACT;
    t->compress.values = x->values;
    t->compress.codec = x->codec;
    t->compress.level = 1;
    t->compress.error_feedback = true;
    t->timeout_ms = x->timeout_ms;
    t->last_update = last;
    t->last_update_round = last_round;
    fake_send(f, &env);
}

static void fake_chunk(struct fake *f, uint64_t transfer, uint32_t seq,
                       uint32_t total, const uint8_t *data, size_t len)
{
    uint8_t *buf = NULL;
    size_t blen = 0;
    assert_int_equal(pb_xfer_pack_chunk(transfer, seq, total, data, len, &buf,
                                        &blen),
                     FL_OK);
    fake_send_raw(f, buf, blen, 0);
    free(buf);
}

static void fake_credit(struct fake *f, uint64_t transfer, uint32_t received,
                        bool cancel)
{
    uint8_t *buf = NULL;
    size_t blen = 0;
    assert_int_equal(pb_xfer_pack_credit(transfer, received, cancel, &buf,
                                         &blen),
                     FL_OK);
    fake_send_raw(f, buf, blen, 0);
    free(buf);
}

/* Chunk seq of a model m of len bytes. */
static void fake_model_chunk(struct fake *f, uint64_t transfer,
                             const uint8_t *m, size_t len, uint32_t seq)
{
    fake_chunk(f, transfer, seq, pb_xfer_chunks(len, CHUNK),
               m + (size_t)seq * CHUNK, pb_xfer_chunk_len(len, CHUNK, seq));
}

static void expect_credit(struct fake *f, uint64_t transfer,
                          uint32_t received, bool cancel)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = fake_recv(f, PB_BODY_CREDIT, &msg);
    assert_int_equal(env->credit.transfer, transfer);
    assert_int_equal(env->credit.received, received);
    assert_int_equal(env->credit.cancel, cancel);
    pb_msg_destroy(&msg);
}

/* Send the model as the coordinator does: `window` chunks at once, then
 * one per Credit, from chunk `from` on; every Credit is checked. */
static void fake_send_model(struct fake *f, uint64_t transfer,
                            const uint8_t *m, size_t len, uint32_t window,
                            uint32_t from)
{
    const uint32_t total = pb_xfer_chunks(len, CHUNK);
    uint32_t sent = from;
    for (uint32_t acked = from; acked < total; acked++) {
        for (; sent < total && sent < acked + window; sent++)
            fake_model_chunk(f, transfer, m, len, sent);
        expect_credit(f, transfer, acked + 1, false);
    }
}

/* An announced Update of `round`: *delta gets its fields (no payload),
 * *bytes the frame size. */
static void expect_announcement(struct fake *f, uint64_t round,
                                struct pb_tensor *delta, size_t *bytes)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = fake_recv_any(f, &msg, bytes);
    if (env->body != PB_BODY_UPDATE)
        fail_msg("got %s, expected an update", pb_body_name(env->body));
    assert_int_equal(env->update.round, round);
    *delta = env->update.delta;
    assert_int_equal(delta->payload_len, 0);
    assert_true(delta->payload_transfer != 0);
    assert_true(delta->payload_bytes > CHUNK);
    delta->payload = NULL;
    pb_msg_destroy(&msg);
}

/* No message from the worker within ms (a bounded check of silence). */
static void expect_silence(struct fake *f, long ms)
{
    zmq_pollitem_t it = {f->router, 0, ZMQ_POLLIN, 0};
    assert_int_equal(zmq_poll(&it, 1, ms), 0);
}

/* Take in a chunk of `transfer`; returns its frame size. */
static size_t take_chunk(struct fake *f, struct pb_xfer_rx *rx, bool *done)
{
    struct pb_msg *msg = NULL;
    size_t len = 0;
    const struct pb_envelope *env = fake_recv_any(f, &msg, &len);
    if (env->body != PB_BODY_CHUNK)
        fail_msg("got %s, expected a chunk", pb_body_name(env->body));
    assert_int_equal(pb_xfer_rx_add(rx, &env->chunk, done), FL_OK);
    pb_msg_destroy(&msg);
    return len;
}

/* Play the coordinator's side of an upload: the first Credit, then
 * `window` chunks and silence until the next Credit, then a Credit per
 * chunk. The payload must decode to an update of density 1. Returns the
 * bytes of the chunk frames. */
static size_t fake_take_upload(struct fake *f, const struct pb_tensor *d,
                               uint32_t window)
{
    struct pb_xfer_rx rx;
    struct cmp_meta meta;
    const struct cmp_limits lim = {f->dim, 0, 0};
    const uint32_t *idx = NULL;
    const float *val = NULL;
    uint8_t *payload = NULL;
    size_t bytes = 0, len = 0, k = 0;
    bool done = false;
    memset(&rx, 0, sizeof(rx));
    assert_int_equal(pb_xfer_rx_begin(&rx, d->payload_transfer,
                                      d->payload_bytes, CHUNK,
                                      d->payload_bytes),
                     FL_OK);
    fake_credit(f, d->payload_transfer, 0, false);
    for (uint32_t i = 0; i < window && !done; i++)
        bytes += take_chunk(f, &rx, &done);
    if (!done)
        expect_silence(f, 200); /* the window is full */
    while (!done) {
        fake_credit(f, d->payload_transfer, rx.received, false);
        bytes += take_chunk(f, &rx, &done);
    }
    fake_credit(f, d->payload_transfer, rx.received, false);
    assert_int_equal(pb_xfer_rx_take(&rx, &payload, &len), FL_OK);
    wrk_meta_from_pb(d, false, &meta);
    assert_int_equal(cmp_sparse_decode(f->cctx, &meta, payload, len, &lim,
                                       &idx, &val, &k),
                     FL_OK);
    assert_int_equal(k, f->dim);
    free(payload);
    return bytes;
}

static void send_bye(struct fake *f, uint32_t last, uint64_t last_round)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_BYE;
    env.bye.last_update = last;
    env.bye.last_update_round = last_round;
    fake_send(f, &env);
}

/* Bounded wait (5 s) for a line of the worker's log. */
static void wait_log(const char *needle)
{
    for (int i = 0; i < 250; i++) {
        if (log_count(needle) > 0)
            return;
        const struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fail_msg("'%s' not logged within 5 s", needle);
}

static char *read_stats(void)
{
    char path[300];
    void *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/stats.csv", dir);
    assert_int_equal(fl_file_read(path, 1 << 20, &data, &len), FL_OK);
    char *s = realloc(data, len + 1);
    assert_non_null(s);
    s[len] = '\0';
    unlink(path);
    return s;
}

/* Messages a worker queued before a reconnection reach the coordinator on
 * the new connection before its Hello and are refused one by one
 * (UNKNOWN_DEVICE). One Hello answers them all: a Hello each would join
 * as often, and each join re-sends the open Task, which the worker
 * answers with a duplicate Update (seen in test_kill_workers: three
 * duplicates in a row had the worker ignored for 6 rounds). */
static void test_unknown_device_one_hello(void **state)
{
    (void)state;
    struct fake f;
    struct runner r;
    join_round1(&f, &r);
    fake_reject(&f, FL_ERR_UNKNOWN_DEVICE, "unknown device", true, 1);
    expect_hello(&f, true, 1, true, E1);
    /* three more refusals, each in its own poll of the worker; the next
     * Hello is not due for a second */
    for (int i = 0; i < 3; i++) {
        fake_reject(&f, FL_ERR_UNKNOWN_DEVICE, "unknown device", true,
                    1);
        expect_silence(&f, 60);
    }
    expect_silence(&f, 200);
    fake_welcome(&f, E1);
    fake_task(&f, 2, E1, 2, NULL, 0, PB_UPDATE_NOT_USED, 1);
    expect_update(&f, 2);
    /* welcomed again: a refusal now is a new reason to say Hello */
    fake_reject(&f, FL_ERR_UNKNOWN_DEVICE, "unknown device", true, 2);
    expect_hello(&f, true, 2, true, E1);
    send_bye(&f, 0, 0);
    assert_int_equal(runner_join(&r), WRK_EXIT_OK);
    expect_log("coordinator rejected a message (round 1): unknown_device", 4);
    expect_log("sent update round 1 again", 0);
    fake_close(&f);
}

/* The model both ways in chunks: down with credits after every chunk, up
 * announced, nothing before the first Credit, at most `window` chunks
 * ahead; the bytes logged and in --stats-csv are the frames sent. */
static void test_chunked_both_ways(void **state)
{
    (void)state;
    struct fake f;
    struct runner r;
    struct pb_tensor d;
    uint8_t *m = NULL;
    size_t mlen = 0, ann = 0;
    char needle[128];
    struct xtask x = X_DENSE;
    fake_open_h(&f, 4, 256); /* 3850 parameters: 15400 bytes of fp32 */
    wrk_config_defaults(&r.cfg);
    snprintf(r.cfg.stats_csv, sizeof(r.cfg.stats_csv), "%s/stats.csv", dir);
    runner_start_cfg(&r, f.ep, true);
    expect_hello(&f, false, 0, false, 0);
    fake_welcome_chunks(&f, E1, CHUNK, 2);

    x.transfer = 77;
    fake_task_x(&f, 1, 1, PB_UPDATE_NONE, 0, &x, &m, &mlen);
    assert_int_equal(mlen, f.dim * 4);
    fake_send_model(&f, 77, m, mlen, 2, 0);
    expect_announcement(&f, 1, &d, &ann);
    assert_int_equal(d.dimension, f.dim);
    assert_int_equal(d.k, f.dim);
    const size_t up = ann + fake_take_upload(&f, &d, 2);

    /* round 2: inline both ways */
    fake_task_x(&f, 2, 2, PB_UPDATE_USED, 1, &X_SMALL, NULL, NULL);
    expect_update_d(&f, 2, 0.01f, CMP_VALUE_FP32);
    send_bye(&f, PB_UPDATE_USED, 2);
    assert_int_equal(runner_join(&r), WRK_EXIT_OK);

    expect_log("chunked transfers: chunks of 1024 bytes, window 2", 1);
    expect_log("model of round 1 received: 15400 bytes in 16 chunks", 1);
    snprintf(needle, sizeof(needle), "sent update round 1: %zu bytes", up);
    expect_log(needle, 1);
    expect_log(" in 16 chunks, loss ", 1);
    expect_log("update of round 1 was used", 1);
    expect_log("update of round 2 was used", 1);
    expect_log("round 1 cost: load ", 1);
    expect_log("round 2 cost: load ", 1);
    expect_log("memory at start: ", 1);
    char *csv = read_stats();
    char *row1 = strchr(csv, '\n');
    assert_non_null(row1);
    *row1++ = '\0';
    assert_string_equal(csv, WRK_STATS_HEADER);
    /* round,load,train,encode,send,bytes,chunks,rss */
    unsigned long long rnd = 0, bytes = 0, rss = 0;
    double load = 0, train = 0, enc = 0, send = 0;
    unsigned chunks = 0;
    assert_int_equal(sscanf(row1, "%llu,%lf,%lf,%lf,%lf,%llu,%u,%llu", &rnd,
                            &load, &train, &enc, &send, &bytes, &chunks,
                            &rss),
                     8);
    assert_int_equal(rnd, 1);
    assert_int_equal(bytes, up);
    assert_int_equal(chunks, 16);
    assert_true(rss > 0 && train > 0.0 && load >= 0.0 && enc >= 0.0);
    assert_true(send >= 150.0); /* it waited out the full window */
    char *row2 = strchr(row1, '\n');
    assert_non_null(row2);
    assert_int_equal(sscanf(row2 + 1, "%llu,%lf,%lf,%lf,%lf,%llu,%u,%llu",
                            &rnd, &load, &train, &enc, &send, &bytes, &chunks,
                            &rss),
                     8);
    assert_int_equal(rnd, 2);
    assert_int_equal(chunks, 0);
    assert_true(bytes > 0 && bytes < CHUNK);
    free(csv);
    free(m);
    fake_close(&f);
}

/* A bad chunk, a cancelled upload, a coordinator that never grants credit,
 * a Reject during an upload, a download replaced by a new Task and a
 * left-over chunk: each handled once, no update restored twice. */
static void test_chunked_faults(void **state)
{
    (void)state;
    struct fake f;
    struct runner r;
    struct pb_tensor d;
    uint8_t *m = NULL;
    size_t mlen = 0, ann = 0;
    struct xtask x = X_DENSE;
    fake_open_h(&f, 4, 256);
    runner_start(&r, f.ep);
    expect_hello(&f, false, 0, false, 0);
    fake_welcome_chunks(&f, E1, CHUNK, 2);

    /* a chunk out of order: cancelled, then Hello for the Task again */
    x.transfer = 5;
    fake_task_x(&f, 1, 1, PB_UPDATE_NONE, 0, &x, &m, &mlen);
    fake_model_chunk(&f, 5, m, mlen, 0);
    expect_credit(&f, 5, 1, false);
    fake_model_chunk(&f, 5, m, mlen, 2);
    expect_credit(&f, 5, 1, true);
    expect_hello(&f, false, 0, true, E1);
    fake_welcome_chunks(&f, E1, CHUNK, 2);
    free(m);
    fake_task_x(&f, 1, 1, PB_UPDATE_NONE, 0, &x, &m, &mlen);
    fake_send_model(&f, 5, m, mlen, 2, 0);

    /* the coordinator cancels the upload; round 2's Task says not used */
    expect_announcement(&f, 1, &d, &ann);
    fake_credit(&f, d.payload_transfer, 0, true);
    struct xtask quick = X_DENSE;
    quick.timeout_ms = 300;
    fake_task_x(&f, 2, 2, PB_UPDATE_NOT_USED, 1, &quick, NULL, NULL);

    /* round 2: no credit ever; given up at the deadline and restored; a
     * late grant and round 3's NOT_USED change nothing more */
    expect_announcement(&f, 2, &d, &ann);
    wait_log("(no credit before the task's deadline)");
    fake_credit(&f, d.payload_transfer, 0, false);
    fake_task_x(&f, 3, 3, PB_UPDATE_NOT_USED, 2, &X_SMALL, NULL, NULL);
    expect_update_d(&f, 3, 0.01f, CMP_VALUE_FP32);

    /* round 4: rejected after the first window */
    fake_task_x(&f, 4, 4, PB_UPDATE_USED, 3, &X_DENSE, NULL, NULL);
    expect_announcement(&f, 4, &d, &ann);
    fake_credit(&f, d.payload_transfer, 0, false);
    struct pb_xfer_rx rx;
    bool done = false;
    memset(&rx, 0, sizeof(rx));
    assert_int_equal(pb_xfer_rx_begin(&rx, d.payload_transfer,
                                      d.payload_bytes, CHUNK,
                                      d.payload_bytes),
                     FL_OK);
    take_chunk(&f, &rx, &done);
    take_chunk(&f, &rx, &done);
    pb_xfer_rx_reset(&rx);
    fake_reject(&f, FL_ERR_NORM, "norm over the bound", true, 4);
    fake_credit(&f, d.payload_transfer, 2, false); /* no more chunks */

    /* round 5: its chunked model is replaced by an inline Task, whose
     * update must be the next message; a left-over chunk is cancelled
     * once */
    x.transfer = 9;
    free(m);
    fake_task_x(&f, 5, 5, PB_UPDATE_NOT_USED, 4, &x, &m, &mlen);
    fake_model_chunk(&f, 9, m, mlen, 0);
    expect_credit(&f, 9, 1, false);
    fake_task_x(&f, 5, 5, PB_UPDATE_NOT_USED, 4, &X_SMALL, NULL, NULL);
    expect_update_d(&f, 5, 0.01f, CMP_VALUE_FP32);
    fake_model_chunk(&f, 9, m, mlen, 1);
    expect_credit(&f, 9, 0, true);
    fake_model_chunk(&f, 9, m, mlen, 2);
    send_bye(&f, PB_UPDATE_USED, 5);
    assert_int_equal(runner_join(&r), WRK_EXIT_OK);

    expect_log("bad chunk of the model of round 1 (seq 2 of 16", 1);
    expect_log("the coordinator cancelled the upload of the update of "
               "round 1",
               1);
    expect_log("update of round 1 was not used: restored", 1);
    expect_log("upload of the update of round 2 stopped after 0 of 16 "
               "chunks (no credit before the task's deadline)",
               1);
    expect_log("update of round 2 was not used: restored", 1);
    expect_log("upload of the update of round 4 stopped after 2 of 16 "
               "chunks (rejected)",
               1);
    expect_log("update of round 4 was not used: restored", 1);
    expect_log("the model of round 5 was not complete (1 of 16 chunks)", 1);
    expect_log("which this device is not receiving: cancelling it", 1);
    expect_log("update of round 5 was used", 1);
    expect_log("sent update round 2:", 0);
    expect_log("sent update round 4:", 0);
    free(m);
    fake_close(&f);
}

/* A Task re-sent while its update is being uploaded: the model is not
 * needed (cancelled) and the upload starts over under a new transfer. */
static void test_chunked_task_resent(void **state)
{
    (void)state;
    struct fake f;
    struct runner r;
    struct pb_tensor d1, d2;
    uint8_t *m = NULL;
    size_t mlen = 0, ann = 0;
    struct xtask x = X_DENSE;
    char needle[128];
    fake_open_h(&f, 4, 256);
    runner_start(&r, f.ep);
    expect_hello(&f, false, 0, false, 0);
    fake_welcome_chunks(&f, E1, CHUNK, 3);
    x.transfer = 11;
    fake_task_x(&f, 1, 1, PB_UPDATE_NONE, 0, &x, &m, &mlen);
    fake_send_model(&f, 11, m, mlen, 3, 0);
    expect_announcement(&f, 1, &d1, &ann);
    free(m);
    fake_task_x(&f, 1, 1, PB_UPDATE_NONE, 0, &x, &m, &mlen);
    free(m);
    expect_announcement(&f, 1, &d2, &ann);
    assert_true(d2.payload_transfer != d1.payload_transfer);
    assert_int_equal(d2.payload_bytes, d1.payload_bytes);
    assert_int_equal(d2.checksum, d1.checksum);
    expect_credit(&f, 11, 0, true);
    fake_credit(&f, d1.payload_transfer, 0, false); /* the old one: no */
    const uint64_t old1 = d1.payload_transfer;
    const size_t up = ann + fake_take_upload(&f, &d2, 3);

    /* a verdict on the update being uploaded stops the upload at once:
     * once restored, none of it may reach the coordinator */
    fake_task_x(&f, 2, 2, PB_UPDATE_USED, 1, &X_DENSE, NULL, NULL);
    expect_announcement(&f, 2, &d1, &ann);
    fake_task_x(&f, 2, 2, PB_UPDATE_NOT_USED, 2, &X_DENSE, NULL, NULL);
    expect_announcement(&f, 2, &d2, &ann);
    assert_true(d2.payload_transfer != d1.payload_transfer);
    fake_credit(&f, d1.payload_transfer, 0, false); /* ignored */
    fake_take_upload(&f, &d2, 3);
    send_bye(&f, PB_UPDATE_USED, 2);
    assert_int_equal(runner_join(&r), WRK_EXIT_OK);
    expect_log("upload of the update of round 2 stopped after 0 of 16 "
               "chunks (its fate is known)",
               1);
    expect_log("update of round 2 was not used: restored", 1);
    expect_log("update of round 2 was used", 1);
    snprintf(needle, sizeof(needle), "sent update round 1 again: %zu bytes "
             "(task re-sent, payload in 16 chunks)", up);
    expect_log(needle, 1);
    snprintf(needle, sizeof(needle), "credit for transfer %016" PRIx64
             " (0), which is not being sent: ignored", old1);
    expect_log(needle, 1);
    snprintf(needle, sizeof(needle), "credit for transfer %016" PRIx64
             " (0), which is not being sent: ignored", d1.payload_transfer);
    expect_log(needle, 1);
    expect_log("update of round 1 was used", 1);
    fake_close(&f);
}

/* Last: the stop flag is process-wide and stays set. */
static void test_stop_says_bye(void **state)
{
    (void)state;
    struct fake f;
    struct runner r;
    struct pb_msg *msg = NULL;
    fake_open(&f, 4);
    runner_start(&r, f.ep);
    expect_hello(&f, false, 0, false, 0);
    fake_welcome(&f, E1);
    wrk_client_request_stop();
    const struct pb_envelope *env = fake_recv(&f, PB_BODY_BYE, &msg);
    assert_non_null(env->bye.reason);
    pb_msg_destroy(&msg);
    assert_int_equal(runner_join(&r), WRK_EXIT_OK);
    expect_log("stopping on signal", 1);
    fake_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocol_paths),
        cmocka_unit_test(test_task_closes_round_without_update),
        cmocka_unit_test(test_unknown_device_one_hello),
        cmocka_unit_test(test_overrides_only_when_allowed),
        cmocka_unit_test(test_unusable_layout_exits_1),
        cmocka_unit_test(test_refused_device_exits_1),
        cmocka_unit_test(test_hello_timeout_exits_3),
        cmocka_unit_test(test_missing_data_fails),
        cmocka_unit_test(test_chunked_both_ways),
        cmocka_unit_test(test_chunked_faults),
        cmocka_unit_test(test_chunked_task_resent),
        cmocka_unit_test(test_stop_says_bye),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
