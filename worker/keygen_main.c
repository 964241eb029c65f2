/*
 * fedcomp-keygen: make a CURVE key pair for the coordinator or a device.
 *
 *   fedcomp-keygen NAME [--dir DIR]
 *
 * writes DIR/NAME.key (public + secret, mode 0600) and DIR/NAME.pub
 * (public, mode 0644) and prints the fingerprint. Existing files are never
 * overwritten. The file format is in common/fl_keys.h and
 * docs/security.md. Exit codes: 0 ok, 1 error, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "common/fl_keys.h"
#include "common/fl_util.h"

#define KEYGEN_PROGRAM "fedcomp-keygen"
#define KEYGEN_VERSION "0.1.0"

static void usage(FILE *f)
{
    fputs("usage: " KEYGEN_PROGRAM " NAME [--dir DIR]\n"
          "\n"
          "Make a CURVE key pair: DIR/NAME.key (public and secret, mode\n"
          "0600: stays on the machine that uses it) and DIR/NAME.pub (the\n"
          "public key, to give to the other side). NAME is a device id,\n"
          "1-64 characters of [A-Za-z0-9._:-]; for a device it becomes its\n"
          "name at the coordinator (its authorized-keys file NAME.pub).\n"
          "Existing files are never overwritten.\n"
          "\n"
          "  --dir DIR      where to write (.; created with mode 0700)\n"
          "  -h, --help     this text\n"
          "  -V, --version  print the version\n"
          "\n"
          "Exit codes: 0 ok, 1 error, 2 usage.\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    const char *dir = ".";
    struct fl_keypair kp;
    char err[512] = "", fpr[FL_KEY_FPR_LEN + 1];
    enum fl_err rc;
    int c;

    opterr = 0;
    for (;;) {
        c = getopt_long(argc, argv, "hV", opts, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        if (c == 'V') {
            puts(KEYGEN_PROGRAM " " KEYGEN_VERSION);
            return 0;
        }
        if (c != 'd') {
            fprintf(stderr, KEYGEN_PROGRAM ": unknown option or missing "
                    "value '%s'\nTry '" KEYGEN_PROGRAM " --help'.\n",
                    argv[optind > 1 ? optind - 1 : 1]);
            return 2;
        }
        dir = optarg;
    }
    if (optind != argc - 1) {
        fprintf(stderr, KEYGEN_PROGRAM ": %s\nTry '" KEYGEN_PROGRAM
                " --help'.\n", optind >= argc ? "the key NAME is missing"
                                              : "give exactly one NAME");
        return 2;
    }
    const char *name = argv[optind];
    if (!fl_keys_name_valid(name)) {
        fprintf(stderr, KEYGEN_PROGRAM ": key name '%s' is not 1-64 "
                "characters of [A-Za-z0-9._:-] (not starting with '.')\n",
                name);
        return 2;
    }
    if (dir[0] == '\0' || fl_mkdir_p(dir, 1) != FL_OK) {
        fprintf(stderr, KEYGEN_PROGRAM ": cannot create directory '%s': "
                "%s\n", dir, strerror(errno));
        return 1;
    }
    rc = fl_keys_generate(&kp);
    if (rc != FL_OK) {
        fprintf(stderr, KEYGEN_PROGRAM ": cannot make a key pair: libzmq "
                "has no CURVE support\n");
        return 1;
    }
    rc = fl_keys_write(dir, name, &kp, err, sizeof(err));
    fl_keys_fingerprint(kp.public_z85, fpr);
    fl_keys_clear(&kp);
    if (rc != FL_OK) {
        fprintf(stderr, KEYGEN_PROGRAM ": %s\n", err);
        return 1;
    }
    printf("wrote %s/%s.key (secret, mode 0600) and %s/%s.pub\n"
           "fingerprint %s\n", dir, name, dir, name, fpr);
    return 0;
}
