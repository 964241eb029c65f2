/*
 * coord_guard.h - the coordinator's defences against devices that send
 * harmful updates: the update norm bound, the cap on one device's share of
 * a round's weight, and the penalty box. Pure computation (no sockets,
 * clocks or logging), driven by the engine; docs/coordinator.md has the
 * rules for operators.
 *
 * Norm bound. An update whose L2 norm (over its decoded values) is above
 * the bound is refused with FL_ERR_NORM before it is added. The bound is
 * the smaller of an absolute one (max_norm) and norm_factor times the
 * median norm of the updates accepted in the last committed round. Until a
 * round has committed (or when that median is 0) there is no adaptive
 * bound, only the absolute one if set.
 *
 * Weight share cap. With accepted weights w_1 >= ... >= w_n, the round is
 * aggregated with w'_i = min(w_i, c), c the largest value for which
 * max w'_i <= max_share * sum w'_j (no cap when the raw weights already
 * satisfy it). A capped device then carries exactly max_share of the total.
 * Updates are added as they arrive, so the rule is applied without
 * re-weighting folded updates: at most H = ceil(1/max_share) - 1 devices
 * can ever be capped (each capped one holds max_share of the total), and
 * they are the heaviest; the guard keeps a copy of the H heaviest updates
 * of the attempt and folds every lighter one into the accumulator at once.
 * At the close the held ones are added with their capped weights. When
 * fewer than 1/max_share updates were accepted no weighting meets the
 * bound; then every weight becomes the smallest one (the plain mean, the
 * smallest possible largest share). Memory: H * k * 8 bytes.
 *
 * Penalty box. Each refusal charged to a device is a strike; an accepted
 * update clears them. At penalty_after strikes in a row the device is
 * ignored for penalty_rounds rounds: not drawn into cohorts, and whatever
 * it sends is dropped unread (the engine counts it as FL_ERR_IGNORED).
 * Devices are known by their coord_device.index.
 *
 * Not thread-safe; the coordinator's loop is the only user.
 */
#ifndef COORD_GUARD_H
#define COORD_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"
#include "coordinator/coord_agg.h"

/* Smallest max_share accepted: bounds the held copies to 19 updates. */
#define COORD_SHARE_MIN 0.05

struct coord_guard_config {
    double max_share;         /* [COORD_SHARE_MIN, 1]; 1 = no cap */
    double max_norm;          /* absolute L2 bound; 0 = none */
    double norm_factor;       /* adaptive bound factor; 0 = none */
    uint32_t penalty_after;   /* strikes in a row; 0 = no penalty box */
    uint32_t penalty_rounds;  /* rounds a penalised device is ignored */
};

struct coord_guard;

/* Caller owns *out (coord_guard_destroy()). FL_ERR_INVALID_ARG for a
 * config out of range, FL_ERR_NOMEM. */
enum fl_err coord_guard_new(const struct coord_guard_config *cfg,
                            struct coord_guard **out);
void coord_guard_destroy(struct coord_guard **gp);

/* ---- norm bound */

/* The bound now in force; INFINITY when there is none. */
double coord_guard_norm_bound(const struct coord_guard *g);

/* FL_ERR_NORM when norm is above the bound (or not a number), else FL_OK. */
enum fl_err coord_guard_check_norm(const struct coord_guard *g, double norm);

/* ---- aggregation with the share cap */

/* Add one accepted update (idx/val as returned by cmp_sparse_decode, k
 * entries; weight finite and > 0; norm its L2 norm) to the attempt: folded
 * into a at once, or held back when it is among the heaviest. Copies what
 * it holds; idx/val are not kept. FL_ERR_NOMEM (nothing changed) or an
 * error of coord_agg_add(). */
enum fl_err coord_guard_add(struct coord_guard *g, struct coord_agg *a,
                            const uint32_t *idx, const float *val, size_t k,
                            double weight, double norm);

/* Updates added to the attempt (held or folded). */
uint32_t coord_guard_count(const struct coord_guard *g);

/* Close the attempt's aggregation: add the held updates to a with their
 * capped weights. *capped (may be NULL) gets the number of updates whose
 * weight was lowered. Call before coord_agg_commit(). On an error of
 * coord_agg_add() the caller discards the round. */
enum fl_err coord_guard_finish(struct coord_guard *g, struct coord_agg *a,
                               uint32_t *capped);

/* The attempt's round committed: the norms of its accepted updates become
 * the reference of the adaptive bound. Clears the attempt. */
void coord_guard_committed(struct coord_guard *g);

/* The attempt was abandoned (or its commit failed): drop what is held and
 * the attempt's norms; the reference stays. */
void coord_guard_discard(struct coord_guard *g);

/* The cap c for weights w[0..n) (any order) under max_share as described
 * above; INFINITY when nothing needs capping. For tests and docs. */
double coord_share_cap(const double *w, size_t n, double max_share);

/* ---- penalty box */

/* A refusal charged to device dev. When it is the penalty_after-th in a
 * row the device is ignored in rounds < first_round + penalty_rounds and
 * true is returned (false otherwise, also when already ignored or when
 * memory runs out). first_round is the first round that opens after now. */
bool coord_guard_strike(struct coord_guard *g, uint32_t dev,
                        uint64_t first_round);

/* An accepted update: dev's strikes start again from zero. */
void coord_guard_forgive(struct coord_guard *g, uint32_t dev);

/* Whether dev is ignored in round (the open or next one). A device whose
 * period is over is released here, its strikes cleared. */
bool coord_guard_ignored(struct coord_guard *g, uint32_t dev,
                         uint64_t round);

/* True once per device and round: whether to answer a dropped message of
 * an ignored device with Reject{FL_ERR_IGNORED} (the rest are silent). */
bool coord_guard_first_drop(struct coord_guard *g, uint32_t dev,
                            uint64_t round);

/* Devices put in the box and not yet released (upper bound of those
 * ignored now): 0 lets callers skip per-device checks. */
size_t coord_guard_boxed(const struct coord_guard *g);

/* ---- logging wire strings */

/* Copy s into buf (len > 0) for a log line: printable ASCII is kept,
 * backslash, quote and every other byte become \xHH (so a wire string can
 * neither end its quotes nor start a line); cut, ending in "...", when it
 * does not fit. s NULL gives "(null)". Returns buf. */
const char *coord_escape(const char *s, char *buf, size_t len);

#endif /* COORD_GUARD_H */
