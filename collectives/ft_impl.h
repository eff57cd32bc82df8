/* collectives/ft_impl.h — private to collectives/: the control plane's messages, the worker's
 * side of it, state transfer and the coordinator's internals (tests and fuzz targets may include
 * it).
 *
 * Read the files in this order:
 *   ctlmsg.c      the control messages, encoded and validated as pure functions (fuzzed)
 *   ftclient.c    the worker's link to the coordinator, run by the event-loop thread: BEGIN and
 *                 RESULT of every operation, VERDICTs, heartbeats, the caller's mailbox
 *   failover.c    dialing a coordinator (as a member or a joiner), hosting one, failing over
 *   membership.c  recover and sync points on the caller's thread: requests, plans, re-wiring
 *   xfer.c        state transfer: stripes, the receiver's and the senders' streams
 *   coord.c       the coordinator's event loop: connections, registration, heartbeats, verdicts
 *   coord_plan.c  the coordinator's decisions: deadlines, stragglers, the next epoch, parity
 *
 * Protocol, worker <-> coordinator (one authenticated connection per member, kind COORD):
 *   REGISTER ->, <- WELCOME                         on connect (and after every failover)
 *   BEGIN(e, s) ->, RESULT(e, s, digest) ->         every operation
 *   <- VERDICT(e, s, COMMITTED | ABORTED)           the one verdict, to every member
 *   RECONF(kind, step, state digests) ->            loco_comm_recover / loco_comm_sync_point
 *   <- PLAN(round, epoch, members, transfers)       everyone executes it (wire, move state)
 *   PLAN_DONE(round, status) ->, <- COMMIT(round)   the round is complete everywhere
 *   PING <->                                        heartbeats (the worker's carry its progress)
 * Joiners dial any member (kind JOIN) and are redirected to the coordinator, or dial it.
 */
#ifndef LOCO_COLLECTIVES_FT_IMPL_H
#define LOCO_COLLECTIVES_FT_IMPL_H

#include "collectives/comm_impl.h"
#include "collectives/coordinator.h"
#include "collectives/membership.h"

/* =============================================================================================
 * Messages (ctlmsg.c). Little-endian; every decoder checks lengths and ranges first. */

#define LOCO_STATE_MASK_BYTES (LOCO_STATE_MAX_BUFFERS / 8)
#define LOCO_REDIRECT_BYTES 68 /* char host[64], u16 port, u16 reserved */

typedef enum loco_reg_flags {
    LOCO_REG_JOINER = 1u,    /* wants to be admitted (not a member yet) */
    LOCO_REG_RECONNECT = 2u, /* after a failover */
} loco_reg_flags;

typedef enum loco_verdict_kind {
    LOCO_VERDICT_NONE = 0,
    LOCO_VERDICT_COMMITTED = 1,
    LOCO_VERDICT_ABORTED = 2,
} loco_verdict_kind;

/* REGISTER: who this member is and what it holds (a new coordinator rebuilds from these). */
typedef struct loco_msg_register {
    uint32_t id, flags, epoch;
    uint64_t step;                  /* last sync point's step */
    uint64_t done_seq;              /* last operation of `epoch` with a verdict here */
    uint32_t done_verdict;          /* loco_verdict_kind */
    uint64_t pend_seq, pend_digest; /* operation waiting for its verdict (seq 0 = none) */
    uint32_t coord_id;              /* member that hosted the lost coordinator (LOCO_ID_ANY) */
    loco_membership_counts counts;
    loco_member self;
    int n;                          /* members of `epoch` (0 for a joiner) */
    loco_member *table;             /* (n) malloc'd by decode; loco_msg_register_free */
} loco_msg_register;

/* WELCOME: u32 id, u32 epoch, u32 status (0 member, 1 pending joiner, 2 not a member). */
typedef struct loco_msg_welcome {
    uint32_t id, epoch, status;
} loco_msg_welcome;

