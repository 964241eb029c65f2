#include "coordinator/coord_report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fl_alloc.h"
#include "common/fl_util.h"
#include "coordinator/coord_config.h"

#define PATH_CAP 4096

const char coord_rounds_csv_header[] =
    "round,attempt,joined,selected,reported,dropped,rejected,late,"
    "up_wire_bytes,up_dense_bytes,other_rx_bytes,down_wire_bytes,"
    "down_dense_bytes,up_ratio,density,values,codec,wall_s,cpu_s,agg_s,"
    "test_acc,test_loss";

const char coord_devices_csv_header[] =
    "round,device,status,samples,up_bytes,down_bytes,k,density,values,codec,"
    "train_ms,encode_ms,upload_ms,loss,attempt,budget,load_ms,peak_rss_kb";

struct coord_report {
    char *dir;                   /* NULL: no files */
    FILE *rounds_csv;
    FILE *rounds_jsonl;
    FILE *devices_csv;
};

const char *coord_dev_status_name(enum coord_dev_status s)
{
    switch (s) {
    case COORD_DEV_REPORTED: return "reported";
    case COORD_DEV_DROPPED: return "dropped";
    case COORD_DEV_REJECTED: return "rejected";
    case COORD_DEV_LATE: return "late";
    }
    return "unknown";
}

static enum fl_err make_path(const char *dir, const char *name, char *buf,
                             size_t len)
{
    const int n = snprintf(buf, len, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= len ? FL_ERR_TOO_LARGE : FL_OK;
}

/* Open dir/name for appending; write header when the file is empty. */
static enum fl_err open_append(const char *dir, const char *name,
                               const char *header, FILE **out, char *err,
                               size_t errlen)
{
    char path[PATH_CAP];
    struct stat st;
    FILE *f;
    if (make_path(dir, name, path, sizeof(path)) != FL_OK) {
        snprintf(err, errlen, "report path '%s/%s' is too long", dir, name);
        return FL_ERR_TOO_LARGE;
    }
    f = fopen(path, "a");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return FL_ERR_IO;
    }
    if (fstat(fileno(f), &st) != 0) {
        snprintf(err, errlen, "cannot stat '%s': %s", path, strerror(errno));
        fclose(f);
        return FL_ERR_IO;
    }
    if (header != NULL && st.st_size == 0) {
        fprintf(f, "%s\n", header);
        if (fflush(f) != 0) {
            snprintf(err, errlen, "cannot write '%s': %s", path,
                     strerror(errno));
            fclose(f);
            return FL_ERR_IO;
        }
    }
    *out = f;
    return FL_OK;
}

