/* Unit tests for common/fl_keys: key files, names, fingerprints, paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fl_keys.h"
#include "common/fl_util.h"

struct fixture {
    char dir[256];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s/fl-keys-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void path_in(const struct fixture *f, const char *name, char *out,
                    size_t cap)
{
    snprintf(out, cap, "%s/%s", f->dir, name);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void test_generate_write_read_round_trip(void **state)
{
    struct fixture *f = *state;
    struct fl_keypair kp, back;
    char path[512], pub[FL_KEY_Z85_LEN + 1], err[256];
    const mode_t old = umask(0); /* even a permissive umask gives 0600 */
    assert_int_equal(fl_keys_generate(&kp), FL_OK);
    assert_true(fl_keys_z85_valid(kp.public_z85));
    assert_true(fl_keys_z85_valid(kp.secret_z85));
    assert_int_equal(fl_keys_write(f->dir, "dev-1", &kp, err, sizeof(err)),
                     FL_OK);
    umask(old);

    path_in(f, "dev-1.key", path, sizeof(path));
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(fl_keys_read_secret(path, &back, err, sizeof(err)),
                     FL_OK);
    assert_string_equal(back.public_z85, kp.public_z85);
    assert_string_equal(back.secret_z85, kp.secret_z85);
    /* a .key file also serves as the public key */
    assert_int_equal(fl_keys_read_public(path, pub, err, sizeof(err)),
                     FL_OK);
    assert_string_equal(pub, kp.public_z85);

    path_in(f, "dev-1.pub", path, sizeof(path));
    assert_int_equal(mode_of(path), 0644);
    assert_int_equal(fl_keys_read_public(path, pub, err, sizeof(err)),
                     FL_OK);
    assert_string_equal(pub, kp.public_z85);
    /* the .pub file has no secret, and says so */
    assert_int_equal(fl_keys_read_secret(path, &back, err, sizeof(err)),
                     FL_ERR_MISSING_FIELD);
    assert_non_null(strstr(err, "no secret"));
    assert_string_equal(back.public_z85, "");
    /* nothing secret in the .pub file */
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(fl_file_read(path, 4096, &data, &len), FL_OK);
    char text[4097];
    assert_true(len < sizeof(text));
    memcpy(text, data, len);
    text[len] = '\0';
    assert_null(strstr(text, kp.secret_z85));
    assert_non_null(strstr(text, kp.public_z85));
    free(data);
    fl_keys_clear(&kp);
    assert_string_equal(kp.secret_z85, "");
}

static void test_write_never_overwrites(void **state)
{
    struct fixture *f = *state;
    struct fl_keypair a, b, back;
    char path[512], err[256];
    assert_int_equal(fl_keys_generate(&a), FL_OK);
    assert_int_equal(fl_keys_generate(&b), FL_OK);
    assert_int_equal(fl_keys_write(f->dir, "k", &a, err, sizeof(err)),
                     FL_OK);
    assert_int_equal(fl_keys_write(f->dir, "k", &b, err, sizeof(err)),
                     FL_ERR_IO);
    assert_non_null(strstr(err, "k.key"));
    path_in(f, "k.key", path, sizeof(path));
    assert_int_equal(fl_keys_read_secret(path, &back, err, sizeof(err)),
                     FL_OK);
    assert_string_equal(back.secret_z85, a.secret_z85);

    /* only the .pub exists: the new .key is removed again */
    path_in(f, "p.pub", path, sizeof(path));
    write_text(path, "x\n", 0644);
    assert_int_equal(fl_keys_write(f->dir, "p", &b, err, sizeof(err)),
                     FL_ERR_IO);
    path_in(f, "p.key", path, sizeof(path));
    assert_int_equal(access(path, F_OK), -1);
    /* an invalid pair is refused before anything is written */
    memcpy(b.public_z85, a.public_z85, sizeof(b.public_z85));
    assert_int_equal(fl_keys_write(f->dir, "q", &b, err, sizeof(err)),
                     FL_ERR_INVALID_ARG);
    path_in(f, "q.key", path, sizeof(path));
    assert_int_equal(access(path, F_OK), -1);
}

/* text with {P}, {S}, {O} replaced by kp's public and secret keys and
 * another public key */