/* RESULT / VERDICT (epoch and seq in the header). */
typedef struct loco_msg_outcome {
    int32_t status;  /* RESULT: loco_status of the member's operation; VERDICT: of the abort */
    int32_t blame;   /* rank held responsible, or -1 */
    uint32_t verdict;/* VERDICT: loco_verdict_kind */
    uint64_t digest; /* RESULT: the result digest */
    char reason[LOCO_REASON_MAX + 1];
} loco_msg_outcome;

/* PING from a worker: what its running operation waits for. */
typedef struct loco_msg_progress {
    uint32_t flags;          /* 1: in an operation's data phase, 2: sending is blocked */
    int32_t waiting_on;      /* rank it waits for, or -1 */
    uint32_t idle_ms;        /* since its operation last moved a byte */
} loco_msg_progress;

typedef enum loco_reconf_kind { LOCO_RECONF_RECOVER = 1, LOCO_RECONF_SYNC = 2 } loco_reconf_kind;
#define LOCO_RECONF_LEAVE 1u  /* leave the group here */
#define LOCO_RECONF_JOINER 2u /* not admitted yet: its state is not the group's */
#define LOCO_RECONF_BROKEN 4u /* its epoch is broken here: the group must re-wire */

typedef struct loco_state_desc {
    uint64_t bytes, digest;
    char name[LOCO_STATE_NAME_MAX + 1];
} loco_state_desc;

/* RECONF: a member (or joiner) reached recover / a sync point. */
typedef struct loco_msg_reconf {
    uint32_t kind, flags;
    uint64_t step;
    int nbuf;
    loco_state_desc *bufs; /* (nbuf) malloc'd by decode */
} loco_msg_reconf;

#define LOCO_PLAN_NEW_EPOCH 1u /* members re-wire */
#define LOCO_PLAN_ERROR 2u     /* the round cannot happen (note says why): return an error */

/* PLAN (epoch of the header = the epoch to be in). Members absent from `members` are out. */
typedef struct loco_plan {
    uint32_t epoch, round, kind, flags;
    uint64_t step;
    loco_membership_counts counts;
    int n_joined, n_left, n_removed, n_repaired;
    int n;
    loco_member *members;   /* (n) rank order */
    int nbuf;
    uint64_t *digests;      /* (nbuf) the majority's */
    uint64_t *bytes;        /* (nbuf) */
    int n_send;
    uint32_t *senders;      /* (n_send) member ids holding the majority's state */
    int n_recv;
    uint32_t *receivers;    /* (n_recv) member ids to receive */
    uint8_t *masks;         /* (n_recv * LOCO_STATE_MASK_BYTES) which buffers each receives */
    uint32_t streams;       /* per sender */
    char note[LOCO_REASON_MAX + 1];
} loco_plan;

/* XFER_REQ: u32 round, u32 receiver id, u32 stripe, u32 nstripes. */
#define LOCO_XFER_REQ_BYTES 16

/* Encoders return the payload length (0 when it does not fit cap). Decoders allocate what the
 * struct comment says; free with the matching _free (safe on a zeroed or failed struct). */
size_t loco_msg_register_encode(const loco_msg_register *m, uint8_t *out, size_t cap);
loco_status loco_msg_register_decode(const uint8_t *in, size_t len, loco_msg_register *m,
                                     loco_error *err);
void loco_msg_register_free(loco_msg_register *m);
size_t loco_msg_welcome_encode(const loco_msg_welcome *m, uint8_t *out);
loco_status loco_msg_welcome_decode(const uint8_t *in, size_t len, loco_msg_welcome *m,
                                    loco_error *err);
size_t loco_msg_outcome_encode(const loco_msg_outcome *m, uint8_t *out);
loco_status loco_msg_outcome_decode(const uint8_t *in, size_t len, loco_msg_outcome *m,
                                    loco_error *err);
size_t loco_msg_progress_encode(const loco_msg_progress *m, uint8_t *out);
loco_status loco_msg_progress_decode(const uint8_t *in, size_t len, loco_msg_progress *m,
                                     loco_error *err);
