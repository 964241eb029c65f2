#include "common/fl_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fl_util.h"

#define CONFIG_MAX_BYTES (1 << 20)

struct argv_buf {
    char **v;
    int n;
    int cap;
};

static enum fl_err argv_push(struct argv_buf *a, const char *s, size_t len)
{
    if (a->n + 2 > a->cap) {
        const int cap = a->cap ? a->cap * 2 : 16;
        char **v = realloc(a->v, (size_t)cap * sizeof(*v));
        if (v == NULL)
            return FL_ERR_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return FL_ERR_NOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    a->v[a->n++] = copy;
    a->v[a->n] = NULL;
    return FL_OK;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static const struct option *find_opt(const struct option *longopts,
                                     const char *key)
{
    for (const struct option *o = longopts; o->name != NULL; o++) {
        if (strcmp(o->name, key) == 0)
            return o;
    }
    return NULL;
}

static int bool_word(const char *v)
{
    static const char *const yes[] = {"true", "on", "yes", "1"};
    static const char *const no[] = {"false", "off", "no", "0"};
    for (size_t i = 0; i < FL_ARRAY_LEN(yes); i++) {
        if (strcmp(v, yes[i]) == 0)
            return 1;
        if (strcmp(v, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* One "key = value" line into a->v as "--key=value" (or "--key"). */
static enum fl_err parse_line(char *line, const struct option *longopts,
                              struct argv_buf *a, const char *path,
                              unsigned lineno, char *err, size_t errlen)
{
    char *hash = strchr(line, '#');
    if (hash != NULL)
        *hash = '\0';
    char *s = trim(line);
    if (*s == '\0')
        return FL_OK;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        snprintf(err, errlen, "'%s' line %u: expected 'key = value'", path,
                 lineno);
        return FL_ERR_FORMAT;
    }
    *eq = '\0';
    const char *key = trim(s);
    const char *val = trim(eq + 1);
    const struct option *o = find_opt(longopts, key);
    if (o == NULL || strcmp(key, "config") == 0) {
        snprintf(err, errlen, "'%s' line %u: unknown key '%.64s'", path,
                 lineno, key);
        return FL_ERR_FORMAT;
    }
    char buf[4096];
    int n;
    if (o->has_arg == no_argument) {
        const int b = bool_word(val);
        if (b < 0) {
            snprintf(err, errlen,
                     "'%s' line %u: '%s' takes true or false, not '%.64s'",
                     path, lineno, key, val);
            return FL_ERR_FORMAT;
        }
        if (b == 0)
            return FL_OK;
        n = snprintf(buf, sizeof(buf), "--%s", key);
    } else {
        if (*val == '\0' && o->has_arg == required_argument) {
            snprintf(err, errlen, "'%s' line %u: '%s' needs a value", path,
                     lineno, key);
            return FL_ERR_FORMAT;
        }
        n = snprintf(buf, sizeof(buf), "--%s=%s", key, val);
    }
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        snprintf(err, errlen, "'%s' line %u: value too long", path, lineno);
        return FL_ERR_FORMAT;
    }
    return argv_push(a, buf, (size_t)n);
}

static enum fl_err load_file(const char *path, const struct option *longopts,
                             struct argv_buf *a, char *err, size_t errlen)
{
    void *data = NULL;
    size_t len = 0;
    enum fl_err rc = fl_file_read(path, CONFIG_MAX_BYTES, &data, &len);
    if (rc != FL_OK) {
        snprintf(err, errlen, "cannot read config file '%s': %s", path,
                 fl_strerror(rc));
        return rc;
    }
    char *text = data;
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "'%s': not a text file", path);
        free(data);
        return FL_ERR_FORMAT;
    }
    unsigned lineno = 0;
    for (char *line = text; line != NULL && rc == FL_OK;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        lineno++;
        rc = parse_line(line, longopts, a, path, lineno, err, errlen);
        line = nl != NULL ? nl + 1 : NULL;
    }
    free(data);
    return rc;
}

enum fl_err fl_config_expand(int argc, char *const *argv,
                             const struct option *longopts, int *out_argc,
                             char ***out_argv, char *err, size_t errlen)
{
    struct argv_buf a = {0};
    const char *path = NULL;
    int skip = -1, skip_n = 0;
    enum fl_err rc = FL_OK;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "option '--config' needs a file");
                return FL_ERR_INVALID_ARG;
            }
            path = argv[i + 1];
            skip = i;
            skip_n = 2;
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
            skip = i;
            skip_n = 1;
        }
    }
    rc = argv_push(&a, argv[0], strlen(argv[0]));
    if (rc == FL_OK && path != NULL)
        rc = load_file(path, longopts, &a, err, errlen);
    for (int i = 1; i < argc && rc == FL_OK; i++) {
        if (i >= skip && i < skip + skip_n)
            continue;
        rc = argv_push(&a, argv[i], strlen(argv[i]));
    }
    if (rc != FL_OK) {
        if (rc == FL_ERR_NOMEM)
            snprintf(err, errlen, "out of memory reading the configuration");
        fl_config_free_argv(a.n, a.v);
        return rc;
    }
    *out_argc = a.n;
    *out_argv = a.v;
    return FL_OK;
}

void fl_config_free_argv(int argc, char **argv)
{
    if (argv == NULL)
        return;
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
}
