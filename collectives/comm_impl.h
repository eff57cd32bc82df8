/* collectives/comm_impl.h — private to collectives/: the wire format, the link emulator, the
 * connection and operation state behind loco_comm_t (tests and fuzz targets may include it).
 *
 * Read the files in this order:
 *   frame.c      the wire format: a 32-byte frame header and the handshake/bootstrap payloads,
 *                encoded and validated as pure functions (the fuzz target's surface)
 *   link.c       the link emulator (rate, delay, jitter, loss, window, outages) and unit parsing
 *   net.c        socket helpers: listen, dial with a deadline, options, blocking-with-deadline I/O
 *   bootstrap.c  MPI / JOIN / LOCAL: who the members are (the member table)
 *   wire.c       the handshake and the connection mesh of one epoch
 *   conn.c       one connection: send queues gated by the emulator, the receive state machine
 *   loop.c       the event-loop thread: timers, heartbeats, operations, failure detection
 *   accept.c     connections arriving at a running member (joiners, state streams, refusals)
 *   ring.c       the collectives as ring schedules: what to send, where received bytes go
 *   codec_hops.c the compressed allreduce's per-chunk encode/decode (calls compress/codec.h)
 *   comm.c       the public API: init/free, requests, submit, wait/test
 *
 * Design for the control plane (issue 7): membership is data (comm->members: rank -> address)
 * plus an epoch number; every frame carries (epoch, op sequence, step, chunk); wire.c's handshake
 * has one place (wire_handshake_dialer / _acceptor) where an HMAC challenge-response goes;
 * loop.c's loop_check_op, between "data complete" and loco_op_commit, is where a coordinator's
 * verdict (digest in, COMMITTED/ABORTED out) replaces today's all-to-all DONE confirmation.
 */
#ifndef LOCO_COLLECTIVES_COMM_IMPL_H
#define LOCO_COLLECTIVES_COMM_IMPL_H

#include "base/base.h"
#include "collectives/comm.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Copy a string, truncating to cap - 1 characters (messages are one line; cutting is fine). */
static inline void loco_copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* =============================================================================================
 * Wire format (frame.c). All integers little-endian.
 *
 * Frame header, 32 bytes:
 *   0  u32 magic    "loco" (0x6f636f6c)
 *   4  u8  version  LOCO_PROTOCOL_VERSION
 *   5  u8  type     loco_frame_type
 *   6  u16 step     ring step of a DATA frame (0 otherwise)
 *   8  u32 epoch    membership epoch
 *   12 u32 length   payload bytes that follow (<= LOCO_FRAME_MAX_PAYLOAD)
 *   16 u64 seq      operation sequence number (DATA, ABORT), 0 otherwise
 *   24 u32 chunk    chunk index within the step's block (DATA)
 *   28 u32 sig      DATA: signature of the operation (kind, sizes, dtype, ...): members that
 *                   started different collectives as the same seq are caught; PING: sender rank
 * A PING's seq is the operation its sender is in (or last finished): a progress timeout blames
 * the member that never started the operation, not merely the one it waits on.
 */

#define LOCO_FRAME_MAGIC 0x6f636f6cu
#define LOCO_PROTOCOL_VERSION 1
#define LOCO_FRAME_HEADER_BYTES 32
#define LOCO_FRAME_MAX_PAYLOAD (64u << 20)
#define LOCO_MAX_WORLD 4096
#define LOCO_HOST_MAX 64
#define LOCO_MAX_STREAMS 64
#define LOCO_REASON_MAX 200

typedef enum loco_frame_type {
    LOCO_FRAME_HELLO = 1, /* dialer -> acceptor: who I am and which connection this is */
    LOCO_FRAME_ACK = 2,   /* acceptor -> dialer: accepted (code 0) or refused with a reason */
    LOCO_FRAME_DATA = 3,  /* a chunk of a collective */
    LOCO_FRAME_PING = 4,  /* heartbeat on a control connection */
    LOCO_FRAME_ABORT = 5, /* "operation seq is aborted: rank X is lost because ..." */
    LOCO_FRAME_BYE = 6,   /* graceful close: the sender freed its communicator */
    LOCO_FRAME_JOIN = 7,  /* JOIN bootstrap: a rank introduces itself to rank 0 */
    LOCO_FRAME_TABLE = 8, /* JOIN bootstrap: rank 0's member table */
    LOCO_FRAME_DONE = 9,  /* "I hold the result of operation seq" (+ its digest) */
    /* authentication (auth.c) */
    LOCO_FRAME_CHALLENGE = 10, /* acceptor -> dialer: run nonce, fresh challenge, its proof */
    LOCO_FRAME_PROOF = 11,     /* dialer -> acceptor: its proof over both challenges */
    /* control plane (ft_impl.h): worker <-> coordinator, joiners, state transfer */
    LOCO_FRAME_REGISTER = 12,  /* worker -> coordinator: who I am, where I am, what I hold */
    LOCO_FRAME_WELCOME = 13,   /* coordinator -> worker: registered (member id) */
    LOCO_FRAME_BEGIN = 14,     /* worker -> coordinator: operation seq started here */
    LOCO_FRAME_RESULT = 15,    /* worker -> coordinator: operation seq ended here (+ digest) */
    LOCO_FRAME_VERDICT = 16,   /* coordinator -> worker: operation seq COMMITTED or ABORTED */
    LOCO_FRAME_RECONF = 17,    /* worker -> coordinator: recover or sync point request */
    LOCO_FRAME_PLAN = 18,      /* coordinator -> worker: the next epoch and state transfers */
    LOCO_FRAME_PLAN_DONE = 19, /* worker -> coordinator: plan round executed (status) */
    LOCO_FRAME_COMMIT = 20,    /* coordinator -> worker: the round is complete everywhere */
    LOCO_FRAME_JOIN_REQ = 21,  /* joiner -> member or coordinator: admit me */
    LOCO_FRAME_REDIRECT = 22,  /* member -> joiner: the coordinator is there */
    LOCO_FRAME_XFER_REQ = 23,  /* state receiver -> sender: send these byte ranges */
    LOCO_FRAME_XFER_DATA = 24, /* state sender -> receiver: bytes of the requested ranges */
    LOCO_FRAME_TYPE_MAX = 24,
} loco_frame_type;

