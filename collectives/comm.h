/* collectives/comm.h — loco's collectives: a communicator over loco's own TCP transport.
 *
 * Shaped like MPI/NCCL (DESIGN.md §6): an opaque communicator, every call returns a loco_status,
 * arguments in the order (comm, sendbuf, recvbuf, count, dtype, op, ...), in place when
 * sendbuf == recvbuf, non-blocking forms that return a request finished by loco_wait/loco_test.
 *
 * How a communicator forms (loco_comm_config.bootstrap):
 *   MPI   under `launch/loco-mpirun`: MPI_Init, one MPI_Allgather of {host, port, capabilities,
 *         run nonce}, MPI_Finalize at once. Each MPI call is guarded by an alarm: a process stuck
 *         inside MPI (a peer died before MPI_Init) prints one line and exits with status 1 — the
 *         only place loco ends a process, because a thread blocked in MPI cannot be recovered.
 *         MPI is never called again, so a dead peer can never hang MPI.
 *   JOIN  without MPI: rank 0 listens on `join` (HOST:PORT), the other ranks dial it and receive
 *         the member table. Rank and world come from the config or LOCO_RANK / LOCO_WORLD.
 *   LOCAL threads of one process (unit tests, the simulator): the ranks meet in a
 *         loco_local_group instead of MPI; everything after that is the same real TCP transport.
 * Then every rank opens one control connection to every other rank (heartbeats, aborts) and
 * `streams` data connections to its ring successor; a collective's chunks are striped over them.
 * One event-loop thread per communicator (epoll) moves all bytes, so compute overlaps
 * communication; the calling thread only submits and waits.
 *
 * Algorithms: ring reduce-scatter + allgather for allreduce (pipelined chunks; each chunk of the
 * result is finalised by exactly one owner and forwarded verbatim, so every member ends with
 * bit-identical bytes), ring allgatherv, pipelined chain broadcast, barrier = empty allgather.
 * Every call synchronises all members, even with zero elements.
 *
 * Failures (the data plane's part of DESIGN.md §6): a peer that dies (socket error), stalls (no
 * heartbeat for peer_timeout_s), or leaves an operation without progress for op_timeout_s makes
 * the running operation return LOCO_ERR_PEER_LOST — never a hang — and the member that noticed
 * tells the others (ABORT frame), so every member still waiting fails too. The caller's inputs
 * are intact: in-place buffers are restored from a copy, out-of-place sendbufs are only read. The
 * epoch is then broken: every later call returns LOCO_ERR_PEER_LOST at once until the control
 * plane re-forms the group. With `confirm` (default) a member reports success only after every
 * member said it holds the result, so success means the operation completed everywhere; a
 * member dying right after confirming can still make others fail that same operation — making
 * every member agree needs the control plane's single verdict (DESIGN.md §6, issue 7).
 * Malformed frames (bad magic, version, nonce, epoch, length, sequence, chunk) drop the peer that
 * sent them with a one-line error naming it; nothing received is trusted.
 *
 * Threading: one thread at a time calls into a communicator (like MPI_THREAD_SERIALIZED).
 */
#ifndef LOCO_COLLECTIVES_COMM_H
#define LOCO_COLLECTIVES_COMM_H

#include "base/status.h"
#include "compress/codec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct loco_comm *loco_comm_t;       /* a communicator (opaque) */
typedef struct loco_request *loco_request_t; /* an operation in flight (opaque) */
typedef struct loco_local_group loco_local_group; /* rendezvous of in-process ranks (opaque) */

/* ---------------------------------------------------------------------------------------------
 * Configuration */

typedef enum loco_bootstrap_kind {
    LOCO_BOOTSTRAP_MPI = 0,   /* mpirun: one MPI_Allgather, then MPI_Finalize */
    LOCO_BOOTSTRAP_JOIN = 1,  /* dial rank 0 at config.join */
    LOCO_BOOTSTRAP_LOCAL = 2, /* threads of this process meeting in config.local */
    LOCO_BOOTSTRAP_ADMIT = 3, /* join a running group: dial config.join (any member or the
                                 coordinator), wait to be admitted at its next sync point
                                 (collectives/membership.h) */
} loco_bootstrap_kind;

