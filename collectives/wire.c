/* collectives/wire.c — connect one epoch's mesh and check who is on the other end.
 *
 * Given the member table, rank i dials a control connection to every rank j > i and `streams`
 * data connections to its ring successor; it accepts control connections from every j < i and
 * the data streams of its predecessor. Every connection opens with a handshake:
 *
 *   dialer   -> HELLO {run nonce, from, to, world, kind, stream, streams, caps} (epoch in header)
 *   acceptor -> ACK {code 0} or ACK {code, one-line reason}, then closes on refusal
 *
 * A refusal names the cause (nonce, version, epoch, world, unexpected or duplicate connection).
 * Dials, accepts and handshakes run together under one poll() loop with a deadline, so nobody
 * waits for a peer that is waiting for them.
 *
 * Authentication (issue 7) goes in wire_handshake_dialer / wire_handshake_acceptor: after the
 * HELLO/ACK exchange, an HMAC challenge-response over (nonce, HELLO bytes, fresh challenges)
 * with the run key; the connection is registered only when both directions verified.
 */
#define _GNU_SOURCE /* accept4 */
#include "collectives/comm_impl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef enum wire_state {
    WIRE_CONNECTING = 0, /* outbound: connect() in progress */
    WIRE_RETRY,          /* outbound: refused, dial again at retry_ns */
    WIRE_AWAIT_ACK,      /* outbound: HELLO sent */
    WIRE_AWAIT_HELLO,    /* inbound: accepted, reading HELLO */
    WIRE_DONE,
    WIRE_CLOSED,         /* inbound connection refused and closed */
} wire_state;

#define WIRE_MSG_MAX (LOCO_FRAME_HEADER_BYTES + 4 + LOCO_REASON_MAX)

typedef struct wire_slot {
    int fd;
    wire_state state;
    loco_conn *conn; /* outbound: the connection it will become; inbound: set after HELLO */
    uint8_t buf[WIRE_MSG_MAX];
    size_t got;
    uint64_t retry_ns, deadline_ns;
    int last_errno;
} wire_slot;

static void conn_name(loco_comm_t comm, loco_conn *c)
{
    const loco_member *m = &comm->members[c->peer];
    if (LOCO_CONN_CONTROL == c->kind) {
        snprintf(c->name, sizeof c->name, "rank %d (%s:%u) control", c->peer, m->host, m->port);
    } else {
        snprintf(c->name, sizeof c->name, "rank %d (%s:%u) data stream %d %s", c->peer, m->host,
                 m->port, c->stream, c->outbound ? "out" : "in");
    }
}

/* Register an established, verified connection. */
static void conn_attach(loco_comm_t comm, loco_conn *c, int fd)
{
    c->fd = fd;
    c->live = true;
    loco_net_set_nonblocking(fd);
    loco_net_tune(fd, comm->cfg.peer_timeout_s);
}