typedef struct loco_frame_header {
    uint8_t version;
    uint8_t type;
    uint16_t step;
    uint32_t epoch;
    uint32_t length;
    uint64_t seq;
    uint32_t chunk;
    uint32_t sig;
} loco_frame_header;

/* Capability bits exchanged at bootstrap (data, not policy). */
#define LOCO_CAP_CUDA 0x1u

/* One member's address: the member table is the membership of an epoch (rank = index). */
typedef struct loco_member {
    char host[LOCO_HOST_MAX];
    uint16_t port;  /* its worker listener (data plane, state transfer, joiners) */
    uint32_t caps;
    uint32_t id;    /* stable member id (its rank in epoch 0; joiners get new ones) */
    uint16_t cport; /* its coordinator listener (served when it hosts the coordinator) */
} loco_member;

#define LOCO_ID_ANY 0xffffffffu

typedef enum loco_conn_kind {
    LOCO_CONN_CONTROL = 0, /* one per pair of members: heartbeats, aborts, goodbyes */
    LOCO_CONN_DATA = 1,    /* `streams` per ring neighbour, from a rank to its successor */
    LOCO_CONN_COORD = 2,   /* worker -> coordinator (from = member id) */
    LOCO_CONN_STATE = 3,   /* state receiver -> sender (from/to = ranks, stream of streams) */
    LOCO_CONN_JOIN = 4,    /* a process that wants to join (from = wanted id or LOCO_ID_ANY) */
    LOCO_CONN_BOOT = 5,    /* JOIN bootstrap: rank `from` -> rank 0 */
    LOCO_CONN_KIND_MAX = 5,
} loco_conn_kind;

/* HELLO payload (64 bytes): u64 nonce (0 = any: a joiner learns it), u32 from, u32 to,
 * u32 world, u16 kind, u16 stream, u16 streams, u16 flags, u32 caps, u8 challenge[32]. */
#define LOCO_HELLO_BYTES 64
#define LOCO_HELLO_INTEGRITY 0x1u /* flags: frames carry a MAC */
#define LOCO_CHALLENGE_BYTES 32
#define LOCO_MAC_BYTES 32
typedef struct loco_hello {
    uint64_t nonce;
    uint32_t from, to, world;
    uint16_t kind, stream, streams, flags;
    uint32_t caps;
    uint8_t challenge[LOCO_CHALLENGE_BYTES];
} loco_hello;

/* CHALLENGE payload (72 bytes): u64 run nonce, u8 challenge[32], u8 mac[32].
 * PROOF payload (32 bytes): u8 mac[32]. */
#define LOCO_CHALLENGE_PAYLOAD (8 + LOCO_CHALLENGE_BYTES + LOCO_MAC_BYTES)
#define LOCO_PROOF_PAYLOAD LOCO_MAC_BYTES

/* ACK payload: u32 code (0 accepted), then up to LOCO_REASON_MAX bytes of reason text. */
typedef enum loco_ack_code {
    LOCO_ACK_OK = 0,
    LOCO_ACK_BAD_NONCE = 1,
    LOCO_ACK_BAD_VERSION = 2,
    LOCO_ACK_BAD_PEER = 3,   /* not a member, wrong destination, duplicate, unexpected */
    LOCO_ACK_BAD_EPOCH = 4,
    LOCO_ACK_REFUSED = 5,    /* valid but not admitted now (membership fixed in this epoch) */
    LOCO_ACK_BAD_WORLD = 6,
    LOCO_ACK_BAD_AUTH = 7,   /* the proof did not verify: no run key, or a replay */
    LOCO_ACK_RETRY = 8,      /* not ready yet (an epoch being formed): dial again shortly */
} loco_ack_code;

/* JOIN payload (96 bytes): u64 nonce (0 = any), u32 rank, u32 world, u32 caps, u16 port,
 * u16 reserved, char host[64] (NUL-padded; "" = use the address rank 0 sees), 12 reserved. */
#define LOCO_JOIN_BYTES 96
typedef struct loco_join {
    uint64_t nonce;
    uint32_t rank, world, caps;
    uint16_t port, cport;
    char host[LOCO_HOST_MAX];
} loco_join;

/* JOIN's u16 reserved carries the coordinator port (cport).
 * TABLE payload: u64 nonce, u32 world, u32 epoch, then world entries of 76 bytes:
 * char host[64], u16 port, u16 cport, u32 caps, u32 id. */
#define LOCO_MEMBER_BYTES 76
#define LOCO_TABLE_HEAD_BYTES 16

/* ABORT payload: i32 lost rank (-1 unknown), u32 reserved, then reason text. */

