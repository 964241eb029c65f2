/*
 * pb_msg.c - plain C envelopes <-> protobuf-c (see pb_msg.h).
 *
 * Packing builds the generated structs on the stack around the caller's
 * data: strings, shapes and payload bytes are pointed to, never copied, and
 * protobuf_c_message_pack() writes the only copy. That needs const to be
 * dropped (protobuf-c's structs are not const-correct); pack only reads.
 *
 * Unpacking gives protobuf-c an allocator with a byte budget. Each block
 * carries a header with its size so that frees are subtracted exactly, and
 * the allocator remembers whether it refused (budget) or failed (memory),
 * because protobuf-c reports both as a bare NULL, the same as bad bytes.
 *
 * protobuf-c 1.4.1 facts this file relies on (tested in test_pb_msg.c):
 *   - a missing required field, at any depth, fails the unpack;
 *   - enum fields take any int32 from the wire, known to the .proto or not;
 *     we pass the numbers through and receivers validate them;
 *   - unknown fields are kept (and freed) by protobuf-c; they cost budget;
 *   - strings are NUL-terminated copies; a NUL inside a string cuts it.
 */
#include "proto/pb_msg.h"
#include "proto/pb_msg_internal.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/fl_alloc.h"
#include "proto/fedcomp.pb-c.h"

#define PB_CODEC_BITS 32

/* ------------------------------------------------------------- helpers */

/* protobuf-c wants char * and uint8_t * even for data it only reads. */
static void *pb_unconst(const void *p)
{
    union {
        const void *c;
        void *m;
    } u;
    u.c = p;
    return u.m;
}

static void pb_set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void pb_set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errbuf == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

const char *pb_body_name(enum pb_body body)
{
    switch (body) {
    case PB_BODY_NONE:
        return "none";
    case PB_BODY_HELLO:
        return "hello";
    case PB_BODY_WELCOME:
        return "welcome";
    case PB_BODY_TASK:
        return "task";
    case PB_BODY_UPDATE:
        return "update";
    case PB_BODY_REJECT:
        return "reject";
    case PB_BODY_BYE:
        return "bye";
    case PB_BODY_CHUNK:
        return "chunk";
    case PB_BODY_CREDIT:
        return "credit";
    default:
        return "unknown";
    }
}

/* ------------------------------------------------------------ packing */

/* Every generated struct one envelope can need; lives on the stack. */
struct pb_wire {
    Fedcomp__Envelope env;
    union {
        Fedcomp__Hello hello;
        Fedcomp__Welcome welcome;
        Fedcomp__Task task;
        Fedcomp__Update update;
        Fedcomp__Reject reject;
        Fedcomp__Bye bye;
        Fedcomp__Chunk chunk;
        Fedcomp__Credit credit;
    } body;
    Fedcomp__DenseTensor dense;
    Fedcomp__SparseTensor sparse;
    Fedcomp__TrainConfig train;
    Fedcomp__CompressConfig compress;
    Fedcomp__TrainStats stats;
    Fedcomp__Codec codecs[PB_CODEC_BITS];
    Fedcomp__TensorLayout layout[PB_MAX_LAYOUT];
    Fedcomp__TensorLayout *layout_ptrs[PB_MAX_LAYOUT];
};

/* A string for the wire: NULL only where optional, at most PB_MAX_STRING. */
static enum fl_err wire_string(const char *s, bool required, char **out)
{
    *out = NULL;
    if (s == NULL)
        return required ? FL_ERR_INVALID_ARG : FL_OK;
    if (strnlen(s, PB_MAX_STRING + 1) > PB_MAX_STRING)
        return FL_ERR_TOO_LARGE;
    *out = pb_unconst(s);
    return FL_OK;
}

static enum fl_err wire_bytes(const uint8_t *p, size_t len,
                              ProtobufCBinaryData *out)
{
    if (p == NULL && len > 0)
        return FL_ERR_INVALID_ARG;
    out->data = pb_unconst(p);
    out->len = len;
    return FL_OK;
}

static enum fl_err hello_to_wire(struct pb_wire *w, const struct pb_hello *h)
{
    Fedcomp__Hello *o = &w->body.hello;
    enum fl_err rc;

    fedcomp__hello__init(o);
    rc = wire_string(h->device_id, true, &o->device_id);
    if (rc)
        return rc;
    rc = wire_string(h->software, false, &o->software);
    if (rc)
        return rc;
    o->n_samples = h->n_samples;
    for (unsigned c = 0; c < PB_CODEC_BITS; c++) {
        if (h->codecs_mask & (1u << c))
            w->codecs[o->n_codecs++] = (Fedcomp__Codec)c;
    }
    o->codecs = o->n_codecs > 0 ? w->codecs : NULL;
    o->has_model_version = h->has_model_version;
    o->model_version = h->model_version;
    o->has_epoch = h->has_epoch;
    o->epoch = h->epoch;
    w->env.hello = o;
    return FL_OK;
}

static enum fl_err layout_to_wire(Fedcomp__TensorLayout *o,
                                  const struct pb_layout_entry *e)
{
    enum fl_err rc;

    fedcomp__tensor_layout__init(o);
    rc = wire_string(e->name, true, &o->name);
    if (rc)
        return rc;
    if (e->nshape > PB_MAX_SHAPE)
        return FL_ERR_TOO_LARGE;
    o->offset = e->offset;
    o->n_shape = e->nshape;
    o->shape = e->nshape > 0 ? pb_unconst(e->shape) : NULL;
    return FL_OK;
}

