/*
 * bench_swarm.c - fedcomp-swarm (see bench_swarm.h for the contract).
 *
 * Layout of this file:
 *   1. configuration (defaults, flags, --help)
 *   2. statistics shared between the processes
 *   3. one swarm process: devices, timers, precomputed updates, the model
 *      check, chunked transfers, message handlers and the epoll loop
 *   4. the parent: fork, supervise, add up, verdict, JSON report
 *
 * Why ZMQ_FD + epoll and not zmq_poll: zmq_poll walks every item on each
 * call, O(devices) per wake-up; with thousands of sockets per process that
 * is the whole CPU budget. ZMQ_FD is a descriptor that becomes readable
 * when the socket *may* have changed state (edge-triggered semantics): the
 * loop then reads ZMQ_EVENTS, which processes the socket's pending
 * commands, and drains messages until POLLIN is gone. A send can consume
 * the descriptor's signal too, so a socket that was sent on outside the
 * drain loop is put on a "dirty" list and drained on the next pass.
 */
#include "bench/bench_swarm.h"

#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "common/fl_alloc.h"
#include "common/fl_flags.h"
#include "common/fl_util.h"
#include "compress/cmp_tensor.h"
#include "compress/cmp_topk.h"
#include "proto/pb_msg.h"
#include "proto/pb_xfer.h"

#define NS_PER_MS 1000000ULL
#define NS_PER_S 1000000000ULL
#define DEV_QUEUE 6            /* sends waiting for POLLOUT, per device */
#define DRAIN_BATCH 64         /* messages per socket per pass */
#define EPOLL_BATCH 512
#define SEEN_MAX 16            /* models already checked, per process */
#define HELLO_RETRY_GROWTH 8   /* Hello retries back off up to 8x */
#define CLOSE_LINGER_MS 5000   /* at exit: let queued Updates leave */
#define MAX_MESSAGE (64ULL << 20)
#define REJ_SLOTS (FL_ERR__MAX + 1) /* the last slot: unknown codes */
#define MMAP_THRESHOLD (256 << 10)
#define STRANDED_GRACE_NS (5 * NS_PER_S)
#define MON_FLAG 0x80000000u   /* epoll data: the device's monitor */
#define LOG_FIRST 5            /* details logged for the first few errors */
#define VSLOTS 4               /* chunked models reassembled at a time, per
                                * process, to check their content */

/* ====================================================================
 * 1. configuration
 * ==================================================================== */

enum opt_id {
    OPT_CONNECT = 256,
    OPT_DEVICES,
    OPT_PROCS,
    OPT_DIMENSION,
    OPT_DENSITY,
    OPT_VALUES,
    OPT_CODEC,
    OPT_SAMPLES,
    OPT_THINK_MS,
    OPT_JITTER_MS,
    OPT_VANISH,
    OPT_VANISH_MS,
    OPT_ID_PREFIX,
    OPT_ROUNDS_EXPECTED,
    OPT_MAX_SECONDS,
    OPT_CONNECT_BATCH,
    OPT_IO_THREADS,
    OPT_HELLO_RETRY_MS,
    OPT_DISTINCT,
    OPT_NO_MONITOR,
    OPT_SEED,
    OPT_REPORT,
    OPT_LOG_LEVEL
};

static const struct option long_options[] = {
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"connect", required_argument, NULL, OPT_CONNECT},
    {"devices", required_argument, NULL, OPT_DEVICES},
    {"procs", required_argument, NULL, OPT_PROCS},
    {"dimension", required_argument, NULL, OPT_DIMENSION},
    {"density", required_argument, NULL, OPT_DENSITY},
    {"values", required_argument, NULL, OPT_VALUES},
    {"codec", required_argument, NULL, OPT_CODEC},
    {"samples", required_argument, NULL, OPT_SAMPLES},
    {"think-ms", required_argument, NULL, OPT_THINK_MS},
    {"jitter-ms", required_argument, NULL, OPT_JITTER_MS},
    {"vanish", required_argument, NULL, OPT_VANISH},
    {"vanish-ms", required_argument, NULL, OPT_VANISH_MS},
    {"id-prefix", required_argument, NULL, OPT_ID_PREFIX},
    {"rounds-expected", required_argument, NULL, OPT_ROUNDS_EXPECTED},
    {"max-seconds", required_argument, NULL, OPT_MAX_SECONDS},
    {"connect-batch", required_argument, NULL, OPT_CONNECT_BATCH},
    {"io-threads", required_argument, NULL, OPT_IO_THREADS},
    {"hello-retry-ms", required_argument, NULL, OPT_HELLO_RETRY_MS},
    {"distinct", required_argument, NULL, OPT_DISTINCT},
    {"no-monitor", no_argument, NULL, OPT_NO_MONITOR},
    {"seed", required_argument, NULL, OPT_SEED},
    {"report", required_argument, NULL, OPT_REPORT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {NULL, 0, NULL, 0}};

void bench_swarm_config_defaults(struct bench_swarm_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->connect = NULL;
    cfg->devices = 0;
    cfg->procs = 0;
    cfg->dimension = 0;
    cfg->density = 0.01;
    cfg->values = CMP_VALUE_FP16;
    cfg->codec = CMP_CODEC_ZSTD;
    cfg->level = 1;
    cfg->samples = 100;
    cfg->think_ms = 0;
    cfg->jitter_ms = 0;
    cfg->vanish = 0.0;
    cfg->vanish_ms = -1;
    cfg->id_prefix = "swarm";
    cfg->rounds_expected = 0;
    cfg->max_seconds = 600.0;
    cfg->connect_batch = 200;
    cfg->io_threads = 1;
    cfg->hello_retry_ms = 1000;
    cfg->distinct = 4;
    cfg->monitor = true;
    cfg->seed = 1;
    cfg->report = NULL;
    cfg->log_level = FL_LOG_NOTICE;
}

void bench_swarm_usage(FILE *out)
{
    fputs(
        "usage: " BENCH_SWARM_PROGRAM " --connect ENDPOINT --devices N "
        "[OPTIONS]\n"
        "\n"
        "Plays N devices speaking the fedcomp protocol to one coordinator\n"
        "(one DEALER socket and one device id per device), answering every\n"
        "Task with a valid precomputed compressed update. Chunked transfers\n"
        "follow the geometry of Welcome: announced models are taken in\n"
        "chunk by chunk (checked and credited), updates over a chunk are\n"
        "announced and sent in chunks as the coordinator grants credit.\n"
        "Ends when every device got Bye, prints a summary and a verdict.\n"
        "\n"
        "  --connect ENDPOINT       coordinator endpoint (required)\n"
        "  --devices N              devices to play (required)\n"
        "  --procs P                processes, default ceil(N / 4000)\n"
        "  --dimension D            expected model dimension; default: from\n"
        "                           Welcome (with D the updates are built at\n"
        "                           start and Welcome is checked against D)\n"
        "  --density F              update density until a Task says (0.01)\n"
        "  --values fp32|fp16|bf16|int8  value coding until a Task says "
        "(fp16)\n"
        "  --codec none|lz4|zstd[:L] codec until a Task says (zstd:1)\n"
        "  --samples N              n_samples in Hello and Update (100)\n"
        "  --think-ms MS            delay before answering a Task (0)\n"
        "  --jitter-ms MS           plus uniform [0, MS] per Task (0)\n"
        "  --vanish F               share of devices that, per Task, close\n"
        "                           their socket without answering and come\n"
        "                           back (new socket, same id, Hello): each\n"
        "                           Task is drawn anew, so about F of the\n"
        "                           cohort leaves and rejoins every round (0)\n"
        "  --vanish-ms MS           when they come back; default the Task's\n"
        "                           timeout + 250 ms (the round has closed)\n"
        "  --id-prefix S            device ids are S-INDEX (swarm)\n"
        "  --rounds-expected R      stop after answering round R, not at Bye\n"
        "  --max-seconds S          give up after S seconds, 0 = never (600)\n"
        "  --connect-batch N        sockets connected per loop pass (200)\n"
        "  --io-threads N           ZeroMQ I/O threads per process (1)\n"
        "  --hello-retry-ms MS      first Hello retry without Welcome; it\n"
        "                           doubles up to 8x (1000)\n"
        "  --distinct U             distinct precomputed updates (4, <= 16)\n"
        "  --no-monitor             do not watch connections (no Hello again\n"
        "                           after a reconnect; half the sockets)\n"
        "  --seed N                 updates, vanishing and jitter (1)\n"
        "  --report FILE            write the JSON summary into FILE\n"
        "  --log-level LEVEL        debug|info|notice|warn|err (notice)\n"
        "  -h, --help               this text\n"
        "  -V, --version            print the version\n"
        "\n"
        "Exit codes: 0 every device joined and every Task received by a\n"
        "device that did not vanish was answered (no rejects, no bad model);\n"
        "1 the run ended without that; 2 usage or setup error.\n",
        out);
}

static bool id_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
           c == '-';
}

static enum fl_err parse_prefix(struct bench_swarm_config *cfg, const char *s,
                                char *err, size_t errlen)
{
    const size_t n = strlen(s);
    if (n == 0 || n > BENCH_SWARM_MAX_PREFIX)
        return fl_flag_err(err, errlen, "--id-prefix: '%s' is not 1-%d "
                           "characters", s, BENCH_SWARM_MAX_PREFIX);
    for (size_t i = 0; i < n; i++) {
        if (!id_char_ok(s[i]))
            return fl_flag_err(err, errlen, "--id-prefix: '%s' has a "
                               "character outside [A-Za-z0-9._:-]", s);
    }
    cfg->id_prefix = s;
    return FL_OK;
}

static enum fl_err parse_codec(struct bench_swarm_config *cfg, const char *s,
                               char *err, size_t errlen)
{
    enum cmp_codec codec;
    int level = 1;
    if (cmp_codec_parse(s, &codec, &level) != 0)
        return fl_flag_err(err, errlen,
                           "--codec: '%s' is not none, lz4 or zstd[:LEVEL]", s);
    if (codec == CMP_CODEC_ZSTD &&
        (level < CMP_ZSTD_LEVEL_MIN || level > CMP_ZSTD_LEVEL_MAX))
        return fl_flag_err(err, errlen, "--codec: zstd level in '%s' is not "
                           "in [%d, %d]", s, CMP_ZSTD_LEVEL_MIN,
                           CMP_ZSTD_LEVEL_MAX);
    cfg->codec = codec;
    cfg->level = codec == CMP_CODEC_ZSTD ? level : 0;
    return FL_OK;
}

static enum fl_err parse_text_flag(struct bench_swarm_config *cfg, int id,
                                   const char *s, char *err, size_t errlen)
{
    int lvl;
    switch (id) {
    case OPT_CONNECT:
        if (s[0] == '\0')
            return fl_flag_err(err, errlen, "--connect: empty endpoint");
        cfg->connect = s;
        return FL_OK;
    case OPT_VALUES:
        if (cmp_value_coding_parse(s, &cfg->values) != 0)
            return fl_flag_err(err, errlen, "--values: '%s' is not fp32, "
                               "fp16, bf16 or int8", s);
        return FL_OK;
    case OPT_CODEC:
        return parse_codec(cfg, s, err, errlen);
    case OPT_ID_PREFIX:
        return parse_prefix(cfg, s, err, errlen);
    case OPT_REPORT:
        cfg->report = s;
        return FL_OK;
    case OPT_NO_MONITOR:
        cfg->monitor = false;
        return FL_OK;
    case OPT_LOG_LEVEL:
        lvl = fl_log_level_parse(s);
        if (lvl < 0)
            return fl_flag_err(err, errlen, "--log-level: '%s' is not debug, "
                               "info, notice, warn or err", s);
        cfg->log_level = (enum fl_log_level)lvl;
        return FL_OK;
    default:
        return fl_flag_err(err, errlen, "internal: unhandled option %d", id);
    }
}

static enum fl_err parse_number_flag(struct bench_swarm_config *cfg, int id,
                                     const char *s, char *err, size_t errlen)
{
    uint64_t v = 0;
    switch (id) {
    case OPT_DEVICES:
        return fl_flag_u32("devices", s, 1, 1000000, &cfg->devices, err, errlen);
    case OPT_PROCS:
        return fl_flag_u32("procs", s, 1, 1024, &cfg->procs, err, errlen);
    case OPT_DIMENSION:
        return fl_flag_u64("dimension", s, 1, UINT32_MAX, &cfg->dimension, err,
                           errlen);
    case OPT_DENSITY:
        return fl_flag_double("density", s, 0, 1, true, &cfg->density, err, errlen);
    case OPT_SAMPLES:
        return fl_flag_u64("samples", s, 1, UINT32_MAX, &cfg->samples, err,
                           errlen);
    case OPT_THINK_MS:
        return fl_flag_u32("think-ms", s, 0, 3600000, &cfg->think_ms, err,
                           errlen);
    case OPT_JITTER_MS:
        return fl_flag_u32("jitter-ms", s, 0, 3600000, &cfg->jitter_ms, err,
                           errlen);
    case OPT_VANISH:
        return fl_flag_double("vanish", s, 0, 1, false, &cfg->vanish, err, errlen);
    case OPT_VANISH_MS:
        FL_FORWARD_ERR(fl_flag_u64("vanish-ms", s, 0, 3600000, &v, err, errlen));
        cfg->vanish_ms = (int64_t)v;
        return FL_OK;
    case OPT_ROUNDS_EXPECTED:
        return fl_flag_u64("rounds-expected", s, 1, 100000000,
                           &cfg->rounds_expected, err, errlen);
    case OPT_MAX_SECONDS:
        return fl_flag_double("max-seconds", s, 0, 1e7, false, &cfg->max_seconds,
                              err, errlen);
    case OPT_CONNECT_BATCH:
        return fl_flag_u32("connect-batch", s, 1, 1000000, &cfg->connect_batch,
                           err, errlen);
    case OPT_IO_THREADS:
        return fl_flag_u32("io-threads", s, 1, 64, &cfg->io_threads, err,
                           errlen);
    case OPT_HELLO_RETRY_MS:
        return fl_flag_u32("hello-retry-ms", s, 10, 3600000,
                           &cfg->hello_retry_ms, err, errlen);
    case OPT_DISTINCT:
        return fl_flag_u32("distinct", s, 1, BENCH_SWARM_MAX_DISTINCT,
                           &cfg->distinct, err, errlen);
    case OPT_SEED:
        return fl_flag_u64("seed", s, 0, UINT64_MAX, &cfg->seed, err, errlen);
    default:
        return parse_text_flag(cfg, id, s, err, errlen);
    }
}

