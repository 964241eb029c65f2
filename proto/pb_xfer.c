/*
 * pb_xfer.c - chunked transfer arithmetic and reassembly (pb_xfer.h).
 */
#include "proto/pb_xfer.h"

#include <string.h>

#include "common/fl_alloc.h"

uint32_t pb_xfer_chunks(uint64_t bytes, uint32_t chunk_bytes)
{
    if (bytes == 0 || chunk_bytes == 0)
        return 0;
    const uint64_t n = bytes / chunk_bytes + (bytes % chunk_bytes != 0);
    return n > UINT32_MAX ? 0 : (uint32_t)n;
}

size_t pb_xfer_chunk_len(uint64_t bytes, uint32_t chunk_bytes, uint32_t seq)
{
    const uint32_t total = pb_xfer_chunks(bytes, chunk_bytes);
    if (seq >= total)
        return 0;
    if (seq + 1 < total)
        return chunk_bytes;
    return (size_t)(bytes - (uint64_t)seq * chunk_bytes);
}

bool pb_xfer_geometry_ok(uint32_t chunk_bytes, uint32_t window)
{
    return chunk_bytes >= PB_XFER_MIN_CHUNK &&
           chunk_bytes <= PB_XFER_MAX_CHUNK && window >= 1 &&
           window <= PB_XFER_MAX_WINDOW;
}

void pb_xfer_rx_reset(struct pb_xfer_rx *rx)
{
    fl_free(rx->buf);
    memset(rx, 0, sizeof(*rx));
}

enum fl_err pb_xfer_rx_begin(struct pb_xfer_rx *rx, uint64_t transfer,
                             uint64_t bytes, uint32_t chunk_bytes,
                             uint64_t max_bytes)
{
    pb_xfer_rx_reset(rx);
    if (transfer == 0 || bytes == 0 || chunk_bytes < PB_XFER_MIN_CHUNK ||
        chunk_bytes > PB_XFER_MAX_CHUNK)
        return FL_ERR_FORMAT;
    const uint32_t total = pb_xfer_chunks(bytes, chunk_bytes);
    if (total == 0)
        return FL_ERR_FORMAT;
    if (bytes > max_bytes || bytes > SIZE_MAX)
        return FL_ERR_TOO_LARGE;
    rx->buf = fl_malloc((size_t)bytes);
    if (rx->buf == NULL)
        return FL_ERR_NOMEM;
    rx->transfer = transfer;
    rx->bytes = bytes;
    rx->chunk_bytes = chunk_bytes;
    rx->total = total;
    rx->received = 0;
    return FL_OK;
}

enum fl_err pb_xfer_rx_add(struct pb_xfer_rx *rx, const struct pb_chunk *c,
                           bool *complete)
{
    *complete = false;
    if (rx->transfer == 0 || rx->received == rx->total)
        return FL_ERR_BAD_STATE;
    if (c->transfer != rx->transfer || c->seq != rx->received ||
        c->total != rx->total ||
        c->len != pb_xfer_chunk_len(rx->bytes, rx->chunk_bytes, c->seq))
        return FL_ERR_TRANSFER;
    memcpy(rx->buf + (size_t)c->seq * rx->chunk_bytes, c->data, c->len);
    rx->received++;
    *complete = rx->received == rx->total;
    return FL_OK;
}

enum fl_err pb_xfer_rx_take(struct pb_xfer_rx *rx, uint8_t **buf,
                            size_t *len)
{
    if (!pb_xfer_rx_done(rx))
        return FL_ERR_BAD_STATE;
    *buf = rx->buf;
    *len = (size_t)rx->bytes;
    rx->buf = NULL;
    pb_xfer_rx_reset(rx);
    return FL_OK;
}

enum fl_err pb_xfer_pack_chunk(uint64_t transfer, uint32_t seq,
                               uint32_t total, const uint8_t *data,
                               size_t len, uint8_t **buf, size_t *buflen)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_CHUNK;
    env.chunk.transfer = transfer;
    env.chunk.seq = seq;
    env.chunk.total = total;
    env.chunk.data = data;
    env.chunk.len = len;
    return pb_pack_alloc(&env, buf, buflen);
}

enum fl_err pb_xfer_pack_credit(uint64_t transfer, uint32_t received,
                                bool cancel, uint8_t **buf, size_t *buflen)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_CREDIT;
    env.credit.transfer = transfer;
    env.credit.received = received;
    env.credit.cancel = cancel;
    return pb_pack_alloc(&env, buf, buflen);
}