loco_ack_code loco_wire_check_hello(loco_comm_t comm, const loco_frame_header *h,
                                    const loco_hello *hello, char *reason, size_t cap)
{
    if (LOCO_FRAME_HELLO != h->type) {
        snprintf(reason, cap, "expected HELLO, got a %s frame", loco_frame_type_name(h->type));
        return LOCO_ACK_BAD_PEER;
    }
    if (hello->nonce != comm->nonce) {
        snprintf(reason, cap, "run nonce 0x%016llx, this run is 0x%016llx (a process of another "
                              "run?)",
                 (unsigned long long)hello->nonce, (unsigned long long)comm->nonce);
        return LOCO_ACK_BAD_NONCE;
    }
    if (h->epoch != comm->epoch) {
        snprintf(reason, cap, "epoch %u, this member is in epoch %u", h->epoch, comm->epoch);
        return LOCO_ACK_BAD_EPOCH;
    }
    if (hello->world != (uint32_t)comm->world || hello->to != (uint32_t)comm->rank) {
        snprintf(reason, cap, "addressed to rank %u of %u, this is rank %d of %d", hello->to,
                 hello->world, comm->rank, comm->world);
        return LOCO_ACK_BAD_WORLD;
    }
    int from = (int)hello->from;
    if (LOCO_CONN_CONTROL == hello->kind) {
        if (from >= comm->rank) {
            snprintf(reason, cap, "control connection from rank %d (only lower ranks dial)", from);
            return LOCO_ACK_BAD_PEER;
        }
        if (comm->ctl[from]->fd >= 0) {
            snprintf(reason, cap, "duplicate control connection from rank %d", from);
            return LOCO_ACK_BAD_PEER;
        }
        return LOCO_ACK_OK;
    }
    if (from != comm->prev || hello->streams != (uint32_t)comm->cfg.streams) {
        snprintf(reason, cap, "data stream from rank %d with %u streams; expected rank %d with %d",
                 from, hello->streams, comm->prev, comm->cfg.streams);
        return LOCO_ACK_BAD_PEER;
    }
    if (comm->in[hello->stream]->fd >= 0) {
        snprintf(reason, cap, "duplicate data stream %u from rank %d", hello->stream, from);
        return LOCO_ACK_BAD_PEER;
    }
    return LOCO_ACK_OK;
}

/* ---- dialer side ---------------------------------------------------------------------------- */

static void wire_dial(loco_comm_t comm, wire_slot *s)
{
    const loco_member *m = &comm->members[s->conn->peer];
    loco_error e = {0};
    s->fd = -1;
    loco_net_connect_start(m->host, m->port, &s->fd, &e);
    if (s->fd < 0) {
        s->state = WIRE_RETRY;
        s->retry_ns = loco_now_ns() + 100000000ull;
        s->last_errno = ECONNREFUSED;
        return;
    }
    s->state = WIRE_CONNECTING;
}

/* Connected: send HELLO (it fits the socket buffer of a fresh connection). */
static loco_status wire_handshake_dialer(loco_comm_t comm, wire_slot *s, loco_error *err)
{
    loco_conn *c = s->conn;
    loco_hello hello = {.nonce = comm->nonce, .from = (uint32_t)comm->rank,
                        .to = (uint32_t)c->peer, .world = (uint32_t)comm->world,
                        .kind = (uint16_t)c->kind,
                        .stream = (uint16_t)(LOCO_CONN_DATA == c->kind ? c->stream : 0),
                        .streams = (uint16_t)comm->cfg.streams, .caps = 0};
    uint8_t payload[LOCO_HELLO_BYTES];
    loco_hello_encode(&hello, payload);
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_HELLO,
                           .epoch = comm->epoch, .length = LOCO_HELLO_BYTES};
    loco_error e = {0};
    if (LOCO_OK != loco_net_send_frame(s->fd, &h, payload, s->deadline_ns, c->name, &e)) {
        return loco_error_set(err, LOCO_ERR_PEER_LOST, "wiring: %s", e.msg);
    }
    s->state = WIRE_AWAIT_ACK;
    s->got = 0;
    return LOCO_OK;
}

/* Read what is available into s->buf; returns true once a whole frame is there. */
static loco_status wire_read_frame(wire_slot *s, const char *who, bool *complete,
                                   loco_frame_header *h, loco_error *err)
{
    *complete = false;
    for (;;) {
        size_t need = LOCO_FRAME_HEADER_BYTES;
        if (s->got >= LOCO_FRAME_HEADER_BYTES) {
            loco_error e = {0};
            loco_status st = loco_frame_header_decode(s->buf, WIRE_MSG_MAX - LOCO_FRAME_HEADER_BYTES,
                                                      h, &e);
            if (LOCO_OK != st) {
                return loco_error_set(err, st, "%s: %s", who, e.msg);
            }
            need += h->length;
            if (s->got == need) {
                *complete = true;
                return LOCO_OK;
            }
        }
        ssize_t n = recv(s->fd, s->buf + s->got, need - s->got, 0);
        if (n > 0) {
            s->got += (size_t)n;
            continue;
        }
        if (0 == n) {
            return loco_error_set(err, LOCO_ERR_PEER_LOST, "%s closed the connection during the "
                                                           "handshake", who);
        }
        if (EAGAIN == errno || EWOULDBLOCK == errno || EINTR == errno) {
            return LOCO_OK;
        }
        return loco_error_errno(err, LOCO_ERR_PEER_LOST, errno, "%s: handshake", who);
    }
}

