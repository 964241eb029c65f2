#include "common/fl_err.h"

#include <stddef.h>

struct err_entry {
    const char *name;
    const char *text;
};

static const struct err_entry err_table[FL_ERR__MAX] = {
    [FL_OK] = {"ok", "success"},
    [FL_ERR_NOMEM] = {"nomem", "out of memory"},
    [FL_ERR_INVALID_ARG] = {"invalid_arg", "invalid argument"},
    [FL_ERR_TOO_LARGE] = {"too_large", "input too large"},
    [FL_ERR_IO] = {"io", "input/output error"},
    [FL_ERR_FORMAT] = {"format", "malformed input"},
    [FL_ERR_TRUNCATED] = {"truncated", "input truncated"},
    [FL_ERR_VERSION] = {"version", "unsupported version"},
    [FL_ERR_UNSUPPORTED] = {"unsupported", "unsupported coding or option"},
    [FL_ERR_NOT_FOUND] = {"not_found", "not found"},
    [FL_ERR_DIMENSION] = {"dimension", "dimension does not match the model"},
    [FL_ERR_K_RANGE] = {"k_range", "k out of range"},
    [FL_ERR_INDEX_ORDER] = {"index_order", "indices not strictly increasing"},
    [FL_ERR_INDEX_RANGE] = {"index_range", "index out of range"},
    [FL_ERR_RAW_SIZE] = {"raw_size", "declared raw size is inconsistent"},
    [FL_ERR_CHECKSUM] = {"checksum", "checksum mismatch"},
    [FL_ERR_NONFINITE] = {"nonfinite", "non-finite value"},
    [FL_ERR_CODEC] = {"codec", "decompression failed"},
    [FL_ERR_TRAILING] = {"trailing", "trailing bytes after the stream"},
    [FL_ERR_SIZE_MISMATCH] = {"size_mismatch", "decoded size differs from declared size"},
    [FL_ERR_PROTO] = {"proto", "message does not parse"},
    [FL_ERR_MISSING_FIELD] = {"missing_field", "required field missing"},
    [FL_ERR_BAD_STATE] = {"bad_state", "message not allowed in this state"},
    [FL_ERR_STALE_ROUND] = {"stale_round", "update for a round that is not open"},
    [FL_ERR_NOT_IN_COHORT] = {"not_in_cohort", "device not selected for this round"},
    [FL_ERR_DUPLICATE] = {"duplicate", "duplicate update"},
    [FL_ERR_SAMPLES] = {"samples", "sample count out of range"},
    [FL_ERR_NORM] = {"norm", "update norm over the bound"},
    [FL_ERR_UNKNOWN_DEVICE] = {"unknown_device", "unknown device"},
    [FL_ERR_LATE] = {"late", "update arrived after the round closed"},
    [FL_ERR_RATE] = {"rate", "message rate limit exceeded"},
    [FL_ERR_FULL] = {"full", "too many devices"},
    [FL_ERR_IGNORED] = {"ignored", "device is ignored for misbehaviour"},
    [FL_ERR_TRANSFER] = {"transfer", "chunked transfer out of order or "
                         "inconsistent"},
    [FL_ERR_ZMQ] = {"zmq", "zeromq error"},
    [FL_ERR_TIMEOUT] = {"timeout", "timed out"},
    [FL_ERR_INTERRUPTED] = {"interrupted", "interrupted"},
    [FL_ERR_DATA] = {"data", "training data missing or malformed"},
};

const char *fl_strerror(enum fl_err err)
{
    if ((unsigned)err >= FL_ERR__MAX || err_table[err].text == NULL)
        return "unknown error";
    return err_table[err].text;
}

const char *fl_err_name(enum fl_err err)
{
    if ((unsigned)err >= FL_ERR__MAX || err_table[err].name == NULL)
        return "unknown";
    return err_table[err].name;
}