static enum fl_err welcome_to_wire(struct pb_wire *w,
                                   const struct pb_welcome *h)
{
    Fedcomp__Welcome *o = &w->body.welcome;
    enum fl_err rc;

    fedcomp__welcome__init(o);
    rc = wire_string(h->device_id, true, &o->device_id);
    if (rc)
        return rc;
    if (h->nlayout > PB_MAX_LAYOUT)
        return FL_ERR_TOO_LARGE;
    if (h->nlayout > 0 && h->layout == NULL)
        return FL_ERR_INVALID_ARG;
    for (size_t i = 0; i < h->nlayout; i++) {
        rc = layout_to_wire(&w->layout[i], &h->layout[i]);
        if (rc)
            return rc;
        w->layout_ptrs[i] = &w->layout[i];
    }
    o->epoch = h->epoch;
    o->dimension = h->dimension;
    o->n_layout = h->nlayout;
    o->layout = h->nlayout > 0 ? w->layout_ptrs : NULL;
    o->has_heartbeat_ms = h->heartbeat_ms != 0;
    o->heartbeat_ms = h->heartbeat_ms;
    o->has_current_round = h->current_round != 0;
    o->current_round = h->current_round;
    o->has_chunk_bytes = h->chunk_bytes != 0;
    o->chunk_bytes = h->chunk_bytes;
    o->has_chunk_window = h->chunk_window != 0;
    o->chunk_window = h->chunk_window;
    w->env.welcome = o;
    return FL_OK;
}

static enum fl_err dense_to_wire(Fedcomp__DenseTensor *o,
                                 const struct pb_tensor *t)
{
    fedcomp__dense_tensor__init(o);
    o->dimension = t->dimension;
    o->value_coding = (Fedcomp__ValueCoding)t->value_coding;
    o->codec = (Fedcomp__Codec)t->codec;
    o->raw_size = t->raw_size;
    o->checksum = t->checksum;
    o->has_base_version = t->has_base_version;
    o->base_version = t->base_version;
    o->has_payload_transfer = t->payload_transfer != 0;
    o->payload_transfer = t->payload_transfer;
    o->has_payload_bytes = t->payload_transfer != 0;
    o->payload_bytes = t->payload_bytes;
    return wire_bytes(t->payload, t->payload_len, &o->payload);
}

static enum fl_err sparse_to_wire(Fedcomp__SparseTensor *o,
                                  const struct pb_tensor *t)
{
    fedcomp__sparse_tensor__init(o);
    o->dimension = t->dimension;
    o->k = t->k;
    o->index_coding = (Fedcomp__IndexCoding)t->index_coding;
    o->value_coding = (Fedcomp__ValueCoding)t->value_coding;
    o->codec = (Fedcomp__Codec)t->codec;
    o->raw_size = t->raw_size;
    o->checksum = t->checksum;
    o->has_payload_transfer = t->payload_transfer != 0;
    o->payload_transfer = t->payload_transfer;
    o->has_payload_bytes = t->payload_transfer != 0;
    o->payload_bytes = t->payload_bytes;
    return wire_bytes(t->payload, t->payload_len, &o->payload);
}

/* Settings are always sent in full: the receiver then never guesses. */
static void train_to_wire(Fedcomp__TrainConfig *o, const struct pb_train_cfg *c)
{
    fedcomp__train_config__init(o);
    o->has_local_epochs = o->has_local_steps = o->has_batch_size = 1;
    o->has_lr = o->has_momentum = o->has_seed = 1;
    o->local_epochs = c->local_epochs;
    o->local_steps = c->local_steps;
    o->batch_size = c->batch_size;
    o->lr = c->lr;
    o->momentum = c->momentum;
    o->seed = c->seed;
}

static void compress_to_wire(Fedcomp__CompressConfig *o,
                             const struct pb_compress_cfg *c)
{
    fedcomp__compress_config__init(o);
    o->has_density = o->has_topk = o->has_values = o->has_codec = 1;
    o->has_level = o->has_error_feedback = o->has_momentum_correction = 1;
    o->has_clip_norm = o->has_per_tensor = o->has_max_update_bytes = 1;
    o->has_momentum_factor = 1;
    o->density = c->density;
    o->topk = (Fedcomp__TopkMethod)c->topk;
    o->values = (Fedcomp__ValueCoding)c->values;
    o->codec = (Fedcomp__Codec)c->codec;
    o->level = c->level;
    o->error_feedback = c->error_feedback;
    o->momentum_correction = c->momentum_correction;
    o->clip_norm = c->clip_norm;
    o->per_tensor = c->per_tensor;
    o->max_update_bytes = c->max_update_bytes;
    o->momentum_factor = c->momentum_factor;
}

static enum fl_err task_to_wire(struct pb_wire *w, const struct pb_task *t)
{
    Fedcomp__Task *o = &w->body.task;

    fedcomp__task__init(o);
    o->round = t->round;
    o->epoch = t->epoch;
    o->model_version = t->model_version;
    o->timeout_ms = t->timeout_ms;
    o->has_last_update = t->last_update != 0;
    o->last_update = (Fedcomp__UpdateStatus)t->last_update;
    o->has_last_update_round = t->last_update_round != 0;
    o->last_update_round = t->last_update_round;
    o->has_allow_overrides = t->allow_overrides;
    o->allow_overrides = t->allow_overrides;
    train_to_wire(&w->train, &t->train);
    compress_to_wire(&w->compress, &t->compress);
    o->model = &w->dense;
    o->train = &w->train;
    o->compress = &w->compress;
    w->env.task = o;
    if (t->has_model_delta) {
        /* Task and Update never share an envelope: w->sparse is free */
        const enum fl_err rc = sparse_to_wire(&w->sparse, &t->model_delta);
        if (rc != FL_OK)
            return rc;
        o->model_delta = &w->sparse;
        o->has_model_delta_base = 1;
        o->model_delta_base = t->model_delta_base;
    }
    return dense_to_wire(&w->dense, &t->model);
}

static void stats_to_wire(Fedcomp__TrainStats *o, const struct pb_train_stats *s)
{
    fedcomp__train_stats__init(o);
    o->has_loss = o->has_train_ms = o->has_encode_ms = 1;
    o->has_load_ms = o->has_peak_rss_kb = o->has_steps = 1;
    o->loss = s->loss;
    o->train_ms = s->train_ms;
    o->encode_ms = s->encode_ms;
    o->load_ms = s->load_ms;
    o->peak_rss_kb = s->peak_rss_kb;
    o->steps = s->steps;
}