static loco_status wire_on_ack(loco_comm_t comm, wire_slot *s, loco_error *err)
{
    bool complete = false;
    loco_frame_header h;
    LOCO_TRY(wire_read_frame(s, s->conn->name, &complete, &h, err));
    if (!complete) {
        return LOCO_OK;
    }
    uint32_t code = 0;
    char reason[LOCO_REASON_MAX + 1];
    loco_error e = {0};
    if (LOCO_FRAME_ACK != h.type ||
        LOCO_OK != loco_ack_decode(s->buf + LOCO_FRAME_HEADER_BYTES, h.length, &code, reason, &e)) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "%s answered the handshake with %s%s%s",
                              s->conn->name, loco_frame_type_name(h.type), e.msg[0] ? ": " : "",
                              e.msg);
    }
    if (LOCO_ACK_OK != code) {
        loco_status st = LOCO_ACK_BAD_NONCE == code     ? LOCO_ERR_AUTH
                         : LOCO_ACK_BAD_VERSION == code ? LOCO_ERR_VERSION
                                                        : LOCO_ERR_PROTOCOL;
        return loco_error_set(err, st, "%s refused our connection: %s", s->conn->name, reason);
    }
    conn_attach(comm, s->conn, s->fd);
    s->state = WIRE_DONE;
    return LOCO_OK;
}

/* ---- acceptor side -------------------------------------------------------------------------- */

static void wire_refuse(int fd, loco_ack_code code, const char *reason, const char *who)
{
    uint8_t payload[4 + LOCO_REASON_MAX];
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_ACK};
    h.length = (uint32_t)loco_ack_encode(code, reason, payload);
    loco_net_send_frame(fd, &h, payload, loco_now_ns() + 1000000000ull, who, NULL);
}

static void wire_handshake_acceptor(loco_comm_t comm, wire_slot *s)
{
    char who[96];
    loco_net_peer_name(s->fd, who, sizeof who);
    bool complete = false;
    loco_frame_header h;
    loco_error e = {0};
    loco_status st = wire_read_frame(s, who, &complete, &h, &e);
    if (LOCO_OK == st && !complete) {
        return;
    }
    loco_hello hello;
    char reason[LOCO_REASON_MAX + 1] = "";
    loco_ack_code code = LOCO_ACK_OK;
    if (LOCO_OK != st) {
        loco_copy_str(reason, sizeof reason, e.msg);
        code = LOCO_ERR_VERSION == st ? LOCO_ACK_BAD_VERSION : LOCO_ACK_BAD_PEER;
    } else if (LOCO_FRAME_HELLO != h.type) {
        snprintf(reason, sizeof reason, "expected HELLO, got %s", loco_frame_type_name(h.type));
        code = LOCO_ACK_BAD_PEER;
    } else if (LOCO_OK != loco_hello_decode(s->buf + LOCO_FRAME_HEADER_BYTES, h.length, &hello,
                                            &e)) {
        loco_copy_str(reason, sizeof reason, e.msg);
        code = LOCO_ACK_BAD_PEER;
    } else {
        code = loco_wire_check_hello(comm, &h, &hello, reason, sizeof reason);
    }
    if (LOCO_ACK_OK != code) {
        LOCO_WARN("rank %d refused a connection from %s: %s", comm->rank, who, reason);
        wire_refuse(s->fd, code, reason, who);
        close(s->fd);
        s->fd = -1;
        s->state = WIRE_CLOSED;
        return;
    }
    loco_conn *c = LOCO_CONN_CONTROL == hello.kind ? comm->ctl[hello.from] : comm->in[hello.stream];
    uint8_t payload[4];
    loco_frame_header ack = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_ACK,
                             .epoch = comm->epoch};
    ack.length = (uint32_t)loco_ack_encode(LOCO_ACK_OK, "", payload);
    if (LOCO_OK != loco_net_send_frame(s->fd, &ack, payload, s->deadline_ns, c->name, NULL)) {
        close(s->fd);
        s->fd = -1;
        s->state = WIRE_CLOSED;
        return;
    }
    conn_attach(comm, c, s->fd);
    s->conn = c;
    s->state = WIRE_DONE;
}

