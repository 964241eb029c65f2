/*
 * Unit tests for coordinator/coord_zap: the ZAP handler actor behind a real
 * CURVE ROUTER on loopback (tcp://127.0.0.1:*). Checks: a listed key gets
 * in with its name as User-Id, an unknown key is refused and counted, a
 * wrong domain is refused, reload adds and removes keys, bad files in the
 * directory are skipped, a key in two files keeps the first name, a
 * missing directory and a second handler in one context are errors.
 * Waits are bounded polls on sockets; an alarm() watchdog guards the rest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "common/fl_keys.h"
#include "common/fl_log.h"
#include "coordinator/coord_zap.h"

struct fixture {
    char dir[256];        /* keys made here */
    char auth[300];       /* the authorized-keys directory */
    struct fl_keypair server;
    void *ctx;
    void *router;
    char ep[256];
    struct coord_zap *zap;
};

static void make_key(struct fixture *f, const char *name)
{
    struct fl_keypair kp;
    char err[256];
    assert_int_equal(fl_keys_generate(&kp), FL_OK);
    assert_int_equal(fl_keys_write(f->dir, name, &kp, err, sizeof(err)),
                     FL_OK);
}

/* Copy DIR/from.pub to AUTH/to.pub. */
static void authorize(struct fixture *f, const char *from, const char *to)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cp '%s/%s.pub' '%s/%s.pub'", f->dir, from,
             f->auth, to);
    assert_int_equal(system(cmd), 0);
}

static void unauthorize(struct fixture *f, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.pub", f->auth, name);
    assert_int_equal(unlink(path), 0);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[256];
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_coord_zap.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->auth, sizeof(f->auth), "%s/auth", f->dir);
    assert_int_equal(mkdir(f->auth, 0700), 0);
    assert_int_equal(fl_keys_generate(&f->server), FL_OK);
    assert_int_equal(fl_keys_write(f->dir, "coord", &f->server, err,
                                   sizeof(err)),
                     FL_OK);
    f->ctx = zmq_ctx_new();
    assert_non_null(f->ctx);
    alarm(60);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[512];
    if (f->router != NULL)
        zmq_close(f->router);
    coord_zap_destroy(&f->zap);
    assert_null(f->zap);
    assert_int_equal(zmq_ctx_term(f->ctx), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    alarm(0);
    return 0;
}

/* The ROUTER as the coordinator sets it up: handler first, then bind. */
static void start_server(struct fixture *f, const char *domain)
{
    const int one = 1, zero = 0;
    size_t len = sizeof(f->ep);
    assert_int_equal(coord_zap_new(f->ctx, f->auth, &f->zap), FL_OK);
    f->router = zmq_socket(f->ctx, ZMQ_ROUTER);
    assert_non_null(f->router);
    assert_int_equal(zmq_setsockopt(f->router, ZMQ_LINGER, &zero,
                                    sizeof(zero)),
                     0);
    assert_int_equal(zmq_setsockopt(f->router, ZMQ_ZAP_DOMAIN, domain,
                                    strlen(domain)),
                     0);
    assert_int_equal(zmq_setsockopt(f->router, ZMQ_CURVE_SERVER, &one,
                                    sizeof(one)),
                     0);
    assert_int_equal(zmq_setsockopt(f->router, ZMQ_CURVE_SECRETKEY,
                                    f->server.secret_z85, 41),
                     0);
    assert_int_equal(zmq_bind(f->router, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(zmq_getsockopt(f->router, ZMQ_LAST_ENDPOINT, f->ep,
                                    &len),
                     0);
}

/* A CURVE DEALER with key DIR/name.key that sends "hi". */
static void *client(struct fixture *f, const char *name)
{
    struct fl_keypair kp;
    char path[512], err[256];
    const int zero = 0;
    void *d = zmq_socket(f->ctx, ZMQ_DEALER);
    assert_non_null(d);
    snprintf(path, sizeof(path), "%s/%s.key", f->dir, name);
    assert_int_equal(fl_keys_read_secret(path, &kp, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof(zero)), 0);
    assert_int_equal(zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY,
                                    f->server.public_z85, 41),
                     0);
    assert_int_equal(zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, kp.public_z85,
                                    41),
                     0);
    assert_int_equal(zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, kp.secret_z85,
                                    41),
                     0);
    assert_int_equal(zmq_connect(d, f->ep), 0);
    assert_int_equal(zmq_send(d, "hi", 2, 0), 2);
    return d;
}