static enum fl_err update_to_wire(struct pb_wire *w, const struct pb_update *u)
{
    Fedcomp__Update *o = &w->body.update;

    fedcomp__update__init(o);
    o->round = u->round;
    o->n_samples = u->n_samples;
    stats_to_wire(&w->stats, &u->stats);
    o->stats = &w->stats;
    if (u->has_used) {
        compress_to_wire(&w->compress, &u->used);
        o->used = &w->compress;
    }
    o->delta = &w->sparse;
    w->env.update = o;
    return sparse_to_wire(&w->sparse, &u->delta);
}

static enum fl_err reject_to_wire(struct pb_wire *w, const struct pb_reject *r)
{
    Fedcomp__Reject *o = &w->body.reject;

    fedcomp__reject__init(o);
    o->code = r->code;
    o->has_round = r->has_round;
    o->round = r->round;
    w->env.reject = o;
    return wire_string(r->reason, true, &o->reason);
}

static enum fl_err bye_to_wire(struct pb_wire *w, const struct pb_bye *b)
{
    Fedcomp__Bye *o = &w->body.bye;

    fedcomp__bye__init(o);
    o->has_last_update = b->last_update != 0;
    o->last_update = (Fedcomp__UpdateStatus)b->last_update;
    o->has_last_update_round = b->last_update_round != 0;
    o->last_update_round = b->last_update_round;
    w->env.bye = o;
    return wire_string(b->reason, false, &o->reason);
}

static enum fl_err chunk_to_wire(struct pb_wire *w, const struct pb_chunk *c)
{
    Fedcomp__Chunk *o = &w->body.chunk;

    fedcomp__chunk__init(o);
    o->transfer = c->transfer;
    o->seq = c->seq;
    o->total = c->total;
    w->env.chunk = o;
    return wire_bytes(c->data, c->len, &o->data);
}

static enum fl_err credit_to_wire(struct pb_wire *w,
                                  const struct pb_credit *c)
{
    Fedcomp__Credit *o = &w->body.credit;

    fedcomp__credit__init(o);
    o->transfer = c->transfer;
    o->received = c->received;
    o->has_cancel = c->cancel;
    o->cancel = c->cancel;
    w->env.credit = o;
    return FL_OK;
}

static enum fl_err envelope_to_wire(struct pb_wire *w,
                                    const struct pb_envelope *env)
{
    if (env == NULL)
        return FL_ERR_INVALID_ARG;
    fedcomp__envelope__init(&w->env);
    w->env.version = env->version;
    w->env.body_case = (Fedcomp__Envelope__BodyCase)env->body;
    switch (env->body) {
    case PB_BODY_HELLO:
        return hello_to_wire(w, &env->hello);
    case PB_BODY_WELCOME:
        return welcome_to_wire(w, &env->welcome);
    case PB_BODY_TASK:
        return task_to_wire(w, &env->task);
    case PB_BODY_UPDATE:
        return update_to_wire(w, &env->update);
    case PB_BODY_REJECT:
        return reject_to_wire(w, &env->reject);
    case PB_BODY_BYE:
        return bye_to_wire(w, &env->bye);
    case PB_BODY_CHUNK:
        return chunk_to_wire(w, &env->chunk);
    case PB_BODY_CREDIT:
        return credit_to_wire(w, &env->credit);
    case PB_BODY_NONE:
    default:
        return FL_ERR_INVALID_ARG;
    }
}

size_t pb_packed_size(const struct pb_envelope *env)
{
    struct pb_wire w;

    if (envelope_to_wire(&w, env) != FL_OK)
        return 0;
    return fedcomp__envelope__get_packed_size(&w.env);
}

enum fl_err pb_pack(const struct pb_envelope *env, uint8_t *buf, size_t cap,
                    size_t *len)
{
    struct pb_wire w;
    enum fl_err rc;
    size_t need;

    if (len == NULL)
        return FL_ERR_INVALID_ARG;
    *len = 0;
    rc = envelope_to_wire(&w, env);
    if (rc)
        return rc;
    need = fedcomp__envelope__get_packed_size(&w.env);
    if (need > cap || buf == NULL)
        return FL_ERR_TOO_LARGE;
    *len = fedcomp__envelope__pack(&w.env, buf);
    return FL_OK;
}

enum fl_err pb_pack_alloc(const struct pb_envelope *env, uint8_t **buf,
                          size_t *len)
{
    struct pb_wire w;
    enum fl_err rc;
    size_t need;
    uint8_t *out;

    if (buf == NULL || len == NULL)
        return FL_ERR_INVALID_ARG;
    *buf = NULL;
    *len = 0;
    rc = envelope_to_wire(&w, env);
    if (rc)
        return rc;
    need = fedcomp__envelope__get_packed_size(&w.env);
    out = fl_malloc(need);
    if (out == NULL)
        return FL_ERR_NOMEM;
    *len = fedcomp__envelope__pack(&w.env, out);
    *buf = out;
    return FL_OK;
}

/* ---------------------------------------------------------- unpacking */

/* Size header in front of every block the parser gets; keeps the block
 * aligned for anything. */
union pb_block_hdr {
    max_align_t align;
    size_t size;
};

struct pb_budget {
    size_t limit;
    size_t used;
    bool refused;          /* a request would have passed the limit */
    bool out_of_memory;    /* fl_malloc returned NULL */
};

struct pb_msg {
    ProtobufCAllocator allocator;
    struct pb_budget budget;
    Fedcomp__Envelope *wire;
    struct pb_envelope env;
    struct pb_layout_entry layout[PB_MAX_LAYOUT];
};