enum fl_err coord_report_open(const char *dir, struct coord_report **out,
                              char *err, size_t errlen)
{
    enum fl_err rc = FL_OK;
    struct coord_report *r;
    char dummy[8];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    *out = NULL;
    r = fl_calloc(1, sizeof(*r));
    if (r == NULL)
        return FL_ERR_NOMEM;
    if (dir == NULL) {
        *out = r;
        return FL_OK;
    }
    const size_t n = strlen(dir);
    r->dir = fl_malloc(n + 1);
    if (r->dir == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    memcpy(r->dir, dir, n + 1);
    rc = fl_mkdir_p(dir, 0);
    if (rc != FL_OK) {
        snprintf(err, errlen, "cannot create report directory '%s': %s",
                 dir, strerror(errno));
        goto out;
    }
    rc = open_append(dir, "rounds.csv", coord_rounds_csv_header,
                     &r->rounds_csv, err, errlen);
    if (rc != FL_OK)
        goto out;
    rc = open_append(dir, "rounds.jsonl", NULL, &r->rounds_jsonl, err,
                     errlen);
    if (rc != FL_OK)
        goto out;
    rc = open_append(dir, "devices.csv", coord_devices_csv_header,
                     &r->devices_csv, err, errlen);
out:
    if (rc != FL_OK)
        coord_report_close(&r);
    *out = r;
    return rc;
}

static enum fl_err sync_file(FILE *f)
{
    if (f == NULL)
        return FL_OK;
    if (fflush(f) != 0 || ferror(f))
        return FL_ERR_IO;
    if (fsync(fileno(f)) != 0 && errno != EINVAL && errno != EROFS)
        return FL_ERR_IO;
    return FL_OK;
}

enum fl_err coord_report_sync(struct coord_report *r)
{
    enum fl_err rc = sync_file(r->rounds_csv);
    const enum fl_err rc2 = sync_file(r->rounds_jsonl);
    const enum fl_err rc3 = sync_file(r->devices_csv);
    if (rc == FL_OK)
        rc = rc2;
    if (rc == FL_OK)
        rc = rc3;
    return rc;
}

void coord_report_close(struct coord_report **rp)
{
    struct coord_report *r;
    if (rp == NULL || *rp == NULL)
        return;
    r = *rp;
    coord_report_sync(r);
    if (r->rounds_csv != NULL)
        fclose(r->rounds_csv);
    if (r->rounds_jsonl != NULL)
        fclose(r->rounds_jsonl);
    if (r->devices_csv != NULL)
        fclose(r->devices_csv);
    fl_free(r->dir);
    fl_free(r);
    *rp = NULL;
}

/* ---- field writers: an empty CSV field / JSON null for non-finite */

/* fmt is "f" or "g" with a precision: a fixed set, so no format strings
 * are built at run time. */
static void put_num(FILE *f, char conv, int prec, double v)
{
    if (conv == 'g')
        fprintf(f, "%.*g", prec, v);
    else
        fprintf(f, "%.*f", prec, v);
}

static void csv_num(FILE *f, char conv, int prec, double v)
{
    fputc(',', f);
    if (isfinite(v))
        put_num(f, conv, prec, v);
}

static void json_num(FILE *f, const char *key, char conv, int prec, double v)
{
    fprintf(f, ",\"%s\":", key);
    if (isfinite(v))
        put_num(f, conv, prec, v);
    else
        fputs("null", f);
}

static double up_ratio(const struct coord_round_row *row)
{
    if (row->up_wire_bytes == 0)
        return NAN;
    return (double)row->up_dense_bytes / (double)row->up_wire_bytes;
}

static void write_round_csv(FILE *f, const struct coord_round_row *row,
                            const char *codec)
{
    fprintf(f, "%llu,%u,%u,%u,%u,%u,%u,%u,%llu,%llu,%llu,%llu,%llu",
            (unsigned long long)row->round, row->attempt, row->joined,
            row->selected, row->reported, row->dropped, row->rejected,
            row->late, (unsigned long long)row->up_wire_bytes,
            (unsigned long long)row->up_dense_bytes,
            (unsigned long long)row->other_rx_bytes,
            (unsigned long long)row->down_wire_bytes,
            (unsigned long long)row->down_dense_bytes);
    csv_num(f, 'f', 4, up_ratio(row));
    csv_num(f, 'g', 6, row->density);
    fprintf(f, ",%s,%s", cmp_value_coding_name(row->values), codec);
    csv_num(f, 'f', 6, row->wall_s);
    csv_num(f, 'f', 6, row->cpu_s);
    csv_num(f, 'f', 6, row->agg_s);
    csv_num(f, 'f', 6, row->test_acc);
    csv_num(f, 'f', 6, row->test_loss);
    fputc('\n', f);
}

static void write_round_json(FILE *f, const struct coord_round_row *row,
                             const char *codec)
{
    bool first = true;
    fprintf(f,
            "{\"round\":%llu,\"attempt\":%u,\"joined\":%u,\"selected\":%u,"
            "\"reported\":%u,\"dropped\":%u,\"rejected\":%u,\"late\":%u,"
            "\"up_wire_bytes\":%llu,\"up_dense_bytes\":%llu,"
            "\"other_rx_bytes\":%llu,\"down_wire_bytes\":%llu,"
            "\"down_dense_bytes\":%llu",
            (unsigned long long)row->round, row->attempt, row->joined,
            row->selected, row->reported, row->dropped, row->rejected,
            row->late, (unsigned long long)row->up_wire_bytes,
            (unsigned long long)row->up_dense_bytes,
            (unsigned long long)row->other_rx_bytes,
            (unsigned long long)row->down_wire_bytes,
            (unsigned long long)row->down_dense_bytes);
    json_num(f, "up_ratio", 'f', 4, up_ratio(row));
    json_num(f, "density", 'g', 6, row->density);
    fprintf(f, ",\"values\":\"%s\",\"codec\":\"%s\"",
            cmp_value_coding_name(row->values), codec);
    json_num(f, "wall_s", 'f', 6, row->wall_s);
    json_num(f, "cpu_s", 'f', 6, row->cpu_s);
    json_num(f, "agg_s", 'f', 6, row->agg_s);
    json_num(f, "test_acc", 'f', 6, row->test_acc);
    json_num(f, "test_loss", 'f', 6, row->test_loss);
    fputs(",\"rejects\":{", f);
    for (int e = 0; e < FL_ERR__MAX; e++) {
        if (row->rejects[e] == 0)
            continue;
        fprintf(f, "%s\"%s\":%u", first ? "" : ",",
                fl_err_name((enum fl_err)e), row->rejects[e]);
        first = false;
    }
    fprintf(f, "},\"disconnects\":%u,\"multipart\":%u,"
            "\"weight_capped\":%u", row->disconnects, row->multipart,
            row->weight_capped);
    json_num(f, "norm_bound", 'g', 6,
             row->norm_bound > 0 && isfinite(row->norm_bound)
                 ? row->norm_bound
                 : NAN);
    fprintf(f, ",\"refused_handshakes\":%llu,\"rate_limited\":%llu",
            (unsigned long long)row->refused_handshakes,
            (unsigned long long)row->rate_limited);
    fprintf(f, ",\"uplink_budget\":%llu,\"over_budget\":%u",
            (unsigned long long)row->uplink_budget, row->over_budget);
    fputs("}\n", f);
}

enum fl_err coord_report_round(struct coord_report *r,
                               const struct coord_round_row *row)
{
    char codec[32];
    if (r->dir == NULL)
        return FL_OK;
    coord_codec_format(row->codec, row->level, codec, sizeof(codec));
    write_round_csv(r->rounds_csv, row, codec);
    write_round_json(r->rounds_jsonl, row, codec);
    return coord_report_sync(r);
}

enum fl_err coord_report_device(struct coord_report *r,
                                const struct coord_device_row *row)
{
    FILE *f = r->devices_csv;
    if (r->dir == NULL)
        return FL_OK;
    fprintf(f, "%llu,%s,%s,", (unsigned long long)row->round, row->device,
            coord_dev_status_name(row->status));
    if (row->samples > 0)
        fprintf(f, "%llu", (unsigned long long)row->samples);
    fprintf(f, ",%llu,%llu", (unsigned long long)row->up_bytes,
            (unsigned long long)row->down_bytes);
    if (row->has_update) {
        fprintf(f, ",%llu", (unsigned long long)row->k);
        csv_num(f, 'g', 6, row->density);
        fprintf(f, ",%s,%s,%u,%u", cmp_value_coding_name(row->values),
                cmp_codec_name(row->codec), row->train_ms, row->encode_ms);
        csv_num(f, 'f', 3, row->upload_ms);
        csv_num(f, 'f', 6, row->loss);
    } else {
        fputs(",,,,,,,,", f);
    }
    if (row->attempt > 0)
        fprintf(f, ",%u", row->attempt);
    else
        fputc(',', f);
    if (row->budget > 0)
        fprintf(f, ",%llu", (unsigned long long)row->budget);
    else
        fputc(',', f);
    if (row->has_update)
        fprintf(f, ",%u", row->load_ms);
    else
        fputc(',', f);
    if (row->has_update && row->peak_rss_kb > 0)
        fprintf(f, ",%llu\n", (unsigned long long)row->peak_rss_kb);
    else
        fputs(",\n", f);
    return ferror(f) ? FL_ERR_IO : FL_OK;
}

enum fl_err coord_report_initial(struct coord_report *r, double acc)
{
    char path[PATH_CAP];
    char text[64];
    if (r->dir == NULL)
        return FL_OK;
    FL_FORWARD_ERR(make_path(r->dir, "initial_acc", path, sizeof(path)));
    const int n = snprintf(text, sizeof(text), "%.6f\n", acc);
    return fl_file_write_atomic(path, text, (size_t)n);
}

void coord_format_bytes(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = -1;
    if (bytes < 1024) {
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
        return;
    }
    while (v >= 1024.0 && u < 3) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, len, "%.1f %s", v, units[u]);
}

