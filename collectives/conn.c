/* collectives/conn.c — one connection's bytes: the send queues (zero-copy DATA, copied control
 * frames) gated by the link emulator, the receive state machine (32-byte header validated at
 * once, payload straight to its destination, DATA for the next operation parked), and what a
 * closed or misbehaving connection means. Called only from the event-loop thread (loop.c).
 *
 * With transport.integrity every frame is followed by a 16-byte MAC (auth.c: Poly1305 with a
 * one-time key per frame from the connection's session key and a frame counter), computed when
 * the frame is queued and checked before its payload is used: a forged, corrupted, replayed,
 * reordered or dropped frame drops the peer.
 */
#define _GNU_SOURCE
#include "collectives/comm_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define READ_BUDGET (8u << 20) /* bytes per connection per wake-up, for fairness */
#define MAX_IOV 64

static void conn_set_events(loco_comm_t comm, loco_conn *c, uint32_t events)
{
    if (c->fd < 0 || events == c->events) {
        return;
    }
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)(c - comm->conns)};
    epoll_ctl(comm->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = events;
}

/* Stop using a connection. Data connections of a broken epoch stay open (so peers do not read
 * our silence as a death); `close_fd` closes it. */
void loco_conn_stop(loco_comm_t comm, loco_conn *c, bool close_fd)
{
    if (c->fd >= 0 && (c->live || close_fd)) {
        epoll_ctl(comm->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->events = 0;
    }
    c->live = false;
    c->tx_head = 0;
    c->tx_count = 0;
    c->rx_parked = false;
    if (close_fd && c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static loco_link *conn_link(loco_comm_t comm, const loco_conn *c) { return &comm->links[c->peer]; }

static uint32_t tag_bytes(const loco_conn *c) { return c->tx_mac.on ? LOCO_FRAME_MAC_BYTES : 0; }

static void count_sent(loco_comm_t comm, uint64_t n)
{
    __atomic_fetch_add(&comm->io_sent, n, __ATOMIC_RELAXED);
}

static void count_received(loco_comm_t comm, uint64_t n)
{
    __atomic_fetch_add(&comm->io_received, n, __ATOMIC_RELAXED);
}

/* ---- control frames ------------------------------------------------------------------------- */

/* Queue a control frame (copied) on a control connection. */
void loco_conn_send_ctl(loco_comm_t comm, loco_conn *c, loco_frame_type type, uint64_t seq,
                          uint32_t aux, const uint8_t *payload, uint32_t len)
{
    if (!c->live) {
        return;
    }
    uint32_t tag = tag_bytes(c);
    size_t need = c->out_len + LOCO_FRAME_HEADER_BYTES + len + tag;
    if (need > c->out_cap) {
        if (0 == c->out_off && need > 16u << 20) {
            return; /* a peer that reads nothing: it will time out */
        }
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        need = c->out_len + LOCO_FRAME_HEADER_BYTES + len + tag;
        if (need > c->out_cap) {
            size_t cap = need * 2;
            uint8_t *grown = realloc(c->out, cap);
            if (NULL == grown) {
                return;
            }
            c->out = grown;
            c->out_cap = cap;
        }
    }
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = (uint8_t)type,
                           .epoch = comm->epoch, .length = len, .seq = seq, .sig = aux};
    uint8_t *frame = c->out + c->out_len;
    loco_frame_header_encode(&h, frame);
    if (len > 0) {
        memcpy(frame + LOCO_FRAME_HEADER_BYTES, payload, len);
    }
    if (tag > 0) {
        loco_frame_mac_tag(&c->tx_mac, frame, frame + LOCO_FRAME_HEADER_BYTES, len,
                           frame + LOCO_FRAME_HEADER_BYTES + len);
    }
    c->out_len += LOCO_FRAME_HEADER_BYTES + len + tag;
    loco_link *l = conn_link(comm, c);
    if (l->active) {
        loco_link_enqueue(l, c->stream, LOCO_FRAME_HEADER_BYTES + len + tag, loco_now_ns());
    }
}

/* Before blaming a peer for a closed data stream, read what the control connections already
 * hold: an ABORT or a BYE explains the close better (epoll may report the data stream first). */
static void conn_drain_control(loco_comm_t comm)
{
    for (int r = 0; r < comm->world; r++) {
        if (r != comm->rank && comm->ctl[r]->live) {
            loco_conn_read(comm, comm->ctl[r]);
        }
    }
}

/* A connection reported EOF or an error. Whether that loses the peer depends on the
 * connection: a control connection without a goodbye, yes; a data connection only if the
 * running operation still needs it (a peer that finished and freed its communicator closes its
 * streams after everything we needed from it arrived). */
void loco_conn_closed(loco_comm_t comm, loco_conn *c, int errnum)
{
    char cause[128];
    loco_copy_str(cause, sizeof cause, errnum ? strerror(errnum) : "connection closed");
    int peer = c->peer;
    bool left = LOCO_PEER_LEFT == comm->peer_state[peer];
    if (LOCO_CONN_CONTROL == c->kind) {
        if (left) {
            loco_conn_stop(comm, c, true);
            return;
        }
        loco_loop_peer_failed(comm, peer, LOCO_ERR_PEER_LOST, "peer lost: %s: %s", c->name, cause);
        return;
    }
    bool had_tx = c->tx_count > 0;
    loco_conn_stop(comm, c, true);
    conn_drain_control(comm);
    left = LOCO_PEER_LEFT == comm->peer_state[peer];
    loco_request *cur = comm->cur;
    if (NULL == cur || comm->broken) {
        return;
    }
    if (c->outbound && had_tx) {
        loco_loop_peer_failed(comm, peer, LOCO_ERR_PEER_LOST, "peer %s: %s: %s with data unsent",
                         left ? "left" : "lost", c->name, cause);
        return;
    }
    if (!c->outbound && cur->op.recv_done < cur->op.recv_expected) {
        bool all_closed = true;
        for (int k = 0; k < comm->cfg.streams; k++) {
            all_closed = all_closed && comm->in[k]->fd < 0;
        }
        if (all_closed) {
            loco_loop_peer_failed(comm, peer, LOCO_ERR_PEER_LOST,
                             "peer %s: rank %d closed its data streams during %s #%llu (%s)",
                             left ? "left" : "lost", peer, loco_op_name(cur->op.kind),
                             (unsigned long long)cur->op.seq, cause);
        }
    }
}

/* ---- sending -------------------------------------------------------------------------------- */

loco_status loco_loop_send_data(loco_comm_t comm, loco_op *op, int stream, int step,
                                uint32_t chunk, const uint8_t *payload, uint32_t len,
                                loco_error *err)
{
    loco_conn *c = comm->out[stream];
    if (!c->live) {
        return loco_error_set(err, LOCO_ERR_PEER_LOST, "peer %s: %s is closed",
                              LOCO_PEER_LEFT == comm->peer_state[c->peer] ? "left" : "lost",
                              c->name);
    }
    if (c->tx_count == c->tx_cap) {
        uint32_t cap = c->tx_cap ? 2 * c->tx_cap : 64;
        loco_tx_item *q = malloc(cap * sizeof *q);
        if (NULL == q) {
            return loco_error_set(err, LOCO_ERR_NOMEM, "no memory for a send queue");
        }
        for (uint32_t i = 0; i < c->tx_count; i++) {
            q[i] = c->txq[(c->tx_head + i) % c->tx_cap];
        }
        free(c->txq);
        c->txq = q;
        c->tx_cap = cap;
        c->tx_head = 0;
    }
    loco_tx_item *it = &c->txq[(c->tx_head + c->tx_count) % c->tx_cap];
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_DATA,
                           .step = (uint16_t)step, .epoch = comm->epoch, .length = len,
                           .seq = op->seq, .chunk = chunk, .sig = op->sig};
    loco_frame_header_encode(&h, it->hdr);
    it->payload = payload;
    it->len = len;
    it->done = 0;
    if (c->tx_mac.on) {
        loco_frame_mac_tag(&c->tx_mac, it->hdr, payload, len, it->tag);
    }
    c->tx_count++;
    op->tx_outstanding++;
    loco_link *l = conn_link(comm, c);
    if (l->active) {
        loco_link_enqueue(l, c->stream, LOCO_FRAME_HEADER_BYTES + (uint64_t)len + tag_bytes(c),
                          loco_now_ns());
    }
    return LOCO_OK;
}

/* How many bytes the link emulator lets this connection write now. */
static uint64_t conn_allowance(loco_comm_t comm, const loco_conn *c)
{
    uint64_t released = loco_link_released(conn_link(comm, c), c->stream);
    return UINT64_MAX == released ? UINT64_MAX : released - c->tx_written;
}

/* Write iovecs: returns the bytes written, 0 when the socket is full (want_out is set), or -1
 * on an error (*errnum). */
static ssize_t conn_writev(loco_comm_t comm, loco_conn *c, struct iovec *iov, int n, int *errnum)
{
    for (;;) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            c->tx_written += (uint64_t)w;
            count_sent(comm, (uint64_t)w);
            return w;
        }
        if (w < 0 && EINTR == errno) {
            continue;
        }
        if (w < 0 && (EAGAIN == errno || EWOULDBLOCK == errno)) {
            c->want_out = true;
            return 0;
        }
        *errnum = w < 0 ? errno : EPIPE;
        return -1;
    }
}