size_t loco_msg_reconf_encode(const loco_msg_reconf *m, uint8_t *out, size_t cap);
loco_status loco_msg_reconf_decode(const uint8_t *in, size_t len, loco_msg_reconf *m,
                                   loco_error *err);
void loco_msg_reconf_free(loco_msg_reconf *m);
size_t loco_plan_encode(const loco_plan *p, uint8_t *out, size_t cap);
loco_status loco_plan_decode(const uint8_t *in, size_t len, uint32_t epoch, loco_plan *p,
                             loco_error *err);
void loco_plan_free(loco_plan *p);
/* PLAN_DONE / COMMIT: u32 round, i32 status, reason text (COMMIT: status 0, no text). */
size_t loco_msg_round_encode(uint32_t round, int32_t status, const char *reason, uint8_t *out);
loco_status loco_msg_round_decode(const uint8_t *in, size_t len, uint32_t *round,
                                  int32_t *status, char reason[LOCO_REASON_MAX + 1],
                                  loco_error *err);
/* JOIN_REQ: u32 wanted id (LOCO_ID_ANY), member record (host "" = as the acceptor sees it). */
size_t loco_join_req_encode(uint32_t wanted, const loco_member *self, uint8_t *out);
loco_status loco_join_req_decode(const uint8_t *in, size_t len, uint32_t *wanted,
                                 loco_member *self, loco_error *err);
void loco_redirect_encode(const char *host, uint16_t port, uint8_t out[LOCO_REDIRECT_BYTES]);
loco_status loco_redirect_decode(const uint8_t *in, size_t len, char host[LOCO_HOST_MAX],
                                 uint16_t *port, loco_error *err);
void loco_xfer_req_encode(uint32_t round, uint32_t receiver, uint32_t stripe, uint32_t nstripes,
                          uint8_t out[LOCO_XFER_REQ_BYTES]);
loco_status loco_xfer_req_decode(const uint8_t *in, size_t len, uint32_t *round,
                                 uint32_t *receiver, uint32_t *stripe, uint32_t *nstripes,
                                 loco_error *err);
/* Test bit b of a state mask. */
static inline bool loco_mask_has(const uint8_t *mask, int b)
{
    return 0 != (mask[b / 8] & (1u << (b % 8)));
}

/* =============================================================================================
 * Worker side (ftclient.c: event-loop thread, except where noted). */

#define LOCO_XFER_MAX_CONNS 256

/* A handshaken state-transfer stream waiting for the sync point to take it. */
typedef struct loco_xfer_conn {
    int fd;
    loco_hs hs;
} loco_xfer_conn;

typedef struct loco_ftc {
    /* the coordinator link (loop thread) */
    loco_chan chan;
    char coord_host[LOCO_HOST_MAX];
    int coord_port;
    uint32_t coord_id;           /* member hosting the coordinator, LOCO_ID_ANY: external */
    uint64_t next_ping_ns;
    bool lost;                   /* the link broke: failover in progress */
    uint32_t failed_hosts[64];   /* members that hosted a coordinator that was lost */
    int n_failed_hosts;
    pthread_t failover_thread;
    bool failover_running;       /* under comm->lock from here: */
    bool failover_ready;         /* the thread finished: found (link below) or not (error) */
    bool failover_found;
    loco_chan failover_chan;     /* the authenticated link it found */
    char failover_host[LOCO_HOST_MAX];
    int failover_port;
    uint32_t failover_id;
    char failover_error[256];
    /* what REGISTER reports after a failover (loop thread) */
    uint64_t done_seq;
    uint32_t done_verdict;
    uint64_t step;
    /* caller <-> loop (under comm->lock) */
    uint8_t *outbox;             /* encoded frames for the coordinator */
    size_t outbox_len, outbox_cap;
    uint8_t *req;                /* the current RECONF payload, re-sent after a failover */
    uint32_t req_len, req_epoch;
    bool req_active;
    uint8_t *plan;               /* the latest PLAN payload */
    uint32_t plan_len, plan_epoch;
    uint64_t plan_gen;           /* incremented per PLAN */
    uint64_t exec_gen;           /* the plan the caller is executing (newer ones supersede) */
    bool evicted;                /* a plan without this member arrived (it did not ask to leave) */
    char evicted_note[LOCO_REASON_MAX + 1];
    char fatal[256];             /* no coordinator could be found: reconfiguration fails */
    uint32_t commit_round;
    uint64_t commit_gen;         /* incremented per COMMIT */
    uint64_t welcome_gen;
    loco_msg_welcome welcome;
    bool leave_requested;        /* loco_comm_request_leave (atomic) */
    loco_xfer_conn xfer[LOCO_XFER_MAX_CONNS];
    int n_xfer;
    bool xfer_open;              /* a sync point expects state streams for xfer_epoch */
    uint32_t xfer_epoch;
    loco_membership_counts counts;
    loco_ft_totals totals;
} loco_ftc;