static void expand(const char *text, const struct fl_keypair *kp,
                   const char *other, char *out, size_t cap)
{
    size_t n = 0;
    while (*text != '\0' && n + FL_KEY_Z85_LEN + 1 < cap) {
        const char *sub = NULL;
        if (strncmp(text, "{P}", 3) == 0)
            sub = kp->public_z85;
        else if (strncmp(text, "{S}", 3) == 0)
            sub = kp->secret_z85;
        else if (strncmp(text, "{O}", 3) == 0)
            sub = other;
        if (sub != NULL) {
            memcpy(out + n, sub, strlen(sub));
            n += strlen(sub);
            text += 3;
        } else {
            out[n++] = *text++;
        }
    }
    out[n] = '\0';
}

static void test_bad_files(void **state)
{
    struct fixture *f = *state;
    struct fl_keypair kp, other;
    char good[4096], path[512], err[256];
    assert_int_equal(fl_keys_generate(&kp), FL_OK);
    assert_int_equal(fl_keys_generate(&other), FL_OK);
    static const struct {
        const char *text;     /* {P} public, {S} secret, {O} other pub */
        mode_t mode;
        enum fl_err want;
        const char *msg;      /* substring of err */
    } cases[] = {
        {"", 0600, FL_ERR_FORMAT, "no key"},
        {"# only a comment\n\n", 0600, FL_ERR_FORMAT, "no key"},
        {"public = {P}\n", 0644, FL_OK, ""},
        {"  public={P}  \r\n", 0644, FL_OK, ""},
        {"secret = {S}\n", 0600, FL_OK, ""},
        {"secret = {S}\npublic = {P}\n", 0640, FL_OK, ""},
        {"public = {P}\nsecret = {S}\n", 0604, FL_ERR_INVALID_ARG,
         "other users"},
        {"public = {O}\nsecret = {S}\n", 0600, FL_ERR_INVALID_ARG,
         "does not belong"},
        {"public = {P}\npublic = {P}\n", 0644, FL_ERR_FORMAT, "line 2"},
        {"public {P}\n", 0644, FL_ERR_FORMAT, "line 1"},
        {"pub = {P}\n", 0644, FL_ERR_FORMAT, "unknown name"},
        {"public = {P}x\n", 0644, FL_ERR_FORMAT, "Z85"},
        {"public = short\n", 0644, FL_ERR_FORMAT, "Z85"},
        {"public = \"{P}\"\n", 0644, FL_ERR_FORMAT, "Z85"},
        {"# c\npublic = 0123456789abcdefghijklmnopqrstuvwxyzAB C\n", 0644,
         FL_ERR_FORMAT, "line 2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fl_keypair got;
        expand(cases[i].text, &kp, other.public_z85, good, sizeof(good));
        path_in(f, "case.key", path, sizeof(path));
        unlink(path);
        write_text(path, good, cases[i].mode);
        err[0] = '\0';
        const enum fl_err rc = fl_keys_read(path, &got, err, sizeof(err));
        if (rc != cases[i].want)
            fail_msg("case %zu: got %d want %d (%s)", i, rc, cases[i].want,
                     err);
        if (rc == FL_OK) {
            assert_string_equal(got.public_z85, kp.public_z85);
        } else {
            assert_non_null(strstr(err, cases[i].msg));
            assert_null(strstr(err, kp.secret_z85)); /* never a secret */
            assert_string_equal(got.secret_z85, "");
        }
    }
    /* missing, too large, a directory, binary */
    path_in(f, "nope.key", path, sizeof(path));
    assert_int_equal(fl_keys_read(path, &kp, err, sizeof(err)),
                     FL_ERR_NOT_FOUND);
    path_in(f, "big.pub", path, sizeof(path));
    memset(good, '#', sizeof(good) - 1);
    good[sizeof(good) - 1] = '\0';
    write_text(path, good, 0644);
    FILE *fp = fopen(path, "a");
    assert_non_null(fp);
    fputs("more\n", fp);
    fclose(fp);
    assert_int_equal(fl_keys_read(path, &kp, err, sizeof(err)),
                     FL_ERR_TOO_LARGE);
    assert_int_equal(fl_keys_read(f->dir, &kp, err, sizeof(err)),
                     FL_ERR_IO);
    path_in(f, "bin.pub", path, sizeof(path));
    fp = fopen(path, "w");
    assert_non_null(fp);
    fwrite("public\0= x", 1, 10, fp);
    fclose(fp);
    assert_int_equal(fl_keys_read(path, &kp, err, sizeof(err)),
                     FL_ERR_FORMAT);
}

static void test_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        bool valid;
    } names[] = {
        {"w0", true}, {"dev-1.site_a:7", true}, {"", false},
        {".hidden", false}, {"a/b", false}, {"a b", false},
        {"0123456789012345678901234567890123456789012345678901234567890123",
         true},
        {"01234567890123456789012345678901234567890123456789012345678901234",
         false},
        {"é", false},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_int_equal(fl_keys_name_valid(names[i].name), names[i].valid);

    static const struct {
        const char *path;
        const char *want;   /* NULL: invalid */
    } paths[] = {
        {"/etc/fedcomp/w3.key", "w3"}, {"w3.pub", "w3"}, {"w3", "w3"},
        {"keys/dev.a.key", "dev.a"}, {"/x/.key", NULL}, {"/x/", NULL},
        {"a b.key", NULL}, {"dir/.hidden.pub", NULL},
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        char name[FL_KEY_NAME_MAX + 1];
        const enum fl_err rc =
            fl_keys_name_from_path(paths[i].path, name, sizeof(name));
        if (paths[i].want == NULL) {
            assert_int_equal(rc, FL_ERR_INVALID_ARG);
        } else {
            assert_int_equal(rc, FL_OK);
            assert_string_equal(name, paths[i].want);
        }
    }
}