void coord_report_progress(const struct coord_round_row *row,
                           uint64_t rounds_total, char *buf, size_t len)
{
    char up[32], down[32], ratio[32], head[64], extra[96];
    size_t n = 0;
    coord_format_bytes(row->up_wire_bytes, up, sizeof(up));
    coord_format_bytes(row->down_wire_bytes, down, sizeof(down));
    if (row->up_wire_bytes > 0)
        snprintf(ratio, sizeof(ratio), " (x%.1f vs dense)", up_ratio(row));
    else
        ratio[0] = '\0';
    if (!row->committed)
        snprintf(head, sizeof(head), "round %llu/%llu attempt %u abandoned",
                 (unsigned long long)row->round,
                 (unsigned long long)rounds_total, row->attempt);
    else if (row->attempt > 1)
        snprintf(head, sizeof(head), "round %llu/%llu (attempt %u)",
                 (unsigned long long)row->round,
                 (unsigned long long)rounds_total, row->attempt);
    else
        snprintf(head, sizeof(head), "round %llu/%llu",
                 (unsigned long long)row->round,
                 (unsigned long long)rounds_total);
    extra[0] = '\0';
    if (row->rejected > 0)
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, ", %u rejected",
                              row->rejected);
    if (row->dropped > 0 && n < sizeof(extra))
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, ", %u dropped",
                              row->dropped);
    if (row->late > 0 && n < sizeof(extra))
        snprintf(extra + n, sizeof(extra) - n, ", %u late", row->late);
    if (row->committed && isfinite(row->test_acc))
        snprintf(buf, len,
                 "%s: %u/%u reported%s, up %s%s, down %s, acc %.4f, "
                 "loss %.4f, %.2f s",
                 head, row->reported, row->selected, extra, up, ratio, down,
                 row->test_acc, row->test_loss, row->wall_s);
    else
        snprintf(buf, len, "%s: %u/%u reported%s, up %s%s, down %s, %.2f s",
                 head, row->reported, row->selected, extra, up, ratio, down,
                 row->wall_s);
}