enum fl_err bench_swarm_config_parse(struct bench_swarm_config *cfg,
                                     int argc, char **argv,
                                     enum bench_swarm_action *action,
                                     char *err, size_t errlen)
{
    int c;
    *action = BENCH_SWARM_RUN;
    optind = 1;
    opterr = 0;
    while (true) {
        c = getopt_long(argc, argv, ":hV", long_options, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            *action = BENCH_SWARM_HELP;
            return FL_OK;
        }
        if (c == 'V') {
            *action = BENCH_SWARM_VERSION_ACTION;
            return FL_OK;
        }
        if (c == ':')
            return fl_flag_err(err, errlen, "%s: missing argument",
                               argv[optind - 1]);
        if (c == '?')
            return fl_flag_err(err, errlen, "unknown option '%s'",
                               argv[optind - 1]);
        FL_FORWARD_ERR(parse_number_flag(cfg, c, optarg, err, errlen));
    }
    if (optind < argc)
        return fl_flag_err(err, errlen, "unexpected argument '%s'",
                           argv[optind]);
    if (cfg->connect == NULL)
        return fl_flag_err(err, errlen, "--connect is required");
    if (cfg->devices == 0)
        return fl_flag_err(err, errlen, "--devices is required");
    if (cfg->procs > cfg->devices)
        return fl_flag_err(err, errlen, "--procs %u is more than --devices %u",
                           cfg->procs, cfg->devices);
    return FL_OK;
}

void bench_swarm_plan(const struct bench_swarm_config *cfg, uint32_t *procs,
                      uint64_t *fds_per_proc)
{
    uint32_t p = cfg->procs;
    if (p == 0)
        p = (cfg->devices + BENCH_SWARM_PER_PROC - 1) / BENCH_SWARM_PER_PROC;
    if (p == 0)
        p = 1;
    if (p > cfg->devices)
        p = cfg->devices;
    const uint64_t share = (cfg->devices + (uint64_t)p - 1) / p;
    /* a DEALER holds its mailbox eventfd and its TCP connection, its
     * monitor two more mailboxes (the monitor's PAIR and ours); a vanished
     * device's old sockets may linger until the reaper closes them */
    *procs = p;
    *fds_per_proc = share * (cfg->monitor ? 4 : 2) + share / 16 + 64;
}

/* ====================================================================
 * 2. statistics shared between the processes
 * ==================================================================== */

struct swarm_round {
    uint32_t tasks;          /* Tasks received for this round */
    uint32_t updates;        /* Updates handed to ZeroMQ */
    uint32_t vanished;       /* devices that vanished on this Task */
    uint32_t bad_tasks;      /* Tasks not answered: bad model/settings/epoch */
    uint32_t recovered;      /* updates refused as unknown_device, answered
                              * again after the device said Hello again */
    uint32_t replaced;       /* Tasks whose model transfer a newer Task of
                              * the coordinator replaced (not unanswered) */
    uint32_t rejects[REJ_SLOTS];
};

/* Totals the parent reads while the children run. */
struct swarm_live {
    atomic_uint_fast64_t joined;     /* distinct devices welcomed */
    atomic_uint_fast64_t byes;
    atomic_uint_fast64_t finished;
    atomic_uint_fast64_t tasks;
    atomic_uint_fast64_t updates;
    atomic_uint_fast64_t rejects;
};

/* Counters written by one child, read by the parent after the child
 * ended; all are sums over the processes. Names are the JSON keys. */
#define SWARM_COUNTERS(X) \
    X(HELLOS, "hellos") \
    X(WELCOMES, "welcomes") \
    X(WELCOME_DUPS, "welcome_dups") \
    X(VANISHED, "vanished") \
    X(RECONNECTS, "reconnects") \
    X(TASKS_FULL, "tasks_full") \
    X(TASKS_DELTA, "tasks_delta") \
    X(TASKS_SPARSE, "tasks_sparse") \
    X(MODEL_DECODES, "model_decodes") \
    X(DELTA_APPLIES, "delta_applies") \
    X(MODEL_CACHED, "model_matched") \
    X(MODEL_UNVERIFIED, "model_unverified") \
    X(MODEL_ERRORS, "model_errors") \
    X(BASE_ERRORS, "base_errors") \
    X(SETTING_ERRORS, "setting_errors") \
    X(EPOCH_CHANGES, "epoch_changes") \
    X(DIM_MISMATCH, "dim_mismatch") \
    X(UNEXPECTED, "unexpected") \
    X(UNPACK_ERRORS, "unpack_errors") \
    X(SEND_EAGAIN, "send_eagain") \
    X(SEND_ERRORS, "send_errors") \
    X(QUEUE_FULL, "queue_full") \
    X(MSGS_UP, "msgs_up") \
    X(MSGS_DOWN, "msgs_down") \
    X(BYTES_UP, "bytes_up") \
    X(BYTES_DOWN, "bytes_down") \
    X(UPDATE_BYTES, "update_bytes") \
    X(PACK_NS, "pack_ns") \
    X(PACKS, "packs") \
    X(PRECOMPUTES, "precomputes") \
    X(PRECOMPUTE_NS, "precompute_ns") \
    X(REFUSED, "refused") \
    X(DUP_TASKS, "duplicate_tasks") \
    X(SWEEP_FOUND, "sweep_found") \
    X(STRANDED, "stranded") \
    X(REJOINS, "rejoins") \
    X(DISCONNECTS, "disconnects") \
    X(RECONNECTED, "reconnected") \
    X(JOIN_NS, "join_ns") \
    X(JOINS, "joins") \
    X(GEOMETRY_ERRORS, "geometry_errors") \
    X(XFERS_DOWN, "transfers_down") \
    X(XFERS_DOWN_DONE, "transfers_down_done") \
    X(XFERS_REPLACED, "transfers_replaced") \
    X(XFERS_ABORTED, "transfers_aborted") \
    X(XFERS_DISCARDED, "transfers_discarded") \
    X(XFER_ERRORS, "transfer_errors") \
    X(CHUNKS_DOWN, "chunks_down") \
    X(CHUNK_BYTES_DOWN, "chunk_bytes_down") \
    X(STALE_CHUNKS, "stale_chunks") \
    X(CREDITS_UP, "credits_up") \
    X(CHUNKS_COMPARED, "chunks_compared") \
    X(CHUNK_MISMATCHES, "chunk_mismatches") \
    X(SLOT_FAILURES, "verify_slot_failures") \
    X(UPLOADS, "uploads_announced") \
    X(UPLOADS_GRANTED, "uploads_granted") \
    X(UPLOADS_DONE, "uploads_done") \
    X(UPLOADS_CANCELLED, "uploads_cancelled") \
    X(UPLOADS_DROPPED, "uploads_dropped") \
    X(CHUNKS_UP, "chunks_up") \
    X(CHUNK_BYTES_UP, "chunk_bytes_up") \
    X(CREDITS_DOWN, "credits_down") \
    X(STALE_CREDITS, "stale_credits")

enum swarm_ctr {
#define X(e, name) C_##e,
    SWARM_COUNTERS(X)
#undef X
    C__N
};

static const char *const ctr_names[C__N] = {
#define X(e, name) name,
    SWARM_COUNTERS(X)
#undef X
};

struct swarm_counters {
    uint64_t n[C__N];
    uint64_t dimension;
    uint64_t k;
    uint64_t join_max_ns;        /* socket opened .. Welcome, longest */
    int timed_out;
    int interrupted;
    int setup_failed;
};

#define CNT(p, name) ((p)->c->n[C_##name])

struct swarm_proc_stats {
    struct swarm_live live;
    struct swarm_counters c;
    struct swarm_round rounds[BENCH_SWARM_MAX_ROUNDS];
};

static void live_inc(atomic_uint_fast64_t *v)
{
    atomic_fetch_add_explicit(v, 1, memory_order_relaxed);
}

static uint64_t live_get(atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* Slot of a round: 0 holds messages without a round, the last slot every
 * round beyond the table. */
static size_t round_slot(uint64_t round)
{
    return round < BENCH_SWARM_MAX_ROUNDS ? (size_t)round
                                          : BENCH_SWARM_MAX_ROUNDS - 1;
}

static size_t reject_slot(uint32_t code)
{
    return code < FL_ERR__MAX ? code : REJ_SLOTS - 1;
}

/* ====================================================================
 * 3. one swarm process
 * ==================================================================== */

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig) { stop_flag = sig; }

enum dev_state {
    DS_NEW = 0,        /* socket not created yet */
    DS_OPEN = 1,       /* socket connected (or connecting) */
    DS_VANISHED = 2,   /* closed on purpose, reconnect timer armed */
    DS_CLOSED = 3      /* done: Bye, refused, or finished */
};

enum send_kind { SEND_HELLO = 1, SEND_UPDATE = 2, SEND_CREDIT = 3 };

struct qitem {
    uint8_t kind;      /* enum send_kind */
    bool cancel;       /* SEND_CREDIT */
    uint32_t received; /* SEND_CREDIT */
    uint64_t round;    /* SEND_UPDATE: the round; SEND_CREDIT: transfer */
};

/* What a device does with a downlink transfer once it is complete. */
enum rx_mode {
    RX_ANSWER = 1,     /* the Task waits for it, then is answered */
    RX_DISCARD = 2     /* a Task not to be answered (duplicate, other
                        * epoch, unusable): taken in and credited so that
                        * the coordinator's transfer ends normally */
};

/* A model payload coming in chunks (docs/protocol.md "Transfers"). The
 * bytes are not kept per device: every chunk is checked against the
 * geometry (seq, total, length) and, where the process's reassembly of
 * the same content has it, compared byte for byte (struct vslot). */
struct dev_rx {
    uint64_t transfer;        /* 0: none */
    uint64_t bytes;           /* payload_bytes */
    uint64_t round;
    uint64_t version;         /* Task.model_version */
    uint64_t base;            /* XOR/sparse base version */
    uint32_t total;
    uint32_t received;
    uint32_t chunk_bytes;
    uint32_t timeout_ms;
    uint32_t checksum;        /* of the tensor: part of the content key */
    uint8_t kind;             /* enum model_kind */
    uint8_t mode;             /* enum rx_mode */
    bool bad;                 /* a chunk differed from the reassembly */
};

/* An Update payload going out in chunks, after the coordinator's first
 * Credit, within the window. The bytes are the precomputed update's. */
struct dev_tx {
    uint64_t transfer;        /* 0: none */
    uint64_t round;
    uint64_t bytes;
    uint32_t total;
    uint32_t next;            /* next seq to send */
    uint32_t limit;           /* seq < limit may be sent */
    uint32_t chunk_bytes;
    uint32_t window;
    uint32_t upd_gen;         /* p->upd.gen when announced */
    uint8_t upd;              /* index into p->upd.u */
    bool granted;             /* Credit{received = 0} came */
};

struct dev {
    void *sock;
    void *mon;                /* PAIR reading the socket's monitor */
    uint32_t gindex;          /* global device number */
    uint8_t state;            /* enum dev_state */
    bool welcomed;
    bool ever_joined;
    bool has_model;
    bool finished;
    bool dirty;
    bool think_pending;
    bool returning;           /* vanished, not welcomed back yet */
    uint8_t nq;
    struct qitem q[DEV_QUEUE];
    uint32_t hello_gen;       /* invalidates older Hello retry timers */
    uint32_t hello_backoff_ms;
    uint64_t epoch;
    uint64_t held_version;
    uint64_t think_round;
    uint64_t answered_round;  /* last round answered (or being answered) */
    uint64_t rejected_round;  /* its answer was refused: unknown_device */
    uint64_t reanswered_round;/* answered twice after saying Hello again */
    uint32_t mon_gen;         /* makes monitor endpoints unique */
    bool lost_conn;           /* DISCONNECTED seen, not reconnected yet */
    bool rejoined;            /* said Hello again since its last answer */
    uint64_t open_ns;         /* when the current socket was opened */
    struct dev_rx rx;
    struct dev_tx tx;
};

enum timer_kind { T_HELLO = 1, T_SEND = 2, T_RECONNECT = 3 };

struct timer {
    uint64_t due;
    uint64_t arg;
    uint32_t dev;
    uint8_t kind;
};

struct upd {
    struct cmp_meta meta;
    uint8_t *payload;
    size_t len;
};

/* The precomputed updates for one (dimension, k, codings) setting. */
struct upd_set {
    bool valid;
    uint32_t gen;             /* changes whenever the set is rebuilt */
    uint64_t dim;
    uint64_t k;
    enum cmp_value_coding values;
    enum cmp_codec codec;
    int level;
    uint32_t n;
    struct upd u[BENCH_SWARM_MAX_DISTINCT];
};

/* How a Task carries its model. */
enum model_kind {
    MK_FULL = 0,       /* Task.model, the model itself */
    MK_XOR = 1,        /* Task.model with base_version: XOR of patterns */
    MK_SPARSE = 2      /* Task.model_delta: base + sparse delta (lossy) */
};

struct seen {
    uint8_t kind;      /* enum model_kind */
    uint64_t base;
    uint64_t version;
    uint32_t checksum;
    uint64_t raw_size;
    size_t len;
};

/* The process's reassembly of one chunked model content. The coordinator
 * names a transfer by its content, so every device of the process gets
 * the same bytes under the same id: the slot starts with the first Task
 * announcing the content, before any of its chunks arrived, so whichever
 * device first reaches chunk seq provides it (seq == rx.received) and
 * every other device's chunk seq is compared with it (seq < rx.received).
 * Complete, the payload is decoded like an inline model; the buffer stays
 * for comparing later transfers of the same content until the slot is
 * reused. */
struct vslot {
    bool used;
    bool failed;              /* could not follow (memory, order): the
                               * devices of this content are unverified */
    bool decoded;
    enum fl_err result;       /* of the decode */
    uint64_t stamp;           /* last use, for reuse */
    uint8_t kind;             /* enum model_kind */
    uint64_t base;
    uint64_t version;
    struct pb_tensor meta;    /* the announcement; payload NULL */
    struct pb_xfer_rx rx;
};

/* One model buffer per process: every device of the process receives the
 * same model content, so it is decoded once per version. */
struct model_state {
    float *buf;
    bool valid;
    uint64_t version;
    struct seen seen[SEEN_MAX];
    size_t nseen;
    size_t next;
    struct vslot slot[VSLOTS];
    uint64_t stamp;
};

struct proc {
    const struct bench_swarm_config *cfg;
    uint32_t index;
    uint32_t first;           /* global index of device 0 of this process */
    uint32_t ndev;
    struct dev *dev;
    uint32_t ncreated;
    uint32_t nfinished;
    uint32_t nreturning;      /* devices with dev.returning set */
    bool saw_bye;             /* the coordinator ended training */
    uint64_t stranded_since;  /* only returning devices left, since */
    void *zctx;
    int ep;
    struct fl_rng rng;
    struct swarm_proc_stats *st;
    struct swarm_counters *c;
    uint64_t dim;             /* 0 until known */
    uint32_t chunk_bytes;     /* from Welcome; 0 = no chunked transfers */
    uint32_t chunk_window;
    uint64_t next_transfer;   /* ids of this process's uploads */
    struct model_state model;
    struct upd_set upd;
    struct cmp_ctx *cctx;
    uint8_t *sbuf;
    size_t scap;
    uint32_t *dirty;
    uint32_t ndirty;
    struct timer *heap;
    size_t nheap;
    size_t capheap;
    struct pb_limits lim;
    uint64_t deadline_ns;     /* UINT64_MAX: none */
    unsigned logged;
};

/* ---- timers: a binary min-heap on due time */

