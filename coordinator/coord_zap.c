/*
 * coord_zap.c - the ZAP handler actor and its key set (coord_zap.h).
 *
 *   main thread                         zap thread
 *   -----------                         ----------
 *   load keys, bind pipe
 *   pthread_create ------------------>  connect pipe, bind REP on
 *                                       inproc://zeromq.zap.01
 *   wait  <---------------------------  "READY" (or "ERROR" + errno)
 *   ...                                 poll: ZAP request -> 200 / 400
 *   reload: load, diff, "KEYS"+ptr -->  swap the set pointer
 *   free the old set  <---------------  "OK"
 *   destroy: "$TERM" ---------------->  close sockets, return
 *   pthread_join
 */
#include "coordinator/coord_zap.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zmq.h>

#include "common/fl_alloc.h"
#include "common/fl_keys.h"
#include "common/fl_log.h"
#include "common/fl_util.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES_MAX 8
#define ZAP_FRAME_MAX 256
#define LOG_PER_SECOND 10

struct zap_entry {
    char pub[FL_KEY_Z85_LEN + 1];
    char name[FL_KEY_NAME_MAX + 1];
};

/* Immutable once built: by_key sorted by key, by_name by name. */
struct zap_keyset {
    struct zap_entry *by_key;
    const struct zap_entry **by_name;
    size_t n;
};

struct coord_zap {
    void *zctx;
    void *pipe;                  /* main thread's end */
    pthread_t thread;
    char pipe_ep[64];
    char *dir;
    struct zap_keyset *keys;     /* current set; owned by the main thread */
    _Atomic uint64_t accepted;
    _Atomic uint64_t refused;
    /* thread-only: log rate limiting */
    uint64_t log_window_ns;
    unsigned log_lines;
    uint64_t log_suppressed;
};

/* ---- key sets */

static void keyset_free(struct zap_keyset **kp)
{
    if (*kp == NULL)
        return;
    fl_free((*kp)->by_key);
    fl_free((*kp)->by_name);
    fl_free(*kp);
    *kp = NULL;
}

static int cmp_entry_key(const void *a, const void *b)
{
    const struct zap_entry *x = a, *y = b;
    const int c = strcmp(x->pub, y->pub);
    return c != 0 ? c : strcmp(x->name, y->name);
}

static int cmp_entry_name(const void *a, const void *b)
{
    const struct zap_entry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int cmp_str(const void *a, const void *b)
{
    const char *const *x = a, *const *y = b;
    return strcmp(*x, *y);
}

static const struct zap_entry *keyset_by_key(const struct zap_keyset *k,
                                             const char *pub)
{
    size_t lo = 0, hi = k->n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = strcmp(pub, k->by_key[mid].pub);
        if (c == 0)
            return &k->by_key[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static const struct zap_entry *keyset_by_name(const struct zap_keyset *k,
                                              const char *name)
{
    size_t lo = 0, hi = k->n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = strcmp(name, k->by_name[mid]->name);
        if (c == 0)
            return k->by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* The names of dir's NAME.pub files, sorted. Caller frees each and the
 * array. */
static enum fl_err list_pub_files(const char *dir, char ***names_out,
                                  size_t *n_out)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    enum fl_err rc = FL_OK;
    if (d == NULL) {
        rc = errno == ENOENT || errno == ENOTDIR ? FL_ERR_NOT_FOUND
                                                 : FL_ERR_IO;
        fl_log(FL_LOG_ERR, "cannot read the authorized keys directory "
               "'%s': %s", dir, strerror(errno));
        return rc;
    }
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (de == NULL)
            break;
        const size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".pub") != 0 ||
            de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap == 0 ? 64 : cap * 2;
            char **nn = fl_realloc(names, cap * sizeof(*nn));
            if (nn == NULL) {
                rc = FL_ERR_NOMEM;
                break;
            }
            names = nn;
        }
        names[n] = fl_malloc(len + 1);
        if (names[n] == NULL) {
            rc = FL_ERR_NOMEM;
            break;
        }
        memcpy(names[n], de->d_name, len + 1);
        n++;
    }
    if (rc == FL_OK && errno != 0) {
        fl_log(FL_LOG_ERR, "cannot read the authorized keys directory "
               "'%s': %s", dir, strerror(errno));
        rc = FL_ERR_IO;
    }
    closedir(d);
    if (rc != FL_OK) {
        for (size_t i = 0; i < n; i++)
            fl_free(names[i]);
        fl_free(names);
        return rc;
    }
    if (n > 0)
        qsort(names, n, sizeof(*names), cmp_str);
    *names_out = names;
    *n_out = n;
    return FL_OK;
}

