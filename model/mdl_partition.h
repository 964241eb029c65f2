/*
 * mdl_partition.h - split a labelled training set among devices,
 * deterministically from a seed.
 *
 * IID: a seeded shuffle dealt round-robin. Dirichlet(alpha): for each class,
 * proportions over shards drawn from Dir(alpha) and that class's (shuffled)
 * samples cut accordingly; smaller alpha is more skewed. Every sample lands
 * in exactly one shard; with min_shard > 0, shards smaller than that are
 * topped up by moving samples from the largest shards, so no shard is empty.
 */
#ifndef MDL_PARTITION_H
#define MDL_PARTITION_H

#include <stdint.h>

#include "common/fl_err.h"

enum mdl_partition_kind {
    MDL_PARTITION_IID = 0,
    MDL_PARTITION_DIRICHLET = 1
};

struct mdl_partition_config {
    enum mdl_partition_kind kind;
    double alpha;         /* Dirichlet concentration, > 0 */
    uint32_t nshards;     /* >= 1 */
    uint64_t seed;
    uint32_t min_shard;   /* minimum samples per shard; 0 = no minimum */
};

/* Parse "iid" or "dirichlet:ALPHA" into kind/alpha. 0 on success, -1 else. */
int mdl_partition_parse(const char *s, struct mdl_partition_config *cfg);

/* shard_of[i] := shard of sample i, for i < n (caller buffer of n entries).
 * FL_ERR_INVALID_ARG when nshards == 0, alpha <= 0 for Dirichlet, or
 * nshards * min_shard > n. */
enum fl_err mdl_partition(const uint8_t *labels, uint32_t n,
                          uint32_t nclasses,
                          const struct mdl_partition_config *cfg,
                          uint32_t *shard_of);

/* Ascending indices of the samples in shard s. Caller owns *idx
 * (fl_free()); *count may be 0. */
enum fl_err mdl_partition_indices(const uint32_t *shard_of, uint32_t n,
                                  uint32_t s, uint32_t **idx,
                                  uint32_t *count);

#endif /* MDL_PARTITION_H */
