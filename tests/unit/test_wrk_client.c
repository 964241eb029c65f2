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
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "common/fl_log.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "model/mdl_trainer.h"
#include "proto/pb_msg.h"
#include "worker/wrk_client.h"
#include "worker/wrk_model.h"
#include "worker/wrk_state.h"
#include "worker/wrk_update.h"

#define NSAMP 40
#define E1 0x1111111111111111ULL
#define E2 0x2222222222222222ULL

static char dir[] = "/tmp/test_wrk_client.XXXXXX";
static char log_path[256];

/* ------------------------------------------------------------ fixtures */

static void put_u32(FILE *f, uint32_t v)
{
    const uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16),
                          (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

static int write_idx(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/train-labels-idx1-ubyte", dir);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    put_u32(f, 0x801);
    put_u32(f, NSAMP);
    for (uint32_t i = 0; i < NSAMP; i++)
        fputc((int)(i % 10), f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/train-images-idx3-ubyte", dir);
    f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    put_u32(f, 0x803);
    put_u32(f, NSAMP);
    put_u32(f, 2);
    put_u32(f, 2);
    for (uint32_t i = 0; i < NSAMP; i++) {
        /* a learnable pattern: the label in pixel 0, noise elsewhere */
        fputc((int)((i % 10) * 25), f);
        fputc((int)((i * 37) % 256), f);
        fputc((int)((i * 91) % 256), f);
        fputc(128, f);
    }
    fclose(f);
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    alarm(120); /* watchdog for the whole file */
    if (mkdtemp(dir) == NULL || write_idx() != 0)
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
                                        WRK_STATE_FILE};
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

static void fake_open(struct fake *f, uint32_t input)
{
    struct mdl_mlp_config cfg = {input, 1, {8}, 10};
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

static void fake_close(struct fake *f)
{
    zmq_close(f->router);
    zmq_ctx_term(f->ctx);
    mdl_trainer_destroy(&f->trainer);
    cmp_ctx_destroy(&f->cctx);
    free(f->w);
}

/* Receive one envelope of the expected body; caller destroys *msg. */
static const struct pb_envelope *fake_recv(struct fake *f, enum pb_body want,
                                           struct pb_msg **msg)
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

static void fake_welcome(struct fake *f, uint64_t epoch)
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
    fake_send(f, &env);
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
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_REJECT;
    env.reject.code = FL_ERR_LATE;
    env.reject.reason = "update arrived after the round closed";
    env.reject.has_round = true;
    env.reject.round = 1;
    fake_send(&f, &env);
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
    fake_open(&f, 4);
    runner_start(&r, f.ep);
    expect_hello(&f, false, 0, false, 0);
    fake_welcome(&f, E1);
    fake_task(&f, 1, E1, 1, NULL, 0, PB_UPDATE_NONE, 0);
    expect_update(&f, 1);
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
    struct pb_envelope env;
    fake_open(&f, 4);
    runner_start(&r, f.ep);
    expect_hello(&f, false, 0, false, 0);
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_REJECT;
    env.reject.code = FL_ERR_SAMPLES;
    env.reject.reason = "too many samples";
    fake_send(&f, &env);
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
        cmocka_unit_test(test_overrides_only_when_allowed),
        cmocka_unit_test(test_unusable_layout_exits_1),
        cmocka_unit_test(test_refused_device_exits_1),
        cmocka_unit_test(test_hello_timeout_exits_3),
        cmocka_unit_test(test_missing_data_fails),
        cmocka_unit_test(test_stop_says_bye),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