/* The next message at the router: its User-Id (copied into user), or
 * false when none arrives within ms. */
static bool recv_user(struct fixture *f, int ms, char *user, size_t cap)
{
    zmq_pollitem_t it = {.socket = f->router, .events = ZMQ_POLLIN};
    zmq_msg_t rid, body;
    if (zmq_poll(&it, 1, ms) <= 0)
        return false;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    assert_true(zmq_msg_recv(&rid, f->router, 0) >= 0);
    assert_true(zmq_msg_recv(&body, f->router, 0) >= 0);
    assert_int_equal(zmq_msg_size(&body), 2);
    const char *u = zmq_msg_gets(&body, "User-Id");
    assert_non_null(u);
    snprintf(user, cap, "%s", u);
    zmq_msg_close(&body);
    zmq_msg_close(&rid);
    return true;
}

/* Bounded wait (10 s) until the handler has refused `n` handshakes. */
static void wait_refused(struct fixture *f, uint64_t n)
{
    for (int i = 0; i < 1000 && coord_zap_refused(f->zap) < n; i++)
        zmq_poll(NULL, 0, 10);
    assert_int_equal(coord_zap_refused(f->zap), n);
}

static void test_listed_key_in_unknown_refused(void **state)
{
    struct fixture *f = *state;
    char user[128];
    make_key(f, "w0");
    make_key(f, "w1");
    make_key(f, "intruder");
    authorize(f, "w0", "w0");
    authorize(f, "w1", "device-7");   /* the file name is the device name */
    start_server(f, COORD_ZAP_DOMAIN);
    assert_int_equal(coord_zap_count(f->zap), 2);
    assert_true(coord_zap_authorized(f->zap, "w0"));
    assert_true(coord_zap_authorized(f->zap, "device-7"));
    assert_false(coord_zap_authorized(f->zap, "w1"));
    assert_false(coord_zap_authorized(f->zap, NULL));

    void *bad = client(f, "intruder");
    wait_refused(f, 1);
    void *a = client(f, "w0");
    assert_true(recv_user(f, 10000, user, sizeof(user)));
    assert_string_equal(user, "w0");
    void *b = client(f, "w1");
    assert_true(recv_user(f, 10000, user, sizeof(user)));
    assert_string_equal(user, "device-7");
    /* the intruder's message never arrives */
    assert_false(recv_user(f, 200, user, sizeof(user)));
    assert_int_equal(coord_zap_accepted(f->zap), 2);
    assert_int_equal(coord_zap_refused(f->zap), 1);
    zmq_close(bad);
    zmq_close(a);
    zmq_close(b);
}

static void test_wrong_domain_refused(void **state)
{
    struct fixture *f = *state;
    char user[128];
    make_key(f, "w0");
    authorize(f, "w0", "w0");
    start_server(f, "other");
    void *a = client(f, "w0");
    wait_refused(f, 1);
    assert_false(recv_user(f, 200, user, sizeof(user)));
    assert_int_equal(coord_zap_accepted(f->zap), 0);
    zmq_close(a);
}