void loco_frame_header_encode(const loco_frame_header *h, uint8_t out[LOCO_FRAME_HEADER_BYTES]);
/* Validate magic, version, type and length (<= max_payload) and decode. On error err says
 * what is wrong ("bad magic 0x...", "protocol version 3, expected 1", "length N exceeds M"). */
loco_status loco_frame_header_decode(const uint8_t in[LOCO_FRAME_HEADER_BYTES],
                                     uint32_t max_payload, loco_frame_header *h, loco_error *err);
void loco_hello_encode(const loco_hello *hello, uint8_t out[LOCO_HELLO_BYTES]);
loco_status loco_hello_decode(const uint8_t *in, size_t len, loco_hello *hello, loco_error *err);
/* Encode an ACK payload; returns its length (<= 4 + LOCO_REASON_MAX). */
size_t loco_ack_encode(loco_ack_code code, const char *reason, uint8_t *out);
/* Decode an ACK: code and NUL-terminated printable reason (non-printables replaced by '?'). */
loco_status loco_ack_decode(const uint8_t *in, size_t len, uint32_t *code,
                            char reason[LOCO_REASON_MAX + 1], loco_error *err);
void loco_join_encode(const loco_join *join, uint8_t out[LOCO_JOIN_BYTES]);
loco_status loco_join_decode(const uint8_t *in, size_t len, loco_join *join, loco_error *err);
/* TABLE: encode into out (capacity >= LOCO_TABLE_HEAD_BYTES + world * LOCO_MEMBER_BYTES). */
size_t loco_table_encode(uint64_t nonce, uint32_t epoch, int world, const loco_member *members,
                         uint8_t *out);
/* Decode a TABLE for expected_world members into members[expected_world]. */
loco_status loco_table_decode(const uint8_t *in, size_t len, int expected_world, uint64_t *nonce,
                              uint32_t *epoch, loco_member *members, loco_error *err);
/* One member record (LOCO_MEMBER_BYTES) of a TABLE or a control-plane message. */
void loco_member_encode(const loco_member *m, uint8_t *out);
loco_status loco_member_decode(const uint8_t *in, loco_member *m, const char *what,
                               loco_error *err);
size_t loco_abort_encode(int lost_rank, const char *reason, uint8_t *out);
loco_status loco_abort_decode(const uint8_t *in, size_t len, int *lost_rank,
                              char reason[LOCO_REASON_MAX + 1], loco_error *err);
/* Copy len bytes of untrusted text into out (NUL-terminated), replacing non-printables. */
void loco_sanitize_text(const uint8_t *in, size_t len, char *out, size_t cap);
const char *loco_frame_type_name(int type);

/* =============================================================================================
 * Link emulator (link.c). One loco_link per (this rank -> peer); its streams are the
 * connections to that peer. The sender queues bytes (enqueue); advance() schedules them on the
 * emulated wire and releases each segment at its delivery time; the writer may send to the
 * socket only bytes already released. Pure: time is passed in, so tests can drive it exactly.
 */

typedef struct loco_link_grant {
    uint64_t deliver_ns; /* the segment may enter the socket at this time */
    uint64_t ack_ns;     /* the emulated window reopens at this time */
    uint64_t bytes;
} loco_link_grant;

typedef struct loco_link_stream {
    uint64_t pending;         /* queued bytes not yet scheduled */
    uint64_t ready_ns;        /* the oldest pending byte could have left then (queued, or its
                                 window reopened): the wire never waits for a late wake-up */
    uint64_t released;        /* bytes the writer may have written in total */
    uint64_t inflight;        /* scheduled bytes not yet acknowledged */
    uint64_t last_deliver_ns; /* a stream delivers in order (TCP) */
    loco_link_grant *ring;    /* (cap) grants; [ack, rel) delivered, [rel, tail) on the wire */
    uint64_t cap, ack, rel, tail;
} loco_link_stream;

typedef struct loco_link {
    loco_link_config cfg;
    bool active;
    uint64_t start_ns;  /* outages are relative to this */
    uint64_t free_ns;   /* the emulated wire is busy until then */
    uint64_t seed, rng_stream, rng_counter;
    int nstreams, rr;
    loco_link_stream *streams; /* (nstreams) */
    uint64_t lost_packets;     /* emulated losses so far (each one a retransmission) */
    uint64_t delivered_bytes;
} loco_link;

loco_status loco_link_init(loco_link *link, const loco_link_config *cfg, int nstreams,
                           uint64_t start_ns, uint64_t seed, uint64_t rng_stream);
void loco_link_free(loco_link *link);
/* Queue bytes on a stream at now_ns (the time they became ready to leave). */
void loco_link_enqueue(loco_link *link, int stream, uint64_t bytes, uint64_t now_ns);
/* Schedule and release everything due at now_ns. */
loco_status loco_link_advance(loco_link *link, uint64_t now_ns);
/* Bytes stream may have written in total (UINT64_MAX when the link is inactive). */
uint64_t loco_link_released(const loco_link *link, int stream);
/* When advance() next has something to do, or UINT64_MAX. */
uint64_t loco_link_next_ns(const loco_link *link);

/* =============================================================================================
 * Sockets (net.c) */

/* Listen on host:port (host "" = 0.0.0.0; port 0 = any). *port_out gets the bound port.
 * EADDRINUSE gives a message naming the address and what to do. */
loco_status loco_net_listen(const char *host, int port, int *fd, int *port_out, loco_error *err);
/* Split "HOST:PORT" (IPv6 as "[addr]:port"). */
loco_status loco_net_split_hostport(const char *text, char *host, size_t host_cap, int *port,
                                    loco_error *err);