static enum fl_err timer_add(struct proc *p, uint64_t due, uint32_t dev,
                             enum timer_kind kind, uint64_t arg)
{
    if (p->nheap == p->capheap) {
        const size_t cap = p->capheap ? p->capheap * 2 : 1024;
        struct timer *h = fl_realloc(p->heap, cap * sizeof(*h));
        if (h == NULL)
            return FL_ERR_NOMEM;
        p->heap = h;
        p->capheap = cap;
    }
    size_t i = p->nheap++;
    const struct timer t = {.due = due, .arg = arg, .dev = dev,
                            .kind = (uint8_t)kind};
    while (i > 0 && p->heap[(i - 1) / 2].due > due) {
        p->heap[i] = p->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    p->heap[i] = t;
    return FL_OK;
}

static struct timer timer_pop(struct proc *p)
{
    const struct timer top = p->heap[0];
    const struct timer last = p->heap[--p->nheap];
    size_t i = 0;
    while (true) {
        size_t c = 2 * i + 1;
        if (c >= p->nheap)
            break;
        if (c + 1 < p->nheap && p->heap[c + 1].due < p->heap[c].due)
            c++;
        if (p->heap[c].due >= last.due)
            break;
        p->heap[i] = p->heap[c];
        i = c;
    }
    if (p->nheap > 0)
        p->heap[i] = last;
    return top;
}

/* ---- small helpers */

static void mark_dirty(struct proc *p, struct dev *d)
{
    if (d->dirty || d->sock == NULL)
        return;
    d->dirty = true;
    p->dirty[p->ndirty++] = (uint32_t)(d - p->dev);
}

static void dev_finish(struct proc *p, struct dev *d)
{
    if (d->finished)
        return;
    d->finished = true;
    p->nfinished++;
    live_inc(&p->st->live.finished);
}

static void device_id(const struct proc *p, const struct dev *d, char *buf,
                      size_t len)
{
    snprintf(buf, len, "%s-%u", p->cfg->id_prefix, d->gindex);
}

static bool log_detail(struct proc *p)
{
    return p->logged++ < LOG_FIRST;
}

static void close_monitor(struct proc *p, struct dev *d)
{
    int fd = -1;
    size_t sz = sizeof(fd);
    if (d->mon == NULL)
        return;
    if (zmq_getsockopt(d->mon, ZMQ_FD, &fd, &sz) == 0)
        epoll_ctl(p->ep, EPOLL_CTL_DEL, fd, NULL);
    zmq_close(d->mon);
    d->mon = NULL;
}

static void close_socket(struct proc *p, struct dev *d, int linger)
{
    int fd = -1;
    size_t sz = sizeof(fd);
    if (d->mon != NULL) {
        if (d->sock != NULL)
            zmq_socket_monitor(d->sock, NULL, 0);
        close_monitor(p, d);
    }
    if (d->sock == NULL)
        return;
    if (zmq_getsockopt(d->sock, ZMQ_FD, &fd, &sz) == 0)
        epoll_ctl(p->ep, EPOLL_CTL_DEL, fd, NULL);
    zmq_setsockopt(d->sock, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_close(d->sock);
    d->sock = NULL;
    d->nq = 0;
    /* what was in flight on this connection is gone */
    if (d->rx.transfer != 0 && d->rx.mode == RX_ANSWER)
        CNT(p, XFERS_ABORTED)++;
    if (d->tx.transfer != 0)
        CNT(p, UPLOADS_DROPPED)++;
    memset(&d->rx, 0, sizeof(d->rx));
    memset(&d->tx, 0, sizeof(d->tx));
}

/* ---- precomputed updates */

static void upd_set_release(struct upd_set *s)
{
    for (uint32_t i = 0; i < s->n; i++)
        fl_free(s->u[i].payload);
    memset(s, 0, sizeof(*s));
}

static enum fl_err upd_build_one(struct proc *p, struct cmp_topk *tk,
                                 float *x, uint32_t *idx, float *val,
                                 uint32_t variant, struct upd *u)
{
    struct fl_rng rng;
    const struct upd_set *s = &p->upd;
    const struct cmp_params prm = {.index_coding = CMP_INDEX_AUTO,
                                   .values = s->values, .codec = s->codec,
                                   .level = s->level};
    const uint8_t *payload = NULL;
    size_t kout = 0, len = 0;
    /* the same updates in every process: seeded by --seed and the variant */
    fl_rng_seed(&rng, p->cfg->seed * 0x9e3779b97f4a7c15ULL + variant + 1);
    for (uint64_t i = 0; i < s->dim; i++)
        x[i] = (float)(0.01 * fl_rng_normal(&rng));
    FL_FORWARD_ERR(cmp_topk_select(tk, NULL, x, (size_t)s->dim,
                                   (size_t)s->k, CMP_TOPK_EXACT, 0, idx, val,
                                   &kout));
    FL_FORWARD_ERR(cmp_sparse_encode(p->cctx, s->dim, idx, val, kout, &prm,
                                     &u->meta, &payload, &len));
    u->payload = fl_malloc(len);
    if (u->payload == NULL)
        return FL_ERR_NOMEM;
    memcpy(u->payload, payload, len);
    u->len = len;
    return FL_OK;
}

/* Make p->upd hold updates for this setting (no-op when it already does). */
static enum fl_err upd_ensure(struct proc *p, uint64_t dim, double density,
                              enum cmp_value_coding values,
                              enum cmp_codec codec, int level)
{
    struct upd_set *s = &p->upd;
    double kd = ceil(density * (double)dim);
    const uint64_t k = kd < 1 ? 1 : kd > (double)dim ? dim : (uint64_t)kd;
    enum fl_err rc = FL_OK;
    if (s->valid && s->dim == dim && s->k == k && s->values == values &&
        s->codec == codec && s->level == level)
        return FL_OK;
    const uint64_t t0 = fl_now_ns();
    const uint32_t gen = s->gen + 1;   /* uploads of the old set end */
    upd_set_release(s);
    *s = (struct upd_set){.dim = dim, .k = k, .values = values,
                          .codec = codec, .level = level, .gen = gen};
    float *x = fl_malloc((size_t)dim * sizeof(float));
    uint32_t *idx = fl_malloc((size_t)k * sizeof(uint32_t));
    float *val = fl_malloc((size_t)k * sizeof(float));
    struct cmp_topk *tk = cmp_topk_new(p->cfg->seed);
    if (x == NULL || idx == NULL || val == NULL || tk == NULL) {
        rc = FL_ERR_NOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < p->cfg->distinct && rc == FL_OK; i++) {
        rc = upd_build_one(p, tk, x, idx, val, i, &s->u[i]);
        if (s->u[i].payload != NULL)
            s->n = i + 1;
    }
    if (rc == FL_OK) {
        s->valid = true;
        CNT(p, PRECOMPUTES)++;
        CNT(p, PRECOMPUTE_NS) += fl_now_ns() - t0;
        p->c->k = k;
    }
out:
    if (rc != FL_OK)
        upd_set_release(s);
    cmp_topk_destroy(&tk);
    fl_free(val);
    fl_free(idx);
    fl_free(x);
    return rc;
}

/* ---- packing and sending */

static enum fl_err pack_env(struct proc *p, const struct pb_envelope *env,
                            size_t *len)
{
    const size_t need = pb_packed_size(env);
    if (need == 0)
        return FL_ERR_INVALID_ARG;
    if (need > p->scap) {
        uint8_t *b = fl_realloc(p->sbuf, need);
        if (b == NULL)
            return FL_ERR_NOMEM;
        p->sbuf = b;
        p->scap = need;
    }
    return pb_pack(env, p->sbuf, p->scap, len);
}

static enum fl_err pack_hello(struct proc *p, const struct dev *d,
                              size_t *len)
{
    struct pb_envelope env;
    char id[80];
    device_id(p, d, id, sizeof(id));
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_HELLO;
    env.hello.device_id = id;
    env.hello.n_samples = p->cfg->samples;
    env.hello.codecs_mask = (1u << CMP_CODEC_NONE) | (1u << CMP_CODEC_LZ4) |
                            (1u << CMP_CODEC_ZSTD);
    env.hello.has_model_version = d->has_model;
    env.hello.model_version = d->held_version;
    env.hello.has_epoch = d->epoch != 0;
    env.hello.epoch = d->epoch;
    env.hello.software = BENCH_SWARM_PROGRAM " " BENCH_SWARM_VERSION;
    return pack_env(p, &env, len);
}

/* The update of device d for round; with transfer != 0 only announced
 * (empty payload, payload_transfer and payload_bytes). */
static enum fl_err pack_update(struct proc *p, const struct dev *d,
                               uint64_t round, uint64_t transfer,
                               size_t *len)
{
    struct pb_envelope env;
    const struct upd *u = &p->upd.u[d->gindex % p->upd.n];
    const uint64_t t0 = fl_now_ns();
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_UPDATE;
    env.update.round = round;
    env.update.n_samples = p->cfg->samples;
    env.update.delta = (struct pb_tensor){
        .dimension = u->meta.dimension, .k = u->meta.k,
        .index_coding = (uint32_t)u->meta.index_coding,
        .value_coding = (uint32_t)u->meta.value_coding,
        .codec = (uint32_t)u->meta.codec, .raw_size = u->meta.raw_size,
        .checksum = u->meta.checksum,
        .payload = transfer != 0 ? NULL : u->payload,
        .payload_len = transfer != 0 ? 0 : u->len,
        .payload_transfer = transfer,
        .payload_bytes = transfer != 0 ? u->len : 0};
    env.update.stats.train_ms = p->cfg->think_ms;
    env.update.stats.steps = 1;
    const enum fl_err rc = pack_env(p, &env, len);
    CNT(p, PACK_NS) += fl_now_ns() - t0;
    CNT(p, PACKS)++;
    return rc;
}

static enum fl_err pack_credit(struct proc *p, uint64_t transfer,
                               uint32_t received, bool cancel, size_t *len)
{
    struct pb_envelope env;
    memset(&env, 0, sizeof(env));
    env.version = PB_PROTOCOL_VERSION;
    env.body = PB_BODY_CREDIT;
    env.credit.transfer = transfer;
    env.credit.received = received;
    env.credit.cancel = cancel;
    return pack_env(p, &env, len);
}

/* An Update over one chunk is announced and its bytes follow in chunks
 * (docs/protocol.md "Transfers"); 0 = inline. */
static uint64_t upload_transfer(struct proc *p, const struct dev *d)
{
    const struct upd *u = &p->upd.u[d->gindex % p->upd.n];
    if (p->chunk_bytes == 0 || u->len <= p->chunk_bytes)
        return 0;
    return ++p->next_transfer;
}

/* The announced Update left: remember what its chunks will be. An upload
 * still going on (an answer given again after a Hello) is dropped. */
static void tx_begin(struct proc *p, struct dev *d, uint64_t transfer,
                     uint64_t round)
{
    const uint8_t ui = (uint8_t)(d->gindex % p->upd.n);
    if (d->tx.transfer != 0)
        CNT(p, UPLOADS_DROPPED)++;
    d->tx = (struct dev_tx){
        .transfer = transfer, .round = round, .bytes = p->upd.u[ui].len,
        .total = pb_xfer_chunks(p->upd.u[ui].len, p->chunk_bytes),
        .chunk_bytes = p->chunk_bytes, .window = p->chunk_window,
        .upd_gen = p->upd.gen, .upd = ui};
    CNT(p, UPLOADS)++;
}

static void note_sent(struct proc *p, struct dev *d, const struct qitem *it,
                      size_t len)
{
    CNT(p, MSGS_UP)++;
    CNT(p, BYTES_UP) += len;
    if (it->kind == SEND_HELLO) {
        CNT(p, HELLOS)++;
        return;
    }
    if (it->kind == SEND_CREDIT) {
        CNT(p, CREDITS_UP)++;
        return;
    }
    p->st->rounds[round_slot(it->round)].updates++;
    live_inc(&p->st->live.updates);
    CNT(p, UPDATE_BYTES) += len;
    /* an announced update is finished when its last chunk is credited */
    if (p->cfg->rounds_expected > 0 && it->round >= p->cfg->rounds_expected &&
        d->tx.transfer == 0)
        dev_finish(p, d);
}

static enum fl_err pack_item(struct proc *p, struct dev *d,
                             const struct qitem *it, uint64_t *transfer,
                             size_t *len)
{
    switch ((enum send_kind)it->kind) {
    case SEND_HELLO:
        return pack_hello(p, d, len);
    case SEND_CREDIT:
        return pack_credit(p, it->round, it->received, it->cancel, len);
    case SEND_UPDATE:
        if (!p->upd.valid)
            return FL_ERR_BAD_STATE;
        *transfer = upload_transfer(p, d);
        return pack_update(p, d, it->round, *transfer, len);
    }
    return FL_ERR_INVALID_ARG;
}

/* Try to send one item now. 1 sent, 0 would block (EAGAIN), -1 failed. */
static int try_send(struct proc *p, struct dev *d, const struct qitem *it)
{
    size_t len = 0;
    uint64_t transfer = 0;
    const enum fl_err rc = pack_item(p, d, it, &transfer, &len);
    if (rc != FL_OK) {
        CNT(p, SEND_ERRORS)++;
        if (log_detail(p))
            fl_log(FL_LOG_ERR, "cannot pack a message for device %u: %s",
                   d->gindex, fl_strerror(rc));
        return -1;
    }
    if (zmq_send(d->sock, p->sbuf, len, ZMQ_DONTWAIT) >= 0) {
        if (transfer != 0)
            tx_begin(p, d, transfer, it->round);
        note_sent(p, d, it, len);
        return 1;
    }
    if (errno == EAGAIN) {
        CNT(p, SEND_EAGAIN)++;
        return 0;
    }
    CNT(p, SEND_ERRORS)++;
    if (log_detail(p))
        fl_log(FL_LOG_ERR, "cannot send to '%s' from device %u: %s",
               p->cfg->connect, d->gindex, zmq_strerror(errno));
    return -1;
}

/* Send now, or queue behind what is already waiting. */
static void dev_send_item(struct proc *p, struct dev *d,
                          const struct qitem *it)
{
    if (d->sock == NULL)
        return;
    if (d->nq == 0 && try_send(p, d, it) != 0) {
        mark_dirty(p, d);
        return;
    }
    if (d->nq == DEV_QUEUE) {
        CNT(p, QUEUE_FULL)++;
        return;
    }
    d->q[d->nq++] = *it;
    mark_dirty(p, d);
}

static void dev_send(struct proc *p, struct dev *d, enum send_kind kind,
                     uint64_t round)
{
    const struct qitem it = {.kind = (uint8_t)kind, .round = round};
    dev_send_item(p, d, &it);
}

/* Credit a downlink transfer. A Credit of the same transfer still waiting
 * for POLLOUT is raised instead: the later one says all it said. */
static void dev_send_credit(struct proc *p, struct dev *d, uint64_t transfer,
                            uint32_t received)
{
    const struct qitem it = {.kind = SEND_CREDIT, .round = transfer,
                             .received = received};
    for (uint8_t i = 0; i < d->nq; i++) {
        if (d->q[i].kind == SEND_CREDIT && d->q[i].round == transfer &&
            !d->q[i].cancel) {
            d->q[i].received = FL_MAX(d->q[i].received, received);
            return;
        }
    }
    dev_send_item(p, d, &it);
}

static void tx_end(struct proc *p, struct dev *d)
{
    const uint64_t round = d->tx.round;
    memset(&d->tx, 0, sizeof(d->tx));
    if (p->cfg->rounds_expected > 0 && round >= p->cfg->rounds_expected)
        dev_finish(p, d);
}

static bool tx_wants_send(const struct dev *d)
{
    const struct dev_tx *x = &d->tx;
    return x->transfer != 0 && x->next < x->limit && x->next < x->total;
}

/* Send the upload's chunks the window allows, behind any queued item. */
static void tx_pump(struct proc *p, struct dev *d)
{
    struct dev_tx *x = &d->tx;
    struct pb_envelope env;
    size_t len = 0;
    while (tx_wants_send(d) && d->sock != NULL && d->nq == 0) {
        if (x->upd_gen != p->upd.gen || !p->upd.valid) {
            CNT(p, UPLOADS_DROPPED)++;   /* the update set was rebuilt */
            tx_end(p, d);
            return;
        }
        const struct upd *u = &p->upd.u[x->upd];
        const size_t n = pb_xfer_chunk_len(x->bytes, x->chunk_bytes,
                                           x->next);
        memset(&env, 0, sizeof(env));
        env.version = PB_PROTOCOL_VERSION;
        env.body = PB_BODY_CHUNK;
        env.chunk = (struct pb_chunk){
            .transfer = x->transfer, .seq = x->next, .total = x->total,
            .data = u->payload + (size_t)x->next * x->chunk_bytes,
            .len = n};
        if (pack_env(p, &env, &len) != FL_OK) {
            CNT(p, SEND_ERRORS)++;
            tx_end(p, d);
            return;
        }
        if (zmq_send(d->sock, p->sbuf, len, ZMQ_DONTWAIT) < 0) {
            if (errno == EAGAIN) {
                CNT(p, SEND_EAGAIN)++;
                mark_dirty(p, d);
                return;
            }
            CNT(p, SEND_ERRORS)++;
            tx_end(p, d);
            return;
        }
        x->next++;
        CNT(p, CHUNKS_UP)++;
        CNT(p, CHUNK_BYTES_UP) += n;
        CNT(p, MSGS_UP)++;
        CNT(p, BYTES_UP) += len;
        CNT(p, UPDATE_BYTES) += len;
    }
}

static void flush_queue(struct proc *p, struct dev *d)
{
    while (d->nq > 0 && d->sock != NULL) {
        if (try_send(p, d, &d->q[0]) == 0)
            return;
        memmove(&d->q[0], &d->q[1], (size_t)(d->nq - 1) * sizeof(d->q[0]));
        d->nq--;
    }
    tx_pump(p, d);
}

static bool hello_queued(const struct dev *d)
{
    for (uint8_t i = 0; i < d->nq; i++) {
        if (d->q[i].kind == SEND_HELLO)
            return true;
    }
    return false;
}

/* Say Hello (unless one still waits for the connection) and arm the
 * retry timer with back-off. */
static void send_hello(struct proc *p, struct dev *d, uint64_t now)
{
    d->hello_gen++;
    if (!hello_queued(d))
        dev_send(p, d, SEND_HELLO, 0);
    if (timer_add(p, now + (uint64_t)d->hello_backoff_ms * NS_PER_MS,
                  (uint32_t)(d - p->dev), T_HELLO, d->hello_gen) != FL_OK)
        CNT(p, SEND_ERRORS)++;
    d->hello_backoff_ms = FL_MIN(d->hello_backoff_ms * 2,
                                 p->cfg->hello_retry_ms * HELLO_RETRY_GROWTH);
}

/* ---- sockets */

/* Watch d's connection: libzmq publishes HANDSHAKE_SUCCEEDED and
 * DISCONNECTED on an inproc PAIR that we read from the same epoll loop. */
static enum fl_err open_monitor(struct proc *p, struct dev *d)
{
    char ep[64];
    const int zero = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
    int fd = -1;
    size_t sz = sizeof(fd);
    snprintf(ep, sizeof(ep), "inproc://swarm-mon-%u-%u", d->gindex,
             d->mon_gen++);
    if (zmq_socket_monitor(d->sock, ep, ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                            ZMQ_EVENT_DISCONNECTED) != 0)
        return FL_ERR_ZMQ;
    d->mon = zmq_socket(p->zctx, ZMQ_PAIR);
    if (d->mon == NULL ||
        zmq_setsockopt(d->mon, ZMQ_LINGER, &zero, sizeof(zero)) != 0 ||
        zmq_connect(d->mon, ep) != 0 ||
        zmq_getsockopt(d->mon, ZMQ_FD, &fd, &sz) != 0)
        return FL_ERR_ZMQ;
    ev.data.u32 = (uint32_t)(d - p->dev) | MON_FLAG;
    if (epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        return FL_ERR_IO;
    return FL_OK;
}

static enum fl_err open_device(struct proc *p, struct dev *d, uint64_t now)
{
    const int ivl_max = 5000;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
    int fd = -1;
    size_t sz = sizeof(fd);
    d->sock = zmq_socket(p->zctx, ZMQ_DEALER);
    if (d->sock == NULL) {
        fl_log(FL_LOG_ERR, "cannot create the socket of device %u: %s",
               d->gindex, zmq_strerror(errno));
        return FL_ERR_ZMQ;
    }
    /* Not ZMQ_IMMEDIATE: with it, libzmq terminates the pipe without delay
     * when the connection drops (session_base_t::reconnect), discarding
     * messages received but not read yet - a Bye sent just before the
     * coordinator exits would be lost by a busy swarm. Without it the
     * pipe exists from zmq_connect on and the Hello waits in it. */
    if (zmq_setsockopt(d->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max,
                       sizeof(ivl_max)) != 0 ||
        zmq_getsockopt(d->sock, ZMQ_FD, &fd, &sz) != 0)
        goto fail;
    ev.data.u32 = (uint32_t)(d - p->dev);
    if (epoll_ctl(p->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        goto fail;
    if (p->cfg->monitor && open_monitor(p, d) != FL_OK)
        goto fail;
    if (zmq_connect(d->sock, p->cfg->connect) != 0)
        goto fail;
    d->state = DS_OPEN;
    d->lost_conn = false;
    d->welcomed = false;
    d->open_ns = now;
    d->hello_backoff_ms = p->cfg->hello_retry_ms;
    send_hello(p, d, now);
    return FL_OK;
fail:
    fl_log(FL_LOG_ERR, "cannot set up the socket of device %u to '%s': %s",
           d->gindex, p->cfg->connect, zmq_strerror(errno));
    close_socket(p, d, 0);
    return FL_ERR_ZMQ;
}

static enum fl_err connect_more(struct proc *p, uint64_t now)
{
    const uint32_t end = FL_MIN(p->ndev, p->ncreated + p->cfg->connect_batch);
    while (p->ncreated < end) {
        FL_FORWARD_ERR(open_device(p, &p->dev[p->ncreated], now));
        p->ncreated++;
    }
    return FL_OK;
}

/* ---- the model in a Task */

static int seen_find(const struct model_state *m, enum model_kind kind,
                     uint64_t base, uint64_t version)
{
    for (size_t i = 0; i < m->nseen; i++) {
        const struct seen *s = &m->seen[i];
        if (s->kind == kind && s->version == version &&
            (kind == MK_FULL || s->base == base))
            return (int)i;
    }
    return -1;
}

static void seen_add(struct model_state *m, enum model_kind kind,
                     uint64_t base, const struct pb_tensor *t,
                     uint64_t version)
{
    struct seen *s = &m->seen[m->next];
    *s = (struct seen){.kind = (uint8_t)kind, .base = base,
                       .version = version, .checksum = t->checksum,
                       .raw_size = t->raw_size, .len = t->payload_len};
    m->next = (m->next + 1) % SEEN_MAX;
    if (m->nseen < SEEN_MAX)
        m->nseen++;
}

static struct cmp_meta tensor_meta(const struct pb_tensor *t)
{
    return (struct cmp_meta){
        .dimension = t->dimension, .k = t->k,
        .index_coding = (enum cmp_index_coding)t->index_coding,
        .value_coding = (enum cmp_value_coding)t->value_coding,
        .codec = (enum cmp_codec)t->codec, .raw_size = t->raw_size,
        .checksum = t->checksum};
}

/* Decode into the process buffer: a full model, or a delta (XOR or
 * sparse) when the buffer holds its base. */
static enum fl_err decode_model(struct proc *p, enum model_kind kind,
                                uint64_t base_version,
                                const struct pb_tensor *t, uint64_t version)
{
    struct model_state *m = &p->model;
    const struct cmp_meta meta = tensor_meta(t);
    const struct cmp_limits lim = {.dimension = p->dim};
    const uint32_t *idx = NULL;
    const float *val = NULL;
    size_t k = 0;
    if (kind != MK_FULL && (!m->valid || m->version != base_version)) {
        /* the buffer moved on (or never was at the base): the content
         * cannot be checked without keeping old versions */
        CNT(p, MODEL_UNVERIFIED)++;
        return FL_OK;
    }
    if (kind == MK_SPARSE) {
        FL_FORWARD_ERR(cmp_sparse_decode(p->cctx, &meta, t->payload,
                                         t->payload_len, &lim, &idx, &val,
                                         &k));
        cmp_scatter_add(m->buf, idx, val, k, 1.0f);
    } else {
        FL_FORWARD_ERR(cmp_dense_decode(p->cctx, &meta, t->payload,
                                        t->payload_len, &lim,
                                        kind == MK_XOR ? m->buf : NULL,
                                        m->buf));
    }
    m->valid = true;
    m->version = version;
    if (kind == MK_FULL)
        CNT(p, MODEL_DECODES)++;
    else
        CNT(p, DELTA_APPLIES)++;
    seen_add(m, kind, base_version, t, version);
    return FL_OK;
}

/* The tensor that carries the model of a Task, how, and its base. */
static const struct pb_tensor *task_model(const struct pb_task *task,
                                          enum model_kind *kind,
                                          uint64_t *base)
{
    *kind = MK_FULL;
    *base = 0;
    if (task->has_model_delta) {
        *kind = MK_SPARSE;
        *base = task->model_delta_base;
        return &task->model_delta;
    }
    if (task->model.has_base_version) {
        *kind = MK_XOR;
        *base = task->model.base_version;
    }
    return &task->model;
}

static bool task_chunked(const struct pb_task *task)
{
    enum model_kind kind;
    uint64_t base;
    return task_model(task, &kind, &base)->payload_transfer != 0;
}

/* The largest model payload the swarm takes: a compressed dense model is
 * at most a little over its raw size. */
static uint64_t max_payload(const struct proc *p)
{
    return 2 * p->dim * sizeof(float) + (1u << 20);
}

/* Check the model of a Task for device d (see the file comment). For a
 * model that comes in chunks only what the announcement says is checked
 * here; the bytes are checked as they arrive (check_announced()). */
static enum fl_err check_model(struct proc *p, const struct dev *d,
                               const struct pb_task *task)
{
    enum model_kind kind;
    uint64_t base;
    const struct pb_tensor *t = task_model(task, &kind, &base);
    _Static_assert(C_TASKS_DELTA == C_TASKS_FULL + MK_XOR &&
                   C_TASKS_SPARSE == C_TASKS_FULL + MK_SPARSE,
                   "task counters follow enum model_kind");
    p->c->n[C_TASKS_FULL + (size_t)kind]++;
    if (t->dimension != p->dim)
        return FL_ERR_DIMENSION;
    if (kind != MK_FULL && (!d->has_model || d->held_version != base)) {
        CNT(p, BASE_ERRORS)++;
        return FL_ERR_BAD_STATE;
    }
    if (t->payload_transfer != 0) {
        if (p->chunk_bytes == 0) {
            CNT(p, GEOMETRY_ERRORS)++;   /* announced without a geometry */
            return FL_ERR_TRANSFER;
        }
        if (pb_xfer_chunks(t->payload_bytes, p->chunk_bytes) == 0 ||
            t->payload_bytes > max_payload(p))
            return FL_ERR_TOO_LARGE;
        return FL_OK;
    }
    const int s = seen_find(&p->model, kind, base, task->model_version);
    if (s >= 0) {
        const struct seen *e = &p->model.seen[s];
        if (e->checksum != t->checksum || e->len != t->payload_len ||
            e->raw_size != t->raw_size)
            return FL_ERR_CHECKSUM;   /* same version, other content */
        CNT(p, MODEL_CACHED)++;
        return FL_OK;
    }
    return decode_model(p, kind, base, t, task->model_version);
}

/* ---- chunked models: the process's reassembly slots (struct vslot) */

static struct vslot *slot_find(struct proc *p, const struct dev_rx *x)
{
    for (size_t i = 0; i < VSLOTS; i++) {
        struct vslot *s = &p->model.slot[i];
        if (s->used && s->meta.payload_transfer == x->transfer &&
            s->meta.payload_bytes == x->bytes &&
            s->meta.checksum == x->checksum && s->kind == x->kind &&
            s->version == x->version && s->base == x->base)
            return s;
    }
    return NULL;
}

static void slot_release(struct vslot *s)
{
    pb_xfer_rx_reset(&s->rx);
    memset(s, 0, sizeof(*s));
}

static void slot_fail(struct proc *p, struct vslot *s)
{
    pb_xfer_rx_reset(&s->rx);
    s->failed = true;
    CNT(p, SLOT_FAILURES)++;
}

/* Device d starts receiving content t: make sure a slot reassembles it,
 * unless it was decoded already (then its metadata is matched at the end).
 * A free slot is taken, else the least recently used one. */
static void slot_prepare(struct proc *p, const struct dev_rx *x,
                         const struct pb_tensor *t)
{
    struct model_state *m = &p->model;
    struct vslot *s = slot_find(p, x);
    if (s != NULL) {
        s->stamp = ++m->stamp;
        return;
    }
    if (seen_find(m, (enum model_kind)x->kind, x->base, x->version) >= 0)
        return;
    s = &m->slot[0];
    for (size_t i = 0; i < VSLOTS; i++) {
        struct vslot *c = &m->slot[i];
        if (!c->used) {
            s = c;
            break;
        }
        if (c->stamp < s->stamp)
            s = c;
    }
    slot_release(s);
    s->used = true;
    s->stamp = ++m->stamp;
    s->kind = x->kind;
    s->base = x->base;
    s->version = x->version;
    s->meta = *t;
    s->meta.payload = NULL;
    s->meta.payload_len = 0;
    if (pb_xfer_rx_begin(&s->rx, x->transfer, x->bytes, x->chunk_bytes,
                         max_payload(p)) != FL_OK)
        slot_fail(p, s);
}

/* The slot is complete: decode it like an inline model. */
static void slot_finish(struct proc *p, struct vslot *s)
{
    struct pb_tensor t = s->meta;
    t.payload = s->rx.buf;
    t.payload_len = (size_t)s->rx.bytes;
    s->result = decode_model(p, (enum model_kind)s->kind, s->base, &t,
                             s->version);
    s->decoded = true;
    if (s->result != FL_OK && log_detail(p))
        fl_log(FL_LOG_ERR, "the chunked model of version %llu (transfer "
               "%llu, %llu bytes) does not decode: %s",
               (unsigned long long)s->version,
               (unsigned long long)s->meta.payload_transfer,
               (unsigned long long)s->meta.payload_bytes,
               fl_strerror(s->result));
}

/* A chunk that passed the geometry checks: it fills the slot of its
 * content (seq == what the slot has) or is compared with it (seq below).
 * FL_ERR_CHECKSUM when its bytes differ. */
static enum fl_err slot_take_chunk(struct proc *p, const struct dev_rx *x,
                                   const struct pb_chunk *c)
{
    struct vslot *s = slot_find(p, x);
    bool complete = false;
    if (s == NULL || s->failed)
        return FL_OK;
    if (c->seq < s->rx.received) {
        CNT(p, CHUNKS_COMPARED)++;
        if (memcmp(s->rx.buf + (size_t)c->seq * s->rx.chunk_bytes, c->data,
                   c->len) != 0) {
            CNT(p, CHUNK_MISMATCHES)++;
            return FL_ERR_CHECKSUM;
        }
        return FL_OK;
    }
    if (c->seq > s->rx.received)
        return FL_OK;   /* a device that began before the slot: ahead of
                         * it, not compared; the devices that began after
                         * it fill it in order */
    if (pb_xfer_rx_add(&s->rx, c, &complete) != FL_OK) {
        slot_fail(p, s);
        return FL_OK;
    }
    s->stamp = ++p->model.stamp;
    if (complete)
        slot_finish(p, s);
    return FL_OK;
}

/* The transfer of device d is complete: what is known of its content.
 * FL_OK also when it could not be checked (counted model_unverified). */
static enum fl_err check_announced(struct proc *p, const struct dev_rx *x)
{
    if (x->bad)
        return FL_ERR_CHECKSUM;
    const int i = seen_find(&p->model, (enum model_kind)x->kind, x->base,
                            x->version);
    if (i >= 0) {
        const struct seen *e = &p->model.seen[i];
        if (e->checksum != x->checksum || e->len != x->bytes)
            return FL_ERR_CHECKSUM;   /* same version, other content */
        CNT(p, MODEL_CACHED)++;
        return FL_OK;
    }
    const struct vslot *s = slot_find(p, x);
    if (s != NULL && s->decoded && s->result != FL_OK)
        return s->result;
    CNT(p, MODEL_UNVERIFIED)++;
    return FL_OK;
}

/* The update setting a Task asks for; FL_ERR_UNSUPPORTED/INVALID_ARG when
 * the worker would refuse it. */
static enum fl_err task_setting(const struct proc *p,
                                const struct pb_compress_cfg *c,
                                double *density, enum cmp_value_coding *v,
                                enum cmp_codec *codec, int *level)
{
    *density = c->density != 0.0f ? (double)c->density : p->cfg->density;
    *v = c->values != 0 ? (enum cmp_value_coding)c->values : p->cfg->values;
    *codec = c->codec != 0 ? (enum cmp_codec)c->codec : p->cfg->codec;
    *level = c->level != 0 ? c->level : p->cfg->level;
    if (!(*density > 0.0 && *density <= 1.0))
        return FL_ERR_INVALID_ARG;
    if (*v < CMP_VALUE_FP32 || *v > CMP_VALUE_INT8 ||
        *codec < CMP_CODEC_NONE || *codec > CMP_CODEC_ZSTD)
        return FL_ERR_UNSUPPORTED;
    if (*codec != CMP_CODEC_ZSTD)
        *level = 0;
    else
        *level = FL_MAX(CMP_ZSTD_LEVEL_MIN, FL_MIN(*level,
                                                   CMP_ZSTD_LEVEL_MAX));
    return FL_OK;
}

/* ---- message handlers */

static void note_join(struct proc *p, struct dev *d, uint64_t now)
{
    const uint64_t ns = now - d->open_ns;
    CNT(p, JOIN_NS) += ns;
    CNT(p, JOINS)++;
    p->c->join_max_ns = FL_MAX(p->c->join_max_ns, ns);
}

/* The chunk geometry both directions use from now on (none: every payload
 * inline). A geometry outside the protocol's bounds is an error. */
static void welcome_geometry(struct proc *p, const struct dev *d,
                             const struct pb_welcome *w)
{
    if (w->chunk_bytes == 0 && w->chunk_window == 0) {
        p->chunk_bytes = 0;
        p->chunk_window = 0;
        return;
    }
    if (!pb_xfer_geometry_ok(w->chunk_bytes, w->chunk_window)) {
        CNT(p, GEOMETRY_ERRORS)++;
        if (log_detail(p))
            fl_log(FL_LOG_ERR, "device %u: welcome announces chunks of %u "
                   "bytes, window %u: outside [%u, %u] x [1, %u]",
                   d->gindex, w->chunk_bytes, w->chunk_window,
                   PB_XFER_MIN_CHUNK, PB_XFER_MAX_CHUNK, PB_XFER_MAX_WINDOW);
        p->chunk_bytes = 0;
        p->chunk_window = 0;
        return;
    }
    p->chunk_bytes = w->chunk_bytes;
    p->chunk_window = w->chunk_window;
}

static void on_welcome(struct proc *p, struct dev *d,
                       const struct pb_welcome *w, uint64_t now)
{
    CNT(p, WELCOMES)++;
    if (p->dim == 0) {
        p->dim = w->dimension;
        p->c->dimension = w->dimension;
        p->model.buf = fl_calloc((size_t)p->dim, sizeof(float));
        if (p->model.buf == NULL) {
            fl_log(FL_LOG_ERR, "cannot allocate a model of %llu floats",
                   (unsigned long long)p->dim);
            p->c->setup_failed = 1;
            stop_flag = SIGTERM;
            return;
        }
    } else if (w->dimension != p->dim) {
        CNT(p, DIM_MISMATCH)++;
        if (log_detail(p))
            fl_log(FL_LOG_ERR, "device %u: welcome says dimension %llu, "
                   "expected %llu", d->gindex,
                   (unsigned long long)w->dimension,
                   (unsigned long long)p->dim);
        return;
    }
    const bool first = !d->ever_joined || d->returning;
    if (d->returning) {
        d->returning = false;
        p->nreturning--;
    }
    if (d->welcomed)
        CNT(p, WELCOME_DUPS)++;
    else if (first)
        note_join(p, d, now);
    d->welcomed = true;
    d->hello_gen++;           /* no more Hello retries */
    d->epoch = w->epoch;
    welcome_geometry(p, d, w);
    if (!d->ever_joined) {
        d->ever_joined = true;
        live_inc(&p->st->live.joined);
    }
}

static void vanish(struct proc *p, struct dev *d, uint64_t round,
                   uint32_t timeout_ms, uint64_t now)
{
    const int64_t ms = p->cfg->vanish_ms >= 0 ? p->cfg->vanish_ms
                                              : (int64_t)timeout_ms + 250;
    p->st->rounds[round_slot(round)].vanished++;
    CNT(p, VANISHED)++;
    close_socket(p, d, 0);
    d->state = DS_VANISHED;
    d->welcomed = false;
    d->think_pending = false;
    if (p->cfg->rounds_expected > 0 && round >= p->cfg->rounds_expected) {
        d->state = DS_CLOSED;
        dev_finish(p, d);
        return;
    }
    if (!d->returning) {
        d->returning = true;
        p->nreturning++;
    }
    if (timer_add(p, now + (uint64_t)ms * NS_PER_MS, (uint32_t)(d - p->dev),
                  T_RECONNECT, 0) != FL_OK)
        CNT(p, SEND_ERRORS)++;
}

static void answer_task(struct proc *p, struct dev *d, uint64_t round,
                        uint64_t now)
{
    const struct bench_swarm_config *cfg = p->cfg;
    uint64_t delay_ms = cfg->think_ms;
    if (d->answered_round == round)
        d->reanswered_round = round;   /* after a Hello again */
    d->answered_round = round;
    d->rejoined = false;
    if (d->rejected_round == round) {
        p->st->rounds[round_slot(round)].recovered++;
        d->rejected_round = 0;
    }
    if (cfg->jitter_ms > 0)
        delay_ms += fl_rng_below(&p->rng, (uint64_t)cfg->jitter_ms + 1);
    if (delay_ms == 0) {
        dev_send(p, d, SEND_UPDATE, round);
        return;
    }
    d->think_pending = true;
    d->think_round = round;
    if (timer_add(p, now + delay_ms * NS_PER_MS, (uint32_t)(d - p->dev),
                  T_SEND, round) != FL_OK)
        CNT(p, SEND_ERRORS)++;
}

static bool task_usable(struct proc *p, struct dev *d, const struct pb_task *t)
{
    double density;
    enum cmp_value_coding values;
    enum cmp_codec codec;
    int level;
    enum fl_err rc = check_model(p, d, t);
    if (rc != FL_OK) {
        CNT(p, MODEL_ERRORS)++;
        if (log_detail(p))
            fl_log(FL_LOG_ERR, "device %u: the model of the task for round "
                   "%llu (version %llu%s) is not usable: %s", d->gindex,
                   (unsigned long long)t->round,
                   (unsigned long long)t->model_version,
                   t->has_model_delta ? ", sparse delta"
                   : t->model.has_base_version ? ", delta" : "",
                   fl_strerror(rc));
        return false;
    }
    rc = task_setting(p, &t->compress, &density, &values, &codec, &level);
    if (rc == FL_OK)
        rc = upd_ensure(p, p->dim, density, values, codec, level);
    if (rc != FL_OK) {
        CNT(p, SETTING_ERRORS)++;
        if (log_detail(p))
            fl_log(FL_LOG_ERR, "device %u: cannot build updates for the "
                   "task of round %llu: %s", d->gindex,
                   (unsigned long long)t->round, fl_strerror(rc));
        return false;
    }
    return true;
}

/* A second Task for a round the device already answered, in the same
 * attempt: the coordinator has not yet told the fate of that answer (a new
 * attempt of the round says NOT_USED for it). It comes from a Hello retry
 * that crossed the Welcome; answering it would be a duplicate. */
static bool task_is_duplicate(const struct dev *d, const struct pb_task *t)
{
    return d->answered_round != 0 && d->answered_round == t->round &&
           t->last_update_round != t->round && !d->rejoined;
}

/* The device holds the Task's model: vanish (--vanish) or answer. */
static void task_accept(struct proc *p, struct dev *d, uint64_t round,
                        uint64_t version, uint32_t timeout_ms, uint64_t now)
{
    d->has_model = true;
    d->held_version = version;
    if (p->cfg->vanish > 0 && fl_rng_uniform(&p->rng) < p->cfg->vanish) {
        vanish(p, d, round, timeout_ms, now);
        return;
    }
    answer_task(p, d, round, now);
}

/* ---- downlink transfers (docs/protocol.md "Transfers") */

/* A newer Task ends the transfer in progress; the Task it carried counts
 * as replaced, not unanswered. */
static void rx_replace(struct proc *p, struct dev *d)
{
    if (d->rx.transfer == 0)
        return;
    if (d->rx.mode == RX_ANSWER)
        p->st->rounds[round_slot(d->rx.round)].replaced++;
    CNT(p, XFERS_REPLACED)++;
    memset(&d->rx, 0, sizeof(d->rx));
}

/* Expect the chunks of the model Task t announces. */
static void rx_begin(struct proc *p, struct dev *d, const struct pb_task *t,
                     enum rx_mode mode)
{
    enum model_kind kind;
    uint64_t base;
    const struct pb_tensor *m = task_model(t, &kind, &base);
    const uint32_t total = pb_xfer_chunks(m->payload_bytes, p->chunk_bytes);
    rx_replace(p, d);
    if (total == 0 || m->payload_bytes > max_payload(p)) {
        CNT(p, XFER_ERRORS)++;   /* its chunks will be stale */
        return;
    }
    d->rx = (struct dev_rx){
        .transfer = m->payload_transfer, .bytes = m->payload_bytes,
        .round = t->round, .version = t->model_version, .base = base,
        .total = total, .chunk_bytes = p->chunk_bytes,
        .timeout_ms = t->timeout_ms, .checksum = m->checksum,
        .kind = (uint8_t)kind, .mode = (uint8_t)mode};
    CNT(p, XFERS_DOWN)++;
    if (mode == RX_ANSWER)
        slot_prepare(p, &d->rx, m);
}

/* A chunk that is not the next one of the transfer: the transfer ends
 * (FL_ERR_TRANSFER), the coordinator is told to stop (Credit cancel). */
static void rx_fail(struct proc *p, struct dev *d, const struct pb_chunk *c)
{
    const struct qitem it = {.kind = SEND_CREDIT, .round = d->rx.transfer,
                             .received = d->rx.received, .cancel = true};
    CNT(p, XFER_ERRORS)++;
    if (log_detail(p))
        fl_log(FL_LOG_ERR, "device %u: chunk %u/%u of %zu bytes of transfer "
               "%llu is not the next one (%u/%u of %llu bytes): %s",
               d->gindex, c->seq, c->total, c->len,
               (unsigned long long)c->transfer, d->rx.received, d->rx.total,
               (unsigned long long)d->rx.bytes,
               fl_strerror(FL_ERR_TRANSFER));
    if (d->rx.mode == RX_ANSWER)
        p->st->rounds[round_slot(d->rx.round)].bad_tasks++;
    memset(&d->rx, 0, sizeof(d->rx));
    dev_send_item(p, d, &it);
}

static void rx_complete(struct proc *p, struct dev *d, uint64_t now)
{
    const struct dev_rx x = d->rx;
    memset(&d->rx, 0, sizeof(d->rx));
    CNT(p, XFERS_DOWN_DONE)++;
    if (x.mode != RX_ANSWER) {
        CNT(p, XFERS_DISCARDED)++;
        return;
    }
    const enum fl_err rc = check_announced(p, &x);
    if (rc != FL_OK) {
        CNT(p, MODEL_ERRORS)++;
        p->st->rounds[round_slot(x.round)].bad_tasks++;
        if (log_detail(p))
            fl_log(FL_LOG_ERR, "device %u: the chunked model of the task for "
                   "round %llu (version %llu) is not usable: %s", d->gindex,
                   (unsigned long long)x.round,
                   (unsigned long long)x.version, fl_strerror(rc));
        return;
    }
    task_accept(p, d, x.round, x.version, x.timeout_ms, now);
}

/* Chunks are checked without being kept: geometry against the
 * announcement (pb_xfer arithmetic), bytes against the process's slot;
 * each one is credited. */
static void on_chunk(struct proc *p, struct dev *d, const struct pb_chunk *c,
                     uint64_t now)
{
    struct dev_rx *x = &d->rx;
    CNT(p, CHUNKS_DOWN)++;
    CNT(p, CHUNK_BYTES_DOWN) += c->len;
    if (x->transfer == 0 || c->transfer != x->transfer) {
        CNT(p, STALE_CHUNKS)++;   /* of a transfer a Task replaced */
        return;
    }
    if (c->seq != x->received || c->total != x->total ||
        c->len != pb_xfer_chunk_len(x->bytes, x->chunk_bytes, c->seq)) {
        rx_fail(p, d, c);
        return;
    }
    x->received++;
    if (x->mode == RX_ANSWER && !x->bad &&
        slot_take_chunk(p, x, c) != FL_OK)
        x->bad = true;
    dev_send_credit(p, d, x->transfer, x->received);
    if (x->received == x->total)
        rx_complete(p, d, now);
}

/* ---- uplink transfers: the coordinator's credits */

static void on_credit(struct proc *p, struct dev *d, const struct pb_credit *c)
{
    struct dev_tx *x = &d->tx;
    CNT(p, CREDITS_DOWN)++;
    if (x->transfer == 0 || c->transfer != x->transfer) {
        CNT(p, STALE_CREDITS)++;
        return;
    }
    if (c->cancel) {
        CNT(p, UPLOADS_CANCELLED)++;
        tx_end(p, d);
        return;
    }
    if (c->received > x->next) {
        CNT(p, XFER_ERRORS)++;
        if (log_detail(p))
            fl_log(FL_LOG_ERR, "device %u: credit for %u chunks of upload "
                   "%llu, but %u were sent", d->gindex, c->received,
                   (unsigned long long)c->transfer, x->next);
        tx_end(p, d);
        return;
    }
    if (!x->granted) {
        x->granted = true;
        CNT(p, UPLOADS_GRANTED)++;
    }
    if (c->received == x->total) {
        CNT(p, UPLOADS_DONE)++;
        tx_end(p, d);
        return;
    }
    x->limit = FL_MAX(x->limit, c->received + x->window);
    tx_pump(p, d);
}

static void on_task(struct proc *p, struct dev *d, const struct pb_task *t,
                    uint64_t now)
{
    struct swarm_round *r = &p->st->rounds[round_slot(t->round)];
    const bool chunked = task_chunked(t);
    if (d->welcomed && task_is_duplicate(d, t)) {
        CNT(p, DUP_TASKS)++;
        if (chunked)
            rx_begin(p, d, t, RX_DISCARD);
        return;
    }
    if (d->tx.transfer != 0) {
        /* the upload's round closed without it, or the coordinator asks
         * again after a Hello: a new Task ends it */
        CNT(p, UPLOADS_DROPPED)++;
        memset(&d->tx, 0, sizeof(d->tx));
    }
    r->tasks++;
    live_inc(&p->st->live.tasks);
    if (!d->welcomed || t->epoch != d->epoch) {
        /* a Task of another coordinator run: say Hello again */
        CNT(p, EPOCH_CHANGES)++;
        r->bad_tasks++;
        if (chunked)
            rx_begin(p, d, t, RX_DISCARD);
        d->welcomed = false;
        d->hello_backoff_ms = p->cfg->hello_retry_ms;
        send_hello(p, d, now);
        return;
    }
    if (!task_usable(p, d, t)) {
        r->bad_tasks++;
        if (chunked)
            rx_begin(p, d, t, RX_DISCARD);
        return;
    }
    if (chunked) {
        rx_begin(p, d, t, RX_ANSWER);   /* answered when complete */
        return;
    }
    rx_replace(p, d);
    task_accept(p, d, t->round, t->model_version, t->timeout_ms, now);
}

/* Say Hello on a connection the coordinator does not know yet; the Task
 * it sends again for the open round is answered even if this device
 * answered that round already (the answer may have been lost). */
static void hello_again(struct proc *p, struct dev *d, uint64_t now)
{
    d->welcomed = false;
    d->rejoined = true;
    d->hello_backoff_ms = p->cfg->hello_retry_ms;
    send_hello(p, d, now);
}

/* The coordinator does not know this connection (it dropped the old one,
 * e.g. on a heartbeat timeout, and libzmq reconnected): say Hello again, as
 * a worker does. A refused answer is given again when the coordinator
 * re-sends the Task of the open round. */
static void rejoin(struct proc *p, struct dev *d, const struct pb_reject *j,
                   uint64_t now)
{
    CNT(p, REJOINS)++;
    if (j->has_round && j->round == d->answered_round) {
        d->rejected_round = j->round;
        d->answered_round = 0;
    }
    if (!d->welcomed)
        return;   /* a Hello is already on its way */
    hello_again(p, d, now);
}

static void on_reject(struct proc *p, struct dev *d, const struct pb_reject *j,
                      uint64_t now)
{
    const size_t slot = j->has_round ? round_slot(j->round) : 0;
    p->st->rounds[slot].rejects[reject_slot(j->code)]++;
    live_inc(&p->st->live.rejects);
    if (log_detail(p))
        fl_log(FL_LOG_WARN, "device %u: reject %u (%s)%s%llu", d->gindex,
               j->code, fl_err_name((enum fl_err)j->code),
               j->has_round ? " for round " : "",
               j->has_round ? (unsigned long long)j->round : 0ULL);
    if (j->code == FL_ERR_UNKNOWN_DEVICE) {
        rejoin(p, d, j, now);
        return;
    }
    if (j->code == FL_ERR_DUPLICATE && j->has_round &&
        j->round == d->reanswered_round) {
        /* the first answer had arrived after all */
        p->st->rounds[slot].recovered++;
        d->reanswered_round = 0;
        return;
    }
    if (!d->welcomed && !d->ever_joined &&
        (j->code == FL_ERR_VERSION || j->code == FL_ERR_INVALID_ARG ||
         j->code == FL_ERR_SAMPLES || j->code == FL_ERR_FULL)) {
        /* refused at Hello, as a worker would stop */
        CNT(p, REFUSED)++;
        close_socket(p, d, 0);
        d->state = DS_CLOSED;
        dev_finish(p, d);
    }
}

static void on_bye(struct proc *p, struct dev *d)
{
    p->saw_bye = true;
    live_inc(&p->st->live.byes);
    close_socket(p, d, 0);
    d->state = DS_CLOSED;
    d->think_pending = false;
    dev_finish(p, d);
}

static void handle_msg(struct proc *p, struct dev *d, const uint8_t *data,
                       size_t len, uint64_t now)
{
    struct pb_msg *msg = NULL;
    const struct pb_envelope *env = NULL;
    char why[160] = "";
    const enum fl_err rc = pb_unpack(data, len, &p->lim, &msg, &env, NULL,
                                     why, sizeof(why));
    if (rc != FL_OK) {
        CNT(p, UNPACK_ERRORS)++;
        if (log_detail(p))
            fl_log(FL_LOG_ERR, "device %u: cannot parse a message of %zu "
                   "bytes: %s%s%s", d->gindex, len, fl_strerror(rc),
                   why[0] != '\0' ? ": " : "", why);
        return;
    }
    switch (env->body) {
    case PB_BODY_WELCOME:
        on_welcome(p, d, &env->welcome, now);
        break;
    case PB_BODY_TASK:
        on_task(p, d, &env->task, now);
        break;
    case PB_BODY_REJECT:
        on_reject(p, d, &env->reject, now);
        break;
    case PB_BODY_BYE:
        on_bye(p, d);
        break;
    case PB_BODY_CHUNK:
        on_chunk(p, d, &env->chunk, now);
        break;
    case PB_BODY_CREDIT:
        on_credit(p, d, &env->credit);
        break;
    case PB_BODY_NONE:
    case PB_BODY_HELLO:
    case PB_BODY_UPDATE:
        CNT(p, UNEXPECTED)++;
        break;
    }
    pb_msg_destroy(&msg);
}

/* Receive one message from d. 1 handled, 0 none waiting, -1 error. */
static int recv_one(struct proc *p, struct dev *d, uint64_t now)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, d->sock, ZMQ_DONTWAIT) < 0) {
        const int err = errno;
        zmq_msg_close(&m);
        return err == EAGAIN || err == EINTR ? 0 : -1;
    }
    const size_t len = zmq_msg_size(&m);
    CNT(p, MSGS_DOWN)++;
    CNT(p, BYTES_DOWN) += len;
    if (zmq_msg_more(&m)) {
        CNT(p, UNEXPECTED)++;   /* one frame per message: drop the rest */
        while (zmq_msg_more(&m)) {
            zmq_msg_close(&m);
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, d->sock, 0) < 0)
                break;
        }
        zmq_msg_close(&m);
        return 1;
    }
    handle_msg(p, d, zmq_msg_data(&m), len, now);
    zmq_msg_close(&m);
    return 1;
}