static void test_reload_adds_and_removes(void **state)
{
    struct fixture *f = *state;
    char user[128];
    size_t added = 99, removed = 99;
    make_key(f, "w0");
    make_key(f, "w1");
    make_key(f, "w2");
    authorize(f, "w0", "w0");
    authorize(f, "w2", "w2");
    start_server(f, COORD_ZAP_DOMAIN);
    void *a = client(f, "w0");
    assert_true(recv_user(f, 10000, user, sizeof(user)));
    assert_string_equal(user, "w0");

    /* nothing changed: nothing added or removed */
    assert_int_equal(coord_zap_reload(f->zap, &added, &removed), FL_OK);
    assert_int_equal(added, 0);
    assert_int_equal(removed, 0);
    /* w0 out, w1 in, w2 gets w1's key (changed: removed and added) */
    unauthorize(f, "w0");
    authorize(f, "w1", "w1");
    unauthorize(f, "w2");
    make_key(f, "w3");
    authorize(f, "w3", "w2");
    assert_int_equal(coord_zap_reload(f->zap, &added, &removed), FL_OK);
    assert_int_equal(added, 2);
    assert_int_equal(removed, 2);
    assert_false(coord_zap_authorized(f->zap, "w0"));
    assert_true(coord_zap_authorized(f->zap, "w1"));
    assert_true(coord_zap_authorized(f->zap, "w2"));
    assert_int_equal(coord_zap_count(f->zap), 2);

    void *b = client(f, "w1");
    assert_true(recv_user(f, 10000, user, sizeof(user)));
    assert_string_equal(user, "w1");
    /* w0's key is refused now (its old connection is the transport's
     * business: coord_zap_authorized() says no) */
    void *c = client(f, "w0");
    wait_refused(f, 1);
    void *d = client(f, "w3");
    assert_true(recv_user(f, 10000, user, sizeof(user)));
    assert_string_equal(user, "w2");

    /* a directory that vanished keeps the old set */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->auth);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(coord_zap_reload(f->zap, NULL, NULL), FL_ERR_NOT_FOUND);
    assert_true(coord_zap_authorized(f->zap, "w1"));
    zmq_close(a);
    zmq_close(b);
    zmq_close(c);
    zmq_close(d);
}

static void test_bad_files_skipped_and_duplicates(void **state)
{
    struct fixture *f = *state;
    char user[128];
    make_key(f, "w0");
    make_key(f, "w1");
    authorize(f, "w0", "b-first");
    authorize(f, "w0", "c-second");    /* same key: keeps "b-first" */
    authorize(f, "w1", "w1");
    write_file(f->auth, "garbage.pub", "public = nope\n");
    write_file(f->auth, "bad name.pub", "x\n");
    write_file(f->auth, ".hidden.pub", "x\n");
    write_file(f->auth, "notes.txt", "not a key\n");
    start_server(f, COORD_ZAP_DOMAIN);
    assert_int_equal(coord_zap_count(f->zap), 2);
    assert_true(coord_zap_authorized(f->zap, "b-first"));
    assert_false(coord_zap_authorized(f->zap, "c-second"));
    assert_false(coord_zap_authorized(f->zap, "garbage"));
    void *a = client(f, "w0");
    assert_true(recv_user(f, 10000, user, sizeof(user)));
    assert_string_equal(user, "b-first");
    zmq_close(a);
}

static void test_errors(void **state)
{
    struct fixture *f = *state;
    struct coord_zap *second = NULL;
    char missing[400];
    snprintf(missing, sizeof(missing), "%s/nope", f->dir);
    assert_int_equal(coord_zap_new(f->ctx, missing, &f->zap),
                     FL_ERR_NOT_FOUND);
    assert_null(f->zap);
    /* an empty directory is fine (everything is refused) */
    assert_int_equal(coord_zap_new(f->ctx, f->auth, &f->zap), FL_OK);
    assert_int_equal(coord_zap_count(f->zap), 0);
    /* a second handler in the same context cannot bind */
    assert_int_equal(coord_zap_new(f->ctx, f->auth, &second), FL_ERR_ZMQ);
    assert_null(second);
    coord_zap_destroy(&second);
}

int main(void)
{
    fl_log_init("test", NULL);
    fl_log_set_level(getenv("FL_TEST_LOG") != NULL ? FL_LOG_DEBUG
                                                   : FL_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_listed_key_in_unknown_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_domain_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reload_adds_and_removes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_files_skipped_and_duplicates,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