/* Data connection: gather queued items into iovecs and write as much as allowed. */
static bool conn_write_data(loco_comm_t comm, loco_conn *c, int *errnum)
{
    loco_op *op = NULL != comm->cur ? &comm->cur->op : NULL;
    while (c->tx_count > 0) {
        uint64_t allow = conn_allowance(comm, c);
        if (0 == allow) {
            return true;
        }
        struct iovec iov[MAX_IOV];
        int n = 0;
        uint64_t total = 0;
        uint32_t tag = tag_bytes(c);
        for (uint32_t i = 0; i < c->tx_count && n + 3 <= MAX_IOV && total < allow; i++) {
            loco_tx_item *it = &c->txq[(c->tx_head + i) % c->tx_cap];
            uint32_t done = it->done;
            uint32_t end = LOCO_FRAME_HEADER_BYTES + it->len;
            if (done < LOCO_FRAME_HEADER_BYTES) {
                iov[n++] = (struct iovec){it->hdr + done, LOCO_FRAME_HEADER_BYTES - done};
                done = LOCO_FRAME_HEADER_BYTES;
                total += iov[n - 1].iov_len;
            }
            if (done < end) {
                uint32_t off = done - LOCO_FRAME_HEADER_BYTES;
                iov[n++] = (struct iovec){(void *)(it->payload + off), it->len - off};
                done = end;
                total += iov[n - 1].iov_len;
            }
            if (tag > 0 && done < end + tag) {
                iov[n++] = (struct iovec){it->tag + (done - end), end + tag - done};
                total += iov[n - 1].iov_len;
            }
        }
        for (uint64_t excess = total > allow ? total - allow : 0; excess > 0;) {
            if (iov[n - 1].iov_len <= excess) { /* trim to the allowance from the end */
                excess -= iov[n - 1].iov_len;
                n--;
            } else {
                iov[n - 1].iov_len -= (size_t)excess;
                excess = 0;
            }
        }
        ssize_t w = conn_writev(comm, c, iov, n, errnum);
        if (w <= 0) {
            return 0 == w;
        }
        if (NULL != op) {
            op->info.bytes_sent += (uint64_t)w;
            op->last_progress_ns = loco_now_ns();
        }
        uint64_t left = (uint64_t)w;
        while (left > 0 && c->tx_count > 0) {
            loco_tx_item *it = &c->txq[c->tx_head];
            uint64_t rest = LOCO_FRAME_HEADER_BYTES + (uint64_t)it->len + tag - it->done;
            uint64_t take = left < rest ? left : rest;
            it->done += (uint32_t)take;
            left -= take;
            if (it->done == LOCO_FRAME_HEADER_BYTES + it->len + tag) {
                if (NULL != op) {
                    op->tx_outstanding--;
                    op->info.payload_sent += it->len;
                }
                c->tx_head = (c->tx_head + 1) % c->tx_cap;
                c->tx_count--;
            }
        }
    }
    c->want_out = false;
    return true;
}

