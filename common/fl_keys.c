/*
 * fl_keys.c - CURVE key files (fl_keys.h).
 */
#include "common/fl_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

static const char z85_chars[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    ".-:+=^!/*?&<>()[]{}@%$#";

static enum fl_err fail(enum fl_err rc, char *err, size_t errlen,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum fl_err fail(enum fl_err rc, char *err, size_t errlen,
                        const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

bool fl_keys_name_valid(const char *name)
{
    const size_t n = name != NULL ? strlen(name) : 0;
    if (n == 0 || n > FL_KEY_NAME_MAX || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        const char c = name[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                        c == ':' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool fl_keys_z85_valid(const char *s)
{
    if (s == NULL || strlen(s) != FL_KEY_Z85_LEN)
        return false;
    for (size_t i = 0; i < FL_KEY_Z85_LEN; i++) {
        if (strchr(z85_chars, s[i]) == NULL)
            return false;
    }
    return true;
}

void fl_keys_z85_encode(const uint8_t bin[FL_KEY_BYTES],
                        char out[FL_KEY_Z85_LEN + 1])
{
    /* cannot fail: 32 is a multiple of 4 and out has 41 bytes */
    zmq_z85_encode(out, bin, FL_KEY_BYTES);
    out[FL_KEY_Z85_LEN] = '\0';
}

enum fl_err fl_keys_z85_decode(const char *z85, uint8_t out[FL_KEY_BYTES])
{
    if (!fl_keys_z85_valid(z85) || zmq_z85_decode(out, z85) == NULL)
        return FL_ERR_FORMAT;
    return FL_OK;
}

void fl_keys_fingerprint(const char *public_z85,
                         char out[FL_KEY_FPR_LEN + 1])
{
    if (!fl_keys_z85_valid(public_z85)) {
        snprintf(out, FL_KEY_FPR_LEN + 1, "invalid");
        return;
    }
    memcpy(out, public_z85, FL_KEY_FPR_LEN);
    out[FL_KEY_FPR_LEN] = '\0';
}

void fl_keys_clear(struct fl_keypair *kp)
{
    explicit_bzero(kp->secret_z85, sizeof(kp->secret_z85));
}

enum fl_err fl_keys_generate(struct fl_keypair *kp)
{
    memset(kp, 0, sizeof(*kp));
    if (!zmq_has("curve"))
        return FL_ERR_UNSUPPORTED;
    if (zmq_curve_keypair(kp->public_z85, kp->secret_z85) != 0) {
        fl_keys_clear(kp);
        return FL_ERR_UNSUPPORTED;
    }
    return FL_OK;
}

/* The public key that belongs to a secret one. */
static enum fl_err derive_public(const char *secret_z85,
                                 char public_z85[FL_KEY_Z85_LEN + 1])
{
    if (!fl_keys_z85_valid(secret_z85) ||
        zmq_curve_public(public_z85, secret_z85) != 0)
        return FL_ERR_FORMAT;
    public_z85[FL_KEY_Z85_LEN] = '\0';
    return FL_OK;
}

/* ---- writing */

static enum fl_err write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        const ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return FL_ERR_IO;
        data += n;
        len -= (size_t)n;
    }
    return FL_OK;
}

/* Create path exclusively with exactly `mode`, write text, fsync. */
static enum fl_err create_file(const char *path, mode_t mode,
                               const char *text, size_t len)
{
    const int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                                  O_CLOEXEC, mode & 0600);
    enum fl_err rc = FL_OK;
    int saved = 0;
    if (fd < 0)
        return FL_ERR_IO;
    /* the umask may have removed bits (or left too many with a weird
     * mode): set the mode explicitly before any byte is written */
    if (fchmod(fd, mode) != 0 || write_all(fd, text, len) != FL_OK ||
        fsync(fd) != 0)
        rc = FL_ERR_IO;
    saved = errno;
    if (close(fd) != 0 && rc == FL_OK) {
        rc = FL_ERR_IO;
        saved = errno;
    }
    if (rc != FL_OK) {
        unlink(path);
        errno = saved;
    }
    return rc;
}

/* The directory must be made durable too: fsync it (best effort). */
static void sync_dir(const char *dir)
{
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

enum fl_err fl_keys_write(const char *dir, const char *name,
                          const struct fl_keypair *kp, char *err,
                          size_t errlen)
{
    char keypath[4096], pubpath[4096], fpr[FL_KEY_FPR_LEN + 1];
    char text[512];
    char check[FL_KEY_Z85_LEN + 1];
    enum fl_err rc = FL_OK;
    int n;
    if (dir == NULL || dir[0] == '\0')
        dir = ".";
    if (!fl_keys_name_valid(name))
        return fail(FL_ERR_INVALID_ARG, err, errlen,
                    "key name '%.80s' is not 1-64 characters of "
                    "[A-Za-z0-9._:-] (not starting with '.')",
                    name != NULL ? name : "");
    if (derive_public(kp->secret_z85, check) != FL_OK ||
        strcmp(check, kp->public_z85) != 0)
        return fail(FL_ERR_INVALID_ARG, err, errlen,
                    "the key pair for '%s' is not valid", name);
    explicit_bzero(check, sizeof(check));
    n = snprintf(keypath, sizeof(keypath), "%s/%s.key", dir, name);
    if (n < 0 || (size_t)n >= sizeof(keypath) ||
        snprintf(pubpath, sizeof(pubpath), "%s/%s.pub", dir, name) >=
            (int)sizeof(pubpath))
        return fail(FL_ERR_INVALID_ARG, err, errlen, "path too long");
    fl_keys_fingerprint(kp->public_z85, fpr);

    n = snprintf(text, sizeof(text),
                 "# fedcomp CURVE key pair '%s' (fingerprint %s)\n"
                 "# SECRET: keep this file private (mode 0600); give out "
                 "%s.pub instead\n"
                 "public = %s\nsecret = %s\n",
                 name, fpr, name, kp->public_z85, kp->secret_z85);
    rc = create_file(keypath, 0600, text, (size_t)n);
    explicit_bzero(text, sizeof(text));
    if (rc != FL_OK)
        return fail(rc, err, errlen, "cannot create '%s': %s", keypath,
                    strerror(errno));
    n = snprintf(text, sizeof(text),
                 "# fedcomp CURVE public key '%s' (fingerprint %s)\n"
                 "public = %s\n",
                 name, fpr, kp->public_z85);
    rc = create_file(pubpath, 0644, text, (size_t)n);
    if (rc != FL_OK) {
        const int saved = errno;
        unlink(keypath);
        return fail(rc, err, errlen, "cannot create '%s': %s", pubpath,
                    strerror(saved));
    }
    sync_dir(dir);
    return FL_OK;
}

/* ---- reading */

/* Read path (at most FL_KEY_FILE_MAX bytes) into buf (NUL-terminated);
 * *mode gets its permission bits. */
static enum fl_err slurp(const char *path, char *buf, size_t cap,
                         mode_t *mode, char *err, size_t errlen)
{
    struct stat st;
    size_t got = 0;
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(errno == ENOENT ? FL_ERR_NOT_FOUND : FL_ERR_IO, err,
                    errlen, "cannot open '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(FL_ERR_IO, err, errlen, "'%s' is not a regular file",
                    path);
    }
    *mode = st.st_mode & 07777;
    for (;;) {
        const ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            const int saved = errno;
            close(fd);
            return fail(FL_ERR_IO, err, errlen, "cannot read '%s': %s",
                        path, strerror(saved));
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got == cap - 1) {
            close(fd);
            return fail(FL_ERR_TOO_LARGE, err, errlen,
                        "'%s' is over %d bytes: not a key file", path,
                        FL_KEY_FILE_MAX);
        }
    }
    close(fd);
    buf[got] = '\0';
    if (memchr(buf, '\0', got) != NULL)
        return fail(FL_ERR_FORMAT, err, errlen,
                    "'%s' is not a text file", path);
    return FL_OK;
}

static char *trim(char *s)
{
    char *end;
    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

/* One "name = value" line into kp. */
static enum fl_err parse_line(char *line, struct fl_keypair *kp,
                              const char **what)
{
    char *eq = strchr(line, '=');
    char *name, *value, *dst;
    if (eq == NULL) {
        *what = "not 'name = value'";
        return FL_ERR_FORMAT;
    }
    *eq = '\0';
    name = trim(line);
    value = trim(eq + 1);
    if (strcmp(name, "public") == 0) {
        dst = kp->public_z85;
    } else if (strcmp(name, "secret") == 0) {
        dst = kp->secret_z85;
    } else {
        *what = "unknown name (want 'public' or 'secret')";
        return FL_ERR_FORMAT;
    }
    if (dst[0] != '\0') {
        *what = "given twice";
        return FL_ERR_FORMAT;
    }
    if (!fl_keys_z85_valid(value)) {
        *what = "the key is not 40 characters of Z85";
        return FL_ERR_FORMAT;
    }
    memcpy(dst, value, FL_KEY_Z85_LEN + 1);
    return FL_OK;
}

static enum fl_err parse_text(const char *path, char *text,
                              struct fl_keypair *kp, char *err,
                              size_t errlen)
{
    unsigned lineno = 0;
    char *line = text;
    while (line != NULL) {
        char *nl = strchr(line, '\n');
        char *s;
        const char *what = "";
        if (nl != NULL)
            *nl = '\0';
        lineno++;
        s = trim(line);
        if (s[0] != '\0' && s[0] != '#' &&
            parse_line(s, kp, &what) != FL_OK)
            return fail(FL_ERR_FORMAT, err, errlen, "'%s' line %u: %s",
                        path, lineno, what);
        line = nl != NULL ? nl + 1 : NULL;
    }
    return FL_OK;
}

/* The secret side: private file, public line consistent with it. */
static enum fl_err check_secret(const char *path, mode_t mode,
                                struct fl_keypair *kp, char *err,
                                size_t errlen)
{
    char derived[FL_KEY_Z85_LEN + 1];
    if ((mode & 0007) != 0)
        return fail(FL_ERR_INVALID_ARG, err, errlen,
                    "'%s' holds a secret key but other users may access "
                    "it (mode %04o): chmod 600 it", path, (unsigned)mode);
    if (derive_public(kp->secret_z85, derived) != FL_OK)
        return fail(FL_ERR_FORMAT, err, errlen,
                    "'%s': the secret key is not valid", path);
    if (kp->public_z85[0] == '\0')
        memcpy(kp->public_z85, derived, sizeof(derived));
    else if (strcmp(kp->public_z85, derived) != 0)
        return fail(FL_ERR_INVALID_ARG, err, errlen,
                    "'%s': the public key does not belong to the secret "
                    "key", path);
    return FL_OK;
}

enum fl_err fl_keys_read(const char *path, struct fl_keypair *kp, char *err,
                         size_t errlen)
{
    char buf[FL_KEY_FILE_MAX + 1];
    mode_t mode = 0;
    enum fl_err rc;
    memset(kp, 0, sizeof(*kp));
    rc = slurp(path, buf, sizeof(buf), &mode, err, errlen);
    if (rc == FL_OK)
        rc = parse_text(path, buf, kp, err, errlen);
    explicit_bzero(buf, sizeof(buf));
    if (rc == FL_OK && kp->public_z85[0] == '\0' && kp->secret_z85[0] == '\0')
        rc = fail(FL_ERR_FORMAT, err, errlen,
                  "'%s' holds no key (no 'public = ...' line)", path);
    if (rc == FL_OK && kp->secret_z85[0] != '\0')
        rc = check_secret(path, mode, kp, err, errlen);
    if (rc != FL_OK)
        memset(kp, 0, sizeof(*kp)); /* memset: wipes the secret too */
    return rc;
}

enum fl_err fl_keys_read_secret(const char *path, struct fl_keypair *kp,
                                char *err, size_t errlen)
{
    const enum fl_err rc = fl_keys_read(path, kp, err, errlen);
    if (rc != FL_OK)
        return rc;
    if (kp->secret_z85[0] == '\0') {
        memset(kp, 0, sizeof(*kp));
        return fail(FL_ERR_MISSING_FIELD, err, errlen,
                    "'%s' holds no secret key (a .pub file? give the .key "
                    "file)", path);
    }
    return FL_OK;
}

enum fl_err fl_keys_read_public(const char *path,
                                char public_z85[FL_KEY_Z85_LEN + 1],
                                char *err, size_t errlen)
{
    struct fl_keypair kp;
    const enum fl_err rc = fl_keys_read(path, &kp, err, errlen);
    public_z85[0] = '\0';
    if (rc == FL_OK)
        memcpy(public_z85, kp.public_z85, FL_KEY_Z85_LEN + 1);
    fl_keys_clear(&kp);
    return rc;
}

enum fl_err fl_keys_name_from_path(const char *path, char *name,
                                   size_t cap)
{
    const char *base = strrchr(path, '/');
    size_t n;
    base = base != NULL ? base + 1 : path;
    n = strlen(base);
    if (n > 4 && (strcmp(base + n - 4, ".key") == 0 ||
                  strcmp(base + n - 4, ".pub") == 0))
        n -= 4;
    if (n == 0 || n >= cap)
        return FL_ERR_INVALID_ARG;
    memcpy(name, base, n);
    name[n] = '\0';
    if (!fl_keys_name_valid(name)) {
        name[0] = '\0';
        return FL_ERR_INVALID_ARG;
    }
    return FL_OK;
}

const char *fl_keys_resolve(const char *path, char *buf, size_t cap)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    int n;
    if (path == NULL || path[0] == '\0' || path[0] == '/' || dir == NULL ||
        dir[0] == '\0' || access(path, F_OK) == 0)
        return path;
    n = snprintf(buf, cap, "%s/%s", dir, path);
    if (n < 0 || (size_t)n >= cap || access(buf, F_OK) != 0)
        return path;
    return buf;
}