/* failover.c: reaching a coordinator. Blocking helpers (caller thread at init, failover
 * thread): dial it as member `id` and authenticate; dial `target` as a joiner, following a
 * redirect, and ask to join (out: the link, the id given, the run nonce, where it is). */
loco_status loco_ftc_dial_member(const loco_comm_config *cfg, const uint8_t key[32],
                                 uint64_t nonce, uint32_t id, const char *host, int port,
                                 uint64_t deadline_ns, loco_chan *ch, loco_error *err);
loco_status loco_ftc_dial_as_joiner(const loco_comm_config *cfg, const uint8_t key[32],
                                    loco_member *self, const char *target, loco_chan *ch,
                                    uint32_t *id, uint64_t *nonce, char chost[LOCO_HOST_MAX],
                                    int *cport, uint64_t deadline_ns, loco_error *err);
loco_status loco_ftc_wait_frame(loco_chan *ch, uint64_t deadline_ns, loco_error *err);
loco_status loco_ftc_flush_blocking(loco_chan *ch, uint64_t deadline_ns, loco_error *err);
/* Start a coordinator in this process from what this member holds (takeover: after the one
 * hosted by member lost_host was lost). No-op if one runs here already. */
loco_status loco_ftc_start_coordinator(loco_comm_t comm, bool takeover, uint32_t lost_host,
                                       loco_error *err);
/* Loop thread: the link broke or went silent (start the failover thread); the failover thread
 * finished (adopt its link, register, re-send the pending request). */
void loco_ftc_lost(loco_comm_t comm, const char *why);
void loco_ftc_reconnected(loco_comm_t comm);
/* ftclient.c helpers shared with failover.c: REGISTER from what this member holds (malloc'd);
 * the link's epoll registration; waking the loop. */
uint8_t *loco_ftc_register_payload(loco_comm_t comm, uint32_t flags, uint32_t *len);
void loco_ftc_epoll(loco_comm_t comm, int op);
void loco_ftc_wake(loco_comm_t comm);

/* Caller thread, at init: start the coordinator here if this rank hosts it, connect to it and
 * register (a joiner: dial config.join, follow a redirect, register as a joiner). */
loco_status loco_ftc_init(loco_comm_t comm, loco_error *err);
/* After the loop thread stopped: wait for a failover thread (it may be starting a coordinator
 * in this process), so that comm->coord is final. */
void loco_ftc_join_failover(loco_comm_t comm);
/* Close the link and free the client (the loop thread and any failover thread are done). */
void loco_ftc_free(loco_comm_t comm);
/* Loop thread: register the link in epoll (after init and after every reconnection). */
void loco_ftc_attach(loco_comm_t comm);
void loco_ftc_on_readable(loco_comm_t comm);
void loco_ftc_timers(loco_comm_t comm, uint64_t now);
uint64_t loco_ftc_next_deadline(loco_comm_t comm);
void loco_ftc_flush(loco_comm_t comm);
/* Loop thread: an operation started / ended here (RESULT for a failure too). */
void loco_ftc_op_begin(loco_comm_t comm, const loco_op *op);
void loco_ftc_op_result(loco_comm_t comm, loco_op *op, loco_status st, int blame,
                        const char *reason);
