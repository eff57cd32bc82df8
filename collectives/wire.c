/* collectives/wire.c — connect one epoch's mesh and check who is on the other end.
 *
 * Given the member table, rank i dials a control connection to every rank j > i and `streams`
 * data connections to its ring successor; it accepts control connections from every j < i and
 * the data streams of its predecessor. Every connection opens with the authenticated handshake
 * of auth.c (HELLO, CHALLENGE, PROOF, ACK): both ends prove they know the run key, and the
 * acceptor checks the HELLO (run nonce, epoch, world, which connection this is). A refusal names
 * the cause (nonce, version, epoch, world, unexpected or duplicate connection, authentication);
 * "retry" refusals (a peer still in the previous epoch) are dialled again.
 * Dials, accepts and handshakes run together under one poll() loop with a deadline, so nobody
 * waits for a peer that is waiting for them. loco_wire_connect runs again for every new epoch.
 */
#define _GNU_SOURCE /* accept4 */
#include "collectives/ft_impl.h"

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
    WIRE_HANDSHAKE,      /* outbound: HELLO sent; inbound: accepted, handshake running */
    WIRE_DONE,
    WIRE_CLOSED,         /* inbound connection refused and closed */
} wire_state;

typedef struct wire_slot {
    int fd;
    wire_state state;
    loco_conn *conn; /* outbound: the connection it will become */
    loco_hs hs;
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

/* Register an established, verified connection (its frame MACs keyed by the handshake). */
static void conn_attach(loco_comm_t comm, loco_conn *c, int fd, const loco_hs *hs, bool dialer)
{
    c->fd = fd;
    c->live = true;
    loco_net_set_nonblocking(fd);
    loco_net_tune(fd, comm->cfg.peer_timeout_s);
    loco_frame_mac_init(hs, dialer, comm->cfg.integrity, &c->tx_mac, &c->rx_mac);
}

loco_ack_code loco_wire_check_hello(loco_comm_t comm, const loco_frame_header *h,
                                    const loco_hello *hello, char *reason, size_t cap)
{
    if (hello->nonce != comm->nonce) {
        snprintf(reason, cap, "run nonce 0x%016llx, this run is 0x%016llx (a process of another "
                              "run?)",
                 (unsigned long long)hello->nonce, (unsigned long long)comm->nonce);
        return LOCO_ACK_BAD_NONCE;
    }
    if ((0 != (hello->flags & LOCO_HELLO_INTEGRITY)) != comm->cfg.integrity) {
        snprintf(reason, cap, "frame integrity is %s there and %s here (set transport.integrity "
                              "the same on every member)",
                 (hello->flags & LOCO_HELLO_INTEGRITY) ? "on" : "off",
                 comm->cfg.integrity ? "on" : "off");
        return LOCO_ACK_BAD_PEER;
    }
    if (LOCO_CONN_CONTROL != hello->kind && LOCO_CONN_DATA != hello->kind) {
        snprintf(reason, cap, "a %s connection while epoch %u is being formed: retry",
                 LOCO_CONN_JOIN == hello->kind ? "joiner's" : "control-plane", comm->epoch);
        return LOCO_ACK_RETRY;
    }
    if (h->epoch > comm->epoch) {
        snprintf(reason, cap, "epoch %u, this member is still in epoch %u: retry", h->epoch,
                 comm->epoch);
        return LOCO_ACK_RETRY;
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

static loco_ack_code wire_check(void *ctx, const loco_frame_header *h, const loco_hello *hello,
                                char *reason, size_t cap)
{
    return loco_wire_check_hello(ctx, h, hello, reason, cap);
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

/* Connected: start the handshake (HELLO). */
static void wire_handshake_dialer(loco_comm_t comm, wire_slot *s)
{
    loco_conn *c = s->conn;
    loco_hello hello = {.nonce = comm->nonce, .from = (uint32_t)comm->rank,
                        .to = (uint32_t)c->peer, .world = (uint32_t)comm->world,
                        .kind = (uint16_t)c->kind,
                        .stream = (uint16_t)(LOCO_CONN_DATA == c->kind ? c->stream : 0),
                        .streams = (uint16_t)comm->cfg.streams,
                        .flags = comm->cfg.integrity ? LOCO_HELLO_INTEGRITY : 0};
    loco_hs_dial(&s->hs, s->fd, comm->key, comm->epoch, &hello);
    s->state = WIRE_HANDSHAKE;
}

/* The handshake progressed: done, failed (an error, or "retry"), or not yet. */
static loco_status wire_step_dialer(loco_comm_t comm, wire_slot *s, loco_error *err)
{
    loco_hs_result r = loco_hs_step(&s->hs, NULL, NULL);
    if (LOCO_HS_AGAIN == r) {
        return LOCO_OK;
    }
    if (LOCO_HS_OK == r) {
        conn_attach(comm, s->conn, s->fd, &s->hs, true);
        s->state = WIRE_DONE;
        return LOCO_OK;
    }
    close(s->fd);
    s->fd = -1;
    if (LOCO_ACK_RETRY == s->hs.code || LOCO_ERR_PEER_LOST == s->hs.status) {
        s->state = WIRE_RETRY; /* a peer still in the last epoch, or one that hung up early */
        s->retry_ns = loco_now_ns() + 20000000ull;
        s->last_errno = LOCO_ERR_PEER_LOST == s->hs.status ? ECONNRESET : EAGAIN;
        return LOCO_OK;
    }
    return loco_error_set(err, s->hs.status, "%s refused our connection: %s", s->conn->name,
                          s->hs.reason);
}

/* ---- acceptor side -------------------------------------------------------------------------- */

static void wire_step_acceptor(loco_comm_t comm, wire_slot *s)
{
    loco_hs_result r = loco_hs_step(&s->hs, wire_check, comm);
    if (LOCO_HS_AGAIN == r) {
        return;
    }
    if (LOCO_HS_ERROR == r) {
        if (LOCO_ACK_RETRY != s->hs.code && LOCO_ERR_PEER_LOST != s->hs.status) {
            char who[96];
            loco_net_peer_name(s->fd, who, sizeof who);
            LOCO_WARN("rank %d refused a connection from %s: %s", comm->rank, who, s->hs.reason);
        }
        close(s->fd);
        s->fd = -1;
        s->state = WIRE_CLOSED;
        return;
    }
    const loco_hello *hello = &s->hs.hello;
    loco_conn *c = LOCO_CONN_CONTROL == hello->kind ? comm->ctl[hello->from]
                                                     : comm->in[hello->stream];
    if (c->fd >= 0) { /* two handshakes for one connection raced: keep the first */
        close(s->fd);
        s->fd = -1;
        s->state = WIRE_CLOSED;
        return;
    }
    conn_attach(comm, c, s->fd, &s->hs, false);
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
        if (comm->ft && loco_ftc_superseded(comm)) { /* the coordinator planned again */
            st = loco_error_set(err, LOCO_ERR_ABORTED, "rank %d: epoch %u was re-planned while "
                                                       "connecting", comm->rank, comm->epoch);
            break;
        }
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
            if (WIRE_RETRY == out[i].state) {
                timeout_ms = 10;
            }
            if (WIRE_CONNECTING == out[i].state) {
                pfd[np++] = (struct pollfd){.fd = out[i].fd, .events = POLLOUT};
            } else if (WIRE_HANDSHAKE == out[i].state) {
                pfd[np++] = (struct pollfd){.fd = out[i].fd, .events = POLLIN};
            }
        }
        for (int i = 0; i < nin; i++) {
            if (WIRE_HANDSHAKE == in[i].state) {
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
                    if (WIRE_HANDSHAKE == in[i].state) {
                        in[w++] = in[i];
                    }
                }
                nin = w;
            }
            if (nin == cap_in) {
                close(fd);
                continue;
            }
            in[nin] = (wire_slot){.fd = fd, .state = WIRE_HANDSHAKE,
                                  .deadline_ns = loco_now_ns() + 5000000000ull};
            loco_hs_accept(&in[nin].hs, fd, comm->key, comm->nonce);
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
                wire_handshake_dialer(comm, s);
                st = wire_step_dialer(comm, s, err);
            } else if (WIRE_HANDSHAKE == s->state) {
                st = wire_step_dialer(comm, s, err);
            }
        }
        /* inbound handshakes */
        for (int i = 0; i < nin && LOCO_OK == st; i++) {
            if (WIRE_HANDSHAKE != in[i].state) {
                continue;
            }
            if (loco_now_ns() > in[i].deadline_ns) {
                char who[96];
                loco_net_peer_name(in[i].fd, who, sizeof who);
                LOCO_WARN("rank %d dropped a connection from %s: no handshake within 5 s",
                          comm->rank, who);
                close(in[i].fd);
                in[i].state = WIRE_CLOSED;
                continue;
            }
            wire_step_acceptor(comm, &in[i]);
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
        if (WIRE_HANDSHAKE == in[i].state) {
            close(in[i].fd);
        }
    }
    free(out);
    free(in);
    free(pfd);
    return st;
}