/* Start a non-blocking connect to host:port; *fd is -1 on a resolve error (message in err). */
loco_status loco_net_connect_start(const char *host, int port, int *fd, loco_error *err);
/* Dial with retries until deadline_ns (connection refused, unreachable, timeouts are retried:
 * the peer may not listen yet). The fd is blocking-free (O_NONBLOCK). */
loco_status loco_net_dial(const char *host, int port, uint64_t deadline_ns, int *fd,
                          loco_error *err);
/* Send/receive exactly len bytes on a non-blocking fd before deadline_ns (poll). EOF and errors
 * return LOCO_ERR_PEER_LOST / LOCO_ERR_TIMEOUT with errno text; `what` names the peer. */
loco_status loco_net_send_all(int fd, const void *buf, size_t len, uint64_t deadline_ns,
                              const char *what, loco_error *err);
loco_status loco_net_recv_all(int fd, void *buf, size_t len, uint64_t deadline_ns,
                              const char *what, loco_error *err);
/* Receive one whole frame (header + payload <= max_payload) before deadline_ns. */
loco_status loco_net_recv_frame(int fd, loco_frame_header *h, uint8_t *payload,
                                uint32_t max_payload, uint64_t deadline_ns, const char *what,
                                loco_error *err);
loco_status loco_net_send_frame(int fd, const loco_frame_header *h, const void *payload,
                                uint64_t deadline_ns, const char *what, loco_error *err);
/* Milliseconds until deadline_ns (0 when passed), for poll(). */
int loco_net_remaining_ms(uint64_t deadline_ns);
/* TCP_NODELAY, keepalive (idle/interval/count from timeout_s) and TCP_USER_TIMEOUT. */
void loco_net_tune(int fd, double timeout_s);
void loco_net_set_nonblocking(int fd);
/* "1.2.3.4:5678" of the remote end (or "?" if unknown). */
void loco_net_peer_name(int fd, char *out, size_t cap);
/* The local address of a connected socket (the interface that reaches the peer). */
void loco_net_local_host(int fd, char *out, size_t cap);
/* A non-loopback IPv4 address of this host, or "127.0.0.1". */
void loco_net_default_host(char *out, size_t cap);
/* Total TCP retransmissions of a socket (TCP_INFO), 0 if unknown. */
uint32_t loco_net_retransmits(int fd);

/* =============================================================================================
 * Authentication (auth.c): the run key, the handshake every connection opens with, and the
 * per-frame MAC of `integrity` runs.
 *
 *   dialer   -> HELLO {run nonce, from, to, kind, stream, flags, challenge Cd}
 *   acceptor -> ACK {code, reason}                          refused (bad nonce, epoch, peer, ...)
 *             | CHALLENGE {run nonce, Ca, Ma = HMAC(K, "acceptor" | nonce | HELLO | Ca)}
 *   dialer   -> PROOF {Md = HMAC(K, "dialer" | nonce | HELLO | Ca | Ma)}     once Ma verified
 *   acceptor -> ACK {0} | ACK {BAD_AUTH}                                      once Md verified
 *
 * HMAC is libsodium's crypto_auth (HMAC-SHA-512-256) under the 32-byte run key K. Both proofs
 * bind the run nonce, the HELLO (identities, epoch, connection kind) and both fresh challenges,
 * so a recorded handshake replayed to a new challenge fails, and neither side's proof can be
 * reflected as the other's. A session key HMAC(K, "session" | HELLO | Ca | Ma) keys the
 * per-frame MACs (Poly1305 with a one-time key per frame and direction, from a frame counter:
 * reordered, replayed or dropped frames fail too). */

#define LOCO_FRAME_MAC_BYTES 16

/* Resolve the run key (comm.h: key_file, key, LOCO_RUN_KEY_FILE, LOCO_RUN_KEY). *have says
 * whether one was found; with `required` a missing key is an error naming where to put one. */
loco_status loco_key_resolve(const loco_comm_config *cfg, bool required, uint8_t key[32],
                             bool *have, loco_error *err);
/* Fill buf with random bytes (libsodium). */
void loco_random_bytes(void *buf, size_t n);

typedef enum loco_hs_state {
    LOCO_HS_DIAL_CHALLENGE = 0, /* dialer: HELLO sent, waiting for CHALLENGE (or refusal) */
    LOCO_HS_DIAL_ACK,           /* dialer: PROOF sent, waiting for the final ACK */
    LOCO_HS_ACCEPT_HELLO,       /* acceptor: waiting for HELLO */
    LOCO_HS_ACCEPT_PROOF,       /* acceptor: CHALLENGE sent, waiting for PROOF */
    LOCO_HS_DONE,               /* authenticated */
    LOCO_HS_FAILED,             /* refused, forged, truncated or closed (see status, reason) */
} loco_hs_state;

typedef enum loco_hs_result { LOCO_HS_AGAIN = 0, LOCO_HS_OK = 1, LOCO_HS_ERROR = -1 } loco_hs_result;

