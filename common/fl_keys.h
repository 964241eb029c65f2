/*
 * fl_keys.h - CURVE key files shared by the coordinator, the worker and
 * fedcomp-keygen (docs/security.md).
 *
 * A key is 32 bytes, written as 40 characters of Z85 (ZeroMQ's base-85,
 * RFC 32). Key files are text, one `name = value` per line; blank lines
 * and lines starting with '#' are ignored; spaces around names and values
 * are ignored; any other line, an unknown name or a name given twice is an
 * error:
 *
 *   # fedcomp CURVE key pair 'w3' - secret: keep this file private
 *   public = rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7
 *   secret = JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6
 *
 * NAME.key holds both lines (one file suffices for a device), NAME.pub only
 * the public one. A file with a secret must not be accessible by "other"
 * users (mode & 007 == 0; group access is allowed for container secret
 * mounts), and its public line, when present, must match the secret.
 *
 * The fingerprint of a key, printed in logs instead of the key, is the
 * first FL_KEY_FPR_LEN (12) characters of its Z85 text: 72 bits, enough to
 * tell keys apart, and easy to find in a .pub file with grep.
 *
 * This is the only module of common/ that uses libzmq (zmq_curve_keypair,
 * zmq_curve_public, zmq_z85_encode/decode). Libraries never print: errors
 * come back as enum fl_err with a one-line message in err (never a secret).
 * Reentrant; no global state.
 */
#ifndef FL_KEYS_H
#define FL_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"

#define FL_KEY_BYTES 32
#define FL_KEY_Z85_LEN 40        /* characters, without the NUL */
#define FL_KEY_FPR_LEN 12        /* characters of the fingerprint */
#define FL_KEY_NAME_MAX 64       /* a key name is a device id */
#define FL_KEY_FILE_MAX 4096     /* largest key file read */

struct fl_keypair {
    char public_z85[FL_KEY_Z85_LEN + 1];
    char secret_z85[FL_KEY_Z85_LEN + 1];   /* "" when unknown */
};

/* A new random key pair (zmq_curve_keypair). FL_ERR_UNSUPPORTED when
 * libzmq was built without CURVE. */
enum fl_err fl_keys_generate(struct fl_keypair *kp);

/* True for 1-64 characters of [A-Za-z0-9._:-] not starting with '.': the
 * names of key files, which are device ids. */
bool fl_keys_name_valid(const char *name);

/* True when s is exactly 40 characters of the Z85 alphabet. */
bool fl_keys_z85_valid(const char *s);

/* Write DIR/NAME.key (public + secret, mode 0600) and DIR/NAME.pub (public,
 * mode 0644). dir NULL means ".". Each file is created with
 * O_CREAT|O_EXCL|O_NOFOLLOW (an existing file is never overwritten), its
 * mode is set with fchmod whatever the umask, and it is fsync'd. Nothing
 * is left behind on failure (a .key already written is removed).
 * FL_ERR_INVALID_ARG (bad name or key), FL_ERR_IO (errno kept, e.g.
 * EEXIST; err names the file). */
enum fl_err fl_keys_write(const char *dir, const char *name,
                          const struct fl_keypair *kp, char *err,
                          size_t errlen);

/* Read a key file: either line may be absent, not both. *kp gets what the
 * file holds (secret_z85 "" without a secret line); with a secret and no
 * public line, the public key is derived. FL_ERR_NOT_FOUND (missing),
 * FL_ERR_IO, FL_ERR_TOO_LARGE (over FL_KEY_FILE_MAX), FL_ERR_FORMAT (a bad
 * line; err has the line number), FL_ERR_INVALID_ARG (the secret does not
 * match the public key, or the file with a secret is open to others).
 * The read buffer is wiped before returning. */
enum fl_err fl_keys_read(const char *path, struct fl_keypair *kp, char *err,
                         size_t errlen);

/* fl_keys_read() that also requires a secret line (FL_ERR_MISSING_FIELD). */
enum fl_err fl_keys_read_secret(const char *path, struct fl_keypair *kp,
                                char *err, size_t errlen);

/* fl_keys_read() that requires a public key (a .pub file, or a .key file
 * whose public part is used) and returns only it in public_z85. */
enum fl_err fl_keys_read_public(const char *path,
                                char public_z85[FL_KEY_Z85_LEN + 1],
                                char *err, size_t errlen);

/* The fingerprint of a Z85 public key: its first 12 characters (or
 * "invalid" when the key is not valid Z85). */
void fl_keys_fingerprint(const char *public_z85,
                         char out[FL_KEY_FPR_LEN + 1]);

/* 32 bytes <-> 40 Z85 characters. FL_ERR_FORMAT for a bad string. */
void fl_keys_z85_encode(const uint8_t bin[FL_KEY_BYTES],
                        char out[FL_KEY_Z85_LEN + 1]);
enum fl_err fl_keys_z85_decode(const char *z85, uint8_t out[FL_KEY_BYTES]);

/* The key's name from a file path: the base name without a trailing
 * ".key" or ".pub" ("/etc/fedcomp/w3.key" -> "w3"). FL_ERR_INVALID_ARG
 * when that is not a valid name (fl_keys_name_valid) or does not fit. */
enum fl_err fl_keys_name_from_path(const char *path, char *name,
                                   size_t cap);

/* Where to read a key file named on the command line: path itself, unless
 * it is relative, does not exist and $CREDENTIALS_DIRECTORY (systemd's
 * LoadCredential=) is set and holds a file of that name: then
 * "$CREDENTIALS_DIRECTORY/path" (written into buf). Returns path or buf;
 * never NULL. */
const char *fl_keys_resolve(const char *path, char *buf, size_t cap);

/* Wipe the secret of kp (explicit_bzero). */
void fl_keys_clear(struct fl_keypair *kp);

#endif /* FL_KEYS_H */
