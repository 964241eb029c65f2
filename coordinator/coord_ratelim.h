/*
 * coord_ratelim.h - a token bucket per ZeroMQ routing id, so that one peer
 * cannot flood the coordinator (docs/security.md).
 *
 * Each routing id has a bucket of `burst` tokens that refills at `rate`
 * tokens a second; a message takes one token, and a message that finds the
 * bucket empty is to be dropped unparsed. A new routing id starts full.
 * Buckets are found by a keyed 64-bit hash of the routing id (the key is
 * the seed given at creation, random in the coordinator), so two peers
 * share a bucket only on a hash collision, which a peer cannot aim for
 * without the seed.
 *
 * Memory is fixed at creation: room for `max_peers` buckets (the table has
 * twice that many slots). When it fills, buckets idle long enough to be
 * full again are forgotten (forgetting a full bucket changes nothing); if
 * every bucket is busy, the message passes unlimited and is counted in
 * coord_ratelim_overflows(): the limiter never refuses a peer for lack of
 * room.
 *
 * Not thread-safe; the coordinator's loop is the only user. Time is passed
 * in (any monotonic nanosecond clock), so tests need no sleeps.
 */
#ifndef COORD_RATELIM_H
#define COORD_RATELIM_H

#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"

enum coord_rl_verdict {
    COORD_RL_PASS = 0,           /* took a token */
    COORD_RL_DROP = 1,           /* no token: drop */
    COORD_RL_DROP_FIRST = 2      /* no token, first drop of this peer in
                                    this round: drop and log */
};

struct coord_ratelim;

/* rate > 0 tokens a second, burst >= 1, max_peers >= 1 (at most 1 << 24).
 * Caller owns *out (coord_ratelim_destroy()). FL_ERR_INVALID_ARG,
 * FL_ERR_NOMEM. */
enum fl_err coord_ratelim_new(double rate, double burst, size_t max_peers,
                              uint64_t seed, struct coord_ratelim **out);
void coord_ratelim_destroy(struct coord_ratelim **rp);

/* Account one message from rid at now_ns during round `round` (for the
 * once-per-round DROP_FIRST). */
enum coord_rl_verdict coord_ratelim_check(struct coord_ratelim *r,
                                          const uint8_t *rid, size_t rid_len,
                                          uint64_t round, uint64_t now_ns);

/* Buckets held, and messages passed because the table was full. */
size_t coord_ratelim_size(const struct coord_ratelim *r);
uint64_t coord_ratelim_overflows(const struct coord_ratelim *r);

#endif /* COORD_RATELIM_H */