/* Drain a socket: read ZMQ_EVENTS (which processes the socket's
 * commands), flush queued sends on POLLOUT, receive while POLLIN. */
static void drain(struct proc *p, struct dev *d, uint64_t now)
{
    for (int i = 0; i < DRAIN_BATCH; i++) {
        int ev = 0;
        size_t sz = sizeof(ev);
        if (d->sock == NULL)
            return;
        if (zmq_getsockopt(d->sock, ZMQ_EVENTS, &ev, &sz) != 0) {
            if (errno == EINTR)
                continue;
            CNT(p, SEND_ERRORS)++;
            return;
        }
        if ((ev & ZMQ_POLLOUT) != 0 && (d->nq > 0 || tx_wants_send(d)))
            flush_queue(p, d);
        if ((ev & ZMQ_POLLIN) == 0 || recv_one(p, d, now) <= 0)
            return;
    }
    mark_dirty(p, d);   /* more to read: come back after the others */
}

/* One monitor event: the first frame holds the event number (16 bits)
 * and a 32-bit value, the second the endpoint. 0 when none waits. */
static uint16_t recv_event(void *mon)
{
    zmq_msg_t m;
    uint16_t event = 0;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return 0;
    }
    if (zmq_msg_size(&m) >= sizeof(event))
        memcpy(&event, zmq_msg_data(&m), sizeof(event));
    while (zmq_msg_more(&m)) {
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, mon, 0) < 0)
            break;
    }
    zmq_msg_close(&m);
    return event;
}