/* Control connection: write the copied frames as far as allowed. */
static bool conn_write_ctl(loco_comm_t comm, loco_conn *c, int *errnum)
{
    while (c->out_off < c->out_len) {
        uint64_t allow = conn_allowance(comm, c);
        size_t len = c->out_len - c->out_off;
        if (allow < len) {
            len = (size_t)allow;
        }
        if (0 == len) {
            return true;
        }
        struct iovec iov = {c->out + c->out_off, len};
        ssize_t w = conn_writev(comm, c, &iov, 1, errnum);
        if (w <= 0) {
            return 0 == w;
        }
        c->out_off += (size_t)w;
    }
    c->out_off = c->out_len = 0;
    c->want_out = false;
    return true;
}

void loco_conn_flush(loco_comm_t comm, loco_conn *c)
{
    if (!c->live) {
        return;
    }
    int errnum = 0;
    bool ok = LOCO_CONN_CONTROL == c->kind ? conn_write_ctl(comm, c, &errnum)
                                           : conn_write_data(comm, c, &errnum);
    if (!ok) {
        loco_conn_closed(comm, c, errnum);
        return;
    }
    conn_set_events(comm, c, EPOLLIN | EPOLLRDHUP | (c->want_out ? EPOLLOUT : 0u));
}

/* ---- receiving ------------------------------------------------------------------------------ */

