/*
 * wrk_xfer.c - the worker's side of chunked transfers (wrk_xfer.h).
 */
#include "worker/wrk_xfer.h"

#include <string.h>

#include "compress/cmp_tensor.h"
#include "compress/cmp_types.h"
#include "proto/pb_xfer.h"

bool wrk_xfer_chunked(size_t len, uint32_t chunk_bytes)
{
    return chunk_bytes != 0 && len > chunk_bytes;
}

uint64_t wrk_xfer_id_next(uint64_t *counter)
{
    (*counter)++;
    if (*counter == 0)
        (*counter)++;
    return *counter;
}

void wrk_xfer_tx_reset(struct wrk_xfer_tx *tx)
{
    memset(tx, 0, sizeof(*tx));
}

enum fl_err wrk_xfer_tx_begin(struct wrk_xfer_tx *tx, uint64_t transfer,
                              uint64_t round, const uint8_t *payload,
                              size_t len, uint32_t chunk_bytes,
                              uint32_t window, uint64_t deadline_ns)
{
    wrk_xfer_tx_reset(tx);
    const uint32_t total = pb_xfer_chunks(len, chunk_bytes);
    if (transfer == 0 || payload == NULL || len == 0 ||
        !pb_xfer_geometry_ok(chunk_bytes, window) || total == 0)
        return FL_ERR_INVALID_ARG;
    tx->transfer = transfer;
    tx->round = round;
    tx->payload = payload;
    tx->len = len;
    tx->chunk_bytes = chunk_bytes;
    tx->window = window;
    tx->total = total;
    tx->deadline_ns = deadline_ns;
    return FL_OK;
}

enum wrk_credit wrk_xfer_tx_credit(struct wrk_xfer_tx *tx,
                                   const struct pb_credit *cr)
{
    if (tx->transfer == 0 || cr->transfer != tx->transfer)
        return WRK_CREDIT_OTHER;
    if (cr->cancel) {
        wrk_xfer_tx_reset(tx);
        return WRK_CREDIT_CANCEL;
    }
    /* the receiver cannot have taken in a chunk that was not sent */
    if (cr->received > tx->next)
        return WRK_CREDIT_BAD;
    tx->granted = true;
    if (cr->received > tx->received)
        tx->received = cr->received;
    return WRK_CREDIT_OK;
}

bool wrk_xfer_tx_next(const struct wrk_xfer_tx *tx, uint32_t *seq,
                      const uint8_t **data, size_t *len)
{
    if (tx->transfer == 0 || !tx->granted || tx->next >= tx->total)
        return false;
    /* seq < received + window, without overflow */
    if (tx->next - tx->received >= tx->window)
        return false;
    *seq = tx->next;
    *data = tx->payload + (size_t)tx->next * tx->chunk_bytes;
    *len = pb_xfer_chunk_len(tx->len, tx->chunk_bytes, tx->next);
    return true;
}

void wrk_xfer_tx_sent(struct wrk_xfer_tx *tx)
{
    if (tx->transfer != 0 && tx->next < tx->total)
        tx->next++;
}

bool wrk_xfer_tx_complete(const struct wrk_xfer_tx *tx)
{
    return tx->transfer != 0 && tx->next == tx->total;
}

bool wrk_xfer_tx_expired(const struct wrk_xfer_tx *tx, uint64_t now_ns)
{
    return tx->transfer != 0 && tx->next < tx->total &&
           tx->deadline_ns != 0 && now_ns >= tx->deadline_ns;
}

enum fl_err wrk_xfer_max_payload(uint64_t dim, const struct pb_tensor *t,
                                 bool dense, uint64_t *max)
{
    struct cmp_params p;
    uint64_t k = dim;
    *max = 0;
    if (dim == 0 || t->dimension != dim)
        return FL_ERR_DIMENSION;
    memset(&p, 0, sizeof(p));
    p.codec = (enum cmp_codec)t->codec;
    if (dense) {
        /* a model is fp32 without an index stream; the decoder refuses
         * anything else, so nothing valid is larger than this */
        p.index_coding = CMP_INDEX_ALL;
        p.values = CMP_VALUE_FP32;
    } else {
        if (t->k == 0 || t->k > dim)
            return FL_ERR_K_RANGE;
        k = t->k;
        p.index_coding = (enum cmp_index_coding)t->index_coding;
        p.values = (enum cmp_value_coding)t->value_coding;
        /* AUTO is the encoder's choice, never a coding on the wire */
        if (t->index_coding == CMP_INDEX_AUTO)
            return FL_ERR_UNSUPPORTED;
    }
    const size_t b = cmp_sparse_bound(dim, (size_t)k, &p);
    if (b == 0)
        return FL_ERR_UNSUPPORTED;
    *max = b;
    return FL_OK;
}