/* After a drop, libzmq reconnects on its own; the coordinator sees a new
 * routing id it does not know, and what was queued on the old connection
 * is gone: say Hello again, as a worker does. */
static void on_conn_event(struct proc *p, struct dev *d, uint16_t event,
                          uint64_t now)
{
    if (event == ZMQ_EVENT_DISCONNECTED) {
        CNT(p, DISCONNECTS)++;
        d->lost_conn = true;
        return;
    }
    if (event != ZMQ_EVENT_HANDSHAKE_SUCCEEDED || !d->lost_conn)
        return;
    d->lost_conn = false;
    CNT(p, RECONNECTED)++;
    if (d->state == DS_OPEN && !d->finished && d->ever_joined)
        hello_again(p, d, now);
}

static void drain_monitor(struct proc *p, struct dev *d, uint64_t now)
{
    for (int i = 0; i < DRAIN_BATCH && d->mon != NULL; i++) {
        int ev = 0;
        size_t sz = sizeof(ev);
        if (zmq_getsockopt(d->mon, ZMQ_EVENTS, &ev, &sz) != 0 ||
            (ev & ZMQ_POLLIN) == 0)
            return;
        const uint16_t event = recv_event(d->mon);
        if (event == 0)
            return;
        on_conn_event(p, d, event, now);
    }
}