/* Read one NAME.pub into e; false (logged) when it is to be skipped. */
static bool read_entry(const char *dir, const char *file, struct zap_entry *e)
{
    char path[4096], err[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if (fl_keys_name_from_path(file, e->name, sizeof(e->name)) != FL_OK) {
        fl_log(FL_LOG_WARN, "authorized keys: '%s' ignored: the name is not "
               "1-64 characters of [A-Za-z0-9._:-]", path);
        return false;
    }
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        fl_log(FL_LOG_WARN, "authorized keys: '%s' ignored: not a regular "
               "file", path);
        return false;
    }
    if (fl_keys_read_public(path, e->pub, err, sizeof(err)) != FL_OK) {
        fl_log(FL_LOG_WARN, "authorized keys: '%s' ignored: %s", path, err);
        return false;
    }
    return true;
}

/* Sort by key and drop a key's second name (kept: the first name in sort
 * order, which is the first loaded). */
static size_t drop_duplicate_keys(struct zap_entry *v, size_t n)
{
    size_t out = 0;
    qsort(v, n, sizeof(*v), cmp_entry_key);
    for (size_t i = 0; i < n; i++) {
        if (out > 0 && strcmp(v[out - 1].pub, v[i].pub) == 0) {
            char fpr[FL_KEY_FPR_LEN + 1];
            fl_keys_fingerprint(v[i].pub, fpr);
            fl_log(FL_LOG_WARN, "authorized keys: '%s.pub' has the same key "
                   "(%s) as '%s.pub': ignored", v[i].name, fpr,
                   v[out - 1].name);
            continue;
        }
        v[out++] = v[i];
    }
    return out;
}

static enum fl_err keyset_load(const char *dir, struct zap_keyset **out)
{
    char **files = NULL;
    size_t nfiles = 0, n = 0;
    struct zap_keyset *k = NULL;
    enum fl_err rc = list_pub_files(dir, &files, &nfiles);
    *out = NULL;
    if (rc != FL_OK)
        return rc;
    if (nfiles > COORD_ZAP_MAX_KEYS) {
        fl_log(FL_LOG_WARN, "authorized keys: '%s' has %zu files, only the "
               "first %d are read", dir, nfiles, COORD_ZAP_MAX_KEYS);
    }
    k = fl_calloc(1, sizeof(*k));
    if (k != NULL)
        k->by_key = fl_calloc(nfiles + 1, sizeof(*k->by_key));
    if (k != NULL)
        k->by_name = fl_calloc(nfiles + 1, sizeof(*k->by_name));
    if (k == NULL || k->by_key == NULL || k->by_name == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < nfiles && n < COORD_ZAP_MAX_KEYS; i++) {
        if (read_entry(dir, files[i], &k->by_key[n]))
            n++;
    }
    k->n = n > 0 ? drop_duplicate_keys(k->by_key, n) : 0;
    for (size_t i = 0; i < k->n; i++)
        k->by_name[i] = &k->by_key[i];
    if (k->n > 0)
        qsort(k->by_name, k->n, sizeof(*k->by_name), cmp_entry_name);
out:
    for (size_t i = 0; i < nfiles; i++)
        fl_free(files[i]);
    fl_free(files);
    if (rc != FL_OK)
        keyset_free(&k);
    *out = k;
    return rc;
}

/* Log the names in a whose key is not the same in b. */
static size_t log_missing(const struct zap_keyset *a,
                          const struct zap_keyset *b, const char *what)
{
    size_t count = 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct zap_entry *e = a->by_name[i];
        const struct zap_entry *o = keyset_by_name(b, e->name);
        char fpr[FL_KEY_FPR_LEN + 1];
        if (o != NULL && strcmp(o->pub, e->pub) == 0)
            continue;
        fl_keys_fingerprint(e->pub, fpr);
        fl_log(FL_LOG_NOTICE, "authorized key %s: device '%s' (key %s)", what,
               e->name, fpr);
        count++;
    }
    return count;
}

/* ---- the handler thread */

