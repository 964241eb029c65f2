/*
 * coord_devtab.h - the coordinator's table of devices.
 *
 * A device is known by the id it says in Hello (1-64 characters of
 * [A-Za-z0-9._:-]) and reached through the ZeroMQ routing id of its
 * current connection. Records are never removed (a device that leaves
 * and comes back keeps its history, e.g. the fate of its last update), so
 * the table is capped (FL_ERR_FULL). Each record has a small fixed size: no
 * per-device model copies. Lookup by routing id and by device id is O(1)
 * (two open-addressing hash tables); record pointers stay valid for the
 * life of the table.
 *
 * Not thread-safe; the coordinator's loop is the only user.
 */
#ifndef COORD_DEVTAB_H
#define COORD_DEVTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fl_err.h"

#define COORD_ID_MAX 64
#define COORD_RID_MAX 255
#define COORD_DEVICES_MAX 65536

/* Where a device stands in the open attempt. */
enum coord_round_state {
    COORD_RS_IDLE = 0,       /* not in the cohort */
    COORD_RS_TASKED = 1,     /* Task sent, update awaited */
    COORD_RS_REPORTED = 2,   /* update accepted */
    COORD_RS_REJECTED = 3,   /* update refused */
    COORD_RS_GONE = 4        /* send failed, Bye, or reconnect lost it */
};

struct coord_device {
    char id[COORD_ID_MAX + 1];
    uint8_t rid[COORD_RID_MAX];
    uint8_t rid_len;             /* 0: not connected */
    uint32_t index;              /* position in the table */
    uint64_t n_samples;          /* from Hello */
    uint32_t codecs_mask;        /* bit (1 << codec); 0 = not said */
    uint64_t last_seen_ns;
    uint64_t model_version;      /* version it holds, 0 = none */

    /* fate of its last update (enum pb_update_status values) */
    uint32_t last_status;
    uint64_t last_round;

    /* the highest round it sent an update for (accepted, refused or
     * late): a later update for it or an earlier round is a replay */
    uint64_t answered_round;

    /* the open attempt */
    enum coord_round_state rstate;
    uint64_t task_sent_ns;
    uint64_t update_ns;          /* when the update arrived */
    uint64_t up_bytes;           /* update frames of this attempt */
    uint64_t down_bytes;         /* frames sent in this attempt */
    uint64_t u_samples;
    uint64_t u_k;
    uint32_t u_values;           /* enum cmp_value_coding */
    uint32_t u_codec;            /* enum cmp_codec */
    uint32_t u_train_ms;
    uint32_t u_encode_ms;
    uint32_t u_load_ms;
    uint64_t u_peak_rss_kb;
    float u_loss;
    bool u_has_stats;

    /* totals over the run */
    uint64_t total_up_bytes;
    uint64_t total_down_bytes;
    uint32_t n_used;
    uint32_t n_rejected;
    uint32_t n_late;
};

struct coord_devtab;

/* Caller owns *out (coord_devtab_destroy()). max_devices 0 means
 * COORD_DEVICES_MAX. FL_ERR_NOMEM. */
enum fl_err coord_devtab_new(size_t max_devices, struct coord_devtab **out);
void coord_devtab_destroy(struct coord_devtab **tp);

/* 1 when id is 1..COORD_ID_MAX characters of [A-Za-z0-9._:-]. */
bool coord_device_id_valid(const char *id);

/* Lookups; NULL when unknown. */
struct coord_device *coord_devtab_by_rid(const struct coord_devtab *t,
                                         const uint8_t *rid, size_t rid_len);
struct coord_device *coord_devtab_by_id(const struct coord_devtab *t,
                                        const char *id);

/* Find or create the device `id` and bind it to routing id rid (1 ..
 * COORD_RID_MAX bytes). A device previously bound to rid (another id) is
 * unbound; the device's own previous routing id is forgotten.
 * *created tells whether the record is new. FL_ERR_INVALID_ARG (bad id or
 * rid), FL_ERR_FULL (table full), FL_ERR_NOMEM. */
enum fl_err coord_devtab_bind(struct coord_devtab *t, const char *id,
                              const uint8_t *rid, size_t rid_len,
                              struct coord_device **out, bool *created);

/* Forget the device's routing id (it left or cannot be reached). */
void coord_devtab_unbind(struct coord_devtab *t, struct coord_device *d);

/* Devices ever seen, and the i-th (0 <= i < count) in order of arrival. */
size_t coord_devtab_count(const struct coord_devtab *t);
struct coord_device *coord_devtab_at(const struct coord_devtab *t, size_t i);

/* Devices currently bound to a routing id. */
size_t coord_devtab_connected(const struct coord_devtab *t);

#endif /* COORD_DEVTAB_H */