/* Where the coordinator runs (DESIGN.md §1, §6; collectives/membership.h). */
typedef enum loco_coord_mode {
    LOCO_COORD_RANK0 = 0,    /* inside the lowest rank's process (default) */
    LOCO_COORD_EXTERNAL = 1, /* a standalone `loco coordinator` at ft.coordinator_addr */
    LOCO_COORD_NONE = 2,     /* no control plane: the bare data plane of one epoch (success only
                                after every member confirmed; no verdicts, no recovery) */
} loco_coord_mode;

/* What happens to a member that is alive but late for an operation. */
typedef enum loco_straggler_policy {
    LOCO_STRAGGLER_EVICT = 0, /* evict it when the operation's deadline passes */
    LOCO_STRAGGLER_WAIT = 1,  /* keep waiting while it heartbeats, up to straggler_wait_s */
} loco_straggler_policy;

/* The control plane's settings (YAML `ft:`). Times are seconds. */
typedef struct loco_ft_config {
    loco_coord_mode coordinator;
    char coordinator_addr[256];   /* EXTERNAL: "HOST:PORT" of `loco coordinator --listen` */
    int coordinator_port;         /* port of this process's coordinator listener (every worker
                                     binds one: any of them may take over); 0 = any free port */
    double op_deadline_s;         /* an operation not finished everywhere this long after its
                                     first member began it is aborted and its stragglers evicted */
    bool adaptive_deadline;       /* deadline = median + k * MAD of recent operation times,
                                     clamped to [deadline_min_s, deadline_max_s] (op_deadline_s
                                     until deadline_window / 2 operations were seen) */
    double deadline_k;
    double deadline_min_s, deadline_max_s;
    int deadline_window;          /* recent operations the adaptive deadline looks at, 4..1024 */
    loco_straggler_policy straggler;
    double straggler_wait_s;      /* WAIT: a live straggler is evicted after this long */
    double join_timeout_s;        /* a joiner waits this long to be admitted */
    double sync_timeout_s;        /* a recovery or sync point gives up after this long */
    int transfer_streams;         /* state transfer: TCP streams per sender (0 = streams) */
    bool parity;                  /* compare state digests at sync points, repair the minority */
    char events_path[256];        /* when this process hosts the coordinator: append its events
                                     (JSON lines: verdicts, epochs, members) here ("" = none,
                                     else env LOCO_COORD_EVENTS) */
} loco_ft_config;

#define LOCO_LINK_MAX_OUTAGES 16

/* A window during which an emulated link carries nothing (seconds since loco_comm_init). */
typedef struct loco_link_outage {
    double start_s;
    double duration_s;
} loco_link_outage;

/* The built-in link emulator, applied by the sender to every byte it sends to one peer (control
 * and data connections share the link). All zero = no emulation (the real network as it is).
 * Draws come from Philox keyed by (link_seed, sender, receiver): runs are reproducible. */
typedef struct loco_link_config {
    double rate_bps;    /* bits per second, shared by all connections to the peer; 0 = unlimited */
    double delay_s;     /* one-way propagation delay */
    double jitter_s;    /* each segment's delay is uniform in [delay - jitter, delay + jitter], >= 0 */
    double loss;        /* per-packet (1448 B) loss probability in [0, 1): a segment with a lost
                           packet arrives one retransmission later (2*delay, at least 1 ms) and
                           its lost packets are sent again (they cost link time) */
    double window_bytes;/* emulated TCP window per connection: at most this many bytes sent and
                           not yet acknowledged (an ack takes delay_s back); 0 = unlimited.
                           This is why one stream cannot fill a long fat pipe and K streams can. */
    int n_outages;
    loco_link_outage outages[LOCO_LINK_MAX_OUTAGES];
} loco_link_config;

/* A per-link override of the default link: applies to traffic from rank `from` to rank `to`
 * (-1 = any). The last matching rule wins. */
typedef struct loco_link_rule {
    int from;
    int to;
    loco_link_config link;
} loco_link_rule;

#define LOCO_COMM_CONFIG_VERSION 2
#define LOCO_RUN_KEY_BYTES 32

/* Everything a communicator needs; start from LOCO_COMM_CONFIG_INIT (src/config.c fills it from
 * the YAML `transport:` section). Times are seconds; sizes are bytes. */