static void *budget_alloc(void *data, size_t size)
{
    struct pb_budget *b = data;
    const size_t hdr = sizeof(union pb_block_hdr);
    union pb_block_hdr *h;

    if (size > SIZE_MAX - hdr || size + hdr > b->limit - b->used) {
        b->refused = true;
        return NULL;
    }
    h = fl_malloc(size + hdr);
    if (h == NULL) {
        b->out_of_memory = true;
        return NULL;
    }
    h->size = size + hdr;
    b->used += h->size;
    return h + 1;
}

static void budget_free(void *data, void *ptr)
{
    struct pb_budget *b = data;
    union pb_block_hdr *h;

    if (ptr == NULL)
        return;
    h = (union pb_block_hdr *)ptr - 1;
    b->used -= h->size;
    fl_free(h);
}

static enum fl_err check_string(const char *s, const char *what,
                                char *errbuf, size_t errlen)
{
    if (s != NULL && strnlen(s, PB_MAX_STRING + 1) > PB_MAX_STRING) {
        pb_set_err(errbuf, errlen, "%s is longer than %d bytes", what,
                   PB_MAX_STRING);
        return FL_ERR_TOO_LARGE;
    }
    return FL_OK;
}

static enum fl_err missing(const char *what, char *errbuf, size_t errlen)
{
    pb_set_err(errbuf, errlen, "%s is missing", what);
    return FL_ERR_MISSING_FIELD;
}

static enum fl_err hello_from_wire(struct pb_hello *h, const Fedcomp__Hello *o,
                                   char *errbuf, size_t errlen)
{
    enum fl_err rc;

    rc = check_string(o->device_id, "hello device id", errbuf, errlen);
    if (rc)
        return rc;
    rc = check_string(o->software, "hello software", errbuf, errlen);
    if (rc)
        return rc;
    h->device_id = o->device_id;
    h->software = o->software;
    h->n_samples = o->n_samples;
    h->codecs_mask = 0;
    for (size_t i = 0; i < o->n_codecs; i++) {
        const int32_t c = (int32_t)o->codecs[i];
        if (c >= 0 && c < PB_CODEC_BITS)
            h->codecs_mask |= 1u << c;
    }
    h->has_model_version = o->has_model_version;
    h->model_version = o->model_version;
    h->has_epoch = o->has_epoch;
    h->epoch = o->epoch;
    return FL_OK;
}

/* Error texts never quote strings from the wire (they may hold newlines
 * or escapes meant for a log); they name the field and its position. */
static enum fl_err layout_from_wire(struct pb_layout_entry *e,
                                    const Fedcomp__TensorLayout *o,
                                    size_t idx, char *errbuf, size_t errlen)
{
    enum fl_err rc;

    if (o == NULL)
        return missing("welcome layout entry", errbuf, errlen);
    rc = check_string(o->name, "welcome layout name", errbuf, errlen);
    if (rc)
        return rc;
    if (o->n_shape > PB_MAX_SHAPE) {
        pb_set_err(errbuf, errlen,
                   "welcome layout entry %zu has %zu dimensions, over %d",
                   idx, o->n_shape, PB_MAX_SHAPE);
        return FL_ERR_TOO_LARGE;
    }
    e->name = o->name;
    e->offset = o->offset;
    e->nshape = o->n_shape;
    for (size_t i = 0; i < o->n_shape; i++)
        e->shape[i] = o->shape[i];
    return FL_OK;
}

static enum fl_err welcome_from_wire(struct pb_msg *m,
                                     const Fedcomp__Welcome *o,
                                     char *errbuf, size_t errlen)
{
    struct pb_welcome *h = &m->env.welcome;
    enum fl_err rc;

    rc = check_string(o->device_id, "welcome device id", errbuf, errlen);
    if (rc)
        return rc;
    if (o->n_layout > PB_MAX_LAYOUT) {
        pb_set_err(errbuf, errlen, "welcome has %zu layout tensors, over %d",
                   o->n_layout, PB_MAX_LAYOUT);
        return FL_ERR_TOO_LARGE;
    }
    for (size_t i = 0; i < o->n_layout; i++) {
        rc = layout_from_wire(&m->layout[i], o->layout[i], i, errbuf,
                              errlen);
        if (rc)
            return rc;
    }
    h->epoch = o->epoch;
    h->device_id = o->device_id;
    h->dimension = o->dimension;
    h->layout = o->n_layout > 0 ? m->layout : NULL;
    h->nlayout = o->n_layout;
    h->heartbeat_ms = o->heartbeat_ms;
    h->current_round = o->current_round;
    h->chunk_bytes = o->chunk_bytes;
    h->chunk_window = o->chunk_window;
    return FL_OK;
}

/* A payload is inline or chunked, never both (docs/protocol.md). */
static enum fl_err transfer_from_wire(struct pb_tensor *t, bool has_transfer,
                                      uint64_t transfer, bool has_bytes,
                                      uint64_t bytes, char *errbuf,
                                      size_t errlen)
{
    t->payload_transfer = has_transfer ? transfer : 0;
    t->payload_bytes = has_bytes ? bytes : 0;
    if (!has_transfer && !has_bytes)
        return FL_OK;
    if (!has_transfer || transfer == 0 || !has_bytes || bytes == 0 ||
        t->payload_len != 0) {
        pb_set_err(errbuf, errlen, "tensor payload_transfer/payload_bytes "
                   "inconsistent (transfer %llu, %llu bytes, %zu inline)",
                   (unsigned long long)transfer, (unsigned long long)bytes,
                   t->payload_len);
        return FL_ERR_FORMAT;
    }
    return FL_OK;
}

static enum fl_err dense_from_wire(struct pb_tensor *t,
                                   const Fedcomp__DenseTensor *o,
                                   char *errbuf, size_t errlen)
{
    t->dimension = o->dimension;
    t->k = o->dimension;
    t->index_coding = FEDCOMP__INDEX_CODING__INDEX_ALL;
    t->value_coding = (uint32_t)o->value_coding;
    t->codec = (uint32_t)o->codec;
    t->raw_size = o->raw_size;
    t->checksum = o->checksum;
    t->payload = o->payload.data;
    t->payload_len = o->payload.len;
    t->has_base_version = o->has_base_version;
    t->base_version = o->base_version;
    return transfer_from_wire(t, o->has_payload_transfer, o->payload_transfer,
                              o->has_payload_bytes, o->payload_bytes, errbuf,
                              errlen);
}