static void drain_dirty(struct proc *p, uint64_t now)
{
    const uint32_t n = p->ndirty;
    for (uint32_t i = 0; i < n; i++) {
        struct dev *d = &p->dev[p->dirty[i]];
        d->dirty = false;
        drain(p, d, now);
    }
    /* entries added while draining move to the front */
    memmove(p->dirty, p->dirty + n, (size_t)(p->ndirty - n) *
            sizeof(*p->dirty));
    p->ndirty -= n;
}

static void fire_timer(struct proc *p, const struct timer *t, uint64_t now)
{
    struct dev *d = &p->dev[t->dev];
    switch ((enum timer_kind)t->kind) {
    case T_HELLO:
        if (d->state != DS_OPEN || d->welcomed || t->arg != d->hello_gen)
            return;
        drain(p, d, now);   /* a Welcome may be waiting unread */
        if (d->state == DS_OPEN && !d->welcomed && t->arg == d->hello_gen)
            send_hello(p, d, now);
        return;
    case T_SEND:
        if (d->state != DS_OPEN || !d->think_pending ||
            d->think_round != t->arg)
            return;
        d->think_pending = false;
        dev_send(p, d, SEND_UPDATE, t->arg);
        return;
    case T_RECONNECT:
        if (d->state != DS_VANISHED)
            return;
        CNT(p, RECONNECTS)++;
        if (open_device(p, d, now) != FL_OK)
            CNT(p, SEND_ERRORS)++;
        return;
    }
}

static void run_timers(struct proc *p, uint64_t now)
{
    while (p->nheap > 0 && p->heap[0].due <= now) {
        const struct timer t = timer_pop(p);
        fire_timer(p, &t, now);
    }
}

static int wait_ms(const struct proc *p, uint64_t now)
{
    uint64_t ms = 100;
    if (p->ndirty > 0 || p->ncreated < p->ndev)
        return p->ndirty > 0 ? 0 : 1;
    if (p->nheap > 0) {
        const uint64_t due = p->heap[0].due;
        ms = due <= now ? 0 : FL_MIN(ms, (due - now + NS_PER_MS - 1) /
                                             NS_PER_MS);
    }
    return (int)ms;
}

/* Drain every open socket of an unfinished device: a safety net behind
 * the edge-triggered descriptors, run once a second. What it finds is
 * counted (sweep_found): a non-zero count means a wake-up was missed. */
static void sweep(struct proc *p, uint64_t now)
{
    const uint64_t before = CNT(p, MSGS_DOWN);
    for (uint32_t i = 0; i < p->ncreated; i++) {
        struct dev *d = &p->dev[i];
        if (d->sock != NULL && !d->finished) {
            drain_monitor(p, d, now);
            drain(p, d, now);
        }
    }
    CNT(p, SWEEP_FOUND) += CNT(p, MSGS_DOWN) - before;
}

/* Devices that vanished and are not back when everything else has ended
 * (Bye received, or --rounds-expected reached and nothing came for them
 * within a grace period) will never be welcomed: the coordinator ended
 * while they were away. They finish as "stranded" instead of holding the
 * swarm until --max-seconds. */
static void check_stranded(struct proc *p, uint64_t now)
{
    if (p->nreturning == 0 || p->nfinished + p->nreturning < p->ndev) {
        p->stranded_since = 0;
        return;
    }
    if (p->stranded_since == 0)
        p->stranded_since = now;
    if (!p->saw_bye && now - p->stranded_since < STRANDED_GRACE_NS)
        return;
    for (uint32_t i = 0; i < p->ncreated; i++) {
        struct dev *d = &p->dev[i];
        if (!d->returning || d->finished)
            continue;
        d->returning = false;
        p->nreturning--;
        close_socket(p, d, 0);
        d->state = DS_CLOSED;
        CNT(p, STRANDED)++;
        dev_finish(p, d);
    }
}

static enum fl_err proc_loop(struct proc *p)
{
    uint64_t next_sweep = fl_now_ns() + NS_PER_S;
    struct epoll_event evs[EPOLL_BATCH];
    while (p->nfinished < p->ndev && stop_flag == 0) {
        uint64_t now = fl_now_ns();
        if (now >= p->deadline_ns) {
            p->c->timed_out = 1;
            break;
        }
        if (p->ncreated < p->ndev)
            FL_FORWARD_ERR(connect_more(p, now));
        const int n = epoll_wait(p->ep, evs, EPOLL_BATCH, wait_ms(p, now));
        if (n < 0 && errno != EINTR) {
            fl_log(FL_LOG_ERR, "epoll_wait failed: %s", strerror(errno));
            return FL_ERR_IO;
        }
        now = fl_now_ns();
        for (int i = 0; i < n; i++) {
            const uint32_t u = evs[i].data.u32;
            if ((u & MON_FLAG) != 0)
                drain_monitor(p, &p->dev[u & ~MON_FLAG], now);
            else
                drain(p, &p->dev[u], now);
        }
        drain_dirty(p, now);
        run_timers(p, now);
        if (now >= next_sweep) {
            sweep(p, now);
            next_sweep = now + NS_PER_S;
        }
        check_stranded(p, now);
    }
    if (stop_flag != 0)
        p->c->interrupted = 1;
    return FL_OK;
}