/* One side of a handshake on a non-blocking socket: feed it with loco_hs_step when readable. */
typedef struct loco_hs {
    loco_hs_state state;
    int fd;
    uint8_t key[32];
    uint64_t nonce;            /* the run nonce (acceptor: its own, 0 = learn the dialer's) */
    uint8_t hello_raw[LOCO_FRAME_HEADER_BYTES + LOCO_HELLO_BYTES]; /* the transcript's HELLO */
    loco_frame_header hello_h;
    loco_hello hello;
    uint8_t ca[LOCO_CHALLENGE_BYTES], ma[LOCO_MAC_BYTES];
    uint8_t buf[LOCO_FRAME_HEADER_BYTES + 4 + LOCO_REASON_MAX];
    size_t got;
    uint32_t code;             /* a refusal's ACK code (sent or received) */
    loco_status status;        /* why it failed */
    char reason[LOCO_REASON_MAX + 1];
    uint8_t session[32];       /* keys the frame MACs once done */
} loco_hs;

/* Acceptor's check of a HELLO (identities, epoch, nonce, what it may connect to). */
typedef loco_ack_code (*loco_hs_check)(void *ctx, const loco_frame_header *h,
                                       const loco_hello *hello, char *reason, size_t cap);

/* Dialer: fill in a fresh challenge and send the HELLO (epoch in its header). */
void loco_hs_dial(loco_hs *hs, int fd, const uint8_t key[32], uint32_t epoch,
                  const loco_hello *hello);
/* Acceptor: wait for a HELLO. */
void loco_hs_accept(loco_hs *hs, int fd, const uint8_t key[32], uint64_t nonce);
/* Read what arrived and answer: LOCO_HS_OK once authenticated, LOCO_HS_ERROR on refusal or
 * failure (hs->status and hs->reason say why; the acceptor has told the dialer), else AGAIN. */
loco_hs_result loco_hs_step(loco_hs *hs, loco_hs_check check, void *ctx);
/* Step with poll until done or deadline_ns (LOCO_ERR_TIMEOUT in hs->status). */
loco_hs_result loco_hs_run(loco_hs *hs, loco_hs_check check, void *ctx, uint64_t deadline_ns);
/* Dial host:port (retrying until deadline) and authenticate as hello says. On success *fd is
 * the connection and *hs its handshake (session key); a refusal with LOCO_ACK_RETRY is dialled
 * again. Errors name the address and the cause. */
loco_status loco_auth_dial(const char *host, int port, const uint8_t key[32], uint32_t epoch,
                           const loco_hello *hello, uint64_t deadline_ns, int *fd, loco_hs *hs,
                           loco_error *err);

/* Per-frame MAC of one direction of a connection. */
typedef struct loco_frame_mac {
    bool on;
    uint8_t key[32];
    uint64_t counter;
} loco_frame_mac;

/* Keys of both directions from a finished handshake (dialer: tx = dialer->acceptor). */
void loco_frame_mac_init(const loco_hs *hs, bool dialer, bool on, loco_frame_mac *tx,
                         loco_frame_mac *rx);
/* Tag of the next frame (header + payload, possibly in two pieces); advances the counter. */
void loco_frame_mac_tag(loco_frame_mac *m, const uint8_t *hdr, const uint8_t *payload,
                        size_t len, uint8_t tag[LOCO_FRAME_MAC_BYTES]);
/* Check the next frame's tag (constant time); advances the counter. */
bool loco_frame_mac_check(loco_frame_mac *m, const uint8_t *hdr, const uint8_t *payload,
                          size_t len, const uint8_t tag[LOCO_FRAME_MAC_BYTES]);

/* =============================================================================================
 * Framed channels (chan.c): a non-blocking connection carrying whole frames with a copied send
 * buffer, for the control plane (worker <-> coordinator). Not link-emulated. */

#define LOCO_CTL_MAX_PAYLOAD (1u << 20)

typedef struct loco_chan {
    int fd;
    char name[128];
    uint8_t rx_hdr[LOCO_FRAME_HEADER_BYTES];
    uint32_t rx_hdr_got, rx_got, rx_tag_got;
    bool rx_in_payload;
    loco_frame_header rx;          /* the frame being read / just read */
    uint8_t *rx_buf;               /* its payload (grown up to max_payload) */
    uint32_t rx_cap, max_payload;
    uint8_t rx_tag[LOCO_FRAME_MAC_BYTES];
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    loco_frame_mac tx_mac, rx_mac;
    uint64_t last_rx_ns;
} loco_chan;

/* Take over a connected, authenticated fd (hs gives the MAC keys when integrity). */
void loco_chan_open(loco_chan *ch, int fd, const char *name, uint32_t max_payload,
                    const loco_hs *hs, bool dialer, bool integrity);
/* Close the fd and free the buffers (the struct can be opened again). */
void loco_chan_close(loco_chan *ch);
bool loco_chan_is_open(const loco_chan *ch);
/* Queue one frame (copied). LOCO_ERR_NOMEM or LOCO_ERR_RANGE (too big) on failure. */
loco_status loco_chan_queue(loco_chan *ch, uint8_t type, uint32_t epoch, uint64_t seq,
                            uint32_t aux, const void *payload, uint32_t len);
/* Write what the socket takes. 0, or -errno when the connection failed. */
int loco_chan_flush(loco_chan *ch);
bool loco_chan_want_write(const loco_chan *ch);
/* Read: 1 when a whole frame is in ch->rx / ch->rx_buf (call again for the next), 0 when
 * nothing more is available now, -1 when closed or broken (err says why). */
int loco_chan_read(loco_chan *ch, loco_error *err);

/* =============================================================================================
 * Bootstrap (bootstrap.c): who the members are. */