static enum fl_err sparse_from_wire(struct pb_tensor *t,
                                    const Fedcomp__SparseTensor *o,
                                    char *errbuf, size_t errlen)
{
    t->dimension = o->dimension;
    t->k = o->k;
    t->index_coding = (uint32_t)o->index_coding;
    t->value_coding = (uint32_t)o->value_coding;
    t->codec = (uint32_t)o->codec;
    t->raw_size = o->raw_size;
    t->checksum = o->checksum;
    t->payload = o->payload.data;
    t->payload_len = o->payload.len;
    t->has_base_version = false;
    t->base_version = 0;
    return transfer_from_wire(t, o->has_payload_transfer, o->payload_transfer,
                              o->has_payload_bytes, o->payload_bytes, errbuf,
                              errlen);
}

static void train_from_wire(struct pb_train_cfg *c,
                            const Fedcomp__TrainConfig *o)
{
    c->local_epochs = o->local_epochs;
    c->local_steps = o->local_steps;
    c->batch_size = o->batch_size;
    c->lr = o->lr;
    c->momentum = o->momentum;
    c->seed = o->seed;
}

static void compress_from_wire(struct pb_compress_cfg *c,
                               const Fedcomp__CompressConfig *o)
{
    c->density = o->density;
    c->topk = (uint32_t)o->topk;
    c->values = (uint32_t)o->values;
    c->codec = (uint32_t)o->codec;
    c->level = o->level;
    c->error_feedback = o->error_feedback;
    c->momentum_correction = o->momentum_correction;
    c->clip_norm = o->clip_norm;
    c->per_tensor = o->per_tensor;
    c->max_update_bytes = o->max_update_bytes;
    c->momentum_factor = o->momentum_factor;
}

static enum fl_err task_from_wire(struct pb_task *t, const Fedcomp__Task *o,
                                  char *errbuf, size_t errlen)
{
    /* protobuf-c refuses a Task without them; belt and braces */
    if (o->model == NULL || o->train == NULL || o->compress == NULL)
        return missing("task model or settings", errbuf, errlen);
    t->round = o->round;
    t->epoch = o->epoch;
    t->model_version = o->model_version;
    enum fl_err rc = dense_from_wire(&t->model, o->model, errbuf, errlen);
    if (rc)
        return rc;
    train_from_wire(&t->train, o->train);
    compress_from_wire(&t->compress, o->compress);
    t->timeout_ms = o->timeout_ms;
    t->last_update = o->has_last_update ? (uint32_t)o->last_update : 0;
    t->last_update_round = o->last_update_round;
    t->allow_overrides = o->allow_overrides;
    t->has_model_delta = o->model_delta != NULL;
    if (o->model_delta != NULL) {
        if (!o->has_model_delta_base)
            return missing("task model_delta_base", errbuf, errlen);
        rc = sparse_from_wire(&t->model_delta, o->model_delta, errbuf,
                              errlen);
        if (rc)
            return rc;
        t->model_delta_base = o->model_delta_base;
    }
    return FL_OK;
}

static void stats_from_wire(struct pb_train_stats *s,
                            const Fedcomp__TrainStats *o)
{
    s->loss = o->loss;
    s->train_ms = o->train_ms;
    s->encode_ms = o->encode_ms;
    s->load_ms = o->load_ms;
    s->peak_rss_kb = o->peak_rss_kb;
    s->steps = o->steps;
}

static enum fl_err update_from_wire(struct pb_update *u,
                                    const Fedcomp__Update *o,
                                    char *errbuf, size_t errlen)
{
    if (o->delta == NULL)
        return missing("update delta", errbuf, errlen);
    u->round = o->round;
    u->n_samples = o->n_samples;
    const enum fl_err rc = sparse_from_wire(&u->delta, o->delta, errbuf,
                                            errlen);
    if (rc)
        return rc;
    if (o->stats != NULL)
        stats_from_wire(&u->stats, o->stats);
    u->has_used = o->used != NULL;
    if (o->used != NULL)
        compress_from_wire(&u->used, o->used);
    return FL_OK;
}

static enum fl_err reject_from_wire(struct pb_reject *r,
                                    const Fedcomp__Reject *o,
                                    char *errbuf, size_t errlen)
{
    const enum fl_err rc = check_string(o->reason, "reject reason", errbuf,
                                        errlen);
    if (rc)
        return rc;
    r->code = o->code;
    r->reason = o->reason;
    r->has_round = o->has_round;
    r->round = o->round;
    return FL_OK;
}

static enum fl_err bye_from_wire(struct pb_bye *b, const Fedcomp__Bye *o,
                                 char *errbuf, size_t errlen)
{
    const enum fl_err rc = check_string(o->reason, "bye reason", errbuf,
                                        errlen);
    if (rc)
        return rc;
    b->reason = o->reason;
    b->last_update = o->has_last_update ? (uint32_t)o->last_update : 0;
    b->last_update_round = o->last_update_round;
    return FL_OK;
}

static void chunk_from_wire(struct pb_chunk *c, const Fedcomp__Chunk *o)
{
    c->transfer = o->transfer;
    c->seq = o->seq;
    c->total = o->total;
    c->data = o->data.data;
    c->len = o->data.len;
}

static void credit_from_wire(struct pb_credit *c, const Fedcomp__Credit *o)
{
    c->transfer = o->transfer;
    c->received = o->received;
    c->cancel = o->has_cancel && o->cancel;
}