void loco_conn_violation(loco_comm_t comm, loco_conn *c, const char *what)
{
    loco_loop_peer_failed(comm, c->peer, LOCO_ERR_PEER_LOST, "dropped %s: protocol violation: %s",
                     c->name, what);
}

/* A DATA header on a data connection: accept it for the running op, park it for the next one,
 * or reject it. Returns false if the connection must stop reading for now. */
static bool conn_data_header(loco_comm_t comm, loco_conn *c)
{
    const loco_frame_header *h = &c->rx_frame;
    char why[300];
    if (LOCO_FRAME_DATA != h->type || c->outbound) {
        snprintf(why, sizeof why, "unexpected %s frame on a %s data stream",
                 loco_frame_type_name(h->type), c->outbound ? "sending" : "receiving");
        loco_conn_violation(comm, c, why);
        return false;
    }
    if (h->epoch != comm->epoch) {
        snprintf(why, sizeof why, "frame of epoch %u, this member is in epoch %u", h->epoch,
                 comm->epoch);
        loco_conn_violation(comm, c, why);
        return false;
    }
    loco_request *cur = comm->cur;
    uint64_t expect = NULL != cur ? cur->op.seq : comm->seq_done + 1;
    uint64_t next_op = NULL != cur ? cur->op.seq + 1 : comm->seq_done + 1;
    if (h->seq == next_op) {
        c->rx_parked = true; /* the next operation: wait until it starts here */
        conn_set_events(comm, c, c->want_out ? EPOLLOUT : 0u);
        return false;
    }
    if (NULL == cur || h->seq != cur->op.seq) {
        snprintf(why, sizeof why, "frame of operation %llu, expected %llu",
                 (unsigned long long)h->seq, (unsigned long long)expect);
        loco_conn_violation(comm, c, why);
        return false;
    }
    loco_error e = {0};
    if (LOCO_OK != loco_op_accept_header(comm, &cur->op, c, &e)) {
        loco_loop_peer_failed(comm, c->peer, LOCO_ERR_PEER_LOST, "dropped %s: protocol violation: %s",
                         c->name, e.msg);
        return false;
    }
    cur->op.info.bytes_received += LOCO_FRAME_HEADER_BYTES;
    return true;
}