typedef struct loco_boot {
    int rank, world;      /* ADMIT: -1 and 0 (a joiner learns them when admitted) */
    uint64_t nonce;
    uint32_t epoch;
    loco_member *members; /* (world), malloc'd; member ids are the ranks */
    int listen_fd;        /* this rank's listener, bound before the exchange */
    int coord_fd;         /* this rank's coordinator listener (-1 without a control plane) */
    uint16_t cport;
    uint8_t key[32];      /* the run key (configured, or shared by the bootstrap) */
} loco_boot;

loco_status loco_bootstrap(const loco_comm_config *cfg, loco_boot *boot, loco_error *err);
void loco_boot_free(loco_boot *boot);

/* =============================================================================================
 * Connections, operations, the communicator */

/* One TCP connection to a peer. Control connections write from `out` (copied frames); data
 * connections write zero-copy items from `txq` pointing into operation buffers. */
typedef struct loco_tx_item {
    uint8_t hdr[LOCO_FRAME_HEADER_BYTES];
    const uint8_t *payload;
    uint32_t len;  /* payload bytes */
    uint32_t done; /* bytes of header + payload (+ tag) written */
    uint8_t tag[LOCO_FRAME_MAC_BYTES]; /* integrity: the frame's MAC, sent after the payload */
} loco_tx_item;

typedef struct loco_conn {
    int fd;
    int peer;            /* rank */
    loco_conn_kind kind;
    bool outbound;       /* data: this rank sends on it (to its successor); else receives */
    int stream;          /* data: 0..streams-1; the link stream index (control = streams) */
    bool live;           /* registered and usable; false after an error, abort or goodbye */
    uint32_t events;     /* epoll interest */
    char name[128];      /* "rank 2 (127.0.0.1:4711) data stream 1" for messages */
    /* receive state machine */
    uint8_t rx_hdr[LOCO_FRAME_HEADER_BYTES];
    uint32_t rx_hdr_got;
    bool rx_in_payload;
    bool rx_parked;      /* a DATA header for the next operation waits until it starts */
    loco_frame_header rx_frame;
    uint8_t *rx_dst;     /* where the payload goes (an operation buffer or rx_buf) */
    uint32_t rx_got;
    uint8_t *rx_buf;     /* (rx_cap) staging for payloads that are reduced or decoded */
    size_t rx_cap;
    uint8_t rx_tag[LOCO_FRAME_MAC_BYTES]; /* integrity: the frame's MAC as received */
    uint32_t rx_tag_got;
    /* send side */
    loco_tx_item *txq;   /* ring of (tx_cap) items, [tx_head, tx_head + tx_count) */
    uint32_t tx_cap, tx_head, tx_count;
    uint8_t *out;        /* control: encoded frames, [out_off, out_len) still to write */
    size_t out_len, out_off, out_cap;
    uint64_t tx_written; /* bytes written in total (gated by the link emulator) */
    bool want_out;       /* waiting for EPOLLOUT */
    uint32_t retrans_base; /* TCP retransmissions at the start of the current operation */
    loco_frame_mac tx_mac, rx_mac; /* integrity: frame MACs of each direction */
} loco_conn;

/* The compressed allreduce reaches compress/codec.h only through this table (codec_hops.c), so
 * programs that never compress do not link the codec library. */
typedef struct loco_codec_hops {
    size_t (*bound)(const loco_codec *codec, size_t n);
    loco_status (*encode)(const loco_codec *codec, loco_codec_state *state, const float *in,
                          size_t n, const loco_codec_ctx *ctx, uint8_t *out, size_t cap,
                          size_t *out_len);
    loco_status (*decode_add)(const loco_codec *expect, const uint8_t *msg, size_t len,
                              float *out, size_t n, float scale, const loco_codec_ctx *ctx);
} loco_codec_hops;

/* A block of the ring schedule: a contiguous range of the result, in elements. */
typedef struct loco_block {
    size_t offset, count;
    uint32_t nchunks; /* >= 1 (an empty block still sends one empty chunk: a synchronisation) */
} loco_block;

typedef struct loco_op {
    loco_op_kind kind;
    /* arguments */
    const uint8_t *sendbuf;
    uint8_t *recvbuf;
    size_t count;
    loco_dtype dtype;
    loco_reduce_op reduce;
    int root;
    size_t *counts, *displs;           /* allgatherv: copies, (world) each */
    const loco_codec *codec;
    uint32_t codec_id;                 /* loco_codec_id + 1, 0 = raw (for the signature) */
    loco_codec_ctx ctx;
    const loco_codec_hops *hops;       /* NULL = raw */
    /* schedule */
    uint64_t seq;
    uint32_t sig;
    size_t esize, chunk_elems;
    int nsteps;
    loco_block *blocks;                /* (world), in the communicator's scratch */
    uint8_t *work;                     /* where the result is built */
    uint8_t *backup;                   /* in-place allreduce: the input, restored on failure */
    uint8_t *slots;                    /* codec: one encoded message per chunk of every block */
    size_t slot_bytes;
    uint64_t *slot_base;               /* (world) first slot of each block */
    uint32_t *slot_len;                /* encoded length per slot */
    uint64_t *recv_base;               /* (nsteps + 1) first bit of each step in recv_seen */
    uint8_t *recv_seen;                /* bitmap of received (step, chunk) */
    uint64_t recv_expected, recv_done, tx_outstanding;
    uint32_t max_payload;              /* the largest DATA payload this op accepts */
    bool started;
    bool data_done;                    /* everything received and sent */
    bool done_sent;                    /* DONE told to the peers (confirm) */
    bool result_sent;                  /* control plane: RESULT sent, waiting for the verdict */
    int verdict;                       /* loco_verdict_kind once it arrived */
    uint64_t start_ns, submit_ns, last_progress_ns;
    uint64_t lost_base;                /* emulated losses on all links when the op started */
    loco_op_info info;
} loco_op;