/* The envelope parsed and speaks our version: fill m->env from it. */
static enum fl_err envelope_from_wire(struct pb_msg *m, char *errbuf,
                                      size_t errlen)
{
    const Fedcomp__Envelope *o = m->wire;
    struct pb_envelope *env = &m->env;

    memset(env, 0, sizeof(*env));
    env->version = o->version;
    /* o->hello etc. share one pointer in a union: test it once */
    if (o->body_case == FEDCOMP__ENVELOPE__BODY__NOT_SET || o->hello == NULL)
        return missing("envelope body", errbuf, errlen);
    env->body = (enum pb_body)o->body_case;
    switch (o->body_case) {
    case FEDCOMP__ENVELOPE__BODY_HELLO:
        return hello_from_wire(&env->hello, o->hello, errbuf, errlen);
    case FEDCOMP__ENVELOPE__BODY_WELCOME:
        return welcome_from_wire(m, o->welcome, errbuf, errlen);
    case FEDCOMP__ENVELOPE__BODY_TASK:
        return task_from_wire(&env->task, o->task, errbuf, errlen);
    case FEDCOMP__ENVELOPE__BODY_UPDATE:
        return update_from_wire(&env->update, o->update, errbuf, errlen);
    case FEDCOMP__ENVELOPE__BODY_REJECT:
        return reject_from_wire(&env->reject, o->reject, errbuf, errlen);
    case FEDCOMP__ENVELOPE__BODY_BYE:
        return bye_from_wire(&env->bye, o->bye, errbuf, errlen);
    case FEDCOMP__ENVELOPE__BODY_CHUNK:
        chunk_from_wire(&env->chunk, o->chunk);
        return FL_OK;
    case FEDCOMP__ENVELOPE__BODY_CREDIT:
        credit_from_wire(&env->credit, o->credit);
        return FL_OK;
    case FEDCOMP__ENVELOPE__BODY__NOT_SET:
    case _FEDCOMP__ENVELOPE__BODY__CASE_IS_INT_SIZE:
    default:
        break;
    }
    env->body = PB_BODY_NONE;
    return missing("envelope body", errbuf, errlen);
}

/* Parse with the budget; tell bad bytes from exhausted memory. */
static enum fl_err parse_wire(struct pb_msg *m, const uint8_t *buf,
                              size_t len, char *errbuf, size_t errlen)
{
    static const uint8_t empty[1];

    m->wire = fedcomp__envelope__unpack(&m->allocator, len,
                                        buf != NULL ? buf : empty);
    if (m->wire != NULL)
        return FL_OK;
    if (m->budget.out_of_memory) {
        pb_set_err(errbuf, errlen, "out of memory parsing a %zu-byte message",
                   len);
        return FL_ERR_NOMEM;
    }
    if (m->budget.refused) {
        pb_set_err(errbuf, errlen,
                   "%zu-byte message needs more than the %zu-byte parse budget",
                   len, m->budget.limit);
        return FL_ERR_NOMEM;
    }
    pb_set_err(errbuf, errlen, "%zu-byte message does not parse as an envelope",
               len);
    return FL_ERR_PROTO;
}

enum fl_err pb_unpack(const uint8_t *buf, size_t len,
                      const struct pb_limits *lim, struct pb_msg **msg,
                      const struct pb_envelope **env, uint32_t *version_out,
                      char *errbuf, size_t errlen)
{
    enum fl_err rc = FL_OK;
    struct pb_msg *m = NULL;

    pb_set_err(errbuf, errlen, "%s", "");
    if (version_out != NULL)
        *version_out = 0;
    if (env != NULL)
        *env = NULL;
    if (msg == NULL || env == NULL || lim == NULL || (buf == NULL && len > 0)) {
        pb_set_err(errbuf, errlen, "invalid arguments to pb_unpack");
        rc = FL_ERR_INVALID_ARG;
        goto out;
    }
    *msg = NULL;
    if (len > lim->max_message) {
        pb_set_err(errbuf, errlen, "message of %zu bytes exceeds the "
                   "%zu-byte limit", len, lim->max_message);
        rc = FL_ERR_TOO_LARGE;
        goto out;
    }
    m = fl_calloc(1, sizeof(*m));
    if (m == NULL) {
        pb_set_err(errbuf, errlen, "out of memory for a message");
        rc = FL_ERR_NOMEM;
        goto out;
    }
    m->budget.limit = lim->max_alloc;
    m->allocator.alloc = budget_alloc;
    m->allocator.free = budget_free;
    m->allocator.allocator_data = &m->budget;
    rc = parse_wire(m, buf, len, errbuf, errlen);
    if (rc)
        goto out;
    if (version_out != NULL)
        *version_out = m->wire->version;
    if (m->wire->version != PB_PROTOCOL_VERSION) {
        pb_set_err(errbuf, errlen, "protocol version %u is not supported "
                   "(this side speaks %d)", m->wire->version,
                   PB_PROTOCOL_VERSION);
        rc = FL_ERR_VERSION;
        goto out;
    }
    rc = envelope_from_wire(m, errbuf, errlen);
    if (rc)
        goto out;
    *msg = m;
    *env = &m->env;
    m = NULL;
out:
    pb_msg_destroy(&m);
    return rc;
}

static bool peek_varint(const uint8_t *buf, size_t len, size_t *pos,
                        uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
        const uint8_t b = buf[(*pos)++];
        x |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = x;
            return true;
        }
    }
    return false;
}

enum pb_body pb_peek_body(const uint8_t *buf, size_t len)
{
    size_t pos = 0;
    uint64_t key = 0, v = 0;
    enum pb_body body = PB_BODY_NONE;
    if (buf == NULL)
        return PB_BODY_NONE;
    while (pos < len) {
        if (!peek_varint(buf, len, &pos, &key))
            return PB_BODY_NONE;
        const uint64_t field = key >> 3;
        switch (key & 7) {
        case 0:
            if (!peek_varint(buf, len, &pos, &v))
                return PB_BODY_NONE;
            break;
        case 1:
            if (len - pos < 8)
                return PB_BODY_NONE;
            pos += 8;
            break;
        case 5:
            if (len - pos < 4)
                return PB_BODY_NONE;
            pos += 4;
            break;
        case 2:
            if (!peek_varint(buf, len, &pos, &v) || v > len - pos)
                return PB_BODY_NONE;
            pos += (size_t)v;
            if (field >= PB_BODY_HELLO && field <= PB_BODY_CREDIT)
                body = (enum pb_body)field;
            break;
        default:
            return PB_BODY_NONE;
        }
    }
    return body;
}