static enum fl_err proc_setup(struct proc *p)
{
    const int per_dev = p->cfg->monitor ? 3 : 1;
    const int max_sockets = (int)(p->ndev * per_dev + p->ndev / 8 + 64);
    p->dev = fl_calloc(p->ndev, sizeof(*p->dev));
    /* a device drained from the dirty list may be marked again while the
     * list's processed part is still in place: two slots per device */
    p->dirty = fl_calloc(2 * (size_t)p->ndev, sizeof(*p->dirty));
    p->cctx = cmp_ctx_new();
    if (p->dev == NULL || p->dirty == NULL || p->cctx == NULL)
        return FL_ERR_NOMEM;
    for (uint32_t i = 0; i < p->ndev; i++)
        p->dev[i].gindex = p->first + i;
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (p->ep < 0) {
        fl_log(FL_LOG_ERR, "epoll_create1 failed: %s", strerror(errno));
        return FL_ERR_IO;
    }
    p->zctx = zmq_ctx_new();
    if (p->zctx == NULL)
        return FL_ERR_ZMQ;
    if (zmq_ctx_set(p->zctx, ZMQ_IO_THREADS, (int)p->cfg->io_threads) != 0)
        return FL_ERR_ZMQ;
    if (max_sockets > zmq_ctx_get(p->zctx, ZMQ_SOCKET_LIMIT) ||
        zmq_ctx_set(p->zctx, ZMQ_MAX_SOCKETS, max_sockets) != 0) {
        fl_log(FL_LOG_ERR, "cannot raise ZMQ_MAX_SOCKETS to %d (limit %d): "
               "%s", max_sockets, zmq_ctx_get(p->zctx, ZMQ_SOCKET_LIMIT),
               zmq_strerror(errno));
        return FL_ERR_ZMQ;
    }
    if (p->cfg->dimension > 0) {
        p->dim = p->cfg->dimension;
        p->c->dimension = p->dim;
        p->model.buf = fl_calloc((size_t)p->dim, sizeof(float));
        if (p->model.buf == NULL)
            return FL_ERR_NOMEM;
        return upd_ensure(p, p->dim, p->cfg->density, p->cfg->values,
                          p->cfg->codec, p->cfg->level);
    }
    return FL_OK;
}

static void proc_release(struct proc *p)
{
    /* Updates still queued in ZeroMQ get CLOSE_LINGER_MS to leave */
    for (uint32_t i = 0; i < p->ncreated; i++)
        close_socket(p, &p->dev[i], CLOSE_LINGER_MS);
    if (p->zctx != NULL) {
        while (zmq_ctx_term(p->zctx) != 0 && errno == EINTR)
            ;
    }
    if (p->ep >= 0)
        close(p->ep);
    upd_set_release(&p->upd);
    cmp_ctx_destroy(&p->cctx);
    for (size_t i = 0; i < VSLOTS; i++)
        slot_release(&p->model.slot[i]);
    fl_free(p->model.buf);
    fl_free(p->heap);
    fl_free(p->sbuf);
    fl_free(p->dirty);
    fl_free(p->dev);
}

static void child_signals(void)
{
    struct sigaction sa;
    sigset_t all;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;   /* no SA_RESTART: epoll_wait returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigemptyset(&all);
    sigaddset(&all, SIGINT);
    sigaddset(&all, SIGTERM);
    sigaddset(&all, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
}

/* The body of one child process; returns its exit code. */
static int proc_main(const struct bench_swarm_config *cfg, uint32_t index,
                     uint32_t first, uint32_t ndev,
                     struct swarm_proc_stats *st, uint64_t deadline_ns)
{
    struct proc p;
    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    p.index = index;
    p.first = first;
    p.ndev = ndev;
    p.st = st;
    p.c = &st->c;
    p.ep = -1;
    p.deadline_ns = deadline_ns;
    p.lim.max_message = MAX_MESSAGE;
    p.lim.max_alloc = 2 * MAX_MESSAGE + (1u << 20);
    fl_rng_seed(&p.rng, cfg->seed ^ ((uint64_t)(index + 1) << 32));
    stop_flag = 0;
    child_signals();
    /* A fixed mmap threshold: model-sized buffers (Tasks, parsed copies)
     * go back to the system when freed instead of staying in the heaps of
     * glibc's arenas, whose dynamic threshold would keep them. */
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    enum fl_err rc = proc_setup(&p);
    if (rc == FL_OK)
        rc = proc_loop(&p);
    if (rc != FL_OK) {
        fl_log(FL_LOG_ERR, "swarm process %u failed: %s", index,
               fl_strerror(rc));
        st->c.setup_failed = 1;
    }
    fl_log(FL_LOG_INFO, "swarm process %u: %u of %u devices finished",
           index, p.nfinished, p.ndev);
    proc_release(&p);
    return rc == FL_OK ? 0 : 2;
}

/* ====================================================================
 * 4. the parent
 * ==================================================================== */

struct child {
    pid_t pid;
    bool done;
    int status;
    struct rusage ru;
};

struct totals {
    struct swarm_counters c;
    struct swarm_round *rounds;   /* BENCH_SWARM_MAX_ROUNDS */
    uint64_t joined, byes, finished, tasks, updates, rejects;
    uint64_t vanished_r, bad_tasks, unanswered, recovered;
    double cpu_s;
    double wall_s;
    uint64_t rss_max_kb;          /* largest peak RSS of one process */
    uint64_t rss_sum_kb;          /* sum of the processes' peaks */
    bool child_failed;
};

static void add_counters(struct swarm_counters *a,
                         const struct swarm_counters *b)
{
    for (size_t i = 0; i < C__N; i++)
        a->n[i] += b->n[i];
    a->dimension = FL_MAX(a->dimension, b->dimension);
    a->k = FL_MAX(a->k, b->k);
    a->join_max_ns = FL_MAX(a->join_max_ns, b->join_max_ns);
    a->timed_out |= b->timed_out;
    a->interrupted |= b->interrupted;
    a->setup_failed |= b->setup_failed;
}

/* Tasks of a round that got their answer: an Update, vanishing on
 * purpose, or a newer Task replacing it while its model was coming. */
static uint64_t round_answered(const struct swarm_round *a)
{
    return (uint64_t)a->updates + a->vanished + a->replaced;
}

static void add_up(struct totals *t, struct swarm_proc_stats *st,
                   uint32_t nproc)
{
    for (uint32_t i = 0; i < nproc; i++) {
        struct swarm_proc_stats *s = &st[i];
        add_counters(&t->c, &s->c);
        t->joined += live_get(&s->live.joined);
        t->byes += live_get(&s->live.byes);
        t->finished += live_get(&s->live.finished);
        t->tasks += live_get(&s->live.tasks);
        t->updates += live_get(&s->live.updates);
        t->rejects += live_get(&s->live.rejects);
        for (size_t r = 0; r < BENCH_SWARM_MAX_ROUNDS; r++) {
            struct swarm_round *a = &t->rounds[r];
            const struct swarm_round *b = &s->rounds[r];
            a->tasks += b->tasks;
            a->updates += b->updates;
            a->vanished += b->vanished;
            a->bad_tasks += b->bad_tasks;
            a->recovered += b->recovered;
            a->replaced += b->replaced;
            for (size_t j = 0; j < REJ_SLOTS; j++)
                a->rejects[j] += b->rejects[j];
        }
    }
    for (size_t r = 0; r < BENCH_SWARM_MAX_ROUNDS; r++) {
        const struct swarm_round *a = &t->rounds[r];
        const uint64_t answered = round_answered(a);
        t->vanished_r += a->vanished;
        t->bad_tasks += a->bad_tasks;
        t->recovered += a->recovered;
        if (a->tasks > answered)
            t->unanswered += a->tasks - answered;
    }
}

static uint64_t round_rejects(const struct swarm_round *r)
{
    uint64_t n = 0;
    for (size_t j = 0; j < REJ_SLOTS; j++)
        n += r->rejects[j];
    return n;
}

static bool round_used(const struct swarm_round *r)
{
    return r->tasks > 0 || r->updates > 0 || r->vanished > 0 ||
           round_rejects(r) > 0;
}

static bool verdict_ok(const struct bench_swarm_config *cfg,
                       const struct totals *t)
{
    return !t->child_failed && t->joined == cfg->devices &&
           t->unanswered == 0 && t->rejects == t->recovered &&
           t->bad_tasks == 0 &&
           t->c.n[C_UNPACK_ERRORS] == 0 && t->c.n[C_DIM_MISMATCH] == 0 &&
           t->c.n[C_GEOMETRY_ERRORS] == 0 && t->c.n[C_XFER_ERRORS] == 0 &&
           !t->c.timed_out && !t->c.interrupted && !t->c.setup_failed;
}

/* The verdict line (no newline). */
static void verdict_text(const struct bench_swarm_config *cfg,
                         const struct totals *t, char *buf, size_t len)
{
    size_t o = 0;
#define ADD(...)                                                               \
    do {                                                                       \
        if (o < len)                                                           \
            o += (size_t)snprintf(buf + o, len - o, __VA_ARGS__);              \
    } while (0)
    if (verdict_ok(cfg, t)) {
        ADD("all %u devices joined; every round got its answers",
            cfg->devices);
        return;
    }
    buf[0] = '\0';
    if (t->joined != cfg->devices)
        ADD("%llu of %u devices joined; ", (unsigned long long)t->joined,
            cfg->devices);
    for (size_t r = 0; r < BENCH_SWARM_MAX_ROUNDS; r++) {
        const struct swarm_round *a = &t->rounds[r];
        const uint64_t answered = round_answered(a);
        if (a->tasks > answered)
            ADD("round %zu: %llu of %u tasks unanswered; ", r,
                (unsigned long long)(a->tasks - answered), a->tasks);
    }
    if (t->rejects > t->recovered)
        ADD("%llu rejects received (%llu of them recovered by saying Hello "
            "again); ", (unsigned long long)t->rejects,
            (unsigned long long)t->recovered);
    if (t->bad_tasks > 0)
        ADD("%llu tasks not usable (model %llu, base %llu, settings %llu, "
            "epoch %llu); ", (unsigned long long)t->bad_tasks,
            (unsigned long long)t->c.n[C_MODEL_ERRORS],
            (unsigned long long)t->c.n[C_BASE_ERRORS],
            (unsigned long long)t->c.n[C_SETTING_ERRORS],
            (unsigned long long)t->c.n[C_EPOCH_CHANGES]);
    if (t->c.n[C_UNPACK_ERRORS] > 0 || t->c.n[C_DIM_MISMATCH] > 0)
        ADD("%llu unparsable messages, %llu welcome dimension mismatches; ",
            (unsigned long long)t->c.n[C_UNPACK_ERRORS],
            (unsigned long long)t->c.n[C_DIM_MISMATCH]);
    if (t->c.n[C_GEOMETRY_ERRORS] > 0 || t->c.n[C_XFER_ERRORS] > 0)
        ADD("%llu bad chunk geometries, %llu transfer errors; ",
            (unsigned long long)t->c.n[C_GEOMETRY_ERRORS],
            (unsigned long long)t->c.n[C_XFER_ERRORS]);
    if (t->c.timed_out)
        ADD("timed out after %g s; ", cfg->max_seconds);
    if (t->c.interrupted)
        ADD("interrupted; ");
    if (t->child_failed || t->c.setup_failed)
        ADD("a swarm process failed; ");
    if (o >= 2 && o < len)
        buf[o - 2] = '\0';
#undef ADD
}

static void print_summary(const struct bench_swarm_config *cfg,
                          uint32_t nproc, const struct totals *t, FILE *out)
{
    const struct swarm_counters *c = &t->c;
    char verdict[2048];
    fprintf(out, "%s: %u devices in %u processes against %s, %.1f s, "
            "swarm cpu %.1f s, peak RSS %.1f MiB (largest process %.1f "
            "MiB)\n", BENCH_SWARM_PROGRAM, cfg->devices, nproc,
            cfg->connect, t->wall_s, t->cpu_s, (double)t->rss_sum_kb / 1024,
            (double)t->rss_max_kb / 1024);
    fprintf(out, "joined %llu/%u (socket to Welcome: mean %.1f ms, max %.1f "
            "ms), byes %llu, hellos %llu, welcomes again %llu, back after "
            "vanishing %llu, stranded %llu, refused %llu\n",
            (unsigned long long)t->joined,
            cfg->devices,
            c->n[C_JOINS] ? (double)c->n[C_JOIN_NS] / 1e6 /
                                (double)c->n[C_JOINS]
                          : 0.0,
            (double)c->join_max_ns / 1e6, (unsigned long long)t->byes,
            (unsigned long long)c->n[C_HELLOS],
            (unsigned long long)c->n[C_WELCOME_DUPS],
            (unsigned long long)c->n[C_RECONNECTS],
            (unsigned long long)c->n[C_STRANDED],
            (unsigned long long)c->n[C_REFUSED]);
    fprintf(out, "connections: %llu dropped, %llu re-established (Hello "
            "again), %llu Hello again after unknown_device; %llu duplicate "
            "tasks ignored\n", (unsigned long long)c->n[C_DISCONNECTS],
            (unsigned long long)c->n[C_RECONNECTED],
            (unsigned long long)c->n[C_REJOINS],
            (unsigned long long)c->n[C_DUP_TASKS]);
    fprintf(out, "%7s %8s %8s %8s %8s %10s %8s %8s %9s\n", "round",
            "tasks", "updates", "vanished", "replaced", "unanswered", "bad",
            "rejects", "recovered");
    for (size_t r = 0; r < BENCH_SWARM_MAX_ROUNDS; r++) {
        const struct swarm_round *a = &t->rounds[r];
        if (!round_used(a))
            continue;
        const uint64_t answered = round_answered(a);
        fprintf(out, "%7zu %8u %8u %8u %8u %10llu %8u %8llu %9u\n", r,
                a->tasks, a->updates, a->vanished, a->replaced,
                (unsigned long long)(a->tasks > answered ? a->tasks - answered
                                                         : 0),
                a->bad_tasks, (unsigned long long)round_rejects(a),
                a->recovered);
    }
    fprintf(out, "model: dimension %llu, k %llu; tasks full %llu, xor "
            "delta %llu, sparse delta %llu; decoded %llu, deltas applied "
            "%llu, matched %llu, unverified %llu, errors %llu, base errors "
            "%llu\n",
            (unsigned long long)c->dimension, (unsigned long long)c->k,
            (unsigned long long)c->n[C_TASKS_FULL],
            (unsigned long long)c->n[C_TASKS_DELTA],
            (unsigned long long)c->n[C_TASKS_SPARSE],
            (unsigned long long)c->n[C_MODEL_DECODES],
            (unsigned long long)c->n[C_DELTA_APPLIES],
            (unsigned long long)c->n[C_MODEL_CACHED],
            (unsigned long long)c->n[C_MODEL_UNVERIFIED],
            (unsigned long long)c->n[C_MODEL_ERRORS],
            (unsigned long long)c->n[C_BASE_ERRORS]);
    fprintf(out, "transfers: down %llu begun, %llu complete, %llu replaced, "
            "%llu aborted, %llu discarded, %llu errors; %llu chunks (%llu "
            "bytes, %llu stale, %llu compared, %llu differed), %llu credits "
            "sent; up %llu announced, %llu granted, %llu done, %llu "
            "cancelled, %llu dropped; %llu chunks (%llu bytes), %llu credits "
            "received (%llu stale)\n",
            (unsigned long long)c->n[C_XFERS_DOWN],
            (unsigned long long)c->n[C_XFERS_DOWN_DONE],
            (unsigned long long)c->n[C_XFERS_REPLACED],
            (unsigned long long)c->n[C_XFERS_ABORTED],
            (unsigned long long)c->n[C_XFERS_DISCARDED],
            (unsigned long long)c->n[C_XFER_ERRORS],
            (unsigned long long)c->n[C_CHUNKS_DOWN],
            (unsigned long long)c->n[C_CHUNK_BYTES_DOWN],
            (unsigned long long)c->n[C_STALE_CHUNKS],
            (unsigned long long)c->n[C_CHUNKS_COMPARED],
            (unsigned long long)c->n[C_CHUNK_MISMATCHES],
            (unsigned long long)c->n[C_CREDITS_UP],
            (unsigned long long)c->n[C_UPLOADS],
            (unsigned long long)c->n[C_UPLOADS_GRANTED],
            (unsigned long long)c->n[C_UPLOADS_DONE],
            (unsigned long long)c->n[C_UPLOADS_CANCELLED],
            (unsigned long long)c->n[C_UPLOADS_DROPPED],
            (unsigned long long)c->n[C_CHUNKS_UP],
            (unsigned long long)c->n[C_CHUNK_BYTES_UP],
            (unsigned long long)c->n[C_CREDITS_DOWN],
            (unsigned long long)c->n[C_STALE_CREDITS]);
    fprintf(out, "traffic: up %llu bytes in %llu messages, down %llu bytes "
            "in %llu messages; packing %.2f us per update; send EAGAIN "
            "%llu, errors %llu\n", (unsigned long long)c->n[C_BYTES_UP],
            (unsigned long long)c->n[C_MSGS_UP],
            (unsigned long long)c->n[C_BYTES_DOWN],
            (unsigned long long)c->n[C_MSGS_DOWN],
            c->n[C_PACKS] ? (double)c->n[C_PACK_NS] / 1e3 / (double)c->n[C_PACKS] : 0.0,
            (unsigned long long)c->n[C_SEND_EAGAIN],
            (unsigned long long)c->n[C_SEND_ERRORS]);
    verdict_text(cfg, t, verdict, sizeof(verdict));
    fprintf(out, "verdict: %s\n", verdict);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        const unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_rejects(FILE *f, const uint32_t *rej)
{
    bool first = true;
    fputc('{', f);
    for (size_t j = 0; j < REJ_SLOTS; j++) {
        if (rej[j] == 0)
            continue;
        fprintf(f, "%s\"%s\":%u", first ? "" : ",",
                j < FL_ERR__MAX ? fl_err_name((enum fl_err)j) : "unknown",
                rej[j]);
        first = false;
    }
    fputc('}', f);
}

static void json_rounds(FILE *f, const struct totals *t)
{
    bool first = true;
    fputs("\"rounds\":[", f);
    for (size_t r = 1; r < BENCH_SWARM_MAX_ROUNDS; r++) {
        const struct swarm_round *a = &t->rounds[r];
        if (!round_used(a))
            continue;
        const uint64_t answered = round_answered(a);
        fprintf(f, "%s\n  {\"round\":%zu,\"tasks\":%u,\"updates\":%u,"
                "\"vanished\":%u,\"unanswered\":%llu,\"bad_tasks\":%u,"
                "\"recovered\":%u,\"replaced\":%u,\"rejects\":",
                first ? "" : ",", r, a->tasks, a->updates, a->vanished,
                (unsigned long long)(a->tasks > answered ? a->tasks - answered
                                                         : 0),
                a->bad_tasks, a->recovered, a->replaced);
        json_rejects(f, a->rejects);
        fputc('}', f);
        first = false;
    }
    fputs("],\n\"rejects_without_round\":", f);
    json_rejects(f, t->rounds[0].rejects);
}

#define JU(name, v) fprintf(f, "\"%s\":%llu,", name, (unsigned long long)(v))

static void json_counters(FILE *f, const struct swarm_counters *c)
{
    for (size_t i = 0; i < C__N; i++) {
        if (i == C_PACK_NS || i == C_PRECOMPUTE_NS || i == C_JOIN_NS)
            continue;
        fprintf(f, "\"%s\":%llu,%s", ctr_names[i],
                (unsigned long long)c->n[i], i % 8 == 7 ? "\n" : "");
    }
    fprintf(f, "\"join_ms_mean\":%.3f,\"join_ms_max\":%.3f,",
            c->n[C_JOINS] ? (double)c->n[C_JOIN_NS] / 1e6 /
                                (double)c->n[C_JOINS]
                          : 0.0,
            (double)c->join_max_ns / 1e6);
    fprintf(f, "\"precompute_ms\":%.1f,\"pack_us_per_update\":%.3f,",
            (double)c->n[C_PRECOMPUTE_NS] / 1e6,
            c->n[C_PACKS] ? (double)c->n[C_PACK_NS] / 1e3 /
                                (double)c->n[C_PACKS]
                          : 0.0);
}

static enum fl_err write_report(const struct bench_swarm_config *cfg,
                                uint32_t nproc, const struct totals *t)
{
    char *buf = NULL;
    size_t len = 0;
    char verdict[2048];
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return FL_ERR_NOMEM;
    verdict_text(cfg, t, verdict, sizeof(verdict));
    fprintf(f, "{\"program\":\"%s\",\"version\":\"%s\",\"connect\":",
            BENCH_SWARM_PROGRAM, BENCH_SWARM_VERSION);
    json_string(f, cfg->connect);
    fprintf(f, ",\"devices\":%u,\"procs\":%u,", cfg->devices, nproc);
    JU("dimension", t->c.dimension);
    JU("k", t->c.k);
    JU("joined", t->joined);
    JU("byes", t->byes);
    JU("finished", t->finished);
    JU("tasks", t->tasks);
    JU("updates", t->updates);
    JU("rejects", t->rejects);
    JU("recovered", t->recovered);
    JU("unanswered", t->unanswered);
    JU("bad_tasks", t->bad_tasks);
    JU("peak_rss_kb_sum", t->rss_sum_kb);
    JU("peak_rss_kb_max", t->rss_max_kb);
    fprintf(f, "\"wall_s\":%.3f,\"cpu_s\":%.3f,\"timed_out\":%s,"
            "\"interrupted\":%s,\n", t->wall_s, t->cpu_s,
            t->c.timed_out ? "true" : "false",
            t->c.interrupted ? "true" : "false");
    json_counters(f, &t->c);
    fputc('\n', f);
    json_rounds(f, t);
    fputs(",\n\"verdict\":", f);
    json_string(f, verdict);
    fprintf(f, ",\"ok\":%s}\n", verdict_ok(cfg, t) ? "true" : "false");
    if (fclose(f) != 0) {
        free(buf);
        return FL_ERR_NOMEM;
    }
    const enum fl_err rc = fl_file_write_atomic(cfg->report, buf, len);
    free(buf);
    return rc;
}

#undef JU

static void raise_nofile(uint64_t *soft, uint64_t *hard)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        *soft = *hard = 1024;
        return;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    *soft = (uint64_t)rl.rlim_cur;
    *hard = (uint64_t)rl.rlim_max;
}

static void progress(const struct bench_swarm_config *cfg,
                     struct swarm_proc_stats *st, uint32_t nproc)
{
    uint64_t j = 0, tk = 0, u = 0, b = 0, rj = 0;
    for (uint32_t i = 0; i < nproc; i++) {
        j += live_get(&st[i].live.joined);
        tk += live_get(&st[i].live.tasks);
        u += live_get(&st[i].live.updates);
        b += live_get(&st[i].live.byes);
        rj += live_get(&st[i].live.rejects);
    }
    fl_log(FL_LOG_INFO, "joined %llu/%u, tasks %llu, updates %llu, rejects "
           "%llu, byes %llu", (unsigned long long)j, cfg->devices,
           (unsigned long long)tk, (unsigned long long)u,
           (unsigned long long)rj, (unsigned long long)b);
}

static void signal_children(struct child *ch, uint32_t n, int sig)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!ch[i].done && ch[i].pid > 0)
            kill(ch[i].pid, sig);
    }
}