static void close_frames(zmq_msg_t *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

/* Copy frame f (at most ZAP_FRAME_MAX - 1 bytes) as a string. */
static void frame_str(zmq_msg_t *f, char *out)
{
    size_t n = zmq_msg_size(f);
    if (n >= ZAP_FRAME_MAX)
        n = ZAP_FRAME_MAX - 1;
    memcpy(out, zmq_msg_data(f), n);
    out[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (out[i] < 0x20 || out[i] > 0x7e)
            out[i] = '?';   /* logged: printable only */
    }
}

/* A REP socket must answer every request before it can read the next. */
static void send_reply(void *sock, const void *reqid, size_t idlen,
                       const char *status, const char *text,
                       const char *user)
{
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(sock, reqid, idlen, ZMQ_SNDMORE);
    zmq_send(sock, status, strlen(status), ZMQ_SNDMORE);
    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(sock, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(sock, "", 0, 0);   /* no metadata */
}

/* Logging of refusals, bounded: a flood of bad handshakes must not flood
 * the log. */
static bool may_log(struct coord_zap *z)
{
    const uint64_t now = fl_now_ns();
    if (now - z->log_window_ns >= 1000000000ULL) {
        if (z->log_suppressed > 0)
            fl_log(FL_LOG_NOTICE, "%llu more refused handshakes not logged",
                   (unsigned long long)z->log_suppressed);
        z->log_window_ns = now;
        z->log_lines = 0;
        z->log_suppressed = 0;
    }
    if (z->log_lines < LOG_PER_SECOND) {
        z->log_lines++;
        return true;
    }
    z->log_suppressed++;
    return false;
}

/* The verdict for one request: NULL when refused (*why says why). */
static const struct zap_entry *judge(const struct zap_keyset *keys,
                                     zmq_msg_t *f, size_t n, char *fpr,
                                     const char **why)
{
    char pub[FL_KEY_Z85_LEN + 1];
    const struct zap_entry *e;
    snprintf(fpr, FL_KEY_FPR_LEN + 1, "-");
    if (n < 7 || zmq_msg_size(&f[0]) != 3 ||
        memcmp(zmq_msg_data(&f[0]), "1.0", 3) != 0) {
        *why = "malformed zap request";
        return NULL;
    }
    if (zmq_msg_size(&f[2]) != strlen(COORD_ZAP_DOMAIN) ||
        memcmp(zmq_msg_data(&f[2]), COORD_ZAP_DOMAIN,
               strlen(COORD_ZAP_DOMAIN)) != 0) {
        *why = "wrong zap domain";
        return NULL;
    }
    if (zmq_msg_size(&f[5]) != 5 ||
        memcmp(zmq_msg_data(&f[5]), "CURVE", 5) != 0) {
        *why = "mechanism is not CURVE";
        return NULL;
    }
    if (zmq_msg_size(&f[6]) != FL_KEY_BYTES) {
        *why = "malformed CURVE credentials";
        return NULL;
    }
    fl_keys_z85_encode(zmq_msg_data(&f[6]), pub);
    fl_keys_fingerprint(pub, fpr);
    e = keyset_by_key(keys, pub);
    if (e == NULL)
        *why = "unknown key";
    return e;
}

/* Receive every frame of a request: the first ZAP_FRAMES_MAX into f,
 * the rest is dropped. Returns how many are in f (0 on a receive error). */
static size_t recv_request(void *sock, zmq_msg_t *f)
{
    size_t n = 0;
    int more = 1;
    while (more) {
        zmq_msg_t extra;
        zmq_msg_t *m = n < ZAP_FRAMES_MAX ? &f[n] : &extra;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sock, 0) < 0) {
            zmq_msg_close(m);
            close_frames(f, n);
            return 0;
        }
        more = zmq_msg_more(m);
        if (m == &extra)
            zmq_msg_close(m);
        else
            n++;
    }
    return n;
}

static void handle_request(struct coord_zap *z, void *sock,
                           const struct zap_keyset *keys)
{
    zmq_msg_t f[ZAP_FRAMES_MAX];
    char addr[ZAP_FRAME_MAX] = "?", fpr[FL_KEY_FPR_LEN + 1];
    const char *why = "";
    const size_t n = recv_request(sock, f);
    if (n == 0)
        return;    /* nothing received: nothing to answer */
    if (n < 2) {   /* no request id to echo: refuse with an empty one */
        atomic_fetch_add(&z->refused, 1);
        send_reply(sock, "", 0, "400", "malformed zap request", "");
        close_frames(f, n);
        return;
    }
    if (n >= 4)
        frame_str(&f[3], addr);
    const struct zap_entry *e = judge(keys, f, n, fpr, &why);
    if (e != NULL) {
        atomic_fetch_add(&z->accepted, 1);
        fl_log(FL_LOG_DEBUG, "accepted handshake from %s: device '%s' (key "
               "%s)", addr, e->name, fpr);
        send_reply(sock, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), "200",
                   "OK", e->name);
    } else {
        atomic_fetch_add(&z->refused, 1);
        if (may_log(z))
            fl_log(FL_LOG_NOTICE, "refused handshake from %s: %s (key %s)",
                   addr, why, fpr);
        send_reply(sock, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), "400",
                   why, "");
    }
    close_frames(f, n);
}