typedef enum loco_req_state { LOCO_REQ_FREE = 0, LOCO_REQ_QUEUED, LOCO_REQ_RUNNING, LOCO_REQ_DONE } loco_req_state;

typedef struct loco_request loco_request;
struct loco_request {
    struct loco_comm *comm;
    loco_req_state state;
    loco_op op;
    size_t *vstore; /* (2 * world) this slot's copy of recvcounts and displs, kept for reuse */
};

typedef enum loco_peer_state { LOCO_PEER_ALIVE = 0, LOCO_PEER_LOST, LOCO_PEER_LEFT } loco_peer_state;

/* An inbound connection after init, authenticated by the handshake: a joiner (redirected to
 * the coordinator), a state-transfer stream (handed to the sync point), or refused (data-plane
 * connections of another epoch; membership is fixed within an epoch). */
typedef struct loco_pending_conn {
    int fd;
    loco_hs hs;
    bool joiner;         /* handshake done: reading the joiner's JOIN_REQ */
    uint8_t buf[LOCO_FRAME_HEADER_BYTES + 4 + LOCO_MEMBER_BYTES];
    uint32_t got;
    uint64_t deadline_ns;
    char name[64];
} loco_pending_conn;
#define LOCO_MAX_PENDING 16

struct loco_ftc;   /* the worker's side of the control plane (ft_impl.h) */
struct loco_coord; /* a coordinator hosted by this process (coordinator.h) */

struct loco_comm {
    loco_comm_config cfg;
    uint8_t key[32];             /* the run key (auth.c) */
    loco_link_rule *rules;       /* (cfg.n_link_rules) own copy */
    int rank, world;
    uint32_t epoch;
    uint64_t nonce;
    loco_member *members;        /* (world) */
    int listen_fd;
    int next, prev;              /* ring neighbours */
    /* connections: ctl[r] for every peer r (NULL for self), out[k] to next, in[k] from prev */
    loco_conn *conns;            /* (nconns) */
    int nconns;
    loco_conn **ctl;             /* (world) */
    loco_conn **out, **in;       /* (streams) each */
    loco_link *links;            /* (world) this rank -> r; links[rank] unused */
    loco_peer_state *peer_state; /* (world) */
    uint64_t *last_heard_ns;     /* (world) */
    uint64_t *done_seq;          /* (world) latest operation each peer confirmed (DONE) */
    uint64_t *done_digest;       /* (world * 2) its digests, indexed by seq parity */
    uint64_t *peer_seq;          /* (world) the operation each peer last said it is in (PING) */
    uint64_t io_sent, io_received; /* every byte (atomic: read by loco_comm_get_totals) */
    loco_pending_conn pending[LOCO_MAX_PENDING];
    /* event loop (loop thread only, unless noted) */
    pthread_t thread;
    bool thread_started;
    int epfd, evfd, tfd;
    uint64_t timer_armed_ns;
    uint64_t next_ping_ns;
    uint64_t start_ns;
    loco_request *cur;           /* the running operation */
    uint64_t seq_done;           /* last finished (or failed) operation */
    uint8_t *scratch;            /* one grow-only arena for the running operation */
    size_t scratch_cap;
    /* shared with callers: under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    loco_request reqs[LOCO_MAX_REQUESTS];
    int queue[LOCO_MAX_REQUESTS];
    int q_head, q_count;
    uint64_t next_seq;           /* caller side: the last sequence number handed out */
    bool broken;
    int lost_rank;
    char broken_msg[256];
    char last_error[256];
    char error_copy[256];        /* what loco_comm_error returned */
    loco_comm_totals totals;
    /* control plane (issue 7): membership.c, ftclient.c, coord*.c */
    bool ft;                     /* a coordinator gives every operation its verdict */
    uint32_t my_id;              /* this member's stable id */
    bool admitted;               /* a member of `epoch` (false: a joiner not admitted yet) */
    bool detach_req, detached;   /* under lock: the loop lets go of the epoch's connections
                                    while the caller wires the next epoch */
    int coord_listen_fd;         /* this process's coordinator listener (bound at init) */
    struct loco_coord *coord;    /* the coordinator this process hosts, or NULL */
    struct loco_ftc *ftc;        /* NULL when !ft */
    bool crashed;                /* loco_comm_crash: die without goodbyes */
};

/* Tests: make this member die like a killed process — its loop stops without goodbyes, every
 * socket it owns is reset, a coordinator it hosts vanishes. Free it with loco_comm_free later. */
void loco_comm_crash(loco_comm_t comm);

/* epoll tags of the event loop (loop.c; the coordinator link's is set by ftclient.c) */
#define LOCO_TAG_WAKE (1ull << 40)
#define LOCO_TAG_TIMER (2ull << 40)
#define LOCO_TAG_LISTEN (3ull << 40)
#define LOCO_TAG_PENDING (4ull << 40) /* + slot */
#define LOCO_TAG_COORD (5ull << 40)