static void conn_on_ctl_frame(loco_comm_t comm, loco_conn *c)
{
    const loco_frame_header *h = &c->rx_frame;
    switch (h->type) {
    case LOCO_FRAME_PING: comm->peer_seq[c->peer] = h->seq; break;
    case LOCO_FRAME_BYE: comm->peer_state[c->peer] = LOCO_PEER_LEFT; break;
    case LOCO_FRAME_DONE: {
        uint64_t digest = 0;
        for (uint32_t i = 0; i < 8 && i < h->length; i++) {
            digest |= (uint64_t)c->rx_buf[i] << (8 * i);
        }
        comm->done_seq[c->peer] = h->seq;
        comm->done_digest[2 * c->peer + (h->seq & 1)] = digest;
        break;
    }
    case LOCO_FRAME_ABORT: {
        int lost = -1;
        char reason[LOCO_REASON_MAX + 1];
        loco_error e = {0};
        if (LOCO_OK != loco_abort_decode(c->rx_buf, h->length, &lost, reason, &e)) {
            loco_conn_violation(comm, c, e.msg);
            return;
        }
        char msg[256];
        snprintf(msg, sizeof msg, "rank %d aborted operation %llu: %s", c->peer,
                 (unsigned long long)h->seq, reason);
        if (lost >= 0 && lost < comm->world && lost != comm->rank &&
            LOCO_PEER_ALIVE == comm->peer_state[lost]) {
            comm->peer_state[lost] = LOCO_PEER_LOST;
        }
        loco_loop_break_epoch(comm, lost, LOCO_ERR_PEER_LOST, false, msg);
        break;
    }
    default: {
        char why[96];
        snprintf(why, sizeof why, "unexpected %s frame on the control connection",
                 loco_frame_type_name(h->type));
        loco_conn_violation(comm, c, why);
    }
    }
}

/* The header is complete: decide where its payload goes. */
static bool conn_on_header(loco_comm_t comm, loco_conn *c)
{
    loco_error e = {0};
    uint32_t max = LOCO_CONN_CONTROL == c->kind ? (uint32_t)(8 + LOCO_REASON_MAX)
                                                : LOCO_FRAME_MAX_PAYLOAD;
    if (LOCO_OK != loco_frame_header_decode(c->rx_hdr, max, &c->rx_frame, &e)) {
        loco_conn_violation(comm, c, e.msg);
        return false;
    }
    if (LOCO_CONN_CONTROL == c->kind) {
        if (c->rx_frame.epoch != comm->epoch) {
            char why[96];
            snprintf(why, sizeof why, "control frame of epoch %u, this member is in epoch %u",
                     c->rx_frame.epoch, comm->epoch);
            loco_conn_violation(comm, c, why);
            return false;
        }
        c->rx_dst = c->rx_buf;
        return true;
    }
    return conn_data_header(comm, c);
}

static void conn_on_payload(loco_comm_t comm, loco_conn *c)
{
    if (LOCO_CONN_CONTROL == c->kind) {
        conn_on_ctl_frame(comm, c);
        return;
    }
    loco_request *cur = comm->cur;
    loco_op *op = &cur->op;
    op->info.payload_received += c->rx_frame.length;
    op->last_progress_ns = loco_now_ns();
    loco_error e = {0};
    loco_status st = loco_op_on_payload(comm, op, c, &e);
    if (LOCO_OK == st) {
        return;
    }
    if (LOCO_ERR_PROTOCOL == st) {
        loco_loop_peer_failed(comm, c->peer, LOCO_ERR_PEER_LOST, "dropped %s: protocol violation: %s",
                         c->name, e.msg);
    } else {
        loco_loop_break_epoch(comm, -1, st, true, loco_error_msg(&e, st));
    }
}