static uint32_t reap(struct child *ch, uint32_t n)
{
    uint32_t alive = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (ch[i].done)
            continue;
        const pid_t r = wait4(ch[i].pid, &ch[i].status, WNOHANG, &ch[i].ru);
        if (r == ch[i].pid || (r < 0 && errno == ECHILD))
            ch[i].done = true;
        else
            alive++;
    }
    return alive;
}

/* Wait for the children; forward SIGINT/SIGTERM; after the run's deadline
 * plus a grace period, kill what is left. */
static bool supervise(const struct bench_swarm_config *cfg, struct child *ch,
                      uint32_t n, struct swarm_proc_stats *st,
                      const sigset_t *set, uint64_t deadline_ns)
{
    const uint64_t grace = 30 * NS_PER_S;
    uint64_t next_progress = fl_now_ns() + 5 * NS_PER_S;
    bool interrupted = false, killed = false;
    while (reap(ch, n) > 0) {
        const struct timespec ts = {.tv_sec = 0, .tv_nsec = 250000000};
        const int sig = sigtimedwait(set, NULL, &ts);
        const uint64_t now = fl_now_ns();
        if (sig == SIGINT || sig == SIGTERM) {
            interrupted = true;
            signal_children(ch, n, SIGTERM);
        }
        if (!killed && deadline_ns != UINT64_MAX &&
            now > deadline_ns + grace) {
            fl_log(FL_LOG_ERR, "swarm processes still running %llu s after "
                   "the deadline: killing them",
                   (unsigned long long)(grace / NS_PER_S));
            signal_children(ch, n, SIGKILL);
            killed = true;
        }
        if (now >= next_progress) {
            progress(cfg, st, n);
            next_progress = now + 5 * NS_PER_S;
        }
    }
    return interrupted;
}

static bool children_failed(const struct child *ch, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!WIFEXITED(ch[i].status) || WEXITSTATUS(ch[i].status) != 0)
            return true;
    }
    return false;
}

static double rusage_s(const struct rusage *ru)
{
    return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 +
           (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
}

/* Fork the children; on failure the ones started are stopped. */
static enum fl_err spawn(const struct bench_swarm_config *cfg,
                         struct child *ch, uint32_t nproc,
                         struct swarm_proc_stats *st, uint64_t deadline_ns)
{
    for (uint32_t i = 0; i < nproc; i++) {
        const uint32_t first =
            (uint32_t)((uint64_t)cfg->devices * i / nproc);
        const uint32_t end =
            (uint32_t)((uint64_t)cfg->devices * (i + 1) / nproc);
        fflush(NULL);
        const pid_t pid = fork();
        if (pid < 0) {
            fl_log(FL_LOG_ERR, "cannot fork swarm process %u: %s", i,
                   strerror(errno));
            signal_children(ch, i, SIGTERM);
            return FL_ERR_IO;
        }
        if (pid == 0) {
            /* stdio was flushed: exit() runs LSan in tests, so the
             * parent's table is freed here, not left to look leaked */
            fl_free(ch);
            exit(proc_main(cfg, i, first, end - first, &st[i],
                           deadline_ns));
        }
        ch[i].pid = pid;
    }
    return FL_OK;
}

static int finish(const struct bench_swarm_config *cfg, uint32_t nproc,
                  struct totals *t, FILE *out)
{
    print_summary(cfg, nproc, t, out);
    fflush(out);
    if (cfg->report != NULL) {
        const enum fl_err rc = write_report(cfg, nproc, t);
        if (rc != FL_OK)
            fl_log(FL_LOG_ERR, "cannot write the report '%s': %s",
                   cfg->report, fl_strerror(rc));
    }
    return verdict_ok(cfg, t) ? 0 : 1;
}

int bench_swarm_run(const struct bench_swarm_config *cfg, FILE *out)
{
    uint32_t nproc = 0;
    uint64_t need = 0, soft = 0, hard = 0;
    sigset_t set;
    int code = 2;
    bench_swarm_plan(cfg, &nproc, &need);
    raise_nofile(&soft, &hard);
    if (need > soft) {
        const uint64_t per = (soft > 64 ? soft - 64 : 1) / 2;
        fl_log(FL_LOG_ERR, "cannot play %u devices in %u processes: each "
               "needs about %llu descriptors and the open-file limit is %llu "
               "(hard %llu); use --procs %llu or more",
               cfg->devices, nproc, (unsigned long long)need,
               (unsigned long long)soft, (unsigned long long)hard,
               (unsigned long long)((cfg->devices + per - 1) / per));
        return 2;
    }
    const size_t map_len = nproc * sizeof(struct swarm_proc_stats);
    struct swarm_proc_stats *st = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
                                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct child *ch = fl_calloc(nproc, sizeof(*ch));
    struct totals t;
    memset(&t, 0, sizeof(t));
    if (st == MAP_FAILED || ch == NULL) {
        fl_log(FL_LOG_ERR, "cannot allocate the statistics of %u processes",
               nproc);
        goto out;
    }
    fl_log(FL_LOG_INFO, "%u devices in %u processes, about %llu descriptors "
           "each (limit %llu)", cfg->devices, nproc,
           (unsigned long long)need, (unsigned long long)soft);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    const uint64_t start = fl_now_ns();
    const uint64_t deadline =
        cfg->max_seconds > 0 ? start + (uint64_t)(cfg->max_seconds * 1e9)
                             : UINT64_MAX;
    if (spawn(cfg, ch, nproc, st, deadline) != FL_OK) {
        supervise(cfg, ch, nproc, st, &set, start);
        goto out;
    }
    const bool interrupted = supervise(cfg, ch, nproc, st, &set, deadline);
    t.wall_s = (double)(fl_now_ns() - start) / 1e9;
    /* allocated after the fork: the children never hold it */
    t.rounds = fl_calloc(BENCH_SWARM_MAX_ROUNDS, sizeof(*t.rounds));
    if (t.rounds == NULL) {
        fl_log(FL_LOG_ERR, "cannot allocate the totals of %u processes",
               nproc);
        goto out;
    }
    for (uint32_t i = 0; i < nproc; i++) {
        t.cpu_s += rusage_s(&ch[i].ru);
        t.rss_max_kb = FL_MAX(t.rss_max_kb, (uint64_t)ch[i].ru.ru_maxrss);
        t.rss_sum_kb += (uint64_t)ch[i].ru.ru_maxrss;
    }
    add_up(&t, st, nproc);
    t.child_failed = children_failed(ch, nproc);
    t.c.interrupted |= interrupted;
    code = finish(cfg, nproc, &t, out);
out:
    fl_free(t.rounds);
    fl_free(ch);
    if (st != MAP_FAILED)
        munmap(st, map_len);
    return code;
}