/* comm.c: validate and submit an allreduce (raw when hops == NULL). */
loco_status loco_comm_allreduce_op(loco_comm_t comm, const void *sendbuf, void *recvbuf,
                                   size_t count, loco_dtype dtype, loco_reduce_op reduce,
                                   const loco_codec *codec, uint32_t codec_id,
                                   const loco_codec_ctx *ctx, const loco_codec_hops *hops,
                                   loco_request_t *req, loco_op_info *info);

/* comm.c: the emulated link from this rank to rank `to` (config default or a per-pair rule). */
const loco_link_config *loco_comm_link_for(const loco_comm_t comm, int to);

/* comm.c: hand an operation to the event loop. With req == NULL, wait for it and copy its
 * info to *info (may be NULL); otherwise *req receives the request. */
loco_status loco_comm_submit(loco_comm_t comm, const loco_op *op, loco_request_t *req,
                             loco_op_info *info);

/* ring.c */
void loco_op_prepare(loco_comm_t comm, loco_op *op);       /* caller thread: signature */
loco_status loco_op_start(loco_comm_t comm, loco_op *op, loco_error *err); /* loop thread */
/* A DATA header arrived on conn for the running op: validate it and set conn->rx_dst. */
loco_status loco_op_accept_header(loco_comm_t comm, loco_op *op, loco_conn *conn,
                                  loco_error *err);
/* Its payload is complete: reduce/decode/store, forward, maybe finish. */
loco_status loco_op_on_payload(loco_comm_t comm, loco_op *op, loco_conn *conn, loco_error *err);
/* Everything received and sent? */
bool loco_op_complete(const loco_op *op);
/* Undo what a failed op did to the caller's buffers (restore an in-place input). */
void loco_op_restore(loco_op *op);
/* The data part is complete: compute the result digest (when configured). */
void loco_op_digest(loco_comm_t comm, loco_op *op);
/* Every member confirmed: hand the result over (a broadcast's staged copy). */
void loco_op_commit(loco_comm_t comm, loco_op *op);

/* loop.c: the event-loop thread and what breaks an epoch */
void *loco_loop_main(void *arg);
/* Put the epoch's open connections in the loop's epoll set. */
void loco_loop_register_conns(loco_comm_t comm);

/* accept.c (loop thread): connections arriving after init. */
void loco_pending_accept(loco_comm_t comm);
void loco_pending_read(loco_comm_t comm, loco_pending_conn *p);
void loco_pending_close(loco_comm_t comm, loco_pending_conn *p);
/* The epoch cannot run collectives any more: fail the running and queued operations with st
 * (inputs restored), tell the peers once (ABORT) when `tell`, stop the data connections. The
 * first cause is kept. */
void loco_loop_break_epoch(loco_comm_t comm, int lost, loco_status st, bool tell,
                           const char *msg);
/* Peer `rank` died, stalled or broke the protocol: break the epoch, then close its connections
 * (after a best-effort ABORT telling it why). */
void loco_loop_peer_failed(loco_comm_t comm, int rank, loco_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *loco_op_name(loco_op_kind kind);

/* conn.c: one connection's bytes (event-loop thread only) */
/* Stop using a connection (close its fd when close_fd; a broken epoch keeps data fds open so
 * peers do not read our silence as a death). */
void loco_conn_stop(loco_comm_t comm, loco_conn *c, bool close_fd);
/* Queue a control frame (copied) through the link emulator. */
void loco_conn_send_ctl(loco_comm_t comm, loco_conn *c, loco_frame_type type, uint64_t seq,
                        uint32_t aux, const uint8_t *payload, uint32_t len);
/* Write what the emulator allows; a write error closes the connection (loco_conn_closed). */
void loco_conn_flush(loco_comm_t comm, loco_conn *c);
/* Read what arrived, within a budget; frames are validated and dispatched. */
void loco_conn_read(loco_comm_t comm, loco_conn *c);
/* EOF or error (errnum, 0 = EOF): lose the peer, or not, depending on what still needs it. */
void loco_conn_closed(loco_comm_t comm, loco_conn *c, int errnum);
/* Drop the connection's peer for a protocol violation described by `what`. */
void loco_conn_violation(loco_comm_t comm, loco_conn *c, const char *what);
/* A new operation started: parked data connections deliver its first frames. */
void loco_conn_unpark(loco_comm_t comm);
/* Queue a DATA frame on data stream `stream` to the successor (zero-copy: payload must live
 * until written). */
loco_status loco_loop_send_data(loco_comm_t comm, loco_op *op, int stream, int step,
                                uint32_t chunk, const uint8_t *payload, uint32_t len,
                                loco_error *err);
/* Ensure the arena holds bytes; pointers into it are invalidated by growth, so ops carve their
 * regions once at start. */
loco_status loco_scratch_reserve(loco_comm_t comm, size_t bytes, loco_error *err);

/* wire.c: connect this epoch's mesh (control to everyone, data streams to the successor). */
loco_status loco_wire_connect(loco_comm_t comm, loco_error *err);
/* Validate an inbound HELLO against this comm; on refusal *code and reason say why. */
loco_ack_code loco_wire_check_hello(loco_comm_t comm, const loco_frame_header *h,
                                    const loco_hello *hello, char *reason, size_t cap);

/* reductions (ring.c), exposed for tests */
void loco_reduce_f32(float *dst, const float *a, const float *b, size_t n);      /* dst = a + b */
void loco_reduce_bf16(uint16_t *dst, const uint16_t *a, const uint16_t *b, size_t n);
size_t loco_dtype_size(loco_dtype dtype);

#endif /* LOCO_COLLECTIVES_COMM_IMPL_H */