/* The payload (and with integrity its MAC) is in: check the MAC, then act on the frame. */
static void conn_frame_complete(loco_comm_t comm, loco_conn *c)
{
    if (c->rx_got != c->rx_frame.length ||
        (c->rx_mac.on && c->rx_tag_got < LOCO_FRAME_MAC_BYTES)) {
        return;
    }
    c->rx_in_payload = false;
    if (c->rx_mac.on &&
        !loco_frame_mac_check(&c->rx_mac, c->rx_hdr, c->rx_dst, c->rx_frame.length, c->rx_tag)) {
        char why[128];
        snprintf(why, sizeof why, "a %s frame failed its integrity check (forged, corrupted, "
                                  "replayed or reordered)",
                 loco_frame_type_name(c->rx_frame.type));
        loco_conn_violation(comm, c, why);
        return;
    }
    conn_on_payload(comm, c);
}

/* Read what a connection has, within a budget; stops early when parked or stopped. */
void loco_conn_read(loco_comm_t comm, loco_conn *c)
{
    uint64_t budget = READ_BUDGET;
    while (c->live && !c->rx_parked && budget > 0) {
        ssize_t n;
        if (!c->rx_in_payload) {
            n = recv(c->fd, c->rx_hdr + c->rx_hdr_got, LOCO_FRAME_HEADER_BYTES - c->rx_hdr_got, 0);
        } else if (c->rx_got < c->rx_frame.length) {
            n = recv(c->fd, c->rx_dst + c->rx_got, c->rx_frame.length - c->rx_got, 0);
        } else {
            n = recv(c->fd, c->rx_tag + c->rx_tag_got, LOCO_FRAME_MAC_BYTES - c->rx_tag_got, 0);
        }
        if (n < 0 && EINTR == errno) {
            continue;
        }
        if (n < 0 && (EAGAIN == errno || EWOULDBLOCK == errno)) {
            return;
        }
        if (n <= 0) {
            loco_conn_closed(comm, c, n < 0 ? errno : 0);
            return;
        }
        if (c->rx_in_payload && c->rx_got == c->rx_frame.length) { /* the MAC tag */
            c->rx_tag_got += (uint32_t)n;
            count_received(comm, (uint64_t)n);
            conn_frame_complete(comm, c);
            continue;
        }
        budget -= (uint64_t)n < budget ? (uint64_t)n : budget;
        count_received(comm, (uint64_t)n);
        comm->last_heard_ns[c->peer] = loco_now_ns();
        if (!c->rx_in_payload) {
            c->rx_hdr_got += (uint32_t)n;
            if (c->rx_hdr_got < LOCO_FRAME_HEADER_BYTES) {
                continue;
            }
            c->rx_hdr_got = 0;
            if (!conn_on_header(comm, c)) {
                return;
            }
            c->rx_in_payload = true;
            c->rx_got = 0;
            c->rx_tag_got = 0;
        } else {
            c->rx_got += (uint32_t)n;
            if (NULL != comm->cur && LOCO_CONN_DATA == c->kind) {
                comm->cur->op.info.bytes_received += (uint64_t)n;
            }
        }
        conn_frame_complete(comm, c);
    }
}

/* A new operation started: let parked connections deliver its first frames. */
void loco_conn_unpark(loco_comm_t comm)
{
    for (int k = 0; k < comm->cfg.streams && comm->world > 1; k++) {
        loco_conn *c = comm->in[k];
        if (!c->live || !c->rx_parked || NULL == comm->cur) {
            continue;
        }
        c->rx_parked = false;
        conn_set_events(comm, c, EPOLLIN | EPOLLRDHUP | (c->want_out ? EPOLLOUT : 0u));
        if (!conn_data_header(comm, c)) {
            continue;
        }
        c->rx_in_payload = true;
        c->rx_got = 0;
        c->rx_tag_got = 0;
        conn_frame_complete(comm, c); /* an empty frame without a MAC is complete now */
        loco_conn_read(comm, c);
    }
}