const struct pb_envelope *pb_msg_envelope(const struct pb_msg *msg)
{
    return &msg->env;
}

void pb_msg_destroy(struct pb_msg **msgp)
{
    struct pb_msg *m;

    if (msgp == NULL || *msgp == NULL)
        return;
    m = *msgp;
    if (m->wire != NULL)
        fedcomp__envelope__free_unpacked(m->wire, &m->allocator);
    fl_free(m);
    *msgp = NULL;
}

/* ----------------------------------------------- comparison (tests) */

static bool str_differs(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a != b;
    return strcmp(a, b) != 0;
}

static bool f32_differs(float a, float b)
{
    return memcmp(&a, &b, sizeof(a)) != 0;
}

static bool payload_differs(const struct pb_tensor *a,
                            const struct pb_tensor *b)
{
    if (a->payload_len != b->payload_len)
        return true;
    return a->payload_len > 0 &&
           memcmp(a->payload, b->payload, a->payload_len) != 0;
}

#define PB_DIFF(cond, name)                                                    \
    do {                                                                       \
        if (cond)                                                              \
            return (name);                                                     \
    } while (0)

/* dense: Task.model (DenseTensor), else Update.delta (SparseTensor) */
#define PB_TNAME(f) (dense ? "task.model." f : "update.delta." f)

static const char *tensor_diff(const struct pb_tensor *a,
                               const struct pb_tensor *b, bool dense)
{
    PB_DIFF(a->dimension != b->dimension, PB_TNAME("dimension"));
    PB_DIFF(!dense && a->k != b->k, PB_TNAME("k"));
    PB_DIFF(!dense && a->index_coding != b->index_coding,
            PB_TNAME("index_coding"));
    PB_DIFF(a->value_coding != b->value_coding, PB_TNAME("value_coding"));
    PB_DIFF(a->codec != b->codec, PB_TNAME("codec"));
    PB_DIFF(a->raw_size != b->raw_size, PB_TNAME("raw_size"));
    PB_DIFF(a->checksum != b->checksum, PB_TNAME("checksum"));
    PB_DIFF(payload_differs(a, b), PB_TNAME("payload"));
    PB_DIFF(dense && a->has_base_version != b->has_base_version,
            PB_TNAME("has_base_version"));
    PB_DIFF(a->payload_transfer != b->payload_transfer,
            PB_TNAME("payload_transfer"));
    PB_DIFF(a->payload_bytes != b->payload_bytes, PB_TNAME("payload_bytes"));
    PB_DIFF(dense && a->has_base_version &&
            a->base_version != b->base_version, PB_TNAME("base_version"));
    return NULL;
}

static const char *hello_diff(const struct pb_hello *a,
                              const struct pb_hello *b)
{
    PB_DIFF(str_differs(a->device_id, b->device_id), "hello.device_id");
    PB_DIFF(a->n_samples != b->n_samples, "hello.n_samples");
    PB_DIFF(a->codecs_mask != b->codecs_mask, "hello.codecs_mask");
    PB_DIFF(a->has_model_version != b->has_model_version,
            "hello.has_model_version");
    PB_DIFF(a->has_model_version && a->model_version != b->model_version,
            "hello.model_version");
    PB_DIFF(a->has_epoch != b->has_epoch, "hello.has_epoch");
    PB_DIFF(a->has_epoch && a->epoch != b->epoch, "hello.epoch");
    PB_DIFF(str_differs(a->software, b->software), "hello.software");
    return NULL;
}

static const char *layout_diff(const struct pb_layout_entry *a,
                               const struct pb_layout_entry *b)
{
    PB_DIFF(str_differs(a->name, b->name), "welcome.layout.name");
    PB_DIFF(a->offset != b->offset, "welcome.layout.offset");
    PB_DIFF(a->nshape != b->nshape, "welcome.layout.nshape");
    for (size_t i = 0; i < a->nshape && i < PB_MAX_SHAPE; i++)
        PB_DIFF(a->shape[i] != b->shape[i], "welcome.layout.shape");
    return NULL;
}

static const char *welcome_diff(const struct pb_welcome *a,
                                const struct pb_welcome *b)
{
    PB_DIFF(a->epoch != b->epoch, "welcome.epoch");
    PB_DIFF(str_differs(a->device_id, b->device_id), "welcome.device_id");
    PB_DIFF(a->dimension != b->dimension, "welcome.dimension");
    PB_DIFF(a->nlayout != b->nlayout, "welcome.nlayout");
    for (size_t i = 0; i < a->nlayout; i++) {
        const char *d = layout_diff(&a->layout[i], &b->layout[i]);
        PB_DIFF(d != NULL, d);
    }
    PB_DIFF(a->heartbeat_ms != b->heartbeat_ms, "welcome.heartbeat_ms");
    PB_DIFF(a->current_round != b->current_round, "welcome.current_round");
    PB_DIFF(a->chunk_bytes != b->chunk_bytes, "welcome.chunk_bytes");
    PB_DIFF(a->chunk_window != b->chunk_window, "welcome.chunk_window");
    return NULL;
}

static const char *train_diff(const struct pb_train_cfg *a,
                              const struct pb_train_cfg *b)
{
    PB_DIFF(a->local_epochs != b->local_epochs, "train.local_epochs");
    PB_DIFF(a->local_steps != b->local_steps, "train.local_steps");
    PB_DIFF(a->batch_size != b->batch_size, "train.batch_size");
    PB_DIFF(f32_differs(a->lr, b->lr), "train.lr");
    PB_DIFF(f32_differs(a->momentum, b->momentum), "train.momentum");
    PB_DIFF(a->seed != b->seed, "train.seed");
    return NULL;
}