typedef struct loco_comm_config {
    int version;                   /* LOCO_COMM_CONFIG_VERSION */
    loco_bootstrap_kind bootstrap;
    int rank;                      /* JOIN, LOCAL: this rank (JOIN: -1 = env LOCO_RANK) */
    int world;                     /* JOIN, LOCAL: member count (JOIN: -1 = env LOCO_WORLD) */
    char join[256];                /* JOIN: "HOST:PORT" where rank 0 listens */
    char listen_host[64];          /* bind address; "" = auto (127.0.0.1 when every rank is on
                                      this host, else 0.0.0.0) */
    char advertise_host[64];       /* address peers dial; "" = auto */
    int listen_port;               /* 0 = any free port; MPI: base of a range (+ the rank's index
                                      on its host); JOIN rank 0 listens on the join port */
    loco_local_group *local;       /* LOCAL: the group the threads meet in */
    uint64_t run_nonce;            /* 0 = rank 0's (env LOCO_RUN_NONCE, else random) */
    int streams;                   /* data connections per ring neighbour, 1..64 */
    size_t chunk_bytes;            /* pipeline chunk (frame payload), 4 KiB..64 MiB */
    double connect_timeout_s;      /* bootstrap and wiring */
    double heartbeat_s;            /* heartbeat period on control connections */
    double peer_timeout_s;         /* a peer silent this long is lost (stall detection) */
    double op_timeout_s;           /* an operation without progress this long is aborted */
    double mpi_timeout_s;          /* alarm around each MPI call during bootstrap */
    bool result_digest;            /* put an XXH64 of each result in loco_op_info.digest (and,
                                      with confirm, check that every member's digest agrees) */
    bool confirm;                  /* succeed only after every member said it holds the result
                                      (a DONE message per member: one extra one-way latency) */
    loco_link_config link;         /* emulated link for every pair (all zero = none) */
    const loco_link_rule *link_rules; /* optional per-pair overrides (not copied: keep alive
                                         until loco_comm_init returns) */
    int n_link_rules;
    uint64_t link_seed;            /* seed of the emulator's draws */
    /* Authentication: every connection proves knowledge of the run key (HMAC challenge-response,
     * libsodium). The key comes from key_file, else `key` when has_key, else the environment
     * (LOCO_RUN_KEY_FILE, then LOCO_RUN_KEY: a passphrase of at least 16 characters), never the
     * command line. Without any: MPI shares a random key of rank 0's through the bootstrap and
     * LOCAL groups make one; JOIN and ADMIT refuse to start. */
    char key_file[256];
    uint8_t key[LOCO_RUN_KEY_BYTES];
    bool has_key;
    bool integrity;                /* a MAC (Poly1305, per-connection keys) on every frame */
    loco_ft_config ft;
} loco_comm_config;

#define LOCO_COMM_CONFIG_INIT                                                                     \
    {                                                                                             \
        .version = LOCO_COMM_CONFIG_VERSION, .bootstrap = LOCO_BOOTSTRAP_MPI, .rank = -1,         \
        .world = -1, .streams = 4, .chunk_bytes = (size_t)1 << 20, .connect_timeout_s = 30.0,     \
        .heartbeat_s = 0.5, .peer_timeout_s = 10.0, .op_timeout_s = 60.0, .mpi_timeout_s = 60.0,  \
        .confirm = true,                                                                          \
        .link = {.window_bytes = 4194304.0}, .link_seed = 1,                                      \
        .ft = {.coordinator = LOCO_COORD_RANK0, .op_deadline_s = 60.0, .deadline_k = 6.0,        \
               .deadline_min_s = 1.0, .deadline_max_s = 600.0, .deadline_window = 32,             \
               .straggler = LOCO_STRAGGLER_EVICT, .straggler_wait_s = 300.0,                      \
               .join_timeout_s = 600.0, .sync_timeout_s = 600.0, .parity = true}                  \
    }

/* ---------------------------------------------------------------------------------------------
 * Communicator life cycle */

/* Form a communicator as config->bootstrap says, connect to the members and start the event
 * loop. Blocks until every member is connected or connect_timeout_s passes. On failure returns
 * a status with a one-line message in err naming the peer and the cause (unreachable join
 * address, port in use, nonce or protocol version mismatch, invalid config) and *comm = NULL. */
loco_status loco_comm_init(loco_comm_t *comm, const loco_comm_config *config, loco_error *err);

/* Say goodbye to the peers (so they do not mistake this for a death), stop the event loop and
 * free everything. No request may be outstanding. comm may be NULL. */
void loco_comm_free(loco_comm_t comm);

