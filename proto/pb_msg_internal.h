/*
 * pb_msg_internal.h - helpers of the proto/ module for its tests and fuzz
 * targets; not part of the API the other layers use.
 */
#ifndef PB_MSG_INTERNAL_H
#define PB_MSG_INTERNAL_H

#include "proto/pb_msg.h"

/* Compare two envelopes as the wire carries them: every field that
 * travels, floats by bit pattern, strings by content (NULL only equals
 * NULL), payloads by bytes. Fields the wire does not carry are ignored:
 * a value behind a false has_* flag, k and index_coding of a dense tensor,
 * base_version of a sparse one. Returns NULL when equal, else the name of
 * the first field that differs ("task.model.payload"); a static string. */
const char *pb_envelope_diff(const struct pb_envelope *a,
                             const struct pb_envelope *b);

#endif /* PB_MSG_INTERNAL_H */