static const char *compress_diff(const struct pb_compress_cfg *a,
                                 const struct pb_compress_cfg *b)
{
    PB_DIFF(f32_differs(a->density, b->density), "compress.density");
    PB_DIFF(a->topk != b->topk, "compress.topk");
    PB_DIFF(a->values != b->values, "compress.values");
    PB_DIFF(a->codec != b->codec, "compress.codec");
    PB_DIFF(a->level != b->level, "compress.level");
    PB_DIFF(a->error_feedback != b->error_feedback,
            "compress.error_feedback");
    PB_DIFF(a->momentum_correction != b->momentum_correction,
            "compress.momentum_correction");
    PB_DIFF(f32_differs(a->clip_norm, b->clip_norm), "compress.clip_norm");
    PB_DIFF(a->per_tensor != b->per_tensor, "compress.per_tensor");
    PB_DIFF(a->max_update_bytes != b->max_update_bytes,
            "compress.max_update_bytes");
    PB_DIFF(f32_differs(a->momentum_factor, b->momentum_factor),
            "compress.momentum_factor");
    return NULL;
}

static const char *task_diff(const struct pb_task *a, const struct pb_task *b)
{
    const char *d;

    PB_DIFF(a->round != b->round, "task.round");
    PB_DIFF(a->epoch != b->epoch, "task.epoch");
    PB_DIFF(a->model_version != b->model_version, "task.model_version");
    d = tensor_diff(&a->model, &b->model, true);
    PB_DIFF(d != NULL, d);
    d = train_diff(&a->train, &b->train);
    PB_DIFF(d != NULL, d);
    d = compress_diff(&a->compress, &b->compress);
    PB_DIFF(d != NULL, d);
    PB_DIFF(a->timeout_ms != b->timeout_ms, "task.timeout_ms");
    PB_DIFF(a->last_update != b->last_update, "task.last_update");
    PB_DIFF(a->last_update_round != b->last_update_round,
            "task.last_update_round");
    PB_DIFF(a->allow_overrides != b->allow_overrides, "task.allow_overrides");
    PB_DIFF(a->has_model_delta != b->has_model_delta,
            "task.has_model_delta");
    if (a->has_model_delta) {
        PB_DIFF(tensor_diff(&a->model_delta, &b->model_delta, false) != NULL,
                "task.model_delta");
        PB_DIFF(a->model_delta_base != b->model_delta_base,
                "task.model_delta_base");
    }
    return NULL;
}

static const char *update_diff(const struct pb_update *a,
                               const struct pb_update *b)
{
    const struct pb_train_stats *s = &a->stats, *t = &b->stats;
    const char *d;

    PB_DIFF(a->round != b->round, "update.round");
    PB_DIFF(a->n_samples != b->n_samples, "update.n_samples");
    d = tensor_diff(&a->delta, &b->delta, false);
    PB_DIFF(d != NULL, d);
    PB_DIFF(f32_differs(s->loss, t->loss), "update.stats.loss");
    PB_DIFF(s->train_ms != t->train_ms, "update.stats.train_ms");
    PB_DIFF(s->encode_ms != t->encode_ms, "update.stats.encode_ms");
    PB_DIFF(s->load_ms != t->load_ms, "update.stats.load_ms");
    PB_DIFF(s->peak_rss_kb != t->peak_rss_kb, "update.stats.peak_rss_kb");
    PB_DIFF(s->steps != t->steps, "update.stats.steps");
    PB_DIFF(a->has_used != b->has_used, "update.has_used");
    if (a->has_used) {
        d = compress_diff(&a->used, &b->used);
        PB_DIFF(d != NULL, d);
    }
    return NULL;
}

const char *pb_envelope_diff(const struct pb_envelope *a,
                             const struct pb_envelope *b)
{
    PB_DIFF(a->version != b->version, "version");
    PB_DIFF(a->body != b->body, "body");
    switch (a->body) {
    case PB_BODY_HELLO:
        return hello_diff(&a->hello, &b->hello);
    case PB_BODY_WELCOME:
        return welcome_diff(&a->welcome, &b->welcome);
    case PB_BODY_TASK:
        return task_diff(&a->task, &b->task);
    case PB_BODY_UPDATE:
        return update_diff(&a->update, &b->update);
    case PB_BODY_REJECT:
        PB_DIFF(a->reject.code != b->reject.code, "reject.code");
        PB_DIFF(str_differs(a->reject.reason, b->reject.reason),
                "reject.reason");
        PB_DIFF(a->reject.has_round != b->reject.has_round,
                "reject.has_round");
        PB_DIFF(a->reject.has_round && a->reject.round != b->reject.round,
                "reject.round");
        return NULL;
    case PB_BODY_BYE:
        PB_DIFF(str_differs(a->bye.reason, b->bye.reason), "bye.reason");
        PB_DIFF(a->bye.last_update != b->bye.last_update, "bye.last_update");
        PB_DIFF(a->bye.last_update_round != b->bye.last_update_round,
                "bye.last_update_round");
        return NULL;
    case PB_BODY_CHUNK:
        PB_DIFF(a->chunk.transfer != b->chunk.transfer, "chunk.transfer");
        PB_DIFF(a->chunk.seq != b->chunk.seq, "chunk.seq");
        PB_DIFF(a->chunk.total != b->chunk.total, "chunk.total");
        PB_DIFF(a->chunk.len != b->chunk.len ||
                (a->chunk.len > 0 &&
                 memcmp(a->chunk.data, b->chunk.data, a->chunk.len) != 0),
                "chunk.data");
        return NULL;
    case PB_BODY_CREDIT:
        PB_DIFF(a->credit.transfer != b->credit.transfer, "credit.transfer");
        PB_DIFF(a->credit.received != b->credit.received, "credit.received");
        PB_DIFF(a->credit.cancel != b->credit.cancel, "credit.cancel");
        return NULL;
    case PB_BODY_NONE:
    default:
        return NULL;
    }
}