int loco_comm_rank(loco_comm_t comm);
int loco_comm_size(loco_comm_t comm);
/* The membership epoch: 0 at init; the control plane numbers later epochs. */
uint32_t loco_comm_epoch(loco_comm_t comm);
/* The run nonce every member agreed on. */
uint64_t loco_comm_nonce(loco_comm_t comm);
/* True once a member was lost in this epoch (every collective then returns PEER_LOST). */
bool loco_comm_broken(loco_comm_t comm);
/* The message of the last failed operation or loss ("" if none). Valid until the next call. */
const char *loco_comm_error(loco_comm_t comm);

/* In-process rendezvous for LOCO_BOOTSTRAP_LOCAL: create one group for `world` threads, give it
 * to each thread's config, free it after every thread's loco_comm_init returned. */
loco_status loco_local_group_init(loco_local_group **group, int world, loco_error *err);
void loco_local_group_free(loco_local_group *group);

/* ---------------------------------------------------------------------------------------------
 * Collectives */

typedef enum loco_dtype {
    LOCO_DTYPE_F32 = 0,
    LOCO_DTYPE_BF16 = 1, /* reduced in fp32 at every hop, rounded once per hop */
    LOCO_DTYPE_BYTE = 2, /* allgatherv / broadcast only */
} loco_dtype;

typedef enum loco_reduce_op {
    LOCO_REDUCE_SUM = 0,
    LOCO_REDUCE_AVG = 1, /* the owner of each chunk divides by the world size */
} loco_reduce_op;

typedef enum loco_op_kind {
    LOCO_OP_ALLREDUCE = 1,
    LOCO_OP_ALLGATHERV = 2,
    LOCO_OP_BROADCAST = 3,
    LOCO_OP_BARRIER = 4,
} loco_op_kind;

/* What one operation cost and how it ended. */
typedef struct loco_op_info {
    loco_op_kind kind;
    loco_status status;
    uint32_t epoch;
    uint64_t seq;              /* operation sequence number in the epoch (1, 2, ...) */
    int world;
    uint64_t bytes_sent;       /* on the wire for this operation: frame headers + payload */
    uint64_t bytes_received;
    uint64_t payload_sent;     /* payload only (encoded bytes when a codec is used) */
    uint64_t payload_received;
    double duration_s;         /* from the call to completion */
    uint32_t retransmits;      /* TCP retransmissions on the data connections (TCP_INFO) plus
                                  packets the link emulator dropped and resent */
    uint32_t retries;          /* re-runs after recovery (the control plane's; 0 from here) */
    bool has_digest;
    uint64_t digest;           /* XXH64 of the result when config.result_digest */
    int lost_rank;             /* the member blamed for a PEER_LOST, or -1 */
    char error[256];           /* one line when status != LOCO_OK */
} loco_op_info;

/* Running totals over the communicator's life (for metrics.jsonl / run.json). */
typedef struct loco_comm_totals {
    uint64_t ops, ops_failed;
    uint64_t bytes_sent, bytes_received;     /* every byte, heartbeats and handshakes included */
    uint64_t payload_sent, payload_received; /* collective payload only */
    uint64_t retransmits;
    double op_seconds;                       /* sum of operation durations */
} loco_comm_totals;

void loco_comm_get_totals(loco_comm_t comm, loco_comm_totals *totals);

/* Allreduce count elements of sendbuf over all members into recvbuf (in place when equal).
 * dtype F32 or BF16; op SUM or AVG. Every member ends with bit-identical recvbuf. info may be
 * NULL. On failure (LOCO_ERR_PEER_LOST, ...) sendbuf is intact — an in-place buffer is restored —
 * and recvbuf's contents are undefined (except in place). */
loco_status loco_allreduce(loco_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                           loco_dtype dtype, loco_reduce_op op, loco_op_info *info);

/* Compressed allreduce of fp32 values: every hop decodes what it receives into fp32 (via
 * loco_codec_decode_add), accumulates in fp32 and re-encodes (loco_codec_encode); the owner of
 * each chunk replaces its value by decode(encode(x)) and forwards that message verbatim, so every
 * member ends with identical bytes. codec == NULL is the raw fp32 path (= loco_allreduce).
 * ctx gives {seed, step} for the codec's randomness (rank and tensor are set per chunk: sender
 * rank, chunk index); ctx may be NULL (seed 0, step = the operation's sequence number).
 * The codec's per-chunk messages must decode from their own bytes (state == NULL). */
loco_status loco_allreduce_codec(loco_comm_t comm, const float *sendbuf, float *recvbuf,
                                 size_t count, loco_reduce_op op, const loco_codec *codec,
                                 const loco_codec_ctx *ctx, loco_op_info *info);