static void test_z85_and_fingerprint(void **state)
{
    (void)state;
    /* RFC 32's test vector: the 8 bytes 86 4F D2 6F B5 59 F7 5B */
    uint8_t bin[FL_KEY_BYTES], back[FL_KEY_BYTES];
    char z85[FL_KEY_Z85_LEN + 1], fpr[FL_KEY_FPR_LEN + 1];
    static const uint8_t hello[8] = {0x86, 0x4F, 0xD2, 0x6F,
                                     0xB5, 0x59, 0xF7, 0x5B};
    for (size_t i = 0; i < FL_KEY_BYTES; i++)
        bin[i] = hello[i % 8];
    fl_keys_z85_encode(bin, z85);
    assert_int_equal(strlen(z85), FL_KEY_Z85_LEN);
    assert_memory_equal(z85, "HelloWorldHelloWorldHelloWorldHelloWorld",
                        FL_KEY_Z85_LEN);
    assert_int_equal(fl_keys_z85_decode(z85, back), FL_OK);
    assert_memory_equal(back, bin, FL_KEY_BYTES);
    assert_int_equal(fl_keys_z85_decode("HelloWorld", back), FL_ERR_FORMAT);
    assert_int_equal(
        fl_keys_z85_decode("HelloWorldHelloWorldHelloWorldHelloWorl\"",
                           back),
        FL_ERR_FORMAT);
    fl_keys_fingerprint(z85, fpr);
    assert_string_equal(fpr, "HelloWorldHe");
    fl_keys_fingerprint("short", fpr);
    assert_string_equal(fpr, "invalid");

    /* property: random keys round-trip, fingerprints are prefixes */
    for (int i = 0; i < 50; i++) {
        struct fl_keypair kp;
        assert_int_equal(fl_keys_generate(&kp), FL_OK);
        assert_int_equal(fl_keys_z85_decode(kp.public_z85, back), FL_OK);
        fl_keys_z85_encode(back, z85);
        assert_string_equal(z85, kp.public_z85);
        fl_keys_fingerprint(kp.public_z85, fpr);
        assert_memory_equal(fpr, kp.public_z85, FL_KEY_FPR_LEN);
    }
}

static void test_credentials_directory(void **state)
{
    struct fixture *f = *state;
    char path[512], buf[512], cwd[512];
    const char *got;
    path_in(f, "coord.key", path, sizeof(path));
    write_text(path, "x\n", 0600);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir("/"), 0);

    unsetenv("CREDENTIALS_DIRECTORY");
    got = fl_keys_resolve("coord.key", buf, sizeof(buf));
    assert_string_equal(got, "coord.key");
    setenv("CREDENTIALS_DIRECTORY", f->dir, 1);
    got = fl_keys_resolve("coord.key", buf, sizeof(buf));
    assert_string_equal(got, path);
    /* absolute paths and files missing there too are left alone */
    got = fl_keys_resolve("/nonexistent/coord.key", buf, sizeof(buf));
    assert_string_equal(got, "/nonexistent/coord.key");
    got = fl_keys_resolve("other.key", buf, sizeof(buf));
    assert_string_equal(got, "other.key");
    /* a relative file that exists here wins */
    assert_int_equal(chdir(f->dir), 0);
    got = fl_keys_resolve("coord.key", buf, sizeof(buf));
    assert_string_equal(got, "coord.key");
    unsetenv("CREDENTIALS_DIRECTORY");
    assert_int_equal(chdir(cwd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_generate_write_read_round_trip,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_never_overwrites, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_z85_and_fingerprint),
        cmocka_unit_test_setup_teardown(test_credentials_directory, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