/* A pipe command; false on $TERM. */
static bool handle_command(void *pipe, const struct zap_keyset **keys)
{
    char cmd[16] = "";
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, pipe, 0) < 0) {
        zmq_msg_close(&m);
        return errno == EINTR;
    }
    const size_t len = zmq_msg_size(&m);
    memcpy(cmd, zmq_msg_data(&m), len < sizeof(cmd) - 1 ? len
                                                        : sizeof(cmd) - 1);
    if (strcmp(cmd, "KEYS") == 0 && zmq_msg_more(&m)) {
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, pipe, 0) == (int)sizeof(*keys)) {
            memcpy(keys, zmq_msg_data(&m), sizeof(*keys));
            zmq_send(pipe, "OK", 2, 0);
        } else {
            zmq_send(pipe, "ERROR", 5, 0);
        }
        zmq_msg_close(&m);
        return true;
    }
    zmq_msg_close(&m);
    return strcmp(cmd, "$TERM") != 0;
}

static void *zap_main(void *arg)
{
    struct coord_zap *z = arg;
    const struct zap_keyset *keys = z->keys;
    const int zero = 0;
    void *pipe = zmq_socket(z->zctx, ZMQ_PAIR);
    void *sock = zmq_socket(z->zctx, ZMQ_REP);
    int err = 0;
    if (pipe == NULL || zmq_connect(pipe, z->pipe_ep) != 0)
        err = errno != 0 ? errno : EINVAL;
    if (err == 0 && (sock == NULL ||
                     zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero)) !=
                         0 ||
                     zmq_bind(sock, ZAP_ENDPOINT) != 0))
        err = errno;
    if (pipe != NULL) {
        zmq_setsockopt(pipe, ZMQ_LINGER, &zero, sizeof(zero));
        if (err == 0)
            zmq_send(pipe, "READY", 5, 0);
        else
            zmq_send(pipe, &err, sizeof(err), 0);
    }
    while (err == 0) {
        zmq_pollitem_t items[2] = {{.socket = sock, .events = ZMQ_POLLIN},
                                   {.socket = pipe, .events = ZMQ_POLLIN}};
        if (zmq_poll(items, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fl_log(FL_LOG_ERR, "zap handler: zmq_poll failed: %s",
                   zmq_strerror(errno));
            break;
        }
        if ((items[1].revents & ZMQ_POLLIN) && !handle_command(pipe, &keys))
            break;
        if (items[0].revents & ZMQ_POLLIN)
            handle_request(z, sock, keys);
    }
    if (sock != NULL)
        zmq_close(sock);
    if (pipe != NULL)
        zmq_close(pipe);
    return NULL;
}

/* ---- the main thread's side */

static enum fl_err zmq_fail(const char *what)
{
    fl_log(FL_LOG_ERR, "zap handler: %s: %s", what, zmq_strerror(errno));
    return FL_ERR_ZMQ;
}

/* Wait for the thread's first word: READY or an errno. */
static enum fl_err await_ready(struct coord_zap *z)
{
    char buf[8] = "";
    int rc;
    do {
        rc = zmq_recv(z->pipe, buf, sizeof(buf), 0);
    } while (rc < 0 && errno == EINTR);
    if (rc == 5 && memcmp(buf, "READY", 5) == 0)
        return FL_OK;
    if (rc == (int)sizeof(int)) {
        int err = 0;
        memcpy(&err, buf, sizeof(err));
        fl_log(FL_LOG_ERR, "cannot start the zap handler on %s: %s",
               ZAP_ENDPOINT, zmq_strerror(err));
    } else {
        fl_log(FL_LOG_ERR, "cannot start the zap handler: no ready signal");
    }
    return FL_ERR_ZMQ;
}

static enum fl_err start_thread(struct coord_zap *z)
{
    const int zero = 0, wait_ms = 10000;
    int err;
    snprintf(z->pipe_ep, sizeof(z->pipe_ep), "inproc://coord-zap-%p",
             (void *)z);
    z->pipe = zmq_socket(z->zctx, ZMQ_PAIR);
    if (z->pipe == NULL)
        return zmq_fail("cannot create the pipe");
    /* the thread answers at once; the timeout only guards against a
     * thread that could not even open its end of the pipe */
    if (zmq_setsockopt(z->pipe, ZMQ_LINGER, &zero, sizeof(zero)) != 0 ||
        zmq_setsockopt(z->pipe, ZMQ_RCVTIMEO, &wait_ms, sizeof(wait_ms)) !=
            0 ||
        zmq_bind(z->pipe, z->pipe_ep) != 0)
        return zmq_fail("cannot bind the pipe");
    /* signals are the main thread's business: the handler thread starts
     * with all of them blocked */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&z->thread, NULL, zap_main, z);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        fl_log(FL_LOG_ERR, "cannot start the zap handler thread: %s",
               strerror(err));
        return FL_ERR_INTERRUPTED;
    }
    const enum fl_err rc = await_ready(z);
    if (rc != FL_OK) {
        pthread_join(z->thread, NULL);
        return rc;
    }
    return FL_OK;
}