/* ---- the mesh ------------------------------------------------------------------------------- */

/* What is still missing, for the timeout message. */
static void wire_missing(loco_comm_t comm, const wire_slot *out, int nout, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < nout && n + 80 < cap; i++) {
        if (WIRE_DONE != out[i].state) {
            n += (size_t)snprintf(buf + n, cap - n, "%s%s (%s)", n ? "; " : "", out[i].conn->name,
                                  out[i].last_errno ? strerror(out[i].last_errno) : "no answer");
        }
    }
    for (int r = 0; r < comm->rank && n + 80 < cap; r++) {
        if (comm->ctl[r]->fd < 0) {
            n += (size_t)snprintf(buf + n, cap - n, "%s%s never dialled in", n ? "; " : "",
                                  comm->ctl[r]->name);
        }
    }
    for (int k = 0; k < comm->cfg.streams && comm->world > 1 && n + 80 < cap; k++) {
        if (comm->in[k]->fd < 0) {
            n += (size_t)snprintf(buf + n, cap - n, "%s%s never dialled in", n ? "; " : "",
                                  comm->in[k]->name);
        }
    }
}

static int wire_inbound_expected(loco_comm_t comm)
{
    return comm->world > 1 ? comm->rank + comm->cfg.streams : 0;
}

static int wire_inbound_done(loco_comm_t comm)
{
    int n = 0;
    for (int r = 0; r < comm->rank; r++) {
        n += comm->ctl[r]->fd >= 0;
    }
    for (int k = 0; k < comm->cfg.streams && comm->world > 1; k++) {
        n += comm->in[k]->fd >= 0;
    }
    return n;
}

