/*
 * wrk_data.h - load this device's shard of the training set.
 *
 * The labels of the first `limit` training images are read and partitioned
 * exactly as every other device of the run partitions them (same seed, same
 * config), then only this shard's images are read from the IDX file. No
 * sockets, no logging: errors come back with a one-line message.
 */
#ifndef WRK_DATA_H
#define WRK_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "model/mdl_data.h"
#include "model/mdl_partition.h"

/* What the load saw, for logs. */
struct wrk_data_info {
    uint32_t total;      /* training images partitioned (after the limit) */
    uint32_t shard_n;    /* images in this shard */
    uint32_t class_count[10];
};

/* Load shard `shard` of pc->nshards from dir ("train" split), using the
 * first `limit` images (0 = all). Caller owns *out (mdl_dataset_destroy()).
 * FL_ERR_DATA / FL_ERR_NOT_FOUND for missing or malformed files,
 * FL_ERR_INVALID_ARG for a partition that cannot be made (err says why),
 * FL_ERR_DATA when the shard is empty. */
enum fl_err wrk_data_load_shard(const char *dir, uint32_t limit,
                                const struct mdl_partition_config *pc,
                                uint32_t shard, struct mdl_dataset **out,
                                struct wrk_data_info *info, char *err,
                                size_t errlen);

#endif /* WRK_DATA_H */