enum fl_err coord_zap_new(void *zctx, const char *dir,
                          struct coord_zap **out)
{
    struct coord_zap *z = fl_calloc(1, sizeof(*z));
    enum fl_err rc = FL_OK;
    *out = NULL;
    if (z == NULL)
        return FL_ERR_NOMEM;
    z->zctx = zctx;
    atomic_init(&z->accepted, 0);
    atomic_init(&z->refused, 0);
    z->dir = fl_malloc(strlen(dir) + 1);
    if (z->dir == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    memcpy(z->dir, dir, strlen(dir) + 1);
    rc = keyset_load(dir, &z->keys);
    if (rc != FL_OK)
        goto out;
    if (z->keys->n == 0)
        fl_log(FL_LOG_WARN, "no authorized keys in '%s': every device is "
               "refused until keys are added and SIGHUP reloads them", dir);
    rc = start_thread(z);
out:
    if (rc != FL_OK) {
        if (z->pipe != NULL)
            zmq_close(z->pipe);
        keyset_free(&z->keys);
        fl_free(z->dir);
        fl_free(z);
        return rc;
    }
    *out = z;
    return FL_OK;
}

void coord_zap_destroy(struct coord_zap **zp)
{
    struct coord_zap *z;
    if (zp == NULL || *zp == NULL)
        return;
    z = *zp;
    while (zmq_send(z->pipe, "$TERM", 5, 0) < 0 && errno == EINTR)
        ;
    pthread_join(z->thread, NULL);
    zmq_close(z->pipe);
    keyset_free(&z->keys);
    fl_free(z->dir);
    fl_free(z);
    *zp = NULL;
}

/* Hand the set to the thread and wait until it uses it. */
static enum fl_err hand_over(struct coord_zap *z,
                             const struct zap_keyset *keys)
{
    char ack[8] = "";
    int rc;
    if (zmq_send(z->pipe, "KEYS", 4, ZMQ_SNDMORE) < 0 ||
        zmq_send(z->pipe, &keys, sizeof(keys), 0) < 0)
        return zmq_fail("cannot send the new keys");
    do {
        rc = zmq_recv(z->pipe, ack, sizeof(ack), 0);
    } while (rc < 0 && errno == EINTR);
    if (rc != 2 || memcmp(ack, "OK", 2) != 0)
        return zmq_fail("the handler did not take the new keys");
    return FL_OK;
}

enum fl_err coord_zap_reload(struct coord_zap *z, size_t *added,
                             size_t *removed)
{
    struct zap_keyset *nk = NULL;
    size_t a, r;
    enum fl_err rc = keyset_load(z->dir, &nk);
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "authorized keys not reloaded from '%s' (%s): "
               "the %zu keys loaded before stay in force", z->dir,
               fl_strerror(rc), z->keys->n);
        return rc;
    }
    r = log_missing(z->keys, nk, "removed");
    a = log_missing(nk, z->keys, "added");
    rc = hand_over(z, nk);
    if (rc != FL_OK) {
        /* The thread may still take nk later: leak it rather than free
         * what another thread might read. Cannot happen short of a hung
         * thread. */
        return rc;
    }
    keyset_free(&z->keys);
    z->keys = nk;
    fl_log(FL_LOG_NOTICE, "authorized keys reloaded from '%s': %zu keys, "
           "%zu added, %zu removed", z->dir, nk->n, a, r);
    if (added != NULL)
        *added = a;
    if (removed != NULL)
        *removed = r;
    return FL_OK;
}

bool coord_zap_authorized(const struct coord_zap *z, const char *name)
{
    return name != NULL && keyset_by_name(z->keys, name) != NULL;
}

size_t coord_zap_count(const struct coord_zap *z)
{
    return z->keys->n;
}

uint64_t coord_zap_accepted(const struct coord_zap *z)
{
    return atomic_load(&z->accepted);
}

uint64_t coord_zap_refused(const struct coord_zap *z)
{
    return atomic_load(&z->refused);
}