void loco_ftc_op_verdict(loco_comm_t comm, uint64_t seq, loco_verdict_kind v);
/* Loop thread: the pending-connection hooks of loop.c. */
loco_ack_code loco_ftc_check_state_hello(loco_comm_t comm, const loco_frame_header *h,
                                         const loco_hello *hello, char *reason, size_t cap);
void loco_ftc_take_state_conn(loco_comm_t comm, int fd, const loco_hs *hs);
void loco_ftc_coordinator_address(loco_comm_t comm, char host[LOCO_HOST_MAX], int *port);
/* Caller thread: queue a frame for the coordinator (`request`: keep it to re-send after a
 * failover until loco_ftc_end_request). */
loco_status loco_ftc_post(loco_comm_t comm, loco_frame_type type, uint32_t epoch, uint64_t seq,
                          const uint8_t *payload, uint32_t len, bool request);
void loco_ftc_end_request(loco_comm_t comm);
/* Any thread: a newer plan arrived than the one being executed (wiring and transfers stop). */
bool loco_ftc_superseded(loco_comm_t comm);

/* loop.c, called by ftclient.c on the loop thread: a verdict for (epoch, seq) arrived. */
void loco_loop_on_verdict(loco_comm_t comm, uint32_t epoch, uint64_t seq,
                          const loco_msg_outcome *v);
/* loop.c: the loop lets go of / takes back the epoch's connections (caller thread asks). */
void loco_loop_detach(loco_comm_t comm);
void loco_loop_attach(loco_comm_t comm);

/* comm.c: the per-epoch arrays (connections, links, peer state) for comm->world members. */
loco_status loco_comm_epoch_alloc(loco_comm_t comm);
void loco_comm_epoch_free(loco_comm_t comm);

/* =============================================================================================
 * State transfer (xfer.c, caller thread). */

typedef struct loco_xfer_stats {
    uint64_t bytes_sent, bytes_received;
    double seconds;
} loco_xfer_stats;

/* Execute this member's part of a plan's transfers: receive (and verify against the plan's
 * digests) when it is a receiver, serve its stripes when it is a sender. `abort_gen`: give up
 * when a newer plan arrives. */
loco_status loco_xfer_run(loco_comm_t comm, const loco_plan *plan,
                          const loco_state_buffer *state, int nstate, uint64_t plan_gen,
                          loco_xfer_stats *stats, loco_error *err);
/* XXH64 of each buffer (the parity digests). */
void loco_state_digests(const loco_state_buffer *state, int nstate, uint64_t *digests);

/* =============================================================================================
 * Coordinator (coord.c, coord_plan.c). */

/* Where a coordinator starts from: epoch 0 of a group (embedded), or the state a member holds
 * when it takes over from a lost coordinator. */
typedef struct loco_coord_snapshot {
    bool takeover;
    uint32_t epoch;
    int world;
    const loco_member *members; /* (world) rank order */
    loco_membership_counts counts;
    uint64_t step;
    uint64_t nonce;
    uint32_t lost_host;         /* member that hosted the lost coordinator (LOCO_ID_ANY) */
    uint64_t ops_committed, ops_aborted;
} loco_coord_snapshot;

/* Start a coordinator serving on `listen_fd` (kept open on stop: the comm owns it). */
loco_status loco_coord_start_embedded(loco_coord **coord, const loco_comm_config *cfg,
                                      const uint8_t key[32], int listen_fd,
                                      const loco_coord_snapshot *snap, loco_error *err);

/* Median + k * MAD deadline over recent durations (n >= 1), clamped to [lo, hi]. */
double loco_adaptive_deadline(const double *recent, int n, double k, double lo, double hi);

#endif /* LOCO_COLLECTIVES_FT_IMPL_H */