/* Gather variable-size blocks: member r contributes recvcounts[r] elements (its sendcount must
 * equal recvcounts[rank]) which land at recvbuf + displs[r] elements on every member. dtype sets
 * the element size (BYTE for opaque payloads). recvcounts and displs must be the same on every
 * member (a mismatch is detected and reported). sendbuf may be recvbuf + displs[rank] (in place).
 * Empty blocks are fine. To exchange sizes first, use loco_allgather of a uint64 count. */
loco_status loco_allgatherv(loco_comm_t comm, const void *sendbuf, size_t sendcount,
                            void *recvbuf, const size_t *recvcounts, const size_t *displs,
                            loco_dtype dtype, loco_op_info *info);

/* Equal-size allgather: member r's count elements land at recvbuf + r * count. */
loco_status loco_allgather(loco_comm_t comm, const void *sendbuf, size_t count, void *recvbuf,
                           loco_dtype dtype, loco_op_info *info);

/* Copy root's count elements to buf on every member. The root's buf is only read; another
 * member's buf is written only when the whole broadcast arrived (on failure it is unchanged). */
loco_status loco_broadcast(loco_comm_t comm, void *buf, size_t count, loco_dtype dtype, int root,
                           loco_op_info *info);

/* Return once every member has entered the barrier. */
loco_status loco_barrier(loco_comm_t comm, loco_op_info *info);

/* Non-blocking forms: same arguments, *req receives a request to pass to loco_wait/loco_test.
 * Buffers belong to the operation until it completes. Operations run in the order they were
 * started, and every member must start the same operations in the same order. At most
 * LOCO_MAX_REQUESTS may be outstanding. If starting fails, *req is NULL. */
#define LOCO_MAX_REQUESTS 64
loco_status loco_iallreduce(loco_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                            loco_dtype dtype, loco_reduce_op op, loco_request_t *req);
loco_status loco_iallreduce_codec(loco_comm_t comm, const float *sendbuf, float *recvbuf,
                                  size_t count, loco_reduce_op op, const loco_codec *codec,
                                  const loco_codec_ctx *ctx, loco_request_t *req);
loco_status loco_iallgatherv(loco_comm_t comm, const void *sendbuf, size_t sendcount,
                             void *recvbuf, const size_t *recvcounts, const size_t *displs,
                             loco_dtype dtype, loco_request_t *req);
loco_status loco_ibroadcast(loco_comm_t comm, void *buf, size_t count, loco_dtype dtype, int root,
                            loco_request_t *req);
loco_status loco_ibarrier(loco_comm_t comm, loco_request_t *req);

/* Block until the request completes; return its status, fill info (may be NULL), release the
 * request and set *req = NULL. */
loco_status loco_wait(loco_request_t *req, loco_op_info *info);

/* If the request completed: *done = true and as loco_wait. Otherwise *done = false, LOCO_OK. */
loco_status loco_test(loco_request_t *req, bool *done, loco_op_info *info);

/* ---------------------------------------------------------------------------------------------
 * Units for configuration and command lines */

/* "100mbit", "1gbit", "2.5gbps" (= Gbit/s), "10MB/s", "800kbit", "0" -> bits per second. */
loco_status loco_parse_rate(const char *text, double *bits_per_s, loco_error *err);
/* "40ms", "1.5s", "250us", "2m", "0" -> seconds. */
loco_status loco_parse_duration(const char *text, double *seconds, loco_error *err);
/* "4MiB", "1M", "64KiB", "512", "1GiB", "4MB" -> bytes (K/M/G and KiB/MiB/GiB are powers of 1024;
 * KB/MB/GB powers of 1000). */
loco_status loco_parse_bytes(const char *text, double *bytes, loco_error *err);
/* A link as comma-separated key=value: "rate=1gbit,delay=50ms,jitter=2ms,loss=0.001,
 * window=4MiB,outage=10s+2s" (outage may repeat: start+duration). Keys not given keep their value
 * in *link. Unknown keys are errors naming the allowed ones. */
loco_status loco_parse_link(const char *text, loco_link_config *link, loco_error *err);
/* Check a link: rates, delays, windows >= 0, loss in [0, 1), outages sorted and non-negative. */
loco_status loco_link_config_check(const loco_link_config *link, loco_error *err);
/* True when a link emulates anything (rate, delay, jitter, loss or an outage). */
bool loco_link_active(const loco_link_config *link);

#endif /* LOCO_COLLECTIVES_COMM_H */