static void summary_line(FILE *f, const char *name, uint64_t bytes)
{
    char h[32];
    coord_format_bytes(bytes, h, sizeof(h));
    fprintf(f, "  %-22s %12s  (%llu bytes)\n", name, h,
            (unsigned long long)bytes);
}

static void summary_ratio(FILE *f, const char *name, uint64_t dense,
                          uint64_t wire)
{
    if (wire > 0)
        fprintf(f, "  %-22s %12s  x%.1f\n", name, "",
                (double)dense / (double)wire);
    else
        fprintf(f, "  %-22s %12s  -\n", name, "");
}

static void summary_write(FILE *f, const struct coord_summary *s)
{
    fprintf(f, "fedcomp summary (%s)\n", s->outcome != NULL ? s->outcome
                                                            : "unknown");
    fprintf(f, "  %-22s %12llu  of %llu (%llu attempts)\n", "rounds",
            (unsigned long long)s->rounds_done,
            (unsigned long long)s->rounds_total,
            (unsigned long long)s->attempts);
    fprintf(f, "  %-22s %12llu  (rejected %llu, late %llu)\n",
            "updates used", (unsigned long long)s->updates_used,
            (unsigned long long)s->updates_rejected,
            (unsigned long long)s->updates_late);
    summary_line(f, "uplink wire", s->up_wire_bytes);
    summary_line(f, "uplink dense", s->up_dense_bytes);
    summary_ratio(f, "uplink ratio", s->up_dense_bytes, s->up_wire_bytes);
    summary_line(f, "downlink wire", s->down_wire_bytes);
    summary_line(f, "downlink dense", s->down_dense_bytes);
    summary_ratio(f, "downlink ratio", s->down_dense_bytes,
                  s->down_wire_bytes);
    summary_line(f, "other received", s->other_rx_bytes);
    if (s->send_failures > 0)
        fprintf(f, "  %-22s %12llu  (peer gone or not reading)\n",
                "failed sends", (unsigned long long)s->send_failures);
    if (s->refused_handshakes > 0)
        fprintf(f, "  %-22s %12llu  (keys not authorized)\n",
                "refused handshakes",
                (unsigned long long)s->refused_handshakes);
    if (s->rate_limited > 0)
        fprintf(f, "  %-22s %12llu  (over --max-msg-rate)\n",
                "rate-limited messages", (unsigned long long)s->rate_limited);
    if (isfinite(s->initial_acc))
        fprintf(f, "  %-22s %12.4f\n", "initial accuracy", s->initial_acc);
    if (isfinite(s->final_acc))
        fprintf(f, "  %-22s %12.4f  (loss %.4f)\n", "final accuracy",
                s->final_acc, s->final_loss);
    else
        fprintf(f, "  %-22s %12s\n", "final accuracy", "-");
    fprintf(f, "  %-22s %12.2f  s (coordinator cpu %.2f s)\n", "wall time",
            s->wall_s, s->cpu_s);
}

enum fl_err coord_report_summary(struct coord_report *r,
                                 const struct coord_summary *s, FILE *out)
{
    enum fl_err rc = FL_OK;
    char path[PATH_CAP];
    char *text = NULL;
    size_t len = 0;
    FILE *mem;
    if (out != NULL) {
        summary_write(out, s);
        fflush(out);
    }
    if (r == NULL || r->dir == NULL)
        return FL_OK;
    FL_FORWARD_ERR(make_path(r->dir, "summary.txt", path, sizeof(path)));
    mem = open_memstream(&text, &len);
    if (mem == NULL)
        return FL_ERR_NOMEM;
    summary_write(mem, s);
    if (fclose(mem) != 0) {
        free(text);
        return FL_ERR_NOMEM;
    }
    rc = fl_file_write_atomic(path, text, len);
    free(text);
    return rc;
}
