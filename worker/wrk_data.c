/*
 * wrk_data.c - this device's shard of Fashion-MNIST (wrk_data.h).
 */
#include "worker/wrk_data.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/fl_alloc.h"

/* "<dir>/train-labels-idx1-ubyte.gz", or the uncompressed name. */
static void labels_path(const char *dir, char *path, size_t cap)
{
    snprintf(path, cap, "%s/train-labels-idx1-ubyte.gz", dir);
    if (access(path, R_OK) == 0)
        return;
    snprintf(path, cap, "%s/train-labels-idx1-ubyte", dir);
}

enum fl_err wrk_data_load_shard(const char *dir, uint32_t limit,
                                const struct mdl_partition_config *pc,
                                uint32_t shard, struct mdl_dataset **out,
                                struct wrk_data_info *info, char *err,
                                size_t errlen)
{
    char path[4096];
    uint8_t *labels = NULL;
    uint32_t *shard_of = NULL;
    uint32_t *keep = NULL;
    uint32_t n = 0, nkeep = 0;
    enum fl_err rc = FL_OK;

    *out = NULL;
    memset(info, 0, sizeof(*info));
    if (shard >= pc->nshards) {
        snprintf(err, errlen, "shard %u of %u does not exist", shard,
                 pc->nshards);
        return FL_ERR_INVALID_ARG;
    }
    labels_path(dir, path, sizeof(path));
    rc = mdl_idx_read_labels(path, &labels, &n, err, errlen);
    if (rc != FL_OK)
        goto out;
    if (limit > 0 && limit < n)
        n = limit;
    shard_of = fl_malloc((size_t)n * sizeof(*shard_of) + 1);
    if (shard_of == NULL) {
        rc = FL_ERR_NOMEM;
        snprintf(err, errlen, "out of memory partitioning %u labels", n);
        goto out;
    }
    rc = mdl_partition(labels, n, 10, pc, shard_of);
    if (rc != FL_OK) {
        snprintf(err, errlen,
                 "cannot partition %u images into %u shards (min %u): %s", n,
                 pc->nshards, pc->min_shard, fl_strerror(rc));
        goto out;
    }
    rc = mdl_partition_indices(shard_of, n, shard, &keep, &nkeep);
    if (rc != FL_OK) {
        snprintf(err, errlen, "cannot list shard %u: %s", shard,
                 fl_strerror(rc));
        goto out;
    }
    if (nkeep == 0) {
        rc = FL_ERR_DATA;
        snprintf(err, errlen, "shard %u of %u is empty", shard, pc->nshards);
        goto out;
    }
    rc = mdl_dataset_load(dir, "train", keep, nkeep, out, err, errlen);
    if (rc != FL_OK)
        goto out;
    info->total = n;
    info->shard_n = (*out)->n;
    for (uint32_t i = 0; i < (*out)->n; i++) {
        if ((*out)->y[i] < 10)
            info->class_count[(*out)->y[i]]++;
    }
out:
    fl_free(keep);
    fl_free(shard_of);
    fl_free(labels);
    return rc;
}