loco_status loco_wire_connect(loco_comm_t comm, loco_error *err)
{
    int K = comm->cfg.streams;
    for (int i = 0; i < comm->nconns; i++) {
        loco_conn *c = &comm->conns[i];
        if (c->peer >= 0) {
            conn_name(comm, c);
        }
    }
    if (1 == comm->world) {
        return LOCO_OK;
    }
    int nout = (comm->world - 1 - comm->rank) + K;
    int cap_in = wire_inbound_expected(comm) + 16;
    wire_slot *out = calloc((size_t)nout, sizeof *out);
    wire_slot *in = calloc((size_t)cap_in, sizeof *in);
    struct pollfd *pfd = calloc((size_t)(nout + cap_in + 1), sizeof *pfd);
    if (NULL == out || NULL == in || NULL == pfd) {
        free(out);
        free(in);
        free(pfd);
        return LOCO_ERR_NOMEM;
    }
    uint64_t deadline = loco_now_ns() + (uint64_t)(comm->cfg.connect_timeout_s * 1e9);
    int o = 0;
    for (int r = comm->rank + 1; r < comm->world; r++) {
        out[o++].conn = comm->ctl[r];
    }
    for (int k = 0; k < K; k++) {
        out[o++].conn = comm->out[k];
    }
    for (int i = 0; i < nout; i++) {
        out[i].deadline_ns = deadline;
        wire_dial(comm, &out[i]);
    }
    int nin = 0;
    loco_status st = LOCO_OK;
    for (;;) {
        int done_out = 0;
        for (int i = 0; i < nout; i++) {
            done_out += WIRE_DONE == out[i].state;
        }
        if (done_out == nout && wire_inbound_done(comm) == wire_inbound_expected(comm)) {
            break;
        }
        uint64_t now = loco_now_ns();
        if (now >= deadline) {
            char missing[400];
            wire_missing(comm, out, nout, missing, sizeof missing);
            st = loco_error_set(err, LOCO_ERR_TIMEOUT,
                                "rank %d: timed out after %.0f s connecting epoch %u: %s",
                                comm->rank, comm->cfg.connect_timeout_s, comm->epoch, missing);
            break;
        }
        /* poll set: listener, outbound in progress, inbound handshakes */
        int np = 0;
        pfd[np++] = (struct pollfd){.fd = comm->listen_fd, .events = POLLIN};
        int timeout_ms = 100;
        for (int i = 0; i < nout; i++) {
            if (WIRE_RETRY == out[i].state && now >= out[i].retry_ns) {
                wire_dial(comm, &out[i]);
            }
            if (WIRE_CONNECTING == out[i].state) {
                pfd[np++] = (struct pollfd){.fd = out[i].fd, .events = POLLOUT};
            } else if (WIRE_AWAIT_ACK == out[i].state) {
                pfd[np++] = (struct pollfd){.fd = out[i].fd, .events = POLLIN};
            }
        }
        for (int i = 0; i < nin; i++) {
            if (WIRE_AWAIT_HELLO == in[i].state) {
                pfd[np++] = (struct pollfd){.fd = in[i].fd, .events = POLLIN};
            }
        }
        poll(pfd, (nfds_t)np, timeout_ms);
        /* accept */
        for (;;) {
            int fd = accept4(comm->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0) {
                break;
            }
            if (nin == cap_in) { /* compact refused slots */
                int w = 0;
                for (int i = 0; i < nin; i++) {
                    if (WIRE_AWAIT_HELLO == in[i].state) {
                        in[w++] = in[i];
                    }
                }
                nin = w;
            }
            if (nin == cap_in) {
                close(fd);
                continue;
            }
            in[nin] = (wire_slot){.fd = fd, .state = WIRE_AWAIT_HELLO,
                                  .deadline_ns = loco_now_ns() + 5000000000ull};
            nin++;
        }
        /* outbound progress */
        for (int i = 0; i < nout && LOCO_OK == st; i++) {
            wire_slot *s = &out[i];
            if (WIRE_CONNECTING == s->state) {
                int soerr = 0;
                socklen_t len = sizeof soerr;
                struct pollfd p = {.fd = s->fd, .events = POLLOUT};
                if (1 != poll(&p, 1, 0)) {
                    continue;
                }
                getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
                if (0 != soerr) {
                    close(s->fd);
                    s->fd = -1;
                    s->last_errno = soerr;
                    s->state = WIRE_RETRY;
                    s->retry_ns = loco_now_ns() + 100000000ull;
                    continue;
                }
                st = wire_handshake_dialer(comm, s, err);
            } else if (WIRE_AWAIT_ACK == s->state) {
                st = wire_on_ack(comm, s, err);
            }
        }
        /* inbound handshakes */
        for (int i = 0; i < nin && LOCO_OK == st; i++) {
            if (WIRE_AWAIT_HELLO != in[i].state) {
                continue;
            }
            if (loco_now_ns() > in[i].deadline_ns) {
                char who[96];
                loco_net_peer_name(in[i].fd, who, sizeof who);
                LOCO_WARN("rank %d dropped a connection from %s: no HELLO within 5 s",
                          comm->rank, who);
                close(in[i].fd);
                in[i].state = WIRE_CLOSED;
                continue;
            }
            wire_handshake_acceptor(comm, &in[i]);
        }
        if (LOCO_OK != st) {
            break;
        }
    }
    for (int i = 0; i < nout; i++) {
        if (WIRE_DONE != out[i].state && out[i].fd >= 0) {
            close(out[i].fd);
        }
    }
    for (int i = 0; i < nin; i++) {
        if (WIRE_AWAIT_HELLO == in[i].state) {
            close(in[i].fd);
        }
    }
    free(out);
    free(in);
    free(pfd);
    return st;
}
